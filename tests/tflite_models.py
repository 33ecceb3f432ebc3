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
