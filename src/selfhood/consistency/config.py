"""The consistency modes and a replica's configuration: their one home (pure).

`selfhood.spec` validates experiments against `MODES` and takes its replica
defaults from `ReplicaConfig`; the replica core, the simulator (`SimConfig`
holds one) and replica processes all read a `ReplicaConfig` made from the
spec by `ExperimentSpec.replica_config`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, get_args

ConsistencyMode = Literal["sequential", "linearizable", "eventual"]
#: the experiment's independent variable (docs/consistency.md)
MODES: Final[tuple[str, ...]] = get_args(ConsistencyMode)


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
    shards: int = 2
    sharded_memory: bool = False
    atomic_memory: bool = True
    fencing: bool = True
    lease_ms: int = 150
    write_wait_ms: int = 1000
    poll_limit: int = 2000
    outbox_ms: int = 50


#: the defaults, for `selfhood.spec` (one statement of each)
DEFAULT_REPLICA: Final = ReplicaConfig()
