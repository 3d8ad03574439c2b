"""Benchmark the session-guarantee checker on list-append histories.

Two workloads, each valid by construction:

- jepsen: bench_txn.generate, Jepsen's list-append workload (ten clients,
  1-4 micro-ops per txn, keys retired after 32 appends), at 10k and 100k
  transactions;
- long reads: four keys never retired, so every read returns a whole,
  growing list (a run's transcript keys); the total read length grows with
  the square of the history, so only 5k and 10k transactions (3 and 12
  million elements). A read that extends or repeats an earlier one is
  checked without a Python pass over it: the Python work grows with the
  transactions, only passes in C (list comparison, reading) with the
  elements.

Per history the median over --reps of `check_session(ops,
model="list-append")` (all four guarantees), next to references measured
side by side on the same ops: `session_ops` alone (pairing and micro-op
normalisation, which every session check pays first) and `check_txn` under
read-committed (Elle's cheapest graph check). CPU time (process_time) is
printed next to wall time: on a shared machine the wall clock also counts
waiting for a core. check_session pauses the cyclic garbage collector
itself (as `selfhood check` does around every check); the references run
as they are. The goal (issue 12) is 100k transactions in under 10 s
(CPU); the bench prints it met or not, with the scaling from the smallest to
the largest size of each workload (10x the data should cost about 10x).

Run: python bench/bench_session.py [--reps 3] [--sizes 10000,100000] [--long 5000,10000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selfhood.checkers.history import Op
from selfhood.checkers.session import check_session, session_ops
from selfhood.checkers.txn import check_txn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_txn import generate


def long_reads(n: int, *, keys: int = 4, clients: int = 10, seed: int = 1) -> list[Op]:
    """n list-append txns on a few keys that are never retired (see the docstring)."""
    rng = random.Random(seed)
    store: dict[int, list[int]] = {k: [] for k in range(keys)}
    ops: list[Op] = []
    open_: dict[int, list[list[Any]]] = {}
    counter = started = 0
    while started < n or open_:
        p = rng.randrange(clients)
        if p not in open_:
            if started >= n:
                continue
            started += 1
            txn: list[list[Any]] = []
            for _ in range(rng.randint(1, 3)):
                k = rng.randrange(keys)
                if rng.random() < 0.5:
                    txn.append(["r", k, None])
                else:
                    counter += 1
                    txn.append(["append", k, counter])
            ops.append(Op(len(ops), "invoke", p, "txn", [list(m) for m in txn]))
            open_[p] = txn
            continue
        done = []
        for f, k, v in open_.pop(p):
            if f == "r":
                done.append(["r", k, list(store[k])])
            else:
                store[k].append(v)
                done.append([f, k, v])
        ops.append(Op(len(ops), "ok", p, "txn", done))
    return ops


def timed(fn: Callable[[], Any], reps: int) -> tuple[float, float, Any]:
    """Median wall and CPU seconds over reps runs, and the last result."""
    walls, cpus = [], []
    out = None
    for _ in range(reps):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus), out


GOAL_N, GOAL_S = 100_000, 10.0  # issue 12: 100k transactions under 10 s


def bench(label: str, ops: list[Op], reps: int) -> float:
    """Print the rows for one history; the checker's median CPU seconds."""
    rows: list[tuple[str, Callable[[], Any]]] = [
        ("check_session (4 guarantees)", lambda: check_session(ops, model="list-append")),
        ("ref: session_ops", lambda: session_ops(ops, "list-append")),
        ("ref: check_txn read-committed",
         lambda: check_txn(ops, workload="list-append", consistency=["read-committed"])),
    ]
    check_cpu = 0.0
    for name, fn in rows:
        wall, cpu, out = timed(fn, reps)
        if not check_cpu:
            check_cpu = cpu
            summary = f"verdict {out.valid}, {out.details['session']['reads_checked']} reads"
            ratio = ""
        else:
            ratio = f"   check / this: {check_cpu / cpu:.1f}x"
        print(f"{label:<16} {name:<30} {wall:>8.2f} {cpu:>8.2f}{ratio}")
    print(f"{label:<16} {summary}")
    return check_cpu


def k(n: int) -> str:
    return f"{n / 1000:g}k"


def scaling(label: str, cpu: dict[int, float], elements: dict[int, int] | None = None) -> None:
    """How the checker's cost grows from the smallest size to the largest."""
    if len(cpu) < 2:
        return
    lo, hi = min(cpu), max(cpu)
    more = f", {elements[hi] / elements[lo]:.1f}x the elements read" if elements else ""
    print(f"{label:<16} scaling {k(lo)} -> {k(hi)}: {hi / lo:.0f}x the txns{more}, "
          f"{cpu[hi] / cpu[lo]:.1f}x the CPU")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--long", default="5000,10000", help="sizes of the long-reads workload")
    args = ap.parse_args()
    print(f"{'history':<16} {'what':<30} {'wall s':>8} {'cpu s':>8}")
    jepsen: dict[int, float] = {}
    for n in (int(x) for x in args.sizes.split(",") if x):
        jepsen[n] = bench(f"jepsen {k(n)}", generate(n), args.reps)
    scaling("jepsen", jepsen)
    long: dict[int, float] = {}
    elements: dict[int, int] = {}
    for n in (int(x) for x in args.long.split(",") if x):
        ops = long_reads(n)
        elements[n] = sum(len(m[2]) for o in ops if o.type == "ok" for m in o.value
                          if m[0] == "r")
        long[n] = bench(f"long {k(n)}", ops, args.reps)
        print(f"{'long ' + k(n):<16} {elements[n]} elements read in all")
    scaling("long", long, elements)
    if GOAL_N in jepsen:
        cpu = jepsen[GOAL_N]
        print(f"goal (issue 12): check_session on {k(GOAL_N)} list-append txns under "
              f"{GOAL_S:.0f} s CPU: {cpu:.2f} s, {'met' if cpu < GOAL_S else 'NOT MET'}")
    else:
        print(f"goal (issue 12): not measured (add {GOAL_N} to --sizes)")


if __name__ == "__main__":
    main()
