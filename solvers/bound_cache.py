"""A small cache of proven lower bounds, keyed by a hash of the graph's structure and sizes.

Why: a lower bound is a fact about a graph (and the target's memory model), not about a
run; a window bound or a relaxation that took a minute to prove in one run should not be
proven again in the next. The cache is OFF unless the environment variable
`PLANNER_BOUND_CACHE` names a JSON file: then `auto` reads the bounds stored for the graph
it plans before its phases start, and writes back the best it proved at the end.

The key is a SHA-256 over the target's memory model (alignment, weight placement,
lifetimes) and the graph's structure: ops in the graph's order with their types and their
tensors by local index, every tensor's kind and size. Names do not enter it, so a graph
built again with other names hits the same entry; any change of wiring or of a size
misses it. A stored entry holds the aligned bound on every order's max-live and the raw
bound on every no-spill plan's arena; entries only ever grow (max of old and new), and a
file that cannot be read is ignored (a cache must never make a run fail).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from planner.graph import Graph
from planner.target import Target

ENV = "PLANNER_BOUND_CACHE"


def graph_key(graph: Graph, target: Target) -> str:
    """The cache key of (graph, target): structure and sizes, no names (module doc)."""
    local: dict[str, int] = {}
    h = hashlib.sha256(f"{target.alignment}|{target.weights}|{target.lifetimes}".encode())
    for o in graph.ops:
        ins = []
        for t in o.inputs:
            if t not in local:
                local[t] = len(local)
            ins.append(local[t])
        for t in o.outputs:
            local.setdefault(t, len(local))
        h.update(f"{o.type}({ins})->{[local[t] for t in o.outputs]};".encode())
    for t, i in sorted(local.items(), key=lambda x: x[1]):
        x = graph.tensors[t]
        h.update(f"{i}:{x.kind}:{x.bytes};".encode())
    unused = sorted((x.kind, x.bytes) for n, x in graph.tensors.items() if n not in local)
    h.update(repr(unused).encode())
    return h.hexdigest()


def cache_path() -> Path | None:
    """The cache file, or None when caching is off (the default)."""
    p = os.environ.get(ENV)
    return Path(p) if p else None


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def cached_bounds(graph: Graph, target: Target) -> tuple[int, int]:
    """(aligned, raw) bounds stored for the graph, (0, 0) when none or caching is off."""
    path = cache_path()
    if path is None:
        return 0, 0
    e = _read(path).get(graph_key(graph, target), {})
    try:
        return int(e.get("aligned", 0)), int(e.get("raw", 0))
    except (TypeError, ValueError, AttributeError):
        return 0, 0


def store_bounds(graph: Graph, target: Target, aligned: int, raw: int, how: str = "") -> None:
    """Keep the larger of the stored and the new bounds (no-op when caching is off)."""
    path = cache_path()
    if path is None or (aligned <= 0 and raw <= 0):
        return
    data = _read(path)
    key = graph_key(graph, target)
    old = data.get(key, {}) if isinstance(data.get(key), dict) else {}
    if aligned <= int(old.get("aligned", 0)) and raw <= int(old.get("raw", 0)):
        return
    data[key] = {
        "aligned": max(aligned, int(old.get("aligned", 0))),
        "raw": max(raw, int(old.get("raw", 0))),
        "graph": graph.name,
        "how": how or old.get("how", ""),
    }
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        tmp.replace(path)
    except OSError:
        tmp.unlink(missing_ok=True)
