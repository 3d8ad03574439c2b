"""Elle-class checker: one hand-built history per anomaly class, valid histories, properties."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from selfhood.checkers.elle import models as cm
from selfhood.checkers.history import Op
from selfhood.checkers.oracle import brute_serializable
from selfhood.checkers.txn import check_txn
from selfhood.errors import HistoryError, SpecError
from selfhood.strategies import histories

Txn = list[list[Any]]


class H:
    """A tiny history builder: explicit invokes/completions, or whole serial txns."""

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self.open: dict[Any, Txn] = {}

    def invoke(self, p: Any, value: Txn) -> H:
        inv = [[f, k, None if f == "r" else v] for f, k, v in value]
        self.ops.append(Op(len(self.ops), "invoke", p, "txn", inv, time=len(self.ops)))
        self.open[p] = value
        return self

    def done(self, p: Any, typ: str = "ok", value: Txn | None = None) -> H:
        v = self.open.pop(p) if value is None else value
        self.ops.append(Op(len(self.ops), typ, p, "txn", v, time=len(self.ops)))  # type: ignore[arg-type]
        return self

    def txn(self, p: Any, value: Txn, typ: str = "ok") -> H:
        return self.invoke(p, value).done(p, typ)

    def concurrent(self, *txns: tuple[Any, Txn]) -> H:
        """All invoked, then all completed ok: no realtime order between them."""
        for p, v in txns:
            self.invoke(p, v)
        for p, _ in txns:
            self.done(p)
        return self


def la(h: H, *models: str, **kw: Any) -> Any:
    return check_txn(h.ops, workload="list-append", consistency=models or ("serializable",),
                     **kw)


def rr(h: H, *models: str, **kw: Any) -> Any:
    return check_txn(h.ops, workload="rw-register", consistency=models or ("serializable",),
                     **kw)


# --- models ----------------------------------------------------------------------


def test_model_tables_follow_elle() -> None:
    si = cm.prohibited_anomalies(["snapshot-isolation"])
    assert {"G-single-item", "G-nonadjacent-item", "G0", "G1c", "G1a", "internal"} <= si
    assert "G2-item" not in si
    rr_ = cm.prohibited_anomalies(["repeatable-read"])
    assert {"G2-item", "G-single-item", "lost-update", "G1b"} <= rr_
    assert "G2-item-realtime" not in cm.prohibited_anomalies(["serializable"])
    assert "G2-item-realtime" in cm.prohibited_anomalies(["strict-serializable"])
    assert "G-single-item-process" in cm.prohibited_anomalies(["strong-session-serializable"])
    assert "G0" not in cm.prohibited_anomalies(["linearizable"])
    ru = cm.prohibited_anomalies(["read-uncommitted"])
    assert "G0" in ru and "G1a" not in ru and "G1c" not in ru
    rc = cm.prohibited_anomalies(["read-committed"])
    assert {"G1a", "G1b", "G1c"} <= rc and "G-single-item" not in rc
    assert cm.weakest_models(cm.impossible_models(["G2-item"])) == ["repeatable-read"]
    assert cm.weakest_models(cm.impossible_models(["G0"])) == ["read-uncommitted"]
    with pytest.raises(SpecError):
        cm.canonical_model("eventual-ish")


def test_a_single_model_name_may_be_a_string() -> None:
    h = H().concurrent((0, [["r", "x", []], ["r", "y", []], ["append", "x", 1]]),
                       (1, [["r", "x", []], ["r", "y", []], ["append", "y", 1]]))
    assert check_txn(h.ops, workload="list-append", consistency="serializable").valid is False


def test_unknown_workload_and_model_are_spec_errors() -> None:
    with pytest.raises(SpecError):
        check_txn([], workload="bank")
    with pytest.raises(SpecError):
        check_txn([], workload="list-append", consistency=["nope"])


def test_malformed_transactions_raise_history_error() -> None:
    with pytest.raises(HistoryError, match="op 1"):
        la(H().txn(0, [["append", "x", 1], ["frob", "x", 2]]))
    with pytest.raises(HistoryError, match="twice"):
        la(H().txn(0, [["append", "x", 1]]).txn(1, [["append", "x", 1]]))
    with pytest.raises(HistoryError, match="micro-op"):
        bad = [Op(0, "invoke", 0, "txn", [["append", "x"]]),
               Op(1, "ok", 0, "txn", [["append", "x"]])]
        check_txn(bad, workload="list-append")


# --- valid histories ----------------------------------------------------------------


def test_valid_list_append_passes_every_model() -> None:
    h = (H().txn(0, [["append", "x", 1], ["r", "y", []]])
         .txn(1, [["r", "x", [1]], ["append", "y", 1], ["append", "x", 2]])
         .concurrent((0, [["r", "x", [1, 2]], ["append", "y", 2]]),
                     (1, [["r", "y", [1]]]))
         .txn(2, [["r", "x", [1, 2]], ["r", "y", [1, 2]]]))
    for m in ["read-uncommitted", "read-committed", "repeatable-read", "snapshot-isolation",
              "serializable", "strong-session-serializable", "strict-serializable"]:
        r = la(h, m)
        assert r.valid is True, (m, r.anomalies)
        assert r.anomalies == {} and r.not_ == set()


def test_valid_rw_register_passes() -> None:
    h = (H().txn(0, [["w", "x", 1], ["r", "y", None]])
         .txn(1, [["r", "x", 1], ["w", "y", 2]])
         .txn(0, [["r", "y", 2], ["w", "x", 3]])
         .txn(2, [["r", "x", 3], ["r", "y", 2]]))
    for kw in [{}, {"wfr_keys": True}, {"sequential_keys": True}, {"linearizable_keys": True}]:
        r = rr(h, "strict-serializable", **kw)
        assert r.valid is True, (kw, r.anomalies)


def test_no_committed_txns_is_unknown() -> None:
    r = la(H().txn(0, [["append", "x", 1]], typ="fail"))
    assert r.valid == "unknown"


# --- cycles: list-append --------------------------------------------------------------


def test_g0_write_cycle() -> None:
    h = (H().concurrent((0, [["append", "x", 1], ["append", "y", 1]]),
                        (1, [["append", "x", 2], ["append", "y", 2]]))
         .txn(2, [["r", "x", [1, 2]], ["r", "y", [2, 1]]]))
    r = la(h, "read-uncommitted")
    assert r.valid is False and r.anomaly_types == ["G0"]
    assert r.not_ == {"read-uncommitted"}
    text = r.anomalies["G0"][0]
    assert "-ww->" in text and "appended 2 to key 'x' after" in text


def test_g1c_circular_information_flow() -> None:
    h = H().concurrent((0, [["append", "x", 1], ["r", "y", [1]]]),
                       (1, [["append", "y", 1], ["r", "x", [1]]]))
    r = la(h, "read-committed")
    assert r.valid is False and r.anomaly_types == ["G1c"]
    assert "-wr->" in r.anomalies["G1c"][0]
    assert la(h, "read-uncommitted").valid is True


def test_g_single_item_read_skew() -> None:
    h = H().concurrent((0, [["append", "x", 1], ["append", "y", 1]]),
                       (1, [["r", "x", []], ["r", "y", [1]]]))
    r = la(h, "snapshot-isolation")
    assert r.valid is False and r.anomaly_types == ["G-single-item"]
    assert "read key 'y' = [1], whose last element" in r.anomalies["G-single-item"][0]
    assert la(h, "read-committed").valid is True


def test_g_nonadjacent_item() -> None:
    h = H().concurrent((0, [["r", "a", []], ["r", "b", [1]]]),
                       (1, [["append", "a", 1]]),
                       (2, [["r", "a", [1]], ["r", "b", []]]),
                       (3, [["append", "b", 1]]))
    r = la(h, "snapshot-isolation")
    assert r.valid is False and r.anomaly_types == ["G-nonadjacent-item"]
    r = la(h, "repeatable-read")
    assert r.anomaly_types == ["G-nonadjacent-item"]


def test_g2_item_write_skew_is_allowed_by_snapshot_isolation() -> None:
    h = H().concurrent((0, [["r", "x", []], ["r", "y", []], ["append", "x", 1]]),
                       (1, [["r", "x", []], ["r", "y", []], ["append", "y", 1]]))
    r = la(h, "serializable")
    assert r.valid is False and r.anomaly_types == ["G2-item"]
    assert r.not_ == {"repeatable-read"}
    assert la(h, "snapshot-isolation").valid is True


def test_process_variant() -> None:
    h = H().txn(0, [["append", "x", 1]]).txn(0, [["r", "x", []]])
    assert la(h, "serializable").valid is True
    r = la(h, "strong-session-serializable")
    assert r.valid is False and r.anomaly_types == ["G-single-item-process"]
    assert "ran in that order on process 0" in r.anomalies["G-single-item-process"][0]


def test_realtime_variant() -> None:
    h = H().txn(0, [["append", "x", 1]]).txn(1, [["r", "x", []]])
    assert la(h, "strong-session-serializable").valid is True
    r = la(h, "strict-serializable")
    assert r.valid is False
    assert "G-single-item-realtime" in r.anomaly_types
    assert "completed (op 1) before T3 was invoked (op 2)" in \
        r.anomalies["G-single-item-realtime"][0]
    assert "lost-append" in r.anomaly_types  # ours: no later read has it


def test_g0_realtime_and_g1c_process_variants() -> None:
    # ww T1 -> T2 on x contradicts the realtime order T2 -> T1
    h = (H().txn(0, [["append", "x", 2]]).txn(1, [["append", "x", 1]])
         .txn(2, [["r", "x", [1, 2]]]))
    r = la(h, "strong-read-uncommitted")
    assert r.valid is False and r.anomaly_types == ["G0-realtime"]
    # T3 -wr-> T1 -process-> T2 -wr-> T3: circular flow only through process order
    h2 = (H().invoke(0, [["append", "x", 1], ["r", "w", [1]]])
          .invoke(1, [["append", "w", 1], ["r", "z", [1]]])
          .done(0).invoke(0, [["append", "z", 1]]).done(0).done(1))
    assert la(h2, "serializable").valid is True
    r2 = la(h2, "strong-session-serializable")
    assert r2.valid is False and r2.anomaly_types == ["G1c-process"]


# --- non-cycle anomalies: list-append ----------------------------------------------------


@pytest.mark.parametrize(
    ("name", "history", "model"),
    [
        ("G1a", H().txn(0, [["append", "x", 1]], typ="fail").txn(1, [["r", "x", [1]]]),
         "read-committed"),
        ("G1b", H().txn(0, [["append", "x", 1], ["append", "x", 2]])
         .txn(1, [["r", "x", [1]]]), "read-committed"),
        ("internal", H().txn(0, [["append", "x", 1], ["r", "x", []]]), "serializable"),
        ("duplicate-elements", H().txn(0, [["append", "x", 1]]).txn(1, [["r", "x", [1, 1]]]),
         "read-uncommitted"),
        ("incompatible-order", H().txn(0, [["append", "x", 1]]).txn(1, [["append", "x", 2]])
         .txn(2, [["r", "x", [1, 2]]]).txn(3, [["r", "x", [2]]]), "read-committed"),
        ("lost-update", H().txn(0, [["append", "x", 0]])
         .concurrent((1, [["r", "x", [0]], ["append", "x", 1]]),
                     (2, [["r", "x", [0]], ["append", "x", 2]])), "repeatable-read"),
        ("dirty-update", H().txn(0, [["append", "x", 1]], typ="fail")
         .txn(1, [["append", "x", 2]]).txn(2, [["r", "x", [1, 2]]]), "read-committed"),
        ("garbage-read", H().txn(0, [["r", "x", [7]]]), "read-uncommitted"),
        ("reordered-appends", H().txn(0, [["append", "x", 1], ["append", "x", 2]])
         .txn(1, [["append", "x", 3]]).txn(2, [["r", "x", [2, 1, 3]]]), "read-uncommitted"),
        ("future-read", H().txn(0, [["r", "x", [1]], ["append", "x", 1]]), "read-committed"),
        ("lost-append", H().txn(0, [["append", "x", 1]]).txn(1, [["append", "y", 1]])
         .concurrent((2, [["r", "x", []]]), (3, [["r", "y", [1]]])), "strict-serializable"),
    ],
)
def test_each_non_cycle_anomaly_is_caught(name: str, history: H, model: str) -> None:
    r = la(history, model)
    assert r.valid is False
    assert name in r.anomaly_types, r.anomalies
    assert all(isinstance(t, str) and t for t in r.anomalies[name])


@pytest.mark.parametrize("key", ["x", "a:b"])
def test_lost_append_on_a_key_with_incompatible_reads_looks_at_every_read(key: str) -> None:
    # each append is in some later read; the reads disagree, so no prefix shortcut
    h = (H().txn(0, [["append", key, 1]]).txn(1, [["append", key, 2]])
         .concurrent((2, [["r", key, [1]]]), (3, [["r", key, [2]]])))
    r = la(h, "strict-serializable")
    assert "incompatible-order" in r.anomaly_types
    assert "lost-append" not in r.anomaly_types, r.anomalies


def test_lost_append_counts_positions_in_elements_not_in_txns() -> None:
    """Three txns append six elements, the last one read back whole by its own txn: no
    read began after it, so nothing is lost. The "no later read" mark was the txn count
    plus one, below element 6's position 5 (found by the oracle property test)."""
    h = (H().txn(0, [["append", "x", 1], ["append", "x", 2], ["append", "x", 3]])
         .txn(0, [["append", "x", 4]])
         .txn(0, [["append", "x", 5], ["append", "x", 6], ["r", "x", [1, 2, 3, 4, 5, 6]]]))
    for m in ("serializable", "strict-serializable"):
        assert la(h, m).valid is True, (m, la(h, m).anomalies)
    # and a later read that misses the last element still loses it
    lost = h.txn(1, [["r", "x", [1, 2, 3, 4, 5]]])
    r = la(lost, "strict-serializable")
    assert "lost-append" in r.anomaly_types, r.anomalies
    assert r.anomalies["lost-append"] == [
        "T5 appended 6 to key 'x' and was acknowledged, but none of the 1 reads of 'x' "
        "that began later contains it (the last read [1 2 3 4 5])"], r.anomalies


def _two_appends_then(read: list[int], middle: str = "ok") -> H:
    """T1 appends 1 then 2 to x, T3 appends 3 (ending `middle`), T5 reads x."""
    return (H().txn(0, [["append", "x", 1], ["append", "x", 2]])
            .txn(1, [["append", "x", 3]], typ=middle).txn(2, [["r", "x", read]]))


@pytest.mark.parametrize(
    ("read", "why"),
    [([2, 1, 3], "which holds 2 before 1"),
     ([3, 2, 1], "which holds 2 before 1"),
     ([2], "which holds 2 but not 1, appended before it"),
     ([2, 3], "which holds 2 but not 1, appended before it")])
def test_own_appends_out_of_order_are_caught_at_every_level(read: list[int], why: str) -> None:
    """A state with a txn's appends reordered never existed: no level allows it."""
    h = _two_appends_then(read)
    for m in cm.TXN_MODELS:
        r = la(h, m)
        assert r.valid is False, m
        assert r.anomalies["reordered-appends"] == [
            f"key 'x': T1 appended 1 then 2, but T5 read 'x' = "
            f"[{' '.join(map(str, read))}], {why}"], m
    assert la(h, "read-uncommitted").not_ == {"read-uncommitted"}


def test_own_appends_split_by_another_txn_are_a_write_cycle() -> None:
    """Another txn's element between a txn's two appends orders each writer before
    the other (G0, from read-uncommitted up); if that txn failed, the reader saw an
    aborted write and the txn wrote on top of it (G1a, dirty-update)."""
    for read in ([1, 3, 2], [1, 3]):
        for middle in ("ok", "info"):
            r = la(_two_appends_then(read, middle), "read-uncommitted")
            assert r.anomaly_types == ["G0"], (read, middle, r.anomalies)
            assert r.anomalies["G0"] == [
                "G0 cycle T1 -ww-> T3 -ww-> T1: T3 appended 3 to key 'x' after T1 appended 1; "
                "T1 appended 2 to key 'x' after T3 appended 3"]
    failed = _two_appends_then([1, 3, 2], "fail")
    r = la(failed, "read-committed")
    assert r.valid is False and set(r.anomaly_types) == {"G1a", "dirty-update"}
    # read-uncommitted allows reading, and writing over, an aborted write
    assert la(failed, "read-uncommitted").valid is True


def test_own_appends_in_order_and_adjacent_pass() -> None:
    """A txn's appends to a key, read back in order and adjacent (other keys and other
    txns' appends around them), are valid under every model; so is every prefix."""
    h = (H().txn(0, [["append", "x", 1], ["append", "y", 1], ["append", "x", 2],
                     ["append", "x", 3]])
         .txn(1, [["r", "x", [1, 2, 3]], ["append", "x", 4], ["append", "x", 5]])
         .txn(2, [["append", "x", 6], ["r", "x", [1, 2, 3, 4, 5, 6]], ["append", "x", 7]])
         .txn(3, [["r", "x", [1, 2, 3, 4, 5, 6, 7]], ["r", "y", [1]]]))
    for m in cm.TXN_MODELS:
        r = la(h, m)
        assert r.valid is True and r.anomalies == {}, (m, r.anomalies)
    # a read stopping between a txn's appends is an intermediate read (G1b), which
    # read-uncommitted allows: not a reordering
    mid = _two_appends_then([1])
    assert la(mid, "read-uncommitted").valid is True
    assert la(mid, "read-committed").anomaly_types == ["G1b"]


def test_reordering_is_found_in_any_read_when_reads_disagree() -> None:
    """With incompatible reads the version order is unreliable, so each read is checked."""
    h = (_two_appends_then([3]).txn(3, [["append", "x", 4]])
         .txn(4, [["r", "x", [4, 2, 1]]]).txn(5, [["r", "x", [3, 1, 2, 4, 0]]])
         .txn(6, [["append", "x", 0]]))
    r = la(h, "read-uncommitted")
    assert r.anomaly_types == ["reordered-appends"], r.anomalies
    assert "T9 read 'x' = [4 2 1], which holds 2 before 1" in r.anomalies[
        "reordered-appends"][0]
    assert "incompatible-order" in la(h, "read-committed").anomaly_types


def test_anomalies_outside_the_models_are_not_reported() -> None:
    h = H().txn(0, [["append", "x", 1]], typ="fail").txn(1, [["r", "x", [1]]])
    r = la(h, "read-uncommitted")
    assert r.valid is True and r.anomalies == {}
    assert "G1a" in r.details["unreported_anomaly_types"]


def test_info_txns_may_or_may_not_have_committed() -> None:
    # an indeterminate append that someone read is fine; one nobody read is fine too
    h = (H().invoke(0, [["append", "x", 1]]).done(0, "info")
         .invoke(1, [["append", "x", 2]]).done(1, "info")
         .txn(2, [["r", "x", [1]]]))
    assert la(h, "strict-serializable").valid is True


# --- rw-register ---------------------------------------------------------------------------


def test_rw_register_cycles() -> None:
    g1c = H().concurrent((0, [["w", "x", 1], ["r", "y", 1]]), (1, [["w", "y", 1], ["r", "x", 1]]))
    r = rr(g1c, "read-committed")
    assert r.valid is False and r.anomaly_types == ["G1c"]
    assert "which T" in r.anomalies["G1c"][0] and "wrote" in r.anomalies["G1c"][0]
    single = H().concurrent((0, [["w", "x", 1], ["w", "y", 1]]),
                            (1, [["r", "x", None], ["r", "y", 1]]))
    r = rr(single, "snapshot-isolation")
    assert r.valid is False and r.anomaly_types == ["G-single-item"]
    skew = H().concurrent((0, [["r", "x", None], ["r", "y", None], ["w", "x", 1]]),
                          (1, [["r", "x", None], ["r", "y", None], ["w", "y", 1]]))
    r = rr(skew, "serializable")
    assert r.valid is False and r.anomaly_types == ["G2-item"]
    assert rr(skew, "snapshot-isolation").valid is True


def test_rw_register_g0_needs_a_version_hint() -> None:
    # P wrote x=1, y=2 and Q wrote x=2, y=1; process 2 saw x go 1 -> 2 and
    # process 3 saw y go 1 -> 2: P before Q on x, Q before P on y.
    h = (H().concurrent((0, [["w", "x", 1], ["w", "y", 2]]), (1, [["w", "x", 2], ["w", "y", 1]]))
         .txn(2, [["r", "x", 1]]).txn(2, [["r", "x", 2]])
         .txn(3, [["r", "y", 1]]).txn(3, [["r", "y", 2]]))
    assert rr(h, "read-uncommitted").valid is True  # nil < v alone orders no two writes
    r = rr(h, "read-uncommitted", sequential_keys=True)
    assert r.valid is False and r.anomaly_types == ["G0"]
    assert "version order 1 < 2" in r.anomalies["G0"][0]


@pytest.mark.parametrize(
    ("name", "history", "model", "kw"),
    [
        ("G1a", H().txn(0, [["w", "x", 1]], typ="fail").txn(1, [["r", "x", 1]]),
         "read-committed", {}),
        ("G1b", H().txn(0, [["w", "x", 1], ["w", "x", 2]]).txn(1, [["r", "x", 1]]),
         "read-committed", {}),
        ("internal", H().txn(0, [["w", "x", 1], ["r", "x", 2]]), "serializable", {}),
        ("garbage-read", H().txn(0, [["r", "x", 9]]), "read-uncommitted", {}),
        ("lost-update", H().txn(0, [["w", "x", 0]])
         .concurrent((1, [["r", "x", 0], ["w", "x", 1]]), (2, [["r", "x", 0], ["w", "x", 2]])),
         "repeatable-read", {}),
        ("cyclic-versions", H().concurrent((0, [["r", "x", 1], ["w", "x", 2]]),
                                           (1, [["r", "x", 2], ["w", "x", 1]])),
         "read-uncommitted", {"wfr_keys": True}),
    ],
)
def test_rw_register_non_cycle_anomalies(name: str, history: H, model: str,
                                         kw: dict[str, bool]) -> None:
    r = rr(history, model, **kw)
    assert name in r.anomaly_types, (r.anomalies, r.details)
    assert r.valid is False


# --- time limits ----------------------------------------------------------------------------


def test_time_limit_gives_unknown_never_a_guess() -> None:
    # a history whose only cycle class needs the exact G-nonadjacent search;
    # with a zero search budget that search cannot finish
    h = H().concurrent((0, [["r", "a", []], ["r", "b", [1]]]),
                       (1, [["append", "a", 1]]),
                       (2, [["r", "a", [1]], ["r", "b", []]]),
                       (3, [["append", "b", 1]]))
    r = la(h, "snapshot-isolation", search_timeout_s=0.0)
    # the cheap witness is found regardless of the limit, and it is a real cycle
    assert r.valid is False and r.anomaly_types == ["G-nonadjacent-item"]
    skew = H().concurrent((0, [["r", "x", []], ["r", "y", []], ["append", "x", 1]]),
                          (1, [["r", "x", []], ["r", "y", []], ["append", "y", 1]]))
    r = la(skew, "snapshot-isolation", search_timeout_s=0.0)
    # the witness is G2-item (allowed by SI); the searches for prohibited
    # classes could not run, so the answer is unknown, not valid
    assert r.valid == "unknown"
    assert r.unknown_reasons and "time limit" in r.unknown_reasons[0]
    # the whole time limit covers building the graph too: spent before the search,
    # it is unknown with the step it ran out in
    r = la(h, "snapshot-isolation", time_limit_s=0.0)
    assert r.valid == "unknown" and "ran out while pairing" in r.unknown_reasons[0]
    assert la(skew, "snapshot-isolation", time_limit_s=10.0).valid is True
    # the per-search cap applies even without an overall limit
    assert la(skew, "snapshot-isolation", search_timeout_s=0.0).valid == "unknown"


def test_a_class_shown_once_only_gets_a_short_search_elsewhere(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # two SCCs (disjoint keys and processes), each with write skew plus a
    # process edge: G2-item and G-single-item-process in both
    h = H()
    for p, x, y in ((0, "x", "y"), (1, "u", "v")):
        h.txn(p, [["r", x, []], ["r", y, []], ["append", x, 1]])
        h.txn(p, [["r", x, []], ["r", y, []], ["append", y, 1]])
    r = la(h, "strong-session-serializable")
    assert r.details["sccs"] == [2, 2]
    assert r.anomaly_types == ["G-single-item-process", "G2-item"]
    assert r.details["anomaly_counts"] == {"G-single-item-process": 2, "G2-item": 2}
    assert r.details["witness_searches_cut_short"] == 0
    # a search for an already-shown class that runs out of its short budget
    # costs a witness (the count), never the verdict, and is not "unknown"
    import selfhood.checkers.txn as txn_mod
    monkeypatch.setattr(txn_mod, "EXTRA_WITNESS_S", -1.0)
    r = la(h, "strong-session-serializable")
    assert r.valid is False and r.unknown_reasons == []
    assert r.anomaly_types == ["G-single-item-process", "G2-item"]
    assert r.details["witness_searches_cut_short"] == 1
    assert r.details["anomaly_counts"]["G-single-item-process"] == 1


# --- property tests ---------------------------------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories("list-append"))
def test_serial_list_append_histories_are_valid(ops: list[Op]) -> None:
    r = check_txn(ops, workload="list-append", consistency=["strict-serializable"])
    assert r.valid in (True, "unknown"), r.anomalies
    if any(o.type == "ok" for o in ops):
        assert r.valid is True


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories("rw-register"))
def test_serial_rw_register_histories_are_valid(ops: list[Op]) -> None:
    for kw in ({}, {"linearizable_keys": True, "sequential_keys": True}):
        r = check_txn(ops, workload="rw-register", consistency=["strict-serializable"], **kw)
        assert r.valid is not False, r.anomalies


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories("list-append"), st.data())
def test_mutating_one_read_is_caught(ops: list[Op], data: Any) -> None:
    """Drop the last element from a read that must have seen it (its writer
    committed before the reader began): strict-serializable must object."""
    pos = {o.index: i for i, o in enumerate(ops)}
    writer_done: dict[tuple[int, Any], int] = {}
    invoked_at: dict[Any, int] = {}
    candidates: list[tuple[int, int]] = []
    for i, o in enumerate(ops):
        if o.type == "invoke":
            invoked_at[o.process] = i
        if o.type != "ok":
            continue
        for m in o.value:
            if m[0] == "append":
                writer_done[(m[1], m[2])] = i
        for j, m in enumerate(o.value):
            if m[0] == "r" and m[2]:
                w = writer_done.get((m[1], m[2][-1]))
                own = any(x[0] == "append" and x[2] == m[2][-1] for x in o.value)
                if w is not None and w < invoked_at[o.process] and not own:
                    candidates.append((i, j))
    assume(candidates)
    i, j = data.draw(st.sampled_from(candidates))
    op = ops[i]
    value = [list(m) for m in op.value]
    value[j][2] = value[j][2][:-1]
    mutated = [*ops[:i], Op(op.index, "ok", op.process, op.f, value), *ops[i + 1:]]
    assert pos  # ops keep their indices
    r = check_txn(mutated, workload="list-append", consistency=["strict-serializable"])
    assert r.valid is False, (value, r.details)


def _serializable_by_brute_force(txns: Sequence[Txn]) -> bool:
    for order in itertools.permutations(range(len(txns))):
        state: dict[Any, tuple[Any, ...]] = {}
        ok = True
        for t in order:
            for f, k, v in txns[t]:
                if f == "append":
                    state[k] = (*state.get(k, ()), v)
                elif tuple(v) != state.get(k, ()):
                    ok = False
                    break
            if not ok:
                break
        if ok:
            return True
    return False


@st.composite
def small_mutated_histories(draw: Any) -> list[Txn]:
    """Up to 5 committed txns run serially in a random order, then some reads
    replaced by other prefixes of the key's final list (maybe inconsistent), or by
    some of its elements in any order (one txn's appends split or reordered)."""
    n = draw(st.integers(1, 5))
    txns: list[Txn] = []
    counter = itertools.count(1)
    for _ in range(n):
        txn: Txn = []
        for _ in range(draw(st.integers(1, 3))):
            k = draw(st.sampled_from("xy"))
            txn.append(["r", k, None] if draw(st.booleans()) else ["append", k, next(counter)])
        txns.append(txn)
    state: dict[str, list[int]] = {}
    for t in draw(st.permutations(range(n))):
        for m in txns[t]:
            if m[0] == "append":
                state.setdefault(m[1], []).append(m[2])
            else:
                m[2] = list(state.get(m[1], []))
    finals = dict(state)
    for txn in txns:
        for m in txn:
            how = draw(st.integers(0, 7)) if m[0] == "r" else -1
            if how in (0, 1):
                full = finals.get(m[1], [])
                if how == 1:
                    full = draw(st.permutations(full))
                m[2] = full[:draw(st.integers(0, len(full)))]
    return txns


@settings(max_examples=300, deadline=None)
@given(small_mutated_histories())
def test_brute_force_oracle_agrees_on_small_histories(txns: list[Txn]) -> None:
    """All committed and concurrent: the checker's serializable verdict must equal
    the verdict of trying every serial order."""
    h = H().concurrent(*((i, t) for i, t in enumerate(txns)))
    r = check_txn(h.ops, workload="list-append", consistency=["serializable"])
    expected = _serializable_by_brute_force(txns)
    assert (r.valid is True) == expected, (txns, r.anomalies)
    assert brute_serializable(h.ops, "list-append", "serializable") is expected


# --- cycle search vs brute force ---------------------------------------------------------


def _brute_force_classes(n: int, edges: dict[tuple[int, int], int]) -> set[str]:
    """Every class of every simple cycle, trying each relation of multi-relation edges."""
    from selfhood.checkers.elle.graph import PROCESS, REALTIME, RW, WR, WW
    from selfhood.checkers.txn import classify_cycle
    out: set[str] = set()
    bits = (WW, WR, RW, PROCESS, REALTIME)
    for size in range(2, n + 1):
        for nodes in itertools.permutations(range(n), size):
            if nodes[0] != min(nodes):
                continue
            hops = list(zip(nodes, nodes[1:] + nodes[:1], strict=True))
            if not all(h in edges for h in hops):
                continue
            choices = [[b for b in bits if edges[h] & b] for h in hops]
            for rels in itertools.product(*choices):
                if all(r in (PROCESS, REALTIME) for r in rels):
                    continue
                steps = [(a, b, r) for (a, b), r in zip(hops, rels, strict=True)]
                out.add(classify_cycle(steps))
    return out


@settings(max_examples=400, deadline=None)
@given(st.integers(2, 6).flatmap(lambda n: st.tuples(
    st.just(n),
    st.dictionaries(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1))
                    .filter(lambda e: e[0] != e[1]),
                    st.integers(1, 31), max_size=14))),
       st.sampled_from([8, 16]), st.sampled_from([0, 64]))
def test_exact_cycle_search_agrees_with_brute_force(
        graph: tuple[int, dict[tuple[int, int], int]], extra: int, cheap: int) -> None:
    # cheap=0 skips the shortest-walk pass, so the guided simple-path search
    # (and its dropping of exhausted anchors) decides every class
    from selfhood.checkers.elle.graph import DATA, DepGraph, find_cycle, sccs
    from selfhood.checkers.txn import _specs, classify_cycle
    n, edges = graph
    other = 8 if extra == 16 else 16
    edges = {e: (m & ~other) for e, m in edges.items() if m & ~other}
    g = DepGraph.empty(n)
    for (a, b), m in edges.items():
        g.link(a, b, m)
    expected = _brute_force_classes(n, edges)
    found: set[str] = set()
    for comp in sccs(g, DATA | extra):
        for spec in _specs(extra):
            steps = find_cycle(g, set(comp), spec, None, cheap_anchors=cheap)
            if steps is not None:
                name = classify_cycle(steps)
                assert name == spec.name
                assert steps[0][0] == steps[-1][1]
                assert len({a for a, _, _ in steps}) == len(steps)
                for a, b, r in steps:
                    assert g.adj[a][b] & r
                found.add(name)
    assert found == expected


FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _fixture_graph(name: str) -> tuple[Any, set[int]]:
    from selfhood.checkers.elle.graph import DepGraph
    doc = json.loads((FIXTURES / name).read_text())
    g = DepGraph.empty(doc["n"])
    for a, b, m in doc["edges"]:
        g.link(a, b, m)
    return g, set(range(doc["n"]))


@pytest.mark.parametrize("cheap", [0, 64])
def test_dense_scc_from_a_run_is_decided_for_every_class(cheap: int) -> None:
    """Regression: the largest SCC (125 txns, process edges) of a `selfhood run
    --modes eventual` list-append history. The old exhaustive DFS for
    G-nonadjacent-item-process never finished on it (the check hit its 10 s
    cap and said "unknown" for that class); every class must now be decided."""
    from selfhood.checkers.elle.graph import PROCESS, DepGraph, find_cycle, sccs
    from selfhood.checkers.txn import _specs, classify_cycle
    g, members = _fixture_graph("elle-dense-scc.json")
    assert isinstance(g, DepGraph) and len(sccs(g, 15)) == 1
    found = set()
    for spec in _specs(PROCESS):
        steps = find_cycle(g, members, spec, time.monotonic() + 60.0, cheap_anchors=cheap)
        if steps is not None:
            assert classify_cycle(steps) == spec.name
            assert len({a for a, _, _ in steps}) == len(steps)
            assert all(g.adj[a][b] & r for a, b, r in steps)
            assert steps[0][0] == steps[-1][1]
            found.add(spec.name)
    assert found == {"G-single-item", "G-nonadjacent-item", "G2-item",
                     "G-single-item-process", "G-nonadjacent-item-process",
                     "G2-item-process"}


def _diamonds(k: int, back: bool = False) -> tuple[Any, set[int]]:
    """b -> k ww diamonds -> c; the one process edge sits on a loop through c
    (c -> p1 -process-> p2 -> c), then c -> a -rw-> b. Closed walks with a
    process edge pass c twice, so no G-single-item-process cycle exists, and a
    plain simple-path search would try all 2^k ways through the diamonds.
    With `back`, c also has ww edges back into every diamond, so what a failed
    branch depends on includes the whole path, and no memo can help."""
    from selfhood.checkers.elle.graph import PROCESS, RW, WW, DepGraph
    a, b, c, p1, p2 = 0, 1, 2, 3, 4
    g = DepGraph.empty(5 + 3 * k)
    prev = b
    for i in range(k):
        left, right, join = 5 + 3 * i, 6 + 3 * i, 7 + 3 * i
        for x, y in ((prev, left), (prev, right), (left, join), (right, join)):
            g.link(x, y, WW)
        if back:
            for y in (left, right, join):
                g.link(c, y, WW)
        prev = join
    g.link(prev, c, WW)
    g.link(c, p1, WW)
    g.link(p1, p2, PROCESS)
    g.link(p2, c, WW)
    g.link(c, a, WW)
    g.link(a, b, RW)
    return g, set(range(g.n))


def test_a_chain_of_dead_diamonds_is_decided() -> None:
    from selfhood.checkers.elle.graph import PROCESS, find_cycle
    from selfhood.checkers.txn import _specs
    spec = next(s for s in _specs(PROCESS) if s.name == "G-single-item-process")
    g, members = _diamonds(60)  # 2^60 simple paths to c: remembered failures cut them
    assert find_cycle(g, members, spec, time.monotonic() + 60.0) is None
    g, members = _diamonds(3, back=True)
    assert find_cycle(g, members, spec, None) is None


def _cycle_classes_by_dfs(n: int, edges: dict[tuple[int, int], int]) -> set[str]:
    """Like _brute_force_classes, enumerating simple cycles by DFS (for sparse graphs)."""
    from selfhood.checkers.elle.graph import PROCESS, REALTIME, RW, WR, WW
    from selfhood.checkers.txn import classify_cycle
    out: set[str] = set()
    bits = (WW, WR, RW, PROCESS, REALTIME)
    succ: dict[int, list[int]] = {}
    for a, b in edges:
        succ.setdefault(a, []).append(b)

    def close(path: list[int]) -> None:
        hops = list(zip(path, path[1:] + path[:1], strict=True))
        for rels in itertools.product(*([b for b in bits if edges[h] & b] for h in hops)):
            if not all(r in (PROCESS, REALTIME) for r in rels):
                out.add(classify_cycle([(a, b, r) for (a, b), r in zip(hops, rels, strict=True)]))

    def walk(path: list[int]) -> None:
        for w in succ.get(path[-1], ()):
            if w == path[0]:
                close(path)
            elif w > path[0] and w not in path:
                walk([*path, w])

    for v in range(n):
        walk([v])
    return out


@settings(max_examples=150, deadline=None)
@given(st.data(), st.sampled_from([8, 16]), st.sampled_from([0, 64]))
def test_exact_search_on_diamond_gadgets_agrees_with_brute_force(
        data: Any, extra: int, cheap: int) -> None:
    """Diamond chains into a process/realtime loop, with random relations, extra
    edges and labels: graphs where closed walks often repeat a vertex, so the
    remembered failures of the simple-path search are exercised."""
    from selfhood.checkers.elle.graph import DATA, RW, WR, WW, DepGraph, find_cycle, sccs
    from selfhood.checkers.txn import _specs, classify_cycle
    k = data.draw(st.integers(1, 3))
    n = 5 + 3 * k
    rel = st.sampled_from([WW, WR, RW])
    raw: list[tuple[int, int, int]] = []
    prev = 1
    for i in range(k):
        left, right, join = 5 + 3 * i, 6 + 3 * i, 7 + 3 * i
        raw += [(x, y, data.draw(rel)) for x, y in
                ((prev, left), (prev, right), (left, join), (right, join))]
        prev = join
    raw += [(prev, 2, data.draw(rel)), (2, 3, data.draw(rel)),
            (3, 4, extra | data.draw(st.sampled_from([0, WW, RW]))), (4, 2, data.draw(rel)),
            (2, 0, data.draw(rel)), (0, 1, RW | data.draw(st.sampled_from([0, WW, WR])))]
    for _ in range(data.draw(st.integers(0, 4))):
        x, y = data.draw(st.integers(0, n - 1)), data.draw(st.integers(0, n - 1))
        if x != y:
            raw.append((x, y, data.draw(st.sampled_from([WW, WR, RW, extra]))))
    perm = data.draw(st.permutations(range(n)))
    edges: dict[tuple[int, int], int] = {}
    for x, y, m in raw:
        edges[(perm[x], perm[y])] = edges.get((perm[x], perm[y]), 0) | m
    g = DepGraph.empty(n)
    for (a, b), m in edges.items():
        g.link(a, b, m)
    found: set[str] = set()
    for comp in sccs(g, DATA | extra):
        for spec in _specs(extra):
            steps = find_cycle(g, set(comp), spec, None, cheap_anchors=cheap)
            if steps is not None:
                assert classify_cycle(steps) == spec.name
                assert len({a for a, _, _ in steps}) == len(steps)
                assert all(g.adj[a][b] & r for a, b, r in steps)
                found.add(spec.name)
    assert found == _cycle_classes_by_dfs(n, edges)


def test_an_exponential_search_stops_at_its_deadline_and_says_so() -> None:
    from selfhood.checkers.elle.graph import PROCESS, SearchTimeout, find_cycle
    from selfhood.checkers.txn import _specs
    spec = next(s for s in _specs(PROCESS) if s.name == "G-single-item-process")
    big, many = _diamonds(60, back=True)
    t0 = time.monotonic()
    with pytest.raises(SearchTimeout):
        find_cycle(big, many, spec, t0 + 0.3)
    assert time.monotonic() - t0 < 2.0  # the deadline is checked at every DFS node
    small, few = _diamonds(3)
    with pytest.raises(SearchTimeout):  # a spent budget does not start a search
        find_cycle(small, few, spec, t0 - 1.0)


@st.composite
def small_timed_histories(draw: Any) -> tuple[list[Op], list[Txn], list[tuple[int, int]]]:
    """Up to 5 committed txns with random overlaps; reads drawn from a serial
    run in random order, some replaced by other prefixes. Returns the ops, the
    txns and the real-time precedence pairs (i completed before j began)."""
    txns = draw(small_mutated_histories())
    n = len(txns)
    events = [(i, kind) for i in range(n) for kind in (0, 1)]
    order = draw(st.permutations(events))
    # an invoke must come before its own completion
    seen: set[int] = set()
    fixed: list[tuple[int, int]] = []
    for i, kind in order:
        if kind == 1 and i not in seen:
            fixed.append((i, 0))
            seen.add(i)
            fixed.append((i, 1))
        elif kind == 0 and i in seen:
            continue
        else:
            seen.add(i)
            fixed.append((i, kind))
    ops: list[Op] = []
    done_at: dict[int, int] = {}
    began_at: dict[int, int] = {}
    for i, kind in fixed:
        if kind == 0:
            began_at[i] = len(ops)
            ops.append(Op(len(ops), "invoke", i, "txn",
                          [[f, k, None if f == "r" else v] for f, k, v in txns[i]]))
        else:
            done_at[i] = len(ops)
            ops.append(Op(len(ops), "ok", i, "txn", txns[i]))
    before = [(i, j) for i in range(n) for j in range(n) if done_at[i] < began_at[j]]
    return ops, txns, before


@settings(max_examples=300, deadline=None)
@given(small_timed_histories())
def test_brute_force_oracle_agrees_under_strict_serializability(
        case: tuple[list[Op], list[Txn], list[tuple[int, int]]]) -> None:
    ops, txns, before = case
    n = len(txns)

    def legal(order: Sequence[int]) -> bool:
        rank = {t: r for r, t in enumerate(order)}
        if any(rank[i] > rank[j] for i, j in before):
            return False
        state: dict[Any, tuple[Any, ...]] = {}
        for t in order:
            for f, k, v in txns[t]:
                if f == "append":
                    state[k] = (*state.get(k, ()), v)
                elif tuple(v) != state.get(k, ()):
                    return False
        return True

    expected = any(legal(p) for p in itertools.permutations(range(n)))
    r = check_txn(ops, workload="list-append", consistency=["strict-serializable"])
    assert (r.valid is True) == expected, (txns, before, r.anomalies)


@st.composite
def small_register_histories(draw: Any) -> list[Txn]:
    """Up to 5 committed register txns from a serial run, some reads replaced by
    another written value or nil (so some histories are not serializable)."""
    n = draw(st.integers(1, 5))
    txns: list[Txn] = []
    counter = itertools.count(1)
    for _ in range(n):
        txns.append([["r", k, None] if draw(st.booleans()) else ["w", k, next(counter)]
                     for k in draw(st.lists(st.sampled_from("xy"), min_size=1, max_size=3))])
    state: dict[str, int] = {}
    for t in draw(st.permutations(range(n))):
        for m in txns[t]:
            if m[0] == "w":
                state[m[1]] = m[2]
            else:
                m[2] = state.get(m[1])
    written = {k: [m[2] for t in txns for m in t if m[0] == "w" and m[1] == k] for k in "xy"}
    for txn in txns:
        for m in txn:
            if m[0] == "r" and draw(st.integers(0, 3)) == 0:
                m[2] = draw(st.sampled_from([None, *written[m[1]]]))
    return txns


@settings(max_examples=300, deadline=None)
@given(small_register_histories())
def test_rw_register_verdicts_are_sound_against_brute_force(txns: list[Txn]) -> None:
    """Register version orders are partial, so the checker may miss anomalies,
    but anything it reports must be real: invalid implies not serializable."""
    def legal(order: Sequence[int]) -> bool:
        state: dict[Any, Any] = {}
        for t in order:
            for f, k, v in txns[t]:
                if f == "w":
                    state[k] = v
                elif state.get(k) != v:
                    return False
        return True

    h = H().concurrent(*((i, t) for i, t in enumerate(txns)))
    r = check_txn(h.ops, workload="rw-register", consistency=["serializable"])
    serializable = any(legal(p) for p in itertools.permutations(range(len(txns))))
    if r.valid is False:
        assert not serializable, (txns, r.anomalies)
    if serializable:
        assert r.valid is True
