"""Argument handling shared by subcommands: model loading, targets, solver options."""

from __future__ import annotations

import argparse
import math
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from planner.models.fuse import FUSE_METHODS
from planner.solvers.objectives import OBJECTIVES
from planner.target import (
    DEFAULT_TARGET,
    LIFETIMES,
    SHARE_LEVELS,
    WEIGHT_PLACEMENTS,
    Target,
    TargetError,
    get_target,
)

if TYPE_CHECKING:  # the graph module imports networkx: not for `planner --help`
    from planner.graph import Graph

DEFAULT_MODEL = "resnet8"


# notes and warnings of the running command (one line each), printed to stderr when it ends
# without an error; a failed command prints only its one error line
NOTES: list[str] = []


def note(line: str) -> None:
    """Say something the user should know about a command that may still succeed
    ("note: ...", "warning: ..."); `planner.cli.main` prints it when the command ends
    without an error, after its output, so a failure stays one line."""
    NOTES.append(line)


class CliError(Exception):
    """A user-facing failure: `code` is the exit status, the message is printed as is."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


# -- option values argparse checks (a bad value is one line, exit 2, before any work) --------------
def int_in(lo: int, hi: int):
    """An argparse type: an integer in [lo, hi]."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"must be between {lo} and {hi}, got {v}")
        return v

    parse.__name__ = "integer"
    return parse


def finite_float(lo: float = 0.0):
    """An argparse type: a finite number >= lo (nan and inf are refused)."""

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(v) or v < lo:
            raise argparse.ArgumentTypeError(f"must be a finite number >= {lo:g}, got {text!r}")
        return v

    parse.__name__ = "number"
    return parse


MIN_TIME_LIMIT = 0.1  # seconds: less cannot even run the heuristics on a small model
MAX_TIME_LIMIT = 86400.0  # a day: longer is a typo (and CP-SAT's own limit stays sane)


def time_limit(text: str) -> float:
    """An argparse type: --time-limit in seconds, finite and within
    [MIN_TIME_LIMIT, MAX_TIME_LIMIT] (nan, inf, 0 and negatives are refused)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not math.isfinite(v) or not MIN_TIME_LIMIT <= v <= MAX_TIME_LIMIT:
        raise argparse.ArgumentTypeError(
            f"must be a finite number of seconds between {MIN_TIME_LIMIT:g} and {MAX_TIME_LIMIT:g}, got {text!r}"
        )
    return v


time_limit.__name__ = "seconds"

# when the running command started (`planner.cli.main` sets it): --time-limit counts from here
COMMAND_START: list[float] = [time.perf_counter()]
MIN_SOLVE_S = 0.05  # a solve always gets this much: the heuristics' instant answer


def start_command(t0: float | None = None) -> None:
    """Start the command's clock (at `t0`, a `time.perf_counter()` reading, or now)."""
    COMMAND_START[0] = time.perf_counter() if t0 is None else t0


def command_elapsed() -> float:
    """Seconds since the running command started."""
    return time.perf_counter() - COMMAND_START[0]


def time_left(limit: float, ops: int = 0) -> float:
    """Seconds of the command's time `limit` a solve may still use: what the import, the
    fusion choice and the rest of the command so far have not, less a reserve for writing
    the plan and the summary (5 % of the limit, at most 1 s, plus 0.15 ms per op of the
    graph: a 5,000-op plan file takes half a second to write); never below MIN_SOLVE_S."""
    reserve = min(0.05 * limit, 1.0) + 0.00015 * ops
    return max(limit - command_elapsed() - reserve, MIN_SOLVE_S)


MAX_WORKERS = 256  # CP-SAT threads: more than any machine this runs on
MAX_SEED = 2**31 - 1  # CP-SAT's random_seed is a 32-bit int
MAX_ALIGNMENT = 1 << 16  # no device aligns buffers beyond 64 KiB


def add_model_args(p: argparse.ArgumentParser, optional: bool = True) -> None:
    """MODEL (a path or a zoo name) and the shape pins every importer takes."""
    if optional:
        p.add_argument("model", nargs="?", help=f"ONNX/TFLite file or zoo name (default: bundled {DEFAULT_MODEL})")
    else:
        p.add_argument("model", help="ONNX/TFLite file or zoo name")
    p.add_argument(
        "--input-shape",
        action="append",
        default=[],
        metavar="NAME=1x3x224x224",
        help="pin a graph input's shape (repeatable)",
    )
    p.add_argument("--dim", action="append", default=[], metavar="N=1", help="pin a symbolic dimension (repeatable)")
    add_value_arg(p)
    add_fuse_arg(p)


def add_value_arg(p: argparse.ArgumentParser) -> None:
    """--input-value: the value of an input some shape depends on (silero-vad's sample rate)."""
    p.add_argument(
        "--input-value",
        action="append",
        default=[],
        metavar="NAME=V",
        help="the value of a graph input that shapes depend on, e.g. sr=16000 (a number, or numbers "
        "separated by commas; repeatable); it is fed when shapes are measured and when the plan is run",
    )


def add_fuse_arg(p: argparse.ArgumentParser, default_help: str | None = None) -> None:
    """--fuse: plan the graph the runtime runs after its fusions, or the model as written."""
    p.add_argument(
        "--fuse",
        choices=("auto", *FUSE_METHODS),
        help="operator fusion before planning: onnxruntime (the graph onnxruntime runs after its "
        "ORT_ENABLE_EXTENDED optimisations: Conv+BatchNorm+Relu, Gemm+activation, ... whose intermediates "
        "it never materialises), none (the model as written) or auto (whichever of the two plans smaller); "
        + (default_help or "default auto for ONNX models, none otherwise (TFLite comes fused)"),
    )


MAX_OVERHEAD_PERCENT = 1000.0  # --max-overhead at most: 11x the MACs


def percent(text: str) -> float:
    """An argparse type: --max-overhead, a finite percentage in [0, MAX_OVERHEAD_PERCENT]."""
    v = finite_float(0.0)(text)
    if v > MAX_OVERHEAD_PERCENT:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_OVERHEAD_PERCENT:g} (percent), got {text!r}")
    return v


def add_split_args(p: argparse.ArgumentParser) -> None:
    """--split and --max-overhead: compute TFLite and ONNX regions in row stripes (or ops in
    output-channel chunks) where that helps."""
    p.add_argument(
        "--split",
        choices=("auto", "none"),
        default="auto",
        help="splitting of TFLite and ONNX models (regions of convolutions, pooling and element-wise ops "
        "computed in stripes of rows, halos recomputed; fully connected layers, Gemm, MatMul and ONNX Conv in "
        "output-channel chunks): auto (default) splits only when the objective needs "
        "it -- a budget the model as imported misses, or --objective peak -- and only when the split plan is "
        "smaller; none plans the model as imported",
    )
    p.add_argument(
        "--max-overhead",
        type=percent,
        default=10.0,
        metavar="PERCENT",
        help="extra MACs splitting may cost, in percent of the model's (halo rows recomputed; default 10)",
    )


def add_target_args(p: argparse.ArgumentParser) -> None:
    """--target and the overrides of its budget, weights, alignment and lifetimes."""
    p.add_argument(
        "--target",
        help=f"board preset (see `planner solvers --targets`); default {DEFAULT_TARGET} "
        "for the bundled model, otherwise unbounded",
    )
    p.add_argument("--budget", help="L1 budget, e.g. 256KiB, 1.5MB, 262144 (overrides the preset's)")
    p.add_argument("--weights", choices=WEIGHT_PLACEMENTS, help="weight placement (overrides the preset's)")
    p.add_argument(
        "--alignment", type=int_in(1, MAX_ALIGNMENT), help=f"offset alignment in bytes, 1..{MAX_ALIGNMENT} (default 16)"
    )
    p.add_argument(
        "--lifetimes",
        choices=LIFETIMES,
        help="no-spill tensor lifetimes: minimal (inputs loaded right before their first use, outputs stored "
        "and freed early) or tflm (inputs from the start, outputs to the end, as TFLite Micro's arena needs); "
        "default tflm for .tflite models, minimal otherwise",
    )
    p.add_argument(
        "--share",
        choices=SHARE_LEVELS,
        default="all",
        help="which tensors may share bytes: all (default: reshape-like views, slices, concat inputs in their "
        "slots, element-wise ops writing over a dead input), views (views and slices only), none (every tensor "
        "its own bytes, as TFLite Micro's own planner does)",
    )


def add_solver_args(p: argparse.ArgumentParser, whole_command: bool = True) -> None:
    """The options every solver takes (SolveOptions' common part). `whole_command`: the time
    limit bounds the whole command (`plan`), else each solve (`compare`, one per solver)."""
    what = (
        "the whole command: import, fusion choice, solve, layout, spills, lowering and simulation; "
        "the best plan found so far is returned when it runs out"
        if whole_command
        else "each solver's solve (the command runs several)"
    )
    p.add_argument(
        "--time-limit",
        type=time_limit,
        default=30.0,
        help=f"seconds for {what}; {MIN_TIME_LIMIT:g}..{MAX_TIME_LIMIT:g} (default 30)",
    )
    p.add_argument(
        "--workers", type=int_in(1, MAX_WORKERS), default=2, help=f"CP-SAT worker threads, 1..{MAX_WORKERS} (default 2)"
    )
    p.add_argument(
        "--seed",
        type=int_in(0, MAX_SEED),
        default=0,
        help="random seed (results are deterministic per seed+workers; default 0)",
    )
    p.add_argument(
        "--objective",
        choices=OBJECTIVES,
        default="traffic",
        help="traffic (default): least spill traffic within the budget, then the smallest arena, so spills "
        "only when no plan without them fits; peak: the smallest arena, spilling to shrink it if that helps, "
        "then the least traffic",
    )


def parse_pins(args: argparse.Namespace) -> tuple[dict[str, tuple[int, ...]], dict[str, int]]:
    """(input shapes, symbolic dims) from --input-shape and --dim (CliError when malformed)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for s in args.input_shape:
        name, _, dims = s.rpartition("=")
        try:
            shapes[name] = tuple(int(d) for d in dims.lower().split("x"))
        except ValueError:
            raise CliError(f"bad --input-shape {s!r}: use NAME=1x3x224x224 (the input's real sizes)") from None
        if not name or any(d <= 0 for d in shapes[name]):
            raise CliError(f"bad --input-shape {s!r}: use NAME=1x3x224x224 with positive sizes")
    dims_: dict[str, int] = {}
    for s in args.dim:
        name, _, v = s.rpartition("=")
        if not name or not v.isdigit() or int(v) <= 0:
            raise CliError(f"bad --dim {s!r}: use NAME=SIZE with a positive size")
        dims_[name] = int(v)
    return shapes, dims_


_NUMBER = re.compile(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?")


def parse_values(args: argparse.Namespace) -> dict[str, object]:
    """--input-value NAME=V: a number (int when written without a point or exponent) or a
    comma-separated list of numbers; CliError when malformed or not finite."""
    out: dict[str, object] = {}
    for s in getattr(args, "input_value", None) or []:
        name, _, text = s.partition("=")
        parts = [x.strip() for x in text.split(",")] if text.strip() else []
        if not name or not parts or not all(_NUMBER.fullmatch(x) for x in parts):
            raise CliError(f"bad --input-value {s!r}: use NAME=V with a number (sr=16000) or numbers (x=1,2,3)")
        vals = [int(x) if re.fullmatch(r"[-+]?\d+", x) else float(x) for x in parts]
        if not all(math.isfinite(v) for v in vals):
            raise CliError(f"bad --input-value {s!r}: values must be finite")
        out[name] = vals[0] if len(vals) == 1 else vals
    return out


def model_name(args: argparse.Namespace) -> str:
    """args.model, or the bundled model when MODEL was left out; an empty name is refused
    (`planner plan ''` must not plan the bundled model)."""
    model = getattr(args, "model", None)
    if model is None:
        return DEFAULT_MODEL
    if not model.strip():
        raise CliError("MODEL is empty: give a model file or a zoo name (or leave it out for the bundled model)")
    return model


def load_graph(args: argparse.Namespace, target: Target | None = None) -> Graph:
    """The graph named by args.model (a path or a zoo name; default the bundled model),
    fused as --fuse says (a fusion that fell back says why on stderr, see `fusion_note`);
    `--fuse auto` plans whichever of the fused and the written graph the heuristics plan
    smaller for `target` (solvers/transforms.py). The importer's notes (shapes it settled
    by measuring) go to stderr, one line each."""
    from planner.models.zoo import load_model

    shapes, dims = parse_pins(args)
    model = model_name(args)
    fuse = getattr(args, "fuse", None) or default_fuse(model)
    kw = {"input_shapes": shapes or None, "dims": dims or None, "input_values": parse_values(args) or None}
    if fuse == "auto":
        from planner.solvers.transforms import choose_graph

        fused = load_model(model, **kw, fuse="onnxruntime")
        graphs = [fused] if fusion_note(fused) else [fused, load_model(model, **kw)]
        limit = getattr(args, "time_limit", None)  # the heuristics' choice: a share of what is left
        seconds = None if limit is None else CHOICE_SHARE * time_left(limit)
        graph = choose_graph(graphs, target or make_target(args), seconds)
    else:
        graph = load_model(model, **kw, fuse=fuse)
    for text in [*graph_notes(graph), fusion_note(graph)]:
        if text:
            note(f"note: {text}")
    return graph


CHOICE_SHARE = 0.2  # of the time left, for `--fuse auto` to choose between the fused and the written graph


def graph_notes(graph: Graph) -> list[str]:
    """What the importer wants the user to know about the graph (one line each)."""
    return list(getattr(graph.source, "notes", ()) or ())


def default_fuse(model: str) -> str:
    """ONNX models are planned fused as onnxruntime runs them, or as written, whichever plans
    smaller; TFLite graphs come fused from the converter, generated graphs have nothing to fuse."""
    return "auto" if _format(model) == "onnx" else "none"


def fusion_note(graph: Graph) -> str | None:
    """Why a requested fusion left the graph as written, in one line (None when it fused or
    was not asked for)."""
    from planner.models.fuse import fusion_of

    record = fusion_of(graph)
    if record is None or record.applied or not record.note:
        return None
    return f"{record.summary()}; planning the model as written"


def model_path(name: str) -> Path:
    """A zoo name's file, or the path as given."""
    from planner.models.zoo import ZOO, locate

    return locate(name) if name in ZOO else Path(name)


def make_target(args: argparse.Namespace) -> Target:
    """The target the flags describe (the bundled model defaults to its board)."""
    name = args.target
    if name is None:
        name = DEFAULT_TARGET if getattr(args, "model", None) is None else "unbounded"
    try:
        target = get_target(name, args.budget, args.weights, args.alignment)
    except TargetError as e:
        raise CliError(str(e)) from None
    lifetimes = getattr(args, "lifetimes", None) or default_lifetimes(model_name(args))
    return replace(target, lifetimes=lifetimes, share=getattr(args, "share", "all"))


def default_lifetimes(model: str) -> str:
    """TFLite models run under TFLite Micro, whose arena needs its own lifetimes; any other
    runtime (our executor, the C header) can load inputs late and store outputs early."""
    return "tflm" if _format(model) == "tflite" else "minimal"


def _format(model: str) -> str:
    """A zoo name's format, or a path's suffix ("onnx", "tflite"; "" for generated graphs)."""
    from planner.models.zoo import ZOO

    return ZOO[model].format if model in ZOO else Path(model).suffix.lower().lstrip(".")


# -- solving for a target ---------------------------------------------------------------------------
def solve_for_target(solver: str, graph: Graph, target: Target, options):
    """`solver`'s plan of `graph` for `target`, the way the CLI asks for it.

    On a target without an LLB (``llb_bytes == 0``) nothing can be spilled, so the solver
    plans without a budget (its no-spill plan: the smallest arena it finds) and the plan is
    held against the budget here; "does not fit" then says that nothing could be spilled,
    never "even with spilling". Where weights are loaded into L1, "does not fit" says how
    much of the named minimum is weights (still a DoesNotFit: `plan_split` then plans the
    split graph when only it fits). Raises DoesNotFit (exit 1) or CliError."""
    from planner.simulate import finalize
    from planner.solvers.base import DoesNotFit
    from planner.solvers.registry import SOLVERS, UnknownSolver, get_solver

    try:
        solve = get_solver(solver)
    except UnknownSolver as e:
        raise CliError(str(e)) from None
    try:
        if target.budget is None or target.can_spill:
            return solve(graph, target, options)
        if SOLVERS[solver].spills:
            raise CliError(
                f"target {target.name} has no LLB (external memory): nothing can be spilled, so the spill solver "
                f"{solver} has nothing to do; plan with a no-spill solver or give the target an LLB",
                1,
            )
        plan = solve(graph, target.with_budget(None), replace(options, objective="traffic"))
        if plan.metrics.arena_bytes > target.budget:
            how = f"without spilling ({target.name} has no LLB: nothing can be spilled)"
            raise DoesNotFit(target.budget, plan.metrics.arena_bytes, _lower_bound(graph, target), how=how)
        return finalize(replace(plan, target=target))
    except DoesNotFit as e:
        note = weights_note(graph, target)
        if not note:
            raise
        noted = DoesNotFit(e.budget, e.needed, e.lower_bound)
        noted.args, noted.note = (f"{e}; {note}",), note
        raise noted from None


def _lower_bound(graph: Graph, target: Target) -> int:
    from planner.bounds import working_set_bound

    return working_set_bound(graph, target)


def weights_note(graph: Graph, target: Target) -> str:
    """Where weights are loaded into L1 (``--weights load``): how much of the smallest L1 any
    plan needs is weights, from the op that needs the most (empty when weights stay out of L1)."""
    from planner.bounds import op_need, op_tensors

    if target.weights != "load" or not graph.ops:
        return ""
    op = max(graph.ops, key=lambda o: op_need(graph, target, o.name))
    w = sum(graph.size(t) for t in op_tensors(graph, target, op.name) if graph.tensors[t].kind == "weight")
    if not w:
        return ""
    need = op_need(graph, target, op.name)
    return (
        f"weights are loaded into L1 on this target: op {op.name!r} alone needs {need} B, {w} B of them its weights "
        "(--weights in_place reads weights from flash instead)"
    )


def check_writable(path: str | None, what: str) -> None:
    """Refuse, before any work, an output path that cannot be written: a directory, or a file
    in a folder that does not exist."""
    if not path:
        return
    p = Path(path)
    if p.is_dir():
        raise CliError(f"cannot write {what} {path}: it is a directory")
    if not p.parent.is_dir():
        raise CliError(f"cannot write {what} {path}: folder {p.parent} does not exist")
