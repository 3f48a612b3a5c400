#!/usr/bin/env bash
# milieu's virtual clock against Twisted's task.Clock, side by side in one
# run: the `virtual_clock` group of benches/reactor.rs (criterion), then
# benches/twisted_clock.py on the same workloads; prints both numbers in
# ns per operation and the ratio. See docs/benchmarks.md, "Reactor: timers".
#
# Usage: bash benches/compare_clock.sh [--quick]
#   --quick   shorter criterion run and fewer Python repetitions (smoke test)
#
# Python: $PYTHON if set and it imports twisted, else python3 if it does,
# else a venv at target/twisted-venv with twisted installed from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

TWISTED_VERSION=26.10.0
quick=()
py_args=()
if [[ "${1:-}" == "--quick" ]]; then
    quick=(--warm-up-time 1 --measurement-time 3)
    py_args=(--quick)
fi

target_dir=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')

py="${PYTHON:-python3}"
if ! "$py" -c 'import twisted' 2>/dev/null; then
    venv="$target_dir/twisted-venv"
    if ! "$venv/bin/python" -c 'import twisted' 2>/dev/null; then
        echo "== installing twisted==$TWISTED_VERSION into $venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet "twisted==$TWISTED_VERSION"
    fi
    py="$venv/bin/python"
fi

echo "== milieu: cargo bench --bench reactor -- virtual_clock ${quick[*]}"
cargo bench --bench reactor -- virtual_clock "${quick[@]}"

echo "== Twisted: $py benches/twisted_clock.py ${py_args[*]}"
twisted_out=$("$py" benches/twisted_clock.py "${py_args[@]}")
echo "$twisted_out"

TWISTED_OUT="$twisted_out" CRITERION_DIR="$target_dir/criterion" python3 - <<'EOF'
import json, os, re

# Criterion's median per iteration, in ns; drain_10k iterations are 10,000
# timers each, insert_fire_10k_pending iterations are one operation.
per_iteration = {"drain_10k": 10_000, "insert_fire_10k_pending": 1}
goal = 100.0
twisted = {
    m.group(1): float(m.group(2))
    for m in re.finditer(r"^RESULT (\S+) median_ns=([0-9.]+)", os.environ["TWISTED_OUT"], re.M)
}
print()
print("| workload | milieu (ns/op) | Twisted task.Clock (ns/op) | Twisted / milieu | goal >= 100x |")
print("| --- | --- | --- | --- | --- |")
for name, ops in per_iteration.items():
    path = os.path.join(os.environ["CRITERION_DIR"], "virtual_clock", name, "new", "estimates.json")
    with open(path) as f:
        milieu = json.load(f)["median"]["point_estimate"] / ops
    ratio = twisted[name] / milieu
    verdict = "MET" if ratio >= goal else "MISSED"
    print(f"| {name} | {milieu:.1f} | {twisted[name]:.0f} | {ratio:.0f}x | {verdict} |")
EOF
