"""`auto` as phases on one clock: each phase alone on a typed state, and the whole run
simulating its plan once on the way out."""

from __future__ import annotations

import pytest

import planner.simulate as simulate_module
from planner.bounds import min_budget, working_set_bound
from planner.models.generators import chain, random_dag, series_parallel
from planner.simulate import check
from planner.solvers.base import SolveOptions
from planner.solvers.heuristic import heuristic_start
from planner.solvers.lowering import max_live
from planner.solvers.portfolio import (
    NOSPILL_PHASES,
    SHARES,
    Clock,
    NoSpill,
    phase_layout,
    phase_relaxation,
    phase_search,
    phase_segments,
    solve_auto,
)
from planner.target import Target

T = Target("t", None)


def _state(graph, limit: float = 5.0) -> NoSpill:
    start = heuristic_start(graph, T)
    opts = SolveOptions(time_limit=limit, workers=1)
    return NoSpill(graph, T, opts, Clock(limit), start, start.peak_order, start.peak, working_set_bound(graph, T))


def test_the_time_table_is_the_one_policy():
    # shares end in order: relaxation and segments before the search, the search before the end
    assert 0 < SHARES.relax < SHARES.order_end < SHARES.search_end < 1
    assert SHARES.order_end_proven <= SHARES.order_end
    assert 0 < SHARES.spill_reserve < 1
    assert NOSPILL_PHASES[-1] is phase_layout  # the layout comes last: it needs the final order


def test_relaxation_phase_alone_gives_a_valid_bound():
    g = series_parallel(60, seed=1)
    s = _state(g)
    phase_relaxation(s)
    assert s.strong <= s.peak  # never above a known order
    assert s.bound <= max_live(g, T, s.order)  # a bound, not a value
    if s.proven:
        assert s.strong == s.peak


def test_segments_phase_alone_never_makes_the_order_worse():
    g = series_parallel(80, seed=2)
    s = _state(g)
    before = s.peak
    phase_segments(s)
    assert g.is_topological(s.order)
    assert s.peak <= before
    assert s.peak == max_live(g, T, s.order, aligned=True)
    assert s.facts["segments"] >= 1


def test_search_phase_alone_keeps_a_topological_order():
    g = series_parallel(40, seed=3)
    s = _state(g, limit=2.0)
    before = s.peak
    phase_search(s)
    assert g.is_topological(s.order) and s.peak <= before


def test_layout_phase_alone_lays_out_the_state_order():
    g = chain(30)
    s = _state(g)
    phase_layout(s)
    assert s.arena <= s.start.arena  # never worse than the heuristic plan
    assert set(s.offsets) >= set(g.tensors)


@pytest.mark.parametrize("lifetimes", ["tflm", "minimal"])
def test_auto_simulates_its_plan_once(monkeypatch, lifetimes):
    calls = []

    g = chain(20)

    def counting(plan):
        if plan.graph.name == g.name:  # not the segment sub-problems some phases solve
            calls.append(plan.solver.name)
        return check(plan)

    monkeypatch.setattr(simulate_module, "check", counting)
    plan = solve_auto(g, Target("t", None, lifetimes=lifetimes), SolveOptions(time_limit=2, workers=1))
    assert calls == ["auto"]
    assert plan.metrics.arena_bytes > 0 and plan.solver.status == "optimal"


def test_auto_records_params_apart_from_facts():
    plan = solve_auto(chain(10), T, SolveOptions(time_limit=1, workers=1, seed=3))
    assert plan.solver.params["seed"] == 3 and plan.solver.params["time_limit"] == 1
    assert "heuristic_arena" in plan.solver.facts and "heuristic_arena" not in plan.solver.params
    assert plan.solver.objective == "arena"


def test_spill_phase_reports_its_bound_in_traffic():
    g = random_dag(20, seed=0)
    free = solve_auto(g, T, SolveOptions(time_limit=2, workers=1))
    tight = T.with_budget(min_budget(g, T))  # the smallest budget any plan can use
    assert tight.budget < free.metrics.arena_bytes
    plan = solve_auto(g, tight, SolveOptions(time_limit=4, workers=1))
    assert plan.metrics.arena_bytes <= tight.budget
    assert plan.solver.objective == "traffic"
    assert plan.solver.bound <= plan.metrics.spill_traffic_bytes
    assert plan.solver.facts["nospill_arena"] >= free.metrics.arena_bytes
