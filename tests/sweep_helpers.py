"""What the sweep tests share: the small sweep every engine runs, and how cells compare."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

from planner.models.zoo import is_available
from planner.sweep import Store, spec_from_mapping

# a few zoo models × 2 boards × 3 budgets × 2 solvers; `auto` with one CP-SAT worker,
# deterministic CP-SAT and a limit these cells finish well within, so every engine must
# give the same plan (okay_nabu and silero need their wheels, resnet8 is bundled)
SMALL = {
    "models": [m for m in ("resnet8", "okay_nabu", "silero_vad_16k_sequence") if is_available(m)],
    "targets": ["stm32f746", "esp32s3"],
    "budgets": ["board", "100%", "60%"],
    "clamp": True,
    "solvers": ["auto", "greedy"],
    "time_limits": [10],
    "workers": 1,
    "options": {"deterministic": True},
}
# what must not depend on where a cell ran (times, hosts and pids do)
DETERMINISTIC = ("model", "target", "budget", "solver", "status", "metrics", "bound", "budget_bytes", "graph", "ops")

# cells that run for their whole limit (RandWire stays above its bound), to be caught mid-solve
SLOW = {"models": ["randwire:60:0", "randwire:60:1", "randwire:60:2"], "solvers": ["auto"], "time_limits": [4]}


def small_spec():
    """The small sweep's spec."""
    return spec_from_mapping(SMALL)


def deterministic_cells(store_dir: Path) -> dict[str, tuple]:
    """key -> the fields of a cell that every engine must agree on."""
    return {
        k: tuple(json.dumps(r.get(f), sort_keys=True) for f in DETERMINISTIC)
        for k, r in Store(store_dir).cells().items()
    }


def kill_when_running(find_pid, after_s: float = 1.0, within_s: float = 120.0) -> threading.Thread:
    """A thread that waits until `find_pid()` names a worker busy with a cell, lets it run
    `after_s` more seconds, then kills it with SIGKILL; `thread.killed` is its pid."""

    def go():
        t_end = time.monotonic() + within_s
        while time.monotonic() < t_end:
            pid = find_pid()
            if pid:
                time.sleep(after_s)
                try:
                    os.kill(pid, signal.SIGKILL)
                    thread.killed = pid
                except ProcessLookupError:
                    continue
                return
            time.sleep(0.1)

    thread = threading.Thread(target=go, daemon=True)
    thread.killed = None
    thread.start()
    return thread


def ray_task_pid() -> int | None:
    """The pid of a Ray worker running a sweep cell (its title is the task name, `ray::sweep:cell:...`)."""
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "cmdline").read_bytes().startswith(b"ray::sweep"):
                    return int(d.name)
            except OSError:
                continue
    return None
