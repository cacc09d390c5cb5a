"""WskDisconnect and WskCloseSocket exactly as the seed pages say - checked at the peer and on the wire.

Every test drives a real WSK connection socket against a plain Linux socket peer on
loopback.  Statuses are checked, and so is what the peer received and saw (FIN or RST),
and, where a disconnect is involved, what a packet capture on ``lo`` saw.
"""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest

from pywsk.nt import (
    DISPATCH_LEVEL,
    STATUS_CANCELLED,
    STATUS_CONNECTION_ABORTED,
    STATUS_CONNECTION_RESET,
    STATUS_FILE_FORCED_CLOSED,
    STATUS_INVALID_DEVICE_STATE,
    STATUS_INVALID_HANDLE,
    STATUS_INVALID_PARAMETER,
    STATUS_PENDING,
    STATUS_SUCCESS,
)
from pywsk.provider import subsystem
from pywsk.testing import tcp
from pywsk.testing.capture import WireCapture
from pywsk.testing.driver import Request, WskTestClient, make_buffer
from pywsk.wsk import AF_INET, WSK_FLAG_ABORTIVE, WSK_SOCKET

Listener = Callable[..., socket.socket]
Capture = Callable[[int], WireCapture]

HOSTS = ["127.0.0.1", "::1"]
WAIT = 10.0


def connected(
    wsk: WskTestClient, listener: Listener, host: str = "127.0.0.1", rcvbuf: int | None = None
) -> tuple[WSK_SOCKET, socket.socket, int]:
    """A WSK socket connected to a fresh plain peer; returns (socket, peer, client port)."""
    lsock = listener(host, rcvbuf)
    sock = wsk.connect(lsock.getsockname()[:2])
    peer, address = lsock.accept()
    peer.settimeout(WAIT)
    return sock, peer, address[1]


def captured(
    wsk: WskTestClient,
    listener: Listener,
    capture_port: Capture,
    host: str = "127.0.0.1",
    rcvbuf: int | None = None,
) -> tuple[WSK_SOCKET, socket.socket, int, WireCapture]:
    """Like :func:`connected`, with a capture of the connection started before it connects."""
    lsock = listener(host, rcvbuf)
    cap = capture_port(lsock.getsockname()[1])
    sock = wsk.connect(lsock.getsockname()[:2])
    peer, address = lsock.accept()
    peer.settimeout(WAIT)
    return sock, peer, address[1], cap


def kernel(sock: WSK_SOCKET) -> socket.socket:
    """The Linux socket behind a WSK socket (for checking kernel state in tests)."""
    fd_owner: Any = sock
    result: socket.socket = fd_owner.sock
    return result


def peer_reads_to_end(peer: socket.socket) -> tuple[bytes, str]:
    """Read until the client's FIN or RST; returns (data, "fin" | "rst")."""
    data = bytearray()
    while True:
        try:
            chunk = peer.recv(1 << 16)
        except ConnectionResetError:
            return bytes(data), "rst"
        if not chunk:
            return bytes(data), "fin"
        data += chunk


def fill_window(
    wsk: WskTestClient, sock: WSK_SOCKET, chunk: int = 256 * 1024, limit: int = 64
) -> tuple[list[Request], int]:
    """Send until a send stays pending (the peer does not read); returns the sends."""
    sends: list[Request] = []
    total = 0
    for _ in range(limit):
        request = wsk.send(sock, b"d" * chunk)
        sends.append(request)
        total += chunk
        if request.returned == STATUS_PENDING and not request.done:
            # One more, queued behind it, so that several are outstanding.
            sends.append(wsk.send(sock, b"e" * chunk))
            return sends, total + chunk
    raise AssertionError("the send window never filled")


# --- a. graceful ------------------------------------------------------------------------------


@pytest.mark.parametrize("host", HOSTS)
def test_graceful_completes_only_when_our_fin_is_acknowledged(
    wsk: WskTestClient, listener: Listener, capture_port: Capture, host: str
) -> None:
    sock, peer, client_port, cap = captured(wsk, listener, capture_port, host)

    sent = wsk.send(sock, b"hello").wait(WAIT)
    assert (sent.status, sent.information) == (STATUS_SUCCESS, 5)
    disc = wsk.disconnect(sock)
    assert disc.returned in (STATUS_PENDING, STATUS_SUCCESS)
    disc.wait(WAIT)
    assert (disc.status, disc.information) == (STATUS_SUCCESS, 0)
    # At completion the transport had finished our half: FIN_WAIT2, nothing unacknowledged.
    assert tcp.tcp_state(kernel(sock)) == tcp.TcpState.FIN_WAIT2
    assert tcp.siocoutq(kernel(sock)) == 0

    fin = cap.wait_fin(from_port=client_port)
    ack = cap.wait_for(lambda s: s.sport != client_port and s.ack_flag and s.ack == fin.seq + 1)
    assert disc.completed_wall is not None
    assert ack.time <= disc.completed_wall + 0.002
    assert peer_reads_to_end(peer) == (b"hello", "fin")
    assert cap.rsts() == []
    peer.close()


def test_graceful_returns_pending_when_it_cannot_finish_at_once(
    wsk: WskTestClient, listener: Listener
) -> None:
    sock, peer, _ = connected(wsk, listener, rcvbuf=4096)
    _sends, total = fill_window(wsk, sock)
    disc = wsk.disconnect(sock)
    assert disc.returned == STATUS_PENDING
    assert not disc.done
    data, end = peer_reads_to_end(peer)
    assert (len(data), end) == (total, "fin")
    disc.wait(WAIT)
    assert disc.status == STATUS_SUCCESS
    assert disc.pending_returned is True
    peer.close()


def test_graceful_waits_for_every_outstanding_send_then_fins(
    wsk: WskTestClient, listener: Listener, capture_port: Capture
) -> None:
    sock, peer, client_port, cap = captured(wsk, listener, capture_port, rcvbuf=4096)
    sends, total = fill_window(wsk, sock)
    disc = wsk.disconnect(sock)
    cap.sync()
    assert cap.fins(from_port=client_port) == [], "FIN went out before the pending sends"
    data, end = peer_reads_to_end(peer)
    assert end == "fin"
    assert len(data) == total
    # Bytes arrive in the order the sends were issued.
    expected = b"".join(
        b"d" * 256 * 1024 if i < len(sends) - 1 else b"e" * 256 * 1024 for i in range(len(sends))
    )
    assert data == expected
    disc.wait(WAIT)
    for send in sends:
        send.wait(WAIT)
        assert send.status == STATUS_SUCCESS
        assert send.completed_at is not None
        assert disc.completed_at is not None
        assert send.completed_at <= disc.completed_at
    assert disc.status == STATUS_SUCCESS
    peer.close()


@pytest.mark.parametrize("host", HOSTS)
def test_graceful_with_final_buffer_sends_it_then_fin(
    wsk: WskTestClient, listener: Listener, capture_port: Capture, host: str
) -> None:
    sock, peer, client_port, cap = captured(wsk, listener, capture_port, host)
    wsk.send(sock, b"first;").wait(WAIT)
    disc = wsk.disconnect(sock, final=b"last words").wait(WAIT)
    assert disc.status == STATUS_SUCCESS
    assert disc.information == len(b"last words")
    assert peer_reads_to_end(peer) == (b"first;last words", "fin")
    fin = cap.wait_fin(from_port=client_port)
    last_data = [s for s in cap.matching(from_port=client_port) if s.length][-1]
    # The FIN follows the final buffer directly: on the same segment, or on the next sequence number.
    if fin.length:
        assert fin == last_data
    else:
        assert fin.seq == last_data.seq + last_data.length
    assert cap.rsts() == []
    peer.close()


# --- b. after a graceful disconnect -----------------------------------------------------------


def test_after_graceful_send_fails_and_receive_goes_on_until_peer_fin(
    wsk: WskTestClient, listener: Listener
) -> None:
    sock, peer, _ = connected(wsk, listener)
    assert wsk.disconnect(sock).wait(WAIT).status == STATUS_SUCCESS
    refused = wsk.send(sock, b"too late")
    assert refused.returned == STATUS_INVALID_DEVICE_STATE
    assert refused.done
    assert refused.status == STATUS_INVALID_DEVICE_STATE
    assert refused.pending_returned is False

    peer.sendall(b"still talking")
    data = b""
    while len(data) < len(b"still talking"):
        request, pool = wsk.receive(sock, 100)
        request.wait(WAIT)
        assert request.status == STATUS_SUCCESS
        assert request.information > 0
        data += bytes(pool[: request.information])
    assert data == b"still talking"
    peer.shutdown(socket.SHUT_WR)
    request, _ = wsk.receive(sock, 100)
    request.wait(WAIT)
    assert (request.status, request.information) == (STATUS_SUCCESS, 0)
    peer.close()


def test_transport_without_half_open_receives_nothing_after_graceful(
    wsk: WskTestClient, listener: Listener
) -> None:
    subsystem.options.half_open = False
    try:
        sock, peer, _ = connected(wsk, listener)
    finally:
        subsystem.options.half_open = True
    pending, _ = wsk.receive(sock, 100)
    assert pending.returned == STATUS_PENDING
    assert wsk.disconnect(sock).wait(WAIT).status == STATUS_SUCCESS
    pending.wait(WAIT)
    assert (pending.status, pending.information) == (STATUS_SUCCESS, 0)
    peer.sendall(b"ignored")
    later, _ = wsk.receive(sock, 100)
    later.wait(WAIT)
    assert (later.status, later.information) == (STATUS_SUCCESS, 0)
    peer.close()


# --- c. a graceful disconnect that cannot finish -----------------------------------------------


@pytest.mark.parametrize("recovery", ["abortive", "close"])
def test_stuck_graceful_is_forced_complete_by_abort_or_close(
    wsk: WskTestClient, listener: Listener, capture_port: Capture, recovery: str
) -> None:
    sock, peer, client_port, cap = captured(wsk, listener, capture_port, rcvbuf=4096)
    sends, _ = fill_window(wsk, sock)
    disc = wsk.disconnect(sock)
    assert disc.returned == STATUS_PENDING
    # The peer never reads: the disconnect stays pending (bounded check) and no FIN is sent.
    with pytest.raises(TimeoutError):
        disc.wait(0.5)
    cap.sync()
    assert cap.fins(from_port=client_port) == []

    if recovery == "abortive":
        abort = wsk.disconnect(sock, flags=WSK_FLAG_ABORTIVE)
        assert abort.returned == STATUS_SUCCESS
        assert abort.status == STATUS_SUCCESS
        expected = STATUS_CONNECTION_ABORTED
    else:
        close = wsk.close_socket(sock)
        assert close.status == STATUS_SUCCESS
        expected = STATUS_CANCELLED
    disc.wait(WAIT)
    assert disc.status == expected
    assert disc.completed_wall is not None
    rst = cap.wait_rst(from_port=client_port)
    for send in sends:
        send.wait(WAIT)
        assert send.status in (STATUS_SUCCESS, STATUS_CANCELLED)
    assert any(send.status == STATUS_CANCELLED for send in sends)
    assert cap.fins(from_port=client_port) == []
    # The peer sees the reset (after whatever it had already received).
    assert peer_reads_to_end(peer)[1] == "rst"
    assert rst.time <= time.time()
    peer.close()


# --- d. abortive ----------------------------------------------------------------------------------


@pytest.mark.parametrize("host", HOSTS)
def test_abortive_sends_rst_at_once_and_ends_pending_requests(
    wsk: WskTestClient, listener: Listener, capture_port: Capture, host: str
) -> None:
    sock, peer, client_port, cap = captured(wsk, listener, capture_port, host, rcvbuf=4096)
    receive, _ = wsk.receive(sock, 100)
    assert receive.returned == STATUS_PENDING
    sends, _ = fill_window(wsk, sock)

    abort = wsk.disconnect(sock, flags=WSK_FLAG_ABORTIVE)
    assert abort.returned == STATUS_SUCCESS
    assert abort.done
    cap.wait_rst(from_port=client_port, timeout=2)
    assert receive.done
    assert receive.status == STATUS_CONNECTION_ABORTED
    pending_sends = [s for s in sends if s.returned == STATUS_PENDING]
    assert pending_sends
    assert all(s.done for s in sends)
    assert {s.status for s in pending_sends} <= {STATUS_CANCELLED, STATUS_SUCCESS}
    assert pending_sends[-1].status == STATUS_CANCELLED
    # The cancelled requests completed before the abortive IRP.
    assert receive.completed_at is not None
    assert abort.completed_at is not None
    assert receive.completed_at <= abort.completed_at

    # Nothing succeeds afterwards; the socket object is still valid until closed.
    again = wsk.send(sock, b"x")
    assert again.returned == STATUS_CONNECTION_ABORTED
    late, _ = wsk.receive(sock, 10)
    assert late.returned == STATUS_CONNECTION_ABORTED
    remote_request, remote = wsk.remote_address(sock)
    assert remote_request.status == STATUS_SUCCESS
    assert remote.to_tuple()[1] == peer.getsockname()[1]
    assert peer_reads_to_end(peer)[1] == "rst"

    cap.sync()
    before = len(cap.matching(from_port=client_port))
    assert wsk.close_socket(sock).status == STATUS_SUCCESS
    cap.sync()
    assert len(cap.matching(from_port=client_port)) == before, (
        "close after abort put something on the wire"
    )
    assert cap.fins(from_port=client_port) == []
    peer.close()


# --- e. buffer with WSK_FLAG_ABORTIVE -------------------------------------------------------------


@pytest.mark.no_verifier
def test_buffer_with_abortive_is_refused_and_leaves_the_connection_alone(
    wsk: WskTestClient, listener: Listener, capture_port: Capture
) -> None:
    sock, peer, client_port, cap = captured(wsk, listener, capture_port)
    refused = wsk.disconnect(sock, final=b"data", flags=WSK_FLAG_ABORTIVE)
    assert refused.returned == STATUS_INVALID_PARAMETER
    assert refused.done
    assert refused.status == STATUS_INVALID_PARAMETER
    assert refused.information == 0
    cap.sync()
    assert cap.rsts() == []
    assert cap.fins() == []
    # Still fully usable.
    assert wsk.send(sock, b"alive").wait(WAIT).status == STATUS_SUCCESS
    assert peer.recv(10) == b"alive"
    assert wsk.disconnect(sock).wait(WAIT).status == STATUS_SUCCESS
    assert peer_reads_to_end(peer) == (b"", "fin")
    assert client_port == kernel(sock).getsockname()[1]
    peer.close()


# --- f. never connected ---------------------------------------------------------------------------


@pytest.mark.parametrize("flags", [0, WSK_FLAG_ABORTIVE])
def test_disconnect_on_a_socket_never_connected_fails_and_completes(
    wsk: WskTestClient, flags: int
) -> None:
    made = wsk.socket(AF_INET)
    assert made.status == STATUS_SUCCESS
    sock = made.information
    request = wsk.disconnect(sock, flags=flags)
    assert request.returned == STATUS_INVALID_DEVICE_STATE
    assert request.done
    assert request.status == STATUS_INVALID_DEVICE_STATE


# --- g. a socket that no longer works ---------------------------------------------------------------


def test_peer_reset_makes_disconnect_fail_with_file_forced_closed(
    wsk: WskTestClient, listener: Listener
) -> None:
    sock, peer, _ = connected(wsk, listener)
    tcp.abort_with_rst(peer)
    receive, _ = wsk.receive(sock, 10)
    receive.wait(WAIT)
    assert receive.status == STATUS_CONNECTION_RESET
    for flags in (0, WSK_FLAG_ABORTIVE):
        request = wsk.disconnect(sock, flags=flags)
        assert request.returned == STATUS_FILE_FORCED_CLOSED
        assert request.status == STATUS_FILE_FORCED_CLOSED
    assert wsk.send(sock, b"x").returned == STATUS_CONNECTION_RESET
    peer.close()


def test_peer_reset_seen_only_by_disconnect_is_still_detected(
    wsk: WskTestClient, listener: Listener
) -> None:
    """No receive was pending when the RST arrived: the durable TCP state tells."""
    sock, peer, _ = connected(wsk, listener)
    tcp.abort_with_rst(peer)
    deadline = time.monotonic() + WAIT
    while tcp.tcp_state(kernel(sock)) != tcp.TcpState.CLOSE:  # bounded: the RST is in flight
        assert time.monotonic() < deadline
    assert wsk.disconnect(sock).returned == STATUS_FILE_FORCED_CLOSED
    peer.close()


def test_local_abort_then_disconnect_is_file_forced_closed(
    wsk: WskTestClient, listener: Listener
) -> None:
    sock, peer, _ = connected(wsk, listener)
    assert wsk.disconnect(sock, flags=WSK_FLAG_ABORTIVE).returned == STATUS_SUCCESS
    assert wsk.disconnect(sock).returned == STATUS_FILE_FORCED_CLOSED
    assert wsk.disconnect(sock, flags=WSK_FLAG_ABORTIVE).returned == STATUS_FILE_FORCED_CLOSED
    peer.close()


# --- h. close ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", HOSTS)
def test_close_without_disconnect_sends_rst(
    wsk: WskTestClient, listener: Listener, capture_port: Capture, host: str
) -> None:
    sock, peer, client_port, cap = captured(wsk, listener, capture_port, host)
    wsk.send(sock, b"bye?").wait(WAIT)
    assert peer.recv(10) == b"bye?"
    assert wsk.close_socket(sock).status == STATUS_SUCCESS
    cap.wait_rst(from_port=client_port)
    assert cap.fins(from_port=client_port) == []
    with pytest.raises(ConnectionResetError):
        peer.recv(10)
    peer.close()


def test_close_after_graceful_and_peer_fin_puts_nothing_on_the_wire(
    wsk: WskTestClient, listener: Listener, capture_port: Capture
) -> None:
    sock, peer, client_port, cap = captured(wsk, listener, capture_port)
    peer.sendall(b"unread by the client")
    assert wsk.disconnect(sock).wait(WAIT).status == STATUS_SUCCESS
    assert peer_reads_to_end(peer) == (b"", "fin")
    peer.shutdown(socket.SHUT_WR)
    # Wait (bounded) until the peer's FIN reached the client's kernel.
    cap.wait_fin(from_port=peer.getsockname()[1])
    cap.wait_for(lambda s: s.sport == client_port and s.ack_flag and not s.fin, count=2)
    cap.sync()
    before = len(cap.matching(from_port=client_port))
    assert wsk.close_socket(sock).status == STATUS_SUCCESS
    cap.sync()
    assert len(cap.matching(from_port=client_port)) == before
    assert cap.rsts() == []
    peer.close()


def test_close_cancels_pending_requests_and_completes_last(
    wsk: WskTestClient, listener: Listener
) -> None:
    sock, peer, _ = connected(wsk, listener)
    receives = [wsk.receive(sock, 10)[0] for _ in range(3)]
    assert all(r.returned == STATUS_PENDING for r in receives)
    close = wsk.close_socket(sock)
    assert close.status == STATUS_SUCCESS
    for r in receives:
        assert r.done
        assert r.status == STATUS_CANCELLED
        assert r.information == 0
        assert r.completed_at is not None
        assert close.completed_at is not None
        assert r.completed_at <= close.completed_at
    peer.close()


@pytest.mark.no_verifier
def test_calls_on_a_closed_socket_fail_cleanly_and_do_not_disturb_others(
    wsk: WskTestClient, listener: Listener
) -> None:
    sock, peer, _ = connected(wsk, listener)
    other, other_peer, _ = connected(wsk, listener)
    wsk.close_socket(sock)
    _pool, buf = make_buffer(b"x")
    d = wsk.dispatch(sock)
    for name, fn, args in [
        ("WskSend", d.WskSend, (sock, buf, 0)),
        ("WskReceive", d.WskReceive, (sock, buf, 0)),
        ("WskDisconnect", d.WskDisconnect, (sock, None, 0)),
        ("WskDisconnect", d.WskDisconnect, (sock, None, WSK_FLAG_ABORTIVE)),
        ("WskCloseSocket", d.WskCloseSocket, (sock,)),
    ]:
        request = wsk.start(name, fn, *args)
        assert request.returned == STATUS_INVALID_HANDLE, name
        assert request.done
        assert request.status == STATUS_INVALID_HANDLE
    assert wsk.send(other, b"fine").wait(WAIT).status == STATUS_SUCCESS
    assert other_peer.recv(10) == b"fine"
    peer.close()
    other_peer.close()


# --- i. the peer disconnects ---------------------------------------------------------------------


@pytest.mark.parametrize("host", HOSTS)
def test_peer_fin_completes_every_pending_receive_with_zero_after_data(
    wsk: WskTestClient, listener: Listener, host: str
) -> None:
    sock, peer, _ = connected(wsk, listener, host)
    first, pool = wsk.receive(sock, 100)
    others = [wsk.receive(sock, 100)[0] for _ in range(2)]
    peer.sendall(b"data before fin")
    peer.shutdown(socket.SHUT_WR)
    first.wait(WAIT)
    assert first.status == STATUS_SUCCESS
    assert bytes(pool[: first.information]) == b"data before fin"
    for r in others:
        r.wait(WAIT)
        assert (r.status, r.information) == (STATUS_SUCCESS, 0)
    late, _ = wsk.receive(sock, 100)
    assert late.returned == STATUS_SUCCESS
    assert late.information == 0
    # After the peer's FIN we can still send (half-open from their side).
    assert wsk.send(sock, b"reply").wait(WAIT).status == STATUS_SUCCESS
    assert peer.recv(10) == b"reply"
    peer.close()


def test_peer_rst_fails_receives_after_data_already_received(
    wsk: WskTestClient, listener: Listener
) -> None:
    sock, peer, _ = connected(wsk, listener)
    peer.sendall(b"last data")
    tcp.abort_with_rst(peer)
    data, final = wsk.receive_all(sock, timeout=WAIT)
    assert data == b"last data"
    assert final.status == STATUS_CONNECTION_RESET
    again, _ = wsk.receive(sock, 10)
    assert again.returned == STATUS_CONNECTION_RESET
    peer.close()


def test_fin_then_rst_is_read_from_the_durable_state(
    wsk: WskTestClient, listener: Listener
) -> None:
    sock, peer, _ = connected(wsk, listener)
    peer.shutdown(socket.SHUT_WR)
    first, _ = wsk.receive(sock, 10)
    first.wait(WAIT)
    assert (first.status, first.information) == (STATUS_SUCCESS, 0)
    tcp.abort_with_rst(peer)
    deadline = time.monotonic() + WAIT
    while tcp.tcp_state(kernel(sock)) != tcp.TcpState.CLOSE:  # bounded: the RST is in flight
        assert time.monotonic() < deadline
    # recv() would only ever say EOF here; the TCP state says the peer also reset.
    assert wsk.disconnect(sock).returned == STATUS_FILE_FORCED_CLOSED
    peer.close()


# --- completion context -------------------------------------------------------------------------


def test_completion_routines_run_on_the_provider_thread_at_dispatch_level(
    wsk: WskTestClient, listener: Listener
) -> None:
    sock, peer, _ = connected(wsk, listener)
    receive, _ = wsk.receive(sock, 10)
    peer.sendall(b"x")
    receive.wait(WAIT)
    assert receive.completion_thread == subsystem.engine.thread_id
    assert receive.completion_irql == DISPATCH_LEVEL
    assert receive.pending_returned is True
    sent = wsk.send(sock, b"y").wait(WAIT)
    assert sent.completion_irql == DISPATCH_LEVEL
    assert sent.returned == STATUS_SUCCESS
    assert sent.pending_returned is False
    peer.close()


def test_connect_refused_and_unbound_connect(wsk: WskTestClient, listener: Listener) -> None:
    from pywsk.nt import STATUS_CONNECTION_REFUSED
    from pywsk.wsk import sockaddr_from_tuple

    # A port held by a bound socket that does not listen (refused, and not reusable by others).
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    made = wsk.socket(AF_INET)
    sock = made.information
    d = wsk.dispatch(sock)
    unbound = wsk.call(
        "WskConnect", d.WskConnect, sock, sockaddr_from_tuple(("127.0.0.1", port)), 0
    )
    assert unbound.returned == STATUS_INVALID_DEVICE_STATE == unbound.status
    bound = wsk.call("WskBind", d.WskBind, sock, sockaddr_from_tuple(("127.0.0.1", 0)), 0)
    assert bound.status == STATUS_SUCCESS
    refused = wsk.call(
        "WskConnect", d.WskConnect, sock, sockaddr_from_tuple(("127.0.0.1", port)), 0
    )
    assert refused.status == STATUS_CONNECTION_REFUSED
    assert errno.ECONNREFUSED  # the Linux cause behind it
    holder.close()
