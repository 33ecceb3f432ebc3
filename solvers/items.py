"""Lifetime items: tensors grouped by one lifetime definition, and what every order forces.

The order model, the joint model, the DP and the relaxation bounds all reason about the
no-spill lifetimes of `lowering.live_intervals` symbolically, before an order exists: a
tensor starts at its producer (or at 0, or at its first consumer) and ends at its last
consumer (or at the end). Tensors sharing one definition are merged into one `Item`, so
the models carry one interval per item. `forced_live_bounds` is the bound every order
meets: what is live at an op in every topological order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from planner.graph import Graph
from planner.solvers.reach import Reach
from planner.target import Target


@dataclass
class Item:
    """Tensors sharing one lifetime definition.

    start: ("zero", ()) or ("min", ops); end: ("last", ()) or ("max", ops). With these,
    live_intervals' rules are: input = zero..max(consumers); loaded weight =
    min(consumers)..max(consumers); activation = producer..max(consumers) (producer if it
    has none); graph output = producer..last.
    """

    index: int
    keys: list[str]
    start: tuple[str, tuple[str, ...]]
    end: tuple[str, tuple[str, ...]]
    aligned: int  # sum of aligned sizes
    raw: int  # sum of raw sizes
    min_raw: int  # smallest positive raw size (for offset domains)
    max_slack: int  # largest align(b) - b among the keys


def lifetime_items(graph: Graph, target: Target) -> list[Item]:
    """The tensors that occupy L1, grouped by lifetime definition (one `Item` per group)."""
    groups: dict[tuple, list[str]] = {}
    for t in graph.tensors.values():
        uses = tuple(dict.fromkeys(graph.consumers[t.name]))
        if t.kind == "input":
            if not uses:
                continue
            key = (("zero", ()), ("max", uses))
        elif t.kind == "weight":
            if not uses or target.weights != "load":
                continue
            key = (("min", uses), ("max", uses))
        else:
            p = graph.producer[t.name]
            end = ("last", ()) if t.kind == "output" else ("max", uses or (p,))
            key = (("min", (p,)), end)
        norm = ((key[0][0], tuple(sorted(key[0][1]))), (key[1][0], tuple(sorted(key[1][1]))))
        groups.setdefault(norm, []).append(t.name)
    items = []
    for (start, end), keys in groups.items():
        sizes = [graph.size(k) for k in keys]
        al = [target.align(s) for s in sizes]
        pos = [s for s in sizes if s > 0]
        items.append(
            Item(
                len(items),
                keys,
                start,
                end,
                sum(al),
                sum(sizes),
                min(pos, default=0),
                max(a - s for a, s in zip(al, sizes, strict=True)),
            )
        )
    return items


def item_interval(item: Item, pos: dict[str, int], n: int) -> tuple[int, int]:
    """The (start, end) an item gets under positions `pos` (same rules as live_intervals)."""
    s = 0 if item.start[0] == "zero" else min(pos[o] for o in item.start[1])
    e = n - 1 if item.end[0] == "last" else max(pos[o] for o in item.end[1])
    return s, e


def _bits_to_bool(mask: int, n: int) -> np.ndarray:
    if n == 0:
        return np.zeros(0, dtype=bool)
    b = np.frombuffer(mask.to_bytes((n + 7) // 8, "little"), dtype=np.uint8)
    return np.unpackbits(b, bitorder="little")[:n].astype(bool)


def forced_live_bounds(
    graph: Graph, target: Target, items: Sequence[Item] | None = None, reach: Reach | None = None
) -> tuple[int, int]:
    """Order-free bounds (aligned peak, raw arena) from the tensors live at an op in EVERY
    topological order: started at or before it (producer / a first consumer is an ancestor
    or the op itself; inputs always) and ending at or after it (a consumer is a descendant
    or the op itself; outputs always). Contains every working set."""
    items = lifetime_items(graph, target) if items is None else items
    reach = reach or Reach(graph)
    n = reach.n
    if n == 0:
        return 0, 0
    full = (1 << n) - 1
    al = np.zeros(n, dtype=np.int64)
    slack_sum = np.zeros(n, dtype=np.int64)  # aligned sum per op
    maxslack = np.zeros(n, dtype=np.int64)
    for it in items:
        if it.aligned == 0:
            continue
        if it.start[0] == "zero":
            smask = full
        else:  # ops at or after one of the start ops
            smask = 0
            for o in it.start[1]:
                i = reach.idx[o]
                smask |= reach.desc[i] | (1 << i)
        if it.end[0] == "last":
            emask = full
        else:  # ops at or before one of the end ops
            emask = 0
            for o in it.end[1]:
                i = reach.idx[o]
                emask |= reach.anc[i] | (1 << i)
        live = _bits_to_bool(smask & emask, n)
        al[live] += it.aligned
        maxslack[live] = np.maximum(maxslack[live], it.max_slack)
    slack_sum[:] = al - maxslack
    return int(al.max()), int(slack_sum.max())
