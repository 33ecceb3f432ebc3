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
from planner.plan import MAX_BYTES, Metrics, Plan, SolverInfo, Stage
from planner.replay import Residency
from planner.sharing import Share, relation_index
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

    def overlapping(self, offset: int, end: int, pending: Sequence[Range] = ()) -> list[Range]:
        """Every range that overlaps `[offset, end)` (for placements that share bytes)."""
        k = bisect.bisect_left(self.ranges, (end, end, ""))
        return [o for o in (*self.ranges[:k], *pending) if offset < o[1] and o[0] < end]


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
        self.resident_now = 0  # bytes of L1 occupied: the union of the residents' ranges
        self.llb_spill = 0  # bytes of activations with an LLB copy
        # shared bytes (plan format v2): the legal relations (computed on the first share),
        # the groups of residents that share bytes, and the names an in-place write overwrote
        self.legal: dict[tuple[str, str, str], Share] | None = None
        self.group_of: dict[str, set[str]] = {}
        self.clobbered: dict[str, str] = {}  # tensor -> the op that wrote over its bytes
        self.read_only_parents: dict[str, list[str]] | None = None
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
        """`L t`: t's LLB copy becomes resident at its offset; or, when the stage declares
        t an alias of resident bytes (plan format v2), t is named there and no byte moves."""
        t = s.name
        if s.shares:
            self.alias_load(i, s)
            return
        if (
            self.check_not_read_in_place(i, t)
            and self.check_not_resident_for_load(i, t)
            and self.check_has_llb_copy(i, t)
            and self.check_can_spill(i, s)
            and self.place(i, t, s.offset)
        ):
            self.make_resident(i, t, s.offset)
            x = self.graph.tensors[t]
            self.metrics.traffic_bytes += x.bytes
            self.metrics.loaded_bytes += x.bytes
            if x.kind in ("input", "weight") and t not in self.loaded_once:
                self.metrics.compulsory_traffic_bytes += x.bytes
            self.loaded_once.add(t)

    def alias_load(self, i: int, s: Stage) -> None:
        """`L t` declared as a view / slice / slot of resident bytes: t's value is already
        there (its parent holds it), so it costs no traffic and needs no LLB copy."""
        t = s.name
        if not (self.check_not_resident_for_load(i, t) and self.check_value_exists(i, t)):
            return
        related = [x.parent for x in s.shares if self.check_share(i, s, x, {t: s.offset})]
        if len(related) == len(s.shares) and self.place(i, t, s.offset, (), self.sharing_with(related)):
            self.make_resident(i, t, s.offset, related)

    def run(self, i: int, s: Stage) -> None:
        """`R o`: o's inputs are read, its outputs become resident at their offsets (in the
        bytes of resident tensors where the stage declares a legal share)."""
        op = self.graph.op(s.name)
        self.check_not_ran(i, op)
        self.check_inputs_resident(i, op)
        offsets = s.offsets or {}
        self.check_offsets_are_outputs(i, op, offsets)
        related = self.run_shares(i, s, op, offsets)
        placed: dict[str, int] = {}
        pending: list[Range] = []  # outputs placed so far: all outputs are resident at once
        for t in op.outputs:
            if (
                self.check_output_not_resident(i, op, t)
                and self.check_output_has_offset(i, op, t, offsets)
                and self.place(i, t, offsets[t], pending, self.sharing_with(related.get(t, ())))
            ):
                placed[t] = offsets[t]
                pending.append((offsets[t], offsets[t] + self.sizes[t], t))
        self.ran.add(op.name)
        for t in dict.fromkeys(op.inputs):
            self.remaining[t] -= 1
        for x in s.shares:
            if x.kind == "inplace" and x.child in placed:
                self.check_inplace_overwrite(i, op, x.child, placed[x.child])
        for t, off in placed.items():
            self.make_resident(i, t, off, related.get(t, ()))

    def run_shares(self, i: int, s: Stage, op: Op, offsets: dict) -> dict[str, list[str]]:
        """The declared shares of an R stage, checked: output -> the residents it shares
        bytes with (a concat's output with its slots; a view's, slice's or in-place
        output with its parent)."""
        related: dict[str, list[str]] = {}
        for x in s.shares:
            if not self.check_share(i, s, x, offsets):
                continue
            if x.kind == "concat":
                related.setdefault(x.parent, []).append(x.child)
            else:
                related.setdefault(x.child, []).append(x.parent)
        return related

    def store(self, i: int, s: Stage) -> None:
        """`S t`: t gets a valid LLB copy."""
        t = s.name
        if not (self.check_resident(i, s) and self.check_not_clobbered(i, s) and self.check_can_spill(i, s)):
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
        """`F t`: t leaves L1 (its residency ends at this stage); its bytes are free once no
        resident tensor that shares them remains."""
        t = s.name
        if not self.check_resident(i, s):
            return
        if t not in self.clobbered:  # an overwritten name was checked dead when it was overwritten
            self.check_free_keeps_data(i, t)
        group = self.group_of.pop(t)
        before = self.union_bytes(group)
        group.discard(t)
        off = self.resident.pop(t)
        self.resident_now -= before - (self.union_bytes(group) if group else 0)
        self.residencies.append(Residency(t, self.start_step[t], i, off))
        self.clobbered.pop(t, None)
        self.arena.vacate(t, off, self.sizes[t])

    def place(
        self, i: int, t: str, offset, pending: Sequence[Range] = (), sharing: frozenset[str] = frozenset()
    ) -> bool:
        """The placement rules for t at `offset` (pending: ranges placed by the same stage;
        sharing: residents t may overlap by a declared share); False when the offset is
        unusable. Raises the arena's top."""
        if not self.check_offset_valid(i, t, offset):
            return False
        self.check_aligned(i, t, offset)
        self.check_in_budget(i, t, offset)
        self.check_no_overlap(i, t, offset, pending, sharing)
        self.metrics.arena_bytes = max(self.metrics.arena_bytes, offset + self.sizes[t])
        return True

    def make_resident(self, i: int, t: str, offset: int, related: Sequence[str] = ()) -> None:
        """t occupies L1 at `offset` from stage i on, in one group with the residents it
        shares bytes with (memory counts the union of a group's bytes)."""
        self.resident[t] = offset
        self.arena.occupy(t, offset, self.sizes[t])
        self.start_step[t] = i
        groups = {id(g): g for g in (self.group_of[r] for r in related if r in self.group_of)}
        before = sum(self.union_bytes(g) for g in groups.values())
        merged = {t}.union(*groups.values())
        for n in merged:
            self.group_of[n] = merged
        self.resident_now += self.union_bytes(merged) - before

    def sharing_with(self, related: Sequence[str]) -> frozenset[str]:
        """Every resident that shares bytes with one of `related` (their groups)."""
        return frozenset(n for r in related for n in self.group_of.get(r, {r}))

    def union_bytes(self, names: set[str]) -> int:
        """Bytes covered by the resident ranges of `names` (overlaps counted once)."""
        if len(names) == 1:
            (n,) = names
            return self.sizes[n]
        total, end = 0, -1
        for a, b in sorted((self.resident[n], self.resident[n] + self.sizes[n]) for n in names):
            if b > end:
                total += b - max(a, end)
                end = b
        return total

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
        """An offset is a non-negative int, and the tensor's bytes end below 2**63 (no memory
        is larger; every runtime and the C header hold offsets in 64 bits at most)."""
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            self.violation(i, f"{t} has invalid offset {offset!r}")
            return False
        if offset + self.sizes[t] > MAX_BYTES:
            self.violation(i, f"{t} at offset {offset} ends past 2**63 bytes, beyond any memory")
            return False
        return True

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

    def check_no_overlap(
        self, i: int, t: str, offset: int, pending: Sequence[Range] = (), sharing: frozenset[str] = frozenset()
    ) -> bool:
        """A resident's bytes are disjoint from every other resident's (and from the other
        outputs the same op writes, `pending`), except from those it shares bytes with by a
        declared, legal relation (`sharing`)."""
        end = offset + self.sizes[t]
        if not self.sizes[t]:
            return True
        if sharing:
            hit = next((r for r in self.arena.overlapping(offset, end, pending) if r[2] not in sharing), None)
        else:
            hit = self.arena.first_overlap(t, offset, end, pending)
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

    def check_can_spill(self, i: int, s: Stage) -> bool:
        """On a target without an LLB (``llb_bytes == 0``) nothing is spilled: no activation is
        stored, and no activation or output is loaded back (outputs are still stored at the
        end: that hands them to the application)."""
        kind = self.graph.tensors[s.name].kind
        if self.target.can_spill or kind == "input" or kind == "weight" or (s.kind == "S" and kind == "output"):
            return True
        what = "stored (spilled)" if s.kind == "S" else "loaded back"
        self.violation(i, f"{s.kind} {s.name}: target {self.target.name} has no LLB, nothing can be {what}")
        return False

    def check_not_ran(self, i: int, op: Op) -> bool:
        """Every op runs once: no recomputation (rule 1)."""
        if op.name not in self.ran:
            return True
        self.violation(i, f"R {op.name}: op already ran (no recomputation)")
        return False

    def check_inputs_resident(self, i: int, op: Op) -> bool:
        """Every input of a running op is in L1 (or a weight read in place), and its bytes
        were not overwritten by an in-place write since it was made."""
        ok = True
        for t in op.inputs:
            if t in self.clobbered:
                self.violation(i, f"R {op.name}: input {t} was overwritten in place by {self.clobbered[t]}")
                ok = False
                continue
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
        consumer and is not a graph output. A view, slice or slot of a tensor with an LLB
        copy can come back (alias-loaded over its reloaded parent): it has one too."""
        if self.recoverable(t):
            return True
        if self.remaining[t] > 0:
            need = next(c for c in self.graph.consumers[t] if c not in self.ran)
            self.violation(i, f"F {t} loses data still needed by {need}")
            return False
        if self.graph.tensors[t].kind == "output":
            self.violation(i, f"F {t} loses graph output {t} before it is stored")
            return False
        return True

    # -- rules: shared bytes (plan format v2) -------------------------------------------------
    def check_share(self, i: int, s: Stage, x: Share, offsets: dict) -> bool:
        """A declared share is a legal relation of the graph (planner/sharing.py), made by
        this stage's op (for an R), between a tensor this stage places and a resident whose
        bytes still hold its value, at the displacement the relation fixes."""
        if self.legal is None:
            self.legal = relation_index(self.graph)
        rel = self.legal.get((x.kind, x.child, x.parent))
        what = f"{s.kind} {s.name}: {x.child} in {x.parent}'s bytes by {x.kind}"
        if rel is None or (s.kind == "R" and rel.op != s.name) or (s.kind == "L" and x.kind == "inplace"):
            self.violation(i, f"{what} is not a legal share")
            return False
        if x.displacement != rel.displacement:
            self.violation(i, f"{what} at {x.displacement} (the relation puts it at {rel.displacement})")
            return False
        placed, held = (x.parent, x.child) if x.kind == "concat" and s.kind == "R" else (x.child, x.parent)
        if held not in self.resident or held in self.clobbered:
            self.violation(i, f"{what}: {held} is not resident with its value")
            return False
        off = {placed: offsets.get(placed), held: self.resident[held]}
        if off[x.child] is None or off[x.parent] is None or off[x.child] != off[x.parent] + x.displacement:
            self.violation(
                i, f"{what}: {x.child} at {off[x.child]} is not {x.parent} at {off[x.parent]} + {x.displacement}"
            )
            return False
        return True

    def recoverable(self, t: str, seen: frozenset[str] = frozenset()) -> bool:
        """Whether t's value can be brought back from LLB: its own copy, or (in a plan that
        shares bytes) a copy of a tensor it is a read-only part of (view, slice, slot)."""
        if t in self.llb:
            return True
        if self.legal is None:  # no share declared so far: only own copies count
            return False
        if self.read_only_parents is None:
            self.read_only_parents = {}
            for kind, child, parent in self.legal:
                if kind != "inplace":
                    self.read_only_parents.setdefault(child, []).append(parent)
        parents = [p for p in self.read_only_parents.get(t, ()) if p not in seen]
        return any(self.recoverable(p, seen | {t}) for p in parents)

    def check_value_exists(self, i: int, t: str) -> bool:
        """An alias load names a value that exists: t is a graph input or its producer ran."""
        prod = self.graph.producer.get(t)
        if prod is None or prod in self.ran:
            return True
        self.violation(i, f"L {t}: its producer {prod} has not run")
        return False

    def check_inplace_overwrite(self, i: int, op: Op, t: str, offset: int) -> bool:
        """An in-place write over resident bytes is safe only when nothing still needs what
        they hold: every other resident in them has no unrun consumer and, if it is a graph
        output, an LLB copy. Those names hold garbage from now on (only F may follow)."""
        end, ok = offset + self.sizes[t], True
        for _a, _b, r in self.arena.overlapping(offset, end):
            if r in op.outputs:
                continue
            if self.remaining[r] > 0:
                need = next(c for c in self.graph.consumers[r] if c not in self.ran)
                self.violation(i, f"R {op.name}: writes {t} over {r}, which {need} still reads")
                ok = False
            elif self.graph.tensors[r].kind == "output" and r not in self.llb:
                self.violation(i, f"R {op.name}: writes {t} over graph output {r} before it is stored")
                ok = False
            self.clobbered.setdefault(r, op.name)
        return ok

    def check_not_clobbered(self, i: int, s: Stage) -> bool:
        """A store copies a value, not the bytes an in-place write left in its place."""
        if s.name not in self.clobbered:
            return True
        self.violation(i, f"S {s.name}: its bytes were overwritten in place by {self.clobbered[s.name]}")
        return False

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
        if limit is None or limit == 0 or self.metrics.llb_peak_bytes <= limit:  # 0: check_can_spill
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


# -- plan files entering the planner: read, replay, compare ---------------------------------------
class MetricsMismatch(ValueError):
    """A plan file whose metrics are not what its replay measures (edited by hand or written
    by a faulty tool): no number from such a file may be passed on."""

    def __init__(self, path: str, diffs: dict[str, tuple[int, int]]):
        self.diffs = diffs
        msg = ", ".join(f"{k}: file says {a}, simulator measures {b}" for k, (a, b) in diffs.items())
        super().__init__(f"{path}: metrics in the file do not match the replay: {msg}")


@dataclass
class ReplayedFile:
    """A plan file replayed by the simulator: the plan (carrying the simulator's metrics, never
    the file's), the replay, and the metrics where the file says something else."""

    plan: Plan
    simulation: Simulation
    diffs: dict[str, tuple[int, int]]  # metric -> (file, simulator)

    @property
    def ok(self) -> bool:
        """The plan obeys every rule and its file states the replay's metrics."""
        return self.simulation.ok and not self.diffs


def replay_plan_file(path) -> ReplayedFile:
    """Read a plan file and replay it (the one "read + replay + compare metrics" every command
    that takes a plan file uses; `read_checked_plan` raises on the findings). Raises only
    PlanFormatError, for a file that is not a readable plan."""
    from planner.plan import plan_from_dict, read_plan_document

    doc = read_plan_document(path)
    plan = plan_from_dict(doc)
    sim = simulate(plan.graph, plan.target, plan.stages)
    sim.metrics.lower_bound_bytes = lower_bound_bytes(plan.graph, plan.target, plan.solver)
    claimed, measured = doc["metrics"], sim.metrics
    # lower_bound_bytes is derived from the solver's bound, not replayed: not compared
    diffs = {
        k: (claimed[k], getattr(measured, k))
        for k in Metrics.__dataclass_fields__
        if k in claimed and k != "lower_bound_bytes" and claimed[k] != getattr(measured, k)
    }
    return ReplayedFile(replace(plan, metrics=sim.metrics), sim, diffs)


def read_checked_plan(path) -> Plan:
    """A plan file that is readable, obeys every rule and states the metrics its replay
    measures, with the simulator's metrics; PlanFormatError, PlanError or MetricsMismatch
    (one line each) otherwise. What `export` and `run` accept."""
    r = replay_plan_file(path)
    if r.simulation.violations:
        raise PlanError(r.simulation.violations)
    if r.diffs:
        raise MetricsMismatch(str(path), r.diffs)
    return r.plan
