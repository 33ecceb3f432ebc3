"""Tiny .tflite models built with the flatbuffer object API of the tflite-micro wheel
(`schema_py_generated`), for tests that need a model the zoo does not ship: one larger than
TFLM's old fixed 8 MiB arena, float16 weights behind DEQUANTIZE, ops TFLM has no kernel for.

`build(...)` takes tensors, operators and the subgraph's inputs/outputs and writes a file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


def schema():
    """The object API, or skip the calling test when the wheel is missing."""
    import pytest

    try:
        from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as s
    except ImportError:
        pytest.skip("needs the tflite-micro wheel: pip install --no-deps tflite-micro")
    return s


@dataclass
class T:
    """A tensor: name, shape, schema type name (FLOAT32, FLOAT16, INT8...) and constant data."""

    name: str
    shape: tuple[int, ...]
    type: str = "FLOAT32"
    data: np.ndarray | None = None


@dataclass
class Op:
    """An operator: builtin name (or custom code when `custom`), input and output tensor names."""

    kind: str
    inputs: list[str]
    outputs: list[str]
    custom: bool = False
    options: object = field(default=None)


def build(path: Path, tensors: list[T], ops: list[Op], inputs: list[str], outputs: list[str]) -> Path:
    """Write a one-subgraph .tflite with these tensors and operators."""
    import flatbuffers

    s = schema()
    m = s.ModelT()
    m.version = 3
    m.buffers = [s.BufferT()]  # buffer 0: the empty sentinel
    index = {t.name: i for i, t in enumerate(tensors)}
    sg = s.SubGraphT()
    sg.tensors = []
    for t in tensors:
        tt = s.TensorT()
        tt.name = t.name
        tt.shape = np.array(t.shape, dtype=np.int32)
        tt.type = getattr(s.TensorType, t.type)
        tt.buffer = 0
        if t.data is not None:
            b = s.BufferT()
            b.data = np.frombuffer(np.ascontiguousarray(t.data).tobytes(), dtype=np.uint8)
            m.buffers.append(b)
            tt.buffer = len(m.buffers) - 1
        sg.tensors.append(tt)
    codes: dict[tuple[str, bool], int] = {}
    m.operatorCodes = []
    sg.operators = []
    for o in ops:
        key = (o.kind, o.custom)
        if key not in codes:
            oc = s.OperatorCodeT()
            code = s.BuiltinOperator.CUSTOM if o.custom else getattr(s.BuiltinOperator, o.kind)
            oc.builtinCode = code
            oc.deprecatedBuiltinCode = min(code, 127)
            oc.version = 1
            if o.custom:
                oc.customCode = o.kind
            codes[key] = len(m.operatorCodes)
            m.operatorCodes.append(oc)
        op = s.OperatorT()
        op.opcodeIndex = codes[key]
        op.inputs = np.array([index[n] for n in o.inputs], dtype=np.int32)
        op.outputs = np.array([index[n] for n in o.outputs], dtype=np.int32)
        if o.options is not None:
            op.builtinOptionsType, op.builtinOptions = o.options
        sg.operators.append(op)
    sg.inputs = np.array([index[n] for n in inputs], dtype=np.int32)
    sg.outputs = np.array([index[n] for n in outputs], dtype=np.int32)
    m.subgraphs = [sg]
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    path.write_bytes(bytes(b.Output()))
    return path


def add_options():
    """(type, options) of an ADD without a fused activation."""
    s = schema()
    o = s.AddOptionsT()
    return s.BuiltinOptions.AddOptions, o


def fc_options():
    """(type, options) of a FULLY_CONNECTED with default options."""
    s = schema()
    return s.BuiltinOptions.FullyConnectedOptions, s.FullyConnectedOptionsT()


def big_add_model(path: Path, n: int) -> Path:
    """y = (x + x) + x over n float32 values: an arena of about 3 * 4n bytes."""
    tensors = [T("x", (1, n)), T("a", (1, n)), T("y", (1, n))]
    ops = [Op("ADD", ["x", "x"], ["a"], options=add_options()), Op("ADD", ["a", "x"], ["y"], options=add_options())]
    return build(path, tensors, ops, ["x"], ["y"])


def fp16_fc_model(path: Path, seed: int = 0) -> tuple[Path, np.ndarray, np.ndarray]:
    """y = relu-free FULLY_CONNECTED(x, DEQUANTIZE(w16), DEQUANTIZE(b16)) with float16 weights, the
    converter's "float16 quantization"; returns the path and the float32 values of w and b."""
    rng = np.random.default_rng(seed)
    w16 = rng.standard_normal((3, 8)).astype(np.float16)
    b16 = rng.standard_normal((3,)).astype(np.float16)
    tensors = [
        T("x", (1, 8)),
        T("w16", (3, 8), "FLOAT16", w16),
        T("b16", (3,), "FLOAT16", b16),
        T("w", (3, 8)),
        T("b", (3,)),
        T("h", (1, 3)),
        T("y", (1, 3)),
    ]
    ops = [
        Op("DEQUANTIZE", ["w16"], ["w"]),
        Op("DEQUANTIZE", ["b16"], ["b"]),
        Op("FULLY_CONNECTED", ["x", "w", "b"], ["h"], options=fc_options()),
        Op("ADD", ["h", "h"], ["y"], options=add_options()),
    ]
    return build(path, tensors, ops, ["x"], ["y"]), w16.astype(np.float32), b16.astype(np.float32)


def _conv_options(stride: int = 1, padding: str = "SAME", act: int = 0, depthwise: bool = False):
    s = schema()
    o = s.DepthwiseConv2DOptionsT() if depthwise else s.Conv2DOptionsT()
    o.padding = getattr(s.Padding, padding)
    o.strideH = o.strideW = stride
    o.fusedActivationFunction = act
    o.dilationHFactor = o.dilationWFactor = 1
    if depthwise:
        o.depthMultiplier = 1
        return s.BuiltinOptions.DepthwiseConv2DOptions, o
    return s.BuiltinOptions.Conv2DOptions, o


def _pool_options(k: int, stride: int, padding: str):
    s = schema()
    o = s.Pool2DOptionsT()
    o.padding = getattr(s.Padding, padding)
    o.strideH = o.strideW = stride
    o.filterHeight = o.filterWidth = k
    return s.BuiltinOptions.Pool2DOptions, o


def stripe_model(path: Path, size: int = 20, seed: int = 0, avg_pool: str = "") -> Path:
    """A float32 CNN to split in row stripes: conv 3x3 (ReLU) -> depthwise 3x3 -> residual
    ADD -> conv 3x3 stride 2 -> max pool 3x3 stride 2 SAME (or average pool, VALID) ->
    conv 1x1 VALID; SAME padding everywhere else, so every border case of a stripe occurs.
    `avg_pool` ("VALID" or "SAME") puts an average pool of that padding in the max pool's place."""
    rng = np.random.default_rng(seed)

    def w(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    h = size
    h2 = -(-h // 2)
    h4 = -(-h2 // 2)
    if avg_pool == "VALID":
        h4 = (h2 - 3) // 2 + 1
    ts = [
        T("x", (1, h, h, 3)),
        T("w1", (8, 3, 3, 3), data=w(8, 3, 3, 3)),
        T("b1", (8,), data=w(8)),
        T("a", (1, h, h, 8)),
        T("w2", (1, 3, 3, 8), data=w(1, 3, 3, 8)),
        T("b2", (8,), data=w(8)),
        T("b", (1, h, h, 8)),
        T("c", (1, h, h, 8)),
        T("w3", (8, 3, 3, 8), data=w(8, 3, 3, 8)),
        T("b3", (8,), data=w(8)),
        T("d", (1, h2, h2, 8)),
        T("e", (1, h4, h4, 8)),
        T("w4", (4, 1, 1, 8), data=w(4, 1, 1, 8)),
        T("b4", (4,), data=w(4)),
        T("y", (1, h4, h4, 4)),
    ]
    pool = (
        ("AVERAGE_POOL_2D", _pool_options(3, 2, "VALID")) if avg_pool else ("MAX_POOL_2D", _pool_options(3, 2, "SAME"))
    )
    ops = [
        Op("CONV_2D", ["x", "w1", "b1"], ["a"], options=_conv_options(act=1)),
        Op("DEPTHWISE_CONV_2D", ["a", "w2", "b2"], ["b"], options=_conv_options(depthwise=True)),
        Op("ADD", ["a", "b"], ["c"], options=add_options()),
        Op("CONV_2D", ["c", "w3", "b3"], ["d"], options=_conv_options(stride=2)),
        Op(pool[0], ["d"], ["e"], options=pool[1]),
        Op("CONV_2D", ["e", "w4", "b4"], ["y"], options=_conv_options(padding="VALID")),
    ]
    return build(path, ts, ops, ["x"], ["y"])


def resize_model(path: Path, size: int = 9, seed: int = 0, half_pixel: bool = False) -> Path:
    """A float32 decoder-like CNN to split through a nearest-neighbour resize: conv 3x3 ->
    RESIZE_NEAREST_NEIGHBOR x2 (half-pixel centres or not) -> conv 3x3 -> conv 1x1, SAME."""
    s = schema()
    rng = np.random.default_rng(seed)

    def w(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    h = size
    ts = [
        T("x", (1, h, h, 3)),
        T("w1", (6, 3, 3, 3), data=w(6, 3, 3, 3)),
        T("b1", (6,), data=w(6)),
        T("a", (1, h, h, 6)),
        T("size", (2,), "INT32", data=np.array([2 * h, 2 * h], dtype=np.int32)),
        T("u", (1, 2 * h, 2 * h, 6)),
        T("w2", (4, 3, 3, 6), data=w(4, 3, 3, 6)),
        T("b2", (4,), data=w(4)),
        T("c", (1, 2 * h, 2 * h, 4)),
        T("w3", (2, 1, 1, 4), data=w(2, 1, 1, 4)),
        T("b3", (2,), data=w(2)),
        T("y", (1, 2 * h, 2 * h, 2)),
    ]
    o = s.ResizeNearestNeighborOptionsT()
    o.alignCorners = False
    o.halfPixelCenters = half_pixel
    ops = [
        Op("CONV_2D", ["x", "w1", "b1"], ["a"], options=_conv_options(act=1)),
        Op("RESIZE_NEAREST_NEIGHBOR", ["a", "size"], ["u"], options=(s.BuiltinOptions.ResizeNearestNeighborOptions, o)),
        Op("CONV_2D", ["u", "w2", "b2"], ["c"], options=_conv_options(act=1)),
        Op("CONV_2D", ["c", "w3", "b3"], ["y"], options=_conv_options(padding="VALID")),
    ]
    return build(path, ts, ops, ["x"], ["y"])
