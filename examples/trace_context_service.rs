//! The test service of the W3C Trace Context validation harness
//! (`tests/conformance/w3c-trace-context`, run by `.ci/w3c_conformance.sh`).
//!
//! ```text
//! cargo run --example trace_context_service -- [--addr HOST:PORT]
//! ```
//!
//! `POST /test` with a JSON array of `{"url": ..., "arguments": [...]}`:
//! for each element, in order, `POST` `arguments` (as JSON) to `url` with
//! [`milieu::http::Client`], which propagates the trace context the
//! request arrived with (a new span for each call, the caller's
//! `tracestate` passed on). Answers 200 once every call was made. The
//! first line of stdout is `listening on ADDR`.
//!
//! Nothing here deals with headers: `http::serve` extracts the
//! `traceparent` and `tracestate` of each request into its context, and
//! the client injects them into each call made in that context.

use std::process::ExitCode;

use milieu::http::{self, Client, Request, Response};
use milieu::reactor::Reactor;
use serde_json::Value;

/// One call the harness asks for.
struct Call {
    url: String,
    arguments: Value,
}

/// Reads the harness's instructions: `[{"url": "...", "arguments": [...]}, ...]`.
fn calls(body: &[u8]) -> Result<Vec<Call>, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Array(items) = value else {
        return Err("expected a JSON array".into());
    };
    items
        .into_iter()
        .map(|item| {
            let url = item
                .get("url")
                .and_then(Value::as_str)
                .ok_or("an element without a string `url`")?
                .to_owned();
            let arguments = item.get("arguments").cloned().unwrap_or(Value::Null);
            Ok(Call { url, arguments })
        })
        .collect()
}

async fn test(client: Client, request: Request) -> Response {
    if request.path() != "/test" {
        return Response::status(404);
    }
    if request.method() != "POST" {
        return Response::status(405).with_header("Allow", "POST");
    }
    let calls = match calls(request.body()) {
        Ok(calls) => calls,
        Err(error) => return Response::text(400, error),
    };
    for call in calls {
        let body = call.arguments.to_string();
        let sent = client
            .post(&call.url)
            .header("Content-Type", "application/json")
            .body(body)
            .send();
        if let Err(error) = sent.await {
            // The harness records what arrived; a failed call is its to
            // judge. Say so here for whoever runs the service.
            eprintln!("call to {} failed: {error}", call.url);
        }
    }
    Response::text(200, "{}").with_header("Content-Type", "application/json")
}

fn main() -> ExitCode {
    let mut addr = "127.0.0.1:5000".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--addr", Some(value)) => addr = value,
            _ => {
                eprintln!("usage: trace_context_service [--addr HOST:PORT]");
                return ExitCode::from(2);
            }
        }
    }
    let run = || -> std::io::Result<()> {
        let mut reactor = Reactor::new()?;
        let client = Client::new();
        let app = http::serve(move |request: Request| test(client.clone(), request));
        let listener = reactor
            .handle()
            .listen_tcp(addr.as_str(), move || app.clone())?;
        println!("listening on {}", listener.local_addr());
        reactor.run()
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("trace_context_service: {error}");
            ExitCode::FAILURE
        }
    }
}
