"""The router (load balancer) in front of the replicas (pure, deterministic).

Three policies:

- ``sticky``: a client process keeps its replica (session affinity) until
  that replica stops answering; then it moves to the next live one and stays
  there. Moving a session is exactly when eventual mode forgets acked turns.
- ``round-robin``: each request goes to the next live replica.
- ``least-loaded``: the live replica with the fewest outstanding requests
  (ties: the first in replica order).

Failover: a replica that times out or refuses as unavailable is marked down
for ``down_ms`` of virtual time, then tried again (half-open). When every
replica is down the policy picks among all of them, so requests still go
somewhere and time out honestly rather than vanish.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Final, Literal, get_args

from selfhood.errors import ConsistencyError

RouterPolicy = Literal["sticky", "round-robin", "least-loaded"]
#: the router policies (their one home; `selfhood.spec` validates against it)
POLICIES: Final[tuple[str, ...]] = get_args(RouterPolicy)
_MS: Final = 1_000_000


class Router:
    """Chooses a replica for each request and fails over around dead ones."""

    def __init__(self, replicas: Sequence[str], policy: str = "round-robin", *,
                 down_ms: int = 1000) -> None:
        if policy not in POLICIES:
            raise ConsistencyError(f"unknown router policy {policy!r}; expected one of {POLICIES}")
        if not replicas:
            raise ConsistencyError("the router needs at least one replica")
        self.replicas = tuple(replicas)
        self.policy = policy
        self.down_ns = down_ms * _MS
        self.down_until: dict[str, int] = dict.fromkeys(self.replicas, -1)
        self.outstanding: dict[str, int] = dict.fromkeys(self.replicas, 0)
        self.sticky: dict[Hashable, str] = {}
        self._rr = 0
        self.failovers = 0
        # every replica is up from this time on (the common case: no list to build)
        self._all_up_at = -1

    def is_up(self, replica: str, now: int) -> bool:
        return now >= self.down_until[replica]

    def live(self, now: int) -> list[str]:
        """Replicas currently considered up, in replica order."""
        return [r for r in self.replicas if now >= self.down_until[r]]

    def _home(self, process: Hashable) -> str:
        if isinstance(process, int):
            return self.replicas[process % len(self.replicas)]
        return self.replicas[sum(str(process).encode()) % len(self.replicas)]

    def pick(self, process: Hashable, now: int) -> str:
        """The replica this process's next request goes to."""
        live: Sequence[str]
        if now >= self._all_up_at:
            live = self.replicas
        else:
            live = self.live(now) or self.replicas
        if self.policy == "sticky":
            cur = self.sticky.get(process)
            if cur is None:
                cur = self._home(process)
            if cur not in live:
                i = self.replicas.index(cur)
                n = len(self.replicas)
                cur = next(self.replicas[(i + k) % n] for k in range(1, n + 1)
                           if self.replicas[(i + k) % n] in live)
            self.sticky[process] = cur
            return cur
        if self.policy == "round-robin":
            r = live[self._rr % len(live)]
            self._rr += 1
            return r
        out = self.outstanding
        return min(live, key=lambda r: out[r])

    def started(self, replica: str) -> None:
        self.outstanding[replica] += 1

    def finished(self, replica: str) -> None:
        self.outstanding[replica] -= 1

    def mark_down(self, replica: str, now: int) -> bool:
        """A replica stopped answering; True if it was considered up until now."""
        was_up = now >= self.down_until[replica]
        self.down_until[replica] = now + self.down_ns
        self._all_up_at = max(self._all_up_at, now + self.down_ns)
        if was_up:
            self.failovers += 1
        return was_up

    def mark_up(self, replica: str) -> None:
        """A replica answered: it is up again."""
        if self.down_until[replica] != -1:
            self.down_until[replica] = -1
            self._all_up_at = max(self.down_until.values())
