"""`planner plan`: plan one model, print the summary, write the plan file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rich.console import Console

from planner.commands.common import (
    CliError,
    add_model_args,
    add_solver_args,
    add_split_args,
    add_target_args,
    check_writable,
    fusion_note,
    graph_notes,
    load_graph,
    make_target,
    note,
    solve_for_target,
    time_left,
)
from planner.models.fuse import fusion_of
from planner.models.tflite import tflm_gaps
from planner.report import console, live_progress, summary_dict, summary_table
from planner.solvers.base import SolveOptions
from planner.solvers.registry import SOLVERS
from planner.suggest import did_you_mean


def register(sub) -> None:
    """Add `planner plan` to the subcommands."""
    p = sub.add_parser("plan", help="plan a model's memory (order, arena layout, spills)")
    add_model_args(p)
    add_target_args(p)
    p.add_argument("--solver", default="auto", help="solver name (see `planner solvers`; default auto)")
    add_solver_args(p)
    add_split_args(p)
    p.add_argument(
        "-o",
        "--output",
        help="plan file to write (default: <model>.plan.json); `-o -` writes the plan JSON to stdout and the "
        "summary (with --json: the summary JSON) to stderr",
    )
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object (on stderr with `-o -`)")
    p.add_argument("--quiet", action="store_true", help="no live progress")
    p.set_defaults(func=run)


def run(args) -> int:
    """Plan, write the plan file, print the summary (or --json)."""
    if args.solver not in SOLVERS:
        hint = did_you_mean(args.solver, SOLVERS)
        raise CliError(f"unknown solver {args.solver!r}{hint}; available: {', '.join(SOLVERS)}")
    check_writable(args.output, "plan file")
    target = make_target(args)
    graph = load_graph(args, target)
    gaps = tflm_gaps(graph)
    for gap in gaps:
        note(f"warning: {gap}")
    from planner.solvers.cpsat import interruptible

    with interruptible(), live_progress(not (args.quiet or args.json), time_limit=args.time_limit) as cb:
        opts = SolveOptions(
            time_limit=time_left(args.time_limit, len(graph.ops)),
            workers=args.workers,
            seed=args.seed,
            objective=args.objective,
            progress=cb,
        )
        try:
            from planner.splitting import plan_split

            plan = plan_split(
                lambda g, t, o: solve_for_target(args.solver, g, t, o),
                graph,
                target,
                opts,
                args.split,
                args.max_overhead / 100,
            )
        except KeyboardInterrupt:
            print("planner: interrupted: no plan yet (Ctrl-C came before the first plan was made)", file=sys.stderr)
            return INTERRUPTED
    plan = with_tflm_baseline(plan, graph)
    out = write_plan(plan, args.output or f"{graph.name}.plan.json")
    if plan.solver.facts.get("interrupted"):  # after the output, last on stderr (cli.main prints notes)
        note(f"interrupted: best plan so far written to {'stdout' if out == STDOUT else out}")
    # with `-o -` stdout carries the plan alone, so that it can be piped; the summary goes to stderr
    to_stdout = out == STDOUT
    where = "stdout" if to_stdout else str(Path(out))
    if args.json:
        d = summary_dict(plan, where)
        d["transforms"] = plan.transforms
        fused = fusion_note(graph)
        d["notes"] = d["notes"] + graph_notes(graph) + ([fused] if fused else []) + gaps
        stream = sys.stderr if to_stdout else sys.stdout
        json.dump(d, stream)
        stream.write("\n")
    else:
        con = Console(stderr=True, width=None if sys.stderr.isatty() else 140) if to_stdout else console()
        con.print(summary_table(plan, where))
        record = fusion_of(graph)
        if record is not None:
            con.print(record.summary(), highlight=False, soft_wrap=True)
    return INTERRUPTED if plan.solver.facts.get("interrupted") else 0


def with_tflm_baseline(plan, graph=None):
    """The plan with the fact `tflm_baseline_arena`: the arena of the model's own order with
    TensorFlow Lite Micro's first-fit and no shared bytes (`given-firstfit`, `--share none`) on
    the same target, the number a user compares with first. A heuristic: cheap next to the
    solve; recorded so that `show` prints it without planning again. `graph`: the model as imported, when the plan is of a
    transformed (split) graph: the baseline is always TFLM on the user's model."""
    from dataclasses import replace

    from planner.html_report import baseline_plan
    from planner.report import BASELINE_FACT
    from planner.simulate import with_solver

    base = baseline_plan(plan if graph is None else replace(plan, graph=graph))
    if base is None:
        return plan
    facts = {**plan.solver.facts, BASELINE_FACT: base.metrics.arena_bytes}
    return with_solver(plan, replace(plan.solver, facts=facts))


STDOUT = "-"
INTERRUPTED = 130  # the shell's status for a command stopped by Ctrl-C (128 + SIGINT)


def write_plan(plan, out: str) -> str:
    """Write the plan file to `out` (``-``: to stdout); the path written."""
    if out == STDOUT:
        sys.stdout.write(plan.to_json() + "\n")
        sys.stdout.flush()
        return out
    check_writable(out, "plan file")
    try:
        plan.write(out)
    except OSError as e:
        raise CliError(f"cannot write plan file {out}: {e.strerror or e}") from None
    return out
