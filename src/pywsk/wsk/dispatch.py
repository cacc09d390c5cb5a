"""wsk.h dispatch tables: the provider's functions per socket category, and the client's.

What it does: declares each table with Microsoft's member names in Microsoft's order
(the order is ABI in C).  Provider tables embed ``WSK_PROVIDER_BASIC_DISPATCH`` first, as
an anonymous member in C; both ``Dispatch.WskCloseSocket`` and
``Dispatch.Basic.WskCloseSocket`` work here, as both do in C.

What it refuses: tables are frozen: a client cannot patch the provider's functions.

What always holds: every provider function takes the socket first and, except
WskRelease, an IRP last, and returns an NTSTATUS (``int``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..nt.irp import IRP
from .structs import (
    PSIZE_T,
    SOCKADDR,
    WSK_BUF,
    WSK_BUF_LIST,
    WSK_DATA_INDICATION,
    WSK_DATAGRAM_INDICATION,
    WSK_INSPECT_ID,
    WSK_SOCKET,
)

__all__ = [
    "PFN_WSK_CONTROL_SOCKET",
    "PFN_WSK_CLOSE_SOCKET",
    "PFN_WSK_BIND",
    "PFN_WSK_CONNECT",
    "PFN_WSK_CONNECT_EX",
    "PFN_WSK_LISTEN",
    "PFN_WSK_ACCEPT",
    "PFN_WSK_INSPECT_COMPLETE",
    "PFN_WSK_GET_LOCAL_ADDRESS",
    "PFN_WSK_GET_REMOTE_ADDRESS",
    "PFN_WSK_SEND",
    "PFN_WSK_RECEIVE",
    "PFN_WSK_DISCONNECT",
    "PFN_WSK_RELEASE_DATA_INDICATION_LIST",
    "PFN_WSK_SEND_EX",
    "PFN_WSK_RECEIVE_EX",
    "PFN_WSK_SEND_TO",
    "PFN_WSK_RECEIVE_FROM",
    "PFN_WSK_RELEASE_DATAGRAM_INDICATION_LIST",
    "PFN_WSK_SEND_MESSAGES",
    "PFN_WSK_RECEIVE_FROM_EVENT",
    "WSK_PROVIDER_DATAGRAM_DISPATCH",
    "PWSK_PROVIDER_DATAGRAM_DISPATCH",
    "WSK_CLIENT_DATAGRAM_DISPATCH",
    "PWSK_CLIENT_DATAGRAM_DISPATCH",
    "PFN_WSK_SOCKET",
    "PFN_WSK_SOCKET_CONNECT",
    "PFN_WSK_CONTROL_CLIENT",
    "PFN_WSK_CLIENT_EVENT",
    "PFN_WSK_RECEIVE_EVENT",
    "PFN_WSK_DISCONNECT_EVENT",
    "PFN_WSK_SEND_BACKLOG_EVENT",
    "PFN_WSK_ACCEPT_EVENT",
    "PFN_WSK_INSPECT_EVENT",
    "PFN_WSK_ABORT_EVENT",
    "WSK_PROVIDER_BASIC_DISPATCH",
    "PWSK_PROVIDER_BASIC_DISPATCH",
    "WSK_PROVIDER_LISTEN_DISPATCH",
    "PWSK_PROVIDER_LISTEN_DISPATCH",
    "WSK_PROVIDER_CONNECTION_DISPATCH",
    "PWSK_PROVIDER_CONNECTION_DISPATCH",
    "WSK_PROVIDER_STREAM_DISPATCH",
    "PWSK_PROVIDER_STREAM_DISPATCH",
    "WSK_PROVIDER_DISPATCH",
    "PWSK_PROVIDER_DISPATCH",
    "WSK_CLIENT_DISPATCH",
    "PWSK_CLIENT_DISPATCH",
    "WSK_CLIENT_CONNECTION_DISPATCH",
    "PWSK_CLIENT_CONNECTION_DISPATCH",
    "WSK_CLIENT_LISTEN_DISPATCH",
    "PWSK_CLIENT_LISTEN_DISPATCH",
    "WSK_CLIENT_STREAM_DISPATCH",
    "PWSK_CLIENT_STREAM_DISPATCH",
]

# --- provider functions --------------------------------------------------------------
PFN_WSK_CONTROL_SOCKET = Callable[
    [WSK_SOCKET, int, int, int, int, Any, int, Any, "PSIZE_T | None", "IRP | None"], int
]
PFN_WSK_CLOSE_SOCKET = Callable[[WSK_SOCKET, IRP], int]
PFN_WSK_BIND = Callable[[WSK_SOCKET, SOCKADDR, int, IRP], int]
PFN_WSK_CONNECT = Callable[[WSK_SOCKET, SOCKADDR, int, IRP], int]
PFN_WSK_CONNECT_EX = Callable[[WSK_SOCKET, SOCKADDR, "WSK_BUF | None", int, IRP], int]
PFN_WSK_LISTEN = Callable[[WSK_SOCKET, IRP], int]
PFN_WSK_ACCEPT = Callable[
    [WSK_SOCKET, int, Any, Any, "SOCKADDR | None", "SOCKADDR | None", IRP], int
]
PFN_WSK_INSPECT_COMPLETE = Callable[[WSK_SOCKET, WSK_INSPECT_ID, int, IRP], int]
PFN_WSK_GET_LOCAL_ADDRESS = Callable[[WSK_SOCKET, SOCKADDR, IRP], int]
PFN_WSK_GET_REMOTE_ADDRESS = Callable[[WSK_SOCKET, SOCKADDR, IRP], int]
PFN_WSK_SEND = Callable[[WSK_SOCKET, WSK_BUF, int, IRP], int]
PFN_WSK_RECEIVE = Callable[[WSK_SOCKET, WSK_BUF, int, IRP], int]
PFN_WSK_DISCONNECT = Callable[[WSK_SOCKET, "WSK_BUF | None", int, IRP], int]
PFN_WSK_RELEASE_DATA_INDICATION_LIST = Callable[[WSK_SOCKET, WSK_DATA_INDICATION], int]
PFN_WSK_SEND_EX = Callable[[WSK_SOCKET, WSK_BUF, int, int, Any, IRP], int]
PFN_WSK_RECEIVE_EX = Callable[[WSK_SOCKET, WSK_BUF, int, Any, Any, Any, IRP], int]
PFN_WSK_SEND_TO = Callable[[WSK_SOCKET, WSK_BUF, int, "SOCKADDR | None", int, Any, IRP], int]
PFN_WSK_RECEIVE_FROM = Callable[
    [WSK_SOCKET, WSK_BUF, int, "SOCKADDR | None", Any, Any, Any, IRP], int
]
PFN_WSK_RELEASE_DATAGRAM_INDICATION_LIST = Callable[[WSK_SOCKET, WSK_DATAGRAM_INDICATION], int]
PFN_WSK_SEND_MESSAGES = Callable[
    [WSK_SOCKET, WSK_BUF_LIST, int, "SOCKADDR | None", int, Any, IRP], int
]

PFN_WSK_SOCKET = Callable[[Any, int, int, int, int, Any, Any, Any, Any, Any, IRP], int]
PFN_WSK_SOCKET_CONNECT = Callable[
    [Any, int, int, SOCKADDR, SOCKADDR, int, Any, Any, Any, Any, Any, IRP], int
]
PFN_WSK_CONTROL_CLIENT = Callable[
    [Any, int, int, Any, int, Any, "PSIZE_T | None", "IRP | None"], int
]

# --- client callbacks ------------------------------------------------------------------
PFN_WSK_CLIENT_EVENT = Callable[[Any, int, Any, int], int]
PFN_WSK_RECEIVE_EVENT = Callable[[Any, int, "WSK_DATA_INDICATION | None", int, PSIZE_T], int]
PFN_WSK_DISCONNECT_EVENT = Callable[[Any, int], int]
PFN_WSK_SEND_BACKLOG_EVENT = Callable[[Any, int], int]
PFN_WSK_ACCEPT_EVENT = Callable[[Any, int, SOCKADDR, SOCKADDR, "WSK_SOCKET | None", Any, Any], int]
PFN_WSK_INSPECT_EVENT = Callable[[Any, SOCKADDR, SOCKADDR, "WSK_INSPECT_ID | None"], int]
PFN_WSK_ABORT_EVENT = Callable[[Any, WSK_INSPECT_ID], int]
PFN_WSK_RECEIVE_FROM_EVENT = Callable[[Any, int, "WSK_DATAGRAM_INDICATION | None"], int]


@dataclass(frozen=True, eq=False)
class WSK_PROVIDER_BASIC_DISPATCH:
    """Functions every socket category has."""

    WskControlSocket: PFN_WSK_CONTROL_SOCKET
    WskCloseSocket: PFN_WSK_CLOSE_SOCKET


class _EmbedsBasic:
    """Gives ``WskControlSocket`` / ``WskCloseSocket`` at top level, as C's anonymous member."""

    Basic: WSK_PROVIDER_BASIC_DISPATCH

    @property
    def WskControlSocket(self) -> PFN_WSK_CONTROL_SOCKET:
        return self.Basic.WskControlSocket

    @property
    def WskCloseSocket(self) -> PFN_WSK_CLOSE_SOCKET:
        return self.Basic.WskCloseSocket


@dataclass(frozen=True, eq=False)
class WSK_PROVIDER_LISTEN_DISPATCH(_EmbedsBasic):
    """Functions of a listening socket."""

    Basic: WSK_PROVIDER_BASIC_DISPATCH
    WskBind: PFN_WSK_BIND
    WskAccept: PFN_WSK_ACCEPT
    WskInspectComplete: PFN_WSK_INSPECT_COMPLETE
    WskGetLocalAddress: PFN_WSK_GET_LOCAL_ADDRESS


@dataclass(frozen=True, eq=False)
class WSK_PROVIDER_DATAGRAM_DISPATCH(_EmbedsBasic):
    """Functions of a datagram socket."""

    Basic: WSK_PROVIDER_BASIC_DISPATCH
    WskBind: PFN_WSK_BIND
    WskSendTo: PFN_WSK_SEND_TO
    WskReceiveFrom: PFN_WSK_RECEIVE_FROM
    WskRelease: PFN_WSK_RELEASE_DATAGRAM_INDICATION_LIST
    WskGetLocalAddress: PFN_WSK_GET_LOCAL_ADDRESS
    WskSendMessages: PFN_WSK_SEND_MESSAGES


@dataclass(frozen=True, eq=False)
class WSK_PROVIDER_CONNECTION_DISPATCH(_EmbedsBasic):
    """Functions of a connection-oriented socket."""

    Basic: WSK_PROVIDER_BASIC_DISPATCH
    WskBind: PFN_WSK_BIND
    WskConnect: PFN_WSK_CONNECT
    WskGetLocalAddress: PFN_WSK_GET_LOCAL_ADDRESS
    WskGetRemoteAddress: PFN_WSK_GET_REMOTE_ADDRESS
    WskSend: PFN_WSK_SEND
    WskReceive: PFN_WSK_RECEIVE
    WskDisconnect: PFN_WSK_DISCONNECT
    WskRelease: PFN_WSK_RELEASE_DATA_INDICATION_LIST
    WskConnectEx: PFN_WSK_CONNECT_EX
    WskSendEx: PFN_WSK_SEND_EX
    WskReceiveEx: PFN_WSK_RECEIVE_EX


@dataclass(frozen=True, eq=False)
class WSK_PROVIDER_STREAM_DISPATCH(_EmbedsBasic):
    """Functions of a stream socket (a listener after WskListen, a connection after WskConnect)."""

    Basic: WSK_PROVIDER_BASIC_DISPATCH
    WskBind: PFN_WSK_BIND
    WskAccept: PFN_WSK_ACCEPT
    WskConnect: PFN_WSK_CONNECT
    WskListen: PFN_WSK_LISTEN
    WskSend: PFN_WSK_SEND
    WskReceive: PFN_WSK_RECEIVE
    WskDisconnect: PFN_WSK_DISCONNECT
    WskRelease: PFN_WSK_RELEASE_DATA_INDICATION_LIST
    WskGetLocalAddress: PFN_WSK_GET_LOCAL_ADDRESS
    WskGetRemoteAddress: PFN_WSK_GET_REMOTE_ADDRESS
    WskConnectEx: PFN_WSK_CONNECT_EX
    WskSendEx: PFN_WSK_SEND_EX
    WskReceiveEx: PFN_WSK_RECEIVE_EX


@dataclass(frozen=True, eq=False)
class WSK_PROVIDER_DISPATCH:
    """Client-level functions of the provider, for the version it granted."""

    Version: int
    Reserved: int
    WskSocket: PFN_WSK_SOCKET
    WskSocketConnect: PFN_WSK_SOCKET_CONNECT
    WskControlClient: PFN_WSK_CONTROL_CLIENT
    WskGetAddressInfo: Callable[..., int] | None = None
    WskFreeAddressInfo: Callable[..., None] | None = None
    WskGetNameInfo: Callable[..., int] | None = None


@dataclass
class WSK_CLIENT_DISPATCH:
    """The client's registration table: the version it asks for, and its client-event routine."""

    Version: int = 0
    Reserved: int = 0
    WskClientEvent: PFN_WSK_CLIENT_EVENT | None = None


@dataclass
class WSK_CLIENT_CONNECTION_DISPATCH:
    """Event callbacks of a connection-oriented socket (each may be None)."""

    WskReceiveEvent: PFN_WSK_RECEIVE_EVENT | None = None
    WskDisconnectEvent: PFN_WSK_DISCONNECT_EVENT | None = None
    WskSendBacklogEvent: PFN_WSK_SEND_BACKLOG_EVENT | None = None


@dataclass
class WSK_CLIENT_DATAGRAM_DISPATCH:
    """Event callback of a datagram socket (may be None)."""

    WskReceiveFromEvent: PFN_WSK_RECEIVE_FROM_EVENT | None = None


@dataclass
class WSK_CLIENT_LISTEN_DISPATCH:
    """Event callbacks of a listening socket (each may be None)."""

    WskAcceptEvent: PFN_WSK_ACCEPT_EVENT | None = None
    WskInspectEvent: PFN_WSK_INSPECT_EVENT | None = None
    WskAbortEvent: PFN_WSK_ABORT_EVENT | None = None


@dataclass
class WSK_CLIENT_STREAM_DISPATCH:
    """Event callbacks of a stream socket, per role."""

    Listen: WSK_CLIENT_LISTEN_DISPATCH | None = None
    Connect: WSK_CLIENT_CONNECTION_DISPATCH | None = None


PWSK_PROVIDER_BASIC_DISPATCH = WSK_PROVIDER_BASIC_DISPATCH
PWSK_PROVIDER_LISTEN_DISPATCH = WSK_PROVIDER_LISTEN_DISPATCH
PWSK_PROVIDER_CONNECTION_DISPATCH = WSK_PROVIDER_CONNECTION_DISPATCH
PWSK_PROVIDER_DATAGRAM_DISPATCH = WSK_PROVIDER_DATAGRAM_DISPATCH
PWSK_CLIENT_DATAGRAM_DISPATCH = WSK_CLIENT_DATAGRAM_DISPATCH
PWSK_PROVIDER_STREAM_DISPATCH = WSK_PROVIDER_STREAM_DISPATCH
PWSK_PROVIDER_DISPATCH = WSK_PROVIDER_DISPATCH
PWSK_CLIENT_DISPATCH = WSK_CLIENT_DISPATCH
PWSK_CLIENT_CONNECTION_DISPATCH = WSK_CLIENT_CONNECTION_DISPATCH
PWSK_CLIENT_LISTEN_DISPATCH = WSK_CLIENT_LISTEN_DISPATCH
PWSK_CLIENT_STREAM_DISPATCH = WSK_CLIENT_STREAM_DISPATCH
