"""Errors raised by the model importers and the zoo."""

from __future__ import annotations


class ModelError(ValueError):
    """A model file cannot be turned into a planner Graph.

    The message is always one line that says what is wrong and, where there is one, the
    fix (a flag to pass, a package to install). Importers never let a traceback from a
    parser (onnx, protobuf, flatbuffers) escape for bad input files: they raise this.
    """
