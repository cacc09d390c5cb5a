"""pywsk.aio's WskTransport against plain Linux peers on loopback: how a connection ends.

The graceful path (write_eof, disconnect_complete only once the peer acknowledged our FIN,
the peer's FIN, a close without RST), close() before the peer's FIN (data, FIN, its ACK,
then WskCloseSocket's RST), close() with data still buffered, a stuck disconnect ended by
abort(), abort(), and the peer's RST - checked on the peer's socket, in the kernel's state
and, where captures can run, on the wire.  Each test runs on asyncio and on uvloop.
"""

from __future__ import annotations

import asyncio
import socket

import pytest
from aio_helpers import Run, in_thread, loop_fixture
from transport_helpers import (
    HOSTS,
    Plain,
    Wire,
    bounded,
    kernel,
    local_port,
    needs_capture,
    no_rst,
    our_fin_and_its_ack,
    pair,
    plain_fixture,
    wait_for_fin,
    wire_fixture,
)

from pywsk import errors
from pywsk.core.ending import Ending
from pywsk.nt import STATUS_CONNECTION_RESET
from pywsk.testing import tcp
from pywsk.testing.contract import peer_reads_to_end
from pywsk.wsk import SO_SNDBUF, SOL_SOCKET

run = loop_fixture()
wire = wire_fixture()
plain = plain_fixture()

#: A payload far larger than the small buffers of both ends.
BIG = bytes(range(256)) * 4096


@pytest.mark.parametrize("host", HOSTS)
def test_graceful_path_reports_the_ack_of_our_fin_and_ends_without_rst(
    run: Run, plain: Plain, host: str
) -> None:
    async def main() -> None:
        transport, proto, peer = await pair(plain, host=host)
        assert transport.get_extra_info("peername")[1] == peer.getsockname()[1]
        assert transport.get_extra_info("sockname")[1] == peer.getpeername()[1]
        assert transport.get_extra_info("socket").fileno() >= 0
        assert transport.get_extra_info("no such thing", "default") == "default"
        assert transport.get_extra_info("disconnected_by") is None
        assert transport.get_protocol() == proto
        assert transport.can_write_eof()
        transport.write(b"hello ")
        transport.write(bytearray(b"wor"))
        transport.write(memoryview(b"ld"))
        transport.write_eof()
        transport.write_eof()  # idempotent
        assert not transport.is_closing()  # half-closed: still receiving
        assert await bounded(proto.disconnected) is None
        # When the callback ran, the kernel had our FIN acknowledged: nothing unacked.
        assert proto.at_disconnect["state"] == tcp.FIN_WAIT2
        assert proto.at_disconnect["outq"] == 0
        assert transport.get_extra_info("disconnected_by") is None  # our FIN alone ends nothing
        assert await in_thread(peer_reads_to_end, peer) == (b"hello world", "fin")

        peer.sendall(b"reply")
        peer.shutdown(socket.SHUT_WR)
        assert await bounded(proto.lost) is None  # eof_received returned None: closed
        assert bytes(proto.data) == b"reply"
        assert proto.events == ["made", "disconnect", "data", "eof", "lost"]
        assert proto.calls == {"disconnect_complete": 1, "connection_lost": 1}
        assert transport.disconnected_by is Ending.PEER_FIN
        assert transport.get_extra_info("disconnected_by") is Ending.PEER_FIN
        assert transport.is_closing()
        assert tcp.so_error(peer) == 0  # no RST came

    run(main())


@pytest.mark.root
@needs_capture
def test_graceful_path_on_the_wire(run: Run, plain: Plain, wire: Wire) -> None:
    async def main() -> None:
        lsock = plain.listener()
        theirs = lsock.getsockname()[1]
        cap = wire(theirs)
        assert cap is not None
        transport, proto, peer = await pair(plain, lsock=lsock)
        ours = local_port(transport)
        transport.write(b"all of it")
        transport.write_eof()
        assert await bounded(proto.disconnected) is None
        called_at = proto.at_disconnect["time"]
        fin, ack = await in_thread(our_fin_and_its_ack, cap, ours, theirs)
        assert fin.length == 0 or fin.length == len(b"all of it")
        assert ack.time <= called_at, "disconnect_complete ran before the ACK of our FIN"
        assert await in_thread(peer_reads_to_end, peer) == (b"all of it", "fin")
        peer.shutdown(socket.SHUT_WR)
        assert await bounded(proto.lost) is None
        await in_thread(cap.wait_fin, theirs)
        no_rst(cap)
        assert transport.disconnected_by is Ending.PEER_FIN

    run(main())


def test_close_before_the_peers_fin_sends_data_fin_then_rst(
    run: Run, plain: Plain, wire: Wire
) -> None:
    async def main() -> None:
        lsock = plain.listener()
        theirs = lsock.getsockname()[1]
        cap = wire(theirs)
        transport, proto, peer = await pair(plain, lsock=lsock)
        ours = local_port(transport)
        transport.write(b"data")
        transport.close()
        assert transport.is_closing()
        assert not transport.is_reading()
        transport.close()  # idempotent
        with pytest.raises(RuntimeError, match="FIN"):
            transport.write(b"more")
        assert await bounded(proto.lost) is None  # close(): asyncio's rule
        # The graceful part completed (FIN acknowledged), then WskCloseSocket reset.
        assert proto.events == ["made", "disconnect", "lost"]
        assert proto.disconnected.result() is None
        assert proto.at_disconnect["outq"] == 0
        assert transport.disconnected_by is Ending.OUR_FIN_THEN_RST
        assert await in_thread(peer_reads_to_end, peer) == (b"data", "fin")
        # ... and then our RST (Linux reports an RST met in CLOSE_WAIT as EPIPE).
        with pytest.raises(BrokenPipeError):
            peer.sendall(b"x")
        if cap is not None:
            rst = await in_thread(cap.wait_rst, ours)
            fin, ack = await in_thread(our_fin_and_its_ack, cap, ours, theirs)
            assert fin.time <= ack.time <= rst.time
            assert rst.seq == (fin.seq + fin.length + 1) & 0xFFFFFFFF

    run(main())


def test_close_delivers_every_buffered_byte_before_the_fin(
    run: Run, plain: Plain, wire: Wire
) -> None:
    async def main() -> None:
        lsock = plain.listener("127.0.0.1", 4096)
        cap = wire(lsock.getsockname()[1])
        transport, proto, peer = await pair(plain, lsock=lsock, rcvbuf=4096)
        transport.write(BIG)
        assert transport.get_write_buffer_size() > 0  # the peer does not read yet
        transport.close()
        # Neither the FIN nor the end can come while data waits (a bounded check).
        done, _ = await asyncio.wait({proto.disconnected, proto.lost}, timeout=0.3)
        assert not done
        assert tcp.tcp_state(kernel(transport)) == tcp.ESTABLISHED  # no FIN yet
        assert await in_thread(peer_reads_to_end, peer) == (BIG, "fin")
        assert await bounded(proto.lost) is None
        assert proto.disconnected.result() is None
        assert proto.events[-2:] == ["disconnect", "lost"]
        assert proto.calls == {"disconnect_complete": 1, "connection_lost": 1}
        assert transport.get_write_buffer_size() == 0
        assert transport.disconnected_by is Ending.OUR_FIN_THEN_RST  # the peer's FIN never came
        if cap is not None:
            await in_thread(cap.wait_rst, local_port(transport))
            ours = local_port(transport)
            fins = cap.fins(from_port=ours)
            assert fins  # one FIN (perhaps retransmitted), after every byte:
            assert {fin.seq + fin.length for fin in fins} == {
                (cap.syns(from_port=ours)[0].seq + 1 + len(BIG)) & 0xFFFFFFFF
            }

    run(main())


@pytest.mark.parametrize("stage", ["buffered", "fin_sent"])
@pytest.mark.parametrize("ending", ["write_eof", "close"])
def test_stuck_disconnect_then_abort_reports_the_failure(
    run: Run, plain: Plain, wire: Wire, stage: str, ending: str
) -> None:
    async def main() -> None:
        lsock = plain.listener("127.0.0.1", 4096)  # a small window: the peer never reads
        if stage == "buffered":
            options: tuple[tuple[int, int, int], ...] = ((SOL_SOCKET, SO_SNDBUF, 4096),)
            payload = BIG
        else:
            options = ((SOL_SOCKET, SO_SNDBUF, 200_000),)
            payload = BIG[:100_000]
        cap = wire(lsock.getsockname()[1])
        transport, proto, peer = await pair(plain, lsock=lsock, options=options)
        ours = local_port(transport)
        transport.write(payload)
        getattr(transport, ending)()
        if stage == "buffered":
            assert transport.get_write_buffer_size() > 0
            assert tcp.tcp_state(kernel(transport)) == tcp.ESTABLISHED
        else:
            assert transport.get_write_buffer_size() == 0
            assert tcp.tcp_state(kernel(transport)) == tcp.FIN_WAIT1
            assert tcp.siocoutq(kernel(transport)) > 0  # data (and FIN) unacknowledged
        done, _ = await asyncio.wait({proto.disconnected, proto.lost}, timeout=0.3)
        assert not done  # stuck: the peer does not read
        transport.abort()
        assert transport.is_closing()
        failure = await bounded(proto.disconnected)
        assert isinstance(failure, ConnectionAbortedError), failure
        assert isinstance(failure, errors.NtStatusError)
        assert await bounded(proto.lost) is None  # abort(): asyncio's rule
        transport.abort()
        transport.close()  # nothing more happens
        assert proto.events[-2:] == ["disconnect", "lost"]
        assert proto.calls == {"disconnect_complete": 1, "connection_lost": 1}
        expected = Ending.OUR_RST if stage == "buffered" else Ending.OUR_FIN_THEN_RST
        assert transport.disconnected_by is expected
        data, end = await in_thread(peer_reads_to_end, peer)
        assert end == "rst"
        assert data == payload[: len(data)]
        if cap is not None:
            await in_thread(cap.wait_rst, ours)
            # Even "fin_sent"'s FIN (FIN_WAIT1) never left: it waited behind the data.
            assert cap.fins(from_port=ours) == []

    run(main())


def test_abort_resets_at_once(run: Run, plain: Plain, wire: Wire) -> None:
    async def main() -> None:
        lsock = plain.listener()
        cap = wire(lsock.getsockname()[1])
        transport, proto, peer = await pair(plain, lsock=lsock)
        ours = local_port(transport)
        transport.write(b"before the abort")
        transport.abort()
        # connection_lost comes from the loop, never from inside the call that ended it.
        assert proto.calls["connection_lost"] == 0
        assert transport.is_closing()
        assert not transport.is_reading()
        assert transport.disconnected_by is Ending.OUR_RST
        assert await bounded(proto.lost) is None
        transport.abort()  # idempotent
        assert proto.events == ["made", "lost"]  # no disconnect was asked for
        assert proto.calls == {"disconnect_complete": 0, "connection_lost": 1}
        # The data went before the abort; then the peer's recv raised ConnectionResetError.
        assert await in_thread(peer_reads_to_end, peer) == (b"before the abort", "rst")
        if cap is not None:
            await in_thread(cap.wait_rst, ours)
            assert cap.fins(from_port=ours) == []

    run(main())


def test_peer_rst_is_connection_reset(run: Run, plain: Plain) -> None:
    async def main() -> None:
        transport, proto, peer = await pair(plain)
        peer.sendall(b"before")
        assert await proto.received(6) == b"before"
        tcp.abort_with_rst(peer)
        lost = await bounded(proto.lost)
        assert isinstance(lost, ConnectionResetError)
        assert isinstance(lost, errors.WskConnectionResetError)
        assert lost.status == STATUS_CONNECTION_RESET
        assert transport.disconnected_by is Ending.PEER_RST
        assert transport.is_closing()
        assert proto.events == ["made", "data", "lost"]
        assert proto.calls == {"disconnect_complete": 0, "connection_lost": 1}
        transport.close()
        transport.abort()  # nothing more happens
        assert proto.calls["connection_lost"] == 1

    run(main())


@pytest.mark.parametrize("stage", ["buffered", "fin_sent"])
def test_peer_rst_fails_a_pending_disconnect(run: Run, plain: Plain, stage: str) -> None:
    async def main() -> None:
        lsock = plain.listener("127.0.0.1", 4096)
        size = 200_000 if stage == "fin_sent" else 4096
        transport, proto, peer = await pair(
            plain, lsock=lsock, options=((SOL_SOCKET, SO_SNDBUF, size),)
        )
        transport.write(BIG[:100_000] if stage == "fin_sent" else BIG)
        transport.write_eof()
        assert (transport.get_write_buffer_size() > 0) == (stage == "buffered")
        tcp.abort_with_rst(peer)
        failure = await bounded(proto.disconnected)
        lost = await bounded(proto.lost)
        assert isinstance(failure, ConnectionResetError), failure
        assert isinstance(lost, ConnectionResetError), lost
        assert lost.status == STATUS_CONNECTION_RESET  # type: ignore[attr-defined]
        assert proto.events[-2:] == ["disconnect", "lost"]
        assert proto.calls == {"disconnect_complete": 1, "connection_lost": 1}
        assert transport.disconnected_by is Ending.PEER_RST

    run(main())


def test_close_after_an_unread_peer_fin_sends_no_rst(run: Run, plain: Plain, wire: Wire) -> None:
    """The peer's FIN came (reading was paused, so unread): close() is graceful."""

    async def main() -> Ending | None:
        lsock = plain.listener()
        cap = wire(lsock.getsockname()[1])
        transport, proto, peer = await pair(plain, lsock=lsock)
        transport.pause_reading()
        peer.sendall(b"unread")
        peer.shutdown(socket.SHUT_WR)
        await in_thread(wait_for_fin, kernel(transport))
        transport.write(b"reply")
        transport.close()
        assert await bounded(proto.lost) is None
        assert proto.events == ["made", "disconnect", "lost"]  # nothing delivered after close
        assert await in_thread(peer_reads_to_end, peer) == (b"reply", "fin")
        no_rst(cap)
        return transport.disconnected_by

    # The peer's FIN, seen in the kernel's TCP state and never read, is the ending.
    assert run(main()) is Ending.PEER_FIN
