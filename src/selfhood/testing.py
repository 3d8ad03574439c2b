"""Assertions for test suites that fail with an explanation, not a JSON dump (pure).

Each helper raises `AssertionError` whose message says what went wrong in
words: the first fork (which two reads, on which replicas, where their
pasts part), the forgotten turn, the revived rule, the anomaly and its
cycle. The pytest plugin (`selfhood.pytest_plugin`) exposes them, but they
need no pytest: any test runner that reports `AssertionError` works.

    from selfhood.testing import assert_same_instance, assert_valid

    assert_valid(history, model="list-append")
    assert_same_instance(run, "sequential")
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from selfhood._api import Run
    from selfhood.checkers.history import Op
    from selfhood.checkers.identity import IdentityResult
    from selfhood.checkers.verdict import CheckResult

__all__ = [
    "assert_converged",
    "assert_kept_promise",
    "assert_same_instance",
    "assert_valid",
    "explain_check",
    "explain_identity",
]

#: explanations shown per anomaly kind (the rest are counted, not listed)
SHOWN: Final = 2
#: longest explanation line kept
WIDTH: Final = 400


def _clip(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= WIDTH else text[:WIDTH - 3] + "..."


def _tail(xs: Any) -> str:
    items = list(xs) if isinstance(xs, (list, tuple)) else [xs]
    return "[" + ", ".join(repr(x) for x in items) + "]"


def explain_check(result: CheckResult, *, what: str = "history") -> str:
    """A checker result in a few lines: verdict, each anomaly with its first explanations."""
    details = result.details
    model = details.get("model", "?")
    cs = ", ".join(details.get("consistency") or []) or "its default checks"
    if result.valid is True:
        return f"the {what} ({model}) is valid for {cs}"
    head = "is NOT" if result.valid is False else "could not be shown to be"
    lines = [f"the {what} ({model}) {head} {cs}"]
    for name in result.anomaly_types:
        texts = result.anomalies[name]
        lines.append(f"  {name} ({len(texts)}):")
        lines += [f"    - {_clip(t)}" for t in texts[:SHOWN]]
        if len(texts) > SHOWN:
            lines.append(f"    ... and {len(texts) - SHOWN} more")
    if result.not_:
        lines.append(f"  ruled out: {', '.join(sorted(result.not_))}")
    lines += [f"  unknown: {_clip(r)}" for r in result.unknown_reasons[:SHOWN]]
    return "\n".join(lines)


def _where(index: Any, node: Any) -> str:
    return f"op #{index}" + (f" on {node}" if node is not None else "")


def _case(kind: str, c: dict[str, Any]) -> str:
    inst = c.get("instance", "?")
    if kind == "forks":
        at = c.get("diverge_at", "?")
        return (f"instance {inst} forked: the read at {_where(c.get('index'), c.get('node'))} "
                f"showed a transcript that the later read at "
                f"{_where(c.get('later_index'), c.get('later_node'))} (begun after the first "
                f"completed) contradicts; they part at turn {at}: "
                f"first ...{_tail(c.get('read_from'))}, later ...{_tail(c.get('later_from'))}")
    if kind == "forgotten_acks":
        where = "the final read" if c.get("final") else "a later read by the same session"
        hop = " after failover to another replica" if c.get("failover") else ""
        return (f"instance {inst} forgot an acknowledged turn: {c.get('value')!r} was "
                f"acknowledged at {_where(c.get('acked_index'), c.get('acked_node'))}, but "
                f"{where} at {_where(c.get('read_index'), c.get('read_node'))}{hop} lacks it")
    if kind == "revived_rules":
        who = "a final read" if c.get("final") else "a session that had seen it revoked"
        return (f"instance {inst}: revoked rule {c.get('rule')!r} came back for {who} "
                f"at {_where(c.get('index'), c.get('node'))}")
    if kind == "torn_memory":
        if c.get("reported"):
            return (f"instance {inst}: the replica at {_where(c.get('index'), c.get('node'))} "
                    f"showed turn {c.get('turn')!r} without the memory it wrote")
        return (f"instance {inst}: the read at {_where(c.get('index'), c.get('node'))} saw turn "
                f"{c.get('turn')!r} but {c.get('key')} = {c.get('read')!r}, not the "
                f"{c.get('expected')!r} that turn wrote (memory torn from its turn)")
    return f"{kind}: {_clip(repr(c))}"


def explain_identity(ident: IdentityResult, *, instance: str | None = None) -> str:
    """Identity verdicts in words: each anomaly kind with its first case, then convergence."""
    kinds = ("forks", "forgotten_acks", "revived_rules", "torn_memory")
    lines: list[str] = []
    for kind in kinds:
        cases = [c for c in ident.cases.get(kind, [])
                 if instance is None or c.get("instance") == instance]
        n = len(cases) if instance is not None else getattr(ident, kind)
        if not n:
            continue
        lines.append(f"{n} {kind.replace('_', ' ')}; first:")
        lines.append("  " + _case(kind, cases[0]) if cases else "  (no example kept)")
    for inst, info in sorted(ident.per_instance.items()):
        if (instance is None or inst == instance) and not info.get("agree"):
            fps = info.get("fingerprints") or {}
            shown = ", ".join(f"{r}={str(fp)[:12]}" for r, fp in fps.items()) or "none"
            lines.append(f"instance {inst} did not converge: final fingerprints {shown} "
                         f"({info.get('replicas_answered', 0)} replicas answered)")
    return "\n".join(lines) if lines else "every instance stayed itself"


def _fail(title: str, body: str) -> None:
    __tracebackhide__ = True
    raise AssertionError(f"{title}\n{body}")


def assert_valid(history: Sequence[Op] | str | os.PathLike[str], *, model: str,
                 consistency: Sequence[str] | str | None = None,
                 time_limit_s: float | None = None, allow_unknown: bool = False) -> CheckResult:
    """Fail unless the history is valid for `consistency` (the model's default if None).

    An "unknown" verdict (a time limit hit) fails too unless `allow_unknown`.
    Returns the result, so a test can look further.
    """
    __tracebackhide__ = True
    from selfhood._api import check_history

    result = check_history(history, model=model, consistency=consistency,
                           time_limit_s=time_limit_s)
    if result.valid is False or (result.valid != True and not allow_unknown):  # noqa: E712
        _fail("history check failed:", explain_check(result))
    return result


def assert_same_instance(run: Run, mode: str, *, instance: str | None = None,
                         converged: bool = True) -> IdentityResult:
    """Fail unless every instance (or `instance`) stayed itself in `mode`.

    No forks, no forgotten acknowledged turns, no revived rules, no torn
    memory, and (if `converged`) every replica's final fingerprint agrees.
    The message shows the first case of each kind found.
    """
    __tracebackhide__ = True
    ident = run.identity(mode)
    text = explain_identity(ident, instance=instance)
    if not converged:
        text = "\n".join(line for line in text.splitlines() if "did not converge" not in line)
    if text and text != "every instance stayed itself":
        who = f"instance {instance}" if instance is not None else "an instance"
        _fail(f"{who} did not stay the same instance in mode {mode} "
              f"(seed {run.spec.seed}):", text)
    return ident


def assert_converged(run: Run, mode: str) -> IdentityResult:
    """Fail unless every instance's replicas ended with the same fingerprint."""
    __tracebackhide__ = True
    ident = run.identity(mode)
    if not ident.converged:
        body = "\n".join(line for line in explain_identity(ident).splitlines()
                         if "did not converge" in line)
        _fail(f"mode {mode} did not converge (seed {run.spec.seed}):",
              body or "no final reads answered")
    return ident


def assert_kept_promise(run: Run, mode: str) -> None:
    """Fail unless `mode` kept its own consistency promise (results.json `valid` is true).

    The message lists each failed check with its anomalies and the
    `selfhood check` command that reproduces it from the stored run.
    """
    __tracebackhide__ = True
    m = run.results["modes"].get(mode)
    if m is None:
        _fail(f"mode {mode} did not run", f"this run has {', '.join(run.modes)}")
        return
    if m.get("valid") is True:
        return
    lines = []
    for c in m.get("checks", []):
        if c.get("purpose", "promise") == "promise" and c.get("valid") is not True:
            lines.append(f"  {c.get('file')}: {c.get('consistency')} -> {c.get('valid')}"
                         f"; anomalies: {', '.join(c.get('anomalies') or []) or 'none'}")
            lines.append(f"    reproduce: {c.get('command')}")
    _fail(f"mode {mode} broke its promise ({m.get('promise', '?')}), seed {run.spec.seed}:",
          "\n".join(lines) or f"  valid = {m.get('valid')}")
