"""Spill sweep: non-compulsory traffic of the spill solvers as the L1 budget shrinks.

For each model (a zoo name or model path loaded with ``planner.models.zoo.load_model``,
optionally suffixed ``@in_place`` / ``@load`` for the weight placement, or a seeded random
DAG ``rand:<ops>:<seed>``) the budgets are 100/75/50/30 % of the best no-spill heuristic
arena, each clamped up to the smallest budget any plan can use (``min_budget``: the largest
aligned op working set); clamped budgets are reported as such and equal budgets are
solved once. Every solver's plan is finalized by the simulator, so the figures are the
simulator's. Exact solvers (and auto) are skipped where the heuristics already reach zero
non-compulsory traffic, and cpsat-stage past ``--stage-max-ops`` (its model is O(T·|V|)).

    python experiments/spill_sweep.py rand:20:0 rand:40:0 rand:80:0 rand:160:0 \
        ppocr_cls deepcut light_shufflenet resnet8 \
        silero_vad_16k_sequence@in_place silero_vad_openvino_16k@in_place --time-limit 10

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

SOLVERS = ("spill-belady", "spill-largest", "spill-cost", "cpsat-spill", "cpsat-stage", "auto")
HEURISTICS = ("spill-belady", "spill-largest", "spill-cost")
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


def load_model(spec: str) -> tuple[Graph, str | None]:
    """(graph, weight placement from an ``@in_place`` / ``@load`` suffix or None)."""
    weights = None
    if "@" in spec:
        spec, weights = spec.rsplit("@", 1)
    if spec.startswith("rand:"):
        _, n, seed = spec.split(":")
        return random_dag(int(n), int(seed)), weights
    from planner.models.zoo import load_model as zoo_load

    return zoo_load(spec), weights


def _budgets(arena: int, mb: int) -> list[tuple[str, int, bool]]:
    """(label, budget, clamped) for each fraction, equal budgets merged into one label."""
    out: dict[int, tuple[list[str], bool]] = {}
    for f in FRACTIONS:
        want = int(f * arena)
        b = max(mb, want)
        labels, clamped = out.setdefault(b, ([], False))
        labels.append(f"{int(f * 100)}%")
        out[b] = (labels, clamped or want < mb)
    return [("/".join(lab) + ("→min" if cl else ""), b, cl) for b, (lab, cl) in out.items()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="zoo names / model paths (suffix @in_place|@load) or rand:<ops>:<seed>")
    ap.add_argument("--time-limit", type=float, default=10.0, help="per exact solve (s)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--weights", default="load", choices=["load", "in_place"], help="default weight placement")
    ap.add_argument("--alignment", type=int, default=16)
    ap.add_argument("--solvers", default=",".join(SOLVERS))
    ap.add_argument("--stage-max-ops", type=int, default=80, help="skip cpsat-stage on larger graphs")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "spill_sweep"))
    args = ap.parse_args(argv)
    solvers = args.solvers.split(",")
    rows: list[dict] = []
    for spec in args.models:
        g, wmode = load_model(spec)
        wmode = wmode or args.weights
        base = Target("sweep", None, None, wmode, args.alignment)
        arena = best_heuristic(g, base)[0]
        mb = min_budget(g, base)
        for label, b, clamped in _budgets(arena, mb):
            tg = base.with_budget(b)
            heur_best = None
            belady = None
            for sname in solvers:
                common = {
                    "model": g.name,
                    "weights": wmode,
                    "ops": len(g.ops),
                    "nospill_arena": arena,
                    "min_budget": mb,
                    "budget_label": label,
                    "budget": b,
                    "clamped": clamped,
                    "solver": sname,
                }
                if sname not in HEURISTICS and heur_best == 0:
                    rows.append({**common, "status": "skipped (heuristics reach 0)", "spill_traffic": 0})
                    continue
                if sname == "cpsat-stage" and len(g.ops) > args.stage_max_ops:
                    rows.append({**common, "status": f"skipped (> {args.stage_max_ops} ops)"})
                    continue
                opts = SolveOptions(time_limit=args.time_limit, workers=args.workers, seed=0, objective="traffic")
                t0 = time.perf_counter()
                try:
                    plan = get_solver(sname)(g, tg, opts)
                except DoesNotFit as e:
                    rows.append({**common, "status": "does-not-fit", "error": str(e)[:80]})
                    continue
                wall = time.perf_counter() - t0
                m = plan.metrics
                if sname in HEURISTICS:
                    heur_best = m.spill_traffic_bytes if heur_best is None else min(heur_best, m.spill_traffic_bytes)
                if sname == "spill-belady":
                    belady = m.spill_traffic_bytes
                tb = plan.solver.options.get("spill_traffic_bound")
                gap = (
                    ""
                    if tb is None
                    else (
                        f"{(m.spill_traffic_bytes - tb) / m.spill_traffic_bytes:.0%}" if m.spill_traffic_bytes else "0%"
                    )
                )
                vs = ""
                if belady:
                    vs = f"{(m.spill_traffic_bytes - belady) / belady:+.0%}"
                rows.append(
                    {
                        **common,
                        "status": plan.solver.status,
                        "inner": plan.solver.options.get("inner", ""),
                        "arena": m.arena_bytes,
                        "peak": m.peak_l1_bytes,
                        "spill_traffic": m.spill_traffic_bytes,
                        "vs_belady": vs,
                        "traffic_bound": "" if tb is None else tb,
                        "gap": gap,
                        "steps": m.steps,
                        "time_s": round(wall, 2),
                    }
                )
                print(
                    f"{g.name:24s} {label:>14s} B={b:8d} {sname:14s} {plan.solver.status:9s} "
                    f"arena={m.arena_bytes:8d} spill={m.spill_traffic_bytes:8d} {vs:>5s} gap={gap:>4s} {wall:6.2f}s",
                    flush=True,
                )
    out = Path(args.out)
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
    cmd = "python experiments/spill_sweep.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [
        f"Command: `{cmd}` (workers={args.workers}, alignment={args.alignment}).",
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
    return 0


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
