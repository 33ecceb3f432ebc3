"""Start-up time of the commands a user types first: how long `planner --help`, `planner
solvers`, `planner show PLAN` and `planner zoo` take, wall clock, as the median of several
runs, next to `python -c pass` (the interpreter alone) on the same machine at the same time.

    python experiments/startup.py [--runs 7] [--limit 1.0]

Each command runs in a fresh interpreter (`python -m planner ...`, what the console script
does), its output thrown away. The plan `show` replays is made first (`planner plan chain:50`,
not timed). Writes experiments/results/startup.md with the command line, the machine's load
average before and after, and one row per command: median and spread of the wall times, the
ratio to `python -c pass`, and whether it is under the limit (1 s: a command that answers
slower than that feels broken). Exits 1 when one is over the limit.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def wall_times(argv: list[str], runs: int) -> list[float]:
    """Seconds of `runs` runs of `argv` (output discarded; a failing command is an error)."""
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        out.append(time.perf_counter() - t0)
    return out


def measure(runs: int, plan: Path) -> tuple[list[float], dict[str, list[float]]]:
    """(times of `python -c pass`, {command: times}) for the four commands."""
    py = [sys.executable]
    commands = {
        "planner --help": ["--help"],
        "planner solvers": ["solvers"],
        "planner show PLAN": ["show", str(plan)],
        "planner zoo": ["zoo"],
    }
    base = wall_times([*py, "-c", "pass"], runs)
    return base, {name: wall_times([*py, "-m", "planner", *args], runs) for name, args in commands.items()}


def report(base: list[float], rows: dict[str, list[float]], limit: float, meta: dict) -> str:
    """The markdown page."""
    b = statistics.median(base)
    lines = [
        "# Start-up time of the first commands",
        "",
        f"Command: `{meta['command']}`  ",
        f"Machine: {meta['machine']}, {os.cpu_count()} cores, Python {platform.python_version()}  ",
        f"Load average (1 min) before: {meta['load_before']:.2f}, after: {meta['load_after']:.2f}  ",
        f"Runs per command: {meta['runs']} (median; min–max in brackets); limit {limit:g} s",
        "",
        "| command | median wall s | min–max s | × `python -c pass` | under the limit |",
        "|---|---:|---|---:|---|",
        f"| `python -c pass` | {b:.3f} | {min(base):.3f}–{max(base):.3f} | 1.0 | |",
    ]
    for name, ts in rows.items():
        m = statistics.median(ts)
        ok = "yes" if m < limit else "**no**"
        lines.append(f"| `{name}` | {m:.3f} | {min(ts):.3f}–{max(ts):.3f} | {m / b:.1f} | {ok} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Measure, write the page, exit 1 when a command is over the limit."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7, help="runs per command (at least 5; default 7)")
    ap.add_argument("--limit", type=float, default=1.0, help="seconds a command may take (default 1)")
    ap.add_argument("--out", type=Path, default=RESULTS / "startup.md")
    args = ap.parse_args(argv)
    runs = max(args.runs, 5)
    with tempfile.TemporaryDirectory() as tmp:
        plan = Path(tmp) / "chain50.plan.json"
        cmd = [sys.executable, "-m", "planner", "plan", "chain:50", "--quiet", "--time-limit", "2", "-o", str(plan)]
        subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
        load_before = os.getloadavg()[0]
        base, rows = measure(runs, plan)
        load_after = os.getloadavg()[0]
    meta = {
        "command": "python experiments/startup.py" + (f" {' '.join(argv)}" if argv else ""),
        "machine": f"{platform.system()} {platform.machine()}",
        "load_before": load_before,
        "load_after": load_after,
        "runs": runs,
    }
    text = report(base, rows, args.limit, meta)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text, end="")
    return 0 if all(statistics.median(ts) < args.limit for ts in rows.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
