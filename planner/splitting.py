"""`--split`: plan a model computed in row stripes (or output-channel chunks) where that
lowers what it needs.

The glue between the transformations (planner/models/split.py for TFLite,
planner/models/split_onnx.py for ONNX: which regions can be split, the split model) and the
search (solvers/split_search.py: which splits to make), which the solvers may not import;
it dispatches on the format the graph was imported from. `plan_split` is what `planner plan` and `planner compare` call
in place of the solver: with ``--split none``, or for other formats, it is the solver
itself (today's numbers exactly); with ``auto`` it splits only when the objective needs
it -- the budget is not met by the model as imported (``--objective traffic``, the
default: fit without spilling if a split can) or the smallest peak is asked for
(``--objective peak``) -- and returns the split plan only when it beats the unsplit one
(both solved, each with a share of the time).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from planner.graph import Graph
from planner.models.split import (
    SPLIT_METHODS,
    Estimator,
    StripeSplit,
    load_split,
    model_regions,
    region_problem,
)
from planner.plan import Plan
from planner.simulate import with_solver
from planner.solvers.base import DoesNotFit, Progress, SolveOptions, Timer
from planner.solvers.portfolio import choose_sharing
from planner.solvers.split_search import DEFAULT_MAX_OVERHEAD, MAX_REGION_OPS, Split, SplitChoice, choose_split
from planner.target import Target

__all__ = ["SPLIT_METHODS", "DEFAULT_MAX_OVERHEAD", "plan_split", "split_choice"]

# shares of the time limit: the search, then the split graph's solve; the unsplit solve gets the rest
SEARCH_SHARE = 0.3
SPLIT_SOLVE_SHARE = 0.5


SPLIT_FORMATS = ("tflite", "onnx")  # the formats a split can be made of


def needs_split(graph: Graph, target: Target, objective: str) -> bool:
    """Whether the objective asks for less than the model as imported gives: the smallest
    peak, or a budget its no-spill heuristic plan misses (TFLite and ONNX graphs only)."""
    src = graph.source
    if src is None or src.format not in SPLIT_FORMATS or not src.path:
        return False
    if objective == "peak":
        return True
    return target.budget is not None and choose_sharing(graph, target.with_budget(None), None)[2].arena > target.budget


def split_choice(
    graph: Graph,
    target: Target,
    objective: str,
    max_overhead: float = DEFAULT_MAX_OVERHEAD,
    time_limit: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> SplitChoice:
    """The splits the search keeps for `graph`, a TFLite or ONNX graph whose objective needs
    one (`needs_split`: the caller asks first, `plan_split` does)."""
    goal = target.budget if objective != "peak" else None
    if graph.source.format == "onnx":
        regions, apply, estimate = _onnx_search(graph, target)
    else:
        regions, apply, estimate = _tflite_search(graph, target)
    return choose_split(
        graph,
        target,
        regions,
        apply,
        estimate,
        max_overhead=max_overhead,
        goal=goal,
        time_limit=time_limit,
        progress=progress,
    )


def _tflite_search(graph: Graph, target: Target) -> tuple[list, Callable, Callable]:
    """(regions, apply, estimate) of a TFLite graph for the search (planner/models/split.py)."""

    def ours(splits: Sequence[Split]) -> list[StripeSplit]:
        # stripe slots at the arena's alignment, so that every stripe is written in place
        return [StripeSplit(s.region, s.stripes, s.cache, s.same, align=max(target.alignment, 1)) for s in splits]

    def apply(splits: Sequence[Split], where: Path | None) -> Graph:
        return load_split(graph, ours(splits), where)

    def estimate(splits: Sequence[Split]) -> tuple[int, tuple[int, ...]]:
        mine = ours(splits)
        for sp in mine:
            why = region_problem(est.m, sp.region, sp.stripes)
            if why:
                raise ValueError(why)
        e = est.estimate(mine)
        return e.extra_macs, e.region_peak

    est = Estimator(graph, weights_in_l1=target.weights == "load")
    return model_regions(graph, MAX_REGION_OPS), apply, estimate


def _onnx_search(graph: Graph, target: Target) -> tuple[list, Callable, Callable]:
    """(regions, apply, estimate) of an ONNX graph for the search (planner/models/split_onnx.py):
    halos are always computed again and every op computes exactly its rows (the other modes
    are refused as invalid)."""
    from planner.models import split_onnx

    def ours(splits: Sequence[Split]) -> list:
        if any(s.cache or not s.same for s in splits):
            # each stripe already computes exactly its rows (explicit pads): one mode only
            raise ValueError("ONNX splits compute their halo rows again, each op on exactly its rows")
        return [split_onnx.OnnxSplit(s.region, s.stripes) for s in splits]

    def apply(splits: Sequence[Split], where: Path | None) -> Graph:
        return split_onnx.load_split(graph, ours(splits), where)

    def estimate(splits: Sequence[Split]) -> tuple[int, tuple[int, ...]]:
        return split_onnx.estimate(model, ours(splits), weights_in_l1=target.weights == "load")

    model = split_onnx.structure(graph)
    return split_onnx.regions(model, MAX_REGION_OPS), apply, estimate


def plan_split(
    solve: Callable[[Graph, Target, SolveOptions], Plan],
    graph: Graph,
    target: Target,
    options: SolveOptions,
    method: str = "auto",
    max_overhead: float = DEFAULT_MAX_OVERHEAD,
) -> Plan:
    """`solve(graph, target, options)`, or with ``method="auto"`` the better of that and the
    plan of the split graph the search chose (module docstring); a split plan's facts carry
    ``split`` (the search's figures)."""
    if method == "none" or not needs_split(graph, target, options.objective):
        return solve(graph, target, options)
    timer, limit = Timer(), options.time_limit

    def share(fraction: float) -> SolveOptions:
        if limit is None:
            return options
        return replace(options, time_limit=max(fraction * (limit - timer.elapsed), 0.1))

    report = _reporter(options, timer)
    choice = split_choice(
        graph, target, options.objective, max_overhead, None if limit is None else SEARCH_SHARE * limit, report
    )
    if not choice.splits:
        return solve(graph, target, options)
    try:
        split_plan = solve(choice.graph, target, share(SPLIT_SOLVE_SHARE / (1 - SEARCH_SHARE)))
    except DoesNotFit:
        return solve(graph, target, share(1.0))  # the unsplit plan, or why the model does not fit
    try:
        plain = solve(graph, target, share(1.0))
    except DoesNotFit:
        plain = None  # only the split model fits the budget
    if plain is not None and plain.metrics.arena_bytes <= split_plan.metrics.arena_bytes:
        return plain
    split_facts = choice.facts()
    # optimal over what was searched: this split's plan proven, and every other split set
    # planned (and no split) proven to need at least as much without spilling
    unsplit_bound = plain.solver.bound if plain is not None and plain.solver.objective == "arena" else 0
    proven = (
        split_plan.solver.status == "optimal"
        and split_plan.solver.objective == "arena"
        and not split_plan.metrics.spill_traffic_bytes
        and (plain is None or not plain.metrics.spill_traffic_bytes)
        and choice.proven_best(split_plan.metrics.arena_bytes, unsplit_bound)
    )
    split_facts["proven_best_of"] = len([s for s in choice.bounds if s]) + 1 if proven else None
    facts = {**split_plan.solver.facts, "split": split_facts}
    if plain is not None:
        facts["unsplit_arena"] = plain.metrics.arena_bytes
    return with_solver(split_plan, replace(split_plan.solver, facts=facts))


def _reporter(options: SolveOptions, timer: Timer) -> Callable[[str], None] | None:
    """Progress lines of the search, through the solver's progress callback when it has one."""
    cb = options.progress
    if cb is None:
        return None
    return lambda text: cb(Progress("split", None, None, timer.elapsed, text))
