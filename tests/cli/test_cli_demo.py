"""``pywsk demo`` and the seed example, run as a user runs them (plus a few in-process checks)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from cli_helpers import ROOT, clean, environment, pywsk

from pywsk.cli import demo as demo_module
from pywsk.cli import main
from pywsk.cli.timeline import Report
from pywsk.testing.capture import WireCapture

SCENARIOS = [
    "seed-sample",
    "graceful-final-data",
    "half-open",
    "stuck-graceful",
    "stuck-graceful-close",
    "abortive",
    "close-without-disconnect",
    "buffer-with-abortive",
    "peer-graceful-event",
    "peer-abortive-event",
    "udp-batch-echo",
    "udp-port-unreachable",
    "udp-truncation",
]

SVG = "{http://www.w3.org/2000/svg}"


def test_demo_runs_every_scenario_as_documented() -> None:
    result = pywsk("demo", "--json")
    clean(result)
    assert result.returncode == 0, result.stdout + result.stderr
    reports = json.loads(result.stdout)
    assert [r["name"] for r in reports] == SCENARIOS
    for report in reports:
        assert report["ok"], report
        assert report["verdict"] == "OK - behaves as documented"
        assert report["timeline"], report
        assert report["peer"], report
        assert report["wire_source"], report
        assert report["wire_summary"], report
        kinds = {event["kind"] for event in report["timeline"]}
        assert {"call", "complete", "peer"} <= kinds, report["name"]
        calls = [e for e in report["timeline"] if e["kind"] == "call"]
        assert all(e["status"].startswith("STATUS_") for e in calls)
        times = [e["ms"] for e in report["timeline"]]
        assert times == sorted(times)
    by_name = {r["name"]: r for r in reports}
    assert "FIN (graceful)" in by_name["seed-sample"]["peer"]
    assert "RST (abortive)" in by_name["close-without-disconnect"]["peer"]
    assert "client sent RST" in by_name["close-without-disconnect"]["wire_summary"]
    assert "client sent FIN" in by_name["half-open"]["wire_summary"]
    for name, flags in (
        ("peer-graceful-event", "Flags=WSK_FLAG_AT_DISPATCH_LEVEL)"),
        ("peer-abortive-event", "Flags=WSK_FLAG_ABORTIVE|"),
    ):
        events = [e["event"] for e in by_name[name]["timeline"] if e["kind"] == "callback"]
        assert len(events) == 1, events
        assert events[0].startswith("WskDisconnectEvent("), events
        assert flags in events[0], events
    stuck = [e["event"] for e in by_name["stuck-graceful-close"]["timeline"]]
    assert any("completed STATUS_CANCELLED" in e and "WskDisconnect" in e for e in stuck)


def test_demo_text_output_has_a_timeline_and_a_verdict() -> None:
    result = pywsk("demo", "--scenario", "abortive")
    clean(result)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "== abortive: Abortive disconnect with a send and a receive pending" in out
    assert "WskDisconnect(NULL, WSK_FLAG_ABORTIVE) returned STATUS_SUCCESS" in out
    assert "IRP of WskSend completed STATUS_CANCELLED" in out
    assert "IRP of WskReceive completed STATUS_CONNECTION_ABORTED" in out
    assert "verdict: OK - behaves as documented" in out
    assert "1 of 1 scenarios behaved as documented." in out


def test_demo_without_a_capture_reads_the_tcp_state_and_says_so() -> None:
    result = pywsk(
        "demo", "--wire", "state", "-s", "half-open", "-s", "close-without-disconnect", "--json"
    )
    clean(result)
    assert result.returncode == 0, result.stdout + result.stderr
    reports = {r["name"]: r for r in json.loads(result.stdout)}
    for report in reports.values():
        assert "TCP state" in report["wire_source"]
        assert "not a packet capture" in report["wire_source"]
        assert all(e["kind"] != "segment" for e in report["timeline"])
        assert any(e["kind"] == "state" for e in report["timeline"])
    assert "client sent FIN" in reports["half-open"]["wire_summary"]
    assert "client sent RST" in reports["close-without-disconnect"]["wire_summary"]


@pytest.mark.root
@pytest.mark.skipif(not WireCapture.available(), reason="packet capture needs root and tcpdump")
def test_demo_with_a_capture_shows_fin_and_rst_segments() -> None:
    result = pywsk("demo", "--wire", "capture", "-s", "seed-sample", "-s", "abortive", "--json")
    clean(result)
    assert result.returncode == 0, result.stdout + result.stderr
    reports = {r["name"]: r for r in json.loads(result.stdout)}
    assert reports["seed-sample"]["wire_source"] == "tcpdump on lo"
    graceful = [e for e in reports["seed-sample"]["timeline"] if e["kind"] == "segment"]
    assert any("F" in e["flags"] and e["from"] == "provider" for e in graceful)
    assert not any("R" in e["flags"] for e in graceful)
    abortive = [e for e in reports["abortive"]["timeline"] if e["kind"] == "segment"]
    assert any("R" in e["flags"] and e["from"] == "provider" for e in abortive)


def test_demo_draws_svg_and_html_sequence_diagrams(tmp_path: Path) -> None:
    svg_file = tmp_path / "demo.svg"
    html_file = tmp_path / "demo.html"
    for target in (svg_file, html_file):
        result = pywsk(
            "demo", "-s", "seed-sample", "-s", "peer-abortive-event", "--diagram", str(target)
        )
        clean(result)
        assert result.returncode == 0, result.stdout + result.stderr
    root = ET.parse(svg_file).getroot()
    assert root.tag == f"{SVG}svg"
    texts = " ".join("".join(t.itertext()) for t in root.iter(f"{SVG}text"))
    for expected in (
        "WSK client",
        "pywsk provider",
        "wire",
        "peer",
        "seed-sample",
        "peer-abortive-event",
        "WskDisconnectEvent",
        "OK",
    ):
        assert expected in texts, expected
    assert len(list(root.iter(f"{SVG}line"))) > 10  # arrows and lifelines
    page = html_file.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<svg") == 2
    assert "seed-sample" in page
    assert "peer-abortive-event" in page


def test_demo_rejects_bad_arguments_without_a_traceback() -> None:
    result = pywsk("demo", "--scenario", "nonsense")
    assert result.returncode == 2
    assert "Invalid value" in result.stderr
    assert "nonsense" in result.stderr
    assert "Traceback" not in result.stderr
    result = pywsk("demo", "--diagram", "out.png")
    assert result.returncode == 2
    assert ".svg or .html" in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_lists_its_scenarios() -> None:
    result = pywsk("demo", "--list")
    assert result.returncode == 0
    assert [line.split()[0] for line in result.stdout.splitlines()] == SCENARIOS


def test_help_explains_each_command_with_examples() -> None:
    top = pywsk("--help")
    assert top.returncode == 0
    for command in ("demo", "probe", "serve"):
        assert command in top.stdout
        result = pywsk(command, "--help")
        assert result.returncode == 0, result.stderr
        assert "Examples:" in result.stdout
        assert f"pywsk {command}" in result.stdout


def test_a_deviation_makes_the_exit_status_non_zero(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    original = demo_module.SCENARIOS["close-without-disconnect"]

    def deviating(stage: demo_module.Stage) -> None:
        original.run(stage)
        stage.report.check(False, "a deliberately failed check")

    patched = demo_module.Scenario(
        original.name, original.title, original.expected, deviating, original.script
    )
    monkeypatch.setitem(demo_module.SCENARIOS, "close-without-disconnect", patched)
    assert main(["demo", "-s", "close-without-disconnect", "--wire", "state"]) == 1
    out = capsys.readouterr().out
    assert "verdict: DEVIATION - a deliberately failed check" in out
    assert "0 of 1 scenarios behaved as documented; 1 deviated." in out


def test_run_scenario_reports_a_broken_scenario_as_a_deviation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = demo_module.SCENARIOS["close-without-disconnect"]

    def broken(stage: demo_module.Stage) -> None:
        stage.connect()
        raise RuntimeError("broken on purpose")

    monkeypatch.setitem(
        demo_module.SCENARIOS,
        "close-without-disconnect",
        demo_module.Scenario(
            original.name, original.title, original.expected, broken, original.script
        ),
    )
    report: Report = demo_module.run_scenario("close-without-disconnect", "state")
    assert not report.ok
    assert "broken on purpose" in report.verdict


def test_the_console_script_runs_the_same_command() -> None:
    # The virtual environment's script (beside this interpreter), else the one on PATH.
    beside = Path(sys.executable).parent / "pywsk"
    script = str(beside) if beside.exists() else shutil.which("pywsk")
    if script is None:
        pytest.skip("the pywsk console script is not on PATH (package not installed)")
    result = subprocess.run(
        [script, "demo", "-s", "buffer-with-abortive", "--wire", "state"],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment(),
        check=False,
    )
    clean(result)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 of 1 scenarios behaved as documented." in result.stdout


def test_the_seed_example_runs_end_to_end() -> None:
    result = subprocess.run(
        [sys.executable, "examples/disconnect_socket.py"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "DisconnectComplete ran with IoStatus.Status = STATUS_SUCCESS" in result.stdout
    assert "peer received b'hello, peer!\\n', then saw FIN" in result.stdout
