"""Lower bounds on peak L1 memory, held against every plan (DESIGN §7).

All bounds are in raw tensor bytes, so they bound `peak_l1_bytes` and hence
`arena_bytes` for every plan, spilling or not.
"""

from __future__ import annotations

from collections.abc import Sequence

from planner.graph import Graph
from planner.target import Target


def resident_in_l1(graph: Graph, target: Target, tensor: str) -> bool:
    """Whether a tensor ever occupies L1 (in-place weights are read from flash)."""
    return not (target.weights == "in_place" and graph.tensors[tensor].kind == "weight")


def working_set(graph: Graph, target: Target, op: str) -> int:
    """Bytes an op needs in L1 at once: its distinct inputs and outputs."""
    o = graph.op(op)
    names = dict.fromkeys((*o.inputs, *o.outputs))
    return sum(graph.size(t) for t in names if resident_in_l1(graph, target, t))


def working_set_bound(graph: Graph, target: Target) -> int:
    """Order-free bound valid for every plan, spills included: the largest working set."""
    return max((working_set(graph, target, o.name) for o in graph.ops), default=0)


def max_live(graph: Graph, target: Target, order: Sequence[str], aligned: bool = False) -> int:
    """Fixed-order bound: the most bytes live at one op under the no-spill lifetimes."""
    from planner.solvers.lowering import live_intervals

    n = len(order)
    delta = [0] * (n + 1)
    for iv in live_intervals(graph, target, order):
        size = target.align(iv.size) if aligned else iv.size
        delta[iv.start] += size
        delta[iv.end + 1] -= size
    best = cur = 0
    for p in range(n):
        cur += delta[p]
        best = max(best, cur)
    return best
