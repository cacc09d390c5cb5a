"""``pywsk demo``'s datagram scenarios: each behaves as documented, and says what it saw."""

from __future__ import annotations

import json

import pytest
from cli_helpers import clean, pywsk

from pywsk.cli.demo import ALL_SCENARIOS
from pywsk.cli.demo_udp import UDP_SCENARIOS
from pywsk.testing.udpcapture import UdpCapture


def test_the_datagram_scenarios_are_listed() -> None:
    result = pywsk("demo", "--list")
    clean(result)
    for name in UDP_SCENARIOS:
        assert name in ALL_SCENARIOS
        assert name in result.stdout


@pytest.mark.parametrize("name", list(UDP_SCENARIOS))
def test_datagram_scenario_behaves_as_documented(name: str) -> None:
    result = pywsk("demo", "-s", name, "--json")
    clean(result)
    (report,) = json.loads(result.stdout)
    if report["outcome"] == "inconclusive":  # no ICMP error came back: rate-limited
        assert name == "udp-port-unreachable"
        assert result.returncode == 4
        pytest.skip("; ".join(report["inconclusive"]))
    assert result.returncode == 0, report
    assert report["outcome"] == "ok"
    texts = [event["event"] for event in report["timeline"]]
    completions = [e["event"] for e in report["timeline"] if e["kind"] == "complete"]
    if name == "udp-batch-echo":
        assert sum("WskReceiveFrom" in t and "STATUS_SUCCESS" in t for t in completions) == 8
    if name == "udp-port-unreachable":
        assert any("STATUS_PORT_UNREACHABLE" in t for t in texts)
    if name == "udp-truncation":
        assert any("STATUS_BUFFER_OVERFLOW" in t and "MSG_TRUNC" in t for t in texts)
    if UdpCapture.available():
        assert report["wire_source"] == "capture on lo"
        assert report["disagreements"] == []
