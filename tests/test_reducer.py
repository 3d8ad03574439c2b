"""Sequential reducer: validation, fencing, idempotency, determinism, upcasting."""

from __future__ import annotations

import random

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from selfhood.errors import PoisonEvent
from selfhood.eventlog.base import LogPosition
from selfhood.events import (
    Case,
    Event,
    MemoryWritten,
    OwnershipClaimed,
    RuleAdded,
    RuleRevoked,
    TurnAppended,
    decode,
    encode,
    make_event,
)
from selfhood.projections.reducer import apply_sequential, fold_all, fold_sequential
from selfhood.projections.state import InstanceState, Outcome, fingerprint
from selfhood.projections.strategies import event_lists


def ev(payload: object, **kw: object) -> Event:
    kw.setdefault("writer", "r1")
    return make_event("i1", payload, **kw)  # type: ignore[arg-type]


def test_applies_in_log_order() -> None:
    st_ = InstanceState.empty("i1")
    outs = [apply_sequential(st_, e) for e in (
        ev(TurnAppended("user", "hi")), ev(TurnAppended("assistant", "hello")),
        ev(MemoryWritten("tool", "k", value="1")), ev(MemoryWritten("tool", "k", value="2")),
        ev(MemoryWritten("case_bank", "c", case=Case("s", "p", 1.0))),
        ev(RuleAdded("g", "be kind")))]
    assert outs == ["applied"] * 6
    assert [(t.role, t.content) for t in st_.transcript] == [("user", "hi"),
                                                             ("assistant", "hello")]
    assert st_.memory["tool"]["k"].value == "2"
    assert [c.key for c in st_.case_bank] == ["c"]
    assert st_.rules == {"g": "be kind"} and st_.version == 6


def test_duplicate_is_a_noop_even_when_rejected() -> None:
    st_ = InstanceState.empty("i1")
    e = ev(TurnAppended("user", "hi"))
    assert apply_sequential(st_, e) == "applied"
    fp = fingerprint(st_)
    assert apply_sequential(st_, e) == "duplicate"
    assert fingerprint(st_) == fp and st_.version == 1
    stale = ev(TurnAppended("user", "x"), read_version=0)
    assert apply_sequential(st_, stale) == "aborted"
    assert apply_sequential(st_, stale) == "duplicate"
    assert st_.rejected == {stale.event_id: "aborted"}


def test_read_version_conflicts_per_key() -> None:
    st_ = InstanceState.empty("i1")
    apply_sequential(st_, ev(MemoryWritten("tool", "a", value="1")))      # v1 writes tool/a
    apply_sequential(st_, ev(MemoryWritten("tool", "b", value="1")))      # v2 writes tool/b
    # read at v1: tool/a unchanged since -> ok; tool/b written at v2 > 1 -> abort
    assert apply_sequential(st_, ev(MemoryWritten("tool", "a", value="2"),
                                    read_version=1)) == "applied"        # v3
    assert apply_sequential(st_, ev(MemoryWritten("tool", "b", value="2"),
                                    read_version=1)) == "aborted"
    assert st_.memory["tool"]["b"].value == "1"
    assert apply_sequential(st_, ev(MemoryWritten("tool", "b", value="3"),
                                    read_version=2)) == "applied"
    # a turn read at v0 conflicts with no transcript write yet
    assert apply_sequential(st_, ev(TurnAppended("user", "t"), read_version=0)) == "applied"
    # whole-instance validation is stricter
    assert apply_sequential(st_, ev(MemoryWritten("tool", "zzz", value="1"), read_version=3),
                            validation="instance") == "aborted"
    assert apply_sequential(st_, ev(MemoryWritten("tool", "zzz", value="1"),
                                    read_version=st_.version),
                            validation="instance") == "applied"


def test_epoch_fencing_and_the_unfenced_baseline() -> None:
    def run(fencing: bool) -> tuple[list[Outcome], InstanceState]:
        st_ = InstanceState.empty("i1")
        outs = [apply_sequential(st_, e, fencing=fencing) for e in (
            ev(OwnershipClaimed("r1"), epoch=1),
            ev(TurnAppended("user", "a"), epoch=1),
            ev(OwnershipClaimed("r2"), epoch=2, writer="r2"),
            ev(TurnAppended("user", "zombie"), epoch=1),          # old owner wakes up
            ev(OwnershipClaimed("r3"), epoch=2, writer="r3"),     # competing claim, same epoch
            ev(OwnershipClaimed("r1"), epoch=1),                  # stale claim
            ev(TurnAppended("user", "b"), epoch=2, writer="r2"),
            ev(OwnershipClaimed("r2"), epoch=2, writer="r2"),     # re-claim by the owner
        )]
        return outs, st_

    outs, st_ = run(True)
    assert outs == ["applied", "applied", "applied", "fenced", "fenced", "fenced",
                    "applied", "applied"]
    assert [t.content for t in st_.transcript] == ["a", "b"]
    assert st_.epoch == 2 and st_.owner == "r2"
    outs, st_ = run(False)
    assert set(outs) == {"applied"}
    assert [t.content for t in st_.transcript] == ["a", "zombie", "b"]


def test_revoked_rule_never_comes_back() -> None:
    st_ = InstanceState.empty("i1")
    for e in (ev(RuleAdded("g", "x")), ev(RuleRevoked("g", "bad")), ev(RuleAdded("g", "y"))):
        apply_sequential(st_, e)
    assert st_.rules == {} and set(st_.revoked) == {"g"}


def test_poison_events_leave_the_state_untouched() -> None:
    st_ = InstanceState.empty("i1")
    apply_sequential(st_, ev(TurnAppended("user", "hi")))
    fp = fingerprint(st_)
    with pytest.raises(PoisonEvent):
        apply_sequential(st_, make_event("other", TurnAppended("user", "x"), writer="r1"))
    with pytest.raises(PoisonEvent, match="without a case"):
        apply_sequential(st_, ev(MemoryWritten("case_bank", "c")))
    assert fingerprint(st_) == fp and len(st_.seen) == 1


def test_positions_are_tracked_for_every_outcome() -> None:
    st_ = InstanceState.empty("i1")
    e = ev(TurnAppended("user", "hi"))
    apply_sequential(st_, e, LogPosition(2, 10))
    apply_sequential(st_, e, LogPosition(2, 11))
    assert st_.positions == {2: 12}


@settings(max_examples=150, deadline=None)
@given(event_lists(), st.booleans())
def test_fold_is_deterministic(events: list[Event], fencing: bool) -> None:
    a = fold_sequential(events, "i1", fencing=fencing)
    b = fold_sequential([decode(encode(e)) for e in events], "i1", fencing=fencing)
    assert fingerprint(a) == fingerprint(b)
    assert a.rejected == b.rejected


@settings(max_examples=150, deadline=None)
@given(event_lists(min_size=1), st.randoms(use_true_random=False))
def test_duplicates_and_redelivery_are_idempotent(events: list[Event],
                                                  rnd: random.Random) -> None:
    ref = fold_sequential(events, "i1")
    # redeliver: each event is followed by random re-sends of events already seen
    noisy: list[Event] = []
    for i, e in enumerate(events):
        noisy.append(e)
        for _ in range(rnd.randint(0, 2)):
            noisy.append(events[rnd.randint(0, i)])
    got = fold_sequential(noisy, "i1")
    assert fingerprint(got) == fingerprint(ref)
    assert got.rejected == ref.rejected


def _as_v1(e: Event) -> bytes:
    """Re-encode a current turn event the way schema v1 wrote it."""
    d = msgspec.json.decode(encode(e))
    if d["kind"] == "turn_appended":
        d["schema_version"] = 1
        d["payload"] = {"speaker": d["payload"]["role"], "text": d["payload"]["content"]}
    return msgspec.json.encode(d)


@settings(max_examples=100, deadline=None)
@given(event_lists())
def test_upcasting_old_events_gives_the_same_state(events: list[Event]) -> None:
    ref = fold_sequential(events, "i1")
    old = fold_sequential([decode(_as_v1(e)) for e in events], "i1")
    assert fingerprint(old) == fingerprint(ref)


def test_fold_all_splits_instances_and_skips_poison() -> None:
    es = [make_event("a", TurnAppended("user", "1"), writer="r"),
          make_event("b", TurnAppended("user", "2"), writer="r"),
          make_event("a", MemoryWritten("case_bank", "bad"), writer="r")]
    states = fold_all(es)
    assert sorted(states) == ["a", "b"]
    assert states["a"].version == 1 and states["b"].version == 1
