"""Hypothesis strategies several property tests share."""

from __future__ import annotations

from hypothesis import strategies as st

from planner.target import Target

# an unbounded L1, weights in place or loaded, offsets aligned or not
targets = st.builds(
    Target,
    name=st.just("t"),
    budget=st.none(),
    weights=st.sampled_from(["in_place", "load"]),
    alignment=st.sampled_from([1, 16]),
)
