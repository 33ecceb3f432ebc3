"""`planner report PLAN [-o plan.html]`: one self-contained HTML page to share a plan."""

from __future__ import annotations

from pathlib import Path

from planner.commands.common import CliError
from planner.plan import PlanFormatError, read_plan
from planner.simulate import PlanError, finalize


def register(sub) -> None:
    """Add `planner report` to the subcommands."""
    p = sub.add_parser(
        "report", help="write a self-contained HTML page of a plan (summary, timeline, arena map, tables)"
    )
    p.add_argument("plan", help="plan file (planner.plan JSON)")
    p.add_argument("-o", "--output", help="HTML file to write (default: the plan file's name with .html)")
    p.set_defaults(func=run)


def run(args) -> int:
    """Re-check the plan in the simulator and write the page."""
    from planner.html_report import write_report

    try:
        plan = finalize(read_plan(args.plan))
    except PlanFormatError as e:
        raise CliError(str(e)) from None
    except PlanError as e:
        raise CliError(f"plan {args.plan} is invalid: {e}", 1) from None
    out = Path(args.output) if args.output else Path(args.plan).with_suffix(".html")
    try:
        write_report(plan, str(out))
    except OSError as e:
        raise CliError(f"cannot write {out}: {e.strerror}") from None
    print(f"wrote {out} (self-contained HTML: open it in any browser)")
    return 0
