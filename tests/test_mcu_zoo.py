"""The generated MCU zoo (planner.models.mcu_zoo): every model builds, imports, runs in
TFLite Micro with outputs that change with the input, looks like converter output, and is
the same bytes every time (in another process with another BLAS thread count too)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from planner.tflm_runtime import available

pytestmark = pytest.mark.skipif(
    not available(), reason="needs the tflite-micro wheel: pip install --no-deps tflite-micro"
)

SMALL = [
    "mlperf_resnet8",
    "mlperf_vww_mobilenet_v1_025",
    "mlperf_kws_ds_cnn_s",
    "mlperf_ad_fc_autoencoder",
    "mobilenet_v2_035_96",
]
LARGE = [
    "mobilenet_v2_035_160",
    "mobilenet_v2_100_96",
    "mobilenet_v2_100_160",
    "mobilenet_v2_100_224",
    "squeezenet_11_224",
]
INPUTS = 4  # random int8 inputs each model runs on


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A fresh PLANNER_CACHE for this module: the tests generate every file they use."""
    with pytest.MonkeyPatch.context() as mp:
        root = tmp_path_factory.mktemp("planner-cache")
        mp.setenv("PLANNER_CACHE", str(root))
        yield root


def run_in_tflm(path: Path, seed: int = 0):
    """TFLM's outputs (INPUTS x model output) on random int8 inputs, and its arena head."""
    from planner.tflm_check import random_invocations
    from planner.tflm_runtime import tflm_run_full

    invs = random_invocations(path, INPUTS, seed)
    r = tflm_run_full(path, invs)
    return invs, np.stack([o[0] for o in r.outputs]), r.arena_head


def check_model(name: str) -> None:
    """Generated through the zoo, imported, every op a TFLM kernel, run with varying outputs."""
    from planner.models.tflite import TFLM_BUILTINS, load_tflite, tflm_gaps
    from planner.models.zoo import load_model, locate
    from planner.models.zoo_facts import OPS

    path = locate(name)
    assert path.name == f"{name}.tflite" and path.is_file()
    graph = load_tflite(path)
    assert len(graph.ops) == OPS[name] == len(load_model(name).ops)
    assert {op.type for op in graph.ops} <= TFLM_BUILTINS and not tflm_gaps(graph)
    assert {t.dtype for t in graph.tensors.values() if t.kind != "weight"} == {"int8"}
    _, outs, head = run_in_tflm(path)
    assert head > 0
    flat = outs.reshape(INPUTS, -1)
    assert len({row.tobytes() for row in flat}) == INPUTS, f"{name}: outputs repeat across inputs"
    assert len(np.unique(flat)) > 2, f"{name}: outputs saturate to a few values"


@pytest.mark.parametrize("name", SMALL)
def test_small_models_build_import_and_run_with_varying_outputs(cache, name):
    check_model(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", LARGE)
def test_large_models_build_import_and_run_with_varying_outputs(cache, name):
    check_model(name)


@pytest.mark.parametrize("name", SMALL)
def test_bytes_are_deterministic(cache, name):
    from planner.models import mcu_zoo

    first = mcu_zoo.build(name)
    assert mcu_zoo.build(name) == first
    assert mcu_zoo.locate(name).read_bytes() == first


def test_bytes_do_not_depend_on_blas_threads(cache):
    """BLAS splits sums differently for another thread count; calibration rounds its statistics
    so the file is still the same (MobileNetV2 differed before the rounding)."""
    from planner.models import mcu_zoo

    name = "mobilenet_v2_035_96"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    code = f"import sys; from planner.models import mcu_zoo; sys.stdout.buffer.write(mcu_zoo.build({name!r}))"
    other = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, check=True).stdout
    assert other == mcu_zoo.build(name)


def test_int8_outputs_follow_the_float_reference(cache):
    """The quantised model computes what its calibrated float model does: the dequantised TFLM
    outputs of the shallow models are close to the float forward pass on the same inputs."""
    from planner.models import mcu_zoo

    for name, tolerance in (("mlperf_resnet8", 0.01), ("mlperf_kws_ds_cnn_s", 0.06), ("mlperf_ad_fc_autoencoder", 0.2)):
        net = mcu_zoo.network(name)
        invs, outs, _ = run_in_tflm(mcu_zoo.locate(name), seed=3)
        s_in, zp_in = mcu_zoo.quant_params(*net.input_range)
        x = np.concatenate([(inv[0].astype(np.float64) - zp_in) * s_in for inv in invs])
        ref = mcu_zoo.forward(net, x)
        scale, zp = mcu_zoo.activation_quant(net)[net.output]
        got = (outs.reshape(ref.shape).astype(np.float64) - zp) * scale
        assert np.abs(got - ref).mean() < tolerance, name


def _tensors(model):
    return {t.name: t for t in model.tensors}


def test_quantisation_follows_the_converters_conventions(cache):
    from planner.models import mcu_zoo
    from planner.models.tflite_writer import read

    for name in ("mobilenet_v2_035_96", "mlperf_resnet8"):
        m = read(mcu_zoo.locate(name))
        t = _tensors(m)
        assert [t[n].dtype for n in (*m.inputs, *m.outputs)] == ["INT8", "INT8"]
        out = t[m.outputs[0]]
        assert out.quant.scale == (1 / 256,) and out.quant.zero_point == (-128,)  # SOFTMAX
        versions = {o.op: o.version for o in m.operators}
        assert versions["CONV_2D"] == 3 and versions["FULLY_CONNECTED"] == 4 and versions["SOFTMAX"] == 2
        for o in m.operators:
            if o.op not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
                continue
            x, w, b = (t[n] for n in o.inputs)
            axis = 3 if o.op == "DEPTHWISE_CONV_2D" else 0
            channels = w.shape[axis]
            assert w.dtype == "INT8" and w.quant.axis == axis and len(w.quant.scale) == channels
            assert set(w.quant.zero_point) == {0} and np.abs(w.data).max() <= 127
            assert b.dtype == "INT32" and len(b.quant.scale) == channels
            expect = np.float32(x.quant.scale[0]) * np.asarray(w.quant.scale, dtype=np.float64)
            assert np.allclose(b.quant.scale, expect, rtol=1e-6)
        acts = {o.options.get("fusedActivationFunction") for o in m.operators if o.op == "CONV_2D"}
        assert acts >= {1 if name == "mlperf_resnet8" else 3}  # RELU / RELU6 fused into the convs


def test_same_scale_ops_share_their_parameters():
    """TFLM copies the bytes of pools, RESHAPE and CONCATENATION unchanged, so their inputs and
    outputs must share scale and zero point: a SqueezeNet fire module between max pools, and
    ResNet-8's pool and flatten."""
    from planner.models import mcu_zoo

    a = mcu_zoo._Arch("fire", (1, 15, 15, 3), (-1.0, 1.0), seed=0)
    x = a.pool("maxpool", "pool1", a.conv("conv1", "input", 8, 3, padding="VALID"), (3, 3), (2, 2))
    s = a.conv("squeeze", x, 4, 1)
    x = a.concat("concat", [a.conv("expand1x1", s, 8, 1), a.conv("expand3x3", s, 8, 3)])
    a.pool("maxpool", "pool2", x, (3, 3), (2, 2))
    mcu_zoo._propagate(a.net, mcu_zoo.calibration_batch(a.net), calibrate=True)
    for net in (a.net, mcu_zoo.network("mlperf_resnet8")):
        q = mcu_zoo.activation_quant(net)
        same = [lay for lay in net.layers if lay.op in ("avgpool", "maxpool", "reshape", "concat")]
        assert same and all(q[i] == q[lay.name] for lay in same for i in lay.inputs), net.name
    assert q["softmax"] == (1 / 256, -128)


def test_the_cache_is_keyed_by_generator_version(cache, monkeypatch):
    from planner.models import mcu_zoo, zoo

    name = "mlperf_kws_ds_cnn_s"
    path = mcu_zoo.cached_path(name)
    assert path.parent.name == mcu_zoo.generator_version() and Path(cache) in path.parents
    mcu_zoo.locate(name)
    assert zoo.availability(name) == "generated"

    def no_build(_name):
        raise AssertionError("rebuilt a cached model")

    monkeypatch.setattr(mcu_zoo, "build", no_build)
    assert mcu_zoo.locate(name) == path  # cached: not built again
    monkeypatch.setattr(mcu_zoo, "generator_version", lambda: "0-older")
    assert not mcu_zoo.is_cached(name) and zoo.availability(name) == "generated on first use"


def test_zoo_names_resolve_with_did_you_mean():
    from planner.models.zoo import ZOO, ZooError, load_model

    assert {"mlperf_resnet8", "mobilenet_v2_100_224", "squeezenet_11_224"} <= set(ZOO)
    with pytest.raises(ZooError, match="mlperf_resnet8"):
        load_model("mlperf_resnet")


def test_depthwise_filters_are_1hwc_with_channels_last(cache):
    from planner.models import mcu_zoo
    from planner.models.tflite_writer import read

    m = read(mcu_zoo.locate("mlperf_kws_ds_cnn_s"))
    t = _tensors(m)
    for o in m.operators:
        if o.op == "DEPTHWISE_CONV_2D":
            w, y = t[o.inputs[1]], t[o.outputs[0]]
            assert w.shape == (1, 3, 3, y.shape[-1]) and o.options["depthMultiplier"] == 1
    first = m.operators[0]
    assert first.op == "CONV_2D" and t[first.inputs[1]].shape == (64, 10, 4, 1) and first.options["strideW"] == 2
