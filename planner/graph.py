"""The inference graph: operators connected by tensors with byte sizes.

Every solver, the simulator and the executor read this one structure, so it is kept
small and immutable after construction. The networkx DiGraph over ops is derived from
the tensors (an edge producer -> consumer per tensor) and used for topological work.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal, get_args

import networkx as nx

TensorKind = Literal["input", "weight", "activation", "output"]
TENSOR_KINDS: tuple[str, ...] = get_args(TensorKind)
# the most bytes a graph's tensors may add up to: 8 PiB, far past any device, and low enough
# that every sum a solver forms (arenas, traffic, CP-SAT bounds) stays exact in 64 bits
MAX_GRAPH_BYTES = 1 << 53


class GraphError(ValueError):
    """The graph is not a valid DAG of ops and tensors (message says exactly why)."""


@dataclass(frozen=True)
class Tensor:
    """An edge of the graph: a named buffer of `bytes` bytes.

    `kind` says where it comes from and where it must end up: a graph ``input`` starts in
    LLB, a ``weight`` is a constant (in LLB, or read in place, see `Target.weights`), an
    ``activation`` is made and consumed inside the graph, an ``output`` must end in LLB.
    `shape` and `dtype` are kept for executors and exporters; solvers read only `bytes`.
    """

    name: str
    bytes: int
    kind: TensorKind
    shape: tuple[int, ...] | None = None
    dtype: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in TENSOR_KINDS:
            raise GraphError(f"tensor {self.name!r}: unknown kind {self.kind!r}")
        if not isinstance(self.bytes, int) or self.bytes < 0:
            raise GraphError(f"tensor {self.name!r}: bytes must be a non-negative int, got {self.bytes!r}")


@dataclass(frozen=True)
class Op:
    """A node of the graph: runs once, reads `inputs`, writes `outputs` (tensor names).

    `attrs` is free-form data an importer keeps for the executor and the exporters (the
    ONNX node, the TFLite operator index); solvers never read it, except the markers that
    other modules of the planner set (``pseudo``, ``nested``, ``synthetic``).
    """

    name: str
    type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict = field(default_factory=dict, compare=False, hash=False, repr=False)


@dataclass(frozen=True, eq=False)
class ModelSource:
    """Where a graph came from, filled in by its importer.

    `sha256` fingerprints the model file, so a plan made from it (through the CLI or the
    library alike) can later be refused for a different file; the pins are what the
    importer needed to make every size static, so the model can be imported again
    identically (by the executor, by constant folding). `details` holds format-specific
    data an exporter needs (for TFLite, the map back to flatbuffer indices).

    `transforms` are the records of the transformations (DESIGN §7) that made this graph
    from the model file, in the order applied, e.g. `planner.models.fuse.FusionRecord`: each
    has a ``kind``, ``applied`` (whether it changed the graph) and ``to_dict()`` (the plan
    file's ``transforms`` entry, written for the applied ones). A graph read from a plan
    file holds those entries as plain dicts. The path and sha256 stay the model file's.

    `notes` are one-line remarks of the importer a user should see (shapes it settled by
    measuring where the model's declared and inferred shapes disagree, ops a runtime lacks).

    `given` is the MODEL as the user named it (a zoo name, or the file path as typed): the
    plan file records it (``model.path``) so that `planner run PLAN` finds the model again.
    """

    format: str  # onnx | tflite | generated | plan
    path: str | None = None
    sha256: str = ""
    input_shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    dims: Mapping[str, int] = field(default_factory=dict)
    input_values: Mapping[str, Any] = field(default_factory=dict)
    details: Any = field(default=None, repr=False)
    transforms: tuple[Any, ...] = ()
    notes: tuple[str, ...] = ()
    given: str | None = None


def model_sha256(data: bytes) -> str:
    """The fingerprint a graph's source records of its model file (`ModelSource.sha256`)."""
    return hashlib.sha256(data).hexdigest()


class Graph:
    """Ops in the model's own order plus tensors; validated on construction.

    Graph outputs have kind ``output``; a graph output may also feed other ops.
    Weights never have a producer; inputs never have a producer. Construction raises
    `GraphError` with one line for anything that is not a DAG of ops and tensors, so every
    later stage can trust the structure. `source` says where the graph came from.

        >>> g = graph_from_records("tiny", [("a", ["x"], ["y"])], {"x": 4, "y": 8}, inputs=["x"], outputs=["y"])
        >>> g.consumers["x"], g.producer["y"]
        (('a',), 'a')
    """

    def __init__(
        self, name: str, tensors: Iterable[Tensor], ops: Sequence[Op], source: ModelSource | None = None
    ) -> None:
        self.name = name
        self.source = source
        self._derived: dict = {}  # facts computed once from the immutable structure (see `derived`)
        self.tensors: dict[str, Tensor] = {}
        for t in tensors:
            if t.name in self.tensors:
                raise GraphError(f"tensor name {t.name!r} is used twice")
            self.tensors[t.name] = t
        total = sum(t.bytes for t in self.tensors.values())
        if total > MAX_GRAPH_BYTES:
            big = max(self.tensors.values(), key=lambda t: t.bytes)
            raise GraphError(
                f"tensor sizes add up to {total} bytes (largest {big.name!r}: {big.bytes} B), more than 2**53: "
                "beyond any memory a plan is made for"
            )
        self.ops: list[Op] = list(ops)
        self.op_index: dict[str, int] = {}
        for i, o in enumerate(self.ops):
            if o.name in self.op_index:
                raise GraphError(f"op name {o.name!r} is used twice")
            self.op_index[o.name] = i
        self._validate()

    def derived(self, key, compute):
        """`compute()` once per graph and `key`: for facts of the structure that many callers
        need (the graph never changes after construction, so they never go stale)."""
        if key not in self._derived:
            self._derived[key] = compute()
        return self._derived[key]

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
        """Names of the graph inputs (kind ``input``), in tensor order."""
        return [n for n, t in self.tensors.items() if t.kind == "input"]

    @cached_property
    def outputs(self) -> list[str]:
        """Names of the graph outputs (kind ``output``), in tensor order."""
        return [n for n, t in self.tensors.items() if t.kind == "output"]

    @cached_property
    def weights(self) -> list[str]:
        """Names of the weights (kind ``weight``), in tensor order."""
        return [n for n, t in self.tensors.items() if t.kind == "weight"]

    def op(self, name: str) -> Op:
        """The op called `name` (KeyError if there is none)."""
        return self.ops[self.op_index[name]]

    def size(self, tensor: str) -> int:
        """Bytes of the tensor called `tensor`."""
        return self.tensors[tensor].bytes

    def is_topological(self, order: Sequence[str]) -> bool:
        """Whether `order` runs every op exactly once, each after all its producers."""
        pos = {o: i for i, o in enumerate(order)}
        if len(pos) != len(self.ops) or set(pos) != set(self.op_index):
            return False
        return all(pos[u] < pos[v] for u, v in self.dag.edges)

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
    """Build a graph from (op, inputs, outputs) triples; handy for tests and generators.

    Every tensor not named in `inputs`, `outputs` or `weights` is an activation."""
    inputs, outputs, weights = set(inputs), set(outputs), set(weights)
    tensors = []
    for t, b in sizes.items():
        kind = "input" if t in inputs else "weight" if t in weights else "output" if t in outputs else "activation"
        tensors.append(Tensor(t, int(b), kind))
    source = ModelSource("generated")
    return Graph(name, tensors, [Op(o, op_type, tuple(i), tuple(out)) for o, i, out in ops], source)
