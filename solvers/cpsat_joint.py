"""`cpsat-joint`: operator order and offsets in one CP-SAT model (OLLA / MODeL style).

Different optimal orders can fragment differently, and only a model that places blocks
while it orders sees it. Positions, live intervals and the cumulative come from the
order model (`cpsat_order.build_order_model`); one NoOverlap2D over (time x address)
places every tensor at an aligned offset. It minimises the raw arena directly, so its
`optimal` covers fragmentation too. It is meant for small graphs (default limit 60 ops):
the NoOverlap2D with variable times grows quadratically.
"""

from __future__ import annotations

from collections.abc import Sequence

from ortools.sat.python import cp_model

from planner.graph import Graph
from planner.plan import Plan
from planner.solvers import cpsat
from planner.solvers.base import SolveOptions, Timer, aligned_intervals, arena_of_layout, proven_plan
from planner.solvers.cpsat_order import build_order_model
from planner.solvers.heuristic import heuristic_start
from planner.solvers.items import lifetime_items
from planner.target import Target


def solve_joint(graph: Graph, target: Target, options: SolveOptions | None = None) -> Plan:
    """Joint operator order + offsets (positions and addresses in one CP-SAT model).

    Minimises the raw arena directly, so unlike `cpsat-order` its "optimal" covers
    fragmentation too. Refuses graphs above `options.max_ops` (default 60) ops:
    the NoOverlap2D with variable times grows quadratically.
    """
    options = options or SolveOptions()
    timer = Timer()
    max_ops = options.max_ops
    if len(graph.ops) > max_ops:
        pseudo = sum(1 for o in graph.ops if o.attrs.get("pseudo"))  # load/store steps (solvers/lifetimes.py)
        size = f"{len(graph.ops) - pseudo} ops + {pseudo} load/store steps" if pseudo else f"{len(graph.ops)} ops"
        raise ValueError(
            f"cpsat-joint is for small graphs: {size} > max_ops={max_ops}; use cpsat-order (order, then layout) instead"
        )
    a = target.alignment
    start = heuristic_start(graph, target)
    h_arena, h_order, h_offs = start.arena, start.arena_order, start.arena_offsets
    items = lifetime_items(graph, target)
    m = cp_model.CpModel()
    max_slack = max((it.max_slack for it in items), default=0)
    # an order whose aligned max-live exceeds h_arena + max_slack cannot beat the hint's arena
    om = build_order_model(m, graph, target, items, hint_order=h_order, upper=h_arena + max_slack)
    lb = max(om.raw_bound, 0)
    obj = m.new_int_var(min(lb, h_arena), h_arena, "arena")
    xs, ys, ks = [], [], {}
    for it in items:
        if it.aligned == 0:
            continue
        # one address per tensor of the (merged) item: merged tensors share times, not addresses
        for key in it.keys:
            raw = graph.size(key)
            if raw == 0:
                continue
            k = m.new_int_var(0, max(0, (h_arena - raw) // a), f"k_{key}")
            ks[key] = k
            m.add(obj >= a * k + raw)
            m.add_hint(k, h_offs[key] // a)
            xs.append(om.intervals[it.index])
            ys.append(m.new_fixed_size_interval_var(k, target.align(raw) // a, f"y_{key}"))
    m.add_no_overlap_2d(xs, ys)
    # redundant: aligned max-live (the cumulative capacity) minus the largest slack bounds the arena
    m.add(obj >= om.capacity - om.max_slack)
    m.add_hint(obj, h_arena)
    m.minimize(obj)
    if h_arena <= lb:  # the heuristic plan already meets the bound: nothing to search
        return _joint_plan(graph, target, options, timer, h_order, h_offs, h_arena, lb, "not run", h_arena)
    rep = cpsat.Reporter("cpsat-joint", options.progress, timer)
    st, solver = cpsat.solve(
        m, options.time_limit - timer.elapsed, options.workers, options.seed, options.deterministic, rep
    )
    order, offsets, arena = h_order, h_offs, h_arena
    bound = max(lb, cpsat.proven_bound(solver, st) or 0)
    cp_status = solver.status_name(st)
    if st in cpsat.SOLVED:
        new_order = sorted(om.pos, key=lambda o: solver.value(om.pos[o]))
        new_offs = {key: a * solver.value(k) for key, k in ks.items()}
        for t in graph.tensors:
            new_offs.setdefault(t, 0)
        new_arena = arena_of_layout(graph, aligned_intervals(graph, target, new_order), new_offs)
        if new_arena <= arena:
            order, offsets, arena = new_order, new_offs, new_arena
    return _joint_plan(graph, target, options, timer, order, offsets, arena, bound, cp_status, h_arena)


def _joint_plan(
    graph: Graph,
    target: Target,
    options: SolveOptions,
    timer: Timer,
    order: Sequence[str],
    offsets: dict[str, int],
    arena: int,
    bound: int,
    cp_status: str,
    h_arena: int,
) -> Plan:
    facts = {"cpsat_status": cp_status, "heuristic_arena": h_arena}
    return proven_plan(graph, target, "cpsat-joint", order, offsets, arena, bound, timer, options, facts)
