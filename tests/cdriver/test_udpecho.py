"""examples/c/udpecho.c - the datagram dispatch table from C: WskSocket with
WSK_FLAG_DATAGRAM_SOCKET, WskBind, WskGetLocalAddress, WskControlSocket
(SO_WSK_EVENT_CALLBACK), WskReceiveFromEvent with WSK_DATAGRAM_INDICATION chains retained
and given back with WskRelease, WskReceiveFrom, WskSendTo, WskSendMessages and
WskCloseSocket - against real UDP sockets on loopback (IPv4 and IPv6), under the verifier;
unload leaves nothing behind."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest

from pywsk.cdriver import Driver
from pywsk.nt.status import NTSTATUS
from pywsk.wsk import AF_INET, AF_INET6

WAIT = 10.0


@pytest.fixture(
    params=[(AF_INET, 1), (AF_INET6, 1), (AF_INET, 0), (AF_INET6, 0)],
    ids=["ipv4-events", "ipv6-events", "ipv4-receive-from", "ipv6-receive-from"],
)
def udpecho(
    request: pytest.FixtureRequest, driver: Callable[[str], Driver]
) -> Iterator[tuple[str, int]]:
    """The C UDP echo server on 127.0.0.1 or ::1, with events or WskReceiveFrom."""
    family, events = request.param
    server = driver("udpecho")
    assert server.entry() == NTSTATUS.STATUS_SUCCESS
    status = server.call("StartServer", 0, family, events)
    assert status == NTSTATUS.STATUS_SUCCESS, server.debug_output
    port = server.call("ServerPort", result="int") & 0xFFFF
    yield ("::1" if family == AF_INET6 else "127.0.0.1"), port
    assert server.stop is None
    assert server.call("StopServer") == NTSTATUS.STATUS_SUCCESS
    assert server.unload() == []


def test_datagrams_come_back_to_their_sender(udpecho: tuple[str, int]) -> None:
    host, port = udpecho
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as peer:
        peer.settimeout(WAIT)
        peer.bind((host, 0))
        for payload in (b"one", b"two" * 300, bytes(range(256)) * 4):
            peer.sendto(payload, (host, port))
            data, sender = peer.recvfrom(65536)
            assert data == payload
            assert sender[:2] == (host, port)


def test_a_burst_is_echoed_datagram_by_datagram(udpecho: tuple[str, int]) -> None:
    """Several datagrams at once: an indication may carry them as one chain."""
    host, port = udpecho
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sent = [f"datagram {i}".encode() for i in range(8)]
    with socket.socket(family, socket.SOCK_DGRAM) as peer:
        peer.settimeout(WAIT)
        peer.bind((host, 0))
        for payload in sent:
            peer.sendto(payload, (host, port))
        got = sorted(peer.recvfrom(65536)[0] for _ in sent)
    assert got == sorted(sent)


def test_send_messages(driver: Callable[[str], Driver]) -> None:
    """One WskSendMessages of five datagrams reaches a Linux UDP socket as five."""
    sender = driver("udpecho")
    assert sender.entry() == NTSTATUS.STATUS_SUCCESS
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.settimeout(WAIT)
        peer.bind(("127.0.0.1", 0))
        status = sender.call("SendBurst", peer.getsockname()[1], 5)
        assert status == NTSTATUS.STATUS_SUCCESS, sender.debug_output
        got = [peer.recvfrom(65536)[0] for _ in range(5)]
    assert got == [f"burst {c}".encode() for c in "abcde"]
    assert sender.unload() == []
