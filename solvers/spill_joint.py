"""The joint order + spill model: which op runs where and which tensor gaps are spilled,
in one CP-SAT model (raw bytes).

Its optimum is the least non-compulsory traffic over all orders, a lower bound for every
plan within the budget (offsets only add constraints), and CP-SAT proves it for graphs
of ~20-40 ops in seconds; `cpsat_spill.solve_cpsat_spill` runs it to close its gap and to
propose orders. The canonical form and the gap structure it lifts are in spill_gaps.

In steps: `build_joint_model` (variables, constraints, objective: a `JointModel` of handles),
`hint_joint_model` (an order and, optionally, a plan for it), `cpsat.solve`, `decode`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ortools.sat.python import cp_model

from planner.graph import Graph
from planner.plan import Stage
from planner.solvers import cpsat
from planner.solvers.reach import Reach
from planner.solvers.spill_gaps import FixedOrder
from planner.target import Target


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
    return Reach(graph).free_positions()


@dataclass
class JointModel:
    """Handles of the joint model (see `build_joint_model`)."""

    m: cp_model.CpModel
    ops: list[str]
    est: dict[str, int]  # earliest position of each op
    lst: dict[str, int]  # latest position of each op
    x: dict[tuple[str, int], cp_model.IntVar]  # op o at position i
    # t resident while the op at position i runs; t loaded right before position i
    resident: dict[tuple[str, int], cp_model.IntVar] = field(default_factory=dict)
    load: dict[tuple[str, int], cp_model.IntVar] = field(default_factory=dict)
    store: dict[str, cp_model.IntVar] = field(default_factory=dict)  # activation t stored (evicted)
    spill: cp_model.IntVar | None = None  # the objective: non-compulsory traffic, raw bytes

    def positions(self, op: str) -> range:
        """The positions op `op` may take in any topological order."""
        return range(self.est[op], self.lst[op] + 1)


def build_joint_model(graph: Graph, target: Target) -> JointModel:
    """Order and spills together, raw bytes: ``x[o,i]`` (op o at position i, one-hot both
    ways), ``r[t,i]`` (t resident while the op at position i runs), loads where residency
    starts without production, one store per evicted activation. Memory per position ≤ B;
    the objective (minimised) is the non-compulsory traffic.

    Dominance (keeps an optimal plan, cuts symmetric ones): a tensor resident at a position
    where it is neither used nor produced is resident at both neighbouring positions —
    residency only starts at a use (load right before it) and only ends at a use or the
    production (free right after), the canonical form of spill_gaps. With the
    order fixed this is exactly the gap model, so the optimum is min over orders of the
    fixed-order optimum: a lower bound for every plan (offsets only add constraints).
    """
    budget = target.budget
    assert budget is not None
    jm = _add_positions(graph)
    n = len(jm.ops)
    mem: list[list] = [[] for _ in range(n)]
    cost: list = []
    comp = 0  # the sources' first loads, compulsory (graph outputs' stores are not in the cost)
    for t, tt in graph.tensors.items():
        if not target.occupies_l1(tt):
            continue
        if tt.kind in ("input", "weight"):
            if not graph.consumers[t]:
                continue
            comp += graph.size(t)
        _add_tensor(jm, graph, t, mem, cost)
    for i in range(n):
        if mem[i]:
            jm.m.add(sum(mem[i]) <= budget)
    jm.spill = jm.m.new_int_var(0, sum(graph.size(t) for t in graph.tensors) * 2 * max(1, n), "spill")
    jm.m.add(jm.spill == sum(cost) - comp)
    jm.m.minimize(jm.spill)
    return jm


def _add_positions(graph: Graph) -> JointModel:
    """The one-hot position of every op inside its window, one op per position, DAG order."""
    ops = [o.name for o in graph.ops]
    n = len(ops)
    reach = Reach(graph)
    est = {o: reach.window(o)[0] for o in ops}
    lst = {o: reach.window(o)[1] for o in ops}
    m = cp_model.CpModel()
    x = {(o, i): m.new_bool_var(f"x_{o}_{i}") for o in ops for i in range(est[o], lst[o] + 1)}
    jm = JointModel(m, ops, est, lst, x)
    at: list[list] = [[] for _ in range(n)]
    for (_o, i), v in x.items():
        at[i].append(v)
    for o in ops:
        m.add_exactly_one(x[o, i] for i in jm.positions(o))
    for i in range(n):
        m.add_exactly_one(at[i])
    pos = {o: sum(i * x[o, i] for i in jm.positions(o)) for o in ops}
    for u, v in graph.dag.edges:
        m.add(pos[v] >= pos[u] + 1)
    return jm


def _add_tensor(jm: JointModel, graph: Graph, t: str, mem: list[list], cost: list) -> None:
    """Residency of tensor t at the positions it may be needed, its loads and its store;
    its bytes join `mem` (per position) and its traffic `cost`."""
    m, x, est, lst = jm.m, jm.x, jm.est, jm.lst
    cons = list(dict.fromkeys(graph.consumers[t]))
    p = graph.producer.get(t)
    if graph.tensors[t].kind in ("input", "weight"):
        lo, hi = min(est[c] for c in cons), max(lst[c] for c in cons)
    else:
        lo, hi = est[p], max([lst[p], *(lst[c] for c in cons)])
    users = cons + ([p] if p else [])
    sz = graph.size(t)
    need = {i: [x[o, i] for o in users if (o, i) in x] for i in range(lo, hi + 1)}
    r = {i: m.new_bool_var(f"r_{t}_{i}") for i in range(lo, hi + 1)}
    for i in r:
        jm.resident[t, i] = r[i]
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
        return
    loads = []
    for i in r:  # a load where residency starts without the production
        prod = x[p, i] if p is not None and (p, i) in x else 0
        jm.load[t, i] = ld = m.new_bool_var(f"l_{t}_{i}")
        m.add(ld >= r[i] - (r[i - 1] if i - 1 in r else 0) - prod)
        loads.append(ld)
    cost.append(sz * sum(loads))
    if graph.tensors[t].kind == "activation" and cons:
        jm.store[t] = st = m.new_bool_var(f"s_{t}")
        for ld in loads:
            m.add_implication(ld, st)
        cost.append(sz * st)


def hint_joint_model(
    jm: JointModel, graph: Graph, target: Target, order: Sequence[str], stages: Sequence[Stage] | None = None
) -> None:
    """Hint the positions of `order` and, given a valid plan `stages` for it, the canonical
    residencies, loads and stores of its spill decisions (`FixedOrder.keep_of_plan`, the
    one replay of what is resident before each R)."""
    hp = {o: i for i, o in enumerate(order)}
    for (o, i), v in jm.x.items():
        jm.m.add_hint(v, hp[o] == i)
    if stages is None:
        return
    fo = FixedOrder(graph, target, order)
    keep = fo.keep_of_plan(stages)
    kept = {(gp.t, i) for gp, k in zip(fo.gaps, keep, strict=True) if k for i in range(gp.lo, gp.hi + 1)}

    def resident(t: str, i: int) -> bool:
        return i in fo.events.get(t, []) or (t, i) in kept

    for (t, i), v in jm.resident.items():
        jm.m.add_hint(v, resident(t, i))
    for (t, i), v in jm.load.items():
        ev = fo.events.get(t, [])
        src = graph.tensors[t].kind in ("input", "weight")
        jm.m.add_hint(v, resident(t, i) and not resident(t, i - 1) and (src or i != ev[0]))
    for t, v in jm.store.items():
        jm.m.add_hint(v, t in fo.gaps_of and not all(keep[k] for k in fo.gaps_of[t]))


def decode(jm: JointModel, solver: cp_model.CpSolver, status: int) -> JointResult:
    """The order, traffic and bound of a solve (bound 0 when the model was proved infeasible)."""
    bound = max(0, cpsat.proven_bound(solver, status) or 0)
    if status not in cpsat.SOLVED:
        return JointResult(None, None, bound if status == cp_model.UNKNOWN else 0, False, solver.status_name(status))
    order = sorted(jm.ops, key=lambda o: next(i for i in jm.positions(o) if solver.value(jm.x[o, i])))
    val = int(solver.value(jm.spill))
    return JointResult(order, val, min(bound, val), status == cp_model.OPTIMAL, solver.status_name(status))


def solve_joint(
    graph: Graph,
    target: Target,
    hint_order: Sequence[str] | None,
    hint_stages: Sequence[Stage] | None,
    time_limit: float,
    workers: int = 1,
    seed: int = 0,
) -> JointResult:
    """The least non-compulsory traffic over all orders (`build_joint_model`), hinted by
    `hint_order` (and `hint_stages`, a valid plan for it, when given)."""
    jm = build_joint_model(graph, target)
    if hint_order is not None:
        hint_joint_model(jm, graph, target, hint_order, hint_stages)
    status, solver = cpsat.solve(jm.m, max(0.1, time_limit), workers, seed)
    return decode(jm, solver, status)
