"""Spilling: the spill heuristics, the CP-SAT timestep model and the brute-force yardstick."""

from __future__ import annotations

import networkx as nx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.bounds import working_set_bound
from planner.graph import Graph, graph_from_records
from planner.simulate import simulate
from planner.solvers.base import DoesNotFit, SolveOptions
from planner.solvers.brute_force import brute_force, compulsory_traffic
from planner.solvers.cpsat_spill import solve_cpsat_spill, solve_order
from planner.solvers.cpsat_stage import solve_cpsat_stage, solve_stage_model
from planner.solvers.heuristic import best_heuristic
from planner.solvers.heuristics.spill import (
    candidate_plans,
    min_budget,
    plan_key,
    solve_spill_belady,
    solve_spill_cost,
    solve_spill_largest,
    spill_plan,
)
from planner.solvers.lowering import max_live
from planner.solvers.schedule import canonicalize
from planner.solvers.spill_gaps import FixedOrder
from planner.solvers.spill_joint import solve_joint
from planner.target import Target

FAST = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def dags(draw, max_ops: int = 7) -> Graph:
    """Small DAGs: 1-3 inputs per op from earlier tensors, optional weights, 1-2 outputs."""
    n = draw(st.integers(1, max_ops))
    size = st.integers(1, 8).map(lambda k: 16 * k)
    sizes = {"x": draw(size)}
    tensors, ops, outs, weights = ["x"], [], set(), set()
    for i in range(n):
        k = draw(st.integers(1, min(3, len(tensors))))
        ins = draw(st.lists(st.sampled_from(tensors), min_size=k, max_size=k, unique=True))
        if draw(st.booleans()) and draw(st.booleans()):
            sizes[f"w{i}"] = draw(size)
            ins.append(f"w{i}")
            weights.add(f"w{i}")
        o = [f"t{i}"] + ([f"u{i}"] if draw(st.integers(0, 4)) == 0 else [])
        for t in o:
            sizes[t] = draw(size)
            if draw(st.integers(0, 4)) == 0:
                outs.add(t)
        ops.append((f"op{i}", ins, o))
        tensors += o
    outs.add(tensors[-1])
    return graph_from_records("h", ops, sizes, inputs=["x"], outputs=outs, weights=weights)


def target_for(weights: str, budget: int | None = None) -> Target:
    return Target("t", budget, None, weights, alignment=1)


def nospill_optimum(graph: Graph, target: Target) -> int:
    return min(max_live(graph, target, order) for order in nx.all_topological_sorts(graph.dag))


# -- the stage model's peak without a budget ---------------------------------------------------
@FAST
@given(dags(7), st.sampled_from(["load", "in_place"]))
def test_stage_model_peak_at_most_nospill_optimum(graph: Graph, weights: str) -> None:
    """P(stage model) ≤ min over orders of no-spill max-live (lazy input loads, outputs freed
    once stored, optional spills only lower it); ≥ the largest working set; and equal to it
    whenever spills cannot help, i.e. when the no-spill optimum already meets the
    working-set bound (then ws ≤ P ≤ no-spill optimum = ws)."""
    tg = target_for(weights)
    heur = min(candidate_plans(graph, tg), key=lambda p: plan_key(p, "peak"))
    hint = canonicalize(graph, tg, heur.stages)
    res = solve_stage_model(graph, tg, hint, "peak", SolveOptions(time_limit=10, workers=1), 10)
    assert res.optimal, res.notes
    best = nospill_optimum(graph, tg)
    ws = working_set_bound(graph, tg)
    assert ws <= res.peak <= best
    if best == ws:
        assert res.peak == best


# -- traffic under a budget equals exhaustive search ----------------------------------------
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags(5), st.sampled_from(["load", "in_place"]), st.floats(0, 1))
def test_stage_model_traffic_equals_brute_force(graph: Graph, weights: str, frac: float) -> None:
    tg0 = target_for(weights)
    lo, hi = min_budget(graph, tg0), best_heuristic(graph, tg0)[0]
    tg = tg0.with_budget(lo + int(frac**2 * (hi - lo)))
    bf = brute_force(graph, tg)
    assert bf is not None  # min_budget always works
    heur = min(candidate_plans(graph, tg), key=lambda p: plan_key(p, "traffic"))
    assert heur.metrics.spill_traffic_bytes >= bf.spill_traffic
    hint = canonicalize(graph, tg, heur.stages)
    res = solve_stage_model(
        graph, tg, hint, "traffic", SolveOptions(time_limit=10, workers=1), 10, horizon=max(len(hint.steps), bf.steps)
    )
    assert res.optimal, res.notes
    assert res.traffic - compulsory_traffic(graph, tg) == bf.spill_traffic
    plan = solve_cpsat_stage(graph, tg, SolveOptions(time_limit=5, workers=1))
    assert bf.spill_traffic <= plan.metrics.spill_traffic_bytes <= heur.metrics.spill_traffic_bytes


# -- every spill solver's plan is valid under its budget ---------------------------------------
SOLVERS = [solve_spill_belady, solve_spill_largest, solve_spill_cost, solve_cpsat_spill, solve_cpsat_stage]


@FAST
@given(dags(7), st.sampled_from(["load", "in_place"]), st.floats(0, 1.2), st.sampled_from([1, 16]))
def test_spill_plans_pass_the_simulator(graph: Graph, weights: str, frac: float, align: int) -> None:
    tg0 = Target("t", None, None, weights, alignment=align)
    lo, hi = min_budget(graph, tg0), best_heuristic(graph, tg0)[0]
    tg = tg0.with_budget(max(1, lo + int(frac * (hi - lo))))
    for solve in SOLVERS:
        plan = solve(graph, tg, SolveOptions(time_limit=2, workers=1))
        sim = simulate(graph, tg, plan.stages)
        assert sim.ok, sim.violations
        assert plan.metrics.arena_bytes <= tg.budget
        if tg.budget >= hi:
            assert plan.metrics.spill_traffic_bytes == 0 or solve is solve_cpsat_stage


@FAST
@given(dags(7), st.sampled_from(["load", "in_place"]))
def test_canonical_form_keeps_plans_valid_and_never_raises_memory(graph: Graph, weights: str) -> None:
    tg0 = target_for(weights)
    tg = tg0.with_budget(min_budget(graph, tg0))
    for plan in candidate_plans(graph, tg):
        sched = canonicalize(graph, tg, plan.stages)
        sim = simulate(graph, tg.with_budget(None), sched.stages())
        assert all("overlaps" in v for v in sim.violations), sim.violations  # offsets are laid out later
        assert sim.metrics.peak_l1_bytes <= plan.metrics.peak_l1_bytes
        assert sim.metrics.traffic_bytes <= plan.metrics.traffic_bytes


# -- below the working-set minimum nothing fits ----------------------------------------------
def _diamond() -> Graph:
    return graph_from_records(
        "diamond",
        [("a", ["x"], ["p"]), ("b", ["p"], ["q"]), ("c", ["p"], ["r"]), ("d", ["q", "r", "w"], ["y"])],
        {"x": 100, "p": 200, "q": 300, "r": 300, "w": 50, "y": 100},
        inputs=["x"],
        outputs=["y"],
        weights=["w"],
    )


@pytest.mark.parametrize("solve", SOLVERS)
def test_budget_below_working_set_raises_with_the_minimum(solve) -> None:
    g = _diamond()
    tg = Target("t", None, None, "load", alignment=16)
    need = min_budget(g, tg)  # op d: q, r, w, y = 304+304+64+100 packed, padding on top
    assert need == 304 + 304 + 112 + 50
    with pytest.raises(DoesNotFit) as e:
        solve(g, tg.with_budget(need - 1), SolveOptions(time_limit=2, workers=1))
    assert str(need) in str(e.value)
    assert e.value.needed == need and e.value.lower_bound == working_set_bound(g, tg)
    plan = solve(g, tg.with_budget(need), SolveOptions(time_limit=2, workers=1))
    assert plan.metrics.arena_bytes <= need


def test_spill_plan_default_order_and_unknown_policy() -> None:
    g = _diamond()
    tg = Target("t", 800, None, "load", alignment=1)
    stages = spill_plan(g, tg)
    assert simulate(g, tg, stages).ok
    with pytest.raises(ValueError):
        spill_plan(g, tg, policy="random")


def test_spilling_buys_a_smaller_budget_at_least_traffic() -> None:
    g = _diamond()
    tg0 = Target("t", None, None, "in_place", alignment=1)
    nospill = best_heuristic(g, tg0)[0]
    tg = tg0.with_budget(min_budget(g, tg0))
    assert tg.budget < nospill
    bf = brute_force(g, tg)
    plan = solve_cpsat_stage(g, tg, SolveOptions(time_limit=5, workers=1))
    assert plan.metrics.spill_traffic_bytes == bf.spill_traffic > 0
    assert plan.solver.status == "optimal"


# -- the fixed-order model ---------------------------------------------------------------------
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags(5), st.sampled_from(["load", "in_place"]), st.floats(0, 1))
def test_fixed_order_model_is_exact_for_the_optimal_order(graph: Graph, weights: str, frac: float) -> None:
    """The raw fixed-order optimum for the order of an exhaustive optimum equals it: the
    gap model loses nothing (load right before use, free right after use, store right
    after production), and for any order it is at least the global optimum."""
    tg0 = target_for(weights)
    lo, hi = min_budget(graph, tg0), best_heuristic(graph, tg0)[0]
    tg = tg0.with_budget(lo + int(frac**2 * (hi - lo)))
    bf = brute_force(graph, tg)
    order = [s.name for s in bf.stages if s.kind == "R"]
    res = FixedOrder(graph, tg, order).solve(tg.budget, 5.0)
    assert res is not None and res.optimal
    assert res.traffic == bf.spill_traffic
    for other in list(nx.all_topological_sorts(graph.dag))[:4]:
        r = FixedOrder(graph, tg, other).solve(tg.budget, 5.0)
        assert r is not None and r.traffic >= bf.spill_traffic


@FAST
@given(dags(7), st.sampled_from(["load", "in_place"]), st.floats(0, 1), st.sampled_from([1, 16]))
def test_cpsat_spill_never_worse_than_the_heuristics(graph: Graph, weights: str, frac: float, align: int) -> None:
    tg0 = Target("t", None, None, weights, alignment=align)
    lo, hi = min_budget(graph, tg0), best_heuristic(graph, tg0)[0]
    tg = tg0.with_budget(max(1, lo + int(frac * (hi - lo))))
    heur = min(candidate_plans(graph, tg), key=lambda p: plan_key(p, "traffic"))
    plan = solve_cpsat_spill(graph, tg, SolveOptions(time_limit=2, workers=1, stall=10))
    assert simulate(graph, tg, plan.stages).ok
    assert plan.metrics.spill_traffic_bytes <= heur.metrics.spill_traffic_bytes
    if plan.solver.status == "optimal" and align == 1 and len(graph.ops) <= 6:  # single order: nothing beats it
        assert plan.metrics.spill_traffic_bytes == brute_force(graph, tg).spill_traffic


def _chain_with_skips() -> Graph:
    """A single-order chain whose early tensors are read again at the end (U-Net skips)."""
    recs, sizes = [], {"x": 64}
    prev = "x"
    for i in range(8):
        ins = [prev] + ([f"t{7 - i}"] if i >= 5 else [])
        recs.append((f"op{i}", ins, [f"t{i}"]))
        sizes[f"t{i}"] = 64 * (1 + i % 3)
        prev = f"t{i}"
    return graph_from_records("chain", recs, sizes, inputs=["x"], outputs=["t7"])


def test_cpsat_spill_proves_a_single_order_graph_and_beats_belady() -> None:
    g = _chain_with_skips()
    tg0 = Target("t", None, None, "load", alignment=1)
    tg = tg0.with_budget(min_budget(g, tg0))
    plan = solve_cpsat_spill(g, tg, SolveOptions(time_limit=5, workers=1))
    assert plan.solver.status == "optimal"
    assert plan.metrics.spill_traffic_bytes == brute_force(g, tg, max_ops=8).spill_traffic
    belady = solve_spill_belady(g, tg).metrics.spill_traffic_bytes
    assert plan.metrics.spill_traffic_bytes <= belady


def test_solve_order_fits_the_budget_with_alignment() -> None:
    """Aligned sizes fragment L1; the fixed-order solve still returns a plan inside B."""
    g = _diamond()
    tg0 = Target("t", None, None, "load", alignment=16)
    tg = tg0.with_budget(min_budget(g, tg0))
    heur = min(candidate_plans(g, tg), key=lambda p: plan_key(p, "traffic"))
    order = [s.name for s in heur.stages if s.kind == "R"]
    res = solve_order(g, tg, order, SolveOptions(workers=1), 5.0, heur.stages)
    assert res.plan is not None and res.plan.metrics.arena_bytes <= tg.budget
    assert res.plan.metrics.spill_traffic_bytes <= heur.metrics.spill_traffic_bytes


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags(5), st.sampled_from(["load", "in_place"]), st.floats(0, 1))
def test_joint_model_equals_brute_force(graph: Graph, weights: str, frac: float) -> None:
    """The joint order+spill model's optimum is the exhaustive optimum (raw bytes), with or
    without a hint, and its order's fixed-order optimum equals it."""
    tg0 = target_for(weights)
    lo, hi = min_budget(graph, tg0), best_heuristic(graph, tg0)[0]
    tg = tg0.with_budget(lo + int(frac**2 * (hi - lo)))
    bf = brute_force(graph, tg)
    heur = min(candidate_plans(graph, tg), key=lambda p: plan_key(p, "traffic"))
    order = [s.name for s in heur.stages if s.kind == "R"]
    for hint in (None, order):
        res = solve_joint(graph, tg, hint, heur.stages if hint else None, 5.0)
        assert res.optimal and res.traffic == res.bound == bf.spill_traffic
    assert FixedOrder(graph, tg, res.order).solve(tg.budget, 5.0).traffic == bf.spill_traffic


def test_cpsat_spill_proves_a_branchy_graph_optimal() -> None:
    """Several topological orders: optimality comes from the joint model's bound."""
    g = _diamond()
    tg0 = Target("t", None, None, "in_place", alignment=1)
    tg = tg0.with_budget(min_budget(g, tg0))
    plan = solve_cpsat_spill(g, tg, SolveOptions(time_limit=5, workers=1))
    assert plan.solver.status == "optimal"
    assert plan.metrics.spill_traffic_bytes == brute_force(g, tg).spill_traffic == plan.solver.bound
    assert plan.solver.objective == "traffic"


def test_auto_objective_peak_spills_to_shrink_the_arena_traffic_does_not() -> None:
    from planner.solvers.portfolio import solve_auto

    g = _diamond()
    tg = Target("t", None, None, "in_place", alignment=1)
    smallest, nospill = min_budget(g, tg), best_heuristic(g, tg)[0]
    assert smallest < nospill
    traffic = solve_auto(g, tg, SolveOptions(time_limit=5, workers=1, objective="traffic"))
    assert traffic.metrics.spill_traffic_bytes == 0
    assert traffic.metrics.arena_bytes <= nospill
    peak = solve_auto(g, tg, SolveOptions(time_limit=5, workers=1, objective="peak"))
    assert simulate(g, tg, peak.stages).ok
    assert peak.metrics.arena_bytes == smallest < traffic.metrics.arena_bytes
    assert peak.metrics.spill_traffic_bytes > 0
    assert peak.target.budget is None  # the plan carries the user's (unbounded) target
