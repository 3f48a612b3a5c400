#!/usr/bin/env python3
"""Twisted's `task.Clock` under the workloads of the `virtual_clock` group
of benches/reactor.rs (see docs/benchmarks.md, "Reactor: timers").

Workloads, identical to the Rust side:

* drain_10k: schedule 10,000 calls at distinct delays (i * 7919 % 10000 ms,
  i.e. every whole millisecond from 0 to 9999 once, in a scrambled order),
  then advance the clock by 1 ms steps until none is pending.
  Reported per timer: total time / 10,000 (each timer is scheduled once and
  fired once; the ~10,000 advance steps are included).
* insert_fire_10k_pending: 10,000 calls stay pending far in the future;
  each operation schedules one call 1 ms ahead and advances the clock by
  1 ms, which fires exactly that call. Reported per operation.

Timing: `time.perf_counter` around each repetition (insert_fire_10k_pending
after one unrecorded warm-up run; the garbage collector stays enabled, as in
a real program); the median and the minimum over the repetitions are printed, in nanoseconds per operation,
as lines `RESULT <workload> median_ns=<x> min_ns=<y>` for
benches/compare_clock.sh to read.

Usage: python3 benches/twisted_clock.py [--quick]
"""

import statistics
import sys
import time

import twisted
from twisted.internet.task import Clock

N = 10_000


def noop():
    pass


def drain_once():
    """One drain_10k repetition; returns (seconds, advance steps)."""
    clock = Clock()
    start = time.perf_counter()
    for i in range(N):
        clock.callLater((i * 7919 % N) / 1000.0, noop)
    steps = 0
    while clock.calls:
        clock.advance(0.001)
        steps += 1
    elapsed = time.perf_counter() - start
    return elapsed, steps


def insert_fire_once(ops):
    """One insert_fire_10k_pending repetition of `ops` operations."""
    clock = Clock()
    for i in range(N):
        # Far in the future (~115 days): never fires during the run.
        clock.callLater(10_000_000.0 + i, noop)
    start = time.perf_counter()
    for _ in range(ops):
        clock.callLater(0.001, noop)
        clock.advance(0.001)
    elapsed = time.perf_counter() - start
    assert len(clock.calls) == N, "each operation must fire exactly its own call"
    return elapsed


def report(name, per_op_ns):
    print(
        f"RESULT {name} median_ns={statistics.median(per_op_ns):.1f} "
        f"min_ns={min(per_op_ns):.1f} reps={len(per_op_ns)}"
    )


def main():
    quick = "--quick" in sys.argv[1:]
    drain_reps = 1 if quick else 3
    fire_reps = 2 if quick else 5
    fire_ops = 500 if quick else 2_000

    print(f"twisted {twisted.__version__}, python {sys.version.split()[0]}")

    per_timer = []
    for _ in range(drain_reps):
        elapsed, steps = drain_once()
        per_timer.append(elapsed * 1e9 / N)
        print(f"  drain_10k: {elapsed:.3f} s, {steps} advance steps")
    report("drain_10k", per_timer)

    per_op = []
    insert_fire_once(fire_ops // 5)  # warm-up, not recorded: the first run is slower
    for _ in range(fire_reps):
        elapsed = insert_fire_once(fire_ops)
        per_op.append(elapsed * 1e9 / fire_ops)
        print(f"  insert_fire_10k_pending: {elapsed:.3f} s for {fire_ops} ops")
    report("insert_fire_10k_pending", per_op)


if __name__ == "__main__":
    main()
