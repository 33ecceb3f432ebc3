"""The split search's pure parts: the cover (solvers/split_search.py) against brute force,
and the aligned stripe partition (models/split.py)."""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass

import pytest

from planner.models.split import stripe_bounds
from planner.solvers.split_search import Option, Split, cover


@dataclass(frozen=True)
class _Region:
    ops: tuple[int, ...]


def _brute(n: int, ws: dict[int, int], options: list[Option], level: int) -> int | None:
    """The least extra MACs over every set of disjoint options meeting `level`."""
    best = None
    for r in range(len(options) + 1):
        for chosen in itertools.combinations(options, r):
            ops = [k for o in chosen for k in range(o.first, o.last + 1)]
            if len(ops) != len(set(ops)) or any(o.peak > level for o in chosen):
                continue
            if any(ws[k] > level and k not in ops for k in range(n)):
                continue
            cost = sum(o.extra for o in chosen)
            best = cost if best is None or cost < best else best
    return best


@pytest.mark.parametrize("seed", range(40))
def test_cover_is_the_cheapest_set_of_disjoint_splits_meeting_the_level(seed):
    rng = random.Random(seed)
    n = rng.randint(1, 7)
    ws = {k: rng.randint(1, 100) for k in range(n)}
    options = []
    for i in range(rng.randint(0, 7)):
        a = rng.randrange(n)
        b = rng.randint(a, min(n - 1, a + 3))
        region = _Region(tuple(range(a, b + 1)))
        options.append(Option(Split(region, i + 2), a, b, rng.randint(0, 20), rng.randint(1, 100)))
    for level in sorted({*ws.values(), *(o.peak for o in options), 0}):
        got = cover(n, ws, options, level)
        want = _brute(n, ws, options, level)
        assert (got is None) == (want is None)
        if got is not None:
            cost, splits = got
            assert cost == want
            chosen = [o for o in options if o.split in splits]
            assert sum(o.extra for o in chosen) == cost and all(o.peak <= level for o in chosen)


@pytest.mark.parametrize(
    ("h", "k", "unit", "align"),
    [(13, 3, 13000, 16), (112, 16, 3584, 16), (7, 4, 1, 16), (224, 32, 672, 64), (10, 3, 1, 1)],
)
def test_stripes_partition_the_rows_evenly_on_aligned_boundaries(h, k, unit, align):
    bounds = stripe_bounds(h, k, unit, align)
    assert len(bounds) == k and bounds[0][0] == 0 and bounds[-1][1] == h
    assert all(a < b for a, b in bounds) and all(bounds[i][1] == bounds[i + 1][0] for i in range(k - 1))
    q = align // math.gcd(unit, align)
    if h // q >= k:  # enough aligned boundaries: every slot starts aligned, stripes about even
        assert all(a * unit % align == 0 for a, _ in bounds)
        sizes = [b - a for a, b in bounds]
        assert max(sizes) - min(sizes) <= 2 * q + h % q
    else:  # the plain even partition
        assert bounds == [(round(i * h / k), round((i + 1) * h / k)) for i in range(k)]


def test_a_plan_file_split_entry_reads_its_alignment_and_refuses_a_bad_one():
    from planner.models.split import SplitError, splits_from_dict

    entry = {"splits": [{"ops": [0, 1], "input_tensor": 0, "output_tensor": 2, "stripes": 4, "cache": True}]}
    (old,) = splits_from_dict(entry)  # written before `align`: the plain even partition
    assert old.align == 1 and old.stripes == 4 and old.cache and old.same
    entry["splits"][0]["align"] = 16
    entry["splits"][0]["same"] = False
    assert splits_from_dict(entry)[0].align == 16 and not splits_from_dict(entry)[0].same
    entry["splits"][0]["same"] = "no"
    with pytest.raises(SplitError, match="malformed split entry"):
        splits_from_dict(entry)
    entry["splits"][0]["same"] = True
    for bad in (0, -16, 2.5, True, "x"):
        entry["splits"][0]["align"] = bad
        with pytest.raises(SplitError, match="malformed split entry"):
            splits_from_dict(entry)


def test_an_unsplit_op_is_estimated_with_what_lives_across_it_in_model_order():
    from planner.graph import graph_from_records
    from planner.solvers.split_search import live_in_order
    from planner.target import Target

    # x -> a -> b -> add(b, x): the skip tensor x lives across b
    g = graph_from_records(
        "residual",
        [("a", ["x"], ["ya"]), ("b", ["ya"], ["yb"]), ("add", ["yb", "x"], ["z"])],
        {"x": 100, "ya": 10, "yb": 20, "z": 100},
        inputs=["x"],
        outputs=["z"],
    )
    live = live_in_order(g, Target("t", None))
    assert live == {0: 110, 1: 130, 2: 220}


def test_a_split_plan_is_the_proven_best_only_when_every_other_set_planned_needs_as_much():
    from planner.solvers.split_search import SplitChoice

    a, b, c = (Split(_Region((0, 1)), 2),), (Split(_Region((0, 1)), 4),), (Split(_Region((2, 3)), 2),)
    choice = SplitChoice(None, a, 100, 50, 100, 60, 0.0)
    choice.note_bound(a, 40)  # the chosen split's own short-solve bound does not count
    choice.note_bound(b, 70)
    choice.note_bound(b, 55)  # the best bound found for a set is kept
    choice.note_bound(c, 65)
    assert choice.proven_best(60, unsplit_bound=90)
    assert not choice.proven_best(71, unsplit_bound=90)  # set c may need only 65
    assert not choice.proven_best(60, unsplit_bound=59)  # no split at all may need only 59
