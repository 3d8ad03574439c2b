"""The run store: `store/<name>/<timestamp>/` and the `store/latest` link.

Layout of one run directory:

- ``spec.json``: the spec that ran (with its nemesis schedule made explicit);
- ``<mode>/history.jsonl``: the whole history of that mode;
- ``<mode>/{list-append,rw-register,register,governance}.jsonl``: the
  checkable parts, which `selfhood check` reads (report.md lists the exact
  commands; governance is a set history with removals, `--model set`);
- ``<mode>/results.json``: that mode's entry of results.json;
- ``results.json`` and ``report.md``.

`latest` is replaced atomically (a new symlink renamed over the old one), so
a reader never sees it missing.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from selfhood.errors import ChaosError
from selfhood.spec import dumps

if TYPE_CHECKING:
    from selfhood.chaos.runner import Experiment


def _timestamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def new_run_dir(store_root: Path, name: str) -> Path:
    """A fresh directory for a run (suffixed if two runs start in the same second)."""
    base = store_root / name
    base.mkdir(parents=True, exist_ok=True)
    stamp = _timestamp()
    for n in range(1000):
        d = base / (stamp if n == 0 else f"{stamp}-{n}")
        try:
            d.mkdir()
        except FileExistsError:
            continue
        return d
    raise ChaosError(f"cannot create a run directory under {base}")


def point_latest(store_root: Path, run_dir: Path) -> None:
    link = store_root / "latest"
    tmp = store_root / f".latest.{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(os.path.relpath(run_dir, store_root))
    os.replace(tmp, link)


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def save_run(exp: Experiment, store_root: str | Path) -> Path:
    """Write every file of a finished experiment; returns the run directory."""
    from selfhood.report.render import render_markdown

    root = Path(store_root)
    try:
        run_dir = new_run_dir(root, exp.spec.name)
        (run_dir / "spec.json").write_text(dumps(exp.spec), encoding="utf-8")
        for mode, outcome in exp.outcomes.items():
            mdir = run_dir / mode
            mdir.mkdir()
            for fname, text in outcome.files.items():
                (mdir / fname).write_text(text, encoding="utf-8")
            write_json(mdir / "results.json", outcome.summary)
        write_json(run_dir / "results.json", exp.results)
        (run_dir / "report.md").write_text(render_markdown(exp.results, run_dir=run_dir),
                                           encoding="utf-8")
        point_latest(root, run_dir)
    except OSError as exc:
        raise ChaosError(f"cannot write the run store under {root}: {exc}") from None
    return run_dir


def load_results(run_dir: str | Path) -> dict[str, Any]:
    """results.json of a stored run (`run_dir` may be `store/latest`)."""
    p = Path(run_dir) / "results.json"
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ChaosError(f"{p}: cannot read results: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ChaosError(f"{p}:{exc.lineno}: malformed results.json: {exc.msg}") from None
    if not isinstance(data, dict) or "modes" not in data:
        raise ChaosError(f"{p}: not a selfhood results.json (no 'modes')")
    return data
