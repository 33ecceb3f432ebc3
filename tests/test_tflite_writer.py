"""planner.models.tflite_writer: descriptions packed into flatbuffers TFLite Micro runs, read
back unchanged, constant data aligned, and one-line errors for descriptions it cannot write."""

from __future__ import annotations

import numpy as np
import pytest

from planner.tflm_runtime import available

pytestmark = pytest.mark.skipif(
    not available(), reason="needs the tflite-micro wheel: pip install --no-deps tflite-micro"
)


def fc_model():
    """y = relu(x + x) -> FULLY_CONNECTED with per-channel int8 weights."""
    from planner.models.tflite_writer import Model, Operator, Quant, Tensor

    q = Quant.per_tensor(0.1, -3)
    w = np.arange(12, dtype=np.int8).reshape(3, 4)
    tensors = [
        Tensor("x", (1, 4), "INT8", q),
        Tensor("h", (1, 4), "INT8", q),
        Tensor("w", (3, 4), "INT8", Quant((0.01, 0.02, 0.03), (0, 0, 0)), w),
        Tensor("b", (3,), "INT32", Quant((0.001, 0.002, 0.003), (0, 0, 0)), np.array([1, 2, 3], np.int32)),
        Tensor("y", (1, 3), "INT8", Quant.per_tensor(0.05, 0)),
    ]
    ops = [
        Operator("ADD", ["x", "x"], ["h"], {"fused_activation_function": "RELU"}, version=2),
        Operator("FULLY_CONNECTED", ["h", "w", "b"], ["y"], version=4),
    ]
    return Model(tensors, ops, ["x"], ["y"], description="test", metadata={"note": b"hello"})


def test_written_model_runs_in_tflm_and_reads_back_byte_for_byte(tmp_path):
    from planner.models.tflite import load_tflite
    from planner.models.tflite_writer import read, write
    from planner.tflm_runtime import tflm_run_full

    path = tmp_path / "fc.tflite"
    data = write(path, fc_model())
    assert path.read_bytes() == data == write(None, fc_model())
    back = read(data)
    assert write(None, back) == data and read(path).metadata == {"note": b"hello"}
    assert back.operators[0].options["fusedActivationFunction"] == 1  # RELU, as the schema's integer
    assert [op.type for op in load_tflite(path).ops] == ["ADD", "FULLY_CONNECTED"]
    x = np.array([[1, 2, 3, 100]], np.int8)
    # h = relu(2 * 0.1 * (x + 3)) -> int8 at (0.1, -3); y = W h + b at (0.05, 0)
    h = np.clip(np.rint(np.maximum(0.2 * (x.astype(float) + 3), 0) / 0.1) - 3, -128, 127)
    acc = (np.arange(12).reshape(3, 4) @ (h[0] + 3) + [1, 2, 3]) * np.array([0.001, 0.002, 0.003])
    want = np.clip(np.rint(acc / 0.05), -128, 127)
    got = tflm_run_full(path, [[x]]).outputs[0][0]
    assert np.abs(got[0].astype(int) - want).max() <= 1


def test_constant_data_is_aligned_to_16_bytes():
    from planner.models.tflite_writer import write

    data = write(None, fc_model())
    for arr in (np.arange(12, dtype=np.int8).tobytes(), np.array([1, 2, 3], np.int32).tobytes()):
        at = data.find(arr)
        assert at > 0 and at % 16 == 0


def test_options_tables_are_found_by_operator_name():
    from planner.models.tflite_writer import options_type

    assert options_type("CONV_2D") == "Conv2DOptions"
    assert options_type("AVERAGE_POOL_2D") == "Pool2DOptions" and options_type("MEAN") == "ReducerOptions"
    assert options_type("BATCH_MATMUL") == "BatchMatMulOptions"
    assert options_type("RELU") is None


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: m.operators[0].options.update(bogus=1), "AddOptions has no field 'bogus'"),
        (
            lambda m: m.operators[0].options.update(fusedActivationFunction="RELU7"),
            "'RELU7' is not a ActivationFunctionType",
        ),
        (lambda m: m.operators[1].inputs.__setitem__(0, "nope"), "unknown tensor"),
        (lambda m: setattr(m.tensors[2], "data", np.zeros(5, np.int8)), "data has 5 values"),
        (lambda m: setattr(m.tensors[3], "data", np.zeros(3, np.float32)), "a INT32 tensor stores"),
        (lambda m: m.tensors.append(m.tensors[0]), "used twice"),
        (
            lambda m: m.operators.append(m.operators[0].__class__("RELU", ["x"], ["h"], {"axis": 1})),
            "takes no builtin options",
        ),
    ],
)
def test_descriptions_it_cannot_write_are_refused_in_one_line(change, message):
    from planner.models.tflite_writer import WriterError, write

    m = fc_model()
    change(m)
    with pytest.raises(WriterError, match=message.replace("(", r"\(")) as e:
        write(None, m)
    assert "\n" not in str(e.value)
