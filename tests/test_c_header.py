"""The C header compiles warning-free (C99, -Wall -Wextra -Werror) and its step table is
sound: a tiny C program walks every step and placement and checks offset + bytes fits
in the arena and that the stages are well formed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from planner.export.c_header import c_identifier, c_string, export_c_header
from planner.graph import graph_from_records
from planner.plan import Plan, SolverInfo, Stage
from planner.simulate import PlanError, finalize
from planner.solvers.base import DoesNotFit, SolveOptions
from planner.solvers.registry import SOLVERS, get_solver
from planner.target import Target

GCC = shutil.which("gcc") or shutil.which("cc")

# awkward names on purpose: C keywords, digits first, quotes, trigraphs, UTF-8, collisions
NAMES = {"x": "in/put 0", "a": "1conv;relu", "b": 'q"uo\\te', "c": "tri??=graph", "d": "grüße", "e": "1conv:relu"}


def small_graph():
    recs = [
        ("op 1", [NAMES["x"]], [NAMES["a"]]),
        ("op-2", [NAMES["a"]], [NAMES["b"]]),
        ("op#3", [NAMES["a"]], [NAMES["c"]]),
        ("int", [NAMES["b"], NAMES["c"]], [NAMES["d"], NAMES["e"]]),
    ]
    sizes = {NAMES["x"]: 100, NAMES["a"]: 64, NAMES["b"]: 48, NAMES["c"]: 40, NAMES["d"]: 8, NAMES["e"]: 4}
    return graph_from_records("my-net v2", recs, sizes, inputs=[NAMES["x"]], outputs=[NAMES["d"], NAMES["e"]])


def nospill_plan() -> Plan:
    return get_solver("best")(small_graph(), Target("t", None), SolveOptions(workers=1))


def spill_plan() -> Plan:
    """From a registered spill solver under a tight budget if there is one, else by hand."""
    g = small_graph()
    for spec in SOLVERS.values():
        if spec.spills:
            try:
                p = spec.load()(g, Target("t", 192), SolveOptions(workers=1, time_limit=5))
            except (DoesNotFit, Exception):  # noqa: BLE001 - fall back to the hand-made plan
                continue
            if p.spills:
                return p
    x, a, b, c, d, e = (NAMES[k] for k in "xabcde")
    stages = [
        Stage("L", x, offset=0),
        Stage("R", "op 1", offsets={a: 112}),
        Stage("F", x),
        Stage("R", "op-2", offsets={b: 0}),
        Stage("S", b),  # spill b to make room
        Stage("F", b),
        Stage("R", "op#3", offsets={c: 0}),
        Stage("F", a),
        Stage("L", b, offset=48),
        Stage("R", "int", offsets={d: 112, e: 128}),
        Stage("F", b),
        Stage("F", c),
        Stage("S", d),
        Stage("S", e),
        Stage("F", d),
        Stage("F", e),
    ]
    p = finalize(Plan(g, Target("t", 192), stages, SolverInfo("hand", "heuristic")))
    assert p.spills
    return p


WALKER = r"""
#include <stdio.h>
#include <string.h>
#include "plan_a.h"
#include "plan_b.h"
#include "plan_a.h" /* include guard */

static int walk(const planner_step_t *steps, unsigned n, const planner_placement_t *pl, unsigned npl,
                unsigned arena, const uint32_t *tbytes, unsigned ntensors, unsigned nops) {
  unsigned i, k, runs = 0;
  for (i = 0; i < n; i++) {
    const planner_step_t *s = &steps[i];
    if (strchr("LRSF", s->stage) == NULL) return 1;
    if (s->offset + s->bytes > arena) return 2;
    if (s->stage == 'R') {
      if (s->index < 0 || (unsigned)s->index >= nops) return 3;
      if (s->num_outputs == 0 || s->first_output + s->num_outputs > npl) return 4;
      for (k = s->first_output; k < s->first_output + s->num_outputs; k++) {
        if (pl[k].offset + pl[k].bytes > arena) return 5;
        if (pl[k].tensor < 0 || (unsigned)pl[k].tensor >= ntensors) return 6;
        if (pl[k].bytes != tbytes[pl[k].tensor]) return 7;
      }
      runs++;
    } else {
      if (s->index < 0 || (unsigned)s->index >= ntensors) return 8;
      if (s->bytes != tbytes[s->index]) return 9;
    }
  }
  return runs == nops ? 0 : 10;
}

int main(void) {
  int r = walk(plan_a_steps, PLAN_A_NUM_STEPS, plan_a_placements, PLAN_A_NUM_PLACEMENTS, PLAN_A_ARENA_BYTES,
               plan_a_tensor_bytes, PLAN_A_NUM_TENSORS, PLAN_A_NUM_OPS);
  if (r) { printf("plan a: error %d\n", r); return r; }
  r = walk(plan_b_steps, PLAN_B_NUM_STEPS, plan_b_placements, PLAN_B_NUM_PLACEMENTS, PLAN_B_ARENA_BYTES,
           plan_b_tensor_bytes, PLAN_B_NUM_TENSORS, PLAN_B_NUM_OPS);
  if (r) { printf("plan b: error %d\n", r); return 20 + r; }
#ifdef PLANNER_WITH_NAMES
  printf("%s|%s|%s|%d\n", plan_b_tensor_names[1], plan_b_op_names[0], plan_a_op_types[0], (int)PLAN_B_T_1CONV_RELU);
#endif
  printf("ok %u %u\n", PLAN_A_ARENA_BYTES, PLAN_B_ARENA_BYTES);
  return 0;
}
"""


@pytest.mark.skipif(GCC is None, reason="needs a C compiler (gcc)")
@pytest.mark.parametrize("with_names", [False, True])
def test_header_compiles_and_walks(tmp_path: Path, with_names: bool):
    a, b = nospill_plan(), spill_plan()
    (tmp_path / "plan_a.h").write_text(export_c_header(a, prefix="PLAN_A"))
    (tmp_path / "plan_b.h").write_text(export_c_header(b, prefix="PLAN_B"))
    (tmp_path / "main.c").write_text(WALKER)
    flags = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"] + (["-DPLANNER_WITH_NAMES"] if with_names else [])
    exe = tmp_path / "walk"
    cc = subprocess.run([GCC, *flags, "-o", str(exe), str(tmp_path / "main.c")], capture_output=True, text=True)
    assert cc.returncode == 0, cc.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout
    assert run.stdout.strip().endswith(f"ok {a.metrics.arena_bytes} {b.metrics.arena_bytes}")
    if with_names:
        g = b.graph
        names = list(g.tensors)
        first = run.stdout.splitlines()[0].split("|")
        assert first[0] == names[1] and first[1] == g.ops[0].name and first[2] == a.graph.ops[0].type
        assert int(first[3]) == names.index(NAMES["a"])


def test_header_contents():
    h = export_c_header(spill_plan())
    assert h.startswith("/*") and "#include <stdint.h>" in h
    assert "#ifndef PLAN_MY_NET_V2_H" in h and "#define PLAN_MY_NET_V2_ARENA_BYTES" in h
    assert "{'S', " in h and "{'L', " in h  # spill steps are in the table
    assert "#ifdef PLANNER_WITH_NAMES" in h
    assert "PLANNER_WITH_NAMES" not in export_c_header(spill_plan(), names=False)


def test_header_refuses_invalid_plan():
    p = nospill_plan()
    bad = Plan(p.graph, p.target, p.stages[1:], p.solver)
    with pytest.raises(PlanError):
        export_c_header(bad)


def test_identifiers_and_strings():
    assert c_identifier("1conv;relu") == "_1CONV_RELU"
    assert c_identifier("") == "X"
    assert c_identifier("a--b", upper=False) == "a_b"
    assert c_string('q"\\') == '"q\\"\\\\"'
    assert c_string("??=") == '"\\077\\077="'
    assert c_string("é1") == '"\\303\\2511"'.replace("\\2511", "\\251\\061")


def test_json_export_roundtrip(tmp_path: Path):
    from planner.export.json import export_json
    from planner.plan import read_plan

    p = spill_plan()
    export_json(p, tmp_path / "p.json")
    q = read_plan(tmp_path / "p.json")
    assert [str(s) for s in q.stages] == [str(s) for s in p.stages]
