"""The planner's file cache: generated models (the MCU zoo) and transformed ones (splits).

One root for every cache, `$PLANNER_CACHE` or ``~/.cache/planner``, each user of it in a
folder of its own; files are written atomically (a temporary file renamed), so processes
writing the same file at once never read half of it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def cache_root() -> Path:
    """``$PLANNER_CACHE``, else ``~/.cache/planner``."""
    root = os.environ.get("PLANNER_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "planner"


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` (its folder made if missing) through a renamed temporary file;
    raises OSError when the folder cannot be written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
