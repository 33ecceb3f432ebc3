"""Spill sweep: non-compulsory traffic of the spill solvers as the L1 budget shrinks.

A thin wrapper over `planner sweep` (experiments/specs/spill_sweep.toml is the committed
table's spec). For each model (a zoo name or model path, optionally suffixed
``@in_place`` / ``@load`` for the weight placement, or a seeded random DAG
``rand:<ops>:<seed>``, `graphs.random_dag`) the budgets are 100/75/50/30 % of the best
no-spill heuristic arena, each clamped up to the smallest budget any plan can use
(``min_budget``: the largest aligned op working set); clamped budgets are reported as such
and equal budgets are solved once. Every solver's plan is checked by the simulator, so the
figures are the simulator's. cpsat-stage is skipped past ``--stage-max-ops`` (its model is
O(T·|V|)).

    python experiments/spill_sweep.py --spec experiments/specs/spill_sweep.toml
    python experiments/spill_sweep.py rand:20:0 rand:40:0 ppocr_cls silero_vad_16k_sequence@in_place --time-limit 10

Writes experiments/results/spill_sweep.{csv,md,png}; the sweep's store (which resumes) is
experiments/results/tmp/<out name>/.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from graphs import random_dag  # noqa: F401 - `spill_sweep.random_dag` as before

SOLVERS = ("spill-belady", "spill-largest", "spill-cost", "cpsat-spill", "cpsat-stage", "auto")
HEURISTICS = ("spill-belady", "spill-largest", "spill-cost")
FRACTIONS = (1.0, 0.75, 0.5, 0.3)
HERE = Path(__file__).parent


def spec_from_args(args) -> dict:
    """The sweep spec the positional models and flags describe (one grid per weight placement)."""
    by_weights: dict[str, list[str]] = {}
    for m in args.models:
        name, _, w = m.partition("@")
        if name.startswith("rand:"):
            _, n, seed = name.split(":")
            name = f"graphs.py:random_dag:{n}:{seed}"
        by_weights.setdefault(w or args.weights, []).append(name)
    return {
        "targets": ["unbounded"],
        "budgets": [f"{f * 100:g}%" for f in FRACTIONS],
        "reference": "best",
        "clamp": True,
        "solvers": args.solvers.split(","),
        "time_limits": [args.time_limit],
        "workers": args.workers,
        "objective": "traffic",
        "lifetimes": "tflm",
        "share": "none",
        "fuse": "none",
        "alignment": args.alignment,
        "max_ops": {"cpsat-stage": args.stage_max_ops},
        "grid": [{"weights": w, "models": ms} for w, ms in by_weights.items()],
    }


def rows_from_store(records: list[dict], order: list[str], solvers: list[str]) -> list[dict]:
    """One row per (model, weights, budget in bytes, solver), as the tables show them: budget
    words that resolve to the same bytes share one row and one label ("75%/50%→min")."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["model"], r["weights"], r["budget_bytes"], r["solver"]), []).append(r)
    rows = []
    for _key, cells in sorted(groups.items(), key=lambda kv: _order(kv[0], kv[1], order, solvers)):
        rows.append(_row(cells))
    belady = {
        (r["model"], r["weights"], r["budget"]): r.get("spill_traffic") for r in rows if r["solver"] == "spill-belady"
    }
    for r in rows:
        b = belady.get((r["model"], r["weights"], r["budget"]))
        if b and r.get("spill_traffic") not in (None, ""):
            r["vs_belady"] = f"{(r['spill_traffic'] - b) / b:+.0%}"
    return rows


def _order(key, cells, order, solvers):
    model, weights, budget, solver = key
    frac = min(float(c["budget"].rstrip("%")) for c in cells)
    return (
        order.index(model) if model in order else len(order),
        weights,
        -frac,
        solvers.index(solver) if solver in solvers else 99,
    )


def _row(cells: list[dict]) -> dict:
    cells = sorted(cells, key=lambda c: -float(c["budget"].rstrip("%")))
    c = cells[0]
    label = "/".join(x["budget"] for x in cells) + ("→min" if c.get("clamped") else "")
    row = {
        "model": c.get("graph") or c["model"],
        "weights": c["weights"],
        "ops": c.get("ops"),
        "nospill_arena": c.get("nospill_arena"),
        "min_budget": c.get("min_budget"),
        "budget_label": label,
        "budget": c["budget_bytes"],
        "clamped": c.get("clamped"),
        "solver": c["solver"],
    }
    if not c.get("metrics"):
        row["status"] = c.get("error") if c["status"] == "skipped" else c["status"]
        if c["status"] == "does-not-fit":
            row["error"] = str(c.get("error", ""))[:80]
        return row
    m = c["metrics"]
    spill = c["spill_traffic_bytes"]
    tb = c["bound"] if c.get("bound_objective") == "traffic" else None
    gap = "" if tb is None else (f"{(spill - tb) / spill:.0%}" if spill else "0%")
    inner = (c.get("facts") or {}).get("inner", "")
    return {
        **row,
        "status": c["status"],
        "inner": inner,
        "arena": m["arena_bytes"],
        "peak": m["peak_l1_bytes"],
        "spill_traffic": spill,
        "vs_belady": "",
        "traffic_bound": "" if tb is None else tb,
        "gap": gap,
        "steps": m["steps"],
        "time_s": round(c["solve_s"], 2),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", help="zoo names / model paths (suffix @in_place|@load) or rand:<ops>:<seed>")
    ap.add_argument("--spec", help="a sweep spec (experiments/specs/spill_sweep.toml) instead of the models and flags")
    ap.add_argument("--store", help="the sweep's results folder (default experiments/results/tmp/<out name>)")
    ap.add_argument("--time-limit", type=float, default=10.0, help="per exact solve (s)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--weights", default="load", choices=["load", "in_place"], help="default weight placement")
    ap.add_argument("--alignment", type=int, default=16)
    ap.add_argument("--solvers", default=",".join(SOLVERS))
    ap.add_argument("--stage-max-ops", type=int, default=80, help="skip cpsat-stage on larger graphs")
    ap.add_argument("--jobs", type=int, default=1, help="cells run in parallel (local pool)")
    ap.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS", help="run the cells on Ray instead")
    ap.add_argument("--out", default=str(HERE / "results" / "spill_sweep"))
    args = ap.parse_args(argv)
    from planner.sweep import PoolEngine, ProgressLine, RayEngine, Store, load_spec, run_sweep, spec_from_mapping
    from planner.sweep.spec import expand_models

    if not args.spec and not args.models:
        ap.error("give models or --spec")
    spec = load_spec(args.spec) if args.spec else spec_from_mapping(spec_from_args(args), HERE)
    store = Store(args.store or HERE / "results" / "tmp" / Path(args.out).name)
    engine = RayEngine(None if args.ray == "local" else args.ray) if args.ray else PoolEngine(args.jobs)
    progress = ProgressLine()
    run_sweep(spec, store, engine, progress=progress)
    progress.close()
    order = list(dict.fromkeys(n for g in spec.grids for n, _ in expand_models(g["models"], spec.base_dir)))
    solvers = list(dict.fromkeys(s for g in spec.grids for s in g["solvers"]))
    keys = {c.key for c in spec.cells()}
    records = [r for k, r in store.cells().items() if k in keys]
    order = [next((r.get("graph") for r in records if r["model"] == n and r.get("graph")), n) for n in order]
    for r in records:
        r["model"], r["graph"] = r.get("graph") or r["model"], r.get("graph")
    rows = rows_from_store(records, order, solvers)
    workers = max(g["workers"] for g in spec.grids)
    alignment = spec.grids[0]["alignment"] or 16
    cmd = "python experiments/spill_sweep.py " + " ".join(argv if argv is not None else sys.argv[1:])
    write_tables(rows, Path(args.out), cmd, workers, alignment)
    return 0


def write_tables(rows: list[dict], out: Path, cmd: str, workers: int, alignment: int) -> None:
    """spill_sweep.csv, .md (summary, then every run) and .png, in the committed format."""
    out.parent.mkdir(parents=True, exist_ok=True)
    keys = [
        "model",
        "weights",
        "ops",
        "nospill_arena",
        "min_budget",
        "budget_label",
        "budget",
        "clamped",
        "solver",
        "status",
        "inner",
        "arena",
        "peak",
        "spill_traffic",
        "vs_belady",
        "traffic_bound",
        "gap",
        "steps",
        "time_s",
    ]
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    lines = [
        f"Command: `{cmd}` (workers={workers}, alignment={alignment}).",
        "Budgets: fraction of the best no-spill heuristic arena; `→min` = clamped up to the",
        "smallest budget any plan can use. `vs Belady` = non-compulsory traffic relative to",
        "spill-belady at the same budget. `bound`/`gap` only where a solver proves one.",
        "",
        "| model | weights | ops | budget | B (bytes) | solver | status | arena | spill traffic | vs Belady "
        "| bound | gap | time s |",
        "|---|---|---:|---|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        st = r["status"] + (f" ({r['inner']})" if r.get("inner") else "")
        lines.append(
            f"| {r['model']} | {r['weights']} | {r['ops']} | {r['budget_label']} | {r['budget']} | {r['solver']} | "
            f"{st} | {r.get('arena', '')} | {r.get('spill_traffic', '')} | {r.get('vs_belady', '')} | "
            f"{r.get('traffic_bound', '')} | {r.get('gap', '')} | {r.get('time_s', '')} |"
        )
    lines = [*lines[:4], "", *summary(rows), "", "All runs:", "", *lines[5:]]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    _plot(rows, out.with_suffix(".png"))
    print(f"wrote {out.with_suffix('.csv')}, .md, .png")


def summary(rows: list[dict]) -> list[str]:
    """One line per (model, budget) that needs spills: Belady, the best heuristic, the exact
    solvers and auto, each as traffic (status, seconds)."""
    by: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        by.setdefault((r["model"], r["weights"], r["ops"], r["budget_label"], r["budget"]), {})[r["solver"]] = r

    def cell(r: dict | None, bound: bool = False) -> str:
        if not r:
            return ""
        if r.get("arena") in (None, ""):
            return str(r["status"])
        b = f", bound {r['traffic_bound']}" if bound and r.get("traffic_bound") not in (None, "") else ""
        return f"{r['spill_traffic']} ({r['status']}{b}, {float(r['time_s']):.1f} s)"

    out = [
        "| model | weights | ops | budget | B | Belady | best heuristic | cpsat-spill | cpsat-stage | auto "
        "| auto vs Belady |",
        "|---|---|---:|---|---:|---:|---:|---|---|---|---:|",
    ]
    for (model, w, ops, label, b), v in by.items():
        bel = v.get("spill-belady", {})
        if str(bel.get("spill_traffic", "")) in ("", "0"):
            continue
        heur = [int(v[h]["spill_traffic"]) for h in HEURISTICS if h in v and v[h].get("arena") not in (None, "")]
        out.append(
            f"| {model} | {w} | {ops} | {label} | {b} | {bel['spill_traffic']} | {min(heur) if heur else ''} | "
            f"{cell(v.get('cpsat-spill'), True)} | {cell(v.get('cpsat-stage'), True)} | {cell(v.get('auto'))} | "
            f"{v.get('auto', {}).get('vs_belady', '')} |"
        )
    return out


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r["model"] for r in rows))
    cols = min(4, len(models))
    nrows = -(-len(models) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(5 * cols, 4 * nrows), squeeze=False)
    for ax in axes.flat[len(models) :]:
        ax.set_visible(False)
    for ax, model in zip(axes.flat, models, strict=False):
        for sname in dict.fromkeys(r["solver"] for r in rows):
            pts = sorted(
                (r["budget"], r["spill_traffic"])
                for r in rows
                if r["model"] == model and r["solver"] == sname and "arena" in r
            )
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=sname)
        ax.set_title(model)
        ax.set_xlabel("L1 budget (bytes)")
        ax.set_ylabel("non-compulsory traffic (bytes)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
