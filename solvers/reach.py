"""Reachability in the op DAG, computed once: ancestor and descendant sets as bitsets.

Every exact model needs the same facts: how many ops must run before an op (its
earliest position) and after it (its latest), which ops are comparable with every other
(the decomposition's sequential points), whether the order is forced. Python ints as
bitsets over op indices (the model's order) make them linear-ish even at 3,000 ops.
"""

from __future__ import annotations

from collections.abc import Sequence

import networkx as nx

from planner.graph import Graph


class Reach:
    """Ancestor / descendant sets of every op, as Python-int bitsets over `graph.op_index`."""

    def __init__(self, graph: Graph) -> None:
        self.idx = graph.op_index
        self.names = [o.name for o in graph.ops]
        n = len(graph.ops)
        self.anc = [0] * n
        self.desc = [0] * n
        topo = list(nx.topological_sort(graph.dag))
        for v in topo:
            i = self.idx[v]
            for u in graph.dag.predecessors(v):
                j = self.idx[u]
                self.anc[i] |= self.anc[j] | (1 << j)
        for v in reversed(topo):
            i = self.idx[v]
            for w in graph.dag.successors(v):
                j = self.idx[w]
                self.desc[i] |= self.desc[j] | (1 << j)
        self.n = n
        self.topo = topo

    def n_anc(self, op: str) -> int:
        """Number of ops that run before `op` in every order."""
        return self.anc[self.idx[op]].bit_count()

    def n_desc(self, op: str) -> int:
        """Number of ops that run after `op` in every order."""
        return self.desc[self.idx[op]].bit_count()

    def window(self, op: str) -> tuple[int, int]:
        """(earliest, latest) position of `op` in any topological order."""
        return self.n_anc(op), self.n - 1 - self.n_desc(op)

    def reduce_max(self, ops: Sequence[str]) -> tuple[str, ...]:
        """Drop ops that are ancestors of another op in the set: they can never be the last."""
        return tuple(o for o in ops if not any(self.desc[self.idx[o]] >> self.idx[p] & 1 for p in ops if p != o))

    def reduce_min(self, ops: Sequence[str]) -> tuple[str, ...]:
        """Drop ops that are descendants of another op in the set: they can never be the first."""
        return tuple(o for o in ops if not any(self.anc[self.idx[o]] >> self.idx[p] & 1 for p in ops if p != o))

    def sequential_points(self) -> list[str]:
        """Ops comparable with every other op, in execution order: every order runs all
        their ancestors before them and all their descendants after them."""
        pts = [o for o in self.topo if self.n_anc(o) + self.n_desc(o) == self.n - 1]
        return sorted(pts, key=self.n_anc)

    def single_order(self) -> bool:
        """Whether the graph has exactly one topological order (a Hamiltonian path)."""
        return len(self.sequential_points()) == self.n

    def free_positions(self) -> int:
        """Σ over ops of the positions each may take (the size of a one-hot position model)."""
        return sum(self.n - self.n_anc(o) - self.n_desc(o) for o in self.names)
