//! What crosses from orders to stock besides the W3C trace context: the
//! baggage types, and the one list of them both roles build their
//! `Propagation` from, so that the sender and the receiver cannot
//! disagree on what is carried.

use milieu::remote::{Baggage, Propagation};

/// The number of the orders request a stock call is made for: its
/// `RequestInfo` id, which is also the `id` of the `http_request` span
/// on every line orders logs for that request. With it, whoever reads
/// stock's view of a call finds orders' log lines for the same request
/// (the trace id finds the call; this finds the request in orders' log).
///
/// Baggage is text in clear, readable and forgeable by any caller: stock
/// shows it, and trusts nothing to it.
#[derive(Baggage, Debug, Clone, Copy, PartialEq, Eq)]
#[baggage(key = "order-request")]
pub struct OrderRequest(pub u64);

/// What `service` (orders or stock) sends and accepts: the trace context
/// and [`OrderRequest`]; the install sites of the carried entries only
/// if `install_sites` (orders' `--send-install-sites`, stock's
/// `--accept-install-sites`), since they reveal source paths.
pub fn propagation(service: &str, install_sites: bool) -> Propagation {
    Propagation::new()
        .carry::<OrderRequest>()
        .with_service_name(service)
        .with_install_sites(install_sites)
}
