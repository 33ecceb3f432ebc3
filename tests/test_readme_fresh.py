"""README tells a newcomer the truth: on a fresh virtualenv made by README's first command
alone, every console command in README's code blocks runs and exits 0.

Slow (it installs the project and its dependencies from the package index into a new
venv); `.ci/run` runs it explicitly."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def first_command() -> str:
    """The set-up command under "Fresh machine" (the first sh block)."""
    return re.findall(r"```sh\n(.*?)```", README, flags=re.S)[0].strip()


def console_commands() -> list[str]:
    """Every `$ planner ...` line of README's console blocks, comments cut."""
    out = []
    for block in re.findall(r"```console\n(.*?)```", README, flags=re.S):
        block = re.sub(r"\\\n\s*", " ", block)  # a `\` continuation joins its next line
        for line in block.splitlines():
            if line.startswith("$ "):
                out.append(line[2:].split("  #")[0].split(" # ")[0].strip())
    return out


def test_readme_lists_console_commands():
    cmds = console_commands()
    assert cmds and all(c.startswith("planner ") for c in cmds)
    assert all(shlex.split(c) for c in cmds)  # every line parses as the shell would
    assert any(".tflite" in c or "nabu" in c for c in cmds) and any(c.startswith("planner report") for c in cmds)


@pytest.mark.slow
def test_every_readme_command_runs_on_a_fresh_venv(tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    bin_dir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "VIRTUAL_ENV": str(env_dir)}
    env.pop("PYTHONPATH", None)
    setup = first_command().replace("python3 ", f"{bin_dir / 'python'} ")
    p = subprocess.run(setup, shell=True, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    assert p.returncode == 0, f"README's first command failed: {p.stderr[-2000:]}"
    work = tmp_path / "work"
    work.mkdir()
    for cmd in console_commands():
        argv = [str(bin_dir / "planner"), *shlex.split(cmd)[1:]]
        r = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, f"`{cmd}` exited {r.returncode}: {r.stderr.strip()[-800:]}"
