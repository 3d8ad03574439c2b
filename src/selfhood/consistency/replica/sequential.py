"""Sequential (and linearizable) mode: the log is the order (pure).

Only the owner of an instance writes it; other replicas forward writes to
the owner. A write is acknowledged once the owner has applied it *from the
log*; the transaction's reads are evaluated at that log position
(state-machine replication), so every replica would compute the same
result. Single-write register transactions are conditional
(``read_version``) and the reducer decides commit/abort identically
everywhere. Reads wait until the replica has applied the client's session
token; ``linearizable`` first asks the log for its end (read barrier). A
replica that has not heard from the log for ``lease`` refuses (``fail``,
error ``unavailable``): unavailable, never wrong.

Ownership: a `Grant` tells the new owner its epoch; it claims the epoch
through the log and starts writing only once it has applied its own claim
(so it has seen every earlier event). Every other replica learns the owner
from the claims it applies and forwards writes there; the reducers fence
events of older epochs, so a paused zombie cannot write.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any

import msgspec

from selfhood.consistency.config import ReplicaConfig
from selfhood.consistency.ownership import Grant
from selfhood.consistency.replica.core import MS, IdSource, Replica
from selfhood.consistency.replica.messages import (
    UNAVAILABLE,
    Append,
    Clock,
    Forward,
    Output,
    Poll,
    Records,
    Reply,
    Request,
    Token,
)
from selfhood.events import Event, OwnershipClaimed, make_event
from selfhood.projections.reducer import apply_sequential
from selfhood.projections.state import Outcome


@dataclass(slots=True)
class _Write:
    """A sequential write waiting to see its events in the log."""

    request: Request
    deadline: int
    mops: list[list[Any]]
    event_ids: list[str]
    instance: str
    #: the reply value: a txn's micro-ops with its reads filled in (None until its first
    #: event is folded), a governance op's own value (a rule id)
    result: Any = None
    outcomes: list[Outcome] = field(default_factory=list)
    positions: Token = field(default_factory=dict)
    deps_missing: list[list[Any]] | None = None
    #: sharded memory: partitions whose reads wait for the txn's first event there
    reread: set[int] | None = None


class _Read(msgspec.Struct, gc=False):
    """A read waiting for the replica to catch up (with the token, or past a barrier)."""

    request: Request
    deadline: int
    needed: Token
    barrier_id: int | None = None


class SequentialReplica(Replica):
    """A replica of the sequential or linearizable mode."""

    def __init__(self, name: str, config: ReplicaConfig, instances: tuple[str, ...], *,
                 new_id: IdSource) -> None:
        super().__init__(name, config, instances, new_id=new_id)
        self.linearizable = config.mode == "linearizable"
        self._reduce = (apply_sequential if config.fencing
                        else partial(apply_sequential, fencing=False))
        self.active_epoch: dict[str, int] = {}
        self.claims: dict[str, list[tuple[int, Event]]] = {}
        #: writes waiting to learn the owner (or for our own claim), with their deadlines
        self.await_owner: dict[str, list[tuple[Request, int]]] = {}
        self.reads: list[_Read] = []
        self._barrier = 0

    def owns(self, instance: str) -> bool:
        """True once this replica has applied its own current claim on ``instance``."""
        a = self.assigned.get(instance)
        return a is not None and a[0] == self.name and self.active_epoch.get(instance) == a[1]

    # -- requests -------------------------------------------------------------------

    def _serve(self, req: Request, inst: str, writes: bool, now: Clock,
               out: list[Output]) -> None:
        deadline = now.mono + req.timeout_ns
        if writes:
            self._write(req, deadline, now, out)
        else:
            self._read(req, inst, deadline, now, out)

    def _write(self, req: Request, deadline: int, now: Clock, out: list[Output]) -> None:
        inst = req.instance
        assert inst is not None
        a = self.assigned.get(inst)
        if a is None or a[0] != self.name or self.active_epoch.get(inst) != a[1]:  # not owns()
            if a is not None and a[0] != self.name:
                if req.hops == 0:
                    req.hops += 1
                    req.timeout_ns = max(0, deadline - now.mono)
                    self.stats["forwarded"] += 1
                    out.append(Forward(a[0], req))
                else:
                    self.stats["refused"] += 1
                    out.append(Reply(req.req_id, "fail", None, "not-owner"))
            else:
                # our claim is in flight, or no claim applied here names the
                # owner yet: wait for the log to tell (or for the deadline)
                self.await_owner.setdefault(inst, []).append((req, deadline))
            return
        # no lease check here: a write is acknowledged only once the log has it,
        # so a replica cut off from the log simply never acks (info), and a
        # zombie's late writes reach the log where the reducers fence them.
        epoch = a[1]  # == active_epoch[inst]
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
        ids: list[str] = []
        w = _Write(req, deadline, mops, ids, inst, None if req.f == "txn" else req.value, [], {})
        writes = self.writes
        for _, ev in entries:
            eid = ev.event_id
            ids.append(eid)
            writes[eid] = w
        self._n_batches += 1
        if entries:
            p0 = entries[0][0]
            for p, _ in entries:
                if p != p0:
                    break
            else:
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

    def _read(self, req: Request, inst: str, deadline: int, now: Clock,
              out: list[Output]) -> None:
        if not self._log_reachable(now):
            self.stats["refused"] += 1
            out.append(Reply(req.req_id, "fail", None, UNAVAILABLE))
            return
        if self.linearizable:
            self._barrier += 1
            self.reads.append(_Read(req, deadline, {}, self._barrier))
            out.append(Poll(list(self.next_offset), self._barrier))
            return
        token = req.token
        if token:
            h, m = self.home[inst], self.mem[inst]  # `_partitions(inst)`
            nxt = self.next_offset
            for p, o in token.items():
                if (p == h or p == m) and nxt[p] < o:
                    needed = {p: o for p, o in token.items() if p == h or p == m}
                    self.reads.append(_Read(req, deadline, needed))
                    out.append(Poll(list(nxt)))
                    return
        if not self.at_snapshot:  # partitions at different points: wait for a whole round
            self.reads.append(_Read(req, deadline, {}))
            out.append(Poll(list(self.next_offset)))
            return
        self._serve_read(req, inst, out)

    def _observe(self, req: Request, now: Clock, out: list[Output]) -> None:
        """A final read catches up with the log end first (a barrier); a probe answers now."""
        if req.f != "final-read":
            super()._observe(req, now, out)
            return
        inst = req.instance
        if inst is None:
            super()._observe(req, now, out)  # raises: no instance
            return
        self._state(inst)
        self._barrier += 1
        self.reads.append(_Read(req, now.mono + req.timeout_ns, {}, self._barrier))
        out.append(Poll(list(self.next_offset), self._barrier))

    def _serve_read(self, req: Request, inst: str, out: list[Output]) -> None:
        if req.f == "final-read":
            self._reply_observation(req, inst, out)
            return
        value, extra = self._read_value(req, inst)
        out.append(Reply(req.req_id, "ok", value, None, self._token_for(inst), extra))

    def _check_reads(self, out: list[Output]) -> None:
        if not self.reads or not self.at_snapshot:
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

    # -- the log ----------------------------------------------------------------------

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

    def _own_event(self, write: Any, partition: int) -> None:
        """Our write's reads are evaluated just before its first event is folded."""
        w: _Write = write
        if w.result is None:
            inst = w.instance
            w.result = self._eval_txn(w.mops)
            if self.turn_missing.get(inst):
                w.deps_missing = self._deps_missing(inst, w.mops)
            if self.home[inst] != self.mem[inst] and w.mops:
                w.reread = {p for p in self._write_partitions(w) if p != partition}
        elif w.reread and partition in w.reread:
            w.reread.discard(partition)
            self._reread(w, partition)

    def _own_applied(self, write: Any, outcome: Outcome, partition: int, offset: int,
                     out: list[Output]) -> None:
        """Once the log has all of a write's events, its outcome goes to the client."""
        w: _Write = write
        oc = w.outcomes
        oc.append(outcome)
        pos = w.positions
        if pos.get(partition, 0) <= offset:
            pos[partition] = offset + 1
        if len(oc) == len(w.event_ids):
            self._finish_write(w, out)

    def _finish_write(self, w: _Write, out: list[Output]) -> None:
        writes = self.writes
        for eid in w.event_ids:
            writes.pop(eid, None)
        req = w.request
        oc = w.outcomes
        n_applied = oc.count("applied")
        if n_applied == len(oc):
            extra = {"deps_missing": w.deps_missing} if w.deps_missing else None
            out.append(Reply(req.req_id, "ok", w.result, None, dict(w.positions), extra))
        elif n_applied == 0:
            err = "fenced" if "fenced" in oc else "aborted"
            out.append(Reply(req.req_id, "fail", None, err))
        else:
            out.append(Reply(req.req_id, "info", None, "partially-applied"))

    def _after_records(self, rec: Records, now: Clock, out: list[Output]) -> None:
        if rec.barrier_id is not None and rec.ends is not None:
            for r in self.reads:
                if r.barrier_id == rec.barrier_id:
                    inst = r.request.instance
                    assert inst is not None
                    r.barrier_id = None
                    r.needed = {p: rec.ends[p] for p in self._partitions(inst)}
        # only within the lease, as at entry (a runtime's `keep` contact renews nothing)
        if self.reads and self._log_reachable(now):
            self._check_reads(out)

    # -- ownership ----------------------------------------------------------------------

    def on_grant(self, grant: Grant, now: Clock) -> list[Output]:
        """We (or, rarely, another replica) now own ``grant.instance``: claim it through the log.

        Grants may be re-sent, so a repeated grant we hold already is a no-op
        and one whose claim is still missing from the log re-sends the same
        claim event (idempotent at the log).
        """
        out: list[Output] = []
        inst = grant.instance
        self._state(inst)
        cur = self.assigned.get(inst)
        if cur is not None and cur[1] > grant.epoch:
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

    def _claimed(self, inst: str, owner: str, epoch: int, now: Clock,
                 out: list[Output]) -> None:
        if owner == self.name:
            if self.assigned.get(inst) == (self.name, epoch):
                self.active_epoch[inst] = epoch
                for req, deadline in self.await_owner.pop(inst, []):
                    self._write(req, deadline, now, out)
            return
        # every replica learns the owner from the log: no broadcast is needed,
        # and the log is what every replica agrees on
        cur = self.assigned.get(inst)
        if cur is None or cur[1] <= epoch:
            self._set_owner(inst, owner, epoch, now, out)

    def _set_owner(self, inst: str, owner: str, epoch: int, now: Clock,
                   out: list[Output]) -> None:
        self.assigned[inst] = (owner, epoch)
        if owner != self.name:
            self.active_epoch.pop(inst, None)
            self.claims.pop(inst, None)
            # writes waiting for an owner go to the new one
            for req, deadline in self.await_owner.pop(inst, []):
                self._write(req, deadline, now, out)

    def _send_claim(self, inst: str, epoch: int, now: Clock, out: list[Output]) -> None:
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

    # -- timers -------------------------------------------------------------------------

    def _housekeep(self, now: Clock, out: list[Output]) -> None:
        """Forget writes long timed out, fail reads past their deadline or lease, drop lost
        claims.

        A waiting read is refused (``unavailable``) once the lease runs out, as a read
        arriving then is: it can be served only from a state the log confirmed within the
        lease, and a replica cut off from the log, or falling further behind it than one
        poll round can fetch, may not get that before the deadline. Held to the deadline
        it failed ``read-timeout``, which the client does not take for a down replica, so
        the session's next reads went to the same stuck replica. A final read is not
        lease-bound (it waits for the log end itself) and keeps its deadline.
        """
        t = now.mono
        if self.writes:
            grace = self.cfg.write_wait_ms * MS
            for eid, w in list(self.writes.items()):
                if t > w.deadline + grace:
                    del self.writes[eid]  # the client has long timed out (info)
        if self.reads:
            lapsed = not self._log_reachable(now)
            keep: list[_Read] = []
            for r in self.reads:
                if t >= r.deadline:
                    out.append(Reply(r.request.req_id, "fail", None, "read-timeout"))
                elif lapsed and r.request.f != "final-read":
                    self.stats["refused"] += 1
                    out.append(Reply(r.request.req_id, "fail", None, UNAVAILABLE))
                else:
                    keep.append(r)
            self.reads = keep
        for inst, entries in list(self.claims.items()):
            st = self.states[inst]
            claim = entries[0][1]
            if claim.event_id in st.seen and self.active_epoch.get(inst) != claim.epoch:
                # our claim lost (fenced by a newer one): stop waiting on it
                self.claims.pop(inst, None)
                for req, _ in self.await_owner.pop(inst, []):
                    out.append(Reply(req.req_id, "fail", None, "not-owner"))
        for inst, waiting in list(self.await_owner.items()):
            keep_w = [x for x in waiting if t < x[1]]
            if len(keep_w) != len(waiting):
                # nothing was appended for these: certainly no effect
                for req, deadline in waiting:
                    if t >= deadline:
                        out.append(Reply(req.req_id, "fail", None, "not-owner"))
                self.await_owner[inst] = keep_w
