"""Kafka log checks: a valid history passes, each anomaly class is caught."""

from __future__ import annotations

import re
from typing import Any

import pytest

from selfhood.checkers.history import Op
from selfhood.checkers.kafka_log import check_kafka
from selfhood.errors import HistoryError


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


def test_unread_tail_is_not_lost_but_unseen() -> None:
    # nobody polled past offset 0, so offset 1 may simply not have been read yet: no
    # lost-write, but an acknowledged message no poll returned (Jepsen's unseen, an error)
    h = H().send(0, "x", 1, 0).send(0, "x", 2, 1).poll(1, {"x": [[0, 1]]})
    r = check_kafka(h.ops)
    assert r.anomaly_types == ["unseen"] and r.valid is False
    assert r.details["kafka"]["unseen"] == {"'x'": 1}
    assert "[2]" in r.anomalies["unseen"][0]
    # a final poll that drains the key sees it: valid
    assert check_kafka(h.poll(1, {"x": [[1, 2]]}).ops).valid is True


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


def test_sends_of_one_op_landing_out_of_order_are_int_nonmonotonic_send() -> None:
    inv = [["send", "x", "c"], ["send", "x", "a"]]
    backwards = (H().op(0, "send", inv, "ok", [["send", "x", [3, "c"]], ["send", "x", [1, "a"]]])
                 .poll(1, {"x": [[1, "a"], [3, "c"]]}))
    r = check_kafka(backwards.ops)
    assert r.valid is False and r.anomaly_types == ["int-nonmonotonic-send"]
    assert "'c' then 'a'" in r.anomalies["int-nonmonotonic-send"][0]
    in_order = (H().op(0, "send", inv, "ok", [["send", "x", [1, "c"]], ["send", "x", [2, "a"]]])
                .poll(1, {"x": [[1, "c"], [2, "a"]]}))
    assert check_kafka(in_order.ops).valid is True
    # another producer's message between them is reported, but allowed (as in Jepsen)
    apart = (H().op(0, "send", inv, "ok", [["send", "x", [1, "c"]], ["send", "x", [3, "a"]]])
             .send(1, "x", "b", 2).poll(2, {"x": [[1, "c"], [2, "b"], [3, "a"]]}))
    r = check_kafka(apart.ops)
    assert r.valid is True and r.anomaly_types == ["int-send-skip"]


def test_what_a_failed_poll_saw_is_evidence() -> None:
    # Jepsen's duplicate-test "aborted txns": the failed poll shows 0 again at offset 11
    h = (H().op(0, "send", [["send", "x", 0]], "ok", [["send", "x", [1, 0]]])
         .op(0, "send", [["send", "x", 1]], "fail", [["send", "x", [2, 1]]])
         .op(1, "poll", [["poll"]], "fail", [["poll", {"x": [[11, 0], [12, 1]]}]]))
    r = check_kafka(h.ops)
    assert r.valid is False and "duplicate" in r.anomaly_types
    # the same poll without the repeat: nothing wrong, and no G1a (the poll failed); a
    # failed poll does not count as seeing the acknowledged 0 (Jepsen's unseen), an ok
    # one does
    h2 = (H().op(0, "send", [["send", "x", 0]], "ok", [["send", "x", [1, 0]]])
          .op(0, "send", [["send", "x", 1]], "fail", [["send", "x", [2, 1]]])
          .op(1, "poll", [["poll"]], "fail", [["poll", {"x": [[1, 0], [2, 1]]}]]))
    assert check_kafka(h2.ops).anomaly_types == ["unseen"]
    h2.op(2, "poll", [["poll"]], "ok", [["poll", {"x": [[1, 0]]}]])
    assert check_kafka(h2.ops).valid is True


def test_jepsen_mop_shape() -> None:
    h = (H().op(0, "send", [["send", 1, 5]], "ok", [["send", 1, [0, 5]]])
         .op(0, "send", [["send", 1, 6]], "ok", [["send", 1, [1, 6]]])
         .op(1, "poll", [["poll"]], "ok", [["poll", {1: [[1, 6]]}]]))
    r = check_kafka(h.ops)
    assert r.anomaly_types == ["lost-write", "unseen"]  # a lost message is unseen too
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


# --- a real Kafka cluster produces a valid send/poll history ------------------------------


@pytest.mark.kafka
async def test_real_kafka_history_is_valid_and_mutation_caught(kafka_bootstrap: str) -> None:
    """Three idempotent producers and two assigned consumers on a fresh 2-partition,
    RF=3 topic of the live cluster; the recorded history must pass every check."""
    import asyncio
    import contextlib
    import time
    import uuid
    from dataclasses import replace

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from selfhood.checkers.history import reindex

    topic = f"selfhood-kafkacheck-{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    ops: list[Op] = []
    t0 = time.monotonic_ns()

    def record(typ: str, process: int, f: str, value: Any) -> None:
        ops.append(Op(len(ops), typ, process, f, value,  # type: ignore[arg-type]
                      time=time.monotonic_ns() - t0))

    sent: dict[int, int] = {0: 0, 1: 0}

    async def produce(p: int, n: int) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all",
                                    enable_idempotence=True)
        await producer.start()
        try:
            for i in range(n):
                k, msg = (p + i) % 2, f"{p}-{i}"
                record("invoke", p, "send", [k, msg])
                md = await producer.send_and_wait(topic, msg.encode(), partition=k)
                sent[k] += 1
                record("ok", p, "send", [k, [md.offset, msg]])
        finally:
            await producer.stop()

    async def consume(p: int, until: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=None,
                                    enable_auto_commit=False, auto_offset_reset="earliest",
                                    isolation_level="read_committed")
        await consumer.start()
        try:
            tps = [TopicPartition(topic, k) for k in (0, 1)]
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, 0)
            seen = {0: 0, 1: 0}
            while not (until.is_set() and all(seen[k] >= sent[k] for k in seen)):
                record("invoke", p, "poll", None)
                batch = await consumer.getmany(timeout_ms=100, max_records=7)
                value = {tp.partition: [[r.offset, r.value.decode()] for r in recs]
                         for tp, recs in batch.items() if recs}
                for k, pairs in value.items():
                    seen[k] += len(pairs)
                record("ok", p, "poll", value)
        finally:
            await consumer.stop()

    try:
        await admin.create_topics([NewTopic(topic, 2, 3,
                                            topic_configs={"min.insync.replicas": "2"})])
        done = asyncio.Event()
        async with asyncio.timeout(90):
            async with asyncio.TaskGroup() as tg:
                consumers = [tg.create_task(consume(p, done)) for p in (10, 11)]
                async with asyncio.TaskGroup() as producers:
                    for p in (0, 1, 2):
                        producers.create_task(produce(p, 20))
                done.set()
                await asyncio.gather(*consumers)
    finally:
        with contextlib.suppress(Exception):
            await admin.delete_topics([topic])
        await admin.close()

    history = reindex(ops)
    r = check_kafka(history)
    assert r.valid is True, r.anomalies
    assert r.details["kafka"]["sends"] == 60 and r.details["kafka"]["keys"] == 2
    polled = [o for o in history if o.type == "ok" and o.f == "poll" and o.process == 10]
    assert sum(len(v) for o in polled for v in o.value.values()) == 60
    # drop one message from the middle of consumer 10's stream: a skip, and caught. Where
    # it lands depends on how the consumer's batches fell: inside one poll of three or more
    # records (int-poll-skip), else the first record of the second poll of a partition
    # (poll-skip: the previous poll ended just before it, and later polls follow it)
    wide = [(o, k) for o in polled for k, v in o.value.items() if len(v) >= 3]
    if wide:
        target, k = wide[0]
        drop, anomaly = 1, "int-poll-skip"
    else:
        k = 0
        target = [o for o in polled if o.value.get(k)][1]
        drop, anomaly = 0, "poll-skip"
    value = {kk: list(v) for kk, v in target.value.items()}
    del value[k][drop]
    mutated = [replace(o, value=value) if o is target else o for o in history]
    bad = check_kafka(mutated)
    assert bad.valid is False and anomaly in bad.anomalies, bad.anomalies


def test_realtime_lag() -> None:
    # ops are timed by position: send x@0 completes at t=1, send x@1 completes at t=3;
    # a poll invoked at t=4 that only reaches offset 0 lags 4 - 3 = 1
    h = H().send(0, "x", 1, 0).send(0, "x", 2, 1).poll(1, {"x": [[0, 1]]})
    lag = check_kafka(h.ops).details["kafka"]
    assert lag["realtime_lag_ns"]["max"] == 1
    assert lag["worst_realtime_lag"]["process"] == 1
    fresh = H().send(0, "x", 1, 0).poll(1, {"x": [[0, 1]]})
    assert check_kafka(fresh.ops).details["kafka"]["realtime_lag_ns"]["max"] == 0


def test_a_history_of_other_ops_does_not_fit() -> None:
    with pytest.raises(HistoryError, match="no op is a Kafka send") as err:
        check_kafka(H().op(0, "write", 1, "ok", 1).ops)
    assert err.value.op_index == 0
    r = check_kafka(H().op(0, "crash", None, "info", None).ops)  # Jepsen's, not a client op
    assert r.valid == "unknown" and r.unknown_reasons


@pytest.mark.parametrize(("f", "inv", "comp", "fragment"), [
    ("txn", [["append", "x", 1]], [["append", "x", 1]], "Kafka txn's value"),
    ("send", 5, 5, "Kafka send's value"),
    ("send", [["send", "x"]], [["send", "x"]], "no [:send key message]"),
    ("poll", None, [["poll", [1, 2]]], "a poll's result must map"),
    ("poll", None, {"x": [[0]]}, "not an [offset message] pair"),
    ("assign", 3, 3, "takes a list of keys"),
])
def test_ops_that_are_no_kafka_ops_are_errors(f: str, inv: Any, comp: Any,
                                              fragment: str) -> None:
    h = H().send(0, "x", 0, 0).op(1, f, inv, "ok", comp)
    with pytest.raises(HistoryError, match=re.escape(fragment)) as err:
        check_kafka(h.ops)
    assert err.value.op_index == 3


# --- Jepsen's precommitted-read and unseen ------------------------------------------------


def test_precommitted_read() -> None:
    # Jepsen's precommitted-read-test: a txn polls the message it sends, before it commits
    h = H().op(0, "txn", [["send", "x", "a"], ["poll"]], "ok",
               [["send", "x", [0, "a"]], ["poll", {"x": [[0, "a"]]}]])
    r = check_kafka(h.ops)
    assert r.anomaly_types == ["precommitted-read"] and r.valid is False
    assert "'a'" in r.anomalies["precommitted-read"][0] and "op 1" in r.anomalies[
        "precommitted-read"][0]
    # an aborted txn that saw its own send broke the rule too (Jepsen checks every op);
    # one case per op however many keys
    both = H().op(0, "txn", [["send", "x", "a"], ["send", "y", "b"], ["poll"]], "fail",
                  [["send", "x", [0, "a"]], ["send", "y", [0, "b"]],
                   ["poll", {"x": [[0, "a"]], "y": [[0, "b"]]}]])
    r = check_kafka(both.ops)
    assert len(r.anomalies["precommitted-read"]) == 1
    # polling another producer's message, or one's own in a later op, is fine
    ok = (H().op(0, "txn", [["send", "x", "a"], ["poll"]], "ok",
                 [["send", "x", [1, "a"]], ["poll", {"x": [[0, "b"]]}]])
          .op(1, "send", [["send", "x", "b"]], "ok", [["send", "x", [0, "b"]]])
          .op(0, "txn", [["poll"]], "ok", [["poll", {"x": [[1, "a"]]}]]))
    assert check_kafka(ok.ops).valid is True


def test_unseen_counts_acknowledged_sends_no_ok_poll_returned() -> None:
    # Jepsen's unseen-test: two sends, then polls that see each in turn
    h = (H().poll(0, {}).op(0, "send", [["send", "x", "a"], ["send", "x", "b"]], "ok",
                            [["send", "x", [0, "a"]], ["send", "x", [1, "b"]]])
         .poll(0, {"x": [[0, "a"]]}))
    r = check_kafka(h.ops)
    assert r.anomaly_types == ["unseen"] and r.valid is False
    assert r.details["kafka"]["unseen"] == {"'x'": 1}
    assert "['b']" in r.anomalies["unseen"][0]
    h.poll(0, {"x": [[1, "b"]]})
    r = check_kafka(h.ops)
    assert r.valid is True and r.details["kafka"]["unseen"] == {}
    # an indeterminate send may never have landed: not unseen
    info = H().send(0, "x", 1, None, typ="info").poll(1, {})
    assert check_kafka(info.ops).valid is True
    # the explanation lists at most UNSEEN_SHOWN messages per key
    many = H()
    for i in range(40):
        many.send(0, "y", i, i)
    r = check_kafka(many.ops)
    assert r.details["kafka"]["unseen"] == {"'y'": 40}
    assert "40 acknowledged" in r.anomalies["unseen"][0] and "and 8 more" in r.anomalies[
        "unseen"][0]
