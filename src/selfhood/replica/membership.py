"""Partition ownership from Kafka's consumer-group assignment (IO, async).

Every replica process is a member of one consumer group subscribed to the
event topic. The group coordinator (a broker) notices a member that stops
heartbeating for ``session_timeout_ms`` (killed, paused, cut off) or leaves,
and the group rebalances: the leader member runs `placement.assign` and
every member learns its partitions through `on_assigned`. The node turns
an assignment into `Grant`s for the core, which claims the epoch through
the log, so ownership is decided by Kafka and enforced by the reducers.

The member never consumes records through the group (the node reads the
log with its own position-keeping reader): its partitions are paused as
soon as they are assigned, and `getmany` is called only to keep the member
alive and surface the coordinator's errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol

import aiokafka
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    InconsistentGroupProtocolError,
    InvalidSessionTimeoutError,
    KafkaError,
)

from selfhood.errors import ReplicaError
from selfhood.replica.placement import Member, assign

log = logging.getLogger("selfhood.replica")

AssignedCallback = Callable[[list[int]], Awaitable[None]]


class RevokedCallback(Protocol):
    """Partitions taken away: for a rebalance, or for good (``final``: the member left)."""

    def __call__(self, partitions: list[int], *, final: bool = False) -> Awaitable[None]: ...


def _assignor_for(node: str, owned: Callable[[], tuple[tuple[int, ...], int]]
                  ) -> type[AbstractPartitionAssignor]:
    """An aiokafka assignor class bound to this node (aiokafka calls classmethods)."""

    class OwnerAssignor(AbstractPartitionAssignor):  # type: ignore[misc]
        name = "selfhood-owner"
        version = 0

        @classmethod
        def assign(cls, cluster: Any, members: Mapping[str, ConsumerProtocolMemberMetadata]
                   ) -> dict[str, ConsumerProtocolMemberAssignment]:
            topics = sorted({t for md in members.values() for t in md.subscription})
            out: dict[str, list[tuple[str, list[int]]]] = {m: [] for m in members}
            for topic in topics:
                parts = sorted(cluster.partitions_for_topic(topic) or ())
                view = {m: Member.decode(md.user_data, m) for m, md in members.items()
                        if topic in md.subscription}
                for m, ps in assign(view, parts).items():
                    out[m].append((topic, ps))
            return {m: ConsumerProtocolMemberAssignment(cls.version, a, b"")
                    for m, a in out.items()}

        @classmethod
        def metadata(cls, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
            parts, generation = owned()
            user = Member(node, parts, generation).encode()
            return ConsumerProtocolMemberMetadata(cls.version, sorted(topics), user)

        @classmethod
        def on_assignment(cls, assignment: ConsumerProtocolMemberAssignment) -> None:
            return None

    return OwnerAssignor


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, membership: GroupMembership) -> None:
        self.m = membership

    async def on_partitions_revoked(self, revoked: Any) -> None:
        parts = sorted(tp.partition for tp in revoked if tp.topic == self.m.topic)
        self.m.previous = parts  # told to the leader on rejoin, so the assignment sticks
        self.m.assigned = []
        if parts:
            await self.m.on_revoked(parts)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        mine = [tp for tp in assigned if tp.topic == self.m.topic]
        consumer = self.m.consumer
        if consumer is not None and mine:
            consumer.pause(*mine)
        self.m.assigned = sorted(tp.partition for tp in mine)
        self.m.generation = self.m.current_generation()
        self.m.rebalances += 1
        await self.m.on_assigned(list(self.m.assigned))


class GroupMembership:
    """One member of the replicas' consumer group; `rejoin` leaves and joins again."""

    def __init__(self, *, bootstrap: str, topic: str, group: str, node: str,
                 session_timeout_ms: int, on_assigned: AssignedCallback,
                 on_revoked: RevokedCallback) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.group = group
        self.node = node
        self.session_timeout_ms = session_timeout_ms
        self.on_assigned = on_assigned
        self.on_revoked = on_revoked
        self.consumer: Any = None
        self.assigned: list[int] = []
        self.previous: list[int] = []
        self.generation: int | None = None
        self.rebalances = 0
        self.error: str | None = None
        #: set when the group refuses this member for good (the process must stop)
        self.fatal: str | None = None
        self.failed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._assignor = _assignor_for(node, self._owned_view)

    def _owned_view(self) -> tuple[tuple[int, ...], int]:
        """What this member owns (or owned until the rebalance began), and since when."""
        parts = self.assigned or self.previous
        return tuple(sorted(parts)), self.generation if self.generation is not None else -1

    def current_generation(self) -> int | None:
        """The group generation this member is in (aiokafka keeps it on its coordinator)."""
        coord = getattr(self.consumer, "_coordinator", None)
        gen = getattr(coord, "generation", None)
        return gen if isinstance(gen, int) and gen >= 0 else None

    async def start(self) -> None:
        if self._task is not None:
            return
        session = self.session_timeout_ms
        consumer = aiokafka.AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=self.group,
            client_id=f"selfhood-replica-{self.node}-{uuid.uuid4().hex[:6]}",
            enable_auto_commit=False, session_timeout_ms=session,
            # survivors learn of a rebalance at their next heartbeat: keep it short
            heartbeat_interval_ms=max(50, session // 8),
            rebalance_timeout_ms=max(session, 5000), max_poll_interval_ms=3_600_000,
            partition_assignment_strategy=(self._assignor,), retry_backoff_ms=50,
            metadata_max_age_ms=30_000)
        try:
            await consumer.start()
        except KafkaError as exc:
            with contextlib.suppress(Exception):
                await consumer.stop()
            raise ReplicaError(f"cannot join consumer group {self.group} on "
                               f"{self.bootstrap}: {exc!r}") from None
        consumer.subscribe([self.topic], listener=_Listener(self))
        self.consumer = consumer
        self._task = asyncio.create_task(self._keep_alive(consumer), name="group-member")

    async def _keep_alive(self, consumer: Any) -> None:
        """Call into the consumer so coordination errors surface; data stays paused."""
        while True:
            try:
                await consumer.getmany(timeout_ms=200)
                self.error = None
            except asyncio.CancelledError:
                raise
            except InvalidSessionTimeoutError:
                self._fail(f"the brokers refuse session timeout {self.session_timeout_ms} ms "
                           f"for group {self.group} (their group.min/max.session.timeout.ms)")
                return
            except (GroupAuthorizationFailedError, InconsistentGroupProtocolError) as exc:
                self._fail(f"the brokers refuse this member of group {self.group}: {exc!r}")
                return
            except KafkaError as exc:
                self.error = repr(exc)
                log.warning("group %s: %r", self.group, exc)
                await asyncio.sleep(0.2)

    def _fail(self, message: str) -> None:
        self.error = self.fatal = message
        self.failed.set()

    async def stop(self) -> None:
        """Leave the group (the coordinator rebalances at once); safe twice."""
        task, consumer = self._task, self.consumer
        self._task = None
        self.consumer = None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if consumer is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(10):
                    await consumer.stop()
        parts, self.assigned, self.previous = self.assigned, [], []
        self.generation = None  # rejoining is as a new member
        await self.on_revoked(parts, final=True)

    async def rejoin(self) -> None:
        """Rebalance as a real fault: leave the group, then join it as a new member."""
        await self.stop()
        await self.start()
