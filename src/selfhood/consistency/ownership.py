"""Shards, ownership and epochs (pure).

An instance's transcript lives on its *home* partition (Kafka's murmur2
partitioner, so the simulator and the real log agree). With sharded memory
its memory modules (case bank, subtask and tool records) live on another
partition, which is what makes identity span shards.

Each partition has one owner replica, the only writer of its instances in
sequential mode. The `Coordinator` (the lease service the router consults,
Kafka's group coordinator in a real run) hands out owners and strictly
increasing epochs; the new owner then *claims* the epoch through the log
itself, so every reducer learns it at the same log position and fences
whatever an older owner (a paused zombie) writes afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from selfhood.errors import ConsistencyError
from selfhood.eventlog.partitioning import partition_for


def home_partition(instance: str, shards: int) -> int:
    """Partition of the instance's transcript and governance events."""
    return partition_for(instance, shards)


def memory_partition(instance: str, shards: int, sharded_memory: bool) -> int:
    """Partition of the instance's memory modules: another one when memory is sharded."""
    home = partition_for(instance, shards)
    if not sharded_memory or shards < 2:
        return home
    p = partition_for(instance + "/memory", shards)
    return (home + 1) % shards if p == home else p


@dataclass(frozen=True, slots=True)
class Grant:
    """The coordinator's decision: `owner` must claim `instance` at `epoch`."""

    instance: str
    partition: int
    owner: str
    epoch: int


class Coordinator:
    """Assigns partitions to replicas and allocates epochs (monotonic per partition).

    Epochs come from here rather than from each claimant's local view, so two
    claims never share an epoch even when the claimant lags behind the log.
    """

    def __init__(self, replicas: Sequence[str], instances: Sequence[str], shards: int) -> None:
        if not replicas:
            raise ConsistencyError("at least one replica is needed")
        self.replicas = tuple(replicas)
        self.shards = shards
        self.instances = tuple(instances)
        self.home = {i: home_partition(i, shards) for i in self.instances}
        self.part_owner: dict[int, str] = {}
        self.part_epoch: dict[int, int] = {}

    def initial_grants(self) -> list[Grant]:
        """Partition p starts at replica p mod R, epoch 1."""
        out: list[Grant] = []
        for p in range(self.shards):
            self.part_owner[p] = self.replicas[p % len(self.replicas)]
            self.part_epoch[p] = 1
        for i in self.instances:
            p = self.home[i]
            out.append(Grant(i, p, self.part_owner[p], 1))
        return out

    def owner_of(self, instance: str) -> str:
        return self.part_owner[self.home[instance]]

    def epoch_of(self, instance: str) -> int:
        return self.part_epoch[self.home[instance]]

    def _move(self, p: int, new_owner: str) -> list[Grant]:
        self.part_owner[p] = new_owner
        self.part_epoch[p] += 1
        e = self.part_epoch[p]
        return [Grant(i, p, new_owner, e) for i in self.instances if self.home[i] == p]

    def fail_over(self, down: str, live: Sequence[str]) -> list[Grant]:
        """Move every partition owned by `down` to a live replica (round-robin over live)."""
        if not live:
            return []
        out: list[Grant] = []
        k = 0
        for p in range(self.shards):
            if self.part_owner.get(p) == down:
                out.extend(self._move(p, live[(p + k) % len(live)]))
                k += 1
        return out

    def rebalance(self, live: Sequence[str]) -> list[Grant]:
        """Rotate every partition to the next live replica (a Kafka-style rebalance)."""
        if not live:
            return []
        out: list[Grant] = []
        for p in range(self.shards):
            cur = self.part_owner.get(p)
            idx = live.index(cur) + 1 if cur in live else p
            out.extend(self._move(p, live[idx % len(live)]))
        return out
