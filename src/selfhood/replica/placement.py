"""Which replica owns which partition: the consumer group leader's decision (pure).

Kafka's group coordinator elects a leader member that computes the
assignment for everyone; `assign` is what it computes. It is sticky (a
partition stays with a live member that had it, so a rebalance moves only
what must move: each move is a failover with a new epoch) and balanced
(counts differ by at most one). When two members say they own the same
partition, the one that got it in the later generation keeps it: the other
is a zombie that was paused past its session and rejoins with a stale view.
With nobody owning anything yet, partition
p goes to the p-th member in name order, as the simulator's coordinator
starts (p mod R).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Member:
    """What a member tells the leader when it joins: its node name, what it owns now
    and the group generation that assigned it."""

    node: str
    owned: tuple[int, ...] = ()
    generation: int = -1

    def encode(self) -> bytes:
        return json.dumps({"node": self.node, "owned": list(self.owned),
                           "generation": self.generation}).encode()

    @classmethod
    def decode(cls, raw: bytes | None, member_id: str) -> Member:
        """Tolerant: a member that sent no (or foreign) user data owns nothing."""
        try:
            data = json.loads(raw or b"{}")
            return cls(str(data.get("node", member_id)),
                       tuple(int(p) for p in data.get("owned", ())),
                       int(data.get("generation", -1)))
        except (ValueError, TypeError, AttributeError):
            return cls(member_id)


def assign(members: Mapping[str, Member], partitions: Sequence[int]) -> dict[str, list[int]]:
    """member id -> sorted partitions: sticky, balanced, deterministic."""
    if not members:
        return {}
    order = sorted(members, key=lambda m: (members[m].node, m))
    parts = sorted(set(partitions))
    cap = -(-len(parts) // len(order))  # ceil
    out: dict[str, list[int]] = {m: [] for m in order}
    taken: set[int] = set()
    valid = set(parts)
    # the freshest view first: a rejoining zombie's stale claim loses
    for m in sorted(order, key=lambda m: (-members[m].generation, order.index(m))):
        for p in sorted(members[m].owned):
            if p in valid and p not in taken and len(out[m]) < cap:
                out[m].append(p)
                taken.add(p)
    def load(m: str) -> tuple[int, int, int]:
        # ties go to members that were in the group before over ones (re)joining,
        # so a member that leaves and rejoins does not get its partitions straight back
        return len(out[m]), -members[m].generation, order.index(m)

    for p in parts:
        if p not in taken:
            least = min(order, key=load)
            out[least].append(p)
            taken.add(p)
    while True:
        most = max(order, key=lambda m: (len(out[m]), -order.index(m)))
        least = min(order, key=load)
        if len(out[most]) - len(out[least]) <= 1:
            break
        out[most].sort()
        out[least].append(out[most].pop())
    return {m: sorted(ps) for m, ps in out.items()}
