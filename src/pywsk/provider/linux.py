"""The Linux TCP backend: the kernel facts the provider reads and the calls it makes.

What it does: everything that is Linux-specific about implementing WSK over real TCP,
measured on the target kernel (``linux-mechanics`` in the project's research):

* :func:`tcp_state` reads the durable TCP state (``TCP_INFO`` byte 0), the one signal
  that never lies about FIN versus RST; :func:`outq` reads ``SIOCOUTQ``.
* :func:`abort_keep_fd` sends an RST without closing the descriptor:
  ``connect(fd, {AF_UNSPEC})`` through ctypes (Python's ``socket.connect`` cannot say it).
  It also wakes any thread blocked on the fd, which ``close()`` and ``SO_LINGER{1,0}`` do not.
* :class:`FinAckWatcher` detects "our FIN was acknowledged" - the moment a graceful
  disconnect is complete - by events, not by polling: Linux has no poll bit for it, but
  the FIN_WAIT1 -> FIN_WAIT2 and LAST_ACK -> CLOSE transitions wake the socket's wait
  queue, and an ``EPOLLOUT | EPOLLET`` registration in a private epoll re-reports exactly
  then.  The private epoll's fd is a reader on the provider's loop.
* :func:`status_from_errno` maps an errno to the NTSTATUS a WSK client sees (one table).
* :func:`to_linux_address` / :func:`from_linux_address` translate Windows socket
  addresses (``AF_INET6`` = 23) to Python socket tuples and back.

What it refuses: addresses of a family other than the socket's (ValueError for the caller
to turn into STATUS_INVALID_PARAMETER).

What always holds: nothing here keeps per-connection state except the watcher's fd map;
no function blocks.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import select
import socket
import struct
from collections.abc import Callable
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
    "status_from_errno",
    "FinAckWatcher",
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


class FinAckWatcher:
    """Tells the provider when a socket's TCP state may have moved (our FIN acknowledged, the
    peer's FIN or RST), without reading any data.

    One private epoll holds ``EPOLLOUT | EPOLLRDHUP | EPOLLET`` registrations; its own fd is a
    reader on the provider's loop.  EPOLLOUT re-reports at our FIN's acknowledgement,
    EPOLLRDHUP at the peer's FIN, and an RST always reports (EPOLLERR | EPOLLHUP).  An edge-triggered registration reports the current readiness once
    when added, so the first check runs without a lost wake-up; afterwards it re-reports at
    each state change (and at spurious moments - ACKs of data - which a re-check absorbs).
    """

    def __init__(self, add_reader: Callable[[int, Callable[[], None]], None]) -> None:
        self._epoll = select.epoll()
        self._callbacks: dict[int, Callable[[], None]] = {}
        add_reader(self._epoll.fileno(), self._on_ready)

    def watch(self, sock: socket.socket, on_change: Callable[[], None]) -> None:
        """Call ``on_change`` (on the loop) whenever ``sock`` may have changed state."""
        fd = sock.fileno()
        if fd in self._callbacks:
            self._callbacks[fd] = on_change
            return
        self._callbacks[fd] = on_change
        self._epoll.register(fd, select.EPOLLOUT | select.EPOLLRDHUP | select.EPOLLET)

    def unwatch(self, sock: socket.socket) -> None:
        """Stop watching ``sock`` (call before closing its fd)."""
        fd = sock.fileno()
        if self._callbacks.pop(fd, None) is not None:
            with contextlib.suppress(OSError):
                self._epoll.unregister(fd)

    def watching(self, sock: socket.socket) -> bool:
        """True while ``sock`` is registered."""
        return sock.fileno() in self._callbacks

    def _on_ready(self) -> None:
        for fd, _events in self._epoll.poll(0):
            callback = self._callbacks.get(fd)
            if callback is not None:
                callback()
