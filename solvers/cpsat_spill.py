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
from planner.solvers.heuristics.beam import beam_search
from planner.solvers.heuristics.spill import candidate_plans, check_fits, plan_key
from planner.solvers.reach import Reach
from planner.solvers.spill_gaps import NAME, FixedOrder, SpillResult
from planner.solvers.spill_joint import JointResult, joint_model_size, solve_joint
from planner.target import Target

# the joint order+spill model is built when it has at most this many position Booleans
SMALL_JOINT_VARS = 3000  # below this the joint model runs before the local search too
SMALL_GRAPH_OPS = 40  # on graphs this small the local search leaves time to the timestep model


@dataclass(frozen=True)
class Shares:
    """Every share of the time limit `cpsat-spill` spends, in one table (fractions of the
    limit unless the name says seconds or "of the time left")."""

    # solve_order, of its own time limit
    order_raw: float = 0.6  # the raw model at the full budget
    order_layout: float = 0.3  # of the time left, one layout (CP-SAT layout when the heuristics overflow) ...
    order_layout_min_s: float = 0.6  # ... at least (the CP-SAT layout needs > 0.5 s) ...
    order_layout_max_s: float = 2.0  # ... at most
    order_aligned: float = 0.5  # of the time left, one aligned re-solve ...
    order_aligned_min_s: float = 0.05  # ... only with at least this left
    # solve_cpsat_spill: 1. starting orders
    beam: float = 0.1  # beam search for starting orders ...
    beam_max_s: float = 2.0  # ... at most
    starts: float = 0.3  # the fixed-order solves of all starting orders, shared ...
    start_min_s: float = 0.2  # ... each at least ...
    start_max_s: float = 5.0  # ... and at most
    starts_end: float = 0.4  # no starting order is tried past this share
    # 2. the small joint model before the local search
    joint_first: float = 0.3  # of the time left ...
    joint_first_min_s: float = 0.3  # ... only with more than this left
    joint_order_min_s: float = 0.2  # the fixed-order solve of an order the joint model found: at least ...
    joint_order_max_s: float = 5.0  # ... at most (and the time left)
    # 3. local search
    move: float = 0.02  # one move's fixed-order solve ...
    move_min_s: float = 0.1  # ... at least ...
    move_max_s: float = 2.0  # ... at most
    search_end_small: float = 0.5  # the search ends here (minus two moves) on ≤ SMALL_GRAPH_OPS ops ...
    search_end: float = 1.0  # ... and here on larger graphs
    # 4. the closing joint model
    joint_last_min_s: float = 0.5  # only with more than this left ...
    joint_last_reserve: float = 0.1  # ... keeping this share of the time left ...
    joint_last_reserve_max_s: float = 2.0  # ... at most, for the plan's way out


SHARES = Shares()


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
    budget = target.budget
    assert budget is not None
    hint = fo.keep_of_plan(hint_stages) if hint_stages is not None else None
    out = OrderSolve(list(order), None, None)
    raw = fo.solve(budget, SHARES.order_raw * time_limit, options.workers, options.seed, hint=hint, cutoff=cutoff)
    out.raw = raw
    if raw is None:
        out.notes.append("raw model: no solution")
        return out

    def lay_time() -> float:
        # the CP-SAT layout only runs when the layout heuristics overflow B; it needs > 0.5 s
        # (never more than is left: with less than 0.5 s the layout stays heuristic)
        left = time_limit - timer.elapsed
        floor = min(SHARES.order_layout_max_s, max(SHARES.order_layout_min_s, SHARES.order_layout * left))
        return max(min(floor, left), 0.0)

    plan, arena = fo.plan(raw.keep, options, lay_time())
    if plan is not None:
        out.plan, out.exact = plan, raw.optimal
        return out
    cap = budget
    for attempt in range(5):
        left = time_limit - timer.elapsed
        if left < SHARES.order_aligned_min_s:
            break
        # first aligned sizes at the full budget, then a capacity lowered by the overflow
        if attempt:
            cap -= max(target.alignment, arena - budget)
        res = fo.solve(cap, SHARES.order_aligned * left, options.workers, options.seed, aligned=True, cutoff=cutoff)
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
    (objective ``traffic``) is that bound on the spill traffic. Time shares: `SHARES`.
    """
    options = options or SolveOptions()
    timer = Timer()
    check_fits(graph, target)
    cands = candidate_plans(graph, target, name=NAME)
    if options.hint is not None and target.budget is not None and options.hint.metrics.arena_bytes <= target.budget:
        cands.append(options.hint)
    best = min(cands, key=lambda p: plan_key(p, "traffic"))
    how = f"heuristic {best.solver.name} {best.solver.facts.get('order', '')}"
    if target.budget is None or best.metrics.spill_traffic_bytes == 0:
        info = SolverInfo(NAME, "heuristic", 0, timer.elapsed, options.params(), {"how": how}, "traffic")
        return with_solver(best, info)
    search = _Search(graph, target, options, timer, best, how, _walk_plans(cands))
    _start_phase(search, cands)
    tl = options.time_limit
    max_x = options.joint_max_vars
    jsize = joint_model_size(graph) if search.traffic > 0 else max_x + 1
    # small joint models first: they often close the gap at once
    if jsize <= SMALL_JOINT_VARS and tl - timer.elapsed > SHARES.joint_first_min_s:
        search.run_joint(SHARES.joint_first * (tl - timer.elapsed))
    _local_search(search, random.Random(options.seed))
    left = tl - timer.elapsed
    if not search.closed() and left > SHARES.joint_last_min_s and jsize <= max_x:
        search.run_joint(left - min(SHARES.joint_last_reserve_max_s, SHARES.joint_last_reserve * left))
    return search.result()


def _order_of(plan: Plan) -> list[str]:
    return [s.name for s in plan.stages if s.kind == "R"]


def _walk_plans(cands: Sequence[Plan]) -> dict[tuple[str, ...], Plan]:
    """The best heuristic plan of each order (it hints the fixed-order model for that order)."""
    walk_of: dict[tuple[str, ...], Plan] = {}
    for pl in cands:
        key = tuple(_order_of(pl))
        if key not in walk_of or plan_key(pl, "traffic") < plan_key(walk_of[key], "traffic"):
            walk_of[key] = pl
    return walk_of


@dataclass
class _Search:
    """One `solve_cpsat_spill` run: the best plan so far, how it was found, what is proven."""

    graph: Graph
    target: Target
    options: SolveOptions
    timer: Timer
    best: Plan
    how: str
    walk_of: dict[tuple[str, ...], Plan]
    best_order: list[str] | None = None
    exact: bool = False  # the best plan's spills are optimal for its order
    raw_bound: int | None = None  # the raw fixed-order bound of the best plan's order
    evals: int = 0
    joint: JointResult | None = None
    jbound: int | None = None  # the joint model's bound on every plan's spill traffic

    @property
    def traffic(self) -> int:
        return self.best.metrics.spill_traffic_bytes

    def consider(self, order: list[str], budget_s: float, cutoff: int | None) -> OrderSolve:
        """Solve the spills of `order` (fixed-order model) and keep the plan if it is better."""
        self.evals += 1
        wp = self.walk_of.get(tuple(order))
        r = solve_order(self.graph, self.target, order, self.options, budget_s, wp.stages if wp else None, cutoff)
        if r.plan is not None and plan_key(r.plan, "traffic") < plan_key(self.best, "traffic"):
            self.best, self.best_order, self.exact = r.plan, order, r.exact
            self.raw_bound = r.raw.bound if r.raw else None
            self.how = f"fixed-order cp-sat (eval {self.evals})"
            note = f"spill search: {self.evals} orders tried"
            self.options.report(Progress(NAME, self.traffic, None, self.timer.elapsed, note))
        elif r.plan is not None and self.best_order is None and order == _order_of(self.best):
            self.best_order, self.exact = order, r.exact
        return r

    def run_joint(self, time_s: float) -> None:
        """The joint order + spill model, hinted by the best plan: may improve it and proves
        a global bound on the non-compulsory traffic."""
        opts, tl = self.options, self.options.time_limit
        self.joint = joint = solve_joint(
            self.graph, self.target, _order_of(self.best), self.best.stages, time_s, opts.workers, opts.seed
        )
        if joint.status != "INFEASIBLE":
            self.jbound = joint.bound if self.jbound is None else max(self.jbound, joint.bound)
        if joint.order is not None and joint.traffic is not None and joint.traffic < self.traffic:
            left = max(tl - self.timer.elapsed, 0.0)
            time_s = min(max(SHARES.joint_order_min_s, min(SHARES.joint_order_max_s, left)), left)
            self.consider(joint.order, time_s, None)
            if _order_of(self.best) == joint.order:
                self.how = "joint order+spill cp-sat"

    def closed(self) -> bool:
        return self.jbound is not None and self.traffic <= self.jbound

    def result(self) -> Plan:
        """The best plan with its status and bound (see `solve_cpsat_spill`)."""
        bound = self.jbound
        single = Reach(self.graph).single_order()
        proven = (self.exact and single and self.how.startswith("fixed-order")) or (
            bound is not None and self.traffic <= bound
        )
        if proven and bound is None:
            bound = self.raw_bound
        improved = self.how.startswith(("fixed-order", "joint"))
        status = "optimal" if proven else ("feasible" if improved else "heuristic")
        facts = {
            "how": self.how,
            "order_optimal": self.exact,
            "order_traffic_bound": self.raw_bound,
            "single_order": single,
            "evaluations": self.evals,
        }
        if self.joint is not None:
            facts["joint_status"] = self.joint.status
        info = SolverInfo(NAME, status, bound or 0, self.timer.elapsed, self.options.params(), facts, "traffic")
        return with_solver(self.best, info)


def _start_phase(search: _Search, cands: Sequence[Plan]) -> None:
    """1. The fixed-order model on the starting orders (heuristics', then beam search's)."""
    tl = search.options.time_limit
    starts = _orders(search.graph, search.target, cands, min(SHARES.beam_max_s, SHARES.beam * tl))
    per = max(SHARES.start_min_s, min(SHARES.start_max_s, SHARES.starts * tl / max(1, len(starts))))
    for order in starts:
        if search.timer.elapsed > SHARES.starts_end * tl:
            break
        search.consider(order, per, None)
    if search.best_order is None:
        search.best_order = _order_of(search.best)


def _local_search(search: _Search, rng: random.Random) -> None:
    """3. Moves of one op inside its window, biased towards where the budget binds, each
    scored by the fixed-order model (cut off at the current value); sideways moves are
    taken; stops when the joint bound is met, at the deadline or after a stall."""
    graph, opts, timer = search.graph, search.options, search.timer
    tl = opts.time_limit
    stall_limit = opts.stall if opts.stall is not None else 60 + len(graph.ops)
    stall = 0
    cur_order, cur_val = _order_of(search.best), search.traffic
    keep = FixedOrder(graph, search.target, cur_order).keep_of_plan(search.best.stages)
    focus = _pressure(graph, search.target, cur_order, keep)
    step_time = max(SHARES.move_min_s, min(SHARES.move_max_s, SHARES.move * tl))
    # small graphs: leave half the time to the timestep model that runs after us in `auto`
    end = SHARES.search_end_small if len(graph.ops) <= SMALL_GRAPH_OPS else SHARES.search_end
    deadline = end * tl - 2 * step_time
    while not search.closed() and timer.elapsed < deadline and stall < stall_limit and len(graph.ops) > 2:
        cand = _move(cur_order, graph, rng, focus)
        if cand is None:
            break
        r = search.consider(cand, step_time, cur_val)
        val = r.plan.metrics.spill_traffic_bytes if r.plan is not None else None
        if val is not None and val <= cur_val:
            stall = 0 if val < cur_val else stall + 1
            cur_order, cur_val = cand, val
            if r.raw is not None:
                focus = _pressure(graph, search.target, cand, r.raw.keep)
        else:
            stall += 1
