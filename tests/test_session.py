"""Session guarantees: valid sessions pass; each guarantee's violation is caught and named."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from selfhood.checkers.history import Op
from selfhood.checkers.session import GUARANTEES, _check, check_session
from selfhood.errors import SpecError


class H:
    """Sequential history builder: each call is one invoke + completion."""

    def __init__(self) -> None:
        self.ops: list[Op] = []

    def op(self, p: Any, f: str, inv: Any, typ: str = "ok", comp: Any = None,
           **extra: Any) -> H:
        t = len(self.ops)
        self.ops.append(Op(t, "invoke", p, f, inv, time=t * 10, extra=dict(extra)))
        self.ops.append(Op(t + 1, typ, p, f, inv if comp is None else comp,  # type: ignore[arg-type]
                           time=t * 10 + 5, extra=dict(extra)))
        return self

    def w(self, p: Any, v: Any, typ: str = "ok") -> H:
        return self.op(p, "write", v, typ)

    def r(self, p: Any, v: Any) -> H:
        return self.op(p, "read", None, "ok", v)

    def put(self, p: Any, k: str, v: Any) -> H:
        return self.op(p, "put", v, key=k)

    def get(self, p: Any, k: str, v: Any) -> H:
        return self.op(p, "get", None, "ok", v, key=k)

    def txn(self, p: Any, mops: list[list[Any]]) -> H:
        return self.op(p, "txn", mops)


def test_valid_register_sessions() -> None:
    h = (H().w(0, 1).r(1, 1).w(0, 2).r(1, 2).r(0, 2).op(2, "cas", [2, 3]).r(1, 3).r(0, 3))
    r = check_session(h.ops, model="cas-register")
    assert r.valid is True, r.anomalies
    assert r.details["session"]["reads_checked"] == 6


def test_read_your_writes_initial_value() -> None:
    r = check_session(H().w(0, 1).r(0, None).ops, model="register")
    assert r.anomaly_types == ["read-your-writes"]
    assert "process 0 read None=None" in r.anomalies["read-your-writes"][0] or \
        "read None" in r.anomalies["read-your-writes"][0]
    assert {"sequential", "linearizable", "read-your-writes"} <= r.not_


def test_read_your_writes_older_own_value() -> None:
    r = check_session(H().w(0, 1).w(0, 2).r(0, 1).ops, model="register")
    assert r.anomaly_types == ["read-your-writes"]


def test_crashed_write_is_no_floor() -> None:
    assert check_session(H().w(0, 1, "info").r(0, None).ops, model="register").valid is True


def test_monotonic_reads() -> None:
    h = H().w(0, 1).w(0, 2).r(1, 2).r(1, 1)
    r = check_session(h.ops, model="register")
    assert r.anomaly_types == ["monotonic-reads"]
    # the reader's own knowledge also orders versions: it wrote 1, then saw 2
    h2 = H().w(0, 1).w(1, 2).r(0, 2).r(0, 1)
    assert check_session(h2.ops, model="register").anomaly_types == ["monotonic-reads"]
    # a newer value after an older one is fine
    assert check_session(H().w(0, 1).r(1, 1).w(0, 2).r(1, 2).ops, model="register").valid


def test_monotonic_writes_across_keys() -> None:
    h = H().put(0, "x", 1).put(0, "y", 2).get(1, "y", 2).get(1, "x", None)
    r = check_session(h.ops, model="kv")
    assert r.anomaly_types == ["monotonic-writes"]
    assert "already written" in r.anomalies["monotonic-writes"][0]


def test_writes_follow_reads() -> None:
    h = H().put(2, "x", 1).get(0, "x", 1).put(0, "y", 2).get(1, "y", 2).get(1, "x", None)
    r = check_session(h.ops, model="kv")
    assert r.anomaly_types == ["writes-follow-reads"]
    # without the dependency (process 0 never read x) there is nothing to follow
    h2 = H().put(2, "x", 1).put(0, "y", 2).get(1, "y", 2).get(1, "x", None)
    assert check_session(h2.ops, model="kv").valid is True


def test_independent_kv_tuple_values() -> None:
    h = H().op(0, "write", ["k", 1]).op(0, "read", ["k", None], comp=["k", None])
    assert check_session(h.ops, model="kv").anomaly_types == ["read-your-writes"]


def test_list_append_sessions() -> None:
    ok = (H().txn(0, [["append", "x", 1]]).txn(1, [["r", "x", [1]]])
          .txn(0, [["append", "x", 2], ["r", "x", [1, 2]]]).txn(1, [["r", "x", [1, 2]]]))
    assert check_session(ok.ops, model="list-append").valid is True
    ryw = H().txn(0, [["append", "x", 1]]).txn(0, [["r", "x", []]])
    assert check_session(ryw.ops, model="list-append").anomaly_types == ["read-your-writes"]
    mr = (H().txn(0, [["append", "x", 1]]).txn(0, [["append", "x", 2]])
          .txn(1, [["r", "x", [1, 2]]]).txn(1, [["r", "x", [1]]]))
    assert check_session(mr.ops, model="list-append").anomaly_types == ["monotonic-reads"]
    gap = H().txn(0, [["append", "x", 1]]).txn(0, [["append", "x", 2]]).txn(1, [["r", "x", [2]]])
    r = check_session(gap.ops, model="list-append")
    assert r.anomaly_types == ["monotonic-writes"]
    assert "not its earlier acknowledged append" in r.anomalies["monotonic-writes"][0]
    order = (H().txn(0, [["append", "x", 1]]).txn(0, [["append", "x", 2]])
             .txn(1, [["r", "x", [2, 1]]]))
    assert check_session(order.ops, model="list-append").anomaly_types == ["monotonic-writes"]


def test_rw_register_txn() -> None:
    h = (H().txn(0, [["w", "x", 1]]).txn(0, [["w", "y", 1]])
         .txn(1, [["r", "y", 1], ["r", "x", None]]))
    assert check_session(h.ops, model="rw-register").anomaly_types == ["monotonic-writes"]
    # within one transaction the two writes are atomic, not ordered: that is G1, not a session
    # guarantee
    h2 = H().txn(0, [["w", "x", 1], ["w", "y", 1]]).txn(1, [["r", "y", 1], ["r", "x", None]])
    assert check_session(h2.ops, model="rw-register").valid is True


def test_set_sessions() -> None:
    h = H().op(0, "add", 1).op(0, "read", None, "ok", [])
    assert check_session(h.ops, model="set").anomaly_types == ["read-your-writes"]
    h2 = H().op(0, "add", 1).op(1, "add", 2).op(0, "read", None, "ok", [2, 1])
    assert check_session(h2.ops, model="set").valid is True


def test_an_element_read_twice_is_an_anomaly() -> None:
    """A set read holds each element once, and a list read shows each (unique) append once:
    an element twice is no state at all (the linearizability checker and the oracle reject
    it too), whatever guarantees are asked for."""
    twice = H().op(0, "add", 1).op(1, "add", 2).op(1, "read", None, "ok", [2, 1, 2])
    for gs in (["read-your-writes", "monotonic-reads", "monotonic-writes",
                "writes-follow-reads"], ["monotonic-reads"]):
        r = check_session(twice.ops, model="set", guarantees=gs)
        assert r.valid is False and r.anomaly_types == ["duplicate-elements"], gs
        assert "2" in r.anomalies["duplicate-elements"][0] and "op 5" in \
            r.anomalies["duplicate-elements"][0]
        assert {"linearizable", *gs} <= r.not_
    once = H().op(0, "add", 1).op(1, "add", 2).op(1, "read", None, "ok", [2, 1])
    assert check_session(once.ops, model="set").valid is True
    # an element added twice is still held once; reading it twice is still wrong
    added_twice = H().op(0, "add", 1).op(1, "add", 1)
    assert check_session(H().op(0, "add", 1).op(1, "add", 1).op(1, "read", None, "ok", [1]).ops,
                         model="set").valid is True
    assert check_session(added_twice.op(1, "read", None, "ok", [1, 1]).ops,
                         model="set").anomaly_types == ["duplicate-elements"]
    la = H().txn(0, [["append", "x", 1]]).txn(1, [["r", "x", [1, 1]]])
    assert check_session(la.ops, model="list-append").anomaly_types == ["duplicate-elements"]
    assert check_session(H().txn(0, [["append", "x", 1]]).txn(1, [["r", "x", [1]]]).ops,
                         model="list-append").valid is True


def test_subset_of_guarantees_and_bad_names() -> None:
    h = H().w(0, 1).r(0, None)
    assert check_session(h.ops, model="register", guarantees=["monotonic-reads"]).valid is True
    with pytest.raises(SpecError):
        check_session(h.ops, model="register", guarantees=["causal"])
    with pytest.raises(SpecError):
        check_session(h.ops, model="kafka")


def test_duplicate_values_skip_key() -> None:
    h = H().w(0, 1).w(1, 1).r(0, None)
    r = check_session(h.ops, model="register")
    assert r.valid is True
    assert r.details["session"]["skipped_keys"] == ["None"]


# --- agreement with the plain definitions on lists (where they are exact) -------------

def stale_replica_history(choices: list[tuple[int, bool, str, int]]) -> list[Op]:
    """Sequential list-append ops where each read returns some prefix of the true list
    (a lagging replica): appends are acknowledged, reads may be arbitrarily stale."""
    state: dict[str, list[int]] = {"x": [], "y": []}
    h = H()
    for n, (p, is_append, k, lag) in enumerate(choices):
        if is_append:
            state[k].append(n)
            h.txn(p, [["append", k, n]])
        else:
            cut = max(0, len(state[k]) - lag)
            h.op(p, "txn", [["r", k, None]], "ok", [["r", k, state[k][:cut]]])
    return h.ops


def naive_counts(ops: list[Op]) -> tuple[int, int]:
    """Reads missing one of the process's own earlier appends; reads missing something
    the process had read before."""
    own: dict[Any, set[int]] = {}
    seen: dict[tuple[Any, str], set[int]] = {}
    ryw = mr = 0
    for o in ops:
        if o.type != "ok":
            continue
        f, k, v = o.value[0]
        if f == "append":
            own.setdefault((o.process, k), set()).add(v)
            continue
        got = set(v)
        ryw += not own.get((o.process, k), set()) <= got
        mr += not seen.get((o.process, k), set()) <= got
        seen.setdefault((o.process, k), set()).update(v)
    return ryw, mr


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.booleans(), st.sampled_from(["x", "y"]),
                          st.integers(0, 3)), max_size=40))
def test_list_sessions_agree_with_plain_definitions(
        choices: list[tuple[int, bool, str, int]]) -> None:
    ops = stale_replica_history(choices)
    ryw, mr = naive_counts(ops)
    r = check_session(ops, model="list-append", guarantees=["read-your-writes"])
    assert len(r.anomalies.get("read-your-writes", [])) == ryw
    # reads are prefixes of one order, so a missing earlier-read element means its
    # writer's newest read element is missing too: per-writer floors are exact here
    m = check_session(ops, model="list-append", guarantees=["monotonic-reads"])
    assert len(m.anomalies.get("monotonic-reads", [])) == mr
    # a reader that never lags sees no violation at all
    fresh = stale_replica_history([(p, a, k, 0) for p, a, k, _ in choices])
    assert check_session(fresh, model="list-append").valid is True


def test_jepsen_independent_register_keys() -> None:
    h = (H().op(0, "write", ["a", 1]).op(0, "write", ["b", 2])
         .op(0, "read", ["a", None], comp=["a", 1]).op(0, "read", ["b", None], comp=["b", None])
         .op(1, "cas", ["a", [1, 3]]).op(1, "read", ["a", None], comp=["a", 1]))
    r = check_session(h.ops, model="cas-register")
    assert r.anomaly_types == ["read-your-writes"]
    assert len(r.anomalies["read-your-writes"]) == 2  # b after writing 2; a after cas to 3
    assert "'b'" in r.anomalies["read-your-writes"][0]


# --- soundness on registers against the true version order -----------------------------


def lagging_register_history(choices: list[tuple[int, bool, str, int]]
                             ) -> tuple[list[Op], dict[int, set[str]]]:
    """Registers over one global log (the true version order); each read returns the
    state of a lagging replica: some prefix of the log. Returns the history and, per
    read op index, the guarantees it truly violates (computed from log positions)."""
    log: list[tuple[str, int]] = []
    pos: dict[tuple[str, Any], int] = {}
    h = H()
    own: dict[tuple[int, str], int] = {}  # (process, key) -> position of own latest write
    read_max: dict[tuple[int, str], int] = {}  # versions read (max position)
    writes_by: dict[int, list[int]] = {}  # process -> positions of its writes
    reads_before: dict[int, dict[str, int]] = {}  # write position -> writer's reads then
    imposed: dict[tuple[int, str], dict[str, int]] = {}  # (p, k) -> guarantee -> floor
    truth: dict[int, set[str]] = {}
    for n, (p, is_write, k, lag) in enumerate(choices):
        if is_write:
            at = len(log)
            log.append((k, n))
            pos[(k, n)] = at
            own[(p, k)] = at
            writes_by.setdefault(p, []).append(at)
            reads_before[at] = {kk: v for (pp, kk), v in read_max.items() if pp == p}
            h.op(p, "write", [k, n])
            continue
        cut = max(0, len(log) - lag)
        at_v = max((i for i in range(cut) if log[i][0] == k), default=-1)
        value = None if at_v < 0 else log[at_v][1]
        index = len(h.ops) + 1
        h.op(p, "read", [k, None], comp=[k, value])
        floors = dict(imposed.get((p, k), {}))
        if (p, k) in own:
            floors["read-your-writes"] = own[(p, k)]
        if (p, k) in read_max:
            floors["monotonic-reads"] = read_max[(p, k)]
        truth[index] = {g for g, f in floors.items() if f > at_v}
        if at_v >= 0:
            read_max[(p, k)] = max(read_max.get((p, k), -1), at_v)
            writer = next(q for q, ws in writes_by.items() if at_v in ws)
            if writer != p:
                for w in writes_by[writer]:
                    if w < at_v:
                        fl = imposed.setdefault((p, log[w][0]), {})
                        fl["monotonic-writes"] = max(fl.get("monotonic-writes", -1), w)
                for kk, r in reads_before[at_v].items():
                    fl = imposed.setdefault((p, kk), {})
                    fl["writes-follow-reads"] = max(fl.get("writes-follow-reads", -1), r)
    return h.ops, truth


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.booleans(), st.sampled_from(["a", "b"]),
                          st.integers(0, 3)), max_size=40))
def test_register_session_checker_is_sound(choices: list[tuple[int, bool, str, int]]) -> None:
    ops, truth = lagging_register_history(choices)
    r = check_session(ops, model="register")
    for g, cases in r.anomalies.items():
        for e in cases:
            # the reported read, or the earlier read that set the violated floor, truly
            # violates a guarantee
            blamed = [int(x.split(")")[0].split(",")[0]) for x in e.split("(op ")[1:]]
            assert any(truth.get(i) for i in blamed), (g, e, truth)
    if not any(truth.values()):
        assert r.valid is True
    # a read of the initial value after one's own write is always found
    ryw = check_session(ops, model="register", guarantees=["read-your-writes"])
    flagged = {int(e.split("(op ")[1].split(")")[0])
               for e in ryw.anomalies.get("read-your-writes", [])}
    for index, gs in truth.items():
        if "read-your-writes" in gs and ops[index].value[1] is None:
            assert index in flagged


def test_kv_empty_string_is_the_initial_value() -> None:
    h = H().put(0, "k", "v1").get(0, "k", "")
    assert check_session(h.ops, model="kv").anomaly_types == ["read-your-writes"]


def naive_monotonic_writes(ops: list[Op]) -> int:
    """Reads missing, for some writer q whose append p had read earlier, q's last own
    append to this key made before that append (single-micro-op list histories)."""
    ordinal: dict[Any, int] = {}
    at: dict[int, tuple[Any, int]] = {}  # appended value -> (writer, ordinal)
    own: dict[tuple[Any, str], list[tuple[int, int]]] = {}  # (q, key) -> [(ordinal, value)]
    bound: dict[Any, dict[Any, int]] = {}  # reader -> writer -> max ordinal seen
    bad = 0
    for o in ops:
        if o.type != "ok":
            continue
        p = o.process
        ordinal[p] = ordinal.get(p, 0) + 1
        f, k, v = o.value[0]
        if f == "append":
            at[v] = (p, ordinal[p])
            own.setdefault((p, k), []).append((ordinal[p], v))
            continue
        got = set(v)
        need = []
        for q, b in bound.get(p, {}).items():
            before = [val for n, val in own.get((q, k), []) if n < b]
            if before:
                need.append(before[-1])
        bad += any(x not in got for x in need)
        for x in v:
            q, n = at[x]
            if q != p:
                bound.setdefault(p, {})[q] = max(bound.get(p, {}).get(q, 0), n)
    return bad


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.booleans(), st.sampled_from(["x", "y"]),
                          st.integers(0, 3)), max_size=40))
def test_list_monotonic_writes_agree_with_the_plain_definition(
        choices: list[tuple[int, bool, str, int]]) -> None:
    """The monotonic-writes bounds (kept per writer, read lazily per key) give exactly
    the plain definition's violations on stale-replica histories."""
    ops = stale_replica_history(choices)
    r = check_session(ops, model="list-append", guarantees=["monotonic-writes"])
    assert len(r.anomalies.get("monotonic-writes", [])) == naive_monotonic_writes(ops)


# --- long reads: the per-key prefix index answers as a full pass over each read would ----


def damaged_list_history(steps: list[tuple[int, int, str, int, int]]) -> list[Op]:
    """Concurrent-looking list-append txns whose reads are the true list, a stale prefix,
    or damaged: an element dropped, two swapped, one repeated, a foreign value added, the
    list reversed. Reads repeat, extend and diverge from one another, as the index sees
    them in buggy systems."""
    state: dict[str, list[int]] = {"x": [], "y": []}
    h = H()
    for n, (p, what, k, damage, at) in enumerate(steps):
        if what < 2:
            state[k].append(n)
            h.op(p, "txn", [["append", k, n]], "info" if what == 1 and at % 3 == 0 else "ok")
            continue
        v = list(state[k])
        i = at % (len(v) + 1)
        if damage == 1:
            v = v[:i]
        elif damage == 2 and v:
            del v[i % len(v)]
        elif damage == 3 and len(v) > 1:
            j = i % (len(v) - 1)
            v[j], v[j + 1] = v[j + 1], v[j]
        elif damage == 4 and v:
            v.insert(i, v[i % len(v)])
        elif damage == 5:
            v.append(1000 + at)
        elif damage == 6:
            v.reverse()
        mops: list[list[Any]] = [["r", k, v]]
        if what == 3:  # a second read of the same key in one txn (stale if damaged)
            mops.append(["r", k, v[:i] if damage else v])
        h.op(p, "txn", [[f, kk, None] for f, kk, _ in mops], "ok", mops)
    return h.ops


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 3), st.sampled_from(["x", "y"]),
                          st.sampled_from([0, 0, 0, 1, 1, 2, 3, 4, 5, 6]),
                          st.integers(0, 40)), max_size=50))
def test_list_index_agrees_with_reading_every_list_in_full(
        steps: list[tuple[int, int, str, int, int]]) -> None:
    """Whether a read is answered from the key's index or scanned in full, the result
    (verdict, every explanation, in order) is the same, valid histories and broken alike."""
    ops = damaged_list_history(steps)
    fast = check_session(ops, model="list-append")
    plain = _check(ops, "list-append", GUARANTEES, None, index=False)
    assert (fast.valid, fast.anomalies, fast.not_, fast.details) == \
        (plain.valid, plain.anomalies, plain.not_, plain.details)
    if all(d == 0 for _, what, _, d, _ in steps if what >= 2):
        assert fast.valid is True  # whole, current reads of acknowledged appends


def test_list_index_catches_what_extends_or_diverges() -> None:
    """Each anomaly still found when the read is a prefix of, extends, or leaves the
    indexed list."""
    base = H().txn(0, [["append", "x", 1]]).txn(0, [["append", "x", 2]])
    # extends the indexed [1] by a tail that repeats a value
    dup = H()
    dup.ops = [*base.ops]
    dup.txn(1, [["r", "x", [1]]]).txn(1, [["r", "x", [1, 2, 1]]])
    assert "duplicate-elements" in check_session(dup.ops, model="list-append").anomalies
    # a stale prefix of the indexed list after reading the whole: monotonic-reads
    stale = H()
    stale.ops = [*base.ops]
    stale.txn(1, [["r", "x", [1, 2]]]).txn(1, [["r", "x", [1]]])
    assert check_session(stale.ops, model="list-append").anomaly_types == ["monotonic-reads"]
    # diverges from the indexed list (2 without 1), then a prefix of the first again
    div = H()
    div.ops = [*base.ops]
    div.txn(2, [["r", "x", [1, 2]]]).txn(1, [["r", "x", [2]]]).txn(1, [["r", "x", [1, 2]]])
    r = check_session(div.ops, model="list-append")
    assert r.anomaly_types == ["monotonic-writes"]
    assert "not its earlier acknowledged append" in r.anomalies["monotonic-writes"][0]
    # an out-of-order tail appended to the index
    ooo = H()
    ooo.ops = [*base.ops]
    ooo.txn(0, [["append", "x", 3]]).txn(1, [["r", "x", [1]]]).txn(1, [["r", "x", [1, 3, 2]]])
    r = check_session(ooo.ops, model="list-append")
    assert r.anomaly_types == ["monotonic-writes"]
    assert "out of the order" in r.anomalies["monotonic-writes"][0]
    # valid: repeated, growing whole reads by several readers
    ok = H()
    ok.ops = [*base.ops]
    for p in (1, 2, 1, 2):
        ok.txn(p, [["r", "x", [1, 2]]])
    ok.txn(0, [["append", "x", 3]]).txn(2, [["r", "x", [1, 2, 3]]]).txn(1, [["r", "x", [1, 2]]])
    assert check_session(ok.ops, model="list-append").valid is True
