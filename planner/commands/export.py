"""`planner export PLAN --format json|c|tflite|onnx [--model MODEL] -o OUT`: a thin shell
over the exporter registry (`planner.export.EXPORTERS`)."""

from __future__ import annotations

import sys
from pathlib import Path

from planner.commands.common import CliError, check_writable, model_path, note
from planner.export import EXPORTERS, CannotExport, export, options
from planner.plan import PlanFormatError
from planner.simulate import MetricsMismatch, PlanError, read_checked_plan


def register(sub) -> None:
    """Add `planner export` to the subcommands."""
    p = sub.add_parser(
        "export",
        help="write a plan as JSON, a C header, into a .tflite (TFLite Micro offline memory plan), or the "
        "ONNX model it was made for (split or fused as planned)",
    )
    p.add_argument("plan", help="plan file (planner.plan v1 JSON)")
    p.add_argument("--format", "-f", choices=list(EXPORTERS), default="json", help="output format (default json)")
    p.add_argument(
        "--model",
        help="the original model (path or zoo name) the plan was made for: a .tflite for --format tflite "
        "(needed), an .onnx for --format onnx (default: the model the plan file records)",
    )
    p.add_argument(
        "-o", "--output", required=True, help="output file; `-o -` writes it to stdout (the summary line to stderr)"
    )
    p.add_argument("--no-names", action="store_true", help="C header: leave out the tensor/op name tables")
    p.add_argument(
        "--fold-fp16",
        action="store_true",
        help="TFLite: fold float16 weights behind DEQUANTIZE into float32 weights, so that TFLite Micro "
        "(which cannot dequantize float16) runs the model; outputs are unchanged",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    """Read a plan file, replay it (refusing an invalid plan or one whose metrics are not the
    replay's) and write it in the asked format (the exporter checks it once more)."""
    try:
        plan = read_checked_plan(args.plan)
    except (PlanFormatError, MetricsMismatch) as e:
        raise CliError(f"refusing to export: {e}", 2) from None
    except PlanError as e:
        raise CliError(f"refusing to export an invalid plan: {e}", 2) from None
    to_stdout = args.output == "-"
    check_writable(None if to_stdout else args.output, "output")
    opts = _options(args, options(args.format), plan)
    try:
        if to_stdout:
            out, rep = Path("-"), _export_to_stdout(plan, args.format, opts)
        else:
            out = Path(args.output)
            rep = export(plan, args.format, out, **opts)
    except CannotExport as e:
        raise CliError(str(e), 2) from None
    except PlanError as e:
        raise CliError(f"refusing to export an invalid plan: {e}", 2) from None
    except OSError as e:
        raise CliError(f"cannot write {out}: {e.strerror}", 2) from None
    for w in getattr(rep.details, "warnings", None) or []:
        note(f"warning: {w}")
    print(f"wrote {'stdout' if to_stdout else out} ({rep.summary})", file=sys.stderr if to_stdout else sys.stdout)
    return 0


def _export_to_stdout(plan, fmt: str, opts: dict):
    """Export into a temporary file and copy its bytes to stdout (`-o -`: every exporter
    writes a path; a .tflite is binary, so the bytes go to stdout's buffer unchanged)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="planner-export-") as tmp:
        path = Path(tmp) / f"out.{fmt}"
        rep = export(plan, fmt, path, **opts)
        data = path.read_bytes()
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    return rep


def _options(args, takes: dict[str, bool], plan=None) -> dict:
    """The flags the chosen exporter takes, as its options."""
    opts: dict = {}
    if "names" in takes:
        opts["names"] = not args.no_names
    if "model" in takes:
        opts["model"] = _onnx_model(args, plan) if args.format == "onnx" else _original_model(args)
    if "fold_fp16" in takes:
        opts["fold_fp16"] = args.fold_fp16
    elif args.fold_fp16:
        raise CliError(f"--fold-fp16 is for --format tflite, not {args.format}", 2)
    if args.model and "model" not in takes:
        raise CliError(f"--model is for --format tflite and onnx, not {args.format}", 2)
    return opts


def _onnx_model(args, plan) -> Path:
    """--model, or the model the plan file records (`planner run`'s lookup), as a path: the
    .onnx the plan was made for (a TFLite plan is refused with one line)."""
    from planner.commands.run import find_model
    from planner.models.zoo import ZooError

    name = args.model or find_model(plan, args.plan)
    try:
        model = model_path(name)
    except ZooError as e:
        raise CliError(str(e), 2) from None
    if model.suffix.lower() != ".onnx":
        raise CliError(
            f"--format onnx writes the ONNX model of an ONNX plan; {model.name} is not an .onnx "
            "(a TFLite plan exports with --format tflite --model MODEL.tflite)",
            2,
        )
    return model


def _original_model(args) -> Path:
    """--model as a path (a zoo name or a file): the .tflite the plan was made for."""
    if not args.model:
        raise CliError(f"--format {args.format} needs --model ORIGINAL.tflite (the model the plan was made for)", 2)
    from planner.models.zoo import ZooError

    try:
        model = model_path(args.model)  # a zoo name or a path
    except ZooError as e:
        raise CliError(str(e), 2) from None
    if model.suffix.lower() != ".tflite":
        raise CliError(f"--model {args.model}: expected a .tflite file or a TFLite zoo name", 2)
    return model
