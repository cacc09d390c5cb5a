"""examples/c/sync_client.c - one IRP and one KEVENT per socket, IoReuseIrp, waits with
timeouts and cancellation - against real peers: an echo, a graceful disconnect with FIN
and no RST; a silent peer, whose receive times out, is cancelled and aborted with an RST."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from pywsk import verifier
from pywsk.cdriver import Driver
from pywsk.nt.status import NTSTATUS
from pywsk.testing.capture import WireCapture
from pywsk.verifier import FaultScheduler
from pywsk.wsk import AF_INET, AF_INET6


class Server:
    """A loopback server thread: echoes (or, silent, only reads) until EOF, then closes.
    ``outcome`` is "eof" or "reset", as the server saw the client go."""

    def __init__(self, echo: bool) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(10)
        self.port: int = self.listener.getsockname()[1]
        self.echo = echo
        self.outcome = ""
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(10)
            try:
                while data := conn.recv(65536):
                    if self.echo:
                        conn.sendall(data)
                self.outcome = "eof"
            except ConnectionResetError:
                self.outcome = "reset"
            except OSError:
                self.outcome = "error"
        self.done.set()


@pytest.fixture
def server() -> Iterator[Callable[[bool], Server]]:
    made: list[Server] = []

    def make(echo: bool) -> Server:
        made.append(Server(echo))
        return made[-1]

    yield make
    for each in made:
        each.listener.close()
        each.thread.join(timeout=10)


@pytest.mark.root
def test_echo_and_graceful_disconnect(
    driver: Callable[[str], Driver],
    server: Callable[[bool], Server],
    capture_port: Callable[[int], WireCapture],
) -> None:
    peer = server(True)
    wire = capture_port(peer.port)
    client = driver("sync_client")
    assert client.entry() == NTSTATUS.STATUS_SUCCESS
    assert client.call("EchoOnce", peer.port, 5000) == NTSTATUS.STATUS_SUCCESS
    assert peer.done.wait(10)
    assert peer.outcome == "eof"
    assert client.unload() == []
    wire.sync()
    client_port = next(s.sport for s in wire.segments if s.syn and not s.ack_flag)
    assert wire.fins(from_port=client_port)
    assert wire.rsts() == []


@pytest.mark.root
def test_timeout_cancels_and_aborts(
    driver: Callable[[str], Driver],
    server: Callable[[bool], Server],
    capture_port: Callable[[int], WireCapture],
) -> None:
    peer = server(False)
    wire = capture_port(peer.port)
    client = driver("sync_client")
    assert client.entry() == NTSTATUS.STATUS_SUCCESS
    assert client.call("SilentPeer", peer.port, 200) == NTSTATUS.STATUS_IO_TIMEOUT
    assert peer.done.wait(10)
    assert peer.outcome == "reset"
    assert any("abortive disconnect -> 0x00000000" in line for line in client.debug_output)
    assert client.unload() == []
    wire.sync()
    client_port = next(s.sport for s in wire.segments if s.syn and not s.ack_flag)
    assert wire.rsts(from_port=client_port)
    assert wire.fins(from_port=client_port) == []


def test_echo_without_capture(
    driver: Callable[[str], Driver], server: Callable[[bool], Server]
) -> None:
    peer = server(True)
    client = driver("sync_client")
    assert client.entry() == NTSTATUS.STATUS_SUCCESS
    assert client.call("EchoOnce", peer.port, 5000) == NTSTATUS.STATUS_SUCCESS
    assert client.unload() == []


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_echo_under_the_fault_scheduler(
    driver: Callable[[str], Driver], server: Callable[[bool], Server], seed: int
) -> None:
    """Every call that could complete inline pends instead, and completions are delayed:
    the C client's waits and its one reused IRP still come out right."""
    peer = server(True)
    faults = FaultScheduler(seed=seed, pending=1.0, delay=0.5)
    with verifier.enabled_for("raise", faults=faults) as running:
        client = driver("sync_client")
        assert client.entry() == NTSTATUS.STATUS_SUCCESS
        assert client.call("EchoOnce", peer.port, 5000) == NTSTATUS.STATUS_SUCCESS
        assert client.unload() == []
    assert running.found == []
    assert any(what == "pending" for what, _function in faults.decisions)


@pytest.mark.parametrize("family", [AF_INET, AF_INET6], ids=["ipv4", "ipv6"])
def test_name_resolution(driver: Callable[[str], Driver], family: int) -> None:
    client = driver("sync_client")
    assert client.entry() == NTSTATUS.STATUS_SUCCESS
    assert client.call("ResolveLoopback", 40007, family) == NTSTATUS.STATUS_SUCCESS
    assert f"sync_client: resolved port 40007, family {family}\n" in client.debug_output
    assert client.unload() == []
