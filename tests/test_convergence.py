"""Convergence has one home (`checkers.convergence`): the convergence, CRDT and identity
checkers read final reads, replicas and agreement the same way, both directions.

Each test of a finding failed before the measure had one home: the CRDT checker
called two replicas holding the same set in different orders divergent, and
compared a replica's untimed last final read as its first; the convergence
checker compared sets by their frozenset repr, lumped the sets of every
instance (and Jepsen's independent registers) into one key, and called a
history whose final reads read no key valid; the identity verdict ignored a
broker restart as a heal.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from selfhood.checkers.api import check_history
from selfhood.checkers.crdt import check_crdt
from selfhood.checkers.history import Op, reindex
from selfhood.checkers.identity import check_identity
from selfhood.checkers.staleness import check_convergence

MS = 1_000_000


class H:
    """Each op an invoke followed by its completion, 1 ms apart."""

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self.t = 0

    def op(self, f: str, value: Any, result: Any = None, *, node: str | None = "r0",
           process: Any = 0, instance: str | None = "i0", final: bool = False,
           timed: bool = True, type_: str = "ok") -> H:
        extra = {"final": True} if final else {}
        for typ, v in (("invoke", value), (type_, value if result is None else result)):
            self.t += MS
            self.ops.append(Op(0, typ, process, f, v, self.t if timed else None,  # type: ignore[arg-type]
                               node, instance, None, dict(extra)))
        return self

    def final(self, node: str, value: Any, *, instance: str | None = "i0",
              timed: bool = True) -> H:
        return self.op("final-read", None, value, node=node, process=f"final-{node}",
                       instance=instance, timed=timed)

    def nemesis(self, f: str) -> H:
        self.t += MS
        self.ops.append(Op(0, "info", "nemesis", f, None, self.t))
        return self

    def history(self) -> list[Op]:
        return reindex(self.ops)


def set_history(reads: dict[str, list[int]], *, instance: str = "i0") -> H:
    h = H().op("add", 1, instance=instance).op("add", 2, node="r1", instance=instance)
    for node, elems in reads.items():
        h.op("read", None, elems, node=node, process=f"final-{node}", instance=instance,
             final=True)
    return h


# --- the set-order bug --------------------------------------------------------------


def test_crdt_sets_compare_as_sets() -> None:
    """Two replicas holding the same set in different orders agree; a different set does not."""
    same = check_crdt(set_history({"r0": [1, 2], "r1": [2, 1]}).history(), model="set")
    assert same.valid is True, same.anomalies
    other = check_crdt(set_history({"r0": [1, 2], "r1": [2]}).history(), model="set")
    assert "divergent-final-reads" in other.anomalies
    assert "r1 ended with [2]" in other.anomalies["divergent-final-reads"][0]


def test_crdt_lists_still_compare_in_order() -> None:
    h = H().op("txn", [["append", "x", 1]]).op("txn", [["append", "x", 2]], node="r1")
    h.final("r0", [["r", "x", [1, 2]]]).final("r1", [["r", "x", [2, 1]]])
    r = check_crdt(h.history(), model="list-append")
    assert set(r.anomalies) == {"divergent-final-reads"}


def test_convergence_sets_compare_as_sets() -> None:
    """1 and 9 share a hash bucket, so frozenset([1, 9]) and frozenset([9, 1]) print
    differently: compared by repr, the same set was called divergent."""
    h = H().final("r0", [1, 9]).final("r1", [9, 1])
    assert check_convergence(h.history(), model="set").valid is True
    bad = H().final("r0", [1, 9]).final("r1", [9])
    assert check_convergence(bad.history(), model="set").valid is False


# --- one key per set, one key per register --------------------------------------------


def test_convergence_judges_each_instance_set_apart() -> None:
    """Each replica's last read of *each* instance's set counts: a divergence on i0 is not
    hidden by i1 read last, and i0's set is never compared with i1's."""
    def hist(r1_i0: list[int], order: tuple[str, str]) -> list[Op]:
        h = H()
        for node, sets in (("r0", {"i0": [1], "i1": [2]}), ("r1", {"i0": r1_i0, "i1": [2]})):
            for inst in (order if node == "r1" else ("i0", "i1")):
                h.final(node, sets[inst], instance=inst)
        return h.history()

    assert check_convergence(hist([1], ("i1", "i0")), model="set").valid is True
    bad = check_convergence(hist([3], ("i0", "i1")), model="set")
    assert bad.valid is False
    assert bad.anomalies["divergent-final-reads"][0].startswith("key 'i0':")
    assert bad.details["convergence"]["keys"] == 2


def test_convergence_reads_independent_registers_by_key() -> None:
    """Jepsen's independent [k v] registers (selfhood's register.jsonl) are one key each."""
    def hist(r1_x: int, order: tuple[str, str]) -> list[Op]:
        h = H()
        for node, vals in (("r0", {"x": 1, "y": 2}), ("r1", {"x": r1_x, "y": 2})):
            for k in (order if node == "r1" else ("x", "y")):
                h.op("read", [k, None], [k, vals[k]], node=node, process=f"f-{node}-{k}",
                     final=True)
        return h.history()

    assert check_convergence(hist(1, ("y", "x")), model="register").valid is True
    bad = check_convergence(hist(5, ("x", "y")), model="register")
    assert bad.valid is False and bad.anomalies["divergent-final-reads"][0].startswith("key 'x':")
    assert check_crdt(hist(5, ("x", "y")), model="register").anomalies[
        "divergent-final-reads"] == bad.anomalies["divergent-final-reads"]


# --- which final read is a replica's last ---------------------------------------------


def test_crdt_last_final_read_is_the_last_invoked_even_untimed() -> None:
    """A replica's last final read is its last in the history (file order is real-time
    order), also when it carries no time; it used to sort as time 0, i.e. first."""
    h = H().op("txn", [["append", "x", 1]]).op("txn", [["append", "x", 2]], node="r1")
    h.final("r0", [["r", "x", [1]]]).final("r0", [["r", "x", [1, 2]]], timed=False)
    h.final("r1", [["r", "x", [1, 2]]])
    r = check_crdt(h.history(), model="list-append")
    assert r.valid is True, r.anomalies
    h.final("r0", [["r", "x", [1]]], timed=False)
    assert "divergent-final-reads" in check_crdt(h.history(), model="list-append").anomalies


# --- what a final read says -----------------------------------------------------------


def test_final_reads_that_read_no_key_are_unknown() -> None:
    """A final read that reads nothing is no evidence of convergence: unknown, not valid."""
    h = H().op("txn", [["append", "x", 1]]).final("r0", []).final("r1", [])
    r = check_convergence(h.history(), model="list-append")
    assert r.valid == "unknown" and r.unknown_reasons
    h.final("r0", [["r", "x", [1]]]).final("r1", [["r", "x", [1]]])
    assert check_convergence(h.history(), model="list-append").valid is True


def test_crdt_reads_map_valued_final_reads_like_convergence() -> None:
    """A final read returning {key: value} is judged by both checkers (crdt ignored it)."""
    h = H().op("txn", [["append", "x", 1]]).op("txn", [["append", "x", 2]], node="r1")
    h.final("r0", {"x": [1, 2]}).final("r1", {"x": [2, 1]})
    conv = check_convergence(h.history(), model="list-append")
    crdt = check_crdt(h.history(), model="list-append")
    assert conv.valid is False and crdt.valid is False
    assert crdt.anomalies["divergent-final-reads"] == conv.anomalies["divergent-final-reads"]


def test_divergence_names_the_values_as_read() -> None:
    h = H().final("r0", [["r", "x", [1, 2]]]).final("r1", [["r", "x", [2, 1]]])
    msg = check_convergence(h.history(), model="list-append").anomalies[
        "divergent-final-reads"][0]
    assert msg == ("key 'x': replicas disagree after heal: r0 ended with [1, 2]; "
                   "r1 ended with [2, 1]")


# --- identity: the same final reads and the same heals ----------------------------------


def identity_history(last_fault_end: str) -> list[Op]:
    h = H().op("txn", [["append", "i0/transcript", 1]])
    h.nemesis("kill-broker").nemesis("heal")
    for _ in range(3):  # the log is still down: replica r1 shows the old identity
        h.op("probe", {"replica": "r1"}, {"replica": "r1", "fingerprint": "old"}, node="r1",
             process=7)
    h.nemesis(last_fault_end)
    h.op("probe", {"replica": "r1"}, {"replica": "r1", "fingerprint": "new"}, node="r1",
         process=7)
    for r in ("r0", "r1"):
        h.op("final-read", {"replica": r}, {"replica": r, "fingerprint": "new"}, node=r,
             process=9)
    return h.history()


def test_identity_convergence_counts_from_a_broker_restart() -> None:
    """A broker restart ends a fault: the old identity seen before it is not yet a
    convergence delay (it used to count from the earlier `heal`)."""
    r = check_identity(identity_history("restart-broker"), replicas=["r0", "r1"])
    assert r.converged and r.convergence_ms == 0.0
    # an op that ends nothing leaves the heal where it was: 3 stale probes after it
    r = check_identity(identity_history("kill-broker"), replicas=["r0", "r1"])
    assert r.converged and r.convergence_ms is not None and r.convergence_ms > 0


def test_identity_fingerprints_disagree_per_replica() -> None:
    h = H()
    for r, fp in (("r0", "a"), ("r1", "b")):
        h.op("final-read", {"replica": r}, {"replica": r, "fingerprint": fp}, node=r,
             process=9)
    r = check_identity(h.history(), replicas=["r0", "r1"])
    assert not r.converged and r.per_instance["i0"]["fingerprints"] == {"r0": "a", "r1": "b"}


def test_identity_replica_named_in_the_value_when_no_node() -> None:
    """Without a node, a final read is its named replica's (selfhood's {"replica": r})."""
    h = H()
    for r in ("r0", "r1"):
        h.op("final-read", {"replica": r}, {"replica": r, "fingerprint": "a"}, node=None,
             process=9)
    r = check_identity(h.history(), replicas=["r0", "r1"])
    assert r.converged and r.per_instance["i0"]["replicas_answered"] == 2
    h.op("final-read", {"replica": "r1"}, {"replica": "r1", "fingerprint": "b"}, node=None,
         process=9)
    assert not check_identity(h.history(), replicas=["r0", "r1"]).converged


# --- composed: each checker's result under its name ---------------------------------------


def test_composed_result_keeps_each_checker_and_lists_a_finding_once() -> None:
    h = set_history({"r0": [1, 2], "r1": [2]})
    r = check_history(h.history(), model="set", consistency=["convergence", "crdt"])
    assert r.valid is False
    assert len(r.anomalies["divergent-final-reads"]) == 1
    assert r.details["convergence"]["anomaly_types"] == ["divergent-final-reads"]
    assert r.details["crdt"]["anomaly_types"] == ["divergent-final-reads", "lost-add"]
    assert r.details["crdt"]["valid"] is False and r.details["crdt"]["model"] == "set"
    assert r.details["convergence"]["keys"] == 1


# --- the checkers agree on every divergence ------------------------------------------------

values = st.lists(st.integers(1, 4), max_size=4)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["r0", "r1", "r2"]), st.sampled_from(["x", "y"]),
                          values, st.booleans()), min_size=1, max_size=8),
       st.sampled_from(["list-append", "set", "register"]))
def test_convergence_and_crdt_report_the_same_divergences(
        reads: list[tuple[str, str, list[int], bool]], model: str) -> None:
    h = H()
    for node, key, elems, timed in reads:
        if model == "list-append":
            h.final(node, [["r", key, elems]], timed=timed)
        elif model == "set":
            h.final(node, elems, instance=key, timed=timed)
        else:
            h.op("read", [key, None], [key, len(elems)], node=node, process=f"f-{node}",
                 final=True, timed=timed)
    ops = h.history()
    conv = check_convergence(ops, model=model).anomalies.get("divergent-final-reads", [])
    crdt = check_crdt(ops, model=model).anomalies.get("divergent-final-reads", [])
    assert conv == crdt
    last: dict[tuple[str, str], Any] = {}
    for node, key, elems, _ in reads:
        last[(node, key)] = (frozenset(elems) if model == "set"
                             else len(elems) if model == "register" else tuple(elems))
    keys = {k for _, k in last}
    split = {k for k in keys if len({v for (_, kk), v in last.items() if kk == k}) > 1}
    assert len(conv) == len(split)
