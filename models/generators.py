"""Seeded synthetic graph families for tests and benchmarks.

`random_dag` (ops with several inputs/outputs), `chain`, `series_parallel` (nested
fork/join blocks like Inception/ResNet cells) and `randwire` (Xie et al. 2019 style:
a Watts–Strogatz small-world graph oriented by node index, one tensor per node).
"""

from __future__ import annotations

import random

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
