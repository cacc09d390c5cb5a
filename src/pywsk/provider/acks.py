"""When the kernel is done with sent bytes: MSG_ZEROCOPY completions, no polling.

What it does: :func:`watch` turns on ``SO_ZEROCOPY``; every ``sendmsg`` made with
:data:`MSG_ZEROCOPY` then sends from the caller's buffer (the WSK client's locked MDLs - no
copy, as WskSend's "no buffering" says) and gets a number, counted from 0 per socket (one
per call that took at least one byte).  When TCP no longer holds any of a call's bytes -
they were acknowledged by the peer and freed from the retransmit queue - the kernel queues
a completion on the socket's error queue; that is an EPOLLERR edge on the socket's one
registration, so the provider learns of acknowledgements when they happen.
:func:`completions` drains the queue and returns the completed number ranges.  A completion
also comes when the kernel throws the bytes away (a reset, a transport timeout), so it is
only the wake-up: :func:`bytes_acked` (``tcpi_bytes_acked``, cumulative) is the truth.

Why not the alternatives: ``SO_TIMESTAMPING`` TX_ACK reports are charged to the receive
buffer and silently dropped when it is full (a peer that sends while the client does not
read: every echo), so a send would never complete; ``tcpi_bytes_acked`` and ``SIOCOUTQ``
have no edge of their own and would need polling.  Zerocopy completions are accounted to
the send (``optmem``), never dropped, and coalesce into ranges.

What it refuses: nothing; on a kernel without ``SO_ZEROCOPY`` :func:`watch` returns False
and the caller falls back to completing sends when the kernel took them.

What always holds: reading the error queue takes only completions (TCP queues nothing else
there without ``IP_RECVERR``), never data, and never clears the socket's error
(``SO_ERROR``): only a dequeued ICMP report would.
"""

from __future__ import annotations

import socket
import struct
from typing import Final

__all__ = ["MSG_ZEROCOPY", "bytes_acked", "completions", "watch"]

#: linux/socket.h and asm-generic/socket.h (Python 3.11 exports neither).
MSG_ZEROCOPY: Final = getattr(socket, "MSG_ZEROCOPY", 0x4000000)
SO_ZEROCOPY: Final = getattr(socket, "SO_ZEROCOPY", 60)
#: SO_EE_ORIGIN_ZEROCOPY (linux/errqueue.h).
_ORIGIN_ZEROCOPY: Final = 5
#: struct sock_extended_err: errno, origin, type, code, pad, info (lo), data (hi).
_EXTENDED_ERR: Final = struct.Struct("=IBBBBII")


def watch(sock: socket.socket) -> bool:
    """Turn on zerocopy completions for ``sock``; True when the kernel accepted it."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ZEROCOPY, 1)
    except OSError:
        return False
    return True


def completions(sock: socket.socket) -> list[tuple[int, int]]:
    """Drain the error queue: the completed call numbers, as inclusive ``(lo, hi)`` ranges
    (numbers are 32-bit and wrap)."""
    done: list[tuple[int, int]] = []
    while True:
        try:
            _data, ancillary, _flags, _address = sock.recvmsg(
                0, 128, socket.MSG_ERRQUEUE | socket.MSG_DONTWAIT
            )
        except OSError:  # empty (EAGAIN), or the socket is gone
            return done
        for _level, _kind, payload in ancillary:
            if len(payload) < _EXTENDED_ERR.size:
                continue
            _errno, origin, _type, _code, _pad, lo, hi = _EXTENDED_ERR.unpack_from(payload)
            if origin == _ORIGIN_ZEROCOPY:
                done.append((lo, hi))


_BYTES_ACKED: Final = struct.Struct("=Q")
#: Offset of ``tcpi_bytes_acked`` in struct tcp_info (linux/tcp.h, Linux 4.1 and later).
_BYTES_ACKED_AT: Final = 120


def bytes_acked(sock: socket.socket) -> int:
    """``tcpi_bytes_acked``: bytes the peer has acknowledged (the SYN counts on an active
    open; subtract the value read before the first data byte).  -1 if unreadable."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _BYTES_ACKED_AT + 8)
    except OSError:
        return -1
    if len(info) < _BYTES_ACKED_AT + 8:
        return -1
    return int(_BYTES_ACKED.unpack_from(info, _BYTES_ACKED_AT)[0])
