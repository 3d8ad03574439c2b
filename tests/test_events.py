"""Event schema and codec (pure): determinism, round trips, upcasting, typed decode errors,
the HLC, and the one partitioner (murmur2, identical to Kafka's)."""

from __future__ import annotations

import msgspec
import pytest
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from selfhood.errors import EventDecodeError, UnknownSchemaVersion
from selfhood.eventlog.partitioning import murmur2, partition_for
from selfhood.events import (
    KIND_OF,
    SCHEMA_VERSIONS,
    Case,
    Event,
    Hlc,
    MemoryWritten,
    OwnershipClaimed,
    Payload,
    RuleAdded,
    RuleRevoked,
    SnapshotMarker,
    TurnAppended,
    _decode_wire,
    decode,
    encode,
    make_event,
    seeded_event_ids,
    to_builtins,
    upcast_payload,
)
from selfhood.projections.strategies import events as any_event

text = st.text(max_size=40)
hlcs = st.builds(Hlc, st.integers(0, 2**48), st.integers(0, 2**16))
payloads: st.SearchStrategy[Payload] = st.one_of(
    st.builds(TurnAppended, st.sampled_from(["user", "assistant", "system"]), text),
    st.builds(MemoryWritten, st.just("case_bank"), text, st.none(),
              st.builds(Case, text, text, st.floats(-1, 1, allow_nan=False))),
    st.builds(MemoryWritten, st.sampled_from(["subtask", "tool"]), text, text),
    st.builds(RuleAdded, text, text),
    st.builds(RuleRevoked, text, text),
    st.builds(OwnershipClaimed, text, st.none() | st.integers(0, 64)),
    st.builds(SnapshotMarker, st.integers(0, 10**6), text),
)
events = st.builds(
    make_event, text, payloads, writer=text, epoch=st.integers(0, 1000), hlc=hlcs,
    deps=st.lists(st.uuids().map(str), max_size=3).map(tuple),
    read_version=st.none() | st.integers(0, 10**6))


@given(events)
def test_round_trip_every_kind(ev: Event) -> None:
    assert decode(encode(ev)) == ev
    assert ev.kind == KIND_OF[type(ev.payload)]
    assert ev.schema_version == SCHEMA_VERSIONS[ev.kind]


@given(events)
def test_encoding_is_deterministic(ev: Event) -> None:
    again = decode(encode(ev))
    assert encode(again) == encode(ev)
    assert msgspec.json.decode(encode(ev)) == to_builtins(ev)
    # key order on the wire is fixed: the envelope always starts with event_id
    assert encode(ev).startswith(b'{"event_id":')


def test_equal_events_encode_to_equal_bytes() -> None:
    eid = seeded_event_ids(1)()
    a = make_event("i", TurnAppended("user", "hi"), writer="w", event_id=eid)
    b = make_event("i", TurnAppended("user", "hi"), writer="w", event_id=eid)
    assert a is not b and encode(a) == encode(b)
    # a seeded id source repeats per seed and never within one
    one, again, other = seeded_event_ids(1), seeded_event_ids(1), seeded_event_ids(2)
    first = [one() for _ in range(100)]
    assert first == [again() for _ in range(100)] and len(set(first)) == 100
    assert not set(first) & {other() for _ in range(100)}


def test_v1_turn_is_upcast_to_v2() -> None:
    v1 = msgspec.json.encode({"event_id": "e", "instance_id": "i", "kind": "turn_appended",
                              "schema_version": 1, "writer": "w",
                              "payload": {"speaker": "assistant", "text": "hello"}})
    ev = decode(v1)
    assert ev.schema_version == 2
    assert ev.payload == TurnAppended(role="assistant", content="hello")
    # and the upcast event re-encodes in the current schema
    assert b'"role":"assistant"' in encode(ev) and b"speaker" not in encode(ev)


def test_upcaster_chain_rejects_newer_versions() -> None:
    with pytest.raises(UnknownSchemaVersion):
        upcast_payload("turn_appended", 3, {"role": "x", "content": "y"})
    assert upcast_payload("turn_appended", 1, {"speaker": "a", "text": "b"}) == {
        "role": "a", "content": "b"}


@pytest.mark.parametrize("raw, cls", [
    (b"", EventDecodeError),
    (b"\xff\xfe", EventDecodeError),
    (b"[1, 2]", EventDecodeError),
    (b'{"event_id": "e"}', EventDecodeError),
    (b'{"event_id":"e","instance_id":"i","kind":"nope","schema_version":1,"payload":{},'
     b'"writer":"w"}', EventDecodeError),
    (b'{"event_id":"e","instance_id":"i","kind":"rule_added","schema_version":1,'
     b'"payload":{"rule_id":5},"writer":"w"}', EventDecodeError),
    (b'{"event_id":"e","instance_id":"i","kind":"turn_appended","schema_version":7,'
     b'"payload":{},"writer":"w"}', UnknownSchemaVersion),
    (b'{"event_id":"e","instance_id":"i","kind":"turn_appended","schema_version":1,'
     b'"payload":{"speaker":"x"},"writer":"w"}', EventDecodeError),
    (b'{"event_id":"e","instance_id":"i","kind":"turn_appended","schema_version":1,'
     b'"payload":[1],"writer":"w"}', EventDecodeError),
])
def test_bad_bytes_raise_typed_error_naming_the_position(raw: bytes,
                                                         cls: type[Exception]) -> None:
    with pytest.raises(cls) as info:
        decode(raw, partition=3, offset=41)
    err = info.value
    assert isinstance(err, EventDecodeError)
    assert (err.partition, err.offset, err.raw) == (3, 41, raw)
    assert "partition 3 offset 41" in str(err)


@given(st.binary(max_size=64))
def test_arbitrary_bytes_never_crash_decode(raw: bytes) -> None:
    try:
        decode(raw, partition=0, offset=1)
    except EventDecodeError as err:
        assert err.offset == 1 and err.raw == raw


# -- hybrid logical clock --------------------------------------------------------


@given(hlcs, st.integers(0, 2**48))
def test_hlc_tick_is_monotonic(h: Hlc, now: int) -> None:
    assert h.tick(now) > h


@given(hlcs, hlcs, st.integers(0, 2**48))
def test_hlc_receive_dominates_both(local: Hlc, remote: Hlc, now: int) -> None:
    merged = local.receive(remote, now)
    assert merged > local and merged > remote
    assert merged.wall >= now


# -- the partitioner ----------------------------------------------------------------

# Vectors from Kafka's own UtilsTest.testMurmur2.
KAFKA_VECTORS = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]


@pytest.mark.parametrize("data, expected", KAFKA_VECTORS)
def test_murmur2_matches_kafka_vectors(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected


@given(st.binary(max_size=100))
def test_murmur2_agrees_with_aiokafka(data: bytes) -> None:
    assert murmur2(data) & 0xFFFFFFFF == aiokafka_murmur2(data) & 0xFFFFFFFF


@given(st.text(max_size=30), st.integers(1, 256))
def test_partition_for_is_in_range_and_stable(instance: str, n: int) -> None:
    p = partition_for(instance, n)
    assert 0 <= p < n and p == partition_for(instance, n)
    assert p == (murmur2(instance.encode()) & 0x7FFFFFFF) % n


def test_partition_for_rejects_zero_partitions() -> None:
    with pytest.raises(ValueError):
        partition_for("x", 0)


# -- the one-parse decode path (replay speed) agrees with the two-pass one ---------

@given(any_event(("i1", "i2")))
def test_one_parse_decode_equals_decode(ev: Event) -> None:
    raw = encode(ev)
    assert decode(raw, partition=0, offset=7) == _decode_wire(raw, None, None) == ev


_OFF_PATH = [
    b"\xffnot json",
    b"[]",
    b'{"event_id":"e","instance_id":"i","kind":"nope","schema_version":1,"payload":{},'
    b'"writer":"w"}',
    b'{"event_id":"e","instance_id":"i","kind":"turn_appended","schema_version":9,'
    b'"payload":{"role":"r","content":"c"},"writer":"w"}',
    b'{"event_id":"e","instance_id":"i","kind":"turn_appended","schema_version":2,'
    b'"payload":{"role":1,"content":"c"},"writer":"w"}',
    b'{"event_id":"e","instance_id":"i","kind":"memory_written","schema_version":1,'
    b'"payload":{"module":"nope","key":"k"},"writer":"w"}',
]


@pytest.mark.parametrize("raw", _OFF_PATH)
def test_one_parse_decode_fails_exactly_like_decode(raw: bytes) -> None:
    with pytest.raises(EventDecodeError) as want:
        _decode_wire(raw, 3, 9)
    with pytest.raises(EventDecodeError) as got:
        decode(raw, partition=3, offset=9)
    assert str(got.value) == str(want.value)
    assert (got.value.partition, got.value.offset) == (3, 9)


@given(st.sampled_from(["user", "assistant"]), st.text(max_size=20))
def test_one_parse_decode_upcasts_old_turns(speaker: str, text: str) -> None:
    v1 = msgspec.json.encode({"event_id": "e", "instance_id": "i", "kind": "turn_appended",
                              "schema_version": 1, "writer": "w",
                              "payload": {"speaker": speaker, "text": text}})
    assert decode(v1, partition=0, offset=0) == _decode_wire(v1, None, None)
