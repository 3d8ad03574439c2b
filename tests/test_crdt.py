"""Eventual merge: CRDT laws and order independence."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from selfhood.events import (
    Event,
    Hlc,
    MemoryWritten,
    OwnershipClaimed,
    RuleAdded,
    RuleRevoked,
    TurnAppended,
    make_event,
)
from selfhood.projections.crdt import fold_eventual, merge_eventual, merge_states
from selfhood.projections.state import InstanceState, fingerprint
from selfhood.projections.strategies import event_lists


def fp(s: InstanceState) -> str:
    return fingerprint(s)


@settings(max_examples=200, deadline=None)
@given(event_lists(max_size=30), st.randoms(use_true_random=False))
def test_any_delivery_order_converges(events: list[Event], rnd: random.Random) -> None:
    ref = fold_eventual(events, "i1")
    shuffled = list(events)
    rnd.shuffle(shuffled)
    dup = shuffled + rnd.sample(shuffled, len(shuffled) // 2)
    assert fp(fold_eventual(dup, "i1")) == fp(ref)
    assert ref.transcript == sorted(ref.transcript, key=lambda t: (t.hlc, t.writer, t.event_id))
    assert ref.case_bank == sorted(ref.case_bank, key=lambda c: (c.hlc, c.writer, c.event_id))


def _split(events: list[Event], rnd: random.Random) -> InstanceState:
    return fold_eventual([e for e in events if rnd.random() < 0.6], "i1")


@settings(max_examples=200, deadline=None)
@given(event_lists(max_size=30), st.randoms(use_true_random=False))
def test_merge_laws(events: list[Event], rnd: random.Random) -> None:
    a, b, c = _split(events, rnd), _split(events, rnd), _split(events, rnd)
    assert fp(merge_states(a, b)) == fp(merge_states(b, a))                      # commutative
    assert fp(merge_states(merge_states(a, b), c)) == fp(merge_states(a, merge_states(b, c)))
    assert fp(merge_states(a, a)) == fp(a)                                       # idempotent
    # the join of replicas equals a replica that saw the union of their events
    union = {e.event_id for e in events if e.event_id in a.seen | b.seen}
    direct = fold_eventual([e for e in events if e.event_id in union], "i1")
    assert fp(merge_states(a, b)) == fp(direct)


@settings(max_examples=100, deadline=None)
@given(event_lists(max_size=30))
def test_merge_does_not_touch_its_inputs(events: list[Event]) -> None:
    a = fold_eventual(events[::2], "i1")
    b = fold_eventual(events[1::2], "i1")
    fa, fb = fp(a), fp(b)
    merge_states(a, b)
    assert (fp(a), fp(b)) == (fa, fb)


def ev(payload: object, writer: str, hlc: Hlc, **kw: object) -> Event:
    return make_event("i1", payload, writer=writer, hlc=hlc, **kw)  # type: ignore[arg-type]


def test_transcript_order_is_hlc_then_writer() -> None:
    e1 = ev(TurnAppended("user", "late"), "r1", Hlc(5))
    e2 = ev(TurnAppended("user", "early"), "r2", Hlc(1))
    e3 = ev(TurnAppended("user", "tie-r0"), "r0", Hlc(5))
    s = fold_eventual([e1, e2, e3], "i1")
    assert [t.content for t in s.transcript] == ["early", "tie-r0", "late"]


def test_memory_is_lww_on_hlc_not_arrival() -> None:
    new = ev(MemoryWritten("tool", "k", value="new"), "r1", Hlc(9))
    old = ev(MemoryWritten("tool", "k", value="old"), "r2", Hlc(3))
    s = InstanceState.empty("i1")
    assert merge_eventual(s, new) == "applied"
    assert merge_eventual(s, old) == "applied"
    assert merge_eventual(s, old) == "duplicate"
    assert s.memory["tool"]["k"].value == "new"
    # equal hlc: writer breaks the tie, the same way on every replica
    x = ev(MemoryWritten("tool", "t", value="from-r1"), "r1", Hlc(4))
    y = ev(MemoryWritten("tool", "t", value="from-r2"), "r2", Hlc(4))
    assert fold_eventual([x, y], "i1").memory["tool"]["t"].value == "from-r2"
    assert fold_eventual([y, x], "i1").memory["tool"]["t"].value == "from-r2"


def test_rules_are_remove_wins_in_any_order() -> None:
    add = ev(RuleAdded("g", "x"), "r1", Hlc(10))
    rev = ev(RuleRevoked("g"), "r2", Hlc(1))   # revoke "older" than the add still wins
    for order in ([add, rev], [rev, add]):
        s = fold_eventual(order, "i1")
        assert s.rules == {} and "g" in s.revoked


def test_eventual_does_not_fence_or_validate() -> None:
    es = [ev(OwnershipClaimed("r2"), "r2", Hlc(1), epoch=2),
          ev(TurnAppended("user", "zombie"), "r1", Hlc(2), epoch=1, read_version=0),
          ev(OwnershipClaimed("r1"), "r1", Hlc(3), epoch=1)]
    s = fold_eventual(es, "i1")
    assert [t.content for t in s.transcript] == ["zombie"]
    assert s.owner == "r2" and s.epoch == 2 and s.rejected == {}
