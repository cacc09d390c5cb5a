"""Listening sockets: WskBind (which listens), WskAccept, WskAcceptEvent, conditional accept.

Each rule of the WskAccept, WskAcceptEvent, WskInspectEvent, WskAbortEvent and
WskInspectComplete pages (spec sections 3.7, 3.8, 4.6, 4.7, 7) is driven against plain Linux
socket peers on loopback; resets and FINs are checked at the peer, and on the wire where it
matters.  Every wait is bounded.
"""

from __future__ import annotations

import ipaddress
import select
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from pywsk.nt import (
    DISPATCH_LEVEL,
    STATUS_BUFFER_TOO_SMALL,
    STATUS_CANCELLED,
    STATUS_FILE_FORCED_CLOSED,
    STATUS_INVALID_DEVICE_REQUEST,
    STATUS_INVALID_DEVICE_STATE,
    STATUS_INVALID_HANDLE,
    STATUS_INVALID_PARAMETER,
    STATUS_PENDING,
    STATUS_REQUEST_NOT_ACCEPTED,
    STATUS_SUCCESS,
    IoCancelIrp,
    KeGetCurrentIrql,
)
from pywsk.provider import subsystem
from pywsk.provider.listener import inspect_id_of, query_inspect_id
from pywsk.testing import tcp
from pywsk.testing.capture import WireCapture
from pywsk.testing.driver import Request, WskTestClient, make_buffer
from pywsk.wsk import (
    AF_INET,
    AF_INET6,
    IPPROTO_IPV6,
    IPV6_V6ONLY,
    PPVOID,
    PSIZE_T,
    SO_CONDITIONAL_ACCEPT,
    SO_KEEPALIVE,
    SO_RCVBUF,
    SOCKADDR,
    SOCKADDR_IN,
    SOCKADDR_IN6,
    SOCKADDR_STORAGE,
    SOL_SOCKET,
    WSK_CLIENT_CONNECTION_DISPATCH,
    WSK_CLIENT_LISTEN_DISPATCH,
    WSK_DATA_INDICATION,
    WSK_EVENT_ACCEPT,
    WSK_EVENT_DISABLE,
    WSK_EVENT_DISCONNECT,
    WSK_EVENT_RECEIVE,
    WSK_FLAG_ABORTIVE,
    WSK_FLAG_AT_DISPATCH_LEVEL,
    WSK_FLAG_LISTEN_SOCKET,
    WSK_INSPECT_ID,
    WSK_SOCKET,
    WskGetOption,
    WskInspectAccept,
    WskInspectPend,
    WskInspectReject,
    WskSetOption,
    sockaddr_from_tuple,
)

Capture = Callable[[int], WireCapture]
WAIT = 10.0
HOSTS = ["127.0.0.1", "::1"]


def loopback(host: str) -> str:
    if ":" in host and not tcp.has_ipv6_loopback():
        pytest.skip("no IPv6 loopback here")
    return host


def kernel(sock: WSK_SOCKET) -> socket.socket:
    """The Linux socket behind a WSK socket (for kernel-side checks in tests)."""
    owner: Any = sock
    result: socket.socket = owner.sock
    return result


def port_of(wsk: WskTestClient, sock: WSK_SOCKET) -> int:
    request, address = wsk.local_address(sock)
    assert request.status == STATUS_SUCCESS, request
    return int(address.to_tuple()[1])


def dial(host: str, port: int) -> socket.socket:
    """A plain peer connected to ``host:port``."""
    peer = socket.create_connection((host, port), timeout=WAIT)
    peer.settimeout(WAIT)
    return peer


def dial_and_get_reset(host: str, port: int) -> socket.socket | None:
    """A peer whose connection the provider resets at once: the RST may even beat the
    end of connect() (then there is no peer socket left to return)."""
    try:
        peer = dial(host, port)
    except ConnectionResetError:
        return None
    with pytest.raises(ConnectionResetError):
        peer.recv(10)
    return peer


def wait_in_backlog(listener: WSK_SOCKET) -> None:
    """Bounded wait until a connection waits in the listener's kernel backlog."""
    readable, _, _ = select.select([kernel(listener)], [], [], WAIT)
    assert readable, "no connection reached the backlog"


def reads_to_end(peer: socket.socket) -> tuple[bytes, str]:
    """Read until the other side's FIN or RST: (data, "fin" | "rst")."""
    data = bytearray()
    while True:
        try:
            chunk = peer.recv(1 << 16)
        except ConnectionResetError:
            return bytes(data), "rst"
        if not chunk:
            return bytes(data), "fin"
        data += chunk


def set_option(wsk: WskTestClient, sock: WSK_SOCKET, level: int, option: int, value: int) -> int:
    request = wsk.call(
        "WskControlSocket",
        sock.Dispatch.WskControlSocket,
        sock,
        WskSetOption,
        option,
        level,
        4,
        value,
        0,
        None,
        None,
    )
    assert request.status is not None
    return request.status


def get_option(wsk: WskTestClient, sock: WSK_SOCKET, level: int, option: int) -> int:
    out = PSIZE_T()
    request = wsk.call(
        "WskControlSocket",
        sock.Dispatch.WskControlSocket,
        sock,
        WskGetOption,
        option,
        level,
        0,
        None,
        4,
        out,
        None,
    )
    assert request.status == STATUS_SUCCESS, request
    return out.value


@dataclass
class Conn:
    """Connection-socket callbacks that record what they are told (for accepted sockets)."""

    received: bytearray = field(default_factory=bytearray)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def dispatch(self) -> WSK_CLIENT_CONNECTION_DISPATCH:
        return WSK_CLIENT_CONNECTION_DISPATCH(self.on_receive, self.on_disconnect, None)

    def on_receive(
        self,
        context: Any,
        flags: int,
        indication: WSK_DATA_INDICATION | None,
        indicated: int,
        accepted: PSIZE_T,
    ) -> int:
        assert context is self
        element = indication
        with self.changed:
            while element is not None:
                buf = element.Buffer
                assert buf.Mdl is not None
                self.received += bytes(buf.Mdl._view[buf.Offset : buf.Offset + buf.Length])
                element = element.Next
            self.calls.append(("receive", indicated))
            self.changed.notify_all()
        return STATUS_SUCCESS

    def on_disconnect(self, context: Any, flags: int) -> int:
        assert context is self
        with self.changed:
            self.calls.append(("disconnect", flags & WSK_FLAG_ABORTIVE))
            self.changed.notify_all()
        return STATUS_SUCCESS

    def wait(self, predicate: Callable[[], bool]) -> None:
        with self.changed:
            assert self.changed.wait_for(predicate, WAIT), self.calls


@dataclass
class Listen:
    """A listening socket's callbacks.  ``accept_answer`` / ``inspect_answer`` decide the
    returns; sockets kept through WskAcceptEvent are handed to ``wsk`` to close."""

    wsk: WskTestClient
    accept_answer: int = STATUS_SUCCESS
    inspect_answer: int = WskInspectAccept
    conn: Conn | None = None
    during_accept: Callable[[WSK_SOCKET | None, PPVOID[Any], PPVOID[Any]], None] | None = None
    accepts: list[tuple[WSK_SOCKET | None, Any, Any, int]] = field(default_factory=list)
    inspects: list[tuple[WSK_INSPECT_ID | None, Any, Any]] = field(default_factory=list)
    aborts: list[WSK_INSPECT_ID] = field(default_factory=list)
    irqls: list[int] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def dispatch(self) -> WSK_CLIENT_LISTEN_DISPATCH:
        return WSK_CLIENT_LISTEN_DISPATCH(self.on_accept, self.on_inspect, self.on_abort)

    def on_accept(
        self,
        context: Any,
        flags: int,
        local: SOCKADDR | None,
        remote: SOCKADDR | None,
        sock: WSK_SOCKET | None,
        context_out: PPVOID[Any],
        dispatch_out: PPVOID[Any],
    ) -> int:
        assert context is self
        self.irqls.append(KeGetCurrentIrql())
        answer = self.accept_answer if sock is not None else STATUS_REQUEST_NOT_ACCEPTED
        if sock is not None and answer == STATUS_SUCCESS:
            if self.conn is not None:
                context_out.value = self.conn
                dispatch_out.value = self.conn.dispatch()
            self.wsk.sockets.append(sock)  # ours now: closed by the client at the end
        if self.during_accept is not None:
            self.during_accept(sock, context_out, dispatch_out)
        with self.changed:
            self.accepts.append(
                (
                    sock,
                    local.to_tuple() if local is not None else None,
                    remote.to_tuple() if remote is not None else None,
                    flags,
                )
            )
            self.changed.notify_all()
        return answer

    def on_inspect(
        self,
        context: Any,
        local: SOCKADDR | None,
        remote: SOCKADDR | None,
        inspect_id: WSK_INSPECT_ID | None,
    ) -> int:
        assert context is self
        self.irqls.append(KeGetCurrentIrql())
        with self.changed:
            copy = (
                None
                if inspect_id is None
                else WSK_INSPECT_ID(inspect_id.Key, inspect_id.SerialNumber)
            )
            self.inspects.append(
                (
                    copy,
                    local.to_tuple() if local is not None else None,
                    remote.to_tuple() if remote is not None else None,
                )
            )
            self.changed.notify_all()
        return int(self.inspect_answer)

    def on_abort(self, context: Any, inspect_id: WSK_INSPECT_ID) -> int:
        assert context is self
        with self.changed:
            self.aborts.append(WSK_INSPECT_ID(inspect_id.Key, inspect_id.SerialNumber))
            self.changed.notify_all()
        return STATUS_SUCCESS

    def wait(self, predicate: Callable[[], bool]) -> None:
        with self.changed:
            assert self.changed.wait_for(predicate, WAIT), (self.accepts, self.inspects)

    def stays(self, predicate: Callable[[], bool], seconds: float = 0.3) -> bool:
        """True if ``predicate`` stayed false for ``seconds`` (a bounded negative check)."""
        with self.changed:
            return not self.changed.wait_for(predicate, seconds)


def listening(
    wsk: WskTestClient,
    host: str = "127.0.0.1",
    events: Listen | None = None,
    options: tuple[tuple[int, int, int], ...] = (),
) -> tuple[WSK_SOCKET, int]:
    sock = wsk.listen(
        (loopback(host), 0),
        context=events,
        dispatch=events.dispatch() if events else None,
        options=options,
    )
    return sock, port_of(wsk, sock)


# --- WskBind / WskAccept ---------------------------------------------------------------------


@pytest.mark.parametrize("host", HOSTS)
def test_accept_completes_inline_when_a_connection_waits(wsk: WskTestClient, host: str) -> None:
    listener, port = listening(wsk, host)
    peer = dial(host, port)
    wait_in_backlog(listener)
    local, remote = SOCKADDR_STORAGE(), SOCKADDR_STORAGE()
    accept = wsk.accept(listener, local=local, remote=remote)
    assert accept.returned == STATUS_SUCCESS
    assert accept.done
    assert accept.status == STATUS_SUCCESS
    assert accept.pending_returned is False
    sock = accept.information
    assert isinstance(sock, WSK_SOCKET)
    assert sock.Dispatch is subsystem.connection_dispatch
    assert local.to_tuple()[:2] == (host, port)
    assert remote.to_tuple()[:2] == peer.getsockname()[:2]
    # A fully working connection socket.
    assert wsk.send(sock, b"hello").wait(WAIT).status == STATUS_SUCCESS
    assert peer.recv(10) == b"hello"
    peer.sendall(b"back")
    request, pool = wsk.receive(sock, 10)
    request.wait(WAIT)
    assert bytes(pool[: request.information]) == b"back"
    peer.close()


@pytest.mark.parametrize("host", HOSTS)
def test_accept_pends_until_a_connection_arrives(wsk: WskTestClient, host: str) -> None:
    listener, port = listening(wsk, host)
    local = SOCKADDR_IN6() if ":" in host else SOCKADDR_IN()
    remote = SOCKADDR_STORAGE()
    accept = wsk.accept(listener, local=local, remote=remote)
    assert accept.returned == STATUS_PENDING
    assert not accept.done
    peer = dial(host, port)
    accept.wait(WAIT)
    assert accept.status == STATUS_SUCCESS
    assert accept.pending_returned is True
    assert accept.completion_thread == subsystem.engine.thread_id
    assert accept.completion_irql == DISPATCH_LEVEL
    assert local.to_tuple()[:2] == (host, port)
    assert remote.to_tuple()[:2] == peer.getsockname()[:2]
    request, remote_now = wsk.remote_address(accept.information)
    assert request.status == STATUS_SUCCESS
    assert remote_now.to_tuple()[:2] == peer.getsockname()[:2]
    peer.close()


def test_several_pending_accepts_complete_in_the_order_issued(wsk: WskTestClient) -> None:
    listener, port = listening(wsk)
    remotes = [SOCKADDR_STORAGE() for _ in range(3)]
    accepts = [wsk.accept(listener, remote=remote) for remote in remotes]
    assert all(a.returned == STATUS_PENDING for a in accepts)
    peers = []
    for i in range(3):
        peers.append(dial("127.0.0.1", port))
        accepts[i].wait(WAIT)
        assert accepts[i].status == STATUS_SUCCESS
        assert remotes[i].to_tuple()[1] == peers[i].getsockname()[1]
        assert not any(a.done for a in accepts[i + 1 :])
    for peer in peers:
        peer.close()


def test_out_addresses_are_optional_and_must_fit_the_family(wsk: WskTestClient) -> None:
    listener, port = listening(wsk)
    wrong = wsk.accept(listener, local=SOCKADDR_IN6())
    assert wrong.returned == STATUS_INVALID_PARAMETER
    assert wrong.status == STATUS_INVALID_PARAMETER
    assert wrong.done
    only_remote = SOCKADDR_IN()
    accept = wsk.accept(listener, remote=only_remote)
    peer = dial("127.0.0.1", port)
    accept.wait(WAIT)
    assert accept.status == STATUS_SUCCESS
    assert only_remote.to_tuple() == peer.getsockname()
    peer.close()


def test_refusals(wsk: WskTestClient) -> None:
    made = wsk.socket(AF_INET, WSK_FLAG_LISTEN_SOCKET)
    assert made.status == STATUS_SUCCESS
    sock = made.information
    assert sock.Dispatch is subsystem.listen_dispatch
    unbound = wsk.accept(sock)
    assert unbound.returned == unbound.status == STATUS_INVALID_DEVICE_STATE
    address_request, _ = wsk.local_address(sock)
    assert address_request.status == STATUS_INVALID_DEVICE_STATE
    inspect = wsk.call(
        "WskInspectComplete",
        sock.Dispatch.WskInspectComplete,
        sock,
        WSK_INSPECT_ID(1, 1),
        WskInspectAccept,
    )
    assert inspect.status == STATUS_INVALID_DEVICE_STATE
    bad_flags = wsk.call(
        "WskBind", sock.Dispatch.WskBind, sock, sockaddr_from_tuple(("127.0.0.1", 0)), 1
    )
    assert bad_flags.status == STATUS_INVALID_PARAMETER
    wrong_family = wsk.call(
        "WskBind", sock.Dispatch.WskBind, sock, sockaddr_from_tuple(("::1", 0)), 0
    )
    assert wrong_family.status == STATUS_INVALID_PARAMETER
    bound = wsk.call(
        "WskBind", sock.Dispatch.WskBind, sock, sockaddr_from_tuple(("127.0.0.1", 0)), 0
    )
    assert (bound.status, bound.information) == (STATUS_SUCCESS, 0)
    again = wsk.call(
        "WskBind", sock.Dispatch.WskBind, sock, sockaddr_from_tuple(("127.0.0.1", 0)), 0
    )
    assert again.status == STATUS_INVALID_DEVICE_STATE
    flags = wsk.accept(sock, flags=1)
    assert flags.returned == flags.status == STATUS_INVALID_PARAMETER
    # Conditional accept must be set before bind.
    assert (
        set_option(wsk, sock, SOL_SOCKET, SO_CONDITIONAL_ACCEPT, 1) == STATUS_INVALID_DEVICE_STATE
    )


@pytest.mark.no_verifier
def test_misuse_fails_cleanly(wsk: WskTestClient) -> None:
    """A connection function given a listening socket, a call after close: the plain
    provider answers STATUS_INVALID_HANDLE (the verifier would stop the client first)."""
    listener, _port = listening(wsk)
    connection_send = subsystem.connection_dispatch.WskSend
    send = wsk.start("WskSend", connection_send, listener, make_buffer(1)[1], 0)
    assert send.returned == send.status == STATUS_INVALID_HANDLE
    wsk.close_socket(listener)
    again = wsk.accept(listener)
    assert again.returned == again.status == STATUS_INVALID_HANDLE


def test_cancel_a_pending_accept(wsk: WskTestClient) -> None:
    listener, port = listening(wsk)
    first = wsk.accept(listener)
    second = wsk.accept(listener)
    assert first.returned == second.returned == STATUS_PENDING
    assert IoCancelIrp(first.irp) is True
    first.wait(WAIT)
    assert (first.status, first.information) == (STATUS_CANCELLED, 0)
    assert not second.done
    peer = dial("127.0.0.1", port)
    second.wait(WAIT)
    assert second.status == STATUS_SUCCESS
    # Cancelling a completed accept changes nothing.
    assert IoCancelIrp(second.irp) is False
    assert second.status == STATUS_SUCCESS
    peer.close()


def test_close_cancels_pending_accepts_before_it_completes(wsk: WskTestClient) -> None:
    listener, _port = listening(wsk)
    accepts = [wsk.accept(listener) for _ in range(2)]
    close = wsk.close_socket(listener)
    assert close.status == STATUS_SUCCESS
    assert close.information == 0
    for accept in accepts:
        assert accept.done
        assert (accept.status, accept.information) == (STATUS_CANCELLED, 0)
        assert accept.completed_at is not None
        assert close.completed_at is not None
        assert accept.completed_at <= close.completed_at


def test_close_resets_connections_waiting_in_the_backlog(
    wsk: WskTestClient, capture_port: Capture
) -> None:
    listener, port = listening(wsk)
    cap = capture_port(port)
    peer = dial("127.0.0.1", port)
    wait_in_backlog(listener)
    assert wsk.close_socket(listener).status == STATUS_SUCCESS
    cap.wait_rst(from_port=port)
    with pytest.raises(ConnectionResetError):
        peer.recv(10)
    assert cap.fins(from_port=port) == []
    peer.close()


def test_keepalive_and_rcvbuf_are_inherited(wsk: WskTestClient) -> None:
    listener, port = listening(
        wsk, options=((SOL_SOCKET, SO_KEEPALIVE, 1), (SOL_SOCKET, SO_RCVBUF, 65536))
    )
    rcvbuf = get_option(wsk, listener, SOL_SOCKET, SO_RCVBUF)
    accept = wsk.accept(listener)
    peer = dial("127.0.0.1", port)
    accept.wait(WAIT)
    sock = accept.information
    assert get_option(wsk, sock, SOL_SOCKET, SO_KEEPALIVE) == 1
    assert get_option(wsk, sock, SOL_SOCKET, SO_RCVBUF) == rcvbuf
    peer.close()


def test_ipv6_listener_is_ipv6_only_unless_cleared_before_bind(wsk: WskTestClient) -> None:
    loopback("::1")
    only6, port6 = listening(wsk, "::")
    assert get_option(wsk, only6, IPPROTO_IPV6, IPV6_V6ONLY) == 1
    with pytest.raises(ConnectionRefusedError):
        dial("127.0.0.1", port6)
    dual, port = listening(wsk, "::", options=((IPPROTO_IPV6, IPV6_V6ONLY, 0),))
    remote = SOCKADDR_STORAGE()
    accept = wsk.accept(dual, remote=remote)
    peer = dial("127.0.0.1", port)
    accept.wait(WAIT)
    assert accept.status == STATUS_SUCCESS
    assert remote.sa_family == AF_INET6
    host, remote_port = remote.to_tuple()[:2]
    assert ipaddress.IPv6Address(host).ipv4_mapped == ipaddress.IPv4Address("127.0.0.1")
    assert remote_port == peer.getsockname()[1]
    peer.close()


# --- an accepted socket disconnects like a connected one ----------------------------------------


def accepted_pair(
    wsk: WskTestClient, capture_port: Capture
) -> tuple[WSK_SOCKET, socket.socket, int, WireCapture]:
    listener, port = listening(wsk)
    cap = capture_port(port)
    accept = wsk.accept(listener)
    peer = dial("127.0.0.1", port)
    accept.wait(WAIT)
    assert accept.status == STATUS_SUCCESS
    return accept.information, peer, port, cap


def test_graceful_disconnect_of_an_accepted_socket(
    wsk: WskTestClient, capture_port: Capture
) -> None:
    sock, peer, port, cap = accepted_pair(wsk, capture_port)
    assert wsk.send(sock, b"served").wait(WAIT).status == STATUS_SUCCESS
    disc = wsk.disconnect(sock, final=b"; bye").wait(WAIT)
    assert (disc.status, disc.information) == (STATUS_SUCCESS, len(b"; bye"))
    assert tcp.tcp_state(kernel(sock)) == tcp.TcpState.FIN_WAIT2
    assert reads_to_end(peer) == (b"served; bye", "fin")
    cap.wait_fin(from_port=port)
    peer.sendall(b"still open")  # half-open: the accepted side still receives
    request, pool = wsk.receive(sock, 100)
    request.wait(WAIT)
    assert bytes(pool[: request.information]) == b"still open"
    assert cap.rsts() == []
    peer.close()


def test_abortive_disconnect_of_an_accepted_socket(
    wsk: WskTestClient, capture_port: Capture
) -> None:
    sock, peer, port, cap = accepted_pair(wsk, capture_port)
    receive, _ = wsk.receive(sock, 10)
    assert receive.returned == STATUS_PENDING
    abort = wsk.disconnect(sock, flags=WSK_FLAG_ABORTIVE)
    assert abort.returned == STATUS_SUCCESS
    cap.wait_rst(from_port=port)
    receive.wait(WAIT)
    assert receive.status != STATUS_SUCCESS
    assert reads_to_end(peer)[1] == "rst"
    assert cap.fins(from_port=port) == []
    peer.close()


def test_close_without_disconnect_resets_an_accepted_socket(
    wsk: WskTestClient, capture_port: Capture
) -> None:
    sock, peer, port, cap = accepted_pair(wsk, capture_port)
    assert wsk.close_socket(sock).status == STATUS_SUCCESS
    cap.wait_rst(from_port=port)
    with pytest.raises(ConnectionResetError):
        peer.recv(10)
    assert cap.fins(from_port=port) == []
    peer.close()


# --- WskAcceptEvent ------------------------------------------------------------------------------


def test_accept_event_gets_the_socket_with_inherited_connection_events(
    wsk: WskTestClient,
) -> None:
    conn = Conn()
    events = Listen(wsk, conn=conn)
    listener, port = listening(wsk, events=events)
    mask = WSK_EVENT_ACCEPT | WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT
    assert wsk.set_events(listener, mask) == STATUS_SUCCESS
    peer = dial("127.0.0.1", port)
    events.wait(lambda: len(events.accepts) == 1)
    sock, local, remote, flags = events.accepts[0]
    assert sock is not None
    assert flags & WSK_FLAG_AT_DISPATCH_LEVEL
    assert events.irqls == [DISPATCH_LEVEL]
    assert local == ("127.0.0.1", port)
    assert remote == peer.getsockname()
    owner: Any = sock
    assert owner.events == WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT
    assert owner.context is conn
    peer.sendall(b"to the event")
    peer.shutdown(socket.SHUT_WR)
    conn.wait(lambda: ("disconnect", 0) in conn.calls)
    assert bytes(conn.received) == b"to the event"
    peer.close()


def test_accept_via_wskaccept_inherits_no_events(wsk: WskTestClient) -> None:
    events = Listen(wsk, conn=Conn())
    listener, port = listening(wsk, events=events)
    assert wsk.set_events(listener, WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT) == STATUS_SUCCESS
    accept = wsk.accept(listener)
    peer = dial("127.0.0.1", port)
    accept.wait(WAIT)
    owner: Any = accept.information
    assert owner.events == 0
    peer.close()


def test_pending_accepts_take_precedence_over_the_event(wsk: WskTestClient) -> None:
    events = Listen(wsk)
    listener, port = listening(wsk, events=events)
    assert wsk.set_events(listener, WSK_EVENT_ACCEPT) == STATUS_SUCCESS
    accept = wsk.accept(listener)
    assert accept.returned == STATUS_PENDING
    first = dial("127.0.0.1", port)
    accept.wait(WAIT)
    assert accept.status == STATUS_SUCCESS
    second = dial("127.0.0.1", port)
    events.wait(lambda: len(events.accepts) == 1)
    owner: Any = events.accepts[0][0]
    assert owner.remote == second.getsockname()
    assert cast(Any, accept.information).remote == first.getsockname()
    first.close()
    second.close()


def test_request_not_accepted_makes_the_provider_reset_the_socket(
    wsk: WskTestClient, capture_port: Capture
) -> None:
    events = Listen(wsk, accept_answer=STATUS_REQUEST_NOT_ACCEPTED)
    listener, port = listening(wsk, events=events)
    cap = capture_port(port)
    assert wsk.set_events(listener, WSK_EVENT_ACCEPT) == STATUS_SUCCESS
    peer = dial_and_get_reset("127.0.0.1", port)
    events.wait(lambda: len(events.accepts) == 1)
    cap.wait_rst(from_port=port)
    wsk.local_address(listener)  # a call through the provider thread: _offer has finished
    declined: Any = events.accepts[0][0]
    assert declined.closed
    assert declined not in cast(Any, listener).client.sockets
    if peer is not None:
        peer.close()


def test_events_enabled_from_inside_the_accept_callback(wsk: WskTestClient) -> None:
    conn = Conn()
    outcome: list[int] = []

    def enable(
        sock: WSK_SOCKET | None, context_out: PPVOID[Any], dispatch_out: PPVOID[Any]
    ) -> None:
        assert sock is not None
        # The out-parameters were filled first (as the header asks); enabling works at once.
        outcome.append(cast(int, wsk.set_events(sock, WSK_EVENT_RECEIVE)))

    events = Listen(wsk, conn=conn, during_accept=enable)
    listener, port = listening(wsk, events=events)
    assert wsk.set_events(listener, WSK_EVENT_ACCEPT) == STATUS_SUCCESS
    peer = dial("127.0.0.1", port)
    events.wait(lambda: len(events.accepts) == 1)
    assert outcome == [STATUS_SUCCESS]
    peer.sendall(b"indicated")
    conn.wait(lambda: bytes(conn.received) == b"indicated")
    peer.close()


def test_connection_events_stay_enabled_on_the_listener(wsk: WskTestClient) -> None:
    events = Listen(wsk, conn=Conn())
    made = wsk.socket(AF_INET, WSK_FLAG_LISTEN_SOCKET, events, events.dispatch())
    unbound = made.information
    assert wsk.set_events(unbound, WSK_EVENT_ACCEPT) == STATUS_INVALID_DEVICE_STATE
    listener, port = listening(wsk, events=events)
    assert wsk.set_events(listener, WSK_EVENT_ACCEPT | WSK_EVENT_RECEIVE) == STATUS_SUCCESS
    disable_receive = WSK_EVENT_RECEIVE | WSK_EVENT_DISABLE
    assert wsk.set_events(listener, disable_receive) == STATUS_INVALID_PARAMETER
    # WskAcceptEvent itself can be disabled and enabled again; the inherited set stays.
    assert wsk.set_events(listener, WSK_EVENT_ACCEPT | WSK_EVENT_DISABLE) == STATUS_SUCCESS
    assert cast(Any, listener).events == WSK_EVENT_RECEIVE
    waiting = dial("127.0.0.1", port)
    wait_in_backlog(listener)
    assert events.stays(lambda: bool(events.accepts))  # disabled: it waits in the backlog
    assert wsk.set_events(listener, WSK_EVENT_ACCEPT) == STATUS_SUCCESS
    events.wait(lambda: len(events.accepts) == 1)
    assert cast(Any, events.accepts[0][0]).events == WSK_EVENT_RECEIVE
    waiting.close()


def test_close_inside_the_accept_callback_completes_after_it_returns(wsk: WskTestClient) -> None:
    closes: list[Request] = []
    events = Listen(wsk)
    listener, port = listening(wsk, events=events)

    def close_listener(sock: WSK_SOCKET | None, _c: PPVOID[Any], _d: PPVOID[Any]) -> None:
        closes.append(wsk.start("WskCloseSocket", listener.Dispatch.WskCloseSocket, listener))
        assert closes[0].returned == STATUS_PENDING
        assert not closes[0].done

    events.during_accept = close_listener
    assert wsk.set_events(listener, WSK_EVENT_ACCEPT) == STATUS_SUCCESS
    peer = dial("127.0.0.1", port)
    events.wait(lambda: bool(closes) and closes[0].done)
    assert closes[0].status == STATUS_SUCCESS
    wsk.sockets.remove(listener)
    peer.close()


def test_a_failed_listener_says_so_once_and_fails_every_request(wsk: WskTestClient) -> None:
    """The one way a Linux listener fails for good: its fd stops listening (here through a
    shutdown of the kernel socket behind it); accept() then fails with EINVAL."""
    events = Listen(wsk)
    listener, port = listening(wsk, events=events)
    pending = wsk.accept(listener)
    assert wsk.set_events(listener, WSK_EVENT_ACCEPT) == STATUS_SUCCESS
    kernel(listener).shutdown(socket.SHUT_RD)
    pending.wait(WAIT)
    assert (pending.status, pending.information) == (STATUS_FILE_FORCED_CLOSED, 0)
    events.wait(lambda: len(events.accepts) == 1)
    assert events.accepts[0][0] is None
    later = wsk.accept(listener)
    assert later.returned == later.status == STATUS_FILE_FORCED_CLOSED
    with pytest.raises(ConnectionRefusedError):
        dial("127.0.0.1", port)
    assert events.stays(lambda: len(events.accepts) > 1)
    assert wsk.close_socket(listener).status == STATUS_SUCCESS


# --- conditional accept ----------------------------------------------------------------------


def conditional(
    wsk: WskTestClient, events: Listen, host: str = "127.0.0.1"
) -> tuple[WSK_SOCKET, int]:
    listener, port = listening(wsk, host, events, ((SOL_SOCKET, SO_CONDITIONAL_ACCEPT, 1),))
    assert get_option(wsk, listener, SOL_SOCKET, SO_CONDITIONAL_ACCEPT) == 1
    return listener, port


def inspect_complete(
    wsk: WskTestClient, listener: WSK_SOCKET, inspect_id: Any, action: int
) -> Request:
    return wsk.call(
        "WskInspectComplete", listener.Dispatch.WskInspectComplete, listener, inspect_id, action
    )


@pytest.mark.parametrize("host", HOSTS)
def test_inspect_accept_delivers_through_wskaccept(wsk: WskTestClient, host: str) -> None:
    events = Listen(wsk, inspect_answer=WskInspectAccept)
    listener, port = conditional(wsk, events, host)
    accept = wsk.accept(listener)
    peer = dial(host, port)
    accept.wait(WAIT)
    assert accept.status == STATUS_SUCCESS
    assert len(events.inspects) == 1
    inspect_id, local, remote = events.inspects[0]
    assert inspect_id is not None
    assert local[:2] == (host, port)
    assert remote[:2] == peer.getsockname()[:2]
    assert events.irqls == [DISPATCH_LEVEL]
    sock = accept.information
    assert inspect_id_of(sock) == inspect_id
    # SIO_WSK_QUERY_INSPECT_ID (answered here for the connection socket to use).
    out, size = WSK_INSPECT_ID(), PSIZE_T()
    assert query_inspect_id(sock, 16, out, size, None) == STATUS_SUCCESS
    assert (out, size.value) == (inspect_id, 16)
    raw = bytearray(16)
    assert query_inspect_id(sock, 16, raw, size, None) == STATUS_SUCCESS
    assert int.from_bytes(raw[:8], "little") == inspect_id.Key
    assert int.from_bytes(raw[8:12], "little") == inspect_id.SerialNumber
    assert query_inspect_id(sock, 8, bytearray(8), size, None) == STATUS_BUFFER_TOO_SMALL
    assert query_inspect_id(sock, 16, out, None, None) == STATUS_INVALID_PARAMETER
    assert query_inspect_id(sock, 16, out, size, accept.irp) == STATUS_INVALID_PARAMETER
    assert wsk.send(sock, b"ok").wait(WAIT).status == STATUS_SUCCESS
    assert peer.recv(10) == b"ok"
    assert aborts_none(events)
    peer.close()


def aborts_none(events: Listen) -> bool:
    return events.stays(lambda: bool(events.aborts), 0.2)


def test_inspect_ids_only_for_sockets_from_a_conditional_listener(wsk: WskTestClient) -> None:
    listener, port = listening(wsk)
    accept = wsk.accept(listener)
    peer = dial("127.0.0.1", port)
    accept.wait(WAIT)
    out, size = WSK_INSPECT_ID(), PSIZE_T()
    result = query_inspect_id(accept.information, 16, out, size, None)
    assert result == STATUS_INVALID_DEVICE_REQUEST
    assert inspect_id_of(accept.information) is None
    peer.close()


def test_inspect_accept_delivers_through_the_accept_event(wsk: WskTestClient) -> None:
    events = Listen(wsk, inspect_answer=WskInspectAccept)
    listener, port = conditional(wsk, events)
    assert wsk.set_events(listener, WSK_EVENT_ACCEPT) == STATUS_SUCCESS
    peer = dial("127.0.0.1", port)
    events.wait(lambda: len(events.accepts) == 1)
    sock = events.accepts[0][0]
    assert inspect_id_of(sock) == events.inspects[0][0]
    peer.close()


def test_inspect_reject_resets_the_peer_and_nothing_follows(
    wsk: WskTestClient, capture_port: Capture
) -> None:
    events = Listen(wsk, inspect_answer=WskInspectReject)
    listener, port = conditional(wsk, events)
    cap = capture_port(port)
    accept = wsk.accept(listener)
    peer = dial_and_get_reset("127.0.0.1", port)
    cap.wait_rst(from_port=port)
    assert len(events.inspects) == 1
    assert not accept.done
    assert aborts_none(events)
    if peer is not None:
        peer.close()


@pytest.mark.parametrize("action", [WskInspectAccept, WskInspectReject])
def test_inspect_pend_then_complete(wsk: WskTestClient, action: int) -> None:
    events = Listen(wsk, inspect_answer=WskInspectPend)
    listener, port = conditional(wsk, events)
    accept = wsk.accept(listener)
    peer = dial("127.0.0.1", port)
    events.wait(lambda: len(events.inspects) == 1)
    inspect_id = events.inspects[0][0]
    assert inspect_id is not None
    assert not accept.done
    # Refusals: an unknown ID, an action that is not Accept or Reject.
    unknown = WSK_INSPECT_ID(inspect_id.Key, inspect_id.SerialNumber + 1000)
    assert inspect_complete(wsk, listener, unknown, action).status == STATUS_INVALID_PARAMETER
    pend = inspect_complete(wsk, listener, inspect_id, WskInspectPend)
    assert pend.status == STATUS_INVALID_PARAMETER
    # The client's own copy of the ID identifies the request (contents, not identity).
    copy = WSK_INSPECT_ID(inspect_id.Key, inspect_id.SerialNumber)
    done = inspect_complete(wsk, listener, copy, action)
    assert done.status == STATUS_SUCCESS
    if action == WskInspectAccept:
        accept.wait(WAIT)
        assert accept.status == STATUS_SUCCESS
        assert inspect_id_of(accept.information) == inspect_id
    else:
        with pytest.raises(ConnectionResetError):
            peer.recv(10)
        assert not accept.done
    # Decided once: the ID is no longer known.
    assert inspect_complete(wsk, listener, copy, action).status == STATUS_INVALID_PARAMETER
    assert aborts_none(events)
    peer.close()


@pytest.mark.parametrize("how", ["fin", "rst"])
def test_a_pended_request_the_peer_drops_is_aborted(wsk: WskTestClient, how: str) -> None:
    events = Listen(wsk, inspect_answer=WskInspectPend)
    listener, port = conditional(wsk, events)
    accept = wsk.accept(listener)
    peer = dial("127.0.0.1", port)
    events.wait(lambda: len(events.inspects) == 1)
    inspect_id = events.inspects[0][0]
    if how == "rst":
        tcp.abort_with_rst(peer)
    else:
        peer.shutdown(socket.SHUT_WR)
    events.wait(lambda: len(events.aborts) == 1)
    assert events.aborts[0] == inspect_id
    # Accepting it now has no effect: "never established even with Accept".
    late = inspect_complete(wsk, listener, inspect_id, WskInspectAccept)
    assert late.status == STATUS_SUCCESS
    with pytest.raises(TimeoutError):
        accept.wait(0.3)
    peer.close()


def test_an_accepted_request_reset_before_delivery_is_aborted(wsk: WskTestClient) -> None:
    events = Listen(wsk, inspect_answer=WskInspectAccept)
    listener, port = conditional(wsk, events)
    peer = dial("127.0.0.1", port)
    events.wait(lambda: len(events.inspects) == 1)
    tcp.abort_with_rst(peer)  # nobody has taken it yet (no WskAccept, no accept event)
    events.wait(lambda: len(events.aborts) == 1)
    assert events.aborts[0] == events.inspects[0][0]
    accept = wsk.accept(listener)
    assert accept.returned == STATUS_PENDING  # nothing left to deliver
    peer.close()


def test_an_accepted_request_keeps_data_and_fin_until_delivered(wsk: WskTestClient) -> None:
    events = Listen(wsk, inspect_answer=WskInspectAccept)
    listener, port = conditional(wsk, events)
    peer = dial("127.0.0.1", port)
    events.wait(lambda: len(events.inspects) == 1)
    peer.sendall(b"early data")
    peer.shutdown(socket.SHUT_WR)
    assert aborts_none(events)
    accept = wsk.accept(listener)
    assert accept.returned == STATUS_SUCCESS  # it was waiting: inline
    data, last = wsk.receive_all(accept.information, timeout=WAIT)
    assert (data, last.status, last.information) == (b"early data", STATUS_SUCCESS, 0)
    peer.close()


def test_close_resets_held_requests(wsk: WskTestClient) -> None:
    events = Listen(wsk, inspect_answer=WskInspectPend)
    listener, port = conditional(wsk, events)
    peer = dial("127.0.0.1", port)
    events.wait(lambda: len(events.inspects) == 1)
    assert wsk.close_socket(listener).status == STATUS_SUCCESS
    with pytest.raises(ConnectionResetError):
        peer.recv(10)
    assert not events.aborts
    peer.close()


def test_a_failed_conditional_listener_gets_a_null_inspect_id(wsk: WskTestClient) -> None:
    events = Listen(wsk)
    listener, _port = conditional(wsk, events)
    kernel(listener).shutdown(socket.SHUT_RD)
    events.wait(lambda: len(events.inspects) == 1)
    assert events.inspects[0] == (None, None, None)
    late = inspect_complete(wsk, listener, WSK_INSPECT_ID(1, 1), WskInspectAccept)
    assert late.status == STATUS_FILE_FORCED_CLOSED


def test_a_udp_listening_socket_is_created_and_only_its_bind_fails(wsk: WskTestClient) -> None:
    """Wine's driver test, validated on Windows: WskSocket(WSK_FLAG_LISTEN_SOCKET,
    SOCK_DGRAM, IPPROTO_UDP) succeeds; WskBind then fails with STATUS_NOT_IMPLEMENTED."""
    from pywsk.nt import STATUS_NOT_IMPLEMENTED
    from pywsk.wsk import AF_INET, IPPROTO_UDP, SOCK_DGRAM, WSK_FLAG_LISTEN_SOCKET

    assert wsk.provider.Dispatch is not None
    made = wsk.call(
        "WskSocket",
        wsk.provider.Dispatch.WskSocket,
        wsk.provider.Client,
        AF_INET,
        SOCK_DGRAM,
        IPPROTO_UDP,
        WSK_FLAG_LISTEN_SOCKET,
        None,
        None,
        None,
        None,
        None,
    )
    assert made.status == STATUS_SUCCESS
    sock = made.information
    wsk.sockets.append(sock)
    bound = wsk.call(
        "WskBind", sock.Dispatch.WskBind, sock, sockaddr_from_tuple(("127.0.0.1", 0)), 0
    )
    assert bound.status == STATUS_NOT_IMPLEMENTED
    local = wsk.call(
        "WskGetLocalAddress", sock.Dispatch.WskGetLocalAddress, sock, SOCKADDR_STORAGE()
    )
    assert local.status == STATUS_INVALID_DEVICE_STATE  # never bound
    assert wsk.close_socket(sock).status == STATUS_SUCCESS
