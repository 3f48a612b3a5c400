//! The orders example as a user runs it: the example binary started on an
//! ephemeral port with its SQLite file in a temp dir, talked to over real
//! loopback sockets. Every read is bounded in time.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Anything longer is a hang.
const DEADLINE: Duration = Duration::from_secs(20);

/// The example binary, built by `cargo test` next to this test's binary.
fn example_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir.join("examples").join("orders");
    assert!(
        path.exists(),
        "{} is missing: `cargo test` builds the examples (run it from the workspace)",
        path.display()
    );
    path
}

struct Server {
    child: Child,
    addr: SocketAddr,
    _data: tempfile::TempDir,
    db: PathBuf,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        let data = tempfile::tempdir().unwrap();
        let mut child = Command::new(example_binary())
            .args(["--addr", "127.0.0.1:0", "--data"])
            .arg(data.path())
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut first = String::new();
            let _ = BufReader::new(stdout).read_line(&mut first);
            let _ = tx.send(first);
        });
        let first = rx
            .recv_timeout(DEADLINE)
            .expect("the service printed its address");
        let addr = first
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .parse()
            .unwrap();
        let db = data.path().join("orders.sqlite");
        Server {
            child,
            addr,
            _data: data,
            db,
        }
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        stream
    }

    /// One request on a fresh connection.
    fn request(&self, raw: &str) -> Response {
        let mut stream = self.connect();
        stream.write_all(raw.as_bytes()).unwrap();
        read_response(&mut stream).expect("a response")
    }

    fn get(&self, path: &str) -> Response {
        self.request(&format!(
            "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        ))
    }

    fn post(&self, path: &str, body: &str) -> Response {
        self.request(&format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ))
    }

    /// A second client served while something else is going on.
    fn assert_still_serving(&self) {
        assert_eq!(
            self.get("/").status,
            200,
            "the server stopped serving others"
        );
    }

    /// SIGTERM, then the exit status (bounded).
    fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "no exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }
}

/// Reads one response with a `Content-Length` body; `None` at end of
/// stream before a status line.
fn read_response(stream: &mut TcpStream) -> Option<Response> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(0) => return None,
            Ok(_) => head.push(byte[0]),
            Err(e) => panic!("reading a response head: {e}"),
        }
    }
    let head = String::from_utf8(head).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![0; length];
    stream.read_exact(&mut body).unwrap();
    Some(Response {
        status,
        headers,
        body,
    })
}

/// True if the server ends the stream (after anything still in flight).
fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).is_ok()
}

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
    let cases: [(&str, String, u16); 5] = [
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

#[test]
fn the_debug_views_show_the_requests_context_in_three_formats() {
    let server = Server::start(&[]);
    let text = server.get("/debug/context").text();
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
        .request("GET /debug/context HTTP/1.1\r\nHost: t\r\nAccept: application/json\r\nConnection: close\r\n\r\n")
        .json();
    assert!(json["context"]["frames"].is_array(), "{json}");
    assert_eq!(json["stages"][0]["name"], "db");
    let html = server.request(
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
    let stages = server.get("/debug/stages").text();
    assert!(stages.contains("stage `db`"), "{stages}");
}

#[test]
fn graceful_shutdown_loses_no_committed_order_and_delivers_every_notification() {
    let mut server = Server::start(&[]);
    let mut ids = Vec::new();
    for i in 0..20 {
        let placed = server.post(
            "/orders",
            &format!(r#"{{"item": "item {i}", "quantity": 1}}"#),
        );
        assert_eq!(placed.status, 201);
        ids.push(placed.json()["id"].as_i64().unwrap());
    }
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
    let server = Server::start(&[]);
    let script = r#"
import http.client, json, sys
host, port = sys.argv[1].rsplit(":", 1)
conn = http.client.HTTPConnection(host, int(port), timeout=20)
conn.request("POST", "/orders", body=json.dumps({"item": "py tea", "quantity": 5}),
             headers={"Content-Type": "application/json"})
r = conn.getresponse(); body = json.loads(r.read())
assert r.status == 201, (r.status, body)
# Same connection (keep-alive):
conn.request("GET", "/orders/%d" % body["id"])
r = conn.getresponse(); got = json.loads(r.read())
assert r.status == 200 and got == body, (r.status, got)
conn.request("GET", "/debug/context", headers={"Accept": "application/json"})
r = conn.getresponse(); dump = json.loads(r.read())
assert r.status == 200 and dump["stages"][0]["name"] == "db"
conn.request("GET", "/missing")
r = conn.getresponse(); r.read()
assert r.status == 404
print("ok")
"#;
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(python)
        .args(["-c", script, &server.addr.to_string()])
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

/// A browser for [`a_browser_renders_the_html_debug_view`]: `MILIEU_CHROMIUM`
/// or `chromium` on the `PATH`.
fn chromium() -> String {
    std::env::var("MILIEU_CHROMIUM").unwrap_or_else(|_| "chromium".into())
}

/// Runs headless Chromium with `args` (bounded by [`DEADLINE`]); its stdout.
fn headless(profile: &Path, args: &[&str]) -> Vec<u8> {
    let mut child = Command::new(chromium())
        // As root (CI) the sandbox cannot start; no GPU on a server.
        .args(["--headless", "--no-sandbox", "--disable-gpu"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `{}` ({e}): install Debian's `chromium` or set MILIEU_CHROMIUM",
                chromium()
            )
        });
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        out
    });
    let deadline = Instant::now() + DEADLINE * 3;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "chromium {args:?} exited with {status}");
            return reader.join().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium {args:?} did not finish in time");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Width and height from a PNG's header (`IHDR` is always first).
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(
        png.len() > 24 && png.starts_with(b"\x89PNG\r\n\x1a\n") && &png[12..16] == b"IHDR",
        "not a PNG"
    );
    let be = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    (be(16), be(20))
}

#[test]
#[ignore = "needs Chromium (Debian `chromium`, or MILIEU_CHROMIUM=path): .ci/run installs it \
            and runs `cargo test --all-features --test orders -- --ignored browser`"]
fn a_browser_renders_the_html_debug_view() {
    let server = Server::start(&[]);
    let scratch = tempfile::tempdir().unwrap();
    let profile = scratch.path().join("profile");
    let url = format!("http://{}/debug/context", server.addr);

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
    let kept = Path::new(env!("CARGO_TARGET_TMPDIR")).join("debug-context.png");
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
