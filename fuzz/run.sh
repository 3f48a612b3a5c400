#!/usr/bin/env bash
# Runs one fuzz target for a while with its seeds and its dictionary
# (`TARGET.dict` if there is one, else the HTTP dictionary),
# then prints one summary line from libFuzzer's own final report:
#
#   <target>: <inputs> inputs in <seconds> s, no crash, no failed check
#
# or the crash and where libFuzzer saved the input (exit status 1).
# Needs a nightly toolchain and `cargo install cargo-fuzz`.
#
# Usage: bash fuzz/run.sh TARGET [SECONDS]   (default 600: ten minutes)
#   TARGET: http_decode, http_serve or w3c_headers
set -euo pipefail
cd "$(dirname "$0")"
target=${1:?usage: bash fuzz/run.sh TARGET [SECONDS]}
seconds=${2:-600}
mkdir -p "corpus/$target"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
dict=http.dict
if [[ -f "$target.dict" ]]; then dict="$target.dict"; fi
cargo +nightly fuzz run "$target" "corpus/$target" "seeds/$target" -- \
    -dict="$dict" -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1 || status=$?
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
took=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
if [[ $status -ne 0 ]]; then
    # The crash; or, if it never ran (a build error), the end of the log.
    found=$(grep -E "panicked|ERROR|SUMMARY|Test unit written" "$log" | head -20 || true)
    if [[ -n $found ]]; then echo "$found"; else tail -20 "$log"; fi
    echo "$target: failed after ${runs:-?} inputs (exit status $status)"
    exit 1
fi
echo "$target: ${runs:-?} inputs in ${took:-?} s, no crash, no failed check"
