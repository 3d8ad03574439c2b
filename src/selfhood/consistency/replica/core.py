"""What every replica does, whatever its mode: fold the log into instance states, read them.

`Replica` holds per-instance states folded from the log, answers reads of
them (key reads, probes, final reads, the model's reply), learns owners from
the claims it applies, and leaves writing to its mode (`sequential.py`,
`eventual.py`). The module docstring of `selfhood.consistency.replica`
lists the inputs and outputs.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from operator import attrgetter, itemgetter
from typing import Any, Final

import msgspec

from selfhood.consistency.config import MODES, ReplicaConfig
from selfhood.consistency.keys import KeyKind, is_transcript_key, parse_key
from selfhood.consistency.ownership import Grant, home_partition, memory_partition
from selfhood.consistency.replica.messages import (
    LEASE_CAUGHT_UP,
    LEASE_NOW,
    AppendAck,
    Chunk,
    Clock,
    ModelCall,
    Output,
    Poll,
    Records,
    Reply,
    ReqId,
    Request,
    Token,
)
from selfhood.errors import ConsistencyError, PoisonEvent
from selfhood.events import (
    SCHEMA_VERSIONS,
    Case,
    Event,
    EventKind,
    Hlc,
    MemoryWritten,
    OwnershipClaimed,
    Payload,
    RuleAdded,
    RuleRevoked,
    TurnAppended,
    make_event,
)
from selfhood.projections.state import InstanceState, Outcome, fingerprint

MS: Final = 1_000_000

#: an event-id source: the simulator passes seeded UUIDv4s, a process ``uuid.uuid4``
IdSource = Callable[[], str]

# what `make_event` fills in for the two payloads of a transaction (built directly on
# the write path, one call fewer per event; test_simperf checks they agree)
_TURN_APPENDED: Final[EventKind] = "turn_appended"
_TURN_V: Final = SCHEMA_VERSIONS[_TURN_APPENDED]
_MEMORY_WRITTEN: Final[EventKind] = "memory_written"
_MEMORY_V: Final = SCHEMA_VERSIONS[_MEMORY_WRITTEN]


#: a record's offset (the bisect key of `on_records`)
_offset: Final[Callable[[tuple[int, Event]], int]] = itemgetter(0)
#: a transcript or case-bank entry's CRDT order (hlc, writer, event_id)
_stamp: Final[Callable[[Any], tuple[Hlc, str, str]]] = attrgetter("hlc", "writer", "event_id")


def scalar(s: str | None) -> Any:
    """Values travel as strings in events; the workloads use ints, so give ints back."""
    if s is None:
        return None
    if s.isdigit():
        return int(s)
    try:
        return int(s)
    except ValueError:
        return s


def has_write(mops: list[list[Any]]) -> bool:
    for m in mops:
        if m[0] != "r":
            return True
    return False


def sorted_ids(ids: Any) -> list[Any]:
    """Rule ids in a stable order: ints numerically, then strings."""
    return sorted(ids, key=lambda x: (1, 0, x) if isinstance(x, str) else (0, x, ""))


def _no_reducer(st: InstanceState, ev: Event) -> Outcome:
    raise NotImplementedError("a replica mode sets its reducer")


class _Observe(msgspec.Struct, gc=False):
    """A probe or final read waiting for the model's reply to its context."""

    req_id: ReqId
    observation: dict[str, Any]
    token: Token


class Replica:
    """One replica: per-instance states folded from the log; the mode's subclass writes.

    Build one with `make_replica` (it picks the mode's class).
    """

    eventual = False

    def __init__(self, name: str, config: ReplicaConfig, instances: tuple[str, ...], *,
                 new_id: IdSource) -> None:
        if config.mode not in MODES:
            raise ConsistencyError(f"unknown mode {config.mode!r}; expected one of {MODES}")
        self.name = name
        self.cfg = config
        self.instances = instances
        self._eid = new_id
        self._keys: dict[str, tuple[str, KeyKind, str | None]] = {}
        self.states: dict[str, InstanceState] = {i: InstanceState.empty(i) for i in instances}
        self.home = {i: home_partition(i, config.shards) for i in instances}
        self.mem = {i: memory_partition(i, config.shards, config.sharded_memory)
                    for i in instances}
        self.next_offset: list[int] = [0] * config.shards
        self.hlc = Hlc(0, 0)
        #: monotonic time of the last word from the log (set by the runtime at start)
        self.log_contact = 0
        #: False while the state is not one snapshot of the log: a bounded fetch brought
        #: some partitions up to the end a poll saw and others not (see `on_records`)
        self.at_snapshot = True
        self.lease_ns = config.lease_ms * MS
        # ownership: (owner, epoch) per instance, from grants and applied claims
        self.assigned: dict[str, tuple[str, int]] = {}
        self._n_batches = 0
        #: this replica's writes waiting to see their events in the log, by event id
        #: (the mode's record of each; `_apply` hands them to `_own_event`/`_own_applied`)
        self.writes: dict[str, Any] = {}
        # sharded memory bookkeeping
        self.turn_missing: dict[str, dict[str, list[Any]]] = {i: {} for i in instances}
        self.missing_by_dep: dict[str, list[tuple[str, str]]] = {}
        self._cache: dict[tuple[str, str, str | None], Any] = {}
        # identity: fingerprint per (instance, size of seen); model replies per fingerprint
        self._fp_cache: dict[str, tuple[int, str]] = {}
        self._replies: dict[str, tuple[str, str]] = {}
        self._calls: dict[int, tuple[str, str, list[_Observe]]] = {}
        self._call_of: dict[tuple[str, str], int] = {}
        self._n_calls = 0
        #: the mode's reducer: fold one event into its instance's state (an attribute, not
        #: a method: every replica folds every event, one Python call fewer each)
        self._reduce: Callable[[InstanceState, Event], Outcome] = _no_reducer
        self.stats: dict[str, int] = {"applied": 0, "aborted": 0, "fenced": 0,
                                      "duplicate": 0, "stale_epoch_applied": 0,
                                      "refused": 0, "forwarded": 0, "claims": 0}

    # -- helpers -----------------------------------------------------------

    def _key(self, key: str) -> tuple[str, KeyKind, str | None]:
        """`parse_key`, memoized (a run uses a small, fixed set of keys)."""
        k = self._keys.get(key)
        if k is None:
            k = self._keys[key] = parse_key(key)
        return k

    def _tick_hlc(self, now: Clock) -> Hlc:
        self.hlc = h = self.hlc.tick(now.wall // MS)
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

    def _log_reachable(self, now: Clock) -> bool:
        """Whether the log confirmed this replica's state within the lease (its read lease)."""
        return now.mono - self.log_contact <= self.lease_ns

    def owner_of(self, instance: str) -> tuple[str, int] | None:
        """(owner, epoch) of ``instance`` as far as this replica knows (grant or applied claim)."""
        return self.assigned.get(instance)

    def owns(self, instance: str) -> bool:
        """True once this replica may write ``instance`` (sequential: its claim is applied)."""
        return False

    # -- reading state -------------------------------------------------------

    def _read_key(self, kind: str, name: str | None, st: InstanceState) -> Any:
        ck = (st.instance_id, kind, name)
        hit = self._cache.get(ck)
        if hit is not None:
            return hit
        val: Any
        if kind == "transcript":
            val = [scalar(t.content) for t in st.transcript]
        elif kind == "cases":
            val = [scalar(c.key) for c in st.case_bank]
        else:
            assert name is not None
            rec = st.memory[kind].get(name)
            val = scalar(rec.value) if rec is not None else None
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
        n = len(seq)
        if len(cached) + 1 != n:
            del self._cache[ck]
            return
        eid = ev.event_id
        if seq[-1].event_id == eid:
            cached.append(int(raw) if raw.isdigit() else scalar(raw))
            return
        lo = bisect_left(seq, (ev.hlc, ev.writer, eid), key=_stamp)
        if lo < n and seq[lo].event_id == eid:
            cached.insert(lo, scalar(raw))
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
        keys = self._keys
        cache = self._cache
        for f, key, v in mops:
            if f == "r":
                if own is not None and key in own:
                    val = own[key]
                else:
                    k = keys.get(key)
                    inst, kind, name = k if k is not None else self._key(key)
                    val = cache.get((inst, kind, name))  # `_read_key`'s cache, read inline
                    if val is None:
                        st = self.states.get(inst)
                        val = self._read_key(kind, name, st if st is not None
                                             else self._state(inst))
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

    def _deps_missing(self, instance: str, mops: list[list[Any]]) -> list[list[Any]] | None:
        tm = self.turn_missing.get(instance)
        if not tm:
            return None
        if not any(f == "r" and is_transcript_key(key) for f, key, _ in mops):
            return None
        return [[val, list(missing)] for val, missing in tm.values()]

    def _read_value(self, req: Request, inst: str) -> tuple[Any, dict[str, Any] | None]:
        if req.f == "read-rules":
            return sorted_ids(scalar(r) for r in self.states[inst].rules), None
        dm = self._deps_missing(inst, req.value) if self.turn_missing.get(inst) else None
        return self._eval_txn(req.value), ({"deps_missing": dm} if dm else None)

    # -- events -----------------------------------------------------------------

    def _txn_events(self, instance: str, mops: list[list[Any]], now: Clock, epoch: int,
                    conditional: bool) -> list[tuple[int, Event]]:
        """Turn the writes of a transaction into events, memory first, turns listing deps."""
        mem_entries: list[tuple[int, Event]] = []
        turn_payloads: list[Payload] = []
        mp = self.mem[instance]
        hp = self.home[instance]
        st = self.states[instance]
        rv = st.version if conditional else None
        keys = self._keys
        writer = self.name
        new_id = self._eid
        wall_ms = now.wall // MS
        for f, key, v in mops:
            if f == "r":
                continue
            k = keys.get(key)
            inst, kind, name = k if k is not None else self._key(key)
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
                p = MemoryWritten(module=kind, key=name or "", value=str(v))
            self.hlc = hlc = self.hlc.tick(wall_ms)  # `_tick_hlc`, inlined
            mem_entries.append((mp, Event(event_id=new_id(), instance_id=instance,
                                          kind=_MEMORY_WRITTEN, schema_version=_MEMORY_V,
                                          payload=p, writer=writer, epoch=epoch, hlc=hlc,
                                          read_version=rv)))
        deps = tuple(e.event_id for _, e in mem_entries) if mp != hp else ()
        out = mem_entries
        for tp in turn_payloads:
            self.hlc = hlc = self.hlc.tick(wall_ms)
            out.append((hp, Event(event_id=new_id(), instance_id=instance,
                                  kind=_TURN_APPENDED, schema_version=_TURN_V, payload=tp,
                                  writer=writer, epoch=epoch, hlc=hlc, deps=deps,
                                  read_version=rv)))
        return out

    def _governance_events(self, req: Request, inst: str, now: Clock,
                           epoch: int) -> list[tuple[int, Event]]:
        rid = str(req.value)
        p: Payload = (RuleAdded(rule_id=rid, text=f"rule {rid}") if req.f == "add-rule"
                      else RuleRevoked(rule_id=rid, reason="revoked"))
        return [(self.home[inst], make_event(inst, p, writer=self.name, epoch=epoch,
                                             hlc=self._tick_hlc(now), event_id=self._eid()))]

    # -- folding ------------------------------------------------------------------

    def _claimed(self, inst: str, owner: str, epoch: int, now: Clock,
                 out: list[Output]) -> None:
        """An ownership claim was applied (the mode decides what it means)."""

    def _own_event(self, write: Any, partition: int) -> None:
        """One of our writes' events is about to be folded (the mode evaluates its reads)."""

    def _own_applied(self, write: Any, outcome: Outcome, partition: int, offset: int,
                     out: list[Output]) -> None:
        """One of our writes' events was folded with ``outcome``."""

    def _apply(self, ev: Event, partition: int, offset: int, now: Clock,
               out: list[Output]) -> Outcome:
        """Fold one event from the log (or a local eventual write) into its instance."""
        eid = ev.event_id
        writes = self.writes
        w = writes.get(eid) if writes else None
        if w is not None:
            self._own_event(w, partition)
        inst = ev.instance_id
        st = self.states.get(inst)
        if st is None:
            st = self._state(inst)
        oe = st.owner_entry  # the claim before the fold (entries are immutable)
        try:
            outcome = self._reduce(st, ev)
        except PoisonEvent:
            outcome = "aborted"
        self.stats[outcome] += 1
        if outcome == "applied":
            p = ev.payload  # `type(p) is` narrows it for mypy: no isinstance per fold
            if type(p) is TurnAppended:
                self._extend_cache(inst, "transcript", st.transcript, ev, p.content)
                deps = ev.deps
                if deps:
                    seen = st.seen
                    missing = [d for d in deps if d not in seen]
                    if missing:
                        self.turn_missing[inst][eid] = [scalar(p.content), missing]
                        for d in missing:
                            self.missing_by_dep.setdefault(d, []).append((inst, eid))
            elif type(p) is MemoryWritten:
                if p.module == "case_bank":
                    self._extend_cache(inst, "cases", st.case_bank, ev, p.key)
                else:
                    self._cache.pop((inst, p.module, p.key), None)
            elif type(p) is OwnershipClaimed:
                self._claimed(inst, p.owner, ev.epoch, now, out)
            if ev.epoch < (oe.epoch if oe is not None else 0) and type(p) is not OwnershipClaimed:
                self.stats["stale_epoch_applied"] += 1
        if self.missing_by_dep:
            waiters = self.missing_by_dep.pop(eid, None)
            if waiters is not None:
                for winst, turn_id in waiters:
                    entry = self.turn_missing[winst].get(turn_id)
                    if entry is not None:
                        entry[1] = [d for d in entry[1] if d != eid]
                        if not entry[1]:
                            del self.turn_missing[winst][turn_id]
        if w is not None:
            self._own_applied(w, outcome, partition, offset, out)
        return outcome

    def _partner_is_next(self, deps: tuple[str, ...], chunks: list[Chunk]) -> bool:
        nxt = self.next_offset
        heads = set()
        for p, recs, _ in chunks:
            o = nxt[p]
            for off, ev in recs:
                if off >= o:
                    heads.add(ev.event_id)
                    break
        return all(d in heads for d in deps)

    def _deps_applied(self, ev: Event) -> bool:
        seen = self._state(ev.instance_id).seen
        return all(d in seen for d in ev.deps)

    # -- inputs -------------------------------------------------------------------

    def on_request(self, req: Request, now: Clock) -> list[Output]:
        """A client request (directly or forwarded)."""
        out: list[Output] = []
        f = req.f
        try:
            if f == "probe" or f == "final-read":
                self._observe(req, now, out)
            elif f == "txn" or f == "add-rule" or f == "revoke-rule" or f == "read-rules":
                inst = req.instance
                if inst is None:
                    req.instance = inst = self._instance_of(req)
                if inst not in self.states:
                    self._state(inst)
                writes = f != "read-rules" and (f != "txn" or has_write(req.value))
                self._serve(req, inst, writes, now, out)
            else:
                out.append(Reply(req.req_id, "fail", None, f"unknown-f:{f}"))
        except ConsistencyError as exc:
            out.append(Reply(req.req_id, "fail", None, f"bad-request: {exc}"))
        return out

    def _serve(self, req: Request, inst: str, writes: bool, now: Clock,
               out: list[Output]) -> None:
        """The mode's protocol for a txn or governance op on ``inst``."""
        raise NotImplementedError

    def on_records(self, rec: Records, now: Clock) -> list[Output]:
        """Records from the log (poll reply or append catch-up): apply in offset order.

        Records below the replica's next offset were applied already; a
        chunk's ``next_offset`` moves past any gap after its last record.
        """
        out: list[Output] = []
        lease = rec.lease
        if lease == LEASE_NOW:  # see `Records.lease`
            self.log_contact = now.mono
        nxt = self.next_offset
        atomic = self.cfg.atomic_memory
        chunks = rec.chunks
        # a bounded fetch: nothing past the end this contact saw (see `Records.lease`)
        limit = rec.ends if lease == LEASE_CAUGHT_UP else None
        while chunks:
            blocked: list[Chunk] = []
            progress = False
            for chunk in chunks:
                p, recs, end = chunk
                o = nxt[p]
                stopped = False
                if recs and recs[0][0] < o:  # overlaps what was applied already
                    recs = recs[bisect_left(recs, o, key=_offset):]
                if limit is not None and recs and recs[-1][0] >= limit[p]:
                    recs = recs[:bisect_left(recs, limit[p], key=_offset)]
                    end = limit[p]
                for off, ev in recs:
                    if ev.deps and not self._deps_applied(ev):
                        if ev.kind == "ownership_claimed":
                            # a claim pair is a barrier across the instance's
                            # partitions: pass it only once the partner is next too
                            if not self._partner_is_next(ev.deps, rec.chunks):
                                stopped = True
                                break
                        elif atomic:
                            # read_committed across partitions: the partition stops
                            # at a turn until the memory written with it is applied
                            # (partition order is kept: every replica folds alike)
                            stopped = True
                            break
                    self._apply(ev, p, off, now, out)
                    nxt[p] = o = off + 1
                    progress = True
                if stopped:
                    blocked.append(chunk)
                elif end > o:
                    nxt[p] = min(end, limit[p]) if limit is not None else end
            chunks = blocked if progress else []
        if lease == LEASE_CAUGHT_UP:
            ends = rec.ends
            if ends is not None:
                # Current with the end this contact saw on every partition, and past it on
                # none: the state is that snapshot of the log. A partial round (one
                # partition's fetch fell short) leaves a state no reader may see: a session
                # could see a write on one partition and then miss, on the other, a write
                # its writer made before it (a G-single-item-process).
                self.at_snapshot = all(nxt[p] >= e for p, e in enumerate(ends))
                if self.at_snapshot:
                    self.log_contact = now.mono
        elif lease == LEASE_NOW:
            self.at_snapshot = True
        self._after_records(rec, now, out)
        return out

    def _after_records(self, rec: Records, now: Clock, out: list[Output]) -> None:
        """What the mode does once a batch of records is applied."""

    def on_append_ack(self, ack: AppendAck, now: Clock) -> list[Output]:
        """The log took an append: apply the catch-up records."""
        return self.on_records(ack.records, now)

    def on_grant(self, grant: Grant, now: Clock) -> list[Output]:
        """The runtime says ``grant.owner`` now owns ``grant.instance`` at ``grant.epoch``."""
        cur = self.assigned.get(grant.instance)
        if cur is None or cur[1] <= grant.epoch:
            self._state(grant.instance)
            self.assigned[grant.instance] = (grant.owner, grant.epoch)
        return []

    def on_tick(self, now: Clock) -> list[Output]:
        """Periodic: poll the log (also the heartbeat), plus the mode's housekeeping."""
        out: list[Output] = [Poll(list(self.next_offset))]
        self._housekeep(now, out)
        return out

    def _housekeep(self, now: Clock, out: list[Output]) -> None:
        """The mode's periodic work (ship the outbox, time out waits)."""

    def on_model_reply(self, call_id: int, text: str, now: Clock) -> list[Output]:
        """The model answered a `ModelCall`: complete the probes and final reads waiting on it."""
        out: list[Output] = []
        call = self._calls.pop(call_id, None)
        if call is None:
            return out
        inst, digest, waiting = call
        self._call_of.pop((inst, digest), None)
        self._replies[inst] = (digest, text)
        for w in waiting:
            w.observation["reply"] = text
            out.append(Reply(w.req_id, "ok", w.observation, None, w.token))
        return out

    # -- durable local state (eventual mode keeps its outbox on disk) -------------------

    def durable_outbox(self) -> list[tuple[int, Event]]:
        """What the local disk holds: acknowledged writes the log has not confirmed."""
        return []

    def recover(self, entries: list[tuple[int, Event]], now: Clock) -> None:
        """Restart from the local disk (see `durable_outbox`)."""

    # -- observations -------------------------------------------------------------------

    def _instance_of(self, req: Request) -> str:
        if req.instance is not None:
            return req.instance
        if req.f == "txn" and req.value:
            return parse_key(req.value[0][1])[0]
        raise ConsistencyError(f"{req.f} without an instance")

    def _observe(self, req: Request, now: Clock, out: list[Output]) -> None:
        """Probe / final read: what this replica holds now."""
        inst = req.instance
        if inst is None:
            raise ConsistencyError(f"{req.f} without an instance")
        self._state(inst)
        self._reply_observation(req, inst, out)

    def _reply_observation(self, req: Request, inst: str, out: list[Output]) -> None:
        """Reply with the observation; first ask the model if it has not seen this context."""
        obs = self._observation(req.f, inst)
        token = self._token_for(inst)
        digest = obs["fingerprint"]
        known = self._replies.get(inst)
        if known is not None and known[0] == digest:
            obs["reply"] = known[1]
            out.append(Reply(req.req_id, "ok", obs, None, token))
            return
        w = _Observe(req.req_id, obs, token)
        call_id = self._call_of.get((inst, digest))
        if call_id is not None:
            self._calls[call_id][2].append(w)
            return
        self._n_calls += 1
        call_id = self._call_of[(inst, digest)] = self._n_calls
        self._calls[call_id] = (inst, digest, [w])
        out.append(ModelCall(call_id, inst, digest, self.states[inst]))

    def observe(self, instance: str) -> dict[str, Any]:
        """This replica's current view of an instance (the final-read value).

        ``reply`` is the model's reply if the model has answered for exactly
        this context, else None (asking it is an output, see `ModelCall`).
        """
        self._state(instance)
        obs = self._observation("final-read", instance)
        known = self._replies.get(instance)
        obs["reply"] = known[1] if known is not None and known[0] == obs["fingerprint"] else None
        return obs

    def _fingerprint(self, st: InstanceState) -> str:
        """The state's fingerprint, cached until the state changes.

        Every change of meaning adds an event id to ``seen`` (applied or
        rejected), so its size is a safe cache key.
        """
        n = len(st.seen)
        hit = self._fp_cache.get(st.instance_id)
        if hit is not None and hit[0] == n:
            return hit[1]
        fp = fingerprint(st)
        self._fp_cache[st.instance_id] = (n, fp)
        return fp

    def _observation(self, f: str, inst: str) -> dict[str, Any]:
        st = self.states[inst]
        fp = self._fingerprint(st)
        if f == "probe":
            return {"replica": self.name, "fingerprint": fp, "version": st.version,
                    "reply": None}
        memory = {f"{m}/{k}": scalar(r.value)
                  for m, recs in sorted(st.memory.items()) for k, r in sorted(recs.items())}
        return {"replica": self.name, "fingerprint": fp, "version": st.version,
                "transcript": list(self._read_key("transcript", None, st)),
                "cases": list(self._read_key("cases", None, st)),
                "rules": sorted_ids(scalar(r) for r in st.rules),
                "revoked": sorted_ids(scalar(r) for r in st.revoked),
                "memory": memory, "epoch": st.epoch, "owner": st.owner,
                "reply": None}

    def _token_for(self, inst: str) -> Token:
        h, m = self.home[inst], self.mem[inst]  # `_partitions(inst)`, in its order
        nxt = self.next_offset
        return {h: nxt[h]} if h == m else {h: nxt[h], m: nxt[m]}
