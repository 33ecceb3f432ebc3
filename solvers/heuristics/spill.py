"""Spilling under an L1 budget: walk an op order with an L1 of B bytes and evict when full.

Before each op its inputs are made resident (graph inputs and `load` weights are loaded
from LLB lazily, right before their first use; spilled activations are loaded back) and
room is made for its outputs. Offsets are assigned on the fly inside [0, B): a tensor goes
into the smallest free hole that fits; when no hole is big enough, a contiguous window is
cleared by evicting the residents that overlap it. Which window is cleared is the eviction
policy:

- ``belady``: the window whose soonest-needed victim is needed furthest in the future
  (Belady's MIN rule, lifted to contiguous windows because fragmentation is real here);
- ``largest``: a window whose victims are all not needed within the next ``k`` ops, with
  the largest such victim (one big eviction makes room for several later allocations);
  falls back to Belady when every window holds something needed soon;
- ``cost``: the window whose victims cost least to evict — reload bytes, plus store bytes
  for a victim without an LLB copy — each divided by its distance to the next use (a
  tensor already in LLB is half as expensive to drop as a dirty one of the same size).

A victim without an LLB copy that is still needed is stored (S) first. Tensors are freed
right after their last use; graph outputs are stored right after they are produced and
freed once no consumer remains (the stage model allows that, unlike no-spill lowering).
If the fragmented arena cannot host an op at all, everything is flushed and the op's
tensors are packed from offset 0, which always works when B is at least the op's aligned
working set (`planner.bounds.op_need`), the smallest budget any plan can use.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from planner.bounds import min_budget, working_set_bound
from planner.graph import Graph
from planner.plan import Plan, SolverInfo, Stage
from planner.simulate import with_solver
from planner.solvers.base import DoesNotFit, SolveOptions, Timer, finalize_within_llb, nospill_plan, spilling_how
from planner.solvers.heuristic import best_heuristic
from planner.solvers.heuristics.order import ORDERS
from planner.target import Target, format_bytes

POLICIES = ("belady", "largest", "cost")
INF = math.inf


def check_fits(graph: Graph, target: Target) -> None:
    """Raise DoesNotFit when even spilling cannot fit some op's working set into the budget."""
    budget = target.budget
    if budget is None:
        return
    need = min_budget(graph, target)
    if need > budget:
        raise DoesNotFit(budget, need, working_set_bound(graph, target), how=spilling_how(target))


@dataclass
class _Block:
    off: int
    asize: int  # aligned size (occupancy)


class _Blocks:
    """The resident blocks of a walk (those with bytes) sorted by offset, for the window
    queries of one placement: which blocks a range overlaps, and the free span around it,
    in O(log n + overlaps) instead of a scan of every block per candidate window."""

    def __init__(self, blocks: dict[str, _Block]) -> None:
        self.rank = {t: i for i, t in enumerate(blocks)}  # the walk's own order, kept for victims
        items = sorted((b.off, b.off + b.asize, t) for t, b in blocks.items() if b.asize)
        self.offs = [x[0] for x in items]
        self.names = [x[2] for x in items]
        self.ends_by_off = [x[1] for x in items]
        self.ends = sorted(self.ends_by_off)
        self.widest = max((e - o for o, e, _ in items), default=0)
        self.nxt: dict[str, float] = {}  # next use of each block's tensor (the walk fills it in)
        self.size: dict[str, int] = {}  # raw bytes of each block's tensor

    def overlapping(self, start: int, end: int) -> list[str]:
        """Blocks with bytes in [start, end)."""
        lo = bisect.bisect_left(self.offs, start - self.widest)
        hi = bisect.bisect_left(self.offs, end)
        found = [self.names[i] for i in range(lo, hi) if self.ends_by_off[i] > start]
        return sorted(found, key=self.rank.__getitem__)

    def last_end(self, start: int) -> int:
        """The highest block end at or below `start` (0 when none)."""
        i = bisect.bisect_right(self.ends, start)
        return self.ends[i - 1] if i else 0

    def next_start(self, end: int, cap: int) -> int:
        """The lowest block offset at or above `end` (`cap` when none)."""
        i = bisect.bisect_left(self.offs, end)
        return self.offs[i] if i < len(self.offs) else cap


class _SpillWalk:
    """The state of one walk: resident tensors with offsets, LLB copies, emitted stages."""

    def __init__(self, graph: Graph, target: Target, order: Sequence[str], policy: str, k: int) -> None:
        self.g, self.tg, self.order, self.policy, self.k = graph, target, list(order), policy, k
        self.align = target.alignment
        total = sum(target.align(t.bytes) for t in graph.tensors.values())
        self.cap = target.budget if target.budget is not None else total + target.alignment
        pos = {o: i for i, o in enumerate(self.order)}
        self.uses = {t: sorted(pos[c] for c in cs) for t, cs in graph.consumers.items()}
        self.tidx = {t: i for i, t in enumerate(graph.tensors)}
        self.blocks: dict[str, _Block] = {}  # resident tensor -> block
        self.llb: set[str] = {t for t, x in graph.tensors.items() if x.kind in ("input", "weight")}
        self.stages: list[Stage] = []
        self.p = 0

    # -- helpers ---------------------------------------------------------------------
    def in_l1(self, t: str) -> bool:
        return self.tg.occupies_l1(self.g.tensors[t])

    def next_use(self, t: str, after: int) -> float:
        u = self.uses[t]
        i = bisect.bisect_right(u, after)
        return u[i] if i < len(u) else INF

    def evict(self, t: str) -> None:
        if t not in self.llb and self.next_use(t, self.p - 1) < INF:
            self.stages.append(Stage("S", t))
            self.llb.add(t)
        self.stages.append(Stage("F", t))
        del self.blocks[t]

    def free(self, t: str) -> None:
        self.stages.append(Stage("F", t))
        del self.blocks[t]

    # -- allocation --------------------------------------------------------------------
    def _window_key(self, start: int, asize: int, raw: int, pinned: set[str], at: _Blocks):
        end = start + asize
        victims = at.overlapping(start, end)
        if any(v in pinned for v in victims):
            return None
        if not victims:
            return ((0, at.next_start(end, self.cap) - at.last_end(start), start), victims)
        nxt = [at.nxt[v] for v in victims]
        soonest = min(nxt)
        dirty = sum(at.size[v] for v, n in zip(victims, nxt, strict=True) if v not in self.llb and n < INF)
        freed = sum(at.size[v] for v in victims)
        belady = (-soonest, dirty, freed, start)
        if self.policy == "cost":
            # what evicting costs (reload, plus the store when there is no LLB copy yet),
            # discounted by how far away the reload is: cheap, far-needed victims first
            cost = sum(
                (1 if v in self.llb else 2) * at.size[v] / (n - self.p)
                for v, n in zip(victims, nxt, strict=True)
                if n < INF
            )
            return ((1, cost, *belady), victims)
        if self.policy == "largest":
            near = soonest <= self.p + self.k
            largest = 0 if near else -max(at.size[v] for v in victims)
            return ((1, int(near), largest, *belady), victims)
        return ((1, *belady), victims)

    def find_window(self, t: str, pinned: set[str]) -> tuple[int, list[str]] | None:
        raw = self.g.size(t)
        asize = self.tg.align(raw)
        if raw == 0:
            return 0, []
        starts = {0, (self.cap - raw) // self.align * self.align}
        for b in self.blocks.values():
            if b.asize:
                starts.add(b.off + b.asize)
                starts.add(b.off - asize)
        best = None
        at = _Blocks(self.blocks)
        at.nxt = {v: self.next_use(v, self.p) for v in at.names}  # the same for every window
        at.size = {v: self.g.size(v) for v in at.names}
        for s in starts:
            if s < 0 or s + raw > self.cap:
                continue
            kv = self._window_key(s, asize, raw, pinned, at)
            if kv is not None and (best is None or kv[0] < best[0]):
                best = (kv[0], s, kv[1])
        if best is None:
            return None
        return best[1], best[2]

    def place(self, t: str, pinned: set[str]) -> int | None:
        w = self.find_window(t, pinned)
        if w is None:
            return None
        off, victims = w
        for v in sorted(victims, key=self.tidx.__getitem__):
            self.evict(v)
        self.blocks[t] = _Block(off, self.tg.align(self.g.size(t)))
        return off

    def flush_and_pack(self, op_name: str) -> dict[str, int]:
        """Fallback: empty L1 (storing what is still needed) and pack the op's tensors from 0."""
        op = self.g.op(op_name)
        for t in sorted(self.blocks, key=self.tidx.__getitem__):
            self.evict(t)
        names = [t for t in dict.fromkeys((*op.inputs, *op.outputs)) if self.in_l1(t)]
        top = max(names, key=lambda t: (self.tg.align(self.g.size(t)) - self.g.size(t), -self.tidx[t]))
        offs, cur = {}, 0
        for t in [n for n in names if n != top] + [top]:
            offs[t] = cur
            cur += self.tg.align(self.g.size(t))
        return offs

    # -- the walk ----------------------------------------------------------------------
    def run(self) -> list[Stage]:
        g = self.g
        for p, name in enumerate(self.order):
            self.p = p
            op = g.op(name)
            ins = [t for t in dict.fromkeys(op.inputs) if self.in_l1(t)]
            outs = [t for t in op.outputs if self.in_l1(t)]
            pinned = {t for t in ins if t in self.blocks}
            todo = [t for t in ins if t not in self.blocks]
            offs: dict[str, int] = {}
            ok = True
            for t in sorted(todo, key=lambda x: (-g.size(x), self.tidx[x])):
                off = self.place(t, pinned)
                if off is None:
                    ok = False
                    break
                pinned.add(t)
                self.stages.append(Stage("L", t, offset=off))
            if ok:
                for t in sorted(outs, key=lambda x: (-g.size(x), self.tidx[x])):
                    off = self.place(t, pinned)
                    if off is None:
                        ok = False
                        break
                    pinned.add(t)
                    offs[t] = off
            if not ok:
                # stages already emitted (evictions, loads) stay valid; half-placed outputs
                # are not resident yet, so drop them from the allocator before flushing
                for t in offs:
                    del self.blocks[t]
                packed = self.flush_and_pack(name)
                offs = {}
                for t in [x for x in packed if x in ins]:
                    self.blocks[t] = _Block(packed[t], self.tg.align(g.size(t)))
                    self.stages.append(Stage("L", t, offset=packed[t]))
                for t in outs:
                    self.blocks[t] = _Block(packed[t], self.tg.align(g.size(t)))
                    offs[t] = packed[t]
            self.stages.append(Stage("R", name, offsets={t: offs.get(t, 0) for t in op.outputs}))
            for t in outs:
                if not g.tensors[t].kind == "output":
                    continue
                self.stages.append(Stage("S", t))
                self.llb.add(t)
            for t in dict.fromkeys((*ins, *outs)):
                if t in self.blocks and self.next_use(t, p) == INF:
                    self.free(t)
        return self.stages


def spill_plan(
    graph: Graph, target: Target, order: Sequence[str] | None = None, policy: str = "belady", k: int = 3
) -> list[Stage]:
    """Stages for `order` (default: the best no-spill heuristic order) within target.budget.

    Raises DoesNotFit (with the smallest workable budget) when some op cannot fit at all.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown spill policy {policy!r}; choose one of {POLICIES}")
    check_fits(graph, target)
    if order is None:
        order = best_heuristic(graph, target.with_budget(None))[1]
    if not graph.is_topological(order):
        raise ValueError("spill_plan: order is not a topological order of the graph")
    return _SpillWalk(graph, target, order, policy, k).run()


def plan_key(plan: Plan, objective: str) -> tuple[int, int, int]:
    """Compare plans: traffic first (budget forces spills) or arena first (peak objective)."""
    m = plan.metrics
    if objective == "traffic":
        return (m.spill_traffic_bytes, m.arena_bytes, m.steps)
    return (m.arena_bytes, m.spill_traffic_bytes, m.steps)


def candidate_plans(
    graph: Graph,
    target: Target,
    policies: Sequence[str] = POLICIES,
    k: int = 3,
    name: str = "spill",
    time_limit: float | None = None,
) -> list[Plan]:
    """Every order heuristic × policy as a spill plan, plus the best no-spill plan if it fits.

    All are finalized (simulated) plans that respect target.budget and the target's LLB:
    a walk whose stored tensors need more LLB than a bounded one holds is dropped (the
    no-spill plan needs none). DoesNotFit when nothing is left. With `time_limit`
    (seconds), no further walk starts, once a plan is in hand, that would end past it
    (judged by the longest walk so far: a walk takes about a second on 500 ops under a tight
    budget).
    """
    timer = Timer()
    check_fits(graph, target)
    ws = working_set_bound(graph, target)
    plans: list[Plan] = []
    arena, order0, oname0, lname, offs = best_heuristic(graph, target.with_budget(None), time_limit=time_limit)
    if target.budget is None or arena <= target.budget:
        info = SolverInfo(name, "heuristic", ws, facts={"order": oname0, "layout": lname, "spill": "none"})
        plans.append(nospill_plan(graph, target, order0, offs, info))
    orders: dict[tuple[str, ...], str] = {tuple(order0): oname0}
    for oname, fn in ORDERS.items():
        orders.setdefault(tuple(fn(graph, target)), oname)
    longest = 0.0  # the longest walk so far: one that cannot finish in the time left is not started
    for order, oname in orders.items():
        for pol in policies:
            if plans and time_limit is not None and timer.elapsed + longest >= time_limit:
                break
            t0 = timer.elapsed
            stages = _SpillWalk(graph, target, order, pol, k).run()
            longest = max(longest, timer.elapsed - t0)
            info = SolverInfo(name, "heuristic", ws, facts={"order": oname, "policy": pol, "k": k})
            plan = finalize_within_llb(Plan(graph, target, stages, info))
            if plan is not None:
                plans.append(plan)
    if not plans:
        how = f"within the {format_bytes(target.llb_bytes or 0)} LLB of {target.name}"
        raise DoesNotFit(target.budget, arena, ws, how=how)
    return plans


def best_spill_plan(
    graph: Graph,
    target: Target,
    objective: str | None = None,
    policies: Sequence[str] = POLICIES,
    k: int = 3,
    name: str = "spill",
    time_limit: float | None = None,
) -> Plan:
    """The best candidate plan; objective defaults to traffic when a budget is set, else peak.
    `time_limit`: see `candidate_plans`."""
    if objective is None:
        objective = "traffic" if target.budget is not None else "peak"
    plans = candidate_plans(graph, target, policies, k, name, time_limit)
    return min(plans, key=lambda pl: plan_key(pl, objective))


def _solver(name: str, policy: str):
    def solve(graph: Graph, target: Target, options: SolveOptions | None = None) -> Plan:
        options = options or SolveOptions()
        timer = Timer()
        objective = "traffic" if target.budget is not None else "peak"
        plan = best_spill_plan(graph, target, objective, (policy,), options.lookahead, name, options.time_limit)
        return with_solver(plan, replace(plan.solver, wall_s=timer.elapsed, params=options.params()))

    solve.__name__ = f"solve_{name.replace('-', '_')}"
    solve.__doc__ = (
        f"Spill heuristic {name}: every order heuristic walked with {policy} eviction under the "
        "L1 budget (and the no-spill plan when it fits); least non-compulsory traffic kept."
    )
    return solve


solve_spill_belady = _solver("spill-belady", "belady")
solve_spill_largest = _solver("spill-largest", "largest")
solve_spill_cost = _solver("spill-cost", "cost")
