//! Orders' side of the call to the stock service: `POST /reserve` through
//! `milieu::http::Client`, which sends the context of the request being
//! handled along (the trace context, and the baggage of `baggage.rs`).

use std::fmt;
use std::time::Duration;

use milieu::http::{Client, ClientError, Response};
use milieu::reactor::{CoreId, Handle};
use milieu::remote::Propagation;

use crate::line_item::LineItem;
use crate::routing::json_error;

/// The longest a reservation may take, whole: connecting, sending, and
/// reading stock's answer. Past it the order is refused with 503, rather
/// than held while stock is slow.
const RESERVE_DEADLINE: Duration = Duration::from_secs(5);

/// The largest answer read from stock (its answers are a few dozen bytes).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// How orders reserves stock before it stores an order: a context entry
/// of the orders role, always installed, so that `POST /orders` declares
/// it and start-up verifies it like any other.
#[derive(Debug)]
pub enum Stock {
    /// Started without `--stock-url`: orders are stored without a
    /// reservation, as before there was a stock service.
    NotConsulted,
    /// `POST /reserve` to the stock service for every order.
    Service(StockClient),
}

/// The client of the stock service.
pub struct StockClient {
    /// `{--stock-url}/reserve`.
    reserve_url: String,
    /// One client per reactor thread: a client's pooled connections belong
    /// to the reactor that opened them, and a request from another thread
    /// would cost a wake-up across threads at each step.
    per_core: Vec<Client>,
}

/// Stock's answer to a reservation.
#[derive(Debug, serde::Deserialize)]
pub struct Reservation {
    /// Stock's number for it.
    pub reservation: u64,
}

/// Why a reservation failed, and the response each failure gets.
#[derive(Debug)]
pub enum StockError {
    /// Stock answered, and not with a reservation: 502.
    Refused { status: u16, reason: String },
    /// Stock answered 200 with a body that is not a reservation: 502.
    BadAnswer(String),
    /// Stock could not be reached, or did not answer in time: 503.
    Unreachable(String),
    /// The request could not be made at all (a bad `--stock-url`): 500.
    Misconfigured(ClientError),
}

impl StockClient {
    /// Clients for `threads` reactor threads to `base_url` (checked by
    /// `args.rs`), sending what `propagation` lists.
    pub fn new(base_url: &str, threads: usize, propagation: Propagation) -> StockClient {
        let per_core = (0..threads.max(1))
            .map(|_| {
                Client::builder()
                    .connect_timeout(RESERVE_DEADLINE)
                    .write_timeout(RESERVE_DEADLINE)
                    .read_timeout(RESERVE_DEADLINE)
                    .pool_timeout(RESERVE_DEADLINE)
                    .max_body(MAX_ANSWER_BYTES)
                    .propagation(propagation.clone())
                    .build()
            })
            .collect();
        StockClient {
            reserve_url: format!("{base_url}/reserve"),
            per_core,
        }
    }

    /// Reserves `line` with stock, carrying the current context: call it
    /// in the context the reservation is for (see `routes::place_order`).
    pub async fn reserve(&self, line: &LineItem) -> Result<Reservation, StockError> {
        let core = milieu::with(|core: &CoreId| core.index()).unwrap_or(0);
        let client = &self.per_core[core % self.per_core.len()];
        let body = serde_json::json!({ "item": line.item, "quantity": line.quantity }).to_string();
        // The client takes the context (and so the trace context and the
        // baggage) here, where the request is sent.
        let sent = client
            .post(&self.reserve_url)
            .header("content-type", "application/json")
            .body(body)
            .send();
        let handle = Handle::current()
            .map_err(|missing| StockError::Misconfigured(ClientError::NoReactor(missing)))?;
        let answer = match handle.timeout(RESERVE_DEADLINE, sent).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(error)) => return Err(StockError::from(error)),
            Err(_elapsed) => {
                return Err(StockError::Unreachable(format!(
                    "no answer within {RESERVE_DEADLINE:?}"
                )))
            }
        };
        if answer.status() != 200 {
            return Err(StockError::Refused {
                status: answer.status(),
                reason: error_of(answer.body()),
            });
        }
        serde_json::from_slice(answer.body())
            .map_err(|e| StockError::BadAnswer(format!("not a reservation: {e}")))
    }
}

impl fmt::Debug for StockClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StockClient")
            .field("reserve_url", &self.reserve_url)
            .field("clients", &self.per_core.len())
            .finish()
    }
}

/// The `error` of a JSON error body, else the body as text; at most 200
/// characters of it, as it goes into orders' answer and log.
fn error_of(body: &[u8]) -> String {
    let json = serde_json::from_slice::<serde_json::Value>(body).ok();
    let text = match json.as_ref().and_then(|v| v["error"].as_str()) {
        Some(error) => error.to_owned(),
        None => String::from_utf8_lossy(body).into_owned(),
    };
    text.chars().take(200).collect()
}

impl From<ClientError> for StockError {
    fn from(error: ClientError) -> StockError {
        match error {
            ClientError::InvalidResponse(_) => StockError::BadAnswer(error.to_string()),
            ClientError::InvalidUrl { .. }
            | ClientError::UnsupportedScheme { .. }
            | ClientError::InvalidMethod { .. }
            | ClientError::InvalidHeader(_)
            | ClientError::InvalidRequest { .. }
            | ClientError::NoReactor(_) => StockError::Misconfigured(error),
            // Resolving, connecting, a pool kept busy, timeouts, a close
            // before the answer: stock is not there for us now.
            _ => StockError::Unreachable(error.to_string()),
        }
    }
}

impl StockError {
    /// The response orders gives its client; nothing was stored. The
    /// details of a failure to reach stock (its address, the OS error)
    /// go to the log, not to the client.
    pub fn response(&self) -> Response {
        match self {
            StockError::Refused { status, reason } => {
                tracing::warn!(target: "orders", status, %reason, "the stock service refused a reservation");
                // The upstream's words stay in the log: they may describe
                // a service the public should not learn about.
                json_error(502, "the stock service refused the reservation (logged)")
            }
            StockError::BadAnswer(why) => {
                tracing::warn!(target: "orders", %why, "the stock service answered nonsense");
                json_error(502, "the stock service gave an invalid answer (logged)")
            }
            StockError::Unreachable(why) => {
                tracing::warn!(target: "orders", %why, "the stock service is unreachable");
                json_error(503, "the stock service is unreachable, try again")
                    .with_header("retry-after", "1")
            }
            StockError::Misconfigured(error) => {
                tracing::error!(target: "orders", %error, "cannot call the stock service");
                json_error(500, "the service is misconfigured (logged)")
            }
        }
    }
}
