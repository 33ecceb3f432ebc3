"""Stages, plans and the `planner.plan` v1 file format (DESIGN §4).

A plan file is self-contained: it carries the graph's tensors and ops, so any tool can
replay it without the model. Reading is strict: unknown versions and malformed files
raise PlanFormatError with one clear line.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from planner.graph import Graph, GraphError, Op, Tensor
from planner.target import Target, TargetError

FORMAT = "planner.plan"
VERSION = 1
STAGE_KINDS = ("L", "R", "S", "F")
STATUSES = ("optimal", "feasible", "heuristic")


class PlanFormatError(ValueError):
    """A plan file that cannot be read (wrong format, unknown version, malformed)."""


@dataclass(frozen=True)
class Stage:
    """One timestep. `name` is a tensor (L/S/F) or an op (R).

    `offset` is set for L; `offsets` maps each output of an R to its offset.
    """

    kind: str
    name: str
    offset: int | None = None
    offsets: dict[str, int] | None = field(default=None, compare=False, hash=False)

    def to_dict(self) -> dict:
        if self.kind == "R":
            return {"stage": "R", "op": self.name, "offsets": dict(self.offsets or {})}
        d: dict = {"stage": self.kind, "tensor": self.name}
        if self.kind == "L":
            d["offset"] = self.offset
        return d

    def __str__(self) -> str:
        if self.kind == "L":
            return f"L {self.name} @{self.offset}"
        return f"{self.kind} {self.name}"


@dataclass
class Metrics:
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
        return self.traffic_bytes - self.compulsory_traffic_bytes


@dataclass
class SolverInfo:
    name: str
    status: str = "heuristic"  # optimal | feasible | heuristic
    bound: int = 0  # best proven lower bound on the objective (arena bytes)
    wall_s: float = 0.0
    options: dict = field(default_factory=dict)


@dataclass
class Plan:
    graph: Graph
    target: Target
    stages: list[Stage]
    solver: SolverInfo
    metrics: Metrics = field(default_factory=Metrics)
    model_sha256: str = ""

    @property
    def order(self) -> list[str]:
        return [s.name for s in self.stages if s.kind == "R"]

    @property
    def spills(self) -> bool:
        """True when some activation is stored and loaded back (TFLM cannot express that)."""
        return any(s.kind == "L" and self.graph.tensors[s.name].kind in ("activation", "output") for s in self.stages)

    # -- JSON ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        g = self.graph
        return {
            "format": FORMAT,
            "version": VERSION,
            "model": {"name": g.name, "sha256": self.model_sha256},
            "target": self.target.to_dict(),
            "tensors": [
                {
                    "name": t.name,
                    "bytes": t.bytes,
                    "kind": t.kind,
                    "producer": g.producer.get(t.name),
                    "consumers": list(g.consumers[t.name]),
                    **({"shape": list(t.shape)} if t.shape is not None else {}),
                    **({"dtype": t.dtype} if t.dtype is not None else {}),
                }
                for t in g.tensors.values()
            ],
            "ops": [
                {"name": o.name, "type": o.type, "inputs": list(o.inputs), "outputs": list(o.outputs)} for o in g.ops
            ],
            "stages": [s.to_dict() for s in self.stages],
            "metrics": asdict(self.metrics),
            "solver": _jsonable(asdict(self.solver)),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def write(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")


def _jsonable(v):
    """Solver options are free-form: keep what JSON can hold, describe the rest."""
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return f"<{type(v).__name__}>"


def _need(d: dict, key: str, typ: type | tuple, where: str):
    if not isinstance(d, dict) or key not in d:
        raise PlanFormatError(f"{where}: missing key {key!r}")
    v = d[key]
    if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
        raise PlanFormatError(f"{where}: {key!r} has the wrong type ({type(v).__name__})")
    return v


def plan_from_dict(d: dict) -> Plan:
    if not isinstance(d, dict):
        raise PlanFormatError("plan file: top level must be a JSON object")
    if d.get("format") != FORMAT:
        raise PlanFormatError(f"not a planner plan (format is {d.get('format')!r}, expected {FORMAT!r})")
    if d.get("version") != VERSION:
        raise PlanFormatError(f"unsupported plan version {d.get('version')!r}; this planner reads version {VERSION}")
    try:
        model = _need(d, "model", dict, "plan")
        target = Target.from_dict(_need(d, "target", dict, "plan"))
        tensors = []
        for i, t in enumerate(_need(d, "tensors", list, "plan")):
            w = f"tensors[{i}]"
            shape = t.get("shape") if isinstance(t, dict) else None
            tensors.append(
                Tensor(
                    _need(t, "name", str, w),
                    _need(t, "bytes", int, w),
                    _need(t, "kind", str, w),
                    tuple(shape) if shape is not None else None,
                    t.get("dtype"),
                )
            )
        ops = []
        for i, o in enumerate(_need(d, "ops", list, "plan")):
            w = f"ops[{i}]"
            ops.append(
                Op(
                    _need(o, "name", str, w),
                    _need(o, "type", str, w),
                    tuple(_need(o, "inputs", list, w)),
                    tuple(_need(o, "outputs", list, w)),
                )
            )
        graph = Graph(str(model.get("name", "")), tensors, ops)
        stages = []
        for i, s in enumerate(_need(d, "stages", list, "plan")):
            w = f"stages[{i}]"
            kind = _need(s, "stage", str, w)
            if kind == "R":
                offs = _need(s, "offsets", dict, w)
                if not all(isinstance(v, int) and not isinstance(v, bool) for v in offs.values()):
                    raise PlanFormatError(f"{w}: offsets must be integers")
                stages.append(Stage("R", _need(s, "op", str, w), offsets=dict(offs)))
            elif kind == "L":
                stages.append(Stage("L", _need(s, "tensor", str, w), offset=_need(s, "offset", int, w)))
            elif kind in ("S", "F"):
                stages.append(Stage(kind, _need(s, "tensor", str, w)))
            else:
                raise PlanFormatError(f"{w}: unknown stage {kind!r} (expected one of L, R, S, F)")
        m = d.get("metrics", {}) or {}
        known = set(Metrics.__dataclass_fields__)
        metrics = Metrics(**{k: int(v) for k, v in m.items() if k in known and v is not None})
        s = _need(d, "solver", dict, "plan")
        solver = SolverInfo(
            name=str(s.get("name", "")),
            status=str(s.get("status", "heuristic")),
            bound=int(s.get("bound") or 0),
            wall_s=float(s.get("wall_s") or 0.0),
            options=dict(s.get("options") or {}),
        )
    except (GraphError, TargetError) as e:
        raise PlanFormatError(f"plan file describes an invalid graph/target: {e}") from e
    except (TypeError, ValueError, AttributeError) as e:
        if isinstance(e, PlanFormatError):
            raise
        raise PlanFormatError(f"malformed plan file: {e}") from e
    return Plan(graph, target, stages, solver, metrics, str(model.get("sha256", "")))


def read_plan(path: str | Path) -> Plan:
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise PlanFormatError(f"cannot read plan {path}: {e.strerror}") from e
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise PlanFormatError(f"{path} is not valid JSON (line {e.lineno}: {e.msg})") from e
    return plan_from_dict(d)


def model_sha256(data: bytes) -> str:
    """The fingerprint a plan records of its model file (`Plan.model_sha256`)."""
    return hashlib.sha256(data).hexdigest()


def model_mismatch(plan: Plan, model: str | Path, data: bytes | None = None) -> str | None:
    """Why `plan` was not made for the model file `model` (its bytes `data`, read when not
    given), or None when the sha256 matches or the plan records none (made from a generated
    graph). Used by `export --format tflite` and `run` before they trust the plan."""
    if not plan.model_sha256:
        return None
    digest = model_sha256(Path(model).read_bytes() if data is None else data)
    if digest == plan.model_sha256:
        return None
    return (
        f"the plan was made for a different model ({plan.graph.name}, sha256 {plan.model_sha256[:12]}…; "
        f"{Path(model).name} is {digest[:12]}…)"
    )
