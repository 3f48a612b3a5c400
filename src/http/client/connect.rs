//! Opening a connection to an origin: the host resolved off the reactor
//! thread (unless it is an IP address), then each address tried in turn.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use super::error::ClientError;
use super::exchange::within;
use super::url::{Host, Origin};
use crate::reactor::{Connection, Handle};
use crate::Context;

/// Resolves `origin`'s host and connects to its first address that
/// accepts, within `timeout` for the whole.
///
/// A name is resolved with `std`'s `ToSocketAddrs` (the system resolver,
/// `getaddrinfo`) on the reactor's thread pool
/// ([`Handle::defer_to_thread`]), as it blocks; an IP address is used as
/// it is. Addresses are tried in the resolver's order, each once.
///
/// The connection is opened in an empty context (plus the reactor's
/// handle): a pooled connection outlives the request that opened it, and
/// must not keep that request's context entries alive.
///
/// # Errors
///
/// [`ClientError::Resolve`], [`ClientError::Connect`] (the last address
/// tried), or [`ClientError::ConnectTimeout`].
pub(super) async fn connect(
    handle: &Handle,
    origin: &Origin,
    timeout: Option<Duration>,
) -> Result<Connection, ClientError> {
    let attempt = async {
        let addrs = resolve(handle, origin).await?;
        let mut last = None;
        for addr in addrs {
            let connect = Context::empty().run(|| handle.connect_tcp(addr));
            match connect.await {
                Ok(connection) => return Ok(connection),
                Err(error) => last = Some(ClientError::Connect { addr, error }),
            }
        }
        // `resolve` returns one address at least.
        Err(last.unwrap_or_else(|| ClientError::Resolve {
            host: host_name(origin),
            error: io::Error::new(io::ErrorKind::NotFound, "no address"),
        }))
    };
    within(handle, timeout, attempt)
        .await
        .map_err(|_| ClientError::ConnectTimeout {
            after: timeout.unwrap_or_default(),
        })?
}

/// The addresses of `origin`: its IP address, or what its name resolves
/// to (at least one).
async fn resolve(handle: &Handle, origin: &Origin) -> Result<Vec<SocketAddr>, ClientError> {
    if let Some(addr) = origin.socket_addr() {
        return Ok(vec![addr]);
    }
    let host = host_name(origin);
    let port = origin.port();
    let name = host.clone();
    let lookup = handle.defer_to_thread(move || {
        (name.as_str(), port)
            .to_socket_addrs()
            .map(Iterator::collect::<Vec<_>>)
    });
    let resolved = match lookup.await {
        Ok(resolved) => resolved,
        // The lookup panicked (logged by the pool) or the reactor went.
        Err(error) => Err(io::Error::other(error)),
    };
    match resolved {
        Ok(addrs) if !addrs.is_empty() => Ok(addrs),
        Ok(_) => Err(ClientError::Resolve {
            host,
            error: io::Error::new(io::ErrorKind::NotFound, "the name has no address"),
        }),
        Err(error) => Err(ClientError::Resolve { host, error }),
    }
}

/// The host as text, for errors and for the resolver.
fn host_name(origin: &Origin) -> String {
    match origin.host() {
        Host::Name(name) => name.clone(),
        Host::Ip(ip) => ip.to_string(),
    }
}
