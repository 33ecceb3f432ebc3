"""Exact planners (cpsat-order, cpsat-layout, cpsat-joint, dp) against brute force.

Brute force = every topological order (networkx) scored by `bounds.max_live`; with
alignment 1 the minimum over them is the true minimum no-spill peak.
"""

import random
import time

import networkx as nx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.graph import graph_from_records
from planner.models.generators import random_dag
from planner.simulate import simulate
from planner.solvers.base import SolveOptions, aligned_intervals
from planner.solvers.cpsat_joint import solve_joint
from planner.solvers.cpsat_layout import layout_lower_bound, optimal_layout, raw_arena
from planner.solvers.cpsat_order import optimal_order, solve_cpsat_order
from planner.solvers.dp import dp_order, solve_dp
from planner.solvers.heuristics.layout import best_fit
from planner.solvers.items import forced_live_bounds, item_interval, lifetime_items
from planner.solvers.lowering import Interval, live_intervals, max_live
from planner.solvers.registry import get_solver
from planner.target import Target

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

small_dags = st.builds(
    random_dag,
    n_ops=st.integers(1, 8),
    seed=st.integers(0, 10**6),
    max_outputs=st.integers(1, 3),
    max_inputs=st.integers(1, 3),
    size_range=st.sampled_from([(1, 64), (1, 1000), (7, 9)]),
    n_inputs=st.integers(1, 2),
    weight_prob=st.sampled_from([0.0, 0.4]),
)
weights = st.sampled_from(["in_place", "load"])


def brute_min_peak(graph, target) -> int:
    return min(max_live(graph, target, list(o)) for o in nx.all_topological_sorts(graph.dag))


def assert_valid(plan):
    sim = simulate(plan.graph, plan.target, plan.stages)
    assert sim.ok, sim.violations
    assert sim.metrics.arena_bytes == plan.metrics.arena_bytes
    assert plan.solver.bound <= plan.metrics.arena_bytes
    if plan.solver.status == "optimal":
        assert plan.metrics.arena_bytes == plan.solver.bound


@settings(max_examples=40, **SETTINGS)
@given(graph=small_dags, w=weights)
def test_cpsat_order_and_dp_match_brute_force(graph, w):
    target = Target("t", None, weights=w, alignment=1)
    best = brute_min_peak(graph, target)
    res = optimal_order(graph, target, time_limit=20, workers=1, seed=0)
    assert res.status == "optimal"
    assert res.peak == best == max_live(graph, target, res.order)
    assert graph.is_topological(res.order)
    assert res.bound <= best and res.raw_bound <= best
    order, peak = dp_order(graph, target)
    assert peak == best == max_live(graph, target, order)
    assert forced_live_bounds(graph, target)[0] <= best
    for solve in (solve_cpsat_order, solve_dp):
        plan = solve(graph, target, SolveOptions(time_limit=10, workers=1))
        assert_valid(plan)
        assert plan.metrics.peak_l1_bytes >= best
        assert plan.solver.bound <= best


@settings(max_examples=25, **SETTINGS)
@given(graph=small_dags, w=weights, align=st.sampled_from([1, 4, 16]))
def test_aligned_peaks_and_bounds(graph, w, align):
    """With alignment > 1 the objective is the aligned max-live, and the arena bound stays valid."""
    target = Target("t", None, weights=w, alignment=align)
    best = min(max_live(graph, target, list(o), aligned=True) for o in nx.all_topological_sorts(graph.dag))
    res = optimal_order(graph, target, time_limit=20, workers=1, seed=0)
    assert res.peak == best
    assert dp_order(graph, target)[1] == best
    plan = solve_cpsat_order(graph, target, SolveOptions(time_limit=10, workers=1))
    assert_valid(plan)
    joint = solve_joint(graph, target, SolveOptions(time_limit=10, workers=1))
    assert_valid(joint)
    assert joint.solver.status == "optimal"
    assert joint.metrics.arena_bytes <= plan.metrics.arena_bytes
    assert plan.solver.bound <= joint.metrics.arena_bytes


@settings(max_examples=30, **SETTINGS)
@given(graph=small_dags, w=weights, seed=st.integers(0, 1000))
def test_lifetime_items_are_exactly_live_intervals(graph, w, seed):
    target = Target("t", None, weights=w, alignment=1)
    rng = random.Random(seed)
    sorts = nx.all_topological_sorts(graph.dag)
    order = list(next(sorts))
    for _ in range(rng.randint(0, 5)):
        order = list(next(sorts, order))
    pos = {o: i for i, o in enumerate(order)}
    want = {iv.key: (iv.start, iv.end) for iv in live_intervals(graph, target, order)}
    got = {}
    for it in lifetime_items(graph, target):
        for k in it.keys:
            got[k] = item_interval(it, pos, len(order))
    assert got == want


@settings(max_examples=10, **SETTINGS)
@given(seed=st.integers(0, 10**6))
def test_cpsat_order_never_worse_than_its_hint(seed):
    graph = random_dag(40, seed=seed, max_outputs=2, size_range=(1, 500))
    target = Target("t", None, alignment=16)
    hint = list(nx.lexicographical_topological_sort(graph.dag, key=lambda o: -graph.op_index[o]))
    res = optimal_order(graph, target, time_limit=0.2, workers=1, seed=seed, hint=hint)
    assert graph.is_topological(res.order)
    assert res.peak <= max_live(graph, target, hint, aligned=True)
    assert res.peak == max_live(graph, target, res.order, aligned=True)


intervals = st.lists(
    st.tuples(st.integers(0, 12), st.integers(0, 6), st.integers(0, 300)), min_size=1, max_size=25
).map(lambda xs: [Interval(f"t{i}", s, s + d, b) for i, (s, d, b) in enumerate(xs)])


@settings(max_examples=40, **SETTINGS)
@given(ivs=intervals, align=st.sampled_from([1, 8, 16]))
def test_cpsat_layout_never_exceeds_best_fit(ivs, align):
    res = optimal_layout(ivs, time_limit=1, workers=1, seed=0, alignment=align)
    aligned = [Interval(iv.key, iv.start, iv.end, -(-iv.size // align) * align) for iv in ivs]
    assert res.arena <= raw_arena(ivs, best_fit(aligned))
    assert res.arena == raw_arena(ivs, res.offsets)
    assert layout_lower_bound(ivs, align) <= res.bound <= res.arena
    if res.status == "optimal":
        assert res.bound == res.arena
    for a in ivs:
        assert res.offsets[a.key] % align == 0
        for b in ivs:
            if a.key < b.key and a.size and b.size and a.start <= b.end and b.start <= a.end:
                oa, ob = res.offsets[a.key], res.offsets[b.key]
                assert oa + a.size <= ob or ob + b.size <= oa


def test_cpsat_layout_removes_fragmentation():
    # best-fit by size leaves a hole here: three residencies whose max-live is 30
    ivs = [
        Interval("a", 0, 1, 10),
        Interval("b", 1, 2, 20),
        Interval("c", 2, 3, 10),
        Interval("d", 0, 0, 20),
        Interval("e", 3, 3, 20),
    ]
    res = optimal_layout(ivs, time_limit=5, workers=1, seed=0, alignment=1)
    assert res.arena == layout_lower_bound(ivs, 1) == 30
    assert res.status == "optimal"


def test_registry_and_known_optimum():
    # two branches: running the one that frees more first gives the lower peak
    g = graph_from_records(
        "fork",
        [("a", ["x"], ["p"]), ("b", ["p"], ["q"]), ("c", ["x"], ["r"]), ("d", ["q", "r"], ["y"])],
        {"x": 10, "p": 100, "q": 5, "r": 50, "y": 1},
        inputs=["x"],
        outputs=["y"],
    )
    target = Target("t", None, alignment=1)
    best = brute_min_peak(g, target)
    for name in ("cpsat-order", "cpsat-joint", "dp"):
        plan = get_solver(name)(g, target, SolveOptions(time_limit=5, workers=1))
        assert_valid(plan)
        assert plan.solver.status == "optimal"
        assert plan.metrics.arena_bytes == best


def test_dp_refuses_wide_graphs_where_cpsat_still_proves_the_optimum():
    ops, sizes = [], {"x": 1, "y": 1}
    for i in range(30):  # 30 two-op branches: too many down-sets for the DP
        ops += [(f"o{i}", ["x"], [f"a{i}"]), (f"p{i}", [f"a{i}"], [f"t{i}"])]
        sizes[f"a{i}"], sizes[f"t{i}"] = 100 + i, 10 + i
    ops.append(("join", [f"t{i}" for i in range(30)], ["y"]))
    g = graph_from_records("wide", ops, sizes, inputs=["x"], outputs=["y"])
    target = Target("t", None, alignment=1)
    with pytest.raises(ValueError, match="states"):
        dp_order(g, target, state_limit=10_000)
    res = optimal_order(g, target, time_limit=10, workers=1)
    assert res.status == "optimal"
    assert res.peak == res.bound == max_live(g, target, res.order)


def test_time_limit_is_honoured_on_a_big_graph():
    graph = random_dag(300, seed=3, max_outputs=2, size_range=(16, 4096), weight_prob=0.2)
    target = Target("t", None, weights="load", alignment=16)
    t0 = time.perf_counter()
    plan = solve_cpsat_order(graph, target, SolveOptions(time_limit=2, workers=1, seed=0))
    wall = time.perf_counter() - t0
    assert wall < 2.2 + 0.3, wall
    assert plan.solver.status in ("optimal", "feasible")
    assert_valid(plan)
    assert plan.metrics.peak_l1_bytes <= max_live(graph, target, plan.order)
    ivs = aligned_intervals(graph, target, plan.order)
    assert (
        plan.metrics.arena_bytes
        <= raw_arena([Interval(iv.key, iv.start, iv.end, graph.size(iv.key)) for iv in ivs], best_fit(ivs))
        or plan.solver.options["source"] == "heuristic"
    )
