"""A sweep's results on disk, so a sweep can stop anywhere and go on later.

    DIR/cells.jsonl        one JSON line per finished cell (a re-run appends; the last line of a key wins)
    DIR/references.jsonl   one line per no-spill reference solve (what percentages refer to)
    DIR/plans/*.plan.json  the plan file of every cell that found a plan
    DIR/spec.json          the spec the sweep was started with (`planner sweep DIR` goes on with it)

Only the process that drives the sweep writes here (workers send their results back), so
lines never interleave; a line cut short by a crash is ignored when the store is read.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from planner.sweep.spec import SweepSpec, spec_from_mapping

CELLS = "cells.jsonl"
REFERENCES = "references.jsonl"
SPEC = "spec.json"


class Store:
    """The results folder of one sweep (created on first use)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def _read(self, name: str) -> dict[str, dict]:
        out: dict[str, dict] = {}
        path = self.root / name
        if not path.is_file():
            return out
        with open(path) as f:
            for line in f:
                try:
                    d = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a crash or a kill
                if isinstance(d, dict) and "key" in d:
                    out[d["key"]] = d
        return out

    def cells(self) -> dict[str, dict]:
        """The latest result of every cell, by key."""
        return self._read(CELLS)

    def references(self) -> dict[str, dict]:
        """The latest reference solve of every (model, target, ...), by key."""
        return self._read(REFERENCES)

    def _append(self, name: str, record: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / name, "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
            f.flush()

    def add_cell(self, record: dict, plan_json: str | None = None) -> dict:
        """Record a cell's result (and write its plan file); the record as stored."""
        record = dict(record)
        if plan_json is not None:
            rel = Path("plans") / f"{plan_stem(record)}.plan.json"
            (self.root / "plans").mkdir(parents=True, exist_ok=True)
            (self.root / rel).write_text(plan_json + "\n")
            record["plan_file"] = str(rel)
        self._append(CELLS, record)
        return record

    def add_reference(self, record: dict) -> None:
        """Record a reference solve."""
        self._append(REFERENCES, record)

    def save_spec(self, spec: SweepSpec) -> None:
        """Keep the spec beside the results (what `planner sweep DIR` resumes)."""
        self.root.mkdir(parents=True, exist_ok=True)
        d = {"base_dir": str(spec.base_dir), "spec": spec.raw}
        (self.root / SPEC).write_text(json.dumps(d, indent=1, sort_keys=True) + "\n")

    def load_spec(self) -> SweepSpec | None:
        """The spec this store was started with, or None."""
        path = self.root / SPEC
        if not path.is_file():
            return None
        d = json.loads(path.read_text())
        return spec_from_mapping(d["spec"], d["base_dir"])

    def exists(self) -> bool:
        """Whether a sweep has written here."""
        return (self.root / CELLS).is_file() or (self.root / SPEC).is_file()


def plan_stem(record: dict) -> str:
    """A plan file's name a person can read: model, target, budget, solver, then the key."""
    model = Path(str(record.get("model", "model")).partition(".py:")[0]).name
    parts = [model, record.get("target", ""), record.get("budget", ""), record.get("solver", "")]
    slug = "_".join(re.sub(r"[^A-Za-z0-9.+-]+", "-", str(p)).strip("-") for p in parts)
    return f"{slug[:80]}_{record['key'][:8]}"
