"""Stages, plans and the `planner.plan` file format (DESIGN §4; version 2 adds shared bytes
and the ``transforms`` that made the graph from the model file, e.g. fusion).

A plan file is self-contained: it carries the graph's tensors and ops, so any tool can
replay it without the model. Reading is strict: unknown versions and malformed files
raise PlanFormatError with one clear line. `plan_mismatch` is the one place that decides
whether a plan was made for a given graph.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from planner.graph import Graph, GraphError, ModelSource, Op, Tensor
from planner.sharing import SHARE_KINDS, Share
from planner.target import Target, TargetError

FORMAT = "planner.plan"
VERSION = 2  # the version written when a plan shares bytes or its graph was transformed (fused); else 1
VERSIONS = (1, 2)  # what the reader accepts
StageKind = Literal["L", "R", "S", "F"]
# optimal: proven (over what `SolverInfo.objective` says); feasible: a solver searched but
# proved nothing; heuristic: a heuristic answer, nothing searched exactly
Status = Literal["optimal", "feasible", "heuristic"]
# what `SolverInfo.bound` and `status` measure: the arena (no-spill and peak-first plans)
# or the spill traffic (plans the budget forces to spill)
BoundObjective = Literal["arena", "traffic"]


class PlanFormatError(ValueError):
    """A plan file that cannot be read (wrong format, unknown version, malformed)."""


@dataclass(frozen=True)
class Stage:
    """One timestep. `name` is a tensor (L/S/F) or an op (R).

    `offset` is set for L; `offsets` maps each output of an R to its offset. `shares`
    (plan format v2) declares the bytes this stage's tensors share with resident ones: for
    an R, its outputs' views / slices / in-place writes of its inputs, or a concat's inputs
    as slots of its output; for an L, the loaded tensor as an alias of resident bytes.
    """

    kind: StageKind
    name: str
    offset: int | None = None
    offsets: dict[str, int] | None = field(default=None, compare=False, hash=False)
    shares: tuple[Share, ...] = field(default=(), compare=False, hash=False)

    def to_dict(self) -> dict:
        """The stage as the plan file writes it."""
        if self.kind == "R":
            d: dict = {"stage": "R", "op": self.name, "offsets": dict(self.offsets or {})}
        else:
            d = {"stage": self.kind, "tensor": self.name}
            if self.kind == "L":
                d["offset"] = self.offset
        if self.shares:
            d["shares"] = [x.to_dict() for x in self.shares]
        return d

    def __str__(self) -> str:
        if self.kind == "L":
            return f"L {self.name} @{self.offset}"
        return f"{self.kind} {self.name}"


@dataclass
class Metrics:
    """What the simulator measured on a plan (never what a solver claims; DESIGN §1)."""

    arena_bytes: int = 0
    peak_l1_bytes: int = 0
    traffic_bytes: int = 0
    compulsory_traffic_bytes: int = 0
    steps: int = 0
    lower_bound_bytes: int = 0
    # Not in the DESIGN §4 example but required by §1 and the CLI (traffic split, LLB peak).
    loaded_bytes: int = 0
    stored_bytes: int = 0
    llb_peak_bytes: int = 0

    @property
    def spill_traffic_bytes(self) -> int:
        """Traffic beyond the compulsory part: what spilling cost."""
        return self.traffic_bytes - self.compulsory_traffic_bytes


@dataclass(frozen=True)
class SolverInfo:
    """Who made a plan and what they proved about it.

    `status` and `bound` are measured in `objective`: with ``arena`` the bound is a proven
    lower bound on the arena of every plan (of the plan's lifetimes, without spills where
    the plan has none); with ``traffic`` it is a proven lower bound on the spill traffic of
    every plan within the budget. `params` is what the solver was asked (time limit,
    workers, seed, objective, knobs); `facts` is what it found on the way (inner statuses,
    which heuristic won, gaps). Frozen: a solver builds it whole before the plan is checked.
    """

    name: str
    status: Status = "heuristic"
    bound: int = 0
    wall_s: float = 0.0
    params: dict = field(default_factory=dict)
    facts: dict = field(default_factory=dict)
    objective: BoundObjective = "arena"

    def to_dict(self) -> dict:
        """The plan file's ``solver`` object; ``options`` keeps the v1 key for the params."""
        return {
            "name": self.name,
            "status": self.status,
            "objective": self.objective,
            "bound": self.bound,
            "wall_s": self.wall_s,
            "options": _jsonable(self.params),
            "facts": _jsonable(self.facts),
        }


@dataclass
class Plan:
    """A graph, the target it was planned for, the stages, who made them and (after
    `simulate.finalize`) the simulator's metrics. The model's fingerprint is the graph's
    `source.sha256`; a plan made from a generated graph has none."""

    graph: Graph
    target: Target
    stages: list[Stage]
    solver: SolverInfo
    metrics: Metrics = field(default_factory=Metrics)

    @property
    def model_sha256(self) -> str:
        """sha256 of the model file the graph was imported from ("" when there is none)."""
        return self.graph.source.sha256 if self.graph.source is not None else ""

    @property
    def order(self) -> list[str]:
        """The op order (the R stages)."""
        return [s.name for s in self.stages if s.kind == "R"]

    @property
    def shares_bytes(self) -> bool:
        """True when some stage declares shared bytes (the plan file is then version 2)."""
        return any(s.shares for s in self.stages)

    @property
    def transforms(self) -> list[dict]:
        """The plan file's ``transforms`` entry: what changed the graph between import and
        solve (DESIGN §7, e.g. fusion), one dict per applied transformation of the graph's
        source; empty for a graph as imported (the plan file then has no such key)."""
        src = self.graph.source
        out = []
        for t in getattr(src, "transforms", ()) or ():
            if isinstance(t, dict):
                out.append(dict(t))
            elif getattr(t, "applied", True):
                out.append(t.to_dict())
        return out

    @property
    def spills(self) -> bool:
        """True when some activation is stored and loaded back (TFLM cannot express that)."""
        return any(s.kind == "L" and self.graph.tensors[s.name].kind in ("activation", "output") for s in self.stages)

    # -- JSON ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The plan file's JSON object (DESIGN §4): version 2 when it shares bytes (its ops
        then carry what the simulator needs to check the shares) or its graph was transformed
        (the ``transforms`` key says how, so the model can be transformed again to run it),
        else version 1."""
        g = self.graph
        v2 = self.shares_bytes
        transforms = self.transforms
        return {
            "format": FORMAT,
            "version": VERSION if v2 or transforms else 1,
            "model": self.model_entry(),
            **({"transforms": transforms} if transforms else {}),
            "target": self.target.to_dict(),
            "tensors": [_tensor_dict(g, t) for t in g.tensors.values()],
            "ops": [_op_dict(o, v2) for o in g.ops],
            "stages": [s.to_dict() for s in self.stages],
            "metrics": asdict(self.metrics),
            "solver": self.solver.to_dict(),
        }

    def model_entry(self) -> dict:
        """The plan file's ``model``: name, sha256 and, when known, ``path``: the model as the
        user named it (a zoo name or a file path), which `planner run PLAN` looks up."""
        given = getattr(self.graph.source, "given", None)
        return {"name": self.graph.name, "sha256": self.model_sha256, **({"path": given} if given else {})}

    def to_json(self) -> str:
        """The plan file's text."""
        return json.dumps(self.to_dict(), indent=1)

    def write(self, path: str | Path) -> None:
        """Write the plan file (callers check the plan first: see `simulate.check`)."""
        Path(path).write_text(self.to_json() + "\n")


def _tensor_dict(g: Graph, t: Tensor) -> dict:
    return {
        "name": t.name,
        "bytes": t.bytes,
        "kind": t.kind,
        "producer": g.producer.get(t.name),
        "consumers": list(g.consumers[t.name]),
        **({"shape": list(t.shape)} if t.shape is not None else {}),
        **({"dtype": t.dtype} if t.dtype is not None else {}),
    }


def _op_dict(o: Op, v2: bool) -> dict:
    d = {"name": o.name, "type": o.type, "inputs": list(o.inputs), "outputs": list(o.outputs)}
    if v2 and o.attrs.get("slice") is not None:
        d["slice"] = list(o.attrs["slice"])  # (axis, start): where a Slice's output sits in its input
    return d


def _jsonable(v):
    """Solver params and facts are free-form: keep what JSON can hold, describe the rest
    (non-finite floats as text: strict JSON has no NaN or Infinity)."""
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return f"<{type(v).__name__}>"


# -- reading: strict, one line per problem ------------------------------------------------------
MAX_FILE_BYTES = 1 << 30  # a plan of 100,000 ops is a few hundred MB of JSON at most
# sizes, offsets and metrics are 64-bit signed in every runtime (and in CP-SAT): a plan file
# holds values below 2**63, and the simulator refuses a tensor whose bytes end past it
MAX_BYTES = (1 << 63) - 1


def _need(d: dict, key: str, typ: type | tuple, where: str):
    """`d[key]`, which must exist and be of type `typ` (no coercion: a string "16" is not an
    int, a bool is not an int)."""
    if not isinstance(d, dict):
        raise PlanFormatError(f"{where}: expected a JSON object, got {_json_type(d)}")
    if key not in d:
        raise PlanFormatError(f"{where}: missing key {key!r}")
    return _typed(d[key], typ, f"{where}: {key!r}")


def _typed(v, typ: type | tuple, what: str):
    """`v` when it is of JSON type `typ` (bools are never numbers), else a PlanFormatError."""
    types = typ if isinstance(typ, tuple) else (typ,)
    numeric = int in types or float in types
    if isinstance(v, bool) and bool not in types and numeric or not isinstance(v, types):
        want = " or ".join(_json_type_name(t) for t in types)
        raise PlanFormatError(f"{what} must be {want}, got {_json_type(v)} {_short(v)}")
    return v


def _count(d: dict, key: str, where: str, default: int | None = None) -> int:
    """A byte count, offset or step count: an integer in [0, 2**63)."""
    if default is not None and isinstance(d, dict) and key not in d:
        return default
    return _in_range(_need(d, key, int, where), f"{where}: {key!r}")


def _in_range(v: int, what: str) -> int:
    if not 0 <= v <= MAX_BYTES:
        raise PlanFormatError(f"{what} is {v}, outside [0, 2**63): no memory is that large")
    return v


def _json_type_name(t: type) -> str:
    return {int: "an integer", float: "a number", str: "a string", list: "a list", dict: "an object"}.get(
        t, "null" if t is type(None) else t.__name__
    )


def _json_type(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    return _json_type_name(type(v))


def _short(v) -> str:
    text = json.dumps(v) if isinstance(v, (str, int, float, bool)) or v is None else ""
    return text if len(text) <= 40 else text[:37] + "..."


def _names(v: list, what: str) -> tuple[str, ...]:
    """A list of tensor names (strings)."""
    for k, x in enumerate(v):
        _typed(x, str, f"{what}[{k}]")
    return tuple(v)


DESIGN_METRICS = ("arena_bytes", "peak_l1_bytes", "traffic_bytes", "compulsory_traffic_bytes", "steps")


def _read_metrics(d: dict) -> Metrics:
    """The ``metrics`` object: the DESIGN §4 keys are required, the others optional; every
    value a count (an integer in [0, 2**63)), unknown keys ignored."""
    m = _need(d, "metrics", dict, "plan")
    for k in DESIGN_METRICS:
        _count(m, k, "metrics")
    known = [k for k in Metrics.__dataclass_fields__ if k in m]
    return Metrics(**{k: _count(m, k, "metrics") for k in known})


def plan_from_dict(d: dict) -> Plan:
    """A Plan from the plan file's JSON object (PlanFormatError with one line if malformed).

    Strict: every value must have its JSON type (no coercion of "16" to 16), every size and
    offset is an integer in [0, 2**63); the simulator then checks the plan's rules."""
    if not isinstance(d, dict):
        raise PlanFormatError(f"plan file: the top level must be a JSON object, got {_json_type(d)}")
    if d.get("format") != FORMAT:
        raise PlanFormatError(f"not a planner plan (format is {_short(d.get('format'))}, expected {FORMAT!r})")
    version = d.get("version")
    if isinstance(version, bool) or version not in VERSIONS:
        known = " and ".join(map(str, VERSIONS))
        raise PlanFormatError(f"unsupported plan version {_short(version)}; this planner reads versions {known}")
    v2 = version >= 2
    try:
        model = _need(d, "model", dict, "plan")
        name = _typed(model.get("name", ""), str, "model: 'name'")
        sha = _typed(model.get("sha256", "") or "", str, "model: 'sha256'")
        given = model.get("path")
        given = _typed(given, str, "model: 'path'") or None if given is not None else None
        target = Target.from_dict(_need(d, "target", dict, "plan"))
        tensors = [_read_tensor(t, f"tensors[{i}]") for i, t in enumerate(_need(d, "tensors", list, "plan"))]
        ops = [_read_op(o, f"ops[{i}]", v2) for i, o in enumerate(_need(d, "ops", list, "plan"))]
        transforms = _read_transforms(d) if v2 else ()
        source = ModelSource("plan", sha256=sha, transforms=transforms, given=given)
        graph = Graph(name, tensors, ops, source)
        stages = [_read_stage(x, f"stages[{i}]", v2) for i, x in enumerate(_need(d, "stages", list, "plan"))]
        metrics = _read_metrics(d)
        solver = _solver_info(_need(d, "solver", dict, "plan"))
    except (GraphError, TargetError) as e:
        raise PlanFormatError(f"plan file describes an invalid graph/target: {e}") from e
    except (TypeError, ValueError, AttributeError) as e:
        if isinstance(e, PlanFormatError):
            raise
        raise PlanFormatError(f"malformed plan file: {e}") from e
    return Plan(graph, target, stages, solver, metrics)


def _read_transforms(d: dict) -> tuple[dict, ...]:
    """The ``transforms`` entry (v2): a list of objects, each with a string ``kind``."""
    ts = _typed(d.get("transforms", []), list, "plan: 'transforms'")
    for i, t in enumerate(ts):
        _need(t, "kind", str, f"transforms[{i}]")
    return tuple(dict(t) for t in ts)


def _read_tensor(t: dict, w: str) -> Tensor:
    name, nbytes, kind = _need(t, "name", str, w), _count(t, "bytes", w), _need(t, "kind", str, w)
    shape = _typed(t.get("shape"), (list, type(None)), f"{w}: 'shape'")
    if shape is not None:
        for k, x in enumerate(shape):
            _in_range(_typed(x, int, f"{w}: 'shape'[{k}]"), f"{w}: 'shape'[{k}]")
    dtype = _typed(t.get("dtype"), (str, type(None)), f"{w}: 'dtype'")
    return Tensor(name, nbytes, kind, tuple(shape) if shape is not None else None, dtype)


def _read_op(o: dict, w: str, v2: bool) -> Op:
    attrs = {}
    if v2 and isinstance(o, dict) and o.get("slice") is not None:
        sl = _need(o, "slice", list, w)
        if len(sl) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in sl):
            raise PlanFormatError(f"{w}: 'slice' must be [axis, start]")
        attrs["slice"] = (sl[0], sl[1])
    ins = _names(_need(o, "inputs", list, w), f"{w}: 'inputs'")
    outs = _names(_need(o, "outputs", list, w), f"{w}: 'outputs'")
    return Op(_need(o, "name", str, w), _need(o, "type", str, w), ins, outs, attrs)


def _read_stage(s: dict, w: str, v2: bool) -> Stage:
    kind = _need(s, "stage", str, w)
    raw_shares = _typed(s.get("shares") or [], list, f"{w}: 'shares'") if v2 else []
    shares = tuple(_read_share(x, f"{w}.shares[{k}]") for k, x in enumerate(raw_shares))
    if kind == "R":
        offs = _need(s, "offsets", dict, w)
        for t, v in offs.items():
            _in_range(_typed(v, int, f"{w}: offset of {t!r}"), f"{w}: offset of {t!r}")
        return Stage("R", _need(s, "op", str, w), offsets=dict(offs), shares=shares)
    if kind == "L":
        return Stage("L", _need(s, "tensor", str, w), offset=_count(s, "offset", w), shares=shares)
    if kind in ("S", "F"):
        return Stage(kind, _need(s, "tensor", str, w))
    raise PlanFormatError(f"{w}: unknown stage {_short(kind)} (expected one of L, R, S, F)")


def _read_share(x: dict, w: str) -> Share:
    kind = _need(x, "kind", str, w)
    if kind not in SHARE_KINDS:
        raise PlanFormatError(f"{w}: unknown share kind {kind!r} (expected one of {', '.join(SHARE_KINDS)})")
    # the op that makes the relation is found again from the graph by the simulator
    return Share(kind, "", _need(x, "tensor", str, w), _need(x, "in", str, w), _count(x, "at", w))  # type: ignore[arg-type]


def _solver_info(s: dict) -> SolverInfo:
    """The ``solver`` object; files written before `objective` and `facts` existed mixed the
    facts into ``options`` and measured the bound in arena bytes."""
    status = _typed(s.get("status", "heuristic"), str, "solver: 'status'")
    if status not in ("optimal", "feasible", "heuristic"):
        raise PlanFormatError(f"solver: unknown status {status!r}")
    objective = _typed(s.get("objective", "arena"), str, "solver: 'objective'")
    if objective not in ("arena", "traffic"):
        raise PlanFormatError(f"solver: unknown objective {objective!r}")
    wall = _typed(s.get("wall_s", 0.0), (int, float), "solver: 'wall_s'")
    if not math.isfinite(wall) or wall < 0:
        raise PlanFormatError(f"solver: 'wall_s' must be a non-negative number of seconds, got {wall}")
    return SolverInfo(
        name=_typed(s.get("name", ""), str, "solver: 'name'"),
        status=status,  # type: ignore[arg-type]
        bound=_count(s, "bound", "solver", default=0) if s.get("bound") is not None else 0,
        wall_s=float(wall),
        params=dict(_typed(s.get("options") or {}, dict, "solver: 'options'")),
        facts=dict(_typed(s.get("facts") or {}, dict, "solver: 'facts'")),
        objective=objective,  # type: ignore[arg-type]
    )


def read_plan_document(path: str | Path) -> dict:
    """The JSON object of a plan file, or a PlanFormatError saying in one line why the file
    is not one: unreadable, too large, a model file (.tflite, .onnx) given by mistake, not
    UTF-8 text, not JSON, nested too deeply."""
    if not str(path).strip():
        raise PlanFormatError("no plan file given (the path is empty)")
    p = Path(path)
    if p.is_dir():
        raise PlanFormatError(f"{path} is a directory, not a plan file")
    try:
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise PlanFormatError(f"{path} is {size} bytes, too large for a plan file")
        data = p.read_bytes()
    except OSError as e:
        raise PlanFormatError(f"cannot read plan {path}: {e.strerror or e}") from e
    if data[4:8] == b"TFL3":
        raise PlanFormatError(f"{path} is a TFLite model, not a plan file (plan it first: planner plan {path})")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        hint = " (an ONNX model? plan it first: planner plan MODEL)" if p.suffix.lower() == ".onnx" else ""
        raise PlanFormatError(
            f"{path} is not a plan file: not UTF-8 text (byte {e.start}){hint}; plan files are JSON"
        ) from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise PlanFormatError(f"{path} is not valid JSON (line {e.lineno}: {e.msg})") from e
    except RecursionError as e:
        raise PlanFormatError(f"{path}: JSON nested too deeply to be a plan file") from e


def read_plan(path: str | Path) -> Plan:
    """Read a plan file (PlanFormatError with one line if it cannot be read). The plan is not
    replayed here: `planner.simulate.read_checked_plan` reads, replays and compares metrics."""
    return plan_from_dict(read_plan_document(path))


def source_mismatch(plan: Plan, source: ModelSource) -> str | None:
    """Why `plan` was not made from the model file `source` describes (its sha256 differs),
    or None when it was or when either side records no sha256 (a generated graph). Cheap:
    callers check it before importing a model with the plan's pins."""
    mine, theirs = plan.model_sha256, source.sha256
    if not mine or not theirs or mine == theirs:
        return None
    where = Path(source.path).name if source.path else "the model"
    return (
        f"the plan was made for a different model ({plan.graph.name}, sha256 {mine[:12]}…; {where} is {theirs[:12]}…)"
    )


def plan_mismatch(plan: Plan, graph: Graph) -> str | None:
    """Why `plan` was not made for `graph`, or None when it was.

    The one test of "does this plan belong to this model", used by `run`, the executor and
    the exporters: the model files' sha256 must agree when both sides know one, and the
    graphs must agree exactly in what the plan relies on (op names and wiring, tensor
    names, sizes and kinds).
    """
    if graph.source is not None:
        why = source_mismatch(plan, graph.source)
        if why:
            return why
    p, g = plan.graph, graph
    po, go = set(p.op_index), set(g.op_index)
    if po != go:
        extra, missing = sorted(po - go), sorted(go - po)
        return (
            f"the plan does not match this model: {len(extra)} plan ops not in the model (e.g. {extra[:3]}), "
            f"{len(missing)} model ops not in the plan (e.g. {missing[:3]})"
        )
    for o in p.ops:
        q = g.op(o.name)
        if tuple(o.inputs) != tuple(q.inputs) or tuple(o.outputs) != tuple(q.outputs):
            return f"the plan does not match this model: op {o.name!r} is wired differently"
    pt, gt = set(p.tensors), set(g.tensors)
    if pt != gt:
        return f"the plan does not match this model: tensor names differ (e.g. {sorted(pt ^ gt)[:3]})"
    for n, t in p.tensors.items():
        u = g.tensors[n]
        if t.bytes != u.bytes or t.kind != u.kind:
            return (
                f"the plan does not match this model: tensor {n!r} is {t.bytes} B {t.kind} in the plan, "
                f"{u.bytes} B {u.kind} in the model (pin the same input shapes?)"
            )
    return None
