"""What every solver shares: options, the does-not-fit error, and turning an order plus a
layout into a checked Plan. A solver is `solve(graph, target, options) -> Plan`."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from planner.bounds import working_set_bound
from planner.graph import Graph
from planner.plan import Plan, SolverInfo
from planner.simulate import finalize
from planner.solvers.lowering import Interval, live_intervals, lower
from planner.target import Target, format_bytes


@dataclass
class Progress:
    """A progress report from a long-running solver (drives the live display)."""

    solver: str
    incumbent: int | None
    bound: int | None
    elapsed_s: float
    note: str = ""


@dataclass
class SolveOptions:
    time_limit: float = 30.0
    workers: int = 2
    seed: int = 0
    # traffic: least spill traffic that fits the budget, then the smallest arena (spill only
    # when no plan without spills fits); peak: the smallest arena, spills allowed, then traffic
    objective: str = "traffic"
    progress: Callable[[Progress], None] | None = field(default=None, repr=False)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "time_limit": self.time_limit,
            "workers": self.workers,
            "seed": self.seed,
            "objective": self.objective,
            **self.extra,
        }

    def report(self, p: Progress) -> None:
        if self.progress is not None:
            self.progress(p)


class DoesNotFit(Exception):
    """No plan within the L1 budget: carries the smallest budget that is known to work."""

    def __init__(self, budget: int, needed: int, lower_bound: int, how: str = "without spilling"):
        self.budget, self.needed, self.lower_bound = budget, needed, lower_bound
        super().__init__(
            f"does not fit: budget {format_bytes(budget)} ({budget} B) but the best plan {how} needs "
            f"{format_bytes(needed)} ({needed} B); no plan can use less than {lower_bound} B "
            f"(largest op working set). Retry with --budget {needed}"
        )


def aligned_intervals(graph: Graph, target: Target, order: Sequence[str]) -> list[Interval]:
    return [Interval(iv.key, iv.start, iv.end, target.align(iv.size)) for iv in live_intervals(graph, target, order)]


def arena_of_layout(graph: Graph, intervals: Sequence[Interval], offsets: Mapping[str, int]) -> int:
    """The arena the simulator will measure: top of the highest residency in raw bytes."""
    return max((offsets[iv.key] + graph.size(iv.key) for iv in intervals), default=0)


class Timer:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0


def nospill_plan(
    graph: Graph, target: Target, order: Sequence[str], offsets: Mapping[str, int], info: SolverInfo
) -> Plan:
    """Lower, check budget, simulate. Raises DoesNotFit when the arena exceeds the budget."""
    ivs = live_intervals(graph, target, order)
    arena = arena_of_layout(graph, ivs, offsets)
    if target.budget is not None and arena > target.budget:
        raise DoesNotFit(target.budget, arena, working_set_bound(graph, target))
    info.bound = max(info.bound, working_set_bound(graph, target))
    plan = Plan(graph, target, lower(graph, target, order, offsets), info)
    return finalize(plan)


def gap(value: int, bound: int) -> float:
    """Relative optimality gap of `value` over a proven lower `bound`."""
    return 0.0 if value <= 0 else round((value - bound) / value, 6)


def proven_plan(
    graph: Graph,
    target: Target,
    name: str,
    order: Sequence[str],
    offsets: Mapping[str, int],
    arena: int,
    bound: int,
    timer: Timer,
    options: SolveOptions,
    facts: dict,
) -> Plan:
    """The tail every exact no-spill solver shares: `optimal` only when the arena meets the
    proven bound, the facts and gap in the solver options, the plan checked by the simulator."""
    bound = min(bound, arena)
    status = "optimal" if arena <= bound else "feasible"
    info = SolverInfo(name, status, bound, 0.0, {**options.to_dict(), "gap": gap(arena, bound), **facts})
    plan = nospill_plan(graph, target, order, offsets, info)
    plan.solver.wall_s = timer.elapsed
    plan.solver.options["wall_s"] = round(plan.solver.wall_s, 3)
    return plan
