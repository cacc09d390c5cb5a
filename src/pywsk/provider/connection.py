"""Connection-oriented WSK sockets over real Linux TCP.

What it does: :class:`ConnectionSocket` implements every function of
WSK_PROVIDER_CONNECTION_DISPATCH for one socket: WskBind, WskConnect, WskSend, WskReceive,
WskDisconnect, WskCloseSocket, WskGetLocalAddress, WskGetRemoteAddress, WskControlSocket
and WskRelease, and the events WskReceiveEvent, WskDisconnectEvent and
WskSendBacklogEvent.  Each function follows one shape: *validate -> consult the state
machine (pywsk.core) -> act on the kernel socket -> complete the IRP now or later*.  It is
built on four parts, each a base class of the next:
:class:`~pywsk.provider.indications.IndicatingSocket` (WskReceive, WskReceiveEvent,
WskRelease), :class:`~pywsk.provider.sending.SendingSocket` (WskSend, completed at the
peer's acknowledgement; WskSendBacklogEvent),
:class:`~pywsk.provider.disconnecting.DisconnectingSocket` (WskDisconnect, the peer's FIN
or RST, WskDisconnectEvent, ending pending requests) and
:class:`~pywsk.provider.connecting.ConnectingSocket` (WskBind, WskConnect).  This module
owns the socket's life and its fd: creation (and :meth:`ConnectionSocket.accepted` for a
listener's connections), the one registration in the provider's epoll and which edges the
socket acts on, which events may be on, cancellation, WskCloseSocket, the addresses and
the control requests.

* WskCloseSocket: cancels every pending IRP (STATUS_CANCELLED), resets the connection
  unless it was disconnected in both directions, and completes its own IRP last.
* A cancelled send the kernel has taken bytes of aborts the connection (RST), unless the
  peer acknowledged all of it meanwhile.

What it refuses: parameters that do not fit (STATUS_INVALID_PARAMETER, IRP completed,
nothing else touched), calls the state does not allow (the status the state machine gives),
any call on a closed socket object (STATUS_INVALID_HANDLE; no other socket is affected).

What always holds: all of it runs under the socket's lock; state changes happen before any
completion routine runs, so a routine that calls back into this socket sees the new state;
each IRP taken is completed exactly once.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import select
import socket
from typing import TYPE_CHECKING, Any, ClassVar

from .._log import log_operation
from ..core.connection import CLOSE, ConnectionMachine, ConnInput, ConnState, OpKind
from ..mechanics import linux
from ..mechanics.edges import READ_EVENTS, WRITE_EVENTS
from ..nt.status import NTSTATUS
from ..wsk.constants import (
    SIO_WSK_QUERY_IDEAL_SEND_BACKLOG,
    SIO_WSK_QUERY_INSPECT_ID,
    SIO_WSK_QUERY_RECEIVE_BACKLOG,
    SO_SNDBUF,
    SOL_SOCKET,
    WSK_EVENT_DISCONNECT,
    WSK_EVENT_RECEIVE,
    WSK_EVENT_SEND_BACKLOG,
    WskIoctl,
)
from ..wsk.structs import PSIZE_T
from . import acks, inspect_ids, sharing
from .base import Op, internal_irp, write_out
from .connecting import ConnectingSocket, is_v6only
from .disconnecting import END_EVENTS

if TYPE_CHECKING:
    from ..nt.irp import IRP
    from ..wsk.structs import SOCKADDR
    from .client import WskClient

__all__ = ["ConnectionSocket", "is_v6only"]

S = ConnState

#: The connection socket logs under one name (docs/api/logging.md).
log = logging.getLogger(__name__)

# Which edges may let a pending send (or connect), or a pending receive, go on.
# The edges that can mean an acknowledgement: a zerocopy completion (EPOLLERR), space freed
# in the send buffer (EPOLLOUT), the end of the connection (EPOLLHUP).
_ACK_EVENTS = select.EPOLLERR | select.EPOLLHUP | select.EPOLLOUT


class ConnectionSocket(ConnectingSocket):
    """A WSK connection socket: the WSK_SOCKET the client holds, and its state."""

    EVENTS: ClassVar[int] = WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT | WSK_EVENT_SEND_BACKLOG
    EVENT_CALLBACKS: ClassVar[dict[int, str]] = {
        WSK_EVENT_RECEIVE: "WskReceiveEvent",
        WSK_EVENT_DISCONNECT: "WskDisconnectEvent",
        WSK_EVENT_SEND_BACKLOG: "WskSendBacklogEvent",
    }

    __slots__ = ("_events_seen", "_reading", "_registered", "_writing", "half_open", "machine")

    def __init__(
        self,
        client: WskClient,
        family: int,
        sock: socket.socket,
        context: Any,
        dispatch_client: Any,
        half_open: bool,
    ) -> None:
        super().__init__(
            client.subsystem.connection_dispatch, client, family, sock, context, dispatch_client
        )
        self.half_open = half_open
        self.machine = ConnectionMachine()
        # Every part's state is set here, in one call (the parts declare and describe it).
        # Lists, not deques: a queue holds a few requests at most in practice, and an empty
        # deque costs ~760 B of heap per connection against 56 B for an empty list.
        self.sendq = []
        self.recvq = []
        self._unacked = []
        self._handed = 0
        self._acked_base = None
        self._disc = None
        self._final_pending = False
        self._fin_issued = False
        self._reading = False
        self._writing = False
        self._watching = False
        self._registered = False
        self._reset_read = False
        self._reset_told = False
        self._target = None
        self._init_indications()
        self._events_seen = 0
        self.remote = None
        self.sharing = sharing.SharingOptions()
        self._port_at_connect = False

    @classmethod
    def accepted(
        cls,
        client: WskClient,
        family: int,
        sock: socket.socket,
        context: Any,
        dispatch_client: Any,
        half_open: bool,
        local: tuple[Any, ...] | None = None,
        remote: tuple[Any, ...] | None = None,
    ) -> ConnectionSocket:
        """A socket for a connection a listener accepted: bound and connected already.
        ``local`` / ``remote``: the addresses, where the listener knows them already."""
        if sock.gettimeout() != 0.0:
            sock.setblocking(False)
        new = cls(client, family, sock, context, dispatch_client, half_open)
        new._watch_acks()
        for event in (ConnInput.BIND, ConnInput.CONNECT, ConnInput.CONNECT_SUCCEEDED):
            new.machine.process(event)
        new.local = local if local is not None else sock.getsockname()
        new.remote = remote if remote is not None else sock.getpeername()
        new._register()
        if new.events:
            new.on_events_changed()
        return new

    def __repr__(self) -> str:
        return f"<WSK connection socket {self.machine.state.name} {self.local}->{self.remote}>"

    # --- readiness: one registration for the socket's whole life -------------------------
    def _register(self) -> None:
        """Put the socket in the provider's epoll (once): readiness and state changes."""
        if not self._registered and not self.closed:
            self._registered = True
            engine = self.engine
            engine.register(
                self.sock.fileno(), functools.partial(engine.locked, self.lock, self._on_ready)
            )

    def _want_read(self, on: bool, tried: bool = True) -> None:
        """Read when the socket is readable.  Edge-triggered: turning reading on without
        having just tried a read (``tried``) schedules one, so data already there is seen."""
        if on == self._reading or self.closed:
            return
        self._reading = on
        if on:
            self._register()
            if not tried:
                self._post(self._on_ready, select.EPOLLIN)

    def _want_write(self, on: bool) -> None:
        # Every caller has just tried the write (or connect) that filled the kernel's buffer.
        if on == self._writing or self.closed:
            return
        self._writing = on
        if on:
            self._register()

    def _unregister_all(self) -> None:
        self._reading = False
        self._writing = False
        self._watching = False

    def _on_ready(self, mask: int) -> None:
        """The provider thread saw an edge: do what it makes possible (under the lock)."""
        if self.closed:
            return
        if self._acked_base is not None and mask & _ACK_EVENTS:
            if mask & select.EPOLLERR:
                acks.completions(self.sock)  # the wake-ups (bytes_acked is the truth)
            if self._unacked:
                self._on_acks()
                if self._unacked and mask & select.EPOLLHUP:
                    # The connection ended (RST, transport timeout) with sends
                    # unacknowledged: read why, and fail them.
                    self.refresh()
        if self._writing and mask & WRITE_EVENTS:
            self._on_writable(mask)
        if self._reading and mask & READ_EVENTS:
            self._on_readable()
        if self._watching and not self.closed:
            self._on_state_change(mask)

    # --- which events may be on, and what watching they need -----------------------------------
    def events_allowed_now(self) -> bool:
        return not self.closed and self.machine.state not in (S.CREATED, S.BOUND, S.CONNECTING)

    def on_events_changed(self) -> None:
        newly = self.events & ~self._events_seen
        self._events_seen = self.events
        self._update_watch()
        self._update_reading()
        if newly & WSK_EVENT_SEND_BACKLOG:
            # Q17: report the current ideal backlog once when the event is switched on.
            self._post(self._indicate_send_backlog)
        if newly & WSK_EVENT_RECEIVE and self.machine.state is S.CONNECTED:
            self._post(self._on_readable)
        if newly & WSK_EVENT_DISCONNECT and self._watching:
            # Edge-triggered: look at the state once now; later edges report each change.
            self._post(self._on_state_change, END_EVENTS)

    # --- IoCancelIrp -----------------------------------------------------------------------
    def cancel(self, op: Op) -> None:
        """IoCancelIrp reached a pending op: end it with STATUS_CANCELLED if it had no effect.

        A send the kernel has taken bytes of (and the peer has not acknowledged whole)
        cannot be undone: it completes STATUS_CANCELLED and the connection is aborted (RST;
        "Cancelling a partly sent send" in docs/fidelity.md).  A receive that already holds
        data completes normally with it (the cancel lost the race).
        A graceful disconnect's IRP completes with STATUS_CANCELLED at once - its final
        buffer partly sent or not - and the disconnect goes on in the transport with a
        copy of the unsent final data: a FIN cannot be taken back.
        """
        if op.done:
            return
        if op.kind is OpKind.SEND and op.transferred:
            # On the provider thread, next turn: a client that breaks the connection itself
            # when a cancel does not win at once (the Pythonic layers) does so first.
            self._post(self._cancel_taken_send, op)
            return
        if op.kind is OpKind.RECEIVE:
            if op not in self.recvq:
                return
            self.recvq.remove(op)
            self._update_reading()
            if op.transferred:
                self._finish(op, NTSTATUS.STATUS_SUCCESS)
            else:
                self._finish(op, NTSTATUS.STATUS_CANCELLED, 0)
            return
        if op.kind is OpKind.DISCONNECT:
            if op is self._disc:
                # The IRP is given back; the disconnect itself goes on in the transport (the
                # state machine cannot take back a FIN), with a copy of any unsent final data.
                data = b"".join(bytes(view) for view in op.remaining())
                carrier = Op(
                    self, OpKind.DISCONNECT, internal_irp(), [memoryview(data)] if data else []
                )
                if op in self.sendq:
                    self.sendq[self.sendq.index(op)] = carrier
                self._disc = carrier
            self._finish(op, NTSTATUS.STATUS_CANCELLED, 0)
            return
        if op.kind is OpKind.CONNECT:
            if op in self.sendq:
                self.sendq.remove(op)
                self._want_write(bool(self.sendq))
                with contextlib.suppress(OSError):
                    linux.abort_keep_fd(self.sock)
                self.machine.process(ConnInput.CONNECT_FAILED)
                self._finish(op, NTSTATUS.STATUS_CANCELLED, 0)
            return
        if op in self.sendq:
            self.sendq.remove(op)
            self._want_write(bool(self.sendq))
            self._finish(op, NTSTATUS.STATUS_CANCELLED, 0)

    def _cancel_taken_send(self, op: Op) -> None:
        """A cancelled send the kernel has taken bytes of: they cannot be recalled, and the
        stream cannot go on without the rest, so the connection is aborted (RST) - unless
        the peer has acknowledged the whole send meanwhile (it then succeeds)."""
        if op.done or self.closed:
            return
        self._on_acks()
        if op in self.sendq:
            self.sendq.remove(op)
        elif op in self._unacked:
            self._unacked.remove(op)
        else:
            return  # acknowledged whole meanwhile: it succeeded
        log_operation(
            log, "WskSend", self.owner or self, NTSTATUS.STATUS_CANCELLED, "taken in part: RST"
        )
        # Information: the bytes the transport had taken (some may never reach the peer).
        self._finish(op, NTSTATUS.STATUS_CANCELLED, op.transferred)
        self.abort()

    # --- WskCloseSocket --------------------------------------------------------------------
    def close(self, Irp: IRP) -> int:
        self._on_acks()  # sends the peer acknowledged before the close succeed
        state = self.machine.state
        if linux.close_resets(self.sock, state):
            # Not disconnected in both directions: WskCloseSocket performs an abortive
            # disconnect first ("Closing a socket").
            with contextlib.suppress(OSError):
                linux.abort_keep_fd(self.sock)
            log_operation(
                log,
                "WskCloseSocket",
                self.owner or self,
                NTSTATUS.STATUS_SUCCESS,
                "not disconnected in both directions: RST sent",
            )
        elif state not in (S.CREATED, S.BOUND, S.CONNECTING, S.ABORTED) and not self._eof_seen:
            linux.discard_unread(self.sock)  # (after a read met the FIN, nothing is unread)
        self._unregister_all()
        self.machine.process(ConnInput.CLOSE)
        self.closed = True
        sharing.release_binding(self)
        if self._registered:
            self.engine.forget(self.sock.fileno())  # close() takes it out of the epoll
        self.sock.close()
        # Cancelled requests complete first, the close IRP last; only then may
        # WskDeregister return (no routine of this socket runs after that).
        self._end_pending(CLOSE)
        return self.finish_close(Irp)

    # --- addresses ---------------------------------------------------------------------------
    def get_local_address(self, LocalAddress: SOCKADDR, Irp: IRP) -> int:
        if self.machine.state is S.CREATED:
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_DEVICE_STATE)
        if self.local is None or self.machine.state in (S.BOUND, S.CONNECTING):
            self.local = self.sock.getsockname()
        return self._fill(LocalAddress, self.local, Irp)

    def get_remote_address(self, RemoteAddress: SOCKADDR, Irp: IRP) -> int:
        if self.remote is None:
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_DEVICE_STATE)
        return self._fill(RemoteAddress, self.remote, Irp)

    # --- WskControlSocket ----------------------------------------------------------------------
    def control(
        self,
        RequestType: int,
        ControlCode: int,
        Level: int,
        InputSize: int,
        InputBuffer: Any,
        OutputSize: int,
        OutputBuffer: Any,
        OutputSizeReturned: PSIZE_T | None,
        Irp: IRP | None,
    ) -> int:
        if (RequestType, ControlCode) == (WskIoctl, SIO_WSK_QUERY_INSPECT_ID):
            # IRP must be NULL (the IOCTL's page); a given one is completed with the refusal.
            status = inspect_ids.query_inspect_id(
                self, OutputSize, OutputBuffer, OutputSizeReturned, Irp
            )
            return self._answer(Irp, status)
        return super().control(
            RequestType,
            ControlCode,
            Level,
            InputSize,
            InputBuffer,
            OutputSize,
            OutputBuffer,
            OutputSizeReturned,
            Irp,
        )

    def _control(
        self,
        kind: int,
        code: int,
        level: int,
        in_size: int,
        in_buf: Any,
        out_size: int,
        out_buf: Any,
    ) -> tuple[int, int]:
        answer = sharing.sharing_option(
            self.sharing,
            self.machine.state is not S.CREATED,
            kind,
            code,
            level,
            in_buf,
            in_size,
            out_buf,
            out_size,
        )
        if answer is not None:
            return answer
        return super()._control(kind, code, level, in_size, in_buf, out_size, out_buf)

    def _ioctl(self, code: int, out_buf: Any, out_size: int) -> tuple[int, int] | None:
        if code not in (SIO_WSK_QUERY_RECEIVE_BACKLOG, SIO_WSK_QUERY_IDEAL_SEND_BACKLOG):
            return None
        if self.machine.state in (S.CREATED, S.BOUND, S.CONNECTING) or self.closed:
            return NTSTATUS.STATUS_INVALID_DEVICE_STATE, 0
        if code == SIO_WSK_QUERY_RECEIVE_BACKLOG:
            return write_out(out_buf, out_size, linux.inq(self.sock), 8)
        return write_out(out_buf, out_size, self.ideal_send_backlog(), 8)

    def on_option_set(self, level: int, code: int) -> None:
        if (level, code) == (SOL_SOCKET, SO_SNDBUF):
            self._post(self._indicate_send_backlog)  # the ideal backlog changed
