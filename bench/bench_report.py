"""Sweeps and reports: how long `selfhood run --seeds 1-10` and `selfhood study` take.

Per repetition, interleaved so load drift on the shared machine hits both:

- sweep: `selfhood run --seeds 1-10 -q` as a subprocess (wall seconds, and the
  CPU seconds of it and its workers);
- reference: the same ten seeds one after another in this process, doing the
  same work (run, judge, store files, write report.html), wall seconds; the
  ratio sweep / reference is what running the seeds in parallel buys.

Also, per run, the CPU seconds of report.html (render) against the run
itself (simulate + judge), medians over the seeds. `--study` adds one timed
`selfhood study -q` (seeds 1-5, the default). The load average is printed
beside the figures: on a box shared by many jobs, wall time is not CPU time.

The acceptance targets (issue 9): the sweep under 60 s, the study under 600 s,
on the simulator.

    python bench/bench_report.py [--reps 3] [--seeds 1-10] [--study] [--json out]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from selfhood.chaos.runner import run_experiment
from selfhood.chaos.store import write_run_files
from selfhood.chaos.sweep import parse_seeds, seed_spec
from selfhood.report.html import write_report_html
from selfhood.spec import DEFAULT_SPEC


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed_cli(args: list[str], cwd: Path) -> tuple[float, float]:
    """(wall s, CPU s of the command and its children)."""
    c0, t0 = children_cpu(), time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "selfhood", *args], cwd=cwd,
                       capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if p.returncode not in (0, 1, 2):
        raise SystemExit(f"selfhood {' '.join(args)} failed: {p.stderr}")
    return wall, children_cpu() - c0


def serial(seeds: tuple[int, ...], out: Path) -> tuple[float, list[float], list[float]]:
    """The sweep's work one seed after another: wall s, per-run CPU s (run, render)."""
    runs, renders = [], []
    t0 = time.perf_counter()
    for s in seeds:
        c0 = time.process_time()
        exp = run_experiment(seed_spec(DEFAULT_SPEC, s))
        d = out / f"seed-{s}"
        d.mkdir(parents=True)
        write_run_files(d, exp.spec, exp.results, {m: o.files for m, o in exp.outcomes.items()})
        c1 = time.process_time()
        write_report_html(d)
        c2 = time.process_time()
        runs.append(c1 - c0)
        renders.append(c2 - c1)
    return time.perf_counter() - t0, runs, renders


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seeds", default="1-10")
    ap.add_argument("--study", action="store_true", help="also time `selfhood study -q` once")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    seeds = parse_seeds(a.seeds)
    sweep_wall, sweep_cpu, ref_wall, run_cpu, render_cpu = [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(a.reps):
            cwd = Path(tmp) / f"rep{rep}"
            cwd.mkdir()
            w, c = timed_cli(["run", "--seeds", a.seeds, "-q"], cwd)
            sweep_wall.append(w)
            sweep_cpu.append(c)
            rw, runs, renders = serial(seeds, cwd / "serial")
            ref_wall.append(rw)
            run_cpu += runs
            render_cpu += renders
            say(f"rep {rep + 1}/{a.reps}: sweep {w:.1f} s wall ({c:.1f} s CPU), "
                f"serial reference {rw:.1f} s; load {os.getloadavg()[0]:.1f}")
        out: dict[str, Any] = {
            "seeds": a.seeds, "cores": os.cpu_count(), "load_1min": os.getloadavg()[0],
            "sweep_wall_s": statistics.median(sweep_wall),
            "sweep_cpu_s": statistics.median(sweep_cpu),
            "serial_reference_wall_s": statistics.median(ref_wall),
            "ratio_sweep_to_serial": statistics.median(sweep_wall) / statistics.median(ref_wall),
            "run_cpu_s_per_seed": statistics.median(run_cpu),
            "report_html_cpu_s_per_seed": statistics.median(render_cpu),
        }
        if a.study:
            cwd = Path(tmp) / "study"
            cwd.mkdir()
            out["study_wall_s"], out["study_cpu_s"] = timed_cli(["study", "-q"], cwd)
    print(json.dumps(out, indent=2))
    if a.json is not None:
        a.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
