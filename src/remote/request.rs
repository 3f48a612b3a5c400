//! The request being handled, as a context entry: the same type whichever
//! server installs it, so handlers and what they call read it the same way
//! on milieu's reactor and behind hyper or axum.

use std::borrow::Cow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Range;
use std::sync::Arc;

use crate::Missing;

/// The request being handled: a [local](crate::dump::Policy::Local) context
/// entry that an HTTP server installs around the handler: milieu's own
/// ([`http::serve`](crate::http::serve)) and, for hyper and axum, the
/// tower layer (`milieu::tower::ContextLayer`, feature `tower`).
///
/// Local means it is visible to the handler's own code (an `async`
/// handler's too, on every poll) and never carried further: a
/// [`Context`](crate::Context) snapshot, a thread from
/// [`milieu::thread::spawn`](crate::thread::spawn) or a task spawned
/// from the handler do not see it, unless the handler hands it on
/// explicitly (`RequestInfo` is `Clone`, `Send` and `Sync`). A dump
/// taken past such a hop shows it as not carried.
///
/// # Examples
///
/// ```
/// use milieu::http::{self, Request, RequestInfo, Response};
/// use milieu::reactor::testing::Pair;
///
/// fn whoami(_request: Request) -> Response {
///     let info = RequestInfo::current().expect("installed by http::serve");
///     Response::text(200, format!("#{} {} {}", info.id(), info.method(), info.path()))
/// }
///
/// let app = http::serve(whoami);
/// let mut pair = Pair::new(move || app.clone())?;
/// let answer = pair.exchange(b"GET /me?x HTTP/1.1\r\nHost: h\r\n\r\n")?;
/// assert!(answer.ends_with(b"\r\n\r\n#1 GET /me"));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct RequestInfo {
    id: u64,
    method: Cow<'static, str>,
    /// The request's target, shared with the [`Request`] (not copied);
    /// behind the tower layer, its path only.
    target: Target,
    path: Range<usize>,
}

/// Where a [`RequestInfo`] keeps the text its path is read from.
#[derive(Clone)]
// Made only by the servers (features `http`, `tower`).
#[cfg_attr(not(any(feature = "http", feature = "tower")), allow(dead_code))]
enum Target {
    /// Shared with the server's request (milieu's own server), or a
    /// long path copied once.
    Shared(Arc<str>),
    /// A short path copied in place (the tower layer): most requests'
    /// entries then need no allocation of their own. `bytes[..len]` is
    /// the UTF-8 of a whole `str`.
    #[cfg(feature = "tower")]
    Inline {
        len: u8,
        bytes: [u8; Target::INLINE],
    },
}

impl Target {
    /// The longest path kept in place: the enum stays 32 bytes.
    #[cfg(feature = "tower")]
    const INLINE: usize = 30;

    /// `text` copied: in place if short enough, else into an `Arc`.
    #[cfg(feature = "tower")]
    fn copied(text: &str) -> Target {
        if text.len() > Target::INLINE {
            return Target::Shared(Arc::from(text));
        }
        let mut bytes = [0; Target::INLINE];
        bytes[..text.len()].copy_from_slice(text.as_bytes());
        Target::Inline {
            len: text.len() as u8,
            bytes,
        }
    }

    fn as_str(&self) -> &str {
        match self {
            Target::Shared(text) => text,
            #[cfg(feature = "tower")]
            // SAFETY: `bytes[..len]` was copied from a whole `str`
            // (`copied`) and never changes: valid UTF-8.
            Target::Inline { len, bytes } => unsafe {
                std::str::from_utf8_unchecked(&bytes[..usize::from(*len)])
            },
        }
    }
}

impl RequestInfo {
    /// The request the current code handles, from the context.
    ///
    /// # Errors
    ///
    /// [`Missing`] outside a request's handler, and past a hop
    /// (a thread, a task, a snapshot): the entry is local.
    #[track_caller]
    pub fn current() -> Result<RequestInfo, Missing> {
        crate::with(|info: &RequestInfo| info.clone())
    }

    /// The request's number: unique among the requests served by one
    /// server (or layer) value and its clones, counting from 1.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The request's method, as sent: `HEAD` still while
    /// [`http::serve`](crate::http::serve) hands a `HEAD` request to the
    /// handler as `GET`.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The request's path: the target without its query, `/` for an
    /// absolute URI without a path.
    pub fn path(&self) -> &str {
        path_in(self.target.as_str(), &self.path)
    }
}

/// Equal when id, method and path are (the query is not compared).
impl PartialEq for RequestInfo {
    fn eq(&self, other: &Self) -> bool {
        (self.id, self.method(), self.path()) == (other.id, other.method(), other.path())
    }
}

impl Eq for RequestInfo {}

impl Hash for RequestInfo {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.id, self.method(), self.path()).hash(state);
    }
}

impl fmt::Debug for RequestInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RequestInfo(#{} {} {})",
            self.id,
            self.method,
            self.path()
        )
    }
}

impl RequestInfo {
    /// A request's entry: `target` is the request-target as received,
    /// `path` its path's range in it.
    #[cfg(feature = "http")]
    pub(crate) fn new(
        id: u64,
        method: Cow<'static, str>,
        target: Arc<str>,
        path: Range<usize>,
    ) -> RequestInfo {
        RequestInfo {
            id,
            method,
            target: Target::Shared(target),
            path,
        }
    }

    /// A request's entry with its path copied (the tower layer, whose
    /// request keeps its target in its own type): in place when short.
    #[cfg(feature = "tower")]
    pub(crate) fn with_path(id: u64, method: Cow<'static, str>, path: &str) -> RequestInfo {
        RequestInfo {
            id,
            method,
            target: Target::copied(path),
            path: 0..path.len(),
        }
    }
}

/// The path at `range` of `target`.
pub(crate) fn path_in<'t>(target: &'t str, range: &Range<usize>) -> &'t str {
    match target.get(range.clone()) {
        // An absolute URI without a path (`http://host?q`) asks for `/`.
        Some("") if range.start > 0 => "/",
        path => path.unwrap_or_default(),
    }
}
