"""Every solver plans with shared bytes through the storage graph (solvers/storage.py):
on random graphs of convolutions, element-wise ops, reshapes and concats, every plan is
valid in the simulator, never worse than not sharing where only views and in-place writes
are used, and the storage graph's bytes are what the plan occupies."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.graph import Graph, Op, Tensor
from planner.simulate import simulate
from planner.solvers.base import SolveOptions
from planner.solvers.registry import SOLVERS, get_solver
from planner.solvers.storage import DOMINATING_KINDS, choose, restore, storage_graph
from planner.target import Target


def random_net(n: int, seed: int) -> Graph:
    """A random DAG of NCHW float tensors (batch 1, 4x4 spatial): convolutions change the
    channels, Relu/Add keep them (in place candidates), Reshape views, Concat joins."""
    rng = random.Random(seed)
    tensors = [Tensor("x", 4 * 2 * 16, "input", (1, 2, 4, 4), "float32")]
    ch = {"x": 2}
    ops: list[Op] = []
    live = ["x"]
    for i in range(n):
        kind = rng.choice(["Conv", "Conv", "Relu", "Add", "Reshape", "Concat"])
        name, out = f"op{i}", f"t{i}"
        a = rng.choice(live)
        if kind == "Conv":
            c = rng.choice([1, 2, 3, 4])
            ins: tuple[str, ...] = (a,)
        elif kind == "Add":
            same = [t for t in live if ch[t] == ch[a]]
            ins, c = (a, rng.choice(same)), ch[a]
            if ins[0] == ins[1]:
                kind, ins = "Relu", (a,)
        elif kind == "Concat":
            b = rng.choice(live)
            if a == b:
                kind, ins, c = "Relu", (a,), ch[a]
            else:
                ins, c = (a, b), ch[a] + ch[b]
        else:
            ins, c = (a,), ch[a]
        shape = (1, c, 4, 4) if kind != "Reshape" else (1, c * 16)
        if kind == "Reshape" and len(next(t for t in tensors if t.name == a).shape or ()) != 4:
            kind, shape = "Relu", (1, c * 16)
        ch[out] = c
        tensors.append(Tensor(out, 4 * c * 16, "activation", shape, "float32"))
        if kind in ("Add", "Concat", "Relu") and any(
            len(next(t for t in tensors if t.name == i_).shape) != len(shape) for i_ in ins
        ):
            kind, ins = "Conv", (a,)  # keep element-wise ops and concats on tensors of one rank
        ops.append(Op(name, kind, ins, (out,)))
        live.append(out)
    consumed = {t for o in ops for t in o.inputs}
    tensors = [
        Tensor(t.name, t.bytes, "output", t.shape, t.dtype) if t.name not in consumed and t.kind == "activation" else t
        for t in tensors
    ]
    return Graph(f"net{n}_{seed}", tensors, ops)


SHARED = Target("t", None, alignment=16, share="all")
UNSHARED = Target("t", None, alignment=16)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(3, 14), st.integers(0, 10_000))
def test_every_no_spill_solver_plans_valid_shared_plans(n, seed):
    g = random_net(n, seed)
    for name, spec in SOLVERS.items():
        if spec.spills or name in ("cpsat-joint", "dp", "auto"):
            continue
        plan = get_solver(name)(g, SHARED, SolveOptions(time_limit=1, workers=1))
        sim = simulate(g, SHARED, plan.stages)
        assert sim.ok, (name, sim.violations)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(3, 12), st.integers(0, 10_000))
def test_views_and_in_place_writes_never_raise_memory(n, seed):
    """The dominating relations never make a plan worse: the storage graph's best order is
    at most the original's (auto proves both small graphs optimal)."""
    g = random_net(n, seed)
    base = get_solver("auto")(g, UNSHARED, SolveOptions(time_limit=2, workers=1))
    st_ = storage_graph(g, DOMINATING_KINDS, 16)
    if st_ is None:
        return
    shared = get_solver("cpsat-order")(st_.graph, UNSHARED, SolveOptions(time_limit=2, workers=1))
    assert shared.metrics.peak_l1_bytes <= base.metrics.peak_l1_bytes


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(3, 12), st.integers(0, 10_000))
def test_auto_and_the_spill_solvers_share_validly_under_a_budget(n, seed):
    g = random_net(n, seed)
    free = get_solver("auto")(g, SHARED, SolveOptions(time_limit=2, workers=1))
    budget = max(free.metrics.lower_bound_bytes, int(free.metrics.arena_bytes * 0.8))
    tight = Target("t", budget, alignment=16, share="all")
    for name in ("auto", "spill-belady", "cpsat-spill"):
        try:
            plan = get_solver(name)(g, tight, SolveOptions(time_limit=2, workers=1))
        except Exception as e:  # noqa: BLE001 - a budget below every plan is a clear refusal
            assert "does not fit" in str(e), (name, e)
            continue
        assert simulate(g, tight, plan.stages).ok and plan.metrics.arena_bytes <= budget


def test_the_chosen_relations_form_a_forest_and_restore_declares_them():
    g = random_net(14, 7)
    shares = choose(g, {"view", "slice", "concat", "inplace"}, 16)
    for child, s in shares.items():
        assert s.child == child and child != s.parent
    st_ = storage_graph(g, {"view", "slice", "concat", "inplace"}, 16)
    if st_ is None:
        return
    plan = get_solver("greedy")(st_.graph, UNSHARED, SolveOptions(time_limit=1))
    stages = restore(st_, plan.stages)
    declared = {x.child for s in stages for x in s.shares}
    # every chosen relation is declared once it is made; a concat that takes a whole storage
    # into a slot declares the slot (the concat's input), not the storage's root
    slots = {x.child for s in stages for x in s.shares if x.kind == "concat"}
    assert declared >= {c for c, s in st_.shares.items() if s.kind != "concat"}
    assert all(
        s.child in slots or s.child in declared or any(st_.root.get(t, (t, 0))[0] == s.child for t in slots)
        for s in st_.shares.values()
        if s.kind == "concat"
    )
    assert simulate(g, SHARED, stages).ok


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(4, 14), st.integers(0, 10_000))
def test_shared_plans_under_minimal_lifetimes(n, seed):
    """The storage graph's allocations (concat roots) go through the minimal-lifetimes rewrite
    untouched: only its own load/store pseudo-ops are mapped back as L and S."""
    g = random_net(n, seed)
    minimal = Target("t", None, alignment=16, share="all", lifetimes="minimal")
    for name in ("auto", "greedy"):
        plan = get_solver(name)(g, minimal, SolveOptions(time_limit=1, workers=1))
        assert simulate(g, minimal, plan.stages).ok
