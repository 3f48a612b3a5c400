//! The command line: which role this process plays, where it listens, and
//! the flags of each role. A flag that does not apply to the role chosen
//! is refused rather than ignored, so a typo in a deployment script shows
//! at start-up.

use std::path::PathBuf;
use std::time::Duration;

use milieu::http::HttpLimits;

/// Which service this process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The order service (the default).
    Orders,
    /// The stock service orders reserves with (`--role stock`).
    Stock,
}

impl Role {
    /// The service name sent to the services called, and shown in logs.
    pub fn service_name(self) -> &'static str {
        match self {
            Role::Orders => "orders",
            Role::Stock => "stock",
        }
    }
}

/// Command-line settings.
#[derive(Debug)]
pub struct Args {
    pub role: Role,
    /// The most detailed log level written to stderr (default info:
    /// a line per order placed and per notification delivered).
    pub log_level: tracing::Level,
    pub addr: String,
    /// Where the debug views are served; `None`: nowhere.
    pub admin_addr: Option<String>,
    pub threads: usize,
    pub read_timeout: Duration,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
    pub max_connections: usize,
    /// Orders: where the SQLite file goes.
    pub data: PathBuf,
    /// Orders: whether `POST /debug/panic` exists.
    pub panic_route: bool,
    /// Orders: the most interactions one commit of the DB stage carries
    /// (group commit; 1 switches it off).
    pub max_batch: usize,
    /// Orders: the stock service's base URL (`http://HOST:PORT`), without
    /// a trailing `/`; `None`: orders are stored without reserving.
    pub stock_url: Option<String>,
    /// Orders: send the install sites of the carried entries to stock.
    pub send_install_sites: bool,
    /// Stock: read the install sites orders sends.
    pub accept_install_sites: bool,
    /// Stock: how many `/reserve` calls keep their context for
    /// `/debug/context?trace=...`.
    pub recent_calls: usize,
}

impl Args {
    /// The HTTP limits of both listeners.
    pub fn http_limits(&self) -> HttpLimits {
        HttpLimits::new()
            // An order, and a reservation, is a small JSON object: a body
            // larger than this is refused from its headers (413), and a
            // slow client pins at most this much per connection.
            .with_max_body(MAX_BODY_BYTES)
            .with_read_timeout(self.read_timeout)
            .with_idle_timeout(self.idle_timeout)
            .with_write_timeout(self.write_timeout)
            .with_max_connections(self.max_connections)
    }
}

/// The largest request body either role reads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub const USAGE: &str = "\
usage: orders [--role orders|stock] [--addr HOST:PORT] [--admin-addr HOST:PORT] [--threads N]
              [--log-level error|warn|info|debug|trace]
              [--read-timeout-ms N] [--idle-timeout-ms N] [--write-timeout-ms N]
              [--max-connections N]
  role orders (default): [--data DIR] [--panic-route] [--max-batch N]
              [--stock-url http://HOST:PORT [--send-install-sites]]
  role stock: [--accept-install-sites] [--recent-calls N]
--admin-addr serves the debug views there (off without it; give a loopback address).
--max-batch N: at most N orders per database commit (group commit; 1: one commit each).
--stock-url makes every POST /orders reserve with the stock service first.
--send-install-sites / --accept-install-sites let stock's debug views show where in
orders each carried entry was installed (off by default: it reveals source paths).";

/// The largest `--recent-calls`: each kept call holds a context snapshot.
const MAX_RECENT_CALLS: usize = 4096;

/// Reads the arguments after the program's name.
pub fn parse(arguments: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut role = Role::Orders;
    let mut addr = None;
    let mut args = Args {
        role,
        log_level: tracing::Level::INFO,
        addr: String::new(),
        admin_addr: None,
        threads: 1,
        read_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        write_timeout: Duration::from_secs(30),
        max_connections: 16 * 1024,
        data: std::env::temp_dir().join("milieu-orders"),
        panic_route: false,
        max_batch: 64,
        stock_url: None,
        send_install_sites: false,
        accept_install_sites: false,
        recent_calls: 64,
    };
    // The role-specific flags given, to refuse them under the other role.
    let mut orders_only = Vec::new();
    let mut stock_only = Vec::new();
    let mut it = arguments.into_iter();
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        let millis = |text: String, name: &str| {
            text.parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|e| format!("{name} {text}: {e}"))
        };
        match flag.as_str() {
            "--role" => {
                role = match value("--role")?.as_str() {
                    "orders" => Role::Orders,
                    "stock" => Role::Stock,
                    other => return Err(format!("--role {other}: expected orders or stock")),
                }
            }
            "--addr" => addr = Some(value("--addr")?),
            "--log-level" => {
                let text = value("--log-level")?;
                args.log_level = text.parse().map_err(|_| {
                    format!("--log-level {text}: expected error, warn, info, debug or trace")
                })?;
            }
            "--admin-addr" => args.admin_addr = Some(value("--admin-addr")?),
            "--threads" => {
                let text = value("--threads")?;
                args.threads = match text.parse::<usize>() {
                    Ok(n) if (1..=256).contains(&n) => n,
                    _ => return Err(format!("--threads {text}: expected 1 to 256")),
                };
            }
            "--read-timeout-ms" => {
                args.read_timeout = millis(value("--read-timeout-ms")?, "--read-timeout-ms")?
            }
            "--idle-timeout-ms" => {
                args.idle_timeout = millis(value("--idle-timeout-ms")?, "--idle-timeout-ms")?
            }
            "--write-timeout-ms" => {
                args.write_timeout = millis(value("--write-timeout-ms")?, "--write-timeout-ms")?
            }
            "--max-connections" => {
                let text = value("--max-connections")?;
                args.max_connections = match text.parse::<usize>() {
                    Ok(n) if n >= 1 => n,
                    _ => return Err(format!("--max-connections {text}: expected 1 or more")),
                };
            }
            "--data" => {
                args.data = PathBuf::from(value("--data")?);
                orders_only.push("--data");
            }
            "--panic-route" => {
                args.panic_route = true;
                orders_only.push("--panic-route");
            }
            "--max-batch" => {
                let text = value("--max-batch")?;
                args.max_batch = match text.parse::<usize>() {
                    Ok(n) if (1..=4096).contains(&n) => n,
                    _ => return Err(format!("--max-batch {text}: expected 1 to 4096")),
                };
                orders_only.push("--max-batch");
            }
            "--stock-url" => {
                args.stock_url = Some(stock_base_url(&value("--stock-url")?)?);
                orders_only.push("--stock-url");
            }
            "--send-install-sites" => {
                args.send_install_sites = true;
                orders_only.push("--send-install-sites");
            }
            "--accept-install-sites" => {
                args.accept_install_sites = true;
                stock_only.push("--accept-install-sites");
            }
            "--recent-calls" => {
                let text = value("--recent-calls")?;
                args.recent_calls = match text.parse::<usize>() {
                    Ok(n) if (1..=MAX_RECENT_CALLS).contains(&n) => n,
                    _ => {
                        return Err(format!(
                            "--recent-calls {text}: expected 1 to {MAX_RECENT_CALLS}"
                        ))
                    }
                };
                stock_only.push("--recent-calls");
            }
            "--help" | "-h" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    let (misplaced, wanted) = match role {
        Role::Orders => (stock_only.first(), "stock"),
        Role::Stock => (orders_only.first(), "orders"),
    };
    if let Some(flag) = misplaced {
        return Err(format!("{flag} applies to --role {wanted} only\n{USAGE}"));
    }
    if args.send_install_sites && args.stock_url.is_none() {
        return Err(
            "--send-install-sites needs --stock-url: install sites are sent \
                    to the stock service only"
                .into(),
        );
    }
    args.role = role;
    args.addr = addr.unwrap_or_else(|| match role {
        Role::Orders => "127.0.0.1:8080".into(),
        Role::Stock => "127.0.0.1:8090".into(),
    });
    Ok(args)
}

/// Checks `--stock-url` (`http://HOST:PORT`, optionally a path prefix) and
/// drops a trailing `/`, so that `{url}/reserve` is the reservation URL.
/// The client checks the rest of the URL when it sends.
fn stock_base_url(url: &str) -> Result<String, String> {
    let scheme = "http://";
    let has_scheme = url
        .get(..scheme.len())
        .is_some_and(|s| s.eq_ignore_ascii_case(scheme));
    if !has_scheme || url.len() == scheme.len() {
        return Err(format!(
            "--stock-url {url}: expected http://HOST:PORT (https is not supported)"
        ));
    }
    if url.contains(['?', '#']) {
        return Err(format!(
            "--stock-url {url}: expected no query or fragment (`/reserve` is appended)"
        ));
    }
    Ok(url.trim_end_matches('/').to_owned())
}
