"""`planner zoo`: every model a name plans, whether it is installed here, and how."""

from __future__ import annotations

import json
import sys

from rich.table import Table

from planner.report import console


def register(sub) -> None:
    """Add `planner zoo` to the subcommands."""
    p = sub.add_parser("zoo", help="list the zoo: every model name `plan` takes, installed or not (install line)")
    p.add_argument("--json", action="store_true", help="print the list as one JSON object")
    p.set_defaults(func=run)


def _rows() -> list[dict]:
    """One row per zoo model: no model is imported (op counts from `models/zoo_facts.py`)."""
    from planner.models.zoo import ZOO, availability
    from planner.models.zoo_facts import OPS

    rows = []
    for name, e in ZOO.items():
        where = availability(name)
        rows.append(
            {"name": name, "format": e.format, "ops": OPS.get(name), "available": where, "about": e.description}
        )
    return rows


GENERATED = [
    ("chain:N[:SEED]", "a chain of N ops"),
    ("sp:N[:SEED]", "a random series-parallel graph of N ops"),
    ("randwire:N[:SEED]", "a RandWire-style random DAG of N ops"),
    ("random:N[:SEED]", "a random DAG of N ops"),
    ("nasnet_a_cifar, nasnet_a_imagenet", "NASNet-A (normal and reduction cells, the paper's wiring)"),
    ("amoebanet_a_cifar, amoebanet_a_imagenet", "AmoebaNet-A cells"),
    ("darts_v2_cifar, darts_v2_imagenet", "DARTS-V2 cells"),
    ("pnasnet5_cifar, pnasnet5_imagenet", "PNASNet-5 cells"),
    ("randwire_ws{8,16,32}_{cifar,imagenet}[:SEED]", "RandWire WS(4, 0.75), 8/16/32 nodes per stage"),
]


def run(args) -> int:
    """Print the zoo (and the generated families)."""
    rows = _rows()
    if args.json:
        json.dump({"models": rows, "generated": [{"name": n, "about": a} for n, a in GENERATED]}, sys.stdout)
        sys.stdout.write("\n")
        return 0
    t = Table(title=f"zoo: {len(rows)} models (plan one with `planner plan NAME`)")
    for c in ("name", "format", "ops", "available", "about"):
        t.add_column(c, justify="right" if c == "ops" else "left")
    for r in rows:
        t.add_row(r["name"], r["format"], str(r["ops"] or "?"), r["available"], r["about"])
    g = Table(title="generated families (seeded, always available)")
    g.add_column("name")
    g.add_column("about")
    for n, a in GENERATED:
        g.add_row(n, a)
    con = console()
    con.print(t)
    con.print(g)
    return 0
