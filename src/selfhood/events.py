"""Event schema, deterministic codec and upcasting (pure).

Every conversation turn, memory write and governance change is one `Event`
in an append-only log. The envelope carries what fencing (`epoch`), merging
(`hlc`, `writer`) and validation (`read_version`, `deps`) need, so reducers
never consult anything but the event itself.

Wire form: compact JSON with fields in declaration order, so the same event
always encodes to the same bytes (fingerprints and idempotency rely on it).
Decoding takes a fast path for the current schema and falls back to
upcasting older versions; anything else raises `EventDecodeError` naming
the log position, so a consumer can dead-letter it and keep going.

All structs are frozen and hold only immutable data, so they are declared
``gc=False``: they cannot form reference cycles, and a replay that keeps a
million events alive should not pay for the cycle collector walking them.
"""

from __future__ import annotations

import binascii
import itertools
import random
import uuid
from collections.abc import Callable
from typing import Any, Final, Literal, Union

import msgspec

from selfhood.errors import EventDecodeError, UnknownSchemaVersion

# ---------------------------------------------------------------------------
# Clock


class Hlc(msgspec.Struct, frozen=True, array_like=True, order=True, gc=False):
    """Hybrid logical clock timestamp: (wall ms, logical counter).

    Ordered lexicographically, which is exactly the HLC order; ties between
    writers are broken by (writer, event_id) where a total order is needed.
    """

    wall: int
    logical: int = 0

    def tick(self, now_ms: int) -> Hlc:
        """Next local timestamp: never goes backwards even if the wall clock does."""
        if now_ms > self.wall:
            return Hlc(now_ms, 0)
        return Hlc(self.wall, self.logical + 1)

    def receive(self, other: Hlc, now_ms: int) -> Hlc:
        """Merge a remote timestamp so causality is preserved across replicas."""
        wall = max(self.wall, other.wall, now_ms)
        if wall == self.wall and wall == other.wall:
            return Hlc(wall, max(self.logical, other.logical) + 1)
        if wall == self.wall:
            return Hlc(wall, self.logical + 1)
        if wall == other.wall:
            return Hlc(wall, other.logical + 1)
        return Hlc(wall, 0)


ZERO_HLC: Final = Hlc(0, 0)

# ---------------------------------------------------------------------------
# Payloads, one struct per kind

MemoryModule = Literal["case_bank", "subtask", "tool"]


class Case(msgspec.Struct, frozen=True, gc=False):
    """One case-bank entry (AgentFly/Memento): what happened, what was tried, how it went."""

    situation: str
    plan: str
    reward: float


class TurnAppended(msgspec.Struct, frozen=True, gc=False):
    """A conversation turn (schema v2: `role`/`content`; v1 used `speaker`/`text`)."""

    role: str
    content: str


class MemoryWritten(msgspec.Struct, frozen=True, gc=False):
    """A memory-module write.

    `case_bank` appends `case` (key is the case id); `subtask` and `tool` are
    keyed records where the newest write to `key` wins.
    """

    module: MemoryModule
    key: str
    value: str | None = None
    case: Case | None = None


class RuleAdded(msgspec.Struct, frozen=True, gc=False):
    """A governance rule becomes active (unless it was ever revoked)."""

    rule_id: str
    text: str


class RuleRevoked(msgspec.Struct, frozen=True, gc=False):
    """A governance rule is revoked for good: revocations never come back."""

    rule_id: str
    reason: str = ""


class OwnershipClaimed(msgspec.Struct, frozen=True, gc=False):
    """A replica claims an instance (or partition) at the envelope's epoch.

    Claims go through the log itself, so every reducer learns the new epoch at
    the same position and rejects later events from older epochs.
    """

    owner: str
    partition: int | None = None


class SnapshotMarker(msgspec.Struct, frozen=True, gc=False):
    """Records that a snapshot of the instance was taken at `version`."""

    version: int
    fingerprint: str


Payload = TurnAppended | MemoryWritten | RuleAdded | RuleRevoked | OwnershipClaimed | SnapshotMarker

EventKind = Literal[
    "turn_appended",
    "memory_written",
    "rule_added",
    "rule_revoked",
    "ownership_claimed",
    "snapshot_marker",
]

PAYLOAD_TYPES: Final[dict[str, type[Any]]] = {
    "turn_appended": TurnAppended,
    "memory_written": MemoryWritten,
    "rule_added": RuleAdded,
    "rule_revoked": RuleRevoked,
    "ownership_claimed": OwnershipClaimed,
    "snapshot_marker": SnapshotMarker,
}
KIND_OF: Final[dict[type[Any], str]] = {t: k for k, t in PAYLOAD_TYPES.items()}

#: Current schema version per kind. Bump a kind's version together with an
#: upcaster from the previous version in `UPCASTERS`.
SCHEMA_VERSIONS: Final[dict[str, int]] = {
    "turn_appended": 2,
    "memory_written": 1,
    "rule_added": 1,
    "rule_revoked": 1,
    "ownership_claimed": 1,
    "snapshot_marker": 1,
}


# ---------------------------------------------------------------------------
# Envelope


class Event(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The envelope every log record carries.

    `event_id` doubles as the idempotency key: a retried append of the same
    event must not produce a second effect anywhere downstream.
    """

    event_id: str
    instance_id: str
    kind: EventKind
    schema_version: int
    payload: Payload
    writer: str
    epoch: int = 0
    hlc: Hlc = Hlc(0, 0)
    deps: tuple[str, ...] = ()
    read_version: int | None = None


class _WireEvent(msgspec.Struct, frozen=True, kw_only=True):
    """Decode shape: payload stays raw until the kind is known."""

    event_id: str
    instance_id: str
    kind: str
    schema_version: int
    payload: msgspec.Raw
    writer: str
    epoch: int = 0
    hlc: Hlc = Hlc(0, 0)
    deps: tuple[str, ...] = ()
    read_version: int | None = None


def make_event(
    instance_id: str,
    payload: Payload,
    *,
    writer: str,
    epoch: int = 0,
    hlc: Hlc = ZERO_HLC,
    deps: tuple[str, ...] = (),
    read_version: int | None = None,
    event_id: str | None = None,
) -> Event:
    """Build an event of the current schema; the kind follows from the payload type."""
    kind = KIND_OF[type(payload)]
    return Event(
        event_id=event_id if event_id is not None else str(uuid.uuid4()),
        instance_id=instance_id,
        kind=kind,  # type: ignore[arg-type]
        schema_version=SCHEMA_VERSIONS[kind],
        payload=payload,
        writer=writer,
        epoch=epoch,
        hlc=hlc,
        deps=deps,
        read_version=read_version,
    )


_UUID4_CLEAR: Final = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET: Final = (4 << 76) | (0x8000 << 48)
#: ids drawn and formatted at once by `seeded_event_ids`, and what that takes: the
#: version bits of each of the batch's 128-bit draws, and the batch's text with the
#: dashes in place, one id and a space per 37 characters
_ID_BATCH: Final = 64
_BATCH_CLEAR: Final = ~sum(~_UUID4_CLEAR << (128 * k) for k in range(_ID_BATCH))
_BATCH_SET: Final = sum(_UUID4_SET << (128 * k) for k in range(_ID_BATCH))
_BATCH_TEXT: Final = b"00000000-0000-0000-0000-000000000000 " * _ID_BATCH
#: (hex digit of a draw, its column in the id's text)
_HEX_COLUMNS: Final = tuple(enumerate(c for c in range(36) if c not in (8, 13, 18, 23)))


def seeded_event_ids(seed: int | str) -> Callable[[], str]:
    """An event-id source of random UUIDv4s drawn from a generator seeded with ``seed``.

    The simulator's replicas take one each (seeded by run seed, replica and
    incarnation), so the same seed gives the same ids, and two sources with
    different seeds collide only as often as random UUIDs do. A process
    passes ``lambda: str(uuid.uuid4())`` instead. The ids are exactly
    ``str(uuid.UUID(int=n, version=4))`` of each ``n = getrandbits(128)``.

    They are made `_ID_BATCH` at a time, for speed (formatting ids one by one
    cost ~2 % of a simulation): one ``getrandbits(128 * k)`` is the next k
    draws of 128 bits, the first in the lowest bits (the generator is this
    source's own, so drawing ahead changes nothing), and each hex digit
    column of the batch is copied into place at once (extended slices).
    """
    bits = random.Random(seed).getrandbits

    def batch(_: int) -> list[str]:
        draws = bits(128 * _ID_BATCH) & _BATCH_CLEAR | _BATCH_SET
        digits = binascii.hexlify(draws.to_bytes(16 * _ID_BATCH, "big"))  # the last draw first
        text = bytearray(_BATCH_TEXT)
        for d, c in _HEX_COLUMNS:
            text[c::37] = digits[d::32]
        ids = text.decode().split()
        ids.reverse()
        return ids

    return itertools.chain.from_iterable(map(batch, itertools.count())).__next__


# ---------------------------------------------------------------------------
# Codec

_encoder: Final = msgspec.json.Encoder(order="deterministic")
_wire_decoder: Final = msgspec.json.Decoder(_WireEvent)
_payload_decoders: Final[dict[str, msgspec.json.Decoder[Any]]] = {
    k: msgspec.json.Decoder(t) for k, t in PAYLOAD_TYPES.items()
}


def encode(event: Event) -> bytes:
    """Deterministic bytes: equal events give equal bytes."""
    return _encoder.encode(event)


def encode_json_obj(obj: Any) -> bytes:
    """Deterministic JSON for any msgspec-encodable value (used for fingerprints)."""
    return _encoder.encode(obj)


Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


def _turn_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    """v1 turns said who spoke (`speaker`) and what (`text`); v2 names them role/content."""
    out = {k: v for k, v in payload.items() if k not in ("speaker", "text")}
    out["role"] = payload["speaker"]
    out["content"] = payload["text"]
    return out


#: (kind, from_version) -> function producing the payload of from_version + 1.
UPCASTERS: Final[dict[tuple[str, int], Upcaster]] = {
    ("turn_appended", 1): _turn_v1_to_v2,
}


def upcast_payload(kind: str, version: int, payload: dict[str, Any]) -> dict[str, Any]:
    """Apply upcasters one version at a time until the payload is current."""
    current = SCHEMA_VERSIONS[kind]
    if version > current:
        raise UnknownSchemaVersion(f"{kind} schema v{version} is newer than supported v{current}")
    while version < current:
        step = UPCASTERS.get((kind, version))
        if step is None:
            raise UnknownSchemaVersion(f"no upcaster for {kind} v{version}")
        payload = step(payload)
        version += 1
    return payload


def _record_type(kind: str, payload: type[Any]) -> type[msgspec.Struct]:
    """A whole record of one kind, tagged by its ``kind`` field, payload typed."""
    return msgspec.defstruct(
        f"_Record_{kind}",
        [("event_id", str), ("instance_id", str), ("schema_version", int),
         ("payload", payload), ("writer", str), ("epoch", int, 0), ("hlc", Hlc, Hlc(0, 0)),
         ("deps", tuple[str, ...], ()), ("read_version", int | None, None)],
        kw_only=True, frozen=True, gc=False, tag_field="kind", tag=kind)


_RECORD_KIND: Final[dict[type[Any], tuple[str, int]]] = {
    _record_type(k, t): (k, SCHEMA_VERSIONS[k]) for k, t in PAYLOAD_TYPES.items()}
_record_decoder: Final[msgspec.json.Decoder[Any]] = msgspec.json.Decoder(
    Union[tuple(_RECORD_KIND)])  # noqa: UP007  (a union built at runtime)


def decode(raw: bytes, *, partition: int | None = None, offset: int | None = None) -> Event:
    """Decode one record, upcasting old schema versions.

    Raises `EventDecodeError` (with the position) for anything that is not a
    valid event, so callers can dead-letter the record instead of crashing.

    A record of the current schema is parsed in one pass (a tagged union of
    one record type per kind): replay speed bounds failover, on every log.
    Anything off that path (old versions to upcast, invalid records) goes
    through `_decode_wire`, which gives the same event or the error.
    """
    try:
        r = _record_decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
        return _decode_wire(raw, partition, offset)
    kind, version = _RECORD_KIND[type(r)]
    if r.schema_version != version:
        return _decode_wire(raw, partition, offset)
    return Event(event_id=r.event_id, instance_id=r.instance_id, kind=kind,  # type: ignore[arg-type]
                 schema_version=version, payload=r.payload, writer=r.writer, epoch=r.epoch,
                 hlc=r.hlc, deps=r.deps, read_version=r.read_version)


def _decode_wire(raw: bytes, partition: int | None, offset: int | None) -> Event:
    """`decode` in two passes: the envelope, then the payload once its kind is known."""
    try:
        wire = _wire_decoder.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise EventDecodeError(f"undecodable event: {exc}", partition=partition,
                               offset=offset, raw=bytes(raw)) from None
    kind = wire.kind
    dec = _payload_decoders.get(kind)
    if dec is None:
        raise EventDecodeError(f"unknown event kind {kind!r}", partition=partition,
                               offset=offset, raw=bytes(raw))
    try:
        if wire.schema_version == SCHEMA_VERSIONS[kind]:
            payload = dec.decode(wire.payload)
        else:
            generic = msgspec.json.decode(wire.payload)
            if not isinstance(generic, dict):
                raise EventDecodeError(f"{kind} payload is not an object")
            upcast = upcast_payload(kind, wire.schema_version, generic)
            payload = msgspec.convert(upcast, PAYLOAD_TYPES[kind])
    except EventDecodeError as exc:
        exc.partition, exc.offset, exc.raw = partition, offset, bytes(raw)
        if partition is not None or offset is not None:
            exc.args = (f"{exc.args[0]} at partition {partition} offset {offset}",)
        raise
    except (msgspec.DecodeError, msgspec.ValidationError, KeyError, TypeError) as exc:
        raise EventDecodeError(f"invalid {kind} payload: {exc}", partition=partition,
                               offset=offset, raw=bytes(raw)) from None
    return Event(
        event_id=wire.event_id,
        instance_id=wire.instance_id,
        kind=kind,  # type: ignore[arg-type]
        schema_version=SCHEMA_VERSIONS[kind],
        payload=payload,
        writer=wire.writer,
        epoch=wire.epoch,
        hlc=wire.hlc,
        deps=wire.deps,
        read_version=wire.read_version,
    )


def to_builtins(event: Event) -> dict[str, Any]:
    """Plain JSON-ready dict (for `log tail` and reports): exactly what the wire holds."""
    out: dict[str, Any] = msgspec.json.decode(_encoder.encode(event))
    return out
