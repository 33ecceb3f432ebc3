"""Window bounds (solvers/windows.py) and the hierarchical start (solvers/hierarchical.py)
against brute force over every topological order of small graphs.

The window argument is checked per order (stronger than on the minimum): restricted to a
window, every order of the graph has at each window op at least the window's live bytes
plus the background; then the bound on the minimum, and the raw bound against the joint
order + layout optimum of cpsat-joint.
"""

import itertools
import random

import networkx as nx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from strategies import targets

from planner.graph import Graph
from planner.models.generators import irregular, random_dag, randwire, series_parallel
from planner.solvers.base import SolveOptions
from planner.solvers.cpsat_joint import solve_joint
from planner.solvers.hierarchical import (
    cell_index,
    cell_key,
    glue_pairs,
    glued,
    hierarchical_order,
    mixed_cells,
    near_sequential_points,
)
from planner.solvers.lowering import live_intervals, live_profile, max_live
from planner.solvers.reach import Reach
from planner.solvers.windows import critical_window_bound, dag_window
from planner.target import Target

MAX_ORDERS = 2000


def _graph(kind: str, n: int, seed: int) -> Graph:
    if kind == "random":
        return random_dag(n, seed=seed, max_outputs=2, max_inputs=3, size_range=(1, 64), n_inputs=2, weight_prob=0.3)
    if kind == "sp":
        return series_parallel(n, seed=seed, size_range=(1, 64))
    return randwire(max(n, 5), seed=seed, size_range=(1, 64))


def _orders(graph: Graph) -> list[list[str]]:
    out = list(itertools.islice(nx.all_topological_sorts(graph.dag), MAX_ORDERS + 1))
    assume(len(out) <= MAX_ORDERS)
    return out


graphs = st.builds(
    _graph, kind=st.sampled_from(["random", "sp", "randwire"]), n=st.integers(3, 9), seed=st.integers(0, 10**6)
)
SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)


def _pairs(graph: Graph, seed: int, k: int = 6) -> list[tuple[str, str]]:
    names = [o.name for o in graph.ops]
    rng = random.Random(seed)
    return [tuple(rng.sample(names, 2)) if rng.random() < 0.8 else (names[0], names[-1]) for _ in range(k)]


@SETTINGS
@given(graph=graphs, target=targets, seed=st.integers(0, 10**6))
def test_every_order_holds_the_window_and_its_background(graph: Graph, target: Target, seed: int) -> None:
    orders = _orders(graph)
    reach = Reach(graph)
    for a, b in _pairs(graph, seed):
        w = dag_window(graph, target, reach, a, b)
        if w is None:
            continue
        inside = {o.name for o in w.graph.ops}
        for order in orders[:200]:
            sub = [o for o in order if o in inside]
            assert w.graph.is_topological(sub)
            full = live_profile(graph, target, order)
            part = live_profile(w.graph, target, sub)
            pos = {o: i for i, o in enumerate(order)}
            for k, o in enumerate(sub):
                assert part[k] + w.background <= full[pos[o]]


@SETTINGS
@given(graph=graphs, target=targets, seed=st.integers(0, 10**6))
def test_window_bound_never_exceeds_the_optimum(graph: Graph, target: Target, seed: int) -> None:
    orders = _orders(graph)
    best = min(max_live(graph, target, o, aligned=True) for o in orders)
    reach = Reach(graph)
    for a, b in _pairs(graph, seed):
        w = dag_window(graph, target, reach, a, b)
        if w is None:
            continue
        exact = min(max_live(w.graph, target, list(o), aligned=True) for o in nx.all_topological_sorts(w.graph.dag))
        assert exact + w.background <= best
    pts = [o.name for o in graph.ops if seed % 2 or reach.n_anc(o.name) % 2 == 0]
    chain = [p for p in reach.topo if p in pts]
    chain = [p for i, p in enumerate(chain) if i == 0 or reach.desc[reach.idx[chain[0]]] >> reach.idx[p] & 1]
    # any order as the incumbent: its restriction to a window is the DP's upper bound there
    wb = critical_window_bound(graph, target, orders[seed % len(orders)], chain, 0, time_limit=5.0)
    assert wb.aligned <= best


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(3, 7), seed=st.integers(0, 10**6), align=st.sampled_from([4, 16]))
def test_raw_window_bound_holds_for_the_joint_optimum(n: int, seed: int, align: int) -> None:
    graph = random_dag(n, seed=seed, max_outputs=2, max_inputs=2, size_range=(1, 70), n_inputs=2)
    target = Target("t", None, alignment=align)
    plan = solve_joint(graph, target, SolveOptions(time_limit=20))
    assume(plan.solver.status == "optimal")
    reach = Reach(graph)
    for a, b in _pairs(graph, seed):
        w = dag_window(graph, target, reach, a, b)
        if w is None:
            continue
        exact = min(max_live(w.graph, target, list(o), aligned=True) for o in nx.all_topological_sorts(w.graph.dag))
        assert exact + w.background - w.slack <= plan.metrics.arena_bytes


@SETTINGS
@given(graph=graphs, target=targets)
def test_cells_are_monotone_along_edges(graph: Graph, target: Target) -> None:
    reach = Reach(graph)
    points = near_sequential_points(graph, reach, max_cell=3)
    early, late = cell_index(reach, points), cell_index(reach, points, late=True)
    for cell in (early, late, mixed_cells(graph, target, early, late)):
        assert all(cell[u] <= cell[v] for u, v in graph.dag.edges)
        assert all(early[o] <= cell[o] <= late[o] for o in cell)
    pairs = glue_pairs(graph)
    order = list(nx.topological_sort(graph.dag))
    assert graph.is_topological(glued(order, pairs))


def test_hierarchical_orders_nas_cells_and_reuses_repeated_cells() -> None:
    target = Target("t", None)
    g = irregular("darts_v2", "cifar")
    base = list(nx.lexicographical_topological_sort(g.dag, key=g.op_index.__getitem__))
    res = hierarchical_order(g, target, base, time_limit=20, options=SolveOptions(workers=2))
    assert res is not None and g.is_topological(res.order)
    assert res.peak == max_live(g, target, res.order, aligned=True)
    assert res.peak < max_live(g, target, base, aligned=True)
    assert res.reused > 0  # the normal cells of a stage are solved once


def test_cell_key_is_scale_free() -> None:
    from planner.graph import graph_from_records

    def cell(scale: int) -> Graph:
        ops = [("a", ["x"], ["p"]), ("b", ["p"], ["q"]), ("c", ["p"], ["r"]), ("d", ["q", "r"], ["y"])]
        sizes = {"x": 64 * scale, "p": 32 * scale, "q": 16 * scale, "r": 16 * scale, "y": 64 * scale}
        return graph_from_records(f"c{scale}", ops, sizes, inputs=["x"], outputs=["y"])

    t = Target("t", None)
    assert cell_key(cell(1), t, 32)[0] == cell_key(cell(4), t, 128)[0]
    assert cell_key(cell(1), t, 32)[0] != cell_key(cell(1), t, 64)[0]


@pytest.mark.parametrize("name", ["nasnet_a", "amoebanet_a", "pnasnet5", "darts_v2"])
def test_nas_families_have_the_papers_shape(name: str) -> None:
    for dataset in ("cifar", "imagenet"):
        g = irregular(name, dataset)
        assert len(g.outputs) == 1 and len(g.inputs) == 1
        ivs = live_intervals(g, Target("t", None), list(nx.topological_sort(g.dag)))
        assert ivs and all(t.bytes % 4 == 0 for t in g.tensors.values())
    # 16 cells on ImageNet (two stem reductions + 3 stages of 4 with 2 reductions), 20 on CIFAR
    cells = {o.name.split("/")[0] for o in irregular("nasnet_a", "imagenet").ops if o.name.startswith("c")}
    assert len(cells) == 16
    cells = {o.name.split("/")[0] for o in irregular("nasnet_a", "cifar").ops if o.name.startswith("c")}
    assert len(cells) == 20


def test_bound_cache_is_off_by_default_and_reuses_a_proven_bound(tmp_path, monkeypatch) -> None:
    from planner.models.generators import chain
    from planner.solvers.bound_cache import ENV, cached_bounds, graph_key, store_bounds

    monkeypatch.delenv(ENV, raising=False)
    g, t = chain(5, seed=1), Target("t", None)
    store_bounds(g, t, 100, 90)
    assert cached_bounds(g, t) == (0, 0) and not list(tmp_path.iterdir())
    path = tmp_path / "bounds.json"
    monkeypatch.setenv(ENV, str(path))
    store_bounds(g, t, 100, 90, "test")
    store_bounds(g, t, 80, 95)
    assert cached_bounds(g, t) == (100, 95)
    renamed = Graph(
        "other",
        [type(x)(x.name + "_", x.bytes, x.kind) for x in g.tensors.values()],
        [
            type(o)(o.name + "_", o.type, tuple(i + "_" for i in o.inputs), tuple(i + "_" for i in o.outputs))
            for o in g.ops
        ],
    )
    assert graph_key(renamed, t) == graph_key(g, t)
    assert graph_key(chain(5, seed=2), t) != graph_key(g, t)
    assert graph_key(g, Target("t", None, alignment=4)) != graph_key(g, t)
    path.write_text("not json")
    assert cached_bounds(g, t) == (0, 0)
