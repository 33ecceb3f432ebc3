"""What a sweep is: the grid of models × targets × budgets × solvers × time limits × seeds,
read from a TOML/YAML file or from the command line's words, expanded into cells.

A spec is a mapping of the keys in `KEYS` (lists may be lists or comma-separated strings).
An optional `grid` list of tables lets parts of a sweep differ: each grid entry is merged
over the top-level keys and expands on its own; the sweep is the union of the cells.

    models = ["resnet8", "okay_nabu", "sp:100:0", "my_models/*.onnx"]
    targets = ["stm32f746", "nrf52840"]
    budgets = ["board", "100%", "50%", "256KiB"]
    solvers = ["auto", "greedy"]
    time_limits = [5]

A cell's identity (its `key`) is every field that changes its plan, so a store can tell
which cells a re-run may skip. Where a model lives (`path`) and how the engine runs it
(`timeout`, `memory`, `fresh_process`) are not part of it.
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from planner.target import LIFETIMES, PRESETS, SHARE_LEVELS, WEIGHT_PLACEMENTS, TargetError, parse_size

MAX_TIME_LIMIT = 86400.0  # a day, as `planner plan --time-limit`


class SpecError(ValueError):
    """A spec that cannot describe a sweep (unknown key, solver, target, unreadable budget)."""


# spec key -> (default, help); lists are the grid's axes, scalars apply to every cell
KEYS: dict[str, tuple[object, str]] = {
    "models": (
        None,
        "zoo names, files, globs, generated `family:ops:seed`, `zoo` (every zoo model), `irregular` (the NAS-cell and RandWire networks), "
        "`FILE.py:FUNC:ARGS`",
    ),
    "targets": (["unbounded"], "board presets (`all`: every preset)"),
    "budgets": (["board"], "`board` (the preset's L1), `none`, sizes (256KiB) or % of the no-spill arena"),
    "solvers": (["auto"], "solver names (see `planner solvers`)"),
    "time_limits": ([10.0], "seconds per solve"),
    "seeds": ([0], "CP-SAT seeds"),
    "workers": (1, "CP-SAT threads per cell (also the CPUs a Ray task asks for)"),
    "objective": ("traffic", "traffic | peak"),
    "weights": (None, "in_place | load (default: the preset's)"),
    "alignment": (None, "offset alignment (default: the preset's)"),
    "lifetimes": (None, "minimal | tflm (default: tflm for .tflite, minimal otherwise)"),
    "share": ("all", "all | views | none"),
    "fuse": (None, "auto | onnxruntime | none (default: auto for ONNX, none otherwise)"),
    "options": ({}, "SolveOptions knobs, e.g. {deterministic = true}"),
    "reference": ("best", "solver whose no-spill arena percentages refer to"),
    "reference_time_limit": (10.0, "seconds for the reference solve"),
    "clamp": (False, "raise percentage budgets to the smallest budget any plan can use"),
    "max_ops": ({}, "solver -> op count above which its cells are skipped"),
    "timeout": (None, "hard seconds per cell before the engine kills it (default 3 × limit + 120)"),
    "memory": ("2GiB", "memory a cell asks Ray for"),
    "fresh_process": (False, "run every cell in a new process (peak RSS per cell)"),
    "retries": (2, "times a cell whose worker died is run again"),
    "grid": ([], "sub-grids, each merged over the top-level keys"),
}
LIST_KEYS = ("models", "targets", "budgets", "solvers", "time_limits", "seeds")
PERCENT = re.compile(r"\s*([0-9]*\.?[0-9]+)\s*%\s*")
KNOB_EXCLUDED = ("time_limit", "workers", "seed", "objective", "progress", "hint")


@dataclass(frozen=True)
class Cell:
    """One plan of the sweep: a model on a target under a budget by one solver.

    `budget` is the word the spec used (`board`, `none`, `50%`, `256KiB`); the bytes it
    means are resolved at run time (a percentage needs the model's no-spill arena)."""

    model: str
    target: str
    budget: str
    solver: str
    time_limit: float
    seed: int
    workers: int
    objective: str
    weights: str | None
    alignment: int | None
    lifetimes: str
    share: str
    fuse: str = "none"
    options: tuple = ()
    reference: str = "best"
    reference_time_limit: float = 10.0
    clamp: bool = False
    max_ops: int | None = None
    path: str = field(default="", compare=False)
    timeout: float = field(default=0.0, compare=False)
    memory: int = field(default=0, compare=False)
    fresh_process: bool = field(default=False, compare=False)
    retries: int = field(default=2, compare=False)

    @property
    def is_relative(self) -> bool:
        """Whether the budget is a share of the no-spill arena (needs a reference solve)."""
        return PERCENT.fullmatch(self.budget) is not None

    def identity(self) -> dict:
        """Every field that changes the plan (the reference settings only for percentages)."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.compare}
        d["options"] = dict(self.options)
        if not self.is_relative:
            for k in ("reference", "reference_time_limit", "clamp"):
                d.pop(k)
        return d

    @property
    def key(self) -> str:
        """A stable id of the cell (what a resumed sweep looks up in the store)."""
        return digest(self.identity())

    def reference_identity(self) -> dict:
        """What the no-spill arena of this cell's model on its target depends on."""
        keep = ("model", "target", "weights", "alignment", "lifetimes", "share", "fuse", "reference")
        d = {k: getattr(self, k) for k in keep}
        d.update(time_limit=self.reference_time_limit, workers=self.workers, seed=self.seed)
        return d

    @property
    def reference_key(self) -> str:
        """The id of the reference solve this cell's percentage refers to."""
        return digest(self.reference_identity())

    def payload(self) -> dict:
        """What a worker needs to plan the cell (plain data: it crosses processes and hosts)."""
        d = self.identity()
        d.update(key=self.key, path=self.path)
        return d


def digest(d: dict) -> str:
    """A short stable hash of a JSON-able dict (cell and reference keys)."""
    return hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class SweepSpec:
    """A parsed sweep: the top-level keys and its grids (each a dict of every key)."""

    grids: list[dict]
    base_dir: Path = field(default_factory=Path.cwd)
    raw: dict = field(default_factory=dict)

    def cells(self) -> list[Cell]:
        """Every cell of every grid, in spec order, each once."""
        out: dict[str, Cell] = {}
        for grid in self.grids:
            for c in _expand(grid, self.base_dir):
                out.setdefault(c.key, c)
        return list(out.values())


def load_spec(path: str | Path, overrides: Mapping | None = None) -> SweepSpec:
    """Read a `.toml` or `.yaml` spec; `overrides` (the command line's words) replace its
    top-level keys. Relative paths and globs in it are relative to the spec's folder."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise SpecError(f"cannot read spec {p}: {e.strerror or e}") from None
    data = _parse_text(text, p)
    if not isinstance(data, dict):
        raise SpecError(f"{p}: a spec is a mapping of keys ({', '.join(KEYS)})")
    return spec_from_mapping(with_overrides(data, overrides or {}), p.parent.resolve())


def with_overrides(data: dict, overrides: Mapping) -> dict:
    """The spec with the command line's words in force everywhere: at the top and in place
    of the same keys in every grid."""
    over = {k: v for k, v in overrides.items() if v is not None}
    grids = data.get("grid")
    out = {**data, **over}
    if isinstance(grids, list) and over:
        out["grid"] = [{k: v for k, v in g.items() if k not in over} if isinstance(g, dict) else g for g in grids]
    return out


def _parse_text(text: str, p: Path) -> object:
    if p.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise SpecError("YAML specs need PyYAML: pip install pyyaml (or write the spec in TOML)") from None
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise SpecError(f"{p}: not valid YAML: {str(e).splitlines()[0]}") from None
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise SpecError("TOML specs need Python 3.11 or `pip install tomli`") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{p}: not valid TOML: {e}") from None


def spec_from_mapping(data: Mapping, base_dir: str | Path | None = None) -> SweepSpec:
    """A spec from a mapping of keys (a parsed file, or the command line's words)."""
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    data = {k: v for k, v in data.items() if v is not None}
    _check_keys(data, "spec")
    top = {k: data.get(k, default) for k, (default, _) in KEYS.items() if k != "grid"}
    grids_raw = data.get("grid") or [{}]
    if not isinstance(grids_raw, list) or not all(isinstance(g, dict) for g in grids_raw):
        raise SpecError("`grid` is a list of tables (TOML [[grid]], YAML a list of mappings)")
    grids = []
    for i, g in enumerate(grids_raw):
        _check_keys(g, f"grid {i + 1}")
        if "grid" in g:
            raise SpecError(f"grid {i + 1}: grids do not nest")
        grids.append(_normalise({**top, **g}, f"grid {i + 1}" if len(grids_raw) > 1 else "spec"))
    return SweepSpec(grids, base, dict(data))


def _check_keys(d: Mapping, where: str) -> None:
    unknown = [k for k in d if k not in KEYS]
    if unknown:
        raise SpecError(f"{where}: unknown key {unknown[0]!r}; keys: {', '.join(KEYS)}")


def _as_list(v: object, key: str) -> list:
    if isinstance(v, str):
        return [s.strip() for s in v.split(",") if s.strip()]
    if isinstance(v, (list, tuple)):
        return list(v)
    if isinstance(v, (int, float)):
        return [v]
    raise SpecError(f"{key}: expected a list or a comma-separated string, got {v!r}")


def _normalise(g: dict, where: str) -> dict:
    """Check one grid's values and bring them to one form (lists, numbers, names)."""
    from planner.solvers.base import OBJECTIVES, SolveOptions
    from planner.solvers.registry import SOLVERS

    g = dict(g)
    for k in LIST_KEYS:
        g[k] = _as_list(g[k], k) if g[k] is not None else None
    if not g["models"]:
        raise SpecError(f'{where}: no models (give `models`, e.g. models = ["resnet8"])')
    g["targets"] = list(PRESETS) if g["targets"] == ["all"] else [str(t).lower() for t in g["targets"]]
    _one_of(g["targets"], PRESETS, "target", where)
    _one_of(g["solvers"], SOLVERS, "solver", where)
    _one_of([g["reference"]], SOLVERS, "reference solver", where)
    g["budgets"] = [_budget_word(b, where) for b in g["budgets"]]
    g["time_limits"] = [_number(t, "time limit", where) for t in g["time_limits"]]
    for t in g["time_limits"]:
        if t > MAX_TIME_LIMIT:  # 0 stays legal: heuristics only (the baselines' cells)
            raise SpecError(f"{where}: time limit must be at most {MAX_TIME_LIMIT:g} s, got {t:g}")
    g["seeds"] = [int(_number(s, "seed", where)) for s in g["seeds"]]
    g["workers"] = int(_number(g["workers"], "workers", where))
    g["retries"] = int(_number(g["retries"], "retries", where))
    _one_of([g["objective"]], OBJECTIVES, "objective", where)
    fuse = ("auto", "onnxruntime", "none")
    for key, allowed in (
        ("weights", WEIGHT_PLACEMENTS),
        ("lifetimes", LIFETIMES),
        ("share", SHARE_LEVELS),
        ("fuse", fuse),
    ):
        if g[key] is not None:
            _one_of([g[key]], allowed, key, where)
    knobs = {f.name for f in fields(SolveOptions)} - set(KNOB_EXCLUDED)
    if not isinstance(g["options"], dict) or any(k not in knobs for k in g["options"]):
        raise SpecError(f"{where}: options are SolveOptions knobs: {', '.join(sorted(knobs))}")
    if not isinstance(g["max_ops"], dict):
        raise SpecError(f"{where}: max_ops maps solver names to op counts, e.g. {{cpsat-stage = 45}}")
    _one_of(list(g["max_ops"]), SOLVERS, "solver in max_ops", where)
    try:
        g["memory"] = parse_size(g["memory"])
    except TargetError as e:
        raise SpecError(f"{where}: memory: {e}") from None
    return g


def _one_of(values: list, allowed, what: str, where: str) -> None:
    for v in values:
        if v not in allowed:
            raise SpecError(f"{where}: unknown {what} {v!r}; known: {', '.join(map(str, allowed))}")


def _number(v: object, what: str, where: str) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise SpecError(f"{where}: {what} must be a number, got {v!r}") from None
    if not math.isfinite(x) or x < 0:
        raise SpecError(f"{where}: {what} must be a finite number, not negative, got {v!r}")
    return x


def _budget_word(b: object, where: str) -> str:
    """`board`, `none`, a percentage (kept as `50%`) or a size (kept as written)."""
    s = str(b).strip()
    low = s.lower()
    if low in ("board", "none"):
        return low
    m = PERCENT.fullmatch(s)
    if m:
        if float(m.group(1)) <= 0:
            raise SpecError(f"{where}: budget {s!r} must be more than 0%")
        return f"{float(m.group(1)):g}%"
    try:
        parse_size(s)
    except TargetError as e:
        raise SpecError(
            f"{where}: budget {s!r}: use board, none, a size like 256KiB or a share like 50% ({e})"
        ) from None
    return s


def expand_models(entries: list, base_dir: Path) -> list[tuple[str, str]]:
    """(name as the store records it, where to load it from) for each model entry: `zoo`,
    `zoo:onnx` and `zoo:tflite` expand to zoo names, `irregular` to the generated NAS-cell and
    RandWire networks, globs to the files they match."""
    from planner.models.zoo import GENERATED, IRREGULAR, ZOO, irregular_names

    out: list[tuple[str, str]] = []
    for e in entries:
        s = str(e).strip()
        if s in ("zoo", "zoo:onnx", "zoo:tflite"):
            fmt = s.partition(":")[2]
            out += [(n, n) for n, z in ZOO.items() if not fmt or z.format == fmt]
        elif s == "irregular":
            out += [(n, n) for n in irregular_names()]
        elif s in ZOO or GENERATED.fullmatch(s) or IRREGULAR.fullmatch(s):
            out.append((s, s))
        elif any(ch in s for ch in "*?["):
            matches = sorted(glob.glob(str(base_dir / s)))
            if not matches:
                raise SpecError(f"models: {s!r} matches no file (relative to {base_dir})")
            out += [(str(Path(m).relative_to(base_dir)) if _under(m, base_dir) else m, m) for m in matches]
        else:
            file, sep, rest = s.partition(".py:")
            path = (base_dir / (file + ".py" if sep else s)).resolve()
            out.append((s, f"{path}:{rest}" if sep else str(path)))
    return list(dict.fromkeys(out))


def _under(path: str, base: Path) -> bool:
    try:
        Path(path).relative_to(base)
    except ValueError:
        return False
    return True


def _format(model: str) -> str:
    from planner.models.zoo import ZOO

    if model in ZOO:
        return ZOO[model].format
    file, sep, _ = model.partition(".py:")
    return "py" if sep else Path(file).suffix.lower().lstrip(".")


def default_lifetimes(model: str) -> str:
    """TFLite models run under TFLite Micro (inputs from the start, outputs to the end);
    everything else gets minimal lifetimes, as `planner plan` does."""
    return "tflm" if _format(model) == "tflite" else "minimal"


def default_fuse(model: str) -> str:
    """ONNX models are planned fused or as written, whichever the heuristics plan smaller
    (`auto`, as `planner plan` does); TFLite comes fused, generated graphs have nothing to fuse."""
    return "auto" if _format(model) == "onnx" else "none"


def _expand(g: dict, base_dir: Path) -> list[Cell]:
    cells = []
    for name, path in expand_models(g["models"], base_dir):
        lifetimes = g["lifetimes"] or default_lifetimes(name)
        fuse = g["fuse"] or default_fuse(name)
        for target in g["targets"]:
            for budget in g["budgets"]:
                for solver in g["solvers"]:
                    for tl in g["time_limits"]:
                        for seed in g["seeds"]:
                            cells.append(_cell(g, name, path, (lifetimes, fuse), target, budget, solver, tl, seed))
    return cells


def _cell(g: dict, name, path, lifetimes_fuse, target, budget, solver, tl, seed) -> Cell:
    lifetimes, fuse = lifetimes_fuse
    timeout = float(g["timeout"]) if g["timeout"] is not None else 3 * max(tl, g["reference_time_limit"]) + 120
    return Cell(
        model=name,
        target=target,
        budget=budget,
        solver=solver,
        time_limit=tl,
        seed=seed,
        workers=g["workers"],
        objective=g["objective"],
        weights=g["weights"],
        alignment=None if g["alignment"] is None else int(g["alignment"]),
        lifetimes=lifetimes,
        share=g["share"],
        fuse=fuse,
        options=tuple(sorted(g["options"].items())),
        reference=g["reference"],
        reference_time_limit=float(g["reference_time_limit"]),
        clamp=bool(g["clamp"]),
        max_ops=g["max_ops"].get(solver),
        path=path,
        timeout=timeout,
        memory=g["memory"],
        fresh_process=bool(g["fresh_process"]),
        retries=g["retries"],
    )


def resolve_budget(cell: Cell, reference: Mapping | None = None) -> tuple[int | None, bool]:
    """(the budget in bytes or None for unbounded, whether it was clamped up) for a cell;
    a percentage needs its reference (`nospill_arena`, `min_budget`)."""
    if cell.budget == "board":
        return PRESETS[cell.target].budget, False
    if cell.budget == "none":
        return None, False
    m = PERCENT.fullmatch(cell.budget)
    if not m:
        return parse_size(cell.budget), False
    if reference is None:
        raise SpecError(f"budget {cell.budget} needs the no-spill arena of {cell.model} on {cell.target}")
    want = int(float(m.group(1)) / 100 * reference["nospill_arena"])
    if cell.clamp and want < reference["min_budget"]:
        return int(reference["min_budget"]), True
    return max(want, 1), False
