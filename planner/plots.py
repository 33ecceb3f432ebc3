"""Figures users would rather look at than read: memory over time, arena layout, budget sweeps.

Every panel of one figure shares its x axis: the op position (the i-th op the plan runs),
so a peak in memory over time sits right above the arena blocks that make it. Colours mean
tensor kinds everywhere (one key), the largest tensors are named where they sit, loads and
stores of activations (spills) are marked, and the L1 budget is drawn when there is one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402

from planner.plan import Plan  # noqa: E402
from planner.simulate import simulate  # noqa: E402
from planner.target import format_bytes  # noqa: E402

KiB = 1024
KIND_COLOURS = {"input": "#4c72b0", "weight": "#8172b2", "activation": "#dd8452", "output": "#55a868"}
SPILL_COLOUR = "#c44e52"
LABELLED = 6  # tensors named on the arena map


@dataclass
class Timeline:
    """A plan seen per op: resident bytes while each op runs, the tensors live there, the
    op positions where activations are stored (spilled) or loaded back."""

    mem: list[int]
    live: list[list[str]]
    spills: list[int]
    reloads: list[int]


def timeline(plan: Plan) -> Timeline:
    """The per-op view of a plan (x axis = op position, comparable across plans)."""
    sim = simulate(plan.graph, plan.target, plan.stages)
    g = plan.graph
    resident: set[str] = set()
    mem, live, spills, reloads = [], [], [], []
    for i, s in enumerate(plan.stages):
        pos = len(mem)
        if s.kind == "L":
            resident.add(s.name)
            if g.tensors[s.name].kind in ("activation", "output") and not s.shares:
                reloads.append(pos)
        elif s.kind == "F":
            resident.discard(s.name)
        elif s.kind == "S" and g.tensors[s.name].kind == "activation":
            spills.append(max(pos - 1, 0))
        elif s.kind == "R":
            resident.update(g.op(s.name).outputs)
            mem.append(sim.resident_bytes[i])
            live.append(sorted(resident, key=g.size, reverse=True))
    return Timeline(mem, live, spills, reloads)


def _short(name: str, width: int = 22) -> str:
    """A tensor name cut to fit a label."""
    return name if len(name) <= width else name[: width - 1] + "…"


def _op_position(plan: Plan) -> list[int]:
    """For every stage index, the position of the op that runs at or before it."""
    out, pos = [], -1
    for s in plan.stages:
        pos += s.kind == "R"
        out.append(max(pos, 0))
    return out


STRIPE_RE = re.compile(r"/stripe(\d+)(?:/|$)")  # tensors of stripe n of a split region (models/split.py)


def stripe_spans(plan: Plan) -> list[tuple[int, int, int]]:
    """(first, last op position, stripe) of each run of ops that compute one row stripe of a
    split region: ops whose outputs are named ``.../stripe<n>`` by the split transformation."""
    spans: list[tuple[int, int, int]] = []
    for pos, name in enumerate(plan.order):
        m = next((m for t in plan.graph.op(name).outputs if (m := STRIPE_RE.search(t))), None)
        if m is None:
            continue
        n = int(m.group(1))
        if spans and spans[-1][2] == n and spans[-1][1] == pos - 1:
            spans[-1] = (spans[-1][0], pos, n)
        else:
            spans.append((pos, pos, n))
    return spans


def _shade_stripes(ax, plan: Plan) -> None:
    spans = stripe_spans(plan)
    for a, b, n in spans:
        ax.axvspan(a - 0.5, b + 0.5, color="tab:green" if n % 2 else "tab:olive", alpha=0.12, linewidth=0)
    if spans:
        ax.plot([], [], "s", color="tab:olive", alpha=0.3, label="shaded: the row stripes of split regions")


def memory_axes(ax, plans: Sequence[tuple[str, Plan]], lower_bound: int | None = None) -> None:
    """Memory over time per plan (step lines, the first one thickest), the peak's largest
    tensors named, spills and reloads marked, the budget and the lower bound drawn, and the
    row stripes of the first plan's split regions shaded."""
    styles = ["-", "--", "-.", ":"]
    for k, (name, plan) in enumerate(plans):
        tl = timeline(plan)
        y = [m / KiB for m in tl.mem]
        label = (
            f"{name}: arena {format_bytes(plan.metrics.arena_bytes)}, peak {format_bytes(plan.metrics.peak_l1_bytes)}"
        )
        (line,) = ax.step(
            range(len(y)), y, where="mid", linewidth=2.4 - 0.5 * min(k, 3), linestyle=styles[k % 4], label=label
        )
        if tl.spills:
            ax.plot(tl.spills, [y[p] for p in tl.spills], "v", color=SPILL_COLOUR, markersize=5)
        if tl.reloads:
            ax.plot(tl.reloads, [y[min(p, len(y) - 1)] for p in tl.reloads], "^", color=line.get_color(), markersize=5)
        ax.axhline(plan.metrics.arena_bytes / KiB, color=line.get_color(), linewidth=0.8, alpha=0.7)
        if k == 0 and y:
            p = max(range(len(y)), key=y.__getitem__)
            top = ", ".join(f"{_short(t)} {format_bytes(plan.graph.size(t))}" for t in tl.live[p][:2])
            ax.plot([p], [y[p]], "o", color=line.get_color(), markersize=6)
            ax.plot([], [], " ", label=f"{name}'s peak at op {p}: {top}")
    first = plans[0][1]
    _shade_stripes(ax, first)
    if first.target.budget:
        ax.axhline(first.target.budget / KiB, color="r", linestyle="--", linewidth=1, label="L1 budget")
    if lower_bound:
        ax.axhline(lower_bound / KiB, color="k", linestyle=":", linewidth=1, label="lower bound")
    if any(timeline(p).spills for _, p in plans):
        ax.plot([], [], "v", color=SPILL_COLOUR, label="activation stored (spill)")
        ax.plot([], [], "^", color="k", label="loaded back")
    ax.plot([], [], color="grey", linewidth=0.8, label="thin lines: each plan's arena (peak + fragmentation)")
    ax.set_ylabel("resident L1 (KiB)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.grid(alpha=0.25)


def arena_axes(ax, plan: Plan, title: str) -> None:
    """The arena map: one block per residency (offset × op positions), coloured by tensor
    kind, reloaded activations in the spill colour, the largest tensors named."""
    sim = simulate(plan.graph, plan.target, plan.stages)
    pos = _op_position(plan)
    g = plan.graph
    n_ops = max(len(plan.order), 1)
    blocks = []
    for r in sim.residencies:
        x = g.tensors[r.tensor]
        if not x.bytes or r.offset is None:
            continue
        a, b = pos[min(r.start, len(pos) - 1)], pos[min(r.end, len(pos) - 1)] if r.end < len(pos) else n_ops - 1
        reloaded = (
            plan.stages[r.start].kind == "L" and x.kind in ("activation", "output") and not plan.stages[r.start].shares
        )
        colour = SPILL_COLOUR if reloaded else KIND_COLOURS[x.kind]
        ax.add_patch(
            Rectangle(
                (a - 0.4, r.offset / KiB),
                b - a + 0.8,
                x.bytes / KiB,
                facecolor=colour,
                edgecolor="white",
                linewidth=0.4,
                alpha=0.9,
            )
        )
        blocks.append((x.bytes * (b - a + 1), a, b, r.offset, x))
    named: list[tuple[int, int, int, int]] = []  # labelled blocks: tensors that share bytes get one label
    for _, a, b, off, x in sorted(blocks, key=lambda t: -t[0]):
        if len(named) == LABELLED:
            break
        if b - a + 1 < max(2, n_ops // 30):
            continue  # too narrow to carry a name
        if any(a - 3 <= b2 and a2 <= b + 3 and off < o2 + s2 and o2 < off + x.bytes for a2, b2, o2, s2 in named):
            continue
        named.append((a, b, off, x.bytes))
        label = f"{_short(x.name)}\n{format_bytes(x.bytes)}"
        ax.text((a + b) / 2, (off + x.bytes / 2) / KiB, label, fontsize=6, ha="center", va="center", clip_on=True)
    ax.set_xlim(-0.5, n_ops - 0.5)
    ax.set_ylim(0, max(plan.metrics.arena_bytes, plan.target.budget or 0, 1) / KiB * 1.05)
    if plan.target.budget:
        ax.axhline(plan.target.budget / KiB, color="r", linestyle="--", linewidth=1)
    key = [Patch(color=c, label=k) for k, c in KIND_COLOURS.items()]
    key.append(Patch(color=SPILL_COLOUR, label="activation loaded back (spill)"))
    ax.legend(handles=key, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.set_xlabel("op position (the i-th op the plan runs)")
    ax.set_ylabel("offset (KiB)")
    ax.set_title(title, fontsize=10)


def compare_figure(
    plans: Sequence[tuple[str, Plan]], best: tuple[str, Plan], path: str, lower_bound: int | None = None
) -> None:
    """Top: memory over time of `plans` (the best first). Bottom: the best plan's arena map.
    Both panels share the op axis."""
    ordered = [best] + [p for p in plans if p[0] != best[0]]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(13, 8.5), sharex=True, gridspec_kw={"height_ratios": [1, 1.3]})
    memory_axes(ax1, ordered, lower_bound)
    ax1.set_title(f"{best[1].graph.name}: memory over time", fontsize=10)
    arena_axes(ax2, best[1], f"arena map of {best[0]} ({format_bytes(best[1].metrics.arena_bytes)})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def sweep_figure(rows: Sequence[dict], path: str, title: str) -> None:
    """Spill traffic vs L1 budget, one line per solver (the Pareto curve for picking a chip);
    budgets a solver could not fit are marked, not left out."""
    fig, ax = plt.subplots(figsize=(8.5, 5))
    failed_label = True
    for solver in dict.fromkeys(r["solver"] for r in rows):
        mine = [r for r in rows if r["solver"] == solver and r.get("budget_bytes") is not None]
        pts = sorted(
            (r["budget_bytes"], r["spill_traffic_bytes"]) for r in mine if r.get("spill_traffic_bytes") is not None
        )
        (line,) = ax.plot([b / KiB for b, _ in pts], [t / KiB for _, t in pts], marker="o", label=solver)
        bad = sorted(r["budget_bytes"] for r in mine if r.get("spill_traffic_bytes") is None)
        if bad:
            ax.plot(
                [b / KiB for b in bad],
                [0] * len(bad),
                "x",
                color=line.get_color(),
                markersize=9,
                mew=2,
                label="does not fit" if failed_label else None,
            )
            failed_label = False
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
