#!/usr/bin/env bash
# HTTP hello world, side by side in one run: examples/orders.rs (milieu,
# one reactor thread), examples/hyper_hello.rs (hyper 1.x on a tokio
# current_thread runtime) and benches/twisted_hello.py (twisted.web), each
# loaded by the same `wrk -t1 -c64 -d10s` on `GET /`, keep-alive, loopback.
# The server is pinned to CPU 0 and wrk to CPU 1 (taskset). Runs the
# milieu/hyper pair N times (default 3, the side that goes first
# alternating), Twisted once, then prints the table and the ratios (above 1,
# milieu serves more requests per second), with each server's CPU time per
# request read from /proc (user + system, all threads). Also
# measures `POST /orders` on milieu (SQLite, a wrk Lua script) once.
# See docs/benchmarks.md, "HTTP: hello world".
#
# Usage: bash benches/compare_http.sh [--pairs N] [--duration S]
# Needs wrk (apt-get install wrk) and Twisted (installed into
# target/twisted-venv from PyPI when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

pairs=3
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

echo "== cargo build --release --example orders --example hyper_hello"
cargo build --release --example orders --example hyper_hello
bin=target/release/examples
venv=target/twisted-venv
if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "twisted==26.10.0"
fi
# work, start, stop, cpu_ticks, load:
source benches/server.sh
# pair_milieu / pair_hyper I: one side of pair I into m[I], mc[I] / h[I], hc[I].
pair_milieu() {
    start milieu taskset -c 0 "$bin/orders" --addr 127.0.0.1:0 --threads 1 --data "$work/data"
    local out
    out=$(load "http://$addr/")
    read -r "m[$1]" "mc[$1]" <<< "$out"
    stop
}
pair_hyper() {
    start hyper taskset -c 0 "$bin/hyper_hello" --addr 127.0.0.1:0
    local out
    out=$(load "http://$addr/")
    read -r "h[$1]" "hc[$1]" <<< "$out"
    stop
}

echo "== load average: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs"
declare -a m h mc hc
for i in $(seq "$pairs"); do
    # Alternate which side goes first, so a drift of the machine's speed
    # during the run does not favour one side.
    if ((i % 2)); then pair_milieu "$i"; pair_hyper "$i"; else pair_hyper "$i"; pair_milieu "$i"; fi
    echo "-- pair $i: milieu ${m[$i]} req/s (${mc[$i]} µs CPU/req), hyper ${h[$i]} req/s (${hc[$i]} µs CPU/req)"
done
start twisted taskset -c 0 "$venv/bin/python" benches/twisted_hello.py 0
out=$(load "http://$addr/")
read -r t tc <<< "$out"
stop
echo "-- twisted.web $t req/s ($tc µs CPU/req)"

cat > "$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"item": "tea", "quantity": 2}'
wrk.headers["Content-Type"] = "application/json"
LUA
start milieu taskset -c 0 "$bin/orders" --addr 127.0.0.1:0 --threads 1 --data "$work/post-data"
out=$(load "http://$addr/orders" -s "$work/post.lua")
read -r p pc <<< "$out"
stop
echo "-- milieu POST /orders (SQLite, WAL, synchronous=FULL) $p req/s ($pc µs CPU/req)"

echo
echo "| pair | milieu (req/s) | hyper (req/s) | milieu / hyper | milieu CPU/req | hyper CPU/req | hyper CPU / milieu CPU |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
ratios=()
cpu_ratios=()
for i in $(seq "$pairs"); do
    r=$(python3 -c "print(f'{${m[$i]}/${h[$i]}:.2f}')")
    c=$(python3 -c "print(f'{${hc[$i]}/${mc[$i]}:.2f}')")
    ratios+=("$r")
    cpu_ratios+=("$c")
    echo "| $i | ${m[$i]} | ${h[$i]} | ${r}x | ${mc[$i]} µs | ${hc[$i]} µs | ${c}x |"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {printf "%.2f\n", (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo
echo "median milieu / hyper: $(median "${ratios[@]}")x requests/s (goal >= 1.0x); range $(printf '%s\n' "${ratios[@]}" | sort -n | head -1)-$(printf '%s\n' "${ratios[@]}" | sort -n | tail -1)"
echo "median hyper CPU / milieu CPU per request: $(median "${cpu_ratios[@]}")x (above 1: milieu spends less)"
mid=$(printf '%s\n' "${m[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "milieu (median of pairs) / twisted.web: $(python3 -c "print(f'{$mid/$t:.1f}')")x"
echo "POST /orders: $p req/s"
