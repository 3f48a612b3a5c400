//! What the clones of one [`Client`](super::Client) share: its settings
//! and its pool.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::pool::Pool;
use crate::http::{Headers, HttpLimits};
use crate::reactor::Handle;
use crate::remote::Propagation;

/// A hook applied to every outgoing request's header fields
/// ([`ClientBuilder::on_request`](super::ClientBuilder::on_request)).
pub(super) type RequestHook = Arc<dyn Fn(&mut Headers) + Send + Sync>;

/// A client's settings, fixed when it is built.
pub(super) struct Config {
    /// The reactor requests run on; `None`: the current one.
    pub(super) handle: Option<Handle>,
    pub(super) connect_timeout: Option<Duration>,
    pub(super) write_timeout: Option<Duration>,
    pub(super) read_timeout: Option<Duration>,
    /// The response limits; the size limits only are used (the chunked
    /// decoder takes them in this form).
    pub(super) limits: HttpLimits,
    /// Applied in order to each request's header fields.
    pub(super) hooks: Vec<RequestHook>,
    /// Writes the W3C trace context and baggage of the caller's context
    /// (before the hooks run); `None`: nothing is injected.
    pub(super) propagation: Option<Arc<Propagation>>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("handle", &self.handle)
            .field("connect_timeout", &self.connect_timeout)
            .field("write_timeout", &self.write_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("max_header_bytes", &self.limits.max_header_bytes())
            .field("max_headers", &self.limits.max_headers())
            .field("max_body", &self.limits.max_body())
            .field("hooks", &self.hooks.len())
            .field("propagation", &self.propagation)
            .finish()
    }
}

/// A client's settings and pool, shared by its clones and its requests.
#[derive(Debug)]
pub(super) struct ClientShared {
    pub(super) config: Config,
    pub(super) pool: Arc<Pool>,
}
