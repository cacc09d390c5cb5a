"""Datagram control information and options: Windows layout in, Linux ancillary data out.

What it does: :func:`parse_send_control` turns a WskSendTo / WskSendMessages ControlInfo
buffer (CMSGHDR objects in Windows layout, :mod:`pywsk.wsk.cmsg`) into the ancillary data
``sendmsg`` takes: IN_PKTINFO becomes Linux's ``in_pktinfo`` (its address is the source,
``ipi_spec_dst``), IN6_PKTINFO ``in6_pktinfo``.  :func:`receive_control` turns the
ancillary data ``recvmsg`` returned into Windows layout (the datagram's destination in
IN_PKTINFO / IN6_PKTINFO; the ECN codepoint in IP_ECN / IPV6_ECN, from the TOS / traffic
class Linux reports).  :data:`DATAGRAM_OPTIONS` maps the datagram options of
WskControlSocket to Linux.

:class:`Datagram`, :class:`SendOp` and :class:`ReceiveOp` are what the datagram socket
keeps: a datagram read from the kernel, a send and a receive not yet complete.

What it refuses: a ControlInfoLength beyond the buffer, a header whose cmsg_len is shorter
than a header or runs past ControlInfoLength, a PKTINFO of the wrong size or family
(STATUS_INVALID_PARAMETER); a well-formed object of a kind Linux cannot send
(STATUS_NOT_SUPPORTED).

What always holds: nothing is written outside the buffer and length the caller gave.
"""

from __future__ import annotations

import ctypes
import socket
import struct
from typing import Any, Final

from ..core.connection import OpKind
from ..mechanics import datagram as udp
from ..mechanics import linux
from ..mechanics.datagram import LINUX_IP_PKTINFO
from ..nt.irp import IRP
from ..nt.status import NTSTATUS
from ..wsk.cmsg import (
    CMSGHDR,
    IN6_PKTINFO,
    IN_PKTINFO,
    WSA_CMSG_LEN,
    WSA_CMSG_SPACE,
    WSA_CMSGHDR_ALIGN,
)
from ..wsk.constants import (
    AF_INET,
    AF_INET6,
    IP_ADD_MEMBERSHIP,
    IP_DROP_MEMBERSHIP,
    IP_ECN,
    IP_MULTICAST_IF,
    IP_MULTICAST_LOOP,
    IP_MULTICAST_TTL,
    IP_PKTINFO,
    IP_RECVECN,
    IP_TTL,
    IPPROTO_IP,
    IPPROTO_IPV6,
    IPV6_ADD_MEMBERSHIP,
    IPV6_DROP_MEMBERSHIP,
    IPV6_ECN,
    IPV6_MULTICAST_HOPS,
    IPV6_MULTICAST_IF,
    IPV6_MULTICAST_LOOP,
    IPV6_PKTINFO,
    IPV6_RECVECN,
    IPV6_UNICAST_HOPS,
    MSG_CTRUNC,
    SO_BROADCAST,
    SOL_SOCKET,
    WskGetOption,
    WskSetOption,
)
from ..wsk.structs import SOCKADDR
from .base import Op, ProviderSocket, read_in

__all__ = [
    "Datagram",
    "ReceiveOp",
    "SendOp",
    "datagram_option",
    "destination",
    "pktinfo_option",
    "receive_arguments_ok",
    "DATAGRAM_OPTIONS",
    "MEMBERSHIP",
    "Ancillary",
    "parse_send_control",
    "receive_control",
]

Ancillary = list[tuple[int, int, bytes]]

_HEADER: Final = CMSGHDR.SIZE
_DATA: Final = WSA_CMSG_LEN(0)

#: (Windows level, option) -> (Linux level, Linux option, family it needs or 0).  Values are
#: ULONGs both ways.  IP_PKTINFO / IPV6_PKTINFO turn on reporting the destination.
DATAGRAM_OPTIONS: Final[dict[tuple[int, int], tuple[int, int, int]]] = {
    (SOL_SOCKET, SO_BROADCAST): (socket.SOL_SOCKET, socket.SO_BROADCAST, 0),
    (IPPROTO_IP, IP_TTL): (socket.IPPROTO_IP, socket.IP_TTL, AF_INET),
    (IPPROTO_IP, IP_MULTICAST_TTL): (socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, AF_INET),
    (IPPROTO_IP, IP_MULTICAST_LOOP): (socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, AF_INET),
    (IPPROTO_IP, IP_PKTINFO): (socket.IPPROTO_IP, LINUX_IP_PKTINFO, 0),
    # ECN: Linux reports the whole TOS / traffic class; the provider keeps its ECN bits.
    (IPPROTO_IP, IP_RECVECN): (socket.IPPROTO_IP, socket.IP_RECVTOS, 0),
    (IPPROTO_IPV6, IPV6_RECVECN): (socket.IPPROTO_IPV6, socket.IPV6_RECVTCLASS, AF_INET6),
    (IPPROTO_IPV6, IPV6_UNICAST_HOPS): (socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, AF_INET6),
    (IPPROTO_IPV6, IPV6_MULTICAST_HOPS): (
        socket.IPPROTO_IPV6,
        socket.IPV6_MULTICAST_HOPS,
        AF_INET6,
    ),
    (IPPROTO_IPV6, IPV6_MULTICAST_LOOP): (
        socket.IPPROTO_IPV6,
        socket.IPV6_MULTICAST_LOOP,
        AF_INET6,
    ),
    (IPPROTO_IPV6, IPV6_MULTICAST_IF): (socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, AF_INET6),
    (IPPROTO_IPV6, IPV6_PKTINFO): (socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, AF_INET6),
}

#: Options whose input is a structure passed through unchanged (IP_MREQ / IPV6_MREQ and
#: IP_MULTICAST_IF's IN_ADDR have Linux's layout): option -> (Linux level, name, size, family).
MEMBERSHIP: Final[dict[tuple[int, int], tuple[int, int, int, int]]] = {
    (IPPROTO_IP, IP_ADD_MEMBERSHIP): (socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, 8, AF_INET),
    (IPPROTO_IP, IP_DROP_MEMBERSHIP): (socket.IPPROTO_IP, socket.IP_DROP_MEMBERSHIP, 8, AF_INET),
    (IPPROTO_IP, IP_MULTICAST_IF): (socket.IPPROTO_IP, socket.IP_MULTICAST_IF, 4, AF_INET),
    (IPPROTO_IPV6, IPV6_ADD_MEMBERSHIP): (
        socket.IPPROTO_IPV6,
        socket.IPV6_JOIN_GROUP,
        20,
        AF_INET6,
    ),
    (IPPROTO_IPV6, IPV6_DROP_MEMBERSHIP): (
        socket.IPPROTO_IPV6,
        socket.IPV6_LEAVE_GROUP,
        20,
        AF_INET6,
    ),
}


class Datagram:
    """One datagram read from the kernel: payload (our own copy), Windows control info,
    the sender as a raw Linux sockaddr, flags."""

    __slots__ = ("control", "data", "destination", "flags", "sender")

    def __init__(
        self, data: Any, control: bytes, sender: bytes, flags: int, destination: int = 0
    ) -> None:
        self.data = data
        self.control = control
        self.sender = sender
        self.flags = flags  # Linux's msg_flags (MSG_TRUNC)
        self.destination = destination  # Windows' MSG_BCAST / MSG_MCAST


class SendOp(Op):
    """A WskSendTo (one datagram) or WskSendMessages (several) not yet all sent."""

    __slots__ = ("address", "ancillary", "datagrams", "index", "plan")

    def __init__(
        self,
        owner: ProviderSocket,
        irp: IRP,
        datagrams: list[list[memoryview]],
        address: tuple[Any, ...],
        ancillary: Ancillary,
    ) -> None:
        super().__init__(owner, OpKind.SEND, irp, [])
        self.datagrams = datagrams
        self.address = address
        self.ancillary = ancillary
        self.index = 0  # the next datagram to send
        self.plan = udp.batch_plan(datagrams, address, owner.sock.family, ancillary)


class ReceiveOp(Op):
    """A pending WskReceiveFrom and its out-parameters."""

    __slots__ = ("control_flags", "control_info", "control_length", "remote")

    def __init__(
        self,
        owner: ProviderSocket,
        irp: IRP,
        views: list[memoryview],
        remote: SOCKADDR | None,
        control_length: Any,
        control_info: Any,
        control_flags: Any,
    ) -> None:
        super().__init__(owner, OpKind.RECEIVE, irp, views)
        self.remote = remote
        self.control_length = control_length
        self.control_info = control_info
        self.control_flags = control_flags


def control_bytes(ControlInfo: Any, length: int) -> memoryview | int:
    """The first ``length`` bytes of a ControlInfo buffer (or of a CMSGHDR's buffer from its
    offset), or the status refusing it."""
    if length == 0:
        return memoryview(b"")
    if ControlInfo is None or length < 0:
        return NTSTATUS.STATUS_INVALID_PARAMETER
    try:
        if isinstance(ControlInfo, CMSGHDR):
            view = ControlInfo.buffer[ControlInfo.offset :]
        else:
            view = memoryview(ControlInfo).cast("B")
    except (TypeError, ValueError):
        return NTSTATUS.STATUS_INVALID_PARAMETER
    if length > len(view):
        return NTSTATUS.STATUS_INVALID_PARAMETER
    return view[:length]


def parse_send_control(family: int, ControlInfoLength: int, ControlInfo: Any) -> Ancillary | int:
    """ControlInfo (Windows layout) -> Linux ancillary data, or the status refusing it."""
    raw = control_bytes(ControlInfo, ControlInfoLength)
    if isinstance(raw, int):
        return raw
    out: Ancillary = []
    offset = 0
    while offset + _HEADER <= len(raw):
        cmsg_len, level, kind = struct.unpack_from("<Qii", raw, offset)
        if cmsg_len < _DATA or offset + cmsg_len > len(raw):
            return NTSTATUS.STATUS_INVALID_PARAMETER  # a malformed CMSGHDR
        data = bytes(raw[offset + _DATA : offset + cmsg_len])
        if not data:
            pass  # an empty object (WireGuard's driver appends one after PKTINFO): no effect
        elif (level, kind) == (IPPROTO_IP, IP_PKTINFO):
            if family != AF_INET or len(data) != ctypes.sizeof(IN_PKTINFO):
                return NTSTATUS.STATUS_INVALID_PARAMETER
            info = IN_PKTINFO.from_buffer_copy(data)
            # Linux: struct in_pktinfo { int ipi_ifindex; in_addr ipi_spec_dst; in_addr
            # ipi_addr; } - the source address goes in ipi_spec_dst.
            linux = struct.pack("=i4s4s", info.ipi_ifindex, bytes(info.ipi_addr), b"\0" * 4)
            out.append((socket.IPPROTO_IP, LINUX_IP_PKTINFO, linux))
        elif (level, kind) == (IPPROTO_IPV6, IPV6_PKTINFO):
            if family != AF_INET6 or len(data) != ctypes.sizeof(IN6_PKTINFO):
                return NTSTATUS.STATUS_INVALID_PARAMETER
            info6 = IN6_PKTINFO.from_buffer_copy(data)
            linux = bytes(info6.ipi6_addr) + struct.pack("=i", info6.ipi6_ifindex)
            out.append((socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, linux))
        elif (level, kind) in ((IPPROTO_IP, IP_ECN), (IPPROTO_IPV6, IPV6_ECN)):
            # An INT codepoint (0..3) -> Linux IP_TOS / IPV6_TCLASS (the ECN bits only).
            if len(data) != 4 or not 0 <= int.from_bytes(data, "little") <= 3:
                return NTSTATUS.STATUS_INVALID_PARAMETER
            if (level == IPPROTO_IP) != (family == AF_INET):
                return NTSTATUS.STATUS_INVALID_PARAMETER
            linux_kind = socket.IP_TOS if level == IPPROTO_IP else socket.IPV6_TCLASS
            out.append((level, linux_kind, struct.pack("=i", int.from_bytes(data, "little"))))
        else:
            return NTSTATUS.STATUS_NOT_SUPPORTED
        offset += WSA_CMSGHDR_ALIGN(cmsg_len)
    return out


def receive_control(ancdata: list[tuple[int, int, bytes]], pktinfo: bool = True) -> bytes:
    """Linux ancillary data of a received datagram -> CMSGHDR objects in Windows layout
    (the PKTINFO ones only if ``pktinfo``: the client switched them on)."""
    out = bytearray()
    for level, kind, data in ancdata:
        if not pktinfo and (level, kind) in _LINUX_PKTINFO:
            continue
        if (level, kind) == (socket.IPPROTO_IP, LINUX_IP_PKTINFO) and len(data) >= 12:
            ifindex, _spec, destination = struct.unpack_from("=i4s4s", data)
            body = bytes(IN_PKTINFO((ctypes.c_ubyte * 4)(*destination), ifindex))
            out += _object(IPPROTO_IP, IP_PKTINFO, body)
        elif (level, kind) == (socket.IPPROTO_IPV6, socket.IPV6_PKTINFO) and len(data) >= 20:
            (ifindex,) = struct.unpack_from("=i", data, 16)
            body = bytes(IN6_PKTINFO((ctypes.c_ubyte * 16)(*data[:16]), ifindex))
            out += _object(IPPROTO_IPV6, IPV6_PKTINFO, body)
        elif (level, kind) == (socket.IPPROTO_IP, socket.IP_TOS) and data:
            out += _object(IPPROTO_IP, IP_ECN, struct.pack("<i", data[0] & 3))
        elif (level, kind) == (socket.IPPROTO_IPV6, socket.IPV6_TCLASS) and len(data) >= 4:
            (tclass,) = struct.unpack_from("=i", data)
            out += _object(IPPROTO_IPV6, IPV6_ECN, struct.pack("<i", tclass & 3))
    return bytes(out)


_LINUX_PKTINFO: Final = {
    (socket.IPPROTO_IP, LINUX_IP_PKTINFO),
    (socket.IPPROTO_IPV6, socket.IPV6_PKTINFO),
}
#: IP_PKTINFO / IPV6_PKTINFO: the provider always asks Linux for the destination (for
#: MSG_BCAST / MSG_MCAST); the option only says whether the client is given it.
PKTINFO_OPTIONS: Final = {(IPPROTO_IP, IP_PKTINFO): 0, (IPPROTO_IPV6, IPV6_PKTINFO): AF_INET6}


def pktinfo_option(
    family: int, kind: int, code: int, level: int, in_size: int, in_buf: Any, current: bool
) -> tuple[int, bool] | None:
    """IP_PKTINFO / IPV6_PKTINFO of WskControlSocket: (status, the option's value after the
    call - ``current`` for a get or a refusal); None if it is not one of them."""
    needs = PKTINFO_OPTIONS.get((level, code))
    if needs is None or kind not in (WskSetOption, WskGetOption):
        return None
    if needs and needs != family:
        return NTSTATUS.STATUS_INVALID_PARAMETER, current
    if kind == WskGetOption:
        return NTSTATUS.STATUS_SUCCESS, current
    value = read_in(in_buf, in_size)
    if value is None:
        return NTSTATUS.STATUS_INVALID_PARAMETER, current
    return NTSTATUS.STATUS_SUCCESS, bool(value)


def _object(level: int, kind: int, body: bytes) -> bytes:
    header = struct.pack("<Qii", WSA_CMSG_LEN(len(body)), level, kind)
    return (header + body).ljust(WSA_CMSG_SPACE(len(body)), b"\0")


def deliver_control(control: bytes, ControlLength: Any, ControlInfo: Any) -> int:
    """Copy whole control objects into the client's ControlInfo (at most
    ``ControlLength.value`` bytes), set ControlLength to the bytes written; returns
    MSG_CTRUNC if some did not fit, else 0."""
    if ControlLength is None:
        return MSG_CTRUNC if control else 0
    room = int(ControlLength.value)
    target = control_bytes(ControlInfo, room) if ControlInfo is not None else memoryview(b"")
    if isinstance(target, int) or target.readonly:
        target = memoryview(b"")
    written = 0
    offset = 0
    truncated = 0
    while offset < len(control):
        (cmsg_len,) = struct.unpack_from("<Q", control, offset)
        step = WSA_CMSGHDR_ALIGN(cmsg_len)
        if written + cmsg_len > len(target):
            truncated = MSG_CTRUNC
            break
        size = min(step, len(target) - written)
        target[written : written + size] = control[offset : offset + size]
        written += size
        offset += step
    ControlLength.value = written
    return truncated


def datagram_option(
    sock: socket.socket, family: int, kind: int, code: int, level: int, in_size: int, in_buf: Any
) -> tuple[int, int] | None:
    """A datagram option of WskControlSocket: (status, value got), or None if it is not one."""
    try:
        if (level, code) in MEMBERSHIP and kind == WskSetOption:
            linux_level, name, size, needs = MEMBERSHIP[(level, code)]
            raw = control_bytes(in_buf, in_size)
            if family != needs or isinstance(raw, int) or in_size != size:
                return NTSTATUS.STATUS_INVALID_PARAMETER, 0
            sock.setsockopt(linux_level, name, bytes(raw))
            return NTSTATUS.STATUS_SUCCESS, 0
        option = DATAGRAM_OPTIONS.get((level, code))
        if option is None or kind not in (WskSetOption, WskGetOption):
            return None
        linux_level, name, needs = option
        if needs and needs != family:
            return NTSTATUS.STATUS_INVALID_PARAMETER, 0
        if kind == WskGetOption:
            return NTSTATUS.STATUS_SUCCESS, sock.getsockopt(linux_level, name)
        value = read_in(in_buf, in_size)
        if value is None:
            return NTSTATUS.STATUS_INVALID_PARAMETER, 0
        sock.setsockopt(linux_level, name, value)
        return NTSTATUS.STATUS_SUCCESS, 0
    except OSError as exc:
        return linux.status_from_errno(exc.errno), 0


def receive_arguments_ok(RemoteAddress: Any, ControlLength: Any, ControlInfo: Any) -> bool:
    """WskReceiveFrom's out-parameters: a SOCKADDR or NULL; ControlLength a ULONG holder
    whose value fits ControlInfo, or NULL with ControlInfo NULL too."""
    if RemoteAddress is not None and not isinstance(RemoteAddress, SOCKADDR):
        return False
    if ControlLength is None:
        return ControlInfo is None
    if not hasattr(ControlLength, "value"):
        return False
    return ControlInfo is None or not isinstance(
        control_bytes(ControlInfo, int(ControlLength.value)), int
    )


def destination(in_size: int, in_buf: Any, family: int) -> tuple[Any, ...] | int | None:
    """The input of SIO_WSK_SET_REMOTE_ADDRESS / SIO_WSK_SET_SENDTO_ADDRESS: an address of
    the socket's family, None (no input: clear it), or STATUS_INVALID_PARAMETER."""
    if in_buf is None or in_size == 0:
        return None
    try:
        return linux.to_linux_address(in_buf, family)
    except (ValueError, AttributeError):
        return NTSTATUS.STATUS_INVALID_PARAMETER
