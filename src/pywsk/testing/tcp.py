"""Small Linux TCP probes for tests: connection state, queue sizes, abort with RST.

These are the measured mechanics from the project's Linux notes, wrapped for tests:

* :func:`tcp_state` reads ``tcpi_state`` (byte 0 of ``TCP_INFO``), which never lies about
  FIN versus RST: a received FIN leaves ``CLOSE_WAIT``, a received RST leaves ``CLOSE``.
* :func:`siocoutq` is unacked + unsent bytes, plus one while our FIN is unacknowledged.
  It is meaningless after our own :func:`abort_with_rst`.
* :func:`abort_with_rst` is ``connect(fd, {AF_UNSPEC})``: an RST goes out at once, the
  fd stays open in state ``CLOSE``, and threads blocked on the fd are woken. It is the
  only abort that is safe while another thread may be inside a syscall on the fd.
* :func:`set_linger_abort` arms ``SO_LINGER {1, 0}`` so that the next ``close()`` sends
  an RST (only safe when no other thread uses the fd).

This module repeats a few lines of :mod:`pywsk.mechanics.linux` on purpose: the tests
check the provider's view of a connection against these independent probes, so they must
not share its code.
"""

from __future__ import annotations

import ctypes
import enum
import errno
import fcntl
import functools
import os
import socket
import struct

__all__ = [
    "TcpState",
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
    "SIOCINQ",
    "SIOCOUTQ",
    "SIOCOUTQNSD",
    "tcp_state",
    "tcp_state_name",
    "siocinq",
    "siocoutq",
    "siocoutqnsd",
    "so_error",
    "abort_with_rst",
    "set_linger_abort",
    "set_quickack",
    "set_user_timeout",
    "has_ipv6_loopback",
]


class TcpState(enum.IntEnum):
    """``include/net/tcp_states.h``; the values ``tcpi_state`` reports."""

    ESTABLISHED = 1
    SYN_SENT = 2
    SYN_RECV = 3
    FIN_WAIT1 = 4
    FIN_WAIT2 = 5
    TIME_WAIT = 6
    CLOSE = 7
    CLOSE_WAIT = 8
    LAST_ACK = 9
    LISTEN = 10
    CLOSING = 11
    NEW_SYN_RECV = 12
    BOUND_INACTIVE = 13


ESTABLISHED = TcpState.ESTABLISHED
SYN_SENT = TcpState.SYN_SENT
SYN_RECV = TcpState.SYN_RECV
FIN_WAIT1 = TcpState.FIN_WAIT1
FIN_WAIT2 = TcpState.FIN_WAIT2
TIME_WAIT = TcpState.TIME_WAIT
CLOSE = TcpState.CLOSE
CLOSE_WAIT = TcpState.CLOSE_WAIT
LAST_ACK = TcpState.LAST_ACK
LISTEN = TcpState.LISTEN
CLOSING = TcpState.CLOSING

SIOCINQ = 0x541B  # == FIONREAD: unread bytes in the receive queue
SIOCOUTQ = 0x5411  # == TIOCOUTQ: write_seq - snd_una (unacked + unsent, our FIN counts 1)
SIOCOUTQNSD = 0x894B  # write_seq - snd_nxt: not yet sent

_LINGER_ABORT = struct.pack("ii", 1, 0)

_SocketOrFd = socket.socket | int


def _fd(sock: _SocketOrFd) -> int:
    return sock if isinstance(sock, int) else sock.fileno()


def tcp_state(sock: socket.socket) -> int:
    """``tcpi_state`` of a TCP socket (compare with :class:`TcpState`); one syscall."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]


def tcp_state_name(state: int) -> str:
    """``"FIN_WAIT2"`` for 5; the number itself for a value this module does not know."""
    try:
        return TcpState(state).name
    except ValueError:
        return str(state)


def _ioctl_int(sock: _SocketOrFd, request: int) -> int:
    out = fcntl.ioctl(_fd(sock), request, b"\0\0\0\0")
    value: int = struct.unpack("i", out)[0]
    return value


def siocinq(sock: _SocketOrFd) -> int:
    """Bytes waiting in the receive queue (``SIOCINQ``)."""
    return _ioctl_int(sock, SIOCINQ)


def siocoutq(sock: _SocketOrFd) -> int:
    """Unacknowledged + unsent bytes, +1 while our FIN is unacknowledged (``SIOCOUTQ``)."""
    return _ioctl_int(sock, SIOCOUTQ)


def siocoutqnsd(sock: _SocketOrFd) -> int:
    """Bytes not yet sent at all, +1 while our FIN is unsent (``SIOCOUTQNSD``)."""
    return _ioctl_int(sock, SIOCOUTQNSD)


def so_error(sock: socket.socket) -> int:
    """Read (and so consume) the pending socket error; 0 if none."""
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)


_libc = ctypes.CDLL(None, use_errno=True)
_libc.connect.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32]
_libc.connect.restype = ctypes.c_int
_UNSPEC = (ctypes.c_ubyte * 16)()  # struct sockaddr with sa_family = AF_UNSPEC (0)


def abort_with_rst(sock: _SocketOrFd) -> None:
    """Abort the connection with an RST now; the fd stays open (state ``CLOSE``).

    ``connect(fd, {sa_family=AF_UNSPEC}, 16)``. Both queues are purged; a thread blocked
    in ``recv()`` on the fd gets ``EPIPE``. Raises :class:`OSError` on failure.
    """
    while _libc.connect(_fd(sock), ctypes.addressof(_UNSPEC), ctypes.sizeof(_UNSPEC)) != 0:
        err = ctypes.get_errno()
        if err != errno.EINTR:
            raise OSError(err, os.strerror(err))


def set_linger_abort(sock: socket.socket) -> None:
    """``SO_LINGER {1, 0}``: the next ``close()`` sends an RST instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ABORT)


def set_quickack(sock: socket.socket) -> None:
    """``TCP_QUICKACK``: send any pending (delayed) ACK now, e.g. for a just-read FIN."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)


def set_user_timeout(sock: socket.socket, milliseconds: int) -> None:
    """``TCP_USER_TIMEOUT``: give up (``ETIMEDOUT``) when data stays unacked this long."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, milliseconds)


@functools.cache
def has_ipv6_loopback() -> bool:
    """True when a TCP socket can bind ``::1`` here (some containers have no IPv6)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True
