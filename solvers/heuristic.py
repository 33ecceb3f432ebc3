"""The baseline solvers (an order heuristic plus a layout heuristic, lowered to stages)
and the heuristic start every exact no-spill solver begins from and never falls below."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from planner.graph import Graph
from planner.plan import Plan, SolverInfo
from planner.solvers.base import SolveOptions, Timer, aligned_intervals, arena_of_layout, nospill_plan
from planner.solvers.heuristics.layout import LAYOUTS
from planner.solvers.heuristics.order import ORDERS
from planner.solvers.lowering import max_live
from planner.target import Target


def best_layout(
    graph: Graph,
    target: Target,
    order: Sequence[str],
    layouts: Sequence[str] = tuple(LAYOUTS),
    time_limit: float | None = None,
) -> tuple[int, str, dict[str, int]]:
    """Try each layout heuristic on one order; return (arena, layout name, offsets) of the best.
    With `time_limit` (seconds), no further layout is tried once it has passed (the first
    always is: a layout is quadratic in the tensors, 0.15 s for 3,000 of them)."""
    timer = Timer()
    ivs = aligned_intervals(graph, target, order)
    best = None
    for name in layouts:
        if best is not None and time_limit is not None and timer.elapsed >= time_limit:
            break
        offs = LAYOUTS[name](ivs)
        arena = arena_of_layout(graph, ivs, offs)
        if best is None or arena < best[0]:
            best = (arena, name, offs)
    return best


def best_heuristic(
    graph: Graph,
    target: Target,
    orders: Sequence[str] = tuple(ORDERS),
    layouts: Sequence[str] = tuple(LAYOUTS),
    time_limit: float | None = None,
) -> tuple[int, list[str], str, str, dict[str, int]]:
    """Every order heuristic × every layout heuristic: (arena, order, order name, layout name, offsets).
    With `time_limit` (seconds), nothing more is tried once it has passed (the first order
    with its first layout always is)."""
    timer = Timer()
    best = None
    for oname in orders:
        left = None if time_limit is None else time_limit - timer.elapsed
        if best is not None and left is not None and left <= 0:
            break
        order = ORDERS[oname](graph, target)
        arena, lname, offs = best_layout(graph, target, order, layouts, left)
        if best is None or arena < best[0]:
            best = (arena, order, oname, lname, offs)
    return best


@dataclass
class HeuristicStart:
    """The best heuristic answers, by two measures: the order with the least aligned
    max-live (the hint for exact order models) and the order + layout with the least arena
    (the fallback plan, so an exact solver is never worse than the baselines)."""

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


def heuristic_start(graph: Graph, target: Target, time_limit: float | None = None) -> HeuristicStart:
    """Every order heuristic, each with every layout heuristic (linear-ish, instant).

    With `time_limit` (seconds), once it has passed no further order or layout is tried: the
    first order with its first layout always is, so there is always an answer; the rest is
    what the time allowed (on a few thousand ops the layouts alone take seconds)."""
    timer = Timer()
    best_p = best_a = None
    for name, fn in ORDERS.items():
        left = None if time_limit is None else time_limit - timer.elapsed
        if best_a is not None and left is not None and left <= 0:
            break
        order = fn(graph, target)
        peak = max_live(graph, target, order, aligned=True)
        if best_p is None or peak < best_p[1]:
            best_p = (order, peak, name)
        left = None if time_limit is None else time_limit - timer.elapsed
        arena, lname, offs = best_layout(graph, target, order, time_limit=left)
        if best_a is None or arena < best_a[1]:
            best_a = (order, arena, offs, f"{name}+{lname}")
    return HeuristicStart(*best_p, *best_a)


def _solver(name: str, orders: Sequence[str], layouts: Sequence[str]):
    def solve(graph: Graph, target: Target, options: SolveOptions | None = None) -> Plan:
        options = options or SolveOptions()
        timer = Timer()
        _, order, oname, lname, offs = best_heuristic(graph, target, orders, layouts)
        facts = {"order": oname, "layout": lname}
        info = SolverInfo(name, "heuristic", 0, timer.elapsed, options.params(), facts)
        return nospill_plan(graph, target, order, offs, info)

    solve.__name__ = f"solve_{name.replace('-', '_')}"
    solve.__doc__ = f"Heuristic solver {name}: orders {list(orders)} × layouts {list(layouts)}, best kept."
    return solve


solve_given_firstfit = _solver("given-firstfit", ["given"], ["first-fit"])
solve_given_bestfit = _solver("given-bestfit", ["given"], ["best-fit"])
solve_greedy = _solver("greedy", ["greedy"], list(LAYOUTS))
solve_dfs = _solver("dfs", ["dfs", "dfs-heavy"], list(LAYOUTS))
solve_best = _solver("best", list(ORDERS), list(LAYOUTS))
