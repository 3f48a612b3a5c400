//! The orders example as a user runs it: the example binary started on an
//! ephemeral port with its SQLite file in a temp dir, talked to over real
//! loopback sockets. Every read is bounded in time.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;

use common::browser::{artefacts, headless, png_size};
use common::orders_example::{
    closed_by_server, read_response, read_response_head, Response, Server, DEADLINE,
};

#[test]
fn orders_are_placed_read_and_listed() {
    let server = Server::start(&[]);
    let placed = server.post("/orders", r#"{"item": "tea", "quantity": 2}"#);
    assert_eq!(placed.status, 201, "{}", placed.text());
    let order = placed.json();
    let id = order["id"].as_i64().unwrap();
    assert_eq!(
        placed.header("location"),
        Some(format!("/orders/{id}").as_str())
    );
    server.post("/orders", r#"{"item": "cake", "quantity": 1}"#);

    let fetched = server.get(&format!("/orders/{id}"));
    assert_eq!(fetched.status, 200);
    assert_eq!(fetched.json(), order);
    let listed = server.get("/orders?limit=1").json();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["item"], "cake", "newest first");
    assert_eq!(server.get("/orders").json().as_array().unwrap().len(), 2);

    assert_eq!(server.get("/orders/999").status, 404);
    assert_eq!(server.get("/orders/abc").status, 400);
    assert_eq!(server.get("/orders?limit=0").status, 400);
    assert_eq!(server.get("/orders?color=red").status, 400);
    assert_eq!(server.get("/nowhere").status, 404);
    assert_eq!(
        server
            .request("DELETE /orders HTTP/1.1\r\nHost: t\r\n\r\n")
            .status,
        405
    );
    for bad in [
        "not json",
        r#"{"item": "", "quantity": 1}"#,
        r#"{"item": "tea", "quantity": 0}"#,
        r#"{"item": "tea", "quantity": 2, "extra": true}"#,
        // A line break could forge a line in the service's log.
        r#"{"item": "tea\n2026-12-03T09:00:00Z  WARN orders: forged", "quantity": 1}"#,
        r#"{"item": "tea\u0000", "quantity": 1}"#,
    ] {
        let answer = server.post("/orders", bad);
        assert_eq!(answer.status, 400, "{bad}: {}", answer.text());
        assert!(answer.json()["error"].is_string());
    }
}

#[test]
fn keep_alive_and_pipelining_answer_in_order_on_one_connection() {
    let server = Server::start(&[]);
    let mut stream = server.connect();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut stream).unwrap().status, 200);
    // Same connection, three pipelined requests in one write.
    let body = r#"{"item": "tea", "quantity": 3}"#;
    let pipelined = format!(
        "POST /orders HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}\
         GET /orders/1 HTTP/1.1\r\nHost: t\r\n\r\n\
         GET /nowhere HTTP/1.1\r\nHost: t\r\n\r\n",
        body.len()
    );
    stream.write_all(pipelined.as_bytes()).unwrap();
    let statuses: Vec<u16> = (0..3)
        .map(|_| read_response(&mut stream).unwrap().status)
        .collect();
    assert_eq!(statuses, [201, 200, 404]);
    // `Connection: close` ends it after the response.
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut stream).unwrap().status, 200);
    assert!(
        read_response(&mut stream).is_none(),
        "closed after Connection: close"
    );
}

#[test]
fn bad_input_gets_the_right_status_and_others_are_served_meanwhile() {
    let server = Server::start(&[]);
    let cases: [(&str, String, u16); 6] = [
        ("malformed request line", "GET\r\n\r\n".to_owned(), 400),
        (
            "malformed header",
            "GET / HTTP/1.1\r\nHost t\r\n\r\n".to_owned(),
            400,
        ),
        (
            "headers over the limit",
            format!(
                "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
                "a".repeat(64 * 1024)
            ),
            431,
        ),
        (
            "body over the limit",
            "POST /orders HTTP/1.1\r\nHost: t\r\nContent-Length: 100000000\r\n\r\n".to_owned(),
            413,
        ),
        (
            // The example's own limit (64 KiB), not the library's default.
            "body one byte over the service's limit",
            "POST /orders HTTP/1.1\r\nHost: t\r\nContent-Length: 65537\r\n\r\n".to_owned(),
            413,
        ),
        (
            "unsupported transfer coding before chunked",
            "POST /orders HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                .to_owned(),
            501,
        ),
    ];
    for (what, raw, status) in cases {
        let mut stream = server.connect();
        // The write may be cut short when the server answers early and
        // closes: what matters is the answer.
        let _ = stream.write_all(raw.as_bytes());
        let answer = read_response(&mut stream).unwrap_or_else(|| panic!("{what}: no answer"));
        assert_eq!(answer.status, status, "{what}: {}", answer.text());
        assert!(
            closed_by_server(&mut stream),
            "{what}: the connection is closed after it"
        );
        server.assert_still_serving();
    }
}

#[test]
fn chunked_bodies_and_100_continue_are_understood() {
    let server = Server::start(&[]);
    let mut stream = server.connect();
    stream
        .write_all(
            b"POST /orders HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
              10\r\n{\"item\": \"tea\", \r\n11\r\n\"quantity\": 4}   \r\n0\r\n\r\n",
        )
        .unwrap();
    let answer = read_response(&mut stream).unwrap();
    assert_eq!(answer.status, 201, "{}", answer.text());
    assert_eq!(answer.json()["quantity"], 4);

    let body = r#"{"item": "cake", "quantity": 1}"#;
    stream
        .write_all(
            format!(
                "POST /orders HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .unwrap();
    let interim = read_response(&mut stream).unwrap();
    assert_eq!(interim.status, 100);
    stream.write_all(body.as_bytes()).unwrap();
    assert_eq!(read_response(&mut stream).unwrap().status, 201);
}

#[test]
fn a_slow_request_gets_408_and_idle_connections_are_closed() {
    let server = Server::start(&["--read-timeout-ms", "300", "--idle-timeout-ms", "300"]);
    // Slowloris: a request that never completes.
    let mut slow = server.connect();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        .unwrap();
    server.assert_still_serving();
    let answer = read_response(&mut slow).expect("a 408");
    assert_eq!(answer.status, 408);
    assert!(closed_by_server(&mut slow));
    // Idle keep-alive: answered, then closed once idle.
    let mut idle = server.connect();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut idle).unwrap().status, 200);
    assert!(
        read_response(&mut idle).is_none(),
        "closed after the idle timeout"
    );
}

#[test]
fn a_panicking_handler_gets_500_and_the_server_goes_on() {
    let server = Server::start(&["--panic-route"]);
    let mut stream = server.connect();
    stream
        .write_all(b"POST /debug/panic HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut stream).unwrap().status, 500);
    // Same connection, then another one.
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut stream).unwrap().status, 200);
    server.assert_still_serving();
    // Without the flag the route does not exist.
    let plain = Server::start(&[]);
    assert_eq!(plain.post("/debug/panic", "").status, 404);
}

/// `method path` to `addr` on a fresh connection, with an empty body; the
/// body of the response is read unless the method is `HEAD`.
fn exchange(addr: SocketAddr, method: &str, path: &str) -> Response {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let response = if method == "HEAD" {
        read_response_head(&mut stream)
    } else {
        read_response(&mut stream)
    };
    response.unwrap_or_else(|| panic!("no answer to {method} {path}"))
}

#[test]
fn unknown_method_is_501() {
    let server = Server::start_with_admin(&[]);
    let admin = server.admin_addr();
    // Whatever the path, even one that exists or one that does not; and
    // methods are case-sensitive, so `get` is not `GET`.
    for (addr, method, path) in [
        (server.addr, "FROB", "/"),
        (server.addr, "FROB", "/orders"),
        (server.addr, "FROB", "/nowhere"),
        (server.addr, "get", "/"),
        (admin, "FROB", "/debug/context"),
    ] {
        let answer = exchange(addr, method, path);
        assert_eq!(answer.status, 501, "{method} {path}: {}", answer.text());
        assert!(answer.json()["error"].is_string());
    }
    server.assert_still_serving();
}

#[test]
fn every_405_carries_allow() {
    let server = Server::start_with_admin(&["--panic-route"]);
    let (public, admin) = (server.addr, server.admin_addr());
    let cases: [(SocketAddr, &str, &str, &[&str]); 8] = [
        (public, "DELETE", "/", &["GET", "HEAD"]),
        (public, "POST", "/", &["GET", "HEAD"]),
        (public, "PUT", "/orders", &["GET", "HEAD", "POST"]),
        (public, "OPTIONS", "/orders", &["GET", "HEAD", "POST"]),
        (public, "PATCH", "/orders/1", &["GET", "HEAD"]),
        (public, "GET", "/debug/panic", &["POST"]),
        (admin, "POST", "/debug/context", &["GET", "HEAD"]),
        (admin, "DELETE", "/debug/stages", &["GET", "HEAD"]),
    ];
    for (addr, method, path, allowed) in cases {
        let answer = exchange(addr, method, path);
        assert_eq!(answer.status, 405, "{method} {path}: {}", answer.text());
        let allow: Vec<&str> = answer
            .header("allow")
            .unwrap_or_else(|| panic!("{method} {path}: a 405 without Allow"))
            .split(',')
            .map(str::trim)
            .collect();
        assert_eq!(allow, allowed, "{method} {path}");
        // What `Allow` lists is really allowed (POST /debug/panic
        // answers 500: it panics, as asked).
        for method in allow {
            let status = exchange(addr, method, path).status;
            assert!(
                status != 405 && status != 501,
                "{method} {path} is in Allow but gets {status}"
            );
        }
    }
}

#[test]
fn head_of_a_get_route_has_its_headers_and_no_body() {
    let server = Server::start(&[]);
    let placed = server.post("/orders", r#"{"item": "tea", "quantity": 2}"#);
    let id = placed.json()["id"].as_i64().unwrap();
    for path in [
        "/".to_owned(),
        "/orders".to_owned(),
        format!("/orders/{id}"),
        "/orders/999".to_owned(),
    ] {
        let get = server.get(&path);
        // HEAD, then GET / on the same connection: had the HEAD response
        // carried a body, the second response would start in the middle
        // of it.
        let mut stream = server.connect();
        write!(
            stream,
            "HEAD {path} HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        .unwrap();
        let head = read_response_head(&mut stream).expect("an answer to HEAD");
        assert_eq!(head.status, get.status, "HEAD {path}");
        let get_length = get.body.len().to_string();
        assert_eq!(head.header("content-length"), Some(get_length.as_str()));
        assert_eq!(head.header("content-type"), get.header("content-type"));
        let next = read_response(&mut stream).expect("an answer after HEAD");
        assert_eq!(
            (next.status, next.text().as_str()),
            (200, "hello from milieu\n"),
            "HEAD {path} sent a body"
        );
    }
}

#[test]
fn json_array_is_not_an_order() {
    let server = Server::start(&[]);
    for body in [
        r#"["array tea", 2]"#,
        r#"[{"item": "tea", "quantity": 2}]"#,
        "[]",
    ] {
        let answer = server.post("/orders", body);
        assert_eq!(answer.status, 400, "{body}: {}", answer.text());
        let error = answer.json()["error"].as_str().unwrap().to_owned();
        assert!(error.contains("expected an object"), "{body}: {error}");
    }
    assert_eq!(server.get("/orders").json(), serde_json::json!([]));
}

#[test]
fn json_scalars_and_unknown_or_repeated_fields_are_not_orders() {
    let server = Server::start(&[]);
    for body in [
        r#""tea""#,
        "2",
        "null",
        "true",
        r#"{"item": "tea", "quantity": 2, "extra": true}"#,
        r#"{"item": "tea", "item": "cake", "quantity": 2}"#,
        r#"{"item": "tea"}"#,
        r#"{"item": "tea", "quantity": "2"}"#,
        r#"{"item": "tea", "quantity": 2} {}"#,
    ] {
        let answer = server.post("/orders", body);
        assert_eq!(answer.status, 400, "{body}: {}", answer.text());
        assert!(answer.json()["error"].is_string(), "{body}");
    }
    assert_eq!(server.get("/orders").json(), serde_json::json!([]));
    // The documented shape still is an order.
    let placed = server.post("/orders", r#"{"quantity": 2, "item": "tea"}"#);
    assert_eq!(placed.status, 201, "{}", placed.text());
}

#[test]
fn debug_views_are_not_on_the_public_listener() {
    for server in [Server::start(&[]), Server::start_with_admin(&[])] {
        for path in ["/debug/context", "/debug/stages"] {
            for method in ["GET", "HEAD", "POST"] {
                let answer = exchange(server.addr, method, path);
                assert_eq!(answer.status, 404, "{method} {path} on the public listener");
                assert_eq!(answer.header("allow"), None, "{method} {path}");
            }
        }
        if server.admin.is_some() {
            assert_eq!(server.admin_get("/debug/context").status, 200);
            assert_eq!(server.admin_get("/debug/stages").status, 200);
        }
    }
}

#[test]
fn the_admin_listener_serves_only_the_debug_views() {
    let server = Server::start_with_admin(&["--panic-route"]);
    let admin = server.admin_addr();
    assert!(admin.ip().is_loopback(), "{admin}");
    assert_ne!(admin, server.addr);
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/orders"),
        ("POST", "/orders"),
        ("GET", "/orders/1"),
        ("POST", "/debug/panic"),
    ] {
        let answer = exchange(admin, method, path);
        assert_eq!(answer.status, 404, "{method} {path} on the admin listener");
    }
    assert_eq!(server.get("/").status, 200);
}

#[test]
fn the_debug_views_show_the_requests_context_in_three_formats() {
    let server = Server::start_with_admin(&[]);
    let text = server.admin_get("/debug/context").text();
    for needle in [
        "RequestInfo",
        "ConnectionInfo",
        "Database",
        "CoreId",
        "hop: thread",
    ] {
        assert!(text.contains(needle), "{needle} in:\n{text}");
    }
    let json = server
        .admin_request("GET /debug/context HTTP/1.1\r\nHost: t\r\nAccept: application/json\r\nConnection: close\r\n\r\n")
        .json();
    assert!(json["context"]["frames"].is_array(), "{json}");
    assert_eq!(json["stages"][0]["name"], "db");
    // The DB stage takes interactions in batches (group commit): at least
    // the recovery read and the schema's transaction have run.
    assert!(json["stages"][0]["batches"].as_u64() >= Some(2), "{json}");
    assert!(
        json["stages"][0]["largest_batch"].as_u64() >= Some(1),
        "{json}"
    );
    let html = server.admin_request(
        "GET /debug/context HTTP/1.1\r\nHost: t\r\nAccept: text/html\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        html.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let page = html.text();
    assert!(
        page.starts_with("<!DOCTYPE html>") && page.contains("<table"),
        "{page}"
    );
    assert!(page.contains("RequestInfo") && page.contains("Stages"));
    assert!(
        !page.contains("Some("),
        "Rust's Debug of an Option leaked into the page"
    );
    let stages = server.admin_get("/debug/stages").text();
    assert!(stages.contains("stage `db`"), "{stages}");
    // The library's stages view: the DB stage charted, durations for
    // people and for programs.
    let placed = server.post("/orders", r#"{"item": "tea", "quantity": 1}"#);
    assert_eq!(placed.status, 201);
    let page = server.admin_get("/debug/stages?format=html").text();
    assert_eq!(page.matches("<svg").count(), 4, "{page}");
    assert!(page.contains("Stage <code>db</code>"), "{page}");
    let json = server
        .admin_request("GET /debug/stages HTTP/1.1\r\nHost: t\r\nAccept: application/json\r\nConnection: close\r\n\r\n")
        .json();
    let db = &json[0];
    assert_eq!(db["name"], "db");
    assert!(db["latency_p50"].as_str().unwrap().ends_with('s'), "{db}");
    assert!(db["latency_p50_ns"].as_u64().unwrap() > 0, "{db}");
    assert!(db["history"].is_array(), "{db}");
    assert_eq!(server.admin_get("/debug/stages?format=xml").status, 406);
}

#[test]
fn graceful_shutdown_loses_no_committed_order_and_delivers_every_notification() {
    // With the admin listener too: the shutdown must stop both.
    let mut server = Server::start_with_admin(&[]);
    let mut ids = Vec::new();
    for i in 0..20 {
        let placed = server.post(
            "/orders",
            &format!(r#"{{"item": "item {i}", "quantity": 1}}"#),
        );
        assert_eq!(placed.status, 201);
        ids.push(placed.json()["id"].as_i64().unwrap());
    }
    // An admin connection left open (keep-alive) must not hold it up.
    let mut admin = TcpStream::connect(server.admin_addr()).unwrap();
    admin.set_read_timeout(Some(DEADLINE)).unwrap();
    admin
        .write_all(b"GET /debug/stages HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut admin).unwrap().status, 200);
    let status = server.terminate();
    assert!(status.success(), "exit status {status:?}");
    let (orders, undelivered) = inspect(&server.db);
    assert_eq!(orders, 20);
    assert_eq!(undelivered, 0, "every committed notification was delivered");
}

/// Orders stored and outbox rows not delivered, read from the file.
fn inspect(db: &Path) -> (i64, i64) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let orders = conn
        .query_row("SELECT count(*) FROM orders", [], |r| r.get(0))
        .unwrap();
    let undelivered = conn
        .query_row(
            "SELECT count(*) FROM milieu_outbox WHERE delivered_at IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    (orders, undelivered)
}

#[test]
fn pythons_http_client_talks_to_the_service() {
    let server = Server::start_with_admin(&[]);
    let script = r#"
import http.client, json, sys
def connect(addr):
    host, port = addr.rsplit(":", 1)
    return http.client.HTTPConnection(host, int(port), timeout=20)
conn = connect(sys.argv[1])
conn.request("POST", "/orders", body=json.dumps({"item": "py tea", "quantity": 5}),
             headers={"Content-Type": "application/json"})
r = conn.getresponse(); body = json.loads(r.read())
assert r.status == 201, (r.status, body)
# Same connection (keep-alive):
conn.request("GET", "/orders/%d" % body["id"])
r = conn.getresponse(); got = json.loads(r.read())
assert r.status == 200 and got == body, (r.status, got)
admin = connect(sys.argv[2])
admin.request("GET", "/debug/context", headers={"Accept": "application/json"})
r = admin.getresponse(); dump = json.loads(r.read())
assert r.status == 200 and dump["stages"][0]["name"] == "db"
conn.request("GET", "/missing")
r = conn.getresponse(); r.read()
assert r.status == 404
print("ok")
"#;
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(python)
        .args(["-c", script])
        .arg(server.addr.to_string())
        .arg(server.admin_addr().to_string())
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "python failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}

#[test]
#[ignore = "needs Chromium (Debian `chromium`, or MILIEU_CHROMIUM=path): run by \
            .ci/browser_views.sh, which installs it"]
fn a_browser_renders_the_html_debug_view() {
    let server = Server::start_with_admin(&[]);
    let scratch = tempfile::tempdir().unwrap();
    let profile = scratch.path().join("profile");
    let url = format!("http://{}/debug/context", server.admin_addr());

    // The DOM after rendering: the browser's own `Accept` header chose the
    // HTML view, and the page parsed into what the service meant.
    let dom = String::from_utf8(headless(&profile, &["--dump-dom", &url])).unwrap();
    for needle in [
        "<title>milieu context</title>",
        "<h1>Context of this request</h1>",
        "RequestInfo",
        "ConnectionInfo",
        "<h2>Stages</h2>",
    ] {
        assert!(
            dom.contains(needle),
            "{needle} missing from the DOM:\n{dom}"
        );
    }

    // A screenshot, kept for a person to look at, against one of an empty
    // page of the same size: the view must have drawn something.
    let shoot = |target: &str, file: &Path| {
        let out = format!("--screenshot={}", file.display());
        headless(&profile, &["--window-size=1024,768", &out, target]);
        std::fs::read(file).unwrap()
    };
    // Kept with the library's screenshots (tests/debug_views.rs).
    let kept = artefacts().join("orders-debug-context.png");
    let page = shoot(&url, &kept);
    let blank = shoot("about:blank", &scratch.path().join("blank.png"));
    assert_eq!(png_size(&page), (1024, 768));
    assert_eq!(png_size(&blank), (1024, 768));
    assert!(
        page.len() > 4 * blank.len(),
        "the screenshot ({} bytes) looks as empty as a blank page ({} bytes): {}",
        page.len(),
        blank.len(),
        kept.display()
    );
    println!("screenshot of the HTML debug view: {}", kept.display());
    server.assert_still_serving();
}
