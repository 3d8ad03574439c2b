"""`selfhood run` (the main job) and `selfhood hunt`.

`run` builds an ExperimentSpec from defaults, an optional --spec file and
the options (options win), runs every mode on the deterministic simulator,
writes the store and prints one summary row per mode. `hunt` searches seeds
and fault schedules with hypothesis for a run that breaks a property,
shrinks it, and writes a spec file that `selfhood run --spec` replays.
Bad values raise SpecError naming the field (exit 64), never a traceback.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import click
import msgspec

from selfhood.spec import FAULTS, MODES, ROUTERS, RUNTIMES


def _progress(quiet: bool) -> Any:
    def emit(msg: str) -> None:
        if not quiet:
            click.echo(msg, err=True)
    return emit


def _positive(option: str, value: float) -> None:
    """A wall-clock limit must be a finite number > 0 (nan and inf refused)."""
    from selfhood.errors import SpecError

    if not (math.isfinite(value) and value > 0):
        raise SpecError(f"option {option}: {value} must be a finite number > 0")


def build_spec(spec_file: Path | None, **opts: Any) -> Any:
    """Defaults <- spec file <- command-line options (validated at every step)."""
    from selfhood.spec import DEFAULT_SPEC, load_spec, parse_list, with_overrides

    spec = load_spec(spec_file) if spec_file is not None else DEFAULT_SPEC
    changes: dict[str, Any] = {}
    if opts.get("modes") is not None:
        changes["modes"] = parse_list("--modes", opts["modes"], MODES)
    if opts.get("nemesis") is not None:
        import msgspec

        changes["nemesis"] = parse_list("--nemesis", opts["nemesis"], FAULTS)
        # a new fault list means a freshly drawn schedule (with_overrides keeps None values)
        spec = msgspec.structs.replace(spec, schedule=None)
    for key in ("seed", "time_limit_s", "concurrency", "shards", "sharded_memory", "router",
                "name", "replicas", "instances", "rate", "fencing", "atomic_memory", "runtime",
                "session_timeout_ms", "system"):
        if opts.get(key) is not None:
            changes[key] = opts[key]
    return with_overrides(spec, **changes)


@click.command("run")
@click.option("--spec", "spec_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Experiment spec (.json or .toml); options below override it.")
@click.option("--runtime", type=click.Choice(RUNTIMES), default=None,
              help="Where the replicas run: the deterministic simulator (default) or "
                   "OS processes over the real Kafka cluster in network namespaces "
                   "(needs root; starts the cluster if it is not running).")
@click.option("--keep", is_flag=True,
              help="--runtime cluster: leave the Kafka cluster up after the run.")
@click.option("--session-timeout-ms", "session_timeout_ms", type=int,
              help="--runtime cluster: the replicas' consumer-group session timeout.")
@click.option("--system", metavar="COMMAND",
              help="--runtime cluster: run this service (sh -c COMMAND, once per node, with "
                   "SELFHOOD_NODE, SELFHOOD_LISTEN, SELFHOOD_DATABASE_URL, ...) instead of "
                   "selfhood's own replica; it must pass `selfhood replica conform` first "
                   "(docs/agents.md).")
@click.option("--modes", help=f"Comma list of modes ({', '.join(MODES)}).")
@click.option("--seed", type=int, help="Seed: same seed, same histories.")
@click.option("--time-limit", "time_limit_s", type=float,
              help="Load phase length in virtual seconds.")
@click.option("--concurrency", type=int, help="Client processes.")
@click.option("--nemesis", help=f"Comma list of faults ({', '.join(FAULTS)}) or 'none'.")
@click.option("--shards", type=int, help="Log partitions.")
@click.option("--sharded-memory/--no-sharded-memory", default=None,
              help="Put memory modules on other partitions than the transcript.")
@click.option("--atomic-memory/--no-atomic-memory", default=None,
              help="With sharded memory: write turn + memory atomically across partitions.")
@click.option("--fencing/--no-fencing", default=None, help="Fence stale owners by epoch.")
@click.option("--router", help=f"Router policy ({', '.join(ROUTERS)}).")
@click.option("--replicas", type=int, help="Replicas serving the instances.")
@click.option("--instances", type=int, help="Virtual instances.")
@click.option("--rate", type=float, help="Client ops per virtual second.")
@click.option("--name", help="Experiment name: one path segment (store/<name>/...).")
@click.option("--store", "store", type=click.Path(file_okay=False, path_type=Path),
              default=Path("store"), show_default=True,
              help="Store root directory (checked writable before the run).")
@click.option("--check-time-limit", type=float, default=20.0, show_default=True,
              help="Wall-clock seconds per checker before its verdict is 'unknown'.")
@click.option("--seeds", "seeds_text",
              help="Sweep: run once per seed (1-20, 1,3,5) in parallel; report means and "
                   "95 % intervals.")
@click.option("--expect", help="Exit 0/1/2 by these expectations instead of the verdicts, "
                               "e.g. 'sequential valid, eventual converges'.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def run(spec_file: Path | None, store: Path, check_time_limit: float, quiet: bool,
        keep: bool, seeds_text: str | None, expect: str | None, **opts: Any) -> None:
    """Run an experiment and compare the modes.

    With no arguments: sequential vs eventual, 3 replicas, 4 instances, under
    partitions and crash/failover, on the deterministic simulator in well under
    a minute. `--runtime cluster` runs the same spec on replica processes over
    real Kafka under real faults, and leaves the machine as it found it.
    Writes report.md and report.html into the run directory.

    Exit status, like Jepsen's: 1 when any mode broke its own promise, 2
    when a verdict is unknown (and none broke), 0 otherwise. With --expect,
    0 when every expectation holds (in every seed), 1 when one fails, 2 when
    one is undecided.
    """
    from selfhood.chaos.expect import parse_expect
    from selfhood.chaos.runner import run_experiment
    from selfhood.chaos.store import Render, prepare_store, save_run
    from selfhood.extras import installed, require
    from selfhood.report.render import render_markdown, render_table

    _positive("--check-time-limit", check_time_limit)
    spec = build_spec(spec_file, **opts)
    if seeds_text is not None:
        from selfhood.chaos.sweep import parse_seeds

        spec = msgspec.structs.replace(spec, seeds=parse_seeds(seeds_text))
    expectations = parse_expect(expect, spec.modes) if expect is not None else None
    if spec.seeds is not None:
        require("report")  # a sweep's report is HTML: say so before the runs, not after
    prepare_store(store, spec.name)  # an unwritable store fails now, not after the run
    progress = _progress(quiet)
    if spec.seeds is not None:
        runs = _sweep(spec, store, check_time_limit, progress, keep=keep)
        sys.exit(_exit_code(runs, expectations))
    progress(f"selfhood run {spec.name} ({spec.runtime}): modes {', '.join(spec.modes)}, "
             f"seed {spec.seed}, {spec.time_limit_s:g} s load, "
             f"nemesis {', '.join(spec.nemesis) or 'none'}")
    exp = run_experiment(spec, progress=progress, check_time_limit_s=check_time_limit,
                         keep=keep)
    # the reports are written into the hidden run directory, so a run is published whole
    extra: dict[str, Render] = {
        "report.md": lambda _tmp, final: render_markdown(exp.results, run_dir=final)}
    if installed("report"):
        from selfhood.report.html import render_run_html
        from selfhood.report.results import load_run

        extra["report.html"] = lambda tmp, final: render_run_html(load_run(tmp), shown_as=final)
    run_dir = save_run(store, exp.spec, exp.results,
                       {m: o.files for m, o in exp.outcomes.items()}, extra=extra)
    report = (str(run_dir / "report.html") if "report.html" in extra else
              f"{run_dir / 'report.md'} (report.html needs pip install 'selfhood[report]')")
    click.echo(render_table(exp.results), nl=False)
    click.echo(f"store: {run_dir}  (latest: {store / 'latest'}); report: {report}")
    sys.exit(_exit_code([exp.results], expectations))


def _sweep(spec: Any, store: Path, check_time_limit: float, progress: Any, *,
           keep: bool = False) -> list[Any]:
    """`run` with seeds: every seed in parallel into one sweep directory; prints the means."""
    from selfhood.chaos.store import publish
    from selfhood.chaos.sweep import run_seeds, workers_for
    from selfhood.report.html import write_report_html
    from selfhood.report.sweep import load_sample, render_sweep_table, write_sweep_report

    seeds = spec.seeds
    progress(f"selfhood run {spec.name}: sweep of {len(seeds)} seeds over "
             f"{workers_for(len(seeds), spec.runtime)} workers ({spec.runtime}), "
             f"modes {', '.join(spec.modes)}, {spec.time_limit_s:g} s load each, "
             f"nemesis {', '.join(spec.nemesis) or 'none'}")
    done: dict[str, Any] = {}

    def fill(d: Path) -> None:
        done.update(run_seeds(spec, seeds, d, check_time_limit_s=check_time_limit,
                              after_run=write_report_html, keep=keep, progress=progress))

    sweep_dir = publish(store, spec.name, fill)
    html = write_sweep_report(sweep_dir)
    click.echo(render_sweep_table(load_sample(sweep_dir)), nl=False)
    click.echo(f"store: {sweep_dir}  (latest: {store / 'latest'}); report: {html}")
    return list(done["runs"].values())


def _exit_code(runs: list[Any], expectations: Any) -> int:
    """Jepsen-like exit status from the verdicts, or from --expect when given."""
    from selfhood.chaos.expect import check_expectations, verdict_exit

    if expectations is None:
        code = verdict_exit(runs)
        if code:
            bad = sorted({m for r in runs for m, v in r["modes"].items()
                          if v.get("valid") is not True})
            click.echo(f"exit {code}: {', '.join(bad)} "
                       f"{'broke its promise' if code == 1 else 'has an unknown verdict'}"
                       f"{'' if len(runs) == 1 else ' in at least one seed'}", err=True)
        return code
    code, lines = check_expectations(expectations, runs)
    for line in lines:
        click.echo(line, err=True)
    return code


@click.command("hunt")
@click.option("--property", "prop", default="sequential never forks", show_default=True,
              help="Property to falsify, e.g. 'sequential never forks', "
                   "'eventual never forgets', 'sequential stays valid'.")
@click.option("--spec", "spec_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Base spec (.json or .toml).")
@click.option("--max-examples", type=int, default=30, show_default=True)
@click.option("--time-limit", "time_limit", type=float, default=60.0, show_default=True,
              help="Wall-clock budget for the search, seconds.")
@click.option("--faults", default="partition,crash,pause,skew", show_default=True,
              help="Faults the search may schedule.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("hunt-failure.json"), show_default=True,
              help="Where to write the replay spec of a failure (checked before the search).")
@click.option("--quiet", "-q", is_flag=True)
def hunt(prop: str, spec_file: Path | None, max_examples: int, time_limit: float, faults: str,
         out: Path, quiet: bool) -> None:
    """Search seeds and fault schedules for a run that violates PROPERTY; shrink it."""
    from selfhood.chaos.hunt import hunt as do_hunt
    from selfhood.chaos.hunt import parse_property
    from selfhood.errors import SpecError
    from selfhood.spec import DEFAULT_SPEC, load_spec, parse_list

    if max_examples < 1:
        raise SpecError("option --max-examples: must be >= 1")
    _positive("--time-limit", time_limit)
    prop_ = parse_property(prop)
    base = load_spec(spec_file) if spec_file is not None else DEFAULT_SPEC
    kinds = parse_list("--faults", faults, FAULTS)
    _check_out(out)  # a counterexample must not be lost to an unwritable --out
    found = do_hunt(prop_, base, faults=kinds, max_examples=max_examples,
                    time_limit_s=time_limit, progress=_progress(quiet))
    if found.spec is None:
        click.echo(f"no counterexample to {prop!r} in {found.examples} runs "
                   f"({found.elapsed_s:.1f} s)")
        return
    from selfhood.spec import dumps

    text = dumps(found.spec)
    click.echo(f"counterexample to {prop!r} after {found.examples} runs "
               f"({found.elapsed_s:.1f} s), shrunk to {len(found.spec.schedule or ())} "
               f"nemesis ops: {found.detail}")
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:  # checked before the search, but the disk may still fail
        out = Path(tempfile.gettempdir()) / f"selfhood-hunt-{os.getpid()}.json"
        click.echo(f"cannot write --out ({exc.strerror or exc}); the spec follows and is "
                   f"saved as {out}", err=True)
        click.echo(text, nl=False)
        out.write_text(text, encoding="utf-8")
    click.echo(f"replay: selfhood run --spec {out}")
    sys.exit(1)


def _check_out(out: Path) -> None:
    """`--out` must be a writable file path whose directory exists (SpecError, exit 64)."""
    from selfhood.errors import SpecError

    parent = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise SpecError(f"option --out: {out} is a directory")
    if not parent.is_dir():
        raise SpecError(f"option --out: directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise SpecError(f"option --out: cannot write {out}")
