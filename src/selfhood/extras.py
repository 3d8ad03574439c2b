"""Optional dependencies: which extra brings which import, and the line that says so.

`pip install selfhood` checks histories and runs the simulator; the drivers
for real services and the HTML reports are extras, so a command that needs
one names it instead of failing with a traceback. `all` installs every
extra; `dev` includes it.
"""

from __future__ import annotations

import importlib.util
from typing import Final

from selfhood.errors import SelfhoodError

#: top-level import name -> the extra that installs it
EXTRA_OF: Final = {
    "aiokafka": "kafka",
    "kafka": "kafka",
    "sqlalchemy": "sql",
    "aiosqlite": "sql",
    "asyncpg": "postgres",
    "aiohttp": "cluster",
    "yaml": "cluster",
    "jsonschema": "cluster",
    "jinja2": "report",
    "markupsafe": "report",
    "matplotlib": "report",
}


class MissingExtra(SelfhoodError):
    """A command needs an optional dependency that is not installed (exit 69)."""


def _line(module: str, extra: str) -> str:
    return (f"this needs the optional dependency {module!r}: "
            f"pip install 'selfhood[{extra}]' (or 'selfhood[all]')")


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """The one-line message for a missing optional dependency, or None if it is not one."""
    root = (exc.name or "").split(".")[0]
    extra = EXTRA_OF.get(root)
    return None if extra is None else _line(root, extra)


def unavailable(module: str) -> str | None:
    """The one-line message if optional dependency `module` is not installed, else
    None (nothing is imported)."""
    if importlib.util.find_spec(module) is not None:
        return None
    return _line(module, EXTRA_OF[module])


def installed(extra: str) -> bool:
    """Whether every import `extra` brings is available (nothing is imported)."""
    return all(importlib.util.find_spec(m) is not None
               for m, e in EXTRA_OF.items() if e == extra and m != "kafka")


def require(extra: str) -> None:
    """Raise MissingExtra naming `extra` unless it is installed (check before long work)."""
    for module, e in EXTRA_OF.items():
        if e == extra and module != "kafka" and importlib.util.find_spec(module) is None:
            raise MissingExtra(_line(module, extra))
