"""The real commands: ``pywsk demo`` and the seed example, run as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=120, cwd=ROOT, check=False
    )


def test_demo_runs_every_scenario_as_documented() -> None:
    result = run("-m", "pywsk.cli", "demo", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    reports = json.loads(result.stdout)
    assert [r["name"] for r in reports] == [
        "seed-sample",
        "graceful-final-data",
        "abortive",
        "close-without-disconnect",
        "buffer-with-abortive",
        "stuck-graceful",
    ]
    for report in reports:
        assert report["ok"], report
        assert report["timeline"], report
        assert report["peer"], report
    by_name = {r["name"]: r for r in reports}
    assert "FIN (graceful)" in by_name["seed-sample"]["peer"]
    assert "RST (abortive)" in by_name["close-without-disconnect"]["peer"]


def test_demo_text_output_has_a_verdict_per_scenario() -> None:
    result = run("-m", "pywsk.cli", "demo", "--scenario", "abortive")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verdict: OK" in result.stdout
    assert "WskDisconnect(NULL, WSK_FLAG_ABORTIVE) returned STATUS_SUCCESS" in result.stdout
    assert "1 of 1 scenarios behaved as documented." in result.stdout


def test_demo_rejects_an_unknown_scenario_without_a_traceback() -> None:
    result = run("-m", "pywsk.cli", "demo", "--scenario", "nonsense")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_seed_example_runs_end_to_end() -> None:
    result = run("examples/disconnect_socket.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "DisconnectComplete ran with IoStatus.Status = STATUS_SUCCESS" in result.stdout
    assert "peer received b'hello, peer!\\n', then saw FIN" in result.stdout
