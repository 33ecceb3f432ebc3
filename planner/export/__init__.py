"""The one seam between a plan and the files handed to runtimes: exporters by format name.

Every exporter has the same signature::

    write(plan, out, **opts) -> ExportReport

It checks the plan with the simulator first (an invalid plan raises
:class:`planner.simulate.PlanError`; nothing is written), writes `out` (an ``OSError``
passes through), and says what it wrote in an :class:`ExportReport`. A plan that is
valid but cannot be expressed in the format (a TFLite model it was not made for, spills
TFLite Micro cannot run) raises :class:`CannotExport` with one line. Options are
keyword-only parameters of the exporter (:func:`options` lists them).

Adding a format is one adapter function and one line in :data:`EXPORTERS`. The format
modules are imported on first use, so ``import planner.export`` stays cheap.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from planner.plan import Plan

__all__ = ["EXPORTERS", "CannotExport", "ExportReport", "export", "get_exporter", "options"]


class CannotExport(ValueError):
    """The plan is valid but this format cannot hold it, or the format's inputs are wrong (one line)."""


@dataclass(frozen=True)
class ExportReport:
    """What an exporter wrote, so callers can report it without knowing the format.

    `summary` is one line for people (``"C header, 9 steps, arena 128 B"``); `numbers`
    are the format's own figures (e.g. ``arena_bytes``, ``steps``, ``planned``); `details`
    is the format's own report object when it has one (the TFLite exporter's).
    """

    path: Path
    format: str
    summary: str
    numbers: Mapping[str, int] = field(default_factory=dict)
    details: object = field(default=None, repr=False, compare=False)


def _json(plan: Plan, out: str | os.PathLike) -> ExportReport:
    from planner.export.json import export_json

    export_json(plan, out)
    arena = plan.metrics.arena_bytes
    return ExportReport(Path(out), "json", f"plan file, arena {arena} B", {"arena_bytes": arena})


def _c_header(plan: Plan, out: str | os.PathLike, *, names: bool = True, prefix: str | None = None) -> ExportReport:
    from planner.export.c_header import export_c_header

    text = export_c_header(plan, names=names, prefix=prefix)
    Path(out).write_text(text)
    steps, arena = len(plan.stages), plan.metrics.arena_bytes
    summary = f"C header, {steps} steps, arena {arena} B"
    return ExportReport(Path(out), "c", summary, {"steps": steps, "arena_bytes": arena})


def _tflite(plan: Plan, out: str | os.PathLike, *, model: str | os.PathLike, fold_fp16: bool = False) -> ExportReport:
    from planner.export.tflm import ExportError, export_tflite
    from planner.models.errors import ModelError

    try:
        rep = export_tflite(plan, model, out, fold_fp16=fold_fp16)
    except (ExportError, ModelError) as e:
        raise CannotExport(f"cannot export to TFLite: {e}") from e
    extra = f", {len(rep.demoted)} given back to TFLM" if rep.demoted else ""
    extra += f", {rep.folded} float16 weights folded to float32" if rep.folded else ""
    summary = f"op order + OfflineMemoryAllocation: {rep.planned} tensors planned, arena {rep.arena_bytes} B{extra}"
    numbers = {
        "planned": rep.planned,
        "online": rep.online,
        "arena_bytes": rep.arena_bytes,
        "demoted": len(rep.demoted),
    }
    return ExportReport(Path(out), "tflite", summary, numbers, rep)


def _onnx(plan: Plan, out: str | os.PathLike, *, model: str | os.PathLike) -> ExportReport:
    from planner.export.onnx import OnnxExportError, export_onnx

    try:
        rep = export_onnx(plan, model, out)
    except OnnxExportError as e:
        raise CannotExport(f"cannot export to ONNX: {e}") from e
    what = {"split": "the split model", "fused": "onnxruntime's fused model", "original": "the model as written"}
    summary = f"{what[rep.kind]}, {rep.nodes} nodes (the graph the plan was made for)"
    return ExportReport(Path(out), "onnx", summary, {"nodes": rep.nodes}, rep)


Exporter = Callable[..., ExportReport]

# format name -> exporter(plan, out, **opts); the CLI's --format choices, in this order
EXPORTERS: dict[str, Exporter] = {
    "json": _json,  # the planner.plan v1 file (DESIGN §4)
    "c": _c_header,  # a C99 header for a bare-metal runtime; opts: names, prefix
    "tflite": _tflite,  # op order + OfflineMemoryAllocation in the original .tflite; opts: model (required), fold_fp16
    "onnx": _onnx,  # the ONNX model the plan was made for (split, fused or as written); opts: model (required)
}


def get_exporter(fmt: str) -> Exporter:
    """The exporter registered as `fmt`; :class:`CannotExport` naming the known formats otherwise."""
    try:
        return EXPORTERS[fmt]
    except KeyError:
        raise CannotExport(f"unknown export format {fmt!r}; known: {', '.join(EXPORTERS)}") from None


def options(fmt: str) -> dict[str, bool]:
    """The options `fmt`'s exporter takes: name -> whether it is required."""
    params = inspect.signature(get_exporter(fmt)).parameters.values()
    return {p.name: p.default is inspect.Parameter.empty for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def export(plan: Plan, fmt: str, out: str | os.PathLike, **opts) -> ExportReport:
    """Write `plan` to `out` in format `fmt` (see the module docstring for what it raises).

    An option the exporter does not take, or a required one missing, is a
    :class:`CannotExport` naming the options it takes.
    """
    write = get_exporter(fmt)
    takes = options(fmt)
    unknown = [k for k in opts if k not in takes]
    missing = [k for k, required in takes.items() if required and k not in opts]
    if unknown or missing:
        what = f"takes no option {unknown[0]!r}" if unknown else f"needs the option {missing[0]!r}"
        known = ", ".join(takes) or "none"
        raise CannotExport(f"the {fmt} exporter {what} (options: {known})")
    return write(plan, out, **opts)
