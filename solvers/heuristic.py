"""The baseline solvers: an order heuristic plus a layout heuristic, lowered to stages."""

from __future__ import annotations

from collections.abc import Sequence

from planner.graph import Graph
from planner.plan import Plan, SolverInfo
from planner.solvers.base import SolveOptions, Timer, aligned_intervals, arena_of_layout, nospill_plan
from planner.solvers.heuristics.layout import LAYOUTS
from planner.solvers.heuristics.order import ORDERS
from planner.target import Target


def best_layout(
    graph: Graph, target: Target, order: Sequence[str], layouts: Sequence[str] = tuple(LAYOUTS)
) -> tuple[int, str, dict[str, int]]:
    """Try each layout heuristic on one order; return (arena, layout name, offsets) of the best."""
    ivs = aligned_intervals(graph, target, order)
    best = None
    for name in layouts:
        offs = LAYOUTS[name](ivs)
        arena = arena_of_layout(graph, ivs, offs)
        if best is None or arena < best[0]:
            best = (arena, name, offs)
    return best


def best_heuristic(
    graph: Graph, target: Target, orders: Sequence[str] = tuple(ORDERS), layouts: Sequence[str] = tuple(LAYOUTS)
) -> tuple[int, list[str], str, str, dict[str, int]]:
    """Every order heuristic × every layout heuristic: (arena, order, order name, layout name, offsets)."""
    best = None
    for oname in orders:
        order = ORDERS[oname](graph, target)
        arena, lname, offs = best_layout(graph, target, order, layouts)
        if best is None or arena < best[0]:
            best = (arena, order, oname, lname, offs)
    return best


def _solver(name: str, orders: Sequence[str], layouts: Sequence[str]):
    def solve(graph: Graph, target: Target, options: SolveOptions | None = None) -> Plan:
        options = options or SolveOptions()
        timer = Timer()
        _, order, oname, lname, offs = best_heuristic(graph, target, orders, layouts)
        info = SolverInfo(name, "heuristic", 0, 0.0, {"order": oname, "layout": lname})
        plan = nospill_plan(graph, target, order, offs, info)
        plan.solver.wall_s = timer.elapsed
        return plan

    solve.__name__ = f"solve_{name.replace('-', '_')}"
    solve.__doc__ = f"Heuristic solver {name}: orders {list(orders)} × layouts {list(layouts)}, best kept."
    return solve


solve_given_firstfit = _solver("given-firstfit", ["given"], ["first-fit"])
solve_given_bestfit = _solver("given-bestfit", ["given"], ["best-fit"])
solve_greedy = _solver("greedy", ["greedy"], list(LAYOUTS))
solve_dfs = _solver("dfs", ["dfs", "dfs-heavy"], list(LAYOUTS))
solve_best = _solver("best", list(ORDERS), list(LAYOUTS))
