"""Replay a plan stage by stage, check every rule of DESIGN §1, compute every metric.

This is the single source of truth for the numbers the project prints: solvers' own
objective values are never reported; `finalize` recomputes metrics here.

The replay is a `Simulator`: one method per stage kind (`load`, `run`, `store`, `free`)
changes the state, and one small `check_*` method per rule reports a broken rule as a
violation. A new rule (e.g. tensors that share bytes by a declared relation) is one new
check method, called from the stage it constrains, and one test.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from planner.bounds import working_set_bound
from planner.graph import Graph, Op
from planner.plan import Metrics, Plan, SolverInfo, Stage
from planner.replay import Residency
from planner.target import Target

MAX_VIOLATIONS = 50

Range = tuple[int, int, str]  # [offset, end) of a tensor's bytes in L1, and the tensor


class PlanError(ValueError):
    """The plan breaks a rule of the stage model (message lists the violations)."""

    def __init__(self, violations: list[str]):
        self.violations = violations
        more = f" (+{len(violations) - 3} more)" if len(violations) > 3 else ""
        super().__init__("; ".join(violations[:3]) + more)


@dataclass
class Simulation:
    """What a replay found: the metrics every report prints, the broken rules (if any),
    and memory over time for plots, the executor and the exporters."""

    metrics: Metrics
    violations: list[str] = field(default_factory=list)
    # resident bytes after each stage (memory over time, for plots and the executor)
    resident_bytes: list[int] = field(default_factory=list)
    # every L1 residency (tensor, first stage, end stage, offset), in the order they end
    residencies: list[Residency] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the plan obeys every rule."""
        return not self.violations


class Arena:
    """The byte ranges of L1 occupied by non-empty residents, sorted by offset.

    Exists to keep the overlap rule fast on long plans: while no overlap has been seen the
    ranges are disjoint, so a new range can only overlap its two neighbours in sorted order
    (found by bisection). After the first overlap every range is a candidate.
    """

    def __init__(self) -> None:
        self.ranges: list[Range] = []
        self.overlapped = False

    def occupy(self, tensor: str, offset: int, size: int) -> None:
        """Mark `[offset, offset + size)` as held by `tensor` (empty tensors hold nothing)."""
        if size:
            bisect.insort(self.ranges, (offset, offset + size, tensor))

    def vacate(self, tensor: str, offset: int, size: int) -> None:
        """Give back the range `occupy` marked for `tensor`."""
        if size:
            k = bisect.bisect_left(self.ranges, (offset, offset + size, tensor))
            del self.ranges[k]

    def first_overlap(self, tensor: str, offset: int, end: int, pending: Sequence[Range] = ()) -> Range | None:
        """A range (of the residents, or of `pending` ones being placed at the same stage)
        that overlaps `[offset, end)`, or None."""
        k = bisect.bisect_left(self.ranges, (offset, end, tensor))
        near = self.ranges if self.overlapped else self.ranges[max(0, k - 1) : k + 1]
        hit = next((o for o in (*near, *pending) if offset < o[1] and o[0] < end), None)
        if hit is not None:
            self.overlapped = True
        return hit


class Simulator:
    """The replay of one plan on one target: the state of L1 and LLB after each stage, the
    metrics, and the rules of DESIGN §1 as one `check_*` method each.

    Feed it stages with `replay` (or `step` by step, then `finish`). A check method appends
    its violation (as ``"step i: message"``) and returns whether the rule holds, so stages
    chain them and skip the effect a broken precondition would make meaningless.
    """

    def __init__(self, graph: Graph, target: Target):
        self.graph, self.target = graph, target
        self.sizes = {t: x.bytes for t, x in graph.tensors.items()}
        self.stage_kinds = {"L": self.load, "R": self.run, "S": self.store, "F": self.free}
        self.in_place = target.weights == "in_place"
        self.violations: list[str] = []
        self.metrics = Metrics()
        self.arena = Arena()
        self.resident: dict[str, int] = {}  # tensor -> offset
        self.start_step: dict[str, int] = {}  # tensor -> stage that made it resident
        self.llb: set[str] = {t for t, x in graph.tensors.items() if x.kind in ("input", "weight")}
        self.ran: set[str] = set()
        self.remaining = {t: len(c) for t, c in graph.consumers.items()}  # unrun consumers per tensor
        self.loaded_once: set[str] = set()
        self.stored_once: set[str] = set()
        self.resident_now = 0
        self.llb_spill = 0  # bytes of activations with an LLB copy
        self.timeline: list[int] = []
        self.residencies: list[Residency] = []

    # -- driving ------------------------------------------------------------------------------
    def replay(self, stages: Sequence[Stage]) -> Simulation:
        """Every stage, then the end-of-plan rules: the `Simulation` of `stages`."""
        for i, s in enumerate(stages):
            self.step(i, s)
        self.finish(len(stages))
        return Simulation(self.metrics, self.violations, self.timeline, self.residencies)

    def step(self, i: int, s: Stage) -> None:
        """Apply stage `s` at timestep `i` and record memory after it."""
        act = self.stage_kinds.get(s.kind)
        known = self.check_op_known if s.kind == "R" else self.check_tensor_known
        if act is None:
            self.violation(i, f"unknown stage kind {s.kind!r}")
        elif known(i, s):
            act(i, s)
        self.metrics.peak_l1_bytes = max(self.metrics.peak_l1_bytes, self.resident_now)
        self.metrics.llb_peak_bytes = max(self.metrics.llb_peak_bytes, self.llb_spill)
        self.timeline.append(self.resident_now)

    def finish(self, end: int) -> None:
        """The rules about the whole plan, checked after its last stage (`end` = #stages);
        tensors still resident close their residencies at `end`."""
        self.metrics.steps = end
        self.check_all_ops_ran(end)
        self.check_outputs_stored(end)
        self.check_llb_limit(end)
        for t, off in self.resident.items():
            self.residencies.append(Residency(t, self.start_step[t], end, off))

    def violation(self, step: int, msg: str) -> None:
        """Record a broken rule (at most MAX_VIOLATIONS: a broken plan breaks many)."""
        if len(self.violations) < MAX_VIOLATIONS:
            self.violations.append(f"step {step}: {msg}")

    # -- stages -------------------------------------------------------------------------------
    def load(self, i: int, s: Stage) -> None:
        """`L t`: t's LLB copy becomes resident at its offset."""
        t = s.name
        if (
            self.check_not_read_in_place(i, t)
            and self.check_not_resident_for_load(i, t)
            and self.check_has_llb_copy(i, t)
            and self.place(i, t, s.offset)
        ):
            self.make_resident(i, t, s.offset)
            x = self.graph.tensors[t]
            self.metrics.traffic_bytes += x.bytes
            self.metrics.loaded_bytes += x.bytes
            if x.kind in ("input", "weight") and t not in self.loaded_once:
                self.metrics.compulsory_traffic_bytes += x.bytes
            self.loaded_once.add(t)

    def run(self, i: int, s: Stage) -> None:
        """`R o`: o's inputs are read, its outputs become resident at their offsets."""
        op = self.graph.op(s.name)
        self.check_not_ran(i, op)
        self.check_inputs_resident(i, op)
        offsets = s.offsets or {}
        self.check_offsets_are_outputs(i, op, offsets)
        placed: dict[str, int] = {}
        pending: list[Range] = []  # outputs placed so far: all outputs are resident at once
        for t in op.outputs:
            if (
                self.check_output_not_resident(i, op, t)
                and self.check_output_has_offset(i, op, t, offsets)
                and self.place(i, t, offsets[t], pending)
            ):
                placed[t] = offsets[t]
                pending.append((offsets[t], offsets[t] + self.sizes[t], t))
        for t, off in placed.items():
            self.make_resident(i, t, off)
        self.ran.add(op.name)
        for t in dict.fromkeys(op.inputs):
            self.remaining[t] -= 1

    def store(self, i: int, s: Stage) -> None:
        """`S t`: t gets a valid LLB copy."""
        t = s.name
        if not self.check_resident(i, s):
            return
        x = self.graph.tensors[t]
        self.metrics.traffic_bytes += x.bytes
        self.metrics.stored_bytes += x.bytes
        if x.kind == "output" and t not in self.stored_once:
            self.metrics.compulsory_traffic_bytes += x.bytes
        self.stored_once.add(t)
        if t not in self.llb:
            self.llb.add(t)
            self.llb_spill += x.bytes

    def free(self, i: int, s: Stage) -> None:
        """`F t`: t leaves L1 (its residency ends at this stage)."""
        t = s.name
        if not self.check_resident(i, s):
            return
        self.check_free_keeps_data(i, t)
        off = self.resident.pop(t)
        self.residencies.append(Residency(t, self.start_step[t], i, off))
        self.resident_now -= self.sizes[t]
        self.arena.vacate(t, off, self.sizes[t])

    def place(self, i: int, t: str, offset, pending: Sequence[Range] = ()) -> bool:
        """The placement rules for t at `offset` (pending: ranges placed by the same stage);
        False when the offset is unusable. Raises the arena's top."""
        if not self.check_offset_valid(i, t, offset):
            return False
        self.check_aligned(i, t, offset)
        self.check_in_budget(i, t, offset)
        self.check_no_overlap(i, t, offset, pending)
        self.metrics.arena_bytes = max(self.metrics.arena_bytes, offset + self.sizes[t])
        return True

    def make_resident(self, i: int, t: str, offset: int) -> None:
        """t occupies L1 at `offset` from stage i on."""
        self.resident[t] = offset
        self.arena.occupy(t, offset, self.sizes[t])
        self.start_step[t] = i
        self.resident_now += self.sizes[t]

    # -- rules: names -------------------------------------------------------------------------
    def check_op_known(self, i: int, s: Stage) -> bool:
        """An R stage names an op of the graph."""
        if s.name in self.graph.op_index:
            return True
        self.violation(i, f"R {s.name}: unknown op")
        return False

    def check_tensor_known(self, i: int, s: Stage) -> bool:
        """An L/S/F stage names a tensor of the graph."""
        if s.name in self.graph.tensors:
            return True
        self.violation(i, f"{s.kind} {s.name}: unknown tensor")
        return False

    # -- rules: placement (rule 3) ------------------------------------------------------------
    def check_offset_valid(self, i: int, t: str, offset) -> bool:
        """An offset is a non-negative int."""
        if isinstance(offset, int) and not isinstance(offset, bool) and offset >= 0:
            return True
        self.violation(i, f"{t} has invalid offset {offset!r}")
        return False

    def check_aligned(self, i: int, t: str, offset: int) -> bool:
        """An offset is a multiple of the target's alignment."""
        if not offset % self.target.alignment:
            return True
        self.violation(i, f"{t} offset {offset} is not a multiple of the alignment {self.target.alignment}")
        return False

    def check_in_budget(self, i: int, t: str, offset: int) -> bool:
        """A resident's bytes lie inside `[0, B)`."""
        budget, end = self.target.budget, offset + self.sizes[t]
        if budget is None or end <= budget:
            return True
        self.violation(i, f"{t} at [{offset}, {end}) exceeds the L1 budget of {budget} bytes")
        return False

    def check_no_overlap(self, i: int, t: str, offset: int, pending: Sequence[Range] = ()) -> bool:
        """A resident's bytes are disjoint from every other resident's (and from the other
        outputs the same op writes, `pending`)."""
        end = offset + self.sizes[t]
        hit = self.arena.first_overlap(t, offset, end, pending) if self.sizes[t] else None
        if hit is None:
            return True
        self.violation(i, f"{t} at [{offset}, {end}) overlaps {hit[2]} at [{hit[0]}, {hit[1]})")
        return False

    # -- rules: loads, runs, stores and frees -------------------------------------------------
    def check_not_read_in_place(self, i: int, t: str) -> bool:
        """Weights read in place (rule 2) are never loaded."""
        if not (self.in_place and self.graph.tensors[t].kind == "weight"):
            return True
        self.violation(i, f"L {t}: weights are read in place on target {self.target.name}, never loaded")
        return False

    def check_not_resident_for_load(self, i: int, t: str) -> bool:
        """A load brings in a tensor that is not already in L1."""
        if t not in self.resident:
            return True
        self.violation(i, f"L {t}: already resident in L1")
        return False

    def check_has_llb_copy(self, i: int, t: str) -> bool:
        """A load reads a valid LLB copy (an input, a weight, or a stored tensor)."""
        if t in self.llb:
            return True
        self.violation(i, f"L {t}: has no valid LLB copy to load")
        return False

    def check_not_ran(self, i: int, op: Op) -> bool:
        """Every op runs once: no recomputation (rule 1)."""
        if op.name not in self.ran:
            return True
        self.violation(i, f"R {op.name}: op already ran (no recomputation)")
        return False

    def check_inputs_resident(self, i: int, op: Op) -> bool:
        """Every input of a running op is in L1 (or a weight read in place)."""
        ok = True
        for t in op.inputs:
            if t in self.resident or (self.in_place and self.graph.tensors[t].kind == "weight"):
                continue
            where = "in LLB only" if t in self.llb else "not available"
            self.violation(i, f"R {op.name}: input {t} is not resident in L1 ({where})")
            ok = False
        return ok

    def check_offsets_are_outputs(self, i: int, op: Op, offsets: dict) -> bool:
        """An R stage gives offsets only for the op's outputs."""
        extra = set(offsets) - set(op.outputs)
        if not extra:
            return True
        self.violation(i, f"R {op.name}: offsets given for tensors it does not produce: {sorted(extra)}")
        return False

    def check_output_not_resident(self, i: int, op: Op, t: str) -> bool:
        """An op's output is not in L1 before the op runs."""
        if t not in self.resident:
            return True
        self.violation(i, f"R {op.name}: output {t} is already resident")
        return False

    def check_output_has_offset(self, i: int, op: Op, t: str, offsets: dict) -> bool:
        """Every output of an R stage has an offset."""
        if t in offsets:
            return True
        self.violation(i, f"R {op.name}: no offset for output {t}")
        return False

    def check_resident(self, i: int, s: Stage) -> bool:
        """S and F act on a tensor in L1."""
        if s.name in self.resident:
            return True
        self.violation(i, f"{s.kind} {s.name}: not resident in L1")
        return False

    def check_free_keeps_data(self, i: int, t: str) -> bool:
        """Nothing is lost (rule 5): a freed tensor without an LLB copy has no unrun
        consumer and is not a graph output."""
        if t in self.llb:
            return True
        if self.remaining[t] > 0:
            need = next(c for c in self.graph.consumers[t] if c not in self.ran)
            self.violation(i, f"F {t} loses data still needed by {need}")
            return False
        if self.graph.tensors[t].kind == "output":
            self.violation(i, f"F {t} loses graph output {t} before it is stored")
            return False
        return True

    # -- rules: the whole plan ----------------------------------------------------------------
    def check_all_ops_ran(self, end: int) -> bool:
        """Every op runs (rule 1)."""
        missing = [o.name for o in self.graph.ops if o.name not in self.ran]
        if not missing:
            return True
        self.violation(end, f"ops never run: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
        return False

    def check_outputs_stored(self, end: int) -> bool:
        """At the end every graph output has a valid LLB copy (rule 4)."""
        ok = True
        for t in self.graph.outputs:
            if t not in self.llb:
                self.violation(end, f"graph output {t} is never stored to LLB")
                ok = False
        return ok

    def check_llb_limit(self, end: int) -> bool:
        """The stored tensors fit the target's LLB (when it has a limit)."""
        limit = self.target.llb_bytes
        if limit is None or self.metrics.llb_peak_bytes <= limit:
            return True
        self.violation(end, f"LLB needs {self.metrics.llb_peak_bytes} bytes for stored tensors, target has {limit}")
        return False


def simulate(graph: Graph, target: Target, stages: Sequence[Stage]) -> Simulation:
    """Replay `stages` on `target`: every violated rule and every metric (never raises for a
    broken plan; `check` does)."""
    return Simulator(graph, target).replay(stages)


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
