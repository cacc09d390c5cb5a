"""Control information as Windows lays it out: CMSGHDR, the WSA_CMSG_* macros, IN_PKTINFO.

What it does: a datagram's control information (WskSendTo / WskSendMessages ControlInfo,
WskReceiveFrom ControlInfo, WSK_DATAGRAM_INDICATION.ControlInfo) is a byte buffer of
control data objects, each a :class:`CMSGHDR` followed by its data, in the x64 layout of
ws2def.h: ``SIZE_T cmsg_len; INT cmsg_level; INT cmsg_type;`` (16 bytes), data aligned to
``MAX_NATURAL_ALIGNMENT`` (8).  The macros keep Microsoft's names and arithmetic:
``WSA_CMSG_LEN``, ``WSA_CMSG_SPACE``, ``WSA_CMSGHDR_ALIGN``, ``WSA_CMSGDATA_ALIGN``,
``WSA_CMSG_FIRSTHDR`` / ``WSA_CMSG_NXTHDR`` (over a :class:`WSAMSG`, as in C) and
``WSA_CMSG_DATA``.  The data structures (:class:`IN_PKTINFO`, :class:`IN6_PKTINFO`,
:class:`IP_MREQ`, :class:`IPV6_MREQ`) are ctypes structures, so C code translates line
for line::

    cmsg = CMSGHDR(buffer)
    cmsg.cmsg_len = WSA_CMSG_LEN(ctypes.sizeof(IN_PKTINFO))
    cmsg.cmsg_level, cmsg.cmsg_type = IPPROTO_IP, IP_PKTINFO
    IN_PKTINFO.from_buffer(WSA_CMSG_DATA(cmsg)).ipi_addr[:] = source_address_bytes

What it refuses: a header that does not fit in its buffer (``ValueError`` on access);
writing through a read-only buffer (``TypeError``, from Python's buffer protocol).

What always holds: addresses are in network byte order, as in C; nothing here allocates
beyond the views it returns.
"""

from __future__ import annotations

import ctypes
import struct
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "CMSGHDR",
    "PCMSGHDR",
    "WSACMSGHDR",
    "MAX_NATURAL_ALIGNMENT",
    "WSA_CMSGHDR_ALIGN",
    "WSA_CMSGDATA_ALIGN",
    "WSA_CMSG_LEN",
    "WSA_CMSG_SPACE",
    "WSA_CMSG_DATA",
    "WSA_CMSG_FIRSTHDR",
    "WSA_CMSG_NXTHDR",
    "WSABUF",
    "WSAMSG",
    "IN_PKTINFO",
    "IN6_PKTINFO",
    "IP_MREQ",
    "IPV6_MREQ",
]

#: ``sizeof(ULONGLONG)`` on x64 (ntdef.h).
MAX_NATURAL_ALIGNMENT: Final = 8
_HEADER: Final = struct.Struct("<Qii")  # SIZE_T cmsg_len; INT cmsg_level; INT cmsg_type


def WSA_CMSGHDR_ALIGN(length: int) -> int:
    """Round ``length`` up to the alignment of WSACMSGHDR (8 on x64)."""
    return (length + 7) & ~7


def WSA_CMSGDATA_ALIGN(length: int) -> int:
    """Round ``length`` up to MAX_NATURAL_ALIGNMENT."""
    return (length + MAX_NATURAL_ALIGNMENT - 1) & ~(MAX_NATURAL_ALIGNMENT - 1)


def WSA_CMSG_LEN(length: int) -> int:
    """``cmsg_len`` of an object carrying ``length`` data bytes (no trailing padding)."""
    return WSA_CMSGDATA_ALIGN(_HEADER.size) + length


def WSA_CMSG_SPACE(length: int) -> int:
    """Bytes an object carrying ``length`` data bytes takes, padding included."""
    return WSA_CMSGDATA_ALIGN(_HEADER.size + WSA_CMSGHDR_ALIGN(length))


class CMSGHDR:
    """A control data header in place at ``offset`` of a buffer (C: a ``PCMSGHDR``).

    Reading a field reads the buffer, setting one writes it, as through a C pointer.
    """

    __slots__ = ("buffer", "offset")

    #: ``sizeof(CMSGHDR)`` on x64.
    SIZE: Final = _HEADER.size

    def __init__(self, buffer: Any, offset: int = 0) -> None:
        view = memoryview(buffer).cast("B")
        if offset < 0 or offset + _HEADER.size > len(view):
            raise ValueError("a CMSGHDR does not fit in the buffer at that offset")
        self.buffer = view
        self.offset = offset

    def _fields(self) -> tuple[int, int, int]:
        length, level, kind = _HEADER.unpack_from(self.buffer, self.offset)
        return int(length), int(level), int(kind)

    def _set(self, index: int, value: int) -> None:
        fields = list(self._fields())
        fields[index] = value
        _HEADER.pack_into(self.buffer, self.offset, *fields)

    @property
    def cmsg_len(self) -> int:
        return self._fields()[0]

    @cmsg_len.setter
    def cmsg_len(self, value: int) -> None:
        self._set(0, value)

    @property
    def cmsg_level(self) -> int:
        return self._fields()[1]

    @cmsg_level.setter
    def cmsg_level(self, value: int) -> None:
        self._set(1, value)

    @property
    def cmsg_type(self) -> int:
        return self._fields()[2]

    @cmsg_type.setter
    def cmsg_type(self, value: int) -> None:
        self._set(2, value)

    def __repr__(self) -> str:
        length, level, kind = self._fields()
        return f"CMSGHDR(cmsg_len={length}, cmsg_level={level}, cmsg_type={kind})"


PCMSGHDR = CMSGHDR
WSACMSGHDR = CMSGHDR


def WSA_CMSG_DATA(cmsg: CMSGHDR) -> memoryview:
    """The object's data: from the aligned data start to the end of the buffer (C returns a
    pointer there; slice it to ``cmsg_len - WSA_CMSG_LEN(0)`` bytes as needed)."""
    return cmsg.buffer[cmsg.offset + WSA_CMSGDATA_ALIGN(_HEADER.size) :]


@dataclass
class WSABUF:
    """``len`` bytes of ``buf`` (ws2def.h)."""

    len: int = 0
    buf: Any = None


@dataclass
class WSAMSG:
    """The message the WSA_CMSG_* walking macros take; only ``Control`` matters to them."""

    name: Any = None
    namelen: int = 0
    lpBuffers: Any = None
    dwBufferCount: int = 0
    Control: WSABUF | None = None
    dwFlags: int = 0


def WSA_CMSG_FIRSTHDR(msg: WSAMSG) -> CMSGHDR | None:
    """The first header of ``msg.Control``, or None if it is shorter than a header."""
    control = msg.Control
    if control is None or control.buf is None or control.len < _HEADER.size:
        return None
    return CMSGHDR(memoryview(control.buf).cast("B")[: control.len])


def WSA_CMSG_NXTHDR(msg: WSAMSG, cmsg: CMSGHDR | None) -> CMSGHDR | None:
    """The header after ``cmsg`` (the first one for None), or None past the end."""
    if cmsg is None:
        return WSA_CMSG_FIRSTHDR(msg)
    control = msg.Control
    assert control is not None
    following = cmsg.offset + WSA_CMSGHDR_ALIGN(cmsg.cmsg_len)
    if following + _HEADER.size > control.len:
        return None
    return CMSGHDR(cmsg.buffer, following)


class IN_PKTINFO(ctypes.Structure):
    """IP_PKTINFO data: on send the source address to use, on receive the datagram's
    destination address; and the interface index."""

    _fields_ = [("ipi_addr", ctypes.c_ubyte * 4), ("ipi_ifindex", ctypes.c_uint32)]


class IN6_PKTINFO(ctypes.Structure):
    """IPV6_PKTINFO data, as IN_PKTINFO for IPv6."""

    _fields_ = [("ipi6_addr", ctypes.c_ubyte * 16), ("ipi6_ifindex", ctypes.c_uint32)]


class IP_MREQ(ctypes.Structure):
    """IP_ADD_MEMBERSHIP / IP_DROP_MEMBERSHIP input: the group and the local interface."""

    _fields_ = [("imr_multiaddr", ctypes.c_ubyte * 4), ("imr_interface", ctypes.c_ubyte * 4)]


class IPV6_MREQ(ctypes.Structure):
    """IPV6_ADD_MEMBERSHIP / IPV6_DROP_MEMBERSHIP input: the group and interface index."""

    _fields_ = [
        ("ipv6mr_multiaddr", ctypes.c_ubyte * 16),
        ("ipv6mr_interface", ctypes.c_uint32),
    ]
