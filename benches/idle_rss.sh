#!/usr/bin/env bash
# Memory of idle keep-alive connections: the resident set (VmRSS) of
# examples/orders.rs (one reactor thread) before and while
# examples/http_idle.rs holds 10,000 served keep-alive connections on it.
# Goal (issue 6): at most 30 MiB above the baseline.
# See docs/benchmarks.md, "HTTP: idle connections".
#
# Usage: bash benches/idle_rss.sh [--connections N]
set -euo pipefail
cd "$(dirname "$0")/.."
connections=10000
if [[ "${1:-}" == "--connections" ]]; then connections="$2"; fi
# Each process holds one side of every connection: raise the soft limit
# as far as the hard limit allows.
want=$((connections + 1024))
hard=$(ulimit -Hn)
if [[ "$hard" != unlimited && "$hard" -lt "$want" ]]; then
    echo "ulimit -Hn is $hard, below the $want descriptors needed" >&2
    exit 1
fi
ulimit -n "$want"

cargo build --release --example orders --example http_idle
# work, start (sets pid and addr):
source benches/server.sh
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

start orders target/release/examples/orders --addr 127.0.0.1:0 --data "$work/data" \
    --idle-timeout-ms 600000
# Warm up: a few requests so the baseline includes a served connection.
for _ in 1 2 3; do curl -s "http://$addr/" > /dev/null || true; done
sleep 1
before=$(rss "$pid")
target/release/examples/http_idle --addr "$addr" --connections "$connections" --hold-secs 8 > "$work/client" &
client=$!
for _ in $(seq 600); do grep -q holding "$work/client" 2>/dev/null && break; sleep 0.1; done
sleep 2
during=$(rss "$pid")
wait "$client"
echo "server VmRSS before: $before KiB"
echo "server VmRSS holding $(cat "$work/client" | awk '{print $2}') connections: $during KiB"
echo "difference: $(( (during - before) / 1024 )) MiB ($(( (during - before) * 1024 / connections )) bytes per connection); goal <= 30 MiB"
