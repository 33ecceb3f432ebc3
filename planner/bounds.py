"""Order-free facts every plan is held against: working sets, the smallest budget, the
compulsory traffic.

They live in the core (not with the solvers) because the simulator, the CLI and every
solver quote them: a plan's `lower_bound_bytes` is at least `working_set_bound`, a
budget below `min_budget` gets a "does not fit" that names it, and `compulsory_traffic`
is the part of any plan's traffic no spill decision can avoid.

All sizes are raw tensor bytes unless the name says aligned.
"""

from __future__ import annotations

from planner.graph import Graph
from planner.target import Target


def op_tensors(graph: Graph, target: Target, op: str) -> list[str]:
    """The distinct tensors op `op` needs in L1 while it runs (inputs, then outputs)."""
    o = graph.op(op)
    return [t for t in dict.fromkeys((*o.inputs, *o.outputs)) if target.occupies_l1(graph.tensors[t])]


def working_set(graph: Graph, target: Target, op: str) -> int:
    """Bytes an op needs in L1 at once: its distinct inputs and outputs (DESIGN §1 rule 3)."""
    return sum(graph.size(t) for t in op_tensors(graph, target, op))


def working_set_bound(graph: Graph, target: Target) -> int:
    """Order-free bound valid for every plan, spills included: the largest working set."""
    return max((working_set(graph, target, o.name) for o in graph.ops), default=0)


def op_need(graph: Graph, target: Target, op: str) -> int:
    """Smallest L1 that can host `op` with aligned offsets: all its tensors packed tight.

    Every tensor but the topmost occupies its aligned size, the topmost only its raw bytes,
    so the best choice puts the tensor with the most alignment padding on top.
    """
    names = op_tensors(graph, target, op)
    if not names:
        return 0
    aligned = sum(target.align(graph.size(t)) for t in names)
    waste = max(target.align(graph.size(t)) - graph.size(t) for t in names)
    return aligned - waste


def min_budget(graph: Graph, target: Target) -> int:
    """The smallest budget any plan (spilling allowed) can use: no arena is below it, and
    the spill heuristics reach it (they can always flush L1 and pack one op's tensors)."""
    return max((op_need(graph, target, o.name) for o in graph.ops), default=0)


def compulsory_traffic(graph: Graph, target: Target) -> int:
    """L/S bytes every plan has: consumed inputs and loaded weights once, outputs once."""
    total = 0
    for t, x in graph.tensors.items():
        if x.kind == "output":
            total += x.bytes
        elif x.kind in ("input", "weight") and graph.consumers[t] and target.occupies_l1(x):
            total += x.bytes
    return total
