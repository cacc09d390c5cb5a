"""wsk.h (and the ws2def.h / mswsockdef.h values it stands on): constants.

What it does: gives every constant a WSK client passes or receives, with the values of
Microsoft's headers.  Windows numbering is kept where it differs from Linux (``AF_INET6``
is 23, ``SOL_SOCKET`` is 0xFFFF); the provider translates at the Linux boundary.

What always holds: names and values are Microsoft's; nothing here has behaviour.
"""

from __future__ import annotations

import enum
import uuid
from typing import Final

__all__ = [
    "NS_ALL",
    "NS_DNS",
    "AI_PASSIVE",
    "AI_CANONNAME",
    "AI_NUMERICHOST",
    "AI_NUMERICSERV",
    "NI_NOFQDN",
    "NI_NUMERICHOST",
    "NI_NAMEREQD",
    "NI_NUMERICSERV",
    "NI_DGRAM",
    "NI_MAXHOST",
    "NI_MAXSERV",
    "AF_INET",
    "AF_INET6",
    "AF_UNSPEC",
    "INADDR_ANY",
    "INADDR_LOOPBACK",
    "IOC_IN",
    "IOC_INOUT",
    "IOC_OUT",
    "IOC_VOID",
    "IOC_WS2",
    "IOC_WSK",
    "IPPROTO_IP",
    "IPPROTO_IPV6",
    "IPPROTO_TCP",
    "IPPROTO_UDP",
    "IPV6_V6ONLY",
    "IP_PKTINFO",
    "IP_OPTIONS",
    "IP_ECN",
    "IP_RECVECN",
    "IPV6_ECN",
    "IPV6_RECVECN",
    "IPV6_RTHDR",
    "IPV6_PKTINFO",
    "IP_TTL",
    "IPV6_UNICAST_HOPS",
    "IP_MULTICAST_IF",
    "IP_MULTICAST_TTL",
    "IP_MULTICAST_LOOP",
    "IP_ADD_MEMBERSHIP",
    "IP_DROP_MEMBERSHIP",
    "IPV6_MULTICAST_IF",
    "IPV6_MULTICAST_HOPS",
    "IPV6_MULTICAST_LOOP",
    "IPV6_ADD_MEMBERSHIP",
    "IPV6_DROP_MEMBERSHIP",
    "IPV6_JOIN_GROUP",
    "IPV6_LEAVE_GROUP",
    "MSG_TRUNC",
    "MSG_CTRUNC",
    "MSG_BCAST",
    "MSG_MCAST",
    "MAKE_WSK_VERSION",
    "NPI_WSK_INTERFACE_ID",
    "SIO_WSK_QUERY_IDEAL_SEND_BACKLOG",
    "SIO_WSK_QUERY_INSPECT_ID",
    "SIO_WSK_QUERY_RECEIVE_BACKLOG",
    "SIO_WSK_REGISTER_EXTENSION",
    "SIO_WSK_SET_REMOTE_ADDRESS",
    "SIO_WSK_SET_SENDTO_ADDRESS",
    "SIO_WSK_SET_TCP_SILENT_MODE",
    "SOCK_DGRAM",
    "SOCK_RAW",
    "SOCK_STREAM",
    "SOL_SOCKET",
    "SO_BROADCAST",
    "SO_CONDITIONAL_ACCEPT",
    "SO_EXCLUSIVEADDRUSE",
    "SO_KEEPALIVE",
    "SO_LINGER",
    "SO_RCVBUF",
    "SO_REUSEADDR",
    "SO_SNDBUF",
    "SO_WSK_EVENT_CALLBACK",
    "SO_WSK_SECURITY",
    "TCP_KEEPALIVE",
    "TCP_KEEPCNT",
    "TCP_KEEPIDLE",
    "TCP_KEEPINTVL",
    "TCP_MAXRT",
    "TCP_NODELAY",
    "WSK_CACHE_SD",
    "WSK_CONTROL_SOCKET_TYPE",
    "WSK_EVENT_ACCEPT",
    "WSK_EVENT_DISABLE",
    "WSK_EVENT_DISCONNECT",
    "WSK_EVENT_RECEIVE",
    "WSK_EVENT_RECEIVE_FROM",
    "WSK_EVENT_SEND_BACKLOG",
    "WSK_FLAG_ABORTIVE",
    "WSK_FLAG_AT_DISPATCH_LEVEL",
    "WSK_FLAG_BASIC_SOCKET",
    "WSK_FLAG_CONNECTION_SOCKET",
    "WSK_FLAG_DATAGRAM_SOCKET",
    "WSK_FLAG_DRAIN",
    "WSK_FLAG_ENTIRE_MESSAGE",
    "WSK_FLAG_LISTEN_SOCKET",
    "WSK_FLAG_NODELAY",
    "WSK_FLAG_OOB",
    "WSK_FLAG_RELEASE_ASAP",
    "WSK_FLAG_STREAM_SOCKET",
    "WSK_FLAG_WAITALL",
    "WSK_INFINITE_WAIT",
    "WSK_INSPECT_ACTION",
    "WSK_MAJOR_VERSION",
    "WSK_MINOR_VERSION",
    "WSK_NO_WAIT",
    "WSK_RELEASE_SD",
    "WSK_SET_STATIC_EVENT_CALLBACKS",
    "WSK_SO_BASE",
    "WSK_TDI_BEHAVIOR",
    "WSK_TDI_BEHAVIOR_BYPASS_TDI",
    "WSK_TDI_DEVICENAME_MAPPING",
    "WSK_TRANSPORT_LIST_CHANGE",
    "WSK_TRANSPORT_LIST_QUERY",
    "WskGetOption",
    "WskInspectAccept",
    "WskInspectPend",
    "WskInspectReject",
    "WskIoctl",
    "WskSetOption",
]

# --- versions (wsk.h) ---------------------------------------------------------------


def MAKE_WSK_VERSION(Mj: int, Mn: int) -> int:
    """``((USHORT)((Mj) << 8) | (USHORT)((Mn) & 0xff))``."""
    return ((Mj << 8) & 0xFFFF) | (Mn & 0xFF)


def WSK_MAJOR_VERSION(V: int) -> int:
    """``((UCHAR)((V) >> 8))``."""
    return (V >> 8) & 0xFF


def WSK_MINOR_VERSION(V: int) -> int:
    """``((UCHAR)(V))``."""
    return V & 0xFF


#: The interface id of WSK's Network Programming Interface.
NPI_WSK_INTERFACE_ID: Final = uuid.UUID("2227e803-8d8b-11d4-abad-009027719e09")

WSK_NO_WAIT: Final = 0
WSK_INFINITE_WAIT: Final = 0xFFFFFFFF

# --- socket categories ----------------------------------------------------------------
WSK_FLAG_BASIC_SOCKET: Final = 0x00000000
WSK_FLAG_LISTEN_SOCKET: Final = 0x00000001
WSK_FLAG_CONNECTION_SOCKET: Final = 0x00000002
WSK_FLAG_DATAGRAM_SOCKET: Final = 0x00000004
WSK_FLAG_STREAM_SOCKET: Final = 0x00000008

# --- flags of calls and callbacks -----------------------------------------------------
WSK_FLAG_AT_DISPATCH_LEVEL: Final = 0x00000008
WSK_FLAG_RELEASE_ASAP: Final = 0x00000002
WSK_FLAG_ENTIRE_MESSAGE: Final = 0x00000004
WSK_FLAG_ABORTIVE: Final = 0x00000001
WSK_FLAG_OOB: Final = 0x00000001
WSK_FLAG_NODELAY: Final = 0x00000002
WSK_FLAG_WAITALL: Final = 0x00000002
WSK_FLAG_DRAIN: Final = 0x00000004

# --- event callbacks -------------------------------------------------------------------
WSK_EVENT_SEND_BACKLOG: Final = 0x00000010
WSK_EVENT_RECEIVE: Final = 0x00000040
WSK_EVENT_DISCONNECT: Final = 0x00000080
WSK_EVENT_RECEIVE_FROM: Final = 0x00000100
WSK_EVENT_ACCEPT: Final = 0x00000200
WSK_EVENT_DISABLE: Final = 0x80000000

# --- WskControlClient codes ------------------------------------------------------------
WSK_TRANSPORT_LIST_QUERY: Final = 2
WSK_TRANSPORT_LIST_CHANGE: Final = 3
WSK_CACHE_SD: Final = 4
WSK_RELEASE_SD: Final = 5
WSK_TDI_DEVICENAME_MAPPING: Final = 6
WSK_SET_STATIC_EVENT_CALLBACKS: Final = 7
WSK_TDI_BEHAVIOR: Final = 8
WSK_TDI_BEHAVIOR_BYPASS_TDI: Final = 0x00000001


class WSK_CONTROL_SOCKET_TYPE(enum.IntEnum):
    """``RequestType`` of WskControlSocket."""

    WskSetOption = 0
    WskGetOption = 1
    WskIoctl = 2
    WskControlMax = 3


WskSetOption: Final = WSK_CONTROL_SOCKET_TYPE.WskSetOption
WskGetOption: Final = WSK_CONTROL_SOCKET_TYPE.WskGetOption
WskIoctl: Final = WSK_CONTROL_SOCKET_TYPE.WskIoctl


class WSK_INSPECT_ACTION(enum.IntEnum):
    """What a conditional-accept listener decides about a connection request."""

    WskInspectReject = 0
    WskInspectAccept = 1
    WskInspectPend = 2
    WskInspectMax = 3


WskInspectReject: Final = WSK_INSPECT_ACTION.WskInspectReject
WskInspectAccept: Final = WSK_INSPECT_ACTION.WskInspectAccept
WskInspectPend: Final = WSK_INSPECT_ACTION.WskInspectPend

# --- socket options (ws2def.h / mswsockdef.h / wsk.h) -----------------------------------
SOL_SOCKET: Final = 0xFFFF
WSK_SO_BASE: Final = 0x4000
SO_WSK_SECURITY: Final = WSK_SO_BASE + 1
SO_WSK_EVENT_CALLBACK: Final = WSK_SO_BASE + 2
SO_REUSEADDR: Final = 0x0004
SO_KEEPALIVE: Final = 0x0008
SO_BROADCAST: Final = 0x0020
SO_LINGER: Final = 0x0080
SO_SNDBUF: Final = 0x1001
SO_RCVBUF: Final = 0x1002
SO_CONDITIONAL_ACCEPT: Final = 0x3002
SO_EXCLUSIVEADDRUSE: Final = (~SO_REUSEADDR) & 0xFFFFFFFF

# TCP level (ws2ipdef.h / mstcpip.h)
TCP_NODELAY: Final = 0x0001
TCP_KEEPALIVE: Final = 3
TCP_KEEPIDLE: Final = TCP_KEEPALIVE
TCP_MAXRT: Final = 5
TCP_KEEPCNT: Final = 16
TCP_KEEPINTVL: Final = 17

# IP level (ws2ipdef.h)
IP_OPTIONS: Final = 1
IP_TTL: Final = 4
IP_MULTICAST_IF: Final = 9
IP_MULTICAST_TTL: Final = 10
IP_MULTICAST_LOOP: Final = 11
IP_ADD_MEMBERSHIP: Final = 12
IP_DROP_MEMBERSHIP: Final = 13
IP_PKTINFO: Final = 19
IP_ECN: Final = 50
IP_RECVECN: Final = 50

# IPv6 level (ws2ipdef.h)
IPV6_UNICAST_HOPS: Final = 4
IPV6_MULTICAST_IF: Final = 9
IPV6_MULTICAST_HOPS: Final = 10
IPV6_MULTICAST_LOOP: Final = 11
IPV6_ADD_MEMBERSHIP: Final = 12
IPV6_JOIN_GROUP: Final = IPV6_ADD_MEMBERSHIP
IPV6_DROP_MEMBERSHIP: Final = 13
IPV6_LEAVE_GROUP: Final = IPV6_DROP_MEMBERSHIP
IPV6_PKTINFO: Final = 19
IPV6_V6ONLY: Final = 27
IPV6_RTHDR: Final = 32
IPV6_ECN: Final = 50
IPV6_RECVECN: Final = 50

# --- receive flags (ws2def.h): WskReceiveFrom's ControlFlags, WskReceiveFromEvent's Flags ---
MSG_TRUNC: Final = 0x0100
MSG_CTRUNC: Final = 0x0200
MSG_BCAST: Final = 0x0400
MSG_MCAST: Final = 0x0800

# --- IOCTLs ------------------------------------------------------------------------------
IOC_VOID: Final = 0x20000000
IOC_OUT: Final = 0x40000000
IOC_IN: Final = 0x80000000
IOC_INOUT: Final = IOC_IN | IOC_OUT
IOC_WS2: Final = 0x08000000
IOC_WSK: Final = IOC_WS2 | 0x07000000


def _WSAIO(x: int, y: int) -> int:
    return IOC_VOID | x | y


def _WSAIOR(x: int, y: int) -> int:
    return IOC_OUT | x | y


def _WSAIOW(x: int, y: int) -> int:
    return IOC_IN | x | y


def _WSAIORW(x: int, y: int) -> int:
    return IOC_INOUT | x | y


SIO_WSK_SET_REMOTE_ADDRESS: Final = _WSAIOW(IOC_WSK, 0x1)
SIO_WSK_REGISTER_EXTENSION: Final = _WSAIORW(IOC_WSK, 0x2)
SIO_WSK_QUERY_IDEAL_SEND_BACKLOG: Final = _WSAIOR(IOC_WSK, 0x3)
SIO_WSK_QUERY_RECEIVE_BACKLOG: Final = _WSAIOR(IOC_WSK, 0x4)
SIO_WSK_QUERY_INSPECT_ID: Final = _WSAIOR(IOC_WSK, 0x5)
SIO_WSK_SET_SENDTO_ADDRESS: Final = _WSAIOW(IOC_WSK, 0x6)
SIO_WSK_SET_TCP_SILENT_MODE: Final = _WSAIO(IOC_WSK, 0x7)

# --- address families, types, protocols (Windows numbering) ------------------------------
AF_UNSPEC: Final = 0
AF_INET: Final = 2
AF_INET6: Final = 23
SOCK_STREAM: Final = 1
SOCK_DGRAM: Final = 2
SOCK_RAW: Final = 3
IPPROTO_IP: Final = 0
IPPROTO_TCP: Final = 6
IPPROTO_UDP: Final = 17
IPPROTO_IPV6: Final = 41

INADDR_ANY: Final = 0x00000000
INADDR_LOOPBACK: Final = 0x7F000001

# --- name resolution (ws2def.h) -------------------------------------------------------------
NS_ALL: Final = 0
NS_DNS: Final = 12
AI_PASSIVE: Final = 0x01
AI_CANONNAME: Final = 0x02
AI_NUMERICHOST: Final = 0x04
AI_NUMERICSERV: Final = 0x08
NI_NOFQDN: Final = 0x01
NI_NUMERICHOST: Final = 0x02
NI_NAMEREQD: Final = 0x04
NI_NUMERICSERV: Final = 0x08
NI_DGRAM: Final = 0x10
NI_MAXHOST: Final = 1025
NI_MAXSERV: Final = 32
