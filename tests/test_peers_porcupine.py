"""Every one of Porcupine's 108 published verdicts, reproduced from the files in place.

etcd logs are single cas-registers read with the Jepsen log reader; the kv
files are Jepsen EDN read with the EDN reader and checked as kv (partitioned
by key). Linearizability implies sequential consistency, so a linearizable
history must never be judged non-sequential either, and the sequential
search must decide every one of these histories within its limit.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from selfhood.checkers.formats import read_history
from selfhood.checkers.linear import check_linearizable

PEERS = Path(__file__).resolve().parents[2] / "shared" / "peers" / "porcupine"


def _expected() -> list[tuple[str, bool]]:
    table = PEERS / "expected.tsv"
    if not table.exists():
        return []
    rows = []
    for line in table.read_text().splitlines()[1:]:
        name, verdict = line.split("\t")
        rows.append((name, verdict.strip() == "true"))
    return rows


EXPECTED = _expected()


def test_all_108_verdicts_are_present() -> None:
    assert len(EXPECTED) == 108, f"peer histories missing under {PEERS}"
    assert sum(v for _, v in EXPECTED) == 26


@pytest.mark.parametrize(("name", "linearizable"), EXPECTED, ids=[n for n, _ in EXPECTED])
def test_porcupine_verdict(name: str, linearizable: bool) -> None:
    if name.startswith("kv/"):
        ops = read_history(PEERS / name, "edn")
        model = "kv"
    else:
        ops = read_history(PEERS / name, "jepsen-log")
        model = "cas-register"
    assert ops, f"no ops read from {name}"
    result = check_linearizable(ops, model, time_limit_s=60)
    assert result.valid is linearizable, result.anomalies
    if linearizable:
        assert result.anomalies == {}
        assert result.not_ == set()
    else:
        assert result.anomaly_types == ["nonlinearizable"]
        assert result.not_ == {"linearizable"}
        stuck = result.details["linearizable"]["stuck"]
        assert stuck["pending"], "a failing verdict must name the ops that could not go next"
        assert stuck["linearized"] < stuck["of"]


@pytest.mark.parametrize(("name", "linearizable"), EXPECTED, ids=[n for n, _ in EXPECTED])
def test_sequential_consistency_is_decided(name: str, linearizable: bool) -> None:
    """Linearizable implies sequential; every peer history is decided, not left unknown."""
    kv = name.startswith("kv/")
    ops = read_history(PEERS / name, "edn" if kv else "jepsen-log")
    result = check_linearizable(ops, "kv" if kv else "cas-register",
                                consistency="sequential", time_limit_s=30)
    assert result.valid != "unknown", result.unknown_reasons
    if linearizable:
        assert result.valid is True, result.anomalies
    if result.valid is False:
        assert result.anomaly_types == ["nonsequential"]
        assert result.not_ == {"sequential", "linearizable"}
        assert result.details["sequential"]["stuck"]["pending"]
