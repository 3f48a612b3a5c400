//! Context across processes: the W3C Trace Context (`traceparent`,
//! `tracestate`) and Baggage (`baggage`) headers, independent of any
//! transport.
//!
//! A service lists what may cross in a [`Propagation`]: the trace context
//! always, and each [`Baggage`] type it names with
//! [`carry`](Propagation::carry). No other entry of the process's context
//! ever leaves it; there is no global registry, and a type is carried only
//! if it opts in (implements [`Baggage`], usually by `#[derive(Baggage)]`)
//! **and** the `Propagation` lists it. Baggage members a caller sent that
//! no carried type reads are the caller's, not this process's: they are
//! passed on to the services this one calls, as the W3C Baggage spec asks,
//! unless the `Propagation` says [`with_forwarding(false)`](Propagation::with_forwarding)
//! (an edge service taking requests from untrusted clients may want that).
//!
//! - **Inbound**, [`Propagation::extract`] reads a request's header values
//!   into an [`Incoming`]: the [`TraceContext`] for this unit of work (a
//!   child of the caller's span, or a new trace if the caller sent none
//!   or an invalid one), the carried types decoded, the other baggage
//!   members kept to pass on ([`ForwardedBaggage`]), and what was dropped
//!   and why, for one log line. It touches no context;
//!   [`Incoming::into_scope`] adds the entries to a [`Scope`](crate::Scope).
//! - **Outbound**, [`Propagation::inject`] writes the headers of a request
//!   from the current context: a new span of its `TraceContext`, its
//!   `tracestate`, and the carried types present plus the forwarded
//!   members, within [`BaggageLimits`].
//!
//! With the `opentelemetry` feature, the module `otel` makes milieu's trace context
//! and OpenTelemetry's current span agree: spans started with an
//! OpenTelemetry tracer inside a request are in its trace, and `inject`
//! sends OpenTelemetry's current local span as the callee's parent.
//!
//! The transports call these two; the formats are also usable on their
//! own ([`TraceContext::extract`], [`TraceState`], [`ParsedBaggage`],
//! [`BaggageHeader`]). Every parser is total: any input gives a result,
//! never a panic, and invalid input is reported as a typed reason.
//!
//! # Examples
//!
//! ```
//! use milieu::remote::{Baggage, Propagation};
//!
//! #[derive(Baggage)]
//! #[baggage(key = "tenant")]
//! struct Tenant(String);
//!
//! let propagation = Propagation::new().carry::<Tenant>();
//!
//! // A request arrives with headers (a transport collects the values).
//! let incoming = propagation.extract(
//!     &["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"],
//!     &["congo=t61rcWkgMzE"],
//!     &["tenant=acme,region=eu-west"],
//! );
//! assert_eq!(incoming.warning(), None);
//!
//! // Its handler runs in the context the caller sent...
//! let mut outbound = Vec::new();
//! incoming.into_scope(milieu::scope()).run(|| {
//!     assert_eq!(milieu::get::<Tenant>().unwrap().0, "acme");
//!     // ...and the requests it makes carry it on.
//!     propagation.inject(&mut |name, value| outbound.push(format!("{name}: {value}")));
//! });
//!
//! assert!(outbound[0].starts_with("traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-"));
//! assert_eq!(outbound[1], "tracestate: congo=t61rcWkgMzE");
//! assert_eq!(outbound[2], "baggage: tenant=acme,region=eu-west");
//! ```
//!
//! # Layout
//!
//! | file | holds |
//! |---|---|
//! | `ids.rs` | [`TraceId`], [`SpanId`], [`TraceFlags`]: hex forms, random ids |
//! | `tracestate.rs` | [`TraceState`]: the Level 2 grammar, 32 members, truncation to 512 characters |
//! | `trace.rs` | [`TraceContext`] and the processing model of `traceparent` ([`Extracted`]) |
//! | `baggage.rs` | the `baggage` header: [`ParsedBaggage`], [`BaggageMember`], [`BaggageHeader`], [`BaggageLimits`] |
//! | `carry.rs` | the [`Baggage`] trait a type implements to cross |
//! | `incoming.rs` | [`Incoming`], [`ForwardedBaggage`], [`Declined`] |
//! | `origin.rs` | the `milieu-origin` header: the caller's service name and install sites |
//! | `propagation.rs` | [`Propagation`]: `carry`, `extract`, `inject` |
//! | `otel.rs` | `otel` (feature `opentelemetry`): the bridge to OpenTelemetry's span context |

mod baggage;
#[cfg(any(feature = "http", feature = "tower"))]
mod caller;
mod carry;
mod ids;
mod incoming;
mod origin;
#[cfg(feature = "opentelemetry")]
pub mod otel;
mod propagation;
mod request;
mod trace;
mod tracestate;

#[cfg(feature = "http")]
pub(crate) use baggage::is_tchar;
pub use baggage::{
    BaggageHeader, BaggageLimit, BaggageLimits, BaggageMember, InvalidBaggageKey, MalformedMember,
    MalformedReason, ParsedBaggage, Truncated,
};
#[cfg(feature = "tower")]
pub(crate) use caller::caller_scope;
#[cfg(feature = "http")]
pub(crate) use caller::from_caller;
#[cfg(feature = "http")]
pub(crate) use caller::FromCaller;
pub use carry::{Baggage, DecodeError};
pub use ids::{ParseIdError, SpanId, TraceFlags, TraceId};
pub use incoming::{Arrived, Declined, ForwardedBaggage, Incoming};
pub use milieu_macros::Baggage;
pub use propagation::{Injected, Propagation};
#[cfg(feature = "http")]
pub(crate) use request::path_in;
pub use request::RequestInfo;
pub use trace::{Extracted, TraceContext, TraceOrigin, TraceStateIssue, TraceparentError};
pub use tracestate::{TraceState, TraceStateError};
