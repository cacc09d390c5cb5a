"""Stream sockets (WSK_FLAG_STREAM_SOCKET): a connection after WskConnect, a listener after WskListen."""

from __future__ import annotations

import socket
import threading
from typing import Any

import pytest

from pywsk.nt import (
    STATUS_CANCELLED,
    STATUS_INVALID_DEVICE_STATE,
    STATUS_PENDING,
    STATUS_SUCCESS,
)
from pywsk.testing.driver import WskTestClient
from pywsk.wsk import (
    AF_INET,
    AF_INET6,
    SOCKADDR_STORAGE,
    WSK_CLIENT_CONNECTION_DISPATCH,
    WSK_CLIENT_STREAM_DISPATCH,
    WSK_EVENT_DISCONNECT,
    WSK_FLAG_STREAM_SOCKET,
    WSK_PROVIDER_CONNECTION_DISPATCH,
    WSK_PROVIDER_STREAM_DISPATCH,
    WSK_SOCKET,
    sockaddr_from_tuple,
)

WAIT = 10.0


def stream(
    wsk: WskTestClient, family: int = AF_INET, context: Any = None, dispatch: Any = None
) -> WSK_SOCKET:
    made = wsk.socket(family, WSK_FLAG_STREAM_SOCKET, context, dispatch)
    assert made.status == STATUS_SUCCESS
    sock: WSK_SOCKET = made.information
    assert isinstance(sock.Dispatch, WSK_PROVIDER_STREAM_DISPATCH)
    return sock


def table(sock: WSK_SOCKET) -> WSK_PROVIDER_STREAM_DISPATCH:
    dispatch: WSK_PROVIDER_STREAM_DISPATCH = sock.Dispatch
    return dispatch


@pytest.mark.parametrize(("family", "host"), [(AF_INET, "127.0.0.1"), (AF_INET6, "::1")])
def test_a_stream_socket_becomes_a_connection(wsk: WskTestClient, family: int, host: str) -> None:
    listener = socket.create_server(
        (host, 0), family=socket.AF_INET6 if family == AF_INET6 else socket.AF_INET
    )
    sock = stream(wsk, family)
    d = table(sock)
    assert (
        wsk.call("WskBind", d.WskBind, sock, sockaddr_from_tuple((host, 0)), 0).status
        == STATUS_SUCCESS
    )
    connect = wsk.call(
        "WskConnect", d.WskConnect, sock, sockaddr_from_tuple(listener.getsockname()[:2]), 0
    )
    assert connect.status == STATUS_SUCCESS
    peer, _ = listener.accept()
    peer.settimeout(WAIT)
    # Committed to the connection flow: listening functions are refused.
    assert wsk.call("WskListen", d.WskListen, sock).status == STATUS_INVALID_DEVICE_STATE
    refused = wsk.call("WskAccept", d.WskAccept, sock, 0, None, None, None, None)
    assert refused.status == STATUS_INVALID_DEVICE_STATE
    assert wsk.send(sock, b"stream data").wait(WAIT).status == STATUS_SUCCESS
    assert wsk.disconnect(sock).wait(WAIT).status == STATUS_SUCCESS
    data = b""
    while chunk := peer.recv(100):
        data += chunk
    assert data == b"stream data"  # then the FIN
    peer.close()
    listener.close()


def test_a_stream_socket_becomes_a_listener(wsk: WskTestClient) -> None:
    sock = stream(wsk)
    d = table(sock)
    assert (
        wsk.call("WskListen", d.WskListen, sock).status == STATUS_INVALID_DEVICE_STATE
    )  # not bound
    accept_first = wsk.call("WskAccept", d.WskAccept, sock, 0, None, None, None, None)
    assert accept_first.status == STATUS_INVALID_DEVICE_STATE  # not listening
    assert (
        wsk.call("WskBind", d.WskBind, sock, sockaddr_from_tuple(("127.0.0.1", 0)), 0).status
        == STATUS_SUCCESS
    )
    assert wsk.call("WskListen", d.WskListen, sock).status == STATUS_SUCCESS
    local_request, local = wsk.local_address(sock)
    assert local_request.status == STATUS_SUCCESS
    pending = wsk.start("WskAccept", d.WskAccept, sock, 0, None, None, None, SOCKADDR_STORAGE())
    assert pending.returned == STATUS_PENDING
    client = socket.create_connection(local.to_tuple()[:2], timeout=WAIT)
    pending.wait(WAIT)
    assert pending.status == STATUS_SUCCESS
    accepted: WSK_SOCKET = pending.information
    wsk.sockets.append(accepted)
    assert isinstance(accepted.Dispatch, WSK_PROVIDER_CONNECTION_DISPATCH)
    client.sendall(b"hi")
    data, final = b"", None
    client.shutdown(socket.SHUT_WR)
    data, final = wsk.receive_all(accepted, timeout=WAIT)
    assert (data, final.status) == (b"hi", STATUS_SUCCESS)
    # Committed to the listening flow: connection functions are refused.
    assert wsk.send(sock, b"x").returned == STATUS_INVALID_DEVICE_STATE
    connect = wsk.call("WskConnect", d.WskConnect, sock, sockaddr_from_tuple(("127.0.0.1", 9)), 0)
    assert connect.status == STATUS_INVALID_DEVICE_STATE
    client.close()


def test_closing_a_stream_listener_cancels_its_accepts(wsk: WskTestClient) -> None:
    sock = stream(wsk)
    d = table(sock)
    wsk.call("WskBind", d.WskBind, sock, sockaddr_from_tuple(("127.0.0.1", 0)), 0)
    assert wsk.call("WskListen", d.WskListen, sock).status == STATUS_SUCCESS
    pending = wsk.start("WskAccept", d.WskAccept, sock, 0, None, None, None, None)
    close = wsk.close_socket(sock)
    assert close.status == STATUS_SUCCESS
    assert pending.done
    assert pending.status == STATUS_CANCELLED
    assert pending.completed_at is not None
    assert close.completed_at is not None
    assert pending.completed_at <= close.completed_at


def test_the_connect_table_of_a_stream_dispatch_gets_the_events(wsk: WskTestClient) -> None:
    seen: list[int] = []
    done = threading.Event()

    def on_disconnect(context: Any, flags: int) -> int:
        seen.append(flags & 1)
        done.set()
        return STATUS_SUCCESS

    events = WSK_CLIENT_STREAM_DISPATCH(
        None, WSK_CLIENT_CONNECTION_DISPATCH(None, on_disconnect, None)
    )
    listener = socket.create_server(("127.0.0.1", 0))
    sock = stream(wsk, AF_INET, "ctx", events)
    d = table(sock)
    wsk.call("WskBind", d.WskBind, sock, sockaddr_from_tuple(("127.0.0.1", 0)), 0)
    wsk.call("WskConnect", d.WskConnect, sock, sockaddr_from_tuple(listener.getsockname()), 0)
    peer, _ = listener.accept()
    assert wsk.set_events(sock, WSK_EVENT_DISCONNECT) == STATUS_SUCCESS
    peer.shutdown(socket.SHUT_WR)
    assert done.wait(WAIT)
    assert seen == [0]
    peer.close()
    listener.close()
