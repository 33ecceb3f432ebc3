"""What is resident when: the residencies of a stage list, without checking any rule.

Solvers, layouts and plots all need "which tensors are in L1 after each stage" of plans
that are valid by construction (or are about to be checked); the simulator is the only
judge of validity. This one replay serves them all, so that a new way for tensors to
occupy L1 (shared bytes, stripes) changes one function.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from planner.graph import Graph
from planner.plan import Stage


@dataclass(frozen=True)
class Residency:
    """One stay of `tensor` in L1: made resident by stage `start` (an L, or the R that
    produced it), freed by stage `end` (an F), or `end == len(stages)` when it stays to the
    end. `offset` is the planned offset (None when the stage carried none)."""

    tensor: str
    start: int
    end: int
    offset: int | None

    def live_at(self, step: int) -> bool:
        """Whether the tensor is resident after stage `step`."""
        return self.start <= step < self.end


def residencies(graph: Graph, stages: Sequence[Stage]) -> list[Residency]:
    """Every residency of `stages`, in the order they end (open ones last, by start)."""
    open_: dict[str, tuple[int, int | None]] = {}
    out: list[Residency] = []
    for i, s in enumerate(stages):
        if s.kind == "L":
            open_[s.name] = (i, s.offset)
        elif s.kind == "R":
            offs = s.offsets or {}
            for t in graph.op(s.name).outputs:
                open_[t] = (i, offs.get(t))
        elif s.kind == "F" and s.name in open_:
            start, off = open_.pop(s.name)
            out.append(Residency(s.name, start, i, off))
    out += [Residency(t, start, len(stages), off) for t, (start, off) in open_.items()]
    return out


def resident_before_runs(graph: Graph, stages: Sequence[Stage]) -> list[frozenset[str]]:
    """For each R stage, in order: the tensors resident just before it runs (its inputs
    among them in a valid plan; not its outputs)."""
    resident: set[str] = set()
    out: list[frozenset[str]] = []
    for s in stages:
        if s.kind == "L":
            resident.add(s.name)
        elif s.kind == "F":
            resident.discard(s.name)
        elif s.kind == "R":
            out.append(frozenset(resident))
            resident.update(graph.op(s.name).outputs)
    return out
