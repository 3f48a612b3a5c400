//! The OpenTelemetry bridge (feature `opentelemetry`): milieu's current
//! [`TraceContext`] and the span context of OpenTelemetry's current
//! [`Context`](opentelemetry::Context) agree, both ways, so that a service
//! can use milieu's transports and an OpenTelemetry tracer together and
//! get one trace.
//!
//! - **Conversions**: [`span_context`] turns a `TraceContext` into an
//!   OpenTelemetry [`SpanContext`] (a remote one), and [`trace_context`]
//!   turns a valid `SpanContext` back into a `TraceContext`.
//! - **Inbound, milieu to OpenTelemetry**: `milieu::http::Server`
//!   attaches, around each call of the handler and each poll of an `async`
//!   handler's future (where it enters the request's milieu context), an
//!   OpenTelemetry context whose span is the request's `TraceContext`, as a
//!   remote parent. A span the handler starts with any OpenTelemetry
//!   tracer (`tracer.start("work")`) is then in the request's trace, a
//!   child of the request's span. Elsewhere (a stage's job, a thread, a
//!   task the handler spawned), [`context`] is that OpenTelemetry context
//!   for the current milieu context: attach it before starting spans.
//! - **Outbound, OpenTelemetry to milieu**: when OpenTelemetry's current
//!   span is a *local* one (started in this process and made current, for
//!   example with `Context::current_with_span(span).attach()`),
//!   [`Propagation::inject`](crate::remote::Propagation::inject) (so the
//!   HTTP client, `milieu::http::Client`) sends that span as the
//!   callee's parent: its trace id, span id, flags and `tracestate`, as
//!   OpenTelemetry's own `TraceContextPropagator` would. Otherwise (no
//!   span, or only the remote one the server attached) it sends a new
//!   child span of milieu's `TraceContext`, one per request, as without
//!   the feature.
//!
//! Only the trace context crosses the bridge. Baggage stays milieu's
//! ([`Baggage`](crate::remote::Baggage) types and
//! [`ForwardedBaggage`](crate::remote::ForwardedBaggage)); OpenTelemetry's
//! `Baggage` is neither read nor written.
//!
//! # What it costs
//!
//! With the feature on, the server converts each request's `TraceContext`
//! once (the ids, and the `tracestate` copied) and makes one OpenTelemetry
//! context of it (one allocation); then each handler call and each poll
//! attaches it: a clone (reference counts) pushed on OpenTelemetry's
//! thread-local stack, popped when the call or poll returns. `inject` reads
//! OpenTelemetry's current span once per request. Without the feature,
//! none of this is compiled.
//!
//! No global state is used: no tracer provider is looked up or installed
//! (the tracers are the application's), and the only OpenTelemetry state
//! touched is its thread-local current context, through its own API.
//!
//! # Examples
//!
//! ```
//! use milieu::remote::{otel, Propagation, TraceContext};
//! use opentelemetry::trace::{Span, TraceContextExt, Tracer, TracerProvider};
//! use opentelemetry_sdk::trace::SdkTracerProvider;
//!
//! let provider = SdkTracerProvider::builder().build();
//! let tracer = provider.tracer("example");
//!
//! // A unit of work continuing a caller's trace, as the HTTP server
//! // installs one for each request.
//! let request = TraceContext::extract(
//!     Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
//!     &[],
//! )
//! .into_context();
//! milieu::scope().with(request.clone()).run(|| {
//!     // Inbound: a span started now is the request span's child (the
//!     // server attaches this context for its handlers by itself).
//!     let _request_span = otel::context().attach();
//!     let work = tracer.start("work");
//!     assert_eq!(otel::trace_context(work.span_context()).unwrap().trace_id(), request.trace_id());
//!     let work_id = work.span_context().span_id();
//!
//!     // Outbound: while `work` is current, it is the callee's parent.
//!     let _work = opentelemetry::Context::current_with_span(work).attach();
//!     let mut traceparent = String::new();
//!     Propagation::new().inject(&mut |name, value| {
//!         if name == "traceparent" {
//!             traceparent = value.to_owned();
//!         }
//!     });
//!     assert_eq!(traceparent, format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{work_id}-01"));
//!     opentelemetry::Context::current().span().end();
//! });
//! ```

use opentelemetry::trace::{SpanContext, TraceContextExt};

use super::ids::{SpanId, TraceFlags, TraceId};
use super::trace::TraceContext;
use super::tracestate::{keep_valid, TraceState};

/// The OpenTelemetry [`SpanContext`] of `trace`'s span: the same trace id,
/// span id (`trace.span_id()`, the span of this unit of work, not its
/// parent's), flags (`SAMPLED` becomes OpenTelemetry's sampled flag; the
/// `RANDOM` bit is kept as is) and `tracestate`, marked **remote**.
///
/// Remote because the span is not one of this process's OpenTelemetry
/// spans: no tracer here records or ends it, it is only a parent for the
/// spans started under it. That is also what keeps
/// [`Propagation::inject`](crate::remote::Propagation::inject) from
/// sending it as it is (it sends a new child of it for each request).
///
/// A `tracestate` member that OpenTelemetry's grammar refuses (it is a
/// little stricter than Trace Context Level 2 on keys: `a@b@c`, a vendor
/// part after `@` over 13 characters) is left out; the others are kept, in
/// order.
///
/// # Examples
///
/// ```
/// use milieu::remote::{otel, TraceContext};
///
/// let trace = TraceContext::extract(
///     Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
///     &["congo=t61rcWkgMzE"],
/// )
/// .into_context();
/// let span = otel::span_context(&trace);
/// assert!(span.is_valid() && span.is_remote() && span.is_sampled());
/// assert_eq!(span.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert_eq!(span.span_id().to_string(), trace.span_id().to_string());
/// assert_eq!(span.trace_state().get("congo"), Some("t61rcWkgMzE"));
/// ```
pub fn span_context(trace: &TraceContext) -> SpanContext {
    SpanContext::new(
        opentelemetry::trace::TraceId::from_bytes(trace.trace_id().to_bytes()),
        opentelemetry::trace::SpanId::from_bytes(trace.span_id().to_bytes()),
        opentelemetry::trace::TraceFlags::new(trace.flags().bits()),
        true,
        otel_trace_state(trace.state()),
    )
}

/// The [`TraceContext`] of an OpenTelemetry span: its trace id, its span
/// id as [`span_id`](TraceContext::span_id), its flags (the ones Trace
/// Context defines: `SAMPLED` and `RANDOM`) and its `tracestate`; or `None`
/// when the span context is invalid (an all-zero trace or span id, as in
/// OpenTelemetry's `SpanContext::NONE`).
///
/// A `SpanContext` does not say who its parent is, so
/// [`parent_id`](TraceContext::parent_id) is `None`. `tracestate` members
/// outside the Level 2 grammar are left out one by one (OpenTelemetry
/// accepts a few values it refuses: empty, with a trailing space, not
/// ASCII), and so is every member past the 32nd.
///
/// # Examples
///
/// ```
/// use milieu::remote::otel;
/// use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
///
/// let span = SpanContext::new(
///     TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
///     SpanId::from_hex("00f067aa0ba902b7").unwrap(),
///     TraceFlags::SAMPLED,
///     false,
///     TraceState::from_key_value([("rojo", "1")]).unwrap(),
/// );
/// let trace = otel::trace_context(&span).unwrap();
/// assert_eq!(trace.traceparent(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
/// assert_eq!(trace.tracestate().as_deref(), Some("rojo=1"));
///
/// assert!(otel::trace_context(&SpanContext::NONE).is_none());
/// ```
pub fn trace_context(span: &SpanContext) -> Option<TraceContext> {
    let trace_id = TraceId::from_bytes(span.trace_id().to_bytes())?;
    let span_id = SpanId::from_bytes(span.span_id().to_bytes())?;
    Some(TraceContext::from_parts(
        trace_id,
        span_id,
        None,
        TraceFlags::from_bits(span.trace_flags().to_u8()),
        milieu_trace_state(span.trace_state()),
    ))
}

/// OpenTelemetry's current context with the current milieu
/// [`TraceContext`] as its span (a remote one, see [`span_context`]), or
/// OpenTelemetry's current context unchanged when the milieu context has
/// no `TraceContext`.
///
/// The span OpenTelemetry's current context had, if any, is replaced: the
/// milieu context says which unit of work this is. So attach the result
/// where that work starts (the first thing in a stage's job, a thread's
/// body, a task's future) and start spans under it; attaching it below a
/// span of your own would hide that span.
///
/// `milieu::http::Server` does this around its handlers by
/// itself; this is for the code it does not run.
///
/// # Examples
///
/// ```
/// use milieu::remote::{otel, TraceContext};
/// use opentelemetry::trace::TraceContextExt;
///
/// let trace = TraceContext::new_root();
/// let _trace = milieu::provide(trace.clone());
///
/// let worker = milieu::thread::spawn(|| {
///     // The milieu context crossed to the thread; OpenTelemetry's did not.
///     assert!(!opentelemetry::Context::current().has_active_span());
///     let _otel = otel::context().attach();
///     let current = opentelemetry::Context::current();
///     current.span().span_context().span_id().to_string()
/// });
/// assert_eq!(worker.join().unwrap(), trace.span_id().to_string());
/// ```
pub fn context() -> opentelemetry::Context {
    // `contains` first: a failed `with` builds a full `Missing` report.
    let milieu_span = if crate::contains::<TraceContext>() {
        crate::with(span_context).ok()
    } else {
        None
    };
    match milieu_span {
        Some(span) => {
            opentelemetry::Context::map_current(|current| current.with_remote_span_context(span))
        }
        None => opentelemetry::Context::current(),
    }
}

/// OpenTelemetry's current span as a [`TraceContext`], when it is a valid
/// span of this process (not remote): what
/// [`Propagation::inject`](crate::remote::Propagation::inject) sends
/// instead of a child of milieu's `TraceContext`.
///
/// A remote span context is skipped: it is a caller's span (or the
/// request span `milieu::http::Server` attached), and a
/// request must go out from a span of its own.
pub(super) fn current_local_span() -> Option<TraceContext> {
    opentelemetry::Context::map_current(|current| {
        let span = current.span();
        let span_context = span.span_context();
        if span_context.is_remote() {
            None
        } else {
            trace_context(span_context)
        }
    })
}

/// `state` as OpenTelemetry's `TraceState`, less the members its grammar
/// refuses (see [`span_context`]).
fn otel_trace_state(state: &TraceState) -> opentelemetry::trace::TraceState {
    use opentelemetry::trace::TraceState as OtelTraceState;
    if state.is_empty() {
        return OtelTraceState::NONE;
    }
    // Usually every member fits, and one pass builds the list.
    OtelTraceState::from_key_value(state.iter()).unwrap_or_else(|_| {
        let fits = |member: &(&str, &str)| OtelTraceState::from_key_value([*member]).is_ok();
        // Only members that fit are left: this cannot fail, but if it did
        // an empty state is a valid answer.
        OtelTraceState::from_key_value(state.iter().filter(fits)).unwrap_or_default()
    })
}

/// OpenTelemetry's `state` as milieu's, less the members outside the
/// Level 2 grammar (see [`trace_context`]).
fn milieu_trace_state(state: &opentelemetry::trace::TraceState) -> TraceState {
    // OpenTelemetry's `TraceState` lists its members only as a header. Its
    // keys and values never hold `,` or `=` (it refuses both), so the
    // header splits back into exactly its members.
    let header = state.header();
    keep_valid(
        header
            .split(',')
            .filter_map(|member| member.split_once('=')),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TraceState as OtelTraceState;

    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn continued(traceparent: &str, tracestate: &[&str]) -> TraceContext {
        let extracted = TraceContext::extract(Some(traceparent), tracestate);
        assert!(extracted.is_continued(), "{traceparent}");
        extracted.into_context()
    }

    fn otel_span(trace: &str, span: &str, flags: u8, state: OtelTraceState) -> SpanContext {
        SpanContext::new(
            opentelemetry::trace::TraceId::from_hex(trace).unwrap(),
            opentelemetry::trace::SpanId::from_hex(span).unwrap(),
            opentelemetry::trace::TraceFlags::new(flags),
            false,
            state,
        )
    }

    #[test]
    fn a_trace_context_round_trips_through_a_span_context() {
        let trace = continued(TRACEPARENT, &["rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"]);
        let span = span_context(&trace);
        assert!(span.is_valid());
        assert!(span.is_remote());
        assert_eq!(
            span.trace_id().to_bytes(),
            trace.trace_id().to_bytes(),
            "the trace"
        );
        assert_eq!(
            span.span_id().to_bytes(),
            trace.span_id().to_bytes(),
            "this unit of work's span, not the caller's"
        );
        let back = trace_context(&span).unwrap();
        assert_eq!(back.trace_id(), trace.trace_id());
        assert_eq!(back.span_id(), trace.span_id());
        assert_eq!(back.flags(), trace.flags());
        assert_eq!(back.state(), trace.state());
        assert_eq!(back.traceparent(), trace.traceparent());
        assert_eq!(back.parent_id(), None, "a span context names no parent");
    }

    #[test]
    fn a_span_context_round_trips_through_a_trace_context() {
        let state = OtelTraceState::from_key_value([("a", "1"), ("b@vendor", "2")]).unwrap();
        let span = otel_span(
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "00f067aa0ba902b7",
            0x01,
            state,
        );
        let trace = trace_context(&span).unwrap();
        assert_eq!(
            trace.traceparent(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        let again = span_context(&trace);
        assert_eq!(again.trace_id(), span.trace_id());
        assert_eq!(again.span_id(), span.span_id());
        assert_eq!(again.trace_flags(), span.trace_flags());
        assert_eq!(again.trace_state(), span.trace_state());
    }

    #[test]
    fn invalid_span_contexts_have_no_trace_context() {
        assert_eq!(trace_context(&SpanContext::NONE), None);
        assert_eq!(trace_context(&SpanContext::empty_context()), None);
        let zero_span = SpanContext::new(
            opentelemetry::trace::TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            opentelemetry::trace::SpanId::INVALID,
            opentelemetry::trace::TraceFlags::SAMPLED,
            true,
            OtelTraceState::NONE,
        );
        assert_eq!(trace_context(&zero_span), None);
        let zero_trace = SpanContext::new(
            opentelemetry::trace::TraceId::INVALID,
            opentelemetry::trace::SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            opentelemetry::trace::TraceFlags::SAMPLED,
            false,
            OtelTraceState::NONE,
        );
        assert_eq!(trace_context(&zero_trace), None);
    }

    #[test]
    fn the_sampled_flag_crosses_both_ways_and_reserved_bits_do_not() {
        for (traceparent_flags, sampled) in [("00", false), ("01", true), ("03", true)] {
            let trace = continued(
                &format!(
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-{traceparent_flags}"
                ),
                &[],
            );
            let span = span_context(&trace);
            assert_eq!(span.is_sampled(), sampled, "{traceparent_flags}");
            assert_eq!(span.trace_flags().to_u8(), trace.flags().bits());
        }
        for (bits, expected) in [
            (0x00, TraceFlags::NONE),
            (0x01, TraceFlags::SAMPLED),
            (0x02, TraceFlags::RANDOM),
            (0xff, TraceFlags::KNOWN),
        ] {
            let span = otel_span(
                "4bf92f3577b34da6a3ce929d0e0e4736",
                "00f067aa0ba902b7",
                bits,
                OtelTraceState::NONE,
            );
            assert_eq!(
                trace_context(&span).unwrap().flags(),
                expected,
                "{bits:02x}"
            );
        }
    }

    #[test]
    fn tracestate_members_the_other_grammar_refuses_are_left_out_one_by_one() {
        // Level 2 keys that OpenTelemetry 0.31 refuses: two `@`, and a
        // vendor part of 15 characters.
        let long_vendor = format!("t@{}", "v".repeat(15));
        let state = TraceState::parse(&[&format!("a=1,x@y@z=2,{long_vendor}=3,b=4")]).unwrap();
        let trace = continued(TRACEPARENT, &[]).with_state(state);
        assert_eq!(span_context(&trace).trace_state().header(), "a=1,b=4");

        // Values OpenTelemetry accepts and Level 2 does not.
        let otel = OtelTraceState::from_key_value([
            ("a", "1"),
            ("empty", ""),
            ("trailing", "x "),
            ("accent", "é"),
            ("b", "2"),
        ])
        .unwrap();
        let span = otel_span(
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "00f067aa0ba902b7",
            1,
            otel,
        );
        let trace = trace_context(&span).unwrap();
        assert_eq!(trace.tracestate().as_deref(), Some("a=1,b=2"));
    }

    #[test]
    fn an_empty_tracestate_stays_empty() {
        let trace = continued(TRACEPARENT, &[]);
        assert_eq!(span_context(&trace).trace_state(), &OtelTraceState::NONE);
        let span = otel_span(
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "00f067aa0ba902b7",
            1,
            OtelTraceState::NONE,
        );
        assert!(trace_context(&span).unwrap().state().is_empty());
    }

    #[test]
    fn context_carries_the_milieu_trace_context_or_nothing() {
        assert!(!context().has_active_span(), "no TraceContext: unchanged");
        let trace = continued(TRACEPARENT, &[]);
        let cx = crate::scope().with(trace.clone()).run(context);
        let span = cx.span();
        assert_eq!(span.span_context(), &span_context(&trace));
    }

    #[test]
    fn only_a_local_span_is_the_current_local_span() {
        assert_eq!(current_local_span(), None, "no span");
        let trace = continued(TRACEPARENT, &[]);
        let remote =
            opentelemetry::Context::current().with_remote_span_context(span_context(&trace));
        {
            let _remote = remote.attach();
            assert_eq!(
                current_local_span(),
                None,
                "a remote span is not sent as is"
            );
        }
        let local = otel_span(
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "00f067aa0ba902b7",
            1,
            OtelTraceState::NONE,
        );
        let _local = opentelemetry::Context::current()
            .with_remote_span_context(local.clone())
            .attach();
        // `with_remote_span_context` keeps the span context's own
        // `is_remote` (false here): what a started span looks like.
        assert_eq!(
            current_local_span().map(|t| t.traceparent()),
            Some(TRACEPARENT.to_owned())
        );
    }
}
