"""report.html, damaged results, sweeps, compare and `run` exit codes (no browser here)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from selfhood.chaos.expect import check_expectations, parse_expect, verdict_exit
from selfhood.chaos.sweep import parse_seeds
from selfhood.errors import SpecError
from selfhood.report.stats import mean_ci, welch


def selfhood(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "selfhood", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cwd = tmp_path_factory.mktemp("rep")
    p = selfhood("run", "-q", "--time-limit", "3", cwd=cwd)
    assert p.returncode == 0, p.stderr
    return (cwd / "store" / "latest").resolve()


def test_run_writes_a_self_contained_report(run_dir: Path) -> None:
    html = (run_dir / "report.html").read_text()
    # every plot per mode, the identity panel and each verdict's command
    for mode in ("sequential", "eventual"):
        section = html.split(f'id="mode-{mode}"', 1)[1]
        for plot in ("latency", "availability", "staleness"):
            assert f'class="plot {plot}"><svg' in section
        assert f'id="identity-{mode}"' in section
    assert "same instance: yes" in html.split('id="mode-sequential"', 1)[1]
    eventual = html.split('id="mode-eventual"', 1)[1]
    assert re.search(r"same instance: no: \d+ reordered reads \(forks\), first at i\d, "
                     r"t=\d+\.\d\d s, replica r\d", eventual)
    assert "First fork" in eventual and eventual.count('class="diverged"') >= 2
    results = json.loads((run_dir / "results.json").read_text())
    for c in results["modes"]["eventual"]["checks"]:
        assert c["command"].replace("store/latest/", "") in html
    # self-contained: no script, no external resource
    assert "<script" not in html
    assert not re.search(r'(src|href)="(https?:)?//', html)
    # a transactional cycle drawn with process, node and time on the transactions
    assert '<svg class="cycle"' in eventual
    assert re.search(r"T\d+ p\d+ r\d t=\d+\.\d{3}s", eventual)
    assert "expected: eventual does not promise this" in eventual


def test_report_rebuilds_html_and_md(run_dir: Path, tmp_path: Path) -> None:
    d = run_dir
    before = (d / "report.html").read_text()
    (d / "report.html").unlink()
    p = selfhood("report", str(d), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "same instance" in p.stdout
    after = (d / "report.html").read_text()
    # the same page; a failing check is re-checked under a time limit, so on a loaded
    # machine its witness list may differ: compare up to the first explained check
    cut = '<div class="check">'
    assert after.split(cut, 1)[0] == before.split(cut, 1)[0]
    assert after.count('<div class="plot ') == before.count('<div class="plot ') == 6


@pytest.mark.parametrize(("damage", "message"), [
    (lambda r: r.update(modes=[]), "modes: expected a non-empty object"),
    (lambda r: r["modes"]["eventual"].update(availability="high"),
     'modes.eventual.availability: expected a number in [0, 1], got "high"'),
    (lambda r: r["modes"]["sequential"]["latency_ms"].update(p50=None),
     "modes.sequential.latency_ms.p50: expected a number >= 0, got null"),
])
def test_damaged_results_name_the_field(run_dir: Path, tmp_path: Path, damage: Any,
                                        message: str) -> None:
    d = tmp_path / "damaged"
    shutil.copytree(run_dir, d)
    res = json.loads((d / "results.json").read_text())
    damage(res)
    (d / "results.json").write_text(json.dumps(res))
    p = selfhood("report", str(d), cwd=tmp_path)
    assert p.returncode == 65, p.stderr
    assert message in p.stderr and "Traceback" not in p.stderr
    assert p.stderr.count("\n") == 1


def _fork_history() -> list[dict[str, Any]]:
    """Two sessions see two different pasts of one instance; the turns are hostile text."""
    evil = "<script>window.__pwned = 1</script>"
    inst = "<img src=x onerror=alert(1)>"
    t = f"{inst}/transcript"
    ops: list[dict[str, Any]] = []

    def op(typ: str, p: int, value: Any, ms: int, node: str) -> None:
        ops.append({"index": len(ops), "time": ms * 1_000_000, "type": typ, "process": p,
                    "f": "txn", "value": value, "node": node, "instance": inst})

    op("invoke", 0, [["append", t, evil]], 1, "r0")
    op("ok", 0, [["append", t, evil]], 2, "r0")
    op("invoke", 1, [["append", t, "hello"]], 1, "r1")
    op("ok", 1, [["append", t, "hello"]], 2, "r1")
    op("invoke", 0, [["r", t, None]], 3, "r0")
    op("ok", 0, [["r", t, [evil, "hello"]]], 4, "r0")
    op("invoke", 1, [["r", t, None]], 5, "r1")
    op("ok", 1, [["r", t, ["hello", evil]]], 6, "r1")
    return ops


def test_hostile_text_renders_as_text(tmp_path: Path) -> None:
    from selfhood.report.html import write_report_html

    d = tmp_path / "run"
    (d / "eventual").mkdir(parents=True)
    (d / "eventual" / "history.jsonl").write_text(
        "".join(json.dumps(o) + "\n" for o in _fork_history()))
    mode = {"valid": True, "availability": 1.0, "latency_ms": {"p50": 1.0, "p99": 1.0},
            "anomalies": {}, "staleness": {"k_max": 0, "t_p99_ms": 0.0},
            "identity": {"instances": 1, "fingerprints_agree": 0, "forks": 1,
                         "forgotten_acks": 0, "revived_rules": 0, "torn_memory": 0,
                         "converged": False, "convergence_ms": None}, "checks": []}
    (d / "results.json").write_text(json.dumps(
        {"spec": {"name": "<i>x</i>"}, "seed": 1, "modes": {"eventual": mode}}))
    html = write_report_html(d).read_text()
    assert "<script" not in html and "<img" not in html and "<i>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html
    assert "same instance: no: 1 reordered reads (forks)" in html


def _modes(valid: Any, **ident: Any) -> dict[str, Any]:
    base = {"converged": True, "forks": 0, "forgotten_acks": 0, "revived_rules": 0,
            "torn_memory": 0}
    return {"valid": valid, "identity": {**base, **ident}}


def test_verdict_exit_and_expectations() -> None:
    ok = {"modes": {"sequential": _modes(True), "eventual": _modes(True, forks=3)}}
    bad = {"modes": {"sequential": _modes(False), "eventual": _modes("unknown")}}
    unk = {"modes": {"sequential": _modes(True), "eventual": _modes("unknown")}}
    assert verdict_exit([ok]) == 0
    assert verdict_exit([ok, bad]) == 1
    assert verdict_exit([ok, unk]) == 2
    modes = ("sequential", "eventual")
    e = parse_expect("sequential valid, eventual converges, eventual not same-instance", modes)
    assert check_expectations(e, [ok])[0] == 0
    assert check_expectations(e, [ok, bad])[0] == 1  # sequential invalid in one seed
    code, lines = check_expectations(parse_expect("eventual valid", modes), [ok, unk])
    assert code == 2 and "undecided" in lines[0]
    assert check_expectations(parse_expect("eventual forks", modes), [ok])[0] == 0
    assert check_expectations(parse_expect("eventual same-instance", modes), [ok])[0] == 1
    for text in ("linearizable valid", "sequential fine", "sequential", ""):
        with pytest.raises(SpecError, match="--expect"):
            parse_expect(text, modes)


def test_run_exit_codes(tmp_path: Path) -> None:
    """0 all promises kept, 1 one broken, 2 one unknown; --expect overrides; bad --expect 64."""
    quick = ("-q", "--time-limit", "1", "--store", str(tmp_path / "s"))
    assert selfhood("run", *quick, cwd=tmp_path).returncode == 0
    # non-atomic sharded memory under sequential: the promise breaks (expected, marked so)
    broken = ("--sharded-memory", "--no-atomic-memory", "--seed", "3", "--time-limit", "10",
              "--nemesis", "partition,pause,skew", "--modes", "sequential")
    p = selfhood("run", *quick, *broken, cwd=tmp_path)
    assert p.returncode == 1 and "sequential broke its promise" in p.stderr
    html = (tmp_path / "s" / "latest" / "report.html").read_text()
    assert "expected: sharded memory without atomic writes" in html
    assert selfhood("run", *quick, *broken, "--expect", "sequential invalid",
                    cwd=tmp_path).returncode == 0
    # probes only: no transaction committed, so the transactional verdicts are unknown
    spec = tmp_path / "probes.json"
    spec.write_text(json.dumps({"workload": {"conversation": 0, "memory": 0,
                                             "governance": 0, "probe": 1}}))
    p = selfhood("run", *quick, "--spec", str(spec), cwd=tmp_path)
    assert p.returncode == 2 and "unknown verdict" in p.stderr
    assert selfhood("run", *quick, "--spec", str(spec), "--expect", "sequential valid",
                    cwd=tmp_path).returncode == 2
    assert selfhood("run", *quick, "--expect", "sequential invalid",
                    cwd=tmp_path).returncode == 1
    p = selfhood("run", *quick, "--expect", "eventual happy", cwd=tmp_path)
    assert p.returncode == 64 and "unknown property 'happy'" in p.stderr


def test_parse_seeds() -> None:
    assert parse_seeds("1-3,7") == (1, 2, 3, 7)
    assert parse_seeds("-3,-1") == (-3, -1) and parse_seeds("-2--1") == (-2, -1)
    for bad, why in (("3-1", "runs backwards"), ("x", "not a seed"), ("1,1", "twice"),
                     ("1-5000", "at most"), ("", "not a seed")):
        with pytest.raises(SpecError, match=f"--seeds.*{why}"):
            parse_seeds(bad)


def test_mean_ci_and_welch() -> None:
    e = mean_ci([1.0, 2.0, 3.0, 4.0])
    # mean 2.5, sd 1.291, t(3) = 3.182: half-width 2.054
    assert e.mean == 2.5 and abs(e.half - 2.054) < 1e-3
    assert mean_ci([5.0]).half == 0 and mean_ci([5.0]).n == 1
    far = welch(mean_ci([0.0, 0.1, 0.2, 0.1]), mean_ci([1.0, 1.1, 0.9, 1.0]))
    assert far.differs and 0.8 < far.diff < 1.0
    near = welch(mean_ci([0.0, 1.0, 0.5, 0.2]), mean_ci([0.1, 0.9, 0.6, 0.3]))
    assert not near.differs


def test_sweep_prints_intervals_and_compares(tmp_path: Path) -> None:
    spec = tmp_path / "sweep.json"
    spec.write_text(json.dumps({"name": "sw", "seeds": [1, 2, 3], "time_limit_s": 1}))
    p = selfhood("run", "-q", "--spec", str(spec), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "3 seeds (1-3)" in p.stdout
    assert re.search(r"availability\s+[01]\.\d{3} ± \d\.\d{3}", p.stdout)
    sweep_dir = (tmp_path / "store" / "latest").resolve()
    sweep = json.loads((sweep_dir / "sweep.json").read_text())
    assert sweep["seeds"] == [1, 2, 3]
    for s in (1, 2, 3):
        assert (sweep_dir / f"seed-{s}" / "report.html").is_file()
        assert json.loads((sweep_dir / f"seed-{s}" / "spec.json").read_text())["seed"] == s
    assert (sweep_dir / "report.html").is_file() and (sweep_dir / "sweep.md").is_file()
    # seed 2 of the sweep is the same run as `--seed 2` alone
    one = selfhood("run", "-q", "--seed", "2", "--time-limit", "1", cwd=tmp_path)
    assert one.returncode == 0
    single = json.loads((tmp_path / "store" / "latest" / "results.json").read_text())
    assert sweep["runs"]["2"]["modes"]["eventual"]["availability"] == \
        single["modes"]["eventual"]["availability"]
    c = selfhood("compare", str(sweep_dir), str(tmp_path / "store" / "latest"), cwd=tmp_path)
    assert c.returncode == 0, c.stderr
    assert "availability" in c.stdout and "too few runs for an interval" in c.stdout
    assert selfhood("compare", str(sweep_dir), str(tmp_path / "nowhere"),
                    cwd=tmp_path).returncode == 65


def test_stuck_linearization_drawn_per_key(tmp_path: Path) -> None:
    """A register that reads a value overwritten before the read began: not linearizable.
    The report draws, per failing key, the longest partial linearization (Porcupine)."""
    from selfhood.report.html import write_report_html

    ops: list[dict[str, Any]] = []

    def op(typ: str, p: int, f: str, value: Any, ms: int) -> None:
        ops.append({"index": len(ops), "time": ms * 1_000_000, "type": typ, "process": p,
                    "f": f, "value": value, "node": "r0"})

    for n, key in enumerate(("i0/mem/tool/r0", "<i>k</i>")):
        t = 10 * n
        op("invoke", 0, "write", [key, 1], t)
        op("ok", 0, "write", [key, 1], t + 1)
        op("invoke", 1, "write", [key, 2], t + 2)
        op("ok", 1, "write", [key, 2], t + 3)
        op("invoke", 2, "read", [key, None], t + 4)
        op("ok", 2, "read", [key, 1], t + 5)
    ok_key = "i0/mem/tool/r1"
    op("invoke", 0, "write", [ok_key, 7], 26)
    op("ok", 0, "write", [ok_key, 7], 27)
    d = tmp_path / "run"
    (d / "linearizable").mkdir(parents=True)
    (d / "linearizable" / "register.jsonl").write_text(
        "".join(json.dumps(o) + "\n" for o in ops))
    check = {"file": "register.jsonl", "model": "register", "consistency": "linearizable",
             "purpose": "promise", "valid": False,
             "command": "selfhood check store/latest/linearizable/register.jsonl "
                        "--model register --consistency linearizable"}
    mode = {"valid": False, "availability": 1.0, "latency_ms": {"p50": 1.0, "p99": 1.0},
            "anomalies": {"nonlinearizable": 1}, "staleness": {"k_max": 0, "t_p99_ms": 0.0},
            "identity": {"instances": 1, "fingerprints_agree": 1, "converged": True,
                         "convergence_ms": 0.0}, "checks": [check]}
    (d / "results.json").write_text(json.dumps({"spec": {}, "seed": 1,
                                                "modes": {"linearizable": mode}}))
    html = write_report_html(d).read_text()
    assert html.count('<svg class="linearization"') == 2
    assert "key i0/mem/tool/r0: longest partial linearizable order places" in html
    assert "key &lt;i&gt;k&lt;/i&gt;" in html and "<i>k" not in html
    assert "i0/mem/tool/r1" not in html.split('class="check"', 1)[1].split("Reproduce", 1)[0]
    assert "selfhood check linearizable/register.jsonl --model register" in html


def test_report_rebuilds_a_sweep(tmp_path: Path) -> None:
    p = selfhood("run", "-q", "--seeds", "1-2", "--time-limit", "1", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    d = (tmp_path / "store" / "latest").resolve()
    (d / "report.html").unlink()
    (d / "sweep.md").unlink()
    r = selfhood("report", str(d), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert 'id="sweep-summary"' in (d / "report.html").read_text()
    assert "seeds 1, 2" in (d / "sweep.md").read_text()
