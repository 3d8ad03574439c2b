"""Exit codes like Jepsen's, and `--expect` (pure).

`selfhood run` exits 1 when any mode broke its own promise (`valid` false,
in any seed of a sweep), 2 when a verdict is unknown and none is false, 0
otherwise. `--expect "sequential valid, eventual converges"` replaces that
rule with the script's own: exit 0 when every expectation holds in every
seed, 1 when one fails, 2 when one cannot be decided (it asks about a
verdict that is unknown).

An expectation is `MODE [not] PROPERTY`; the properties:

- `valid`, `invalid`, `unknown`: the mode's verdict against its own promise;
- `converges`: every instance's replicas end with one fingerprint;
- `same-instance`: no fork, forgotten ack, revived rule or torn memory, and
  converged (the report's "same instance: yes");
- `forks`, `forgets`, `tears`: at least one fork / forgotten acknowledged
  turn / torn memory read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from selfhood.errors import SpecError

PROPERTIES: Final = ("valid", "invalid", "unknown", "converges", "same-instance", "forks",
                     "forgets", "tears")
EXIT_OK: Final = 0
EXIT_INVALID: Final = 1
EXIT_UNKNOWN: Final = 2


@dataclass(frozen=True, slots=True)
class Expectation:
    mode: str
    prop: str
    negated: bool = False

    def __str__(self) -> str:
        return f"{self.mode} {'not ' if self.negated else ''}{self.prop}"


def parse_expect(text: str, modes: Sequence[str]) -> list[Expectation]:
    """`"sequential valid, eventual not same-instance"` -> expectations (SpecError naming
    the clause when a mode was not run or a property is unknown)."""
    out: list[Expectation] = []
    for n, clause in enumerate(c.strip() for c in text.split(",")):
        words = clause.split()
        if not words:
            raise SpecError(f"option --expect: clause {n + 1} is empty")
        negated = len(words) == 3 and words[1] == "not"
        if len(words) != (3 if negated else 2):
            raise SpecError(f"option --expect: {clause!r}: expected 'MODE [not] PROPERTY'")
        mode, prop = words[0], words[-1]
        if mode not in modes:
            raise SpecError(f"option --expect: {clause!r}: mode {mode!r} is not in this run "
                            f"({', '.join(modes)})")
        if prop not in PROPERTIES:
            raise SpecError(f"option --expect: {clause!r}: unknown property {prop!r} "
                            f"(choose from {', '.join(PROPERTIES)})")
        out.append(Expectation(mode, prop, negated))
    return out


def _holds(e: Expectation, m: dict[str, Any]) -> bool | None:
    """Whether an expectation holds for one mode's results (None: undecidable)."""
    valid = m.get("valid")
    ident = m.get("identity") if isinstance(m.get("identity"), dict) else {}
    assert isinstance(ident, dict)
    value: bool | None
    if e.prop in ("valid", "invalid"):
        value = None if valid not in (True, False) else (valid is (e.prop == "valid"))
    elif e.prop == "unknown":
        value = valid not in (True, False)
    elif e.prop == "converges":
        value = bool(ident.get("converged"))
    elif e.prop == "same-instance":
        value = bool(ident.get("converged")) and not any(
            ident.get(k) for k in ("forks", "forgotten_acks", "revived_rules", "torn_memory"))
    else:
        key = {"forks": "forks", "forgets": "forgotten_acks", "tears": "torn_memory"}[e.prop]
        value = bool(ident.get(key))
    if value is None:
        return None
    return not value if e.negated else value


def verdict_exit(runs: Sequence[dict[str, Any]]) -> int:
    """1 if any mode of any run broke its promise, else 2 if any is unknown, else 0."""
    vals = [m.get("valid") for r in runs for m in (r.get("modes") or {}).values()]
    if any(v is False for v in vals):
        return EXIT_INVALID
    if any(v is not True for v in vals):
        return EXIT_UNKNOWN
    return EXIT_OK


def check_expectations(expectations: Sequence[Expectation], runs: Sequence[dict[str, Any]]
                       ) -> tuple[int, list[str]]:
    """(exit code, one line per expectation) over every run (seed) given."""
    lines: list[str] = []
    code = EXIT_OK
    for e in expectations:
        results = [_holds(e, r["modes"][e.mode]) for r in runs if e.mode in r.get("modes", {})]
        failed = sum(1 for x in results if x is False)
        undecided = sum(1 for x in results if x is None)
        if failed:
            code = EXIT_INVALID
            lines.append(f"expectation failed: {e} (false in {failed} of {len(results)} runs)")
        elif undecided:
            code = max(code, EXIT_UNKNOWN) if code != EXIT_INVALID else code
            lines.append(f"expectation undecided: {e} (verdict unknown in {undecided} of "
                         f"{len(results)} runs)")
        else:
            lines.append(f"expectation holds: {e}")
    return code, lines
