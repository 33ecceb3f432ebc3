"""Time limits: does `planner plan --time-limit S` end within S (issue 14, point 3)?

Runs the whole command, ``planner plan MODEL --time-limit S --quiet --json``, in a
subprocess per row and measures its wall time from the outside. Separately (another
subprocess, same interpreter) it measures the import: starting Python, importing the
planner and loading the graph the way the command does (`load_model`; ONNX models planned
with ``--fuse auto`` load both the fused and the written graph). A row passes when

    wall <= S * 1.1 + import

Rows: every installed or bundled zoo model (``planner zoo --json``) and generated graphs
(chain, sp, randwire up to 5,000 ops); a model suffixed ``@spill`` is planned with
```--budget`` at 60 % of its no-spill arena (the ``best`` heuristic's, measured first;
raised to the smallest budget any plan can use where that is higher), so the spill phase runs. The machine load (``os.getloadavg()``) is recorded per row.

    python experiments/time_limits.py                                  # everything, 2/10/30 s
    python experiments/time_limits.py --models generated --limits 2,10
    python experiments/time_limits.py --models zoo --limits 2 --append
    python experiments/time_limits.py --models chain:3001,sp:500@spill --limits 2,10 --append

Writes experiments/results/time_limits.{csv,md}; ``--append`` adds rows to the CSV, a row
measured again replacing the earlier one (the markdown is rendered from the whole CSV,
with every command that made it in its header).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
RESULTS = HERE / "results"
GENERATED = [f"{fam}:{n}" for fam in ("chain", "sp", "randwire") for n in (500, 2000, 5000)] + ["chain:3001"]
SPILL = ["sp:2000@spill", "randwire:500@spill", "light_squeezenet@spill", "ppocr_cls@spill"]
SPILL_SHARE = 0.6
SLACK = 1.1
FIELDS = [
    "model",
    "ops",
    "budget",
    "limit_s",
    "wall_s",
    "import_s",
    "load_s",
    "solve_s",
    "allowed_s",
    "ok",
    "exit",
    "arena_bytes",
    "traffic_bytes",
    "status",
    "load1",
    "load5",
]

LOAD_SNIPPET = """
import json, sys, time
t0 = time.perf_counter()
import planner.cli  # noqa: F401 - the command's own imports
from planner.commands.common import default_fuse
from planner.models.zoo import load_model
t1 = time.perf_counter()
name = sys.argv[1]
g = load_model(name, fuse="onnxruntime") if default_fuse(name) == "auto" else load_model(name)
if default_fuse(name) == "auto":
    load_model(name)
print(json.dumps({"modules_s": t1 - t0, "load_s": time.perf_counter() - t1, "ops": len(g.ops)}))
"""


def zoo_models() -> list[str]:
    """Every zoo model that is installed or bundled (``planner zoo --json``)."""
    out = subprocess.run(["planner", "zoo", "--json"], capture_output=True, text=True, check=True).stdout
    return [m["name"] for m in json.loads(out)["models"] if m["available"] in ("installed", "bundled")]


def expand(spec: str) -> list[str]:
    """--models: comma-separated names, or the groups zoo, generated, spill, all."""
    out: list[str] = []
    for part in [p.strip() for p in spec.split(",") if p.strip()]:
        if part in ("zoo", "all"):
            out += zoo_models()
        if part in ("generated", "all"):
            out += GENERATED
        if part in ("spill", "all"):
            out += SPILL
        if part not in ("zoo", "generated", "spill", "all"):
            out.append(part)
    return list(dict.fromkeys(out))


def measure_import(model: str) -> dict:
    """Seconds to start Python, import the planner and load `model` (wall, from outside)."""
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", LOAD_SNIPPET, model], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"cannot load {model}: {res.stderr.strip().splitlines()[-1:]}")
    return {**json.loads(res.stdout.strip().splitlines()[-1]), "import_s": wall}


def run_plan(model: str, limit: float, budget: int | None, out_dir: Path) -> tuple[float, int, dict]:
    """(wall seconds, exit code, the --json summary or {}) of one whole `planner plan`."""
    cmd = ["planner", "plan", model, "--time-limit", f"{limit:g}", "--quiet", "--json"]
    cmd += ["-o", str(out_dir / "plan.json")]
    if budget is not None:
        cmd += ["--budget", str(budget)]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    try:
        summary = json.loads(res.stdout) if res.returncode == 0 else {}
    except json.JSONDecodeError:
        summary = {}
    return wall, res.returncode, summary


def spill_budget(model: str, out_dir: Path) -> int:
    """SPILL_SHARE of the no-spill arena of the `best` heuristic (so spills are needed),
    raised to the smallest budget any plan can use (`min_budget`) where that is higher."""
    from planner.bounds import min_budget
    from planner.cli import build_parser
    from planner.commands.common import load_graph, make_target

    cmd = ["planner", "plan", model, "--solver", "best", "--quiet", "--json", "-o", str(out_dir / "best.json")]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    args = build_parser().parse_args(["plan", model])
    target = make_target(args)
    floor = min_budget(load_graph(args, target), target)
    return max(int(json.loads(res.stdout)["arena_bytes"] * SPILL_SHARE), floor)


def row(name: str, limit: float, imp: dict, budget: int | None, out_dir: Path) -> dict:
    """One measured row."""
    model = name.removesuffix("@spill")
    load1, load5, _ = os.getloadavg()
    wall, code, s = run_plan(model, limit, budget, out_dir)
    allowed = limit * SLACK + imp["import_s"]
    solver = s.get("solver", {})
    return {
        "model": name,
        "ops": imp["ops"],
        "budget": budget or "",
        "limit_s": limit,
        "wall_s": round(wall, 2),
        "import_s": round(imp["import_s"], 2),
        "load_s": round(imp["load_s"], 2),
        "solve_s": round(solver.get("wall_s", 0.0), 2),
        "allowed_s": round(allowed, 2),
        "ok": "yes" if wall <= allowed else "NO",
        "exit": code,
        "arena_bytes": s.get("arena_bytes", ""),
        "traffic_bytes": s.get("traffic_bytes", ""),
        "status": solver.get("status", ""),
        "load1": round(load1, 2),
        "load5": round(load5, 2),
    }


def render(rows: list[dict], commands: list[str]) -> str:
    """The markdown table, with the commands that made it and a summary line."""
    passed = sum(r["ok"] == "yes" for r in rows)
    lines = [
        "# Time limits: wall time of the whole `planner plan` command",
        "",
        "Made by:",
        "",
        *[f"    {c}" for c in commands],
        "",
        f"A row passes when wall <= limit x {SLACK} + import; import = starting Python, importing the planner and "
        "loading the graph as the command does (measured in its own subprocess); solve = the solver's own wall "
        "time from the plan. load1/load5: `os.getloadavg()` when the row started "
        f"({os.cpu_count()} CPUs). Models with `@spill` are planned at {SPILL_SHARE:.0%} of their no-spill arena.",
        "",
        f"**{passed} of {len(rows)} rows pass.**",
        "",
        "| " + " | ".join(FIELDS) + " |",
        "|" + "---|" * len(FIELDS),
    ]
    lines += ["| " + " | ".join(str(r[f]) for f in FIELDS) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Measure, write the CSV and the markdown."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="all", help="comma-separated names or groups: zoo, generated, spill, all")
    p.add_argument("--limits", default="2,10,30", help="comma-separated --time-limit values in seconds")
    p.add_argument("--out", default=str(RESULTS / "time_limits"), help="output path without suffix")
    p.add_argument("--append", action="store_true", help="add rows to the existing CSV")
    args = p.parse_args(argv)
    limits = [float(x) for x in args.limits.split(",")]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    csv_path, md_path, cmd_path = out.with_suffix(".csv"), out.with_suffix(".md"), out.with_suffix(".commands")
    rows = list(csv.DictReader(csv_path.open())) if args.append and csv_path.exists() else []
    commands = cmd_path.read_text().splitlines() if args.append and cmd_path.exists() else []
    commands.append("python experiments/time_limits.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    with tempfile.TemporaryDirectory() as tmp:
        for name in expand(args.models):
            imp = measure_import(name.removesuffix("@spill"))
            budget = spill_budget(name.removesuffix("@spill"), Path(tmp)) if name.endswith("@spill") else None
            for limit in limits:
                r = row(name, limit, imp, budget, Path(tmp))
                print(" ".join(f"{k}={r[k]}" for k in ("model", "limit_s", "wall_s", "import_s", "ok", "load1")))
                # a row measured again replaces the earlier one (same model and limit)
                rows = [x for x in rows if (x["model"], float(x["limit_s"])) != (name, limit)] + [r]
                with csv_path.open("w", newline="") as f:
                    w = csv.DictWriter(f, FIELDS)
                    w.writeheader()
                    w.writerows(rows)
                cmd_path.write_text("\n".join(commands) + "\n")
                md_path.write_text(render(rows, commands))
    return 0


if __name__ == "__main__":
    sys.exit(main())
