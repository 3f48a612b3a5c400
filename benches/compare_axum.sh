#!/usr/bin/env bash
# axum hello world with milieu's ContextLayer against the same service
# without it, side by side in one run: examples/axum_hello (axum 0.8 on
# a tokio current_thread runtime) started with `--layer`, without a
# layer, and with `--passthrough-layer` (a layer of the same shape that
# does nothing: what axum charges for any layer), and the same two
# around the whole router instead of through `Router::layer`
# (`--layer-outside`, `--passthrough-layer-outside`), each loaded by the same
# `wrk -t1 -c64 -d10s` on `GET /`, keep-alive, loopback. The server is
# pinned to CPU 0 and wrk to CPU 1 (taskset). Runs N rounds of the five
# (default 5), rotating which goes first, then prints the table, the
# ratios to the side without a layer (with: the goal is >= 0.95x) and of
# each layer to the do-nothing one mounted the same way, and each
# server's CPU time per request read from /proc (user + system).
# See docs/benchmarks.md, "axum hello with the layer (issue 15)".
#
# Usage: bash benches/compare_axum.sh [--pairs N] [--duration S]
# (--pairs: the number of rounds)
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
# work, start, stop, cpu_ticks, load, need_wrk, build_example:
source benches/server.sh
need_wrk
build_example axum_hello axum,tokio
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
declare -a with withc without withoutc pass passc around aroundc passaround passaroundc
# Each round runs the five sides, the first moved to the end from one
# round to the next, so no side always goes first.
order=(with without pass around passaround)
for i in $(seq "$pairs"); do
    for name in "${order[@]}"; do
        case $name in
            with) side with "$i" --layer ;;
            without) side without "$i" ;;
            pass) side pass "$i" --passthrough-layer ;;
            around) side around "$i" --layer-outside ;;
            passaround) side passaround "$i" --passthrough-layer-outside ;;
        esac
    done
    order=("${order[@]:1}" "${order[0]}")
    echo "-- round $i: without ${without[$i]} req/s (${withoutc[$i]} µs CPU/req); Router::layer: with the layer ${with[$i]} (${withc[$i]} µs), do-nothing ${pass[$i]} (${passc[$i]} µs); around the router: with the layer ${around[$i]} (${aroundc[$i]} µs), do-nothing ${passaround[$i]} (${passaroundc[$i]} µs)"
done

ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
echo
echo "Requests per second, and each side's ratio to the side without a layer:"
echo
echo "| round | without | with the layer | do-nothing layer | with, around the router | do-nothing, around the router |"
echo "| --- | --- | --- | --- | --- | --- |"
ratios=() floor=() own=() outr=() outfloor=() outown=()
for i in $(seq "$pairs"); do
    ratios+=("$(ratio "${with[$i]}" "${without[$i]}")")
    floor+=("$(ratio "${pass[$i]}" "${without[$i]}")")
    own+=("$(ratio "${with[$i]}" "${pass[$i]}")")
    outr+=("$(ratio "${around[$i]}" "${without[$i]}")")
    outfloor+=("$(ratio "${passaround[$i]}" "${without[$i]}")")
    outown+=("$(ratio "${around[$i]}" "${passaround[$i]}")")
    echo "| $i | ${without[$i]} | ${with[$i]} (${ratios[-1]}x) | ${pass[$i]} (${floor[-1]}x) | ${around[$i]} (${outr[-1]}x) | ${passaround[$i]} (${outfloor[-1]}x) |"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {printf "%.2f\n", (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
range() { echo "$(printf '%s\n' "$@" | sort -n | head -1)-$(printf '%s\n' "$@" | sort -n | tail -1)"; }
echo
echo "median with / without: $(median "${ratios[@]}")x requests/s (goal >= 0.95x); range $(range "${ratios[@]}")"
echo "median do-nothing layer / without: $(median "${floor[@]}")x (what axum charges for any layer); range $(range "${floor[@]}")"
echo "median with / do-nothing layer: $(median "${own[@]}")x (the layer's own work); range $(range "${own[@]}")"
echo "around the whole router: median with / without $(median "${outr[@]}")x, range $(range "${outr[@]}"); do-nothing / without $(median "${outfloor[@]}")x, range $(range "${outfloor[@]}"); with / do-nothing $(median "${outown[@]}")x"
echo "median CPU per request: without $(median "${withoutc[@]}") µs; with $(median "${withc[@]}") µs, do-nothing layer $(median "${passc[@]}") µs; around the router with $(median "${aroundc[@]}") µs, do-nothing $(median "${passaroundc[@]}") µs"
