"""Generate the bundled default model: MLPerf Tiny ResNet-8 (CIFAR-10) as ONNX.

Architecture (MLPerf Tiny image classification reference, ``resnet_v1_eembc``):
input 1x3x32x32 float32 -> Conv 16 3x3 (+ folded BN bias) -> ReLU ->
three residual stages of 16 / 32 / 64 channels (stride 2 at stages 2 and 3; each stage
is conv3x3 -> ReLU -> conv3x3, a 1x1 stride-2 conv shortcut where the shape changes,
Add, ReLU) -> GlobalAveragePool -> Flatten -> Gemm 10 -> Softmax.

Weights are random (numpy seed 0, He-normal init), BatchNorm is folded into the conv
biases. Opset 17, checked with ``onnx.checker``. Writes ``models/zoo/resnet8_cifar10.onnx``.

    python experiments/make_default_model.py [--out PATH]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "models" / "zoo" / "resnet8_cifar10.onnx"


def build(seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []

    def he(shape: tuple[int, ...], fan_in: int) -> np.ndarray:
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)

    def conv(name: str, x: str, cin: int, cout: int, k: int, stride: int) -> str:
        w = he((cout, cin, k, k), cin * k * k)
        b = (0.01 * rng.standard_normal(cout)).astype(np.float32)  # folded BatchNorm shift
        inits.append(numpy_helper.from_array(w, f"{name}.weight"))
        inits.append(numpy_helper.from_array(b, f"{name}.bias"))
        pad = k // 2
        nodes.append(
            helper.make_node(
                "Conv",
                [x, f"{name}.weight", f"{name}.bias"],
                [f"{name}.out"],
                name=name,
                kernel_shape=[k, k],
                strides=[stride, stride],
                pads=[pad, pad, pad, pad],
            )
        )
        return f"{name}.out"

    def relu(name: str, x: str) -> str:
        nodes.append(helper.make_node("Relu", [x], [f"{name}.out"], name=name))
        return f"{name}.out"

    x = relu("relu0", conv("conv0", "input", 3, 16, 3, 1))
    cin = 16
    for stage, (cout, stride) in enumerate([(16, 1), (32, 2), (64, 2)], start=1):
        p = f"stage{stage}"
        y = relu(f"{p}.relu1", conv(f"{p}.conv1", x, cin, cout, 3, stride))
        y = conv(f"{p}.conv2", y, cout, cout, 3, 1)
        shortcut = x if (stride == 1 and cin == cout) else conv(f"{p}.shortcut", x, cin, cout, 1, stride)
        nodes.append(helper.make_node("Add", [y, shortcut], [f"{p}.add.out"], name=f"{p}.add"))
        x = relu(f"{p}.relu2", f"{p}.add.out")
        cin = cout
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pool.out"], name="pool"))
    nodes.append(helper.make_node("Flatten", ["pool.out"], ["flatten.out"], name="flatten", axis=1))
    inits.append(numpy_helper.from_array(he((10, 64), 64), "fc.weight"))
    inits.append(numpy_helper.from_array(np.zeros(10, np.float32), "fc.bias"))
    nodes.append(helper.make_node("Gemm", ["flatten.out", "fc.weight", "fc.bias"], ["logits"], name="fc", transB=1))
    nodes.append(helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=-1))

    graph = helper.make_graph(
        nodes,
        "resnet8_cifar10",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 10])],
        initializer=inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="planner/experiments/make_default_model.py",
        doc_string="MLPerf Tiny ResNet-8 (CIFAR-10) architecture with seeded random He-init weights",
    )
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    model = build(args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(args.out))
    n_params = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    print(f"wrote {args.out} ({len(model.graph.node)} nodes, {n_params} parameters)")


if __name__ == "__main__":
    main()
