"""Run `selfhood check` on every peer history in place; print one JSON summary.

Run by tests/test_extras.py with the python of a venv that has `pip install .`
and no extras, so it proves the core checks histories without the drivers.
Each check goes through the real entry point (`selfhood.cli.main`) in this
process: starting one interpreter per history would cost minutes.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import sys
from pathlib import Path

from selfhood.cli import main

EXIT_OF = {True: 0, False: 1}


def checks(peers: Path) -> list[tuple[str, list[str], int]]:
    """(history path, selfhood check arguments, expected exit code) for every published verdict."""
    out: list[tuple[str, list[str], int]] = []
    with (peers / "porcupine" / "expected.tsv").open() as f:
        for row in csv.reader(f, delimiter="\t"):
            if len(row) < 2 or row[1] not in ("true", "false"):
                continue
            model = "kv" if row[0].startswith("kv/") else "cas-register"
            out.append((str(peers / "porcupine" / row[0]), ["--model", model],
                        EXIT_OF[row[1] == "true"]))
    elle = peers / "elle"
    out += [
        (str(elle / "si-without-g-single.edn"),
         ["--model", "list-append", "--consistency", "snapshot-isolation"], 0),
        (str(elle / "si-without-g-single.edn"),
         ["--model", "list-append", "--consistency", "repeatable-read"], 1),
        (str(elle / "paper-example.edn"),
         ["--model", "list-append", "--consistency", "serializable"], 1),
        (str(elle / "huge-scc.edn"), ["--model", "list-append"], 1),
    ]
    suite = json.loads((peers / "suite" / "expected.json").read_text())
    for h in suite["histories"]:
        for c in h["checks"]:
            args = ["--model", h["model"], "--format", h["format"]]
            if c.get("consistency"):
                args += ["--consistency", c["consistency"]]
            out.append((str(peers / "suite" / h["path"]), args, EXIT_OF[c["valid"]]))
    return out


def run(peers: Path, time_limit_s: float) -> dict[str, object]:
    results: list[dict[str, object]] = []
    for path, args, want in checks(peers):
        err = io.StringIO()
        code = 0
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            try:
                main(["check", path, *args, "--time-limit", str(time_limit_s)])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
        results.append({"path": path, "args": args, "want": want, "got": code,
                        "stderr": err.getvalue()[-300:]})
    loaded = sorted(m for m in ("aiokafka", "sqlalchemy", "asyncpg", "aiosqlite")
                    if m in sys.modules)
    return {"results": results, "drivers_loaded": loaded}


if __name__ == "__main__":
    print(json.dumps(run(Path(sys.argv[1]), float(sys.argv[2]))))
