"""`planner sweep`: specs, the store (resume, retries), failures as results, the local
engines (in-process and the pool: same cells; killed workers and time-outs), the command
line and the summary. Ray is in test_sweep_ray.py."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest
from sweep_helpers import SLOW, deterministic_cells, kill_when_running, small_spec

from planner.cli import main
from planner.sweep import PoolEngine, SerialEngine, SpecError, Store, load_spec, run_sweep, spec_from_mapping
from planner.sweep.spec import resolve_budget
from planner.sweep.summary import summarise


def test_a_toml_spec_expands_its_grids_into_cells(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "a.onnx").write_bytes(b"")
    spec = tmp_path / "s.toml"
    spec.write_text(
        'targets = ["stm32f746", "nrf52840"]\nbudgets = "board,50%,256KiB"\nsolvers = ["greedy"]\n'
        '[[grid]]\nmodels = ["resnet8", "sp:20:1"]\n[[grid]]\nmodels = ["m/*.onnx"]\nsolvers = ["auto", "dfs"]\n'
    )
    cells = load_spec(spec).cells()
    assert len(cells) == 2 * 2 * 3 * 1 + 1 * 2 * 3 * 2
    assert {c.model for c in cells} == {"resnet8", "sp:20:1", "m/a.onnx"}
    glob_cell = next(c for c in cells if c.model == "m/a.onnx")
    assert glob_cell.path == str(tmp_path / "m" / "a.onnx")  # relative to the spec's folder
    assert len({c.key for c in cells}) == len(cells)
    assert load_spec(spec).cells()[0].key == cells[0].key  # keys are stable across reads
    narrowed = load_spec(spec, {"models": "resnet8", "solvers": "best"}).cells()  # words win, in grids too
    assert {(c.model, c.solver) for c in narrowed} == {("resnet8", "best")} and len(narrowed) == 6


def test_yaml_specs_and_command_line_words_mean_the_same(tmp_path):
    pytest.importorskip("yaml", reason="YAML specs need PyYAML")
    y = tmp_path / "s.yaml"
    y.write_text("models: [resnet8]\ntargets: [stm32f746]\nbudgets: [100%, 64KiB]\nsolvers: [auto, greedy]\n")
    words = spec_from_mapping(
        {"models": "resnet8", "targets": "stm32f746", "budgets": "100%,64KiB", "solvers": "auto,greedy"}
    )
    assert [c.key for c in load_spec(y).cells()] == [c.key for c in words.cells()]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"models": "resnet8", "colour": "red"}, "unknown key 'colour'"),
        ({"models": "resnet8", "solvers": "magic"}, "unknown solver 'magic'"),
        ({"models": "resnet8", "targets": "pdp11"}, "unknown target 'pdp11'"),
        ({"models": "resnet8", "budgets": "lots"}, "budget 'lots'"),
        ({"models": "resnet8", "options": {"colour": 1}}, "options are SolveOptions knobs"),
        ({"targets": "stm32f746"}, "no models"),
        ({"models": "nowhere/*.onnx"}, "matches no file"),
    ],
)
def test_bad_specs_fail_with_one_line(spec, message):
    with pytest.raises(SpecError, match=message) as e:
        spec_from_mapping(spec).cells()
    assert "\n" not in str(e.value)


def test_cells_take_plan_s_defaults_for_lifetimes_and_fusion(tmp_path):
    cells = {c.model: c for c in spec_from_mapping({"models": "resnet8,okay_nabu,sp:10:0"}).cells()}
    assert (cells["resnet8"].fuse, cells["resnet8"].lifetimes) == ("auto", "minimal")
    assert (cells["okay_nabu"].fuse, cells["okay_nabu"].lifetimes) == ("none", "tflm")
    assert cells["sp:10:0"].fuse == "none"
    run_sweep(
        spec_from_mapping({"models": "resnet8", "solvers": "greedy", "budgets": "none"}),
        Store(tmp_path),
        SerialEngine(),
    )
    (r,) = Store(tmp_path).cells().values()
    assert r["fuse"] == "auto" and isinstance(r["fused"], bool) and r["metrics"]


def test_budget_words_resolve_against_the_board_and_the_reference():
    spec = spec_from_mapping(
        {"models": "resnet8", "targets": "nrf52840,unbounded", "budgets": "board,none,50%,1KiB", "clamp": True}
    )
    by = {(c.target, c.budget): c for c in spec.cells()}
    ref = {"nospill_arena": 200_000, "min_budget": 120_000}
    assert resolve_budget(by["nrf52840", "board"]) == (256 * 1024, False)
    assert resolve_budget(by["unbounded", "board"]) == (None, False)
    assert resolve_budget(by["nrf52840", "none"]) == (None, False)
    assert resolve_budget(by["nrf52840", "1KiB"]) == (1024, False)
    assert resolve_budget(by["nrf52840", "50%"], ref) == (120_000, True)  # 100,000 clamped up
    assert by["nrf52840", "50%"].reference_key != by["unbounded", "50%"].reference_key


def test_in_process_and_pool_give_identical_cells(tmp_path):
    spec = small_spec()
    serial = run_sweep(spec, Store(tmp_path / "serial"), SerialEngine())
    pool = run_sweep(spec, Store(tmp_path / "pool"), PoolEngine(2))
    assert serial.total == pool.total == len(spec.cells()) and serial.failed == pool.failed == 0
    a, b = deterministic_cells(tmp_path / "serial"), deterministic_cells(tmp_path / "pool")
    assert a == b and len(a) == serial.total
    cells = Store(tmp_path / "pool").cells().values()
    assert any(r.get("spill_traffic_bytes") for r in cells)  # some budgets force spills
    assert any(r["status"] == "does-not-fit" for r in cells)
    for r in cells:  # every plan was written, and its file replays to the recorded metrics
        if r.get("metrics"):
            plan = json.loads((tmp_path / "pool" / r["plan_file"]).read_text())
            assert plan["metrics"]["arena_bytes"] == r["metrics"]["arena_bytes"] <= (r["budget_bytes"] or 1 << 60)


def test_a_rerun_skips_finished_cells_and_retries_failed_ones_on_request(tmp_path):
    spec = spec_from_mapping({"models": "resnet8,no_such_model.onnx", "budgets": "none,64KiB", "solvers": "greedy"})
    store = Store(tmp_path)
    first = run_sweep(spec, store, SerialEngine())
    assert (first.done, first.failed, first.no_fit) == (4, 2, 1)
    errors = [r for r in store.cells().values() if r["status"] == "error"]
    assert errors and all("no_such_model.onnx" in r["error"] for r in errors)
    again = run_sweep(spec, store, SerialEngine())
    assert again.already == 4 and again.done == 4  # nothing ran
    retried = run_sweep(spec, store, SerialEngine(), retry_failed=True)
    assert retried.already == 2 and retried.failed == 2  # the two errors ran again (and failed again)
    lines = (tmp_path / "cells.jsonl").read_text().splitlines()
    assert len(lines) == 6
    (tmp_path / "cells.jsonl").write_text("\n".join(lines) + '\n{"key": "cut sh')  # a crash mid-line
    assert len(store.cells()) == 4


def test_budgets_that_resolve_to_the_same_bytes_are_planned_once(tmp_path):
    spec = spec_from_mapping({"models": "resnet8", "budgets": "50%,30%,100%", "clamp": True, "solvers": "greedy"})
    state = run_sweep(spec, Store(tmp_path), SerialEngine())
    cells = Store(tmp_path).cells().values()
    assert state.done == 3
    clamped = [r for r in cells if r["clamped"]]
    assert len(clamped) == 2 and len({r["budget_bytes"] for r in clamped}) == 1
    assert len(Store(tmp_path).references()) == 1  # one no-spill reference for the model × target


def _pool_worker_pid(engine: PoolEngine):
    busy = [w for w in engine.workers if w.job is not None and w.job.id.startswith("cell:")]
    return busy[0].proc.pid if busy else None


def test_a_killed_pool_worker_s_cell_is_run_again(tmp_path):
    spec = spec_from_mapping(SLOW)
    engine = PoolEngine(2)
    killer = kill_when_running(lambda: _pool_worker_pid(engine))
    state = run_sweep(spec, Store(tmp_path), engine)
    killer.join()
    assert killer.killed is not None
    cells = Store(tmp_path).cells().values()
    assert state.done == len(cells) == 3 and state.failed == 0
    assert all(r["metrics"] for r in cells)
    assert max(r["attempts"] for r in cells) == 2
    assert killer.killed not in {r["pid"] for r in cells}


def test_a_cell_past_its_hard_limit_is_a_timeout_and_the_sweep_goes_on(tmp_path):
    spec = spec_from_mapping({**SLOW, "models": ["randwire:60:0", "resnet8"], "timeout": 3})
    state = run_sweep(spec, Store(tmp_path), PoolEngine(2))
    by = {r["model"]: r for r in Store(tmp_path).cells().values()}
    assert state.done == 2 and state.failed == 1
    assert by["randwire:60:0"]["status"] == "timeout" and "no result after 3 s" in by["randwire:60:0"]["error"]
    assert by["resnet8"]["status"] == "optimal"


def test_missing_ray_is_one_line_with_the_install_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    code = main(["sweep", "--models", "resnet8", "-o", str(tmp_path), "--ray"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert "pip install 'planner[ray]'" in err


def _cli(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "planner", *args], capture_output=True, text=True, cwd=cwd, timeout=600
    )


def test_the_command_line_runs_resumes_and_summarises(tmp_path):
    out = tmp_path / "out"
    words = ["--models", "resnet8,sp:30:0", "--targets", "stm32f746,nrf52840", "--budgets", "board,100%,60%"]
    p = _cli(
        "sweep",
        *words,
        "--clamp",
        "--solvers",
        "greedy,auto",
        "--time-limit",
        "5",
        "-o",
        str(out),
        "--jobs",
        "0",
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""  # no progress line on a pipe
    assert "24 cells (0 from the store" in p.stdout
    p = _cli("sweep", str(out), cwd=tmp_path)  # resume with the spec the store keeps
    assert p.returncode == 0 and "24 cells (24 from the store, 0 run" in p.stdout, p.stderr
    p = _cli("sweep", str(out), "--summary", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    for name in ("summary.md", "cells.csv", "summary_models.csv", "summary_fits.csv", "arena_vs_bound.png", "fits.png"):
        assert (out / name).is_file(), name
    assert "smallest board" in p.stdout and "fits" in p.stdout
    md = (out / "summary.md").read_text()
    assert "## Spill traffic by budget" in md and "## Solvers" in md


def test_the_summary_says_which_boards_a_model_fits():
    def cell(model, target, budget_bytes, arena, spill=0, status="optimal"):
        m = None if arena is None else {"arena_bytes": arena, "lower_bound_bytes": arena}
        return {"model": model, "target": target, "budget": "board", "budget_bytes": budget_bytes, "solver": "auto",
                "time_limit": 5, "seed": 0, "status": status, "metrics": m, "spill_traffic_bytes": None if arena is None else spill}  # fmt: skip

    s = summarise(
        [
            cell("small", "nrf52840", 256 * 1024, 100_000),
            cell("small", "stm32h743", 512 * 1024, 100_000),
            cell("mid", "nrf52840", 256 * 1024, 250_000, spill=4096),
            cell("mid", "stm32h743", 512 * 1024, 300_000),
            cell("big", "nrf52840", 256 * 1024, None, status="does-not-fit"),
            cell("big", "stm32h743", 512 * 1024, None, status="does-not-fit"),
        ]
    )
    fits = {r["model"]: r for r in s.fits}
    assert fits["small"] == {"model": "small", "nrf52840": "fits", "stm32h743": "fits"}
    assert (fits["mid"]["nrf52840"], fits["mid"]["stm32h743"]) == ("spills", "fits")
    assert fits["big"]["nrf52840"] == "no"
    models = {r["model"]: r for r in s.models}
    assert models["small"]["smallest board"] == "nrf52840"
    assert models["mid"]["smallest board"] == "stm32h743" and models["mid"]["smallest with spills"] == "nrf52840"
    assert models["big"]["smallest board"] == "-"


def test_a_cell_run_in_this_process_records_what_the_simulator_measured(tmp_path):
    spec = spec_from_mapping({"models": "sp:40:3", "solvers": "greedy,given-firstfit", "budgets": "none"})
    run_sweep(spec, Store(tmp_path), SerialEngine())
    from planner.plan import read_plan
    from planner.simulate import simulate

    for r in Store(tmp_path).cells().values():
        plan = read_plan(tmp_path / r["plan_file"])
        sim = simulate(plan.graph, plan.target, plan.stages)
        assert not sim.violations and sim.metrics.arena_bytes == r["metrics"]["arena_bytes"]


def test_progress_line_shows_done_running_failed_and_eta():
    import io

    from planner.sweep import ProgressLine, SweepState

    buf = io.StringIO()
    line = ProgressLine(enabled=True, stream=buf)
    s = SweepState(total=10, done=4, running=2, failed=1)
    line(s)
    line.close()
    text = buf.getvalue()
    assert "4/10 cells" in text and "2 running" in text and "1 failed" in text and "ETA" in text
    quiet = io.StringIO()
    ProgressLine(stream=quiet)(s)  # not a terminal: nothing
    assert quiet.getvalue() == ""


def test_engines_run_their_jobs_in_threads_of_their_own_driver(tmp_path):
    # the scheduler may run in a thread (a notebook, a service): the pool works from there
    spec = spec_from_mapping({"models": "resnet8", "solvers": "greedy", "budgets": "none"})
    result = {}
    t = threading.Thread(target=lambda: result.update(s=run_sweep(spec, Store(tmp_path), PoolEngine(1))))
    t.start()
    t.join(120)
    assert result["s"].done == 1 and result["s"].plans == 1


@pytest.mark.parametrize("value", ["nan", "inf", "1e308", "-1", "abc"])
def test_a_bad_sweep_time_limit_is_bad_input_in_one_line(tmp_path, capsys, value):
    """`planner sweep --time-limit` is refused like `plan`'s: exit 2, one line (it was an
    'internal error', exit 3, and nan or inf would have run unbounded)."""
    from planner.cli import main

    assert main(["sweep", "--models", "chain:5", "--time-limit", value, "-o", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip()
    assert "time limit" in err and "internal error" not in err and len(err.splitlines()) == 1
