"""examples/c/sync_client.c - one IRP and one KEVENT per socket, IoReuseIrp, waits with
timeouts and cancellation - against real peers: an echo, a graceful disconnect with FIN
and no RST; a silent peer, whose receive times out, is cancelled and aborted with an RST."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pywsk import verifier
from pywsk.cdriver import Driver, runtime
from pywsk.nt.status import NTSTATUS
from pywsk.testing.capture import WireCapture
from pywsk.verifier import FaultScheduler
from pywsk.wsk import AF_INET, AF_INET6, WSK_SOCKET

#: Each wait of an echo that must succeed: generous, for a loaded host (a hang is still
#: bounded; the timeout path is SilentPeer's test).
ECHO_TIMEOUT_MS = 30_000


@pytest.mark.root
def test_echo_and_graceful_disconnect(
    driver: Callable[[str], Driver],
    reading_peer: Callable[..., Any],
    capture_port: Callable[[int], WireCapture],
) -> None:
    peer = reading_peer(echo=True)
    wire = capture_port(peer.port)
    client = driver("sync_client")
    assert client.entry() == NTSTATUS.STATUS_SUCCESS
    status = client.call("EchoOnce", peer.port, ECHO_TIMEOUT_MS)
    assert status == NTSTATUS.STATUS_SUCCESS, client.debug_output
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
    reading_peer: Callable[..., Any],
    capture_port: Callable[[int], WireCapture],
) -> None:
    peer = reading_peer()
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
    driver: Callable[[str], Driver], reading_peer: Callable[..., Any]
) -> None:
    peer = reading_peer(echo=True)
    client = driver("sync_client")
    assert client.entry() == NTSTATUS.STATUS_SUCCESS
    status = client.call("EchoOnce", peer.port, ECHO_TIMEOUT_MS)
    assert status == NTSTATUS.STATUS_SUCCESS, client.debug_output
    assert client.unload() == []


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_echo_under_the_fault_scheduler(
    driver: Callable[[str], Driver], reading_peer: Callable[..., Any], seed: int
) -> None:
    """Every call that could complete inline pends instead, and completions are delayed:
    the C client's waits and its one reused IRP still come out right."""
    peer = reading_peer(echo=True)
    faults = FaultScheduler(seed=seed, pending=1.0, delay=0.5)
    with verifier.enabled_for("raise", faults=faults) as running:
        client = driver("sync_client")
        assert client.entry() == NTSTATUS.STATUS_SUCCESS
        status = client.call("EchoOnce", peer.port, ECHO_TIMEOUT_MS)
        assert status == NTSTATUS.STATUS_SUCCESS, client.debug_output
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


def test_connections_past_the_quarantine(
    driver: Callable[[str], Driver],
    reading_peer: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With a quarantine of two, the C memory of closed sockets, IRPs and MDLs goes back to
    malloc while new ones are made: every connection still works, nothing leaks."""
    monkeypatch.setattr(runtime, "QUARANTINE", 2)
    client = driver("sync_client")
    assert client.entry() == NTSTATUS.STATUS_SUCCESS
    for _ in range(12):
        peer = reading_peer(echo=True)
        status = client.call("EchoOnce", peer.port, ECHO_TIMEOUT_MS)
        assert status == NTSTATUS.STATUS_SUCCESS, client.debug_output
        assert peer.done.wait(10)
    assert client.unload() == []


def test_a_released_socket_is_forgotten(
    driver: Callable[[str], Driver], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a closed socket's C memory leaves the quarantine, no pywsk socket maps to it:
    the same pywsk socket object (or a new one that happens to get its id) is given a new
    C socket.  (It once kept the released address: under churn, the 4,097th close handed
    a new connection freed memory.)"""
    monkeypatch.setattr(runtime, "QUARANTINE", 0)
    rt = driver("sync_client").runtime
    sock = WSK_SOCKET(None)
    first = rt.c_socket(sock)
    rt._quarantine_freed(rt._sockets, first)  # released at once: the quarantine holds none
    assert first not in rt._sockets
    again = rt.c_socket(sock)
    assert rt._sockets[again] is sock
