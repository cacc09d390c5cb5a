"""Client.tcp_state reads the Linux TCP state under a WSK socket through the provider's
read-only accessor (ProviderSocket.tcp_state), never through the provider's private parts."""

from __future__ import annotations

import ast
import socket
from collections.abc import Callable
from pathlib import Path

from pywsk.client import Client
from pywsk.nt import STATUS_SUCCESS
from pywsk.provider.base import ProviderSocket
from pywsk.testing.tcp import TcpState
from pywsk.wsk import WSK_SOCKET

WAIT = 10.0
CLIENT_SOURCES = Path(__file__).resolve().parents[2] / "src" / "pywsk" / "client"


def test_a_connection_reads_established_then_fin_wait2_then_nothing_once_closed(
    listener: Callable[..., socket.socket],
) -> None:
    lsock = listener()
    with Client() as client:
        sock = client.socket_connect(lsock.getsockname()[:2], timeout=WAIT)
        peer, _ = lsock.accept()
        with peer:
            assert isinstance(sock, ProviderSocket)
            assert client.tcp_state(sock) == sock.tcp_state() == TcpState.ESTABLISHED
            assert client.disconnect(sock).wait(WAIT).status == STATUS_SUCCESS
            assert client.tcp_state(sock) == TcpState.FIN_WAIT2  # our FIN acknowledged
            assert client.close_socket(sock).status == STATUS_SUCCESS
            assert client.tcp_state(sock) is None
            assert sock.tcp_state() is None


def test_a_listening_socket_reads_listen() -> None:
    with Client() as client:
        sock = client.listen(("127.0.0.1", 0))
        assert client.tcp_state(sock) == TcpState.LISTEN
        client.close_socket(sock)
        assert client.tcp_state(sock) is None


def test_a_socket_that_is_not_the_providers_has_no_state() -> None:
    assert Client.tcp_state(WSK_SOCKET(None)) is None


def test_the_client_runtime_does_not_reach_under_a_wsk_socket() -> None:
    # The kernel socket is the provider's ``sock``: the client may name it nowhere.
    for path in sorted(CLIENT_SOURCES.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            assert not (isinstance(node, ast.Attribute) and node.attr == "sock"), path
            assert not (isinstance(node, ast.Constant) and node.value == "sock"), path
