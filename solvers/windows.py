"""Lower bounds from exact optima of critical windows of the DAG, with their background.

Why: on NAS cells and random wiring the forced-live bound and the chain relaxation stall
at the largest working set, 1.3-1.6x below the orders found, and the order model on the
whole graph (hundreds of ops, one segment) cannot close the gap in a minute. A window of
one or two cells is small enough to solve to optimality, and its optimum, with what must
be live around it, bounds every order of the whole graph.

The window. For ops a and b, W = ({a} ∪ desc(a)) ∩ ({b} ∪ anc(b)): every op of W runs
after a and before b in every order (a is W's first op, b its last). Its graph keeps the
ops of W and, per tensor t (producer p):
- p in W: an activation, or an `output` (live to W's end) when a consumer descends from
  b or t is a graph output;
- p an ancestor of a (or t a graph input) and a consumer descends from b (or t is a graph
  output): live throughout W in every order, so it is *background* (a constant);
- p an ancestor of a, consumers in W only: an `input` of W (live from W's start);
- anything else (p incomparable with a, or no consumer in W): dropped, and so are loaded
  weights used outside W too (their lifetime in W is within the original one).

Proof of validity. Take any order π of the graph and restrict it to W: a topological order
π_W of W's graph. At each op x of W, every tensor live at x in W's graph under π_W is live
at x in the graph under π: an activation of W between its producer and last consumer in W
(both are ops of W, where π and π_W agree on the relative order); an output of W from its
producer to b, and its consumer after b runs later; an input of W from a to its last
consumer in W, and its producer runs before a. The background tensors are live at every op
of W (made before a, used after b) and are not tensors of W's graph. So the aligned live
bytes of π at x are at least W's live bytes at x plus the background: min over orders of
W's aligned max-live, plus the background, is a lower bound on every order's aligned
max-live. Any proven lower bound on W's minimum (the order model's bound, the relaxation
DP of solvers/relax.py) gives one too.

On the raw arena: a layout puts the tensors live at x at disjoint aligned offsets, so for
any subset S of them the one ending highest ends at least at (aligned bytes of S) minus its
own padding. With S the window's live tensors and the background, every plan's arena is
at least the window bound less the largest padding among the window's and the
background's tensors (not the whole graph's: a 40-byte logits tensor far away does not
weaken a bound in the middle of the network). Tested against brute force in
tests/test_windows.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from planner.graph import Graph, Op, Tensor
from planner.solvers.base import Timer
from planner.solvers.cpsat_order import optimal_order
from planner.solvers.heuristic import heuristic_start
from planner.solvers.items import forced_live_bounds
from planner.solvers.lowering import live_profile, max_live
from planner.solvers.reach import Reach
from planner.solvers.relax import relaxed_order_bound
from planner.target import Target

WINDOW_MAX_OPS = 160  # windows larger than this are not solved
WINDOW_SOLVE_S = 4.0  # one window's exact solve, at least this (or the time left) ...
WINDOW_SHARE = 0.5  # ... or this share of the time left, the larger: the hottest window gets most
# the relaxations tried on a window (solvers/relax.py): the least collapsed first; the one
# keeping two ops per chain doubles the DP's ops and drowns on windows of a hundred ops
WINDOW_RELAXATIONS = ((1, False), (1, True))


@dataclass
class Window:
    """The graph of a DAG window and what lives across it (module doc)."""

    graph: Graph
    background: int  # aligned bytes live at every op of the window in every order
    a: str
    b: str
    slack: int = 0  # the largest alignment padding among the window's and the background's tensors


def dag_window(graph: Graph, target: Target, reach: Reach, a: str, b: str) -> Window | None:
    """The window between ops a and b (module doc), or None when it is empty."""
    ia, ib = reach.idx[a], reach.idx[b]
    inside = (reach.desc[ia] | (1 << ia)) & (reach.anc[ib] | (1 << ib))
    if not inside >> ia & 1 or not inside >> ib & 1:
        return None
    before = reach.anc[ia]
    after = reach.desc[ib]

    def bit(op: str | None, mask: int) -> bool:
        return op is not None and bool(mask >> reach.idx[op] & 1)

    tensors: list[Tensor] = []
    background = slack = 0
    dropped: set[str] = set()
    for t in graph.tensors.values():
        cons = graph.consumers[t.name]
        c_in = any(bit(c, inside) for c in cons)
        c_after = t.kind == "output" or any(bit(c, after) for c in cons)
        p = graph.producer.get(t.name)
        if t.kind == "weight":
            if c_in and (target.weights == "in_place" or all(bit(c, inside) for c in cons)):
                tensors.append(t)
            else:
                dropped.add(t.name)
            continue
        if bit(p, inside):
            tensors.append(Tensor(t.name, t.bytes, "output" if c_after else "activation", t.shape, t.dtype))
        elif p is None or bit(p, before):
            if c_after and target.occupies_l1(t):
                background += target.align(t.bytes)
                slack = max(slack, target.align(t.bytes) - t.bytes)
                dropped.add(t.name)
            elif c_in:
                tensors.append(Tensor(t.name, t.bytes, "input", t.shape, t.dtype))
            else:
                dropped.add(t.name)
        else:
            dropped.add(t.name)
    ops = [
        Op(o.name, o.type, tuple(i for i in o.inputs if i not in dropped), o.outputs)
        for o in graph.ops
        if inside >> reach.idx[o.name] & 1
    ]
    slack = max([slack, *(target.align(t.bytes) - t.bytes for t in tensors if target.occupies_l1(t))])
    return Window(Graph(f"{graph.name}[{a}..{b}]", tensors, ops), background, a, b, slack)


def window_bound(
    w: Window, target: Target, seconds: float, workers: int = 2, seed: int = 0, upper: int | None = None
) -> tuple[int, int]:
    """(proven lower bound on every order's aligned max-live, best peak found) for the
    window plus its background: the relaxation DP, then the order model with the time left.

    `upper`: the aligned max-live of some topological order of the window's graph (the
    incumbent order of the whole graph restricted to the window): the DP prunes every
    partial order that reaches it, and proving that none beats it proves it. Why: the
    window's own heuristic start is often far above the incumbent (random wiring: 1.33x),
    and with it the DP keeps three times the states. The relaxation gets two thirds of
    the time: on windows of random wiring it is what proves (the order model stalls)."""
    timer = Timer()
    g = w.graph
    start = heuristic_start(g, target)
    peak = start.peak if upper is None else min(start.peak, upper)
    lb = relaxed_order_bound(g, target, peak, time_limit=2 * seconds / 3, levels=WINDOW_RELAXATIONS).aligned
    if lb < peak and seconds - timer.elapsed > 0.1:
        res = optimal_order(g, target, seconds - timer.elapsed, workers, seed, hint=start.peak_order)
        lb, peak = max(lb, res.bound), min(peak, res.peak)
    return lb + w.background, peak + w.background


def candidate_windows(reach: Reach, points: Sequence[str], spans=(1, 2, 3)) -> list[tuple[str, str, int]]:
    """(a, b, op mask) of the windows between near-sequential points `points`
    (solvers/hierarchical.py) `spans` apart, of 3..WINDOW_MAX_OPS ops; the graphs are built
    only for the windows solved."""
    out: dict[tuple[str, str], int] = {}
    for k in spans:
        for i in range(len(points) - k):
            a, b = points[i], points[i + k]
            ia, ib = reach.idx[a], reach.idx[b]
            mask = (reach.desc[ia] | 1 << ia) & (reach.anc[ib] | 1 << ib)
            if 3 <= mask.bit_count() <= WINDOW_MAX_OPS:
                out.setdefault((a, b), mask)
    return [(a, b, m) for (a, b), m in out.items()]


@dataclass
class WindowBound:
    """The best window bound found: aligned, and how many windows were solved."""

    aligned: int
    windows: int
    solved: int
    best: tuple[str, str] | None = None
    raw: int = 0  # lower bound on the raw arena: `aligned` less the slack of that window's tensors


def critical_window_bound(
    graph: Graph,
    target: Target,
    order: Sequence[str],
    points: Sequence[str],
    bound: int,
    time_limit: float,
    workers: int = 2,
    seed: int = 0,
) -> WindowBound:
    """The best window bound above `bound` (aligned) within `time_limit`: windows ranked by
    the live bytes `order` has inside them (where the peak is), identical windows solved
    once. A window whose heat (the most `order` has live at one of its ops) is at most the
    bound cannot raise it (its optimum is at most the heat) and is skipped."""
    timer = Timer()
    reach = Reach(graph)
    prof = live_profile(graph, target, order)
    at = [0] * reach.n  # live bytes of `order` at each op, by op index
    for i, o in enumerate(order):
        at[reach.idx[o]] = prof[i]

    def heat(mask: int) -> int:
        # over the window's own ops (a few dozen set bits), not every op of the graph
        best = 0
        while mask:
            low = mask & -mask
            best = max(best, at[low.bit_length() - 1])
            mask ^= low
        return best

    wins = sorted(((heat(m), a, b) for a, b, m in candidate_windows(reach, points)), reverse=True)
    best = WindowBound(bound, len(wins), 0)
    done: dict[tuple, int] = {}
    for h, a, b in wins:
        left = time_limit - timer.elapsed
        if left < 0.3 or h <= best.aligned:
            break  # sorted by heat: no later window can raise the bound either (or no time)
        w = dag_window(graph, target, reach, a, b)
        if w is None:
            continue
        key = _key(w, target)
        if key not in done:
            # less than the time left: building the models takes some of it
            seconds = min(left - 0.15, max(WINDOW_SOLVE_S, WINDOW_SHARE * left))
            upper = max_live(w.graph, target, [o for o in order if o in w.graph.op_index], aligned=True)
            done[key] = max(window_bound(w, target, seconds, workers, seed, upper)[0], 0)
            best.solved += 1
        value = max(done[key], forced_live_bounds(w.graph, target)[0] + w.background)
        if value > best.aligned:
            best.aligned, best.best = value, (a, b)
        best.raw = max(best.raw, value - w.slack)
    return best


def _key(w: Window, target: Target) -> tuple:
    """Windows with the same ops, wiring and sizes in the same model order solve alike."""
    g = w.graph
    local: dict[str, int] = {}
    rows = []
    for k, o in enumerate(g.ops):
        for t in o.inputs:
            local.setdefault(t, -1 - len(local))  # outside tensors numbered as first read
        for t in o.outputs:
            local[t] = k
        ins = tuple((local[t], target.align(g.size(t)), g.tensors[t].kind) for t in o.inputs)
        rows.append((o.type, ins, tuple((target.align(g.size(t)), g.tensors[t].kind) for t in o.outputs)))
    return tuple(rows), w.background
