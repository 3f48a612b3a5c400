#!/usr/bin/env bash
# milieu against OpenTelemetry's own Python propagators
# (TraceContextTextMapPropagator, W3CBaggagePropagator), both ways:
# tests/otel_python_interop.rs drives tests/interop/otel_propagators.py as
# a client of a milieu service and as a server a milieu client calls.
#
# Installs opentelemetry-api and opentelemetry-sdk from PyPI into a virtual
# environment under target/ (made once, reused), prints the versions, then
# runs the tests, which are ignored by the plain `cargo test` because they
# need that Python. Exits non-zero if a check fails.
# Usage: bash .ci/otel_interop.sh
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/otel-venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" || {
        echo "python3 -m venv failed: on Debian, install python3-venv" >&2
        exit 1
    }
fi
"$venv/bin/python" -c 'import opentelemetry.sdk.trace, opentelemetry.baggage.propagation' 2>/dev/null ||
    "$venv/bin/pip" install --quiet --disable-pip-version-check opentelemetry-api opentelemetry-sdk
"$venv/bin/python" - <<'PY'
from importlib.metadata import version
print("opentelemetry-api", version("opentelemetry-api"), "/ opentelemetry-sdk", version("opentelemetry-sdk"))
PY

MILIEU_OTEL_PYTHON="$PWD/$venv/bin/python" \
    cargo test --all-features --test otel_python_interop -- --ignored
