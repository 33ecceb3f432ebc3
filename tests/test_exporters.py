"""The exporter registry (planner.export): one signature, found by name, one clear line
for a format nobody registered, and `planner export` as a thin shell over it."""

from __future__ import annotations

import pytest

from planner.cli import main
from planner.export import EXPORTERS, CannotExport, ExportReport, export, get_exporter, options
from planner.export.c_header import export_c_header
from planner.models.zoo import is_available, load_model, locate
from planner.plan import Plan, read_plan
from planner.simulate import PlanError
from planner.solvers.registry import get_solver
from planner.target import Target


@pytest.fixture(scope="module")
def plan() -> Plan:
    return get_solver("best")(load_model("chain:4"), Target("t", None))


def test_unknown_format_is_one_line_naming_the_known_ones(plan, tmp_path):
    with pytest.raises(CannotExport) as e:
        export(plan, "xml", tmp_path / "p.xml")
    assert str(e.value) == "unknown export format 'xml'; known: json, c, tflite, onnx"
    with pytest.raises(CannotExport, match="^unknown export format 'pdf'"):
        get_exporter("pdf")
    assert not (tmp_path / "p.xml").exists()


def test_builtin_exporters_and_their_options():
    assert list(EXPORTERS)[:3] == ["json", "c", "tflite"]
    assert options("json") == {}
    assert options("c") == {"names": False, "prefix": False}
    assert options("tflite") == {"model": True, "fold_fp16": False}  # model required
    assert options("onnx") == {"model": True}


def test_options_are_checked(plan, tmp_path):
    with pytest.raises(CannotExport, match=r"^the json exporter takes no option 'names' \(options: none\)$"):
        export(plan, "json", tmp_path / "p.json", names=False)
    with pytest.raises(
        CannotExport, match=r"^the tflite exporter needs the option 'model' \(options: model, fold_fp16\)$"
    ):
        export(plan, "tflite", tmp_path / "p.tflite")


def test_json_and_c_reports_say_what_was_written(plan, tmp_path):
    arena = plan.metrics.arena_bytes
    rep = export(plan, "json", tmp_path / "p.json")
    assert rep == ExportReport(tmp_path / "p.json", "json", f"plan file, arena {arena} B", {"arena_bytes": arena})
    assert [str(s) for s in read_plan(tmp_path / "p.json").stages] == [str(s) for s in plan.stages]
    n = len(plan.stages)
    rep = export(plan, "c", tmp_path / "p.h", names=False)
    assert rep.summary == f"C header, {n} steps, arena {arena} B" and rep.numbers == {"steps": n, "arena_bytes": arena}
    assert (tmp_path / "p.h").read_text() == export_c_header(plan, names=False)


def test_invalid_plan_is_refused_and_nothing_written(plan, tmp_path):
    bad = Plan(plan.graph, plan.target, plan.stages[1:], plan.solver)
    for fmt in ("json", "c"):
        with pytest.raises(PlanError):
            export(bad, fmt, tmp_path / f"bad.{fmt}")
        assert not (tmp_path / f"bad.{fmt}").exists()


def test_a_registered_exporter_is_found_by_name_and_offered_by_the_cli(plan, tmp_path, monkeypatch, capsys):
    def stages_txt(plan, out, *, names: bool = True) -> ExportReport:
        out.write_text("\n".join(str(s) for s in plan.stages) + "\n")
        return ExportReport(out, "txt", f"{len(plan.stages)} lines, names {names}", {"lines": len(plan.stages)})

    monkeypatch.setitem(EXPORTERS, "txt", stages_txt)
    assert get_exporter("txt") is stages_txt and options("txt") == {"names": False}
    pf = tmp_path / "p.json"
    plan.write(pf)
    out = tmp_path / "p.txt"
    capsys.readouterr()
    assert main(["export", str(pf), "--format", "txt", "--no-names", "-o", str(out)]) == 0
    assert capsys.readouterr().out == f"wrote {out} ({len(plan.stages)} lines, names False)\n"
    assert out.read_text().count("\n") == len(plan.stages)


def test_cli_lines_and_exit_codes(plan, tmp_path, capsys):
    pf = tmp_path / "p.json"
    plan.write(pf)
    arena, n = plan.metrics.arena_bytes, len(plan.stages)
    capsys.readouterr()
    assert main(["export", str(pf), "-o", str(tmp_path / "o.json")]) == 0
    assert capsys.readouterr().out == f"wrote {tmp_path / 'o.json'} (plan file, arena {arena} B)\n"
    assert main(["export", str(pf), "-f", "c", "-o", str(tmp_path / "o.h")]) == 0
    assert capsys.readouterr().out == f"wrote {tmp_path / 'o.h'} (C header, {n} steps, arena {arena} B)\n"
    assert main(["export", str(pf), "-f", "tflite", "-o", str(tmp_path / "o.tflite")]) == 2
    err = capsys.readouterr().err
    assert err == "planner: error: --format tflite needs --model ORIGINAL.tflite (the model the plan was made for)\n"
    assert main(["export", str(pf), "-f", "tflite", "--model", "resnet8", "-o", str(tmp_path / "o.tflite")]) == 2
    assert capsys.readouterr().err == "planner: error: --model resnet8: expected a .tflite file or a TFLite zoo name\n"
    assert main(["export", str(pf), "-o", str(tmp_path / "nodir" / "o.json")]) == 2
    err = capsys.readouterr().err
    nodir = tmp_path / "nodir"
    assert err == f"planner: error: cannot write output {nodir / 'o.json'}: folder {nodir} does not exist\n"


def test_tflite_adapter_reports_and_wraps_errors(tmp_path):
    if not is_available("sine_float"):
        pytest.skip("sine_float (tflite-micro wheel) not installed")
    path = locate("sine_float")
    p = get_solver("best")(load_model("sine_float"), Target("t", None))
    rep = export(p, "tflite", tmp_path / "o.tflite", model=path)
    assert rep.format == "tflite" and rep.path.is_file() and rep.numbers["planned"] == rep.details.planned
    assert rep.summary.startswith(f"op order + OfflineMemoryAllocation: {rep.details.planned} tensors planned, arena ")
    other = get_solver("best")(load_model("chain:4"), Target("t", None))
    with pytest.raises(CannotExport, match="^cannot export to TFLite: "):
        export(other, "tflite", tmp_path / "x.tflite", model=path)
    with pytest.raises(CannotExport, match="^cannot export to TFLite: cannot read "):
        export(p, "tflite", tmp_path / "x.tflite", model=tmp_path / "missing.tflite")
