#!/usr/bin/env python3
"""OpenTelemetry's own Python propagators against a milieu service.

Needs `opentelemetry-api` and `opentelemetry-sdk` from PyPI (in a virtual
environment: `.ci/otel_interop.sh` makes one). Started by
`tests/otel_python_interop.rs`, one mode per run:

    otel_propagators.py client URL
        Python as the caller. For a sampled and an unsampled SDK span, each
        with a `tracestate` and three baggage members (one with characters
        that must be percent-encoded, one with a space), injects the
        headers with `TraceContextTextMapPropagator` and
        `W3CBaggagePropagator`, sends `GET URL` (urllib), and checks what
        the milieu handler says it read. Prints one JSON line: what was
        sent, what was expected, what the service answered. Exits 1, with
        the mismatches on stderr, if the answer is wrong.

    otel_propagators.py server
        Python as the callee. Prints `listening on 127.0.0.1:PORT`, then
        answers each `GET` with what the two propagators extracted from its
        headers, as JSON. Exits when its standard input closes (the test
        holds it open), so it never outlives the test.

Only the propagators' public API and the SDK's tracer are used; no global
tracer provider or propagator is installed.
"""

import json
import os
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry import baggage, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.propagators import textmap
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    TraceFlags,
    TraceState,
    format_span_id,
    format_trace_id,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACE_CONTEXT = TraceContextTextMapPropagator()
BAGGAGE = W3CBaggagePropagator()

# What the client sends. The milieu service carries `tenant` and `tier` as
# typed entries (`#[derive(Baggage)]`) and passes `note` on as it is.
TENANT = "Zoë&Co;a,b=c"  # not ASCII, and `;` `,` must be escaped
TIER = "3"
NOTE = "hello world"  # a space
TRACESTATE = [("congo", "t61rcWkgMzE"), ("rojo", "00f067aa0ba902b7")]


def form_encodes_spaces():
    """Whether this W3CBaggagePropagator writes a space as `+` (HTML form
    encoding, open-telemetry/opentelemetry-python#5566) rather than `%20`.

    W3C Baggage reads `+` as itself, so a value with a space that such a
    propagator sends arrives at any conformant service with `+` in place of
    the space: milieu must show exactly that, and the plain value once the
    propagator is fixed."""
    carrier = {}
    BAGGAGE.inject(carrier, context=baggage.set_baggage("probe", "a b", context=Context()))
    return carrier.get("baggage") == "probe=a+b"


def client(url):
    provider = TracerProvider()
    tracer = provider.get_tracer("milieu-interop")
    form_encoding = form_encodes_spaces()
    exchanges = []
    failures = []
    for sampled in (True, False):
        # The caller of this span: a remote parent with a `tracestate`, so
        # that the SDK span inherits both it and the sampling decision
        # (the default sampler follows the parent).
        ids = RandomIdGenerator()
        parent = SpanContext(
            trace_id=ids.generate_trace_id(),
            span_id=ids.generate_span_id(),
            is_remote=True,
            trace_flags=TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT),
            trace_state=TraceState(TRACESTATE),
        )
        parent_context = trace.set_span_in_context(NonRecordingSpan(parent), Context())
        span = tracer.start_span("python-client", context=parent_context)
        context = trace.set_span_in_context(span, parent_context)
        for key, value in (("tenant", TENANT), ("tier", TIER), ("note", NOTE)):
            context = baggage.set_baggage(key, value, context=context)

        headers = {}
        TRACE_CONTEXT.inject(headers, context=context)
        BAGGAGE.inject(headers, context=context)
        request = urllib.request.Request(url, headers=headers)
        with urllib.request.urlopen(request, timeout=20) as response:
            answer = json.loads(response.read().decode("utf-8"))
        span.end()

        sent = span.get_span_context()
        expected = {
            "trace_id": format_trace_id(sent.trace_id),
            "parent_id": format_span_id(sent.span_id),
            "flags": "01" if sampled else "00",
            "tracestate": ",".join(f"{k}={v}" for k, v in TRACESTATE),
            "tenant": TENANT,
            "tier": int(TIER),
            "forwarded": {"note": NOTE.replace(" ", "+") if form_encoding else NOTE},
        }
        for key, value in expected.items():
            if answer.get(key) != value:
                failures.append(
                    f"sampled={sampled}: {key}: milieu read {answer.get(key)!r}, "
                    f"expected {value!r} (headers sent: {headers!r})"
                )
        exchanges.append({"sent": headers, "expected": expected, "answer": answer})
    provider.shutdown()

    print(json.dumps({"form_encoding": form_encoding, "exchanges": exchanges}), flush=True)
    for failure in failures:
        print(failure, file=sys.stderr)
    return 1 if failures else 0


class AllValues(textmap.Getter):
    """Every value of a header field, as the propagators expect a getter to
    give them (the default getter is for dicts and gives only one)."""

    def get(self, carrier, key):
        return carrier.get_all(key)

    def keys(self, carrier):
        return list(carrier.keys())


class Extracting(BaseHTTPRequestHandler):
    # Keep-alive and `Content-Length`, as the milieu client expects of a
    # server; HTTP/1.0 would close each connection.
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        getter = AllValues()
        context = TRACE_CONTEXT.extract(self.headers, getter=getter)
        context = BAGGAGE.extract(self.headers, context=context, getter=getter)
        span = trace.get_current_span(context).get_span_context()
        body = json.dumps(
            {
                "valid": span.is_valid,
                "remote": span.is_remote,
                "trace_id": format_trace_id(span.trace_id),
                "parent_id": format_span_id(span.span_id),
                "sampled": span.trace_flags.sampled,
                "tracestate": span.trace_state.to_header() if span.trace_state else "",
                "baggage": dict(baggage.get_all(context)),
                "headers": {
                    name: self.headers.get_all(name) or []
                    for name in ("traceparent", "tracestate", "baggage")
                },
            },
            ensure_ascii=False,
        ).encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass  # one line per request on stderr would only be noise


def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Extracting)
    httpd.daemon_threads = True

    def exit_when_stdin_closes():
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
    host, port = httpd.server_address[:2]
    print(f"listening on {host}:{port}", flush=True)
    httpd.serve_forever()


def main(argv):
    if len(argv) == 3 and argv[1] == "client":
        return client(argv[2])
    if len(argv) == 2 and argv[1] == "server":
        server()
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
