"""`planner plan`: plan one model, print the summary, write the plan file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from planner.commands.common import (
    CliError,
    add_model_args,
    add_solver_args,
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
    p.add_argument("-o", "--output", help="plan file to write (default: <model>.plan.json)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
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
    with live_progress(not (args.quiet or args.json), time_limit=args.time_limit) as cb:
        opts = SolveOptions(
            time_limit=time_left(args.time_limit, len(graph.ops)),
            workers=args.workers,
            seed=args.seed,
            objective=args.objective,
            progress=cb,
        )
        plan = solve_for_target(args.solver, graph, target, opts)
    out = args.output or f"{graph.name}.plan.json"
    check_writable(out, "plan file")
    try:
        plan.write(out)
    except OSError as e:
        raise CliError(f"cannot write plan file {out}: {e.strerror or e}") from None
    if args.json:
        d = summary_dict(plan, str(Path(out)))
        d["transforms"] = plan.transforms
        fused = fusion_note(graph)
        d["notes"] = d["notes"] + graph_notes(graph) + ([fused] if fused else []) + gaps
        json.dump(d, sys.stdout)
        sys.stdout.write("\n")
    else:
        con = console()
        con.print(summary_table(plan, str(Path(out))))
        record = fusion_of(graph)
        if record is not None:
            con.print(record.summary(), highlight=False, soft_wrap=True)
    return 0
