"""Write (and read back) one-subgraph TFLite flatbuffers from a plain dataclass description.

Why this exists: the planner writes .tflite files of its own -- the generated MCU zoo
(`planner.models.mcu_zoo`) and, later, transformed versions of models -- without TensorFlow.
The flatbuffer object API of the `tflite-micro` wheel (`schema_py_generated`) can pack a
model, but it speaks in flatbuffer indices, enum integers and option classes; this module
speaks in names:

- a `Tensor` is a name, a shape, a schema type name (``"INT8"``), optional quantisation
  (`Quant`: per-tensor or per-channel on `axis`) and, for constants, its data (a numpy
  array, stored little-endian in a buffer of its own);
- an `Operator` is a builtin name (``"CONV_2D"``) or a custom code, tensor names in and out
  (``None`` for an omitted optional input, index -1), its builtin options as a mapping of
  the schema's field names to values (enum fields take their names: ``{"padding": "SAME",
  "fusedActivationFunction": "RELU6"}``) and the operator-code version;
- a `Model` is tensors, operators, the subgraph's inputs and outputs, a description and
  metadata entries (name -> bytes, e.g. ``OfflineMemoryAllocation``).

`write(path_or_None, model) -> bytes` packs it. The output is a pure function of the
description: the same description gives the same bytes (tensors, buffers and operator codes
are laid out in the order given), which the zoo's cache and its tests rely on. Constant data
is aligned to 16 bytes in the file, as the TFLite converter does (schema ``force_align``),
so a runtime may read int32 biases in place on a core without unaligned loads. Operator
codes are one per (operator, version) pair in order of first use, with
``deprecated_builtin_code = min(code, 127)`` as the schema asks for old readers.

`read(path_or_bytes) -> Model` is the inverse for one-subgraph models without sparsity:
``write(None, read(b)) == b`` for files this module wrote, so a later step can read a
model, change it and write it back without knowing the flatbuffer.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["Quant", "Tensor", "Operator", "Model", "write", "read", "WriterError", "options_type"]

BUFFER_ALIGNMENT = 16  # the schema's force_align on Buffer.data
# schema type name -> numpy dtype of the constant data stored for it
NUMPY_DTYPES = {
    "FLOAT32": "<f4",
    "FLOAT16": "<f2",
    "FLOAT64": "<f8",
    "INT8": "i1",
    "UINT8": "u1",
    "INT16": "<i2",
    "UINT16": "<u2",
    "INT32": "<i4",
    "UINT32": "<u4",
    "INT64": "<i8",
    "UINT64": "<u8",
    "BOOL": "?",
}
# option fields whose values are schema enums (given by name), and the enum class of each
ENUM_FIELDS = {
    "padding": "Padding",
    "fusedActivationFunction": "ActivationFunctionType",
    "weightsFormat": "FullyConnectedOptionsWeightsFormat",
    "kernelType": "LSTMKernelType",
    "combiner": "CombinerType",
    "mode": "MirrorPadMode",
    "inDataType": "TensorType",
    "outDataType": "TensorType",
    "outputType": "TensorType",
    "outType": "TensorType",
    "idxOutType": "TensorType",
    "quantizedBiasType": "TensorType",
}
# builtins whose options table is not named after the operator
OPTIONS_EXCEPTIONS = {
    "AVERAGE_POOL_2D": "Pool2DOptions",
    "MAX_POOL_2D": "Pool2DOptions",
    "L2_POOL_2D": "Pool2DOptions",
    "L2_NORMALIZATION": "L2NormOptions",
    "MEAN": "ReducerOptions",
    "SUM": "ReducerOptions",
    "REDUCE_PROD": "ReducerOptions",
    "REDUCE_MAX": "ReducerOptions",
    "REDUCE_MIN": "ReducerOptions",
    "REDUCE_ANY": "ReducerOptions",
    "REDUCE_ALL": "ReducerOptions",
    "MAXIMUM": "MaximumMinimumOptions",
    "MINIMUM": "MaximumMinimumOptions",
    "UNIDIRECTIONAL_SEQUENCE_RNN": "SequenceRNNOptions",
}


class WriterError(ValueError):
    """The description cannot be written (an unknown tensor, op, option or type; data that
    does not fit its tensor): one line saying what and where."""


@dataclass(frozen=True)
class Quant:
    """Affine quantisation ``real = scale * (q - zero_point)``: one scale and zero point for
    the whole tensor, or one per index of dimension `axis` (per-channel weights)."""

    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    axis: int = 0

    @staticmethod
    def per_tensor(scale: float, zero_point: int) -> Quant:
        """One scale and zero point for the whole tensor (activations)."""
        return Quant((float(scale),), (int(zero_point),))


@dataclass
class Tensor:
    """One tensor of the subgraph; `data` makes it a constant (a weight, a shape operand)."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "INT8"  # the schema's TensorType name
    quant: Quant | None = None
    data: np.ndarray | None = None
    is_variable: bool = False


@dataclass
class Operator:
    """One operator: a builtin name (or a custom code with `custom`), its tensors by name,
    its builtin options by the schema's field names, and the operator-code version."""

    op: str
    inputs: list[str | None]
    outputs: list[str]
    options: Mapping[str, object] = field(default_factory=dict)
    version: int = 1
    custom: bool = False
    custom_options: bytes | None = None


@dataclass
class Model:
    """A one-subgraph model: what `write` packs and `read` returns."""

    tensors: list[Tensor]
    operators: list[Operator]
    inputs: list[str]
    outputs: list[str]
    description: str = ""
    subgraph_name: str = "main"
    metadata: dict[str, bytes] = field(default_factory=dict)


def _schema():
    """The object API of the tflite-micro wheel (a clear error when it is missing)."""
    from planner.models.tflite import schema

    return schema()


def _enum(cls_name: str, value: object, where: str) -> int:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    cls = getattr(_schema(), cls_name)
    try:
        return int(getattr(cls, str(value)))
    except AttributeError:
        known = ", ".join(k for k in vars(cls) if not k.startswith("_"))
        raise WriterError(f"{where}: {value!r} is not a {cls_name} ({known})") from None


def _camel(name: str) -> str:
    """Schema field names as the .fbs spells them (snake_case) or as the object API does."""
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def options_type(op: str) -> str | None:
    """The name of the builtin-options table of builtin `op` (``CONV_2D`` ->
    ``Conv2DOptions``), or None for operators that take none (RELU, LOGISTIC, ...)."""
    if op in OPTIONS_EXCEPTIONS:
        return OPTIONS_EXCEPTIONS[op]
    wanted = op.replace("_", "").lower() + "options"
    for name in vars(_schema().BuiltinOptions):
        if name.lower() == wanted:
            return name
    return None


def _options(o: Operator, where: str) -> tuple[int, object]:
    """(BuiltinOptions enum, options object) of a builtin operator: the schema's defaults
    with `o.options` set on top; every operator that has an options table gets one, as the
    converter writes them."""
    s = _schema()
    tname = options_type(o.op)
    if tname is None:
        if o.options:
            raise WriterError(f"{where}: {o.op} takes no builtin options, got {sorted(o.options)}")
        return 0, None
    obj = getattr(s, tname + "T")()
    for key, value in o.options.items():
        attr = _camel(key)
        if not hasattr(obj, attr):
            known = ", ".join(sorted(vars(obj)))
            raise WriterError(f"{where}: {tname} has no field {key!r} ({known})")
        if attr in ENUM_FIELDS:
            value = _enum(ENUM_FIELDS[attr], value, f"{where}: {key}")
        elif isinstance(value, (list, tuple, np.ndarray)):
            value = [v.item() if isinstance(v, np.generic) else v for v in value]
        elif isinstance(value, np.generic):
            value = value.item()
        setattr(obj, attr, value)
    return getattr(s.BuiltinOptions, tname), obj


class _AlignedBufferT:
    """A buffer whose data starts on a BUFFER_ALIGNMENT boundary in the file (the object
    API's own BufferT aligns to 1). Packs the same table as schema's BufferT."""

    def __init__(self, data: bytes):
        self.data = data

    def Pack(self, builder):  # noqa: N802 - the object API's method name
        """Pack the data vector aligned, then the Buffer table pointing at it."""
        s = _schema()
        builder.StartVector(1, len(self.data), BUFFER_ALIGNMENT)
        builder.head -= len(self.data)
        builder.Bytes[builder.head : builder.head + len(self.data)] = self.data
        vec = builder.EndVector()
        s.BufferStart(builder)
        s.BufferAddData(builder, vec)
        return s.BufferEnd(builder)


def _constant_bytes(t: Tensor, where: str) -> bytes:
    if t.dtype not in NUMPY_DTYPES:
        raise WriterError(f"{where}: constant data of type {t.dtype} is not supported")
    a = np.asarray(t.data)
    n = math.prod(t.shape)
    if a.size != n:
        raise WriterError(f"{where}: data has {a.size} values, shape {list(t.shape)} holds {n}")
    want = np.dtype(NUMPY_DTYPES[t.dtype])
    if a.dtype.kind != want.kind or a.dtype.itemsize != want.itemsize:
        raise WriterError(f"{where}: data is {a.dtype}, a {t.dtype} tensor stores {want}")
    return np.ascontiguousarray(a, dtype=want).tobytes()


def _tensor(t: Tensor, buffers: list, where: str):
    s = _schema()
    tt = s.TensorT()
    tt.name = t.name
    tt.shape = np.array(t.shape, dtype=np.int32)
    tt.type = _enum("TensorType", t.dtype, f"{where}: dtype")
    tt.isVariable = bool(t.is_variable)
    tt.buffer = 0
    if t.data is not None:
        buffers.append(_AlignedBufferT(_constant_bytes(t, where)))
        tt.buffer = len(buffers) - 1
    if t.quant is not None:
        q = s.QuantizationParametersT()
        q.scale = np.array(t.quant.scale, dtype=np.float32)
        q.zeroPoint = np.array(t.quant.zero_point, dtype=np.int64)
        q.quantizedDimension = int(t.quant.axis)
        if len(q.scale) != len(q.zeroPoint):
            raise WriterError(f"{where}: {len(q.scale)} scales but {len(q.zeroPoint)} zero points")
        tt.quantization = q
    return tt


def _operator(o: Operator, k: int, index: Mapping[str, int], codes: dict, code_list: list):
    s = _schema()
    where = f"operator {k} ({o.op})"
    key = (o.op, o.custom, o.version)
    if key not in codes:
        oc = s.OperatorCodeT()
        code = s.BuiltinOperator.CUSTOM if o.custom else _enum("BuiltinOperator", o.op, where)
        oc.builtinCode = code
        oc.deprecatedBuiltinCode = min(code, s.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES)
        oc.version = int(o.version)
        if o.custom:
            oc.customCode = o.op
        codes[key] = len(code_list)
        code_list.append(oc)
    op = s.OperatorT()
    op.opcodeIndex = codes[key]
    for attr, names in (("inputs", o.inputs), ("outputs", o.outputs)):
        missing = [n for n in names if n is not None and n not in index]
        if missing:
            raise WriterError(f"{where}: unknown tensor(s) {missing} in its {attr}")
        setattr(op, attr, np.array([-1 if n is None else index[n] for n in names], dtype=np.int32))
    if o.custom:
        if o.options:
            raise WriterError(f"{where}: a custom operator takes custom_options bytes, not builtin options")
        if o.custom_options is not None:
            op.customOptions = np.frombuffer(bytes(o.custom_options), dtype=np.uint8)
    else:
        op.builtinOptionsType, op.builtinOptions = _options(o, where)
    return op


def _model_t(m: Model):
    """The object-API ModelT of a description (checked: names unique and known)."""
    s = _schema()
    index: dict[str, int] = {}
    for i, t in enumerate(m.tensors):
        if t.name in index:
            raise WriterError(f"tensor {i}: the name {t.name!r} is used twice")
        index[t.name] = i
    model = s.ModelT()
    model.version = 3
    model.description = m.description or None
    model.buffers = [s.BufferT()]  # buffer 0: the empty sentinel every non-constant tensor points at
    sg = s.SubGraphT()
    sg.name = m.subgraph_name or None
    sg.tensors = [_tensor(t, model.buffers, f"tensor {t.name!r}") for t in m.tensors]
    codes: dict = {}
    model.operatorCodes = []
    sg.operators = [_operator(o, k, index, codes, model.operatorCodes) for k, o in enumerate(m.operators)]
    for attr, names in (("inputs", m.inputs), ("outputs", m.outputs)):
        missing = [n for n in names if n not in index]
        if missing:
            raise WriterError(f"subgraph {attr}: unknown tensor(s) {missing}")
        setattr(sg, attr, np.array([index[n] for n in names], dtype=np.int32))
    model.subgraphs = [sg]
    if m.metadata:
        model.metadata = []
        for name, data in m.metadata.items():
            md = s.MetadataT()
            md.name = name
            model.buffers.append(_AlignedBufferT(bytes(data)))
            md.buffer = len(model.buffers) - 1
            model.metadata.append(md)
    return model


def write(path: str | os.PathLike | None, model: Model) -> bytes:
    """Pack `model` as a .tflite flatbuffer; write it to `path` unless that is None; return
    the bytes (the same description always gives the same bytes)."""
    import flatbuffers

    b = flatbuffers.Builder(1 << 16)
    b.Finish(_model_t(model).Pack(b), file_identifier=b"TFL3")
    data = bytes(b.Output())
    if path is not None:
        Path(path).write_bytes(data)
    return data


def _options_dict(obj) -> dict[str, object]:
    """An options object as the field mapping `Operator.options` takes (enums as integers)."""
    out: dict[str, object] = {}
    for k, v in vars(obj).items():
        if isinstance(v, np.ndarray):
            v = [x.item() for x in v]
        elif isinstance(v, list):
            v = [x.item() if isinstance(x, np.generic) else x for x in v]
        elif isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out


def _read_tensor(model, t, name: str) -> Tensor:
    from planner.models.tflite import is_constant, tensor_type_name

    dtype = tensor_type_name(t)
    shape = tuple(int(d) for d in (t.shape if t.shape is not None else []))
    if t.sparsity is not None:
        raise WriterError(f"tensor {name!r} is sparse; sparse tensors are not supported")
    data = None
    if is_constant(model, t):
        raw = model.buffers[t.buffer].data
        if raw is None:
            raise WriterError(f"tensor {name!r}: data outside the flatbuffer is not supported")
        data = np.frombuffer(np.asarray(raw, dtype=np.uint8).tobytes(), dtype=NUMPY_DTYPES[dtype]).reshape(shape)
    quant = None
    q = t.quantization
    if q is not None and q.scale is not None and len(q.scale):
        zps = q.zeroPoint if q.zeroPoint is not None else [0] * len(q.scale)
        quant = Quant(tuple(float(x) for x in q.scale), tuple(int(x) for x in zps), int(q.quantizedDimension or 0))
    return Tensor(name, shape, dtype, quant, data, bool(t.isVariable))


def read(source: str | os.PathLike | bytes) -> Model:
    """The description of a one-subgraph .tflite (a path or its bytes). Refused with a
    WriterError: several subgraphs, sparse tensors, data outside the flatbuffer. Signature
    definitions are not kept (TFLite Micro does not read them)."""
    from planner.models.tflite import op_type_name, read_model, tensor_names

    if isinstance(source, (bytes, bytearray)):
        model = _schema().ModelT.InitFromPackedBuf(bytes(source), 0)
    else:
        model, _ = read_model(source)
    if len(model.subgraphs or []) != 1:
        raise WriterError(f"the model has {len(model.subgraphs or [])} subgraphs; only one-subgraph models are read")
    sg = model.subgraphs[0]
    names = tensor_names(model, 0)
    tensors = [_read_tensor(model, t, names[i]) for i, t in enumerate(sg.tensors or [])]
    ops = []
    for o in sg.operators or []:
        oc = model.operatorCodes[o.opcodeIndex]
        kind = op_type_name(model, o)
        custom = max(oc.builtinCode or 0, oc.deprecatedBuiltinCode or 0) == _schema().BuiltinOperator.CUSTOM
        ins = [None if int(i) < 0 else names[int(i)] for i in (o.inputs if o.inputs is not None else [])]
        outs = [names[int(i)] for i in (o.outputs if o.outputs is not None else [])]
        opts = {} if o.builtinOptions is None else _options_dict(o.builtinOptions)
        copts = None if o.customOptions is None else np.asarray(o.customOptions, dtype=np.uint8).tobytes()
        ops.append(Operator(kind, ins, outs, opts, int(oc.version), custom, copts))
    metadata = {}
    for md in model.metadata or []:
        raw = model.buffers[md.buffer].data
        metadata[_text(md.name)] = b"" if raw is None else np.asarray(raw, dtype=np.uint8).tobytes()
    return Model(
        tensors,
        ops,
        [names[int(i)] for i in sg.inputs],
        [names[int(i)] for i in sg.outputs],
        _text(model.description),
        _text(sg.name),
        metadata,
    )


def _text(b) -> str:
    if b is None:
        return ""
    return b.decode("utf-8", "replace") if isinstance(b, bytes) else str(b)
