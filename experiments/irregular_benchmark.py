"""Irregular networks (issue 16): NAS cells and random wiring, `auto` against HMCOS.

For each generated network (models/generators.py, by zoo name) it reports the working-set
bound, the best heuristic, the hierarchical start alone (solvers/hierarchical.py), `auto`
at each time limit (arena, proven bound, status, wall time and time to its first plan),
and, when `--hmcos` names a driver binary (see experiments/hmcos.py: HMCOS is not part of
this project, build it yourself), HMCOS's order re-scored with our memory model (TFLM
lifetimes, `Target("t", None)`, the best layout heuristic on its order). Ratios are to the
best lower bound proven in the run. Writes CSV + markdown to experiments/results/.

    python experiments/irregular_benchmark.py --time-limits 5,60 --hmcos /path/to/op_sched
    python experiments/irregular_benchmark.py --models darts_v2_cifar,randwire_ws32_imagenet:1 --time-limits 5

Each model runs in its own process; HMCOS orders can be kept between runs with
`--hmcos-cache FILE` (JSON: name -> order and times), since HMCOS takes minutes on some.
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from benchmark import machine, write_csv  # noqa: E402

RESULTS = Path(__file__).parent / "results"
NAS = [f"{f}_{d}" for f in ("nasnet_a", "amoebanet_a", "darts_v2", "pnasnet5") for d in ("cifar", "imagenet")]
RANDWIRE = [f"randwire_ws{n}_{d}" for n in (8, 16, 32) for d in ("cifar", "imagenet")]
DEFAULT = NAS + RANDWIRE + ["randwire_ws32_cifar:1", "randwire_ws32_imagenet:1", "randwire_ws16_imagenet:2"]


def _uptime() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def _auto(g, target, tl: float, workers: int, seed: int) -> dict:
    from planner.solvers.base import SolveOptions
    from planner.solvers.registry import get_solver

    first: list[float] = []
    t0 = time.perf_counter()

    def progress(p) -> None:
        if p.incumbent is not None and not first:
            first.append(time.perf_counter() - t0)

    p = get_solver("auto")(g, target, SolveOptions(time_limit=tl, workers=workers, seed=seed, progress=progress))
    return {
        "arena": p.metrics.arena_bytes,
        "bound": p.solver.bound,
        "status": p.solver.status,
        "s": round(time.perf_counter() - t0, 2),
        "first_s": round(first[0], 2) if first else None,
        "load": _uptime(),
        "how": p.solver.facts.get("strong_bound_how", ""),
    }


def run_model(name: str, limits: list[float], workers: int, seed: int, hmcos: str | None, cache: str | None) -> dict:
    """One network: heuristics, the hierarchical start, auto at each limit, HMCOS."""
    from planner.bounds import working_set_bound
    from planner.models.zoo import load_model
    from planner.solvers.base import SolveOptions
    from planner.solvers.heuristic import best_layout, heuristic_start
    from planner.solvers.hierarchical import hierarchical_order
    from planner.target import Target

    g = load_model(name)
    t = Target("t", None)
    row: dict = {"model": name, "ops": len(g.ops), "working_set_bound": working_set_bound(g, t)}
    t0 = time.perf_counter()
    st = heuristic_start(g, t)
    row.update(best_arena=st.arena, best_s=round(time.perf_counter() - t0, 2))
    res = hierarchical_order(g, t, st.peak_order, 5.0, SolveOptions(workers=workers, seed=seed))
    if res is not None:
        row.update(hier_arena=min(best_layout(g, t, res.order)[0], st.arena), hier_s=round(time.perf_counter() - t0, 2))
    bounds = [row["working_set_bound"]]
    for tl in limits:
        a = _auto(g, t, tl, workers, seed)
        row.update({f"auto{tl:g}_{k}": v for k, v in a.items()})
        bounds.append(a["bound"])
    if hmcos:
        row.update(_hmcos(hmcos, name, g, cache))
    row["lower_bound"] = max(bounds)
    return row


def _hmcos(binary: str, name: str, g, cache: str | None) -> dict:
    """HMCOS's order for `g` (from the cache when it has one), re-scored with our model."""
    from hmcos import hmcos_order, score

    stored = json.loads(Path(cache).read_text()) if cache and Path(cache).exists() else {}
    r = stored.get(name)
    if r is not None and "error" in r:
        return {"hmcos_error": r["error"]}  # a failure (timeout, memory cap) is kept as well
    if r is None or "order" not in r or not g.is_topological(r["order"]):
        r = hmcos_order(binary, g, timeout=300)
        if cache:
            stored = json.loads(Path(cache).read_text()) if Path(cache).exists() else {}
            Path(cache).write_text(json.dumps({**stored, name: r}))
    if "error" in r:
        return {"hmcos_error": r["error"]}
    sc = score(g, r["order"])
    return {
        "hmcos_arena": sc["arena"],
        "hmcos_peak": sc["peak"],
        "hmcos_s": round(r["sched_s"], 2),
        "hmcos_types": r["types"],
    }


def _worker(args):
    try:
        return run_model(*args)
    except Exception as e:  # noqa: BLE001 - a failed model is a row, not a crash
        return {"model": args[0], "error": f"{type(e).__name__}: {e}"[:160]}


def _cell(r: dict, key: str) -> str:
    v, lb = r.get(f"{key}_arena"), r["lower_bound"]
    return "—" if v is None else f"{v:,} ({v / lb:.3f}×)"


def _hmcos_failure(r: dict) -> str:
    e = str(r.get("hmcos_error", ""))
    if not e:
        return "—"
    return "no order (300 s, 10 GiB per op-type variant)" if "timed out" in e else f"failed: {e[-40:]}"


def write(rows: list[dict], limits: list[float], out: Path, command: str) -> None:
    """CSV with every field, markdown with the table of the issue's measures."""
    write_csv(rows, out.with_suffix(".csv"))
    autos = [f"auto{t:g}" for t in limits]
    head = [
        "model",
        "ops",
        "best bound",
        "best heuristic",
        "HMCOS order",
        "HMCOS s",
        "hierarchical start (s incl. heuristics)",
    ]
    head += [h for t in limits for h in (f"auto {t:g} s", "status, s (first plan s), load")]
    lines = [
        f"Machine: {machine()}  ",
        f"Command: `{command}`",
        "",
        "Arena bytes; ×: ratio to the best lower bound proven in the run.",
        "",
    ]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | error: {r['error']} |")
            continue
        cells = [r["model"], str(r["ops"]), f"{r['lower_bound']:,}", _cell(r, "best")]
        cells += [
            _cell(r, "hmcos") if "hmcos_arena" in r else _hmcos_failure(r),
            str(r.get("hmcos_s", "—")),
        ]
        cells.append(_cell(r, "hier") + (f", {r['hier_s']} s" if "hier_s" in r else ""))
        for a in autos:
            cells += [_cell(r, a), f"{r[a + '_status']}, {r[a + '_s']} ({r[a + '_first_s']}), {r[a + '_load']}"]
        lines.append("| " + " | ".join(cells) + " |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def _render(csv_path: Path, limits: list[float], out: Path, command: str) -> None:
    """Write the markdown again from a CSV this script wrote."""

    def num(v: str):
        for cast in (int, float):
            try:
                return cast(v)
            except ValueError:
                pass
        return v

    rows = [{k: num(v) for k, v in r.items() if v != ""} for r in csv.DictReader(open(csv_path))]
    write(rows, limits, out, command)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(DEFAULT))
    ap.add_argument("--time-limits", default="5,60")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hmcos", help="an HMCOS driver binary (experiments/hmcos.py says what it prints)")
    ap.add_argument("--hmcos-cache", help="JSON file of HMCOS orders by model name (read, and written when missing)")
    ap.add_argument("--out", default=str(RESULTS / "irregular"))
    args = ap.parse_args()
    names = args.models.split(",")
    limits = [float(t) for t in args.time_limits.split(",")]
    rows = []
    ctx = mp.get_context("spawn")
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        jobs = [(n, limits, args.workers, args.seed, args.hmcos, args.hmcos_cache) for n in names]
        for row in pool.imap(_worker, jobs):
            rows.append(row)
            print({k: v for k, v in row.items() if not k.endswith("_how")}, flush=True)
    command = "python experiments/irregular_benchmark.py " + " ".join(
        f"--{k.replace('_', '-')} {v}"
        for k, v in vars(args).items()
        if v is not None and k not in ("out", "hmcos", "hmcos_cache")
    )
    write(rows, limits, Path(args.out), command + (" --hmcos OP_SCHED" if args.hmcos else ""))
    print(f"written {Path(args.out).with_suffix('.md')} (.csv)")


if __name__ == "__main__":
    main()
