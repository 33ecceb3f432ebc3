"""Graphs the experiments make themselves (sweep specs name them `graphs.py:FUNCTION:ARGS`)."""

from __future__ import annotations

import random

from planner.graph import Graph, graph_from_records


def random_dag(n_ops: int, seed: int) -> Graph:
    """A seeded DAG shaped like a CNN with skip connections and side branches.

    Mostly each op reads the previous tensor; ops in the second half often also read the
    mirrored tensor of the first half (U-Net skips), others an older one, and some ops
    start a side branch. Long-lived tensors are what make
    the no-spill arena much larger than the largest working set, i.e. where spills pay.
    """
    rng = random.Random(seed)
    sizes = {"x": 16 * rng.randint(8, 64)}
    ops, tensors, weights, outputs = [], ["x"], set(), set()
    for i in range(n_ops):
        prev = tensors[-1]
        ins = [prev]
        mirror = n_ops - 1 - i  # U-Net-like: the decoder half reads the encoder's tensors
        if mirror < i and rng.random() < 0.6:
            ins.append(tensors[mirror + 1])
        elif len(tensors) > 2 and rng.random() < 0.2:
            ins.append(rng.choice(tensors[:-1]))
        elif len(tensors) > 3 and rng.random() < 0.25:
            ins = [rng.choice(tensors[-4:-1])]  # side branch from a recent tensor
        if rng.random() < 0.6:
            w = f"w{i}"
            sizes[w] = 16 * rng.randint(1, 16)
            ins.append(w)
            weights.add(w)
        out = f"t{i}"
        sizes[out] = 16 * rng.choice([4, 8, 16, 24, 32, 48, 64])
        ops.append((f"op{i}", list(dict.fromkeys(ins)), [out]))
        tensors.append(out)
        if rng.random() < 0.05:
            outputs.add(out)
    outputs.add(tensors[-1])
    return graph_from_records(f"rand{n_ops}_s{seed}", ops, sizes, inputs=["x"], outputs=outputs, weights=weights)
