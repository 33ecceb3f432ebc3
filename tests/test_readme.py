"""README's Python API example runs as written (a user copies it first)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def python_api_example() -> str:
    section = README.read_text().split("## Python API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the Python API section has one example"
    return blocks[0]


def test_python_api_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(python_api_example(), "README.md (Python API)", "exec"), {})
    out = capsys.readouterr().out
    assert (tmp_path / "resnet8.plan.json").is_file() and (tmp_path / "resnet8_plan.h").is_file()
    assert "C header" in out and "optimal" in out
