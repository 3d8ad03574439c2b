"""`selfhood run` end to end: the store contract, determinism, agreement with `selfhood check`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from selfhood.chaos.runner import split_history
from selfhood.checkers.formats import read_history

CONTRACT_MODE_KEYS = {"history_sha256", "ops", "valid", "availability", "latency_ms",
                      "anomalies", "staleness", "identity", "promise", "reference"}
IDENTITY_KEYS = {"instances", "fingerprints_agree", "forks", "forgotten_acks", "revived_rules",
                 "converged", "convergence_ms"}


def selfhood(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "selfhood", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float, str]:
    """`selfhood run` with no arguments, in a fresh directory (as on a fresh clone)."""
    cwd = tmp_path_factory.mktemp("fresh")
    t0 = time.monotonic()
    p = selfhood("run", cwd=cwd)
    elapsed = time.monotonic() - t0
    assert p.returncode == 0, p.stderr
    return cwd, elapsed, p.stdout + p.stderr


def test_default_run_is_quick_and_prints_the_table(default_run: tuple[Path, float, str]) -> None:
    _, elapsed, out = default_run
    assert elapsed < 60
    for col in ("avail", "p50 ms", "p99 ms", "anomalies", "stale", "converge", "identity"):
        assert col in out
    assert "\nsequential " in out and "\neventual " in out
    assert "[sequential]" in out  # progress


def test_store_layout_and_results_contract(default_run: tuple[Path, float, str]) -> None:
    cwd, _, _ = default_run
    latest = cwd / "store" / "latest"
    assert latest.is_symlink() and latest.resolve().parent.name == "default"
    for f in ("spec.json", "results.json", "report.md", "report.html"):
        assert (latest / f).is_file()
    # the reports were written before the run was published, for its published name
    shown = "/".join(latest.resolve().parts[-2:])
    for f in ("report.md", "report.html"):
        text = (latest / f).read_text()
        assert shown in text and ".partial" not in text, f
    res = json.loads((latest / "results.json").read_text())
    assert set(res) >= {"spec", "seed", "modes"} and res["seed"] == 1
    assert res["spec"] == json.loads((latest / "spec.json").read_text())
    assert set(res["modes"]) == {"sequential", "eventual"}
    for mode, m in res["modes"].items():
        for f in ("history", "list-append", "rw-register", "register", "governance"):
            assert (latest / mode / f"{f}.jsonl").is_file()
        assert set(m) >= CONTRACT_MODE_KEYS
        assert m["valid"] in (True, False, "unknown")
        assert 0 <= m["availability"] <= 1
        assert set(m["latency_ms"]) == {"p50", "p99"} and m["latency_ms"]["p50"] > 0
        assert set(m["staleness"]) == {"k_max", "t_p99_ms"}
        assert set(m["identity"]) >= IDENTITY_KEYS
        assert all(isinstance(n, int) and n > 0 for n in m["anomalies"].values())
        assert m["ops"] == len(read_history(latest / mode / "history.jsonl"))
    # the science in one row each: sequential clean, eventual shows anomalies
    assert res["modes"]["sequential"]["anomalies"] == {}
    assert res["modes"]["eventual"]["anomalies"]


def test_verdicts_agree_with_selfhood_check(default_run: tuple[Path, float, str]) -> None:
    cwd, _, _ = default_run
    res = json.loads((cwd / "store" / "latest" / "results.json").read_text())
    exit_of = {True: 0, False: 1, "unknown": 2}
    checked = 0
    for mode, m in res["modes"].items():
        assert m["checks"]
        for c in m["checks"]:
            argv = c["command"].split()
            assert argv[:2] == ["selfhood", "check"]
            p = selfhood(*argv[1:], "--json", cwd=cwd)
            assert p.returncode == exit_of[c["valid"]], (mode, c, p.stderr)
            out = json.loads(p.stdout)
            assert out["valid"] == c["valid"]
            assert sorted(out["anomaly_types"]) == c["anomalies"]
            checked += 1
        # `valid` is exactly the promise checks combined
        promise = [c["valid"] for c in m["checks"] if c["purpose"] == "promise"]
        expected = False if False in promise else "unknown" if "unknown" in promise else True
        assert m["valid"] == expected
        # and report.md lists every command
        report = (cwd / "store" / "latest" / "report.md").read_text()
        assert all(c["command"] in report for c in m["checks"])
    assert checked >= 10
    # eventual's promise is convergence plus the CRDT merge rules, on every derived history
    ev = {c["file"]: c for c in res["modes"]["eventual"]["checks"] if c["purpose"] == "promise"}
    assert set(ev) == {"list-append.jsonl", "rw-register.jsonl", "register.jsonl",
                       "governance.jsonl"}
    assert {c["consistency"] for c in ev.values()} == {"crdt"}
    assert ev["governance.jsonl"]["model"] == "set"
    # the default run's eventual mode keeps its promise (no crash lost an acknowledged write)
    assert res["modes"]["eventual"]["valid"] is True


def test_an_invalid_eventual_verdict_agrees_with_selfhood_check(tmp_path: Path) -> None:
    """No quiescence after the final heal: the final reads race the outboxes, so the
    replicas have not converged when they are read and eventual's promise (convergence
    plus the CRDT rules) is broken; `selfhood check` on the stored files says exactly the
    same. (A crash no longer breaks it: the eventual outbox is durable.)"""
    spec = tmp_path / "no-quiesce.json"
    spec.write_text(json.dumps({"modes": ["eventual"], "seed": 1, "time_limit_s": 2.0,
                                "nemesis": ["partition"], "quiesce_ms": 0}))
    p = selfhood("run", "--spec", str(spec), "-q", cwd=tmp_path)
    assert p.returncode == 1, p.stderr  # a mode broke its own promise: exit 1, like Jepsen
    assert "eventual broke its promise" in p.stderr
    m = json.loads((tmp_path / "store" / "latest" / "results.json").read_text())["modes"][
        "eventual"]
    assert m["valid"] is False and m["promise_anomalies"].get("divergent-final-reads", 0) > 0
    assert m["identity"]["converged"] is False
    crdt = [c for c in m["checks"] if c["consistency"] == "crdt"]
    assert len(crdt) == 4 and any(c["valid"] is False for c in crdt)
    for c in crdt:
        out = selfhood(*c["command"].split()[1:], "--json", cwd=tmp_path)
        assert out.returncode == {True: 0, False: 1, "unknown": 2}[c["valid"]], out.stderr
        assert sorted(json.loads(out.stdout)["anomaly_types"]) == c["anomalies"]
    assert "divergent-final-reads" in (tmp_path / "store" / "latest" / "report.md").read_text()


def test_same_seed_same_history_sha256(tmp_path: Path) -> None:
    shas: list[dict[str, Any]] = []
    for i in range(2):
        p = selfhood("run", "--seed", "7", "--time-limit", "2", "--store", str(tmp_path / f"s{i}"),
                     "-q", cwd=tmp_path)
        assert p.returncode == 0, p.stderr
        res = json.loads((tmp_path / f"s{i}" / "latest" / "results.json").read_text())
        shas.append({m: v["history_sha256"] for m, v in res["modes"].items()})
    assert shas[0] == shas[1]
    a = (tmp_path / "s0" / "latest" / "eventual" / "history.jsonl").read_bytes()
    b = (tmp_path / "s1" / "latest" / "eventual" / "history.jsonl").read_bytes()
    assert a == b
    p = selfhood("run", "--seed", "8", "--time-limit", "2", "--store", str(tmp_path / "s2"),
                 "-q", cwd=tmp_path)
    res = json.loads((tmp_path / "s2" / "latest" / "results.json").read_text())
    assert res["modes"]["sequential"]["history_sha256"] != shas[0]["sequential"]


def test_spec_file_and_replay(tmp_path: Path) -> None:
    spec = tmp_path / "exp.toml"
    spec.write_text('name = "tiny"\nseed = 3\nmodes = ["linearizable"]\ntime_limit_s = 1.5\n'
                    # partition and skew values are maps: their keys must replay in one order
                    'nemesis = ["pause", "halves", "skew"]\nnemesis_interval_ms = 300\n')
    p = selfhood("run", "--spec", str(spec), "--store", "st", "-q", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    latest = tmp_path / "st" / "latest"
    res = json.loads((latest / "results.json").read_text())
    assert list(res["modes"]) == ["linearizable"]
    assert res["modes"]["linearizable"]["promise"].startswith("strict-serializable")
    # spec.json (schedule made explicit) replays the same history
    p2 = selfhood("run", "--spec", str(latest / "spec.json"), "--store", "st2", "-q", cwd=tmp_path)
    assert p2.returncode == 0, p2.stderr
    res2 = json.loads((tmp_path / "st2" / "latest" / "results.json").read_text())
    assert (res2["modes"]["linearizable"]["history_sha256"]
            == res["modes"]["linearizable"]["history_sha256"])


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--concurrency", "0"], "concurrency"),
        (["--modes", "strong"], "--modes"),
        (["--router", "random"], "router"),
        (["--nemesis", "meteor"], "--nemesis"),
        (["--shards", "1", "--sharded-memory"], "sharded_memory"),
        (["--time-limit", "-1"], "time_limit_s"),
        (["--spec", "missing.json"], "cannot read spec"),
        (["--rate", "inf"], "rate"),
        (["--time-limit", "nan"], "time_limit_s"),
        (["--check-time-limit", "nan"], "--check-time-limit"),
        (["--name", ".."], "name"),
        (["--name", "a/b"], "name"),
    ],
)
def test_bad_options_exit_64_naming_the_field(tmp_path: Path, args: list[str],
                                              needle: str) -> None:
    p = selfhood("run", *args, cwd=tmp_path)
    assert p.returncode == 64, p.stderr
    assert needle in p.stderr
    assert "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").rglob("*.json"))


@pytest.mark.parametrize(
    ("step", "needle"),
    [
        ({"at_ms": 5, "f": "crash", "value": "r9"}, "schedule.0.value"),
        ({"at_ms": 5, "f": "pause", "value": {"r0": 1}}, "schedule.0.value"),
        ({"at_ms": 5, "f": "partition", "value": "halves"}, "schedule.0.value"),
        ({"at_ms": 5, "f": "partition", "value": {"pattern": "zigzag"}}, "schedule.0.value"),
        ({"at_ms": 5, "f": "partition", "value": {"groups": [["r0", "rX"]]}}, "schedule.0.value"),
        ({"at_ms": 5, "f": "skew", "value": {"r0": "soon"}}, "schedule.0.value"),
    ],
)
def test_bad_schedule_values_exit_64_in_one_line(tmp_path: Path, step: dict[str, Any],
                                                 needle: str) -> None:
    spec = tmp_path / "s.json"
    spec.write_text(json.dumps({"time_limit_s": 1.0, "schedule": [step]}))
    p = selfhood("run", "--spec", str(spec), "-q", cwd=tmp_path)
    assert p.returncode == 64, p.stderr
    assert needle in p.stderr and "s.json" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_an_unwritable_store_is_refused_before_the_run(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("not a directory")
    p = selfhood("run", "--store", "afile/store", "--time-limit", "1", cwd=tmp_path)
    assert p.returncode == 64, p.stderr
    assert "--store" in p.stderr and "Traceback" not in p.stderr
    assert "[sequential]" not in p.stderr  # refused before any mode ran


def test_a_stored_partition_run_replays_to_the_identical_hash(tmp_path: Path) -> None:
    """Nemesis values (partition groups, skew offsets) replay in the same key order."""
    from selfhood.chaos.runner import history_sha256, run_experiment, simulate_mode
    from selfhood.spec import DEFAULT_SPEC, dumps, load_spec, with_overrides

    spec = with_overrides(DEFAULT_SPEC, modes=("eventual",), time_limit_s=2.0,
                          nemesis=("partition", "skew"), quiesce_ms=200)
    exp = run_experiment(spec, check_time_limit_s=5)
    stored = tmp_path / "spec.json"
    stored.write_text(dumps(exp.spec))
    replayed = load_spec(stored)
    assert replayed == exp.spec  # the stored spec is canonical: it reads back equal
    assert any(s.f == "partition" for s in replayed.schedule or ())
    original = exp.results["modes"]["eventual"]["history_sha256"]
    assert history_sha256(simulate_mode(replayed, "eventual").history)[1] == original


def test_report_rebuilds_from_the_store(default_run: tuple[Path, float, str]) -> None:
    cwd, _, _ = default_run
    report = cwd / "store" / "latest" / "report.md"
    before = report.read_text()
    report.unlink()
    p = selfhood("report", "store/latest", cwd=cwd)
    assert p.returncode == 0, p.stderr
    assert report.read_text() == before
    assert "sequential" in p.stdout
    bad = selfhood("report", "nowhere", cwd=cwd)
    assert bad.returncode == 65 and "Traceback" not in bad.stderr


def test_split_history_partitions_txn_micro_ops(default_run: tuple[Path, float, str]) -> None:
    cwd, _, _ = default_run
    h = read_history(cwd / "store" / "latest" / "eventual" / "history.jsonl")
    parts = split_history(h)
    keys = {name: {m[1] for o in ops if o.f == "txn" for m in o.value}
            for name, ops in parts.items() if name != "register"}
    assert all(k.endswith(("/transcript", "/cases")) for k in keys["list-append"])
    assert all("/mem/" in k and "/mem/tool/r" not in k for k in keys["rw-register"])
    assert {o.f for o in parts["register"] if o.process != "nemesis"} <= {"read", "write"}
    n_mops = sum(len(o.value) for o in h if o.f == "txn" and o.type == "invoke")
    n_split = sum(len(o.value) for name in ("list-append", "rw-register")
                  for o in parts[name] if o.f == "txn" and o.type == "invoke")
    n_reg = sum(1 for o in parts["register"] if o.type == "invoke" and o.process != "nemesis"
                and not o.extra.get("final"))
    assert n_mops == n_split + n_reg
    # final reads: one per single register and one governance read per final-read op
    n_final = sum(1 for o in h if o.f == "final-read" and o.type == "invoke")
    assert sum(1 for o in parts["register"] if o.type == "invoke" and o.extra.get("final")
               ) == 2 * n_final
    gov = [o for o in parts["governance"] if o.process != "nemesis"]
    assert {o.f for o in gov} == {"add", "remove", "read"}
    assert sum(1 for o in gov if o.type == "invoke" and o.extra.get("final")) == n_final
    n_rule_ops = sum(1 for o in h if o.f in ("add-rule", "revoke-rule", "read-rules"))
    assert len(gov) == n_rule_ops + 2 * n_final


def test_split_history_keeps_concurrent_final_reads_concurrent() -> None:
    """Two final reads that overlap stay overlapping in the derived txn histories: each
    invoke where it happened, not moved down to just before its completion (that would
    claim a real-time order the run never had, which strict-serializable checks use)."""
    from selfhood.checkers.history import Op

    view = {"transcript": [1], "cases": [], "memory": {"subtask/a": 3}}
    h = [Op(0, "invoke", 0, "final-read", None, 10, "r0", "i0"),
         Op(1, "invoke", 1, "final-read", None, 20, "r1", "i0"),
         Op(2, "ok", 0, "final-read", view, 30, "r0", "i0"),
         Op(3, "ok", 1, "final-read", view, 40, "r1", "i0")]
    for name in ("list-append", "rw-register"):
        got = [(o.type, o.process, o.time) for o in split_history(h)[name]]
        assert got == [("invoke", 0, 10), ("invoke", 1, 20), ("ok", 0, 30), ("ok", 1, 40)], name


def test_derived_txn_histories_keep_real_time_order(default_run: tuple[Path, float, str]
                                                    ) -> None:
    """Every derived history lists ops in the run's time order, as history.jsonl does."""
    cwd, _, _ = default_run
    for mode in ("sequential", "eventual"):
        h = read_history(cwd / "store" / "latest" / mode / "history.jsonl")
        times = [o.time for o in h if o.time is not None]
        assert times == sorted(times)
        for name, ops in split_history(h).items():
            times = [o.time for o in ops if o.time is not None]
            assert times == sorted(times), (mode, name)
