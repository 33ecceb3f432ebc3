"""Seeded synthetic graph families for tests and benchmarks.

`random_dag` (ops with several inputs/outputs), `chain`, `series_parallel` (nested
fork/join blocks like Inception/ResNet cells) and `randwire` (Xie et al. 2019 style:
a Watts–Strogatz small-world graph oriented by node index, one tensor per node).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import networkx as nx

from planner.graph import Graph, ModelSource, Op, Tensor


def _size(rng: random.Random, lo: int, hi: int) -> int:
    return rng.randrange(lo, hi + 1)


def random_dag(
    n_ops: int,
    seed: int = 0,
    max_outputs: int = 2,
    max_inputs: int = 3,
    size_range: tuple[int, int] = (1, 64),
    n_inputs: int = 1,
    weight_prob: float = 0.0,
) -> Graph:
    """Random DAG: op i reads 1..max_inputs tensors made earlier, makes 1..max_outputs tensors;
    with probability `weight_prob` it also reads a weight (sometimes one shared with an earlier op)."""
    rng = random.Random(seed)
    tensors = [Tensor(f"in{k}", _size(rng, *size_range), "input") for k in range(n_inputs)]
    avail = [t.name for t in tensors]
    used: set[str] = set()
    ops: list[Op] = []
    for i in range(n_ops):
        k = rng.randint(1, min(max_inputs, len(avail)))
        # favour recent tensors so graphs are deep, not all fan-out from the input
        pool = avail[-8:] if rng.random() < 0.7 else avail
        ins = rng.sample(pool, min(k, len(pool)))
        outs = [f"t{i}_{j}" for j in range(rng.randint(1, max_outputs))]
        for o in outs:
            tensors.append(Tensor(o, _size(rng, *size_range), "activation"))
        if rng.random() < weight_prob:
            shared = [t.name for t in tensors if t.kind == "weight"]
            if shared and rng.random() < 0.3:
                ins.append(rng.choice(shared))
            else:
                w = f"w{i}"
                tensors.append(Tensor(w, _size(rng, *size_range), "weight"))
                ins.append(w)
            ins = list(dict.fromkeys(ins))
        used.update(ins)
        avail += outs
        ops.append(Op(f"op{i}", "Op", tuple(ins), tuple(outs)))
    # every tensor nobody reads becomes a graph output (so nothing dangles)
    kinds = {t.name: t for t in tensors}
    for name, t in kinds.items():
        if t.kind == "activation" and name not in used:
            kinds[name] = Tensor(name, t.bytes, "output")
    return Graph(f"random{n_ops}_s{seed}", kinds.values(), ops, ModelSource("generated"))


def chain(n_ops: int, seed: int = 0, size_range: tuple[int, int] = (16, 4096)) -> Graph:
    """A straight line of n_ops ops with random tensor sizes: the case where order is fixed
    and only layout (and spilling) matter, and where exact solvers must scale."""
    rng = random.Random(seed)
    tensors = [Tensor("x", _size(rng, *size_range), "input")]
    ops = []
    prev = "x"
    for i in range(n_ops):
        kind = "output" if i == n_ops - 1 else "activation"
        tensors.append(Tensor(f"t{i}", _size(rng, *size_range), kind))
        ops.append(Op(f"op{i}", "Op", (prev,), (f"t{i}",)))
        prev = f"t{i}"
    return Graph(f"chain{n_ops}_s{seed}", tensors, ops, ModelSource("generated"))


def series_parallel(
    n_ops: int, seed: int = 0, size_range: tuple[int, int] = (16, 4096), max_branches: int = 4
) -> Graph:
    """Nested fork/join cells until about n_ops ops: each cell forks 2..max_branches
    branches (chains or nested cells) from one tensor and joins them with one op."""
    rng = random.Random(seed)
    tensors: list[Tensor] = [Tensor("x", _size(rng, *size_range), "input")]
    ops: list[Op] = []
    counter = [0]

    def new_op(ins: list[str]) -> str:
        i = counter[0]
        counter[0] += 1
        out = f"t{i}"
        tensors.append(Tensor(out, _size(rng, *size_range), "activation"))
        ops.append(Op(f"op{i}", "Op", tuple(ins), (out,)))
        return out

    def block(src: str, budget: int, depth: int) -> str:
        if budget <= 2 or depth > 3 or rng.random() < 0.3:
            cur = src
            for _ in range(max(1, min(budget, rng.randint(1, 4)))):
                cur = new_op([cur])
            return cur
        k = rng.randint(2, max_branches)
        share = max(1, (budget - 1) // k)
        ends = [block(src, share, depth + 1) for _ in range(k)]
        return new_op(ends)

    cur = "x"
    while counter[0] < n_ops:
        cur = block(cur, min(n_ops - counter[0], rng.randint(4, 40)), 0)
    tensors = [Tensor(t.name, t.bytes, "output") if t.name == cur else t for t in tensors]
    return Graph(f"sp{n_ops}_s{seed}", tensors, ops, ModelSource("generated"))


def randwire(
    n_ops: int, seed: int = 0, k: int = 4, p: float = 0.75, size_range: tuple[int, int] = (256, 16384)
) -> Graph:
    """RandWire-style irregular network: WS(n, k, p) graph, edges oriented low -> high index;
    nodes without predecessors read the input, nodes without successors feed one output op."""
    rng = random.Random(seed)
    ws = nx.connected_watts_strogatz_graph(n_ops, k, p, seed=seed)
    tensors = [Tensor("x", _size(rng, *size_range), "input")]
    ops = []
    for v in range(n_ops):
        preds = sorted(u for u in ws.neighbors(v) if u < v)
        ins = [f"t{u}" for u in preds] or ["x"]
        tensors.append(Tensor(f"t{v}", _size(rng, *size_range), "activation"))
        ops.append(Op(f"op{v}", "Node", tuple(ins), (f"t{v}",)))
    sinks = [f"t{v}" for v in range(n_ops) if not any(u > v for u in ws.neighbors(v))]
    tensors.append(Tensor("y", _size(rng, *size_range), "output"))
    ops.append(Op("out", "Join", tuple(sinks), ("y",)))
    return Graph(f"randwire{n_ops}_s{seed}", tensors, ops, ModelSource("generated"))


# -- irregular networks of the NAS literature (issue 16) ------------------------------------------
#
# Each op makes one float32 activation of batch 1 (bytes = 4·C·H·W); weights are left out
# (read in place, they never take L1), so only the activations and the wiring matter.
# BatchNorm is folded into the convolution before it (inference); a separable convolution
# is two ops (depthwise, pointwise), as converters emit it.


class _Net:
    """A builder of feature-map graphs: every op makes one tensor of shape (C, H, W)."""

    def __init__(self, name: str, channels: int, size: int) -> None:
        self.name = name
        self.shape: dict[str, tuple[int, int, int]] = {"x": (channels, size, size)}
        self.tensors: list[Tensor] = [Tensor("x", 4 * channels * size * size, "input", (1, channels, size, size))]
        self.ops: list[Op] = []

    def op(self, name: str, type_: str, ins: list[str], shape: tuple[int, int, int]) -> str:
        """One op `name` reading `ins`, making the tensor `name` of `shape`."""
        c, h, w = shape
        self.shape[name] = shape
        self.tensors.append(Tensor(name, 4 * c * h * w, "activation", (1, c, h, w), "float32"))
        self.ops.append(Op(name, type_, tuple(ins), (name,)))
        return name

    def conv(self, name: str, x: str, channels: int, stride: int = 1, type_: str = "Conv") -> str:
        """A convolution ('same' padding) to `channels` at `stride`."""
        _, h, w = self.shape[x]
        return self.op(name, type_, [x], (channels, -(-h // stride), -(-w // stride)))

    def unary(self, name: str, x: str, type_: str, stride: int = 1) -> str:
        """A channel-preserving op (ReLU, depthwise convolution, pooling) at `stride`."""
        c, _, _ = self.shape[x]
        return self.conv(name, x, c, stride, type_)

    def join(self, name: str, xs: list[str], type_: str) -> str:
        """Add / Sum / Mean of same-shaped inputs, or Concat along channels."""
        if len(xs) == 1 and type_ != "Concat":
            return xs[0]
        c, h, w = self.shape[xs[0]]
        if type_ == "Concat":
            c = sum(self.shape[x][0] for x in xs)
        return self.op(name, type_, list(dict.fromkeys(xs)), (c, h, w))

    def head(self, x: str, classes: int, relu: bool = True) -> Graph:
        """Global pooling and the classifier; the graph, with the logits as its output."""
        if relu:
            x = self.unary("head/relu", x, "Relu")
        c, _, _ = self.shape[x]
        x = self.op("head/pool", "GlobalAveragePool", [x], (c, 1, 1))
        self.op("head/fc", "Gemm", [x], (classes, 1, 1))
        tensors = [
            Tensor(t.name, t.bytes, "output", t.shape, t.dtype) if t.name == "head/fc" else t for t in self.tensors
        ]
        return Graph(self.name, tensors, self.ops, ModelSource("generated"))


def _sep_conv(net: _Net, p: str, x: str, channels: int, k: int, stride: int, repeats: int = 2) -> str:
    """ReLU, depthwise k×k, pointwise 1×1 (BN folded), `repeats` times; stride on the first."""
    for r in range(repeats):
        x = net.unary(f"{p}/relu{r}", x, "Relu")
        x = net.unary(f"{p}/dw{k}x{k}_{r}", x, "DepthwiseConv", stride if r == 0 else 1)
        x = net.conv(f"{p}/pw{r}", x, channels)
    return x


def _factorized_reduce(net: _Net, p: str, x: str, channels: int) -> str:
    """Halve the resolution without losing pixels: ReLU, two 1×1 stride-2 paths (one shifted
    by a pixel), concatenated (NASNet's factorized reduction, DARTS' FactorizedReduce)."""
    x = net.unary(f"{p}/relu", x, "Relu")
    a = net.conv(f"{p}/path1", net.unary(f"{p}/pool1", x, "AveragePool", 2), channels // 2)
    c, h, w = net.shape[x]
    shifted = net.op(f"{p}/shift", "Slice", [x], (c, h - 1, w - 1))
    b = net.conv(f"{p}/path2", net.unary(f"{p}/pool2", shifted, "AveragePool", 2), channels - channels // 2)
    return net.join(f"{p}/concat", [a, b], "Concat")


def _relu_conv(net: _Net, p: str, x: str, channels: int, stride: int = 1) -> str:
    """ReLU, 1×1 convolution (BN folded)."""
    return net.conv(f"{p}/conv", net.unary(f"{p}/relu", x, "Relu"), channels, stride)


# op name -> (builder(net, prefix, x, channels, stride)) for the NASNet search space (TF-slim's
# nasnet_utils and the AmoebaNet release use these names)
def _nas_op(net: _Net, p: str, name: str, x: str, channels: int, stride: int) -> str:
    if name.startswith("separable_"):
        k = int(name.split("_")[1][0])
        return _sep_conv(net, p, x, channels, k, stride)
    if name in ("avg_pool_3x3", "max_pool_3x3"):
        return net.unary(f"{p}/{name}", x, "AveragePool" if name.startswith("avg") else "MaxPool", stride)
    if name == "1x7_7x1":
        x = net.unary(f"{p}/relu", x, "Relu")
        return net.conv(f"{p}/conv7x1", net.conv(f"{p}/conv1x7", x, channels, stride), channels)
    if name == "none":
        return x if stride == 1 else _relu_conv(net, p, x, channels, stride)
    raise ValueError(name)


@dataclass(frozen=True)
class NasCell:
    """One cell of the NASNet search space, as the released code writes it: ten operations,
    pairs (left, right) combined by addition into five new hidden states; the hidden state
    each reads (0: the previous cell's output, 1: the one before, k≥2: block k-2); the
    hidden states the concat leaves out (`used`)."""

    operations: tuple[str, ...]
    inputs: tuple[int, ...]
    used: tuple[int, ...]


# TF-slim nets/nasnet/nasnet_utils.py (NASNet-A), tpu/models/official/amoeba_net/model_specs.py
# (AmoebaNet-A), TF-slim nets/nasnet/pnasnet.py (PNASNet-5: one cell, stride 2 to reduce)
NAS_CELLS: dict[str, tuple[NasCell, NasCell]] = {
    "nasnet_a": (
        NasCell(
            ("separable_5x5_2", "separable_3x3_2", "separable_5x5_2", "separable_3x3_2", "avg_pool_3x3")
            + ("none", "avg_pool_3x3", "avg_pool_3x3", "separable_3x3_2", "none"),
            (0, 1, 1, 1, 0, 1, 1, 1, 0, 0),
            (1, 0, 0, 0, 0, 0, 0),
        ),
        NasCell(
            ("separable_5x5_2", "separable_7x7_2", "max_pool_3x3", "separable_7x7_2", "avg_pool_3x3")
            + ("separable_5x5_2", "none", "avg_pool_3x3", "separable_3x3_2", "max_pool_3x3"),
            (0, 1, 0, 1, 0, 1, 3, 2, 2, 0),
            (1, 1, 1, 0, 0, 0, 0),
        ),
    ),
    "amoebanet_a": (
        NasCell(
            ("avg_pool_3x3", "max_pool_3x3", "separable_3x3_2", "none", "none")
            + ("avg_pool_3x3", "separable_3x3_2", "separable_5x5_2", "avg_pool_3x3", "separable_3x3_2"),
            (0, 0, 1, 1, 0, 1, 0, 2, 5, 0),
            (1, 0, 1, 0, 0, 1, 0),
        ),
        NasCell(
            ("separable_3x3_2", "avg_pool_3x3", "max_pool_3x3", "separable_7x7_2", "max_pool_3x3")
            + ("max_pool_3x3", "separable_3x3_2", "1x7_7x1", "avg_pool_3x3", "separable_7x7_2"),
            (1, 0, 0, 2, 1, 0, 4, 0, 1, 0),
            (1, 1, 1, 0, 1, 0, 0),
        ),
    ),
}
_PNAS = NasCell(
    ("separable_5x5_2", "max_pool_3x3", "separable_7x7_2", "max_pool_3x3", "separable_5x5_2")
    + ("separable_3x3_2", "separable_3x3_2", "max_pool_3x3", "separable_3x3_2", "none"),
    (1, 1, 0, 0, 0, 0, 4, 0, 1, 0),
    (1, 1, 0, 0, 0, 0, 0),
)
NAS_CELLS["pnasnet5"] = (_PNAS, _PNAS)


def _nas_cell(net: _Net, p: str, cell: NasCell, cur: str, prev: str | None, channels: int, stride: int) -> str:
    """One NASNet-space cell (TF-slim's NasNetABaseCell): the previous output through ReLU +
    1×1 conv, the one before fitted to it (factorized reduction when its resolution is
    larger, ReLU + 1×1 when its channels differ), five blocks, the unused states concatenated."""
    if prev is None:
        prev = cur
    if net.shape[prev][1] != net.shape[cur][1]:
        prev = _factorized_reduce(net, f"{p}/prev", prev, channels)
    elif net.shape[prev][0] != channels:
        prev = _relu_conv(net, f"{p}/prev", prev, channels)
    states = [_relu_conv(net, f"{p}/cur", cur, channels), prev]
    for b in range(5):
        pair = []
        for side in (0, 1):
            k = 2 * b + side
            i = cell.inputs[k]
            s = stride if i < 2 else 1
            pair.append(_nas_op(net, f"{p}/b{b}{'lr'[side]}", cell.operations[k], states[i], channels, s))
        states.append(net.join(f"{p}/b{b}/add", pair, "Add"))
    keep = [s for i, s in enumerate(states) if not cell.used[i]]
    return net.join(f"{p}/concat", keep, "Concat")


# (cells per stage N, filters F) of the papers: NASNet-A 6@768 (CIFAR) and mobile 4@1056
# (ImageNet); AmoebaNet-A N=6 F=36 and mobile N=4 F=50; PNASNet-5 N=3 F=48 and mobile N=3 F=54
NAS_SIZES: dict[tuple[str, str], tuple[int, int]] = {
    ("nasnet_a", "cifar"): (6, 32),
    ("nasnet_a", "imagenet"): (4, 44),
    ("amoebanet_a", "cifar"): (6, 36),
    ("amoebanet_a", "imagenet"): (4, 50),
    ("pnasnet5", "cifar"): (3, 48),
    ("pnasnet5", "imagenet"): (3, 54),
}


def nas_network(family: str, dataset: str) -> Graph:
    """NASNet-A, AmoebaNet-A or PNASNet-5 at CIFAR (32×32, stem 3×3 conv of 3F, N normal
    cells, reduction, N, reduction, N) or ImageNet-mobile size (224×224, stem 3×3 stride-2
    conv of 32 and two reduction cells at F/4 and F/2, then the same stages)."""
    normal, reduction = NAS_CELLS[family]
    n, f = NAS_SIZES[(family, dataset)]
    net = _Net(f"{family}_{dataset}", 3, 32 if dataset == "cifar" else 224)
    cells: list[tuple[int, int]] = []  # (filters, stride)
    if dataset == "cifar":
        cur = net.conv("stem/conv", "x", 3 * f)
    else:
        cur = net.conv("stem/conv", "x", 32, 2)
        cells += [(f // 4, 2), (f // 2, 2)]
    for stage in range(3):
        if stage:
            cells.append((f * 2**stage, 2))
        cells += [(f * 2**stage, 1)] * n
    prev: str | None = None
    for i, (filters, stride) in enumerate(cells):
        cell = reduction if stride == 2 else normal
        prev, cur = cur, _nas_cell(net, f"c{i}", cell, cur, prev, filters, stride)
    return net.head(cur, 10 if dataset == "cifar" else 1000)


# DARTS (Liu et al. 2019), the published DARTS-V2 genotype: (op, input state) pairs, two per node
DARTS_V2 = {
    "normal": (
        ("sep_conv_3x3", 0),
        ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 0),
        ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 1),
        ("skip_connect", 0),
        ("skip_connect", 0),
        ("dil_conv_3x3", 2),
    ),
    "reduce": (
        ("max_pool_3x3", 0),
        ("max_pool_3x3", 1),
        ("skip_connect", 2),
        ("max_pool_3x3", 1),
        ("max_pool_3x3", 0),
        ("skip_connect", 2),
        ("skip_connect", 2),
        ("max_pool_3x3", 1),
    ),
}


def _darts_op(net: _Net, p: str, name: str, x: str, channels: int, stride: int) -> str:
    if name == "sep_conv_3x3":
        return _sep_conv(net, p, x, channels, 3, stride)
    if name == "dil_conv_3x3":
        return _sep_conv(net, p, x, channels, 3, stride, repeats=1)
    if name == "max_pool_3x3":
        return net.unary(f"{p}/max_pool", x, "MaxPool", stride)
    if name == "skip_connect":
        return x if stride == 1 else _factorized_reduce(net, p, x, channels)
    raise ValueError(name)


def _darts_cell(net: _Net, p: str, s0: str, s1: str, channels: int, reduction: bool, reduction_prev: bool) -> str:
    """One DARTS cell: s0 fitted (FactorizedReduce after a reduction, else ReLU + 1×1), s1
    through ReLU + 1×1, four nodes each the sum of two ops, the nodes concatenated."""
    s0 = (
        _factorized_reduce(net, f"{p}/pre0", s0, channels)
        if reduction_prev
        else _relu_conv(net, f"{p}/pre0", s0, channels)
    )
    states = [s0, _relu_conv(net, f"{p}/pre1", s1, channels)]
    genotype = DARTS_V2["reduce" if reduction else "normal"]
    for node in range(4):
        pair = []
        for side in (0, 1):
            name, i = genotype[2 * node + side]
            stride = 2 if reduction and i < 2 else 1
            pair.append(_darts_op(net, f"{p}/n{node}{'lr'[side]}", name, states[i], channels, stride))
        states.append(net.join(f"{p}/n{node}/add", pair, "Add"))
    return net.join(f"{p}/concat", states[2:], "Concat")


def darts_network(dataset: str) -> Graph:
    """DARTS-V2 as its release builds it: CIFAR (20 cells, C=36, stem 3×3 conv of 3C) or
    ImageNet (14 cells, C=48, stems of two and one stride-2 3×3 convs); reductions at 1/3 and
    2/3 of the cells."""
    net = _Net(f"darts_v2_{dataset}", 3, 32 if dataset == "cifar" else 224)
    if dataset == "cifar":
        layers, c = 20, 36
        s0 = s1 = net.conv("stem/conv", "x", 3 * c)
        reduction_prev = False
    else:
        layers, c = 14, 48
        x = net.conv("stem0/conv0", "x", c // 2, 2)
        s0 = net.conv("stem0/conv1", net.unary("stem0/relu", x, "Relu"), c, 2)
        s1 = _relu_conv(net, "stem1", s0, c, 2)
        reduction_prev = True
    for i in range(layers):
        reduction = i in (layers // 3, 2 * layers // 3)
        if reduction:
            c *= 2
        s0, s1 = s1, _darts_cell(net, f"c{i}", s0, s1, c, reduction, reduction_prev)
        reduction_prev = reduction
    return net.head(s1, 10 if dataset == "cifar" else 1000, relu=False)


def _randwire_stage(net: _Net, p: str, x: str, nodes: int, channels: int, seed: int) -> str:
    """One random stage (Xie et al. 2019): a WS(nodes, 4, 0.75) graph, edges from lower to
    higher index; each node sums its inputs (weighted), then ReLU + separable 3×3 conv;
    nodes without predecessors read the stage input at stride 2, the nodes without
    successors are averaged into the stage output."""
    ws = nx.connected_watts_strogatz_graph(nodes, 4, 0.75, seed=seed)
    out: dict[int, str] = {}
    for v in range(nodes):
        preds = sorted(u for u in ws.neighbors(v) if u < v)
        agg = net.join(f"{p}/n{v}/sum", [out[u] for u in preds], "Sum") if preds else x
        out[v] = _sep_conv(net, f"{p}/n{v}", agg, channels, 3, 1 if preds else 2, repeats=1)
    sinks = [out[v] for v in range(nodes) if not any(u > v for u in ws.neighbors(v))]
    return net.join(f"{p}/mean", sinks, "Mean")


def randwire_network(nodes: int, dataset: str, seed: int = 0, channels: int = 78) -> Graph:
    """RandWire-WS(4, 0.75), small regime (C=78): conv1 3×3 of C/2, conv2 3×3 of C, three
    random stages of `nodes` nodes at C, 2C, 4C, a 1×1 conv of 1280 and the classifier.
    ImageNet: conv1 and conv2 at stride 2 (224 -> 56 -> 28, 14, 7); CIFAR: stride 1
    (32 -> 16, 8, 4). `seed` draws the three graphs."""
    imagenet = dataset == "imagenet"
    net = _Net(f"randwire_ws{nodes}_{dataset}_s{seed}", 3, 224 if imagenet else 32)
    x = net.conv("conv1", "x", channels // 2, 2 if imagenet else 1)
    x = net.conv("conv2", net.unary("conv2/relu", x, "Relu"), channels, 2 if imagenet else 1)
    for stage in range(3):
        x = _randwire_stage(net, f"s{stage + 3}", x, nodes, channels * 2**stage, seed * 3 + stage)
    x = _relu_conv(net, "conv6", x, 1280)
    return net.head(x, 1000 if imagenet else 10)


IRREGULAR_FAMILIES = (
    "nasnet_a",
    "amoebanet_a",
    "darts_v2",
    "pnasnet5",
    "randwire_ws8",
    "randwire_ws16",
    "randwire_ws32",
)
DATASETS = ("cifar", "imagenet")


def irregular(family: str, dataset: str, seed: int = 0) -> Graph:
    """One network of `IRREGULAR_FAMILIES` at `dataset` size (cifar | imagenet); `seed` draws
    RandWire's graphs (the NAS cells are fixed by their papers)."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    if family == "darts_v2":
        return darts_network(dataset)
    if family.startswith("randwire_ws"):
        return randwire_network(int(family.removeprefix("randwire_ws")), dataset, seed)
    if family in NAS_CELLS:
        return nas_network(family, dataset)
    raise ValueError(f"unknown irregular family {family!r}; known: {', '.join(IRREGULAR_FAMILIES)}")
