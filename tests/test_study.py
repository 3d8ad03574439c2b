"""`selfhood study`: answers computed from the sweeps' numbers, both ways."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from selfhood.report.stats import mean_ci
from selfhood.report.study import FAULTS, answer_memory, answer_modes
from selfhood.report.sweep import METRICS, ModeAggregate


def _agg(mode: str, runs: int, same: int, torn: float = 0.0, forks: float = 0.0,
         avail: tuple[float, ...] = (0.98, 0.99, 0.97)) -> ModeAggregate:
    metrics = {k: mean_ci([0.0] * runs) for k, _, _, _ in METRICS}
    metrics["torn"] = mean_ci([torn] * runs)
    metrics["forks"] = mean_ci([forks] * runs)
    metrics["availability"] = mean_ci(list(avail))
    return ModeAggregate(mode, runs, runs, 0, 0, same, runs, metrics)


def test_memory_answer_follows_the_numbers() -> None:
    split = {"unsharded": {m: _agg(m, 3, 3) for m in ("sequential", "eventual")},
             "sharded-atomic": {m: _agg(m, 3, 3) for m in ("sequential", "eventual")},
             "sharded-non-atomic": {"sequential": _agg("sequential", 3, 0, torn=2.0),
                                    "eventual": _agg("eventual", 3, 3)}}
    text, evidence = answer_memory(split)
    assert text.startswith("Yes, but only with atomic cross-partition writes")
    assert any("sharded-non-atomic, sequential: same instance 0/3, torn memory 2.00" in e
               for e in evidence)
    split["sharded-non-atomic"]["sequential"] = _agg("sequential", 3, 3)
    assert "with or without atomic writes" in answer_memory(split)[0]
    split["sharded-atomic"]["sequential"] = _agg("sequential", 3, 1, torn=1.0)
    assert answer_memory(split)[0].startswith("Not even with atomic writes")


def test_modes_answer_follows_the_numbers() -> None:
    forks = {f: {"sequential": _agg("sequential", 3, 3, avail=(0.90, 0.91, 0.92)),
                 "eventual": _agg("eventual", 3, 0, forks=10.0, avail=(0.99, 0.99, 1.0))}
             for f in FAULTS}
    text, evidence = answer_modes(forks)
    assert text.startswith("Eventual does not suffice")
    assert "clearly lower than eventual's under no fault, partition" in text
    assert len(evidence) == len(FAULTS)
    same = {f: {"sequential": _agg("sequential", 3, 3), "eventual": _agg("eventual", 3, 3)}
            for f in FAULTS}
    text = answer_modes(same)[0]
    assert "Eventual kept identity in every run under no fault, partition" in text
    assert "not clearly different from zero" in text


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "selfhood", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=900, check=False)


def _check_study(cwd: Path, out: str) -> Path:
    d = (cwd / "store" / "latest").resolve()
    assert (d / "study.html").is_file() and (d / "study.md").read_text() in out
    # every same-instance count the study prints is the count in that sweep's numbers
    cited = re.findall(r"- (sharded-non-atomic|sharded-atomic|unsharded), (sequential|eventual):"
                       r" same instance (\d+)/(\d+)", out)
    assert len(cited) == 6
    for label, mode, same, runs in cited:
        sweep: dict[str, Any] = json.loads((d / f"memory-{label}" / "sweep.json").read_text())
        ms = [r["modes"][mode] for r in sweep["runs"].values()]
        ident = [m["identity"] for m in ms]
        ok = sum(1 for i in ident if i["converged"] and not any(
            i[k] for k in ("forks", "forgotten_acks", "revived_rules", "torn_memory")))
        assert (int(same), int(runs)) == (ok, len(ms))
    html = (d / "study.html").read_text()
    assert 'id="answer-1"' in html and 'id="answer-2"' in html and "<script" not in html
    return d


def test_quick_study_cites_its_sweeps(tmp_path: Path) -> None:
    p = _run("study", "-q", "--seeds", "1-2", "--time-limit", "1", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    d = _check_study(tmp_path, p.stdout)
    assert (d / "fault-partition" / "seed-2" / "report.html").is_file()
    # `selfhood report` rebuilds the study's pages from its sweeps
    before = (d / "study.md").read_text()
    (d / "study.md").unlink()
    (d / "study.html").unlink()
    r = _run("report", str(d), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (d / "study.md").read_text() == before and (d / "study.html").is_file()


@pytest.mark.slow
def test_default_study_cites_its_sweeps(tmp_path: Path) -> None:
    """The default study (seeds 1-5); its time is measured in bench/bench_report.py --study."""
    p = _run("study", "-q", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    _check_study(tmp_path, p.stdout)
