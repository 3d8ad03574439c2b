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

The figures depend on how selfhood was built, which the bench prints. A
wheel -- what `pip install selfhood` or `pip install .` installs -- has the
simulator's hot modules compiled by mypyc (build_backend/selfhood_build.py);
an editable install, `SELFHOOD_COMPILE=0` or a machine without a C compiler
runs them as pure Python. Same code, byte-identical histories, so both builds
simulate exactly the same runs; the compiled one ~1.7x the CPU ops/s.
`--builds both` measures the two side by side in one run: it installs this
checkout's wheel (built once per source digest, cached in bench/out/builds/)
and runs the bench in a child process per build, alternating the builds for
--rounds rounds, and reports each build's medians over the rounds.

    python bench/bench_sim.py [--ops 10000] [--reps 3] [--json out.json]
    python bench/bench_sim.py --builds both [--rounds 2] [--reps 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selfhood._build import COMPILED, PURE, simulator_build
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
MODES = ("sequential", "linearizable", "eventual")
ROOT = Path(__file__).resolve().parents[1]
BUILDS_DIR = ROOT / "bench" / "out" / "builds"


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


def measure(args: argparse.Namespace) -> None:
    """The bench on the selfhood this interpreter imports (whichever build it is)."""
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
    build = simulator_build()
    print(f"{args.ops} client ops per run, medians of {args.reps} reps; selfhood {build} "
          f"({sim_module.__file__})")
    print(f"{'run':<36}{'client ops':>11}{'wall s':>9}{'wall ops/s':>11}{'cpu s':>8}"
          f"{'cpu ops/s':>11}{'x ref':>7}")
    print(f"{'reference: generator + no-op client':<36}{ref_n:>11}{ref_s:>9.3f}"
          f"{ref_n / ref_s:>11.0f}{ref_cpu:>8.3f}{ref_cpu_rate:>11.0f}{1.0:>7.2f}")
    modes = MODES
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


def _backend() -> Any:
    """The build backend's helpers (imported only for --builds both: setuptools)."""
    if str(ROOT / "build_backend") not in sys.path:
        sys.path.insert(0, str(ROOT / "build_backend"))
    import selfhood_build

    return selfhood_build


def source_digest() -> str:
    """A digest of what a build of this checkout reads (the wheel cache's key)."""
    h = hashlib.sha256()
    for rel in _backend().build_inputs(ROOT):
        h.update(str(rel).encode() + b"\0" + (ROOT / rel).read_bytes() + b"\0")
    return h.hexdigest()[:16]


def compiled_site() -> Path:
    """This checkout installed as its wheel is (compiled; built once per source digest, and
    only the newest build is kept)."""
    site = BUILDS_DIR / f"compiled-{source_digest()}"
    if (site / "selfhood").is_dir():
        print(f"compiled build: {site} (cached)", flush=True)
        return site
    print(f"building this checkout's wheel into {site} (mypyc, ~1-2 min) ...", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-sim-build-"))
    try:
        # SELFHOOD_COMPILE=1: a build that cannot compile fails here, not silently pure
        try:
            _backend().install_copy(ROOT, tmp / "site", compile="1", work=tmp)
        except RuntimeError as exc:
            raise SystemExit(f"bench_sim: cannot build the compiled wheel: {exc}") from None
        BUILDS_DIR.mkdir(parents=True, exist_ok=True)
        for old in BUILDS_DIR.glob("compiled-*"):  # builds of earlier sources
            shutil.rmtree(old, ignore_errors=True)
        (tmp / "site").rename(site)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return site


def both_builds(args: argparse.Namespace) -> None:
    """Pure Python and the compiled wheel side by side: child runs, builds alternating."""
    sites = {PURE: ROOT / "src", COMPILED: compiled_site()}
    runs: dict[str, list[dict[str, Any]]] = {b: [] for b in sites}
    for rnd in range(args.rounds):
        for build, site in sites.items():
            with tempfile.NamedTemporaryFile(suffix=".json") as out:
                env = {**os.environ, "PYTHONPATH": str(site)}
                print(f"\n== round {rnd + 1}/{args.rounds}: {build}", flush=True)
                child = subprocess.run([sys.executable, __file__, "--ops", str(args.ops),
                                        "--reps", str(args.reps), "--json", out.name],
                                       env=env, check=False)
                if child.returncode != 0:
                    raise SystemExit(f"bench_sim: the {build} run failed "
                                     f"(exit {child.returncode}); its output is above")
                got = json.loads(Path(out.name).read_text())
            if got["build"] != build:
                raise SystemExit(f"expected the {build} build from {site}, "
                                 f"the child ran {got['build']}")
            runs[build].append(got)
    med = {b: {m: statistics.median(r["mode_cpu_ops_per_s"][m] for r in rs) for m in MODES}
           for b, rs in runs.items()}
    ref = {b: statistics.median(r["reference_cpu_ops_per_s"] for r in rs)
           for b, rs in runs.items()}
    print(f"\n{args.rounds} rounds, builds alternating; CPU client ops/s, the slower of each "
          f"mode's two rows, median over the rounds (each round: medians of {args.reps} reps)")
    print(f"{'mode':<14}{'pure Python':>13}{'compiled':>11}{'compiled/pure':>15}")
    for m in MODES:
        print(f"{m:<14}{med[PURE][m]:>13.0f}{med[COMPILED][m]:>11.0f}"
              f"{med[COMPILED][m] / med[PURE][m]:>15.2f}")
    print(f"{'reference':<14}{ref[PURE]:>13.0f}{ref[COMPILED]:>11.0f}"
          f"{ref[COMPILED] / ref[PURE]:>15.2f}")
    verdict = {b: min(med[b].values()) >= GOAL_OPS_S for b in sites}
    print(f"\ngoal: every mode >= {GOAL_OPS_S} CPU ops/s")
    print(f"  the installed build (a wheel: {COMPILED}): slowest mode "
          f"{min(med[COMPILED].values()):.0f}: {'meets' if verdict[COMPILED] else 'below'}")
    print(f"  {PURE} (editable installs, no C compiler): slowest mode "
          f"{min(med[PURE].values()):.0f}: {'meets' if verdict[PURE] else 'below'}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"goal_cpu_ops_per_s": GOAL_OPS_S, "rounds": args.rounds,
                       "reps": args.reps, "mode_cpu_ops_per_s": med,
                       "reference_cpu_ops_per_s": ref, "goal_met": verdict,
                       "runs": runs}, fh, indent=2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ops", type=int, default=10_000, help="client ops per run")
    ap.add_argument("--reps", type=int, default=3, help="runs per row; rows give medians")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    ap.add_argument("--builds", choices=("this", "both"), default="this",
                    help="this: the selfhood this interpreter imports; both: pure Python and "
                         "this checkout's compiled wheel, side by side")
    ap.add_argument("--rounds", type=int, default=2,
                    help="with --builds both: rounds, each running both builds")
    args = ap.parse_args()
    if args.ops < 1 or args.reps < 1 or args.rounds < 1:
        ap.error("--ops, --reps and --rounds must be >= 1")
    if args.builds == "both":
        both_builds(args)
    else:
        measure(args)


if __name__ == "__main__":
    main()
