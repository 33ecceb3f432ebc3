"""A hierarchical starting order (HMCOS-style): schedule cells as units, then inside them.

Why: NAS-cell networks and random wiring have almost no sequential points (each NASNet
cell reads the outputs of the two cells before it), so the decomposition leaves one
segment of hundreds of ops, too large for the exact order model in seconds, while the
list heuristics miss the interleavings inside a cell. HMCOS (Wang et al., DAC 2022)
schedules the hierarchy: cells in sequence, then the ops of each cell.

Cells. An op v is *near-sequential* when few ops are incomparable with it (neither its
ancestors nor its descendants: `Reach`). A chain of such points p_1 < ... < p_m (each a
descendant of the one before) is chosen by a small DP that keeps every cell below
`max_cell` ops while minimising the incomparable ops it pins. Each op u goes to a cell:
ASAP, the number of points that are strict ancestors of u; or ALAP, m minus the number of
points that are descendants of u or u itself. Both are monotone along edges (the ancestor
points of u are ancestor points of each successor; the descendant points of a successor
are descendant points of u), so running the cells in index order, each in any
topological order of its own ops, is a topological order of the whole graph.

Inside a cell. With the cells contiguous, the cell is a window of the order: its live
bytes are its own tensors plus a constant background (solvers/decompose.py), so the
global peak is the max over cells of (cell peak + background), and minimising each
cell's peak on its own minimises the global peak for that assignment of ops to cells.
Like HMCOS's sequences, chains of ops (each op the only successor of the one before, which
is its only predecessor) run back to back inside a cell: the exact DP over such glued
orders (solvers/dp.py) has few units per cell and answers in milliseconds; CP-SAT with the
same glue takes over when it does not. The cells with the highest peak are solved first,
and a critical cell is then re-solved together with a neighbour, so that ops can cross the
boundary the assignment drew.

Reuse. A cell identical to one solved before up to a common scale of its sizes (the
cells of one stage, or of stages whose channels double as the resolution halves) gets
the earlier cell's order instead of a new solve: the key lists its ops in a canonical
topological order with their types, their inputs by local index, and every size and the
background divided by the largest size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from itertools import pairwise

import networkx as nx

from planner.graph import Graph
from planner.solvers.base import Timer
from planner.solvers.cpsat_order import optimal_order
from planner.solvers.decompose import segment_subgraph, window_tensors
from planner.solvers.dp import DPTimeout, run_dp
from planner.solvers.heuristic import heuristic_start
from planner.solvers.lowering import max_live
from planner.solvers.reach import Reach
from planner.target import Target

MAX_CELL = 64  # ops per cell at most (the exact order model proves such cells in a blink)
MAX_INCOMPARABLE = 48  # a point may leave at most this many ops incomparable with it
CELL_DP_STATES = 200_000  # the glued DP on a cell gives way to CP-SAT past this many states
CELL_SOLVE_S = 1.0  # one cell's search at most (a merged pair: twice this)


def near_sequential_points(graph: Graph, reach: Reach, max_cell: int = MAX_CELL) -> list[str]:
    """A chain of near-sequential points (module doc), at most `max_cell` ops apart (by
    ancestor count) wherever the candidates allow, pinning the fewest incomparable ops."""
    n = reach.n
    inc = {o: n - 1 - reach.n_anc(o) - reach.n_desc(o) for o in reach.names}
    chain: list[str] = []
    for o in sorted((o for o in reach.topo if inc[o] <= MAX_INCOMPARABLE), key=reach.n_anc):
        if not chain or reach.desc[reach.idx[chain[-1]]] >> reach.idx[o] & 1:
            chain.append(o)
    # DP over the chain: least total incomparable ops with every gap <= max_cell
    pos = [0] + [reach.n_anc(o) + 1 for o in chain] + [n]
    cost = [0] + [inc[o] for o in chain] + [0]
    inf = float("inf")
    best = [inf] * len(pos)
    prev = [-1] * len(pos)
    best[0] = 0
    for j in range(1, len(pos)):
        for i in range(j - 1, -1, -1):
            if pos[j] - pos[i] > max_cell and i < j - 1:
                break
            if best[i] + cost[j] < best[j]:
                best[j], prev[j] = best[i] + cost[j], i
    picked: list[str] = []
    j = prev[-1]
    while j > 0:
        picked.append(chain[j - 1])
        j = prev[j]
    return picked[::-1]


def cell_index(reach: Reach, points: Sequence[str], late: bool = False) -> dict[str, int]:
    """Op -> cell: ASAP (strict ancestor points) or ALAP (`late`: m minus the points at or
    after the op); both monotone along edges (module doc)."""
    pmask = 0
    for p in points:
        pmask |= 1 << reach.idx[p]
    m = len(points)
    out = {}
    for o in reach.names:
        i = reach.idx[o]
        if late:
            out[o] = m - ((reach.desc[i] | (1 << i)) & pmask).bit_count()
        else:
            out[o] = (reach.anc[i] & pmask).bit_count()
    return out


def mixed_cells(graph: Graph, target: Target, early: dict[str, int], late: dict[str, int]) -> dict[str, int]:
    """A third assignment: each chain of ops (each op's only predecessor has it as its only
    successor) goes ASAP when it shrinks the bytes entering it (it frees memory early), else
    ALAP (it allocates late); then every op is pushed to at least its predecessors' cells,
    which keeps the assignment monotone along edges (within each op's ASAP..ALAP range,
    since ALAP is monotone too)."""
    dag = graph.dag
    head: dict[str, str] = {}
    for o in nx.topological_sort(dag):
        preds = list(dag.predecessors(o))
        if len(preds) == 1 and dag.out_degree(preds[0]) == 1:
            head[o] = head[preds[0]]
        else:
            head[o] = o
    last: dict[str, str] = {}
    for o in nx.topological_sort(dag):
        last[head[o]] = o

    def size(ts) -> int:
        return sum(target.align(graph.size(t)) for t in ts if target.occupies_l1(graph.tensors[t]))

    shrinks = {h: size(graph.op(last[h]).outputs) < size(graph.op(h).inputs) for h in last}
    out: dict[str, int] = {}
    for o in nx.topological_sort(dag):
        want = early[o] if shrinks[head[o]] else late[o]
        out[o] = max([want, *(out[p] for p in dag.predecessors(o))])
    return out


def glue_pairs(g: Graph) -> list[tuple[str, str]]:
    """Edges u -> v where v is u's only successor and u is v's only predecessor: chains of
    ops (HMCOS's sequences) that a cell's search runs back to back."""
    dag = g.dag
    return [(u, v) for u, v in dag.edges if dag.out_degree(u) == 1 and dag.in_degree(v) == 1]


def glued(order: Sequence[str], pairs: Sequence[tuple[str, str]]) -> list[str]:
    """`order` with each glued successor pulled right behind its predecessor (still
    topological: the successor's only predecessor is the op it follows)."""
    nxt = dict(pairs)
    has_prev = set(nxt.values())
    out: list[str] = []
    for o in order:
        if o in has_prev:
            continue
        while o is not None:
            out.append(o)
            o = nxt.get(o)
    return out


def _cell_order(g: Graph, target: Target, hint: list[str], seconds: float, o) -> list[str]:
    """A cell's order over the orders whose chains run back to back, from `hint` glued: the
    exact DP over glued orders (few units: fast), else CP-SAT with the glue; never worse
    than `hint`."""
    timer = Timer()
    pairs = glue_pairs(g)
    start = glued(hint, pairs)
    try:
        peak = max_live(g, target, start, aligned=True)
        cand = run_dp(g, target, start, peak, 0, CELL_DP_STATES, seconds / 2, timer, glue=pairs).order
    except (ValueError, DPTimeout):
        left = seconds - timer.elapsed
        cand = optimal_order(g, target, left, o.workers, o.seed, hint=start, glue=pairs).order if left > 0.05 else start
    best = min((hint, start, cand), key=lambda x: max_live(g, target, x, aligned=True))
    return list(best)


def cell_key(g: Graph, target: Target, background: int) -> tuple:
    """The reuse key of a cell graph: ops in a canonical topological order (model order as
    the tie-break), types, inputs by local index (or by size for outside tensors), kinds,
    sizes and background relative to the largest size. Returns (key, canonical op list)."""
    ops = list(nx.lexicographical_topological_sort(g.dag, key=g.op_index.__getitem__))
    sizes = [target.align(t.bytes) for t in g.tensors.values()]
    top = max([*sizes, 1])
    local = {}
    rows = []
    for k, name in enumerate(ops):
        o = g.op(name)
        for t in o.inputs:  # outside tensors numbered as first read, with their relative size
            local.setdefault(t, ("in", len(local), Fraction(target.align(g.size(t)), top), g.tensors[t].kind))
        for j, t in enumerate(o.outputs):
            local[t] = (k, j)
        ins = tuple(local[t] for t in o.inputs)
        outs = tuple((Fraction(target.align(g.size(t)), top), g.tensors[t].kind) for t in o.outputs)
        rows.append((o.type, ins, outs))
    return (tuple(rows), Fraction(background, top)), ops


@dataclass
class HierarchicalResult:
    """The hierarchical order, its aligned max-live, and what it took."""

    order: list[str]
    peak: int
    cells: int = 0
    solved: int = 0  # cells (and merged pairs) searched: the glued DP or CP-SAT
    reused: int = 0  # cells that took the order of a cell identical up to scale
    facts: dict = field(default_factory=dict)


def _solve_cells(
    graph: Graph,
    target: Target,
    order: list[str],
    bounds: list[tuple[int, int]],
    time_limit: float,
    o,
    cache: dict[tuple, list[int]],
) -> tuple[list[str], int, int]:
    """The cell windows of `order` re-ordered, critical first: the cell with the highest
    (peak + background) is solved (or taken from `cache`), then the next highest, until the
    highest is one already solved (no other cell can lower the max) or time is out.
    Returns (order, solved, reused)."""
    timer = Timer()
    pos = {op: i for i, op in enumerate(order)}  # one sweep for every cell (no scan of the graph per cell)
    windows = window_tensors(graph, order, bounds, pos)
    segs = [
        segment_subgraph(graph, target, order, lo, hi, pos, ts) for (lo, hi), ts in zip(bounds, windows, strict=True)
    ]
    orders = [list(order[lo:hi]) for lo, hi in bounds]
    value = [max_live(sg.graph, target, w, aligned=True) + sg.background for sg, w in zip(segs, orders, strict=True)]
    done = [hi - lo <= 2 for lo, hi in bounds]
    solved = reused = 0
    while True:
        k = max(range(len(bounds)), key=value.__getitem__)
        left = time_limit - timer.elapsed
        if done[k] or left < 0.05:
            break
        done[k] = True
        seg = segs[k]
        key, canon = cell_key(seg.graph, target, seg.background)
        if key in cache:
            cand = [canon[i] for i in cache[key]]
            reused += 1
        else:
            hint = heuristic_start(seg.graph, target).peak_order
            if max_live(seg.graph, target, orders[k], aligned=True) < max_live(seg.graph, target, hint, aligned=True):
                hint = orders[k]
            cand = _cell_order(seg.graph, target, hint, min(left, CELL_SOLVE_S), o)
            solved += 1
            pos = {name: i for i, name in enumerate(canon)}
            cache[key] = [pos[name] for name in cand]
        v = max_live(seg.graph, target, cand, aligned=True) + seg.background
        if v <= value[k]:
            orders[k], value[k] = cand, v
    solved += _merge_pairs(graph, target, orders, value, time_limit - timer.elapsed, o)
    return [op for w in orders for op in w], solved, reused


def _merge_pairs(graph: Graph, target: Target, orders: list[list[str]], value: list[int], time_limit: float, o) -> int:
    """While the highest cell can gain: re-solve it together with a neighbour as one window
    (ops then move across their boundary: the assignment's mistakes) and merge the two when
    the pair's peak is below the higher of the two. Returns the number of solves."""
    timer = Timer()
    solves = 0
    while len(orders) > 1:
        k = max(range(len(orders)), key=value.__getitem__)
        gained = False
        for a in (k, k - 1):
            left = time_limit - timer.elapsed
            if a < 0 or a + 1 >= len(orders) or len(orders[a]) + len(orders[a + 1]) > 2 * MAX_CELL or left < 0.2:
                continue
            flat = [op for w in orders for op in w]
            lo = sum(len(w) for w in orders[:a])
            window = orders[a] + orders[a + 1]
            seg = segment_subgraph(graph, target, flat, lo, lo + len(window))
            cand = _cell_order(seg.graph, target, window, min(left, 2 * CELL_SOLVE_S), o)
            solves += 1
            v = max_live(seg.graph, target, cand, aligned=True) + seg.background
            if v < max(value[a], value[a + 1]):
                orders[a : a + 2], value[a : a + 2] = [cand], [v]
                gained = True
                break
        if not gained:
            break
    return solves


def hierarchical_order(
    graph: Graph, target: Target, base: Sequence[str], time_limit: float, options, stop_at: int = 0
) -> HierarchicalResult | None:
    """The best hierarchical order over the mixed, ASAP and ALAP cell assignments (module
    doc; the first gets most of the time) started from `base` (a topological order: the
    order inside a cell before it is solved), or None when the graph has too few
    near-sequential points to form cells. `options`: workers and seed for CP-SAT. Stops as
    soon as an assignment's order reaches `stop_at` (a proven bound: nothing is lower)."""
    timer = Timer()
    reach = Reach(graph)
    points = near_sequential_points(graph, reach)
    if len(points) < 2:
        return None
    pos = {o: i for i, o in enumerate(base)}
    early, late = cell_index(reach, points), cell_index(reach, points, late=True)
    assignments = {"mixed": mixed_cells(graph, target, early, late), "asap": early, "alap": late}
    best: HierarchicalResult | None = None
    cache: dict[tuple, list[int]] = {}  # shared: the assignments agree on most cells
    for k, (how, cell) in enumerate(assignments.items()):
        order = sorted(base, key=lambda o: (cell[o], pos[o]))
        cuts = [0] + [i for i in range(1, len(order)) if cell[order[i]] != cell[order[i - 1]]] + [len(order)]
        bounds = [(a, b) for a, b in pairwise(cuts) if b > a]
        left = (time_limit - timer.elapsed) * (0.7 if k == 0 else 1 / (len(assignments) - k))
        if left < 0.05:
            break
        new, solved, reused = _solve_cells(graph, target, order, bounds, left, options, cache)
        peak = max_live(graph, target, new, aligned=True)
        if best is None or peak < best.peak:
            best = HierarchicalResult(new, peak, len(bounds), solved, reused, {"cells": how})
        if peak <= stop_at:
            break
    if best is None:
        return None
    best.facts.update(points=len(points), seconds=round(timer.elapsed, 3))
    return best
