"""`auto`: the answer users get by default, anytime and never worse than a baseline.

`auto` is a list of phases on one clock. Every phase reads and improves one typed state
(the best order, its proven bound, the layout) and takes its time from one table of
shares (`SHARES`), so the time policy can be read, and changed, in one place:

1. heuristics: every order × every layout, an instant valid answer (the state's start);
2. relaxation bound: the exact DP on a relaxed graph (solvers/relax.py) may prove the
   heuristic order optimal before any CP-SAT model is built;
   hierarchical start: on graphs with near-sequential points (NAS cells, random wiring),
   cells scheduled as units, then inside them (solvers/hierarchical.py);
   window bounds: exact optima of the DAG windows between those points, with their
   background (solvers/windows.py), where the forced-live bound stalls;
3. segments: split at sequential points (solvers/decompose.py); each segment gets the
   CP-SAT order model warm-started from the heuristics (past EXACT_OP_LIMIT ops a
   segment keeps its heuristic order);
4. search: on what is not proven, beam search and large-neighbourhood search (windows of
   the order around its peak re-solved with CP-SAT while the rest stays fixed);
5. joint segments: when a few bytes of alignment doubt remain, `cpsat-joint` on the
   critical segments gives a layout-aware bound and better segment orders;
6. layout: heuristics, then CP-SAT layout while fragmentation remains;
7. spill: below the no-spill arena the spill solvers run and the least traffic wins.

As soon as the order is proven and a layout heuristic meets the proven arena bound, the
phases left (they only refine bounds) are skipped and the plan goes out at once.
The plan is lowered and simulated once, on its way out; `optimal` only when its arena
equals the proven bound (or, for a spill plan, its traffic meets a proven traffic bound).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from planner.bounds import min_budget, working_set_bound
from planner.graph import Graph
from planner.plan import Plan, SolverInfo
from planner.simulate import PlanError, finalize, with_solver
from planner.solvers.base import DoesNotFit, Progress, SolveOptions, Timer, spilling_how, status_of
from planner.solvers.bound_cache import cached_bounds, store_bounds
from planner.solvers.cpsat_joint import solve_joint
from planner.solvers.cpsat_layout import best_layout, layout_lower_bound, layout_order
from planner.solvers.cpsat_order import optimal_order
from planner.solvers.decompose import Segment, decompose_order, segment_subgraph, with_background
from planner.solvers.dp import raw_arena_bound
from planner.solvers.heuristic import HeuristicStart, heuristic_start
from planner.solvers.heuristics.beam import beam_search
from planner.solvers.hierarchical import hierarchical_order, near_sequential_points
from planner.solvers.items import forced_live_bounds
from planner.solvers.lifetimes import restore_stages, rewrite
from planner.solvers.lowering import live_intervals, live_profile, lower, max_live
from planner.solvers.reach import Reach
from planner.solvers.registry import SOLVERS
from planner.solvers.relax import relaxed_order_bound
from planner.solvers.storage import (
    DOMINATING_KINDS,
    Storage,
    shared_plan,
    sharing_kinds,
    storage_graph,
    storage_order,
    unshared,
    with_sharing,
)
from planner.solvers.windows import critical_window_bound
from planner.target import Target, format_bytes

# Past this many ops in one segment the monolithic order model rarely closes its gap in a
# minute: such segments keep their heuristic order and are improved by LNS windows instead.
EXACT_OP_LIMIT = 1200
LNS_WINDOW = 60
LNS_TRIES = 200
SEGMENT_RELAX_MIN_OPS = 30  # below this CP-SAT closes segments in a blink
RAW_BOUND_MAX_OPS = 60  # the slack-aware DP is cheap on segments up to about this size
JOINT_BOUND_MAX_OPS = 60  # cpsat-joint proves small segments in seconds
SEARCH_MAX_OPS = 3000  # beam search and LNS are skipped on larger graphs
HIERARCHY_MIN_OPS = 60  # smaller graphs are solved whole in a blink
HIERARCHY_MAX_OPS = 4000


@dataclass(frozen=True)
class Shares:
    """Every share of the time limit `auto` spends, in one table (fractions of the limit
    unless the name says seconds)."""

    spill_reserve: float = 0.5  # kept for the spill phase when spills look needed
    heuristics: float = 0.3  # the heuristic starts (every order x layout) stop trying more here
    relax: float = 0.25  # relaxation bound, first (may prove the heuristic order) ...
    relax_floor_s: float = 5.0  # ... but at least min(this, relax_floor_share of the limit)
    relax_floor_share: float = 0.5
    relax_early: float = 0.1  # ... or this share when the hierarchical start comes next
    hierarchical_end: float = 0.35  # the hierarchical start ends at this share ...
    hierarchical_min: float = 0.25  # ... but gets at least this share, unless that runs past
    hierarchical_latest: float = 0.6  # ... this one (slow heuristics on a loaded machine),
    hierarchical_max_s: float = 8.0  # ... or takes more seconds than this (cells solve in ms)
    windows_end: float = 0.55  # the window bounds end at this share ...
    windows_min: float = 0.15  # ... but get at least this share, never past
    windows_latest: float = 0.7
    order_end: float = 0.55  # the segments end at this share (the relaxation included)
    order_end_proven: float = 0.2  # ... or this one when the relaxation proved the order
    order_min: float = 0.1  # the segments get at least this share
    segment_relax: float = 0.3  # of a segment's time, for its relaxation bound before CP-SAT
    segment_raw_bound_s: float = 5.0  # slack-aware DP on a critical segment, at most
    search_end: float = 0.75  # beam search and LNS run until this share
    beam: float = 0.25  # of the search time, for beam search ...
    beam_max_s: float = 10.0  # ... at most
    lns_window_s: float = 5.0  # one LNS window's CP-SAT solve, at most
    joint: float = 0.2  # cpsat-joint on critical segments, at most
    spill_exact_min_s: float = 1.0  # exact spill solvers only with at least this left


SHARES = Shares()


@dataclass
class Clock:
    """One time limit for every phase: seconds used, left, and left until a share ends."""

    limit: float
    timer: Timer = field(default_factory=Timer)

    @property
    def elapsed(self) -> float:
        """Seconds since the clock started."""
        return self.timer.elapsed

    def left(self) -> float:
        """Seconds left of the limit."""
        return self.limit - self.timer.elapsed

    def until(self, share: float) -> float:
        """Seconds left until `share` of the limit has passed (negative once it has)."""
        return share * self.limit - self.timer.elapsed


@dataclass
class NoSpill:
    """The state the no-spill phases improve: the best order, what is proven about it, and
    (after the layout phase) its offsets. Sizes are aligned for orders, raw for arenas."""

    graph: Graph  # the graph planned (rewritten under minimal lifetimes, solvers/lifetimes.py)
    target: Target  # the user's target without a budget: the no-spill search ignores it
    options: SolveOptions
    clock: Clock
    start: HeuristicStart
    order: list[str]
    peak: int  # aligned max-live of `order`
    bound: int  # proven lower bound on the raw arena of every no-spill plan
    strong: int = 0  # proven lower bound on the aligned max-live of every order (relaxation)
    proven: bool = False  # `order` has the least aligned max-live
    critical: list[Segment] = field(default_factory=list)  # exact segments that may raise the bound
    offsets: dict[str, int] = field(default_factory=dict)
    arena: int = 0
    facts: dict = field(default_factory=dict)
    layout_of: tuple[tuple[str, ...], int] | None = None  # (order, its best heuristic arena)
    relaxed_at: int = 0  # the peak the short first relaxation pruned at (0: it ran in full, or not)
    storage: Storage | None = None  # when `graph` is the storage graph of `storage.original` (tflm lifetimes)

    @property
    def ops(self) -> int:
        """Number of ops of the graph planned."""
        return len(self.graph.ops)

    def report(self, note: str, incumbent: int | None = None) -> None:
        """Tell the progress display what the phase is doing."""
        self.options.report(Progress("auto", incumbent, self.bound, self.clock.elapsed, note))

    def adopt(self, order: list[str], peak: int | None = None) -> None:
        """Take `order` when its aligned max-live is no higher than the current one's."""
        peak = max_live(self.graph, self.target, order, aligned=True) if peak is None else peak
        if peak <= self.peak:
            self.order, self.peak = order, peak


def max_slack(graph: Graph, target: Target) -> int:
    """The largest alignment padding of a tensor in L1: the top block's raw end can sit this
    far below an aligned bound."""
    return max((target.align(t.bytes) - t.bytes for t in graph.tensors.values() if target.occupies_l1(t)), default=0)


# -- the no-spill phases ----------------------------------------------------------------------
def phase_relaxation(s: NoSpill) -> None:
    """A bound on every order's aligned max-live from the exact DP on relaxed graphs.

    Where the hierarchical start runs next, only a short first try (`relax_early` of the
    limit): the DP prunes at the heuristic's peak, often a third above the hierarchical
    order's, and would keep the time the hierarchical start needs (RandWire-WS32 seed 1 at
    5 s: 2.3 s here left it 0.4 s and a 1.4x worse order); `phase_relaxation_late` tries
    again with the better order."""
    lb = working_set_bound(s.graph, s.target)
    if s.peak <= lb:  # no order's aligned max-live is below one op's raw working set
        s.strong, s.proven = max(s.strong, s.peak), True
    if s.ops <= 1 or s.clock.limit <= 0.2 or s.proven:
        return
    seconds = max(SHARES.relax * s.clock.limit, min(SHARES.relax_floor_s, SHARES.relax_floor_share * s.clock.limit))
    if HIERARCHY_MIN_OPS <= s.ops <= HIERARCHY_MAX_OPS:
        seconds = min(seconds, SHARES.relax_early * s.clock.limit)
        s.relaxed_at = s.peak
    _relax(s, seconds)


def phase_relaxation_late(s: NoSpill) -> None:
    """The relaxation again after the hierarchical start, pruned at its lower peak."""
    if s.proven or s.relaxed_at <= s.peak:
        return  # never tried early, or the order did not improve: the same DP again
    seconds = max(SHARES.relax * s.clock.limit, min(SHARES.relax_floor_s, SHARES.relax_floor_share * s.clock.limit))
    _relax(s, min(seconds, s.clock.until(SHARES.windows_end)))


def _relax(s: NoSpill, seconds: float) -> None:
    """`relaxed_order_bound` at the state's peak for `seconds` (within the margin)."""
    seconds = min(seconds, s.clock.left() - _margin(s))
    if seconds < 0.05:
        return
    sb = relaxed_order_bound(s.graph, s.target, s.peak, time_limit=seconds)
    if sb.aligned >= s.strong:  # a cached bound may be stronger
        s.strong = sb.aligned
        s.facts.update(strong_bound=sb.aligned, strong_bound_how=sb.how)
    s.bound = max(s.bound, s.strong - max_slack(s.graph, s.target))
    s.proven = s.peak <= s.strong


def phase_hierarchical(s: NoSpill) -> None:
    """A hierarchical order (cells, then inside them) as one more start, when it is lower."""
    if s.proven or not HIERARCHY_MIN_OPS <= s.ops <= HIERARCHY_MAX_OPS:
        return
    seconds = max(s.clock.until(SHARES.hierarchical_end), SHARES.hierarchical_min * s.clock.limit)
    seconds = min(seconds, s.clock.until(SHARES.hierarchical_latest), SHARES.hierarchical_max_s)
    if seconds < 0.3:
        return
    t0 = s.clock.elapsed
    res, peak = None, None  # the hierarchical result, and its order's aligned max-live on s.graph
    if s.storage is not None:
        # on a storage graph: cells and chains of the model itself (in-place writes tie each
        # op to its input's producer and break the chains the cells are cut along), the order
        # mapped into the storage graph. With no concat allocated early, that mapped order
        # needs at most its unshared peak (the relations only remove bytes).
        plain = s.storage.original
        share = seconds if not s.storage.alloc else seconds / 2
        start = [o for o in s.order if o not in s.storage.alloc]
        res = hierarchical_order(plain, s.target, start, share, s.options, stop_at=s.strong)
        if res is not None:
            order = storage_order(s.storage, res.order)
            peak = max_live(s.graph, s.target, order, aligned=True)
            s.adopt(order, peak)
    if s.storage is None or (s.storage.alloc and not s.peak <= s.strong):
        left = seconds - (s.clock.elapsed - t0)
        own = hierarchical_order(s.graph, s.target, s.order, left, s.options, stop_at=s.strong) if left >= 0.3 else None
        if own is not None and (peak is None or own.peak < peak):
            res, peak = own, own.peak
            s.adopt(own.order, own.peak)
    if res is None:
        return
    s.facts.update(hierarchical_peak=peak, hierarchical_cells=res.cells, hierarchical_reused=res.reused)
    s.facts["hierarchical_s"] = round(s.clock.elapsed - t0, 3)
    s.proven = s.peak <= s.strong
    s.report(f"hierarchical start: cells ordered, peak {format_bytes(peak)}", s.peak)


def phase_windows(s: NoSpill) -> None:
    """Window bounds (solvers/windows.py) between the near-sequential points. Also when the
    order is proven but the raw bound sits below it by the whole graph's largest padding (a
    relaxation proved it): a window at the peak only loses its own tensors' padding
    (RandWire-WS32 seed 1 CIFAR: 8 bytes of the logits' padding kept it `feasible`)."""
    if s.proven and s.bound >= s.peak:
        return
    if not HIERARCHY_MIN_OPS <= s.ops <= HIERARCHY_MAX_OPS or s.clock.limit <= 0.2:
        return
    seconds = max(s.clock.until(SHARES.windows_end), SHARES.windows_min * s.clock.limit)
    seconds = min(seconds, s.clock.until(SHARES.windows_latest))
    if seconds < 0.2:
        return
    points = near_sequential_points(s.graph, Reach(s.graph))
    if len(points) < 2:
        return
    o = s.options
    floor = s.strong - 1 if s.proven else max(s.strong, s.bound)  # proven: only windows at the peak, for the raw bound
    wb = critical_window_bound(s.graph, s.target, s.order, points, floor, seconds, o.workers, o.seed)
    s.facts.update(windows=wb.windows, windows_solved=wb.solved)
    if wb.best is not None and wb.aligned > s.strong:  # a window's own optimum raised it
        s.strong = wb.aligned
        s.facts.update(strong_bound=wb.aligned, strong_bound_how=f"window{wb.best}")
    s.bound = max(s.bound, s.strong - max_slack(s.graph, s.target), wb.raw)
    s.proven = s.peak <= s.strong
    s.report(f"window bounds: {wb.solved} of {wb.windows} windows solved", s.peak)


def phase_segments(s: NoSpill) -> None:
    """Split at sequential points; the CP-SAT order model (or the relaxation) per segment.
    Runs on whatever time is left (small graphs prove in milliseconds: resnet8's 15
    segments in 16 ms, when --time-limit 2 leaves 0.15 s after the import and fusion)."""
    if s.ops <= 1:
        return
    if s.proven and s.bound >= s.peak:
        return  # the arena bound the segments would refine already meets this order's aligned max-live
    # when the relaxation already proved the order, the segments only refine the raw bound
    end = SHARES.order_end if s.peak > s.strong else SHARES.order_end_proven
    seconds = min(max(s.clock.until(end), SHARES.order_min * s.clock.limit), s.clock.left() - _margin(s))
    if seconds <= 0:
        return
    whole = (s.ops, s.strong) if s.strong else None
    res = decompose_order(
        s.graph, s.target, SegmentSolver(s, whole), seconds, s.order, lambda seg, sec: _raw_bound(seg, s.target, sec)
    )
    s.facts.update(segments=res.segments, largest_segment=res.largest_segment)
    s.critical = res.critical
    s.adopt(res.order)
    s.bound = max(s.bound, res.bound_raw)
    s.proven = res.proven or s.peak <= s.strong


def phase_search(s: NoSpill) -> None:
    """Beam search, then LNS windows around the peak, on an order nothing has proven."""
    if s.ops <= 1 or s.clock.limit <= 0.2:
        return
    if not s.proven and s.ops <= SEARCH_MAX_OPS:
        left = s.clock.until(SHARES.search_end)
        if left > 0.5:
            b_order, b_peak = beam_search(s.graph, s.target, time_limit=min(left * SHARES.beam, SHARES.beam_max_s))
            s.facts["beam_peak"] = b_peak
            if b_peak < s.peak:
                s.order, s.peak = b_order, b_peak
        _lns(s, max(s.bound + s.target.alignment - 1, s.strong))
    s.report(f"order search: best peak {format_bytes(s.peak)}")


def phase_joint_segments(s: NoSpill) -> None:
    """Layout-aware bounds and orders from cpsat-joint on the small critical segments."""
    small = [seg for seg in s.critical if seg.exact and len(seg.graph.ops) <= JOINT_BOUND_MAX_OPS]
    if not small or s.clock.left() <= 1.0:
        return
    h_arena = best_layout(s.graph, s.target, s.order)[0]
    if h_arena <= s.bound:
        return
    seconds = min(SHARES.joint * s.clock.limit, s.clock.left() - 2 * _margin(s))
    joint, seg_orders = _joint_segments(s, small, h_arena, seconds)
    if joint > s.bound:
        s.facts["joint_segment_bound"] = s.bound = joint
    if seg_orders:
        cand = _substitute(s.order, seg_orders)
        if _layout_bound(s.graph, s.target, cand) <= _layout_bound(s.graph, s.target, s.order):
            s.order, s.facts["joint_segment_orders"] = cand, len(seg_orders)


def phase_layout(s: NoSpill) -> None:
    """Offsets: layout heuristics, then CP-SAT layout stopping at the proven bound; never
    worse than the best heuristic plan."""
    o = s.options
    seconds = s.clock.left() - _margin(s)
    if seconds <= 0:  # out of time: the heuristic start's plan, laid out already, stands
        s.order, s.offsets, s.arena = s.start.arena_order, s.start.arena_offsets, s.start.arena
        s.facts.update(layout=s.start.arena_name, source="heuristic (time out)", order_proven=False)
        return
    arena, offs, method, _ = layout_order(s.graph, s.target, s.order, seconds, o.workers, o.seed, None, s.bound)
    order, offs, arena, method, src = s.start.never_worse(s.order, offs, arena, method, "auto-order")
    s.order, s.offsets, s.arena = order, offs, arena
    s.facts.update(layout=method, source=src, order_proven=s.proven)


NOSPILL_PHASES: tuple[Callable[[NoSpill], None], ...] = (
    phase_relaxation,
    phase_hierarchical,
    phase_relaxation_late,
    phase_windows,
    phase_segments,
    phase_search,
    phase_joint_segments,
    phase_layout,
)


def _plan_proven(s: NoSpill) -> bool:
    """The order is proven and a layout heuristic already meets the proven bound on the raw
    arena: the plan is optimal now, so the phases that only refine bounds are skipped and it
    is returned at once (they could spend a fifth of the limit raising a bound that is met)."""
    if not s.proven:
        return False
    key = tuple(s.order)
    if s.layout_of is None or s.layout_of[0] != key:
        s.layout_of = (key, best_layout(s.graph, s.target, s.order)[0])
    return s.layout_of[1] <= s.bound


# what the progress line says while a phase runs: words a user understands
PHASE_WORDS = {
    "phase_relaxation": "lower bound: relaxed graph",
    "phase_hierarchical": "hierarchical start: ordering cells",
    "phase_relaxation_late": "lower bound: relaxed graph, at the hierarchical order",
    "phase_windows": "window bounds",
    "phase_segments": "ordering segments",
    "phase_search": "order search",
    "phase_joint_segments": "layout-aware bounds on critical segments",
    "phase_layout": "layout: placing tensors in the arena",
}


def _margin(s: NoSpill) -> float:
    """Seconds kept for lowering and simulating the plan (measured: 0.05 s for 800 ops,
    0.08 s for 1,100; kept at 0.5 ms per op for a loaded machine)."""
    return 0.1 + 0.0005 * s.ops


# -- what the phases call -------------------------------------------------------------------------
class SegmentSolver:
    """The order solver for one segment of the decomposition: the relaxation bound first
    (it may prove the heuristic order), else the CP-SAT order model with the time left.
    `whole`: (op count, aligned relaxation bound) already computed for the whole graph,
    reused when a segment is the whole graph (it does not split) instead of computed twice."""

    def __init__(self, state: NoSpill, whole: tuple[int, int] | None) -> None:
        self.s, self.whole, self.solved = state, whole, 0
        self.total = 0  # segments that need solving (decompose_order tells it first)

    def starting(self, total: int) -> None:
        """How many segments there are to order (for the progress line: "segment 3/7")."""
        self.total = total
        self.s.report(f"ordering {total} segment{'s' if total != 1 else ''}")

    def __call__(self, g: Graph, target: Target, time_limit: float) -> tuple[list[str], int, int, bool]:
        self.solved += 1
        self.s.facts["segments_solved"] = self.solved
        t0 = self.s.clock.elapsed
        # building the order model alone takes about 2 ms per op: not worth it in less time;
        # the state's order restricted to the segment then stands (no heuristics either)
        if len(g.ops) > EXACT_OP_LIMIT or time_limit < max(0.05, 0.002 * len(g.ops)):
            mine = [o for o in self.s.order if o in g.op_index]
            return mine, max_live(g, target, mine, aligned=True), working_set_bound(g, target), False
        hint = self._hint(g, target)
        strong = 0
        if self.whole is not None and len(g.ops) == self.whole[0]:
            strong = self.whole[1]
        elif len(g.ops) > SEGMENT_RELAX_MIN_OPS:
            seconds = SHARES.segment_relax * time_limit
            strong = relaxed_order_bound(g, target, hint.peak, time_limit=seconds).aligned
        slack = max_slack(g, target)
        if strong >= hint.peak:
            raw = max(strong - slack, forced_live_bounds(g, target)[1])
            order, peak, ok = hint.peak_order, hint.peak, True
        else:
            o = self.s.options
            left = time_limit - (self.s.clock.elapsed - t0)
            res = optimal_order(g, target, left, o.workers, o.seed, hint=hint.peak_order, progress=None)
            order, peak, raw = res.order, res.peak, max(res.raw_bound, strong - slack)
            ok = res.status == "optimal" or peak <= strong
        done = "proven optimal" if ok else "best order so far"
        self.s.report(f"ordering segment {self.solved}/{self.total} ({len(g.ops)} ops): {done}")
        return order, peak, raw, ok

    def _hint(self, g: Graph, target: Target) -> HeuristicStart:
        """The segment's heuristic start, or the state's order restricted to the segment
        (a topological order of it) when that is lower (e.g. the hierarchical order)."""
        hint = heuristic_start(g, target)
        mine = [o for o in self.s.order if o in g.op_index]
        mine_peak = max_live(g, target, mine, aligned=True)
        if mine_peak < hint.peak:
            hint = replace(hint, peak_order=mine, peak=mine_peak)
        return hint


def _raw_bound(seg: Segment, target: Target, seconds: float) -> int | None:
    """Close the alignment-slack gap of a small segment with the slack-aware DP (solvers/dp.py)."""
    if len(seg.graph.ops) > RAW_BOUND_MAX_OPS or seconds < 0.01:
        return None
    seconds = min(seconds, SHARES.segment_raw_bound_s)
    return raw_arena_bound(seg.graph, target, seconds, background=(seg.background, seg.background_slack))


def _lns(s: NoSpill, bound: int) -> None:
    """Re-solve windows around the peak position; accept when the global peak does not grow."""
    rng = random.Random(s.options.seed)
    n = len(s.order)
    k = min(LNS_WINDOW, n)
    deadline = SHARES.search_end * s.clock.limit
    tries = 0
    while s.clock.elapsed < deadline and s.peak > bound and tries < LNS_TRIES and n > 2:
        tries += 1
        live = live_profile(s.graph, s.target, s.order)
        p = rng.choice([q for q, v in enumerate(live) if v == s.peak])
        lo = max(0, min(n - k, p - rng.randint(k // 4, 3 * k // 4)))
        seg = segment_subgraph(s.graph, s.target, s.order, lo, lo + k)
        left = deadline - s.clock.elapsed
        if left < 0.2:
            break
        o = s.options
        window = s.order[lo : lo + k]
        res = optimal_order(seg.graph, s.target, min(left, SHARES.lns_window_s), o.workers, o.seed + tries, hint=window)
        cand = s.order[:lo] + res.order + s.order[lo + k :]
        cpeak = max_live(s.graph, s.target, cand, aligned=True)
        if cpeak < s.peak:
            s.options.report(
                Progress(
                    "auto",
                    None,
                    bound,
                    s.clock.elapsed,
                    f"order search: re-ordering around the peak, {format_bytes(cpeak)}",
                )
            )
        s.adopt(cand, cpeak)


def _layout_bound(graph: Graph, target: Target, order: list[str]) -> int:
    return layout_lower_bound(live_intervals(graph, target, order), target.alignment)


def _joint_segments(
    s: NoSpill, segments: list[Segment], arena: int, seconds: float
) -> tuple[int, dict[tuple[str, ...], list[str]]]:
    """Layout-aware bounds and orders from cpsat-joint on `segments` (exact ones of at most
    JOINT_BOUND_MAX_OPS ops, the caller's filter), highest peak first.

    Order bounds count aligned live bytes; when the arena is a few bytes above them only a
    model that places blocks can tell whether it is optimal (sp:400:3: 16,353 vs 16,354).
    Each exact segment with its background is a relaxation of the whole plan, so its joint
    optimum bounds the whole arena; its order (packable below `arena`) is a candidate too.
    Returns (bound, {segment ops: better segment order}).
    """
    timer = Timer()
    bound = 0
    orders: dict[tuple[str, ...], list[str]] = {}
    # highest first by their peak in the current order: the decomposition's estimates may
    # come from heuristic orders of segments it had no time for
    pos = {o: i for i, o in enumerate(s.order)}

    def peak_now(seg: Segment) -> int:
        seg_order = sorted((o.name for o in seg.graph.ops), key=pos.__getitem__)
        return max_live(seg.graph, s.target, seg_order, aligned=True) + seg.background

    for seg in sorted(segments, key=peak_now, reverse=True):
        left = seconds - timer.elapsed
        if bound >= arena or left < 0.3:
            break
        opts = SolveOptions(time_limit=left, workers=s.options.workers, seed=s.options.seed)
        plan = solve_joint(with_background(seg, s.graph), s.target, opts)
        bound = max(bound, plan.metrics.lower_bound_bytes)
        if plan.metrics.arena_bytes < arena:
            orders[tuple(o.name for o in seg.graph.ops)] = list(plan.order)
    return bound, orders


def _substitute(order: list[str], segments: dict[tuple[str, ...], list[str]]) -> list[str]:
    """`order` with each segment's ops (contiguous in every topological order) reordered."""
    out = list(order)
    pos = {o: i for i, o in enumerate(out)}
    for ops, new in segments.items():
        lo = min(pos[o] for o in ops)
        out[lo : lo + len(new)] = new
    return out


def best_nospill(
    graph: Graph,
    target: Target,
    options: SolveOptions,
    clock: Clock,
    start: HeuristicStart,
    storage: Storage | None = None,
) -> NoSpill:
    """Run the no-spill phases on `graph` (budget ignored): the best order, layout, bound.
    `storage`: the sharing `graph` is the storage graph of (the hierarchical start also
    orders the graph without it)."""
    free = target.with_budget(None)
    s = NoSpill(graph, free, options, clock, start, start.peak_order, start.peak, working_set_bound(graph, free))
    s.storage = storage
    s.facts["heuristic_arena"] = start.arena
    s.report("heuristic start: quick orders and layouts", start.arena)
    aligned, raw = cached_bounds(graph, free)  # (0, 0) unless PLANNER_BOUND_CACHE is set
    if aligned or raw:
        s.strong, s.bound = max(s.strong, min(aligned, s.peak)), max(s.bound, raw)
        s.proven = s.peak <= s.strong
        s.facts["cached_bound"] = raw
    spent: dict[str, float] = {}
    for phase in NOSPILL_PHASES:
        if phase is not phase_layout and _plan_proven(s):
            s.facts["proven_after"] = next(reversed(spent), "heuristics")
            continue  # no later phase can lower the arena: on to the layout, and out
        t0 = clock.elapsed
        s.report(PHASE_WORDS.get(phase.__name__, phase.__name__.removeprefix("phase_")))
        try:
            phase(s)
        except KeyboardInterrupt:  # Ctrl-C: finish with the best order so far
            finish_interrupted(s)
            break
        finally:
            spent[phase.__name__.removeprefix("phase_")] = round(clock.elapsed - t0, 3)
    s.facts["phase_s"] = spent
    store_bounds(graph, free, s.strong, s.bound, str(s.facts.get("strong_bound_how", "")))
    return s


def finish_interrupted(s: NoSpill) -> None:
    """Ctrl-C stopped a phase: a user who interrupts wants the best plan so far, now. Every
    phase changes the state only with complete orders and proven bounds, so the state's order
    stands; it gets the layout heuristics (fast, never worse than the heuristic start) instead
    of what the phases had left, and the fact ``interrupted`` (status stays what is proven)."""
    s.facts["interrupted"] = True
    s.peak = max_live(s.graph, s.target, s.order, aligned=True)
    s.proven = s.peak <= s.strong
    arena, method, offs = best_layout(s.graph, s.target, s.order)
    order, offs, arena, method, src = s.start.never_worse(s.order, offs, arena, method, "auto-order")
    s.order, s.offsets, s.arena = order, offs, arena
    s.facts.update(layout=method, source=src, order_proven=s.proven)


# -- auto ---------------------------------------------------------------------------------------
def solve_auto(graph: Graph, target: Target, options: SolveOptions | None = None) -> Plan:
    """The default solver: the no-spill phases, then the spill phase when the budget (or
    `--objective peak`) asks for it. Honours `target.lifetimes`; never worse than any
    baseline; the returned plan is checked by the simulator."""
    options = options or SolveOptions()
    clock = Clock(options.time_limit)
    budget = target.budget
    need = working_set_bound(graph, target)
    floor = min_budget(graph, target)
    if budget is not None and need > budget and target.can_spill:
        raise DoesNotFit(budget, floor, need, how=spilling_how(target))
    st, work, start = choose_sharing(graph, target, SHARES.heuristics * options.time_limit)
    peak_first = options.objective == "peak" and start.arena > floor
    if peak_first or (budget is not None and start.arena > budget):
        # spills will probably be needed (or may shrink the arena): keep time for them
        clock.limit = options.time_limit * (1 - SHARES.spill_reserve)
    s = best_nospill(work, unshared(target), options, clock, start, st if st is not None and work is st.graph else None)
    clock.limit = options.time_limit
    if s.facts.get("interrupted"):  # Ctrl-C: the no-spill plan so far, if it fits; no spill search
        if budget is None or s.arena <= budget:
            return _nospill_plan(graph, target, s, st)
        raise KeyboardInterrupt
    if peak_first and floor < s.arena:
        # --objective peak: the smallest arena any plan reaches, with the least traffic there
        try:
            return spill_phase(graph, target.with_budget(floor), options, clock, s.arena, target)
        except DoesNotFit:
            pass  # no spill solver reached it: the no-spill plan stands
    if budget is None or s.arena <= budget:
        return _nospill_plan(graph, target, s, st)
    if not target.can_spill:  # no LLB: the no-spill plan is all there is
        raise DoesNotFit(budget, s.arena, working_set_bound(graph, target), how=spilling_how(target))
    return spill_phase(graph, target, options, clock, s.arena)


def choose_sharing(
    graph: Graph, target: Target, time_limit: float | None = None
) -> tuple[Storage | None, Graph, HeuristicStart]:
    """Which bytes the no-spill phases let tensors share (solvers/storage.py): every relation
    the target allows, only those that never raise memory (views, in-place writes), or none,
    whichever gives the best heuristic plan (on a tie, `_sharing_rank`). Returns (storage, the graph the phases plan:
    rewritten for minimal lifetimes when the target asks, its heuristic start).
    `time_limit`: seconds for all of it, shared by the choices left (each heuristic start
    stops at its share, see `heuristic_start`; the first choice is always tried)."""
    timer = Timer()
    kinds = sharing_kinds(target)
    options = list(dict.fromkeys([kinds, kinds & DOMINATING_KINDS, frozenset()] if kinds else [frozenset()]))
    best = None
    for i, ks in enumerate(options):
        share = None if time_limit is None else (time_limit - timer.elapsed) / (len(options) - i)
        if best is not None and share is not None and share <= 0:
            break
        st = storage_graph(graph, ks, target.alignment) if ks else None
        if ks and st is None:
            continue
        base = st.graph if st is not None else graph
        # no-spill planning runs on the rewritten graph when lifetimes are minimal (solvers/lifetimes.py)
        work = rewrite(base) if target.lifetimes == "minimal" else base
        start = heuristic_start(work, target.with_budget(None), share)
        if best is None or (start.arena, _sharing_rank(st)) < (best[2].arena, _sharing_rank(best[0])):
            best = (st, work, start)
    return best


def _sharing_rank(st: Storage | None) -> int:
    """On a tie of the heuristic plans: shared bytes without early allocations first (the
    search gains from them in most orders), then none, then concat slots, whose storage is
    taken when the first slot is made and can cost more in another order (AmoebaNet-A
    ImageNet: its hierarchical order needs 4.57 MB with them, 4.26 MB without)."""
    if st is None:
        return 1
    return 2 if st.alloc else 0


def _nospill_plan(graph: Graph, target: Target, s: NoSpill, st: Storage | None) -> Plan:
    """Lower the state's order and offsets under the user's target, map a rewritten graph's
    stages back to `graph` (minimal lifetimes, shared bytes), and simulate the plan: once."""
    stages = lower(s.graph, unshared(target), s.order, s.offsets)
    base = st.graph if st is not None else graph
    if s.graph is not base:
        stages = restore_stages(s.graph, stages)
    bound = max(s.bound, working_set_bound(base, unshared(target)))
    info = SolverInfo("auto", status_of(s.arena, bound), bound, s.clock.elapsed, s.options.params(), s.facts)
    if st is not None:
        return shared_plan(st, target, stages, info)
    return finalize(Plan(graph, target, stages, info))


def _spill_with(
    solve, kinds: frozenset[str], graph: Graph, target: Target, options: SolveOptions
) -> tuple[Plan | None, DoesNotFit | None]:
    """One spill solver with the relations `kinds` shared: (plan, None), (None, why it does
    not fit), or (None, None) when a store went stale under that sharing (the simulator
    refused the plan mapped back; the other set of relations stands)."""
    try:
        p = with_sharing(solve, kinds=frozenset(kinds))(graph, target, options)
    except DoesNotFit as e:
        return None, e
    except PlanError:
        return None, None
    return with_solver(p, replace(p.solver, facts={**p.solver.facts, "share_kinds": sorted(kinds)})), None


def _spill_key(p: Plan) -> tuple:
    """Least traffic, then least arena; on a tie the plan whose optimality is proven."""
    return (p.metrics.traffic_bytes, p.metrics.arena_bytes, p.solver.status != "optimal")


def spill_time(clock: Clock, margin: float) -> float:
    """Seconds a spill solver may take: what is left of the limit less `margin` (the plan's
    way out), never more than is left; 0 once the time is gone (a spill heuristic then
    still makes its first walk: there is always a plan)."""
    return max(clock.left() - margin, 0.0)


def spill_phase(
    graph: Graph,
    target: Target,
    options: SolveOptions,
    clock: Clock,
    nospill_arena: int,
    user_target: Target | None = None,
) -> Plan:
    """The least-traffic spill plan under `target`'s budget: the spill heuristics first, the
    exact spill solvers with the time left, each started from the best plan so far.
    `user_target`: the budget the user gave, when `target` is tighter (--objective peak).

    Shared bytes: the heuristics plan both with every relation the target allows and with
    the read-only ones (solvers/storage.py); a store of bytes an in-place write or a concat
    slot changes later would be stale, and the simulator refuses such plans, so the exact
    solvers then use the set whose heuristic plan was valid and best."""
    best: Plan | None = None
    failure: DoesNotFit | None = None
    margin = 0.1 + 0.0005 * len(graph.ops)  # lowering and simulating the plan on its way out
    kind_sets = list(dict.fromkeys([sharing_kinds(target), sharing_kinds(target, spills=True)]))
    for spec in sorted((s for s in SOLVERS.values() if s.spills), key=lambda s: s.exact):
        if best is not None and best.solver.status == "optimal":
            break  # proven: the next solvers cannot do better, so the plan is returned now
        if spec.exact and clock.left() < SHARES.spill_exact_min_s:
            continue
        if not spec.exact:
            sets = kind_sets
        else:  # exact solvers only with the sharing the heuristics found valid and best
            sets = [frozenset(best.solver.facts["share_kinds"])] if best is not None else kind_sets[-1:]
        if best is not None and best.solver.facts.get("interrupted"):
            break
        for kinds in sets:
            if best is not None and (best.solver.status == "optimal" or clock.left() <= margin):
                break  # proven, or out of time with a plan in hand
            sub = SolveOptions(
                time_limit=spill_time(clock, margin),
                workers=options.workers,
                seed=options.seed,
                objective="traffic",
                progress=options.progress,
                hint=best,
            )
            try:
                p, why = _spill_with(spec.load(), kinds, graph, target, sub)
            except KeyboardInterrupt:  # Ctrl-C: the best spill plan so far, if there is one
                if best is None:
                    raise
                best = with_solver(best, replace(best.solver, facts={**best.solver.facts, "interrupted": True}))
                break
            if why is not None:
                failure = why if failure is None or why.needed < failure.needed else failure
            elif p is not None and (best is None or _spill_key(p) < _spill_key(best)):
                best = p
    if best is None:
        needed = min(nospill_arena, failure.needed) if failure is not None else nospill_arena
        raise DoesNotFit(
            target.budget,
            needed,
            working_set_bound(graph, target),
            how=spilling_how(target, "with or without spilling"),
        )
    facts = {**best.solver.facts, "inner": best.solver.name, "nospill_arena": nospill_arena}
    info = SolverInfo(
        "auto", best.solver.status, best.solver.bound, clock.elapsed, options.params(), facts, best.solver.objective
    )
    if user_target is not None:
        # planned under a tighter budget; the plan file carries the user's target
        return finalize(Plan(graph, user_target, best.stages, info))
    return with_solver(best, info)
