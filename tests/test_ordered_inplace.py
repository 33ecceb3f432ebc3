"""In-place writes an order allows (solvers/storage.py, `storage_graph(..., order=...)`):
HMCOS's rule, an element-wise op overwriting an input that dies with it. Every order of
the storage graph built from one order must give a plan the simulator accepts (the writes
stay safe in all of them, not only in the order they came from), and that order itself
must be one of them."""

from __future__ import annotations

import itertools
import random

import networkx as nx
import pytest

from planner.graph import Graph, Op, Tensor
from planner.plan import SolverInfo
from planner.solvers.heuristic import best_layout
from planner.solvers.lowering import lower
from planner.solvers.storage import DOMINATING_KINDS, shared_plan, storage_graph, storage_order, unshared
from planner.target import Target


def _fan(seed: int, readers: int = 3, depth: int = 2) -> Graph:
    """Feature maps read by several element-wise ops (ReLU branches, as NAS cells have),
    the branches joined by Add: in-place writes are legal only for the last reader."""
    rng = random.Random(seed)
    shape = (1, 4, 2, 2)
    nbytes = 64
    tensors = [Tensor("x", nbytes, "input", shape, "float32")]
    ops: list[Op] = []
    cur = "x"
    for d in range(depth):
        ends = []
        for r in range(rng.randint(2, readers)):
            y = f"d{d}r{r}"
            tensors.append(Tensor(y, nbytes, "activation", shape, "float32"))
            ops.append(Op(y, rng.choice(["Relu", "Sigmoid"]), (cur,), (y,)))
            if rng.random() < 0.5:  # a non-element-wise op behind it (a convolution)
                z = f"{y}c"
                tensors.append(Tensor(z, nbytes, "activation", shape, "float32"))
                ops.append(Op(z, "Conv", (y,), (z,)))
                y = z
            ends.append(y)
        acc = ends[0]
        for k, e in enumerate(ends[1:]):
            s = f"d{d}add{k}"
            tensors.append(Tensor(s, nbytes, "activation", shape, "float32"))
            ops.append(Op(s, "Add", (acc, e), (s,)))
            acc = s
        cur = acc
    tensors.append(Tensor("y", nbytes, "output", shape, "float32"))
    ops.append(Op("head", "Conv", (cur,), ("y",)))
    return Graph(f"fan{seed}", tensors, ops)


@pytest.mark.parametrize("seed", range(6))
def test_every_order_of_an_ordered_storage_graph_is_a_valid_plan(seed: int) -> None:
    g = _fan(seed)
    target = Target("t", None, share="all")
    inner = unshared(target)
    orders = list(itertools.islice(nx.all_topological_sorts(g.dag), 50))
    ref = random.Random(seed).choice(orders)
    st = storage_graph(g, DOMINATING_KINDS, target.alignment, order=list(ref))
    assert st is not None
    plain = storage_graph(g, DOMINATING_KINDS, target.alignment)
    assert len(st.shares) >= (len(plain.shares) if plain else 0)
    assert st.graph.is_topological(storage_order(st, list(ref)))
    info = SolverInfo("test", "heuristic", 0, 0.0, {}, {})
    for order in itertools.islice(nx.all_topological_sorts(st.graph.dag), 200):
        order = list(order)
        _, _, offs = best_layout(st.graph, inner, order)
        plan = shared_plan(st, target, lower(st.graph, inner, order, offs), info)  # PlanError if unsafe
        assert plan.metrics.arena_bytes > 0


def test_the_last_reader_overwrites_its_input() -> None:
    """m read by three ReLUs: without an order no write over it is safe; with one, the last
    reader's is, and the two readers before it must run first."""
    shape = (1, 4, 2, 2)
    tensors = [Tensor(n, 64, "activation", shape, "float32") for n in ("m", "r0", "r1", "r2")]
    tensors += [Tensor("x", 64, "input", shape, "float32"), Tensor("y", 64, "output", shape, "float32")]
    ops = [Op("pre", "Conv", ("x",), ("m",))]
    ops += [Op(f"r{i}", "Relu", ("m",), (f"r{i}",)) for i in range(3)]
    ops.append(Op("sum", "Sum", ("r0", "r1", "r2"), ("y",)))
    g = Graph("readers", tensors, ops)
    plain = storage_graph(g, DOMINATING_KINDS)
    assert plain is None or all(s.parent != "m" for s in plain.shares.values())
    st = storage_graph(g, DOMINATING_KINDS, order=["pre", "r2", "r0", "r1", "sum"])
    assert st is not None and st.shares["r1"].parent == "m"
    assert set(st.before) == {("r2", "r1"), ("r0", "r1")}
