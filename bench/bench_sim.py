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

Goal (issue 11): every mode >= 25,000 simulated client ops/s in CPU time
(this process's CPU seconds, which depend far less than wall time on how
many other jobs share the machine), so `hunt` can try hundreds of schedules
a minute. The per-mode verdict takes the slower of the mode's two rows.

The figures depend on how selfhood was built, which the bench prints: pure
Python (a plain install) or with the simulator's hot modules compiled by mypyc
(the optional build in setup.py; the same code and byte-identical histories,
so both builds simulate exactly the same runs; ~1.7x the CPU ops/s, see
docs/consistency.md).
To measure the compiled build beside an editable checkout:

    SELFHOOD_COMPILE=1 pip install --no-build-isolation --no-deps --target /tmp/sh-c .
    PYTHONPATH=/tmp/sh-c python bench/bench_sim.py --reps 3

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

from selfhood.chaos import sim as sim_module
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

#: simulated client ops per CPU second, every mode (issue 11)
GOAL_OPS_S = 25_000


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

    CPU time (this process) is the figure the goal and the ratios use: the
    bench often shares a small machine with other work, and wall time then
    mostly measures the wait for a CPU. Wall time is printed beside it.
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
    ref_cpu_rate = ref_n / ref_cpu
    build = ("compiled (mypyc)" if not str(sim_module.__file__).endswith(".py")
             else "pure Python")
    print(f"{args.ops} client ops per run, medians of {args.reps} reps; selfhood {build} "
          f"({sim_module.__file__})")
    print(f"{'run':<36}{'client ops':>11}{'wall s':>9}{'wall ops/s':>11}{'cpu s':>8}"
          f"{'cpu ops/s':>11}{'x ref':>7}")
    print(f"{'reference: generator + no-op client':<36}{ref_n:>11}{ref_s:>9.3f}"
          f"{ref_n / ref_s:>11.0f}{ref_cpu:>8.3f}{ref_cpu_rate:>11.0f}{1.0:>7.2f}")
    modes = ("sequential", "linearizable", "eventual")
    for mode in modes:
        for wf in (False, True):
            s, cpu, n = timed(sim(mode, wf), args.reps)
            name = f"sim {mode}{' + faults' if wf else ''}"
            rows.append({"run": name, "mode": mode, "faults": wf, "ops": n, "median_s": s,
                         "median_cpu_s": cpu, "ops_per_s": n / s, "cpu_ops_per_s": n / cpu,
                         "ratio_to_reference": (n / cpu) / ref_cpu_rate})
            print(f"{name:<36}{n:>11}{s:>9.3f}{n / s:>11.0f}{cpu:>8.3f}{n / cpu:>11.0f}"
                  f"{(n / cpu) / ref_cpu_rate:>7.2f}")
    per_mode = {m: min(r["cpu_ops_per_s"] for r in rows if r["mode"] == m) for m in modes}
    print(f"\ngoal: every mode >= {GOAL_OPS_S} simulated client ops/s in CPU time "
          "(slower of its two rows, medians)")
    for m, rate in per_mode.items():
        print(f"  {m:<14}{rate:>8.0f} cpu ops/s  {'meets' if rate >= GOAL_OPS_S else 'below'}")
    slowest = min(per_mode.values())
    met = slowest >= GOAL_OPS_S
    print(f"slowest mode: {slowest:.0f} cpu ops/s ({'meets' if met else 'below'} the goal; "
          f"x ref {slowest / ref_cpu_rate:.2f})")
    loadavg = os.getloadavg()[0]
    print(f"load average {loadavg:.1f} on {os.cpu_count()} CPUs: wall-clock figures include "
          "time waiting for a CPU; CPU time is what this process itself spent")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"goal_cpu_ops_per_s": GOAL_OPS_S, "reps": args.reps,
                       "reference_ops_per_s": ref_n / ref_s,
                       "reference_cpu_ops_per_s": ref_cpu_rate,
                       "mode_cpu_ops_per_s": per_mode, "goal_met": met,
                       "load_average": loadavg, "build": build, "rows": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
