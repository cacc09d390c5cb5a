"""examples/udp_tunnel.py against a plain Python UDP peer and socat, under the verifier,
checked against a packet capture on lo: payloads, source and destination addresses, order."""

from __future__ import annotations

import importlib.util
import os
import select
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pywsk import verifier
from pywsk.nt import STATUS_PENDING, STATUS_SUCCESS
from pywsk.testing.udpcapture import UdpCapture
from pywsk.wsk import AF_INET, sockaddr_from_tuple

ROOT = Path(__file__).resolve().parents[2]
WAIT = 10.0


def _load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("udp_tunnel", ROOT / "examples" / "udp_tunnel.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


udp_tunnel = _load_example()


needs_capture = pytest.mark.skipif(not UdpCapture.available(), reason="needs root and tcpdump")


@pytest.fixture
def tunnel() -> Iterator[Any]:
    endpoint = udp_tunnel.TunnelEndpoint(udp_tunnel.Echo)
    assert endpoint.Start() == STATUS_SUCCESS
    yield endpoint
    endpoint.Stop()


@needs_capture
def test_echo_comes_from_the_address_asked_on_the_wire(tunnel: Any) -> None:
    wire = UdpCapture([tunnel.Port])
    asked = [("127.0.0.5", socket.AF_INET), ("127.0.0.6", socket.AF_INET), ("::1", socket.AF_INET6)]
    try:
        for host, family in asked:
            with socket.socket(family, socket.SOCK_DGRAM) as peer:
                peer.settimeout(WAIT)
                peer.bind(("127.0.0.1" if family == socket.AF_INET else "::1", 0))
                for n in range(3):
                    payload = f"{host} #{n}".encode()
                    peer.sendto(payload, (host, tunnel.Port))
                    data, source = peer.recvfrom(2048)
                    assert data == payload
                    assert source[:2] == (host, tunnel.Port)
        wire.sync()
    finally:
        wire.stop()
    for host, _family in asked:
        requests = [d for d in wire.datagrams if d.dst == (host, tunnel.Port)]
        replies = [d for d in wire.datagrams if d.src == (host, tunnel.Port)]
        assert [d.payload for d in requests] == [f"{host} #{n}".encode() for n in range(3)]
        assert [d.payload for d in replies] == [d.payload for d in requests]
        assert [d.dst for d in replies] == [d.src for d in requests]


@needs_capture
def test_a_batch_leaves_in_order_from_the_pktinfo_source(tunnel: Any) -> None:
    wire = UdpCapture([tunnel.Port])
    payloads = [b"batch %02d" % n for n in range(16)]
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.bind(("127.0.0.1", 0))
            peer.settimeout(WAIT)
            to = udp_tunnel.EndpointFor(
                AF_INET, sockaddr_from_tuple(peer.getsockname()), socket.inet_aton("127.0.0.7")
            )
            assert tunnel.SendBatch(to, payloads) in (STATUS_SUCCESS, STATUS_PENDING)
            got = [peer.recvfrom(100) for _ in payloads]
        wire.sync()
    finally:
        wire.stop()
    assert [data for data, _ in got] == payloads
    assert {source for _, source in got} == {("127.0.0.7", tunnel.Port)}
    sent = [d for d in wire.datagrams if d.src == ("127.0.0.7", tunnel.Port)]
    assert [d.payload for d in sent] == payloads


@pytest.mark.skipif(shutil.which("socat") is None, reason="needs socat")
def test_socat_peer_over_both_families(tunnel: Any) -> None:
    for kind, host in (("UDP4-DATAGRAM", "127.0.0.1"), ("UDP6-DATAGRAM", "[::1]")):
        process = subprocess.Popen(
            ["socat", "-T", "10", "-", f"{kind}:{host}:{tunnel.Port}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert process.stdin is not None
        assert process.stdout is not None
        try:
            line = f"hello from socat over {host}\n".encode()
            process.stdin.write(line)
            process.stdin.flush()
            ready, _, _ = select.select([process.stdout], [], [], WAIT)
            assert ready, "no echo from the tunnel"
            assert os.read(process.stdout.fileno(), 4096) == line
        finally:
            process.kill()
            process.wait(WAIT)
            process.stdin.close()
            process.stdout.close()


def test_retained_indications_are_all_released_before_close() -> None:
    with verifier.enabled_for("collect") as watching:
        endpoint = udp_tunnel.TunnelEndpoint(udp_tunnel.Echo)
        assert endpoint.Start() == STATUS_SUCCESS
        provider_socket = endpoint.Sockets[AF_INET]
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
                peer.settimeout(WAIT)
                for n in range(50):
                    peer.sendto(b"%d" % n, ("127.0.0.1", endpoint.Port))
                echoes = sorted(int(peer.recv(100)) for _ in range(50))
            assert echoes == list(range(50))
        finally:
            endpoint.Stop()  # joins the worker, which releases each datagram after handling it
        assert not provider_socket.retained
        assert watching.found == []  # no close with retained indications (WSK-005)


def test_the_example_runs_cleanly_under_the_verifier() -> None:
    finished = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "udp_tunnel.py")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYWSK_VERIFIER": "1"},
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "echoed b'ping over 127.0.0.1' from 127.0.0.1" in finished.stdout
    assert "echoed b'ping over ::1' from ::1" in finished.stdout
    assert "violation" not in finished.stderr.lower()
