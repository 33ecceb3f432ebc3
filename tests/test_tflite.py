"""TFLite in and out: import, plan, export the offline plan, run in TFLite Micro.

The end-to-end proof is TFLM itself: the exported model (our op order + our offsets in
the `OfflineMemoryAllocation` metadata) must give bit-identical outputs to the shipped
model over several stateful invocations, with an arena head no larger than TFLM's own.
"""

from __future__ import annotations

import importlib.metadata as md
from pathlib import Path

import numpy as np
import pytest

from planner.plan import Plan, Stage
from planner.simulate import PlanError, finalize
from planner.solvers.base import SolveOptions
from planner.solvers.registry import get_solver
from planner.target import get_target

pytest.importorskip("tflite_micro", reason="needs the TFLite Micro wheel: pip install --no-deps tflite-micro")

from planner.export.tflm import (  # noqa: E402
    ExportError,
    count_offline_entries,
    export_tflite,
    read_offline_plan,
    write_unchecked,
)
from planner.graph import Graph  # noqa: E402
from planner.models.tflite import load_tflite, read_model, tflm_allocates  # noqa: E402
from planner.tflm_runtime import tflm_run_full  # noqa: E402

WAKEWORD_INSTALL = "pip install --no-deps pymicro-wakeword==2.5.0"
WAKEWORDS = ["alexa", "hey_jarvis", "hey_mycroft", "okay_nabu"]
UNBOUNDED = get_target("unbounded")


def _wheel_file(dist: str, suffix: str, install: str) -> Path:
    try:
        d = md.distribution(dist)
    except md.PackageNotFoundError:
        pytest.skip(f"needs {dist}: {install}")
    for f in d.files or []:
        if str(f).endswith(suffix):
            return Path(d.locate_file(f))
    pytest.skip(f"{dist} has no {suffix}: {install}")


def sine_path() -> Path:
    return _wheel_file("tflite-micro", "sine_float.tflite", "pip install --no-deps tflite-micro")


def wakeword_path(name: str) -> Path:
    return _wheel_file("pymicro-wakeword", f"models/{name}.tflite", WAKEWORD_INSTALL)


def invocations(path: Path, n: int) -> list[list[np.ndarray]]:
    """Deterministic inputs; wake-word models answer non-trivially to [0, 127) features."""
    rng = np.random.default_rng(0)
    if "sine" in path.name:
        return [[rng.uniform(0, 6.28, size=(1, 1)).astype(np.float32)] for _ in range(n)]
    return [[rng.integers(0, 127, size=(1, 3, 40)).astype(np.int8)] for _ in range(n)]


def plan_for(path: Path, solver: str) -> Plan:
    g = load_tflite(path)
    return get_solver(solver)(g, UNBOUNDED, SolveOptions(workers=1, time_limit=5))


def roundtrip(path: Path, solver: str, tmp_path: Path, n_inv: int) -> tuple[int, int, Plan]:
    """Export a plan, run both models in TFLM, assert identical outputs; return heads."""
    plan = plan_for(path, solver)
    out = tmp_path / f"{path.stem}_{solver}.tflite"
    export_tflite(plan, path, out)
    invs = invocations(path, n_inv)
    ref = tflm_run_full(path, invs)
    got = tflm_run_full(out, invs)
    for k, (a, b) in enumerate(zip(ref.outputs, got.outputs, strict=True)):
        for x, y in zip(a, b, strict=True):
            assert np.array_equal(x, y), f"{path.stem}/{solver}: invocation {k} differs"
    assert got.arena_head <= ref.arena_head, (got.arena_head, ref.arena_head)
    return ref.arena_head, got.arena_head, plan


# -- import ------------------------------------------------------------------------------


def test_import_sine():
    g = load_tflite(sine_path())
    assert [o.type for o in g.ops] == ["FULLY_CONNECTED"] * 3
    assert [o.name for o in g.ops] == ["0:FULLY_CONNECTED", "1:FULLY_CONNECTED", "2:FULLY_CONNECTED"]
    assert len(g.inputs) == 1 and len(g.outputs) == 1
    assert g.tensors[g.inputs[0]].bytes == 4 and g.tensors[g.inputs[0]].dtype == "float32"
    assert len(g.weights) == 6
    info = g.source.details
    assert sorted(info.tensor_index.values()) == sorted(set(info.tensor_index.values()))
    assert all(g.op(n).attrs["index"] == i for n, i in info.op_index.items())


def test_import_wakeword_variables():
    path = wakeword_path("okay_nabu")
    g = load_tflite(path)
    model, _ = read_model(path)
    assert len(g.ops) == len(model.subgraphs[0].operators)
    types = {o.type for o in g.ops}
    assert {"CALL_ONCE", "VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE"} <= types
    # resource handles point at persistent memory in TFLM: 0 bytes in the plan
    handles = [t for t in g.tensors.values() if t.dtype == "resource"]
    assert handles and all(t.bytes == 0 for t in handles)
    # every variable is read before it is re-assigned, in any topological order
    for o in g.ops:
        if o.type == "ASSIGN_VARIABLE":
            h = o.inputs[0]
            reads = [c for c in g.consumers[h] if g.op(c).type == "READ_VARIABLE"]
            import networkx as nx

            assert all(nx.has_path(g.dag, r, o.name) for r in reads)
    # CALL_ONCE (init subgraph) precedes every variable op
    call = next(o.name for o in g.ops if o.type == "CALL_ONCE")
    import networkx as nx

    assert all(nx.has_path(g.dag, call, o.name) for o in g.ops if o.type == "VAR_HANDLE")
    # names map back to flatbuffer indices, stable across imports
    assert load_tflite(path).source.details.tensor_index == g.source.details.tensor_index


def test_not_a_tflite(tmp_path):
    from planner.models.errors import ModelError

    bad = tmp_path / "x.tflite"
    bad.write_bytes(b"\0" * 64)
    with pytest.raises(ModelError, match="not a TFLite flatbuffer"):
        load_tflite(bad)


def test_given_firstfit_matches_tflm_head():
    """Our lifetimes and sizes are TFLM's: its own order + first-fit gives its head."""
    path = wakeword_path("okay_nabu")
    plan = plan_for(path, "given-firstfit")
    assert plan.metrics.arena_bytes == tflm_run_full(path).arena_head


# -- export ------------------------------------------------------------------------------


def test_export_sine_roundtrip(tmp_path):
    orig, ours, _ = roundtrip(sine_path(), "best", tmp_path, 4)
    assert ours <= orig


def test_export_wakeword_roundtrip(tmp_path):
    orig, ours, plan = roundtrip(wakeword_path("okay_nabu"), "best", tmp_path, 20)
    assert ours < orig
    assert ours == -(-plan.metrics.arena_bytes // 16) * 16


@pytest.mark.slow
@pytest.mark.parametrize("solver", ["best", "given-firstfit"])
@pytest.mark.parametrize("name", ["sine_float", *WAKEWORDS])
def test_export_all_models(name, solver, tmp_path):
    path = sine_path() if name == "sine_float" else wakeword_path(name)
    orig, ours, _ = roundtrip(path, solver, tmp_path, 30)
    if solver == "given-firstfit":
        assert ours == orig


def test_unchecked_overlap_corrupts_outputs(tmp_path):
    """Why the checks matter: TFLM runs an overlapping offline plan and answers garbage."""
    path = sine_path()
    g = load_tflite(path)
    model, _ = read_model(path)
    flat = [-1] * sum(g.source.details.n_tensors)
    for i in g.source.details.tensor_index.values():
        if tflm_allocates(model, 0, i):
            flat[i] = 0
    bad = tmp_path / "bad.tflite"
    write_unchecked(path, bad, list(range(len(g.ops))), flat)
    invs = invocations(path, 3)
    a, b = tflm_run_full(path, invs).outputs, tflm_run_full(bad, invs).outputs
    assert not all(np.array_equal(x[0], y[0]) for x, y in zip(a, b, strict=True))


def test_overlapping_plan_refused(tmp_path):
    path = sine_path()
    plan = plan_for(path, "best")
    stages = list(plan.stages)
    rs = [i for i, s in enumerate(stages) if s.kind == "R"]
    first = stages[rs[0]]
    out0 = plan.graph.op(first.name).outputs[0]
    # put op 1's output on top of op 0's output while both are live
    s1 = stages[rs[1]]
    t1 = plan.graph.op(s1.name).outputs[0]
    stages[rs[1]] = Stage("R", s1.name, offsets={t1: first.offsets[out0]})
    bad = Plan(plan.graph, plan.target, stages, plan.solver)
    with pytest.raises(PlanError):
        export_tflite(bad, path, tmp_path / "x.tflite")
    assert not (tmp_path / "x.tflite").exists()


def test_spill_plan_refused(tmp_path):
    path = sine_path()
    plan = plan_for(path, "best")
    g = plan.graph
    stages = list(plan.stages)
    k = next(i for i, s in enumerate(stages) if s.kind == "R")
    t = g.op(stages[k].name).outputs[0]
    off = stages[k].offsets[t]
    stages[k + 1 : k + 1] = [Stage("S", t), Stage("F", t), Stage("L", t, offset=off)]
    spill = finalize(Plan(g, plan.target, stages, plan.solver))
    assert spill.spills
    with pytest.raises(ExportError, match="spill"):
        export_tflite(spill, path, tmp_path / "x.tflite")


def test_plan_for_other_model_refused(tmp_path):
    plan = plan_for(sine_path(), "best")
    assert plan.model_sha256  # a plan made through the library records its model too
    with pytest.raises(ExportError, match="different model"):
        export_tflite(plan, wakeword_path("alexa"), tmp_path / "x.tflite")
    # without a fingerprint (say, a hand-made plan) the graphs themselves are compared
    g = plan.graph
    anonymous = Plan(Graph(g.name, g.tensors.values(), g.ops), plan.target, plan.stages, plan.solver, plan.metrics)
    assert not anonymous.model_sha256
    with pytest.raises(ExportError, match="does not match"):
        export_tflite(anonymous, wakeword_path("alexa"), tmp_path / "x.tflite")


def test_reexport_replaces_metadata(tmp_path):
    path = wakeword_path("alexa")
    once = tmp_path / "once.tflite"
    export_tflite(plan_for(path, "given-firstfit"), path, once)
    assert count_offline_entries(once) == 1
    twice = tmp_path / "twice.tflite"
    plan2 = plan_for(once, "best")  # plan the already-exported model again
    export_tflite(plan2, once, twice)
    assert count_offline_entries(twice) == 1
    offs = read_offline_plan(twice)
    assert offs is not None and len(offs) == sum(load_tflite(twice).source.details.n_tensors)
    invs = invocations(path, 10)
    a, b = tflm_run_full(path, invs), tflm_run_full(twice, invs)
    assert all(np.array_equal(x[0], y[0]) for x, y in zip(a.outputs, b.outputs, strict=True))
    assert b.arena_head <= a.arena_head


def test_cli_export(tmp_path):
    from planner.cli import main

    path = sine_path()
    plan = plan_for(path, "best")
    pf = tmp_path / "p.json"
    plan.write(pf)
    assert main(["export", str(pf), "--format", "json", "-o", str(tmp_path / "o.json")]) == 0
    assert main(["export", str(pf), "--format", "c", "-o", str(tmp_path / "o.h")]) == 0
    assert "#ifndef PLAN_SINE_FLOAT_H" in (tmp_path / "o.h").read_text()
    assert main(["export", str(pf), "--format", "tflite", "-o", str(tmp_path / "o.tflite")]) == 2
    out = tmp_path / "o.tflite"
    assert main(["export", str(pf), "--format", "tflite", "--model", str(path), "-o", str(out)]) == 0
    assert count_offline_entries(out) == 1
    by_name = tmp_path / "by_name.tflite"
    assert main(["export", str(pf), "--format", "tflite", "--model", "sine_float", "-o", str(by_name)]) == 0
    assert by_name.read_bytes() == out.read_bytes()
    assert main(["export", str(pf), "--format", "tflite", "--model", "resnet8", "-o", str(by_name)]) == 2


def test_cli_run_executes_a_tflite_plan_in_tflm(tmp_path, capsys):
    """`planner run` on a .tflite: the plan exported and run by TFLM next to the original."""
    import json

    from planner.cli import main

    path = wakeword_path("okay_nabu")
    plan = plan_for(path, "auto")
    pf = tmp_path / "p.json"
    plan.write(pf)
    capsys.readouterr()
    assert main(["run", str(path), str(pf), "--invocations", "4", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["outputs_equal"] and d["ok"] and d["invocations"] == 4
    assert d["tflm_arena_bytes_planned"] <= d["tflm_arena_bytes_original"]
    other = tmp_path / "sine.json"
    plan_for(sine_path(), "best").write(other)
    assert main(["run", str(path), str(other)]) == 2  # a plan for another model
