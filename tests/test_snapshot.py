"""Snapshots: snapshot + tail equals full replay; other schema versions are never misread."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from selfhood.errors import SnapshotVersionMismatch
from selfhood.events import Event, TurnAppended, make_event
from selfhood.projections import snapshot as snap
from selfhood.projections.crdt import fold_eventual
from selfhood.projections.reducer import fold_sequential
from selfhood.projections.state import Mode, fingerprint
from selfhood.projections.strategies import event_lists


@settings(max_examples=150, deadline=None)
@given(event_lists(max_size=40), st.integers(0, 40), st.booleans())
def test_snapshot_plus_tail_equals_full_replay(events: list[Event], cut: int,
                                               eventual: bool) -> None:
    fold = fold_eventual if eventual else fold_sequential
    mode: Mode = "eventual" if eventual else "sequential"
    full = fold(events, "i1")
    head = fold(events[:cut], "i1")
    data = snap.encode_snapshot(head, mode)
    restored = snap.decode_snapshot(data, mode=mode)
    assert fingerprint(restored) == fingerprint(head)
    assert restored.seen == head.seen and restored.last_write == head.last_write
    # a redelivered head after rehydration must still be recognised as duplicate
    rest = fold(events, "i1", state=restored)
    assert fingerprint(rest) == fingerprint(full)
    assert rest.rejected == full.rejected


def test_other_schema_version_is_rejected_not_misread(monkeypatch: pytest.MonkeyPatch) -> None:
    st_ = fold_sequential([make_event("i1", TurnAppended("user", "hi"), writer="r")], "i1")
    data = snap.encode_snapshot(st_)
    assert snap.snapshot_header(data) == (snap.SNAPSHOT_SCHEMA, "sequential", "i1", 1)
    monkeypatch.setattr(snap, "SNAPSHOT_SCHEMA", snap.SNAPSHOT_SCHEMA + 1)
    with pytest.raises(SnapshotVersionMismatch, match="replaying instead"):
        snap.decode_snapshot(data)


def test_mode_mismatch_and_garbage() -> None:
    st_ = fold_sequential([make_event("i1", TurnAppended("user", "hi"), writer="r")], "i1")
    data = snap.encode_snapshot(st_, "sequential")
    with pytest.raises(SnapshotVersionMismatch, match="sequential mode"):
        snap.decode_snapshot(data, mode="eventual")
    with pytest.raises(SnapshotVersionMismatch):
        snap.decode_snapshot(b"\x00garbage")
    broken = msgspec.msgpack.encode([snap.SNAPSHOT_SCHEMA, "sequential", "i1", 1,
                                     msgspec.Raw(msgspec.msgpack.encode([1, 2]))])
    with pytest.raises(SnapshotVersionMismatch, match="corrupt"):
        snap.decode_snapshot(broken)


def test_policy() -> None:
    p = snap.SnapshotPolicy(every=10)
    assert not p.due(9, 0) and p.due(10, 0) and p.due(25, 15)
    assert not snap.SnapshotPolicy(every=0).due(10**6, 0)
