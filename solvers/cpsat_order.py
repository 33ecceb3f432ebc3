"""Minimum-peak operator order without spills, with CP-SAT (the compact model, DESIGN §3).

Model: one position per op (AllDifferent, `pos[u] < pos[v]` per DAG edge, domains cut by
ancestor / descendant counts); per tensor a live interval from its start (producer, 0 for
graph inputs, first consumer for loaded weights) to its end (last consumer, n-1 for graph
outputs) inclusive: exactly the lifetimes of `lowering.live_intervals`, so the objective
equals `bounds.max_live(order, aligned=True)` of the order found. One cumulative
constraint with capacity P (aligned sizes, since the layout packs aligned sizes) is
minimised. Tensors with identical lifetime definitions are merged into one demand.

Redundant information: P starts at the *forced-live* bound (for every op, the tensors
that are live at it in every topological order: producer at or before it, some consumer
at or after it), which contains every working set; the hint is the heuristic order with
the least aligned max-live, and the result is never worse than it.

Bounds on the arena: a layout at aligned offsets keeps aligned ranges disjoint, so its
aligned top is at least P*; its raw arena is below that top by at most the largest
alignment slack `align(b) - b`. The bound reported on `arena_bytes` is therefore
`P_bound - max_slack` (= P_bound when every size is a multiple of the alignment).

Determinism: `seed` and `workers` are passed to CP-SAT; runs that finish before the wall
limit with one worker repeat exactly. `options.extra["deterministic"] = True` interleaves
the workers and uses deterministic time (see `cpsat_layout.make_solver`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import networkx as nx
import numpy as np
from ortools.sat.python import cp_model

from planner.graph import Graph
from planner.plan import Plan
from planner.solvers.base import Progress, SolveOptions, Timer, proven_plan
from planner.solvers.cpsat_layout import _Reporter, layout_lower_bound, make_solver, optimal_layout
from planner.solvers.heuristic import best_layout
from planner.solvers.heuristics.order import ORDERS
from planner.solvers.lowering import live_intervals, max_live
from planner.target import Target

# --------------------------------------------------------------------------------------
# Lifetime structure shared by the order model, the joint model and the DP
# --------------------------------------------------------------------------------------


@dataclass
class Item:
    """Tensors sharing one lifetime definition.

    start: ("zero", ()) or ("min", ops); end: ("last", ()) or ("max", ops). With these,
    live_intervals' rules are: input = zero..max(consumers); loaded weight =
    min(consumers)..max(consumers); activation = producer..max(consumers) (producer if it
    has none); graph output = producer..last.
    """

    index: int
    keys: list[str]
    start: tuple[str, tuple[str, ...]]
    end: tuple[str, tuple[str, ...]]
    aligned: int  # sum of aligned sizes
    raw: int  # sum of raw sizes
    min_raw: int  # smallest positive raw size (for offset domains)
    max_slack: int  # largest align(b) - b among the keys


def lifetime_items(graph: Graph, target: Target) -> list[Item]:
    groups: dict[tuple, list[str]] = {}
    for t in graph.tensors.values():
        uses = tuple(dict.fromkeys(graph.consumers[t.name]))
        if t.kind == "input":
            if not uses:
                continue
            key = (("zero", ()), ("max", uses))
        elif t.kind == "weight":
            if not uses or target.weights != "load":
                continue
            key = (("min", uses), ("max", uses))
        else:
            p = graph.producer[t.name]
            end = ("last", ()) if t.kind == "output" else ("max", uses or (p,))
            key = (("min", (p,)), end)
        norm = ((key[0][0], tuple(sorted(key[0][1]))), (key[1][0], tuple(sorted(key[1][1]))))
        groups.setdefault(norm, []).append(t.name)
    items = []
    for (start, end), keys in groups.items():
        sizes = [graph.size(k) for k in keys]
        al = [target.align(s) for s in sizes]
        pos = [s for s in sizes if s > 0]
        items.append(
            Item(
                len(items),
                keys,
                start,
                end,
                sum(al),
                sum(sizes),
                min(pos, default=0),
                max(a - s for a, s in zip(al, sizes, strict=True)),
            )
        )
    return items


def item_interval(item: Item, pos: dict[str, int], n: int) -> tuple[int, int]:
    """The (start, end) an item gets under positions `pos` (same rules as live_intervals)."""
    s = 0 if item.start[0] == "zero" else min(pos[o] for o in item.start[1])
    e = n - 1 if item.end[0] == "last" else max(pos[o] for o in item.end[1])
    return s, e


class Reach:
    """Ancestor / descendant sets as Python-int bitsets over op indices (model order)."""

    def __init__(self, graph: Graph) -> None:
        self.idx = graph.op_index
        n = len(graph.ops)
        self.anc = [0] * n
        self.desc = [0] * n
        topo = list(nx.topological_sort(graph.dag))
        for v in topo:
            i = self.idx[v]
            for u in graph.dag.predecessors(v):
                j = self.idx[u]
                self.anc[i] |= self.anc[j] | (1 << j)
        for v in reversed(topo):
            i = self.idx[v]
            for w in graph.dag.successors(v):
                j = self.idx[w]
                self.desc[i] |= self.desc[j] | (1 << j)
        self.n = n

    def n_anc(self, op: str) -> int:
        return self.anc[self.idx[op]].bit_count()

    def n_desc(self, op: str) -> int:
        return self.desc[self.idx[op]].bit_count()

    def reduce_max(self, ops: Sequence[str]) -> tuple[str, ...]:
        """Drop ops that are ancestors of another op in the set: they can never be the last."""
        return tuple(o for o in ops if not any(self.desc[self.idx[o]] >> self.idx[p] & 1 for p in ops if p != o))

    def reduce_min(self, ops: Sequence[str]) -> tuple[str, ...]:
        return tuple(o for o in ops if not any(self.anc[self.idx[o]] >> self.idx[p] & 1 for p in ops if p != o))


def _bits_to_bool(mask: int, n: int) -> np.ndarray:
    if n == 0:
        return np.zeros(0, dtype=bool)
    b = np.frombuffer(mask.to_bytes((n + 7) // 8, "little"), dtype=np.uint8)
    return np.unpackbits(b, bitorder="little")[:n].astype(bool)


def forced_live_bounds(
    graph: Graph, target: Target, items: Sequence[Item] | None = None, reach: Reach | None = None
) -> tuple[int, int]:
    """Order-free bounds (aligned peak, raw arena) from the tensors live at an op in EVERY
    topological order: started at or before it (producer / a first consumer is an ancestor
    or the op itself; inputs always) and ending at or after it (a consumer is a descendant
    or the op itself; outputs always). Contains every working set."""
    items = lifetime_items(graph, target) if items is None else items
    reach = reach or Reach(graph)
    n = reach.n
    if n == 0:
        return 0, 0
    full = (1 << n) - 1
    al = np.zeros(n, dtype=np.int64)
    slack_sum = np.zeros(n, dtype=np.int64)  # aligned sum per op
    maxslack = np.zeros(n, dtype=np.int64)
    for it in items:
        if it.aligned == 0:
            continue
        if it.start[0] == "zero":
            smask = full
        else:  # ops at or after one of the start ops
            smask = 0
            for o in it.start[1]:
                i = reach.idx[o]
                smask |= reach.desc[i] | (1 << i)
        if it.end[0] == "last":
            emask = full
        else:  # ops at or before one of the end ops
            emask = 0
            for o in it.end[1]:
                i = reach.idx[o]
                emask |= reach.anc[i] | (1 << i)
        live = _bits_to_bool(smask & emask, n)
        al[live] += it.aligned
        maxslack[live] = np.maximum(maxslack[live], it.max_slack)
    slack_sum[:] = al - maxslack
    return int(al.max()), int(slack_sum.max())


# --------------------------------------------------------------------------------------
# Heuristic start (hint and fallback)
# --------------------------------------------------------------------------------------


@dataclass
class HeuristicStart:
    peak_order: list[str]  # the order with the least aligned max-live (the hint)
    peak: int
    peak_name: str
    arena_order: list[str]  # the order + layout with the least arena (the fallback plan)
    arena: int
    arena_offsets: dict[str, int]
    arena_name: str

    def never_worse(self, order, offsets, arena: int, method: str, source: str) -> tuple:
        """(order, offsets, arena, method, source): the heuristic plan when its arena is smaller."""
        if self.arena < arena:
            return self.arena_order, self.arena_offsets, self.arena, self.arena_name, "heuristic"
        return order, offsets, arena, method, source


def heuristic_start(graph: Graph, target: Target) -> HeuristicStart:
    best_p = best_a = None
    for name, fn in ORDERS.items():
        order = fn(graph, target)
        peak = max_live(graph, target, order, aligned=True)
        if best_p is None or peak < best_p[1]:
            best_p = (order, peak, name)
        arena, lname, offs = best_layout(graph, target, order)
        if best_a is None or arena < best_a[1]:
            best_a = (order, arena, offs, f"{name}+{lname}")
    return HeuristicStart(*best_p, *best_a)


# --------------------------------------------------------------------------------------
# The order model
# --------------------------------------------------------------------------------------


@dataclass
class OrderModel:
    pos: dict[str, cp_model.IntVar]
    intervals: dict[int, cp_model.IntervalVar]  # item index -> interval
    capacity: cp_model.IntVar  # aligned peak P
    max_slack: int
    aligned_bound: int  # forced-live bound on P
    raw_bound: int  # forced-live bound on the raw arena
    hint_peak: int | None


def build_order_model(
    m: cp_model.CpModel,
    graph: Graph,
    target: Target,
    items: Sequence[Item],
    hint_order: Sequence[str] | None = None,
    reach: Reach | None = None,
    upper: int | None = None,
    distinct: str = "alldiff",
) -> OrderModel:
    """Positions, live intervals and the cumulative on P; hints every variable from `hint_order`."""
    n = len(graph.ops)
    reach = reach or Reach(graph)
    hp = {o: i for i, o in enumerate(hint_order)} if hint_order is not None else None
    pos: dict[str, cp_model.IntVar] = {}
    dom: dict[str, tuple[int, int]] = {}
    for o in graph.ops:
        dom[o.name] = (reach.n_anc(o.name), n - 1 - reach.n_desc(o.name))
        pos[o.name] = m.new_int_var(*dom[o.name], f"pos_{o.name}")
        if hp is not None:
            m.add_hint(pos[o.name], hp[o.name])
    if distinct == "alldiff":
        m.add_all_different(list(pos.values()))
    else:  # unit intervals on one machine: avoids the value encoding AllDifferent's presolve builds
        m.add_no_overlap([m.new_fixed_size_interval_var(v, 1, f"u_{o}") for o, v in pos.items()])
    for u, v in graph.dag.edges:
        m.add(pos[v] >= pos[u] + 1)

    mins: dict[tuple[str, ...], cp_model.LinearExprT] = {}
    maxs: dict[tuple[str, ...], cp_model.LinearExprT] = {}

    def agg(ops: tuple[str, ...], cache: dict, is_max: bool):
        ops = reach.reduce_max(ops) if is_max else reach.reduce_min(ops)
        if len(ops) == 1:
            return pos[ops[0]]
        if ops not in cache:
            lo = min(dom[o][0] for o in ops)
            hi = max(dom[o][1] for o in ops)
            v = m.new_int_var(lo, hi, ("max_" if is_max else "min_") + str(len(cache)))
            (m.add_max_equality if is_max else m.add_min_equality)(v, [pos[o] for o in ops])
            if hp is not None:
                m.add_hint(v, (max if is_max else min)(hp[o] for o in ops))
            cache[ops] = v
        return cache[ops]

    intervals: dict[int, cp_model.IntervalVar] = {}
    demands = []
    for it in items:
        s = 0 if it.start[0] == "zero" else agg(it.start[1], mins, False)
        e = n - 1 if it.end[0] == "last" else agg(it.end[1], maxs, True)
        if isinstance(s, int) and isinstance(e, int):
            iv = m.new_fixed_size_interval_var(s, e - s + 1, f"iv_{it.index}")
        else:
            d = m.new_int_var(1, n, f"d_{it.index}")
            iv = m.new_interval_var(s, d, e + 1, f"iv_{it.index}")
            if hp is not None:
                hs, he = item_interval(it, hp, n)
                m.add_hint(d, he - hs + 1)
        intervals[it.index] = iv
        demands.append((iv, it.aligned))
    al_bound, raw_bound = forced_live_bounds(graph, target, items, reach)
    hint_peak = max_live(graph, target, hint_order, aligned=True) if hint_order is not None else None
    # the capacity's upper end: `upper` when given (the joint model needs room above the hint's
    # peak), else the hint's peak (only better orders matter), else everything live at once
    top = sum(it.aligned for it in items)
    if upper is not None:
        top = min(top, upper)
    elif hint_peak is not None:
        top = min(top, hint_peak)
    top = max(top, al_bound)
    cap = m.new_int_var(min(al_bound, top), max(top, al_bound), "peak")
    act = [(iv, d) for iv, d in demands if d > 0]
    m.add_cumulative([iv for iv, _ in act], [d for _, d in act], cap)
    if hint_peak is not None:
        m.add_hint(cap, hint_peak)
    return OrderModel(
        pos, intervals, cap, max((it.max_slack for it in items), default=0), al_bound, raw_bound, hint_peak
    )


@dataclass
class OrderResult:
    """An order and its aligned max-live `peak`; `bound` is a proven lower bound on the aligned
    max-live of every topological order; `raw_bound` a lower bound on the raw arena of every
    no-spill plan. status: optimal (peak == bound) | feasible."""

    order: list[str]
    peak: int
    bound: int
    status: str
    wall_s: float
    raw_bound: int = 0
    hint_peak: int | None = None
    cpsat_status: str = ""
    notes: dict = field(default_factory=dict)


def optimal_order(
    graph: Graph,
    target: Target,
    time_limit: float = 30.0,
    workers: int = 2,
    seed: int = 0,
    hint: Sequence[str] | None = None,
    progress: Callable[[Progress], None] | None = None,
    deterministic: bool = False,
) -> OrderResult:
    """Minimum aligned max-live order (no spills). Never worse than `hint` (default: the best
    heuristic order by aligned max-live)."""
    timer = Timer()
    if hint is None or not graph.is_topological(hint):
        hint = heuristic_start(graph, target).peak_order
    hint = list(hint)
    items = lifetime_items(graph, target)
    m = cp_model.CpModel()
    om = build_order_model(m, graph, target, items, hint_order=hint)
    max_slack = om.max_slack
    hint_peak = om.hint_peak
    lb = om.aligned_bound

    def result(order, peak, bound, cp_status):
        bound = min(bound, peak)
        raw = max(om.raw_bound, bound - max_slack)
        st = "optimal" if peak <= bound else "feasible"
        return OrderResult(list(order), peak, bound, st, timer.elapsed, raw, hint_peak, cp_status)

    if hint_peak <= lb or time_limit - timer.elapsed <= 0:
        return result(hint, hint_peak, lb, "not run (hint meets the bound)" if hint_peak <= lb else "no time")
    m.minimize(om.capacity)
    solver = make_solver(time_limit - timer.elapsed, workers, seed, deterministic)
    rep = _Reporter("cpsat-order", progress, timer)
    if progress is not None:
        solver.best_bound_callback = rep.on_bound
        progress(Progress("cpsat-order", hint_peak, lb, timer.elapsed, "hint"))
    st = solver.solve(m, rep)
    cp_status = solver.status_name(st)
    order, peak, bound = hint, hint_peak, lb
    if st in (cp_model.OPTIMAL, cp_model.FEASIBLE, cp_model.UNKNOWN) and math.isfinite(solver.best_objective_bound):
        # valid for every order: the model only excludes orders above the hint's peak
        bound = max(lb, min(hint_peak, math.ceil(solver.best_objective_bound - 1e-6)))
    if st in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        cand = sorted(om.pos, key=lambda o: solver.value(om.pos[o]))
        cpeak = max_live(graph, target, cand, aligned=True)
        if cpeak <= peak:
            order, peak = cand, cpeak
        if st == cp_model.OPTIMAL:
            bound = max(bound, int(solver.objective_value))
    return result(order, peak, bound, cp_status)


# --------------------------------------------------------------------------------------
# The solver
# --------------------------------------------------------------------------------------


def layout_order(
    graph: Graph,
    target: Target,
    order: Sequence[str],
    time_limit: float,
    workers: int,
    seed: int,
    progress: Callable[[Progress], None] | None = None,
    known_bound: int = 0,
) -> tuple[int, dict[str, int], str, int]:
    """Layout heuristics on `order`, then CP-SAT layout when they leave fragmentation.

    Returns (raw arena, offsets, method, the order's layout lower bound); `known_bound`, a
    bound valid for every order, stops the search early."""
    arena, lname, offs = best_layout(graph, target, order)
    ivs = live_intervals(graph, target, order)
    lb = max(layout_lower_bound(ivs, target.alignment), known_bound)
    if arena > lb and time_limit > 0.05:
        res = optimal_layout(
            ivs, time_limit, workers, seed, target.alignment, progress, hint=offs, known_bound=known_bound
        )
        if res.arena < arena:
            arena, offs, lname = res.arena, res.offsets, "cpsat-layout"
        lb = max(lb, res.bound)
    for t in graph.tensors:
        offs.setdefault(t, 0)
    return arena, offs, lname, lb


def solve_cpsat_order(graph: Graph, target: Target, options: SolveOptions | None = None) -> Plan:
    """CP-SAT minimum-peak order, then the best layout (heuristics, CP-SAT layout if needed).

    Time: up to 60% of `time_limit` (`options.extra["order_share"]`) for the order, the rest
    for the layout: on real models the layout heuristics can leave 20% fragmentation that
    CP-SAT layout removes in seconds, while the order search mostly proves the hint optimal. `optimal` means
    the final arena equals the proven lower bound on every no-spill plan's arena.
    """
    options = options or SolveOptions()
    timer = Timer()
    start = heuristic_start(graph, target)
    det = bool(options.extra.get("deterministic", False))
    share = float(options.extra.get("order_share", 0.6))
    res = optimal_order(
        graph,
        target,
        share * (options.time_limit - timer.elapsed),
        options.workers,
        options.seed,
        hint=start.peak_order,
        progress=options.progress,
        deterministic=det,
    )
    # keep a margin for lowering + simulation (about 1 ms per op) after the layout search
    margin = 0.05 + 0.001 * len(graph.ops)
    arena, offs, method, _ = layout_order(
        graph,
        target,
        res.order,
        options.time_limit - timer.elapsed - margin,
        options.workers,
        options.seed,
        options.progress,
    )
    order, offs, arena, method, source = start.never_worse(res.order, offs, arena, method, "cpsat-order")
    return proven_plan(
        graph,
        target,
        "cpsat-order",
        order,
        offs,
        arena,
        res.raw_bound,
        timer,
        options,
        {
            "order_status": res.status,
            "order_peak": res.peak,
            "order_bound": res.bound,
            "cpsat_status": res.cpsat_status,
            "hint_peak": res.hint_peak,
            "heuristic_arena": start.arena,
            "layout": method,
            "source": source,
        },
    )
