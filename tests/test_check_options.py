"""`selfhood check` model options and Elle's key-order flags, end to end: defaults per
format, Knossos files unmodified, refusals for options a model does not read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from selfhood.checkers.api import KeyOrder, check_history
from selfhood.checkers.formats import ops_to_jsonl, write_edn
from selfhood.checkers.history import Op
from selfhood.cli import main

SUITE = Path(__file__).resolve().parents[2] / "shared" / "peers" / "suite"
KNOSSOS_GOOD = SUITE / "knossos" / "orig" / "cas-register" / "good" / "memstress3-54.edn"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any], str]:
    with pytest.raises(SystemExit) as exc:
        main(["check", *argv])
    out, err = capsys.readouterr()
    code = exc.value.code if isinstance(exc.value.code, int) else 1
    return code, (json.loads(out) if out.strip() else {}), err


def failed_cas() -> list[Op]:
    """The register holds 0; a cas 0 -> 1 fails without an error."""
    rows = [(0, "invoke", "write", 0), (0, "ok", "write", 0),
            (1, "invoke", "cas", [0, 1]), (1, "fail", "cas", [0, 1])]
    return [Op(i, t, p, f, v) for i, (p, t, f, v) in enumerate(rows)]  # type: ignore[arg-type]


def test_fail_rule_default_depends_on_the_format(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    jl = tmp_path / "h.jsonl"
    jl.write_text(ops_to_jsonl(failed_cas()))
    edn = tmp_path / "h.edn"
    write_edn(failed_cas(), edn)
    assert run(capsys, str(jl), "--model", "cas-register", "--json")[0] == 1  # observe
    assert run(capsys, str(edn), "--model", "cas-register", "--json")[0] == 0  # drop
    assert run(capsys, str(edn), "--model", "cas-register", "--fail", "observe",
               "--json")[0] == 1
    assert run(capsys, str(jl), "--model", "cas-register", "--fail", "drop", "--json")[0] == 0
    assert run(capsys, str(jl), "--model", "cas-register", "--format", "edn", "--json")[0] == 65


@pytest.mark.skipif(not KNOSSOS_GOOD.is_file(), reason="peer suite not present")
def test_unmodified_knossos_file_through_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    f = str(KNOSSOS_GOOD)
    assert run(capsys, f, "--model", "cas-register", "--json")[0] == 0
    assert run(capsys, f, "--model", "cas-register", "--initial-value", "0", "--nil-read", "any",
               "--json")[0] == 0
    assert run(capsys, f, "--model", "cas-register", "--fail", "observe", "--json")[0] == 1


@pytest.mark.parametrize(("argv", "needle"), [
    (["--model", "list-append", "--wfr-keys"], "rw-register"),
    (["--model", "kafka", "--initial-value", "0"], "--initial-value"),
    (["--model", "kv", "--nil-read", "any"], "--nil-read"),
    (["--model", "register", "--initial-value", "{0"], "--initial-value"),
    (["--model", "list-append", "--consistency", "view-serializable"], "prohibits no anomaly"),
    (["--model", "list-append", "--consistency", "linearizable"], "single-object"),
    (["--model", "counter", "--consistency", "linearizable"], "makes no sense"),
    (["--model", "mutex", "--consistency", "monotonic-reads"], "defined for"),
])
def test_options_a_model_does_not_read_are_usage_errors(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
        needle: str) -> None:
    h = tmp_path / "h.jsonl"
    h.write_text(ops_to_jsonl(failed_cas()))
    code, _, err = run(capsys, str(h), *argv)
    assert code == 64 and needle in err and "Traceback" not in err


def test_strong_session_snapshot_isolation_and_other_lattice_models_are_checked(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a lost update on x: both txns read 0... as list-append: both read [] then append
    rows = [(0, "invoke", "txn", [["r", "x", None], ["append", "x", 1]]),
            (1, "invoke", "txn", [["r", "x", None], ["append", "x", 2]]),
            (0, "ok", "txn", [["r", "x", []], ["append", "x", 1]]),
            (1, "ok", "txn", [["r", "x", []], ["append", "x", 2]]),
            (2, "invoke", "txn", [["r", "x", None]]), (2, "ok", "txn", [["r", "x", [1, 2]]])]
    ops = [Op(i, t, p, f, v) for i, (p, t, f, v) in enumerate(rows)]  # type: ignore[arg-type]
    h = tmp_path / "h.jsonl"
    h.write_text(ops_to_jsonl(ops))
    for c, want in [("strong-session-snapshot-isolation", 1), ("snapshot-isolation", 1),
                    ("cursor-stability", 1), ("read-committed", 0), ("PL-2", 0),
                    ("update-atomic", 1)]:
        code, out, err = run(capsys, str(h), "--model", "list-append", "--consistency", c,
                             "--json")
        assert code == want, (c, out, err)


def wfr_history() -> list[Op]:
    """T1 read x=1 then wrote x=2 and y=1; T2 read x=1 and y=1. With writes following
    reads, 1 precedes 2 on x, so T2 -rw-> T1 -wr-> T2 is a cycle."""
    rows = [(0, [["w", "x", 1]], [["w", "x", 1]]),
            (1, [["r", "x", None], ["w", "x", 2], ["w", "y", 1]],
             [["r", "x", 1], ["w", "x", 2], ["w", "y", 1]]),
            (2, [["r", "x", None], ["r", "y", None]], [["r", "x", 1], ["r", "y", 1]])]
    ops: list[Op] = []
    for p, inv, ok in rows:
        ops += [Op(len(ops), "invoke", p, "txn", inv), Op(len(ops) + 1, "ok", p, "txn", ok)]
    return ops


def test_key_order_flags_reach_the_rw_register_checker(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ops = wfr_history()
    assert check_history(ops, model="rw-register", consistency="serializable").valid is True
    r = check_history(ops, model="rw-register", consistency="serializable",
                      key_order=KeyOrder(wfr_keys=True))
    assert r.valid is False and r.anomaly_types == ["G-single-item"]
    h = tmp_path / "h.jsonl"
    h.write_text(ops_to_jsonl(ops))
    assert run(capsys, str(h), "--model", "rw-register", "--consistency", "serializable",
               "--json")[0] == 0
    code, out, _ = run(capsys, str(h), "--model", "rw-register", "--consistency",
                       "serializable", "--wfr-keys", "--json")
    assert code == 1 and out["anomaly_types"] == ["G-single-item"]
    assert run(capsys, str(h), "--model", "rw-register", "--consistency", "serializable",
               "--linearizable-keys", "--json")[0] == 1


def test_composed_results_keep_each_checker_apart() -> None:
    """Like Jepsen's checker/compose: each checker's details and verdict under its name;
    the transactional checker's own "consistency" no longer overwrites (or is
    overwritten by) the composed one."""
    ops = wfr_history()
    r = check_history(ops, model="rw-register",
                      consistency=["serializable", "read-your-writes", "convergence"])
    assert r.details["consistency"] == ["serializable", "read-your-writes", "convergence"]
    assert r.details["elle"]["consistency"] == ["serializable"]
    assert r.details["elle"]["valid"] is True and "cycles" in r.details["elle"]
    assert r.details["session"]["valid"] is True and "reads_checked" in r.details["session"]
    assert "convergence" in r.details
    lin = check_history([Op(0, "invoke", 0, "read", None), Op(1, "ok", 0, "read", 3)],
                        model="register", consistency=["linearizable", "sequential"])
    assert lin.valid is False
    assert lin.details["linearizable"]["valid"] is False
    assert lin.details["sequential"]["valid"] is False
    assert lin.details["linearizable"]["stuck"]["linearized"] == 0
