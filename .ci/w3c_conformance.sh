#!/usr/bin/env bash
# The W3C Trace Context validation harness (tests/conformance/w3c-trace-context,
# copied unchanged from w3c/trace-context: see its ORIGIN.md) against
# milieu's test service (examples/trace_context_service.rs), at
# STRICT_LEVEL=2 and SPEC_LEVEL=2 (Trace Context Level 2).
#
# Installs aiohttp from PyPI into a virtual environment under target/ (the
# harness's only dependency), builds and starts the service on a free
# loopback port, runs the harness, stops the service. Exits non-zero if a
# case fails or errors. Usage: bash .ci/w3c_conformance.sh
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/w3c-venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -c 'import aiohttp' 2>/dev/null ||
    "$venv/bin/pip" install --quiet --disable-pip-version-check aiohttp

cargo build --quiet --example trace_context_service
out=$(mktemp)
target/debug/examples/trace_context_service --addr 127.0.0.1:0 >"$out" &
service=$!
trap 'kill "$service" 2>/dev/null || true; rm -f "$out"' EXIT

# The service prints `listening on ADDR` once it accepts connections.
for _ in $(seq 1 100); do
    grep -q '^listening on ' "$out" && break
    sleep 0.1
done
addr=$(sed -n 's/^listening on //p' "$out" | head -n 1)
[ -n "$addr" ] || { echo "the service did not start" >&2; exit 1; }

cd tests/conformance/w3c-trace-context
STRICT_LEVEL=2 SPEC_LEVEL=2 "../../../$venv/bin/python" test.py "http://$addr/test"
