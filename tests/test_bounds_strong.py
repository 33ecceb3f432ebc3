"""The relaxation bounds of solvers/relax.py against brute force over every topological order.

Chain compression is checked per order (stronger than on the minimum): restricted to the
kept ops, every order of the original graph is an order of the relaxed graph whose
aligned max-live is no larger. The collapsing relaxations are checked on the minima, and
the bound never exceeds the true minimum.
"""

import itertools
import random

import networkx as nx
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from strategies import targets

from planner.graph import Graph, Op, Tensor
from planner.models.generators import random_dag, series_parallel
from planner.solvers.lowering import max_live
from planner.solvers.relax import RELAXATIONS, relax, relaxed_order_bound
from planner.target import Target

MAX_ORDERS = 3000


def parallel_chains(seed: int) -> Graph:
    """A fork into branches (some identical chains joined by one op, some unequal), with
    a cheap diamond on the side: the shapes dedupe and region contraction look for."""
    rng = random.Random(seed)
    tensors = [Tensor("x", rng.randint(1, 64), "input"), Tensor("side_in", rng.randint(1, 64), "input")]
    ops: list[Op] = []
    k = rng.randint(2, 3)
    length = rng.randint(1, 2)
    sizes = [rng.randint(1, 64) for _ in range(length)]
    ends = []
    for b in range(k):
        cur = "x"
        for j in range(length):
            out = f"b{b}_{j}"
            size = sizes[j] if rng.random() < 0.8 else rng.randint(1, 64)
            tensors.append(Tensor(out, size, "activation"))
            ops.append(Op(f"op_b{b}_{j}", "Op", (cur,), (out,)))
            cur = out
        ends.append(cur)
    tensors.append(Tensor("j", rng.randint(1, 64), "activation"))
    ops.append(Op("join", "Op", tuple(ends), ("j",)))
    # side diamond: s -> (l, r) -> m
    for name, ins in (("s", ("side_in",)), ("l", ("s",)), ("r", ("s",)), ("m", ("l", "r"))):
        tensors.append(Tensor(name, rng.randint(1, 64), "activation"))
        ops.append(Op(f"op_{name}", "Op", ins, (name,)))
    tensors.append(Tensor("y", rng.randint(1, 64), "output"))
    ops.append(Op("final", "Op", ("j", "m"), ("y",)))
    return Graph(f"pc{seed}", tensors, ops)


def _graph(kind: str, n: int, seed: int) -> Graph:
    if kind == "random":
        return random_dag(n, seed=seed, max_outputs=2, max_inputs=2, size_range=(1, 64), n_inputs=2, weight_prob=0.3)
    if kind == "chains":
        return random_dag(n, seed=seed, max_outputs=1, max_inputs=1, size_range=(1, 64))
    if kind == "sp":
        return series_parallel(n, seed=seed, size_range=(1, 64))
    return parallel_chains(seed)


def _orders(graph: Graph) -> list[list[str]]:
    out = list(itertools.islice(nx.all_topological_sorts(graph.dag), MAX_ORDERS + 1))
    assume(len(out) <= MAX_ORDERS)
    return out


graphs = st.builds(
    _graph,
    kind=st.sampled_from(["random", "chains", "sp", "parallel"]),
    n=st.integers(2, 9),
    seed=st.integers(0, 10**6),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(graph=graphs, target=targets)
def test_relaxation_lowers_every_order(graph: Graph, target: Target) -> None:
    orders = _orders(graph)
    best = min(max_live(graph, target, o, aligned=True) for o in orders)
    for keep, collapse in {*RELAXATIONS, (1, True), (2, True)}:
        rg = relax(graph, target, keep, collapse, upper=best)
        if collapse:
            # dedupe maps a kept chain onto a different chain per order: compare the minima
            rbest = min(max_live(rg, target, o, aligned=True) for o in nx.all_topological_sorts(rg.dag))
            assert rbest <= best
            continue
        kept = {o.name for o in rg.ops}
        for order in orders:
            sub = [o for o in order if o in kept]
            assert rg.is_topological(sub)
            assert max_live(rg, target, sub, aligned=True) <= max_live(graph, target, order, aligned=True)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(graph=graphs, target=targets, slack=st.integers(0, 40))
def test_relaxed_bound_never_exceeds_the_optimum(graph: Graph, target: Target, slack: int) -> None:
    orders = _orders(graph)
    best = min(max_live(graph, target, o, aligned=True) for o in orders)
    sb = relaxed_order_bound(graph, target, best + slack, time_limit=5.0)
    assert sb.aligned <= best


def test_deepcut_like_branches_are_proven() -> None:
    """Twelve-ish branches of different widths from one input, joined in a fixed chain:
    the heuristic order is optimal only thanks to a disjunction the forced-live bound
    misses; the relaxed DP proves it."""
    from planner.solvers.heuristic import heuristic_start
    from planner.solvers.items import forced_live_bounds

    target = Target("t", None)
    tensors = [Tensor("x", 1600, "input"), Tensor("keep", 1600, "activation")]
    ops = [Op("pre", "Op", ("x",), ("keep",))]
    tensors.append(Tensor("X", 1600, "activation"))
    ops.append(Op("fork", "Op", ("keep",), ("X",)))
    acc = None
    for b in range(6):
        c = 3200 * (6 - b)
        chain = [("conv", ("X",), c), ("sq", None, c), ("add", None, c), ("mm", None, 160 + 16 * b)]
        cur = None
        for j, (name, ins, size) in enumerate(chain):
            out = f"{name}{b}"
            tensors.append(Tensor(out, size, "activation"))
            ops.append(Op(f"op_{out}", "Op", ins or (cur,), (out,)))
            cur = out
            del j
        if acc is None:
            acc = cur
        else:
            tensors.append(Tensor(f"max{b}", 176, "activation"))
            ops.append(Op(f"op_max{b}", "Op", (acc, cur), (f"max{b}",)))
            acc = f"max{b}"
    tensors.append(Tensor("y", 16, "output"))
    ops.append(Op("cat", "Op", (acc, "keep"), ("y",)))
    g = Graph("branches", tensors, ops)
    st_ = heuristic_start(g, target)
    forced, _ = forced_live_bounds(g, target)
    sb = relaxed_order_bound(g, target, st_.peak, time_limit=10.0)
    assert forced <= sb.aligned <= st_.peak
