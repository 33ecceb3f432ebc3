"""Exact arena layout with CP-SAT: offsets for fixed residencies, and joint order + layout.

`optimal_layout` takes residencies whose times are fixed (an order is chosen) and finds
offsets minimising the arena the simulator measures, `max(offset + raw bytes)`. Offsets
are `alignment * k` with integer `k`, so the model works in alignment units: a residency
occupies `align(bytes) / alignment` units. Two residencies at aligned offsets whose raw
ranges are disjoint also have disjoint aligned ranges, so packing aligned sizes loses
nothing. A NoOverlap2D over (time × address) carries the packing; best-fit (and the other
layout heuristics) give the hint and the fallback, so the result is never worse than them.

The lower bound used to stop early is the fragmentation-free one: at each position, the
residencies live there are stacked disjointly, so the highest one ends (aligned) at least
at their aligned sum, and its raw end is lower by at most its alignment slack
`align(bytes) - bytes`. With alignment 1 this is plain max-live.

`solve_joint` (registered as `cpsat-joint`) puts op positions and offsets in one model,
in the spirit of OLLA / MODeL: different optimal orders can fragment differently, and
only a joint model sees it. It is meant for small graphs (default limit 60 ops).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from ortools.sat.python import cp_model

from planner.graph import Graph
from planner.plan import Plan
from planner.solvers.base import (
    Progress,
    SolveOptions,
    Timer,
    aligned_intervals,
    arena_of_layout,
    proven_plan,
)
from planner.solvers.heuristics.layout import LAYOUTS
from planner.solvers.lowering import Interval
from planner.target import Target


@dataclass
class LayoutResult:
    """Offsets per residency key, the raw arena they give, a proven lower bound on it and
    the status: optimal (arena == bound), feasible (CP-SAT improved or ran out of time)
    or heuristic (the hint was kept and nothing was proven)."""

    offsets: dict[str, int]
    arena: int
    bound: int
    status: str
    wall_s: float = 0.0
    hint_arena: int = 0
    notes: dict = field(default_factory=dict)


def _align(n: int, a: int) -> int:
    return -(-n // a) * a


def raw_arena(intervals: Sequence[Interval], offsets: dict[str, int]) -> int:
    return max((offsets[iv.key] + iv.size for iv in intervals if iv.size > 0), default=0)


def layout_lower_bound(intervals: Sequence[Interval], alignment: int) -> int:
    """Valid lower bound on the raw arena of any aligned layout of these residencies:
    max over positions of (aligned live sum - largest alignment slack live there)."""
    items = [iv for iv in intervals if iv.size > 0]
    if not items:
        return 0
    horizon = max(iv.end for iv in items) + 1
    starts = np.array([iv.start for iv in items])
    ends = np.array([iv.end for iv in items])
    al = np.array([_align(iv.size, alignment) for iv in items], dtype=np.int64)
    slack = al - np.array([iv.size for iv in items], dtype=np.int64)
    best = 0
    for p in range(horizon):
        live = (starts <= p) & (p <= ends)
        if live.any():
            best = max(best, int(al[live].sum() - slack[live].max()))
    return best


def _heuristic_layout(intervals: Sequence[Interval], alignment: int) -> tuple[dict[str, int], int, str]:
    """Best of the layout heuristics on the aligned residencies (the hint and the fallback)."""
    aligned = [Interval(iv.key, iv.start, iv.end, _align(iv.size, alignment)) for iv in intervals]
    best = None
    for name, fn in LAYOUTS.items():
        offs = fn(aligned)
        arena = raw_arena(intervals, offs)
        if best is None or arena < best[1]:
            best = (offs, arena, name)
    return best


class _Reporter(cp_model.CpSolverSolutionCallback):
    """Forwards incumbents (and, via `on_bound`, bound improvements) to a progress callback."""

    def __init__(
        self,
        name: str,
        progress: Callable[[Progress], None] | None,
        timer: Timer,
        scale: Callable[[float], int] = round,
    ) -> None:
        super().__init__()
        self.name, self.progress, self.timer, self.scale = name, progress, timer, scale
        self.incumbent: int | None = None
        self.lock = threading.Lock()

    def on_solution_callback(self) -> None:
        with self.lock:
            self.incumbent = self.scale(self.objective_value)
            if self.progress is not None:
                self.progress(
                    Progress(
                        self.name, self.incumbent, self.scale(self.best_objective_bound), self.timer.elapsed, "solution"
                    )
                )

    def on_bound(self, bound: float) -> None:
        with self.lock:
            if self.progress is not None:
                self.progress(Progress(self.name, self.incumbent, self.scale(bound), self.timer.elapsed, "bound"))


def make_solver(time_limit: float, workers: int, seed: int, deterministic: bool = False) -> cp_model.CpSolver:
    """A CP-SAT solver with the project's conventions.

    `random_seed` and `num_workers` are always set. With `workers == 1` a run that ends
    before the wall limit is reproducible. With `deterministic=True` the workers are
    interleaved (`interleave_search`) and the limit is also applied as deterministic time,
    so runs repeat exactly for a given seed and worker count unless the wall limit cuts in
    first; without it the parallel portfolio is faster but its result under a time limit
    may vary from run to run.
    """
    solver = cp_model.CpSolver()
    p = solver.parameters
    p.max_time_in_seconds = max(0.01, float(time_limit))
    p.num_workers = max(1, int(workers))
    p.random_seed = int(seed)
    if deterministic:
        p.interleave_search = True
        p.max_deterministic_time = max(0.01, float(time_limit))
    return solver


def optimal_layout(
    intervals: Sequence[Interval],
    time_limit: float = 10.0,
    workers: int = 1,
    seed: int = 0,
    alignment: int = 1,
    progress: Callable[[Progress], None] | None = None,
    hint: dict[str, int] | None = None,
    deterministic: bool = False,
    known_bound: int = 0,
) -> LayoutResult:
    """Minimum raw arena offsets (multiples of `alignment`) for residencies with fixed times.

    `intervals` carry raw byte sizes (as `lowering.live_intervals` gives them); aligned sizes
    are derived here. Never returns an arena above the best layout heuristic (or `hint`).
    `known_bound`: a bound proven elsewhere (e.g. on every order of the graph) lets the
    search stop as soon as a layout reaches it.
    """
    timer = Timer()
    a = alignment
    offsets, arena, hname = _heuristic_layout(intervals, a)
    if hint is not None and raw_arena(intervals, hint) < arena:
        offsets, arena, hname = dict(hint), raw_arena(intervals, hint), "hint"
    hint_arena = arena
    lb = max(layout_lower_bound(intervals, a), known_bound)
    items = [iv for iv in intervals if iv.size > 0]
    for iv in intervals:
        if iv.size == 0:
            offsets[iv.key] = 0
    if arena <= lb or not items or time_limit <= 0:
        status = "optimal" if arena <= lb else "heuristic"
        return LayoutResult(offsets, arena, lb, status, timer.elapsed, hint_arena, {"hint": hname})

    m = cp_model.CpModel()
    obj = m.new_int_var(lb, arena, "arena")
    xs, ys = [], []
    ks = {}
    for iv in items:
        units = _align(iv.size, a) // a
        kmax = (arena - iv.size) // a  # any improving layout keeps offset + size <= arena
        k = m.new_int_var(0, max(0, kmax), f"k_{iv.key}")
        ks[iv.key] = k
        m.add(obj >= a * k + iv.size)
        m.add_hint(k, offsets[iv.key] // a)
        xs.append(m.new_fixed_size_interval_var(iv.start, iv.end - iv.start + 1, f"t_{iv.key}"))
        ys.append(m.new_fixed_size_interval_var(k, units, f"y_{iv.key}"))
    m.add_no_overlap_2d(xs, ys)
    m.add_hint(obj, arena)
    m.minimize(obj)
    solver = make_solver(time_limit - timer.elapsed, workers, seed, deterministic)
    rep = _Reporter("cpsat-layout", progress, timer)
    if progress is not None:
        solver.best_bound_callback = rep.on_bound
    st = solver.solve(m, rep)
    bound = lb
    status = "heuristic"
    if st in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        bound = max(lb, math.ceil(solver.best_objective_bound - 1e-6))
        new = {key: a * solver.value(k) for key, k in ks.items()}
        for iv in intervals:
            if iv.size == 0:
                new[iv.key] = 0
        new_arena = raw_arena(intervals, new)
        if new_arena <= arena:
            offsets, arena = new, new_arena
        status = "optimal" if st == cp_model.OPTIMAL or arena <= bound else "feasible"
    elif st == cp_model.UNKNOWN and math.isfinite(solver.best_objective_bound):
        bound = max(lb, math.ceil(solver.best_objective_bound - 1e-6))
        status = "feasible" if bound > lb else "heuristic"
    if arena <= bound:
        status = "optimal"
    return LayoutResult(
        offsets,
        arena,
        min(bound, arena),
        status,
        timer.elapsed,
        hint_arena,
        {"hint": hname, "cpsat_status": solver.status_name(st)},
    )


def solve_joint(graph: Graph, target: Target, options: SolveOptions | None = None) -> Plan:
    """Joint operator order + offsets (positions and addresses in one CP-SAT model).

    Minimises the raw arena directly, so unlike `cpsat-order` its "optimal" covers
    fragmentation too. Refuses graphs above `options.extra["max_ops"]` (default 60) ops:
    the NoOverlap2D with variable times grows quadratically.
    """
    from planner.solvers.cpsat_order import build_order_model, heuristic_start, lifetime_items

    options = options or SolveOptions()
    timer = Timer()
    max_ops = int(options.extra.get("max_ops", 60))
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
            ys.append(m.new_fixed_size_interval_var(k, _align(raw, a) // a, f"y_{key}"))
    m.add_no_overlap_2d(xs, ys)
    # redundant: aligned max-live (the cumulative capacity) minus the largest slack bounds the arena
    m.add(obj >= om.capacity - om.max_slack)
    m.add_hint(obj, h_arena)
    m.minimize(obj)
    if h_arena <= lb:  # the heuristic plan already meets the bound: nothing to search
        return _joint_plan(graph, target, options, timer, h_order, h_offs, h_arena, lb, "not run", h_arena)
    solver = make_solver(
        options.time_limit - timer.elapsed,
        options.workers,
        options.seed,
        bool(options.extra.get("deterministic", False)),
    )
    rep = _Reporter("cpsat-joint", options.progress, timer)
    if options.progress is not None:
        solver.best_bound_callback = rep.on_bound
    st = solver.solve(m, rep)
    order, offsets, arena = h_order, h_offs, h_arena
    bound = lb
    cp_status = solver.status_name(st)
    if st in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        bound = max(lb, math.ceil(solver.best_objective_bound - 1e-6))
        new_order = sorted(om.pos, key=lambda o: solver.value(om.pos[o]))
        new_offs = {key: a * solver.value(k) for key, k in ks.items()}
        for t in graph.tensors:
            new_offs.setdefault(t, 0)
        new_arena = arena_of_layout(graph, aligned_intervals(graph, target, new_order), new_offs)
        if new_arena <= arena:
            order, offsets, arena = new_order, new_offs, new_arena
    elif st == cp_model.UNKNOWN and math.isfinite(solver.best_objective_bound):
        bound = max(lb, math.ceil(solver.best_objective_bound - 1e-6))
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
