"""The work of one job, wherever an engine runs it (this process, a pool worker, a Ray
task on another host): plan one cell, or find the no-spill arena a percentage refers to.

A job is a plain dict and so is its result, so both cross processes and hosts as they
are. `execute` never raises: a model that does not import, a budget nothing fits, a
solver that refuses the graph or breaks a rule all come back as results with a status.
Every plan is replayed by the simulator here, before the result leaves the worker.
"""

from __future__ import annotations

import importlib.util
import os
import resource
import socket
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

# statuses of a result: a plan's own (optimal, feasible, heuristic) or one of these
NO_PLAN = ("does-not-fit", "skipped", "error", "timeout")
FAILED = ("error", "timeout")  # what --retry-failed runs again


def execute(job: dict) -> dict:
    """Run `job` (`kind` is `cell` or `reference`) and return its result (never raises)."""
    t0 = time.perf_counter()
    try:
        out = _reference(job) if job["kind"] == "reference" else _plan_cell(job)
    except Exception as e:  # noqa: BLE001 - every failure is a result, never a crashed sweep
        out = {"status": "error", "error": one_line(e)}
    out.update(
        host=socket.gethostname(),
        pid=os.getpid(),
        wall_s=round(time.perf_counter() - t0, 3),
        peak_rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    )
    return out


def one_line(e: BaseException) -> str:
    """An exception as the one line a results table can show."""
    text = str(e).strip()
    first = text.splitlines()[0] if text else ""
    return first if isinstance(e, ValueError) and first else f"{type(e).__name__}: {first}".rstrip(": ")


def load_graph(name: str, path: str, fuse: str = "none", target=None):
    """The graph of a model entry: a zoo name or generated family (`name`), a model file, or
    `FILE.py:FUNC:ARG:...`, a function in a Python file that returns a Graph (ints as ints).
    `fuse` as `planner plan --fuse`: `auto` plans whichever of onnxruntime's fused graph and
    the graph as written the heuristics plan smaller for `target`."""
    from planner.models.zoo import GENERATED, ZOO, load_model

    file, sep, rest = path.partition(".py:")
    if not sep:
        source = name if name in ZOO or GENERATED.fullmatch(name) else path
        if fuse != "auto":
            return load_model(source, fuse=fuse)
        from planner.models.fuse import fusion_of
        from planner.solvers.transforms import choose_graph

        fused = load_model(source, fuse="onnxruntime")
        record = fusion_of(fused)
        graphs = [fused, load_model(source)] if record is not None and record.applied else [fused]
        return choose_graph(graphs, target)
    func, *args = rest.split(":")
    spec = importlib.util.spec_from_file_location(Path(file).stem, file + ".py")
    if spec is None or not Path(file + ".py").is_file():
        raise FileNotFoundError(f"no such file: {file}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return getattr(module, func)(*[int(a) if a.lstrip("-").isdigit() else a for a in args])


def make_target(job: dict, budget: int | None):
    """The cell's target: its preset with the spec's overrides, under `budget`."""
    from planner.target import get_target

    t = get_target(job["target"], None, job["weights"], job["alignment"])
    return replace(t, lifetimes=job["lifetimes"], share=job["share"]).with_budget(budget)


def _load(job: dict, target) -> tuple[object, dict]:
    from planner.models.fuse import fusion_of

    t0 = time.perf_counter()
    g = load_graph(job["model"], job["path"], job.get("fuse", "none"), target)
    record = fusion_of(g)
    fused = bool(record is not None and record.applied)
    return g, {"graph": g.name, "ops": len(g.ops), "fused": fused, "import_s": round(time.perf_counter() - t0, 3)}


def _reference(job: dict) -> dict:
    """The no-spill arena of the model on the target (budget unbounded) by the reference
    solver, and the smallest budget any plan can use."""
    from planner.bounds import min_budget, working_set_bound
    from planner.solvers.base import SolveOptions
    from planner.solvers.registry import get_solver

    target = make_target(job, None)
    g, out = _load(job, target)
    opts = SolveOptions(time_limit=job["time_limit"], workers=job["workers"], seed=job["seed"])
    plan = get_solver(job["reference"])(g, target, opts)
    _check(plan)
    out.update(
        status=plan.solver.status,
        nospill_arena=plan.metrics.arena_bytes,
        min_budget=min_budget(g, target),
        working_set_bound=working_set_bound(g, target),
    )
    return out


def _plan_cell(job: dict) -> dict:
    from planner.bounds import min_budget, working_set_bound
    from planner.simulate import PlanError
    from planner.solvers.base import DoesNotFit, SolveOptions
    from planner.solvers.registry import get_solver

    target = make_target(job, job["budget_bytes"])
    g, out = _load(job, target)
    if job["max_ops"] is not None and len(g.ops) > job["max_ops"]:
        return {**out, "status": "skipped", "error": f"skipped (> {job['max_ops']} ops)"}
    out.update(working_set_bound=working_set_bound(g, target), min_budget=min_budget(g, target))
    opts = SolveOptions(
        time_limit=job["time_limit"], workers=job["workers"], seed=job["seed"], objective=job["objective"]
    )
    opts = replace(opts, **job["options"])
    t0 = time.perf_counter()
    try:
        plan = get_solver(job["solver"])(g, target, opts)
        _check(plan)
    except DoesNotFit as e:
        return {**out, "status": "does-not-fit", "needed_bytes": e.needed, "error": str(e).splitlines()[0]}
    except PlanError as e:
        return {**out, "status": "error", "error": f"invalid plan: {one_line(e)}"}
    except ValueError as e:  # a solver that refuses the graph (the DP past its states, ...)
        return {**out, "status": "skipped", "error": one_line(e)}
    out["solve_s"] = round(time.perf_counter() - t0, 3)
    return {**out, **plan_result(plan)}


def _check(plan) -> None:
    """Replay the plan: every rule of DESIGN §1, and the metrics it carries must be the replay's."""
    from planner.simulate import PlanError, check

    sim = check(plan)
    m = plan.metrics
    for k in ("arena_bytes", "peak_l1_bytes", "traffic_bytes", "steps"):
        if getattr(sim.metrics, k) != getattr(m, k):
            raise PlanError([f"{k}: the plan says {getattr(m, k)}, the replay {getattr(sim.metrics, k)}"])
    if plan.target.budget is not None and m.arena_bytes > plan.target.budget:
        raise PlanError([f"arena {m.arena_bytes} B over the budget {plan.target.budget} B"])


def plan_result(plan) -> dict:
    """What the store keeps of a checked plan: its metrics, what the solver proved, the file."""
    info = plan.solver.to_dict()
    return {
        "status": plan.solver.status,
        "metrics": asdict(plan.metrics),
        "spill_traffic_bytes": plan.metrics.spill_traffic_bytes,
        "bound": plan.solver.bound,
        "bound_objective": plan.solver.objective,
        "solver_wall_s": round(plan.solver.wall_s, 3),
        "facts": info["facts"],
        "plan_json": plan.to_json(),
    }
