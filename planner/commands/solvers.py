"""`planner solvers`: list the solvers (and board presets)."""

from __future__ import annotations

from rich.table import Table

from planner.report import console
from planner.solvers.registry import SOLVERS
from planner.target import PRESETS, format_bytes


def register(sub) -> None:
    """Add `planner solvers` to the subcommands."""
    p = sub.add_parser("solvers", help="list solvers and board presets")
    p.set_defaults(func=run)


def run(args) -> int:
    """Print the solver registry and the board presets."""
    t = Table(title="solvers")
    for c in ("name", "exact", "spills", "description"):
        t.add_column(c)
    for s in SOLVERS.values():
        t.add_row(s.name, "yes" if s.exact else "", "yes" if s.spills else "", s.description)
    b = Table(title="targets (--target)")
    for c in ("name", "L1", "LLB", "weights", "source"):
        b.add_column(c)
    for p in PRESETS.values():
        b.add_row(p.name, format_bytes(p.budget), p.llb_text(), p.weights, p.source)
    con = console()
    con.print(t)
    con.print(b)
    return 0
