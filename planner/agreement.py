"""When two runs of a model agree: the tolerances `planner run` holds outputs to.

A module of its own so the command line can show the defaults without importing the
executor (and onnx with it) at start-up.
"""

# Float outputs agree when |ours - ref| <= atol + rtol * |ref| elementwise (numpy.isclose).
# atol 1e-5 absorbs the last-bit noise of near-zero values (a per-node run and onnxruntime's
# fused whole-graph run round differently) that a pure relative test would flag.
DEFAULT_RTOL = 1e-4
DEFAULT_ATOL = 1e-5
