"""Argument handling shared by subcommands: model loading, targets, solver options."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from planner.graph import Graph
from planner.models.fuse import FUSE_METHODS
from planner.solvers.base import OBJECTIVES
from planner.target import (
    DEFAULT_TARGET,
    LIFETIMES,
    SHARE_LEVELS,
    WEIGHT_PLACEMENTS,
    Target,
    TargetError,
    get_target,
)

DEFAULT_MODEL = "resnet8"


class CliError(Exception):
    """A user-facing failure: `code` is the exit status, the message is printed as is."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


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
    add_fuse_arg(p)


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


def add_target_args(p: argparse.ArgumentParser) -> None:
    """--target and the overrides of its budget, weights, alignment and lifetimes."""
    p.add_argument(
        "--target",
        help=f"board preset (see `planner solvers --targets`); default {DEFAULT_TARGET} "
        "for the bundled model, otherwise unbounded",
    )
    p.add_argument("--budget", help="L1 budget, e.g. 256KiB, 1.5MB, 262144 (overrides the preset's)")
    p.add_argument("--weights", choices=WEIGHT_PLACEMENTS, help="weight placement (overrides the preset's)")
    p.add_argument("--alignment", type=int, help="offset alignment in bytes (default 16)")
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


def add_solver_args(p: argparse.ArgumentParser) -> None:
    """The options every solver takes (SolveOptions' common part)."""
    p.add_argument("--time-limit", type=float, default=30.0, help="seconds for exact solvers (default 30)")
    p.add_argument("--workers", type=int, default=2, help="CP-SAT worker threads (default 2)")
    p.add_argument("--seed", type=int, default=0, help="random seed (results are deterministic per seed+workers)")
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
            raise CliError(f"bad --input-shape {s!r}: use NAME=1x3x224x224") from None
        if not name or any(d <= 0 for d in shapes[name]):
            raise CliError(f"bad --input-shape {s!r}: use NAME=1x3x224x224 with positive sizes")
    dims_: dict[str, int] = {}
    for s in args.dim:
        name, _, v = s.rpartition("=")
        if not name or not v.isdigit() or int(v) <= 0:
            raise CliError(f"bad --dim {s!r}: use NAME=1")
        dims_[name] = int(v)
    return shapes, dims_


def load_graph(args: argparse.Namespace, target: Target | None = None) -> Graph:
    """The graph named by args.model (a path or a zoo name; default the bundled model),
    fused as --fuse says (a fusion that fell back says why on stderr, see `fusion_note`);
    `--fuse auto` plans whichever of the fused and the written graph the heuristics plan
    smaller for `target` (solvers/transforms.py)."""
    from planner.models.zoo import load_model

    shapes, dims = parse_pins(args)
    model = args.model or DEFAULT_MODEL
    fuse = getattr(args, "fuse", None) or default_fuse(model)
    kw = {"input_shapes": shapes or None, "dims": dims or None}
    if fuse == "auto":
        from planner.solvers.transforms import choose_graph

        fused = load_model(model, **kw, fuse="onnxruntime")
        graphs = [fused] if fusion_note(fused) else [fused, load_model(model, **kw)]
        graph = choose_graph(graphs, target or make_target(args))
    else:
        graph = load_model(model, **kw, fuse=fuse)
    note = fusion_note(graph)
    if note:
        print(f"note: {note}", file=sys.stderr)
    return graph


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
    name = args.target or (DEFAULT_TARGET if not getattr(args, "model", None) else "unbounded")
    try:
        target = get_target(name, args.budget, args.weights, args.alignment)
    except TargetError as e:
        raise CliError(str(e)) from None
    lifetimes = getattr(args, "lifetimes", None) or default_lifetimes(getattr(args, "model", None) or DEFAULT_MODEL)
    return replace(target, lifetimes=lifetimes, share=getattr(args, "share", "all"))


def default_lifetimes(model: str) -> str:
    """TFLite models run under TFLite Micro, whose arena needs its own lifetimes; any other
    runtime (our executor, the C header) can load inputs late and store outputs early."""
    return "tflm" if _format(model) == "tflite" else "minimal"


def _format(model: str) -> str:
    """A zoo name's format, or a path's suffix ("onnx", "tflite"; "" for generated graphs)."""
    from planner.models.zoo import ZOO

    return ZOO[model].format if model in ZOO else Path(model).suffix.lower().lstrip(".")
