"""The model port: what produces an instance's assistant behaviour (pure).

The thesis under test says an instance *is* its rebuildable context. The
default model makes that checkable: its reply is a function of the
instance's context alone (transcript, memory, active rules), so two replicas
holding equal context must answer identically, and a replica that answers
differently is holding a different instance. A real model endpoint can be
plugged in behind the same protocol by an IO runtime.
"""

from __future__ import annotations

import hashlib
from typing import Protocol, runtime_checkable

from selfhood.projections.state import InstanceState


@runtime_checkable
class ModelPort(Protocol):
    """Produces the assistant's reply for an instance's current context."""

    def reply(self, state: InstanceState, digest: str) -> str:
        """The reply this instance gives now; must not depend on anything but the context.

        ``digest`` is the state's fingerprint, handed over because the caller
        has it already; a model may use it as a cache key for its context.
        """
        ...


class DeterministicModel:
    """The default model: the reply is a digest of the canonical context.

    Deriving it from the fingerprint (a sha256 of the canonical encoding)
    makes "same context => same behaviour" hold by construction, and any
    change of meaning changes the reply, which is what identity probes compare.
    """

    def __init__(self, name: str = "det-1") -> None:
        self.name = name

    def reply(self, state: InstanceState, digest: str) -> str:
        h = hashlib.sha256(f"{self.name}\0{state.instance_id}\0{digest}".encode()).hexdigest()
        return f"{self.name}:{h[:16]}"
