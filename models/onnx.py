"""ONNX importer: a ``.onnx`` file -> :class:`planner.graph.Graph` with static tensor sizes.

Pipeline (:func:`load_onnx`):

1. **Parse** the file (missing, truncated or corrupt files raise :class:`ModelError`).
2. **Order and check** the main graph: every tensor read is defined, no name is produced
   twice, and the nodes form a DAG (a cycle raises ``ModelError`` naming it). Nodes keep the
   model's own order when it is topological, otherwise a stable topological order is used.
3. **Pin the graph inputs** to concrete shapes: ``input_shapes`` (input name -> shape) wins,
   then ``dims`` (symbolic dim name -> size) fills symbolic dims. A declared dim of ``-1``,
   ``0``/missing or a symbolic name is unknown; an input left with an unknown dim raises
   ``ModelError`` naming the input and the ``--input-shape NAME=AxBxC`` / ``--dim NAME=N``
   flag that fixes it.
4. **Shapes**: ``onnx.shape_inference.infer_shapes(model, data_prop=True)`` on the pinned
   model. *Fallback*: if a tensor the plan needs still has no static shape (control flow,
   custom ops, shape logic inference cannot follow), the model is run **once** in
   onnxruntime with every such intermediate added as a graph output and deterministic
   inputs of the pinned shapes (seeded normal floats, zero integers / booleans); the shapes
   of the arrays it returns are recorded. If that is impossible too, ``ModelError``.
5. **Constant folding** (classification only, no arithmetic): a tensor is constant when it
   is an initializer, the output of ``Constant``, the output of ``Shape``/``Size`` of a
   tensor whose shape is static, or the output of a default-domain op all of whose inputs
   (including outer-scope reads of its subgraphs) are constant (``ConstantOfShape``,
   ``Reshape``/``Cast``/``Unsqueeze`` of constants, ...). Random ops are never folded, nor a
   node that produces a graph output. Folded nodes disappear from the op list; the
   constants that a remaining op reads become tensors of kind ``weight`` (interior
   constants that only fed folded nodes are dropped). Values are computed only on demand
   by :func:`fold_constants` (``onnx.reference.ReferenceEvaluator``).
6. **Build** the Graph: kinds ``input`` (graph inputs that are not initializers), ``weight``,
   ``output`` (graph outputs), ``activation`` (the rest). Empty optional inputs are skipped;
   optional outputs that are empty or never read (e.g. Dropout's mask) are dropped from
   the op's outputs, unless that leaves none (then the first is kept).

Control flow (``If``/``Loop``/``Scan``) is one op whose inputs are the node's inputs plus
every outer-scope tensor its bodies read (recursively, listed in
``attrs["outer_inputs"]``); its outputs are the node's outputs.

Ops of unknown domains (custom ops) are kept as ops; their output shapes must come from
inference or the onnxruntime fallback, otherwise ``ModelError``.

A graph output that is directly a graph input or an initializer has no producing op, which
a plan cannot express (outputs are produced, then stored). The importer adds a synthetic
``Identity`` op (``attrs["synthetic"] = True``) that copies it into a new output tensor
named ``"<name>:output"``; the input / weight keeps its own name and kind.

Every op keeps ``attrs["node"]`` (the ``onnx.NodeProto``), ``attrs["domain"]`` and
``attrs["opset"]`` (domain -> version) for an executor. A ``Slice`` whose starts / axes /
steps are constants, every step 1, and whose output differs from its input along exactly
one axis also gets ``attrs["slice"] = (axis, start)`` (normalised: negative values from the
back, clamped to the dim), which lets its output share its input's bytes
(planner/sharing.py). The returned graph's ``source`` (a
:class:`planner.graph.ModelSource`) records the file, its sha256 and the pins, which is
what :func:`fold_constants` needs to recompute the weights' values.

Tensor bytes are ``prod(shape) * itemsize`` (4-bit types pack two per byte); string or
unknown element types raise ``ModelError``.
"""

from __future__ import annotations

import heapq
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import AttributeProto, ModelProto, TensorProto, helper, numpy_helper

from planner.graph import MAX_GRAPH_BYTES, Graph, GraphError, ModelSource, Op, Tensor, model_sha256

from .errors import ModelError

__all__ = ["ModelError", "load_onnx", "fold_constants", "onnx_dtype"]

DEFAULT_DOMAINS = ("", "ai.onnx")
KNOWN_DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "ai.onnx.preview.training")
CONTROL_FLOW = ("If", "Loop", "Scan")
# never folded even when all inputs are constant
NO_FOLD = {
    "RandomNormal",
    "RandomUniform",
    "RandomNormalLike",
    "RandomUniformLike",
    "Multinomial",
    "Bernoulli",
}
# sub-byte element types are packed: bits per element
_PACKED_BITS = {
    getattr(TensorProto, n): b
    for n, b in (
        ("INT4", 4),
        ("UINT4", 4),
        ("FLOAT4E2M1", 4),
        ("INT2", 2),
        ("UINT2", 2),
        ("FLOAT6E2M3", 6),
        ("FLOAT6E3M2", 6),
    )
    if hasattr(TensorProto, n)
}
_SEED = 0

Shape = tuple[int, ...]


# --------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------
def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    msg = text[0] if text else type(e).__name__
    return msg if len(msg) <= 300 else msg[:297] + "..."


def onnx_dtype(elem_type: int, where: str = "tensor") -> np.dtype:
    """numpy dtype of an ONNX element type; ``ModelError`` for strings / unknown types."""
    if elem_type == TensorProto.STRING:
        raise ModelError(f"{where} has element type STRING, which has no fixed size")
    try:
        dt = np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))
    except Exception:  # noqa: BLE001 - onnx raises KeyError/ValueError variants
        raise ModelError(f"{where} has unknown element type {elem_type}") from None
    if dt.kind == "O":
        raise ModelError(f"{where} has element type {TensorProto.DataType.Name(elem_type)}, which has no fixed size")
    return dt


def _nbytes(shape: Shape, elem_type: int, where: str) -> int:
    n = math.prod(shape)
    if elem_type in _PACKED_BITS:
        nbytes = (n * _PACKED_BITS[elem_type] + 7) // 8
    else:
        nbytes = int(n * onnx_dtype(elem_type, where).itemsize)
    if nbytes > MAX_GRAPH_BYTES:
        shown = "x".join(map(str, shape))
        raise ModelError(f"{where} has shape {shown}: {nbytes} bytes, more than 2**53, beyond any memory")
    return nbytes


def _subgraphs(node: onnx.NodeProto) -> list[onnx.GraphProto]:
    out = []
    for a in node.attribute:
        if a.type == AttributeProto.GRAPH:
            out.append(a.g)
        elif a.type == AttributeProto.GRAPHS:
            out.extend(a.graphs)
    return out


def _free_vars(g: onnx.GraphProto) -> list[str]:
    """Names a (sub)graph reads, recursively, that it does not define itself."""
    defined = {i.name for i in g.input} | {i.name for i in g.initializer}
    defined |= {s.values.name for s in g.sparse_initializer}
    for n in g.node:
        defined.update(n.output)
    free: dict[str, None] = {}
    for n in g.node:
        for i in n.input:
            if i and i not in defined:
                free[i] = None
        for sg in _subgraphs(n):
            for v in _free_vars(sg):
                if v not in defined:
                    free[v] = None
    for o in g.output:
        if o.name not in defined:
            free[o.name] = None
    return list(free)


def _load_proto(path: Path) -> tuple[ModelProto, str]:
    """The parsed model (external data not loaded) and the sha256 of the file."""
    if not path.exists():
        raise ModelError(f"model file not found: {path}")
    if not path.is_file():
        raise ModelError(f"not a file: {path}")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ModelError(f"cannot read {path}: {e.strerror}") from None
    try:
        model = onnx.load_model_from_string(data)
    except Exception as e:  # noqa: BLE001 - protobuf DecodeError and friends
        raise ModelError(f"{path.name}: not a valid ONNX file (truncated or corrupt?): {_one_line(e)}") from None
    if not model.HasField("graph") or len(model.graph.node) == 0:
        raise ModelError(f"{path.name}: not a valid ONNX model (no graph or no nodes; truncated or corrupt?)")
    _check_runnable(model, path)
    return model, model_sha256(data)


def _check_runnable(model: ModelProto, path: Path) -> None:
    """Refuse, with one line, what no ONNX runtime loads and a plan would silently accept:
    a graph without outputs, two nodes of one name (Constant nodes aside), an opset or IR version newer than onnx
    knows (onnxruntime refuses the same), weights in external files that are missing."""
    g = model.graph
    if not g.output:
        raise ModelError(f"{path.name}: the graph has no outputs; there is nothing to compute or plan")
    seen: dict[str, int] = {}
    for k, n in enumerate(g.node):
        if n.op_type == "Constant" and n.domain in DEFAULT_DOMAINS:
            continue  # onnxruntime turns Constant nodes into initializers: their names may repeat
        if n.name and n.name in seen:
            raise ModelError(
                f"{path.name}: nodes {seen[n.name]} and {k} are both named {n.name!r}; node names must be unique "
                "(onnxruntime refuses the model)"
            )
        seen[n.name] = k
    newest = onnx.defs.onnx_opset_version()
    for imp in model.opset_import:
        if imp.domain in DEFAULT_DOMAINS and not 1 <= imp.version <= newest:
            raise ModelError(
                f"{path.name}: opset {imp.version} of the default domain is not one onnx {onnx.__version__} knows "
                f"(1..{newest}); no runtime here can run it"
            )
    if model.ir_version > onnx.IR_VERSION:
        raise ModelError(
            f"{path.name}: IR version {model.ir_version} is newer than onnx {onnx.__version__} reads ({onnx.IR_VERSION})"
        )
    _check_external_data(model, path)
    _check_schemas(model, path)


def _check_schemas(model: ModelProto, path: Path) -> None:
    """Every node of the main graph in an onnx domain is an op of its opset, with as many
    inputs and outputs as its schema allows (onnxruntime refuses the model otherwise; the
    full onnx checker is stricter than runtimes about what is not a node, so it is not used)."""
    opsets = {(imp.domain or ""): imp.version for imp in model.opset_import}
    local = {(f.domain, f.name) for f in model.functions}
    for k, n in enumerate(model.graph.node):
        domain = "" if n.domain in DEFAULT_DOMAINS else n.domain
        if domain not in ("", "ai.onnx.ml") or (n.domain, n.op_type) in local or domain not in opsets:
            continue
        try:
            schema = onnx.defs.get_schema(n.op_type, opsets[domain], domain)
        except Exception:  # noqa: BLE001 - SchemaError: no such op in this opset
            raise ModelError(
                f"{path.name}: node {n.name or k} is a {n.op_type!r}, which opset {opsets[domain]} of "
                f"{domain or 'ai.onnx'} does not have"
            ) from None
        for what, count, lo, hi in (
            ("inputs", len(n.input), schema.min_input, schema.max_input),
            ("outputs", len(n.output), schema.min_output, schema.max_output),
        ):
            if not lo <= count <= hi:
                raise ModelError(
                    f"{path.name}: node {n.name or k} ({n.op_type}) has {count} {what}; "
                    f"{n.op_type}-{schema.since_version} takes {lo}..{hi}"
                )


def _check_types(m: ModelProto, path: Path) -> None:
    """Refuse a model whose element types clash (an Add of float and int64): onnx's strict
    type inference says so, and onnxruntime, asked when it is installed, confirms that it
    cannot load the model (strict inference alone may be too strict for valid models)."""
    try:
        onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True)
        return
    except Exception as e:  # noqa: BLE001 - InferenceError and friends
        why = _one_line(e)
    try:
        import onnxruntime as ort
    except ImportError:
        return
    so = ort.SessionOptions()
    so.log_severity_level = 4
    ort.set_default_logger_severity(4)
    try:
        ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001 - onnxruntime agrees: no runtime here loads it
        raise ModelError(f"{path.name}: onnxruntime cannot load the model: {why}") from None


def _check_external_data(model: ModelProto, path: Path) -> None:
    """Every initializer stored outside the model file names a file next to it that holds
    its bytes (a model copied without its ``.data`` file cannot be run or folded)."""
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    for t in model.graph.initializer:
        if not uses_external_data(t):
            continue
        info = ExternalDataInfo(t)
        loc = Path(info.location or "")
        where = path.parent / loc
        if not info.location or loc.is_absolute() or ".." in loc.parts:
            raise ModelError(
                f"{path.name}: weight {t.name!r} points at external data {info.location!r} outside its folder"
            )
        if not where.is_file():
            raise ModelError(f"{path.name}: weight {t.name!r} is stored in {info.location!r}, which is missing")
        size = where.stat().st_size
        end = (info.offset or 0) + (info.length or 0)
        if end > size:
            raise ModelError(
                f"{path.name}: weight {t.name!r} needs bytes up to {end} of {info.location!r}, which has {size}"
            )


def _dims_of(vi: onnx.ValueInfoProto) -> tuple[int, list] | None:
    """(elem_type, dims) of a tensor ValueInfo; dims entries are int (>=0), str or None."""
    t = vi.type
    if not t.HasField("tensor_type"):
        return None
    tt = t.tensor_type
    if not tt.HasField("shape"):
        return tt.elem_type, None
    dims: list = []
    for d in tt.shape.dim:
        if d.HasField("dim_value"):
            dims.append(d.dim_value)
        elif d.HasField("dim_param") and d.dim_param:
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return tt.elem_type, dims


def _static(dims: list | None) -> Shape | None:
    if dims is None or not all(isinstance(d, int) and d >= 0 for d in dims):
        return None
    return tuple(dims)


# --------------------------------------------------------------------------------------
# analysis shared by load_onnx and fold_constants
# --------------------------------------------------------------------------------------
@dataclass
class _Analysis:
    path: Path
    model: ModelProto  # original, as parsed
    order: list[int]  # topological order of main-graph node indices
    outer: dict[int, list[str]]  # node index -> outer-scope names its subgraphs read
    producer: dict[str, int]
    inits: set[str]
    graph_inputs: list[str]  # non-initializer graph inputs
    graph_outputs: list[str]
    pinned: dict[str, Shape]
    values: dict[str, np.ndarray] = field(default_factory=dict)  # inputs for the onnxruntime fallback
    types: dict[str, int] = field(default_factory=dict)  # name -> elem_type
    shapes: dict[str, Shape] = field(default_factory=dict)  # name -> static shape
    const: set[str] = field(default_factory=set)
    folded: set[int] = field(default_factory=set)  # node indices folded away
    notes: list[str] = field(default_factory=list)  # one line each: what a user should know (shapes settled)


def _order_and_check(model: ModelProto, path: Path) -> tuple[list[int], dict[int, list[str]], dict[str, int]]:
    g = model.graph
    inits = {i.name for i in g.initializer} | {s.values.name for s in g.sparse_initializer}
    inputs = {i.name for i in g.input}
    producer: dict[str, int] = {}
    for k, n in enumerate(g.node):
        for o in n.output:
            if not o:
                continue
            if o in producer:
                raise ModelError(f"{path.name}: tensor {o!r} is produced by two nodes ({producer[o]} and {k})")
            if o in inits or o in inputs:
                raise ModelError(f"{path.name}: node {k} ({n.op_type}) overwrites graph input/initializer {o!r}")
            producer[o] = k
    known = inits | inputs | set(producer)
    outer: dict[int, list[str]] = {}
    deps: list[set[int]] = []
    for k, n in enumerate(g.node):
        reads = [i for i in n.input if i]
        if n.op_type in CONTROL_FLOW or any(True for _ in _subgraphs(n)):
            fv = [v for v in _free_vars_of_node(n) if v not in n.input]
            outer[k] = fv
            reads = reads + fv
        d = set()
        for i in reads:
            if i not in known:
                raise ModelError(f"{path.name}: node {n.name or k} ({n.op_type}) reads {i!r}, which nothing defines")
            if i in producer:
                d.add(producer[i])
        if k in d:
            raise ModelError(f"{path.name}: node {n.name or k} ({n.op_type}) reads its own output (cycle)")
        deps.append(d)
    for o in g.output:
        if o.name not in known:
            raise ModelError(f"{path.name}: graph output {o.name!r} is never produced")
    # Kahn with the original index as priority: keeps the model's order when it is valid.
    users: list[list[int]] = [[] for _ in g.node]
    indeg = [len(d) for d in deps]
    for k, d in enumerate(deps):
        for p in d:
            users[p].append(k)
    heap = [k for k, x in enumerate(indeg) if x == 0]
    heapq.heapify(heap)
    order: list[int] = []
    while heap:
        k = heapq.heappop(heap)
        order.append(k)
        for u in users[k]:
            indeg[u] -= 1
            if indeg[u] == 0:
                heapq.heappush(heap, u)
    if len(order) != len(g.node):
        import networkx as nx

        left = {k for k, x in enumerate(indeg) if x > 0}
        dg = nx.DiGraph((p, k) for k in left for p in deps[k] if p in left)
        try:
            cyc = [e[0] for e in nx.find_cycle(dg)]
        except nx.NetworkXNoCycle:  # pragma: no cover - cannot happen
            cyc = sorted(left)
        names = [g.node[k].name or f"{g.node[k].op_type}_{k}" for k in cyc[:6]]
        raise ModelError(f"{path.name}: the graph has a cycle: {' -> '.join(names + [names[0]])}")
    return order, outer, producer


def _free_vars_of_node(n: onnx.NodeProto) -> list[str]:
    free: dict[str, None] = {}
    for sg in _subgraphs(n):
        for v in _free_vars(sg):
            free[v] = None
    return list(free)


def _pin_inputs(
    model: ModelProto,
    inits: set[str],
    input_shapes: Mapping[str, Iterable[int]] | None,
    dims: Mapping[str, int] | None,
    path: Path,
) -> dict[str, Shape]:
    try:
        input_shapes = {k: tuple(int(x) for x in v) for k, v in (input_shapes or {}).items()}
        dims = {k: int(v) for k, v in (dims or {}).items()}
    except (TypeError, ValueError) as e:
        raise ModelError(f"{path.name}: bad --input-shape / --dim value: {_one_line(e)}") from None
    real = [i for i in model.graph.input if i.name not in inits]
    names = [i.name for i in real]
    for k in input_shapes:
        if k not in names:
            raise ModelError(f"{path.name}: --input-shape names {k!r}, but the model's inputs are {', '.join(names)}")
    pinned: dict[str, Shape] = {}
    problems: list[str] = []
    for vi in real:
        info = _dims_of(vi)
        if info is None:
            raise ModelError(
                f"{path.name}: input {vi.name!r} is not a tensor (sequence/map/optional inputs unsupported)"
            )
        _, declared = info
        if vi.name in input_shapes:
            want = input_shapes[vi.name]
            if any(x < 0 for x in want):
                raise ModelError(f"{path.name}: --input-shape {vi.name}: sizes must be >= 0, got {want}")
            if declared is not None:
                if len(declared) != len(want):
                    raise ModelError(
                        f"{path.name}: input {vi.name!r} has rank {len(declared)} but --input-shape gives "
                        f"{'x'.join(map(str, want))} (rank {len(want)})"
                    )
                for ax, (d, w) in enumerate(zip(declared, want, strict=True)):
                    if isinstance(d, int) and d > 0 and d != w:
                        raise ModelError(
                            f"{path.name}: input {vi.name!r} dim {ax} is fixed at {d} in the model, "
                            f"but --input-shape gives {w}"
                        )
            pinned[vi.name] = want
            continue
        shape, problem = _pin_declared(vi.name, declared, dims)
        if problem:
            problems.append(problem)
        else:
            pinned[vi.name] = shape
    _check_dims_known(real, dims, path)
    if problems:
        raise ModelError(f"{path.name}: " + "; ".join(problems))
    return pinned


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _pin_declared(name: str, declared: list | None, dims: Mapping[str, int]) -> tuple[Shape, str | None]:
    """An input's declared shape with its symbolic dims filled from `dims`, or the problem
    that leaves it dynamic: the fix to type, in a form that cannot be copied blindly
    (``--input-shape x=Nx3xHxW``: placeholders, never sizes that would plan a 1x1 image),
    and ``--dim`` only for dimension names that are real symbols (not ``?`` or empty)."""
    if declared is None:
        return (), f"input {name!r} has no declared shape: pin it with --input-shape {name}=AxBx... (its real sizes)"
    shape: list[int | None] = []
    syms: list[str] = []
    for d in declared:
        if isinstance(d, str) and d in dims:
            shape.append(int(dims[d]))
        elif isinstance(d, int) and d > 0:
            shape.append(d)
        else:
            shape.append(None)
            if isinstance(d, str) and _IDENT.fullmatch(d):
                syms.append(d)
    if all(x is not None for x in shape):
        return tuple(shape), None  # type: ignore[arg-type]
    shown = "x".join("?" if x is None else str(x) for x in shape)
    holders = [
        str(x) if x is not None else (d.upper() if isinstance(d, str) and _IDENT.fullmatch(d) else f"D{ax}")
        for ax, (x, d) in enumerate(zip(shape, declared, strict=True))
    ]
    fix = f"--input-shape {name}={'x'.join(holders)}"
    if syms:
        fix += " or " + " ".join(f"--dim {s}=SIZE" for s in dict.fromkeys(syms))
    unknown = ", ".join(h for h, x in zip(holders, shape, strict=True) if x is None)
    return (), f"input {name!r} has dynamic shape {shown}: pin it with {fix} (the real sizes for {unknown})"


def _check_dims_known(real: list, dims: Mapping[str, int], path: Path) -> None:
    """Every --dim names a symbolic dimension of some graph input (a typo is not ignored)."""
    known = {d for vi in real for d in ((_dims_of(vi) or (0, None))[1] or []) if isinstance(d, str)}
    unknown = [k for k in dims if k not in known]
    if unknown:
        have = f"its named dimensions are {', '.join(sorted(known))}" if known else "it has no named dimensions"
        raise ModelError(
            f"{path.name}: --dim {unknown[0]}: the model's inputs have no dimension {unknown[0]!r}; {have}"
        )


def _pinned_copy(model: ModelProto, order: list[int], pinned: dict[str, Shape]) -> ModelProto:
    """A copy with inputs pinned, stale value_info dropped, outputs unshaped, nodes sorted."""
    m = ModelProto()
    m.CopyFrom(model)
    g = m.graph
    for vi in g.input:
        if vi.name in pinned:
            tt = vi.type.tensor_type
            tt.ClearField("shape")
            tt.shape.SetInParent()
            for s in pinned[vi.name]:
                tt.shape.dim.add().dim_value = s
    # Declared shapes of intermediates/outputs may be stale or symbolic: drop them, except
    # static ones produced by custom-domain ops (inference cannot recompute those).
    custom = {o for n in g.node if n.domain not in KNOWN_DOMAINS for o in n.output}
    keep = [vi for vi in g.value_info if vi.name in custom and _static((_dims_of(vi) or (0, None))[1]) is not None]
    del g.value_info[:]
    g.value_info.extend(keep)
    for vi in g.output:
        if vi.type.HasField("tensor_type") and not (
            vi.name in custom and _static((_dims_of(vi) or (0, None))[1]) is not None
        ):
            vi.type.tensor_type.ClearField("shape")
    if order != list(range(len(g.node))):
        nodes = [g.node[k] for k in order]
        copies = [onnx.NodeProto() for _ in nodes]
        for c, n in zip(copies, nodes, strict=True):
            c.CopyFrom(n)
        del g.node[:]
        g.node.extend(copies)
    return m


def _collect_shapes(m: ModelProto, a: _Analysis) -> None:
    g = m.graph
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        info = _dims_of(vi)
        if info is None:
            continue
        et, dims = info
        if et and vi.name not in a.types:
            a.types[vi.name] = et
        s = _static(dims)
        if s is not None and vi.name not in a.shapes:
            a.shapes[vi.name] = s
    for t in g.initializer:
        a.types[t.name] = t.data_type
        a.shapes[t.name] = tuple(t.dims)
    for s in g.sparse_initializer:
        a.types[s.values.name] = s.values.data_type
        a.shapes[s.values.name] = tuple(s.dims)
    for n in g.node:
        if n.op_type == "Constant" and n.domain in DEFAULT_DOMAINS and n.output:
            for at in n.attribute:
                if at.name == "value" and at.type == AttributeProto.TENSOR:
                    a.types.setdefault(n.output[0], at.t.data_type)
                    a.shapes.setdefault(n.output[0], tuple(at.t.dims))
    for name, s in a.pinned.items():
        a.shapes[name] = s


def _classify_constants(a: _Analysis) -> None:
    g = a.model.graph
    const = set(a.inits)
    folded: set[int] = set()
    gouts = set(a.graph_outputs)
    for k in a.order:
        n = g.node[k]
        outs = [o for o in n.output if o]
        if not outs or n.domain not in DEFAULT_DOMAINS or n.op_type in NO_FOLD or gouts.intersection(outs):
            continue
        reads = [i for i in n.input if i] + a.outer.get(k, [])
        if n.op_type == "Constant":
            ok = True
        elif n.op_type in ("Shape", "Size") and reads:
            ok = reads[0] in const or reads[0] in a.shapes
        else:
            ok = bool(reads) and all(i in const for i in reads)
        if ok:
            const.update(outs)
            folded.add(k)
    a.const = const
    a.folded = folded


def _input_value(vi: onnx.ValueInfoProto, v, path: Path) -> np.ndarray:
    """The value given for input `vi` (--input-value) as an array of its element type; a
    value the type cannot hold exactly (1.5 for an int64, 1e30 for an int32) is refused."""
    info = _dims_of(vi)
    dt = onnx_dtype(info[0], f"input {vi.name!r}") if info and info[0] else None
    try:
        given = np.asarray(v)
        arr = np.asarray(v, dtype=dt)
        exact = given.dtype.kind not in "fiub" or dt is None or bool(np.all(arr == given))
    except (TypeError, ValueError, OverflowError):
        exact = False
    if not exact:
        raise ModelError(f"{path.name}: input {vi.name!r} has element type {dt}, which cannot hold the value {v!r}")
    declared = info[1] if info else None
    if declared is not None and (
        len(declared) != arr.ndim
        or any(isinstance(d, int) and d > 0 and d != n for d, n in zip(declared, arr.shape, strict=True))
    ):
        shown = "x".join("?" if not isinstance(d, int) or d <= 0 else str(d) for d in declared) or "scalar"
        got = "x".join(map(str, arr.shape)) or "a scalar"
        raise ModelError(f"{path.name}: --input-value {vi.name}: the value is {got}, but the input has shape {shown}")
    return arr


def _analyse(path: Path, model: ModelProto, input_shapes, dims, input_values=None) -> tuple[_Analysis, ModelProto]:
    g = model.graph
    inits = {i.name for i in g.initializer} | {s.values.name for s in g.sparse_initializer}
    order, outer, producer = _order_and_check(model, path)
    values: dict[str, np.ndarray] = {}
    declared = {i.name: i for i in g.input if i.name not in inits}
    for name, v in (input_values or {}).items():
        if name not in declared:
            raise ModelError(
                f"{path.name}: input value given for {name!r}, but the model's inputs are {', '.join(declared)}"
            )
        values[name] = _input_value(declared[name], v, path)
    if values:
        input_shapes = {**{k: v.shape for k, v in values.items()}, **dict(input_shapes or {})}
    pinned = _pin_inputs(model, inits, input_shapes, dims, path)
    a = _Analysis(
        path=path,
        model=model,
        order=order,
        outer=outer,
        producer=producer,
        inits=inits,
        graph_inputs=[i.name for i in g.input if i.name not in inits],
        graph_outputs=list(dict.fromkeys(o.name for o in g.output)),
        pinned=pinned,
        values=values,
    )
    m = _pinned_copy(model, order, pinned)
    _check_types(m, path)
    inferred = None
    for data_prop in (True, False):
        try:
            inferred = onnx.shape_inference.infer_shapes(m, check_type=False, strict_mode=False, data_prop=data_prop)
            break
        except Exception:  # noqa: BLE001 - fall through to the onnxruntime fallback
            continue
    _collect_shapes(inferred if inferred is not None else m, a)
    _classify_constants(a)
    return a, m


# --------------------------------------------------------------------------------------
# onnxruntime fallback
# --------------------------------------------------------------------------------------
def _feeds(a: _Analysis) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(_SEED)
    feeds = {}
    for name in a.graph_inputs:
        if name in a.values:
            feeds[name] = a.values[name]
            continue
        et = a.types.get(name, TensorProto.FLOAT)
        dt = onnx_dtype(et, f"input {name!r}")
        shape = a.pinned[name]
        if dt.kind == "f":
            feeds[name] = rng.standard_normal(shape).astype(dt)
        else:
            feeds[name] = np.zeros(shape, dtype=dt)
    return feeds


def _value_hint(a: _Analysis) -> str:
    """When a measurement fails: the inputs whose VALUE it guessed (integers and booleans fed
    as zeros), since shapes may depend on a value (silero-vad's sample rate ``sr`` picks a
    branch), and the flag that gives it."""
    guessed = _guessed_inputs(a)
    if not guessed:
        return ""
    flags = " ".join(f"--input-value {n}=V" for n in guessed[:3])
    names = ", ".join(repr(n) for n in guessed[:3])
    return f"; shapes may depend on the value of input {names} (measured with zeros): give it with {flags}"


def _guessed_inputs(a: _Analysis) -> list[str]:
    """Integer and boolean graph inputs without a given value (fed as zeros when measuring)."""
    return [n for n in a.graph_inputs if n not in a.values and onnx_dtype(a.types.get(n, 1)).kind in "iub"]


def _ort_shapes(a: _Analysis, m: ModelProto, names: list[str]) -> None:
    """Run the model once in onnxruntime and record the shapes/types of ``names``."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ModelError(
            f"{a.path.name}: shapes of {len(names)} tensors (e.g. {names[0]!r}) are unknown after shape inference "
            "and onnxruntime, needed to measure them, is not installed (pip install onnxruntime)"
        ) from None
    mm = ModelProto()
    mm.CopyFrom(m)
    g = mm.graph
    present = {o.name for o in g.output}
    for name in names:
        if name in present:
            continue
        et = a.types.get(name, 0)
        if et:
            g.output.append(helper.make_tensor_value_info(name, et, None))
        else:
            g.output.append(helper.make_empty_tensor_value_info(name))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 4
    ort.set_default_logger_severity(4)  # no coloured [E:onnxruntime] lines on stderr
    try:
        sess = ort.InferenceSession(mm.SerializeToString(), so, providers=["CPUExecutionProvider"])
        want = [o.name for o in sess.get_outputs()]
        res = sess.run(want, _feeds(a))
    except Exception as e:  # noqa: BLE001
        raise ModelError(
            f"{a.path.name}: shapes of {len(names)} tensors (e.g. {names[0]!r}) are unknown after shape inference, "
            f"and running the model in onnxruntime to measure them failed: {_one_line(e)}{_value_hint(a)}"
        ) from None
    for name, arr in zip(want, res, strict=True):
        arr = np.asarray(arr)
        a.shapes[name] = tuple(int(x) for x in arr.shape)
        if arr.dtype.kind not in "OUS":
            try:
                a.types[name] = helper.np_dtype_to_tensor_dtype(arr.dtype)
            except Exception:  # noqa: BLE001
                pass


# --------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------
def _needed(a: _Analysis) -> tuple[list[int], dict[int, list[str]], set[str]]:
    """Kept node indices, their pruned outputs, and the set of tensor names the graph uses."""
    g = a.model.graph
    kept = [k for k in a.order if k not in a.folded]
    consumed: set[str] = set(a.graph_outputs)
    for k in kept:
        consumed.update(i for i in g.node[k].input if i)
        consumed.update(a.outer.get(k, ()))
    outs: dict[int, list[str]] = {}
    used: set[str] = set(a.graph_inputs) | set(a.graph_outputs)
    for k in kept:
        n = g.node[k]
        o = [x for x in n.output if x and x in consumed]
        if not o:
            first = [x for x in n.output if x]
            if not first:
                raise ModelError(f"{a.path.name}: node {n.name or k} ({n.op_type}) has no outputs")
            o = first[:1]
        outs[k] = o
        used.update(o)
        used.update(i for i in n.input if i)
        used.update(a.outer.get(k, ()))
    return kept, outs, used


def load_onnx(
    path: str | os.PathLike,
    *,
    input_shapes: Mapping[str, Iterable[int]] | None = None,
    dims: Mapping[str, int] | None = None,
    input_values: Mapping[str, object] | None = None,
) -> Graph:
    """Import an ONNX model as a planner Graph (see the module docstring for the rules).

    ``input_shapes`` maps graph input names to concrete shapes; ``dims`` maps symbolic dim
    names to sizes. Shapes come from ONNX shape inference (with data propagation) on the
    pinned model; tensors it leaves unknown are measured by running the model once in
    onnxruntime with all of them added as graph outputs. ``input_values`` (input name ->
    array or scalar) are the values that run feeds instead of the default seeded normal
    floats / zero integers -- needed only when a shape depends on an input's *value* (e.g.
    silero-vad's ``sr`` selects an ``If`` branch); their shapes also pin the inputs.
    Raises :class:`ModelError` with a one-line message for anything it cannot import.
    """
    path = Path(path)
    model, digest = _load_proto(path)
    a, kept, outs, used = _full_analysis(path, model, input_shapes, dims, input_values)
    return _build(a, kept, outs, used, digest)


def _full_analysis(path: Path, model: ModelProto, input_shapes, dims, input_values):
    a, m = _analyse(path, model, input_shapes, dims, input_values)
    kept, outs, used = _needed(a)
    missing = [t for t in used if t not in a.shapes or not a.types.get(t)]
    if missing:
        # measure every main-graph tensor still unknown (more Shape nodes may fold then)
        allnames = [o for n in m.graph.node for o in n.output if o and (o not in a.shapes or not a.types.get(o))]
        _ort_shapes(a, m, list(dict.fromkeys(allnames)))
        hint = _value_hint(a)
        if hint:
            a.notes.append(f"{path.name}: {len(allnames)} tensor shapes were measured in onnxruntime{hint}")
        _classify_constants(a)
        kept, outs, used = _needed(a)
        missing = [t for t in used if t not in a.shapes or not a.types.get(t)]
        if missing:
            raise ModelError(f"{path.name}: cannot determine the shape of {missing[0]!r} ({len(missing)} tensors)")
    if _settle_shapes(a, m, kept):
        _classify_constants(a)
        kept, outs, used = _needed(a)
    return a, kept, outs, used


# --------------------------------------------------------------------------------------
# shapes that disagree: declared, inferred, measured
# --------------------------------------------------------------------------------------
POOLS = ("MaxPool", "AveragePool", "LpPool")


def _shape_suspects(a: _Analysis, kept: list[int]) -> tuple[dict[str, Shape], list[str]]:
    """Where onnx shape inference may not give the shapes a runtime uses: (tensors whose
    static declared shape (value_info, graph outputs) differs from the inferred one -> the
    declared shape, outputs of ops whose inference is known to differ from onnxruntime:
    pooling with ``ceil_mode=1``, a Split without sizes of an axis it cannot split evenly)."""
    g = a.model.graph
    declared: dict[str, Shape] = {}
    for vi in list(g.value_info) + list(g.output):
        d = _static((_dims_of(vi) or (0, None))[1])
        if d is not None and vi.name in a.shapes and vi.name not in a.pinned and a.shapes[vi.name] != d:
            declared.setdefault(vi.name, d)
    risky: list[str] = []
    for k in kept:
        n = g.node[k]
        if n.domain not in DEFAULT_DOMAINS:
            continue
        at = {x.name: helper.get_attribute_value(x) for x in n.attribute}
        if n.op_type in POOLS and at.get("ceil_mode") == 1:
            risky += [o for o in n.output if o]
        elif n.op_type == "Split" and "split" not in at and (len(n.input) < 2 or not n.input[1]) and n.input:
            shape, axis = a.shapes.get(n.input[0]), int(at.get("axis", 0))
            if shape and -len(shape) <= axis < len(shape) and shape[axis] % max(len(n.output), 1):
                risky += [o for o in n.output if o]
    return declared, risky


def _settle_shapes(a: _Analysis, m: ModelProto, kept: list[int]) -> bool:
    """Plan the shapes onnxruntime computes where declared, inferred and measured shapes may
    disagree (see `_shape_suspects`), saying so in one note; True when a shape changed. A
    declared shape that contradicts inference and cannot be measured is refused."""
    declared, risky = _shape_suspects(a, kept)
    if not declared and not risky:
        return False
    inferred = dict(a.shapes)
    names = list(dict.fromkeys(o for k in kept for o in a.model.graph.node[k].output if o))
    try:
        _ort_shapes(a, m, names)
    except ModelError as e:
        a.shapes = inferred
        if declared:
            t, d = next(iter(declared.items()))
            raise ModelError(
                f"{a.path.name}: tensor {t!r} is declared {_shape_text(d)} but onnx shape inference gives "
                f"{_shape_text(inferred[t])}, and measuring it failed: {str(e).split(': ', 1)[-1]}"
            ) from None
        return False
    changed = [t for t in names if t in inferred and a.shapes.get(t) != inferred[t]]
    if changed:
        t = changed[0]
        said = f", declared {_shape_text(declared[t])}" if t in declared else ""
        a.notes.append(
            f"{a.path.name}: tensor {t!r}: onnx shape inference gives {_shape_text(inferred[t])}, onnxruntime computes "
            f"{_shape_text(a.shapes[t])}{said}; planning onnxruntime's shapes ({len(changed)} tensor(s) differ)"
        )
    elif declared:
        t, d = next(iter(declared.items()))
        a.notes.append(
            f"{a.path.name}: tensor {t!r} is declared {_shape_text(d)}, but onnx shape inference and onnxruntime "
            f"give {_shape_text(a.shapes[t])}; planning {_shape_text(a.shapes[t])} ({len(declared)} declared shape(s) ignored)"
        )
    return bool(changed)


def _shape_text(shape: Shape) -> str:
    return "x".join(map(str, shape)) or "scalar"


def _build(a: _Analysis, kept: list[int], outs: dict[int, list[str]], used: set[str], digest: str) -> Graph:
    g = a.model.graph
    opset = {imp.domain or "ai.onnx": imp.version for imp in a.model.opset_import}
    gin, gout = set(a.graph_inputs), set(a.graph_outputs)
    tensors: dict[str, Tensor] = {}

    def add(name: str, kind: str) -> None:
        et = a.types[name]
        shape = a.shapes[name]
        where = f"{a.path.name}: tensor {name!r}"
        tensors[name] = Tensor(name, _nbytes(shape, et, where), kind, shape, onnx_dtype(et, where).name)

    for name in a.graph_inputs:
        add(name, "input")
    produced = {t for k in kept for t in outs[k]}
    for name in sorted(used - gin, key=lambda t: (t not in produced, t)):
        if name in produced:
            add(name, "output" if name in gout else "activation")
        elif name in a.const and name not in gout:
            add(name, "weight")
        elif name in gout:
            pass  # output that is an input / constant: handled below
        else:  # pragma: no cover - _order_and_check rules this out
            raise ModelError(f"{a.path.name}: tensor {name!r} has no producer")

    names_taken = {n.name for n in g.node if n.name}
    slices = _slice_attrs(a, kept)
    seen: set[str] = set()
    ops: list[Op] = []

    def unique(name: str, op_type: str, k: int) -> str:
        if name and name not in seen:
            return name
        i = k
        while f"{op_type}_{i}" in seen or f"{op_type}_{i}" in names_taken:
            i += 1
        return f"{op_type}_{i}"

    for k in kept:
        n = g.node[k]
        name = unique(n.name, n.op_type, k)
        seen.add(name)
        inputs = [i for i in n.input if i]
        extra = [v for v in a.outer.get(k, ()) if v not in inputs]
        attrs = {"node": n, "domain": n.domain or "ai.onnx", "opset": opset, **slices.get(k, {})}
        if k in a.outer:
            attrs["outer_inputs"] = tuple(extra)
            attrs["nested"] = True  # its bodies' own tensors are not planned (see Graph.nested_ops)
        ops.append(Op(name, n.op_type, tuple(dict.fromkeys(inputs + extra)), tuple(outs[k]), attrs))

    # graph outputs without a producing op (a graph input or a constant): synthetic copy
    for name in a.graph_outputs:
        if name in produced:
            continue
        if name not in tensors:
            add(name, "input" if name in gin else "weight")
        new = f"{name}:output"
        t = tensors[name]
        tensors[new] = Tensor(new, t.bytes, "output", t.shape, t.dtype)
        opname = unique("", "Identity", len(g.node) + len(ops))
        seen.add(opname)
        node = helper.make_node("Identity", [name], [new], name=opname)
        attrs = {"node": node, "domain": "ai.onnx", "opset": opset, "synthetic": True, "graph_output": name}
        ops.append(Op(opname, "Identity", (name,), (new,), attrs))

    source = ModelSource(
        "onnx", str(a.path), digest, input_shapes=dict(a.pinned), input_values=dict(a.values), notes=tuple(a.notes)
    )
    try:
        return Graph(a.path.stem, tensors.values(), ops, source)
    except GraphError as e:
        raise ModelError(f"{a.path.name}: {e}") from None


# --------------------------------------------------------------------------------------
# Slice attributes: where a Slice's output sits in its input (planner/sharing.py)
# --------------------------------------------------------------------------------------
def _slice_attrs(a: _Analysis, kept: list[int]) -> dict[int, dict]:
    """node index -> ``{"slice": (axis, start)}`` for the kept Slice nodes whose output is
    one contiguous-range cut of their input along a single axis (constant starts / axes /
    steps, every step 1, exactly one axis whose extent changes). What the storage graph
    needs to place a Slice's output inside its input's bytes; anything else gets nothing
    (no sharing)."""
    g = a.model.graph
    nodes = [k for k in kept if g.node[k].op_type == "Slice" and g.node[k].domain in DEFAULT_DOMAINS]
    if not nodes:
        return {}
    wanted = [i for k in nodes for i in list(g.node[k].input)[1:] if i]
    values = _small_constants(a, wanted)
    out: dict[int, dict] = {}
    for k in nodes:
        spec = _slice_spec(a, g.node[k], values)
        if spec is not None:
            out[k] = {"slice": spec}
    return out


def _slice_params(
    n: onnx.NodeProto, values: dict[str, np.ndarray]
) -> tuple[list, list, list | None, list | None] | None:
    """(starts, ends, axes, steps) of a Slice node: attributes before opset 10, constant
    inputs from 10 on (None: one of them is not a known constant)."""
    at = {x.name: helper.get_attribute_value(x) for x in n.attribute}
    if "starts" in at:  # Slice-1: attributes, no steps
        return list(at["starts"]), list(at.get("ends", [])), at.get("axes"), None
    ins = list(n.input) + [""] * 5
    got = []
    for name in ins[1:5]:
        if not name:
            got.append(None)
        elif name in values:
            got.append([int(v) for v in np.asarray(values[name]).reshape(-1)])
        else:
            return None
    starts, ends, axes, steps = got
    if starts is None or ends is None:
        return None
    return starts, ends, axes, steps


def _slice_spec(a: _Analysis, n: onnx.NodeProto, values: dict[str, np.ndarray]) -> tuple[int, int] | None:
    """(axis, start) of a Slice node that cuts one axis with step 1, both normalised as
    ONNX defines (negative values count from the back, then clamp to [0, dim]); checked
    against the output shape shape inference gave. None for anything else."""
    params = _slice_params(n, values)
    if params is None or len(n.input) < 1 or not n.output:
        return None
    starts, ends, axes, steps = params
    shape, out = a.shapes.get(n.input[0]), a.shapes.get(n.output[0])
    if shape is None or out is None or len(shape) != len(out):
        return None
    rank = len(shape)
    axes = list(range(len(starts))) if axes is None else [int(x) for x in axes]
    steps = [1] * len(starts) if steps is None else steps
    if not (len(axes) == len(starts) == len(ends) == len(steps)) or any(s != 1 for s in steps):
        return None
    axes = [x + rank if x < 0 else x for x in axes]
    if any(not 0 <= x < rank for x in axes) or len(set(axes)) != len(axes):
        return None
    begin, extent = [0] * rank, list(shape)
    for x, s, e in zip(axes, starts, ends, strict=True):
        dim = shape[x]
        s, e = (min(max(v + dim if v < 0 else v, 0), dim) for v in (int(s), int(e)))
        begin[x], extent[x] = s, max(e - s, 0)
    if tuple(extent) != tuple(out):
        return None  # not what the model computes (unknown semantics): share nothing
    cut = [x for x in range(rank) if extent[x] != shape[x]]
    if len(cut) != 1 or extent[cut[0]] == 0:
        return None
    return cut[0], begin[cut[0]]


def _small_constants(a: _Analysis, names: Iterable[str]) -> dict[str, np.ndarray]:
    """Values of the constant tensors `names` (the ones that are not constant, or whose
    value cannot be read cheaply, are left out): initializers and ``Constant`` nodes are
    read directly; other folded constants by evaluating only the nodes they depend on."""
    g = a.model.graph
    inits = {t.name: t for t in g.initializer}
    values: dict[str, np.ndarray] = {}
    rest: list[str] = []
    for name in dict.fromkeys(names):
        if name not in a.const:
            continue
        try:
            if name in inits:
                values[name] = numpy_helper.to_array(inits[name])
            elif name in a.producer and g.node[a.producer[name]].op_type == "Constant":
                values[name] = _constant_node_value(g.node[a.producer[name]])
            else:
                rest.append(name)
        except Exception:  # noqa: BLE001 - external data, unusual Constant forms: no value
            continue
    if rest:
        values.update(_evaluate_constants(a, rest))
    return values


def _constant_node_value(n: onnx.NodeProto) -> np.ndarray:
    """The value of a ``Constant`` node (``value`` tensor or ``value_int(s)``/``value_float(s)``)."""
    for at in n.attribute:
        if at.name == "value":
            return numpy_helper.to_array(at.t)
        if at.name in ("value_int", "value_ints", "value_float", "value_floats"):
            return np.asarray(helper.get_attribute_value(at))
    raise ValueError(f"Constant {n.name!r} has no value this importer reads")


def _evaluate_constants(a: _Analysis, names: list[str]) -> dict[str, np.ndarray]:
    """Values of folded constants `names`, from the folded nodes they depend on only
    (empty when the evaluation fails: the caller then shares nothing)."""
    g = a.model.graph
    need: set[int] = set()
    stack = list(names)
    while stack:
        k = a.producer.get(stack.pop())
        if k is None or k in need or k not in a.folded:
            continue
        need.add(k)
        stack += [i for i in g.node[k].input if i] + a.outer.get(k, [])
    try:
        from onnx.reference import ReferenceEvaluator

        sub = _constants_model(a, a.model, names, nodes=need)
        res = ReferenceEvaluator(sub).run(None, {})
    except Exception:  # noqa: BLE001 - no value, no attribute
        return {}
    return {n: np.asarray(r) for n, r in zip(names, res, strict=True)}


def fold_constants(
    model: str | os.PathLike | ModelProto | Graph,
    input_shapes: Mapping[str, Iterable[int]] | None = None,
    dims: Mapping[str, int] | None = None,
    names: Iterable[str] | None = None,
    input_values: Mapping[str, object] | None = None,
) -> dict[str, np.ndarray]:
    """Values of the constant tensors :func:`load_onnx` turns into weights.

    ``model`` is a Graph returned by :func:`load_onnx` (its ``source`` gives the
    file and the pins), a path, or a ModelProto (a path is needed for external data). With
    a path / proto pass the same ``input_shapes`` / ``dims`` / ``input_values`` as to
    :func:`load_onnx`: which tensors are constant depends on the pins (``Shape`` of a
    pinned tensor is a constant). ``names`` selects tensors; by default the weights of the
    imported graph (constants read by a remaining op). Constant subgraphs are evaluated
    with ``onnx.reference.ReferenceEvaluator``; ``Shape``/``Size`` of activations with
    static shapes are replaced by their values first.
    """
    path, proto, input_shapes, dims, input_values = _fold_source(model, input_shapes, dims, input_values)
    a, _, _, used = _full_analysis(path, proto, input_shapes, dims, input_values)
    if names is None:
        want = [t for t in sorted(used) if t in a.const and t not in a.graph_outputs]
    else:
        want = list(names)
        bad = [t for t in want if t not in a.const]
        if bad:
            raise ModelError(f"{path.name}: {bad[0]!r} is not a constant tensor")
    values: dict[str, np.ndarray] = {}
    for t in proto.graph.initializer:
        if t.name in want:
            values[t.name] = numpy_helper.to_array(t)
    rest = [t for t in want if t not in values]
    if not rest:
        return values
    sub = _constants_model(a, proto, rest)
    try:
        from onnx.reference import ReferenceEvaluator

        res = ReferenceEvaluator(sub).run(None, {})
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"{path.name}: evaluating constant subgraphs failed: {_one_line(e)}") from None
    values.update(zip(rest, (np.asarray(r) for r in res), strict=True))
    return values


def _fold_source(model, input_shapes, dims, input_values):
    """(path, proto with external data, pins) for :func:`fold_constants`'s kinds of `model`."""
    if isinstance(model, Graph):
        src = model.source
        if src is None or src.format != "onnx" or not src.path:
            raise ModelError(f"graph {model.name!r} was not imported from ONNX by load_onnx")
        input_shapes, dims, input_values = src.input_shapes, None, src.input_values or None
        model = src.path
    if isinstance(model, ModelProto):
        return Path(model.graph.name or "model"), model, input_shapes, dims, input_values
    path = Path(model)
    proto, _ = _load_proto(path)
    try:
        onnx.load_external_data_for_model(proto, str(path.parent))
    except Exception:  # noqa: BLE001 - no external data
        pass
    return path, proto, input_shapes, dims, input_values


def _constants_model(a: _Analysis, proto: ModelProto, rest: list[str], nodes: set[int] | None = None) -> ModelProto:
    """The sub-model of the folded nodes (all, or only `nodes`) with outputs `rest`;
    Shape/Size of non-constant tensors become Constants of their (static) values. With
    `nodes`, only the initializers those nodes read are copied in."""
    g = proto.graph
    keep = a.folded if nodes is None else nodes
    out_nodes = []
    for k in a.order:
        if k not in keep:
            continue
        n = g.node[k]
        src = n.input[0] if n.input else ""
        if n.op_type in ("Shape", "Size") and src not in a.const:
            shape = np.array(a.shapes[src], dtype=np.int64)
            if n.op_type == "Size":
                val = np.array(int(np.prod(shape)), dtype=np.int64)
            else:
                at = {x.name: helper.get_attribute_value(x) for x in n.attribute}
                start, end = at.get("start", 0), at.get("end", None)
                val = shape[slice(start, end)]
            out_nodes.append(helper.make_node("Constant", [], [n.output[0]], value=numpy_helper.from_array(val)))
        else:
            out_nodes.append(n)
    inits = list(g.initializer)
    if nodes is not None:
        read = {i for n in out_nodes for i in n.input} | {v for k in keep for v in a.outer.get(k, [])} | set(rest)
        inits = [t for t in inits if t.name in read]
    gg = helper.make_graph(
        out_nodes,
        "constants",
        [],
        [helper.make_empty_tensor_value_info(t) for t in rest],
        initializer=inits,
    )
    return helper.make_model(gg, opset_imports=list(proto.opset_import), ir_version=proto.ir_version)
