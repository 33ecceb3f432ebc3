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
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from benchmark import machine, write_csv  # noqa: E402

RESULTS = Path(__file__).parent / "results"
NAS = [f"{f}_{d}" for f in ("nasnet_a", "amoebanet_a", "darts_v2", "pnasnet5") for d in ("cifar", "imagenet")]
RANDWIRE = [f"randwire_ws{n}_{d}" for n in (8, 16, 32) for d in ("cifar", "imagenet")]
SEEDS = [f"randwire_ws32_{d}:{k}" for k in (1, 2, 3) for d in ("cifar", "imagenet")]
DEFAULT = NAS + RANDWIRE + SEEDS + ["randwire_ws16_imagenet:2"]


def _uptime() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def _auto(g, target, tl: float, workers: int, seed: int) -> dict:
    """`auto` on `g` at limit `tl`: arena, bound, status, seconds, first plan's seconds, load."""
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
        "shares": sum(p.solver.facts.get("shares", {}).values()),
    }


def run_model(
    name: str, limits: list[float], workers: int, seed: int, hmcos: str | None, cache: str | None, share: str = "none"
) -> dict:
    """One network: heuristics, the hierarchical start, auto at each limit, HMCOS; with
    `share` other than none, also auto at the largest limit with that sharing, and HMCOS's
    order scored with the same sharing (experiments/hmcos.py `score_shared`)."""
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
    if share != "none":
        shared = Target("t", None, share=share)
        a = _auto(g, shared, max(limits), workers, seed)
        row.update({f"share_auto_{k}": v for k, v in a.items()})
    if hmcos:
        row.update(_hmcos(hmcos, name, g, cache, share))
    row["lower_bound"] = max(bounds)
    return row


def _hmcos(binary: str, name: str, g, cache: str | None, share: str = "none") -> dict:
    """HMCOS's order for `g` (from the cache when it has one), re-scored with our model
    (and with `share`, re-scored with that sharing too)."""
    from hmcos import hmcos_order, run_hmcos, score, score_shared

    from planner.target import Target

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
    out = {
        "hmcos_arena": sc["arena"],
        "hmcos_peak": sc["peak"],
        "hmcos_s": round(r["sched_s"], 2),
        "hmcos_types": r["types"],
    }
    if share != "none":
        orders = {r["types"]: r["order"], **r.get("orders", {})}
        other = "opaque" if r["types"] == "real" else "real"
        if other not in orders and not name.startswith("randwire"):
            # the variant that lost without sharing may win with it ("real": HMCOS's own
            # in-place estimate); RandWire-32 takes HMCOS minutes per variant and has no
            # shareable joins (Sum, Mean), so its cached order stands alone
            try:
                orders[other] = run_hmcos(binary, g, other, timeout=300)[0]
            except (subprocess.SubprocessError, RuntimeError, OSError):
                orders[other] = None
            if cache:
                stored = json.loads(Path(cache).read_text()) if Path(cache).exists() else {}
                stored[name] = {**stored.get(name, r), "orders": {k: v for k, v in orders.items() if k != r["types"]}}
                Path(cache).write_text(json.dumps(stored))
        target = Target("t", None, share=share)
        scores = [score_shared(g, o, target) for o in orders.values() if o]
        sh = min(scores, key=lambda x: (x["arena"], x["min_peak"]))
        out.update(
            share_hmcos_arena=sh["arena"],
            share_hmcos_peak=min(x["min_peak"] for x in scores),
            share_hmcos_ordered=sh["ordered"],
        )
    return out


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
    lines += _share_table(rows, max(limits))
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def _versus(ours: int | None, theirs: int | None, failed: bool = True) -> str:
    """`auto` against HMCOS's order: below / tie / above, with the difference; `failed`:
    HMCOS ran and found no order (else it was not run: nothing to compare)."""
    if ours is None or (theirs is None and not failed):
        return "—"
    if theirs is None:
        return "below (HMCOS: no order)"
    word = "below" if ours < theirs else "tie" if ours == theirs else "above"
    return f"{word} ({(ours - theirs) / theirs:+.1%})"


def _share_table(rows: list[dict], limit: float) -> list[str]:
    """Both ways: without sharing, and with the same sharing on both sides (HMCOS's order
    scored by `score_shared`: the relations `auto` may choose, plus the in-place writes the
    order allows, best heuristic layout; its max-live is the floor of any layout of it)."""
    shared = [r for r in rows if "share_auto_arena" in r]
    if not shared:
        return []
    a = f"auto{limit:g}"
    head = [
        "model",
        "HMCOS order, no sharing",
        f"auto {limit:g} s, no sharing",
        "auto vs HMCOS",
        "HMCOS order with sharing (its max-live)",
        f"auto {limit:g} s with sharing (bound; status, shares, s, load)",
        "auto vs HMCOS, both sharing",
    ]
    lines = [
        "",
        f"Both ways at {limit:g} s: without shared bytes, and with `--share all` on both sides. HMCOS's",
        "order (the better of its two op-type variants) is scored with the relations `auto` may",
        "choose (solvers/portfolio.py `choose_sharing`) and also with the in-place writes that",
        "order allows (HMCOS's own rule: an element-wise op overwrites an input that dies with",
        "it), the best layout heuristic, replayed by the simulator.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in shared:
        h, hs = r.get("hmcos_arena"), r.get("share_hmcos_arena")
        ours, ours_s = r.get(f"{a}_arena"), r["share_auto_arena"]
        hs_cell = f"{hs:,} ({r['share_hmcos_peak']:,})" if hs is not None else _hmcos_failure(r)
        cells = [
            r["model"],
            f"{h:,}" if h is not None else _hmcos_failure(r),
            f"{ours:,}" if ours is not None else "—",
            _versus(ours, h, "hmcos_error" in r),
            hs_cell,
            f"{ours_s:,} ({r['share_auto_bound']:,}; {r['share_auto_status']}, {r['share_auto_shares']}, "
            f"{r['share_auto_s']}, {r['share_auto_load']})",
            _versus(ours_s, hs, "hmcos_error" in r),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


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
    ap.add_argument(
        "--share", default="none", choices=["none", "views", "all"], help="also auto and HMCOS with this sharing"
    )
    ap.add_argument("--out", default=str(RESULTS / "irregular"))
    args = ap.parse_args()
    names = args.models.split(",")
    limits = [float(t) for t in args.time_limits.split(",")]
    rows = []
    ctx = mp.get_context("spawn")
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        jobs = [(n, limits, args.workers, args.seed, args.hmcos, args.hmcos_cache, args.share) for n in names]
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
