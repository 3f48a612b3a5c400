//! [`TraceContext`]: the W3C Trace Context of this process's unit of work,
//! and the spec's processing model for an incoming `traceparent` and
//! `tracestate` ([`TraceContext::extract`], which returns an
//! [`Extracted`]).

use std::fmt;

use super::ids::{hex_byte, SpanId, TraceFlags, TraceId};
use super::tracestate::{parse_list, TraceState, TraceStateError};

/// The W3C trace context of the current unit of work: which trace it
/// belongs to, its own span, the caller's span, the flags and the
/// vendors' `tracestate`.
///
/// Made by [`new_root`](TraceContext::new_root) (a new trace),
/// [`extract`](TraceContext::extract) (from a request's headers) or
/// [`child`](TraceContext::child) (a new span of the same trace, one per
/// outbound request). Written out with
/// [`traceparent`](TraceContext::traceparent) and
/// [`tracestate`](TraceContext::tracestate).
///
/// It is an ordinary context entry: install it with
/// [`milieu::provide`](crate::provide) or a [`Scope`](crate::Scope)
/// (`Propagation` does, see [`Incoming::into_scope`](super::Incoming::into_scope)),
/// read it with [`milieu::get`](crate::get). `Debug` prints the
/// `traceparent` form.
///
/// # Examples
///
/// ```
/// use milieu::remote::TraceContext;
///
/// let incoming = TraceContext::extract(
///     Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
///     &["congo=t61rcWkgMzE"],
/// );
/// assert!(incoming.is_continued());
/// let context = incoming.into_context();
/// assert_eq!(context.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert_eq!(context.parent_id().unwrap().to_string(), "00f067aa0ba902b7");
///
/// // An outbound request: a new span of the same trace, under ours.
/// let outbound = context.child();
/// assert_eq!(outbound.parent_id(), Some(context.span_id()));
/// assert!(outbound.traceparent().starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
/// assert_eq!(outbound.tracestate().as_deref(), Some("congo=t61rcWkgMzE"));
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TraceContext {
    trace_id: TraceId,
    span_id: SpanId,
    parent_id: Option<SpanId>,
    /// Known flags only (`TraceFlags::KNOWN`): the spec has the others sent
    /// as zero.
    flags: TraceFlags,
    state: TraceState,
}

impl TraceContext {
    /// A new trace: random trace and span ids, no parent, an empty
    /// `tracestate`, and the flags `SAMPLED | RANDOM`.
    ///
    /// `RANDOM` because the whole trace id is random (Trace Context Level
    /// 2 asks to say so). `SAMPLED` because milieu has no sampler: the
    /// flag tells the services downstream that this one may have recorded
    /// the trace, so they keep their part of it too. The ids are not
    /// cryptographic (see [`TraceId::random`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use milieu::remote::{TraceContext, TraceFlags};
    ///
    /// let root = TraceContext::new_root();
    /// assert_eq!(root.parent_id(), None);
    /// assert_eq!(root.flags(), TraceFlags::SAMPLED | TraceFlags::RANDOM);
    /// assert_eq!(root.traceparent().len(), 55);
    /// ```
    pub fn new_root() -> TraceContext {
        // Both ids from one use of the thread's generator (each id's own
        // `random` would take one each): a server makes one per request.
        let mut bytes = [0; 24];
        fastrand::fill(&mut bytes);
        let (trace, span) = bytes.split_at(16);
        let trace_id = trace.try_into().ok().and_then(TraceId::from_bytes);
        let span_id = span.try_into().ok().and_then(SpanId::from_bytes);
        TraceContext {
            // An all-zero id is invalid: one chance in 2^128 (2^64), and
            // then a new one is drawn.
            trace_id: trace_id.unwrap_or_else(TraceId::random),
            span_id: span_id.unwrap_or_else(SpanId::random),
            parent_id: None,
            flags: TraceFlags::SAMPLED | TraceFlags::RANDOM,
            state: TraceState::new(),
        }
    }

    /// The context of a unit of work that continues a remote caller's
    /// trace: the caller's trace id, flags (known ones only) and state,
    /// a new random span id, and `parent` (the caller's span) as parent.
    ///
    /// [`extract`](TraceContext::extract) makes one from headers; this is
    /// for transports that carry the fields some other way.
    pub fn continue_from(
        trace_id: TraceId,
        parent: SpanId,
        flags: TraceFlags,
        state: TraceState,
    ) -> TraceContext {
        TraceContext {
            trace_id,
            span_id: SpanId::random(),
            parent_id: Some(parent),
            flags: flags.known(),
            state,
        }
    }

    /// The context of exactly these fields, for a span made elsewhere (an
    /// OpenTelemetry span: see `otel.rs`). Reserved flags are
    /// dropped, as everywhere.
    #[cfg_attr(not(feature = "opentelemetry"), allow(dead_code))]
    pub(super) fn from_parts(
        trace_id: TraceId,
        span_id: SpanId,
        parent_id: Option<SpanId>,
        flags: TraceFlags,
        state: TraceState,
    ) -> TraceContext {
        TraceContext {
            trace_id,
            span_id,
            parent_id,
            flags: flags.known(),
            state,
        }
    }

    /// The spec's processing model for a request that carried at most one
    /// `traceparent` (`None`: it had none) and the `tracestate` fields
    /// listed, in order.
    ///
    /// - A valid `traceparent` continues the caller's trace: the result is
    ///   [`continue_from`](TraceContext::continue_from) the caller's span,
    ///   with the parsed `tracestate` (or an empty one if it is invalid,
    ///   which [`Extracted::tracestate_issue`] reports).
    /// - No `traceparent` starts a new trace
    ///   ([`new_root`](TraceContext::new_root)); an invalid one restarts
    ///   it, and [`Extracted::origin`] says why. Either way the
    ///   `tracestate` is not looked at (the spec forbids parsing it
    ///   without a valid `traceparent`).
    ///
    /// The `traceparent` rules (Trace Context Level 2): lowercase hex
    /// only; spaces and tabs around the value are ignored; version `ff`
    /// is invalid; version `00` is exactly 55 characters; a higher version
    /// is read from its first 55 characters if the rest is empty or starts
    /// with `-`, and answered in version `00`; an all-zero trace id or
    /// parent id is invalid. Flags other than `SAMPLED` and `RANDOM` are
    /// dropped.
    ///
    /// Never fails and never panics: a problem is in the result, for the
    /// caller to log.
    ///
    /// # Examples
    ///
    /// ```
    /// use milieu::remote::{TraceContext, TraceOrigin, TraceparentError};
    ///
    /// let future = TraceContext::extract(
    ///     Some("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-will-be-like"),
    ///     &[],
    /// );
    /// assert!(future.is_continued());
    ///
    /// let refused = TraceContext::extract(
    ///     Some("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    ///     &["congo=t61rcWkgMzE"],
    /// );
    /// assert_eq!(refused.origin(), &TraceOrigin::Restarted(TraceparentError::VersionFf));
    /// assert!(refused.context().state().is_empty());
    /// ```
    pub fn extract(traceparent: Option<&str>, tracestate: &[&str]) -> Extracted {
        let Some(traceparent) = traceparent else {
            return Extracted::new_trace(TraceOrigin::Started, tracestate);
        };
        match parse_traceparent(traceparent) {
            Err(err) => Extracted::new_trace(TraceOrigin::Restarted(err), tracestate),
            Ok((trace_id, parent, flags)) => {
                let (state, issue) = match parse_list(tracestate) {
                    Ok(parsed) => {
                        let issue =
                            (parsed.duplicates > 0).then_some(TraceStateIssue::DuplicatesDropped {
                                count: parsed.duplicates,
                            });
                        (parsed.state, issue)
                    }
                    Err(err) => (TraceState::new(), Some(TraceStateIssue::Discarded(err))),
                };
                Extracted {
                    context: TraceContext::continue_from(trace_id, parent, flags, state),
                    origin: TraceOrigin::Continued,
                    tracestate: issue,
                }
            }
        }
    }

    /// [`extract`](TraceContext::extract) from every `traceparent` field
    /// of a request: none starts a trace, one is parsed, and several make
    /// the request's trace context invalid
    /// ([`TraceparentError::Multiple`]), so the trace restarts.
    ///
    /// # Examples
    ///
    /// ```
    /// use milieu::remote::{TraceContext, TraceOrigin, TraceparentError};
    ///
    /// let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    /// assert!(TraceContext::extract_all(&[tp], &[]).is_continued());
    /// assert_eq!(
    ///     TraceContext::extract_all(&[tp, tp], &[]).origin(),
    ///     &TraceOrigin::Restarted(TraceparentError::Multiple { count: 2 })
    /// );
    /// ```
    pub fn extract_all(traceparent: &[&str], tracestate: &[&str]) -> Extracted {
        match traceparent {
            [] => TraceContext::extract(None, tracestate),
            [one] => TraceContext::extract(Some(one), tracestate),
            several => Extracted::new_trace(
                TraceOrigin::Restarted(TraceparentError::Multiple {
                    count: several.len(),
                }),
                tracestate,
            ),
        }
    }

    /// A new span of the same trace under this one: a new random span id,
    /// this span as parent, the same flags and state. Make one per
    /// outbound request.
    pub fn child(&self) -> TraceContext {
        let span_id = loop {
            // A child must not reuse its parent's id (a 2^-64 chance).
            let id = SpanId::random();
            if id != self.span_id {
                break id;
            }
        };
        TraceContext {
            trace_id: self.trace_id,
            span_id,
            parent_id: Some(self.span_id),
            flags: self.flags,
            state: self.state.clone(),
        }
    }

    /// This context with another `tracestate`: how a tracing vendor adds
    /// or updates its own member (see [`TraceState::with`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use milieu::remote::TraceContext;
    ///
    /// let context = TraceContext::new_root();
    /// let context = context.with_state(context.state().with("acme", "7")?);
    /// assert_eq!(context.tracestate().as_deref(), Some("acme=7"));
    /// # Ok::<(), milieu::remote::TraceStateError>(())
    /// ```
    pub fn with_state(&self, state: TraceState) -> TraceContext {
        TraceContext {
            state,
            ..self.clone()
        }
    }

    /// The `traceparent` header value for a request made by this span:
    /// `00-<trace id>-<span id>-<flags>`, always version `00`.
    pub fn traceparent(&self) -> String {
        // Written byte by byte rather than through `format!`: a client
        // writes one for every request it sends.
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut text = *b"00-00000000000000000000000000000000-0000000000000000-00";
        let (trace, span) = (self.trace_id.to_bytes(), self.span_id.to_bytes());
        let fields = [
            (3, &trace[..]),
            (36, &span[..]),
            (53, &[self.flags.bits()][..]),
        ];
        for (start, bytes) in fields {
            for (i, byte) in bytes.iter().enumerate() {
                text[start + 2 * i] = DIGITS[usize::from(byte >> 4)];
                text[start + 2 * i + 1] = DIGITS[usize::from(byte & 0x0f)];
            }
        }
        // Only ASCII was written.
        String::from_utf8_lossy(&text).into_owned()
    }

    /// The `tracestate` header value, or `None` when the state is empty
    /// (or has no member that fits: see [`TraceState::header`]).
    pub fn tracestate(&self) -> Option<String> {
        self.state.header()
    }

    /// The trace this unit of work belongs to.
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// This unit of work's span: the `parent-id` of the requests it makes.
    pub fn span_id(&self) -> SpanId {
        self.span_id
    }

    /// The span of the caller (`None` for the root of a trace).
    pub fn parent_id(&self) -> Option<SpanId> {
        self.parent_id
    }

    /// The trace flags (`SAMPLED`, `RANDOM`).
    pub fn flags(&self) -> TraceFlags {
        self.flags
    }

    /// The vendors' `tracestate`.
    pub fn state(&self) -> &TraceState {
        &self.state
    }
}

impl fmt::Debug for TraceContext {
    /// `TraceContext(00-<trace>-<span>-<flags>, parent <span>, tracestate <list>)`,
    /// the last two when present.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TraceContext(00-{}-{}-{}",
            self.trace_id, self.span_id, self.flags
        )?;
        if let Some(parent) = self.parent_id {
            write!(f, ", parent {parent}")?;
        }
        if !self.state.is_empty() {
            write!(f, ", tracestate {:?}", self.state)?;
        }
        f.write_str(")")
    }
}

/// What [`TraceContext::extract`] made of a request's headers: the
/// context for this unit of work and whether (and why not) it continues
/// the caller's trace.
///
/// # Examples
///
/// ```
/// use milieu::remote::{TraceContext, TraceOrigin, TraceparentError};
///
/// let extracted = TraceContext::extract(
///     Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
///     &[],
/// );
/// assert_eq!(extracted.origin(), &TraceOrigin::Restarted(TraceparentError::ZeroTraceId));
/// assert_eq!(
///     extracted.warning().as_deref(),
///     Some("traceparent refused (trace id is all zeros): a new trace was started")
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extracted {
    context: TraceContext,
    origin: TraceOrigin,
    tracestate: Option<TraceStateIssue>,
}

impl Extracted {
    /// A new root, and `tracestate` ignored (if there was any).
    fn new_trace(origin: TraceOrigin, tracestate: &[&str]) -> Extracted {
        // Only whether a member was there: the spec forbids parsing it.
        let sent = tracestate
            .iter()
            .any(|field| field.bytes().any(|b| !matches!(b, b' ' | b'\t' | b',')));
        Extracted {
            context: TraceContext::new_root(),
            origin,
            tracestate: sent.then_some(TraceStateIssue::Ignored),
        }
    }

    /// The context for this unit of work.
    pub fn context(&self) -> &TraceContext {
        &self.context
    }

    /// The context for this unit of work, by value.
    pub fn into_context(self) -> TraceContext {
        self.context
    }

    /// Whether the caller's trace continues, started or restarted.
    pub fn origin(&self) -> &TraceOrigin {
        &self.origin
    }

    /// Whether the caller's trace continues.
    pub fn is_continued(&self) -> bool {
        self.origin == TraceOrigin::Continued
    }

    /// What went wrong with the `tracestate`, if anything.
    pub fn tracestate_issue(&self) -> Option<&TraceStateIssue> {
        self.tracestate.as_ref()
    }

    /// One line for a log warning when the caller sent something that was
    /// refused or not used, or `None` when nothing was (a missing
    /// `traceparent` is the normal start of a trace, not a warning).
    pub fn warning(&self) -> Option<String> {
        let traceparent = match &self.origin {
            TraceOrigin::Restarted(err) => Some(format!(
                "traceparent refused ({err}): a new trace was started"
            )),
            TraceOrigin::Continued | TraceOrigin::Started => None,
        };
        let tracestate = self.tracestate.as_ref().map(|issue| issue.to_string());
        match (traceparent, tracestate) {
            (Some(a), Some(b)) => Some(format!("{a}; {b}")),
            (one, other) => one.or(other),
        }
    }
}

/// Whether an [`Extracted`] context continues the caller's trace.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TraceOrigin {
    /// A valid `traceparent`: same trace, the caller's span as parent.
    Continued,
    /// No `traceparent`: a new trace, as at the edge of a system.
    Started,
    /// An invalid `traceparent`: a new trace instead, and this is why.
    Restarted(TraceparentError),
}

/// Why a `traceparent` is invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TraceparentError {
    /// The request had several `traceparent` fields.
    Multiple {
        /// How many.
        count: usize,
    },
    /// The value does not start with 2 lowercase hex digits and `-`.
    Version,
    /// Version `ff`, which the spec forbids.
    VersionFf,
    /// Version `00` and not 55 characters, or a higher version and fewer.
    Length {
        /// The length received, spaces and tabs around it not counted.
        len: usize,
    },
    /// No `-` after the trace id or the parent id.
    Delimiter,
    /// The trace id is not 32 lowercase hex digits.
    TraceId,
    /// The trace id is all zeros.
    ZeroTraceId,
    /// The parent id is not 16 lowercase hex digits.
    ParentId,
    /// The parent id is all zeros.
    ZeroParentId,
    /// The flags are not 2 lowercase hex digits.
    Flags,
    /// A higher version with something other than `-` after the flags.
    Trailing,
}

impl fmt::Display for TraceparentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceparentError::Multiple { count } => {
                write!(f, "{count} traceparent fields, at most one is allowed")
            }
            TraceparentError::Version => {
                f.write_str("version is not 2 lowercase hex digits followed by `-`")
            }
            TraceparentError::VersionFf => f.write_str("version ff is forbidden"),
            TraceparentError::Length { len } => write!(
                f,
                "{len} characters, version 00 has exactly 55 and later versions at least 55"
            ),
            TraceparentError::Delimiter => f.write_str("fields are not separated by `-`"),
            TraceparentError::TraceId => f.write_str("trace id is not 32 lowercase hex digits"),
            TraceparentError::ZeroTraceId => f.write_str("trace id is all zeros"),
            TraceparentError::ParentId => f.write_str("parent id is not 16 lowercase hex digits"),
            TraceparentError::ZeroParentId => f.write_str("parent id is all zeros"),
            TraceparentError::Flags => f.write_str("flags are not 2 lowercase hex digits"),
            TraceparentError::Trailing => {
                f.write_str("a later version has something other than `-` after the flags")
            }
        }
    }
}

impl std::error::Error for TraceparentError {}

/// What happened to a request's `tracestate`, when not simply used.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TraceStateIssue {
    /// It came without a valid `traceparent`, so it was not looked at.
    Ignored,
    /// It was invalid, so all of it was discarded.
    Discarded(TraceStateError),
    /// Members whose key came earlier in the list were dropped; the rest
    /// was kept.
    DuplicatesDropped {
        /// How many members were dropped.
        count: usize,
    },
}

impl fmt::Display for TraceStateIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceStateIssue::Ignored => f.write_str("tracestate ignored (no valid traceparent)"),
            TraceStateIssue::Discarded(err) => write!(f, "tracestate discarded ({err})"),
            TraceStateIssue::DuplicatesDropped { count } => write!(
                f,
                "tracestate: {count} member(s) with a key seen earlier in the list dropped"
            ),
        }
    }
}

/// The ids and flags of a `traceparent` value (see
/// [`TraceContext::extract`] for the rules).
fn parse_traceparent(value: &str) -> Result<(TraceId, SpanId, TraceFlags), TraceparentError> {
    // The value is `&str`, so a slice could fall inside a multi-byte
    // character: `str::get` answers `None` there instead of panicking, and
    // such a value is invalid anyway.
    let value = value.trim_matches([' ', '\t']);
    let bytes = value.as_bytes();
    if bytes.get(2) != Some(&b'-') {
        return Err(TraceparentError::Version);
    }
    let version = value
        .get(..2)
        .and_then(|digits| hex_byte(digits.as_bytes()))
        .ok_or(TraceparentError::Version)?;
    if version == 0xff {
        return Err(TraceparentError::VersionFf);
    }
    let len = bytes.len();
    if (version == 0 && len != 55) || len < 55 {
        return Err(TraceparentError::Length { len });
    }
    if bytes[35] != b'-' || bytes[52] != b'-' {
        return Err(TraceparentError::Delimiter);
    }
    // A later version may add fields, after a `-`.
    if len > 55 && bytes[55] != b'-' {
        return Err(TraceparentError::Trailing);
    }
    let trace_id = value
        .get(3..35)
        .ok_or(TraceparentError::TraceId)?
        .parse::<TraceId>()
        .map_err(|err| match err.is_all_zero() {
            true => TraceparentError::ZeroTraceId,
            false => TraceparentError::TraceId,
        })?;
    let parent = value
        .get(36..52)
        .ok_or(TraceparentError::ParentId)?
        .parse::<SpanId>()
        .map_err(|err| match err.is_all_zero() {
            true => TraceparentError::ZeroParentId,
            false => TraceparentError::ParentId,
        })?;
    let flags = value
        .get(53..55)
        .and_then(|digits| hex_byte(digits.as_bytes()))
        .ok_or(TraceparentError::Flags)?;
    Ok((trace_id, parent, TraceFlags::from_bits(flags)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "12345678901234567890123456789012";
    const PARENT: &str = "1234567890123456";

    /// A new root's two ids come from one draw of the generator: each is
    /// valid (not all zero) and differs from every other root's.
    #[test]
    fn new_roots_have_ids_of_their_own() {
        let roots: Vec<TraceContext> = (0..1000).map(|_| TraceContext::new_root()).collect();
        let traces: std::collections::HashSet<_> = roots.iter().map(|r| r.trace_id()).collect();
        let spans: std::collections::HashSet<_> = roots.iter().map(|r| r.span_id()).collect();
        assert_eq!((traces.len(), spans.len()), (1000, 1000));
        for root in &roots {
            // The span id is not the trace id's last 8 bytes.
            assert_ne!(root.trace_id().to_bytes()[8..], root.span_id().to_bytes());
            assert_eq!(root.parent_id(), None);
        }
    }

    fn refused(traceparent: &str) -> TraceparentError {
        match TraceContext::extract(Some(traceparent), &[]).origin {
            TraceOrigin::Restarted(err) => err,
            other => panic!("{traceparent:?} was not refused: {other:?}"),
        }
    }

    fn continued(traceparent: &str) -> TraceContext {
        let extracted = TraceContext::extract(Some(traceparent), &[]);
        assert!(extracted.is_continued(), "{traceparent:?}: {extracted:?}");
        extracted.into_context()
    }

    #[test]
    fn a_valid_traceparent_continues_the_trace_under_a_new_span() {
        let context = continued(&format!("00-{TRACE}-{PARENT}-01"));
        assert_eq!(context.trace_id().to_string(), TRACE);
        assert_eq!(context.parent_id().unwrap().to_string(), PARENT);
        assert_ne!(context.span_id().to_string(), PARENT);
        assert_eq!(context.flags(), TraceFlags::SAMPLED);
    }

    #[test]
    fn spaces_and_tabs_around_the_value_are_ignored() {
        for value in [
            " 00-{T}-{P}-01",
            "\t00-{T}-{P}-01",
            "00-{T}-{P}-01 \t",
            "\t 00-{T}-{P}-01 \t",
        ] {
            continued(&value.replace("{T}", TRACE).replace("{P}", PARENT));
        }
    }

    #[test]
    fn version_00_must_be_exactly_55_characters() {
        assert_eq!(
            refused(&format!("00-{TRACE}-{PARENT}-01.")),
            TraceparentError::Length { len: 56 }
        );
        assert_eq!(
            refused(&format!(
                "00-{TRACE}-{PARENT}-01-what-the-future-will-be-like"
            )),
            TraceparentError::Length { len: 84 }
        );
        assert_eq!(
            refused(&format!("00-{TRACE}-{PARENT}-1")),
            TraceparentError::Length { len: 54 }
        );
    }

    #[test]
    fn a_higher_version_is_read_from_its_first_55_characters() {
        continued(&format!("cc-{TRACE}-{PARENT}-01"));
        continued(&format!(
            "cc-{TRACE}-{PARENT}-01-what-the-future-will-be-like"
        ));
        assert_eq!(
            refused(&format!(
                "cc-{TRACE}-{PARENT}-01.what-the-future-will-be-like"
            )),
            TraceparentError::Trailing
        );
        assert_eq!(
            refused(&format!("cc-{TRACE}-{PARENT}-1")),
            TraceparentError::Length { len: 54 }
        );
    }

    #[test]
    fn bad_versions_are_refused() {
        assert_eq!(
            refused(&format!("ff-{TRACE}-{PARENT}-01")),
            TraceparentError::VersionFf
        );
        for version in [".0", "0.", "000", "0000", "0", "0A", "Cc"] {
            assert_eq!(
                refused(&format!("{version}-{TRACE}-{PARENT}-01")),
                TraceparentError::Version,
                "{version}"
            );
        }
        assert_eq!(refused(""), TraceparentError::Version);
    }

    #[test]
    fn bad_ids_are_refused() {
        let zero_trace = "0".repeat(32);
        let zero_parent = "0".repeat(16);
        assert_eq!(
            refused(&format!("00-{zero_trace}-{PARENT}-01")),
            TraceparentError::ZeroTraceId
        );
        assert_eq!(
            refused(&format!("00-{TRACE}-{zero_parent}-01")),
            TraceparentError::ZeroParentId
        );
        assert_eq!(
            refused(&format!("00-.2345678901234567890123456789012-{PARENT}-01")),
            TraceparentError::TraceId
        );
        assert_eq!(
            refused(&format!(
                "00-{}-{PARENT}-01",
                TRACE.to_uppercase().replace('1', "A")
            )),
            TraceparentError::TraceId
        );
        assert_eq!(
            refused(&format!("00-{TRACE}-123456789012345.-01")),
            TraceparentError::ParentId
        );
        // One digit too many or too few shifts a delimiter.
        assert_eq!(
            refused(&format!("00-{TRACE}3-{PARENT}-01")),
            TraceparentError::Length { len: 56 }
        );
        assert_eq!(
            refused(&format!("00-{TRACE}-{PARENT}7-0")),
            TraceparentError::Delimiter
        );
    }

    #[test]
    fn bad_flags_are_refused_and_unknown_flags_dropped() {
        assert_eq!(
            refused(&format!("00-{TRACE}-{PARENT}-.0")),
            TraceparentError::Flags
        );
        assert_eq!(
            refused(&format!("00-{TRACE}-{PARENT}-0.")),
            TraceparentError::Flags
        );
        assert_eq!(
            refused(&format!("00-{TRACE}-{PARENT}-0F")),
            TraceparentError::Flags
        );
        assert_eq!(
            continued(&format!("00-{TRACE}-{PARENT}-ff")).flags(),
            TraceFlags::KNOWN
        );
        assert_eq!(
            continued(&format!("00-{TRACE}-{PARENT}-02")).flags(),
            TraceFlags::RANDOM
        );
    }

    #[test]
    fn multibyte_characters_never_panic() {
        let value = format!("00-{}é-{PARENT}-01", &TRACE[..31]);
        assert_eq!(value.len(), 56);
        refused(&value);
        refused("é-");
        refused(&format!("00-{TRACE}-{PARENT}-é"));
        refused(&format!("cc-{TRACE}-{PARENT}-0é"));
    }

    #[test]
    fn tracestate_is_kept_discarded_or_ignored() {
        let tp = format!("00-{TRACE}-{PARENT}-00");
        let kept = TraceContext::extract(Some(&tp), &["foo=1", "bar=2"]);
        assert_eq!(kept.context().tracestate().as_deref(), Some("foo=1,bar=2"));
        assert_eq!(kept.tracestate_issue(), None);
        assert_eq!(kept.warning(), None);

        let discarded = TraceContext::extract(Some(&tp), &["foo=1", "BAR=2"]);
        assert!(discarded.is_continued());
        assert!(discarded.context().state().is_empty());
        assert_eq!(
            discarded.tracestate_issue(),
            Some(&TraceStateIssue::Discarded(TraceStateError::InvalidKey {
                index: 1
            }))
        );

        let ignored = TraceContext::extract(Some("garbage"), &["foo=1"]);
        assert_eq!(ignored.tracestate_issue(), Some(&TraceStateIssue::Ignored));
        assert!(ignored.context().state().is_empty());
        assert_eq!(
            ignored.warning().as_deref(),
            Some(
                "traceparent refused (version is not 2 lowercase hex digits followed by `-`): \
                 a new trace was started; tracestate ignored (no valid traceparent)"
            )
        );

        let started = TraceContext::extract(None, &[" , "]);
        assert_eq!(started.origin(), &TraceOrigin::Started);
        assert_eq!(started.warning(), None, "an empty tracestate is no news");

        let duplicated = TraceContext::extract(Some(&tp), &["foo=1,foo=2"]);
        assert_eq!(duplicated.context().tracestate().as_deref(), Some("foo=1"));
        assert_eq!(
            duplicated.tracestate_issue(),
            Some(&TraceStateIssue::DuplicatesDropped { count: 1 })
        );
    }

    #[test]
    fn several_traceparents_restart_the_trace() {
        let a = format!("00-{TRACE}-{PARENT}-01");
        let extracted = TraceContext::extract_all(&[&a, &a], &["foo=1"]);
        assert_eq!(
            extracted.origin(),
            &TraceOrigin::Restarted(TraceparentError::Multiple { count: 2 })
        );
        assert_ne!(extracted.context().trace_id().to_string(), TRACE);
        assert_eq!(
            extracted.tracestate_issue(),
            Some(&TraceStateIssue::Ignored)
        );
        assert_eq!(
            TraceContext::extract_all(&[], &[]).origin(),
            &TraceOrigin::Started
        );
    }

    #[test]
    fn children_share_the_trace_flags_and_state_with_new_spans() {
        let parent = continued(&format!("00-{TRACE}-{PARENT}-03"))
            .with_state(TraceState::parse(&["a=1"]).unwrap());
        let one = parent.child();
        let two = parent.child();
        assert_eq!(one.trace_id(), parent.trace_id());
        assert_eq!(one.parent_id(), Some(parent.span_id()));
        assert_ne!(one.span_id(), two.span_id());
        assert_eq!(one.flags(), TraceFlags::KNOWN);
        assert_eq!(one.state(), parent.state());
    }

    #[test]
    fn the_traceparent_is_version_00_and_parses_back() {
        let root = TraceContext::new_root();
        let text = root.traceparent();
        assert_eq!(
            text,
            format!("00-{}-{}-03", root.trace_id(), root.span_id())
        );
        let back = continued(&text);
        assert_eq!(back.trace_id(), root.trace_id());
        assert_eq!(back.parent_id(), Some(root.span_id()));
        assert_eq!(back.flags(), root.flags());
    }

    #[test]
    fn debug_prints_the_traceparent_form() {
        let context = continued(&format!("00-{TRACE}-{PARENT}-01"))
            .with_state(TraceState::parse(&["a=1"]).unwrap());
        let debug = format!("{context:?}");
        assert_eq!(
            debug,
            format!(
                "TraceContext(00-{TRACE}-{}-01, parent {PARENT}, tracestate TraceState(a=1))",
                context.span_id()
            )
        );
    }
}
