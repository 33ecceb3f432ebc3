"""Run a plan for real on numpy arenas (DESIGN §5): the end-to-end proof that plans are sound.

L1 is ONE ``uint8`` array; every resident tensor is a typed view at its planned offset, so a
wrong offset makes one tensor overwrite a live neighbour and the outputs go wrong. LLB is a
dict of arrays (graph inputs, weights, stored tensors). Stages act literally:

- ``L t``  copies t's LLB bytes into its view;
- ``R o``  runs o's kernel on its input views (in-place weights are read from LLB) and writes
  every output INTO its view (``view[...] = result``);
- ``S t``  copies the view out to LLB;
- ``F t``  drops the view (the bytes stay: a later tensor at that offset overwrites them).

Kernels are not hand-written numerics: each op runs as a one-node ONNX model in
onnxruntime (one session per op, built once and cached by the `Executor`). If onnxruntime
cannot build a node alone, the node is retried with its weight inputs as initializers, then
with `onnx.reference.ReferenceEvaluator` (with fixes for its known faults, see
`_reference_fixes`). Control-flow nodes (If/Loop/Scan) run whole: the one-node model keeps
their body attributes and declares the outer-scope tensors the bodies read as inputs.

A fused graph (`planner.models.fuse`: the graph onnxruntime runs after its fusions) takes
its nodes (``com.microsoft::FusedConv`` and friends) and its weights (folded by
onnxruntime, e.g. Conv+BN merged) from onnxruntime's optimised model, which its fusion
record carries; its outputs are still compared with onnxruntime on the ORIGINAL model.

What is measured (never copied from the plan): bytes resident after every stage, the arena
high-water mark actually touched (max offset + bytes of any view read or written), and bytes
copied by L/S. The report puts them next to the simulator's metrics and next to
onnxruntime's outputs for the same inputs.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from planner.agreement import DEFAULT_ATOL, DEFAULT_RTOL  # re-exported: the executor compares with them
from planner.graph import Graph, Tensor
from planner.plan import Plan, Stage, plan_mismatch
from planner.simulate import check

CONTROL_FLOW = ("If", "Loop", "Scan")


class ExecutionError(ValueError):
    """The plan cannot be executed on this model (mismatch, missing tensor, bad shape)."""


# -- small helpers ----------------------------------------------------------------------------
def np_dtype(dtype: str | None) -> np.dtype:
    """A numpy dtype from a graph tensor's dtype string (numpy or ONNX spelling)."""
    if dtype is None:
        raise ExecutionError("tensor has no dtype (the importer must record one to execute)")
    try:
        return np.dtype(dtype)
    except TypeError:
        pass
    try:
        code = onnx.TensorProto.DataType.Value(dtype.upper())
        return np.dtype(helper.tensor_dtype_to_np_dtype(code))
    except (ValueError, KeyError, TypeError):
        raise ExecutionError(f"unsupported tensor dtype {dtype!r}") from None


def _shape(shape) -> str:
    return "x".join(map(str, shape)) or "scalar"


def onnx_elem_type(dtype: np.dtype) -> int:
    """The ONNX element type of a numpy dtype (for the one-node models' value infos)."""
    return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def _load_model(model: str | os.PathLike | onnx.ModelProto) -> tuple[onnx.ModelProto, str | None]:
    if isinstance(model, onnx.ModelProto):
        return model, None
    path = str(model)
    if not Path(path).is_file():
        raise ExecutionError(f"model file not found: {path}")
    return onnx.load(path), path


def random_inputs(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs for every graph input: floats ~ N(0, 1), ints in [0, 4), bools by coin flip.

    Small non-negative ints keep index-like inputs (token ids, lengths, sample rates used as
    selectors) within range for most models.
    """
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    fixed = graph.source.input_values if graph.source is not None else {}
    for name in graph.inputs:
        t = graph.tensors[name]
        if name in fixed:  # the importer pinned this input's value (e.g. a sample rate picking a branch)
            out[name] = np.asarray(fixed[name], dtype=np_dtype(t.dtype)).reshape(t.shape or ())
            continue
        if t.shape is None:
            raise ExecutionError(f"graph input {name!r} has no static shape; pin it with --input-shape")
        dt = np_dtype(t.dtype)
        shape = tuple(int(d) for d in t.shape)
        if dt.kind == "f":
            a = rng.standard_normal(shape).astype(dt)
        elif dt.kind in "iu":
            a = rng.integers(0, 4, size=shape).astype(dt)
        elif dt.kind == "b":
            a = rng.integers(0, 2, size=shape).astype(bool)
        else:
            raise ExecutionError(f"graph input {name!r}: cannot make random values of dtype {dt}")
        out[name] = a
    return out


def _ort():
    """onnxruntime, with its own logger silenced: its coloured ``[E:onnxruntime:...]`` and
    ``[W:...]`` lines (a kernel tried and dropped, a shape it merged) must not reach stderr,
    where every planner error is one line; failures reach us as exceptions anyway."""
    try:
        import onnxruntime as ort
    except ImportError as e:  # pragma: no cover - onnxruntime is a test dependency
        raise ExecutionError("onnxruntime is needed to execute plans: pip install onnxruntime") from e
    ort.set_default_logger_severity(4)  # fatal only
    return ort


def _session_options(threads: int = 1):
    ort = _ort()
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 4  # fatal only (see _ort)
    return so


# -- kernels ----------------------------------------------------------------------------------
def _reference_fixes(opset: int) -> list:
    """New ops for ReferenceEvaluator's known faults in onnx 1.23 (MODELS.md).

    - BatchNormalization with a `momentum` attribute runs in training mode: force inference.
    - Softmax / LogSoftmax / Hardmax below opset 13 must coerce the input to 2-D at `axis`
      (default 1) and normalise over the flattened tail, not over one axis.
    """
    from onnx.reference.op_run import OpRun

    class BatchNormalization(OpRun):
        op_domain = ""

        def _run(self, x, scale, bias, mean, var, epsilon=None, **_):  # noqa: ANN001
            eps = 1e-5 if epsilon is None else epsilon
            shape = [1, -1] + [1] * (x.ndim - 2)
            y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) * scale.reshape(shape)
            return ((y + bias.reshape(shape)).astype(x.dtype),)

    fixes: list = [BatchNormalization]
    if opset < 13:

        def coerced(kind: str):
            def _run(self, x, axis=None, **_):  # noqa: ANN001
                ax = 1 if axis is None else int(axis)
                ax = ax + x.ndim if ax < 0 else ax
                m = x.reshape(int(np.prod(x.shape[:ax], dtype=np.int64)), -1)
                if kind == "Hardmax":
                    y = np.zeros_like(m)
                    if m.size:
                        y[np.arange(m.shape[0]), m.argmax(axis=1)] = 1
                else:
                    z = m - m.max(axis=1, keepdims=True) if m.size else m
                    if kind == "Softmax":
                        e = np.exp(z)
                        y = e / e.sum(axis=1, keepdims=True)
                    else:
                        y = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
                return (y.reshape(x.shape).astype(x.dtype),)

            return type(kind, (OpRun,), {"op_domain": "", "_run": _run})

        fixes += [coerced("Softmax"), coerced("LogSoftmax"), coerced("Hardmax")]
    return fixes


@dataclass
class Kernel:
    """One op as a one-node model, runnable on arrays; built once per op."""

    op: str
    feeds: tuple[str, ...]  # model input names, in order (node inputs + outer-scope tensors)
    outputs: tuple[str, ...]
    backend: str  # "onnxruntime" | "onnxruntime-const" | "reference"
    runner: object = field(repr=False)
    constants: frozenset[str] = frozenset()  # inputs baked in as initializers

    def __call__(self, values: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Run the op on `values` (ExecutionError naming the op when its kernel fails)."""
        feed = {n: values[n] for n in self.feeds if n not in self.constants}
        try:
            res = self.runner.run(list(self.outputs), feed)  # same call for ORT sessions and ReferenceEvaluator
        except Exception as e:  # noqa: BLE001 - the kernel's own failure, as one line
            raise ExecutionError(f"op {self.op!r} failed in {self.backend}: {runtime_message(e)}") from None
        return [np.asarray(r) for r in res]


_ORT_PREFIX = re.compile(r"^\[ONNXRuntimeError\] : \d+ : [A-Z_]+ : ")
_ORT_SOURCE = re.compile(r"/onnxruntime_src/\S+:\d+ [^(]*\([^)]*\)(?: const)? ")


def runtime_message(e: BaseException) -> str:
    """onnxruntime's (or the reference evaluator's) error as one readable line: the
    ``[ONNXRuntimeError] : 1 : FAIL :`` prefix and the C++ source location dropped."""
    text = " ".join(str(e).split()) or type(e).__name__
    text = _ORT_SOURCE.sub("", _ORT_PREFIX.sub("", text))
    return text if len(text) <= 300 else text[:297] + "..."


def _one_node_model(
    model: onnx.ModelProto,
    node: onnx.NodeProto,
    feeds: Sequence[str],
    outputs: Sequence[str],
    dtypes: Mapping[str, np.dtype],
    constants: Mapping[str, np.ndarray] | None = None,
    shapes: Mapping[str, tuple[int, ...]] | None = None,
) -> onnx.ModelProto:
    constants = constants or {}
    inputs = [
        helper.make_tensor_value_info(n, onnx_elem_type(dtypes[n]), (shapes or {}).get(n))
        for n in feeds
        if n not in constants
    ]
    outs = [helper.make_tensor_value_info(n, onnx_elem_type(dtypes[n]), None) for n in outputs]
    inits = [numpy_helper.from_array(np.asarray(v), n) for n, v in constants.items()]
    g = helper.make_graph([node], f"node_{node.name or node.op_type}", inputs, outs, initializer=inits)
    opsets = list(model.opset_import)
    if node.domain not in {o.domain for o in opsets} | {"ai.onnx"}:  # e.g. com.microsoft for fused ops
        opsets.append(helper.make_opsetid(node.domain, 1))
    m = helper.make_model(g, opset_imports=opsets, ir_version=model.ir_version)
    m.functions.extend(model.functions)
    return m


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)


def build_kernel(model: onnx.ModelProto, graph: Graph, op_name: str, weights: Mapping[str, np.ndarray]) -> Kernel:
    """A kernel for one op: onnxruntime with fed inputs, then with weights as constants,
    then the ONNX reference evaluator (with its faults fixed)."""
    op = graph.op(op_name)
    node = op.attrs.get("node")
    if node is None:
        raise ExecutionError(f"op {op_name!r} has no ONNX node (the graph did not come from the ONNX importer)")
    node_inputs = [n for n in node.input if n]
    feeds = tuple(dict.fromkeys([*node_inputs, *op.inputs]))  # outer-scope tensors after the node's own
    outputs = tuple(op.outputs)
    dtypes: dict[str, np.dtype] = {}
    for n in (*feeds, *outputs):
        if n not in graph.tensors:
            raise ExecutionError(f"op {op_name!r}: tensor {n!r} is not in the graph")
        dtypes[n] = np_dtype(graph.tensors[n].dtype)
    ort = _ort()
    errors: list[str] = []
    m = _one_node_model(model, node, feeds, outputs, dtypes)
    try:
        sess = ort.InferenceSession(m.SerializeToString(), _session_options(), providers=["CPUExecutionProvider"])
        return Kernel(op_name, feeds, outputs, "onnxruntime", sess)
    except Exception as e:  # noqa: BLE001 - any build failure falls through to the next backend
        errors.append(f"onnxruntime: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
    consts = {n: weights[n] for n in feeds if graph.tensors[n].kind == "weight" and n in weights}
    if consts:
        m = _one_node_model(model, node, feeds, outputs, dtypes, consts)
        try:
            sess = ort.InferenceSession(m.SerializeToString(), _session_options(), providers=["CPUExecutionProvider"])
            return Kernel(op_name, feeds, outputs, "onnxruntime-const", sess, frozenset(consts))
        except Exception as e:  # noqa: BLE001
            errors.append(f"onnxruntime (constant weights): {str(e).splitlines()[0] if str(e) else type(e).__name__}")
    try:
        from onnx.reference import ReferenceEvaluator

        m = _one_node_model(model, node, feeds, outputs, dtypes)
        ev = ReferenceEvaluator(m, new_ops=_reference_fixes(_opset(model)))
        return Kernel(op_name, feeds, outputs, "reference", ev)
    except Exception as e:  # noqa: BLE001
        errors.append(f"reference: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
    raise ExecutionError(f"no kernel for op {op_name!r} ({op.type}): " + "; ".join(errors))


# -- weights and the reference run ------------------------------------------------------------
def _pinned_inputs_ok(model: onnx.ModelProto, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    init = {i.name for i in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in init]
    missing = [n for n in names if n not in inputs]
    if missing:
        raise ExecutionError(f"missing values for model inputs: {', '.join(missing)}")
    return {n: inputs[n] for n in names}


def weight_values(
    model: onnx.ModelProto,
    graph: Graph,
    inputs: Mapping[str, np.ndarray],
    known: Mapping[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Values of every weight tensor of the graph.

    Initializers are read directly; constant-folded tensors come from the importer's
    `fold_constants` when it provides them, and otherwise from onnxruntime running the model
    with those tensors as extra outputs (their values do not depend on the input values, only
    on the pinned shapes, which the inputs carry).
    """
    want = set(graph.weights)
    vals: dict[str, np.ndarray] = {n: np.asarray(v) for n, v in (known or {}).items() if n in want}
    for init in model.graph.initializer:
        if init.name in want:
            vals[init.name] = numpy_helper.to_array(init)
    missing = want - set(vals)
    # (a transformed graph's source names the original file, whose constants are not its own)
    if missing and graph.source is not None and graph.source.format == "onnx" and not graph.source.transforms:
        try:
            from planner.models.onnx import fold_constants

            folded = fold_constants(graph, names=sorted(missing))
            vals.update({n: np.asarray(folded[n]) for n in missing if n in folded})
        except Exception:  # noqa: BLE001 - any folding failure is recovered by the ORT run below
            pass
    missing = sorted(want - set(vals))
    if missing:
        for n in missing:  # Constant nodes are cheap to read directly
            for node in model.graph.node:
                if node.op_type == "Constant" and node.output and node.output[0] == n:
                    from onnx.reference import ReferenceEvaluator

                    vals[n] = np.asarray(ReferenceEvaluator(node).run(None, {})[0])
        missing = sorted(want - set(vals))
    if missing:
        m = onnx.ModelProto()
        m.CopyFrom(model)
        have = {o.name for o in m.graph.output}
        for n in missing:
            if n not in have:
                m.graph.output.append(
                    helper.make_tensor_value_info(n, onnx_elem_type(np_dtype(graph.tensors[n].dtype)), None)
                )
        ort = _ort()
        try:
            sess = ort.InferenceSession(m.SerializeToString(), _session_options(2), providers=["CPUExecutionProvider"])
            res = sess.run(missing, _pinned_inputs_ok(model, inputs))
        except Exception as e:  # noqa: BLE001
            raise ExecutionError(f"onnxruntime cannot compute the weights: {runtime_message(e)}") from None
        vals.update({n: np.asarray(v) for n, v in zip(missing, res, strict=True)})
    for n, v in vals.items():
        t = graph.tensors[n]
        if t.shape is not None and tuple(v.shape) != tuple(t.shape):
            raise ExecutionError(f"weight {n!r}: value has shape {v.shape}, graph says {tuple(t.shape)}")
    return vals


def reference_outputs(
    model: onnx.ModelProto, outputs: Sequence[str], inputs: Mapping[str, np.ndarray], threads: int = 1, repeat: int = 1
) -> tuple[dict[str, np.ndarray], float, float]:
    """onnxruntime's outputs for the whole model: (outputs, session build s, best run s)."""
    ort = _ort()
    t0 = time.perf_counter()
    try:
        sess = ort.InferenceSession(
            model.SerializeToString(), _session_options(threads), providers=["CPUExecutionProvider"]
        )
    except Exception as e:  # noqa: BLE001 - the model onnxruntime refuses: one line
        raise ExecutionError(f"onnxruntime cannot load the model: {runtime_message(e)}") from None
    build = time.perf_counter() - t0
    feed = _pinned_inputs_ok(model, inputs)
    best = float("inf")
    res = None
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        try:
            res = sess.run(list(outputs), feed)
        except Exception as e:  # noqa: BLE001
            raise ExecutionError(f"onnxruntime cannot run the model: {runtime_message(e)}") from None
        best = min(best, time.perf_counter() - t0)
    return {n: np.asarray(v) for n, v in zip(outputs, res, strict=True)}, build, best


# -- the report -------------------------------------------------------------------------------
@dataclass
class OutputCheck:
    """One graph output of ours against onnxruntime's: the error and the verdict."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    max_abs: float
    max_rel: float
    match: bool


@dataclass
class ExecutionReport:
    """What a run measured, next to what the plan claims and to onnxruntime's outputs: the
    end-to-end evidence that a plan is sound (`ok`)."""

    model: str
    solver: str
    outputs: dict[str, np.ndarray] = field(repr=False)
    checks: list[OutputCheck]
    # measured
    peak_l1_bytes: int
    arena_touched_bytes: int
    traffic_bytes: int
    loaded_bytes: int
    stored_bytes: int
    resident_bytes: list[int] = field(repr=False)
    # planned (simulator metrics of the plan)
    planned_peak_l1_bytes: int
    planned_arena_bytes: int
    planned_traffic_bytes: int
    # time
    run_s: float  # executing the stages (kernels + copies), sessions already built
    kernel_build_s: float
    ort_run_s: float  # onnxruntime whole-model run on the same inputs (best of repeats)
    ort_build_s: float
    backends: dict[str, int] = field(default_factory=dict)  # kernel backend -> op count
    rtol: float = DEFAULT_RTOL
    atol: float = DEFAULT_ATOL
    checked: bool = True

    @property
    def outputs_match(self) -> bool:
        """Every output agrees with onnxruntime's."""
        return all(c.match for c in self.checks)

    @property
    def metrics_match(self) -> bool:
        """The measured peak, arena top and traffic are the simulator's."""
        return (
            self.peak_l1_bytes == self.planned_peak_l1_bytes
            and self.arena_touched_bytes == self.planned_arena_bytes
            and self.traffic_bytes == self.planned_traffic_bytes
        )

    @property
    def ok(self) -> bool:
        """Outputs and metrics both agree."""
        return self.outputs_match and self.metrics_match

    @property
    def max_abs(self) -> float:
        """The largest absolute error over all outputs."""
        return max((c.max_abs for c in self.checks), default=0.0)

    @property
    def max_rel(self) -> float:
        """The largest relative error over all outputs."""
        return max((c.max_rel for c in self.checks), default=0.0)

    def to_dict(self) -> dict:
        """The report as JSON-ready data (for `planner run --json` and experiments)."""
        return {
            "model": self.model,
            "solver": self.solver,
            "ok": self.ok,
            "outputs_match": self.outputs_match,
            "metrics_match": self.metrics_match,
            "rtol": self.rtol,
            "atol": self.atol,
            "checked": self.checked,
            "outputs": [
                {
                    "name": c.name,
                    "shape": list(c.shape),
                    "dtype": c.dtype,
                    "max_abs": c.max_abs,
                    "max_rel": c.max_rel,
                    "match": c.match,
                }
                for c in self.checks
            ],
            "measured": {
                "peak_l1_bytes": self.peak_l1_bytes,
                "arena_bytes": self.arena_touched_bytes,
                "traffic_bytes": self.traffic_bytes,
                "loaded_bytes": self.loaded_bytes,
                "stored_bytes": self.stored_bytes,
            },
            "planned": {
                "peak_l1_bytes": self.planned_peak_l1_bytes,
                "arena_bytes": self.planned_arena_bytes,
                "traffic_bytes": self.planned_traffic_bytes,
            },
            "time_s": {
                "ours_run": self.run_s,
                "ours_build": self.kernel_build_s,
                "onnxruntime_run": self.ort_run_s,
                "onnxruntime_build": self.ort_build_s,
            },
            "backends": self.backends,
        }


def relative_error(diff: np.ndarray, ref: np.ndarray, atol: float) -> float:
    """The largest |ours - ref| / |ref| over the elements the relative tolerance judges: where
    |ref| is above `atol` (near zero the absolute tolerance decides, and dividing by a
    reference of about 0 would show 1e+300 next to a match)."""
    judged = np.abs(ref) > max(atol, np.finfo(np.float64).tiny)
    if not judged.any():
        return 0.0
    d = diff[judged]
    return float(np.max(np.where(d == 0, 0.0, d / np.abs(ref[judged]))))


def compare(name: str, ours: np.ndarray, ref: np.ndarray, rtol: float, atol: float) -> OutputCheck:
    """Max abs / rel error and the numpy.isclose verdict (exact equality for ints/bools)."""
    shape = tuple(ref.shape)
    if ours.shape != ref.shape:
        return OutputCheck(name, shape, str(ref.dtype), float("inf"), float("inf"), False)
    if ref.size == 0:
        return OutputCheck(name, shape, str(ref.dtype), 0.0, 0.0, True)
    if ref.dtype.kind in "fc":
        a, b = ours.astype(np.float64), ref.astype(np.float64)
        diff = np.abs(a - b)
        both_nan = np.isnan(a) & np.isnan(b)
        diff = np.where(both_nan, 0.0, diff)
        diff = np.where(np.isnan(diff), np.inf, diff)
        match = bool(np.all(np.isclose(a, b, rtol=rtol, atol=atol, equal_nan=True)))
        return OutputCheck(name, shape, str(ref.dtype), float(diff.max()), relative_error(diff, b, atol), match)
    diff = np.abs(ours.astype(np.int64) - ref.astype(np.int64)) if ref.dtype.kind in "iub" else (ours != ref)
    mx = float(np.max(diff))
    return OutputCheck(
        name, shape, str(ref.dtype), mx, mx / max(float(np.max(np.abs(ref.astype(np.float64)))), 1.0), mx == 0
    )


# -- the executor -----------------------------------------------------------------------------
def _graph_of_model(graph: Graph, model: onnx.ModelProto) -> None:
    """Refuse an imported graph that was not imported from `model` (nodes and inputs differ)."""
    produced = {o for n in model.graph.node for o in n.output if o}
    inits = {i.name for i in model.graph.initializer}
    inputs = {i.name for i in model.graph.input if i.name not in inits}
    for op in graph.ops:
        if op.attrs.get("synthetic"):
            continue
        node = op.attrs["node"]
        if not any(o in produced for o in node.output):
            raise ExecutionError(f"plan does not match the model: op {op.name!r} is not a node of {model.graph.name!r}")
    extra = set(graph.inputs) - inputs
    if extra:
        raise ExecutionError(f"plan does not match the model: inputs {sorted(extra)[:5]} are not model inputs")


def _graph_has_nodes(graph: Graph) -> bool:
    return all("node" in o.attrs for o in graph.ops)


def _recorded_fusion(graph: Graph) -> str | None:
    """The fusion a graph records having had (a plan file's ``transforms``), or None."""
    from planner.models.fuse import fusion_of

    record = fusion_of(graph)
    return record.method if record is not None and record.applied else None


def _recorded_split(imported: Graph, recorded: Graph) -> Graph:
    """`imported` split again as `recorded` (a plan file's graph) says, if it records an ONNX split."""
    from planner.models.errors import ModelError
    from planner.models.split_onnx import reapply

    try:
        return reapply(imported, recorded)
    except ModelError as e:
        raise ExecutionError(str(e)) from None


def _kernel_model(graph: Graph, model: onnx.ModelProto) -> onnx.ModelProto:
    """The model whose nodes and initializers the kernels and weights come from: the split
    model of a split graph (planner/models/split_onnx.py), the optimised model of a fused
    graph, else `model` itself."""
    from planner.models.fuse import fusion_of
    from planner.models.split_onnx import OnnxSplitRecord, split_record

    split = split_record(graph)
    if split is not None:
        if not isinstance(split, OnnxSplitRecord) or split.model is None:
            raise ExecutionError(
                f"graph {graph.name!r} was split but carries no split model: import it and split it again "
                "(planner.models.split_onnx.reapply)"
            )
        return split.model
    record = fusion_of(graph)
    if record is None or not record.applied:
        return model
    if record.model is None:
        raise ExecutionError(
            f"graph {graph.name!r} was fused ({record.method}) but carries no optimised model: "
            "import it with fusion again (planner.models.zoo.load_model(..., fuse=...))"
        )
    return record.model


def arena_top(plan: Plan, graph: Graph) -> int:
    """Bytes of the L1 array: the planned top, grown if an (unchecked) plan places something
    higher, so that a wrong offset corrupts a neighbour (as on a device) instead of failing."""
    top = plan.metrics.arena_bytes
    for s in plan.stages:
        if s.kind == "L" and s.name in graph.tensors and isinstance(s.offset, int):
            top = max(top, s.offset + graph.tensors[s.name].bytes)
        elif s.kind == "R" and s.offsets:
            for t, off in s.offsets.items():
                if t in graph.tensors and isinstance(off, int):
                    top = max(top, off + graph.tensors[t].bytes)
    return top


class _PlanRun:
    """One plan's stages acting literally on real bytes (module docstring): the L1 array, the
    LLB store, and what is measured on the way (resident bytes, touched top, copied bytes).

    Exists so that each stage kind is one method and `Executor.run` only drives and reports.
    """

    def __init__(
        self, graph: Graph, top: int, llb: dict[str, np.ndarray], in_place: bool, kernel: Callable[[str], Kernel]
    ):
        self.graph = graph
        self.arena = np.zeros(top, dtype=np.uint8)
        self.llb = llb
        self.in_place = in_place
        self.kernel = kernel
        self.resident: dict[str, tuple[int, np.ndarray]] = {}
        self.resident_now = 0  # bytes of the arena held by resident views (shared bytes once)
        self.shared: set[str] = set()  # residents whose bytes another resident may share
        self.timeline: list[int] = []
        self.touched = 0
        self.loaded = self.stored = 0
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.stage_kinds = {"L": self.load, "R": self.run, "S": self.store, "F": self.free}

    def stage(self, i: int, s: Stage) -> None:
        """Apply stage `s` (timestep `i`) and record the resident bytes after it."""
        act = self.stage_kinds.get(s.kind)
        if act is None:
            raise ExecutionError(f"step {i}: unknown stage {s.kind!r}")
        act(i, s)
        self.timeline.append(self.resident_now)

    def view(self, t: Tensor, off: int, like: np.ndarray | None = None) -> np.ndarray:
        """t's typed view into the arena at `off` (its shape from the graph, or from `like`)."""
        arena = self.arena
        if off < 0 or off + t.bytes > arena.size:
            raise ExecutionError(f"{t.name} at [{off}, {off + t.bytes}) is outside the arena of {arena.size} B")
        dt = np_dtype(t.dtype) if t.dtype is not None else (like.dtype if like is not None else np.uint8)
        shape = tuple(t.shape) if t.shape is not None else self.shapes.get(t.name)
        if shape is None and like is not None:
            shape = tuple(like.shape)
        if shape is None:
            raise ExecutionError(f"tensor {t.name!r} has no shape")
        if int(np.prod(shape, dtype=np.int64)) * dt.itemsize != t.bytes:
            raise ExecutionError(f"tensor {t.name!r}: shape {shape} x {dt} is not its planned {t.bytes} B")
        self.shapes[t.name] = shape
        self.touched = max(self.touched, off + t.bytes)
        return arena[off : off + t.bytes].view(dt).reshape(shape)

    @staticmethod
    def put(dst: np.ndarray, src: np.ndarray, what: str) -> None:
        """Write `src` into the view `dst` (same shape and dtype, or an error naming `what`)."""
        src = np.asarray(src)
        if src.shape != dst.shape:
            raise ExecutionError(
                f"{what}: onnxruntime computes shape {_shape(src.shape)}, the plan was made for {_shape(dst.shape)} "
                "(the model's declared or inferred shapes disagree with onnxruntime; plan it again)"
            )
        if src.dtype != dst.dtype:
            raise ExecutionError(f"{what}: value has dtype {src.dtype}, its planned view has {dst.dtype}")
        dst[...] = src

    def held_bytes(self) -> int:
        """Bytes of the arena under at least one resident view (measured, not planned)."""
        total, end = 0, -1
        for a, b in sorted((off, off + self.graph.tensors[n].bytes) for n, (off, _) in self.resident.items()):
            if b > end:
                total += b - max(a, end)
                end = b
        return total

    def load(self, i: int, s: Stage) -> None:
        """`L t`: copy t's LLB bytes into its view; an alias load (a view, slice or slot of
        resident bytes) only names the bytes already there: nothing is copied."""
        t = self.graph.tensors[s.name]
        if s.shares:
            self.resident[s.name] = (s.offset, self.view(t, s.offset))
            self.shared.add(s.name)
            self.resident_now = self.held_bytes()
            return
        if s.name not in self.llb:
            raise ExecutionError(f"step {i}: L {s.name}: no LLB copy")
        v = self.view(t, s.offset, self.llb[s.name])
        self.put(v, self.llb[s.name], f"step {i}: L {s.name}")
        self.resident[s.name] = (s.offset, v)
        self.resident_now += t.bytes
        self.loaded += t.bytes

    def run(self, i: int, s: Stage) -> None:
        """`R o`: run o's kernel on its input views, write every output into its view. An op
        whose outputs the stage declares views, slices or the concat of slots already in
        place moves no byte: its kernel is not run, its outputs are views of those bytes
        (so a wrong placement shows as wrong outputs)."""
        g = self.graph
        op = g.op(s.name)
        offs = s.offsets or {}
        missing = [t for t in op.outputs if t not in offs]
        if missing:
            raise ExecutionError(f"step {i}: R {s.name}: no offset for output {missing[0]!r}")
        if self.in_place_already(op, s):
            for t_name in op.outputs:
                self.resident[t_name] = (offs[t_name], self.view(g.tensors[t_name], offs[t_name]))
        else:
            k = self.kernel(s.name)
            results = k(self.feeds(i, s, k))
            for t_name, r in zip(op.outputs, results, strict=True):
                v = self.view(g.tensors[t_name], offs[t_name], r)
                self.put(v, r, f"step {i}: R {s.name} -> {t_name}")
                self.resident[t_name] = (offs[t_name], v)
        if s.shares:
            self.shared.update(op.outputs)
            self.shared.update(x.child for x in s.shares)
            self.resident_now = self.held_bytes()
        else:
            self.resident_now += sum(g.tensors[t].bytes for t in op.outputs)

    @staticmethod
    def in_place_already(op, s: Stage) -> bool:
        """Every output of the R stage is already in the arena: a view or slice of an input,
        or a concat whose every input was produced in its slot."""
        kinds = {x.kind for x in s.shares}
        if not s.shares or "inplace" in kinds:
            return False
        if kinds == {"concat"}:
            return {x.child for x in s.shares} == set(op.inputs)
        return {x.child for x in s.shares if x.kind in ("view", "slice")} == set(op.outputs)

    def feeds(self, i: int, s: Stage, k: Kernel) -> dict[str, np.ndarray]:
        """The kernel's inputs: resident views (in-place weights from LLB)."""
        vals: dict[str, np.ndarray] = {}
        for n in k.feeds:
            if n in self.resident:
                off, v = self.resident[n]
                self.touched = max(self.touched, off + self.graph.tensors[n].bytes)
                # a kernel may need aligned memory: copy only if the view is not aligned
                vals[n] = v if v.flags.aligned else v.copy()
            elif self.in_place and self.graph.tensors[n].kind == "weight":
                vals[n] = self.llb[n]
            else:
                raise ExecutionError(f"step {i}: R {s.name}: input {n!r} is not resident in L1")
        return vals

    def store(self, i: int, s: Stage) -> None:
        """`S t`: copy t's view out to LLB."""
        if s.name not in self.resident:
            raise ExecutionError(f"step {i}: S {s.name}: not resident")
        off, v = self.resident[s.name]
        self.touched = max(self.touched, off + self.graph.tensors[s.name].bytes)
        self.llb[s.name] = v.copy()
        self.stored += self.graph.tensors[s.name].bytes

    def free(self, i: int, s: Stage) -> None:
        """`F t`: drop t's view (its bytes stay until a later tensor overwrites them)."""
        if s.name not in self.resident:
            raise ExecutionError(f"step {i}: F {s.name}: not resident")
        del self.resident[s.name]
        if s.name in self.shared:
            self.shared.discard(s.name)
            self.resident_now = self.held_bytes()
        else:
            self.resident_now -= self.graph.tensors[s.name].bytes


class Executor:
    """A model ready to run plans: its graph, weight values and per-op kernels (cached).

    Build one per (model, pinned shapes, fusion) and call `run` for many plans: kernels are
    built lazily, once per op, and shared by every plan. A fused graph (its source carries a
    `planner.models.fuse.FusionRecord`) runs on onnxruntime's optimised model: its nodes
    and its folded weights (Conv+BN merged) come from there, while the reference outputs
    always come from onnxruntime on the ORIGINAL model (that is the proof). `fuse` says how
    to import the model when no graph with nodes is given; by default, as the given graph
    (a plan file's) records.
    """

    def __init__(
        self,
        model: str | os.PathLike | onnx.ModelProto,
        graph: Graph | None = None,
        input_shapes: Mapping[str, Sequence[int]] | None = None,
        dims: Mapping[str, int] | None = None,
        input_values: Mapping[str, object] | None = None,
        fuse: str | None = None,
    ):
        self.model, self.path = _load_model(model)
        self._prefolded: dict[str, np.ndarray] = {}
        if graph is None or not _graph_has_nodes(graph):
            recorded = _recorded_fusion(graph) if graph is not None else None
            imported = self._import(input_shapes, dims, input_values, fuse or recorded or "none")
            graph = imported if graph is None else _recorded_split(imported, graph)
        self.graph = graph
        self.kernel_model = _kernel_model(graph, self.model)
        _graph_of_model(graph, self.kernel_model)
        self.kernels: dict[str, Kernel] = {}
        self.kernel_build_s = 0.0
        self._weights: dict[str, np.ndarray] | None = None
        self._ref_cache: dict[bytes, tuple[dict[str, np.ndarray], float, float]] = {}

    def _import(self, input_shapes, dims, input_values, fuse: str = "none") -> Graph:
        from planner.models.fuse import fuse_onnx
        from planner.models.onnx import load_onnx

        shapes = {k: tuple(int(d) for d in v) for k, v in (input_shapes or {}).items()} or None
        kw = {"input_shapes": shapes, "dims": dims, "input_values": input_values}
        load = load_onnx if fuse == "none" else (lambda p, **kw: fuse_onnx(p, **kw)[0])
        if self.path is not None:
            return load(self.path, **kw)
        # the importers read files: give them one (the temp file must outlive fold_constants,
        # which re-reads graph.source.path, so weights are computed before it goes away; a
        # fused graph's record holds its optimised model with every weight)
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "model.onnx"
            onnx.save(self.model, str(p))
            graph = load(str(p), **kw)
            try:
                from planner.models.onnx import fold_constants

                if not graph.source.transforms:
                    self._prefolded = fold_constants(graph)
            except Exception:  # noqa: BLE001 - weight_values falls back to onnxruntime
                pass
            return graph

    # -- pieces ------------------------------------------------------------------------------
    def weights(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every weight's value, computed once (the LLB's initial contents with the inputs)."""
        if self._weights is None:
            self._weights = weight_values(self.kernel_model, self.graph, inputs, self._prefolded)
        return self._weights

    def kernel(self, op: str) -> Kernel:
        """The kernel of `op`, built on first use and cached for every later plan."""
        k = self.kernels.get(op)
        if k is None:
            t0 = time.perf_counter()
            k = build_kernel(self.kernel_model, self.graph, op, self._weights or {})
            self.kernel_build_s += time.perf_counter() - t0
            self.kernels[op] = k
        return k

    def reference(
        self, inputs: Mapping[str, np.ndarray], repeat: int = 3
    ) -> tuple[dict[str, np.ndarray], float, float]:
        """onnxruntime's outputs for `inputs` (outputs, build s, run s), cached for the last inputs."""
        key = b"".join(n.encode() + np.ascontiguousarray(inputs[n]).tobytes() for n in sorted(inputs))
        if key not in self._ref_cache:
            g = self.graph
            # a synthetic Identity copies a graph output that is an input/constant into "<name>:output"
            src = {o: g.op(g.producer[o]).attrs.get("graph_output", o) for o in g.outputs}
            ref, build, run = reference_outputs(self.model, list(dict.fromkeys(src.values())), inputs, repeat=repeat)
            self._ref_cache = {key: ({o: ref[s] for o, s in src.items()}, build, run)}
        return self._ref_cache[key]

    def check_inputs(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The inputs as C-contiguous arrays of the graph's dtypes and shapes (or an error
        that says how to pin the shapes the plan was made for)."""
        out = {}
        for n in self.graph.inputs:
            if n not in inputs:
                raise ExecutionError(f"no value for graph input {n!r} (have: {', '.join(sorted(inputs)) or 'none'})")
            t = self.graph.tensors[n]
            a = np.asarray(inputs[n])
            dt = np_dtype(t.dtype)
            if a.dtype != dt:
                if np.can_cast(a.dtype, dt, "same_kind") or a.dtype.kind == dt.kind:
                    a = a.astype(dt)
                else:
                    raise ExecutionError(f"input {n!r} has dtype {a.dtype}, the model wants {dt}")
            if t.shape is not None and tuple(a.shape) != tuple(t.shape):
                raise ExecutionError(
                    f"input {n!r} has shape {tuple(a.shape)}, the plan was made for "
                    f"{tuple(t.shape)} (pin it with --input-shape {n}="
                    f"{'x'.join(map(str, a.shape)) or '1'} when planning)"
                )
            out[n] = np.array(a, order="C")  # (np.ascontiguousarray would make scalars 1-D)
        return out

    # -- running -----------------------------------------------------------------------------
    def run(
        self,
        plan: Plan,
        inputs: Mapping[str, np.ndarray],
        unchecked: bool = False,
        rtol: float = DEFAULT_RTOL,
        atol: float = DEFAULT_ATOL,
        reference: bool = True,
    ) -> ExecutionReport:
        """Execute `plan` on `inputs` (checked by the simulator first unless `unchecked`) and
        report what was measured next to the plan's metrics and onnxruntime's outputs."""
        g = self.graph
        if plan.graph is not g:
            mismatch = plan_mismatch(plan, g)
            if mismatch:
                raise ExecutionError(mismatch)
        if not unchecked:
            check(plan)  # raises PlanError naming the broken rules
        inputs = self.check_inputs(inputs)
        weights = self.weights(inputs)
        llb: dict[str, np.ndarray] = {**inputs, **{n: weights[n] for n in g.weights if n in weights}}
        state = _PlanRun(g, arena_top(plan, g), llb, plan.target.weights == "in_place", self.kernel)
        for s in plan.stages:  # build kernels first so run time is kernels + copies only
            if s.kind == "R" and s.name in g.op_index:
                self.kernel(s.name)
        t_start = time.perf_counter()
        for i, s in enumerate(plan.stages):
            state.stage(i, s)
        t_run = time.perf_counter() - t_start
        return self._report(plan, inputs, state, t_run, rtol, atol, reference, checked=not unchecked)

    def _report(
        self,
        plan: Plan,
        inputs: Mapping[str, np.ndarray],
        state: _PlanRun,
        t_run: float,
        rtol: float,
        atol: float,
        reference: bool,
        checked: bool,
    ) -> ExecutionReport:
        """The measurements of a finished run next to the plan's metrics and (if `reference`)
        onnxruntime's outputs for the same inputs."""
        g = self.graph
        missing = [o for o in g.outputs if o not in state.llb]
        if missing:
            raise ExecutionError(f"graph outputs never stored: {', '.join(missing)}")
        ours = {o: state.llb[o] for o in g.outputs}
        checks: list[OutputCheck] = []
        ort_build = ort_run = 0.0
        if reference:
            ref, ort_build, ort_run = self.reference(inputs)
            checks = [compare(o, ours[o], ref[o], rtol, atol) for o in g.outputs]
        backends: dict[str, int] = {}
        for k in self.kernels.values():
            backends[k.backend] = backends.get(k.backend, 0) + 1
        return ExecutionReport(
            model=g.name,
            solver=plan.solver.name,
            outputs=ours,
            checks=checks,
            peak_l1_bytes=max(state.timeline, default=0),
            arena_touched_bytes=state.touched,
            traffic_bytes=state.loaded + state.stored,
            loaded_bytes=state.loaded,
            stored_bytes=state.stored,
            resident_bytes=state.timeline,
            planned_peak_l1_bytes=plan.metrics.peak_l1_bytes,
            planned_arena_bytes=plan.metrics.arena_bytes,
            planned_traffic_bytes=plan.metrics.traffic_bytes,
            run_s=t_run,
            kernel_build_s=self.kernel_build_s,
            ort_run_s=ort_run,
            ort_build_s=ort_build,
            backends=backends,
            rtol=rtol,
            atol=atol,
            checked=checked,
        )


def execute(
    plan: Plan,
    model: str | os.PathLike | onnx.ModelProto,
    inputs: Mapping[str, np.ndarray] | None = None,
    *,
    seed: int = 0,
    unchecked: bool = False,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    dims: Mapping[str, int] | None = None,
    executor: Executor | None = None,
    reference: bool = True,
) -> ExecutionReport:
    """Run `plan` on `model` with `inputs` (random by `seed` if None) and compare with onnxruntime.

    The model is re-imported unless the plan's graph still carries the ONNX nodes (fused
    again when the plan file records a fusion); the input shapes default to the ones
    recorded in the plan, so a plan made with pinned shapes runs without repeating the
    pins. Pass an `executor` to reuse kernels across plans.
    """
    if executor is None:
        if input_shapes is None:
            input_shapes = {
                n: plan.graph.tensors[n].shape for n in plan.graph.inputs if plan.graph.tensors[n].shape is not None
            }
        executor = Executor(model, plan.graph, input_shapes=input_shapes, dims=dims)
    if inputs is None:
        inputs = random_inputs(executor.graph, seed)
    return executor.run(plan, inputs, unchecked=unchecked, rtol=rtol, atol=atol, reference=reference)
