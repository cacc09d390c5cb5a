"""The extended calls of connection and stream sockets: WskConnectEx (with data to send once
connected), WskSendEx and WskReceiveEx (no control information on TCP)."""

from __future__ import annotations

import socket

import pytest

from pywsk.nt import STATUS_NOT_SUPPORTED, STATUS_SUCCESS
from pywsk.testing.driver import WskTestClient, make_buffer
from pywsk.wsk import (
    AF_INET,
    PULONG,
    WSK_FLAG_CONNECTION_SOCKET,
    WSK_FLAG_STREAM_SOCKET,
    sockaddr_from_tuple,
)

WAIT = 10.0


@pytest.mark.parametrize("category", [WSK_FLAG_CONNECTION_SOCKET, WSK_FLAG_STREAM_SOCKET])
def test_connect_ex_sends_its_buffer_once_connected(wsk: WskTestClient, category: int) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(WAIT)
        sock = wsk.socket(AF_INET, category).information
        d = sock.Dispatch
        bound = wsk.call("WskBind", d.WskBind, sock, sockaddr_from_tuple(("127.0.0.1", 0)), 0)
        assert bound.status == STATUS_SUCCESS
        _pool, buf = make_buffer(b"first words")
        request = wsk.start(
            "WskConnectEx", d.WskConnectEx, sock, sockaddr_from_tuple(server.getsockname()), buf, 0
        )
        peer, _ = server.accept()
        with peer:
            peer.settimeout(WAIT)
            request.wait(WAIT)
            assert (request.status, request.information) == (STATUS_SUCCESS, 11)
            assert peer.recv(100) == b"first words"
            # WskSendEx without control information is a WskSend; with some, not supported.
            _p, more = make_buffer(b"more")
            sent = wsk.call("WskSendEx", d.WskSendEx, sock, more, 0, 0, None)
            assert (sent.status, sent.information) == (STATUS_SUCCESS, 4)
            assert peer.recv(100) == b"more"
            refused = wsk.call("WskSendEx", d.WskSendEx, sock, more, 0, 16, bytearray(16))
            assert refused.status == STATUS_NOT_SUPPORTED
            # WskReceiveEx: the data, and no control information.
            length, flags = PULONG(64), PULONG(7)
            pool, into = make_buffer(16)
            received = wsk.start(
                "WskReceiveEx", d.WskReceiveEx, sock, into, 0, length, bytearray(64), flags
            )
            peer.sendall(b"answer")
            received.wait(WAIT)
            assert (received.status, bytes(pool[: received.information])) == (
                STATUS_SUCCESS,
                b"answer",
            )
            assert (length.value, flags.value) == (0, 0)
        assert wsk.close_socket(sock).status == STATUS_SUCCESS


def test_connect_ex_without_data_is_a_connect(wsk: WskTestClient) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        sock = wsk.socket(AF_INET).information
        d = sock.Dispatch
        wsk.call("WskBind", d.WskBind, sock, sockaddr_from_tuple(("127.0.0.1", 0)), 0)
        request = wsk.start(
            "WskConnectEx", d.WskConnectEx, sock, sockaddr_from_tuple(server.getsockname()), None, 0
        )
        server.settimeout(WAIT)
        peer, _ = server.accept()
        peer.close()
        request.wait(WAIT)
        assert request.status == STATUS_SUCCESS
        assert wsk.close_socket(sock).status == STATUS_SUCCESS
