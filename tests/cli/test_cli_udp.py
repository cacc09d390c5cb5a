"""``pywsk probe --udp`` and ``pywsk serve --udp`` against real peers (socat, plain Python UDP
sockets, each other), with their counts checked against a packet capture on lo."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cli_helpers import WAIT, Server, clean, pywsk

from pywsk.cli.demo_udp import UdpPeer
from pywsk.cli.udp_report import sequence_of, sequenced
from pywsk.testing.udpcapture import UdpCapture

needs_capture = pytest.mark.skipif(not UdpCapture.available(), reason="needs root and tcpdump")
needs_socat = pytest.mark.skipif(shutil.which("socat") is None, reason="needs socat")


def probe_udp(*args: str) -> tuple[int, dict[str, Any]]:
    result = pywsk("probe", "--udp", *args, "--json")
    clean(result)
    reports: list[dict[str, Any]] = json.loads(result.stdout)
    assert len(reports) == 1
    return result.returncode, reports[0]


def wait_until_echoing(port: int) -> None:
    """Until the echo server answers a plain datagram (it binds after it starts; bounded)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as check:
        check.settimeout(0.2)
        for _attempt in range(100):
            check.sendto(b"ready?", ("127.0.0.1", port))
            try:
                if check.recv(100) == b"ready?":
                    return
            except (TimeoutError, ConnectionRefusedError):
                continue
    raise TimeoutError("the echo server never answered")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
def peer_factory() -> Iterator[Callable[[Callable[[bytes], list[bytes]]], UdpPeer]]:
    peers: list[UdpPeer] = []

    def make(answer: Callable[[bytes], list[bytes]]) -> UdpPeer:
        peers.append(UdpPeer(answer))
        return peers[-1]

    yield make
    for peer in peers:
        peer.stop()


@needs_socat
def test_probe_against_socat_echo_is_ok_and_matches_the_wire() -> None:
    port = free_port()
    echo = subprocess.Popen(
        ["socat", "-T", "10", f"UDP4-RECVFROM:{port},bind=127.0.0.1,fork", "PIPE"],
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_echoing(port)
        status, report = probe_udp(f"127.0.0.1:{port}", "--count", "1", "--timeout", "5")
    finally:
        echo.kill()
        echo.wait(WAIT)
    # socat forks per datagram: one datagram per run keeps its echo in order.
    assert status == 0, report
    assert (report["sent"], report["received"]) == (1, 1)
    if UdpCapture.available():
        assert report["wire"] == {"sent": 1, "received": 1}


@needs_capture
def test_probe_counts_loss_and_reordering_from_a_python_peer(
    peer_factory: Callable[[Callable[[bytes], list[bytes]]], UdpPeer],
) -> None:
    held: list[bytes] = []

    def answer(data: bytes) -> list[bytes]:
        numbered = sequence_of(data)
        assert numbered is not None
        if numbered[0] == 3:
            return []  # dropped by the peer
        if numbered[0] == 5:
            held.append(data)  # sent after #6: reordered
            return []
        return [data, *held] if numbered[0] == 6 else [data]

    peer = peer_factory(answer)
    status, report = probe_udp(f"127.0.0.1:{peer.address[1]}", "--count", "10", "--timeout", "2")
    assert status == 1, report
    assert report["outcome"] == "deviation"
    assert report["sequence"]["lost"] == 1
    assert report["sequence"]["reordered"] == 1
    assert report["received"] == 9
    assert report["wire"] == {"sent": 10, "received": 9}  # the capture agrees with us
    assert [sequence_of(d) for d in peer.received] == [(n, 10) for n in range(10)]


def test_probe_reports_an_unreachable_port() -> None:
    status, report = probe_udp(f"127.0.0.1:{free_port()}", "--count", "3", "--timeout", "2")
    assert status == 3
    assert report["outcome"] == "unreachable"
    assert any("STATUS_PORT_UNREACHABLE" in c["claim"] for c in report["claims"])


def test_probe_a_sink(
    peer_factory: Callable[[Callable[[bytes], list[bytes]]], UdpPeer],
) -> None:
    sink = peer_factory(lambda data: [])
    status, report = probe_udp(
        f"127.0.0.1:{sink.address[1]}", "--peer", "sink", "--count", "5", "--timeout", "0.5"
    )
    assert status == 0, report
    assert report["received"] == 0
    assert len(sink.received) == 5
    echo = peer_factory(lambda data: [data])
    status, report = probe_udp(
        f"127.0.0.1:{echo.address[1]}", "--peer", "sink", "--count", "5", "--timeout", "0.5"
    )
    assert status == 1  # a sink that answers is not one
    assert report["received"] == 5


def test_serve_echo_reports_a_python_client() -> None:
    server = Server(("--udp", "--mode", "echo", "--datagrams", "20"))
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(WAIT)
            payloads = [sequenced(n, 20, 100) for n in range(20)]
            for payload in payloads:
                client.sendto(payload, ("127.0.0.1", server.port))
            echoes = [client.recv(200) for _ in payloads]
            local = client.getsockname()
        server.finish()
    finally:
        server.kill()
    assert echoes == payloads
    assert server.returncode == 0, server.lines
    reports = [line for line in server.lines if line["event"] == "peer-report"]
    assert len(reports) == 1
    report = reports[0]
    assert report["peer"][:2] == ["127.0.0.1", local[1]]
    assert (report["received"], report["sent"]) == (20, 20)
    assert report["sequence"]["lost"] == 0
    assert report["outcome"] == "ok"
    if UdpCapture.available():
        assert report["wire"] == {"sent": 20, "received": 20}


@needs_socat
def test_serve_sink_with_a_socat_client_does_not_judge_loss() -> None:
    server = Server(("--udp", "--mode", "sink", "--datagrams", "1"))
    try:
        sender = subprocess.run(
            ["socat", "-u", "-", f"UDP4-DATAGRAM:127.0.0.1:{server.port}"],
            input=b"hello from socat\n",
            timeout=WAIT,
            check=False,
        )
        assert sender.returncode == 0
        server.finish()
    finally:
        server.kill()
    assert server.returncode == 0
    (report,) = [line for line in server.lines if line["event"] == "peer-report"]
    assert report["received"] == 1
    assert report["sequence"]["lost"] is None  # no header: not judged, never zero
    assert any("not judged" in c["claim"] for c in report["claims"])


def test_serve_source_and_probe_source_agree() -> None:
    server = Server(
        (
            "--udp",
            "--mode",
            "source",
            "--count",
            "30",
            "--datagram-size",
            "1400",
            "--datagrams",
            "1",
        )
    )
    try:
        status, report = probe_udp(
            f"127.0.0.1:{server.port}", "--peer", "source", "--count", "1", "--timeout", "5"
        )
        server.finish()
    finally:
        server.kill()
    assert status == 0, report
    assert report["received"] == 30
    assert report["sequence"]["total"] == 30
    assert report["sequence"]["lost"] == 0
    (served,) = [line for line in server.lines if line["event"] == "peer-report"]
    assert (served["received"], served["sent"]) == (1, 30)


def test_serve_stopped_mid_stream_is_inconclusive() -> None:
    server = Server(("--udp", "--mode", "sink"))
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            for n in range(4):  # 4 of a stream of 10
                client.sendto(sequenced(n, 10, 64), ("127.0.0.1", server.port))
            assert server.proc.stdout is not None
            first = json.loads(server.proc.stdout.readline())  # it has the first datagram
            assert first["event"] == "peer"
        server.proc.send_signal(signal.SIGINT)
        server.finish()
    finally:
        server.kill()
    assert server.returncode == 4
    (report,) = [line for line in server.lines if line["event"] == "peer-report"]
    assert report["outcome"] == "inconclusive"
    assert report["sequence"]["lost"] == 6


def test_tcp_options_are_refused_with_udp() -> None:
    result = pywsk("probe", "--udp", "127.0.0.1:9", "-s", "abortive")
    assert result.returncode == 2
    assert "TCP only" in result.stderr
    result = pywsk("serve", "--udp", "--mode", "http-ok")
    assert result.returncode == 2


def test_serve_udp_bounds_its_queue_and_says_what_it_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pywsk.cli import serve_udp
    from pywsk.cli.udp_socket import Arrival

    monkeypatch.setattr(serve_udp, "QUEUE_LIMIT", 3)
    server = serve_udp.UdpServer(
        serve_udp.UdpServeOptions(mode="sink", wire="state"), lambda arrival: None
    )
    try:
        server.open()
        sender = ("127.0.0.1", 9)
        for n in range(5):  # as the completion routine hands them over, faster than served
            server._arrived(Arrival(sender, sequenced(n, 5, 64), 0.0))
        server.stop("the test stopped it")
        server.run()
        (report,) = server.reports()
    finally:
        server.close()
    assert report.facts["received"] == 3
    assert any("2 more received and dropped unread" in claim for claim, _ in report.claims)
    assert report.outcome == "inconclusive"
