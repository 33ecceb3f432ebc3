"""Figures users would rather look at than read: memory over time, arena layout, budget sweeps."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from planner.plan import Plan  # noqa: E402
from planner.simulate import simulate  # noqa: E402

KiB = 1024


def _memory_per_op(plan: Plan) -> list[int]:
    """Resident bytes at each R stage (x axis = op index, comparable across plans)."""
    sim = simulate(plan.graph, plan.target, plan.stages)
    return [sim.resident_bytes[i] for i, s in enumerate(plan.stages) if s.kind == "R"]


def compare_figure(
    plans: Sequence[tuple[str, Plan]], best: tuple[str, Plan], path: str, lower_bound: int | None = None
) -> None:
    """Left: memory over time per solver. Right: the best plan's arena (offset × step rectangles)."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 5.5))
    for name, plan in plans:
        mem = _memory_per_op(plan)
        ax1.step(
            range(len(mem)),
            [m / KiB for m in mem],
            where="post",
            label=f"{name} (arena {plan.metrics.arena_bytes / KiB:.1f} KiB)",
            linewidth=1.2,
        )
    if lower_bound:
        ax1.axhline(lower_bound / KiB, color="k", linestyle=":", linewidth=1, label="lower bound")
    ax1.set_xlabel("operator step")
    ax1.set_ylabel("resident L1 (KiB)")
    ax1.set_title(f"{best[1].graph.name}: memory over time")
    ax1.legend(fontsize=8)
    _layout_axes(ax2, best[1], f"arena layout of {best[0]}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _layout_axes(ax, plan: Plan, title: str) -> None:
    sim = simulate(plan.graph, plan.target, plan.stages)
    cmap = plt.get_cmap("tab20")
    for i, r in enumerate(sim.residencies):
        x = plan.graph.tensors[r.tensor]
        ax.add_patch(
            Rectangle(
                (r.start, r.offset / KiB),
                max(r.end - r.start, 0.5),
                x.bytes / KiB,
                facecolor=cmap(i % 20),
                edgecolor="k" if x.kind != "activation" else "none",
                linewidth=0.3,
                alpha=0.85,
            )
        )
    ax.set_xlim(0, max(len(plan.stages), 1))
    ax.set_ylim(0, max(plan.metrics.arena_bytes, 1) / KiB * 1.05)
    if plan.target.budget:
        ax.axhline(plan.target.budget / KiB, color="r", linestyle="--", linewidth=1, label="L1 budget")
        ax.legend(fontsize=8)
    ax.set_xlabel("stage (timestep)")
    ax.set_ylabel("offset (KiB)")
    ax.set_title(title)


def sweep_figure(rows: Sequence[dict], path: str, title: str) -> None:
    """Spill traffic vs L1 budget, one line per solver (the Pareto curve for picking a chip)."""
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for solver in dict.fromkeys(r["solver"] for r in rows):
        pts = sorted(
            (r["budget_bytes"], r["spill_traffic_bytes"])
            for r in rows
            if r["solver"] == solver and r.get("spill_traffic_bytes") is not None
        )
        if pts:
            ax.plot([b / KiB for b, _ in pts], [t / KiB for _, t in pts], marker="o", label=solver)
    ax.set_xlabel("L1 budget (KiB)")
    ax.set_ylabel("spill traffic, non-compulsory (KiB)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def traffic_budget_figure(panels: dict[str, dict[str, list[tuple[int, int]]]], path: str, cols: int = 4) -> None:
    """Spill traffic against the L1 budget, one panel per model (and target), one line per
    solver: how much slow-memory traffic each kilobyte of SRAM saves. `panels` maps a panel
    title to solver -> [(budget bytes, spill traffic bytes)]."""
    names = list(panels)[:48]
    cols = max(1, min(cols, len(names)))
    nrows = -(-len(names) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.6 * cols, 3.6 * nrows), squeeze=False)
    for ax in axes.flat[len(names) :]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, names, strict=False):
        for solver, pts in panels[name].items():
            pts = sorted(set(pts))
            ax.plot([b / KiB for b, _ in pts], [t / KiB for _, t in pts], marker="o", markersize=3, label=solver)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("L1 budget (KiB)", fontsize=8)
        ax.set_ylabel("spill traffic (KiB)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def arena_bound_figure(points: dict[str, list[tuple[int, int]]], path: str) -> None:
    """Arena against the proven lower bound, one colour per solver, log-log, with the
    diagonal where a plan is proven optimal: how far each solver stays from the physical
    limit across a whole sweep. `points` maps a solver to [(bound bytes, arena bytes)]."""
    fig, ax = plt.subplots(figsize=(7, 6))
    markers = "osD^vP*X<>"
    lo, hi = None, None
    for i, (solver, pts) in enumerate(points.items()):
        xs, ys = [b / KiB for b, _ in pts], [a / KiB for _, a in pts]
        ax.scatter(xs, ys, s=22, marker=markers[i % len(markers)], alpha=0.7, label=solver)
        lo = min([lo or min(xs), *xs, *ys])
        hi = max([hi or max(xs), *xs, *ys])
    if lo and hi:
        ax.plot([lo, hi], [lo, hi], color="k", linewidth=0.8, linestyle=":", label="arena = bound")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("proven lower bound (KiB)")
    ax.set_ylabel("arena (KiB)")
    ax.set_title("Arena vs lower bound, per solver (on the diagonal: optimal)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


FIT_COLOURS = {"fits": "#4caf50", "spills": "#ffb300", "no": "#e53935", "error": "#9e9e9e", "?": "#eeeeee"}


def fits_matrix_figure(
    models: Sequence[str], boards: Sequence[str], matrix: Sequence[Sequence[str]], path: str
) -> None:
    """Models × boards: fits without spills, fits only by spilling, does not fit, unknown.
    The answer to "which board does each model of a family run on" at a glance."""
    from matplotlib.colors import to_rgb

    fig, ax = plt.subplots(figsize=(1.3 * len(boards) + 3, 0.32 * len(models) + 1.8))
    grid = [[to_rgb(FIT_COLOURS.get(v, "#ffffff")) for v in row] for row in matrix]
    ax.imshow(grid, aspect="auto")
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            ax.text(j, i, v, ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(boards)))
    ax.set_xticklabels(boards, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(models)))
    ax.set_yticklabels(models, fontsize=7)
    ax.set_title("Does the model fit the board's L1?")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
