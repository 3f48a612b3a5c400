#!/usr/bin/env bash
# HTTP hello world, side by side in one run: examples/orders.rs (milieu,
# one reactor thread), examples/hyper_hello.rs (hyper 1.x on a tokio
# current_thread runtime) and benches/twisted_hello.py (twisted.web), each
# loaded by the same `wrk -t1 -c64 -d10s` on `GET /`, keep-alive, loopback.
# The server is pinned to CPU 0 and wrk to CPU 1 (taskset). Runs the
# milieu/hyper pair N times (default 3), Twisted once, then prints the table
# and the ratios (above 1, milieu serves more requests per second). Also
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
work=$(mktemp -d)
pid=""
cleanup() {
    if [[ -n "$pid" ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# start NAME CMD...: runs the server on CPU 0, waits for its address.
start() {
    local name=$1; shift
    taskset -c 0 "$@" > "$work/$name.out" 2> "$work/$name.err" &
    pid=$!
    for _ in $(seq 100); do
        if grep -q "listening on" "$work/$name.out" 2>/dev/null; then break; fi
        sleep 0.1
    done
    addr=$(grep -m1 -o "127.0.0.1:[0-9]*" "$work/$name.out") || { cat "$work/$name.err" >&2; exit 1; }
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""; }
# load URL [ARGS]: wrk on CPU 1, prints requests/s.
load() {
    local url=$1; shift
    taskset -c 1 wrk -t1 -c64 -d"${duration}s" "$@" "$url" > "$work/wrk.txt"
    grep -E "Non-2xx|Socket errors" "$work/wrk.txt" >&2 || true
    awk '/Requests\/sec/ {print $2}' "$work/wrk.txt"
}

echo "== load average: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs"
declare -a m h
for i in $(seq "$pairs"); do
    start milieu "$bin/orders" --addr 127.0.0.1:0 --threads 1 --data "$work/data"
    m[$i]=$(load "http://$addr/")
    stop
    start hyper "$bin/hyper_hello" --addr 127.0.0.1:0
    h[$i]=$(load "http://$addr/")
    stop
    echo "-- pair $i: milieu ${m[$i]} req/s, hyper ${h[$i]} req/s"
done
start twisted "$venv/bin/python" benches/twisted_hello.py 0
t=$(load "http://$addr/")
stop
echo "-- twisted.web $t req/s"

cat > "$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"item": "tea", "quantity": 2}'
wrk.headers["Content-Type"] = "application/json"
LUA
start milieu "$bin/orders" --addr 127.0.0.1:0 --threads 1 --data "$work/post-data"
p=$(load "http://$addr/orders" -s "$work/post.lua")
stop
echo "-- milieu POST /orders (SQLite, WAL, synchronous=FULL) $p req/s"

echo
echo "| pair | milieu (req/s) | hyper (req/s) | milieu / hyper |"
echo "| --- | --- | --- | --- |"
ratios=()
for i in $(seq "$pairs"); do
    r=$(python3 -c "print(f'{${m[$i]}/${h[$i]}:.2f}')")
    ratios+=("$r")
    echo "| $i | ${m[$i]} | ${h[$i]} | ${r}x |"
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}')
echo
echo "median milieu / hyper: ${median}x (goal >= 1.0x)"
mid=$(printf '%s\n' "${m[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "milieu (median of pairs) / twisted.web: $(python3 -c "print(f'{$mid/$t:.1f}')")x"
echo "POST /orders: $p req/s"
