"""pywsk.aio connections against plain Linux peers on loopback: the graceful path, FIN versus
RST, final buffers, completion only after our FIN is acknowledged, several outstanding
operations, and misuse.  Each test runs on asyncio and on uvloop."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import pytest
from aio_helpers import WAIT, Run, connected, in_thread, kernel, loop_fixture

import pywsk.aio
from pywsk import errors
from pywsk.core.ending import Ending
from pywsk.nt import (
    STATUS_CONNECTION_ABORTED,
    STATUS_CONNECTION_RESET,
    STATUS_INVALID_HANDLE,
    STATUS_PIPE_DISCONNECTED,
)
from pywsk.testing import tcp
from pywsk.testing.capture import WireCapture
from pywsk.testing.contract import peer_reads_to_end
from pywsk.wsk import IPPROTO_TCP, TCP_NODELAY

Listener = Callable[..., socket.socket]
Capture = Callable[[int], WireCapture]

run = loop_fixture()

HOSTS = [
    "127.0.0.1",
    pytest.param(
        "::1", marks=pytest.mark.skipif(not tcp.has_ipv6_loopback(), reason="no IPv6 loopback")
    ),
]


@pytest.mark.parametrize("host", HOSTS)
def test_graceful_path_ends_without_rst(run: Run, listener: Listener, host: str) -> None:
    async def main() -> None:
        conn, peer = await connected(listener, host)
        assert conn.remote_address[1] == peer.getsockname()[1]
        assert conn.local_address[1] == peer.getpeername()[1]
        await conn.send_all(b"hello ")
        await conn.disconnect(b"world")
        # Returned once the transport completed our half: FIN acknowledged.
        assert tcp.tcp_state(kernel(conn)) == tcp.FIN_WAIT2
        assert tcp.siocoutq(kernel(conn)) == 0
        assert peer_reads_to_end(peer) == (b"hello world", "fin")
        assert [conn.disconnected_by] == [None]  # our FIN alone ends nothing

        peer.sendall(b"reply")
        peer.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := await conn.receive_some():
            received += chunk
        assert received == b"reply"
        assert conn.disconnected_by is Ending.PEER_FIN
        assert await conn.receive_some() == b""  # for ever after
        assert (conn.bytes_sent, conn.bytes_received) == (11, 5)
        await conn.aclose()
        await conn.aclose()  # idempotent
        assert conn.disconnected_by is Ending.PEER_FIN
        assert tcp.so_error(peer) == 0
        peer.close()

    run(main())


def test_graceful_path_on_the_wire(run: Run, listener: Listener, capture_port: Capture) -> None:
    async def main() -> None:
        lsock = listener()
        cap = capture_port(lsock.getsockname()[1])
        async with await pywsk.aio.connect("127.0.0.1", lsock.getsockname()[1]) as conn:
            peer, _ = lsock.accept()
            peer.settimeout(WAIT)
            await conn.disconnect(b"bye")
            assert peer_reads_to_end(peer) == (b"bye", "fin")
            peer.shutdown(socket.SHUT_WR)
            assert await conn.receive_some() == b""
        port = conn.local_address[1]
        cap.wait_fin(from_port=port)
        cap.wait_fin(from_port=lsock.getsockname()[1])
        cap.sync()
        assert cap.rsts() == []
        peer.close()

    run(main())


def test_aclose_before_disconnect_resets(run: Run, listener: Listener) -> None:
    async def main() -> None:
        conn, peer = await connected(listener)
        await conn.send_all(b"data")
        await conn.aclose()
        assert conn.disconnected_by is Ending.OUR_RST
        assert await in_thread(peer_reads_to_end, peer) == (b"data", "rst")
        peer.close()

    run(main())


def test_disconnect_returns_only_when_our_fin_is_acknowledged(run: Run, listener: Listener) -> None:
    async def main() -> None:
        conn, peer = await connected(listener, rcvbuf=4096)
        payload = bytes(range(256)) * 4096  # 1 MiB: far more than the peer's buffers
        sending = asyncio.create_task(conn.send_all(payload))
        disconnecting = asyncio.create_task(conn.disconnect())
        # The peer does not read: neither can complete (a bounded check, not a sync).
        done, _ = await asyncio.wait({sending, disconnecting}, timeout=0.3)
        assert not done
        assert tcp.tcp_state(kernel(conn)) == tcp.ESTABLISHED  # no FIN before the data
        data, end = await in_thread(peer_reads_to_end, peer)
        async with asyncio.timeout(WAIT):
            await sending
            await disconnecting
        assert (data, end) == (payload, "fin")
        assert tcp.tcp_state(kernel(conn)) == tcp.FIN_WAIT2
        assert tcp.siocoutq(kernel(conn)) == 0
        await conn.disconnect()  # again: the same, completed disconnect
        await conn.aclose()
        peer.close()

    run(main())


def test_peer_fin_is_end_of_data(run: Run, listener: Listener) -> None:
    async def main() -> None:
        conn, peer = await connected(listener)
        peer.sendall(b"last words")
        peer.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := await conn.receive_some(3):
            assert len(chunk) <= 3
            received += chunk
        assert received == b"last words"
        assert conn.disconnected_by is Ending.PEER_FIN
        # Half-open: we may still send after the peer's FIN.
        await conn.send_all(b"still here")
        await conn.disconnect()
        assert peer_reads_to_end(peer) == (b"still here", "fin")
        await conn.aclose()
        peer.close()

    run(main())


def test_peer_rst_is_connection_reset(run: Run, listener: Listener) -> None:
    async def main() -> None:
        conn, peer = await connected(listener)
        peer.sendall(b"before")
        assert await conn.receive_some() == b"before"
        tcp.abort_with_rst(peer)
        with pytest.raises(ConnectionResetError) as caught:
            await conn.receive_some()
        assert isinstance(caught.value, errors.WskConnectionResetError)
        assert caught.value.status == STATUS_CONNECTION_RESET
        assert conn.disconnected_by is Ending.PEER_RST
        with pytest.raises(ConnectionResetError):
            await conn.send_all(b"x")
        await conn.aclose()
        assert conn.disconnected_by is Ending.PEER_RST
        peer.close()

    run(main())


def test_peer_fin_then_rst_is_reported_as_both(run: Run, listener: Listener) -> None:
    async def main() -> None:
        conn, peer = await connected(listener)
        peer.shutdown(socket.SHUT_WR)
        assert await conn.receive_some() == b""
        endings = [conn.disconnected_by]
        tcp.abort_with_rst(peer)
        with pytest.raises(ConnectionResetError):
            await conn.send_all(b"x" * 100_000)
        endings.append(conn.disconnected_by)
        assert endings == [Ending.PEER_FIN, Ending.PEER_FIN_THEN_RST]
        await conn.aclose()
        peer.close()

    run(main())


def test_abort_after_our_fin_is_our_fin_then_rst(run: Run, listener: Listener) -> None:
    async def main() -> None:
        conn, peer = await connected(listener)
        await conn.send_all(b"all of it")
        await conn.disconnect()
        endings = [conn.disconnected_by]  # our FIN alone ends nothing
        assert peer.recv(100) == b"all of it"
        assert peer.recv(100) == b""  # our FIN
        await conn.abort()
        endings.append(conn.disconnected_by)
        assert endings == [None, Ending.OUR_FIN_THEN_RST]
        # Our RST is there (Linux reports an RST met in CLOSE_WAIT as EPIPE).
        with pytest.raises(BrokenPipeError):
            peer.sendall(b"x")
        await conn.aclose()
        peer.close()

    run(main())


def test_abort_resets_and_ends_pending_requests(run: Run, listener: Listener) -> None:
    async def main() -> None:
        conn, peer = await connected(listener)
        receiving = asyncio.create_task(conn.receive_some())
        await asyncio.sleep(0)  # let it issue its WskReceive
        await conn.abort()
        with pytest.raises(ConnectionAbortedError) as caught:
            await receiving
        assert caught.value.status == STATUS_CONNECTION_ABORTED  # type: ignore[attr-defined]
        assert conn.disconnected_by is Ending.OUR_RST
        assert await in_thread(peer_reads_to_end, peer) == (b"", "rst")
        with pytest.raises(errors.WskConnectionAbortedError):
            await conn.send_all(b"x")
        await conn.abort()  # nothing more to do
        assert conn.remote_address[1] == peer.getsockname()[1]  # the object is still valid
        await conn.aclose()
        peer.close()

    run(main())


def test_final_buffer_follows_every_pending_send(run: Run, listener: Listener) -> None:
    async def main() -> None:
        conn, peer = await connected(listener, rcvbuf=4096)
        parts = [bytes([i]) * 200_000 for i in range(1, 4)]
        sends = [asyncio.create_task(conn.send_all(part)) for part in parts]
        disconnecting = asyncio.create_task(conn.disconnect(b"final"))
        receiving = asyncio.create_task(conn.receive_some())
        done, _ = await asyncio.wait({*sends[1:], disconnecting, receiving}, timeout=0.2)
        assert not done  # several operations outstanding at once
        data, end = await in_thread(peer_reads_to_end, peer)
        assert (data, end) == (b"".join(parts) + b"final", "fin")
        async with asyncio.timeout(WAIT):
            await asyncio.gather(*sends, disconnecting)
        assert conn.bytes_sent == 600_005
        # Half-open: the receive still waits for the peer's data.
        assert not receiving.done()
        peer.sendall(b"answer")
        async with asyncio.timeout(WAIT):
            assert await receiving == b"answer"
        peer.shutdown(socket.SHUT_WR)
        assert await conn.receive_some() == b""
        await conn.aclose()
        assert conn.disconnected_by is Ending.PEER_FIN
        peer.close()

    run(main())


def test_misuse_is_refused(run: Run, listener: Listener) -> None:
    async def main() -> None:
        conn, peer = await connected(listener)
        receiving = asyncio.create_task(conn.receive_some())
        await asyncio.sleep(0)
        with pytest.raises(errors.BusyError):
            await conn.receive_some()
        with pytest.raises(ValueError, match="at least 1"):
            await conn.receive_some(0)
        with pytest.raises(TypeError):
            await conn.receive_some(1.5)  # type: ignore[arg-type]
        await conn.set_option(IPPROTO_TCP, TCP_NODELAY, 1)
        assert kernel(conn).getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        await conn.disconnect()
        with pytest.raises(errors.WskBrokenPipeError) as refused:
            await conn.send_all(b"too late")
        assert isinstance(refused.value, BrokenPipeError)
        assert refused.value.status == STATUS_PIPE_DISCONNECTED
        with pytest.raises(errors.WskBrokenPipeError):
            await conn.disconnect(b"more")
        await conn.aclose()
        with pytest.raises(errors.SocketClosedError) as closed:
            await receiving  # the pending receive learns of the close
        assert closed.value.status == STATUS_INVALID_HANDLE
        for call in (conn.receive_some(), conn.send_all(b"x"), conn.disconnect()):
            with pytest.raises(errors.SocketClosedError):
                await call
        await conn.abort()  # nothing to do after close
        peer.close()

    run(main())


def test_connect_failures_are_oserrors_with_status(run: Run) -> None:
    async def main() -> None:
        with socket.socket() as unused:
            unused.bind(("127.0.0.1", 0))
            port = unused.getsockname()[1]  # bound, not listening: refused
            with pytest.raises(ConnectionRefusedError) as caught:
                await pywsk.aio.connect("127.0.0.1", port)
        assert isinstance(caught.value, errors.NtStatusError)
        assert "WskConnect" in str(caught.value)  # the operation, named at the boundary
        assert caught.value.__suppress_context__  # nothing internal chained
        with pytest.raises(socket.gaierror):
            await pywsk.aio.connect("no-such-host.invalid", 80)

    run(main())


def test_connect_by_name(run: Run, listener: Listener) -> None:
    async def main() -> None:
        lsock = listener()
        async with await pywsk.aio.connect("localhost", lsock.getsockname()[1]) as conn:
            peer, _ = lsock.accept()
            assert conn.remote_address[:2] == lsock.getsockname()[:2]
            await conn.abort()
        peer.close()

    run(main())


def test_disconnect_reason_is_a_deprecated_alias() -> None:
    with pytest.warns(DeprecationWarning, match="disconnected_by reports"):
        reason = pywsk.aio.DisconnectReason
    assert reason.PEER_GRACEFUL.value == "peer-graceful"  # what pywsk.sync still reports
    with pytest.raises(AttributeError):
        _ = pywsk.aio.NoSuchName


def test_failures_are_the_public_exceptions_and_name_the_operation(
    run: Run, listener: Listener
) -> None:
    """The boundary: what the native code decided (a status) leaves each public call as
    the pywsk.errors exception, naming the operation, with nothing internal chained."""

    async def main() -> None:
        conn, peer = await connected(listener)
        tcp.abort_with_rst(peer)
        with pytest.raises(ConnectionResetError) as reset:
            await conn.receive_some()
        with pytest.raises(ConnectionError) as disconnect:  # STATUS_FILE_FORCED_CLOSED
            await conn.disconnect()
        await conn.aclose()
        with pytest.raises(errors.SocketClosedError) as closed:
            await conn.receive_exactly(1)
        peer.close()
        for caught, operation in [
            (reset, "WskReceive"),
            (disconnect, "WskDisconnect"),
            (closed, "closed"),
        ]:
            exc = caught.value
            assert isinstance(exc, errors.NtStatusError)
            assert operation in str(exc)
            assert exc.__cause__ is None
            # (raised "from None": a traceback shows nothing internal)
            assert exc.__suppress_context__ or not isinstance(exc.__context__, errors.Failed)

    run(main())
