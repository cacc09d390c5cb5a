"""Fixtures shared by the whole suite: a registered WSK client, loopback listeners, captures."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator

import pytest

from pywsk import verifier
from pywsk.testing.capture import WireCapture
from pywsk.testing.driver import WskTestClient

# The suite runs with the verifier on: a test whose code breaks a WSK or IRP rule fails.
# (Garbage-collection-time ResourceWarnings are left to tests/verifier, where they are
# checked deliberately, so that collection timing cannot move a warning between tests.)
# PYWSK_TEST_VERIFIER=0 runs it with the verifier off, as a user's program runs: the
# provider's short call path is taken only then (scripts/run runs the provider and layer
# tests that way too).
VERIFIER_ON = os.environ.get("PYWSK_TEST_VERIFIER", "1") != "0"
if VERIFIER_ON:
    verifier.enable(mode="raise", resource_warnings=False)


@pytest.fixture(autouse=True)
def _no_verifier_violations(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that tripped a verifier check.

    A test marked ``no_verifier`` checks what happens *without* the verifier (a misuse the
    plain provider answers with a status, or a wait the verifier would refuse): the
    verifier is off for it.
    """
    if request.node.get_closest_marker("no_verifier") is not None:
        previous = verifier.enabled()
        verifier.disable()
        try:
            yield
        finally:
            if previous is not None:
                verifier.enable(mode=previous.mode, resource_warnings=previous.resource_warnings)
        return
    running = verifier.enabled()
    before = len(running.found) if running is not None else 0
    yield
    running = verifier.enabled()
    if running is not None:
        new = running.found[before:]
        assert not new, "verifier violations:\n" + "\n".join(map(str, new))


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
