"""Listening WSK sockets over real Linux TCP.

What it does: :class:`ListenSocket` implements WSK_PROVIDER_LISTEN_DISPATCH - WskBind,
WskAccept, WskInspectComplete, WskGetLocalAddress, WskControlSocket, WskCloseSocket - and
the listening socket's event callbacks WskAcceptEvent, WskInspectEvent and WskAbortEvent.
It is built on two parts: :class:`~pywsk.provider.delivery.AcceptDelivery` gives each
accepted connection to a WskAccept or WskAcceptEvent, and
:class:`~pywsk.provider.conditional.ConditionalAccept` runs conditional accept
(WskInspectEvent, WskInspectComplete, WskAbortEvent; the IDs are in
:mod:`pywsk.provider.inspect_ids`).  A bind goes through the address-sharing table of
:mod:`pywsk.provider.sharing`.  This module owns the listening fd: bind and listen, the
kernel's accept(), when to read, failure, cancel and close, options.

* WskBind binds *and* listens (``listen(LISTEN_BACKLOG)``): a listening socket has no
  separate listen call, and accept callbacks may start right after the bind completes.
  The backlog is ``socket.SOMAXCONN`` (the kernel caps it at ``net.core.somaxconn``).
* WskAccept completes inline (STATUS_SUCCESS, Information = the new connection socket)
  when a connection is waiting, and otherwise pends; several pending WskAccepts are served
  in the order they were issued.  The listening fd is a reader on the provider's loop only
  while something wants connections (a pending WskAccept, WskAcceptEvent enabled, or a
  conditional-accept listener), so without a taker connections wait in the kernel backlog.
* WskAcceptEvent: pending WskAccepts take precedence; each other connection is offered to
  the callback as a new connection socket that has the connection events enabled on the
  listener (inherited); STATUS_REQUEST_NOT_ACCEPTED - or any other answer - makes the
  provider close the socket itself, with an RST (:mod:`pywsk.provider.delivery`).

Fidelity choices (what Windows does -> our choice -> why):

* An AF_INET6 socket is IPv6-only by default on Windows -> listening sockets are made with
  ``IPV6_V6ONLY`` = 1; clearing it before bind (as Microsoft's echo sample does) makes a
  dual-stack listener, whose wildcard binding then also covers the IPv4 wildcard in the
  registry -> Linux' default is dual-stack.
* A WskAcceptEvent answer other than STATUS_SUCCESS rejects the socket (the provider
  closes it with an RST).
* Connection events enabled on a listener cannot be disabled there ("once enabled ... they
  cannot be disabled") -> such a disable is refused with STATUS_INVALID_PARAMETER, like
  any other event that cannot be disabled (static ones).  WskAcceptEvent itself can be
  disabled and re-enabled; the inherited set stays.  Inherited events whose routine is
  missing from the new socket's dispatch table are left off.
* The listener no longer works (a NULL AcceptSocket for WskAcceptEvent, a NULL InspectID
  for WskInspectEvent, at most once each) -> when ``accept()`` on the listening fd fails
  with an error that is not about one connection or a passing shortage of resources
  (EINVAL after the fd stopped listening, EBADF, ...) -> nothing else makes a Linux
  listener fail.  Pending WskAccepts then complete, and later calls fail, with
  STATUS_FILE_FORCED_CLOSED.  A resource shortage (EMFILE, ENFILE, ENOBUFS, ENOMEM) keeps
  WskAccepts pending and the connection in the backlog, and retries after
  :data:`RESOURCE_RETRY_DELAY` seconds.

What it refuses: Flags other than 0 for WskBind / WskAccept (STATUS_INVALID_PARAMETER), a
WskAccept or WskGetLocalAddress before bind, a second bind (STATUS_INVALID_DEVICE_STATE),
an address or out-address of another family (STATUS_INVALID_PARAMETER), every request
after the listener failed (STATUS_FILE_FORCED_CLOSED); what conditional accept and address
sharing refuse is in their modules.

What always holds: every IRP taken is completed exactly once; WskCloseSocket completes the
pending WskAccepts with STATUS_CANCELLED (Information 0) before its own IRP, resets every
connection still waiting (in the kernel's backlog, or held for inspection), and no
callback of the listener runs after its close IRP completed.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import socket
from typing import TYPE_CHECKING, Any, ClassVar, Final

from ..mechanics import linux
from ..nt.status import NTSTATUS
from ..wsk.constants import (
    AF_INET,
    AF_INET6,
    SO_CONDITIONAL_ACCEPT,
    SO_WSK_EVENT_CALLBACK,
    SOL_SOCKET,
    WSK_EVENT_ACCEPT,
    WSK_EVENT_DISABLE,
    WSK_EVENT_DISCONNECT,
    WSK_EVENT_RECEIVE,
    WSK_EVENT_SEND_BACKLOG,
    WSK_FLAG_AT_DISPATCH_LEVEL,
    WskSetOption,
)
from ..wsk.structs import (
    PPVOID,
    SOCKADDR_IN,
    SOCKADDR_IN6,
    SOCKADDR_STORAGE,
    WSK_EVENT_CALLBACK_CONTROL,
)
from .base import Op
from .conditional import ABORT_EVENT, INSPECT_EVENT, ConditionalAccept
from .delivery import AcceptOp
from .inspect_ids import inspect_id_of, query_inspect_id
from .sharing import (
    ADDRESS_IN_USE_STATUS,
    SharingOptions,
    bind_with_sharing,
    check_address_sharing,
    listen_with_sharing,
    release_binding,
    sharing_option,
)

if TYPE_CHECKING:
    from ..nt.irp import IRP
    from ..wsk.structs import PSIZE_T, SOCKADDR
    from .client import WskClient
    from .engine import TimerHandle

# Also importable from here, where tests and docs name them: ADDRESS_IN_USE_STATUS,
# SharingOptions, check_address_sharing, listen_with_sharing (from pywsk.provider.sharing),
# inspect_id_of and query_inspect_id (from pywsk.provider.conditional).
__all__ = [
    "ADDRESS_IN_USE_STATUS",
    "CONNECTION_EVENTS",
    "LISTEN_BACKLOG",
    "RESOURCE_RETRY_DELAY",
    "DatagramListenSocket",
    "ListenSocket",
    "SharingOptions",
    "check_address_sharing",
    "inspect_id_of",
    "listen_with_sharing",
    "query_inspect_id",
]

#: The backlog given to ``listen()`` (the kernel caps it at ``net.core.somaxconn``).
LISTEN_BACKLOG: Final = socket.SOMAXCONN
#: Seconds before accepting again after the kernel ran short of descriptors or memory.
RESOURCE_RETRY_DELAY: Final = 0.1
#: Connection events that a listener passes on to sockets delivered by WskAcceptEvent.
CONNECTION_EVENTS: Final = WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT | WSK_EVENT_SEND_BACKLOG

# accept() errors about one connection only (accept(2): "treat them like EAGAIN").
_ACCEPT_AGAIN: Final = frozenset(
    {
        errno.ECONNABORTED,
        errno.EPROTO,
        errno.EPERM,
        errno.ENETDOWN,
        errno.ENOPROTOOPT,
        errno.EHOSTDOWN,
        errno.ENONET,
        errno.EHOSTUNREACH,
        errno.EOPNOTSUPP,
        errno.ENETUNREACH,
        errno.EINTR,
    }
)
# accept() errors that pass once descriptors or memory are available again.
_ACCEPT_SHORTAGE: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def _fits(out: Any, family: int) -> bool:
    """True if ``out`` may receive an address of ``family`` (None: not wanted)."""
    if out is None or isinstance(out, SOCKADDR_STORAGE):
        return True
    if isinstance(out, SOCKADDR_IN):
        return family == AF_INET
    if isinstance(out, SOCKADDR_IN6):
        return family == AF_INET6
    return False


class ListenSocket(ConditionalAccept):
    """A WSK listening socket: the WSK_SOCKET the client holds, and its state."""

    EVENTS: ClassVar[int] = WSK_EVENT_ACCEPT | CONNECTION_EVENTS
    EVENT_CALLBACKS: ClassVar[dict[int, str]] = {
        WSK_EVENT_ACCEPT: "WskAcceptEvent",
        INSPECT_EVENT: "WskInspectEvent",
        ABORT_EVENT: "WskAbortEvent",
    }

    __slots__ = (
        "_broken",
        "_reading",
        "_registered",
        "_retry",
        "bound",
        "sharing",
    )

    def __init__(
        self,
        client: WskClient,
        family: int,
        sock: socket.socket,
        context: Any,
        dispatch_client: Any,
    ) -> None:
        super().__init__(
            client.subsystem.listen_dispatch, client, family, sock, context, dispatch_client
        )
        if family == AF_INET6:
            # Windows makes IPv6 sockets IPv6-only unless IPV6_V6ONLY is cleared.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        self.bound = False
        self.sharing = SharingOptions()
        self._broken = False
        self._reading = False
        self._retry: TimerHandle | None = None
        self._registered = False

    def __repr__(self) -> str:
        state = "closed" if self.closed else "listening" if self.bound else "unbound"
        return f"<WSK listening socket {state} {self.local}>"

    # --- WskBind ---------------------------------------------------------------------------
    def bind(self, LocalAddress: SOCKADDR, Flags: int, Irp: IRP) -> int:
        """WskBind: bind, then listen; connections are accepted from now on."""
        if Flags != 0:
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
        if self._broken:
            return self._complete(Irp, NTSTATUS.STATUS_FILE_FORCED_CLOSED)
        if self.bound:
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_DEVICE_STATE)
        try:
            address = linux.to_linux_address(LocalAddress, self.family)
        except (ValueError, AttributeError):
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
        status = bind_with_sharing(self, self.sock, self.family, address, self.sharing)
        if status != NTSTATUS.STATUS_SUCCESS:
            return self._complete(Irp, status)
        try:
            listen_with_sharing(self, self.sock, LISTEN_BACKLOG)
        except OSError as exc:
            release_binding(self)
            return self._complete(Irp, linux.status_from_errno(exc.errno))
        self.local = self.sock.getsockname()
        self.bound = True
        self._update_reading()
        return self._complete(Irp, NTSTATUS.STATUS_SUCCESS)

    # --- WskAccept -------------------------------------------------------------------------
    def accept(
        self,
        Flags: int,
        AcceptSocketContext: Any,
        AcceptSocketDispatch: Any,
        LocalAddress: SOCKADDR | None,
        RemoteAddress: SOCKADDR | None,
        Irp: IRP,
    ) -> int:
        """WskAccept: a waiting connection now, or the next one to arrive (in FIFO order)."""
        if Flags != 0:
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
        if not (_fits(LocalAddress, self.family) and _fits(RemoteAddress, self.family)):
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
        if self._broken:
            return self._complete(Irp, NTSTATUS.STATUS_FILE_FORCED_CLOSED)
        if not self.bound:
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_DEVICE_STATE)
        op = AcceptOp(
            self, Irp, AcceptSocketContext, AcceptSocketDispatch, LocalAddress, RemoteAddress
        )
        self._accepts.append(op)
        if len(self._accepts) == 1:
            # Nothing queued before it: take a waiting connection now, if there is one.
            if self.conditional:
                self._deliver_ready(inline=True)
            else:
                self._accept_from_kernel(inline=True)
            if op.done:
                return op.status  # completed inline
        self._update_reading()
        return self._pend(op)

    def _accept_from_kernel(self, inline: bool = False) -> None:
        """Hand connections from the kernel's backlog to whoever wants them (WskAccepts
        first, then WskAcceptEvent), or, with conditional accept, to WskInspectEvent.

        ``inline``: inside a WskAccept call - serve the pending WskAccepts only, so that no
        callback runs inside the client's call."""
        while not self.closed and not self._broken and self._retry is None:
            idle = not self.conditional and not self._accepts
            if idle and (inline or not self._accept_event_on()):
                break
            accepted = self._kernel_accept()
            if accepted is None:
                break
            sock, peer = accepted
            if self.conditional:
                self._inspect(sock)
            else:
                self._deliver(sock, None, peer)

    def _kernel_accept(self) -> tuple[socket.socket, tuple[Any, ...]] | None:
        while True:
            try:
                return linux.accept_nonblocking(self.sock)
            except BlockingIOError:
                return None
            except OSError as exc:
                if exc.errno in _ACCEPT_AGAIN:
                    continue
                if exc.errno in _ACCEPT_SHORTAGE:
                    self._pause_for_resources()
                else:
                    self._fail()
                return None

    def _on_acceptable(self) -> None:
        """The listening fd is readable: connections (or a failure) are waiting."""
        self._accept_from_kernel()
        self._update_reading()

    def _indicate_broken(self) -> None:
        """The listener no longer works: a NULL AcceptSocket / NULL InspectID, once each."""
        if self.closed:
            return
        if self.events & WSK_EVENT_ACCEPT:
            self.invoke(
                WSK_EVENT_ACCEPT,
                self.context,
                WSK_FLAG_AT_DISPATCH_LEVEL,
                None,
                None,
                None,
                PPVOID(),
                PPVOID(),
            )
        if self.conditional and not self.closed:
            self.invoke(INSPECT_EVENT, self.context, None, None, None)

    # --- the listening fd on the loop -------------------------------------------------------
    def _wants_connections(self) -> bool:
        return (
            self.bound
            and not self.closed
            and not self._broken
            and self._retry is None
            and (self.conditional or bool(self._accepts) or self._accept_event_on())
        )

    def _update_reading(self, tried: bool = True) -> None:
        """Accept while something wants connections.  Edge-triggered: turning accepting on
        without having just tried an accept (``tried``) schedules one."""
        wanted = self._wants_connections()
        if wanted == self._reading:
            return
        self._reading = wanted
        if wanted:
            if not self._registered:
                # Added while connections wait, the epoll reports them once at once.
                self._registered = True
                engine = self.engine
                engine.register(
                    self.sock.fileno(), functools.partial(engine.locked, self.lock, self._on_ready)
                )
            elif not tried:
                self._post(self._on_acceptable)

    def _on_ready(self, _mask: int) -> None:
        if self._reading and not self.closed:
            self._on_acceptable()

    def _pause_for_resources(self) -> None:
        """The kernel is short of descriptors or memory: leave the backlog alone a while."""
        if self._retry is None:
            engine = self.engine
            self._retry = engine.call_later(
                RESOURCE_RETRY_DELAY, engine.locked, self.lock, self._resume
            )
            self._update_reading()

    def _resume(self) -> None:
        self._retry = None
        if not self.closed:
            self._update_reading()
            if self._reading:
                self._on_acceptable()

    def _fail(self) -> None:
        """The listening socket failed for good: pending and later requests fail with
        STATUS_FILE_FORCED_CLOSED; held requests are reset; the client is told once."""
        if self._broken:
            return
        self._broken = True
        self._update_reading()
        self._drop_requests()
        pending = list(self._accepts)
        self._accepts.clear()
        for op in pending:
            self._finish(op, NTSTATUS.STATUS_FILE_FORCED_CLOSED, 0)
        self._post(self._indicate_broken)

    # --- cancel, close ---------------------------------------------------------------------
    def cancel(self, op: Op) -> None:
        """IoCancelIrp on a pending WskAccept: STATUS_CANCELLED, unless it completed."""
        if op.done or not isinstance(op, AcceptOp) or op not in self._accepts:
            return
        self._accepts.remove(op)
        self._finish(op, NTSTATUS.STATUS_CANCELLED, 0)
        self._update_reading()

    def close(self, Irp: IRP) -> int:
        """WskCloseSocket: cancel pending WskAccepts, reset every waiting connection, then
        complete (once running callbacks have returned)."""
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self.closed = True
        self._update_reading_closed()
        self._drop_requests()
        release_binding(self)
        # Closing the listening fd resets the connections still in the kernel's backlog.
        self.sock.close()
        pending = list(self._accepts)
        self._accepts.clear()
        for op in pending:
            self._finish(op, NTSTATUS.STATUS_CANCELLED, 0)
        return self.finish_close(Irp)

    def _update_reading_closed(self) -> None:
        self._reading = False
        if self._registered:
            self.engine.forget(self.sock.fileno())  # close() takes it out of the epoll

    # --- WskGetLocalAddress ----------------------------------------------------------------
    def get_local_address(self, LocalAddress: SOCKADDR, Irp: IRP) -> int:
        if not self.bound:
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_DEVICE_STATE)
        assert self.local is not None
        return self._fill(LocalAddress, self.local, Irp)

    # --- events and options ------------------------------------------------------------------
    def events_allowed_now(self) -> bool:
        return self.bound and not self.closed

    def on_events_changed(self) -> None:
        self._update_reading(tried=False)
        if self._ready and self._accept_event_on():
            self._post(self._deliver_ready)

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
        if (
            (RequestType, Level, ControlCode) == (WskSetOption, SOL_SOCKET, SO_WSK_EVENT_CALLBACK)
            and isinstance(InputBuffer, WSK_EVENT_CALLBACK_CONTROL)
            and InputBuffer.EventMask & WSK_EVENT_DISABLE
            and InputBuffer.EventMask & CONNECTION_EVENTS
        ):
            # Connection events enabled on a listener (for inheritance) stay enabled there.
            return self._answer(Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
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
        if (level, code) == (SOL_SOCKET, SO_CONDITIONAL_ACCEPT):
            return self._conditional_option(kind, in_buf, in_size, out_buf, out_size)
        answer = sharing_option(
            self.sharing, self.bound, kind, code, level, in_buf, in_size, out_buf, out_size
        )
        if answer is not None:
            return answer
        return super()._control(kind, code, level, in_size, in_buf, out_size, out_buf)


class DatagramListenSocket(ListenSocket):
    """A listening socket asked for with SOCK_DGRAM / IPPROTO_UDP.

    Windows creates it (WskSocket succeeds) and refuses only WskBind, with
    STATUS_NOT_IMPLEMENTED - Wine's driver test, validated on Windows.  So it is made over
    a real Linux UDP socket, never bound; WskBind completes with STATUS_NOT_IMPLEMENTED and
    changes nothing, so it can never listen or accept.  Everything else (options, close) is
    a listening socket's.
    """

    __slots__ = ()

    def bind(self, LocalAddress: SOCKADDR, Flags: int, Irp: IRP) -> int:
        return self._complete(Irp, NTSTATUS.STATUS_NOT_IMPLEMENTED)
