"""``pywsk driver run``: DriverEntry, DriverUnload, DbgPrint on stderr, the exit status for
success, a failing DriverEntry, a leak (named with its C line) and a stop; SIGTERM unloads."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

LIFECYCLE = Path(__file__).resolve().parent / "lifecycle.c"


def line_of(marker: str) -> int:
    for number, text in enumerate(LIFECYCLE.read_text().splitlines(), 1):
        if f"MARK: {marker}" in text:
            return number
    raise AssertionError(marker)


def run(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pywsk", "driver", "run", str(path), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("registry_path", "status"),
    [("ok", 0), ("fail", 1), ("leak", 5), ("stop", 4)],
)
def test_exit_status(built: Callable[[str], Path], registry_path: str, status: int) -> None:
    result = run(built("lifecycle"), "--once", "--registry-path", registry_path)
    assert result.returncode == status, result.stderr
    assert "lifecycle: entry at IRQL 0" in result.stderr
    assert ("lifecycle: unload" in result.stderr) == (registry_path in ("ok", "leak"))
    if registry_path == "leak":
        assert "pool block not freed: 32 bytes" in result.stderr
        assert f"{LIFECYCLE}:{line_of('leak')} in DriverEntry" in result.stderr
    if registry_path == "stop":
        assert "*** STOP" in result.stderr
        assert "bug check 0xE2" in result.stderr
        assert f"{LIFECYCLE}:{line_of('bug check')} in DriverEntry" in result.stderr


def test_a_call_and_its_status(built: Callable[[str], Path]) -> None:
    result = run(built("misuse"), "--once", "--call", "RaiseAndCatch")
    # misuse.c has no DriverEntry: a clear usage error
    assert result.returncode == 2
    assert "DriverEntry" in result.stderr


def test_sigterm_unloads(built: Callable[[str], Path]) -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "pywsk", "driver", "run", str(built("lifecycle"))],
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stderr is not None
            for line in process.stderr:
                if "running; SIGINT or SIGTERM unloads" in line:
                    break
            process.send_signal(signal.SIGTERM)
            rest = process.stderr.read()
            assert process.wait(timeout=30) == 0
            assert "lifecycle: unload" in rest
        finally:
            if process.poll() is None:
                process.kill()


def test_no_verifier_and_faults_options(built: Callable[[str], Path]) -> None:
    assert run(built("lifecycle"), "--once", "--no-verifier").returncode == 0
    assert run(built("lifecycle"), "--once", "--faults", "7").returncode == 0
