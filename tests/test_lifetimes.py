"""Minimal lifetimes (solvers/lifetimes.py): every no-spill solver on the rewritten graph,
checked against an independent brute force over the original graph's orders."""

import networkx as nx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.graph import graph_from_records
from planner.models.generators import random_dag
from planner.plan import plan_from_dict
from planner.simulate import simulate
from planner.solvers.base import SolveOptions
from planner.solvers.lifetimes import rewrite
from planner.solvers.registry import SOLVERS, get_solver
from planner.target import Target

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])
NOSPILL = [n for n, s in SOLVERS.items() if not s.spills]


def minimal_peak(graph, target, order) -> int:
    """Max live bytes of `order` when inputs load right before first use and outputs are
    freed after their last consumer (written from the definition, not from the rewrite)."""
    pos = {o: i for i, o in enumerate(order)}
    live = [0] * len(order)
    for t in graph.tensors.values():
        uses = [pos[c] for c in graph.consumers[t.name]]
        if t.kind == "input" or (t.kind == "weight" and target.weights == "load"):
            if not uses:
                continue
            span = (min(uses), max(uses))
        elif t.kind == "weight":
            continue
        else:
            p = pos[graph.producer[t.name]]
            span = (p, max([p, *uses]))
        for i in range(span[0], span[1] + 1):
            live[i] += target.align(t.bytes)
    return max(live, default=0)


@settings(max_examples=40, **SETTINGS)
@given(
    n=st.integers(1, 7),
    seed=st.integers(0, 10**6),
    weights=st.sampled_from(["in_place", "load"]),
    n_inputs=st.integers(1, 3),
)
def test_exact_solvers_reach_the_brute_force_minimum_under_minimal_lifetimes(n, seed, weights, n_inputs):
    g = random_dag(n, seed, size_range=(1, 200), n_inputs=n_inputs, weight_prob=0.3)
    tg = Target("t", None, weights=weights, alignment=1, lifetimes="minimal")
    expected = min(minimal_peak(g, tg, list(o)) for o in nx.all_topological_sorts(g.dag))
    tflm = get_solver("dp")(g, Target("t", None, weights=weights, alignment=1))
    for name in ("dp", "cpsat-order", "auto"):
        plan = get_solver(name)(g, tg, SolveOptions(time_limit=10, workers=1))
        sim = simulate(g, tg, plan.stages)
        assert sim.ok, sim.violations
        assert plan.graph is g  # the pseudo-ops never leak into a plan
        assert plan.metrics.peak_l1_bytes == expected, name
        assert plan.metrics.spill_traffic_bytes == 0
        assert plan.metrics.arena_bytes <= tflm.metrics.arena_bytes


@pytest.mark.parametrize("name", NOSPILL)
def test_every_nospill_solver_gives_valid_minimal_plans(name):
    g = random_dag(12, 5, n_inputs=3, weight_prob=0.3)
    tg = Target("t", None, weights="load", lifetimes="minimal")
    plan = get_solver(name)(g, tg, SolveOptions(time_limit=5, workers=1))
    sim = simulate(g, tg, plan.stages)
    assert sim.ok, sim.violations
    assert plan.metrics.arena_bytes == sim.metrics.arena_bytes
    assert plan.solver.bound <= plan.metrics.arena_bytes


def _late_state():
    """An RNN-like step: the state input is only read by the last op, the output `early` is
    made first and never read again. TFLM lifetimes keep both resident throughout."""
    return graph_from_records(
        "late_state",
        [("a", ["x"], ["early", "h1"]), ("b", ["h1"], ["h2"]), ("c", ["h2", "state"], ["y"])],
        {"x": 64, "early": 256, "h1": 64, "h2": 64, "state": 256, "y": 64},
        inputs=["x", "state"],
        outputs=["early", "y"],
    )


def test_minimal_lifetimes_beat_tflm_on_late_inputs_and_early_outputs():
    g = _late_state()
    tflm = get_solver("auto")(g, Target("t", None), SolveOptions(time_limit=5, workers=1))
    minimal = get_solver("auto")(g, Target("t", None, lifetimes="minimal"), SolveOptions(time_limit=5, workers=1))
    assert minimal.metrics.arena_bytes < tflm.metrics.arena_bytes
    assert minimal.solver.status == "optimal"
    assert minimal.metrics.traffic_bytes == minimal.metrics.compulsory_traffic_bytes == tflm.metrics.traffic_bytes
    kinds = [(s.kind, s.name) for s in minimal.stages]
    assert kinds.index(("L", "state")) > kinds.index(("R", "b"))  # loaded late
    assert kinds.index(("F", "early")) < kinds.index(("R", "c"))  # stored, then freed early


def test_rewrite_keeps_names_and_sizes_and_the_plan_file_keeps_the_lifetimes():
    g = _late_state()
    r = rewrite(g)
    assert not r.inputs and {t for t in r.tensors if t in g.tensors} == set(g.tensors)
    assert all(r.size(t) == g.size(t) for t in g.tensors)
    assert sum(o.attrs.get("pseudo") == "load" for o in r.ops) == 2
    assert sum(o.attrs.get("pseudo") == "store" for o in r.ops) == 2
    tg = Target("t", None, lifetimes="minimal")
    plan = get_solver("greedy")(g, tg)
    back = plan_from_dict(plan.to_dict())
    assert back.target.lifetimes == "minimal"
    assert back.metrics.arena_bytes == plan.metrics.arena_bytes
