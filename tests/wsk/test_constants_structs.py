"""wsk.h constants, dispatch-table layout and the address structures."""

from __future__ import annotations

import dataclasses
import ipaddress
import sys
import uuid
from typing import Any

import pytest

from pywsk.wsk import constants as c
from pywsk.wsk import dispatch as d
from pywsk.wsk import registration as r
from pywsk.wsk import structs as s
from pywsk.wsk.constants import (
    MAKE_WSK_VERSION,
    WSK_MAJOR_VERSION,
    WSK_MINOR_VERSION,
)
from pywsk.wsk.structs import (
    IN4ADDR_SETANY,
    IN4ADDR_SETLOOPBACK,
    IN6_ADDR,
    IN6ADDR_SETANY,
    IN6ADDR_SETLOOPBACK,
    IN_ADDR,
    SOCKADDR_IN,
    SOCKADDR_IN6,
    SOCKADDR_STORAGE,
    RtlUlongByteSwap,
    RtlUshortByteSwap,
    sockaddr_from_tuple,
)

# --- versions ----------------------------------------------------------------------------------


def test_make_wsk_version() -> None:
    assert MAKE_WSK_VERSION(1, 0) == 0x0100
    assert MAKE_WSK_VERSION(1, 1) == 0x0101
    assert MAKE_WSK_VERSION(2, 0) == 0x0200
    assert MAKE_WSK_VERSION(0x12, 0x34) == 0x1234
    # (USHORT)(Mj << 8) | (USHORT)(Mn & 0xff): both parts are truncated as in C.
    assert MAKE_WSK_VERSION(0x1FF, 0x1FF) == 0xFFFF
    assert MAKE_WSK_VERSION(0x100, 0x100) == 0x0000
    assert MAKE_WSK_VERSION(1, 0x102) == 0x0102


def test_major_and_minor_round_trip() -> None:
    for major in range(256):
        for minor in range(256):
            version = MAKE_WSK_VERSION(major, minor)
            assert 0 <= version <= 0xFFFF
            assert WSK_MAJOR_VERSION(version) == major
            assert WSK_MINOR_VERSION(version) == minor


def test_major_and_minor_are_uchar() -> None:
    assert WSK_MAJOR_VERSION(0x0100) == 1
    assert WSK_MINOR_VERSION(0x0100) == 0
    assert WSK_MINOR_VERSION(0x12345) == 0x45
    assert WSK_MAJOR_VERSION(0x12345) == 0x23


# --- constants ---------------------------------------------------------------------------------

#: Values from wsk.h / ws2def.h / mswsockdef.h / ws2ipdef.h, written out by hand.
HEADER_VALUES: dict[str, int] = {
    "IP_PKTINFO": 19,
    "IPV6_PKTINFO": 19,
    "IP_TTL": 4,
    "IPV6_UNICAST_HOPS": 4,
    "IP_ADD_MEMBERSHIP": 12,
    "IP_DROP_MEMBERSHIP": 13,
    "IPV6_ADD_MEMBERSHIP": 12,
    "IPV6_DROP_MEMBERSHIP": 13,
    "MSG_TRUNC": 0x0100,
    "MSG_CTRUNC": 0x0200,
    "MSG_BCAST": 0x0400,
    "MSG_MCAST": 0x0800,
    "WSK_NO_WAIT": 0,
    "WSK_INFINITE_WAIT": 0xFFFFFFFF,
    "WSK_FLAG_BASIC_SOCKET": 0x0,
    "WSK_FLAG_LISTEN_SOCKET": 0x1,
    "WSK_FLAG_CONNECTION_SOCKET": 0x2,
    "WSK_FLAG_DATAGRAM_SOCKET": 0x4,
    "WSK_FLAG_STREAM_SOCKET": 0x8,
    "WSK_FLAG_ABORTIVE": 0x1,
    "WSK_FLAG_OOB": 0x1,
    "WSK_FLAG_NODELAY": 0x2,
    "WSK_FLAG_WAITALL": 0x2,
    "WSK_FLAG_DRAIN": 0x4,
    "WSK_FLAG_RELEASE_ASAP": 0x2,
    "WSK_FLAG_ENTIRE_MESSAGE": 0x4,
    "WSK_FLAG_AT_DISPATCH_LEVEL": 0x8,
    "WSK_EVENT_SEND_BACKLOG": 0x10,
    "WSK_EVENT_RECEIVE": 0x40,
    "WSK_EVENT_DISCONNECT": 0x80,
    "WSK_EVENT_RECEIVE_FROM": 0x100,
    "WSK_EVENT_ACCEPT": 0x200,
    "WSK_EVENT_DISABLE": 0x80000000,
    "WSK_TRANSPORT_LIST_QUERY": 2,
    "WSK_TRANSPORT_LIST_CHANGE": 3,
    "WSK_CACHE_SD": 4,
    "WSK_RELEASE_SD": 5,
    "WSK_TDI_DEVICENAME_MAPPING": 6,
    "WSK_SET_STATIC_EVENT_CALLBACKS": 7,
    "WSK_TDI_BEHAVIOR": 8,
    "SOL_SOCKET": 0xFFFF,
    "WSK_SO_BASE": 0x4000,
    "SO_WSK_SECURITY": 0x4001,
    "SO_WSK_EVENT_CALLBACK": 0x4002,
    "SO_REUSEADDR": 0x0004,
    "SO_KEEPALIVE": 0x0008,
    "SO_BROADCAST": 0x0020,
    "SO_LINGER": 0x0080,
    "SO_SNDBUF": 0x1001,
    "SO_RCVBUF": 0x1002,
    "SO_CONDITIONAL_ACCEPT": 0x3002,
    "SO_EXCLUSIVEADDRUSE": 0xFFFFFFFB,
    "TCP_NODELAY": 0x0001,
    "IPV6_V6ONLY": 27,
    "IOC_VOID": 0x20000000,
    "IOC_OUT": 0x40000000,
    "IOC_IN": 0x80000000,
    "IOC_INOUT": 0xC0000000,
    "IOC_WS2": 0x08000000,
    "IOC_WSK": 0x0F000000,
    "SIO_WSK_SET_REMOTE_ADDRESS": 0x8F000001,
    "SIO_WSK_REGISTER_EXTENSION": 0xCF000002,
    "SIO_WSK_QUERY_IDEAL_SEND_BACKLOG": 0x4F000003,
    "SIO_WSK_QUERY_RECEIVE_BACKLOG": 0x4F000004,
    "SIO_WSK_QUERY_INSPECT_ID": 0x4F000005,
    "SIO_WSK_SET_SENDTO_ADDRESS": 0x8F000006,
    "SIO_WSK_SET_TCP_SILENT_MODE": 0x2F000007,
    "AF_UNSPEC": 0,
    "AF_INET": 2,
    "AF_INET6": 23,
    "SOCK_STREAM": 1,
    "SOCK_DGRAM": 2,
    "SOCK_RAW": 3,
    "IPPROTO_IP": 0,
    "IPPROTO_TCP": 6,
    "IPPROTO_UDP": 17,
    "IPPROTO_IPV6": 41,
    "INADDR_ANY": 0,
    "INADDR_LOOPBACK": 0x7F000001,
}


@pytest.mark.parametrize("name", sorted(HEADER_VALUES))
def test_constant_value(name: str) -> None:
    assert getattr(c, name) == HEADER_VALUES[name]
    assert name in c.__all__


def test_ioctl_helpers() -> None:
    assert c._WSAIO(c.IOC_WSK, 7) == 0x2F000007
    assert c._WSAIOR(c.IOC_WSK, 3) == 0x4F000003
    assert c._WSAIOW(c.IOC_WSK, 1) == 0x8F000001
    assert c._WSAIORW(c.IOC_WSK, 2) == 0xCF000002


def test_control_and_inspect_enums() -> None:
    assert (c.WskSetOption, c.WskGetOption, c.WskIoctl) == (0, 1, 2)
    assert int(c.WSK_CONTROL_SOCKET_TYPE.WskControlMax) == 3
    assert (c.WskInspectReject, c.WskInspectAccept, c.WskInspectPend) == (0, 1, 2)
    assert int(c.WSK_INSPECT_ACTION.WskInspectMax) == 3


def test_npi_wsk_interface_id() -> None:
    expected = uuid.UUID("2227E803-8D8B-11D4-ABAD-009027719E09")
    assert expected == c.NPI_WSK_INTERFACE_ID


def test_npi_wsk_interface_id_family_prefix() -> None:
    # The part of the identifier that is right today (Data1..Data3 and the first two bytes).
    assert str(c.NPI_WSK_INTERFACE_ID).startswith("2227e803-8d8b-11d4-abad-")


# --- dispatch tables -----------------------------------------------------------------------------

#: Member order of each table, as in wsk.h (the order is ABI in C).
TABLE_ORDER: dict[type[Any], list[str]] = {
    d.WSK_PROVIDER_BASIC_DISPATCH: ["WskControlSocket", "WskCloseSocket"],
    d.WSK_PROVIDER_LISTEN_DISPATCH: [
        "Basic",
        "WskBind",
        "WskAccept",
        "WskInspectComplete",
        "WskGetLocalAddress",
    ],
    d.WSK_PROVIDER_CONNECTION_DISPATCH: [
        "Basic",
        "WskBind",
        "WskConnect",
        "WskGetLocalAddress",
        "WskGetRemoteAddress",
        "WskSend",
        "WskReceive",
        "WskDisconnect",
        "WskRelease",
        "WskConnectEx",
        "WskSendEx",
        "WskReceiveEx",
    ],
    d.WSK_PROVIDER_STREAM_DISPATCH: [
        "Basic",
        "WskBind",
        "WskAccept",
        "WskConnect",
        "WskListen",
        "WskSend",
        "WskReceive",
        "WskDisconnect",
        "WskRelease",
        "WskGetLocalAddress",
        "WskGetRemoteAddress",
        "WskConnectEx",
        "WskSendEx",
        "WskReceiveEx",
    ],
    d.WSK_PROVIDER_DISPATCH: [
        "Version",
        "Reserved",
        "WskSocket",
        "WskSocketConnect",
        "WskControlClient",
        "WskGetAddressInfo",
        "WskFreeAddressInfo",
        "WskGetNameInfo",
    ],
    d.WSK_CLIENT_DISPATCH: ["Version", "Reserved", "WskClientEvent"],
    d.WSK_CLIENT_CONNECTION_DISPATCH: [
        "WskReceiveEvent",
        "WskDisconnectEvent",
        "WskSendBacklogEvent",
    ],
    d.WSK_CLIENT_LISTEN_DISPATCH: ["WskAcceptEvent", "WskInspectEvent", "WskAbortEvent"],
    d.WSK_CLIENT_STREAM_DISPATCH: ["Listen", "Connect"],
    d.WSK_PROVIDER_DATAGRAM_DISPATCH: [
        "Basic",
        "WskBind",
        "WskSendTo",
        "WskReceiveFrom",
        "WskRelease",
        "WskGetLocalAddress",
        "WskSendMessages",
    ],
    d.WSK_CLIENT_DATAGRAM_DISPATCH: ["WskReceiveFromEvent"],
    s.WSK_BUF_LIST: ["Next", "Buffer"],
    s.WSK_DATAGRAM_INDICATION: [
        "Next",
        "Buffer",
        "ControlInfo",
        "ControlInfoLength",
        "RemoteAddress",
    ],
    s.WSK_BUF: ["Mdl", "Offset", "Length"],
    s.WSK_DATA_INDICATION: ["Next", "Buffer"],
    s.WSK_INSPECT_ID: ["Key", "SerialNumber"],
    s.WSK_EVENT_CALLBACK_CONTROL: ["NpiId", "EventMask"],
    s.WSK_PROVIDER_CHARACTERISTICS: ["HighestVersion", "LowestVersion"],
    s.WSK_TRANSPORT: ["Version", "SocketType", "Protocol", "AddressFamily", "ProviderId"],
    r.WSK_CLIENT_NPI: ["ClientContext", "Dispatch"],
    r.WSK_PROVIDER_NPI: ["Client", "Dispatch"],
}


@pytest.mark.parametrize("table", list(TABLE_ORDER), ids=lambda t: t.__name__)
def test_member_order(table: type[Any]) -> None:
    assert [f.name for f in dataclasses.fields(table)] == TABLE_ORDER[table]


def fn(name: str) -> Any:
    def function(*args: Any) -> int:
        return 0

    function.__name__ = name
    return function


def make_table(table: type[Any]) -> Any:
    basic = d.WSK_PROVIDER_BASIC_DISPATCH(fn("WskControlSocket"), fn("WskCloseSocket"))
    values = {f.name: basic if f.name == "Basic" else fn(f.name) for f in dataclasses.fields(table)}
    return table(**values)


PROVIDER_SOCKET_TABLES = [
    d.WSK_PROVIDER_LISTEN_DISPATCH,
    d.WSK_PROVIDER_CONNECTION_DISPATCH,
    d.WSK_PROVIDER_STREAM_DISPATCH,
]


@pytest.mark.parametrize("table", PROVIDER_SOCKET_TABLES, ids=lambda t: t.__name__)
def test_basic_members_reach_through(table: type[Any]) -> None:
    dispatch = make_table(table)
    assert dispatch.WskCloseSocket is dispatch.Basic.WskCloseSocket
    assert dispatch.WskControlSocket is dispatch.Basic.WskControlSocket
    assert dispatch.WskCloseSocket.__name__ == "WskCloseSocket"


@pytest.mark.parametrize(
    "table", [*PROVIDER_SOCKET_TABLES, d.WSK_PROVIDER_BASIC_DISPATCH], ids=lambda t: t.__name__
)
def test_provider_tables_are_frozen(table: type[Any]) -> None:
    dispatch = make_table(table)
    first = dataclasses.fields(table)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(dispatch, first, fn("patched"))


def test_the_provider_connection_table() -> None:
    from pywsk.provider import subsystem

    table = subsystem.connection_dispatch
    assert isinstance(table, d.WSK_PROVIDER_CONNECTION_DISPATCH)
    assert table.WskCloseSocket is table.Basic.WskCloseSocket
    assert table.WskControlSocket is table.Basic.WskControlSocket
    assert all(callable(getattr(table, f.name)) for f in dataclasses.fields(table)[1:])
    assert subsystem.provider_dispatch.Version == MAKE_WSK_VERSION(1, 0)


def test_pointer_aliases() -> None:
    assert d.PWSK_PROVIDER_CONNECTION_DISPATCH is d.WSK_PROVIDER_CONNECTION_DISPATCH
    assert d.PWSK_CLIENT_DISPATCH is d.WSK_CLIENT_DISPATCH
    assert s.PWSK_BUF is s.WSK_BUF
    assert s.PWSK_SOCKET is s.WSK_SOCKET
    assert r.PWSK_REGISTRATION is r.WSK_REGISTRATION


def test_wsk_socket_has_only_dispatch() -> None:
    table = make_table(d.WSK_PROVIDER_CONNECTION_DISPATCH)
    sock = s.WSK_SOCKET(table)
    assert sock.Dispatch is table
    with pytest.raises(AttributeError):
        sock.Other = 1  # type: ignore[attr-defined]


def test_out_parameters() -> None:
    size = s.PSIZE_T()
    assert size.value == 0
    size.value = 12
    assert repr(size) == "PSIZE_T(12)"
    assert s.PULONG(3).value == 3
    assert isinstance(s.PULONG(), s.PSIZE_T)


# --- byte order ----------------------------------------------------------------------------------


def test_byte_swaps() -> None:
    assert RtlUshortByteSwap(0x1234) == 0x3412
    assert RtlUshortByteSwap(0x00FF) == 0xFF00
    assert RtlUlongByteSwap(0x12345678) == 0x78563412
    assert RtlUlongByteSwap(0x7F000001) == 0x0100007F
    for value in [0, 1, 0x80, 0xABCD, 0xFFFF]:
        assert RtlUshortByteSwap(RtlUshortByteSwap(value)) == value
    for value in [0, 1, 0x80000000, 0xDEADBEEF, 0xFFFFFFFF]:
        assert RtlUlongByteSwap(RtlUlongByteSwap(value)) == value


def network_order_port(port: int) -> int:
    """The USHORT C code stores in sin_port: htons(port) read in the host's byte order."""
    return int.from_bytes(port.to_bytes(2, "big"), sys.byteorder)


@pytest.mark.parametrize("port", [0, 1, 80, 0x1234, 5000, 65535])
def test_sockaddr_in_round_trip(port: int) -> None:
    addr = sockaddr_from_tuple(("192.0.2.7", port))
    assert isinstance(addr, SOCKADDR_IN)
    assert addr.sin_family == c.AF_INET == addr.sa_family
    # The in-memory bytes of sin_port are the port in network order.
    assert addr.sin_port.to_bytes(2, sys.byteorder) == port.to_bytes(2, "big")
    assert addr.sin_port == network_order_port(port)
    if sys.byteorder == "little":
        assert addr.sin_port == RtlUshortByteSwap(port)
    assert addr.port == port
    assert addr.sin_addr.s_b == bytes([192, 0, 2, 7])
    assert str(addr.sin_addr) == "192.0.2.7"
    assert addr.to_tuple() == ("192.0.2.7", port)
    assert sockaddr_from_tuple(addr.to_tuple()) == addr


def test_sockaddr_in_filled_field_by_field() -> None:
    """As C code does: sin_port = RtlUshortByteSwap(port), s_addr = RtlUlongByteSwap(INADDR_LOOPBACK)."""
    addr = SOCKADDR_IN()
    assert (addr.sin_family, addr.sin_port, addr.sin_addr) == (c.AF_INET, 0, IN_ADDR())
    addr.sin_port = network_order_port(8080)
    addr.sin_addr.s_addr = int.from_bytes(
        c.INADDR_LOOPBACK.to_bytes(4, "big"), sys.byteorder
    )  # htonl(INADDR_LOOPBACK)
    assert addr.to_tuple() == ("127.0.0.1", 8080)
    if sys.byteorder == "little":
        assert addr.sin_addr.s_addr == RtlUlongByteSwap(c.INADDR_LOOPBACK)


def test_in_addr_s_addr_is_network_order_in_memory() -> None:
    address = IN_ADDR(bytes([10, 1, 2, 3]))
    assert address.s_addr.to_bytes(4, sys.byteorder) == bytes([10, 1, 2, 3])
    address.s_addr = int.from_bytes(bytes([172, 16, 0, 1]), sys.byteorder)
    assert str(address) == "172.16.0.1"
    assert address == IN_ADDR(bytes([172, 16, 0, 1]))
    assert hash(address) == hash(IN_ADDR(bytes([172, 16, 0, 1])))


@pytest.mark.parametrize("bad", [b"", b"\0\0\0", b"\0" * 5])
def test_in_addr_length(bad: bytes) -> None:
    with pytest.raises(ValueError):
        IN_ADDR(bad)


@pytest.mark.parametrize("bad", [b"", b"\0" * 15, b"\0" * 17])
def test_in6_addr_length(bad: bytes) -> None:
    with pytest.raises(ValueError):
        IN6_ADDR(bad)


@pytest.mark.parametrize("host", ["::1", "2001:db8::5", "::ffff:192.0.2.1", "fe80::1"])
@pytest.mark.parametrize("port", [0, 443, 0xABCD])
def test_sockaddr_in6_round_trip(host: str, port: int) -> None:
    addr = sockaddr_from_tuple((host, port))
    assert isinstance(addr, SOCKADDR_IN6)
    assert addr.sin6_family == c.AF_INET6 == 23 == addr.sa_family
    assert addr.sin6_port.to_bytes(2, sys.byteorder) == port.to_bytes(2, "big")
    assert addr.port == port
    assert addr.sin6_addr.Byte == ipaddress.IPv6Address(host).packed
    assert addr.to_tuple() == (str(ipaddress.IPv6Address(host)), port, 0, 0)
    assert sockaddr_from_tuple(addr.to_tuple()) == addr


def test_sockaddr_in6_flow_and_scope() -> None:
    addr = sockaddr_from_tuple(("fe80::1%2", 80, 7, 2))
    assert isinstance(addr, SOCKADDR_IN6)
    assert (addr.sin6_flowinfo, addr.sin6_scope_id) == (7, 2)
    assert addr.to_tuple() == ("fe80::1", 80, 7, 2)


def test_set_from_tuple_refuses_the_other_family() -> None:
    with pytest.raises(ValueError):
        SOCKADDR_IN().set_from_tuple(c.AF_INET6, ("::1", 1))
    with pytest.raises(ValueError):
        SOCKADDR_IN6().set_from_tuple(c.AF_INET, ("127.0.0.1", 1))


def test_sockaddrs_compare_by_content_and_are_unhashable() -> None:
    assert sockaddr_from_tuple(("127.0.0.1", 1)) == sockaddr_from_tuple(("127.0.0.1", 1))
    assert sockaddr_from_tuple(("127.0.0.1", 1)) != sockaddr_from_tuple(("127.0.0.1", 2))
    assert sockaddr_from_tuple(("::1", 1)) != sockaddr_from_tuple(("127.0.0.1", 1))
    with pytest.raises(TypeError):
        hash(SOCKADDR_IN())
    with pytest.raises(TypeError):
        hash(SOCKADDR_IN6())


def test_in4addr_macros() -> None:
    addr = sockaddr_from_tuple(("192.0.2.1", 99))
    assert isinstance(addr, SOCKADDR_IN)
    IN4ADDR_SETLOOPBACK(addr)
    assert (addr.sin_family, addr.sin_port) == (c.AF_INET, 0)
    assert addr.sin_addr.s_b == b"\x7f\x00\x00\x01"
    assert addr.to_tuple() == ("127.0.0.1", 0)
    IN4ADDR_SETANY(addr)
    assert addr.to_tuple() == ("0.0.0.0", 0)
    assert addr.sin_addr.s_addr == c.INADDR_ANY


def test_in6addr_macros() -> None:
    addr = sockaddr_from_tuple(("2001:db8::1", 99, 5, 6))
    assert isinstance(addr, SOCKADDR_IN6)
    IN6ADDR_SETLOOPBACK(addr)
    assert addr.to_tuple() == ("::1", 0, 0, 0)
    assert addr.sin6_family == c.AF_INET6
    IN6ADDR_SETANY(addr)
    assert addr.to_tuple() == ("::", 0, 0, 0)
    assert addr.sin6_addr.Byte == bytes(16)


def test_sockaddr_storage_empty() -> None:
    storage = SOCKADDR_STORAGE()
    assert storage.ss_family == c.AF_UNSPEC == storage.sa_family
    with pytest.raises(ValueError):
        storage.to_tuple()
    with pytest.raises(ValueError):
        _ = storage.as_in
    with pytest.raises(ValueError):
        _ = storage.as_in6


def test_sockaddr_storage_holds_ipv4() -> None:
    storage = SOCKADDR_STORAGE()
    storage.set_from_tuple(c.AF_INET, ("127.0.0.1", 4242))
    assert storage.ss_family == c.AF_INET == storage.sa_family
    assert storage.as_in == sockaddr_from_tuple(("127.0.0.1", 4242))
    assert storage.as_in.sin_port == network_order_port(4242)
    assert storage.to_tuple() == ("127.0.0.1", 4242)
    with pytest.raises(ValueError):
        _ = storage.as_in6


def test_sockaddr_storage_holds_ipv6_and_can_be_refilled() -> None:
    storage = SOCKADDR_STORAGE()
    storage.set_from_tuple(c.AF_INET, ("127.0.0.1", 1))
    storage.set_from_tuple(c.AF_INET6, ("::1", 4242, 0, 0))
    assert storage.ss_family == c.AF_INET6
    assert storage.as_in6.port == 4242
    assert storage.to_tuple() == ("::1", 4242, 0, 0)
    with pytest.raises(ValueError):
        _ = storage.as_in


def test_sockaddr_from_tuple_picks_the_family() -> None:
    assert isinstance(sockaddr_from_tuple(("10.0.0.1", 1)), SOCKADDR_IN)
    assert isinstance(sockaddr_from_tuple(("::", 1)), SOCKADDR_IN6)
    with pytest.raises(ValueError):
        sockaddr_from_tuple(("not-an-address", 1))


def test_wsk_buf_defaults_and_identity() -> None:
    buf = s.WSK_BUF()
    assert (buf.Mdl, buf.Offset, buf.Length) == (None, 0, 0)
    # Compared by identity, as pointers are.
    assert s.WSK_BUF() != s.WSK_BUF()
    indication = s.WSK_DATA_INDICATION()
    assert indication.Next is None
    assert isinstance(indication.Buffer, s.WSK_BUF)
    assert indication.Buffer is not s.WSK_DATA_INDICATION().Buffer
