"""Sweep reports and `selfhood compare`: per mode, means and 95 % intervals over seeds.

Input is a sweep directory's sweep.json (written by `selfhood.chaos.sweep`)
or a single run's results.json (a sweep of one seed), so `compare` takes
either. Each metric is one sample per seed; see `selfhood.report.stats`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from markupsafe import Markup

from selfhood.errors import ResultsError
from selfhood.report.stats import Estimate, mean_ci, welch
from selfhood.results import load_results, read_json, validate_results

Getter = Callable[[dict[str, Any]], float | None]


def _ident(k: str) -> Getter:
    return lambda m: float(m.get("identity", {}).get(k, 0))


def _conv(m: dict[str, Any]) -> float | None:
    c = m.get("identity", {}).get("convergence_ms")
    return None if c is None else float(c)


#: (key, label, format, getter): the metrics a sweep reports per mode
METRICS: Final[tuple[tuple[str, str, str, Getter], ...]] = (
    ("availability", "availability", ".3f", lambda m: float(m["availability"])),
    ("p50", "latency p50 ms", ".1f", lambda m: float(m["latency_ms"]["p50"])),
    ("p99", "latency p99 ms", ".1f", lambda m: float(m["latency_ms"]["p99"])),
    ("anomalies", "anomalies vs reference", ".1f",
     lambda m: float(sum((m.get("anomalies") or {}).values()))),
    ("forks", "forks", ".1f", _ident("forks")),
    ("forgotten", "forgotten acks", ".1f", _ident("forgotten_acks")),
    ("torn", "torn memory", ".1f", _ident("torn_memory")),
    ("revived", "revived rules", ".1f", _ident("revived_rules")),
    ("stale_k", "staleness k max", ".1f", lambda m: float(m["staleness"]["k_max"])),
    ("stale_t99", "staleness t p99 ms", ".0f", lambda m: float(m["staleness"]["t_p99_ms"])),
    ("converge", "convergence ms (converged runs)", ".0f", _conv),
)


def same_instance(m: dict[str, Any]) -> bool:
    ident = m.get("identity") or {}
    return bool(ident.get("converged")) and not any(
        ident.get(k) for k in ("forks", "forgotten_acks", "revived_rules", "torn_memory"))


@dataclass(slots=True)
class ModeAggregate:
    mode: str
    runs: int
    valid: int
    invalid: int
    unknown: int
    same: int
    converged: int
    metrics: dict[str, Estimate]


@dataclass(slots=True)
class Sample:
    """A run or a sweep, as per-seed results per mode."""

    path: Path
    name: str
    spec: dict[str, Any]
    seeds: list[Any]
    runs: list[dict[str, Any]]  # each {"modes": {mode: results}}
    sweep: dict[str, Any] | None = None

    @property
    def modes(self) -> list[str]:
        seen: dict[str, None] = {}
        for r in self.runs:
            seen.update(dict.fromkeys(r["modes"]))
        return list(seen)


def load_sample(path: str | Path) -> Sample:
    """A sweep directory (sweep.json) or a run directory (results.json)."""
    p = Path(path)
    sj = p / "sweep.json"
    if sj.is_file():
        data = read_json(sj)
        if not isinstance(data, dict) or not isinstance(data.get("runs"), dict) \
                or not data["runs"]:
            raise ResultsError(f"{sj}: runs: expected a non-empty object of seed -> results")
        runs = []
        for seed, r in data["runs"].items():
            validate_results(r, f"{sj} (runs.{seed})")
            runs.append(r)
        spec = data.get("spec") if isinstance(data.get("spec"), dict) else {}
        assert isinstance(spec, dict)
        return Sample(p, str(spec.get("name", p.name)), spec, list(data["runs"]), runs, data)
    res = load_results(p)
    spec = res.get("spec") or {}
    return Sample(p, str(spec.get("name", p.name)), spec, [res.get("seed")], [res])


def aggregate(sample: Sample) -> list[ModeAggregate]:
    out = []
    for mode in sample.modes:
        ms = [r["modes"][mode] for r in sample.runs if mode in r["modes"]]
        metrics = {}
        for key, _, _, get in METRICS:
            xs = [x for x in (get(m) for m in ms) if x is not None and math.isfinite(x)]
            metrics[key] = mean_ci(xs)
        out.append(ModeAggregate(
            mode, len(ms), sum(1 for m in ms if m.get("valid") is True),
            sum(1 for m in ms if m.get("valid") is False),
            sum(1 for m in ms if m.get("valid") not in (True, False)),
            sum(1 for m in ms if same_instance(m)),
            sum(1 for m in ms if (m.get("identity") or {}).get("converged")), metrics))
    return out


def _rows(aggs: Sequence[ModeAggregate]) -> tuple[list[str], list[list[str]]]:
    head = ["mode", "runs", "promise kept", "same instance", "converged"]
    head += [label for _, label, _, _ in METRICS]
    rows = []
    for a in aggs:
        row = [a.mode, str(a.runs),
               f"{a.valid}/{a.runs}" + (f" ({a.unknown} unknown)" if a.unknown else ""),
               f"{a.same}/{a.runs}", f"{a.converged}/{a.runs}"]
        row += [a.metrics[key].show(fmt) for key, _, fmt, _ in METRICS]
        rows.append(row)
    return head, rows


def render_sweep_table(sample: Sample) -> str:
    """Metrics down, modes across: `mean ± 95 % half-interval` per cell (the terminal view)."""
    head, rows = _rows(aggregate(sample))
    cols = [[h, *(r[i] for r in rows)] for i, h in enumerate(head)]
    widths = [max(len(c[k]) for c in cols) for k in range(len(rows) + 1)]
    out = [f"sweep {sample.name}: {len(sample.runs)} seeds ({_seed_text(sample.seeds)}); "
           "each cell: mean ± half-width of the 95 % interval over seeds", ""]
    for n, c in enumerate(cols):
        out.append("  ".join(x.ljust(w) for x, w in zip(c, widths, strict=True)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out) + "\n"


def _seed_text(seeds: Sequence[Any]) -> str:
    ints = [s for s in seeds if isinstance(s, int) or (isinstance(s, str) and s.isdigit())]
    if len(ints) == len(seeds) and seeds:
        v = sorted(int(s) for s in ints)
        if v == list(range(v[0], v[-1] + 1)) and len(v) > 2:
            return f"{v[0]}-{v[-1]}"
    return ", ".join(str(s) for s in seeds)


def render_sweep_markdown(sample: Sample) -> str:
    head, rows = _rows(aggregate(sample))
    lines = [f"# selfhood sweep `{sample.name}` — seeds {_seed_text(sample.seeds)}", "",
             "Each cell: mean ± half-width of the 95 % Student-t interval over seeds "
             "(one sample per seed).", "",
             "| metric | " + " | ".join(r[0] for r in rows) + " |",
             "|---|" + "---|" * len(rows)]
    for i, h in enumerate(head[1:], start=1):
        lines.append(f"| {h} | " + " | ".join(r[i] for r in rows) + " |")
    lines += ["", "Seed runs (each a full run directory): "
              + ", ".join(f"`seed-{s}`" for s in sample.seeds), ""]
    return "\n".join(lines)


def render_compare(a: Sample, b: Sample) -> str:
    """Text table: per mode and metric, A and B with intervals, and B - A (Welch 95 %)."""
    aa = {x.mode: x for x in aggregate(a)}
    bb = {x.mode: x for x in aggregate(b)}
    out = [f"A: {a.path} ({a.name}, {len(a.runs)} run(s))",
           f"B: {b.path} ({b.name}, {len(b.runs)} run(s))"]
    for mode in [m for m in aa if m in bb]:
        x, y = aa[mode], bb[mode]
        out += ["", f"{mode}: promise kept A {x.valid}/{x.runs}, B {y.valid}/{y.runs}; "
                    f"same instance A {x.same}/{x.runs}, B {y.same}/{y.runs}"]
        width = max(len(label) for _, label, _, _ in METRICS)
        for key, label, fmt, _ in METRICS:
            ea, eb = x.metrics[key], y.metrics[key]
            diff = welch(ea, eb).show(fmt) if ea.n and eb.n else "-"
            out.append(f"  {label.ljust(width)}  A {ea.show(fmt):<22} B {eb.show(fmt):<22} "
                       f"B-A {diff}")
    only = sorted(set(aa) ^ set(bb))
    if only:
        out += ["", f"modes in only one of them: {', '.join(only)}"]
    return "\n".join(out) + "\n"


def compare_rows(a: Sample, b: Sample) -> list[dict[str, Any]]:
    """The comparison as data (for the run browser)."""
    aa = {x.mode: x for x in aggregate(a)}
    bb = {x.mode: x for x in aggregate(b)}
    rows = []
    for mode in [m for m in aa if m in bb]:
        for key, label, fmt, _ in METRICS:
            ea, eb = aa[mode].metrics[key], bb[mode].metrics[key]
            d = welch(ea, eb) if ea.n and eb.n else None
            rows.append({"mode": mode, "metric": label, "a": ea.show(fmt), "b": eb.show(fmt),
                         "diff": d.show(fmt) if d else "-",
                         "differs": bool(d and d.differs)})
    return rows


def write_sweep_report(sweep_dir: str | Path) -> Path:
    """sweep.md and report.html of a sweep directory; returns the HTML path."""
    from selfhood.report.figures import bars_svg
    from selfhood.report.html import render_page

    d = Path(sweep_dir)
    sample = load_sample(d)
    (d / "sweep.md").write_text(render_sweep_markdown(sample), encoding="utf-8")
    aggs = aggregate(sample)
    head, rows = _rows(aggs)
    plots = {}
    for key, label in (("availability", "availability"), ("forks", "forks"),
                       ("p99", "latency p99 ms")):
        e = [aggs_i.metrics[key] for aggs_i in aggs]
        plots[key] = Markup(bars_svg([a.mode for a in aggs],
                              {label: [(x.mean, x.lo, x.hi) for x in e]}, label,
                              f"{label}: mean and 95 % interval over {len(sample.runs)} seeds"))
    per_seed = []
    for seed, r in zip(sample.seeds, sample.runs, strict=True):
        per_seed.append({"seed": seed, "dir": f"seed-{seed}", "modes": {
            mode: {"valid": m.get("valid"), "availability": m.get("availability"),
                   "same": same_instance(m)} for mode, m in r["modes"].items()}})
    html = render_page("sweep.html.j2", title=f"selfhood sweep {sample.name}",
                       sample=sample, head=head, rows=rows, plots=plots, per_seed=per_seed,
                       seeds=_seed_text(sample.seeds),
                       spec_json=json.dumps(sample.spec, indent=2, sort_keys=True))
    out = d / "report.html"
    out.write_text(html, encoding="utf-8")
    return out
