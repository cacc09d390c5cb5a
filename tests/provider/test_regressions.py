"""Regressions found by reviewing the documentation against the code."""

from __future__ import annotations

import socket
import threading
from typing import Any, cast

from pywsk.nt import (
    STATUS_CONNECTION_REFUSED,
    STATUS_INVALID_PARAMETER,
    STATUS_SUCCESS,
)
from pywsk.testing.driver import WskTestClient, make_buffer
from pywsk.wsk import (
    ADDRINFOEXW,
    AF_INET,
    AF_INET6,
    NS_ALL,
    PPVOID,
    PSIZE_T,
    UNICODE_STRING,
    WSK_CLIENT_CONNECTION_DISPATCH,
    WSK_DATA_INDICATION,
    WSK_EVENT_RECEIVE,
    WSK_FLAG_STREAM_SOCKET,
    sockaddr_from_tuple,
)

WAIT = 10.0


def test_a_receive_issued_inside_the_receive_event_does_not_overwrite_the_indication(
    wsk: WskTestClient,
) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []
    done = threading.Event()
    state: dict[str, Any] = {}

    def on_receive(
        context: Any, flags: int, ind: WSK_DATA_INDICATION | None, n: int, accepted: PSIZE_T
    ) -> int:
        assert ind is not None
        mdl = ind.Buffer.Mdl
        assert mdl is not None
        before = bytes(mdl._view[:8])
        if "inner" not in state:
            pool, buf = make_buffer(10)
            state["inner"] = wsk.start(
                "WskReceive", wsk.dispatch(state["sock"]).WskReceive, state["sock"], buf, 0
            )
            state["pool"] = pool
        seen.append(before + bytes(mdl._view[:8]))
        if sum(1 for _ in seen) >= 1:
            done.set()
        return STATUS_SUCCESS

    sock = wsk.connect(
        server.getsockname(), context=None, dispatch=WSK_CLIENT_CONNECTION_DISPATCH(on_receive)
    )
    state["sock"] = sock
    peer, _ = server.accept()
    peer.sendall(b"A" * 65536 + b"B" * 65536)
    assert wsk.set_events(sock, WSK_EVENT_RECEIVE) == STATUS_SUCCESS
    assert done.wait(WAIT)
    first = seen[0]
    assert first[:8] == first[8:], "the indicated bytes changed while the callback read them"
    peer.close()
    server.close()


def test_connect_may_be_retried_after_a_refusal(wsk: WskTestClient) -> None:
    # A port held by a bound socket that does not listen: connecting is refused, and no
    # other socket of the suite can take the port meanwhile.
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    closed_port = holder.getsockname()[1]
    sock = wsk.socket(AF_INET).information
    d = wsk.dispatch(sock)
    wsk.call("WskBind", d.WskBind, sock, sockaddr_from_tuple(("127.0.0.1", 0)), 0)
    for _ in range(3):
        refused = wsk.call(
            "WskConnect", d.WskConnect, sock, sockaddr_from_tuple(("127.0.0.1", closed_port)), 0
        )
        assert refused.status == STATUS_CONNECTION_REFUSED
    live = socket.create_server(("127.0.0.1", 0))
    assert (
        wsk.call(
            "WskConnect", d.WskConnect, sock, sockaddr_from_tuple(live.getsockname()), 0
        ).status
        == STATUS_SUCCESS
    )
    live.close()
    holder.close()


def test_a_name_the_resolver_cannot_encode_completes_the_irp(wsk: WskTestClient) -> None:
    assert wsk.provider.Dispatch is not None
    result: PPVOID[ADDRINFOEXW] = PPVOID()
    request = wsk.call(
        "WskGetAddressInfo",
        wsk.provider.Dispatch.WskGetAddressInfo,
        wsk.provider.Client,
        UNICODE_STRING("bad..label"),
        None,
        NS_ALL,
        None,
        None,
        result,
        None,
        None,
    )
    assert request.status == STATUS_INVALID_PARAMETER


def test_a_refused_connect_does_not_commit_a_stream_socket(wsk: WskTestClient) -> None:
    sock = wsk.socket(AF_INET, WSK_FLAG_STREAM_SOCKET).information
    d = sock.Dispatch
    assert (
        wsk.call("WskConnect", d.WskConnect, sock, sockaddr_from_tuple(("127.0.0.1", 9)), 0).status
        != STATUS_SUCCESS
    )
    assert (
        wsk.call("WskBind", d.WskBind, sock, sockaddr_from_tuple(("127.0.0.1", 0)), 0).status
        == STATUS_SUCCESS
    )
    assert wsk.call("WskListen", d.WskListen, sock).status == STATUS_SUCCESS


def test_ipv6_sockets_are_ipv6_only_as_on_windows(wsk: WskTestClient) -> None:
    sock = wsk.socket(AF_INET6).information
    assert sock.sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1


def test_data_before_a_peer_reset_is_delivered_with_the_disconnect_event_on(
    wsk: WskTestClient,
) -> None:
    from pywsk.nt import STATUS_CONNECTION_RESET
    from pywsk.testing.tcp import abort_with_rst, tcp_state
    from pywsk.wsk import WSK_EVENT_DISCONNECT

    flags: list[int] = []
    told = threading.Event()

    def on_disconnect(context: Any, f: int) -> int:
        flags.append(f & 1)
        told.set()
        return STATUS_SUCCESS

    server = socket.create_server(("127.0.0.1", 0))
    sock = wsk.connect(
        server.getsockname(), dispatch=WSK_CLIENT_CONNECTION_DISPATCH(None, on_disconnect)
    )
    peer, _ = server.accept()
    assert wsk.set_events(sock, WSK_EVENT_DISCONNECT) == STATUS_SUCCESS
    peer.sendall(b"before the reset")
    abort_with_rst(peer)
    for _ in range(10_000):  # bounded: the RST is in flight on loopback
        if tcp_state(cast(Any, sock).sock) == 7:
            break
    data, final = wsk.receive_all(sock, timeout=WAIT)
    assert data == b"before the reset"
    assert final.status == STATUS_CONNECTION_RESET
    assert told.wait(WAIT)
    assert flags == [1]
    peer.close()
    server.close()
