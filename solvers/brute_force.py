"""Exhaustive search over the stage model for tiny graphs (tests only, <= ~5 ops).

Dijkstra over states (ops run, tensors in L1, activations with an LLB copy) with every
legal L/R/S/F move of DESIGN §1. Memory is counted in raw bytes against the budget and
fragmentation is ignored (as if alignment were 1 and offsets could always be found), so
the result is the true optimum of the stage model's memory accounting — the yardstick the
CP-SAT reference model is tested against. Cost is (traffic bytes, L/R/S steps); F stages
are free, matching cpsat_stage, which attaches frees to the step they follow.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from planner.bounds import compulsory_traffic
from planner.graph import Graph
from planner.plan import Stage
from planner.target import Target


@dataclass
class BruteResult:
    """The optimum the exhaustive search found, and one plan reaching it (no offsets)."""

    traffic: int  # total L + S bytes
    spill_traffic: int  # traffic minus compulsory (inputs/weights loaded once, outputs stored once)
    steps: int  # L, R and S stages (frees not counted)
    stages: list[Stage]  # without offsets


def brute_force(graph: Graph, target: Target, max_ops: int = 6, max_states: int = 2_000_000) -> BruteResult | None:
    """Least-traffic plan within target.budget (None: unbounded); None if no plan exists."""
    if len(graph.ops) > max_ops:
        raise ValueError(f"brute force is for tiny graphs (<= {max_ops} ops), got {len(graph.ops)}")
    g = graph
    budget = target.budget if target.budget is not None else sum(x.bytes for x in g.tensors.values())
    names = [t for t in g.tensors if target.occupies_l1(g.tensors[t])]
    bit = {t: 1 << i for i, t in enumerate(names)}
    size = {t: g.size(t) for t in names}
    ops = g.ops
    n = len(ops)
    src_llb = sum(bit[t] for t in names if g.tensors[t].kind in ("input", "weight"))
    op_in = [sum(bit[t] for t in dict.fromkeys(o.inputs) if t in bit) for o in ops]
    op_out = [sum(bit[t] for t in o.outputs) for o in ops]
    preds = [sum(1 << g.op_index[p] for p in g.dag.predecessors(o.name)) for o in ops]
    cons_mask = {t: sum(1 << g.op_index[c] for c in g.consumers[t]) for t in names}
    out_mask = sum(bit[t] for t in g.outputs)
    full = (1 << n) - 1

    def mem(l1: int) -> int:
        return sum(size[t] for t in names if l1 & bit[t])

    start = (0, 0, src_llb)
    dist = {start: (0, 0)}
    prev: dict[tuple, tuple] = {}
    heap = [(0, 0, start)]
    while heap:
        tr, st, s = heapq.heappop(heap)
        if dist.get(s) != (tr, st):
            continue
        ran, l1, llb = s
        if ran == full and (llb & out_mask) == out_mask:
            stages = []
            cur = s
            while cur != start:
                cur, stage = prev[cur]
                stages.append(stage)
            stages.reverse()
            return BruteResult(tr, tr - compulsory_traffic(g, target), st, stages)
        if len(dist) > max_states:
            raise RuntimeError("brute force: state limit reached")
        used = mem(l1)
        moves = []
        for i, o in enumerate(ops):
            if ran >> i & 1 or (preds[i] & ran) != preds[i] or (op_in[i] & l1) != op_in[i]:
                continue
            add = sum(size[t] for t in o.outputs)
            if used + add <= budget:
                moves.append(((ran | 1 << i, l1 | op_out[i], llb), 0, 1, Stage("R", o.name)))
        for t in names:
            b = bit[t]
            if l1 & b:
                if not llb & b and g.tensors[t].kind != "input":
                    moves.append(((ran, l1, llb | b), size[t], 1, Stage("S", t)))
                lost = not llb & b and (g.tensors[t].kind == "output" or (cons_mask[t] & ~ran))
                if not lost:
                    moves.append(((ran, l1 & ~b, llb), 0, 0, Stage("F", t)))
            elif llb & b and used + size[t] <= budget and cons_mask[t] & ~ran:
                moves.append(((ran, l1 | b, llb), size[t], 1, Stage("L", t)))
        for ns, dtr, dst, stage in moves:
            cand = (tr + dtr, st + dst)
            if ns not in dist or cand < dist[ns]:
                dist[ns] = cand
                prev[ns] = (s, stage)
                heapq.heappush(heap, (cand[0], cand[1], ns))
    return None
