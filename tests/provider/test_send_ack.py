"""WskSend completes when the peer acknowledged its last byte, on the wire.

Microsoft's WskSend page: the WSK subsystem "does not perform any buffering of data" and
"will not complete a call to the WskSend function until all of the data has actually been
sent".  These tests show, with packet captures on loopback, that a send's completion comes
after the peer's ACK of its last byte; that a send the peer cannot take stays pending; and
that an abort, a peer's reset or a cancel fails every send whose bytes were not
acknowledged - no STATUS_SUCCESS ever covers bytes the peer could not have received.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

import pytest
from test_disconnect import Capture, Listener, captured
from test_requests import recv_exactly

from pywsk.nt import (
    STATUS_CANCELLED,
    STATUS_CONNECTION_RESET,
    STATUS_PENDING,
    STATUS_SUCCESS,
    IoCancelIrp,
)
from pywsk.testing.capture import Segment, WireCapture
from pywsk.testing.contract import peer_reads_to_end
from pywsk.testing.driver import WskTestClient
from pywsk.wsk import WSK_FLAG_ABORTIVE

WAIT = 10.0
MIB = 1 << 20


def first_byte(cap: WireCapture, port: int) -> int:
    """The sequence number of the first data byte sent from ``port`` (its SYN's + 1)."""
    syn = cap.wait_for(lambda s: s.syn and s.sport == port, WAIT)
    return (syn.seq + 1) & 0xFFFFFFFF


def acknowledges(port: int, start: int, count: int) -> Callable[[Segment], bool]:
    """A segment to ``port`` that acknowledges ``count`` bytes from stream offset 0."""
    return lambda s: (
        s.dport == port and s.ack_flag and ((s.ack - start) & 0xFFFFFFFF) >= count and not s.syn
    )


def zero_window_from(cap: WireCapture, port: int) -> Segment:
    """Wait until the peer at ``port`` advertises a zero window: it can take nothing more."""
    return cap.wait_for(lambda s: s.sport == port and s.window == 0 and not s.rst, WAIT)


def test_a_send_completes_after_the_peer_acknowledged_its_last_byte(
    wsk: WskTestClient, listener: Listener, capture_port: Capture
) -> None:
    sock, peer, port, cap = captured(wsk, listener, capture_port)
    start = first_byte(cap, port)
    data = bytes(range(256)) * 4096  # 1 MiB
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(recv_exactly(peer, len(data))))
    reader.start()
    send = wsk.send(sock, data).wait(WAIT)
    reader.join(WAIT)
    assert (send.status, send.information) == (STATUS_SUCCESS, len(data))
    assert got == [data]
    cap.sync()
    ack = cap.first(acknowledges(port, start, len(data)))
    assert ack is not None, cap.describe()
    # The completion routine ran after the peer's ACK of the last byte was on the wire.
    assert send.completed_wall is not None
    assert ack.time <= send.completed_wall, (ack, send)
    assert wsk.disconnect(sock).wait(WAIT).status == STATUS_SUCCESS
    peer.close()


def test_several_sends_outstanding_complete_in_order_each_at_its_ack(
    wsk: WskTestClient, listener: Listener, capture_port: Capture
) -> None:
    sock, peer, port, cap = captured(wsk, listener, capture_port, "127.0.0.1", 65536)
    start = first_byte(cap, port)
    chunks = [bytes([65 + i]) * (256 * 1024) for i in range(6)]
    sends = [wsk.send(sock, chunk) for chunk in chunks]
    assert recv_exactly(peer, sum(map(len, chunks))) == b"".join(chunks)
    offset = 0
    for send, chunk in zip(sends, chunks, strict=True):
        send.wait(WAIT)
        offset += len(chunk)
        assert (send.status, send.information) == (STATUS_SUCCESS, len(chunk))
        cap.sync()
        ack = cap.first(acknowledges(port, start, offset))
        assert ack is not None
        assert send.completed_wall is not None
        assert ack.time <= send.completed_wall
    order = [s.completed_at for s in sends]
    assert order == sorted(order)  # type: ignore[type-var]
    peer.close()


def test_a_send_the_peer_cannot_take_stays_pending_and_an_abort_fails_it(
    wsk: WskTestClient, listener: Listener, capture_port: Capture
) -> None:
    # The audit's measured case: the peer never reads, 16 KiB receive buffer, 2 MiB sent.
    sock, peer, port, cap = captured(wsk, listener, capture_port, "127.0.0.1", 16384)
    send = wsk.send(sock, b"m" * (2 * MIB))
    assert send.returned == STATUS_PENDING
    zero_window_from(cap, peer.getsockname()[1])
    assert not send.done, send  # the peer can take nothing more: not sent
    abort = wsk.disconnect(sock, flags=WSK_FLAG_ABORTIVE).wait(WAIT)
    assert abort.status == STATUS_SUCCESS
    send.wait(WAIT)
    assert (send.status, send.information) == (STATUS_CANCELLED, 0)
    cap.wait_rst(from_port=port, timeout=WAIT)
    data, end = peer_reads_to_end(peer)
    assert end == "rst"
    assert len(data) < 2 * MIB  # what the abort threw away was never reported sent
    peer.close()


def test_a_reset_by_the_peer_fails_the_unacknowledged_sends(
    wsk: WskTestClient, listener: Listener, capture_port: Capture
) -> None:
    sock, peer, _port, cap = captured(wsk, listener, capture_port, "127.0.0.1", 16384)
    first = wsk.send(sock, b"1" * MIB)
    second = wsk.send(sock, b"2" * MIB)
    zero_window_from(cap, peer.getsockname()[1])
    assert not first.done
    assert not second.done
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    peer.close()  # unread data and linger 0: an RST
    for send in (first, second):
        send.wait(WAIT)
        assert (send.status, send.information) == (STATUS_CONNECTION_RESET, 0), send


def test_a_graceful_disconnect_completes_the_sends_before_it(
    wsk: WskTestClient, listener: Listener
) -> None:
    lsock = listener("127.0.0.1", 16384)
    sock = wsk.connect(lsock.getsockname()[:2])
    peer, _ = lsock.accept()
    peer.settimeout(WAIT)
    sends = [wsk.send(sock, bytes([i]) * (512 * 1024)) for i in range(3)]
    disc = wsk.disconnect(sock)
    assert not disc.done
    data, end = peer_reads_to_end(peer)
    assert (len(data), end) == (3 * 512 * 1024, "fin")
    for send in [*sends, disc]:
        send.wait(WAIT)
        assert send.status == STATUS_SUCCESS, send
    assert [s.information for s in sends] == [512 * 1024] * 3
    peer.close()


# --- cancelling a send the kernel has taken (issue 14, section 2) ---------------------------------


@pytest.mark.parametrize("whole", [False, True], ids=["partly-taken", "taken-unacknowledged"])
def test_cancelling_a_taken_send_aborts_the_connection(
    wsk: WskTestClient, listener: Listener, capture_port: Capture, whole: bool
) -> None:
    sock, peer, port, cap = captured(wsk, listener, capture_port, "127.0.0.1", 16384)
    # 2 MiB: more than the kernel takes (partly taken); 64 KiB: all of it taken, but the
    # peer's 16 KiB buffer cannot acknowledge it.
    size = 64 * 1024 if whole else 2 * MIB
    send = wsk.send(sock, b"c" * size)
    behind = wsk.send(sock, b"b" * 1000)
    zero_window_from(cap, peer.getsockname()[1])
    assert send.returned == STATUS_PENDING
    assert not send.done
    assert IoCancelIrp(send.irp) is True
    send.wait(WAIT)  # within a bound, although the peer never reads
    assert send.status == STATUS_CANCELLED
    assert 0 < send.information <= size  # what the transport had taken
    behind.wait(WAIT)
    assert (behind.status, behind.information) == (STATUS_CANCELLED, 0)
    cap.wait_rst(from_port=port, timeout=WAIT)
    data, end = peer_reads_to_end(peer)
    assert end == "rst"
    assert len(data) < size
    later = wsk.send(sock, b"later").wait(WAIT)
    assert later.status != STATUS_SUCCESS
    peer.close()


def test_cancelling_an_acknowledged_send_changes_nothing(
    wsk: WskTestClient, listener: Listener
) -> None:
    lsock = listener()
    sock = wsk.connect(lsock.getsockname()[:2])
    peer, _ = lsock.accept()
    peer.settimeout(WAIT)
    send = wsk.send(sock, b"small").wait(WAIT)
    assert send.status == STATUS_SUCCESS
    assert IoCancelIrp(send.irp) is False  # completed: nothing to cancel
    assert recv_exactly(peer, 5) == b"small"
    assert wsk.send(sock, b"more").wait(WAIT).status == STATUS_SUCCESS
    assert recv_exactly(peer, 4) == b"more"
    peer.close()
