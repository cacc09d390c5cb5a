"""The provider's DEBUG records (pywsk._log's shape): connects, graceful disconnects when our
FIN is acknowledged, aborts, resets, closes that reset, the peer's FIN."""

from __future__ import annotations

import logging
import socket

import pytest
from test_requests import Listener, connected

from pywsk.nt import STATUS_CONNECTION_RESET, STATUS_SUCCESS
from pywsk.testing.driver import WskTestClient
from pywsk.wsk import WSK_FLAG_ABORTIVE

WAIT = 10.0
LOGGER = "pywsk.provider.connection"


def records(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, int | None]]:
    return [
        (r.wsk_operation, r.getMessage().rsplit(" - ", 1)[-1], r.ntstatus)  # type: ignore[attr-defined]
        for r in caplog.records
        if r.name == LOGGER
    ]


def test_connect_graceful_disconnect_and_the_peers_fin_are_logged(
    wsk: WskTestClient, listener: Listener, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    sock, peer = connected(wsk, listener)
    d = wsk.dispatch(sock)
    assert wsk.call("WskDisconnect", d.WskDisconnect, sock, None, 0).status == STATUS_SUCCESS
    assert peer.recv(1) == b""
    peer.shutdown(socket.SHUT_WR)
    request, _pool = wsk.receive(sock, 10)
    request.wait(WAIT)
    seen = records(caplog)
    assert ("WskConnect", "connected", STATUS_SUCCESS) in seen
    assert ("WskDisconnect", "graceful: our FIN acknowledged", STATUS_SUCCESS) in seen
    assert ("connection", "the peer's FIN", None) in seen
    ident = f"{id(sock):#x}"
    assert all(r.wsk_socket == ident for r in caplog.records if r.name == LOGGER)  # type: ignore[attr-defined]
    peer.close()


def test_abort_reset_and_close_are_logged(
    wsk: WskTestClient, listener: Listener, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    sock, peer = connected(wsk, listener)
    d = wsk.dispatch(sock)
    assert wsk.call("WskDisconnect", d.WskDisconnect, sock, None, WSK_FLAG_ABORTIVE).status == (
        STATUS_SUCCESS
    )
    other, peer2 = connected(wsk, listener)
    peer2.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
    peer2.close()  # an RST
    request, _pool = wsk.receive(other, 10)
    request.wait(WAIT)
    third, peer3 = connected(wsk, listener)
    wsk.close_socket(third)
    seen = records(caplog)
    assert ("WskDisconnect", "abortive: RST sent", STATUS_SUCCESS) in seen
    assert ("connection ended", "reset by the peer", STATUS_CONNECTION_RESET) in seen
    assert (
        "WskCloseSocket",
        "not disconnected in both directions: RST sent",
        STATUS_SUCCESS,
    ) in seen
    peer.close()
    peer3.close()
