"""The one seam between model files and the planner: importers registered by file suffix.

Every importer has the same signature::

    load(path, *, input_shapes=None, dims=None, input_values=None) -> Graph

``input_shapes`` (input name -> shape) and ``dims`` (symbolic dim name -> size) pin the
graph's inputs to static sizes; ``input_values`` (input name -> value) are the values an
importer may feed when a shape depends on an input's value. An importer for a format
whose shapes are always static refuses the pins with a ``ModelError`` instead of
ignoring them. Every importer fills ``Graph.source`` (a :class:`planner.graph.ModelSource`:
format, path, sha256, the pins), raises :class:`ModelError` with one line for anything it
cannot import, and lets no parser traceback escape.

Adding a format is one module with such a ``load`` function and one line in
:data:`IMPORTERS`. Entries are ``"module:function"`` strings (a module of
``planner.models``, or an absolute module path when it has a dot) imported on first use,
so ``import planner.models`` never pays for onnx; a callable works too.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from .errors import ModelError

if TYPE_CHECKING:
    from planner.graph import Graph

__all__ = ["IMPORTERS", "Importer", "get_importer", "load_file", "suffixes"]


class Importer(Protocol):
    """What every registered importer is: a model file (plus optional pins) -> a Graph."""

    def __call__(
        self,
        path: str | os.PathLike,
        *,
        input_shapes: Mapping[str, Iterable[int]] | None = None,
        dims: Mapping[str, int] | None = None,
        input_values: Mapping[str, object] | None = None,
    ) -> Graph: ...


# file suffix (lower case, with the dot) -> "module:function" in planner.models, or a callable
IMPORTERS: dict[str, str | Importer] = {
    ".onnx": "onnx:load_onnx",
    ".tflite": "tflite:load_tflite",
}


def suffixes() -> list[str]:
    """The file suffixes an importer is registered for, in registry order."""
    return list(IMPORTERS)


def _expected() -> str:
    known = suffixes()
    return known[0] if len(known) == 1 else f"{', '.join(known[:-1])} or {known[-1]}"


def _resolve(entry: str | Importer) -> Importer:
    if callable(entry):
        return entry
    module, _, name = entry.partition(":")
    mod = importlib.import_module(module if "." in module else f"{__package__}.{module}")
    return getattr(mod, name)


def get_importer(path: str | os.PathLike) -> Importer:
    """The importer for `path`'s suffix, so callers never branch on file formats.

    Raises :class:`ModelError` (one line naming the known suffixes) for a suffix nobody
    registered.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    entry = IMPORTERS.get(suffix)
    if entry is None:
        raise ModelError(f"{p.name}: unknown model format {suffix or '(no extension)'!r}; expected {_expected()}")
    return _resolve(entry)


def load_file(
    path: str | os.PathLike,
    *,
    input_shapes: Mapping[str, Iterable[int]] | None = None,
    dims: Mapping[str, int] | None = None,
    input_values: Mapping[str, object] | None = None,
) -> Graph:
    """Import a model file with the importer registered for its suffix (see the module docstring)."""
    load: Callable[..., Graph] = get_importer(path)
    return load(Path(path), input_shapes=input_shapes, dims=dims, input_values=input_values)
