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
