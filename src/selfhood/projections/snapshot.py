"""Snapshot codec: an `InstanceState` as versioned bytes (pure).

A snapshot is a msgpack envelope ``(schema, mode, instance_id, version, body)``
whose body (v2) is one length-prefixed msgpack ``bin``, so reading the header
is O(1) however big the state is (a v1 body was an inline array that had to be
skipped, i.e. parsed). A snapshot written by another schema version raises
`SnapshotVersionMismatch` before the body is touched, so an old layout is
never misread; callers replay instead. The body is decoded straight into the
state's own entry structs (array-like, ``gc=False``), in place in the buffer.

Snapshots are taken every N applied events by the projector
(`SnapshotPolicy`); rehydration is snapshot + tail, and must give the same
fingerprint as a full replay.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import msgspec

from selfhood.errors import SnapshotVersionMismatch
from selfhood.projections.state import (
    CaseEntry,
    InstanceState,
    MemoryRecord,
    Mode,
    Outcome,
    OwnerEntry,
    RuleEntry,
    Turn,
)

#: Bump whenever the envelope or `_Body` changes shape; older snapshots are then ignored.
#: v1: body inline in the envelope; v2: body as one msgpack bin.
SNAPSHOT_SCHEMA: Final = 2


class _Envelope(msgspec.Struct, array_like=True):
    """The header of any schema version; the body is left raw (O(1) for a bin body)."""

    schema: int
    mode: str
    instance_id: str
    version: int
    body: msgspec.Raw


class _EnvelopeOut(msgspec.Struct, array_like=True):
    schema: int
    mode: str
    instance_id: str
    version: int
    body: bytes


class _Body(msgspec.Struct, array_like=True):
    transcript: list[Turn]
    case_bank: list[CaseEntry]
    memory: dict[str, dict[str, MemoryRecord]]
    rule_adds: dict[str, RuleEntry]
    revoked: dict[str, RuleEntry]
    owner: OwnerEntry | None
    positions: dict[int, int]
    rejected: dict[str, str]
    extra_seen: list[str]
    last_write: dict[str, int]


_enc: Final = msgspec.msgpack.Encoder()
_env_dec: Final = msgspec.msgpack.Decoder(_Envelope)
_bin_dec: Final = msgspec.msgpack.Decoder(memoryview)  # zero-copy view of the body
_body_dec: Final = msgspec.msgpack.Decoder(_Body)


@dataclass(frozen=True, slots=True)
class SnapshotPolicy:
    """Snapshot an instance every `every` events it consumed (0 = only at catch-up).

    Counted in events seen (applied or rejected), so the replay tail after the
    latest snapshot never exceeds `every` of the instance's events.
    """

    every: int = 1000

    def due(self, seen: int, seen_at_last_snapshot: int) -> bool:
        return self.every > 0 and seen - seen_at_last_snapshot >= self.every


def _referenced_ids(state: InstanceState) -> set[str]:
    """Event ids the entries themselves carry; only the rest of `seen` is stored.

    Rebuilding the idempotency set from the entries is cheaper than decoding
    a second copy of every id, and halves the snapshot size.
    """
    ids = {t.event_id for t in state.transcript}
    ids.update(c.event_id for c in state.case_bank)
    for recs in state.memory.values():
        ids.update(r.event_id for r in recs.values())
    ids.update(r.event_id for r in state.rule_adds.values())
    ids.update(r.event_id for r in state.revoked.values())
    if state.owner_entry is not None:
        ids.add(state.owner_entry.event_id)
    ids.update(state.rejected)
    return ids


def encode_snapshot(state: InstanceState, mode: Mode = "sequential") -> bytes:
    """Everything needed to continue folding exactly where `state` stands."""
    body = _Body(
        transcript=state.transcript,
        case_bank=state.case_bank,
        memory=state.memory,
        rule_adds=state.rule_adds,
        revoked=state.revoked,
        owner=state.owner_entry,
        positions=state.positions,
        rejected=dict(state.rejected),
        extra_seen=list(state.seen - _referenced_ids(state)),
        last_write=state.last_write,
    )
    return _enc.encode(_EnvelopeOut(SNAPSHOT_SCHEMA, mode, state.instance_id, state.version,
                                    _enc.encode(body)))


def _envelope(data: bytes) -> _Envelope:
    try:
        return _env_dec.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
        raise SnapshotVersionMismatch(f"unreadable snapshot envelope: {exc}") from None


def snapshot_header(data: bytes) -> tuple[int, str, str, int]:
    """(schema, mode, instance_id, version) without decoding the body."""
    env = _envelope(data)
    return env.schema, env.mode, env.instance_id, env.version


def decode_snapshot(data: bytes, *, mode: Mode | None = None) -> InstanceState:
    """Rebuild the state; raises `SnapshotVersionMismatch` for another schema or mode."""
    env = _envelope(data)
    if env.schema != SNAPSHOT_SCHEMA:
        raise SnapshotVersionMismatch(
            f"snapshot schema v{env.schema} of {env.instance_id!r}, this code reads "
            f"v{SNAPSHOT_SCHEMA}; replaying instead")
    if mode is not None and env.mode != mode:
        raise SnapshotVersionMismatch(f"snapshot of {env.instance_id!r} was taken in "
                                      f"{env.mode} mode, not {mode}")
    try:
        body = _body_dec.decode(_bin_dec.decode(env.body))
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
        raise SnapshotVersionMismatch(f"corrupt snapshot body: {exc}") from None
    st = InstanceState(env.instance_id)
    st.version = env.version
    st.transcript = body.transcript
    st.case_bank = body.case_bank
    st.memory = body.memory
    st.rule_adds = body.rule_adds
    st.revoked = body.revoked
    st.owner_entry = body.owner
    st.positions = body.positions
    rejected: dict[str, Outcome] = {}
    for eid, outcome in body.rejected.items():
        rejected[eid] = "aborted" if outcome == "aborted" else "fenced"
    st.rejected = rejected
    st.seen = _referenced_ids(st)
    st.seen.update(body.extra_seen)
    st.last_write = body.last_write
    return st
