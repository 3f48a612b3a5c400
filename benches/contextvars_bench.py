#!/usr/bin/env python3
"""CPython `contextvars`: `ContextVar.set(x)` then `ContextVar.reset(token)`,
the Python counterpart of `drop(milieu::provide(x))` in the `provide_drop`
group of benches/context.rs (see docs/benchmarks.md).

(Not named contextvars.py: Python puts the script's directory first on
sys.path, so that name would shadow the standard module for every script
in benches/, asyncio and Twisted included.)

This is a reference, not a Rust peer: the figure includes the interpreter
(bytecode dispatch for the two calls, the token object, the timeit loop).
It shows what a context install costs in the language whose design milieu
is closest to (docs/design.md), nothing more.

Usage: python3 benches/contextvars_bench.py [--quick]
  (system python3, standard library only; benches/context_ratios.sh runs
  it after the criterion run and divides milieu's figure by it)

Workloads, each run inside its own fresh `contextvars.Context()`:

* contextvars_set_reset/0: no other ContextVar set in the context;
* contextvars_set_reset/10: 10 other ContextVars set beforehand (the
  context's immutable mapping holds 10 entries when `set` derives a new
  one from it).

Timing: `timeit` with a loop count chosen so that one repeat lasts about
0.2 s (0.05 s with --quick), best (minimum) of 7 repeats (3 with --quick),
divided by the loop count. The timeit loop overhead (an empty statement,
timed the same way) is printed on its own line and NOT subtracted.

Output: a `#` comment line, then one line per workload, `<name>  <ns> ns`
(figures here only illustrate the format):

    contextvars_set_reset/0  230.1 ns
    contextvars_set_reset/10  241.7 ns
    timeit_loop_overhead  8.3 ns
"""

import contextvars
import platform
import sys
import timeit

OTHERS = 10


def measure(stmt, env, target_s, repeats):
    """Best time per loop of `stmt` in ns, `env` as its globals."""
    timer = timeit.Timer(stmt, globals=env)
    number = 1
    while True:
        elapsed = timer.timeit(number)
        if elapsed >= target_s / 10:
            break
        number *= 10
    number = max(1, int(number * target_s / elapsed))
    best = min(timer.repeat(repeat=repeats, number=number))
    return best / number * 1e9


def set_reset(others, target_s, repeats):
    """Runs in a fresh context: sets `others` other vars, then measures."""
    fillers = [contextvars.ContextVar(f"filler_{i}") for i in range(others)]
    for i, var in enumerate(fillers):
        var.set(i)
    assert len(contextvars.copy_context()) == others
    var = contextvars.ContextVar("installed")
    env = {"var": var, "x": object()}
    return measure("token = var.set(x); var.reset(token)", env, target_s, repeats)


def main():
    quick = "--quick" in sys.argv[1:]
    target_s, repeats = (0.05, 3) if quick else (0.2, 7)
    print(
        f"# CPython {platform.python_version()} ({platform.python_implementation()}), "
        f"timeit, best of {repeats}, ns per operation; interpreter included",
        flush=True,
    )
    for others in (0, OTHERS):
        ns = contextvars.Context().run(set_reset, others, target_s, repeats)
        print(f"contextvars_set_reset/{others}  {ns:.1f} ns", flush=True)
    overhead = measure("pass", {}, target_s, repeats)
    print(f"timeit_loop_overhead  {overhead:.1f} ns", flush=True)


if __name__ == "__main__":
    main()
