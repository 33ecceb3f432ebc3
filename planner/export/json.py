"""Export a plan as the `planner.plan` v1 JSON file (DESIGN §4).

The plan file is the export: it is self-contained (graph + stages + metrics), so this is
`Plan.write` after a simulator check — a file we hand out is always a valid plan.
"""

from __future__ import annotations

from pathlib import Path

from planner.plan import Plan
from planner.simulate import check


def export_json(plan: Plan, path: str | Path) -> None:
    """Write `plan` as its plan file, after the simulator has replayed it (`PlanError` if invalid)."""
    check(plan)
    plan.write(path)
