"""`selfhood report RUN_DIR`: rebuild report.md and report.html from a stored run."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("report")
@click.argument("run_dir", default="store/latest", required=False,
                type=click.Path(file_okay=False, path_type=Path))
@click.option("--check-time-limit", type=float, default=20.0, show_default=True,
              help="Seconds per re-check when the report explains a failing verdict.")
def report(run_dir: Path, check_time_limit: float) -> None:
    """Rebuild RUN_DIR/report.md and RUN_DIR/report.html and print the table.

    RUN_DIR is a run directory, e.g. store/latest (the default), a sweep
    directory (its sweep.md and report.html) or a study directory (its
    study.md and study.html). A damaged results.json
    is reported field by field (exit 65).
    """
    from selfhood.errors import SpecError
    from selfhood.report.render import render_markdown, render_table
    from selfhood.results import load_results

    if not check_time_limit > 0:
        raise SpecError("option --check-time-limit: must be > 0")
    if (run_dir / "study.json").is_file():
        from selfhood.report.study import rebuild_study

        click.echo(f"report: {run_dir / 'study.md'}, {rebuild_study(run_dir)}")
        return
    if (run_dir / "sweep.json").is_file():
        from selfhood.report.sweep import write_sweep_report

        out = write_sweep_report(run_dir)
        click.echo(f"report: {out}")
        return
    results = load_results(run_dir)
    from selfhood.report.html import write_report_html

    (run_dir / "report.md").write_text(render_markdown(results, run_dir=run_dir.resolve()),
                                       encoding="utf-8")
    html = write_report_html(run_dir, check_time_limit_s=check_time_limit)
    click.echo(render_table(results), nl=False)
    click.echo(f"report: {run_dir / 'report.md'}, {html}")


@click.command("compare")
@click.argument("run_a", type=click.Path(file_okay=False, path_type=Path))
@click.argument("run_b", type=click.Path(file_okay=False, path_type=Path))
def compare(run_a: Path, run_b: Path) -> None:
    """Compare two stored runs or sweeps, mode by mode.

    Per metric: A and B as mean ± 95 % interval over their seeds, and B - A
    with Welch's 95 % interval ("differs" when it excludes zero). A single
    run counts as a sweep of one seed (no interval).
    """
    from selfhood.report.sweep import load_sample, render_compare

    click.echo(render_compare(load_sample(run_a), load_sample(run_b)), nl=False)
