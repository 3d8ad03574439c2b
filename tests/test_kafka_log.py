"""Kafka log checks: a valid history passes, each anomaly class is caught."""

from __future__ import annotations

from typing import Any

from selfhood.checkers.history import Op
from selfhood.checkers.kafka_log import check_kafka


class H:
    """Tiny history builder: invoke/complete pairs in order."""

    def __init__(self) -> None:
        self.ops: list[Op] = []

    def op(self, process: Any, f: str, inv: Any, typ: str, comp: Any) -> H:
        self.ops.append(Op(len(self.ops), "invoke", process, f, inv, time=len(self.ops)))
        self.ops.append(Op(len(self.ops), typ, process, f, comp, time=len(self.ops)))  # type: ignore[arg-type]
        return self

    def send(self, p: Any, k: Any, msg: Any, offset: int | None, typ: str = "ok") -> H:
        comp = [k, [offset, msg]] if offset is not None else [k, msg]
        return self.op(p, "send", [k, msg], typ, comp)

    def poll(self, p: Any, polled: dict[Any, list[list[Any]]], typ: str = "ok") -> H:
        return self.op(p, "poll", None, typ, polled)


def valid_history() -> H:
    return (H().send(0, "x", 1, 0).send(0, "x", 2, 1).send(1, "y", 10, 0)
            .poll(2, {"x": [[0, 1]]}).poll(2, {"x": [[1, 2]], "y": [[0, 10]]})
            .send(1, "x", 3, 2).poll(3, {"x": [[0, 1], [1, 2], [2, 3]]}))


def test_valid_history_passes() -> None:
    r = check_kafka(valid_history().ops)
    assert r.valid is True, r.anomalies
    assert r.anomalies == {}
    assert r.details["kafka"]["keys"] == 2


def test_lost_write() -> None:
    h = (H().send(0, "x", 1, 0).send(0, "x", 2, 1).send(0, "x", 3, 2)
         .poll(1, {"x": [[0, 1], [2, 3]]}))
    r = check_kafka(h.ops)
    assert r.valid is False
    assert "lost-write" in r.anomalies
    assert "2" in r.anomalies["lost-write"][0]
    # the reader also skipped offset 1 within one poll
    assert "int-poll-skip" in r.anomalies


def test_unread_tail_is_not_lost() -> None:
    # nobody polled past offset 0, so offset 1 may simply not have been read yet
    h = H().send(0, "x", 1, 0).send(0, "x", 2, 1).poll(1, {"x": [[0, 1]]})
    assert check_kafka(h.ops).valid is True


def test_inconsistent_offsets() -> None:
    h = H().send(0, "x", 1, 0).send(1, "x", 2, 0).poll(2, {"x": [[0, 1]]})
    r = check_kafka(h.ops)
    assert r.valid is False
    assert "inconsistent-offsets" in r.anomalies
    assert "offset 0" in r.anomalies["inconsistent-offsets"][0]


def test_duplicate() -> None:
    h = H().send(0, "x", 1, 0).poll(1, {"x": [[0, 1], [1, 1]]})
    r = check_kafka(h.ops)
    assert r.valid is False
    assert "duplicate" in r.anomalies
    assert "[0, 1]" in r.anomalies["duplicate"][0]


def test_poll_skip() -> None:
    h = (H().send(0, "x", 1, 0).send(0, "x", 2, 1).send(0, "x", 3, 2)
         .poll(1, {"x": [[0, 1]]}).poll(1, {"x": [[2, 3]]}).poll(2, {"x": [[0, 1], [1, 2]]}))
    r = check_kafka(h.ops)
    assert r.anomaly_types == ["poll-skip"]
    assert "skipping [2]" in r.anomalies["poll-skip"][0]
    assert r.valid is False


def test_nonmonotonic_poll() -> None:
    h = (H().send(0, "x", 1, 0).send(0, "x", 2, 1)
         .poll(1, {"x": [[0, 1], [1, 2]]}).poll(1, {"x": [[0, 1]]}))
    r = check_kafka(h.ops)
    assert r.anomaly_types == ["nonmonotonic-poll"]
    assert r.valid is False


def test_assign_resets_position() -> None:
    h = (H().send(0, "x", 1, 0).send(0, "x", 2, 1)
         .poll(1, {"x": [[0, 1], [1, 2]]}).op(1, "assign", ["y"], "ok", ["y"])
         .op(1, "assign", ["x"], "ok", ["x"]).poll(1, {"x": [[0, 1]]}))
    assert check_kafka(h.ops).valid is True


def test_subscribe_allows_rebalance_anomalies() -> None:
    h = (H().op(1, "subscribe", ["x"], "ok", ["x"]).send(0, "x", 1, 0).send(0, "x", 2, 1)
         .poll(1, {"x": [[0, 1], [1, 2]]}).poll(1, {"x": [[0, 1]]}))
    r = check_kafka(h.ops)
    assert r.anomaly_types == ["nonmonotonic-poll"]
    assert r.valid is True
    assert r.details["kafka"]["allowed_anomaly_types"] == ["nonmonotonic-poll"]


def test_aborted_read_and_garbage() -> None:
    h = (H().send(0, "x", 1, None, typ="fail").send(0, "x", 2, 1)
         .poll(1, {"x": [[0, 1], [1, 2], [2, 99]]}))
    r = check_kafka(h.ops)
    assert "G1a" in r.anomalies
    assert "garbage-read" in r.anomalies
    assert r.valid is False


def test_info_send_may_or_may_not_land() -> None:
    h = (H().send(0, "x", 1, 0).send(1, "x", 2, None, typ="info").send(0, "x", 3, 1)
         .poll(2, {"x": [[0, 1], [1, 3]]}))
    assert check_kafka(h.ops).valid is True


def test_nonmonotonic_send() -> None:
    h = (H().send(0, "x", 1, 1).send(0, "x", 2, 0)
         .poll(1, {"x": [[0, 2], [1, 1]]}))
    r = check_kafka(h.ops)
    assert r.anomaly_types == ["nonmonotonic-send"]


def test_jepsen_mop_shape() -> None:
    h = (H().op(0, "send", [["send", 1, 5]], "ok", [["send", 1, [0, 5]]])
         .op(0, "send", [["send", 1, 6]], "ok", [["send", 1, [1, 6]]])
         .op(1, "poll", [["poll"]], "ok", [["poll", {1: [[1, 6]]}]]))
    r = check_kafka(h.ops)
    assert r.anomaly_types == ["lost-write"]
    # JSON string keys and EDN integer keys name the same partition
    h2 = (H().send(0, 1, 5, 0).op(1, "poll", [["poll"]], "ok", [["poll", {"1": [[0, 5]]}]]))
    assert check_kafka(h2.ops).valid is True


def test_jepsen_edn_history() -> None:
    from selfhood.checkers.edn import read_edn_ops

    text = """; a Jepsen kafka history, micro-op form
{:index 0, :type :invoke, :process 0, :f :send, :value [[:send 1 5]]}
{:index 1, :type :ok, :process 0, :f :send, :value [[:send 1 [0 5]]]}
{:index 2, :type :invoke, :process 0, :f :send, :value [[:send 1 6]]}
{:index 3, :type :ok, :process 0, :f :send, :value [[:send 1 [1 6]]]}
{:index 4, :type :invoke, :process 1, :f :assign, :value [1]}
{:index 5, :type :ok, :process 1, :f :assign, :value [1]}
{:index 6, :type :invoke, :process 1, :f :poll, :value [[:poll]]}
{:index 7, :type :ok, :process 1, :f :poll, :value [[:poll {1 [[0 5] [1 6]]}]]}
{:index 8, :type :invoke, :process 1, :f :poll, :value [[:poll]]}
{:index 9, :type :ok, :process 1, :f :poll, :value [[:poll {1 [[0 5]]}]]}
"""
    ops = read_edn_ops(text)
    r = check_kafka(ops[:8])
    assert r.valid is True, r.anomalies
    r = check_kafka(ops)
    assert r.anomaly_types == ["nonmonotonic-poll"]
    assert "process 1" in r.anomalies["nonmonotonic-poll"][0]
