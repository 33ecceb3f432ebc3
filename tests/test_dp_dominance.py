"""The exact DP's free-first dominance (solvers/dp.py) against brute force over every
topological order: the DP's minimum, the order it returns, the proof that a given order is
optimal and the bound it reports on a timeout must all still hold with the rule on.

Equal tensor sizes are drawn often: there a chain op frees what it makes, so the rule fires
at almost every step (random wiring), which is where a wrong exchange argument would show.
"""

from __future__ import annotations

import itertools

import networkx as nx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from strategies import targets

from planner.graph import Graph
from planner.models.generators import random_dag, randwire, series_parallel
from planner.solvers.base import Timer
from planner.solvers.dp import DPTimeout, run_dp
from planner.solvers.items import forced_live_bounds
from planner.solvers.lowering import max_live
from planner.target import Target

MAX_ORDERS = 3000


def _graph(kind: str, n: int, seed: int, sizes: tuple[int, int]) -> Graph:
    if kind == "random":
        return random_dag(n, seed=seed, max_outputs=2, max_inputs=3, size_range=sizes, n_inputs=2, weight_prob=0.3)
    if kind == "sp":
        return series_parallel(n, seed=seed, size_range=sizes)
    return randwire(max(n, 5), seed=seed, size_range=sizes)


graphs = st.builds(
    _graph,
    kind=st.sampled_from(["random", "sp", "randwire"]),
    n=st.integers(2, 9),
    seed=st.integers(0, 10**6),
    sizes=st.sampled_from([(16, 16), (1, 64), (30, 34)]),
)
SETTINGS = settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)


def _orders(graph: Graph) -> list[list[str]]:
    out = [list(o) for o in itertools.islice(nx.all_topological_sorts(graph.dag), MAX_ORDERS + 1)]
    assume(len(out) <= MAX_ORDERS)
    return out


@SETTINGS
@given(graph=graphs, target=targets, pick=st.integers(0, 10**6))
def test_dp_matches_brute_force_with_the_dominance(graph: Graph, target: Target, pick: int) -> None:
    orders = _orders(graph)
    peaks = [max_live(graph, target, o, aligned=True) for o in orders]
    best = min(peaks)
    lo = forced_live_bounds(graph, target)[0]
    # from an order that is not known to be optimal: the DP must find the minimum itself
    worst = max(range(len(orders)), key=peaks.__getitem__)
    res = run_dp(graph, target, orders[worst], peaks[worst] + 1, lo, 10**6, None, Timer())
    assert res.peak == best
    assert graph.is_topological(res.order)
    assert max_live(graph, target, res.order, aligned=True) == best
    # from any order as the upper bound: a proof that it is optimal only when it is
    k = pick % len(orders)
    res = run_dp(graph, target, orders[k], peaks[k], lo, 10**6, None, Timer())
    assert res.peak == best
    if res.from_heuristic:
        assert peaks[k] == best


@SETTINGS
@given(graph=graphs, target=targets)
def test_dp_timeout_bound_is_a_lower_bound(graph: Graph, target: Target) -> None:
    orders = _orders(graph)
    peaks = [max_live(graph, target, o, aligned=True) for o in orders]
    best = min(peaks)
    worst = max(range(len(orders)), key=peaks.__getitem__)
    timer = Timer()
    try:
        run_dp(graph, target, orders[worst], peaks[worst] + 1, 0, 10**6, -1.0, timer)
    except DPTimeout as e:
        assert e.bound <= best


@pytest.mark.parametrize("seed", [1, 3])
def test_dominance_keeps_a_randwire_stage_small(seed: int) -> None:
    """A 32-node random stage of equal tensors: far fewer states than layers x ops."""
    g = randwire(32, seed=seed, size_range=(64, 64))
    target = Target("t", None)
    order = list(nx.topological_sort(g.dag))
    res = run_dp(g, target, order, max_live(g, target, order, aligned=True) + 1, 0, 2_000_000, None, Timer())
    assert max_live(g, target, res.order, aligned=True) == res.peak


@pytest.mark.parametrize(
    "graph",
    [
        random_dag(8, seed=11, max_outputs=2, max_inputs=3, size_range=(1, 64), n_inputs=2),
        series_parallel(8, seed=11, size_range=(1, 64)),
    ],
    ids=["random8_s11", "sp8_s11"],
)
def test_a_freeing_op_is_not_forced_above_the_peak(graph: Graph) -> None:
    """Graphs where an op that frees what it makes would, run at once, cost more than the
    peak so far (a big tensor still live that another op frees first): without the rule's
    `cost <= peak` the DP returned 317 instead of 306 and 126 instead of 116."""
    target = Target("t", None, alignment=1)
    orders = _orders(graph)
    peaks = [max_live(graph, target, o, aligned=True) for o in orders]
    worst = max(range(len(orders)), key=peaks.__getitem__)
    res = run_dp(graph, target, orders[worst], peaks[worst] + 1, 0, 10**6, None, Timer())
    assert res.peak == min(peaks)
