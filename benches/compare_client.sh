#!/usr/bin/env bash
# HTTP client, side by side in one run: examples/client_load.rs with
# milieu's client (`milieu::http::Client`, one reactor) and with hyper's
# (`hyper_util::client::legacy::Client`, a tokio current_thread runtime),
# each making keep-alive `GET /` requests, 16 in flight, against the same
# server: examples/hyper_hello.rs (hyper 1.x, a server neither client
# wrote). The server is pinned to CPU 0 and the client to CPU 1. Runs the
# pair N times (default 5, the side that goes first alternating) and prints
# each run, then the ratios milieu ÷ hyper of requests per second (above
# 1, milieu's client is faster) and of client CPU per request (below 1,
# milieu's client spends less). See docs/benchmarks.md, "HTTP client".
#
# Usage: bash benches/compare_client.sh [--pairs N] [--seconds S]
set -euo pipefail
cd "$(dirname "$0")/.."

pairs=5
seconds=5
while (($#)); do
    case "$1" in
        --pairs) pairs="$2"; shift ;;
        --seconds) seconds="$2"; shift ;;
        *) echo "usage: $0 [--pairs N] [--seconds S]" >&2; exit 2 ;;
    esac
    shift
done

echo "== cargo build --release --example client_load --example hyper_hello"
cargo build --release --example client_load --example hyper_hello
bin=target/release/examples
# work, start, stop, cpu_ticks:
source benches/server.sh
start hyper_hello taskset -c 0 "$bin/hyper_hello" --addr 127.0.0.1:0

run() {
    taskset -c 1 "$bin/client_load" --client "$1" --url "http://$addr/" \
        --in-flight 16 --warmup 1 --seconds "$seconds"
}

results="$work/results.txt"
: > "$results"
for ((i = 1; i <= pairs; i++)); do
    if ((i % 2)); then order="milieu hyper"; else order="hyper milieu"; fi
    for client in $order; do
        line=$(run "$client")
        echo "pair $i: $line"
        echo "$i $line" >> "$results"
    done
done

python3 - "$results" <<'EOF'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    f = line.split()
    pair, client = int(f[0]), f[2]
    values = dict(zip(f[1::2], f[2::2]))
    runs.setdefault(pair, {})[client] = (float(values["rps"]), float(values["cpu_us_per_request"]))
rps = [p["milieu"][0] / p["hyper"][0] for p in runs.values()]
cpu = [p["milieu"][1] / p["hyper"][1] for p in runs.values()]
print()
print("milieu / hyper, requests per second: " + ", ".join(f"{r:.2f}" for r in rps)
      + f"; median {statistics.median(rps):.2f}x")
print("milieu / hyper, client CPU per request: " + ", ".join(f"{r:.2f}" for r in cpu)
      + f"; median {statistics.median(cpu):.2f}x")
EOF
