"""The importer registry (planner.models.importers): one signature, found by suffix, one
clear line for a suffix nobody registered, and cheap to import."""

from __future__ import annotations

import subprocess
import sys

import pytest

from planner.graph import Graph, ModelSource, Op, Tensor
from planner.models import ModelError
from planner.models.importers import IMPORTERS, get_importer, load_file, suffixes
from planner.models.zoo import BUNDLED_DIR, is_available, load_model, locate


def fake_importer(path, *, input_shapes=None, dims=None, input_values=None) -> Graph:
    """A one-op graph that records what it was called with."""
    pins = {"input_shapes": input_shapes, "dims": dims, "input_values": input_values}
    source = ModelSource("fake", str(path), "0" * 64, details=pins)
    tensors = [Tensor("x", 4, "input"), Tensor("y", 4, "output")]
    return Graph(path.stem, tensors, [Op("f", "Fake", ("x",), ("y",))], source)


def test_unknown_suffix_is_one_line_naming_the_known_ones(tmp_path):
    with pytest.raises(ModelError) as e:
        load_file(tmp_path / "net.pb")
    msg = str(e.value)
    assert msg == "net.pb: unknown model format '.pb'; expected .onnx or .tflite"
    assert "\n" not in msg
    with pytest.raises(ModelError, match=r"'\(no extension\)'"):
        get_importer(tmp_path / "net")


def test_the_registry_names_the_builtin_importers():
    assert suffixes()[:2] == [".onnx", ".tflite"]
    from planner.models.onnx import load_onnx
    from planner.models.tflite import load_tflite

    assert get_importer("a/b.onnx") is load_onnx
    assert get_importer("B.TFLITE") is load_tflite  # suffixes match case-insensitively


def test_a_registered_importer_is_found_by_suffix(tmp_path, monkeypatch):
    monkeypatch.setitem(IMPORTERS, ".fake", fake_importer)
    p = tmp_path / "m.fake"
    p.write_bytes(b"")
    assert get_importer(p) is fake_importer
    g = load_file(p, input_shapes={"x": (1,)}, dims={"n": 2})
    assert g.source.format == "fake" and g.source.details == {
        "input_shapes": {"x": (1,)},
        "dims": {"n": 2},
        "input_values": None,
    }
    # load_model goes through the registry too, and the unknown-suffix line lists the new one
    assert load_model(str(p)).name == "m"
    with pytest.raises(ModelError, match=r"expected \.onnx, \.tflite or \.fake$"):
        load_file(tmp_path / "m.pb")


def test_a_registered_importer_may_be_named_by_its_absolute_module(monkeypatch):
    from planner.models.tflite import load_tflite

    monkeypatch.setitem(IMPORTERS, ".tfl", "planner.models.tflite:load_tflite")
    assert get_importer("x.tfl") is load_tflite


def test_onnx_through_the_registry_fills_the_source():
    g = load_file(BUNDLED_DIR / "resnet8_cifar10.onnx")
    assert g.source.format == "onnx" and len(g.source.sha256) == 64


def test_tflite_refuses_pins_through_load_model():
    if not is_available("sine_float"):
        pytest.skip("sine_float (tflite-micro wheel) not installed")
    static = "sine_float.tflite: the TFLite importer takes no --input-shape / --dim (TFLite shapes are static)"
    with pytest.raises(ModelError) as e:
        load_model("sine_float", input_shapes={"x": (1, 1)})
    assert str(e.value) == static
    with pytest.raises(ModelError, match="TFLite shapes are static"):
        load_model(str(locate("sine_float")), dims={"batch": 1})
    g = load_model("sine_float")  # no pins: imports, with its source
    assert g.source.format == "tflite" and g.source.path.endswith("sine_float.tflite")


def test_importing_the_models_package_and_registry_stays_cheap():
    code = "import sys, planner.models, planner.models.importers, planner.models.zoo; print('onnx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
