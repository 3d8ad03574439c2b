"""Reading a stored run's results.json (the contract between runs and reports).

Its own module so that `selfhood.report` imports results, never the chaos
harness that produced them, and the harness never imports reports.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from selfhood.errors import ChaosError


def load_results(run_dir: str | Path) -> dict[str, Any]:
    """results.json of a stored run (`run_dir` may be `store/latest`)."""
    p = Path(run_dir) / "results.json"
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ChaosError(f"{p}: cannot read results: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ChaosError(f"{p}:{exc.lineno}: malformed results.json: {exc.msg}") from None
    if not isinstance(data, dict) or "modes" not in data:
        raise ChaosError(f"{p}: not a selfhood results.json (no 'modes')")
    return data
