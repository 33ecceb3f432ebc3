"""`auto`: the answer users get by default, anytime and never worse than a baseline.

1. Heuristics (every order × every layout): an instant valid answer.
2. Order: split at sequential points (solvers/decompose.py); each segment is solved by
   the CP-SAT order model warm-started from the heuristics (segments past EXACT_OP_LIMIT
   keep the heuristic order); beam search adds a candidate on graphs that do not split.
3. If the order is not proven optimal: large-neighbourhood search, re-solving windows of
   the order around its peak with CP-SAT while the rest stays fixed.
4. Layout: heuristics, then CP-SAT layout when they leave fragmentation above max-live.
5. The best plan the simulator accepts wins; `optimal` only when its arena equals the
   proven bound. Below the no-spill arena, the spill solvers take over and the plan with
   the least traffic that fits wins.
"""

from __future__ import annotations

import random
from dataclasses import replace

from planner.bounds import working_set_bound
from planner.graph import Graph
from planner.plan import Plan, SolverInfo
from planner.simulate import finalize
from planner.solvers.base import DoesNotFit, Progress, SolveOptions, Timer, nospill_plan
from planner.solvers.cpsat_layout import layout_lower_bound, solve_joint
from planner.solvers.cpsat_order import (
    HeuristicStart,
    forced_live_bounds,
    heuristic_start,
    layout_order,
    optimal_order,
)
from planner.solvers.decompose import Segment, decompose_order, segment_subgraph, with_background
from planner.solvers.dp import raw_arena_bound
from planner.solvers.heuristic import best_layout
from planner.solvers.heuristics.beam import beam_search
from planner.solvers.lifetimes import restore, rewrite
from planner.solvers.lowering import live_intervals, max_live
from planner.solvers.relax import relaxed_order_bound
from planner.target import Target

# Past this many ops in one segment the monolithic order model rarely closes its gap in a
# minute: such segments keep their heuristic order and are improved by LNS windows instead.
EXACT_OP_LIMIT = 1200
LNS_WINDOW = 60
ORDER_SHARE = 0.55  # of the time limit, for segments (the rest: LNS, then layout)
LNS_SHARE = 0.75  # LNS runs until this share of the time limit
SEGMENT_RELAX_SHARE = 0.3  # of a segment's time, for the relaxation bound before CP-SAT
SEGMENT_RELAX_MIN_OPS = 30  # below this CP-SAT closes segments in a blink
STRONG_SHARE = 0.25  # of the time limit, first, for the relaxation bound (may prove the heuristic order)


def _segment_solver(options: SolveOptions, timer: Timer, stats: dict, whole: tuple[int, int] | None = None):
    """`whole`: (op count, aligned relaxation bound) already computed for the whole graph,
    reused when a segment is the whole graph (it does not split) instead of computed twice."""

    def solve(g: Graph, target: Target, time_limit: float):
        stats["segments_solved"] = stats.get("segments_solved", 0) + 1
        if len(g.ops) > EXACT_OP_LIMIT or time_limit < 0.05:
            order = heuristic_start(g, target).peak_order
            return order, max_live(g, target, order, aligned=True), working_set_bound(g, target), False
        t0 = timer.elapsed
        hint = heuristic_start(g, target)
        strong = 0
        if whole is not None and len(g.ops) == whole[0]:
            strong = whole[1]
        elif len(g.ops) > SEGMENT_RELAX_MIN_OPS:
            # the relaxation DP (solvers/relax.py) first: when it proves the heuristic order,
            # CP-SAT is skipped; else it still strengthens the segment's bound
            strong = relaxed_order_bound(g, target, hint.peak, time_limit=SEGMENT_RELAX_SHARE * time_limit).aligned
        slack = max(
            (target.align(t.bytes) - t.bytes for n, t in g.tensors.items() if target.occupies_l1(g.tensors[n])), default=0
        )
        if strong >= hint.peak:
            raw = max(strong - slack, forced_live_bounds(g, target)[1])
            order, peak, ok = hint.peak_order, hint.peak, True
        else:
            left = time_limit - (timer.elapsed - t0)
            res = optimal_order(g, target, left, options.workers, options.seed, hint=hint.peak_order, progress=None)
            order, peak, raw = res.order, res.peak, max(res.raw_bound, strong - slack)
            ok = res.status == "optimal" or peak <= strong
        options.report(
            Progress("auto", None, None, timer.elapsed, f"segment {stats['segments_solved']}: {len(g.ops)} ops {ok}")
        )
        return order, peak, raw, ok

    return solve


RAW_BOUND_MAX_OPS = 60  # the slack-aware DP is cheap on segments up to about this size


def _raw_segment_bound(seg: Segment, target: Target, seconds: float) -> int | None:
    """Close the alignment-slack gap of a small segment with the slack-aware DP (solvers/dp.py)."""
    if len(seg.graph.ops) > RAW_BOUND_MAX_OPS or seconds < 0.01:
        return None
    return raw_arena_bound(seg.graph, target, min(seconds, 5.0), background=(seg.background, seg.background_slack))


JOINT_BOUND_MAX_OPS = 60  # cpsat-joint proves small segments in seconds
JOINT_SHARE = 0.2  # of the time limit at most, for it


def _layout_bound(graph: Graph, target: Target, order: list[str]) -> int:
    return layout_lower_bound(live_intervals(graph, target, order), target.alignment)


def _joint_segments(
    graph: Graph,
    target: Target,
    order: list[str],
    segments: list[Segment],
    arena: int,
    options: SolveOptions,
    seconds: float,
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
    pos = {o: i for i, o in enumerate(order)}

    def peak_now(seg: Segment) -> int:
        seg_order = sorted((o.name for o in seg.graph.ops), key=pos.__getitem__)
        return max_live(seg.graph, target, seg_order, aligned=True) + seg.background

    for seg in sorted(segments, key=peak_now, reverse=True):
        left = seconds - timer.elapsed
        if bound >= arena or left < 0.3:
            break
        plan = solve_joint(
            with_background(seg, graph), target, replace(options, time_limit=left, progress=None, extra={})
        )
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


def _lns(
    graph: Graph, target: Target, order: list[str], deadline: float, options: SolveOptions, timer: Timer, bound: int
) -> tuple[list[str], int]:
    """Re-solve windows around the peak position; accept when the global peak does not grow."""
    rng = random.Random(options.seed)
    n = len(order)
    peak = max_live(graph, target, order, aligned=True)
    k = min(LNS_WINDOW, n)
    tries = 0
    while timer.elapsed < deadline and peak > bound and tries < 200 and n > 2:
        tries += 1
        # positions where the peak is reached: pick one, centre a window of k ops near it
        live = _live_profile(graph, target, order)
        peaks = [p for p, v in enumerate(live) if v == peak]
        p = rng.choice(peaks)
        lo = max(0, min(n - k, p - rng.randint(k // 4, 3 * k // 4)))
        seg = segment_subgraph(graph, target, order, lo, lo + k)
        left = deadline - timer.elapsed
        if left < 0.2:
            break
        res = optimal_order(
            seg.graph, target, min(left, 5.0), options.workers, options.seed + tries, hint=order[lo : lo + k]
        )
        cand = order[:lo] + res.order + order[lo + k :]
        cpeak = max_live(graph, target, cand, aligned=True)
        if cpeak <= peak:
            if cpeak < peak:
                options.report(Progress("auto", None, bound, timer.elapsed, f"LNS peak {cpeak}"))
            order, peak = cand, cpeak
    return order, peak


def _live_profile(graph: Graph, target: Target, order: list[str]) -> list[int]:
    delta = [0] * (len(order) + 1)
    for iv in live_intervals(graph, target, order):
        s = target.align(iv.size)
        delta[iv.start] += s
        delta[iv.end + 1] -= s
    out, cur = [], 0
    for d in delta[:-1]:
        cur += d
        out.append(cur)
    return out


def _best_nospill(
    graph: Graph, target: Target, options: SolveOptions, timer: Timer, start: HeuristicStart
) -> tuple[Plan, dict]:
    """The best no-spill plan (budget ignored), with its proven bound."""
    free = target.with_budget(None)
    stats: dict = {}
    lb = working_set_bound(graph, free)
    options.report(Progress("auto", start.arena, lb, timer.elapsed, f"heuristic {start.arena_name}"))
    stats["heuristic_arena"] = start.arena
    order, peak = start.peak_order, start.peak
    bound = lb
    proven = False
    strong = 0  # proven bound on the aligned max-live of every order (solvers/relax.py)
    critical: list[Segment] = []
    if len(graph.ops) > 1 and options.time_limit > 0.2 and peak > lb:
        strong_time = max(STRONG_SHARE * options.time_limit, min(5.0, 0.5 * options.time_limit))
        sb = relaxed_order_bound(graph, free, peak, time_limit=strong_time)
        strong = sb.aligned
        stats.update(strong_bound=strong, strong_bound_how=sb.how)
        slack = max(
            (free.align(t.bytes) - t.bytes for n, t in graph.tensors.items() if free.occupies_l1(graph.tensors[n])),
            default=0,
        )
        bound = max(bound, strong - slack)
    if len(graph.ops) > 1 and options.time_limit > 0.2:
        # when the relaxation already proved the order, the segments only refine the raw bound
        share = ORDER_SHARE if peak > strong else 0.2
        res = decompose_order(
            graph,
            free,
            _segment_solver(options, timer, stats, (len(graph.ops), strong) if strong else None),
            # the order phase ends at `share` of the limit, the relaxation above included
            max(share * options.time_limit - timer.elapsed, 0.1 * options.time_limit),
            order,
            lambda seg, sec: _raw_segment_bound(seg, free, sec),
        )
        stats.update(segments=res.segments, largest_segment=res.largest_segment)
        critical = res.critical
        rpeak = max_live(graph, free, res.order, aligned=True)
        if rpeak <= peak:
            order, peak = res.order, rpeak
        bound = max(bound, res.bound_raw)
        proven = res.proven or peak <= strong
        if not proven and len(graph.ops) <= 3000:
            left = LNS_SHARE * options.time_limit - timer.elapsed
            if left > 0.5:
                b_order, b_peak = beam_search(graph, free, time_limit=min(left / 4, 10.0))
                stats["beam_peak"] = b_peak
                if b_peak < peak:
                    order, peak = b_order, b_peak
            order, peak = _lns(
                graph,
                free,
                order,
                LNS_SHARE * options.time_limit,
                options,
                timer,
                max(bound + free.alignment - 1, strong),
            )
        options.report(Progress("auto", None, bound, timer.elapsed, f"order peak {peak}"))
    margin = 0.1 + 0.002 * len(graph.ops)
    small = [seg for seg in critical if seg.exact and len(seg.graph.ops) <= JOINT_BOUND_MAX_OPS]
    if small and options.time_limit - timer.elapsed > 1.0:
        h_arena = best_layout(graph, free, order)[0]
        if h_arena > bound:
            seconds = min(JOINT_SHARE * options.time_limit, options.time_limit - timer.elapsed - 2 * margin)
            joint, seg_orders = _joint_segments(graph, free, order, small, h_arena, options, seconds)
            if joint > bound:
                stats["joint_segment_bound"] = bound = joint
            if seg_orders:
                cand = _substitute(order, seg_orders)
                if _layout_bound(graph, free, cand) <= _layout_bound(graph, free, order):
                    order, stats["joint_segment_orders"] = cand, len(seg_orders)
    arena, offs, method, _ = layout_order(
        graph, free, order, options.time_limit - timer.elapsed - margin, options.workers, options.seed, None, bound
    )
    order, offs, arena, method, src = start.never_worse(order, offs, arena, method, "auto-order")
    stats.update(layout=method, source=src, order_proven=proven)
    status = "optimal" if arena <= bound else "feasible"
    info = SolverInfo("auto", status, bound, 0.0, stats)
    plan = nospill_plan(graph, free, order, offs, info)
    return plan, offs


def solve_auto(graph: Graph, target: Target, options: SolveOptions | None = None) -> Plan:
    options = options or SolveOptions()
    timer = Timer()
    budget = target.budget
    need = working_set_bound(graph, target)
    if budget is not None and need > budget:
        raise DoesNotFit(budget, _min_spill_budget(graph, target, need), need, how="even with spilling")
    # no-spill planning runs on the rewritten graph when lifetimes are minimal (solvers/lifetimes.py)
    work = rewrite(graph) if target.lifetimes == "minimal" else graph
    start = heuristic_start(work, target.with_budget(None))
    nospill_opts = options
    peak_first = options.objective == "peak" and start.arena > _min_spill_budget(graph, target, need)
    if peak_first or (budget is not None and start.arena > budget):
        # spills will probably be needed (or may shrink the arena): keep half the time for them
        nospill_opts = replace(options, time_limit=options.time_limit / 2)
    best, offs = _best_nospill(work, target, nospill_opts, timer, start)
    if peak_first:
        smallest = _min_spill_budget(graph, target, need)
        if smallest < best.metrics.arena_bytes:
            # --objective peak: the smallest arena any plan reaches, with the least traffic there
            try:
                return _spill(graph, target.with_budget(smallest), options, timer, best, target)
            except DoesNotFit:
                pass  # no spill solver reached it: the no-spill plan stands
    if budget is None or best.metrics.arena_bytes <= budget:
        # lower again under the real target so the plan file carries the user's budget
        info = best.solver
        info.options = {**info.options, **options.to_dict()}
        plan = nospill_plan(work, target, best.order, offs, info)
        if work is not graph:
            plan = restore(plan, graph, target)
        plan.solver.wall_s = timer.elapsed
        return plan
    return _spill(graph, target, options, timer, best)


def _min_spill_budget(graph: Graph, target: Target, need: int) -> int:
    """The smallest budget a spill plan can use (alignment included), if the spiller says."""
    try:
        from planner.solvers.heuristics.spill import min_budget
    except ImportError:
        return need
    return max(need, min_budget(graph, target))


def _spill_key(p: Plan) -> tuple:
    """Least traffic, then least arena; on a tie the plan whose optimality is proven."""
    return (p.metrics.traffic_bytes, p.metrics.arena_bytes, p.solver.status != "optimal")


def _spill(
    graph: Graph, target: Target, options: SolveOptions, timer: Timer, nospill: Plan, user_target: Target | None = None
) -> Plan:
    """The least-traffic spill plan under `target`'s budget (`user_target`: the budget the
    user gave, when `target` is tighter for --objective peak)."""
    from planner.solvers.registry import SOLVERS

    spillers = [s for s in SOLVERS.values() if s.spills]
    if not spillers:
        raise DoesNotFit(target.budget, nospill.metrics.arena_bytes, working_set_bound(graph, target))
    best: Plan | None = None
    failure: DoesNotFit | None = None
    for spec in sorted(spillers, key=lambda s: s.exact):  # heuristics first, exact with the time left
        remaining = options.time_limit - timer.elapsed
        if spec.exact and remaining < 1.0:
            continue
        sub = SolveOptions(
            time_limit=max(remaining, 0.1),
            workers=options.workers,
            seed=options.seed,
            objective="traffic",
            progress=options.progress,
            extra={"hint_plan": best} if best is not None else {},
        )
        try:
            p = spec.load()(graph, target, sub)
        except DoesNotFit as e:
            failure = e if failure is None or e.needed < failure.needed else failure
            continue
        if best is None or _spill_key(p) < _spill_key(best):
            best = p
    if best is None:
        if failure is not None:
            raise failure
        raise DoesNotFit(
            target.budget,
            nospill.metrics.arena_bytes,
            working_set_bound(graph, target),
            how="with or without spilling",
        )
    best.solver = SolverInfo(
        "auto",
        best.solver.status,
        best.solver.bound,
        timer.elapsed,
        {
            **best.solver.options,
            "inner": best.solver.name,
            "nospill_arena": nospill.metrics.arena_bytes,
            **options.to_dict(),
        },
    )
    if user_target is not None:
        # planned under a tighter budget; the plan file carries the user's target
        best = finalize(Plan(graph, user_target, best.stages, best.solver))
    return best
