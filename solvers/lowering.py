"""From an operator order and offsets to L/R/S/F stages under the no-spill lifetimes.

No-spill lifetimes (the classic ones, also TFLite Micro's): graph inputs are loaded before
the first op and live until their last consumer; activations live from their producer to
their last consumer; graph outputs are stored right after they are produced and stay
resident to the end; `load` weights are loaded just before their first consumer and freed
after their last; in-place weights never occupy L1. Positions are op indices in the order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from planner.graph import Graph
from planner.plan import Stage
from planner.target import Target


@dataclass(frozen=True)
class Interval:
    """A residency: `key` occupies `size` bytes of L1 during positions start..end (inclusive)."""

    key: str
    start: int
    end: int
    size: int


def live_intervals(graph: Graph, target: Target, order: Sequence[str]) -> list[Interval]:
    """One residency per tensor that occupies L1, over op positions of `order` (the rules
    in the module docstring); raw byte sizes."""
    pos = {o: i for i, o in enumerate(order)}
    last = len(order) - 1
    out: list[Interval] = []
    for t in graph.tensors.values():
        uses = [pos[c] for c in graph.consumers[t.name]]
        if t.kind == "input":
            if uses:
                out.append(Interval(t.name, 0, max(uses), t.bytes))
        elif t.kind == "weight":
            if uses and target.weights == "load":
                out.append(Interval(t.name, min(uses), max(uses), t.bytes))
        else:
            p = pos[graph.producer[t.name]]
            end = last if t.kind == "output" else max([p, *uses])
            out.append(Interval(t.name, p, end, t.bytes))
    return out


def lower(graph: Graph, target: Target, order: Sequence[str], offsets: Mapping[str, int]) -> list[Stage]:
    """Stages for `order` with one residency per tensor at `offsets[tensor]`."""
    ivs = live_intervals(graph, target, order)
    loads_at: dict[int, list[str]] = {}
    frees_at: dict[int, list[str]] = {}
    for iv in ivs:
        t = graph.tensors[iv.key]
        if t.kind in ("input", "weight"):
            loads_at.setdefault(-1 if t.kind == "input" else iv.start, []).append(iv.key)
        if t.kind != "output":
            frees_at.setdefault(iv.end, []).append(iv.key)
    stages: list[Stage] = [Stage("L", t, offset=offsets[t]) for t in loads_at.get(-1, [])]
    for p, name in enumerate(order):
        stages += [Stage("L", t, offset=offsets[t]) for t in loads_at.get(p, [])]
        op = graph.op(name)
        stages.append(Stage("R", name, offsets={t: offsets[t] for t in op.outputs}))
        stages += [Stage("S", t) for t in op.outputs if graph.tensors[t].kind == "output"]
        stages += [Stage("F", t) for t in frees_at.get(p, [])]
    stages += [Stage("F", t) for t in graph.outputs]
    return stages


def live_profile(graph: Graph, target: Target, order: Sequence[str], aligned: bool = True) -> list[int]:
    """Bytes live at each op position of `order` under the no-spill lifetimes."""
    n = len(order)
    delta = [0] * (n + 1)
    for iv in live_intervals(graph, target, order):
        size = target.align(iv.size) if aligned else iv.size
        delta[iv.start] += size
        delta[iv.end + 1] -= size
    out, cur = [], 0
    for d in delta[:-1]:
        cur += d
        out.append(cur)
    return out


def max_live(graph: Graph, target: Target, order: Sequence[str], aligned: bool = False) -> int:
    """Fixed-order bound: the most bytes live at one op under the no-spill lifetimes (with
    `aligned`, in aligned sizes: what a layout packs, the measure order solvers minimise)."""
    return max(live_profile(graph, target, order, aligned), default=0)
