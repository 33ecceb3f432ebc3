"""Property tests: every solver's plan on random DAGs passes the simulator and respects bounds."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import targets

from planner.bounds import working_set_bound
from planner.models.generators import random_dag
from planner.simulate import simulate
from planner.solvers.base import SolveOptions
from planner.solvers.lowering import max_live
from planner.solvers.registry import SOLVERS, get_solver
from planner.target import Target

HEURISTICS = [s.name for s in SOLVERS.values() if not s.exact and not s.spills]

dags = st.builds(
    random_dag,
    n_ops=st.integers(1, 60),
    seed=st.integers(0, 10**6),
    max_outputs=st.integers(1, 3),
    max_inputs=st.integers(1, 4),
    size_range=st.sampled_from([(1, 64), (16, 4096), (100, 100)]),
    n_inputs=st.integers(1, 3),
    weight_prob=st.sampled_from([0.0, 0.3]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph=dags, target=targets)
def test_every_heuristic_plan_is_valid_and_above_bounds(graph, target):
    for name in HEURISTICS:
        plan = get_solver(name)(graph, target, SolveOptions(time_limit=1))
        sim = simulate(plan.graph, plan.target, plan.stages)
        assert sim.ok, (name, sim.violations)
        assert sim.metrics == plan.metrics or sim.metrics.arena_bytes == plan.metrics.arena_bytes
        m = plan.metrics
        assert m.arena_bytes >= m.peak_l1_bytes >= working_set_bound(graph, target)
        assert m.peak_l1_bytes == max_live(graph, target, plan.order)
        assert graph.is_topological(plan.order)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph=dags)
def test_auto_is_valid_and_never_worse_than_heuristics(graph):
    target = Target("t", None, alignment=16)
    auto = get_solver("auto")(graph, target, SolveOptions(time_limit=2, workers=1))
    assert simulate(graph, target, auto.stages).ok
    for name in HEURISTICS:
        assert auto.metrics.arena_bytes <= get_solver(name)(graph, target).metrics.arena_bytes
    if auto.solver.status == "optimal":
        assert auto.metrics.arena_bytes <= auto.solver.bound + target.alignment
