"""`selfhood study`: run the canned sweep of `selfhood.report.study` and write its answers.

The harness side of the study: one sweep directory per configuration, every
seed a complete run, all published at once as `store/study/<timestamp>/`.
The questions, configurations and the answers computed from the numbers
live in `selfhood.report.study` (the harness calls the report writer; the
report never imports the harness).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import msgspec


@click.command("study")
@click.option("--seeds", "seeds_text", default="1-5", show_default=True,
              help="Seeds per configuration.")
@click.option("--runtime", type=click.Choice(("sim", "cluster")), default="sim",
              show_default=True,
              help="The simulator (minutes), or replica processes over real Kafka "
                   "(`selfhood run --runtime cluster`; needs root, takes much longer).")
@click.option("--time-limit", "time_limit_s", type=float, default=5.0, show_default=True,
              help="Load phase per run, seconds.")
@click.option("--store", type=click.Path(file_okay=False, path_type=Path),
              default=Path("store"), show_default=True, help="Store root directory.")
@click.option("--check-time-limit", type=float, default=20.0, show_default=True,
              help="Wall-clock seconds per checker before its verdict is 'unknown'.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def study(seeds_text: str, runtime: str, time_limit_s: float, store: Path,
          check_time_limit: float, quiet: bool) -> None:
    """Answer the two research questions with a canned sweep; writes study.html + study.md.

    (1) Can an instance's identity be split across sharded memory without
    coherence loss? (2) Does identity need sequential consistency, or does
    eventual suffice, by fault? Every configuration runs over the same seeds
    (in parallel on the simulator) and is kept as a sweep directory.
    """
    from selfhood.chaos.store import prepare_store, publish
    from selfhood.chaos.sweep import parse_seeds, run_seeds
    from selfhood.errors import SpecError
    from selfhood.report.html import write_report_html
    from selfhood.report.study import MODES, configs, write_study
    from selfhood.report.sweep import write_sweep_report
    from selfhood.spec import DEFAULT_SPEC, validate

    def progress(msg: str) -> None:
        if not quiet:
            click.echo(msg, err=True)

    if not check_time_limit > 0 or check_time_limit == float("inf"):
        raise SpecError("option --check-time-limit: must be a finite number > 0")
    seeds = parse_seeds(seeds_text)
    base = msgspec.structs.replace(DEFAULT_SPEC, name="study", runtime=runtime,
                                   modes=MODES, time_limit_s=time_limit_s)
    specs = {c.name: validate(msgspec.structs.replace(base, name=c.name, **c.changes))
             for c in configs()}
    prepare_store(store, "study")
    t0 = time.perf_counter()
    out: dict[str, Path] = {}

    def fill(d: Path) -> None:
        for n, c in enumerate(configs(), start=1):
            progress(f"[study] {n}/{len(configs())} {c.name}: seeds {seeds_text}")
            sub = d / c.name
            sub.mkdir()
            run_seeds(specs[c.name], seeds, sub, check_time_limit_s=check_time_limit,
                      after_run=write_report_html,
                      keep=runtime == "cluster" and n < len(configs()))
            write_sweep_report(sub)
        elapsed = time.perf_counter() - t0
        (d / "study.json").write_text(json.dumps(
            {"kind": "study", "seeds": list(seeds), "runtime": runtime,
             "configs": [c.name for c in configs()], "elapsed_s": elapsed},
            indent=2) + "\n", encoding="utf-8")
        out["html"] = write_study(d, seeds, runtime, elapsed)

    study_dir = publish(store, "study", fill)
    click.echo((study_dir / "study.md").read_text(encoding="utf-8"), nl=False)
    click.echo(f"study: {study_dir / 'study.html'} ({time.perf_counter() - t0:.0f} s)")
