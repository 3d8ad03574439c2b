"""From spec to verdicts: run every mode on the simulator and judge it.

Per mode: build the SimConfig and the experiment generator from the spec,
run the deterministic simulation, split the history into the checkable
histories (list-append, rw-register, single registers), check them with
`selfhood.checkers.api.check_history` against the mode's promise and the
common reference model, and measure availability, latency, staleness and
the identity verdicts. Everything a verdict rests on is written to the
store, with the exact `selfhood check` command that reproduces it.

The pure parts (splitting, summaries) are plain functions; `run_experiment`
writes nothing: `selfhood.chaos.store` writes the run.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from selfhood.chaos.nemesis import build_schedule, final_heal
from selfhood.chaos.workloads import (
    MEMORY_NAMES,
    REGISTER_NAMES,
    experiment_generator,
    is_register_key,
)
from selfhood.checkers.formats import ops_to_jsonl
from selfhood.checkers.history import TXN_MODELS, Op, pair_ops, reindex
from selfhood.checkers.identity import check_identity, staleness
from selfhood.checkers.measures import percentile
from selfhood.checkers.verdict import CheckResult, Validity, combine_validity
from selfhood.consistency.keys import (
    cases_key,
    is_list_key,
    is_memory_key,
    mem_key,
    transcript_key,
)
from selfhood.errors import ChaosError
from selfhood.spec import ExperimentSpec, NemesisOp, to_dict

#: derived, checkable histories written next to history.jsonl
CHECK_FILES: Final = ("list-append", "rw-register", "register", "governance")
TXN_FILES: Final = TXN_MODELS
#: the `selfhood check --model` of each derived history (governance is a set with removals)
MODEL_OF: Final = {"list-append": "list-append", "rw-register": "rw-register",
                   "register": "register", "governance": "set"}

#: the common reference every mode's anomalies are counted against (governance has none:
#: a set with removals is outside the linearizability checker's models)
REFERENCE: Final[dict[str, str]] = {"list-append": "strong-session-serializable",
                    "rw-register": "strong-session-serializable", "register": "sequential"}
#: what each mode promises, per checkable history
PROMISE: Final[dict[str, dict[str, str]]] = {
    "sequential": dict(REFERENCE),
    "linearizable": {"list-append": "strict-serializable",
                     "rw-register": "strict-serializable", "register": "linearizable"},
    # convergence plus the CRDT merge rules (selfhood.checkers.crdt)
    "eventual": {"list-append": "crdt", "rw-register": "crdt", "register": "crdt",
                 "governance": "crdt"},
}
PROMISE_TEXT: Final = {
    "sequential": "strong-session-serializable (txns), sequential (registers)",
    "linearizable": "strict-serializable (txns), linearizable (registers)",
    "eventual": "convergence after heal and the CRDT merge rules (grow-only transcript "
                "keeps every acknowledged turn, crashes included; "
                "last-writer-wins registers, remove-wins rules)",
}
REFERENCE_TEXT: Final = "strong-session-serializable (txns), sequential (registers)"

#: client ops that count toward availability and latency (final reads are measured apart)
LOAD_FS: Final = frozenset({"txn", "add-rule", "revoke-rule", "read-rules", "probe"})

Progress = Callable[[str], None]


def sim_config(spec: ExperimentSpec, mode: str) -> Any:
    """The simulated deployment for one mode."""
    from selfhood.chaos.sim import SimConfig

    return SimConfig.from_spec(spec, mode)


def schedule_of(spec: ExperimentSpec) -> tuple[NemesisOp, ...]:
    return build_schedule(spec)


def simulate_mode(spec: ExperimentSpec, mode: str,
                  on_progress: Callable[[int, int], None] | None = None) -> Any:
    """Run one mode on the simulator (same seed and schedule for every mode)."""
    from selfhood.chaos.sim import run_simulation

    schedule = schedule_of(spec)
    gen = experiment_generator(spec, schedule, final_heal(schedule, spec.time_limit_s * 1000))
    return run_simulation(sim_config(spec, mode), gen, seed=spec.seed,
                          on_progress=on_progress)


# --- splitting a run's history into checkable histories -------------------------------


def _project(value: Any, keep: Callable[[str], bool]) -> list[Any]:
    if not isinstance(value, list):
        return []
    return [m for m in value if isinstance(m, list) and len(m) == 3 and isinstance(m[1], str)
            and keep(m[1])]


def _final_mops(op: Op, keep: Callable[[str], bool]) -> list[Any]:
    """A final read as txn-shaped reads of the keys a checker knows."""
    inst = op.instance
    v = op.value if isinstance(op.value, dict) else {}
    reads: list[Any] = []
    if inst is None:
        return reads
    for name, k in (("transcript", transcript_key(inst)), ("cases", cases_key(inst))):
        if keep(k):
            reads.append(["r", k, v.get(name) if op.type == "ok" else None])
    mem = v.get("memory")
    if isinstance(mem, dict):
        # every known register, written or not: a register the replica lacks reads as nil
        names = set(mem) | {f"{m}/{n}" for m in ("subtask", "tool") for n in MEMORY_NAMES}
        for name in sorted(names):
            module, _, record = name.partition("/")
            k = mem_key(inst, module, record)
            if keep(k):
                reads.append(["r", k, mem.get(name) if op.type == "ok" else None])
    return reads


GOVERNANCE_FS: Final = {"add-rule": "add", "revoke-rule": "remove", "read-rules": "read"}


def _governance_op(op: Op) -> Op | None:
    """A governance op as a set op (add/remove/read; a final read is a read marked final)."""
    if op.f == "final-read":
        rules = op.value.get("rules") if isinstance(op.value, dict) else None
        return Op(0, op.type, op.process, "read", rules if op.type == "ok" else None, op.time,
                  op.node, op.instance, op.error, {"final": True})
    f = GOVERNANCE_FS.get(op.f or "")
    if f is None:
        return None
    return Op(0, op.type, op.process, f, op.value, op.time, op.node, op.instance, op.error)


def _register_finals(op: Op) -> list[Op]:
    """A final read as one final read per single register, each its own process.

    Own processes, so each read keeps the final read's real invoke and
    completion positions (the invoke carries no values yet).
    """
    inst = op.instance
    if inst is None:
        return []
    mem = op.value.get("memory") if isinstance(op.value, dict) else None
    out = []
    for name in REGISTER_NAMES:
        k = mem_key(inst, "tool", name)
        v = (mem or {}).get(f"tool/{name}") if op.type == "ok" else None
        out.append(Op(0, op.type, f"final-{op.process}-{k}", "read",
                      [k, v if op.type != "invoke" else None], op.time, op.node, inst,
                      op.error, {"final": True}))
    return out


def _rw_key(k: str) -> bool:
    return is_memory_key(k) and not is_register_key(k)


def split_history(history: Sequence[Op]) -> dict[str, list[Op]]:
    """The run's history as three checkable histories (nemesis ops kept in each).

    - list-append: transcript and case-bank micro-ops of every txn, plus final
      reads as reads of those keys (for the convergence check);
    - rw-register: memory-record micro-ops of multi-op txns (and final reads);
    - register: single-register ops (``mem/tool/r*``) as read/write of [key, value]
      (final reads: one read per register marked ``final``);
    - governance: rule ops as a set (add/remove/read, the set keyed by the op's
      instance; final reads marked ``final``), for the remove-wins check.

    A txn contributes to each history only the micro-ops on that history's
    keys; txns with none are left out. Indices are made dense again.
    """
    out: dict[str, list[Op]] = {name: [] for name in CHECK_FILES}
    # final reads: the invoke carries no keys, so it takes its keys from its completion
    # but keeps its own place, so concurrent final reads stay concurrent (real-time order)
    final_of: dict[int, Op] = {id(p.invoke): p.completion for p in pair_ops(history)
                               if p.invoke.f == "final-read" and p.completion is not None}
    for op in history:
        if op.process == "nemesis":
            for name in CHECK_FILES:
                out[name].append(op)
            continue
        gov = _governance_op(op)
        if gov is not None:
            out["governance"].append(gov)
        if op.f == "final-read":
            out["register"].extend(_register_finals(op))
            done = final_of.get(id(op)) if op.type == "invoke" else op
            if done is None or done.type != "ok":
                continue  # a final read that returned nothing reads no key
            for name, keep in (("list-append", is_list_key), ("rw-register", _rw_key)):
                mops = _final_mops(done, keep)
                if mops:
                    value = [[m[0], m[1], None] for m in mops] if op.type == "invoke" else mops
                    out[name].append(Op(0, op.type, op.process, "final-read", value, op.time,
                                        op.node, op.instance))
            continue
        if op.f != "txn":
            continue
        value = op.value
        la = _project(value, is_list_key)
        if la:
            out["list-append"].append(_with_value(op, la))
        rw = _project(value, _rw_key)
        if rw:
            out["rw-register"].append(_with_value(op, rw))
        reg = _project(value, is_register_key)
        if reg and len(reg) == 1 and isinstance(value, list) and len(value) == 1:
            f, k, v = reg[0]
            out["register"].append(_with_value(op, [k, v], "read" if f == "r" else "write"))
    return {name: reindex(ops) for name, ops in out.items()}


def _with_value(op: Op, value: Any, f: str | None = None) -> Op:
    return Op(op.index, op.type, op.process, f or op.f, value, op.time, op.node, op.instance,
              op.error, op.extra)


# --- measurements ------------------------------------------------------------------------


def availability_and_latency(history: Sequence[Op]) -> dict[str, Any]:
    """Share of load ops that succeeded, and latency of the successful ones."""
    total = ok = 0
    lat: list[float] = []
    for p in pair_ops(history):
        inv = p.invoke
        if inv.process == "nemesis" or inv.f not in LOAD_FS:
            continue
        total += 1
        c = p.completion
        if c is not None and c.type == "ok":
            ok += 1
            if c.time is not None and inv.time is not None:
                lat.append((c.time - inv.time) / 1e6)
    return {
        "availability": round(ok / total, 4) if total else 0.0,
        "latency_ms": {"p50": round(percentile(lat, 50), 3), "p99": round(percentile(lat, 99), 3)},
        "load_ops": total,
    }


def history_sha256(history: Sequence[Op]) -> tuple[str, str]:
    """The JSONL text of a history and its sha256 (what determinism is judged by)."""
    text = ops_to_jsonl(history)
    return text, hashlib.sha256(text.encode()).hexdigest()


@dataclass(slots=True)
class CheckRun:
    """One `selfhood check` worth of work: a derived history against one model."""

    file: str
    model: str
    consistency: str
    purpose: str  # "promise" | "reference"
    result: CheckResult | None = None
    elapsed_s: float = 0.0
    time_limit_s: float | None = None

    def command(self, mode_dir: str) -> str:
        limit = "" if self.time_limit_s is None else f" --time-limit {self.time_limit_s:g}"
        return (f"selfhood check {mode_dir}/{self.file}.jsonl --model {self.model} "
                f"--consistency {self.consistency}{limit}")


def plan_checks(mode: str, histories: dict[str, list[Op]]) -> list[CheckRun]:
    """Which checks a mode needs: its promise, and the common reference (deduplicated)."""
    runs: list[CheckRun] = []
    for name in CHECK_FILES:
        if not any(op.process != "nemesis" for op in histories.get(name, [])):
            continue
        promise = PROMISE[mode].get(name)
        ref = REFERENCE.get(name)
        if promise is not None:
            runs.append(CheckRun(name, MODEL_OF[name], promise, "promise"))
        if ref is not None and promise != ref:
            runs.append(CheckRun(name, MODEL_OF[name], ref, "reference"))
    return runs


def run_check(c: CheckRun, ops: Sequence[Op], time_limit_s: float | None) -> CheckRun:
    from selfhood.checkers.api import check_history

    t0 = time.perf_counter()
    c.time_limit_s = time_limit_s
    c.result = check_history(ops, model=c.model, consistency=[c.consistency],
                             time_limit_s=time_limit_s)
    c.elapsed_s = time.perf_counter() - t0
    return c


def _is_reference(r: CheckRun, mode: str) -> bool:
    """A reference check, or a promise check that is the reference (planned once)."""
    ref = REFERENCE.get(r.file)
    return r.purpose == "reference" or (ref is not None and PROMISE[mode].get(r.file) == ref)


def _validity(runs: Sequence[CheckRun], purpose: str, mode: str) -> Validity:
    vals = [r.result.valid for r in runs if r.result is not None and (
        _is_reference(r, mode) if purpose == "reference" else r.purpose == purpose)]
    return combine_validity(vals) if vals else "unknown"


def _add_counts(out: dict[str, int], result: CheckResult, counts: Any) -> None:
    """Add a result's anomalies to ``out`` (``counts``: the checker's totals, if it keeps any)."""
    for name, cases in result.anomalies.items():
        n = counts.get(name, len(cases)) if isinstance(counts, dict) else len(cases)
        out[name] = out.get(name, 0) + int(n)


def _elle_counts(result: CheckResult) -> Any:
    """The transactional checker's exact anomaly counts, if it ran (its details are
    under "elle" in a composed result)."""
    elle = result.details.get("elle")
    return elle.get("anomaly_counts") if isinstance(elle, dict) else None


def anomaly_counts(runs: Sequence[CheckRun], mode: str) -> dict[str, int]:
    """Anomalies against the reference model, by checker name (Elle's names for txns)."""
    out: dict[str, int] = {}
    for r in runs:
        if r.result is not None and _is_reference(r, mode):
            _add_counts(out, r.result, _elle_counts(r.result))
    return dict(sorted(out.items()))


def promise_anomaly_counts(runs: Sequence[CheckRun]) -> dict[str, int]:
    """Anomalies against the mode's own promise (why `valid` is false), by checker name."""
    out: dict[str, int] = {}
    for r in runs:
        if r.result is None or r.purpose != "promise":
            continue
        counts: Any = _elle_counts(r.result)
        crdt = r.result.details.get("crdt")
        if isinstance(crdt, dict) and r.consistency == "crdt":
            counts = crdt.get("anomaly_counts")
        _add_counts(out, r.result, counts)
    return dict(sorted(out.items()))


@dataclass(slots=True)
class ModeOutcome:
    """Everything one mode produced: the results.json entry and the files to store."""

    mode: str
    summary: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)


def judge_mode(spec: ExperimentSpec, mode: str, history: list[Op], stats: dict[str, Any], *,
               check_time_limit_s: float | None = 20.0,
               progress: Progress | None = None) -> ModeOutcome:
    """Checks, measurements and identity verdicts for one mode's history."""
    text, sha = history_sha256(history)
    files = {"history.jsonl": text}
    histories = split_history(history)
    for name in CHECK_FILES:
        files[f"{name}.jsonl"] = ops_to_jsonl(histories[name])
    runs = plan_checks(mode, histories)
    for c in runs:
        if progress is not None:
            progress(f"[{mode}] checking {c.file} for {c.consistency} "
                     f"({sum(1 for o in histories[c.file] if o.type == 'invoke')} ops)")
        run_check(c, histories[c.file], check_time_limit_s)
    pairs = pair_ops(history)
    ident = check_identity(history, instances=spec.instance_names, replicas=spec.replica_names,
                           pairs=pairs)
    valid = _validity(runs, "promise", mode)
    summary: dict[str, Any] = {
        "history_sha256": sha,
        "ops": len(history),
        "valid": valid,
        **availability_and_latency(history),
        "anomalies": anomaly_counts(runs, mode),
        "staleness": {k: v for k, v in staleness(history, pairs).items()
                      if k in ("k_max", "t_p99_ms")},
        "identity": ident.summary(),
        "promise": PROMISE_TEXT[mode],
        "reference": REFERENCE_TEXT,
        "reference_valid": _validity(runs, "reference", mode),
        "promise_anomalies": promise_anomaly_counts(runs),
        "checks": [
            {"file": f"{c.file}.jsonl", "model": c.model, "consistency": c.consistency,
             "purpose": c.purpose,
             "valid": c.result.valid if c.result is not None else "unknown",
             "anomalies": sorted(c.result.anomalies) if c.result is not None else [],
             "elapsed_s": round(c.elapsed_s, 3),
             "command": c.command(f"store/latest/{mode}")}
            for c in runs
        ],
        "identity_cases": ident.cases,
        "stats": stats,
    }
    return ModeOutcome(mode, summary, files)


@dataclass(slots=True)
class Experiment:
    """A finished experiment: results.json content and per-mode files."""

    spec: ExperimentSpec
    results: dict[str, Any]
    outcomes: dict[str, ModeOutcome]


def run_experiment(spec: ExperimentSpec, *, progress: Progress | None = None,
                   check_time_limit_s: float | None = 20.0, keep: bool = False) -> Experiment:
    """Run and judge every mode of the spec (no files written; see chaos.store).

    ``spec.runtime`` picks the world: the simulator, or replica processes over
    real Kafka (`chaos.cluster_world`; ``keep`` leaves its cluster up).
    """
    try:
        import selfhood.chaos.sim  # noqa: F401
    except ModuleNotFoundError as exc:  # pragma: no cover - only before the sim lands
        raise ChaosError("the simulator (selfhood.chaos.sim) is not available") from exc
    schedule = schedule_of(spec)
    resolved = _with_schedule(spec, schedule)
    outcomes: dict[str, ModeOutcome] = {}
    t_all = time.perf_counter()
    cluster: dict[str, Any] = {}
    if spec.runtime == "cluster":
        from selfhood.chaos.cluster_world.world import run_cluster

        cluster = run_cluster(spec, schedule, final_heal(schedule, spec.time_limit_s * 1000),
                              keep=keep, progress=progress)
    for mode in spec.modes:
        t0 = time.perf_counter()

        def tick(n: int, vt: int, mode: str = mode) -> None:
            if progress is not None:
                progress(f"[{mode}] {n} history entries, virtual {vt / 1e9:.1f} s")

        if spec.runtime == "cluster":
            res = cluster[mode]
            history, stats, run_s = res.history, dict(res.stats), res.elapsed_s
        else:
            sim = simulate_mode(spec, mode, on_progress=tick)
            history, stats, run_s = sim.history, dict(sim.stats), time.perf_counter() - t0
        outcome = judge_mode(spec, mode, history, stats,
                             check_time_limit_s=check_time_limit_s, progress=progress)
        if spec.runtime == "cluster":
            outcome.summary["failover"] = cluster[mode].failover
            outcome.summary["fingerprints"] = cluster[mode].fingerprints
        outcome.summary["elapsed_s"] = {"simulate": round(run_s, 3),
                                        "total": round(time.perf_counter() - t0 + (
                                            run_s if spec.runtime == "cluster" else 0), 3)}
        outcomes[mode] = outcome
        if progress is not None:
            s = outcome.summary
            progress(f"[{mode}] done: {s['ops']} ops, valid={s['valid']}, "
                     f"availability={s['availability']:.3f} "
                     f"({time.perf_counter() - t0:.1f} s)")
    results = {
        "spec": to_dict(resolved),
        "runtime": spec.runtime,
        "seed": spec.seed,
        "modes": {m: o.summary for m, o in outcomes.items()},
        "elapsed_s": round(time.perf_counter() - t_all, 3),
    }
    return Experiment(resolved, results, outcomes)


def _with_schedule(spec: ExperimentSpec, schedule: tuple[NemesisOp, ...]) -> ExperimentSpec:
    """The spec with its schedule explicit and canonical, so spec.json replays exactly."""
    import msgspec

    return msgspec.structs.replace(spec, schedule=schedule)
