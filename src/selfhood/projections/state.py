"""`InstanceState`: what an instance's events fold into, plus its fingerprint (pure).

The state is a *mutable* object that reducers update in place, because the
simulator needs tens of thousands of applies per second and replay needs
hundreds of thousands: an immutable copy per event would make apply O(n).
Callers that need a frozen view take `state.copy()` (containers are copied,
entries are immutable structs, so a copy is O(n) once, not per event).

Entries are msgspec structs with ``gc=False`` (they hold only strings and
numbers, so they cannot form cycles, and untracked objects make snapshot
decoding much faster). They carry their (hlc, writer, event_id) stamp first, so the struct's own
ordering *is* the CRDT order used by the eventual merge, and `bisect` can
insert into the transcript without a key function.

The fingerprint covers the instance's *meaning*: transcript (role, content)
in order, case bank, subtask/tool memory, active and revoked rules, applied
version, ownership (epoch, owner) and the verdicts of rejected events. It
deliberately leaves out per-event metadata (hlc, writer, event ids of applied
events) and log positions, so the same identity rebuilt from another log or
another replica hashes the same.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections.abc import Callable
from operator import attrgetter
from typing import Any, Final, Literal

import msgspec

from selfhood.errors import PoisonEvent
from selfhood.eventlog.base import LogPosition
from selfhood.events import Event, Hlc, MemoryModule, MemoryWritten

Outcome = Literal["applied", "aborted", "fenced", "duplicate"]
Mode = Literal["sequential", "eventual"]

#: Bump when the canonical encoding changes; it is hashed into every fingerprint.
FINGERPRINT_FORMAT: Final = "selfhood-state/1"


class Turn(msgspec.Struct, frozen=True, array_like=True, order=True, gc=False):
    """One transcript turn; ordering = (hlc, writer, event_id) = the eventual order."""

    hlc: Hlc
    writer: str
    event_id: str
    role: str
    content: str


class CaseEntry(msgspec.Struct, frozen=True, array_like=True, order=True, gc=False):
    """One case-bank entry (append-only); `key` is the case id from the event."""

    hlc: Hlc
    writer: str
    event_id: str
    key: str
    situation: str
    plan: str
    reward: float


class MemoryRecord(msgspec.Struct, frozen=True, array_like=True, order=True, gc=False):
    """A keyed subtask/tool record; the greater stamp wins under eventual merge."""

    hlc: Hlc
    writer: str
    event_id: str
    value: str | None


class RuleEntry(msgspec.Struct, frozen=True, array_like=True, order=True, gc=False):
    """A rule addition (text) or a revocation (reason), stamped for LWW."""

    hlc: Hlc
    writer: str
    event_id: str
    text: str


class OwnerEntry(msgspec.Struct, frozen=True, array_like=True, order=True, gc=False):
    """Who owns the instance; ordered by epoch first so the highest claim wins a merge."""

    epoch: int
    hlc: Hlc
    writer: str
    event_id: str
    owner: str


KEYED_MODULES: Final[tuple[MemoryModule, ...]] = ("subtask", "tool")


class InstanceState:
    """Transcript, memory modules, governance rules and bookkeeping of one instance.

    Public read surface (do not mutate from outside a reducer):

    - ``transcript``: list of `Turn` (log order in sequential mode, (hlc,
      writer, event_id) order in eventual mode);
    - ``case_bank``: list of `CaseEntry`; ``memory``: ``{"subtask": {key:
      MemoryRecord}, "tool": {...}}``;
    - ``rules`` (property): active rules ``{rule_id: text}``; ``revoked``:
      ``{rule_id: RuleEntry}`` (reason in ``text``) which never come back;
    - ``version``: number of events that took effect (applied);
    - ``epoch`` / ``owner``: current ownership claim (fencing);
    - ``positions``: per partition, the next log offset to read;
    - ``rejected``: ``{event_id: "aborted" | "fenced"}``.
    """

    __slots__ = (
        "_canon",
        "case_bank",
        "instance_id",
        "last_write",
        "memory",
        "owner_entry",
        "positions",
        "rejected",
        "revoked",
        "rule_adds",
        "seen",
        "transcript",
        "version",
    )

    def __init__(self, instance_id: str) -> None:
        self.instance_id = instance_id
        self.transcript: list[Turn] = []
        self.case_bank: list[CaseEntry] = []
        self.memory: dict[str, dict[str, MemoryRecord]] = {m: {} for m in KEYED_MODULES}
        self.rule_adds: dict[str, RuleEntry] = {}
        self.revoked: dict[str, RuleEntry] = {}
        self.version = 0
        self.owner_entry: OwnerEntry | None = None
        self.positions: dict[int, int] = {}
        self.rejected: dict[str, Outcome] = {}
        #: every event id seen (applied or rejected): the idempotency set
        self.seen: set[str] = set()
        #: conflict key -> version at which it was last written (sequential validation)
        self.last_write: dict[str, int] = {}
        #: encoding cache of the growing lists (see `canonical_bytes`); never copied
        self._canon: tuple[_ListEncoding, _ListEncoding] | None = None

    @classmethod
    def empty(cls, instance_id: str) -> InstanceState:
        """A fresh instance with no events applied."""
        return cls(instance_id)

    # -- read helpers ------------------------------------------------------

    @property
    def rules(self) -> dict[str, str]:
        """Active governance rules: added and never revoked."""
        revoked = self.revoked
        return {rid: e.text for rid, e in self.rule_adds.items() if rid not in revoked}

    @property
    def epoch(self) -> int:
        """Highest ownership epoch claimed so far (0 before any claim)."""
        return self.owner_entry.epoch if self.owner_entry is not None else 0

    @property
    def owner(self) -> str | None:
        """Replica that holds the current claim, if any."""
        return self.owner_entry.owner if self.owner_entry is not None else None

    def copy(self) -> InstanceState:
        """An independent copy (O(size)); entries are immutable and shared."""
        new = InstanceState(self.instance_id)
        new.transcript = list(self.transcript)
        new.case_bank = list(self.case_bank)
        new.memory = {m: dict(recs) for m, recs in self.memory.items()}
        new.rule_adds = dict(self.rule_adds)
        new.revoked = dict(self.revoked)
        new.version = self.version
        new.owner_entry = self.owner_entry
        new.positions = dict(self.positions)
        new.rejected = dict(self.rejected)
        new.seen = set(self.seen)
        new.last_write = dict(self.last_write)
        return new

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, InstanceState):
            return NotImplemented
        return canonical_bytes(self) == canonical_bytes(other)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return (f"InstanceState({self.instance_id!r}, version={self.version}, "
                f"turns={len(self.transcript)}, cases={len(self.case_bank)}, "
                f"rules={len(self.rules)}, epoch={self.epoch})")

    def summary(self) -> dict[str, object]:
        """JSON-ready view for the CLI and reports (includes the fingerprint)."""
        return {
            "instance_id": self.instance_id,
            "fingerprint": fingerprint(self),
            "version": self.version,
            "epoch": self.epoch,
            "owner": self.owner,
            "positions": {str(p): o for p, o in sorted(self.positions.items())},
            "transcript": [{"role": t.role, "content": t.content} for t in self.transcript],
            "case_bank": [
                {"key": c.key, "situation": c.situation, "plan": c.plan, "reward": c.reward}
                for c in self.case_bank
            ],
            "memory": {m: {k: r.value for k, r in sorted(recs.items())}
                       for m, recs in sorted(self.memory.items())},
            "rules": dict(sorted(self.rules.items())),
            "revoked": sorted(self.revoked),
            "rejected": dict(sorted(self.rejected.items())),
        }


_canon_encoder: Final = msgspec.json.Encoder(order="deterministic")


#: the canonical row of a transcript turn / case entry (C-speed getters, no Python call)
_turn_row: Final = attrgetter("role", "content")
_case_row: Final = attrgetter("key", "situation", "plan", "reward")


#: rows per block when a list is encoded in bulk (a first fingerprint, e.g. after
#: rehydration): one encoder call per block instead of one per row
_BLOCK: Final = 512


class _ListEncoding:
    """The JSON array of a growing list's rows, extended instead of re-encoded.

    Identity probes fingerprint the state after nearly every change, and the
    transcript and case bank only grow (appends, or CRDT inserts), so
    re-encoding them each time made a fingerprint O(history). The cache keeps
    the entries it has encoded and their rows in blocks of consecutive
    entries (a bulk encoding makes blocks of `_BLOCK` rows, each one encoder
    call; later appends make small ones). It reuses the longest run of whole
    blocks that is still the list's prefix (checked by value, a C-speed list
    compare) and encodes the rest, so whatever happened to the list the bytes
    are always those of encoding the whole list.
    """

    __slots__ = ("blocks", "body", "ends", "items")

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.blocks: list[bytes] = []  # the comma-joined rows of consecutive items
        self.ends: list[int] = []  # how many items the blocks up to this one cover
        self.body = b"[]"  # the encoded array of all rows

    def _keep_prefix(self, seq: list[Any]) -> None:
        """Drop the cached blocks past the longest common prefix with ``seq``."""
        items = self.items
        lo, hi = 0, min(len(seq), len(items))
        while lo < hi:  # grow-only lists: "same entry at k" holds up to the first insert
            mid = (lo + hi) // 2
            if seq[mid] is items[mid]:
                lo = mid + 1
            else:
                hi = mid
        if seq[:lo] != items[:lo]:
            lo = 0
        k = bisect_right(self.ends, lo)  # blocks wholly inside the common prefix
        del self.blocks[k:]
        del self.ends[k:]
        del items[self.ends[-1] if k else 0:]
        self.body = b"[" + b",".join(self.blocks) + b"]"

    def encode(self, seq: list[Any], row: Callable[[Any], Any]) -> msgspec.Raw:
        items = self.items
        n = len(items)
        if len(seq) >= n:
            # the common case, checked without slicing the (long) cached prefix:
            # extend the cache tentatively and compare the two lists, which
            # costs a pointer scan when the entries are the same objects
            if len(seq) > n:
                items.extend(seq[n:])
            if seq == items:
                if len(seq) == n:
                    return msgspec.Raw(self.body)
                if len(seq) == n + 1:  # one more entry (a probe after each apply): keep the
                    # tentative extension, append its row
                    one = _canon_encoder.encode(row(seq[n]))
                    self.blocks.append(one)
                    self.ends.append(n + 1)
                    self.body = b"".join((memoryview(self.body)[:-1], b"," if n else b"", one,
                                          b"]"))
                    return msgspec.Raw(self.body)
                del items[n:]
            else:
                del items[n:]
                self._keep_prefix(seq)
                n = len(items)
        else:
            self._keep_prefix(seq)
            n = len(items)
        if len(seq) > n:
            enc = _canon_encoder.encode
            blocks = []
            for i in range(n, len(seq), _BLOCK):
                chunk = seq[i:i + _BLOCK]
                blocks.append(enc(list(map(row, chunk)))[1:-1])  # "[a,b]" -> "a,b"
                self.ends.append(i + len(chunk))
            self.blocks.extend(blocks)
            items.extend(seq[n:])
            joined = b",".join(blocks)
            self.body = self.body[:-1] + (b"," + joined if n else joined) + b"]"
        return msgspec.Raw(self.body)


def canonical_bytes(state: InstanceState) -> bytes:
    """Deterministic encoding of the state's meaning (see module docstring)."""
    oe = state.owner_entry
    try:
        cache = state._canon
    except AttributeError:  # a state made without __init__
        cache = None
    if cache is None:
        cache = state._canon = (_ListEncoding(), _ListEncoding())
    doc = (
        FINGERPRINT_FORMAT,
        state.instance_id,
        state.version,
        [oe.epoch, oe.owner] if oe is not None else None,
        cache[0].encode(state.transcript, _turn_row),
        cache[1].encode(state.case_bank, _case_row),
        {m: {k: r.value for k, r in recs.items()} for m, recs in state.memory.items()},
        state.rules,
        {rid: e.text for rid, e in state.revoked.items()},
        state.rejected,
    )
    return _canon_encoder.encode(doc)


def fingerprint(state: InstanceState) -> str:
    """sha256 hex of the canonical encoding: equal meaning <=> equal fingerprint."""
    return hashlib.sha256(canonical_bytes(state)).hexdigest()


def check_applicable(state: InstanceState, event: Event) -> None:
    """Raise `PoisonEvent` for an event that decodes but can never apply here.

    Checked before any mutation, so a poison event leaves the state untouched
    and the projector can dead-letter it and go on.
    """
    if event.instance_id != state.instance_id:
        raise PoisonEvent(f"event {event.event_id} is for instance {event.instance_id!r}, "
                          f"not {state.instance_id!r}")
    p = event.payload
    if type(p) is MemoryWritten and p.module == "case_bank" and p.case is None:
        raise PoisonEvent(f"event {event.event_id}: case_bank write without a case")


def note_position(state: InstanceState, position: LogPosition | None) -> None:
    """Remember the next offset to read in the event's partition (bookkeeping only)."""
    if position is not None:
        nxt = position.offset + 1
        if state.positions.get(position.partition, 0) < nxt:
            state.positions[position.partition] = nxt
