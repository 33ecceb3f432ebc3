"""Sweeps on a real local Ray runtime (`ray.init(num_cpus=2)`): the same cells as in this
process, and a Ray worker killed mid-cell does not lose its cell. Ray comes with the
test extra (pyproject), so these run in CI."""

from __future__ import annotations

import pytest
from sweep_helpers import SLOW, deterministic_cells, kill_when_running, ray_task_pid, small_spec

from planner.sweep import RayEngine, SerialEngine, Store, run_sweep, spec_from_mapping

ray = pytest.importorskip("ray", reason="Ray is the `ray` extra: pip install 'planner[ray]'")


@pytest.fixture(scope="module")
def ray_runtime():
    """One local Ray runtime for the module (2 CPUs, as on this project's machines)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_gives_the_same_cells_as_this_process(tmp_path, ray_runtime):
    spec = small_spec()
    serial = run_sweep(spec, Store(tmp_path / "serial"), SerialEngine())
    on_ray = run_sweep(spec, Store(tmp_path / "ray"), RayEngine())
    assert on_ray.total == serial.total == len(spec.cells()) and on_ray.failed == 0
    assert deterministic_cells(tmp_path / "ray") == deterministic_cells(tmp_path / "serial")
    records = Store(tmp_path / "ray").cells().values()
    assert {r["engine"] for r in records} == {"ray"}
    assert ray.is_initialized()  # an engine leaves a runtime it did not start running


def test_a_killed_ray_worker_s_cell_is_run_again_and_the_sweep_completes(tmp_path, ray_runtime):
    spec = spec_from_mapping(SLOW)
    killer = kill_when_running(ray_task_pid)
    state = run_sweep(spec, Store(tmp_path), RayEngine())
    killer.join()
    assert killer.killed is not None, "no Ray worker was caught running a cell"
    cells = Store(tmp_path).cells().values()
    assert state.done == len(cells) == len(spec.cells()) and state.failed == 0
    assert all(r["metrics"] for r in cells)
    assert max(r["attempts"] for r in cells) == 2
    assert killer.killed not in {r["pid"] for r in cells}
