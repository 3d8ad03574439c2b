"""The run store: a run is visible only when complete; nothing partial is left behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from selfhood.chaos.store import prepare_store, save_run
from selfhood.errors import SpecError
from selfhood.spec import DEFAULT_SPEC, load_spec

RESULTS = {"spec": {}, "seed": 1, "modes": {"eventual": {"ops": 2}}}
FILES = {"eventual": {"history.jsonl": "{}\n"}}


def test_save_run_publishes_a_complete_directory(tmp_path: Path) -> None:
    seen: list[Path] = []

    def report(written: Path, d: Path) -> str:
        seen.append(d)
        assert not d.exists()  # rendered before the directory becomes visible
        assert (written / "results.json").is_file()  # from the files written so far
        return "# report\n"

    run_dir = save_run(tmp_path, DEFAULT_SPEC, RESULTS, FILES, extra={"report.md": report})
    assert seen == [run_dir] and run_dir.parent == tmp_path / "default"
    assert (tmp_path / "latest").resolve() == run_dir.resolve()
    assert load_spec(run_dir / "spec.json") == DEFAULT_SPEC
    assert json.loads((run_dir / "eventual" / "results.json").read_text()) == {"ops": 2}
    assert (run_dir / "report.md").read_text() == "# report\n"
    assert sorted(p.name for p in (tmp_path / "default").iterdir()) == [run_dir.name]
    # two runs in the same second get two directories
    second = save_run(tmp_path, DEFAULT_SPEC, RESULTS, FILES)
    assert second != run_dir and (tmp_path / "latest").resolve() == second.resolve()


def test_an_interrupted_save_leaves_no_partial_run(tmp_path: Path) -> None:
    def interrupted(written: Path, d: Path) -> str:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        save_run(tmp_path, DEFAULT_SPEC, RESULTS, FILES, extra={"report.md": interrupted})
    assert list((tmp_path / "default").iterdir()) == []
    assert not (tmp_path / "latest").exists()


def test_prepare_store_refuses_what_cannot_be_written(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(SpecError, match="option --store"):
        prepare_store(tmp_path / "file", "default")
    assert prepare_store(tmp_path / "new", "default") == tmp_path / "new" / "default"
