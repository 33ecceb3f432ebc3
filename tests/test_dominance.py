"""Each dominance rule of the timestep model keeps an optimal plan: brute force says so.

The dominance rules of `solvers/cpsat_stage.py` (symmetry breaking) cut plans away; each
must leave at least one optimal plan. For small random graphs under a budget the model is
solved with ONE rule switched off (and with all of them off, and all on) and its least
traffic is compared with exhaustive search (`solvers/brute_force.py`), which knows no
rules but those of DESIGN §1. With a rule off its windows widen too (stores any time after
the production, residencies up to the horizon), so the model without it is the plain §1
model plus the other rules: reaching the brute-force optimum shows that those keep an
optimum and that the model stays sound (never below it). The slow variants take more
graphs, and the lexicographic optimum (least traffic, then least peak P) as well.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.graph import Graph
from planner.models.generators import random_dag
from planner.solvers import cpsat
from planner.solvers.brute_force import brute_force
from planner.solvers.cpsat_stage import DOMINANCE, StageModel
from planner.solvers.heuristic import best_heuristic
from planner.solvers.heuristics.spill import candidate_plans, min_budget, plan_key
from planner.solvers.schedule import canonicalize
from planner.target import Target

# every rule off on its own, then all of them off, then all on
VARIANTS = [(f"without {r}", frozenset(DOMINANCE) - {r}) for r in DOMINANCE]
VARIANTS += [("without any", frozenset()), ("all rules", frozenset(DOMINANCE))]

small_dags = st.builds(
    random_dag,
    n_ops=st.integers(1, 5),
    seed=st.integers(0, 10**6),
    max_outputs=st.integers(1, 2),
    max_inputs=st.integers(1, 3),
    size_range=st.sampled_from([(1, 64), (16, 128), (7, 9)]),
    n_inputs=st.integers(1, 2),
    weight_prob=st.sampled_from([0.0, 0.4]),
)


def _budgeted(graph: Graph, weights: str, frac: float) -> Target:
    """A budget between the smallest that works and the no-spill arena (mostly low)."""
    tg0 = Target("t", None, None, weights, alignment=1)
    lo, hi = min_budget(graph, tg0), best_heuristic(graph, tg0)[0]
    return tg0.with_budget(lo + int(frac**2 * (hi - lo)))


def _model(graph: Graph, tg: Target, horizon: int, dominance: frozenset[str]) -> StageModel:
    """The model with `dominance` within the budget, hinted by the best spill heuristic."""
    heur = min(candidate_plans(graph, tg), key=lambda p: plan_key(p, "traffic"))
    hint = canonicalize(graph, tg, heur.stages)
    model = StageModel(graph, tg, max(horizon, len(hint.steps)), tg.budget, None, dominance)
    model.hint(hint)
    return model


def _least_traffic(graph: Graph, tg: Target, horizon: int, dominance: frozenset[str]) -> tuple[int, int]:
    """(proven least L+S bytes within the budget, CP-SAT status) of the model with `dominance`."""
    model = _model(graph, tg, horizon, dominance)
    model.m.minimize(model.traffic)
    status, solver = cpsat.solve(model.m, 20.0, 1, 0)
    return int(solver.value(model.traffic)), status


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_dags, st.sampled_from(["load", "in_place"]), st.floats(0, 1))
def test_each_dominance_rule_keeps_an_optimum(graph: Graph, weights: str, frac: float) -> None:
    tg = _budgeted(graph, weights, frac)
    bf = brute_force(graph, tg)
    assert bf is not None  # min_budget always works
    for name, rules in VARIANTS:
        traffic, status = _least_traffic(graph, tg, bf.steps, rules)
        assert status == cpsat.cp_model.OPTIMAL, name
        assert traffic == bf.traffic, f"{name}: model {traffic}, brute force {bf.traffic}"


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_dags, st.sampled_from(["load", "in_place"]), st.floats(0, 1))
def test_each_dominance_rule_keeps_an_optimum_more_graphs(graph: Graph, weights: str, frac: float) -> None:
    test_each_dominance_rule_keeps_an_optimum.hypothesis.inner_test(graph, weights, frac)


def _brute_least_peak(graph: Graph, tg: Target, traffic: int):
    """Brute force's smallest budget that keeps `traffic`, and its plan (traffic never
    drops when the budget does, so bisect)."""
    lo, hi = 0, tg.budget
    best = brute_force(graph, tg)
    while lo < hi:
        mid = (lo + hi) // 2
        res = brute_force(graph, tg.with_budget(mid))
        if res is not None and res.traffic == traffic:
            hi, best = mid, res
        else:
            lo = mid + 1
    return hi, best


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_dags, st.sampled_from(["load", "in_place"]), st.floats(0, 1))
def test_each_dominance_rule_keeps_the_least_peak_at_least_traffic(graph: Graph, weights: str, frac: float) -> None:
    """The lexicographic optimum too: with the traffic at its least, the model's least P
    (its second objective in mode ``traffic``) is brute force's smallest budget for it."""
    tg = _budgeted(graph, weights, frac)
    bf = brute_force(graph, tg)
    peak, at_peak = _brute_least_peak(graph, tg, bf.traffic)
    for name, rules in VARIANTS:
        model = _model(graph, tg, max(bf.steps, at_peak.steps), rules)
        model.m.add(model.traffic <= bf.traffic)
        model.m.minimize(model.P)
        status, solver = cpsat.solve(model.m, 20.0, 1, 0)
        assert status == cpsat.cp_model.OPTIMAL, name
        assert solver.value(model.P) == peak, f"{name}: model P {solver.value(model.P)}, brute force {peak}"


def test_unknown_dominance_rule_is_refused() -> None:
    g = random_dag(3, seed=1)
    with pytest.raises(ValueError, match="unknown dominance"):
        StageModel(g, Target("t", None, None, "load", alignment=1), 10, None, None, {"free-early"})
