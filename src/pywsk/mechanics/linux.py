"""The Linux TCP backend: the kernel facts every front-end reads and the calls it makes.

What it does: everything that is Linux-specific about implementing WSK over real TCP,
measured on the target kernel (``linux-mechanics`` in the project's research):

* :func:`tcp_state` reads the durable TCP state (``TCP_INFO`` byte 0), the one signal
  that never lies about FIN versus RST; :func:`outq` reads ``SIOCOUTQ``.
* :func:`abort_keep_fd` sends an RST without closing the descriptor:
  ``connect(fd, {AF_UNSPEC})`` through ctypes (Python's ``socket.connect`` cannot say it).
  It also wakes any thread blocked on the fd, which ``close()`` and ``SO_LINGER{1,0}`` do not.
* "Our FIN was acknowledged" - the moment a graceful disconnect is complete - is seen by
  events, not by polling: Linux has no poll bit for it, but the FIN_WAIT1 -> FIN_WAIT2 and
  LAST_ACK -> CLOSE transitions wake the socket's wait queue, and the socket's one
  edge-triggered registration in an epoll (the provider's: ``engine.SOCKET_EVENTS``)
  re-reports EPOLLOUT exactly then; :func:`tcp_state` and :func:`outq` then decide.
* :func:`status_from_errno` maps an errno to the NTSTATUS a WSK client sees (one table).
* :func:`to_linux_address` / :func:`from_linux_address` translate Windows socket
  addresses (``AF_INET6`` = 23) to Python socket tuples and back.

What it refuses: addresses of a family other than the socket's (ValueError for the caller
to turn into STATUS_INVALID_PARAMETER).

What always holds: nothing here keeps per-connection state; no function blocks.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import socket
import struct
from typing import Any, Final

from ..nt.status import NTSTATUS
from ..wsk.constants import AF_INET, AF_INET6
from ..wsk.structs import SOCKADDR

__all__ = [
    "ESTABLISHED",
    "SYN_SENT",
    "SYN_RECV",
    "FIN_WAIT1",
    "FIN_WAIT2",
    "TIME_WAIT",
    "CLOSE",
    "CLOSE_WAIT",
    "LAST_ACK",
    "LISTEN",
    "CLOSING",
    "tcp_state",
    "outq",
    "inq",
    "so_error",
    "abort_keep_fd",
    "accept_nonblocking",
    "status_from_errno",
    "to_linux_address",
    "from_linux_address",
    "linux_family",
    "wsk_family",
    "IP_BIND_ADDRESS_NO_PORT",
]

#: include/uapi/linux/in.h: bind() takes the address only; connect() picks the port.  Set at
#: level IPPROTO_IP, it applies to IPv6 sockets too.
IP_BIND_ADDRESS_NO_PORT: Final = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)

# include/net/tcp_states.h
(
    ESTABLISHED,
    SYN_SENT,
    SYN_RECV,
    FIN_WAIT1,
    FIN_WAIT2,
    TIME_WAIT,
    CLOSE,
    CLOSE_WAIT,
    LAST_ACK,
    LISTEN,
    CLOSING,
) = range(1, 12)

_SIOCINQ: Final = 0x541B
_SIOCOUTQ: Final = 0x5411
_INT0: Final = b"\0\0\0\0"


def tcp_state(sock: socket.socket) -> int:
    """The kernel's TCP state of ``sock`` (one ``getsockopt``, about 1.4 us)."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]


def outq(sock: socket.socket) -> int:
    """Bytes not yet acknowledged by the peer (+1 while a FIN is unacknowledged)."""
    return int(struct.unpack("i", fcntl.ioctl(sock.fileno(), _SIOCOUTQ, _INT0))[0])


def inq(sock: socket.socket) -> int:
    """Bytes received and not yet read."""
    return int(struct.unpack("i", fcntl.ioctl(sock.fileno(), _SIOCINQ, _INT0))[0])


def so_error(sock: socket.socket) -> int:
    """Read (and clear) the socket's pending error."""
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)


_libc = ctypes.CDLL(None, use_errno=True)
_libc.connect.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32]
_libc.connect.restype = ctypes.c_int
_UNSPEC = (ctypes.c_ubyte * 16)()  # struct sockaddr with sa_family = AF_UNSPEC


_libc.accept4.argtypes = [
    ctypes.c_int,
    ctypes.c_void_p,
    ctypes.POINTER(ctypes.c_uint32),
    ctypes.c_int,
]
_libc.accept4.restype = ctypes.c_int
_ACCEPT_FLAGS: Final = socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC


def accept_nonblocking(listening: socket.socket) -> tuple[socket.socket, tuple[Any, ...]]:
    """``accept4(SOCK_NONBLOCK | SOCK_CLOEXEC)``: the new socket, non-blocking from the start,
    and the peer's address as ``getpeername()`` would give it - in one syscall (Python's
    ``accept()`` needs an ioctl more for non-blocking, and the address is read from what
    accept4 wrote).  Raises OSError (BlockingIOError when nothing waits) as accept() does."""
    buffer = ctypes.create_string_buffer(28)  # sockaddr_in6, the larger of the two
    size = ctypes.c_uint32(28)
    fd = _libc.accept4(listening.fileno(), buffer, ctypes.byref(size), _ACCEPT_FLAGS)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    raw = buffer.raw
    family = int.from_bytes(raw[0:2], "little")
    port = int.from_bytes(raw[2:4], "big")
    address: tuple[Any, ...]
    if family == socket.AF_INET6:
        flowinfo = int.from_bytes(raw[4:8], "big")
        host = socket.inet_ntop(socket.AF_INET6, raw[8:24])
        address = (host, port, flowinfo, int.from_bytes(raw[24:28], "little"))
    else:
        address = (socket.inet_ntop(socket.AF_INET, raw[4:8]), port)
    try:
        sock = socket.socket(listening.family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK, 0, fd)
    except OSError:
        os.close(fd)
        raise
    return sock, address


def abort_keep_fd(sock: socket.socket) -> None:
    """Abort the connection (RST on the wire at once); the descriptor stays open."""
    if _libc.connect(sock.fileno(), ctypes.addressof(_UNSPEC), 16) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


#: errno -> NTSTATUS, the one table (spec section 10, "suggested mapping").
_ERRNO_STATUS: Final[dict[int, int]] = {
    errno.ECONNRESET: NTSTATUS.STATUS_CONNECTION_RESET,
    errno.EPIPE: NTSTATUS.STATUS_CONNECTION_RESET,
    errno.ECONNREFUSED: NTSTATUS.STATUS_CONNECTION_REFUSED,
    errno.ETIMEDOUT: NTSTATUS.STATUS_IO_TIMEOUT,
    errno.ENETUNREACH: NTSTATUS.STATUS_NETWORK_UNREACHABLE,
    errno.EHOSTUNREACH: NTSTATUS.STATUS_HOST_UNREACHABLE,
    errno.EADDRINUSE: NTSTATUS.STATUS_ADDRESS_ALREADY_ASSOCIATED,
    errno.EADDRNOTAVAIL: NTSTATUS.STATUS_INVALID_ADDRESS_COMPONENT,
    errno.EACCES: NTSTATUS.STATUS_ACCESS_DENIED,
    errno.EPERM: NTSTATUS.STATUS_ACCESS_DENIED,
    errno.EINVAL: NTSTATUS.STATUS_INVALID_PARAMETER,
    errno.ENOMEM: NTSTATUS.STATUS_INSUFFICIENT_RESOURCES,
    errno.ENOBUFS: NTSTATUS.STATUS_INSUFFICIENT_RESOURCES,
    errno.EMFILE: NTSTATUS.STATUS_TOO_MANY_OPENED_FILES,
    errno.ENFILE: NTSTATUS.STATUS_TOO_MANY_OPENED_FILES,
    errno.EAFNOSUPPORT: NTSTATUS.STATUS_NOT_SUPPORTED,
    errno.EPROTONOSUPPORT: NTSTATUS.STATUS_NOT_SUPPORTED,
    errno.EOPNOTSUPP: NTSTATUS.STATUS_NOT_SUPPORTED,
    errno.ENOPROTOOPT: NTSTATUS.STATUS_NOT_SUPPORTED,
    errno.EISCONN: NTSTATUS.STATUS_CONNECTION_ACTIVE,
    errno.ENOTCONN: NTSTATUS.STATUS_INVALID_DEVICE_STATE,
    errno.ECONNABORTED: NTSTATUS.STATUS_CONNECTION_ABORTED,
    errno.ENETDOWN: NTSTATUS.STATUS_NETWORK_BUSY,
    errno.EHOSTDOWN: NTSTATUS.STATUS_HOST_UNREACHABLE,
}


def status_from_errno(err: int | None) -> int:
    """The NTSTATUS for a Linux errno (STATUS_UNEXPECTED_NETWORK_ERROR if unknown)."""
    if err is None:
        return NTSTATUS.STATUS_UNEXPECTED_NETWORK_ERROR
    return _ERRNO_STATUS.get(err, NTSTATUS.STATUS_UNEXPECTED_NETWORK_ERROR)


def linux_family(wsk_af: int) -> int:
    """Windows address family -> Linux (AF_INET6 is 23 on Windows, 10 on Linux)."""
    if wsk_af == AF_INET:
        return socket.AF_INET
    if wsk_af == AF_INET6:
        return socket.AF_INET6
    raise ValueError(f"address family {wsk_af} is not supported")


def wsk_family(linux_af: int) -> int:
    """Linux address family -> Windows."""
    return AF_INET if linux_af == socket.AF_INET else AF_INET6


def to_linux_address(address: SOCKADDR, wsk_af: int) -> tuple[Any, ...]:
    """A WSK socket address as a Python socket tuple; ValueError if it does not fit."""
    if address is None or address.sa_family != wsk_af:
        raise ValueError("the address family does not match the socket's")
    return address.to_tuple()


def from_linux_address(target: SOCKADDR, linux_af: int, address: tuple[Any, ...]) -> None:
    """Fill a WSK socket-address out-parameter from a Python socket tuple."""
    target.set_from_tuple(wsk_family(linux_af), address)
