"""`selfhood study`'s questions, its configurations, and its answers from the numbers.

1. Can an instance's identity be partitioned across sharded memory without
   coherence loss? Memory on the transcript's partition vs sharded memory
   with atomic cross-partition writes vs without, per mode, under faults.
2. Does identity need sequential consistency, or does eventual suffice?
   Both modes under each fault alone: partition, crash/failover, pause,
   clock skew, rebalance (and none, as the baseline).

Each configuration is a sweep over the same seeds (a sweep directory with
every seed's run; the harness side is `selfhood.chaos.study_cli`), so each
answer rests on means and 95 % intervals, and study.md / study.html say
which numbers back which sentence. The answers
are computed from the numbers, never written in advance: a different
simulator (or the cluster runtime) can give different answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from selfhood.report.stats import Estimate, welch
from selfhood.report.sweep import ModeAggregate, aggregate, load_sample

#: question 2's faults, each alone ("none" is the baseline)
FAULTS: Final = ("none", "partition", "crash", "pause", "skew", "rebalance")
#: question 1's memory layouts: (name, sharded_memory, atomic_memory)
MEMORY: Final = (("unsharded", False, True), ("sharded-atomic", True, True),
                 ("sharded-non-atomic", True, False))
MODES: Final = ("sequential", "eventual")


@dataclass(slots=True)
class Config:
    name: str
    question: int
    label: str
    changes: dict[str, Any]


def configs() -> list[Config]:
    out = [Config(f"memory-{n}", 1, n, {"sharded_memory": s, "atomic_memory": a,
                                        "nemesis": ("partition", "crash")})
           for n, s, a in MEMORY]
    out += [Config(f"fault-{f}", 2, f, {"nemesis": () if f == "none" else (f,)})
            for f in FAULTS]
    return out


def _rate(a: ModeAggregate, n: int) -> str:
    return f"{n}/{a.runs}"


def _est(e: Estimate, fmt: str = ".2f") -> str:
    return e.show(fmt)


def answer_memory(aggs: dict[str, dict[str, ModeAggregate]]) -> tuple[str, list[str]]:
    """Question 1's answer and the evidence lines, from the memory sweeps."""
    lines = []
    for label in ("unsharded", "sharded-atomic", "sharded-non-atomic"):
        for mode in MODES:
            a = aggs[label][mode]
            lines.append(f"{label}, {mode}: same instance {_rate(a, a.same)}, torn memory "
                         f"{_est(a.metrics['torn'])} per run, promise kept "
                         f"{_rate(a, a.valid)}, availability "
                         f"{_est(a.metrics['availability'], '.3f')}")
    seq = {k: aggs[k]["sequential"] for k in aggs}
    atomic_ok = seq["sharded-atomic"].metrics["torn"].mean == 0 and \
        seq["sharded-atomic"].same == seq["sharded-atomic"].runs
    non_atomic_torn = seq["sharded-non-atomic"].metrics["torn"].mean > 0
    if atomic_ok and non_atomic_torn:
        text = ("Yes, but only with atomic cross-partition writes. Under sequential "
                "consistency, sharded memory written atomically kept every instance the same "
                f"in {_rate(seq['sharded-atomic'], seq['sharded-atomic'].same)} runs with no "
                "torn memory; without atomicity, turns and their memory writes land apart "
                f"(torn memory {_est(seq['sharded-non-atomic'].metrics['torn'])} per run, same "
                f"instance in {_rate(seq['sharded-non-atomic'], seq['sharded-non-atomic'].same)}"
                " runs): identity split across shards loses coherence.")
    elif atomic_ok:
        text = ("Sharded memory kept identity in these runs with or without atomic writes: "
                "no torn memory was observed even without atomicity (the faults may not have "
                "split a turn from its memory write; more seeds or longer runs may).")
    else:
        text = ("Not even with atomic writes in these runs: sequential with atomic sharded "
                f"memory was the same instance in only "
                f"{_rate(seq['sharded-atomic'], seq['sharded-atomic'].same)} runs (torn memory "
                f"{_est(seq['sharded-atomic'].metrics['torn'])}).")
    return text, lines


def _name(fault: str) -> str:
    return "no fault" if fault == "none" else fault


def answer_modes(aggs: dict[str, dict[str, ModeAggregate]]) -> tuple[str, list[str]]:
    """Question 2's answer and the evidence lines, from the per-fault sweeps."""
    lines = []
    eventual_fails: list[str] = []
    eventual_holds: list[str] = []
    seq_fails: list[str] = []
    for fault in FAULTS:
        s, e = aggs[fault]["sequential"], aggs[fault]["eventual"]
        d = welch(s.metrics["availability"], e.metrics["availability"])
        lines.append(
            f"{_name(fault)}: same instance sequential {_rate(s, s.same)} vs eventual "
            f"{_rate(e, e.same)}; eventual forks {_est(e.metrics['forks'], '.1f')}, forgotten "
            f"acks {_est(e.metrics['forgotten'], '.1f')}, revived rules "
            f"{_est(e.metrics['revived'], '.1f')}, converged {_rate(e, e.converged)}; "
            f"availability sequential {_est(s.metrics['availability'], '.3f')} vs eventual "
            f"{_est(e.metrics['availability'], '.3f')} (eventual - sequential "
            f"{d.show('.3f')})")
        (eventual_holds if e.same == e.runs else eventual_fails).append(fault)
        if s.same < s.runs:
            seq_fails.append(fault)
    parts = []
    if eventual_fails:
        kept = all(aggs[f]["eventual"].converged == aggs[f]["eventual"].runs
                   and aggs[f]["eventual"].valid == aggs[f]["eventual"].runs
                   for f in eventual_fails)
        parts.append("Eventual does not suffice: under " + ", ".join(map(_name, eventual_fails))
                     + " it showed different pasts to different readers (forks) or forgot "
                     "acknowledged turns in some runs"
                     + (", even though it converged and kept its own promise in every run."
                        if kept else "."))
    if eventual_holds:
        parts.append("Eventual kept identity in every run under "
                     + ", ".join(map(_name, eventual_holds)) + ".")
    if seq_fails:
        parts.append("Sequential did not keep identity in every run under "
                     + ", ".join(map(_name, seq_fails)) + " (see the evidence).")
    else:
        parts.append("Sequential kept every instance the same under every fault.")
    costly = []
    for f in FAULTS:
        d = welch(aggs[f]["sequential"].metrics["availability"],
                  aggs[f]["eventual"].metrics["availability"])
        if d.differs and d.diff > 0:
            costly.append(_name(f))
    if costly:
        parts.append("What sequential pays is availability: clearly lower than eventual's under "
                     + ", ".join(costly) + " (95 % intervals of the difference exclude zero), "
                     "with no clear difference under the other faults.")
    else:
        parts.append("Its availability cost was not clearly different from zero under any "
                     "fault with these seeds.")
    return " ".join(parts), lines


def _bar_data(aggs: dict[str, dict[str, ModeAggregate]], keys: list[str], metric: str
              ) -> dict[str, list[tuple[float, float, float]]]:
    out: dict[str, list[tuple[float, float, float]]] = {}
    for mode in MODES:
        vals = []
        for k in keys:
            a = aggs[k][mode]
            if metric == "same":
                r = a.same / a.runs if a.runs else 0.0
                vals.append((r, r, r))
            else:
                e = a.metrics[metric]
                vals.append((e.mean, e.lo, e.hi))
        out[mode] = vals
    return out


def write_study(d: Path, seeds: tuple[int, ...], runtime: str, elapsed_s: float) -> Path:
    """study.md and study.html from the configuration sweeps under `d`; returns the HTML."""
    from markupsafe import Markup

    from selfhood.report.figures import bars_svg
    from selfhood.report.html import render_page

    mem: dict[str, dict[str, ModeAggregate]] = {}
    flt: dict[str, dict[str, ModeAggregate]] = {}
    for c in configs():
        aggs = {a.mode: a for a in aggregate(load_sample(d / c.name))}
        (mem if c.question == 1 else flt)[c.label] = aggs
    a1, ev1 = answer_memory(mem)
    a2, ev2 = answer_modes(flt)
    mem_keys = [n for n, _, _ in MEMORY]
    plots = {
        "q1-torn": bars_svg(mem_keys, _bar_data(mem, mem_keys, "torn"), "torn memory reads",
                            "Q1: torn memory per run (mean, 95 % interval)"),
        "q1-same": bars_svg(mem_keys, _bar_data(mem, mem_keys, "same"), "share of runs",
                            "Q1: share of runs where every instance stayed the same"),
        "q2-same": bars_svg(list(FAULTS), _bar_data(flt, list(FAULTS), "same"),
                            "share of runs", "Q2: share of runs where every instance stayed "
                            "the same, by fault"),
        "q2-forks": bars_svg(list(FAULTS), _bar_data(flt, list(FAULTS), "forks"), "forks",
                             "Q2: forks per run (mean, 95 % interval), by fault"),
        "q2-avail": bars_svg(list(FAULTS), _bar_data(flt, list(FAULTS), "availability"),
                             "availability", "Q2: availability (mean, 95 % interval), by fault"),
    }
    seeds_text = f"{seeds[0]}-{seeds[-1]}" if list(seeds) == list(
        range(seeds[0], seeds[-1] + 1)) and len(seeds) > 1 else ", ".join(map(str, seeds))
    md = [f"# selfhood study ({runtime}, seeds {seeds_text})", "",
          f"{len(configs())} configurations × {len(seeds)} seeds × {len(MODES)} modes, "
          f"{elapsed_s:.0f} s. Each configuration is a sweep directory beside this file; "
          "every number is a mean ± the half-width of its 95 % interval over seeds.", "",
          "## 1. Can an instance's identity be partitioned across sharded memory without "
          "coherence loss?", "", f"**Answer.** {a1}", "", "Evidence (faults: partition, "
          "crash):", "", *[f"- {x}" for x in ev1], "",
          "## 2. Does identity need sequential consistency, or does eventual suffice?", "",
          f"**Answer.** {a2}", "", "Evidence, by fault:", "", *[f"- {x}" for x in ev2], "",
          "Sweeps: " + ", ".join(f"`{c.name}/`" for c in configs()), ""]
    (d / "study.md").write_text("\n".join(md), encoding="utf-8")
    html = render_page("study.html.j2", title=f"selfhood study ({runtime}, seeds {seeds_text})",
                       a1=a1, a2=a2, ev1=ev1, ev2=ev2, configs=configs(),
                       plots={k: Markup(v) for k, v in plots.items()},
                       seeds=seeds_text, runtime=runtime, elapsed=f"{elapsed_s:.0f}")
    out = d / "study.html"
    out.write_text(html, encoding="utf-8")
    return out


def rebuild_study(d: Path) -> Path:
    """study.md and study.html again from a stored study directory (its study.json)."""
    from selfhood.errors import ResultsError
    from selfhood.results import read_json

    p = d / "study.json"
    data = read_json(p)
    seeds = data.get("seeds") if isinstance(data, dict) else None
    if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) for s in seeds)):
        raise ResultsError(f"{p}: seeds: expected a non-empty list of seeds")
    elapsed = data.get("elapsed_s", 0.0)
    return write_study(d, tuple(seeds), str(data.get("runtime", "sim")),
                       float(elapsed) if isinstance(elapsed, (int, float)) else 0.0)
