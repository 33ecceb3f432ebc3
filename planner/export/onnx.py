"""`planner export --format onnx`: the ONNX model a plan was made for, as runtimes run it.

A plan of an ONNX model is a plan of the graph as imported and transformed (DESIGN §7): the
graph onnxruntime runs after its fusions, and the model split into row stripes or
output-channel chunks (planner/models/split_onnx.py). The plan's offsets mean nothing to
a runtime that runs another graph, so this writes that graph: the split model of a split
plan, onnxruntime's optimised model of a fused one, else the model file itself, byte for
byte. The model is imported again as the plan says (its input shapes, its fusion) and
split again from the plan's record, and refused (one line) unless it is the plan's graph.
onnxruntime runs the written model with the original's outputs (tests/test_split_onnx.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from planner.plan import Plan, plan_mismatch
from planner.simulate import check


class OnnxExportError(ValueError):
    """The plan cannot be written as an ONNX model (one line)."""


@dataclass(frozen=True)
class OnnxExport:
    """What was written: which model (``split``, ``fused`` or ``original``), its ops."""

    kind: str
    nodes: int


def export_onnx(plan: Plan, model: str | os.PathLike, out: str | os.PathLike) -> OnnxExport:
    """Write the transformed ONNX model of `plan` (made for the .onnx file `model`) to `out`."""
    from planner.models.errors import ModelError
    from planner.models.fuse import fusion_of
    from planner.models.split_onnx import OnnxSplitRecord, reapply, split_record
    from planner.models.zoo import load_model

    check(plan)
    path = Path(model)
    if path.suffix.lower() != ".onnx":
        raise OnnxExportError(
            f"{path.name}: --format onnx writes the ONNX model of a plan of an ONNX model "
            "(a .tflite plan exports with --format tflite)"
        )
    fused = fusion_of(plan.graph)
    shapes = {n: plan.graph.tensors[n].shape for n in plan.graph.inputs if plan.graph.tensors[n].shape is not None}
    try:
        graph = load_model(
            str(path), input_shapes=shapes or None, fuse=fused.method if fused and fused.applied else "none"
        )
        graph = reapply(graph, plan.graph)
    except ModelError as e:
        raise OnnxExportError(str(e)) from None
    why = plan_mismatch(plan, graph)
    if why:
        raise OnnxExportError(why)
    split, fusion = split_record(graph), fusion_of(graph)
    if isinstance(split, OnnxSplitRecord):
        proto, kind = split.model, "split"
    elif fusion is not None and fusion.applied:
        proto, kind = fusion.model, "fused"
    else:
        Path(out).write_bytes(path.read_bytes())
        return OnnxExport("original", len(graph.ops))
    Path(out).write_bytes(proto.SerializeToString())
    return OnnxExport(kind, len(proto.graph.node))
