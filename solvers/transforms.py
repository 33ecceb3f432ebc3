"""Which transformed graph to plan: the planner's choice among the candidates a user allows.

A transformation (fusion today) changes what is computed and stored; it is worth it only
where it lowers the memory the plan needs, and that depends on the target (which bytes may
be shared, the lifetimes). onnxruntime's fused graph, for instance, materialises an extra
tensor where its CPU provider splits HardSwish into HardSigmoid and Mul, so on some models
the graph as written plans smaller. `choose_graph` asks the heuristics (instant) which
candidate to plan, so `auto` then spends its time on that one.
"""

from __future__ import annotations

from collections.abc import Sequence

from planner.graph import Graph
from planner.solvers.base import Timer
from planner.solvers.portfolio import choose_sharing
from planner.target import Target


def choose_graph(candidates: Sequence[Graph], target: Target, time_limit: float | None = None) -> Graph:
    """The candidate whose best heuristic plan (with the sharing the target allows) has the
    smallest arena; on a tie the earlier candidate. `time_limit`: seconds for all of it,
    shared by the candidates left (each one's heuristics stop at its share)."""
    timer = Timer()
    best: tuple[int, Graph] | None = None
    for i, g in enumerate(candidates):
        share = None if time_limit is None else max(time_limit - timer.elapsed, 0.0) / (len(candidates) - i)
        _, _, start = choose_sharing(g, target, share)
        if best is None or start.arena < best[0]:
            best = (start.arena, g)
    assert best is not None, "choose_graph needs at least one candidate"
    return best[1]
