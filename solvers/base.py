"""What every solver shares: options, the does-not-fit error, and turning an order plus a
layout into a checked Plan. A solver is `solve(graph, target, options) -> Plan`.

    >>> from planner.models.generators import chain
    >>> from planner.solvers.registry import get_solver
    >>> from planner.target import get_target
    >>> plan = get_solver("greedy")(chain(5), get_target("unbounded"), SolveOptions(time_limit=1))
    >>> plan.metrics.arena_bytes > 0
    True
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace

from planner.bounds import working_set_bound
from planner.graph import Graph
from planner.plan import Plan, SolverInfo, Status
from planner.simulate import PlanError, finalize
from planner.solvers.lowering import Interval, live_intervals, lower
from planner.solvers.objectives import OBJECTIVES, Objective  # noqa: F401 - re-exported
from planner.target import Target, format_bytes


@dataclass
class Progress:
    """A progress report from a long-running solver (drives the live display)."""

    solver: str
    incumbent: int | None
    bound: int | None
    elapsed_s: float
    note: str = ""


@dataclass(frozen=True)
class SolveOptions:
    """How long and how to search, the same for every solver.

    The common part (time limit, CP-SAT workers, seed, objective) is what users set; the
    knobs below it belong to single solvers and keep their defaults unless a test or an
    experiment wants otherwise. `hint` is a plan to start from: solvers that take one
    never return anything worse than it (the portfolio passes its best so far).
    """

    time_limit: float = 30.0
    workers: int = 2
    seed: int = 0
    objective: Objective = "traffic"
    progress: Callable[[Progress], None] | None = field(default=None, repr=False, compare=False)
    hint: Plan | None = field(default=None, repr=False, compare=False)
    # -- knobs of single solvers ----------------------------------------------------------
    deterministic: bool = False  # CP-SAT: interleaved workers, deterministic time (cpsat.make_solver)
    order_share: float = 0.6  # cpsat-order, dp: share of the limit for the order (the rest: layout)
    max_ops: int = 60  # cpsat-joint refuses larger graphs
    state_limit: int = 2_000_000  # dp: states before it gives up
    lookahead: int = 3  # spill-largest: "not needed soon" means not within this many ops
    horizon: int | None = None  # cpsat-stage: steps (default: the hint's, tight)
    slack: int = 0  # cpsat-stage: steps added to the hint's
    max_cells: int | None = None  # cpsat-stage: steps × tensors it may build (default: by time)
    joint_max_vars: int = 20000  # cpsat-spill: position Booleans of the joint model at most
    stall: int | None = None  # cpsat-spill: local-search moves without gain (default 60 + ops)

    def params(self) -> dict:
        """What a plan records of its options: the common part and every knob that differs
        from its default (progress and hint are not parameters)."""
        out: dict = {"time_limit": self.time_limit, "workers": self.workers, "seed": self.seed}
        out["objective"] = self.objective
        default = SolveOptions()
        for f in fields(self):
            if f.name in out or f.name in ("progress", "hint"):
                continue
            v = getattr(self, f.name)
            if v != getattr(default, f.name):
                out[f.name] = v
        return out

    def with_time(self, time_limit: float) -> SolveOptions:
        """The same options with another time limit (a phase's share of the whole)."""
        return replace(self, time_limit=time_limit)

    def report(self, p: Progress) -> None:
        """Pass a progress report on, if anyone listens."""
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


def spilling_how(target: Target, how: str = "even with spilling") -> str:
    """How a "does not fit" plan was sought: `how` (with spilling) on a target that can
    spill, "without spilling" and why on one without an LLB (``llb_bytes == 0``): never
    "even with spilling" where nothing can be spilled."""
    if target.can_spill:
        return how
    return f"without spilling ({target.name} has no LLB: nothing can be spilled)"


def over_llb(e: PlanError, target: Target) -> bool:
    """Whether the simulator refused a plan only because its stored tensors need more LLB
    than `target` has (a spill candidate to drop, not a bug)."""
    return bool(target.llb_bytes) and bool(e.violations) and all("LLB needs" in v for v in e.violations)


def finalize_within_llb(plan: Plan) -> Plan | None:
    """The simulated plan, or None when it needs more LLB than its target has (every other
    broken rule still raises PlanError: that is a bug in the solver)."""
    try:
        return finalize(plan)
    except PlanError as e:
        if over_llb(e, plan.target):
            return None
        raise


def aligned_intervals(graph: Graph, target: Target, order: Sequence[str]) -> list[Interval]:
    """The no-spill residencies of `order` with aligned sizes (what layouts pack)."""
    return [Interval(iv.key, iv.start, iv.end, target.align(iv.size)) for iv in live_intervals(graph, target, order)]


def arena_of_layout(graph: Graph, intervals: Sequence[Interval], offsets: Mapping[str, int]) -> int:
    """The arena the simulator will measure: top of the highest residency in raw bytes."""
    return max((offsets[iv.key] + graph.size(iv.key) for iv in intervals), default=0)


class Timer:
    """Seconds since construction: every solver measures its wall time against its limit."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    @property
    def elapsed(self) -> float:
        """Seconds since the timer started."""
        return time.perf_counter() - self.t0


def nospill_plan(
    graph: Graph, target: Target, order: Sequence[str], offsets: Mapping[str, int], info: SolverInfo
) -> Plan:
    """Lower, check budget, simulate. Raises DoesNotFit when the arena exceeds the budget.

    The bound `info` carries is raised to the working-set bound, which holds for every plan."""
    ivs = live_intervals(graph, target, order)
    arena = arena_of_layout(graph, ivs, offsets)
    if target.budget is not None and arena > target.budget:
        raise DoesNotFit(target.budget, arena, working_set_bound(graph, target))
    info = replace(info, bound=max(info.bound, working_set_bound(graph, target)))
    return finalize(Plan(graph, target, lower(graph, target, order, offsets), info))


def gap(value: int, bound: int) -> float:
    """Relative optimality gap of `value` over a proven lower `bound`."""
    return 0.0 if value <= 0 else round((value - bound) / value, 6)


def status_of(value: int, bound: int) -> Status:
    """`optimal` exactly when the value meets the proven bound, else `feasible`."""
    return "optimal" if value <= bound else "feasible"


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
    proven bound, the facts and gap recorded, the plan checked by the simulator."""
    bound = min(bound, arena)
    info = SolverInfo(
        name,
        status_of(arena, bound),
        bound,
        timer.elapsed,
        options.params(),
        {"gap": gap(arena, bound), **facts},
    )
    return nospill_plan(graph, target, order, offsets, info)
