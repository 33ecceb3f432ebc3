"""Issue 14, items 7-9: TFLite models TFLM could not run (arena size, float16 weights, ops
without a kernel), shapes that disagree (declared, inferred, measured), and inputs whose
value a shape depends on. Each test failed before its fix."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from test_hardening import cli, one_line  # the same helpers as the other hardening tests

from planner.cli import main

F = TensorProto.FLOAT


def save(tmp_path: Path, graph, name: str, opset: int = 18) -> Path:
    p = tmp_path / name
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), str(p))
    return p


def need_tflm():
    from planner.tflm_runtime import available

    if not available():
        pytest.skip("needs TFLite Micro: pip install --no-deps tflite-micro")


# -- 7. TFLite runtime gaps ------------------------------------------------------------------------


def test_run_sizes_tflms_arena_from_the_model(tmp_path, capsys):
    """12 MB of activations: TFLM's old fixed 8 MiB arena failed ("Failed to resize buffer")."""
    need_tflm()
    from tflite_models import big_add_model

    model = big_add_model(tmp_path / "big.tflite", 1_000_000)
    plan = tmp_path / "big.json"
    assert main(["plan", str(model), "--quiet", "-o", str(plan)]) == 0
    capsys.readouterr()
    code, out, err = cli(capsys, "run", model, plan, "--invocations", "2", "--json")
    assert code == 0, err
    r = json.loads(out)
    assert r["ok"] and r["planned_arena_bytes"] == 12_000_000


def test_plan_and_export_warn_about_ops_tflm_cannot_run(tmp_path, capsys):
    need_tflm()
    from tflite_models import Op, T, build, fp16_fc_model

    fp16, _, _ = fp16_fc_model(tmp_path / "fp16.tflite")
    code, _, err = cli(capsys, "plan", fp16, "--quiet", "-o", tmp_path / "fp16.json")
    assert code == 0
    (warning,) = err.strip().splitlines()
    assert warning.startswith("warning: fp16.tflite: TFLite Micro cannot run this model")
    assert "DEQUANTIZE" in warning and "--fold-fp16" in warning
    code, _, err = cli(
        capsys, "export", tmp_path / "fp16.json", "-f", "tflite", "--model", fp16, "-o", tmp_path / "o.tflite"
    )
    assert code == 0 and err.startswith("warning: fp16.tflite: TFLite Micro cannot run")
    odd = build(
        tmp_path / "odd.tflite",
        [T("x", (1, 4)), T("a", (1, 4)), T("y", (1, 4))],
        [Op("MyCustomOp", ["x"], ["a"], custom=True), Op("DENSIFY", ["a"], ["y"])],
        ["x"],
        ["y"],
    )
    code, _, err = cli(capsys, "plan", odd, "--quiet", "-o", tmp_path / "odd.json")
    (warning,) = err.strip().splitlines()
    assert code == 0 and "custom op 'MyCustomOp'" in warning and "no kernel for DENSIFY" in warning


def test_fold_fp16_makes_tflm_run_the_model_with_the_same_outputs(tmp_path, capsys):
    need_tflm()
    from tflite_models import fp16_fc_model

    from planner.export.tflm import read_offline_plan
    from planner.models.tflite import fold_fp16_dequantize, read_model
    from planner.models.tflite import pack_model as _pack
    from planner.tflm_runtime import TflmError, tflm_run_full

    model, w, b = fp16_fc_model(tmp_path / "fp16.tflite")
    plan = tmp_path / "fp16.json"
    assert main(["plan", str(model), "--quiet", "-o", str(plan)]) == 0
    capsys.readouterr()
    x = [[np.random.default_rng(k).standard_normal((1, 8)).astype(np.float32)] for k in range(3)]
    with pytest.raises(TflmError, match="DEQUANTIZE"):
        tflm_run_full(model, x)  # TFLM cannot dequantize float16
    out = tmp_path / "folded.tflite"
    code, stdout, err = cli(capsys, "export", plan, "-f", "tflite", "--model", model, "--fold-fp16", "-o", out)
    assert code == 0 and err == "" and "2 float16 weights folded" in stdout
    assert read_offline_plan(out) is not None
    ours = tflm_run_full(out, x).outputs
    # the same folding without our plan: TFLM's own placement gives bit-identical outputs
    m, _ = read_model(model)
    fold_fp16_dequantize(m)
    (tmp_path / "ref.tflite").write_bytes(_pack(m))
    ref = tflm_run_full(tmp_path / "ref.tflite", x).outputs
    for a, r, xs in zip(ours, ref, x, strict=True):
        assert np.array_equal(a[0], r[0])
        np.testing.assert_allclose(a[0], 2 * (xs[0] @ w.T + b), rtol=1e-5)
    code, _, err = cli(capsys, "export", plan, "-f", "c", "--fold-fp16", "-o", tmp_path / "o.h")
    assert code == 2 and "--fold-fp16 is for --format tflite" in one_line(err)


def test_tflite_offsets_past_2_31_are_refused(tmp_path, capsys):
    need_tflm()
    from planner.models.zoo import is_available

    if not is_available("sine_float"):
        pytest.skip("sine_float not installed")
    from planner.plan import read_plan
    from planner.simulate import finalize

    p = tmp_path / "sine.json"
    assert main(["plan", "sine_float", "--solver", "greedy", "--quiet", "-o", str(p)]) == 0
    plan = read_plan(p)
    stages = list(plan.stages)
    k = next(i for i, s in enumerate(stages) if s.kind == "R")
    t = next(iter(stages[k].offsets))
    stages[k] = type(stages[k])("R", stages[k].name, offsets={t: 2**31})
    from dataclasses import replace

    far = finalize(replace(plan, stages=stages))
    far.write(tmp_path / "far.json")
    code, _, err = cli(
        capsys, "export", tmp_path / "far.json", "-f", "tflite", "--model", "sine_float", "-o", tmp_path / "o.tflite"
    )
    assert code == 2 and "past 2**31" in one_line(err)


# -- 8. shapes that disagree -------------------------------------------------------------------


def test_pooling_with_ceil_mode_plans_onnxruntimes_shape(tmp_path, capsys):
    """onnx shape inference says 4x4 for this MaxPool, onnxruntime computes 3x3."""
    x = helper.make_tensor_value_info("x", F, [1, 1, 5, 5])
    y = helper.make_tensor_value_info("y", F, None)
    pool = helper.make_node(
        "MaxPool", ["x"], ["p"], kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1
    )
    model = save(
        tmp_path, helper.make_graph([pool, helper.make_node("Relu", ["p"], ["y"])], "g", [x], [y]), "pool.onnx"
    )
    plan = tmp_path / "pool.json"
    code, _, err = cli(capsys, "plan", model, "--fuse", "none", "--quiet", "-o", plan)
    assert code == 0
    (note,) = err.strip().splitlines()
    assert note.startswith(
        "note: pool.onnx: tensor 'p': onnx shape inference gives 1x1x4x4, onnxruntime computes 1x1x3x3"
    )
    assert "planning onnxruntime's shapes" in note
    d = json.loads(plan.read_text())
    assert {t["name"]: t["shape"] for t in d["tensors"]}["p"] == [1, 1, 3, 3]
    code, _, err = cli(capsys, "run", model, plan)
    assert code == 0, err


def test_declared_value_info_that_disagrees_is_named(tmp_path, capsys):
    """An uneven Split (5 channels into 2) whose declared value_info says 2 and 2."""
    x = helper.make_tensor_value_info("x", F, [1, 5])
    vi = [helper.make_tensor_value_info("a", F, [1, 2]), helper.make_tensor_value_info("b", F, [1, 2])]
    nodes = [
        helper.make_node("Split", ["x"], ["a", "b"], axis=1, num_outputs=2),
        helper.make_node("Relu", ["a"], ["y1"]),
        helper.make_node("Relu", ["b"], ["y2"]),
    ]
    outs = [helper.make_tensor_value_info("y1", F, None), helper.make_tensor_value_info("y2", F, None)]
    model = save(tmp_path, helper.make_graph(nodes, "g", [x], outs, value_info=vi), "split.onnx")
    plan = tmp_path / "split.json"
    code, _, err = cli(capsys, "plan", model, "--fuse", "none", "--quiet", "-o", plan)
    assert code == 0
    (note,) = err.strip().splitlines()
    assert "tensor 'a' is declared 1x2, but onnx shape inference and onnxruntime give 1x3; planning 1x3" in note
    assert cli(capsys, "run", model, plan)[0] == 0


def test_run_names_a_shape_onnxruntime_does_not_compute(tmp_path, capsys):
    """A plan whose recorded shape is not what onnxruntime computes fails in one line naming
    the shapes (here the plan was made by the old importer's inferred 4x4)."""
    from planner.execute import ExecutionError, _PlanRun

    dst = np.zeros((1, 1, 4, 4), np.float32)
    with pytest.raises(ExecutionError, match="onnxruntime computes shape 1x1x3x3, the plan was made for 1x1x4x4"):
        _PlanRun.put(dst, np.zeros((1, 1, 3, 3), np.float32), "step 1: R pool -> p")


# -- 9. input values that shapes depend on -----------------------------------------------------


def _value_model(tmp_path: Path) -> Path:
    x = helper.make_tensor_value_info("x", F, [1, 4])
    s = helper.make_tensor_value_info("s", TensorProto.INT64, [2])
    y = helper.make_tensor_value_info("y", F, None)
    # allowzero: a shape of zeros (what a measurement guesses for s) is not a valid reshape of 4 values
    nodes = [helper.make_node("Reshape", ["x", "s"], ["r"], allowzero=1), helper.make_node("Relu", ["r"], ["y"])]
    return save(tmp_path, helper.make_graph(nodes, "g", [x, s], [y]), "reshape.onnx")


def test_input_value_pins_a_value_a_shape_depends_on(tmp_path, capsys):
    model = _value_model(tmp_path)
    code, _, err = cli(capsys, "plan", model, "--quiet", "-o", tmp_path / "p.json")
    line = one_line(err)
    assert code == 2 and "shapes may depend on the value of input 's'" in line and "--input-value s=V" in line
    code, _, err = cli(capsys, "plan", model, "--input-value", "s=2,2", "--quiet", "-o", tmp_path / "p.json")
    assert code == 0 and "measured in onnxruntime" not in err, err  # the value was given: nothing guessed
    d = json.loads((tmp_path / "p.json").read_text())
    assert {t["name"]: t["shape"] for t in d["tensors"]}["r"] == [2, 2]
    code, out, err = cli(capsys, "run", model, tmp_path / "p.json", "--input-value", "s=2,2", "--json")
    assert code == 0 and json.loads(out)["ok"], err
    for bad in ("s", "s=", "s=abc", "s=1,,2", "=3", "s=nan"):
        code, _, err = cli(capsys, "plan", model, "--input-value", bad, "--quiet", "-o", tmp_path / "q.json")
        assert code == 2 and "--input-value" in one_line(err)
    code, _, err = cli(capsys, "plan", model, "--input-value", "s=1.5,2", "--quiet", "-o", tmp_path / "q.json")
    assert code == 2 and "cannot hold the value" in one_line(err)


def test_silero_vad_plans_from_its_path_with_its_sample_rate(tmp_path, capsys):
    from planner.models.zoo import ZooError, locate

    try:
        path = locate("silero_vad")
    except ZooError:
        pytest.skip("silero-vad wheel not installed")
    pins = ["--input-shape", "input=1x576", "--input-shape", "state=2x1x128"]
    code, _, err = cli(capsys, "plan", path, *pins, "--quiet", "-o", tmp_path / "p.json")
    assert code == 2 and "--input-value sr=V" in one_line(err)
    code, _, err = cli(capsys, "plan", path, *pins, "--input-value", "sr=16000", "--quiet", "-o", tmp_path / "p.json")
    assert code == 0, err


def test_dynamic_shape_hint_cannot_be_copied_blindly(tmp_path):
    from planner.models.errors import ModelError
    from planner.models.onnx import load_onnx

    x = helper.make_tensor_value_info("x", F, ["?", 3, "?", "?"])
    y = helper.make_tensor_value_info("y", F, None)
    model = save(tmp_path, helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]), "q.onnx")
    with pytest.raises(ModelError) as e:
        load_onnx(model)
    msg = str(e.value)
    assert "--input-shape x=D0x3xD2xD3" in msg and "--dim" not in msg and "1x3x1x1" not in msg
    x = helper.make_tensor_value_info("x", F, ["batch", 3, "height", "width"])
    model = save(tmp_path, helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]), "n.onnx")
    with pytest.raises(ModelError, match=r"--input-shape x=BATCHx3xHEIGHTxWIDTH or --dim batch=SIZE --dim height=SIZE"):
        load_onnx(model)


def test_max_rel_is_not_huge_next_to_a_match():
    from planner.execute import compare

    ref = np.array([1e-310, 0.0, 2.0], np.float64)
    ours = ref + np.array([1e-9, 1e-9, 0.0])
    c = compare("y", ours, ref, rtol=1e-4, atol=1e-5)
    assert c.match and c.max_rel == 0.0 and c.max_abs == pytest.approx(1e-9)
    c = compare("y", np.array([1.0, 2.2]), np.array([1.0, 2.0]), rtol=1e-4, atol=1e-5)
    assert not c.match and c.max_rel == pytest.approx(0.1)
