"""Nemesis schedules: which faults hit which nodes, when (pure).

A schedule is a concrete, sorted tuple of `NemesisOp`s (virtual ms since the
start of the run), drawn once from the spec's fault list and seed. Making
it explicit data is what lets `hunt` shrink a failing run and write it
back into a spec that replays it exactly. Partition patterns are resolved
to explicit groups here: two nodes can talk iff they share a group. Nodes
are the replicas plus the log service, named "log".

Faults come as windows (fault, then its heal `fault_duration_ms` later),
spaced by `nemesis_interval_ms`; `final_heal` lists what the heal phase
must undo for faults still active when the load phase ends.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, Final

from selfhood.errors import ChaosError
from selfhood.spec import LOG_NODE, PARTITION_PATTERNS, ExperimentSpec, NemesisOp, canonical

#: salt so the schedule's random stream is independent of the workload's
_SALT: Final = 0x6E656D65


def nodes_of(spec: ExperimentSpec) -> tuple[str, ...]:
    return (*spec.replica_names, LOG_NODE)


def partition_groups(pattern: str, nodes: Sequence[str], rng: random.Random, *,
                     node: str | None = None) -> list[list[str]]:
    """Explicit groups for a named partition pattern (Jepsen's nemesis/partition-*).

    The one implementation of the patterns: schedules resolve them here, and so
    does every world for a partition op that names only a pattern. ``node``
    picks the lone node of ``isolate`` (default: a random one).
    """
    ns = list(nodes)
    rng.shuffle(ns)
    n = len(ns)
    if pattern == "halves":
        half = n // 2
        return [sorted(ns[:half]), sorted(ns[half:])]
    if pattern == "isolate":
        lone = ns[0] if node is None else node
        if lone not in ns:
            raise ValueError(f"unknown node {lone!r}")
        return [[lone], sorted(x for x in ns if x != lone)]
    if pattern == "majority-ring":
        # ring links up to distance d: each node sees about a majority, no two the same
        d = max(1, (n // 2 + 1) // 2)
        links = {tuple(sorted((ns[i], ns[(i + j) % n]))) for i in range(n) for j in range(1, d + 1)}
        return [list(pair) for pair in sorted(links)]
    if pattern == "bridge":
        # two halves that cannot talk, except through one bridge node in both
        bridge = ns[0]
        rest = ns[1:]
        half = len(rest) // 2
        return [sorted([bridge, *rest[:half]]), sorted([bridge, *rest[half:]])]
    raise ValueError(f"unknown partition pattern {pattern!r}")


def resolve_partition(value: Any, nodes: Sequence[str],
                      rng: random.Random) -> list[list[str]]:
    """The explicit groups of a partition op's value: two nodes talk iff a group holds both.

    ``value`` is ``{"groups": [[node, ...], ...]}`` (groups may overlap: a bridge
    node sits in both halves, a ring is a list of links) or ``{"pattern": name}``
    (plus ``"node"`` for isolate), resolved by `partition_groups` with ``rng``.
    Raises ChaosError naming what is wrong.
    """
    if not isinstance(value, dict):
        raise ChaosError(f"nemesis partition: value must be a dict, got {value!r}")
    if "groups" in value:
        groups = value["groups"]
        if not isinstance(groups, list):
            raise ChaosError(f"nemesis partition: groups must be a list, got {groups!r}")
    else:
        pattern = value.get("pattern")
        if pattern not in PARTITION_PATTERNS:
            raise ChaosError(f"nemesis partition: unknown pattern {pattern!r}; "
                             f"expected one of {PARTITION_PATTERNS} or 'groups'")
        try:
            groups = partition_groups(str(pattern), nodes, rng, node=value.get("node"))
        except ValueError as e:
            raise ChaosError(f"nemesis partition: {e}") from None
    for gi, g in enumerate(groups):
        for n in g:
            if n not in nodes:
                raise ChaosError(f"nemesis partition: unknown node {n!r} in group {gi}")
    return [list(g) for g in groups]


#: a crash/pause target meaning "the replica owning partition 0 when the fault starts"
#: (its restart/resume then means the same replica), so a failover always happens
OWNER: Final = "owner"
_FAMILY: Final = {"crash": "crash", "restart": "crash", "pause": "pause", "resume": "pause"}


def owner_target(f: str, value: Any, owner_now: str | None,
                 remembered: dict[str, str]) -> Any:
    """The replica a crash/restart/pause/resume with `OWNER` means (pure; the world passes
    the owner of partition 0 it sees now). A fault remembers its target in `remembered`,
    its heal takes it back; None when there is no owner or nothing to heal (a no-op)."""
    if value != OWNER or f not in _FAMILY:
        return value
    family = _FAMILY[f]
    if f in ("crash", "pause"):
        if owner_now is not None:
            remembered[family] = owner_now
        return owner_now
    return remembered.pop(family, None)


def cut_of(groups: Sequence[Sequence[str]], nodes: Sequence[str]) -> set[tuple[str, str]]:
    """The directed links between ``nodes`` that no group holds."""
    allowed = {(a, b) for g in groups for a in g for b in g}
    return {(a, b) for a in nodes for b in nodes if a != b and (a, b) not in allowed}


def cut_links(value: Any, nodes: Sequence[str], rng: random.Random) -> set[tuple[str, str]]:
    """The directed links a partition op cuts (`resolve_partition`, then `cut_of`)."""
    return cut_of(resolve_partition(value, nodes, rng), nodes)


def _fault(kind: str, spec: ExperimentSpec, rng: random.Random) -> tuple[str, Any, str, Any]:
    """(fault f, value, heal f, heal value) for one fault window."""
    replicas = spec.replica_names
    if kind == "partition":
        kind = PARTITION_PATTERNS[rng.randrange(len(PARTITION_PATTERNS))]
    if kind in PARTITION_PATTERNS:
        groups = partition_groups(kind, nodes_of(spec), rng)
        return "partition", {"pattern": kind, "groups": groups}, "heal", None
    target = replicas[rng.randrange(len(replicas))]
    if kind == "crash":
        return "crash", target, "restart", target
    if kind == "pause":
        return "pause", target, "resume", target
    if kind == "skew":
        k = 1 + rng.randrange(len(replicas))
        picked = sorted(rng.sample(list(replicas), k))
        offsets = {r: rng.choice((-1, 1)) * (100 + rng.randrange(2000)) for r in picked}
        return "skew", offsets, "unskew", None
    if kind == "rebalance":
        return "rebalance", None, "", None
    if kind == "broker-kill":
        # kill -9 of the broker leading partition 0 (the simulated log has no brokers)
        return "kill-broker", "leader", "restart-broker", None
    raise ValueError(f"unknown fault {kind!r}")


def _canonical(ops: Sequence[NemesisOp]) -> tuple[NemesisOp, ...]:
    """Sorted by time, each value with sorted keys: the form spec.json stores and replays."""
    return tuple(NemesisOp(at_ms=s.at_ms, f=s.f, value=canonical(s.value))
                 for s in sorted(ops, key=lambda s: s.at_ms))


def build_schedule(spec: ExperimentSpec) -> tuple[NemesisOp, ...]:
    """The run's schedule, canonical: the spec's explicit one, or drawn from `nemesis` + seed."""
    if spec.schedule is not None:
        return _canonical(spec.schedule)
    if not spec.nemesis:
        return ()
    rng = random.Random(spec.seed ^ _SALT)
    load_ms = int(spec.time_limit_s * 1000)
    out: list[NemesisOp] = []
    t = spec.nemesis_interval_ms
    i = 0
    while t < load_ms:
        kind = spec.nemesis[i % len(spec.nemesis)]
        i += 1
        f, value, heal_f, heal_value = _fault(kind, spec, rng)
        out.append(NemesisOp(at_ms=t, f=f, value=value))
        if heal_f:
            out.append(NemesisOp(at_ms=t + spec.fault_duration_ms, f=heal_f, value=heal_value))
            t += spec.fault_duration_ms
        t += max(1, spec.nemesis_interval_ms)
    return _canonical(out)


def windows_schedule(windows: Sequence[tuple[int, int, str, int]],
                     spec: ExperimentSpec) -> tuple[NemesisOp, ...]:
    """A schedule from (start_ms, duration_ms, fault, choice) windows (what `hunt` draws).

    `choice` seeds the fault's target/groups so a shrunk window stays the same fault.
    """
    out: list[NemesisOp] = []
    for start, duration, kind, choice in windows:
        f, value, heal_f, heal_value = _fault(kind, spec, random.Random(choice))
        out.append(NemesisOp(at_ms=start, f=f, value=value))
        if heal_f:
            out.append(NemesisOp(at_ms=start + duration, f=heal_f, value=heal_value))
    return _canonical(out)


def final_heal(schedule: Sequence[NemesisOp], until_ms: float) -> tuple[NemesisOp, ...]:
    """Heal ops for whatever the schedule leaves broken at `until_ms`.

    Always heals the network (a no-op when nothing is partitioned), so the
    heal phase is a clear marker in the history for convergence timing.
    """
    crashed: set[str] = set()
    paused: set[str] = set()
    skewed = False
    brokers_down = False
    for s in sorted(schedule, key=lambda s: s.at_ms):
        if s.at_ms >= until_ms:
            break
        if s.f == "crash":
            crashed.add(str(s.value))
        elif s.f == "restart":
            crashed.discard(str(s.value))
        elif s.f == "pause":
            paused.add(str(s.value))
        elif s.f == "resume":
            paused.discard(str(s.value))
        elif s.f == "skew":
            skewed = True
        elif s.f == "unskew":
            skewed = False
        elif s.f == "kill-broker":
            brokers_down = True
        elif s.f == "restart-broker":
            brokers_down = False
    out = [NemesisOp(at_ms=0, f="heal")]
    out += [NemesisOp(at_ms=0, f="resume", value=r) for r in sorted(paused)]
    out += [NemesisOp(at_ms=0, f="restart", value=r) for r in sorted(crashed)]
    if skewed:
        out.append(NemesisOp(at_ms=0, f="unskew"))
    if brokers_down:
        out.append(NemesisOp(at_ms=0, f="restart-broker"))
    return tuple(out)


def replica_named(f: str, value: Any, replicas: Sequence[str]) -> str:
    """The replica a nemesis op names (``"r1"`` or ``{"replica": "r1"}``), for either world."""
    v = value.get("replica", value.get("node")) if isinstance(value, dict) else value
    if v not in replicas:
        raise ChaosError(f"nemesis {f}: unknown replica {value!r}; replicas are {list(replicas)}")
    return str(v)
