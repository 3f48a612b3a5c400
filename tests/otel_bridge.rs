//! The OpenTelemetry bridge over real loopback sockets: a request with a
//! known `traceparent` enters service A; A's handler starts an
//! OpenTelemetry span `work` and, while it is current, calls service B with
//! `milieu::http::Client`; B's handler starts a span `handle`. The spans
//! are recorded by an SDK tracer provider with an in-memory exporter (made
//! here and handed to the handlers: no global provider), and the test
//! checks that they and milieu's trace contexts form one trace:
//!
//! ```text
//! caller 00f067aa0ba902b7
//! └─ A's request span (milieu)
//!    ├─ work (OpenTelemetry)
//!    │  └─ B's request span (milieu), sent by A's client with `work` as parent
//!    │     └─ handle (OpenTelemetry)
//!    └─ after (OpenTelemetry, on a later poll of A's handler)
//! ```
//!
//! Both services are milieu servers on reactors of their own threads, as
//! in `tests/http_propagation.rs`.

mod common;

use std::collections::HashMap;

use common::server::HttpServer;
use common::SOCKET_DEADLINE;
use milieu::http::{Client, Request, Response, Server};
use milieu::reactor::Reactor;
use milieu::remote::{Propagation, TraceContext};
use opentelemetry::trace::{Span, TraceContextExt, Tracer, TracerProvider};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracer, SdkTracerProvider, SpanData};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER: &str = "00f067aa0ba902b7";

/// A tracer whose finished spans land in the returned exporter.
fn tracer() -> (SdkTracerProvider, SdkTracer, InMemorySpanExporter) {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let tracer = provider.tracer("otel_bridge");
    (provider, tracer, exporter)
}

fn client() -> Client {
    Client::builder()
        .connect_timeout(SOCKET_DEADLINE)
        .read_timeout(SOCKET_DEADLINE)
        .write_timeout(SOCKET_DEADLINE)
        .propagation(Propagation::new())
        .build()
}

/// Service B (a plain handler: the bridge around a call): starts and ends
/// an OpenTelemetry span `handle`, answers with its milieu trace context.
fn service_b(tracer: SdkTracer) -> HttpServer {
    HttpServer::serve(Server::new().serve(move |_: Request| {
        let trace = milieu::get::<TraceContext>().expect("installed by the server");
        let mut handle = tracer.start("handle");
        handle.end();
        Response::text(
            200,
            format!(
                "b-trace {}\nb-span {}\nb-parent {}\nb-flags {}\nb-tracestate {}",
                trace.trace_id(),
                trace.span_id(),
                trace.parent_id().map(|p| p.to_string()).unwrap_or_default(),
                trace.flags(),
                trace.tracestate().unwrap_or_default(),
            ),
        )
    }))
}

/// How A calls B.
#[derive(Clone, Copy)]
enum Call {
    /// Inside an OpenTelemetry span `work` made current around the send.
    InSpan,
    /// With no OpenTelemetry span of A's own: twice, to see that each
    /// request goes out from a span of its own.
    Twice,
}

/// Service A (an `async` handler: the bridge around each poll): calls B
/// as `call` says, then starts an OpenTelemetry span `after` (on a later
/// poll, once B answered), and answers with its own trace context and
/// B's answers.
fn service_a(b: &HttpServer, tracer: SdkTracer, call: Call) -> HttpServer {
    let url = format!("http://{}/", b.addr);
    let client = client();
    HttpServer::serve(Server::new().serve(move |_: Request| {
        let (client, url, tracer) = (client.clone(), url.clone(), tracer.clone());
        async move {
            let own = milieu::get::<TraceContext>().expect("installed by the server");
            let mut answers = Vec::new();
            match call {
                Call::InSpan => {
                    let work = opentelemetry::Context::current_with_span(tracer.start("work"));
                    // The client reads the context when the request is
                    // sent; the guard is not `Send`, so it lives only
                    // around the send, not across the `.await`.
                    let request = {
                        let _work = work.clone().attach();
                        client.get(&url).send()
                    };
                    answers.push(request.await);
                    work.span().end();
                }
                Call::Twice => {
                    answers.push(client.get(&url).send().await);
                    answers.push(client.get(&url).send().await);
                }
            }
            tracer.start("after").end();
            let mut text = format!("a-trace {}\na-span {}", own.trace_id(), own.span_id());
            for answer in answers {
                match answer {
                    Ok(answer) => {
                        text.push('\n');
                        text.push_str(answer.text().unwrap_or_default());
                    }
                    Err(error) => return Response::text(502, error.to_string()),
                }
            }
            Response::text(200, text)
        }
    }))
}

/// `GET /` on `addr` with these extra header lines; the answer's body.
fn call(addr: std::net::SocketAddr, headers: &[(&str, &str)]) -> String {
    let mut reactor = Reactor::new().unwrap();
    let client = Client::builder()
        .propagation(None)
        .read_timeout(SOCKET_DEADLINE)
        .build();
    let mut request = client.get(&format!("http://{addr}/"));
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let answer = reactor
        .run_until(async move { request.await })
        .unwrap()
        .expect("answered");
    assert_eq!(answer.status(), 200, "{}", answer.text().unwrap_or(""));
    answer.text().unwrap().to_owned()
}

/// The values of the lines starting with `prefix`, in order.
fn lines<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .collect()
}

#[track_caller]
fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
    match lines(text, prefix)[..] {
        [one] => one,
        ref other => panic!("{} `{prefix}` lines in:\n{text}", other.len()),
    }
}

/// The finished spans by name (each name once).
#[track_caller]
fn spans(exporter: &InMemorySpanExporter) -> HashMap<String, SpanData> {
    let finished = exporter.get_finished_spans().expect("the exporter is open");
    let mut by_name = HashMap::new();
    for span in finished {
        let name = span.name.to_string();
        assert!(
            by_name.insert(name.clone(), span).is_none(),
            "two `{name}` spans"
        );
    }
    by_name
}

#[test]
fn otel_spans_and_milieu_requests_make_one_trace() {
    let (_provider, tracer, exporter) = tracer();
    let b = service_b(tracer.clone());
    let a = service_a(&b, tracer, Call::InSpan);
    let text = call(
        a.addr,
        &[
            ("traceparent", &format!("00-{TRACE}-{CALLER}-01")),
            ("tracestate", "congo=t61rcWkgMzE"),
        ],
    );
    let spans = spans(&exporter);
    let (work, handle, after) = (&spans["work"], &spans["handle"], &spans["after"]);

    // One trace id everywhere.
    assert_eq!(line(&text, "a-trace "), TRACE);
    assert_eq!(line(&text, "b-trace "), TRACE);
    for span in [work, handle, after] {
        assert_eq!(
            span.span_context.trace_id().to_string(),
            TRACE,
            "{}",
            span.name
        );
    }

    // `work`, started by A's handler, is a child of A's request span (the
    // remote parent the server attached), not of the caller's span.
    let a_span = line(&text, "a-span ");
    assert_ne!(a_span, CALLER);
    assert_eq!(work.parent_span_id.to_string(), a_span);
    assert!(work.parent_span_is_remote);

    // B's parent is `work`: A's client sent the current OpenTelemetry span
    // as it is, with its flags and the tracestate it inherited.
    assert_eq!(
        line(&text, "b-parent "),
        work.span_context.span_id().to_string()
    );
    assert_eq!(line(&text, "b-flags "), "01");
    assert_eq!(line(&text, "b-tracestate "), "congo=t61rcWkgMzE");

    // `handle`, started by B's handler, is a child of B's request span.
    assert_eq!(handle.parent_span_id.to_string(), line(&text, "b-span "));
    assert!(handle.parent_span_is_remote);

    // `after`, started on a later poll of A's handler (after B answered),
    // is again a child of A's request span: the bridge is attached around
    // every poll, and `work` was current only around the send.
    assert_eq!(after.parent_span_id.to_string(), a_span);
}

#[test]
fn without_an_otel_span_each_request_goes_out_from_a_new_milieu_span() {
    let (_provider, tracer, exporter) = tracer();
    let b = service_b(tracer.clone());
    let a = service_a(&b, tracer, Call::Twice);
    let text = call(
        a.addr,
        &[("traceparent", &format!("00-{TRACE}-{CALLER}-01"))],
    );

    // OpenTelemetry's current span in A's handler is the remote one the
    // server attached (A's request span): it is not sent as is. Each
    // request gets a child span of its own, as without the bridge (the W3C
    // test harness checks that each outbound call has a new parent-id).
    let a_span = line(&text, "a-span ");
    let parents = lines(&text, "b-parent ");
    assert_eq!(parents.len(), 2, "{text}");
    assert_ne!(parents[0], parents[1]);
    for parent in &parents {
        assert_ne!(*parent, a_span);
        assert_ne!(*parent, CALLER);
    }
    assert_eq!(lines(&text, "b-trace "), [TRACE, TRACE]);

    // B's `handle` spans are children of B's request spans, in the trace.
    let finished = exporter.get_finished_spans().unwrap();
    let mut handle_parents: Vec<String> = finished
        .iter()
        .filter(|s| s.name == "handle")
        .map(|s| s.parent_span_id.to_string())
        .collect();
    let mut b_spans: Vec<String> = lines(&text, "b-span ")
        .iter()
        .map(|s| s.to_string())
        .collect();
    handle_parents.sort();
    b_spans.sort();
    assert_eq!(handle_parents, b_spans);
}

#[test]
fn an_unsampled_trace_stays_unsampled_and_its_span_still_propagates() {
    let (_provider, tracer, exporter) = tracer();
    let b = service_b(tracer.clone());
    let a = service_a(&b, tracer, Call::InSpan);
    let text = call(
        a.addr,
        &[("traceparent", &format!("00-{TRACE}-{CALLER}-00"))],
    );

    // The SDK's default sampler follows the parent: the request span is
    // not sampled, so neither is any span under it, and nothing is
    // recorded...
    assert!(exporter.get_finished_spans().unwrap().is_empty());
    // ...but the trace still crosses, with its flag: B continues it,
    // unsampled, from a span of A's (`work`, unrecorded but with an id).
    assert_eq!(line(&text, "b-trace "), TRACE);
    assert_eq!(line(&text, "b-flags "), "00");
    let parent = line(&text, "b-parent ");
    assert_ne!(parent, line(&text, "a-span "));
    assert_ne!(parent, "");
}

#[test]
fn a_trace_started_by_otel_outside_any_request_reaches_milieu() {
    let (_provider, tracer, exporter) = tracer();
    let b = service_b(tracer.clone());
    let client = client();
    let url = format!("http://{}/", b.addr);
    let mut reactor = Reactor::new().unwrap();

    // A root span of the application's, current while the request is sent
    // from outside any milieu request (no milieu TraceContext at all).
    let root = opentelemetry::Context::current_with_span(tracer.start("root"));
    let sent_in = root.clone();
    let answer = reactor
        .run_until(async move {
            // Sent on the reactor (the client runs on the current one).
            let request = {
                let _root = sent_in.attach();
                client.get(&url).send()
            };
            request.await
        })
        .unwrap()
        .expect("answered");
    root.span().end();
    let text = answer.text().unwrap();

    let spans = spans(&exporter);
    let root = &spans["root"];
    assert_eq!(
        line(text, "b-trace "),
        root.span_context.trace_id().to_string()
    );
    assert_eq!(
        line(text, "b-parent "),
        root.span_context.span_id().to_string()
    );
    assert_eq!(
        spans["handle"].parent_span_id.to_string(),
        line(text, "b-span ")
    );
}
