"""Simulator speed: simulated client ops per second for a 10k-op run.

The measured run is the default experiment's client mix (conversation,
memory, governance and probe ops over 4 instances, 3 replicas, 2 shards,
concurrency 6) through the full simulator: router, replica core in the given
mode, simulated network and log, reducers and the recorded history. A second
row adds faults (partitions, a crash/restart, a pause/resume) to the same load.

The reference, measured in the same run on the same generator, is the
harness's `simulate`: the interpreter contract against an instant-complete
no-op client. It is the floor the generator alone costs, so the ratio shows
what the simulated world adds on top. Medians over --reps runs.

Goal (issue 5): >= 20k simulated ops/s, so `hunt` can try hundreds of
schedules a minute.

    python bench/bench_sim.py [--ops 10000] [--reps 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from selfhood.chaos.generator import (
    MS,
    NEMESIS,
    Generator,
    OpRequest,
    clients,
    limit,
    nemesis_and_clients,
    seq,
    simulate,
)
from selfhood.chaos.sim import SimConfig, run_simulation
from selfhood.chaos.workloads import client_mix
from selfhood.spec import ExperimentSpec

GOAL_OPS_S = 20_000


def load(spec: ExperimentSpec, n: int) -> Generator:
    return clients(limit(n, client_mix(spec)))


def faults() -> Generator:
    def at(ms: int, f: str, v: Any = None) -> OpRequest:
        return OpRequest(f, v, process=NEMESIS, time=ms * MS)

    return seq(at(200, "partition", {"groups": [["r0"], ["r1", "r2", "log"]]}), at(600, "heal"),
               at(700, "crash", "r1"), at(900, "restart", "r1"), at(1000, "pause", "r2"),
               at(1300, "resume", "r2"), at(1400, "partition", {"pattern": "halves"}),
               at(1800, "heal"))


def timed(fn: Callable[[], int], reps: int) -> tuple[float, float, int]:
    """Median wall and CPU seconds over reps, and the client ops of the last run.

    CPU time (this process) is printed beside wall time because the bench
    often shares a small machine with other work; the ratio uses wall time.
    """
    secs: list[float] = []
    cpus: list[float] = []
    n = 0
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        n = fn()
        secs.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(secs), statistics.median(cpus), n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ops", type=int, default=10_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    spec = ExperimentSpec()
    n_ops = args.ops

    def reference() -> int:
        h = simulate(load(spec, n_ops), 1, concurrency=spec.concurrency, with_nemesis=False)
        return sum(1 for o in h if o.type == "invoke")

    def sim(mode: str, with_faults: bool) -> Callable[[], int]:
        cfg = SimConfig.from_spec(spec, mode)

        def run() -> int:
            gen = load(spec, n_ops)
            if with_faults:
                gen = nemesis_and_clients(faults(), gen)
            res = run_simulation(cfg, gen, seed=1)
            return sum(1 for o in res.history if o.type == "invoke" and o.process != NEMESIS)

        return run

    rows: list[dict[str, Any]] = []
    ref_s, ref_cpu, ref_n = timed(reference, args.reps)
    ref_rate = ref_n / ref_s
    print(f"{'run':<36}{'client ops':>11}{'median s':>10}{'ops/s':>9}{'cpu ops/s':>11}"
          f"{'x ref':>7}")
    print(f"{'reference: generator + no-op client':<36}{ref_n:>11}{ref_s:>10.3f}"
          f"{ref_rate:>9.0f}{ref_n / ref_cpu:>11.0f}{1.0:>7.2f}")
    for mode in ("sequential", "linearizable", "eventual"):
        for wf in (False, True):
            s, cpu, n = timed(sim(mode, wf), args.reps)
            rate = n / s
            name = f"sim {mode}{' + faults' if wf else ''}"
            rows.append({"run": name, "ops": n, "median_s": s, "ops_per_s": rate,
                         "cpu_ops_per_s": n / cpu, "ratio_to_reference": rate / ref_rate})
            print(f"{name:<36}{n:>11}{s:>10.3f}{rate:>9.0f}{n / cpu:>11.0f}"
                  f"{rate / ref_rate:>7.2f}")
    best = min(r["ops_per_s"] for r in rows)
    best_cpu = min(r["cpu_ops_per_s"] for r in rows)
    loadavg = os.getloadavg()[0]
    print(f"\nslowest simulated row: {best:.0f} ops/s wall "
          f"({'meets' if best >= GOAL_OPS_S else 'below'} the {GOAL_OPS_S} ops/s goal), "
          f"{best_cpu:.0f} ops/s in CPU time "
          f"({'meets' if best_cpu >= GOAL_OPS_S else 'below'} the goal)")
    print(f"load average {loadavg:.1f} on {os.cpu_count()} CPUs: wall-clock figures include "
          "time waiting for a CPU; CPU time is what this process itself spent")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"reference_ops_per_s": ref_rate, "reference_cpu_ops_per_s": ref_n / ref_cpu,
                       "load_average": loadavg, "rows": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
