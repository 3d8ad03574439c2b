"""report.html: one self-contained page per run (inline SVG, inline CSS, no script, no network).

Built from the run directory alone (results.json, spec, each mode's stored
histories), so `selfhood report RUN_DIR` rebuilds it at any time. Jinja2
autoescaping is on for the whole page: conversation text, keys and checker
explanations are data, never markup. The only markup inserted unescaped is
the SVG the figures module builds (and it escapes every label itself).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from markupsafe import Markup

from selfhood.report.analysis import (
    CheckView,
    availability_buckets,
    expected_failure,
    explain_check,
    fault_windows,
    identity_panel,
    op_points,
)
from selfhood.report.render import same_instance_cell
from selfhood.report.results import RunData, load_run

#: what each anomaly means, in one sentence (Elle's and Porcupine's names)
ANOMALY_TEXT: Final = {
    "G0": "write cycle: two transactions' writes interleave (dirty write)",
    "G1a": "aborted read: a read saw a write of a transaction that failed",
    "G1b": "intermediate read: a read saw a value a transaction later overwrote itself",
    "G1c": "circular information flow: transactions each saw the other's writes",
    "G-single": "read skew: a transaction saw part of another's effects and missed the rest",
    "G-single-item": "read skew on one object: a read missed a write that it must follow",
    "G-nonadjacent": "a cycle with non-adjacent anti-dependencies (snapshot isolation allows "
                     "none)",
    "G-nonadjacent-item": "as G-nonadjacent, on single objects",
    "G2": "write skew / anti-dependency cycle: each transaction missed the other's write",
    "G2-item": "anti-dependency cycle on single objects (write skew)",
    "lost-update": "two transactions read the same version and both wrote it: one update "
                   "was lost",
    "incompatible-order": "two reads of one list disagree on the order of its elements: "
                          "different pasts were shown",
    "duplicate-elements": "a list or set read shows an element twice",
    "dirty-update": "a write built on a value from a failed transaction",
    "internal": "a transaction contradicted its own earlier reads or writes",
    "nonlinearizable": "no order that respects real time explains the register's reads",
    "nonsequential": "no order that respects each process's order explains the reads",
    "not-converged": "replicas still disagree after heal and quiescence",
    "lost-ack": "an acknowledged write is missing from the converged state",
    "revived": "a removed element came back (remove-wins violated)",
}
SUFFIX_TEXT: Final = {"-process": " (with the process order of each client)",
                      "-realtime": " (with real-time order)"}


def anomaly_text(name: str) -> str:
    for suffix, extra in SUFFIX_TEXT.items():
        if name.endswith(suffix) and name[: -len(suffix)] in ANOMALY_TEXT:
            return ANOMALY_TEXT[name[: -len(suffix)]] + extra
    return ANOMALY_TEXT.get(name, "see the checker's explanation below")


def valid_text(v: Any) -> str:
    return {True: "valid", False: "INVALID"}.get(v, "unknown") if isinstance(v, bool) \
        else "unknown"


def _command(c: dict[str, Any], mode: str) -> str:
    """The stored command, relative to the run directory (valid wherever the run moves)."""
    cmd = str(c.get("command", ""))
    return cmd.replace(f"store/latest/{mode}/", f"{mode}/", 1)


def _mode_view(run: RunData, mode: str, m: dict[str, Any], check_time_limit_s: float
               ) -> dict[str, Any]:
    from selfhood.checkers.identity import staleness_samples
    from selfhood.report.figures import availability_svg, latency_svg, staleness_svg

    spec = run.spec
    expected = expected_failure(mode, spec)
    view: dict[str, Any] = {
        "name": mode, "m": m, "valid": valid_text(m.get("valid")),
        "valid_raw": m.get("valid"), "expected": expected if m.get("valid") is not True else None,
        "reference_valid": valid_text(m.get("reference_valid")),
        "missing": run.missing.get(mode), "plots": {}, "identity": None, "checks": [],
        "same_cell": same_instance_cell(m),
        "anomaly_rows": [(k, n, anomaly_text(k)) for k, n in (m.get("anomalies") or {}).items()],
        "commands": [{"command": _command(c, mode), "purpose": c.get("purpose"),
                      "valid": valid_text(c.get("valid")), "file": c.get("file"),
                      "consistency": c.get("consistency")} for c in m.get("checks", [])],
    }
    views: list[CheckView] = []
    for c in m.get("checks", []):
        if c.get("valid") is True:
            continue
        ops, why_not = run.derived(mode, str(c["file"]))
        cv = explain_check(c, ops, check_time_limit_s)
        if why_not is not None:
            cv.note = why_not
        cv.command = _command(c, mode)
        views.append(cv)
    view["checks"] = [_check_ctx(cv, mode, expected) for cv in views]
    history = run.histories.get(mode)
    if history is None:
        return view
    points = op_points(history)
    end_s = max([(o.time or 0) / 1e9 for o in history] + [0.001])
    windows = fault_windows(history, spec)
    view["windows"] = windows
    view["plots"] = {
        "latency": Markup(latency_svg(points, windows, end_s, f"{mode}: latency of every op")),
        "availability": Markup(availability_svg(availability_buckets(points, end_s), windows,
                                                end_s, f"{mode}: availability per time bucket")),
        "staleness": Markup(staleness_svg(staleness_samples(history), windows, end_s,
                                          f"{mode}: staleness of transcript reads")),
    }
    view["identity"] = identity_panel(history, spec, expected)
    return view


def _check_ctx(cv: CheckView, mode: str, expected: str | None) -> dict[str, Any]:
    from selfhood.report.figures import cycle_svg, linearization_svg

    why: str | None
    if cv.purpose == "reference" and mode == "eventual":
        why = ("expected: eventual does not promise this; the reference check counts its "
               "anomalies so the modes compare")
    elif cv.purpose == "promise":
        why = expected
    else:
        why = None
    return {"cv": cv, "why": why,
            "anomalies": [(k, anomaly_text(k), v[:5], len(v)) for k, v in cv.anomalies.items()],
            "cycles": [(c, Markup(cycle_svg(c))) for c in cv.cycles],
            "stuck": [(s, Markup(linearization_svg(s))) for s in cv.stuck]}


def _env() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("selfhood.report", "templates"),
        autoescape=True, undefined=jinja2.ChainableUndefined, trim_blocks=True, lstrip_blocks=True)


def _display_dir(d: Path) -> str:
    """`<name>/<timestamp>` under the store; a sweep's seed before publishing: `seed-<n>`."""
    parts = d.resolve().parts[-2:]
    return parts[-1] if parts[0].startswith(".") else "/".join(parts)


def render_page(template: str, **ctx: Any) -> str:
    """Render one of the package's templates (autoescaped; pass SVG as Markup)."""
    return str(_env().get_template(template).render(**ctx))


def render_run_html(run: RunData, *, check_time_limit_s: float = 20.0,
                    shown_as: Path | None = None) -> str:
    """The whole report.html of one run (`shown_as`: the run directory's published name)."""
    results = run.results
    spec = run.spec
    modes = [_mode_view(run, str(mode), m, check_time_limit_s)
             for mode, m in results["modes"].items()]
    return str(_env().get_template("report.html.j2").render(
        title=f"selfhood run {spec.get('name', '?')} (seed {results.get('seed')})",
        run_dir=_display_dir(shown_as or run.run_dir), results=results, spec=spec, modes=modes,
        spec_json=json.dumps(spec, indent=2, sort_keys=True),
        schedule=[s for s in spec.get("schedule") or [] if isinstance(s, dict)],
    ))


def write_report_html(run_dir: str | Path, *, check_time_limit_s: float = 20.0) -> Path:
    """Build RUN_DIR/report.html from the run directory; returns its path."""
    d = Path(run_dir)
    run = load_run(d)
    out = d / "report.html"
    tmp = d / ".report.html.tmp"
    tmp.write_text(render_run_html(run, check_time_limit_s=check_time_limit_s),
                   encoding="utf-8")
    tmp.replace(out)
    return out
