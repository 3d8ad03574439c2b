"""Whole `selfhood run` pipeline throughput: simulated ops per second for a ~10k-op run.

Per mode, three figures from the same spec and seed, measured in the same
process and interleaved across repetitions (medians printed):

- reference: the experiment's generator played against the instant-complete
  fake (`generator.simulate`): the cost of producing the ops at all;
- sim: `run_simulation` (replicas, router, log, network, nemesis);
- pipeline: sim + splitting + every checker (promise and reference) +
  identity verdicts, i.e. what `selfhood run` does per mode minus file IO.

Ops are client operations (invoke/completion pairs, nemesis excluded); rates
are per CPU second of this process. The
issue's goal is >= 20k simulated ops/s for the sim (so `hunt` can try
hundreds of schedules a minute); the pipeline figure shows what checking adds.

    python bench/bench_run.py [--ops 10000] [--reps 3] [--modes sequential,eventual] [--json out]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

from selfhood.chaos.generator import simulate
from selfhood.chaos.nemesis import build_schedule, final_heal
from selfhood.chaos.runner import judge_mode, simulate_mode
from selfhood.chaos.workloads import experiment_generator
from selfhood.spec import DEFAULT_SPEC, ExperimentSpec, with_overrides


def client_ops(history: list[Any]) -> int:
    return sum(1 for o in history if o.type == "invoke" and o.process != "nemesis")


def spec_for(ops: int, seed: int) -> ExperimentSpec:
    """A default-shaped experiment whose load phase issues about `ops` client ops."""
    rate = 1000.0
    return with_overrides(DEFAULT_SPEC, seed=seed, rate=rate, time_limit_s=ops / rate,
                          concurrency=16)


def measure(spec: ExperimentSpec, mode: str) -> dict[str, float]:
    """One repetition. Times are CPU seconds of this process (the work is pure
    computation, and CPU time does not swing with other load on a shared box);
    wall seconds of the whole pipeline are kept too."""
    sched = build_schedule(spec)
    gen = experiment_generator(spec, sched, final_heal(sched, spec.time_limit_s * 1000))
    t0 = time.process_time()
    ref = simulate(gen, seed=spec.seed, concurrency=spec.concurrency)
    t_ref = time.process_time() - t0
    w0 = time.perf_counter()
    t0 = time.process_time()
    sim = simulate_mode(spec, mode)
    t_sim = time.process_time() - t0
    t0 = time.process_time()
    judge_mode(spec, mode, sim.history, dict(sim.stats))
    t_judge = time.process_time() - t0
    wall = time.perf_counter() - w0
    n = client_ops(sim.history)
    return {"ops": n, "ref_ops_s": client_ops(ref) / t_ref, "sim_ops_s": n / t_sim,
            "pipeline_ops_s": n / (t_sim + t_judge), "sim_s": t_sim, "check_s": t_judge,
            "pipeline_wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ops", type=int, default=10_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--modes", default="sequential,eventual")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()
    spec = spec_for(args.ops, args.seed)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    samples: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    for _ in range(args.reps):
        for m in modes:
            samples[m].append(measure(spec, m))
    out: dict[str, Any] = {"ops_target": args.ops, "reps": args.reps, "modes": {}}
    print(f"selfhood run pipeline, ~{args.ops} client ops per mode, {args.reps} reps (medians)")
    print(f"{'mode':<12} {'ops':>7} {'reference ops/s':>16} {'sim ops/s':>10} "
          f"{'pipeline ops/s':>15} {'sim/ref':>8} {'pipeline/ref':>13} {'check s':>8}")
    for m in modes:
        med = {k: statistics.median(s[k] for s in samples[m]) for k in samples[m][0]}
        out["modes"][m] = med
        print(f"{m:<12} {med['ops']:>7.0f} {med['ref_ops_s']:>16.0f} {med['sim_ops_s']:>10.0f} "
              f"{med['pipeline_ops_s']:>15.0f} {med['sim_ops_s'] / med['ref_ops_s']:>8.3f} "
              f"{med['pipeline_ops_s'] / med['ref_ops_s']:>13.3f} {med['check_s']:>8.2f}")
    goal = min(out["modes"][m]["sim_ops_s"] for m in modes)
    print(f"goal >= 20000 simulated ops/s: {'met' if goal >= 20_000 else 'NOT met'} "
          f"(slowest mode {goal:.0f} ops/s)")
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
