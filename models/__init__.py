"""Model importers (ONNX, TFLite) and the model zoo, installed as ``planner.models``.

Files are imported through one registry by suffix (:mod:`planner.models.importers`);
names (zoo, generated graphs) and files alike through :func:`load_model`. Submodules
import lazily so that ``import planner.models`` stays cheap (no onnx import).
"""

from __future__ import annotations

from .errors import ModelError

__all__ = [
    "ModelError",
    "IMPORTERS",
    "get_importer",
    "load_file",
    "load_onnx",
    "fold_constants",
    "load_model",
    "locate",
    "ZOO",
    "ZooEntry",
    "ZooError",
]


def __getattr__(name: str):
    if name in ("IMPORTERS", "get_importer", "load_file"):
        from . import importers as _importers

        return getattr(_importers, name)
    if name in ("load_onnx", "fold_constants"):
        from . import onnx as _onnx

        return getattr(_onnx, name)
    if name in ("load_model", "locate", "ZOO", "ZooEntry", "ZooError"):
        from . import zoo as _zoo

        return getattr(_zoo, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
