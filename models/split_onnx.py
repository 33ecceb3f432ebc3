"""Splitting of ONNX models (DESIGN §7, issue 13): output-channel chunks and row stripes.

The TFLite half (planner/models/split.py) has the why; this is the same transformation for
an ONNX model (NCHW, batch 1), on the graph as imported (the model as written, or the graph
onnxruntime runs after its fusions: ``FusedConv``, ``FusedGemm``):

- **channels**: one Gemm / FusedGemm / MatMul with constant weights, or one Conv / FusedConv
  (group 1, any kernel: output channels need no halo), computed in k chunks of its output
  channels. Each chunk has its own initializers (its columns of B, its rows of W, its part
  of the bias), so with ``--weights load`` only one chunk's weights are in L1 at a time.
  The chunks are joined by a Concat along the channel axis: in NCHW at batch 1 a range of
  channels is contiguous, so each chunk is produced straight into its slot (the ``concat``
  relation of planner/sharing.py): the join moves no byte.
- **rows**: a run of Conv / FusedConv (any group: depthwise too) / MaxPool / AveragePool /
  Pad / element-wise ops / LRN / channel Concat between two single-tensor cuts of the model,
  computed in k stripes of the run's output rows. Each stripe reads its rows of the
  region's input with a Slice (halo included), every op runs on the rows it needs with
  explicit pads: the model's own pads where the stripe touches the tensor's border, none
  inside (auto_pad SAME_UPPER / SAME_LOWER resolved to explicit pads first), strides and
  dilations kept. Every output element is then computed from the same inputs by the same
  operator as in the model: for AveragePool the window over the border counts the same pad
  rows (``count_include_pad`` either way) and the windows inside the tensor count none.
  The stripes are joined by a Concat along H. In NCHW a range of rows is NOT contiguous
  (every channel holds its own rows), so that Concat and the Slices copy: all stripes of
  the output are live when they are joined, next to the output. A row split therefore
  only pays where the region's intermediates are much larger than twice its output
  (measured in experiments/results/split_onnx.md).

`regions` lists the candidates of a graph, `load_split` applies a list of `OnnxSplit`s and
imports the transformed model (written to ``$PLANNER_CACHE/split/<sha256>.onnx``) as a
Graph whose source is still the user's file, with an `OnnxSplitRecord` appended to its
transforms (the plan file's ``{"kind": "split", "method": "onnx-stripes", ...}``), from
which `reapply` makes the same model again for `planner run` and `planner export`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from planner.graph import Graph
from planner.sharing import ELEMENTWISE_OPS

from .split import SplitError, find_record
from .split import materialise as _materialise

__all__ = [
    "METHOD",
    "OnnxRegion",
    "OnnxSplit",
    "OnnxSplitRecord",
    "regions",
    "region_problem",
    "split_model",
    "load_split",
    "estimate",
    "recorded_splits",
    "split_record",
    "reapply",
    "base_model",
    "structure",
]

METHOD = "onnx-stripes"  # the plan file's ``method`` of an ONNX split
WINDOW_OPS = frozenset({"Conv", "FusedConv", "MaxPool", "AveragePool"})
# output row r depends on row r of every activation input (constants must not vary along H)
# (LRN normalises across channels at each pixel)
ROWWISE_OPS = frozenset(t for t in ELEMENTWISE_OPS if not t.isupper()) | frozenset({"Concat", "LRN"})
# nearest-neighbour upsampling by integer factors where output row r is input row r // factor
# (`_resize_map` says which modes): a stripe of it is exact
RESIZE_OPS = frozenset({"Resize"})
ROW_OPS = WINDOW_OPS | ROWWISE_OPS | RESIZE_OPS | {"Pad"}
CHANNEL_OPS = frozenset({"Gemm", "FusedGemm", "MatMul", "Conv", "FusedConv"})
DEFAULT_DOMAINS = ("", "ai.onnx")
MAX_REGION_OPS = 16


@dataclass(frozen=True)
class OnnxRegion:
    """Operators of the graph as imported (indices into ``graph.ops``, consecutive for rows)
    computed as one unit: `input` is the one activation they read from outside, `output`
    the one they leave (tensor names). ``channels``: one op in output-channel chunks."""

    ops: tuple[int, ...]
    input: str
    output: str
    kind: str = "rows"  # rows | channels


@dataclass(frozen=True)
class OnnxSplit:
    """A region in `stripes` row stripes (or output-channel chunks)."""

    region: OnnxRegion
    stripes: int


@dataclass(frozen=True, eq=False)
class OnnxSplitRecord:
    """What splitting did to an ONNX graph: the splits, the op names they covered (checked
    when the split is made again), the MACs before and after, and the transformed model
    (for the executor and the exporter; never written to the plan file)."""

    splits: tuple[OnnxSplit, ...]
    op_names: tuple[tuple[str, ...], ...] = ()
    macs_before: int = 0
    macs_after: int = 0
    model: Any = field(default=None, repr=False)  # onnx.ModelProto of the split model
    kind: str = "split"

    @property
    def applied(self) -> bool:
        """Whether any region was split."""
        return bool(self.splits)

    def to_dict(self) -> dict:
        """The plan file's ``transforms`` entry."""
        return {
            "kind": "split",
            "method": METHOD,
            "splits": [
                {
                    "ops": list(s.region.ops),
                    "op_names": list(names),
                    "input": s.region.input,
                    "output": s.region.output,
                    "stripes": s.stripes,
                    "split": s.region.kind,
                }
                for s, names in zip(self.splits, self.op_names, strict=True)
            ],
            "macs": {"before": self.macs_before, "after": self.macs_after},
        }


def _entry_splits(entry: Mapping) -> tuple[tuple[OnnxSplit, ...], tuple[tuple[str, ...], ...]]:
    """The splits (and op names) of a plan file's ONNX split entry (`SplitError` if malformed)."""
    try:
        splits = tuple(
            OnnxSplit(
                OnnxRegion(tuple(int(o) for o in s["ops"]), str(s["input"]), str(s["output"]), str(s["split"])),
                int(s["stripes"]),
            )
            for s in entry["splits"]
        )
        names = tuple(tuple(str(n) for n in s.get("op_names", ())) for s in entry["splits"])
    except (KeyError, TypeError, ValueError) as e:
        raise SplitError(f"plan file: malformed split entry ({type(e).__name__}: {e})") from None
    return splits, names


def split_record(graph: Graph) -> OnnxSplitRecord | Mapping | None:
    """The ONNX split record of a graph (a plan file's graph: its entry, a dict), or None."""
    return find_record(graph, OnnxSplitRecord, METHOD)


def recorded_splits(graph: Graph) -> tuple[OnnxSplit, ...]:
    """The ONNX splits a graph (imported, or read from a plan file) records; () if none."""
    rec = split_record(graph)
    if rec is None:
        return ()
    return rec.splits if isinstance(rec, OnnxSplitRecord) else _entry_splits(rec)[0]


# -- the model's structure ----------------------------------------------------------------------
def base_model(graph: Graph) -> onnx.ModelProto:
    """The model whose nodes the graph's ops are: onnxruntime's optimised model for a fused
    graph (its record carries it), else the model file."""
    from .fuse import fusion_of

    record = fusion_of(graph)
    if record is not None and record.applied:
        if record.model is None:
            raise SplitError("a fused graph read back from a plan file has no model to split: import it again")
        return record.model
    src = graph.source
    if src is None or src.format != "onnx" or not src.path:
        raise SplitError("ONNX splitting needs a graph imported from an .onnx file")
    return onnx.load(src.path)


class _Model:
    """The graph as imported and the model its nodes come from: shapes, kinds, attributes,
    constant values (initializers, Constant nodes, or folded by the importer)."""

    def __init__(self, graph: Graph, model: onnx.ModelProto | None = None):
        self.graph = graph
        self.model = base_model(graph) if model is None else model
        self.opset = next((o.version for o in self.model.opset_import if o.domain in DEFAULT_DOMAINS), 13)
        self._inits = {i.name: i for i in self.model.graph.initializer}
        self._values: dict[str, np.ndarray] = {}

    def op(self, k: int):
        return self.graph.ops[k]

    def node(self, k: int) -> onnx.NodeProto:
        return self.graph.ops[k].attrs["node"]

    def shape(self, t: str) -> tuple[int, ...]:
        return tuple(self.graph.tensors[t].shape or ())

    def is_const(self, t: str) -> bool:
        return self.graph.tensors[t].kind == "weight"

    def acts(self, k: int) -> list[str]:
        """Activation inputs of op k, in order, without repeats."""
        return [t for t in self.op(k).inputs if not self.is_const(t)]

    def out(self, k: int) -> str:
        return self.op(k).outputs[0]

    def attr(self, k: int, name: str, default=None):
        for a in self.node(k).attribute:
            if a.name == name:
                return helper.get_attribute_value(a)
        return default

    def value(self, t: str) -> np.ndarray:
        """A constant's value (cached): an initializer, a Constant node, else the importer's folding."""
        if t not in self._values:
            if t in self._inits:
                self._values[t] = numpy_helper.to_array(self._inits[t])
            else:
                node = next((n for n in self.model.graph.node if n.op_type == "Constant" and t in n.output), None)
                if node is not None:
                    from onnx.reference import ReferenceEvaluator

                    self._values[t] = np.asarray(ReferenceEvaluator(node).run(None, {})[0])
                else:
                    from .onnx import fold_constants

                    self._values[t] = np.asarray(fold_constants(self.graph, names=[t])[t])
        return self._values[t]


def structure(graph: Graph) -> _Model:
    """The graph with the model its nodes come from, read once: what `regions`, `estimate`
    and `region_problem` take to screen many candidates without reading the file again."""
    src = graph.source
    if src is None or src.format != "onnx" or not src.path:
        raise SplitError("ONNX splitting needs a graph imported from an .onnx file")
    return _Model(graph)


def _s(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


# -- how output rows map to input rows ----------------------------------------------------------
@dataclass(frozen=True)
class _Window:
    """Rows of the windowed input that output rows [lo, hi) read (before clipping): kernel,
    stride, dilation and the top pad, plus the pads along W (kept as the model has them)."""

    kernel: int = 1
    stride: int = 1
    dilation: int = 1
    top: int = 0
    left: int = 0
    right: int = 0

    def need(self, lo: int, hi: int) -> tuple[int, int]:
        """Input rows [a, b) that output rows [lo, hi) read; a < 0 or b > H where they pad."""
        eff = (self.kernel - 1) * self.dilation + 1
        return lo * self.stride - self.top, (hi - 1) * self.stride - self.top + eff


@dataclass(frozen=True)
class _Up:
    """Rows of the input that output rows [lo, hi) of a nearest-neighbour resize by `up` read."""

    up: int

    def need(self, lo: int, hi: int) -> tuple[int, int]:
        return lo // self.up, (hi - 1) // self.up + 1


# (coordinate_transformation_mode, nearest_mode) pairs under which an integer upsampling picks
# input row r // factor for output row r (checked for factors 1-8 over 80 rows)
EXACT_NEAREST = frozenset(
    {("asymmetric", "floor"), ("half_pixel", "round_prefer_floor"), ("pytorch_half_pixel", "round_prefer_floor")}
)


def _resize_map(m: _Model, k: int) -> _Up | str:
    """A Resize's row map (nearest, integer factors on H and W, N and C kept), or why not."""
    op = m.op(k)
    x, y = m.shape(m.node(k).input[0]), m.shape(m.out(k))
    mode = (
        _s(m.attr(k, "coordinate_transformation_mode", "half_pixel")),
        _s(m.attr(k, "nearest_mode", "round_prefer_floor")),
    )
    if _s(m.attr(k, "mode", "nearest")) != "nearest" or mode not in EXACT_NEAREST:
        return f"op {op.name} (Resize) is not a nearest-neighbour resize on whole input rows ({', '.join(mode)})"
    if m.attr(k, "antialias", 0) or m.attr(k, "axes", None) is not None or m.opset < 11:
        return f"op {op.name} (Resize) uses antialias, axes or an opset before 11"
    node = m.node(k)
    if any(t and not m.is_const(t) for t in node.input[1:]):
        return f"op {op.name} (Resize) has scales or sizes that are not constant"
    if len(x) != 4 or len(y) != 4 or x[:2] != y[:2] or y[2] % x[2] or y[3] % x[3]:
        return f"op {op.name} (Resize) does not upsample 1xCxHxW by integer factors"
    return _Up(y[2] // x[2])


def _explicit_pads(auto: str, pads, n_in: int, n_out: int, k: int, s: int, d: int, axis: int) -> tuple[int, int]:
    """(begin, end) pads of one spatial axis (0: H, 1: W), auto_pad resolved as onnxruntime does."""
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        total = max((n_out - 1) * s + (k - 1) * d + 1 - n_in, 0)
        small, big = total // 2, total - total // 2
        return (small, big) if auto == "SAME_UPPER" else (big, small)
    if auto == "VALID" or not pads:
        return 0, 0
    return int(pads[axis]), int(pads[axis + 2])


def _window(m: _Model, k: int) -> _Window | str:
    """The op's row window, or why its rows cannot be split."""
    op, kind = m.op(k), m.op(k).type
    x, y = m.shape(m.node(k).input[0]), m.shape(m.out(k))
    if len(x) != 4 or len(y) != 4 or x[0] != 1:
        return f"op {op.name} ({kind}) is not on 1xCxHxW tensors"
    if kind in ("Conv", "FusedConv"):
        w = m.shape(m.node(k).input[1])
        if len(w) != 4:
            return f"op {op.name} ({kind}) has no 2-D kernel"
        kh, kw = w[2], w[3]
    else:
        if len(op.outputs) != 1:
            return f"op {op.name} ({kind}) has an indices output"
        if m.attr(k, "ceil_mode", 0):
            return f"op {op.name} ({kind}) rounds its output size up (ceil_mode)"
        kh, kw = (int(v) for v in m.attr(k, "kernel_shape"))
    sh, sw = (int(v) for v in m.attr(k, "strides", [1, 1]))
    dh, dw = (int(v) for v in m.attr(k, "dilations", [1, 1]))
    auto, pads = _s(m.attr(k, "auto_pad", "NOTSET")), m.attr(k, "pads", None)
    top, _ = _explicit_pads(auto, pads, x[2], y[2], kh, sh, dh, 0)
    left, right = _explicit_pads(auto, pads, x[3], y[3], kw, sw, dw, 1)
    return _Window(kh, sh, dh, top, left, right)


def _pad_window(m: _Model, k: int) -> _Window | str:
    """A Pad op's window: constant mode, rows and columns only, no negative pads."""
    op = m.op(k)
    if _s(m.attr(k, "mode", "constant")) != "constant":
        return f"op {op.name} (Pad) pads by reflection or edge values"
    node = m.node(k)
    if m.opset < 11:
        pads = m.attr(k, "pads")
    elif len(node.input) > 1 and node.input[1] and m.is_const(node.input[1]):
        pads = [int(v) for v in m.value(node.input[1]).ravel()]
    else:
        return f"op {op.name} (Pad) has pads that are not constant"
    if len(node.input) > 3 and node.input[3]:
        return f"op {op.name} (Pad) pads chosen axes"
    if pads is None or len(pads) != 8 or any(p < 0 for p in pads) or pads[0] or pads[1] or pads[4] or pads[5]:
        return f"op {op.name} (Pad) pads other than rows and columns"
    return _Window(top=int(pads[2]), left=int(pads[3]), right=int(pads[7]))


def _rowwise_problem(m: _Model, k: int) -> str | None:
    """Why a row-wise op's output row r does not depend on row r of its inputs alone."""
    op, y = m.op(k), m.shape(m.out(k))
    if len(y) != 4 or y[0] != 1:
        return f"op {op.name} ({op.type}) is not on 1xCxHxW tensors"
    if op.type == "Concat":
        if int(m.attr(k, "axis", 1)) not in (1, -3):
            return f"op {op.name} (Concat) joins along axis {m.attr(k, 'axis')}, not channels"
        if any(m.is_const(t) or m.shape(t)[2:] != y[2:] for t in op.inputs):
            return f"op {op.name} (Concat) joins tensors of different rows or constants"
        return None
    for t in op.inputs:
        s = m.shape(t)
        if not m.is_const(t) and s != y:
            return f"op {op.name} ({op.type}) broadcasts an activation"
        if m.is_const(t) and op.type != "BatchNormalization" and len(s) >= 2 and s[-2] != 1:
            return f"op {op.name} ({op.type}) has a constant that varies along the rows"
    return None


def _row_map(m: _Model, k: int) -> _Window | None | str:
    """The window of a window op or Pad, None for a row-wise op, or why the op is not splittable."""
    op = m.op(k)
    if op.type not in ROW_OPS or op.attrs.get("domain", "ai.onnx") not in ("ai.onnx", "com.microsoft"):
        return f"op {op.name} ({op.type}) is not an operator rows can be split through"
    if len(op.outputs) != 1 and op.type not in ("MaxPool",):
        return f"op {op.name} ({op.type}) has several outputs"
    if op.type in WINDOW_OPS:
        return _window(m, k)
    if op.type == "Pad":
        return _pad_window(m, k)
    if op.type in RESIZE_OPS:
        return _resize_map(m, k)
    return _rowwise_problem(m, k)


def _windowed(m: _Model, k: int) -> str | None:
    """The input of op k its window slides over (None for row-wise ops)."""
    return m.node(k).input[0] if m.op(k).type in WINDOW_OPS | RESIZE_OPS | {"Pad"} else None


# -- candidate regions ----------------------------------------------------------------------------
def region_problem(m: _Model | Graph, region: OnnxRegion, stripes: int = 2) -> str | None:
    """Why `region` cannot be split into `stripes` stripes (or chunks), or None."""
    m = m if isinstance(m, _Model) else _Model(m)
    if not region.ops or any(not 0 <= k < len(m.graph.ops) for k in region.ops):
        return f"ops {list(region.ops)[:3]} are not ops of the model"
    if region.input not in m.graph.tensors or region.output not in m.graph.tensors:
        return f"tensors {region.input!r} and {region.output!r} are not both tensors of the model"
    if region.kind == "channels":
        return _channel_problem(m, region, stripes)
    if region.kind != "rows":
        return f"unknown split {region.kind!r}"
    ops = list(region.ops)
    if not ops or ops != list(range(ops[0], ops[-1] + 1)) or ops[-1] >= len(m.graph.ops):
        return "a region is a run of consecutive operators"
    inside = {m.op(k).name for k in ops}
    made = {m.out(k) for k in ops}
    for k in ops:
        rm = _row_map(m, k)
        if isinstance(rm, str):
            return rm
        if any(t not in made and t != region.input for t in m.acts(k)):
            return f"op {m.op(k).name} reads a tensor from outside the region besides its input"
    g = m.graph
    if region.output not in made or g.producer.get(region.input) in inside:
        return "the region's input and output must be its boundary tensors"
    for t in made - {region.output}:
        if g.tensors[t].kind == "output" or any(c not in inside for c in g.consumers.get(t, ())):
            return f"tensor {t} is used outside the region"
    h = m.shape(region.output)
    if len(h) != 4 or not 2 <= stripes <= h[2]:
        return f"the output has {h[2] if len(h) == 4 else '?'} rows, cannot make {stripes} stripes"
    maps = {k: _row_map(m, k) for k in ops}
    for rows in stripe_rows(h[2], stripes):
        for k, p in _plan_stripe(m, region, maps, rows).items():
            if any(a >= b for a, b in p.fed.values()):
                return f"in {stripes} stripes, op {m.op(k).name} would read no row of its input (only padding)"
    return None


def _channel_problem(m: _Model, region: OnnxRegion, chunks: int) -> str | None:
    """Why one op cannot be computed in `chunks` output-channel chunks, or None."""
    if len(region.ops) != 1:
        return "a channel split is one operator"
    (k,) = region.ops
    op, node = m.op(k), m.node(k)
    if op.type not in CHANNEL_OPS:
        return f"op {op.name} ({op.type}) has no output channels to split"
    ins = [t for t in node.input]
    if len(ins) < 2 or not m.is_const(ins[1]) or m.acts(k) != [ins[0]] or ins[0] != region.input:
        return f"op {op.name} ({op.type}) has no constant weights or more than one activation input"
    if region.output != m.out(k) or len(op.outputs) != 1:
        return f"op {op.name} ({op.type}) has other outputs"
    y, w = m.shape(m.out(k)), m.shape(ins[1])
    if op.type in ("Conv", "FusedConv"):
        if int(m.attr(k, "group", 1)) != 1 or len(ins) > 3 and ins[3] or len(y) < 3 or y[0] != 1:
            return f"op {op.name} ({op.type}) is grouped, adds a residual or is not at batch 1"
        n = y[1]
    else:
        if math.prod(y[:-1]) != 1 or len(w) != 2:
            return f"op {op.name} ({op.type}) is not one row of output channels"
        if op.type in ("Gemm", "FusedGemm") and m.attr(k, "transA", 0):
            return f"op {op.name} ({op.type}) transposes its input"
        n = y[-1]
    if len(ins) > 2 and ins[2] and not m.is_const(ins[2]):
        return f"op {op.name} ({op.type}) has a bias that is not constant"
    if not 2 <= chunks <= n:
        return f"{n} output channels cannot make {chunks} chunks"
    return None


def _cuts(m: _Model) -> dict[int, str]:
    """Point p (before op p) -> the one activation live across it, where there is one."""
    g = m.graph
    last: dict[str, int] = {}
    for k, o in enumerate(g.ops):
        for t in o.inputs:
            last[t] = k
    live = {t for t in g.inputs}
    cuts = {}
    for p in range(len(g.ops) + 1):
        live = {t for t in live if last.get(t, -1) >= p or g.tensors[t].kind == "output"}
        if len(live) == 1:
            cuts[p] = next(iter(live))
        if p < len(g.ops):
            live |= set(g.ops[p].outputs)
    return cuts


def regions(graph: Graph | _Model, max_ops: int = MAX_REGION_OPS) -> list[OnnxRegion]:
    """Every splittable region of an ONNX graph: runs of at most `max_ops` consecutive
    row-splittable ops between two single-tensor cuts, and each op with output channels."""
    m = graph if isinstance(graph, _Model) else structure(graph)
    graph = m.graph
    cut = _cuts(m)
    out = []
    for a, x in cut.items():
        for b, y in cut.items():
            if a < b <= a + max_ops and graph.producer.get(y) == graph.ops[b - 1].name:
                r = OnnxRegion(tuple(range(a, b)), x, y)
                if region_problem(m, r) is None:
                    out.append(r)
    for k, op in enumerate(graph.ops):
        if op.type in CHANNEL_OPS and m.acts(k):
            r = OnnxRegion((k,), m.acts(k)[0], m.out(k), "channels")
            if _channel_problem(m, r, 2) is None:
                out.append(r)
    return out


# -- stripe plans ---------------------------------------------------------------------------------
def stripe_rows(h: int, k: int) -> list[tuple[int, int]]:
    """k stripes of h rows, as even as can be."""
    bounds = [round(i * h / k) for i in range(k + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(k)]


@dataclass(frozen=True)
class _OpStripe:
    """Op k in one stripe: the output rows it computes, the rows of each activation input it
    is fed, and the pads (top, bottom) its window needs where those rows are outside."""

    rows: tuple[int, int]
    fed: dict
    pads: tuple[int, int] = (0, 0)


def _plan_stripe(m: _Model, region: OnnxRegion, maps: dict, rows: tuple[int, int]) -> dict[int, _OpStripe]:
    """op -> its part of the stripe of output rows `rows`, walking back from the output (a
    tensor is computed over the union of the rows its readers need)."""
    need: dict[str, tuple[int, int]] = {region.output: rows}
    plans: dict[int, _OpStripe] = {}
    for k in reversed(region.ops):
        y = m.out(k)
        lo, hi = need[y]
        win, fed, pads = _windowed(m, k), {}, (0, 0)
        for t in m.acts(k):
            if t == win:
                a, b = maps[k].need(lo, hi)
                h = m.shape(t)[2]
                pads = (max(-a, 0), max(b - h, 0))
                fed[t] = (max(a, 0), min(b, h))
            else:
                fed[t] = (lo, hi)
            r = fed[t]
            need[t] = (min(r[0], need[t][0]), max(r[1], need[t][1])) if t in need else r
        plans[k] = _OpStripe((lo, hi), fed, pads)
    return plans


# -- the transformation ---------------------------------------------------------------------------
class _Writer:
    """New nodes and initializers of the split model, with names that are not taken."""

    def __init__(self, m: _Model):
        self.m = m
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.shapes: dict[str, tuple[str, tuple[int, ...]]] = {}  # new tensor -> (like tensor, its shape)
        self.taken = {n.name for n in m.model.graph.node} | {o.name for o in m.graph.ops}
        self.taken |= {t for n in m.model.graph.node for t in n.output} | set(m.graph.tensors)
        self.taken |= {i.name for i in m.model.graph.initializer}

    def name(self, base: str) -> str:
        n, i = base, 1
        while n in self.taken:
            n, i = f"{base}_{i}", i + 1
        self.taken.add(n)
        return n

    def const(self, base: str, value: np.ndarray) -> str:
        name = self.name(base)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def tensor(self, base: str, like: str, shape: tuple[int, ...]) -> str:
        """A new tensor's name; it has `like`'s dtype and `shape` (declared in the model)."""
        y = self.name(base)
        self.shapes[y] = (self.shapes.get(like, (like,))[0], shape)
        return y

    def slice_rows(self, x: str, a: int, b: int, base: str) -> str:
        """Rows [a, b) of a 1xCxHxW tensor (axis 2), a copy in NCHW."""
        like = self.shapes[x] if x in self.shapes else (x, self.m.shape(x))
        y = self.tensor(base, like[0], (*like[1][:2], b - a, *like[1][3:]))
        if self.m.opset < 10:
            self.nodes.append(helper.make_node("Slice", [x], [y], self.name(y), starts=[a], ends=[b], axes=[2]))
        else:
            ins = [x] + [self.const(f"{y}/{k}", np.array([v], np.int64)) for k, v in (("starts", a), ("ends", b))]
            ins.append(self.const(f"{y}/axes", np.array([2], np.int64)))
            self.nodes.append(helper.make_node("Slice", ins, [y], self.name(y)))
        return y

    def concat(self, pieces: Sequence[str], y: str, axis: int, base: str) -> None:
        self.nodes.append(helper.make_node("Concat", list(pieces), [y], self.name(base), axis=axis))


def _set_attr(node: onnx.NodeProto, name: str, value) -> None:
    """`node` with attribute `name` set to `value` (replaced when present)."""
    kept = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend(kept)
    if value is not None:
        node.attribute.append(helper.make_attribute(name, value))


def _stripe_node(m: _Model, w: _Writer, k: int, p: _OpStripe, feeds: dict[str, str], y: str) -> None:
    """Op k on its stripe: inputs renamed to the stripe's tensors, pads made explicit."""
    node = copy.deepcopy(m.node(k))
    node.name = w.name(f"{node.name or m.op(k).name}/stripe")
    ins = [feeds.get(t, t) for t in node.input]
    if m.op(k).type == "Pad":
        _stripe_pad(m, w, k, node, ins, p.pads)
    elif m.op(k).type in WINDOW_OPS:
        win = _window(m, k)
        _set_attr(node, "auto_pad", None)
        _set_attr(node, "pads", [p.pads[0], win.left, p.pads[1], win.right])
    del node.input[:]
    node.input.extend(ins)
    del node.output[:]
    node.output.append(y)
    w.nodes.append(node)


def _stripe_resize(m: _Model, w: _Writer, k: int, feeds: dict[str, str], y: str, rows: int) -> None:
    """The model's Resize on a stripe's input rows: the same scales, or sizes for this stripe."""
    node = copy.deepcopy(m.node(k))
    node.name = w.name(f"{node.name or m.op(k).name}/stripe")
    ins = [feeds.get(t, t) for t in node.input]
    if len(ins) > 3 and ins[3]:  # sizes: N, C, this stripe's rows, W
        n, c, _, width = m.shape(m.out(k))
        ins[3] = w.const(f"{node.name}/sizes", np.array([n, c, rows, width], np.int64))
    del node.input[:]
    node.input.extend(ins)
    del node.output[:]
    node.output.append(y)
    w.nodes.append(node)


def _stripe_pad(m: _Model, w: _Writer, k: int, node: onnx.NodeProto, ins: list[str], rows: tuple[int, int]) -> None:
    """The model's Pad on a stripe: its own columns, its own rows only where the stripe
    touches the border."""
    win = _pad_window(m, k)
    pads = [0, 0, rows[0], win.left, 0, 0, rows[1], win.right]
    if m.opset < 11:
        _set_attr(node, "pads", pads)
    else:
        ins[1] = w.const(f"{node.name}/pads", np.array(pads, np.int64))


def _split_rows(m: _Model, w: _Writer, sp: OnnxSplit) -> None:
    """The nodes computing `sp.region` in row stripes, joined by a Concat along H."""
    region = sp.region
    maps = {k: _row_map(m, k) for k in region.ops}
    pieces = []
    h_in = m.shape(region.input)[2]
    for n, rows in enumerate(stripe_rows(m.shape(region.output)[2], sp.stripes)):
        plans = _plan_stripe(m, region, maps, rows)
        got: dict[str, tuple[str, tuple[int, int]]] = {region.input: (region.input, (0, h_in))}
        for k in region.ops:
            p = plans[k]
            feeds = {}
            for t, (a, b) in p.fed.items():
                have, (ha, hb) = got[t]
                feeds[t] = have if (a, b) == (ha, hb) else w.slice_rows(have, a - ha, b - ha, f"{t}/stripe{n}/rows")
            shape = m.shape(m.out(k))
            if m.op(k).type in RESIZE_OPS:  # whole input rows' worth, then the rows needed
                up, (a, b) = maps[k].up, p.fed[m.node(k).input[0]]
                full = w.tensor(f"{m.out(k)}/stripe{n}/up", m.out(k), (*shape[:2], (b - a) * up, *shape[3:]))
                _stripe_resize(m, w, k, feeds, full, (b - a) * up)
                y = (
                    full
                    if (a * up, b * up) == p.rows
                    else w.slice_rows(full, p.rows[0] - a * up, p.rows[1] - a * up, f"{m.out(k)}/stripe{n}")
                )
                got[m.out(k)] = (y, p.rows)
                continue
            y = w.tensor(f"{m.out(k)}/stripe{n}", m.out(k), (*shape[:2], p.rows[1] - p.rows[0], *shape[3:]))
            _stripe_node(m, w, k, p, feeds, y)
            got[m.out(k)] = (y, p.rows)
        pieces.append(got[region.output][0])
    w.concat(pieces, region.output, 2, f"{region.output}/join")


def _split_channels(m: _Model, w: _Writer, sp: OnnxSplit) -> None:
    """One op per chunk of output channels, each with its own initializers, joined by a
    Concat along the channel axis (each chunk produced into its slot)."""
    (k,) = sp.region.ops
    op, node = m.op(k), m.node(k)
    ins = list(node.input)
    wv = m.value(ins[1])
    bias = m.value(ins[2]) if len(ins) > 2 and ins[2] else None
    conv = op.type in ("Conv", "FusedConv")
    trans_b = not conv and op.type != "MatMul" and bool(m.attr(k, "transB", 0))
    y = m.out(k)
    n = m.shape(y)[1] if conv else m.shape(y)[-1]
    pieces = []
    for c, (lo, hi) in enumerate(stripe_rows(n, sp.stripes)):
        part = copy.deepcopy(node)
        part.name = w.name(f"{node.name or op.name}/chunk{c}")
        new = list(ins)
        rows = conv or trans_b  # the chunk's channels are rows of the weights, else columns
        new[1] = w.const(f"{ins[1]}/chunk{c}", wv[lo:hi] if rows else wv[..., lo:hi])
        if bias is not None:
            per_channel = bias.ndim >= 1 and bias.shape[-1] == n
            new[2] = w.const(f"{ins[2]}/chunk{c}", bias[..., lo:hi]) if per_channel else ins[2]
        full = m.shape(y)
        out = w.tensor(f"{y}/chunk{c}", y, (full[0], hi - lo, *full[2:]) if conv else (*full[:-1], hi - lo))
        del part.input[:]
        part.input.extend(new)
        del part.output[:]
        part.output.append(out)
        w.nodes.append(part)
        pieces.append(out)
    w.concat(pieces, y, 1 if conv else len(m.shape(y)) - 1, f"{y}/join")


def split_model(graph: Graph, splits: Sequence[OnnxSplit], model: onnx.ModelProto | None = None) -> onnx.ModelProto:
    """The model of `graph` (its base model, see `base_model`) with each split applied:
    each region's nodes replaced by its stripes (or chunks), nodes and initializers nothing
    reads any more dropped."""
    m = _Model(graph, model)
    splits = sorted(splits, key=lambda s: s.region.ops[0])
    for a, b in zip(splits, splits[1:], strict=False):
        if a.region.ops[-1] >= b.region.ops[0]:
            raise SplitError(f"regions at ops {a.region.ops[0]} and {b.region.ops[0]} overlap")
    for sp in splits:
        why = region_problem(m, sp.region, sp.stripes)
        if why:
            raise SplitError(f"cannot split ops {sp.region.ops[0]}..{sp.region.ops[-1]} into {sp.stripes}: {why}")
    out = onnx.ModelProto()
    out.CopyFrom(m.model)
    # IR 4 on: initializers need not be graph inputs (before it, shape inference ignores the
    # ones that are not, such as the chunks' and those onnxruntime's fusion folded)
    out.ir_version = max(out.ir_version, 4)
    g = out.graph
    # the graph's nodes were parsed from another copy of the model: find them by their outputs
    index = {o: i for i, n in enumerate(m.model.graph.node) for o in n.output if o}
    replaced: dict[int, list[onnx.NodeProto]] = {}
    w = _Writer(m)
    for sp in splits:
        start = len(w.nodes)
        (_split_channels if sp.region.kind == "channels" else _split_rows)(m, w, sp)
        at = [index[m.out(k)] for k in sp.region.ops]
        for i in at:
            replaced[i] = []
        replaced[min(at)] = w.nodes[start:]
    g.initializer.extend(w.inits)
    nodes = []
    for i, n in enumerate(g.node):
        nodes += replaced.get(i, [n])
    del g.node[:]
    g.node.extend(nodes)
    _drop_dead(g)
    _declare_shapes(g, m.graph, w.shapes)
    return out


def _declare_shapes(g: onnx.GraphProto, graph: Graph, new: Mapping[str, tuple[str, tuple[int, ...]]]) -> None:
    """Every tensor the split model's nodes make, declared with its shape (value_info): the
    graph's shapes for the model's own tensors, the stripes' and chunks' for the new ones.
    Shape inference knows no contrib op (FusedConv), so without them the importer would run
    the model to measure them."""
    outputs = {o.name for o in g.output}
    declared = {}
    for n in g.node:
        for t in n.output:
            like, shape = new.get(t, (t, graph.tensors[t].shape if t in graph.tensors else None))
            dtype = graph.tensors[like].dtype if like in graph.tensors else None
            if t and t not in outputs and shape is not None and dtype is not None:
                elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
                declared[t] = helper.make_tensor_value_info(t, elem, list(shape))
    kept = [v for v in g.value_info if v.name not in declared]
    del g.value_info[:]
    g.value_info.extend([*kept, *declared.values()])


def _drop_dead(g: onnx.GraphProto) -> None:
    """Drop nodes whose outputs nothing reads (the chunked weights' producers), then the
    initializers and value infos nothing refers to."""
    outputs = {o.name for o in g.output}
    while True:
        read = outputs | {t for n in g.node for t in n.input} | _subgraph_reads(g)
        keep = [n for n in g.node if any(o in read for o in n.output if o)]
        if len(keep) == len(g.node):
            break
        del g.node[:]
        g.node.extend(keep)
    made = {o for n in g.node for o in n.output}
    inits = [i for i in g.initializer if i.name in read]
    del g.initializer[:]
    g.initializer.extend(inits)
    vis = [v for v in g.value_info if v.name in made]
    del g.value_info[:]
    g.value_info.extend(vis)


def _subgraph_reads(g: onnx.GraphProto) -> set[str]:
    """Every name read inside the bodies of control-flow nodes (outer-scope reads included)."""
    out: set[str] = set()
    for n in g.node:
        for a in n.attribute:
            for body in [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs):
                out |= {t for b in body.node for t in b.input} | _subgraph_reads(body)
    return out


# -- estimates ------------------------------------------------------------------------------------
def estimate(graph: Graph, splits: Sequence[OnnxSplit], weights_in_l1: bool = False) -> tuple[int, tuple[int, ...]]:
    """(extra MACs, per split an estimate of its region's peak), from the shapes alone.

    Extra MACs are exact: a weighted op's MACs are proportional to its output rows
    (planner/macs.py), so a stripe computing r of H rows costs r/H of them. The peak counts
    the region's input whole, the stripes already made (they wait for the Concat, which
    copies), the current stripe's tensors live at once, and at the join twice the output;
    a channel split counts input and output whole and, where weights take L1, one chunk's."""
    from planner.macs import op_macs

    m = graph if isinstance(graph, _Model) else _Model(graph)
    extra, peaks = 0, []
    for sp in splits:
        why = region_problem(m, sp.region, sp.stripes)
        if why:
            raise ValueError(why)
        r = sp.region
        size = m.graph.size
        if r.kind == "channels":
            (k,) = r.ops
            w = sum(size(t) for t in m.op(k).inputs if m.is_const(t)) if weights_in_l1 else 0
            peaks.append(size(r.input) + size(r.output) + -(-w // sp.stripes))
            continue
        macs = {k: op_macs(m.graph, m.op(k)) for k in r.ops}
        e, p = _rows_estimate(m, sp, macs)
        extra += e
        peaks.append(p)
    return extra, tuple(peaks)


def _rows_estimate(m: _Model, sp: OnnxSplit, macs: dict[int, int]) -> tuple[int, int]:
    """(extra MACs, peak estimate) of one row split (see `estimate`)."""
    r = sp.region
    maps = {k: _row_map(m, k) for k in r.ops}
    row = {t: m.graph.size(t) // max(m.shape(t)[2], 1) for k in r.ops for t in (*m.acts(k), m.out(k))}
    last = {t: j for j, k in enumerate(r.ops) for t in m.acts(k)}
    extra = -sum(macs.values())
    done, peak = 0, 0
    for rows in stripe_rows(m.shape(r.output)[2], sp.stripes):
        plans = _plan_stripe(m, r, maps, rows)
        made = {r.input: (0, m.shape(r.input)[2]), **{m.out(k): plans[k].rows for k in r.ops}}
        live: dict[str, int] = {}
        for j, k in enumerate(r.ops):
            p, y = plans[k], m.out(k)
            extra += macs[k] * (p.rows[1] - p.rows[0]) // m.shape(y)[2]
            copies = sum((b - a) * row[t] for t, (a, b) in p.fed.items() if (a, b) != made[t])
            live[y] = (p.rows[1] - p.rows[0]) * row[y]
            peak = max(peak, m.graph.size(r.input) + done + sum(live.values()) + copies)
            live = {t: b for t, b in live.items() if last.get(t, -1) > j or t == r.output}
        done += live.get(r.output, 0)
    return extra, max(peak, 2 * m.graph.size(r.output))


# -- the transformed graph ------------------------------------------------------------------------
def materialise(model: onnx.ModelProto, where: Path | None = None) -> Path:
    """A file holding `model` (written once, atomically) in `where` (default the split
    cache folder), named by its sha256 (planner/models/split.py `materialise`)."""
    return _materialise(model.SerializeToString(), where, ".onnx")


SKELETON_BYTES = 1 << 16  # initializers larger than this are left out of a skeleton


def _skeleton(model: onnx.ModelProto, where: Path) -> Path:
    """A file in `where` with `model`'s nodes and shapes but not its large weights: each
    initializer over `SKELETON_BYTES` keeps its name, type and dims and loses its bytes.
    Importing it gives the split model's graph (sizes come from shapes; the importer reads
    values only of small constants such as shapes and slice bounds, and every tensor the
    nodes make is declared, `_declare_shapes`) in a fraction of the time a model with 200 MB
    of weights takes: what the search's many candidates are. The record keeps the model."""
    sk = onnx.ModelProto()
    sk.CopyFrom(model)
    for t in sk.graph.initializer:
        if len(t.raw_data) > SKELETON_BYTES:
            t.ClearField("raw_data")
    return materialise(sk, where)


def load_split(graph: Graph, splits: Sequence[OnnxSplit], where: Path | None = None) -> Graph:
    """`graph` (imported from an .onnx, fused or not) with `splits` applied: the split model
    imported, its source still the user's file (path, sha256, name as given, pins) with an
    `OnnxSplitRecord` appended to its transforms. No splits: `graph` itself. The split model
    is written to the cache folder, or for a search's candidates (`where` a folder) only as
    a skeleton without its large weights (`_skeleton`): the record holds the model."""
    from planner.macs import total_macs

    from .onnx import load_onnx

    if not splits:
        return graph
    src = graph.source
    model = split_model(graph, splits)
    path = materialise(model) if where is None else _skeleton(model, Path(where))
    g = load_onnx(path, input_shapes=dict(src.input_shapes), input_values=dict(src.input_values) or None)
    names = tuple(tuple(graph.ops[k].name for k in s.region.ops) for s in splits)
    record = OnnxSplitRecord(tuple(splits), names, total_macs(graph), total_macs(g), model)
    source = replace(src, transforms=(*src.transforms, record), notes=src.notes)
    return Graph(graph.name, g.tensors.values(), g.ops, source)


def reapply(graph: Graph, recorded: Graph) -> Graph:
    """`graph` (the model imported again as a plan was made: pins, fusion) split as the
    plan's graph `recorded` says (its ``transforms``), or `graph` itself when it records no
    ONNX split. `SplitError` when the recorded ops are not the graph's."""
    rec = split_record(recorded)
    if rec is None:
        return graph
    if isinstance(rec, OnnxSplitRecord):
        splits, names = rec.splits, rec.op_names
    else:
        splits, names = _entry_splits(rec)
    for sp, want in zip(splits, names, strict=True):
        have = tuple(graph.ops[k].name for k in sp.region.ops if k < len(graph.ops))
        if want and have != want:
            raise SplitError(f"the plan splits ops {list(want)[:3]}, which the model as imported does not have there")
    return load_split(graph, splits)
