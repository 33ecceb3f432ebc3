"""Write a plan into a .tflite so an unchanged TFLite Micro runtime uses our arena.

Two edits to the flatbuffer (DESIGN §6):

1. the operators of subgraph 0 are rewritten in the plan's order (TFLM runs them in
   flatbuffer order);
2. the offsets go into the `OfflineMemoryAllocation` metadata: a buffer of little-endian
   int32 ``[1, n_subgraphs, n_tensors_total, offset_0 .. offset_{n-1}]``, one entry per
   tensor over all subgraphs in order, ``-1`` = TFLM places it (constants, variables,
   tensors of other subgraphs, and anything our plan does not hold). Re-exporting
   replaces an existing entry.

TFLM does not validate offline plans: an overlap silently corrupts outputs. So before
writing, the plan is replayed by the simulator, and then checked again under TFLM's OWN
lifetimes (micro_allocation_info.cc): subgraph inputs live from before the first op,
an op's outputs from that op, a tensor until the last op reading it, subgraph outputs to
the end — a plan that loads an input late or frees an output early passes the simulator
but would be clobbered in TFLM, and is refused here.

A TFLM quirk the exporter works around: TFLM indexes the offline offsets with the
tensor's index *within its subgraph* for every subgraph, so tensor j of subgraph 1 picks
up entry j (which belongs to subgraph 0). If such a tensor is one TFLM allocates (e.g. a
VAR_HANDLE's resource handle in the CALL_ONCE init graph) and entry j holds an offset,
it would be pinned on top of subgraph 0's tensor j. The exporter renumbers that
subgraph's tensors so that every allocated one lands on an index whose entry is -1; where
no such index exists it gives up the offset of subgraph 0's tensor j (TFLM then places
that one itself; reported in `TfliteExport.demoted`). Either way the file stays correct
whether TFLM reads the entries by local or by global index.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from planner.models.tflite import (
    METADATA_NAME,
    TfliteModelError,
    fold_fp16_dequantize,
    load_tflite,
    pack_model,
    read_model,
    schema,
    tflm_allocates,
    tflm_gaps,
)
from planner.plan import Plan, Stage, plan_mismatch
from planner.simulate import Simulation, check

MAX_OFFLINE = (1 << 31) - 1  # OfflineMemoryAllocation entries are int32


class ExportError(ValueError):
    """The plan cannot be written into this model (one line says why)."""


@dataclass
class TfliteExport:
    """What the TFLite export wrote: how many tensors carry our offsets, how many TFLM
    still places, the top of the offline plan, and what had to be given back or renumbered."""

    planned: int  # tensors of subgraph 0 with an offline offset
    online: int  # tensors TFLM still places itself (all subgraphs)
    arena_bytes: int  # top of the offline plan (raw bytes)
    demoted: list[str] = field(default_factory=list)  # planned tensors given back to TFLM
    renumbered: dict[int, int] = field(default_factory=dict)  # subgraph -> tensors renumbered
    folded: int = 0  # DEQUANTIZE ops of float16 weights folded into float32 weights (--fold-fp16)
    warnings: list[str] = field(default_factory=list)  # what TFLM cannot run in the written model


def _tflm_intervals(plan: Plan, planned: dict[str, int]) -> dict[str, tuple[int, int]]:
    """TFLM's lifetime (first, last op position, inclusive) of each planned tensor."""
    g = plan.graph
    pos = {o: i for i, o in enumerate(plan.order)}
    end = max(len(pos) - 1, 0)
    out: dict[str, tuple[int, int]] = {}
    for t in planned:
        uses = [pos[c] for c in g.consumers[t]]
        x = g.tensors[t]
        if x.kind == "input":
            start = 0
        else:
            start = pos[g.producer[t]]
        last = max([start, *uses])
        if x.kind == "output":
            last = end
        out[t] = (start, last)
    return out


def _share_groups(plan: Plan) -> dict[str, str]:
    """tensor -> a representative of the tensors the plan lets share its bytes (declared
    shares, transitively): overlaps inside a group are the plan's intent, checked by the
    simulator, and TFLM's kernels for those ops read each element before writing it."""
    parent: dict[str, str] = {}

    def find(t: str) -> str:
        while parent.get(t, t) != t:
            t = parent[t]
        return t

    for st in plan.stages:
        for x in st.shares:
            a, b = find(x.child), find(x.parent)
            if a != b:
                parent[a] = b
    return {t: find(t) for t in parent}


def _check_tflm_overlaps(plan: Plan, planned: dict[str, int]) -> None:
    """No two planned tensors overlap in bytes while both are live under TFLM's lifetimes,
    except tensors that share bytes by a declared share."""
    g = plan.graph
    group = _share_groups(plan)
    ivs = _tflm_intervals(plan, planned)
    items = sorted(planned, key=lambda t: ivs[t][0])
    active: list[str] = []
    for t in items:
        s, e = ivs[t]
        active = [u for u in active if ivs[u][1] >= s]
        a0, a1 = planned[t], planned[t] + g.size(t)
        for u in active:
            b0, b1 = planned[u], planned[u] + g.size(u)
            if a0 < b1 and b0 < a1 and group.get(t, t) != group.get(u, u):
                raise ExportError(
                    f"under TFLM's lifetimes {t} [{a0}, {a1}) at ops {s}..{e} overlaps {u} [{b0}, {b1}) "
                    f"at ops {ivs[u][0]}..{ivs[u][1]} (TFLM keeps inputs from the start and outputs to the end; "
                    "plan with --lifetimes tflm)"
                )
        active.append(t)


def _renumber(model, k: int, perm: dict[int, int]) -> None:
    """Swap tensor indices of subgraph k (perm maps old -> new, a permutation)."""
    sg = model.subgraphs[k]
    tens = list(sg.tensors)
    new = list(tens)
    for a, b in perm.items():
        new[b] = tens[a]
    sg.tensors = new

    def m(v):
        if v is None:
            return None
        return np.array([perm.get(int(i), int(i)) if i >= 0 else int(i) for i in v], dtype=np.int32)

    for op in sg.operators or []:
        op.inputs, op.outputs = m(op.inputs), m(op.outputs)
        if op.intermediates is not None:
            op.intermediates = m(op.intermediates)
    sg.inputs, sg.outputs = m(sg.inputs), m(sg.outputs)
    for sd in model.signatureDefs or []:
        if sd.subgraphIndex == k:
            for tm in list(sd.inputs or []) + list(sd.outputs or []):
                tm.tensorIndex = perm.get(tm.tensorIndex, tm.tensorIndex)


def _fix_local_index_aliasing(model, flat: list[int], index_name: dict[int, str], report: TfliteExport) -> None:
    for k in range(1, len(model.subgraphs)):
        n = len(model.subgraphs[k].tensors or [])
        alloc = {j for j in range(n) if tflm_allocates(model, k, j)}
        bad = [j for j in sorted(alloc) if j < len(flat) and flat[j] != -1]
        if not bad:
            continue
        free = [j for j in range(n) if j not in alloc and (j >= len(flat) or flat[j] == -1)]
        perm: dict[int, int] = {}
        for j in bad:
            if free:
                f = free.pop(0)
                perm[j], perm[f] = f, j
            else:
                report.demoted.append(index_name.get(j, f"#{j}"))
                flat[j] = -1
        if perm:
            _renumber(model, k, perm)
            report.renumbered[k] = len(perm) // 2


def export_tflite(plan: Plan, model_in: str | Path, model_out: str | Path, fold_fp16: bool = False) -> TfliteExport:
    """Write `model_in` with the plan's op order and offline offsets to `model_out`.

    `fold_fp16` first folds float16 weights behind DEQUANTIZE into float32 weights
    (`planner.models.tflite.fold_fp16_dequantize`), so that TFLM, which cannot dequantize
    float16, runs the model; the plan (made for the model as it is) loses those ops and
    their outputs, which become weights. `warnings` says what TFLM still cannot run."""
    sim = check(plan)  # raises PlanError: TFLM would not notice an invalid plan
    if plan.spills:
        raise ExportError(
            "the plan spills activations (L/S of activations); TFLite Micro cannot express "
            "spills — plan without spilling (a no-spill solver or a larger budget)"
        )
    model, graph = _model_for(plan, model_in)
    mismatch = plan_mismatch(plan, graph)
    if mismatch:
        raise ExportError(mismatch)
    folded = 0
    if fold_fp16:
        plan, graph, sim, folded = _fold(plan, graph, model, Path(model_out))
    planned = _planned_offsets(plan, graph, model, sim)
    n_per_sg = [len(sg.tensors or []) for sg in model.subgraphs]
    flat = [-1] * sum(n_per_sg)
    info = graph.source.details
    for t, off in planned.items():
        flat[info.tensor_index[t]] = int(off)
    report = TfliteExport(
        planned=len(planned), online=0, arena_bytes=max((o + plan.graph.size(t) for t, o in planned.items()), default=0)
    )
    report.folded, report.warnings = folded, tflm_gaps(graph)
    index_name = {i: n for n, i in info.tensor_index.items()}
    _fix_local_index_aliasing(model, flat, index_name, report)
    report.planned = sum(1 for v in flat if v != -1)
    report.online = (
        sum(1 for k, n in enumerate(n_per_sg) for j in range(n) if tflm_allocates(model, k, j)) - report.planned
    )

    _write(model, info.subgraph, [info.op_index[name] for name in plan.order], flat, model_out)
    return report


def _model_for(plan: Plan, model_in: str | Path):
    """(ModelT, Graph) of the model the plan was made for: the file itself, or, for a plan
    of a split model (its ``transforms`` say how), the file split again the same way: the
    plan's offsets go into the transformed model, which TFLM then runs."""
    from planner.models.split import SplitError, load_split, recorded_splits

    graph = _import(model_in)
    splits = recorded_splits(plan.graph)
    if not splits:
        return read_model(model_in)[0], graph
    try:
        graph = load_split(graph, splits)
    except SplitError as e:
        raise ExportError(str(e)) from e
    return schema().ModelT.InitFromPackedBuf(graph.source.transforms[-1].model, 0), graph


def _import(path: str | Path):
    try:
        return load_tflite(path)
    except TfliteModelError as e:
        raise ExportError(str(e)) from e


def _planned_offsets(plan: Plan, graph, model, sim: Simulation) -> dict[str, int]:
    """Tensor -> offline offset: one residency per tensor at one offset (TFLM gives each
    tensor one buffer), only tensors TFLM allocates, 4-byte aligned, within int32, and no
    overlap under TFLM's own lifetimes."""
    info = graph.source.details
    planned: dict[str, int] = {}
    for r in sim.residencies:
        t, off = r.tensor, r.offset
        if t in info.control:
            continue
        if t in planned and planned[t] != off:
            raise ExportError(
                f"tensor {t} is placed at two offsets ({planned[t]} and {off}); "
                "TFLite Micro gives every tensor one buffer"
            )
        planned[t] = off
    planned = {
        t: o for t, o in planned.items() if t in info.tensor_index and tflm_allocates(model, 0, info.tensor_index[t])
    }
    bad_align = [t for t, o in planned.items() if o % 4]
    if bad_align:
        raise ExportError(f"offset of {bad_align[0]} is not a multiple of 4; TFLM kernels need aligned buffers")
    too_far = [t for t, o in planned.items() if o + graph.size(t) > MAX_OFFLINE]
    if too_far:
        t = too_far[0]
        raise ExportError(
            f"tensor {t} at offset {planned[t]} ({graph.size(t)} B) ends past 2**31: TFLM's offline plan holds "
            "int32 offsets, and its arena is at most 2 GiB"
        )
    _check_tflm_overlaps(plan, planned)
    return planned


def _fold(plan: Plan, original, model, out: Path) -> tuple[Plan, object, Simulation, int]:
    """Fold float16 weights in `model` (in place) and map the plan onto the folded graph:
    the DEQUANTIZE ops' R stages and their outputs' stages go, the other ops are renamed
    by their new index. The plan is replayed again on the folded graph."""
    import tempfile

    before = len(model.subgraphs[0].operators or [])
    new_index = fold_fp16_dequantize(model)
    folded = before - len(new_index)
    if not folded:
        raise ExportError("--fold-fp16: the model has no DEQUANTIZE of float16 weights to fold")
    with tempfile.TemporaryDirectory(prefix="planner-fold-") as tmp:
        tmp_model = Path(tmp) / out.name
        tmp_model.write_bytes(pack_model(model))
        graph = _import(tmp_model)
    gone = {t for t, x in graph.tensors.items() if x.kind == "weight"} & {
        t for t, x in plan.graph.tensors.items() if x.kind != "weight"
    }
    stages = []
    for s in plan.stages:
        if s.kind == "R":
            op = original.op(s.name)  # the plan's op names are the original graph's (plan_mismatch)
            k = op.attrs["index"]
            if k not in new_index:
                continue
            name = f"{new_index[k]}:{op.type}"
            offs = {t: o for t, o in (s.offsets or {}).items() if t not in gone}
            shares = tuple(x for x in s.shares if x.child not in gone and x.parent not in gone)
            stages.append(Stage("R", name, offsets=offs, shares=shares))
        elif s.name not in gone:
            stages.append(s)
    folded_plan = Plan(graph, plan.target, stages, plan.solver)
    return folded_plan, graph, check(folded_plan), folded


def _write(model, subgraph: int, order: list[int], flat: list[int], model_out: str | Path) -> None:
    """Reorder the operators of `subgraph`, set the metadata entry, pack, write."""
    n_per_sg = [len(sg.tensors or []) for sg in model.subgraphs]
    if len(flat) != sum(n_per_sg):
        raise ExportError(f"offline plan has {len(flat)} entries, the model has {sum(n_per_sg)} tensors")
    sg0 = model.subgraphs[subgraph]
    ops = list(sg0.operators or [])
    sg0.operators = [ops[k] for k in order]

    # Metadata: replace an existing entry, else append one.
    s = schema()
    payload = np.array([1, len(n_per_sg), len(flat), *flat], dtype="<i4").view(np.uint8)
    model.metadata = list(model.metadata or [])
    model.buffers = list(model.buffers or [])
    entry = next((m for m in model.metadata if (m.name or b"") in (METADATA_NAME, METADATA_NAME.encode())), None)
    if entry is not None and 0 < entry.buffer < len(model.buffers):
        model.buffers[entry.buffer].data = payload
        model.buffers[entry.buffer].offset = 0
        model.buffers[entry.buffer].size = 0
    else:
        buf = s.BufferT()
        buf.data = payload
        model.buffers.append(buf)
        md = s.MetadataT()
        md.name = METADATA_NAME
        md.buffer = len(model.buffers) - 1
        if entry is not None:
            entry.buffer = md.buffer
        else:
            model.metadata.append(md)
    Path(model_out).write_bytes(pack_model(model))


def write_unchecked(model_in: str | Path, model_out: str | Path, order: list[int], flat: list[int]) -> None:
    """Write an op order (operator indices) and raw offline offsets WITHOUT any check.

    For tests and experiments only (e.g. proving that TFLM silently corrupts outputs
    when handed an overlapping plan); `export_tflite` is the safe entry point.
    """
    model, _ = read_model(model_in)
    _write(model, 0, order, flat, model_out)


def read_offline_plan(path: str | Path) -> list[int] | None:
    """The offsets of a .tflite's OfflineMemoryAllocation entry (None when absent)."""
    model, _ = read_model(path)
    entries = [m for m in (model.metadata or []) if (m.name or b"") in (METADATA_NAME, METADATA_NAME.encode())]
    if not entries:
        return None
    raw = np.asarray(model.buffers[entries[0].buffer].data, dtype=np.uint8).tobytes()
    words = np.frombuffer(raw, dtype="<i4")
    return [int(v) for v in words[3 : 3 + int(words[2])]]


def count_offline_entries(path: str | Path) -> int:
    """How many OfflineMemoryAllocation entries a .tflite has (re-exports must keep one)."""
    model, _ = read_model(path)
    return sum(1 for m in (model.metadata or []) if (m.name or b"") in (METADATA_NAME, METADATA_NAME.encode()))
