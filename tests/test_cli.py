"""End-to-end CLI: the README's main job, plan files, and clear errors with the right codes."""

import json
import subprocess
import sys

import onnx
import pytest
from onnx import TensorProto, helper

from planner.cli import main


def run_cli(*args, cwd=None):
    """Run the real console entry point in a subprocess (what users get)."""
    p = subprocess.run([sys.executable, "-m", "planner", *args], capture_output=True, text=True, cwd=cwd, timeout=300)
    return p.returncode, p.stdout, p.stderr


def test_default_main_job_writes_a_plan_that_show_rechecks(tmp_path):
    code, out, err = run_cli("plan", "--solver", "best", "-o", str(tmp_path / "p.json"))
    assert code == 0, err
    assert "resnet8" in out and "arena" in out
    code, out, err = run_cli("show", str(tmp_path / "p.json"))
    assert code == 0, err
    assert "valid" in out


def test_plan_json_summary(tmp_path, capsys):
    out_path = tmp_path / "p.json"
    assert main(["plan", "--solver", "greedy", "--json", "-o", str(out_path)]) == 0
    d = json.loads(capsys.readouterr().out)
    for k in ("arena_bytes", "peak_l1_bytes", "traffic_bytes", "lower_bound_bytes", "steps", "solver", "plan_path"):
        assert k in d
    assert d["plan_path"] == str(out_path)
    saved = json.loads(out_path.read_text())
    shares = any("shares" in st for st in saved["stages"])
    assert saved["format"] == "planner.plan" and saved["version"] == (2 if shares else 1)
    assert shares  # the default (--share all) lets resnet8's reshape and ReLUs share bytes
    assert saved["metrics"]["arena_bytes"] == d["arena_bytes"]


def test_show_refuses_tampered_plans(tmp_path, capsys):
    p = tmp_path / "p.json"
    assert main(["plan", "--solver", "best", "--quiet", "-o", str(p)]) == 0
    d = json.loads(p.read_text())
    d["version"] = 99
    (tmp_path / "v.json").write_text(json.dumps(d))
    assert main(["show", str(tmp_path / "v.json")]) == 2
    assert "unsupported plan version 99" in capsys.readouterr().err
    d["version"] = 1
    r = next(i for i, s in enumerate(d["stages"]) if s["stage"] == "F")
    d["stages"].insert(1, d["stages"].pop(r))  # free something before it was even used
    (tmp_path / "bad.json").write_text(json.dumps(d))
    assert main(["show", str(tmp_path / "bad.json")]) == 1
    assert "invalid" in capsys.readouterr().err
    d = json.loads(p.read_text())
    d["metrics"]["arena_bytes"] -= 16
    (tmp_path / "lie.json").write_text(json.dumps(d))
    assert main(["show", str(tmp_path / "lie.json")]) == 1
    assert "do not match" in capsys.readouterr().err
    (tmp_path / "trunc.json").write_text(p.read_text()[:200])
    assert main(["show", str(tmp_path / "trunc.json")]) == 2


def _write(model, path):
    onnx.save(model, str(path))
    return str(path)


def test_truncated_model_is_a_clear_error(tmp_path):
    src = tmp_path / "m.onnx"
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    _write(helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])), src)
    data = src.read_bytes()
    (tmp_path / "t.onnx").write_bytes(data[: len(data) // 2])
    code, out, err = run_cli("plan", str(tmp_path / "t.onnx"))
    assert code == 2
    assert err.startswith("planner: error:") and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cyclic_model(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    nodes = [
        helper.make_node("Add", ["x", "b"], ["a"], name="n1"),
        helper.make_node("Relu", ["a"], ["b"], name="n2"),
        helper.make_node("Relu", ["a"], ["y"], name="n3"),
    ]
    path = _write(helper.make_model(helper.make_graph(nodes, "g", [x], [y])), tmp_path / "c.onnx")
    code, _, err = run_cli("plan", path)
    assert code == 2 and "cycle" in err and "Traceback" not in err


def test_unknown_dimension(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    path = _write(
        helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])),
        tmp_path / "d.onnx",
    )
    code, _, err = run_cli("plan", path)
    assert code == 2 and "--input-shape" in err
    code, out, err = run_cli("plan", path, "--dim", "N=2", "--json", "-o", str(tmp_path / "p.json"))
    assert code == 0, err
    assert json.loads(out)["peak_l1_bytes"] == 2 * 4 * 4 * 2


@pytest.mark.parametrize("budget", ["0", "-5", "12 parsecs"])
def test_bad_budgets(budget, capsys):
    assert main(["plan", "--budget", budget]) == 2
    err = capsys.readouterr().err
    assert err.startswith("planner: error:") and len(err.strip().splitlines()) == 1


def test_budget_below_the_lower_bound_names_the_minimum(capsys, tmp_path):
    assert main(["plan", "--solver", "best", "--budget", "1KiB", "-o", str(tmp_path / "p.json")]) == 1
    err = capsys.readouterr().err
    assert "does not fit" in err and "--budget" in err


def test_human_units():
    from planner.target import parse_size

    assert parse_size("256KiB") == 262144
    assert parse_size("1.5MB") == 1_500_000
    assert parse_size("262144") == 262144
    assert parse_size("2 MiB") == 2 * 1024 * 1024


def test_solvers_lists_everything(capsys):
    assert main(["solvers"]) == 0
    out = capsys.readouterr().out
    assert "given-firstfit" in out and "stm32f746" in out


def test_show_lists_every_tensor_and_op(tmp_path, capsys):
    """`planner show --tensors --ops` answers "what is where" on the terminal (Vela's
    --verbose-allocation, TFLM's PrintMemoryPlan): every tensor and every op by name."""
    from planner.plan import read_plan

    out_path = tmp_path / "p.json"
    assert main(["plan", "resnet8", "--solver", "greedy", "--quiet", "-o", str(out_path)]) == 0
    capsys.readouterr()
    assert main(["show", str(out_path), "--tensors", "--ops"]) == 0
    out = capsys.readouterr().out.replace(" ", "").replace("\n", "").replace("│", "")
    plan = read_plan(out_path)
    ops = [s.name for s in plan.stages if s.kind == "R"]
    loaded = [s.name for s in plan.stages if s.kind == "L"]
    assert "tensors" in out and "resident" in out and ops and loaded
    for name in ops + loaded:
        assert name in out


def test_compare_never_claims_a_figure_it_did_not_write(tmp_path, capsys):
    """No plan fits a budget below every working set: nothing to draw, and it says so."""
    fig = tmp_path / "f.png"
    assert main(["compare", "resnet8", "--budget", "1KiB", "--solvers", "greedy", "--plot", str(fig), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert not fig.exists() and f"written {fig}" not in out and "no figure written" in out
