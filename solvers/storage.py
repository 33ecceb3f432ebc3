"""Shared bytes for every solver, by rewriting the graph into a *storage graph*.

A chosen set of legal relations (planner/sharing.py) groups tensors into storages: a root
tensor and the tensors placed inside its bytes (views, slices, concat slots, in-place
outputs) at fixed displacements. The storage graph has one tensor per storage, of the
root's size; every op reads the storages of its inputs, and an op whose output lives in
another tensor's storage writes a 0-byte *marker* instead, which the output's consumers
read too (so they still run after it). A storage whose root is a concat output is
allocated by a pseudo-op ``alloc:<root>`` before the first slot is produced. Under the
no-spill lifetimes (solvers/lowering.py) a storage then lives from its first member's
production to its last member's last use, and the union of its members' bytes is its
root's bytes: exactly what a plan that shares those bytes occupies, or more (a concat's
storage is reserved before its slots are filled). So every solver — order models, DP,
layouts, decomposition, spill solvers — plans with sharing unchanged, and `restore` maps
its plan back to the original graph, stage by stage, with the shares declared; the
simulator then checks the result against the rules of DESIGN §1.

Which relations are chosen (`choose`) is the planner's decision, order-independent so it
holds for every order a solver may pick:
- views and slices always (a read-only alias never raises memory);
- an in-place write only where every other reader of the overwritten bytes is an
  ancestor of the writing op (so it ran before, in every order), and never over a graph
  output (it must keep its value);
- concat slots where every input is produced by an op of the graph (not an input or a
  weight), appears once, and is not already placed in another tensor's bytes;
- nothing that would make a graph output live in another tensor's bytes.
Spill plans use read-only relations only (`SPILL_KINDS`): their stores and loads move a
storage's bytes, which must not change after they are stored.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

from planner.graph import Graph, Op, Tensor
from planner.plan import Plan, SolverInfo, Stage
from planner.sharing import LEVEL_KINDS, Share, relations
from planner.simulate import finalize
from planner.solvers.reach import Reach
from planner.target import Target

ALLOC = "planner.Alloc"
SPILL_KINDS = frozenset({"view", "slice"})  # read-only: a stored storage keeps its bytes
DOMINATING_KINDS = frozenset({"view", "inplace"})  # never raise memory in any order


@dataclass
class Storage:
    """The storage graph of `original` and how to map its plans back.

    `shares`: child tensor -> the relation placing it in its parent; `root`: every tensor
    in a storage -> (root, displacement in the root); `marker`: child -> the 0-byte tensor
    that stands for it in the storage graph; `alloc`: pseudo-op -> the root it allocates.
    """

    original: Graph
    graph: Graph
    shares: dict[str, Share] = field(default_factory=dict)
    root: dict[str, tuple[str, int]] = field(default_factory=dict)
    marker: dict[str, str] = field(default_factory=dict)
    alloc: dict[str, str] = field(default_factory=dict)
    made: dict[str, str] = field(default_factory=dict)  # concat root -> marker its concat writes
    # (reader, in-place writer) -> the marker that makes the reader run first (`storage_graph` with an order)
    before: dict[tuple[str, str], str] = field(default_factory=dict)

    def members(self, root: str) -> list[str]:
        """The tensors that live in `root`'s storage (the root first)."""
        return [root] + [t for t, (r, _) in self.root.items() if r == root and t != root]


def _fresh(name: str, taken: set[str]) -> str:
    out, k = name, 1
    while out in taken:
        out, k = f"{name}~{k}", k + 1
    taken.add(out)
    return out


def _root_of(parent: dict[str, Share], t: str) -> tuple[str, int]:
    disp = 0
    while t in parent:
        disp += parent[t].displacement
        t = parent[t].parent
    return t, disp


def _inplace_ok(
    graph: Graph,
    reach: Reach,
    parent: dict[str, Share],
    s: Share,
    pos: dict[str, int] | None = None,
    first: set[str] | None = None,
) -> bool:
    """An in-place write is safe in every order: nothing else reads the bytes it overwrites
    after it (every other reader of the storage's members is an ancestor of the op). With
    `pos` (an order's positions), a reader that is no ancestor but runs earlier in that order
    is accepted too and added to `first`: the storage graph then makes it run first."""
    x = graph.tensors[s.parent]
    if x.kind == "output" or graph.tensors[s.child].kind == "output":
        return False
    root, _ = _root_of(parent, s.parent)
    if graph.size(s.parent) != graph.size(root) or any(
        parent[t].kind not in ("view", "inplace") for t in _chain(parent, s.parent)
    ):
        return False  # only over a whole storage (not a slice or a slot of one)
    members = {root} | {t for t in parent if _root_of(parent, t)[0] == root}
    o = reach.idx[s.op]
    for t in members:
        if graph.tensors[t].kind == "output":
            return False
        for c in graph.consumers[t]:
            if c != s.op and not (reach.anc[o] >> reach.idx[c]) & 1:
                if pos is None or pos[c] > pos[s.op]:
                    return False
                if first is not None:
                    first.add(c)
    return True


def _chain(parent: dict[str, Share], t: str) -> Iterable[str]:
    while t in parent:
        yield t
        t = parent[t].parent


def _concat_slots(graph: Graph, parent: dict[str, Share], slots: list[Share]) -> list[Share] | None:
    """Where a concat's inputs go into its output's storage, or None when they cannot.

    An input that already fills a storage of its own (it is an in-place write or a view of
    the storage's whole bytes, say a Relu over a convolution's output) takes that whole
    storage into its slot: the storage's root is placed at the slot's displacement."""
    z = graph.tensors[slots[0].parent]
    if z.kind == "output" or z.name in parent:
        return None
    out, roots = [], set()
    for s in slots:
        x = graph.tensors[s.child]
        if x.kind != "activation" or graph.producer.get(s.child) is None:
            return None
        root, disp = _root_of(parent, s.child)
        r = graph.tensors[root]
        full = (
            disp == 0
            and r.bytes == x.bytes
            and all(parent[t].kind in ("view", "inplace") for t in _chain(parent, s.child))
        )
        if not full or r.kind != "activation" or graph.producer.get(root) is None or root in roots or root == z.name:
            return None
        roots.add(root)
        out.append(s if root == s.child else Share("concat", s.op, root, s.parent, s.displacement))
    return out


def choose(
    graph: Graph,
    kinds: Iterable[str],
    alignment: int = 1,
    order: Sequence[str] | None = None,
    after: dict[str, set[str]] | None = None,
) -> dict[str, Share]:
    """A consistent forest of legal relations of `kinds` (module docstring): child -> share.
    Relations whose displacement is not a multiple of `alignment` are left out (the child's
    offset would not be aligned). With `order`, an in-place write is also chosen where every
    other reader of the bytes it overwrites runs before it in `order` (HMCOS's rule: an
    element-wise op overwrites an input that dies with it), and `after` gets, per writing
    op, the readers that must run before it (the storage graph adds those edges)."""
    kinds = frozenset(kinds)
    if not kinds:
        return {}
    pos = {o: i for i, o in enumerate(order)} if order is not None else None
    reach = Reach(graph)
    parent: dict[str, Share] = {}
    by_op: dict[str, list[Share]] = {}
    for s in relations(graph, kinds):
        by_op.setdefault(s.op, []).append(s)
    for op, cands in by_op.items():
        if any(s.displacement % alignment for s in cands if s.kind == "concat"):
            by_op[op] = [s for s in cands if s.kind != "concat"]  # a concat shares all its slots or none
        by_op[op] = [s for s in by_op[op] if not s.displacement % alignment]
    for op in graph.ops:
        cands = by_op.get(op.name, [])
        concat = [s for s in cands if s.kind == "concat"]
        slots = _concat_slots(graph, parent, concat) if concat else None
        if slots:
            parent.update({s.child: s for s in slots})
        for s in cands:
            if s.kind == "concat" or s.child in parent or graph.tensors[s.child].kind == "output":
                continue
            first: set[str] = set()
            if s.kind == "inplace" and not _inplace_ok(graph, reach, parent, s, pos, first):
                continue
            if _root_of(parent, s.parent)[0] == s.child:
                continue  # would close a cycle
            parent[s.child] = s
            if first and after is not None:
                after.setdefault(s.op, set()).update(first)
    return parent


def storage_graph(
    graph: Graph, kinds: Iterable[str], alignment: int = 1, order: Sequence[str] | None = None
) -> Storage | None:
    """The storage graph of `graph` under the chosen relations of `kinds` (None: nothing
    to share); `alignment`: the target's offset alignment. With `order`, also the in-place
    writes that order allows (`choose`): each reader that must run before such a write
    gets a 0-byte marker the writer reads, so every order of the storage graph keeps the
    write safe; `order` itself stays one of them (every added edge agrees with it). The
    storage graph then has fewer orders than the model: its bounds hold over those only."""
    after: dict[str, set[str]] = {}
    shares = choose(graph, kinds, alignment, order, after)
    if not shares:
        return None
    st = Storage(graph, graph, shares)
    st.root = {t: _root_of(shares, t) for t in shares}
    roots = {r for r, _ in st.root.values()}
    taken = set(graph.tensors)
    st.marker = {t: _fresh(f"{t}~in~{st.root[t][0]}", taken) for t in shares}
    concat_roots = {s.parent for s in shares.values() if s.kind == "concat" and s.parent in roots}
    op_names = {o.name for o in graph.ops}
    alloc_of = {r: _fresh(f"alloc:{r}", op_names) for r in sorted(concat_roots)}
    st.alloc = {a: r for r, a in alloc_of.items()}
    seq = [graph.op(o) for o in order] if order is not None else list(graph.ops)  # the ops in a topological order
    first_maker = _first_makers(seq, st, concat_roots)
    ops: list[Op] = []
    for w, readers in after.items():
        for r in sorted(readers):
            st.before[(r, w)] = _fresh(f"{r}~before~{w}", taken)
    made_first: dict[str, list[str]] = {}
    read_first: dict[str, list[str]] = {}
    for (r, w), m in st.before.items():
        made_first.setdefault(r, []).append(m)
        read_first.setdefault(w, []).append(m)
    for o in seq:
        for r in first_maker.get(o.name, []):
            ops.append(Op(alloc_of[r], ALLOC, (), (r,), {"pseudo": "alloc", "tensor": r}))
        so = _storage_op(graph, st, o, concat_roots)
        if o.name in made_first or o.name in read_first:
            ins = so.inputs + tuple(read_first.get(o.name, ()))
            so = Op(so.name, so.type, ins, so.outputs + tuple(made_first.get(o.name, ())), so.attrs)
        ops.append(so)
    tensors = [t for t in graph.tensors.values() if t.name not in shares]
    markers = (*st.marker.values(), *st.made.values(), *st.before.values())
    tensors += [Tensor(m, 0, "activation") for m in markers]
    st.graph = Graph(graph.name, tensors, ops, graph.source)
    return st


def _first_makers(ops: Sequence[Op], st: Storage, concat_roots: set[str]) -> dict[str, list[str]]:
    """op -> the concat roots whose storage must be allocated right before it (in the
    order of `ops`: before the first op that produces one of the storage's members)."""
    out: dict[str, list[str]] = {}
    for r in concat_roots:
        members = set(st.members(r))
        first = next(o.name for o in ops if members & set(o.outputs))
        out.setdefault(first, []).append(r)
    return out


def storage_order(st: Storage, order: Sequence[str]) -> list[str]:
    """An order of the original graph as an order of the storage graph: each concat
    storage's allocation right before the first op of `order` that makes one of its
    members (what `storage_graph` does for the model's order). Every order of the original
    graph is one of the storage graph: its ops read the root they write into, which the
    allocation (or the root's producer) makes, and nothing else is added."""
    first: dict[str, list[str]] = {}
    makes = {o.name: set(o.outputs) for o in st.original.ops}
    for a, root in st.alloc.items():
        members = set(st.members(root))
        op = next(o for o in order if makes[o] & members)
        first.setdefault(op, []).append(a)
    return [x for o in order for x in (*first.get(o, ()), o)]


def _storage_op(graph: Graph, st: Storage, o: Op, concat_roots: set[str]) -> Op:
    """`o` in the storage graph: it reads the storages of its inputs (and of its outputs
    that live in another tensor's bytes), plus the markers of inputs that are children;
    it writes its root outputs, or markers for the rest."""
    ins: list[str] = []
    for t in o.inputs:
        if t in st.shares:
            ins += [st.root[t][0], st.marker[t]]
        elif t in concat_roots:
            ins += [t, _concat_marker(st, t)]  # after the concat, not merely after the allocation
        else:
            ins.append(t)
    outs: list[str] = []
    for t in o.outputs:
        if t in st.shares:
            ins.append(st.root[t][0])
            outs.append(st.marker[t])
        elif t in concat_roots:
            ins.append(t)  # allocated earlier; the concat fills nothing new
            outs.append(_concat_marker(st, t))
        else:
            outs.append(t)
    ins = list(dict.fromkeys(i for i in ins if i not in outs))
    return Op(o.name, o.type, tuple(ins), tuple(outs), o.attrs)


def _concat_marker(st: Storage, z: str) -> str:
    """The 0-byte marker a concat writes when its output's storage was allocated earlier."""
    if z not in st.made:
        taken = set(st.original.tensors) | set(st.marker.values()) | set(st.made.values())
        st.made[z] = _fresh(f"{z}~made", taken)
    return st.made[z]


# -- from a plan of the storage graph back to the original graph --------------------------------
class _Restore:
    """The walk that maps storage-graph stages to original stages (see `restore`)."""

    def __init__(self, st: Storage) -> None:
        self.st, self.g = st, st.original
        self.offset: dict[str, int] = {}  # storage tensor -> its offset while resident
        self.resident: set[str] = set()  # original tensors resident now
        self.produced: set[str] = set(self.g.inputs)
        self.remaining = {t: len(c) for t, c in self.g.consumers.items()}
        self.members = {r: st.members(r) for r in {r for r, _ in st.root.values()}}
        self.markers = set(st.marker.values()) | set(st.made.values()) | set(st.before.values())
        self.relations: dict[str, list[Share]] = {}
        for r in relations(self.g):
            self.relations.setdefault(r.op, []).append(r)
        self.out: list[Stage] = []

    def at(self, t: str) -> int:
        """The offset of original tensor t: its storage's offset plus its displacement."""
        root, disp = self.st.root.get(t, (t, 0))
        return self.offset[root] + disp

    def stage(self, s: Stage) -> None:
        if s.kind == "R" and s.name in self.st.alloc:
            self.offset[self.st.alloc[s.name]] = (s.offsets or {})[self.st.alloc[s.name]]
        elif s.kind == "R":
            self.run(s)
        elif s.name in self.markers:
            pass
        elif s.kind == "L":
            self.offset[s.name] = s.offset
            self.out.append(Stage("L", s.name, offset=s.offset))
            self.resident.add(s.name)
            self.realias(s.name)
        elif s.kind == "S":
            self.out.append(Stage("S", s.name))
        else:  # F: every name of the storage leaves
            names = [t for t in self.members.get(s.name, [s.name]) if t in self.resident]
            for t in reversed(names):
                self.out.append(Stage("F", t))
                self.resident.discard(t)
            self.offset.pop(s.name, None)

    def realized(self, r: Share) -> bool:
        """Whether the placement puts r's child where the relation says, inside its parent's
        storage (then the stage declares it)."""
        (rc, dc), (rp, dp) = self.st.root.get(r.child, (r.child, 0)), self.st.root.get(r.parent, (r.parent, 0))
        return rc == rp and dc == dp + r.displacement

    def run(self, s: Stage) -> None:
        op = self.g.op(s.name)
        for t in op.outputs:
            if t not in self.st.shares and t not in self.st.made:
                self.offset[t] = (s.offsets or {})[t]
        offsets = {t: self.at(t) for t in op.outputs}
        shares = tuple(r for r in self.relations.get(op.name, ()) if self.realized(r))
        self.out.append(Stage("R", op.name, offsets=offsets, shares=shares))
        self.resident.update(op.outputs)
        self.produced.update(op.outputs)
        for t in dict.fromkeys(op.inputs):
            self.remaining[t] -= 1

    def realias(self, root: str) -> None:
        """After a storage comes back from LLB, name again (alias loads, no traffic) its
        members that were produced and are still needed, parents before children."""
        needed = {t for t in self.members.get(root, ())[1:] if t in self.produced and self.remaining[t] > 0}
        keep: set[str] = set()
        for t in needed:
            keep.update(t2 for t2 in _chain(self.st.shares, t))
        for t in sorted(keep, key=lambda t: len(list(_chain(self.st.shares, t)))):
            x = self.st.shares[t]
            self.out.append(Stage("L", t, offset=self.at(t), shares=(Share(x.kind, "", t, x.parent, x.displacement),)))
            self.resident.add(t)


def restore(st: Storage, stages: Sequence[Stage]) -> list[Stage]:
    """Stages of `st.graph` as stages of the original graph, the shares declared: an R
    writes its outputs at their storage's offset plus their displacement, an F of a
    storage frees every name in it, a load of a storage names again the members still
    needed (DESIGN §1: a spilled view spills its bytes once)."""
    walk = _Restore(st)
    for s in stages:
        walk.stage(s)
    return walk.out


def sharing_kinds(target: Target, spills: bool = False) -> frozenset[str]:
    """The relation kinds a plan for `target` may use (read-only ones only when spilling)."""
    kinds = LEVEL_KINDS[target.share]
    return kinds & SPILL_KINDS if spills else kinds


def shared_plan(st: Storage, target: Target, stages: Sequence[Stage], info: SolverInfo) -> Plan:
    """The original graph's plan from a plan of the storage graph, checked by the simulator."""
    facts = {**info.facts, "shares": share_counts(st)}
    return finalize(Plan(st.original, target, restore(st, stages), replace(info, facts=facts)))


def share_counts(st: Storage) -> dict[str, int]:
    """How many relations of each kind the storage graph uses (what `optimal` is over)."""
    out: dict[str, int] = {}
    for s in st.shares.values():
        out[s.kind] = out.get(s.kind, 0) + 1
    return out


def unshared(target: Target) -> Target:
    """The target a storage graph (or a graph nothing in it shares) is planned under: its
    sharing is already in the graph, so its bounds must not assume more."""
    return replace(target, share="none") if target.share != "none" else target


def with_sharing(
    solve: Callable[..., Plan], spills: bool = False, kinds: frozenset[str] | None = None
) -> Callable[..., Plan]:
    """A solver that honours `target.share`: it plans the storage graph and the plan is
    mapped back (module docstring); unchanged when nothing may share. `spills`: only the
    read-only relations; `kinds`: exactly these (within what the target allows)."""

    @functools.wraps(solve)
    def run(graph: Graph, target: Target, options=None) -> Plan:
        inner = unshared(target)
        allowed = sharing_kinds(target, spills) if kinds is None else sharing_kinds(target) & kinds
        st = storage_graph(graph, allowed, target.alignment)
        if st is None:
            if inner == target:
                return solve(graph, target, options)
            plan = solve(graph, inner, options)
            return finalize(Plan(graph, target, plan.stages, plan.solver))
        if options is not None and options.hint is not None:
            options = replace(options, hint=None)  # a plan of the original graph, not of the storage graph
        plan = solve(st.graph, inner, options)
        return shared_plan(st, target, plan.stages, plan.solver)

    return run
