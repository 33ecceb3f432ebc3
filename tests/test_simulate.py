"""The simulator rejects each kind of broken plan (one test per rule) and measures metrics."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.graph import graph_from_records
from planner.plan import Stage
from planner.simulate import PlanError, check, simulate
from planner.target import Target

# x -> a -> y -> b -> z(output);  a also reads weight w
G = graph_from_records(
    "g",
    [("a", ["x", "w"], ["y"]), ("b", ["y"], ["z"])],
    {"x": 32, "w": 16, "y": 64, "z": 32},
    inputs=["x"],
    outputs=["z"],
    weights=["w"],
)
T = Target("t", 256, weights="in_place", alignment=16)
TL = Target("t", 256, weights="load", alignment=16)

GOOD = [
    Stage("L", "x", offset=0),
    Stage("R", "a", offsets={"y": 32}),
    Stage("F", "x"),
    Stage("R", "b", offsets={"z": 0}),
    Stage("S", "z"),
    Stage("F", "y"),
    Stage("F", "z"),
]


def violations(stages, target=T):
    return simulate(G, target, stages).violations


def test_good_plan_metrics():
    sim = simulate(G, T, GOOD)
    assert sim.ok, sim.violations
    m = sim.metrics
    assert m.peak_l1_bytes == 96 and m.arena_bytes == 96
    assert m.traffic_bytes == 64 and m.compulsory_traffic_bytes == 64
    assert m.loaded_bytes == 32 and m.stored_bytes == 32 and m.steps == 7
    assert sim.resident_bytes == [32, 96, 64, 96, 96, 32, 0]


def test_op_input_not_resident():
    v = violations([Stage("R", "a", offsets={"y": 32})] + GOOD[2:])
    assert any("input x is not resident" in s for s in v)


def test_op_runs_twice():
    v = violations(GOOD[:2] + [Stage("R", "a", offsets={"y": 128})] + GOOD[2:])
    assert any("already ran" in s for s in v)


def test_op_never_runs():
    v = violations(GOOD[:3])
    assert any("ops never run: b" in s for s in v)


def test_output_never_stored():
    v = violations([s for s in GOOD if s.kind != "S"])
    assert any("never stored" in s or "loses graph output z" in s for s in v)


def test_free_loses_needed_data():
    v = violations([GOOD[0], GOOD[1], Stage("F", "y"), GOOD[3]])
    assert v[0] == "step 2: F y loses data still needed by b"


def test_free_after_store_is_fine():
    stages = [
        GOOD[0],
        GOOD[1],
        Stage("S", "y"),
        Stage("F", "y"),
        Stage("F", "x"),
        Stage("L", "y", offset=0),
        Stage("R", "b", offsets={"z": 64}),
        Stage("S", "z"),
        Stage("F", "y"),
        Stage("F", "z"),
    ]
    sim = simulate(G, T, stages)
    assert sim.ok, sim.violations
    assert sim.metrics.traffic_bytes == 32 + 64 + 64 + 32
    assert sim.metrics.compulsory_traffic_bytes == 64
    assert sim.metrics.llb_peak_bytes == 96


def test_overlap():
    v = violations([GOOD[0], Stage("R", "a", offsets={"y": 16})] + GOOD[2:])
    assert any("overlaps x" in s for s in v)


def test_budget_exceeded():
    v = violations([GOOD[0], Stage("R", "a", offsets={"y": 224})] + GOOD[2:])
    assert any("exceeds the L1 budget" in s for s in v)


def test_alignment():
    v = violations([GOOD[0], Stage("R", "a", offsets={"y": 40})] + GOOD[2:])
    assert any("multiple of the alignment" in s for s in v)


def test_load_without_llb_copy():
    v = violations(GOOD[:3] + [Stage("L", "y", offset=128)])
    assert any("already resident" in s for s in v)
    v = violations([GOOD[0], Stage("L", "y", offset=64)])
    assert any("no valid LLB copy" in s for s in v)


def test_in_place_weight_never_loaded():
    v = violations([Stage("L", "w", offset=128)] + GOOD)
    assert any("read in place" in s for s in v)


def test_load_weight_must_be_loaded():
    v = violations(GOOD, TL)
    assert any("input w is not resident" in s for s in v)
    ok = [GOOD[0], Stage("L", "w", offset=128)] + GOOD[1:] + [Stage("F", "w")]
    assert simulate(G, TL, ok).ok


def test_store_and_free_of_non_resident():
    v = violations(GOOD + [Stage("F", "y")])
    assert any("F y: not resident" in s for s in v)
    v = violations([Stage("S", "y")] + GOOD)
    assert any("S y: not resident" in s for s in v)


def test_unknown_names_and_missing_offsets():
    v = violations([Stage("R", "nope", offsets={})] + GOOD)
    assert any("unknown op" in s for s in v)
    v = violations([GOOD[0], Stage("R", "a", offsets={})] + GOOD[2:])
    assert any("no offset for output y" in s for s in v)


def test_check_raises():
    with pytest.raises(PlanError, match="loses data"):
        from planner.plan import Plan, SolverInfo

        check(Plan(G, T, [GOOD[0], GOOD[1], Stage("F", "y"), GOOD[3]], SolverInfo("x")))


def _brute_force_overlap(graph, stages):
    """Any two residents overlapping at any step (quadratic reference for the fast check)."""
    res: dict[str, int] = {}
    for s in stages:
        new = {}
        if s.kind == "L":
            new = {s.name: s.offset}
        elif s.kind == "R":
            new = dict(s.offsets or {})
        for t, o in new.items():
            size = graph.tensors[t].bytes
            for u, uo in list(res.items()) + [(k, v) for k, v in new.items() if k != t]:
                us = graph.tensors[u].bytes
                if size and us and o < uo + us and uo < o + size:
                    return True
        res.update(new)
        if s.kind == "F":
            res.pop(s.name, None)
    return False


@settings(max_examples=150, deadline=None)
@given(n=st.integers(2, 25), seed=st.integers(0, 10**6), pick=st.integers(0, 10**6), shift=st.integers(-64, 64))
def test_overlap_detection_matches_brute_force(n, seed, pick, shift):
    from planner.models.generators import random_dag
    from planner.solvers.registry import get_solver

    g = random_dag(n, seed, size_range=(1, 48))
    t = Target("t", None, alignment=1)
    plan = get_solver("best")(g, t)
    stages = list(plan.stages)
    rs = [i for i, s in enumerate(stages) if s.kind == "R"]
    i = rs[pick % len(rs)]
    s = stages[i]
    out = next(iter(s.offsets))
    stages[i] = Stage("R", s.name, offsets={**s.offsets, out: max(0, s.offsets[out] + shift)})
    sim = simulate(g, t, stages)
    assert any("overlaps" in v for v in sim.violations) == _brute_force_overlap(g, stages)


def test_rule_methods_run_alone_on_a_crafted_state():
    """Each rule of DESIGN §1 is one Simulator method: it can be called on a state built by
    hand, reports its message and says whether the rule holds (how a new rule is tested)."""
    from planner.simulate import Simulator

    sim = Simulator(G, T)
    sim.make_resident(0, "x", 0)  # x occupies [0, 32)
    assert sim.check_no_overlap(1, "y", 32) and not sim.violations
    assert not sim.check_no_overlap(1, "y", 16)
    assert sim.violations == ["step 1: y at [16, 80) overlaps x at [0, 32)"]
    # outputs of the same R stage are checked against each other too
    assert not Simulator(G, T).check_no_overlap(2, "z", 0, pending=[(16, 48, "q")])

    sim = Simulator(G, T)
    assert not sim.check_aligned(3, "y", 40) and not sim.check_in_budget(3, "y", 224)
    assert not sim.check_offset_valid(3, "y", -16) and sim.check_offset_valid(3, "y", 0)
    assert sim.violations == [
        "step 3: y offset 40 is not a multiple of the alignment 16",
        "step 3: y at [224, 288) exceeds the L1 budget of 256 bytes",
        "step 3: y has invalid offset -16",
    ]

    sim = Simulator(G, T)
    sim.make_resident(0, "y", 32)
    assert not sim.check_free_keeps_data(4, "y")  # b has not run and y has no LLB copy
    sim.llb.add("y")
    assert sim.check_free_keeps_data(4, "y")
    assert not sim.check_inputs_resident(5, G.op("a"))  # x is in LLB only; w is read in place
    assert not sim.check_outputs_stored(7)
    assert sim.violations == [
        "step 4: F y loses data still needed by b",
        "step 5: R a: input x is not resident in L1 (in LLB only)",
        "step 7: graph output z is never stored to LLB",
    ]


def test_residencies_match_the_replay():
    """The simulator's residencies of a valid plan are the unchecked replay's (one notion of
    'what is resident when'), with the planned offsets."""
    from planner.replay import Residency, residencies

    sim = simulate(G, T, GOOD)
    assert sim.residencies == residencies(G, GOOD)
    assert sim.residencies[0] == Residency("x", 0, 2, 0)
