"""Issue 15, a user's first hour: `-o -`, `run PLAN` alone, Ctrl-C, the story in the
summary, progress in words."""

from __future__ import annotations

import json

from planner.cli import main


def test_plan_dash_o_writes_the_plan_to_stdout_and_the_summary_to_stderr(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["plan", "chain:12", "--quiet", "--time-limit", "2", "-o", "-"]) == 0
    cap = capsys.readouterr()
    d = json.loads(cap.out)  # stdout is the plan alone
    assert d["format"] == "planner.plan" and d["metrics"]["arena_bytes"] > 0
    assert "arena" in cap.err and "written      stdout" in cap.err
    assert not (tmp_path / "-").exists()


def test_plan_dash_o_with_json_puts_the_summary_json_on_stderr(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["plan", "chain:12", "--json", "--time-limit", "2", "-o", "-"]) == 0
    cap = capsys.readouterr()
    plan, summary = json.loads(cap.out), json.loads(cap.err.splitlines()[0])
    assert plan["format"] == "planner.plan"
    assert summary["plan_path"] == "stdout" and summary["arena_bytes"] == plan["metrics"]["arena_bytes"]


def test_export_dash_o_writes_to_stdout(capsys, tmp_path):
    p = tmp_path / "p.json"
    assert main(["plan", "chain:12", "--quiet", "--time-limit", "2", "-o", str(p)]) == 0
    capsys.readouterr()
    assert main(["export", str(p), "-f", "c", "-o", "-"]) == 0
    cap = capsys.readouterr()
    assert cap.out.startswith("/* Memory plan for chain12")
    assert "wrote stdout" in cap.err
