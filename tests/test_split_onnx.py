"""ONNX splitting (planner/models/split_onnx.py): row stripes and output-channel chunks of
toy ONNX models give onnxruntime's outputs of the original model (bit-identical where the
runtime runs the graphs op by op), their plans run in the executor, the record round-trips
through a plan file, and `planner export --format onnx` writes the model the plan is of."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from planner.cli import main
from planner.models import split_onnx as so
from planner.models.onnx import load_onnx


@pytest.fixture(autouse=True, scope="module")
def _cache(tmp_path_factory):
    """Split models are written to a cache of this module's own."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PLANNER_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def _init(rng, name: str, shape) -> onnx.TensorProto:
    return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)


def chain_model(path: Path, opset: int = 13, count_include_pad: int = 0) -> Path:
    """Conv (pads) -> Relu -> depthwise Conv (SAME_UPPER, stride 2) -> MaxPool (SAME_LOWER) ->
    residual Add -> Pad -> Conv (dilation 2 along H, uneven pads) -> AveragePool (pads) -> Add
    of a per-channel constant -> Flatten: every row map and border case of a stripe."""
    rng = np.random.default_rng(0)
    inits = [
        _init(rng, "w1", (8, 3, 3, 3)),
        _init(rng, "b1", (8,)),
        _init(rng, "w2", (8, 1, 3, 3)),
        _init(rng, "w3", (6, 8, 3, 3)),
        _init(rng, "bias", (6, 1, 1)),
    ]
    pad = [0, 0, 1, 2, 0, 0, 2, 1]
    pad_kw = {"pads": pad} if opset < 11 else {}
    pad_in = ["e"] if opset < 11 else ["e", "pads"]
    if opset >= 11:
        inits.append(numpy_helper.from_array(np.array(pad, np.int64), "pads"))
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["a"], "conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["b"], "relu1"),
        helper.make_node("Conv", ["b", "w2"], ["c"], "dw", group=8, auto_pad="SAME_UPPER", strides=[2, 2]),
        helper.make_node("MaxPool", ["c"], ["d"], "mp", kernel_shape=[2, 3], auto_pad="SAME_LOWER"),
        helper.make_node("Add", ["d", "c"], ["e"], "add"),
        helper.make_node("Pad", pad_in, ["f"], "pad", **pad_kw),
        helper.make_node("Conv", ["f", "w3"], ["g"], "conv3", dilations=[2, 1], pads=[2, 1, 1, 0]),
        helper.make_node(
            "AveragePool",
            ["g"],
            ["h"],
            "ap",
            kernel_shape=[3, 3],
            pads=[1, 1, 1, 1],
            count_include_pad=count_include_pad,
        ),
        helper.make_node("Add", ["h", "bias"], ["y"], "addb"),
        helper.make_node("Flatten", ["y"], ["out"], "flat"),
    ]
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 12])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
        initializer=inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), str(path))
    return path


def mlp_model(path: Path, n_in: int = 256, n_hidden: int = 512) -> Path:
    """Gemm (B [K, N], bias [N]) -> Relu -> Gemm (transB, bias [1, N]) -> MatMul (B [K, N])."""
    rng = np.random.default_rng(0)
    inits = [
        _init(rng, "w1", (n_in, n_hidden)),
        _init(rng, "b1", (n_hidden,)),
        _init(rng, "w2", (64, n_hidden)),
        _init(rng, "b2", (1, 64)),
        _init(rng, "w3", (64, 10)),
    ]
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], "fc1"),
        helper.make_node("Relu", ["h"], ["r"], "relu"),
        helper.make_node("Gemm", ["r", "w2", "b2"], ["z"], "fc2", transB=1, alpha=0.5, beta=2.0),
        helper.make_node("MatMul", ["z", "w3"], ["y"], "fc3"),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n_in])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        initializer=inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def _run(model, x: np.ndarray, optimise: bool = False) -> np.ndarray:
    """onnxruntime's output; without `optimise` node by node as written (no graph rewrites)."""
    so_ = ort.SessionOptions()
    if not optimise:
        so_.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    sess = ort.InferenceSession(data, so_, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> Path:
    return chain_model(tmp_path_factory.mktemp("onnx") / "chain.onnx")


@pytest.fixture(scope="module")
def mlp(tmp_path_factory) -> Path:
    return mlp_model(tmp_path_factory.mktemp("onnx") / "mlp.onnx")


@pytest.mark.parametrize("opset,count_include_pad", [(13, 0), (13, 1), (9, 0)])
def test_every_stripe_count_of_the_chain_gives_the_original_outputs_bit_identical(tmp_path, opset, count_include_pad):
    path = chain_model(tmp_path / "chain.onnx", opset, count_include_pad)
    g = load_onnx(path)
    found = so.regions(g)
    rows = {r.ops for r in found if r.kind == "rows"}
    assert {(0, 1, 2, 3, 4, 5, 6, 7, 8), (2, 3, 4), (5,), (6, 7)} <= rows  # chain, residual, Pad, pool
    x = np.random.default_rng(1).standard_normal((1, 3, 16, 12)).astype(np.float32)
    ref = _run(path, x)
    checked = 0
    for r in found:
        if r.kind != "rows" or r.ops not in {(0, 1, 2, 3, 4, 5, 6, 7, 8), (2, 3, 4), (5,), (6, 7), (0, 1)}:
            continue
        for k in range(2, g.tensors[r.output].shape[2] + 1):
            if so.region_problem(g, r, k):
                continue
            out = _run(so.split_model(g, [so.OnnxSplit(r, k)]), x)
            assert np.array_equal(out, ref), (r.ops, k)
            checked += 1
    assert checked >= 25


def test_a_stripe_of_padding_only_and_unsplittable_ops_are_refused(chain, tmp_path):
    g = load_onnx(chain)
    pad = so.OnnxRegion((5,), "e", "f")
    assert "only padding" in so.region_problem(g, pad, 11)
    assert so.region_problem(g, so.OnnxRegion((9,), "y", "out"), 2)  # Flatten
    assert "not ops" in so.region_problem(g, so.OnnxRegion((99,), "x", "a", "channels"), 2)  # a plan file's
    assert "not both" in so.region_problem(g, so.OnnxRegion((0,), "nope", "a"), 2)
    assert "used outside" in so.region_problem(g, so.OnnxRegion((0, 1), "x", "a"), 2)
    with pytest.raises(so.SplitError):
        so.split_model(g, [so.OnnxSplit(pad, 11)])
    # a pooling that rounds its size up, a Pad by reflection: refused with a reason
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("MaxPool", ["x"], ["a"], "mp", kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
        helper.make_node("Pad", ["a", "p"], ["y"], "pad", mode="reflect"),
    ]
    model = helper.make_model(
        helper.make_graph(
            nodes,
            "bad",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 7, 7])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
            initializer=[
                numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "p"),
                _init(rng, "u", (1,)),
            ],
        ),
        opset_imports=[helper.make_opsetid("", 13)],
    )
    onnx.save(model, str(tmp_path / "bad.onnx"))
    bad = load_onnx(tmp_path / "bad.onnx")
    assert "ceil_mode" in so.region_problem(bad, so.OnnxRegion((0,), "x", "a"), 2)
    assert "reflection" in so.region_problem(bad, so.OnnxRegion((1,), "a", "y"), 2)
    assert so.regions(bad) == []


def test_channel_chunks_of_gemm_matmul_and_conv_give_the_original_outputs(mlp, chain):
    g = load_onnx(mlp)
    found = [r for r in so.regions(g) if r.kind == "channels"]
    assert [r.ops for r in found] == [(0,), (2,), (3,)]
    x = np.random.default_rng(2).standard_normal((1, 256)).astype(np.float32)
    ref = _run(mlp, x)
    for r in found:
        for k in (2, 3, 7, 10):
            m = so.split_model(g, [so.OnnxSplit(r, k)])
            assert np.array_equal(_run(m, x), ref), (r.ops, k)
            assert so.estimate(g, [so.OnnxSplit(r, k)])[0] == 0  # no MAC more
    both = so.split_model(g, [so.OnnxSplit(found[0], 4), so.OnnxSplit(found[1], 3)])
    assert np.array_equal(_run(both, x), ref)
    # each chunk has initializers of its own, the whole weights are gone
    inits = {i.name for i in both.graph.initializer}
    assert {"w1/chunk0", "w1/chunk3", "b1/chunk3", "w2/chunk2", "b2/chunk0"} <= inits and "w1" not in inits
    c = load_onnx(chain)
    conv = so.OnnxRegion((6,), "f", "g", "channels")
    xc = np.random.default_rng(3).standard_normal((1, 3, 16, 12)).astype(np.float32)
    # (a Conv of few output channels can take another MLAS kernel: the last bit may differ)
    for k in (2, 4, 6):
        out, ref = _run(so.split_model(c, [so.OnnxSplit(conv, k)]), xc), _run(chain, xc)
        assert np.abs(out - ref).max() <= 1e-6 * np.abs(ref).max(), k
    assert "grouped" in so.region_problem(c, so.OnnxRegion((2,), "b", "c", "channels"), 2)


def test_extra_macs_are_exact(chain):
    from planner.macs import total_macs

    g = load_onnx(chain)
    for ops, k in (((0, 1, 2, 3, 4, 5, 6, 7, 8), 3), ((2, 3, 4), 4), ((6, 7), 2)):
        r = next(r for r in so.regions(g) if r.ops == ops and r.kind == "rows")
        extra, (peak,) = so.estimate(g, [so.OnnxSplit(r, k)])
        split = so.load_split(g, [so.OnnxSplit(r, k)])
        assert total_macs(split) - total_macs(g) == extra > 0
        assert peak >= 2 * g.size(r.output)  # the join copies: stripes and output at once


def test_channel_chunks_are_joined_in_place_and_auto_uses_it(tmp_path):
    """In NCHW at batch 1 a channel range is contiguous: each chunk is its slot of the
    Concat's output (planner/sharing.py ``concat``), the simulator accepts it, and `auto`
    plans with it where the join would otherwise hold chunks and output at once."""
    from planner.execute import execute
    from planner.sharing import relations
    from planner.simulate import simulate
    from planner.solvers.base import SolveOptions
    from planner.solvers.registry import get_solver
    from planner.target import get_target

    path = mlp_model(tmp_path / "wide.onnx", n_in=16, n_hidden=8192)
    g = load_onnx(path)
    fc1 = next(r for r in so.regions(g) if r.kind == "channels" and r.ops == (0,))
    s = so.load_split(g, [so.OnnxSplit(fc1, 8)])
    assert sum(x.kind == "concat" and x.parent == "h" for x in relations(s)) == 8
    rows = [r for r in so.regions(g) if r.kind == "rows"]
    assert rows == []  # (1-D tensors have no rows)
    target = replace(get_target("unbounded"), share="all")  # (the CLI's default, --share all)
    plan = get_solver("auto")(s, target, SolveOptions(time_limit=5))
    assert simulate(plan.graph, plan.target, plan.stages).ok
    kinds = {x.kind for st in plan.stages for x in st.shares}
    assert "concat" in kinds
    assert plan.metrics.arena_bytes < 2 * g.size("h")  # the chunks never stand next to the whole output
    report = execute(plan, path)
    assert report.ok


def test_split_plans_run_and_the_record_round_trips_through_the_plan_file(chain, tmp_path):
    from planner.execute import execute
    from planner.plan import read_plan
    from planner.solvers.base import SolveOptions
    from planner.solvers.registry import get_solver
    from planner.target import get_target

    g = load_onnx(chain)
    r = next(r for r in so.regions(g) if r.ops == (0, 1, 2, 3, 4) and r.kind == "rows")
    s = so.load_split(g, [so.OnnxSplit(r, 3)])
    entry = s.source.transforms[-1].to_dict()
    assert entry["method"] == "onnx-stripes" and entry["splits"][0]["op_names"] == ["conv1", "relu1", "dw", "mp", "add"]
    assert s.source.path == g.source.path and s.source.sha256 == g.source.sha256
    plan = get_solver("auto")(s, get_target("unbounded"), SolveOptions(time_limit=3))
    plan.write(tmp_path / "p.json")
    back = read_plan(tmp_path / "p.json")
    assert so.recorded_splits(back.graph) == (so.OnnxSplit(r, 3),)
    again = so.reapply(load_onnx(chain), back.graph)
    assert set(again.op_index) == set(s.op_index)
    report = execute(back, chain)  # the executor imports, splits again, runs at the planned offsets
    assert report.ok
    # op by op, the split model computes every output element as the model does: bit for bit
    whole = execute(get_solver("auto")(g, get_target("unbounded"), SolveOptions(time_limit=3)), chain)
    assert all(np.array_equal(report.outputs[o], whole.outputs[o]) for o in g.outputs)


def test_cli_plans_splits_runs_and_exports_onnx(mlp, tmp_path, capsys):
    out = tmp_path / "mlp.plan.json"
    args = ["plan", str(mlp), "--weights", "load", "--objective", "peak", "--time-limit", "20", "--fuse", "none"]
    assert main([*args, "-o", str(out), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    split = [t for t in d["transforms"] if t["kind"] == "split"]
    assert split and split[0]["method"] == "onnx-stripes" and split[0]["splits"][0]["split"] == "channels"
    assert d["arena_bytes"] < d["solver"]["facts"]["unsplit_arena"] / 2  # one chunk of the weights in L1
    assert main(["run", str(out)]) == 0
    assert main(["show", str(out)]) == 0
    onnx_out = tmp_path / "mlp_split.onnx"
    assert main(["export", str(out), "--format", "onnx", "-o", str(onnx_out)]) == 0
    x = np.random.default_rng(5).standard_normal((1, 256)).astype(np.float32)
    assert np.allclose(_run(onnx_out, x, optimise=True), _run(mlp, x, optimise=True), rtol=1e-5, atol=1e-6)
    exported = onnx.load(str(onnx_out))
    assert any(n.name.startswith("fc1/chunk") for n in exported.graph.node)
    # a record that does not fit the model: one line, exit 2, for run and export alike
    bad = json.loads(out.read_text())
    next(t for t in bad["transforms"] if t["kind"] == "split")["splits"][0]["op_names"] = ["nope"]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    capsys.readouterr()
    for cmd in (["run"], ["export", "--format", "onnx", "-o", str(tmp_path / "bad.onnx")]):
        assert main([cmd[0], str(tmp_path / "bad.json"), *cmd[1:]]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "nope" in err[0]
    none = tmp_path / "none.json"
    assert main([*args, "--split", "none", "-o", str(none), "--json"]) == 0
    assert not [t for t in json.loads(capsys.readouterr().out).get("transforms", []) if t["kind"] == "split"]
    plain = tmp_path / "plain.onnx"
    assert main(["export", str(none), "--format", "onnx", "-o", str(plain)]) == 0
    assert plain.read_bytes() == mlp.read_bytes()  # an unsplit, unfused plan: the model as written


def test_export_onnx_refuses_a_tflite_plan_in_one_line(tmp_path, capsys):
    from tflite_models import schema, stripe_model

    schema()
    model = stripe_model(tmp_path / "toy.tflite", size=8)
    plan = tmp_path / "t.json"
    assert main(["plan", str(model), "--split", "none", "--time-limit", "2", "-o", str(plan), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["export", str(plan), "--format", "onnx", "-o", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--format tflite" in err[0]


def test_a_budget_below_the_model_as_imported_is_met_by_splitting(mlp, tmp_path, capsys):
    out = tmp_path / "b.json"
    base = ["plan", str(mlp), "--weights", "load", "--budget", "300KiB", "--time-limit", "10", "--fuse", "none"]
    assert main([*base, "--split", "none", "-o", str(out)]) == 1  # fc1's weights alone are 512 KiB
    capsys.readouterr()
    assert main([*base, "-o", str(out), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["arena_bytes"] <= 300 * 1024 and any(t["kind"] == "split" for t in d["transforms"])
    assert main(["run", str(out)]) == 0


@pytest.mark.parametrize(
    "mode,by_sizes", [(("asymmetric", "floor"), False), (("half_pixel", "round_prefer_floor"), True)]
)
def test_row_stripes_through_a_nearest_resize_give_the_original_outputs(tmp_path, mode, by_sizes):
    """Conv -> Resize x2 (nearest; by scales or by sizes) -> Conv: every stripe count exact."""
    rng = np.random.default_rng(0)
    inits = [_init(rng, "w1", (4, 3, 3, 3)), _init(rng, "w2", (2, 4, 3, 3))]
    if by_sizes:
        inits.append(numpy_helper.from_array(np.array([1, 4, 14, 10], np.int64), "sizes"))
        resize_in = ["a", "", "", "sizes"]
    else:
        inits.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"))
        resize_in = ["a", "", "scales"]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], "conv1", pads=[1, 1, 1, 1]),
        helper.make_node(
            "Resize",
            resize_in,
            ["u"],
            "up",
            mode="nearest",
            coordinate_transformation_mode=mode[0],
            nearest_mode=mode[1],
        ),
        helper.make_node("Conv", ["u", "w2"], ["y"], "conv2", pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "up",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 7, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 14, 10])],
        initializer=inits,
    )
    path = tmp_path / "up.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    g = load_onnx(path)
    found = {r.ops: r for r in so.regions(g) if r.kind == "rows"}
    assert {(0, 1, 2), (1, 2), (0, 1)} <= set(found)
    x = np.random.default_rng(1).standard_normal((1, 3, 7, 5)).astype(np.float32)
    ref = _run(path, x)
    checked = 0
    for ops in ((0, 1, 2), (1, 2), (0, 1)):
        for k in range(2, g.tensors[found[ops].output].shape[2] + 1):
            if so.region_problem(g, found[ops], k):
                continue
            assert np.array_equal(_run(so.split_model(g, [so.OnnxSplit(found[ops], k)]), x), ref), (ops, k)
            checked += 1
    assert checked >= 20
    # a resize that does not pick whole input rows is refused with the reason
    bad = helper.make_model(
        helper.make_graph(
            [helper.make_node("Resize", ["x", "", "s"], ["y"], "up", mode="linear")],
            "bad",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 7, 5])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 14, 10])],
            initializer=[numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "s")],
        ),
        opset_imports=[helper.make_opsetid("", 13)],
    )
    onnx.save(bad, str(tmp_path / "bad.onnx"))
    gb = load_onnx(tmp_path / "bad.onnx")
    assert "nearest-neighbour" in so.region_problem(gb, so.OnnxRegion((0,), "x", "y"), 2)
