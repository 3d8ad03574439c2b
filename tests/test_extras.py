"""`pip install .` without extras checks every peer history; a missing extra is one line.

A real fresh venv (pip's cache keeps it quick): the core must not need
aiokafka, SQLAlchemy or asyncpg to check histories, and a command that needs
one names the extra to install instead of printing a traceback.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from selfhood.extras import EXTRA_OF

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT.parent / "shared" / "peers"
DRIVER = Path(__file__).resolve().parent / "peer_check_driver.py"


def _run(py: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(py), *args], capture_output=True, text=True, timeout=600,
                          check=False, cwd=DRIVER.parent)


def test_the_bare_install_has_no_driver(bare_python: Path) -> None:
    for module in ("aiokafka", "sqlalchemy", "asyncpg"):
        p = _run(bare_python, "-c", f"import {module}")
        assert p.returncode != 0 and "ModuleNotFoundError" in p.stderr, module


def test_every_peer_history_checks_the_same_without_extras(bare_python: Path) -> None:
    # a generous per-history limit: a loaded CI box must not turn a verdict into "unknown"
    p = _run(bare_python, str(DRIVER), str(PEERS), "120")
    assert p.returncode == 0, p.stderr
    bare = json.loads(p.stdout)
    assert bare["drivers_loaded"] == []
    assert len(bare["results"]) > 300  # porcupine, elle and the suite, every published check
    for r in bare["results"]:
        assert r["got"] in (0, 1, 2), r  # a verdict, never a usage, data or missing-extra error
    # the same checks with every extra installed (this interpreter) give the same verdicts
    full = _run(Path(sys.executable), str(DRIVER), str(PEERS), "120")
    assert full.returncode == 0, full.stderr
    got_full = [(r["path"], r["args"], r["got"]) for r in json.loads(full.stdout)["results"]]
    assert [(r["path"], r["args"], r["got"]) for r in bare["results"]] == got_full
    # and the verdicts are the published ones, bar the few the checkers still get wrong
    agree = sum(r["got"] == r["want"] for r in bare["results"])
    assert agree >= 0.98 * len(bare["results"])


def test_the_bare_install_lists_every_command(bare_python: Path, tmp_path: Path) -> None:
    """`selfhood --help` works without extras; a command whose extra is missing says which."""
    from selfhood.cli import COMMANDS

    p = subprocess.run([str(bare_python), "-m", "selfhood", "--help"], capture_output=True,
                       text=True, timeout=120, check=False, cwd=tmp_path)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    # a command's line, not the wrapped rest of its summary
    lines = {line.split()[0]: line for line in p.stdout.split("Commands:")[1].splitlines()
             if line.startswith("  ") and not line.startswith("   ")}
    assert set(lines) == set(COMMANDS)
    assert "selfhood[sql]" in lines["project"]
    # the listing imports no command: the extras it names are those each module's
    # import really misses here (cli.COMMANDS declares them)
    probe = ("import importlib, json, sys\nmissing = {}\nfor m in sys.argv[1:]:\n"
             "    try:\n        importlib.import_module(m)\n"
             "    except ModuleNotFoundError as exc:\n        missing[m] = exc.name\n"
             "print(json.dumps(missing))")
    modules = sorted({e.target.split(":")[0] for e in COMMANDS.values()})
    q = _run(bare_python, "-c", probe, *modules)
    missing = json.loads(q.stdout)
    assert missing, q.stderr  # the bare install does miss a driver some command imports
    for name, entry in COMMANDS.items():
        gone = missing.get(entry.target.split(":")[0])
        assert (gone is not None) == ("(needs" in lines[name]), lines[name]
        assert gone is None or f"selfhood[{EXTRA_OF[gone]}]" in lines[name], lines[name]


def test_the_bare_install_runs_the_simulator(bare_python: Path, tmp_path: Path) -> None:
    """`selfhood run` works without extras: report.md is written, report.html is named."""
    p = subprocess.run([str(bare_python), "-m", "selfhood", "run", "-q", "--time-limit", "1",
                        "--modes", "sequential"], capture_output=True, text=True, timeout=300,
                       check=False, cwd=tmp_path)
    assert p.returncode in (0, 1, 2) and "Traceback" not in p.stderr, p.stderr
    assert (tmp_path / "store" / "latest" / "report.md").is_file()
    assert "pip install 'selfhood[report]'" in p.stdout


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (["log", "stat", "kafka://127.0.0.1:1/t"], "kafka"),
        (["project", "sqlite:///log.db", "--into", "sqlite:///p.db"], "sql"),
        # a sweep's report is HTML: refused before any seed runs
        (["run", "--seeds", "1-2", "--time-limit", "1", "--store", "p.db"], "report"),
    ],
)
def test_a_command_needing_an_extra_names_it_in_one_line(
        bare_python: Path, tmp_path: Path, args: list[str], extra: str) -> None:
    (tmp_path / "log.db").write_bytes(b"")
    p = subprocess.run([str(bare_python), "-m", "selfhood", *args], capture_output=True,
                       text=True, timeout=120, check=False, cwd=tmp_path)
    assert p.returncode == 69, p.stderr
    assert f"pip install 'selfhood[{extra}]'" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr
    assert not (tmp_path / "p.db").exists()


def test_every_extra_named_exists_in_pyproject() -> None:
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert set(EXTRA_OF.values()) <= set(extras)
    assert "selfhood[all]" in extras["dev"]
    assert {"kafka", "sql", "postgres"} <= set(extras["all"][0][len("selfhood["):-1].split(","))
