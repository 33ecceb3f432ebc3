"""CP-SAT plumbing every exact model shares: the solver set-up, progress, bound rounding.

One place decides the project's CP-SAT conventions so that the order, layout, joint,
stage and spill models behave alike: the same smallest time limit, seeds and worker
counts always set, the same reading of a proven bound (an objective bound is a float
that may sit a hair below an integer optimum, so it is rounded up with a tolerance).
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import weakref
from collections.abc import Callable, Iterator

from ortools.sat.python import cp_model

from planner.solvers.base import Progress, Timer

# CP-SAT needs a moment to load a model and its hint; below this a limit is raised to it
MIN_TIME_S = 0.05
# an objective bound within this of an integer is that integer (floating-point noise)
BOUND_EPS = 1e-6
SOLVED = (cp_model.OPTIMAL, cp_model.FEASIBLE)


def make_solver(time_limit: float, workers: int, seed: int, deterministic: bool = False) -> cp_model.CpSolver:
    """A CP-SAT solver with the project's conventions.

    `random_seed` and `num_workers` are always set. With `workers == 1` a run that ends
    before the wall limit is reproducible. With `deterministic=True` the workers are
    interleaved (`interleave_search`) and the limit is also applied as deterministic time,
    so runs repeat exactly for a given seed and worker count unless the wall limit cuts in
    first; without it the parallel portfolio is faster but its result under a time limit
    may vary from run to run.
    """
    solver = cp_model.CpSolver()
    p = solver.parameters
    p.max_time_in_seconds = max(MIN_TIME_S, float(time_limit))
    p.num_workers = max(1, int(workers))
    p.random_seed = int(seed)
    # Ctrl-C is Python's (KeyboardInterrupt where the user can be answered); `interruptible`
    # stops the running searches so that it is raised at once, not at the time limit
    p.catch_sigint_signal = False
    _SOLVERS.add(solver)
    if deterministic:
        p.interleave_search = True
        p.max_deterministic_time = max(MIN_TIME_S, float(time_limit))
    return solver


_SOLVERS: weakref.WeakSet = weakref.WeakSet()  # every CP-SAT solver made (they stop on Ctrl-C)


def stop_searches() -> None:
    """Stop every CP-SAT search now (each returns its best solution so far)."""
    for solver in list(_SOLVERS):
        solver.stop_search()


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """While active, Ctrl-C (SIGINT) raises KeyboardInterrupt in the main thread at once, even
    while CP-SAT is searching: Python's handler only runs when the main thread is back in
    Python, so a watcher thread woken by the signal (`signal.set_wakeup_fd`) stops the
    searches first. Outside the main thread it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    r, w = os.pipe()
    os.set_blocking(w, False)
    old_fd = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    old_handler = signal.signal(signal.SIGINT, signal.default_int_handler)

    def watch() -> None:
        while data := os.read(r, 64):
            if signal.SIGINT in data:
                stop_searches()

    watcher = threading.Thread(target=watch, name="planner-sigint", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(old_fd)
        signal.signal(signal.SIGINT, old_handler)
        os.close(w)  # the watcher reads end-of-file and ends
        watcher.join(timeout=1.0)
        os.close(r)


def ceil_bound(value: float) -> int:
    """A proven lower bound on an integer objective from CP-SAT's float bound."""
    return int(math.ceil(value - BOUND_EPS))


def proven_bound(solver: cp_model.CpSolver, status: int) -> int | None:
    """The integer lower bound CP-SAT proved on the objective, or None when it proved
    none (infeasible or model invalid, or no finite bound when it stopped)."""
    if status in (cp_model.INFEASIBLE, cp_model.MODEL_INVALID):
        return None
    b = solver.best_objective_bound
    return ceil_bound(b) if math.isfinite(b) else None


class Reporter(cp_model.CpSolverSolutionCallback):
    """Forwards incumbents (and, via `on_bound`, bound improvements) to a progress callback.

    Install with `solver.solve(model, reporter)` and, for bounds,
    `solver.best_bound_callback = reporter.on_bound`. `scale` maps objective values to the
    bytes the user sees (identity by default)."""

    def __init__(
        self,
        name: str,
        progress: Callable[[Progress], None] | None,
        timer: Timer,
        scale: Callable[[float], int] = round,
        phase: str = "better plan found",
    ) -> None:
        super().__init__()
        self.name, self.progress, self.timer, self.scale, self.phase = name, progress, timer, scale, phase
        self.incumbent: int | None = None
        self.lock = threading.Lock()

    def on_solution_callback(self) -> None:
        """CP-SAT found a better solution: report it."""
        with self.lock:
            self.incumbent = self.scale(self.objective_value)
            if self.progress is not None:
                bound = self.scale(self.best_objective_bound)
                self.progress(Progress(self.name, self.incumbent, bound, self.timer.elapsed, self.phase))

    def on_bound(self, bound: float) -> None:
        """CP-SAT proved a better bound: report it."""
        with self.lock:
            if self.progress is not None:
                self.progress(
                    Progress(self.name, self.incumbent, self.scale(bound), self.timer.elapsed, "better bound proven")
                )

    def attach(self, solver: cp_model.CpSolver) -> Reporter:
        """Also report bound improvements of `solver` (when there is someone to tell)."""
        if self.progress is not None:
            solver.best_bound_callback = self.on_bound
        return self


def solve(
    model: cp_model.CpModel,
    time_limit: float,
    workers: int,
    seed: int,
    deterministic: bool = False,
    reporter: Reporter | None = None,
    params: dict | None = None,
) -> tuple[int, cp_model.CpSolver]:
    """Solve `model` with the conventions above: (status, solver). `params` sets further
    CP-SAT parameters by name (a model that needs its own presolve settings)."""
    solver = make_solver(time_limit, workers, seed, deterministic)
    for name, value in (params or {}).items():
        setattr(solver.parameters, name, value)
    if reporter is not None:
        reporter.attach(solver)
        return solver.solve(model, reporter), solver
    return solver.solve(model), solver
