"""The replica core, sans-IO: inputs in, outputs out (pure, synchronous).

One core serves instances under each consistency mode. A runtime (the
deterministic simulator, or a `selfhood replica serve` process over Kafka)
feeds it inputs and carries out what it returns; the core never touches a
socket, a clock, a random generator or a model of its own. Every input takes
``now``, a `Clock` of two readings: ``mono`` for leases, waits and timeouts,
``wall`` for the hybrid logical clock.

inputs                                       outputs
  on_request(Request, now)                     Reply      -> the client
  on_records(Records, now)    (log fetch)      Forward    -> another replica (the owner)
  on_append_ack(AppendAck, now)                Append     -> the log (atomic across partitions)
  on_grant(Grant, now)        (ownership)      Poll       -> the log (fetch + heartbeat)
  on_tick(now)                (timer)          ModelCall  -> the model
  on_model_reply(call_id, text, now)

Records carry their own offsets, which may have gaps; a replica resumes
from each chunk's ``next_offset``. Event ids come from the runtime's id
source (`make_replica`'s ``new_id``): seeded UUIDv4s in the simulator, so
the same seed gives the same history, ``uuid.uuid4`` in a process.

Modules: `messages` (the wire), `core` (folding and reading state, common
to every mode), `sequential` (sequential and linearizable), `eventual`. The
key grammar is `selfhood.consistency.keys`; configuration and the mode list
`selfhood.consistency.config`.

Sharded memory: memory events go to another partition; the turn of the same
transaction lists them in ``deps``. With ``atomic_memory`` the log takes
both in one append and a replica's fold of the turn's partition stops at the
turn until its deps are applied (read_committed; partition order is kept, so
every replica folds the same sequence); without it they are separate appends
and a read can show a turn whose memory write is missing, which is reported
in the reply's ``extra["deps_missing"]`` as ``[[turn_value, [missing event
ids]], ...]``. An instance spanning two partitions has no single order, so
its writes are never conditional, and ownership claims are written as a pair
(one per partition) that replicas pass as a barrier: an old owner's memory
write falls on the same side of the claim everywhere and is fenced alike.
"""

from __future__ import annotations

from selfhood.consistency.config import MODES, ConsistencyMode, ReplicaConfig
from selfhood.consistency.ownership import Grant
from selfhood.consistency.replica.core import IdSource, Replica, scalar, sorted_ids
from selfhood.consistency.replica.eventual import EventualReplica
from selfhood.consistency.replica.messages import (
    LEASE_CAUGHT_UP,
    LEASE_KEEP,
    LEASE_NOW,
    UNAVAILABLE,
    Append,
    AppendAck,
    Chunk,
    Clock,
    Forward,
    ModelCall,
    Output,
    Poll,
    Records,
    Reply,
    ReqId,
    Request,
    Token,
)
from selfhood.consistency.replica.sequential import SequentialReplica

__all__ = [
    "LEASE_CAUGHT_UP",
    "LEASE_KEEP",
    "LEASE_NOW",
    "MODES",
    "UNAVAILABLE",
    "Append",
    "AppendAck",
    "Chunk",
    "Clock",
    "ConsistencyMode",
    "EventualReplica",
    "Forward",
    "Grant",
    "IdSource",
    "ModelCall",
    "Output",
    "Poll",
    "Records",
    "Replica",
    "ReplicaConfig",
    "Reply",
    "ReqId",
    "Request",
    "SequentialReplica",
    "Token",
    "make_replica",
    "scalar",
    "sorted_ids",
]


def make_replica(name: str, config: ReplicaConfig, instances: tuple[str, ...], *,
                 new_id: IdSource) -> Replica:
    """A replica of ``config.mode``; ``new_id`` mints event ids (unique across restarts)."""
    if config.mode == "eventual":
        return EventualReplica(name, config, instances, new_id=new_id)
    return SequentialReplica(name, config, instances, new_id=new_id)
