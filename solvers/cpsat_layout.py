"""Arena layout for a fixed schedule: layout heuristics, then CP-SAT when they fragment.

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

Two entry points share it: `layout_order` for the no-spill lifetimes of an op order,
`layout_stages` for the residencies of any stage list (spill plans). Order and offsets
together (`cpsat-joint`) live in solvers/cpsat_joint.py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from ortools.sat.python import cp_model

from planner.graph import Graph
from planner.plan import Stage
from planner.replay import residencies
from planner.simulate import simulate
from planner.solvers import cpsat
from planner.solvers.base import Progress, SolveOptions, Timer
from planner.solvers.heuristic import best_layout
from planner.solvers.heuristics.layout import LAYOUTS
from planner.solvers.lowering import Interval, live_intervals
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
    """The arena offsets give, in raw bytes: the top of the highest non-empty residency."""
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
    rep = cpsat.Reporter("cpsat-layout", progress, timer)
    st, solver = cpsat.solve(m, time_limit - timer.elapsed, workers, seed, deterministic, rep)
    bound = max(lb, cpsat.proven_bound(solver, st) or 0)
    status = "heuristic"
    if st in cpsat.SOLVED:
        new = {key: a * solver.value(k) for key, k in ks.items()}
        for iv in intervals:
            if iv.size == 0:
                new[iv.key] = 0
        new_arena = raw_arena(intervals, new)
        if new_arena <= arena:
            offsets, arena = new, new_arena
        status = "optimal" if st == cp_model.OPTIMAL or arena <= bound else "feasible"
    elif bound > lb:
        status = "feasible"
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
    arena, lname, offs = best_layout(graph, target, order, time_limit=max(time_limit, 0.0))
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


def layout_stages(
    graph: Graph,
    target: Target,
    stages: Sequence[Stage],
    options: SolveOptions | None = None,
    time_limit: float = 0.0,
    good_enough: int | None = None,
) -> tuple[list[Stage], int, str]:
    """Offsets for the residencies of a stage list (offsets in it are ignored): the best
    layout heuristic, then CP-SAT layout when time is left and the heuristics' arena is
    above both the peak and `good_enough`. Returns (stages with offsets, arena, method)."""
    res = residencies(graph, stages)
    last = max(len(stages) - 1, 0)
    keys = [f"{r.tensor}#{k}" for k, r in enumerate(res)]
    raw = {key: graph.size(r.tensor) for key, r in zip(keys, res, strict=True)}
    items = [Interval(key, r.start, min(r.end, last), target.align(raw[key])) for key, r in zip(keys, res, strict=True)]

    def arena(offs: dict[str, int]) -> int:
        return max((offs[k] + raw[k] for k in raw), default=0)

    best: tuple[int, str, dict[str, int]] | None = None
    for name, fn in LAYOUTS.items():
        offs = fn(items)
        a = arena(offs)
        if best is None or a < best[0]:
            best = (a, name, offs)
    peak = simulate(graph, target.with_budget(None), stages).metrics.peak_l1_bytes
    enough = peak if good_enough is None else max(peak, good_enough)
    if best is not None and best[0] > enough and time_limit > 0.5:
        opts = options or SolveOptions()
        raw_items = [Interval(iv.key, iv.start, iv.end, raw[iv.key]) for iv in items]
        found = optimal_layout(raw_items, time_limit, opts.workers, opts.seed, target.alignment, hint=best[2])
        if found.arena < best[0]:
            best = (found.arena, "cpsat-layout", found.offsets)
    assert best is not None
    a, name, offs = best
    made_by = {(r.start, r.tensor): key for key, r in zip(keys, res, strict=True)}
    out: list[Stage] = []
    for i, s in enumerate(stages):
        if s.kind == "L":
            out.append(Stage("L", s.name, offset=offs[made_by[i, s.name]]))
        elif s.kind == "R":
            outs = graph.op(s.name).outputs
            out.append(Stage("R", s.name, offsets={t: offs[made_by[i, t]] for t in outs}))
        else:
            out.append(s)
    return out, a, name
