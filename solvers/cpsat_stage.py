"""The reference timestep model of DESIGN §3: one stage per step, residency per step.

Variables, for each step t < T (T = the hint plan's step count, tight):
``run[o,t]`` (R o), ``ld[x,t]`` (L x), ``st[x,t]`` (S x), ``idle[t]``; the state after step
t: ``in1[x,t]`` (x resident in L1), ``inL(x,t)`` (x has an LLB copy), ``done(o,t)``.

**Frees are attached to steps.** ``fr[x,t]`` frees x right after the stage of step t; when the
plan is written out each free becomes its own F stage. This is exact, not a relaxation: an
F never raises memory nor enables anything but a later placement, so moving it to right
after the stage it follows changes neither peak nor traffic, and steps = L + R + S + F with
#F = #residencies. It removes a factor of ~2 from the horizon and most F symmetry.

The model is built by one function per group of constraints, in this order:
`_add_variables` (over the windows of `_op_windows` / `_tensor_windows`), `_add_op_rules`
(every op runs once), `_add_llb_copies` (stores, LLB copies), `_add_alldone`,
`_add_residency` (transitions, the F precondition), `_add_run_needs_inputs`,
`_add_stores` (S needs the tensor resident), `_add_loads` (L needs an LLB copy and the
tensor absent), `_add_steps` (one stage per step), `_add_precedences` and `_add_memory`
(memory during step t, resident before + what the step creates, ≤ P ≤ B), then the
objective terms (`_add_objective_terms`). Every rule of §1 is one of them; in-place weights
never appear; outputs end in LLB.

Dominance rules (symmetry breaking), each a function of its own and switched by name
(`StageModel(dominance=...)`, default all of `DOMINANCE`); each keeps at least one optimal
plan (proof sketch at the function; tests/test_dominance.py checks each against brute force):

- ``store-after-producer`` (`_store_after_producer`): a store comes right after the
  producer, in a block of sibling outputs by tensor index (its window shrinks to match);
- ``free-at-use`` (`_free_at_use`): a residency is freed only right after a step that
  uses, produces or stores the tensor;
- ``free-when-done`` (`_free_when_done`): and it is freed once nothing needs it (the
  residency window ends at the last use or store);
- ``load-before-use`` (`_load_before_use`): loads come in a block right before a consuming R;
- ``load-order`` (`_load_order`): a block of loads is sorted by tensor index;
- ``idle-at-end`` (`_idle_at_end`): idle steps only at the end.

Stores happen at most once (the LLB-copy chain counts them). Redundant: time windows from
ancestor/descendant counts (`Reach`), precedences between op positions, P ≥ the largest
working set. Cell-wise rules (a tensor and a step) are applied in one loop per group, so
the model is the same, constraint for constraint, whichever way it is read.

Objective, lexicographic by two solves: ``peak``: P, then traffic·(T+1) + steps;
``traffic`` (default whenever the budget forces spills): traffic within B, then P·(T+1) +
steps. Raw bytes are counted (like the simulator's peak); offsets are laid out afterwards
over the residencies with the layout heuristics (or `cpsat_layout.optimal_layout` if
present). The plan is never worse than the heuristic plan that hinted it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ortools.sat.python import cp_model

from planner.bounds import compulsory_traffic, working_set_bound
from planner.graph import Graph
from planner.plan import Plan, SolverInfo
from planner.replay import residencies
from planner.simulate import simulate, with_solver
from planner.solvers import cpsat
from planner.solvers.base import SolveOptions, Timer, finalize_within_llb
from planner.solvers.cpsat_layout import layout_stages
from planner.solvers.cpsat_spill import solve_order
from planner.solvers.heuristics.spill import candidate_plans, check_fits, plan_key
from planner.solvers.reach import Reach
from planner.solvers.schedule import Schedule, canonicalize
from planner.target import Target

NAME = "cpsat-stage"
# steps × L1 tensors the model may have per second of time limit (building it is Python
# work of roughly a few µs per cell and variable, solving needs the rest)
MAX_CELLS_PER_S = 2500
# past this many variables, presolve probing is cut short (see `_solve`)
PROBING_MAX_VARS = 5000
# a proof on a longer horizon is attempted when it needs at most max(factor·T, min) steps
REPROVE_HORIZON_FACTOR = 3
REPROVE_HORIZON_MIN = 60


@dataclass(frozen=True)
class Shares:
    """Every share of the time limit `cpsat-stage` spends, in one table (fractions unless
    the name says seconds)."""

    fixed_order: float = 0.1  # of the limit: exact spills for the hint's order (cpsat_spill) ...
    fixed_order_max_s: float = 2.0  # ... at most
    phase1: float = 0.6  # of the time left: the first objective (the second gets the rest)
    reprove_min_s: float = 1.0  # a proof on a longer horizon needs at least this left
    layout_max_s: float = 10.0  # laying out the schedule found, at most
    probing_s: float = 0.05  # presolve probing (deterministic time) on models past PROBING_MAX_VARS


SHARES = Shares()

# -- dominance rules, by name (see the module docstring and each rule's function) ------------
STORE_AFTER_PRODUCER = "store-after-producer"
FREE_AT_USE = "free-at-use"
FREE_WHEN_DONE = "free-when-done"
LOAD_BEFORE_USE = "load-before-use"
LOAD_ORDER = "load-order"
IDLE_AT_END = "idle-at-end"
DOMINANCE: tuple[str, ...] = (
    STORE_AFTER_PRODUCER,
    FREE_AT_USE,
    FREE_WHEN_DONE,
    LOAD_BEFORE_USE,
    LOAD_ORDER,
    IDLE_AT_END,
)


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


class StageModel:
    """The CP-SAT model for horizon T (see the module docstring): windows, variables and
    their literal accessors, the hint and the decoding. `dominance` names the dominance
    rules to include (default all)."""

    def __init__(
        self,
        graph: Graph,
        target: Target,
        horizon: int,
        budget: int | None,
        peak_ub: int | None,
        dominance: Iterable[str] = DOMINANCE,
    ) -> None:
        self.dominance = frozenset(dominance)
        unknown = self.dominance - set(DOMINANCE)
        if unknown:
            raise ValueError(f"unknown dominance rules {sorted(unknown)}; known: {', '.join(DOMINANCE)}")
        self.g, self.tg, self.T = graph, target, horizon
        self.m = cp_model.CpModel()
        _classify_tensors(self)
        _op_windows(self, Reach(graph))
        _tensor_windows(self)
        _add_variables(self)
        _add_op_rules(self)
        _add_llb_copies(self)
        _add_alldone(self)
        _add_residency(self)
        _add_run_needs_inputs(self)
        _add_stores(self)
        _add_loads(self)
        _add_steps(self)
        _add_precedences(self)
        _add_memory(self, budget, peak_ub)
        _add_objective_terms(self)

    # literal accessors (constants outside the windows)
    def done(self, o: str, s: int):
        """Literal: op `o` has run by the end of step `s` (constant outside its window)."""
        if s < self.est[o]:
            return self.FALSE
        if s >= self.lst[o]:
            return self.TRUE
        return self.done_v[o, s]

    def inl(self, t: str, s: int):
        """Literal: tensor `t` has an LLB copy after step `s`."""
        if t in self.src:
            return self.TRUE
        if t not in self.st_lo or s < self.st_lo[t]:
            return self.FALSE
        if s >= self.st_hi[t]:
            return self.stored_v[t]
        return self.inl_v[t, s]

    def in1(self, t: str, s: int):
        """Literal: tensor `t` is resident in L1 after step `s`."""
        return self.in1_v.get((t, s), self.FALSE)

    def ld(self, t: str, s: int):
        """Literal: step `s` loads tensor `t`."""
        return self.ld_v.get((t, s), self.FALSE)

    def alldone(self, t: str, s: int):
        """Literal: every consumer of `t` has run by the end of step `s`."""
        cons = self.g.consumers[t]
        if not cons:
            return self.TRUE
        if len(cons) == 1:
            return self.done(cons[0], s)
        if (t, s) in self.alldone_v:
            return self.alldone_v[t, s]
        return self.FALSE if s < min(self.est[c] for c in cons) else self.TRUE

    def residency_steps(self, t: str) -> range:
        """The steps at which tensor t may be resident, created or freed."""
        return range(self.lo[t], self.hi[t] + 1)

    def store_steps(self, t: str) -> range:
        """The steps at which `t` may be stored."""
        return range(self.st_lo[t], self.st_hi[t] + 1)

    # hints and extraction
    def hint(self, sched: Schedule) -> None:
        """Hint every decision and state variable from a canonical schedule."""
        m, g = self.m, self.g
        m.clear_hints()
        m.add_hint(self.TRUE, 1)
        n = len(sched.steps)
        at = {st: i for i, st in enumerate(sched.steps)}
        for (o, s), v in self.run.items():
            m.add_hint(v, at.get(("R", o)) == s)
        for (t, s), v in self.st_v.items():
            m.add_hint(v, at.get(("S", t)) == s)
        for t, v in self.stored_v.items():
            if v is not self.TRUE:
                m.add_hint(v, ("S", t) in at)
        for (t, s), v in self.ld_v.items():
            m.add_hint(v, s < n and sched.steps[s] == ("L", t))
        for s, v in enumerate(self.any_ld):
            m.add_hint(v, s < n and sched.steps[s][0] == "L")
        for s, v in enumerate(self.idle):
            m.add_hint(v, s >= n)
        for (o, s), v in self.done_v.items():
            m.add_hint(v, at[("R", o)] <= s)
        for (t, s), v in self.inl_v.items():
            m.add_hint(v, at.get(("S", t), s + 1) <= s)
        for (t, s), v in self.alldone_v.items():
            m.add_hint(v, all(at[("R", c)] <= s for c in g.consumers[t]))
        during = resident_during_steps(g, sched)
        for (t, s), v in self.in1_v.items():
            m.add_hint(v, s < n and t in during[s] and t not in sched.frees[s])
        for (t, s), v in self.fr_v.items():
            m.add_hint(v, s < n and t in sched.frees[s])
        peak = max((sum(g.size(t) for t in res) for res in during), default=0)
        m.add_hint(self.P, min(max(peak, self.P_lo), self.P_hi))

    def extract(self, solver: cp_model.CpSolver) -> Schedule:
        """The schedule of the solver's solution (idle steps dropped)."""
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
        """Hint every variable with its value in `solver`'s solution (for the second solve)."""
        m = self.m
        m.clear_hints()
        for i in range(len(m.proto.variables)):
            v = m.get_int_var_from_proto_index(i)
            m.add_hint(v, solver.Value(v))


def resident_during_steps(graph: Graph, sched: Schedule) -> list[set[str]]:
    """Per step of `sched`: the tensors resident while its stage runs (what it creates
    included, what it frees not yet gone), by the one replay of `planner.replay`."""
    step_of = [i for i, fl in enumerate(sched.frees) for _ in range(1 + len(fl))]  # stage -> step
    during: list[set[str]] = [set() for _ in sched.steps]
    for r in residencies(graph, sched.stages()):
        last = step_of[r.end] if r.end < len(step_of) else len(sched.steps) - 1
        for s in range(step_of[r.start], last + 1):
            during[s].add(r.tensor)
    return during


# -- windows ----------------------------------------------------------------------------------
def _classify_tensors(sm: StageModel) -> None:
    """Which tensors the model has: in L1 at all, sources (start in LLB), storable, loadable."""
    g = sm.g
    sm.tidx = {t: i for i, t in enumerate(g.tensors)}
    sm.kind = {t: x.kind for t, x in g.tensors.items()}
    sm.l1 = [t for t in g.tensors if sm.tg.occupies_l1(g.tensors[t])]
    sm.src = [t for t in sm.l1 if sm.kind[t] in ("input", "weight") and g.consumers[t]]
    acts = [t for t in sm.l1 if sm.kind[t] in ("activation", "output")]
    sm.storable = [t for t in acts if sm.kind[t] == "output" or g.consumers[t]]
    sm.loadable = sm.src + [t for t in acts if g.consumers[t]]


def _op_windows(sm: StageModel, reach: Reach) -> None:
    """Earliest / latest step of each op: every ancestor and every source an ancestor (or
    the op) reads needs a step before it, every descendant and every graph output the op
    or a descendant makes (stored after it) a step after it."""
    g, T = sm.g, sm.T
    src_users = [sum(1 << g.op_index[c] for c in g.consumers[t]) for t in sm.src]
    out_makers = [1 << g.op_index[g.producer[t]] for t in g.tensors if sm.kind[t] == "output" and t in g.producer]
    sm.est, sm.lst = {}, {}
    for o in g.ops:
        i = g.op_index[o.name]
        up, down = reach.anc[i] | 1 << i, reach.desc[i] | 1 << i
        sm.est[o.name] = reach.n_anc(o.name) + sum(1 for mask in src_users if mask & up)
        sm.lst[o.name] = T - 1 - reach.n_desc(o.name) - sum(1 for mask in out_makers if mask & down)
        if sm.est[o.name] > sm.lst[o.name]:
            raise ValueError(f"horizon {T} too short for op {o.name}")


def _tensor_windows(sm: StageModel) -> None:
    """Steps at which each tensor may be resident (lo..hi) and stored (st_lo..st_hi).

    A residency ends by the last use or store (``free-when-done``; without it, by the
    horizon); a store comes at most one block of siblings after the producer
    (``store-after-producer``; without it, any time after the production)."""
    g, T, est, lst = sm.g, sm.T, sm.est, sm.lst
    sm.lo, sm.hi, sm.st_lo, sm.st_hi = {}, {}, {}, {}
    for t in sm.l1:
        last = max((lst[c] for c in g.consumers[t]), default=-1)
        if t in sm.src:
            sm.lo[t], sm.hi[t] = 0, last if FREE_WHEN_DONE in sm.dominance else T - 1
            continue
        if sm.kind[t] in ("input", "weight"):
            continue  # never used: never resident
        p = g.producer[t]
        hi = max(last, lst[p])
        if t in sm.storable:
            sm.st_lo[t] = est[p] + 1
            after = STORE_AFTER_PRODUCER in sm.dominance
            sm.st_hi[t] = min(T - 1, lst[p] + len(g.op(p).outputs)) if after else T - 1
            hi = max(hi, sm.st_hi[t])
        sm.lo[t], sm.hi[t] = est[p], hi if FREE_WHEN_DONE in sm.dominance else T - 1


def _load_steps(sm: StageModel, t: str) -> range:
    """A load needs an LLB copy (sources always, activations after their first possible
    store) and an unrun consumer after it."""
    first = 0 if t in sm.src else sm.st_lo[t] + 1
    return range(first, max(sm.lst[c] for c in sm.g.consumers[t]))


# -- variables --------------------------------------------------------------------------------
def _add_variables(sm: StageModel) -> None:
    """Every Boolean of the model, over the windows (P is made with the memory rows)."""
    m, g, T, est, lst = sm.m, sm.g, sm.T, sm.est, sm.lst
    nb = m.new_bool_var
    sm.TRUE = nb("true")
    m.add(sm.TRUE == 1)
    sm.FALSE = sm.TRUE.Not()
    sm.run = {(o, s): nb(f"run_{o}_{s}") for o in est for s in range(est[o], lst[o] + 1)}
    sm.done_v = {(o, s): nb(f"done_{o}_{s}") for o in est for s in range(est[o], lst[o])}
    sm.ld_v = {(t, s): nb(f"ld_{t}_{s}") for t in sm.loadable for s in _load_steps(sm, t)}
    sm.st_v = {(t, s): nb(f"st_{t}_{s}") for t in sm.storable for s in sm.store_steps(t)}
    sm.stored_v = {t: sm.TRUE if sm.kind[t] == "output" else nb(f"stored_{t}") for t in sm.storable}
    sm.inl_v = {(t, s): nb(f"inL_{t}_{s}") for t in sm.storable for s in range(sm.st_lo[t], sm.st_hi[t])}
    sm.in1_v = {(t, s): nb(f"in1_{t}_{s}") for t in sm.lo for s in range(sm.lo[t], sm.hi[t])}
    sm.fr_v = {(t, s): nb(f"fr_{t}_{s}") for t in sm.lo for s in sm.residency_steps(t)}
    sm.alldone_v = {}
    for t in sm.lo:
        cons = g.consumers[t]
        if len(cons) >= 2:
            for s in range(min(est[c] for c in cons), max(lst[c] for c in cons)):
                sm.alldone_v[t, s] = nb(f"alldone_{t}_{s}")
    sm.any_ld = [nb(f"anyld_{s}") for s in range(T)]
    sm.idle = [nb(f"idle_{s}") for s in range(T)]


# -- the rules of DESIGN §1 (and the dominance rules that act on the same cells) ---------------
def _add_op_rules(sm: StageModel) -> None:
    """Every op runs exactly once (rule 1); done(o, s) counts it."""
    m = sm.m
    for o in sm.est:
        m.add_exactly_one(sm.run[o, s] for s in range(sm.est[o], sm.lst[o] + 1))
    for o in sm.est:
        for s in range(sm.est[o], sm.lst[o] + 1):
            m.add(sm.done(o, s) == sm.done(o, s - 1) + sm.run[o, s])


def _add_llb_copies(sm: StageModel) -> None:
    """Outputs are stored exactly once (rule 4), other activations at most once; inL(t, s)
    says the copy exists after step s."""
    m = sm.m
    for t in sm.storable:
        ss = [sm.st_v[t, s] for s in sm.store_steps(t)]
        if sm.kind[t] == "output":
            m.add_exactly_one(ss)
        else:
            m.add_at_most_one(ss)
            m.add(sum(ss) == sm.stored_v[t])
    for t in sm.storable:
        for s in sm.store_steps(t):
            m.add(sm.inl(t, s) == sm.inl(t, s - 1) + sm.st_v[t, s])


def _add_alldone(sm: StageModel) -> None:
    """alldone(t, s): every consumer of t has run by step s (defined for ≥ 2 consumers)."""
    m = sm.m
    for (t, s), v in sm.alldone_v.items():
        cons = sm.g.consumers[t]
        for c in cons:
            m.add_implication(v, sm.done(c, s))
        m.add_bool_or([v, *[sm.done(c, s).Not() for c in cons]])


def _add_residency(sm: StageModel) -> None:
    """Per tensor and step: the residency transition and the F precondition, and the two
    free dominance rules when included."""
    for t in sm.lo:
        for s in sm.residency_steps(t):
            _transition(sm, t, s)
            _free_precondition(sm, t, s)
            if FREE_AT_USE in sm.dominance:
                _free_at_use(sm, t, s)
            if FREE_WHEN_DONE in sm.dominance and s < sm.hi[t]:
                _free_when_done(sm, t, s)


def _created(sm: StageModel, t: str, s: int) -> list:
    """The literals that make t resident at step s: its load, its producer's run."""
    p = sm.g.producer.get(t)
    return [sm.ld(t, s)] + ([sm.run[p, s]] if p and (p, s) in sm.run else [])


def _transition(sm: StageModel, t: str, s: int) -> None:
    """Resident after s = resident before + created - freed; L needs t absent (one residency)."""
    created = _created(sm, t, s)
    sm.m.add(sm.in1(t, s) + sm.fr_v[t, s] == sm.in1(t, s - 1) + sum(created))
    sm.m.add(sm.in1(t, s - 1) + sum(created) <= 1)


def _free_precondition(sm: StageModel, t: str, s: int) -> None:
    """F needs an LLB copy or (not for graph outputs) every consumer run (rule 5)."""
    if sm.kind[t] == "output":
        sm.m.add_implication(sm.fr_v[t, s], sm.inl(t, s))
    elif t not in sm.src:
        sm.m.add_bool_or([sm.fr_v[t, s].Not(), sm.inl(t, s), sm.alldone(t, s)])


def _free_at_use(sm: StageModel, t: str, s: int) -> None:
    """Dominance: free only right after a step that uses, produces or stores t. Keeping a
    residency past a use until a step that does not touch t never lowers memory; freeing it
    right after that use instead keeps every later step valid (the next use reloads)."""
    p = sm.g.producer.get(t)
    users = [sm.run[c, s] for c in sm.g.consumers[t] if (c, s) in sm.run]
    if p and (p, s) in sm.run:
        users.append(sm.run[p, s])
    if (t, s) in sm.st_v:
        users.append(sm.st_v[t, s])
    sm.m.add_bool_or([sm.fr_v[t, s].Not(), *users])


def _free_when_done(sm: StageModel, t: str, s: int) -> None:
    """Dominance: no residency once nothing needs it (every consumer run and, for a graph
    output, its LLB copy made): freeing it then only lowers memory."""
    if sm.kind[t] == "output":
        sm.m.add_bool_or([sm.in1(t, s).Not(), sm.alldone(t, s).Not(), sm.inl(t, s).Not()])
    else:
        sm.m.add_implication(sm.in1(t, s), sm.alldone(t, s).Not())


def _add_run_needs_inputs(sm: StageModel) -> None:
    """R o needs every input resident before its step (rule 3: inputs and outputs at once)."""
    for o in sm.g.ops:
        ins = [t for t in dict.fromkeys(o.inputs) if t in sm.lo]
        for s in range(sm.est[o.name], sm.lst[o.name] + 1):
            for t in ins:
                sm.m.add_implication(sm.run[o.name, s], sm.in1(t, s - 1))


def _add_stores(sm: StageModel) -> None:
    """S t needs t resident; with ``store-after-producer``, right after its producer."""
    for t in sm.storable:
        for s in sm.store_steps(t):
            sm.m.add_implication(sm.st_v[t, s], sm.in1(t, s - 1))
            if STORE_AFTER_PRODUCER in sm.dominance:
                _store_after_producer(sm, t, s)


def _store_after_producer(sm: StageModel, t: str, s: int) -> None:
    """Dominance: a store comes right after the producer's R or a sibling's store of lower
    tensor index. A store never costs memory and an earlier LLB copy only adds freedom (it
    may be freed and reloaded sooner), so moving every store up to its producer keeps a
    plan valid and its cost; the siblings' block is then sorted by tensor index."""
    p = sm.g.producer[t]
    sibs = [y for y in sm.g.op(p).outputs if y in sm.storable and sm.tidx[y] < sm.tidx[t]]
    prev = [sm.run[p, s - 1]] if (p, s - 1) in sm.run else []
    prev += [sm.st_v[y, s - 1] for y in sibs if (y, s - 1) in sm.st_v]
    sm.m.add_bool_or([sm.st_v[t, s].Not(), *prev])


def _add_loads(sm: StageModel) -> None:
    """L t needs an LLB copy (sources always have one); any_ld[s]: step s is a load; with
    ``load-before-use`` and ``load-order``, loads come in sorted blocks before a use."""
    m = sm.m
    ld_at: list[list] = [[] for _ in range(sm.T)]
    for (t, s), v in sm.ld_v.items():
        ld_at[s].append((t, v))
        if t not in sm.src:
            m.add_implication(v, sm.inl(t, s - 1))
        if LOAD_BEFORE_USE in sm.dominance:
            _load_before_use(sm, t, s, v)
    for s in range(sm.T):
        m.add(sum(v for _, v in ld_at[s]) == sm.any_ld[s])
    if LOAD_ORDER in sm.dominance:
        _load_order(sm, ld_at)


def _load_before_use(sm: StageModel, t: str, s: int, v) -> None:
    """Dominance: a load is followed by a consumer's R or by another load. Loading later,
    right before the next use, never raises memory (the bytes arrive later) and the LLB
    copy it reads already exists, so every plan has a form where loads sit in a block
    right before the R that needs them."""
    nxt = [sm.run[c, s + 1] for c in sm.g.consumers[t] if (c, s + 1) in sm.run]
    if s + 1 < sm.T:
        nxt.append(sm.any_ld[s + 1])
    sm.m.add_bool_or([v.Not(), *nxt])


def _load_order(sm: StageModel, ld_at: list[list]) -> None:
    """Dominance: two consecutive loads come in increasing tensor index. Permuting a block
    of loads that ends in the same R changes neither memory during the R nor the traffic,
    and the peak inside the block is at most that during the R."""
    rank = [sum((sm.tidx[t] + 1) * v for t, v in ld_at[s]) for s in range(sm.T)]
    for s in range(sm.T - 1):
        if ld_at[s] and ld_at[s + 1]:
            sm.m.add(rank[s] < rank[s + 1]).only_enforce_if([sm.any_ld[s], sm.any_ld[s + 1]])


def _add_steps(sm: StageModel) -> None:
    """Exactly one stage per step (an R, an L, an S, or idle)."""
    per_step: list[list] = [[sm.idle[s]] for s in range(sm.T)]
    for vs in (sm.run, sm.ld_v, sm.st_v):
        for (_x, s), v in vs.items():
            per_step[s].append(v)
    for s in range(sm.T):
        sm.m.add_exactly_one(per_step[s])
    if IDLE_AT_END in sm.dominance:
        _idle_at_end(sm)


def _idle_at_end(sm: StageModel) -> None:
    """Dominance: an idle step is followed by idle steps only. Dropping an idle step and
    appending it at the end shifts later stages by one and changes nothing they see."""
    for s in range(sm.T - 1):
        sm.m.add_implication(sm.idle[s], sm.idle[s + 1])


# -- redundant constraints, memory, objective terms -------------------------------------------
def _add_precedences(sm: StageModel) -> None:
    """Redundant: each op runs after its predecessors (implied by the inputs' residency)."""
    sm.pos = {o: sum(s * sm.run[o, s] for s in range(sm.est[o], sm.lst[o] + 1)) for o in sm.est}
    for u, v in sm.g.dag.edges:
        sm.m.add(sm.pos[v] >= sm.pos[u] + 1)


def _add_memory(sm: StageModel, budget: int | None, peak_ub: int | None) -> None:
    """P ≥ memory during every step (resident before + created = resident after + freed),
    P within [largest working set (redundant), min(everything, peak_ub, budget)]."""
    g = sm.g
    ws = working_set_bound(g, sm.tg)
    ub = sum(g.size(t) for t in sm.l1)
    if peak_ub is not None:
        ub = min(ub, peak_ub)
    if budget is not None:
        ub = min(ub, budget)
    sm.P_lo, sm.P_hi = ws, max(ws, ub)
    sm.P = sm.m.new_int_var(sm.P_lo, sm.P_hi, "P")
    mem: list[list] = [[] for _ in range(sm.T)]
    for t in sm.lo:
        size = g.size(t)
        if not size:
            continue
        for s in sm.residency_steps(t):
            mem[s].append(size * sm.in1(t, s))
            mem[s].append(size * sm.fr_v[t, s])
    for s in range(sm.T):
        if mem[s]:
            sm.m.add(sum(mem[s]) <= sm.P)


def _add_objective_terms(sm: StageModel) -> None:
    """traffic: L + S bytes; steps: the non-idle steps."""
    g = sm.g
    sm.traffic = sum(g.size(t) * v for (t, _s), v in sm.ld_v.items()) + sum(
        g.size(t) * v for (t, _s), v in sm.st_v.items()
    )
    sm.steps = sm.T - sum(sm.idle)


# -- solving ----------------------------------------------------------------------------------
def _solve(
    model: StageModel, objective, time_limit: float, options: SolveOptions, timer: Timer, phase: str
) -> tuple[int, cp_model.CpSolver]:
    model.m.minimize(objective)
    params = {}
    if len(model.m.proto.variables) > PROBING_MAX_VARS:
        # probing in presolve grows quadratically on this model (millions of binary clauses)
        # and can eat a short time limit before the hinted solution is even loaded
        params = {"presolve_probing_deterministic_time_limit": SHARES.probing_s, "max_presolve_iterations": 1}
    reporter = cpsat.Reporter(NAME, options.progress, timer, scale=int, phase=phase)
    return cpsat.solve(model.m, time_limit, options.workers, options.seed, reporter=reporter, params=params)


def solve_stage_model(
    graph: Graph,
    target: Target,
    hint: Schedule,
    mode: str,
    options: SolveOptions,
    time_limit: float,
    horizon: int | None = None,
    timer: Timer | None = None,
    dominance: Iterable[str] = DOMINANCE,
) -> StageModelResult:
    """Two lexicographic CP-SAT solves of the timestep model, hinted with `hint`: the first
    objective (P in mode ``peak``, traffic in mode ``traffic``), then, with it fixed at its
    value, the other one times (T+1) plus the steps. `dominance`: the rules to include."""
    timer = timer or Timer()
    t0 = timer.elapsed
    T = max(horizon or 0, len(hint.steps))
    hint_peak = simulate(graph, target.with_budget(None), hint.stages()).metrics.peak_l1_bytes
    model = StageModel(graph, target, T, target.budget, hint_peak if mode == "peak" else None, dominance)
    model.hint(hint)
    res = StageModelResult(None, mode, T)
    first, second = (model.P, model.traffic) if mode == "peak" else (model.traffic, model.P)
    left = time_limit - (timer.elapsed - t0)
    status, solver = _solve(model, first, SHARES.phase1 * left, options, timer, f"timestep model: least {mode}")
    if status not in cpsat.SOLVED:
        res.notes.append(f"phase 1: {solver.status_name(status)}")
        return res
    v1 = int(round(solver.ObjectiveValue()))
    b1 = cpsat.ceil_bound(solver.BestObjectiveBound())
    res.schedule = model.extract(solver)
    model.hint_from_solver(solver)
    model.m.add(first <= v1)
    left = time_limit - (timer.elapsed - t0)
    status2, solver2 = _solve(
        model,
        second * (T + 1) + model.steps,
        left,
        options,
        timer,
        f"timestep model: then least {'traffic' if mode == 'peak' else 'peak'}",
    )
    if status2 in cpsat.SOLVED:
        res.schedule = model.extract(solver2)
        solver = solver2
    else:
        res.notes.append(f"phase 2: {solver2.status_name(status2)}")
    res.peak = int(solver.Value(model.P))
    res.traffic = int(solver.Value(model.traffic))
    if mode == "peak":
        res.peak_bound = b1
    else:
        res.traffic_bound = b1
    res.optimal = status == cp_model.OPTIMAL and status2 == cp_model.OPTIMAL
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


# -- the solver -------------------------------------------------------------------------------
def _mode_and_hint(graph: Graph, target: Target, options: SolveOptions) -> tuple[str, Plan]:
    """The objective mode (``traffic`` when asked or when the budget forces spills, else
    ``peak``) and the best heuristic plan for it (the portfolio's hint among them), its
    spills made exact for its order by the fixed-order model when it spills."""
    budget = target.budget
    cands = candidate_plans(graph, target, name=NAME)
    nospill_fits = any(pl.solver.facts.get("spill") == "none" for pl in cands)
    forced = budget is not None and not nospill_fits
    mode = "traffic" if options.objective == "traffic" or forced else "peak"
    if options.hint is not None and (budget is None or options.hint.metrics.arena_bytes <= budget):
        cands.append(options.hint)  # the portfolio's best so far
    heur = min(cands, key=lambda pl: plan_key(pl, mode))
    if mode == "traffic" and heur.metrics.spill_traffic_bytes > 0 and budget is not None:
        # exact spills for the hint's order (the fixed-order model is tiny): a better hint
        # and a shorter horizon for the timestep model
        order = [s.name for s in heur.stages if s.kind == "R"]
        time_s = min(SHARES.fixed_order_max_s, SHARES.fixed_order * options.time_limit)
        fixed = solve_order(graph, target, order, options, time_s, heur.stages)
        if fixed.plan is not None and plan_key(fixed.plan, mode) < plan_key(heur, mode):
            heur = fixed.plan
    return mode, heur


def _run_model(
    graph: Graph, target: Target, hint: Schedule, mode: str, T: int, options: SolveOptions, timer: Timer
) -> tuple[StageModelResult, int]:
    """(result, horizon): the model at horizon T unless it is too large to build in the time
    left; a traffic proof that holds for T only is repeated on a horizon long enough for any
    cheaper plan when that is affordable (hinted with the schedule just found)."""
    left = options.time_limit - timer.elapsed
    cells = T * sum(1 for t in graph.tensors.values() if target.occupies_l1(t))
    max_cells = options.max_cells if options.max_cells is not None else int(MAX_CELLS_PER_S * max(0.0, left))
    if cells > max_cells:
        # building the model alone (Python, O(T·|V|)) would overrun the time limit: keep the
        # (fixed-order refined) hint, which is what the model would start from anyway
        return StageModelResult(None, mode, T, notes=[f"model too large for the time left ({cells} cells)"]), T
    res = solve_stage_model(graph, target, hint, mode, options, left, T, timer)
    if mode == "traffic" and res.optimal and not res.horizon_sufficient and res.traffic is not None:
        need = horizon_needed(graph, target, res.traffic)
        left = options.time_limit - timer.elapsed
        if need <= max(REPROVE_HORIZON_FACTOR * T, REPROVE_HORIZON_MIN) and left > SHARES.reprove_min_s:
            if res.schedule is not None:
                res2 = solve_stage_model(graph, target, res.schedule, mode, options, left, need, timer)
                if res2.schedule is not None and (res2.traffic or 0) <= res.traffic:
                    return res2, need
    return res, T


def _lay_out(
    graph: Graph, target: Target, res: StageModelResult, heur: Plan, mode: str, options: SolveOptions, timer: Timer
) -> tuple[Plan, str]:
    """(plan, how): the model's schedule laid out when it fits and beats the heuristic plan."""
    if res.schedule is None:
        return heur, "heuristic (cp-sat found nothing better)"
    left = options.time_limit - timer.elapsed
    laid, arena, lname = layout_stages(graph, target, res.schedule.stages(), options, min(left, SHARES.layout_max_s))
    budget = target.budget
    if budget is not None and arena > budget:
        res.notes.append(f"layout arena {arena} exceeds budget {budget}; kept heuristic plan")
        return heur, "heuristic (cp-sat found nothing better)"
    plan = finalize_within_llb(Plan(graph, target, laid, SolverInfo(NAME, "feasible")))
    if plan is None:  # its stored tensors overflow a bounded LLB
        res.notes.append("schedule needs more LLB than the target has; kept heuristic plan")
        return heur, "heuristic (cp-sat found nothing better)"
    if plan_key(plan, mode) < plan_key(heur, mode):
        return plan, f"cp-sat schedule, layout {lname}"
    return heur, "heuristic (cp-sat found nothing better)"


def _status(graph: Graph, target: Target, res: StageModelResult, best: Plan, heur: Plan, mode: str) -> str:
    """``optimal`` when the model's proof holds beyond its horizon and the plan meets it;
    ``heuristic`` when the plan is the hint's and not a cpsat-spill plan; else ``feasible``."""
    m = best.metrics
    if res.optimal and res.horizon_sufficient:
        if mode == "peak":
            spill_ok = m.spill_traffic_bytes <= (res.traffic or 0) - compulsory_traffic(graph, target)
            status = "optimal" if m.arena_bytes <= res.peak_bound and spill_ok else "feasible"
        else:
            status = "optimal" if m.traffic_bytes <= res.traffic_bound else "feasible"
    else:
        status = "feasible" if best is not heur or heur.solver.name == "cpsat-spill" else "heuristic"
    if best is heur and status == "feasible" and heur.solver.name != "cpsat-spill":
        status = "heuristic"
    return status


def solve_cpsat_stage(graph: Graph, target: Target, options: SolveOptions | None = None) -> Plan:
    """Reference timestep CP-SAT model, hinted by and never worse than the spill heuristics."""
    options = options or SolveOptions()
    timer = Timer()
    check_fits(graph, target)
    mode, heur = _mode_and_hint(graph, target, options)
    hint = canonicalize(graph, target, heur.stages)
    T = max(options.horizon or 0, len(hint.steps) + options.slack)
    res, T = _run_model(graph, target, hint, mode, T, options, timer)
    best, how = _lay_out(graph, target, res, heur, mode, options, timer)
    status = _status(graph, target, res, best, heur, mode)
    facts = {
        "mode": mode,
        "horizon": T,
        "hint": {"solver": heur.solver.name, **heur.solver.facts},
        "how": how,
        "peak_model": res.peak,
        "traffic_model": res.traffic,
        "traffic_bound": res.traffic_bound if mode == "traffic" else None,
        "proven_within_horizon": res.optimal,
        "horizon_sufficient": res.horizon_sufficient,
        "notes": res.notes,
    }
    if mode == "peak":
        bound = max(working_set_bound(graph, target), res.peak_bound)
        info = SolverInfo(NAME, status, bound, timer.elapsed, options.params(), facts, "arena")
    else:
        spill_bound = max(0, res.traffic_bound - compulsory_traffic(graph, target)) if res.traffic_bound else 0
        info = SolverInfo(NAME, status, spill_bound, timer.elapsed, options.params(), facts, "traffic")
    return with_solver(best, info)
