"""The run store: `store/<name>/<timestamp>/` and the `store/latest` link.

Layout of one run directory:

- ``spec.json``: the spec that ran (with its nemesis schedule made explicit);
- ``<mode>/history.jsonl``: the whole history of that mode;
- ``<mode>/{list-append,rw-register,register,governance}.jsonl``: the
  checkable parts, which `selfhood check` reads (report.md lists the exact
  commands; governance is a set history with removals, `--model set`);
- ``<mode>/results.json``: that mode's entry of results.json;
- ``results.json`` and the extra files the caller renders (``report.md``).

A run directory is written under a hidden name and renamed into place when
complete, so a reader (or `latest`) never sees half a run, and an
interrupted write leaves nothing behind. `latest` is replaced atomically (a
new symlink renamed over the old one), so a reader never sees it missing.
The store knows files, not reports: it imports neither the runner nor
`selfhood.report` (reports import results, never the other way).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from selfhood.errors import ChaosError, SpecError
from selfhood.spec import ExperimentSpec, dumps

#: renders an extra file's text (e.g. report.md, report.html) from the directory written so
#: far (still hidden) for the name it will be published under
Render = Callable[[Path, Path], str]


def _timestamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def prepare_store(store_root: str | Path, name: str) -> Path:
    """Check, before a run, that `store_root/name` can be written; returns that directory.

    A store that cannot be written is a bad `--store` option (SpecError,
    exit 64), found before the run rather than after it, when its results
    would be lost. `name` is a validated spec name: one path segment.
    """
    base = Path(store_root) / name
    try:
        base.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as exc:
        raise SpecError(f"option --store: cannot write {base}: "
                        f"{exc.strerror or exc}") from None
    return base


def _publish(tmp: Path, base: Path, extra: Mapping[str, Render]) -> Path:
    """Render `extra` into the complete `tmp` and rename it to a free timestamped name."""
    stamp = _timestamp()
    for n in range(1000):
        final = base / (stamp if n == 0 else f"{stamp}-{n}")
        if final.exists():
            continue
        for fname, render in extra.items():  # extras see the name they will have
            (tmp / fname).write_text(render(tmp, final), encoding="utf-8")
        try:
            os.rename(tmp, final)  # onto a free name (a published run is never empty)
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                continue
            raise
        return final
    raise ChaosError(f"cannot create a run directory under {base}")


def point_latest(store_root: Path, run_dir: Path) -> None:
    link = store_root / "latest"
    tmp = store_root / f".latest.{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(os.path.relpath(run_dir, store_root))
    os.replace(tmp, link)


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n",
                    encoding="utf-8")


def write_run_files(run_dir: Path, spec: ExperimentSpec, results: dict[str, Any],
                    mode_files: Mapping[str, Mapping[str, str]]) -> None:
    """Every file of one run into `run_dir` (which exists): spec, per-mode files, results."""
    (run_dir / "spec.json").write_text(dumps(spec), encoding="utf-8")
    for mode, files in mode_files.items():
        mdir = run_dir / mode
        mdir.mkdir()
        for fname, text in files.items():
            (mdir / fname).write_text(text, encoding="utf-8")
        write_json(mdir / "results.json", results["modes"][mode])
    write_json(run_dir / "results.json", results)


def publish(store_root: str | Path, name: str, fill: Callable[[Path], None], *,
            extra: Mapping[str, Render] | None = None) -> Path:
    """Fill a hidden directory, publish it as `store_root/name/<timestamp>`, point `latest`.

    Nothing is visible until `fill` returns; a failure or Ctrl-C leaves nothing.
    """
    root = Path(store_root)
    base = prepare_store(root, name)
    tmp: Path | None = None
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{_timestamp()}.", suffix=".partial", dir=base))
        fill(tmp)
        run_dir = _publish(tmp, base, extra or {})
        tmp = None
        point_latest(root, run_dir)
    except OSError as exc:
        raise ChaosError(f"cannot write the run store under {root}: {exc}") from None
    finally:
        if tmp is not None:  # failed or interrupted (Ctrl-C): leave no partial run
            shutil.rmtree(tmp, ignore_errors=True)
    return run_dir


def save_run(store_root: str | Path, spec: ExperimentSpec, results: dict[str, Any],
             mode_files: Mapping[str, Mapping[str, str]], *,
             extra: Mapping[str, Render] | None = None) -> Path:
    """Write a finished run and publish it; returns the run directory.

    `results["modes"][mode]` is written as `<mode>/results.json` beside that
    mode's `mode_files`; each `extra` file is rendered from those files for
    the final directory's name. Nothing is visible until every file is written.
    """
    return publish(store_root, spec.name,
                   lambda d: write_run_files(d, spec, results, mode_files), extra=extra)
