"""Issue 14, item by item: plan files re-checked wherever they enter, the C header past 2**32,
one line for every error, semantics that surprise, exit codes. (TFLite, shapes and input
values: tests/test_hardening_models.py; the generated corpus: tests/test_robustness.py.)

Each test failed before its fix; the CLI runs in-process (`planner.cli.main`)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from planner.cli import main
from planner.graph import graph_from_records
from planner.plan import Plan, SolverInfo, Stage
from planner.simulate import PlanError, finalize, simulate
from planner.target import PRESETS, Target, get_target

F = TensorProto.FLOAT
GCC = shutil.which("gcc") or shutil.which("cc")


def cli(capsys, *args) -> tuple[int, str, str]:
    """Run the CLI in-process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    """The one stderr line of a failed command (asserting that there is exactly one)."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("planner: error: "), err
    assert "Traceback" not in err
    return lines[0]


def relu_model(path: Path, shape=(1, 4), outputs=True, **kw) -> Path:
    x = helper.make_tensor_value_info("x", F, list(shape))
    y = helper.make_tensor_value_info("y", F, list(shape))
    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Relu", ["a"], ["y"])],
        "g",
        [x],
        [y] if outputs else [],
    )
    onnx.save(helper.make_model(g, **kw), str(path))
    return path


@pytest.fixture(scope="module")
def r8_plan(tmp_path_factory) -> Path:
    """A plan of the bundled ResNet-8, made once."""
    p = tmp_path_factory.mktemp("r8") / "r8.plan.json"
    assert main(["plan", "resnet8", "--solver", "greedy", "--quiet", "-o", str(p)]) == 0
    return p


def edited(tmp_path: Path, src: Path, edit, name="edited.json") -> Path:
    d = json.loads(src.read_text())
    edit(d)
    out = tmp_path / name
    out.write_text(json.dumps(d))
    return out


# -- 1. plan files re-checked wherever they enter ---------------------------------------------


def _lie(d):
    d["metrics"]["arena_bytes"] = 1


@pytest.mark.parametrize("fmt", ["json", "c"])
def test_export_refuses_metrics_that_are_not_the_replay(tmp_path, capsys, r8_plan, fmt):
    bad = edited(tmp_path, r8_plan, _lie)
    code, out, err = cli(capsys, "export", bad, "-f", fmt, "-o", tmp_path / "out")
    assert code == 2 and out == "" and not (tmp_path / "out").exists()
    assert "arena_bytes: file says 1, simulator measures" in one_line(err)


def test_run_refuses_metrics_that_are_not_the_replay(tmp_path, capsys, r8_plan):
    bad = edited(tmp_path, r8_plan, _lie)
    code, out, err = cli(capsys, "run", "resnet8", bad)
    assert code == 2 and out == ""
    assert "do not match the replay" in one_line(err)


def test_tflite_export_refuses_false_metrics(tmp_path, capsys):
    from planner.models.zoo import is_available

    if not is_available("sine_float"):
        pytest.skip("sine_float (tflite-micro wheel) not installed")
    p = tmp_path / "sine.json"
    assert main(["plan", "sine_float", "--solver", "greedy", "--quiet", "-o", str(p)]) == 0
    bad = edited(tmp_path, p, _lie)
    code, _, err = cli(capsys, "export", bad, "-f", "tflite", "--model", "sine_float", "-o", tmp_path / "o.tflite")
    assert code == 2 and "do not match the replay" in one_line(err)


def _first_r(d) -> dict:
    return next(s for s in d["stages"] if s["stage"] == "R" and s["offsets"])


@pytest.mark.parametrize(
    "value, words",
    [
        (1e30, "must be an integer"),
        (2**63, "outside [0, 2**63)"),
        (-16, "outside [0, 2**63)"),
        ("0", "must be an integer"),
    ],
)
def test_absurd_offsets_are_refused_by_the_reader(tmp_path, capsys, r8_plan, value, words):
    def edit(d):
        r = _first_r(d)
        r["offsets"][next(iter(r["offsets"]))] = value

    bad = edited(tmp_path, r8_plan, edit)
    for cmd in (["show", bad], ["export", bad, "-f", "c", "-o", tmp_path / "o.h"], ["run", "resnet8", bad]):
        code, _, err = cli(capsys, *cmd)
        assert code == 2 and words in one_line(err)


def test_offsets_ending_past_2_63_break_a_rule():
    g = graph_from_records("g", [("a", ["x"], ["y"])], {"x": 16, "y": 32}, inputs=["x"], outputs=["y"])
    far = 2**63 - 16
    stages = [Stage("L", "x", offset=0), Stage("R", "a", offsets={"y": far}), Stage("S", "y")]
    sim = simulate(g, Target("t", None), stages)
    assert any("ends past 2**63" in v for v in sim.violations)


@pytest.mark.parametrize(
    "path, value",
    [
        (("target", "alignment"), "16"),
        (("target", "l1_bytes"), True),
        (("metrics", "arena_bytes"), "196608"),
        (("metrics", "steps"), 41.0),
        (("solver", "wall_s"), "0.1"),
        (("solver", "status"), 1),
        (("model", "name"), ["x"]),
    ],
)
def test_the_reader_coerces_nothing(tmp_path, capsys, r8_plan, path, value):
    def edit(d):
        d[path[0]][path[1]] = value

    code, _, err = cli(capsys, "show", edited(tmp_path, r8_plan, edit))
    assert code == 2 and repr(path[1]) in one_line(err)


def test_tensor_fields_are_typed(tmp_path, capsys, r8_plan):
    def edit(d):
        d["tensors"][0]["bytes"] = "1024"

    code, _, err = cli(capsys, "show", edited(tmp_path, r8_plan, edit))
    assert code == 2 and "'bytes' must be an integer" in one_line(err)


def test_show_does_not_call_a_plan_with_false_metrics_valid(tmp_path, capsys, r8_plan):
    code, out, err = cli(capsys, "show", edited(tmp_path, r8_plan, _lie))
    assert code == 1 and "valid" not in out
    assert "do not match the replay" in one_line(err)
    code, out, _ = cli(capsys, "show", edited(tmp_path, r8_plan, _lie), "--json")
    d = json.loads(out)
    assert code == 1 and d["metrics_match"] is False and d["arena_bytes"] != 1


def test_show_on_files_that_are_not_plans(tmp_path, capsys):
    from planner.models.zoo import ZooError, locate

    cases = {"garbage.bin": bytes(range(256)) * 4, "deep.json": b"[" * 100_000 + b"]" * 100_000, "empty.json": b""}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    files = [tmp_path / n for n in cases] + [relu_model(tmp_path / "m.onnx"), tmp_path]
    try:
        files.append(locate("sine_float"))
    except ZooError:
        pass
    for f in files:
        code, _, err = cli(capsys, "show", f)
        line = one_line(err)
        assert code == 2 and "codec" not in line and "RecursionError" not in line, line
    code, _, err = cli(capsys, "show", tmp_path / "deep.json")
    assert "nested too deeply" in err


def test_one_function_reads_replays_and_compares(tmp_path, r8_plan):
    from planner.simulate import MetricsMismatch, read_checked_plan

    assert read_checked_plan(r8_plan).metrics.arena_bytes > 1
    with pytest.raises(MetricsMismatch):
        read_checked_plan(edited(tmp_path, r8_plan, _lie))

    def drop_a_stage(d):
        del d["stages"][1]

    with pytest.raises(PlanError):
        read_checked_plan(edited(tmp_path, r8_plan, drop_a_stage))


# -- 2. the C header and 2**32 ------------------------------------------------------------------

WALK_WIDE = r"""
#include <stdio.h>
#include "wide.h"
#include "narrow.h"
int main(void) {
  unsigned long long top = 0;
  unsigned i;
  for (i = 0; i < PLAN_W_NUM_STEPS; ++i) {
    unsigned long long end = plan_w_steps[i].offset + plan_w_steps[i].bytes;
    if (end > top) top = end;
  }
  if (top > PLAN_W_ARENA_BYTES) return 1;
  printf("%d %llu %llu %llu %u\n", PLAN_W_OFFSET_BITS, (unsigned long long)plan_w_steps[1].offset,
         (unsigned long long)plan_w_tensor_bytes[1], (unsigned long long)PLAN_W_ARENA_BYTES,
         (unsigned)PLAN_N_ARENA_BYTES);
  return 0;
}
"""


def _wide_plan() -> Plan:
    big = 2**32 + 16
    g = graph_from_records(
        "wide", [("a", ["x"], ["y"]), ("b", ["y"], ["z"])], {"x": 16, "y": big, "z": 32}, inputs=["x"], outputs=["z"]
    )
    stages = [
        Stage("L", "x", offset=0),
        Stage("R", "a", offsets={"y": 2**32}),
        Stage("F", "x"),
        Stage("R", "b", offsets={"z": 0}),
        Stage("F", "y"),
        Stage("S", "z"),
        Stage("F", "z"),
    ]
    return finalize(Plan(g, Target("t", None), stages, SolverInfo("hand")))


@pytest.mark.skipif(GCC is None, reason="needs a C compiler (gcc)")
def test_c_header_holds_values_past_2_32(tmp_path):
    from planner.export.c_header import export_c_header

    wide = export_c_header(_wide_plan(), prefix="PLAN_W")
    assert "2^32 bytes or more" in wide and "uint64_t offset;" in wide
    g = graph_from_records("n", [("a", ["x"], ["y"])], {"x": 16, "y": 16}, inputs=["x"], outputs=["y"])
    narrow_plan = finalize(
        Plan(
            g,
            Target("t", None),
            [Stage("L", "x", offset=0), Stage("R", "a", offsets={"y": 16}), Stage("S", "y")],
            SolverInfo("h"),
        )
    )
    narrow = export_c_header(narrow_plan, prefix="PLAN_N")
    assert "uint32_t offset;" in narrow and "uint64_t" not in narrow
    (tmp_path / "wide.h").write_text(wide)
    (tmp_path / "narrow.h").write_text(narrow)
    (tmp_path / "main.c").write_text(WALK_WIDE)
    exe = tmp_path / "walk"
    flags = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-DPLANNER_WITH_NAMES"]
    cc = subprocess.run([GCC, *flags, "-o", str(exe), str(tmp_path / "main.c")], capture_output=True, text=True)
    assert cc.returncode == 0, cc.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout
    assert run.stdout.split() == ["64", str(2**32), str(2**32 + 16), str(2 * 2**32 + 16), "32"]


# -- 4. one line for every error ------------------------------------------------------------


@pytest.mark.parametrize(
    "args, words",
    [
        (["plan", "--time-limit", "abc"], "--time-limit: expected a number of seconds"),
        (["plan", "--workers", "1.5"], "--workers"),
        (["bogus"], "invalid choice: 'bogus'"),
        (["export", "p.json", "-f", "bogus", "-o", "x"], "invalid choice: 'bogus'"),
        (["show"], "required: plan"),
        ([], "no command given"),
    ],
)
def test_argparse_errors_are_one_line(capsys, args, words):
    code, out, err = cli(capsys, *args)
    assert code == 2 and out == "" and words in one_line(err)


def test_help_is_unchanged_and_lists_exit_codes(capsys):
    from planner.cli import EXIT_CODES

    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "usage: planner" in out
    for code, meaning in EXIT_CODES.items():
        assert f"{code}  {meaning}" in out
    with pytest.raises(SystemExit):
        main(["plan", "--help"])
    assert "3  internal error" in capsys.readouterr().out


def test_huge_input_is_refused_before_allocating(tmp_path, capsys):
    model = relu_model(tmp_path / "huge.onnx", shape=(1, 2**40))
    plan = tmp_path / "huge.json"
    assert main(["plan", str(model), "--solver", "greedy", "--quiet", "-o", str(plan)]) == 0
    code, _, err = cli(capsys, "run", model, plan)
    line = one_line(err)
    assert code == 2 and "host memory" in line and "input 'x' 4.00 TiB" in line and "the arena 8.00 TiB" in line


def test_shape_products_past_int64_are_refused(tmp_path, capsys):
    model = relu_model(tmp_path / "huger.onnx", shape=(2**40, 2**40))
    code, _, err = cli(capsys, "plan", model, "--quiet", "-o", tmp_path / "p.json")
    assert code == 2 and "more than 2**53" in one_line(err)


def test_corrupt_inputs_file(tmp_path, capsys, r8_plan):
    import numpy as np

    good = tmp_path / "in.npz"
    np.savez(good, input=np.zeros((1, 3, 32, 32), np.float32))
    bad = tmp_path / "bad.npz"
    bad.write_bytes(good.read_bytes()[:100])
    code, _, err = cli(capsys, "run", "resnet8", r8_plan, "--inputs", bad)
    assert code == 2 and "not a valid .npz" in one_line(err)


def _save(tmp_path: Path, model, name: str) -> Path:
    p = tmp_path / name
    onnx.save(model, str(p))
    return p


def test_models_no_runtime_runs_are_refused_by_plan(tmp_path, capsys):
    import numpy as np

    x = helper.make_tensor_value_info("x", F, [1, 4])
    y = helper.make_tensor_value_info("y", F, [1, 4])
    dup = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["a"], name="n"), helper.make_node("Relu", ["a"], ["y"], name="n")],
        "g",
        [x],
        [y],
    )
    cases = {
        "dup.onnx": (helper.make_model(dup), "both named 'n'"),
        "noout.onnx": (onnx.load(str(relu_model(tmp_path / "tmp.onnx", outputs=False))), "no outputs"),
        "opset.onnx": (
            helper.make_model(
                helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]),
                opset_imports=[helper.make_opsetid("", 999)],
            ),
            "opset 999",
        ),
    }
    # weights in an external file that is not there
    w = onnx.numpy_helper.from_array(np.arange(4, dtype=np.float32).reshape(1, 4), "w")  # raw data: can go external
    ext = helper.make_model(helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g", [x], [y], [w]))
    onnx.save(
        ext,
        str(tmp_path / "ext.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="ext.data",
        size_threshold=0,
    )
    (tmp_path / "ext.data").unlink()
    for name, (model, _) in cases.items():
        _save(tmp_path, model, name)
    cases["ext.onnx"] = (None, "'ext.data', which is missing")
    for name, (_, words) in cases.items():
        code, _, err = cli(capsys, "plan", tmp_path / name, "--quiet", "-o", tmp_path / "p.json")
        assert code == 2 and words in one_line(err), (name, err)


def test_onnxruntime_log_lines_stay_off_stderr(tmp_path, capfd):
    """A kernel failing at run time: onnxruntime's coloured [E:onnxruntime:...] line must not
    reach stderr (fd 2, where C++ writes), only our one line."""
    import numpy as np

    x = helper.make_tensor_value_info("x", F, [1, 4])
    s = helper.make_tensor_value_info("s", TensorProto.INT64, [2])
    y = helper.make_tensor_value_info("y", F, None)
    m = helper.make_model(
        helper.make_graph(
            [helper.make_node("Reshape", ["x", "s"], ["r"], allowzero=1), helper.make_node("Relu", ["r"], ["y"])],
            "g",
            [x, s],
            [y],
        )
    )
    model = _save(tmp_path, m, "reshape.onnx")
    plan = tmp_path / "p.json"
    assert main(["plan", str(model), "--input-value", "s=2,2", "--quiet", "-o", str(plan)]) == 0
    np.savez(tmp_path / "in.npz", x=np.ones((1, 4), np.float32), s=np.array([3, 3]))
    capfd.readouterr()
    code = main(["run", str(model), str(plan), "--input-value", "s=2,2", "--inputs", str(tmp_path / "in.npz")])
    err = capfd.readouterr().err
    assert code == 2 and "onnxruntime" in one_line(err) and "[E:" not in err and "onnxruntime_src" not in err


# -- 5. semantics that surprise -----------------------------------------------------------------


def test_empty_model_name_is_refused(capsys, tmp_path):
    code, _, err = cli(capsys, "plan", "", "-o", tmp_path / "p.json")
    assert code == 2 and "MODEL is empty" in one_line(err) and not (tmp_path / "p.json").exists()


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_run_tolerances_must_be_finite(capsys, r8_plan, value):
    code, _, err = cli(capsys, "run", "resnet8", r8_plan, "--rtol", value)
    assert code == 2 and "--rtol" in one_line(err)


def test_unknown_dim_names_the_known_ones(tmp_path, capsys):
    model = relu_model(tmp_path / "dyn.onnx", shape=("N", 4))
    code, _, err = cli(capsys, "plan", model, "--dim", "M=2", "--quiet", "-o", tmp_path / "p.json")
    line = one_line(err)
    assert code == 2 and "'M'" in line and "dimensions are N" in line
    assert main(["plan", str(model), "--dim", "N=2", "--quiet", "-o", str(tmp_path / "p.json")]) == 0


def test_boards_without_external_memory_cannot_spill(capsys, tmp_path):
    assert get_target("stm32h743").llb_bytes == 0 and get_target("esp32s3").llb_bytes == 8 * 2**20
    assert get_target("unbounded").llb_bytes is None
    assert [n for n, t in PRESETS.items() if t.can_spill] == ["esp32s3", "unbounded"]
    code, _, err = cli(
        capsys, "plan", "resnet8", "--target", "stm32h743", "--budget", "100KiB", "-o", tmp_path / "p.json"
    )
    line = one_line(err)
    assert code == 1 and "no LLB" in line and "even with spilling" not in line and "Retry with --budget" in line
    code, _, err = cli(
        capsys, "plan", "resnet8", "--target", "stm32h743", "--budget", "100KiB", "--solver", "spill-belady"
    )
    assert code == 1 and "nothing can be spilled" in one_line(err)
    code, out, _ = cli(capsys, "plan", "resnet8", "--target", "stm32h743", "--quiet", "-o", tmp_path / "p.json")
    assert code == 0 and "LLB none (nothing can be spilled)" in out
    assert json.loads((tmp_path / "p.json").read_text())["target"]["llb_bytes"] == 0
    code, out, _ = cli(capsys, "solvers")
    assert "none (nothing can be spilled)" in out and "8.00 MiB" in out


def test_the_simulator_refuses_spills_without_an_llb():
    g = graph_from_records(
        "g", [("a", ["x"], ["y"]), ("b", ["y"], ["z"])], {"x": 16, "y": 16, "z": 16}, inputs=["x"], outputs=["z"]
    )
    spill = [
        Stage("L", "x", offset=0),
        Stage("R", "a", offsets={"y": 16}),
        Stage("S", "y"),
        Stage("F", "y"),
        Stage("L", "y", offset=16),
        Stage("R", "b", offsets={"z": 32}),
        Stage("S", "z"),
    ]
    assert simulate(g, Target("mcu", None, llb_bytes=None), spill).ok
    bad = simulate(g, Target("mcu", None, llb_bytes=0), spill).violations
    assert any("S y" in v and "no LLB" in v for v in bad) and any("L y" in v for v in bad)
    nospill = [s for k, s in enumerate(spill) if k not in (2, 3, 4)]
    assert simulate(g, Target("mcu", None, llb_bytes=0), nospill).ok  # the output is still stored


def test_does_not_fit_says_how_much_is_weights(capsys):
    code, _, err = cli(capsys, "plan", "resnet8", "--target", "esp32s3", "--budget", "1KiB", "--quiet")
    line = one_line(err)
    assert code == 1 and "of them its weights" in line and "--weights in_place" in line


# -- 10. exit codes -------------------------------------------------------------------------------


def test_internal_errors_have_their_own_code(capsys, monkeypatch):
    import planner.commands.plan as plan_command
    from planner.simulate import PlanError as InvalidPlan

    def broken(*a, **k):
        raise KeyError("oops")

    monkeypatch.setattr(plan_command, "solve_for_target", broken)
    code, _, err = cli(capsys, "plan", "chain:3", "--solver", "greedy", "--quiet")
    line = one_line(err)
    assert code == 3 and "internal error" in line and "--debug" in line

    def invalid(*a, **k):  # a solver that made an invalid plan is a bug, not bad input
        raise InvalidPlan(["step 0: R a: input x is not resident in L1"])

    monkeypatch.setattr(plan_command, "solve_for_target", invalid)
    code, _, err = cli(capsys, "plan", "chain:3", "--solver", "greedy", "--quiet")
    line = one_line(err)
    assert code == 3 and "internal error" in line and "--debug" in line


def test_readme_documents_the_exit_codes():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert "| 3 | internal error" in readme and "| 2 | bad input" in readme
