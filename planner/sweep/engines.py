"""Where a sweep's jobs run: in this process, in a local pool of worker processes, or on Ray.

Every engine has the same small interface, so the scheduler (`planner.sweep.runner`) does
not care which one it drives:

- `capacity(cpus)`: how many jobs of `cpus` CPUs each it can run at once;
- `submit(job)`: start a `Job` (the scheduler never submits more than the capacity);
- `poll(timeout)`: the jobs that finished within `timeout` seconds, each a `Done` with the
  worker's result, or why there is none (`timeout`: the engine killed it past its hard
  limit; `died`: the worker process went away, so the scheduler may run the job again);
- `close()`: stop every worker it started.

The pool measures a job's hard limit from the moment its worker starts it; Ray from the
moment it is submitted, which is when it starts, since the scheduler never submits more
than the cluster's CPUs hold. The in-process engine cannot stop a job and so has none.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import wait

from planner.sweep.cell import execute

RAY_INSTALL = "pip install 'planner[ray]'"
START_S = 120.0  # what a new worker process may take to start (imports) before a job's limit counts


class EngineError(RuntimeError):
    """An engine cannot start (Ray missing or unreachable)."""


@dataclass
class Job:
    """One unit of work: a cell (or a reference solve) as plain data, and what it may use."""

    id: str
    payload: dict
    timeout: float
    cpus: int = 1
    memory: int = 0
    fresh: bool = False


@dataclass
class Done:
    """A finished job: the worker's result, or the reason there is none."""

    id: str
    result: dict | None = None
    failure: str = ""
    died: bool = False


class SerialEngine:
    """Every job in this process, one after the other (no hard limit: nothing can stop it)."""

    name = "serial"

    def __init__(self) -> None:
        self.queue: deque[Job] = deque()

    def capacity(self, cpus: int) -> int:
        """One job at a time."""
        return 1

    def submit(self, job: Job) -> None:
        """Queue the job; the next `poll` runs it."""
        self.queue.append(job)

    def poll(self, timeout: float) -> list[Done]:
        """Run one queued job to its end."""
        if not self.queue:
            return []
        job = self.queue.popleft()
        return [Done(job.id, execute(job.payload))]

    def close(self) -> None:
        """Nothing to stop."""


def warm_up() -> None:
    """Import what every cell needs (onnx, OR-Tools, the solvers) before the first job, so
    that a job's hard limit measures its own work, not the interpreter's start-up."""
    import importlib

    for name in ("planner.models.zoo", "planner.models.onnx", "planner.solvers.registry", "planner.solvers.portfolio"):
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a broken import shows in the job's own result
            pass


def _worker_main(conn) -> None:
    """A pool worker: run jobs from the pipe until told to stop (Ctrl-C is the driver's)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    warm_up()
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        conn.send(("start", None))  # the hard limit counts from here, not from the spawn
        conn.send(("done", execute(job)))


class _Worker:
    def __init__(self, ctx) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child,), daemon=True)
        self.proc.start()
        child.close()
        self.job: Job | None = None
        self.deadline = 0.0

    def stop(self, kill: bool = False) -> None:
        if kill and self.proc.is_alive():
            self.proc.kill()
        elif self.proc.is_alive():
            try:
                self.conn.send(None)
            except OSError:
                self.proc.kill()
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)
        self.conn.close()


class PoolEngine:
    """`jobs` worker processes on this machine (spawned: each imports planner once and runs
    job after job, or one job each with `fresh`). A job past its hard limit is killed with
    its worker, and a worker that dies is replaced."""

    name = "pool"

    def __init__(self, jobs: int) -> None:
        self.jobs = max(1, jobs)
        self.ctx = mp.get_context("spawn")
        self.workers: list[_Worker] = []

    def capacity(self, cpus: int) -> int:
        """`jobs` at once, whatever each asks for (the user sized the pool)."""
        return self.jobs

    def submit(self, job: Job) -> None:
        """Hand the job to an idle worker (starting one if the pool is not full yet)."""
        idle = [w for w in self.workers if w.job is None]
        if idle:
            w = idle[0]
        elif len(self.workers) < self.jobs:
            w = _Worker(self.ctx)
            self.workers.append(w)
        else:
            raise RuntimeError("pool is full: the scheduler submitted past the capacity")
        w.conn.send(job.payload)
        w.job, w.deadline = job, time.monotonic() + job.timeout + START_S

    def poll(self, timeout: float) -> list[Done]:
        """Results that arrive within `timeout`, workers that died, jobs past their limit."""
        busy = [w for w in self.workers if w.job is not None]
        if not busy:
            return []
        now = time.monotonic()
        wait(
            [w.conn for w in busy] + [w.proc.sentinel for w in busy],
            max(0.0, min(timeout, *(w.deadline - now for w in busy))),
        )
        done = [d for w in busy if (d := self._check(w)) is not None]
        self.workers = [w for w in self.workers if w.proc.is_alive() or w.job is not None]
        return done

    def _check(self, w: _Worker) -> Done | None:
        job = w.job
        while w.conn.poll():
            try:
                what, result = w.conn.recv()
            except (EOFError, OSError):
                return self._replace(w, Done(job.id, failure=self._death(w), died=True))
            if what == "start":
                w.deadline = time.monotonic() + job.timeout
                continue
            w.job = None
            if job.fresh:
                w.stop()
            return Done(job.id, result)
        if not w.proc.is_alive():
            return self._replace(w, Done(job.id, failure=self._death(w), died=True))
        if time.monotonic() > w.deadline:
            return self._replace(w, Done(job.id, failure=f"timeout: no result after {job.timeout:g} s, killed"))
        return None

    def _death(self, w: _Worker) -> str:
        w.proc.join(1)
        code = w.proc.exitcode
        how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        return f"worker died ({how})"

    def _replace(self, w: _Worker, done: Done) -> Done:
        w.stop(kill=True)
        w.job = None
        return done

    def close(self) -> None:
        """Stop every worker (busy ones are killed)."""
        for w in self.workers:
            w.stop(kill=w.job is not None)
        self.workers = []


def sweep_cell(payload: dict) -> dict:
    """The Ray task of one job (`ps` shows its name: `ray::sweep:cell:<id>`)."""
    warm_up()
    return execute(payload)


class RayEngine:
    """Each job a Ray task asking for its CPUs (the CP-SAT workers) and memory: on a local
    Ray runtime started here (`address` None), on a cluster (`address` given), or on the
    runtime this process already has (`ray.init` called before). Results stream back to
    the driver, which alone writes the store. A task past its hard limit is cancelled
    (its worker killed); one whose worker died comes back as `died` for the scheduler to
    run again."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise EngineError(f"--ray needs Ray, which is not installed: {RAY_INSTALL}") from None
        self.ray = ray
        self.started = False
        if not ray.is_initialized():
            kw = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
            try:
                if address:
                    ray.init(address=address, **kw)
                else:
                    ray.init(num_cpus=num_cpus or os.cpu_count(), **kw)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise EngineError(
                    f"cannot start Ray{f' at {address}' if address else ''}: {str(e).splitlines()[0]}"
                ) from None
            self.started = True
        self.task = ray.remote(sweep_cell)
        self.inflight: dict = {}  # ObjectRef -> (job, deadline)

    def capacity(self, cpus: int) -> int:
        """As many tasks as the cluster's CPUs hold (so a task starts when it is submitted)."""
        total = self.ray.cluster_resources().get("CPU", 1)
        return max(1, int(total // max(1, cpus)))

    def submit(self, job: Job) -> None:
        """Start the job as a Ray task (no retries of Ray's own: the scheduler retries)."""
        opts = {"num_cpus": job.cpus, "max_retries": 0, "name": f"sweep:{job.id[:24]}"}
        if job.memory:
            opts["memory"] = job.memory
        if job.fresh:
            opts["max_calls"] = 1
        ref = self.task.options(**opts).remote(job.payload)
        self.inflight[ref] = (job, time.monotonic() + job.timeout)

    def poll(self, timeout: float) -> list[Done]:
        """Tasks that finish within `timeout`; tasks past their limit are cancelled."""
        if not self.inflight:
            return []
        refs = list(self.inflight)
        ready, _ = self.ray.wait(refs, num_returns=1, timeout=timeout)
        if ready:
            ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0)
        done = [self._get(ref) for ref in ready]
        now = time.monotonic()
        for ref, (job, deadline) in list(self.inflight.items()):
            if now > deadline:
                self.ray.cancel(ref, force=True)
                del self.inflight[ref]
                done.append(Done(job.id, failure=f"timeout: no result after {job.timeout:g} s, cancelled"))
        return done

    def _get(self, ref) -> Done:
        job, _ = self.inflight.pop(ref)
        try:
            return Done(job.id, self.ray.get(ref))
        except self.ray.exceptions.RayError as e:
            died = not isinstance(e, self.ray.exceptions.RayTaskError)
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            return Done(job.id, failure=f"worker died: {type(e).__name__}: {first}"[:300], died=died)

    def close(self) -> None:
        """Cancel what still runs; stop the runtime if this engine started it."""
        for ref in list(self.inflight):
            self.ray.cancel(ref, force=True)
        self.inflight = {}
        if self.started:
            self.ray.shutdown()
