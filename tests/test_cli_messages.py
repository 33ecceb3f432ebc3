"""User-facing CLI messages: TFLM's reason for failing, whole statuses in `compare`, per-budget
"vs best", plans run against the wrong model, and a stdout closed by `| head`."""

import json
import subprocess
import sys

import onnx
import pytest
from onnx import TensorProto, helper

from planner.cli import main

# --- F4: TFLM's own diagnostic, not the Python traceback of the child -----------------------

TRACEBACK = """Traceback (most recent call last):
  File "<frozen runpy>", line 198, in _run_module_as_main
  File "/work/main/planner/tflm_runtime.py", line 110, in _worker
    interp = runtime.Interpreter.from_file(model, arena_size=arena_size)
             ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/site-packages/tflite_micro/python/tflite_micro/runtime.py", line 123, in __init__
    self._interpreter = _runtime.InterpreterWrapper(
                        ^^^^^^^^^^^^^^^^^^^^^^^^^^^^
RuntimeError: TFLM failed to allocate tensors
"""

DENSIFY = (
    "Didn't find op for builtin opcode 'DENSIFY'\n"
    "Failed to get registration from op code DENSIFY\n"
    " \n"
    "Didn't find op for builtin opcode 'DENSIFY'\n"
    "Failed to get registration from op code DENSIFY\n" + TRACEBACK
)
DEQUANTIZE = (
    "tensorflow/lite/micro/kernels/dequantize_common.cc:42 input->type == kTfLiteInt8 || "
    "input->type == kTfLiteInt16 || input->type == kTfLiteUInt8 was not true.\n"
    "Node DEQUANTIZE (number 0) failed to prepare with status 1\n" + TRACEBACK
)


def test_tflm_diagnostic_keeps_tflms_reason_and_drops_the_traceback():
    from planner.tflm_runtime import tflm_diagnostic

    d = tflm_diagnostic(DENSIFY)
    assert d == "Didn't find op for builtin opcode 'DENSIFY'; Failed to get registration from op code DENSIFY"
    assert tflm_diagnostic("Failed to get registration from op code CUSTOM\n \n" + TRACEBACK) == (
        "Failed to get registration from op code CUSTOM"
    )
    d = tflm_diagnostic(DEQUANTIZE)
    assert d.startswith("Node DEQUANTIZE (number 0) failed to prepare")  # the op line first
    assert "dequantize_common.cc:42" in d and "tensorflow/lite" not in d
    for text in (DENSIFY, DEQUANTIZE, "x" * 500 + "\n" + TRACEBACK):
        d = tflm_diagnostic(text)
        assert "\n" not in d and len(d) <= 200 and "Traceback" not in d and "File " not in d
    # nothing from TFLM: the exception line is all there is
    assert tflm_diagnostic(TRACEBACK) == "RuntimeError: TFLM failed to allocate tensors"


def test_tflm_error_carries_the_diagnostic(tmp_path, monkeypatch):
    from planner import tflm_runtime

    model = tmp_path / "m.tflite"
    model.write_bytes(b"not really a model")

    def fake_run(cmd, **kw):
        return subprocess.CompletedProcess(cmd, 1, "", DENSIFY)

    monkeypatch.setattr(tflm_runtime.subprocess, "run", fake_run)
    with pytest.raises(tflm_runtime.TflmError) as e:
        tflm_runtime.tflm_arena_head(model)
    msg = str(e.value)
    assert msg.startswith("TFLM failed on m.tflite (exit 1): ")
    assert "builtin opcode 'DENSIFY'" in msg and "allocate tensors" not in msg


def _compare_json(capsys, *args):
    assert main(["compare", *args, "--quiet", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_compare_keeps_whole_skip_reasons(capsys, tmp_path):
    """cpsat-joint refuses 80 ops: the number and the hint survive in JSON, CSV and the table."""
    csv_path = tmp_path / "c.csv"
    d = _compare_json(capsys, "sp:80:0", "--solvers", "greedy,cpsat-joint", "--csv", str(csv_path))
    status = next(r["status"] for r in d["rows"] if r["solver"] == "cpsat-joint")
    assert status.startswith("skipped: ") and "max_ops=60" in status and status.endswith("instead")
    assert "max_ops=60; use cpsat-order" in csv_path.read_text()
    assert main(["compare", "sp:80:0", "--solvers", "greedy,cpsat-joint", "--quiet"]) == 0
    out = capsys.readouterr().out
    note = next(line for line in out.splitlines() if "max_ops=60" in line)
    assert note.startswith("[1] cpsat-joint: ") and note.rstrip().endswith("instead")


def test_compare_keeps_the_whole_tflm_reason(capsys, monkeypatch):
    from planner import tflm_runtime
    from planner.models.zoo import ZooError, locate

    try:
        locate("sine_float")
    except ZooError:
        pytest.skip("sine_float (tflite-micro wheel) not installed")
    reason = "TFLM failed on sine_float.tflite (exit 1): Didn't find op for builtin opcode 'DENSIFY'"

    def fail(*a, **k):
        raise tflm_runtime.TflmError(reason)

    monkeypatch.setattr(tflm_runtime, "tflm_arena_head", fail)
    d = _compare_json(capsys, "sine_float", "--solvers", "greedy")
    assert d["rows"][-1]["status"] == f"unavailable: {reason}"
    assert main(["compare", "sine_float", "--solvers", "greedy", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "unavailable [1]" in out
    assert f"[1] TFLM (as shipped): {reason}" in out


# --- F5: "vs best" is per budget -------------------------------------------------------------


def test_compare_vs_best_is_per_budget(capsys):
    d = _compare_json(capsys, "sp:50:0", "--budgets", "14KiB,24KiB", "--solvers", "spill-belady,greedy")
    by_budget: dict[int, list[dict]] = {}
    for r in d["rows"]:
        by_budget.setdefault(r["budget_bytes"], []).append(r)
    assert len(by_budget) == 2
    for rows in by_budget.values():
        ok = [r for r in rows if r["arena_bytes"]]
        assert ok, rows
        best = min(r["arena_bytes"] for r in ok)
        for r in ok:
            assert r["vs_best"] == round(r["arena_bytes"] / best, 4)
        assert min(r["vs_best"] for r in ok) == 1.0


# --- F6: a plan for another model ------------------------------------------------------------


def _relu_model(path, n):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])
    onnx.save(helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])), path)
    return str(path)


def test_run_refuses_a_plan_made_for_another_model(tmp_path, capsys):
    a, b = _relu_model(tmp_path / "a.onnx", 4), _relu_model(tmp_path / "b.onnx", 8)
    plan = tmp_path / "a.plan.json"
    assert main(["plan", a, "--solver", "greedy", "--quiet", "-o", str(plan)]) == 0
    capsys.readouterr()
    assert main(["run", b, str(plan)]) == 2
    err = capsys.readouterr().err
    assert "different model" in err and "b.onnx" in err and "--input-shape" not in err
    # a plan without the model's sha256: the shape conflict names the plan, not a flag
    d = json.loads(plan.read_text())
    d["model"]["sha256"] = ""
    (tmp_path / "nosha.json").write_text(json.dumps(d))
    assert main(["run", b, str(tmp_path / "nosha.json")]) == 2
    err = capsys.readouterr().err
    assert "fixed at 8" in err and "nosha.json" in err and "--input-shape" not in err
    # the model it was made for still runs
    assert main(["run", a, str(plan)]) == 0


# --- F7: `planner ... | head` ----------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["plan", "--solver", "greedy", "--json", "--quiet"],  # json.dump to stdout
        ["solvers"],  # a rich table
    ],
)
def test_closed_stdout_exits_quietly(args, tmp_path):
    if args[0] == "plan":
        args = [*args, "-o", str(tmp_path / "p.json")]
    p = subprocess.Popen(
        [sys.executable, "-m", "planner", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    p.stdout.close()  # the reader is gone before the planner writes anything
    err = p.stderr.read()
    p.stderr.close()
    assert p.wait(timeout=120) == 0, err
    assert err == ""


# --- importers: one line for a format nobody registered, and for pins TFLite cannot take ----


def test_model_format_messages(tmp_path, capsys):
    assert main(["plan", str(tmp_path / "net.pb")]) == 2
    assert capsys.readouterr().err == "planner: error: net.pb: unknown model format '.pb'; expected .onnx or .tflite\n"
    from planner.models.zoo import is_available

    if not is_available("sine_float"):
        pytest.skip("sine_float (tflite-micro wheel) not installed")
    for flag in (["--input-shape", "x=1x1"], ["--dim", "batch=1"]):
        assert main(["plan", "sine_float", *flag]) == 2
        assert capsys.readouterr().err == (
            "planner: error: sine_float.tflite: the TFLite importer takes no --input-shape / --dim "
            "(TFLite shapes are static)\n"
        )
