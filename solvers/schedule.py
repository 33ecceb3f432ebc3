"""Canonical schedules: L/R/S steps with the frees attached to the step they follow.

An F never raises memory nor enables anything but a later placement, so moving each F
to right after the stage it follows changes neither peak nor traffic. The timestep model
(cpsat_stage) and the fixed-order spill model (cpsat_spill) both build this form and
expand it to stages; `canonicalize` rewrites any valid plan into it without raising
memory (the hint both models start from).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from planner.graph import Graph
from planner.plan import Stage
from planner.target import Target


@dataclass
class Schedule:
    """Steps (kind L|R|S, name) and, per step, the tensors freed right after it."""

    steps: list[tuple[str, str]]
    frees: list[list[str]]
    graph: Graph | None = field(default=None, repr=False)

    def _outputs(self, op: str) -> tuple[str, ...]:
        return self.graph.op(op).outputs if self.graph is not None else ()

    def stages(self, offsets: dict[int, dict[str, int]] | None = None) -> list[Stage]:
        """Expand to stages; offsets[step] maps created tensor -> offset (0 when absent)."""
        out: list[Stage] = []
        for i, (kind, name) in enumerate(self.steps):
            offs = (offsets or {}).get(i, {})
            if kind == "L":
                out.append(Stage("L", name, offset=offs.get(name, 0)))
            elif kind == "R":
                out.append(Stage("R", name, offsets={t: offs.get(t, 0) for t in self._outputs(name)}))
            else:
                out.append(Stage("S", name))
            out += [Stage("F", t) for t in self.frees[i]]
        return out


def canonicalize(graph: Graph, target: Target, stages: Sequence[Stage]) -> Schedule:
    """Rewrite a valid plan into the canonical form the model allows, never raising memory.

    Same op order and stored set; each store moves right after its producer; each load
    residency is loaded right before its first use (loads before one R sorted by tensor
    index); each residency is freed right after its last use (or its store / production
    when it has no use). Useless loads are dropped.
    """
    g = graph
    tidx = {t: i for i, t in enumerate(g.tensors)}
    order = [s.name for s in stages if s.kind == "R"]
    stored = {s.name for s in stages if s.kind == "S"}
    open_res: dict[str, dict] = {}
    residencies: list[dict] = []
    for s in stages:
        if s.kind == "L":
            open_res[s.name] = {"t": s.name, "kind": "L", "uses": []}
            residencies.append(open_res[s.name])
        elif s.kind == "R":
            op = g.op(s.name)
            for t in dict.fromkeys(op.inputs):
                if t in open_res:
                    open_res[t]["uses"].append(s.name)
            for t in op.outputs:
                open_res[t] = {"t": t, "kind": "P", "uses": [], "prod": s.name}
                residencies.append(open_res[t])
        elif s.kind == "F":
            open_res.pop(s.name, None)
    loads_before: dict[str, list[str]] = {}
    for r in residencies:
        if r["kind"] == "L" and r["uses"]:
            loads_before.setdefault(r["uses"][0], []).append(r["t"])
    steps: list[tuple[str, str]] = []
    rstep: dict[str, int] = {}
    sstep: dict[str, int] = {}
    for o in order:
        for t in sorted(loads_before.get(o, []), key=tidx.__getitem__):
            steps.append(("L", t))
        rstep[o] = len(steps)
        steps.append(("R", o))
        for t in sorted((t for t in g.op(o).outputs if t in stored), key=tidx.__getitem__):
            sstep[t] = len(steps)
            steps.append(("S", t))
    frees: list[list[str]] = [[] for _ in steps]
    for r in residencies:
        if r["kind"] == "L" and not r["uses"]:
            continue
        if r["uses"]:
            f = max(rstep[u] for u in r["uses"])
        elif r["t"] in sstep:
            f = sstep[r["t"]]
        else:
            f = rstep[r["prod"]]
        frees[f].append(r["t"])
    for fl in frees:
        fl.sort(key=tidx.__getitem__)
    return Schedule(steps, frees, g)
