"""What a sweep found, from its store: tables (printed, CSV, markdown) and figures.

- models: per model, the smallest board it fits, its best arena (status, solver, × bound);
- fits: models × boards, `fits` (without spills), `spills` (fits by spilling), `no`, `?`;
- traffic: per model and target, the least spill traffic at each budget;
- solvers: per solver, how many plans, how many proven optimal, how many best, the median
  arena over the bound and the median time; and every cell side by side (markdown).

Every number is the simulator's (the store keeps the replayed metrics only).
"""

from __future__ import annotations

import csv
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from planner.target import PRESETS, format_bytes

FIT_WORDS = ("fits", "spills", "no", "error", "?")


def flat_row(r: dict) -> dict:
    """One cell as a flat row (cells.csv, and what every table below reads)."""
    m = r.get("metrics") or {}
    lower = max(m.get("lower_bound_bytes") or 0, r.get("working_set_bound") or 0) or None
    arena = m.get("arena_bytes")
    return {
        "model": r.get("model"),
        "graph": r.get("graph"),
        "ops": r.get("ops"),
        "target": r.get("target"),
        "budget": r.get("budget"),
        "budget_bytes": r.get("budget_bytes"),
        "solver": r.get("solver"),
        "time_limit": r.get("time_limit"),
        "seed": r.get("seed"),
        "status": r.get("status"),
        "arena_bytes": arena,
        "peak_l1_bytes": m.get("peak_l1_bytes"),
        "traffic_bytes": m.get("traffic_bytes"),
        "spill_traffic_bytes": r.get("spill_traffic_bytes"),
        "bound": r.get("bound"),
        "bound_objective": r.get("bound_objective"),
        "lower_bound_bytes": lower,
        "vs_lower_bound": round(arena / lower, 4) if arena and lower else None,
        "wall_s": r.get("wall_s"),
        "peak_rss_mib": r.get("peak_rss_mib"),
        "error": r.get("error", ""),
        "plan_file": r.get("plan_file", ""),
    }


@dataclass
class Summary:
    """The tables of one store (lists of dicts, one per row) and the flat cells."""

    cells: list[dict]
    models: list[dict] = field(default_factory=list)
    fits: list[dict] = field(default_factory=list)
    traffic: list[dict] = field(default_factory=list)
    solvers: list[dict] = field(default_factory=list)
    boards: list[str] = field(default_factory=list)
    budgets: list[str] = field(default_factory=list)


def summarise(records: list[dict]) -> Summary:
    """Every table of the summary from the store's cell records."""
    rows = [flat_row(r) for r in records]
    best_bound: dict[tuple, int] = defaultdict(int)
    for r in rows:  # an arena bound holds for every no-spill plan of the model on the target
        best_bound[r["model"], r["target"]] = max(best_bound[r["model"], r["target"]], r["lower_bound_bytes"] or 0)
    for r in rows:
        r["lower_bound_bytes"] = best_bound[r["model"], r["target"]] or None
        a, lb = r["arena_bytes"], r["lower_bound_bytes"]
        r["vs_lower_bound"] = round(a / lb, 4) if a and lb else None
    s = Summary(rows)
    s.boards = sorted({r["target"] for r in rows}, key=_board_order)
    s.budgets = list(dict.fromkeys(r["budget"] for r in rows))
    fit = {(m, b): fit_status(rows, m, b) for m in _models(rows) for b in s.boards}
    s.fits = [{"model": m, **{b: fit[m, b] for b in s.boards}} for m in _models(rows)]
    s.models = [_model_row(rows, m, fit) for m in _models(rows)]
    s.traffic = _traffic_rows(rows, s.budgets)
    s.solvers = _solver_rows(rows)
    return s


def _models(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["model"] for r in rows))


def _board_order(name: str) -> tuple:
    b = PRESETS[name].budget if name in PRESETS else None
    return (b is None, b or 0, name)


def _no_spill(r: dict) -> bool:
    return r["arena_bytes"] is not None and not r["spill_traffic_bytes"]


def fit_status(rows: list[dict], model: str, board: str) -> str:
    """Whether `model` fits `board`'s L1, by the evidence of the store: a plan without
    spills within it (`fits`), only with spills (`spills`), a does-not-fit at a budget of at
    least the board's and no plan (`no`), only errors (`error`), or nothing known (`?`)."""
    mine = [r for r in rows if r["model"] == model and r["target"] == board]
    cap = PRESETS[board].budget if board in PRESETS else None
    within = [r for r in mine if r["arena_bytes"] is not None and (cap is None or r["arena_bytes"] <= cap)]
    if any(_no_spill(r) for r in within):
        return "fits"
    if any(r["budget_bytes"] is not None and (cap is None or r["budget_bytes"] <= cap) for r in within):
        return "spills"
    if any(r["status"] == "does-not-fit" and (r["budget_bytes"] or 0) >= (cap or 0) for r in mine):
        return "no"
    if mine and all(r["status"] in ("error", "timeout") for r in mine):
        return "error"
    return "?"


def _model_row(rows: list[dict], model: str, fit: dict) -> dict:
    mine = [r for r in rows if r["model"] == model]
    boards = sorted(
        {r["target"] for r in mine if r["target"] in PRESETS and PRESETS[r["target"]].budget}, key=_board_order
    )
    fits = [b for b in boards if fit[model, b] == "fits"]
    spills = [b for b in boards if fit[model, b] in ("fits", "spills")]
    plans = [r for r in mine if _no_spill(r)]
    best = min(plans, key=lambda r: (r["arena_bytes"], r["status"] != "optimal"), default=None)
    bound = max((r["lower_bound_bytes"] or 0 for r in mine if best and r["target"] == best["target"]), default=0)
    errors = sorted({r["error"] for r in mine if r["status"] in ("error", "timeout") and r["error"]})
    return {
        "model": model,
        "ops": next((r["ops"] for r in mine if r["ops"]), None),
        "smallest board": fits[0] if fits else "-",
        "smallest with spills": spills[0] if spills else "-",
        "best arena": best["arena_bytes"] if best else None,
        "status": best["status"] if best else (mine[0]["status"] if mine else ""),
        "solver": best["solver"] if best else "",
        "on": best["target"] if best else "",
        "lower bound": bound or None,
        "vs bound": round(best["arena_bytes"] / bound, 4) if best and bound else None,
        "note": errors[0][:100] if errors and not best else "",
    }


def _traffic_rows(rows: list[dict], budgets: list[str]) -> list[dict]:
    out = []
    for key in dict.fromkeys((r["model"], r["target"]) for r in rows):
        mine = [r for r in rows if (r["model"], r["target"]) == key]
        row = {"model": key[0], "target": key[1]}
        for b in budgets:
            at = [r for r in mine if r["budget"] == b]
            plans = [r for r in at if r["arena_bytes"] is not None]
            if plans:
                best = min(plans, key=lambda r: (r["spill_traffic_bytes"], r["arena_bytes"]))
                row[b] = best["spill_traffic_bytes"]
                row[f"{b} bytes"] = best["budget_bytes"]
                row[f"{b} solver"] = best["solver"]
            else:
                row[b] = (
                    "no fit" if any(r["status"] == "does-not-fit" for r in at) else ("-" if not at else at[0]["status"])
                )
        out.append(row)
    return out


def _cell_groups(rows: list[dict]) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["model"], r["target"], r["budget"], r["time_limit"], r["seed"])].append(r)
    return groups


def _solver_rows(rows: list[dict]) -> list[dict]:
    wins: dict[str, int] = defaultdict(int)
    for group in _cell_groups(rows).values():
        plans = [r for r in group if r["arena_bytes"] is not None]
        if plans:
            best = min((r["spill_traffic_bytes"], r["arena_bytes"]) for r in plans)
            for r in plans:
                wins[r["solver"]] += (r["spill_traffic_bytes"], r["arena_bytes"]) == best
    out = []
    for solver in dict.fromkeys(r["solver"] for r in rows):
        mine = [r for r in rows if r["solver"] == solver]
        ratios = [r["vs_lower_bound"] for r in mine if _no_spill(r) and r["vs_lower_bound"]]
        walls = [r["wall_s"] for r in mine if r["wall_s"] is not None]
        out.append(
            {
                "solver": solver,
                "cells": len(mine),
                "plans": sum(r["arena_bytes"] is not None for r in mine),
                "optimal": sum(r["status"] == "optimal" for r in mine),
                "best": wins[solver],
                "does not fit": sum(r["status"] == "does-not-fit" for r in mine),
                "failed": sum(r["status"] in ("error", "timeout") for r in mine),
                "median vs bound": round(statistics.median(ratios), 4) if ratios else None,
                "max vs bound": round(max(ratios), 4) if ratios else None,
                "median s": round(statistics.median(walls), 2) if walls else None,
            }
        )
    return out


def _b(v) -> str:
    return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else ("-" if v is None else str(v))


def markdown(s: Summary, title: str = "Sweep summary") -> str:
    """The summary as one markdown document (what summary.md holds)."""
    lines = [f"# {title}", "", f"{len(s.cells)} cells. Bytes; × = arena over the best proven lower bound.", ""]
    lines += ["## Models", "", *_md_table(s.models, _fmt_model), ""]
    lines += ["## Fits (models × boards)", "", "`fits`: a plan without spills within the board's L1; `spills`: only"]
    lines += ["by spilling; `no`: does not fit at the board's L1; `?`: no cell tells.", "", *_md_table(s.fits), ""]
    lines += ["## Spill traffic by budget", "", "Least non-compulsory traffic over the solvers at each budget.", ""]
    cols = ["model", "target", *s.budgets]
    lines += [*_md_table([{k: r.get(k, "-") for k in cols} for r in s.traffic]), ""]
    lines += ["## Solvers", "", "`best`: cells where the solver has the least traffic, then arena (ties count).", ""]
    lines += [*_md_table(s.solvers), "", "## Every cell", "", *_md_cells(s.cells)]
    return "\n".join(lines) + "\n"


def _fmt_model(r: dict) -> dict:
    r = dict(r)
    if r["vs bound"]:
        r["vs bound"] = f"{r['vs bound']:.3f}×"
    return r


def _md_table(rows: list[dict], fmt=None) -> list[str]:
    if not rows:
        return ["(none)"]
    rows = [fmt(r) for r in rows] if fmt else rows
    keys = list(rows[0])
    out = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    out += ["| " + " | ".join(_b(r.get(k)) for k in keys) + " |" for r in rows]
    return out


def _md_cells(rows: list[dict]) -> list[str]:
    solvers = list(dict.fromkeys(r["solver"] for r in rows))
    out = ["| model | target | budget | B | limit s | " + " | ".join(solvers) + " |", "|" + "---|" * (5 + len(solvers))]
    for (model, target, budget, tl, _seed), group in _cell_groups(rows).items():
        by = {r["solver"]: r for r in group}
        cells = []
        for sv in solvers:
            r = by.get(sv)
            if r is None:
                cells.append("")
            elif r["arena_bytes"] is None:
                cells.append(str(r["status"]))
            else:
                spill = f", spill {r['spill_traffic_bytes']:,}" if r["spill_traffic_bytes"] else ""
                cells.append(f"{r['arena_bytes']:,}{spill} ({r['status']})")
        b = group[0]["budget_bytes"]
        out.append(f"| {model} | {target} | {budget} | {format_bytes(b)} | {tl:g} | " + " | ".join(cells) + " |")
    return out


def write(s: Summary, out_dir: str | Path) -> list[Path]:
    """summary.md, the CSVs and the figures into `out_dir`; the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "summary.md"]
    paths[0].write_text(markdown(s))
    for name, rows in (
        ("cells", s.cells),
        ("models", s.models),
        ("fits", s.fits),
        ("traffic", s.traffic),
        ("solvers", s.solvers),
    ):
        p = out / ("cells.csv" if name == "cells" else f"summary_{name}.csv")
        write_csv(rows, p)
        paths.append(p)
    return paths + figures(s, out)


def write_csv(rows: list[dict], path: Path) -> None:
    """Every field of every row (the union of their keys, in first-seen order), one CSV: the
    summary's tables and the benchmark scripts' (experiments/)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def figures(s: Summary, out: Path) -> list[Path]:
    """traffic_vs_budget.png, arena_vs_bound.png and fits.png (each only with data to draw)."""
    from planner.plots import arena_bound_figure, fits_matrix_figure, traffic_budget_figure

    written = []
    panels = traffic_panels(s.cells)
    if panels:
        traffic_budget_figure(panels, out / "traffic_vs_budget.png")
        written.append(out / "traffic_vs_budget.png")
    points: dict[str, list] = {}
    for r in s.cells:
        if _no_spill(r) and r["lower_bound_bytes"]:
            points.setdefault(r["solver"], []).append((r["lower_bound_bytes"], r["arena_bytes"]))
    if points:
        arena_bound_figure(points, out / "arena_vs_bound.png")
        written.append(out / "arena_vs_bound.png")
    if s.fits and s.boards:
        matrix = [[r[b] for b in s.boards] for r in s.fits]
        labels = [f"{b}\n{format_bytes(PRESETS[b].budget) if b in PRESETS else '?'}" for b in s.boards]
        fits_matrix_figure([r["model"] for r in s.fits], labels, matrix, out / "fits.png")
        written.append(out / "fits.png")
    return written


def traffic_panels(rows: list[dict]) -> dict[str, dict[str, list[tuple[int, int]]]]:
    """One panel per model that spills somewhere: a line per solver and target, where the
    targets on which a solver draws the same curve share one line (and one label)."""
    curves: dict[str, dict[tuple[str, str], list]] = {}
    for r in rows:
        if r["arena_bytes"] is not None and r["budget_bytes"]:
            curves.setdefault(r["model"], {}).setdefault((r["solver"], r["target"]), []).append(
                (r["budget_bytes"], r["spill_traffic_bytes"] or 0)
            )
    panels = {}
    for model, by in curves.items():
        if not any(t for pts in by.values() for _, t in pts):
            continue
        same: dict[tuple, list[str]] = {}
        for (solver, target), pts in by.items():
            same.setdefault((solver, tuple(sorted(set(pts)))), []).append(target)
        targets = {t for _, t in by}
        panels[model] = {
            solver + ("" if len(targets) == 1 else f" @ {_targets_label(ts)}"): list(pts)
            for (solver, pts), ts in same.items()
        }
    return panels


def _targets_label(targets: list[str]) -> str:
    return ", ".join(targets) if len(targets) <= 2 else f"{targets[0]} +{len(targets) - 1} boards"
