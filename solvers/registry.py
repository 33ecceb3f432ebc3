"""The solvers users can name on the command line. Add a line here to plug one in."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from planner.solvers.lifetimes import with_lifetimes
from planner.solvers.storage import with_sharing
from planner.suggest import did_you_mean


@dataclass(frozen=True)
class SolverSpec:
    """A solver users can name: where its function lives and what it can do."""

    name: str
    target: str  # "module:function", imported lazily so `planner solvers` stays instant
    description: str
    exact: bool = False  # can prove optimality
    spills: bool = False  # can plan below the no-spill arena

    def load(self) -> Callable:
        """The solver function (imports its module now, not at start-up)."""
        mod, fn = self.target.split(":")
        return getattr(importlib.import_module(f"planner.solvers.{mod}"), fn)


SOLVERS: dict[str, SolverSpec] = {
    s.name: s
    for s in [
        SolverSpec(
            "auto",
            "portfolio:solve_auto",
            "portfolio: heuristics, then CP-SAT warm-started from the best; spills when over budget",
            exact=True,
        ),
        SolverSpec(
            "given-firstfit",
            "heuristic:solve_given_firstfit",
            "model's own order + TFLite Micro first-fit by size (what TFLM ships)",
        ),
        SolverSpec(
            "given-bestfit", "heuristic:solve_given_bestfit", "model's own order + TFLite best-fit greedy by size"
        ),
        SolverSpec(
            "greedy",
            "heuristic:solve_greedy",
            "XLA-style list schedule (least live memory next) + best layout heuristic",
        ),
        SolverSpec("dfs", "heuristic:solve_dfs", "DFS post-orders + best layout heuristic"),
        SolverSpec("best", "heuristic:solve_best", "every order heuristic × every layout heuristic, best kept"),
        SolverSpec(
            "spill-belady",
            "heuristics.spill:solve_spill_belady",
            "every order heuristic walked under the budget, evicting the furthest next use (Belady)",
            spills=True,
        ),
        SolverSpec(
            "spill-largest",
            "heuristics.spill:solve_spill_largest",
            "every order heuristic walked under the budget, evicting the largest tensor not needed soon",
            spills=True,
        ),
        SolverSpec(
            "spill-cost",
            "heuristics.spill:solve_spill_cost",
            "every order heuristic walked under the budget, evicting what costs least to reload (and store)",
            spills=True,
        ),
        SolverSpec(
            "cpsat-spill",
            "cpsat_spill:solve_cpsat_spill",
            "CP-SAT exact spills for a fixed order (one Boolean per gap), local search over the order",
            exact=True,
            spills=True,
        ),
        SolverSpec(
            "cpsat-stage",
            "cpsat_stage:solve_cpsat_stage",
            "CP-SAT timestep L/R/S/F reference model, hinted by the spill heuristics (small graphs)",
            exact=True,
            spills=True,
        ),
        SolverSpec(
            "cpsat-order",
            "cpsat_order:solve_cpsat_order",
            "CP-SAT minimum-peak order (no spills), then heuristic / CP-SAT layout",
            exact=True,
        ),
        SolverSpec(
            "cpsat-joint",
            "cpsat_joint:solve_joint",
            "CP-SAT joint order + offsets in one model (small graphs, <= 60 ops)",
            exact=True,
        ),
        SolverSpec(
            "dp",
            "dp:solve_dp",
            "Serenity-style exact DP over executed-op sets (small / narrow graphs), then layout",
            exact=True,
        ),
    ]
}


class UnknownSolver(ValueError):
    """A solver name that is not in the registry (the message lists the known ones)."""


def get_solver(name: str) -> Callable:
    """The solver function. Every solver honours `target.share` (solvers/storage.py: it plans
    a storage graph where tensors share bytes); no-spill solvers honour `target.lifetimes`
    (solvers/lifetimes.py); spill solvers and `auto` plan stages directly."""
    if name not in SOLVERS:
        raise UnknownSolver(f"unknown solver {name!r}{did_you_mean(name, SOLVERS)}; available: {', '.join(SOLVERS)}")
    spec = SOLVERS[name]
    if name == "auto":
        return spec.load()
    if spec.spills:
        return with_sharing(spec.load(), spills=True)
    return with_sharing(with_lifetimes(spec.load()))
