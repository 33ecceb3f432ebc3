"""The objectives a solve can have, in a module of their own: the command line lists them in
its options, and `planner --help` must not import the solvers (numpy, networkx) to do so."""

from __future__ import annotations

from typing import Literal, get_args

# traffic: least spill traffic that fits the budget, then the smallest arena (spill only
# when no plan without spills fits); peak: the smallest arena, spills allowed, then traffic
Objective = Literal["traffic", "peak"]
OBJECTIVES: tuple[str, ...] = get_args(Objective)
