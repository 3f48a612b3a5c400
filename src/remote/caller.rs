//! The server's side of a process boundary, shared by every server milieu
//! has (its own HTTP server, the tower layer): the entries a request
//! brings in its header fields, and the context its handler's later polls
//! enter.

use std::borrow::Cow;

#[cfg(feature = "http")]
use super::Incoming;
use super::Propagation;
#[cfg(feature = "http")]
use crate::Context;
use crate::Scope;

/// The values of one field, in the order they came (see [`from_caller`]).
fn values_of<'a>(found: &'a [(Field, Cow<'_, str>)], field: Field) -> Vec<&'a str> {
    let of_field = found.iter().filter(|(f, _)| *f == field);
    of_field.map(|(_, value)| &**value).collect()
}

/// The entries a request brings from its caller, read from its header
/// fields (`headers`: name and raw value), to install around the
/// handler's first call; `peer` names the caller's address, and is asked
/// only when the request brings context (a process hop records it).
/// Warnings about what was refused go to `span`, at `target`.
#[cfg(feature = "http")]
#[inline]
pub(crate) fn from_caller<'h>(
    propagation: &Propagation,
    headers: impl IntoIterator<Item = (&'h str, &'h [u8])>,
    peer: impl FnOnce() -> Option<String>,
    span: &tracing::Span,
) -> Scope {
    // Nothing from a caller: a new trace, no warning, and no process hop
    // to record (nor a peer address to format). Room for the trace
    // context, an empty forwarded list and the server's `RequestInfo`.
    caller_scope(propagation, headers, peer, span)
        .unwrap_or_else(|| Incoming::new_trace_into(crate::context::scope_with_capacity(3)))
}

/// [`from_caller`]'s entries for a request that brings context from its
/// caller (any of the W3C fields, or an origin); `None` for one that
/// brings none, for which the server starts a new trace
/// ([`Incoming::new_trace_in`] in the tower layer's request frame).
#[inline]
pub(crate) fn caller_scope<'h>(
    propagation: &Propagation,
    headers: impl IntoIterator<Item = (&'h str, &'h [u8])>,
    peer: impl FnOnce() -> Option<String>,
    span: &tracing::Span,
) -> Option<Scope> {
    // One pass over the fields, every request: most carry none of these,
    // and then nothing is allocated. One list for the four fields, so such
    // a request also drops one empty vector, not four.
    let mut found: Vec<(Field, Cow<'h, str>)> = Vec::new();
    for (name, value) in headers {
        let field = match name.len() {
            11 if name.eq_ignore_ascii_case(Propagation::TRACEPARENT) => Field::Traceparent,
            10 if name.eq_ignore_ascii_case(Propagation::TRACESTATE) => Field::Tracestate,
            7 if name.eq_ignore_ascii_case(Propagation::BAGGAGE) => Field::Baggage,
            13 if name.eq_ignore_ascii_case(Propagation::ORIGIN) => Field::Origin,
            _ => continue,
        };
        // Bytes that are not UTF-8 become U+FFFD: the member (or the
        // `traceparent`) holding them is refused like any malformed one,
        // and its neighbours in the same field survive.
        found.push((field, String::from_utf8_lossy(value)));
    }
    if found.is_empty() {
        return None;
    }
    let (traceparent, tracestate, baggage, origin) = (
        values_of(&found, Field::Traceparent),
        values_of(&found, Field::Tracestate),
        values_of(&found, Field::Baggage),
        values_of(&found, Field::Origin),
    );
    let peer = peer();
    let incoming = propagation.extract_process(
        &traceparent,
        &tracestate,
        &baggage,
        &origin,
        peer.as_deref(),
    );
    if let Some(warning) = incoming.warning() {
        tracing::warn!(target: "milieu::remote", parent: span, "{warning}");
    }
    let incoming_entries = incoming.entries();
    // Room for the caller's entries and the server's `RequestInfo`, so the scope's vector is allocated once.
    Some(incoming.into_scope(crate::context::scope_with_capacity(incoming_entries + 1)))
}

/// The header fields [`from_caller`] reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    Traceparent,
    Tracestate,
    Baggage,
    Origin,
}

/// What a request brought from its caller, for the handler's later calls
/// and polls: the milieu context and, with the
/// `opentelemetry` feature, the same trace context as an OpenTelemetry
/// context. Both are entered together.
#[cfg(feature = "http")]
pub(crate) struct FromCaller {
    #[cfg(feature = "opentelemetry")]
    pub(crate) opentelemetry: opentelemetry::Context,
    pub(crate) context: Context,
}

/// [`FromCaller`] entered: both contexts are current until it drops.
/// Fields drop in order, so OpenTelemetry's is left first, in the reverse
/// order of entering.
#[cfg(feature = "http")]
pub(crate) struct EnteredFromCaller {
    #[cfg(feature = "opentelemetry")]
    _opentelemetry: opentelemetry::ContextGuard,
    _context: crate::Guard,
}

#[cfg(feature = "http")]
impl FromCaller {
    /// The current context, as a handler's calls and polls enter it.
    pub(crate) fn current() -> FromCaller {
        FromCaller {
            // Made once per request, then only attached: the conversion
            // and its allocation are not paid again on every poll.
            #[cfg(feature = "opentelemetry")]
            opentelemetry: crate::remote::otel::context(),
            context: Context::current(),
        }
    }

    /// Makes the caller's context current (milieu's, then OpenTelemetry's)
    /// until the result drops.
    #[cfg(feature = "http")]
    #[track_caller]
    #[inline]
    pub(crate) fn enter(&self) -> EnteredFromCaller {
        let context = self.context.enter();
        EnteredFromCaller {
            // A clone is reference counts.
            #[cfg(feature = "opentelemetry")]
            _opentelemetry: self.opentelemetry.clone().attach(),
            _context: context,
        }
    }
}
