"""The sans-IO replica core driven by hand: inputs in, outputs out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from selfhood.consistency.ownership import Grant
from selfhood.consistency.replica import (
    LEASE_CAUGHT_UP,
    LEASE_KEEP,
    Append,
    AppendAck,
    Clock,
    Forward,
    ModelCall,
    Output,
    Poll,
    Records,
    Replica,
    ReplicaConfig,
    Reply,
    Request,
    make_replica,
)
from selfhood.events import Event, seeded_event_ids
from selfhood.projections.state import fingerprint

MS = 1_000_000
T = "i0/transcript"


class FakeLog:
    """A one-partition log, enough to run the protocol step by step."""

    def __init__(self, shards: int = 1) -> None:
        self.parts: list[list[Event]] = [[] for _ in range(shards)]

    def append(self, a: Append) -> AppendAck:
        pos = []
        for p, ev in a.entries:
            pos.append((p, len(self.parts[p])))
            self.parts[p].append(ev)
        return AppendAck(a.batch_id, pos, self.records(a.from_offsets.items()))

    def records(self, offsets: Any, barrier: int | None = None) -> Records:
        chunks = [(p, [(s + k, ev) for k, ev in enumerate(self.parts[p][s:])],
                   len(self.parts[p])) for p, s in offsets if s < len(self.parts[p])]
        ends = [len(x) for x in self.parts] if barrier is not None else None
        return Records(chunks, ends, barrier)

    def poll(self, p: Poll) -> Records:
        return self.records(enumerate(p.from_offsets), p.barrier_id)


def c(t: int) -> Clock:
    """Both clocks at ``t`` (no skew)."""
    return Clock(t, t)


def pump(r: Replica, log: FakeLog, outs: Sequence[Output], now: int) -> list[Reply]:
    """Carry Appends, Polls and ModelCalls to the log or model and back until only replies."""
    replies: list[Reply] = []
    todo = list(outs)
    while todo:
        o = todo.pop(0)
        if isinstance(o, Reply):
            replies.append(o)
        elif isinstance(o, Append):
            todo.extend(r.on_append_ack(log.append(o), c(now)))
        elif isinstance(o, Poll):
            todo.extend(r.on_records(log.poll(o), c(now)))
        elif isinstance(o, ModelCall):
            todo.extend(r.on_model_reply(o.call_id, f"reply:{o.digest[:8]}", c(now)))
        else:
            raise AssertionError(f"unexpected output {o!r}")
    return replies


def seq_replica(name: str = "r0", **kw: Any) -> Replica:
    kw.setdefault("shards", 1)
    kw.setdefault("outbox_ms", 0)
    return make_replica(name, ReplicaConfig(mode=kw.pop("mode", "sequential"), **kw), ("i0",),
                        new_id=seeded_event_ids(name))


def own(r: Replica, log: FakeLog, epoch: int = 1, now: int = 0) -> None:
    pump(r, log, r.on_grant(Grant("i0", 0, r.name, epoch), c(now)), now)
    assert r.owns("i0")


def txn(rid: int, mops: list[list[Any]], token: dict[int, int] | None = None) -> Request:
    return Request(rid, "txn", mops, "i0", token, timeout_ns=10**12)


def test_sequential_write_is_acked_only_from_the_log() -> None:
    log, r = FakeLog(), seq_replica()
    own(r, log)
    outs = r.on_request(txn(1, [["r", T, None], ["append", T, 5]]), c(0))
    assert all(not isinstance(o, Reply) for o in outs), "no ack before the log has it"
    assert any(isinstance(o, Append) for o in outs)
    (rep,) = pump(r, log, outs, 1)
    assert rep.type == "ok" and rep.value == [["r", T, []], ["append", T, 5]]
    assert rep.token == {0: 2}  # claim + turn
    assert [e.kind for e in log.parts[0]] == ["ownership_claimed", "turn_appended"]


def test_non_owner_forwards_writes_to_the_owner() -> None:
    r1 = seq_replica("r1")
    r1.on_grant(Grant("i0", 0, "r0", 1), c(0))
    (fwd,) = r1.on_request(txn(1, [["append", T, 1]]), c(0))
    assert isinstance(fwd, Forward) and fwd.to == "r0" and fwd.request.hops == 1
    # a second hop is refused rather than bounced around
    (rep,) = r1.on_request(fwd.request, c(0))
    assert isinstance(rep, Reply) and rep.type == "fail" and rep.error == "not-owner"


def test_session_token_read_waits_until_applied() -> None:
    log, owner, reader = FakeLog(), seq_replica("r0"), seq_replica("r1")
    own(owner, log)
    reader.on_grant(Grant("i0", 0, "r0", 1), c(0))
    (ack,) = pump(owner, log, owner.on_request(txn(1, [["append", T, 7]]), c(0)), 0)
    # the reader has applied nothing yet; a read with the writer's token must wait
    outs = reader.on_request(txn(2, [["r", T, None]], ack.token), c(0))
    assert not any(isinstance(o, Reply) for o in outs)
    (rep,) = pump(reader, log, outs, 1)
    assert rep.value == [["r", T, [7]]]
    # without a token the same stale replica may answer at once (sequential, not linearizable)
    fresh = seq_replica("r2")
    fresh.log_contact = 0
    (rep2,) = fresh.on_request(txn(3, [["r", T, None]]), c(0))
    assert isinstance(rep2, Reply) and rep2.value == [["r", T, []]]


def test_read_waiting_too_long_fails_and_log_out_of_reach_refuses() -> None:
    r = seq_replica(lease_ms=100)
    req = Request(1, "txn", [["r", T, None]], "i0", {0: 5}, timeout_ns=50 * MS)
    outs = r.on_request(req, c(0))
    assert not any(isinstance(o, Reply) for o in outs)
    late = [o for o in r.on_tick(c(60 * MS)) if isinstance(o, Reply)]
    assert late and late[0].type == "fail" and late[0].error == "read-timeout"
    (refused,) = r.on_request(txn(2, [["r", T, None]]), c(500 * MS))
    assert isinstance(refused, Reply) and refused.type == "fail" and refused.error == "unavailable"


def test_linearizable_read_barrier_sees_writes_of_other_replicas() -> None:
    log, owner = FakeLog(), seq_replica("r0")
    own(owner, log)
    pump(owner, log, owner.on_request(txn(1, [["append", T, 3]]), c(0)), 0)
    lin = seq_replica("r1", mode="linearizable")
    outs = lin.on_request(txn(2, [["r", T, None]]), c(0))
    assert [type(o) for o in outs] == [Poll] and outs[0].barrier_id is not None  # type: ignore[union-attr]
    (rep,) = pump(lin, log, outs, 1)
    assert rep.value == [["r", T, [3]]]


def test_conditional_register_writes_abort_identically_everywhere() -> None:
    log, r0 = FakeLog(), seq_replica("r0")
    own(r0, log)
    k = "i0/mem/tool/k0"
    a = r0.on_request(txn(1, [["w", k, 1]]), c(0))
    b = r0.on_request(txn(2, [["w", k, 2]]), c(0))  # same read version: a conflict
    replies = pump(r0, log, a + b, 1)
    assert sorted(x.type for x in replies) == ["fail", "ok"]
    assert {x.error for x in replies if x.type == "fail"} == {"aborted"}
    other = seq_replica("r1")
    pump(other, log, [Poll([0])], 2)
    assert fingerprint(other.states["i0"]) == fingerprint(r0.states["i0"])
    assert list(other.states["i0"].rejected.values()) == ["aborted"]


def test_zombie_writes_are_fenced_and_fencing_off_lets_them_in() -> None:
    for fencing, expect in ((True, "fail"), (False, "ok")):
        log, zombie, heir = FakeLog(), seq_replica("r0", fencing=fencing), seq_replica(
            "r1", fencing=fencing)
        own(zombie, log, epoch=1)
        heir.on_grant(Grant("i0", 0, "r0", 1), c(0))
        own(heir, log, epoch=2)  # the coordinator moved i0 while r0 was paused
        outs = zombie.on_request(txn(1, [["append", T, 9]]), c(1))  # r0 never heard
        (rep,) = pump(zombie, log, outs, 2)
        assert rep.type == expect
        if fencing:
            assert rep.error == "fenced" and zombie.stats["stale_epoch_applied"] == 0
            assert zombie.states["i0"].transcript == []
        else:
            assert zombie.stats["stale_epoch_applied"] == 1


def test_eventual_acks_at_once_ships_on_tick_and_recovers_its_durable_outbox() -> None:
    log = FakeLog()
    r = seq_replica("r0", mode="eventual")
    (rep,) = r.on_request(txn(1, [["append", T, 1]]), c(0))
    assert isinstance(rep, Reply) and rep.type == "ok"
    assert log.parts[0] == [] and len(r.outbox) == 1
    appends = [o for o in r.on_tick(c(10 * MS)) if isinstance(o, Append)]
    assert len(appends) == 1
    pump(r, log, appends, 11 * MS)
    assert r.outbox == [] and len(log.parts[0]) == 1
    # a second write is acked but not shipped when the process dies
    r.on_request(txn(2, [["append", T, 2]]), c(12 * MS))
    disk = r.durable_outbox()
    assert [ev.event_id for _, ev in disk] == [ev.event_id for _, ev in r.outbox]
    # without its disk a new process would only know what the log has
    bare = seq_replica("r0", mode="eventual")
    pump(bare, log, [Poll([0])], 20 * MS)
    assert bare.observe("i0")["transcript"] == [1]
    # with it, the write is back at once and shipped on the next tick
    reborn = seq_replica("r0", mode="eventual")
    reborn.recover(disk, c(20 * MS))
    pump(reborn, log, [Poll([0])], 21 * MS)
    assert reborn.observe("i0")["transcript"] == [1, 2]
    pump(reborn, log, [o for o in reborn.on_tick(c(30 * MS)) if isinstance(o, Append)], 31 * MS)
    assert reborn.outbox == [] and len(log.parts[0]) == 2


def test_sharded_memory_reports_turns_whose_memory_is_missing() -> None:
    k = "i0/mem/subtask/k0"
    for atomic in (False, True):
        log = FakeLog(shards=2)
        cfg = {"shards": 2, "sharded_memory": True, "atomic_memory": atomic}
        w = seq_replica("r0", **cfg)
        own(w, log)
        assert len(log.parts[0]) == len(log.parts[1]) == 1  # the claim is a pair
        reader = seq_replica("r1", **cfg)
        reader.log_contact = 0
        reader.on_records(log.records([(0, 0), (1, 0)]), c(0))
        assert reader.states["i0"].owner == "r0"
        outs = w.on_request(txn(1, [["append", T, 1], ["w", k, 2]]), c(0))
        appends = [o for o in outs if isinstance(o, Append)]
        assert len(appends) == (1 if atomic else 2)
        # only the partition holding the turn reaches the log
        home = w.home["i0"]
        turn_only = [a for a in appends if any(p == home for p, _ in a.entries)]
        if not atomic:
            for a in turn_only:
                a.entries = [(p, e) for p, e in a.entries if p == home]
                log.append(a)
        else:
            # the atomic append carries both; a reader that sees only the turn's
            # partition holds the turn back
            log.append(appends[0])
        recs = log.records([(home, 1)])
        reader.on_records(recs, c(1))
        (rep,) = reader.on_request(txn(2, [["r", T, None], ["r", k, None]]), c(1))
        assert isinstance(rep, Reply)
        if atomic:
            assert rep.value == [["r", T, []], ["r", k, None]] and rep.extra is None
        else:
            assert rep.value == [["r", T, [1]], ["r", k, None]]
            assert rep.extra is not None and rep.extra["deps_missing"][0][0] == 1


def test_deterministic_model_reply_is_a_function_of_the_context_alone() -> None:
    from selfhood.consistency.model import DeterministicModel, ModelPort

    a = seq_replica("r0", mode="eventual")
    b = seq_replica("r1", mode="eventual")
    pa = [o for o in a.on_request(txn(1, [["append", T, 1]]), c(0)) if isinstance(o, Reply)]
    pb = [o for o in b.on_request(txn(2, [["append", T, 2]]), c(0)) if isinstance(o, Reply)]
    assert pa and pb
    # exchange events in opposite orders: same context, so the same reply
    for src, dst in ((a, b), (b, a)):
        for p, ev in src.outbox:
            dst.on_records(Records([(p, [(0, ev)], 1)]), c(1))
            dst.next_offset[p] = 0
    model: ModelPort = DeterministicModel()
    sa, sb = a.states["i0"], b.states["i0"]
    assert fingerprint(sa) == fingerprint(sb)
    assert model.reply(sa, fingerprint(sa)) == model.reply(sb, fingerprint(sb))
    # the core asks its runtime for the reply (a ModelCall) and answers the probe with it
    replies = []
    for r in (a, b):
        (call,) = r.on_request(Request(9, "probe", None, "i0"), c(2))
        assert isinstance(call, ModelCall) and call.digest == fingerprint(r.states["i0"])
        (rep,) = r.on_model_reply(call.call_id, model.reply(call.state, call.digest), c(3))
        assert isinstance(rep, Reply) and rep.type == "ok"
        replies.append(rep.value["reply"])
        assert r.observe("i0")["reply"] == rep.value["reply"]
    assert replies[0] == replies[1] == model.reply(sa, fingerprint(sa))
    fresh = seq_replica("r2", mode="eventual").states["i0"]
    assert model.reply(fresh, fingerprint(fresh)) != model.reply(sa, fingerprint(sa))


def test_model_call_is_an_output_input_pair_asked_once_per_context() -> None:
    r = seq_replica("r0", mode="eventual")
    outs = r.on_request(Request(1, "probe", None, "i0"), c(0))
    outs += r.on_request(Request(2, "probe", None, "i0"), c(0))
    (call,) = outs  # one call for the same context; both probes wait on it
    assert isinstance(call, ModelCall) and call.instance == "i0"
    done = r.on_model_reply(call.call_id, "hello", c(1))
    assert sorted((x.req_id, x.value["reply"]) for x in done if isinstance(x, Reply)) == [
        (1, "hello"), (2, "hello")]
    assert r.on_model_reply(call.call_id, "again", c(1)) == []  # answered already
    # the same context again: answered at once; a changed context asks again
    (rep,) = r.on_request(Request(3, "probe", None, "i0"), c(2))
    assert isinstance(rep, Reply) and rep.value["reply"] == "hello"
    r.on_request(txn(4, [["append", T, 1]]), c(3))
    (call2,) = r.on_request(Request(5, "probe", None, "i0"), c(4))
    assert isinstance(call2, ModelCall) and call2.digest != call.digest


def test_records_may_have_offset_gaps_and_the_replica_resumes_from_next_offset() -> None:
    src = FakeLog()
    owner = seq_replica("r0")
    own(owner, src)
    pump(owner, src, owner.on_request(txn(1, [["append", T, 1]]), c(0)), 0)
    pump(owner, src, owner.on_request(txn(2, [["append", T, 2]]), c(0)), 0)
    claim, t1, t2 = src.parts[0]
    # a transactional log: markers at 1, 3 and 5 take offsets but hold no record
    r = seq_replica("r1")
    outs = r.on_records(Records([(0, [(0, claim), (2, t1)], 4)]), c(1))
    assert outs == [] and r.next_offset == [4]
    # a token past a marker is satisfied by the chunk's next_offset, not offset + 1
    (rep,) = r.on_request(txn(3, [["r", T, None]], {0: 4}), c(1))
    assert isinstance(rep, Reply) and rep.value == [["r", T, [1]]] and rep.token == {0: 4}
    # a refetch that overlaps what was applied skips it (no duplicate folds)
    r.on_records(Records([(0, [(2, t1), (4, t2)], 6)]), c(2))
    assert r.next_offset == [6] and r.stats["duplicate"] == 0
    assert r.observe("i0")["transcript"] == [1, 2]
    # an empty fetch can still move past a trailing marker
    r.on_records(Records([(0, [], 7)]), c(3))
    assert r.next_offset == [7]


def test_non_owners_learn_the_owner_from_the_claim_they_apply() -> None:
    log, owner, other = FakeLog(), seq_replica("r0"), seq_replica("r1")
    own(owner, log, epoch=3)
    # r1 got no grant: a write waits until the log names the owner, then is forwarded
    outs = other.on_request(txn(1, [["append", T, 1]]), c(0))
    assert [type(o) for o in outs] == []
    assert other.owner_of("i0") is None
    fwd = other.on_records(log.poll(Poll([0])), c(1))
    assert other.owner_of("i0") == ("r0", 3)
    assert len(fwd) == 1 and isinstance(fwd[0], Forward) and fwd[0].to == "r0"
    assert fwd[0].request.timeout_ns == 10**12 - 1  # relative: what is left of it
    # a write nobody claims fails at its deadline (nothing was appended: certainly no effect)
    lone = seq_replica("r2")
    lone.on_request(Request(2, "txn", [["append", T, 2]], "i0", None, timeout_ns=5 * MS), c(0))
    assert not [o for o in lone.on_tick(c(4 * MS)) if isinstance(o, Reply)]
    (late,) = [o for o in lone.on_tick(c(5 * MS)) if isinstance(o, Reply)]
    assert late.type == "fail" and late.error == "not-owner"


def test_the_hlc_reads_the_wall_clock_and_the_lease_the_monotonic_one() -> None:
    r = seq_replica("r0", mode="eventual")
    r.on_request(txn(1, [["append", T, 1]]), Clock(0, 7_000 * MS))  # wall 7 s ahead
    ((_, ev),) = r.outbox
    assert ev.hlc.wall == 7_000
    s = seq_replica("r1", lease_ms=100)
    s.on_records(Records([]), Clock(0, 0))
    # a wall clock far off does not touch the lease; the monotonic clock does
    (ok,) = s.on_request(txn(2, [["r", T, None]]), Clock(50 * MS, 10**15))
    assert isinstance(ok, Reply) and ok.type == "ok"
    (refused,) = s.on_request(txn(3, [["r", T, None]]), Clock(200 * MS, 0))
    assert isinstance(refused, Reply) and refused.error == "unavailable"


def test_a_bounded_fetch_renews_the_lease_only_once_the_replica_caught_up() -> None:
    """A replica healed after being cut off: the brokers answer at once, but its bounded
    fetch has not caught up yet. Renewing the lease on that answer served a read of the
    old state (a G-single on the real cluster); with `caught-up` it refuses until it has
    applied up to the end the poll saw. An append's acknowledgement renews nothing."""
    log, owner = FakeLog(), seq_replica("r0")
    own(owner, log)
    for k in range(3):
        pump(owner, log, owner.on_request(txn(k + 1, [["append", T, k]]), c(0)), 0)
    end = len(log.parts[0])
    behind = seq_replica("r1", lease_ms=100)
    behind.on_grant(Grant("i0", 0, "r0", 1), c(0))
    t = 10_000 * MS  # long after its last contact: the lease has run out
    # the poll's answer came back with the end, but the fetch returned only one record
    first = log.parts[0][:1]
    part = Records([(0, [(0, first[0])], 1)], [end], None, LEASE_CAUGHT_UP)
    behind.on_records(part, c(t))
    (refused,) = behind.on_request(txn(10, [["r", T, None]]), c(t + MS))
    assert isinstance(refused, Reply) and refused.error == "unavailable", refused
    # an append's acknowledgement proves contact, not currency
    behind.on_records(Records([], lease=LEASE_KEEP), c(t + 2 * MS))
    (still,) = behind.on_request(txn(11, [["r", T, None]]), c(t + 3 * MS))
    assert isinstance(still, Reply) and still.error == "unavailable", still
    # the next round reaches the end: the lease is renewed, the read sees every append
    rest = [(k, ev) for k, ev in enumerate(log.parts[0]) if k >= 1]
    behind.on_records(Records([(0, rest, end)], [end], None, LEASE_CAUGHT_UP), c(t + 4 * MS))
    (ok,) = behind.on_request(txn(12, [["r", T, None]]), c(t + 5 * MS))
    assert isinstance(ok, Reply) and ok.type == "ok" and ok.value == [["r", T, [0, 1, 2]]], ok
    # and a log that hands everything up to its end (the simulator's) renews at once
    sim = seq_replica("r2", lease_ms=100)
    sim.on_records(Records([]), c(t))
    (ok2,) = sim.on_request(txn(13, [["r", T, None]]), c(t + MS))
    assert isinstance(ok2, Reply) and ok2.type == "ok", ok2


def test_a_partial_poll_round_serves_no_read_until_every_partition_reached_the_end() -> None:
    """Each round fetches partition by partition, each fetch bounded: one may reach the log
    end the round saw while another falls short (the real cluster served about one read in
    ten from such a state). Served from it, a session read i2 with P's second write and
    then i0 without P's first: a G-single-item-process. Reads now wait for a whole round,
    and nothing past the end a round saw is applied."""
    cfg = ReplicaConfig(mode="sequential", shards=2, lease_ms=100, outbox_ms=0)
    log = FakeLog(shards=2)
    owner = make_replica("r0", cfg, ("i0", "i2"), new_id=seeded_event_ids("r0"))
    for inst, p in (("i0", 0), ("i2", 1)):
        pump(owner, log, owner.on_grant(Grant(inst, p, "r0", 1), c(0)), 0)
    before = [len(x) for x in log.parts]  # the two claims
    w1, w2 = (Request(k, "txn", [["append", f"{i}/transcript", k]], i, None, 10**12)
              for k, i in ((1, "i0"), (2, "i2")))
    for w in (w1, w2):  # process P: i0 first, then i2
        (ack,) = pump(owner, log, owner.on_request(w, c(0)), 0)
        assert ack.type == "ok"
    ends = [len(x) for x in log.parts]
    reader = make_replica("r1", cfg, ("i0", "i2"), new_id=seeded_event_ids("r1"))
    t = 1_000 * MS
    whole = [(p, list(enumerate(log.parts[p][:before[p]])), before[p]) for p in (0, 1)]
    reader.on_records(Records(whole, before, None, LEASE_CAUGHT_UP), c(t))
    # the next round saw both writes at the end, but the fetch of partition 0 fell short
    p1 = list(enumerate(log.parts[1]))[before[1]:]
    reader.on_records(Records([(1, p1, ends[1])], ends, None, LEASE_CAUGHT_UP), c(t + MS))

    def read(rid: int, inst: str) -> list[Output]:
        return reader.on_request(Request(rid, "txn", [["r", f"{inst}/transcript", None]], inst,
                                         None, 10**12), c(t + 2 * MS))

    waiting = read(3, "i2") + read(4, "i0")  # process Q: i2, then i0
    assert not [o for o in waiting if isinstance(o, Reply)], waiting
    # a whole round: both reads answer from one snapshot of the log
    p0 = list(enumerate(log.parts[0]))[before[0]:]
    done = reader.on_records(Records([(0, p0, ends[0])], ends, None, LEASE_CAUGHT_UP),
                             c(t + 3 * MS))
    got = {r.req_id: r.value for r in done if isinstance(r, Reply)}
    assert got == {3: [["r", "i2/transcript", [2]]], 4: [["r", "i0/transcript", [1]]]}, done
    # a fetch that ran past the end the round saw applies nothing past it
    pump(owner, log, owner.on_request(Request(5, "txn", [["append", "i2/transcript", 5]],
                                              "i2", None, 10**12), c(0)), 0)
    past = list(enumerate(log.parts[1]))[ends[1]:]
    reader.on_records(Records([(1, past, len(log.parts[1]))], ends, None, LEASE_CAUGHT_UP),
                      c(t + 4 * MS))
    assert reader.next_offset == ends
    (now_ok,) = read(6, "i2")
    assert isinstance(now_ok, Reply) and now_ok.value == [["r", "i2/transcript", [2]]]



def test_a_waiting_read_is_refused_once_the_lease_runs_out_not_held_to_its_deadline() -> None:
    """A token read waits for the replica to catch up; a replica cut off from the log (or
    falling further behind than a poll round fetches) may never do so. Held to its
    deadline the read failed `read-timeout`, which the client does not take for a down
    replica, so the session kept reading from the stuck one; it is refused `unavailable`
    at the first tick past the lease, as a read arriving then is. No waiting read is
    served outside the lease; a final read (not lease-bound) keeps waiting for its end."""
    log, owner = FakeLog(), seq_replica("r0")
    own(owner, log)
    (ack,) = pump(owner, log, owner.on_request(txn(1, [["append", T, 7]]), c(0)), 0)
    reader = seq_replica("r1", lease_ms=100)
    reader.on_grant(Grant("i0", 0, "r0", 1), c(0))
    t = 10_000 * MS
    reader.on_records(Records([], [0], None, LEASE_CAUGHT_UP), c(t))  # current; then cut off
    waiting = reader.on_request(Request(2, "txn", [["r", T, None]], "i0", ack.token,
                                        timeout_ns=5_000 * MS), c(t + 10 * MS))
    final = reader.on_request(Request(3, "final-read", {"replica": "r1"}, "i0", None,
                                      timeout_ns=5_000 * MS), c(t + 10 * MS))
    assert not [o for o in waiting + final if isinstance(o, Reply)]
    assert not [o for o in reader.on_tick(c(t + 90 * MS)) if isinstance(o, Reply)]  # in lease
    # the write reaches it past the lease through a contact that renews nothing: not served
    late = reader.on_records(Records(log.records([(0, 0)]).chunks, lease=LEASE_KEEP),
                             c(t + 105 * MS))
    assert not [o for o in late if isinstance(o, Reply)] and reader.next_offset == [2], late
    (refused,) = [o for o in reader.on_tick(c(t + 120 * MS)) if isinstance(o, Reply)]
    assert refused.req_id == 2 and refused.type == "fail" and refused.error == "unavailable"
    # the final read waits on: a poll round that reaches the end it saw answers it
    (barrier,) = [o.barrier_id for o in final if isinstance(o, Poll)]
    done = reader.on_records(Records([], [2], barrier, LEASE_CAUGHT_UP), c(t + 130 * MS))
    (answer,) = [o for o in pump(reader, log, done, t + 130 * MS) if isinstance(o, Reply)]
    assert answer.req_id == 3 and answer.type == "ok" and answer.value["transcript"] == [7]
