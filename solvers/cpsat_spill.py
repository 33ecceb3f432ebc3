"""Spills for a fixed op order, exactly, with CP-SAT; and a search over orders around it.

Given the op order, a canonical plan (DESIGN §1, the form `cpsat_stage.canonicalize`
produces) is fully described by one decision per **gap**: between two consecutive events
of a tensor (its production or a use, at op positions e_j < e_{j+1} with at least one op in
between) the tensor either stays in L1 (``keep``) or is freed after e_j and loaded back
right before e_{j+1}. Loading later than right before the use, or freeing later than right
after the event, only raises memory, so nothing is lost by that form. An activation that is
evicted at least once is stored once, right after its producer (graph outputs are stored
anyway, inputs and weights already have an LLB copy), so

    traffic = compulsory + Σ_gaps size·(1 - keep) + Σ_activations size·stored,
    stored[t] ≥ 1 - keep[g] for every gap g of t,

and the memory while op i runs is exactly ``base[i]`` (its own inputs and outputs) plus the
sizes of the kept gaps that span i. That is a 0-1 program with one Boolean per gap and one
knapsack row per op position — tiny next to the timestep model (O(|E|) variables, no
horizon), so CP-SAT proves it optimal for hundreds of ops in well under a second.

Bytes are raw, like the stage model's peak; offsets are laid out afterwards over the
residencies (layout heuristics, then `cpsat_layout.optimal_layout`). When fragmentation
pushes the arena over the budget the model is solved again with aligned sizes and a
capacity lowered by the overflow, and the heuristic walk plan remains as the fallback, so
a returned plan always fits.

`solve_joint` lifts the same canonical form to a free order: op positions one-hot both
ways, residency per tensor and position, a load where residency starts without production,
and dominance rules (an idle residency continues on both sides) that leave exactly one
residency pattern per keep decision. Its optimum is the least raw traffic over all orders
— a lower bound for every plan — and CP-SAT proves it for graphs of ~20–40 ops in seconds.

The order matters as much as the evictions (the no-spill-optimal order keeps long-lived
tensors alive, which is exactly what a spill order should avoid), so `solve_cpsat_spill`
scores the order heuristics, beam search and the spill walk's orders with the fixed-order
model and then runs a local search over order moves (an op moved inside the window
between its last predecessor and first successor, biased towards the positions where the
budget binds), each candidate scored by the model itself.

Status ``optimal`` is claimed only for a real optimum of the whole problem: the plan's
traffic meets the joint model's proven bound, or the graph has a single topological order
and the raw fixed-order optimum at the full budget was laid out within it. Otherwise
``feasible``, with ``order_optimal`` in the options telling whether the spills are optimal
for the returned order.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import networkx as nx
from ortools.sat.python import cp_model

from planner.bounds import working_set_bound
from planner.graph import Graph
from planner.plan import Plan, SolverInfo, Stage
from planner.simulate import finalize
from planner.solvers.base import Progress, SolveOptions, Timer
from planner.solvers.heuristics.spill import candidate_plans, check_fits, plan_key
from planner.target import Target

NAME = "cpsat-spill"
# the joint order+spill model is built when it has at most this many position Booleans
JOINT_MAX_VARS = 20000
SMALL_JOINT_VARS = 3000  # below this the joint model runs before the local search too


@dataclass
class Gap:
    """Tensor `t` between two of its events: it spans op positions lo..hi (inclusive)."""

    t: str
    lo: int
    hi: int
    size: int


@dataclass
class SpillResult:
    """One fixed-order solve: keep decisions, raw traffic (non-compulsory), proof facts."""

    keep: list[bool]
    traffic: int  # non-compulsory bytes of the canonical plan
    bound: int  # proven lower bound on that, for this order and capacity
    optimal: bool
    status: str


class FixedOrder:
    """The gap structure of one op order (see the module docstring)."""

    def __init__(self, graph: Graph, target: Target, order: Sequence[str]) -> None:
        g = graph
        self.g, self.tg, self.order = g, target, list(order)
        pos = {o: i for i, o in enumerate(self.order)}
        self.n = len(self.order)
        self.tidx = {t: i for i, t in enumerate(g.tensors)}
        self.base = [0] * self.n
        self.base_aligned = [0] * self.n
        self.base_waste = [0] * self.n
        for i, name in enumerate(self.order):
            op = g.op(name)
            for t in dict.fromkeys((*op.inputs, *op.outputs)):
                if target.occupies_l1(g.tensors[t]):
                    raw = g.size(t)
                    self.base[i] += raw
                    self.base_aligned[i] += target.align(raw)
                    self.base_waste[i] = max(self.base_waste[i], target.align(raw) - raw)
        self.gaps: list[Gap] = []
        self.gaps_of: dict[str, list[int]] = {}
        self.events: dict[str, list[int]] = {}
        self.storable: list[str] = []  # activations whose eviction costs a store
        for t, x in g.tensors.items():
            if not target.occupies_l1(g.tensors[t]):
                continue
            uses = sorted({pos[c] for c in g.consumers[t]})
            if x.kind in ("input", "weight"):
                ev = uses
            else:
                ev = [pos[g.producer[t]], *uses]
            self.events[t] = ev
            ids = []
            for a, b in zip(ev, ev[1:], strict=False):
                if b - a >= 2 and g.size(t) > 0:
                    ids.append(len(self.gaps))
                    self.gaps.append(Gap(t, a + 1, b - 1, g.size(t)))
            if ids:
                self.gaps_of[t] = ids
                if x.kind == "activation":
                    self.storable.append(t)
        self.spanning: list[list[int]] = [[] for _ in range(self.n)]
        for k, gp in enumerate(self.gaps):
            for i in range(gp.lo, gp.hi + 1):
                self.spanning[i].append(k)

    # -- cost and memory of a decision ------------------------------------------------------
    def traffic(self, keep: Sequence[bool]) -> int:
        out = sum(gp.size for gp, k in zip(self.gaps, keep, strict=True) if not k)
        for t in self.storable:
            if not all(keep[k] for k in self.gaps_of[t]):
                out += self.g.size(t)
        return out

    def keep_of_plan(self, stages: Sequence[Stage]) -> list[bool]:
        """Gap decisions of a valid plan for this order: kept iff resident at every R it spans."""
        res: set[str] = set()
        at: list[set[str]] = []
        for s in stages:
            if s.kind == "L":
                res.add(s.name)
            elif s.kind == "F":
                res.discard(s.name)
            elif s.kind == "R":
                at.append(set(res))
                res.update(self.g.op(s.name).outputs)
        return [all(gp.t in at[i] for i in range(gp.lo, gp.hi + 1)) for gp in self.gaps]

    # -- the model ---------------------------------------------------------------------------
    def solve(
        self,
        cap: int,
        time_limit: float,
        workers: int = 1,
        seed: int = 0,
        aligned: bool = False,
        hint: Sequence[bool] | None = None,
        cutoff: int | None = None,
    ) -> SpillResult | None:
        """Least traffic with memory ≤ cap at every op (raw or aligned bytes). None: infeasible
        (or nothing found in time, or nothing at most `cutoff`)."""
        size = [self.tg.align(gp.size) if aligned else gp.size for gp in self.gaps]
        base = self.base_aligned if aligned else self.base
        # with aligned sizes the topmost tensor only needs its raw bytes
        room = [cap - base[i] + (self.base_waste[i] if aligned else 0) for i in range(self.n)]
        if any(r < 0 for r in room):
            return None
        m = cp_model.CpModel()
        keep = [m.new_bool_var(f"k{k}") for k in range(len(self.gaps))]
        seen_rows: set[tuple[int, ...]] = set()
        for i in range(self.n):
            ks = self.spanning[i]
            if sum(size[k] for k in ks) <= room[i]:
                continue
            key = (*ks, -room[i])
            if key in seen_rows:
                continue
            seen_rows.add(key)
            m.add(sum(size[k] * keep[k] for k in ks) <= room[i])
        stored = {}
        for t in self.storable:
            s = m.new_bool_var(f"s_{t}")
            stored[t] = s
            for k in self.gaps_of[t]:
                m.add_implication(keep[k].Not(), s)
        cost = sum(gp.size * (1 - keep[k]) for k, gp in enumerate(self.gaps)) + sum(
            self.g.size(t) * s for t, s in stored.items()
        )
        if cutoff is not None:
            m.add(cost <= cutoff)
        m.minimize(cost)
        if hint is not None:
            for v, h in zip(keep, hint, strict=True):
                m.add_hint(v, bool(h))
            for t, s in stored.items():
                m.add_hint(s, not all(hint[k] for k in self.gaps_of[t]))
        solver = cp_model.CpSolver()
        prm = solver.parameters
        prm.max_time_in_seconds = max(0.05, time_limit)
        prm.num_workers = max(1, workers)
        prm.random_seed = seed
        st = solver.solve(m)
        if st not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return None
        kv = [bool(solver.value(v)) for v in keep]
        val = self.traffic(kv)
        bound = int(math.ceil(solver.best_objective_bound - 1e-6))
        return SpillResult(kv, val, min(bound, val), st == cp_model.OPTIMAL, solver.status_name(st))

    # -- plans -------------------------------------------------------------------------------
    def schedule(self, keep: Sequence[bool]):
        """The canonical L/R/S schedule (frees attached) of the keep decisions."""
        from planner.solvers.cpsat_stage import Schedule

        g = self.g
        evicted_after: dict[tuple[str, int], bool] = {}
        for gp, k in zip(self.gaps, keep, strict=True):
            evicted_after[gp.t, gp.lo - 1] = not k
        stored = {t for t in self.storable if not all(keep[k] for k in self.gaps_of[t])}
        steps: list[tuple[str, str]] = []
        frees: list[list[str]] = []
        resident: set[str] = set()
        for i, name in enumerate(self.order):
            op = g.op(name)
            ins = [t for t in dict.fromkeys(op.inputs) if t in self.events]
            for t in sorted((t for t in ins if t not in resident), key=self.tidx.__getitem__):
                steps.append(("L", t))
                frees.append([])
                resident.add(t)
            steps.append(("R", name))
            frees.append([])
            outs = [t for t in op.outputs if t in self.events]
            resident.update(outs)
            for t in sorted(outs, key=self.tidx.__getitem__):
                if g.tensors[t].kind == "output" or t in stored:
                    steps.append(("S", t))
                    frees.append([])
            gone = []
            for t in dict.fromkeys((*ins, *outs)):
                ev = self.events[t]
                last = ev[-1] == i
                if last or evicted_after.get((t, i), False):
                    gone.append(t)
            for t in sorted(gone, key=self.tidx.__getitem__):
                resident.discard(t)
            frees[-1] = sorted(gone, key=self.tidx.__getitem__)
        # tensors that are never used again but still resident (zero-use inputs never are)
        return Schedule(steps, frees, g)

    def plan(self, keep: Sequence[bool], options: SolveOptions, layout_time: float) -> tuple[Plan | None, int]:
        """(laid-out simulated plan or None when the layout overflows the budget, arena)."""
        from planner.solvers.cpsat_stage import layout_stages

        stages = self.schedule(keep).stages()
        laid, arena, lname = layout_stages(self.g, self.tg, stages, options, layout_time, self.tg.budget)
        if self.tg.budget is not None and arena > self.tg.budget:
            return None, arena
        info = SolverInfo(NAME, "feasible", 0, 0.0, {"layout": lname})
        return finalize(Plan(self.g, self.tg, laid, info)), arena


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


def _single_order(graph: Graph) -> bool:
    """Whether the graph has exactly one topological order (a Hamiltonian path in the DAG)."""
    topo = list(nx.topological_sort(graph.dag))
    return all(graph.dag.has_edge(a, b) for a, b in zip(topo, topo[1:], strict=False))


def solve_cpsat_spill(graph: Graph, target: Target, options: SolveOptions | None = None) -> Plan:
    """Least non-compulsory traffic within the budget, in four phases:

    1. fixed-order CP-SAT spills for the heuristics' and beam search's orders;
    2. the joint order + spill model (`solve_joint`) when it is small: often closes the gap;
    3. local search over the order (moves scored by the fixed-order model) until it stalls
       (``extra["stall"]`` moves without gain, default 60 + ops; on ≤ 40 ops at most half
       the time, so the portfolio keeps time for the timestep model);
    4. the joint model again with the time left, hinted by the best plan.

    Never worse than the spill heuristics (their plans are candidates) nor than a
    `hint_plan` passed in `options.extra` (the portfolio passes its best so far).
    ``optimal`` when the plan meets the joint model's bound (a lower bound for every plan)
    or the graph has a single order and the fixed-order optimum was laid out within B;
    ``spill_traffic_bound`` in the options is that bound.
    """
    options = options or SolveOptions()
    timer = Timer()
    check_fits(graph, target)
    B = target.budget
    cands = candidate_plans(graph, target, name=NAME)
    hint_plan = options.extra.get("hint_plan")
    if isinstance(hint_plan, Plan) and B is not None and hint_plan.metrics.arena_bytes <= B:
        cands.append(_detached(hint_plan))  # the caller's plan object is not modified
    best = min(cands, key=lambda p: plan_key(p, "traffic"))
    best_how = f"heuristic {best.solver.name} {best.solver.options.get('order', '')}"
    if B is None or best.metrics.spill_traffic_bytes == 0:
        best.solver = SolverInfo(NAME, "heuristic", working_set_bound(graph, target), timer.elapsed, {"how": best_how})
        return finalize(best)
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
    max_x = int(options.extra.get("joint_max_vars", JOINT_MAX_VARS))
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
    stall_limit = int(options.extra.get("stall", 60 + len(graph.ops)))
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
    single = _single_order(graph)
    proven = (best_exact and single and best_how.startswith("fixed-order")) or (
        bound is not None and best.metrics.spill_traffic_bytes <= bound
    )
    if proven and bound is None:
        bound = best_raw_bound
    improved = best_how.startswith(("fixed-order", "joint"))
    status = "optimal" if proven else ("feasible" if improved else "heuristic")
    opts = {
        **{k: v for k, v in options.to_dict().items() if k != "hint_plan"},
        "how": best_how,
        "order_optimal": best_exact,
        "order_traffic_bound": best_raw_bound,
        "single_order": single,
        "evaluations": evals,
    }
    if joint is not None:
        opts["joint_status"] = joint.status
    if bound is not None:
        opts["spill_traffic_bound"] = bound
    best.solver = SolverInfo(NAME, status, working_set_bound(graph, target), timer.elapsed, opts)
    return finalize(best)


# -- the joint order + spill model ------------------------------------------------------------
@dataclass
class JointResult:
    """What the position model found: an order, its raw traffic, a global raw lower bound."""

    order: list[str] | None
    traffic: int | None  # non-compulsory, raw bytes
    bound: int  # lower bound on the non-compulsory traffic of every plan
    optimal: bool
    status: str


def joint_model_size(graph: Graph) -> int:
    """Number of position Booleans the joint model would create (to decide if it is worth it)."""
    n = len(graph.ops)
    return sum(n - len(nx.descendants(graph.dag, o.name)) - len(nx.ancestors(graph.dag, o.name)) for o in graph.ops)


def solve_joint(
    graph: Graph,
    target: Target,
    hint_order: Sequence[str] | None,
    hint_stages: Sequence[Stage] | None,
    time_limit: float,
    workers: int = 1,
    seed: int = 0,
) -> JointResult:
    """Order and spills together, raw bytes: ``x[o,i]`` (op o at position i, one-hot both
    ways), ``r[t,i]`` (t resident while the op at position i runs), loads where residency
    starts without production, one store per evicted activation. Memory per position ≤ B.

    Dominance (keeps an optimal plan, cuts symmetric ones): a tensor resident at a position
    where it is neither used nor produced is resident at both neighbouring positions —
    residency only starts at a use (load right before it) and only ends at a use or the
    production (free right after), the canonical form of the module docstring. With the
    order fixed this is exactly the gap model, so the optimum is min over orders of the
    fixed-order optimum: a lower bound for every plan (offsets only add constraints).
    """
    g, B = graph, target.budget
    assert B is not None
    ops = [o.name for o in g.ops]
    n = len(ops)
    est = {o: len(nx.ancestors(g.dag, o)) for o in ops}
    lst = {o: n - 1 - len(nx.descendants(g.dag, o)) for o in ops}
    m = cp_model.CpModel()
    x = {(o, i): m.new_bool_var(f"x_{o}_{i}") for o in ops for i in range(est[o], lst[o] + 1)}
    at: list[list] = [[] for _ in range(n)]
    for (_o, i), v in x.items():
        at[i].append(v)
    for o in ops:
        m.add_exactly_one(x[o, i] for i in range(est[o], lst[o] + 1))
    for i in range(n):
        m.add_exactly_one(at[i])
    pos = {o: sum(i * x[o, i] for i in range(est[o], lst[o] + 1)) for o in ops}
    for u, v in g.dag.edges:
        m.add(pos[v] >= pos[u] + 1)
    mem: list[list] = [[] for _ in range(n)]
    cost = []
    comp = 0
    rv: dict[tuple[str, int], cp_model.IntVar] = {}
    lv: dict[tuple[str, int], cp_model.IntVar] = {}
    sv: dict[str, cp_model.IntVar] = {}
    for t, tt in g.tensors.items():
        if not target.occupies_l1(g.tensors[t]):
            continue
        cons = list(dict.fromkeys(g.consumers[t]))
        p = g.producer.get(t)
        if tt.kind in ("input", "weight"):
            if not cons:
                continue
            lo, hi = min(est[c] for c in cons), max(lst[c] for c in cons)
            comp += g.size(t)
        else:
            lo, hi = est[p], max([lst[p], *(lst[c] for c in cons)])
        users = cons + ([p] if p else [])
        sz = g.size(t)
        need = {i: [x[o, i] for o in users if (o, i) in x] for i in range(lo, hi + 1)}
        r = {i: m.new_bool_var(f"r_{t}_{i}") for i in range(lo, hi + 1)}
        for i in r:
            rv[t, i] = r[i]
            for v in need[i]:
                m.add_implication(v, r[i])
            if p is not None and i < lst[p]:  # not before its production
                m.add(r[i] <= sum(x[p, j] for j in range(est[p], i + 1)))
            # dominance: an idle residency continues on both sides
            m.add(r[i] - sum(need[i]) <= (r[i - 1] if i - 1 in r else 0))
            m.add(r[i] - sum(need[i]) <= (r[i + 1] if i + 1 in r else 0))
            if sz:
                mem[i].append(sz * r[i])
        if not sz:
            continue
        loads = []
        for i in r:
            prod = x[p, i] if p is not None and (p, i) in x else 0
            lv[t, i] = ld = m.new_bool_var(f"l_{t}_{i}")
            m.add(ld >= r[i] - (r[i - 1] if i - 1 in r else 0) - prod)
            loads.append(ld)
        cost.append(sz * sum(loads))
        if tt.kind == "activation" and cons:
            sv[t] = st = m.new_bool_var(f"s_{t}")
            for ld in loads:
                m.add_implication(ld, st)
            cost.append(sz * st)
    for i in range(n):
        if mem[i]:
            m.add(sum(mem[i]) <= B)
    obj = m.new_int_var(0, sum(g.size(t) for t in g.tensors) * 2 * max(1, n), "spill")
    m.add(obj == sum(cost) - comp)
    m.minimize(obj)
    if hint_order is not None:
        hp = {o: i for i, o in enumerate(hint_order)}
        for (o, i), v in x.items():
            m.add_hint(v, hp[o] == i)
        if hint_stages is not None:
            res: set[str] = set()
            during: list[set[str]] = []
            for st_ in hint_stages:
                if st_.kind == "L":
                    res.add(st_.name)
                elif st_.kind == "F":
                    res.discard(st_.name)
                elif st_.kind == "R":
                    res.update(g.op(st_.name).outputs)
                    during.append(set(res) | set(g.op(st_.name).inputs))
            fo = FixedOrder(g, target, hint_order)
            keep = fo.keep_of_plan(hint_stages)
            kept = {(gp.t, i) for gp, k in zip(fo.gaps, keep, strict=True) if k for i in range(gp.lo, gp.hi + 1)}
            for (t, i), v in rv.items():
                ev = fo.events.get(t, [])
                m.add_hint(v, i in ev or (t, i) in kept)
            for (t, i), v in lv.items():
                ev = fo.events.get(t, [])
                now = i in ev or (t, i) in kept
                before = (i - 1) in ev or (t, i - 1) in kept
                src = g.tensors[t].kind in ("input", "weight")
                m.add_hint(v, now and not before and (src or i != ev[0]))
            for t, v in sv.items():
                m.add_hint(v, t in fo.gaps_of and not all(keep[k] for k in fo.gaps_of[t]))
    solver = cp_model.CpSolver()
    prm = solver.parameters
    prm.max_time_in_seconds = max(0.1, time_limit)
    prm.num_workers = max(1, workers)
    prm.random_seed = seed
    st = solver.solve(m)
    bound = max(0, int(math.ceil(solver.best_objective_bound - 1e-6))) if st != cp_model.INFEASIBLE else 0
    if st not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return JointResult(None, None, bound if st == cp_model.UNKNOWN else 0, False, solver.status_name(st))
    order = sorted(ops, key=lambda o: next(i for i in range(est[o], lst[o] + 1) if solver.value(x[o, i])))
    val = int(solver.value(obj))
    return JointResult(order, val, min(bound, val), st == cp_model.OPTIMAL, solver.status_name(st))


def _detached(plan: Plan) -> Plan:
    """A copy of a caller's plan whose solver info can be rewritten without touching theirs."""
    out = copy.copy(plan)
    out.solver = copy.copy(plan.solver)
    out.solver.options = dict(plan.solver.options)
    return out
