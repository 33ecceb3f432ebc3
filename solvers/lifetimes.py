"""Minimal lifetimes for no-spill plans, by rewriting the graph instead of every solver.

Two lifetime rules are in use (``Target.lifetimes``):

- ``tflm``: TFLite Micro's. Graph inputs are resident from the first op, graph outputs
  from their producer to the end. TFLM's arena assumes this, so a plan exported into a
  .tflite must use it. Every no-spill solver models it through tensor kinds
  (solvers/lowering.py).
- ``minimal``: what the stage model of DESIGN §1 allows without extra traffic. An input is
  loaded right before its first consumer; an output is stored right after it is produced
  and freed after its last consumer. Every no-spill plan under ``tflm`` is also one
  under ``minimal``, so the minimum can only be smaller (silero-vad: 9,288 B against
  10,312 B, the state inputs loaded late).

``rewrite`` turns the second rule into the first. Each consumed input ``x`` becomes an
activation produced by a pseudo-op ``load:x`` with no inputs. Each output ``y`` becomes an
activation read by a pseudo-op ``store:y``, which writes a 0-byte marker output. Under
``tflm`` lifetimes the rewritten graph's tensors have the minimal lifetimes of the original.
Any no-spill solver then runs unchanged, and ``restore`` maps its plan back stage by
stage: ``R load:x`` becomes ``L x``, ``R store:y`` becomes ``S y``, and the marker stages
are dropped.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

from planner.graph import Graph, Op, Tensor
from planner.plan import Plan, Stage
from planner.simulate import finalize
from planner.target import Target

LOAD = "planner.Load"
STORE = "planner.Store"


def _fresh(name: str, taken: set[str]) -> str:
    out, k = name, 1
    while out in taken:
        out, k = f"{name}~{k}", k + 1
    taken.add(out)
    return out


def rewrite(graph: Graph) -> Graph:
    """The graph with a pseudo-op per consumed input (load) and per output (store)."""
    op_names = {o.name for o in graph.ops}
    tensor_names = set(graph.tensors)
    tensors: list[Tensor] = []
    load_before: dict[str, list[Op]] = {}  # first consumer -> load ops placed before it
    stores: dict[str, list[Op]] = {}  # producer -> store ops placed after it
    first_use = {o.name: i for i, o in enumerate(graph.ops)}
    for t in graph.tensors.values():
        if t.kind == "input" and graph.consumers[t.name]:
            tensors.append(Tensor(t.name, t.bytes, "activation", t.shape, t.dtype))
            op = Op(_fresh(f"load:{t.name}", op_names), LOAD, (), (t.name,), {"pseudo": "load", "tensor": t.name})
            first = min(graph.consumers[t.name], key=first_use.__getitem__)
            load_before.setdefault(first, []).append(op)
        elif t.kind == "output":
            tensors.append(Tensor(t.name, t.bytes, "activation", t.shape, t.dtype))
            marker = _fresh(f"{t.name}:stored", tensor_names)
            tensors.append(Tensor(marker, 0, "output"))
            op = Op(
                _fresh(f"store:{t.name}", op_names),
                STORE,
                (t.name,),
                (marker,),
                {"pseudo": "store", "tensor": t.name},
            )
            stores.setdefault(graph.producer[t.name], []).append(op)
        else:
            tensors.append(t)
    ops: list[Op] = []
    for o in graph.ops:  # the model's order, each pseudo-op next to the op it serves
        ops += load_before.get(o.name, [])
        ops.append(o)
        ops += stores.get(o.name, [])
    return Graph(graph.name, tensors, ops, graph.source)


def restore_stages(rewritten: Graph, stages: Sequence[Stage]) -> list[Stage]:
    """Stages of `rewritten = rewrite(graph)` as stages of `graph`: ``R load:x`` becomes
    ``L x``, ``R store:y`` becomes ``S y``, the markers' stages are dropped."""
    pseudo = {o.name: o.attrs for o in rewritten.ops if o.attrs.get("pseudo") in ("load", "store")}
    markers = {o.outputs[0] for o in rewritten.ops if o.attrs.get("pseudo") == "store"}
    out: list[Stage] = []
    for s in stages:
        if s.kind == "R" and s.name in pseudo:
            a = pseudo[s.name]
            t = a["tensor"]
            out.append(Stage("L", t, offset=(s.offsets or {})[t]) if a["pseudo"] == "load" else Stage("S", t))
        elif s.name not in markers:
            out.append(s)
    return out


def restore(plan: Plan, graph: Graph, target: Target) -> Plan:
    """A plan of `rewrite(graph)` as a plan of `graph`, checked again by the simulator."""
    return finalize(Plan(graph, target, restore_stages(plan.graph, plan.stages), plan.solver))


def with_lifetimes(solve: Callable[..., Plan]) -> Callable[..., Plan]:
    """A no-spill solver that honours `target.lifetimes` (see the module docstring)."""

    @functools.wraps(solve)
    def run(graph: Graph, target: Target, options=None) -> Plan:
        if target.lifetimes != "minimal":
            return solve(graph, target, options)
        return restore(solve(rewrite(graph), target, options), graph, target)

    return run
