"""Terminal output shared by the commands: plan summaries and the live solver progress."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator

from rich.console import Console
from rich.live import Live
from rich.table import Table

from planner.macs import total_macs
from planner.plan import Plan
from planner.target import PRESETS, format_bytes


def console() -> Console:
    """stdout console; piped output gets a wide fixed width so tables do not wrap."""
    return Console() if sys.stdout.isatty() else Console(width=140)


def summary_dict(plan: Plan, plan_path: str | None = None) -> dict:
    """The `--json` summary: the plan file's metrics and solver keys, plus context."""
    from dataclasses import asdict

    d = {
        "model": plan.graph.name,
        "ops": len(plan.graph.ops),
        "tensors": len(plan.graph.tensors),
        "target": plan.target.name,
        "budget_bytes": plan.target.budget,
        "llb_bytes": plan.target.llb_bytes,
    }
    d.update(asdict(plan.metrics))
    d["spill_traffic_bytes"] = plan.metrics.spill_traffic_bytes
    d["solver"] = asdict(plan.solver)
    d["plan_path"] = plan_path
    d["notes"] = plan_notes(plan)
    d["macs"] = total_macs(plan.graph)
    return d


def plan_notes(plan: Plan) -> list[str]:
    """What the plan does not cover, in words a user can act on."""
    nested = plan.graph.nested_ops()
    if not nested:
        return []
    kinds = ", ".join(sorted({o.type for o in nested}))
    return [
        f"{len(nested)} op(s) run nested graphs ({kinds}); each is planned as one op, so the memory "
        "their bodies use inside is not in this plan (the runtime allocates it)"
    ]


def solver_bound(plan: Plan) -> str:
    """What the solver proved, in words: a bound on the arena or on the spill traffic, and
    over which shared bytes (a status is proven over the relations the plan was allowed)."""
    s = plan.solver
    what = "arena" if s.objective == "arena" else "spill traffic"
    shares = s.facts.get("shares")
    over = f" with shared bytes: {', '.join(f'{n} {k}' for k, n in sorted(shares.items()))}" if shares else ""
    return f"bound on the {what} {s.bound} B{over}"


def summary_table(plan: Plan, plan_path: str | None = None, title: str = "plan") -> Table:
    """The plan summary `planner plan` and `show` print: sizes, bound, traffic, solver."""
    m, s = plan.metrics, plan.solver
    t = Table(title=title, show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column()
    budget = plan.target.budget
    rows = [
        ("model", f"{plan.graph.name}  ({len(plan.graph.ops)} ops, {len(plan.graph.tensors)} tensors)"),
        (
            "target",
            f"{plan.target.name}  (L1 budget {format_bytes(budget) if budget else 'unbounded'}, "
            f"LLB {plan.target.llb_text()}, weights {plan.target.weights}, alignment {plan.target.alignment}, "
            f"lifetimes {plan.target.lifetimes})",
        ),
        ("lower bound", f"{format_bytes(m.lower_bound_bytes)}  ({m.lower_bound_bytes} B)"),
        (
            "arena",
            f"{format_bytes(m.arena_bytes)}  ({m.arena_bytes} B)"
            + (f", {m.arena_bytes / m.lower_bound_bytes:.3f}× bound" if m.lower_bound_bytes else ""),
        ),
        ("peak", f"{format_bytes(m.peak_l1_bytes)}  ({m.peak_l1_bytes} B)"),
        (
            "traffic",
            f"{format_bytes(m.traffic_bytes)}  (loaded {m.loaded_bytes} B, stored {m.stored_bytes} B; "
            f"compulsory {m.compulsory_traffic_bytes} B, spill {m.spill_traffic_bytes} B)",
        ),
        ("LLB peak", f"{format_bytes(m.llb_peak_bytes)}"),
        ("steps", str(m.steps)),
        ("solver", f"{s.name}  ({s.status}; " + solver_bound(plan) + ")"),
        ("time", f"{s.wall_s:.2f} s"),
    ]
    rows += split_rows(plan)
    rows += story_rows(plan)
    if plan_path:
        rows.append(("written", plan_path))
    rows += [("note", n) for n in plan_notes(plan)]
    for k, v in rows:
        t.add_row(k, v)
    return t


BASELINE_FACT = "tflm_baseline_arena"  # the plan's solver fact `planner plan` records


def split_rows(plan: Plan) -> list[tuple[str, str]]:
    """The plan's MACs, and for a plan of a split model what was split (regions, stripes),
    the MAC overhead and the floor (largest working set of one op) before and after."""
    split = next((t for t in plan.transforms if t.get("kind") == "split"), None)
    macs = total_macs(plan.graph)
    if split is None:
        return [("MACs", f"{macs:,}")] if macs else []
    rows = []
    for s in split.get("splits", []):
        ops = s.get("ops", [])
        rows.append(
            (
                "split",
                f"ops {ops[0]}–{ops[-1]} of the model ({s.get('input')} → {s.get('output')}) in {s.get('stripes')} "
                + ("output-channel chunks" if s.get("split") == "channels" else "row stripes")
                + (", halo rows copied from the previous stripe" if s.get("cache") else "")
                + (", every window op on exactly its rows (borders padded)" if s.get("same") is False else ""),
            )
        )
    before = split.get("macs", {}).get("before", 0)
    extra = f" (+{(macs - before) / before:.1%}: rows computed again)" if before and macs > before else ""
    rows.append(("MACs", f"{macs:,}, the model's {before:,}{extra}"))
    f = plan.solver.facts.get("split", {})
    if isinstance(f, dict) and f.get("floor_before"):
        rows.append(
            (
                "floor",
                f"largest working set of one op {format_bytes(f['floor_before'])} → {format_bytes(f['floor_after'])} "
                "after splitting",
            )
        )
    if isinstance(f, dict) and f.get("search"):
        best = f.get("proven_best_of")
        rows.append(
            (
                "search",
                f"optimal over the {best} split sets planned, no split among them: each one proven to need at least this"
                if isinstance(best, int) and best > 0
                else f"{f['search']} (heuristic): a split not planned may need less",
            )
        )
    unsplit = plan.solver.facts.get("unsplit_arena")
    if isinstance(unsplit, int) and unsplit:
        rows.append(("unsplit", f"the model as imported plans to {format_bytes(unsplit)} ({unsplit} B)"))
    return rows


def story_rows(plan: Plan) -> list[tuple[str, str]]:
    """What the numbers mean to a user: the plan against what TensorFlow Lite Micro does with
    the model (its own order, first-fit, no shared bytes: the fact `planner plan` records, so
    `show` prints it without planning again), and, planned without a board, which board
    presets the arena fits."""
    rows = []
    arena, base = plan.metrics.arena_bytes, plan.solver.facts.get(BASELINE_FACT)
    if isinstance(base, int) and not isinstance(base, bool) and base > 0:
        change = "the same" if arena == base else f"{'−' if arena < base else '+'}{abs(arena - base) / base:.1%}"
        rows.append(
            (
                "vs TFLM",
                f"the model's own order with TFLite Micro's first-fit needs {format_bytes(base)}; "
                f"this plan needs {format_bytes(arena)} ({change})",
            )
        )
    if plan.target.budget is None:
        rows.append(("boards", boards_text(plan)))
    return rows


def boards_text(plan: Plan) -> str:
    """The board presets whose L1 holds this plan's arena (those that place weights as the
    plan's target does: a board that loads weights into L1 needs room for them too)."""
    arena, weights = plan.metrics.arena_bytes, plan.target.weights
    boards = sorted(
        (t for t in PRESETS.values() if t.budget is not None and t.weights == weights),
        key=lambda t: (t.budget, t.name),
    )
    fits = [t for t in boards if t.budget >= arena]
    if not fits:
        return (
            f"fits none of the board presets with weights {weights} (the largest L1 is {format_bytes(boards[-1].budget)})"
            if boards
            else "no board preset to compare with"
        )
    names = ", ".join(f"{t.name} ({format_bytes(t.budget)})" for t in fits)
    return f"the arena fits {names}; the smallest: {fits[0].name}"


def rows_table(title: str, rows: list[dict]) -> Table:
    """A terminal table of dict rows (the per-tensor and per-op tables of `planner show`,
    the same rows as the HTML report's)."""
    t = Table(title=title)
    for k in rows[0] if rows else ():
        t.add_column(k, justify="right" if isinstance(rows[0][k], int) else "left", overflow="fold")
    for r in rows:
        t.add_row(*(f"{v:,}" if isinstance(v, int) else str(v) for v in r.values()))
    return t


class LiveLine:
    """The one line a long solve shows on a terminal, re-drawn on every refresh so the clock
    ticks even while a solver is busy: what it is doing, elapsed of the time limit (a bar),
    the best plan so far, the proven bound and the gap. A report that carries no incumbent
    keeps the last one known."""

    def __init__(self, time_limit: float | None = None) -> None:
        self.t0 = time.perf_counter()
        self.time_limit = time_limit
        self.solver = ""
        self.note = "starting"
        self.incumbent: int | None = None
        self.bound: int | None = None

    def update(self, p) -> None:
        """Take a solver's progress report (planner.solvers.base.Progress)."""
        if p.solver != self.solver:
            self.solver = p.solver
        self.note = p.note or self.note
        self.incumbent = p.incumbent if p.incumbent is not None else self.incumbent
        self.bound = p.bound if p.bound is not None else self.bound

    def text(self) -> str:
        """The line as plain text (what `__rich__` draws)."""
        elapsed = time.perf_counter() - self.t0
        if self.time_limit:
            frac = min(elapsed / self.time_limit, 1.0)
            bar = "█" * int(frac * 20) + "░" * (20 - int(frac * 20))
            clock = f"{bar} {elapsed:5.1f} s / {self.time_limit:g} s"
        else:
            clock = f"{elapsed:5.1f} s"
        parts = [f"{self.solver or 'planning'}: {self.note}", clock]
        if self.incumbent is not None:
            parts.append(f"best {format_bytes(self.incumbent)}")
        if self.bound is not None:
            parts.append(f"bound {format_bytes(self.bound)}")
        if self.incumbent and self.bound is not None:
            parts.append(f"gap {max(self.incumbent - self.bound, 0) / self.incumbent:.1%}")
        return "  ".join(parts)

    def __rich__(self) -> str:
        return self.text()


@contextlib.contextmanager
def live_progress(enabled: bool, console: Console | None = None, time_limit: float | None = None) -> Iterator:
    """Yield a Progress callback that drives a `LiveLine` on stderr while enabled (and stderr
    is a terminal): nothing on a pipe, with --quiet or --json."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    console = console or Console(stderr=True)
    line = LiveLine(time_limit)
    with Live(line, console=console, refresh_per_second=4, transient=True):
        yield line.update
