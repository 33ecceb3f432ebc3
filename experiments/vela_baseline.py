"""Arm Vela's SRAM for int8 TFLite models on an Ethos-U55, as a baseline (experiments only).

Vela (``ethos-u-vela``, Arm's Ethos-U compiler, measured with 5.2.0) is not a dependency of
the planner. Install it into its own venv::

    python -m venv /work/venv-vela && /work/venv-vela/bin/pip install ethos-u-vela

Each model is compiled twice, in a temporary output directory, with cascading and with
``--disable-cascading``; the exact command line is::

    vela MODEL.tflite --output-dir TMP --config Arm/vela.ini \\
         --accelerator-config ethos-u55-128 --system-config Ethos_U55_High_End_Embedded \\
         --memory-mode Shared_Sram --optimise Size [--disable-cascading]

``--config Arm/vela.ini`` is the ini file shipped in the wheel
(``ethosu/config_files/Arm/vela.ini``; ``vela --list-config-files`` lists them). Its
``[Memory_Mode.Shared_Sram]`` section says ``const_mem_area=Axi1`` (weights, biases and
the command stream stay in flash), ``arena_mem_area=Axi0`` and ``cache_mem_area=Axi0``
(the tensor arena and the staging/cache area are both the SRAM, shared with the
Cortex-M). ``--system-config`` picks a ``[System_Config.NAME]`` section (clocks and
latencies; it maps Axi0 to Sram, Axi1 to OffChipFlash), ``--memory-mode`` a
``[Memory_Mode.NAME]`` one. Ethos_U55_High_End_Embedded with ethos-u55-128 and
Shared_Sram is, to our knowledge, Arm's ML Embedded Evaluation Kit default (Corstone-300);
``--accelerator``, ``--system-config`` and ``--memory-mode`` change them. In
Shared_Sram + Size mode ``--arena-cache-size`` is ignored: Vela minimises the peak.

Vela 5.x compiles with its C++ core (Regor) by default; ``--disable-cascading`` (marked
deprecated in 5.2.0 but still honoured by Regor: it adds ``disable_feature=Cascading`` to
the scheduler options) is ignored by the legacy Python core
(``--debug-force-legacy-core``), so do not pass that through ``--vela-arg`` here.

What "Total SRAM used" counts (Shared_Sram; from ``ethosu/vela/stats_writer.py`` and
``tensor_allocation.py``/``scheduler.py``, checked with ``--verbose-allocation`` on the
probes of ``int8_tflite_models.py``):

- It is the peak of one allocation of the SRAM arena (Regor: "Allocation, memory Sram,
  usage mask: FeatureMap|Staging", the HillClimb allocator by default; the legacy core:
  every tensor of MemType Scratch/Scratch_fast of the root graph). It is the size of the
  ``scratch`` tensor Vela writes into the output .tflite (probe_chain: 77824 B = 76.00
  KiB), so yes, it counts the NPU scratch, and it is all of it; the output's
  ``OfflineMemoryAllocation`` metadata places the network input and output inside it.
- It INCLUDES the network input and output tensors (probe_conv: 32 KiB in + 32 KiB out =
  64.00 KiB) with their real lifetimes (the input is freed after its last reader, the
  output allocated at its producer), and the feature maps of CPU-fallback ops.
- It includes the cascade rolling (stripe) buffers and any weight/LUT buffers staged in
  SRAM. Feature maps stored in Vela's NHCWB16 brick format have their channels rounded up
  to 16 (a 64x64x8 int8 intermediate takes 64 KiB, not 32).
- It does NOT include weights/biases/command stream ("Total Off-chip Flash used"), TFLM's
  persistent allocations (interpreter structs, resource variables), nor the scratch
  buffers that CPU-fallback kernels request from TFLM (e.g. CMSIS-NN im2col): the real
  TFLM arena is larger.

How cascading picks stripes (legacy ``cascade_builder.py``/``scheduler.py``; Regor's source
is not in the wheel, but it gives the same peaks here: probe_chain 76 KiB, resnet8 35 KiB):
1. A MIN schedule gives every op the smallest OFM stripe (height = the next op's stride);
   cascades are chains of single-consumer NPU ops whose whole OFM is not needed by the next.
2. Walking the chain, each next op is added while the cascade (full first IFM + rolling
   buffers of height producer_stripe + consumer_input_stripe, rounded, NHCWB16 depth +
   last full OFM) is smaller than the best cascade so far or than running the op alone.
3. With --optimise Size the SRAM limit becomes the MIN schedule's peak; each cascade is then
   re-tried with taller final stripes (heights min+1 .. H/2, propagated upward through each
   op's IFM needs), keeping the tallest that fits that limit without splitting the cascade.

    python experiments/vela_baseline.py MODEL.tflite DIR ... --tag NAME [--vela PATH]

writes ``experiments/results/vela_NAME.csv`` and ``.md``. A model Vela fails on gets a row
with the reason. ``experiments/int8_tflite_models.py`` writes small synthetic test models.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from planner.sweep.summary import write_csv

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_VELA = "/work/venv-vela/bin/vela"
TYPE_BYTES = {"INT8": 1, "UINT8": 1, "INT16": 2, "FLOAT16": 2, "INT32": 4, "FLOAT32": 4, "INT64": 8, "BOOL": 1}


@dataclass
class Row:
    model: str
    cascading: bool
    sram_kib: float | None = None  # "Total SRAM used"
    io_kib: float | None = None  # main subgraph's input + output tensors (from the .tflite)
    flash_kib: float | None = None  # "Total Off-chip Flash used" (weights, command stream)
    npu_ops: int | None = None
    cpu_ops: int | None = None
    sram_fm_read_bytes: int | None = None  # feature-map traffic per inference
    sram_fm_write_bytes: int | None = None
    sram_weight_read_bytes: int | None = None
    flash_weight_read_bytes: int | None = None  # weight traffic from flash
    encoded_weight_bytes: int | None = None
    macs: int | None = None
    npu_cycles: int | None = None
    total_cycles: int | None = None
    compile_s: float | None = None
    error: str = ""
    path: str = ""


def vela_command(vela: str, model: Path, out_dir: Path, args: argparse.Namespace, cascading: bool) -> list[str]:
    cmd = [vela, str(model), "--output-dir", str(out_dir), "--config", args.config]
    cmd += ["--accelerator-config", args.accelerator, "--system-config", args.system_config]
    cmd += ["--memory-mode", args.memory_mode, "--optimise", "Size"]
    return cmd + ([] if cascading else ["--disable-cascading"]) + list(args.vela_arg)


def _num(text: str, label: str) -> float | None:
    m = re.search(rf"^{re.escape(label)}\s+([-\d.]+)", text, re.M)
    return float(m.group(1)) if m else None


def _failure(out: str, rc: int) -> str:
    lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
    errors = [ln for ln in lines if re.match(r"(Error|.*Error:|Exception)", ln)]
    return f"rc {rc}: " + ((errors or lines or ["no output"])[-1])[:200]


def io_kib(model: Path) -> float | None:
    """Bytes of the main subgraph's inputs and outputs (None when unreadable)."""
    try:
        from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as s

        m = s.ModelT.InitFromPackedBuf(model.read_bytes(), 0)
        names = {v: k for k, v in vars(s.TensorType).items() if not k.startswith("_")}
        sg = m.subgraphs[0]
        total = sum(
            math.prod(int(d) for d in sg.tensors[i].shape) * TYPE_BYTES.get(names[sg.tensors[i].type], 0)
            for i in [*sg.inputs, *sg.outputs]
        )
        return total / 1024
    except Exception:  # noqa: BLE001 - a column we can leave empty
        return None


def run_one(vela: str, model: Path, args: argparse.Namespace, cascading: bool) -> Row:
    row = Row(model.stem, cascading, io_kib=io_kib(model), path=str(model))
    with tempfile.TemporaryDirectory(prefix="vela_") as tmp:
        cmd = vela_command(vela, model, Path(tmp), args, cascading)
        t0 = time.perf_counter()
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            row.error = f"timeout after {args.timeout:g} s"
            return row
        except OSError as e:
            row.error = f"cannot run {vela}: {e}"
            return row
        row.compile_s = round(time.perf_counter() - t0, 2)
        out = p.stdout + "\n" + p.stderr
        if p.returncode != 0 or "Network summary" not in out:
            row.error = _failure(out, p.returncode)
            return row
        cpu, npu = _num(out, "CPU operators ="), _num(out, "NPU operators =")
        row.cpu_ops, row.npu_ops = (None if v is None else int(v) for v in (cpu, npu))
        row.sram_kib = _num(out, "Total SRAM used")  # printed only when > 0
        row.flash_kib = _num(out, "Total Off-chip Flash used")
        if row.sram_kib is None:
            row.error = f"no SRAM line (NPU ops: {row.npu_ops}, CPU ops: {row.cpu_ops}): nothing for Vela to plan"
            return row
        summaries = list(Path(tmp).glob("*_summary_*.csv"))
        if summaries:  # exact byte counts and cycles (stdout rounds to 0.01 MB)
            with open(summaries[0], newline="") as f:
                s = next(csv.DictReader(f), {})
            for name, key in [
                ("sram_fm_read_bytes", "sram_feature_map_read_bytes"),
                ("sram_fm_write_bytes", "sram_feature_map_write_bytes"),
                ("sram_weight_read_bytes", "sram_weight_read_bytes"),
                ("flash_weight_read_bytes", "off_chip_flash_weight_read_bytes"),
                ("encoded_weight_bytes", "total_npu_encoded_weights"),
                ("macs", "nn_macs"),
                ("npu_cycles", "cycles_npu"),
                ("total_cycles", "cycles_total"),
            ]:
                if s.get(key) not in (None, ""):
                    setattr(row, name, int(float(s[key])))
    return row


def find_models(items: list[str]) -> list[Path]:
    out: list[Path] = []
    for it in items:
        p = Path(it)
        if p.is_dir():
            out += sorted(p.rglob("*.tflite"))
        elif p.is_file():
            out.append(p)
        else:
            sys.exit(f"vela_baseline: no such file or folder: {it}")
    return out


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.2f}"
    if isinstance(v, int) and abs(v) >= 1000:
        return f"{v:,}"
    return str(v)


def markdown(rows: list[Row], header: str) -> str:
    cols = [
        ("model", "model"),
        ("cascading", "cascading"),
        ("SRAM KiB", "sram_kib"),
        ("I/O KiB", "io_kib"),
        ("flash KiB", "flash_kib"),
        ("NPU/CPU ops", None),
        ("SRAM fm read B", "sram_fm_read_bytes"),
        ("SRAM fm write B", "sram_fm_write_bytes"),
        ("flash weight read B", "flash_weight_read_bytes"),
        ("MACs", "macs"),
        ("total cycles", "total_cycles"),
        ("error", "error"),
    ]
    lines = [header, "", "| " + " | ".join(c for c, _ in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for _, key in cols:
            if key is None:
                cells.append(f"{_fmt(r.npu_ops)}/{_fmt(r.cpu_ops)}")
            elif key == "cascading":
                cells.append("on" if r.cascading else "off")
            else:
                v = getattr(r, key)
                cells.append(_fmt(v) if v != "" else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help=".tflite files and/or folders (searched recursively)")
    ap.add_argument("--tag", required=True, help="results go to experiments/results/vela_TAG.{csv,md}")
    default_vela = DEFAULT_VELA if os.access(DEFAULT_VELA, os.X_OK) else (shutil.which("vela") or "vela")
    ap.add_argument("--vela", default=default_vela, help=f"the vela executable (default: {default_vela})")
    ap.add_argument("--config", default="Arm/vela.ini")
    ap.add_argument("--accelerator", default="ethos-u55-128")
    ap.add_argument("--system-config", default="Ethos_U55_High_End_Embedded")
    ap.add_argument("--memory-mode", default="Shared_Sram")
    ap.add_argument("--vela-arg", action="append", default=[], help="extra argument passed to vela (repeatable)")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per compilation")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--note", default="", help="a paragraph for the markdown file (where the models come from)")
    args = ap.parse_args(argv)

    try:
        ver = subprocess.run([args.vela, "--version"], capture_output=True, text=True).stdout.strip()
    except OSError as e:
        sys.exit(f"vela_baseline: cannot run {args.vela}: {e}")
    rows = []
    for model in find_models(args.models):
        for cascading in (True, False):
            r = run_one(args.vela, model, args, cascading)
            rows.append(r)
            print(f"{r.model:24} cascading={'on ' if cascading else 'off'} SRAM {_fmt(r.sram_kib):>8} KiB {r.error}")

    args.out.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = args.out / f"vela_{args.tag}.csv", args.out / f"vela_{args.tag}.md"
    write_csv([dataclasses.asdict(r) for r in rows], csv_path)
    cmd = " ".join(vela_command("vela", Path("MODEL.tflite"), Path("TMP"), args, True)) + " [--disable-cascading]"
    header = "\n\n".join(
        [
            f"# Vela {ver} baseline: {args.tag}",
            f"`{cmd}`",
            'SRAM KiB is Vela\'s "Total SRAM used": the peak of its SRAM arena, network input and output'
            " included (see the docstring of experiments/vela_baseline.py). Traffic is bytes per inference.",
            *([args.note] if args.note else []),
        ]
    )
    md_path.write_text(markdown(rows, header))
    print(f"wrote {csv_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
