#!/usr/bin/env bash
# Instructions per request of examples/axum_hello serving `GET /`, with
# and without milieu's ContextLayer, counted by valgrind's callgrind
# (deterministic, unlike requests per second on a shared machine): each
# side runs under callgrind twice, serving 0 and then N sequential
# keep-alive requests (benches/http_client.py); the difference of the two
# totals divided by N is one request's cost, server side (hyper, axum,
# the layer, tokio). A third side, `--passthrough-layer`, is a layer of
# the same shape that does nothing (what axum charges for any layer). Two
# more sides put each layer around the whole router instead of through
# `Router::layer` (`--layer-outside`, `--passthrough-layer-outside`). See
# docs/benchmarks.md, "axum hello with the layer".
#
# With `--lookup-trace`, the handler behind milieu's layer also reads the
# request's TraceContext (examples/axum_hello).
#
# Usage: bash benches/axum_instructions.sh [-n N] [--lookup-trace]
# Needs valgrind (apt-get install valgrind).
set -euo pipefail
cd "$(dirname "$0")/.."
n=2000
handler=()
while (($#)); do
    case "$1" in
        -n) n=$2; shift ;;
        --lookup-trace) handler=(--lookup-trace) ;;
        *) echo "usage: $0 [-n N] [--lookup-trace]" >&2; exit 2 ;;
    esac
    shift
done
command -v valgrind >/dev/null || { echo "valgrind is missing: apt-get install valgrind" >&2; exit 1; }
cargo build --release --quiet --example axum_hello --features axum,tokio
bin=target/release/examples/axum_hello
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# callgrind_requests:
source benches/callgrind.sh
# count REQUESTS [FLAGS]: callgrind's total for the server serving REQUESTS.
count() {
    local requests=$1 dir
    shift
    dir=$(mktemp -d -p "$scratch")
    callgrind_requests "$dir" TERM "$requests" "$bin" --addr 127.0.0.1:0 "$@"
}

per_request() {
    local idle busy
    idle=$(count 0 "$@")
    busy=$(count "$n" "$@")
    echo $(((busy - idle) / n))
}
without=$(per_request)
with=$(per_request --layer "${handler[@]}")
pass=$(per_request --passthrough-layer)
outside=$(per_request --layer-outside "${handler[@]}")
pass_outside=$(per_request --passthrough-layer-outside)
times() { python3 -c "print(f'{$1/$2:.2f}')"; }
echo "instructions per GET / ($n requests): without the layer $without, with it $with (+$((with - without)), $(times "$with" "$without")x)"
echo "with a do-nothing layer of the same shape (--passthrough-layer): $pass (+$((pass - without)): what axum charges for any layer); the layer's own work: +$((with - pass))"
echo "around the whole router (--layer-outside): $outside (+$((outside - without)), $(times "$outside" "$without")x); the do-nothing layer there (--passthrough-layer-outside): $pass_outside (+$((pass_outside - without))); the layer's own work there: +$((outside - pass_outside))"
