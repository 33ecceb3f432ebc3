"""Write the MCU zoo (planner.models.mcu_zoo) into a folder and run every model in TFLite Micro.

For each model: generate it (timed: architecture, calibration, quantisation, packing), write
``DIR/<name>.tflite``, run it in TFLM (`planner.tflm_runtime.tflm_run_full`) on random int8
inputs (as `planner run` draws them) and print one row: ops, parameters, multiply-accumulates,
file size, TFLM's arena head, how many of the inputs gave distinct outputs, and how closely
the int8 model follows its float reference on those inputs (mean |dequantised - float| of the
output, and how often the top class agrees, for classifiers).
Generation times are wall clock and move with the machine's load.

    python experiments/make_mcu_zoo.py --out mcu_zoo [--models a,b] [--inputs 8] [--md FILE]

``--md`` also writes the table as markdown (experiments/results/mcu_zoo.md is made so).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from planner.models import mcu_zoo
from planner.models.tflite import load_tflite
from planner.models.tflite_writer import write
from planner.tflm_check import random_invocations
from planner.tflm_runtime import tflm_run_full

COLUMNS = [
    "model",
    "ops",
    "params",
    "MACs",
    "file B",
    "TFLM arena head B",
    "distinct",
    "mean abs int8-float",
    "top-1",
    "gen s",
]


def row(name: str, out: Path, inputs: int) -> dict[str, object]:
    """Generate, write and run one model; its row of the table."""
    t0 = time.perf_counter()
    net = mcu_zoo.network(name)
    desc = f"planner.models.mcu_zoo {name} (generator {mcu_zoo.generator_version()}): {mcu_zoo.MCU_MODELS[name]}"
    path = out / f"{name}.tflite"
    data = write(path, mcu_zoo.to_tflite(net, desc))
    seconds = time.perf_counter() - t0
    if data != mcu_zoo.build(name):
        raise SystemExit(f"{name}: the script's bytes are not build()'s")
    invs = random_invocations(path, inputs, seed=0)
    run = tflm_run_full(path, invs)
    outs = np.stack([o[0] for o in run.outputs]).reshape(inputs, -1)
    s_in, zp_in = mcu_zoo.quant_params(*net.input_range)
    ref = mcu_zoo.forward(net, np.concatenate([(i[0].astype(np.float64) - zp_in) * s_in for i in invs]))
    scale, zp = mcu_zoo.activation_quant(net)[net.output]
    got = (outs.astype(np.float64) - zp) * scale
    ref = ref.reshape(got.shape)
    classifier = net.layers[-1].op == "softmax"
    params = sum(lay.weight.size + lay.bias.size for lay in net.layers if lay.weight is not None)
    return {
        "model": name,
        "ops": len(load_tflite(path).ops),
        "params": params,
        "MACs": mcu_zoo.macs(net),
        "file B": len(data),
        "TFLM arena head B": run.arena_head,
        "distinct": f"{len({r.tobytes() for r in outs})}/{inputs}",
        "mean abs int8-float": f"{np.abs(got - ref).mean():.4f}",
        "top-1": f"{np.mean(got.argmax(1) == ref.argmax(1)):.2f}" if classifier else "",
        "gen s": f"{seconds:.2f}",
    }


def markdown(rows: list[dict[str, object]], argv: list[str]) -> str:
    """The table as markdown, with the command and the machine that made it."""
    head = [
        "# The MCU zoo in TFLite Micro",
        "",
        f"`python experiments/make_mcu_zoo.py {' '.join(argv)}` on {platform.machine()}, {os.cpu_count()} cores, "
        f"generator {mcu_zoo.generator_version()}, load average {os.getloadavg()[0]:.2f} at the end. "
        "`distinct`: random int8 inputs with distinct outputs; `mean abs int8-float`: the dequantised TFLM output against the calibrated float model on the same "
        "inputs; `top-1`: how often their top classes agree; `gen s`: generation (architecture, calibration, "
        "quantisation, packing), without the TFLM run.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---" if c == "model" else "---:" for c in COLUMNS) + "|",
    ]
    body = [
        "| " + " | ".join(f"{r[c]:,}" if isinstance(r[c], int) else str(r[c]) for c in COLUMNS) + " |" for r in rows
    ]
    return "\n".join(head + body) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write every (or each named) MCU zoo model into --out and print the table."""
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="folder the .tflite files go to")
    p.add_argument("--models", default=",".join(mcu_zoo.MCU_MODELS), help="comma-separated names (default: all)")
    p.add_argument("--inputs", type=int, default=8, help="random int8 inputs each model runs on")
    p.add_argument("--md", type=Path, help="also write the table as markdown here")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    print(" | ".join(COLUMNS))
    for name in args.models.split(","):
        r = row(name.strip(), args.out, args.inputs)
        rows.append(r)
        print(" | ".join(f"{r[c]:,}" if isinstance(r[c], int) else str(r[c]) for c in COLUMNS), flush=True)
    if args.md:
        args.md.write_text(markdown(rows, argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
