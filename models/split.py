"""Row-stripe splitting of TFLite models (DESIGN §7): a region of spatial operators is
computed in k horizontal stripes of its output, so that its intermediate tensors exist one
stripe at a time instead of whole.

Why: no plan can use less memory than the largest working set of one operator (its inputs
and outputs resident together). Splitting changes the graph so that the big intermediates
of a region (e.g. the expanded tensor of an inverted residual) are never whole: stripe s
of the region's output needs a range of rows of each tensor inside, the range grows by the
kernel's halo at every convolution on the way back to the region's input, and the
overlapping rows of neighbouring stripes are computed twice (the MAC overhead, counted
exactly by `planner.macs`).

The transformed model is a real TFLite model that an unchanged TFLite Micro runs:

- the region's input X is cut with STRIDED_SLICE (rows only: a contiguous byte range in
  NHWC at batch 1, so the planner keeps it as a view of X, planner/sharing.py ``slice``);
- every operator of the region runs once per stripe on the rows it needs; a convolution
  or pooling with SAME padding becomes VALID behind an explicit PAD that adds exactly the
  zeros SAME would (the width padding always, the top rows in the first stripe, the
  bottom rows in the last). For int8, PAD fills with the zero point, the value a SAME
  convolution's reference kernel treats out-of-bounds input as; max pooling pads with
  the type's lowest value through PADV2, which a maximum never picks over a real input.
  AVERAGE_POOL_2D with padding is refused (its divisor counts only real inputs);
- a RESIZE_NEAREST_NEIGHBOR by integer factors (output row r is input row r // factor, with
  or without half-pixel centres) runs on whole input rows, with a size constant of its
  own per stripe; the rows it makes beyond the stripe's are cut off like a SAME op's, so a
  region does not end at one;
- a tensor read at a smaller range than it was computed over (a residual ADD reading its
  skip input, whose stripe carries the halo of the convolution it also feeds) is cut to
  the rows read with another STRIDED_SLICE (again a view);
- the output stripes are joined by CONCATENATION along the rows into the region's output
  tensor, each stripe produced straight into its slot (the ``concat`` relation).

Every stripe tensor keeps the quantisation of the tensor it is a stripe of, so the
arithmetic of every output element is the one of the original model: outputs are
bit-identical (the proof runs both models in TFLM, planner/tflm_check.py).

A region is a run of consecutive operators (in the model's order) with one input tensor
from outside (constants aside) and one output tensor used outside; `regions` lists the
candidates of a model, `split_model` applies a list of `StripeSplit`s and returns the new
flatbuffer, `SplitRecord` says what was done (the plan file's ``transforms`` entry), and
`load_split` imports the transformed model as a Graph whose source is still the user's
file (path and sha256), the way fusion does.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from planner.graph import Graph
from planner.sharing import ELEMENTWISE_OPS

from .cache import cache_root, write_atomically
from .errors import ModelError

__all__ = [
    "SPLIT_METHODS",
    "Region",
    "StripeSplit",
    "SplitRecord",
    "SplitError",
    "regions",
    "region_problem",
    "split_model",
    "load_split",
    "find_record",
    "split_of",
    "recorded_splits",
    "Estimator",
    "Estimate",
]

SPLIT_METHODS = ("auto", "none")  # what --split accepts
METHOD = "row-stripes"  # the plan file's ``method`` of a TFLite split
# operators whose output row r depends on a window of input rows (kernel, stride, dilation)
WINDOW_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D"})
PAD_OPS = frozenset({"PAD", "PADV2"})
# operators whose output row r depends on row r of each activation input only: TFLite's
# element-wise ops (planner/sharing.py audited their kernels), a few binary ones, and the
# channel concatenation
ROWWISE_OPS = frozenset(t for t in ELEMENTWISE_OPS if t.isupper()) | frozenset(
    {"MAXIMUM", "MINIMUM", "PRELU", "DEQUANTIZE", "CONCATENATION"}
)
# nearest-neighbour upsampling by an integer factor: output row r is input row r // factor,
# with or without half-pixel centres (TFLM's kernel), so a stripe of it is exact
RESIZE_OPS = frozenset({"RESIZE_NEAREST_NEIGHBOR"})
SPLITTABLE_OPS = WINDOW_OPS | PAD_OPS | ROWWISE_OPS | RESIZE_OPS
MAX_CONCAT = 10  # TFLite Micro's CONCATENATION takes at most 10 inputs (kMaxInputNum, concatenation.cc)
MAX_STRIPES = MAX_CONCAT * MAX_CONCAT  # more than 10 stripes are joined in groups, then the groups


class SplitError(ModelError):
    """A split cannot be applied to this model (one line saying which region and why)."""


@dataclass(frozen=True)
class Region:
    """Consecutive operators (flatbuffer indices of subgraph 0, in order) computed as one
    unit: `input` is the one activation they read from outside, `output` the one they
    leave for the rest of the model (tensor indices). A ``channels`` region is one
    FULLY_CONNECTED computed in chunks of its output channels (`StripeSplit.stripes` of
    them), each with its slice of the weights: where weights are loaded into L1
    (``--weights load``) only one chunk's weights are there at a time."""

    ops: tuple[int, ...]
    input: int
    output: int
    kind: str = "rows"  # rows: row stripes; channels: one FULLY_CONNECTED in output-channel chunks


@dataclass(frozen=True)
class StripeSplit:
    """A region computed in `stripes` row stripes of its output; with `cache` the halo rows a
    stripe shares with the previous one are copied from it (a CONCATENATION of the cached
    rows and the new ones) instead of computed again: no extra MACs, one more stripe buffer
    live while the next stripe starts."""

    region: Region
    stripes: int
    cache: bool = False  # rows the previous stripe computed are reused, not computed again
    # SAME window ops run SAME on a stripe's rows where they can, computing a row or two more
    # than it needs (no PAD copy: less memory, more MACs); False: every window op computes
    # exactly its rows behind a PAD (with `cache`, no MAC more at all)
    same: bool = True
    # stripe boundaries fall on multiples of this many bytes into the output where the rows
    # allow (`stripe_bounds`): a slot at an unaligned displacement cannot be shared at an
    # aligned arena (storage drops the concat's in-place relation), so the search passes the
    # target's alignment; 1 is the plain even partition (plan files without ``align``)
    align: int = 1


@dataclass(frozen=True, eq=False)
class SplitRecord:
    """What splitting did to a model: the splits (empty when none was applied), the MACs
    before and after (`planner.macs`), and the transformed flatbuffer (for the exporter and
    TFLM). ``to_dict`` is the plan file's ``transforms`` entry, from which `split_model`
    makes the same model again."""

    splits: tuple[StripeSplit, ...]
    tensor_names: tuple[tuple[str, str], ...] = ()  # per split: (input name, output name)
    macs_before: int = 0
    macs_after: int = 0
    model: bytes = field(default=b"", repr=False)
    kind: str = "split"

    @property
    def applied(self) -> bool:
        """Whether any region was split."""
        return bool(self.splits)

    @property
    def mac_overhead(self) -> float:
        """Extra MACs of the split model, as a fraction of the original's."""
        return (self.macs_after - self.macs_before) / self.macs_before if self.macs_before else 0.0

    def to_dict(self) -> dict:
        """The plan file's ``transforms`` entry."""
        return {
            "kind": "split",
            "method": METHOD,
            "splits": [
                {
                    "ops": list(s.region.ops),
                    "input_tensor": s.region.input,
                    "output_tensor": s.region.output,
                    "input": names[0],
                    "output": names[1],
                    "stripes": s.stripes,
                    "cache": s.cache,
                    "split": s.region.kind,
                    "align": s.align,
                    "same": s.same,
                }
                for s, names in zip(self.splits, self.tensor_names, strict=True)
            ],
            "macs": {"before": self.macs_before, "after": self.macs_after},
        }


def splits_from_dict(entry: dict) -> tuple[StripeSplit, ...]:
    """The splits of a plan file's ``transforms`` entry (``SplitError`` when malformed)."""
    try:
        return tuple(
            StripeSplit(
                Region(
                    tuple(int(o) for o in s["ops"]),
                    int(s["input_tensor"]),
                    int(s["output_tensor"]),
                    str(s.get("split", "rows")),
                ),
                int(s["stripes"]),
                bool(s.get("cache", False)),
                same=_boolean(s.get("same", True)),
                align=_positive(s.get("align", 1)),
            )
            for s in entry["splits"]
        )
    except (KeyError, TypeError, ValueError) as e:
        raise SplitError(f"plan file: malformed split entry ({type(e).__name__}: {e})") from None


def _boolean(v) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"same {v!r} is not true or false")
    return v


def _positive(v) -> int:
    if isinstance(v, bool) or int(v) != v or int(v) < 1:
        raise ValueError(f"align {v!r} is not a positive integer")
    return int(v)


def find_record(graph: Graph, record_type: type, method: str):
    """The split record of `record_type` a graph has, or for a graph read from a plan file
    its ``transforms`` entry (a mapping) of split `method`; None if none. One lookup for the
    TFLite and ONNX records (planner/models/split_onnx.py)."""
    for t in getattr(graph.source, "transforms", ()) or ():
        if isinstance(t, record_type):
            return t
        if isinstance(t, Mapping) and t.get("kind") == "split" and t.get("method", method) == method:
            return t
    return None


def split_of(graph: Graph) -> SplitRecord | dict | None:
    """The split record (or, for a graph read from a plan file, its dict) of a graph, or None."""
    return find_record(graph, SplitRecord, METHOD)


def recorded_splits(graph: Graph) -> tuple[StripeSplit, ...]:
    """The splits a graph (imported, or read from a plan file) records having had; () if none."""
    rec = split_of(graph)
    if rec is None:
        return ()
    return rec.splits if isinstance(rec, SplitRecord) else splits_from_dict(rec)


# -- the model's structure --------------------------------------------------------------------
class _Model:
    """Subgraph 0 of a ModelT with the facts splitting needs (types, producers, consumers)."""

    def __init__(self, model):
        from .tflite import constant_ints, is_constant, op_type_name

        self.model = model
        self.sg = model.subgraphs[0]
        self.ops = list(self.sg.operators or [])
        self.tens = list(self.sg.tensors or [])
        self.types = [op_type_name(model, o) for o in self.ops]
        self.const = [is_constant(model, t) for t in self.tens]
        self._ints = lambda i: constant_ints(model, self.tens[i])
        self.graph_io = {int(i) for i in list(self.sg.inputs if self.sg.inputs is not None else [])}
        self.graph_out = {int(i) for i in list(self.sg.outputs if self.sg.outputs is not None else [])}
        self.producer: dict[int, int] = {}
        self.consumers: dict[int, list[int]] = {}
        for k, o in enumerate(self.ops):
            for i in _ints(o.inputs):
                if i >= 0:
                    self.consumers.setdefault(i, []).append(k)
            for i in _ints(o.outputs):
                self.producer[i] = k

    def shape(self, i: int) -> tuple[int, ...]:
        t = self.tens[i]
        return tuple(int(d) for d in (t.shape if t.shape is not None else []))

    def acts(self, k: int) -> list[int]:
        """Activation (non-constant) inputs of op k, in order, without repeats."""
        return list(dict.fromkeys(i for i in _ints(self.ops[k].inputs) if i >= 0 and not self.const[i]))

    def out(self, k: int) -> int:
        return int(_ints(self.ops[k].outputs)[0])


def _ints(v) -> list[int]:
    return [] if v is None else [int(x) for x in v]


class _FrozenModel(_Model):
    """A `_Model` that is only read (the estimator's): shapes, activations, outputs and row
    maps computed once, since screening asks for them hundreds of thousands of times."""

    def __init__(self, model):
        super().__init__(model)
        self._shape = [_Model.shape(self, i) for i in range(len(self.tens))]
        self._acts = [_Model.acts(self, k) for k in range(len(self.ops))]
        # -1 for an op without outputs (ASSIGN_VARIABLE): no region holds one
        self._out = [(_ints(o.outputs) or [-1])[0] for o in self.ops]
        self.row_maps: dict[int, _RowMap | str] = {}

    def shape(self, i: int) -> tuple[int, ...]:
        return self._shape[i]

    def acts(self, k: int) -> list[int]:
        return list(self._acts[k])

    def out(self, k: int) -> int:
        return self._out[k]

    def row_map(self, k: int) -> _RowMap | str:
        if k not in self.row_maps:
            self.row_maps[k] = _row_map(self, k)
        return self.row_maps[k]


@dataclass(frozen=True)
class _RowMap:
    """How an op's output rows [lo, hi) map to the rows of its activation inputs, and the
    width padding the op adds (SAME padding, or the PAD op's own)."""

    kernel: int = 1
    stride: int = 1
    dilation: int = 1
    pad_top: int = 0
    pad_left: int = 0
    pad_right: int = 0
    same: bool = False  # a window op with SAME padding
    up: int = 1  # a nearest-neighbour resize by this factor

    def need(self, lo: int, hi: int) -> tuple[int, int]:
        """Input rows [lo', hi') that output rows [lo, hi) read, before clipping to the tensor."""
        if self.up > 1:
            return lo // self.up, (hi - 1) // self.up + 1
        return lo * self.stride - self.pad_top, (hi - 1) * self.stride - self.pad_top + (
            self.kernel - 1
        ) * self.dilation + 1


def _same_pads(n_in: int, n_out: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TFLite's SAME padding along one axis: (before, after) (kernels/padding.h)."""
    total = max((n_out - 1) * stride + (kernel - 1) * dilation + 1 - n_in, 0)
    return total // 2, total - total // 2


def _row_map(m: _Model, k: int) -> _RowMap | str:
    """The op's row map, or why its rows cannot be split."""
    kind, op = m.types[k], m.ops[k]
    acts = m.acts(k)
    if not acts:
        return f"op {k} ({kind}) reads no activation"
    x, y = m.shape(acts[0]), m.shape(m.out(k))
    if len(x) != 4 or len(y) != 4 or x[0] != 1 or y[0] != 1:
        return f"op {k} ({kind}) is not on 1xHxWxC tensors"
    if kind in ROWWISE_OPS:
        if kind == "CONCATENATION" and int(op.builtinOptions.axis) not in (3, -1):
            return f"op {k} (CONCATENATION) joins along axis {op.builtinOptions.axis}, not channels"
        for i in _ints(op.inputs):
            s = m.shape(i) if i >= 0 else ()
            if i >= 0 and not m.const[i] and s[:3] != y[:3] and kind != "CONCATENATION":
                return f"op {k} ({kind}) broadcasts an activation"
            if i >= 0 and m.const[i] and len(s) >= 3 and s[-3] != 1:
                return f"op {k} ({kind}) has a constant that varies along the rows"
        if kind == "CONCATENATION" and any(m.shape(i)[:3] != y[:3] for i in acts):
            return f"op {k} (CONCATENATION) joins tensors of different heights"
        return _RowMap()
    if kind in PAD_OPS:
        pads = m._ints(int(_ints(op.inputs)[1]))
        if pads is None or len(pads) != 8 or pads[0] or pads[1] or pads[6] or pads[7]:
            return f"op {k} ({kind}) pads other than rows and columns"
        return _RowMap(pad_top=pads[2], pad_left=pads[4], pad_right=pads[5])
    if kind in RESIZE_OPS:
        if getattr(op.builtinOptions, "alignCorners", False):
            return f"op {k} ({kind}) aligns corners: its rows do not map to whole input rows"
        if y[1] % x[1] or y[2] % x[2]:
            return f"op {k} ({kind}) resizes by a factor that is not an integer"
        return _RowMap(up=y[1] // x[1])
    if kind not in WINDOW_OPS:
        return f"op {k} ({kind}) is not an operator rows can be split through"
    o = op.builtinOptions
    if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        w = m.shape(int(_ints(op.inputs)[1]))
        kh, kw = w[1], w[2]
        dh, dw = int(o.dilationHFactor or 1), int(o.dilationWFactor or 1)
    else:
        kh, kw, dh, dw = int(o.filterHeight), int(o.filterWidth), 1, 1
    sh, sw = int(o.strideH), int(o.strideW)
    if int(o.padding) == 0:  # SAME
        top, _ = _same_pads(x[1], y[1], kh, sh, dh)
        left, right = _same_pads(x[2], y[2], kw, sw, dw)
    else:
        top = left = right = 0
    if kind == "AVERAGE_POOL_2D" and (top or left or right or _same_pads(x[1], y[1], kh, sh, dh)[1]):
        return f"op {k} (AVERAGE_POOL_2D) pads, and its average counts only real inputs"
    return _RowMap(kh, sh, dh, top, left, right, int(o.padding) == 0)


def same_on_stripe(rm: _RowMap, a: int, b: int, rows: tuple[int, int]) -> tuple[int, int] | None:
    """(output rows, first output row) of a SAME window op run as it is on input rows [a, b),
    when that computes output rows `rows` exactly; None when it does not.

    SAME padding on a stripe pads its top and bottom with virtual rows, which is wrong where
    the real rows lie, but the output rows whose windows stay within the rows fed (or reach
    only where the model itself pads) are computed exactly as in the model: the stripe's
    first output row is original row `y0` when the stripe's SAME top padding lines up with
    the stride. The op then needs no PAD copy of its input; the one or two rows computed in
    excess are cut off by a slice (a view) and counted as MACs."""
    h_in = b - a
    eff = (rm.kernel - 1) * rm.dilation + 1
    out_h = -(-h_in // rm.stride)
    top = max((out_h - 1) * rm.stride + eff - h_in, 0) // 2
    shift = a - top + rm.pad_top
    if shift % rm.stride:
        return None
    y0 = shift // rm.stride
    if rows[0] < y0 or rows[1] > y0 + out_h:
        return None
    return out_h, y0


def fed_rows(rm: _RowMap, rows: tuple[int, int], h_in: int, same_allowed: bool) -> tuple[int, int, tuple | None]:
    """(a, b, same): the input rows [a, b) an op is given to compute output rows `rows`, and
    for a SAME window op that can run SAME on them (`same_on_stripe`) its (output rows, first
    row). The rows are those the window needs, clipped to the tensor; for such an op up to
    two more (a stride-2 SAME op lines up only on an even count), which costs a row of the
    producer but saves the PAD copy of the whole stripe."""
    lo, hi = rm.need(*rows)
    a, b = max(lo, 0), min(hi, h_in)
    if rm.same and same_allowed:
        for da, db in ((0, 0), (0, 1), (-1, 0), (-1, 1), (0, 2), (-2, 0)):
            if 0 <= a + da and b + db <= h_in:
                same = same_on_stripe(rm, a + da, b + db, rows)
                if same:
                    return a + da, b + db, same
    return a, b, None


def region_problem(model, region: Region, stripes: int = 2) -> str | None:
    """Why `region` cannot be split into `stripes` stripes of `model` (a ModelT), or None."""
    m = model if isinstance(model, _Model) else _Model(model)
    if region.kind == "channels":
        return channel_problem(m, region, stripes)
    if region.kind != "rows":
        return f"unknown split {region.kind!r}"
    ops = list(region.ops)
    if not ops or ops != list(range(ops[0], ops[-1] + 1)):
        return "a region is a run of consecutive operators"
    inside = set(ops)
    made = {m.out(k) for k in ops}
    for k in ops:
        if m.types[k] not in SPLITTABLE_OPS:
            return f"op {k} ({m.types[k]}) is not an operator rows can be split through"
        if len(_ints(m.ops[k].outputs)) != 1:
            return f"op {k} ({m.types[k]}) has several outputs"
        rm = _row_map(m, k)
        if isinstance(rm, str):
            return rm
        for i in m.acts(k):
            if i not in made and i != region.input:
                return f"op {k} reads tensor {i} from outside the region besides its input"
    if region.output not in made or m.producer.get(region.input, -1) in inside:
        return "the region's input and output must be its boundary tensors"
    if m.types[m.producer[region.output]] in RESIZE_OPS:
        return "a region cannot end at a resize (a stripe of it computes whole input rows' worth)"
    for t in made - {region.output}:
        if t in m.graph_out or any(c not in inside for c in m.consumers.get(t, [])):
            return f"tensor {t} is used outside the region"
    if stripes > MAX_STRIPES:
        return f"at most {MAX_STRIPES} stripes (TFLite Micro's CONCATENATION joins {MAX_CONCAT} tensors, twice)"
    h = m.shape(region.output)
    if len(h) != 4 or not 2 <= stripes <= h[1]:
        return f"the output has {h[1] if len(h) == 4 else '?'} rows, cannot make {stripes} stripes"
    return None


def regions(model, max_ops: int = 64) -> list[Region]:
    """Every region of a ModelT's subgraph 0 that can be split (at most `max_ops` operators):
    runs of consecutive splittable operators between two tensors that are each the only
    activation crossing their point of the model's order."""
    m = model if isinstance(model, _Model) else _Model(model)
    cut = _cut_tensors(m)
    out = []
    for a, x in cut.items():
        for b, y in cut.items():
            if a < b <= a + max_ops and m.producer.get(y) == b - 1:
                r = Region(tuple(range(a, b)), x, y)
                if region_problem(m, r) is None:
                    out.append(r)
    for k, kind in enumerate(m.types):
        if kind == "FULLY_CONNECTED" and m.acts(k):
            r = Region((k,), m.acts(k)[0], m.out(k), "channels")
            if channel_problem(m, r, 2) is None:
                out.append(r)
    return out


def channel_problem(m: _Model, region: Region, chunks: int) -> str | None:
    """Why a FULLY_CONNECTED cannot be computed in `chunks` output-channel chunks, or None."""
    (k,) = region.ops if len(region.ops) == 1 else (None,)
    if k is None or m.types[k] != "FULLY_CONNECTED":
        return "a channel split is one FULLY_CONNECTED"
    ins = _ints(m.ops[k].inputs)
    if len(ins) < 2 or not m.const[ins[1]] or len(m.acts(k)) != 1 or m.acts(k)[0] != region.input:
        return f"op {k} (FULLY_CONNECTED) has no constant weights or more than one activation input"
    if len(ins) > 2 and ins[2] >= 0 and not m.const[ins[2]]:
        return f"op {k} (FULLY_CONNECTED) has a bias that is not a constant"
    opt = m.ops[k].builtinOptions
    if opt is not None and int(getattr(opt, "weightsFormat", 0) or 0) != 0:
        return f"op {k} (FULLY_CONNECTED) has shuffled weights"
    y, w = m.shape(m.out(k)), m.shape(ins[1])
    if region.output != m.out(k) or len(w) != 2 or not y or int(np.prod(y[:-1])) != 1 or y[-1] != w[0]:
        return f"op {k} (FULLY_CONNECTED) is not a single row of output channels"
    if not 2 <= chunks <= min(w[0], MAX_CONCAT):
        return f"{w[0]} output channels cannot make {chunks} chunks (at most {MAX_CONCAT})"
    return None


def _cut_tensors(m: _Model) -> dict[int, int]:
    """Point p (before op p) -> the one activation live across it, where there is one."""
    last_use = {}
    for k, _ in enumerate(m.ops):
        for i in m.acts(k):
            last_use[i] = k
    live: set[int] = {i for i in m.graph_io if not m.const[i]}
    cuts = {}
    for p in range(len(m.ops) + 1):
        live = {i for i in live if last_use.get(i, -1) >= p or i in m.graph_out}
        if len(live) == 1:
            cuts[p] = next(iter(live))
        if p < len(m.ops):
            live |= {int(i) for i in _ints(m.ops[p].outputs)}
    return cuts


# -- the transformation -------------------------------------------------------------------
def stripe_bounds(h: int, k: int, unit_bytes: int = 1, align: int = 1) -> list[tuple[int, int]]:
    """`k` stripes of `h` rows (or channels) as even as they can be, with every boundary a
    multiple of `align` bytes into the tensor (rows of `unit_bytes` each) when there are
    enough aligned boundaries: a stripe's slot in the joined output is then aligned, so its
    producer can write it in place at any offset the arena's alignment allows."""
    q = align // math.gcd(unit_bytes, align) if align > 1 and unit_bytes > 0 else 1
    units = h // q
    if q == 1 or units < k:
        bounds = [round(i * h / k) for i in range(k + 1)]
    else:  # boundaries on multiples of q rows; the last stripe also takes the h % q rows left
        bounds = [round(i * units / k) * q for i in range(k)] + [h]
    return [(bounds[i], bounds[i + 1]) for i in range(k)]


def _output_stripes(m: _Model, sp: StripeSplit) -> list[tuple[int, int]]:
    """The output rows (channels for a channel split) of each stripe of `sp`."""
    y = m.shape(sp.region.output)
    if sp.region.kind == "channels":
        return stripe_bounds(y[-1], sp.stripes, _itemsize(m, sp.region.output), sp.align)
    return stripe_bounds(y[1], sp.stripes, int(np.prod(y[2:])) * _itemsize(m, sp.region.output), sp.align)


def _aligned(m: _Model, sp: StripeSplit) -> bool:
    """Whether every stripe's slot in the output starts `sp.align` bytes aligned."""
    y = m.shape(sp.region.output)
    unit = _itemsize(m, sp.region.output) * (1 if sp.region.kind == "channels" else int(np.prod(y[2:])))
    return all(lo * unit % sp.align == 0 for lo, _ in _output_stripes(m, sp))


def _itemsize(m: _Model, i: int) -> int:
    from .tflite import TYPE_BYTES, tensor_type_name

    return TYPE_BYTES.get(tensor_type_name(m.tens[i]), 1)


class _Writer:
    """Appends tensors, buffers, operator codes and operators to a ModelT."""

    def __init__(self, model):
        from .tflite import schema

        self.s = schema()
        self.model = model
        self.sg = model.subgraphs[0]

    def tensor_like(self, src: int, name: str, rows: int | None = None, shape: tuple[int, ...] | None = None) -> int:
        t = copy.deepcopy(self.sg.tensors[src])
        if shape is None:
            shape = tuple(int(d) for d in t.shape)
            shape = (shape[0], rows, *shape[2:])
        t.shape = np.array(shape, dtype=np.int32)
        t.shapeSignature = None
        t.buffer = 0
        t.name = name.encode()
        self.sg.tensors.append(t)
        return len(self.sg.tensors) - 1

    def constant(self, name: str, values: Sequence[int] | np.ndarray, dtype: str = "int32", shape=None) -> int:
        s = self.s
        arr = np.asarray(values, dtype=dtype)
        b = s.BufferT()
        b.data = np.frombuffer(arr.tobytes(), dtype=np.uint8)
        self.model.buffers.append(b)
        t = s.TensorT()
        t.name = name.encode()
        t.shape = np.array(arr.shape if shape is None else shape, dtype=np.int32)
        t.type = {"int32": s.TensorType.INT32, "int8": s.TensorType.INT8, "float32": s.TensorType.FLOAT32}[dtype]
        t.buffer = len(self.model.buffers) - 1
        self.sg.tensors.append(t)
        return len(self.sg.tensors) - 1

    def constant_rows(self, src: int, lo: int, hi: int, name: str) -> int:
        """A constant holding rows [lo, hi) of constant `src` (axis 0), with its per-channel
        quantisation (scales and zero points along axis 0) cut the same way."""
        from .tflite import TYPE_BYTES, tensor_type_name

        t = copy.deepcopy(self.sg.tensors[src])
        shape = [int(d) for d in t.shape]
        row = int(np.prod(shape[1:])) * TYPE_BYTES[tensor_type_name(t)]
        raw = np.asarray(self.model.buffers[t.buffer].data, dtype=np.uint8)
        b = self.s.BufferT()
        b.data = np.ascontiguousarray(raw[lo * row : hi * row])
        self.model.buffers.append(b)
        t.buffer = len(self.model.buffers) - 1
        t.shape = np.array([hi - lo, *shape[1:]], dtype=np.int32)
        t.shapeSignature = None
        t.name = name.encode()
        q = t.quantization
        if q is not None and q.scale is not None and len(q.scale) == shape[0] > 1:
            q.scale = np.asarray(q.scale)[lo:hi]
            if q.zeroPoint is not None and len(q.zeroPoint) == shape[0]:
                q.zeroPoint = np.asarray(q.zeroPoint)[lo:hi]
        self.sg.tensors.append(t)
        return len(self.sg.tensors) - 1

    def opcode(self, name: str) -> int:
        s = self.s
        code = getattr(s.BuiltinOperator, name)
        for i, oc in enumerate(self.model.operatorCodes):
            if max(oc.builtinCode or 0, oc.deprecatedBuiltinCode or 0) == code:
                return i
        oc = s.OperatorCodeT()
        oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), 1
        self.model.operatorCodes.append(oc)
        return len(self.model.operatorCodes) - 1

    def op(self, name: str, inputs: Sequence[int], outputs: Sequence[int], options=None):
        o = self.s.OperatorT()
        o.opcodeIndex = self.opcode(name)
        o.inputs = np.array(inputs, dtype=np.int32)
        o.outputs = np.array(outputs, dtype=np.int32)
        if options is not None:
            o.builtinOptionsType, o.builtinOptions = options
        return o

    def slice_rows(self, src: int, lo: int, hi: int, name: str, out: list) -> int:
        """STRIDED_SLICE of rows [lo, hi) of a 1xHxWxC tensor (a view of its bytes)."""
        shape = tuple(int(d) for d in self.sg.tensors[src].shape)
        y = self.tensor_like(src, name, hi - lo)
        begin = self.constant(f"{name}/begin", [0, lo, 0, 0])
        end = self.constant(f"{name}/end", [shape[0], hi, shape[2], shape[3]])
        step = self.constant(f"{name}/strides", [1, 1, 1, 1])
        opt = self.s.StridedSliceOptionsT()
        out.append(
            self.op("STRIDED_SLICE", [src, begin, end, step], [y], (self.s.BuiltinOptions.StridedSliceOptions, opt))
        )
        return y

    def pad(
        self, src: int, pads: tuple[int, int, int, int], name: str, out: list, value: int | None, kind: str = "PAD"
    ) -> int:
        """PAD (fill with the zero point) or PADV2 (fill with `value`) of rows and columns."""
        top, bot, left, right = pads
        shape = tuple(int(d) for d in self.sg.tensors[src].shape)
        y = self.tensor_like(src, name, shape=(shape[0], shape[1] + top + bot, shape[2] + left + right, shape[3]))
        p = self.constant(f"{name}/paddings", [[0, 0], [top, bot], [left, right], [0, 0]])
        ins = [src, p]
        if kind == "PADV2":
            ins.append(value)  # a constant tensor index
            out.append(self.op("PADV2", ins, [y], (self.s.BuiltinOptions.PadV2Options, self.s.PadV2OptionsT())))
        else:
            out.append(self.op("PAD", ins, [y], (self.s.BuiltinOptions.PadOptions, self.s.PadOptionsT())))
        return y


def split_model(data: bytes, splits: Iterable[StripeSplit]) -> bytes:
    """The flatbuffer of a model (`data`, a .tflite's bytes) with each split applied."""
    from .tflite import pack_model, schema, without_offline_plan

    s = schema()
    model = s.ModelT.InitFromPackedBuf(data, 0)
    splits = sorted(splits, key=lambda sp: sp.region.ops[0])
    m = _Model(model)
    for a, b in zip(splits, splits[1:], strict=False):
        if a.region.ops[-1] >= b.region.ops[0]:
            raise SplitError(f"regions at ops {a.region.ops[0]} and {b.region.ops[0]} overlap")
    for sp in splits:
        why = region_problem(m, sp.region, sp.stripes)
        if why:
            raise SplitError(
                f"cannot split ops {sp.region.ops[0]}..{sp.region.ops[-1]} into {sp.stripes} stripes: {why}"
            )
    w = _Writer(model)
    new_ops, k = [], 0
    for sp in splits:
        new_ops += m.ops[k : sp.region.ops[0]]
        new_ops += _split_channels(m, w, sp) if sp.region.kind == "channels" else _split_region(m, w, sp)
        k = sp.region.ops[-1] + 1
    new_ops += m.ops[k:]
    model.subgraphs[0].operators = new_ops
    _drop_unused_tensors(model.subgraphs[0])
    without_offline_plan(model)  # it refers to the old tensors
    return pack_model(model)


def _drop_unused_tensors(sg) -> None:
    """Remove the tensors no operator and no subgraph input/output refers to any more (the
    region's old intermediates), renumbering the rest: TFLM allocates every non-constant
    tensor of a subgraph, used or not."""
    used = set(_ints(sg.inputs)) | set(_ints(sg.outputs))
    for o in sg.operators:
        used |= {i for i in _ints(o.inputs) + _ints(o.outputs) + _ints(o.intermediates) if i >= 0}
    keep = [i for i in range(len(sg.tensors)) if i in used]
    new = {old: n for n, old in enumerate(keep)}

    def remap(v):
        return None if v is None else np.array([new[int(i)] if int(i) >= 0 else int(i) for i in v], dtype=np.int32)

    sg.tensors = [sg.tensors[i] for i in keep]
    sg.inputs, sg.outputs = remap(sg.inputs), remap(sg.outputs)
    for o in sg.operators:
        o.inputs, o.outputs = remap(o.inputs), remap(o.outputs)
        if o.intermediates is not None:
            o.intermediates = remap(o.intermediates)


def _split_region(m: _Model, w: _Writer, sp: StripeSplit) -> list:
    """The operators that compute `sp.region` in stripes, ending with the row CONCATENATION."""
    region, out = sp.region, []
    maps = {k: _row_map(m, k) for k in region.ops}
    pieces, prev, prev_have = [], None, {}
    stripes = _output_stripes(m, sp)
    for n, rows in enumerate(stripes):
        plan = _plan_stripe(m, region, maps, rows, prev, sp.cache, sp.same)
        prev_have = _stripe(m, w, region, maps, n, plan, prev_have, out)
        prev = plan[0]
        t, held = prev_have[region.output]
        assert held == rows, "a stripe's output rows are its rows"
        pieces.append(t)
    if len(pieces) > MAX_CONCAT:  # stripes joined in groups first, each group into its slot
        groups = -(-len(pieces) // MAX_CONCAT)
        size = -(-len(pieces) // groups)
        joined = []
        for g in range(0, len(pieces), size):
            rows = stripes[min(g + size, len(pieces)) - 1][1] - stripes[g][0]
            t = w.tensor_like(region.output, f"{_name(m, region.output)}/stripes{g}-{g + size - 1}", rows)
            out.append(_row_concat(w, pieces[g : g + size], t))
            joined.append(t)
        pieces = joined
    out.append(_row_concat(w, pieces, region.output))
    return out


def _split_channels(m: _Model, w: _Writer, sp: StripeSplit) -> list:
    """One FULLY_CONNECTED per chunk of output channels, each with its rows of the weights
    (and bias and per-channel scales), joined by a CONCATENATION along the channels (each
    chunk produced into its slot: the output is one row, so the slots are contiguous)."""
    (k,) = sp.region.ops
    op, y = m.ops[k], m.out(k)
    ins = _ints(op.inputs)
    out, pieces = [], []
    for c, (lo, hi) in enumerate(_output_stripes(m, sp)):
        o = copy.deepcopy(op)
        new_ins = list(ins)
        new_ins[1] = w.constant_rows(ins[1], lo, hi, f"{_name(m, ins[1])}/chunk{c}")
        if len(ins) > 2 and ins[2] >= 0:
            new_ins[2] = w.constant_rows(ins[2], lo, hi, f"{_name(m, ins[2])}/chunk{c}")
        shape = m.shape(y)
        yt = w.tensor_like(y, f"{_name(m, y)}/chunk{c}", shape=(*shape[:-1], hi - lo))
        o.inputs = np.array(new_ins, dtype=np.int32)
        o.outputs = np.array([yt], dtype=np.int32)
        out.append(o)
        pieces.append(yt)
    opt = w.s.ConcatenationOptionsT()
    opt.axis = len(m.shape(y)) - 1
    out.append(w.op("CONCATENATION", pieces, [y], (w.s.BuiltinOptions.ConcatenationOptions, opt)))
    return out


def _row_concat(w: _Writer, pieces: list[int], into: int):
    opt = w.s.ConcatenationOptionsT()
    opt.axis = 1
    return w.op("CONCATENATION", pieces, [into], (w.s.BuiltinOptions.ConcatenationOptions, opt))


@dataclass(frozen=True)
class _OpStripe:
    """What op `k` does in one stripe: the output rows it computes (`compute`; `held` when
    it computes a row or two more, see `same_on_stripe`), the rows of each activation input
    it is given (`fed`), whether it runs SAME on them, the PAD it needs otherwise, and the
    output rows its consumers read this stripe (`rows`), of which `cached` come from the
    previous stripe instead of being computed again."""

    compute: tuple[int, int]
    held: tuple[int, int]
    fed: dict
    same: bool
    pads: tuple[int, int, int, int]
    rows: tuple[int, int]
    cached: tuple[int, int] | None


def _plan_stripe(
    m: _Model, region: Region, maps: dict, rows: tuple[int, int], prev: dict | None, cache: bool, same: bool = True
):
    """(tensor -> rows read this stripe, op -> _OpStripe) for the stripe of output rows
    `rows`, walking back from the output; `prev` is the previous stripe's rows per tensor:
    with `cache` the rows of a tensor the previous stripe already had are taken from it;
    `same`: SAME window ops may run SAME on the stripe (`StripeSplit.same`)."""
    need: dict[int, tuple[int, int]] = {region.output: rows}
    plans: dict[int, _OpStripe] = {}
    for k in reversed(region.ops):
        y, rm, kind = m.out(k), maps[k], m.types[k]
        if y not in need:
            continue  # every row this stripe reads of it came from the previous stripe
        f = c = need[y]
        if cache and prev is not None and y != region.output and y in prev and prev[y][1] > f[0]:
            c = (min(prev[y][1], f[1]), f[1])
        cached = (f[0], c[0]) if c[0] > f[0] else None
        if c[0] >= c[1]:
            plans[k] = _OpStripe(c, c, {}, False, (0, 0, 0, 0), f, cached)
            continue
        plans[k] = _op_stripe(m, k, rm, kind, c, f, cached, same and kind in WINDOW_OPS and y != region.output)
        for i, (a, b) in plans[k].fed.items():
            need[i] = (min(a, need[i][0]), max(b, need[i][1])) if i in need else (a, b)
    return need, plans


def _op_stripe(m: _Model, k: int, rm: _RowMap, kind: str, c, f, cached, same_allowed: bool) -> _OpStripe:
    """Op k's part of a stripe computing output rows `c` (see `_OpStripe`)."""
    fed, same = {}, None
    if kind in RESIZE_OPS:  # whole input rows' worth of output rows; the consumers cut theirs
        (i,) = m.acts(k)
        a, b, _ = fed_rows(rm, c, m.shape(i)[1], False)
        return _OpStripe(c, (a * rm.up, b * rm.up), {i: (a, b)}, False, (0, 0, 0, 0), f, cached)
    for i in m.acts(k):
        a, b, same = fed_rows(rm, c, m.shape(i)[1], same_allowed)
        if same and cached and (same[1], same[1] + same[0]) != c:  # a cached tensor's new rows are a slot
            a, b, same = fed_rows(rm, c, m.shape(i)[1], False)
        fed[i] = (a, b)
    held = (same[1], same[1] + same[0]) if same else c
    pads = (0, 0, 0, 0)
    if not same and kind in WINDOW_OPS | PAD_OPS:
        lo, hi = rm.need(*c)
        a, b = fed[m.acts(k)[0]]
        pads = (a - lo, hi - b, rm.pad_left, rm.pad_right)
    return _OpStripe(c, held, fed, bool(same), pads, f, cached)


def _stripe(m: _Model, w: _Writer, region: Region, maps: dict, n: int, plan, prev_have: dict, out: list) -> dict:
    """Emit stripe `n` as planned (`_plan_stripe`); tensor -> (stripe tensor, rows it holds)."""
    need, plans = plan
    name = lambda i, tag: f"{_name(m, i)}/stripe{n}{tag}"  # noqa: E731
    x, h = region.input, m.shape(region.input)[1]
    have: dict[int, tuple[int, tuple[int, int]]] = {}
    if x in need:  # (a stripe whose rows all come from the previous one reads none of it)
        lo, hi = need[x]
        have[x] = (x, (0, h)) if (lo, hi) == (0, h) else (w.slice_rows(x, lo, hi, name(x, ""), out), (lo, hi))
    for k in region.ops:
        p, y = plans.get(k), m.out(k)
        if p is None:
            continue
        comp = _compute(m, w, k, p, have, name, n, out) if p.compute[0] < p.compute[1] else None
        if p.cached is None:
            have[y] = (comp, p.held)
            continue
        if comp is not None and p.held != p.compute:  # a resize's extra rows: only the new ones join
            comp = w.slice_rows(comp, p.compute[0] - p.held[0], p.compute[1] - p.held[0], name(y, "/new"), out)
        pt, (plo, _) = prev_have[y]
        tail = w.slice_rows(pt, p.cached[0] - plo, p.cached[1] - plo, name(y, "/cached"), out)
        if comp is None:
            have[y] = (tail, p.cached)
            continue
        ft = w.tensor_like(y, name(y, "/rows"), p.rows[1] - p.rows[0])
        out.append(_row_concat(w, [tail, comp], ft))
        have[y] = (ft, p.rows)
    return have


def _compute(m: _Model, w: _Writer, k: int, p: _OpStripe, have: dict, name, n: int, out: list) -> int:
    """Emit op k computing its rows of a stripe (slices and PAD of its inputs first)."""
    kind, op, y = m.types[k], m.ops[k], m.out(k)
    ins: dict[int, int] = {}
    for i, (a, b) in p.fed.items():
        t, (tlo, thi) = have[i]
        if (a, b) != (tlo, thi):
            t = w.slice_rows(t, a - tlo, b - tlo, name(i, f"/for{k}"), out)
        if kind in WINDOW_OPS and any(p.pads):
            t = w.pad(t, p.pads, name(i, f"/pad{k}"), out, *_pad_fill(m, w, kind, i, n))
        elif kind in PAD_OPS:
            t = _own_pad(m, w, k, t, p.pads, name(i, f"/pad{k}"), out)
        ins[i] = t
    if kind in PAD_OPS:
        return ins[m.acts(k)[0]]
    yt = w.tensor_like(y, name(y, ""), p.held[1] - p.held[0])
    o = copy.deepcopy(op)
    o.inputs = np.array([ins.get(i, i) if i >= 0 else i for i in _ints(op.inputs)], dtype=np.int32)
    if kind in RESIZE_OPS:  # the output size of this stripe's resize
        o.inputs[1] = w.constant(name(y, "/size"), [p.held[1] - p.held[0], m.shape(y)[2]])
    o.outputs = np.array([yt], dtype=np.int32)
    if kind in WINDOW_OPS and not p.same:
        o.builtinOptions.padding = w.s.Padding.VALID
    out.append(o)
    return yt


def _pad_fill(m: _Model, w: _Writer, kind: str, i: int, n: int) -> tuple[int | None, str]:
    """(constant tensor, PAD kind): what SAME padding of `kind` treats outside rows as."""
    if kind != "MAX_POOL_2D":
        return None, "PAD"  # zero point (int8) or 0.0: a real zero
    t = m.tens[i]
    s = w.s
    if t.type == s.TensorType.INT8:
        return w.constant(f"{_name(m, i)}/lowest{n}", [-128], "int8", shape=()), "PADV2"
    if t.type == s.TensorType.FLOAT32:
        return w.constant(f"{_name(m, i)}/lowest{n}", [np.finfo(np.float32).min], "float32", shape=()), "PADV2"
    raise SplitError(f"max pooling over {t.type} tensors is not split")


def _own_pad(m: _Model, w: _Writer, k: int, t: int, pads: tuple[int, int, int, int], name: str, out: list) -> int:
    """The model's own PAD/PADV2 op, for one stripe: same fill, rows padded only at the borders."""
    if not any(pads):
        return t
    ins = _ints(m.ops[k].inputs)
    value = ins[2] if m.types[k] == "PADV2" and len(ins) > 2 else None
    return w.pad(t, pads, name, out, value, m.types[k] if value is not None else "PAD")


def _name(m: _Model, i: int) -> str:
    from .tflite import _text

    return _text(m.tens[i].name) or f"t{i}"


# -- estimates without building the split model ---------------------------------------------
@dataclass(frozen=True)
class Estimate:
    """What a set of splits costs and needs, from the row ranges alone (no model is built):
    `extra_macs` exactly (a weighted op's MACs are proportional to its output rows), and
    `region_peak` per split: the region's input and output whole (they are live across the
    region) plus the most stripe bytes live at once in one stripe (its tensors between
    their producer and last reader, and the PAD copies an op reads)."""

    extra_macs: int
    region_peak: tuple[int, ...]


class Estimator:
    """Estimates of splits of one model (a graph imported from a .tflite, its file parsed
    once): how the search screens hundreds of candidates before it builds the few it plans."""

    def __init__(self, graph: Graph, weights_in_l1: bool = False):
        from planner.macs import op_macs

        from .tflite import TYPE_BYTES, tensor_type_name

        self.weights_in_l1 = weights_in_l1  # --weights load: a chunk's weights are in L1 while it runs
        self.m = _FrozenModel(_schema_model(Path(graph.source.path).read_bytes()))
        self._item = [TYPE_BYTES.get(tensor_type_name(t), 1) for t in self.m.tens]
        # MACs per flatbuffer op index, by the one count (planner/macs.py)
        self.macs = {o.attrs["index"]: op_macs(graph, o) for o in graph.ops if "index" in o.attrs}

    def row_bytes(self, i: int) -> int:
        """Bytes of one row of a 1xHxWxC tensor."""
        sh = self.m.shape(i)
        return sh[2] * sh[3] * self._item[i]

    def op_macs(self, k: int) -> int:
        """MACs of op k of the model as imported."""
        return self.macs.get(k, 0)

    def estimate(self, splits: Sequence[StripeSplit]) -> Estimate:
        """The estimate of applying `splits` (each must be valid: see `region_problem`)."""
        extra, peaks = 0, []
        for sp in splits:
            e, p = self._one(sp)
            extra += e
            peaks.append(p)
        return Estimate(extra, tuple(peaks))

    def _bytes(self, i: int) -> int:
        return int(np.prod(self.m.shape(i))) * self._item[i]

    def _one(self, sp: StripeSplit) -> tuple[int, int]:
        m, region = self.m, sp.region
        if region.kind == "channels":  # no MAC more; the weights (and bias) a chunk at a time
            ins = [i for i in _ints(m.ops[region.ops[0]].inputs) if i >= 0]
            weights = sum(self._bytes(i) for i in ins[1:]) if self.weights_in_l1 else 0
            return 0, self._bytes(region.input) + self._bytes(region.output) + -(-weights // sp.stripes)
        maps = {k: m.row_map(k) for k in region.ops}
        last = {}
        for j, k in enumerate(region.ops):
            for i in m.acts(k):
                last[i] = j
        extra, local, prev, prev_plans = -sum(self.op_macs(k) for k in region.ops), 0, None, {}
        for rows in _output_stripes(m, sp):
            need, plans = _plan_stripe(m, region, maps, rows, prev, sp.cache, sp.same)
            # the previous stripe's tensors this one takes rows from, live (whole: the cached
            # rows are a view of them) until the copy joining them to the new rows
            kept = {
                m.out(k): (prev_plans[k].rows[1] - prev_plans[k].rows[0]) * self.row_bytes(m.out(k))
                for k, p in plans.items()
                if p.cached and k in prev_plans
            }
            live: dict[int, int] = {}
            for j, k in enumerate(region.ops):
                p, y = plans.get(k), m.out(k)
                if p is None:
                    continue
                extra += self.op_macs(k) * (p.held[1] - p.held[0]) // m.shape(y)[1]
                pads = 0
                if any(p.pads) and m.types[k] in WINDOW_OPS:
                    x = m.acts(k)[0]
                    a, b = p.fed[x]
                    width = m.shape(x)[2] + p.pads[2] + p.pads[3]
                    pads = (b - a + p.pads[0] + p.pads[1]) * width * m.shape(x)[3] * self._item[x]
                # a cached tensor's new rows are a buffer of their own until the copy (a concat
                # of a view and new rows shares no slot: DESIGN §1, all slots or none)
                fresh = (p.held[1] - p.held[0]) * self.row_bytes(y) if p.cached and p.compute[0] < p.compute[1] else 0
                if y != region.output:
                    live[y] = max(p.rows[1] - p.rows[0], p.held[1] - p.held[0]) * self.row_bytes(y)
                local = max(local, sum(live.values()) + pads + sum(kept.values()) + fresh)
                kept.pop(y, None)
                live = {t: b for t, b in live.items() if last.get(t, -1) > j}
            prev, prev_plans = need, plans
        whole = m.shape(region.input)[1] * self.row_bytes(region.input) + m.shape(region.output)[1] * self.row_bytes(
            region.output
        )
        if not _aligned(m, sp):  # the stripes are joined by a copy: all of them live with the output
            whole += m.shape(region.output)[1] * self.row_bytes(region.output)
        return extra, whole + local


# -- the transformed graph --------------------------------------------------------------------
def cache_dir() -> Path:
    """Where transformed models are written for TFLM and the exporter: `$PLANNER_CACHE/split`
    (default ``~/.cache/planner/split``); a file's name is the sha256 of its bytes, so a
    file is never reused for a different model."""
    return cache_root() / "split"


def materialise(data: bytes, where: Path | None = None, suffix: str = ".tflite") -> Path:
    """A file holding the transformed model `data` (written once, atomically) in `where`
    (default `cache_dir()`), named by its sha256; `SplitError` when it cannot be written."""
    from planner.graph import model_sha256

    p = (cache_dir() if where is None else Path(where)) / f"{model_sha256(data)}{suffix}"
    if not p.is_file() or p.stat().st_size != len(data):
        try:
            write_atomically(p, data)
        except OSError as e:
            raise SplitError(
                f"cannot write the split model to {p.parent} ({e.strerror}); set PLANNER_CACHE to a writable folder"
            ) from None
    return p


def load_split(graph: Graph, splits: Sequence[StripeSplit], where: Path | None = None) -> Graph:
    """`graph` (imported from a .tflite) with `splits` applied: the transformed model
    imported, its source still the user's file (path, sha256, the name as given) with a
    `SplitRecord` appended to its transforms. No splits: `graph` itself. The transformed
    file is written into `where` (a folder), by default the cache folder (`materialise`)."""
    from planner.macs import total_macs

    from .tflite import load_tflite

    src = graph.source
    if src is None or src.format != "tflite" or not src.path:
        raise SplitError("row-stripe splitting is for TFLite models")
    if not splits:
        return graph
    original = Path(src.path).read_bytes()
    data = split_model(original, splits)
    g = load_tflite(materialise(data, where))
    m = _Model(_schema_model(original))
    names = tuple((_name(m, sp.region.input), _name(m, sp.region.output)) for sp in splits)
    record = SplitRecord(tuple(splits), names, total_macs(graph), total_macs(g), data)
    g.name = graph.name  # the model's name, not the transformed file's
    g.source = replace(
        g.source, path=src.path, sha256=src.sha256, given=src.given, transforms=(*src.transforms, record)
    )
    return g


def _schema_model(data: bytes):
    from .tflite import schema

    return schema().ModelT.InitFromPackedBuf(data, 0)


def model_regions(graph: Graph, max_ops: int = 64) -> list[Region]:
    """The splittable regions of a graph imported from a .tflite (see `regions`)."""
    if graph.source is None or graph.source.format != "tflite" or not graph.source.path:
        return []
    return regions(_schema_model(Path(graph.source.path).read_bytes()), max_ops)
