"""`planner zoo` lists every model fast and its op counts are the importer's."""

from __future__ import annotations

import json

import pytest

from planner.cli import main
from planner.models.zoo import ZOO, irregular_names, is_available, load_model
from planner.models.zoo_facts import OPS


def test_zoo_lists_every_model_with_ops_and_availability(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PLANNER_CACHE", str(tmp_path))  # listing generates nothing
    assert main(["zoo", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    names = [r["name"] for r in d["models"]]
    assert names == list(ZOO)
    assert {r["format"] for r in d["models"]} >= {"onnx", "tflite"}
    for r in d["models"]:
        assert r["ops"] == OPS[r["name"]]
        where = r["available"]
        assert where in ("installed", "bundled", "generated", "generated on first use") or where.startswith(
            "pip install"
        )
    assert not list(tmp_path.rglob("*.tflite"))
    mcu = [r for r in d["models"] if r["name"].startswith("mlperf_")]
    assert len(mcu) == 4 and {r["available"] for r in mcu} == {"generated on first use"}
    assert any(g["name"].startswith("sp:") for g in d["generated"])
    listed = " ".join(g["name"] for g in d["generated"])
    for name in irregular_names():  # every irregular network's name is shown (RandWire's as a pattern)
        family = name.rsplit("_", 1)[0]
        assert name in listed or (family.startswith("randwire") and "randwire_ws{8,16,32}" in listed), name


@pytest.mark.parametrize("name", ["resnet8", "sine_float", "alexa", "attacut-c", "mlperf_kws_ds_cnn_s"])
def test_op_counts_are_the_importers(name, tmp_path, monkeypatch):
    monkeypatch.setenv("PLANNER_CACHE", str(tmp_path))  # generated models go here, not to ~/.cache
    if not is_available(name):
        pytest.skip(ZOO[name].install)
    assert len(load_model(name).ops) == OPS[name]


@pytest.mark.slow
def test_every_installed_models_op_count_is_the_importers(tmp_path, monkeypatch):
    monkeypatch.setenv("PLANNER_CACHE", str(tmp_path))
    for name in ZOO:
        if is_available(name):
            assert len(load_model(name).ops) == OPS[name], name
