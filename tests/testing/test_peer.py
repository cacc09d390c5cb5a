"""LoopbackPeer and the tcp probes, against real loopback sockets (no root needed)."""

from __future__ import annotations

import errno
import socket
import threading
import time

import pytest

from pywsk.testing import (
    CLOSE,
    CLOSE_WAIT,
    ESTABLISHED,
    FIN_WAIT1,
    FIN_WAIT2,
    Abort,
    AwaitRstAfterFin,
    Close,
    LoopbackPeer,
    PeerConnection,
    PeerScriptError,
    Read,
    ReadToEnd,
    Send,
    ShutdownWrite,
    TcpState,
    WaitFor,
    abort_with_rst,
    has_ipv6_loopback,
    set_linger_abort,
    siocinq,
    siocoutq,
    so_error,
    tcp_state,
    tcp_state_name,
)

WAIT = 5.0  # generous bound for anything that should happen in milliseconds


HOSTS = [
    "127.0.0.1",
    pytest.param(
        "::1", marks=pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")
    ),
]


def connect(peer: LoopbackPeer) -> socket.socket:
    return socket.create_connection(peer.address, timeout=WAIT)


# --- how the peer classifies the client's end --------------------------------------------


@pytest.mark.parametrize("host", HOSTS)
def test_client_shutdown_write_is_a_fin(host: str) -> None:
    with LoopbackPeer([ReadToEnd()], host=host) as peer, connect(peer) as client:
        client.sendall(b"request")
        client.shutdown(socket.SHUT_WR)
        seen = peer.wait_end(WAIT)
        assert seen.end == "fin"
        assert seen.received == b"request"
        assert seen.end_state == CLOSE_WAIT
        assert seen.eof_at is not None
        assert seen.rst_at is None
        assert seen.client == client.getsockname()[:2]


@pytest.mark.parametrize("host", HOSTS)
def test_client_connect_unspec_is_an_rst_and_data_before_it_arrives(host: str) -> None:
    with LoopbackPeer([ReadToEnd()], host=host) as peer, connect(peer) as client:
        client.sendall(b"x" * 5000)
        peer.wait_received(5000, WAIT)
        abort_with_rst(client)
        seen = peer.wait_end(WAIT)
        assert seen.end == "rst"
        assert seen.received_total == 5000
        assert seen.end_state == CLOSE
        assert seen.rst_at is not None
        assert seen.eof_at is None


def test_client_linger_zero_close_is_an_rst() -> None:
    with LoopbackPeer([ReadToEnd()]) as peer:
        client = connect(peer)
        peer.wait_accepted(WAIT)
        set_linger_abort(client)
        client.close()
        assert peer.wait_end(WAIT).end == "rst"


def test_fin_then_rst_before_the_peer_reads_is_fin_plus_rst() -> None:
    go = threading.Event()
    with LoopbackPeer([WaitFor(go), ReadToEnd()]) as peer, connect(peer) as client:
        peer.wait_accepted(WAIT)
        client.shutdown(socket.SHUT_WR)  # the FIN leaves at once (nothing queued)
        abort_with_rst(client)  # the RST follows it in the same flow
        go.set()  # only now does the peer read: EOF, with the socket already CLOSE
        seen = peer.wait_end(WAIT)
        assert seen.end == "fin+rst"
        assert seen.end_state == CLOSE
        assert seen.end_errno == errno.EPIPE
        assert seen.eof_at is not None
        assert seen.rst_at is not None


def test_rst_after_the_peer_already_read_the_fin_is_upgraded() -> None:
    with (
        LoopbackPeer([ReadToEnd(), AwaitRstAfterFin(timeout=WAIT)]) as peer,
        connect(peer) as client,
    ):
        client.shutdown(socket.SHUT_WR)
        assert peer.wait_end(WAIT).end == "fin"
        abort_with_rst(client)
        seen = peer.result(WAIT)
        assert seen.end == "fin+rst"
        assert seen.end_errno == errno.EPIPE
        assert seen.eof_at is not None
        assert seen.rst_at is not None
        assert seen.rst_at >= seen.eof_at


def test_await_rst_after_fin_without_an_rst_stays_fin() -> None:
    with (
        LoopbackPeer([ReadToEnd(), AwaitRstAfterFin(timeout=0.2)]) as peer,
        connect(peer) as client,
    ):
        client.shutdown(socket.SHUT_WR)
        seen = peer.result(WAIT)
        assert seen.end == "fin"
        assert seen.rst_at is None


def test_fin_after_the_peers_own_shutdown_is_still_a_fin() -> None:
    # The peer's socket reads CLOSE (TIME_WAIT lives in a minisocket), yet no RST came.
    with (
        LoopbackPeer([ShutdownWrite(), ReadToEnd()]) as peer,
        connect(peer) as client,
    ):
        assert client.recv(1) == b""
        client.shutdown(socket.SHUT_WR)
        seen = peer.result(WAIT)
        assert seen.end == "fin"
        assert seen.end_errno == 0


# --- what the peer does -----------------------------------------------------------------------


@pytest.mark.parametrize("host", HOSTS)
def test_peer_sends_then_shuts_down_gracefully(host: str) -> None:
    with (
        LoopbackPeer([Send(b"hello"), ShutdownWrite()], host=host) as peer,
        connect(peer) as client,
    ):
        assert _recv_until_eof(client) == b"hello"
        assert tcp_state(client) == CLOSE_WAIT
        seen = peer.result(WAIT)
        assert seen.sent == b"hello"
        assert seen.end == "open"  # the client has not ended its side


@pytest.mark.parametrize("linger", [False, True], ids=["connect_unspec", "linger0_close"])
def test_peer_abort_resets_the_client(linger: bool) -> None:
    # Gated: an RST sent right after accept() can beat the client's connect() returning,
    # which then fails with ECONNRESET itself.
    go = threading.Event()
    with LoopbackPeer([WaitFor(go), Abort(linger=linger)]) as peer, connect(peer) as client:
        go.set()
        peer.result(WAIT)
        with pytest.raises(ConnectionResetError):
            _recv_until_eof(client)
        assert tcp_state(client) == CLOSE


def test_peer_close_with_nothing_unread_is_a_fin() -> None:
    with LoopbackPeer([Close()]) as peer, connect(peer) as client:
        peer.result(WAIT)
        assert _recv_until_eof(client) == b""
        assert tcp_state(client) == CLOSE_WAIT


def test_half_close_request_response() -> None:
    with (
        LoopbackPeer([ReadToEnd(), Send(b"response"), ShutdownWrite()]) as peer,
        connect(peer) as client,
    ):
        client.sendall(b"request")
        client.shutdown(socket.SHUT_WR)
        assert _recv_until_eof(client) == b"response"
        seen = peer.result(WAIT)
        assert (seen.received, seen.sent, seen.end) == (b"request", b"response", "fin")


def test_callable_script_gets_the_connection() -> None:
    def echo_upper(conn: PeerConnection) -> None:
        conn.send(conn.read(5).upper())
        conn.read_to_end()

    with LoopbackPeer(echo_upper) as peer, connect(peer) as client:
        client.sendall(b"hello")
        assert client.recv(5) == b"HELLO"
        client.shutdown(socket.SHUT_WR)
        seen = peer.result(WAIT)
        assert seen.end == "fin"
        assert seen.steps_done == 1


def test_peer_that_never_reads_fills_the_window_until_released() -> None:
    go = threading.Event()
    with (
        LoopbackPeer([WaitFor(go), ReadToEnd()], rcvbuf=4096) as peer,
        connect(peer) as client,
    ):
        client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        client.setblocking(False)
        sent = 0
        chunk = b"z" * 4096
        while sent < 64 * 1024 * 1024:  # bound: the window closes long before this
            try:
                sent += client.send(chunk)
            except BlockingIOError:
                break
        assert sent < 64 * 1024 * 1024, "the peer's window never filled"
        assert siocoutq(client) > 0
        assert peer.wait_accepted(WAIT).received_total == 0
        go.set()
        client.setblocking(True)
        client.shutdown(socket.SHUT_WR)
        seen = peer.wait_end(WAIT)
        assert seen.end == "fin"
        assert seen.received_total == sent


def test_several_connections_each_run_the_script() -> None:
    with (
        LoopbackPeer([ReadToEnd()], connections=2) as peer,
        connect(peer) as first,
        connect(peer) as second,
    ):
        first.sendall(b"one")
        first.shutdown(socket.SHUT_WR)
        abort_with_rst(second)
        by_port = {r.client[1]: r for r in peer.results(WAIT)}
        assert by_port[first.getsockname()[1]].end == "fin"
        assert by_port[first.getsockname()[1]].received == b"one"
        assert by_port[second.getsockname()[1]].end == "rst"


# --- bounded waits and failures -------------------------------------------------------------


def test_script_failure_surfaces_from_result() -> None:
    with LoopbackPeer([Read(10)]) as peer, connect(peer) as client:
        client.sendall(b"abc")
        client.shutdown(socket.SHUT_WR)
        assert peer.wait_end(WAIT).end == "fin"
        with pytest.raises(PeerScriptError) as info:
            peer.result(WAIT)
        assert isinstance(info.value.__cause__, EOFError)


def test_wait_end_fails_fast_when_the_script_never_reads() -> None:
    with LoopbackPeer([]) as peer, connect(peer) as client:
        client.shutdown(socket.SHUT_WR)
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="without seeing"):
            peer.wait_end(WAIT)
        assert time.monotonic() - started < WAIT


def test_wait_end_times_out_when_the_client_stays() -> None:
    with LoopbackPeer([ReadToEnd()]) as peer, connect(peer):
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="timed out"):
            peer.wait_end(0.2)
        assert time.monotonic() - started < WAIT


def test_step_timeout_bounds_the_script() -> None:
    with LoopbackPeer([ReadToEnd(timeout=0.2)]) as peer, connect(peer):
        with pytest.raises(PeerScriptError) as info:
            peer.result(WAIT)
        assert isinstance(info.value.__cause__, TimeoutError)


@pytest.mark.parametrize(
    "script", [[ReadToEnd()], [WaitFor(threading.Event())]], ids=["reading", "waiting"]
)
def test_close_stops_a_blocked_script(script: list[ReadToEnd] | list[WaitFor]) -> None:
    peer = LoopbackPeer(script).start()
    with connect(peer):
        peer.wait_accepted(WAIT)
        started = time.monotonic()
        peer.close()
        assert time.monotonic() - started < 2.0
    assert peer.observation().stopped
    assert not [t for t in threading.enumerate() if t.name.startswith("LoopbackPeer")]


def test_close_without_any_connection() -> None:
    peer = LoopbackPeer([ReadToEnd()]).start()
    port = peer.port
    peer.close()
    peer.close()  # idempotent
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port)):
        pass


# --- tcp probes ------------------------------------------------------------------------------------


def test_tcp_state_follows_a_graceful_close() -> None:
    with LoopbackPeer([]) as peer, connect(peer) as client:
        assert tcp_state(client) == ESTABLISHED
        client.shutdown(socket.SHUT_WR)
        assert tcp_state(client) in (FIN_WAIT1, FIN_WAIT2)


def test_abort_with_rst_keeps_the_fd() -> None:
    with LoopbackPeer([]) as peer, connect(peer) as client:
        fd = client.fileno()
        abort_with_rst(fd)
        assert client.fileno() == fd
        assert tcp_state(client) == CLOSE
        assert so_error(client) == errno.ECONNRESET  # our own abort, reported once
        assert so_error(client) == 0
        with pytest.raises(OSError) as info:
            client.recv(1)
        assert info.value.errno == errno.ENOTCONN


def test_queue_probes() -> None:
    with LoopbackPeer([]) as peer, connect(peer) as client:
        server_view = peer.wait_accepted(WAIT)
        assert server_view.client == client.getsockname()[:2]
        assert siocoutq(client) == 0
        assert siocinq(client) == 0


def test_state_names() -> None:
    assert tcp_state_name(5) == "FIN_WAIT2"
    assert tcp_state_name(TcpState.CLOSE) == "CLOSE"
    assert tcp_state_name(99) == "99"


def _recv_until_eof(sock: socket.socket) -> bytes:
    data = bytearray()
    while chunk := sock.recv(65536):  # the socket has a timeout: bounded
        data += chunk
    return bytes(data)
