"""The irregular families by zoo name, and auto's anytime behaviour on them (issue 16):
the spill phase returns as soon as a plan is proven, the time limit holds, the plan is valid."""

import time
from dataclasses import replace
from types import SimpleNamespace

import pytest

from planner.bounds import min_budget
from planner.models.errors import ModelError
from planner.models.generators import series_parallel
from planner.models.zoo import irregular_names, load_model
from planner.simulate import simulate, with_solver
from planner.solvers import portfolio
from planner.solvers.base import SolveOptions
from planner.solvers.registry import get_solver
from planner.target import Target


def test_every_irregular_name_loads() -> None:
    names = irregular_names()
    assert "nasnet_a_cifar" in names and "randwire_ws32_imagenet" in names and len(names) == 14
    for name in names:
        g = load_model(name)
        assert g.ops and g.outputs and g.inputs
    assert load_model("randwire_ws16_imagenet:3").name == "randwire_ws16_imagenet_s3"
    assert [o.inputs for o in load_model("randwire_ws8_cifar:1").ops] != [
        o.inputs for o in load_model("randwire_ws8_cifar").ops
    ]
    with pytest.raises(ModelError):
        load_model("nasnet_a_mnist")


def test_spill_phase_returns_as_soon_as_a_plan_is_proven(monkeypatch) -> None:
    g = series_parallel(60, seed=1)
    target = Target("t", None)
    arena = get_solver("best")(g, target, SolveOptions(time_limit=0)).metrics.arena_bytes
    budget = target.with_budget(max(min_budget(g, target), int(arena * 0.8)))
    assert budget.budget < arena
    belady = get_solver("spill-belady")
    called = []

    def proven(graph, tgt, options):
        p = belady(graph, tgt, options)
        return with_solver(p, replace(p.solver, status="optimal"))

    def exact(graph, tgt, options):
        called.append(True)
        return belady(graph, tgt, options)

    fake = {
        "first": SimpleNamespace(name="first", spills=True, exact=False, load=lambda: proven),
        "second": SimpleNamespace(name="second", spills=True, exact=True, load=lambda: exact),
    }
    monkeypatch.setattr(portfolio, "SOLVERS", fake)
    clock = portfolio.Clock(30.0)
    plan = portfolio.spill_phase(g, budget, SolveOptions(time_limit=30), clock, arena)
    assert plan.solver.status == "optimal" and not called
    assert clock.elapsed < 10


@pytest.mark.parametrize("name", ["randwire_ws16_cifar", "darts_v2_imagenet"])
def test_auto_honours_the_time_limit_and_plans_validly(name: str) -> None:
    g = load_model(name)
    target = Target("t", None)
    t0 = time.perf_counter()
    plan = get_solver("auto")(g, target, SolveOptions(time_limit=3, workers=2))
    assert time.perf_counter() - t0 < 3 + 1.5
    sim = simulate(plan.graph, plan.target, plan.stages)
    assert sim.ok and sim.metrics.arena_bytes == plan.metrics.arena_bytes
    assert plan.solver.bound <= plan.metrics.arena_bytes


def test_a_proven_no_spill_plan_skips_the_phases_that_only_refine_bounds() -> None:
    """DARTS-V2 at ImageNet size: its heuristic order already meets one op's working set, so
    the plan is optimal at once; the segments used to spend a fifth of the limit refining a
    raw bound the layout already met (12 s of a 60 s limit)."""
    g = load_model("darts_v2_imagenet")
    p = get_solver("auto")(g, Target("t", None), SolveOptions(time_limit=60, workers=2, seed=0))
    phases = p.solver.facts["phase_s"]
    assert p.solver.status == "optimal" and p.solver.facts["proven_after"] in phases
    assert "segments" not in phases and "search" not in phases and "layout" in phases
    assert p.solver.wall_s < 0.25 * 60
