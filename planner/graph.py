"""The inference graph: operators connected by tensors with byte sizes.

Every solver, the simulator and the executor read this one structure, so it is kept
small and immutable after construction. The networkx DiGraph over ops is derived from
the tensors (an edge producer -> consumer per tensor) and used for topological work.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import networkx as nx

TENSOR_KINDS = ("input", "weight", "activation", "output")


class GraphError(ValueError):
    """The graph is not a valid DAG of ops and tensors (message says exactly why)."""


@dataclass(frozen=True)
class Tensor:
    name: str
    bytes: int
    kind: str  # input | weight | activation | output
    shape: tuple[int, ...] | None = None
    dtype: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in TENSOR_KINDS:
            raise GraphError(f"tensor {self.name!r}: unknown kind {self.kind!r}")
        if not isinstance(self.bytes, int) or self.bytes < 0:
            raise GraphError(f"tensor {self.name!r}: bytes must be a non-negative int, got {self.bytes!r}")


@dataclass(frozen=True)
class Op:
    name: str
    type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    # Free-form data an importer keeps for the executor / exporters (never used by solvers).
    attrs: dict = field(default_factory=dict, compare=False, hash=False, repr=False)


class Graph:
    """Ops in the model's own order plus tensors; validated on construction.

    Graph outputs have kind ``output``; a graph output may also feed other ops.
    Weights never have a producer; inputs never have a producer.
    """

    def __init__(self, name: str, tensors: Iterable[Tensor], ops: Sequence[Op]) -> None:
        self.name = name
        self.tensors: dict[str, Tensor] = {}
        for t in tensors:
            if t.name in self.tensors:
                raise GraphError(f"tensor name {t.name!r} is used twice")
            self.tensors[t.name] = t
        self.ops: list[Op] = list(ops)
        self.op_index: dict[str, int] = {}
        for i, o in enumerate(self.ops):
            if o.name in self.op_index:
                raise GraphError(f"op name {o.name!r} is used twice")
            self.op_index[o.name] = i
        self._validate()

    def nested_ops(self) -> list[Op]:
        """Ops that run nested graphs (ONNX If/Loop/Scan, TFLite IF/WHILE/CALL_ONCE): each is
        planned as one op, so the memory their bodies use inside is not in any plan."""
        return [o for o in self.ops if o.attrs.get("nested")]

    # -- derived structure -------------------------------------------------------------
    def _validate(self) -> None:
        producer: dict[str, str] = {}
        consumers: dict[str, list[str]] = {n: [] for n in self.tensors}
        for o in self.ops:
            if not o.outputs:
                raise GraphError(f"op {o.name!r} ({o.type}) has no outputs")
            if len(set(o.outputs)) != len(o.outputs):
                raise GraphError(f"op {o.name!r} lists an output twice")
            for t in o.outputs:
                if t not in self.tensors:
                    raise GraphError(f"op {o.name!r} produces unknown tensor {t!r}")
                if t in producer:
                    raise GraphError(f"tensor {t!r} is produced by both {producer[t]!r} and {o.name!r}")
                kind = self.tensors[t].kind
                if kind in ("input", "weight"):
                    raise GraphError(f"tensor {t!r} is a graph {kind} but op {o.name!r} produces it")
                producer[t] = o.name
            for t in dict.fromkeys(o.inputs):
                if t not in self.tensors:
                    raise GraphError(f"op {o.name!r} reads unknown tensor {t!r}")
                consumers[t].append(o.name)
        for t in self.tensors.values():
            if t.kind in ("activation", "output") and t.name not in producer:
                raise GraphError(f"tensor {t.name!r} ({t.kind}) is consumed but never produced")
        self.producer = producer
        self.consumers = {k: tuple(v) for k, v in consumers.items()}
        g = nx.DiGraph()
        g.add_nodes_from(o.name for o in self.ops)
        for t, p in producer.items():
            for c in self.consumers[t]:
                if c == p:
                    raise GraphError(f"op {p!r} reads its own output {t!r} (cycle)")
                g.add_edge(p, c)
        if not nx.is_directed_acyclic_graph(g):
            cyc = nx.find_cycle(g)
            path = " -> ".join([e[0] for e in cyc] + [cyc[-1][1]])
            raise GraphError(f"graph has a cycle: {path}")
        self.dag = g

    @cached_property
    def inputs(self) -> list[str]:
        return [n for n, t in self.tensors.items() if t.kind == "input"]

    @cached_property
    def outputs(self) -> list[str]:
        return [n for n, t in self.tensors.items() if t.kind == "output"]

    @cached_property
    def weights(self) -> list[str]:
        return [n for n, t in self.tensors.items() if t.kind == "weight"]

    def op(self, name: str) -> Op:
        return self.ops[self.op_index[name]]

    def size(self, tensor: str) -> int:
        return self.tensors[tensor].bytes

    def is_topological(self, order: Sequence[str]) -> bool:
        pos = {o: i for i, o in enumerate(order)}
        if len(pos) != len(self.ops) or set(pos) != set(self.op_index):
            return False
        return all(pos[u] < pos[v] for u, v in self.dag.edges)

    def predecessors(self, op: str) -> list[str]:
        return list(self.dag.predecessors(op))

    def successors(self, op: str) -> list[str]:
        return list(self.dag.successors(op))

    def __repr__(self) -> str:
        return f"Graph({self.name!r}, ops={len(self.ops)}, tensors={len(self.tensors)})"


def graph_from_records(
    name: str,
    ops: Sequence[tuple[str, Sequence[str], Sequence[str]]],
    sizes: dict[str, int],
    inputs: Iterable[str] = (),
    outputs: Iterable[str] = (),
    weights: Iterable[str] = (),
    op_type: str = "Op",
) -> Graph:
    """Build a graph from (op, inputs, outputs) triples; handy for tests and generators."""
    inputs, outputs, weights = set(inputs), set(outputs), set(weights)
    tensors = []
    for t, b in sizes.items():
        kind = "input" if t in inputs else "weight" if t in weights else "output" if t in outputs else "activation"
        tensors.append(Tensor(t, int(b), kind))
    return Graph(name, tensors, [Op(o, op_type, tuple(i), tuple(out)) for o, i, out in ops])
