"""Tensors that may share bytes: the relations DESIGN §1 rule 3 (plan format v2) allows.

Runtimes do not give every tensor bytes of its own: a reshape's output is its input's
bytes reinterpreted, an element-wise op may write over an input nobody reads again, a
concat's inputs can be produced straight into their slots of the output, a split's
outputs are slices of the input. Each such relation says that a *child* tensor occupies
the bytes of a *parent* tensor starting `displacement` bytes into them:

- ``view``: the output of a reshape-like op is its input's bytes (displacement 0);
- ``slice``: an output of Split/Slice is a contiguous byte range of the input;
- ``concat``: each input of a concat is a contiguous byte range (its slot) of the output;
- ``inplace``: the output of an element-wise op overwrites an input of the same shape and
  dtype. Unlike the others it *writes* over the parent, so it is legal only where no
  later op reads the parent or anything else in those bytes (the simulator checks it).

A range is contiguous when every dimension before the sliced (or concatenated) axis is 1
in the tensor's row-major memory layout (the shape as the model stores it: ONNX NCHW at
batch 1 slicing channels is; TFLite NHWC slicing channels is not).

`relations(graph)` lists every relation the graph's op types, shapes and dtypes make
legal; it reads only what the plan file carries (op types, tensor shapes and dtypes, and
for Slice ops the resolved `slice` attribute), so the simulator can check a plan file's
shares without the model. The op tables follow the runtimes' kernels: TFLite Micro's
RESHAPE skips the copy when input and output alias, its element-wise kernels read
element i before writing element i, its CONCATENATION and SPLIT copy each slot onto
itself (tflite-micro, tensorflow/lite/micro/kernels and kernels/internal/reference).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from planner.graph import Graph, Op, Tensor

ShareKind = Literal["view", "slice", "concat", "inplace"]
SHARE_KINDS: tuple[str, ...] = get_args(ShareKind)
LEVEL_KINDS: dict[str, frozenset[str]] = {
    "none": frozenset(),
    "views": frozenset({"view", "slice"}),
    "all": frozenset(SHARE_KINDS),
}

# the output is the input's bytes reinterpreted (same bytes, same element size)
VIEW_OPS = frozenset(
    {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout", "RESHAPE", "SQUEEZE", "EXPAND_DIMS"}
)
# element i of the output depends on element i of the overwritten input only (and on
# broadcast operands, which are not overwritten): safe to compute in place
ELEMENTWISE_OPS = frozenset(
    {
        # ONNX
        "Add",
        "Sub",
        "Mul",
        "Div",
        "Relu",
        "LeakyRelu",
        "PRelu",
        "Clip",
        "Sigmoid",
        "HardSigmoid",
        "HardSwish",
        "Tanh",
        "Elu",
        "Selu",
        "Softplus",
        "Softsign",
        "Neg",
        "Abs",
        "Exp",
        "Log",
        "Sqrt",
        "Reciprocal",
        "Erf",
        "Floor",
        "Ceil",
        "Round",
        "Sign",
        "Max",
        "Min",
        "Pow",
        "BatchNormalization",
        # TFLite (kernels audited in tflite-micro: each reads element i before writing it)
        "ADD",
        "SUB",
        "MUL",
        "DIV",
        "RELU",
        "RELU6",
        "RELU_N1_TO_1",
        "LOGISTIC",
        "TANH",
        "HARD_SWISH",
        "LEAKY_RELU",
        "QUANTIZE",
    }
)
CONCAT_OPS = frozenset({"Concat", "CONCATENATION"})
SPLIT_OPS = frozenset({"Split", "SPLIT", "SPLIT_V"})
SLICE_OPS = frozenset({"Slice", "STRIDED_SLICE", "SLICE"})


@dataclass(frozen=True)
class Share:
    """`child` occupies `parent`'s bytes from `displacement` on, by `kind`, through op `op`
    (the op that makes the relation: the view / slice / in-place op producing the child,
    or the concat whose output is the parent)."""

    kind: ShareKind
    op: str
    child: str
    parent: str
    displacement: int = 0

    def to_dict(self) -> dict:
        """The share as the plan file writes it."""
        return {"kind": self.kind, "tensor": self.child, "in": self.parent, "at": self.displacement}


def _itemsize(t: Tensor) -> int | None:
    if t.dtype is None:
        return None
    try:
        return np.dtype(t.dtype).itemsize
    except TypeError:
        return None


def _same_layout(a: Tensor, b: Tensor) -> bool:
    """Same bytes, same element size: one can be read as the other."""
    return a.bytes == b.bytes and _itemsize(a) is not None and _itemsize(a) == _itemsize(b)


def _contiguous(shape: tuple[int, ...] | None, axis: int) -> bool:
    """A range along `axis` of a row-major tensor is contiguous when every dim before it is 1."""
    return shape is not None and 0 <= axis < len(shape) and math.prod(shape[:axis]) == 1


def _axis_between(whole: tuple[int, ...], part: tuple[int, ...]) -> int | None:
    """The one axis along which `part` is smaller than `whole` (None if not exactly one)."""
    if len(whole) != len(part):
        return None
    axes = [i for i, (w, p) in enumerate(zip(whole, part, strict=True)) if w != p]
    return axes[0] if len(axes) == 1 else None


def _stride_bytes(t: Tensor, axis: int) -> int:
    """Bytes between consecutive indices along `axis` (row-major)."""
    return t.bytes // math.prod(t.shape[: axis + 1]) if t.shape and math.prod(t.shape[: axis + 1]) else 0


def _activation(graph: Graph, name: str) -> bool:
    return graph.tensors[name].kind in ("activation", "output", "input")


def _data_input(graph: Graph, op: Op, size: int) -> str | None:
    """The input of `op` whose bytes the outputs cut (not a weight; `size` bytes)."""
    cands = [t for t in dict.fromkeys(op.inputs) if graph.tensors[t].kind != "weight" and graph.size(t) == size]
    return cands[0] if len(cands) == 1 else None


def _view(graph: Graph, op: Op) -> list[Share]:
    if len(op.outputs) != 1:
        return []
    y = graph.tensors[op.outputs[0]]
    x = _data_input(graph, op, y.bytes)
    if x is None or not _same_layout(graph.tensors[x], y):
        return []
    return [Share("view", op.name, y.name, x)]


def _inplace(graph: Graph, op: Op) -> list[Share]:
    if len(op.outputs) != 1:
        return []
    y = graph.tensors[op.outputs[0]]
    out = []
    for x in dict.fromkeys(op.inputs):
        t = graph.tensors[x]
        if t.kind != "weight" and t.shape == y.shape and t.dtype == y.dtype and t.bytes == y.bytes:
            out.append(Share("inplace", op.name, y.name, x))
    return out


def _split(graph: Graph, op: Op) -> list[Share]:
    outs = [graph.tensors[t] for t in op.outputs]
    x = _data_input(graph, op, sum(t.bytes for t in outs))
    if x is None or any(t.shape is None for t in outs):
        return []
    whole = graph.tensors[x]
    axis = next((a for t in outs if (a := _axis_between(whole.shape or (), t.shape)) is not None), None)
    if axis is None or not _contiguous(whole.shape, axis) or any(_itemsize(t) != _itemsize(whole) for t in outs):
        return []
    shares, disp = [], 0
    for t in outs:
        if any(w != p for i, (w, p) in enumerate(zip(whole.shape, t.shape, strict=True)) if i != axis):
            return []
        shares.append(Share("slice", op.name, t.name, x, disp))
        disp += t.bytes
    return shares


def _slice(graph: Graph, op: Op) -> list[Share]:
    spec = op.attrs.get("slice")  # (axis, start) resolved by the importer: step 1, one axis
    if spec is None or len(op.outputs) != 1:
        return []
    axis, start = int(spec[0]), int(spec[1])
    y = graph.tensors[op.outputs[0]]
    data = [t for t in dict.fromkeys(op.inputs) if graph.tensors[t].kind != "weight"]
    if len(data) != 1:
        return []
    x = graph.tensors[data[0]]
    if y.shape is None or x.shape is None or _axis_between(x.shape, y.shape) not in (axis, None):
        return []
    if not _contiguous(x.shape, axis) or _itemsize(x) != _itemsize(y):
        return []
    if start < 0 or start + y.shape[axis] > x.shape[axis]:
        return []
    return [Share("slice", op.name, y.name, x.name, start * _stride_bytes(x, axis))]


def _concat(graph: Graph, op: Op) -> list[Share]:
    if len(op.outputs) != 1 or len(set(op.inputs)) != len(op.inputs):
        return []
    z = graph.tensors[op.outputs[0]]
    ins = [graph.tensors[t] for t in op.inputs]
    if z.shape is None or any(t.shape is None or t.kind == "weight" for t in ins):
        return []
    if sum(t.bytes for t in ins) != z.bytes or any(_itemsize(t) != _itemsize(z) for t in ins):
        return []
    axis = next((a for t in ins if (a := _axis_between(z.shape, t.shape)) is not None), None)
    if axis is None or not _contiguous(z.shape, axis):
        return []
    shares, disp = [], 0
    for t in ins:
        shares.append(Share("concat", op.name, t.name, z.name, disp))
        disp += t.bytes
    return shares


def op_relations(graph: Graph, op: Op) -> list[Share]:
    """Every relation op `op` makes legal (static conditions only; see module docstring)."""
    if op.attrs.get("nested") or op.attrs.get("pseudo"):
        return []
    if any(not _activation(graph, t) for t in op.outputs):
        return []
    if op.type in VIEW_OPS:
        return _view(graph, op)
    if op.type in ELEMENTWISE_OPS:
        return _inplace(graph, op)
    if op.type in SPLIT_OPS:
        return _split(graph, op)
    if op.type in SLICE_OPS:
        return _slice(graph, op)
    if op.type in CONCAT_OPS:
        return _concat(graph, op)
    return []


def relations(graph: Graph, kinds: Iterable[str] = SHARE_KINDS) -> list[Share]:
    """Every relation the graph makes legal, of the given kinds, in op order."""
    kinds = set(kinds)
    return [s for o in graph.ops for s in op_relations(graph, o) if s.kind in kinds]


def relation_index(graph: Graph) -> dict[tuple[str, str, str], Share]:
    """(kind, child, parent) -> the legal relation: what the simulator checks shares against."""
    return {(s.kind, s.child, s.parent): s for s in relations(graph)}
