"""The consistency modes and a replica's configuration: their one home (pure, no imports).

`selfhood.spec` validates experiments against `MODES`; the replica core, the
simulator and replica processes all read a `ReplicaConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

ConsistencyMode = Literal["sequential", "linearizable", "eventual"]
#: the experiment's independent variable (docs/consistency.md)
MODES: Final[tuple[str, ...]] = ("sequential", "linearizable", "eventual")


@dataclass(frozen=True, slots=True)
class ReplicaConfig:
    """What a replica needs to know about the deployment.

    ``lease_ms``: a replica that has not heard from the log for this long
    refuses reads (sequential modes). ``write_wait_ms``: how long past its
    request's timeout a write in flight is still tracked (its outcome can
    still come from the log).
    ``poll_limit``: most records per partition in one fetch and events per
    outbox shipment. ``outbox_ms``: eventual mode ships its outbox at most
    this often.
    """

    mode: str = "sequential"
    shards: int = 1
    sharded_memory: bool = False
    atomic_memory: bool = True
    fencing: bool = True
    lease_ms: int = 150
    write_wait_ms: int = 1000
    poll_limit: int = 2000
    outbox_ms: int = 0
