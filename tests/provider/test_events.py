"""Event callbacks on connection sockets: WskReceiveEvent, WskDisconnectEvent, WskSendBacklogEvent.

Each rule of the pages "Enabling and disabling event callback functions", WskReceiveEvent,
WskDisconnectEvent and WskSendBacklogEvent is driven against a plain Linux peer on loopback.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from pywsk.nt import (
    DISPATCH_LEVEL,
    STATUS_DATA_NOT_ACCEPTED,
    STATUS_EVENT_PENDING,
    STATUS_INVALID_DEVICE_STATE,
    STATUS_INVALID_PARAMETER,
    STATUS_PENDING,
    STATUS_SUCCESS,
    KeGetCurrentIrql,
)
from pywsk.provider import subsystem
from pywsk.testing.driver import Request, WskTestClient
from pywsk.wsk import (
    AF_INET,
    NPI_WSK_INTERFACE_ID,
    PSIZE_T,
    SIO_WSK_QUERY_IDEAL_SEND_BACKLOG,
    WSK_CLIENT_CONNECTION_DISPATCH,
    WSK_DATA_INDICATION,
    WSK_EVENT_CALLBACK_CONTROL,
    WSK_EVENT_DISABLE,
    WSK_EVENT_DISCONNECT,
    WSK_EVENT_RECEIVE,
    WSK_EVENT_SEND_BACKLOG,
    WSK_FLAG_ABORTIVE,
    WSK_FLAG_AT_DISPATCH_LEVEL,
    WSK_SET_STATIC_EVENT_CALLBACKS,
    WSK_SOCKET,
    WskIoctl,
)

Listener = Callable[..., socket.socket]
WAIT = 10.0


@dataclass
class Events:
    """A client's callbacks that record what WSK told them; ``answer`` decides the return."""

    received: bytearray = field(default_factory=bytearray)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    answer: Callable[[WSK_DATA_INDICATION | None, int, PSIZE_T], int] | None = None
    during: Callable[[], None] | None = None
    changed: threading.Condition = field(default_factory=threading.Condition)

    def dispatch(self) -> WSK_CLIENT_CONNECTION_DISPATCH:
        return WSK_CLIENT_CONNECTION_DISPATCH(self.on_receive, self.on_disconnect, self.on_backlog)

    def _record(self, name: str, value: Any) -> None:
        with self.changed:
            self.calls.append((name, value))
            self.changed.notify_all()

    def on_receive(
        self,
        context: Any,
        flags: int,
        indication: WSK_DATA_INDICATION | None,
        indicated: int,
        accepted: PSIZE_T,
    ) -> int:
        assert context is self
        assert flags & WSK_FLAG_AT_DISPATCH_LEVEL
        assert KeGetCurrentIrql() == DISPATCH_LEVEL
        if self.during is not None:
            self.during()
        status = self.answer(indication, indicated, accepted) if self.answer else STATUS_SUCCESS
        taken = indicated if status != STATUS_SUCCESS else min(accepted.value, indicated)
        if indication is not None and status in (STATUS_SUCCESS, STATUS_PENDING):
            data = bytearray()
            element: WSK_DATA_INDICATION | None = indication
            while element is not None:
                mdl = element.Buffer.Mdl
                assert mdl is not None
                data += bytes(
                    mdl._view[element.Buffer.Offset : element.Buffer.Offset + element.Buffer.Length]
                )
                element = element.Next
            assert len(data) == indicated
            with self.changed:
                self.received += data[:taken]
        self._record("receive", None if indication is None else indicated)
        return status

    def on_disconnect(self, context: Any, flags: int) -> int:
        assert flags & WSK_FLAG_AT_DISPATCH_LEVEL
        self._record("disconnect", flags & WSK_FLAG_ABORTIVE)
        return STATUS_SUCCESS

    def on_backlog(self, context: Any, ideal: int) -> int:
        self._record("backlog", ideal)
        return STATUS_SUCCESS

    def wait(self, predicate: Callable[[], bool]) -> None:
        with self.changed:
            assert self.changed.wait_for(predicate, WAIT), self.calls

    def names(self) -> list[str]:
        with self.changed:
            return [name for name, _ in self.calls]


def with_events(
    wsk: WskTestClient, listener: Listener, mask: int, events: Events | None = None
) -> tuple[WSK_SOCKET, socket.socket, Events]:
    events = events or Events()
    lsock = listener()
    sock = wsk.connect(lsock.getsockname()[:2], context=events, dispatch=events.dispatch())
    peer, _ = lsock.accept()
    peer.settimeout(WAIT)
    if mask:
        assert wsk.set_events(sock, mask) == STATUS_SUCCESS
    return sock, peer, events


def test_receive_event_indicates_data_at_dispatch_level(
    wsk: WskTestClient, listener: Listener
) -> None:
    _sock, peer, events = with_events(wsk, listener, WSK_EVENT_RECEIVE)
    payload = bytes(range(256)) * 1000
    peer.sendall(payload)
    events.wait(lambda: len(events.received) == len(payload))
    assert bytes(events.received) == payload
    peer.close()


def test_pending_receive_takes_precedence_over_the_event(
    wsk: WskTestClient, listener: Listener
) -> None:
    sock, peer, events = with_events(wsk, listener, 0)
    request, pool = wsk.receive(sock, 100)
    assert wsk.set_events(sock, WSK_EVENT_RECEIVE) == STATUS_SUCCESS
    peer.sendall(b"for the irp")
    request.wait(WAIT)
    assert bytes(pool[: request.information]) == b"for the irp"
    peer.sendall(b"for the event")
    events.wait(lambda: bytes(events.received) == b"for the event")
    peer.close()


def test_data_not_accepted_pauses_until_a_receive_then_resumes_buffered_first(
    wsk: WskTestClient, listener: Listener
) -> None:
    events = Events(answer=lambda ind, n, acc: STATUS_DATA_NOT_ACCEPTED)
    sock, peer, _ = with_events(wsk, listener, WSK_EVENT_RECEIVE, events)
    peer.sendall(b"first")
    events.wait(lambda: events.names().count("receive") == 1)
    peer.sendall(b"second")
    # Paused: no further indication although data arrived (bounded check).
    with events.changed:
        assert not events.changed.wait_for(lambda: events.names().count("receive") > 1, 0.3)
    events.answer = None
    resume = wsk.start("WskReceive", wsk.dispatch(sock).WskReceive, sock, _empty(), 0)
    assert resume.returned == STATUS_SUCCESS
    events.wait(lambda: bytes(events.received) == b"firstsecond")
    peer.close()


def test_partial_acceptance_leaves_the_rest_for_the_next_receive(
    wsk: WskTestClient, listener: Listener
) -> None:
    def take_three(ind: WSK_DATA_INDICATION | None, n: int, accepted: PSIZE_T) -> int:
        accepted.value = 3
        return STATUS_SUCCESS

    events = Events(answer=take_three)
    sock, peer, _ = with_events(wsk, listener, WSK_EVENT_RECEIVE, events)
    peer.sendall(b"abcdefgh")
    events.wait(lambda: bytes(events.received) == b"abc")
    events.answer = None
    request, pool = wsk.receive(sock, 100)
    assert request.returned == STATUS_SUCCESS
    assert bytes(pool[: request.information]) == b"defgh"
    peer.sendall(b"more")
    events.wait(lambda: bytes(events.received) == b"abcmore")
    peer.close()


def keeping(
    kept: list[WSK_DATA_INDICATION],
) -> Callable[[WSK_DATA_INDICATION | None, int, PSIZE_T], int]:
    """An answer that retains every list (STATUS_PENDING), appending it to ``kept``."""

    def keep(ind: WSK_DATA_INDICATION | None, n: int, accepted: PSIZE_T) -> int:
        assert ind is not None
        kept.append(ind)
        return STATUS_PENDING

    return keep


def test_retained_indications_are_released_with_wskrelease(
    wsk: WskTestClient, listener: Listener
) -> None:
    kept: list[WSK_DATA_INDICATION] = []
    events = Events(answer=keeping(kept))
    sock, peer, _ = with_events(wsk, listener, WSK_EVENT_RECEIVE, events)
    peer.sendall(b"one")
    events.wait(lambda: bytes(events.received) == b"one")
    peer.sendall(b"two")  # indications go on while the first list is retained
    events.wait(lambda: bytes(events.received) == b"onetwo")
    release = wsk.dispatch(sock).WskRelease
    assert all(release(sock, ind) == STATUS_SUCCESS for ind in kept)
    assert release(sock, kept[0]) == STATUS_INVALID_PARAMETER
    assert release(sock, WSK_DATA_INDICATION()) == STATUS_INVALID_PARAMETER
    peer.close()


def test_retained_lists_hold_the_window_until_released(
    wsk: WskTestClient, listener: Listener
) -> None:
    # A client that retains every list and never releases: the retained bytes count
    # against the receive buffer, indications pause, and TCP holds the peer back.
    import select

    kept: list[WSK_DATA_INDICATION] = []
    events = Events(answer=keeping(kept))
    sock, peer, _ = with_events(wsk, listener, WSK_EVENT_RECEIVE, events)
    limit = cast_socket(sock).sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    peer.setblocking(False)
    pushed = 0
    block = b"p" * 65536
    while pushed < 256 * 1024 * 1024:  # bounded: far more than any buffer here
        try:
            pushed += peer.send(block)
        except BlockingIOError:
            _r, writable, _x = select.select([], [peer], [], 1.0)
            if not writable:
                break  # held back: nothing drains for a second
    assert pushed < 256 * 1024 * 1024, "the peer was never held back"
    retained = sum(ind.Buffer.Length for ind in kept)
    assert limit <= retained <= limit + 65536  # bounded by the receive buffer
    events.answer = None  # from now on the client takes what it is given
    release = wsk.dispatch(sock).WskRelease
    assert all(release(sock, ind) == STATUS_SUCCESS for ind in kept)
    before = len(events.received)
    events.wait(lambda: len(events.received) > before)  # indications resumed
    peer.close()


def cast_socket(sock: WSK_SOCKET) -> Any:
    """The provider socket behind a WSK socket (to read its kernel socket in a test)."""
    return sock


def test_a_release_from_another_thread_before_the_callback_returns_succeeds(
    wsk: WskTestClient, listener: Listener
) -> None:
    # The client hands the list to a driver thread, which releases it while the callback
    # is still running; the callback then returns STATUS_PENDING (as a real driver may).
    statuses: list[int] = []
    sockets: list[WSK_SOCKET] = []

    class HandingOff(Events):
        def on_receive(
            self,
            context: Any,
            flags: int,
            indication: WSK_DATA_INDICATION | None,
            indicated: int,
            accepted: PSIZE_T,
        ) -> int:
            assert indication is not None
            mdl = indication.Buffer.Mdl
            assert mdl is not None
            data = bytes(mdl._view[: indication.Buffer.Length])
            sock = sockets[0]
            worker = threading.Thread(
                target=lambda: statuses.append(wsk.dispatch(sock).WskRelease(sock, indication))
            )
            worker.start()
            worker.join(WAIT)
            assert not worker.is_alive()
            with self.changed:
                self.received += data
            self._record("receive", indicated)
            return STATUS_PENDING

    events = HandingOff()
    sock, peer, _ = with_events(wsk, listener, 0, events)
    sockets.append(sock)
    assert wsk.set_events(sock, WSK_EVENT_RECEIVE) == STATUS_SUCCESS
    peer.sendall(b"first")
    events.wait(lambda: bytes(events.received) == b"first")
    assert statuses == [STATUS_SUCCESS]
    peer.sendall(b"second")  # indications go on; the released list is not held
    events.wait(lambda: bytes(events.received) == b"firstsecond")
    assert statuses == [STATUS_SUCCESS, STATUS_SUCCESS]
    assert not cast_retained(sock)
    peer.close()


def cast_retained(sock: WSK_SOCKET) -> dict[int, Any]:
    """The provider socket's retained indication lists (for checking nothing is left)."""
    holder: Any = sock
    retained: dict[int, Any] = holder.retained
    return retained


@pytest.mark.parametrize("with_receive_event", [True, False])
def test_disconnect_event_after_the_data_on_peer_fin_and_sending_still_works(
    wsk: WskTestClient, listener: Listener, with_receive_event: bool
) -> None:
    mask = WSK_EVENT_DISCONNECT | (WSK_EVENT_RECEIVE if with_receive_event else 0)
    sock, peer, events = with_events(wsk, listener, mask)
    peer.sendall(b"last data")
    peer.shutdown(socket.SHUT_WR)
    events.wait(lambda: "disconnect" in events.names())
    assert events.calls[-1] == ("disconnect", 0)
    if with_receive_event:
        assert bytes(events.received) == b"last data"
        assert events.names().index("receive") < events.names().index("disconnect")
    else:
        data, final = wsk.receive_all(sock, timeout=WAIT)
        assert (data, final.status) == (b"last data", STATUS_SUCCESS)
    assert wsk.send(sock, b"reply").wait(WAIT).status == STATUS_SUCCESS
    assert peer.recv(10) == b"reply"
    peer.close()


def test_disconnect_event_abortive_on_peer_rst(wsk: WskTestClient, listener: Listener) -> None:
    from pywsk.testing.tcp import abort_with_rst

    _sock, peer, events = with_events(wsk, listener, WSK_EVENT_DISCONNECT)
    abort_with_rst(peer)
    events.wait(lambda: ("disconnect", WSK_FLAG_ABORTIVE) in events.calls)
    assert events.names().count("disconnect") == 1
    peer.close()


def test_a_reset_behind_unread_data_is_told_when_it_arrives(
    wsk: WskTestClient, listener: Listener
) -> None:
    # Only WskDisconnectEvent on, nothing reading: the RST is reported when it arrives,
    # once; the data before it is still there for WskReceive, then the reset.
    from pywsk.nt import STATUS_CONNECTION_RESET
    from pywsk.testing.tcp import abort_with_rst

    sock, peer, events = with_events(wsk, listener, WSK_EVENT_DISCONNECT)
    peer.sendall(b"before the reset")
    abort_with_rst(peer)
    events.wait(lambda: ("disconnect", WSK_FLAG_ABORTIVE) in events.calls)
    data, final = wsk.receive_all(sock, timeout=WAIT)
    assert data == b"before the reset"
    assert final.status == STATUS_CONNECTION_RESET
    assert wsk.send(sock, b"x").wait(WAIT).status == STATUS_CONNECTION_RESET
    assert events.calls == [("disconnect", WSK_FLAG_ABORTIVE)]  # once
    peer.close()


def test_a_fin_then_a_reset_is_told_once_each(wsk: WskTestClient, listener: Listener) -> None:
    # The peer's FIN (sending may go on: the WskDisconnectEvent page), then its RST, which
    # ends that: each is news, each is told once, in order.
    from pywsk.testing.tcp import abort_with_rst

    sock, peer, events = with_events(wsk, listener, WSK_EVENT_DISCONNECT)
    peer.shutdown(socket.SHUT_WR)
    events.wait(lambda: ("disconnect", 0) in events.calls)
    assert wsk.send(sock, b"still sending").wait(WAIT).status == STATUS_SUCCESS
    abort_with_rst(peer)
    events.wait(lambda: ("disconnect", WSK_FLAG_ABORTIVE) in events.calls)
    assert wsk.receive_all(sock, timeout=WAIT)[0] == b""
    assert events.calls == [("disconnect", 0), ("disconnect", WSK_FLAG_ABORTIVE)]
    peer.close()


def test_no_disconnect_event_for_local_disconnects(wsk: WskTestClient, listener: Listener) -> None:
    sock, peer, events = with_events(wsk, listener, WSK_EVENT_DISCONNECT)
    assert wsk.disconnect(sock).wait(WAIT).status == STATUS_SUCCESS
    assert wsk.disconnect(sock, flags=WSK_FLAG_ABORTIVE).returned == STATUS_SUCCESS
    wsk.close_socket(sock)
    assert "disconnect" not in events.names()
    peer.close()


def test_send_backlog_event_reports_the_ideal_backlog(
    wsk: WskTestClient, listener: Listener
) -> None:
    sock, peer, events = with_events(wsk, listener, WSK_EVENT_SEND_BACKLOG)
    events.wait(lambda: "backlog" in events.names())
    reported = events.calls[0][1]
    queried = PSIZE_T()
    control = wsk.dispatch(sock).WskControlSocket
    query = (sock, WskIoctl, SIO_WSK_QUERY_IDEAL_SEND_BACKLOG, 0, 0, None, 8, queried, None)
    # The IOCTL's page requires an IRP.
    assert wsk.call("WskControlSocket", control, *query).status == STATUS_SUCCESS
    assert reported == queried.value > 0
    peer.close()


def test_enable_and_disable_rules(wsk: WskTestClient, listener: Listener) -> None:
    made = wsk.socket(AF_INET)
    unconnected = made.information
    assert wsk.set_events(unconnected, WSK_EVENT_RECEIVE) == STATUS_INVALID_PARAMETER  # no dispatch
    sock, peer, events = with_events(wsk, listener, 0)
    assert wsk.set_events(sock, 0x400) == STATUS_INVALID_PARAMETER  # not a connection event
    assert wsk.set_events(sock, WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT) == STATUS_SUCCESS
    both = WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT | WSK_EVENT_DISABLE
    assert wsk.set_events(sock, both) == STATUS_INVALID_PARAMETER  # one per disable
    assert wsk.set_events(sock, WSK_EVENT_RECEIVE | WSK_EVENT_DISABLE) == STATUS_SUCCESS
    wrong_npi = WSK_EVENT_CALLBACK_CONTROL(None, WSK_EVENT_RECEIVE)
    from pywsk.wsk import SO_WSK_EVENT_CALLBACK, SOL_SOCKET, WskSetOption

    status = wsk.dispatch(sock).WskControlSocket(
        sock, WskSetOption, SO_WSK_EVENT_CALLBACK, SOL_SOCKET, 0, wrong_npi, 0, None, None, None
    )
    assert status == STATUS_INVALID_PARAMETER
    peer.sendall(b"not indicated")
    request, pool = wsk.receive(sock, 100)
    request.wait(WAIT)
    assert bytes(pool[: request.information]) == b"not indicated"
    assert "receive" not in events.names()
    peer.close()


def test_enabling_before_connect_is_refused(wsk: WskTestClient) -> None:
    events = Events()
    made = wsk.socket(AF_INET, context=events, dispatch=events.dispatch())
    assert wsk.set_events(made.information, WSK_EVENT_RECEIVE) == STATUS_INVALID_DEVICE_STATE


@pytest.mark.parametrize("with_irp", [False, True])
def test_disabling_a_running_callback(
    wsk: WskTestClient, listener: Listener, with_irp: bool
) -> None:
    outcome: list[Any] = []
    events = Events()
    sock, peer, _ = with_events(wsk, listener, WSK_EVENT_RECEIVE, events)

    def disable_from_inside() -> None:
        if not outcome:
            outcome.append(
                wsk.set_events(sock, WSK_EVENT_RECEIVE | WSK_EVENT_DISABLE, irp=with_irp)
            )

    events.during = disable_from_inside
    peer.sendall(b"x")
    events.wait(lambda: bool(outcome) and "receive" in events.names())
    if with_irp:
        request = outcome[0]
        assert isinstance(request, Request)
        assert request.returned == STATUS_PENDING
        request.wait(WAIT)
        assert request.status == STATUS_SUCCESS
        assert request.pending_returned is True
    else:
        assert outcome[0] == STATUS_EVENT_PENDING
    peer.sendall(b"y")
    request_, pool = wsk.receive(sock, 10)
    request_.wait(WAIT)
    assert bytes(pool[: request_.information]) == b"y"
    assert events.names().count("receive") == 1
    peer.close()


def test_close_inside_a_callback_completes_after_it_returns(
    wsk: WskTestClient, listener: Listener
) -> None:
    closes: list[Request] = []
    events = Events()
    sock, peer, _ = with_events(wsk, listener, WSK_EVENT_RECEIVE, events)

    def close_from_inside() -> None:
        if not closes:
            closes.append(wsk.start("WskCloseSocket", wsk.dispatch(sock).WskCloseSocket, sock))
            assert closes[0].returned == STATUS_PENDING
            assert not closes[0].done

    events.during = close_from_inside
    peer.sendall(b"bye")
    events.wait(lambda: bool(closes) and closes[0].done)
    assert closes[0].status == STATUS_SUCCESS
    wsk.sockets.remove(sock)
    with pytest.raises(ConnectionResetError):
        peer.recv(10)
    peer.close()


def test_static_event_callbacks(wsk: WskTestClient, listener: Listener) -> None:
    control_client = wsk.provider.Dispatch.WskControlClient  # type: ignore[union-attr]
    static = WSK_EVENT_CALLBACK_CONTROL(
        NPI_WSK_INTERFACE_ID, WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT
    )
    assert (
        control_client(
            wsk.provider.Client, WSK_SET_STATIC_EVENT_CALLBACKS, 0, static, 0, None, None, None
        )
        == STATUS_SUCCESS
    )
    sock, peer, events = with_events(wsk, listener, 0)
    assert wsk.set_events(sock, WSK_EVENT_RECEIVE | WSK_EVENT_DISABLE) == STATUS_INVALID_PARAMETER
    peer.sendall(b"static")
    events.wait(lambda: bytes(events.received) == b"static")
    again = control_client(
        wsk.provider.Client, WSK_SET_STATIC_EVENT_CALLBACKS, 0, static, 0, None, None, None
    )
    assert again == STATUS_INVALID_DEVICE_STATE  # sockets exist already
    peer.close()


def _empty() -> Any:
    from pywsk.wsk import WSK_BUF

    return WSK_BUF(None, 0, 0)


def test_the_provider_thread_runs_the_callbacks(wsk: WskTestClient, listener: Listener) -> None:
    threads: list[int] = []
    events = Events(during=lambda: threads.append(threading.get_ident()))
    _sock, peer, _ = with_events(wsk, listener, WSK_EVENT_RECEIVE, events)
    peer.sendall(b"t")
    events.wait(lambda: bool(threads))
    assert set(threads) == {subsystem.engine.thread_id}
    peer.close()
