"""A stored run as a report reads it: validated results.json plus each mode's history."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selfhood.checkers.history import Op
from selfhood.errors import HistoryError
from selfhood.results import load_results


@dataclass(slots=True)
class RunData:
    """One stored run as the report sees it."""

    run_dir: Path
    results: dict[str, Any]
    histories: dict[str, list[Op]] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)  # mode -> why no history

    @property
    def spec(self) -> dict[str, Any]:
        spec = self.results.get("spec")
        return spec if isinstance(spec, dict) else {}

    def derived(self, mode: str, file: str) -> tuple[list[Op] | None, str | None]:
        """A derived history of a mode (list-append.jsonl, ...), or None and why not."""
        from selfhood.checkers.formats import read_history

        p = self.run_dir / mode / file
        if not p.is_file():
            return None, f"{p.name} is missing from the run directory; counts only"
        try:
            return read_history(p, "jsonl"), None
        except HistoryError as exc:
            return None, f"cannot re-check: {exc}"


def load_run(run_dir: Path) -> RunData:
    """results.json plus each mode's history.jsonl (a missing one is noted, not fatal)."""
    from selfhood.checkers.formats import read_history

    run = RunData(run_dir, load_results(run_dir))
    for mode in run.results["modes"]:
        p = run_dir / str(mode) / "history.jsonl"
        if not p.is_file():
            run.missing[mode] = f"{p} is missing: plots and the identity panel need it"
            continue
        try:
            run.histories[mode] = read_history(p, "jsonl")
        except HistoryError as exc:
            run.missing[mode] = str(exc)
    return run
