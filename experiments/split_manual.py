"""One hand-chosen split of a model, planned and proven in TFLite Micro: what the
transformation reaches where the greedy search (solvers/split_search.py) stops short.

    python experiments/split_manual.py mobilenet_v2_100_224 0:5:16:r,6:9:8:c,10:12:8:c --time-limit 120

Each split is `first_op:last_op:stripes:r|c|q|p` (r: halo rows computed again, c: copied
from the previous stripe; q, p: the same with every window op computing exactly its rows
behind a PAD instead of SAME on the stripe; op indices of the model as imported). The plan is made by `auto` for a
board without LLB (TFLM lifetimes, shared bytes), exported into the split model and run in
TFLM next to the original model; prints arena, TFLM's head, identical outputs, MACs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def main(argv: list[str] | None = None) -> int:
    from split_benchmark import mcu_target

    from planner.macs import total_macs
    from planner.models.split import StripeSplit, load_split, model_regions
    from planner.models.zoo import load_model, locate
    from planner.solvers.base import SolveOptions
    from planner.solvers.registry import get_solver
    from planner.tflm_check import check_in_tflm

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("splits")
    ap.add_argument("--time-limit", type=float, default=60.0)
    args = ap.parse_args(argv)
    target = mcu_target()
    g = load_model(args.model)
    regions = {(r.ops[0], r.ops[-1]): r for r in model_regions(g, 64) if r.kind == "rows"}
    splits = []
    for part in args.splits.split(","):
        a, b, k, how = part.split(":")
        splits.append(StripeSplit(regions[(int(a), int(b))], int(k), how in "cp", how not in "pq", target.alignment))
    split = load_split(g, splits)
    plain = get_solver("auto")(g, target, SolveOptions(time_limit=args.time_limit))
    plan = get_solver("auto")(split, target, SolveOptions(time_limit=args.time_limit))
    path = args.model if Path(args.model).is_file() else locate(args.model)
    check = check_in_tflm(plan, path, invocations=5)
    print(
        f"{args.model} {args.splits}: unsplit {plain.metrics.arena_bytes} B ({plain.solver.status}), "
        f"split {plan.metrics.arena_bytes} B ({plan.solver.status}), "
        f"{plain.metrics.arena_bytes / plan.metrics.arena_bytes:.2f}x; TFLM head {check.tflm_arena_bytes_planned} B, "
        f"outputs identical: {check.outputs_equal}; MACs +{total_macs(split) / total_macs(g) - 1:.1%}"
    )
    return 0 if check.ok else 1


if __name__ == "__main__":
    sys.exit(main())
