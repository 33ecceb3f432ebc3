"""Model importers (ONNX, TFLite) and the model zoo, installed as ``planner.models``.

Submodules import lazily so that ``import planner.models`` stays cheap (no onnx import).
"""

from __future__ import annotations

from .errors import ModelError

__all__ = ["ModelError", "load_onnx", "fold_constants", "load_model", "locate", "ZOO", "ZooEntry", "ZooError"]


def __getattr__(name: str):
    if name in ("load_onnx", "fold_constants"):
        from . import onnx as _onnx

        return getattr(_onnx, name)
    if name in ("load_model", "locate", "ZOO", "ZooEntry", "ZooError"):
        from . import zoo as _zoo

        return getattr(_zoo, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
