"""`planner show`: print a plan file's summary after replaying it in the simulator."""

from __future__ import annotations

import json
import sys

from planner.commands.common import CliError
from planner.html_report import per_op, per_tensor
from planner.report import console, rows_table, summary_dict, summary_table
from planner.simulate import MetricsMismatch, replay_plan_file


def register(sub) -> None:
    """Add `planner show` to the subcommands."""
    p = sub.add_parser("show", help="re-check a plan file with the simulator and print its summary")
    p.add_argument("plan", help="plan file (planner.plan JSON)")
    p.add_argument("--stages", action="store_true", help="also list every stage")
    p.add_argument("--tensors", action="store_true", help="also a table of every tensor (bytes, offsets, ops, shares)")
    p.add_argument("--ops", action="store_true", help="also a table of every op (memory resident while it runs)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    """Replay a plan file; exit 1 if it breaks a rule or its metrics are not the replay's
    (nothing is printed as "valid" then: the one error line says what is wrong)."""
    r = replay_plan_file(args.plan)
    if r.simulation.violations:
        raise CliError(f"plan {args.plan} is invalid: {'; '.join(r.simulation.violations[:5])}", 1)
    plan = r.plan  # carries the simulator's metrics
    if args.json:
        d = summary_dict(plan, args.plan)
        d["valid"] = True
        d["metrics_match"] = not r.diffs
        d["metric_mismatches"] = {k: {"file": a, "simulated": b} for k, (a, b) in r.diffs.items()}
        json.dump(d, sys.stdout)
        sys.stdout.write("\n")
    elif not r.diffs:
        con = console()
        con.print(summary_table(plan, title=f"{args.plan} (valid: re-checked by the simulator)"))
        if args.stages:
            for i, s in enumerate(plan.stages):
                con.print(
                    f"{i:5d}  {s.kind} {s.name}  " + (f"@{s.offset}" if s.kind == "L" else str(s.offsets or "")),
                    highlight=False,
                )
        if args.tensors:
            con.print(rows_table("tensors", per_tensor(plan)))
        if args.ops:
            con.print(
                rows_table("ops (resident: L1 bytes held while the op runs; own: its inputs and outputs)", per_op(plan))
            )
    if r.diffs:
        raise CliError(str(MetricsMismatch(args.plan, r.diffs)), 1)
    return 0
