"""The reference timestep model of DESIGN §3: one stage per step, residency per step.

Variables, for each step t < T (T = the hint plan's step count, tight):
``run[o,t]`` (R o), ``ld[x,t]`` (L x), ``st[x,t]`` (S x), ``idle[t]``; the state after step
t: ``in1[x,t]`` (x resident in L1), ``inL(x,t)`` (x has an LLB copy), ``done(o,t)``.

**Frees are attached to steps.** ``fr[x,t]`` frees x right after the stage of step t; when the
plan is written out each free becomes its own F stage. This is exact, not a relaxation: an
F never raises memory nor enables anything but a later placement, so moving it to right
after the stage it follows changes neither peak nor traffic, and steps = L + R + S + F with
#F = #residencies. It removes a factor of ~2 from the horizon and most F symmetry.

Every rule of §1 is a constraint: R needs its inputs resident before the step; L needs an
LLB copy and the tensor absent; S needs it resident; F needs an LLB copy or all consumers
run (graph outputs: an LLB copy); every op runs once; outputs end in LLB; in-place weights
never appear; memory during step t (resident before + what the step creates) ≤ P ≤ B.

Dominance rules (symmetry breaking; each keeps at least one optimal plan, proof sketch
in the comment at the constraint): stores happen right after the producer (in a block of
sibling outputs by tensor index) and at most once; a residency is freed right after its
last use (free only on a step that uses, produces or stores the tensor, and must free once
nothing needs it); loads come in blocks right before a consuming R, in tensor-index order;
idle steps only at the end. Redundant: time windows from ancestor/descendant counts,
precedences between op positions, P ≥ the largest working set.

Objective, lexicographic by two solves: ``peak``: P, then traffic·(T+1) + steps;
``traffic`` (default whenever the budget forces spills): traffic within B, then P·(T+1) +
steps. Raw bytes are counted (like the simulator's peak); offsets are laid out afterwards
over the residencies with the layout heuristics (or `cpsat_layout.optimal_layout` if
present). The plan is never worse than the heuristic plan that hinted it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx
from ortools.sat.python import cp_model

from planner.bounds import compulsory_traffic, working_set_bound
from planner.graph import Graph
from planner.plan import Plan, SolverInfo
from planner.simulate import finalize, simulate, with_solver
from planner.solvers import cpsat
from planner.solvers.base import Progress, SolveOptions, Timer
from planner.solvers.cpsat_layout import layout_stages
from planner.solvers.cpsat_spill import solve_order
from planner.solvers.heuristics.spill import candidate_plans, check_fits, plan_key
from planner.solvers.schedule import Schedule, canonicalize
from planner.target import Target

NAME = "cpsat-stage"
# steps × L1 tensors the model may have per second of time limit (building it is Python
# work of roughly a few µs per cell and variable, solving needs the rest)
MAX_CELLS_PER_S = 2500


# -- the model -----------------------------------------------------------------------------
@dataclass
class StageModelResult:
    """What the CP-SAT model proved, before layout (raw bytes, no fragmentation)."""

    schedule: Schedule | None
    mode: str
    horizon: int
    peak: int | None = None
    traffic: int | None = None  # total L+S bytes
    peak_bound: int = 0
    traffic_bound: int = 0
    optimal: bool = False  # both phases proven optimal within the horizon
    horizon_sufficient: bool = False  # the horizon cannot have cut off a better plan
    notes: list[str] = field(default_factory=list)


class _Callback(cp_model.CpSolverSolutionCallback):
    def __init__(self, options: SolveOptions, timer: Timer, phase: str) -> None:
        super().__init__()
        self.options, self.timer, self.phase = options, timer, phase

    def on_solution_callback(self) -> None:
        self.options.report(
            Progress(NAME, int(self.ObjectiveValue()), int(self.BestObjectiveBound()), self.timer.elapsed, self.phase)
        )


class StageModel:
    """Builds the CP-SAT model for horizon T; see the module docstring."""

    def __init__(self, graph: Graph, target: Target, horizon: int, budget: int | None, peak_ub: int | None) -> None:
        g = graph
        self.g, self.tg, self.T = g, target, horizon
        T = horizon
        m = self.m = cp_model.CpModel()
        self.TRUE = m.new_bool_var("true")
        m.add(self.TRUE == 1)
        self.FALSE = self.TRUE.Not()
        self.tidx = {t: i for i, t in enumerate(g.tensors)}
        self.l1 = [t for t in g.tensors if target.occupies_l1(g.tensors[t])]
        kind = {t: g.tensors[t].kind for t in g.tensors}
        self.src = [t for t in self.l1 if kind[t] in ("input", "weight") and g.consumers[t]]
        acts = [t for t in self.l1 if kind[t] in ("activation", "output")]
        self.storable = [t for t in acts if kind[t] == "output" or g.consumers[t]]
        self.loadable = self.src + [t for t in acts if g.consumers[t]]

        # time windows from ancestor / descendant counts (each needs its own step)
        est, lst = {}, {}
        for o in g.ops:
            anc = nx.ancestors(g.dag, o.name)
            desc = nx.descendants(g.dag, o.name)
            srcs = {t for a in (*anc, o.name) for t in g.op(a).inputs if t in self.src}
            outs = {t for d in (*desc, o.name) for t in g.op(d).outputs if kind[t] == "output"}
            est[o.name] = len(anc) + len(srcs)
            lst[o.name] = T - 1 - len(desc) - len(outs)
            if est[o.name] > lst[o.name]:
                raise ValueError(f"horizon {T} too short for op {o.name}")
        self.est, self.lst = est, lst

        nb = m.new_bool_var
        self.run = {(o, t): nb(f"run_{o}_{t}") for o in est for t in range(est[o], lst[o] + 1)}
        for o in est:
            m.add_exactly_one(self.run[o, t] for t in range(est[o], lst[o] + 1))
        self.done_v: dict[tuple[str, int], cp_model.IntVar] = {}
        for o in est:
            for t in range(est[o], lst[o]):
                self.done_v[o, t] = nb(f"done_{o}_{t}")
            for t in range(est[o], lst[o] + 1):
                m.add(self.done(o, t) == self.done(o, t - 1) + self.run[o, t])

        # tensor windows
        self.lo, self.hi = {}, {}
        self.st_lo, self.st_hi = {}, {}
        for t in self.l1:
            cons = g.consumers[t]
            last = max((lst[c] for c in cons), default=-1)
            if t in self.src:
                self.lo[t], self.hi[t] = 0, last
                continue
            if kind[t] in ("input", "weight"):
                continue  # never used: never resident
            p = g.producer[t]
            hi = max(last, lst[p])
            if t in self.storable:
                self.st_lo[t] = est[p] + 1
                self.st_hi[t] = min(T - 1, lst[p] + len(g.op(p).outputs))
                hi = max(hi, self.st_hi[t])
            self.lo[t], self.hi[t] = est[p], hi
        self.ld_v = {}
        for t in self.loadable:
            first = 0 if t in self.src else self.st_lo[t] + 1
            last = max(lst[c] for c in g.consumers[t]) - 1
            for s in range(first, last + 1):
                self.ld_v[t, s] = nb(f"ld_{t}_{s}")
        self.st_v = {(t, s): nb(f"st_{t}_{s}") for t in self.storable for s in range(self.st_lo[t], self.st_hi[t] + 1)}
        self.stored_v = {}
        for t in self.storable:
            ss = [self.st_v[t, s] for s in range(self.st_lo[t], self.st_hi[t] + 1)]
            if kind[t] == "output":
                m.add_exactly_one(ss)
                self.stored_v[t] = self.TRUE
            else:
                m.add_at_most_one(ss)
                self.stored_v[t] = nb(f"stored_{t}")
                m.add(sum(ss) == self.stored_v[t])
        self.inl_v = {}
        for t in self.storable:
            for s in range(self.st_lo[t], self.st_hi[t]):
                self.inl_v[t, s] = nb(f"inL_{t}_{s}")
            for s in range(self.st_lo[t], self.st_hi[t] + 1):
                m.add(self.inl(t, s) == self.inl(t, s - 1) + self.st_v[t, s])
        self.in1_v = {(t, s): nb(f"in1_{t}_{s}") for t in self.lo for s in range(self.lo[t], self.hi[t])}
        self.fr_v = {(t, s): nb(f"fr_{t}_{s}") for t in self.lo for s in range(self.lo[t], self.hi[t] + 1)}
        self.alldone_v = {}
        for t in self.lo:
            cons = g.consumers[t]
            if len(cons) >= 2:
                a = min(est[c] for c in cons)
                b = max(lst[c] for c in cons)
                for s in range(a, b):
                    v = self.alldone_v[t, s] = nb(f"alldone_{t}_{s}")
                    for c in cons:
                        m.add_implication(v, self.done(c, s))
                    m.add_bool_or([v, *[self.done(c, s).Not() for c in cons]])

        # residency transitions and the rules of DESIGN §1
        for t in self.lo:
            p = g.producer.get(t)
            for s in range(self.lo[t], self.hi[t] + 1):
                created = [self.ld(t, s)] + ([self.run[p, s]] if p and (p, s) in self.run else [])
                m.add(self.in1(t, s) + self.fr_v[t, s] == self.in1(t, s - 1) + sum(created))
                m.add(self.in1(t, s - 1) + sum(created) <= 1)
                # free precondition: LLB copy, or (non-output) every consumer has run
                if kind[t] == "output":
                    m.add_implication(self.fr_v[t, s], self.inl(t, s))
                elif t not in self.src:
                    m.add_bool_or([self.fr_v[t, s].Not(), self.inl(t, s), self.alldone(t, s)])
                # dominance: free only right after a step that uses, produces or stores t
                # (keeping a residency past its last use never helps; the next use reloads)
                users = [self.run[c, s] for c in g.consumers[t] if (c, s) in self.run]
                if p and (p, s) in self.run:
                    users.append(self.run[p, s])
                if (t, s) in self.st_v:
                    users.append(self.st_v[t, s])
                m.add_bool_or([self.fr_v[t, s].Not(), *users])
                # dominance: free once nothing needs the residency any more
                if s < self.hi[t]:
                    if kind[t] == "output":
                        m.add_bool_or([self.in1(t, s).Not(), self.alldone(t, s).Not(), self.inl(t, s).Not()])
                    else:
                        m.add_implication(self.in1(t, s), self.alldone(t, s).Not())
        for o in g.ops:
            ins = [t for t in dict.fromkeys(o.inputs) if t in self.lo]
            for s in range(est[o.name], lst[o.name] + 1):
                for t in ins:
                    m.add_implication(self.run[o.name, s], self.in1(t, s - 1))
        for t in self.storable:
            p = g.producer[t]
            sibs = [y for y in g.op(p).outputs if y in self.storable and self.tidx[y] < self.tidx[t]]
            for s in range(self.st_lo[t], self.st_hi[t] + 1):
                m.add_implication(self.st_v[t, s], self.in1(t, s - 1))
                # dominance: store right after the producer (a store never costs memory, an
                # earlier LLB copy only adds freedom); siblings in tensor-index order
                prev = [self.run[p, s - 1]] if (p, s - 1) in self.run else []
                prev += [self.st_v[y, s - 1] for y in sibs if (y, s - 1) in self.st_v]
                m.add_bool_or([self.st_v[t, s].Not(), *prev])
        # loads: need an LLB copy; dominance: load as late as possible, i.e. in a block right
        # before a consuming R, block sorted by tensor index
        self.any_ld = [nb(f"anyld_{s}") for s in range(T)]
        ld_at: list[list] = [[] for _ in range(T)]
        for (t, s), v in self.ld_v.items():
            ld_at[s].append((t, v))
            if t not in self.src:
                m.add_implication(v, self.inl(t, s - 1))
            nxt = [self.run[c, s + 1] for c in g.consumers[t] if (c, s + 1) in self.run]
            if s + 1 < T:
                nxt.append(self.any_ld[s + 1])
            m.add_bool_or([v.Not(), *nxt])
        for s in range(T):
            m.add(sum(v for _, v in ld_at[s]) == self.any_ld[s])
        rank = [sum((self.tidx[t] + 1) * v for t, v in ld_at[s]) for s in range(T)]
        for s in range(T - 1):
            if ld_at[s] and ld_at[s + 1]:
                m.add(rank[s] < rank[s + 1]).only_enforce_if([self.any_ld[s], self.any_ld[s + 1]])

        # one stage per step, idle only at the end
        self.idle = [nb(f"idle_{s}") for s in range(T)]
        per_step: list[list] = [[self.idle[s]] for s in range(T)]
        for (_o, s), v in self.run.items():
            per_step[s].append(v)
        for (_t, s), v in self.ld_v.items():
            per_step[s].append(v)
        for (_t, s), v in self.st_v.items():
            per_step[s].append(v)
        for s in range(T):
            m.add_exactly_one(per_step[s])
        for s in range(T - 1):
            m.add_implication(self.idle[s], self.idle[s + 1])

        # redundant precedences between op positions
        self.pos = {o: sum(s * self.run[o, s] for s in range(est[o], lst[o] + 1)) for o in est}
        for u, v in g.dag.edges:
            m.add(self.pos[v] >= self.pos[u] + 1)

        # memory during each step ≤ P ≤ B
        ws = working_set_bound(g, target)
        ub = sum(g.size(t) for t in self.l1)
        if peak_ub is not None:
            ub = min(ub, peak_ub)
        if budget is not None:
            ub = min(ub, budget)
        self.P_lo, self.P_hi = ws, max(ws, ub)
        self.P = m.new_int_var(self.P_lo, self.P_hi, "P")
        mem: list[list] = [[] for _ in range(T)]
        for t in self.lo:
            size = g.size(t)
            if not size:
                continue
            for s in range(self.lo[t], self.hi[t] + 1):
                mem[s].append(size * self.in1(t, s))
                mem[s].append(size * self.fr_v[t, s])
        for s in range(T):
            if mem[s]:
                m.add(sum(mem[s]) <= self.P)
        self.traffic = sum(g.size(t) * v for (t, _s), v in self.ld_v.items()) + sum(
            g.size(t) * v for (t, _s), v in self.st_v.items()
        )
        self.steps = T - sum(self.idle)

    # literal accessors (constants outside the windows)
    def done(self, o: str, s: int):
        if s < self.est[o]:
            return self.FALSE
        if s >= self.lst[o]:
            return self.TRUE
        return self.done_v[o, s]

    def inl(self, t: str, s: int):
        if t in self.src:
            return self.TRUE
        if t not in self.st_lo or s < self.st_lo[t]:
            return self.FALSE
        if s >= self.st_hi[t]:
            return self.stored_v[t]
        return self.inl_v[t, s]

    def in1(self, t: str, s: int):
        return self.in1_v.get((t, s), self.FALSE)

    def ld(self, t: str, s: int):
        return self.ld_v.get((t, s), self.FALSE)

    def alldone(self, t: str, s: int):
        cons = self.g.consumers[t]
        if not cons:
            return self.TRUE
        if len(cons) == 1:
            return self.done(cons[0], s)
        if (t, s) in self.alldone_v:
            return self.alldone_v[t, s]
        return self.FALSE if s < min(self.est[c] for c in cons) else self.TRUE

    # hints and extraction
    def hint(self, sched: Schedule) -> None:
        """Hint every decision and state variable from a canonical schedule."""
        m, g = self.m, self.g
        m.clear_hints()
        m.add_hint(self.TRUE, 1)
        at: dict[tuple[str, str], int] = {}
        for i, st in enumerate(sched.steps):
            at[st] = i
        for (o, s), v in self.run.items():
            m.add_hint(v, at.get(("R", o)) == s)
        for (t, s), v in self.st_v.items():
            m.add_hint(v, at.get(("S", t)) == s)
        for t, v in self.stored_v.items():
            if v is not self.TRUE:
                m.add_hint(v, ("S", t) in at)
        lds = {(n, i) for i, (k, n) in enumerate(sched.steps) if k == "L"}
        for (t, s), v in self.ld_v.items():
            m.add_hint(v, (t, s) in lds)
        for s, v in enumerate(self.any_ld):
            m.add_hint(v, s < len(sched.steps) and sched.steps[s][0] == "L")
        for s, v in enumerate(self.idle):
            m.add_hint(v, s >= len(sched.steps))
        for (o, s), v in self.done_v.items():
            m.add_hint(v, at[("R", o)] <= s)
        for (t, s), v in self.inl_v.items():
            m.add_hint(v, ("S", t) in at and at[("S", t)] <= s)
        for (t, s), v in self.alldone_v.items():
            m.add_hint(v, all(at[("R", c)] <= s for c in g.consumers[t]))
        res: set[str] = set()
        frees = {(t, i) for i, fl in enumerate(sched.frees) for t in fl}
        state: list[set[str]] = []
        for i, (k, n) in enumerate(sched.steps):
            if k == "L":
                res.add(n)
            elif k == "R":
                res.update(t for t in g.op(n).outputs if t in self.lo)
            res -= set(sched.frees[i])
            state.append(set(res))
        for (t, s), v in self.in1_v.items():
            m.add_hint(v, s < len(state) and t in state[s])
        for (t, s), v in self.fr_v.items():
            m.add_hint(v, (t, s) in frees)
        peak = 0
        for i in range(len(sched.steps)):
            occ = state[i] | set(sched.frees[i])
            peak = max(peak, sum(g.size(t) for t in occ))
        m.add_hint(self.P, min(max(peak, self.P_lo), self.P_hi))

    def extract(self, solver: cp_model.CpSolver) -> Schedule:
        T = self.T
        step_of: list[tuple[str, str] | None] = [None] * T
        for (o, s), v in self.run.items():
            if solver.Value(v):
                step_of[s] = ("R", o)
        for (t, s), v in self.ld_v.items():
            if solver.Value(v):
                step_of[s] = ("L", t)
        for (t, s), v in self.st_v.items():
            if solver.Value(v):
                step_of[s] = ("S", t)
        frees: list[list[str]] = [[] for _ in range(T)]
        for (t, s), v in self.fr_v.items():
            if solver.Value(v):
                frees[s].append(t)
        steps, fl = [], []
        for s in range(T):
            if step_of[s] is not None:
                steps.append(step_of[s])
                fl.append(sorted(frees[s], key=self.tidx.__getitem__))
        return Schedule(steps, fl, self.g)

    def hint_from_solver(self, solver: cp_model.CpSolver) -> None:
        m = self.m
        m.clear_hints()
        for i in range(len(m.proto.variables)):
            v = m.get_int_var_from_proto_index(i)
            m.add_hint(v, solver.Value(v))


def _solve(
    model: StageModel, objective, time_limit: float, options: SolveOptions, timer: Timer, phase: str
) -> tuple[int, cp_model.CpSolver]:
    model.m.minimize(objective)
    solver = cpsat.make_solver(time_limit, options.workers, options.seed)
    prm = solver.parameters
    if len(model.m.proto.variables) > 5000:
        # probing in presolve grows quadratically on this model (millions of binary clauses)
        # and can eat a short time limit before the hinted solution is even loaded
        prm.presolve_probing_deterministic_time_limit = 0.05
        prm.max_presolve_iterations = 1
    status = solver.solve(model.m, _Callback(options, timer, phase))
    return status, solver


def solve_stage_model(
    graph: Graph,
    target: Target,
    hint: Schedule,
    mode: str,
    options: SolveOptions,
    time_limit: float,
    horizon: int | None = None,
    timer: Timer | None = None,
) -> StageModelResult:
    """Two lexicographic CP-SAT solves of the timestep model, hinted with `hint`."""
    timer = timer or Timer()
    t0 = timer.elapsed
    T = max(horizon or 0, len(hint.steps))
    hint_peak = simulate(graph, target.with_budget(None), hint.stages()).metrics.peak_l1_bytes
    model = StageModel(graph, target, T, target.budget, hint_peak if mode == "peak" else None)
    model.hint(hint)
    res = StageModelResult(None, mode, T)
    first, second = (model.P, model.traffic) if mode == "peak" else (model.traffic, model.P)
    left = time_limit - (timer.elapsed - t0)
    status, solver = _solve(model, first, 0.6 * left, options, timer, f"{mode}: phase 1")
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        res.notes.append(f"phase 1: {solver.status_name(status)}")
        return res
    v1 = int(round(solver.ObjectiveValue()))
    b1 = cpsat.ceil_bound(solver.BestObjectiveBound())
    opt1 = status == cp_model.OPTIMAL
    res.schedule = model.extract(solver)
    model.hint_from_solver(solver)
    model.m.add(first <= v1)
    left = time_limit - (timer.elapsed - t0)
    status2, solver2 = _solve(model, second * (T + 1) + model.steps, left, options, timer, f"{mode}: phase 2")
    opt2 = False
    if status2 in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        res.schedule = model.extract(solver2)
        opt2 = status2 == cp_model.OPTIMAL
        solver = solver2
    else:
        res.notes.append(f"phase 2: {solver2.status_name(status2)}")
    res.peak = int(solver.Value(model.P))
    res.traffic = int(solver.Value(model.traffic))
    if mode == "peak":
        res.peak_bound = b1
    else:
        res.traffic_bound = b1
    res.optimal = opt1 and opt2
    res.horizon_sufficient = _horizon_sufficient(graph, target, T, mode, v1, b1)
    return res


def horizon_needed(graph: Graph, target: Target, traffic: int) -> int:
    """Steps that suffice for every plan with at most `traffic` L+S bytes (canonical form).

    #R + one step per compulsory transfer + (traffic - compulsory) / smallest non-zero
    transfer; zero-size tensors never need a second transfer (they occupy no memory and can
    stay resident), so a plan cheaper than `traffic` never needs more steps than this.
    """
    g = graph
    sizes = [g.size(t) for t in g.tensors if target.occupies_l1(g.tensors[t]) and g.size(t) > 0]
    ncomp = sum(
        1
        for t, x in g.tensors.items()
        if x.kind == "output" or (x.kind in ("input", "weight") and g.consumers[t] and target.occupies_l1(g.tensors[t]))
    )
    extra = max(0, traffic - compulsory_traffic(g, target)) // min(sizes) if sizes else 0
    return len(g.ops) + ncomp + extra


def _horizon_sufficient(graph: Graph, target: Target, T: int, mode: str, value: int, bound: int) -> bool:
    """Whether no better plan can need more than T steps (so a horizon proof is a real proof)."""
    if mode == "peak":
        return value <= working_set_bound(graph, target)  # reaches the order-free lower bound
    return T >= horizon_needed(graph, target, value)


def solve_cpsat_stage(graph: Graph, target: Target, options: SolveOptions | None = None) -> Plan:
    """Reference timestep CP-SAT model, hinted by and never worse than the spill heuristics."""
    options = options or SolveOptions()
    timer = Timer()
    check_fits(graph, target)
    B = target.budget
    cands = candidate_plans(graph, target, name=NAME)
    nospill_fits = any(pl.solver.facts.get("spill") == "none" for pl in cands)
    forced = B is not None and not nospill_fits
    mode = "traffic" if options.objective == "traffic" or forced else "peak"
    if options.hint is not None and (B is None or options.hint.metrics.arena_bytes <= B):
        cands.append(options.hint)  # the portfolio's best so far
    heur = min(cands, key=lambda pl: plan_key(pl, mode))
    if mode == "traffic" and heur.metrics.spill_traffic_bytes > 0 and B is not None:
        # exact spills for the hint's order (the fixed-order model is tiny): a better hint
        # and a shorter horizon for the timestep model
        order = [s.name for s in heur.stages if s.kind == "R"]
        fixed = solve_order(graph, target, order, options, min(2.0, 0.1 * options.time_limit), heur.stages)
        if fixed.plan is not None and plan_key(fixed.plan, mode) < plan_key(heur, mode):
            heur = fixed.plan
    hint = canonicalize(graph, target, heur.stages)
    T = max(options.horizon or 0, len(hint.steps) + options.slack)
    left = options.time_limit - timer.elapsed
    facts = {"mode": mode, "horizon": T, "hint": {"solver": heur.solver.name, **heur.solver.facts}}
    cells = T * sum(1 for t in graph.tensors.values() if target.occupies_l1(t))
    max_cells = options.max_cells if options.max_cells is not None else int(MAX_CELLS_PER_S * max(0.0, left))
    if cells > max_cells:
        # building the model alone (Python, O(T·|V|)) would overrun the time limit: keep the
        # (fixed-order refined) hint, which is what the model would start from anyway
        res = StageModelResult(None, mode, T, notes=[f"model too large for the time left ({cells} cells)"])
    else:
        res = solve_stage_model(graph, target, hint, mode, options, left, T, timer)
    if mode == "traffic" and res.optimal and not res.horizon_sufficient and res.traffic is not None:
        # the proof holds for horizon T only; when a horizon long enough for any cheaper plan
        # is affordable, prove again there (hinted with the schedule just found)
        need = horizon_needed(graph, target, res.traffic)
        left = options.time_limit - timer.elapsed
        if need <= max(3 * T, 60) and left > 1.0 and res.schedule is not None:
            res2 = solve_stage_model(graph, target, res.schedule, mode, options, left, need, timer)
            if res2.schedule is not None and (res2.traffic or 0) <= res.traffic:
                res = res2
                T = need
                facts["horizon"] = T
    best = heur
    how = "heuristic (cp-sat found nothing better)"
    if res.schedule is not None:
        stages = res.schedule.stages()
        left = options.time_limit - timer.elapsed
        laid, arena, lname = layout_stages(graph, target, stages, options, min(left, 10.0))
        if B is None or arena <= B:
            plan = finalize(Plan(graph, target, laid, SolverInfo(NAME, "feasible")))
            if plan_key(plan, mode) < plan_key(heur, mode):
                best, how = plan, f"cp-sat schedule, layout {lname}"
        else:
            res.notes.append(f"layout arena {arena} exceeds budget {B}; kept heuristic plan")
    ws = working_set_bound(graph, target)
    m = best.metrics
    bound = max(ws, res.peak_bound)
    proven = res.optimal and res.horizon_sufficient
    if proven:
        if mode == "peak":
            status = "optimal" if m.arena_bytes <= res.peak_bound else "feasible"
            status = (
                status
                if m.spill_traffic_bytes <= (res.traffic or 0) - compulsory_traffic(graph, target)
                else "feasible"
            )
        else:
            status = "optimal" if m.traffic_bytes <= res.traffic_bound else "feasible"
    else:
        status = "feasible" if best is not heur or heur.solver.name == "cpsat-spill" else "heuristic"
    if best is heur and status == "feasible" and heur.solver.name != "cpsat-spill":
        status = "heuristic"
    spill_bound = max(0, res.traffic_bound - compulsory_traffic(graph, target)) if res.traffic_bound else 0
    facts.update(
        {
            "how": how,
            "peak_model": res.peak,
            "traffic_model": res.traffic,
            "traffic_bound": res.traffic_bound if mode == "traffic" else None,
            "proven_within_horizon": res.optimal,
            "horizon_sufficient": res.horizon_sufficient,
            "notes": res.notes,
        }
    )
    if mode == "peak":
        info = SolverInfo(NAME, status, bound, timer.elapsed, options.params(), facts, "arena")
    else:
        info = SolverInfo(NAME, status, spill_bound, timer.elapsed, options.params(), facts, "traffic")
    return with_solver(best, info)
