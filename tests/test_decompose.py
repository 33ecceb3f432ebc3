"""Decomposition: windows of an order reproduce the global peak; sequential points are exact."""

import random
from itertools import pairwise

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.models.generators import random_dag, series_parallel
from planner.solvers.base import SolveOptions
from planner.solvers.cpsat_joint import solve_joint
from planner.solvers.decompose import segment_subgraph, sequential_points, with_background
from planner.solvers.heuristics.order import greedy_memory
from planner.solvers.lowering import max_live
from planner.target import Target


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(2, 40),
    seed=st.integers(0, 10**6),
    weights=st.sampled_from(["in_place", "load"]),
    align=st.sampled_from([1, 16]),
)
def test_windows_reproduce_the_global_peak(n, seed, weights, align):
    g = random_dag(n, seed, max_outputs=2, max_inputs=3, n_inputs=2, weight_prob=0.4)
    t = Target("t", None, weights=weights, alignment=align)
    order = greedy_memory(g, t)
    rng = random.Random(seed)
    cuts = sorted({0, len(order), *(rng.randrange(1, len(order)) for _ in range(3))})
    segs = [segment_subgraph(g, t, order, a, b) for a, b in pairwise(cuts)]
    if all(s.exact for s in segs):
        stitched = max(
            max_live(s.graph, t, order[a:b], aligned=True) + s.background
            for s, (a, b) in zip(segs, pairwise(cuts), strict=True)
        )
        assert stitched == max_live(g, t, order, aligned=True)


def test_sequential_points_are_comparable_with_everything():
    g = series_parallel(120, seed=3)
    pts = sequential_points(g)
    assert pts, "a series-parallel chain of cells has cut points"
    n = len(g.ops)
    for p in pts:
        assert len(nx.ancestors(g.dag, p)) + len(nx.descendants(g.dag, p)) == n - 1
    others = [o.name for o in g.ops if o.name not in set(pts)]
    for o in others[:20]:
        assert len(nx.ancestors(g.dag, o)) + len(nx.descendants(g.dag, o)) < n - 1


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(2, 9),
    seed=st.integers(0, 10**6),
    weights=st.sampled_from(["in_place", "load"]),
)
def test_segment_joint_bound_never_exceeds_the_whole_optimum(n, seed, weights):
    """cpsat-joint on a segment between sequential points, its background tensors kept as
    blocks, bounds the whole graph's raw arena (the portfolio relies on this)."""
    g = random_dag(n, seed, size_range=(1, 100), max_outputs=2, max_inputs=3, n_inputs=2, weight_prob=0.3)
    t = Target("t", None, weights=weights, alignment=16)
    whole = solve_joint(g, t, SolveOptions(time_limit=20))
    assert whole.solver.status == "optimal"
    order = list(whole.order)
    pts = set(sequential_points(g))
    cuts = sorted({0, len(order), *(i + 1 for i, o in enumerate(order) if o in pts)})
    for a, b in pairwise(cuts):
        seg = segment_subgraph(g, t, order, a, b)
        if not seg.exact:
            continue
        sub = with_background(seg, g)
        assert sum(sub.size(x) for x in seg.background_tensors) == seg.background_raw
        part = solve_joint(sub, t, SolveOptions(time_limit=20))
        assert part.metrics.lower_bound_bytes <= whole.metrics.arena_bytes
        assert part.metrics.arena_bytes <= whole.metrics.arena_bytes  # optimal on both sides


@pytest.mark.slow
def test_auto_proves_the_last_alignment_byte_with_a_joint_segment_bound():
    """sp:100:3: 16,353 B is optimal, but the order bounds (aligned live bytes) leave
    alignment doubt; cpsat-joint on the critical 33-op segment (or the slack-aware DP when
    it has the time) proves it, and the joint order lets the layout reach it."""
    from planner.models.zoo import load_model
    from planner.solvers.portfolio import solve_auto

    plan = solve_auto(load_model("sp:100:3"), Target("t", None), SolveOptions(time_limit=60))
    assert plan.metrics.arena_bytes == 16353
    assert plan.solver.status == "optimal"
