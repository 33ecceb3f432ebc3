"""Operator orders: the model's own, XLA-style greedy list scheduling, DFS post-orders.

All run in near-linear time so they give an instant answer for 2,000+ op graphs and
serve as the baselines users compare exact plans against.
"""

from __future__ import annotations

from collections.abc import Callable

import networkx as nx

from planner.graph import Graph
from planner.target import Target

Order = list[str]


def given(graph: Graph, target: Target) -> Order:
    """The model file's own order (what TFLite/TFLM/onnxruntime would run), made topological."""
    names = [o.name for o in graph.ops]
    if graph.is_topological(names):
        return names
    return list(nx.lexicographical_topological_sort(graph.dag, key=graph.op_index.__getitem__))


def greedy_memory(graph: Graph, target: Target) -> Order:
    """Run the ready op that leaves the least live memory (outputs allocated minus inputs freed).

    Ties go to the op earliest in the model's order. Scores are cached and only recomputed
    for ops that read a tensor whose remaining-consumer count just changed.
    """
    counted = {t for t in graph.tensors if target.occupies_l1(graph.tensors[t])}
    remaining = {t: len(c) for t, c in graph.consumers.items()}
    indeg = {o.name: graph.dag.in_degree(o.name) for o in graph.ops}
    idx = graph.op_index

    def score(name: str) -> int:
        op = graph.op(name)
        alloc = sum(graph.size(t) for t in op.outputs)
        freed = sum(
            graph.size(t)
            for t in dict.fromkeys(op.inputs)
            if t in counted and remaining[t] == 1 and graph.tensors[t].kind != "output"
        )
        return alloc - freed

    ready = {o for o, d in indeg.items() if d == 0}
    scores = {o: score(o) for o in ready}
    order: Order = []
    while ready:
        best = min(ready, key=lambda o: (scores[o], idx[o]))
        ready.discard(best)
        order.append(best)
        op = graph.op(best)
        touched: set[str] = set()
        for t in dict.fromkeys(op.inputs):
            remaining[t] -= 1
            touched.update(c for c in graph.consumers[t] if c in ready)
        for s in graph.dag.successors(best):
            indeg[s] -= 1
            if indeg[s] == 0:
                ready.add(s)
                touched.add(s)
        for o in touched:
            scores[o] = score(o)
    return order


def _dfs_post_order(graph: Graph, child_key: Callable[[str], object] | None) -> Order:
    """Post-order DFS from the sinks through producers: each branch finishes before the next."""
    seen: set[str] = set()
    order: Order = []
    sinks = [o.name for o in graph.ops if graph.dag.out_degree(o.name) == 0]
    for root in sinks:
        if root in seen:
            continue
        stack = [(root, iter(_preds(graph, root, child_key)))]
        seen.add(root)
        while stack:
            node, it = stack[-1]
            nxt = next((p for p in it if p not in seen), None)
            if nxt is None:
                stack.pop()
                order.append(node)
            else:
                seen.add(nxt)
                stack.append((nxt, iter(_preds(graph, nxt, child_key))))
    return order


def _preds(graph: Graph, op: str, key) -> list[str]:
    preds = list(dict.fromkeys(graph.producer[t] for t in graph.op(op).inputs if t in graph.producer))
    return sorted(preds, key=key) if key else preds


def dfs(graph: Graph, target: Target) -> Order:
    """Plain DFS post-order, inputs visited in the op's input order (XLA's DFS scheduler)."""
    return _dfs_post_order(graph, None)


def dfs_heavy_first(graph: Graph, target: Target) -> Order:
    """DFS post-order visiting the branch with the largest ancestry first (Sethi–Ullman-like)."""
    anc_bytes: dict[str, int] = {}
    for name in nx.topological_sort(graph.dag):
        op = graph.op(name)
        own = sum(graph.size(t) for t in op.outputs)
        anc_bytes[name] = own + max((anc_bytes[p] for p in graph.dag.predecessors(name)), default=0)
    return _dfs_post_order(graph, lambda p: (-anc_bytes[p], graph.op_index[p]))


ORDERS: dict[str, Callable[[Graph, Target], Order]] = {
    "given": given,
    "greedy": greedy_memory,
    "dfs": dfs,
    "dfs-heavy": dfs_heavy_first,
}
