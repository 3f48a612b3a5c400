#!/usr/bin/env bash
# Instructions per context operation, counted by valgrind's callgrind
# (deterministic, unlike timings on a shared machine): examples/context_ops
# runs each operation N times and 0 times; the difference of the two
# totals divided by N is one operation, the loop's own few instructions
# included. These are the counts of docs/design.md, "How it was chosen".
# Each REV (a git revision; default: the work tree) is built in a
# temporary worktree with its own target dir and this tree's
# examples/context_ops.rs, so revisions compare side by side.
#
# Usage: bash benches/context_instructions.sh [-n N] [REV...]
#   e.g. bash benches/context_instructions.sh e6ae88e HEAD
# Needs valgrind (apt-get install valgrind).
set -euo pipefail
cd "$(dirname "$0")/.."
n=100000
if [[ "${1:-}" == "-n" ]]; then n=$2; shift 2; fi
command -v valgrind >/dev/null || { echo "valgrind is missing: apt-get install valgrind" >&2; exit 1; }
root=$(pwd)
scratch=$(mktemp -d)
trap 'git -C "$root" worktree prune; rm -rf "$scratch"' EXIT

# build DIR: builds DIR's context_ops (the context alone, as a service
# that wants only it builds milieu) and prints the binary's path.
build() {
    (cd "$1" && cargo build --release --quiet --example context_ops --no-default-features)
    echo "$1/target/release/examples/context_ops"
}

total() {
    local bin=$1
    shift
    valgrind --tool=callgrind --callgrind-out-file="$scratch/cg.out" "$bin" "$@" > /dev/null 2> "$scratch/err" \
        || { cat "$scratch/err" >&2; exit 1; }
    sed -n 's/^summary: //p' "$scratch/cg.out"
}

revs=("$@")
[[ ${#revs[@]} -gt 0 ]] || revs=(worktree)
bins=()
for rev in "${revs[@]}"; do
    if [[ "$rev" == worktree ]]; then
        bins+=("$(build "$root")")
    else
        dir="$scratch/$rev"
        git -C "$root" worktree add --quiet --detach "$dir" "$rev"
        cp "$root/examples/context_ops.rs" "$dir/examples/"
        bins+=("$(build "$dir")")
    fi
done

echo "instructions per operation ($n operations, a run of 0 subtracted)"
echo
header="| operation |"
rule="|---|"
for rev in "${revs[@]}"; do
    header+=" $rev |"
    rule+="---|"
done
echo "$header"
echo "$rule"
for operation in with tokio provide snapshot poll; do
    row="| $operation |"
    for bin in "${bins[@]}"; do
        idle=$(total "$bin" "$operation" 0)
        busy=$(total "$bin" "$operation" "$n")
        row+=" $(((busy - idle) / n)) |"
    done
    echo "$row"
done
