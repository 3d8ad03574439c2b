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


def _turns(n: int) -> list[Event]:
    return [make_event("i1", TurnAppended("user", f"turn {k}"), writer="r") for k in range(n)]


def test_v2_body_is_one_bin_so_the_header_never_parses_it() -> None:
    """The body is length-prefixed: a header read skips it whatever it holds."""
    st_ = fold_sequential(_turns(50), "i1")
    data = snap.encode_snapshot(st_)
    header = msgspec.msgpack.decode(data, type=tuple[int, str, str, int, bytes])
    assert header[:4] == (2, "sequential", "i1", 50) == snap.snapshot_header(data)
    assert msgspec.msgpack.decode(header[4]) == msgspec.to_builtins(
        snap._Body(st_.transcript, st_.case_bank, st_.memory, st_.rule_adds, st_.revoked,
                   st_.owner_entry, st_.positions, dict(st_.rejected),
                   list(st_.seen - snap._referenced_ids(st_)), st_.last_write))
    # garbage inside the body: the header still reads, the body is refused, not misread
    i = data.index(b"turn 7")
    bad = data[:i] + b"\xc1" * 6 + data[i + 6:]
    assert snap.snapshot_header(bad) == (2, "sequential", "i1", 50)
    with pytest.raises(SnapshotVersionMismatch, match="corrupt"):
        snap.decode_snapshot(bad)
    assert fingerprint(snap.decode_snapshot(data)) == fingerprint(st_)


def test_v1_snapshot_is_ignored_not_misread() -> None:
    """A snapshot written by schema v1 (body inline in the envelope) is refused by version."""
    st_ = fold_sequential(_turns(3), "i1")
    body = snap._Body(st_.transcript, st_.case_bank, st_.memory, st_.rule_adds, st_.revoked,
                      st_.owner_entry, st_.positions, dict(st_.rejected), [], st_.last_write)
    v1 = msgspec.msgpack.encode([1, "sequential", "i1", 3, body])
    assert snap.snapshot_header(v1) == (1, "sequential", "i1", 3)
    with pytest.raises(SnapshotVersionMismatch, match=r"v1 .*replaying instead"):
        snap.decode_snapshot(v1, mode="sequential")
