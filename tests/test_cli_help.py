"""`selfhood --help` lists every command without importing one (cli.LazyGroup).

The listing comes from `cli.COMMANDS`; these tests keep it equal to the
commands' own help and check, in a fresh interpreter, that asking for help
does not import the drivers (SQLAlchemy alone took ~0.5 s of every `--help`).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from selfhood.cli import COMMANDS, cli
from selfhood.extras import EXTRA_OF

DRIVERS = ("sqlalchemy", "aiokafka", "asyncpg", "aiohttp")

#: runs the `selfhood` entry point in this interpreter, then reports what it imported
_PROBE = """
import json, sys
from selfhood.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
else:
    code = 0
json.dump({"code": code, "modules": sorted(sys.modules)}, sys.stderr)
"""


def _probe(*args: str) -> tuple[str, dict[str, Any]]:
    p = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True,
                       timeout=120, check=False, cwd=Path(__file__).parent)
    return p.stdout, json.loads(p.stderr)


@pytest.mark.parametrize("args", [("--help",), ("check", "--help")])
def test_help_imports_no_driver(args: tuple[str, ...]) -> None:
    out, got = _probe(*args)
    assert got["code"] == 0 and out.startswith("Usage: selfhood"), out
    loaded = set(got["modules"])
    assert not {m for m in loaded for d in DRIVERS if m == d or m.startswith(d + ".")}
    if args == ("--help",):
        assert not any(m.startswith("selfhood.projections") for m in loaded)
    else:
        assert "selfhood.checkers.cli" in loaded and "--consistency" in out


def test_the_probe_sees_an_import() -> None:
    # the check above could not fail if the probe missed what a command imports
    _, got = _probe("projections", "--help")
    assert got["code"] == 0 and "sqlalchemy" in got["modules"]


def _first_paragraph(cmd: click.Command) -> str:
    return " ".join((cmd.help or "").split("\n\n")[0].split())


def test_each_summary_is_its_command_own_first_paragraph() -> None:
    ctx = click.Context(cli)
    for name, entry in COMMANDS.items():
        cmd = cli.get_command(ctx, name)
        assert cmd is not None, name
        assert entry.summary == _first_paragraph(cmd), name
        assert set(entry.imports) <= set(EXTRA_OF), name


def test_help_lists_every_command_with_its_whole_summary() -> None:
    r = CliRunner().invoke(cli, ["--help"], terminal_width=80)
    assert r.exit_code == 0, r.output
    listing = r.output.split("Commands:\n")[1]
    names = [line.split()[0] for line in listing.splitlines() if not line.startswith(" " * 4)]
    assert names == sorted(COMMANDS)
    flat = " ".join(listing.split())
    for name, entry in COMMANDS.items():
        assert f"{name} {entry.summary}" in flat, name


def test_a_command_whose_driver_is_missing_says_which_extra(
        monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> Any:
        return None if name == "sqlalchemy" else real(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    r = CliRunner().invoke(cli, ["--help"], terminal_width=200)
    lines = {line.split()[0]: line for line in r.output.split("Commands:\n")[1].splitlines()}
    assert any("sqlalchemy" in e.imports for e in COMMANDS.values())
    for name, entry in COMMANDS.items():
        if "sqlalchemy" in entry.imports:
            assert "(needs pip install 'selfhood[sql]'" in lines[name], lines[name]
        else:
            assert entry.summary in lines[name], lines[name]
