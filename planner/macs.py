"""Multiply-accumulates per operator, from the shapes a graph carries.

Splitting trades memory for recomputed halo rows, so every plan reports its MACs and the
overhead over the model as given (issue 13's `--max-overhead`). The count covers the
operators whose cost is a weight tensor swept over the output -- convolutions (regular,
depthwise, transposed), fully connected layers and matrix products -- as
``output elements x (weight elements / output channels)``, which for every one of them is
the length of the dot product behind each output element: KH*KW*C_in for a TFLite CONV_2D
filter [C_out, KH, KW, C_in], KH*KW for a DEPTHWISE_CONV_2D filter [1, KH, KW, C_out], C_in
for a FULLY_CONNECTED [C_out, C_in], C_in/groups*KH*KW for an ONNX Conv [C_out, C_in/g, KH,
KW]. Element-wise operators, pooling, padding and data movement count 0: they are cheap
next to these and no runtime reports them as MACs either. Reading only shapes, it works on
graphs read back from plan files as well as on imported ones.
"""

from __future__ import annotations

import math

from planner.graph import Graph, Op

# op type -> (index of the weight input, whether channels are the last axis of the output)
WEIGHTED_OPS: dict[str, tuple[int, bool]] = {
    "CONV_2D": (1, True),
    "DEPTHWISE_CONV_2D": (1, True),
    "FULLY_CONNECTED": (1, True),
    "CONV_3D": (1, True),
    "Conv": (1, False),
    "FusedConv": (1, False),
    "Gemm": (1, True),
    "FusedGemm": (1, True),
    "MatMul": (1, True),
    "FusedMatMul": (1, True),
    "BATCH_MATMUL": (1, True),
}


def op_macs(graph: Graph, op: Op) -> int:
    """MACs of one op (0 for ops without a weight sweep or without shapes)."""
    if op.type == "TRANSPOSE_CONV":  # inputs: output shape, filter [C_out, KH, KW, C_in], x
        if len(op.inputs) < 3:
            return 0
        w, x = graph.tensors[op.inputs[1]].shape, graph.tensors[op.inputs[2]].shape
        return math.prod(x) * (math.prod(w) // w[-1]) if w and x else 0
    spec = WEIGHTED_OPS.get(op.type)
    if spec is None or len(op.inputs) <= spec[0] or not op.outputs:
        return 0
    w = graph.tensors[op.inputs[spec[0]]].shape
    y = graph.tensors[op.outputs[0]].shape
    if not w or not y:
        return 0
    channels = y[-1] if spec[1] else (y[1] if len(y) > 1 else y[0])
    if op.type in ("MatMul", "FusedMatMul", "BATCH_MATMUL"):
        k = w[-2] if len(w) >= 2 else w[0]  # B is [..., K, N]
        return math.prod(y) * k
    if channels <= 0:
        return 0
    return math.prod(y) * (math.prod(w) // channels)


def macs(graph: Graph) -> dict[str, int]:
    """Op name -> MACs, for every op of the graph."""
    return {o.name: op_macs(graph, o) for o in graph.ops}


def total_macs(graph: Graph) -> int:
    """The graph's MACs in all (see the module docstring for what is counted)."""
    return graph.derived("total_macs", lambda: sum(macs(graph).values()))
