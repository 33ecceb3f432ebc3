"""The scheduler: which jobs a sweep still needs, in which order, and what the store keeps.

For every cell not in the store yet (or failed, with `retry_failed`):
1. a budget given as a percentage needs the no-spill arena of its model on its target,
   so one reference job per (model, target, ...) runs first; its cells wait for it, and
   when it fails they are recorded as failed with its error;
2. cells whose budgets resolve to the same bytes are the same plan: it runs once and
   every such cell records it under its own budget word;
3. a job whose worker died runs again, up to the cell's `retries`; a job past its hard
   limit is recorded as `timeout`. Nothing a cell does stops the sweep.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from planner.sweep.cell import FAILED
from planner.sweep.engines import Done, Job
from planner.sweep.spec import Cell, SweepSpec, digest, resolve_budget
from planner.sweep.store import Store


@dataclass
class SweepState:
    """Where a sweep stands (what the progress line shows and the CLI reports)."""

    total: int = 0
    done: int = 0  # cells with a result, those found in the store included
    already: int = 0  # cells the store had before this run
    running: int = 0
    failed: int = 0  # error or timeout
    no_fit: int = 0
    plans: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def eta_s(self) -> float | None:
        """Seconds left at this run's rate so far (None before the first result)."""
        ran = self.done - self.already
        if ran <= 0:
            return None
        return (time.monotonic() - self.started) / ran * (self.total - self.done)

    def count(self, record: dict) -> None:
        """Count one cell's result."""
        self.done += 1
        status = record.get("status")
        self.failed += status in FAILED
        self.no_fit += status == "does-not-fit"
        self.plans += "metrics" in record and record.get("metrics") is not None


class _Group:
    """The cells that resolve to one plan (same model, target, bytes, solver, ...)."""

    def __init__(self, gid: str, budget_bytes: int | None, clamped: bool, reference: dict | None) -> None:
        self.id, self.budget_bytes, self.clamped, self.reference = gid, budget_bytes, clamped, reference
        self.cells: list[Cell] = []
        self.result: dict | None = None
        self.attempts = 0


class Scheduler:
    """Runs one sweep on one engine into one store (see the module docstring)."""

    def __init__(self, spec: SweepSpec, store: Store, engine, retry_failed: bool = False, progress=None) -> None:
        self.spec, self.store, self.engine = spec, store, engine
        self.retry_failed = retry_failed
        self.progress: Callable[[SweepState], None] | None = progress
        self.state = SweepState()
        self.queue: deque[Job] = deque()
        self.inflight: dict[str, Job] = {}
        self.waiting: dict[str, list[Cell]] = {}  # reference key -> cells waiting for it
        self.groups: dict[str, _Group] = {}
        self.ref_jobs: dict[str, Cell] = {}
        self.ref_attempts: dict[str, int] = {}

    def run(self) -> SweepState:
        """Run every cell that has no result yet; the final state."""
        cells = self.spec.cells()
        self.store.save_spec(self.spec)
        have = self.store.cells()
        refs = {k: r for k, r in self.store.references().items() if r.get("status") not in FAILED}
        todo = []
        for c in cells:
            old = have.get(c.key)
            if old is not None and not (self.retry_failed and old.get("status") in FAILED):
                self.state.count(old)
                self.state.already += 1
            else:
                todo.append(c)
        self.state.total = len(cells)
        for c in todo:
            if c.is_relative and c.reference_key not in refs:
                self._wait_for_reference(c)
            else:
                self._place(c, refs.get(c.reference_key) if c.is_relative else None)
        self._loop()
        return self.state

    def _wait_for_reference(self, c: Cell) -> None:
        rk = c.reference_key
        if rk not in self.waiting:
            self.waiting[rk] = []
            self.ref_jobs[rk] = c
            payload = {"kind": "reference", "key": rk, **c.reference_identity(), "path": c.path}
            self.queue.appendleft(Job("ref:" + rk, payload, c.timeout, c.workers, c.memory, c.fresh_process))
        self.waiting[rk].append(c)

    def _place(self, c: Cell, reference: dict | None) -> None:
        """Resolve the cell's budget; join the group of its plan (run it if it is new)."""
        budget_bytes, clamped = resolve_budget(c, reference)
        ident = c.identity()
        for k in ("budget", "reference", "reference_time_limit", "clamp"):
            ident.pop(k, None)
        gid = digest({**ident, "budget_bytes": budget_bytes})
        g = self.groups.get(gid)
        if g is None:
            g = self.groups[gid] = _Group(gid, budget_bytes, clamped, reference)
            payload = {"kind": "cell", **c.payload(), "budget_bytes": budget_bytes}
            self.queue.append(Job("cell:" + gid, payload, c.timeout, c.workers, c.memory, c.fresh_process))
        g.cells.append(c)
        g.clamped = g.clamped or clamped
        if g.result is not None:  # the plan was made already in this run
            self._record(g, [c])

    def _loop(self) -> None:
        cpus = max([j.cpus for j in self.queue] or [1])
        cap = self.engine.capacity(cpus)
        while self.queue or self.inflight:
            while self.queue and len(self.inflight) < cap:
                job = self.queue.popleft()
                self.inflight[job.id] = job
                self.engine.submit(job)
            self.state.running = len(self.inflight)
            self._report()
            for d in self.engine.poll(0.5):
                self.inflight.pop(d.id, None)
                self._finished(d)
        self.state.running = 0
        self._report()

    def _report(self) -> None:
        if self.progress is not None:
            self.progress(self.state)

    def _finished(self, d: Done) -> None:
        kind, _, key = d.id.partition(":")
        attempts = self.ref_attempts if kind == "ref" else None
        if kind == "ref":
            attempts[key] = self.ref_attempts.get(key, 0) + 1
            n, retries = attempts[key], self.ref_jobs[key].retries
        else:
            g = self.groups[key]
            g.attempts += 1
            n, retries = g.attempts, g.cells[0].retries
        if d.result is None and d.died and n <= retries:
            self.queue.appendleft(self._job_again(d.id))
            return
        result = (
            d.result if d.result is not None else {"status": "timeout" if not d.died else "error", "error": d.failure}
        )
        result["attempts"] = n
        if kind == "ref":
            self._reference_done(key, result)
        else:
            g.result = result
            self._record(g, g.cells)

    def _job_again(self, jid: str) -> Job:
        kind, _, key = jid.partition(":")
        if kind == "ref":
            c = self.ref_jobs[key]
            payload = {"kind": "reference", "key": key, **c.reference_identity(), "path": c.path}
        else:
            g = self.groups[key]
            c = g.cells[0]
            payload = {"kind": "cell", **c.payload(), "budget_bytes": g.budget_bytes}
        return Job(jid, payload, c.timeout, c.workers, c.memory, c.fresh_process)

    def _reference_done(self, key: str, result: dict) -> None:
        c = self.ref_jobs[key]
        record = {"key": key, **c.reference_identity(), **result, "finished_at": _now()}
        self.store.add_reference(record)
        for cell in self.waiting.pop(key, []):
            if result.get("status") in FAILED or "nospill_arena" not in result:
                why = f"no-spill reference ({c.reference}) failed: {result.get('error', result.get('status'))}"
                rec = self._base(cell, None, False, None) | {"status": result.get("status", "error"), "error": why}
                self.state.count(self.store.add_cell(rec))
            else:
                self._place(cell, record)

    def _base(self, c: Cell, budget_bytes: int | None, clamped: bool, reference: dict | None) -> dict:
        rec = {"key": c.key, **c.identity(), "budget_bytes": budget_bytes, "clamped": clamped}
        if reference is not None:
            rec["nospill_arena"] = reference.get("nospill_arena")
            rec["reference_status"] = reference.get("status")
        rec["engine"] = getattr(self.engine, "name", type(self.engine).__name__)
        rec["finished_at"] = _now()
        return rec

    def _record(self, g: _Group, cells: list[Cell]) -> None:
        result = dict(g.result)
        plan_json = result.pop("plan_json", None)
        plan_file = None
        for c in cells:
            rec = {**self._base(c, g.budget_bytes, g.clamped, g.reference), **result}
            if plan_file is not None:
                rec["plan_file"] = plan_file
                stored = self.store.add_cell(rec)
            else:
                stored = self.store.add_cell(rec, plan_json)
                plan_file = stored.get("plan_file")
            self.state.count(stored)
        g.result = {**result, **({"plan_file": plan_file} if plan_file else {})}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def run_sweep(spec: SweepSpec, store: Store, engine, retry_failed: bool = False, progress=None) -> SweepState:
    """Run a sweep to its end on `engine` (closed afterwards); the final state."""
    try:
        return Scheduler(spec, store, engine, retry_failed, progress).run()
    finally:
        engine.close()


class ProgressLine:
    """The one line a terminal shows while a sweep runs (cells done/total, running,
    failed, ETA), rewritten in place on stderr; nothing when stderr is not a terminal."""

    def __init__(self, enabled: bool | None = None, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.last = 0.0
        self.width = 0

    def __call__(self, s: SweepState) -> None:
        """Show the state (at most 4 times a second, and always the final one)."""
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.last < 0.25 and s.running:
            return
        self.last = now
        eta = "-" if s.eta_s is None else _duration(s.eta_s)
        line = (
            f"sweep: {s.done}/{s.total} cells, {s.running} running, {s.failed} failed, {s.no_fit} do not fit, ETA {eta}"
        )
        self.stream.write("\r" + line.ljust(self.width))
        self.width = len(line)
        self.stream.flush()

    def close(self) -> None:
        """End the line (so what follows starts on its own)."""
        if self.enabled and self.width:
            self.stream.write("\n")
            self.stream.flush()


def _duration(s: float) -> str:
    s = int(round(s))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"
