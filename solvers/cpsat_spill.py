"""`cpsat-spill`: the least spill traffic within the budget, exact for a fixed order and
searched over orders.

The fixed-order model (solvers/spill_gaps.py) solves the spills of one order exactly; when
fragmentation pushes the laid-out arena over the budget it is solved again with aligned
sizes and a capacity lowered by the overflow, and the heuristic walk plan remains as the
fallback, so a returned plan always fits. The joint order + spill model
(solvers/spill_joint.py) proves a bound for every order and proposes orders.

The order matters as much as the evictions (the no-spill-optimal order keeps long-lived
tensors alive, which is exactly what a spill order should avoid), so `solve_cpsat_spill`
scores the order heuristics, beam search and the spill walk's orders with the fixed-order
model and then runs a local search over order moves (an op moved inside the window
between its last predecessor and first successor, biased towards the positions where the
budget binds), each candidate scored by the model itself.

Status ``optimal`` is claimed only for a real optimum of the whole problem: the plan's
traffic meets the joint model's proven bound, or the graph has a single topological order
and the raw fixed-order optimum at the full budget was laid out within it. Otherwise
``feasible``, with ``order_optimal`` in the facts telling whether the spills are optimal
for the returned order.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from planner.graph import Graph
from planner.plan import Plan, SolverInfo, Stage
from planner.simulate import with_solver
from planner.solvers.base import Progress, SolveOptions, Timer
from planner.solvers.heuristics.spill import candidate_plans, check_fits, plan_key
from planner.solvers.reach import Reach
from planner.solvers.spill_gaps import NAME, FixedOrder, SpillResult
from planner.solvers.spill_joint import JointResult, joint_model_size, solve_joint
from planner.target import Target

# the joint order+spill model is built when it has at most this many position Booleans
SMALL_JOINT_VARS = 3000  # below this the joint model runs before the local search too


@dataclass
class OrderSolve:
    """The best plan found for one order, with the fixed-order proof facts."""

    order: list[str]
    plan: Plan | None
    raw: SpillResult | None  # the raw model at full budget (its value is a bound for the order)
    exact: bool = False  # plan's traffic equals the proven optimum of the raw model
    notes: list[str] = field(default_factory=list)


def solve_order(
    graph: Graph,
    target: Target,
    order: Sequence[str],
    options: SolveOptions,
    time_limit: float,
    hint_stages: Sequence[Stage] | None = None,
    cutoff: int | None = None,
) -> OrderSolve:
    """Best laid-out plan for a fixed order: raw model at the full budget, then (if the
    layout overflows) aligned sizes and a capacity lowered by the overflow."""
    timer = Timer()
    fo = FixedOrder(graph, target, order)
    B = target.budget
    assert B is not None
    hint = fo.keep_of_plan(hint_stages) if hint_stages is not None else None
    out = OrderSolve(list(order), None, None)
    raw = fo.solve(B, 0.6 * time_limit, options.workers, options.seed, hint=hint, cutoff=cutoff)
    out.raw = raw
    if raw is None:
        out.notes.append("raw model: no solution")
        return out

    def lay_time() -> float:
        # the CP-SAT layout only runs when the layout heuristics overflow B; it needs > 0.5 s
        return min(2.0, max(0.6, 0.3 * (time_limit - timer.elapsed)))

    plan, arena = fo.plan(raw.keep, options, lay_time())
    if plan is not None:
        out.plan, out.exact = plan, raw.optimal
        return out
    cap = B
    for attempt in range(5):
        left = time_limit - timer.elapsed
        if left < 0.05:
            break
        # first aligned sizes at the full budget, then a capacity lowered by the overflow
        if attempt:
            cap -= max(target.alignment, arena - B)
        res = fo.solve(cap, 0.5 * left, options.workers, options.seed, aligned=True, cutoff=cutoff)
        if res is None:
            out.notes.append(f"aligned model at cap {cap}: no solution")
            break
        plan, arena = fo.plan(res.keep, options, lay_time())
        if plan is not None:
            out.plan = plan
            out.exact = res.optimal and res.traffic == raw.bound and raw.optimal
            return out
    out.notes.append("layout overflowed the budget")
    return out


def _move(order: list[str], graph: Graph, rng: random.Random, focus: Sequence[int] | None) -> list[str] | None:
    """Move one op inside the window between its last predecessor and first successor."""
    n = len(order)
    pos = {o: i for i, o in enumerate(order)}
    for _ in range(200):
        if focus and rng.random() < 0.7:
            c = rng.choice(focus)
            i = max(0, min(n - 1, c + rng.randint(-3, 3)))
        else:
            i = rng.randrange(n)
        o = order[i]
        lo = max((pos[p] for p in graph.dag.predecessors(o)), default=-1) + 1
        hi = min((pos[s] for s in graph.dag.successors(o)), default=n) - 1
        if hi <= lo:
            continue
        j = rng.randint(lo, hi)
        if j == i:
            continue
        new = order[:i] + order[i + 1 :]
        new.insert(j, o)
        return new
    return None


def _pressure(graph: Graph, target: Target, order: Sequence[str], keep: Sequence[bool]) -> list[int]:
    """Op positions where the decision evicts something (where a better order would help)."""
    fo = FixedOrder(graph, target, order)
    out = []
    for gp, k in zip(fo.gaps, keep, strict=True):
        if not k:
            out += [gp.lo - 1, gp.hi + 1]
    return out


def _orders(graph: Graph, target: Target, cands: Sequence[Plan], beam_time: float) -> list[list[str]]:
    """Distinct starting orders: those of the heuristic plans (best first), then beam."""
    from planner.solvers.heuristics.beam import beam_search

    seen: dict[tuple[str, ...], None] = {}
    for pl in sorted(cands, key=lambda p: plan_key(p, "traffic")):
        seen.setdefault(tuple(s.name for s in pl.stages if s.kind == "R"))
    if beam_time > 0 and len(graph.ops) > 1:
        for w in (4, 16):
            order, _ = beam_search(graph, target.with_budget(None), width=w, time_limit=beam_time / 2)
            seen.setdefault(tuple(order))
    return [list(o) for o in seen]


def solve_cpsat_spill(graph: Graph, target: Target, options: SolveOptions | None = None) -> Plan:
    """Least non-compulsory traffic within the budget, in four phases:

    1. fixed-order CP-SAT spills for the heuristics' and beam search's orders;
    2. the joint order + spill model (`solve_joint`) when it is small: often closes the gap;
    3. local search over the order (moves scored by the fixed-order model) until it stalls
       (``options.stall`` moves without gain, default 60 + ops; on ≤ 40 ops at most half
       the time, so the portfolio keeps time for the timestep model);
    4. the joint model again with the time left, hinted by the best plan.

    Never worse than the spill heuristics (their plans are candidates) nor than
    `options.hint` (the portfolio passes its best so far). ``optimal`` when the plan meets
    the joint model's bound (a lower bound for every plan) or the graph has a single order
    and the fixed-order optimum was laid out within the budget; the solver's `bound`
    (objective ``traffic``) is that bound on the spill traffic.
    """
    options = options or SolveOptions()
    timer = Timer()
    check_fits(graph, target)
    B = target.budget
    cands = candidate_plans(graph, target, name=NAME)
    if options.hint is not None and B is not None and options.hint.metrics.arena_bytes <= B:
        cands.append(options.hint)
    best = min(cands, key=lambda p: plan_key(p, "traffic"))
    best_how = f"heuristic {best.solver.name} {best.solver.facts.get('order', '')}"
    if B is None or best.metrics.spill_traffic_bytes == 0:
        info = SolverInfo(NAME, "heuristic", 0, timer.elapsed, options.params(), {"how": best_how}, "traffic")
        return with_solver(best, info)
    tl = options.time_limit
    rng = random.Random(options.seed)
    order_of = lambda p: [s.name for s in p.stages if s.kind == "R"]  # noqa: E731
    walk_of: dict[tuple[str, ...], Plan] = {}
    for pl in cands:
        key = tuple(order_of(pl))
        if key not in walk_of or plan_key(pl, "traffic") < plan_key(walk_of[key], "traffic"):
            walk_of[key] = pl
    starts = _orders(graph, target, cands, min(2.0, 0.1 * tl))
    best_order: list[str] | None = None
    best_exact = False
    best_raw_bound = None
    evals = 0

    def consider(order: list[str], budget_s: float, cutoff: int | None) -> OrderSolve:
        nonlocal best, best_order, best_exact, best_how, best_raw_bound, evals
        evals += 1
        wp = walk_of.get(tuple(order))
        r = solve_order(graph, target, order, options, budget_s, wp.stages if wp else None, cutoff)
        if r.plan is not None and plan_key(r.plan, "traffic") < plan_key(best, "traffic"):
            best, best_order, best_exact = r.plan, order, r.exact
            best_raw_bound = r.raw.bound if r.raw else None
            best_how = f"fixed-order cp-sat (eval {evals})"
            options.report(Progress(NAME, best.metrics.spill_traffic_bytes, None, timer.elapsed, best_how))
        elif r.plan is not None and best_order is None and order == order_of(best):
            best_order, best_exact = order, r.exact
        return r

    per = max(0.2, min(5.0, 0.3 * tl / max(1, len(starts))))
    for order in starts:
        if timer.elapsed > 0.4 * tl:
            break
        consider(order, per, None)
    if best_order is None:
        best_order = order_of(best)
    max_x = options.joint_max_vars
    jsize = joint_model_size(graph) if best.metrics.spill_traffic_bytes > 0 else max_x + 1
    joint: JointResult | None = None
    jbound: int | None = None

    def run_joint(time_s: float) -> None:
        """The joint order + spill model, hinted by the best plan: may improve it and proves
        a global bound on the non-compulsory traffic."""
        nonlocal joint, jbound, best_how
        joint = solve_joint(graph, target, order_of(best), best.stages, time_s, options.workers, options.seed)
        if joint.status != "INFEASIBLE":
            jbound = joint.bound if jbound is None else max(jbound, joint.bound)
        if joint.order is not None and joint.traffic is not None and joint.traffic < best.metrics.spill_traffic_bytes:
            consider(joint.order, max(0.2, min(5.0, tl - timer.elapsed)), None)
            if order_of(best) == joint.order:
                best_how = "joint order+spill cp-sat"

    def closed() -> bool:
        return jbound is not None and best.metrics.spill_traffic_bytes <= jbound

    # small joint models first: they often close the gap at once
    if jsize <= SMALL_JOINT_VARS and tl - timer.elapsed > 0.3:
        run_joint(0.3 * (tl - timer.elapsed))
    # local search over the order, each move scored by the fixed-order model
    stall_limit = options.stall if options.stall is not None else 60 + len(graph.ops)
    stall = 0
    cur_order = order_of(best)
    cur_val = best.metrics.spill_traffic_bytes
    fo = FixedOrder(graph, target, cur_order)
    focus = _pressure(graph, target, cur_order, fo.keep_of_plan(best.stages))
    step_time = max(0.1, min(2.0, 0.02 * tl))
    # small graphs: leave half the time to the timestep model that runs after us in `auto`
    deadline = (0.5 if len(graph.ops) <= 40 else 1.0) * tl - 2 * step_time
    while not closed() and timer.elapsed < deadline and stall < stall_limit and len(graph.ops) > 2:
        cand = _move(cur_order, graph, rng, focus)
        if cand is None:
            break
        r = consider(cand, step_time, cur_val)
        val = r.plan.metrics.spill_traffic_bytes if r.plan is not None else None
        if val is not None and val <= cur_val:
            if val < cur_val:
                stall = 0
            else:
                stall += 1
            cur_order, cur_val = cand, val
            if r.raw is not None:
                focus = _pressure(graph, target, cand, r.raw.keep)
        else:
            stall += 1
    left = tl - timer.elapsed
    if not closed() and left > 0.5 and jsize <= max_x:
        run_joint(left - min(2.0, 0.1 * left))
    bound = jbound
    single = Reach(graph).single_order()
    proven = (best_exact and single and best_how.startswith("fixed-order")) or (
        bound is not None and best.metrics.spill_traffic_bytes <= bound
    )
    if proven and bound is None:
        bound = best_raw_bound
    improved = best_how.startswith(("fixed-order", "joint"))
    status = "optimal" if proven else ("feasible" if improved else "heuristic")
    facts = {
        "how": best_how,
        "order_optimal": best_exact,
        "order_traffic_bound": best_raw_bound,
        "single_order": single,
        "evaluations": evals,
    }
    if joint is not None:
        facts["joint_status"] = joint.status
    info = SolverInfo(NAME, status, bound or 0, timer.elapsed, options.params(), facts, "traffic")
    return with_solver(best, info)
