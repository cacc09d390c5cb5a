"""A connection the transport gives up on (real packet loss from nftables, TCP_MAXRT expiring)."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest

from pywsk.nt import (
    STATUS_FILE_FORCED_CLOSED,
    STATUS_IO_TIMEOUT,
    STATUS_PENDING,
    STATUS_SUCCESS,
)
from pywsk.testing.driver import WskTestClient
from pywsk.testing.netfault import PacketDropper
from pywsk.wsk import IPPROTO_TCP, TCP_MAXRT, WSK_FLAG_ABORTIVE, WSK_SOCKET, WskSetOption

Listener = Callable[..., socket.socket]
WAIT = 15.0

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not PacketDropper.available(), reason="needs root and nft"),
]


def lossy_connection(
    wsk: WskTestClient, listener: Listener, dropper: PacketDropper
) -> tuple[WSK_SOCKET, socket.socket]:
    lsock = listener()
    sock = wsk.connect(lsock.getsockname()[:2])
    peer, _ = lsock.accept()
    control = wsk.dispatch(sock).WskControlSocket
    # TCP_MAXRT: give up after 1 s of unanswered retransmissions (TCP_USER_TIMEOUT on Linux).
    maxrt = wsk.call(
        "WskControlSocket", control, sock, WskSetOption, TCP_MAXRT, IPPROTO_TCP, 4, 1, 0, None, None
    )
    assert maxrt.status == STATUS_SUCCESS
    dropper.drop(lsock.getsockname()[1])
    return sock, peer


def test_transport_timeout_fails_pending_receive_and_disconnect_is_forced_closed(
    wsk: WskTestClient, listener: Listener
) -> None:
    with PacketDropper() as dropper:
        sock, peer = lossy_connection(wsk, listener, dropper)
        receive, _ = wsk.receive(sock, 10)
        assert receive.returned == STATUS_PENDING
        # Data the peer will never acknowledge: the kernel retransmits, then gives up.  The
        # send is not reported sent: it fails with the connection (WskSend completes at the
        # acknowledgement of its last byte).
        send = wsk.send(sock, b"lost" * 100)
        assert send.returned == STATUS_PENDING
        receive.wait(WAIT)
        assert receive.status == STATUS_IO_TIMEOUT
        send.wait(WAIT)
        assert (send.status, send.information) == (STATUS_IO_TIMEOUT, 0)
        for flags in (0, WSK_FLAG_ABORTIVE):
            request = wsk.disconnect(sock, flags=flags)
            assert request.returned == STATUS_FILE_FORCED_CLOSED
            assert request.status == STATUS_FILE_FORCED_CLOSED
        assert wsk.send(sock, b"x").returned == STATUS_IO_TIMEOUT
    peer.close()


def test_transport_timeout_ends_a_pending_graceful_disconnect(
    wsk: WskTestClient, listener: Listener
) -> None:
    with PacketDropper() as dropper:
        sock, peer = lossy_connection(wsk, listener, dropper)
        disc = wsk.disconnect(sock, final=b"never acknowledged")
        assert disc.returned == STATUS_PENDING
        disc.wait(WAIT)
        assert disc.status == STATUS_IO_TIMEOUT
        assert wsk.disconnect(sock).returned == STATUS_FILE_FORCED_CLOSED
    peer.close()
