"""Read-write register analysis: version graphs from hints, edges, non-cycle anomalies.

A register read says only *which* write it saw, not what came before, so
the version order of each key is a partial order assembled, as in Elle's
`elle.rw-register`, from sources that are sound under stated assumptions:

- initial-state (always): nil, the initial value, precedes every written value;
- wfr-keys (opt-in): a committed txn that reads x = v1 and then writes x = v2
  implies v1 < v2 (writes follow reads within a txn);
- sequential-keys (opt-in): each key is sequentially consistent, so a
  process's successive interactions with a key are in version order;
- linearizable-keys (opt-in): each key is linearizable, so real-time order
  between committed txns orders their versions.

Sources are added in that order; a source that would make a key's version
graph cyclic is left out and reported as `cyclic-versions`.

Edges: wr from the txn whose final write of x is v to each txn whose first
read of x (before writing it) saw v; and for each version-graph edge
v1 -> v2: ww from v1's writer to v2's writer, rw from v1's readers to v2's
writer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from selfhood.checkers.elle.graph import RW, WR, WW, DepGraph, sccs
from selfhood.checkers.elle.history import Txn
from selfhood.checkers.elle.list_append import explain_order, show
from selfhood.errors import HistoryError

_NIL: Any = None


class RwRegisterAnalysis:
    """Indexes, graph and anomalies for one rw-register history."""

    def __init__(self, txns: Sequence[Txn], *, wfr_keys: bool = False,
                 sequential_keys: bool = False, linearizable_keys: bool = False) -> None:
        self.txns = txns
        self.graph = DepGraph.empty(len(txns))
        self.anomalies: dict[str, list[str]] = {}
        self.writer: dict[tuple[Any, Any], int] = {}
        self.intermediate: set[tuple[Any, Any]] = set()
        self.ext_reads: list[dict[Any, Any]] = [{} for _ in txns]
        self.ext_writes: list[dict[Any, Any]] = [{} for _ in txns]
        self.version_edges: dict[Any, dict[Any, set[Any]]] = {}
        self.sources: list[str] = []
        self._index()
        self._non_cycle()
        self._versions(wfr_keys, sequential_keys, linearizable_keys)
        self._edges()

    def add(self, name: str, text: str) -> None:
        self.anomalies.setdefault(name, []).append(text)

    def _index(self) -> None:
        for t in self.txns:
            ext_r, ext_w = self.ext_reads[t.id], self.ext_writes[t.id]
            for f, k, v in t.mops:
                if f == "w":
                    if v is not None:
                        prior = self.writer.get((k, v))
                        if prior is not None and prior != t.id:
                            raise HistoryError(
                                f"op {t.index}: value {show(v)} written to key {show(k)} twice "
                                f"(also by op {self.txns[prior].index}); rw-register needs "
                                "unique writes")
                        if k in ext_w and ext_w[k] is not None:
                            self.intermediate.add((k, ext_w[k]))
                        self.writer[(k, v)] = t.id
                    ext_w[k] = v
                elif f == "r":
                    if t.committed and k not in ext_w and k not in ext_r:
                        ext_r[k] = v
                else:
                    raise HistoryError(f"op {t.index}: rw-register micro-op must be :w or :r, "
                                       f"got {f!r}")

    def _non_cycle(self) -> None:
        groups: dict[tuple[Any, Any], list[Txn]] = {}
        for t in self.txns:
            if not t.committed:
                continue
            state: dict[Any, Any] = {}
            for f, k, v in t.mops:
                if f == "w":
                    state[k] = v
                    continue
                if k in state and state[k] != v:
                    self.add("internal", f"{t.name()} read key {show(k)} = {show(v)} but its "
                                         f"own earlier read/write says {show(state[k])}")
                state[k] = v
                if v is None:
                    continue
                w = self.writer.get((k, v))
                if w is None:
                    self.add("garbage-read", f"{t.name()} read key {show(k)} = {show(v)}, a "
                                             "value no transaction ever wrote")
                elif w != t.id and self.txns[w].type == "fail":
                    self.add("G1a", f"{t.name()} read key {show(k)} = {show(v)}, written by "
                                    f"{self.txns[w].name()}, which failed (aborted read)")
                elif w != t.id and (k, v) in self.intermediate:
                    self.add("G1b", f"{t.name()} read key {show(k)} = {show(v)}, an "
                                    f"intermediate write of {self.txns[w].name()} which wrote "
                                    f"{show(k)} again later (intermediate read)")
            for k, v in self.ext_reads[t.id].items():
                if k in self.ext_writes[t.id]:
                    groups.setdefault((k, v), []).append(t)
        for (k, v), ts in groups.items():
            if len(ts) > 1:
                self.add("lost-update",
                         f"{', '.join(t.name() for t in ts)} all read key {show(k)} = {show(v)} "
                         "and then wrote it: all but one update is lost")

    # --- version graphs ------------------------------------------------------------

    def _initial(self) -> dict[Any, set[tuple[Any, Any]]]:
        out: dict[Any, set[tuple[Any, Any]]] = {}
        for t in self.txns:
            if not t.possible:
                continue
            for k, v in [*self.ext_writes[t.id].items(), *self.ext_reads[t.id].items()]:
                if v is not None:
                    out.setdefault(k, set()).add((_NIL, v))
        return out

    def _wfr(self) -> dict[Any, set[tuple[Any, Any]]]:
        out: dict[Any, set[tuple[Any, Any]]] = {}
        for t in self.txns:
            if t.committed:
                for k, v in self.ext_reads[t.id].items():
                    w = self.ext_writes[t.id].get(k)
                    if v is not None and w is not None and k in self.ext_writes[t.id]:
                        out.setdefault(k, set()).add((v, w))
        return out

    def _first_last(self, t: Txn, k: Any) -> tuple[Any, Any]:
        r, w = self.ext_reads[t.id], self.ext_writes[t.id]
        first = r[k] if k in r else w[k]
        last = w[k] if k in w else r[k]
        return first, last

    def _sequential(self) -> dict[Any, set[tuple[Any, Any]]]:
        out: dict[Any, set[tuple[Any, Any]]] = {}
        last: dict[tuple[Any, Any], Any] = {}
        for t in sorted((t for t in self.txns if t.possible), key=lambda t: t.invoke_pos):
            for k in {**self.ext_reads[t.id], **self.ext_writes[t.id]}:
                first, fin = self._first_last(t, k)
                prev = last.get((t.process, k), _NIL)
                if (t.process, k) in last and prev != first:
                    out.setdefault(k, set()).add((prev, first))
                if t.committed:
                    last[(t.process, k)] = fin
                else:
                    last.pop((t.process, k), None)
        return out

    def _linearizable(self) -> dict[Any, set[tuple[Any, Any]]]:
        out: dict[Any, set[tuple[Any, Any]]] = {}
        events: list[tuple[int, int, int]] = []
        for t in self.txns:
            if t.possible:
                events.append((t.invoke_pos, 1, t.id))
                if t.committed and t.complete_pos is not None:
                    events.append((t.complete_pos, 0, t.id))
        events.sort()
        frontier: dict[Any, set[int]] = {}
        seen: dict[tuple[int, Any], frozenset[int]] = {}
        for _, kind, tid in events:
            t = self.txns[tid]
            keys = {**self.ext_reads[tid], **self.ext_writes[tid]}
            for k in keys:
                fr = frontier.setdefault(k, set())
                if kind == 1:
                    seen[(tid, k)] = frozenset(fr)
                    first, _ = self._first_last(t, k)
                    for p in fr:
                        _, fin = self._first_last(self.txns[p], k)
                        if fin != first:
                            out.setdefault(k, set()).add((fin, first))
                else:
                    fr -= seen.get((tid, k), frozenset())
                    fr.add(tid)
        return out

    def _versions(self, wfr: bool, sequential: bool, linearizable: bool) -> None:
        sources = [("initial-state", self._initial)]
        if wfr:
            sources.append(("wfr-keys", self._wfr))
        if sequential:
            sources.append(("sequential-keys", self._sequential))
        if linearizable:
            sources.append(("linearizable-keys", self._linearizable))
        for name, make in sources:
            edges = make()
            trial = {k: {a: set(bs) for a, bs in m.items()} for k, m in self.version_edges.items()}
            for k, pairs in edges.items():
                m = trial.setdefault(k, {})
                for a, b in pairs:
                    m.setdefault(a, set()).add(b)
            cyclic = [k for k in edges if _has_cycle(trial[k])]
            if cyclic:
                for k in cyclic:
                    self.add("cyclic-versions",
                             f"key {show(k)}: the version order inferred from "
                             f"{', '.join([*self.sources, name])} is cyclic, so {name} "
                             "was left out")
                continue
            self.version_edges = trial
            self.sources.append(name)

    def _edges(self) -> None:
        g, txns = self.graph, self.txns
        ext_writer: dict[tuple[Any, Any], list[int]] = {}
        ext_reader: dict[tuple[Any, Any], list[int]] = {}
        for t in txns:
            if not t.possible:
                continue
            for k, v in self.ext_writes[t.id].items():
                ext_writer.setdefault((k, v), []).append(t.id)
            for k, v in self.ext_reads[t.id].items():
                ext_reader.setdefault((k, v), []).append(t.id)
        for t in txns:
            for k, v in self.ext_reads[t.id].items():
                if v is None:
                    continue
                for w in ext_writer.get((k, v), ()):
                    if w != t.id:
                        g.link(w, t.id, WR)
        for k, m in self.version_edges.items():
            for v1, v2s in m.items():
                w1 = ext_writer.get((k, v1), ()) if v1 is not None else ()
                r1 = ext_reader.get((k, v1), ())
                for v2 in v2s:
                    for w2 in ext_writer.get((k, v2), ()):
                        for a in w1:
                            g.link(a, w2, WW)
                        for a in r1:
                            g.link(a, w2, RW)

    def explain(self, a: int, b: int, rel: int) -> str:
        ta, tb = self.txns[a], self.txns[b]
        wa, ra = self.ext_writes[a], self.ext_reads[a]
        wb, rb = self.ext_writes[b], self.ext_reads[b]
        if rel == WR:
            for k, v in rb.items():
                if v is not None and wa.get(k) == v:
                    return f"{tb.name()} read key {show(k)} = {show(v)}, which {ta.name()} wrote"
        if rel in (WW, RW):
            src = wa if rel == WW else ra
            for k, v2 in wb.items():
                if k in src and v2 in self.version_edges.get(k, {}).get(src[k], ()):
                    v1 = src[k]
                    if rel == WW:
                        return (f"{tb.name()} wrote key {show(k)} = {show(v2)} after "
                                f"{ta.name()} wrote {show(v1)} (version order "
                                f"{show(v1)} < {show(v2)})")
                    return (f"{ta.name()} read key {show(k)} = {show(v1)}, and {tb.name()} "
                            f"wrote the later version {show(v2)}")
        return explain_order(ta, tb, rel)


def _has_cycle(m: dict[Any, set[Any]]) -> bool:
    ids = {v: i for i, v in enumerate({*m, *(b for bs in m.values() for b in bs)})}
    g = DepGraph.empty(len(ids))
    for a, bs in m.items():
        for b in bs:
            g.link(ids[a], ids[b], WW)
    return bool(sccs(g, WW))
