//! [`Incoming`]: what [`Propagation::extract`](super::Propagation::extract)
//! made of a request's headers, installed with
//! [`into_scope`](Incoming::into_scope); and the entries it installs
//! besides the carried types: [`ForwardedBaggage`].

use std::fmt;
use std::panic::Location;
use std::sync::Arc;

use super::baggage::{BaggageMember, MalformedMember, Truncated};
use super::carry::DecodeError;
use super::origin::CallerOrigin;
use super::trace::{Extracted, TraceContext};
use crate::dump::{ProcessHop, RemoteOrigin};
use crate::Scope;

/// Adds one decoded value to a scope, recorded at the given site. Made
/// for one concrete type by `Propagation`, so no downcast is needed.
pub(super) type Install = Box<dyn FnOnce(Scope, &'static Location<'static>) -> Scope + Send + Sync>;

/// The reasons the installed entries show in dumps.
const TRACE_REASON: &str = "W3C trace context of the request (traceparent, tracestate)";
const ARRIVED_REASON: &str = "baggage member sent by the caller";
const HOP_REASON: &str = "how the request's context arrived from the calling process";
const FORWARDED_REASON: &str = "baggage members of the request that no carried type reads, \
                                passed on to the requests this one makes";

/// The context a request brought from its caller: its trace context, the
/// baggage members decoded into context entries, the members passed on
/// untouched, and what was declined and why.
///
/// Nothing is installed until [`into_scope`](Incoming::into_scope).
/// [`warning`](Incoming::warning) sums up, in one line, whatever the
/// caller sent that was refused, for one log event per request.
///
/// From a transport ([`Propagation::extract_process`](super::Propagation::extract_process))
/// it also knows the peer and what the caller said in `milieu-origin`,
/// and installs the [`ProcessHop`] with the entries.
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
/// let propagation = Propagation::new().carry::<Tenant>();
/// let incoming = propagation.extract(
///     &["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"],
///     &[],
///     &["tenant=acme,region=eu,bad key=1"],
/// );
/// assert_eq!(incoming.arrived()[0].key(), "tenant");
/// assert_eq!(incoming.forwarded().members()[0].key(), "region");
/// assert_eq!(incoming.declined().len(), 1);
/// if let Some(warning) = incoming.warning() {
///     tracing::warn!("{warning}"); // baggage: 1 member(s) declined: ...
/// }
///
/// let tenant = incoming
///     .into_scope(milieu::scope())
///     .run(|| milieu::get::<Tenant>().map(|t| t.0.clone()))?;
/// assert_eq!(tenant, "acme");
/// # Ok::<(), milieu::Missing>(())
/// ```
#[derive(Debug)]
pub struct Incoming {
    trace: Extracted,
    arrived: Vec<Arrived>,
    forwarded: ForwardedBaggage,
    declined: Vec<Declined>,
    /// Set when the request came from another process over a transport
    /// ([`Propagation::extract_process`](super::Propagation::extract_process)).
    process: Option<FromProcess>,
}

/// The transport's side of a process hop.
#[derive(Debug)]
struct FromProcess {
    peer: Option<String>,
    caller: CallerOrigin,
}

impl Incoming {
    pub(super) fn new(
        trace: Extracted,
        arrived: Vec<Arrived>,
        forwarded: ForwardedBaggage,
        declined: Vec<Declined>,
    ) -> Incoming {
        Incoming {
            trace,
            arrived,
            forwarded,
            declined,
            process: None,
        }
    }

    /// How many entries [`into_scope`](Incoming::into_scope) adds, at most.
    #[cfg(any(feature = "http", feature = "tower"))]
    pub(crate) fn entries(&self) -> usize {
        // The trace context, the decoded members, the forwarded members
        // and the process hop.
        2 + self.arrived.len() + usize::from(self.process.is_some())
    }

    /// Marks this as received from another process (see
    /// [`Propagation::extract_process`](super::Propagation::extract_process)).
    pub(super) fn received_from(mut self, peer: Option<String>, caller: CallerOrigin) -> Incoming {
        self.process = Some(FromProcess { peer, caller });
        self
    }

    /// The record of the process hop [`into_scope`](Incoming::into_scope)
    /// installs: `None` unless the request came from another process
    /// ([`Propagation::extract_process`](super::Propagation::extract_process))
    /// and its caller sent some context (a valid `traceparent`, baggage, or
    /// `milieu-origin`). A request that brought nothing records no hop.
    pub fn process_hop(&self) -> Option<ProcessHop> {
        let process = self.process.as_ref()?;
        let brought_context = self.trace.is_continued()
            || !self.arrived.is_empty()
            || !self.forwarded.is_empty()
            || !self.declined.is_empty()
            || !process.caller.is_empty();
        if !brought_context {
            return None;
        }
        let mut hop = ProcessHop::new();
        hop.peer = process.peer.clone();
        hop.service = process.caller.service.clone();
        if self.trace.is_continued() {
            // The caller's span: the parent of this request's.
            let context = self.trace.context();
            if let Some(parent) = context.parent_id() {
                hop.traceparent = Some(format!(
                    "00-{}-{parent}-{:02x}",
                    context.trace_id(),
                    context.flags().bits()
                ));
            }
        }
        for arrived in &self.arrived {
            hop = hop.with_arrived(arrived.key, arrived.type_name);
        }
        for declined in &self.declined {
            hop = hop.with_declined(declined.key().unwrap_or_default(), declined.to_string());
        }
        for member in self.forwarded.members() {
            hop = hop.with_forwarded(member.key());
        }
        Some(hop)
    }

    /// The trace context for this unit of work (a child of the caller's
    /// span, or a new trace), and how it was made from the headers.
    pub fn trace(&self) -> &Extracted {
        &self.trace
    }

    /// The baggage members decoded into context entries, in arrival order.
    pub fn arrived(&self) -> &[Arrived] {
        &self.arrived
    }

    /// The baggage members no carried type reads, kept as received to be
    /// passed on.
    pub fn forwarded(&self) -> &ForwardedBaggage {
        &self.forwarded
    }

    /// What was dropped, and why.
    pub fn declined(&self) -> &[Declined] {
        &self.declined
    }

    /// One line for a log warning about what the caller sent that was
    /// refused (an invalid `traceparent` or `tracestate`, declined baggage),
    /// or `None` if nothing was. At most five declined members are named.
    pub fn warning(&self) -> Option<String> {
        const NAMED: usize = 5;
        let trace = self.trace.warning();
        if trace.is_none() && self.declined.is_empty() {
            return None;
        }
        let mut line = String::from("context from the caller: ");
        if let Some(trace) = trace {
            line.push_str(&trace);
            if !self.declined.is_empty() {
                line.push_str("; ");
            }
        }
        if !self.declined.is_empty() {
            line.push_str(&format!("baggage: {} declined: ", self.declined.len()));
            for (i, declined) in self.declined.iter().take(NAMED).enumerate() {
                if i > 0 {
                    line.push_str("; ");
                }
                line.push_str(&declined.to_string());
            }
            if self.declined.len() > NAMED {
                line.push_str(&format!("; and {} more", self.declined.len() - NAMED));
            }
        }
        Some(line)
    }

    /// Adds to `scope` the [`TraceContext`] (shown in dumps), each decoded
    /// entry, and a [`ForwardedBaggage`] when members are to be passed on
    /// (or, empty, when an outer context holds one, so that it is not
    /// passed on by mistake). Each entry records this
    /// call as its install site and says it came from the caller.
    ///
    /// # Examples
    ///
    /// ```
    /// use milieu::remote::{Propagation, TraceContext};
    ///
    /// let incoming = Propagation::new().extract(&[], &[], &[]);
    /// let span = incoming.trace().context().span_id();
    /// let _guard = incoming.into_scope(milieu::scope()).enter();
    /// assert_eq!(milieu::get::<TraceContext>()?.span_id(), span);
    /// # Ok::<(), milieu::Missing>(())
    /// ```
    ///
    /// For a request from another process that brought context (see
    /// [`process_hop`](Incoming::process_hop)), it also adds the
    /// [`ProcessHop`] as an entry, and every entry it adds records the hop
    /// as its [`RemoteOrigin`] (with the caller's install site, when the
    /// caller sent it), which dumps and [`Missing`](crate::Missing) reports
    /// show.
    #[track_caller]
    pub fn into_scope(self, scope: Scope) -> Scope {
        let site = Location::caller();
        let hop = self.process_hop().map(Arc::new);
        // One origin for every entry the caller gave no install site for.
        let from_hop_only = hop
            .as_ref()
            .map(|hop| Arc::new(RemoteOrigin::new(Arc::clone(hop))));
        let from_hop = |scope: Scope| match &from_hop_only {
            Some(origin) => scope.carried_from_shared(origin),
            None => scope,
        };
        let mut scope = from_hop(
            scope
                .with_debug_at::<TraceContext>(self.trace.into_context(), site)
                .because(TRACE_REASON),
        );
        let caller = self.process.map(|p| p.caller).unwrap_or_default();
        for arrived in self.arrived {
            scope = (arrived.install)(scope, site).because(ARRIVED_REASON);
            if let Some(hop) = &hop {
                scope = match caller.site_of(arrived.key) {
                    Some(remote) => {
                        let mut origin = RemoteOrigin::new(Arc::clone(hop));
                        origin.site = Some(remote.site.clone());
                        origin.service = remote.service.clone();
                        scope.carried_from(origin)
                    }
                    None => from_hop(scope),
                };
            }
        }
        // Passed-on members only if there are some, or if an outer context
        // holds some that must not be passed on in this request's name.
        if !self.forwarded.is_empty() || crate::contains::<ForwardedBaggage>() {
            scope = from_hop(
                scope
                    .with_at(self.forwarded, site)
                    .because(FORWARDED_REASON),
            );
        }
        if let Some(hop) = hop {
            scope = from_hop(scope.with_arc_debug_at(hop, site).because(HOP_REASON));
        }
        scope
    }

    /// What [`into_scope`](Incoming::into_scope) adds for a request that
    /// brought nothing from a caller (no trace context, no baggage, no
    /// origin): a new trace, and an empty list of members to pass on if
    /// an outer context holds some. The same entries as
    /// `propagation.extract(&[], &[], &[]).into_scope(scope)`, without
    /// building the `Incoming` first: the servers take this path for
    /// nearly every request of a service that is not called by another.
    #[cfg(feature = "http")]
    #[track_caller]
    pub(crate) fn new_trace_into(scope: Scope) -> Scope {
        let site = Location::caller();
        let scope = scope
            .with_debug_at::<TraceContext>(TraceContext::new_root(), site)
            .because(TRACE_REASON);
        if crate::contains::<ForwardedBaggage>() {
            scope
                .with_at(ForwardedBaggage::new(Vec::new()), site)
                .because(FORWARDED_REASON)
        } else {
            scope
        }
    }

    /// [`new_trace_into`](Incoming::new_trace_into) for the tower layer's
    /// request frame, built without a scope: the same entries, their
    /// allocations kept from one request to the next. `forward_baggage`
    /// says whether an outer context holds members to pass on (asked
    /// before the frame is built: a lookup may not run while it is).
    #[cfg(feature = "tower")]
    pub(crate) fn new_trace_in(
        entries: &mut crate::context::RequestEntries<'_>,
        forward_baggage: bool,
    ) {
        entries.carry_debug(TraceContext::new_root(), TRACE_REASON);
        if forward_baggage {
            entries.carry(ForwardedBaggage::new(Vec::new()), FORWARDED_REASON);
        }
    }
}

/// A baggage member decoded into a context entry (installed by
/// [`Incoming::into_scope`]).
pub struct Arrived {
    key: &'static str,
    type_name: &'static str,
    install: Install,
}

impl Arrived {
    pub(super) fn new(key: &'static str, type_name: &'static str, install: Install) -> Arrived {
        Arrived {
            key,
            type_name,
            install,
        }
    }

    /// The member's key.
    pub fn key(&self) -> &'static str {
        self.key
    }

    /// The type of the entry.
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }
}

impl fmt::Debug for Arrived {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The value stays out of logs: baggage may be personal.
        f.debug_struct("Arrived")
            .field("key", &self.key)
            .field("type_name", &self.type_name)
            .finish_non_exhaustive()
    }
}

/// The baggage members of a request that no carried type reads, as a
/// context entry: [`Propagation::inject`](super::Propagation::inject)
/// passes them on to every request made in its scope, unchanged (the spec
/// asks that baggage be passed on).
///
/// # Examples
///
/// ```
/// use milieu::remote::{BaggageMember, ForwardedBaggage};
///
/// let forwarded = ForwardedBaggage::new(vec![BaggageMember::new("region", "eu")?]);
/// assert_eq!(forwarded.members()[0].encoded(), "region=eu");
/// # Ok::<(), milieu::remote::InvalidBaggageKey>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ForwardedBaggage {
    members: Vec<BaggageMember>,
}

impl ForwardedBaggage {
    /// These members, to pass on.
    pub fn new(members: Vec<BaggageMember>) -> ForwardedBaggage {
        ForwardedBaggage { members }
    }

    /// The members, in arrival order.
    pub fn members(&self) -> &[BaggageMember] {
        &self.members
    }

    /// How many members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

/// A baggage member that was not installed, or a part of the header that
/// was not read, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Declined {
    /// Outside the baggage grammar.
    Malformed(MalformedMember),
    /// A carried type's [`decode`](super::Baggage::decode) refused it.
    DecodeFailed {
        /// The key.
        key: &'static str,
        /// The carried type.
        type_name: &'static str,
        /// Its reason.
        error: DecodeError,
    },
    /// For a carried type, and its percent-escapes were not UTF-8 (see
    /// [`BaggageMember::is_lossy`]): decoding a changed value could make
    /// it mean something else, so it is not decoded.
    NotUtf8 {
        /// The key.
        key: &'static str,
        /// The carried type.
        type_name: &'static str,
    },
    /// A second member for a carried type's key: the first one counts.
    Duplicate {
        /// The key.
        key: &'static str,
        /// The carried type.
        type_name: &'static str,
    },
    /// The rest of the header, past the [`BaggageLimits`](super::BaggageLimits).
    Truncated(Truncated),
}

impl Declined {
    /// The member's key, where there is one.
    pub fn key(&self) -> Option<&str> {
        match self {
            Declined::Malformed(member) => member.key(),
            Declined::DecodeFailed { key, .. }
            | Declined::NotUtf8 { key, .. }
            | Declined::Duplicate { key, .. } => Some(key),
            Declined::Truncated(_) => None,
        }
    }
}

impl fmt::Display for Declined {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Declined::Malformed(member) => write!(f, "malformed {member}"),
            Declined::DecodeFailed {
                key,
                type_name,
                error,
            } => write!(f, "`{key}` not decoded as {type_name}: {error}"),
            Declined::NotUtf8 { key, type_name } => write!(
                f,
                "`{key}` not decoded as {type_name}: its percent-escapes are not UTF-8"
            ),
            Declined::Duplicate { key, type_name } => {
                write!(f, "`{key}` ({type_name}) sent again, the first one counts")
            }
            Declined::Truncated(truncated) => write!(f, "{truncated}"),
        }
    }
}

#[cfg(all(test, any(feature = "http", feature = "tower")))]
mod tests {
    use super::{ForwardedBaggage, Incoming};
    use crate::remote::Propagation;

    /// Type, policy and reason of each entry a scope installs, newest first.
    fn installed(scope: crate::Scope) -> Vec<(&'static str, String)> {
        let _guard = scope.enter();
        crate::dump()
            .entries()
            .filter(|entry| !entry.type_name.ends_with("Outer"))
            .map(|entry| {
                let reason = entry.provenance.reason.clone().unwrap_or_default();
                (entry.type_name, format!("{:?} {reason}", entry.policy))
            })
            .collect()
    }

    #[test]
    fn a_new_trace_installs_what_an_empty_extract_does() {
        let slow = || {
            Propagation::new()
                .extract(&[], &[], &[])
                .into_scope(crate::scope())
        };
        assert_eq!(
            installed(Incoming::new_trace_into(crate::scope())),
            installed(slow())
        );
        // Under an outer context that passes members on, both install an
        // empty list in its place.
        struct Outer;
        let _outer = crate::scope()
            .with(Outer)
            .with(ForwardedBaggage::new(Vec::new()))
            .enter();
        let fast = installed(Incoming::new_trace_into(crate::scope()));
        assert_eq!(fast, installed(slow()));
        assert!(
            fast.iter()
                .any(|(name, _)| name.ends_with("ForwardedBaggage")),
            "{fast:?}"
        );
    }
}
