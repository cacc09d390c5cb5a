"""Connection-oriented WSK sockets over real Linux TCP.

What it does: implements every function of WSK_PROVIDER_CONNECTION_DISPATCH for one
socket: WskBind, WskConnect, WskSend, WskReceive, WskDisconnect, WskCloseSocket,
WskGetLocalAddress, WskGetRemoteAddress and WskControlSocket.  Each function follows one
shape: *validate -> consult the state machine (pywsk.core) -> act on the kernel socket ->
complete the IRP now or later*.  WskReceiveEvent and WskRelease are the base class's
(provider/indications.py).

WskSend completes when the peer has acknowledged the send's last byte (the WskSend page:
no buffering, "until all of the data has actually been sent"), in the order issued; the
acknowledgement is seen through a zerocopy completion on the error queue and
``tcpi_bytes_acked`` (provider/acks.py).  An abort, a reset or a transport failure fails
every send not acknowledged; a cancelled send the kernel has taken bytes of aborts the
connection.

The disconnect, as Microsoft's WskDisconnect page and "Disconnecting a socket from a
destination" describe it:

* Graceful (Flags = 0): waits for every outstanding send, transmits the optional final
  WSK_BUF, then ``shutdown(SHUT_WR)`` (FIN).  The IRP completes with STATUS_SUCCESS only when
  the transport has fully completed the disconnect - our FIN acknowledged by the peer
  (FIN_WAIT2, or CLOSE with nothing unacknowledged) - detected by the FIN-ACK watcher, never
  by polling.  If the data cannot be delivered it stays pending, indefinitely.  Receiving
  goes on until the peer's FIN (half-open), unless the transport is configured without
  half-open support.
* Abortive (WSK_FLAG_ABORTIVE): RST at once (``connect(AF_UNSPEC)``); pending sends are
  cancelled, pending receives and a stuck graceful disconnect complete with
  STATUS_CONNECTION_ABORTED; the socket object stays valid until WskCloseSocket.
* WskCloseSocket: cancels every pending IRP (STATUS_CANCELLED), resets the connection
  unless it was disconnected in both directions, and completes its own IRP last.

What it refuses: parameters that do not fit (STATUS_INVALID_PARAMETER, IRP completed,
nothing else touched), calls the state does not allow (the status the state machine gives),
any call on a closed socket object (STATUS_INVALID_HANDLE; no other socket is affected).

What always holds: all of it runs on the provider thread; state changes happen before any
completion routine runs, so a routine that calls back into this socket sees the new state;
each IRP taken is completed exactly once.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import select
import socket
from typing import TYPE_CHECKING, Any, ClassVar

from .._log import log_operation
from ..core.connection import (
    CLOSE,
    PENDING_OUTCOME,
    Cause,
    ConnectionMachine,
    ConnInput,
    ConnState,
    OpKind,
    ReceiveVerdict,
    disconnect_verdict,
    receive_verdict,
    send_verdict,
)
from ..core.ending import Ending
from ..mechanics import linux
from ..nt import hooks
from ..nt.status import NTSTATUS
from ..wsk.constants import (
    AF_INET6,
    SIO_WSK_QUERY_IDEAL_SEND_BACKLOG,
    SIO_WSK_QUERY_INSPECT_ID,
    SIO_WSK_QUERY_RECEIVE_BACKLOG,
    SO_SNDBUF,
    SOL_SOCKET,
    WSK_EVENT_DISCONNECT,
    WSK_EVENT_RECEIVE,
    WSK_EVENT_SEND_BACKLOG,
    WSK_FLAG_ABORTIVE,
    WSK_FLAG_AT_DISPATCH_LEVEL,
    WSK_FLAG_DRAIN,
    WSK_FLAG_NODELAY,
    WSK_FLAG_WAITALL,
    WskIoctl,
)
from ..wsk.structs import PSIZE_T, WSK_BUF
from . import acks, inspect_ids, sharing
from .base import Op, internal_irp, write_out
from .indications import IndicatingSocket

if TYPE_CHECKING:
    from ..nt.irp import IRP
    from ..wsk.structs import SOCKADDR
    from .client import WskClient

__all__ = ["ConnectionSocket"]

S = ConnState

log = logging.getLogger(__name__)

# Linux errnos that mean "try again later" on a non-blocking socket.
_AGAIN = (errno.EAGAIN, errno.EWOULDBLOCK)
# Which edges may let a pending send (or connect), or a pending receive, go on.
_WRITE_EVENTS = select.EPOLLOUT | select.EPOLLERR | select.EPOLLHUP
_READ_EVENTS = select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLERR | select.EPOLLHUP
# The edges that can mean the peer's FIN or RST.
_END_EVENTS = select.EPOLLRDHUP | select.EPOLLERR | select.EPOLLHUP
# The edges that can mean an acknowledgement: a zerocopy completion (EPOLLERR), space freed
# in the send buffer (EPOLLOUT), the end of the connection (EPOLLHUP).
_ACK_EVENTS = select.EPOLLERR | select.EPOLLHUP | select.EPOLLOUT


class ConnectionSocket(IndicatingSocket):
    """A WSK connection socket: the WSK_SOCKET the client holds, and its state."""

    EVENTS: ClassVar[int] = WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT | WSK_EVENT_SEND_BACKLOG
    EVENT_CALLBACKS: ClassVar[dict[int, str]] = {
        WSK_EVENT_RECEIVE: "WskReceiveEvent",
        WSK_EVENT_DISCONNECT: "WskDisconnectEvent",
        WSK_EVENT_SEND_BACKLOG: "WskSendBacklogEvent",
    }

    __slots__ = (
        "_acked_base",
        "_disc",
        "_events_seen",
        "_fin_issued",
        "_final_pending",
        "_handed",
        "_port_at_connect",
        "_reading",
        "_registered",
        "_reset_read",
        "_reset_told",
        "_target",
        "_unacked",
        "_watching",
        "_writing",
        "half_open",
        "machine",
        "recvq",
        "remote",
        "sendq",
        "sharing",
    )

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
        # Lists, not deques: a queue holds a few requests at most in practice, and an empty
        # deque costs ~760 B of heap per connection against 56 B for an empty list.
        self.sendq: list[Op] = []
        self.recvq: list[Op] = []
        # Sends wholly handed to the kernel, waiting for the peer's acknowledgement of their
        # last byte (WskSend completes only then, in order); the bytes handed to the kernel
        # so far; ``tcpi_bytes_acked`` before the first byte (None: acknowledgements cannot
        # be watched, and a send completes when the kernel took it).
        self._unacked: list[Op] = []
        self._handed = 0
        self._acked_base: int | None = None
        self._disc: Op | None = None  # the pending graceful disconnect
        self._final_pending = False  # its final buffer is still in sendq
        self._fin_issued = False  # shutdown(SHUT_WR) done
        self._reading = False
        self._writing = False
        self._watching = False  # the TCP state matters: a FIN's ACK, or WskDisconnectEvent
        self._registered = False
        #: The peer's reset was read from SO_ERROR before the data that preceded it.
        self._reset_read = False
        #: WskDisconnectEvent told the client of a reset that is behind unread data.
        self._reset_told = False
        #: The address connect() was given (the peer's address once connected).
        self._target: tuple[Any, ...] | None = None
        self._init_indications()
        self._events_seen = 0
        self.remote: tuple[Any, ...] | None = None
        #: SO_REUSEADDR / SO_EXCLUSIVEADDRUSE as Windows means them (never given to Linux).
        self.sharing = sharing.SharingOptions()
        #: Bound to port 0: each connect() picks the port, recorded then (``_record_port``)
        #: and given back if that connect fails (``_connect_failed``).
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

    def _process(self, event: ConnInput) -> bool:
        if not self.machine.can(event):
            return False
        self.machine.process(event)
        if event is ConnInput.RECV_FIN:
            log_operation(log, "connection", self.owner or self, None, "the peer's FIN")
            self._remote_disconnected(0)
        elif event is ConnInput.RECV_RST:
            self._remote_disconnected(WSK_FLAG_ABORTIVE)
        elif event is ConnInput.TRANSPORT_FAILED and self.events & WSK_EVENT_RECEIVE:
            self._post(self._indicate_broken)
        return True

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
        if self._writing and mask & _WRITE_EVENTS:
            self._on_writable(mask)
        if self._reading and mask & _READ_EVENTS:
            self._on_readable()
        if self._watching and not self.closed:
            self._on_state_change(mask)

    # --- reading the durable TCP state -----------------------------------------------------
    def refresh(self) -> None:
        """Bring the machine up to date with the kernel's TCP state (FIN vs RST is read from
        the durable state, not from the one-shot socket error)."""
        state = self.machine.state
        if state not in (
            S.CONNECTED,
            S.LOCAL_CLOSING,
            S.LOCAL_CLOSED,
            S.REMOTE_CLOSED,
            S.BOTH_CLOSING,
        ):
            return
        self._apply(linux.durable_state(self.sock, self._fin_issued))

    def _apply(self, seen: linux.Seen | None) -> None:
        """Turn what the kernel's state says (mechanics) into the machine's inputs."""
        if seen is None:
            return
        if seen.fin_acked:
            self._on_fin_acked()
        if seen.peer_fin:
            self._process(ConnInput.RECV_FIN)
        if seen.ended is not None:
            self._break_for_errno(seen.ended)

    # --- WskBind ---------------------------------------------------------------------------
    def bind(self, LocalAddress: SOCKADDR, Flags: int, Irp: IRP) -> int:
        if Flags != 0:
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
        if not self.machine.can(ConnInput.BIND):
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_DEVICE_STATE)
        try:
            address = linux.to_linux_address(LocalAddress, self.family)
        except ValueError:
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
        if int(address[1]) != 0:
            # An explicit port: the address-sharing table of "Sharing transport addresses".
            status = sharing.bind_with_sharing(self, self.sock, self.family, address, self.sharing)
            if status != NTSTATUS.STATUS_SUCCESS:
                return self._complete(Irp, status)
            self.local = self.sock.getsockname()
        else:
            # Port 0: the port is picked by connect() (IP_BIND_ADDRESS_NO_PORT), not by
            # bind().  A bind to port 0 must find a port no socket holds - TIME_WAIT ones
            # included - so under churn it scans the whole ephemeral range and finally fails;
            # connect() may reuse a port whose other connections lead elsewhere.  The port is
            # recorded for the sharing table once connect() chose it (_record_port).
            # Linux SO_REUSEADDR, which a later bind the table allows on the same port needs
            # on both sockets, is set on this one by that bind (sharing.bind_with_sharing),
            # not here on every connection.
            try:
                self.sock.setsockopt(socket.IPPROTO_IP, linux.IP_BIND_ADDRESS_NO_PORT, 1)
                self.sock.bind(address)
            except OSError as exc:
                return self._complete(Irp, linux.status_from_errno(exc.errno))
            self._port_at_connect = True
            self.local = None  # no port yet: WskGetLocalAddress asks the kernel
        self.machine.process(ConnInput.BIND)
        return self._complete(Irp, NTSTATUS.STATUS_SUCCESS)

    # --- WskConnect ------------------------------------------------------------------------
    def connect(self, RemoteAddress: SOCKADDR, Flags: int, Irp: IRP) -> int:
        if Flags != 0:
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
        state = self.machine.state
        if state is not S.BOUND:
            if self.machine.broken:
                status = NTSTATUS.STATUS_FILE_FORCED_CLOSED
            elif state in (S.CREATED, S.DISCONNECTED):
                status = NTSTATUS.STATUS_INVALID_DEVICE_STATE  # unbound (observed), or used up
            else:
                status = NTSTATUS.STATUS_CONNECTION_ACTIVE  # connecting or connected already
            return self._complete(Irp, status)
        try:
            address = linux.to_linux_address(RemoteAddress, self.family)
        except ValueError:
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
        self.machine.process(ConnInput.CONNECT)
        self._target = address
        err = self.sock.connect_ex(address)
        # Registered after connect(): the epoll then reports the handshake's outcome, not
        # the unconnected socket's readiness (EPOLLOUT | EPOLLHUP) from before it.
        self._register()
        if self._port_at_connect and err in (0, errno.EINPROGRESS):
            self._record_port()
        if err == 0:
            self._connected()
            return self._complete(Irp, NTSTATUS.STATUS_SUCCESS)
        if err != errno.EINPROGRESS:
            self._connect_failed()
            return self._complete(Irp, linux.status_from_errno(err))
        op = Op(self, OpKind.CONNECT, Irp, [])
        self.sendq.append(op)
        self._want_write(True)
        return self._pend(op)

    def _record_port(self) -> None:
        """The port connect() picked for a bind to port 0: now held, for the sharing table,
        which reads it (getsockname) only when another bind needs to know."""
        sharing.register_binding_later(
            self,
            self.family,
            self.sharing,
            is_v6only(self.sock, self.family),
            self.sock.getsockname,
        )

    def _watch_acks(self) -> None:
        """Sends complete at the peer's acknowledgement from now on (before any data)."""
        if acks.watch(self.sock):
            base = acks.bytes_acked(self.sock)
            self._acked_base = base if base >= 0 else None

    def _connected(self) -> None:
        self._watch_acks()
        self.machine.process(ConnInput.CONNECT_SUCCEEDED)
        if self.local is not None and (not self.local[1] or self.local[0] in ("0.0.0.0", "::")):
            self.local = None  # the kernel's choice: WskGetLocalAddress asks it when asked
        # The peer is where connect() went (the kernel's getpeername() would say the same).
        self.remote = self._target if self._target is not None else self.sock.getpeername()
        log_operation(log, "WskConnect", self.owner or self, NTSTATUS.STATUS_SUCCESS, "connected")
        if self.events:
            self.on_events_changed()  # static event callbacks start with the connection

    def _connect_failed(self) -> None:
        """Back to BOUND.  Linux leaves a socket whose connect failed half-reset (the next
        connect gets ECONNABORTED once): ``connect(AF_UNSPEC)`` clears that."""
        self.machine.process(ConnInput.CONNECT_FAILED)
        with contextlib.suppress(OSError):
            linux.abort_keep_fd(self.sock)
        if self._port_at_connect:
            # Linux gave the port back: the next connect picks (and records) its own.
            sharing.release_binding(self)
            self.local = None

    def _finish_connect(self, op: Op, mask: int) -> bool:
        """The connect's edge: EPOLLOUT alone means connected (a failed handshake sets the
        socket's error, which reports EPOLLERR); otherwise SO_ERROR says why.  False when
        the handshake is still under way (an edge from something else)."""
        err = linux.connect_outcome(self.sock, mask)
        if err is None:
            return False
        self.sendq.pop(0)
        if err in linux.RESET_ERRNOS:
            # A reset of a connection that was established: the handshake succeeded (a SYN
            # answered with RST is ECONNREFUSED), then the peer reset it before this edge
            # was seen.  The connect succeeded; the reset comes after the data that came
            # before it (reading SO_ERROR took the error, so a read will end with 0 bytes:
            # remembered here, that end is the reset).
            self._connected()
            self._reset_read = True
            self._finish(op, NTSTATUS.STATUS_SUCCESS, 0)
        elif err == 0:
            self._connected()
            self._finish(op, NTSTATUS.STATUS_SUCCESS, 0)
        else:
            self._connect_failed()
            self._finish(op, linux.status_from_errno(err), 0)
        return True

    # --- WskSend ---------------------------------------------------------------------------
    def send(self, Buffer: WSK_BUF, Flags: int, Irp: IRP) -> int:
        if Flags & ~WSK_FLAG_NODELAY:
            return self._complete(Irp, NTSTATUS.STATUS_NOT_SUPPORTED)
        views = self._views(Buffer)
        if views is None:
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
        verdict = send_verdict(self.machine.state, self.machine.failure)
        if verdict is not None:
            return self._complete(Irp, verdict)
        op = Op(self, OpKind.SEND, Irp, views, Flags)
        if not self.sendq:
            if not self._transmit(op):
                return self._complete_broken_inline(op)
            if op.transferred == op.want:
                self._handed_whole(op)
                if op.done:
                    return op.status
                return self._pend(op)
        self.sendq.append(op)
        self._want_write(True)
        return self._pend(op)

    def _handed_whole(self, op: Op) -> None:
        """Every byte of send ``op`` is in the kernel: it completes once the peer has
        acknowledged its last byte (WskSend: "until all of the data has actually been
        sent"), after the sends before it; at once if acknowledgements cannot be watched."""
        if self._acked_base is None or not (op.want or self._unacked):
            self._finish(op, NTSTATUS.STATUS_SUCCESS)
            return
        op.end = self._handed
        self._unacked.append(op)
        if len(self._unacked) == 1:
            # The acknowledgement may be in already (on loopback it often is).  Only this
            # call's own send completes inline: earlier ones complete at their edge on the
            # provider thread, never inside a later call (whose caller would then run
            # their completion routines in the middle of its own issuing).
            self._on_acks()

    def _on_acks(self) -> None:
        """Complete, in order, every send whose last byte the peer has acknowledged."""
        if self._acked_base is None or not self._unacked:
            return
        acked = acks.bytes_acked(self.sock) - self._acked_base
        done = 0
        for op in self._unacked:
            if op.end > acked:
                break
            done += 1
        if done:
            finished, self._unacked = self._unacked[:done], self._unacked[done:]
            for op in finished:
                self._finish(op, NTSTATUS.STATUS_SUCCESS)

    def _complete_broken_inline(self, op: Op) -> int:
        status = (
            send_verdict(self.machine.state, self.machine.failure)
            or NTSTATUS.STATUS_CONNECTION_RESET
        )
        self._finish(op, status, 0)
        return status

    def _transmit(self, op: Op) -> bool:
        """Hand as much of ``op`` to the kernel as it takes.  False if the connection broke."""
        try:
            watched = self._acked_base is not None and op.kind is OpKind.SEND
            while op.transferred < op.want:
                sent = self._send_watched(op) if watched else self.sock.sendmsg(op.remaining())
                if sent == 0:
                    break
                op.transferred += sent
                self._handed += sent
            if op.flags & WSK_FLAG_NODELAY and op.transferred == op.want:
                self._push()

        except BlockingIOError:
            return True
        except OSError as exc:
            if exc.errno == errno.ENOBUFS and self._acked_base is not None:
                # The socket's budget for zerocopy completions is used up: the next
                # completion (an EPOLLERR edge) frees some, and the send goes on then.
                return True
            self._on_transport_error(exc)
            return False
        return True

    def _send_watched(self, op: Op) -> int:
        """One ``sendmsg`` of send ``op``: every byte but the last, then the last byte alone
        with MSG_ZEROCOPY, whose completion (when TCP frees it: acknowledged) is the wake-up
        (provider/acks.py).  The rest is copied, as Linux's send buffer - and so its flow
        control - expects; MSG_MORE keeps the two parts in one segment."""
        views = op.remaining()
        if op.want - op.transferred == 1:
            return self.sock.sendmsg(views, (), acks.MSG_ZEROCOPY)
        last = views[-1]
        views = [*views[:-1], last[:-1]] if len(last) > 1 else views[:-1]
        return self.sock.sendmsg(views, (), socket.MSG_MORE)

    def _push(self) -> None:
        """WSK_FLAG_NODELAY: send this and earlier queued data now (a TCP_NODELAY pulse), and
        leave the socket's own TCP_NODELAY setting as the client made it."""
        tcp = socket.IPPROTO_TCP
        if not self.sock.getsockopt(tcp, socket.TCP_NODELAY):
            self.sock.setsockopt(tcp, socket.TCP_NODELAY, 1)
            self.sock.setsockopt(tcp, socket.TCP_NODELAY, 0)

    def _on_writable(self, mask: int = 0) -> None:
        while self.sendq:
            op = self.sendq[0]
            if op.kind is OpKind.CONNECT:
                self._finish_connect(op, mask)
                break  # (still connecting: the next edge tells)
            if not self._transmit(op):
                return
            if op.transferred < op.want:
                return  # the kernel's buffer is full: wait for the next writable event
            self.sendq.pop(0)
            if op.kind is OpKind.DISCONNECT:
                self._final_pending = False
            else:
                self._handed_whole(op)
        if not self.sendq:
            self._want_write(False)
            if self._disc is not None and not self._fin_issued and not self.closed:
                self._issue_fin()

    # --- WskReceive ------------------------------------------------------------------------
    def receive(self, Buffer: WSK_BUF, Flags: int, Irp: IRP) -> int:
        if Flags & ~(WSK_FLAG_WAITALL | WSK_FLAG_DRAIN) or (
            Flags & WSK_FLAG_WAITALL and Flags & WSK_FLAG_DRAIN
        ):
            return self._complete(Irp, NTSTATUS.STATUS_NOT_SUPPORTED)
        if Flags & WSK_FLAG_DRAIN and Buffer is not None and Buffer.Length != 0:
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
        views = self._views(Buffer, writable=True)
        if views is None:
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
        verdict = receive_verdict(self.machine.state, self.half_open, self.machine.failure)
        if verdict is ReceiveVerdict.END_OF_DATA:
            return self._complete(Irp, NTSTATUS.STATUS_SUCCESS, 0)
        if not isinstance(verdict, ReceiveVerdict):
            return self._complete(Irp, verdict)
        if not views and not Flags & WSK_FLAG_DRAIN:
            # A zero-length receive: nothing to copy; it completes at once, and resumes
            # receive-event indications a client paused (WSK_BUF page, WskReceiveEvent).
            status = self._complete(Irp, NTSTATUS.STATUS_SUCCESS, 0)
            self._resume_indications()
            return status
        op = Op(self, OpKind.RECEIVE, Irp, views, Flags)
        self.recvq.append(op)
        if len(self.recvq) == 1:
            self._take_held(op)
            if not op.done:
                self._on_readable()  # edge-triggered: try before waiting
            if op.done:
                return op.status  # completed inline
        self._update_reading()
        return self._pend(op)

    def _on_readable(self) -> None:
        while self.recvq:
            op = self.recvq[0]
            try:
                if op.flags & WSK_FLAG_DRAIN:
                    n = len(self.sock.recv(65536))
                    if n:
                        continue
                else:
                    n = self.sock.recvmsg_into(op.remaining())[0]
            except BlockingIOError:
                break
            except OSError as exc:
                self._on_transport_error(exc)
                return
            if n == 0:
                self._on_peer_fin()
                return
            op.transferred += n
            if op.flags & WSK_FLAG_WAITALL and op.transferred < op.want:
                continue
            self.recvq.pop(0)
            self._finish(op, NTSTATUS.STATUS_SUCCESS)
            self._resume_indications()
        if not self.recvq and self._indicating():
            if self.engine.on_loop():
                self._indicate_from_kernel()
                return
            # Event callbacks run on the provider thread only (one at a time per socket).
            self._post(self._indicate_from_kernel)
        self._update_reading()

    # --- WskDisconnectEvent, WskSendBacklogEvent ----------------------------------------------
    def _remote_disconnected(self, flags: int) -> None:
        """The peer's FIN (flags 0) or RST (WSK_FLAG_ABORTIVE): tell the client, after the
        completions and data indications already under way (so data comes first)."""
        if self.events & WSK_EVENT_DISCONNECT:
            if flags and self._reset_told:
                return  # told when it arrived, behind unread data
            self._post(self._indicate_disconnect, flags)
        elif flags and self.events & WSK_EVENT_RECEIVE:
            self._post(self._indicate_broken)

    def _indicate_disconnect(self, flags: int) -> None:
        if self.events & WSK_EVENT_DISCONNECT:
            self.invoke(WSK_EVENT_DISCONNECT, self.context, flags | WSK_FLAG_AT_DISPATCH_LEVEL)

    def ideal_send_backlog(self) -> int:
        """Bytes of sends to keep outstanding to keep the pipe full: the kernel's send buffer."""
        return int(self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF))

    def _indicate_send_backlog(self) -> None:
        if self.events & WSK_EVENT_SEND_BACKLOG and not self.closed:
            self.invoke(WSK_EVENT_SEND_BACKLOG, self.context, self.ideal_send_backlog())

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
            self._post(self._on_state_change, _END_EVENTS)

    def _update_watch(self) -> None:
        """Watch the TCP state while a FIN's acknowledgement, or the peer's end, is awaited."""
        self._watching = (
            not self.closed
            and not self.machine.broken
            and (self._disc is not None or bool(self.events & WSK_EVENT_DISCONNECT))
        )
        if self._watching:
            self._register()

    def _on_state_change(self, mask: int) -> None:
        """The kernel woke the socket: our FIN acknowledged, the peer's FIN or RST, ...

        The TCP state is read only where a decision needs it: after our FIN, and for
        WskDisconnectEvent when the edge can mean the peer's FIN (before it was seen) or RST.
        """
        if self.closed:
            return
        if self._disc is not None and self._fin_issued:
            self._check_fin_acked()
        if (
            self.events & WSK_EVENT_DISCONNECT
            and not self.closed
            and mask & _END_EVENTS
            and (
                mask & (select.EPOLLERR | select.EPOLLHUP)
                or self.machine.state in (S.CONNECTED, S.LOCAL_CLOSING, S.LOCAL_CLOSED)
            )
        ):
            if self.recvq or self._indicating():
                self._on_readable()  # data first; the reader meets the FIN or RST in order
            elif linux.tcp_state(self.sock) != linux.CLOSE or linux.inq(self.sock) == 0:
                self.refresh()
            elif not self._reset_told and not self._reset_read:
                # CLOSE with unread data: both FINs done (the socket left for TIME_WAIT),
                # or a reset, which alone sets the socket's error.  A reset: the data stays
                # for WskReceive (a reset must not discard what was received; the receive
                # that reads it meets the RST in order, ``_reset_read``), but the client is
                # told of the reset now, when it happened.
                err = linux.so_error(self.sock)
                if err in (errno.ECONNRESET, errno.EPIPE):
                    self._reset_read = self._reset_told = True
                    self._post(self._indicate_disconnect, WSK_FLAG_ABORTIVE)
                elif err:
                    self._break_for_errno(err)  # the transport failed (its error read now)

    def _on_peer_fin(self) -> None:
        """recv() returned 0: the peer's FIN.  Every pending receive completes (with what it
        has, or 0 bytes); a reset that followed the FIN shows as SO_ERROR / state CLOSE."""
        if self._reset_read:
            self._break(Ending.PEER_RST)  # the end of the data was the reset's, not a FIN
            return
        self._eof_seen = True
        self._process(ConnInput.RECV_FIN)
        pending = list(self.recvq)
        self.recvq.clear()
        self._want_read(False)
        for op in pending:
            self._finish(op, NTSTATUS.STATUS_SUCCESS)
        if not self.closed and self.events & (WSK_EVENT_DISCONNECT | WSK_EVENT_RECEIVE):
            # An RST right behind the FIN is news only for an event callback; a later call
            # meets it itself (send: EPIPE, disconnect: shutdown() fails, close: the state).
            self.refresh()

    def _on_transport_error(self, exc: OSError) -> None:
        err = exc.errno
        if err in linux.RESET_ERRNOS:
            if self.machine.state is S.ABORTED:
                return
            self._break(Ending.PEER_RST)
        elif err == errno.ENOTCONN and self.machine.broken:
            return
        else:
            self._break(Ending.TRANSPORT_FAILURE, linux.status_from_errno(err))

    # --- ending pending requests -----------------------------------------------------------
    def _break(self, cause: Ending, failure: int | None = None) -> None:
        """The connection is gone (abort, reset, failure): end every pending request."""
        if cause is Ending.PEER_RST:
            moved = self._process(ConnInput.RECV_RST)
        elif cause is Ending.TRANSPORT_FAILURE:
            if failure is not None:
                self.machine.failure = failure
            moved = self._process(ConnInput.TRANSPORT_FAILED)
        else:
            moved = self._process(ConnInput.SEND_RST)
        if not moved:
            return
        if cause is not Ending.OUR_RST:
            status = (
                NTSTATUS.STATUS_CONNECTION_RESET
                if cause is Ending.PEER_RST
                else self.machine.failure or NTSTATUS.STATUS_UNEXPECTED_NETWORK_ERROR
            )
            what = "reset by the peer" if cause is Ending.PEER_RST else "the transport failed"
            log_operation(log, "connection ended", self.owner or self, status, what)
        self._unregister_all()
        self._end_pending(cause)

    def _end_pending(self, cause: Cause) -> None:
        if cause is not CLOSE:
            self._on_acks()  # what the peer acknowledged before the end succeeded
        ops: list[Op] = [*self._unacked, *self.sendq, *self.recvq]
        if self._disc is not None and self._disc not in ops:
            ops.append(self._disc)
        self._unacked.clear()
        self.sendq.clear()
        self.recvq.clear()
        self._disc = None
        self._final_pending = False
        for op in ops:
            status: int | None = PENDING_OUTCOME[(cause, op.kind)]
            if status is None:
                status = self.machine.failure
            if op.kind is OpKind.RECEIVE and op.transferred and cause is not CLOSE:
                # Data already copied into the buffer is delivered, not lost.
                status = NTSTATUS.STATUS_SUCCESS
            succeeded = status == NTSTATUS.STATUS_SUCCESS and op.kind is not OpKind.DISCONNECT
            self._finish(op, status, op.transferred if succeeded else 0)

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

    # --- WskDisconnect ---------------------------------------------------------------------
    def disconnect(self, Buffer: WSK_BUF | None, Flags: int, Irp: IRP) -> int:
        abortive = bool(Flags & WSK_FLAG_ABORTIVE)
        if Flags & ~WSK_FLAG_ABORTIVE or (abortive and Buffer is not None):
            # "If WSK_FLAG_ABORTIVE is specified in Flags, Buffer must be NULL."
            if abortive and Buffer is not None and hooks.observer is not None:
                hooks.observer.event("abortive-with-buffer", self)
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
        views: list[memoryview] = []
        if Buffer is not None:
            checked = self._views(Buffer)
            if checked is None:
                return self._complete(Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
            views = checked
        fin_sent = False
        if (
            not abortive
            and not views
            and not self.sendq
            and self.machine.state in (S.CONNECTED, S.REMOTE_CLOSED)
        ):
            # The common case: the FIN goes now, and shutdown() itself tells whether the
            # connection is still there; only if it is not is the TCP state read.
            try:
                self.sock.shutdown(socket.SHUT_WR)
                fin_sent = True
            except OSError:
                self.refresh()
        else:
            self.refresh()
        verdict = disconnect_verdict(self.machine.state, abortive)
        if verdict is not None:
            return self._complete(Irp, verdict)
        if abortive:
            self.abort()
            return self._complete(Irp, NTSTATUS.STATUS_SUCCESS)
        # Graceful: queue behind every outstanding send; the final buffer goes last.
        self.machine.process(ConnInput.SEND_FIN)
        op = Op(self, OpKind.DISCONNECT, Irp, views)
        self._disc = op
        if not self.half_open:
            self._end_receives_without_half_open()
        if views:
            self._final_pending = True
            if not self.sendq and self._transmit(op) and op.transferred == op.want:
                self._final_pending = False
            elif self.machine.broken:
                return (
                    op.status if op.done else self._complete(Irp, NTSTATUS.STATUS_CONNECTION_RESET)
                )
            else:
                self.sendq.append(op)
                self._want_write(True)
        if not self.sendq:
            self._issue_fin(fin_sent)
            if op.done:
                return op.status
        return self._pend(op)

    def _end_receives_without_half_open(self) -> None:
        pending = list(self.recvq)
        self.recvq.clear()
        self._want_read(False)
        for op in pending:
            self._finish(op, NTSTATUS.STATUS_SUCCESS)

    def _issue_fin(self, sent: bool = False) -> None:
        """All sends are in the kernel: send our FIN (unless ``sent`` already) and watch for
        its acknowledgement.  The socket's registration reports the acknowledgement as an
        edge whenever it comes - even one that came before the watch began waits for this
        socket's lock - so the state is read then, not now."""
        self._fin_issued = True
        if not sent:
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError as exc:
                self._on_transport_error(exc)
                return
        if self._disc is not None:
            self._update_watch()

    def _check_fin_acked(self) -> None:
        """Called at each possible state change after our FIN (and once at once).

        Pending: FIN_WAIT1, LAST_ACK, CLOSING.  Done: FIN_WAIT2, TIME_WAIT, or CLOSE with
        nothing unacknowledged.  Failed: CLOSE with bytes (or the FIN) unacknowledged.
        """
        if self.closed or self.machine.broken:
            return
        self._apply(linux.fin_outcome(self.sock))

    def _break_for_errno(self, err: int) -> None:
        if linux.is_reset(err):
            self._break(Ending.PEER_RST)
        else:
            self._break(Ending.TRANSPORT_FAILURE, linux.status_from_errno(err))

    def _on_fin_acked(self) -> None:
        if (
            self._disc is not None
            and hooks.faults is not None
            and hooks.faults.stall_graceful_disconnect()
        ):
            return  # fault injection: this graceful disconnect never completes on its own
        self._process(ConnInput.FIN_ACKED)
        # Our FIN acknowledged: every byte before it was acknowledged too.
        acknowledged, self._unacked = self._unacked, []
        for send in acknowledged:
            self._finish(send, NTSTATUS.STATUS_SUCCESS)
        op, self._disc = self._disc, None
        self._update_watch()
        if op is not None:
            log_operation(
                log,
                "WskDisconnect",
                self.owner or self,
                NTSTATUS.STATUS_SUCCESS,
                "graceful: our FIN acknowledged",
            )
            self._finish(op, NTSTATUS.STATUS_SUCCESS, op.transferred)

    def abort(self) -> None:
        """Abortive disconnect: RST now, end every pending request, keep the object."""
        self._on_acks()  # sends the peer acknowledged before the RST succeed
        with contextlib.suppress(OSError):
            linux.abort_keep_fd(self.sock)
        self._break(Ending.OUR_RST)
        log_operation(
            log, "WskDisconnect", self.owner or self, NTSTATUS.STATUS_SUCCESS, "abortive: RST sent"
        )

    # --- WskCloseSocket --------------------------------------------------------------------
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


def is_v6only(sock: socket.socket, family: int) -> bool:
    if family != AF_INET6:
        return False
    return bool(sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY))
