"""Shared bytes, proven at run time: plans whose tensors share bytes (views, slices, concat
slots, in-place writes; planner/sharing.py) compute what the model computes.

- ONNX: plans made with `share="all"` are executed in a real numpy arena, where a view,
  slice or slot is literally the same bytes and an in-place write overwrites its input;
  outputs must match onnxruntime and the measured peak the planned one. A wrong share
  (an importer's wrong `slice` attribute, an in-place write over bytes still read) shows
  as wrong outputs, and the simulator refuses it first.
- TFLite: the exported shared plan runs in an unchanged TFLite Micro with identical outputs
  and an arena head within the plan.
- The importers' `slice` attributes are checked against the runtimes' own semantics.
- Shared plans survive the plan file and `planner show` re-checks them.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from planner.cli import main
from planner.models.onnx import load_onnx
from planner.plan import Plan, Stage, read_plan
from planner.sharing import Share
from planner.simulate import PlanError, simulate
from planner.solvers.base import SolveOptions
from planner.solvers.registry import get_solver
from planner.target import Target

pytest.importorskip("onnxruntime")

from planner.execute import execute  # noqa: E402
from planner.models import zoo  # noqa: E402

SHARE_ALL = Target("t", None, share="all")
OPTS = SolveOptions(time_limit=3.0, workers=1, seed=0)
WHEELS = "pip install --no-deps rapidocr-onnxruntime==1.4.4 silero-vad==6.2.3 oskut==1.6"
RNG = np.random.default_rng(0)


def shared_plan(graph, target: Target = SHARE_ALL) -> Plan:
    """`auto` under `target` (shares allowed), short time limit."""
    return get_solver("auto")(graph, target, OPTS)


def share_kinds(plan: Plan) -> set[str]:
    """The relation kinds the plan's stages declare."""
    return {x.kind for s in plan.stages for x in s.shares}


def assert_runs_like_onnxruntime(plan: Plan, path) -> None:
    """The plan shares bytes, and executing it gives onnxruntime's outputs at the planned peak."""
    assert plan.shares_bytes
    r = execute(plan, path)
    assert r.outputs_match, [c for c in r.checks if not c.match]
    assert r.peak_l1_bytes == plan.metrics.peak_l1_bytes
    assert r.ok, r.to_dict()


# -- ONNX zoo models ---------------------------------------------------------------------------
FAST_ZOO = ["resnet8", "light_squeezenet", "ppocr_cls", "light_inception_v1", "silero_vad_openvino_16k"]
SLOW_ZOO = ["ppocr_rec", "oskut-deepcut", "light_shufflenet"]
HAS_SLICES = {"silero_vad_openvino_16k", "ppocr_rec", "oskut-deepcut"}  # Slice ops that share


def _zoo_plan_and_run(name: str) -> None:
    if not zoo.is_available(name):
        pytest.skip(f"zoo model {name} is not installed ({WHEELS})")
    plan = shared_plan(zoo.load_model(name))
    if name in HAS_SLICES:
        assert "slice" in share_kinds(plan), share_kinds(plan)  # the importer resolved the Slice ops
    assert_runs_like_onnxruntime(plan, zoo.locate(name))


@pytest.mark.parametrize("name", FAST_ZOO)
def test_zoo_shared_plans_match_onnxruntime(name):
    _zoo_plan_and_run(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW_ZOO)
def test_larger_zoo_shared_plans_match_onnxruntime(name):
    _zoo_plan_and_run(name)


# -- ONNX graphs built here, one per relation kind ---------------------------------------------
def _f32(name: str, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def _w(name: str, *shape, scale: float = 1.0) -> onnx.TensorProto:
    return numpy_helper.from_array((scale * RNG.standard_normal(shape)).astype(np.float32), name)


def _i64(name: str, values) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(values, dtype=np.int64), name)


def _conv(x: str, w: str, y: str) -> onnx.NodeProto:
    return helper.make_node("Conv", [x, w], [y], name=f"conv_{y}", pads=[1, 1, 1, 1])


def _save(tmp_path: Path, name: str, nodes, inputs, outputs, inits, opset: int = 13) -> Path:
    g = helper.make_graph(nodes, name, inputs, outputs, initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(m)
    path = tmp_path / f"{name}.onnx"
    onnx.save(m, str(path))
    return path


def view_model(tmp_path: Path) -> Path:
    """conv -> a; Reshape(a) and Flatten(a) are views of a; their sum -> MatMul."""
    nodes = [
        _conv("x", "w", "a"),
        helper.make_node("Reshape", ["a", "shape"], ["v"], name="reshape"),
        helper.make_node("Flatten", ["a"], ["f"], name="flatten"),
        helper.make_node("Add", ["v", "f"], ["s"], name="add"),
        helper.make_node("MatMul", ["s", "m"], ["y"], name="mm"),
    ]
    inits = [_w("w", 4, 2, 3, 3), _i64("shape", [1, 64]), _w("m", 64, 8)]
    return _save(tmp_path, "views", nodes, [_f32("x", (1, 2, 4, 4))], [_f32("y", (1, 8))], inits)


def inplace_model(tmp_path: Path) -> Path:
    """conv -> c; Relu(c) and then Add(r, bias) overwrite their input."""
    nodes = [
        _conv("x", "w", "c"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Add", ["r", "b"], ["s"], name="add"),
        _conv("s", "w2", "y"),
    ]
    inits = [_w("w", 4, 2, 3, 3), _w("b", 1, 4, 1, 1), _w("w2", 3, 4, 3, 3)]
    return _save(tmp_path, "inplace", nodes, [_f32("x", (1, 2, 4, 4))], [_f32("y", (1, 3, 4, 4))], inits)


def concat_model(tmp_path: Path) -> Path:
    """Two convs produce their outputs straight into their channel slots of a concat."""
    nodes = [
        _conv("x", "wp", "p"),
        _conv("x", "wq", "q"),
        helper.make_node("Concat", ["p", "q"], ["z"], name="cat", axis=1),
        _conv("z", "wz", "y"),
    ]
    inits = [_w("wp", 2, 2, 3, 3), _w("wq", 3, 2, 3, 3), _w("wz", 2, 5, 3, 3)]
    return _save(tmp_path, "concat", nodes, [_f32("x", (1, 2, 4, 4))], [_f32("y", (1, 2, 4, 4))], inits)


def split_model(tmp_path: Path) -> Path:
    """conv -> c (6 channels); Split into 2 + 4 channels: both halves are ranges of c's bytes."""
    nodes = [
        _conv("x", "w", "c"),
        helper.make_node("Split", ["c", "split"], ["s1", "s2"], name="split", axis=1),
        _conv("s1", "w1", "y1"),
        _conv("s2", "w2", "y2"),
        helper.make_node("Add", ["y1", "y2"], ["y"], name="add"),
    ]
    inits = [_w("w", 6, 2, 3, 3), _i64("split", [2, 4]), _w("w1", 1, 2, 3, 3), _w("w2", 1, 4, 3, 3)]
    return _save(tmp_path, "split", nodes, [_f32("x", (1, 2, 4, 4))], [_f32("y", (1, 1, 4, 4))], inits)


C = 8  # channels of the tensor the Slice variants cut (shape 1 x C x 4 x 4)


def _slice_nodes(form: str, spec: dict) -> tuple[list, list]:
    """The nodes and initializers that make `s` = Slice(c) in the given `form` (how the
    starts / ends / axes / steps reach the node)."""
    if form == "attributes":  # Slice-1 (opset < 10)
        attrs = {k: spec[k] for k in ("starts", "ends", "axes") if k in spec}
        return [helper.make_node("Slice", ["c"], ["s"], name="slice", **attrs)], []
    nodes, inits, names = [], [], []
    for k in ("starts", "ends", "axes", "steps"):
        if k not in spec:
            names.append("")
            continue
        names.append(k)
        if form == "constant_nodes":
            nodes.append(helper.make_node("Constant", [], [k], value=_i64(f"{k}_v", spec[k])))
        elif form == "folded" and len(spec[k]) == 1:  # Unsqueeze(Constant scalar): a folded constant
            nodes.append(helper.make_node("Constant", [], [f"{k}_0"], value=_i64(f"{k}_v", spec[k][0])))
            nodes.append(helper.make_node("Unsqueeze", [f"{k}_0", "zero"], [k]))
        else:
            inits.append(_i64(k, spec[k]))
    if form == "folded":
        inits.append(_i64("zero", [0]))
    while names and not names[-1]:
        names.pop()
    return [*nodes, helper.make_node("Slice", ["c", *names], ["s"], name="slice")], inits


def slice_model(tmp_path: Path, form: str, spec: dict, out_shape) -> Path:
    """conv -> c (1 x C x 4 x 4); s = Slice(c) by `spec`; conv(s) -> y."""
    nodes, inits = _slice_nodes(form, spec)
    nodes = [_conv("x", "w", "c"), *nodes, _conv("s", "w2", "y")]
    inits += [_w("w", C, 2, 3, 3), _w("w2", 3, out_shape[1], 3, 3)]
    y_shape = (1, 3, *out_shape[2:])
    opset = 9 if form == "attributes" else 13
    return _save(tmp_path, f"slice_{form}", nodes, [_f32("x", (1, 2, 4, 4))], [_f32("y", y_shape)], inits, opset)


BIG = 2**62
# (spec, output shape of the slice, the (axis, start) the importer must resolve, or None)
SLICES = {
    "plain": ({"starts": [2], "ends": [6], "axes": [1]}, (1, 4, 4, 4), (1, 2)),
    "negative": ({"starts": [-6], "ends": [-2], "axes": [-3]}, (1, 4, 4, 4), (1, 2)),
    "clamped": ({"starts": [5], "ends": [BIG], "axes": [1], "steps": [1]}, (1, 3, 4, 4), (1, 5)),
    "default_axes": ({"starts": [0, 3], "ends": [1, 7]}, (1, 4, 4, 4), (1, 3)),
    "one_axis_cut_of_two": ({"starts": [0, 1], "ends": [BIG, 4], "axes": [3, 1]}, (1, 3, 4, 4), (1, 1)),
    "non_contiguous_axis": ({"starts": [1], "ends": [3], "axes": [2]}, (1, C, 2, 4), (2, 1)),
    "step_2": ({"starts": [0], "ends": [C], "axes": [1], "steps": [2]}, (1, 4, 4, 4), None),
    "two_axes_cut": ({"starts": [2, 1], "ends": [6, 3], "axes": [1, 2]}, (1, 4, 2, 4), None),
    "reversed": ({"starts": [-1], "ends": [-C - 1], "axes": [1], "steps": [-1]}, (1, C, 4, 4), None),
}


def _slice_cases():
    for key, (spec, shape, want) in SLICES.items():
        forms = ["initializers", "constant_nodes", "folded"]
        if "steps" not in spec:
            forms.append("attributes")
        for form in forms:
            yield pytest.param(form, spec, shape, want, id=f"{key}-{form}")


@pytest.mark.parametrize(("form", "spec", "shape", "want"), _slice_cases())
def test_onnx_slice_attribute_is_what_onnxruntime_slices(tmp_path, form, spec, shape, want):
    """The importer's (axis, start) names exactly the elements onnxruntime's Slice returns."""
    import onnxruntime as ort

    path = slice_model(tmp_path, form, spec, shape)
    g = load_onnx(path)
    op = next(o for o in g.ops if o.type == "Slice")
    assert op.attrs.get("slice") == want
    assert g.tensors["s"].shape == shape
    if want is None:
        return
    m = onnx.load(str(path))
    m.graph.output.append(helper.make_tensor_value_info("c", TensorProto.FLOAT, None))
    m.graph.output.append(helper.make_tensor_value_info("s", TensorProto.FLOAT, None))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    c, s = sess.run(["c", "s"], {"x": RNG.standard_normal((1, 2, 4, 4)).astype(np.float32)})
    axis, start = want
    np.testing.assert_array_equal(np.take(c, range(start, start + shape[axis]), axis=axis), s)


@pytest.mark.parametrize("form", ["initializers", "constant_nodes", "folded", "attributes"])
@pytest.mark.parametrize("key", ["plain", "negative", "clamped", "one_axis_cut_of_two"])
def test_onnx_slice_shared_plans_match_onnxruntime(tmp_path, key, form):
    spec, shape, _ = SLICES[key]
    path = slice_model(tmp_path, form, spec, shape)
    plan = shared_plan(load_onnx(path))
    assert "slice" in share_kinds(plan)
    assert_runs_like_onnxruntime(plan, path)


@pytest.mark.parametrize(
    ("build", "kind"),
    [(view_model, "view"), (inplace_model, "inplace"), (concat_model, "concat"), (split_model, "slice")],
)
def test_each_relation_kind_runs_like_onnxruntime(tmp_path, build, kind):
    path = build(tmp_path)
    plan = shared_plan(load_onnx(path))
    assert kind in share_kinds(plan), share_kinds(plan)
    assert_runs_like_onnxruntime(plan, path)
    unshared = get_solver("auto")(load_onnx(path), Target("t", None, share="none"), OPTS)
    assert plan.metrics.peak_l1_bytes < unshared.metrics.peak_l1_bytes  # the sharing saves bytes


def spill_model(tmp_path: Path) -> Path:
    """s = a slice of a, read first and again at the end, av a view of a read at the end:
    under a budget a's storage is stored, freed and loaded again, and its slice and view
    are named again in the reloaded bytes (alias loads, no traffic)."""
    convs = [("s", "w1", "b1"), ("b1", "w2", "b2"), ("b2", "w3", "b3"), ("b3", "w4", "b4")]
    nodes = [
        _conv("x", "w0", "a"),
        helper.make_node("Slice", ["a", "st", "en", "ax"], ["s"], name="slice"),
        helper.make_node("Reshape", ["a", "shape_a"], ["av"], name="reshape_a"),
        *(_conv(*c) for c in convs),
        helper.make_node("Add", ["b4", "s"], ["y0"], name="add"),
        helper.make_node("Reshape", ["y0", "shape_y"], ["y0v"], name="reshape_y"),
        helper.make_node("Concat", ["y0v", "av"], ["y"], name="cat", axis=1),
    ]
    inits = [_w("w0", 8, 2, 3, 3, scale=0.2), _i64("st", [2]), _i64("en", [6]), _i64("ax", [1])]
    inits += [_i64("shape_a", [1, 512]), _i64("shape_y", [1, 256]), _w("w1", 16, 4, 3, 3, scale=0.2)]
    inits += [_w("w2", 16, 16, 3, 3, scale=0.2), _w("w3", 16, 16, 3, 3, scale=0.2), _w("w4", 4, 16, 3, 3, scale=0.2)]
    return _save(tmp_path, "spill", nodes, [_f32("x", (1, 2, 8, 8))], [_f32("y", (1, 768))], inits)


@pytest.mark.parametrize("solver", ["auto", "spill-belady"])
def test_spilled_slices_and_views_are_named_again_and_run_like_onnxruntime(tmp_path, solver):
    path = spill_model(tmp_path)
    g = load_onnx(path)
    roomy = shared_plan(g)
    plan = get_solver(solver)(g, SHARE_ALL.with_budget(roomy.metrics.arena_bytes * 9 // 10), OPTS)
    assert plan.spills and plan.metrics.arena_bytes < roomy.metrics.arena_bytes
    assert any(s.kind == "L" and any(x.kind == "slice" for x in s.shares) for s in plan.stages)
    assert_runs_like_onnxruntime(plan, path)
    assert execute(plan, path).traffic_bytes == plan.metrics.traffic_bytes  # the alias loads move nothing
    # the C header marks them 'A' (name the bytes, copy nothing), the real loads 'L'
    from planner.export.c_header import export_c_header

    header = export_c_header(plan)
    aliases = sum(1 for s in plan.stages if s.kind == "L" and s.shares)
    loads = sum(1 for s in plan.stages if s.kind == "L" and not s.shares)
    assert header.count("{'A', ") == aliases and header.count("{'L', ") == loads


# -- illegal sharing: refused by the simulator, garbage when run anyway ------------------------
def relocate(stages: list[Stage], t: str, offset: int) -> list[Stage]:
    """The stages with tensor t produced at `offset`, and everything declared in t's bytes
    (views, slices, in-place outputs of t, transitively) moved along with it."""
    moved = {t: offset}
    out = []
    for s in stages:
        if s.kind == "R" and s.offsets:
            offs = dict(s.offsets)
            for x in s.shares:
                if x.parent in moved and x.kind != "concat":
                    moved[x.child] = moved[x.parent] + x.displacement
            offs.update({n: moved[n] for n in offs if n in moved})
            s = dataclasses.replace(s, offsets=offs)
        out.append(s)
    return out


def write_in_place(plan: Plan, op: str, parent: str) -> Plan:
    """`plan` with op `op` declared to write its output in place over `parent` (at parent's offset)."""
    stages = list(plan.stages)
    i = next(k for k, s in enumerate(stages) if s.kind == "R" and s.name == op)
    child = plan.graph.op(op).outputs[0]
    at = next(s.offsets[parent] for s in stages if s.kind == "R" and s.offsets and parent in s.offsets)
    stages = relocate(stages, child, at)
    stages[i] = dataclasses.replace(stages[i], shares=(*stages[i].shares, Share("inplace", op, child, parent)))
    return dataclasses.replace(plan, stages=stages)


def two_readers_model(tmp_path: Path) -> Path:
    """c is read by Relu and by Sigmoid: neither may overwrite it (the other still reads it)."""
    nodes = [
        _conv("x", "w", "c"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Sigmoid", ["c"], ["g"], name="sigmoid"),
        helper.make_node("Add", ["r", "g"], ["s"], name="add"),
        _conv("s", "w2", "y"),
    ]
    inits = [_w("w", 4, 2, 3, 3), _w("w2", 3, 4, 3, 3)]
    return _save(tmp_path, "two_readers", nodes, [_f32("x", (1, 2, 4, 4))], [_f32("y", (1, 3, 4, 4))], inits)


def view_then_overwrite_model(tmp_path: Path) -> Path:
    """v is a view of c; Relu(c) must not overwrite c while v is still to be read."""
    nodes = [
        _conv("x", "w", "c"),
        helper.make_node("Flatten", ["c"], ["v"], name="flatten_c"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Flatten", ["r"], ["rv"], name="flatten_r"),
        helper.make_node("Sub", ["v", "rv"], ["s"], name="sub"),
        helper.make_node("MatMul", ["s", "m"], ["y"], name="mm"),
    ]
    inits = [_w("w", 4, 2, 3, 3), _w("m", 64, 8)]
    return _save(tmp_path, "view_overwrite", nodes, [_f32("x", (1, 2, 4, 4))], [_f32("y", (1, 8))], inits)


def _first_run(plan: Plan, ops: list[str]) -> str:
    return next(s.name for s in plan.stages if s.kind == "R" and s.name in ops)


def _assert_refused_and_wrong(bad: Plan, path: Path, reason: str) -> None:
    sim = simulate(bad.graph, bad.target, bad.stages)
    assert any(reason in v for v in sim.violations), sim.violations
    with pytest.raises(PlanError):
        execute(bad, path)
    assert not execute(bad, path, unchecked=True).outputs_match


def test_in_place_write_over_a_tensor_still_read_is_refused_and_computes_garbage(tmp_path):
    path = two_readers_model(tmp_path)
    plan = shared_plan(load_onnx(path))
    assert_runs_like_onnxruntime(plan, path)  # the valid plan (an in-place Add) is right
    first = _first_run(plan, ["relu", "sigmoid"])  # the other one still reads c after it
    _assert_refused_and_wrong(write_in_place(plan, first, "c"), path, "still reads")


def test_overwriting_the_parent_of_a_live_view_is_refused_and_computes_garbage(tmp_path):
    path = view_then_overwrite_model(tmp_path)
    plan = shared_plan(load_onnx(path))
    assert ("view", "v", "c") in {(x.kind, x.child, x.parent) for s in plan.stages for x in s.shares}
    assert_runs_like_onnxruntime(plan, path)
    bad = write_in_place(plan, "relu", "c")
    reason = "which sub still reads" if _first_run(plan, ["flatten_c", "relu"]) == "flatten_c" else "still reads"
    _assert_refused_and_wrong(bad, path, reason)


def test_a_wrong_slice_attribute_computes_garbage(tmp_path):
    """Why the importer must get (axis, start) right: a slice declared one channel off is
    a legal-looking share the executor trusts, and the outputs are wrong."""
    spec, shape, _ = SLICES["plain"]
    path = slice_model(tmp_path, "initializers", spec, shape)
    g = load_onnx(path)
    op = next(o for o in g.ops if o.type == "Slice")
    op.attrs["slice"] = (1, 3)  # really (1, 2)
    plan = shared_plan(g)
    assert "slice" in share_kinds(plan) and simulate(plan.graph, plan.target, plan.stages).ok
    assert not execute(plan, path).outputs_match


# -- TFLite: the exported shared plan in TFLite Micro ------------------------------------------
WAKEWORD_INSTALL = "pip install --no-deps pymicro-wakeword==2.5.0"
WAKEWORDS = ["alexa", "hey_jarvis", "hey_mycroft", "okay_nabu"]
# their STRIDED_SLICE ops cut whole 16-byte-aligned rows (hey_jarvis's rows are 30 / 60 bytes)
WAKEWORD_SLICES = {"alexa": 5, "hey_jarvis": 0, "hey_mycroft": 5, "okay_nabu": 8}


def _wakeword(name: str) -> Path:
    pytest.importorskip("tflite_micro", reason="needs the TFLite Micro wheel: pip install --no-deps tflite-micro")
    if not zoo.is_available(name):
        pytest.skip(f"zoo model {name} is not installed ({WAKEWORD_INSTALL})")
    return zoo.locate(name)


@pytest.mark.parametrize("name", WAKEWORDS)
def test_wakeword_shared_plan_runs_in_tflm(name):
    from planner.tflm_check import check_in_tflm

    path = _wakeword(name)
    plan = shared_plan(zoo.load_model(name))
    assert plan.shares_bytes
    assert plan.solver.facts["shares"].get("slice", 0) == WAKEWORD_SLICES[name]
    unshared = get_solver("auto")(zoo.load_model(name), Target("t", None, share="none"), OPTS)
    assert plan.metrics.arena_bytes <= unshared.metrics.arena_bytes
    check = check_in_tflm(plan, path, invocations=10)
    assert check.outputs_equal, check.first_difference
    assert check.head_within_plan, (check.tflm_arena_bytes_planned, plan.metrics.arena_bytes)
    assert check.tflm_arena_bytes_planned < check.tflm_arena_bytes_original


@pytest.mark.parametrize("name", ["alexa", "okay_nabu"])
def test_wakeword_slice_attributes_are_what_tflm_computes(name):
    """TFLM runs a STRIDED_SLICE's kernel even when its output aliases its input (a self-copy
    when the attribute is right, and for a start too small a harmless memmove), so identical
    outputs alone do not prove the attribute: compare it with the kernel's own results on the
    real model, every tensor preserved, after a few stateful invocations."""
    from tflite_micro.python.tflite_micro import runtime

    path = _wakeword(name)
    g = zoo.load_model(name)
    index = g.source.details.tensor_index
    it = runtime.Interpreter.from_file(str(path), intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors)
    rng = np.random.default_rng(0)
    for _ in range(4):
        it.set_input(rng.integers(0, 127, size=(1, 3, 40)).astype(np.int8), 0)
        it.invoke()
    cut = [o for o in g.ops if "slice" in o.attrs]
    assert len(cut) >= 6
    for o in cut:
        x, y = (it.GetTensor(index[t], 0)["tensor_data"] for t in (o.inputs[0], o.outputs[0]))
        axis, start = o.attrs["slice"]
        n = y.shape[axis]
        assert np.array_equal(np.take(x, range(start, start + n), axis=axis), y), o.name
        for other in (start - 1, start + 1):  # the data tells a shifted slice apart
            if 0 <= other <= x.shape[axis] - n:
                assert not np.array_equal(np.take(x, range(other, other + n), axis=axis), y), o.name


def _tfl_tensor(shape, type_name="INT8", buffer=0):
    from planner.models.tflite import schema

    return SimpleNamespace(shape=list(shape), type=getattr(schema().TensorType, type_name), buffer=buffer)


def _tfl_slice(op_type: str, shape, params, out_shape, options=None):
    """A fake model, op and tensor list: one STRIDED_SLICE or SLICE of a `shape` tensor
    reading `params` (begin, end, strides or begin, size) from constant int32 buffers."""
    tens = [_tfl_tensor(shape)]
    buffers = [SimpleNamespace(data=None, offset=0, size=0)]
    for p in params:
        buffers.append(SimpleNamespace(data=np.frombuffer(np.asarray(p, "<i4").tobytes(), np.uint8), offset=0, size=0))
        tens.append(_tfl_tensor([len(p)], "INT32", len(buffers) - 1))
    tens.append(_tfl_tensor(out_shape))
    op = SimpleNamespace(inputs=list(range(len(params) + 1)), outputs=[len(tens) - 1], builtinOptions=options)
    return SimpleNamespace(buffers=buffers), op, tens


def _strided(bm=0, em=0, **masks):
    fields = {"beginMask": bm, "endMask": em, "ellipsisMask": 0, "newAxisMask": 0, "shrinkAxisMask": 0, "offset": False}
    return SimpleNamespace(**{**fields, **masks})


SHAPE = (1, 9, 1, 32)
TFL_CASES = {
    "mask_and_negative": ("STRIDED_SLICE", [[0, -4, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]], _strided(13, 15), True),
    "plain": ("STRIDED_SLICE", [[0, 1, 0, 0], [1, 9, 1, 32], [1, 1, 1, 1]], _strided(), True),
    "clamped_end": ("STRIDED_SLICE", [[0, 2, 0, 0], [1, 99, 1, 32], [1, 1, 1, 1]], _strided(), True),
    "negative_end": ("STRIDED_SLICE", [[0, 0, 0, 0], [1, -2, 1, 32], [1, 1, 1, 1]], _strided(), True),
    "identity": ("STRIDED_SLICE", [[0, 0, 0, 0], [1, 9, 1, 32], [1, 1, 1, 1]], _strided(), False),
    "stride_2": ("STRIDED_SLICE", [[0, 1, 0, 0], [1, 9, 1, 32], [1, 2, 1, 1]], _strided(), False),
    "shrink": ("STRIDED_SLICE", [[0, 1, 0, 0], [1, 2, 1, 32], [1, 1, 1, 1]], _strided(shrinkAxisMask=2), False),
    "two_axes": ("STRIDED_SLICE", [[0, 1, 0, 4], [1, 9, 1, 32], [1, 1, 1, 1]], _strided(), False),
    "slice": ("SLICE", [[0, 3, 0, 0], [1, 4, -1, -1]], None, True),
    "slice_to_end": ("SLICE", [[0, 0, 0, 8], [-1, -1, -1, -1]], None, True),
}


def _python_slice(op_type: str, params, opt) -> tuple[slice, ...]:
    """The numpy slicing a step-1 STRIDED_SLICE / SLICE means (the oracle for the importer)."""
    if op_type == "SLICE":
        begin, size = params
        return tuple(slice(b, None if n == -1 else b + n) for b, n in zip(begin, size, strict=True))
    begin, end, _ = params
    return tuple(
        slice(None if opt.beginMask >> i & 1 else b, None if opt.endMask >> i & 1 else e)
        for i, (b, e) in enumerate(zip(begin, end, strict=True))
    )


@pytest.mark.parametrize("case", TFL_CASES)
def test_tflite_slice_attribute_is_what_the_kernel_slices(case):
    pytest.importorskip("tflite_micro", reason="needs the TFLite Micro wheel: pip install --no-deps tflite-micro")
    from planner.models.tflite import slice_spec

    op_type, params, opt, shares = TFL_CASES[case]
    x = np.arange(np.prod(SHAPE)).reshape(SHAPE)
    y = x[_python_slice(op_type, params, opt)]
    if opt is not None and opt.shrinkAxisMask:
        y = y.squeeze(1)
    model, op, tens = _tfl_slice(op_type, SHAPE, params, y.shape, opt)
    spec = slice_spec(model, op, op_type, tens)
    if not shares:
        assert spec is None
        return
    axis, start = spec
    np.testing.assert_array_equal(np.take(x, range(start, start + y.shape[axis]), axis=axis), y)


# -- plan files ----------------------------------------------------------------------------------
def test_a_shared_plan_file_rechecks_and_a_tampered_share_fails(tmp_path, capsys):
    spec, shape, _ = SLICES["negative"]
    path = slice_model(tmp_path, "initializers", spec, shape)
    plan = shared_plan(load_onnx(path))
    assert {"slice"} <= share_kinds(plan)
    good = tmp_path / "good.plan.json"
    plan.write(good)
    back = read_plan(good)
    assert back.shares_bytes and back.stages == plan.stages
    assert next(o for o in back.graph.ops if o.type == "Slice").attrs["slice"] == (1, 2)
    assert simulate(back.graph, back.target, back.stages).ok
    assert main(["show", str(good)]) == 0
    d = json.loads(good.read_text())
    stage = next(s for s in d["stages"] if any(x["kind"] == "slice" for x in s.get("shares", ())))
    share = next(x for x in stage["shares"] if x["kind"] == "slice")
    share["at"] += 64  # one channel further in
    (tmp_path / "moved.json").write_text(json.dumps(d))
    capsys.readouterr()
    assert main(["show", str(tmp_path / "moved.json")]) == 1
    assert "the relation puts it at" in capsys.readouterr().err
    d = json.loads(good.read_text())
    next(o for o in d["ops"] if o["type"] == "Slice")["slice"] = [1, 3]  # the file lies about the slice
    (tmp_path / "lie.json").write_text(json.dumps(d))
    assert main(["show", str(tmp_path / "lie.json")]) == 1
