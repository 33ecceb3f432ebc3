"""`planner sweep`: many plans at once (models × targets × budgets × solvers), resumable,
on a local process pool or on Ray; `--summary` tables and figures from the results."""

from __future__ import annotations

import os
import time
from pathlib import Path

from rich.table import Table

from planner.commands.common import CliError
from planner.report import console
from planner.sweep import (
    EngineError,
    PoolEngine,
    ProgressLine,
    RayEngine,
    SerialEngine,
    Store,
    load_spec,
    run_sweep,
    spec_from_mapping,
)
from planner.sweep.spec import with_overrides
from planner.sweep.summary import summarise, write
from planner.target import format_bytes

# command-line word -> spec key (the same words the spec file uses)
WORDS = {
    "models": "models",
    "targets": "targets",
    "budgets": "budgets",
    "solvers": "solvers",
    "time_limit": "time_limits",
    "seeds": "seeds",
    "workers": "workers",
    "objective": "objective",
    "weights": "weights",
    "alignment": "alignment",
    "lifetimes": "lifetimes",
    "share": "share",
    "fuse": "fuse",
    "reference": "reference",
    "timeout": "timeout",
    "memory": "memory",
    "retries": "retries",
}


def register(sub) -> None:
    """Add `planner sweep` to the subcommands."""
    p = sub.add_parser("sweep", help="plan many models × targets × budgets × solvers; resumable; pool or Ray")
    p.add_argument("spec", nargs="?", help="a sweep spec (.toml / .yaml), or a results DIR to resume / summarise")
    g = p.add_argument_group("the sweep (the spec's words; on the command line they override the spec's)")
    g.add_argument("--models", help="zoo names, files, globs, generated family:ops:seed, `zoo` (comma-separated)")
    g.add_argument("--targets", help="board presets, or `all` (default unbounded)")
    g.add_argument(
        "--budgets", help="board (the preset's L1, default), none, sizes (256KiB), shares of the no-spill arena (50%%)"
    )
    g.add_argument("--solvers", help="solver names (default auto)")
    g.add_argument("--time-limit", metavar="S[,S...]", help="seconds per solve (default 10)")
    g.add_argument("--seeds", help="CP-SAT seeds (default 0)")
    g.add_argument("--workers", type=int, help="CP-SAT threads per cell (default 1)")
    g.add_argument("--objective", choices=("traffic", "peak"), help="default traffic")
    g.add_argument("--weights", choices=("in_place", "load"), help="weight placement (default: the preset's)")
    g.add_argument("--alignment", type=int, help="offset alignment (default: the preset's)")
    g.add_argument("--lifetimes", choices=("minimal", "tflm"), help="default tflm for .tflite, else minimal")
    g.add_argument("--share", choices=("all", "views", "none"), help="shared bytes (default all)")
    g.add_argument("--fuse", choices=("auto", "onnxruntime", "none"), help="default auto for ONNX, none otherwise")
    g.add_argument("--reference", help="solver whose no-spill arena percentages refer to (default best)")
    g.add_argument("--clamp", action="store_true", default=None, help="raise %% budgets to the least any plan can use")
    g.add_argument("--timeout", type=float, help="hard seconds per cell (default 3 × limit + 120)")
    g.add_argument("--memory", help="memory a cell asks Ray for (default 2GiB)")
    g.add_argument("--retries", type=int, help="runs of a cell whose worker died (default 2)")
    p.add_argument("-o", "--output", help="results DIR (default: the spec's name, or `sweep`)")
    e = p.add_mutually_exclusive_group()
    e.add_argument("--jobs", type=int, help="worker processes (default: cores / workers; 0: in this process)")
    e.add_argument(
        "--ray", nargs="?", const="local", metavar="ADDRESS", help="run on Ray: a local runtime, or join ADDRESS"
    )
    p.add_argument("--retry-failed", action="store_true", help="run failed cells (error, timeout) again")
    p.add_argument("--summary", action="store_true", help="print and write the summary (tables, CSV, figures)")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=run)


def run(args) -> int:
    """Run the sweep (unless only a summary is asked for), then the summary."""
    store_dir, spec = _spec_and_store(args)
    store = Store(store_dir)
    if spec is not None:
        _run(args, spec, store)
    elif not args.summary:
        raise CliError(f"{store_dir}: no sweep here to resume; give a spec file or --models")
    if args.summary:
        _summary(store)
    return 0


def _words(args) -> dict:
    d = {key: getattr(args, attr) for attr, key in WORDS.items() if getattr(args, attr) is not None}
    if args.clamp:
        d["clamp"] = True
    return d


def _spec_and_store(args) -> tuple[Path, object]:
    """(the results folder, the spec to run or None for a summary only)."""
    words = _words(args)
    src = Path(args.spec) if args.spec else None
    if src is not None and src.is_file():
        return Path(args.output or src.with_suffix("").name), load_spec(src, words)
    if src is not None and args.output and Path(args.output) != src:
        raise CliError(f"{src} is not a spec file; give the results DIR once (as SPEC or -o)")
    if src is not None and not src.exists() and not words.get("models"):
        raise CliError(f"no such spec file or results folder: {src}")
    out = src or Path(args.output or "sweep")
    if words.get("models"):
        return out, spec_from_mapping(words)
    stored = Store(out).load_spec()
    if stored is None or (args.summary and not words and not args.retry_failed):
        return out, None
    return out, spec_from_mapping(with_overrides(stored.raw, words), stored.base_dir)


def _engine(args, spec):
    workers = max(g["workers"] for g in spec.grids) or 1
    if args.ray is not None:
        try:
            return RayEngine(None if args.ray == "local" else args.ray)
        except EngineError as e:
            raise CliError(str(e)) from None
    if args.jobs == 0:
        return SerialEngine()
    return PoolEngine(args.jobs or max(1, (os.cpu_count() or 1) // workers))


def _run(args, spec, store: Store) -> None:
    cells = spec.cells()
    engine = _engine(args, spec)
    progress = ProgressLine(enabled=False if args.quiet else None)
    t0 = time.perf_counter()
    try:
        state = run_sweep(spec, store, engine, args.retry_failed, progress)
    finally:
        progress.close()
    wall = time.perf_counter() - t0
    ran = state.done - state.already
    line = (
        f"sweep: {len(cells)} cells ({state.already} from the store, {ran} run on {engine.name} in {wall:.1f} s): "
        f"{state.plans} plans, {state.no_fit} do not fit, {state.failed} failed; results in {store.root / 'cells.jsonl'}"
    )
    if state.failed:
        line += f" (`planner sweep {store.root} --retry-failed` runs the failed ones again)"
    console().print(line, highlight=False, soft_wrap=True)


def _summary(store: Store) -> None:
    records = list(store.cells().values())
    if not records:
        raise CliError(f"{store.root}: no results yet")
    spec = store.load_spec()
    if spec is not None:  # the spec's order (models, then targets, budgets, solvers), not the finishing order
        rank = {c.key: i for i, c in enumerate(spec.cells())}
        records.sort(key=lambda r: rank.get(r["key"], len(rank)))
    s = summarise(records)
    paths = write(s, store.root)
    con = console()
    t = Table(title=f"models ({len(s.cells)} cells)")
    for c in ("model", "ops", "smallest board", "with spills", "best arena", "status", "solver", "vs bound"):
        t.add_column(c, justify="right" if c in ("ops", "best arena", "vs bound") else "left")
    for r in s.models:
        vs = f"{r['vs bound']:.3f}×" if r["vs bound"] else "-"
        t.add_row(
            r["model"],
            str(r["ops"] or "-"),
            r["smallest board"],
            r["smallest with spills"],
            format_bytes(r["best arena"]),
            str(r["status"]),
            r["solver"],
            vs,
        )
    con.print(t)
    f = Table(title="fits (models × boards)")
    for c in ["model", *s.boards]:
        f.add_column(c)
    for r in s.fits:
        f.add_row(r["model"], *[r[b] for b in s.boards])
    con.print(f)
    v = Table(title="solvers")
    keys = list(s.solvers[0]) if s.solvers else []
    for c in keys:
        v.add_column(c, justify="left" if c == "solver" else "right")
    for r in s.solvers:
        v.add_row(*["-" if r[k] is None else str(r[k]) for k in keys])
    con.print(v)
    for p in paths:
        con.print(f"written {p}", highlight=False)
