"""Linux UDP mechanics: the datagram recipes every front-end shares.

What it does: the facts of Linux UDP that WSK's datagram semantics are built from, and the
calls that read them, measured on the target kernel:

* ICMP errors.  Linux reports an ICMP port unreachable for an earlier datagram as
  ECONNREFUSED to the *next* call of any kind (a send included), and on an unconnected
  socket only with IP_RECVERR / IPV6_RECVERR on (:func:`enable_error_queue`); the error
  queue that fills is emptied by :func:`drain_errors`.  Windows reports it once, to a
  receive, as STATUS_PORT_UNREACHABLE (:data:`ICMP_ERRNOS`, :func:`receive_status`).
* Oversize: a send larger than the largest UDP payload fails with EMSGSIZE, Windows'
  WSAEMSGSIZE, STATUS_INVALID_BUFFER_SIZE (:func:`send_status`).
* Truncation: a datagram larger than the receive buffer is cut; Windows completes the
  receive with STATUS_BUFFER_OVERFLOW and MSG_TRUNC (:func:`truncation_status`).
* :func:`send_batch` sends several datagrams to one destination in one ``sendmmsg``
  (ctypes again), with the same ancillary data on each.
* Broadcast and multicast: Linux says neither whether a datagram was sent to a broadcast
  or a multicast address; its destination address (IP_PKTINFO's ``ipi_addr``,
  IPV6_PKTINFO's ``ipi6_addr``, asked for with :func:`enable_destination`) does, and
  :func:`destination_flags` derives Windows' MSG_BCAST / MSG_MCAST from it: a multicast
  address (224.0.0.0/4, ff00::/8), the limited broadcast 255.255.255.255, or the
  broadcast address of the interface the datagram came in on (SIOCGIFBRDADDR).
* :class:`BatchReader` reads up to ``count`` datagrams in one ``recvmmsg`` (Python has no
  binding for it; ctypes), with each sender as raw ``sockaddr`` bytes and its ancillary
  data as ``recvmsg`` gives it.  :func:`sockaddr_from_raw` / :func:`address_from_raw` turn
  a raw sender into a WSK SOCKADDR or a Python address tuple without text round trips.

What it refuses: nothing - errors come back as OSError, as the socket module raises them.

What always holds: no function blocks (the socket is non-blocking); nothing keeps
per-socket state except a reader's own buffers.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import mmap
import os
import socket
import struct
import sys
import time
from typing import Any, Final

from ..nt.status import NTSTATUS
from ..wsk.constants import MSG_BCAST, MSG_MCAST
from ..wsk.structs import IN6_ADDR, IN_ADDR, SOCKADDR, SOCKADDR_IN, SOCKADDR_IN6
from . import linux

__all__ = [
    "ICMP_ERRNOS",
    "LINUX_IPV6_RECVERR",
    "LINUX_IP_PKTINFO",
    "LINUX_IP_RECVERR",
    "LINUX_MSG_ERRQUEUE",
    "MAX_DATAGRAM",
    "BatchReader",
    "batch_plan",
    "send_batch",
    "send_some",
    "address_from_raw",
    "canonical",
    "destination_flags",
    "enable_destination",
    "scatter",
    "ancillary_space",
    "drain_errors",
    "enable_error_queue",
    "receive_status",
    "send_status",
    "sockaddr_from_raw",
    "truncation_status",
]

# Linux's numbers (include/uapi/linux/in.h, in6.h, socket.h) where Python 3.11 lacks a name.
LINUX_IP_PKTINFO: Final = getattr(socket, "IP_PKTINFO", 8)
LINUX_IP_RECVERR: Final = getattr(socket, "IP_RECVERR", 11)
LINUX_IPV6_RECVERR: Final = getattr(socket, "IPV6_RECVERR", 25)
LINUX_MSG_ERRQUEUE: Final = getattr(socket, "MSG_ERRQUEUE", 0x2000)

#: The largest datagram a receive can be asked for (a UDP payload is at most 65,507 bytes
#: over IPv4, 65,527 over IPv6).
MAX_DATAGRAM: Final = 65536
#: The errnos with which Linux reports an ICMP error for an earlier datagram.
ICMP_ERRNOS: Final = frozenset({errno.ECONNREFUSED})


def enable_error_queue(sock: socket.socket) -> None:
    """Turn on IP_RECVERR (and IPV6_RECVERR): ICMP errors reach an unconnected socket, as
    Windows reports them on every datagram socket."""
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, LINUX_IPV6_RECVERR, 1)
    sock.setsockopt(socket.IPPROTO_IP, LINUX_IP_RECVERR, 1)


def drain_errors(sock: socket.socket) -> None:
    """Empty the error queue IP_RECVERR fills (one report stands for them all)."""
    with contextlib.suppress(OSError):
        for _ in range(64):
            sock.recvmsg(1, 512, LINUX_MSG_ERRQUEUE)


def enable_destination(sock: socket.socket) -> bool:
    """Ask Linux for every datagram's destination address (IP_PKTINFO, IPV6_RECVPKTINFO);
    False if it refused (a closed socket)."""
    try:
        if sock.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
        sock.setsockopt(socket.IPPROTO_IP, LINUX_IP_PKTINFO, 1)
    except OSError:
        return False
    return True


_SIOCGIFBRDADDR: Final = 0x8919
#: ifindex -> (its IPv4 broadcast address or None, when it was read).
_BROADCAST: dict[int, tuple[bytes | None, float]] = {}
_BROADCAST_TTL: Final = 1.0


def _interface_broadcast(ifindex: int) -> bytes | None:
    """The IPv4 broadcast address of interface ``ifindex`` (re-read after a second)."""
    cached = _BROADCAST.get(ifindex)
    now = time.monotonic()
    if cached is not None and now - cached[1] < _BROADCAST_TTL:
        return cached[0]
    address = None
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        name = socket.if_indextoname(ifindex).encode()
        answer = fcntl.ioctl(s.fileno(), _SIOCGIFBRDADDR, struct.pack("16s16x", name))
        address = answer[20:24]
    _BROADCAST[ifindex] = (address, now)
    return address


def destination_flags(ancillary: list[tuple[int, int, bytes]]) -> int:
    """MSG_BCAST / MSG_MCAST of a received datagram, from the destination address its
    PKTINFO ancillary data names (0 without one)."""
    for level, kind, data in ancillary:
        if level == socket.IPPROTO_IP and kind == LINUX_IP_PKTINFO and len(data) >= 12:
            ifindex = int.from_bytes(data[0:4], sys.byteorder, signed=True)
            destination = data[8:12]
            if 224 <= destination[0] <= 239:
                return MSG_MCAST
            if destination == b"\xff\xff\xff\xff" or destination == _interface_broadcast(ifindex):
                return MSG_BCAST
            return 0
        if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO and len(data) >= 16:
            if data[0] == 0xFF:
                return MSG_MCAST
            if data[:12] == bytes(10) + b"\xff\xff":  # IPv4-mapped
                return (
                    MSG_MCAST
                    if 224 <= data[12] <= 239
                    else (MSG_BCAST if data[12:16] == b"\xff\xff\xff\xff" else 0)
                )
            return 0
    return 0


def send_status(err: int | None) -> int:
    """A failed send's status; EMSGSIZE (more than the largest UDP payload) is Windows'
    WSAEMSGSIZE, STATUS_INVALID_BUFFER_SIZE."""
    if err == errno.EMSGSIZE:
        return NTSTATUS.STATUS_INVALID_BUFFER_SIZE
    return linux.status_from_errno(err)


def receive_status(err: int | None) -> int:
    """A failed receive's status: an ICMP error is STATUS_PORT_UNREACHABLE."""
    if err in ICMP_ERRNOS:
        return NTSTATUS.STATUS_PORT_UNREACHABLE
    return linux.status_from_errno(err)


def truncation_status(copied: int, length: int, flags: int) -> int:
    """STATUS_BUFFER_OVERFLOW when a datagram of ``length`` bytes did not fit (``copied``
    of it delivered, or the kernel said MSG_TRUNC), else STATUS_SUCCESS."""
    if copied < length or flags & socket.MSG_TRUNC:
        return NTSTATUS.STATUS_BUFFER_OVERFLOW
    return NTSTATUS.STATUS_SUCCESS


def scatter(data: Any, views: list[memoryview]) -> int:
    """Copy a datagram into a receive's buffers in order; the bytes that fit (the rest of a
    datagram is lost, as a datagram receive loses it)."""
    data = memoryview(data)
    copied = 0
    for view in views:
        n = min(len(view), len(data) - copied)
        view[:n] = data[copied : copied + n]
        copied += n
        if copied == len(data):
            break
    return copied


def ancillary_space() -> int:
    """Room for the ancillary data a datagram can carry here (both PKTINFO kinds, TOS)."""
    return socket.CMSG_SPACE(12) + socket.CMSG_SPACE(20) + 2 * socket.CMSG_SPACE(4)


_LITTLE: Final = sys.byteorder == "little"


def sockaddr_from_raw(raw: bytes) -> SOCKADDR:
    """A Linux ``sockaddr_in`` / ``sockaddr_in6`` as the WSK structure (no text on the way)."""
    wire_port = int.from_bytes(raw[2:4], "little" if _LITTLE else "big")
    if int.from_bytes(raw[0:2], sys.byteorder) == socket.AF_INET6:
        return SOCKADDR_IN6(
            sin6_port=wire_port,
            sin6_flowinfo=int.from_bytes(raw[4:8], "big"),
            sin6_addr=IN6_ADDR(raw[8:24]),
            sin6_scope_id=int.from_bytes(raw[24:28], sys.byteorder),
        )
    return SOCKADDR_IN(sin_port=wire_port, sin_addr=IN_ADDR(raw[4:8]))


def address_from_raw(raw: bytes) -> tuple[Any, ...]:
    """A Linux ``sockaddr_in`` / ``sockaddr_in6`` as the socket module's address tuple."""
    port = int.from_bytes(raw[2:4], "big")
    if int.from_bytes(raw[0:2], sys.byteorder) == socket.AF_INET6:
        host = socket.inet_ntop(socket.AF_INET6, raw[8:24])
        scope = int.from_bytes(raw[24:28], sys.byteorder)
        return (host, port, int.from_bytes(raw[4:8], "big"), scope)
    return (socket.inet_ntop(socket.AF_INET, raw[4:8]), port)


def canonical(address: tuple[Any, ...]) -> tuple[Any, ...]:
    """An address as recvmsg reports senders (the host in inet_ntop's spelling)."""
    family = socket.AF_INET6 if ":" in str(address[0]) else socket.AF_INET
    host = socket.inet_ntop(family, socket.inet_pton(family, str(address[0]).split("%")[0]))
    return (host, *address[1:])


# --- recvmmsg ---------------------------------------------------------------------------------


class _Iovec(ctypes.Structure):
    _fields_ = (("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t))


class _Msghdr(ctypes.Structure):
    _fields_ = (
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.c_void_p),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    )


class _Mmsghdr(ctypes.Structure):
    _fields_ = (("msg_hdr", _Msghdr), ("msg_len", ctypes.c_uint))


_libc = ctypes.CDLL(None, use_errno=True)
_recvmmsg = _libc.recvmmsg
_recvmmsg.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p)
_recvmmsg.restype = ctypes.c_int

_NAME: Final = 28  # sizeof(struct sockaddr_in6), the larger of the two
_CMSG_HEADER: Final = struct.Struct("@Nii")  # struct cmsghdr: cmsg_len, cmsg_level, cmsg_type
_CMSG_ALIGN: Final = ctypes.sizeof(ctypes.c_size_t)

Received = tuple[memoryview, bytes, list[tuple[int, int, bytes]], int]


class BatchReader:
    """``recvmmsg`` into buffers of its own: up to ``count`` datagrams of up to ``size``
    bytes per call.  A datagram's bytes are a view of the reader's buffer, valid until its
    next :meth:`read`; copy what must outlive it."""

    __slots__ = ("_array", "_control", "_data", "_iovecs", "_names", "_pristine", "count", "size")

    def __init__(self, count: int = 32, size: int = MAX_DATAGRAM) -> None:
        self.count, self.size = count, size
        # Pages are touched only where datagrams land: a batch of 64 KiB slots costs what it
        # receives, not count x 64 KiB.
        self._data = mmap.mmap(-1, count * size)
        self._names = ctypes.create_string_buffer(count * _NAME)
        space = ancillary_space()
        self._control = ctypes.create_string_buffer(count * space)
        iovecs = (_Iovec * count)()
        self._array = (_Mmsghdr * count)()
        base = ctypes.addressof(ctypes.c_char.from_buffer(self._data))
        for i in range(count):
            iovecs[i].iov_base = base + i * size
            iovecs[i].iov_len = size
            header = self._array[i].msg_hdr
            header.msg_name = ctypes.addressof(self._names) + i * _NAME
            header.msg_namelen = _NAME
            header.msg_iov = ctypes.addressof(iovecs[i])
            header.msg_iovlen = 1
            header.msg_control = ctypes.addressof(self._control) + i * space
            header.msg_controllen = space
        self._iovecs = iovecs
        self._pristine = bytes(self._array)  # what the kernel overwrites, reset per call

    def read(self, sock: socket.socket, limit: int | None = None) -> list[Received]:
        """Up to ``limit`` (default: ``count``) datagrams now: (payload view, raw sender,
        ancillary data, flags) each; [] when none is queued.  OSError for an error (an ICMP
        error of an earlier send: ECONNREFUSED)."""
        want = self.count if limit is None else max(1, min(limit, self.count))
        ctypes.memmove(self._array, self._pristine, ctypes.sizeof(_Mmsghdr) * want)
        got = _recvmmsg(sock.fileno(), self._array, want, socket.MSG_DONTWAIT, None)
        if got < 0:
            err = ctypes.get_errno()
            if err in (errno.EAGAIN, errno.EWOULDBLOCK):
                return []
            raise OSError(err, os.strerror(err))
        data = memoryview(self._data)
        names = self._names.raw
        control = self._control
        space = ancillary_space()
        out: list[Received] = []
        for i in range(got):
            entry = self._array[i]
            header = entry.msg_hdr
            start = i * self.size
            sender = names[i * _NAME : i * _NAME + header.msg_namelen]
            ancillary = []
            if header.msg_controllen:
                raw = ctypes.string_at(ctypes.addressof(control) + i * space, header.msg_controllen)
                ancillary = _parse_control(raw)
            length = min(entry.msg_len, self.size)
            out.append((data[start : start + length], sender, ancillary, header.msg_flags))
        return out


def _parse_control(raw: bytes) -> list[tuple[int, int, bytes]]:
    """Linux cmsghdr objects -> [(level, type, data)], as ``recvmsg`` returns them."""
    out = []
    offset = 0
    while offset + _CMSG_HEADER.size <= len(raw):
        length, level, kind = _CMSG_HEADER.unpack_from(raw, offset)
        if length < _CMSG_HEADER.size:
            break
        out.append((level, kind, raw[offset + _CMSG_HEADER.size : offset + length]))
        offset += (length + _CMSG_ALIGN - 1) & ~(_CMSG_ALIGN - 1)
    return out


# --- sendmmsg ---------------------------------------------------------------------------------

_sendmmsg = _libc.sendmmsg
_sendmmsg.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int)
_sendmmsg.restype = ctypes.c_int
#: Datagrams per sendmmsg call at most (the kernel's UIO_MAXIOV caps a call at 1024).
SEND_BATCH: Final = 64


def raw_sockaddr(address: tuple[Any, ...], family: int) -> bytes:
    """A Python address tuple as a Linux ``sockaddr_in`` / ``sockaddr_in6``."""
    if family == socket.AF_INET6:
        host = str(address[0]).split("%", 1)[0]
        flowinfo = int(address[2]) if len(address) > 2 else 0
        scope = int(address[3]) if len(address) > 3 else 0
        return (
            socket.AF_INET6.to_bytes(2, sys.byteorder)
            + int(address[1]).to_bytes(2, "big")
            + flowinfo.to_bytes(4, "big")
            + socket.inet_pton(socket.AF_INET6, host)
            + scope.to_bytes(4, sys.byteorder)
        )
    return (
        socket.AF_INET.to_bytes(2, sys.byteorder)
        + int(address[1]).to_bytes(2, "big")
        + socket.inet_pton(socket.AF_INET, str(address[0]))
        + bytes(8)
    )


def raw_control(ancillary: list[tuple[int, int, bytes]]) -> bytes:
    """Ancillary data as ``sendmsg`` takes it, laid out as Linux cmsghdr objects."""
    out = bytearray()
    for level, kind, data in ancillary:
        out += _CMSG_HEADER.pack(_CMSG_HEADER.size + len(data), level, kind) + data
        out += bytes(socket.CMSG_SPACE(len(data)) - _CMSG_HEADER.size - len(data))
    return bytes(out)


def send_batch(
    sock: socket.socket, datagrams: list[list[Any]], name: bytes, control: bytes
) -> tuple[int, int, int]:
    """Send ``datagrams`` (each a list of ``bytes`` or writable views) to the raw address ``name`` with
    the raw ancillary data ``control``, in sendmmsg calls: (datagrams sent, bytes sent,
    errno of the first that failed or 0).  EAGAIN stops it with nothing more sent."""
    count = min(len(datagrams), SEND_BATCH)
    iov_total = sum(len(views) for views in datagrams[:count])
    iovecs = (_Iovec * iov_total)()
    array = (_Mmsghdr * count)()
    name_buf = ctypes.create_string_buffer(name, len(name))
    control_buf = ctypes.create_string_buffer(control, len(control)) if control else None
    keep: list[Any] = []
    k = 0
    for i in range(count):
        header = array[i].msg_hdr
        header.msg_name = ctypes.addressof(name_buf)
        header.msg_namelen = len(name)
        header.msg_iov = ctypes.addressof(iovecs) + k * ctypes.sizeof(_Iovec)
        header.msg_iovlen = len(datagrams[i])
        if control_buf is not None:
            header.msg_control = ctypes.addressof(control_buf)
            header.msg_controllen = len(control)
        for piece in datagrams[i]:
            if type(piece) is bytes:  # c_char_p points into the bytes object, no copy
                pointer = ctypes.c_char_p(piece)
                keep.append(pointer)
                iovecs[k].iov_base = ctypes.cast(pointer, ctypes.c_void_p).value
            elif len(piece):
                anchor = ctypes.c_char.from_buffer(piece)
                keep.append(anchor)
                iovecs[k].iov_base = ctypes.addressof(anchor)
            iovecs[k].iov_len = len(piece)
            k += 1
    sent = _sendmmsg(sock.fileno(), array, count, socket.MSG_DONTWAIT)
    if sent < 0:
        err = ctypes.get_errno()
        return 0, 0, 0 if err in (errno.EAGAIN, errno.EWOULDBLOCK) else err
    return sent, sum(array[i].msg_len for i in range(sent)), 0


def batch_plan(
    datagrams: list[list[Any]],
    address: tuple[Any, ...],
    family: int,
    ancillary: list[tuple[int, int, bytes]],
) -> tuple[bytes, bytes] | None:
    """(raw address, raw ancillary data) for :func:`send_batch` when sendmmsg can carry
    ``datagrams`` - several, each piece ``bytes`` or a writable view (ctypes needs their
    addresses) - else None (one ``sendmsg`` each)."""
    if len(datagrams) < 2 or not all(
        type(piece) is bytes or (isinstance(piece, memoryview) and not piece.readonly)
        for pieces in datagrams
        for piece in pieces
    ):
        return None
    return raw_sockaddr(address, family), raw_control(ancillary)


def send_some(
    sock: socket.socket,
    datagrams: list[list[Any]],
    index: int,
    address: tuple[Any, ...],
    ancillary: list[tuple[int, int, bytes]],
    plan: tuple[bytes, bytes] | None,
) -> tuple[int, int, int]:
    """Send ``datagrams[index:]`` until all are sent, the send buffer is full or a call
    fails: (index of the next datagram, bytes sent, errno of the failure or 0).  An errno
    in :data:`ICMP_ERRNOS` is an earlier datagram's ICMP error, not this one's."""
    sent = 0
    while index < len(datagrams):
        if plan is not None:
            count, size, err = send_batch(sock, datagrams[index:], *plan)
            index += count
            sent += size
            if err or not count:
                return index, sent, err
            continue
        try:
            sent += sock.sendmsg(datagrams[index], ancillary, 0, address)
        except BlockingIOError:
            return index, sent, 0
        except OSError as exc:
            return index, sent, exc.errno or errno.EIO
        index += 1
    return index, sent, 0
