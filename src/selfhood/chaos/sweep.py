"""Sweeps: one experiment over many seeds, in parallel over the cores.

One seed's numbers are one sample: across seeds 1-6 the default run's
sequential availability ranges 0.958-0.987, so a comparison needs several
seeds and an interval. `run_sweep` runs the spec once per seed (each seed a
complete run directory, `seed-<n>/`, that `selfhood report` and `selfhood
check` read like any other) and writes `sweep.json`: the spec, the seeds,
and each seed's per-mode numbers. Means and intervals are computed from it
by the report (`selfhood.report.sweep`); the harness never imports reports,
so the caller passes `after_run` (e.g. the report.html writer) to run in
the worker beside each seed.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, Final

import msgspec

from selfhood.errors import SpecError
from selfhood.spec import ExperimentSpec, to_dict

#: results.json fields a sweep keeps per seed and mode (the numbers, not the cases)
KEPT: Final = ("valid", "availability", "latency_ms", "anomalies", "staleness", "identity",
               "ops", "load_ops", "reference_valid", "promise_anomalies")
MAX_SEEDS: Final = 1000

AfterRun = Callable[[Path], Any]
Progress = Callable[[str], None]


def parse_seeds(text: str) -> tuple[int, ...]:
    """`1-20`, `1,3,5`, `1-5,9` -> seeds (SpecError naming --seeds on anything else)."""
    out: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        cut = part.find("-", 1)
        try:
            lo, hi = (int(part[:cut]), int(part[cut + 1:])) if cut > 0 else (int(part),) * 2
        except ValueError:
            raise SpecError(f"option --seeds: {part!r} is not a seed or a range like 1-20"
                            ) from None
        if hi < lo:
            raise SpecError(f"option --seeds: range {part!r} runs backwards")
        if hi - lo >= MAX_SEEDS:
            raise SpecError(f"option --seeds: at most {MAX_SEEDS} seeds")
        out.extend(range(lo, hi + 1))
    if not out or len(out) > MAX_SEEDS:
        raise SpecError(f"option --seeds: give 1..{MAX_SEEDS} seeds")
    if len(set(out)) != len(out):
        raise SpecError("option --seeds: a seed is listed twice")
    return tuple(out)


def seed_spec(spec: ExperimentSpec, seed: int) -> ExperimentSpec:
    """The single run of a sweep for one seed (a drawn schedule is drawn again per seed)."""
    return msgspec.structs.replace(spec, seed=seed, seeds=None)


def _one_seed(spec: ExperimentSpec, seed: int, out_dir: Path, check_time_limit_s: float,
              after_run: AfterRun | None, keep: bool = False,
              progress: Progress | None = None) -> tuple[int, dict[str, Any], float]:
    """Worker: run, judge and store one seed; returns (seed, its kept numbers, seconds)."""
    from selfhood.chaos.runner import run_experiment
    from selfhood.chaos.store import write_run_files

    t0 = time.perf_counter()
    exp = run_experiment(seed_spec(spec, seed), check_time_limit_s=check_time_limit_s,
                         keep=keep, progress=progress)
    run_dir = out_dir / f"seed-{seed}"
    run_dir.mkdir()
    write_run_files(run_dir, exp.spec, exp.results,
                    {m: o.files for m, o in exp.outcomes.items()})
    if after_run is not None:
        after_run(run_dir)
    modes = {mode: {k: m[k] for k in KEPT if k in m}
             for mode, m in exp.results["modes"].items()}
    return seed, modes, time.perf_counter() - t0


def workers_for(n_seeds: int, runtime: str = "sim") -> int:
    """Seeds run in parallel on the simulator; the cluster runtime has one cluster."""
    if runtime != "sim":
        return 1
    return max(1, min(n_seeds, os.cpu_count() or 1))


def run_seeds(spec: ExperimentSpec, seeds: Sequence[int], out_dir: Path, *,
              check_time_limit_s: float = 20.0, workers: int | None = None,
              after_run: AfterRun | None = None, keep: bool = False,
              progress: Progress | None = None) -> dict[str, Any]:
    """Run every seed into `out_dir/seed-<n>/` and write `out_dir/sweep.json`; returns it.

    On the cluster runtime the seeds run one after another in this process
    (there is one cluster), and `keep` keeps it up between them.
    """
    t0 = time.perf_counter()
    n = workers or workers_for(len(seeds), spec.runtime)
    runs: dict[int, dict[str, Any]] = {}
    if spec.runtime != "sim":
        for k, s in enumerate(seeds):
            last = k == len(seeds) - 1
            seed, modes, took = _one_seed(spec, s, out_dir, check_time_limit_s, after_run,
                                          keep=keep or not last, progress=progress)
            runs[seed] = modes
            if progress is not None:
                progress(f"[sweep] seed {seed} done ({len(runs)}/{len(seeds)}, {took:.1f} s)")
        return _write_sweep(spec, seeds, runs, n, t0, out_dir)
    ctx = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=n, mp_context=ctx) as pool:
        pending: set[Future[tuple[int, dict[str, Any], float]]] = {
            pool.submit(_one_seed, spec, s, out_dir, check_time_limit_s, after_run)
            for s in seeds}
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    seed, modes, took = fut.result()
                    runs[seed] = modes
                    if progress is not None:
                        progress(f"[sweep] seed {seed} done ({len(runs)}/{len(seeds)}, "
                                 f"{took:.1f} s): " + ", ".join(
                                     f"{m} valid={v['valid']}" for m, v in modes.items()))
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise
    return _write_sweep(spec, seeds, runs, n, t0, out_dir)


def _write_sweep(spec: ExperimentSpec, seeds: Sequence[int], runs: dict[int, dict[str, Any]],
                 n: int, t0: float, out_dir: Path) -> dict[str, Any]:
    from selfhood.chaos.store import write_json

    sweep = {
        "kind": "sweep",
        "spec": to_dict(spec),
        "seeds": list(seeds),
        "workers": n,
        "elapsed_s": round(time.perf_counter() - t0, 3),
        "runs": {str(s): {"dir": f"seed-{s}", "modes": runs[s]} for s in seeds},
    }
    write_json(out_dir / "sweep.json", sweep)
    return sweep
