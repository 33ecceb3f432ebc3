"""Run a .tflite in TensorFlow Lite Micro (the `tflite-micro` wheel) in a child process.

Why a child process: TFLM's `print_allocations()` writes the arena report with C-level
`fprintf(stderr)`, which Python cannot redirect in-process, and a crashing interpreter (a
bad model, a too-small arena) must not take the planner down with it. The child is this
module run as `python -m planner.tflm_runtime`; inputs and outputs travel as `.npz` files.
The arena is sized from the model (`arena_estimate`) and grown when TFLM reports it short.

`tflm_arena_head(path)` is the number an offline plan competes with: the non-persistent
"head" section of the arena that TFLM's GreedyMemoryPlanner (or our offline plan) laid out.
`tflm_run(path, invocations)` runs several `invoke()`s on the same interpreter, so stateful
(streaming) models are exercised across calls. `set_input` is called before EVERY invoke:
TFLM reuses the input buffer once the input is dead, so a second invoke without a fresh
`set_input` computes garbage.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HEAD_RE = re.compile(r"Arena allocation head (\d+) bytes")
TAIL_RE = re.compile(r"Arena allocation tail (\d+) bytes")
MISSING_RE = re.compile(r"Failed to resize buffer\. Requested: \d+, available \d+, missing: (\d+)")
INSTALL = "pip install --no-deps tflite-micro"
DEFAULT_ARENA = 8 * 1024 * 1024  # the smallest arena given: enough for every small model's scratch buffers
ARENA_RETRIES = 4  # times the arena grows by what TFLM says is missing
MAX_ARENA = (1 << 31) - 1  # the wrapper's arena size is a C int


DIAGNOSTIC_CHARS = 200  # a TflmError's reason stays one readable line
_KEY_RE = re.compile(r"\bops?\b|opcode|registration|prepare|allocat", re.IGNORECASE)
_SRC_DIR_RE = re.compile(r"^(?:[\w.-]+/)+(?=[\w.-]+\.(?:cc|cpp|c|h):\d+)")  # tensorflow/lite/micro/kernels/


class TflmError(RuntimeError):
    """TFLM could not load or run the model (the message carries TFLM's own diagnostic)."""


@dataclass
class TflmResult:
    """One TFLM run in a child process: the outputs of each invocation and the arena head."""

    outputs: list[list[np.ndarray]]  # per invocation, per model output
    arena_head: int  # bytes of the non-persistent (planned) arena section
    arena_tail: int  # bytes of the persistent section (tensor structs, variables, ...)


def available() -> bool:
    """True when the tflite-micro wheel is importable (tests skip otherwise)."""
    try:
        import tflite_micro.python.tflite_micro.runtime  # noqa: F401
    except Exception:  # noqa: BLE001 - any import failure means "not usable here"
        return False
    return True


def tflm_run_full(
    path: str | Path,
    invocations: Sequence[Sequence[np.ndarray]] = (),
    arena_size: int | None = None,
    timeout: float = 300.0,
) -> TflmResult:
    """Load `path` in TFLM, invoke once per entry of `invocations` (a list of arrays, one
    per model input, in the model's input order) and report outputs and arena sections.

    With no invocations the model is invoked once on zeros so the allocation report is
    complete, and no outputs are returned. The arena is `arena_size` bytes, by default sized
    from the model (`arena_estimate`); when TFLM reports that it is short ("Failed to resize
    buffer ... missing: N") it is grown and the run retried, so no model fails for a fixed size.
    """
    path = Path(path)
    if not path.is_file():
        raise TflmError(f"no such model file: {path}")
    size = arena_estimate(path) if arena_size is None else int(arena_size)
    for attempt in range(ARENA_RETRIES + 1):
        try:
            return _run_child(path, invocations, size, timeout)
        except _ArenaShort as e:
            if attempt == ARENA_RETRIES or size >= MAX_ARENA:
                raise TflmError(str(e)) from None
            size = min(MAX_ARENA, size + 2 * e.missing + (1 << 20))
    raise AssertionError("unreachable")  # pragma: no cover


class _ArenaShort(TflmError):
    """TFLM's arena was too small by `missing` bytes (the run may be retried with more)."""

    def __init__(self, message: str, missing: int):
        super().__init__(message)
        self.missing = missing


def arena_estimate(path: str | Path, planned: int = 0) -> int:
    """An arena large enough for TFLM to run the model: every tensor it may allocate (all
    subgraphs, each 16-byte aligned, none reused), the `planned` offline arena, a tensor
    struct's worth per tensor, and headroom; at least DEFAULT_ARENA."""
    from planner.models.tflite import TfliteModelError, read_model, tensor_bytes

    try:
        model, _ = read_model(path)
    except TfliteModelError:
        return DEFAULT_ARENA  # TFLM says what is wrong with the file
    total = n = 0
    for sg in model.subgraphs:
        for t in sg.tensors or []:
            n += 1
            try:
                total += -(-tensor_bytes(t, "") // 16) * 16
            except Exception:  # noqa: BLE001 - a type TFLM refuses: it will say so itself
                continue
    return int(min(MAX_ARENA, max(DEFAULT_ARENA, 2 * max(total, planned) + 128 * n + (1 << 20))))


def _run_child(path: Path, invocations: Sequence[Sequence[np.ndarray]], arena_size: int, timeout: float) -> TflmResult:
    """One TFLM run in a child process with an arena of `arena_size` bytes."""
    with tempfile.TemporaryDirectory(prefix="planner-tflm-") as tmp:
        inp, out = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        arrays = {}
        for k, inv in enumerate(invocations):
            for j, a in enumerate(inv):
                arrays[f"i{k}_{j}"] = np.asarray(a)
        np.savez(inp, n=np.int64(len(invocations)), **arrays)
        cmd = [sys.executable, "-m", "planner.tflm_runtime", str(path), str(inp), str(out), str(int(arena_size))]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise TflmError(f"TFLM did not finish {path.name} within {timeout:.0f} s") from e
        if proc.returncode != 0:
            why = tflm_diagnostic(proc.stderr or proc.stdout)
            msg = f"TFLM failed on {path.name} (exit {proc.returncode})" + (f": {why}" if why else "")
            short = MISSING_RE.search(proc.stderr or "")
            if short:
                raise _ArenaShort(f"{msg} (arena of {arena_size} B)", int(short.group(1)))
            raise TflmError(msg)
        head = HEAD_RE.search(proc.stderr)
        tail_m = TAIL_RE.search(proc.stderr)
        if head is None:
            raise TflmError(f"TFLM printed no arena report for {path.name}")
        with np.load(out) as z:
            n = int(z["n"])
            outputs = [[z[f"o{k}_{j}"] for j in range(int(z[f"n{k}"]))] for k in range(n)]
    return TflmResult(outputs, int(head.group(1)), int(tail_m.group(1)) if tail_m else 0)


def tflm_diagnostic(text: str, limit: int = DIAGNOSTIC_CHARS) -> str:
    """TFLM's own reason for a failure, as one line, from the child's stderr.

    The child's stderr holds TFLM's C-level messages ("Didn't find op for builtin opcode
    'DENSIFY'", "Node X (number 0) failed to prepare ...") followed by the Python traceback
    of the wrapper ("RuntimeError: TFLM failed to allocate tensors"), which says nothing
    about the cause. Traceback lines are dropped, source paths shortened to the file name,
    the rest deduplicated; lines about ops, registration, prepare or allocation come first,
    and lines are joined with "; " while they fit in `limit` characters. Only when TFLM
    printed nothing is the exception line of the traceback used.
    """
    lines: list[str] = []
    exc_lines: list[str] = []
    in_tb = False
    for raw in text.splitlines():
        line = raw.strip()
        if raw.startswith("Traceback (most recent call last):"):
            in_tb = True
            continue
        if in_tb:
            if not line or raw[:1].isspace():
                continue  # a frame, its source line, or a ^^^ marker
            in_tb = False  # the exception line closes the traceback
            exc_lines.append(line)
            continue
        if (
            not line
            or line.startswith("During handling of the above exception")
            or line.startswith("The above exception was the direct cause")
        ):
            continue
        line = _SRC_DIR_RE.sub("", line)
        if line not in lines:
            lines.append(line)
    keyed = [ln for ln in lines if _KEY_RE.search(ln)]
    ranked = (keyed + [ln for ln in lines if ln not in keyed]) if lines else exc_lines[-1:]
    out = ""
    for ln in ranked:
        more = f"{out}; {ln}" if out else ln
        if len(more) > limit:
            if not out:  # one overlong line: cut it, but say so
                out = ln[: limit - 1].rstrip() + "…"
            break
        out = more
    return out


def tflm_run(
    path: str | Path, invocations: Sequence[Sequence[np.ndarray]], arena_size: int | None = None
) -> list[list[np.ndarray]]:
    """Outputs of TFLM for each invocation (see `tflm_run_full`)."""
    return tflm_run_full(path, invocations, arena_size).outputs


def tflm_arena_head(path: str | Path, arena_size: int | None = None) -> int:
    """TFLM's arena head for the model as it is (its own plan, or our offline plan)."""
    return tflm_run_full(path, (), arena_size).arena_head


def _worker(model: str, inp: str, out: str, arena_size: int) -> int:
    """Child side: everything that touches the C++ interpreter."""
    from tflite_micro.python.tflite_micro import runtime

    interp = runtime.Interpreter.from_file(model, arena_size=arena_size)
    with np.load(inp) as z:
        n = int(z["n"])
        invs = []
        for k in range(n):
            j, inv = 0, []
            while f"i{k}_{j}" in z:
                inv.append(z[f"i{k}_{j}"])
                j += 1
            invs.append(inv)
    result: dict[str, np.ndarray] = {"n": np.int64(n)}
    if not invs:  # one run on zeros so every lazily planned buffer is in the report
        zeros, j = [], 0
        while True:
            try:
                d = interp.get_input_details(j)
            except Exception:  # noqa: BLE001 - past the last input
                break
            zeros.append(np.zeros(d["shape"], d["dtype"]))
            j += 1
        invs_run = [zeros]
    else:
        invs_run = invs
    for k, inv in enumerate(invs_run):
        for j, a in enumerate(inv):
            interp.set_input(a, j)
        interp.invoke()
        if invs:
            outs, j = [], 0
            while True:
                try:
                    outs.append(np.array(interp.get_output(j), copy=True))
                except Exception:  # noqa: BLE001 - past the last output
                    break
                j += 1
            result[f"n{k}"] = np.int64(len(outs))
            for j, o in enumerate(outs):
                result[f"o{k}_{j}"] = o
    sys.stdout.flush()
    interp.print_allocations()
    np.savez(out, **result)
    return 0


if __name__ == "__main__":  # pragma: no cover - exercised through subprocess
    if len(sys.argv) != 5:
        print("usage: python -m planner.tflm_runtime MODEL IN.npz OUT.npz ARENA_BYTES", file=sys.stderr)
        sys.exit(2)
    sys.exit(_worker(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
