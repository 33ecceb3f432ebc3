"""`planner compare`: every solver on one model, one table (and figures)."""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass

from rich.markup import escape
from rich.table import Table

from planner.bounds import working_set_bound
from planner.commands.common import (
    CliError,
    add_model_args,
    add_solver_args,
    add_split_args,
    add_target_args,
    check_writable,
    load_graph,
    make_target,
    model_path,
    solve_for_target,
)
from planner.plan import Plan
from planner.report import console, live_progress
from planner.simulate import PlanError
from planner.solvers.base import DoesNotFit, SolveOptions, Timer
from planner.solvers.registry import SOLVERS
from planner.suggest import did_you_mean
from planner.target import TargetError, format_bytes, parse_size


@dataclass
class Row:
    """One solver's result at one budget (or why it gave none)."""

    solver: str
    budget_bytes: int | None
    plan: Plan | None
    wall_s: float
    note: str = ""

    @property
    def interrupted(self) -> bool:
        """The solver was stopped by Ctrl-C and gave its best plan so far."""
        return self.plan is not None and bool(self.plan.solver.facts.get("interrupted"))

    def as_dict(self, lower: int, best: int | None) -> dict:
        """The row as the table, CSV and --json show it."""
        m = self.plan.metrics if self.plan else None
        return {
            "solver": self.solver,
            "budget_bytes": self.budget_bytes,
            "arena_bytes": m.arena_bytes if m else None,
            "peak_l1_bytes": m.peak_l1_bytes if m else None,
            "traffic_bytes": m.traffic_bytes if m else None,
            "spill_traffic_bytes": m.spill_traffic_bytes if m else None,
            "vs_lower_bound": round(m.arena_bytes / lower, 4) if m and lower else None,
            "vs_best": round(m.arena_bytes / best, 4) if m and best else None,
            "status": (
                self.plan.solver.status
                + (" (interrupted)" if self.interrupted else "")
                + (f": {self.note}" if self.note else "")
            )
            if self.plan
            else self.note,
            "bound": self.plan.solver.bound if self.plan else None,
            "wall_s": round(self.wall_s, 3),
        }


def register(sub) -> None:
    """Add `planner compare` to the subcommands."""
    p = sub.add_parser("compare", help="run several solvers on a model and compare their plans")
    add_model_args(p, optional=True)
    add_target_args(p)
    p.add_argument("--solvers", help="comma-separated solver names (default: all that plan without spilling)")
    p.add_argument("--budgets", help="comma-separated L1 budgets to sweep (spill traffic vs budget)")
    add_solver_args(p, whole_command=False)
    add_split_args(p)
    p.add_argument("--csv", help="write the table as CSV")
    p.add_argument(
        "--plot",
        help="write a PNG figure: memory over time of the best plan against the model's own order with TFLite "
        "Micro's first-fit (given-firstfit, --share none; with --solvers: of the solvers asked) + the best "
        "plan's layout, or with --budgets the budget sweep",
    )
    p.add_argument("--json", action="store_true", help="print rows as JSON")
    p.add_argument("--quiet", action="store_true", help="no live progress")
    p.set_defaults(func=run)


def _options(args, cb) -> SolveOptions:
    """The options every row's solve gets (each solve its own --time-limit)."""
    return SolveOptions(
        time_limit=args.time_limit, workers=args.workers, seed=args.seed, objective=args.objective, progress=cb
    )


def _run_one(name: str, graph, target, args, cb) -> Row:
    timer = Timer()
    opts = _options(args, cb)
    if SOLVERS[name].spills and not target.can_spill:
        return Row(name, target.budget, None, 0.0, f"skipped: target {target.name} has no LLB, nothing can be spilled")
    try:
        plan = solve_for_target(name, graph, target, opts)
    except DoesNotFit as e:
        if getattr(e, "note", None):  # with a note on weights
            return Row(name, target.budget, None, timer.elapsed, f"does not fit: {e}")
        return Row(name, target.budget, None, timer.elapsed, f"does not fit (needs {e.needed} B)")
    except CliError as e:
        return Row(name, target.budget, None, timer.elapsed, f"does not fit: {e}")
    except PlanError:
        raise  # a solver made an invalid plan: an internal error, not a skip
    except ValueError as e:  # e.g. the DP refuses a graph too large for it
        return Row(name, target.budget, None, timer.elapsed, f"skipped: {str(e).strip()}")
    return Row(name, target.budget, plan, timer.elapsed)


def run(args) -> int:
    """Run the solvers, print the table, write CSV / figures."""
    check_writable(args.csv, "--csv")
    check_writable(args.plot, "--plot")
    base_target = make_target(args)
    graph = load_graph(args, base_target)
    names, targets = _solvers_and_targets(args, base_target)
    from planner.solvers.cpsat import interruptible

    with interruptible(), live_progress(not (args.quiet or args.json), time_limit=args.time_limit) as cb:
        rows, interrupted = _run_all(names, targets, graph, args, cb)
    if interrupted:  # Ctrl-C: the rows already finished, then exit 130
        print(f"planner: interrupted: {len(rows)} of {len(names) * len(targets)} rows finished", file=sys.stderr)
        if not rows:
            return INTERRUPTED
    extra = _tflm_row(args, graph) if not (args.budgets or interrupted) else None
    lower = _lower_bound(graph, base_target, names, rows)
    dicts = _dicts(rows, lower, extra)
    try:
        written = _write_files(args, graph, rows, dicts, lower)
    except OSError as e:
        raise CliError(f"cannot write {e.filename or args.csv or args.plot}: {e.strerror or e}") from None
    if args.json:
        json.dump({"model": graph.name, "lower_bound_bytes": lower, "rows": dicts}, sys.stdout)
        sys.stdout.write("\n")
    else:
        _print_table(args, graph, dicts, lower, written)
    return INTERRUPTED if interrupted else 0


INTERRUPTED = 130  # the shell's status for a command stopped by Ctrl-C (128 + SIGINT)


def _run_all(names: list[str], targets: list, graph, args, cb) -> tuple[list[Row], bool]:
    """Every solver at every target: (rows, interrupted). Ctrl-C keeps the rows finished (and
    the row of a solver that stopped with its best plan so far, `auto`) and ends the loop."""
    rows: list[Row] = []
    try:
        for target in targets:
            for n in names:
                rows.append(_run_one(n, graph, target, args, cb))
                if rows[-1].plan is not None and rows[-1].plan.solver.facts.get("interrupted"):
                    return rows, True
            split = _run_split(graph, target, args, cb)
            if split is not None:
                rows.append(split)
    except KeyboardInterrupt:
        return rows, True
    return rows, False


SPLIT_ROW = "auto+split"  # the row of `auto` planning the split model


def _run_split(graph, target, args, cb) -> Row | None:
    """`auto` on the model split in row stripes (planner/splitting.py), next to the unsplit
    rows, when --split auto and the objective needs a split (TFLite and ONNX models); None otherwise."""
    from planner.splitting import needs_split, plan_split

    if args.split != "auto" or not needs_split(graph, target, args.objective):
        return None
    timer = Timer()
    opts = _options(args, cb)
    try:
        plan = plan_split(
            lambda g, t, o: solve_for_target("auto", g, t, o), graph, target, opts, "auto", args.max_overhead / 100
        )
    except (DoesNotFit, CliError) as e:
        return Row(SPLIT_ROW, target.budget, None, timer.elapsed, f"does not fit: {e}")
    if not plan.transforms:
        return Row(SPLIT_ROW, target.budget, None, timer.elapsed, "no split lowers the plan")
    extra = plan.solver.facts.get("split", {}).get("mac_overhead", 0.0)
    how = "; ".join(
        f"ops {d['ops'][0]}-{d['ops'][-1]} in {d['stripes']} {'chunks' if d.get('split') == 'channels' else 'stripes'}"
        for d in plan.transforms[-1]["splits"]
    )
    note = f"for this split ({how}, +{extra:.1%} MACs; the bound is of the split model)"
    return Row(SPLIT_ROW, target.budget, plan, timer.elapsed, note)


def _solvers_and_targets(args, base_target) -> tuple[list[str], list]:
    """The solvers to run (default: the no-spill ones, or auto + the spill ones for a sweep)
    and the targets (one per --budgets entry, else the one the flags describe)."""
    if args.budgets is not None:
        try:
            budgets = [parse_size(b) for b in args.budgets.split(",") if b.strip()]
        except TargetError as e:
            raise CliError(f"--budgets: {e}") from None
        if not budgets:
            raise CliError("--budgets is empty: give comma-separated budgets, e.g. 64KiB,128KiB")
        names = _names(args) or ["auto"] + [s.name for s in SOLVERS.values() if s.spills]
        targets = [base_target.with_budget(b) for b in budgets]
    else:
        names = _names(args) or [s.name for s in SOLVERS.values() if not s.spills]
        targets = [base_target]
    for n in names:
        if n not in SOLVERS:
            raise CliError(f"unknown solver {n!r}{did_you_mean(n, SOLVERS)}; available: {', '.join(SOLVERS)}")
    return names, targets


def _names(args) -> list[str]:
    """--solvers as a list (empty when not given); an empty list or name is refused."""
    if args.solvers is None:
        return []
    names = [n.strip() for n in args.solvers.split(",")]
    if not any(names) or not all(names):
        raise CliError(f"--solvers {args.solvers!r}: give comma-separated solver names, e.g. greedy,auto")
    return names


def _lower_bound(graph, target, names: list[str], rows: list[Row]) -> int:
    """The bound every row is held against."""
    # solver bounds hold for no-spill plans (TFLM lifetimes); a spill plan may store an output
    # and free it early, so next to spill solvers only the working-set bound is valid
    # (a split plan's bound is of the split model: the model as imported has the higher one)
    spilling = any(SOLVERS[n].spills for n in names)
    arena_bounds = [
        r.plan.solver.bound for r in rows if r.plan and r.plan.solver.objective == "arena" and r.solver != SPLIT_ROW
    ]
    return max([working_set_bound(graph, target)] + ([] if spilling else arena_bounds))


def _dicts(rows: list[Row], lower: int, extra: dict | None) -> list[dict]:
    """One dict per row (the JSON / CSV / table rows), then TFLM's own row if there is one."""
    # "vs best" compares solvers at the same budget: a sweep has one best per budget
    best_at: dict[int | None, int] = {}
    for r in rows:
        if r.plan:
            a = r.plan.metrics.arena_bytes
            best_at[r.budget_bytes] = min(a, best_at.get(r.budget_bytes, a))
    dicts = [r.as_dict(lower, best_at.get(r.budget_bytes)) for r in rows]
    if extra:  # only without --budgets: every row shares the one target
        best_arena = min(best_at.values(), default=None)
        head = extra["arena_bytes"]
        extra["vs_lower_bound"] = round(head / lower, 4) if head and lower else None
        extra["vs_best"] = round(head / best_arena, 4) if head and best_arena else None
        dicts.append(extra)
    return dicts


def _write_files(args, graph, rows: list[Row], dicts: list[dict], lower: int) -> list[str]:
    """--csv and --plot; the paths written (no figure when no plan fits: nothing to draw)."""
    written = []
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(dicts[0]))
            w.writeheader()
            w.writerows(dicts)
        written.append(args.csv)
    if args.plot:
        from planner.plots import compare_figure, sweep_figure

        if args.budgets:
            sweep_figure(dicts, args.plot, f"{graph.name}: spill traffic vs L1 budget")
            written.append(args.plot)
        else:
            ok = [(r.solver, r.plan) for r in rows if r.plan]
            if ok:
                best = min(ok, key=lambda x: (x[1].metrics.arena_bytes, x[1].metrics.traffic_bytes))
                compare_figure(ok if args.solvers else _against_tflm(best), best, args.plot, lower)
                written.append(args.plot)
    return written


TFLM_BASELINE = "TFLM: own order, first-fit"


def _against_tflm(best: tuple[str, Plan]) -> list[tuple[str, Plan]]:
    """The default figure's plans: the best one against what TensorFlow Lite Micro does with
    the same graph (the model's own order, first-fit, no shared bytes: `given-firstfit` with
    `--share none`), the comparison a user asks first; `--solvers` draws the solvers asked."""
    from planner.html_report import baseline_plan

    base = baseline_plan(best[1])
    return [best] + ([(TFLM_BASELINE, base)] if base is not None else [])


def _print_table(args, graph, dicts: list[dict], lower: int, written: list[str]) -> None:
    t = Table(title=f"{graph.name}: {len(graph.ops)} ops, lower bound {format_bytes(lower)} ({lower} B)")
    cols = ["solver", "budget", "arena", "peak", "vs lower bound", "vs best", "traffic", "status", "time"]
    for c in cols:
        t.add_column(c, justify="left" if c in ("solver", "status") else "right")
    notes: list[str] = []
    for d in dicts:
        t.add_row(
            d["solver"],
            format_bytes(d["budget_bytes"]) if d["budget_bytes"] else "-",
            _b(d["arena_bytes"]),
            _b(d["peak_l1_bytes"]),
            f"{d['vs_lower_bound']:.3f}×" if d["vs_lower_bound"] else "-",
            f"{d['vs_best']:.3f}×" if d["vs_best"] else "-",
            _b(d["traffic_bytes"]),
            _status_cell(d, notes),
            f"{d['wall_s']:.2f} s",
        )
    con = console()
    con.print(t)
    for note in notes:
        con.print(note, highlight=False, soft_wrap=True)
    for path in written:
        con.print(f"written {path}")
    if args.plot and args.plot not in written:
        con.print(f"no figure written to {args.plot}: no plan fits the budget", highlight=False)


NOTE_AFTER = 40  # statuses longer than this keep a short label in the table and a note under it


def _status_cell(d: dict, notes: list[str]) -> str:
    """The status column: the whole first line of the status, or for a long "skipped: why" /
    "unavailable: why" its label and a numbered note (appended to `notes`) with the reason."""
    first = (str(d["status"]).strip().splitlines() or [""])[0]
    label, sep, why = first.partition(": ")
    if len(first) <= NOTE_AFTER or not sep:
        return escape(first)
    notes.append(f"[{len(notes) + 1}] {escape(d['solver'])}: {escape(why)}")
    return f"{escape(label)} [{len(notes)}]"


def _b(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def _tflm_row(args, graph) -> dict | None:
    """For a .tflite model: TFLite Micro's own arena head, measured by running it."""
    path = model_path(args.model) if args.model else None
    if path is None or not str(path).endswith(".tflite"):
        return None
    try:
        from planner.tflm_runtime import tflm_arena_head

        timer = Timer()
        head = tflm_arena_head(str(path))
    except Exception as e:  # noqa: BLE001 - the runtime is optional; say why it is missing
        return {
            "solver": "TFLM (as shipped)",
            "budget_bytes": None,
            "arena_bytes": None,
            "peak_l1_bytes": None,
            "traffic_bytes": None,
            "spill_traffic_bytes": None,
            "status": f"unavailable: {e}",
            "bound": None,
            "wall_s": 0.0,
        }
    return {
        "solver": "TFLM (as shipped)",
        "budget_bytes": None,
        "arena_bytes": head,
        "peak_l1_bytes": None,
        "traffic_bytes": None,
        "spill_traffic_bytes": None,
        "status": "measured",
        "bound": None,
        "wall_s": round(timer.elapsed, 3),
    }
