"""Layout heuristics on the 8-tensor example of Pisarchyk & Lee 2020 (Fig. 2)."""

from planner.solvers.heuristics.layout import arena_of, best_fit, by_breadth, first_fit, naive
from planner.solvers.lowering import Interval

RECORDS = [(0, 1, 32), (1, 4, 28), (2, 5, 36), (3, 5, 16), (4, 5, 8), (5, 7, 64), (6, 8, 10), (7, 8, 40)]
ITEMS = [Interval(f"t{i}", a, b, s) for i, (a, b, s) in enumerate(RECORDS)]


def max_live(items):
    return max(sum(iv.size for iv in items if iv.start <= p <= iv.end) for p in range(9))


def no_overlap(items, layout):
    for a in items:
        for b in items:
            if a.key < b.key and a.start <= b.end and b.start <= a.end:
                oa, ob = layout[a.key], layout[b.key]
                assert oa + a.size <= ob or ob + b.size <= oa, (a, b)


def test_greedy_by_size_reaches_the_lower_bound():
    lay = best_fit(ITEMS)
    no_overlap(ITEMS, lay)
    assert max_live(ITEMS) == 124
    assert arena_of(ITEMS, lay) == 124


def test_naive_has_no_reuse():
    assert arena_of(ITEMS, naive(ITEMS)) == 234


def test_other_layouts_are_valid():
    for f in (first_fit, by_breadth):
        lay = f(ITEMS)
        no_overlap(ITEMS, lay)
        assert arena_of(ITEMS, lay) >= 124
