"""The WSK subsystem: client objects, the provider-level functions, the dispatch tables.

What it does: :class:`WskSubsystem` is what ``pywsk.wsk.registration`` attaches to.  It holds
the engine (the provider thread; :data:`pywsk.provider.calls.ENGINE`) and the dispatch
tables, and creates a :class:`WskClient` (the PWSK_CLIENT) per registration.  Its
WSK_PROVIDER_DISPATCH offers WskSocket, WskSocketConnect, WskControlClient and name
resolution, whose functions are here; :data:`SOCKET_FACTORIES` makes each category's
socket.  The socket tables' functions are in :mod:`pywsk.provider.socket_dispatch`; every
call enters through :mod:`pywsk.provider.calls` (the IRQL rule, the IRP taken, the lock).

What it refuses: a NULL IRP where one is required (STATUS_INVALID_PARAMETER, nothing to
complete), a client object that is not one of ours (STATUS_INVALID_HANDLE), a socket
object that is closed or not ours (STATUS_INVALID_HANDLE, IRP completed), categories,
families and protocols it does not implement (STATUS_NOT_SUPPORTED).

What always holds: WskDeregister returns only once every socket of the client is closed;
a bad call on one socket never touches another.
"""

from __future__ import annotations

import functools
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from ..mechanics import linux
from ..nt import hooks
from ..nt.irp import IRP
from ..nt.irql import DISPATCH_LEVEL, require_irql_at_most
from ..nt.status import NTSTATUS
from ..wsk.constants import (
    AF_INET,
    AF_INET6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    MAKE_WSK_VERSION,
    NPI_WSK_INTERFACE_ID,
    SOCK_DGRAM,
    SOCK_STREAM,
    WSK_EVENT_DISABLE,
    WSK_FLAG_BASIC_SOCKET,
    WSK_FLAG_CONNECTION_SOCKET,
    WSK_FLAG_DATAGRAM_SOCKET,
    WSK_FLAG_LISTEN_SOCKET,
    WSK_FLAG_STREAM_SOCKET,
    WSK_SET_STATIC_EVENT_CALLBACKS,
    WSK_TRANSPORT_LIST_QUERY,
)
from ..wsk.dispatch import (
    WSK_PROVIDER_BASIC_DISPATCH,
    WSK_PROVIDER_CONNECTION_DISPATCH,
    WSK_PROVIDER_DATAGRAM_DISPATCH,
    WSK_PROVIDER_DISPATCH,
    WSK_PROVIDER_LISTEN_DISPATCH,
    WSK_PROVIDER_STREAM_DISPATCH,
)
from ..wsk.structs import (
    WSK_EVENT_CALLBACK_CONTROL,
    WSK_PROVIDER_CHARACTERISTICS,
    WSK_TRANSPORT,
)
from . import arguments as argcheck
from . import names
from .base import ProviderSocket, internal_irp
from .calls import ENGINE, _completed, _enter, _no_irp_call, _take
from .connection import ConnectionSocket
from .datagram import BasicSocket, DatagramSocket
from .listener import DatagramListenSocket, ListenSocket
from .socket_dispatch import (
    _connect_step,
    _WskAccept,
    _WskBind,
    _WskCloseSocket,
    _WskConnect,
    _WskConnectEx,
    _WskControlSocket,
    _WskDisconnect,
    _WskGetLocalAddress,
    _WskGetRemoteAddress,
    _WskInspectComplete,
    _WskListen,
    _WskReceive,
    _WskReceiveEx,
    _WskReceiveFrom,
    _WskRelease,
    _WskSendEx,
    _WskSendMessages,
    _WskSendTo,
)
from .socket_dispatch import _WskSend as _WskSend  # also importable from here
from .stream import StreamSocket

if TYPE_CHECKING:
    from ..wsk.registration import WSK_CLIENT_NPI
    from ..wsk.structs import PSIZE_T, SOCKADDR

__all__ = ["WskClient", "WskSubsystem", "TransportOptions", "subsystem"]

WSK_VERSION_1_0: Final = MAKE_WSK_VERSION(1, 0)


@dataclass
class TransportOptions:
    """How the modelled transport behaves; sockets take a snapshot when they are created.

    ``half_open``: TCP supports half-open connections (receive after our graceful
    disconnect).  False models a transport that does not ("not all transports support
    half-open connections" - WskDisconnect): after a graceful disconnect, receives complete
    with 0 bytes and nothing more is received.
    """

    half_open: bool = True


class WskClient:
    """The client object (PWSK_CLIENT) of one registration."""

    def __init__(self, subsystem: WskSubsystem, npi: WSK_CLIENT_NPI) -> None:
        self.subsystem = subsystem
        self.npi = npi
        self.sockets: set[ProviderSocket] = set()
        self._idle = threading.Condition()
        self.detached = False
        #: Events enabled with WSK_SET_STATIC_EVENT_CALLBACKS (before any socket was made).
        self.static_events = 0
        self.sockets_made = 0
        #: ADDRINFOEXW chains handed out by WskGetAddressInfo and not yet freed.
        self.address_infos: set[int] = set()

    def socket_opened(self, sock: ProviderSocket) -> None:
        with self._idle:
            self.sockets.add(sock)
            self.sockets_made += 1
        if hooks.observer is not None:
            hooks.observer.event("socket-opened", sock, client=self)

    def socket_closed(self, sock: ProviderSocket) -> None:
        with self._idle:
            self.sockets.discard(sock)
            self._idle.notify_all()
        if hooks.observer is not None:
            hooks.observer.event("socket-closed", sock, client=self)

    def wait_idle(self) -> None:
        """Block until every socket of this client is closed."""
        with self._idle:
            self._idle.wait_for(lambda: not self.sockets)

    def __repr__(self) -> str:
        return f"<WSK client with {len(self.sockets)} socket(s)>"


class WskSubsystem:
    """The WSK provider: what registration attaches to."""

    def __init__(self) -> None:
        self.engine = ENGINE
        self.characteristics = WSK_PROVIDER_CHARACTERISTICS(
            HighestVersion=WSK_VERSION_1_0, LowestVersion=WSK_VERSION_1_0
        )
        self.options = TransportOptions()
        basic = WSK_PROVIDER_BASIC_DISPATCH(
            WskControlSocket=_WskControlSocket, WskCloseSocket=_WskCloseSocket
        )
        self.connection_dispatch = WSK_PROVIDER_CONNECTION_DISPATCH(
            Basic=basic,
            WskBind=_WskBind,
            WskConnect=_WskConnect,
            WskGetLocalAddress=_WskGetLocalAddress,
            WskGetRemoteAddress=_WskGetRemoteAddress,
            WskSend=_WskSend,
            WskReceive=_WskReceive,
            WskDisconnect=_WskDisconnect,
            WskRelease=_WskRelease,
            WskConnectEx=_WskConnectEx,
            WskSendEx=_WskSendEx,
            WskReceiveEx=_WskReceiveEx,
        )
        self.stream_dispatch = WSK_PROVIDER_STREAM_DISPATCH(
            Basic=basic,
            WskBind=_WskBind,
            WskAccept=_WskAccept,
            WskConnect=_WskConnect,
            WskListen=_WskListen,
            WskSend=_WskSend,
            WskReceive=_WskReceive,
            WskDisconnect=_WskDisconnect,
            WskRelease=_WskRelease,
            WskGetLocalAddress=_WskGetLocalAddress,
            WskGetRemoteAddress=_WskGetRemoteAddress,
            WskConnectEx=_WskConnectEx,
            WskSendEx=_WskSendEx,
            WskReceiveEx=_WskReceiveEx,
        )
        self.basic_dispatch = basic
        self.datagram_dispatch = WSK_PROVIDER_DATAGRAM_DISPATCH(
            Basic=basic,
            WskBind=_WskBind,
            WskSendTo=_WskSendTo,
            WskReceiveFrom=_WskReceiveFrom,
            WskRelease=_WskRelease,
            WskGetLocalAddress=_WskGetLocalAddress,
            WskSendMessages=_WskSendMessages,
        )
        self.listen_dispatch = WSK_PROVIDER_LISTEN_DISPATCH(
            Basic=basic,
            WskBind=_WskBind,
            WskAccept=_WskAccept,
            WskInspectComplete=_WskInspectComplete,
            WskGetLocalAddress=_WskGetLocalAddress,
        )
        self.provider_dispatch = WSK_PROVIDER_DISPATCH(
            Version=WSK_VERSION_1_0,
            Reserved=0,
            WskSocket=_WskSocket,
            WskSocketConnect=_WskSocketConnect,
            WskControlClient=_WskControlClient,
            WskGetAddressInfo=_WskGetAddressInfo,
            WskFreeAddressInfo=_WskFreeAddressInfo,
            WskGetNameInfo=_WskGetNameInfo,
        )

    # --- ProviderAttachment ----------------------------------------------------------------
    def start(self, timeout: float | None) -> bool:
        return self.engine.start(timeout)

    def attach_client(self, npi: WSK_CLIENT_NPI) -> WskClient:
        return WskClient(self, npi)

    def dispatch_for(self, client: Any) -> WSK_PROVIDER_DISPATCH:
        return self.provider_dispatch

    def detach_client(self, client: Any) -> None:
        assert isinstance(client, WskClient)
        client.wait_idle()
        client.detached = True
        if hooks.observer is not None:
            hooks.observer.event("client-detached", client)


# --- client-level functions ---------------------------------------------------------------------


#: How each category's socket is made from a fresh non-blocking Linux socket:
#: ``factory(client, family, sock, context, dispatch) -> ProviderSocket``.
SocketFactory = Callable[[WskClient, int, socket.socket, Any, Any], ProviderSocket]


def _connection_socket(
    client: WskClient, family: int, sock: socket.socket, context: Any, dispatch: Any
) -> ProviderSocket:
    return ConnectionSocket(client, family, sock, context, dispatch, subsystem.options.half_open)


def _stream_socket(
    client: WskClient, family: int, sock: socket.socket, context: Any, dispatch: Any
) -> ProviderSocket:
    return StreamSocket(client, family, sock, context, dispatch, subsystem.options.half_open)


SOCKET_FACTORIES: dict[int, SocketFactory] = {
    WSK_FLAG_CONNECTION_SOCKET: _connection_socket,
    WSK_FLAG_LISTEN_SOCKET: ListenSocket,
    WSK_FLAG_STREAM_SOCKET: _stream_socket,
    WSK_FLAG_DATAGRAM_SOCKET: DatagramSocket,
    WSK_FLAG_BASIC_SOCKET: BasicSocket,
}
#: The transports (type, protocol) each category can be made on.
_CATEGORY_TRANSPORTS: Final = {
    WSK_FLAG_DATAGRAM_SOCKET: ((SOCK_DGRAM, IPPROTO_UDP),),
    WSK_FLAG_BASIC_SOCKET: ((SOCK_STREAM, IPPROTO_TCP), (SOCK_DGRAM, IPPROTO_UDP)),
}
_KNOWN_CATEGORIES: Final = frozenset(
    {
        WSK_FLAG_BASIC_SOCKET,
        WSK_FLAG_LISTEN_SOCKET,
        WSK_FLAG_CONNECTION_SOCKET,
        WSK_FLAG_DATAGRAM_SOCKET,
        WSK_FLAG_STREAM_SOCKET,
    }
)


def _create_socket(
    client: Any,
    family: int,
    socket_type: int,
    protocol: int,
    flags: int,
    context: Any,
    dispatch: Any,
) -> ProviderSocket | int:
    """A new socket of the category ``flags`` names, or the status that refuses it."""
    if not isinstance(client, WskClient) or client.detached:
        return NTSTATUS.STATUS_INVALID_HANDLE
    if flags not in _KNOWN_CATEGORIES:
        return NTSTATUS.STATUS_INVALID_PARAMETER
    factory = SOCKET_FACTORIES.get(flags)
    if factory is None:
        return NTSTATUS.STATUS_NOT_SUPPORTED  # a category pywsk does not implement (yet)
    if family not in (AF_INET, AF_INET6):
        return NTSTATUS.STATUS_NOT_SUPPORTED
    if (flags, socket_type, protocol) == (WSK_FLAG_LISTEN_SOCKET, SOCK_DGRAM, IPPROTO_UDP):
        # Windows creates it; only WskBind fails (STATUS_NOT_IMPLEMENTED).
        factory = DatagramListenSocket
    elif (socket_type, protocol) not in _CATEGORY_TRANSPORTS.get(
        flags, ((SOCK_STREAM, IPPROTO_TCP),)
    ):
        return NTSTATUS.STATUS_NOT_SUPPORTED
    udp = socket_type == SOCK_DGRAM
    try:
        # Non-blocking from the start (SOCK_NONBLOCK: no ioctl afterwards).
        sock = socket.socket(
            linux.linux_family(family),
            (socket.SOCK_DGRAM if udp else socket.SOCK_STREAM) | socket.SOCK_NONBLOCK,
            socket.IPPROTO_UDP if udp else socket.IPPROTO_TCP,
        )
    except OSError as exc:
        return linux.status_from_errno(exc.errno)
    if family == AF_INET6:
        # Windows makes IPv6 sockets IPv6-only unless IPV6_V6ONLY is cleared before bind.
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    new = factory(client, family, sock, context, dispatch)
    client.socket_opened(new)
    return new


def _WskSocket(
    Client: Any,
    AddressFamily: int,
    SocketType: int,
    Protocol: int,
    Flags: int,
    SocketContext: Any,
    Dispatch: Any,
    OwningProcess: Any,
    OwningThread: Any,
    SecurityDescriptor: Any,
    Irp: IRP,
) -> int:
    def run() -> int:
        created = _create_socket(
            Client, AddressFamily, SocketType, Protocol, Flags, SocketContext, Dispatch
        )
        if isinstance(created, int):
            return _completed(Irp, created)
        subsystem.engine.complete(Irp, NTSTATUS.STATUS_SUCCESS, created)
        return NTSTATUS.STATUS_SUCCESS

    return _enter(
        "WskSocket",
        Irp,
        run,
        check=lambda: argcheck.ulong_status(AddressFamily, SocketType, Protocol, Flags),
    )


def _WskSocketConnect(
    Client: Any,
    SocketType: int,
    Protocol: int,
    LocalAddress: SOCKADDR,
    RemoteAddress: SOCKADDR,
    Flags: int,
    SocketContext: Any,
    Dispatch: Any,
    OwningProcess: Any,
    OwningThread: Any,
    SecurityDescriptor: Any,
    Irp: IRP,
) -> int:
    def run() -> int:
        if Flags != 0 or LocalAddress is None or RemoteAddress is None:
            return _completed(Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
        created = _create_socket(
            Client,
            LocalAddress.sa_family,
            SocketType,
            Protocol,
            WSK_FLAG_CONNECTION_SOCKET,
            SocketContext,
            Dispatch,
        )
        if isinstance(created, int):
            return _completed(Irp, created)
        assert isinstance(created, ConnectionSocket)
        status: int = subsystem.engine.locked(
            created.lock, _bind_then_connect, created, LocalAddress, RemoteAddress, Irp
        )
        return status

    return _enter(
        "WskSocketConnect",
        Irp,
        run,
        check=lambda: argcheck.first_refusal(
            argcheck.ulong_status(SocketType, Protocol, Flags),
            argcheck.address_status(LocalAddress),
            argcheck.address_status(RemoteAddress),
        ),
    )


def _bind_then_connect(sock: ConnectionSocket, local: SOCKADDR, remote: SOCKADDR, Irp: IRP) -> int:
    """WskSocketConnect's two steps, on internal IRPs, under the socket's lock;
    Information = the socket on success (on failure the socket is closed)."""

    def fail(status: int) -> int:
        sock.close(internal_irp())
        return _completed(Irp, status)

    def succeed() -> int:
        subsystem.engine.complete(Irp, NTSTATUS.STATUS_SUCCESS, sock)
        return NTSTATUS.STATUS_SUCCESS

    status = sock.bind(local, 0, internal_irp())
    if status != NTSTATUS.STATUS_SUCCESS:
        return fail(status)
    return _connect_step("WskSocketConnect", sock, remote, 0, Irp, succeed, fail)


def _WskControlClient(
    Client: Any,
    ControlCode: int,
    InputSize: int,
    InputBuffer: Any,
    OutputSize: int,
    OutputBuffer: Any,
    OutputSizeReturned: PSIZE_T | None,
    Irp: IRP | None,
) -> int:
    """WskControlClient.  With an IRP, every outcome - refusals too - completes it."""
    require_irql_at_most(DISPATCH_LEVEL, "WskControlClient")
    status = argcheck.first_refusal(
        argcheck.ulong_status(ControlCode, InputSize, OutputSize),
        argcheck.size_box_status(OutputSizeReturned),
    ) or _no_irp_call(
        "WskControlClient",
        functools.partial(
            _control_client,
            Client,
            ControlCode,
            InputBuffer,
            OutputSize,
            OutputBuffer,
            OutputSizeReturned,
            Irp,
        ),
        NTSTATUS.STATUS_INVALID_PARAMETER,
    )
    if isinstance(Irp, IRP):
        return _take("WskControlClient", Irp, _completed, (Irp, status))
    return status


def _control_client(
    Client: Any,
    ControlCode: int,
    InputBuffer: Any,
    OutputSize: int,
    OutputBuffer: Any,
    OutputSizeReturned: PSIZE_T | None,
    Irp: IRP | None,
) -> int:
    if not isinstance(Client, WskClient):
        return NTSTATUS.STATUS_INVALID_HANDLE
    if ControlCode == WSK_TRANSPORT_LIST_QUERY:
        # IRP must be NULL; OutputSizeReturned must be given (wsk.h).
        if Irp is not None or OutputSizeReturned is None:
            return NTSTATUS.STATUS_INVALID_PARAMETER
        transports = [
            WSK_TRANSPORT(
                Version=0, SocketType=SOCK_STREAM, Protocol=IPPROTO_TCP, AddressFamily=AF_INET
            ),
            WSK_TRANSPORT(
                Version=0, SocketType=SOCK_STREAM, Protocol=IPPROTO_TCP, AddressFamily=AF_INET6
            ),
            WSK_TRANSPORT(
                Version=0, SocketType=SOCK_DGRAM, Protocol=IPPROTO_UDP, AddressFamily=AF_INET
            ),
            WSK_TRANSPORT(
                Version=0, SocketType=SOCK_DGRAM, Protocol=IPPROTO_UDP, AddressFamily=AF_INET6
            ),
        ]
        OutputSizeReturned.value = len(transports)
        if not isinstance(OutputBuffer, list) or OutputSize < len(transports):
            return NTSTATUS.STATUS_BUFFER_OVERFLOW
        OutputBuffer[: len(transports)] = transports
        return NTSTATUS.STATUS_SUCCESS
    if ControlCode == WSK_SET_STATIC_EVENT_CALLBACKS:
        return _set_static_event_callbacks(Client, InputBuffer, Irp)
    return NTSTATUS.STATUS_NOT_SUPPORTED


def _set_static_event_callbacks(client: WskClient, control: Any, Irp: IRP | None) -> int:
    """WSK_SET_STATIC_EVENT_CALLBACKS: before any socket exists, IRP NULL ("WSK_SET_STATIC_
    EVENT_CALLBACKS"); every later socket gets the events of its category, for good."""
    if Irp is not None or not isinstance(control, WSK_EVENT_CALLBACK_CONTROL):
        return NTSTATUS.STATUS_INVALID_PARAMETER
    if control.NpiId != NPI_WSK_INTERFACE_ID or control.EventMask & WSK_EVENT_DISABLE:
        return NTSTATUS.STATUS_INVALID_PARAMETER
    if client.sockets_made:
        return NTSTATUS.STATUS_INVALID_DEVICE_STATE
    client.static_events |= control.EventMask
    return NTSTATUS.STATUS_SUCCESS


# --- name resolution ---------------------------------------------------------------------------


def _WskGetAddressInfo(
    Client: Any,
    NodeName: Any,
    ServiceName: Any,
    NameSpace: int,
    Provider: Any,
    Hints: Any,
    Result: Any,
    OwningProcess: Any,
    OwningThread: Any,
    Irp: IRP,
) -> int:
    names.check_passive("WskGetAddressInfo")

    def run() -> int:
        if not isinstance(Client, WskClient):
            return _completed(Irp, NTSTATUS.STATUS_INVALID_HANDLE)
        return names.get_address_info(
            subsystem, Client, NodeName, ServiceName, NameSpace, Provider, Hints, Result, Irp
        )

    return _enter(
        "WskGetAddressInfo",
        Irp,
        run,
        check=lambda: argcheck.first_refusal(
            argcheck.name_status(NodeName),
            argcheck.name_status(ServiceName),
            argcheck.ulong_status(NameSpace),
            argcheck.hints_status(Hints),
        ),
    )


def _WskFreeAddressInfo(Client: Any, AddrInfo: Any) -> None:
    names.check_passive("WskFreeAddressInfo")
    if isinstance(Client, WskClient):
        names.free_address_info(Client, AddrInfo)


def _WskGetNameInfo(
    Client: Any,
    SockAddr: Any,
    SockAddrLength: int,
    NodeName: Any,
    ServiceName: Any,
    Flags: int,
    OwningProcess: Any,
    OwningThread: Any,
    Irp: IRP,
) -> int:
    names.check_passive("WskGetNameInfo")

    def run() -> int:
        if not isinstance(Client, WskClient):
            return _completed(Irp, NTSTATUS.STATUS_INVALID_HANDLE)
        return names.get_name_info(subsystem, SockAddr, NodeName, ServiceName, Flags, Irp)

    return _enter(
        "WskGetNameInfo",
        Irp,
        run,
        check=lambda: argcheck.first_refusal(
            argcheck.address_status(SockAddr),
            argcheck.ulong_status(SockAddrLength, Flags),
            argcheck.name_status(NodeName),
            argcheck.name_status(ServiceName),
        ),
    )


#: The one WSK subsystem of this process (made last: its tables name the functions above).
subsystem: Final = WskSubsystem()
