"""Staleness distributions and convergence after heal."""

from __future__ import annotations

from typing import Any

from selfhood.checkers.history import Op
from selfhood.checkers.staleness import check_convergence, check_staleness, distribution

MS = 1_000_000


class H:
    """History builder with explicit times (ns)."""

    def __init__(self) -> None:
        self.ops: list[Op] = []

    def op(self, p: Any, f: str, inv: Any, t0: int, t1: int, comp: Any = None,
           typ: str = "ok", node: str | None = None, instance: str | None = None) -> H:
        self.ops.append(Op(len(self.ops), "invoke", p, f, inv, time=t0, node=node,
                           instance=instance))
        self.ops.append(Op(len(self.ops), typ, p, f, inv if comp is None else comp,  # type: ignore[arg-type]
                           time=t1, node=node, instance=instance))
        return self


def test_distribution() -> None:
    d = distribution(list(range(1, 101)))
    assert (d["p50"], d["p90"], d["p99"], d["max"]) == (50, 90, 99, 100)
    assert distribution([])["n"] == 0


def test_register_staleness_k_and_t() -> None:
    h = (H().op(0, "write", 1, 0, 1 * MS).op(0, "write", 2, 2 * MS, 3 * MS)
         .op(0, "write", 3, 4 * MS, 5 * MS)
         .op(1, "read", None, 10 * MS, 11 * MS, comp=1)   # misses 2 and 3: k=2, t=10-3 ms
         .op(1, "read", None, 12 * MS, 13 * MS, comp=3)   # fresh
         .op(2, "read", None, 14 * MS, 15 * MS, comp=None))  # initial: misses all 3
    r = check_staleness(h.ops, model="register")
    st = r.details["staleness"]
    assert st["reads"] == 3 and st["stale_reads"] == 2
    assert st["k"]["max"] == 3 and st["k"]["p50"] == 2
    assert st["t_ns"]["max"] == 13 * MS
    assert r.valid is True  # a measurement, no bound given
    bounded = check_staleness(h.ops, model="register", max_k=1)
    assert bounded.valid is False
    assert len(bounded.anomalies["stale-read"]) == 2
    assert "2 acknowledged write(s) behind" in bounded.anomalies["stale-read"][0]


def test_concurrent_write_is_not_missing() -> None:
    # write 2 overlaps write 1 in time, so reading 1 afterwards is not provably stale
    h = (H().op(0, "write", 1, 0, 5 * MS).op(1, "write", 2, 1 * MS, 2 * MS)
         .op(2, "read", None, 10 * MS, 11 * MS, comp=1))
    assert check_staleness(h.ops, model="register").details["staleness"]["stale_reads"] == 0


def test_list_append_staleness() -> None:
    h = (H().op(0, "txn", [["append", "x", 1]], 0, MS).op(0, "txn", [["append", "x", 2]], 2 * MS,
                                                           3 * MS)
         .op(1, "txn", [["r", "x", None]], 5 * MS, 6 * MS, comp=[["r", "x", [1]]])
         .op(1, "txn", [["r", "x", None]], 7 * MS, 8 * MS, comp=[["r", "x", [1, 2]]]))
    st = check_staleness(h.ops, model="list-append").details["staleness"]
    assert st["k"]["max"] == 1 and st["t_ns"]["max"] == 2 * MS and st["stale_reads"] == 1


def test_set_staleness_is_per_instance() -> None:
    """Each instance's set is its own object (as convergence reads them): a read of i0's set
    does not miss i1's add; a read of i1's set that lacks it does."""
    h = (H().op(0, "add", 1, 0, MS, instance="i0").op(0, "add", 2, 2 * MS, 3 * MS, instance="i1")
         .op(1, "read", None, 5 * MS, 6 * MS, comp=[1], instance="i0")
         .op(1, "read", None, 7 * MS, 8 * MS, comp=[], instance="i1"))
    st = check_staleness(h.ops, model="set").details["staleness"]
    assert st["reads"] == 2 and st["stale_reads"] == 1, st
    assert st["k"]["max"] == 1 and st["t_ns"]["max"] == 4 * MS, st
    # a history without instances (Jepsen's) has one set
    one = H().op(0, "add", 1, 0, MS).op(1, "read", None, 5 * MS, 6 * MS, comp=[])
    assert check_staleness(one.ops, model="set").details["staleness"]["stale_reads"] == 1


def final(h: H, node: str, value: Any, t: int) -> H:
    return h.op(f"final-{node}", "final-read", None, t, t + MS, comp=value, node=node)


def test_convergence_ok_with_time() -> None:
    h = H().op(0, "write", 1, 0, MS, node="n1")
    h.ops.append(Op(len(h.ops), "info", "nemesis", "stop-partition", None, time=10 * MS))
    h = final(h, "n1", 1, 11 * MS)
    h = final(h, "n2", None, 12 * MS)   # not yet caught up
    h = final(h, "n2", 1, 15 * MS)
    h = final(h, "n3", 1, 16 * MS)
    r = check_convergence(h.ops, model="register")
    assert r.valid is True, r.anomalies
    c = r.details["convergence"]
    assert c["replicas"] == 3
    assert c["convergence_time_s"] == (15 - 10) / 1000


def test_divergence_caught() -> None:
    h = final(final(final(H(), "n1", {"x": [1, 2]}, 0), "n2", {"x": [2, 1]}, MS),
              "n3", {"x": [1, 2]}, 2 * MS)
    r = check_convergence(h.ops, model="list-append")
    assert r.valid is False
    assert r.anomaly_types == ["divergent-final-reads"]
    assert "n2 ended with" in r.anomalies["divergent-final-reads"][0]


def test_txn_final_reads_and_no_final_reads() -> None:
    h = final(final(H(), "n1", [["r", "x", [1]], ["r", "y", [2]]], 0),
              "n2", [["r", "x", [1]], ["r", "y", []]], MS)
    r = check_convergence(h.ops, model="list-append")
    assert r.valid is False and "key 'y'" in r.anomalies["divergent-final-reads"][0]
    none = check_convergence(H().op(0, "write", 1, 0, 1).ops, model="register")
    assert none.valid == "unknown" and none.unknown_reasons


def test_kv_empty_string_read_is_stale() -> None:
    h = (H().op(0, "put", "a", 0, MS).op(1, "get", None, 2 * MS, 3 * MS, comp=""))
    for o in h.ops:
        o.extra["key"] = "k"
    st = check_staleness(h.ops, model="kv").details["staleness"]
    assert st["stale_reads"] == 1 and st["t_ns"]["max"] == MS
