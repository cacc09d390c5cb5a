"""Fixtures shared by the whole suite: a registered WSK client, loopback listeners, captures."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest

from pywsk.testing.capture import WireCapture
from pywsk.testing.driver import WskTestClient


@pytest.fixture
def wsk() -> Iterator[WskTestClient]:
    """A registered client; every socket it opened is closed and it deregisters afterwards."""
    client = WskTestClient()
    try:
        yield client
    finally:
        client.close()


ListenerFactory = Callable[..., socket.socket]


@pytest.fixture
def listener() -> Iterator[ListenerFactory]:
    """Make plain Linux listening sockets on loopback: ``listener(host="127.0.0.1", rcvbuf=None)``."""
    made: list[socket.socket] = []

    def make(host: str = "127.0.0.1", rcvbuf: int | None = None) -> socket.socket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind((host, 0))
        sock.listen(8)
        sock.settimeout(10)
        made.append(sock)
        return sock

    yield make
    for sock in made:
        sock.close()


needs_capture = pytest.mark.skipif(
    not WireCapture.available(), reason="packet capture needs root and tcpdump"
)


@pytest.fixture
def capture_port() -> Iterator[Callable[[int], WireCapture]]:
    """Start a capture of TCP on one port (``capture_port(port)``); stopped afterwards."""
    started: list[WireCapture] = []

    def start(port: int) -> WireCapture:
        if not WireCapture.available():
            pytest.skip("packet capture needs root and tcpdump")
        cap = WireCapture(ports=[port]).start()
        started.append(cap)
        return cap

    yield start
    for cap in started:
        cap.stop()
