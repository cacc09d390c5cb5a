"""Stream WSK sockets (WSK_FLAG_STREAM_SOCKET): undecided until WskConnect or WskListen.

What it does: :class:`StreamSocket` is the WSK_SOCKET a client holds for a stream socket,
with the WSK_PROVIDER_STREAM_DISPATCH table.  It works through a *role*: until it is
committed, a connection socket that can bind; WskConnect commits it to the connection
flow (that role then does everything: send, receive, disconnect, events from the
``Connect`` table of the client's WSK_CLIENT_STREAM_DISPATCH); WskListen commits it to the
listening flow (a listening role over the same, already bound, Linux socket, with the
``Listen`` table's callbacks; sockets it accepts are connection sockets, as WskAccept's
page says).

What it refuses (the pages "WskConnect", "WskListen" and "Winsock kernel socket
categories": a committed stream socket may no longer use the other flow's functions;
their status is undocumented): listening functions once WskConnect was issued, connection
functions once WskListen succeeded, WskAccept before WskListen, and WskListen before
WskBind - each with STATUS_INVALID_DEVICE_STATE, the IRP completed.

What always holds: one Linux socket, one state owner at a time; the client only ever holds
this object, and WskDeregister waits for it to close.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..core.connection import ConnState
from ..mechanics import linux
from ..nt.status import NTSTATUS
from . import sharing
from .base import ProviderSocket
from .connection import ConnectionSocket, is_v6only
from .listener import LISTEN_BACKLOG, ListenSocket

if TYPE_CHECKING:
    import socket

    from ..nt.irp import IRP
    from ..wsk.structs import SOCKADDR, WSK_BUF
    from .base import Op
    from .client import WskClient

__all__ = ["StreamSocket"]


class StreamSocket(ProviderSocket):
    """A stream socket: a connection role, then - after WskListen - possibly a listener."""

    __slots__ = ("committed", "role")

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
            client.subsystem.stream_dispatch, client, family, sock, context, dispatch_client
        )
        connect_table = getattr(dispatch_client, "Connect", None)
        self.role: ConnectionSocket | ListenSocket = ConnectionSocket(
            client, family, sock, context, connect_table, half_open
        )
        self.role.owner = self
        self.role.lock = self.lock  # one Linux socket, one lock
        #: "connection" once WskConnect was issued, "listen" once WskListen succeeded.
        self.committed: str | None = None

    def __repr__(self) -> str:
        return f"<WSK stream socket ({self.committed or 'undecided'}) {self.role!r}>"

    # --- helpers -------------------------------------------------------------------------------
    def _as_connection(self, Irp: IRP) -> ConnectionSocket | int:
        """The connection role, or (IRP completed) STATUS_INVALID_DEVICE_STATE."""
        if isinstance(self.role, ConnectionSocket):
            return self.role
        return self._complete(Irp, NTSTATUS.STATUS_INVALID_DEVICE_STATE)

    def _as_listener(self, Irp: IRP) -> ListenSocket | int:
        """The listening role, or (IRP completed) STATUS_INVALID_DEVICE_STATE."""
        if isinstance(self.role, ListenSocket):
            return self.role
        return self._complete(Irp, NTSTATUS.STATUS_INVALID_DEVICE_STATE)

    # --- both flows ------------------------------------------------------------------------------
    def bind(self, LocalAddress: SOCKADDR, Flags: int, Irp: IRP) -> int:
        if self.committed is not None:
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_DEVICE_STATE)
        role = self._as_connection(Irp)
        return role if isinstance(role, int) else role.bind(LocalAddress, Flags, Irp)

    def get_local_address(self, LocalAddress: SOCKADDR, Irp: IRP) -> int:
        return self.role.get_local_address(LocalAddress, Irp)

    def control(self, *args: Any) -> int:
        return self.role.control(*args)

    def close(self, Irp: IRP) -> int:
        self.closed = True
        return self.role.close(Irp)

    def cancel(self, op: Op) -> None:
        self.role.cancel(op)

    def unsupported(self, Irp: IRP) -> int:
        return self.role.unsupported(Irp)

    # --- the connection flow -----------------------------------------------------------------------
    def connect(self, RemoteAddress: SOCKADDR, Flags: int, Irp: IRP) -> int:
        role = self._as_connection(Irp)
        if isinstance(role, int):
            return role
        status = role.connect(RemoteAddress, Flags, Irp)
        if role.machine.state not in (ConnState.CREATED, ConnState.BOUND):
            # Committed once the connect got under way (a refused call commits nothing).
            self.committed = "connection"
        return status

    def send(self, Buffer: WSK_BUF, Flags: int, Irp: IRP) -> int:
        role = self._as_connection(Irp)
        return role if isinstance(role, int) else role.send(Buffer, Flags, Irp)

    def receive(self, Buffer: WSK_BUF, Flags: int, Irp: IRP) -> int:
        role = self._as_connection(Irp)
        return role if isinstance(role, int) else role.receive(Buffer, Flags, Irp)

    def disconnect(self, Buffer: WSK_BUF | None, Flags: int, Irp: IRP) -> int:
        role = self._as_connection(Irp)
        return role if isinstance(role, int) else role.disconnect(Buffer, Flags, Irp)

    def get_remote_address(self, RemoteAddress: SOCKADDR, Irp: IRP) -> int:
        role = self._as_connection(Irp)
        return role if isinstance(role, int) else role.get_remote_address(RemoteAddress, Irp)

    def release(self, DataIndication: Any) -> int:
        role = self.role
        if not isinstance(role, ConnectionSocket):
            return NTSTATUS.STATUS_INVALID_PARAMETER
        return role.release(DataIndication)

    # --- the listening flow -----------------------------------------------------------------------
    def listen(self, Irp: IRP) -> int:
        role = self.role
        if (
            not isinstance(role, ConnectionSocket)
            or self.committed is not None
            or role.machine.state is not ConnState.BOUND
        ):
            # Already committed (either way), or not bound yet.
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_DEVICE_STATE)
        try:
            sharing.listen_with_sharing(role, self.sock, LISTEN_BACKLOG)
        except OSError as exc:
            return self._complete(Irp, linux.status_from_errno(exc.errno))
        listener = ListenSocket(
            self.client,
            self.family,
            self.sock,
            self.context,
            getattr(self.dispatch_client, "Listen", None),
        )
        listener.owner = self
        listener.lock = self.lock
        listener.local = self.sock.getsockname()
        listener.bound = True
        # The address now belongs to the listening role (in the sharing registry too).
        listener.sharing = role.sharing
        sharing.release_binding(role)
        sharing.register_binding(
            listener,
            self.family,
            listener.local,
            listener.sharing,
            is_v6only(self.sock, self.family),
        )
        self.role = listener
        self.committed = "listen"
        listener.on_events_changed()
        return self._complete(Irp, NTSTATUS.STATUS_SUCCESS)

    def accept(
        self,
        Flags: int,
        AcceptSocketContext: Any,
        AcceptSocketDispatch: Any,
        LocalAddress: SOCKADDR | None,
        RemoteAddress: SOCKADDR | None,
        Irp: IRP,
    ) -> int:
        role = self._as_listener(Irp)
        if isinstance(role, int):
            return role
        return role.accept(
            Flags, AcceptSocketContext, AcceptSocketDispatch, LocalAddress, RemoteAddress, Irp
        )

    def inspect_complete(self, InspectID: Any, Action: int, Irp: IRP) -> int:
        role = self._as_listener(Irp)
        return role if isinstance(role, int) else role.inspect_complete(InspectID, Action, Irp)
