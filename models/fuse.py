"""Fusion (DESIGN §7): the graph the target runtime really runs, asked from onnxruntime.

onnxruntime never materialises the intermediates of the operator groups it fuses
(Conv+BatchNormalization folded into the Conv's weights, Conv+Add of a bias, Conv+Relu/Clip
as ``com.microsoft::FusedConv``, Gemm+activation, MatMul+Add, ...), so a plan of the model
as written reserves bytes that the runtime never uses. :func:`fuse_onnx` does not
re-implement any fusion rule: it asks onnxruntime for the graph it runs, through
``SessionOptions.optimized_model_filepath``, and imports that graph with
:func:`planner.models.onnx.load_onnx`, so sizes and ``Graph.source`` come the same way as
for any ONNX model.

The level is ``ORT_ENABLE_EXTENDED`` with the CPU execution provider (:data:`LEVEL`):

- ``ORT_ENABLE_BASIC`` folds constants, BatchNormalization / Add / Mul into Conv and drops
  Identity / Dropout, but leaves every activation as its own op;
- ``ORT_ENABLE_EXTENDED`` adds the fusions into contrib ops of the ``com.microsoft`` domain
  (``FusedConv`` with its activation and residual Add, ``FusedGemm``, ``FusedMatMul``, Gelu
  and LayerNormalization fusions). With the CPU provider only, every op of that graph has a
  CPU kernel, so the executor runs each one as a one-node model (the proof);
- ``ORT_ENABLE_ALL`` adds layout transformations (NCHWc blocked tensors with
  ``ReorderInput`` / ``ReorderOutput`` ops): more ops and padded tensors, not fusion, and a
  saved graph onnxruntime itself calls non-portable.

The optimiser sees the same static shapes as the planner: the model is first imported with
``load_onnx`` (which pins every input), and a copy with those shapes written into its
inputs is what onnxruntime optimises. The fused graph's source still fingerprints the
ORIGINAL file (path and sha256), because plans are checked against the user's file.

The :class:`FusionRecord` says what changed: for each op of the fused graph that stands for
several original ops, the original ops it replaces and the original tensors it no longer
materialises (found by tensor names: the fused node reads and writes tensors of the
original graph; the original ops between them whose outputs are gone are its group). It
also carries the optimised model, whose initializers hold the folded weights (Conv+BN
merged), for the executor. Fusion never fails the user's command: if the optimised graph
cannot be used, the original graph comes back with a one-line note in the record.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from planner.graph import Graph

from .errors import ModelError

__all__ = ["FUSE_METHODS", "LEVEL", "FusedGroup", "FusionRecord", "fuse_onnx", "fusion_of"]

FUSE_METHODS = ("none", "onnxruntime")  # what --fuse accepts
LEVEL = "extended"  # onnxruntime's GraphOptimizationLevel ORT_ENABLE_EXTENDED (module docstring)


@dataclass(frozen=True)
class FusedGroup:
    """Ops of the fused graph that stand for several ops of the original graph.

    Exists so a plan can say which intermediates it does not hold: `hides` are the original
    tensors the runtime computes inside `ops` without ever writing them to memory. Usually
    `ops` is one op (a FusedConv for Conv+BatchNormalization+Relu); when onnxruntime's
    rewrite is several ops joined by tensors of its own (MatMul+Add as Reshape, Gemm,
    Reshape), those tensors are `adds`: materialised by the fused graph, not the original.
    """

    ops: tuple[str, ...]  # op names in the fused graph, in its order
    types: tuple[str, ...]  # their types there (FusedConv, Conv with BN folded in, Gemm, ...)
    replaces: tuple[str, ...]  # original op names, in the original order
    hides: tuple[str, ...]  # original tensors no longer materialised
    adds: tuple[str, ...] = ()  # tensors of the fused graph the original does not have

    def to_dict(self) -> dict:
        """The group as the plan file's ``transforms`` entry lists it."""
        d = {"ops": list(self.ops), "types": list(self.types), "replaces": list(self.replaces)}
        d["hides"] = list(self.hides)
        if self.adds:
            d["adds"] = list(self.adds)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> FusedGroup:
        """The group from its plan-file form (see `to_dict`)."""
        return cls(*(tuple(str(x) for x in d.get(k, ())) for k in ("ops", "types", "replaces", "hides", "adds")))


@dataclass(frozen=True, eq=False)
class FusionRecord:
    """What fusion did to a graph: the record of the transformation ``fuse`` (DESIGN §7).

    It sits in the fused graph's ``source.transforms`` and is written into the plan file's
    ``transforms`` entry when `applied`, so `planner run` re-imports the model the same way.
    `model` is onnxruntime's optimised model (not written): the fused ops' nodes and the
    weights onnxruntime folded (e.g. Conv+BN merged) come from it. `folded` are original
    ops onnxruntime turned into constants (not fusion, listed for completeness). `note` says
    in one line why the optimised graph could not be used (the original graph came back);
    it is empty when onnxruntime simply fused nothing.
    """

    method: str = "onnxruntime"
    level: str = LEVEL
    runtime: str = ""  # onnxruntime version that optimised
    groups: tuple[FusedGroup, ...] = ()
    folded: tuple[str, ...] = ()
    ops_before: int = 0
    ops_after: int = 0
    tensors_before: int = 0
    tensors_after: int = 0
    note: str = ""
    model: Any = field(default=None, repr=False)  # onnx.ModelProto of the fused graph

    kind = "fuse"  # what the record is a record of (class attribute, written in the plan file)

    @property
    def applied(self) -> bool:
        """Whether the graph is the fused one (something was fused); else it is the original."""
        return bool(self.groups)

    @property
    def hidden_tensors(self) -> list[str]:
        """Every original tensor the fused graph no longer materialises."""
        return [t for g in self.groups for t in g.hides]

    def summary(self) -> str:
        """One line for a report: what was fused, or why nothing was."""
        if not self.applied:
            return f"fusion ({self.method}): nothing fused" + (f"; {self.note}" if self.note else "")
        return (
            f"fusion ({self.method} {self.level}): {len(self.groups)} groups, "
            f"{sum(len(g.replaces) for g in self.groups)} ops as {sum(len(g.ops) for g in self.groups)}; "
            f"ops {self.ops_before} -> {self.ops_after}, "
            f"tensors {self.tensors_before} -> {self.tensors_after}"
        )

    def to_dict(self) -> dict:
        """The plan file's ``transforms`` entry for this record."""
        return {
            "kind": self.kind,
            "method": self.method,
            "level": self.level,
            "runtime": self.runtime,
            "ops_before": self.ops_before,
            "ops_after": self.ops_after,
            "tensors_before": self.tensors_before,
            "tensors_after": self.tensors_after,
            "groups": [g.to_dict() for g in self.groups],
            "folded": list(self.folded),
            **({"note": self.note} if self.note else {}),
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> FusionRecord:
        """The record from its plan-file form (without the model, which is never written)."""
        ints = {k: int(d.get(k) or 0) for k in ("ops_before", "ops_after", "tensors_before", "tensors_after")}
        return cls(
            method=str(d.get("method", "onnxruntime")),
            level=str(d.get("level", LEVEL)),
            runtime=str(d.get("runtime", "")),
            groups=tuple(FusedGroup.from_dict(g) for g in d.get("groups", ())),
            folded=tuple(d.get("folded", ())),
            note=str(d.get("note", "")),
            **ints,
        )


def fusion_of(graph: Graph) -> FusionRecord | None:
    """The fusion record a graph's source carries (a record, or a plan file's entry read
    back as one), or None when the graph was not fused."""
    src = graph.source
    for t in getattr(src, "transforms", ()) or ():
        if isinstance(t, FusionRecord):
            return t
        if isinstance(t, Mapping) and t.get("kind") == FusionRecord.kind:
            return FusionRecord.from_dict(t)
    return None


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    msg = text[0] if text else type(e).__name__
    return msg if len(msg) <= 200 else msg[:197] + "..."


def fuse_onnx(
    path: str | os.PathLike,
    *,
    input_shapes: Mapping[str, Iterable[int]] | None = None,
    dims: Mapping[str, int] | None = None,
    input_values: Mapping[str, object] | None = None,
) -> tuple[Graph, FusionRecord]:
    """The graph onnxruntime runs for the ONNX model at `path`, and the record of what it fused.

    Takes the pins :func:`planner.models.onnx.load_onnx` takes. The original model is
    imported first (a model that cannot be imported at all raises ``ModelError``, as
    without fusion); every later failure (onnxruntime cannot optimise it, its graph cannot
    be imported) returns the original graph with the reason in ``record.note``. When
    onnxruntime fuses nothing the original graph comes back too, so a fused plan always
    differs from an unfused one. Either way the record is in ``graph.source.transforms``.
    """
    from .onnx import load_onnx

    path = Path(path)
    original = load_onnx(path, input_shapes=input_shapes, dims=dims, input_values=input_values)
    try:
        fused, model, runtime = _optimised_graph(path, original)
    except Exception as e:  # noqa: BLE001 - fusion never fails the command: fall back, say why
        record = FusionRecord(note=f"onnxruntime's optimised graph cannot be used: {_one_line(e)}")
        return _with_record(original, record), record
    groups, folded = _groups(original, fused)
    record = FusionRecord(
        runtime=runtime,
        groups=tuple(groups),
        folded=tuple(folded),
        ops_before=len(original.ops),
        ops_after=len(fused.ops),
        tensors_before=len(original.tensors),
        tensors_after=len(fused.tensors),
        model=model if groups else None,
    )
    if not groups:
        return _with_record(original, record), record
    return _with_record(fused, record), record


def _with_record(graph: Graph, record: FusionRecord) -> Graph:
    """`graph` with `record` in its source's transforms (a new Graph object: sources are frozen)."""
    src = replace(graph.source, transforms=(*graph.source.transforms, record))
    return Graph(graph.name, graph.tensors.values(), graph.ops, src)


def _optimised_graph(path: Path, original: Graph) -> tuple[Graph, Any, str]:
    """(fused graph with the original's source, the optimised ModelProto, onnxruntime version).

    The model is pinned to the shapes `original` was imported with, optimised by
    onnxruntime at :data:`LEVEL` on the CPU provider, and imported with ``load_onnx``; the
    weights of the fused graph that are not initializers of the optimised model (constants
    the importer folds) are added to it as initializers, so the record's model holds every
    weight the executor needs."""
    import onnx
    import onnxruntime as ort

    from .onnx import fold_constants, load_onnx

    src = original.source
    with tempfile.TemporaryDirectory(prefix="planner-fuse-") as d:
        pinned = Path(d) / "pinned" / path.name
        pinned.parent.mkdir()
        onnx.save(_pinned_model(path, src.input_shapes), str(pinned))
        out = Path(d) / path.name  # same stem: the fused graph keeps the model's name
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        so.optimized_model_filepath = str(out)
        so.intra_op_num_threads = 1
        so.log_severity_level = 4
        ort.InferenceSession(str(pinned), so, providers=["CPUExecutionProvider"])
        model = onnx.load(str(out))
        if _drop_stale_inputs(model, set(original.inputs)):
            onnx.save(model, str(out))
        kw = {"input_shapes": dict(src.input_shapes), "input_values": dict(src.input_values) or None}
        fused = load_onnx(out, **kw)
        inits = {i.name for i in model.graph.initializer}
        missing = [w for w in fused.weights if w not in inits]
        if missing:
            values = fold_constants(out, names=missing, **kw)
            model.graph.initializer.extend(onnx.numpy_helper.from_array(values[w], w) for w in missing)
    fused = Graph(original.name, fused.tensors.values(), fused.ops, replace(src, details=fused.source.details))
    return fused, model, ort.__version__


def _drop_stale_inputs(model, real: set[str]) -> bool:
    """Drop graph inputs of the optimised model that are neither inputs of the original nor
    initializers: in IR < 4 models initializers are also graph inputs, and onnxruntime keeps
    such an input after folding its initializer away. True when something was dropped."""
    inits = {i.name for i in model.graph.initializer}
    keep = [vi for vi in model.graph.input if vi.name in real or vi.name in inits]
    if len(keep) == len(model.graph.input):
        return False
    del model.graph.input[:]
    model.graph.input.extend(keep)
    return True


def _pinned_model(path: Path, shapes: Mapping[str, tuple[int, ...]]):
    """The model with external data loaded and every graph input declared at its pinned shape
    (intermediate shapes dropped: onnxruntime infers them again from the static inputs)."""
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"{path.name}: {_one_line(e)}") from None
    for vi in model.graph.input:
        if vi.name in shapes and vi.type.HasField("tensor_type"):
            tt = vi.type.tensor_type
            tt.ClearField("shape")
            tt.shape.SetInParent()
            for s in shapes[vi.name]:
                tt.shape.dim.add().dim_value = int(s)
    del model.graph.value_info[:]
    return model


def _groups(original: Graph, fused: Graph) -> tuple[list[FusedGroup], list[str]]:
    """Fused groups found by tensor names, and the original ops onnxruntime folded.

    Ops of the fused graph joined by tensors the original does not have form one region (a
    lone op is a region too). From the region's outputs that are original tensors, walk the
    original graph back through tensors the fused graph no longer has: the ops met are the
    group, the tensors crossed are hidden. A region of one op that stands for one original
    op is no group. An original op no region met was folded (its outputs became constants,
    or fed only such), not fused.
    """
    pos = original.op_index
    groups: list[FusedGroup] = []
    claimed: set[str] = set()
    for region in _regions(original, fused):
        outs = [t for o in region for t in fused.op(o).outputs if t in original.producer]
        if not outs:
            continue
        ops, hidden = _walk_back(original, outs, set(fused.tensors))
        claimed |= ops
        if len(ops) > 1 or len(region) > 1:
            adds = [t for o in region for t in fused.op(o).outputs if t not in original.tensors]
            groups.append(
                FusedGroup(
                    ops=tuple(region),
                    types=tuple(fused.op(o).type for o in region),
                    replaces=tuple(sorted(ops, key=pos.__getitem__)),
                    hides=tuple(sorted(hidden, key=_first_use(original))),
                    adds=tuple(adds),
                )
            )
    folded = [o.name for o in original.ops if o.name not in claimed and not o.attrs.get("synthetic")]
    folded = [n for n in folded if all(t not in fused.producer for t in original.op(n).outputs)]
    return groups, folded


def _regions(original: Graph, fused: Graph) -> list[list[str]]:
    """The fused graph's ops (synthetic copies left out) joined by the tensors it made up
    (not in the original graph), each region in the fused graph's order."""
    ops = [o.name for o in fused.ops if not o.attrs.get("synthetic")]
    parent = {o: o for o in ops}

    def root(o: str) -> str:
        while parent[o] != o:
            parent[o] = parent[parent[o]]
            o = parent[o]
        return o

    for t, p in fused.producer.items():
        if t in original.tensors or p not in parent:
            continue
        for c in fused.consumers[t]:
            if c in parent:
                parent[root(c)] = root(p)
    regions: dict[str, list[str]] = {}
    for o in ops:
        regions.setdefault(root(o), []).append(o)
    return list(regions.values())


def _walk_back(original: Graph, outputs: Iterable[str], kept: set[str]) -> tuple[set[str], set[str]]:
    """Original ops that produce `outputs` and, through tensors not in `kept`, their inputs."""
    ops: set[str] = set()
    hidden: set[str] = set()
    stack = [original.producer[t] for t in outputs]
    while stack:
        p = stack.pop()
        if p in ops:
            continue
        ops.add(p)
        for t in original.op(p).inputs:
            if t in kept or t not in original.producer:
                continue  # a boundary of the group (still materialised), or a weight / input
            hidden.add(t)
            stack.append(original.producer[t])
    return ops, hidden


def _first_use(original: Graph):
    """Sort key: a tensor's producer position in the original order (hidden tensors read in order)."""
    return lambda t: (original.op_index[original.producer[t]], t)
