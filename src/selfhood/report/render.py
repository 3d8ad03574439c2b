"""Summary table and report.md from results.json (pure).

Reports import results, never the other way round: everything here is a
function of the results dict, so `selfhood report` can rebuild any report
from the store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

COLUMNS = ("mode", "valid", "same instance", "avail", "p50 ms", "p99 ms",
           "anomalies (vs reference)", "stale k/t99ms", "converge ms", "identity")


def _valid(v: Any) -> str:
    return {True: "yes", False: "NO"}.get(v, "unknown") if isinstance(v, bool) else str(v)


def _anomalies(a: dict[str, int]) -> str:
    return ", ".join(f"{k}:{n}" for k, n in sorted(a.items())) if a else "none"


def _identity(i: dict[str, Any]) -> str:
    parts = [f"agree {i.get('fingerprints_agree', 0)}/{i.get('instances', 0)}"]
    for key, label in (("forks", "forks"), ("forgotten_acks", "forgotten"),
                       ("revived_rules", "revived"), ("torn_memory", "torn")):
        parts.append(f"{label} {i.get(key, 0)}")
    return ", ".join(parts)


def same_instance_cell(m: dict[str, Any]) -> str:
    """The table's same-instance column from a results.json mode entry (no history needed)."""
    ident: dict[str, Any] = m["identity"] if isinstance(m.get("identity"), dict) else {}
    problems = [f"{ident[k]} {label}" for k, label in (
        ("forks", "forks"), ("forgotten_acks", "forgotten"), ("revived_rules", "revived"),
        ("torn_memory", "torn")) if ident.get(k)]
    if ident.get("fingerprints_agree", 0) != ident.get("instances", 0):
        problems.append(f"{ident.get('instances', 0) - ident.get('fingerprints_agree', 0)} "
                        "diverged")
    return "yes" if not problems else "no: " + ", ".join(problems)


def rows(results: dict[str, Any]) -> list[list[str]]:
    out = []
    for mode, m in results.get("modes", {}).items():
        lat = m.get("latency_ms", {})
        st = m.get("staleness", {})
        ident = m.get("identity", {})
        conv = ident.get("convergence_ms")
        out.append([
            mode, _valid(m.get("valid")), same_instance_cell(m),
            f"{m.get('availability', 0):.3f}",
            f"{lat.get('p50', 0):.1f}", f"{lat.get('p99', 0):.1f}",
            _anomalies(m.get("anomalies", {})),
            f"{st.get('k_max', 0)}/{st.get('t_p99_ms', 0):.0f}",
            "not converged" if conv is None else f"{conv:.0f}",
            _identity(ident),
        ])
    return out


#: Width at which a terminal cell wraps (at ", "), so a mode with many anomaly
#: types still prints as a readable table instead of one 200-column line.
CELL_WIDTH = 44


def _wrap(cell: str, width: int = CELL_WIDTH) -> list[str]:
    lines: list[str] = []
    for part in cell.split(", "):
        if lines and len(lines[-1]) + 2 + len(part) <= width:
            lines[-1] += ", " + part
        else:
            if lines:
                lines[-1] += ","
            lines.append(part)
    return lines or [""]


def render_table(results: dict[str, Any]) -> str:
    """A fixed-width table, one row per mode (what `selfhood run` prints)."""
    body = [[_wrap(c) for c in r] for r in rows(results)]
    widths = [max([len(c), *(len(x) for r in body for x in r[i])]) for i, c in enumerate(COLUMNS)]
    out = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True)).rstrip(),
           "  ".join("-" * w for w in widths)]
    for r in body:
        for k in range(max(len(cell) for cell in r)):
            parts = [(cell[k] if k < len(cell) else "").ljust(w)
                     for cell, w in zip(r, widths, strict=True)]
            out.append("  ".join(parts).rstrip())
    return "\n".join(out + failover_lines(results)) + "\n"


def fingerprint_lines(m: dict[str, Any]) -> list[str]:
    """Cluster runs: each instance's final fingerprint on every replica and in the
    PostgreSQL projection of the run's log (the command that rebuilds it, too)."""
    fp = m.get("fingerprints")
    if not isinstance(fp, dict) or not isinstance(fp.get("instances"), dict):
        return []
    proj = fp.get("projection") or {}
    rows = fp["instances"]
    names = sorted({r for row in rows.values() for r in row.get("replicas", {})})
    out = ["Final fingerprints (first 12 hex digits): replicas and the projection of the log"
           + (f" (`{proj['command']}`)" if proj.get("command") else
              f" (projection failed: {proj.get('error')})" if proj.get("error") else ""),
           "", "| instance | " + " | ".join(names) + " | projection | agree |",
           "|" + "---|" * (len(names) + 3)]
    for inst, row in sorted(rows.items()):
        cells = [str(row["replicas"].get(n) or "-")[:12] for n in names]
        out.append(f"| {inst} | " + " | ".join(cells)
                   + f" | {str(row.get('projection') or '-')[:12]} | "
                   + ("yes" if row.get("agree") else "**no**") + " |")
    return [*out, ""]


def failover_lines(results: dict[str, Any]) -> list[str]:
    """Cluster runs: each mode's failover gap (replica kill -9 to the first acked write)."""
    out = []
    for mode, m in results.get("modes", {}).items():
        f = m.get("failover")
        if not isinstance(f, dict) or not f.get("kills"):
            continue
        rf = f.get("replayed_from", {})
        p50, p99 = f.get("p50_ms"), f.get("p99_ms")
        out.append(f"failover gap {mode}: p50 {'-' if p50 is None else f'{p50:g}'} ms, "
                   f"p99 {'-' if p99 is None else f'{p99:g}'} ms over {f.get('measured')}/"
                   f"{f.get('kills')} kills (session timeout {f.get('session_timeout_ms')} ms; "
                   f"new owners replayed {f.get('replayed_events')} events, "
                   f"{rf.get('start', 0)} from the start, {rf.get('tail', 0)} from their tail)")
    return out


def _md_table(results: dict[str, Any]) -> str:
    out = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    out += ["| " + " | ".join(r) + " |" for r in rows(results)]
    return "\n".join(out) + "\n"


def render_markdown(results: dict[str, Any], *, run_dir: str | Path | None = None) -> str:
    """report.md: the table, what each verdict means, and how to reproduce every check."""
    spec = results.get("spec", {})
    name = spec.get("name", "?")
    lines = [f"# selfhood run `{name}` (seed {results.get('seed')})", ""]
    if run_dir is not None:
        parts = Path(run_dir).resolve().parts[-2:]
        lines += [f"Run: `{'/'.join(parts)}` (under the store root)", ""]
    lines += [
        f"Modes: {', '.join(results.get('modes', {}))}; replicas {spec.get('replicas')}, "
        f"shards {spec.get('shards')}, instances {spec.get('instances')}, "
        f"router {spec.get('router')}, sharded memory {spec.get('sharded_memory')} "
        f"(atomic {spec.get('atomic_memory')}), fencing {spec.get('fencing')}; "
        f"load {spec.get('time_limit_s')} s virtual at {spec.get('rate')} ops/s, "
        f"concurrency {spec.get('concurrency')}; nemesis {', '.join(spec.get('nemesis') or [])}"
        f" ({len(spec.get('schedule') or [])} scheduled nemesis ops).",
        "",
        _md_table(results),
        *[f"- {line}" for line in failover_lines(results)],
        "- **valid**: the mode judged against its own promise. **anomalies**: counted against "
        "the common reference (strong-session-serializable for transactions, sequential for "
        "registers), so rows compare.",
        "- **stale k/t99ms**: most acknowledged turns a read missed, and the p99 of how long "
        "the oldest missed one had been acknowledged.",
        "- **same instance**: yes when no instance forked, forgot an acknowledged turn, revived "
        "a revoked rule or tore its memory, and every replica ends with the same fingerprint.",
        "- **identity**: instances whose replicas end with equal fingerprints; forks "
        "(a transcript read incompatible with a later one); forgotten acknowledged turns; revived "
        "revoked rules; torn memory (a turn visible without its memory write).",
        "",
    ]
    for mode, m in results.get("modes", {}).items():
        lines += [f"## {mode}", "",
                  f"- promise: {m.get('promise')} — valid: **{_valid(m.get('valid'))}**"
                  + (f" ({_anomalies(m['promise_anomalies'])})"
                     if m.get("promise_anomalies") else ""),
                  f"- reference: {m.get('reference')} — valid: "
                  f"{_valid(m.get('reference_valid'))}",
                  f"- ops: {m.get('ops')}, history sha256 `{m.get('history_sha256')}`",
                  "", "Reproduce each verdict with `selfhood check` (exit 0 valid, 1 invalid, "
                  "2 unknown):", "", "```"]
        for c in m.get("checks", []):
            lines.append(f"{c['command']}    # {c['purpose']}: {_valid(c['valid'])}")
        lines += ["```", ""]
        lines += fingerprint_lines(m)
        cases = m.get("identity_cases") or {}
        for kind, examples in cases.items():
            if examples:
                text = str(examples[0])
                text = text if len(text) <= 400 else text[:397] + "..."
                lines.append(f"- first {kind} case: `{text}`")
        if cases:
            lines.append("")
    return "\n".join(lines)
