//! Criterion benchmarks of context across processes (issue 14), each group
//! measuring milieu side by side with its peer (see docs/benchmarks.md,
//! "Context across processes: what it costs").
//!
//! Run with `cargo bench --bench remote` (append `-- --warm-up-time 1
//! --measurement-time 3` for a shorter run).
//!
//! Groups (bench ids are `group/name`):
//! - `extract`: reading a request's `traceparent` and a `baggage` of five
//!   members and installing what they bring, then removing it:
//!   milieu's `Propagation::extract_process` + `Incoming::into_scope`
//!   (`milieu_traceparent_5_baggage`, three of the five members decoded
//!   into typed entries, two passed on) against OpenTelemetry's own
//!   `TraceContextPropagator` and `BaggagePropagator` extracting from a
//!   `HashMap` and attaching the result (`otel_traceparent_5_baggage`);
//!   also milieu's cost for a request that brings nothing (a new trace:
//!   `milieu_new_trace`);
//! - `inject`: writing the headers of an outbound request from a context
//!   holding a trace and the same five members: milieu's
//!   `Propagation::inject` into `http::Headers`
//!   (`milieu_traceparent_5_baggage`) against the two OpenTelemetry
//!   propagators injecting into a `HashMap`
//!   (`otel_traceparent_5_baggage`);
//! - `http_request`: one whole request through `http::serve`'s stack
//!   (protocol, handler, response encoding; memory transport, no socket):
//!   a server that reads nothing from callers (`no_propagation`), the
//!   default server with a request that brings nothing (`new_trace`) and
//!   one with a `traceparent` and five baggage members
//!   (`traceparent_5_baggage`).

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use milieu::http::{Headers, Request, Response, Server};
use milieu::reactor::testing::Pair;
use milieu::remote::{Baggage, Propagation, TraceContext};
use opentelemetry::baggage::BaggageExt;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry::KeyValue;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const BAGGAGE: &str = "tenant=acme,tier=3,region=eu-west,session=f81d4fae,flag=on";

#[derive(Baggage)]
#[baggage(key = "tenant")]
struct Tenant(String);

#[derive(Baggage)]
#[baggage(key = "tier")]
struct Tier(u8);

#[derive(Baggage)]
#[baggage(key = "region")]
struct Region(String);

fn propagation() -> Propagation {
    Propagation::new()
        .carry::<Tenant>()
        .carry::<Tier>()
        .carry::<Region>()
}

fn extract(c: &mut Criterion) {
    let mut group = c.benchmark_group("extract");
    let propagation = propagation();
    group.bench_function("milieu_traceparent_5_baggage", |b| {
        b.iter(|| {
            let incoming = propagation.extract_process(
                &[black_box(TRACEPARENT)],
                &[],
                &[black_box(BAGGAGE)],
                &[],
                Some("127.0.0.1:40312"),
            );
            let _guard = incoming.into_scope(milieu::scope()).enter();
            black_box(milieu::contains::<Tenant>());
        })
    });
    group.bench_function("milieu_new_trace", |b| {
        b.iter(|| {
            let incoming = propagation.extract(&[], &[], &[]);
            let _guard = incoming.into_scope(milieu::scope()).enter();
            black_box(milieu::contains::<TraceContext>());
        })
    });
    let trace = TraceContextPropagator::new();
    let baggage = BaggagePropagator::new();
    let headers: HashMap<String, String> = [
        ("traceparent".to_owned(), TRACEPARENT.to_owned()),
        ("baggage".to_owned(), BAGGAGE.to_owned()),
    ]
    .into();
    group.bench_function("otel_traceparent_5_baggage", |b| {
        b.iter(|| {
            let cx = trace.extract(black_box(&headers));
            let cx = baggage.extract_with_context(&cx, black_box(&headers));
            let _guard = cx.attach();
            black_box(opentelemetry::Context::current().has_active_span());
        })
    });
    group.finish();
}

fn inject(c: &mut Criterion) {
    let mut group = c.benchmark_group("inject");
    let propagation = propagation();
    let incoming = propagation.extract(&[TRACEPARENT], &[], &[BAGGAGE]);
    let _request = incoming.into_scope(milieu::scope()).enter();
    group.bench_function("milieu_traceparent_5_baggage", |b| {
        b.iter(|| {
            let mut headers = Headers::new();
            propagation.inject(&mut |name, value| {
                let _ = headers.insert(name, value);
            });
            black_box(headers);
        })
    });
    let trace = TraceContextPropagator::new();
    let baggage = BaggagePropagator::new();
    let parent: HashMap<String, String> =
        [("traceparent".to_owned(), TRACEPARENT.to_owned())].into();
    let cx = trace.extract(&parent).with_baggage([
        KeyValue::new("tenant", "acme"),
        KeyValue::new("tier", "3"),
        KeyValue::new("region", "eu-west"),
        KeyValue::new("session", "f81d4fae"),
        KeyValue::new("flag", "on"),
    ]);
    let _otel = cx.attach();
    group.bench_function("otel_traceparent_5_baggage", |b| {
        b.iter(|| {
            let mut headers = HashMap::new();
            trace.inject(&mut headers);
            baggage.inject(&mut headers);
            black_box(headers);
        })
    });
    group.finish();
}

fn http_request(c: &mut Criterion) {
    let mut group = c.benchmark_group("http_request");
    let hello = |_: Request| Response::text(200, "hello");
    let plain = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n".to_vec();
    let carried = format!(
        "GET / HTTP/1.1\r\nHost: h\r\ntraceparent: {TRACEPARENT}\r\nbaggage: {BAGGAGE}\r\n\r\n"
    )
    .into_bytes();
    let cases = [
        ("no_propagation", Server::new().propagation(None), &plain),
        (
            "new_trace",
            Server::new().propagation(propagation()),
            &plain,
        ),
        (
            "traceparent_5_baggage",
            Server::new().propagation(propagation()),
            &carried,
        ),
    ];
    for (name, server, request) in cases {
        let app = server.serve(hello);
        let mut pair = Pair::new(move || app.clone()).expect("a memory pair");
        group.bench_function(name, |b| {
            b.iter(|| black_box(pair.exchange(request).expect("answered")))
        });
    }
    group.finish();
}

criterion_group!(benches, extract, inject, http_request);
criterion_main!(benches);
