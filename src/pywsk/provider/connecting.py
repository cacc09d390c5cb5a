"""A connection socket's beginning: WskBind and WskConnect.

What it does: :class:`ConnectingSocket` is the part of a connection socket
(:class:`~pywsk.provider.connection.ConnectionSocket` builds on it) that binds the socket
- an explicit port through the address-sharing table of :mod:`pywsk.provider.sharing`,
port 0 left for connect() to pick (``IP_BIND_ADDRESS_NO_PORT``) and recorded in that table
once picked - and connects it: inline when the kernel connects at once, else pending in
the send queue until the handshake's edge (:meth:`_finish_connect`), which reads the
outcome from the socket.  A connection starts watching acknowledgements
(:mod:`pywsk.provider.acks`) before any data, and its static event callbacks start with it.

What it refuses: Flags other than 0 and addresses of another family
(STATUS_INVALID_PARAMETER); a second bind (STATUS_INVALID_DEVICE_STATE), a connect before
bind or after a connection was used up (STATUS_INVALID_DEVICE_STATE), while connecting or
connected (STATUS_CONNECTION_ACTIVE), on a socket that no longer works
(STATUS_FILE_FORCED_CLOSED); an address the sharing table or the kernel refuses (their
status).

What always holds: a failed connect leaves the socket BOUND and reusable - the kernel's
half-reset cleared, a port picked for it given back; a connect whose peer reset the
connection before its edge was seen succeeds, and the reset comes after the data before it.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
from typing import TYPE_CHECKING, Any

from .._log import log_operation
from ..core.connection import ConnInput, ConnState, OpKind
from ..mechanics import linux
from ..nt.status import NTSTATUS
from ..wsk.constants import AF_INET6
from . import sharing
from .base import Op
from .disconnecting import DisconnectingSocket

if TYPE_CHECKING:
    from ..nt.irp import IRP
    from ..wsk.structs import SOCKADDR
    from .sharing import SharingOptions

__all__ = ["ConnectingSocket", "is_v6only"]

S = ConnState

#: The connection socket logs under one name (docs/api/logging.md).
log = logging.getLogger("pywsk.provider.connection")


class ConnectingSocket(DisconnectingSocket):
    """WskBind and WskConnect for a connection socket (its subclass provides the socket's
    registration)."""

    __slots__ = ("_port_at_connect", "_target", "remote", "sharing")

    # This part's state (set by the connection socket).
    #: The address connect() was given (the peer's address once connected).
    _target: tuple[Any, ...] | None
    #: The peer's address, once connected.
    remote: tuple[Any, ...] | None
    #: SO_REUSEADDR / SO_EXCLUSIVEADDRUSE as Windows means them (never given to Linux).
    sharing: SharingOptions
    #: Bound to port 0: each connect() picks the port, recorded then (``_record_port``)
    #: and given back if that connect fails (``_connect_failed``).
    _port_at_connect: bool

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


def is_v6only(sock: socket.socket, family: int) -> bool:
    if family != AF_INET6:
        return False
    return bool(sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY))
