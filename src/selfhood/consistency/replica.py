"""The replica core, sans-IO: inputs in, outputs out (pure, synchronous).

One class serves instances under either consistency mode. A runtime (the
deterministic simulator today, real processes on Kafka later) feeds it
inputs and carries out what it returns; the core never touches a socket, a
clock or a random generator of its own:

inputs                                  outputs
  on_request(Request, now)                Reply      -> the client
  on_records(Records, now)   (from log)   Forward    -> another replica (the owner)
  on_append_ack(AppendAck, now)           Append     -> the log
  on_grant(Grant, now)  (coordinator)     Poll       -> the log (fetch + heartbeat)
  on_tick(now)          (timer)

Modes:

- **sequential** (and **linearizable**): the log is the order. Only the
  owner of an instance writes it; other replicas forward writes to the owner.
  A write is acknowledged once the owner has applied it *from the log*; the
  transaction's reads are evaluated at that log position (state-machine
  replication), so every replica would compute the same result. Single-write
  register transactions are conditional (``read_version``) and the reducer
  decides commit/abort identically everywhere. Reads wait until the replica
  has applied the client's session token; ``linearizable`` first asks the
  log for its end (read barrier). A replica that has not heard from the log
  for ``lease`` refuses (``fail``, error ``unavailable``): unavailable, never
  wrong.
- **eventual**: local-first. Writes are merged locally with the CRDTs,
  acknowledged at once and shipped through an outbox (on a tick, at most every
  ``outbox_ms``: local-first systems batch);
  remote events arrive by polling the log and are merged. The outbox is
  durable (a local disk, written before the acknowledgement): a crashed
  replica keeps its unshipped writes, and on restart `recover` merges them
  back into the state it rebuilds from the log and ships them again. Until
  then no other replica has them (read-your-writes failures after failover,
  which the experiment measures), but no acknowledged write is lost.

Ownership: the coordinator grants an owner and an epoch; the owner claims it
through the log and starts writing only once it has applied its own claim
(so it has seen every earlier event). Events carry the writer's epoch and
the reducers fence older epochs, so a paused zombie cannot write.

Sharded memory: memory events go to another partition; the turn of the same
transaction lists them in ``deps``. With ``atomic_memory`` the log takes
both in one append and a replica's fold of the turn's partition stops at the
turn until its deps are applied (read_committed; partition order is kept, so
every replica folds the same sequence); without it they are separate appends
and a read can show a turn whose memory write is missing, which is reported
in the reply's ``extra["deps_missing"]`` as ``[[turn_value, [missing event
ids]], ...]``. An instance spanning two partitions has no single order, so
its writes are never conditional, and ownership claims are written as a pair
(one per partition) that replicas pass as a barrier: an old owner's memory
write falls on the same side of the claim everywhere and is fenced alike.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from selfhood.consistency.model import DeterministicModel, ModelPort
from selfhood.consistency.ownership import Grant, home_partition, memory_partition
from selfhood.errors import ConsistencyError, PoisonEvent
from selfhood.events import (
    Case,
    Event,
    Hlc,
    MemoryWritten,
    OwnershipClaimed,
    Payload,
    RuleAdded,
    RuleRevoked,
    TurnAppended,
    make_event,
)
from selfhood.projections.crdt import merge_eventual
from selfhood.projections.reducer import apply_sequential
from selfhood.projections.state import InstanceState, Outcome, fingerprint

ConsistencyMode = Literal["sequential", "linearizable", "eventual"]
MODES: Final[tuple[str, ...]] = ("sequential", "linearizable", "eventual")
_MS: Final = 1_000_000
_MASK64: Final = (1 << 64) - 1
# RFC 4122 variant bits of a UUID's low half (what uuid.UUID(version=4) sets)
_VARIANT_MASK: Final = 0xC000 << 48
_VARIANT_BITS: Final = 0x8000 << 48

#: fail errors that mean "this replica cannot serve now" (the router fails over on them)
UNAVAILABLE: Final = "unavailable"

Token = dict[int, int]


# ---------------------------------------------------------------------------
# Messages


@dataclass(slots=True)
class Request:
    """A client operation as a replica sees it (see docs/harness-interface.md)."""

    req_id: int
    f: str
    value: Any
    instance: str | None
    token: Token | None = None
    deadline: int = 0
    via: str = ""
    hops: int = 0


@dataclass(slots=True)
class Reply:
    """The completion of a request: type ok | fail | info, plus the session token."""

    req_id: int
    type: str
    value: Any = None
    error: Any = None
    token: Token | None = None
    extra: dict[str, Any] | None = None


@dataclass(slots=True)
class Forward:
    """Hand the request to ``to`` (the owner); it replies to the client itself."""

    to: str
    request: Request


@dataclass(slots=True)
class Append:
    """Append ``entries`` (partition, event) atomically; reply with an AppendAck.

    ``from_offsets``: the sender's next offsets, so the ack can carry every
    record the sender is missing up to and including its own.
    """

    batch_id: int
    entries: list[tuple[int, Event]]
    from_offsets: Token


@dataclass(slots=True)
class Poll:
    """Fetch everything after ``from_offsets``; a ``barrier_id`` asks for the log end too."""

    from_offsets: list[int]
    barrier_id: int | None = None


@dataclass(slots=True)
class Records:
    """Log records for the replica: per partition, (first offset, events)."""

    chunks: list[tuple[int, int, list[Event]]]
    ends: list[int] | None = None
    barrier_id: int | None = None


@dataclass(slots=True)
class AppendAck:
    """Positions (partition, offset) given to an Append's entries, plus catch-up records."""

    batch_id: int
    positions: list[tuple[int, int]]
    records: Records


Output = Reply | Forward | Append | Poll


@dataclass(slots=True)
class _Write:
    """A sequential write waiting to see its events in the log."""

    request: Request
    mops: list[list[Any]]
    event_ids: list[str]
    instance: str
    result: list[list[Any]] | None = None
    outcomes: list[Outcome] = field(default_factory=list)
    positions: Token = field(default_factory=dict)
    deps_missing: list[list[Any]] | None = None
    #: sharded memory: partitions whose reads wait for the txn's first event there
    reread: set[int] | None = None


@dataclass(slots=True)
class _Read:
    request: Request
    needed: Token
    barrier_id: int | None = None


@dataclass(frozen=True, slots=True)
class ReplicaConfig:
    """What a replica needs to know about the deployment."""

    mode: str = "sequential"
    shards: int = 1
    sharded_memory: bool = False
    atomic_memory: bool = True
    fencing: bool = True
    lease_ms: int = 150
    read_wait_ms: int = 250
    write_wait_ms: int = 1000
    poll_limit: int = 2000
    outbox_ms: int = 0


# ---------------------------------------------------------------------------
# Keys and values


def _scalar(s: str | None) -> Any:
    """Values travel as strings in events; the workloads use ints, so give ints back."""
    if s is None:
        return None
    if s.isdigit():
        return int(s)
    try:
        return int(s)
    except ValueError:
        return s


def _has_write(mops: list[list[Any]]) -> bool:
    for m in mops:
        if m[0] != "r":
            return True
    return False


def sorted_ids(ids: Any) -> list[Any]:
    """Rule ids in a stable order: ints numerically, then strings."""
    return sorted(ids, key=lambda x: (1, 0, x) if isinstance(x, str) else (0, x, ""))


def parse_key(key: str) -> tuple[str, str, str | None]:
    """``i/transcript`` | ``i/cases`` | ``i/mem/<module>/<name>`` -> (instance, kind, name)."""
    inst, _, rest = key.partition("/")
    if rest == "transcript" or rest == "cases":
        return inst, rest, None
    if rest.startswith("mem/"):
        module, _, name = rest[4:].partition("/")
        if module in ("subtask", "tool") and name:
            return inst, module, name
    raise ConsistencyError(f"unknown key {key!r}: expected <instance>/transcript, "
                           "<instance>/cases or <instance>/mem/(subtask|tool)/<name>")


class Replica:
    """One replica: per-instance states folded from the log, plus the mode's protocol."""

    def __init__(self, name: str, config: ReplicaConfig, instances: tuple[str, ...], *,
                 id_seed: int | None = None, model: ModelPort | None = None) -> None:
        if config.mode not in MODES:
            raise ConsistencyError(f"unknown mode {config.mode!r}; expected one of {MODES}")
        self.name = name
        self.cfg = config
        self.eventual = config.mode == "eventual"
        self._fencing = config.fencing
        self.linearizable = config.mode == "linearizable"
        self.instances = instances
        self.model: ModelPort = model if model is not None else DeterministicModel()
        if id_seed is None:  # stable per name, so two replicas never mint the same id
            id_seed = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")
        self.id_seed = id_seed & _MASK64
        self._n = 0
        # the UUID's first three groups come from the seed alone (see `_eid`)
        self._eid_prefix = str(uuid.UUID(int=self.id_seed << 64, version=4))[:19]
        self._keys: dict[str, tuple[str, str, str | None]] = {}
        self.states: dict[str, InstanceState] = {i: InstanceState.empty(i) for i in instances}
        self.home = {i: home_partition(i, config.shards) for i in instances}
        self.mem = {i: memory_partition(i, config.shards, config.sharded_memory)
                    for i in instances}
        self.next_offset: list[int] = [0] * config.shards
        self.clock_offset_ns = 0
        self.hlc = Hlc(0, 0)
        self.log_contact = 0
        self.lease_ns = config.lease_ms * _MS
        # ownership
        self.assigned: dict[str, tuple[str, int]] = {}
        self.active_epoch: dict[str, int] = {}
        self.claims: dict[str, list[tuple[int, Event]]] = {}
        self.await_owner: dict[str, list[Request]] = {}
        # sequential writes and reads in progress
        self.writes: dict[str, _Write] = {}
        self.reads: list[_Read] = []
        self._barrier = 0
        self._n_batches = 0
        # eventual outbox
        self.outbox: list[tuple[int, Event]] = []
        self.outbox_batches: dict[int, set[str]] = {}
        self.last_ship = -(1 << 62)
        # sharded memory bookkeeping
        self.turn_missing: dict[str, dict[str, list[Any]]] = {i: {} for i in instances}
        self.missing_by_dep: dict[str, list[tuple[str, str]]] = {}
        self._cache: dict[tuple[str, str, str | None], Any] = {}
        self._fp_cache: dict[str, tuple[tuple[str, int], str, str]] = {}
        self.stats: dict[str, int] = {"applied": 0, "aborted": 0, "fenced": 0,
                                      "duplicate": 0, "stale_epoch_applied": 0,
                                      "refused": 0, "forwarded": 0, "claims": 0}

    # -- helpers -----------------------------------------------------------

    def _eid(self) -> str:
        """``event_id_from(id_seed, n)``, formatted here: the seed half is fixed per replica."""
        self._n += 1
        lo = (self._n & _MASK64 & ~_VARIANT_MASK) | _VARIANT_BITS
        h = f"{lo:016x}"
        return self._eid_prefix + h[:4] + "-" + h[4:]

    def _key(self, key: str) -> tuple[str, str, str | None]:
        """`parse_key`, memoized (a run uses a small, fixed set of keys)."""
        k = self._keys.get(key)
        if k is None:
            k = self._keys[key] = parse_key(key)
        return k

    def _tick_hlc(self, now: int) -> Hlc:
        self.hlc = h = self.hlc.tick((now + self.clock_offset_ns) // _MS)
        return h

    def _state(self, instance: str) -> InstanceState:
        st = self.states.get(instance)
        if st is None:
            st = self.states[instance] = InstanceState.empty(instance)
            self.home[instance] = home_partition(instance, self.cfg.shards)
            self.mem[instance] = memory_partition(instance, self.cfg.shards,
                                                  self.cfg.sharded_memory)
            self.turn_missing[instance] = {}
        return st

    def _partitions(self, instance: str) -> tuple[int, ...]:
        h, m = self.home[instance], self.mem[instance]
        return (h,) if h == m else (h, m)

    def _log_reachable(self, now: int) -> bool:
        return now - self.log_contact <= self.lease_ns

    def owns(self, instance: str) -> bool:
        """True once this replica has applied its own current claim on ``instance``."""
        a = self.assigned.get(instance)
        return a is not None and a[0] == self.name and self.active_epoch.get(instance) == a[1]

    # -- reading state -------------------------------------------------------

    def _read_key(self, kind: str, name: str | None, st: InstanceState) -> Any:
        ck = (st.instance_id, kind, name)
        hit = self._cache.get(ck)
        if hit is not None:
            return hit
        val: Any
        if kind == "transcript":
            val = [_scalar(t.content) for t in st.transcript]
        elif kind == "cases":
            val = [_scalar(c.key) for c in st.case_bank]
        else:
            assert name is not None
            rec = st.memory[kind].get(name)
            val = _scalar(rec.value) if rec is not None else None
            if val is None:
                return None
        self._cache[ck] = val
        return val

    def _extend_cache(self, inst: str, kind: str, seq: list[Any], ev: Event,
                      raw: str) -> None:
        """Keep a list key's cached read in step with its state.

        Sequential folds always append (O(1)); an eventual merge may insert in
        the middle (a reordered transcript): the entry's position is found by
        bisecting on the CRDT order (hlc, writer, event_id), the order the
        state's list is kept in.
        """
        ck = (inst, kind, None)
        cached = self._cache.get(ck)
        if cached is None:
            return
        if len(cached) + 1 != len(seq):
            del self._cache[ck]
            return
        eid = ev.event_id
        if seq[-1].event_id == eid:
            cached.append(_scalar(raw))
            return
        lo, hi = 0, len(seq)
        key = (ev.hlc, ev.writer, eid)
        while lo < hi:
            mid = (lo + hi) // 2
            e = seq[mid]
            if (e.hlc, e.writer, e.event_id) < key:
                lo = mid + 1
            else:
                hi = mid
        if lo < len(seq) and seq[lo].event_id == eid:
            cached.insert(lo, _scalar(raw))
        else:
            del self._cache[ck]

    def _eval_txn(self, mops: list[list[Any]]) -> list[list[Any]]:
        """Fill in the reads of a transaction against the current states.

        Reads after a write of the same key inside the transaction see that
        write (the transaction's own effects), as a serial execution would.
        """
        out: list[list[Any]] = []
        own: dict[str, Any] | None = None  # register writes of this txn
        app: dict[str, list[Any]] | None = None  # list appends of this txn
        for f, key, v in mops:
            if f == "r":
                if own is not None and key in own:
                    val = own[key]
                else:
                    inst, kind, name = self._key(key)
                    val = self._read_key(kind, name, self._state(inst))
                    if isinstance(val, list):
                        val = val + app[key] if app is not None and key in app else list(val)
                out.append([f, key, val])
            else:
                if f == "append":
                    if app is None:
                        app = {}
                    app.setdefault(key, []).append(v)
                else:
                    if own is None:
                        own = {}
                    own[key] = v
                out.append([f, key, v])
        return out

    def _key_partition(self, instance: str, key: str) -> int:
        """The partition that orders ``key``: turns live home, everything else in memory."""
        kind = self._key(key)[1]
        return self.home[instance] if kind == "transcript" else self.mem[instance]

    def _write_partitions(self, w: _Write) -> set[int]:
        return {self._key_partition(w.instance, k) for f, k, _ in w.mops if f != "r"}

    def _reread(self, w: _Write, partition: int) -> None:
        """Re-evaluate the reads of keys ordered by ``partition`` at the txn's point there.

        An instance spanning two partitions has no single order: a txn's events
        land at two points of the owner's fold. Reading every key at the first
        of them let two read-modify-write txns on the transcript both read it
        before either turn (lost update). Each key is therefore read just before
        the txn's first event in the partition that orders that key, so all
        txns writing a key are serialized by that partition's order.
        """
        assert w.result is not None
        fresh = self._eval_txn(w.mops)
        inst = w.instance
        for i, (f, key, _) in enumerate(w.mops):
            if f == "r" and self._key_partition(inst, key) == partition:
                w.result[i] = fresh[i]
        if partition == self.home[inst]:
            w.deps_missing = self._deps_missing(inst, w.mops)

    def _deps_missing(self, instance: str, mops: list[list[Any]]) -> list[list[Any]] | None:
        tm = self.turn_missing.get(instance)
        if not tm:
            return None
        if not any(f == "r" and key.endswith("/transcript") for f, key, _ in mops):
            return None
        return [[val, list(missing)] for val, missing in tm.values()]

    # -- events -----------------------------------------------------------------

    def _txn_events(self, instance: str, mops: list[list[Any]], now: int, epoch: int,
                    conditional: bool) -> list[tuple[int, Event]]:
        """Turn the writes of a transaction into events, memory first, turns listing deps."""
        mem_entries: list[tuple[int, Event]] = []
        turn_payloads: list[Payload] = []
        mp = self.mem[instance]
        hp = self.home[instance]
        st = self.states[instance]
        rv = st.version if conditional else None
        for f, key, v in mops:
            if f == "r":
                continue
            inst, kind, name = self._key(key)
            if inst != instance:
                raise ConsistencyError(f"key {key!r} is not in instance {instance!r}")
            if kind == "transcript":
                if f != "append":
                    raise ConsistencyError(f"{f!r} on list key {key!r}")
                turn_payloads.append(TurnAppended(role="user", content=str(v)))
                continue
            if kind == "cases":
                if f != "append":
                    raise ConsistencyError(f"{f!r} on list key {key!r}")
                p: Payload = MemoryWritten(module="case_bank", key=str(v),
                                           case=Case(situation=str(v), plan="", reward=0.0))
            else:
                if f != "w":
                    raise ConsistencyError(f"{f!r} on register key {key!r}")
                p = MemoryWritten(module=kind, key=name or "", value=str(v))  # type: ignore[arg-type]
            mem_entries.append((mp, make_event(instance, p, writer=self.name, epoch=epoch,
                                               hlc=self._tick_hlc(now), read_version=rv,
                                               event_id=self._eid())))
        deps = tuple(e.event_id for _, e in mem_entries) if mp != hp else ()
        out = mem_entries
        for tp in turn_payloads:
            out.append((hp, make_event(instance, tp, writer=self.name, epoch=epoch,
                                       hlc=self._tick_hlc(now), deps=deps, read_version=rv,
                                       event_id=self._eid())))
        return out

    def _apply(self, ev: Event, partition: int, offset: int, now: int,
               out: list[Output]) -> None:
        """Fold one event from the log (or a local eventual write) into its instance."""
        inst = ev.instance_id
        st = self.states.get(inst)
        if st is None:
            st = self._state(inst)
        deps = ev.deps
        w = self.writes.get(ev.event_id) if self.writes else None
        if w is not None:
            if w.result is None:
                w.result = self._eval_txn(w.mops)
                w.deps_missing = self._deps_missing(w.instance, w.mops)
                if self.home[inst] != self.mem[inst] and w.mops:
                    w.reread = {p for p in self._write_partitions(w) if p != partition}
            elif w.reread and partition in w.reread:
                w.reread.discard(partition)
                self._reread(w, partition)
        oe = st.owner_entry
        epoch_before = oe.epoch if oe is not None else 0  # st.epoch, without the property
        try:
            if self.eventual:
                if ev.writer != self.name:
                    self.hlc = self.hlc.receive(ev.hlc, (now + self.clock_offset_ns) // _MS)
                outcome = merge_eventual(st, ev)
            else:
                outcome = apply_sequential(st, ev, None, fencing=self._fencing)
        except PoisonEvent:
            outcome = "aborted"
        self.stats[outcome] += 1
        if outcome == "applied":
            p = ev.payload
            t = type(p)
            if t is TurnAppended:
                assert isinstance(p, TurnAppended)
                self._extend_cache(inst, "transcript", st.transcript, ev, p.content)
                if deps:
                    missing = [d for d in deps if d not in st.seen]
                    if missing:
                        self.turn_missing[inst][ev.event_id] = [_scalar(p.content), missing]
                        for d in missing:
                            self.missing_by_dep.setdefault(d, []).append((inst, ev.event_id))
            elif t is MemoryWritten:
                assert isinstance(p, MemoryWritten)
                if p.module == "case_bank":
                    self._extend_cache(inst, "cases", st.case_bank, ev, p.key)
                else:
                    self._cache.pop((inst, p.module, p.key), None)
            elif t is OwnershipClaimed:
                assert isinstance(p, OwnershipClaimed)
                if p.owner == self.name and self.assigned.get(inst) == (self.name, ev.epoch):
                    self.active_epoch[inst] = ev.epoch
                    waiting = self.await_owner.pop(inst, [])
                    for req in waiting:
                        self._write_sequential(req, now, out)
                elif p.owner != self.name and not self.eventual:
                    # ownership is learned from the log too: grants may be lost,
                    # the log is what every replica agrees on
                    cur = self.assigned.get(inst)
                    if cur is None or cur[1] <= ev.epoch:
                        self._set_owner(inst, p.owner, ev.epoch, now, out)
            if ev.epoch < epoch_before and t is not OwnershipClaimed:
                self.stats["stale_epoch_applied"] += 1
        eid = ev.event_id
        waiters = self.missing_by_dep.pop(eid, None) if self.missing_by_dep else None
        if waiters is not None:
            for winst, turn_id in waiters:
                entry = self.turn_missing[winst].get(turn_id)
                if entry is not None:
                    entry[1] = [d for d in entry[1] if d != eid]
                    if not entry[1]:
                        del self.turn_missing[winst][turn_id]
        if w is not None:
            w.outcomes.append(outcome)
            w.positions[partition] = max(w.positions.get(partition, 0), offset + 1)
            if len(w.outcomes) == len(w.event_ids):
                self._finish_write(w, out)

    def _partner_is_next(self, deps: tuple[str, ...],
                         chunks: list[tuple[int, int, list[Event]]]) -> bool:
        nxt = self.next_offset
        heads = set()
        for p, start, events in chunks:
            i = nxt[p] - start
            if 0 <= i < len(events):
                heads.add(events[i].event_id)
        return all(d in heads for d in deps)

    def _deps_applied(self, ev: Event) -> bool:
        seen = self._state(ev.instance_id).seen
        return all(d in seen for d in ev.deps)

    def _finish_write(self, w: _Write, out: list[Output]) -> None:
        for eid in w.event_ids:
            self.writes.pop(eid, None)
        req = w.request
        oc = w.outcomes
        if all(o == "applied" for o in oc):
            extra = {"deps_missing": w.deps_missing} if w.deps_missing else None
            out.append(Reply(req.req_id, "ok", w.result, None, dict(w.positions), extra))
        elif not any(o == "applied" for o in oc):
            err = "fenced" if "fenced" in oc else "aborted"
            out.append(Reply(req.req_id, "fail", None, err))
        else:
            out.append(Reply(req.req_id, "info", None, "partially-applied"))

    # -- inputs -------------------------------------------------------------------

    def on_request(self, req: Request, now: int) -> list[Output]:
        """A client request (directly or forwarded)."""
        out: list[Output] = []
        f = req.f
        try:
            if f == "probe" or f == "final-read":
                self._observe(req, now, out)
            elif f == "txn" or f == "add-rule" or f == "revoke-rule" or f == "read-rules":
                inst = self._instance_of(req)
                req.instance = inst
                self._state(inst)
                writes = f != "read-rules" and (f != "txn" or _has_write(req.value))
                if self.eventual:
                    self._eventual(req, inst, writes, now, out)
                elif writes:
                    self._write_sequential(req, now, out)
                else:
                    self._read_sequential(req, inst, now, out)
            else:
                out.append(Reply(req.req_id, "fail", None, f"unknown-f:{f}"))
        except ConsistencyError as exc:
            out.append(Reply(req.req_id, "fail", None, f"bad-request: {exc}"))
        return out

    def _instance_of(self, req: Request) -> str:
        if req.instance is not None:
            return req.instance
        if req.f == "txn" and req.value:
            return parse_key(req.value[0][1])[0]
        raise ConsistencyError(f"{req.f} without an instance")

    def _observe(self, req: Request, now: int, out: list[Output]) -> None:
        """Probe / final read: what this replica holds now (final reads catch up first)."""
        inst = req.instance
        if inst is None:
            raise ConsistencyError(f"{req.f} without an instance")
        self._state(inst)
        if req.f == "final-read" and not self.eventual:
            self._barrier += 1
            self.reads.append(_Read(req, {}, self._barrier))
            out.append(Poll(list(self.next_offset), self._barrier))
            return
        out.append(Reply(req.req_id, "ok", self._observation(req.f, inst), None,
                         self._token_for(inst)))

    def observe(self, instance: str) -> dict[str, Any]:
        """This replica's current view of an instance (the final-read value)."""
        self._state(instance)
        return self._observation("final-read", instance)

    def _identity(self, st: InstanceState) -> tuple[str, str]:
        """(fingerprint, model reply), cached until the state changes.

        Every change of meaning adds an event id to ``seen`` (applied or
        rejected), so its size is a safe cache key.
        """
        key = (st.instance_id, len(st.seen))
        hit = self._fp_cache.get(st.instance_id)
        if hit is not None and hit[0] == key:
            return hit[1], hit[2]
        fp = fingerprint(st)
        reply = self.model.reply(st, fp)
        self._fp_cache[st.instance_id] = (key, fp, reply)
        return fp, reply

    def _observation(self, f: str, inst: str) -> dict[str, Any]:
        st = self.states[inst]
        fp, reply = self._identity(st)
        if f == "probe":
            return {"replica": self.name, "fingerprint": fp, "version": st.version,
                    "reply": reply}
        memory = {f"{m}/{k}": _scalar(r.value)
                  for m, recs in sorted(st.memory.items()) for k, r in sorted(recs.items())}
        return {"replica": self.name, "fingerprint": fp, "version": st.version,
                "transcript": self._read_key("transcript", None, st),
                "cases": self._read_key("cases", None, st),
                "rules": sorted_ids(_scalar(r) for r in st.rules),
                "revoked": sorted_ids(_scalar(r) for r in st.revoked),
                "memory": memory, "epoch": st.epoch, "owner": st.owner,
                "reply": reply}

    def _token_for(self, inst: str) -> Token:
        return {p: self.next_offset[p] for p in self._partitions(inst)}

    def _governance_events(self, req: Request, inst: str, now: int,
                           epoch: int) -> list[tuple[int, Event]]:
        rid = str(req.value)
        p: Payload = (RuleAdded(rule_id=rid, text=f"rule {rid}") if req.f == "add-rule"
                      else RuleRevoked(rule_id=rid, reason="revoked"))
        return [(self.home[inst], make_event(inst, p, writer=self.name, epoch=epoch,
                                             hlc=self._tick_hlc(now), event_id=self._eid()))]

    def _read_value(self, req: Request, inst: str) -> tuple[Any, dict[str, Any] | None]:
        if req.f == "read-rules":
            return sorted_ids(_scalar(r) for r in self.states[inst].rules), None
        dm = self._deps_missing(inst, req.value)
        return self._eval_txn(req.value), ({"deps_missing": dm} if dm else None)

    # -- eventual -------------------------------------------------------------------

    def _eventual(self, req: Request, inst: str, writes: bool, now: int,
                  out: list[Output]) -> None:
        if not writes:
            value, extra = self._read_value(req, inst)
            out.append(Reply(req.req_id, "ok", value, None, None, extra))
            return
        if req.f == "txn":
            entries = self._txn_events(inst, req.value, now, 0, False)
            value, extra = self._read_value(req, inst)
        else:
            entries = self._governance_events(req, inst, now, 0)
            value, extra = req.value, None
        # local-first: local effects now (both partitions at once), shipped later
        for part, ev in entries:
            self._apply(ev, part, -1, now, out)
        self.outbox.extend(entries)
        out.append(Reply(req.req_id, "ok", value, None, None, extra))

    # -- sequential -------------------------------------------------------------------

    def _write_sequential(self, req: Request, now: int, out: list[Output]) -> None:
        inst = req.instance
        assert inst is not None
        if not self.owns(inst):
            a = self.assigned.get(inst)
            if a is not None and a[0] != self.name and req.hops == 0:
                req.hops += 1
                self.stats["forwarded"] += 1
                out.append(Forward(a[0], req))
            elif a is not None and a[0] == self.name:
                self.await_owner.setdefault(inst, []).append(req)  # claim in flight
            else:
                self.stats["refused"] += 1
                out.append(Reply(req.req_id, "fail", None, "not-owner"))
            return
        # no lease check here: a write is acknowledged only once the log has it,
        # so a replica cut off from the log simply never acks (info), and a
        # zombie's late writes reach the log where the reducers fence them.
        epoch = self.active_epoch[inst]
        if req.f == "txn":
            mops: list[list[Any]] = req.value
            nw = 0
            has_w = False
            for m in mops:
                if m[0] != "r":
                    nw += 1
                    if m[0] == "w":
                        has_w = True
            # read_version is a position in the instance's one total order; with
            # sharded memory there is none (two partitions), so no conditional writes
            conditional = nw == 1 and has_w and self.home[inst] == self.mem[inst]
            entries = self._txn_events(inst, mops, now, epoch, conditional)
        else:
            mops = []
            entries = self._governance_events(req, inst, now, epoch)
        w = _Write(req, mops, [e.event_id for _, e in entries], inst)
        if req.f != "txn":
            w.result = req.value
        writes = self.writes
        for eid in w.event_ids:
            writes[eid] = w
        self._n_batches += 1
        p0 = entries[0][0] if entries else -1
        if entries and all(p == p0 for p, _ in entries):
            out.append(Append(self._n_batches, entries, {p0: self.next_offset[p0]}))
            return
        parts = {p for p, _ in entries}
        if self.cfg.atomic_memory:
            out.append(Append(self._n_batches, entries,
                              {p: self.next_offset[p] for p in sorted(parts)}))
        else:
            for p in sorted(parts):
                out.append(Append(self._n_batches, [x for x in entries if x[0] == p],
                                  {p: self.next_offset[p]}))

    def _read_sequential(self, req: Request, inst: str, now: int, out: list[Output]) -> None:
        if not self._log_reachable(now):
            self.stats["refused"] += 1
            out.append(Reply(req.req_id, "fail", None, UNAVAILABLE))
            return
        if self.linearizable:
            self._barrier += 1
            self.reads.append(_Read(req, {}, self._barrier))
            out.append(Poll(list(self.next_offset), self._barrier))
            return
        needed = {p: o for p, o in (req.token or {}).items() if p in self._partitions(inst)}
        if all(self.next_offset[p] >= o for p, o in needed.items()):
            self._serve_read(req, inst, out)
        else:
            self.reads.append(_Read(req, needed))
            out.append(Poll(list(self.next_offset)))

    def _serve_read(self, req: Request, inst: str, out: list[Output]) -> None:
        if req.f == "final-read":
            out.append(Reply(req.req_id, "ok", self._observation(req.f, inst), None,
                             self._token_for(inst)))
            return
        value, extra = self._read_value(req, inst)
        out.append(Reply(req.req_id, "ok", value, None, self._token_for(inst), extra))

    def _check_reads(self, now: int, out: list[Output]) -> None:
        if not self.reads:
            return
        keep: list[_Read] = []
        nxt = self.next_offset
        for r in self.reads:
            if r.barrier_id is None and all(nxt[p] >= o for p, o in r.needed.items()):
                assert r.request.instance is not None
                self._serve_read(r.request, r.request.instance, out)
            else:
                keep.append(r)
        self.reads = keep

    def on_grant(self, grant: Grant, now: int) -> list[Output]:
        """The coordinator (re)states an owner; if it is us, claim it through the log.

        Grants are re-sent periodically, so a repeated grant we hold already is
        a no-op and one whose claim is still missing from the log re-sends the
        same claim event (idempotent at the log).
        """
        out: list[Output] = []
        inst = grant.instance
        self._state(inst)
        cur = self.assigned.get(inst)
        if cur is not None and cur[1] > grant.epoch:
            return out
        if self.eventual:
            self.assigned[inst] = (grant.owner, grant.epoch)
            return out
        if cur == (grant.owner, grant.epoch):
            if grant.owner == self.name and inst in self.claims:
                entries = self.claims[inst]
                if entries[0][1].event_id not in self.states[inst].seen:
                    self._n_batches += 1
                    out.append(Append(self._n_batches, entries,
                                      {p: self.next_offset[p] for p, _ in entries}))
            return out
        self._set_owner(inst, grant.owner, grant.epoch, now, out)
        if grant.owner == self.name:
            self._send_claim(inst, grant.epoch, now, out)
        return out

    def _set_owner(self, inst: str, owner: str, epoch: int, now: int,
                   out: list[Output]) -> None:
        self.assigned[inst] = (owner, epoch)
        if owner != self.name:
            self.active_epoch.pop(inst, None)
            self.claims.pop(inst, None)
            # writes queued for our claim go to the new owner instead
            for req in self.await_owner.pop(inst, []):
                self._write_sequential(req, now, out)

    def _send_claim(self, inst: str, epoch: int, now: int, out: list[Output]) -> None:
        """Claim ``inst`` at ``epoch`` on every partition it spans, in one append.

        With sharded memory the claim is a pair (home and memory partition),
        each naming the other in ``deps``; replicas apply the pair as a barrier
        (see `on_records`), so an old owner's memory write lands on the same
        side of the claim at every replica and every reducer fences it alike.
        """
        parts = self._partitions(inst)
        ids = [self._eid() for _ in parts]
        entries: list[tuple[int, Event]] = []
        for k, p in enumerate(parts):
            partner = tuple(x for x in ids if x != ids[k])
            entries.append((p, make_event(inst, OwnershipClaimed(owner=self.name, partition=p),
                                          writer=self.name, epoch=epoch,
                                          hlc=self._tick_hlc(now), deps=partner,
                                          event_id=ids[k])))
        self.claims[inst] = entries
        self.stats["claims"] += 1
        self._n_batches += 1
        out.append(Append(self._n_batches, entries,
                          {p: self.next_offset[p] for p in parts}))

    def on_records(self, rec: Records, now: int) -> list[Output]:
        """Records from the log (poll reply or append catch-up): apply in offset order."""
        out: list[Output] = []
        self.log_contact = now
        nxt = self.next_offset
        atomic = self.cfg.atomic_memory
        chunks = rec.chunks
        while chunks:
            blocked: list[tuple[int, int, list[Event]]] = []
            progress = False
            for p, start, events in chunks:
                o = nxt[p]
                if start > o:
                    continue  # a gap: the next poll fetches from our offset
                for k in range(o - start, len(events)):
                    ev = events[k]
                    if ev.deps and not self._deps_applied(ev):
                        if ev.kind == "ownership_claimed":
                            # a claim pair is a barrier across the instance's
                            # partitions: pass it only once the partner is next too
                            if not self._partner_is_next(ev.deps, rec.chunks):
                                blocked.append((p, start, events))
                                break
                        elif atomic:
                            # read_committed across partitions: the partition stops
                            # at a turn until the memory written with it is applied
                            # (partition order is kept: every replica folds alike)
                            blocked.append((p, start, events))
                            break
                    off = start + k
                    self._apply(ev, p, off, now, out)
                    nxt[p] = off + 1
                    progress = True
            chunks = blocked if progress else []
        if rec.barrier_id is not None and rec.ends is not None:
            for r in self.reads:
                if r.barrier_id == rec.barrier_id:
                    inst = r.request.instance
                    assert inst is not None
                    r.barrier_id = None
                    r.needed = {p: rec.ends[p] for p in self._partitions(inst)}
        self._check_reads(now, out)
        return out

    def durable_outbox(self) -> list[tuple[int, Event]]:
        """What the local disk holds: every acknowledged write the log has not confirmed.

        Eventual writes are acknowledged before the log has them, so the
        outbox is the only copy of those writes; a runtime keeps it across a
        crash (it is written before the reply goes out) and hands it to the
        next incarnation's `recover`.
        """
        return list(self.outbox) if self.eventual else []

    def recover(self, entries: list[tuple[int, Event]], now: int) -> None:
        """Restart from the local disk: merge the durable writes, ship them again.

        The rest of the state comes from the log (a fresh replica polls from
        offset 0); CRDT merges commute and duplicates are idempotent, so
        merging the durable writes first gives the same state as any other
        order. The HLC moves past them, so this incarnation's writes order
        after its predecessor's.
        """
        if not self.eventual or not entries:
            return
        out: list[Output] = []
        for part, ev in entries:
            self.hlc = self.hlc.receive(ev.hlc, (now + self.clock_offset_ns) // _MS)
            self._apply(ev, part, -1, now, out)
        self.outbox.extend(entries)

    def on_append_ack(self, ack: AppendAck, now: int) -> list[Output]:
        """The log took an append: drop it from the outbox, apply the catch-up records."""
        acked = self.outbox_batches.pop(ack.batch_id, None)
        if acked:
            self.outbox = [x for x in self.outbox if x[1].event_id not in acked]
        return self.on_records(ack.records, now)

    def on_tick(self, now: int) -> list[Output]:
        """Periodic: poll the log, ship the outbox, give up on reads that waited too long."""
        out: list[Output] = [Poll(list(self.next_offset))]
        if self.eventual and self.outbox and now - self.last_ship >= self.cfg.outbox_ms * _MS:
            self.last_ship = now
            batch = self.outbox[:self.cfg.poll_limit]
            if self.cfg.atomic_memory or self.cfg.shards == 1:
                groups = [batch]
            else:  # one append per partition, each delivered (or lost) on its own
                groups = [[x for x in batch if x[0] == p] for p in sorted({p for p, _ in batch})]
            for g in groups:
                self._n_batches += 1
                self.outbox_batches[self._n_batches] = {e.event_id for _, e in g}
                out.append(Append(self._n_batches, g, {}))
        if self.writes:
            grace = self.cfg.write_wait_ms * _MS
            for eid, w in list(self.writes.items()):
                if now > w.request.deadline + grace:
                    del self.writes[eid]  # the client has long timed out (info)
        if self.reads:
            keep: list[_Read] = []
            for r in self.reads:
                if now >= r.request.deadline:
                    out.append(Reply(r.request.req_id, "fail", None, "read-timeout"))
                else:
                    keep.append(r)
            self.reads = keep
        for inst, entries in list(self.claims.items()):
            st = self.states[inst]
            claim = entries[0][1]
            if claim.event_id in st.seen and self.active_epoch.get(inst) != claim.epoch:
                # our claim lost (fenced by a newer one): stop waiting on it
                self.claims.pop(inst, None)
                for req in self.await_owner.pop(inst, []):
                    out.append(Reply(req.req_id, "fail", None, "not-owner"))
        for inst, reqs in list(self.await_owner.items()):
            keep_reqs = [q for q in reqs if now < q.deadline]
            if len(keep_reqs) != len(reqs):
                self.await_owner[inst] = keep_reqs
        return out
