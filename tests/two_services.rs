//! The orders example's two roles as two real processes over loopback:
//! stock started first, then orders with `--stock-url`. An order placed
//! with orders is reserved with stock through `milieu::http::Client`, and
//! stock's admin listener shows the context that call arrived with
//! (`GET /debug/context?trace=ID`): the process hop from orders, orders'
//! trace, the baggage orders carried and, when both sides opt in, where
//! in orders' source it was installed.

mod common;

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Instant;

use common::orders_example::{example_binary, Response, Server, DEADLINE};
use serde_json::Value;

/// Stock, and orders reserving with it.
struct TwoServices {
    stock: Server,
    orders: Server,
}

impl TwoServices {
    /// Stock with an admin listener, then orders calling it; each side's
    /// install-site flag as given.
    fn start(send_install_sites: bool, accept_install_sites: bool) -> TwoServices {
        let mut stock_args = vec!["--admin-addr", "127.0.0.1:0"];
        if accept_install_sites {
            stock_args.push("--accept-install-sites");
        }
        let stock = Server::start_stock(&stock_args);
        let orders = orders_calling(&stock.addr.to_string(), send_install_sites);
        TwoServices { stock, orders }
    }

    /// Places an order; the trace id orders answers with.
    fn place_order(&self) -> String {
        let placed = self
            .orders
            .post("/orders", r#"{"item": "tea", "quantity": 2}"#);
        assert_eq!(placed.status, 201, "{}", placed.text());
        trace_id_of(&placed)
    }

    /// Stock's view of the call of trace `trace` in the format `accept`
    /// asks for (text without it).
    fn call_view(&self, trace: &str, accept: Option<&str>) -> Response {
        let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
        self.stock.admin_request(&format!(
            "GET /debug/context?trace={trace} HTTP/1.1\r\nHost: t\r\n{accept}Connection: close\r\n\r\n"
        ))
    }
}

/// Orders with `--stock-url http://{stock}` (and `--send-install-sites`).
fn orders_calling(stock: &str, send_install_sites: bool) -> Server {
    let url = format!("http://{stock}");
    let mut args = vec!["--stock-url", url.as_str()];
    if send_install_sites {
        args.push("--send-install-sites");
    }
    Server::start(&args)
}

/// The `trace-id` header of an orders response, checked to be a trace id.
#[track_caller]
fn trace_id_of(response: &Response) -> String {
    let trace = response
        .header("trace-id")
        .unwrap_or_else(|| panic!("no trace-id header: {response:?}"))
        .to_owned();
    assert!(
        trace.len() == 32
            && trace.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'))
            && trace != "0".repeat(32),
        "not a trace id: {trace:?}"
    );
    trace
}

/// Where orders installs the `OrderRequest` it carries to stock, as
/// `file:line:column`, read from the source (the line that calls
/// `with_debug(this_request)`; the column is the method name's, where
/// `#[track_caller]` puts it).
fn order_request_install_site() -> String {
    let file = "examples/orders/routes.rs";
    let source = std::fs::read_to_string(format!("{}/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let needle = "with_debug(this_request)";
    let mut found = source
        .lines()
        .enumerate()
        .filter_map(|(index, line)| line.find(needle).map(|column| (index + 1, column + 1)));
    let (line, column) = found
        .next()
        .unwrap_or_else(|| panic!("no `{needle}` in {file}: update this test"));
    assert!(found.next().is_none(), "`{needle}` twice in {file}");
    format!("{file}:{line}:{column}")
}

/// The entry of type `*::suffix` in a JSON dump.
#[track_caller]
fn entry<'a>(dump: &'a Value, suffix: &str) -> &'a Value {
    dump["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .filter_map(|frame| frame["entries"].as_array())
        .flatten()
        .find(|e| e["type_name"].as_str().is_some_and(|t| t.ends_with(suffix)))
        .unwrap_or_else(|| panic!("no {suffix} entry in {dump:#}"))
}

#[test]
fn stocks_view_of_a_call_shows_the_hop_from_orders_its_trace_and_its_baggage() {
    let services = TwoServices::start(false, false);
    let trace = services.place_order();

    let view = services.call_view(&trace, None);
    assert_eq!(view.status, 200, "{}", view.text());
    let text = view.text();
    // The first line says which call; the baggage value is named there
    // (a dump hides the values that arrived): this was orders' request 1.
    let heading = text.lines().next().unwrap();
    assert_eq!(
        heading,
        format!(
            "Context of POST /reserve in trace {trace}: reserved 2 x tea (reservation 1) \
             for orders request 1"
        )
    );
    // The process hop: orders' address, its service name, and the
    // traceparent of orders' call, in orders' trace.
    assert!(text.contains("process hop from 127.0.0.1:"), "{text}");
    let traceparent = format!("(service orders, traceparent 00-{trace}-");
    assert!(text.contains(&traceparent), "{text}");
    // The trace context stock continued, and the carried entry, received
    // from orders.
    assert!(
        text.contains(&format!("TraceContext = TraceContext(00-{trace}-")),
        "{text}"
    );
    let entry_line = text
        .lines()
        .find(|l| l.contains("orders::baggage::OrderRequest  [inherited"))
        .unwrap_or_else(|| panic!("no OrderRequest entry in:\n{text}"));
    assert!(
        entry_line.ends_with("because \"baggage member sent by the caller\""),
        "{entry_line}"
    );
    // No install site crossed: neither side asked for them.
    assert!(!text.contains("in service orders"), "{text}");
    assert!(!text.contains("examples/orders/routes.rs"), "{text}");

    let json = services.call_view(&trace, Some("application/json")).json();
    assert_eq!(json["about"], heading);
    let order_request = entry(&json["context"], "::OrderRequest");
    assert_eq!(order_request["status"], "visible");
    let origin = &order_request["provenance"]["remote"];
    assert_eq!(origin["hop"]["service"], "orders", "{origin:#}");
    assert!(
        origin["hop"]["traceparent"]
            .as_str()
            .is_some_and(|t| t.starts_with(&format!("00-{trace}-"))),
        "{origin:#}"
    );
    assert!(
        origin["hop"]["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:")),
        "{origin:#}"
    );
    assert_eq!(
        origin["hop"]["arrived"],
        serde_json::json!([{"key": "order-request", "type_name": "orders::baggage::OrderRequest"}])
    );
    assert!(origin["site"].is_null(), "{origin:#}");
    let trace_context = entry(&json["context"], "::TraceContext");
    assert!(
        trace_context["value"]
            .as_str()
            .is_some_and(|v| v.starts_with(&format!("TraceContext(00-{trace}-"))),
        "{trace_context:#}"
    );

    let html = services.call_view(&trace, Some("text/html"));
    assert_eq!(
        html.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let page = html.text();
    assert!(page.contains(&format!("<h1>Context of POST /reserve in trace {trace}")));
    assert!(page.contains("orders::baggage::OrderRequest"), "{page}");
    assert!(page.contains(&traceparent), "{page}");

    // The order was stored.
    assert_eq!(services.orders.get("/orders/1").status, 200);
}

#[test]
fn with_both_flags_stock_shows_where_in_orders_the_entry_was_installed() {
    let site = order_request_install_site();
    let services = TwoServices::start(true, true);
    let trace = services.place_order();

    let text = services.call_view(&trace, None).text();
    let expected =
        format!("installed at {site} in service orders, carried by process hop from 127.0.0.1:");
    let line = text
        .lines()
        .find(|l| l.contains(&expected))
        .unwrap_or_else(|| panic!("no `{expected}` in:\n{text}"));
    assert!(
        line.contains(&format!("(service orders, traceparent 00-{trace}-")),
        "{line}"
    );

    let json = services.call_view(&trace, Some("application/json")).json();
    let origin = &entry(&json["context"], "::OrderRequest")["provenance"]["remote"];
    assert_eq!(origin["site"], site.as_str(), "{origin:#}");
    assert_eq!(origin["service"], "orders", "{origin:#}");
}

#[test]
fn install_sites_cross_only_when_both_sides_ask() {
    for (send, accept) in [(true, false), (false, true)] {
        let services = TwoServices::start(send, accept);
        let trace = services.place_order();
        let text = services.call_view(&trace, None).text();
        // The hop and the entry are there, the site is not.
        assert!(
            text.contains("orders::baggage::OrderRequest"),
            "send {send}, accept {accept}:\n{text}"
        );
        assert!(
            !text.contains("examples/orders/routes.rs") && !text.contains("in service orders"),
            "send {send}, accept {accept}:\n{text}"
        );
        let json = services.call_view(&trace, Some("application/json")).json();
        let origin = &entry(&json["context"], "::OrderRequest")["provenance"]["remote"];
        assert_eq!(origin["hop"]["service"], "orders");
        assert!(
            origin["site"].is_null(),
            "send {send}, accept {accept}: {origin:#}"
        );
    }
}

#[test]
fn a_stock_outage_gives_503_and_stores_nothing() {
    let TwoServices { stock, orders } = TwoServices::start(false, false);
    orders_are_stored(&orders, 0);
    trace_id_of(&orders.post("/orders", r#"{"item": "tea", "quantity": 1}"#));
    orders_are_stored(&orders, 1);

    drop(stock); // killed
    let refused = orders.post("/orders", r#"{"item": "cake", "quantity": 1}"#);
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.header("retry-after"), Some("1"));
    let error = refused.json()["error"].as_str().unwrap().to_owned();
    assert!(error.contains("stock service is unreachable"), "{error}");
    // The client learns nothing of stock's address.
    assert!(!error.contains("127.0.0.1"), "{error}");
    trace_id_of(&refused);
    orders_are_stored(&orders, 1);
}

#[test]
fn a_refusal_by_stock_gives_502_and_stores_nothing() {
    // Stock's admin listener has no `/reserve`: it answers 404, as a stock
    // service refusing would answer an error status.
    let stock = Server::start_stock(&["--admin-addr", "127.0.0.1:0"]);
    let orders = orders_calling(&stock.admin_addr().to_string(), false);
    let refused = orders.post("/orders", r#"{"item": "tea", "quantity": 2}"#);
    assert_eq!(refused.status, 502, "{}", refused.text());
    let error = refused.json()["error"].as_str().unwrap().to_owned();
    assert!(
        error.contains("stock service refused the reservation"),
        "{error}"
    );
    // The upstream's words stay in orders' log, not in a public answer.
    assert!(!error.contains("no such route"), "{error}");
    orders_are_stored(&orders, 0);
    // Orders still validates first: a bad order never reaches stock.
    assert_eq!(orders.post("/orders", "[]").status, 400);
}

/// Asserts how many orders `orders` has stored.
#[track_caller]
fn orders_are_stored(orders: &Server, count: usize) {
    let listed = orders.get("/orders?limit=100").json();
    assert_eq!(listed.as_array().unwrap().len(), count, "{listed}");
}

#[test]
fn stock_keeps_the_latest_calls_only_and_says_so() {
    let stock = Server::start_stock(&["--admin-addr", "127.0.0.1:0", "--recent-calls", "2"]);
    let orders = orders_calling(&stock.addr.to_string(), false);
    let first = trace_id_of(&orders.post("/orders", r#"{"item": "a", "quantity": 1}"#));
    let second = trace_id_of(&orders.post("/orders", r#"{"item": "b", "quantity": 1}"#));
    let third = trace_id_of(&orders.post("/orders", r#"{"item": "c", "quantity": 1}"#));
    let view = |trace: &str| stock.admin_get(&format!("/debug/context?trace={trace}"));

    let forgotten = view(&first);
    assert_eq!(forgotten.status, 404, "{}", forgotten.text());
    let error = forgotten.json()["error"].as_str().unwrap().to_owned();
    assert!(
        error.contains(&format!(
            "no POST /reserve call of trace {first} among the latest 2"
        )),
        "{error}"
    );
    for (trace, item) in [(&second, " x b ("), (&third, " x c (")] {
        let kept = view(trace);
        assert_eq!(kept.status, 200, "{}", kept.text());
        assert!(kept.text().lines().next().unwrap().contains(item));
    }

    for bad in [
        "xyz",
        "4BF92F3577B34DA6A3CE929D0E0E4736",
        "00000000000000000000000000000000",
    ] {
        let answer = view(bad);
        assert_eq!(answer.status, 400, "{bad}: {}", answer.text());
        assert!(answer.json()["error"]
            .as_str()
            .unwrap()
            .starts_with("`trace`: "));
    }
    assert_eq!(stock.admin_get("/debug/context?span=1").status, 400);
    // `format=` picks the format of either view (over `Accept`); one that
    // does not exist gets 406.
    let json = stock.admin_get(&format!("/debug/context?trace={third}&format=json"));
    assert_eq!(json.status, 200, "{}", json.text());
    assert!(json.json()["about"].as_str().unwrap().contains(" x c ("));
    let html = stock.admin_get("/debug/context?format=html");
    assert!(
        html.text().contains("<h1>Context of this request</h1>"),
        "{}",
        html.text()
    );
    let xml = stock.admin_get(&format!("/debug/context?trace={third}&format=xml"));
    assert_eq!(xml.status, 406, "{}", xml.text());
    // Without a query: the context of the request itself.
    let own = stock.admin_get("/debug/context");
    assert_eq!(own.status, 200);
    assert!(
        own.text().starts_with("Context of this request\n"),
        "{}",
        own.text()
    );
}

#[test]
fn stock_reads_reservations_as_strictly_as_orders_reads_orders() {
    let stock = Server::start_stock(&[]);
    let reserved = stock.post("/reserve", r#"{"item": " tea ", "quantity": 2}"#);
    assert_eq!(reserved.status, 200, "{}", reserved.text());
    assert_eq!(
        reserved.json(),
        serde_json::json!({"item": "tea", "quantity": 2, "reservation": 1})
    );
    for bad in [
        "[]",
        r#"["tea", 2]"#,
        r#"{"item": "tea"}"#,
        r#"{"item": "tea", "quantity": 2, "extra": 1}"#,
        r#"{"item": "tea", "quantity": 0}"#,
        "not json",
    ] {
        let answer = stock.post("/reserve", bad);
        assert_eq!(answer.status, 400, "{bad}: {}", answer.text());
        assert!(answer.json()["error"].is_string(), "{bad}");
    }
    assert_eq!(stock.get("/reserve").status, 405);
    assert_eq!(stock.get("/orders").status, 404);
}

#[test]
fn a_flag_of_the_other_role_is_refused_at_start() {
    for (args, message) in [
        (
            &["--role", "stock", "--data", "x"][..],
            "--data applies to --role orders only",
        ),
        (
            &["--role", "stock", "--stock-url", "http://127.0.0.1:1"],
            "--stock-url applies to --role orders only",
        ),
        (
            &["--accept-install-sites"],
            "--accept-install-sites applies to --role stock only",
        ),
        (
            &["--send-install-sites"],
            "--send-install-sites needs --stock-url",
        ),
        (
            &["--stock-url", "https://127.0.0.1:1"],
            "expected http://HOST:PORT",
        ),
        (&["--role", "warehouse"], "expected orders or stock"),
    ] {
        let (status, stderr) = run_to_exit(args);
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}

/// Runs the example with `args` until it exits (bounded: a service that
/// started instead is killed, and the test fails); its status and stderr.
fn run_to_exit(args: &[&str]) -> (ExitStatus, String) {
    let mut child = Command::new(example_binary())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{args:?}: still running: the arguments were accepted");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status, stderr)
}
