"""The joint order + spill model: which op runs where and which tensor gaps are spilled,
in one CP-SAT model (raw bytes).

Its optimum is the least non-compulsory traffic over all orders, a lower bound for every
plan within the budget (offsets only add constraints), and CP-SAT proves it for graphs
of ~20-40 ops in seconds; `cpsat_spill.solve_cpsat_spill` runs it to close its gap and to
propose orders. The canonical form and the gap structure it lifts are in cpsat_spill.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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
    reach = Reach(g)
    est = {o: reach.window(o)[0] for o in ops}
    lst = {o: reach.window(o)[1] for o in ops}
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
    st, solver = cpsat.solve(m, max(0.1, time_limit), workers, seed)
    bound = max(0, cpsat.proven_bound(solver, st) or 0)
    if st not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return JointResult(None, None, bound if st == cp_model.UNKNOWN else 0, False, solver.status_name(st))
    order = sorted(ops, key=lambda o: next(i for i in range(est[o], lst[o] + 1) if solver.value(x[o, i])))
    val = int(solver.value(obj))
    return JointResult(order, val, min(bound, val), st == cp_model.OPTIMAL, solver.status_name(st))
