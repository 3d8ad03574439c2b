"""Hypothesis strategies for projection events (pure; used by the property suites).

Values are drawn from tiny alphabets on purpose: few keys, writers, rule ids
and hlc values make collisions (LWW ties, revoke/re-add, stale epochs,
conflicting read versions) common enough for the properties to bite.
"""

from __future__ import annotations

import random

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
    seeded_event_ids,
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


def scenario_events(n: int, instances: int, seed: int = 1) -> list[Event]:
    """Turns, memory, rules, claims, conditional and stale-epoch writes, and duplicates."""
    rng = random.Random(seed)
    new_id = seeded_event_ids(f"scenario/{seed}")
    out: list[Event] = []
    epochs = [0] * instances
    for k in range(n):
        i = rng.randrange(instances)
        iid = f"inst-{i}"
        r = rng.random()
        epoch = epochs[i]
        payload: Payload
        if r < 0.45:
            payload = TurnAppended(rng.choice(["user", "assistant"]), f"turn {k}")
        elif r < 0.7:
            payload = MemoryWritten("tool", f"k{rng.randrange(4)}", value=f"v{k}")
        elif r < 0.8:
            payload = RuleAdded(f"g{rng.randrange(5)}", f"rule {k}")
        elif r < 0.85:
            payload = RuleRevoked(f"g{rng.randrange(5)}", "no")
        elif r < 0.9:
            epochs[i] += 1
            epoch = epochs[i]
            payload = OwnershipClaimed(f"r{epoch % 3}")
        else:
            payload = TurnAppended("user", f"zombie {k}")
            epoch = max(0, epoch - 1)
        out.append(make_event(iid, payload, writer=f"w{rng.randrange(3)}",
                              epoch=epoch, hlc=Hlc(rng.randrange(50), k),
                              read_version=rng.choice([None, None, k // instances]),
                              event_id=new_id()))
        if rng.random() < 0.05:
            out.append(out[rng.randrange(len(out))])  # a retried append
    return out
