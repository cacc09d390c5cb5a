"""pywsk.sync says how a connection ended only from what happened: an abort the provider
refused (the connection was over already) is not "our RST", a close of a connection the
kernel has ended sends nothing and claims nothing, and a close after our acknowledged FIN
with the peer's direction still open is our FIN then our RST - which the wire shows."""

from __future__ import annotations

import select
import socket
from collections.abc import Callable, Iterator

import pytest

import pywsk.sync
from pywsk.core.ending import Ending
from pywsk.testing import WireCapture, tcp
from pywsk.testing.contract import peer_reads_to_end

Listener = Callable[..., socket.socket]
WAIT = 10.0


def kernel(conn: pywsk.sync.Connection) -> socket.socket:
    sock: socket.socket = conn.socket.sock  # type: ignore[attr-defined]
    return sock


def wait_for_hangup(sock: socket.socket) -> None:
    """Block (bounded) until ``sock``'s connection is over in the kernel (an RST: POLLHUP,
    reported whatever the events asked)."""
    poller = select.poll()
    poller.register(sock.fileno(), 0)
    assert poller.poll(WAIT * 1000), "the connection did not end"
    assert tcp.tcp_state(sock) == CLOSE, tcp.tcp_state_name(tcp.tcp_state(sock))


@pytest.fixture
def pair(listener: Listener) -> Iterator[tuple[pywsk.sync.Connection, socket.socket]]:
    lsock = listener("127.0.0.1")
    conn = pywsk.sync.connect("127.0.0.1", lsock.getsockname()[1], timeout=WAIT)
    peer, _ = lsock.accept()
    peer.settimeout(WAIT)
    try:
        yield conn, peer
    finally:
        conn.close()
        peer.close()


CLOSE = 7  # TCP_CLOSE


def read_to_end(sock: socket.socket) -> None:
    while sock.recv(100):
        pass


def test_an_abort_after_the_peers_reset_is_not_ours(
    pair: tuple[pywsk.sync.Connection, socket.socket],
) -> None:
    conn, peer = pair
    tcp.set_linger_abort(peer)
    peer.close()  # the peer's RST; nothing of ours has seen it yet
    wait_for_hangup(kernel(conn))
    conn.abort()
    assert conn.disconnected_by is not Ending.OUR_RST
    assert conn.disconnected_by in (None, Ending.PEER_RST)
    conn.close()
    assert conn.disconnected_by in (None, Ending.PEER_RST)


def test_a_close_after_the_peers_reset_claims_nothing_of_ours(
    pair: tuple[pywsk.sync.Connection, socket.socket],
) -> None:
    conn, peer = pair
    tcp.set_linger_abort(peer)
    peer.close()
    wait_for_hangup(kernel(conn))
    conn.close()
    assert conn.disconnected_by is None  # nothing told this side how it ended


def test_a_close_before_our_fin_is_our_rst(
    pair: tuple[pywsk.sync.Connection, socket.socket],
) -> None:
    conn, peer = pair
    conn.send(b"unfinished")
    conn.close()
    assert conn.disconnected_by is Ending.OUR_RST
    with pytest.raises(ConnectionResetError):
        read_to_end(peer)


def test_a_close_after_our_fin_only_is_our_fin_then_rst(
    pair: tuple[pywsk.sync.Connection, socket.socket],
) -> None:
    conn, peer = pair
    port = conn.local_address[1]
    capture = WireCapture(ports=[port]).start() if WireCapture.available() else None
    try:
        conn.disconnect()  # our FIN, acknowledged
        assert peer_reads_to_end(peer) == (b"", "fin")
        conn.close()  # the peer's direction is open: WskCloseSocket resets it
        assert conn.disconnected_by is Ending.OUR_FIN_THEN_RST
        wait_for_hangup(peer)  # the peer's CLOSE_WAIT ended by our RST
        if capture is not None:
            capture.sync()
            ours = [s for s in capture.segments if s.sport == port]
            assert any(s.fin for s in ours)
            assert any(s.rst for s in ours)
    finally:
        if capture is not None:
            capture.stop()


def test_a_full_disconnect_then_close_sends_nothing_more(
    pair: tuple[pywsk.sync.Connection, socket.socket],
) -> None:
    conn, peer = pair
    conn.disconnect()
    assert peer_reads_to_end(peer) == (b"", "fin")
    peer.shutdown(socket.SHUT_WR)
    assert conn.recv(10, timeout=WAIT) == b""
    conn.close()
    assert conn.disconnected_by is Ending.PEER_FIN
