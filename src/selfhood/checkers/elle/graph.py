"""Dependency graphs, strongly connected components and constrained cycle search (pure).

Vertices are dense transaction ids. Each edge carries a bitmask of relations
(ww, wr, rw, process, realtime), so one graph serves every anomaly search by
masking.

Cycle search works on one SCC at a time. Every anomaly class is a cycle that
goes through an *anchor* edge (a -> b) of some relation and returns from b to
a along a path whose relations obey a small automaton (e.g. "no two rw edges
adjacent", "at least one realtime edge"). We search the product of the SCC
with that automaton:

1. Tarjan's algorithm over the product graph, started only from (b, start)
   for anchor heads b, computes for every product component the set of
   anchor tails (a, accepting) it can reach, as Python-int bitsets
   propagated sinks-first (Tarjan emits components in reverse topological
   order). This answers "is there such a closed walk through any anchor
   edge" in O(edges x automaton states) big-int ORs, exactly, no sampling.
2. For the first few anchor edges with a hit, a BFS over the product graph
   rebuilds the shortest such walk; if it visits no transaction twice, it
   is the reported cycle (the usual case).
3. Otherwise a guided simple-path search (`_SimpleSearch`) decides, anchor
   by anchor: a DFS over simple paths that, at every node, recomputes the
   distances to the goal avoiding the path so far, cuts dead branches at
   once and tries the greedy shortest completion first. An anchor edge it
   exhausts is dropped from the later anchors' searches. Worst case
   exponential (the problem is NP-hard), hence the deadline.

Every phase checks a deadline; running out raises SearchTimeout so the
caller reports "unknown" for that search instead of guessing.
"""

from __future__ import annotations

import functools
import itertools
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

WW = 1
WR = 2
RW = 4
PROCESS = 8
REALTIME = 16
DATA = WW | WR | RW
REL_NAMES = {WW: "ww", WR: "wr", RW: "rw", PROCESS: "process", REALTIME: "realtime"}

# automaton state bits
_LAST_RW = 1
_FLAG = 2
_SEEN_X = 4


class SearchTimeout(Exception):
    """A cycle search ran past its deadline; its answer is unknown."""


@dataclass(slots=True)
class DepGraph:
    """Adjacency as one dict per vertex: successor -> relation bitmask."""

    n: int
    adj: list[dict[int, int]]

    @classmethod
    def empty(cls, n: int) -> DepGraph:
        return cls(n, [{} for _ in range(n)])

    def link(self, a: int, b: int, rel: int) -> None:
        if a == b:
            return
        row = self.adj[a]
        row[b] = row.get(b, 0) | rel

    def edge_count(self) -> int:
        return sum(map(len, self.adj))


def sccs(g: DepGraph, mask: int, nodes: Iterable[int] | None = None) -> list[list[int]]:
    """Non-trivial SCCs of the subgraph with edges in `mask` (iterative Tarjan)."""
    n = g.n
    allowed: list[bool] | None = None
    if nodes is not None:
        allowed = [False] * n
        for v in nodes:
            allowed[v] = True
    index = [-1] * n
    low = [0] * n
    on_stack = [False] * n
    stack: list[int] = []
    out: list[list[int]] = []
    counter = 0
    adj = g.adj
    roots = range(n) if nodes is None else list(nodes)
    for root in roots:
        if index[root] != -1:
            continue
        work: list[tuple[int, Iterator[tuple[int, int]]]] = [(root, iter(adj[root].items()))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack[root] = True
        while work:
            v, it = work[-1]
            pushed = False
            for w, m in it:
                if not m & mask or (allowed is not None and not allowed[w]):
                    continue
                if index[w] == -1:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack[w] = True
                    work.append((w, iter(adj[w].items())))
                    pushed = True
                    break
                if on_stack[w] and index[w] < low[v]:
                    low[v] = index[w]
            if pushed:
                continue
            work.pop()
            if work:
                u = work[-1][0]
                if low[v] < low[u]:
                    low[u] = low[v]
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack[w] = False
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(comp)
    return out


@dataclass(frozen=True, slots=True)
class CycleSpec:
    """A cycle class as anchor relation + return-path automaton.

    kind: "plain" (path uses `path_rels`, no rw unless listed), "nonadjacent"
    (anchor rw; more rw allowed but never two in a row, at least one more),
    "adjacent" (anchor rw; some two rw edges are consecutive). `extra` is the
    process/realtime bit the cycle must use at least once (0 = none).
    """

    name: str
    anchor: int
    path_rels: int
    kind: str = "plain"
    extra: int = 0


def _start_state(spec: CycleSpec) -> int:
    return _LAST_RW if spec.kind in ("nonadjacent", "adjacent") else 0


def _accepts(spec: CycleSpec, s: int) -> bool:
    if spec.extra and not s & _SEEN_X:
        return False
    if spec.kind == "nonadjacent":
        return not s & _LAST_RW and bool(s & _FLAG)
    if spec.kind == "adjacent":
        return bool(s & (_FLAG | _LAST_RW))
    return True


def _step(spec: CycleSpec, s: int, rel: int) -> int:
    """Next automaton state, or -1 if this edge may not follow."""
    if rel == spec.extra:
        s |= _SEEN_X
    if spec.kind == "nonadjacent":
        if rel == RW:
            return -1 if s & _LAST_RW else s | _LAST_RW | _FLAG
        return s & ~_LAST_RW
    if spec.kind == "adjacent":
        if rel == RW:
            return s | _LAST_RW | (_FLAG if s & _LAST_RW else 0)
        return s & ~_LAST_RW
    return s


_BITS = (WW, WR, RW, PROCESS, REALTIME)
#: anchors whose plain shortest walk is tried before any exhaustive search
_CHEAP_ANCHORS = 64
#: failed subtrees remembered per simple-path search (memory bound)
_MEMO_LIMIT = 200_000
Step = tuple[int, int, int]  # (from vertex, to vertex, relation bit)


class _Product:
    """The SCC x automaton product graph, vertices encoded as v * 8 + state."""

    def __init__(self, g: DepGraph, members: set[int], spec: CycleSpec) -> None:
        self.g = g
        self.members = members
        self.spec = spec
        self._fw = _tables(spec)[0]

    def moves(self, s: int, mask: int) -> tuple[tuple[int, int], ...]:
        """(next state, relation bit) for each path relation in `mask`."""
        return self._fw[s * 32 + mask]

    def succ(self, u: int) -> Iterator[int]:
        v, s = divmod(u, 8)
        members = self.members
        for w, mask in self.g.adj[v].items():
            if w in members:
                for s2, _ in self.moves(s, mask):
                    yield w * 8 + s2


def _reach_hits(prod: _Product, anchors: Sequence[tuple[int, int]],
                check: Callable[[], None]) -> Iterator[tuple[int, int]]:
    """Every anchor (a, b) such that (b, start) reaches (a, accepting) in the product."""
    spec = prod.spec
    start = _start_state(spec)
    accepting = [s for s in range(8) if _accepts(spec, s)]
    tails = sorted({a for a, _ in anchors})
    bit_of = {a: i for i, a in enumerate(tails)}
    target_bits: dict[int, int] = {}
    for a in tails:
        for s in accepting:
            target_bits[a * 8 + s] = 1 << bit_of[a]
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    acc: dict[int, int] = {}   # bits gathered by vertices still on the Tarjan stack
    done: dict[int, int] = {}  # bits of vertices whose SCC is complete
    on_stack: set[int] = set()
    stack: list[int] = []
    counter = 0
    ops = 0
    want: dict[int, list[int]] = {}
    for a, b in anchors:
        want.setdefault(b, []).append(a)
    for b in sorted(want):
        root = b * 8 + start
        if root not in index:
            index[root] = low[root] = counter
            counter += 1
            stack.append(root)
            on_stack.add(root)
            acc[root] = target_bits.get(root, 0)
            work: list[tuple[int, Iterator[int]]] = [(root, prod.succ(root))]
            while work:
                ops += 1
                if ops & 4095 == 0:
                    check()
                v, it = work[-1]
                pushed = False
                for w in it:
                    if w not in index:
                        index[w] = low[w] = counter
                        counter += 1
                        stack.append(w)
                        on_stack.add(w)
                        acc[w] = target_bits.get(w, 0)
                        work.append((w, prod.succ(w)))
                        pushed = True
                        break
                    if w in on_stack:
                        if index[w] < low[v]:
                            low[v] = index[w]
                    else:
                        acc[v] |= done[w]
                if pushed:
                    continue
                work.pop()
                if low[v] == index[v]:
                    members = []
                    bits = 0
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        bits |= acc.pop(w)
                        members.append(w)
                        if w == v:
                            break
                    for w in members:
                        done[w] = bits
                if work:
                    u = work[-1][0]
                    if low[v] < low[u]:
                        low[u] = low[v]
                    if v not in on_stack:
                        acc[u] |= done[v]
        bits = done.get(root, 0)
        if bits:
            for a in want[b]:
                if bits >> bit_of[a] & 1:
                    yield a, b


def _bfs_path(prod: _Product, a: int, b: int, check: Callable[[], None]) -> list[Step] | None:
    """Shortest product path (b, start) -> (a, accepting), as base-graph steps."""
    spec = prod.spec
    start = b * 8 + _start_state(spec)
    parent: dict[int, tuple[int, int]] = {start: (-1, 0)}
    q = deque([start])
    ops = 0
    while q:
        u = q.popleft()
        ops += 1
        if ops & 4095 == 0:
            check()
        v, s = divmod(u, 8)
        if v == a and _accepts(spec, s) and u != start:
            steps: list[Step] = []
            while u != start:
                p, rel = parent[u]
                steps.append((p // 8, u // 8, rel))
                u = p
            steps.reverse()
            return steps
        for w, mask in prod.g.adj[v].items():
            if w not in prod.members:
                continue
            for s2, rel in prod.moves(s, mask):
                x = w * 8 + s2
                if x not in parent:
                    parent[x] = (u, rel)
                    q.append(x)
        # a == b with an accepting start cannot happen: no self-edges
    return None


def _simple(steps: Sequence[Step]) -> bool:
    return len({x for x, _, _ in steps}) == len(steps)


@functools.lru_cache(maxsize=64)
def _tables(spec: CycleSpec) -> tuple[list[tuple[tuple[int, int], ...]], list[tuple[int, ...]]]:
    """The automaton's moves per (state, relation mask), forward and backward.

    fw[s * 32 + mask] = ((s2, bit), ...); bw[s2 * 32 + mask] = (s, ...).
    """
    fw: list[tuple[tuple[int, int], ...]] = []
    bw: list[list[int]] = [[] for _ in range(8 * 32)]
    for s in range(8):
        for mask in range(32):
            moves = []
            for bit in _BITS:
                if mask & spec.path_rels & bit:
                    s2 = _step(spec, s, bit)
                    if s2 >= 0:
                        moves.append((s2, bit))
                        if s not in bw[s2 * 32 + mask]:
                            bw[s2 * 32 + mask].append(s)
            fw.append(tuple(moves))
    return fw, [tuple(x) for x in bw]


class _SimpleSearch:
    """Exhaustive search for a *simple* return path, for one spec in one SCC.

    A shortest product walk may pass a transaction twice in two automaton
    states, which is not a cycle. Deciding whether a simple one exists is
    NP-hard in general (a path through a given edge set), so this is a DFS
    over simple paths, but a guided one: at every DFS node a backward BFS
    from the goal over the product, restricted to transactions not yet on
    the path, gives each successor's distance to the goal. A node whose
    successors cannot reach the goal is cut at once; otherwise the greedy
    walk down those distances is tried first, and is usually already simple,
    and the children are tried nearest first.

    The SCC is re-indexed 0..k-1 with the edges outside the spec dropped, and
    the automaton's forward and backward moves are tabulated per
    (state, relation mask), so the inner loops are list lookups.
    """

    def __init__(self, g: DepGraph, members: set[int], spec: CycleSpec) -> None:
        self.spec = spec
        self.verts = sorted(members)
        idx = {v: i for i, v in enumerate(self.verts)}
        self.idx = idx
        rels = spec.path_rels | spec.anchor
        k = len(self.verts)
        out: list[list[tuple[int, int]]] = [[] for _ in range(k)]
        inn: list[list[tuple[int, int]]] = [[] for _ in range(k)]
        for v in self.verts:
            i = idx[v]
            for w, m in g.adj[v].items():
                j = idx.get(w)
                if j is not None and m & rels:
                    out[i].append((j, m & rels))
                    inn[j].append((i, m & rels))
        self.out = out
        self.inn = inn
        self.fw, self.bw = _tables(spec)
        self.accepting = [s for s in range(8) if _accepts(spec, s)]

    def drop_anchor(self, a: int, b: int) -> None:
        """Forget edge a -> b as an anchor/path edge of the anchor relation.

        Sound once anchor (a, b) is exhausted: every cycle of the class that
        uses a -> b with the anchor relation can be rotated to start there,
        so the searches from later anchors need not consider it.
        """
        ia, ib = self.idx[a], self.idx[b]
        bit = self.spec.anchor
        self.out[ia] = [(j, m & ~bit if j == ib else m) for j, m in self.out[ia]]
        self.inn[ib] = [(i, m & ~bit if i == ia else m) for i, m in self.inn[ib]]

    def _dist(self, a: int, blocked: list[bool]) -> list[int]:
        """Product distance to (a, accepting), through unblocked vertices other than a."""
        k = len(self.verts)
        dist = [-1] * (k * 8)
        q: list[int] = []
        for s in self.accepting:
            dist[a * 8 + s] = 0
            q.append(a * 8 + s)
        inn, bw = self.inn, self.bw
        head = 0
        while head < len(q):
            x = q[head]
            head += 1
            w, s2 = divmod(x, 8)
            d = dist[x] + 1
            base = s2 * 32
            for u, mask in inn[w]:
                if blocked[u] or u == a:
                    continue
                for s in bw[base + mask]:
                    y = u * 8 + s
                    if dist[y] < 0:
                        dist[y] = d
                        q.append(y)
        return dist

    def _children(self, x: int, a: int, dist: list[int],
                  blocked: list[bool]) -> list[tuple[int, int, int]]:
        """(distance, product vertex, relation) of x's successors that can reach the goal."""
        v, s = divmod(x, 8)
        fw = self.fw
        best: dict[int, tuple[int, int, int]] = {}
        for w, mask in self.out[v]:
            if blocked[w]:
                continue
            for s2, bit in fw[s * 32 + mask]:
                y = w * 8 + s2
                d = dist[y]
                if d >= 0 and (w != a or d == 0) and y not in best:
                    best[y] = (d, y, bit)
        return sorted(best.values())

    def _greedy(self, x: int, first: tuple[int, int, int], dist: list[int],
                blocked: list[bool]) -> list[Step] | None:
        """The walk from x down the distances, if it repeats no vertex."""
        verts, fw, out = self.verts, self.fw, self.out
        walk: list[Step] = []
        seen: set[int] = set()
        cur = x
        d, y, bit = first
        while True:
            w = y // 8
            walk.append((verts[cur // 8], verts[w], bit))
            if d == 0:
                return walk
            if w in seen:
                return None
            seen.add(w)
            cur = y
            s = y % 8
            pick: tuple[int, int] | None = None
            for u, mask in out[w]:
                if blocked[u]:
                    continue
                for s2, b2 in fw[s * 32 + mask]:
                    z = u * 8 + s2
                    if dist[z] == d - 1:
                        if u not in seen:
                            pick = (z, b2)
                            break
                        if pick is None:
                            pick = (z, b2)
                if pick is not None and pick[0] // 8 not in seen:
                    break
            if pick is None:  # pragma: no cover - a finite distance always has a next step
                return None
            d, (y, bit) = d - 1, pick

    def _expand(self, x: int, a: int, blocked: list[bool], check: Callable[[], None]
                ) -> tuple[list[tuple[int, int, int]], list[Step] | None]:
        """x's live children, or a simple completion of the path from x."""
        check()
        dist = self._dist(a, blocked)
        kids = self._children(x, a, dist, blocked)
        if not kids:
            return [], None
        return kids, self._greedy(x, kids[0], dist, blocked)

    def _needs(self, x: int, a: int, blocked: list[bool]) -> tuple[int, ...]:
        """The blocked vertices a search from x could run into.

        Every continuation from x stays inside F, the vertices reachable from
        x avoiding `blocked` (not through a, where it ends). So the search
        from x depends on `blocked` only through the blocked out-neighbours
        of x and F: if it failed, it fails again whenever those are still
        blocked, whatever else the path holds.
        """
        out = self.out
        seen = {x // 8}
        need: list[int] = []
        stack = [x // 8]
        while stack:
            v = stack.pop()
            for w, _ in out[v]:
                if w in seen:
                    continue
                seen.add(w)
                if blocked[w]:
                    need.append(w)
                elif w != a:
                    stack.append(w)
        return tuple(need)

    def path(self, a_v: int, b_v: int, check: Callable[[], None]) -> list[Step] | None:
        """A simple path (b, start) -> (a, accepting) in the product, or None if none exists.

        Failed subtrees are remembered per product vertex with the blocked
        vertices they could run into (`_needs`), so reaching the same vertex
        by another route, with those still blocked, is cut at once (a chain
        of diamonds before a dead end costs linear, not exponential, time).
        """
        a, b = self.idx[a_v], self.idx[b_v]
        verts = self.verts
        blocked = [False] * len(verts)
        blocked[b] = True
        start = b * 8 + _start_state(self.spec)
        kids, walk = self._expand(start, a, blocked, check)
        if walk is not None:
            return walk
        failed: dict[int, list[tuple[int, ...]]] = {}
        remembered = 0
        steps: list[Step] = []
        stack: list[tuple[int, Iterator[tuple[int, int, int]]]] = [(start, iter(kids))]
        while stack:
            x, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                if steps:
                    if remembered < _MEMO_LIMIT:
                        failed.setdefault(x, []).append(self._needs(x, a, blocked))
                        remembered += 1
                    steps.pop()
                    blocked[x // 8] = False
                continue
            d, y, bit = nxt
            w = y // 8
            step = (verts[x // 8], verts[w], bit)
            if d == 0:
                return [*steps, step]
            blocked[w] = True
            if any(all(blocked[u] for u in need) for need in failed.get(y, ())):
                blocked[w] = False
                continue
            steps.append(step)
            kids, walk = self._expand(y, a, blocked, check)
            if walk is not None:
                return [*steps, *walk]
            if kids:
                stack.append((y, iter(kids)))
            else:
                steps.pop()
                blocked[w] = False
        return None


def find_cycle(g: DepGraph, members: set[int], spec: CycleSpec,
               deadline: float | None, *, cheap_anchors: int = _CHEAP_ANCHORS
               ) -> list[Step] | None:
    """A simple cycle of class `spec` inside `members`, as steps starting with the anchor.

    None means no such cycle exists in this SCC: the product reachability
    test rules out every anchor without a closed walk; for the rest a
    shortest walk is used when it is already simple, else the guided
    simple-path search decides. Raises SearchTimeout past `deadline`
    (a time.monotonic() value). `cheap_anchors` bounds the shortest-walk
    pass (0 sends every hit to the exact search; tests use that).
    """

    def check() -> None:
        if deadline is not None and time.monotonic() > deadline:
            raise SearchTimeout(spec.name)

    check()  # a budget already spent means this search does not start
    anchors = [(a, b) for a in members for b, m in g.adj[a].items()
               if m & spec.anchor and b in members]
    if not anchors:
        return None
    prod = _Product(g, members, spec)
    if spec.kind == "plain" and not spec.extra and spec.anchor & spec.path_rels:
        # one automaton state, so shortest paths are simple; and any anchor
        # edge whose ends share an SCC of the path subgraph closes a cycle
        comp_of: dict[int, int] = {}
        for i, comp in enumerate(sccs(g, spec.path_rels, members)):
            for v in comp:
                comp_of[v] = i
        for a, b in anchors:
            ca = comp_of.get(a)
            if ca is not None and ca == comp_of.get(b):
                path = _bfs_path(prod, a, b, check)
                if path is not None:
                    return [(a, b, spec.anchor), *path]
        return None
    # hits come lazily, one anchor head's Tarjan pass at a time, so a cycle
    # found early does not pay for the reachability of every other anchor
    hits = _reach_hits(prod, anchors, check)
    tried: list[tuple[int, int]] = []
    # cheap pass: a shortest closed walk is usually already a simple cycle
    for a, b in itertools.islice(hits, cheap_anchors):
        tried.append((a, b))
        path = _bfs_path(prod, a, b, check)
        if path is None:  # pragma: no cover - reachability said yes
            continue
        cycle = [(a, b, spec.anchor), *path]
        if _simple(cycle):
            return cycle
    # exact pass: a guided simple-path search per anchor; an exhausted anchor
    # edge is dropped, since any cycle through it would have been found there
    search: _SimpleSearch | None = None
    for a, b in itertools.chain(tried, hits):
        if search is None:
            search = _SimpleSearch(g, members, spec)
        path = search.path(a, b, check)
        if path is not None:
            return [(a, b, spec.anchor), *path]
        search.drop_anchor(a, b)
    return None


def any_cycle(g: DepGraph, members: set[int], mask: int) -> list[Step]:
    """Some short cycle in an SCC of the `mask` subgraph (for a cheap first witness)."""
    spec = CycleSpec("any", mask, mask)
    prod = _Product(g, members, spec)
    best: list[Step] | None = None
    for a in sorted(members)[:8]:
        for b, m in g.adj[a].items():
            if b in members and m & mask:
                bit = next(x for x in _BITS if m & mask & x)
                path = _bfs_path(prod, a, b, lambda: None)
                if path is not None and (best is None or len(path) + 1 < len(best)):
                    best = [(a, b, bit), *path]
                break
    if best is None:  # pragma: no cover - an SCC always has a cycle
        raise ValueError("no cycle in a strongly connected component")
    return best
