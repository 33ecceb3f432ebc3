"""The MCU zoo: int8 TFLite models of the MLPerf-Tiny suite and friends, generated here.

Why generated: the planner needs realistic microcontroller models -- int8, NHWC, fused
activations, per-channel weights, the op mix TFLite Micro runs -- and the real converted
files need TensorFlow to make and are not on PyPI. So this module writes them itself with
`planner.models.tflite_writer` (the flatbuffer object API of the tflite-micro wheel), from
the architectures of the papers and the MLPerf Tiny reference code:

- ``mlperf_resnet8``: ResNet-8 (CIFAR-10, 32x32x3) with the weights of the bundled
  ``models/zoo/resnet8_cifar10.onnx`` (OIHW -> OHWI, BatchNorm already folded into the
  biases; Conv->Relu fused into the conv, Add->Relu into the ADD). Padding is TensorFlow's
  SAME, as in MLPerf's Keras reference: the ONNX file pads its stride-2 convs symmetrically
  (PyTorch style), so those see the image one pixel shifted and the outputs are not the
  ONNX model's;
- ``mlperf_vww_mobilenet_v1_025``: MobileNetV1 alpha 0.25 at 96x96x3, 2 classes (ReLU,
  SAME padding, average pool over the last 3x3 map, as MLPerf's ``vww_model.py``);
- ``mlperf_kws_ds_cnn_s``: DS-CNN-S on 49x10x1 MFCCs (conv 10x4 stride 2, 64 channels;
  four depthwise 3x3 + pointwise 64; average pool 24x5; FC 12);
- ``mlperf_ad_fc_autoencoder``: the anomaly-detection FC autoencoder 640-128x4-8-128x4-640;
- ``mobilenet_v2_<alpha>_<size>`` (alpha 0.35 at 96 and 160, 1.0 at 96, 160 and 224):
  MobileNetV2 as Keras builds it (inverted residuals, expansion 6, ReLU6, linear
  bottlenecks, residual ADD at stride 1 with equal channels, widths rounded by
  make_divisible(8), 1280 channels before the head, MEAN, FC 1000);
- ``squeezenet_11_224``: SqueezeNet 1.1 (fire modules: squeeze 1x1, expand 1x1 and 3x3 as
  one CONCATENATION on axis 3; max pools 3x3/2 VALID; conv 1000, MEAN, SOFTMAX).

Weights are seeded random (He-normal) except ResNet-8's. Random weights alone would make
every later layer's output nearly input-independent (and a 1000-way softmax of near-equal
logits quantises to a constant), which would make comparing int8 outputs of transformed
models meaningless. So calibration folds a *data-dependent BatchNorm* into each conv and
FC that has BatchNorm in its reference (every one but ResNet-8's, whose BN is already in
the ONNX biases, and SqueezeNet, which gets it as a stand-in for trained weights): the
float model runs on the calibration batch, and each channel of the layer's output is
scaled to a random gamma around 1 and shifted by a random beta around +1: the form a
trained BN folded into the weights takes. Beta is positive so that most units pass the
ReLU: at beta 0 every layer cuts half of its signal, and the random network becomes
chaotic (int8 rounding noise grows by ~15 % a layer, and after 27 layers the int8 model
no longer follows its float reference). The classifier's logits are scaled the same way,
with one scale for all classes, to a spread of ``sqrt(2 ln classes)`` across inputs, so the
top classes change from input to input; SqueezeNet's conv-ReLU-mean head gets that spread
on the pooled logits, at one common level above the ReLU. Calibration uses 16 to 64 inputs
(more for the cheaper models): statistics of the last, small feature maps from fewer
inputs fit those inputs only.

Quantisation follows the converter's conventions: activation ranges are the per-tensor
min/max of the float forward pass over the calibration batch (int8 inputs drawn uniformly,
as `planner run` draws them, dequantised), widened to include 0, scale (max-min)/255 and
zero point -128 - min/scale; weights are symmetric per output channel in [-127, 127]
(axis 0 of OHWI filters and FC weights, axis 3 of 1xHxWxC depthwise filters); biases are
int32 at input_scale x weight_scale; AVERAGE_POOL_2D, MAX_POOL_2D, RESHAPE and the inputs
of CONCATENATION share their output's scale (TFLM copies their bytes unchanged); SOFTMAX
outputs have scale 1/256 and zero point -128. Inputs and outputs are int8 (no QUANTIZE).
Operator-code versions are the converter's for int8 (CONV_2D 3, FC 4, ADD 2, ...). One
step beyond the converter: biases are corrected for what weight rounding adds on the mean
input (`_bias_correction`), without which the classifier heads, which amplify small
input-dependent changes over a large constant part, would follow the weights' rounding
more than the input. On random inputs the int8 models then agree with their float
reference on the top class for about half to all of the inputs (44-94 % in
experiments/results/mcu_zoo.md); the bit-for-bit comparisons of transformed models need
only that their outputs vary.

Files are cached: `locate(name)` writes ``<version>/<name>.tflite`` into
``$PLANNER_CACHE/mcu`` (default ``~/.cache/planner/mcu``) on first use, where the version
hashes `GENERATOR_VERSION`, this module's and the writer's source, the bundled ONNX and
numpy's version, so a file made by an older generator is never reused. `build(name)` is
deterministic: the same bytes every time, also with another BLAS thread count or build
(the float pass runs in float64 and its statistics are rounded to 12 significant bits
before anything is derived from them, see `_stable`), so a plan's model sha256 holds
wherever the file is regenerated.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .cache import cache_root, write_atomically
from .errors import ModelError

if TYPE_CHECKING:
    from .tflite_writer import Model

__all__ = ["MCU_MODELS", "GENERATOR_VERSION", "build", "locate", "is_cached", "cache_dir", "network", "forward"]

GENERATOR_VERSION = "1"  # bump for a change the source hash cannot see
BUNDLED_RESNET8 = Path(__file__).parent / "zoo" / "resnet8_cifar10.onnx"
BN_GAMMA = (0.6, 1.4)  # the random BatchNorm scale is uniform in this range,
BN_BETA_MEAN, BN_BETA_STD = 1.0, 0.3  # its shift normal (positive: see the module docstring)
CALIBRATION_MACS = 2_000_000_000  # the calibration batch costs about this many multiply-accumulates
CALIBRATION_INPUTS = (16, 64)  # and has this many inputs at least and at most
STABLE_BITS = 12  # calibration statistics keep this many significant bits (`_stable`)
HEAD_RELU_MARGIN = 2.5  # SqueezeNet's pooled head: its level, in across-input deviations
SOFTMAX_QUANT = (1.0 / 256.0, -128)
# operator-code versions the converter writes for int8 kernels (tools/versioning/op_version.cc)
VERSIONS = {
    "CONV_2D": 3,
    "DEPTHWISE_CONV_2D": 3,
    "FULLY_CONNECTED": 4,
    "ADD": 2,
    "AVERAGE_POOL_2D": 2,
    "MAX_POOL_2D": 2,
    "MEAN": 2,
    "CONCATENATION": 2,
    "SOFTMAX": 2,
    "RESHAPE": 1,
}
WEIGHTED = ("conv", "dwconv", "fc")


class McuZooError(ModelError):
    """An MCU zoo model cannot be built or cached (one line saying why)."""


@dataclass
class Layer:
    """One layer of the float model; its output tensor has the layer's name.

    `weight` is OHWI for ``conv``, 1xHxWxC for ``dwconv``, (out, in) for ``fc``. `norm`
    says how calibration scales the layer's output: ``bn`` (a folded BatchNorm with
    `gamma`/`beta`), ``pooled`` (the pooled-logit head), or ``""`` (weights as they are).
    """

    name: str
    op: str  # conv | dwconv | fc | add | avgpool | maxpool | mean | concat | reshape | softmax
    inputs: tuple[str, ...]
    shape: tuple[int, ...]
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    stride: tuple[int, int] = (1, 1)
    padding: str = "SAME"
    act: str = "NONE"  # NONE | RELU | RELU6, fused into the op
    pool: tuple[int, int] = (1, 1)
    norm: str = ""
    gamma: np.ndarray | None = None
    beta: np.ndarray | None = None
    input_mean: np.ndarray | None = None  # per input channel, from calibration (bias correction)


@dataclass
class Net:
    """A float model in NHWC, batch 1: layers in execution order, the input's shape and the
    float range its int8 values stand for; `ranges` are filled by calibration."""

    name: str
    input_shape: tuple[int, ...]
    input_range: tuple[float, float]
    layers: list[Layer] = field(default_factory=list)
    calibration_inputs: int = 0  # 0: as many as CALIBRATION_MACS allow (`calibration_batch`)
    seed: int = 0
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def output(self) -> str:
        """The model's one output: the last layer's tensor."""
        return self.layers[-1].name

    def shape(self, name: str) -> tuple[int, ...]:
        """The (batch 1) shape of a tensor by name."""
        if name == "input":
            return self.input_shape
        return next(lay.shape for lay in self.layers if lay.name == name)


# -- architectures ------------------------------------------------------------------------------
def _out_size(n: int, k: int, s: int, padding: str) -> int:
    return -(-n // s) if padding == "SAME" else (n - k) // s + 1


Kernel = int | tuple[int, int]


class _Arch:
    """Builds a Net layer by layer: shapes inferred, random weights drawn in layer order
    from one seeded generator (so a model's weights depend on nothing but its seed). Each
    method adds one layer named `name` and returns that name (its output tensor)."""

    def __init__(self, name: str, input_shape: tuple[int, ...], input_range: tuple[float, float], seed: int):
        self.net = Net(name, tuple(input_shape), input_range, seed=seed)
        self.rng = np.random.default_rng(seed)

    def _add(self, layer: Layer) -> str:
        self.net.layers.append(layer)
        return layer.name

    def _bn(self, channels: int, norm: str) -> tuple[np.ndarray | None, np.ndarray | None]:
        if norm != "bn":
            return None, None
        gamma = self.rng.uniform(*BN_GAMMA, channels)
        return gamma, self.rng.normal(BN_BETA_MEAN, BN_BETA_STD, channels)

    def _he(self, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
        return (self.rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(np.float32)

    def conv(
        self,
        name: str,
        x: str,
        cout: int = 0,
        k: Kernel = 1,
        stride: int = 1,
        padding: str = "SAME",
        act: str = "RELU",
        norm: str = "bn",
        weight: np.ndarray | None = None,
        bias: np.ndarray | None = None,
    ) -> str:
        """A CONV_2D: `cout` filters of `k` x `k` (or (kh, kw)), random He-normal OHWI
        weights with zero bias unless `weight` and `bias` are given."""
        n, h, w, cin = self.net.shape(x)
        kh, kw = (k, k) if isinstance(k, int) else k
        if weight is None:
            weight, bias = self._he((cout, kh, kw, cin), kh * kw * cin), np.zeros(cout, np.float32)
        cout, kh, kw = weight.shape[:3]
        shape = (n, _out_size(h, kh, stride, padding), _out_size(w, kw, stride, padding), cout)
        g, b = self._bn(cout, norm)
        return self._add(
            Layer(name, "conv", (x,), shape, weight, bias, (stride, stride), padding, act, norm=norm, gamma=g, beta=b)
        )

    def dw(self, name: str, x: str, k: int = 3, stride: int = 1, act: str = "RELU", norm: str = "bn") -> str:
        """A DEPTHWISE_CONV_2D (multiplier 1, SAME padding) with random 1xKxKxC weights."""
        n, h, w, c = self.net.shape(x)
        weight, bias = self._he((1, k, k, c), k * k), np.zeros(c, np.float32)
        shape = (n, _out_size(h, k, stride, "SAME"), _out_size(w, k, stride, "SAME"), c)
        g, b = self._bn(c, norm)
        return self._add(
            Layer(name, "dwconv", (x,), shape, weight, bias, (stride, stride), "SAME", act, norm=norm, gamma=g, beta=b)
        )

    def fc(
        self,
        name: str,
        x: str,
        cout: int = 0,
        act: str = "NONE",
        norm: str = "bn",
        weight: np.ndarray | None = None,
        bias: np.ndarray | None = None,
        logits: bool = False,
    ) -> str:
        """A FULLY_CONNECTED on a (1, in) tensor; `logits` scales its outputs to the
        classifier spread (see the module docstring) instead of a random BatchNorm."""
        cin = self.net.shape(x)[-1]
        if weight is None:
            weight, bias = self._he((cout, cin), cin), np.zeros(cout, np.float32)
        cout = weight.shape[0]
        g, b = self._bn(cout, norm)
        if logits:
            norm, g, b = "logits", np.full(cout, _logit_spread(cout)), np.zeros(cout)
        return self._add(Layer(name, "fc", (x,), (1, cout), weight, bias, act=act, norm=norm, gamma=g, beta=b))

    def add(self, name: str, a: str, b: str, act: str = "NONE") -> str:
        """An element-wise ADD of two tensors of one shape."""
        return self._add(Layer(name, "add", (a, b), self.net.shape(a), act=act))

    def pool(
        self, op: str, name: str, x: str, size: tuple[int, int], stride: tuple[int, int], padding: str = "VALID"
    ) -> str:
        """An AVERAGE_POOL_2D (`op` avgpool) or MAX_POOL_2D (maxpool)."""
        n, h, w, c = self.net.shape(x)
        (kh, kw), (sh, sw) = size, stride
        shape = (n, _out_size(h, kh, sh, padding), _out_size(w, kw, sw, padding), c)
        return self._add(Layer(name, op, (x,), shape, stride=(sh, sw), padding=padding, pool=(kh, kw)))

    def global_pool(self, name: str, x: str) -> str:
        """AVERAGE_POOL_2D over the whole map (Keras AveragePooling2D(pool_size=map))."""
        h, w = self.net.shape(x)[1:3]
        return self.pool("avgpool", name, x, (h, w), (h, w))

    def mean(self, name: str, x: str) -> str:
        """MEAN over H and W without keeping them (what Keras GlobalAveragePooling2D converts to)."""
        shape = self.net.shape(x)
        return self._add(Layer(name, "mean", (x,), (shape[0], shape[-1])))

    def concat(self, name: str, xs: list[str]) -> str:
        """CONCATENATION on the channel axis."""
        shapes = [self.net.shape(x) for x in xs]
        return self._add(Layer(name, "concat", tuple(xs), (*shapes[0][:-1], sum(s[-1] for s in shapes))))

    def flatten(self, name: str, x: str) -> str:
        """RESHAPE to (1, everything)."""
        return self._add(Layer(name, "reshape", (x,), (1, math.prod(self.net.shape(x)[1:]))))

    def softmax(self, name: str, x: str) -> str:
        """SOFTMAX over the last axis (beta 1)."""
        return self._add(Layer(name, "softmax", (x,), self.net.shape(x)))


def _logit_spread(classes: int) -> float:
    """The deviation given each logit across inputs: the expected maximum of `classes`
    standard normals is about sqrt(2 ln classes), so the top class gets a real share."""
    return math.sqrt(2.0 * math.log(max(classes, 2)))


def _classifier(a: _Arch, x: str, classes: int, pool: str = "avgpool") -> str:
    """Global pool (AVERAGE_POOL_2D + RESHAPE, or MEAN), FC `classes`, SOFTMAX."""
    x = a.flatten("flatten", a.global_pool("pool", x)) if pool == "avgpool" else a.mean("pool", x)
    return a.softmax("softmax", a.fc("logits", x, classes, logits=True))


def _resnet8() -> Net:
    """MLPerf-Tiny ResNet-8 with the bundled ONNX model's weights: each ONNX node becomes a
    layer, and a Relu is fused into the Conv or Add it follows (its only reader)."""
    import onnx

    m = onnx.load(str(BUNDLED_RESNET8))
    readers: dict[str, int] = {}
    for node in m.graph.node:
        for i in node.input:
            readers[i] = readers.get(i, 0) + 1
    a = _Arch("mlperf_resnet8", (1, 32, 32, 3), (0.0, 1.0), seed=8)
    alias = {m.graph.input[0].name: "input"}
    init = {t.name: onnx.numpy_helper.to_array(t).astype(np.float32) for t in m.graph.initializer}
    for node in m.graph.node:
        x = [alias.get(i, i) for i in node.input]
        if node.op_type == "Relu":
            producer = a.net.layers[-1]
            if producer.name != x[0] or producer.op not in ("conv", "add") or readers[node.input[0]] != 1:
                raise McuZooError(f"{BUNDLED_RESNET8.name}: Relu {node.name} does not follow its only producer")
            producer.act = "RELU"
            alias[node.output[0]] = producer.name
        else:
            alias[node.output[0]] = _onnx_layer(a, node, x, init)
    return a.net


def _onnx_layer(a: _Arch, node, x: list[str], init: dict[str, np.ndarray]) -> str:
    """The layer of one ONNX node of the bundled ResNet-8 (Conv OIHW -> OHWI, pads -> SAME)."""
    from onnx import helper

    attrs = {at.name: helper.get_attribute_value(at) for at in node.attribute}
    if node.op_type == "Conv":
        w = np.ascontiguousarray(init[node.input[1]].transpose(0, 2, 3, 1))
        pad = "SAME" if any(attrs.get("pads", [0])) else "VALID"
        stride = attrs["strides"][0]
        return a.conv(
            node.name, x[0], stride=stride, padding=pad, act="NONE", norm="", weight=w, bias=init[node.input[2]]
        )
    if node.op_type == "Add":
        return a.add(node.name, x[0], x[1])
    if node.op_type == "GlobalAveragePool":
        return a.global_pool(node.name, x[0])
    if node.op_type == "Flatten":
        return a.flatten(node.name, x[0])
    if node.op_type == "Gemm" and attrs.get("transB") == 1:
        return a.fc(node.name, x[0], norm="", weight=init[node.input[1]], bias=init[node.input[2]])
    if node.op_type == "Softmax":
        return a.softmax(node.name, x[0])
    raise McuZooError(f"{BUNDLED_RESNET8.name}: no TFLite mapping for {node.op_type} ({node.name})")


def _vww_mobilenet_v1() -> Net:
    """MobileNetV1 alpha 0.25, 96x96x3, 2 classes: MLPerf-Tiny's visual wake words model."""
    a = _Arch("mlperf_vww_mobilenet_v1_025", (1, 96, 96, 3), (-1.0, 1.0), seed=11)
    x = a.conv("conv1", "input", 8, 3, stride=2)
    plan = [(1, 16), (2, 32), (1, 32), (2, 64), (1, 64), (2, 128), *[(1, 128)] * 5, (2, 256), (1, 256)]
    for i, (stride, filters) in enumerate(plan, start=1):
        x = a.dw(f"block{i}/depthwise", x, 3, stride)
        x = a.conv(f"block{i}/pointwise", x, filters, 1)
    _classifier(a, x, 2)
    return a.net


def _kws_ds_cnn_s() -> Net:
    """DS-CNN-S keyword spotting on 49x10x1 MFCCs, 12 classes (MLPerf-Tiny's ``ds_cnn``)."""
    a = _Arch("mlperf_kws_ds_cnn_s", (1, 49, 10, 1), (-1.0, 1.0), seed=12)
    x = a.conv("conv1", "input", 64, (10, 4), stride=2)
    for i in range(1, 5):
        x = a.dw(f"block{i}/depthwise", x, 3)
        x = a.conv(f"block{i}/pointwise", x, 64, 1)
    x = a.flatten("flatten", a.pool("avgpool", "pool", x, (24, 5), (24, 5)))
    a.softmax("softmax", a.fc("logits", x, 12, logits=True))
    return a.net


def _ad_autoencoder() -> Net:
    """MLPerf-Tiny anomaly detection: FC autoencoder 640-128x4-8-128x4-640 (BN + ReLU between)."""
    a = _Arch("mlperf_ad_fc_autoencoder", (1, 640), (-1.0, 1.0), seed=13)
    x = "input"
    for i, width in enumerate([128] * 4 + [8] + [128] * 4, start=1):
        x = a.fc(f"dense{i}", x, width, act="RELU")
    a.fc("reconstruction", x, 640, norm="")
    return a.net


def make_divisible(v: float, divisor: int = 8) -> int:
    """Keras/TF MobileNet channel rounding: the nearest multiple of `divisor`, never more
    than 10 % below `v`."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


# (expansion, output filters before alpha, repeats, first stride): the MobileNetV2 paper's table 2
MOBILENET_V2_BLOCKS = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


def _mobilenet_v2(alpha: float, size: int, classes: int = 1000) -> Net:
    """MobileNetV2 (Keras applications' layout) at width `alpha` and input `size`."""
    name = f"mobilenet_v2_{round(alpha * 100):03d}_{size}"
    a = _Arch(name, (1, size, size, 3), (-1.0, 1.0), seed=20 + round(alpha * 100) + size)
    x = a.conv("conv1", "input", make_divisible(32 * alpha), 3, stride=2, act="RELU6")
    block = 0
    for t, c, n, s in MOBILENET_V2_BLOCKS:
        out = make_divisible(int(c * alpha))
        for i in range(n):
            stride, cin, y = (s if i == 0 else 1), a.net.shape(x)[-1], x
            if t != 1:
                y = a.conv(f"block{block}/expand", y, t * cin, 1, act="RELU6")
            y = a.dw(f"block{block}/depthwise", y, 3, stride, act="RELU6")
            y = a.conv(f"block{block}/project", y, out, 1, act="NONE")
            x = a.add(f"block{block}/add", x, y) if stride == 1 and cin == out else y
            block += 1
    last = make_divisible(1280 * alpha) if alpha > 1.0 else 1280
    x = a.conv("conv_last", x, last, 1, act="RELU6")
    _classifier(a, x, classes, pool="mean")
    return a.net


def _squeezenet_11() -> Net:
    """SqueezeNet 1.1 at 224x224x3, 1000 classes (fire modules, max pools 3x3/2 VALID)."""
    a = _Arch("squeezenet_11_224", (1, 224, 224, 3), (-1.0, 1.0), seed=30)
    x = a.conv("conv1", "input", 64, 3, stride=2, padding="VALID")
    fires = {
        2: (16, 64),
        3: (16, 64),
        4: (32, 128),
        5: (32, 128),
        6: (48, 192),
        7: (48, 192),
        8: (64, 256),
        9: (64, 256),
    }
    for i, (squeeze, expand) in fires.items():
        if i in (2, 4, 6):
            x = a.pool("maxpool", f"pool{i - 1}", x, (3, 3), (2, 2))
        s = a.conv(f"fire{i}/squeeze", x, squeeze, 1)
        e1 = a.conv(f"fire{i}/expand1x1", s, expand, 1)
        e3 = a.conv(f"fire{i}/expand3x3", s, expand, 3)
        x = a.concat(f"fire{i}/concat", [e1, e3])
    x = a.conv("conv10", x, 1000, 1, norm="pooled")
    a.net.layers[-1].gamma = np.full(1000, _logit_spread(1000))
    a.softmax("softmax", a.mean("pool", x))
    return a.net


MCU_MODELS: dict[str, str] = {
    "mlperf_resnet8": "MLPerf Tiny ResNet-8, CIFAR-10 1x32x32x3 int8, the bundled ONNX model's weights",
    "mlperf_vww_mobilenet_v1_025": "MLPerf Tiny visual wake words: MobileNetV1 0.25, 1x96x96x3 int8, 2 classes",
    "mlperf_kws_ds_cnn_s": "MLPerf Tiny keyword spotting: DS-CNN-S, 1x49x10x1 int8, 12 classes",
    "mlperf_ad_fc_autoencoder": "MLPerf Tiny anomaly detection: FC autoencoder 640-128x4-8-128x4-640 int8",
    "mobilenet_v2_035_96": "MobileNetV2 0.35, 1x96x96x3 int8, 1000 classes",
    "mobilenet_v2_035_160": "MobileNetV2 0.35, 1x160x160x3 int8, 1000 classes",
    "mobilenet_v2_100_96": "MobileNetV2 1.0, 1x96x96x3 int8, 1000 classes",
    "mobilenet_v2_100_160": "MobileNetV2 1.0, 1x160x160x3 int8, 1000 classes",
    "mobilenet_v2_100_224": "MobileNetV2 1.0, 1x224x224x3 int8, 1000 classes",
    "squeezenet_11_224": "SqueezeNet 1.1, 1x224x224x3 int8, 1000 classes",
}
_ARCHITECTURES: dict[str, Callable[[], Net]] = {
    "mlperf_resnet8": _resnet8,
    "mlperf_vww_mobilenet_v1_025": _vww_mobilenet_v1,
    "mlperf_kws_ds_cnn_s": _kws_ds_cnn_s,
    "mlperf_ad_fc_autoencoder": _ad_autoencoder,
    "mobilenet_v2_035_96": lambda: _mobilenet_v2(0.35, 96),
    "mobilenet_v2_035_160": lambda: _mobilenet_v2(0.35, 160),
    "mobilenet_v2_100_96": lambda: _mobilenet_v2(1.0, 96),
    "mobilenet_v2_100_160": lambda: _mobilenet_v2(1.0, 160),
    "mobilenet_v2_100_224": lambda: _mobilenet_v2(1.0, 224),
    "squeezenet_11_224": _squeezenet_11,
}


# -- the float reference forward pass ------------------------------------------------------------
def _pad(x: np.ndarray, k: tuple[int, int], stride: tuple[int, int], padding: str, value: float = 0.0):
    """`x` (N, H, W, C) padded the way TFLite pads SAME (the odd pixel after) or VALID."""
    if padding == "VALID":
        return x
    pads = [(0, 0)]
    for n, kk, s in zip(x.shape[1:3], k, stride, strict=True):
        total = max((-(-n // s) - 1) * s + kk - n, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, [*pads, (0, 0)], constant_values=value)


def _windows(x: np.ndarray, k: tuple[int, int], stride: tuple[int, int], out_hw: tuple[int, int]):
    """(i, j, the strided view of padded `x` that window offset (i, j) reads)."""
    (oh, ow), (sh, sw) = out_hw, stride
    for i in range(k[0]):
        for j in range(k[1]):
            yield i, j, x[:, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw, :]


def _conv(lay: Layer, x: np.ndarray) -> np.ndarray:
    w = lay.weight
    k = w.shape[1:3]
    xp = _pad(x, k, lay.stride, lay.padding)
    w = w.astype(np.float64)
    out = np.zeros((x.shape[0], *lay.shape[1:]))
    for i, j, view in _windows(xp, k, lay.stride, lay.shape[1:3]):
        if lay.op == "dwconv":
            out += view * w[0, i, j, :]
        else:
            out += view @ w[:, i, j, :].T
    return out + lay.bias


def _pool(lay: Layer, x: np.ndarray) -> np.ndarray:
    """AVERAGE_POOL_2D (the mean of the pixels inside the image, as TFLite counts them) or
    MAX_POOL_2D."""
    fill = -np.inf if lay.op == "maxpool" else 0.0
    xp = _pad(x, lay.pool, lay.stride, lay.padding, fill)
    views = [v for _, _, v in _windows(xp, lay.pool, lay.stride, lay.shape[1:3])]
    if lay.op == "maxpool":
        return np.maximum.reduce(views)
    ones = _pad(np.ones((1, *x.shape[1:3], 1)), lay.pool, lay.stride, lay.padding)
    count = sum(v for _, _, v in _windows(ones, lay.pool, lay.stride, lay.shape[1:3]))
    return sum(views) / count


def _linear(lay: Layer, xs: list[np.ndarray]) -> np.ndarray:
    """A layer's output before its fused activation."""
    x = xs[0]
    if lay.op in ("conv", "dwconv"):
        return _conv(lay, x)
    if lay.op == "fc":
        return x @ lay.weight.T.astype(np.float64) + lay.bias
    if lay.op == "add":
        return xs[0] + xs[1]
    if lay.op in ("avgpool", "maxpool"):
        return _pool(lay, x)
    if lay.op == "mean":
        return x.mean(axis=(1, 2))
    if lay.op == "concat":
        return np.concatenate(xs, axis=-1)
    if lay.op == "reshape":
        return x.reshape(x.shape[0], *lay.shape[1:])
    if lay.op == "softmax":
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    raise McuZooError(f"{lay.name}: unknown layer op {lay.op!r}")


def _activate(y: np.ndarray, act: str) -> np.ndarray:
    if act == "RELU":
        return np.maximum(y, 0.0)
    if act == "RELU6":
        return np.clip(y, 0.0, 6.0)
    return y


def _fold(lay: Layer, y: np.ndarray) -> np.ndarray:
    """Fold the layer's data-dependent normalisation into its weights and bias (see the
    module docstring); returns the normalised output, which the new weights compute."""
    axes = tuple(range(y.ndim - 1))
    mu = _stable(y.mean(axis=axes))
    if lay.norm == "bn":
        scale = lay.gamma / np.maximum(_stable(y.std(axis=axes)), 1e-6)
        shift = lay.beta - mu * scale
    elif lay.norm == "logits":  # one scale for all classes: per class, a few inputs would overfit
        scale = lay.gamma / max(float(_stable(np.sqrt(np.mean(y.var(axis=axes))))), 1e-6)
        shift = lay.beta - mu * scale
    else:
        scale, shift = _pooled_head(lay, y, mu)
    if lay.op == "dwconv":
        lay.weight = (lay.weight * scale[None, None, None, :]).astype(np.float32)
    else:
        lay.weight = (lay.weight * scale[(slice(None),) + (None,) * (lay.weight.ndim - 1)]).astype(np.float32)
    lay.bias = (lay.bias * scale + shift).astype(np.float32)
    lay.norm = ""
    return y * scale + shift


def _pooled_head(lay: Layer, y: np.ndarray, mu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(scale, shift) per class of a conv-ReLU-global-mean head (SqueezeNet's conv10): the
    classes' spatial means vary across inputs by `gamma` (one scale for all classes: per
    class, 16 inputs would overfit), sit at one common level, and that level is
    HEAD_RELU_MARGIN times the classes' typical variation above 0, so the ReLU mostly passes
    it; the level is then met exactly after the ReLU (Newton steps on each class's shift),
    or the classes the ReLU clips least would win every input."""
    pooled = y.mean(axis=(1, 2))
    scale = lay.gamma / max(float(_stable(np.sqrt(np.mean(pooled.var(axis=0))))), 1e-6)
    across = np.sqrt(np.mean(y.var(axis=0), axis=(0, 1)))  # per class, over inputs
    level = float(_stable(HEAD_RELU_MARGIN * np.median(scale * across)))
    z = (y - mu) * scale
    shift = np.full(len(scale), level)
    for _ in range(30):
        a = z + shift
        excess = np.maximum(a, 0.0).mean(axis=(0, 1, 2)) - level
        shift -= excess / np.maximum((a > 0).mean(axis=(0, 1, 2)), 0.05)
    return scale, _stable(shift) - mu * scale


def _stable(x, bits: int = STABLE_BITS, direction: str = "nearest"):
    """`x` rounded to `bits` significant bits. Statistics of the float forward pass differ
    in their last bits between BLAS builds and thread counts (sums split differently);
    rounded, they are the same everywhere (short of landing within ~1e-12 of a rounding
    boundary), so the weights and scales computed from them, and the bytes, are too.
    `direction` "down"/"up" rounds outward for a range's ends."""
    mant, exp = np.frexp(np.asarray(x, dtype=np.float64))
    op = {"nearest": np.rint, "down": np.floor, "up": np.ceil}[direction]
    return np.ldexp(op(mant * 2.0**bits) / 2.0**bits, exp)


def _propagate(net: Net, x: np.ndarray, calibrate: bool) -> dict[str, np.ndarray]:
    """Run the float model on the batch `x`; with `calibrate`, fold each layer's
    normalisation on the way and record every tensor's (min, max). Returns the output
    (tensors are dropped after their last reader, so large batches fit in memory)."""
    last_read = {}
    for k, lay in enumerate(net.layers):
        for i in lay.inputs:
            last_read[i] = k
    values = {"input": np.asarray(x, dtype=np.float64)}
    if calibrate:
        net.ranges["input"] = net.input_range
    for k, lay in enumerate(net.layers):
        if calibrate and lay.op in WEIGHTED:
            x_in = values[lay.inputs[0]]
            lay.input_mean = _stable(x_in.mean(axis=tuple(range(x_in.ndim - 1))))
        y = _linear(lay, [values[i] for i in lay.inputs])
        if calibrate and lay.norm:
            y = _fold(lay, y)
        y = _activate(y, lay.act)
        values[lay.name] = y
        if calibrate:
            net.ranges[lay.name] = (float(_stable(y.min(), direction="down")), float(_stable(y.max(), direction="up")))
        for i in lay.inputs:
            if last_read[i] == k:
                del values[i]
    return {net.output: values[net.output]}


def network(name: str) -> Net:
    """The float model of zoo name `name`, calibrated: normalisations folded into its
    weights and every tensor's range recorded (what `build` quantises)."""
    if name not in _ARCHITECTURES:
        raise McuZooError(f"unknown MCU zoo model {name!r}; known: {', '.join(MCU_MODELS)}")
    net = _ARCHITECTURES[name]()
    _propagate(net, calibration_batch(net), calibrate=True)
    return net


def calibration_batch(net: Net) -> np.ndarray:
    """The calibration inputs: int8 values drawn uniformly (as `planner run` draws them,
    from a generator seeded by the model's seed) and dequantised with the input's scale.
    Small models get more of them (BatchNorm statistics of the last, small feature maps
    from few inputs would fit those inputs only), large ones at least 16."""
    n = net.calibration_inputs or int(np.clip(CALIBRATION_MACS // max(macs(net), 1), *CALIBRATION_INPUTS))
    rng = np.random.default_rng(net.seed + 1_000_003)
    q = rng.integers(-128, 127, size=(n, *net.input_shape[1:]), endpoint=True)
    scale, zp = quant_params(*net.input_range)
    return (q - zp) * scale


def forward(net: Net, x: np.ndarray) -> np.ndarray:
    """The calibrated float model's output for the batch `x` (float inputs, NHWC)."""
    return _propagate(net, x, calibrate=False)[net.output]


def macs(net: Net) -> int:
    """Multiply-accumulates of one inference (convolutions and FC layers)."""
    total = 0
    for lay in net.layers:
        if lay.op == "conv" or lay.op == "fc":
            total += math.prod(lay.shape[1:]) * math.prod(lay.weight.shape[1:])
        elif lay.op == "dwconv":
            total += math.prod(lay.shape[1:]) * math.prod(lay.weight.shape[1:3])
    return total


# -- quantisation and the flatbuffer ------------------------------------------------------------
def quant_params(lo: float, hi: float) -> tuple[float, int]:
    """(scale, zero point) of an asymmetric int8 tensor holding [lo, hi] (widened to include
    0, so that 0 is exact), the converter's convention; the scale is a float32 value."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = float(np.float32(max(hi - lo, 1e-8) / 255.0))
    zp = int(np.clip(round(-128 - lo / scale), -128, 127))
    return scale, zp


def activation_quant(net: Net) -> dict[str, tuple[float, int]]:
    """(scale, zero point) of every activation tensor: calibrated ranges, with the ops that
    move bytes unchanged (pools, RESHAPE, CONCATENATION inputs) sharing their input's or
    output's parameters, and SOFTMAX's fixed 1/256, -128."""
    ranges = dict(net.ranges)
    producer = {lay.name: lay for lay in net.layers}
    for lay in net.layers:
        if lay.op == "concat":
            lo = min(ranges[i][0] for i in lay.inputs)
            hi = max(ranges[i][1] for i in lay.inputs)
            for i in lay.inputs:
                if i not in producer or producer[i].op not in WEIGHTED:
                    raise McuZooError(f"{net.name}: concat {lay.name} reads {i}, which cannot requantise")
                ranges[i] = (lo, hi)
            ranges[lay.name] = (lo, hi)
    params = {"input": quant_params(*ranges["input"])}
    for lay in net.layers:
        if lay.op in ("avgpool", "maxpool", "reshape"):
            params[lay.name] = params[lay.inputs[0]]
        elif lay.op == "softmax":
            params[lay.name] = SOFTMAX_QUANT
        else:
            params[lay.name] = quant_params(*ranges[lay.name])
    for lay in net.layers:  # concat inputs: the output's parameters
        if lay.op == "concat":
            for i in lay.inputs:
                params[i] = params[lay.name]
    return params


def quantize_weights(w: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """(int8 values, float32 scales): symmetric per-channel on `axis`, in [-127, 127]."""
    others = tuple(i for i in range(w.ndim) if i != axis)
    amax = np.abs(w).max(axis=others).astype(np.float64)
    scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.rint(w / scale.reshape(shape).astype(np.float64)), -127, 127).astype(np.int8)
    return q, scale


def _weighted_operator(lay: Layer, params: dict[str, tuple[float, int]], model: Model) -> list[str]:
    """The filter and bias tensors of a CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED."""
    from .tflite_writer import Quant, Tensor

    axis = 3 if lay.op == "dwconv" else 0
    q, wscale = quantize_weights(lay.weight, axis)
    in_scale = params[lay.inputs[0]][0]
    bscale = np.float64(in_scale) * wscale.astype(np.float64)
    bias = np.rint((lay.bias.astype(np.float64) - _bias_correction(lay, q, wscale, axis)) / bscale)
    if np.abs(bias).max(initial=0) >= 2**31:
        raise McuZooError(f"{lay.name}: a bias does not fit int32 at scale {bscale.min():g}")
    zeros = (0,) * len(wscale)
    w = Tensor(f"{lay.name}/weights", q.shape, "INT8", Quant(tuple(map(float, wscale)), zeros, axis), q)
    b_quant = Quant(tuple(float(np.float32(s)) for s in bscale), zeros, 0)
    b = Tensor(f"{lay.name}/bias", bias.shape, "INT32", b_quant, bias.astype(np.int32))
    model.tensors += [w, b]
    return [w.name, b.name]


def _bias_correction(lay: Layer, q: np.ndarray, wscale: np.ndarray, axis: int) -> np.ndarray:
    """What rounding the weights adds to each output channel on the layer's mean input,
    (Wq - W) . E[x], which the int8 bias then subtracts (bias correction, Nagel et al. 2019).
    Without it a head that amplifies small input-dependent changes over a large constant
    part (SqueezeNet's conv10, the logits FC) turns 1 % weight rounding into errors
    larger than those changes."""
    shape = [1] * q.ndim
    shape[axis] = -1
    err = q.astype(np.float64) * wscale.reshape(shape).astype(np.float64) - lay.weight.astype(np.float64)
    if lay.input_mean is None:
        return np.zeros(err.shape[axis])
    if lay.op == "dwconv":
        return (err * lay.input_mean).sum(axis=(0, 1, 2))
    return (err * lay.input_mean).reshape(err.shape[0], -1).sum(axis=1)


def _options(lay: Layer) -> dict[str, object]:
    sh, sw = lay.stride
    if lay.op == "conv":
        return {"padding": lay.padding, "strideH": sh, "strideW": sw, "fusedActivationFunction": lay.act}
    if lay.op == "dwconv":
        return {
            "padding": lay.padding,
            "strideH": sh,
            "strideW": sw,
            "depthMultiplier": 1,
            "fusedActivationFunction": lay.act,
        }
    if lay.op in ("fc", "add"):
        return {"fusedActivationFunction": lay.act}
    if lay.op in ("avgpool", "maxpool"):
        kh, kw = lay.pool
        return {"padding": lay.padding, "strideH": sh, "strideW": sw, "filterHeight": kh, "filterWidth": kw}
    if lay.op == "mean":
        return {"keepDims": False}
    if lay.op == "concat":
        return {"axis": 3}
    if lay.op == "reshape":
        return {"newShape": list(lay.shape)}
    return {"beta": 1.0}  # softmax


BUILTIN = {
    "conv": "CONV_2D",
    "dwconv": "DEPTHWISE_CONV_2D",
    "fc": "FULLY_CONNECTED",
    "add": "ADD",
    "avgpool": "AVERAGE_POOL_2D",
    "maxpool": "MAX_POOL_2D",
    "mean": "MEAN",
    "concat": "CONCATENATION",
    "reshape": "RESHAPE",
    "softmax": "SOFTMAX",
}


def to_tflite(net: Net, description: str = "") -> Model:
    """The int8 TFLite description (`planner.models.tflite_writer.Model`) of a calibrated net."""
    from .tflite_writer import Model, Operator, Quant, Tensor

    params = activation_quant(net)
    act = {k: Quant.per_tensor(*v) for k, v in params.items()}
    model = Model([Tensor("input", net.input_shape, "INT8", act["input"])], [], ["input"], [net.output], description)
    for lay in net.layers:
        op = BUILTIN[lay.op]
        inputs = list(lay.inputs)
        if lay.op in WEIGHTED:
            inputs += _weighted_operator(lay, params, model)
        elif lay.op in ("mean", "reshape"):
            operand = [1, 2] if lay.op == "mean" else list(lay.shape)
            const = Tensor(f"{lay.name}/{'axis' if lay.op == 'mean' else 'shape'}", (len(operand),), "INT32", None)
            const.data = np.array(operand, dtype=np.int32)
            model.tensors.append(const)
            inputs.append(const.name)
        model.tensors.append(Tensor(lay.name, lay.shape, "INT8", act[lay.name]))
        model.operators.append(Operator(op, inputs, [lay.name], _options(lay), VERSIONS[op]))
    return model


def build(name: str) -> bytes:
    """The .tflite bytes of MCU zoo model `name` (deterministic: the same bytes every time)."""
    from .tflite_writer import write

    net = network(name)
    desc = f"planner.models.mcu_zoo {name} (generator {generator_version()}): {MCU_MODELS[name]}"
    return write(None, to_tflite(net, desc))


# -- the cache ---------------------------------------------------------------------------------
def cache_dir() -> Path:
    """Where generated models are kept: ``$PLANNER_CACHE/mcu``, else ``~/.cache/planner/mcu``."""
    return cache_root() / "mcu"


@lru_cache(maxsize=1)
def generator_version() -> str:
    """`GENERATOR_VERSION` and a hash of everything the bytes depend on: this module's and the
    writer's source, the bundled ONNX model and numpy's version. A file is never reused
    after any of them changes."""
    h = hashlib.sha256(GENERATOR_VERSION.encode())
    for p in (Path(__file__), Path(__file__).with_name("tflite_writer.py"), BUNDLED_RESNET8):
        h.update(p.read_bytes())
    h.update(np.__version__.encode())
    return f"{GENERATOR_VERSION}-{h.hexdigest()[:12]}"


def cached_path(name: str) -> Path:
    """The cache file of `name` for this generator version (it may not exist yet): one
    folder per version, so the file keeps the model's name (the graph is named after it)."""
    return cache_dir() / generator_version() / f"{name}.tflite"


def is_cached(name: str) -> bool:
    """Whether `name` was already generated by this generator version."""
    return cached_path(name).is_file()


def locate(name: str) -> Path:
    """The cached .tflite of `name`, generated on first use. Written to a temporary file
    and renamed, so processes generating the same model at once never read half a file."""
    if name not in MCU_MODELS:
        raise McuZooError(f"unknown MCU zoo model {name!r}; known: {', '.join(MCU_MODELS)}")
    path = cached_path(name)
    if path.is_file():
        return path
    data = build(name)
    try:
        write_atomically(path, data)
    except OSError as e:
        raise McuZooError(
            f"cannot write the generated model {name!r} to {path.parent} ({e.strerror}); set PLANNER_CACHE to a writable folder"
        ) from None
    return path
