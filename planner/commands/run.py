"""`planner run`: execute a plan on real tensors and compare with a reference runtime.

ONNX below; a .tflite plan is exported into the model and run by TFLite Micro next to the
original instead (planner/tflm_check.py).

The plan's stages drive one numpy arena (planner.execute); the outputs must equal
onnxruntime's on the same inputs and the measured peak / arena / traffic must equal the
plan's. Exit 0 only when both hold, 1 when not, 2 for bad input (files, shapes, a plan
made for another model, an invalid plan without --unchecked).

Tolerances: float outputs match when |ours - ref| <= atol + rtol * |ref| elementwise.
The default rtol 1e-4 is the project's agreement target; the default atol 1e-5 only
absorbs last-bit noise around zero (per-node kernels round differently from
onnxruntime's fused whole-graph run). Integer and boolean outputs must be identical.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from planner.agreement import DEFAULT_ATOL, DEFAULT_RTOL
from planner.commands.common import (
    CliError,
    add_fuse_arg,
    add_value_arg,
    finite_float,
    int_in,
    parse_pins,
    parse_values,
)
from planner.graph import ModelSource, model_sha256
from planner.plan import PlanFormatError, plan_mismatch, read_plan, source_mismatch
from planner.simulate import MetricsMismatch, PlanError, read_checked_plan
from planner.target import format_bytes

MAX_INVOCATIONS = 1000  # more invocations show nothing more, and each runs TFLM twice


def register(sub) -> None:
    """Add `planner run` to the subcommands."""
    p = sub.add_parser(
        "run",
        help="execute a plan and check its outputs: ONNX in a numpy arena vs onnxruntime, TFLite in TFLite Micro vs the original model",
    )
    p.add_argument(
        "model",
        nargs="?",
        help="ONNX/TFLite file or zoo name the plan was made for (default: the model the plan file records, "
        "a zoo name or a path whose sha256 matches)",
    )
    p.add_argument("plan", help="plan file (planner.plan JSON)")
    p.add_argument(
        "--inputs", metavar="FILE.npz", help="input values (one array per graph input name); default: random by --seed"
    )
    p.add_argument(
        "--seed",
        type=int_in(0, 2**32 - 1),
        default=0,
        help="seed for random inputs: floats ~ N(0,1), ints in [0,4), bools (default 0)",
    )
    p.add_argument(
        "--rtol", type=finite_float(), default=DEFAULT_RTOL, help=f"relative tolerance (default {DEFAULT_RTOL:g})"
    )
    p.add_argument(
        "--atol",
        type=finite_float(),
        default=DEFAULT_ATOL,
        help=f"absolute tolerance for values near zero (default {DEFAULT_ATOL:g})",
    )
    p.add_argument(
        "--input-shape",
        action="append",
        default=[],
        metavar="NAME=1x3x224x224",
        help="pin a graph input's shape (repeatable; default: the shapes recorded in the plan)",
    )
    p.add_argument("--dim", action="append", default=[], metavar="N=1", help="pin a symbolic dimension (repeatable)")
    add_value_arg(p)
    add_fuse_arg(p, "default: as the plan file records (its transforms), so a fused plan runs on the fused graph")
    p.add_argument(
        "--unchecked",
        action="store_true",
        help="run even if the simulator rejects the plan (to watch a bad plan corrupt outputs)",
    )
    p.add_argument(
        "--invocations",
        type=int_in(1, MAX_INVOCATIONS),
        default=10,
        help=f"TFLite: invocations of TFLM on random inputs, 1..{MAX_INVOCATIONS} (default 10)",
    )
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.set_defaults(func=run)


def _load_inputs(path: str) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` (or ``.npy``: one array) file, or one line saying why not."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if isinstance(z, np.ndarray):
                raise ValueError("it holds one array without a name; save one array per input with np.savez")
            return {k: np.asarray(z[k]) for k in z.files}
    except OSError as e:
        raise CliError(f"cannot read inputs {path}: {e.strerror or e}") from None
    except Exception as e:  # noqa: BLE001 - zipfile.BadZipFile, EOFError, pickled objects, ...
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CliError(f"cannot read inputs {path}: not a valid .npz file ({why})") from None


def _read_plan(args):
    """The plan file, replayed and compared with its metrics (refused with one line when it
    breaks a rule or states other metrics), or with --unchecked only read."""
    try:
        return read_plan(args.plan) if args.unchecked else read_checked_plan(args.plan)
    except (PlanFormatError, MetricsMismatch) as e:
        raise CliError(str(e)) from None
    except PlanError as e:
        raise CliError(f"invalid plan {args.plan} (run it anyway with --unchecked): {e}") from None


def _model_path(name: str) -> Path:
    from planner.models.zoo import ZOO, locate

    if name in ZOO and not Path(name).is_file():
        return locate(name)
    p = Path(name)
    if not p.is_file():
        raise CliError(f"model {name!r} is neither a file nor a zoo model ({', '.join(ZOO)})")
    if p.suffix.lower() not in (".onnx", ".tflite"):
        raise CliError(f"{p.name}: `planner run` executes .onnx models (numpy arena) and .tflite models (TFLM)")
    return p


def find_model(plan, plan_path: str) -> str:
    """The model a plan file names, for `planner run PLAN`: its recorded ``model.path`` (a zoo
    name, or a path as given, tried from here and from the plan's folder), else a zoo model
    whose file has the plan's model name; only one whose sha256 is the plan's. One line
    (exit 2) naming what was looked for when none is found."""
    from planner.models.zoo import ZOO, ZooError, locate

    given, sha = plan.graph.source.given, plan.model_sha256
    looked: list[str] = []
    candidates: list[tuple[str, Path | None]] = []
    if given and given in ZOO:
        candidates.append((given, None))
    elif given:
        here = Path(given)
        candidates += [(str(p), p) for p in dict.fromkeys([here, Path(plan_path).parent / here])]
    else:
        stem = plan.graph.name
        candidates += [(n, None) for n, e in ZOO.items() if Path(e.file).stem == stem]
    for name, p in candidates:
        try:
            p = locate(name) if p is None else p
        except ZooError as e:
            looked.append(f"zoo model {name} ({e})")
            continue
        if not p.is_file():
            looked.append(f"{p} (no such file)")
        elif sha and model_sha256(p.read_bytes()) != sha:
            looked.append(f"{p} (its sha256 is not the plan's {sha[:12]}…)")
        else:
            return name
    what = "; ".join(looked) or f"a zoo model named {plan.graph.name} (none; the plan records no model path)"
    raise CliError(
        f"cannot find the model of plan {plan_path}: looked for {what}; give it: planner run MODEL {plan_path}"
    )


def _plan_fusion(plan) -> str:
    """The --fuse a plan was made with, from its ``transforms`` (none when it has none)."""
    from planner.models.fuse import fusion_of

    record = fusion_of(plan.graph)
    return record.method if record is not None and record.applied else "none"


def _fusion_hint(plan, graph, fuse: str) -> str:
    """Why a plan may not match the re-imported graph when fusion differs: another --fuse,
    or another onnxruntime version fusing differently."""
    from planner.models.fuse import fusion_of

    made = _plan_fusion(plan)
    if made != fuse:
        return f" (the plan was made with --fuse {made}, this run uses --fuse {fuse})"
    then, now = fusion_of(plan.graph), fusion_of(graph)
    if then is not None and now is not None and then.runtime and now.runtime and then.runtime != now.runtime:
        return f" (the plan was fused by onnxruntime {then.runtime}, this is onnxruntime {now.runtime})"
    return ""


def _plan_shape_conflict(vi, shape: tuple[int, ...]) -> str | None:
    """How the model's declared shape of input `vi` contradicts the shape recorded in the plan."""
    if not vi.type.HasField("tensor_type") or not vi.type.tensor_type.HasField("shape"):
        return None
    declared = vi.type.tensor_type.shape.dim
    shown = "x".join(map(str, shape)) or "scalar"
    if len(declared) != len(shape):
        return f"has rank {len(declared)} in the model, but rank {len(shape)} ({shown})"
    for ax, (d, w) in enumerate(zip(declared, shape, strict=True)):
        if d.HasField("dim_value") and d.dim_value > 0 and d.dim_value != w:
            return f"dim {ax} is fixed at {d.dim_value} in the model, but is {w} (shape {shown})"
    return None


def run(args) -> int:
    """Execute a plan (ONNX: numpy arena vs onnxruntime; TFLite: TFLM vs the original)."""
    plan = _read_plan(args)
    if args.model is None:
        args.model = find_model(plan, args.plan)
    path = _model_path(args.model)
    mismatch = source_mismatch(plan, ModelSource(path.suffix.lstrip("."), str(path), model_sha256(path.read_bytes())))
    if mismatch:
        raise CliError(f"{args.plan}: {mismatch}; plan this model with `planner plan {args.model}`")
    if path.suffix.lower() == ".tflite":
        return _run_tflite(args, plan, path)
    return _run_onnx(args, plan, path)


def _onnx_inputs(path: Path) -> tuple[list, set[str]]:
    """The model's graph inputs (ValueInfos) and the names of those that are not initializers."""
    import onnx

    try:
        g = onnx.load(str(path), load_external_data=False).graph
    except Exception as e:  # noqa: BLE001 - protobuf's errors: a corrupt file
        raise CliError(f"{path.name}: not a valid ONNX file: {str(e).strip()[:200] or type(e).__name__}") from None
    inits = {i.name for i in g.initializer}
    return list(g.input), {i.name for i in g.input if i.name not in inits}


def _pins_for_plan(args, plan, path: Path) -> dict[str, tuple[int, ...]]:
    """--input-shape over the input shapes recorded in the plan (a plan made with pinned
    shapes runs without repeating the pins); a conflict names the plan, not a flag."""
    shapes, _ = parse_pins(args)
    inputs, model_inputs = _onnx_inputs(path)
    planned = {
        n: plan.graph.tensors[n].shape
        for n in plan.graph.inputs
        if plan.graph.tensors[n].shape is not None and n in model_inputs
    }
    if set(plan.graph.inputs) - model_inputs:
        raise CliError(
            f"plan {args.plan} does not match {path.name}: the plan's inputs "
            f"{sorted(plan.graph.inputs)[:5]} are not the model's {sorted(model_inputs)[:5]}"
        )
    for vi in inputs:  # a shape taken from the plan must not be blamed on --input-shape
        if vi.name in planned and vi.name not in shapes:
            why = _plan_shape_conflict(vi, planned[vi.name])
            if why:
                raise CliError(f"{path.name}: input {vi.name!r} {why} in plan {args.plan}")
    return {**planned, **shapes}


def _run_onnx(args, plan, path: Path) -> int:
    """Import the model as the plan was made (pins, fusion), execute it in a numpy arena and
    compare with onnxruntime."""
    from planner.execute import ExecutionError, Executor, random_inputs
    from planner.models.zoo import load_model

    shapes = _pins_for_plan(args, plan, path)
    _, dims = parse_pins(args)
    fuse = args.fuse or _plan_fusion(plan)
    graph = load_model(
        args.model if not Path(args.model).is_file() else str(path),
        input_shapes=shapes or None,
        dims=dims or None,
        fuse=fuse,
        input_values=parse_values(args) or None,
    )
    graph = _split_as_planned(graph, plan)
    mismatch = plan_mismatch(plan, graph)
    if mismatch:
        hint = _fusion_hint(plan, graph, fuse)
        raise CliError(f"{args.plan}: {mismatch}{hint}; plan this model with `planner plan {args.model}`")
    check_host_memory(plan, graph)
    try:
        ex = Executor(path, graph)
        inputs = _load_inputs(args.inputs) if args.inputs else random_inputs(ex.graph, args.seed)
        report = ex.run(plan, inputs, unchecked=args.unchecked, rtol=args.rtol, atol=args.atol)
    except ExecutionError as e:
        raise CliError(str(e)) from None
    if args.json:
        d = report.to_dict()
        d["model_path"] = str(path)
        d["plan_path"] = args.plan
        json.dump(d, sys.stdout)
        sys.stdout.write("\n")
    else:
        print_report(report, Console())
    return 0 if report.ok else 1


def _split_as_planned(graph, plan):
    """The imported graph split again as the plan's ``transforms`` say (ONNX row stripes or
    channel chunks, planner/models/split_onnx.py); the graph itself when the plan has no split."""
    from planner.models.errors import ModelError
    from planner.models.split_onnx import reapply

    try:
        return reapply(graph, plan.graph)
    except ModelError as e:
        raise CliError(f"cannot split {plan.graph.name} again as the plan says: {e}") from None


def host_memory_bytes() -> int | None:
    """Physical memory of this machine (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_host_memory(plan, graph) -> None:
    """Refuse, before allocating anything, a run whose arrays cannot fit in this machine's
    memory: the arena, and the inputs, weights and outputs (each held about twice: ours and
    onnxruntime's), naming the arena and the largest tensor with their bytes."""
    ram = host_memory_bytes()
    if ram is None:
        return
    from planner.execute import arena_top

    held = [t for t in graph.tensors.values() if t.kind != "activation"]
    arena = arena_top(plan, graph)  # an --unchecked plan may place tensors above its stated arena
    need = arena + 2 * sum(t.bytes for t in held)
    if need <= ram:
        return
    big = max(held, key=lambda t: t.bytes, default=None)
    largest = f", {big.kind} {big.name!r} {format_bytes(big.bytes)} ({big.bytes} B)" if big is not None else ""
    raise CliError(
        f"running this plan needs about {format_bytes(need)} ({need} B) of host memory (the arena "
        f"{format_bytes(arena)}{largest}); this machine has {format_bytes(ram)}"
    )


def _run_tflite(args, plan, path: Path) -> int:
    """Export the plan into the model and run both in TFLM (planner/tflm_check.py)."""
    from planner.export.tflm import ExportError
    from planner.models.errors import ModelError
    from planner.tflm_check import check_in_tflm
    from planner.tflm_runtime import TflmError, available

    if args.inputs or args.input_shape or args.dim or args.input_value or args.unchecked:
        raise CliError(
            "--inputs, --input-shape, --dim, --input-value and --unchecked are for ONNX models; "
            "TFLite runs use random inputs"
        )
    if not available():
        raise CliError("running a .tflite plan needs TFLite Micro: pip install --no-deps tflite-micro")
    try:
        r = check_in_tflm(plan, path, invocations=args.invocations, seed=args.seed)
    except (ExportError, PlanError, ModelError) as e:
        raise CliError(f"cannot run this plan in TFLM: {e}") from None
    except TflmError as e:
        from planner.models.tflite import load_tflite, tflm_gaps

        gaps = tflm_gaps(load_tflite(path))
        raise CliError(f"{e}" + (f" ({gaps[0].split(': ', 1)[-1]})" if gaps else "")) from None
    if args.json:
        json.dump({**r.to_dict(), "model_path": str(path), "plan_path": args.plan}, sys.stdout)
        sys.stdout.write("\n")
        return 0 if r.ok else 1
    con = Console()
    t = Table(
        title=f"{r.model}: plan exported and run by TFLite Micro vs the original model ({r.invocations} invocations)"
    )
    for c in ("", "value", "ok"):
        t.add_column(c)
    t.add_row(
        "outputs",
        "identical" if r.outputs_equal else f"differ ({r.first_difference})",
        "[green]yes[/green]" if r.outputs_equal else "[red]NO[/red]",
    )
    t.add_row("planned arena", f"{format_bytes(r.planned_arena_bytes)} ({r.planned_arena_bytes} B)", "")
    t.add_row(
        "TFLM arena head, our plan",
        f"{format_bytes(r.tflm_arena_bytes_planned)} ({r.tflm_arena_bytes_planned} B)",
        "[green]yes[/green]" if r.head_within_plan else "[red]NO[/red]",
    )
    t.add_row(
        "TFLM arena head, its own plan",
        f"{format_bytes(r.tflm_arena_bytes_original)} ({r.tflm_arena_bytes_original} B)",
        "",
    )
    con.print(t)
    for n in r.notes:
        con.print(f"note: {n}")
    con.print(f"result: {'[green]OK[/green]' if r.ok else '[red]MISMATCH[/red]'}")
    return 0 if r.ok else 1


def print_report(r, con: Console) -> None:
    """The executor's report as two tables and a verdict line."""
    t = Table(
        title=f"{r.model}: plan by {r.solver} executed in a numpy arena vs onnxruntime "
        f"(rtol {r.rtol:g}, atol {r.atol:g})"
    )
    for c in ("output", "shape", "dtype", "max abs err", "max rel err", "match"):
        t.add_column(c, justify="right" if "err" in c else "left")
    for c in r.checks:
        t.add_row(
            c.name,
            "x".join(map(str, c.shape)) or "scalar",
            c.dtype,
            f"{c.max_abs:.3g}",
            f"{c.max_rel:.3g}",
            "[green]yes[/green]" if c.match else "[red]NO[/red]",
        )
    con.print(t)
    m = Table(title="measured vs planned")
    for c in ("", "measured", "planned", "equal"):
        m.add_column(c, justify="right" if c else "left")
    for label, a, b in (
        ("peak L1", r.peak_l1_bytes, r.planned_peak_l1_bytes),
        ("arena high-water", r.arena_touched_bytes, r.planned_arena_bytes),
        ("traffic (L+S)", r.traffic_bytes, r.planned_traffic_bytes),
    ):
        m.add_row(
            label,
            f"{format_bytes(a)} ({a} B)",
            f"{format_bytes(b)} ({b} B)",
            "[green]yes[/green]" if a == b else "[red]NO[/red]",
        )
    con.print(m)
    backends = ", ".join(f"{k} {v}" for k, v in r.backends.items())
    con.print(
        f"time: ours {r.run_s * 1e3:.1f} ms (+{r.kernel_build_s * 1e3:.0f} ms building per-op kernels: "
        f"{backends}), onnxruntime {r.ort_run_s * 1e3:.2f} ms (+{r.ort_build_s * 1e3:.0f} ms session)"
    )
    if not r.checked:
        con.print("[yellow]plan NOT checked by the simulator (--unchecked)[/yellow]")
    verdict = "[green]OK[/green]" if r.ok else "[red]MISMATCH[/red]"
    con.print(f"result: {verdict}")
