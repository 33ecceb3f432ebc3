"""What row-stripe splitting buys on int8 TFLite models, measured as TFLite Micro runs them.

    python experiments/split_benchmark.py                                  # the MCU zoo, 60 s each
    python experiments/split_benchmark.py --models mlperf_resnet8 --time-limit 20
    python experiments/split_benchmark.py --models a.tflite,b.tflite --vela experiments/results/vela_mcu.csv

Each model is planned twice by `auto` for a microcontroller without external memory (no
budget, no LLB so nothing is spilled, TFLM lifetimes, shared bytes allowed, `--objective
peak`): with `--split none` (the model as imported: the floor of one operator) and with
`--split auto` within `--max-overhead` percent extra MACs. Both plans are exported into the
model (for the split plan: into the split model) and run by an unchanged TFLite Micro next
to the ORIGINAL model on random inputs over several invocations; the table reports TFLM's
arena head of each (the figure that counts), whether outputs are identical, the MACs, the
splits chosen, and Vela's `--optimise Size` SRAM where a Vela table (from
experiments/vela_baseline.py) names the model. Each model runs in its own process so that
one model's failure is one row.
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing as mp
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from benchmark import machine, write_csv  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def default_models() -> tuple[str, ...]:
    """The MCU zoo (models/mcu_zoo.py)."""
    from planner.models.mcu_zoo import MCU_MODELS

    return tuple(MCU_MODELS)


def mcu_target():
    """A microcontroller without external memory: no budget, no LLB (nothing is spilled),
    TFLM lifetimes, shared bytes."""
    from planner.target import Target

    return Target("mcu-no-llb", None, 0, "in_place", 16, "no budget, no LLB", lifetimes="tflm", share="all")


def _one(name: str, time_limit: float, max_overhead: float, invocations: int) -> dict:
    from planner.macs import total_macs
    from planner.models.zoo import load_model, locate
    from planner.solvers.base import SolveOptions
    from planner.solvers.registry import get_solver
    from planner.splitting import plan_split
    from planner.tflm_check import check_in_tflm

    path = Path(name) if Path(name).is_file() else locate(name)
    graph = load_model(name)
    target, solve = mcu_target(), get_solver("auto")
    row: dict = {"model": name, "ops": len(graph.ops), "macs": total_macs(graph)}
    t0 = time.perf_counter()
    plain = solve(graph, target, SolveOptions(time_limit=time_limit, objective="peak"))
    row.update(unsplit_arena=plain.metrics.arena_bytes, unsplit_status=plain.solver.status)
    row["unsplit_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    opts = SolveOptions(time_limit=time_limit, objective="peak")
    best = plan_split(solve, graph, target, opts, "auto", max_overhead / 100)
    row["split_s"] = round(time.perf_counter() - t0, 1)
    split = next((t for t in best.transforms if t.get("kind") == "split"), None)
    row.update(split_arena=best.metrics.arena_bytes, split_status=best.solver.status)
    row["splits"] = (
        "; ".join(
            f"ops {s['ops'][0]}-{s['ops'][-1]} x{s['stripes']}"
            + (" channels" if s.get("split") == "channels" else " cached" if s.get("cache") else "")
            for s in split["splits"]
        )
        if split
        else "none"
    )
    row["split_macs"] = total_macs(best.graph)
    row["mac_overhead_pct"] = round(100 * (row["split_macs"] / row["macs"] - 1), 2)
    for tag, plan in (("unsplit", plain), ("split", best)):
        try:
            c = check_in_tflm(plan, path, invocations=invocations)
            row[f"{tag}_tflm_head"] = c.tflm_arena_bytes_planned
            row[f"{tag}_identical"] = c.outputs_equal
            row["tflm_own_head"] = c.tflm_arena_bytes_original
        except Exception as e:  # noqa: BLE001 - one row says why
            row[f"{tag}_tflm_head"] = f"error: {str(e).splitlines()[0][:120]}"
            row[f"{tag}_identical"] = False
    head = row.get("split_tflm_head")
    row["ratio"] = round(row["unsplit_tflm_head"] / head, 3) if isinstance(head, int) and head else ""
    return row


def _child(one, args, q) -> None:
    try:
        q.put(one(*args))
    except Exception as e:  # noqa: BLE001 - the parent writes the row
        q.put({"model": args[0], "error": f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"})


def rows_in_own_processes(one, arg_tuples) -> list[dict]:
    """`one(*args)` for each tuple, each in a process of its own (one model's crash or leak
    is one row, `error`), rows printed as they come; shared with split_onnx_benchmark.py."""
    ctx, rows = mp.get_context("spawn"), []
    for args in arg_tuples:
        q = ctx.Queue()
        p = ctx.Process(target=_child, args=(one, args, q))
        p.start()
        row = q.get()
        p.join()
        rows.append(row)
        print(row, flush=True)
    return rows


def _vela(path: Path | None) -> dict[str, tuple[float, float]]:
    """Model name -> (Vela SRAM KiB with cascading, without), from a vela_baseline.py CSV
    (one row per model and cascading setting)."""
    if path is None or not path.is_file():
        return {}
    got: dict[str, dict[bool, float]] = {}
    with path.open() as f:
        for r in csv.DictReader(f):
            try:
                got.setdefault(r["model"], {})[r["cascading"] == "True"] = float(r["sram_kib"])
            except (KeyError, ValueError):
                continue
    return {m: (v[True], v[False]) for m, v in got.items() if True in v and False in v}


def _kib(v) -> str:
    return f"{v / 1024:.1f}" if isinstance(v, int) else str(v)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(default_models()), help="zoo names or .tflite paths, comma separated")
    ap.add_argument("--time-limit", type=float, default=60.0, help="seconds per plan (default 60)")
    ap.add_argument("--max-overhead", type=float, default=10.0, help="percent extra MACs (default 10)")
    ap.add_argument("--invocations", type=int, default=5, help="TFLM invocations per check (default 5)")
    ap.add_argument("--vela", type=Path, default=RESULTS / "vela_mcu.csv", help="a vela_baseline.py CSV")
    ap.add_argument("--tag", default="split_benchmark", help="results/<tag>.{csv,md}")
    args = ap.parse_args(argv)
    vela = _vela(args.vela)
    names = [m for m in args.models.split(",") if m]
    rows = rows_in_own_processes(_one, [(n, args.time_limit, args.max_overhead, args.invocations) for n in names])
    for row in rows:
        stem = Path(row["model"]).stem
        if stem in vela:
            row["vela_kib"], row["vela_nocascade_kib"] = vela[stem]
    RESULTS.mkdir(exist_ok=True)
    write_csv(rows, RESULTS / f"{args.tag}.csv")
    (RESULTS / f"{args.tag}.md").write_text(_markdown(rows, args))
    return 0


def _markdown(rows: list[dict], args) -> str:
    lines = [
        "# Row-stripe splitting on int8 TFLite models (TFLite Micro arena heads)",
        "",
        f"`python experiments/split_benchmark.py --models {args.models} --time-limit {args.time_limit:g} "
        f"--max-overhead {args.max_overhead:g}`; {machine()}.",
        "",
        "Arena heads in KiB as TFLite Micro reports them running our exported plan; `identical`: outputs "
        "equal to the original model's in TFLM over the invocations. Vela: `--optimise Size` SRAM "
        "(Ethos-U55, Shared_Sram) with / without cascading, where measured.",
        "",
        "| model | ops | unsplit KiB | split KiB | ratio | identical | MACs + % | splits | Vela KiB (no cascade) | time s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | | | | | | | {r['error']} | | |")
            continue
        vela = f"{r['vela_kib']:.1f} ({r['vela_nocascade_kib']:.1f})" if "vela_kib" in r else ""
        ident = "yes" if r.get("unsplit_identical") and r.get("split_identical") else "NO"
        lines.append(
            f"| {r['model']} | {r['ops']} | {_kib(r['unsplit_tflm_head'])} ({r['unsplit_status']}) | "
            f"{_kib(r['split_tflm_head'])} ({r['split_status']}) | {r['ratio']} | {ident} | "
            f"{r['mac_overhead_pct']} | {r['splits']} | {vela} | {r['unsplit_s']} + {r['split_s']} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
