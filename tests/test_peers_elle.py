"""Elle's own histories (../shared/peers/elle, read in place) give Elle's verdicts."""

from __future__ import annotations

import time
from itertools import pairwise
from pathlib import Path

import pytest

from selfhood.checkers.edn import read_edn_ops
from selfhood.checkers.history import Op
from selfhood.checkers.txn import check_txn, classify_cycle

ELLE = Path(__file__).resolve().parents[2] / "shared" / "peers" / "elle"


def _ops(name: str) -> list[Op]:
    path = ELLE / name
    return read_edn_ops(path.read_text(), path=str(path))


@pytest.mark.parametrize("model", ["serializable", "repeatable-read"])
def test_si_without_g_single_is_g2_item_under_serializable_and_repeatable_read(
        model: str) -> None:
    r = check_txn(_ops("si-without-g-single.edn"), workload="list-append", consistency=[model])
    assert r.valid is False
    assert r.anomaly_types == ["G2-item"]
    assert r.not_ == {"repeatable-read"}
    assert "serializable" in r.details["also_not"]
    # the cycle is T3 <-rw-> T4 on keys 9 and 6, as the file's comments say
    text = r.anomalies["G2-item"][0]
    assert "T31" in text and "T41" in text and "-rw->" in text


def test_si_without_g_single_is_valid_under_snapshot_isolation() -> None:
    ops = _ops("si-without-g-single.edn")
    r = check_txn(ops, workload="list-append", consistency=["snapshot-isolation"])
    assert r.valid is True and r.anomalies == {}
    both = check_txn(ops, workload="list-append",
                     consistency=["snapshot-isolation", "repeatable-read"])
    assert both.valid is False and both.anomaly_types == ["G2-item"]
    assert both.not_ == {"repeatable-read"}


def test_paper_example_tolerates_missing_keys_and_is_not_serializable() -> None:
    ops = _ops("paper-example.edn")
    assert all(o.process is None and o.f is None for o in ops)
    r = check_txn(ops, workload="list-append", consistency=["serializable"])
    assert r.valid is False
    assert "G-single-item" in r.anomaly_types
    assert "T5 read key 255 = [2 3 4 5 8], whose last element T3 appended" in \
        r.anomalies["G-single-item"][0]


def test_huge_scc_is_invalid_with_a_real_named_cycle_within_its_limit() -> None:
    ops = _ops("huge-scc.edn")
    limit = 60.0
    t0 = time.monotonic()
    r = check_txn(ops, workload="list-append", time_limit_s=limit)
    elapsed = time.monotonic() - t0
    assert elapsed < limit + 5
    assert r.valid is False
    assert any(a.endswith("-realtime") for a in r.anomaly_types), r.anomaly_types
    assert "G2-item-realtime" in r.anomaly_types
    # every reported cycle is a real closed path whose class matches its name
    for name, cycles in r.details["cycles"].items():
        for cycle in cycles:
            assert cycle[0]["from"] == cycle[-1]["to"]
            for a, b in pairwise(cycle):
                assert a["to"] == b["from"]
            froms = [step["from"] for step in cycle]
            assert len(froms) == len(set(froms))  # simple
            rels = {"ww": 1, "wr": 2, "rw": 4, "process": 8, "realtime": 16}
            steps = [(0, 0, rels[step["rel"]]) for step in cycle]
            assert classify_cycle(steps) == name
    # the SCC really is huge: one component over most transactions
    assert max(r.details["sccs"]) > 1000
