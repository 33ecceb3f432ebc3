"""Spills for a fixed op order as a 0-1 program: one Boolean per gap of a tensor.

Given the op order, a canonical plan (the form `schedule.canonicalize` produces) is fully
described by one decision per **gap**: between two consecutive events of a tensor (its
production or a use, at op positions e_j < e_{j+1} with at least one op in between) the
tensor either stays in L1 (``keep``) or is freed after e_j and loaded back right before
e_{j+1}. Loading later than right before the use, or freeing later than right after the
event, only raises memory, so nothing is lost by that form. An activation that is evicted
at least once is stored once, right after its producer (graph outputs are stored anyway,
inputs and weights already have an LLB copy), so

    traffic = compulsory + Σ_gaps size·(1 - keep) + Σ_activations size·stored,
    stored[t] ≥ 1 - keep[g] for every gap g of t,

and the memory while op i runs is exactly ``base[i]`` (its own inputs and outputs) plus
the sizes of the kept gaps that span i: one knapsack row per op position, O(|E|)
variables, no horizon, so CP-SAT proves it optimal for hundreds of ops in well under a
second. Bytes are raw, like the stage model's peak; offsets are laid out afterwards over
the residencies (`cpsat_layout.layout_stages`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ortools.sat.python import cp_model

from planner.graph import Graph
from planner.plan import Plan, SolverInfo, Stage
from planner.replay import resident_before_runs
from planner.solvers import cpsat
from planner.solvers.base import SolveOptions, finalize_within_llb
from planner.solvers.cpsat_layout import layout_stages
from planner.solvers.schedule import Schedule
from planner.target import Target

NAME = "cpsat-spill"


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
        """Non-compulsory bytes of the canonical plan of the keep decisions."""
        out = sum(gp.size for gp, k in zip(self.gaps, keep, strict=True) if not k)
        for t in self.storable:
            if not all(keep[k] for k in self.gaps_of[t]):
                out += self.g.size(t)
        return out

    def keep_of_plan(self, stages: Sequence[Stage]) -> list[bool]:
        """Gap decisions of a valid plan for this order: kept iff resident at every R it spans."""
        at = resident_before_runs(self.g, stages)
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
        st, solver = cpsat.solve(m, time_limit, workers, seed)
        if st not in cpsat.SOLVED:
            return None
        kv = [bool(solver.value(v)) for v in keep]
        val = self.traffic(kv)
        bound = cpsat.ceil_bound(solver.best_objective_bound)
        return SpillResult(kv, val, min(bound, val), st == cp_model.OPTIMAL, solver.status_name(st))

    # -- plans -------------------------------------------------------------------------------
    def schedule(self, keep: Sequence[bool]):
        """The canonical L/R/S schedule (frees attached) of the keep decisions."""
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
        stages = self.schedule(keep).stages()
        laid, arena, lname = layout_stages(self.g, self.tg, stages, options, layout_time, self.tg.budget)
        if self.tg.budget is not None and arena > self.tg.budget:
            return None, arena
        info = SolverInfo(NAME, "feasible", 0, 0.0, {"layout": lname})
        # None also when its stored tensors overflow a bounded LLB: the caller keeps its best
        return finalize_within_llb(Plan(self.g, self.tg, laid, info)), arena
