"""The sequential reducer: fold events in log order, validating as it goes (pure).

Every replica runs this same function over the same log, so every replica
reaches the same verdict for every event, with no coordination:

1. **duplicate**: the event id was seen before (applied *or* rejected) ->
   no-op. Redelivery and retried appends are therefore idempotent.
2. **fenced** (only with ``fencing=True``, the default): ownership is claimed
   through the log. An ``ownership_claimed`` event at epoch e is applied iff
   e > current epoch, or e == current epoch and it comes from the current
   owner (or nobody owns the instance yet). A competing claim at the same
   epoch by another owner, or any claim below it, is fenced. Every other
   event whose ``epoch`` is *below* the current epoch is fenced: a paused
   zombie that wakes up with an old epoch cannot write. With
   ``fencing=False`` nothing is fenced and the last claim in log order wins
   (the comparison baseline).
3. **aborted**: a conditional event (``read_version`` set) conflicts iff
   its conflict key was written by an event applied at a version greater
   than ``read_version``. Conflict keys: ``transcript`` for turns,
   ``case_bank`` for case-bank appends, ``<module>/<key>`` for subtask/tool
   records, ``rule/<rule_id>`` for rule adds and revokes, ``ownership`` for
   claims; snapshot markers write nothing. With ``validation="instance"``
   any applied event counts (whole-instance optimistic concurrency).
4. otherwise **applied**: the effect happens and ``version`` grows by one.

Rejected events are remembered in ``state.rejected`` (and in ``seen``) so a
redelivered rejected event stays rejected. A rule that was ever revoked is
never re-added (remove-wins, in both modes).

Apply is O(1) amortized and mutates the state in place.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from selfhood.errors import PoisonEvent
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
from selfhood.projections.crdt import merge_eventual
from selfhood.projections.state import (
    CaseEntry,
    InstanceState,
    MemoryRecord,
    Mode,
    Outcome,
    OwnerEntry,
    RuleEntry,
    Turn,
    check_applicable,
)

Validation = Literal["key", "instance"]


def apply_effect(state: InstanceState, event: Event) -> None:
    """Apply the event's content in arrival order (sequential semantics; no checks)."""
    p = event.payload
    t = type(p)
    if t is TurnAppended:
        assert isinstance(p, TurnAppended)
        state.transcript.append(Turn(event.hlc, event.writer, event.event_id, p.role, p.content))
    elif t is MemoryWritten:
        assert isinstance(p, MemoryWritten)
        if p.module == "case_bank":
            c = p.case
            assert c is not None
            state.case_bank.append(CaseEntry(event.hlc, event.writer, event.event_id, p.key,
                                              c.situation, c.plan, c.reward))
        else:
            state.memory[p.module][p.key] = MemoryRecord(event.hlc, event.writer,
                                                         event.event_id, p.value)
    elif t is RuleAdded:
        assert isinstance(p, RuleAdded)
        if p.rule_id not in state.revoked:
            state.rule_adds[p.rule_id] = RuleEntry(event.hlc, event.writer, event.event_id,
                                                   p.text)
    elif t is RuleRevoked:
        assert isinstance(p, RuleRevoked)
        state.rule_adds.pop(p.rule_id, None)
        state.revoked[p.rule_id] = RuleEntry(event.hlc, event.writer, event.event_id, p.reason)
    elif t is OwnershipClaimed:
        assert isinstance(p, OwnershipClaimed)
        state.owner_entry = OwnerEntry(event.epoch, event.hlc, event.writer, event.event_id,
                                       p.owner)
    else:
        assert t is SnapshotMarker


def apply_sequential(state: InstanceState, event: Event, position: LogPosition | None = None,
                     *, fencing: bool = True, validation: Validation = "key") -> Outcome:
    """Fold one event in log order; returns what happened to it (see module docstring).

    Raises `PoisonEvent` (state untouched) for an event that can never apply.
    This is the replay hot path, so the conflict key (module docstring) and
    the effect share one type dispatch; rules and ownership go to `apply_effect`.
    """
    if position is not None:
        nxt = position.offset + 1
        if state.positions.get(position.partition, 0) < nxt:
            state.positions[position.partition] = nxt
    eid = event.event_id
    seen = state.seen
    if eid in seen:
        return "duplicate"
    if event.instance_id != state.instance_id:
        check_applicable(state, event)
    p = event.payload
    key: str | None
    if type(p) is TurnAppended:
        key = "transcript"
    elif type(p) is MemoryWritten:
        if p.module == "case_bank":
            if p.case is None:
                check_applicable(state, event)
            key = "case_bank"
        else:
            key = p.module + "/" + p.key
    elif type(p) is RuleAdded or type(p) is RuleRevoked:
        key = "rule/" + p.rule_id
    elif type(p) is OwnershipClaimed:
        key = "ownership"
    else:
        key = None
    outcome: Outcome
    if fencing:
        oe = state.owner_entry
        if oe is not None:
            if type(p) is OwnershipClaimed:
                fenced = event.epoch < oe.epoch or (event.epoch == oe.epoch
                                                    and oe.owner != p.owner)
            else:
                fenced = event.epoch < oe.epoch
        else:
            fenced = event.epoch < 0
        if fenced:
            seen.add(eid)
            state.rejected[eid] = outcome = "fenced"
            return outcome
    rv = event.read_version
    if rv is not None:
        if validation == "instance":
            conflict = state.version > rv
        else:
            conflict = key is not None and state.last_write.get(key, 0) > rv
        if conflict:
            seen.add(eid)
            state.rejected[eid] = outcome = "aborted"
            return outcome
    seen.add(eid)
    if type(p) is TurnAppended:
        state.transcript.append(Turn(event.hlc, event.writer, eid, p.role, p.content))
    elif type(p) is MemoryWritten:
        c = p.case
        if c is not None and p.module == "case_bank":
            state.case_bank.append(CaseEntry(event.hlc, event.writer, eid, p.key,
                                              c.situation, c.plan, c.reward))
        else:
            state.memory[p.module][p.key] = MemoryRecord(event.hlc, event.writer, eid, p.value)
    else:
        apply_effect(state, event)
    version = state.version = state.version + 1
    if key is not None:
        state.last_write[key] = version
    return "applied"


def fold_sequential(events: Iterable[Event], instance_id: str, *, fencing: bool = True,
                    validation: Validation = "key",
                    state: InstanceState | None = None) -> InstanceState:
    """Reference fold of one instance's events (others are skipped) in the given order."""
    st = state if state is not None else InstanceState.empty(instance_id)
    for ev in events:
        if ev.instance_id == instance_id:
            apply_sequential(st, ev, fencing=fencing, validation=validation)
    return st


def apply(state: InstanceState, event: Event, position: LogPosition | None = None, *,
          mode: Mode = "sequential", fencing: bool = True) -> Outcome:
    """Apply by consistency mode: the sequential reducer or the eventual CRDT merge."""
    if mode == "sequential":
        return apply_sequential(state, event, position, fencing=fencing)
    return merge_eventual(state, event, position)


def fold_all(events: Iterable[Event], *, mode: Mode = "sequential",
             fencing: bool = True) -> dict[str, InstanceState]:
    """Fold a mixed stream into one state per instance (the reference for tests/CLI)."""
    states: dict[str, InstanceState] = {}
    for ev in events:
        st = states.get(ev.instance_id)
        if st is None:
            st = states[ev.instance_id] = InstanceState.empty(ev.instance_id)
        try:
            apply(st, ev, mode=mode, fencing=fencing)
        except PoisonEvent:
            continue
    return states
