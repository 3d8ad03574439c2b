"""`selfhood report STORE_DIR`: rebuild report.md from a stored results.json."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("report")
@click.argument("store_dir", default="store/latest", required=False,
                type=click.Path(file_okay=False, path_type=Path))
def report(store_dir: Path) -> None:
    """Rebuild STORE_DIR/report.md from STORE_DIR/results.json and print the table.

    STORE_DIR is a run directory, e.g. store/latest (the default).
    """
    from selfhood.report.render import render_markdown, render_table
    from selfhood.results import load_results

    results = load_results(store_dir)
    run_dir = store_dir.resolve()
    (store_dir / "report.md").write_text(render_markdown(results, run_dir=run_dir),
                                         encoding="utf-8")
    click.echo(render_table(results), nl=False)
    click.echo(f"report: {store_dir / 'report.md'}")
