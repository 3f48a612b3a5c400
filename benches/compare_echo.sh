#!/usr/bin/env bash
# Echo throughput, milieu against tokio, side by side in one run: the line
# echo server of examples/echo.rs (one reactor thread) and the tokio
# current_thread server of examples/tokio_echo.rs, each loaded by the same
# client (examples/echo_load.rs: 50 connections, 16 lines of 64 bytes in
# flight on each, 2 s warm-up, 10 s measured, every echo verified), on
# loopback. Runs the pair (milieu, then tokio) 3 times, prints a table, the
# ratio milieu / tokio of each pair (above 1, milieu is faster) and their
# median. See docs/benchmarks.md, "Reactor: echo throughput".
#
# Usage: bash benches/compare_echo.sh [--quick] [--no-pin] [--pairs N]
#   --quick    1 s warm-up, 3 s measured (smoke test)
#   --no-pin   let the scheduler place server and client; by default, with
#              taskset and 2+ CPUs, the server runs on CPU 0, the client on 1
#   --pairs N  repeat the pair N times (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."

warmup=2
duration=10
pairs=3
pin=1
while (($#)); do
    case "$1" in
        --quick) warmup=1 duration=3 ;;
        --no-pin) pin=0 ;;
        --pairs) pairs="$2"; shift ;;
        *) echo "usage: $0 [--quick] [--no-pin] [--pairs N]" >&2; exit 2 ;;
    esac
    shift
done
client_args=(--connections 50 --depth 16 --line 64 --warmup "$warmup" --duration "$duration")

server_cpu=()
client_cpu=()
placement="not pinned"
if ((pin)) && command -v taskset >/dev/null && (($(nproc) >= 2)); then
    server_cpu=(taskset -c 0)
    client_cpu=(taskset -c 1)
    placement="server on CPU 0, client on CPU 1"
fi

echo "== cargo build --release --example echo --example tokio_echo --example echo_load"
cargo build --release --example echo --example tokio_echo --example echo_load
target_dir=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
bin="$target_dir/release/examples"
tick=$(getconf CLK_TCK)
# work, start, stop, cpu_ticks:
source benches/server.sh

# run NAME BINARY [ARGS...]: starts the server, loads it, stops it; appends a
# row "name lines_per_sec total_lines server_cpu_seconds" to $work/rows.
run() {
    local name=$1 server=$2
    shift 2
    start "$name" "${server_cpu[@]}" "$bin/$server" --addr 127.0.0.1:0 "$@"
    local before after
    before=$(cpu_ticks "$pid")
    echo "-- $name: $server $* on $addr, $placement"
    local result
    result=$("${client_cpu[@]}" "$bin/echo_load" --addr "$addr" "${client_args[@]}")
    echo "$result"
    after=$(cpu_ticks "$pid")
    stop
    local rate lines total
    rate=$(sed -n 's/^RESULT lines_per_sec=\([0-9.]*\).*/\1/p' <<<"$result")
    total=$(sed -n 's/^RESULT .* total=\([0-9]*\).*/\1/p' <<<"$result")
    echo "$name $rate $total $(((after - before)))" >>"$work/rows"
}

echo "== load average: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs"
for i in $(seq "$pairs"); do
    run "milieu/$i" echo --threads 1
    run "tokio/$i" tokio_echo
done

ROWS="$work/rows" TICK="$tick" PAIRS="$pairs" python3 - <<'EOF'
import os, statistics

tick = int(os.environ["TICK"])
rows = {}
with open(os.environ["ROWS"]) as f:
    for line in f:
        name, rate, total, ticks = line.split()
        rows[name] = (float(rate), int(total), int(ticks) / tick)

print()
print("| run | milieu (lines/s) | tokio (lines/s) | milieu / tokio | server CPU per line, milieu | same, tokio |")
print("| --- | --- | --- | --- | --- | --- |")
ratios = []
for i in range(1, int(os.environ["PAIRS"]) + 1):
    m, t = rows[f"milieu/{i}"], rows[f"tokio/{i}"]
    ratio = m[0] / t[0]
    ratios.append(ratio)
    us = lambda r: f"{r[2] / r[1] * 1e6:.2f} µs"
    print(f"| {i} | {m[0]:,.0f} | {t[0]:,.0f} | {ratio:.2f}x | {us(m)} | {us(t)} |")
median = statistics.median(ratios)
verdict = "MET" if median >= 1.0 else "MISSED"
print()
print(f"median milieu / tokio: {median:.2f}x (goal >= 1.0x: {verdict})")
EOF
