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
limit with one worker repeat exactly. `SolveOptions(deterministic=True)` interleaves
the workers and uses deterministic time (see `cpsat.make_solver`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ortools.sat.python import cp_model

from planner.graph import Graph
from planner.plan import Plan
from planner.solvers import cpsat
from planner.solvers.base import Progress, SolveOptions, Timer, proven_plan
from planner.solvers.cpsat_layout import layout_order
from planner.solvers.heuristic import heuristic_start
from planner.solvers.items import Item, forced_live_bounds, item_interval, lifetime_items
from planner.solvers.lowering import max_live
from planner.solvers.reach import Reach
from planner.target import Target

# `glue` (optimal_order): pairs (u, v) that must run back to back,
# pos[v] = pos[u] + 1. A restriction, not a relaxation: such a model bounds only the glued
# orders (solvers/hierarchical.py searches cells with it and never takes its bound as one).
GLUE = "pos[v] = pos[u] + 1 for each glued pair"


@dataclass
class OrderModel:
    """Handles into a CP-SAT model built by `build_order_model` (other models extend it)."""

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
    glue: Sequence[tuple[str, str]] = (),
) -> OrderResult:
    """Minimum aligned max-live order (no spills). Never worse than `hint` (default: the best
    heuristic order by aligned max-live). With `glue` (see `build_order_model`) the order and
    its bound are over the glued orders only: the status and bound are then not facts about
    the graph."""
    timer = Timer()
    if hint is None or not graph.is_topological(hint):
        hint = heuristic_start(graph, target).peak_order
    hint = list(hint)
    items = lifetime_items(graph, target)
    m = cp_model.CpModel()
    om = build_order_model(m, graph, target, items, hint_order=hint)
    for u, v in glue:  # GLUE
        m.add(om.pos[v] == om.pos[u] + 1)
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
    if progress is not None:
        progress(Progress("cpsat-order", hint_peak, lb, timer.elapsed, "starting from the heuristic order"))
    rep = cpsat.Reporter("cpsat-order", progress, timer)
    st, solver = cpsat.solve(m, time_limit - timer.elapsed, workers, seed, deterministic, rep)
    cp_status = solver.status_name(st)
    order, peak, bound = hint, hint_peak, lb
    proven = cpsat.proven_bound(solver, st)
    if proven is not None:
        # valid for every order: the model only excludes orders above the hint's peak
        bound = max(lb, min(hint_peak, proven))
    if st in cpsat.SOLVED:
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


def solve_cpsat_order(graph: Graph, target: Target, options: SolveOptions | None = None) -> Plan:
    """CP-SAT minimum-peak order, then the best layout (heuristics, CP-SAT layout if needed).

    Time: up to 60% of `time_limit` (`options.order_share`) for the order, the rest
    for the layout: on real models the layout heuristics can leave 20% fragmentation that
    CP-SAT layout removes in seconds, while the order search mostly proves the hint optimal. `optimal` means
    the final arena equals the proven lower bound on every no-spill plan's arena.
    """
    options = options or SolveOptions()
    timer = Timer()
    start = heuristic_start(graph, target)
    det = options.deterministic
    share = options.order_share
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
