"""Optional dependencies: which extra brings which import, and the line that says so.

`pip install selfhood` checks histories and runs the simulator; the drivers
for real services are extras, so a command that needs one names it instead
of failing with a traceback. `all` installs every extra; `dev` includes it.
"""

from __future__ import annotations

from typing import Final

#: top-level import name -> the extra that installs it
EXTRA_OF: Final = {
    "aiokafka": "kafka",
    "kafka": "kafka",
    "sqlalchemy": "sql",
    "aiosqlite": "sql",
    "asyncpg": "postgres",
    "aiohttp": "cluster",
}


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """The one-line message for a missing optional dependency, or None if it is not one."""
    root = (exc.name or "").split(".")[0]
    extra = EXTRA_OF.get(root)
    if extra is None:
        return None
    return (f"this needs the optional dependency {root!r}: "
            f"pip install 'selfhood[{extra}]' (or 'selfhood[all]')")
