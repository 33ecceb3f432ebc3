"""Run HMCOS (Wang et al., DAC 2022, github wzh99/HMCOS) on our graphs and re-score its order.

HMCOS is not part of this project: build it yourself and pass the path of a driver that
reads an ONNX model and prints HMCOS's schedule, one op name per line, after the lines
`#time_ms T` and `#peak P` (its `HierarchicalSchedule`, then `EstimatePeak`). This module
only writes our graph as an ONNX model HMCOS can read (every tensor float32 with its shape
in `value_info`, no weights: they are read in place) and scores the order it prints with
our memory model (`best` layouts and max-live under `Target("t", None)`, TFLM lifetimes).

HMCOS treats element-wise ops (Relu, Add, ...) as candidates for in-place reuse in its own
estimate, which our model does not do; `types="opaque"` writes every op as `Op` instead,
so that its objective equals ours. `hmcos_order` tries both and keeps the better order.

    python experiments/hmcos.py /path/to/op_sched darts_v2_imagenet nasnet_a_cifar
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import onnx
from onnx import TensorProto, helper

from planner.graph import Graph
from planner.solvers.heuristic import best_layout
from planner.solvers.lowering import max_live
from planner.target import Target


def to_onnx(graph: Graph, types: str = "real") -> onnx.ModelProto:
    """`graph` as an ONNX model of shapes only: one node per op (its type, or `Op` when
    `types="opaque"`), every tensor float32 of its shape (or a flat one of its size)."""

    def info(name: str):
        t = graph.tensors[name]
        shape = list(t.shape) if t.shape else [max(t.bytes // 4, 1)]
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)

    nodes = [
        helper.make_node(o.type if types == "real" else "Op", list(o.inputs), list(o.outputs), name=o.name)
        for o in graph.ops
    ]
    inner = [n for n, t in graph.tensors.items() if t.kind == "activation"]
    g = helper.make_graph(
        nodes,
        graph.name,
        [info(n) for n in graph.inputs],
        [info(n) for n in graph.outputs],
        value_info=[info(n) for n in inner],
    )
    return helper.make_model(g, producer_name="planner")


MEMORY_CAP = 10 * 2**30  # HMCOS's DP can take more than the machine has on wide graphs


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def run_hmcos(binary: str, graph: Graph, types: str = "real", timeout: float = 600) -> tuple[list[str], float, float]:
    """(order, HMCOS's own scheduling time in s, wall s of the whole call) for `graph`;
    the process gets at most MEMORY_CAP bytes of address space and `timeout` seconds."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"{graph.name}.onnx"
        onnx.save(to_onnx(graph, types), path)
        t0 = time.perf_counter()
        out = subprocess.run(
            [binary, str(path)], capture_output=True, text=True, timeout=timeout, check=True, preexec_fn=_cap_memory
        )
        wall = time.perf_counter() - t0
    lines = out.stdout.splitlines()
    ms = float(next(ln for ln in lines if ln.startswith("#time_ms")).split()[1])
    start = next(i for i, ln in enumerate(lines) if ln.startswith("#peak")) + 1
    order = [ln for ln in lines[start:] if ln]
    if not graph.is_topological(order):
        raise RuntimeError(f"HMCOS returned an order that is not a topological order of {graph.name}")
    return order, ms / 1000, wall


def score(graph: Graph, order: list[str], target: Target | None = None) -> dict:
    """Our measures of an order: aligned max-live and the best heuristic layout's arena."""
    target = target or Target("t", None)
    arena, layout, _ = best_layout(graph, target, order)
    return {"peak": max_live(graph, target, order, aligned=True), "arena": arena, "layout": layout}


def score_shared(graph: Graph, order: list[str], target: Target) -> dict:
    """`order` scored under `target`'s sharing the way `auto` chooses it (solvers/portfolio.py
    `choose_sharing`): each relation set the target allows (all of them, views and in-place
    writes only, none) gives a storage graph (solvers/storage.py) with the same order, laid
    out by the best heuristic, mapped back and replayed by the simulator; the smallest
    simulated arena wins. Also the least aligned max-live of the order over those sets: no
    layout of this order under these relations packs below it. With in-place writes also
    their order-dependent form (HMCOS's own rule, `storage_graph(order=...)`): an element-wise
    op may overwrite an input whose other readers all ran before it in this order.

    Why: HMCOS's order compared with a plan that shares bytes must share them too, or the
    comparison measures the sharing, not the order."""
    from planner.plan import Plan, SolverInfo
    from planner.simulate import finalize
    from planner.solvers.lowering import lower
    from planner.solvers.storage import DOMINATING_KINDS, shared_plan, sharing_kinds, storage_graph, unshared

    by = {o.name: o for o in graph.ops}
    g = Graph(graph.name, graph.tensors.values(), [by[o] for o in order], graph.source)
    kinds = sharing_kinds(target)
    inner = unshared(target)
    best: dict | None = None
    options = [(ks, False) for ks in dict.fromkeys([kinds, kinds & DOMINATING_KINDS, frozenset()])]
    options += [(ks, True) for ks, _ in options if ks and "inplace" in ks]
    for ks, ordered in options:
        st = storage_graph(g, ks, target.alignment, order if ordered else None) if ks else None
        sg = st.graph if st is not None else g
        sorder = [o.name for o in sg.ops]  # the order, with each concat's allocation before its first slot
        arena, layout, offs = best_layout(sg, inner, sorder)
        info = SolverInfo("hmcos-order", "heuristic", 0, 0.0, {}, {})
        stages = lower(sg, inner, sorder, offs)
        plan = shared_plan(st, target, stages, info) if st is not None else finalize(Plan(g, target, stages, info))
        peak = max_live(sg, inner, sorder, aligned=True)
        row = {
            "arena": plan.metrics.arena_bytes,
            "peak": peak,
            "layout": layout,
            "kinds": sorted(ks),
            "ordered": ordered,
        }
        if best is None or (row["arena"], row["peak"]) < (best["arena"], best["peak"]):
            best = {**row, "min_peak": min(peak, best["min_peak"]) if best else peak}
        else:
            best["min_peak"] = min(best["min_peak"], peak)
    return best


def hmcos_order(binary: str, graph: Graph, timeout: float = 600) -> dict:
    """HMCOS on both op-type variants; the order with the smaller arena, its score and times."""
    best: dict | None = None
    for types in ("real", "opaque"):
        try:
            order, sched_s, wall = run_hmcos(binary, graph, types, timeout)
        except (subprocess.SubprocessError, RuntimeError, OSError) as e:
            best = best or {"error": str(e).splitlines()[0][:120] if str(e) else type(e).__name__}
            continue
        row = {**score(graph, order), "order": order, "sched_s": sched_s, "wall_s": wall, "types": types}
        if best is None or "error" in best or row["arena"] < best["arena"]:
            best = row
    return best


if __name__ == "__main__":
    from planner.models.zoo import load_model

    for name in sys.argv[2:]:
        r = hmcos_order(sys.argv[1], load_model(name))
        r.pop("order", None)
        print(name, r)
