"""Cross-checker properties (hypothesis).

1. Histories produced by executing ops against a sequential model, under
   random concurrency and crashes (indeterminate ops), are valid for every
   checker: linearizable / sequential, session guarantees, zero staleness,
   Kafka log checks, convergence, and (when built) the transactional checker.
2. Mutating one read introduces an anomaly, and the checkers catch it.
3. On tiny histories, brute-force oracles (every order the model allows)
   agree with the fast checkers.
"""

from __future__ import annotations

import importlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from selfhood.checkers.history import Op
from selfhood.checkers.kafka_log import check_kafka
from selfhood.checkers.linear import check_linearizable
from selfhood.checkers.oracle import brute_linearizable, brute_serializable
from selfhood.checkers.session import check_session
from selfhood.checkers.staleness import check_convergence, check_staleness

PROPS = settings(max_examples=60, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow])
ORACLE = settings(max_examples=120, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow])


def _check_txn() -> Callable[..., Any] | None:
    for name in ("selfhood.checkers.txn", "selfhood.checkers.elle.txn", "selfhood.checkers.elle"):
        try:
            fn = getattr(importlib.import_module(name), "check_txn", None)
        except ModuleNotFoundError:
            continue
        if callable(fn):
            return fn  # type: ignore[no-any-return]
    return None


CHECK_TXN = _check_txn()
needs_txn = pytest.mark.skipif(CHECK_TXN is None, reason="check_txn not built yet")


# --- a tiny concurrent executor against a sequential model ---------------------------------


@dataclass
class _Pending:
    process: int
    f: str
    value: Any
    applied: bool = False
    result: Any = None
    typ: str = "ok"


@dataclass
class Sim:
    """Random interleaving of invoke / take effect / complete / crash over `slots` clients.

    Each op takes effect atomically at one instant between its invocation and
    completion (its linearization point), so the history is linearizable by
    construction. A crash completes an op as `info` whether or not it took
    effect; the client then continues under a fresh process id, as in Jepsen.
    """

    rnd: random.Random
    slots: int
    crash_p: float = 0.1
    ops: list[Op] = field(default_factory=list)
    clock: int = 0

    def emit(self, typ: str, process: int, f: str, value: Any) -> None:
        self.clock += 1
        self.ops.append(Op(len(self.ops), typ, process, f, value,  # type: ignore[arg-type]
                           time=self.clock * 1000))

    def run(self, n_ops: int, gen: Callable[[int], tuple[str, Any]],
            apply: Callable[[_Pending], None]) -> list[Op]:
        pids = list(range(self.slots))
        pending: dict[int, _Pending] = {}
        issued = 0
        while issued < n_ops or pending:
            choices: list[tuple[str, int]] = []
            for s in range(self.slots):
                if s not in pending:
                    if issued < n_ops:
                        choices.append(("invoke", s))
                elif not pending[s].applied:
                    choices += [("apply", s), ("apply", s)]
                else:
                    choices.append(("complete", s))
                if s in pending and self.rnd.random() < self.crash_p / 4:
                    choices.append(("crash", s))
            what, s = self.rnd.choice(choices)
            if what == "invoke":
                f, v = gen(pids[s])
                pending[s] = _Pending(pids[s], f, v)
                self.emit("invoke", pids[s], f, v)
                issued += 1
            elif what == "apply":
                apply(pending[s])
                pending[s].applied = True
            elif what == "complete":
                p = pending.pop(s)
                self.emit(p.typ, p.process, p.f, p.result)
            else:
                p = pending.pop(s)
                if not p.applied and self.rnd.random() < 0.5:
                    apply(p)  # crashed after taking effect
                self.emit("info", p.process, p.f, p.value)
                pids[s] += self.slots
        return self.ops


def register_history(rnd: random.Random, slots: int, n_ops: int, cas: bool,
                     crash_p: float = 0.1) -> list[Op]:
    state: dict[str, Any] = {"v": None}
    counter = iter(range(1, 10_000))
    written: list[Any] = [None]

    def gen(_: int) -> tuple[str, Any]:
        r = rnd.random()
        if r < 0.4:
            v = next(counter)
            written.append(v)
            return "write", v
        if cas and r < 0.6:
            v = next(counter)
            written.append(v)
            return "cas", [rnd.choice(written), v]
        return "read", None

    def apply(p: _Pending) -> None:
        if p.f == "write":
            state["v"] = p.value
            p.result = p.value
        elif p.f == "read":
            p.result = state["v"]
        else:
            frm, to = p.value
            if state["v"] == frm:
                state["v"] = to
            else:
                p.typ = "fail"
            p.result = p.value

    return Sim(rnd, slots, crash_p).run(n_ops, gen, apply)


def append_history(rnd: random.Random, slots: int, n_ops: int, keys: int = 3,
                   crash_p: float = 0.1, max_len: int = 3) -> list[Op]:
    state: dict[str, list[int]] = {}
    counter = iter(range(1, 100_000))
    names = [chr(ord("x") + i) for i in range(keys)] if keys <= 3 else \
        [f"k{i}" for i in range(keys)]

    def gen(_: int) -> tuple[str, Any]:
        mops: list[list[Any]] = []
        for _i in range(rnd.randint(1, max_len)):
            k = rnd.choice(names)
            if rnd.random() < 0.5:
                mops.append(["append", k, next(counter)])
            else:
                mops.append(["r", k, None])
        return "txn", mops

    def apply(p: _Pending) -> None:
        out = []
        for f, k, v in p.value:
            if f == "append":
                state.setdefault(k, []).append(v)
                out.append([f, k, v])
            else:
                out.append([f, k, list(state.get(k, []))])
        p.result = out

    return Sim(rnd, slots, crash_p).run(n_ops, gen, apply)


def kafka_history(rnd: random.Random, slots: int, n_ops: int, crash_p: float = 0.1) -> list[Op]:
    logs: dict[int, list[int]] = {0: [], 1: []}
    positions: dict[int, dict[int, int]] = {}
    counter = iter(range(1, 100_000))

    def gen(_: int) -> tuple[str, Any]:
        if rnd.random() < 0.55:
            return "send", [rnd.choice([0, 1]), next(counter)]
        return "poll", None

    def apply(p: _Pending) -> None:
        if p.f == "send":
            k, msg = p.value
            logs[k].append(msg)
            p.result = [k, [len(logs[k]) - 1, msg]]
        else:
            pos = positions.setdefault(p.process, {})
            out = {}
            for k, log in logs.items():
                start = pos.get(k, 0)
                end = min(len(log), start + rnd.randint(0, 3))
                if end > start:
                    out[k] = [[o, log[o]] for o in range(start, end)]
                pos[k] = end
            p.result = out

    sim = Sim(rnd, slots, crash_p)
    sim.run(n_ops, gen, apply)
    # a fresh consumer drains every key at the end, as Jepsen's final polls do: an
    # acknowledged message no poll returned is an error (`unseen`)
    drain = {k: [[o, m] for o, m in enumerate(log)] for k, log in logs.items() if log}
    sim.emit("invoke", 10_000, "poll", None)  # a process id no client has
    sim.emit("ok", 10_000, "poll", drain)
    return sim.ops


def with_final_reads(ops: list[Op], value: Any, replicas: int = 3) -> list[Op]:
    out = list(ops)
    t = max((o.time or 0 for o in ops), default=0) + 1000
    for n in range(replicas):
        out.append(Op(len(out), "invoke", f"final-{n}", "final-read", None, time=t,
                      node=f"n{n}"))
        out.append(Op(len(out), "ok", f"final-{n}", "final-read", value, time=t + 10,
                      node=f"n{n}"))
        t += 100
    return out


def ok_reads(ops: list[Op], pred: Callable[[Op], bool]) -> list[int]:
    return [i for i, o in enumerate(ops) if o.type == "ok" and pred(o)]


seeds = st.randoms(use_true_random=False)


# --- 1. executions of a sequential model are valid for every checker -------------------


@PROPS
@given(rnd=seeds, slots=st.integers(1, 4), n=st.integers(1, 30), cas=st.booleans())
def test_register_executions_valid(rnd: random.Random, slots: int, n: int, cas: bool) -> None:
    ops = register_history(rnd, slots, n, cas)
    model = "cas-register" if cas else "register"
    for c in ("linearizable", "sequential"):
        r = check_linearizable(ops, model, consistency=c)
        assert r.valid is True, (c, r.anomalies)
    s = check_session(ops, model=model)
    assert s.valid is True, s.anomalies
    st_ = check_staleness(ops, model=model)
    assert st_.details["staleness"]["stale_reads"] == 0
    last = next((o.value for o in reversed(ops) if o.type == "ok" and o.f == "read"), None)
    if all(o.f != "write" and o.f != "cas" for o in ops):
        assert check_convergence(with_final_reads(ops, last), model=model).valid is True


@PROPS
@given(rnd=seeds, slots=st.integers(1, 4), n=st.integers(1, 30))
def test_list_append_executions_valid(rnd: random.Random, slots: int, n: int) -> None:
    ops = append_history(rnd, slots, n)
    assert check_session(ops, model="list-append").valid is True
    assert check_staleness(ops, model="list-append").details["staleness"]["stale_reads"] == 0
    if CHECK_TXN is not None and any(o.type == "ok" for o in ops):
        r = CHECK_TXN(ops, workload="list-append", consistency=("strict-serializable",))
        assert r.valid is True, r.anomalies


@PROPS
@given(rnd=seeds, slots=st.integers(1, 4), n=st.integers(1, 40))
def test_kafka_executions_valid(rnd: random.Random, slots: int, n: int) -> None:
    ops = kafka_history(rnd, slots, n)
    r = check_kafka(ops)
    assert r.valid is True, r.anomalies
    assert r.anomalies == {}


@PROPS
@given(rnd=seeds, n=st.integers(0, 20))
def test_convergence_of_quiesced_state(rnd: random.Random, n: int) -> None:
    ops = append_history(rnd, 3, n, keys=2)
    state = _final_state(ops)
    assert check_convergence(with_final_reads(ops, state), model="list-append").valid is True
    diverged = {**state, "x": [*state.get("x", []), 999_999]}
    ops2 = with_final_reads(ops, state, replicas=2)
    t = (ops2[-1].time or 0) + 100
    ops2.append(Op(len(ops2), "invoke", "final-9", "final-read", None, time=t, node="n9"))
    ops2.append(Op(len(ops2), "ok", "final-9", "final-read", diverged, time=t + 1, node="n9"))
    bad = check_convergence(ops2, model="list-append")
    assert bad.valid is False and bad.anomaly_types == ["divergent-final-reads"]


def _final_state(ops: list[Op]) -> dict[str, list[int]]:
    """Longest read of each key seen anywhere (a stand-in for the quiesced state)."""
    best: dict[str, list[int]] = {"x": [], "y": []}
    for o in ops:
        if o.type == "ok" and o.f == "txn":
            for f, k, v in o.value:
                if f == "r" and len(v) > len(best.get(k, [])):
                    best[k] = list(v)
    return best


# --- 2. mutating one read is caught ------------------------------------------------------


@PROPS
@given(rnd=seeds, slots=st.integers(1, 4), n=st.integers(2, 30), cas=st.booleans(),
       pick=st.integers(0, 10_000))
def test_register_garbage_read_caught(rnd: random.Random, slots: int, n: int, cas: bool,
                                      pick: int) -> None:
    ops = register_history(rnd, slots, n, cas)
    reads = ok_reads(ops, lambda o: o.f == "read")
    assume(reads)
    i = reads[pick % len(reads)]
    ops[i] = replace(ops[i], value=-1)  # a value no one wrote
    model = "cas-register" if cas else "register"
    for c in ("linearizable", "sequential"):
        r = check_linearizable(ops, model, consistency=c)
        assert r.valid is False, c
        assert r.anomaly_types


def _reads_after_own_write(ops: list[Op]) -> list[int]:
    """ok reads whose process earlier wrote (ok) a non-initial value."""
    wrote: set[Any] = set()
    out = []
    for i, o in enumerate(ops):
        if o.type == "ok" and o.f in ("write", "cas"):
            wrote.add(o.process)
        if o.type == "ok" and o.f == "read" and o.process in wrote:
            out.append(i)
    return out


@PROPS
@given(rnd=seeds, slots=st.integers(1, 4), n=st.integers(2, 30), pick=st.integers(0, 10_000))
def test_register_stale_own_read_caught(rnd: random.Random, slots: int, n: int,
                                        pick: int) -> None:
    ops = register_history(rnd, slots, n, cas=False, crash_p=0.0)
    reads = _reads_after_own_write(ops)
    assume(reads)
    i = reads[pick % len(reads)]
    ops[i] = replace(ops[i], value=None)  # back to the initial value
    s = check_session(ops, model="register")
    assert s.valid is False
    assert "read-your-writes" in s.anomalies or "monotonic-reads" in s.anomalies
    assert check_linearizable(ops, "register").valid is False
    assert check_staleness(ops, model="register").details["staleness"]["stale_reads"] >= 1


@PROPS
@given(rnd=seeds, slots=st.integers(1, 4), n=st.integers(2, 30), pick=st.integers(0, 10_000))
def test_list_append_mutations_caught(rnd: random.Random, slots: int, n: int,
                                      pick: int) -> None:
    ops = append_history(rnd, slots, n, crash_p=0.0)
    # reads of a key after the same process appended to it in an earlier txn
    own: dict[Any, set[str]] = {}
    cands: list[tuple[int, int]] = []
    for i, o in enumerate(ops):
        if o.type != "ok":
            continue
        for j, (f, k, _v) in enumerate(o.value):
            if f == "r" and k in own.get(o.process, set()) and \
                    all(m[1] != k or m[0] != "append" for m in o.value[:j]):
                cands.append((i, j))
        for f, k, _ in o.value:
            if f == "append":
                own.setdefault(o.process, set()).add(k)
    assume(cands)
    i, j = cands[pick % len(cands)]
    value = [list(m) for m in ops[i].value]
    value[j][2] = []
    ops[i] = replace(ops[i], value=value)
    s = check_session(ops, model="list-append")
    assert "read-your-writes" in s.anomalies or "monotonic-reads" in s.anomalies
    assert check_staleness(ops, model="list-append").details["staleness"]["stale_reads"] >= 1
    if CHECK_TXN is not None:
        assert CHECK_TXN(ops, workload="list-append",
                         consistency=("strict-serializable",)).valid is False


@PROPS
@given(rnd=seeds, slots=st.integers(1, 4), n=st.integers(2, 40), pick=st.integers(0, 10_000),
       how=st.sampled_from(["garbage", "skip"]))
def test_kafka_mutations_caught(rnd: random.Random, slots: int, n: int, pick: int,
                                how: str) -> None:
    ops = kafka_history(rnd, slots, n)
    need = 1 if how == "garbage" else 3
    polls = ok_reads(ops, lambda o: o.f == "poll" and any(len(v) >= need
                                                          for v in o.value.values()))
    assume(polls)
    i = polls[pick % len(polls)]
    value = {k: [list(p) for p in v] for k, v in ops[i].value.items()}
    k = next(k for k, v in value.items() if len(v) >= need)
    if how == "garbage":
        value[k][0][1] = -7
    else:
        # only a message whose offset an acknowledged send also reported is provably skipped
        acked = {tuple(o.value[1]) for o in ops if o.type == "ok" and o.f == "send"
                 and o.value[0] == k}
        assume(tuple(value[k][1]) in acked)
        del value[k][1]
    ops[i] = replace(ops[i], value=value)
    r = check_kafka(ops)
    assert r.valid is False
    if how == "garbage":
        assert "garbage-read" in r.anomalies
    else:
        assert "int-poll-skip" in r.anomalies


# --- 3. brute-force oracles agree with the fast checkers on tiny histories ---------------


@ORACLE
@given(rnd=seeds, slots=st.integers(1, 3), n=st.integers(1, 7), cas=st.booleans(),
       mutate=st.booleans(), pick=st.integers(0, 10_000))
def test_oracle_agrees_with_linearizability_checker(rnd: random.Random, slots: int, n: int,
                                                    cas: bool, mutate: bool,
                                                    pick: int) -> None:
    ops = register_history(rnd, slots, n, cas, crash_p=0.2)
    if mutate:
        reads = ok_reads(ops, lambda o: o.f == "read")
        written = [*sorted({o.value for o in ops if o.f == "write"} | {0}), None]
        if reads:
            i = reads[pick % len(reads)]
            ops[i] = replace(ops[i], value=written[pick % len(written)])
    model = "cas-register" if cas else "register"
    for c in ("linearizable", "sequential"):
        fast = check_linearizable(ops, model, consistency=c).valid
        assert fast == brute_linearizable(ops, model, c), (c, ops)


@ORACLE
@given(rnd=seeds, n=st.integers(1, 7), mutate=st.booleans(), pick=st.integers(0, 10_000))
def test_oracle_agrees_on_kv(rnd: random.Random, n: int, mutate: bool, pick: int) -> None:
    base = register_history(rnd, 3, n, cas=False, crash_p=0.2)
    ops = []
    for o in base:
        f = {"write": "put", "read": "get"}[o.f or "read"]
        v = "" if o.value is None else str(o.value)
        ops.append(replace(o, f=f, value=v, extra={"key": "k"}))
    if mutate:
        reads = ok_reads(ops, lambda o: o.f == "get")
        if reads:
            i = reads[pick % len(reads)]
            ops[i] = replace(ops[i], value=str(pick % 4))
    for c in ("linearizable", "sequential"):
        assert check_linearizable(ops, "kv", consistency=c).valid == \
            brute_linearizable(ops, "kv", c), c


def intra_txn_reorder(ops: list[Op], only_ok: bool = False) -> bool:
    """Does some read show one transaction's appends out of the order it made them?"""
    where: dict[tuple[Any, Any], tuple[int, int]] = {}
    for o in ops:
        if o.type == "ok" or (o.type == "invoke" and not only_ok):
            for n, (f, k, v) in enumerate(o.value or []):
                if f == "append":
                    where[(k, v)] = (o.index, n)
    for o in ops:
        if o.type != "ok":
            continue
        for f, k, v in o.value:
            if f != "r" or not v:
                continue
            last: dict[int, int] = {}
            for e in v:
                t = where.get((k, e))
                if t is not None:
                    if last.get(t[0], -1) > t[1]:
                        return True
                    last[t[0]] = t[1]
    return False


def rw_register_history(rnd: random.Random, slots: int, n_ops: int,
                        crash_p: float = 0.15) -> list[Op]:
    state: dict[str, int] = {}
    counter = iter(range(1, 100_000))

    def gen(_: int) -> tuple[str, Any]:
        mops: list[list[Any]] = []
        for _i in range(rnd.randint(1, 3)):
            k = rnd.choice(["x", "y"])
            mops.append(["w", k, next(counter)] if rnd.random() < 0.5 else ["r", k, None])
        return "txn", mops

    def apply(p: _Pending) -> None:
        out = []
        for f, k, v in p.value:
            if f == "w":
                state[k] = v
                out.append([f, k, v])
            else:
                out.append([f, k, state.get(k)])
        p.result = out

    return Sim(rnd, slots, crash_p).run(n_ops, gen, apply)


def kv_set_history(rnd: random.Random, slots: int, n_ops: int, model: str) -> list[Op]:
    """kv (put / append / get on two keys, values in the op's `key` field) or set
    (add / read) executions; crashes leave ops indeterminate."""
    kv: dict[str, str] = {}
    members: set[int] = set()
    counter = iter(range(1, 10_000))

    def gen(_: int) -> tuple[str, Any]:
        r = rnd.random()
        if model == "set":
            return ("add", next(counter)) if r < 0.5 else ("read", None)
        k = rnd.choice(["a", "b"])
        if r < 0.3:
            return "put", (k, f"{next(counter)};")
        if r < 0.6:
            return "append", (k, f"{next(counter)};")
        return "get", (k, None)

    def apply(p: _Pending) -> None:
        if model == "set":
            if p.f == "add":
                members.add(p.value)
                p.result = p.value
            else:
                p.result = sorted(members)
            return
        k, v = p.value
        if p.f == "put":
            kv[k] = v
        elif p.f == "append":
            kv[k] = kv.get(k, "") + v
        p.result = (k, kv.get(k, "") if p.f == "get" else v)

    raw = Sim(rnd, slots, 0.2).run(n_ops, gen, apply)
    if model == "set":
        return raw
    out = []
    for o in raw:
        k, v = o.value
        out.append(replace(o, value=v, extra={"key": k}))
    return out


@ORACLE
@given(rnd=seeds, n=st.integers(1, 7), model=st.sampled_from(["kv", "set"]),
       mutate=st.booleans(), pick=st.integers(0, 10_000))
def test_oracle_agrees_on_kv_append_and_set(rnd: random.Random, n: int, model: str,
                                            mutate: bool, pick: int) -> None:
    ops = kv_set_history(rnd, 3, n, model)
    if mutate:
        reads = ok_reads(ops, lambda o: o.f in ("get", "read"))
        if reads:
            i = reads[pick % len(reads)]
            v = ops[i].value
            if model == "set":
                v = list(v)[:-1] if v and pick % 2 else [*list(v or []), pick % 5 + 1]
            else:
                v = (v or "")[: max(0, len(v or "") - 2)] if pick % 2 else f"{pick % 3};"
            ops[i] = replace(ops[i], value=v)
    for c in ("linearizable", "sequential"):
        assert check_linearizable(ops, model, consistency=c).valid == \
            brute_linearizable(ops, model, c), (c, ops)


def _mutate_list(lst: list[Any], how: int, where: int) -> list[Any]:
    """Reverse, truncate, drop one element, or swap two neighbours: the last two
    split or reorder one transaction's appends (non-adjacent or out of order)."""
    if how == 0:
        return lst[::-1]
    if how == 1:
        return lst[:-1]
    i = where % len(lst)
    if how == 2:
        return lst[:i] + lst[i + 1:]
    j = min(i + 1, len(lst) - 1)
    out = list(lst)
    out[i], out[j] = out[j], out[i]
    return out


@needs_txn
@ORACLE
@given(rnd=seeds, n=st.integers(1, 4), mutate=st.booleans(), pick=st.integers(0, 10_000))
def test_oracle_agrees_with_txn_checker(rnd: random.Random, n: int, mutate: bool,
                                        pick: int) -> None:
    """Transactions of up to 3 micro-ops over 2 keys, so one txn often appends to a
    key twice; mutated reads then show its appends split or out of order."""
    ops = append_history(rnd, 2, n, keys=2, crash_p=0.15, max_len=3)
    if mutate:
        spots = [(i, j) for i, o in enumerate(ops) if o.type == "ok"
                 for j, m in enumerate(o.value) if m[0] == "r" and m[2]]
        if spots:
            i, j = spots[pick % len(spots)]
            value = [list(m) for m in ops[i].value]
            value[j][2] = _mutate_list(list(value[j][2]), pick % 4, pick // 4)
            ops[i] = replace(ops[i], value=value)
    assert CHECK_TXN is not None
    if intra_txn_reorder(ops):
        # a state no execution produced: reported at every level, read-uncommitted up
        r = CHECK_TXN(ops, workload="list-append", consistency=("read-uncommitted",))
        assert "reordered-appends" in r.anomalies, (ops, r.anomalies)
        if intra_txn_reorder(ops, only_ok=True):
            assert "monotonic-writes" in check_session(ops, model="list-append").anomalies
    for c in ("serializable", "strict-serializable"):
        fast = CHECK_TXN(ops, workload="list-append", consistency=(c,)).valid
        if fast != "unknown":
            assert fast == brute_serializable(ops, "list-append", c), (c, ops)


@needs_txn
@ORACLE
@given(rnd=seeds, n=st.integers(1, 4), mutate=st.booleans(), pick=st.integers(0, 10_000))
def test_oracle_bounds_rw_register_checker(rnd: random.Random, n: int, mutate: bool,
                                           pick: int) -> None:
    """rw-register version orders cannot always be inferred (Elle is incomplete there),
    so only one direction must hold: whatever the checker calls invalid is invalid."""
    ops = rw_register_history(rnd, 2, n)
    if mutate:
        spots = [(i, j) for i, o in enumerate(ops) if o.type == "ok"
                 for j, m in enumerate(o.value) if m[0] == "r"]
        written = [m[2] for o in ops if o.type == "invoke" for m in o.value if m[0] == "w"]
        if spots:
            i, j = spots[pick % len(spots)]
            value = [list(m) for m in ops[i].value]
            value[j][2] = [*written, None][pick % (len(written) + 1)]
            ops[i] = replace(ops[i], value=value)
    assert CHECK_TXN is not None
    for c in ("serializable", "strict-serializable"):
        if CHECK_TXN(ops, workload="rw-register", consistency=(c,)).valid is False:
            assert brute_serializable(ops, "rw-register", c) is False, (c, ops)
    if not mutate:
        assert CHECK_TXN(ops, workload="rw-register",
                         consistency=("strict-serializable",)).valid in (True, "unknown")


def test_oracles_on_known_cases() -> None:
    """The oracles themselves, on histories whose verdicts are known by hand."""
    def pair(p: Any, f: str, v: Any, t: int, typ: str = "ok", out: Any = None) -> list[Op]:
        return [Op(0, "invoke", p, f, v, time=t),
                Op(0, typ, p, f, v if out is None else out, time=t + 1)]  # type: ignore[arg-type]

    def seq(*groups: list[Op]) -> list[Op]:
        flat = [o for g in groups for o in g]
        return [replace(o, index=i) for i, o in enumerate(flat)]

    # write 1 completes, then a read returns nil: not linearizable, but sequential
    h = seq(pair(0, "write", 1, 0), pair(1, "read", None, 10, out=None))
    assert brute_linearizable(h, "register", "linearizable") is False
    assert brute_linearizable(h, "register", "sequential") is True
    # same process: not even sequential
    h2 = seq(pair(0, "write", 1, 0), pair(0, "read", None, 10, out=None))
    assert brute_linearizable(h2, "register", "sequential") is False
    # crashed write may or may not have happened
    h3 = seq(pair(0, "write", 1, 0, typ="info"), pair(1, "read", None, 10, out=1),
             pair(2, "read", None, 20, out=1))
    assert brute_linearizable(h3, "register", "linearizable") is True
    # cas fail is an observed mismatch
    h4 = seq(pair(0, "write", 1, 0), pair(1, "cas", [1, 2], 10, typ="fail"))
    assert brute_linearizable(h4, "cas-register", "linearizable") is False
    # write skew on lists: T1 reads y=[] appends x, T2 reads x=[] appends y
    t1 = pair(0, "txn", [["r", "y", None], ["append", "x", 1]], 0,
              out=[["r", "y", []], ["append", "x", 1]])
    t2 = pair(1, "txn", [["r", "x", None], ["append", "y", 2]], 0,
              out=[["r", "x", []], ["append", "y", 2]])
    both = seq(t1, t2)
    assert brute_serializable(both, "list-append") is False
    t3 = pair(2, "txn", [["r", "x", None]], 5, out=[["r", "x", [1]]])
    assert brute_serializable(seq(t1, t3), "list-append", "strict-serializable") is True
    t4 = pair(2, "txn", [["r", "x", None]], 5, out=[["r", "x", []]])
    assert brute_serializable(seq(t1, t4), "list-append", "serializable") is True
    assert brute_serializable(seq(t1, t4), "list-append", "strict-serializable") is False
