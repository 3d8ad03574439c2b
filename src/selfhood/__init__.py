"""selfhood: an event-sourced consistency research testbed.

Does an AI instance stay the same instance when the machine under it is
swapped?  An instance is whatever its events fold into; failover is
rehydration; checkers judge whether the instance that comes back is the same.

The public API is what `__all__` lists (docs/api.md); every other module is
private and may change. Importing this package is cheap: the internals load
when a function first needs them.

    >>> import selfhood
    >>> run = selfhood.run_experiment(modes=("sequential",), time_limit_s=1.0)  # doctest: +SKIP
    >>> run.identity("sequential").forks                                          # doctest: +SKIP
    0
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from selfhood._api import (
    Run,
    check_history,
    check_identity,
    load_run,
    load_spec,
    make_spec,
    read_history,
    run_experiment,
)
from selfhood.errors import (
    CheckerError,
    HistoryError,
    ResultsError,
    SelfhoodError,
    SpecError,
)

if TYPE_CHECKING:
    from selfhood.checkers.history import Op
    from selfhood.checkers.identity import IdentityResult
    from selfhood.checkers.verdict import CheckResult
    from selfhood.spec import ExperimentSpec

__version__ = "0.1.0"

__all__ = [
    "CheckResult",
    "CheckerError",
    "ExperimentSpec",
    "HistoryError",
    "IdentityResult",
    "Op",
    "ResultsError",
    "Run",
    "SelfhoodError",
    "SpecError",
    "__version__",
    "check_history",
    "check_identity",
    "load_run",
    "load_spec",
    "make_spec",
    "read_history",
    "run_experiment",
]

#: public types whose modules load on first use (name -> module)
_LAZY = {
    "Op": "selfhood.checkers.history",
    "IdentityResult": "selfhood.checkers.identity",
    "CheckResult": "selfhood.checkers.verdict",
    "ExperimentSpec": "selfhood.spec",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'selfhood' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
