"""Exceptions nobody can catch are reported with a real ``UnraisableHookArgs`` - in a plain
process too, where the default hook rejects anything else with a TypeError."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROGRAM = """
import {module} as m
m.{function}(ValueError("the client's bug"), "pywsk: exception in a completion routine", None)
print("still running")
"""


@pytest.mark.parametrize(
    ("module", "function"),
    [("pywsk._log", "report_unraisable")],
)
def test_reported_in_a_plain_process(module: str, function: str) -> None:
    finished = subprocess.run(
        [sys.executable, "-c", PROGRAM.format(module=module, function=function)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.strip() == "still running"
    assert "ValueError: the client's bug" in finished.stderr
    assert "pywsk: exception in a completion routine" in finished.stderr
    assert "TypeError" not in finished.stderr
