"""`planner run` for TFLite: the plan exported into the model, run by an unchanged TFLite
Micro next to the original model, on the same inputs over several invocations.

TFLM is the runtime such plans are for, and it does not check an offline plan (overlaps
silently corrupt outputs), so the proof is the same as for ONNX: identical outputs, and an
arena head no larger than the plan's arena. Streaming models keep state between
invocations (resource variables), so every invocation's outputs are compared.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from planner.plan import Plan


@dataclass
class TflmCheck:
    """What running an exported plan in TFLite Micro showed, next to the original model."""

    model: str
    invocations: int
    outputs_equal: bool
    first_difference: str  # "" when equal
    planned_arena_bytes: int
    tflm_arena_bytes_original: int  # TFLM's own planner on the original model
    tflm_arena_bytes_planned: int  # TFLM running our exported plan
    notes: list[str] = field(default_factory=list)

    @property
    def head_within_plan(self) -> bool:
        """TFLM rounds its arena head up to 16 bytes; past that it must not exceed the plan."""
        return self.tflm_arena_bytes_planned <= -(-self.planned_arena_bytes // 16) * 16

    @property
    def ok(self) -> bool:
        """Identical outputs and TFLM's arena head within the plan."""
        return self.outputs_equal and self.head_within_plan

    def to_dict(self) -> dict:
        """The check as `run --json` prints it."""
        return {**asdict(self), "head_within_plan": self.head_within_plan, "ok": self.ok}


def random_invocations(path: str | Path, n: int, seed: int) -> list[list[np.ndarray]]:
    """Inputs for `n` invocations: floats ~ N(0,1), integers uniform over their type's range."""
    from planner.models.tflite import input_specs

    rng = np.random.default_rng(seed)
    invs = []
    for _ in range(n):
        arrays = []
        for _, shape, dtype in input_specs(path):
            dt = np.dtype(dtype)
            if dt.kind == "f":
                arrays.append(rng.standard_normal(shape).astype(dt))
            elif dt.kind == "b":
                arrays.append(rng.integers(0, 2, size=shape).astype(dt))
            else:
                info = np.iinfo(dt)
                lo, hi = max(info.min, -(2**31)), min(info.max, 2**31 - 1)
                arrays.append(rng.integers(lo, hi, size=shape, endpoint=True).astype(dt))
        invs.append(arrays)
    return invs


def check_in_tflm(plan: Plan, model_path: str | Path, invocations: int = 10, seed: int = 0) -> TflmCheck:
    """Export `plan` into a copy of the model and compare both in TFLM (raises ExportError for
    plans TFLM cannot express, TflmError when TFLM cannot run the model at all)."""
    from planner.export.tflm import export_tflite
    from planner.tflm_runtime import arena_estimate, tflm_run_full

    path = Path(model_path)
    invs = random_invocations(path, invocations, seed)
    with tempfile.TemporaryDirectory(prefix="planner-run-") as tmp:
        out = Path(tmp) / path.name
        rep = export_tflite(plan, path, out)
        ref = tflm_run_full(path, invs)  # arenas sized from the model (and the plan), grown if TFLM is short
        got = tflm_run_full(out, invs, arena_size=arena_estimate(out, plan.metrics.arena_bytes))
    diff = ""
    for k, (a, b) in enumerate(zip(ref.outputs, got.outputs, strict=True)):
        for j, (x, y) in enumerate(zip(a, b, strict=True)):
            if not np.array_equal(x, y):
                diff = diff or f"invocation {k}, output {j}"
    notes = [f"{len(rep.demoted)} tensor(s) given back to TFLM's own planner"] if rep.demoted else []
    return TflmCheck(
        path.name, len(invs), not diff, diff, plan.metrics.arena_bytes, ref.arena_head, got.arena_head, notes
    )
