#!/usr/bin/env bash
# axum hello with milieu's ContextLayer against axum hello without it, in
# many short rounds that pair the sides closely in time. The sides are
# examples/axum_hello without a layer, with the layer through
# `Router::layer` (`--layer`) and with it around the whole router
# (`--layer-outside`). All three servers run for the whole measurement,
# each pinned to CPU 0 (taskset) and idle unless loaded; each round loads
# every side once, one at a time, with the same `wrk -t1 -c64 -dSs`
# pinned to CPU 1 on `GET /` (keep-alive, loopback), in a new random
# order each round. A round's ratio is a side's requests per second
# divided by the side without a layer's in the same round, so a slow
# spell of the machine that spans a round moves both terms of its ratio.
#
# Prints every round, then per side: the median of the per-round ratios,
# a 95% confidence interval for that median (a percentile bootstrap over
# the rounds, 10,000 resamples), the median requests per second, and the
# server's median CPU time per request (user + system, from /proc) with
# its busy share (CPU seconds per second of load: near 1.00 means the
# server, not wrk, set the pace).
#
# Compared with benches/compare_axum.sh (five sides, each server started
# anew per round, 10 s rounds), this spends the same time on more, shorter
# rounds of the two questions the goal asks (docs/benchmarks.md, "axum
# hello, paired rounds").
#
# Usage: bash benches/compare_axum_paired.sh [--rounds N] [--duration S]
# (defaults: 60 rounds of 2 s per side, about 7 minutes). Needs wrk
# (apt-get install wrk).
set -euo pipefail
cd "$(dirname "$0")/.."

# work, start, stop, cpu_ticks, load, need_wrk, build_example:
source benches/server.sh
need_wrk
build_example axum_hello axum,tokio

rounds=60 duration=2
while (($#)); do
    case "$1" in
        --rounds) rounds="$2" ;;
        --duration) duration="$2" ;;
        *) echo "usage: $0 [--rounds N] [--duration S]" >&2; exit 2 ;;
    esac
    shift 2
done

sides=(without with around)
declare -A flags=([without]="" [with]="--layer" [around]="--layer-outside")
declare -A pids addrs
stop_all() {
    for side in "${sides[@]}"; do
        if [[ -n "${pids[$side]:-}" ]]; then
            kill "${pids[$side]}" 2>/dev/null || true
            wait "${pids[$side]}" 2>/dev/null || true
        fi
    done
    rm -rf "$work"
}
trap stop_all EXIT
for side in "${sides[@]}"; do
    # shellcheck disable=SC2086 # the flags are words
    start "$side" taskset -c 0 "$bin" --addr 127.0.0.1:0 ${flags[$side]}
    pids[$side]=$pid
    addrs[$side]=$addr
done
# `start` keeps only the last server in `pid`: this script stops them all.
pid=""

echo "== load average: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs"
# One second of load each first, so every server has its connections'
# buffers and the thread's spare frames before the first round counts.
for side in "${sides[@]}"; do
    pid=${pids[$side]}
    duration=1 load "http://${addrs[$side]}/" > /dev/null
done

results="$work/rounds.txt"
: > "$results"
for round in $(seq "$rounds"); do
    order=$(printf '%s\n' "${sides[@]}" | shuf | tr '\n' ' ')
    line="round $round:"
    for side in $order; do
        pid=${pids[$side]}
        read -r rps cpu <<< "$(load "http://${addrs[$side]}/")"
        echo "$round $side $rps $cpu" >> "$results"
        line+=" $side $rps req/s ($cpu µs CPU/req);"
    done
    echo "$line"
done
pid=""

python3 - "$results" "$duration" <<'EOF'
import random, statistics, sys
from collections import defaultdict
path, duration = sys.argv[1], float(sys.argv[2])
rps, cpu = defaultdict(dict), defaultdict(dict)
for line in open(path):
    r, side, q, c = line.split()
    rps[side][int(r)] = float(q)
    cpu[side][int(r)] = float(c)
rounds = sorted(rps["without"])
rng = random.Random(15)
def ci(values):
    meds = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(10000))
    return meds[249], meds[9749]
names = {"with": "with the layer, Router::layer", "around": "with the layer, around the router"}
print()
print(f"{len(rounds)} rounds of {duration:g} s per side")
print()
print("| side | median ratio to without | 95% CI of the median | median req/s | median CPU/req | busy |")
print("| --- | --- | --- | --- | --- | --- |")
def row(side, label):
    q = [rps[side][r] for r in rounds]
    c = [cpu[side][r] for r in rounds]
    busy = statistics.median(q[i] * c[i] / 1e6 for i in range(len(rounds)))
    if side == "without":
        ratio, interval = "1", "-"
    else:
        ratios = [rps[side][r] / rps["without"][r] for r in rounds]
        lo, hi = ci(ratios)
        ratio, interval = f"{statistics.median(ratios):.3f}x", f"{lo:.3f}-{hi:.3f}x"
    print(f"| {label} | {ratio} | {interval} | {statistics.median(q):.0f} | {statistics.median(c):.2f} µs | {busy:.2f} |")
row("without", "without a layer")
for side in ("with", "around"):
    row(side, names[side])
EOF
