"""Replay a plan stage by stage, check every rule of DESIGN §1, compute every metric.

This is the single source of truth for the numbers the project prints: solvers' own
objective values are never reported; `finalize` recomputes metrics here.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from planner.bounds import working_set_bound
from planner.graph import Graph
from planner.plan import Metrics, Plan, SolverInfo, Stage
from planner.target import Target

MAX_VIOLATIONS = 50


class PlanError(ValueError):
    """The plan breaks a rule of the stage model (message lists the violations)."""

    def __init__(self, violations: list[str]):
        self.violations = violations
        more = f" (+{len(violations) - 3} more)" if len(violations) > 3 else ""
        super().__init__("; ".join(violations[:3]) + more)


@dataclass
class Simulation:
    metrics: Metrics
    violations: list[str] = field(default_factory=list)
    # resident bytes after each stage (memory over time, for plots and the executor)
    resident_bytes: list[int] = field(default_factory=list)
    # (tensor, offset, bytes, first step, last step) per L1 residency, for layout plots
    residencies: list[tuple[str, int, int, int, int]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


def simulate(graph: Graph, target: Target, stages: Sequence[Stage]) -> Simulation:
    g, tg = graph, target
    budget = tg.budget
    in_place = tg.weights == "in_place"
    viol: list[str] = []

    def bad(step: int, msg: str) -> None:
        if len(viol) < MAX_VIOLATIONS:
            viol.append(f"step {step}: {msg}")

    resident: dict[str, int] = {}  # tensor -> offset
    start_step: dict[str, int] = {}
    llb: set[str] = {t for t, x in g.tensors.items() if x.kind in ("input", "weight")}
    ran: set[str] = set()
    remaining = {t: len(c) for t, c in g.consumers.items()}  # unrun consumers per tensor
    loaded_once: set[str] = set()
    stored_once: set[str] = set()
    m = Metrics(steps=len(stages))
    cur = 0
    llb_spill = 0
    timeline: list[int] = []
    residencies: list[tuple[str, int, int, int, int]] = []

    # non-empty residents as (offset, end, name), sorted: while no overlap has been seen,
    # neighbours in this list are the only candidates for a new overlap
    occupied: list[tuple[int, int, str]] = []
    overlapped = False

    def place(step: int, t: str, off, pending: list[tuple[int, int, str]]) -> bool:
        nonlocal overlapped
        size = g.tensors[t].bytes
        if not isinstance(off, int) or isinstance(off, bool) or off < 0:
            bad(step, f"{t} has invalid offset {off!r}")
            return False
        if off % tg.alignment:
            bad(step, f"{t} offset {off} is not a multiple of the alignment {tg.alignment}")
        if budget is not None and off + size > budget:
            bad(step, f"{t} at [{off}, {off + size}) exceeds the L1 budget of {budget} bytes")
        if size:
            end = off + size
            k = bisect.bisect_left(occupied, (off, end, t))
            near = occupied if overlapped else occupied[max(0, k - 1) : k + 1]
            hit = next((o for o in (*near, *pending) if off < o[1] and o[0] < end), None)
            if hit is not None:
                overlapped = True
                bad(step, f"{t} at [{off}, {end}) overlaps {hit[2]} at [{hit[0]}, {hit[1]})")
        m.arena_bytes = max(m.arena_bytes, off + size)
        return True

    def occupy(t: str, off: int) -> None:
        if g.tensors[t].bytes:
            bisect.insort(occupied, (off, off + g.tensors[t].bytes, t))

    def vacate(t: str, off: int) -> None:
        if g.tensors[t].bytes:
            occupied.remove((off, off + g.tensors[t].bytes, t))

    for i, s in enumerate(stages):
        if s.kind == "R":
            if s.name not in g.op_index:
                bad(i, f"R {s.name}: unknown op")
                timeline.append(cur)
                continue
            op = g.op(s.name)
            if s.name in ran:
                bad(i, f"R {s.name}: op already ran (no recomputation)")
            for t in op.inputs:
                if t in resident or (in_place and g.tensors[t].kind == "weight"):
                    continue
                where = "in LLB only" if t in llb else "not available"
                bad(i, f"R {s.name}: input {t} is not resident in L1 ({where})")
            offs = s.offsets or {}
            extra = set(offs) - set(op.outputs)
            if extra:
                bad(i, f"R {s.name}: offsets given for tensors it does not produce: {sorted(extra)}")
            placed: dict[str, int] = {}
            pending: list[tuple[int, int, str]] = []
            for t in op.outputs:
                if t in resident:
                    bad(i, f"R {s.name}: output {t} is already resident")
                    continue
                if t not in offs:
                    bad(i, f"R {s.name}: no offset for output {t}")
                    continue
                if place(i, t, offs[t], pending):
                    placed[t] = offs[t]
                    pending.append((offs[t], offs[t] + g.tensors[t].bytes, t))
            for t in placed:
                resident[t] = placed[t]
                occupy(t, placed[t])
                start_step[t] = i
                cur += g.tensors[t].bytes
            ran.add(s.name)
            for t in dict.fromkeys(op.inputs):
                remaining[t] -= 1
        elif s.kind in ("L", "S", "F"):
            t = s.name
            if t not in g.tensors:
                bad(i, f"{s.kind} {t}: unknown tensor")
                timeline.append(cur)
                continue
            x = g.tensors[t]
            if s.kind == "L":
                if in_place and x.kind == "weight":
                    bad(i, f"L {t}: weights are read in place on target {tg.name}, never loaded")
                elif t in resident:
                    bad(i, f"L {t}: already resident in L1")
                elif t not in llb:
                    bad(i, f"L {t}: has no valid LLB copy to load")
                elif place(i, t, s.offset, []):
                    resident[t] = s.offset
                    occupy(t, s.offset)
                    start_step[t] = i
                    cur += x.bytes
                    m.traffic_bytes += x.bytes
                    m.loaded_bytes += x.bytes
                    if x.kind in ("input", "weight") and t not in loaded_once:
                        m.compulsory_traffic_bytes += x.bytes
                    loaded_once.add(t)
            elif s.kind == "S":
                if t not in resident:
                    bad(i, f"S {t}: not resident in L1")
                else:
                    m.traffic_bytes += x.bytes
                    m.stored_bytes += x.bytes
                    if x.kind == "output" and t not in stored_once:
                        m.compulsory_traffic_bytes += x.bytes
                    stored_once.add(t)
                    if t not in llb:
                        llb.add(t)
                        llb_spill += x.bytes
            else:  # F
                if t not in resident:
                    bad(i, f"F {t}: not resident in L1")
                else:
                    if t not in llb:
                        if remaining[t] > 0:
                            need = next(c for c in g.consumers[t] if c not in ran)
                            bad(i, f"F {t} loses data still needed by {need}")
                        elif x.kind == "output":
                            bad(i, f"F {t} loses graph output {t} before it is stored")
                    residencies.append((t, resident[t], x.bytes, start_step[t], i))
                    cur -= x.bytes
                    vacate(t, resident.pop(t))
        else:
            bad(i, f"unknown stage kind {s.kind!r}")
        m.peak_l1_bytes = max(m.peak_l1_bytes, cur)
        m.llb_peak_bytes = max(m.llb_peak_bytes, llb_spill)
        timeline.append(cur)

    end = len(stages)
    missing = [o.name for o in g.ops if o.name not in ran]
    if missing:
        bad(end, f"ops never run: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    for t in g.outputs:
        if t not in llb:
            bad(end, f"graph output {t} is never stored to LLB")
    if tg.llb_bytes is not None and m.llb_peak_bytes > tg.llb_bytes:
        bad(end, f"LLB needs {m.llb_peak_bytes} bytes for stored tensors, target has {tg.llb_bytes}")
    for t, off in resident.items():
        residencies.append((t, off, g.tensors[t].bytes, start_step[t], end))
    return Simulation(m, viol, timeline, residencies)


def check(plan: Plan) -> Simulation:
    """Simulate a plan; raise PlanError if any rule is broken."""
    sim = simulate(plan.graph, plan.target, plan.stages)
    if sim.violations:
        raise PlanError(sim.violations)
    return sim


def lower_bound_bytes(graph: Graph, target: Target, info: SolverInfo) -> int:
    """The plan's `lower_bound_bytes`: the working-set bound, raised by the solver's proven
    bound when that is measured in arena bytes."""
    ws = working_set_bound(graph, target)
    return max(ws, info.bound) if info.objective == "arena" else ws


def finalize(plan: Plan) -> Plan:
    """The plan with the simulator's metrics (PlanError if it breaks a rule).

    Every solver's plan passes through here before anyone sees a number: its own
    objective values are never reported."""
    sim = check(plan)
    sim.metrics.lower_bound_bytes = lower_bound_bytes(plan.graph, plan.target, plan.solver)
    return replace(plan, metrics=sim.metrics)


def with_solver(plan: Plan, info: SolverInfo) -> Plan:
    """A finalized plan under another `SolverInfo` (its stages, hence its metrics, are the
    same; only the solver-dependent lower bound is derived again, without a replay)."""
    metrics = replace(plan.metrics, lower_bound_bytes=lower_bound_bytes(plan.graph, plan.target, info))
    return replace(plan, solver=info, metrics=metrics)
