"""Beam search over ready sets: a memory-aware list scheduler that keeps several partial
orders alive, so one greedy mistake early does not fix the peak (issue: large graphs).

Lifetimes are those of solvers/lowering.py, so the beam's peak equals `max_live` of the
returned order. States are executed-op bitsets (Python ints) with parent pointers, so no
per-state copies of counters are needed at 2,000+ ops.
"""

from __future__ import annotations

import time

from planner.graph import Graph
from planner.target import Target


def beam_search(
    graph: Graph, target: Target, width: int = 8, branch: int = 4, time_limit: float | None = None
) -> tuple[list[str], int]:
    """(order, peak in aligned bytes). Each state expands its `branch` best ready ops."""
    ops = [o.name for o in graph.ops]
    idx = {o: i for i, o in enumerate(ops)}
    bit = [1 << i for i in range(len(ops))]
    size = {t: target.align(x.bytes) for t, x in graph.tensors.items() if target.occupies_l1(graph.tensors[t])}
    cons_bits = {t: sum(bit[idx[c]] for c in cs) for t, cs in graph.consumers.items()}
    preds_bits = [sum(bit[idx[p]] for p in graph.dag.predecessors(o)) for o in ops]
    succs = [[idx[s] for s in graph.dag.successors(o)] for o in ops]
    load_w = target.weights == "load"
    # per op: (bytes allocated while it runs, [(tensor, consumer bits)] it may free)
    info = []
    for o in ops:
        op = graph.op(o)
        alloc = sum(size.get(t, 0) for t in op.outputs)
        loads = [t for t in dict.fromkeys(op.inputs) if load_w and graph.tensors[t].kind == "weight"]
        frees = [(t, cons_bits[t]) for t in dict.fromkeys(op.inputs) if t in size and graph.tensors[t].kind != "output"]
        dead_outs = sum(size[t] for t in op.outputs if not graph.consumers[t] and graph.tensors[t].kind != "output")
        info.append((alloc, loads, frees, dead_outs))
    start_live = sum(size[t] for t in graph.inputs if graph.consumers[t] and t in size)

    def step(done: int, live: int, i: int) -> tuple[int, int]:
        """(bytes during op i, bytes after it) given executed set `done`."""
        alloc, loads, frees, dead = info[i]
        # a loaded weight appears at its first consumer
        during = live + alloc + sum(size[t] for t in loads if not (cons_bits[t] & done))
        after_done = done | bit[i]
        freed = sum(size[t] for t, cb in frees if cb & ~after_done == 0)
        return during, during - freed - dead

    roots = frozenset(i for i in range(len(ops)) if preds_bits[i] == 0)
    # state: (peak, live, done, ready, parent, op)
    beam = [(start_live, start_live, 0, roots, None, -1)]
    deadline = None if time_limit is None else time.perf_counter() + time_limit
    for _ in range(len(ops)):
        cand = []
        seen: set[int] = set()
        w = width if deadline is None or time.perf_counter() < deadline else 1
        for st in beam:
            peak, live, done, ready, _, _ = st
            scored = []
            for i in ready:
                during, after = step(done, live, i)
                scored.append((max(peak, during), after, idx[ops[i]], i))
            scored.sort()
            for new_peak, after, _, i in scored[: (branch if w > 1 else 1)]:
                nd = done | bit[i]
                if nd in seen:
                    continue
                seen.add(nd)
                nr = set(ready)
                nr.discard(i)
                nr.update(s for s in succs[i] if preds_bits[s] & ~nd == 0)
                cand.append((new_peak, after, nd, frozenset(nr), st, i))
        cand.sort(key=lambda c: (c[0], c[1]))
        beam = cand[:w]
    best = beam[0]
    peak = best[0]
    order: list[str] = []
    st = best
    while st is not None and st[5] >= 0:
        order.append(ops[st[5]])
        st = st[4]
    order.reverse()
    return order, peak
