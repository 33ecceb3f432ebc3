"""One self-contained HTML page for a plan: what is where, to share with colleagues.

The page needs no network and no library: the memory timeline and the arena map are inline
SVG drawn here, and a few lines of inline JavaScript show a tooltip when the pointer is on
a block (tensor, bytes, offset, first and last op, producer, consumers). It holds the plan's
summary, the comparison with what TensorFlow Lite Micro would do (the model's own order,
first-fit by size, every tensor its own bytes), a table of every tensor and a table of
every op with the memory resident while it runs — the tables Vela's
`--verbose-allocation` and per-layer CSV and TFLM's `PrintMemoryPlan` give their users.
Every number comes from the simulator.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, replace

from planner.plan import Plan
from planner.simulate import simulate
from planner.target import format_bytes

KIND_COLOURS = {"input": "#4c72b0", "weight": "#8172b2", "activation": "#dd8452", "output": "#55a868"}
SPILL_COLOUR = "#c44e52"
W, H_MEM, H_MAP, PAD = 1000, 220, 360, 50


@dataclass
class Block:
    """One residency on the arena map, with what its tooltip says."""

    tensor: str
    first_op: int
    last_op: int
    offset: int
    bytes: int
    kind: str
    reloaded: bool
    tip: dict


def _op_positions(plan: Plan) -> list[int]:
    out, pos = [], -1
    for s in plan.stages:
        pos += s.kind == "R"
        out.append(max(pos, 0))
    return out


def blocks(plan: Plan) -> list[Block]:
    """Every residency of the plan as a block over op positions."""
    sim = simulate(plan.graph, plan.target, plan.stages)
    g, pos = plan.graph, _op_positions(plan)
    last = max(len(plan.order) - 1, 0)
    out = []
    for r in sim.residencies:
        t = g.tensors[r.tensor]
        if r.offset is None:
            continue
        a = pos[min(r.start, len(pos) - 1)] if pos else 0
        b = pos[r.end] if r.end < len(pos) else last
        st = plan.stages[r.start]
        reloaded = st.kind == "L" and t.kind in ("activation", "output") and not st.shares
        tip = {
            "tensor": t.name,
            "bytes": f"{t.bytes:,} B ({format_bytes(t.bytes)})",
            "offset": f"{r.offset:,}",
            "ops": f"{a} .. {b}",
            "kind": t.kind + (" (loaded back: spill)" if reloaded else ""),
            "producer": g.producer.get(t.name) or "-",
            "consumers": ", ".join(g.consumers[t.name]) or "-",
        }
        out.append(Block(t.name, a, b, r.offset, t.bytes, t.kind, reloaded, tip))
    return out


def per_op(plan: Plan) -> list[dict]:
    """One row per op in the plan's order: resident bytes while it runs, its own tensors, its MACs."""
    from planner.macs import op_macs

    sim = simulate(plan.graph, plan.target, plan.stages)
    g = plan.graph
    rows = []
    for i, s in enumerate(plan.stages):
        if s.kind != "R":
            continue
        op = g.op(s.name)
        own = sum(g.size(t) for t in dict.fromkeys((*op.inputs, *op.outputs)) if plan.target.occupies_l1(g.tensors[t]))
        rows.append(
            {
                "pos": len(rows),
                "op": op.name,
                "type": op.type,
                "resident": sim.resident_bytes[i],
                "own": own,
                "macs": op_macs(g, op),
            }
        )
    return rows


def per_tensor(plan: Plan) -> list[dict]:
    """One row per tensor: size, kind, shape, where and when it lives, who makes and reads it."""
    g = plan.graph
    by_tensor: dict[str, list[Block]] = {}
    for b in blocks(plan):
        by_tensor.setdefault(b.tensor, []).append(b)
    shares = {x.child: f"{x.kind} of {x.parent} at {x.displacement}" for s in plan.stages for x in s.shares}
    rows = []
    for t in g.tensors.values():
        bs = by_tensor.get(t.name, [])
        rows.append(
            {
                "tensor": t.name,
                "kind": t.kind,
                "bytes": t.bytes,
                "shape": "x".join(map(str, t.shape)) if t.shape else "",
                "dtype": t.dtype or "",
                "offsets": ", ".join(str(b.offset) for b in bs) or ("(read in place)" if t.kind == "weight" else ""),
                "ops": ", ".join(f"{b.first_op}..{b.last_op}" for b in bs),
                "producer": g.producer.get(t.name) or "",
                "consumers": ", ".join(g.consumers[t.name]),
                "shares": shares.get(t.name, ""),
            }
        )
    return rows


def _x(pos: float, n: int) -> float:
    return PAD + (W - 2 * PAD) * (pos + 0.5) / max(n, 1)


def _timeline_svg(plan: Plan, baseline: Plan | None) -> str:
    """Resident bytes per op (ours, and TFLM's as a thin line), the arena tops, the budget."""
    ours = per_op(plan)
    series = [("ours", ours, "#1f77b4", 2.2)]
    if baseline is not None:
        series.append(("TFLM", per_op(baseline), "#ff7f0e", 1.2))
    top = max([r["resident"] for _, rows, _, _ in series for r in rows] + [plan.metrics.arena_bytes, 1])
    if baseline is not None:
        top = max(top, baseline.metrics.arena_bytes)
    if plan.target.budget:
        top = max(top, plan.target.budget)
    n = len(ours)

    def y(v: int) -> float:
        return H_MEM - 20 - (H_MEM - 40) * v / top

    parts = [f'<svg id="timeline" width="{W}" height="{H_MEM}" role="img" aria-label="memory over time">']
    for name, rows, colour, w in series:
        pts = " ".join(f"{_x(r['pos'], n):.1f},{y(r['resident']):.1f}" for r in rows)
        parts.append(
            f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="{w}"><title>{name}</title></polyline>'
        )
    for name, p, colour in [("our arena", plan, "#1f77b4")] + (
        [("TFLM arena", baseline, "#ff7f0e")] if baseline else []
    ):
        v = p.metrics.arena_bytes
        parts.append(
            f'<line x1="{PAD}" x2="{W - PAD}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="{colour}" stroke-dasharray="4 3"/>'
        )
        parts.append(f'<text x="{PAD + 4}" y="{y(v) - 3:.1f}" font-size="10" fill="{colour}">{name}</text>')
    if plan.target.budget:
        yb = y(plan.target.budget)
        parts.append(f'<line x1="{PAD}" x2="{W - PAD}" y1="{yb:.1f}" y2="{yb:.1f}" stroke="red"/>')
        parts.append(f'<text x="{W - PAD - 60}" y="{yb - 4:.1f}" font-size="10" fill="red">L1 budget</text>')
    parts.append(f'<text x="4" y="14" font-size="11">resident L1 (max {format_bytes(top)})</text></svg>')
    return "\n".join(parts)


def _map_svg(plan: Plan) -> str:
    """The arena map: one rect per residency, coloured by kind, a tooltip on hover."""
    bs = blocks(plan)
    n = max(len(plan.order), 1)
    top = max([plan.metrics.arena_bytes, plan.target.budget or 0, 1])
    step = (W - 2 * PAD) / n
    parts = [f'<svg id="arena" width="{W}" height="{H_MAP}" role="img" aria-label="arena map">']
    for k, b in enumerate(bs):
        if not b.bytes:
            continue
        x0 = PAD + step * b.first_op
        width = max(step * (b.last_op - b.first_op + 1), 1.5)
        y0 = H_MAP - 20 - (H_MAP - 40) * (b.offset + b.bytes) / top
        hgt = max((H_MAP - 40) * b.bytes / top, 1)
        colour = SPILL_COLOUR if b.reloaded else KIND_COLOURS.get(b.kind, "#999")
        tip = html.escape(json.dumps(b.tip), quote=True)
        parts.append(
            f'<rect class="block" id="b{k}" x="{x0:.1f}" y="{y0:.1f}" width="{width:.1f}" height="{hgt:.1f}" '
            f'fill="{colour}" stroke="white" stroke-width="0.5" data-tip="{tip}"/>'
        )
    parts.append(f'<text x="4" y="14" font-size="11">offset (top {format_bytes(top)}) over op positions</text></svg>')
    return "\n".join(parts)


def _table(rows: list[dict], table_id: str) -> str:
    if not rows:
        return "<p>(none)</p>"
    head = "".join(f"<th>{html.escape(k)}</th>" for k in rows[0])
    body = "\n".join(
        "<tr>"
        + "".join(f"<td>{html.escape(f'{v:,}' if isinstance(v, int) else str(v))}</td>" for v in r.values())
        + "</tr>"
        for r in rows
    )
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>'


def baseline_plan(plan: Plan) -> Plan | None:
    """What TensorFlow Lite Micro would do with the same graph and budget-free target: the
    model's own order, first-fit by size, no shared bytes (None when it cannot be planned)."""
    from planner.solvers.base import SolveOptions
    from planner.solvers.registry import get_solver

    try:
        target = replace(plan.target, budget=None, share="none")
        return get_solver("given-firstfit")(plan.graph, target, SolveOptions(time_limit=1))
    except Exception:  # noqa: BLE001 - the comparison is optional; the page says so
        return None


SCRIPT = """
const tip = document.getElementById('tip');
for (const r of document.querySelectorAll('rect.block')) {
  r.addEventListener('mousemove', e => {
    const d = JSON.parse(r.dataset.tip);
    tip.innerHTML = Object.entries(d).map(([k, v]) => '<b>' + k + '</b> ' + String(v)
      .replace(/&/g, '&amp;').replace(/</g, '&lt;')).join('<br>');
    tip.style.display = 'block';
    tip.style.left = (e.pageX + 12) + 'px';
    tip.style.top = (e.pageY + 12) + 'px';
  });
  r.addEventListener('mouseleave', () => { tip.style.display = 'none'; });
}
"""
STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; }
table { border-collapse: collapse; font-size: 12px; margin-bottom: 24px; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: left; }
th { background: #f0f0f0; position: sticky; top: 0; }
#tip { position: absolute; display: none; background: #fff; border: 1px solid #888; padding: 6px;
       font-size: 12px; box-shadow: 2px 2px 6px rgba(0,0,0,.2); pointer-events: none; max-width: 480px; }
.key span { display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 12px; vertical-align: middle; }
"""


def _summary(plan: Plan, base: Plan | None) -> str:
    m, s = plan.metrics, plan.solver
    lines = [
        f"model <b>{html.escape(plan.graph.name)}</b>: {len(plan.graph.ops)} ops, {len(plan.graph.tensors)} tensors",
        f"target {html.escape(plan.target.name)}: budget {format_bytes(plan.target.budget) if plan.target.budget else 'unbounded'}, "
        f"weights {plan.target.weights}, alignment {plan.target.alignment}, lifetimes {plan.target.lifetimes}, share {plan.target.share}",
        f"arena <b>{m.arena_bytes:,} B ({format_bytes(m.arena_bytes)})</b>, peak {m.peak_l1_bytes:,} B, lower bound {m.lower_bound_bytes:,} B",
        f"traffic {m.traffic_bytes:,} B (spill {m.spill_traffic_bytes:,} B), {m.steps} stages",
        f"solver {html.escape(s.name)}: {s.status} (bound on the {'arena' if s.objective == 'arena' else 'spill traffic'} {s.bound:,} B)",
    ]
    if base is not None:
        b = base.metrics.arena_bytes
        saving = 1 - m.arena_bytes / b if b else 0.0
        lines.append(
            f"TensorFlow Lite Micro (the model's own order, first-fit, no shared bytes) needs {b:,} B "
            f"({format_bytes(b)}); this plan needs {m.arena_bytes:,} B (<b>{-saving:+.1%}</b>)"
        )
    return "<ul>" + "".join(f"<li>{x}</li>" for x in lines) + "</ul>"


def render(plan: Plan, title: str | None = None) -> str:
    """The whole page for `plan` (checked by the simulator on the way: it draws from it)."""
    base = baseline_plan(plan)
    key = "".join(f'<span style="background:{c}"></span>{k}' for k, c in KIND_COLOURS.items())
    key += f'<span style="background:{SPILL_COLOUR}"></span>loaded back (spill)'
    title = title or f"memory plan: {plan.graph.name}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{STYLE}</style></head>
<body>
<h1>{html.escape(title)}</h1>
{_summary(plan, base)}
<h2>Memory over time</h2>
<p>resident L1 bytes while each op runs: this plan (blue) and TFLite Micro's (orange); dashed: each arena's top</p>
{_timeline_svg(plan, base)}
<h2>Arena map</h2>
<p class="key">what is where (offset) and when (op position); hover a block for its tensor. {key}</p>
{_map_svg(plan)}
<h2>Tensors</h2>
{_table(per_tensor(plan), "tensors")}
<h2>Ops</h2>
{_table(per_op(plan), "ops")}
<div id="tip"></div>
<script>{SCRIPT}</script>
</body></html>
"""


def write_report(plan: Plan, path: str) -> None:
    """Write the page for `plan` to `path`."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(render(plan))
