#!/usr/bin/env bash
# POST /orders, side by side in one run (docs/benchmarks.md, "Group
# commit"): the orders example (milieu, one reactor thread, SQLite in WAL
# mode with synchronous = FULL) with group commit on (the default,
# --max-batch 64) and off (--max-batch 1), and examples/orders_peer.rs
# (hyper 1.x on a tokio current_thread runtime, rusqlite in spawn_blocking,
# one transaction per request, the same schema and durability). Each is
# loaded by the same `wrk -t1 -c64` with the same Lua script, on loopback,
# server pinned to CPU 0 and wrk to CPU 1, with a fresh database; N rounds
# (default 3), the order of the sides rotating each round. The peer logs
# nothing; milieu runs with --log-level warn (no line per order), and
# once more with its default (info: a line per order placed and one per
# notification delivered) as "milieu-info". Then the same with one
# connection (-c1) and the default log level: milieu with group commit on
# and off, and, with
# --baseline REV, the orders example as built from commit REV (what
# "today" was before group commit). Prints each run, the table, and the
# medians of the ratios, with each server's CPU time per request read from
# /proc (user + system, all threads). With --strace, also counts the
# fsync and fdatasync calls per order of each server over a bounded run
# (strace slows the servers: those runs are not timed).
#
# Usage: bash benches/compare_orders.sh [--rounds N] [--duration S]
#        [--baseline REV] [--strace]
# Needs wrk (apt-get install wrk); --strace needs strace.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=3
duration=10
baseline=""
count_syncs=0
while (($#)); do
    case "$1" in
        --rounds) rounds="$2"; shift ;;
        --duration) duration="$2"; shift ;;
        --baseline) baseline="$2"; shift ;;
        --strace) count_syncs=1 ;;
        *) echo "usage: $0 [--rounds N] [--duration S] [--baseline REV] [--strace]" >&2; exit 2 ;;
    esac
    shift
done
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }

# work, start, stop, cpu_ticks:
source benches/server.sh
bin=target/release/examples
if [[ -n "$baseline" ]]; then
    # Built first, from the commit's own sources, in this target directory
    # (the dependencies are shared), then kept under another name.
    echo "== the orders example at $baseline ($(git rev-parse --short "$baseline"))"
    mkdir -p "$work/baseline"
    git archive "$baseline" | tar -x -C "$work/baseline"
    (cd "$work/baseline" && CARGO_TARGET_DIR="$OLDPWD/target" cargo build --release --example orders)
    cp "$bin/orders" "$work/orders-baseline"
fi
echo "== cargo build --release --example orders --example orders_peer"
cargo build --release --example orders --example orders_peer

cat > "$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"item": "tea", "quantity": 2}'
wrk.headers["Content-Type"] = "application/json"
LUA

# load_post URL CONNECTIONS: wrk on CPU 1; sets `got_rps` (requests/s) and
# `got_cpu` (the server's CPU time per request in microseconds).
load_post() {
    local url=$1 connections=$2
    local before after requests
    before=$(cpu_ticks "$pid")
    taskset -c 1 wrk -t1 -c"$connections" -d"${duration}s" -s "$work/post.lua" "$url" > "$work/wrk.txt"
    after=$(cpu_ticks "$pid")
    if grep -E "Non-2xx|Socket errors" "$work/wrk.txt" >&2; then
        echo "errors under load against $url: not a valid measurement" >&2
        exit 1
    fi
    if ! grep -q "Requests/sec" "$work/wrk.txt"; then
        echo "wrk measured nothing against $url:" >&2
        cat "$work/wrk.txt" >&2
        exit 1
    fi
    got_rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.txt")
    requests=$(awk '/requests in/ {print $1}' "$work/wrk.txt")
    got_cpu=$(python3 -c "print(f'{($after - $before) / $(getconf CLK_TCK) / $requests * 1e6:.1f}')")
}

# server NAME DATA: the command line of server NAME on database DATA.
server() {
    local data=$2
    case "$1" in
        milieu) echo "$bin/orders --addr 127.0.0.1:0 --threads 1 --data $data --log-level warn" ;;
        milieu-off) echo "$bin/orders --addr 127.0.0.1:0 --threads 1 --data $data --log-level warn --max-batch 1" ;;
        milieu-info) echo "$bin/orders --addr 127.0.0.1:0 --threads 1 --data $data" ;;
        milieu-info-off) echo "$bin/orders --addr 127.0.0.1:0 --threads 1 --data $data --max-batch 1" ;;
        peer) echo "$bin/orders_peer --addr 127.0.0.1:0 --data $data" ;;
        baseline) echo "$work/orders-baseline --addr 127.0.0.1:0 --threads 1 --data $data" ;;
    esac
}

# measure NAME CONNECTIONS: one timed run on a fresh database; sets
# got_rps and got_cpu.
runs=0
measure() {
    runs=$((runs + 1))
    # shellcheck disable=SC2046
    start "$1" taskset -c 0 $(server "$1" "$work/data-$runs")
    load_post "http://$addr/orders" "$2"
    stop
}

echo "== load average: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs"
declare -A rps cpu
sides=(milieu peer milieu-off milieu-info)
for i in $(seq "$rounds"); do
    for k in 0 1 2 3; do
        name=${sides[$(((i + k) % 4))]}
        measure "$name" 64
        rps[$name,$i]=$got_rps
        cpu[$name,$i]=$got_cpu
        echo "-- round $i, 64 connections: $name ${rps[$name,$i]} req/s (${cpu[$name,$i]} µs CPU/req)"
    done
done
singles=(milieu-info milieu-info-off)
[[ -n "$baseline" ]] && singles+=(baseline)
for i in $(seq "$rounds"); do
    for k in $(seq 0 $((${#singles[@]} - 1))); do
        name=${singles[$(((i + k) % ${#singles[@]}))]}
        measure "$name" 1
        rps[$name-1,$i]=$got_rps
        cpu[$name-1,$i]=$got_cpu
        echo "-- round $i, 1 connection: $name ${rps[$name-1,$i]} req/s (${cpu[$name-1,$i]} µs CPU/req)"
    done
done

ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {printf "%.2f\n", (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo
echo "| round | milieu (req/s) | peer (req/s) | milieu, group commit off (req/s) | milieu / peer | milieu / off | milieu-info (req/s) | milieu-info / peer | CPU/req milieu | peer | off | milieu-info |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
vs_peer=()
vs_off=()
info_vs_peer=()
for i in $(seq "$rounds"); do
    p=$(ratio "${rps[milieu,$i]}" "${rps[peer,$i]}")
    o=$(ratio "${rps[milieu,$i]}" "${rps[milieu-off,$i]}")
    n=$(ratio "${rps[milieu-info,$i]}" "${rps[peer,$i]}")
    vs_peer+=("$p")
    vs_off+=("$o")
    info_vs_peer+=("$n")
    echo "| $i | ${rps[milieu,$i]} | ${rps[peer,$i]} | ${rps[milieu-off,$i]} | ${p}x | ${o}x | ${rps[milieu-info,$i]} | ${n}x | ${cpu[milieu,$i]} µs | ${cpu[peer,$i]} µs | ${cpu[milieu-off,$i]} µs | ${cpu[milieu-info,$i]} µs |"
done
echo
echo "| round, 1 connection | milieu (req/s) | group commit off (req/s) | milieu / off |$([[ -n "$baseline" ]] && echo " baseline $baseline (req/s) | milieu / baseline |")"
echo "| --- | --- | --- | --- |$([[ -n "$baseline" ]] && echo " --- | --- |")"
one_off=()
one_base=()
for i in $(seq "$rounds"); do
    o=$(ratio "${rps[milieu-info-1,$i]}" "${rps[milieu-info-off-1,$i]}")
    one_off+=("$o")
    line="| $i | ${rps[milieu-info-1,$i]} | ${rps[milieu-info-off-1,$i]} | ${o}x |"
    if [[ -n "$baseline" ]]; then
        b=$(ratio "${rps[milieu-info-1,$i]}" "${rps[baseline-1,$i]}")
        one_base+=("$b")
        line+=" ${rps[baseline-1,$i]} | ${b}x |"
    fi
    echo "$line"
done
echo
echo "median milieu / peer, 64 connections: $(median "${vs_peer[@]}")x requests/s (goal >= 10x)"
echo "median milieu / milieu with group commit off, 64 connections: $(median "${vs_off[@]}")x (goal >= 10x)"
echo "median milieu-info (logging each order) / peer, 64 connections: $(median "${info_vs_peer[@]}")x"
echo "median milieu / group commit off, 1 connection: $(median "${one_off[@]}")x"
if [[ -n "$baseline" ]]; then
    echo "median milieu / $baseline, 1 connection: $(median "${one_base[@]}")x (goal >= 1.0x, no slower than before)"
fi

if ((count_syncs)); then
    command -v strace >/dev/null || { echo "strace is missing: apt-get install strace" >&2; exit 1; }
    echo
    echo "== fsync + fdatasync calls per order (strace -f, wrk -c64 for 5 s, not timed)"
    for name in milieu peer milieu-off; do
        data="$work/sync-$name"
        # shellcheck disable=SC2046
        start "strace-$name" strace -f -qq -e trace=fsync,fdatasync -o "$work/strace-$name.txt" $(server "$name" "$data")
        taskset -c 1 wrk -t1 -c64 -d5s -s "$work/post.lua" "http://$addr/orders" > "$work/wrk-sync.txt"
        sleep 1 # the last deliveries and marks
        # The server is strace's child: stop it, then strace ends.
        kill "$(pgrep -P "$pid")"
        stop
        orders=$(python3 -c "import sqlite3; print(sqlite3.connect('$data/orders.sqlite').execute('select count(*) from orders').fetchone()[0])")
        syncs=$(grep -cE "^[0-9]+ +f(data)?sync\(" "$work/strace-$name.txt" || true)
        echo "-- $name: $syncs syncs for $orders orders: $(python3 -c "print(f'{$syncs/$orders:.3f}')") per order"
    done
fi
