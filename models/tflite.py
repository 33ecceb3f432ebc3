"""Import a TFLite flatbuffer (subgraph 0) as a planner Graph, the way TFLite Micro sees it.

The flatbuffer is read with the object API shipped in the `tflite-micro` wheel
(`schema_py_generated.ModelT`), so no TensorFlow is needed.

What becomes what, following TFLM's own allocator (micro_allocation_info.cc):

- a tensor with a non-empty constant buffer -> ``weight`` (TFLM reads it from the
  flatbuffer; it never enters the arena);
- ``is_variable`` tensors (old-style LSTM state) -> ``weight``: TFLM allocates them
  persistently in the arena tail, outside the planned head, and they keep their value
  across invokes, so a plan must not place them;
- resource variables (VAR_HANDLE / READ_VARIABLE / ASSIGN_VARIABLE): the variable's
  storage lives in TFLM's persistent MicroResourceVariables, NOT in the planned arena.
  The RESOURCE-typed handle a VAR_HANDLE outputs is not in the arena either: its kernel
  points the tensor at a persistent int32 during Prepare, before TFLM plans memory, so
  the planner skips it (checked: moving its offline offset far away leaves TFLM's arena
  head unchanged). Handles are kept as 0-byte activations so the dataflow stays visible.
  The tensor a READ_VARIABLE outputs is an ordinary planned activation;
- subgraph inputs -> ``input``, subgraph outputs -> ``output``, everything else an
  ``activation`` of ``prod(shape) * sizeof(dtype)`` bytes (TFLM's TfLiteEvalTensorByteLength).

Ops that produce nothing (ASSIGN_VARIABLE, CALL_ONCE) and ordering the dataflow does not
show (a variable must be read before it is re-assigned; the CALL_ONCE init subgraph runs
before any variable is touched) are expressed with zero-byte "control" tensors named
``~...``. They cost no memory and have no flatbuffer index; the TFLM exporter skips them.

Only subgraph 0 is planned. Other subgraphs (the CALL_ONCE init graph, IF/WHILE bodies)
are left to TFLM, which places their tensors itself around the offline plan.

A STRIDED_SLICE (strides 1, no ellipsis / new-axis / shrink masks) or SLICE with constant
parameters that cuts exactly one axis gets ``attrs["slice"] = (axis, start)``, as the ONNX
importer does for Slice (planner/sharing.py places its output inside its input's bytes).

Names are stable and invertible: op ``i`` is ``f"{i}:{OPNAME}"`` (attrs keep ``index``);
a tensor keeps its flatbuffer name unless that is empty or shared, then it gets
``#<index>``. `graph.source.details` (a `TfliteInfo`) maps names back to flatbuffer
indices; the exporter re-imports the original model to re-derive the very same mapping.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from planner.graph import MAX_GRAPH_BYTES, Graph, GraphError, ModelSource, Op, Tensor, model_sha256
from planner.models.errors import ModelError

INSTALL = "pip install --no-deps tflite-micro"

# TFLM's TfLiteTypeSizeOf (memory_helpers.cc); anything else TFLM refuses to allocate.
TYPE_BYTES = {
    "FLOAT16": 2,
    "FLOAT32": 4,
    "FLOAT64": 8,
    "INT16": 2,
    "INT32": 4,
    "UINT32": 4,
    "UINT8": 1,
    "INT8": 1,
    "INT64": 8,
    "UINT64": 8,
    "BOOL": 1,
    "RESOURCE": 4,
    "COMPLEX64": 8,
    "COMPLEX128": 16,
    "INT4": 1,
    "UINT16": 2,
}
# Ops that run another subgraph: their bodies may touch variables, so they keep their
# place relative to every variable op.
CALLS_SUBGRAPH = {"CALL_ONCE", "IF", "WHILE", "CALL", "STABLEHLO_WHILE", "STABLEHLO_CASE"}
VARIABLE_OPS = {"VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE"}


class TfliteModelError(ModelError):
    """The .tflite cannot be imported (one line saying what and where)."""


def schema():
    """The flatbuffer object API of the tflite-micro wheel (clear error when missing)."""
    try:
        from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as s
    except ImportError as e:
        raise TfliteModelError(f"reading .tflite needs the tflite-micro wheel: {INSTALL}") from e
    return s


def _enum_names(cls) -> dict[int, str]:
    return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}


def read_model(path: str | Path):
    """(ModelT, raw bytes) of a .tflite file."""
    s = schema()
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise TfliteModelError(f"cannot read {path}: {e.strerror}") from e
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise TfliteModelError(f"{path} is not a TFLite flatbuffer (missing the TFL3 identifier)")
    try:
        model = s.ModelT.InitFromPackedBuf(data, 0)
    except Exception as e:  # noqa: BLE001 - any flatbuffer decode failure
        raise TfliteModelError(f"{path}: malformed TFLite flatbuffer ({type(e).__name__}: {e})") from e
    if not model.subgraphs:
        raise TfliteModelError(f"{path}: the model has no subgraphs")
    return model, data


METADATA_NAME = "OfflineMemoryAllocation"  # the metadata entry of TFLM's offline memory plan
BUFFER_ALIGN = 16  # TFLite's schema asks for 16-byte aligned buffer data


def _aligned_buffer_class(s):
    """BufferT whose data vector is 16-byte aligned (the generated Pack aligns to 1)."""

    class AlignedBufferT(s.BufferT):
        def Pack(self, builder):  # noqa: N802 - flatbuffers naming
            import numpy as np

            data = None
            if self.data is not None:
                raw = bytes(np.asarray(self.data, dtype=np.uint8).tobytes())
                builder.StartVector(1, len(raw), BUFFER_ALIGN)
                builder.head = builder.head - len(raw)
                builder.Bytes[builder.head : builder.head + len(raw)] = raw
                data = builder.EndVector()
            s.BufferStart(builder)
            if data is not None:
                s.BufferAddData(builder, data)
            if self.offset:
                s.BufferAddOffset(builder, self.offset)
            if self.size:
                s.BufferAddSize(builder, self.size)
            return s.BufferEnd(builder)

    return AlignedBufferT


def pack_model(model) -> bytes:
    """The .tflite bytes of a ModelT, constant buffers 16-byte aligned (the exporter's and
    the transformations' one writer)."""
    import flatbuffers

    s = schema()
    cls = _aligned_buffer_class(s)
    for b in model.buffers or []:
        b.__class__ = cls
    builder = flatbuffers.Builder(1024)
    root = model.Pack(builder)
    builder.Finish(root, file_identifier=b"TFL3")
    return bytes(builder.Output())


def without_offline_plan(model) -> None:
    """Drop a ModelT's offline memory plan (in place): after its tensors change it no longer holds."""
    model.metadata = [
        m for m in (model.metadata or []) if (m.name or b"") not in (METADATA_NAME, METADATA_NAME.encode())
    ]


def op_type_name(model, op) -> str:
    """Builtin operator name (e.g. CONV_2D) or the custom op's code."""
    s = schema()
    codes = model.operatorCodes or []
    if op.opcodeIndex >= len(codes):
        raise TfliteModelError(f"operator refers to opcode {op.opcodeIndex}, model has {len(codes)}")
    oc = codes[op.opcodeIndex]
    code = max(oc.builtinCode or 0, oc.deprecatedBuiltinCode or 0)
    name = _enum_names(s.BuiltinOperator).get(code, f"BUILTIN_{code}")
    if name == "CUSTOM":
        cc = oc.customCode
        cc = cc.decode("utf-8", "replace") if isinstance(cc, bytes) else str(cc or "")
        return cc or "CUSTOM"
    return name


def _text(b) -> str:
    if b is None:
        return ""
    return b.decode("utf-8", "replace") if isinstance(b, bytes) else str(b)


def is_constant(model, tensor) -> bool:
    """A tensor whose data lives in the flatbuffer (TFLM never allocates it)."""
    bufs = model.buffers or []
    if tensor.buffer <= 0 or tensor.buffer >= len(bufs):
        return False
    b = bufs[tensor.buffer]
    has_inline = b.data is not None and len(b.data) > 0
    has_external = (b.offset or 0) > 1 and (b.size or 0) > 0  # >2 GB models keep data outside
    return bool(has_inline or has_external)


def tensor_type_name(tensor) -> str:
    """The schema's name of a tensor's element type (e.g. INT8), the key of TYPE_BYTES / NUMPY_TYPES."""
    return _enum_names(schema().TensorType).get(tensor.type, f"TYPE_{tensor.type}")


def tensor_bytes(tensor, where: str) -> int:
    """Bytes TFLM plans for the tensor: static shape times element size (TfLiteEvalTensorByteLength)."""
    tname = tensor_type_name(tensor)
    if tname not in TYPE_BYTES:
        raise TfliteModelError(f"{where}: tensor type {tname} is not supported by TFLite Micro")
    if tname == "RESOURCE":
        return 0  # points at persistent memory (see the module docstring)
    shape = [] if tensor.shape is None else [int(d) for d in tensor.shape]
    if any(d < 0 for d in shape):
        raise TfliteModelError(f"{where}: dynamic shape {shape}; TFLite Micro needs static shapes")
    nbytes = math.prod(shape) * TYPE_BYTES[tname]
    if nbytes > MAX_GRAPH_BYTES:
        raise TfliteModelError(f"{where}: shape {shape} is {nbytes} bytes, more than 2**53, beyond any memory")
    return nbytes


def tflm_allocates(model, sg: int, index: int) -> bool:
    """Whether TFLM's memory planner places this tensor in the arena head at all."""
    t = model.subgraphs[sg].tensors[index]
    if is_constant(model, t) or t.isVariable:
        return False
    try:
        return tensor_bytes(t, "") > 0
    except TfliteModelError:
        return False


def tensor_names(model, sg: int = 0) -> list[str]:
    """Unique, deterministic names for the tensors of subgraph `sg`, by flatbuffer index."""
    raw = [_text(t.name) for t in model.subgraphs[sg].tensors]
    count: dict[str, int] = {}
    for n in raw:
        count[n] = count.get(n, 0) + 1
    out: list[str] = []
    taken: set[str] = set()
    for i, n in enumerate(raw):
        name = n if n and count[n] == 1 and "#" not in n else f"{n or 't'}#{i}"
        while name in taken or name.startswith("~"):  # keep clear of control tensors
            name = f"{name}#{i}"
        taken.add(name)
        out.append(name)
    return out


@dataclass
class TfliteInfo:
    """How the planner Graph maps back to the flatbuffer (for the exporter)."""

    path: str
    sha256: str
    subgraph: int
    tensor_index: dict[str, int] = field(default_factory=dict)  # graph tensor -> flatbuffer index
    op_index: dict[str, int] = field(default_factory=dict)  # graph op -> operator index
    n_tensors: list[int] = field(default_factory=list)  # per subgraph
    control: set[str] = field(default_factory=set)  # zero-byte ordering tensors (no index)


def load_tflite(
    path: str | os.PathLike,
    *,
    input_shapes: Mapping[str, Iterable[int]] | None = None,
    dims: Mapping[str, int] | None = None,
    input_values: Mapping[str, object] | None = None,
    subgraph: int = 0,
) -> Graph:
    """Import subgraph `subgraph` (0 is the one TFLM invokes) of a .tflite file.

    The signature every importer shares (:mod:`planner.models.importers`). TFLite shapes
    are static, so pins and input values are refused with a ``ModelError`` rather than
    ignored (no shape here depends on a value).
    """
    path = Path(path)
    if input_shapes or dims:
        raise TfliteModelError(
            f"{path.name}: the TFLite importer takes no --input-shape / --dim (TFLite shapes are static)"
        )
    if input_values:
        raise TfliteModelError(
            f"{path.name}: the TFLite importer takes no --input-value (TFLite shapes are static, none depends on a value)"
        )
    model, data = read_model(path)
    if not 0 <= subgraph < len(model.subgraphs):
        raise TfliteModelError(f"{path.name}: no subgraph {subgraph} (model has {len(model.subgraphs)})")
    r = _Reader(path, model, subgraph)
    if not r.outputs:
        raise TfliteModelError(f"{path.name}: subgraph {subgraph} has no outputs; there is nothing to compute or plan")
    info = TfliteInfo(
        str(path), model_sha256(data), subgraph, n_tensors=[len(g.tensors or []) for g in model.subgraphs]
    )
    op_ins, op_outs, used = r.dataflow()
    _add_control_tensors(r, op_ins, op_outs, info)
    tensors = r.tensors(used, info)
    produced = {n for outs in op_outs for n in outs}
    for t in tensors:
        if t.kind in ("activation", "output") and t.name not in produced:
            raise TfliteModelError(
                f"{path.name}: tensor {t.name!r} is read or exported but no operator writes it "
                "and it is neither a constant nor a subgraph input"
            )
    ops = [
        Op(
            r.op_names[k],
            r.op_types[k],
            tuple(op_ins[k]),
            tuple(op_outs[k]),
            {"index": k, "subgraph": subgraph, "nested": r.op_types[k] in CALLS_SUBGRAPH, **r.slice_attr(k)},
        )
        for k in range(len(r.ops))
    ]
    info.op_index = {r.op_names[k]: k for k in range(len(r.ops))}
    source = ModelSource("tflite", str(path), info.sha256, details=info)
    try:
        return Graph(path.stem, tensors, ops, source)
    except GraphError as e:
        raise TfliteModelError(f"{path.name}: {e}") from e


class _Reader:
    """One subgraph of a parsed model, with the names and kinds the Graph will use."""

    def __init__(self, path: Path, model, subgraph: int):
        self.path, self.model = path, model
        sg = model.subgraphs[subgraph]
        self.tens = sg.tensors or []
        self.ops = sg.operators or []
        self.names = tensor_names(model, subgraph)
        self.inputs = [int(i) for i in (sg.inputs if sg.inputs is not None else []) if i >= 0]
        self.outputs = [int(i) for i in (sg.outputs if sg.outputs is not None else []) if i >= 0]
        self.op_types = [op_type_name(model, o) for o in self.ops]
        self.op_names = [f"{k}:{t}" for k, t in enumerate(self.op_types)]

    def kind_of(self, i: int) -> str:
        t = self.tens[i]
        if is_constant(self.model, t) or t.isVariable:
            return "weight"
        if i in self.inputs:
            return "input"
        if i in self.outputs:
            return "output"
        return "activation"

    def dataflow(self) -> tuple[list[list[str]], list[list[str]], dict[int, None]]:
        """Each op's input and output tensor names, and the flatbuffer indices in use (in order)."""
        used: dict[int, None] = dict.fromkeys(self.inputs + self.outputs)
        op_ins: list[list[str]] = []
        op_outs: list[list[str]] = []
        for k, o in enumerate(self.ops):
            ins, outs = [], []
            for i in o.inputs if o.inputs is not None else []:
                i = int(i)
                if i < 0:
                    continue  # omitted optional input (e.g. no bias)
                if i >= len(self.tens):
                    raise TfliteModelError(
                        f"{self.path.name}: op {self.op_names[k]} reads tensor {i}, subgraph has {len(self.tens)}"
                    )
                ins.append(self.names[i])
                used[i] = None
            for i in o.outputs if o.outputs is not None else []:
                i = int(i)
                if i < 0 or i >= len(self.tens):
                    raise TfliteModelError(f"{self.path.name}: op {self.op_names[k]} writes invalid tensor {i}")
                if self.kind_of(i) == "weight":
                    continue  # variable state updated in place: persistent, not planned
                outs.append(self.names[i])
                used[i] = None
            op_ins.append(ins)
            op_outs.append(outs)
        return op_ins, op_outs, used

    def ordering_edges(self) -> list[tuple[int, int]]:
        """(earlier op, later op) pairs the dataflow does not show: per-variable access order,
        and subgraph calls kept in place relative to every variable op and to each other."""
        edges: list[tuple[int, int]] = []
        var_of_handle: dict[int, str] = {}  # handle tensor index -> variable name
        for k, o in enumerate(self.ops):
            if self.op_types[k] == "VAR_HANDLE" and o.outputs is not None and len(o.outputs):
                opt = o.builtinOptions
                key = f"{_text(getattr(opt, 'container', b''))}/{_text(getattr(opt, 'sharedName', b''))}"
                var_of_handle[int(o.outputs[0])] = key
        per_var: dict[str, list[int]] = {}
        var_ops: list[int] = []
        for k, o in enumerate(self.ops):
            if self.op_types[k] in ("READ_VARIABLE", "ASSIGN_VARIABLE") and o.inputs is not None and len(o.inputs):
                h = int(o.inputs[0])
                per_var.setdefault(var_of_handle.get(h, f"handle#{h}"), []).append(k)
            if self.op_types[k] in VARIABLE_OPS:
                var_ops.append(k)
        for seq in per_var.values():
            edges += list(zip(seq, seq[1:], strict=False))
        callers = [k for k in range(len(self.ops)) if self.op_types[k] in CALLS_SUBGRAPH]
        for c in callers:
            edges += [(min(c, v), max(c, v)) for v in var_ops]
            edges += [(min(c, d), max(c, d)) for d in callers if d > c]
        return edges

    def slice_attr(self, k: int) -> dict:
        """``{"slice": (axis, start)}`` for a STRIDED_SLICE / SLICE op that cuts one
        contiguous range along a single axis (see `slice_spec`); empty for every other op."""
        spec = slice_spec(self.model, self.ops[k], self.op_types[k], self.tens)
        return {} if spec is None else {"slice": spec}

    def tensors(self, used: dict[int, None], info: TfliteInfo) -> list[Tensor]:
        """The Graph's tensors (flatbuffer ones in index order, then the control tensors)."""
        tensors: list[Tensor] = []
        for i in sorted(used):
            t = self.tens[i]
            nb = tensor_bytes(t, f"{self.path.name}: tensor {self.names[i]!r}")
            shape = tuple(int(d) for d in t.shape) if t.shape is not None else ()
            tensors.append(Tensor(self.names[i], nb, self.kind_of(i), shape, tensor_type_name(t).lower()))
            info.tensor_index[self.names[i]] = i
        tensors += [Tensor(c, 0, "activation") for c in sorted(info.control)]
        return tensors


def constant_ints(model, tensor) -> list[int] | None:
    """The values of a constant INT32 / INT64 tensor (its flatbuffer buffer), or None."""
    import numpy as np

    dtype = {"INT32": "<i4", "INT64": "<i8"}.get(tensor_type_name(tensor))
    bufs = model.buffers or []
    if dtype is None or not is_constant(model, tensor) or bufs[tensor.buffer].data is None:
        return None  # not an integer constant, or its data lies outside the flatbuffer
    data = np.asarray(bufs[tensor.buffer].data, dtype=np.uint8).tobytes()
    if len(data) % np.dtype(dtype).itemsize:
        return None
    return [int(v) for v in np.frombuffer(data, dtype=dtype)]


def slice_spec(model, op, op_type: str, tens: list) -> tuple[int, int] | None:
    """(axis, start) of a STRIDED_SLICE (strides 1, no ellipsis / new-axis / shrink masks,
    no `offset`) or SLICE whose output is its input cut along exactly one axis, with the
    start normalised the way TFLite's kernels do (begin_mask -> 0, negative -> from the
    back, clamped to [0, dim]); checked against the output shape. None otherwise: the op
    then shares nothing (planner/sharing.py)."""
    if op_type not in ("STRIDED_SLICE", "SLICE") or op.inputs is None or op.outputs is None:
        return None
    if len(op.inputs) != (4 if op_type == "STRIDED_SLICE" else 3) or len(op.outputs) != 1 or min(op.inputs) < 0:
        return None
    x, y = tens[op.inputs[0]], tens[op.outputs[0]]
    shape = [int(d) for d in (x.shape if x.shape is not None else [])]
    out = [int(d) for d in (y.shape if y.shape is not None else [])]
    params = [constant_ints(model, tens[i]) for i in op.inputs[1:]]
    if any(p is None or len(p) != len(shape) for p in params) or len(out) != len(shape):
        return None
    if op_type == "STRIDED_SLICE":
        bounds = _strided_bounds(op.builtinOptions, shape, *params)
    else:
        begin, size = params
        bounds = [(b, d if n == -1 else b + n) for b, n, d in zip(begin, size, shape, strict=True)]
    if bounds is None or any(not 0 <= b <= e <= d for (b, e), d in zip(bounds, shape, strict=True)):
        return None
    extent = [e - b for b, e in bounds]
    cut = [i for i, (n, d) in enumerate(zip(extent, shape, strict=True)) if n != d]
    if extent != out or len(cut) != 1 or extent[cut[0]] == 0:
        return None
    return cut[0], bounds[cut[0]][0]


def _strided_bounds(opt, shape: list[int], begin, end, strides) -> list[tuple[int, int]] | None:
    """[(start, stop)] per axis of a plain STRIDED_SLICE (TFLite's StridedSliceStartForAxis /
    EndForAxis with stride 1); None for strides other than 1 and the masks not handled."""
    bm, em = (int(getattr(opt, f, 0) or 0) for f in ("beginMask", "endMask"))
    if any(getattr(opt, f, 0) for f in ("ellipsisMask", "newAxisMask", "shrinkAxisMask", "offset")):
        return None
    if any(s != 1 for s in strides):
        return None
    out = []
    for i, (b, e, d) in enumerate(zip(begin, end, shape, strict=True)):
        b = 0 if bm >> i & 1 else min(max(b + d if b < 0 else b, 0), d)
        e = d if em >> i & 1 else min(max(e + d if e < 0 else e, 0), d)
        out.append((b, max(e, b)))
    return out


def _add_control_tensors(r: _Reader, op_ins: list[list[str]], op_outs: list[list[str]], info: TfliteInfo) -> None:
    """Ordering the dataflow does not show, and ops kept for a side effect, as zero-byte control tensors."""
    ctrl_in: dict[int, list[str]] = {}
    for a, b in dict.fromkeys(r.ordering_edges()):
        cname = f"~{r.op_names[a]}->{r.op_names[b]}"
        op_outs[a].append(cname)
        ctrl_in.setdefault(b, []).append(cname)
        info.control.add(cname)
    for k in range(len(r.ops)):
        op_ins[k] += ctrl_in.get(k, [])
        if not op_outs[k]:  # an op kept only for its side effect
            cname = f"~{r.op_names[k]}"
            op_outs[k].append(cname)
            info.control.add(cname)


NUMPY_TYPES = {
    "FLOAT32": "float32",
    "FLOAT16": "float16",
    "FLOAT64": "float64",
    "INT8": "int8",
    "UINT8": "uint8",
    "INT16": "int16",
    "UINT16": "uint16",
    "INT32": "int32",
    "UINT32": "uint32",
    "INT64": "int64",
    "BOOL": "bool",
}


def input_specs(path: str | Path, subgraph: int = 0) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, shape, numpy dtype) of each input of `subgraph`, in the order TFLM takes them."""
    model, _ = read_model(path)
    sg = model.subgraphs[subgraph]
    names = tensor_names(model, subgraph)
    out = []
    for i in sg.inputs if sg.inputs is not None else []:
        t = sg.tensors[int(i)]
        tname = tensor_type_name(t)
        if tname not in NUMPY_TYPES:
            raise TfliteModelError(f"{Path(path).name}: input {names[int(i)]!r} has type {tname}, not a plain array")
        out.append((names[int(i)], tuple(int(d) for d in (t.shape if t.shape is not None else [])), NUMPY_TYPES[tname]))
    return out


# -- what TFLite Micro cannot run -----------------------------------------------------------------
# The builtin kernels TFLite Micro registers (the Register_* functions of the tflite-micro wheel
# this project tests with, 0.dev20261023): a builtin op outside this set has no kernel there.
TFLM_BUILTINS = frozenset(
    """ABS ADD ADD_N ARG_MAX ARG_MIN ASSIGN_VARIABLE AVERAGE_POOL_2D BATCH_MATMUL BATCH_TO_SPACE_ND
    BROADCAST_ARGS BROADCAST_TO CALL_ONCE CAST CEIL CONCATENATION CONV_2D COS CUMSUM DEPTHWISE_CONV_2D
    DEPTH_TO_SPACE DEQUANTIZE DIV DYNAMIC_UPDATE_SLICE ELU EMBEDDING_LOOKUP EQUAL EXP EXPAND_DIMS FILL
    FLOOR FLOOR_DIV FLOOR_MOD FULLY_CONNECTED GATHER GATHER_ND GREATER GREATER_EQUAL HARD_SWISH IF
    L2_NORMALIZATION L2_POOL_2D LEAKY_RELU LESS LESS_EQUAL LOG LOGICAL_AND LOGICAL_NOT LOGICAL_OR LOGISTIC
    LOG_SOFTMAX MAXIMUM MAX_POOL_2D MEAN MINIMUM MIRROR_PAD MUL NEG NOT_EQUAL PACK PAD PADV2 PRELU QUANTIZE
    READ_VARIABLE REDUCE_MAX REDUCE_MIN RELU RELU6 RESHAPE RESIZE_BILINEAR RESIZE_NEAREST_NEIGHBOR
    REVERSE_V2 ROUND RSQRT SELECT_V2 SHAPE SIN SLICE SOFTMAX SPACE_TO_BATCH_ND SPACE_TO_DEPTH SPLIT SPLIT_V
    SQRT SQUARE SQUARED_DIFFERENCE SQUEEZE STRIDED_SLICE SUB SUM SVDF TANH TRANSPOSE TRANSPOSE_CONV
    UNIDIRECTIONAL_SEQUENCE_LSTM UNPACK VAR_HANDLE WHILE ZEROS_LIKE REDUCE_ALL""".split()
)
# custom codes TFLite Micro registers (detection post-processing, its signal library, Ethos-U)
TFLM_CUSTOM = frozenset(
    """TFLite_Detection_PostProcess CIRCULAR_BUFFER ethos-u SignalDelay SignalEnergy SignalFftAutoScale
    SignalFilterBank SignalFilterBankLog SignalFilterBankSpectralSubtraction SignalFilterBankSquareRoot
    SignalFramer SignalIrfft SignalOverlapAdd SignalPCAN SignalRfft SignalStacker SignalWindow""".split()
)


def builtin_names() -> frozenset[str]:
    """Every builtin operator name of the TFLite schema (to tell builtins from custom codes)."""
    return frozenset(k for k in vars(schema().BuiltinOperator) if not k.startswith("_"))


def tflm_gaps(graph: Graph) -> list[str]:
    """Why TFLite Micro cannot run a TFLite graph, as at most one line (empty when it can, or
    for other formats): builtin ops without a TFLM kernel (DENSIFY, ...), custom ops it does not
    register (naming the custom code), DEQUANTIZE of float16 weights (TFLM dequantizes only
    int8/int16/uint8; ``planner export --fold-fp16`` folds them into float32 weights)."""
    if graph.source is None or graph.source.format != "tflite":
        return []
    builtins = builtin_names()
    missing: dict[str, str] = {}
    fp16: list[str] = []
    for op in graph.ops:
        if op.type == "DEQUANTIZE" and any(graph.tensors[t].dtype == "float16" for t in op.inputs):
            fp16.append(op.name)
        elif op.type in builtins and op.type not in TFLM_BUILTINS:
            missing.setdefault(f"no kernel for {op.type}", op.name)
        elif op.type not in builtins and op.type not in TFLM_CUSTOM:
            missing.setdefault(f"custom op {op.type!r} is not registered", op.name)
    reasons = [f"{why} (op {name})" for why, name in missing.items()]
    if fp16:
        reasons.append(
            f"{len(fp16)} DEQUANTIZE op(s) of float16 weights (op {fp16[0]}; `planner export --fold-fp16` folds them)"
        )
    if not reasons:
        return []
    where = Path(graph.source.path).name if graph.source.path else graph.name
    return [f"{where}: TFLite Micro cannot run this model: {'; '.join(reasons)}"]


def fold_fp16_dequantize(model, subgraph: int = 0) -> dict[int, int]:
    """Fold float16 weights behind DEQUANTIZE into float32 weights, in place on a ModelT.

    The converter's "float16 quantization" stores weights as FLOAT16 constants, each read
    through a DEQUANTIZE to FLOAT32, which TFLite Micro cannot run (its DEQUANTIZE takes
    int8/int16/uint8 only). For every such op of `subgraph` (a constant FLOAT16 input, a
    FLOAT32 output that is not a subgraph output), the output tensor gets the dequantized
    values as its own constant buffer (float16 -> float32 is exact, so outputs are the
    same as dequantizing at run time) and the op is removed. Tensors keep their indices
    (and names); ops after a removed one move up. Returns old op index -> new op index
    for the ops kept."""
    import numpy as np

    sg = model.subgraphs[subgraph]
    tens = sg.tensors or []
    outputs = {int(i) for i in (sg.outputs if sg.outputs is not None else [])}
    removed: set[int] = set()
    for k, op in enumerate(sg.operators or []):
        if op_type_name(model, op) != "DEQUANTIZE" or op.inputs is None or op.outputs is None:
            continue
        if len(op.inputs) != 1 or len(op.outputs) != 1:
            continue
        src, dst = tens[int(op.inputs[0])], tens[int(op.outputs[0])]
        if tensor_type_name(src) != "FLOAT16" or tensor_type_name(dst) != "FLOAT32" or int(op.outputs[0]) in outputs:
            continue
        data = model.buffers[src.buffer].data if is_constant(model, src) else None
        if data is None:
            continue
        raw = np.asarray(data, dtype=np.uint8).tobytes()
        values = np.frombuffer(raw, dtype="<f2").astype("<f4")
        buf = schema().BufferT()
        buf.data = np.frombuffer(values.tobytes(), dtype=np.uint8)
        model.buffers.append(buf)
        dst.buffer = len(model.buffers) - 1
        removed.add(k)
    kept = [k for k in range(len(sg.operators or [])) if k not in removed]
    sg.operators = [sg.operators[k] for k in kept]
    return {old: new for new, old in enumerate(kept)}
