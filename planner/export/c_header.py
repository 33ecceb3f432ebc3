"""A self-contained C99 header for a bare-metal runtime (DESIGN §6).

The runtime needs no allocator: one static arena of ``<P>_ARENA_BYTES`` and a table of
steps to walk in order. Each step is one stage of the plan:

- ``'L'`` load tensor ``index`` from LLB to ``offset`` (``bytes`` long);
- ``'R'`` run op ``index``; its outputs are ``<P>_placements[first_output ..
  first_output + num_outputs)`` (tensor, offset, bytes); ``offset``/``bytes`` repeat the
  first output for convenience;
- ``'S'`` store tensor ``index`` (resident at ``offset``) to LLB;
- ``'F'`` forget tensor ``index`` (it was at ``offset``).

Tensor indices follow the plan file's tensor list, op indices its op list (model order).
Names (for logs and debuggers) are emitted under ``#ifdef PLANNER_WITH_NAMES`` so a
production build carries none of them. The step struct is shared by every plan header
(its own guard), so several plans can be included in one translation unit.

Widths: offsets and sizes are ``uint32_t`` (``planner_step_t``) when every offset, size
and the arena are below 2**32, the common case on small devices. A plan with any value at
or above 2**32 uses the 64-bit types (``planner_step64_t``, ``uint64_t`` fields,
``<P>_OFFSET_BITS 64``, ``ull`` literals) and says so in its first comment: nothing is
ever truncated. The simulator refuses values past 2**63.
"""

from __future__ import annotations

import re

from planner.plan import Plan
from planner.simulate import check


def c_identifier(text: str, upper: bool = True) -> str:
    """A valid C identifier from arbitrary text (letters, digits, '_'; never a leading digit)."""
    s = re.sub(r"[^0-9A-Za-z_]+", "_", text).strip("_") or "x"
    s = re.sub(r"_+", "_", s)
    if s[0].isdigit():
        s = "_" + s
    return s.upper() if upper else s


def c_string(text: str) -> str:
    """A C string literal for any text: printable ASCII kept, everything else octal-escaped."""
    out = []
    prev_octal = False
    for b in text.encode("utf-8"):
        ch = chr(b)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
            prev_octal = False
        elif 32 <= b < 127 and ch != "?" and not (prev_octal and ch in "01234567"):
            out.append(ch)
            prev_octal = False
        else:  # also '?' (trigraphs) and digits right after an octal escape
            out.append(f"\\{b:03o}")
            prev_octal = True
    return '"' + "".join(out) + '"'


# The types every plan header shares (under their own guard, so headers combine): 32-bit
# offsets and sizes, and the 64-bit variant for plans that need it (see the module docstring).
def shared_types(bits: int = 32) -> tuple[str, ...]:
    """The step and placement structs of `bits`-bit offsets/sizes, under their own guard."""
    sfx = "" if bits == 32 else str(bits)
    u = f"uint{bits}_t"
    return (
        f"#ifndef PLANNER_STEP{sfx}_DEFINED",
        f"#define PLANNER_STEP{sfx}_DEFINED",
        "/* One stage: 'L' load, 'R' run op, 'S' store, 'F' free; 'A' names bytes already in the",
        " * arena (a view, slice or concat slot of a reloaded tensor): no copy, no traffic. */",
        f"typedef struct planner_step{sfx} {{",
        "  char stage;             /* 'L', 'A', 'R', 'S' or 'F' */",
        "  int32_t index;          /* op index for 'R', tensor index otherwise */",
        f"  {u} offset;        /* byte offset in the arena */",
        f"  {u} bytes;         /* tensor size in bytes */",
        "  uint32_t first_output;  /* 'R': first entry in the placements table */",
        "  uint32_t num_outputs;   /* 'R': number of outputs */",
        f"}} planner_step{sfx}_t;",
        "/* Where an op's output goes. */",
        f"typedef struct planner_placement{sfx} {{",
        "  int32_t tensor;",
        f"  {u} offset;",
        f"  {u} bytes;",
        f"}} planner_placement{sfx}_t;",
        f"#endif /* PLANNER_STEP{sfx}_DEFINED */",
    )


SHARED_TYPES = shared_types(32)
U32_LIMIT = 1 << 32

Step = tuple[str, int, int, int, int, int]  # stage, index, offset, bytes, first output, output count


def offset_bits(plan: Plan, arena: int, steps: list[Step], placements: list[tuple[int, int, int]]) -> int:
    """32 when every offset, size and the arena fit in ``uint32_t``, else 64."""
    values = [arena, *(t.bytes for t in plan.graph.tensors.values())]
    values += [v for st in steps for v in (st[2], st[3])] + [v for pl in placements for v in (pl[1], pl[2])]
    return 32 if max(values, default=0) < U32_LIMIT else 64


def export_c_header(plan: Plan, names: bool = True, prefix: str | None = None) -> str:
    """The header text for `plan` (checked by the simulator first).

    `names` adds the tensor/op name tables (under ``PLANNER_WITH_NAMES``); `prefix` names
    the macros and tables (default ``PLAN_<MODEL>``), so several plans fit in one build.
    """
    m = check(plan).metrics
    g = plan.graph
    p = prefix or f"PLAN_{c_identifier(g.name)}"
    steps, placements = _step_table(plan)
    bits = offset_bits(plan, m.arena_bytes, steps, placements)
    guard = f"{p}_H"
    wide = (
        " * Some offset or size is 2^32 bytes or more: the tables use planner_step64_t and",
        " * planner_placement64_t (uint64_t offsets and sizes).",
    )
    lines = [
        f"/* Memory plan for {c_comment(g.name)}: generated by planner (solver {c_comment(plan.solver.name)},",
        f" * {plan.solver.status}). Arena {m.arena_bytes} B, peak {m.peak_l1_bytes} B, traffic {m.traffic_bytes} B.",
        *(wide if bits == 64 else ()),
        " * Do not edit. */",
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
        "#include <stdint.h>",
        "",
        *shared_types(bits),
        "",
        f"#define {p}_OFFSET_BITS {bits}",
        f"#define {p}_ARENA_BYTES {_lit(m.arena_bytes, bits)}",
        f"#define {p}_ALIGNMENT {_lit(plan.target.alignment, bits)}",
        f"#define {p}_PEAK_BYTES {_lit(m.peak_l1_bytes, bits)}",
        f"#define {p}_TRAFFIC_BYTES {_lit(m.traffic_bytes, 64 if m.traffic_bytes >= U32_LIMIT else bits)}",
        f"#define {p}_NUM_STEPS {len(steps)}u",
        f"#define {p}_NUM_PLACEMENTS {len(placements)}u",
        f"#define {p}_NUM_TENSORS {len(g.tensors)}u",
        f"#define {p}_NUM_OPS {len(g.ops)}u",
        "",
        *_tables(plan, p.lower(), steps, placements, bits),
    ]
    if names:
        lines += _name_tables(plan, p)
    lines += [f"#endif /* {guard} */", ""]
    return "\n".join(lines)


def _step_table(plan: Plan) -> tuple[list[Step], list[tuple[int, int, int]]]:
    """The rows of the step table and of the placements table ((tensor, offset, bytes) of
    every op output, in run order): what a runtime walks instead of allocating."""
    g = plan.graph
    tindex = {t: i for i, t in enumerate(g.tensors)}
    steps: list[Step] = []
    placements: list[tuple[int, int, int]] = []
    resident: dict[str, int] = {}
    for s in plan.stages:
        if s.kind == "R":
            op = g.op(s.name)
            offs = s.offsets or {}
            first = len(placements)
            for t in op.outputs:
                placements.append((tindex[t], offs[t], g.size(t)))
                resident[t] = offs[t]
            o0 = op.outputs[0]
            steps.append(("R", g.op_index[s.name], offs[o0], g.size(o0), first, len(op.outputs)))
        elif s.kind == "L":
            resident[s.name] = int(s.offset)
            # an alias load moves no byte: a runtime copying it would read an LLB copy that
            # does not exist (the bytes came back with their parent)
            kind = "A" if s.shares else "L"
            steps.append((kind, tindex[s.name], int(s.offset), g.size(s.name), 0, 0))
        else:
            off = resident.get(s.name, 0)
            if s.kind == "F":
                resident.pop(s.name, None)
            steps.append((s.kind, tindex[s.name], off, g.size(s.name), 0, 0))
    return steps, placements


def _lit(v: int, bits: int) -> str:
    """An unsigned C literal of a `bits`-bit field (``ull`` for 64 bits: C99 guarantees it)."""
    return f"{v}ull" if bits == 64 else f"{v}u"


def _tables(
    plan: Plan, lp: str, steps: list[Step], placements: list[tuple[int, int, int]], bits: int = 32
) -> list[str]:
    g = plan.graph
    sfx = "" if bits == 32 else str(bits)
    lines = [f"static const planner_step{sfx}_t {lp}_steps[{max(len(steps), 1)}] = {{"]
    for k, (st, idx, off, nb, first, cnt) in enumerate(steps):
        lines.append(f"  {{'{st}', {idx}, {_lit(off, bits)}, {_lit(nb, bits)}, {first}u, {cnt}u}},  /* {k} */")
    if not steps:
        lines.append("  {'F', -1, 0u, 0u, 0u, 0u}")
    lines += ["};", "", f"static const planner_placement{sfx}_t {lp}_placements[{max(len(placements), 1)}] = {{"]
    for t, off, nb in placements:
        lines.append(f"  {{{t}, {_lit(off, bits)}, {_lit(nb, bits)}}},")
    if not placements:
        lines.append("  {-1, 0u, 0u}")
    lines += ["};", ""]
    tensor_bytes = ", ".join(_lit(t.bytes, bits) for t in g.tensors.values()) or "0u"
    n = max(len(g.tensors), 1)
    return lines + [f"static const uint{bits}_t {lp}_tensor_bytes[{n}] = {{{tensor_bytes}}};", ""]


def _name_tables(plan: Plan, p: str) -> list[str]:
    g, lp = plan.graph, p.lower()
    lines = ["#ifdef PLANNER_WITH_NAMES", f"enum {lp}_tensor_id {{"]
    seen: set[str] = set()
    for i, t in enumerate(g.tensors):
        ident = f"{p}_T_{c_identifier(t).lstrip('_') or 'X'}"
        if ident in seen:
            ident = f"{ident}_{i}"
        seen.add(ident)
        lines.append(f"  {ident} = {i},")
    lines += ["};", f"static const char *const {lp}_tensor_names[{max(len(g.tensors), 1)}] = {{"]
    lines += [f"  {c_string(t)}," for t in g.tensors] or ['  ""']
    lines += ["};", f"static const char *const {lp}_op_names[{max(len(g.ops), 1)}] = {{"]
    lines += [f"  {c_string(o.name)}," for o in g.ops] or ['  ""']
    lines += ["};", f"static const char *const {lp}_op_types[{max(len(g.ops), 1)}] = {{"]
    lines += [f"  {c_string(o.type)}," for o in g.ops] or ['  ""']
    return lines + ["};", "#endif /* PLANNER_WITH_NAMES */", ""]


def c_comment(text: str) -> str:
    """Text safe inside a /* */ comment (no comment terminators, ASCII only)."""
    return text.encode("ascii", "replace").decode().replace("*/", "* /").replace("/*", "/ *")
