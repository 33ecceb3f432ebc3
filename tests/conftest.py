"""Shared pytest hooks: the robustness suite's counts in the terminal summary, and the
hypothesis profile.

tests/test_robustness.py records, per test, how many cases it ran and how many failed in
each way (`record_property("robustness", {...})`); the properties travel with the test
reports (also from pytest-xdist workers), and this hook prints them after the run."""

from __future__ import annotations

import os

from hypothesis import settings

# property tests draw the same cases on every run (CI included): a failing case fails every
# time instead of now and then; HYPOTHESIS_PROFILE=explore draws new ones
settings.register_profile("default", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def pytest_terminal_summary(terminalreporter):
    rows = []
    for key in ("passed", "failed"):
        for rep in terminalreporter.stats.get(key, []):
            for name, value in getattr(rep, "user_properties", []) or []:
                if name == "robustness" and getattr(rep, "when", "call") == "call":
                    rows.append((rep.nodeid.split("::")[-1], value))
    if not rows:
        return
    terminalreporter.section("robustness suite")
    total: dict[str, int] = {}
    for test, counts in sorted(rows):
        terminalreporter.write_line(f"{test}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        for k, v in counts.items():
            if isinstance(v, int):
                total[k] = total.get(k, 0) + v
    terminalreporter.write_line("total: " + ", ".join(f"{k} {v}" for k, v in total.items()))
