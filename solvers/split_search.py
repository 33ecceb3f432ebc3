"""Which regions of a TFLite model to compute in row stripes, and into how many (issue 13).

Splitting (planner/models/split.py) lowers the floor that no order or layout can go under
-- the largest working set of one operator -- at the price of recomputed halo rows. Where
to split is a search over a finite candidate set: the regions of consecutive splittable
operators between two single-tensor cuts of the model, each into k stripes for k in
`STRIPES`, halos recomputed or copied. It has two steps, both heuristic (the plan's fact
``split.search: cover+greedy``):

1. **Cover** (`cover`): every single split is estimated (instant, from its row ranges: the
   region's input and output whole plus the stripe buffers live at once, and the exact
   extra MACs). Since regions lie between single-tensor cuts, a set of disjoint splits
   needs, by the estimate, the largest of its regions' estimates and the working sets of
   the operators left unsplit. For a level P, a dynamic program over the operators in
   order finds the set of least extra MACs in which every operator above P is inside a
   region estimated at most P; the lowest level whose set is within `max_overhead` (found
   by bisection: the least MACs only fall as P rises) and the next few distinct sets above
   it are built and planned with a short solve, and the smallest arena wins. With a budget
   (`goal`), the cheapest set estimated to meet it is planned first.
2. **Greedy** rounds from there, each one split more or one grown, as below, while time
   lasts: they mend what the estimate misjudged.

Each greedy round
takes, among the candidates that keep the total MAC overhead within `max_overhead` and
contain the unsplit operator with the largest working set, the one whose short `auto`
solve (`EVAL_SECONDS`) has the smallest arena, and stops when no candidate lowers it, when the arena fits `goal`, or when its time
is up. Candidates are screened first by an estimate from their row ranges (instant: the
region's input and output whole plus the stripe bytes live at once, and the exact extra
MACs), so only the few that could beat the incumbent are built and planned. The solver then plans the chosen graph as it
plans any graph, so ``optimal`` there means optimal for the split chosen, never over all
splits.

The search knows regions only as objects with the operator indices they cover (`.ops`)
and is given `apply`, which makes the split graph of a set of `Split`s (raising ValueError
when a split cannot be made): the transformation lives with the importers
(planner/models/split.py), which the solvers do not import.

Never worse than not splitting: a split is kept only when its heuristic arena is strictly
below the unsplit one's, and `plan_split` falls back to the unsplit plan when the solved
split plan is not smaller.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from planner.bounds import working_set, working_set_bound
from planner.graph import Graph
from planner.macs import total_macs
from planner.solvers.base import SolveOptions, Timer
from planner.target import Target

STRIPES = (2, 3, 4, 6, 8, 10, 12, 16, 20, 24, 32)  # stripe counts tried
# halo rows recomputed (False: more MACs) or copied from the previous stripe (True: no MAC
# more, but the previous stripe's rows stay live into the next one): both are searched
CACHE = (False, True)
# SAME window ops run SAME on the stripe (a row or two more computed, no PAD copy) or every
# window op computes exactly its rows behind a PAD (with cached halos: no MAC more at all)
SAME = (True, False)
MODES = tuple((c, s) for s in SAME for c in CACHE)  # (cache, same) pairs searched
SCREEN = 6  # candidates planned per round: the best by floor, one per set of regions
OPTIONS_SHARE = 0.4  # of the search's time at most for estimating the single splits
COVER_LEVELS = 200  # levels above the lowest the cover looks at for further distinct picks
MAX_REGION_OPS = 16  # operators in one region at most
EVAL_SECONDS = 2.0  # the short solve each screened candidate gets
# the estimate assumes a region's input and output whole across all its stripes; solvers
# interleave stripes and free the input early, beating it by 15 % and more: it ranks, the
# short solves decide, and only candidates estimated this far above the incumbent are dropped
ESTIMATE_SLACK = 1.3
# a region whose estimate is within this of the rest of the model's largest working set is
# taken to no longer limit the plan (a later round adds stripes if the solve says otherwise)
SETTLED_SLACK = 1.15
DEFAULT_MAX_OVERHEAD = 0.10  # --max-overhead 10 (percent)


class RegionLike(Protocol):
    """A region of the model: the indices (in the model's order) of the operators it covers."""

    ops: tuple[int, ...]


@dataclass(frozen=True)
class Split:
    """A region computed in `stripes` row stripes."""

    region: Any  # a RegionLike
    stripes: int
    cache: bool = False  # halo rows copied from the previous stripe instead of computed again
    same: bool = True  # SAME window ops may run SAME on the stripe (models/split.py StripeSplit)


Apply = Callable[[Sequence[Split], Path | None], Graph]
# splits -> (extra MACs, an estimate of each region's peak): instant, for screening
Estimate = Callable[[Sequence[Split]], tuple[int, Sequence[int]]]


@dataclass
class SplitChoice:
    """What the search chose: the graph to plan (the original when no split helped), the
    splits, and the figures it went by (arenas of heuristic plans, working-set floors)."""

    graph: Graph
    splits: tuple[Split, ...]
    floor_before: int
    floor_after: int
    arena_before: int
    arena_after: int
    mac_overhead: float
    candidates: int = 0
    rounds: list[str] = field(default_factory=list)
    # split set planned -> the best proven lower bound on its no-spill arena (0: none), shared
    # by every choice of one search: what `proven_best` weighs the chosen plan against
    bounds: dict[tuple, int] = field(default_factory=dict)

    def note_bound(self, splits: tuple[Split, ...], bound: int) -> None:
        """Keep the best proven bound of a split set: each short solve may prove a bit more."""
        self.bounds[splits] = max(bound, self.bounds.get(splits, 0))

    def proven_best(self, arena: int, unsplit_bound: int) -> bool:
        """Whether a proven-optimal plan of the chosen splits with this arena is the best of
        every split set planned and of no split: each one's lower bound is at least `arena`."""
        others = [b for s, b in self.bounds.items() if s != self.splits and s]
        return arena <= min([unsplit_bound, *others])

    def facts(self) -> dict:
        """The plan's ``split`` fact."""
        return {
            "search": "cover+greedy",
            "splits": len(self.splits),
            "floor_before": self.floor_before,
            "floor_after": self.floor_after,
            "heuristic_arena_before": self.arena_before,
            "heuristic_arena_after": self.arena_after,
            "mac_overhead": round(self.mac_overhead, 6),
            "candidates_planned": self.candidates,
        }


def _arena(graph: Graph, target: Target, time_limit: float | None) -> tuple[int, int]:
    """(arena, proven lower bound on every no-spill arena or 0) of a short `auto` solve
    (heuristic starts, then CP-SAT on the layout and the order while `time_limit` lasts):
    the heuristics alone misjudge stripe graphs badly."""
    from planner.solvers.portfolio import solve_auto

    limit = EVAL_SECONDS if time_limit is None else max(min(EVAL_SECONDS, time_limit), 0.2)
    plan = solve_auto(graph, target, SolveOptions(time_limit=limit, workers=1))
    proven = plan.solver.objective == "arena" and not plan.metrics.spill_traffic_bytes
    return plan.metrics.arena_bytes, plan.solver.bound if proven else 0


def choose_split(
    graph: Graph,
    target: Target,
    regions: Sequence[RegionLike],
    apply: Apply,
    estimate: Estimate,
    *,
    max_overhead: float = DEFAULT_MAX_OVERHEAD,
    goal: int | None = None,
    time_limit: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> SplitChoice:
    """The splits of `graph` the greedy search keeps (module docstring); `regions` are the
    candidates, `apply(splits, folder)` makes a split graph (its model file in `folder`,
    or where the exporter finds it when `folder` is None), `estimate(splits)` screens them."""
    timer = Timer()
    target = target.with_budget(None)
    base_arena, _ = _arena(graph, target, None)
    base_floor = working_set_bound(graph, target)
    choice = SplitChoice(graph, (), base_floor, base_floor, base_arena, base_arena, 0.0)
    if goal is not None and base_arena <= goal:
        return choice
    ws = live_in_order(graph, target)
    search = _Search(
        graph, target, list(regions), apply, estimate, ws, total_macs(graph) or 1, max_overhead, timer, time_limit
    )
    with tempfile.TemporaryDirectory(prefix="planner-split-") as tmp:
        choice = search.cover_start(choice, Path(tmp), goal, progress)
        if goal is None or choice.arena_after > goal:
            choice = _greedy(search, choice, Path(tmp), goal, progress)
    if choice.splits:  # the chosen graph again, written where the exporter and TFLM find it
        choice.graph = apply(choice.splits, None)
    return choice


def live_in_order(graph: Graph, target: Target) -> dict[int, int]:
    """Op index -> bytes L1 holds while it runs in the model's own order: its working set and
    every activation made before it and read after it (a residual's skip tensor, say). What
    an unsplit operator is estimated to need: a solver may find an order that needs less,
    but between single-tensor cuts there is little to reorder."""
    pos = graph.op_index
    n = len(graph.ops)
    span: dict[str, tuple[int, int]] = {}
    for t in graph.tensors.values():
        if t.kind == "weight":
            continue
        made = pos[graph.producer[t.name]] if graph.producer.get(t.name) is not None else -1
        used = [pos[c] for c in graph.consumers.get(t.name, ())]
        last = n if t.kind == "output" else max(used, default=made)
        span[t.name] = (made, last)
    diff = [0] * (n + 2)  # live strictly inside (made, last): a sweep over the ops
    for t, (a, b) in span.items():
        if b > a + 1:
            diff[a + 1] += graph.size(t)
            diff[b] -= graph.size(t)
    out, live = {}, 0
    for i, o in enumerate(graph.ops):
        live += diff[i]
        read_later = sum(graph.size(t) for t in set(o.inputs) if t in span and span[t][1] > i)
        out[i] = working_set(graph, target, o.name) + live - read_later
    return out


def _greedy(search: _Search, choice: SplitChoice, tmp: Path, goal: int | None, progress) -> SplitChoice:
    """Rounds of `search` from `choice` until none lowers the arena, the goal is met or the
    time is up."""
    while not search.out_of_time():
        best = search.round(choice, tmp)
        if best is None:
            break
        choice = best
        if progress is not None:
            progress(choice.rounds[-1])
        if goal is not None and choice.arena_after <= goal:
            break
    return choice


@dataclass
class _Search:
    graph: Graph
    target: Target
    regions: list
    apply: Apply
    estimate: Estimate
    ws: dict[int, int]
    base_macs: int
    max_overhead: float
    timer: Timer
    time_limit: float | None

    def out_of_time(self) -> bool:
        return self.time_limit is not None and self.timer.elapsed >= self.time_limit

    def options(self) -> list[Option]:
        """Every single split within the MAC overhead, estimated (ValueError: cannot be made)."""
        out = []
        budget = self.max_overhead * self.base_macs + 1e-9
        stop = None if self.time_limit is None else OPTIONS_SHARE * self.time_limit
        for r in self.regions:
            if stop is not None and self.timer.elapsed > stop:
                break  # a huge model: plan what was estimated (regions come in model order)
            for c, same in MODES if getattr(r, "kind", "rows") == "rows" else ((False, True),):
                for k in STRIPES:
                    try:
                        extra, peaks = self.estimate((Split(r, k, c, same),))
                    except ValueError:
                        break  # e.g. more stripes than the region's output has rows
                    if extra > budget:
                        break  # more stripes recompute more halo rows
                    out.append(Option(Split(r, k, c, same), r.ops[0], r.ops[-1], extra, peaks[0]))
        return out

    def cover_picks(self, goal: int | None) -> list[tuple[Split, ...]]:
        """The split sets step 1 of the module docstring plans: the cheapest meeting `goal`,
        the one at the lowest level within the overhead, and the next distinct ones above it."""
        options = self.options()
        n = len(self.graph.ops)
        budget = self.max_overhead * self.base_macs + 1e-9

        def within(level: int) -> tuple[Split, ...] | None:
            r = cover(n, self.ws, options, level)
            return r[1] if r is not None and r[0] <= budget else None

        picks: list[tuple[Split, ...]] = []
        if goal is not None and (at_goal := within(goal)):
            picks.append(at_goal)
        levels = sorted({o.peak for o in options} | set(self.ws.values()))
        lo, hi = 0, len(levels) - 1  # the last level leaves every operator unsplit: always within
        while lo < hi:
            mid = (lo + hi) // 2
            if within(levels[mid]) is not None:
                hi = mid
            else:
                lo = mid + 1
        for level in levels[lo : lo + COVER_LEVELS]:
            got = within(level)
            if got and got not in picks:
                picks.append(got)
            if len(picks) >= SCREEN:
                break
        return picks

    def cover_start(self, choice: SplitChoice, tmp: Path, goal: int | None, progress) -> SplitChoice:
        """Step 1 of the module docstring: the best of the cover's picks, planned briefly."""
        best = choice
        picks = self.cover_picks(goal)
        for n, splits in enumerate(picks):
            if self.out_of_time():
                break
            got = self.evaluate(choice, splits, tmp, len(picks) - n)
            if got is not None and (got.arena_after, got.mac_overhead) < (best.arena_after, best.mac_overhead):
                best = got
                if progress is not None:
                    progress(best.rounds[-1])
            if goal is not None and best.arena_after <= goal:
                break  # the picks come cheapest first when a goal is given
        return best

    def evaluate(self, choice: SplitChoice, splits: tuple[Split, ...], tmp: Path, share: int) -> SplitChoice | None:
        """`choice` with `splits` instead, its arena from a short solve (`share`: how many
        solves the time left is shared by), or None when the split cannot be made."""
        try:
            g = self.apply(splits, tmp)
        except ValueError:
            return None
        floor = working_set_bound(g, self.target)
        left = None if self.time_limit is None else max(self.time_limit - self.timer.elapsed, 0.0) / max(share, 1)
        arena, bound = _arena(g, self.target, left)
        choice.note_bound(splits, bound)
        extra = total_macs(g) - self.base_macs
        overhead = max(extra, 0) / self.base_macs
        choice.candidates += 1
        rounds = [*choice.rounds, _describe(splits, arena, floor, overhead)]
        return replace(
            choice, splits=splits, floor_after=floor, arena_after=arena, mac_overhead=overhead, rounds=rounds
        )

    def candidates(self, choice: SplitChoice) -> list[tuple[Split, ...]]:
        """Split sets one step from `choice`: one more region (disjoint from the chosen ones)
        or a chosen region replaced by one that contains it, at every stripe count; only
        regions growing a chosen one or holding an unsplit operator with the largest working
        set (or one reaching the current arena): without splitting that one, the floor stays."""
        out = []
        done = {k for s in choice.splits for k in s.region.ops}
        level = min(choice.arena_after, max((w for k, w in self.ws.items() if k not in done), default=0))
        for r in self.regions:
            ops = set(r.ops)
            grows = [s for s in choice.splits if set(s.region.ops) <= ops]
            if not grows and not any(self.ws.get(k, 0) >= level for k in r.ops):
                continue
            kept = [s for s in choice.splits if s not in grows]
            if any(set(s.region.ops) & ops for s in kept):
                continue
            out += [
                tuple(sorted((*kept, Split(r, k, c, same)), key=lambda s: s.region.ops[0]))
                for k in STRIPES
                for c, same in MODES
            ]
        return out

    def round(self, choice: SplitChoice, tmp: Path) -> SplitChoice | None:
        """The best split set one step from `choice`, or None when none lowers its arena:
        every candidate estimated (instant), the best `SCREEN` (one per set of regions)
        built and solved briefly."""
        scored = []
        for splits in self.candidates(choice):
            try:
                extra, peaks = self.estimate(splits)
            except ValueError:
                continue  # e.g. more stripes than the region's output has rows
            overhead = extra / self.base_macs
            if overhead > self.max_overhead + 1e-12:
                continue
            done = {k for s in splits for k in s.region.ops}
            rest = max((w for k, w in self.ws.items() if k not in done), default=0)
            est = max(rest, *peaks)
            if est < ESTIMATE_SLACK * choice.arena_after:
                scored.append((est, overhead, splits, max(peaks) <= SETTLED_SLACK * rest))

        # per set of regions one stripe count: the cheapest in MACs whose regions no longer
        # limit the plan (the rest of the model does), else the one estimated smallest
        def preference(c: tuple) -> tuple:
            est, overhead, _, settled = c
            return (0, overhead) if settled else (1, est)

        per: dict[tuple, tuple] = {}
        for c in scored:
            key = tuple((s.region.ops, s.cache, s.same) for s in c[2])
            if key not in per or preference(c) < preference(per[key]):
                per[key] = c
        scored = sorted(per.values(), key=lambda c: (c[0], c[1]))
        seen: set[tuple] = set()
        best = None
        for _est, overhead, splits, _ in scored:
            if len(seen) >= SCREEN or self.out_of_time():
                break
            seen.add(tuple(s.region.ops for s in splits))
            g = self.apply(splits, tmp)
            floor = working_set_bound(g, self.target)
            left = None if self.time_limit is None else max(self.time_limit - self.timer.elapsed, 0.0) / SCREEN
            arena, bound = _arena(g, self.target, left)
            choice.note_bound(splits, bound)
            choice.candidates += 1
            # the smallest arena; on a tie the fewest extra MACs (they buy nothing more)
            if (arena, overhead) < ((best.arena_after, best.mac_overhead) if best else (choice.arena_after, -1.0)):
                rounds = [*choice.rounds, _describe(splits, arena, floor, overhead)]
                best = replace(
                    choice, splits=splits, floor_after=floor, arena_after=arena, mac_overhead=overhead, rounds=rounds
                )
        return best


@dataclass(frozen=True)
class Option:
    """One split on its own, estimated: operators `first`..`last` (model order), its extra
    MACs and estimated peak."""

    split: Split
    first: int
    last: int
    extra: int
    peak: int


def cover(n: int, ws: dict[int, int], options: Sequence[Option], level: int) -> tuple[int, tuple[Split, ...]] | None:
    """The disjoint splits of least extra MACs under which nothing is estimated above
    `level`: every operator (0..n-1) whose working set `ws` exceeds it lies in a chosen
    region estimated at most `level`; None when there is no such set. A shortest path over
    the operators in order: from position i, leave operator i unsplit (if it fits) or take
    an option starting at i to the position after its last operator."""
    inf = float("inf")
    cost: list[float] = [inf] * (n + 1)
    back: list[tuple[int, Option | None] | None] = [None] * (n + 1)
    cost[0] = 0
    starts: dict[int, list[Option]] = {}
    for o in options:
        if o.peak <= level:
            starts.setdefault(o.first, []).append(o)
    for i in range(n):
        if cost[i] == inf:
            continue
        if ws.get(i, 0) <= level and cost[i] < cost[i + 1]:
            cost[i + 1], back[i + 1] = cost[i], (i, None)
        for o in starts.get(i, ()):
            j = o.last + 1
            if cost[i] + o.extra < cost[j]:
                cost[j], back[j] = cost[i] + o.extra, (i, o)
    if cost[n] == inf:
        return None
    chosen, j = [], n
    while j > 0:
        i, o = back[j]
        if o is not None:
            chosen.append(o.split)
        j = i
    return int(cost[n]), tuple(reversed(chosen))


def _describe(splits: Sequence[Split], arena: int, floor: int, overhead: float) -> str:
    parts = ", ".join(
        f"ops {s.region.ops[0]}-{s.region.ops[-1]} in {s.stripes}{' (cached halos)' if s.cache else ''}"
        f"{' (exact rows)' if not s.same else ''}"
        f"{' channel chunks' if getattr(s.region, 'kind', 'rows') == 'channels' else ''}"
        for s in splits
    )
    return f"split {parts}: arena {arena} B (short solve), floor {floor} B, +{overhead:.1%} MACs"
