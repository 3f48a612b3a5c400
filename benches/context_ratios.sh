#!/usr/bin/env bash
# The context core's goal ratios in one go: the criterion groups of
# benches/context.rs that the goals name (one run, each milieu row next to
# its peer), then benches/contextvars_bench.py (CPython's contextvars, a
# reference with its interpreter, not a Rust peer), then a table of
# milieu ÷ peer for every goal with PASS/MISS. Nothing is hard-coded: every
# figure is read from this run's target/criterion/<group>/<bench>/new/
# estimates.json and from the Python script's output. See
# docs/benchmarks.md.
#
# Usage: bash benches/context_ratios.sh [CRITERION_OPTION...]
#   CRITERION_OPTIONs are appended after the bench filter, e.g.
#   `--warm-up-time 0.5 --measurement-time 1` for a smoke run, or
#   `--sample-size 50`. Without --warm-up-time / --measurement-time the
#   script passes `--warm-up-time 1 --measurement-time 3`. Do not pass a
#   filter: the script's own selects the rows the ratios need.
# Environment:
#   ESTIMATE=median (default) or mean: which criterion point estimate to use.
#   PYTHON=python3 (default): the interpreter for the contextvars reference.
set -euo pipefail
cd "$(dirname "$0")/.."

# Every row a ratio below reads (criterion matches the regex against
# `group/bench[/parameter]`).
filter='^(lookup_hit|provide_drop|install_snapshot|snapshot|future_poll)/|^lookup_depth/(distinct|shadowed)/(1|1000)$'

args=("$@")
has_option() {
    local a
    for a in ${args[@]+"${args[@]}"}; do
        [[ "$a" == "$1" || "$a" == "$1="* ]] && return 0
    done
    return 1
}
has_option --warm-up-time || args+=(--warm-up-time 1)
has_option --measurement-time || args+=(--measurement-time 3)

target_dir=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
py="${PYTHON:-python3}"

# Estimates older than this run are reported as STALE, not used.
start=$(date +%s)

echo "== cargo bench --bench context -- '$filter' ${args[*]}"
cargo bench --bench context -- "$filter" "${args[@]}"

echo
echo "== $py benches/contextvars_bench.py"
py_out=$("$py" benches/contextvars_bench.py)
echo "$py_out"

PY_OUT="$py_out" CRITERION_DIR="$target_dir/criterion" START="$start" \
    ESTIMATE="${ESTIMATE:-median}" python3 - <<'EOF'
import json, os, re, sys

criterion_dir = os.environ["CRITERION_DIR"]
start = int(os.environ["START"])
estimate = os.environ["ESTIMATE"]
if estimate not in ("median", "mean"):
    sys.exit(f"ESTIMATE must be median or mean, not {estimate!r}")

cpython = {
    m.group(1): float(m.group(2))
    for m in re.finditer(r"^(\S+)\s+([0-9.]+) ns$", os.environ["PY_OUT"], re.M)
}

problems = []


def ns(name):
    """Time of one row in ns: criterion's estimate per iteration, divided by
    the group's element throughput if it has one (future_poll: per poll);
    `cpython:<name>` is a line of the Python script."""
    if name.startswith("cpython:"):
        key = name[len("cpython:"):]
        if key not in cpython:
            problems.append(f"{name}: not in the Python output")
            return None
        return cpython[key]
    base = os.path.join(criterion_dir, *name.split("/"), "new")
    path = os.path.join(base, "estimates.json")
    if not os.path.exists(path):
        problems.append(f"{name}: no {path}")
        return None
    if os.path.getmtime(path) < start - 1:
        problems.append(f"{name}: {path} is older than this run (STALE)")
        return None
    with open(path) as f:
        value = json.load(f)[estimate]["point_estimate"]
    with open(os.path.join(base, "benchmark.json")) as f:
        throughput = json.load(f).get("throughput") or {}
    return value / throughput.get("Elements", 1)


# (numerator, denominator, comparison, goal): the goals of issue 12, as
# docs/benchmarks.md lists them. "<=" is "at most N x"; "ref" rows print
# the ratio against a reference that is not a goal (CPython includes its
# interpreter).
PD = "provide_drop"
goals = [
    (f"{PD}/milieu_provide/0", f"{PD}/otel_attach/0", "<=", 0.5),
    (f"{PD}/milieu_provide/10", f"{PD}/otel_attach/10", "<=", 0.5),
    (f"{PD}/milieu_provide/0", f"{PD}/tokio_task_local_sync_scope_arc", "<=", 2.0),
    (f"{PD}/milieu_provide_arc", f"{PD}/tokio_task_local_sync_scope_arc", "<=", 1.5),
    (f"{PD}/milieu_provide/100", f"{PD}/milieu_provide/0", "<=", 1.2),
    ("install_snapshot/milieu_provide_then_current", "install_snapshot/milieu_provide", "<=", 1.5),
    ("snapshot/milieu_context_current", "snapshot/arc_clone", "<=", 2.0),
    ("future_poll/milieu_with_context", "future_poll/tracing_instrumented_registry", "<=", 1.0),
    ("future_poll/milieu_with_context", "future_poll/tracing_instrumented_enable_all", "<=", 2.0),
    ("lookup_hit/milieu_with_borrow", "lookup_hit/tokio_task_local_borrow", "<=", 1.5),
    ("lookup_hit/milieu_get_arc", "lookup_hit/thread_local_refcell_arc", "<=", 1.0),
    ("lookup_depth/distinct/1000", "lookup_depth/distinct/1", "<=", 1.2),
    ("lookup_depth/shadowed/1000", "lookup_depth/shadowed/1", "<=", 1.2),
    (f"{PD}/milieu_provide/0", "cpython:contextvars_set_reset/0", "ref", None),
    (f"{PD}/milieu_provide/10", "cpython:contextvars_set_reset/10", "ref", None),
]

print()
print(f"Ratios milieu ÷ peer (criterion {estimate}; future_poll per poll; cpython: "
      "benches/contextvars_bench.py, interpreter included)")
print()
print("| milieu | ns | peer | ns | ratio | goal | verdict |")
print("| --- | ---: | --- | ---: | ---: | --- | --- |")
counts = {"PASS": 0, "MISS": 0, "ref": 0, "n/a": 0}
for num, den, op, goal in goals:
    a, b = ns(num), ns(den)
    if a is None or b is None:
        ratio, verdict, cells = "", "n/a", ("?", "?")
    else:
        r = a / b
        if op == "ref":
            verdict = "ref"
        else:
            verdict = "PASS" if r <= goal else "MISS"
        ratio, cells = f"{r:.2f}x", (f"{a:.2f}", f"{b:.2f}")
    counts[verdict] += 1
    wanted = "reference" if op == "ref" else f"≤ {goal:g}x"
    print(f"| {num} | {cells[0]} | {den} | {cells[1]} | {ratio} | {wanted} | {verdict} |")
print()
print(f"{counts['PASS']} PASS, {counts['MISS']} MISS, {counts['ref']} reference, {counts['n/a']} not measured")
for p in dict.fromkeys(problems):
    print(f"problem: {p}", file=sys.stderr)
sys.exit(1 if problems else 0)
EOF
