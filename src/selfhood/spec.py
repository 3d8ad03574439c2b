"""The experiment as plain data: `ExperimentSpec` (pure).

Like a Jepsen test map, the spec holds everything a run needs and nothing
live, so it is saved with every run (spec.json) and a run can be replayed
from it. Variants are made with `with_overrides`, which re-validates, so a
spec value is always valid. Bad input raises `SpecError` naming the field
(and the file line where one is known), never a traceback.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from pathlib import Path
from typing import Any, Final

import msgspec

from selfhood.consistency.config import DEFAULT_REPLICA, ReplicaConfig
from selfhood.consistency.config import MODES as _MODES
from selfhood.consistency.router import POLICIES
from selfhood.errors import SpecError

#: the modes and router policies have their homes beside their implementations
MODES: Final = _MODES
ROUTERS: Final = POLICIES
PARTITION_PATTERNS: Final = ("halves", "isolate", "majority-ring", "bridge")
#: fault names accepted by `nemesis` (a pattern name means that partition pattern only)
FAULTS: Final = ("partition", *PARTITION_PATTERNS, "crash", "pause", "skew", "rebalance",
                  "broker-kill")
#: nemesis op names accepted in an explicit `schedule`
NEMESIS_OPS: Final = ("partition", "heal", "crash", "restart", "pause", "resume", "skew",
                      "unskew", "rebalance", "kill-broker", "restart-broker")
#: where a run's replicas live: the deterministic simulator, or OS processes over real Kafka
RUNTIMES: Final = ("sim", "cluster")
#: name of the log service in partition groups
LOG_NODE: Final = "log"
#: upper bound of every duration field in ms (one hour), so no value overflows the clock
MAX_MS: Final = 3_600_000
#: upper bound of the client rate and the workload weights
MAX_RATE: Final = 1_000_000.0


class NetSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Simulated network: one-way delay range and message loss rate."""

    delay_ms_min: float = 0.5
    delay_ms_max: float = 3.0
    loss: float = 0.0


class WorkloadSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Relative weights of the workloads in the client mix, and txn shape."""

    conversation: float = 0.5
    memory: float = 0.25
    governance: float = 0.1
    probe: float = 0.15
    max_txn_len: int = 3
    rules: int = 6


class NemesisOp(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One fault in an explicit schedule: issue nemesis op `f` at `at_ms` (virtual)."""

    at_ms: int
    f: str
    value: Any = None


class ExperimentSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Everything one `selfhood run` does, as data.

    Times are virtual (simulated) time. `schedule`, when given, replaces the
    schedule the run would draw from `nemesis` + `seed` (that is how `hunt`
    writes a replayable failure).
    """

    name: str = "default"
    runtime: str = "sim"
    seed: int = 1
    #: a sweep: run the experiment once per seed (`seed` is then ignored); see docs/run.md
    seeds: tuple[int, ...] | None = None
    modes: tuple[str, ...] = ("sequential", "eventual")
    time_limit_s: float = 5.0
    concurrency: int = 6
    rate: float = 200.0
    replicas: int = 3
    shards: int = DEFAULT_REPLICA.shards
    instances: int = 4
    sharded_memory: bool = DEFAULT_REPLICA.sharded_memory
    atomic_memory: bool = DEFAULT_REPLICA.atomic_memory
    fencing: bool = DEFAULT_REPLICA.fencing
    router: str = "sticky"
    workload: WorkloadSpec = WorkloadSpec()
    nemesis: tuple[str, ...] = ("partition", "crash")
    nemesis_interval_ms: int = 1500
    fault_duration_ms: int = 1000
    schedule: tuple[NemesisOp, ...] | None = None
    net: NetSpec = NetSpec()
    op_timeout_ms: int = 300
    quiesce_ms: int = 1000
    #: cluster runtime: the replicas' consumer-group session timeout (how long a silent
    #: owner keeps its partitions); the simulator's coordinator has its own (SimConfig)
    session_timeout_ms: int = 1000
    #: cluster runtime: a user's service started per node (`sh -c`) instead of selfhood's
    #: own replica (docs/agents.md); None runs `selfhood replica serve`
    system: str | None = None

    @property
    def replica_names(self) -> tuple[str, ...]:
        return tuple(f"r{i}" for i in range(self.replicas))

    @property
    def instance_names(self) -> tuple[str, ...]:
        return tuple(f"i{i}" for i in range(self.instances))

    def replica_config(self, mode: str) -> ReplicaConfig:
        """The replicas' configuration for one mode of this experiment (both runtimes)."""
        return ReplicaConfig(mode=mode, shards=self.shards, sharded_memory=self.sharded_memory,
                             atomic_memory=self.atomic_memory, fencing=self.fencing)


DEFAULT_SPEC: Final = ExperimentSpec()

_FIELD_RE: Final = re.compile(r"at `\$\.?([^`]*)`")


def _field_of(message: str) -> str | None:
    m = _FIELD_RE.search(message)
    if m is None:
        return None
    return m.group(1).replace("[", ".").replace("]", "") or None


def _line_of(text: str | None, field: str | None) -> int | None:
    """Best-effort line of a field in the source text, so the error can point at it."""
    if text is None or not field:
        return None
    leaf = field.split(".")[-1]
    if leaf.isdigit():
        leaf = field.split(".")[-2] if "." in field else leaf
    pat = re.compile(rf'^\s*"?{re.escape(leaf)}"?\s*[=:]', re.MULTILINE)
    m = pat.search(text)
    if m is None:
        return None
    return text.count("\n", 0, m.start()) + 1


def _fail(field: str, message: str, source: str | None = None,
          text: str | None = None) -> SpecError:
    where = ""
    if source is not None:
        where = source
        line = _line_of(text, field)
        if line is not None:
            where += f":{line}"
        where += ": "
    return SpecError(f"{where}spec field `{field}`: {message}")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _in(value: float, lo: float, hi: float, *, open_lo: bool = False) -> bool:
    """lo <= value <= hi (or lo < value), False for nan and infinities."""
    if not _number(value):
        return False
    return (lo < value if open_lo else lo <= value) and value <= hi


def canonical(value: Any) -> Any:
    """`value` with every mapping's keys sorted, as spec.json stores it.

    A schedule value is written into the history as the run saw it, so the
    run must see the same key order that a replay of spec.json sees.
    """
    if isinstance(value, dict):
        return {k: canonical(value[k]) for k in sorted(value)}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    return value


def _schedule_value_error(spec: ExperimentSpec, step: NemesisOp) -> str | None:
    """Why `step.value` is not a value the nemesis op `step.f` accepts, or None."""
    replicas = spec.replica_names
    nodes = (*replicas, LOG_NODE)
    v = step.value
    if step.f in ("crash", "restart", "pause", "resume"):
        if not isinstance(v, str) or (v not in replicas and v != "owner"):
            return (f"{step.f} takes a replica name ({', '.join(replicas)}) or 'owner' "
                    f"(the owner of partition 0), got {v!r}")
        return None
    if step.f in ("kill-broker",):
        broker_id = isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 64
        return (None if v is None or v == "leader" or broker_id
                else f"kill-broker takes 'leader' or a broker id in 1..64, got {v!r}")
    if step.f in ("heal", "unskew", "rebalance", "restart-broker"):
        return None if v is None else f"{step.f} takes no value, got {v!r}"
    if step.f == "skew":
        if not isinstance(v, dict) or not v:
            return f"skew takes {{replica: offset_ms}}, got {v!r}"
        for name, ms in v.items():
            if name not in replicas:
                return f"skew: unknown replica {name!r} (replicas are {', '.join(replicas)})"
            if not _in(ms, -MAX_MS, MAX_MS):
                return f"skew of {name}: {ms!r} must be a number of ms in [-{MAX_MS}, {MAX_MS}]"
        return None
    # partition: explicit groups, or a named pattern (isolate may name its node)
    if not isinstance(v, dict):
        return (f"partition takes {{pattern, groups}} or {{pattern[, node]}} "
                f"(patterns {', '.join(PARTITION_PATTERNS)}), got {v!r}")
    extra = sorted(set(v) - {"pattern", "groups", "node"})
    if extra:
        return f"partition: unknown key {extra[0]!r} (keys are pattern, groups, node)"
    pattern = v.get("pattern")
    if pattern is not None and pattern not in PARTITION_PATTERNS:
        return (f"partition: unknown pattern {pattern!r} "
                f"(choose from {', '.join(PARTITION_PATTERNS)})")
    if "groups" in v:
        groups = v["groups"]
        if not isinstance(groups, list) or not groups:
            return f"partition: groups must be a non-empty list of node lists, got {groups!r}"
        for gi, g in enumerate(groups):
            if not isinstance(g, list) or not g:
                return f"partition: group {gi} must be a non-empty list of nodes, got {g!r}"
            for n in g:
                if n not in nodes:
                    return (f"partition: unknown node {n!r} in group {gi} "
                            f"(nodes are {', '.join(nodes)})")
    elif pattern is None:
        return "partition needs a pattern or groups"
    if "node" in v and (pattern != "isolate" or "groups" in v or v["node"] not in nodes):
        return (f"partition: node {v['node']!r} needs pattern 'isolate' "
                f"and one of {', '.join(nodes)}")
    return None


def validate(spec: ExperimentSpec, *, source: str | None = None,
             text: str | None = None) -> ExperimentSpec:
    """Check what types alone cannot; raise SpecError naming the first bad field.

    Every number is bounded (nan and infinities are refused), so no value can
    overflow the virtual clock or write `Infinity` into spec.json.
    """

    def bad(field: str, message: str) -> SpecError:
        return _fail(field, message, source, text)

    if not spec.name or not re.fullmatch(r"[A-Za-z0-9_.-]+", spec.name) or spec.name in (".", ".."):
        raise bad("name", f"{spec.name!r} must be one path segment of letters, digits, "
                  "'_', '.', '-' (not '.' or '..')")
    if spec.runtime not in RUNTIMES:
        raise bad("runtime", f"unknown runtime {spec.runtime!r} (choose from "
                  f"{', '.join(RUNTIMES)})")
    if spec.system is not None and (spec.runtime != "cluster" or not spec.system.strip()):
        raise bad("system", "a system command needs runtime 'cluster' and must not be empty")
    if not -(2**63) <= spec.seed < 2**63:
        raise bad("seed", f"{spec.seed} must fit in 64 bits")
    if spec.seeds is not None:
        if not 1 <= len(spec.seeds) <= 1000 or len(set(spec.seeds)) != len(spec.seeds):
            raise bad("seeds", "must list 1..1000 distinct seeds")
        for i, s in enumerate(spec.seeds):
            if not -(2**63) <= s < 2**63:
                raise bad(f"seeds.{i}", f"{s} must fit in 64 bits")
    if not spec.modes:
        raise bad("modes", "at least one mode is required")
    for i, m in enumerate(spec.modes):
        if m not in MODES:
            raise bad(f"modes.{i}", f"unknown mode {m!r} (choose from {', '.join(MODES)})")
    if len(set(spec.modes)) != len(spec.modes):
        raise bad("modes", "modes must not repeat")
    if not _in(spec.time_limit_s, 0, 3600, open_lo=True):
        raise bad("time_limit_s", f"{spec.time_limit_s} must be in (0, 3600] seconds")
    if not 1 <= spec.concurrency <= 1024:
        raise bad("concurrency", f"{spec.concurrency} must be in 1..1024")
    if not _in(spec.rate, 0, MAX_RATE, open_lo=True):
        raise bad("rate", f"{spec.rate} must be in (0, {MAX_RATE:g}] ops/s")
    if not 1 <= spec.replicas <= 64:
        raise bad("replicas", f"{spec.replicas} must be in 1..64")
    if not 1 <= spec.shards <= 256:
        raise bad("shards", f"{spec.shards} must be in 1..256")
    if spec.sharded_memory and spec.shards < 2:
        raise bad("sharded_memory", "needs shards >= 2 (memory lives on other partitions)")
    if not 1 <= spec.instances <= 1000:
        raise bad("instances", f"{spec.instances} must be in 1..1000")
    if spec.router not in ROUTERS:
        raise bad("router", f"unknown router {spec.router!r} (choose from {', '.join(ROUTERS)})")
    w = spec.workload
    for k in ("conversation", "memory", "governance", "probe"):
        if not _in(getattr(w, k), 0, MAX_RATE):
            raise bad(f"workload.{k}", f"{getattr(w, k)} must be a weight in [0, {MAX_RATE:g}]")
    if w.conversation + w.memory + w.governance + w.probe <= 0:
        raise bad("workload", "at least one workload weight must be > 0")
    if not 1 <= w.max_txn_len <= 32:
        raise bad("workload.max_txn_len", f"{w.max_txn_len} must be in 1..32")
    if not 1 <= w.rules <= 10_000:
        raise bad("workload.rules", f"{w.rules} must be in 1..10000")
    for i, fault in enumerate(spec.nemesis):
        if fault not in FAULTS:
            raise bad(f"nemesis.{i}", f"unknown fault {fault!r} (choose from {', '.join(FAULTS)})")
    if not 0 <= spec.nemesis_interval_ms <= MAX_MS:
        raise bad("nemesis_interval_ms", f"{spec.nemesis_interval_ms} must be in 0..{MAX_MS}")
    if not 0 < spec.fault_duration_ms <= MAX_MS:
        raise bad("fault_duration_ms", f"{spec.fault_duration_ms} must be in 1..{MAX_MS}")
    if spec.schedule is not None:
        for i, step in enumerate(spec.schedule):
            if step.f not in NEMESIS_OPS:
                raise bad(f"schedule.{i}.f", f"unknown nemesis op {step.f!r} "
                          f"(choose from {', '.join(NEMESIS_OPS)})")
            if not 0 <= step.at_ms <= MAX_MS:
                raise bad(f"schedule.{i}.at_ms", f"{step.at_ms} must be in 0..{MAX_MS}")
            why = _schedule_value_error(spec, step)
            if why is not None:
                raise bad(f"schedule.{i}.value", why)
    n = spec.net
    if not _in(n.delay_ms_max, 0, 60_000):
        raise bad("net.delay_ms_max", f"{n.delay_ms_max} must be in [0, 60000] ms")
    if not _in(n.delay_ms_min, 0, n.delay_ms_max):
        raise bad("net.delay_ms_min", "need 0 <= delay_ms_min <= delay_ms_max")
    if not _in(n.loss, 0, 1) or n.loss == 1:
        raise bad("net.loss", f"{n.loss} must be in [0, 1)")
    if not 0 < spec.op_timeout_ms <= MAX_MS:
        raise bad("op_timeout_ms", f"{spec.op_timeout_ms} must be in 1..{MAX_MS}")
    if not 0 <= spec.quiesce_ms <= MAX_MS:
        raise bad("quiesce_ms", f"{spec.quiesce_ms} must be in 0..{MAX_MS}")
    if not 500 <= spec.session_timeout_ms <= MAX_MS:
        raise bad("session_timeout_ms", f"{spec.session_timeout_ms} must be in 500..{MAX_MS} "
                  "(the brokers' group.min.session.timeout.ms is 500)")
    return spec


def spec_from_mapping(data: Any, *, source: str | None = None,
                      text: str | None = None) -> ExperimentSpec:
    """Build and validate a spec from parsed JSON/TOML (unknown keys are errors)."""
    if not isinstance(data, dict):
        raise SpecError(f"{source + ': ' if source else ''}a spec must be a JSON/TOML object")
    try:
        spec = msgspec.convert(data, ExperimentSpec)
    except msgspec.ValidationError as exc:
        msg = str(exc)
        field = _field_of(msg) or "?"
        unknown = re.match(r"Object contains unknown field `([^`]*)`", msg)
        if unknown:
            leaf = unknown.group(1)
            field = f"{field}.{leaf}" if field != "?" else leaf
            raise _fail(field, "unknown field", source, text) from None
        raise _fail(field, msg.split(" - at ")[0], source, text) from None
    return validate(spec, source=source, text=text)


def load_spec(path: str | Path) -> ExperimentSpec:
    """Read a spec from a .json or .toml file."""
    p = Path(path)
    src = str(p)
    suffix = p.suffix.lower()
    if suffix not in (".json", ".toml"):
        raise SpecError(f"{src}: spec file must end in .json or .toml")
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"{src}: cannot read spec: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise SpecError(f"{src}: spec is not UTF-8 (byte {exc.start})") from None
    data: Any
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(f"{src}:{exc.lineno}:{exc.colno}: malformed JSON: {exc.msg}") from None
    elif suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            msg = str(exc)
            if "at end of document" in msg:
                msg += f" (line {text.count(chr(10)) + 1})"
            raise SpecError(f"{src}: malformed TOML: {msg}") from None
    return spec_from_mapping(data, source=src, text=text)


def with_overrides(spec: ExperimentSpec, **changes: Any) -> ExperimentSpec:
    """A validated variant of `spec` (None values mean "keep")."""
    kept = {k: v for k, v in changes.items() if v is not None}
    if not kept:
        return spec
    data = to_dict(spec)
    data.update(kept)
    return spec_from_mapping(msgspec.to_builtins(data))


def to_dict(spec: ExperimentSpec) -> dict[str, Any]:
    """Plain JSON-ready form (what spec.json holds)."""
    out: dict[str, Any] = msgspec.to_builtins(spec)
    return out


def dumps(spec: ExperimentSpec) -> str:
    """Stable, human-readable JSON for spec.json and replay files."""
    return json.dumps(to_dict(spec), indent=2, sort_keys=True) + "\n"


def parse_list(option: str, text: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    """A comma list from the command line (`--modes a,b`); "none" = empty."""
    if text.strip().lower() in ("none", ""):
        return ()
    items = tuple(s.strip() for s in text.split(",") if s.strip())
    for item in items:
        if item not in allowed:
            raise SpecError(f"option {option}: unknown value {item!r} "
                            f"(choose from {', '.join(allowed)})")
    return items
