"""Client workloads and the experiment's phases as generators (pure).

Every workload maps onto a checkable model (DESIGN.md, "Histories and
checkers"): conversation turns and case-bank entries are list-append
transactions, memory records are rw-registers, governance is a set with
revocations, and identity probes read an instance's fingerprint from a
chosen replica. Keys are namespaced by instance, so every transaction stays
within one instance:

- ``<instance>/transcript`` and ``<instance>/cases``: list-append keys;
- ``<instance>/mem/<module>/<name>``: registers. Turns write
  ``mem/subtask/*`` (the turn *refers to* that memory write: with sharded
  memory that record lives on another partition), the memory workload writes
  ``mem/tool/k*`` in rw-register txns and ``mem/tool/r*`` as single
  registers, so a torn read can be attributed to a turn.

Appended and written values are unique ints across the run, which is what
Elle-style checkers need to recover version orders.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from selfhood.chaos.generator import (
    MS,
    NEMESIS,
    PENDING,
    SECOND,
    Context,
    Generator,
    Once,
    OpRequest,
    Pending,
    Seq,
    fill_in_new,
    nemesis,
    nemesis_and_clients,
    phases,
    randbelow,
    stagger,
    time_limit,
)
from selfhood.checkers.history import Op
from selfhood.consistency.keys import cases_key, mem_key, transcript_key, try_parse_key
from selfhood.slots import slot_init, slot_maker
from selfhood.spec import ExperimentSpec, NemesisOp, WorkloadSpec

#: register names per module; small pools so reads and writes collide
MEMORY_NAMES: Final = ("k0", "k1", "k2")
#: single-register keys (``<instance>/mem/tool/r*``), never touched by multi-op txns
REGISTER_NAMES: Final = ("r0", "r1")


def is_register_key(key: str) -> bool:
    """A key of the single-register history (see `memory_op`): ``mem/tool/r*``."""
    k = try_parse_key(key)
    return k is not None and k[1] == "tool" and k[2] is not None and k[2].startswith("r")


# (cum_weights, weights_total) per weights tuple: the same floats the properties
# compute, without re-adding them on every op
_CUM_WEIGHTS: dict[tuple[float, float, float, float],
                   tuple[tuple[float, float, float, float], float]] = {}


@dataclass(frozen=True, slots=True)
class InstanceKeys:
    """An instance's keys, built once (a workload op names two or three of them)."""

    transcript: str
    cases: str
    subtask: tuple[str, ...]  # mem/subtask/<MEMORY_NAMES>
    tool: tuple[str, ...]  # mem/tool/<MEMORY_NAMES>: the rw-register txns' keys
    registers: tuple[str, ...]  # mem/tool/<REGISTER_NAMES>: the single registers


_KEYS: dict[str, InstanceKeys] = {}


def instance_keys(inst: str) -> InstanceKeys:
    """The workload's keys of instance ``inst`` (memoized: the same strings every op)."""
    k = _KEYS.get(inst)
    if k is None:
        k = _KEYS[inst] = InstanceKeys(
            transcript_key(inst), cases_key(inst),
            tuple(mem_key(inst, "subtask", n) for n in MEMORY_NAMES),
            tuple(mem_key(inst, "tool", n) for n in MEMORY_NAMES),
            tuple(mem_key(inst, "tool", n) for n in REGISTER_NAMES))
    return k


@slot_init
@dataclass(frozen=True, slots=True)
class ClientMix:
    """The client workload mix as one immutable generator.

    State is only the next unique value; every choice is drawn from ctx.rng,
    so the same seed gives the same ops.
    """

    instances: tuple[str, ...]
    replicas: tuple[str, ...]
    weights: tuple[float, float, float, float]  # conversation, memory, governance, probe
    max_txn_len: int
    rules: int
    next_value: int = 1

    def op(self, ctx: Context) -> tuple[OpRequest | Pending, Generator] | None:
        if not ctx.free_processes:
            return PENDING, self  # the shared no-wake value (equal to a new Pending())
        rng = ctx.rng
        # every bound drawn below is >= 1 when the mix is valid (else randrange's own
        # error): `randbelow` then draws exactly what randrange draws
        randrange = (randbelow(rng) if self.rules >= 1 and self.max_txn_len >= 1
                     and self.replicas else rng.randrange)
        instances = self.instances
        inst = instances[randrange(len(instances))] if len(instances) > 1 else instances[0]
        cum = _CUM_WEIGHTS.get(self.weights)
        if cum is None:
            cum = _CUM_WEIGHTS[self.weights] = (self.cum_weights, self.weights_total)
        u = rng.random() * cum[1]
        kind = 0
        while kind < 3 and u >= cum[0][kind]:
            kind += 1
        v = self.next_value
        keys = _KEYS.get(inst)
        if keys is None:
            keys = instance_keys(inst)
        f = "txn"
        value: Any
        if kind == 0:
            value, used = conversation_op(rng.random(), randrange(1 << 30), keys, v,
                                          self.max_txn_len)
        elif kind == 1:
            value, used = memory_op(rng.random, randrange, keys, v, self.max_txn_len)
        elif kind == 2:
            f, value = governance_op(rng.random(), randrange(self.rules))
            used = 0
        else:
            f, value = probe_op(self.replicas[randrange(len(self.replicas))])
            used = 0
        filled = fill_in_new(f, value, inst, ctx)
        if isinstance(filled, Pending):
            return filled, self
        nxt = self if used == 0 else _new_mix(self.instances, self.replicas, self.weights,
                                              self.max_txn_len, self.rules, v + used)
        return filled, nxt

    @property
    def cum_weights(self) -> tuple[float, float, float, float]:
        a, b, c, d = self.weights
        return (a, a + b, a + b + c, a + b + c + d)

    @property
    def weights_total(self) -> float:
        return sum(self.weights)

    def update(self, ctx: Context, event: Op) -> Generator:
        return self


#: ``ClientMix(...)`` of every field, built without a call per field
_new_mix: Final = slot_maker(ClientMix)


def conversation_op(u: float, r: int, keys: InstanceKeys, v: int,
                    max_len: int) -> tuple[list[list[Any]], int]:
    """A turn (read context, append, maybe write referenced memory / a case) or a read:
    its txn's micro-ops, and how many unique values it used."""
    t, c = keys.transcript, keys.cases
    sub = keys.subtask[r % len(MEMORY_NAMES)]
    mops: list[list[Any]]
    if u < 0.6:  # a turn
        mops = [["r", t, None], ["append", t, v]] if max_len >= 2 else [["append", t, v]]
        variant = (r >> 4) % 3
        if max_len >= 3 and variant == 0:
            mops.append(["w", sub, v + 1])
        elif max_len >= 3 and variant == 1:
            mops.append(["append", c, v + 1])
        return mops, len(mops) - (1 if max_len >= 2 else 0)
    if max_len < 2:
        mops = [["r", t, None]]
    elif u < 0.85:  # read the transcript with the memory a turn refers to
        mops = [["r", t, None], ["r", sub, None]]
    else:
        mops = [["r", t, None], ["r", c, None]]
    return mops, 0


def memory_op(random_: Any, randrange: Any, keys: InstanceKeys, v: int,
              max_len: int) -> tuple[list[list[Any]], int]:
    """Tool memory: a single-register op on ``tool/r*`` or an rw-register txn on ``tool/k*``
    (its micro-ops, and how many unique values it used).

    The two key sets never mix, so the single-register ops form a plain
    register history (checked for sequential consistency / linearizability)
    and the txns an rw-register one (checked by Elle).
    """
    if random_() < 0.5:
        key = keys.registers[randrange(len(REGISTER_NAMES))]
        if random_() < 0.5:
            return [["r", key, None]], 0
        return [["w", key, v]], 1
    n = 1 + randrange(max_len)
    mops: list[list[Any]] = []
    used = 0
    tool = keys.tool
    for _ in range(n):
        key = tool[randrange(len(MEMORY_NAMES))]
        if random_() < 0.5:
            mops.append(["r", key, None])
        else:
            mops.append(["w", key, v + used])
            used += 1
    return mops, used


def governance_op(u: float, rule: int) -> tuple[str, Any]:
    """Add, revoke or read governance rules (a set with revocations): (f, value)."""
    if u < 0.35:
        return "add-rule", rule
    if u < 0.5:
        return "revoke-rule", rule
    return "read-rules", None


def probe_op(replica: str) -> tuple[str, Any]:
    """Read an instance's fingerprint from a chosen replica: (f, value)."""
    return "probe", {"replica": replica}


def client_mix(spec: ExperimentSpec) -> ClientMix:
    w: WorkloadSpec = spec.workload
    return ClientMix(spec.instance_names, spec.replica_names,
                     (w.conversation, w.memory, w.governance, w.probe), w.max_txn_len, w.rules)


@slot_init
@dataclass(frozen=True, slots=True)
class ProbeRound:
    """Probes every (replica, instance) pair in turn, forever (the quiesce phase)."""

    pairs: tuple[tuple[str, str], ...]
    i: int = 0

    def op(self, ctx: Context) -> tuple[OpRequest | Pending, Generator] | None:
        replica, inst = self.pairs[self.i % len(self.pairs)]
        f, value = probe_op(replica)
        filled = fill_in_new(f, value, inst, ctx)
        if isinstance(filled, Pending):
            return filled, self
        return filled, ProbeRound(self.pairs, self.i + 1)

    def update(self, ctx: Context, event: Op) -> Generator:
        return self


def final_reads(replicas: Sequence[str], instances: Sequence[str]) -> Generator:
    """One final read per replica per instance, after heal and quiesce."""
    return Seq(tuple(
        Once(OpRequest("final-read", {"replica": r}, instance=i))
        for r in replicas for i in instances
    ))


def schedule_generator(schedule: Sequence[NemesisOp]) -> Generator:
    """Nemesis ops at their scheduled (virtual) times."""
    return Seq(tuple(
        Once(OpRequest(s.f, s.value, NEMESIS, time=s.at_ms * MS)) for s in sorted(
            schedule, key=lambda s: s.at_ms)
    ))


def experiment_generator(spec: ExperimentSpec, schedule: Sequence[NemesisOp],
                         final_heal: Sequence[NemesisOp]) -> Generator:
    """The run: load with faults → heal → quiesce (probes) → final reads.

    Nemesis times are relative to the start of the run (the load phase starts
    at virtual time 0).
    """
    load_ns = int(spec.time_limit_s * SECOND)
    gap_ns = max(1, int(SECOND / spec.rate))
    load = time_limit(load_ns, stagger(gap_ns, client_mix(spec)))
    faults = schedule_generator([s for s in schedule if s.at_ms * MS < load_ns])
    heal = nemesis(Seq(tuple(Once(OpRequest(s.f, s.value)) for s in final_heal)))
    pairs = tuple((r, i) for r in spec.replica_names for i in spec.instance_names)
    probe_gap = max(MS, (spec.quiesce_ms * MS) // max(1, 10 * len(pairs)))
    quiesce = time_limit(max(1, spec.quiesce_ms * MS), stagger(probe_gap, ProbeRound(pairs)))
    return phases(
        nemesis_and_clients(faults if schedule else None, load),
        heal,
        quiesce,
        final_reads(spec.replica_names, spec.instance_names),
    )
