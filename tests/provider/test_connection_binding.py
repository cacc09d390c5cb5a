"""Connection sockets bind through the address-sharing table too, and answer SIO_WSK_QUERY_INSPECT_ID."""

from __future__ import annotations

import socket

from pywsk.nt import (
    STATUS_ADDRESS_ALREADY_ASSOCIATED,
    STATUS_INVALID_DEVICE_REQUEST,
    STATUS_INVALID_PARAMETER,
    STATUS_SUCCESS,
)
from pywsk.testing.driver import WskTestClient
from pywsk.wsk import (
    AF_INET,
    PSIZE_T,
    SIO_WSK_QUERY_INSPECT_ID,
    SO_REUSEADDR,
    SOL_SOCKET,
    WSK_INSPECT_ID,
    WSK_SOCKET,
    WskIoctl,
    WskSetOption,
    sockaddr_from_tuple,
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def bound(wsk: WskTestClient, port: int, reuse: bool) -> tuple[WSK_SOCKET, int]:
    sock: WSK_SOCKET = wsk.socket(AF_INET).information
    d = wsk.dispatch(sock)
    if reuse:
        set_reuse = wsk.call(
            "WskControlSocket",
            d.WskControlSocket,
            sock,
            WskSetOption,
            SO_REUSEADDR,
            SOL_SOCKET,
            4,
            1,
            0,
            None,
            None,
        )
        assert set_reuse.status == STATUS_SUCCESS
    status = wsk.call(
        "WskBind", d.WskBind, sock, sockaddr_from_tuple(("127.0.0.1", port)), 0
    ).status
    assert status is not None
    return sock, status


def test_a_second_bind_to_the_same_address_conflicts(wsk: WskTestClient) -> None:
    port = free_port()
    _first, status = bound(wsk, port, reuse=False)
    assert status == STATUS_SUCCESS
    _second, status = bound(wsk, port, reuse=False)
    assert status == STATUS_ADDRESS_ALREADY_ASSOCIATED


def test_so_reuseaddr_on_both_shares_the_address(wsk: WskTestClient) -> None:
    port = free_port()
    assert bound(wsk, port, reuse=True)[1] == STATUS_SUCCESS
    assert bound(wsk, port, reuse=True)[1] == STATUS_SUCCESS


def test_closing_releases_the_address(wsk: WskTestClient) -> None:
    port = free_port()
    first, status = bound(wsk, port, reuse=False)
    assert status == STATUS_SUCCESS
    wsk.close_socket(first)
    assert bound(wsk, port, reuse=False)[1] == STATUS_SUCCESS


def test_inspect_id_query_on_a_socket_not_from_a_conditional_listener(wsk: WskTestClient) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    sock = wsk.connect(listener.getsockname())
    control = wsk.dispatch(sock).WskControlSocket
    returned = PSIZE_T()
    out = WSK_INSPECT_ID()
    status = control(sock, WskIoctl, SIO_WSK_QUERY_INSPECT_ID, 0, 0, None, 16, out, returned, None)
    assert status == STATUS_INVALID_DEVICE_REQUEST
    # The IRP must be NULL: a given one is completed with the refusal.
    request = wsk.call(
        "WskControlSocket",
        control,
        sock,
        WskIoctl,
        SIO_WSK_QUERY_INSPECT_ID,
        0,
        0,
        None,
        16,
        out,
        None,
    )
    assert request.status == STATUS_INVALID_PARAMETER
    listener.close()
