"""Exact minimum-peak order by dynamic programming over executed-op sets (Serenity-style).

A state is the set S of ops already run (always a down-set of the DAG, kept as a bitmask).
What is live between steps depends only on S, not on the order inside it, so
`best(S) = min over the last op o of max(best(S - o), step(S - o, o))` is exact. States are
expanded layer by layer (|S| = 0, 1, ...), each memoised once with the best peak and the
op that reached it, so the order is rebuilt by walking back from the full set.

Memory model: exactly the no-spill lifetimes of `lowering.live_intervals`, in aligned
bytes (what the layout packs), so the peak equals `bounds.max_live(order, aligned=True)`.
With `carry(S)` the bytes live between steps after S, running o from S needs
`carry(S) + (bytes starting at o)`, and afterwards `carry(S + o) = that - (bytes ending at o)`.

Free-first dominance: when some op i may run from S within the state's peak (its step
costs at most best(S)) and frees at least the bytes it makes, only i is expanded from S.
Exchange argument: take any completion from S and move i to the front. The set i frees
is the same (its other consumers are in S already), and at every op in between, the live
bytes change by at most (bytes i makes) - (bytes i frees) <= 0 (an item i may start that
another op started first is live earlier, at most its size more, counted in what i makes);
i's own step costs at most best(S). So no completion's peak grows and the minimum is kept,
as is the least peak of a layer (the timeout bound: some optimal order passes through it).
Only on the plain cost (not slack-aware, no glue). Random wiring of equal tensors, where
each node's chain frees what it makes: a 32-node stage in 90k states instead of 190k.
Tested against brute force in tests/test_dp_dominance.py.

Pruning: states whose peak reaches the best heuristic's peak (an upper bound) are dropped;
if no complete state survives, the heuristic order is optimal. Exact but exponential in
the DAG's width: the number of states is capped (default 2e6) and beyond it `ValueError`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from planner.graph import Graph
from planner.plan import Plan
from planner.solvers.base import Progress, SolveOptions, Timer, proven_plan
from planner.solvers.cpsat_layout import layout_order
from planner.solvers.heuristic import heuristic_start
from planner.solvers.items import Item, forced_live_bounds, lifetime_items
from planner.solvers.lowering import max_live
from planner.solvers.reach import Reach
from planner.target import Target

DEFAULT_STATE_LIMIT = 2_000_000


class DPTimeout(Exception):
    """The DP ran out of time; carries the lower bound proven so far."""

    def __init__(self, bound: int, states: int) -> None:
        self.bound, self.states = bound, states
        super().__init__(f"DP timed out after {states} states (bound so far {bound})")


@dataclass
class DPResult:
    """The DP's answer: an order of least aligned max-live, that peak, how many states it took."""

    order: list[str]
    peak: int  # aligned max-live of `order`, the minimum over all topological orders
    states: int
    from_heuristic: bool  # the upper bound was already optimal


@dataclass
class _StepTables:
    """What running each op does to the live bytes (aligned), as bitmask tests on S."""

    pred: list[int]  # predecessors of op i (all must be in S before i runs)
    starts: list[list[tuple[int, int]]]  # per op: (bytes, ops that may start it) of items starting at it
    ends: list[list[tuple[int, int]]]  # per op: (bytes, other ops that may end it) of items ending at it
    carry0: int  # bytes live from the start (graph inputs)
    slacky: list[tuple[int, int, int]]  # (slack, start mask, end mask), largest slack first (slack-aware)
    glue_next: list[int] = field(default_factory=list)  # per op: the op glued behind it, or -1


def _step_tables(graph: Graph, items: list[Item], slack_aware: bool) -> _StepTables:
    """The per-op start / end tables of `items` (see the module doc's memory model)."""
    idx = graph.op_index
    n = len(graph.ops)
    pred = [0] * n
    for u, v in graph.dag.edges:
        pred[idx[v]] |= 1 << idx[u]

    def mask(ops) -> int:
        m = 0
        for o in ops:
            m |= 1 << idx[o]
        return m

    # per op: items that may start at it (size, other start ops) and may end at it (size, other end ops)
    starts: list[list[tuple[int, int]]] = [[] for _ in range(n)]
    ends: list[list[tuple[int, int]]] = [[] for _ in range(n)]
    carry0 = 0
    for it in items:
        if it.aligned == 0:
            continue
        if it.start[0] == "zero":
            carry0 += it.aligned
        else:
            sm = mask(it.start[1])
            for o in it.start[1]:
                starts[idx[o]].append((it.aligned, sm))
        if it.end[0] == "max":
            em = mask(it.end[1])
            for o in it.end[1]:
                i = idx[o]
                ends[i].append((it.aligned, em & ~(1 << i)))
    # slack-aware cost: the top tensor of a layout only occupies its raw bytes, so at each
    # step the arena is at least (aligned live) - (largest alignment slack among live tensors)
    slacky = sorted(
        (
            (
                it.max_slack,
                0 if it.start[0] == "zero" else mask(it.start[1]),
                mask(it.end[1]) if it.end[0] == "max" else 0,
            )
            for it in items
            if slack_aware and it.max_slack > 0 and it.aligned > 0
        ),
        reverse=True,
    )
    return _StepTables(pred, starts, ends, carry0, slacky)


def _expand(
    layer: dict[int, tuple[int, int]],
    parent: dict[int, int],
    tab: _StepTables,
    full: int,
    upper: int,
    background: tuple[int, int] | None,
    check_time: Callable[[dict[int, tuple[int, int]]], None],
) -> dict[int, tuple[int, int]]:
    """The next layer: every state of `layer` (S -> (peak, carry)) extended by each op that
    may run next, keeping per new state the least peak below `upper` (and its last op in
    `parent`). `background` (aligned bytes, slack) only when slack-aware; `check_time(layer)`
    every 4096 states (it raises DPTimeout past the deadline)."""
    pred, starts, ends, slacky = tab.pred, tab.starts, tab.ends, tab.slacky
    # the free-first dominance (module doc) only on the plain cost: no slack, no glue
    dominance = background is None and not tab.glue_next
    nxt: dict[int, tuple[int, int]] = {}
    for count, (s, (peak, carry)) in enumerate(layer.items()):
        if count & 4095 == 4095:
            check_time(layer)
        free = full & ~s
        if tab.glue_next and s in parent and tab.glue_next[parent[s]] >= 0:
            free = 1 << tab.glue_next[parent[s]]  # a glued chain is open: its next op only
        moves: list[tuple[int, int, int]] = []  # (op, peak after it, carry after it)
        while free:
            low = free & -free
            i = low.bit_length() - 1
            free ^= low
            if pred[i] & ~s:
                continue
            step = carry
            for size, sm in starts[i]:
                if not sm & s:
                    step += size
            cost = step
            if background is not None:
                si = s | low
                top = background[1]
                for sl, sm, em in slacky:
                    if sl <= top:
                        break
                    if (not sm or sm & si) and (not em or em & ~s):
                        top = sl
                        break
                cost += background[0] - top
            p = peak if peak >= cost else cost
            if p >= upper:
                continue
            for size, em in ends[i]:
                if not em & ~s:
                    step -= size
            if dominance and cost <= peak and step <= carry:
                moves = [(i, p, step)]  # runs within the peak and frees at least what it makes
                break
            moves.append((i, p, step))
        for i, p, step in moves:
            t = s | 1 << i
            old = nxt.get(t)
            if old is not None and old[0] <= p:
                continue
            nxt[t] = (p, step)
            parent[t] = i
    return nxt


def run_dp(
    graph: Graph,
    target: Target,
    upper_order: list[str],
    upper: int,
    lower: int,
    state_limit: int,
    deadline: float | None,
    timer: Timer,
    slack_aware: bool = False,
    background: tuple[int, int] = (0, 0),
    glue: Sequence[tuple[str, str]] = (),
) -> DPResult:
    """The exact minimum over topological orders of the aligned max-live (module doc), by
    layers of executed-op sets, pruned at `upper` (the peak of `upper_order`, a known order).

    `lower` is a proven lower bound: when `upper` meets it, or when no order beats `upper`,
    `upper_order` is returned (``from_heuristic``). With `slack_aware` each step costs the
    aligned live bytes minus the largest alignment slack among them (`raw_arena_order`),
    plus `background` = (aligned bytes, largest slack) of tensors live throughout.

    With `glue` ((u, v) pairs run back to back: cpsat_order.GLUE) the DP runs over glued
    orders only, a restriction: its peak is then no bound (solvers/hierarchical.py).

    Raises ValueError past `state_limit` states and DPTimeout (with the bound proven so
    far) past `deadline` (seconds on `timer`)."""
    items = lifetime_items(graph, target)
    names = [o.name for o in graph.ops]
    n = len(names)
    full = (1 << n) - 1
    if upper <= lower or n == 0:
        return DPResult(list(upper_order), upper, 0, True)
    tab = _step_tables(graph, items, slack_aware)
    if glue:
        idx = graph.op_index
        tab.glue_next = [-1] * n
        for u, v in glue:
            tab.glue_next[idx[u]] = idx[v]
    bg = background if slack_aware else None
    layer: dict[int, tuple[int, int]] = {0: (0, tab.carry0)}  # S -> (peak, carry)
    parent: dict[int, int] = {}
    states = 1

    def check_time(reached: dict[int, tuple[int, int]]) -> None:
        """Past the deadline: DPTimeout with the least peak of `reached` as the bound."""
        if deadline is not None and timer.elapsed > deadline:
            bound = min((v[0] for v in reached.values()), default=upper)
            raise DPTimeout(max(lower, min(bound, upper)), states)

    for k in range(n):
        nxt = _expand(layer, parent, tab, full, upper, bg, check_time)
        states += len(nxt)
        if states > state_limit:
            raise ValueError(
                f"DP needs more than {state_limit} states for {graph.name!r} ({n} ops, reached layer "
                f"{k + 1}); the graph is too wide for the exact DP: use cpsat-order"
            )
        check_time(nxt)
        layer = nxt
        if not layer:
            return DPResult(list(upper_order), upper, states, True)
    order: list[int] = []
    s = full
    while s:
        i = parent[s]
        order.append(i)
        s ^= 1 << i
    return DPResult([names[i] for i in reversed(order)], layer[full][0], states, False)


def raw_arena_bound(
    graph: Graph,
    target: Target,
    time_limit: float,
    state_limit: int = 300_000,
    background: tuple[int, int] = (0, 0),
) -> int | None:
    """The value of `raw_arena_order` alone."""
    res = raw_arena_order(graph, target, time_limit, state_limit, background)
    return None if res is None else res[0]


def raw_arena_order(
    graph: Graph,
    target: Target,
    time_limit: float,
    state_limit: int = 300_000,
    background: tuple[int, int] = (0, 0),
) -> tuple[int, list[str]] | None:
    """(bound, order): a lower bound on the raw `arena_bytes` of every no-spill plan and an
    order that attains it in the DP's measure; None if the DP gives up.

    Offsets are multiples of the alignment, so tensors live together occupy disjoint aligned
    ranges and only the top one can end early: arena >= aligned live - its slack. The DP
    minimises, over all orders, the max over steps of (aligned live - largest slack among
    the live tensors), which closes the alignment gap that `aligned bound - max slack` leaves.
    `background` = (aligned bytes, largest slack) of tensors live throughout (a segment's
    context, solvers/decompose.py): they join every step's sum and its top candidates.
    """
    timer = Timer()
    upper = max_live(graph, target, heuristic_start(graph, target).peak_order, aligned=True) + background[0] + 1
    try:
        res = run_dp(
            graph, target, [], upper, 0, state_limit, time_limit, timer, slack_aware=True, background=background
        )
    except (ValueError, DPTimeout):
        return None
    return None if res.from_heuristic else (res.peak, res.order)


def dp_order(graph: Graph, target: Target, state_limit: int = DEFAULT_STATE_LIMIT) -> tuple[list[str], int]:
    """(order, peak): a topological order minimising the aligned max-live, and that peak.

    Raises ValueError when the DP would need more than `state_limit` states."""
    start = heuristic_start(graph, target)
    lower, _ = forced_live_bounds(graph, target)
    res = run_dp(graph, target, start.peak_order, start.peak, lower, state_limit, None, Timer())
    return res.order, res.peak


def solve_dp(graph: Graph, target: Target, options: SolveOptions | None = None) -> Plan:
    """Exact order by DP, then the best layout (heuristics, CP-SAT layout with the time left).

    `optimal` only when the final arena equals the proven lower bound on the arena.
    `options.state_limit` caps the DP (ValueError beyond it); `time_limit` is
    honoured (on timeout the best heuristic plan is returned as `feasible`)."""
    options = options or SolveOptions()
    timer = Timer()
    limit = options.state_limit
    start = heuristic_start(graph, target)
    items = lifetime_items(graph, target)
    al_lb, raw_lb = forced_live_bounds(graph, target, items, Reach(graph))
    max_slack = max((it.max_slack for it in items), default=0)
    notes: dict = {}
    try:
        res = run_dp(
            graph,
            target,
            start.peak_order,
            start.peak,
            al_lb,
            limit,
            options.order_share * options.time_limit,
            timer,
        )
        order, peak_bound, exact = res.order, res.peak, True
        notes["states"] = res.states
    except DPTimeout as e:
        order, peak_bound, exact = start.peak_order, e.bound, False
        notes["states"] = e.states
        notes["timeout"] = True
    options.report(
        Progress(
            "dp",
            None,
            peak_bound,
            timer.elapsed,
            "exact order found" if exact else "time limit reached: best order so far",
        )
    )
    raw_bound = max(raw_lb, peak_bound - max_slack)
    margin = 0.05 + 0.001 * len(graph.ops)
    arena, offs, method, _ = layout_order(
        graph,
        target,
        order,
        options.time_limit - timer.elapsed - margin,
        options.workers,
        options.seed,
        options.progress,
    )
    order, offs, arena, method, source = start.never_worse(order, offs, arena, method, "dp")
    return proven_plan(
        graph,
        target,
        "dp",
        order,
        offs,
        arena,
        raw_bound,
        timer,
        options,
        {
            "order_exact": exact,
            "order_peak_bound": peak_bound,
            "hint_peak": start.peak,
            "heuristic_arena": start.arena,
            "layout": method,
            "source": source,
            **notes,
        },
    )
