//! [`Propagation`]: the explicit list of what crosses processes, with
//! [`extract`](Propagation::extract) (headers in, [`Incoming`]) and
//! [`inject`](Propagation::inject) (the current context out, as headers).

use std::any::TypeId;
use std::fmt;
use std::sync::Arc;

use super::baggage::{is_token, BaggageHeader, BaggageLimits, BaggageMember, ParsedBaggage};
use super::carry::{Baggage, DecodeError};
use super::incoming::{Arrived, Declined, ForwardedBaggage, Incoming, Install};
use super::origin::{self, CallerOrigin};
use super::trace::TraceContext;

/// What crosses process boundaries, listed explicitly: the W3C trace
/// context always, the [`Baggage`] types [`carry`](Propagation::carry)
/// names, and the baggage members a request brought that none of them
/// reads (passed on untouched, unless [`with_forwarding(false)`](Propagation::with_forwarding)).
/// No other entry of the context ever leaves the process.
///
/// There is no global registry: a service builds its `Propagation` once,
/// at start-up, and hands it to the transports (the HTTP server and
/// client) that use it. A type that is not carried never appears in a
/// header, whatever the context holds.
///
/// # Examples
///
/// ```
/// use milieu::remote::{Baggage, Propagation};
///
/// #[derive(Baggage)]
/// #[baggage(key = "tenant")]
/// struct Tenant(String);
///
/// #[derive(Baggage)]
/// #[baggage(key = "tier")]
/// struct UserTier(u8);
///
/// #[derive(Baggage)]
/// #[baggage(key = "session")]
/// struct Session(String); // able to cross, but not carried: never sent
///
/// let propagation = Propagation::new().carry::<Tenant>().carry::<UserTier>();
///
/// // Outbound: the current context, as headers.
/// let _tenant = milieu::provide(Tenant("acme".into()));
/// let _session = milieu::provide(Session("s3cr3t".into()));
/// let mut headers = Vec::new();
/// propagation.inject(&mut |name, value| headers.push((name, value.to_owned())));
/// let baggage = headers.iter().find(|(name, _)| *name == "baggage").unwrap();
/// assert_eq!(baggage.1, "tenant=acme");
///
/// // Inbound, in another process: the headers, back into a context.
/// let values = |wanted: &str| -> Vec<&str> {
///     headers.iter().filter(|(name, _)| *name == wanted).map(|(_, v)| v.as_str()).collect()
/// };
/// let incoming = propagation.extract(&values("traceparent"), &values("tracestate"), &values("baggage"));
/// assert!(incoming.trace().is_continued());
/// # drop(_session);
/// # drop(_tenant);
/// let tenant = incoming.into_scope(milieu::scope()).run(|| milieu::get::<Tenant>().map(|t| t.0.clone()))?;
/// assert_eq!(tenant, "acme");
/// # Ok::<(), milieu::Missing>(())
/// ```
#[derive(Clone)]
pub struct Propagation {
    /// Unique keys, in the order `carry` was called (the order members are
    /// written in).
    carried: Vec<Carried>,
    limits: BaggageLimits,
    /// Sent in `milieu-origin` as the caller's service name.
    service: Option<Arc<str>>,
    /// Whether install sites are sent and read (`milieu-origin`).
    install_sites: bool,
    /// Whether baggage members no carried type reads are kept and passed on.
    forwarding: bool,
}

/// One carried type, type-erased.
#[derive(Clone, Copy)]
struct Carried {
    key: &'static str,
    type_id: TypeId,
    type_name: &'static str,
    /// Appends the current context's value as text; `false` if there is none.
    encode: fn(&mut String) -> bool,
    /// Decodes a value into what adds it to a scope.
    decode: fn(&str) -> Result<Install, DecodeError>,
}

impl Propagation {
    /// The name of the W3C trace parent header.
    pub const TRACEPARENT: &'static str = "traceparent";
    /// The name of the W3C trace state header.
    pub const TRACESTATE: &'static str = "tracestate";
    /// The name of the W3C baggage header.
    pub const BAGGAGE: &'static str = "baggage";
    /// The name of milieu's own header for remote provenance: the caller's
    /// service name and, if enabled on both sides, the install site of each
    /// carried entry (see [`with_install_sites`](Propagation::with_install_sites)).
    pub const ORIGIN: &'static str = "milieu-origin";

    /// The trace context only: no baggage type is carried, and the
    /// [`BaggageLimits`] are the spec's minimums. Baggage that arrives is
    /// still passed on (as [`ForwardedBaggage`]).
    pub fn new() -> Propagation {
        Propagation {
            carried: Vec::new(),
            limits: BaggageLimits::new(),
            service: None,
            install_sites: false,
            forwarding: true,
        }
    }

    /// Carries `T` too: its value in the current context is sent as the
    /// baggage member `T::KEY`, and a member of that key that arrives is
    /// decoded into a `T` entry.
    ///
    /// # Panics
    ///
    /// If `T::KEY` is not an RFC 7230 token, or is already carried (by `T`
    /// or another type). Both are mistakes in the program, not in its
    /// input, and a `Propagation` is built once at start-up, so they stop
    /// it there with a message naming both types.
    #[track_caller]
    pub fn carry<T: Baggage>(mut self) -> Propagation {
        let type_name = std::any::type_name::<T>();
        if !is_token(T::KEY) {
            panic!(
                "milieu::remote::Propagation::carry::<{type_name}>: the baggage key {:?} is not \
                 an RFC 7230 token (one or more of A-Z a-z 0-9 ! # $ % & ' * + - . ^ _ ` | ~)",
                T::KEY
            );
        }
        if let Some(other) = self.carried.iter().find(|c| c.key == T::KEY) {
            panic!(
                "milieu::remote::Propagation::carry::<{type_name}>: the baggage key {:?} is \
                 already carried by {}; each key names one type",
                T::KEY,
                other.type_name
            );
        }
        self.carried.push(Carried {
            key: T::KEY,
            type_id: TypeId::of::<T>(),
            type_name,
            encode: encode_current::<T>,
            decode: decode_into_scope::<T>,
        });
        self
    }

    /// These limits for the baggage read and written (see
    /// [`BaggageLimits`]).
    pub fn with_baggage_limits(mut self, limits: BaggageLimits) -> Propagation {
        self.limits = limits;
        self
    }

    /// The baggage limits.
    pub fn baggage_limits(&self) -> &BaggageLimits {
        &self.limits
    }

    /// Names this service in the requests it makes (the `milieu-origin`
    /// header), so the callee's [`ProcessHop`](crate::dump::ProcessHop)
    /// and dumps say which service called. Not sent unless set.
    pub fn with_service_name(mut self, name: impl Into<String>) -> Propagation {
        let name = name.into();
        self.service = (!name.is_empty()).then(|| name.into());
        self
    }

    /// Whether baggage members that no carried type reads are kept from
    /// the requests received ([`ForwardedBaggage`]) and passed on to the
    /// requests sent in their context. On by default, as the W3C Baggage
    /// spec asks of a service in the middle of a call chain; off, such
    /// members are dropped on arrival and never sent: for an edge service
    /// taking requests from clients it does not trust, whose baggage
    /// should not reach the services behind it.
    ///
    /// # Examples
    ///
    /// ```
    /// use milieu::remote::Propagation;
    ///
    /// let edge = Propagation::new().with_forwarding(false);
    /// let incoming = edge.extract(&[], &[], &["region=eu,flag=1"]);
    /// assert!(incoming.forwarded().is_empty());
    /// ```
    pub fn with_forwarding(mut self, enabled: bool) -> Propagation {
        self.forwarding = enabled;
        self
    }

    /// Whether unknown baggage members are passed on.
    pub fn forwards(&self) -> bool {
        self.forwarding
    }

    /// The service name sent, if any.
    pub fn service_name(&self) -> Option<&str> {
        self.service.as_deref()
    }

    /// Sends (on a client) and reads (on a server) the install site of
    /// each carried entry, so that the callee's dump says where in the
    /// caller the entry was installed:
    ///
    /// ```text
    /// installed at examples/orders/main.rs:162:9 in service orders, carried by
    /// process hop from 127.0.0.1:40312 (service orders, traceparent 00-…)
    /// ```
    ///
    /// Off by default on both sides, since it reveals source paths: turn
    /// it on for services that trust each other (inside one deployment),
    /// on each side. The header is bounded like `baggage` (64 members,
    /// 8,192 bytes).
    pub fn with_install_sites(mut self, enabled: bool) -> Propagation {
        self.install_sites = enabled;
        self
    }

    /// Whether install sites are sent and read.
    pub fn sends_install_sites(&self) -> bool {
        self.install_sites
    }

    /// The carried types, as `(key, type name)`, in the order `carry` was
    /// called: for a start-up log line.
    pub fn carried(&self) -> impl ExactSizeIterator<Item = (&'static str, &'static str)> + '_ {
        self.carried.iter().map(|c| (c.key, c.type_name))
    }

    /// Whether `T` is carried.
    pub fn carries<T: Baggage>(&self) -> bool {
        self.carried.iter().any(|c| c.type_id == TypeId::of::<T>())
    }

    /// Reads a request's headers: the values of every `traceparent`,
    /// `tracestate` and `baggage` field, each in the order received (header
    /// names are case-insensitive; matching them is the transport's job).
    ///
    /// Pure: the context is not touched until
    /// [`Incoming::into_scope`]. The trace context follows
    /// [`TraceContext::extract_all`] (continued as a child of the caller's
    /// span, or a new trace). Baggage is parsed within the limits
    /// ([`ParsedBaggage::parse`]); a member whose key a carried type
    /// owns is decoded into an entry, any other well-formed member is kept
    /// to pass on; what is dropped is in [`Incoming::declined`].
    pub fn extract(&self, traceparent: &[&str], tracestate: &[&str], baggage: &[&str]) -> Incoming {
        let trace = TraceContext::extract_all(traceparent, tracestate);
        let (members, malformed, truncated) =
            ParsedBaggage::parse(baggage, &self.limits).into_parts();
        let mut declined: Vec<Declined> = malformed.into_iter().map(Declined::Malformed).collect();
        let mut arrived = Vec::new();
        let mut forwarded = Vec::new();
        // Which carried keys a member was seen for (the first one counts);
        // not allocated for the usual request, which carries no baggage.
        let mut seen = if members.is_empty() {
            Vec::new()
        } else {
            vec![false; self.carried.len()]
        };
        for member in members {
            let Some(index) = self.carried.iter().position(|c| c.key == member.key()) else {
                if self.forwarding {
                    forwarded.push(member);
                }
                continue;
            };
            let carried = &self.carried[index];
            let (key, type_name) = (carried.key, carried.type_name);
            if std::mem::replace(&mut seen[index], true) {
                declined.push(Declined::Duplicate { key, type_name });
            } else if member.is_lossy() {
                declined.push(Declined::NotUtf8 { key, type_name });
            } else {
                match (carried.decode)(member.value()) {
                    Ok(install) => arrived.push(Arrived::new(key, type_name, install)),
                    Err(error) => declined.push(Declined::DecodeFailed {
                        key,
                        type_name,
                        error,
                    }),
                }
            }
        }
        if let Some(truncated) = truncated {
            declined.push(Declined::Truncated(truncated));
        }
        Incoming::new(trace, arrived, ForwardedBaggage::new(forwarded), declined)
    }

    /// [`extract`](Propagation::extract) for a request received from another
    /// process, as a transport calls it: with the values of every
    /// `milieu-origin` field and the peer's address, so that what
    /// [`Incoming::into_scope`] installs records a
    /// [`ProcessHop`](crate::dump::ProcessHop) (peer, the caller's service,
    /// its `traceparent`, what arrived and what was declined) and, when
    /// both sides enabled [`with_install_sites`](Propagation::with_install_sites),
    /// where the caller installed each entry.
    ///
    /// # Examples
    ///
    /// ```
    /// use milieu::dump::ProcessHop;
    /// use milieu::remote::Propagation;
    ///
    /// let incoming = Propagation::new().extract_process(
    ///     &["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"],
    ///     &[],
    ///     &[],
    ///     &["service=orders"],
    ///     Some("127.0.0.1:40312"),
    /// );
    /// let hop = incoming.into_scope(milieu::scope()).run(|| milieu::get::<ProcessHop>())?;
    /// assert_eq!(hop.service.as_deref(), Some("orders"));
    /// assert_eq!(hop.peer.as_deref(), Some("127.0.0.1:40312"));
    /// # Ok::<(), milieu::Missing>(())
    /// ```
    pub fn extract_process(
        &self,
        traceparent: &[&str],
        tracestate: &[&str],
        baggage: &[&str],
        origin: &[&str],
        peer: Option<&str>,
    ) -> Incoming {
        let caller = CallerOrigin::read(origin, self.install_sites);
        self.extract(traceparent, tracestate, baggage)
            .received_from(peer.map(str::to_owned), caller)
    }

    /// Writes the headers of an outbound request from the current context,
    /// calling `set(name, value)` once per header:
    ///
    /// - `traceparent`: a [`child`](TraceContext::child) of the context's
    ///   [`TraceContext`] (a new span for each request), or of a new trace
    ///   ([`TraceContext::new_root`]) if the context has none. With the
    ///   `opentelemetry` feature, when OpenTelemetry's current span is a
    ///   valid local one (a span this process started and made current),
    ///   that span instead, as it is: its trace id, its span id as the
    ///   callee's parent, its flags (see the module `milieu::remote::otel`);
    /// - `tracestate`, if there is one (the OpenTelemetry span's, when it
    ///   is the one sent);
    /// - `baggage`, if there is any: each carried type present in the
    ///   context (in `carry` order), then the [`ForwardedBaggage`] members
    ///   (but those of a carried key: the typed value wins). What does not
    ///   fit within the limits is skipped, whole, and listed in the result;
    /// - `milieu-origin`, if this `Propagation` has a
    ///   [service name](Propagation::with_service_name) or sends
    ///   [install sites](Propagation::with_install_sites).
    ///
    /// Nothing else is written.
    pub fn inject(&self, set: &mut dyn FnMut(&'static str, &str)) -> Injected {
        let trace = outbound_span();
        set(Propagation::TRACEPARENT, &trace.traceparent());
        if let Some(tracestate) = trace.tracestate() {
            set(Propagation::TRACESTATE, &tracestate);
        }

        let mut header = BaggageHeader::new(self.limits);
        let mut skipped = Vec::new();
        let mut text = String::new();
        for carried in &self.carried {
            text.clear();
            if (carried.encode)(&mut text) {
                let member = BaggageMember::with_valid_key(carried.key, &text);
                if !header.push(&member) {
                    skipped.push(carried.key.to_owned());
                }
            }
        }
        if self.forwarding && crate::contains::<ForwardedBaggage>() {
            let _ = crate::with(|forwarded: &ForwardedBaggage| {
                for member in forwarded.members() {
                    if self.carried.iter().any(|c| c.key == member.key()) {
                        continue;
                    }
                    if !header.push(member) {
                        skipped.push(member.key().to_owned());
                    }
                }
            });
        }
        let members = header.len();
        if let Some(baggage) = header.finish() {
            set(Propagation::BAGGAGE, &baggage);
        }
        if self.service.is_some() || self.install_sites {
            let sites = self
                .carried
                .iter()
                .filter(|_| self.install_sites)
                .filter_map(|c| {
                    crate::context::origin_of(c.type_id).map(|(site, svc)| (c.key, site, svc))
                });
            if let Some(origin) = origin::write(self.service.as_deref(), sites) {
                set(Propagation::ORIGIN, &origin);
            }
        }
        Injected {
            trace,
            members,
            skipped,
        }
    }
}

impl Default for Propagation {
    fn default() -> Propagation {
        Propagation::new()
    }
}

impl fmt::Debug for Propagation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Propagation")
            .field("carried", &self.carried().collect::<Vec<_>>())
            .field("limits", &self.limits)
            .field("service", &self.service)
            .field("install_sites", &self.install_sites)
            .field("forwarding", &self.forwarding)
            .finish()
    }
}

/// What [`Propagation::inject`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Injected {
    trace: TraceContext,
    members: usize,
    skipped: Vec<String>,
}

impl Injected {
    /// The trace context of the outbound request (its `traceparent`): the
    /// span the callee will see as its parent. When it is an OpenTelemetry
    /// span (feature `opentelemetry`, see [`inject`](Propagation::inject)),
    /// its [`parent_id`](TraceContext::parent_id) is `None`: an
    /// OpenTelemetry span context does not name its parent.
    pub fn trace(&self) -> &TraceContext {
        &self.trace
    }

    /// How many baggage members were written.
    pub fn baggage_members(&self) -> usize {
        self.members
    }

    /// The keys of the members left out because they did not fit within
    /// the limits.
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }
}

/// The span an outbound request is made from (see
/// [`Propagation::inject`]): OpenTelemetry's current local span if there
/// is one and the bridge is compiled in, as OpenTelemetry's own propagator
/// sends it; else a new child of the context's `TraceContext`, so that each
/// request has a span of its own, or a new trace.
fn outbound_span() -> TraceContext {
    #[cfg(feature = "opentelemetry")]
    if let Some(span) = super::otel::current_local_span() {
        return span;
    }
    if crate::contains::<TraceContext>() {
        crate::with(TraceContext::child).unwrap_or_else(|_| TraceContext::new_root())
    } else {
        TraceContext::new_root()
    }
}

/// `Carried::encode` for `T`: the current context's `T`, as text.
fn encode_current<T: Baggage>(out: &mut String) -> bool {
    // `contains` first: a failed `with` builds a full `Missing` report.
    crate::contains::<T>() && crate::with(|value: &T| value.encode(out)).is_ok()
}

/// `Carried::decode` for `T`.
fn decode_into_scope<T: Baggage>(value: &str) -> Result<Install, DecodeError> {
    let value = T::decode(value)?;
    Ok(Box::new(move |scope, site| scope.with_at(value, site)))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Tenant(String);

    impl Baggage for Tenant {
        const KEY: &'static str = "tenant";
        fn encode(&self, out: &mut String) {
            out.push_str(&self.0);
        }
        fn decode(value: &str) -> Result<Self, DecodeError> {
            if value.is_empty() {
                Err(DecodeError::new("empty tenant"))
            } else {
                Ok(Tenant(value.to_owned()))
            }
        }
    }

    struct OtherTenant;

    impl Baggage for OtherTenant {
        const KEY: &'static str = "tenant";
        fn encode(&self, _: &mut String) {}
        fn decode(_: &str) -> Result<Self, DecodeError> {
            Ok(OtherTenant)
        }
    }

    struct BadKey;

    impl Baggage for BadKey {
        const KEY: &'static str = "bad key";
        fn encode(&self, _: &mut String) {}
        fn decode(_: &str) -> Result<Self, DecodeError> {
            Ok(BadKey)
        }
    }

    fn headers(propagation: &Propagation) -> Vec<(&'static str, String)> {
        let mut headers = Vec::new();
        propagation.inject(&mut |name, value| headers.push((name, value.to_owned())));
        headers
    }

    #[test]
    #[should_panic(expected = "the baggage key \"tenant\" is already carried by")]
    fn two_types_cannot_share_a_key() {
        let _ = Propagation::new().carry::<Tenant>().carry::<OtherTenant>();
    }

    #[test]
    #[should_panic(expected = "the baggage key \"bad key\" is not an RFC 7230 token")]
    fn a_key_must_be_a_token() {
        let _ = Propagation::new().carry::<BadKey>();
    }

    #[test]
    fn only_the_trace_context_leaves_an_empty_context() {
        let written = headers(&Propagation::new().carry::<Tenant>());
        assert_eq!(written.len(), 1);
        assert_eq!(written[0].0, "traceparent");
    }

    #[test]
    fn a_duplicate_carried_key_counts_once_and_the_first_wins() {
        let propagation = Propagation::new().carry::<Tenant>();
        let incoming = propagation.extract(&[], &[], &["tenant=a,tenant=b"]);
        assert_eq!(incoming.arrived().len(), 1);
        assert_eq!(
            incoming.declined(),
            [Declined::Duplicate {
                key: "tenant",
                type_name: std::any::type_name::<Tenant>()
            }]
        );
        let tenant = incoming
            .into_scope(crate::scope())
            .run(|| crate::get::<Tenant>().map(|t| t.0.clone()));
        assert_eq!(tenant.unwrap(), "a");
    }

    #[test]
    fn failed_decodes_and_lossy_values_are_declined_not_forwarded() {
        let propagation = Propagation::new().carry::<Tenant>();
        let incoming = propagation.extract(&[], &[], &["tenant="]);
        assert!(matches!(
            &incoming.declined()[0],
            Declined::DecodeFailed { error, .. } if error.message() == "empty tenant"
        ));
        assert!(incoming.forwarded().is_empty());
        let incoming = propagation.extract(&[], &[], &["tenant=%FF"]);
        assert!(matches!(incoming.declined()[0], Declined::NotUtf8 { .. }));
        assert!(incoming.forwarded().is_empty());
    }

    #[test]
    fn forwarded_members_of_a_carried_key_give_way_to_the_typed_value() {
        let propagation = Propagation::new().carry::<Tenant>();
        let forwarded = ForwardedBaggage::new(vec![
            BaggageMember::new("tenant", "stale").unwrap(),
            BaggageMember::new("region", "eu").unwrap(),
        ]);
        let written = crate::scope()
            .with(forwarded)
            .with(Tenant("fresh".into()))
            .run(|| headers(&propagation));
        let baggage = written.iter().find(|(n, _)| *n == "baggage").unwrap();
        assert_eq!(baggage.1, "tenant=fresh,region=eu");
    }

    #[test]
    fn members_that_do_not_fit_are_skipped_and_listed() {
        let propagation = Propagation::new().carry::<Tenant>();
        let forwarded = ForwardedBaggage::new(vec![
            BaggageMember::new("big", &"x".repeat(8190)).unwrap(),
            BaggageMember::new("small", "1").unwrap(),
        ]);
        let mut names = Vec::new();
        let injected = crate::scope()
            .with(forwarded)
            .with(Tenant("acme".into()))
            .run(|| propagation.inject(&mut |name, _| names.push(name)));
        assert_eq!(injected.skipped(), ["big"]);
        assert_eq!(injected.baggage_members(), 2);
        assert_eq!(names, ["traceparent", "baggage"]);
    }

    #[test]
    fn what_a_request_brings_can_move_between_threads() {
        fn send_sync<T: Send + Sync + 'static>() {}
        send_sync::<Propagation>();
        send_sync::<Incoming>();
        send_sync::<TraceContext>();
        send_sync::<ForwardedBaggage>();
    }

    #[test]
    fn debug_lists_the_carried_types() {
        let propagation = Propagation::new().carry::<Tenant>();
        let debug = format!("{propagation:?}");
        assert!(
            debug.contains("(\"tenant\", \"milieu::remote::propagation::tests::Tenant\")"),
            "{debug}"
        );
        assert!(propagation.carries::<Tenant>());
        assert!(!propagation.carries::<OtherTenant>());
    }
}
