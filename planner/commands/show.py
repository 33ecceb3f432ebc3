"""`planner show`: print a plan file's summary after replaying it in the simulator."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict

from planner.bounds import working_set_bound
from planner.commands.common import CliError
from planner.plan import read_plan
from planner.report import console, summary_dict, summary_table
from planner.simulate import simulate


def register(sub) -> None:
    """Add `planner show` to the subcommands."""
    p = sub.add_parser("show", help="re-check a plan file with the simulator and print its summary")
    p.add_argument("plan", help="plan file (planner.plan v1 JSON)")
    p.add_argument("--stages", action="store_true", help="also list every stage")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    """Replay a plan file; exit 1 if it breaks a rule or its metrics are not the replay's."""
    plan = read_plan(args.plan)
    sim = simulate(plan.graph, plan.target, plan.stages)
    if sim.violations:
        raise CliError(f"plan {args.plan} is invalid: {'; '.join(sim.violations[:5])}", 1)
    sim.metrics.lower_bound_bytes = max(working_set_bound(plan.graph, plan.target), plan.solver.bound)
    claimed = asdict(plan.metrics)
    measured = asdict(sim.metrics)
    diffs = {
        k: (claimed[k], measured[k])
        for k in measured
        if k in claimed and claimed[k] != measured[k] and k != "lower_bound_bytes"
    }
    plan.metrics = sim.metrics
    if args.json:
        d = summary_dict(plan, args.plan)
        d["valid"] = True
        d["metric_mismatches"] = {k: {"file": a, "simulated": b} for k, (a, b) in diffs.items()}
        json.dump(d, sys.stdout)
        sys.stdout.write("\n")
    else:
        con = console()
        con.print(summary_table(plan, title=f"{args.plan} (valid: re-checked by the simulator)"))
        if args.stages:
            for i, s in enumerate(plan.stages):
                con.print(
                    f"{i:5d}  {s.kind} {s.name}  " + (f"@{s.offset}" if s.kind == "L" else str(s.offsets or "")),
                    highlight=False,
                )
    if diffs:
        msg = ", ".join(f"{k}: file says {a}, simulator measures {b}" for k, (a, b) in diffs.items())
        raise CliError(f"metrics in the file do not match the replay: {msg}", 1)
    return 0
