"""Sweeps: many plans at once (models × targets × budgets × solvers × time limits × seeds).

    >>> from planner.sweep import Store, load_spec, run_sweep, SerialEngine
    >>> state = run_sweep(load_spec("sweep.toml"), Store("out"), SerialEngine())  # doctest: +SKIP

- `spec`: the sweep file / command-line words, expanded into cells;
- `cell`: the work of one cell, wherever it runs (every plan replayed by the simulator);
- `engines`: in-process, a local process pool, Ray;
- `runner`: the scheduler (references first, equal plans once, retries, progress);
- `store`: the results folder (JSON lines, plan files), so sweeps resume;
- `summary`: tables and figures from a store.
"""

from planner.sweep.engines import EngineError, PoolEngine, RayEngine, SerialEngine
from planner.sweep.runner import ProgressLine, SweepState, run_sweep
from planner.sweep.spec import Cell, SpecError, SweepSpec, load_spec, spec_from_mapping
from planner.sweep.store import Store

__all__ = [
    "Cell",
    "EngineError",
    "PoolEngine",
    "ProgressLine",
    "RayEngine",
    "SerialEngine",
    "SpecError",
    "Store",
    "SweepSpec",
    "SweepState",
    "load_spec",
    "run_sweep",
    "spec_from_mapping",
]
