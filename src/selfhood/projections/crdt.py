"""The eventual merge: instance state as a bundle of CRDTs (pure).

Each component is a join-semilattice, so merging is commutative, associative
and idempotent and replicas that saw the same events in any order end with
equal fingerprints:

- transcript: a grow-only set of turns ordered by (hlc, writer, event_id);
- case bank: a grow-only set of cases ordered the same way;
- subtask/tool memory: last-writer-wins registers; the greater stamp
  (hlc, writer, event_id) wins, so ties on hlc are still deterministic;
- rules: a remove-wins set. A revoked rule id never comes back, whatever the
  order; the text of a rule (and the reason of a revocation) is itself LWW;
- ownership: the claim with the greatest (epoch, hlc, writer, event_id);
- version: the number of distinct events merged (the union of their ids).

The eventual mode is local-first, so it neither fences nor validates
``read_version``: that is exactly the price the experiments measure. Nothing
is ever "aborted" here; the only outcomes are "applied" and "duplicate".

`merge_eventual` folds one event in O(1) amortized (an in-order arrival is an
append; a late one is a `bisect.insort`, a memmove). `merge_states` joins two
whole replica states.
"""

from __future__ import annotations

import heapq
from bisect import insort
from collections.abc import Iterable
from typing import TypeVar

from selfhood.eventlog.base import LogPosition
from selfhood.events import (
    Event,
    MemoryWritten,
    OwnershipClaimed,
    RuleAdded,
    RuleRevoked,
    SnapshotMarker,
    TurnAppended,
)
from selfhood.projections.state import (
    CaseEntry,
    InstanceState,
    MemoryRecord,
    Outcome,
    OwnerEntry,
    RuleEntry,
    Turn,
    check_applicable,
    note_position,
)

_T = TypeVar("_T", Turn, CaseEntry)


def _insert(seq: list[_T], item: _T) -> None:
    if not seq or seq[-1] < item:
        seq.append(item)
    else:
        insort(seq, item)


def merge_eventual(state: InstanceState, event: Event,
                   position: LogPosition | None = None) -> Outcome:
    """Merge one event into the state as CRDT updates; returns "applied" or "duplicate".

    Raises `PoisonEvent` (state untouched) for an event that can never apply.
    """
    note_position(state, position)
    eid = event.event_id
    if eid in state.seen:
        return "duplicate"
    check_applicable(state, event)
    state.seen.add(eid)
    state.version += 1
    p = event.payload  # `type(p) is` narrows it for mypy: no isinstance call per merge
    if type(p) is TurnAppended:
        _insert(state.transcript, Turn(event.hlc, event.writer, eid, p.role, p.content))
    elif type(p) is MemoryWritten:
        if p.module == "case_bank":
            c = p.case
            assert c is not None
            _insert(state.case_bank, CaseEntry(event.hlc, event.writer, eid, p.key,
                                               c.situation, c.plan, c.reward))
        else:
            rec = MemoryRecord(event.hlc, event.writer, eid, p.value)
            recs = state.memory[p.module]
            old = recs.get(p.key)
            if old is None or old < rec:
                recs[p.key] = rec
    elif type(p) is RuleAdded:
        entry = RuleEntry(event.hlc, event.writer, eid, p.text)
        old_rule = state.rule_adds.get(p.rule_id)
        if old_rule is None or old_rule < entry:
            state.rule_adds[p.rule_id] = entry
    elif type(p) is RuleRevoked:
        entry = RuleEntry(event.hlc, event.writer, eid, p.reason)
        old_rev = state.revoked.get(p.rule_id)
        if old_rev is None or old_rev < entry:
            state.revoked[p.rule_id] = entry
    elif type(p) is OwnershipClaimed:
        claim = OwnerEntry(event.epoch, event.hlc, event.writer, eid, p.owner)
        if state.owner_entry is None or state.owner_entry < claim:
            state.owner_entry = claim
    else:
        assert type(p) is SnapshotMarker
    return "applied"


def fold_eventual(events: Iterable[Event], instance_id: str,
                  state: InstanceState | None = None) -> InstanceState:
    """Merge one instance's events (others skipped) in any order."""
    st = state if state is not None else InstanceState.empty(instance_id)
    for ev in events:
        if ev.instance_id == instance_id:
            merge_eventual(st, ev)
    return st


def _merge_sorted(a: list[_T], b: list[_T]) -> list[_T]:
    out: list[_T] = []
    for item in heapq.merge(a, b):
        if not out or out[-1] != item:
            out.append(item)
    return out


def merge_states(a: InstanceState, b: InstanceState) -> InstanceState:
    """Join two replica states of the same instance (a new state; inputs untouched).

    Only meaningful for states built by the eventual merge; positions take the
    per-partition maximum.
    """
    if a.instance_id != b.instance_id:
        raise ValueError(f"cannot merge {a.instance_id!r} with {b.instance_id!r}")
    out = a.copy()
    out.seen |= b.seen
    out.version = len(out.seen)
    out.transcript = _merge_sorted(a.transcript, b.transcript)
    out.case_bank = _merge_sorted(a.case_bank, b.case_bank)
    for module, recs in b.memory.items():
        mine = out.memory.setdefault(module, {})
        for key, rec in recs.items():
            old = mine.get(key)
            if old is None or (old.event_id != rec.event_id and old < rec):
                mine[key] = rec
    for rid, entry in b.rule_adds.items():
        old_rule = out.rule_adds.get(rid)
        if old_rule is None or (old_rule.event_id != entry.event_id and old_rule < entry):
            out.rule_adds[rid] = entry
    for rid, entry in b.revoked.items():
        old_rev = out.revoked.get(rid)
        if old_rev is None or (old_rev.event_id != entry.event_id and old_rev < entry):
            out.revoked[rid] = entry
    if b.owner_entry is not None and (out.owner_entry is None
                                      or (out.owner_entry.event_id != b.owner_entry.event_id
                                      and out.owner_entry < b.owner_entry)):
        out.owner_entry = b.owner_entry
    for part, off in b.positions.items():
        if out.positions.get(part, 0) < off:
            out.positions[part] = off
    return out
