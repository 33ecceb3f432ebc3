"""`auto`: the answer users get by default.

Heuristics first (an instant, valid answer), then the exact order model warm-started from
the best heuristic with the remaining time, then the layout; the best plan the simulator
accepts wins, marked optimal only when proven. Below the no-spill arena it hands over to
the spill solvers and returns the plan with the least traffic that fits.
"""

from __future__ import annotations

from planner.solvers.base import DoesNotFit, Progress, SolveOptions, Timer, nospill_plan
from planner.solvers.bounds import working_set_bound
from planner.solvers.heuristic import best_heuristic

from planner.graph import Graph
from planner.plan import Plan, SolverInfo
from planner.target import Target

# Past this many ops the monolithic order model rarely closes its gap within a minute.
EXACT_OP_LIMIT = 1200


def _nospill_candidates(graph: Graph, target: Target, options: SolveOptions, timer: Timer) -> Plan:
    """Best no-spill plan (ignoring the budget), proven optimal where the solver can."""
    unbounded = target.with_budget(None)
    arena, order, oname, lname, offs = best_heuristic(graph, unbounded)
    options.report(Progress("auto", arena, working_set_bound(graph, target), timer.elapsed, f"heuristic {oname}"))
    best = nospill_plan(
        graph, unbounded, order, offs, SolverInfo("auto", "heuristic", 0, 0.0, {"order": oname, "layout": lname})
    )
    remaining = options.time_limit - timer.elapsed
    if remaining > 0.5 and len(graph.ops) <= EXACT_OP_LIMIT and len(graph.ops) > 1:
        from planner.solvers.cpsat_order import solve_cpsat_order

        sub = SolveOptions(
            time_limit=remaining,
            workers=options.workers,
            seed=options.seed,
            objective=options.objective,
            progress=options.progress,
            extra={"hint_order": order},
        )
        try:
            exact = solve_cpsat_order(graph, unbounded, sub)
        except DoesNotFit:
            exact = None
        if exact is not None:
            if exact.metrics.arena_bytes <= best.metrics.arena_bytes:
                best = exact
            best.solver.bound = max(best.solver.bound, exact.solver.bound)
    return best


def solve_auto(graph: Graph, target: Target, options: SolveOptions | None = None) -> Plan:
    options = options or SolveOptions()
    timer = Timer()
    best = _nospill_candidates(graph, target, options, timer)
    budget = target.l1_bytes
    if budget is None or best.metrics.arena_bytes <= budget:
        # re-lower under the real target so the plan file carries the user's budget
        plan = nospill_plan(
            graph,
            target,
            best.order,
            _offsets(best),
            SolverInfo(
                "auto",
                best.solver.status,
                best.solver.bound,
                0.0,
                {**best.solver.options, "inner": best.solver.name, **options.to_dict()},
            ),
        )
        plan.solver.wall_s = timer.elapsed
        return plan
    return _spill(graph, target, options, timer, best)


def _offsets(plan: Plan) -> dict[str, int]:
    offs: dict[str, int] = {}
    for s in plan.stages:
        if s.kind == "L":
            offs[s.name] = s.offset
        elif s.kind == "R":
            offs.update(s.offsets or {})
    return offs


def _spill(graph: Graph, target: Target, options: SolveOptions, timer: Timer, nospill: Plan) -> Plan:
    from planner.solvers.registry import SOLVERS

    spillers = [s for s in SOLVERS.values() if s.spills]
    if not spillers:
        raise DoesNotFit(target.l1_bytes, nospill.metrics.arena_bytes, working_set_bound(graph, target))
    best: Plan | None = None
    failure: DoesNotFit | None = None
    # heuristics first, exact last with whatever time is left
    for spec in sorted(spillers, key=lambda s: s.exact):
        remaining = options.time_limit - timer.elapsed
        if spec.exact and remaining < 1.0:
            continue
        sub = SolveOptions(
            time_limit=max(remaining, 0.1),
            workers=options.workers,
            seed=options.seed,
            objective="traffic",
            progress=options.progress,
            extra={"hint_plan": best} if best is not None else {},
        )
        try:
            p = spec.load()(graph, target, sub)
        except DoesNotFit as e:
            failure = e if failure is None or e.needed < failure.needed else failure
            continue
        if best is None or (p.metrics.traffic_bytes, p.metrics.arena_bytes) < (
            best.metrics.traffic_bytes,
            best.metrics.arena_bytes,
        ):
            best = p
    if best is None:
        if failure is not None:
            raise failure
        raise DoesNotFit(
            target.l1_bytes,
            nospill.metrics.arena_bytes,
            working_set_bound(graph, target),
            how="with or without spilling",
        )
    best.solver = SolverInfo(
        "auto",
        best.solver.status,
        best.solver.bound,
        timer.elapsed,
        {**best.solver.options, "inner": best.solver.name, **options.to_dict()},
    )
    return best
