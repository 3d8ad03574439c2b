"""`selfhood check`: the issue's exact contract (flags, exit codes, --json keys) and the
peer verdicts, read in place from ../shared/peers."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from selfhood.checkers.formats import ops_to_jsonl
from selfhood.checkers.history import Op
from selfhood.cli import main

PEERS = Path(__file__).resolve().parents[2] / "shared" / "peers"
PORCUPINE = PEERS / "porcupine"
ELLE = PEERS / "elle"
JSON_KEYS = {"valid", "model", "consistency", "anomaly_types", "anomalies", "not", "ops",
             "elapsed_s"}

needs_peers = pytest.mark.skipif(not PEERS.is_dir(), reason="../shared/peers not present")


def _txn_available() -> bool:
    for name in ("selfhood.checkers.txn", "selfhood.checkers.elle.txn", "selfhood.checkers.elle"):
        try:
            if hasattr(importlib.import_module(name), "check_txn"):
                return True
        except ModuleNotFoundError:
            continue
    return False


needs_txn = pytest.mark.skipif(not _txn_available(), reason="check_txn not built yet")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(["check", *argv])
    out, err = capsys.readouterr()
    code = exc.value.code
    return (code if isinstance(code, int) else 1), out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code, out, err = run(capsys, *argv, "--json")
    lines = out.strip().splitlines()
    assert len(lines) == 1, (out, err)
    obj = json.loads(lines[0])
    assert set(obj) == JSON_KEYS
    return code, obj


def write_history(tmp_path: Path, ops: list[Op], name: str = "h.jsonl") -> str:
    p = tmp_path / name
    p.write_text(ops_to_jsonl(ops), encoding="utf-8")
    return str(p)


def pairs(*specs: tuple[Any, str, Any, str, Any]) -> list[Op]:
    ops: list[Op] = []
    for p, f, inv, typ, comp in specs:
        ops.append(Op(len(ops), "invoke", p, f, inv, time=len(ops) * 1000))
        ops.append(Op(len(ops), typ, p, f, comp, time=len(ops) * 1000))  # type: ignore[arg-type]
    return ops


# --- peer verdicts -------------------------------------------------------------------


def _expected() -> list[tuple[str, bool]]:
    rows = (PORCUPINE / "expected.tsv").read_text().splitlines()[1:]
    return [(f, v == "true") for f, v in (r.split("\t") for r in rows if r.strip())]


@needs_peers
def test_all_108_porcupine_verdicts(capsys: pytest.CaptureFixture[str]) -> None:
    expected = _expected()
    assert len(expected) == 108
    wrong = []
    for name, ok in expected:
        if name.startswith("kv/"):
            args = [str(PORCUPINE / name), "--model", "kv"]
        else:
            args = [str(PORCUPINE / name), "--model", "cas-register", "--format", "jepsen-log"]
        code, obj = run_json(capsys, *args)
        if code != (0 if ok else 1) or obj["valid"] is not ok:
            wrong.append((name, code, obj["valid"]))
        if not ok:
            assert obj["anomaly_types"] == ["nonlinearizable"] and "linearizable" in obj["not"]
    assert wrong == []


@needs_peers
@needs_txn
@pytest.mark.parametrize("consistency", ["serializable", "repeatable-read"])
def test_si_without_g_single_invalid(capsys: pytest.CaptureFixture[str],
                                     consistency: str) -> None:
    code, obj = run_json(capsys, str(ELLE / "si-without-g-single.edn"), "--model",
                         "list-append", "--consistency", consistency)
    assert code == 1 and obj["valid"] is False
    assert obj["anomaly_types"] == ["G2-item"]
    assert obj["consistency"] == [consistency]
    assert obj["anomalies"]["G2-item"]


@needs_peers
@needs_txn
def test_si_without_g_single_valid_under_si(capsys: pytest.CaptureFixture[str]) -> None:
    code, obj = run_json(capsys, str(ELLE / "si-without-g-single.edn"), "--model",
                         "list-append", "--consistency", "snapshot-isolation")
    assert code == 0 and obj["valid"] is True and obj["ops"] > 0


@needs_peers
@needs_txn
def test_huge_scc_invalid_within_limit(capsys: pytest.CaptureFixture[str]) -> None:
    code, obj = run_json(capsys, str(ELLE / "huge-scc.edn"), "--model", "list-append",
                         "--time-limit", "60")
    assert code == 1 and obj["valid"] is False
    assert obj["anomaly_types"]
    assert obj["elapsed_s"] < 120


# --- contract: exit codes and output --------------------------------------------------


@needs_peers
def test_unknown_exit_2_on_time_limit(capsys: pytest.CaptureFixture[str]) -> None:
    code, obj = run_json(capsys, str(PORCUPINE / "kv" / "c50-ok.txt"), "--model", "kv",
                         "--time-limit", "0.000001")
    assert code == 2 and obj["valid"] == "unknown"


@needs_peers
def test_human_output_explains(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, str(PORCUPINE / "jepsen" / "etcd_000.log"), "--model",
                       "cas-register", "--format", "jepsen-log")
    assert code == 1
    first, *rest = out.splitlines()
    assert first.startswith("INVALID: ") and "linearizable" in first
    assert any(line.strip().startswith("nonlinearizable (") for line in rest)
    assert any("ruled out: linearizable" in line for line in rest)


def test_human_output_names_model_checks(capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    """Models without a consistency model say whose checks ran, not a generic label."""
    empty = tmp_path / "empty.edn"
    empty.write_text("")
    code, out, _ = run(capsys, str(empty), "--model", "counter")
    assert code == 2
    assert "under the counter model's checks" in out.splitlines()[0]


def test_kafka_model(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    good = pairs((0, "send", ["x", 1], "ok", ["x", [0, 1]]),
                 (1, "poll", None, "ok", {"x": [[0, 1]]}))
    code, obj = run_json(capsys, write_history(tmp_path, good), "--model", "kafka")
    assert code == 0 and obj["valid"] is True and obj["consistency"] == [] and obj["ops"] == 4
    lost = pairs((0, "send", ["x", 1], "ok", ["x", [0, 1]]),
                 (0, "send", ["x", 2], "ok", ["x", [1, 2]]),
                 (1, "poll", None, "ok", {"x": [[1, 2]]}))
    code, obj = run_json(capsys, write_history(tmp_path, lost), "--model", "kafka")
    assert code == 1 and obj["anomaly_types"] == ["lost-write", "unseen"]


def test_register_and_session_names(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    ops = pairs((0, "write", 1, "ok", 1), (0, "read", None, "ok", None))
    path = write_history(tmp_path, ops)
    code, obj = run_json(capsys, path, "--model", "register")
    assert code == 1 and obj["consistency"] == ["linearizable"]
    code, obj = run_json(capsys, path, "--model", "register", "--consistency", "sequential",
                         "--consistency", "read-your-writes")
    assert code == 1
    assert obj["consistency"] == ["sequential", "read-your-writes"]
    assert "read-your-writes" in obj["anomaly_types"]
    assert {"sequential", "linearizable", "read-your-writes"} <= set(obj["not"])


def test_usage_errors_exit_64(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = write_history(tmp_path, pairs((0, "write", 1, "ok", 1)))
    for argv in (
        [path],                                                       # --model missing
        [path, "--model", "nope"],
        [path, "--model", "register", "--consistency", "serializable"],
        [path, "--model", "register", "--consistency", "bogus"],
        [path, "--model", "kafka", "--consistency", "linearizable"],
        [path, "--model", "register", "--time-limit", "-1"],
        [path, "--model", "register", "--format", "xml"],
    ):
        code, _, err = run(capsys, *argv)
        assert code == 64, argv
        assert "Traceback" not in err and err.strip()


def test_unreadable_or_malformed_exit_65(capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    code, _, err = run(capsys, str(tmp_path / "missing.jsonl"), "--model", "register")
    assert code == 65 and "missing.jsonl" in err
    bad = tmp_path / "bad.jsonl"
    good_line = ops_to_jsonl(pairs((0, "write", 1, "ok", 1))).splitlines()[0]
    bad.write_text(f"{good_line}\n{good_line}\n{{\"type\": \"ok\", \"process\": \n")
    code, _, err = run(capsys, str(bad), "--model", "register", "--format", "jsonl")
    assert code == 65 and ":3:" in err and "Traceback" not in err
    edn = tmp_path / "bad.edn"
    edn.write_text('{:type :invoke, :f :read, :process 0}\n{:type :ok, :f [:read\n')
    code, _, err = run(capsys, str(edn), "--model", "register", "--format", "edn")
    assert code == 65 and "Traceback" not in err


def test_real_process_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json at all\n")
    proc = subprocess.run([sys.executable, "-m", "selfhood", "check", str(bad), "--model",
                           "register"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 65
    assert "Traceback" not in proc.stderr and ":1:" in proc.stderr


# --- the Python entry point -----------------------------------------------------------


def test_check_history_dispatch_and_defaults() -> None:
    from selfhood.checkers.api import check_history, resolve_consistency
    from selfhood.errors import SpecError

    assert resolve_consistency("list-append", None) == ["strict-serializable"]
    assert resolve_consistency("kv", None) == ["linearizable"]
    assert resolve_consistency("kafka", None) == []
    assert resolve_consistency("set", "sequential") == ["sequential"]
    for model, c in (("register", "snapshot-isolation"), ("kafka", "read-your-writes"),
                     ("cas-register", "causal"), ("nope", None)):
        with pytest.raises(SpecError):
            resolve_consistency(model, c)

    # a stale read by another process: sequential, not linearizable; no session violation
    ops = pairs((0, "write", 1, "ok", 1), (1, "read", None, "ok", None))
    r = check_history(ops, model="register", consistency=["linearizable", "sequential",
                                                          "monotonic-reads"])
    assert r.valid is False
    assert r.anomaly_types == ["nonlinearizable"]
    assert r.details["consistency"] == ["linearizable", "sequential", "monotonic-reads"]
    assert check_history(ops, model="register", consistency="sequential").valid is True


def test_check_history_convergence_and_txn(tmp_path: Path) -> None:
    from selfhood.checkers.api import check_history

    txns = pairs((0, "txn", [["append", "x", 1]], "ok", [["append", "x", 1]]),
                 (1, "txn", [["r", "x", None]], "ok", [["r", "x", [1]]]))
    assert check_history(txns, model="list-append").valid is True
    n = len(txns)
    finals = [
        *txns,
        Op(n, "invoke", 5, "final-read", None, time=10_000, node="n1"),
        Op(n + 1, "ok", 5, "final-read", {"x": [1]}, time=10_001, node="n1"),
        Op(n + 2, "invoke", 6, "final-read", None, time=10_002, node="n2"),
        Op(n + 3, "ok", 6, "final-read", {"x": []}, time=10_003, node="n2"),
    ]
    r = check_history(finals, model="list-append", consistency=["convergence"])
    assert r.valid is False and r.anomaly_types == ["divergent-final-reads"]
