"""The public API's implementation: thin, stable wrappers over the internals.

`selfhood/__init__.py` re-exports these names; everything they call is
private and may move. Every import of the internals happens inside a
function, so `import selfhood` stays cheap and needs no extra.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from selfhood.checkers.history import Op
    from selfhood.checkers.identity import IdentityResult
    from selfhood.checkers.verdict import CheckResult, Validity
    from selfhood.spec import ExperimentSpec


@dataclass(frozen=True, slots=True)
class Run:
    """One experiment's outcome: its spec, results.json and each mode's history.

    Returned by `run_experiment` and `load_run`. `results` is the results.json
    object (docs/run.md); `path` is the run directory when it is stored.
    """

    spec: ExperimentSpec
    results: dict[str, Any]
    histories: dict[str, list[Op]]
    path: Path | None = None
    #: mode -> why its history could not be read (stored runs only)
    missing: dict[str, str] = field(default_factory=dict)

    @property
    def modes(self) -> tuple[str, ...]:
        """The modes that ran, in spec order."""
        return tuple(self.results["modes"])

    def _mode(self, mode: str) -> str:
        from selfhood.errors import SpecError

        if mode not in self.results["modes"]:
            raise SpecError(f"mode {mode!r} did not run; this run has {', '.join(self.modes)}")
        return mode

    def history(self, mode: str) -> list[Op]:
        """The whole history of one mode (what `<mode>/history.jsonl` holds)."""
        from selfhood.errors import ResultsError

        self._mode(mode)
        if mode not in self.histories:
            raise ResultsError(self.missing.get(mode, f"no history for mode {mode!r}"))
        return self.histories[mode]

    def valid(self, mode: str) -> Validity:
        """Whether the mode kept its own promise: True, False or "unknown"."""
        v: Validity = self.results["modes"][self._mode(mode)]["valid"]
        return v

    def identity(self, mode: str) -> IdentityResult:
        """The identity verdicts of one mode, with every example case (from its history)."""
        return check_identity(self.history(mode), instances=self.spec.instance_names,
                              replicas=self.spec.replica_names)


def make_spec(base: ExperimentSpec | str | os.PathLike[str] | Mapping[str, Any] | None = None,
              /, **fields: Any) -> ExperimentSpec:
    """A validated experiment spec: `base` (the default spec if None) with `fields` changed.

    `base` may be a spec, a .json/.toml spec file, or a mapping of spec
    fields. A bad field raises `SpecError` naming it.

    >>> make_spec(modes=("sequential",), time_limit_s=1.0).modes
    ('sequential',)
    """
    import msgspec

    from selfhood.spec import DEFAULT_SPEC, ExperimentSpec, load_spec, spec_from_mapping, to_dict

    if base is None:
        spec = DEFAULT_SPEC
    elif isinstance(base, ExperimentSpec):
        spec = base
    elif isinstance(base, Mapping):
        spec = spec_from_mapping(dict(base), source="spec")
    else:
        spec = load_spec(Path(base))
    if not fields:
        return spec
    data = to_dict(spec)
    data.update({k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()})
    return spec_from_mapping(msgspec.to_builtins(data), source="spec")


def load_spec(path: str | os.PathLike[str]) -> ExperimentSpec:
    """Read a spec file (.json or .toml); `SpecError` names the file, line and field."""
    from selfhood.spec import load_spec as load

    return load(Path(path))


def run_experiment(spec: ExperimentSpec | str | os.PathLike[str] | Mapping[str, Any]
                   | None = None, /, *, store: str | os.PathLike[str] | None = None,
                   progress: Callable[[str], None] | None = None,
                   check_time_limit_s: float | None = 20.0, **fields: Any) -> Run:
    """Run an experiment and judge every mode; store it under `store` if given.

    `spec` is anything `make_spec` takes, and `fields` change it. The
    simulator runtime needs no extra; `runtime="cluster"` needs
    `selfhood[cluster]` and a machine that can run the cluster
    (docs/cluster.md). With `store`, the run is written as `selfhood run`
    writes it (`<store>/<name>/<timestamp>/`, `<store>/latest`), with
    report.md, and `Run.path` names it.

    >>> run = run_experiment(modes=("sequential",), time_limit_s=1.0)  # doctest: +SKIP
    >>> run.identity("sequential").forks                                 # doctest: +SKIP
    0
    """
    from selfhood.chaos.runner import run_experiment as run

    resolved = make_spec(spec, **fields)
    if resolved.seeds is not None:
        from selfhood.errors import SpecError

        raise SpecError("spec field seeds: run_experiment runs one seed; "
                        "call it once per seed (or use `selfhood run --seeds`)")
    if store is not None:
        from selfhood.chaos.store import prepare_store

        prepare_store(Path(store), resolved.name)  # an unwritable store fails before the run
    exp = run(resolved, progress=progress, check_time_limit_s=check_time_limit_s)
    path: Path | None = None
    if store is not None:
        from selfhood.chaos.store import save_run
        from selfhood.report.render import render_markdown

        path = save_run(Path(store), exp.spec, exp.results,
                        {m: o.files for m, o in exp.outcomes.items()},
                        extra={"report.md": lambda _tmp, final: render_markdown(
                            exp.results, run_dir=final)})
    import json

    from selfhood.checkers.formats import parse_jsonl

    # results and histories as a stored run holds them (JSON-shaped), stored or not
    hists = {m: parse_jsonl(o.files["history.jsonl"]) for m, o in exp.outcomes.items()}
    return Run(exp.spec, json.loads(json.dumps(exp.results)), hists, path)


def load_run(path: str | os.PathLike[str]) -> Run:
    """A stored run (`store/latest`, or any run directory `selfhood run` wrote).

    `ResultsError` names the file and field when results.json is damaged; a
    missing or damaged history is noted in `Run.missing` and raised by
    `Run.history` for that mode only.
    """
    from selfhood.errors import ResultsError, SpecError
    from selfhood.report.results import load_run as load
    from selfhood.spec import spec_from_mapping

    d = Path(path)
    data = load(d)
    try:
        spec = spec_from_mapping(data.spec, source=str(d / "results.json") + " spec")
    except SpecError as exc:
        raise ResultsError(str(exc)) from None
    return Run(spec, data.results, data.histories, d, dict(data.missing))


def read_history(path: str | os.PathLike[str], fmt: str = "auto") -> list[Op]:
    """Read a history file: jsonl, a JSON array, EDN or a Jepsen log (`fmt` "auto" sniffs).

    `HistoryError` names the file and line of the first bad entry.
    """
    from selfhood.checkers.formats import read_history as read

    return read(Path(path), fmt)


def _ops(history: Sequence[Op] | str | os.PathLike[str]) -> Sequence[Op]:
    if isinstance(history, (str, os.PathLike)):
        return read_history(history)
    return history


def check_history(history: Sequence[Op] | str | os.PathLike[str], *, model: str,
                  consistency: Sequence[str] | str | None = None,
                  time_limit_s: float | None = None) -> CheckResult:
    """Check a history against a consistency model (what `selfhood check` does).

    `model` says how to read it (list-append, rw-register, register,
    cas-register, set, kafka, ...: docs/checkers.md); `consistency` what to
    check (the model's default if None). `valid` is True, False or
    "unknown" (a time limit never turns into a guess); `anomalies` explains
    each finding in words.

    >>> from selfhood import Op
    >>> h = [Op(0, "invoke", 0, "write", 1), Op(1, "ok", 0, "write", 1),
    ...      Op(2, "invoke", 1, "read", None), Op(3, "ok", 1, "read", 2)]
    >>> check_history(h, model="register").valid
    False
    """
    from selfhood.checkers.api import check_history as check

    return check(_ops(history), model=model, consistency=consistency,
                 time_limit_s=time_limit_s)


def check_identity(history: Sequence[Op] | str | os.PathLike[str], *,
                   instances: Sequence[str] | None = None,
                   replicas: Sequence[str] | None = None) -> IdentityResult:
    """Did each instance stay itself? Forks, forgotten acks, revived rules, torn memory.

    The history uses selfhood's key convention (docs/agents.md): transcript,
    memory and rule keys of each instance. `instances` and `replicas` name
    who should be there (taken from the history if None); each count in the
    result has example cases in `cases`.
    """
    from selfhood.checkers.identity import check_identity as judge

    return judge(_ops(history), instances=instances, replicas=replicas)
