"""Order-free facts every plan is held against: working sets, the smallest budget, the
compulsory traffic.

They live in the core (not with the solvers) because the simulator, the CLI and every
solver quote them: a plan's `lower_bound_bytes` is at least `working_set_bound`, a
budget below `min_budget` gets a "does not fit" that names it, and `compulsory_traffic`
is the part of any plan's traffic no spill decision can avoid.

All sizes are raw tensor bytes unless the name says aligned. Where the target lets
tensors share bytes (planner/sharing.py), tensors of one op that are connected by legal
relations may overlap, so such a group counts its largest member only; tensors that no
chain of relations connects never overlap, so groups add up.
"""

from __future__ import annotations

from planner.graph import Graph
from planner.sharing import LEVEL_KINDS, relations
from planner.target import Target


def op_tensors(graph: Graph, target: Target, op: str) -> list[str]:
    """The distinct tensors op `op` needs in L1 while it runs (inputs, then outputs)."""
    o = graph.op(op)
    return [t for t in dict.fromkeys((*o.inputs, *o.outputs)) if target.occupies_l1(graph.tensors[t])]


def share_components(graph: Graph, target: Target) -> dict[str, str]:
    """tensor -> a representative of the tensors it may share bytes with (transitively,
    by the relations the target's share level allows); empty when nothing may share."""
    kinds = LEVEL_KINDS[target.share]
    if not kinds:
        return {}

    def compute() -> dict[str, str]:
        parent: dict[str, str] = {}

        def find(t: str) -> str:
            while parent.get(t, t) != t:
                t = parent[t]
            return t

        for r in relations(graph, kinds):
            a, b = find(r.child), find(r.parent)
            if a != b:
                parent[a] = b
        return {t: find(t) for t in parent}

    return graph.derived(("share_components", target.share), compute)


def op_groups(graph: Graph, target: Target, op: str) -> list[list[str]]:
    """The tensors op `op` needs in L1, grouped by what may share bytes (singletons when the
    target shares nothing)."""
    comp = share_components(graph, target)
    groups: dict[str, list[str]] = {}
    for t in op_tensors(graph, target, op):
        groups.setdefault(comp.get(t, t), []).append(t)
    return list(groups.values())


def working_set(graph: Graph, target: Target, op: str) -> int:
    """Bytes an op needs in L1 at once: its distinct inputs and outputs (DESIGN §1 rule 3),
    each group of tensors that may share bytes counted by its largest member."""
    return sum(max(graph.size(t) for t in g) for g in op_groups(graph, target, op))


def working_set_bound(graph: Graph, target: Target) -> int:
    """Order-free bound valid for every plan, spills included: the largest working set."""
    return max((working_set(graph, target, o.name) for o in graph.ops), default=0)


def op_need(graph: Graph, target: Target, op: str) -> int:
    """Smallest L1 that can host `op` with aligned offsets: all its tensors packed tight.

    Every tensor but the topmost occupies its aligned size, the topmost only its raw bytes,
    so the best choice puts the tensor with the most alignment padding on top.
    """
    names = [max(g, key=graph.size) for g in op_groups(graph, target, op)]
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
