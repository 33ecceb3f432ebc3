"""Stronger lower bounds on the minimum max-live by exact solving of a *relaxed* graph.

Why: the forced-live bound (cpsat_order.forced_live_bounds) cannot see disjunctions such
as "the shared input of twelve parallel branches stays live until the last branch starts,
unless that branch runs last, and then the eleven finished branch results are live
instead". The exact DP sees them but drowns in states on the long chains of cheap ops
(Squeeze, BiasAdd, Reshape, ...) inside each branch. So we drop most chain ops, in a
way that can only LOWER the max-live of every order, and solve the small graph exactly.

Chain compression (the relaxation). An op v is *contractible* when it has exactly one
input resident in L1, an activation t with v as its only consumer and a producer, and
exactly one output, an activation t' with at least one consumer. A maximal path
u -t0-> v1 -t1-> v2 ... vm -tm-> (consumers of tm) of contractible ops is cut at a few
*kept* ops (those with the largest working sets). Between two consecutive kept points
a (producing t_i) and b (consuming t_j), the deleted ops' tensors t_i..t_j become one
tensor of size min(|t_i|..|t_j|) from a to b, and a gets an extra dead-end output of
size |t_i| - min (live only while a runs) and b, when it is a kept chain op, an extra
dead-end output of size |t_j| - min.

Proof of validity. Take any topological order of the original graph and restrict it to
the kept ops (a topological order of the relaxed graph, whose edges are implied by the
original's). At a kept op x, map every tensor live at x in the relaxed graph to an
original tensor live at x, injectively and no smaller: an unchanged tensor to itself;
a merged tensor (a..b) to the t_k of its span that is live at x (the span's tensors form
a path from a to b, so one of them is live at every op run between a and b); at x = a
the merged tensor plus a's extra output to t_i (live at a, its producer), at x = b plus
b's extra output to t_j (live at b, its consumer). Distinct relaxed tensors map to
distinct original tensors, so the relaxed live bytes at x are at most the original's.
Hence relaxed max-live <= original max-live for every order, and the relaxed minimum
is a lower bound on the original minimum. Sizes are aligned before compression (min and
difference of multiples of the alignment stay multiples), so the bound is on the
aligned max-live that cpsat_order and the DP minimise. Tested against brute force in
tests/test_bounds_strong.py.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import networkx as nx

from planner.graph import Graph, Op, Tensor
from planner.solvers.base import Timer
from planner.solvers.dp import DPTimeout, run_dp
from planner.solvers.items import forced_live_bounds
from planner.target import Target

_COUNTER = itertools.count()


def _fresh(base: str) -> str:
    """A tensor name no graph has yet (names built from old ones could collide across passes)."""
    return f"{base}~{next(_COUNTER)}"


@dataclass
class Relaxed:
    """A relaxed graph (its max-live is at most the original's in every order) and what it kept."""

    graph: Graph  # sizes already aligned; solve it with the same target
    kept: set[str]  # ops of the original graph that remain
    removed: int  # number of ops contracted away


def _contractible(graph: Graph, target: Target, op: Op) -> tuple[str, str] | None:
    """(input, output) when `op` has one resident input (a single-consumer activation
    with a producer) and one consumed output (an activation), any other outputs being
    dead-end activations (no consumers; deleting them only lowers max-live); else None."""
    res_in = [t for t in dict.fromkeys(op.inputs) if target.occupies_l1(graph.tensors[t])]
    outs = [t for t in op.outputs if graph.consumers[t] or graph.tensors[t].kind != "activation"]
    if len(res_in) != 1 or len(outs) != 1:
        return None
    t, out = res_in[0], outs[0]
    tt, to = graph.tensors[t], graph.tensors[out]
    if tt.kind != "activation" or graph.producer.get(t) is None or graph.consumers[t] != (op.name,):
        return None
    if to.kind != "activation" or out == t:
        return None
    return t, out


def _aligned_sizes(graph: Graph, target: Target) -> dict[str, int]:
    """Aligned bytes of every tensor in L1 (0 for weights read in place)."""
    return {n: (target.align(t.bytes) if target.occupies_l1(graph.tensors[n]) else 0) for n, t in graph.tensors.items()}


def _chains(graph: Graph, contr: dict[str, tuple[str, str]]) -> list[list[str]]:
    """Maximal chains of contractible ops (each feeding the next one's only input), each
    starting at an op whose input's producer is not in the chain."""
    in_chain_next: dict[str, str] = {}  # contractible op -> next contractible op in its chain
    for name, (_t, out) in contr.items():
        cons = graph.consumers[out]
        if len(cons) == 1 and cons[0] in contr and contr[cons[0]][0] == out:
            in_chain_next[name] = cons[0]
    has_prev = set(in_chain_next.values())
    chains: list[list[str]] = []
    for name in contr:
        if name in has_prev:
            continue
        ch = [name]
        while ch[-1] in in_chain_next:
            ch.append(in_chain_next[ch[-1]])
        chains.append(ch)
    return chains


@dataclass
class _Rewrite:
    """How the relaxed graph differs from the original: deleted ops, renamed inputs and
    outputs, new merged tensors and extra dead-end outputs (name, bytes) per op."""

    deleted: set[str] = field(default_factory=set)
    rename_in: dict[tuple[str, str], str] = field(default_factory=dict)  # (consumer op, original input) -> new
    rename_out: dict[str, str] = field(default_factory=dict)  # original output -> new tensor (at its producer)
    new_tensors: dict[str, int] = field(default_factory=dict)
    extra_out: dict[str, list[tuple[str, int]]] = field(default_factory=dict)


def _contract_chain(
    graph: Graph, ch: list[str], contr: dict[str, tuple[str, str]], al: dict[str, int], keep: int, rw: _Rewrite
) -> None:
    """Keep the `keep` ops of chain `ch` with the largest working sets; merge each span of
    tensors between two kept points into one tensor of its smallest size (module doc)."""
    ws = {v: al[contr[v][0]] + sum(al[t] for t in graph.op(v).outputs) for v in ch}
    kept = set(sorted(ch, key=lambda v: (-ws[v], ch.index(v)))[:keep])
    tens = [contr[ch[0]][0]] + [contr[v][1] for v in ch]  # t0..tm
    # kept points: positions in ch; a span runs between consecutive kept points
    # (the chain's head producer = -1, the chain's end consumers = len(ch))
    pts = [-1] + [i for i, v in enumerate(ch) if v in kept] + [len(ch)]
    for a, b in zip(pts, pts[1:], strict=False):
        span = tens[a + 1 : b + 1]  # tensors produced at a .. consumed at b
        if len(span) == 1:
            continue  # nothing deleted between a and b
        lo = min(al[t] for t in span)
        new = _fresh(f"{span[0]}~{span[-1]}")
        rw.new_tensors[new] = lo
        prod = graph.producer[span[0]] if a == -1 else ch[a]
        rw.rename_out[span[0]] = new
        if b == len(ch):
            for c in graph.consumers[span[-1]]:
                rw.rename_in[(c, span[-1])] = new
        else:
            rw.rename_in[(ch[b], span[-1])] = new
            if al[span[-1]] > lo:
                rw.extra_out.setdefault(ch[b], []).append((_fresh(f"{span[-1]}~end"), al[span[-1]] - lo))
        if al[span[0]] > lo:
            rw.extra_out.setdefault(prod, []).append((_fresh(f"{span[0]}~head"), al[span[0]] - lo))
        for v in ch[a + 1 : b]:
            rw.deleted.add(v)


def _rewritten(graph: Graph, al: dict[str, int], rw: _Rewrite) -> Graph:
    """The relaxed graph of `rw`, every size aligned."""
    tensors: list[Tensor] = []
    used: set[str] = set()
    ops: list[Op] = []
    for o in graph.ops:
        if o.name in rw.deleted:
            continue
        ins = tuple(rw.rename_in.get((o.name, t), t) for t in o.inputs)
        outs = tuple(rw.rename_out.get(t, t) for t in o.outputs) + tuple(n for n, _ in rw.extra_out.get(o.name, []))
        ops.append(Op(o.name, o.type, ins, outs))
        used.update(ins)
        used.update(outs)
    sizes = {**{n: al[n] for n in graph.tensors}, **rw.new_tensors}
    for o in graph.ops:
        for n, s in rw.extra_out.get(o.name, []):
            sizes[n] = s
    for n in used:
        if n in graph.tensors:
            t = graph.tensors[n]
            tensors.append(Tensor(n, sizes[n], t.kind, t.shape, t.dtype))
        else:
            tensors.append(Tensor(n, sizes[n], "activation"))
    # graph inputs / outputs that no kept op touches stay (they are live throughout or never)
    for n, t in graph.tensors.items():
        if n not in used and t.kind in ("input", "output"):
            tensors.append(Tensor(n, al[n], t.kind, t.shape, t.dtype))
    return Graph(f"{graph.name}~relaxed", tensors, ops)


def chain_relaxation(graph: Graph, target: Target, keep: int = 1) -> Relaxed:
    """The relaxed graph: every maximal chain of contractible ops keeps its `keep` ops with
    the largest working sets (aligned bytes), the rest are contracted (see module doc)."""
    al = _aligned_sizes(graph, target)
    contr: dict[str, tuple[str, str]] = {}
    for o in graph.ops:
        c = _contractible(graph, target, o)
        if c is not None:
            contr[o.name] = c
    rw = _Rewrite()
    for ch in _chains(graph, contr):
        _contract_chain(graph, ch, contr, al, keep, rw)
    g = _rewritten(graph, al, rw)
    return Relaxed(g, {o.name for o in g.ops}, len(rw.deleted))


def delete_ops(graph: Graph, ops: set[str]) -> Graph:
    """The graph without `ops` and their outputs (their consumers lose those inputs).

    A relaxation: restricting any order to the remaining ops, every remaining tensor's
    lifetime shrinks or stays (fewer consumers), nothing new is live; so max-live can
    only drop."""
    gone = {t for o in ops for t in graph.op(o).outputs}
    new_ops = [
        Op(o.name, o.type, tuple(t for t in o.inputs if t not in gone), o.outputs)
        for o in graph.ops
        if o.name not in ops
    ]
    used = {t for o in new_ops for t in (*o.inputs, *o.outputs)}
    tensors = [t for n, t in graph.tensors.items() if n in used or (n not in gone and t.kind in ("input", "output"))]
    return Graph(graph.name, tensors, new_ops)


def dedupe_parallel_chains(graph: Graph, target: Target, keep: int = 1) -> tuple[Graph, int]:
    """Collapse every group of parallel chains that leave the same tensor T and enter the
    same join op J (e.g. a matmul unrolled into twelve slices that a concat joins again).

    When the chains have the same length and output counts, one chain stays, with every
    output resized to the smallest corresponding output of the group, except the tensor
    entering J, which gets the SUM of the group's last tensors. Valid: in any order, let
    the kept chain stand for the chain that runs its last op last; at its ops its own
    tensors are at least the minimum; while its last tensor is live every chain of the
    group has run its last op and not yet J, so all their last tensors are live. The
    other chains are deleted (a relaxation, see `delete_ops`). Groups of unequal chains
    keep `keep` chains (the largest working sets) unchanged and lose the others."""
    al = _aligned_sizes(graph, target)
    groups: dict[tuple[str, str], list[tuple[int, list[str], str]]] = {}
    for tname in graph.tensors:
        cons = graph.consumers[tname]
        if len(cons) < 2:
            continue
        for c in dict.fromkeys(cons):
            path: list[str] = []
            prev, v, ws = tname, c, 0
            while True:
                op = graph.op(v)
                res_in = [t for t in dict.fromkeys(op.inputs) if al.get(t, 0) > 0 or t == prev]
                live_outs = [t for t in op.outputs if graph.consumers[t] or graph.tensors[t].kind != "activation"]
                if res_in != [prev] or len(live_outs) != 1:
                    break  # dead-end extra outputs (from chain_relaxation) are allowed
                out = live_outs[0]
                if graph.tensors[out].kind != "activation" or len(graph.consumers[out]) != 1:
                    break
                path.append(v)
                ws = max(ws, al[prev] + sum(al[t] for t in op.outputs))
                prev, v = out, graph.consumers[out][0]
            if path:
                groups.setdefault((tname, v), []).append((ws, path, prev))
    drop: set[str] = set()
    resize: dict[str, int] = {}
    for paths in groups.values():
        if len(paths) < 2:
            continue
        paths.sort(key=lambda wp: -wp[0])
        shapes = {tuple(len(graph.op(o).outputs) for o in p) for _, p, _ in paths}
        if len(shapes) == 1:
            _, kp, klast = paths[0]
            for i, o in enumerate(kp):
                for j, t in enumerate(graph.op(o).outputs):
                    resize[t] = min(al[graph.op(p[i]).outputs[j]] for _, p, _ in paths)
            resize[klast] = sum(al[last] for _, _, last in paths)
            for _, p, _ in paths[1:]:
                drop.update(p)
        elif len(paths) > keep:
            for _, p, _ in paths[keep:]:
                drop.update(p)
    if not drop:
        return graph, 0
    g = delete_ops(graph, drop)
    tensors = [Tensor(n, resize.get(n, al[n]), t.kind, t.shape, t.dtype) for n, t in g.tensors.items()]
    return Graph(graph.name, tensors, g.ops), len(drop)


def contract_regions(graph: Graph, target: Target, max_ws: int) -> tuple[Graph, int]:
    """Replace single-entry single-exit regions of cheap ops by one tensor.

    A region is the set D of ops strictly between an op `a` and its immediate
    post-dominator `b` such that every resident tensor D reads comes from a or D, every
    tensor D makes (and every tensor of a read by D) is read only inside D or by b, every
    op of D feeds some op, and every op of D has a working set <= `max_ws`. Let R be the
    tensors made in D plus those of a read by D, and m the smallest size in R with a
    consumer. D is deleted; a makes one tensor of size m read by b, plus a dead-end output
    of (bytes a makes in R) - m; b gets a dead-end output of (bytes b reads from R) - m.

    Valid for the same reason as chain compression: in any order, at a kept op run
    strictly between a and b some tensor of R is live (follow a path a -> b through D to
    its first op not yet run: the tensor entering it is live), so >= m bytes of R are
    live; at a the R-tensors a makes are live, at b those b reads. R's tensors are not
    used by anything else, so the map stays injective."""
    al = _aligned_sizes(graph, target)
    if len(graph.dag) > 4000:
        return graph, 0
    regions = _regions(graph, al, max_ws)
    if not regions:
        return graph, 0
    return _contracted(graph, al, regions)


def _regions(graph: Graph, al: dict[str, int], max_ws: int) -> list[tuple[str, str, set[str]]]:
    """The disjoint regions (a, b, D) of `contract_regions`, in topological order of a."""
    dag = graph.dag
    sink = "__sink__"
    rev = nx.DiGraph()
    rev.add_nodes_from(dag.nodes)
    rev.add_edges_from((v, u) for u, v in dag.edges)
    rev.add_edges_from((sink, o) for o in dag.nodes if dag.out_degree(o) == 0)
    ipdom = nx.immediate_dominators(rev, sink)
    reach_desc = {o: nx.descendants(dag, o) for o in dag.nodes}
    taken: set[str] = set()
    regions: list[tuple[str, str, set[str]]] = []
    for a in nx.topological_sort(dag):
        b = ipdom.get(a)
        if b is None or b == sink or a in taken or dag.out_degree(a) < 2:
            continue
        region = {o for o in reach_desc[a] if b in reach_desc[o]}
        if not region or region & taken or b in taken:
            continue
        if not all(_region_op_ok(graph, al, graph.op(o), a, b, region, max_ws) for o in region):
            continue
        a_out = [t for t in graph.op(a).outputs if any(c in region for c in graph.consumers[t])]
        if any(
            graph.tensors[t].kind != "activation" or any(c not in region | {b} for c in graph.consumers[t])
            for t in a_out
        ):
            continue
        regions.append((a, b, region))
        taken |= region | {a, b}
    return regions


def _region_op_ok(graph: Graph, al: dict[str, int], op: Op, a: str, b: str, region: set[str], max_ws: int) -> bool:
    """Whether `op` of the region between a and b is cheap (working set <= max_ws), reads
    only tensors of a or the region, feeds some op, and makes activations read only inside
    the region or by b."""
    if sum(al[t] for t in dict.fromkeys((*op.inputs, *op.outputs))) > max_ws:
        return False
    if any(al[t] > 0 and graph.producer.get(t) not in region | {a} for t in op.inputs):
        return False
    if not any(graph.consumers[t] for t in op.outputs):
        return False
    return not any(
        graph.tensors[t].kind != "activation" or any(c not in region | {b} for c in graph.consumers[t])
        for t in op.outputs
    )


def _contracted(graph: Graph, al: dict[str, int], regions: list[tuple[str, str, set[str]]]) -> tuple[Graph, int]:
    """The graph with every region deleted and replaced as `contract_regions` says, and
    the number of ops deleted."""
    extra: dict[str, list[tuple[str, int]]] = {}
    replace_in: dict[str, tuple[set[str], str]] = {}  # b -> (R tensors, merged)
    drop_out: dict[str, set[str]] = {}
    new_sizes: dict[str, int] = {}
    deleted: set[str] = set()
    for a, b, region in regions:
        a_out = {t for t in graph.op(a).outputs if any(c in region for c in graph.consumers[t])}
        rt = a_out | {t for o in region for t in graph.op(o).outputs}
        m = min((al[t] for t in rt if graph.consumers[t]), default=0)
        merged = _fresh(f"{a}~region~{b}")
        new_sizes[merged] = m
        made = sum(al[t] for t in a_out)
        read = sum(al[t] for t in dict.fromkeys(graph.op(b).inputs) if t in rt)
        drop_out[a] = a_out
        extra.setdefault(a, []).append((merged, m))
        if made > m:
            extra[a].append((_fresh(f"{merged}~head"), made - m))
        if read > m:
            extra.setdefault(b, []).append((_fresh(f"{merged}~end"), read - m))
        replace_in[b] = (rt, merged)
        deleted |= region
    ops: list[Op] = []
    for o in graph.ops:
        if o.name in deleted:
            continue
        ins = o.inputs
        if o.name in replace_in:
            rt, merged = replace_in[o.name]
            ins = (*(t for t in ins if t not in rt), merged)
        outs = tuple(t for t in o.outputs if t not in drop_out.get(o.name, set()))
        outs += tuple(n for n, _ in extra.get(o.name, []))
        ops.append(Op(o.name, o.type, tuple(ins), outs))
    sizes = {**{n: t.bytes for n, t in graph.tensors.items()}, **new_sizes}
    for lst in extra.values():
        for n, sz in lst:
            sizes[n] = sz
    used = {t for o in ops for t in (*o.inputs, *o.outputs)}
    tensors = [graph.tensors[n] if n in graph.tensors else Tensor(n, sizes[n], "activation") for n in used]
    tensors += [t for n, t in graph.tensors.items() if n not in used and t.kind in ("input", "output")]
    return Graph(graph.name, tensors, ops), len(deleted)


@dataclass
class StrongBound:
    """A proven lower bound on every order's aligned max-live, and the relaxation that gave it."""

    aligned: int  # proven lower bound on the aligned max-live of every order
    how: str
    relaxed_ops: int
    states: int = 0


RELAXATIONS: tuple[tuple[int, bool], ...] = ((1, False), (1, True), (2, False))


def relax(graph: Graph, target: Target, keep: int = 1, collapse: bool = False, upper: int = 0) -> Graph:
    """Chain compression keeping `keep` ops per chain; with `collapse`, also parallel
    chains (dedupe) and cheap single-entry single-exit regions (working sets below 10% of
    `upper`), each followed by chain compression again."""
    g = chain_relaxation(graph, target, keep=keep).graph
    if collapse:
        g, _ = dedupe_parallel_chains(g, target)
        g = chain_relaxation(g, target, keep=keep).graph
        g, _ = contract_regions(g, target, max(upper // 10, 1))
        g = chain_relaxation(g, target, keep=keep).graph
    return g


def relaxed_order_bound(
    graph: Graph,
    target: Target,
    upper: int,
    time_limit: float = 10.0,
    levels: Sequence[tuple[int, bool]] = RELAXATIONS,
    state_limit: int = 1_500_000,
    max_ops: int = 200,
) -> StrongBound:
    """A lower bound on the aligned max-live of every topological order of `graph`, by the
    exact DP on relaxations (module doc); `upper` is a known order's aligned peak (the
    bound never exceeds it). Stops when a relaxation proves `upper` or time is out."""
    timer = Timer()
    base, _ = forced_live_bounds(graph, target)
    best = StrongBound(min(base, upper), "forced-live", len(graph.ops))
    seen: set[tuple[int, int, int]] = set()
    for n_done, (k, collapse) in enumerate(levels):
        # each relaxation gets an equal share of the time left: a wide one that drowns the
        # DP must not starve a more collapsed one that would finish in seconds
        # (the first, least collapsed and usually tightest, gets half)
        left = (time_limit - timer.elapsed) / (2 if n_done == 0 and len(levels) > 1 else len(levels) - n_done)
        if left <= 0.05 or best.aligned >= upper:
            break
        rg = relax(graph, target, k, collapse, upper)
        if len(rg.ops) > max_ops:
            continue  # the DP would drown: leave the time to the next relaxation
        sig = (len(rg.ops), len(rg.tensors), sum(rg.size(t) for t in rg.tensors))
        if sig in seen:
            continue  # collapsing found nothing to collapse: the same DP again would only repeat
        seen.add(sig)
        order = list(nx.topological_sort(rg.dag))  # any order: returned only when none beats `upper`
        lo, _ = forced_live_bounds(rg, target)
        try:
            res = run_dp(rg, target, order, upper, lo, state_limit, timer.elapsed + left, timer)
            val = upper if res.from_heuristic else res.peak
            states = res.states
        except DPTimeout as e:
            val, states = e.bound, e.states
        except ValueError:
            continue
        if val > best.aligned:
            best = StrongBound(min(val, upper), f"relaxed-dp(keep={k},collapse={collapse})", len(rg.ops), states)
    return best
