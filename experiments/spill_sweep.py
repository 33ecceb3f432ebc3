"""Spill sweep: non-compulsory traffic of the spill solvers as the L1 budget shrinks.

For each model (a .onnx/.tflite path loaded with planner.models if available, or a seeded
random DAG ``rand:<ops>:<seed>``) the budgets are 100/75/50/30 % of the best no-spill
heuristic arena and the working-set minimum (clamped up to the minimum). Every solver's
plan is finalized by the simulator, so the figures are the simulator's.

    python experiments/spill_sweep.py rand:20:0 rand:40:0 rand:80:0 --time-limit 10

Writes experiments/results/spill_sweep.{csv,md,png}.
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import time
from pathlib import Path

from planner.graph import Graph, graph_from_records
from planner.solvers.base import DoesNotFit, SolveOptions
from planner.solvers.heuristic import best_heuristic
from planner.solvers.heuristics.spill import min_budget
from planner.solvers.registry import get_solver
from planner.target import Target

SOLVERS = ("spill-belady", "spill-largest", "cpsat-stage")
FRACTIONS = (1.0, 0.75, 0.5, 0.3)


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


def load_model(spec: str) -> Graph:
    if spec.startswith("rand:"):
        _, n, seed = spec.split(":")
        return random_dag(int(n), int(seed))
    from planner import models  # noqa: F401 - importers live there

    loader = getattr(models, "load", None) or getattr(models, "load_model", None)
    if loader is None:
        raise SystemExit(f"no model loader in planner.models for {spec}")
    return loader(spec)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="model paths or rand:<ops>:<seed>")
    ap.add_argument("--time-limit", type=float, default=10.0, help="per cpsat-stage solve (s)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--weights", default="load", choices=["load", "in_place"])
    ap.add_argument("--alignment", type=int, default=16)
    ap.add_argument("--solvers", default=",".join(SOLVERS))
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "spill_sweep"))
    args = ap.parse_args(argv)
    solvers = args.solvers.split(",")
    rows: list[dict] = []
    for spec in args.models:
        g = load_model(spec)
        base = Target("sweep", None, None, args.weights, args.alignment)
        arena = best_heuristic(g, base)[0]
        mb = min_budget(g, base)
        budgets = [("min", mb)] + [(f"{int(f * 100)}%", max(mb, int(f * arena))) for f in FRACTIONS]
        for label, b in budgets:
            tg = base.with_budget(b)
            for sname in solvers:
                opts = SolveOptions(time_limit=args.time_limit, workers=args.workers, seed=0, objective="traffic")
                t0 = time.perf_counter()
                try:
                    plan = get_solver(sname)(g, tg, opts)
                except DoesNotFit as e:
                    rows.append(
                        {
                            "model": g.name,
                            "ops": len(g.ops),
                            "nospill_arena": arena,
                            "budget_label": label,
                            "budget": b,
                            "solver": sname,
                            "status": "does-not-fit",
                            "error": str(e)[:80],
                        }
                    )
                    continue
                wall = time.perf_counter() - t0
                m = plan.metrics
                tb = plan.solver.options.get("spill_traffic_bound")
                gap = (
                    ""
                    if tb is None
                    else (
                        f"{(m.spill_traffic_bytes - tb) / m.spill_traffic_bytes:.0%}" if m.spill_traffic_bytes else "0%"
                    )
                )
                rows.append(
                    {
                        "model": g.name,
                        "ops": len(g.ops),
                        "nospill_arena": arena,
                        "budget_label": label,
                        "budget": b,
                        "solver": sname,
                        "status": plan.solver.status,
                        "arena": m.arena_bytes,
                        "peak": m.peak_l1_bytes,
                        "spill_traffic": m.spill_traffic_bytes,
                        "traffic_bound": "" if tb is None else tb,
                        "gap": gap,
                        "steps": m.steps,
                        "time_s": round(wall, 2),
                    }
                )
                print(
                    f"{g.name:12s} {label:>4s} B={b:7d} {sname:14s} {plan.solver.status:9s} "
                    f"arena={m.arena_bytes:7d} spill={m.spill_traffic_bytes:8d} gap={gap:>4s} {wall:6.2f}s",
                    flush=True,
                )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    keys = [
        "model",
        "ops",
        "nospill_arena",
        "budget_label",
        "budget",
        "solver",
        "status",
        "arena",
        "peak",
        "spill_traffic",
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
        "| model | ops | budget | B (bytes) | solver | status | arena | spill traffic | bound@T | gap@T | time s |",
        "|---|---:|---|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['ops']} | {r['budget_label']} | {r['budget']} | {r['solver']} | "
            f"{r['status']} | {r.get('arena', '')} | {r.get('spill_traffic', '')} | "
            f"{r.get('traffic_bound', '')} | {r.get('gap', '')} | {r.get('time_s', '')} |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    _plot(rows, out.with_suffix(".png"))
    print(f"wrote {out.with_suffix('.csv')}, .md, .png")
    return 0


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        for sname in dict.fromkeys(r["solver"] for r in rows):
            pts = sorted(
                (r["budget"], r["spill_traffic"])
                for r in rows
                if r["model"] == model and r["solver"] == sname and "spill_traffic" in r
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
