"""Offset assignment for fixed residencies: the framework baselines.

`first_fit` is TFLite Micro's GreedyMemoryPlanner (largest first, lowest gap that fits);
`best_fit` is TFLite's greedy-by-size (Pisarchyk & Lee 2020 §4.2: smallest gap that fits);
`by_breadth` is Pisarchyk & Lee's greedy by breadth (§4.3). Sizes are aligned up so every
offset stays a multiple of the target's alignment.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from planner.solvers.lowering import Interval

Layout = dict[str, int]


class _Placed:
    """Placed residencies as numpy arrays, so overlap queries stay fast at 2,000+ tensors."""

    def __init__(self, n: int) -> None:
        self.start = np.empty(n, dtype=np.int64)
        self.end = np.empty(n, dtype=np.int64)
        self.off = np.empty(n, dtype=np.int64)
        self.size = np.empty(n, dtype=np.int64)
        self.n = 0

    def gaps(self, iv: Interval) -> tuple[np.ndarray, np.ndarray, int]:
        """Free gaps [lo, hi) below the top among residencies overlapping `iv` in time."""
        k = self.n
        mask = (self.start[:k] <= iv.end) & (iv.start <= self.end[:k]) & (self.size[:k] > 0)
        lo = self.off[:k][mask]
        if lo.size == 0:
            return lo, lo, 0
        order = np.argsort(lo, kind="stable")
        lo = lo[order]
        hi = np.maximum.accumulate((self.off[:k][mask] + self.size[:k][mask])[order])
        gap_lo = np.concatenate(([0], hi[:-1]))
        keep = lo > gap_lo
        return gap_lo[keep], lo[keep], int(hi[-1])

    def add(self, iv: Interval, off: int) -> None:
        k = self.n
        self.start[k], self.end[k], self.off[k], self.size[k] = iv.start, iv.end, off, iv.size
        self.n += 1


def _first_fit_offset(gap_lo: np.ndarray, gap_hi: np.ndarray, top: int, size: int) -> int:
    fits = np.nonzero(gap_hi - gap_lo >= size)[0]
    return int(gap_lo[fits[0]]) if fits.size else top


def _best_fit_offset(gap_lo: np.ndarray, gap_hi: np.ndarray, top: int, size: int) -> int:
    width = gap_hi - gap_lo
    fits = np.nonzero(width >= size)[0]
    if not fits.size:
        return top
    # smallest gap that fits; lowest offset among equals (gaps are sorted by offset)
    return int(gap_lo[fits[np.argmin(width[fits])]])


def _place_in_order(items: Sequence[Interval], choose: Callable) -> Layout:
    placed = _Placed(len(items))
    out: Layout = {}
    for iv in items:
        off = 0 if iv.size == 0 else choose(*placed.gaps(iv), iv.size)
        out[iv.key] = off
        placed.add(iv, off)
    return out


def _by_size(items: Sequence[Interval]) -> list[Interval]:
    return sorted(items, key=lambda iv: (-iv.size, iv.start, iv.end))


def first_fit(items: Sequence[Interval]) -> Layout:
    """TFLite Micro's GreedyMemoryPlanner: largest first, the lowest gap that fits."""
    return _place_in_order(_by_size(items), _first_fit_offset)


def best_fit(items: Sequence[Interval]) -> Layout:
    """TFLite's greedy by size: largest first, the smallest gap that fits."""
    return _place_in_order(_by_size(items), _best_fit_offset)


def by_breadth(items: Sequence[Interval]) -> Layout:
    """Visit positions by the bytes live there (largest first); place their tensors by size."""
    if not items:
        return {}
    horizon = max(iv.end for iv in items) + 1
    breadth = np.zeros(horizon + 1, dtype=np.int64)
    for iv in items:
        breadth[iv.start] += iv.size
        breadth[iv.end + 1] -= iv.size
    breadth = np.cumsum(breadth)[:horizon]
    at: dict[int, list[Interval]] = {}
    for iv in items:
        # a residency is handled at its widest position, which is where it is most constrained
        p = iv.start + int(np.argmax(breadth[iv.start : iv.end + 1]))
        at.setdefault(p, []).append(iv)
    ordered: list[Interval] = []
    for p in sorted(at, key=lambda q: (-int(breadth[q]), q)):
        ordered += _by_size(at[p])
    return _place_in_order(ordered, _best_fit_offset)


def naive(items: Sequence[Interval]) -> Layout:
    """No reuse at all: every residency gets its own range (the upper anchor)."""
    out, cur = {}, 0
    for iv in items:
        out[iv.key] = cur
        cur += iv.size
    return out


def arena_of(items: Sequence[Interval], layout: Layout) -> int:
    """The top of the highest residency of a layout (sizes as the intervals give them)."""
    return max((layout[iv.key] + iv.size for iv in items), default=0)


LAYOUTS: dict[str, Callable[[Sequence[Interval]], Layout]] = {
    "first-fit": first_fit,
    "best-fit": best_fit,
    "breadth": by_breadth,
}
