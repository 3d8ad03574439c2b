"""The eventual mode's CRDT merge rules (`checkers.crdt`), both directions.

Valid eventual executions pass (hand-written ones, random executions of a
tiny local-first CRDT system, and the simulator's own run); each violation
(revived rule, lost acknowledged add/append/write, garbage value, divergent
final reads) is caught, and a merely stale read is not called a violation.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from selfhood.checkers.api import check_history
from selfhood.checkers.crdt import check_crdt
from selfhood.checkers.formats import ops_to_jsonl
from selfhood.checkers.history import Op, reindex
from selfhood.errors import SpecError


class H:
    """A tiny history builder: each op is an invoke immediately followed by its completion."""

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self.t = 0

    def op(self, f: str, value: Any, result: Any = None, *, node: str = "r0", process: Any = 0,
           instance: str | None = "i0", type_: str = "ok", final: bool = False) -> H:
        extra = {"final": True} if final else {}
        self.t += 10
        self.ops.append(Op(0, "invoke", process, f, value, self.t, node, instance, None,
                           dict(extra)))
        self.t += 10
        out = value if result is None else result
        self.ops.append(Op(0, type_, process, f, out, self.t, node, instance, None, dict(extra)))  # type: ignore[arg-type]
        return self

    def nemesis(self, f: str, value: Any) -> H:
        self.t += 10
        self.ops.append(Op(0, "info", "nemesis", f, value, self.t))
        return self

    def history(self) -> list[Op]:
        return reindex(self.ops)


def anomalies(ops: list[Op], model: str) -> set[str]:
    r = check_history(ops, model=model, consistency=["crdt"])
    assert (r.valid is True) == (not r.anomalies), r.anomalies
    return set(r.anomalies)


# --- governance: a remove-wins set ---------------------------------------------------


def gov_valid() -> H:
    h = H()
    h.op("add", 1, node="r0").op("add", 2, node="r1").op("remove", 1, node="r0")
    # r1 has not heard of the removal yet: stale, not revived
    h.op("read", None, [1, 2], node="r1", process=1)
    h.op("read", None, [2], node="r0", process=2)
    h.nemesis("heal", None)
    for r in ("r0", "r1", "r2"):
        h.op("read", None, [2], node=r, process=3, final=True)
    return h


def test_set_valid_remove_wins_history_passes_even_with_a_stale_read() -> None:
    assert anomalies(gov_valid().history(), "set") == set()


def test_set_revived_on_the_replica_that_acknowledged_the_removal() -> None:
    h = gov_valid()
    h.op("add", 1, node="r0", process=4)  # a later add never beats the removal
    h.op("read", None, [1, 2], node="r0", process=4)
    assert anomalies(h.history(), "set") == {"revived-rule"}


def test_set_revived_in_every_final_read() -> None:
    h = H()
    h.op("add", 1, node="r0").op("remove", 1, node="r1")
    for node in ("r0", "r1"):
        h.op("read", None, [1], node=node, process=3, final=True)
    r = check_crdt(h.history(), model="set")
    assert r.valid is False and set(r.anomalies) == {"revived-rule"}
    assert r.details["crdt"]["anomaly_counts"]["revived-rule"] == 2


def test_set_lost_add_and_unexpected_and_divergence() -> None:
    h = H()
    h.op("add", 1, node="r0").op("add", 2, node="r1")
    h.op("read", None, [2], node="r0", process=3, final=True)
    h.op("read", None, [2], node="r1", process=3, final=True)
    assert anomalies(h.history(), "set") == {"lost-add"}
    h2 = H()
    h2.op("add", 1, node="r0")
    h2.op("read", None, [1, 9], node="r0", process=3, final=True)
    h2.op("read", None, [1, 9], node="r1", process=3, final=True)
    assert anomalies(h2.history(), "set") == {"unexpected"}
    h3 = H()
    h3.op("add", 1, node="r0").op("add", 2, node="r1", type_="info")
    h3.op("read", None, [1], node="r0", process=3, final=True)
    h3.op("read", None, [1, 2], node="r1", process=3, final=True)
    assert anomalies(h3.history(), "set") == {"divergent-final-reads"}


def test_set_element_read_twice_is_an_anomaly() -> None:
    """A set holds each element once: a read (during the run or final) showing one twice is
    `duplicate-elements`, as for a grow-only list; the same read without the repeat passes."""
    for final in (True, False):
        h = H()
        h.op("add", 1, node="r0").op("add", 2, node="r1")
        if not final:
            h.op("read", None, [1, 2, 1], node="r0", process=2)
        for node in ("r0", "r1"):
            h.op("read", None, [1, 2, 1] if final else [1, 2], node=node, process=3,
                 final=True)
        assert anomalies(h.history(), "set") == {"duplicate-elements"}, final
        r = check_crdt(h.history(), model="set")
        assert r.details["crdt"]["anomaly_counts"]["duplicate-elements"] == (2 if final else 1)
        assert "1" in r.anomalies["duplicate-elements"][0]
    ok = H()
    ok.op("add", 1, node="r0").op("add", 2, node="r1")
    ok.op("read", None, [1, 2], node="r0", process=2)
    for node in ("r0", "r1"):
        ok.op("read", None, [1, 2], node=node, process=3, final=True)
    assert anomalies(ok.history(), "set") == set()


def test_set_indeterminate_removal_excuses_a_missing_add_and_failed_ops_are_ignored() -> None:
    h = H()
    h.op("add", 1, node="r0").op("remove", 1, node="r1", type_="info")
    h.op("remove", 2, node="r1", type_="fail")
    h.op("read", None, [], node="r0", process=3, final=True)
    assert anomalies(h.history(), "set") == set()


def test_lost_add_names_the_crash_that_lost_it() -> None:
    h = H()
    h.op("add", 1, node="r0").nemesis("crash", "r0").nemesis("restart", "r0")
    h.op("read", None, [], node="r0", process=3, final=True)
    r = check_crdt(h.history(), model="set")
    assert r.valid is False and "r0 crashed" in r.anomalies["lost-add"][0]


# --- transcript: a grow-only list -----------------------------------------------------


def txn(*mops: list[Any]) -> list[list[Any]]:
    return [list(m) for m in mops]


def list_history(final_values: dict[str, list[int]]) -> H:
    h = H()
    h.op("txn", txn(["r", "i0/transcript", None], ["append", "i0/transcript", 1]),
         txn(["r", "i0/transcript", []], ["append", "i0/transcript", 1]), node="r0")
    h.op("txn", txn(["append", "i0/transcript", 2]), node="r1", process=1)
    h.op("txn", txn(["append", "i0/transcript", 3]), node="r1", process=2, type_="info")
    h.nemesis("heal", None)
    for r, v in final_values.items():
        h.op("final-read", txn(["r", "i0/transcript", None]), txn(["r", "i0/transcript", v]),
             node=r, process=5)
    return h


def test_list_converged_with_every_acknowledged_append_passes() -> None:
    # the order (hlc, writer, id) is not visible in a history; only the set and agreement are
    ok = list_history({"r0": [2, 1], "r1": [2, 1], "r2": [2, 1]})
    assert anomalies(ok.history(), "list-append") == set()
    with_info = list_history({"r0": [1, 3, 2], "r1": [1, 3, 2]})
    assert anomalies(with_info.history(), "list-append") == set()


def test_list_lost_acknowledged_append() -> None:
    h = list_history({"r0": [1], "r1": [1], "r2": [1]})
    r = check_crdt(h.history(), model="list-append")
    assert set(r.anomalies) == {"lost-append"} and "of 2" in r.anomalies["lost-append"][0]


def test_list_append_ordered_before_what_its_txn_read() -> None:
    def hist(final: list[int]) -> list[Op]:
        h = H()
        h.op("txn", txn(["append", "i0/transcript", 1]), node="r0")
        h.op("txn", txn(["r", "i0/transcript", None], ["append", "i0/transcript", 2]),
             txn(["r", "i0/transcript", [1]], ["append", "i0/transcript", 2]), node="r1")
        h.op("txn", txn(["append", "i0/transcript", 3]), node="r2")  # concurrent: any place
        for r in ("r0", "r1"):
            h.op("final-read", txn(["r", "i0/transcript", None]),
                 txn(["r", "i0/transcript", final]), node=r, process=5)
        return h.history()

    assert anomalies(hist([3, 1, 2]), "list-append") == set()
    assert anomalies(hist([1, 2, 3]), "list-append") == set()
    assert anomalies(hist([2, 1, 3]), "list-append") == {"hlc-order"}


def test_list_garbage_duplicate_and_divergent() -> None:
    assert anomalies(list_history({"r0": [1, 2, 7], "r1": [1, 2, 7]}).history(),
                     "list-append") == {"garbage-read"}
    assert anomalies(list_history({"r0": [1, 2, 1], "r1": [1, 2, 1]}).history(),
                     "list-append") == {"duplicate-elements"}
    assert anomalies(list_history({"r0": [1, 2], "r1": [2, 1]}).history(),
                     "list-append") == {"divergent-final-reads"}


def test_no_final_reads_is_unknown() -> None:
    h = H().op("txn", txn(["append", "i0/transcript", 1]))
    assert check_history(h.history(), model="list-append", consistency="crdt").valid == "unknown"


# --- memory: last-writer-wins registers ----------------------------------------------


def reg_history(final: Any) -> H:
    h = H()
    h.op("write", ["k", 1], node="r0").op("write", ["k", 2], node="r1", type_="info")
    h.op("write", ["k", 3], node="r2", type_="fail")
    h.op("read", ["k", None], ["k", 1], node="r1", process=1)
    for r in ("r0", "r1", "r2"):
        h.op("read", ["k", None], ["k", final], node=r, process=f"final-{r}", final=True)
    return h


def test_register_lww_valid_final_values_pass() -> None:
    assert anomalies(reg_history(1).history(), "register") == set()
    assert anomalies(reg_history(2).history(), "register") == set()  # indeterminate write won


def test_register_garbage_lost_and_divergent() -> None:
    assert anomalies(reg_history(3).history(), "register") == {"garbage-read"}  # failed write
    assert anomalies(reg_history(9).history(), "register") == {"garbage-read"}
    assert anomalies(reg_history(None).history(), "register") == {"lost-write"}
    h = reg_history(1)
    h.op("read", ["k", None], ["k", 2], node="r2", process="final-r2", final=True)
    assert anomalies(h.history(), "register") == {"divergent-final-reads"}


def test_rw_register_garbage_and_divergent() -> None:
    def hist(a: Any, b: Any) -> list[Op]:
        h = H()
        h.op("txn", txn(["w", "i0/mem/tool/k0", 5], ["w", "i0/mem/tool/k1", 6]), node="r0")
        h.op("final-read", txn(["r", "i0/mem/tool/k0", None]),
             txn(["r", "i0/mem/tool/k0", a]), node="r0", process=5)
        h.op("final-read", txn(["r", "i0/mem/tool/k0", None]),
             txn(["r", "i0/mem/tool/k0", b]), node="r1", process=5)
        return h.history()

    assert anomalies(hist(5, 5), "rw-register") == set()
    assert anomalies(hist(6, 6), "rw-register") == {"garbage-read"}  # k1's value, not k0's
    assert anomalies(hist(5, None), "rw-register") == {"divergent-final-reads", "lost-write"}


def test_crdt_is_only_defined_for_its_models() -> None:
    for model in ("kv", "cas-register", "kafka"):
        with pytest.raises(SpecError):
            check_history([], model=model, consistency=["crdt"])


# --- random local-first executions: valid, and each corruption caught -----------------


def run_local_first(steps: list[tuple[int, int, int]], replicas: int = 3) -> list[Op]:
    """A tiny eventual system: ack locally, merge whole states on sync, converge at the end.

    step = (kind, replica, arg): 0 append, 1 write register, 2 add rule, 3 remove rule,
    4 read rules, 5 sync replica with arg's replica. Each replica keeps a
    grow-only set of (hlc, writer, value) turns, LWW registers and a remove-wins set.
    """
    h = H()
    names = [f"r{i}" for i in range(replicas)]
    turns: list[set[tuple[int, str, int]]] = [set() for _ in names]
    reg: list[tuple[int, str, int] | None] = [None for _ in names]
    adds: list[set[int]] = [set() for _ in names]
    gone: list[set[int]] = [set() for _ in names]
    hlc = [0 for _ in names]
    v = 0
    for kind, ri, arg in steps:
        r = ri % replicas
        node = names[r]
        hlc[r] += 1
        if kind == 0:
            v += 1
            seen = [t[2] for t in sorted(turns[r])]
            turns[r].add((hlc[r], node, v))
            h.op("txn", txn(["r", "i0/transcript", None], ["append", "i0/transcript", v]),
                 txn(["r", "i0/transcript", seen], ["append", "i0/transcript", v]),
                 node=node, process=r)
        elif kind == 1:
            v += 1
            stamp = (hlc[r], node, v)
            reg[r] = stamp if reg[r] is None or reg[r] < stamp else reg[r]  # type: ignore[operator]
            h.op("txn", txn(["w", "i0/mem/tool/k0", v]), node=node, process=r)
        elif kind == 2:
            adds[r].add(arg % 4)
            h.op("add", arg % 4, node=node, process=r)
        elif kind == 3:
            gone[r].add(arg % 4)
            h.op("remove", arg % 4, node=node, process=r)
        elif kind == 4:
            h.op("read", None, sorted(adds[r] - gone[r]), node=node, process=r)
        else:
            o = arg % replicas
            turns[r] |= turns[o]
            adds[r] |= adds[o]
            gone[r] |= gone[o]
            if reg[o] is not None and (reg[r] is None or reg[r] < reg[o]):  # type: ignore[operator]
                reg[r] = reg[o]
            hlc[r] = max(hlc[r], hlc[o])
    h.nemesis("heal", None)
    all_turns = set().union(*turns)
    final_reg = max((x for x in reg if x is not None), default=None)
    rules = sorted(set().union(*adds) - set().union(*gone))
    for node in names:
        order = [t[2] for t in sorted(all_turns)]
        h.op("final-read", txn(["r", "i0/transcript", None], ["r", "i0/mem/tool/k0", None]),
             txn(["r", "i0/transcript", order],
                 ["r", "i0/mem/tool/k0", None if final_reg is None else final_reg[2]]),
             node=node, process=f"final-{node}")
        h.op("read", None, rules, node=node, process=f"final-{node}", final=True)
    return h.history()


def split(ops: list[Op]) -> dict[str, list[Op]]:
    """The three checkable parts of a local-first history (as the runner splits them)."""
    def keep(pred: Any, op: Op) -> Op | None:
        if op.process == "nemesis":
            return op
        if op.f in ("txn", "final-read"):
            mops = [m for m in op.value if pred(m[1])]
            return Op(op.index, op.type, op.process, op.f, mops, op.time, op.node,
                      op.instance) if mops else None
        return None

    la = [o for o in (keep(lambda k: k.endswith("transcript"), op) for op in ops) if o]
    rw = [o for o in (keep(lambda k: "/mem/" in k, op) for op in ops) if o]
    gov = [op for op in ops if op.f in ("add", "remove", "read") or op.process == "nemesis"]
    return {"list-append": reindex(la), "rw-register": reindex(rw), "set": reindex(gov)}


STEPS = st.lists(st.tuples(st.integers(0, 5), st.integers(0, 2), st.integers(0, 7)),
                 min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(STEPS)
def test_random_local_first_executions_are_valid(steps: list[tuple[int, int, int]]) -> None:
    for model, part in split(run_local_first(steps)).items():
        r = check_crdt(part, model=model)
        assert r.valid is True, (model, r.anomalies)


@settings(max_examples=60, deadline=None)
@given(STEPS, st.integers(0, 10_000))
def test_random_corruptions_are_caught(steps: list[tuple[int, int, int]], pick: int) -> None:
    """Drop an acknowledged append from every final read, or forge a final register value."""
    ops = run_local_first(steps)
    appended = [m[2] for o in ops if o.f == "txn" and o.type == "ok" for m in o.value
                if m[0] == "append"]
    written = [m[2] for o in ops if o.f == "txn" and o.type == "ok" for m in o.value
               if m[0] == "w"]
    if appended:
        victim = appended[pick % len(appended)]
        bad = [Op(o.index, o.type, o.process, o.f,
                  [[m[0], m[1], [x for x in m[2] if x != victim]] if m[1].endswith("transcript")
                   else m for m in o.value], o.time, o.node, o.instance)
               if o.f == "final-read" and o.type == "ok" else o for o in ops]
        r = check_crdt(split(bad)["list-append"], model="list-append")
        assert "lost-append" in r.anomalies
    read_before = [m[2] for o in ops if o.f == "txn" and o.type == "ok"
                   for m in o.value if m[0] == "append" and o.value[0][2]]
    if read_before:
        v = read_before[pick % len(read_before)]
        # move the append to the front of every final order: before what it had read
        moved = [Op(o.index, o.type, o.process, o.f,
                    [[m[0], m[1], [v] + [x for x in m[2] if x != v]]
                     if m[1].endswith("transcript") else m for m in o.value],
                    o.time, o.node, o.instance)
                 if o.f == "final-read" and o.type == "ok" else o for o in ops]
        r = check_crdt(split(moved)["list-append"], model="list-append")
        assert set(r.anomalies) == {"hlc-order"}, r.anomalies
    if written:
        forged = [Op(o.index, o.type, o.process, o.f,
                     [[m[0], m[1], 10_000 + pick] if "/mem/" in m[1] else m for m in o.value],
                     o.time, o.node, o.instance)
                  if o.f == "final-read" and o.type == "ok" else o for o in ops]
        r = check_crdt(split(forged)["rw-register"], model="rw-register")
        assert "garbage-read" in r.anomalies


# --- the simulator and the command ----------------------------------------------------


def test_simulated_eventual_run_without_crashes_keeps_every_merge_rule() -> None:
    from selfhood.chaos.runner import MODEL_OF, simulate_mode, split_history
    from selfhood.spec import DEFAULT_SPEC, with_overrides

    spec = with_overrides(DEFAULT_SPEC, seed=2, nemesis=("partition",), time_limit_s=2.0)
    parts = split_history(simulate_mode(spec, "eventual").history)
    for name, part in parts.items():
        r = check_history(part, model=MODEL_OF[name], consistency="crdt")
        assert r.valid is True, (name, r.anomalies)
        assert r.details["crdt"]["final_reads"] > 0


def test_simulated_eventual_crashes_keep_acknowledged_writes() -> None:
    """The outbox is durable: a crash right after an ack loses nothing (it used to: a
    volatile outbox lost unshipped writes, `lost-append`, the finding that led to it)."""
    from selfhood.chaos.runner import simulate_mode, split_history
    from selfhood.spec import DEFAULT_SPEC, with_overrides

    spec = with_overrides(DEFAULT_SPEC, seed=1, nemesis=("crash",), nemesis_interval_ms=300,
                          fault_duration_ms=600, time_limit_s=3.0)
    sim = simulate_mode(spec, "eventual")
    assert sim.stats["crashes"] > 0
    parts = split_history(sim.history)
    for name, model in (("list-append", "list-append"), ("governance", "set")):
        r = check_history(parts[name], model=model, consistency="crdt")
        assert r.valid is True, (name, r.anomalies)


def test_selfhood_check_crdt_exit_codes(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.jsonl", tmp_path / "bad.jsonl"
    good.write_text(ops_to_jsonl(gov_valid().history()))
    h = gov_valid()
    h.op("read", None, [1, 2], node="r0", process=9, final=True)
    bad.write_text(ops_to_jsonl(h.history()))

    def check(path: Path, model: str = "set") -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "selfhood", "check", str(path), "--model",
                               model, "--consistency", "crdt", "--json"],
                              capture_output=True, text=True, timeout=120, check=False)

    assert check(good).returncode == 0
    p = check(bad)
    assert p.returncode == 1 and "revived-rule" in p.stdout
    p = check(good, "kv")
    assert p.returncode == 64 and "crdt" in p.stderr and "Traceback" not in p.stderr


def test_hunt_judges_eventuals_promise_with_the_crdt_rules() -> None:
    """`selfhood hunt --property "eventual stays valid"` judges the CRDT rules too: with
    no quiescence the final reads race the outboxes and diverge."""
    from selfhood.chaos.hunt import parse_property, violation
    from selfhood.spec import DEFAULT_SPEC, with_overrides

    prop = parse_property("eventual stays valid")
    rushed = with_overrides(DEFAULT_SPEC, seed=1, nemesis=("partition",), time_limit_s=2.0,
                            quiesce_ms=0)
    found = violation(prop, rushed)
    assert found is not None and "crdt" in found and "divergent-final-reads" in found
    crash = with_overrides(DEFAULT_SPEC, seed=1, nemesis=("crash",), nemesis_interval_ms=300,
                           fault_duration_ms=600, time_limit_s=3.0)
    assert violation(prop, crash) is None  # the durable outbox: a crash loses no ack
    calm = with_overrides(DEFAULT_SPEC, seed=2, nemesis=("partition",), time_limit_s=2.0)
    assert violation(prop, calm) is None
