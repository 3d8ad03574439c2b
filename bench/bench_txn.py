"""Benchmark the Elle-class list-append checker.

Prints, for generated list-append histories of 10k and 100k transactions and
for Elle's huge-scc.edn, the median check time over a few repetitions, next
to two references measured in the same run on the same ops:

- parse: reading the history back from EDN text (what any checker pays first);
- build: transactions + version orders + ww/wr/rw edges, without cycle search.

For the generated histories it also times the whole of `selfhood check` once the
file is in memory (parse, well-formedness checks, build, check), from JSON lines
(what a run writes) and from EDN, each next to its parse alone, and says whether
issue 12's goal is met: 100k transactions end to end in under 3 s of CPU, in both
formats. Everything runs with the cyclic garbage collector paused, as
`selfhood check` runs (history.paused_gc).

Generated histories mimic Jepsen's list-append workload: a few concurrent
clients, 1-4 micro-ops per txn, keys retired after 32 appends, each txn
applied atomically to a serial store at its completion (so it is valid), with
occasional failed and indeterminate txns.

Two more, for the exact cycle search on a dense SCC with process edges:

- run history: `selfhood run --modes eventual` (seed 1) in a temporary store,
  then its list-append history checked under strong-session-serializable
  (about 500 ops; one SCC of 125 transactions where the old exhaustive DFS
  for G-nonadjacent-item-process hit the 10 s search cap); same references;
- dense SCC: that SCC as a graph (tests/fixtures/elle-dense-scc.json), every
  cycle class decided, next to the product reachability test alone (the
  polynomial part every search pays).

Run: python bench/bench_txn.py [--reps 3] [--sizes 10000,100000] [--no-run]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selfhood.checkers.edn import ops_to_edn, read_edn_ops
from selfhood.checkers.elle.graph import PROCESS, DepGraph, _Product, _reach_hits, find_cycle
from selfhood.checkers.elle.history import transactions
from selfhood.checkers.elle.list_append import ListAppendAnalysis
from selfhood.checkers.formats import ops_to_jsonl, parse_jsonl, parse_text, well_formed
from selfhood.checkers.history import Op, paused_gc
from selfhood.checkers.txn import _specs, check_txn

HUGE = Path(__file__).resolve().parents[2] / "shared" / "peers" / "elle" / "huge-scc.edn"
DENSE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "elle-dense-scc.json"


def generate(n: int, *, clients: int = 10, seed: int = 1) -> list[Op]:
    """A valid list-append history of n transactions (see module docstring)."""
    rng = random.Random(seed)
    store: dict[int, list[int]] = {}
    writes: dict[int, int] = {}
    active = list(range(8))
    next_key = 8
    ops: list[Op] = []
    open_: dict[int, list[list[Any]]] = {}
    procs = list(range(clients))
    next_proc = clients
    started = 0
    counter = 0
    while started < n or open_:
        slot = rng.randrange(clients)
        p = procs[slot]
        if p not in open_:
            if started >= n:
                continue
            started += 1
            txn: list[list[Any]] = []
            for _ in range(rng.randint(1, 4)):
                k = rng.choice(active)
                if rng.random() < 0.5:
                    txn.append(["r", k, None])
                else:
                    counter += 1
                    txn.append(["append", k, counter])
                    writes[k] = writes.get(k, 0) + 1
                    if writes[k] >= 32 and k in active:
                        active.remove(k)
                        active.append(next_key)
                        next_key += 1
            ops.append(Op(len(ops), "invoke", p, "txn", [list(m) for m in txn],
                          time=len(ops)))
            open_[p] = txn
            continue
        txn = open_.pop(p)
        roll = rng.random()
        outcome = "ok" if roll < 0.97 else ("fail" if roll < 0.985 else "info")
        applied = outcome == "ok" or (outcome == "info" and rng.random() < 0.5)
        snap = {k: list(store[k]) for k in {m[1] for m in txn} if k in store}
        done = []
        for f, k, v in txn:
            if f == "r":
                done.append(["r", k, list(snap.get(k, []))])
            else:
                snap.setdefault(k, []).append(v)
                done.append([f, k, v])
        if applied:
            store.update(snap)
        value = done if outcome == "ok" else [list(m) for m in txn]
        ops.append(Op(len(ops), outcome, p, "txn", value, time=len(ops)))  # type: ignore[arg-type]
        if outcome == "info":
            procs[slot] = next_proc
            next_proc += 1
    return ops


def median_time(fn: Callable[[], Any], reps: int) -> tuple[float, float, Any]:
    """Median wall and CPU seconds (CPU is the fairer figure on a shared box)."""
    walls, cpus = [], []
    out = None
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus), out


def bench(label: str, ops: list[Op], reps: int, limit: float | None,
          consistency: str = "strict-serializable",
          parse: Callable[[], Any] | None = None, end_to_end: bool = False) -> None:
    text = ops_to_edn(ops)
    if parse is None:
        parse = lambda: read_edn_ops(text)  # noqa: E731
    with paused_gc():  # as `selfhood check` runs
        w_parse, c_parse, _ = median_time(parse, reps)
        w_build, c_build, _ = median_time(lambda: ListAppendAnalysis(transactions(ops)), reps)
        w_check, c_check, r = median_time(
            lambda: check_txn(ops, workload="list-append", consistency=(consistency,),
                              time_limit_s=limit), reps)
    n_txn = r.details["txns"]
    print(f"{label} [{consistency}]: {len(ops)} ops, {n_txn} txns, valid={r.valid} "
          f"anomalies={r.anomaly_types} edges={r.details['edges']} "
          f"largest SCC={max(r.details['sccs'], default=0)} unknown={r.unknown_reasons}")
    print(f"    wall: check {w_check:6.2f} s  parse {w_parse:6.2f} s  build {w_build:6.2f} s  "
          f"check/parse {w_check / w_parse:5.2f}x  check/build {w_check / w_build:5.2f}x")
    print(f"    cpu : check {c_check:6.2f} s  parse {c_parse:6.2f} s  build {c_build:6.2f} s  "
          f"check/parse {c_check / c_parse:5.2f}x  check/build {c_check / c_build:5.2f}x")
    if end_to_end:
        bench_end_to_end(ops, text, reps, consistency, n_txn)


#: issue 12's goal: a 100k-transaction history checked end to end in under 3 s (CPU)
GOAL_TXNS = 100_000
GOAL_S = 3.0


def bench_end_to_end(ops: list[Op], edn: str, reps: int, consistency: str,
                     n_txns: int) -> None:
    """What `selfhood check FILE --model list-append` does after the file is in memory:
    parse, the well-formedness checks, graph build, check. JSON lines (what a run
    writes) and the same history as EDN, side by side, with each format's parse
    alone as its reference."""
    jsonl = ops_to_jsonl(ops)

    def e2e(fmt: str, text: str) -> Any:
        parsed = well_formed(parse_text(text, fmt))
        return check_txn(parsed.ops, workload="list-append", consistency=(consistency,))

    with paused_gc():
        _, c_pj, _ = median_time(lambda: parse_text(jsonl, "jsonl"), reps)
        _, c_pe, _ = median_time(lambda: parse_text(edn, "edn"), reps)
        w_j, c_j, r_j = median_time(lambda: e2e("jsonl", jsonl), reps)
        w_e, c_e, r_e = median_time(lambda: e2e("edn", edn), reps)
    assert r_j.valid == r_e.valid
    print(f"    end to end ({len(jsonl) / 1e6:.1f} MB JSONL / {len(edn) / 1e6:.1f} MB EDN, "
          f"parse + well-formed + build + check):")
    print(f"      jsonl wall {w_j:6.2f} s cpu {c_j:6.2f} s (parse alone cpu {c_pj:5.2f} s)   "
          f"edn wall {w_e:6.2f} s cpu {c_e:6.2f} s (parse alone cpu {c_pe:5.2f} s)   "
          f"edn/jsonl {c_e / c_j:5.2f}x (cpu)")
    if n_txns >= GOAL_TXNS:
        met = max(c_j, c_e) < GOAL_S
        print(f"      goal (issue 12): {GOAL_TXNS // 1000}k txns end to end under {GOAL_S:.0f} s "
              f"CPU in both formats: {'met' if met else 'NOT met'} (jsonl {c_j:.2f} s, "
              f"edn {c_e:.2f} s)")


def bench_run_history(reps: int) -> None:
    """A fresh `selfhood run --modes eventual` history, checked as `selfhood check` would."""
    with tempfile.TemporaryDirectory() as store:
        subprocess.run([sys.executable, "-m", "selfhood", "run", "-q", "--modes", "eventual",
                        "--seed", "1", "--store", store], check=True,
                       stdout=subprocess.DEVNULL)
        path = Path(store) / "latest" / "eventual" / "list-append.jsonl"
        text = path.read_text()
    ops = parse_jsonl(text)
    bench("run history (eventual, seed 1)", ops, reps, None,
          consistency="strong-session-serializable", parse=lambda: parse_jsonl(text))


def bench_dense_scc(reps: int) -> None:
    """Every cycle class on the fixture SCC, against the reachability test alone."""
    doc = json.loads(DENSE.read_text())
    g = DepGraph.empty(doc["n"])
    for a, b, m in doc["edges"]:
        g.link(a, b, m)
    members = set(range(doc["n"]))
    specs = _specs(PROCESS)

    def decide() -> list[str]:
        return [s.name for s in specs if find_cycle(g, members, s, None) is not None]

    def reach() -> int:
        hits = 0
        for s in specs:
            anchors = [(a, b) for a in members for b, m in g.adj[a].items() if m & s.anchor]
            hits += sum(1 for _ in _reach_hits(_Product(g, members, s), anchors, lambda: None))
        return hits

    w_dec, c_dec, found = median_time(decide, reps)
    w_reach, c_reach, _ = median_time(reach, reps)
    print(f"dense SCC fixture: {doc['n']} txns, {len(doc['edges'])} edges, classes={found}")
    print(f"    wall: decide all {len(specs)} classes {w_dec:6.3f} s  reachability only "
          f"{w_reach:6.3f} s  ratio {w_dec / w_reach:5.2f}x")
    print(f"    cpu : decide all {len(specs)} classes {c_dec:6.3f} s  reachability only "
          f"{c_reach:6.3f} s  ratio {c_dec / c_reach:5.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--huge-limit", type=float, default=60.0)
    ap.add_argument("--no-run", action="store_true", help="skip the selfhood run history")
    args = ap.parse_args()
    if DENSE.exists():
        bench_dense_scc(args.reps)
    if not args.no_run:
        bench_run_history(args.reps)
    for n in (int(x) for x in args.sizes.split(",") if x):
        bench(f"generated {n}", generate(n), args.reps, None, end_to_end=True)
    if HUGE.exists():
        ops = read_edn_ops(HUGE.read_text())
        bench("huge-scc.edn", ops, args.reps, args.huge_limit)
    else:
        print(f"huge-scc.edn not found at {HUGE}; skipped")


if __name__ == "__main__":
    main()
