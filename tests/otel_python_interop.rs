//! milieu against OpenTelemetry's own Python propagators
//! (`TraceContextTextMapPropagator`, `W3CBaggagePropagator`, from the
//! PyPI packages `opentelemetry-api` and `opentelemetry-sdk`), both ways,
//! over loopback. `tests/interop/otel_propagators.py` is the Python side:
//!
//! - Python as the caller: it starts an SDK span, sets baggage, injects
//!   with both propagators and calls a milieu service, whose handler
//!   answers with what it read (trace context, the carried types decoded,
//!   the members passed on); the script checks the answer, and so does
//!   this test.
//! - Python as the callee: a milieu `Client` sends from a context with a
//!   `TraceContext` and baggage; the Python server answers with what the
//!   propagators extracted.
//!
//! The tests need a Python with those packages, named by the environment
//! variable `MILIEU_OTEL_PYTHON`, so they are ignored by default;
//! `.ci/otel_interop.sh` makes a virtual environment under `target/` and
//! runs them.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};

use common::server::HttpServer;
use common::SOCKET_DEADLINE;
use milieu::http::{Client, Request, Response, Server};
use milieu::reactor::Reactor;
use milieu::remote::{Baggage, BaggageMember, ForwardedBaggage, Propagation, TraceContext};
use serde_json::{json, Value};

/// The environment variable naming the Python interpreter to use.
const PYTHON_ENV: &str = "MILIEU_OTEL_PYTHON";

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/interop/otel_propagators.py"
);

/// Carried by both sides' `Propagation`: a value with characters that
/// must be percent-encoded (`;`, `,`, and `ë`, which is not ASCII).
#[derive(Baggage, Debug)]
#[baggage(key = "tenant")]
struct Tenant(String);

#[derive(Baggage, Debug)]
#[baggage(key = "tier")]
struct Tier(u8);

/// What the Python client sets, and what milieu sends.
const TENANT: &str = "Zoë&Co;a,b=c";

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER: &str = "00f067aa0ba902b7";
const TRACESTATE: &str = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";

fn python() -> String {
    std::env::var(PYTHON_ENV).unwrap_or_else(|_| {
        panic!(
            "{PYTHON_ENV} is not set: it names a Python with opentelemetry-api and \
             opentelemetry-sdk installed. Run `bash .ci/otel_interop.sh`, which makes one."
        )
    })
}

fn propagation() -> Propagation {
    Propagation::new().carry::<Tenant>().carry::<Tier>()
}

/// A milieu service whose handler answers, as JSON, what its context
/// holds from the caller.
fn echo_service() -> HttpServer {
    HttpServer::serve(
        Server::new()
            .propagation(propagation())
            .serve(|_: Request| {
                let trace = milieu::get::<TraceContext>().expect("installed by the server");
                let forwarded: serde_json::Map<String, Value> = milieu::get::<ForwardedBaggage>()
                    .map(|f| {
                        f.members()
                            .iter()
                            .map(|m| (m.key().to_owned(), Value::from(m.value())))
                            .collect()
                    })
                    .unwrap_or_default();
                let answer = json!({
                    "trace_id": trace.trace_id().to_string(),
                    "parent_id": trace.parent_id().map(|p| p.to_string()),
                    "flags": trace.flags().to_string(),
                    "tracestate": trace.tracestate(),
                    "tenant": milieu::get::<Tenant>().ok().map(|t| t.0.clone()),
                    "tier": milieu::get::<Tier>().ok().map(|t| t.0),
                    "forwarded": forwarded,
                });
                Response::json(200, &answer)
            }),
    )
}

/// The Python script as a server: killed (and its standard input closed,
/// which makes it exit by itself) on drop.
struct PythonServer {
    child: Child,
    /// Held open: the script exits when it closes, so it cannot outlive
    /// this process even if the `kill` below never runs.
    _stdin: ChildStdin,
    addr: String,
}

impl PythonServer {
    fn start() -> PythonServer {
        let mut child = Command::new(python())
            .arg(SCRIPT)
            .arg("server")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} {SCRIPT} server: {e}", python()));
        let stdin = child.stdin.take().expect("piped");
        let mut first = String::new();
        let stdout = child.stdout.take().expect("piped");
        BufReader::new(stdout)
            .read_line(&mut first)
            .expect("read the script's first line");
        let addr = first
            .trim_end()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("the script did not start (it printed {first:?})"))
            .to_owned();
        PythonServer {
            child,
            _stdin: stdin,
            addr,
        }
    }
}

impl Drop for PythonServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[track_caller]
fn field<'a>(value: &'a Value, key: &str) -> &'a Value {
    value
        .get(key)
        .unwrap_or_else(|| panic!("no `{key}` in {value}"))
}

#[track_caller]
fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    field(value, key)
        .as_str()
        .unwrap_or_else(|| panic!("`{key}` is not a string in {value}"))
}

#[test]
#[ignore = "needs opentelemetry-api/sdk from PyPI: run by .ci/run (see .ci/otel_interop.sh)"]
fn milieu_reads_what_the_python_propagators_write() {
    let service = echo_service();
    let output = Command::new(python())
        .arg(SCRIPT)
        .arg("client")
        .arg(format!("http://{}/", service.addr))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot start {} {SCRIPT} client: {e}", python()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the Python client's checks failed ({}):\n{stderr}\n{stdout}",
        output.status
    );
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("the script's report is not JSON ({e}):\n{stdout}"));

    // W3C Baggage reads `+` as itself. OpenTelemetry Python writes a space
    // as `+` (HTML form encoding, open-telemetry/opentelemetry-python#5566),
    // so its `hello world` reaches any conformant service as `hello+world`;
    // once fixed, it sends `%20` and milieu reads the space.
    let form_encoding = field(&report, "form_encoding")
        .as_bool()
        .expect("a boolean");
    let note = if form_encoding {
        eprintln!(
            "note: this opentelemetry-python writes a space in baggage as `+` \
             (open-telemetry/opentelemetry-python#5566)"
        );
        "hello+world"
    } else {
        "hello world"
    };

    let exchanges = field(&report, "exchanges").as_array().expect("a list");
    assert_eq!(exchanges.len(), 2, "a sampled and an unsampled span");
    for (exchange, flags) in exchanges.iter().zip(["01", "00"]) {
        let sent = field(exchange, "sent");
        let answer = field(exchange, "answer");
        // What Python sent, as milieu read it: the trace, the span Python
        // started as the parent, the flags and the tracestate.
        let traceparent: Vec<&str> = text(sent, "traceparent").split('-').collect();
        assert_eq!(traceparent.len(), 4, "{sent}");
        assert_eq!(traceparent[3], flags);
        assert_eq!(text(answer, "trace_id"), traceparent[1], "{exchange}");
        assert_eq!(text(answer, "parent_id"), traceparent[2], "{exchange}");
        assert_eq!(text(answer, "flags"), flags, "{exchange}");
        assert_eq!(text(answer, "tracestate"), TRACESTATE, "{exchange}");
        // The baggage: the carried types decoded, the other member passed on.
        assert_eq!(text(answer, "tenant"), TENANT, "{exchange}");
        assert_eq!(field(answer, "tier"), &json!(3), "{exchange}");
        assert_eq!(
            field(answer, "forwarded"),
            &json!({ "note": note }),
            "{exchange}"
        );
    }
}

#[test]
#[ignore = "needs opentelemetry-api/sdk from PyPI: run by .ci/run (see .ci/otel_interop.sh)"]
fn the_python_propagators_read_what_milieu_writes() {
    let python = PythonServer::start();
    let url = format!("http://{}/", python.addr);
    // The `traceparent` the client wrote, as a hook (run after the
    // propagation) sees it.
    let sent = Arc::new(Mutex::new(String::new()));
    let recorded = Arc::clone(&sent);
    let client = Client::builder()
        .connect_timeout(SOCKET_DEADLINE)
        .read_timeout(SOCKET_DEADLINE)
        .write_timeout(SOCKET_DEADLINE)
        .propagation(propagation())
        .on_request(move |headers| {
            *recorded.lock().unwrap() = headers.get_str("traceparent").unwrap_or("").to_owned();
        })
        .build();
    let mut reactor = Reactor::new().unwrap();

    for (flags, sampled) in [("01", true), ("00", false)] {
        let trace =
            TraceContext::extract(Some(&format!("00-{TRACE}-{CALLER}-{flags}")), &[TRACESTATE])
                .into_context();
        let own_span = trace.span_id().to_string();
        let forwarded = ForwardedBaggage::new(vec![
            BaggageMember::new("note", "hello world").unwrap(),
            BaggageMember::new("sum", "1+1=2").unwrap(),
        ]);
        let (client, url) = (client.clone(), url.clone());
        let answer = reactor
            .run_until(async move {
                // The client takes the context when the request is sent.
                let request = milieu::scope()
                    .with(trace)
                    .with(Tenant(TENANT.to_owned()))
                    .with(Tier(3))
                    .with(forwarded)
                    .run(|| client.get(&url).send());
                request.await
            })
            .unwrap()
            .expect("the Python server answered");
        assert_eq!(answer.status(), 200);
        let answer: Value = serde_json::from_str(answer.text().unwrap()).unwrap();

        // The span context Python extracted: the trace, and as parent the
        // span milieu's client made for this request (a child of ours).
        let sent_traceparent = sent.lock().unwrap().clone();
        let sent_span = sent_traceparent.split('-').nth(2).expect("a traceparent");
        assert_eq!(field(&answer, "valid"), &json!(true), "{answer}");
        assert_eq!(field(&answer, "remote"), &json!(true), "{answer}");
        assert_eq!(text(&answer, "trace_id"), TRACE, "{answer}");
        assert_eq!(text(&answer, "parent_id"), sent_span, "{answer}");
        assert_ne!(sent_span, own_span, "a new span for the request");
        assert_ne!(sent_span, CALLER);
        assert_eq!(field(&answer, "sampled"), &json!(sampled), "{answer}");
        assert_eq!(text(&answer, "tracestate"), TRACESTATE, "{answer}");
        // The baggage, as milieu had it: the carried types and the members
        // passed on, values decoded (`+` included: milieu sends it as
        // `%2B`, which form decoders read right too).
        assert_eq!(
            field(&answer, "baggage"),
            &json!({
                "tenant": TENANT,
                "tier": "3",
                "note": "hello world",
                "sum": "1+1=2",
            }),
            "{answer}"
        );
    }
}
