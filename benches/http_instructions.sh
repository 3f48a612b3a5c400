#!/usr/bin/env bash
# Instructions per request of examples/orders serving `GET /`, counted by
# valgrind's callgrind (deterministic, unlike requests per second on a
# shared machine): the server runs under callgrind twice, serving 0 and
# then N sequential keep-alive requests (benches/http_client.py); the
# difference of the two totals divided by N is the cost of one request,
# server side, all layers (parse, handler, encode, reactor, context).
# Each REV (a git revision; default: the work tree) is built in a
# temporary worktree with its own target dir, so two revisions compare
# side by side. See docs/benchmarks.md, "HTTP under hostile clients".
#
# Usage: bash benches/http_instructions.sh [-n N] [REV...]
#   e.g. bash benches/http_instructions.sh 0e3ef92 HEAD
# Needs valgrind (apt-get install valgrind).
set -euo pipefail
cd "$(dirname "$0")/.."
n=2000
if [[ "${1:-}" == "-n" ]]; then n=$2; shift 2; fi
command -v valgrind >/dev/null || { echo "valgrind is missing: apt-get install valgrind" >&2; exit 1; }
root=$(pwd)
scratch=$(mktemp -d)
trap 'git -C "$root" worktree prune; rm -rf "$scratch"' EXIT

# callgrind_requests:
source benches/callgrind.sh
# count BIN REQUESTS: callgrind's total for the server serving REQUESTS.
count() {
    local dir
    dir=$(mktemp -d -p "$scratch")
    callgrind_requests "$dir" INT "$2" "$1" --addr 127.0.0.1:0 --data "$dir/data"
}

[[ $# -gt 0 ]] || set -- WORKTREE
echo "| revision | instructions, 0 requests | $n requests | per request |"
echo "| --- | --- | --- | --- |"
for rev in "$@"; do
    if [[ "$rev" == WORKTREE ]]; then
        src=$root
        label="work tree ($(git rev-parse --short HEAD)$(git diff --quiet || echo ', changed'))"
    else
        src="$scratch/src-$rev"
        git worktree add --detach "$src" "$rev" >/dev/null 2>&1
        label=$(git rev-parse --short "$rev")
    fi
    target="$root/target/instructions/$(basename "$src")"
    cargo build --quiet --release --example orders --manifest-path "$src/Cargo.toml" \
        --target-dir "$target" >&2
    bin="$target/release/examples/orders"
    base=$(count "$bin" 0)
    loaded=$(count "$bin" "$n")
    echo "| $label | $base | $loaded | $(( (loaded - base) / n )) |"
done
