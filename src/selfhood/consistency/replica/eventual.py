"""Eventual mode: local-first (pure).

Writes are merged locally with the CRDTs, acknowledged at once and shipped
through an outbox (on a tick, at most every ``outbox_ms``: local-first
systems batch); remote events arrive by polling the log and are merged. The
outbox is durable (a local disk, written before the acknowledgement): a
crashed replica keeps its unshipped writes, and on restart `recover` merges
them back into the state it rebuilds from the log and ships them again.
Until then no other replica has them (read-your-writes failures after
failover, which the experiment measures), but no acknowledged write is lost.
Ownership plays no part: every replica writes every instance.
"""

from __future__ import annotations

from selfhood.consistency.config import ReplicaConfig
from selfhood.consistency.replica.core import MS, IdSource, Replica
from selfhood.consistency.replica.messages import Append, AppendAck, Clock, Output, Reply, Request
from selfhood.events import Event
from selfhood.projections.crdt import merge_eventual
from selfhood.projections.state import Outcome


class EventualReplica(Replica):
    """A replica of the eventual mode."""

    eventual = True

    def __init__(self, name: str, config: ReplicaConfig, instances: tuple[str, ...], *,
                 new_id: IdSource) -> None:
        super().__init__(name, config, instances, new_id=new_id)
        self._reduce = merge_eventual
        self.outbox: list[tuple[int, Event]] = []
        self.outbox_batches: dict[int, set[str]] = {}
        self.last_ship = -(1 << 62)

    def owns(self, instance: str) -> bool:
        return True

    def _apply(self, ev: Event, partition: int, offset: int, now: Clock,
               out: list[Output]) -> Outcome:
        """`Replica._apply`, after the clock takes in a remote event's stamp; with a fast
        path for an event merged already (every local write comes back from the log):
        only the count grows, exactly what the full path does for a duplicate."""
        if ev.writer != self.name:
            self.hlc = self.hlc.receive(ev.hlc, now.wall // MS)
        st = self.states.get(ev.instance_id)
        if st is not None and ev.event_id in st.seen:
            self.stats["duplicate"] += 1
            return "duplicate"
        return super()._apply(ev, partition, offset, now, out)

    def _serve(self, req: Request, inst: str, writes: bool, now: Clock,
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

    def on_append_ack(self, ack: AppendAck, now: Clock) -> list[Output]:
        """The log took a shipment: drop it from the outbox, apply the catch-up records."""
        acked = self.outbox_batches.pop(ack.batch_id, None)
        if acked:
            self.outbox = [x for x in self.outbox if x[1].event_id not in acked]
        return self.on_records(ack.records, now)

    def _housekeep(self, now: Clock, out: list[Output]) -> None:
        """Ship the outbox (at most every ``outbox_ms``)."""
        if not self.outbox or now.mono - self.last_ship < self.cfg.outbox_ms * MS:
            return
        self.last_ship = now.mono
        batch = self.outbox[:self.cfg.poll_limit]
        if self.cfg.atomic_memory or self.cfg.shards == 1:
            groups = [batch]
        else:  # one append per partition, each delivered (or lost) on its own
            groups = [[x for x in batch if x[0] == p] for p in sorted({p for p, _ in batch})]
        for g in groups:
            self._n_batches += 1
            self.outbox_batches[self._n_batches] = {e.event_id for _, e in g}
            out.append(Append(self._n_batches, g, {}))

    def durable_outbox(self) -> list[tuple[int, Event]]:
        """What the local disk holds: every acknowledged write the log has not confirmed.

        Eventual writes are acknowledged before the log has them, so the
        outbox is the only copy of those writes; a runtime keeps it across a
        crash (it is written before the reply goes out) and hands it to the
        next incarnation's `recover`.
        """
        return list(self.outbox)

    def recover(self, entries: list[tuple[int, Event]], now: Clock) -> None:
        """Restart from the local disk: merge the durable writes, ship them again.

        The rest of the state comes from the log (a fresh replica polls from
        offset 0); CRDT merges commute and duplicates are idempotent, so
        merging the durable writes first gives the same state as any other
        order. The HLC moves past them, so this incarnation's writes order
        after its predecessor's.
        """
        if not entries:
            return
        out: list[Output] = []
        for part, ev in entries:
            self.hlc = self.hlc.receive(ev.hlc, now.wall // MS)
            self._apply(ev, part, -1, now, out)
        self.outbox.extend(entries)
