"""Identity verdicts, both directions: a clean history passes, each anomaly is caught."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from selfhood.checkers.history import Op
from selfhood.checkers.identity import check_identity, staleness
from selfhood.checkers.measures import percentile

T = "i0/transcript"
SUB = "i0/mem/subtask/k0"


class H:
    """A tiny history builder: each call appends one invoke/completion pair."""

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self.t = 0

    def _add(self, type_: str, process: Any, f: str, value: Any, node: str | None,
             instance: str | None) -> None:
        self.t += 1_000_000
        self.ops.append(Op(len(self.ops), type_, process, f, value, self.t,  # type: ignore[arg-type]
                           node, instance))

    def op(self, process: Any, f: str, inv: Any, done: Any, *, node: str | None = "r0",
           instance: str | None = "i0", type_: str = "ok") -> H:
        self._add("invoke", process, f, inv, None, instance)
        self._add(type_, process, f, done, node, instance)
        return self

    def append(self, process: Any, v: int, node: str = "r0", seen: list[int] | None = None,
               mem: int | None = None) -> H:
        inv: list[Any] = [["r", T, None], ["append", T, v]]
        done: list[Any] = [["r", T, seen or []], ["append", T, v]]
        if mem is not None:
            inv.append(["w", SUB, mem])
            done.append(["w", SUB, mem])
        return self.op(process, "txn", inv, done, node=node)

    def read(self, process: Any, seen: list[int], node: str = "r0",
             mem: Any = "absent") -> H:
        inv: list[Any] = [["r", T, None]]
        done: list[Any] = [["r", T, seen]]
        if mem != "absent":
            inv.append(["r", SUB, None])
            done.append(["r", SUB, mem])
        return self.op(process, "txn", inv, done, node=node)

    def nemesis(self, f: str, value: Any = None) -> H:
        self._add("invoke", "nemesis", f, value, None, None)
        self._add("info", "nemesis", f, value, None, None)
        return self

    def probe(self, replica: str, fp: str) -> H:
        return self.op(9, "probe", {"replica": replica},
                       {"replica": replica, "fingerprint": fp, "version": 1}, node=replica)

    def final(self, replica: str, fp: str, transcript: list[int], rules: list[int] | None = None,
              instance: str = "i0") -> H:
        return self.op(9, "final-read", {"replica": replica},
                       {"replica": replica, "fingerprint": fp, "transcript": transcript,
                        "rules": rules or [], "memory": {}}, node=replica, instance=instance)

    def finals(self, fp: str, transcript: list[int], rules: list[int] | None = None) -> H:
        for r in ("r0", "r1"):
            self.final(r, fp, transcript, rules)
        return self


def clean() -> H:
    return (H().append(0, 1).append(1, 2, node="r1", seen=[1]).read(0, [1, 2])
            .read(1, [1, 2], node="r1").nemesis("heal").probe("r0", "aa").probe("r1", "aa")
            .finals("aa", [1, 2]))


def test_clean_history_is_valid() -> None:
    res = check_identity(clean().ops, replicas=["r0", "r1"])
    assert res.valid
    assert res.summary() == {"instances": 1, "fingerprints_agree": 1, "forks": 0,
                             "forgotten_acks": 0, "revived_rules": 0, "torn_memory": 0,
                             "converged": True, "convergence_ms": 0.0}


def test_fork_is_caught_and_a_stale_prefix_is_not_a_fork() -> None:
    stale = H().append(0, 1).append(1, 2, seen=[1]).read(2, [1], node="r1").read(0, [1, 2])
    assert check_identity(stale.ops).forks == 0
    # a later, shorter read (another replica lagging) is staleness, not a fork
    behind = H().append(0, 1).append(1, 2, seen=[1]).read(0, [1, 2]).read(2, [1], node="r1")
    assert check_identity(behind.ops).forks == 0
    forked = H().append(0, 1).append(1, 2, node="r1").read(0, [1, 2]).read(1, [2, 1])
    res = check_identity(forked.ops)
    assert res.forks == 1
    assert res.cases["forks"][0]["read_from"] == [1, 2]
    assert res.cases["forks"][0]["diverge_at"] == 0
    # concurrent reads cannot be ordered, so they are not judged against each other
    h = H()
    h.ops = [Op(0, "invoke", 0, "txn", [["r", T, None]], 1), Op(1, "invoke", 1, "txn",
             [["r", T, None]], 2), Op(2, "ok", 0, "txn", [["r", T, [1, 2]]], 3),
             Op(3, "ok", 1, "txn", [["r", T, [2, 1]]], 4)]
    assert check_identity(h.ops).forks == 0


def test_forgotten_ack_same_session_or_final_read() -> None:
    # another session missing the turn is allowed (sequential, not linearizable)
    other = H().append(0, 1).read(1, [], node="r1")
    assert check_identity(other.ops).forgotten_acks == 0
    # the same session missing its own acknowledged turn after failover is not
    mine = H().append(0, 1, node="r0").read(0, [], node="r1")
    res = check_identity(mine.ops)
    assert res.forgotten_acks == 1
    assert res.cases["forgotten_acks"][0]["failover"] is True
    # a final read that lacks an acknowledged turn: the instance lost it
    lost = H().append(0, 1).append(1, 2, seen=[1]).finals("aa", [1])
    assert check_identity(lost.ops).forgotten_acks == 1


def test_revived_rule() -> None:
    ok = (H().op(0, "add-rule", 3, 3).op(0, "revoke-rule", 3, 3).op(1, "read-rules", None, [3])
          .op(1, "read-rules", None, []).finals("aa", [], []))
    # process 1 saw it before it saw it gone: stale, not revived
    assert check_identity(ok.ops).revived_rules == 0
    back = (H().op(0, "add-rule", 3, 3).op(0, "revoke-rule", 3, 3).op(1, "read-rules", None, [])
            .op(1, "read-rules", None, [3], node="r1"))
    assert check_identity(back.ops).revived_rules == 1
    own = H().op(0, "add-rule", 3, 3).op(0, "revoke-rule", 3, 3).op(0, "read-rules", None, [3])
    assert check_identity(own.ops).revived_rules == 1
    final = H().op(0, "add-rule", 3, 3).op(0, "revoke-rule", 3, 3).finals("aa", [], [3])
    assert check_identity(final.ops).revived_rules == 1


def test_torn_memory() -> None:
    good = H().append(0, 1, mem=100).read(1, [1], mem=100)
    assert check_identity(good.ops).torn_memory == 0
    later = H().append(0, 1, mem=100).append(0, 2, mem=101, seen=[1]).read(1, [1, 2], mem=101)
    assert check_identity(later.ops).torn_memory == 0
    torn = H().append(0, 1, mem=100).read(1, [1], mem=None)
    assert check_identity(torn.ops).torn_memory == 1
    older = H().append(0, 1, mem=100).append(0, 2, mem=101, seen=[1]).read(1, [1, 2], mem=100)
    res = check_identity(older.ops)
    assert res.torn_memory == 1 and res.cases["torn_memory"][0]["expected"] == 101


def test_torn_memory_reported_by_the_replica() -> None:
    h = H().append(0, 1, mem=100)
    h.ops.append(Op(len(h.ops), "invoke", 1, "txn", [["r", T, None]], h.t + 1, None, "i0"))
    h.ops.append(Op(len(h.ops), "ok", 1, "txn", [["r", T, [1]]], h.t + 2, "r1", "i0",
                    extra={"deps_missing": [[1, ["ev-1"]]]}))
    res = check_identity(h.ops)
    assert res.torn_memory == 1 and res.cases["torn_memory"][0]["turn"] == 1


def test_fingerprints_disagree_means_not_converged() -> None:
    h = H().append(0, 1).nemesis("heal").final("r0", "aa", [1]).final("r1", "bb", [1])
    res = check_identity(h.ops, replicas=["r0", "r1"])
    assert res.fingerprints_agree == 0 and not res.converged and res.convergence_ms is None
    missing = H().append(0, 1).final("r0", "aa", [1])
    assert not check_identity(missing.ops, replicas=["r0", "r1"]).converged


def test_convergence_time_is_the_last_divergent_probe_after_heal() -> None:
    h = (H().append(0, 1).probe("r1", "old").nemesis("heal").probe("r1", "old")
         .probe("r1", "old").probe("r1", "aa").finals("aa", [1]))
    heal_t = max(o.time or 0 for o in h.ops if o.f == "heal")
    last_old = max(o.time or 0 for o in h.ops if o.type == "ok" and o.f == "probe"
                   and o.value["fingerprint"] == "old")
    res = check_identity(h.ops)
    assert res.converged
    assert res.convergence_ms == (last_old - heal_t) / 1e6 > 0


def test_staleness() -> None:
    fresh = H().append(0, 1).read(1, [1])
    assert staleness(fresh.ops)["k_max"] == 0
    stale = H().append(0, 1).append(0, 2, seen=[1]).read(1, [])
    st_ = staleness(stale.ops)
    assert st_["k_max"] == 2 and st_["t_p99_ms"] > 0 and st_["stale_reads"] == 1


@given(st.lists(st.floats(0, 1000), min_size=1, max_size=50), st.floats(1, 100))
def test_percentile_is_an_element_within_bounds(xs: list[float], q: float) -> None:
    p = percentile(xs, q)
    assert p in xs and min(xs) <= p <= max(xs)


@given(st.permutations(list(range(1, 8))))
def test_appending_in_one_order_never_forks(order: list[int]) -> None:
    h = H()
    seen: list[int] = []
    for i, v in enumerate(order):
        h.append(i % 3, v, node=f"r{i % 2}", seen=list(seen))
        seen.append(v)
        h.read((i + 1) % 3, list(seen), node=f"r{(i + 1) % 2}")
    h.nemesis("heal").finals("fp", seen)
    res = check_identity(h.ops, replicas=["r0", "r1"])
    assert res.valid, res.cases
