"""Large graphs: split at sequential points, solve segments exactly, stitch.

An op v is a *sequential point* when every other op is its ancestor or its descendant:
then every topological order runs all ancestors before v and all descendants after, so
the orders of the segments between consecutive points are independent. Under the
no-spill lifetimes (solvers/lowering.py) a segment's live bytes are its own tensors plus
a constant *background* (tensors live across the whole segment), so the global peak is
the max over segments of (segment peak + background): optimal segments give an optimal
whole. The same segment construction re-optimises windows of an order (LNS, below).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

from planner.graph import Graph, Op, Tensor
from planner.solvers.lowering import max_live
from planner.solvers.reach import Reach
from planner.target import Target


@dataclass
class Segment:
    """A window of the graph as a graph of its own, with what lives across it as background."""

    graph: Graph  # the segment's ops; kinds encode lifetimes relative to the segment
    background: int  # bytes (aligned) live throughout the segment, from outside it
    background_raw: int  # the same in raw bytes (for bounds on the simulator's metrics)
    exact: bool  # lifetimes in the segment model equal those in the whole graph
    background_slack: int = 0  # largest alignment slack among the background tensors
    background_tensors: tuple[str, ...] = ()  # the tensors behind `background`


def sequential_points(graph: Graph) -> list[str]:
    """Ops comparable with every other op, in execution order (see `Reach.sequential_points`)."""
    return Reach(graph).sequential_points()


def segment_subgraph(
    graph: Graph,
    target: Target,
    order: Sequence[str],
    lo: int,
    hi: int,
    pos: dict[str, int] | None = None,
    candidates: Iterable[str] | None = None,
) -> Segment:
    """The window order[lo:hi] as a graph of its own, with the rest as fixed context.

    Valid when every op before `lo` runs before the window and every op after runs after
    it (true for segments between sequential points and for any window of a fixed order).
    `pos` (op -> position in `order`) and `candidates` (a superset of the tensors that touch
    or span the window, see `window_tensors`) save the scans of the whole graph when many
    windows of one order are cut.
    """
    window = list(order[lo:hi])
    inside = set(window)
    pos = {o: i for i, o in enumerate(order)} if pos is None else pos
    tensors: list[Tensor] = []
    background = background_raw = bg_slack = 0
    exact = True
    dropped: set[str] = set()
    pool = graph.tensors.values() if candidates is None else [graph.tensors[n] for n in candidates]
    for t in pool:
        cons = graph.consumers[t.name]
        c_in = any(c in inside for c in cons)
        c_after = any(pos[c] >= hi for c in cons)
        prod = graph.producer.get(t.name)
        if t.kind == "weight":
            if target.weights == "in_place":
                if c_in:
                    tensors.append(t)
                continue
            c_before = any(pos[c] < lo for c in cons)
            if c_in and not (c_before or c_after):
                tensors.append(t)
                continue
            live_across = c_before and c_after
            if c_in or live_across:
                # a loaded weight used in several segments: live through this one (an
                # over-estimate where it is first or last used here, so not exact)
                exact = exact and live_across
                background += target.align(t.bytes)
                background_raw += t.bytes
                bg_slack = max(bg_slack, target.align(t.bytes) - t.bytes) if t.bytes else bg_slack
                dropped.add(t.name)
            continue
        made_before = prod is None or pos[prod] < lo
        made_in = prod in inside
        if made_in:
            kind = "output" if (c_after or t.kind == "output") else "activation"
            tensors.append(Tensor(t.name, t.bytes, kind, t.shape, t.dtype))
        elif made_before:
            if t.kind == "input" and not cons:
                continue  # never loaded
            live_after = c_after or t.kind == "output"
            if c_in and not live_after:
                tensors.append(Tensor(t.name, t.bytes, "input", t.shape, t.dtype))
            elif live_after:
                background += target.align(t.bytes)
                background_raw += t.bytes
                bg_slack = max(bg_slack, target.align(t.bytes) - t.bytes) if t.bytes else bg_slack
                dropped.add(t.name)
    ops = []
    for name in window:
        o = graph.op(name)
        ops.append(Op(o.name, o.type, tuple(i for i in o.inputs if i not in dropped), o.outputs))
    seg_graph = Graph(f"{graph.name}[{lo}:{hi}]", tensors, ops)
    return Segment(seg_graph, background, background_raw, exact, bg_slack, tuple(sorted(dropped)))


def _extent(graph: Graph, t: Tensor, pos: dict[str, int], n: int) -> tuple[int, int]:
    """Positions [first, last] over which tensor `t` can matter to a window of the order:
    from its producer (or the start, for inputs; its first consumer, for weights) to its
    last consumer (the end, for graph outputs)."""
    cons = [pos[c] for c in graph.consumers[t.name]]
    prod = graph.producer.get(t.name)
    if t.kind == "weight":
        first = min(cons, default=n)
    else:
        first = -1 if prod is None else pos[prod]
    last = max(cons, default=first)
    if t.kind == "output":
        last = n
    return first, last


def window_tensors(
    graph: Graph, order: Sequence[str], spans: Sequence[tuple[int, int]], pos: dict[str, int]
) -> Iterator[list[str]]:
    """For consecutive windows `spans` of `order` (increasing, disjoint), the tensors each one
    must look at (those whose extent meets it), in the graph's tensor order: one sweep
    instead of a scan of every tensor per window."""
    n = len(order)
    index = {name: i for i, name in enumerate(graph.tensors)}
    ext = sorted(((*_extent(graph, t, pos, n), t.name) for t in graph.tensors.values()), key=lambda x: x[0])
    active: dict[str, int] = {}  # tensor -> last position
    k = 0
    for lo, hi in spans:
        while k < len(ext) and ext[k][0] < hi:
            active[ext[k][2]] = ext[k][1]
            k += 1
        for name in [name for name, last in active.items() if last < lo]:
            del active[name]
        yield sorted(active, key=index.__getitem__)


def with_background(seg: Segment, graph: Graph) -> Graph:
    """The segment with its background tensors as inputs read by its last ops.

    Each background tensor then occupies its own block for the whole segment, as it does in
    any plan of the whole graph: a layout-aware bound on this graph (e.g. cpsat-joint) is a
    bound on the whole arena when the segment is exact.
    """
    g = seg.graph
    if not seg.background_tensors:
        return g
    extra = tuple(seg.background_tensors)
    sinks = {o.name for o in g.ops if not any(g.consumers[t] for t in o.outputs)}
    tensors = list(g.tensors.values()) + [
        Tensor(t, graph.tensors[t].bytes, "input", graph.tensors[t].shape, graph.tensors[t].dtype) for t in extra
    ]
    ops = [Op(o.name, o.type, o.inputs + extra if o.name in sinks else o.inputs, o.outputs) for o in g.ops]
    return Graph(g.name, tensors, ops)


# order solver for one segment: (graph, target, time_limit) -> (order, peak_aligned, bound_raw, proven)
SegmentSolver = Callable[[Graph, Target, float], tuple[list[str], int, int, bool]]


@dataclass
class StitchResult:
    """The stitched order of every segment and what the segments proved about it."""

    order: list[str]
    bound_raw: int  # proven lower bound on the whole graph's peak (raw bytes)
    proven: bool  # every segment solved to optimality with exact cuts
    segments: int
    largest_segment: int
    critical: list[Segment] = field(default_factory=list)  # exact segments above `bound_raw`, highest first


def decompose_order(
    graph: Graph,
    target: Target,
    solve_segment: SegmentSolver,
    time_limit: float,
    base_order: Sequence[str],
    raw_bound: Callable[[Segment, float], int | None] | None = None,
) -> StitchResult:
    """Solve each segment between sequential points; time is shared by segment size.

    `raw_bound(segment, seconds)` may add a bound on the raw arena that already includes the
    segment's background (e.g. the slack-aware DP). Bounds from segments whose model is not
    exact (a loaded weight used on one side only) leave the background out, to stay valid.
    The time limit holds for the whole call: once it has passed, the segments left keep
    their order in `base_order` (and nothing is proven about them).
    """
    t0 = time.perf_counter()
    pts = set(sequential_points(graph))
    order = list(base_order)
    pos = {o: i for i, o in enumerate(order)}
    cuts = [0] + [i + 1 for i, o in enumerate(order) if o in pts]
    if cuts[-1] != len(order):
        cuts.append(len(order))
    cuts = sorted(set(cuts))
    spans = [(a, b) for a, b in pairwise(cuts) if b > a]
    if hasattr(solve_segment, "starting"):  # for the progress line: how many segments to order
        solve_segment.starting(sum(1 for a, b in spans if b - a > 1))
    big = sum(b - a for a, b in spans if b - a > 1) or 1
    new_order: list[str] = []
    bound = 0
    proven = True
    solved: list[tuple[int, Segment]] = []  # (aligned peak incl. background, segment)
    for (a, b), names in zip(spans, window_tensors(graph, order, spans, pos), strict=True):
        if time.perf_counter() - t0 >= time_limit:
            new_order += order[a:]  # out of time: the rest as it was
            proven = False
            break
        seg = segment_subgraph(graph, target, order, a, b, pos, names)
        left = time_limit - (time.perf_counter() - t0)
        if b - a == 1:
            sub_order = list(order[a:b])
            sub_bound = max_live(seg.graph, target, sub_order)
            sub_peak = max_live(seg.graph, target, sub_order, aligned=True)
            ok = True
        else:
            share = max(min(time_limit * (b - a) / big, left), 0.0)
            sub_order, sub_peak, sub_bound, ok = solve_segment(seg.graph, target, share)
        new_order += sub_order
        bound = max(bound, sub_bound + (seg.background_raw if seg.exact else 0))
        proven = proven and ok and seg.exact
        if seg.exact:
            solved.append((sub_peak + seg.background, seg))
    if raw_bound is not None:
        # only segments whose aligned peak exceeds the bound can raise it: the highest first
        critical = sorted((x for x in solved if x[0] > bound), key=lambda x: -x[0])[:8]
        for value, seg in critical:
            left = time_limit - (time.perf_counter() - t0)
            if value <= bound or left <= 0:
                break
            extra = raw_bound(seg, min(time_limit / max(len(critical), 1), left))
            if extra is not None:
                bound = max(bound, extra)
    largest = max((b - a for a, b in spans), default=0)
    critical = [seg for value, seg in sorted(solved, key=lambda x: -x[0]) if value > bound]
    return StitchResult(new_order, bound, proven, len(spans), largest, critical)
