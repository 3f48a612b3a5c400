#!/usr/bin/env bash
# axum hello world with milieu's ContextLayer against the same service
# without it, side by side in one run: examples/axum_hello.rs (axum 0.8 on
# a tokio current_thread runtime) started with and without `--layer`, each
# loaded by the same `wrk -t1 -c64 -d10s` on `GET /`, keep-alive,
# loopback. The server is pinned to CPU 0 and wrk to CPU 1 (taskset). Runs
# N pairs (default 5), alternating which side goes first, then prints the
# table, the ratios (with / without; the goal is >= 0.95x) and each
# server's CPU time per request read from /proc (user + system).
# See docs/benchmarks.md, "axum hello with the layer (issue 15)".
#
# Usage: bash benches/compare_axum.sh [--pairs N] [--duration S]
# Needs wrk (apt-get install wrk).
set -euo pipefail
cd "$(dirname "$0")/.."

pairs=5
duration=10
while (($#)); do
    case "$1" in
        --pairs) pairs="$2"; shift ;;
        --duration) duration="$2"; shift ;;
        *) echo "usage: $0 [--pairs N] [--duration S]" >&2; exit 2 ;;
    esac
    shift
done
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }

echo "== cargo build --release --example axum_hello --features axum,tokio"
cargo build --release --example axum_hello --features axum,tokio
bin=target/release/examples/axum_hello
# work, start, stop, cpu_ticks, load:
source benches/server.sh
# side NAME I [FLAGS]: one side of pair I into NAME[I] and NAMEc[I].
side() {
    local name=$1 i=$2 out
    shift 2
    start "$name" taskset -c 0 "$bin" --addr 127.0.0.1:0 "$@"
    out=$(load "http://$addr/")
    read -r "${name}[$i]" "${name}c[$i]" <<< "$out"
    stop
}

echo "== load average: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs"
declare -a with withc without withoutc
for i in $(seq "$pairs"); do
    if ((i % 2)); then
        side with "$i" --layer; side without "$i"
    else
        side without "$i"; side with "$i" --layer
    fi
    echo "-- pair $i: with the layer ${with[$i]} req/s (${withc[$i]} µs CPU/req), without ${without[$i]} req/s (${withoutc[$i]} µs CPU/req)"
done

echo
echo "| pair | with the layer (req/s) | without (req/s) | with / without | CPU/req with | CPU/req without |"
echo "| --- | --- | --- | --- | --- | --- |"
ratios=()
for i in $(seq "$pairs"); do
    r=$(python3 -c "print(f'{${with[$i]}/${without[$i]}:.2f}')")
    ratios+=("$r")
    echo "| $i | ${with[$i]} | ${without[$i]} | ${r}x | ${withc[$i]} µs | ${withoutc[$i]} µs |"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {printf "%.2f\n", (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo
echo "median with / without: $(median "${ratios[@]}")x requests/s (goal >= 0.95x); range $(printf '%s\n' "${ratios[@]}" | sort -n | head -1)-$(printf '%s\n' "${ratios[@]}" | sort -n | tail -1)"
echo "median CPU per request: with $(median "${withc[@]}") µs, without $(median "${withoutc[@]}") µs"
