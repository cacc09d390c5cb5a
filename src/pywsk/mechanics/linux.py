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
  :func:`fin_outcome` is that decision, made once for every front-end, and
  :func:`durable_state` reads how a connection ended (:class:`Seen`).
* The other decisions read from the kernel, each written once: :func:`connect_outcome`
  (did a non-blocking connect succeed, fail, or is it under way), :data:`PEER_FIN_STATES`
  and :func:`is_reset` (how the peer ended: FIN or RST), :func:`close_resets` (does a
  close have to send an RST first) and :func:`discard_unread` (a close that must not).
* :func:`status_from_errno` maps an errno to the NTSTATUS a WSK client sees (one table);
  :data:`WSK_OPTIONS` and :func:`set_wsk_option` map wsk.h socket options to Linux ones.
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
import select
import socket
import struct
from typing import Any, Final, NamedTuple

from ..core.connection import ConnState, close_needs_reset
from ..nt.status import NTSTATUS
from ..wsk.constants import (
    AF_INET,
    AF_INET6,
    IPPROTO_IPV6,
    IPPROTO_TCP,
    IPV6_V6ONLY,
    SO_KEEPALIVE,
    SO_RCVBUF,
    SO_REUSEADDR,
    SO_SNDBUF,
    SOL_SOCKET,
    TCP_KEEPCNT,
    TCP_KEEPIDLE,
    TCP_KEEPINTVL,
    TCP_MAXRT,
    TCP_NODELAY,
)
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
    "ENDED_STATES",
    "FIN_ACKED_STATES",
    "PEER_FIN_STATES",
    "RESET_ERRNOS",
    "WSK_OPTIONS",
    "tcp_state",
    "Seen",
    "fin_outcome",
    "durable_state",
    "connect_outcome",
    "is_reset",
    "close_resets",
    "discard_unread",
    "set_wsk_option",
    "outq",
    "inq",
    "so_error",
    "abort_keep_fd",
    "accept_nonblocking",
    "status_from_errno",
    "status_from_resolver",
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

#: The peer's FIN arrived (and no RST after it): the receiving half is closed.
PEER_FIN_STATES: Final = frozenset({CLOSE_WAIT, LAST_ACK, CLOSING})
#: Our FIN was acknowledged and the connection is not reset.
FIN_ACKED_STATES: Final = frozenset({FIN_WAIT2, TIME_WAIT})
#: The connection is over in the kernel: a close sends nothing more (no RST).
ENDED_STATES: Final = frozenset({CLOSE, TIME_WAIT})
#: The errnos that mean the peer reset the connection.
RESET_ERRNOS: Final = frozenset({errno.ECONNRESET, errno.EPIPE})

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


def accept_nonblocking(listening: socket.socket) -> tuple[socket.socket, tuple[Any, ...]]:
    """Accept one connection (``accept4(SOCK_CLOEXEC)``) and make it non-blocking (one
    ``ioctl``): the new socket and the peer's address.  Raises OSError (BlockingIOError
    when nothing waits) as ``accept()`` does.  (Python's ``accept()`` would do the same in
    more Python; ``accept4(SOCK_NONBLOCK)`` through ctypes saves the ioctl but costs more
    CPU than it saves: measured, about 2 µs per connection.)"""
    fd, address = listening._accept()  # type: ignore[attr-defined]
    try:
        sock = socket.socket(listening.family, socket.SOCK_STREAM, 0, fd)
    except OSError:
        os.close(fd)
        raise
    sock.setblocking(False)
    return sock, address


class Seen(NamedTuple):
    """What the kernel's durable TCP state says happened to a connection: our FIN was
    acknowledged, the peer's FIN came, or a reset or failure ended it (``ended``: its errno;
    0 for a reset whose error was read already).  A front-end turns each into the core's
    input: FIN_ACKED, RECV_FIN, RECV_RST (:func:`is_reset`) or TRANSPORT_FAILED."""

    fin_acked: bool = False
    peer_fin: bool = False
    ended: int | None = None


def fin_outcome(sock: socket.socket, st: int | None = None) -> Seen | None:
    """After our FIN (``shutdown(SHUT_WR)``): None while it is unacknowledged, else what
    happened.  Call it at each edge of the socket's edge-triggered registration after the
    FIN: the acknowledgement wakes the socket.  ``st``: the TCP state, if just read.

    Pending: FIN_WAIT1, LAST_ACK, CLOSING.  Acknowledged: FIN_WAIT2 or TIME_WAIT; CLOSE with
    no error (the peer's FIN came too - only the acknowledgement moves LAST_ACK, CLOSING or
    FIN_WAIT2 on to CLOSE without an error); CLOSE with an error and nothing unacknowledged
    (a reset or failure came after).  Failed: CLOSE with bytes or the FIN unacknowledged.
    Reads, and so clears, the socket's pending error.
    """
    if st is None:
        st = tcp_state(sock)
    if st in FIN_ACKED_STATES:
        return Seen(fin_acked=True)
    if st != CLOSE:
        return None
    err = so_error(sock)
    if not err:
        return Seen(fin_acked=True, peer_fin=True)
    return Seen(fin_acked=outq(sock) == 0, ended=err)


def durable_state(sock: socket.socket, fin_issued: bool) -> Seen | None:
    """What the durable TCP state says of a live connection (None: nothing new): the
    peer's FIN (CLOSE_WAIT, LAST_ACK, CLOSING), our FIN acknowledged (FIN_WAIT2,
    TIME_WAIT), or - in CLOSE - :func:`fin_outcome` after our FIN, and without it a reset or
    failure (only they close a connection without our FIN)."""
    st = tcp_state(sock)
    if st == CLOSE:
        if fin_issued:
            return fin_outcome(sock, st)
        return Seen(ended=so_error(sock))
    if st in PEER_FIN_STATES:
        return Seen(peer_fin=True)
    if st in FIN_ACKED_STATES:
        return Seen(fin_acked=True)
    return None


def connect_outcome(sock: socket.socket, mask: int) -> int | None:
    """A non-blocking connect at an edge ``mask`` of its socket: None while the handshake is
    under way, else its errno (0: connected).  EPOLLOUT alone means connected (a failed
    handshake sets the socket's error, which reports EPOLLERR); otherwise SO_ERROR says
    why.  An errno of :data:`RESET_ERRNOS` means the handshake succeeded and the peer reset
    the connection before this edge was seen (a SYN answered with RST is ECONNREFUSED)."""
    if mask & select.EPOLLOUT and not mask & (select.EPOLLERR | select.EPOLLHUP):
        return 0
    err = so_error(sock)
    if not err and tcp_state(sock) == SYN_SENT:
        return None
    return err


def is_reset(err: int) -> bool:
    """True when ``err`` (read from a connection that is in state CLOSE without our FIN, or
    from a call that failed) means the peer's RST; 0 too: the reset's error was read already,
    and only a reset closes a connection without a FIN and without an error left."""
    return err == 0 or err in RESET_ERRNOS


def close_resets(sock: socket.socket, state: ConnState) -> bool:
    """True when closing ``sock`` in ``state`` must send an RST first (WskCloseSocket on a
    connection not disconnected in both directions), unless the kernel's connection is gone
    already (CLOSE, or our FIN and the peer's both through: TIME_WAIT)."""
    return close_needs_reset(state) and tcp_state(sock) not in ENDED_STATES


def discard_unread(sock: socket.socket) -> None:
    """Read and drop what is unread: unread bytes at ``close()`` make Linux send an RST,
    which a close after a full disconnect must not."""
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass


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


#: (wsk.h level, option) -> (Linux level, Linux option, scale from Windows units).
WSK_OPTIONS: Final[dict[tuple[int, int], tuple[int, int, int]]] = {
    (SOL_SOCKET, SO_KEEPALIVE): (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
    (SOL_SOCKET, SO_RCVBUF): (socket.SOL_SOCKET, socket.SO_RCVBUF, 1),
    (SOL_SOCKET, SO_SNDBUF): (socket.SOL_SOCKET, socket.SO_SNDBUF, 1),
    (SOL_SOCKET, SO_REUSEADDR): (socket.SOL_SOCKET, socket.SO_REUSEADDR, 1),
    (IPPROTO_TCP, TCP_NODELAY): (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),
    (IPPROTO_TCP, TCP_KEEPIDLE): (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1),
    (IPPROTO_TCP, TCP_KEEPINTVL): (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1),
    (IPPROTO_TCP, TCP_KEEPCNT): (socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 1),
    # TCP_MAXRT (seconds) is Windows' bound on retransmission time: TCP_USER_TIMEOUT (ms).
    (IPPROTO_TCP, TCP_MAXRT): (socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 1000),
    (IPPROTO_IPV6, IPV6_V6ONLY): (socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1),
}
#: An option value is a C int.
_INT_MAX: Final = 2**31 - 1


def set_wsk_option(sock: socket.socket, level: int, option: int, value: int) -> int:
    """Set the wsk.h option ``level``/``option`` to ``value`` on ``sock``; the NTSTATUS:
    STATUS_NOT_SUPPORTED for an option without a Linux counterpart, STATUS_INVALID_PARAMETER
    for a value no C int holds (after scaling) or an IPv6 option on an IPv4 socket, the
    kernel's refusal as :func:`status_from_errno` maps it."""
    known = WSK_OPTIONS.get((level, option))
    if known is None:
        return NTSTATUS.STATUS_NOT_SUPPORTED
    linux_level, linux_name, scale = known
    if linux_level == socket.IPPROTO_IPV6 and sock.family != socket.AF_INET6:
        return NTSTATUS.STATUS_INVALID_PARAMETER
    if not 0 <= value * scale <= _INT_MAX:
        return NTSTATUS.STATUS_INVALID_PARAMETER
    try:
        sock.setsockopt(linux_level, linux_name, value * scale)
    except OSError as exc:
        return status_from_errno(exc.errno)
    return NTSTATUS.STATUS_SUCCESS


def status_from_resolver(exc: OSError) -> int:
    """The NTSTATUS for a failed name resolution (``socket.gaierror``) or other OSError:
    a name that does not resolve is STATUS_NOT_FOUND, as on Windows 8 and later."""
    if isinstance(exc, socket.gaierror):
        if exc.errno in (socket.EAI_NONAME, socket.EAI_NODATA, socket.EAI_SERVICE):
            return NTSTATUS.STATUS_NOT_FOUND
        if exc.errno == socket.EAI_FAMILY:
            return NTSTATUS.STATUS_NOT_SUPPORTED
        if exc.errno == socket.EAI_MEMORY:
            return NTSTATUS.STATUS_INSUFFICIENT_RESOURCES
        return NTSTATUS.STATUS_UNEXPECTED_NETWORK_ERROR
    return status_from_errno(exc.errno)


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
