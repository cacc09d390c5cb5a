"""Conditional accept (SO_CONDITIONAL_ACCEPT): WskInspectEvent, WskInspectComplete, WskAbortEvent.

What it does: :class:`ConditionalAccept` is the part of a listening socket that runs
conditional accept: every connection request goes through WskInspectEvent with a fresh
WSK_INSPECT_ID (:mod:`pywsk.provider.inspect_ids`); Accept hands it on to the delivery
(:class:`~pywsk.provider.delivery.AcceptDelivery`: WskAccept, then WskAcceptEvent), Reject
resets it, Pend holds it until WskInspectComplete.  WskAbortEvent reports a request the
peer dropped after the client answered Pend or Accept and before the socket was
delivered.  :class:`~pywsk.provider.listener.ListenSocket` derives from it, and feeds it
the connections it accepts from the kernel (``_inspect``).

Fidelity choices (what Windows does -> our choice -> why):

* Windows answers the handshake only after WskInspectEvent (or WskInspectComplete) said
  Accept, and Reject refuses the SYN -> the Linux kernel completes every handshake before
  user space sees the connection, so pywsk accept()s it, inspects it, and resets it on
  Reject or when it is dropped -> there is no earlier point to act on.  A peer therefore
  sees its connect succeed, then an RST on Reject (Windows: the connect fails), and may
  even send data while a request is held.  A held (inspected or pended) request whose peer
  sends a FIN or an RST counts as dropped (on Windows the only thing a peer can do with an
  unanswered SYN is give up); after Accept, only an RST (TCP state CLOSE) does, because
  an accepted connection may carry data and a FIN to its eventual owner, as any TCP
  connection in a backlog may.  Drops are read from the durable TCP state, woken by the
  provider's state watcher (never polled).  A dropped request is reset and forgotten; a
  WskInspectComplete for it still succeeds, with no effect.
* A WskInspectEvent that has no routine, raises, or returns anything but Accept or Pend
  rejects the request.
* SO_CONDITIONAL_ACCEPT must be set before bind (its page) -> after bind:
  STATUS_INVALID_DEVICE_STATE (WSK's wrong-state code).

What it refuses: WskInspectComplete on a listener without conditional accept, or before
bind (STATUS_INVALID_DEVICE_STATE); an unknown WSK_INSPECT_ID or an Action other than
Accept / Reject (STATUS_INVALID_PARAMETER); WskInspectComplete after the listener failed
(STATUS_FILE_FORCED_CLOSED); SO_CONDITIONAL_ACCEPT set after bind
(STATUS_INVALID_DEVICE_STATE), or with an unreadable input buffer
(STATUS_INVALID_PARAMETER).

What always holds: a request is in at most one of "held" (Pend, waiting for
WskInspectComplete) and "ready" (accepted, waiting for a taker); every request that leaves
both is delivered or reset, never leaked; WskInspectEvent and WskAbortEvent run through
:meth:`~pywsk.provider.base.ProviderSocket.invoke`, and a drop found inside a client's
call is reported from the provider thread (posted); the last :data:`_TOMBSTONES` aborted
IDs are remembered so that a late WskInspectComplete on them still succeeds.
"""

from __future__ import annotations

import collections
import enum
from typing import TYPE_CHECKING, Any, Final

from ..mechanics import linux
from ..nt.status import NTSTATUS
from ..wsk.constants import (
    WskGetOption,
    WskInspectAccept,
    WskInspectPend,
    WskInspectReject,
    WskSetOption,
)
from ..wsk.structs import WSK_INSPECT_ID
from .base import read_in, write_out
from .delivery import AcceptDelivery, reset_unseen, sockaddr_of
from .inspect_ids import new_inspect_id

if TYPE_CHECKING:
    import socket

    from ..nt.irp import IRP
    from .client import WskClient

__all__ = ["ABORT_EVENT", "INSPECT_EVENT", "ConditionalAccept", "ConnectionRequest"]

# Keys for :meth:`ProviderSocket.invoke` of the two conditional-accept callbacks.  They are
# above the 32 bits of an event mask, so SO_WSK_EVENT_CALLBACK can never toggle them.
INSPECT_EVENT: Final = 1 << 32
ABORT_EVENT: Final = 1 << 33

#: How many aborted requests a listener remembers (WskInspectComplete on them succeeds).
_TOMBSTONES: Final = 1024


# ==========================================================================================
# Connection requests of a conditional-accept listener
# ==========================================================================================


class _Stage(enum.Enum):
    """Where a connection request of a conditional-accept listener is."""

    PENDED = "pended"  # WskInspectEvent said Pend; waiting for WskInspectComplete
    READY = "ready"  # accepted; waiting for a WskAccept or WskAcceptEvent


class ConnectionRequest:
    """A connection request of a conditional-accept listener (already accepted from Linux)."""

    __slots__ = ("inspect_id", "local", "remote", "sock", "stage")

    def __init__(
        self,
        sock: socket.socket,
        local: tuple[Any, ...],
        remote: tuple[Any, ...],
        inspect_id: WSK_INSPECT_ID,
    ) -> None:
        self.sock = sock
        self.local = local
        self.remote = remote
        self.inspect_id = inspect_id
        self.stage = _Stage.PENDED

    @property
    def key(self) -> tuple[int, int]:
        return (self.inspect_id.Key, self.inspect_id.SerialNumber)


class ConditionalAccept(AcceptDelivery):
    """The conditional-accept part of a listening socket: its requests and their IDs."""

    __slots__ = ("_held", "_ready", "_tombstones", "conditional")

    # The listening socket's (:class:`~pywsk.provider.listener.ListenSocket`).
    bound: bool
    _broken: bool

    def __init__(
        self,
        dispatch: Any,
        client: WskClient,
        family: int,
        sock: socket.socket,
        context: Any,
        dispatch_client: Any,
    ) -> None:
        super().__init__(dispatch, client, family, sock, context, dispatch_client)
        self.conditional = False
        self._held: dict[tuple[int, int], ConnectionRequest] = {}
        self._ready: collections.deque[ConnectionRequest] = collections.deque()
        self._tombstones: dict[tuple[int, int], None] = {}

    def _inspect(self, sock: socket.socket) -> None:
        """WskInspectEvent for a new connection request; act on the answer."""
        try:
            local, remote = sock.getsockname(), sock.getpeername()
        except OSError:
            reset_unseen(sock)  # dropped before anyone saw it
            return
        inspect_id = new_inspect_id(self)
        request = ConnectionRequest(sock, local, remote, inspect_id)
        action = self.invoke(
            INSPECT_EVENT,
            self.context,
            sockaddr_of(self.family, local),
            sockaddr_of(self.family, remote),
            WSK_INSPECT_ID(inspect_id.Key, inspect_id.SerialNumber),
        )
        if self.closed or self._broken:
            reset_unseen(sock)
            return
        if action == WskInspectAccept:
            self._ready_request(request)
        elif action == WskInspectPend:
            self._held[request.key] = request
            self._watch(request)
        else:
            reset_unseen(sock)  # WskInspectReject (or no usable answer): dropped, no abort event

    def _ready_request(self, request: ConnectionRequest) -> None:
        request.stage = _Stage.READY
        self._ready.append(request)
        self._watch(request)
        self._deliver_ready()

    def _deliver_ready(self, inline: bool = False) -> None:
        """Hand accepted requests on, while a WskAccept (or, unless ``inline``, WskAcceptEvent)
        takes them; a request found reset on the way is aborted instead."""
        while self._ready and not self.closed:
            if not self._accepts and (inline or not self._accept_event_on()):
                break
            request = self._ready.popleft()
            self.engine.forget(request.sock.fileno(), unregister=True)
            if linux.tcp_state(request.sock) == linux.CLOSE:
                self._abort_request(request)
                continue
            self._deliver(request.sock, request.inspect_id)

    def _watch(self, request: ConnectionRequest) -> None:
        """Watch a held request's TCP state (the peer may drop it) in the provider's epoll."""
        engine = self.engine
        engine.register(
            request.sock.fileno(),
            lambda _mask: engine.locked(self.lock, self._check_request, request),
        )

    def _check_request(self, request: ConnectionRequest) -> None:
        """The TCP state of a held request may have moved: did the peer drop it?"""
        if self.closed or request.sock.fileno() < 0:
            return
        try:
            state = linux.tcp_state(request.sock)
        except OSError:
            state = linux.CLOSE
        if request.stage is _Stage.PENDED:
            dropped = state in (linux.CLOSE_WAIT, linux.LAST_ACK, linux.CLOSING, linux.CLOSE)
            if dropped and self._held.get(request.key) is request:
                del self._held[request.key]
                self._abort_request(request)
        elif state == linux.CLOSE and request in self._ready:
            self._ready.remove(request)
            self._abort_request(request)

    def _abort_request(self, request: ConnectionRequest) -> None:
        self.engine.forget(request.sock.fileno(), unregister=True)
        reset_unseen(request.sock)
        self._tombstones[request.key] = None
        while len(self._tombstones) > _TOMBSTONES:
            del self._tombstones[next(iter(self._tombstones))]
        inspect_id = WSK_INSPECT_ID(request.inspect_id.Key, request.inspect_id.SerialNumber)
        if self.engine.on_loop():
            self.invoke(ABORT_EVENT, self.context, inspect_id)
        else:
            # Found inside a client's call: callbacks run on the provider thread only.
            self._post(self.invoke, ABORT_EVENT, self.context, inspect_id)

    def inspect_complete(self, InspectID: Any, Action: int, Irp: IRP) -> int:
        """WskInspectComplete: decide a request whose WskInspectEvent returned Pend."""
        if self._broken:
            return self._complete(Irp, NTSTATUS.STATUS_FILE_FORCED_CLOSED)
        if not self.bound or not self.conditional:
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_DEVICE_STATE)
        if not isinstance(InspectID, WSK_INSPECT_ID) or Action not in (
            WskInspectAccept,
            WskInspectReject,
        ):
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
        key = (InspectID.Key, InspectID.SerialNumber)
        request = self._held.pop(key, None)
        if request is None:
            if key in self._tombstones:
                # Aborted meanwhile: "the connection is never established even with Accept".
                return self._complete(Irp, NTSTATUS.STATUS_SUCCESS)
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
        if Action == WskInspectReject:
            self.engine.forget(request.sock.fileno(), unregister=True)
            reset_unseen(request.sock)
            return self._complete(Irp, NTSTATUS.STATUS_SUCCESS)
        request.stage = _Stage.READY
        self._ready.append(request)
        status = self._complete(Irp, NTSTATUS.STATUS_SUCCESS)
        self._post(self._deliver_ready)
        return status

    # --- the listening fd on the loop -------------------------------------------------------

    def _drop_requests(self) -> None:
        requests = [*self._held.values(), *self._ready]
        self._held.clear()
        self._ready.clear()
        for request in requests:
            self.engine.forget(request.sock.fileno(), unregister=True)
            reset_unseen(request.sock)

    def _conditional_option(
        self, kind: int, in_buf: Any, in_size: int, out_buf: Any, out_size: int
    ) -> tuple[int, int]:
        if kind == WskGetOption:
            return write_out(out_buf, out_size, int(self.conditional), 4)
        if kind != WskSetOption:
            return NTSTATUS.STATUS_NOT_SUPPORTED, 0
        value = read_in(in_buf, in_size)
        if value is None:
            return NTSTATUS.STATUS_INVALID_PARAMETER, 0
        if self.bound:
            return NTSTATUS.STATUS_INVALID_DEVICE_STATE, 0  # "set before bind"
        self.conditional = bool(value)
        return NTSTATUS.STATUS_SUCCESS, 0
