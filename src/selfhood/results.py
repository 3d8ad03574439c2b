"""Reading a stored run's results.json (the contract between runs and reports).

Its own module so that `selfhood.report` imports results, never the chaos
harness that produced them, and the harness never imports reports. Reports
are rebuilt from the store alone, so a damaged results.json (an empty
`modes`, a string availability, a null latency) gives one line naming the
file and the fields (ResultsError, exit 65), never a traceback from deep in
a template: `validate_results` checks exactly the fields the reports read.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from selfhood.errors import ResultsError

VALIDITY = (True, False, "unknown")
IDENTITY_COUNTS = ("instances", "fingerprints_agree", "forks", "forgotten_acks",
                   "revived_rules", "torn_memory")


def _num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _count(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _show(x: Any) -> str:
    text = json.dumps(x)
    return text if len(text) <= 40 else text[:37] + "..."


def _validate_mode(where: str, m: Any) -> list[str]:
    if not isinstance(m, dict):
        return [f"{where}: expected an object, got {_show(m)}"]
    errs: list[str] = []

    def need(key: str, ok: bool, what: str) -> None:
        if not ok:
            errs.append(f"{where}.{key}: expected {what}, got "
                        f"{_show(m.get(key)) if key in m else 'nothing'}")

    need("valid", m.get("valid") in VALIDITY and "valid" in m, 'true, false or "unknown"')
    av: Any = m.get("availability")
    need("availability", _num(av) and 0 <= float(av) <= 1, "a number in [0, 1]")
    lat = m.get("latency_ms")
    if not isinstance(lat, dict):
        need("latency_ms", False, "an object {p50, p99}")
    else:
        for q in ("p50", "p99"):
            if not (_num(lat.get(q)) and lat[q] >= 0):
                errs.append(f"{where}.latency_ms.{q}: expected a number >= 0, got "
                            f"{_show(lat.get(q)) if q in lat else 'nothing'}")
    an = m.get("anomalies", {})
    if not (isinstance(an, dict) and all(isinstance(k, str) and _count(v) for k, v in an.items())):
        need("anomalies", False, "an object of anomaly name -> count")
    st = m.get("staleness")
    if not (isinstance(st, dict) and _count(st.get("k_max")) and _num(st.get("t_p99_ms"))):
        need("staleness", False, "an object {k_max: count, t_p99_ms: number}")
    ident = m.get("identity")
    if not isinstance(ident, dict):
        need("identity", False, "an object")
    else:
        for k in IDENTITY_COUNTS:
            if not _count(ident.get(k, 0)):
                errs.append(f"{where}.identity.{k}: expected a count, got {_show(ident.get(k))}")
        conv = ident.get("convergence_ms")
        if conv is not None and not _num(conv):
            errs.append(f"{where}.identity.convergence_ms: expected a number or null, got "
                        f"{_show(conv)}")
    checks = m.get("checks", [])
    if not isinstance(checks, list):
        need("checks", False, "a list")
    else:
        for i, c in enumerate(checks):
            if not (isinstance(c, dict) and isinstance(c.get("command"), str)
                    and isinstance(c.get("file"), str) and c.get("valid") in VALIDITY):
                errs.append(f"{where}.checks.{i}: expected {{file, command, valid, ...}}, got "
                            f"{_show(c)}")
    return errs


def validate_results(data: Any, path: str | Path) -> dict[str, Any]:
    """`data` if it is a usable results.json; ResultsError naming every bad field otherwise."""
    if not isinstance(data, dict):
        raise ResultsError(f"{path}: not a selfhood results.json (expected an object)")
    modes = data.get("modes")
    if not isinstance(modes, dict) or not modes:
        raise ResultsError(f"{path}: modes: expected a non-empty object of mode -> results, "
                           f"got {_show(modes) if 'modes' in data else 'nothing'}")
    if not isinstance(data.get("spec", {}), dict):
        raise ResultsError(f"{path}: spec: expected an object, got {_show(data.get('spec'))}")
    errs: list[str] = []
    for name, m in modes.items():
        errs += _validate_mode(f"modes.{name}", m)
    if errs:
        more = f" (and {len(errs) - 3} more)" if len(errs) > 3 else ""
        raise ResultsError(f"{path}: " + "; ".join(errs[:3]) + more)
    return data


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ResultsError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        line = getattr(exc, "lineno", None)
        raise ResultsError(f"{path}:{line or 1}: malformed JSON: "
                           f"{getattr(exc, 'msg', exc)}") from None


def load_results(run_dir: str | Path) -> dict[str, Any]:
    """The validated results.json of a stored run (`run_dir` may be `store/latest`)."""
    p = Path(run_dir) / "results.json"
    if not p.is_file():
        raise ResultsError(f"{run_dir}: not a run directory (no results.json)")
    return validate_results(read_json(p), p)
