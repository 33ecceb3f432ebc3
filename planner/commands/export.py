"""`planner export PLAN --format json|c|tflite [--model in.tflite] -o OUT`."""

from __future__ import annotations

from pathlib import Path

from planner.commands.common import CliError
from planner.plan import PlanFormatError, read_plan
from planner.simulate import PlanError

FORMATS = ("json", "c", "tflite")


def register(sub) -> None:
    p = sub.add_parser(
        "export",
        help="write a plan as JSON, a C header, or into a .tflite (TFLite Micro offline memory plan)",
    )
    p.add_argument("plan", help="plan file (planner.plan v1 JSON)")
    p.add_argument("--format", "-f", choices=FORMATS, default="json", help="output format (default json)")
    p.add_argument(
        "--model", help="the original .tflite (path or zoo name) the plan was made for (needed for --format tflite)"
    )
    p.add_argument("-o", "--output", required=True, help="output file")
    p.add_argument("--no-names", action="store_true", help="C header: leave out the tensor/op name tables")
    p.set_defaults(func=run)


def run(args) -> int:
    try:
        plan = read_plan(args.plan)
    except PlanFormatError as e:
        raise CliError(str(e), 2) from None
    out = Path(args.output)
    try:
        if args.format == "json":
            from planner.export.json import export_json

            export_json(plan, out)
            print(f"wrote {out} (plan file, arena {plan.metrics.arena_bytes} B)")
        elif args.format == "c":
            from planner.export.c_header import export_c_header

            out.write_text(export_c_header(plan, names=not args.no_names))
            print(f"wrote {out} (C header, {len(plan.stages)} steps, arena {plan.metrics.arena_bytes} B)")
        else:
            if not args.model:
                raise CliError("--format tflite needs --model ORIGINAL.tflite (the model the plan was made for)", 2)
            from planner.commands.common import model_path
            from planner.models.zoo import ZooError

            try:
                model = model_path(args.model)  # a zoo name or a path
            except ZooError as e:
                raise CliError(str(e), 2) from None
            if model.suffix.lower() != ".tflite":
                raise CliError(f"--model {args.model}: expected a .tflite file or a TFLite zoo name", 2)
            from planner.export.tflm import ExportError, export_tflite
            from planner.models.errors import ModelError

            try:
                rep = export_tflite(plan, model, out)
            except (ExportError, ModelError) as e:
                raise CliError(f"cannot export to TFLite: {e}", 2) from None
            extra = f", {len(rep.demoted)} given back to TFLM" if rep.demoted else ""
            print(
                f"wrote {out} (op order + OfflineMemoryAllocation: {rep.planned} tensors planned, "
                f"arena {rep.arena_bytes} B{extra})"
            )
    except PlanError as e:
        raise CliError(f"refusing to export an invalid plan: {e}", 2) from None
    except OSError as e:
        raise CliError(f"cannot write {out}: {e.strerror}", 2) from None
    return 0
