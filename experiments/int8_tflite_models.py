"""Write small synthetic int8 TFLite models (random weights) to try Vela on.

Not a model zoo: the weights are random and the quantisation scales are fixed guesses, so
the models compute nothing useful. They only have the shapes and operators of the real
networks, which is what Vela's SRAM and traffic numbers depend on (apart from weight
compression, which random weights make slightly worse than trained ones).

- ``probe_conv``: one 3x3 conv, 1x64x64x8 -> 1x64x64x8 (32 KiB in, 32 KiB out); shows
  whether an SRAM count includes the network input and output.
- ``probe_chain``: the same conv three times (two 32 KiB intermediates).
- ``resnet8``: MLPerf Tiny ResNet-8 topology (CIFAR-10, 1x32x32x3).
- ``dscnn_s``: MLPerf Tiny / ARM KWS DS-CNN-S topology (1x49x10x1, 64 channels).
- ``mbv1_025_vww``: MobileNetV1 alpha 0.25 at 96x96x3 (MLPerf Tiny VWW topology).

    python experiments/int8_tflite_models.py OUT_DIR [--only NAME ...]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import flatbuffers
import numpy as np
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as s

ACT_SCALE = 0.05  # every activation: int8, this scale, zero point -128 after ReLU
BO = s.BuiltinOperator


class _Builder:
    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.tensors: list = []
        self.buffers: list = [s.BufferT()]  # buffer 0: the empty one
        self.ops: list = []
        self.codes: dict[int, int] = {}

    def _tensor(self, name: str, shape, ttype: int, scale, zp, data: np.ndarray | None = None, axis: int = 0) -> int:
        t = s.TensorT()
        t.name, t.shape, t.type = name, list(shape), ttype
        q = s.QuantizationParametersT()
        q.scale = [float(x) for x in np.atleast_1d(scale)]
        q.zeroPoint = [int(x) for x in np.atleast_1d(zp)]
        q.quantizedDimension = axis
        t.quantization = q
        t.buffer = 0
        if data is not None:
            b = s.BufferT()
            b.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), dtype=np.uint8)
            self.buffers.append(b)
            t.buffer = len(self.buffers) - 1
        self.tensors.append(t)
        return len(self.tensors) - 1

    def act(self, name: str, shape, scale: float = ACT_SCALE, zp: int = -128) -> int:
        return self._tensor(name, shape, s.TensorType.INT8, scale, zp)

    def _op(self, code: int, ins: list[int], outs: list[int], opt_type: int = 0, opts=None) -> None:
        idx = self.codes.setdefault(code, len(self.codes))
        op = s.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = idx, ins, outs
        op.builtinOptionsType, op.builtinOptions = opt_type, opts
        self.ops.append(op)

    def _weights(self, name: str, shape, axis: int) -> tuple[int, np.ndarray]:
        w = self.rng.integers(-127, 128, size=shape, dtype=np.int8)
        ws = np.full(shape[axis], 0.02, dtype=np.float32)
        return self._tensor(name, shape, s.TensorType.INT8, ws, [0] * shape[axis], w, axis), ws

    def _bias(self, name: str, n: int, ws: np.ndarray) -> int:
        b = self.rng.integers(-1000, 1000, size=n, dtype=np.int32)
        return self._tensor(name, [n], s.TensorType.INT32, ws * ACT_SCALE, [0] * n, b)

    def conv(self, name: str, x: int, cout: int, k: int | tuple[int, int], stride: int = 1, relu: bool = True) -> int:
        kh, kw = (k, k) if isinstance(k, int) else k
        n, h, w, cin = self.tensors[x].shape
        wt, ws = self._weights(f"{name}/w", [cout, kh, kw, cin], 0)
        out = self.act(name, [n, -(-h // stride), -(-w // stride), cout])
        o = s.Conv2DOptionsT()
        o.padding, o.strideH, o.strideW = s.Padding.SAME, stride, stride
        o.fusedActivationFunction = s.ActivationFunctionType.RELU if relu else 0
        self._op(BO.CONV_2D, [x, wt, self._bias(f"{name}/b", cout, ws)], [out], s.BuiltinOptions.Conv2DOptions, o)
        return out

    def dwconv(self, name: str, x: int, stride: int = 1) -> int:
        n, h, w, c = self.tensors[x].shape
        wt, ws = self._weights(f"{name}/w", [1, 3, 3, c], 3)
        out = self.act(name, [n, -(-h // stride), -(-w // stride), c])
        o = s.DepthwiseConv2DOptionsT()
        o.padding, o.strideH, o.strideW, o.depthMultiplier = s.Padding.SAME, stride, stride, 1
        o.fusedActivationFunction = s.ActivationFunctionType.RELU
        opt = s.BuiltinOptions.DepthwiseConv2DOptions
        self._op(BO.DEPTHWISE_CONV_2D, [x, wt, self._bias(f"{name}/b", c, ws)], [out], opt, o)
        return out

    def add(self, name: str, a: int, b: int) -> int:
        out = self.act(name, self.tensors[a].shape)
        o = s.AddOptionsT()
        o.fusedActivationFunction = s.ActivationFunctionType.RELU
        self._op(BO.ADD, [a, b], [out], s.BuiltinOptions.AddOptions, o)
        return out

    def avgpool(self, name: str, x: int) -> int:
        n, h, w, c = self.tensors[x].shape
        out = self.act(name, [n, 1, 1, c])
        o = s.Pool2DOptionsT()
        o.padding, o.strideH, o.strideW, o.filterHeight, o.filterWidth = s.Padding.VALID, 1, 1, h, w
        self._op(BO.AVERAGE_POOL_2D, [x], [out], s.BuiltinOptions.Pool2DOptions, o)
        return out

    def fc_softmax(self, name: str, x: int, classes: int) -> int:
        n, *rest = self.tensors[x].shape
        cin = int(np.prod(rest))
        wt, ws = self._weights(f"{name}/w", [classes, cin], 0)
        ws = ws[:1]  # per-tensor weights for FULLY_CONNECTED
        self.tensors[wt].quantization.scale, self.tensors[wt].quantization.zeroPoint = [0.02], [0]
        logits = self.act(f"{name}/logits", [n, classes], 0.1, 0)
        self._op(
            BO.FULLY_CONNECTED,
            [x, wt, self._bias(f"{name}/b", classes, ws)],
            [logits],
            s.BuiltinOptions.FullyConnectedOptions,
            s.FullyConnectedOptionsT(),
        )
        out = self.act(f"{name}/softmax", [n, classes], 1 / 256, -128)
        o = s.SoftmaxOptionsT()
        o.beta = 1.0
        self._op(BO.SOFTMAX, [logits], [out], s.BuiltinOptions.SoftmaxOptions, o)
        return out

    def finish(self, inputs: list[int], outputs: list[int], path: Path) -> Path:
        sg = s.SubGraphT()
        sg.tensors, sg.operators, sg.inputs, sg.outputs, sg.name = self.tensors, self.ops, inputs, outputs, "main"
        m = s.ModelT()
        m.version, m.description, m.subgraphs, m.buffers = 3, "synthetic int8 (random weights)", [sg], self.buffers
        m.operatorCodes = []
        for code in sorted(self.codes, key=self.codes.get):
            oc = s.OperatorCodeT()
            oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), 1
            m.operatorCodes.append(oc)
        fb = flatbuffers.Builder(1024)
        fb.Finish(m.Pack(fb), file_identifier=b"TFL3")
        path.write_bytes(bytes(fb.Output()))
        return path


def probe_conv(path: Path) -> Path:
    b = _Builder()
    x = b.act("input", [1, 64, 64, 8])
    return b.finish([x], [b.conv("conv", x, 8, 3)], path)


def probe_chain(path: Path) -> Path:
    b = _Builder()
    x = y = b.act("input", [1, 64, 64, 8])
    for i in range(3):
        y = b.conv(f"conv{i}", y, 8, 3)
    return b.finish([x], [y], path)


def resnet8(path: Path) -> Path:
    b = _Builder()
    x = b.act("input", [1, 32, 32, 3])
    y = b.conv("conv0", x, 16, 3)
    for stage, (c, stride) in enumerate([(16, 1), (32, 2), (64, 2)]):
        h = b.conv(f"s{stage}/conv1", y, c, 3, stride)
        h = b.conv(f"s{stage}/conv2", h, c, 3, 1, relu=False)
        sc = y if stride == 1 else b.conv(f"s{stage}/short", y, c, 1, stride, relu=False)
        y = b.add(f"s{stage}/add", h, sc)
    return b.finish([x], [b.fc_softmax("fc", b.avgpool("pool", y), 10)], path)


def dscnn_s(path: Path) -> Path:
    b = _Builder()
    x = b.act("input", [1, 49, 10, 1])
    y = b.conv("conv0", x, 64, (10, 4), 2)
    for i in range(4):
        y = b.conv(f"pw{i}", b.dwconv(f"dw{i}", y), 64, 1)
    return b.finish([x], [b.fc_softmax("fc", b.avgpool("pool", y), 12)], path)


def mbv1_025_vww(path: Path) -> Path:
    b = _Builder()
    x = b.act("input", [1, 96, 96, 3])
    y = b.conv("conv0", x, 8, 3, 2)
    cfg = [(16, 1), (32, 2), (32, 1), (64, 2), (64, 1), (128, 2)] + [(128, 1)] * 5 + [(256, 2), (256, 1)]
    for i, (c, stride) in enumerate(cfg):
        y = b.conv(f"pw{i}", b.dwconv(f"dw{i}", y, stride), c, 1)
    return b.finish([x], [b.fc_softmax("fc", b.avgpool("pool", y), 2)], path)


MODELS: dict[str, Callable[[Path], Path]] = {
    f.__name__: f for f in (probe_conv, probe_chain, resnet8, dscnn_s, mbv1_025_vww)
}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--only", nargs="+", choices=sorted(MODELS), help="models to write (default: all)")
    args = ap.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name in args.only or MODELS:
        print(MODELS[name](args.out_dir / f"{name}.tflite"))


if __name__ == "__main__":
    main()
