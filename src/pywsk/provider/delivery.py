"""How a connection the kernel accepted reaches the client of a listening socket.

What it does: :class:`AcceptDelivery` is the part of a listening socket that hands each
accepted connection on, as a new connection socket: to the oldest pending WskAccept
(:class:`AcceptOp`; the IRP completes with STATUS_SUCCESS and Information = the socket,
the out-addresses filled), else to WskAcceptEvent, whose two out-parameters
(:class:`~pywsk.wsk.structs.PPVOID`) write straight into the new socket, as WSK's pointers
do, so that the callback may enable events on it before returning.  The connection events
enabled on the listener are then switched on for the kept socket (those whose routine the
new socket's dispatch table has, and that the callback did not disable).  A socket
delivered for a conditional-accept request keeps its WSK_INSPECT_ID
(:mod:`pywsk.provider.inspect_ids`).  :class:`~pywsk.provider.conditional.ConditionalAccept`
and :class:`~pywsk.provider.listener.ListenSocket` build on it.

What it refuses: a WskAcceptEvent answer other than STATUS_SUCCESS (STATUS_REQUEST_NOT_ACCEPTED
or anything else): the provider closes that socket itself, with an RST; a connection that
died before it could be delivered is reset, and the WskAccept waits on.

What always holds: a connection goes to one taker only, and pending WskAccepts take
precedence over WskAcceptEvent; a connection nobody takes is reset
(:func:`reset_unseen`), never left open; a socket a client was offered and declined is
closed by the provider, never left to the client; the callback runs through
:meth:`~pywsk.provider.base.ProviderSocket.invoke` (no lock of ours held), and the
listener's lock is taken before the new socket's.
"""

from __future__ import annotations

import collections
import contextlib
from typing import TYPE_CHECKING, Any

from ..core.connection import OpKind
from ..mechanics import linux
from ..nt.status import NTSTATUS
from ..wsk.constants import (
    AF_INET,
    WSK_EVENT_ACCEPT,
    WSK_EVENT_DISCONNECT,
    WSK_EVENT_RECEIVE,
    WSK_EVENT_SEND_BACKLOG,
    WSK_FLAG_AT_DISPATCH_LEVEL,
)
from ..wsk.structs import PPVOID, SOCKADDR_IN, SOCKADDR_IN6
from .base import Op, ProviderSocket, internal_irp
from .connection import ConnectionSocket
from .inspect_ids import record_inspect_id

if TYPE_CHECKING:
    import socket

    from ..nt.irp import IRP
    from ..wsk.structs import SOCKADDR, WSK_INSPECT_ID
    from .client import WskClient

__all__ = ["AcceptDelivery", "AcceptOp", "reset_unseen", "sockaddr_of"]


def sockaddr_of(family: int, address: tuple[Any, ...]) -> SOCKADDR_IN | SOCKADDR_IN6:
    """The SOCKADDR of ``family`` (Windows numbering) for a Python socket address."""
    value: SOCKADDR_IN | SOCKADDR_IN6 = SOCKADDR_IN() if family == AF_INET else SOCKADDR_IN6()
    value.set_from_tuple(family, address)
    return value


def reset_unseen(sock: socket.socket) -> None:
    """Reset a connection the client will never see, and free its descriptor."""
    with contextlib.suppress(OSError):
        linux.abort_keep_fd(sock)
    sock.close()


class _Into(PPVOID[Any]):
    """An out-parameter that writes straight into a field of the accepted socket, as the
    pointers WSK passes to WskAcceptEvent point into its own socket object."""

    __slots__ = ("_name", "_target")

    def __init__(self, target: ProviderSocket, name: str) -> None:
        self._target = target
        self._name = name

    @property
    def value(self) -> Any:
        return getattr(self._target, self._name)

    @value.setter
    def value(self, value: Any) -> None:
        setattr(self._target, self._name, value)

    def __repr__(self) -> str:
        return f"PPVOID(-> {self._name})"


class AcceptOp(Op):
    """A pending WskAccept, with what the accepted socket and the out-addresses need."""

    __slots__ = ("accept_context", "accept_dispatch", "local_out", "remote_out")

    def __init__(
        self,
        owner: AcceptDelivery,
        irp: IRP,
        context: Any,
        dispatch: Any,
        local_out: SOCKADDR | None,
        remote_out: SOCKADDR | None,
    ) -> None:
        super().__init__(owner, OpKind.ACCEPT, irp, [])
        self.accept_context = context
        self.accept_dispatch = dispatch
        self.local_out = local_out
        self.remote_out = remote_out


class AcceptDelivery(ProviderSocket):
    """The part of a listening socket that gives accepted connections to the client."""

    __slots__ = ("_accepts",)

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
        #: The pending WskAccepts, in the order they were issued.
        self._accepts: collections.deque[AcceptOp] = collections.deque()

    def _deliver(
        self,
        sock: socket.socket,
        inspect_id: WSK_INSPECT_ID | None,
        peer: tuple[Any, ...] | None = None,
    ) -> None:
        """Give one connection to the first pending WskAccept, else to WskAcceptEvent (the
        callers check that one of them wants it; if neither does, it is reset)."""
        while self._accepts:
            op = self._accepts[0]
            if op.done:  # pragma: no cover - done ops leave the queue when they complete
                self._accepts.popleft()
                continue
            new = self._adopt(sock, op.accept_context, op.accept_dispatch, inspect_id, peer)
            if new is None:
                return  # the connection had died already; the WskAccept waits on
            self._accepts.popleft()
            assert new.local is not None
            assert new.remote is not None
            if op.local_out is not None:
                op.local_out.set_from_tuple(self.family, new.local)
            if op.remote_out is not None:
                op.remote_out.set_from_tuple(self.family, new.remote)
            self._finish(op, NTSTATUS.STATUS_SUCCESS, new)
            return
        if self._accept_event_on():
            self._offer(sock, inspect_id, peer)
        else:
            reset_unseen(sock)

    def _adopt(
        self,
        sock: socket.socket,
        context: Any,
        dispatch: Any,
        inspect_id: WSK_INSPECT_ID | None,
        peer: tuple[Any, ...] | None = None,
    ) -> ConnectionSocket | None:
        """A new connection socket for ``sock``, opened for the client; None (and ``sock``
        reset and closed) if the connection died before it could be delivered.  ``peer``:
        the address accept4 gave; a listener bound to a specific address gives its own as
        the connection's local address (no syscall for either)."""
        local = self.local
        if local is not None and str(local[0]) in ("0.0.0.0", "::"):
            local = None
        try:
            new = ConnectionSocket.accepted(
                self.client,
                self.family,
                sock,
                context,
                dispatch,
                self.client.subsystem.options.half_open,
                local,
                peer,
            )
        except OSError:
            reset_unseen(sock)
            return None
        if inspect_id is not None:
            record_inspect_id(new, inspect_id)
        self.client.socket_opened(new)
        return new

    def _accept_event_on(self) -> bool:
        return (
            bool(self.events & WSK_EVENT_ACCEPT) and self.callback_for(WSK_EVENT_ACCEPT) is not None
        )

    def _offer(
        self,
        sock: socket.socket,
        inspect_id: WSK_INSPECT_ID | None,
        peer: tuple[Any, ...] | None = None,
    ) -> None:
        """WskAcceptEvent with a new socket: kept on STATUS_SUCCESS, else reset by us."""
        new = self._adopt(sock, None, None, inspect_id, peer)
        if new is None:
            return
        assert new.local is not None
        assert new.remote is not None
        status = self.invoke(
            WSK_EVENT_ACCEPT,
            self.context,
            WSK_FLAG_AT_DISPATCH_LEVEL,
            sockaddr_of(self.family, new.local),
            sockaddr_of(self.family, new.remote),
            new,
            _Into(new, "context"),
            _Into(new, "dispatch_client"),
        )
        # The callback may have handed the socket to another thread: go on under its lock
        # (lock order: the listener before a socket it accepted).
        self.engine.locked(new.lock, self._after_offer, new, status)

    def _after_offer(self, new: ConnectionSocket, status: int) -> None:
        if new.closed:
            return  # the client closed it from inside the callback
        if status != NTSTATUS.STATUS_SUCCESS:
            # STATUS_REQUEST_NOT_ACCEPTED: WSK closes the socket; the client never touches it.
            new.close(internal_irp())
            return
        inherited = 0
        for event in (WSK_EVENT_RECEIVE, WSK_EVENT_DISCONNECT, WSK_EVENT_SEND_BACKLOG):
            if (
                self.events & event
                and new.callback_for(event) is not None
                and not new.disabled_by_client & event  # disabled inside the callback: stays off
            ):
                inherited |= event
        if inherited & ~new.events:
            new.events |= inherited
            new.on_events_changed()
