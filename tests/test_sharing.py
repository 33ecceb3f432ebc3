"""Shared bytes (DESIGN §1 rule 3, plan format v2): which relations are legal, how the
simulator checks and counts them, and that plans sharing bytes survive the plan file."""

from __future__ import annotations

import json

import pytest

from planner.graph import Graph, Op, Tensor
from planner.plan import Plan, SolverInfo, Stage, plan_from_dict
from planner.sharing import Share, relations
from planner.simulate import simulate
from planner.target import Target

F32 = "float32"
T = Target("t", None, alignment=4)


def t(name: str, shape: tuple[int, ...], kind: str = "activation") -> Tensor:
    n = 1
    for d in shape:
        n *= d
    return Tensor(name, 4 * n, kind, shape, F32)


def chain_graph() -> Graph:
    """x -conv-> a -reshape-> v -relu-> r -add(r, b)-> y ;  b = x's other branch."""
    tensors = [
        t("x", (1, 4, 2, 2), "input"),
        t("a", (1, 4, 2, 2)),
        t("v", (1, 16)),
        t("r", (1, 16)),
        t("b", (1, 16)),
        t("y", (1, 16), "output"),
        Tensor("w", 64, "weight", (16,), F32),
    ]
    ops = [
        Op("conv", "Conv", ("x", "w"), ("a",)),
        Op("reshape", "Reshape", ("a",), ("v",)),
        Op("relu", "Relu", ("v",), ("r",)),
        Op("flat", "Flatten", ("x",), ("b",)),
        Op("add", "Add", ("r", "b"), ("y",)),
    ]
    return Graph("g", tensors, ops)


def test_relations_follow_op_types_and_shapes():
    g = chain_graph()
    rel = {(s.kind, s.child, s.parent) for s in relations(g)}
    assert ("view", "v", "a") in rel and ("view", "b", "x") in rel
    assert ("inplace", "r", "v") in rel
    assert ("inplace", "y", "r") in rel and ("inplace", "y", "b") in rel
    assert not any(s.op == "conv" for s in relations(g))  # a convolution shares nothing


def stages_view_inplace() -> list[Stage]:
    return [
        Stage("L", "x", offset=0),
        Stage("R", "conv", offsets={"a": 64}),
        Stage("R", "reshape", offsets={"v": 64}, shares=(Share("view", "reshape", "v", "a"),)),
        Stage("F", "a"),
        Stage("R", "relu", offsets={"r": 64}, shares=(Share("inplace", "relu", "r", "v"),)),
        Stage("F", "v"),
        Stage("R", "flat", offsets={"b": 0}, shares=(Share("view", "flat", "b", "x"),)),
        Stage("F", "x"),
        Stage("R", "add", offsets={"y": 64}, shares=(Share("inplace", "add", "y", "r"),)),
        Stage("S", "y"),
        Stage("F", "r"),
        Stage("F", "b"),
        Stage("F", "y"),
    ]


def test_views_and_in_place_writes_count_their_bytes_once():
    g = chain_graph()
    sim = simulate(g, T, stages_view_inplace())
    assert sim.ok, sim.violations
    # never more than x and one 64-byte buffer: every name of a buffer counts once
    assert sim.metrics.peak_l1_bytes == 128 and sim.metrics.arena_bytes == 128
    unshared = [Stage(s.kind, s.name, s.offset, s.offsets) for s in stages_view_inplace()]
    assert any("overlaps" in v for v in simulate(g, T, unshared).violations)  # v1 rules refuse it


def test_an_in_place_write_over_a_tensor_still_read_is_refused():
    g = chain_graph()
    stages = stages_view_inplace()
    g2 = Graph(
        "g2",
        [*g.tensors.values(), t("z", (1, 16), "output")],
        [*g.ops, Op("late", "Relu", ("v",), ("z",))],  # v is read again after relu overwrote it
    )
    sim2 = simulate(g2, T, stages[:5])
    assert any("still reads" in v for v in sim2.violations)


def test_a_share_the_graph_does_not_allow_is_refused():
    g = chain_graph()
    stages = stages_view_inplace()
    stages[1] = Stage("R", "conv", offsets={"a": 0}, shares=(Share("view", "conv", "a", "x"),))
    sim = simulate(g, T, stages)
    assert any("not a legal share" in v for v in sim.violations)


def test_a_share_at_the_wrong_offset_is_refused():
    g = chain_graph()
    stages = stages_view_inplace()
    stages[2] = Stage("R", "reshape", offsets={"v": 0}, shares=(Share("view", "reshape", "v", "a"),))
    assert any("is not a at" in v for v in simulate(g, T, stages).violations)


def concat_graph() -> Graph:
    tensors = [
        t("x", (1, 2, 4), "input"),
        t("p", (1, 2, 4)),
        t("q", (1, 3, 4)),
        t("z", (1, 5, 4)),
        t("s", (1, 2, 4)),
        t("y", (1, 2, 4), "output"),
    ]
    ops = [
        Op("mk_p", "Relu", ("x",), ("p",)),
        Op("mk_q", "Conv", ("x",), ("q",)),
        Op("cat", "Concat", ("p", "q"), ("z",)),
        Op("cut", "Slice", ("z",), ("s",), {"slice": (1, 3)}),
        Op("out", "Sigmoid", ("s",), ("y",)),
    ]
    return Graph("c", tensors, ops)


def test_concat_slots_and_slices_share_the_output_bytes():
    g = concat_graph()
    rel = {(s.kind, s.child, s.parent, s.displacement) for s in relations(g)}
    assert ("concat", "p", "z", 0) in rel and ("concat", "q", "z", 32) in rel
    assert ("slice", "s", "z", 3 * 16) in rel
    z0 = 32
    stages = [
        Stage("L", "x", offset=0),
        Stage("R", "mk_p", offsets={"p": z0}),
        Stage("R", "mk_q", offsets={"q": z0 + 32}),
        Stage("F", "x"),
        Stage(
            "R",
            "cat",
            offsets={"z": z0},
            shares=(Share("concat", "cat", "p", "z", 0), Share("concat", "cat", "q", "z", 32)),
        ),
        Stage("F", "p"),
        Stage("F", "q"),
        Stage("R", "cut", offsets={"s": z0 + 48}, shares=(Share("slice", "cut", "s", "z", 48),)),
        Stage("F", "z"),
        Stage("R", "out", offsets={"y": 0}),
        Stage("S", "y"),
        Stage("F", "s"),
        Stage("F", "y"),
    ]
    sim = simulate(g, T, stages)
    assert sim.ok, sim.violations
    assert sim.metrics.peak_l1_bytes == 32 + 80  # x and z's 80 bytes, never p + q + z
    # the slice keeps only its own 32 bytes once z is freed
    assert sim.resident_bytes[8] == 32


def test_a_spilled_view_spills_its_bytes_once():
    g = chain_graph()
    stages = [
        Stage("L", "x", offset=0),
        Stage("R", "conv", offsets={"a": 64}),
        Stage("R", "reshape", offsets={"v": 64}, shares=(Share("view", "reshape", "v", "a"),)),
        Stage("S", "a"),
        Stage("F", "v"),
        Stage("F", "a"),
        Stage("L", "a", offset=64),  # a back from LLB ...
        Stage("L", "v", offset=64, shares=(Share("view", "", "v", "a"),)),  # ... and its view, no traffic
        Stage("F", "a"),
        Stage("R", "relu", offsets={"r": 128}),
        Stage("F", "v"),
        Stage("R", "flat", offsets={"b": 64}),
        Stage("F", "x"),
        Stage("R", "add", offsets={"y": 0}),
        Stage("S", "y"),
        Stage("F", "r"),
        Stage("F", "b"),
        Stage("F", "y"),
    ]
    sim = simulate(g, T, stages)
    assert sim.ok, sim.violations
    assert sim.metrics.traffic_bytes == 64 + 64 + 64 + 64  # x in, a out and back, y out: v is free


def test_storing_overwritten_bytes_is_refused():
    g = chain_graph()
    stages = stages_view_inplace()[:5] + [Stage("S", "v")]
    assert any("overwritten in place" in v for v in simulate(g, T, stages).violations)


def test_plans_that_share_bytes_are_version_2_and_read_back():
    g = chain_graph()
    plan = Plan(g, T, stages_view_inplace(), SolverInfo("hand"))
    d = json.loads(plan.to_json())
    assert d["version"] == 2 and d["stages"][2]["shares"] == [{"kind": "view", "tensor": "v", "in": "a", "at": 0}]
    back = plan_from_dict(d)
    assert simulate(back.graph, back.target, back.stages).ok
    assert back.stages[4].shares[0].kind == "inplace"
    unshared = Plan(g, T, [Stage(s.kind, s.name, s.offset, s.offsets) for s in stages_view_inplace()], SolverInfo("x"))
    assert json.loads(unshared.to_json())["version"] == 1


@pytest.mark.parametrize(
    "bad", [{"kind": "teleport", "tensor": "v", "in": "a", "at": 0}, {"kind": "view", "tensor": "v"}]
)
def test_malformed_shares_are_one_line_errors(bad):
    from planner.plan import PlanFormatError

    d = json.loads(Plan(chain_graph(), T, stages_view_inplace(), SolverInfo("hand")).to_json())
    d["stages"][2]["shares"] = [bad]
    with pytest.raises(PlanFormatError):
        plan_from_dict(d)
