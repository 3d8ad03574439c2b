"""`selfhood hunt`: finds, shrinks and writes a replayable counterexample; bounded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from selfhood.chaos.hunt import hunt, hunt_spec, parse_property, violation
from selfhood.errors import SpecError
from selfhood.spec import DEFAULT_SPEC, load_spec, with_overrides

SMALL = with_overrides(DEFAULT_SPEC, time_limit_s=2.0, quiesce_ms=500)


def test_parse_property() -> None:
    p = parse_property("sequential never forks")
    assert (p.mode, p.clause) == ("sequential", "never forks")
    for bad in ("bogus", "sequential sometimes forks", "strong never forks"):
        with pytest.raises(SpecError, match="--property"):
            parse_property(bad)


def test_hunt_finds_and_shrinks_an_eventual_fork() -> None:
    prop = parse_property("eventual never forks")
    res = hunt(prop, SMALL, faults=("partition",), max_examples=20, time_limit_s=120)
    assert res.spec is not None
    # shrunk: hypothesis minimises the schedule; eventual forks even without faults
    assert len(res.spec.schedule or ()) <= 2
    assert res.spec.modes == ("eventual",)
    # the written spec reproduces the violation
    assert violation(prop, res.spec) is not None


def test_hunt_reports_no_counterexample_for_a_property_that_holds() -> None:
    prop = parse_property("sequential never forks")
    res = hunt(prop, SMALL, faults=("partition", "crash"), max_examples=4, time_limit_s=60)
    assert res.spec is None and 1 <= res.examples <= 4


def test_hunt_respects_its_time_limit() -> None:
    prop = parse_property("sequential never forgets")
    res = hunt(prop, SMALL, faults=("crash",), max_examples=1000, time_limit_s=2)
    assert res.spec is None and res.elapsed_s < 30


def test_hunt_spec_schedules_are_explicit_data() -> None:
    prop = parse_property("eventual converges")
    spec = hunt_spec(SMALL, prop, 5, [(100, 300, "crash", 1), (900, 200, "halves", 2)])
    assert spec.seed == 5 and spec.schedule is not None
    assert [s.f for s in spec.schedule] == ["crash", "restart", "partition", "heal"]


def test_hunt_cli_prints_the_replay_command(tmp_path: Path) -> None:
    base = tmp_path / "base.json"
    base.write_text(json.dumps({"time_limit_s": 2.0, "quiesce_ms": 500}))
    out = tmp_path / "found.json"
    p = subprocess.run([sys.executable, "-m", "selfhood", "hunt", "--property",
                        "eventual never forks", "--spec", str(base), "--max-examples", "10",
                        "--time-limit", "60", "--faults", "partition", "--out", str(out)],
                       capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path)
    assert p.returncode == 1, p.stderr
    assert f"replay: selfhood run --spec {out}" in p.stdout
    spec = load_spec(out)
    assert spec.modes == ("eventual",)
    replay = subprocess.run([sys.executable, "-m", "selfhood", "run", "--spec", str(out),
                             "--store", "st", "-q"], capture_output=True, text=True,
                            timeout=300, check=False, cwd=tmp_path)
    assert replay.returncode == 0, replay.stderr
    res = json.loads((tmp_path / "st" / "latest" / "results.json").read_text())
    assert res["modes"]["eventual"]["identity"]["forks"] > 0
    bad = subprocess.run([sys.executable, "-m", "selfhood", "hunt", "--max-examples", "0"],
                         capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path)
    assert bad.returncode == 64 and "Traceback" not in bad.stderr


def test_hunt_refuses_an_unwritable_out_before_searching(tmp_path: Path) -> None:
    """A counterexample must not be found and then lost: --out is checked first."""
    for out in (tmp_path / "missing" / "found.json", tmp_path):
        p = subprocess.run([sys.executable, "-m", "selfhood", "hunt", "--property",
                            "eventual never forks", "--max-examples", "5", "--out", str(out)],
                           capture_output=True, text=True, timeout=120, check=False,
                           cwd=tmp_path)
        assert p.returncode == 64, p.stderr
        assert "--out" in p.stderr and "Traceback" not in p.stderr
        assert "counterexample" not in p.stdout  # refused before the search
    nan = subprocess.run([sys.executable, "-m", "selfhood", "hunt", "--time-limit", "nan"],
                         capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path)
    assert nan.returncode == 64 and "--time-limit" in nan.stderr
