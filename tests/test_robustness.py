"""The robustness suite (issue 14): a malformed-input corpus generated at test time, and
end-to-end properties over random models.

The corpus: truncations and byte flips of real models (zoo files, `planner.models.zoo.locate`),
semantically broken ONNX graphs, bad values of every CLI option, corrupted plan files. Every
case runs the CLI in-process (`planner.cli.main`, stdout/stderr captured, the stderr file
descriptor too, where onnxruntime's C++ logger writes) and must

- exit with an expected code: 2 for bad input, 1 where the input is valid but infeasible
  (0 only where a mutation can leave a valid input, e.g. a flipped weight byte);
- print exactly one stderr line when it fails, and no traceback, and no runtime log line;
- finish within its time bound;
- never accept a corrupted plan file (exit 0), and every plan it writes must pass
  `read_checked_plan` (replayed, metrics equal).

The properties: random ONNX DAGs planned by several solvers at unbounded and tight budgets,
each plan re-checked and run against onnxruntime (`planner run`); random re-orders of the
TFLite zoo models exported into the model and run by TFLite Micro next to the original.

Each test records its counts (cases, and cases per failure kind) with `record_property`
(tests/conftest.py prints them after the run) and asserts that every failure count is 0.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from planner.cli import main

F = TensorProto.FLOAT
KINDS = ("wrong_exit_code", "traceback", "multi_line_error", "hang", "plan_accepted_unchecked", "mismatch")
BOUND_S = 60.0  # no single case may take longer (the slowest, a model planned by auto, takes a few seconds)
RUNTIME_LOG = ("[E:onnxruntime", "[W:onnxruntime", "[I:onnxruntime")


# -- running one case ------------------------------------------------------------------------------
@dataclass
class Case:
    """One command line and what it may do."""

    name: str
    argv: list[str]
    codes: frozenset[int]  # acceptable exit codes
    must_refuse: bool = False  # a corrupted plan file: exit 0 means it was accepted unchecked
    writes: Path | None = None  # a plan file the command writes when it succeeds
    bound_s: float = BOUND_S


@dataclass
class Tally:
    """Cases run and failures by kind, with the first few failures described."""

    cases: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    examples: list[str] = field(default_factory=list)
    info: dict[str, int] = field(default_factory=dict)  # what the cases did (not failures)

    def note(self, key: str) -> None:
        self.info[key] = self.info.get(key, 0) + 1

    def add(self, name: str, kinds: list[str], detail: str) -> None:
        self.cases += 1
        for k in kinds:
            self.counts[k] += 1
        if kinds and len(self.examples) < 15:
            self.examples.append(f"{name}: {', '.join(kinds)}: {detail[:400]}")

    def report(self, record_property) -> dict:
        d = {"cases": self.cases, **self.counts}
        record_property("robustness", {**d, **self.info})
        print("robustness:", json.dumps(d))
        return d

    def assert_clean(self) -> None:
        assert not any(self.counts.values()), "\n".join(self.examples)


class _Hang(BaseException):
    """Raised by the alarm when a case runs past its bound (not an Exception: the CLI's
    catch-all must not swallow it)."""


@contextlib.contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    def fire(signum, frame):
        raise _Hang()

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@contextlib.contextmanager
def _fd2() -> Iterator[tempfile.TemporaryFile]:
    """What C and C++ code write to file descriptor 2 while the block runs."""
    with tempfile.TemporaryFile() as tmp:
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            yield tmp
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def run_cli(argv: list[str], bound_s: float = BOUND_S) -> tuple[int | None, str, str, float]:
    """(exit code or None after a hang, stdout, stderr, seconds) of the CLI run in-process."""
    out, err = io.StringIO(), io.StringIO()
    t0 = time.perf_counter()
    code: int | None = None
    with _fd2() as raw:
        try:
            with _alarm(bound_s), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(argv)
        except _Hang:
            code = None
        except SystemExit as e:  # argparse's --help; nothing else may exit
            code = e.code if isinstance(e.code, int) else 2
        raw.seek(0)
        c_err = raw.read().decode("utf-8", "replace")
    return code, out.getvalue(), err.getvalue() + c_err, time.perf_counter() - t0


def judge(case: Case, code: int | None, err: str, seconds: float) -> list[str]:
    """The failure kinds of one finished case (empty when it behaved)."""
    from planner.simulate import read_checked_plan

    kinds = []
    if code is None or seconds > case.bound_s:
        return ["hang"]
    if code == 0 and case.must_refuse:
        kinds.append("plan_accepted_unchecked")
    elif code not in case.codes:
        kinds.append("wrong_exit_code")
    if "Traceback (most recent call last)" in err:
        kinds.append("traceback")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if (code != 0 and len(lines) != 1) or any(tag in err for tag in RUNTIME_LOG):
        kinds.append("multi_line_error")
    if code == 0 and case.writes is not None:
        try:
            read_checked_plan(case.writes)
        except Exception:  # noqa: BLE001 - any refusal: the planner wrote a plan it did not check
            kinds.append("plan_accepted_unchecked")
    return kinds


def run_corpus(cases: list[Case], tally: Tally) -> None:
    for case in cases:
        if case.writes is not None and case.writes.exists():
            case.writes.unlink()
        code, _, err, seconds = run_cli(case.argv, case.bound_s)
        tally.add(case.name, judge(case, code, err, seconds), f"exit {code} in {seconds:.1f} s: {err.strip()}")


# -- inputs shared by the corpus --------------------------------------------------------------------
def zoo_file(name: str) -> Path | None:
    from planner.models.zoo import ZooError, locate

    try:
        return locate(name)
    except ZooError:
        return None


def relu_chain(path: Path, shape=(1, 4)) -> Path:
    x = helper.make_tensor_value_info("x", F, list(shape))
    y = helper.make_tensor_value_info("y", F, list(shape))
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="r1"), helper.make_node("Relu", ["a"], ["y"], name="r2")]
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", [x], [y])), str(path))
    return path


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> dict[str, Path]:
    """Valid inputs every corpus mutates: models, plan files (a shared-bytes plan of ResNet-8,
    a spill plan, a TFLite plan) and an inputs file."""
    d = tmp_path_factory.mktemp("robust")
    files: dict[str, Path] = {"dir": d, "r8_model": zoo_file("resnet8")}
    files["r8_plan"] = d / "r8.json"
    assert main(["plan", "resnet8", "--solver", "greedy", "--quiet", "-o", str(files["r8_plan"])]) == 0
    files["spill_plan"] = d / "spill.json"
    assert (
        main(
            [
                "plan",
                "sp:12:0",
                "--budget",
                "17000",  # the no-spill arena is 19,404 B
                "--solver",
                "spill-belady",
                "--quiet",
                "-o",
                str(files["spill_plan"]),
            ]
        )
        == 0
    )
    sine = zoo_file("sine_float")
    if sine is not None:
        files["sine_model"], files["sine_plan"] = sine, d / "sine.json"
        assert main(["plan", "sine_float", "--solver", "greedy", "--quiet", "-o", str(files["sine_plan"])]) == 0
    files["relu"] = relu_chain(d / "relu.onnx")
    files["inputs"] = d / "in.npz"
    np.savez(files["inputs"], input=np.zeros((1, 3, 32, 32), np.float32))
    return files


# -- 1. model files: truncations and byte flips -------------------------------------------------
def model_mutations(base: dict[str, Path]) -> list[Case]:
    d = base["dir"] / "models"
    d.mkdir(exist_ok=True)
    rng = random.Random(14)
    cases = []
    models = [
        ("resnet8", "onnx"),
        ("attacut-c", "onnx"),
        ("silero_vad_openvino_16k", "onnx"),
        ("sine_float", "tflite"),
        ("alexa", "tflite"),
    ]
    for name, fmt in models:
        src = zoo_file(name)
        if src is None:
            continue
        data = src.read_bytes()
        variants: list[tuple[str, bytes, frozenset[int]]] = []
        for frac in (0.0, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9):
            variants.append((f"trunc{frac}", data[: int(len(data) * frac)], frozenset({2})))
        for tail in (1, 7):  # the very end may be padding: a valid model is possible
            variants.append((f"trunc-{tail}", data[:-tail], frozenset({0, 1, 2})))
        for k in range(24):
            pos = rng.randrange(len(data))
            flipped = bytearray(data)
            flipped[pos] = (flipped[pos] + rng.randrange(1, 256)) % 256
            variants.append((f"flip{k}@{pos}", bytes(flipped), frozenset({0, 1, 2})))
        for label, blob, codes in variants:
            f = d / f"{name}-{label}.{fmt}"
            f.write_bytes(blob)
            out = d / f"{name}-{label}.plan.json"
            argv = ["plan", str(f), "--solver", "greedy", "--quiet", "-o", str(out)]
            if fmt == "onnx" and label.startswith("flip") and int(label[4:].split("@")[0]) < 3:
                argv = ["plan", str(f), "--time-limit", "2", "--quiet", "-o", str(out)]  # auto, fused
            cases.append(Case(f"plan {f.name}", argv, codes, writes=out))
            if name == "resnet8" and label.startswith("flip") and int(label[4:].split("@")[0]) < 4:
                run = ["run", str(f), str(base["r8_plan"])]  # another file than the plan's: refused
                cases.append(Case(f"run {f.name}", run, frozenset({2})))
    return cases


# -- 2. semantically broken ONNX graphs ---------------------------------------------------------------
def _vi(name, shape, t=F):
    return helper.make_tensor_value_info(name, t, shape)


def broken_graphs(d: Path) -> list[tuple[str, onnx.ModelProto]]:
    x, y = _vi("x", [1, 4]), _vi("y", [1, 4])

    def model(nodes, inputs=None, outputs=None, inits=(), opset=17, **kw):
        g = helper.make_graph(
            nodes, "g", inputs if inputs is not None else [x], outputs if outputs is not None else [y], list(inits)
        )
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], **kw)

    relu = helper.make_node
    w5 = numpy_helper.from_array(np.ones((1, 5), np.float32), "w5")
    return [
        ("cycle", model([relu("Add", ["x", "b"], ["a"]), relu("Relu", ["a"], ["b"]), relu("Relu", ["a"], ["y"])])),
        ("undefined-input", model([relu("Add", ["x", "ghost"], ["y"])])),
        ("two-producers", model([relu("Relu", ["x"], ["y"]), relu("Sigmoid", ["x"], ["y"])])),
        ("no-nodes", model([], outputs=[x])),
        ("no-outputs", model([relu("Relu", ["x"], ["y"])], outputs=[])),
        ("output-never-produced", model([relu("Relu", ["x"], ["a"])])),
        ("self-loop", model([relu("Add", ["x", "y"], ["y"])])),
        (
            "string-input",
            model(
                [relu("Identity", ["s"], ["y"])],
                inputs=[_vi("s", [1], TensorProto.STRING)],
                outputs=[_vi("y", [1], TensorProto.STRING)],
            ),
        ),
        (
            "dynamic-unpinned",
            model([relu("Relu", ["x"], ["y"])], inputs=[_vi("x", ["N", 4])], outputs=[_vi("y", ["N", 4])]),
        ),
        ("negative-dim", model([relu("Relu", ["x"], ["y"])], inputs=[_vi("x", [1, -5])])),
        ("no-input-shape", model([relu("Relu", ["x"], ["y"])], inputs=[helper.make_tensor_value_info("x", F, None)])),
        ("opset-999", model([relu("Relu", ["x"], ["y"])], opset=999)),
        ("opset-0", model([relu("Relu", ["x"], ["y"])], opset=0)),
        ("duplicate-node-names", model([relu("Relu", ["x"], ["a"], name="n"), relu("Relu", ["a"], ["y"], name="n")])),
        ("unknown-op", model([relu("NoSuchOp", ["x"], ["y"])])),
        ("wrong-arity", model([relu("Relu", ["x", "x"], ["y"])])),
        ("shape-clash", model([relu("Add", ["x", "w5"], ["y"])], inits=[w5])),
        ("type-clash", model([relu("Add", ["x", "i"], ["y"])], inputs=[x, _vi("i", [1, 4], TensorProto.INT64)])),
        (
            "overwrites-input",
            model([relu("Relu", ["y"], ["x"]), relu("Relu", ["x"], ["y"])], inputs=[x, _vi("y", [1, 4])]),
        ),
        (
            "sequence-input",
            model([relu("Identity", ["q"], ["y"])], inputs=[helper.make_tensor_sequence_value_info("q", F, [1])]),
        ),
        (
            "huge-shape",
            model([relu("Relu", ["x"], ["y"])], inputs=[_vi("x", [2**40, 2**40])], outputs=[_vi("y", [2**40, 2**40])]),
        ),
        ("ir-version-99", model([relu("Relu", ["x"], ["y"])], ir_version=99)),
    ]


def _external_data_missing(d: Path) -> Path:
    x, y = _vi("x", [1, 4]), _vi("y", [1, 4])
    w = numpy_helper.from_array(np.ones((1, 4), np.float32), "w")
    m = helper.make_model(helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g", [x], [y], [w]))
    p = d / "external.onnx"
    onnx.save(m, str(p), save_as_external_data=True, location="external.data", size_threshold=0)
    (d / "external.data").unlink()
    return p


def graph_cases(base: dict[str, Path]) -> list[Case]:
    d = base["dir"] / "graphs"
    d.mkdir(exist_ok=True)
    cases = []
    for name, m in broken_graphs(d):
        p = d / f"{name}.onnx"
        p.write_bytes(m.SerializeToString())
        cases.append(Case(f"compare {name}", ["compare", str(p), "--quiet", "--time-limit", "1"], frozenset({2})))
        cases.append(
            Case(
                f"plan {name}",
                ["plan", str(p), "--quiet", "--time-limit", "2", "-o", str(d / "p.json")],
                frozenset({2}),
            )
        )
    p = _external_data_missing(d)
    cases.append(
        Case("plan external-data-missing", ["plan", str(p), "--quiet", "-o", str(d / "p.json")], frozenset({2}))
    )
    return cases


# -- 3. bad values of every CLI option -----------------------------------------------------------------
def option_cases(base: dict[str, Path]) -> list[Case]:
    d = base["dir"] / "options"
    d.mkdir(exist_ok=True)
    out = str(d / "p.json")
    plan = ["plan", "resnet8", "--solver", "greedy", "--quiet", "-o", out]
    bad_plan_opts = [
        ["--target", "nosuch"],
        ["--target", ""],
        ["--budget", "0"],
        ["--budget", "-5"],
        ["--budget", "abc"],
        ["--budget", "1.5"],
        ["--budget", "1e3"],
        ["--budget", "nan"],
        ["--budget", "inf"],
        ["--budget", ""],
        ["--budget", "9" * 40 + "GiB"],
        ["--weights", "bogus"],
        ["--alignment", "0"],
        ["--alignment", "-1"],
        ["--alignment", "abc"],
        ["--alignment", "1.5"],
        ["--alignment", str(2**40)],
        ["--lifetimes", "bogus"],
        ["--share", "bogus"],
        ["--fuse", "bogus"],
        ["--solver", "nosuch"],
        ["--solver", ""],
        ["--time-limit", "abc"],
        ["--time-limit", ""],
        ["--workers", "0"],
        ["--workers", "-1"],
        ["--workers", "1.5"],
        ["--workers", "abc"],
        ["--workers", "100000"],
        ["--seed", "-1"],
        ["--seed", "abc"],
        ["--seed", "1.5"],
        ["--seed", str(2**40)],
        ["--objective", "bogus"],
        ["-o", str(d / "nodir" / "x.json")],
        ["-o", str(d)],
        ["--input-shape", "input"],
        ["--input-shape", "input="],
        ["--input-shape", "=1x3x32x32"],
        ["--input-shape", "input=1xax32x32"],
        ["--input-shape", "input=0x3x32x32"],
        ["--input-shape", "input=1x3x32"],
        ["--input-shape", "nosuch=1x3x32x32"],
        ["--input-shape", "input=-1x3x32x32"],
        ["--input-shape", "input=2x3x32x32"],
        ["--dim", "N"],
        ["--dim", "N=0"],
        ["--dim", "N=-1"],
        ["--dim", "=1"],
        ["--dim", "N=abc"],
        ["--dim", "nosuch=1"],
        ["--input-value", "x"],
        ["--input-value", "x="],
        ["--input-value", "=1"],
        ["--input-value", "input=abc"],
        ["--input-value", "nosuch=1"],
        ["--input-value", "input=nan"],
        ["--input-value", "input=1,,2"],
        ["-o", "/dev/full"] if Path("/dev/full").exists() else ["-o", str(d)],
        ["--bogus-flag"],
        ["extra-positional"],
    ]
    cases = [Case(f"plan {' '.join(o)}", plan + o, frozenset({2})) for o in bad_plan_opts]
    models = [
        "nosuch",
        "",
        str(d),
        str(d / "x.txt"),
        "chain:0",
        "chain:abc",
        str(d / "missing.onnx"),
        str(d / "missing.tflite"),
    ]
    (d / "x.txt").write_text("hello")
    cases += [Case(f"plan model {m!r}", ["plan", m, "--quiet", "-o", out], frozenset({2})) for m in models]
    infeasible = [
        ["--budget", "1"],
        ["--budget", "1KiB", "--target", "stm32h743"],
        ["--budget", "100KiB", "--target", "stm32f746"],
    ]
    cases += [Case(f"plan {' '.join(o)}", plan + o, frozenset({1})) for o in infeasible]
    cases += [
        Case("plan sine --input-shape", ["plan", "sine_float", "--input-shape", "x=1x1", "--quiet"], frozenset({2})),
        Case("plan sine --input-value", ["plan", "sine_float", "--input-value", "x=1", "--quiet"], frozenset({2})),
        Case("plan gen --dim", ["plan", "chain:3", "--dim", "N=1", "--quiet", "-o", out], frozenset({2})),
        Case("plan gen --fuse", ["plan", "chain:3", "--fuse", "onnxruntime", "--quiet", "-o", out], frozenset({2})),
    ]
    rp, inputs = str(base["r8_plan"]), base["inputs"]
    bad_npz = d / "bad.npz"
    bad_npz.write_bytes(inputs.read_bytes()[:64])
    wrong_name, wrong_shape, wrong_dtype, one_array = d / "name.npz", d / "shape.npz", d / "dtype.npz", d / "one.npy"
    np.savez(wrong_name, nosuch=np.zeros((1, 3, 32, 32), np.float32))
    np.savez(wrong_shape, input=np.zeros((1, 3, 16, 16), np.float32))
    np.savez(wrong_dtype, input=np.full((1, 3, 32, 32), "a"))
    np.save(one_array, np.zeros((1, 3, 32, 32), np.float32))
    run = ["run", "resnet8", rp]
    bad_run_opts = [
        ["--inputs", str(d / "none.npz")],
        ["--inputs", str(bad_npz)],
        ["--inputs", str(wrong_name)],
        ["--inputs", str(wrong_shape)],
        ["--inputs", str(wrong_dtype)],
        ["--inputs", str(one_array)],
        ["--inputs", str(base["r8_plan"])],
        ["--inputs", str(d)],
        ["--seed", "-1"],
        ["--seed", "abc"],
        ["--rtol", "nan"],
        ["--rtol", "inf"],
        ["--rtol", "-1"],
        ["--rtol", "abc"],
        ["--atol", "nan"],
        ["--atol", "-inf"],
        ["--invocations", "0"],
        ["--invocations", "abc"],
        ["--input-shape", "input=1x3x16x16"],
        ["--dim", "nosuch=1"],
        ["--fuse", "bogus"],
        ["--input-value", "input=1"],
        ["--input-value", "bad"],
    ]
    cases += [Case(f"run {' '.join(o)}", run + o, frozenset({2})) for o in bad_run_opts]
    cases += [
        Case("run model nosuch", ["run", "nosuch", rp], frozenset({2})),
        Case("run model empty", ["run", "", rp], frozenset({2})),
        Case("run plan nosuch", ["run", "resnet8", str(d / "none.json")], frozenset({2})),
        Case("run other model", ["run", str(base["relu"]), rp], frozenset({2})),
        Case("run model is a plan", ["run", rp, rp], frozenset({2})),
        Case("run model dir", ["run", str(d), rp], frozenset({2})),
    ]
    if "sine_plan" in base:
        sp = str(base["sine_plan"])
        cases += [
            Case("run tflite --inputs", ["run", "sine_float", sp, "--inputs", str(inputs)], frozenset({2})),
            Case("run tflite --dim", ["run", "sine_float", sp, "--dim", "N=1"], frozenset({2})),
            Case("run tflite with an onnx plan", ["run", "sine_float", rp], frozenset({2})),
            Case(
                "export tflite onnx model",
                ["export", sp, "-f", "tflite", "--model", "resnet8", "-o", str(d / "o.tflite")],
                frozenset({2}),
            ),
        ]
    exp = ["export", rp]
    bad_export = [
        ["-f", "bogus", "-o", str(d / "o")],
        ["-f", "tflite", "-o", str(d / "o")],
        ["-f", "tflite", "--model", "nosuch", "-o", str(d / "o")],
        ["-f", "tflite", "--model", "resnet8", "-o", str(d / "o")],
        ["-o", str(d)],
        ["-o", str(d / "nodir" / "o.json")],
        ["-f", "c", "--fold-fp16", "-o", str(d / "o.h")],
        ["-f", "json", "--model", "sine_float", "-o", str(d / "o.json")],
        [],
        ["-f", "c", "--prefix", "X", "-o", str(d / "o.h")],
    ]
    cases += [Case(f"export {' '.join(o)}", exp + o, frozenset({2})) for o in bad_export]
    cases += [Case("export plan nosuch", ["export", str(d / "none.json"), "-o", str(d / "o.json")], frozenset({2}))]
    compare = ["compare", "resnet8", "--quiet", "--time-limit", "1"]
    bad_compare = [
        ["--solvers", "nosuch"],
        ["--solvers", ""],
        ["--solvers", "greedy,,dfs"],
        ["--budgets", ""],
        ["--budgets", "a,b"],
        ["--budgets", "0"],
        ["--budgets", ","],
        ["--csv", str(d / "nodir" / "x.csv")],
        ["--plot", str(d)],
        ["--workers", "0"],
        ["--budget", "abc"],
    ]
    cases += [Case(f"compare {' '.join(o)}", compare + o, frozenset({2})) for o in bad_compare]
    cases += [Case("compare model nosuch", ["compare", "nosuch", "--quiet"], frozenset({2}))]
    cases += [
        Case("show nosuch", ["show", str(d / "none.json")], frozenset({2})),
        Case("show dir", ["show", str(d)], frozenset({2})),
        Case("show empty", ["show", ""], frozenset({2})),
        Case("show model", ["show", str(base["relu"])], frozenset({2})),
        Case("show two plans", ["show", rp, rp], frozenset({2})),
        Case("solvers extra", ["solvers", "extra"], frozenset({2})),
        Case("no command", [], frozenset({2})),
        Case("--debug only", ["--debug"], frozenset({2})),
        Case("unknown command", ["bogus"], frozenset({2})),
        Case("unknown global flag", ["--bogus", "plan"], frozenset({2})),
    ]
    return cases


# -- 4. corrupted plan files -------------------------------------------------------------------------
def _set(path: tuple, value) -> Callable[[dict], None]:
    def edit(d: dict) -> None:
        node = d
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value

    return edit


def _delete(path: tuple) -> Callable[[dict], None]:
    def edit(d: dict) -> None:
        node = d
        for k in path[:-1]:
            node = node[k]
        del node[path[-1]]

    return edit


def _first(d: dict, kind: str) -> int:
    return next(i for i, s in enumerate(d["stages"]) if s["stage"] == kind and (kind != "R" or s["offsets"]))


def _edit_offset(value) -> Callable[[dict], None]:
    def edit(d: dict) -> None:
        r = d["stages"][_first(d, "R")]
        k = next(iter(r["offsets"]))
        r["offsets"][k] = value(r["offsets"][k]) if callable(value) else value

    return edit


def _stages(fn) -> Callable[[dict], None]:
    def edit(d: dict) -> None:
        d["stages"] = fn(d["stages"])

    return edit


def _metric(key: str, delta: int) -> Callable[[dict], None]:
    def edit(d: dict) -> None:
        d["metrics"][key] += delta

    return edit


def _tensor(field_: str, value) -> Callable[[dict], None]:
    def edit(d: dict) -> None:
        t = next(t for t in d["tensors"] if t["kind"] == "activation" and t["bytes"])
        t[field_] = value

    return edit


def plan_mutations() -> list[tuple[str, Callable[[dict], None]]]:
    """Edits that every reader must refuse (structure, types, rules, metrics)."""
    muts: list[tuple[str, Callable[[dict], None]]] = []
    for key in ("format", "version", "model", "target", "tensors", "ops", "stages", "metrics", "solver"):
        muts.append((f"no-{key}", _delete((key,))))
    muts += [
        ("version-99", _set(("version",), 99)),
        ("version-str", _set(("version",), "1")),
        ("version-true", _set(("version",), True)),
        ("format-other", _set(("format",), "other")),
        ("target-str", _set(("target",), "x")),
        ("alignment-str", _set(("target", "alignment"), "16")),
        ("alignment-0", _set(("target", "alignment"), 0)),
        ("alignment-float", _set(("target", "alignment"), 16.0)),
        ("budget-1", _set(("target", "l1_bytes"), 1)),
        ("budget-neg", _set(("target", "l1_bytes"), -1)),
        ("weights-bogus", _set(("target", "weights"), "bogus")),
        ("lifetimes-bogus", _set(("target", "lifetimes"), "bogus")),
        ("llb-neg", _set(("target", "llb_bytes"), -1)),
        ("share-bogus", _set(("target", "share"), "bogus")),
        ("target-name-int", _set(("target", "name"), 3)),
        ("tensors-dict", _set(("tensors",), {})),
        ("ops-str", _set(("ops",), "x")),
        ("stages-dict", _set(("stages",), {})),
        ("tensor-bytes-str", _tensor("bytes", "64")),
        ("tensor-bytes-neg", _tensor("bytes", -1)),
        ("tensor-bytes-huge", _tensor("bytes", 2**63)),
        ("tensor-bytes-2^60", _tensor("bytes", 2**60)),
        ("tensor-kind-bogus", _tensor("kind", "bogus")),
        ("tensor-kind-input", _tensor("kind", "input")),
        ("tensor-name-int", _tensor("name", 5)),
        ("tensor-shape-str", _tensor("shape", "1x2")),
        ("tensor-dtype-int", _tensor("dtype", 7)),
        ("tensor-dup", lambda d: d["tensors"].append(dict(d["tensors"][0]))),
        (
            "tensor-dropped",
            lambda d: d["tensors"].pop(next(i for i, t in enumerate(d["tensors"]) if t["kind"] == "activation")),
        ),
        ("op-dropped", lambda d: d["ops"].pop(0)),
        ("op-renamed", lambda d: d["ops"][0].update(name="renamed")),
        ("op-type-int", lambda d: d["ops"][0].update(type=1)),
        ("op-inputs-str", lambda d: d["ops"][0].update(inputs="x")),
        ("op-input-int", lambda d: d["ops"][0].update(inputs=[1])),
        ("offset-plus-1", _edit_offset(lambda v: v + 1)),
        ("offset-float", _edit_offset(1e30)),
        ("offset-2^63", _edit_offset(2**63)),
        ("offset-neg", _edit_offset(-16)),
        ("offset-str", _edit_offset("0")),
        ("offset-null", _edit_offset(None)),
        ("offset-far", _edit_offset(2**62)),
        ("stage-dropped", _stages(lambda s: s[1:])),
        ("stage-last-dropped", _stages(lambda s: s[:-1])),
        ("stage-duplicated", _stages(lambda s: s[:2] + s[1:])),
        ("stages-reversed", _stages(lambda s: s[::-1])),
        ("stage-kind-x", _stages(lambda s: [{**s[0], "stage": "X"}] + s[1:])),
        ("stage-no-tensor", _stages(lambda s: [{"stage": "F"}] + s)),
        ("stage-list", _stages(lambda s: [[]] + s)),
        ("stages-empty", _stages(lambda s: [])),
        (
            "all-offsets-0",
            _stages(
                lambda s: [{**x, "offsets": dict.fromkeys(x["offsets"], 0)} if x["stage"] == "R" else x for x in s]
            ),
        ),
        ("unknown-op-stage", _stages(lambda s: s + [{"stage": "R", "op": "ghost", "offsets": {}}])),
        ("status-bogus", _set(("solver", "status"), "bogus")),
        ("objective-bogus", _set(("solver", "objective"), "bogus")),
        ("wall-neg", _set(("solver", "wall_s"), -1)),
        ("wall-str", _set(("solver", "wall_s"), "x")),
        ("options-str", _set(("solver", "options"), "x")),
        ("bound-neg", _set(("solver", "bound"), -1)),
        ("model-str", _set(("model",), "x")),
        ("sha-int", _set(("model", "sha256"), 5)),
        ("metrics-str", _set(("metrics",), "x")),
        ("arena-str", _set(("metrics", "arena_bytes"), "1")),
        ("arena-float", _set(("metrics", "arena_bytes"), 1.5)),
        ("no-arena", _delete(("metrics", "arena_bytes"))),
    ]
    for key in (
        "arena_bytes",
        "peak_l1_bytes",
        "traffic_bytes",
        "compulsory_traffic_bytes",
        "steps",
        "loaded_bytes",
        "stored_bytes",
        "llb_peak_bytes",
    ):
        muts.append((f"{key}+1", _metric(key, 1)))
    return muts


def _with_shares(d: dict) -> dict | None:
    """A stage that declares shares, for the share mutations (v2 plans only)."""
    return next((s for s in d["stages"] if s.get("shares")), None) if d.get("version") == 2 else None


def share_mutations() -> list[tuple[str, Callable[[dict], None]]]:
    def edit(fn):
        def run(d):
            s = _with_shares(d)
            fn(s)

        return run

    return [
        ("transforms-str", _set(("transforms",), "x")),  # v2 only: v1 files have no transforms
        ("transforms-nokind", _set(("transforms",), [{"x": 1}])),
        ("shares-str", edit(lambda s: s.update(shares="x"))),
        ("share-kind-bogus", edit(lambda s: s["shares"][0].update(kind="bogus"))),
        ("share-at-neg", edit(lambda s: s["shares"][0].update(at=-1))),
        ("share-at-16", edit(lambda s: s["shares"][0].update(at=s["shares"][0]["at"] + 16))),
        ("share-in-ghost", edit(lambda s: s["shares"][0].update({"in": "ghost"}))),
    ]


def text_mutations(text: str, rng: random.Random) -> list[tuple[str, str, frozenset[int]]]:
    """Truncations and byte flips of the plan file's text; a flip may leave a valid plan."""
    out = [("empty", "", frozenset({2})), ("not-json", "{", frozenset({2})), ("list", "[]", frozenset({2}))]
    out += [("nan-metric", text.replace('"arena_bytes": ', '"arena_bytes": NaN, "x": ', 1), frozenset({2}))]
    out += [("deep", "[" * 50_000 + "]" * 50_000, frozenset({2}))]
    for frac in (0.1, 0.5, 0.9, 0.999):
        out.append((f"trunc{frac}", text[: int(len(text) * frac)], frozenset({2})))
    for k in range(10):
        pos = rng.randrange(len(text))
        ch = rng.choice('0123456789{}[]",:aZ ')
        out.append((f"flip{k}", text[:pos] + ch + text[pos + 1 :], frozenset({0, 1, 2})))
    return out


def plan_cases(base: dict[str, Path]) -> list[Case]:
    d = base["dir"] / "plans"
    d.mkdir(exist_ok=True)
    rng = random.Random(41)
    cases: list[Case] = []
    bases = [("r8", base["r8_plan"]), ("spill", base["spill_plan"])]
    if "sine_plan" in base:
        bases.append(("sine", base["sine_plan"]))
    for tag, src in bases:
        text = src.read_text()
        original = json.loads(text)
        muts = plan_mutations() + (share_mutations() if _with_shares(original) else [])
        files = []
        for name, edit in muts:
            doc = json.loads(text)
            try:
                edit(doc)
            except (StopIteration, KeyError, IndexError):
                continue  # the mutation does not apply to this plan
            f = d / f"{tag}-{name}.json"
            f.write_text(json.dumps(doc))
            files.append((name, f, True, frozenset({1, 2})))
        for name, t, codes in text_mutations(text, rng):
            f = d / f"{tag}-text-{name}.json"
            f.write_text(t)
            files.append((f"text-{name}", f, codes == frozenset({2}), codes))
        for name, f, refuse, codes in files:
            strict = codes - {1} if refuse else codes
            cases.append(Case(f"show {tag}-{name}", ["show", str(f)], codes, must_refuse=refuse))
            cases.append(
                Case(
                    f"export-c {tag}-{name}",
                    ["export", str(f), "-f", "c", "-o", str(d / "o.h")],
                    strict,
                    must_refuse=refuse,
                )
            )
            if tag == "r8":
                cases.append(
                    Case(
                        f"export-json {tag}-{name}",
                        ["export", str(f), "-o", str(d / "o.json")],
                        strict,
                        must_refuse=refuse,
                    )
                )
                if refuse:
                    cases.append(
                        Case(f"run {tag}-{name}", ["run", "resnet8", str(f)], frozenset({2}), must_refuse=True)
                    )
            if tag == "sine":
                argv = ["export", str(f), "-f", "tflite", "--model", "sine_float", "-o", str(d / "o.tflite")]
                cases.append(Case(f"export-tflite {tag}-{name}", argv, strict, must_refuse=refuse))
    return cases


# -- the corpus tests ----------------------------------------------------------------------------------


def test_malformed_inputs(base, record_property):
    """Model files, broken graphs, bad CLI options and corrupted plans: every case one clear
    line with the right exit code, within its bound, no plan accepted unchecked."""
    tally = Tally()
    run_corpus(model_mutations(base) + graph_cases(base) + option_cases(base), tally)
    d = tally.report(record_property)
    tally.assert_clean()
    assert d["cases"] > 240


def test_corrupted_plan_files(base, record_property):
    tally = Tally()
    run_corpus(plan_cases(base), tally)
    d = tally.report(record_property)
    assert d["cases"] > 300
    tally.assert_clean()


def test_the_real_entry_point_in_a_subprocess(base, record_property):
    """What users run (`python -m planner`), where stderr is the process's: one line, exit 2."""
    import subprocess
    import sys

    tally = Tally()
    for argv in (
        ["plan", "--workers", "1.5"],
        ["show", str(base["relu"])],
        ["run", "resnet8", str(base["r8_plan"]), "--rtol", "nan"],
    ):
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "planner", *argv], capture_output=True, text=True, timeout=120)
        case = Case(" ".join(argv), argv, frozenset({2}))
        tally.add(case.name, judge(case, p.returncode, p.stderr, time.perf_counter() - t0), p.stderr)
    tally.report(record_property)
    tally.assert_clean()


# -- 5. end to end: random ONNX DAGs, planned, re-checked, run against onnxruntime -----------------
def random_onnx_dag(path: Path, seed: int, n_ops: int) -> Path:
    """A random DAG of NCHW float ops (element-wise, Add/Mul, Concat, Split and Slice of
    channels, 1x1 Conv, MaxPool, Transpose, Reshape) whose dead ends are graph outputs."""
    rng = random.Random(seed)
    nprng = np.random.default_rng(seed)
    c, h, w = rng.randint(1, 4), rng.randint(2, 5), rng.randint(2, 5)
    shapes: dict[str, tuple[int, int, int]] = {"x": (c, h, w)}
    inputs = [helper.make_tensor_value_info("x", F, [1, c, h, w])]
    if rng.random() < 0.3:
        shapes["x2"] = (c, h, w)
        inputs.append(helper.make_tensor_value_info("x2", F, [1, c, h, w]))
    nodes, inits, used = [], [], set()

    def const(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def new(shape):
        name = f"t{len(shapes)}"
        shapes[name] = shape
        return name

    for k in range(n_ops):
        names = list(shapes)
        fresh = [n for n in names if n not in used] or names
        a = rng.choice(fresh if rng.random() < 0.7 else names)
        ca, ha, wa = shapes[a]
        kind = rng.choice(["unary", "binary", "concat", "split", "slice", "conv", "pool", "transpose", "reshape"])
        same = [n for n in names if shapes[n] == shapes[a] and n != a]
        if kind == "binary":
            b = (
                rng.choice(same)
                if same and rng.random() < 0.7
                else const(f"c{k}", nprng.standard_normal((1, ca, ha, wa)).astype(np.float32))
            )
            outs, op = [new((ca, ha, wa))], helper.make_node(rng.choice(["Add", "Mul", "Sub"]), [a, b], [])
            used.add(b)
        elif kind == "concat" and (cands := [n for n in names if shapes[n][1:] == (ha, wa)]):
            b = rng.choice(cands)
            outs, op = [new((ca + shapes[b][0], ha, wa))], helper.make_node("Concat", [a, b], [], axis=1)
            used.add(b)
        elif kind == "split" and ca >= 2:
            s = rng.randint(1, ca - 1)
            outs = [new((s, ha, wa)), new((ca - s, ha, wa))]
            op = helper.make_node("Split", [a, const(f"s{k}", np.array([s, ca - s], np.int64))], [], axis=1)
        elif kind == "slice" and ca >= 2:
            lo = rng.randint(0, ca - 1)
            hi = rng.randint(lo + 1, ca)
            args = [
                const(f"b{k}", np.array([lo], np.int64)),
                const(f"e{k}", np.array([hi], np.int64)),
                const(f"a{k}", np.array([1], np.int64)),
            ]
            outs, op = [new((hi - lo, ha, wa))], helper.make_node("Slice", [a, *args], [])
        elif kind == "conv":
            co = rng.randint(1, 4)
            wt = const(f"w{k}", (nprng.standard_normal((co, ca, 1, 1)) / np.sqrt(ca)).astype(np.float32))
            outs, op = (
                [new((co, ha, wa))],
                helper.make_node("Conv", [a, wt, const(f"bias{k}", np.zeros(co, np.float32))], []),
            )
        elif kind == "pool":
            outs, op = [new((ca, ha, wa))], helper.make_node("MaxPool", [a], [], kernel_shape=[2, 2], pads=[0, 0, 1, 1])
        elif kind == "transpose":
            outs, op = [new((ca, wa, ha))], helper.make_node("Transpose", [a], [], perm=[0, 1, 3, 2])
        elif kind == "reshape":
            outs = [new((ca * ha, 1, wa))]
            op = helper.make_node("Reshape", [a, const(f"r{k}", np.array([1, ca * ha, 1, wa], np.int64))], [])
        else:
            outs, op = (
                [new((ca, ha, wa))],
                helper.make_node(rng.choice(["Relu", "Sigmoid", "Tanh", "Neg", "Abs"]), [a], []),
            )
        op.output.extend(outs)
        op.name = f"n{k}"
        nodes.append(op)
        used.add(a)
    consumed = {i for n in nodes for i in n.input}
    outputs = [n for n in shapes if n not in consumed and n not in ("x", "x2")]
    if "x2" in shapes and "x2" not in consumed:
        inputs = inputs[:1]
    outs = [helper.make_tensor_value_info(n, F, [1, *shapes[n]]) for n in outputs]
    g = helper.make_graph(nodes, f"rand{seed}", inputs, outs, inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _plan_and_run(tally: Tally, model: Path, plan: Path, name: str, extra: list[str]) -> dict | None:
    """Plan (exit 0, or 1 where the budget is infeasible), re-check, run vs onnxruntime."""
    case = Case(
        name,
        ["plan", str(model), "--quiet", "--json", "--time-limit", "2", "-o", str(plan), *extra],
        frozenset({0, 1}),
        writes=plan,
    )
    code, out, err, seconds = run_cli(case.argv, case.bound_s)
    kinds = judge(case, code, err, seconds)
    if code != 0 or kinds:
        tally.add(name, kinds, f"plan exit {code}: {err.strip()}")
        return None
    summary = json.loads(out)
    tally.note("spill plans" if summary["spill_traffic_bytes"] else "no-spill plans")
    run = Case(f"run {name}", ["run", str(model), str(plan), "--json"], frozenset({0}))
    code, out, err, seconds = run_cli(run.argv, run.bound_s)
    kinds = judge(run, code, err, seconds)
    if code in (0, 1) and out:
        report = json.loads(out)
        if not report["ok"]:
            kinds.append("mismatch")
    tally.add(name, kinds, f"run exit {code}: {err.strip()} {out[:300]}")
    return summary


UNBOUNDED_SOLVERS = ["auto", "greedy", "given-firstfit", "best", "dfs"]


def concat_of_two_branches(path: Path) -> Path:
    """x -> Relu -> a, x -> Neg -> b, c = Concat(a, b), y = Neg(c): the smallest model this
    suite found where a Concat's slots, under minimal lifetimes (both the CLI's defaults for
    ONNX), make the no-spill solvers return an invalid plan (solvers/storage.py with
    solvers/lifetimes.py; reported, not fixed here: solvers/ belongs to another change)."""
    x = helper.make_tensor_value_info("x", F, [1, 2, 2, 2])
    y = helper.make_tensor_value_info("y", F, None)
    nodes = [
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("Neg", ["x"], ["b"]),
        helper.make_node("Concat", ["a", "b"], ["c"], axis=1),
        helper.make_node("Neg", ["c"], ["y"]),
    ]
    onnx.save(
        helper.make_model(helper.make_graph(nodes, "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)]),
        str(path),
    )
    return path


@pytest.mark.parametrize("solver", ["auto", "greedy"])
def test_concat_slots_under_minimal_lifetimes(tmp_path, solver):
    """A two-branch concat with its slots shared, under minimal lifetimes (the ONNX defaults):
    the storage graph's allocation must not be taken for a lifetimes pseudo-op."""
    model = concat_of_two_branches(tmp_path / "concat.onnx")
    code, _, err, _ = run_cli(
        ["plan", str(model), "--solver", solver, "--fuse", "none", "--quiet", "-o", str(tmp_path / "p.json")]
    )
    assert code == 0, err


# the lifetimes and sharing a DAG is planned with, by seed (every combination is covered)
FLAG_SETS = [[], ["--lifetimes", "tflm"], ["--share", "views"], ["--lifetimes", "tflm", "--share", "none"]]
SPILL_SOLVERS = ["auto", "spill-belady", "spill-largest", "spill-cost"]


def test_random_onnx_dags_end_to_end(tmp_path, record_property):
    """Random ONNX DAGs, planned by several solvers unbounded and under a tight budget (spill
    plans), each plan re-checked and run in a numpy arena against onnxruntime."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    tally = Tally()

    @settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(
        seed=st.integers(0, 10**6),
        n_ops=st.integers(2, 12),
        solver=st.sampled_from(UNBOUNDED_SOLVERS),
        spiller=st.sampled_from(SPILL_SOLVERS),
        fuse=st.sampled_from(["none", "auto"]),
    )
    def prop(seed, n_ops, solver, spiller, fuse):
        model = random_onnx_dag(tmp_path / f"r{seed}.onnx", seed, n_ops)
        name = f"rand{seed}x{n_ops}"
        flags = FLAG_SETS[seed % len(FLAG_SETS)]
        label = f"{name} {solver} {' '.join(flags)}"
        free = _plan_and_run(
            tally, model, tmp_path / f"{name}.json", label, ["--solver", solver, "--fuse", fuse, *flags]
        )
        if free is None:
            return
        arena, lower = free["arena_bytes"], free["lower_bound_bytes"]
        budget = lower + (arena - lower) // 2
        extra = ["--solver", spiller, "--fuse", "none", "--budget", str(max(budget, 1)), *flags]
        if _plan_and_run(tally, model, tmp_path / f"{name}-tight.json", f"{label} {spiller} @{budget}", extra) is None:
            tally.note("infeasible budgets")

    prop()
    d = tally.report(record_property)
    tally.assert_clean()
    assert d["cases"] >= 40 and tally.info.get("spill plans", 0) > 0


def _random_topological(graph, rng: random.Random) -> list[str]:
    indeg = {o.name: graph.dag.in_degree(o.name) for o in graph.ops}
    ready = [o for o, k in indeg.items() if k == 0]
    order = []
    while ready:
        o = ready.pop(rng.randrange(len(ready)))
        order.append(o)
        for nxt in graph.dag.successors(o):
            indeg[nxt] -= 1
            if indeg[nxt] == 0:
                ready.append(nxt)
    return order


def test_random_reorders_of_tflite_models_run_in_tflm(tmp_path, record_property):
    """Random topological re-orders of the TFLite zoo models, laid out by TFLM's own first-fit
    and best-fit, exported into the model and run by TFLite Micro next to the original:
    identical outputs over several invocations, arena head within the plan."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from planner.graph import Graph
    from planner.models.zoo import load_model
    from planner.solvers.base import SolveOptions
    from planner.solvers.registry import get_solver
    from planner.target import get_target
    from planner.tflm_runtime import available

    if not available():
        pytest.skip("needs TFLite Micro: pip install --no-deps tflite-micro")
    models = [m for m in ("sine_float", "alexa", "hey_jarvis") if zoo_file(m) is not None]
    graphs = {m: load_model(m) for m in models}
    tally = Tally()

    @settings(max_examples=14, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(
        model=st.sampled_from(models),
        seed=st.integers(0, 10**6),
        layout=st.sampled_from(["given-firstfit", "given-bestfit"]),
    )
    def prop(model, seed, layout):
        g = graphs[model]
        order = _random_topological(g, random.Random(seed))
        reordered = Graph(g.name, g.tensors.values(), [g.op(o) for o in order], g.source)
        plan = get_solver(layout)(reordered, get_target("unbounded"), SolveOptions(time_limit=2))
        assert plan.order == order  # the plan keeps the random order
        path = tmp_path / f"{model}-{seed}.json"
        plan.write(path)
        case = Case(
            f"run {model} order {seed} {layout}",
            ["run", model, str(path), "--invocations", "3", "--json"],
            frozenset({0}),
        )
        code, out, err, seconds = run_cli(case.argv, case.bound_s)
        kinds = judge(case, code, err, seconds)
        if code in (0, 1) and out and not json.loads(out)["ok"]:
            kinds.append("mismatch")
        tally.add(case.name, kinds, f"exit {code}: {err.strip()} {out[:300]}")

    prop()
    tally.report(record_property)
    tally.assert_clean()
