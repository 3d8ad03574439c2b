"""InstanceState fingerprint: equal meaning <=> equal fingerprint."""

from __future__ import annotations

import pytest

from selfhood.eventlog.base import LogPosition
from selfhood.events import (
    Case,
    Hlc,
    MemoryWritten,
    OwnershipClaimed,
    RuleAdded,
    RuleRevoked,
    TurnAppended,
    make_event,
)
from selfhood.projections.reducer import apply_sequential
from selfhood.projections.state import InstanceState, fingerprint


def _state(*payloads: object, writer: str = "r1", hlc0: int = 0) -> InstanceState:
    st = InstanceState.empty("i1")
    for n, p in enumerate(payloads):
        ev = make_event("i1", p, writer=writer, hlc=Hlc(hlc0 + n))  # type: ignore[arg-type]
        assert apply_sequential(st, ev) == "applied"
    return st


def test_empty_states_agree_and_differ_by_instance() -> None:
    assert fingerprint(InstanceState.empty("i1")) == fingerprint(InstanceState.empty("i1"))
    assert fingerprint(InstanceState.empty("i1")) != fingerprint(InstanceState.empty("i2"))
    assert len(fingerprint(InstanceState.empty("i1"))) == 64


def test_metadata_and_positions_do_not_change_meaning() -> None:
    a = _state(TurnAppended("user", "hi"), MemoryWritten("tool", "k", value="v"))
    b = _state(TurnAppended("user", "hi"), MemoryWritten("tool", "k", value="v"),
               writer="r2", hlc0=100)
    b.positions[3] = 17
    assert fingerprint(a) == fingerprint(b)
    assert a == b


def test_every_difference_in_meaning_changes_the_fingerprint() -> None:
    base = [TurnAppended("user", "hi"), MemoryWritten("tool", "k", value="v"),
            MemoryWritten("case_bank", "c1", case=Case("s", "p", 1.0)), RuleAdded("g", "be kind")]
    variants = [
        [TurnAppended("assistant", "hi"), *base[1:]],
        [TurnAppended("user", "ho"), *base[1:]],
        [base[0], MemoryWritten("tool", "k", value="w"), *base[2:]],
        [base[0], MemoryWritten("subtask", "k", value="v"), *base[2:]],
        [base[0], MemoryWritten("tool", "k", value=None), *base[2:]],
        [*base[:2], MemoryWritten("case_bank", "c1", case=Case("s", "p", 0.5)), base[3]],
        [*base[:3], RuleAdded("g", "be rude")],
        [*base, RuleRevoked("g")],
        [*base, OwnershipClaimed("r1")],
        [base[1], base[0], *base[2:]],  # order of turns vs memory does not matter...
    ]
    fps = {fingerprint(_state(*base))}
    for v in variants[:-1]:
        fp = fingerprint(_state(*v))
        assert fp not in fps, v
        fps.add(fp)
    # ...because the modules are separate: same meaning, same fingerprint
    assert fingerprint(_state(*variants[-1])) == fingerprint(_state(*base))
    # two turns swapped is a different conversation
    assert (fingerprint(_state(TurnAppended("user", "a"), TurnAppended("user", "b")))
            != fingerprint(_state(TurnAppended("user", "b"), TurnAppended("user", "a"))))


def test_copy_is_independent() -> None:
    a = _state(TurnAppended("user", "hi"), RuleAdded("g", "x"))
    b = a.copy()
    fp = fingerprint(a)
    apply_sequential(b, make_event("i1", TurnAppended("user", "more"), writer="r1"),
                     LogPosition(0, 5))
    apply_sequential(b, make_event("i1", RuleRevoked("g"), writer="r1"))
    assert fingerprint(a) == fp
    assert fingerprint(b) != fp
    assert a.positions == {} and b.positions == {0: 6}
    assert a.rules == {"g": "x"} and b.rules == {}


def test_summary_is_json_ready() -> None:
    a = _state(TurnAppended("user", "hi"), OwnershipClaimed("r1"))
    s = a.summary()
    assert s["instance_id"] == "i1" and s["version"] == 2
    assert s["fingerprint"] == fingerprint(a) and s["owner"] == "r1"
    assert s["transcript"] == [{"role": "user", "content": "hi"}]


def test_fingerprint_after_growth_and_inserts_equals_a_fresh_computation() -> None:
    """Any caching inside `fingerprint` must give the bytes of a from-scratch encoding."""
    from selfhood.projections.crdt import merge_eventual

    st = InstanceState.empty("i1")
    fps = []
    for n in (5, 3, 9, 1, 7):  # out-of-order hlcs: CRDT inserts in the middle
        merge_eventual(st, make_event("i1", TurnAppended("user", f"t{n}"), writer="r1",
                                      hlc=Hlc(n)))
        merge_eventual(st, make_event("i1", MemoryWritten("case_bank", f"c{n}",
                                                          case=Case("s", "p", n / 10)),
                                      writer="r1", hlc=Hlc(n)))
        fps.append(fingerprint(st))
        assert fps[-1] == fingerprint(st.copy())
    assert len(set(fps)) == len(fps)
    st.transcript = st.transcript[:2]  # a replaced list, sharing a prefix
    assert fingerprint(st) == fingerprint(st.copy())
    st.transcript = []
    assert fingerprint(st) == fingerprint(st.copy())


def test_bulk_encoded_blocks_give_the_bytes_of_a_plain_encoding(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The first fingerprint encodes rows in blocks; an insert re-encodes from a block start."""
    import msgspec

    from selfhood.projections import state as state_mod
    from selfhood.projections.crdt import merge_eventual

    monkeypatch.setattr(state_mod, "_BLOCK", 4)  # many blocks, and inserts inside them
    st = InstanceState.empty("i1")
    for n in range(0, 120, 4):  # 30 turns, encoded in bulk by the first fingerprint
        merge_eventual(st, make_event("i1", TurnAppended("user", f"t{n}"), writer="r1",
                                      hlc=Hlc(n)))
    fingerprint(st)
    for n in (2, 121, 57, 122, 9, 1, 123, 0, 63, 124):  # appends (small blocks) and inserts
        merge_eventual(st, make_event("i1", TurnAppended("assistant", f"t{n}"), writer="r1",
                                      hlc=Hlc(n)))
        plain = msgspec.json.encode([[t.role, t.content] for t in st.transcript])
        assert plain in state_mod.canonical_bytes(st)
        assert fingerprint(st) == fingerprint(st.copy())
    assert len(st.transcript) == 40
