"""Hypothesis strategies for projection events (pure; used by the property suites).

Values are drawn from tiny alphabets on purpose: few keys, writers, rule ids
and hlc values make collisions (LWW ties, revoke/re-add, stale epochs,
conflicting read versions) common enough for the properties to bite.
"""

from __future__ import annotations

from hypothesis import strategies as st

from selfhood.events import (
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
    make_event,
)

WRITERS = ("r1", "r2", "r3")
KEYS = ("a", "b", "c")
RULES = ("g1", "g2", "g3")

_text = st.sampled_from(("", "x", "y", "hello", "ünï"))

payloads: st.SearchStrategy[Payload] = st.one_of(
    st.builds(TurnAppended, role=st.sampled_from(("user", "assistant")), content=_text),
    st.builds(MemoryWritten, module=st.sampled_from(("subtask", "tool")),
              key=st.sampled_from(KEYS), value=st.none() | _text),
    st.builds(MemoryWritten, module=st.just("case_bank"), key=st.sampled_from(KEYS),
              case=st.builds(Case, situation=_text, plan=_text,
                             reward=st.sampled_from((0.0, 0.5, 1.0)))),
    st.builds(RuleAdded, rule_id=st.sampled_from(RULES), text=_text),
    st.builds(RuleRevoked, rule_id=st.sampled_from(RULES), reason=_text),
    st.builds(OwnershipClaimed, owner=st.sampled_from(WRITERS)),
    st.builds(SnapshotMarker, version=st.integers(0, 5), fingerprint=st.just("")),
)


@st.composite
def events(draw: st.DrawFn, instance_ids: tuple[str, ...] = ("i1",),
           conditional: bool = True) -> Event:
    """One event with a fresh uuid (ids never collide unless a test duplicates them)."""
    return make_event(
        draw(st.sampled_from(instance_ids)),
        draw(payloads),
        writer=draw(st.sampled_from(WRITERS)),
        epoch=draw(st.integers(0, 3)),
        hlc=Hlc(draw(st.integers(0, 4)), draw(st.integers(0, 2))),
        read_version=draw(st.none() | st.integers(0, 6)) if conditional else None,
        event_id=draw(st.uuids(version=4)).hex,
    )


def event_lists(instance_ids: tuple[str, ...] = ("i1",), *, min_size: int = 0,
                max_size: int = 40) -> st.SearchStrategy[list[Event]]:
    """Lists of events with unique ids."""
    return st.lists(events(instance_ids), min_size=min_size, max_size=max_size,
                    unique_by=lambda e: e.event_id)
