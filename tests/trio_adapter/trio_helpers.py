"""Helpers for the trio adapter's tests: connected pairs of pywsk streams over loopback TCP.

Both ends of every pair are :class:`pywsk.trio.WskStream` objects: the client from
``open_connection``, the server from a pywsk listener's ``accept``.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Sequence

import trio.testing  # type: ignore[import-untyped, unused-ignore]

import pywsk.trio
from pywsk._native import SocketOption
from pywsk.testing import tcp
from pywsk.wsk import SO_RCVBUF, SO_SNDBUF, SOL_SOCKET

#: Small, fixed socket buffers (set before connect / listen, so Linux does not autotune
#: them): a stream fills after a few KiB.
SMALL_BUFFERS: Sequence[SocketOption] = (
    (SOL_SOCKET, SO_SNDBUF, 4096),
    (SOL_SOCKET, SO_RCVBUF, 4096),
)


def kernel(stream: pywsk.trio.WskStream) -> socket.socket:
    """The Linux socket behind a stream (tests only: checks of kernel state)."""
    return stream.socket


async def stream_pair(
    options: Sequence[SocketOption] = (),
) -> tuple[pywsk.trio.WskStream, pywsk.trio.WskStream]:
    """A connected (client, server) pair of pywsk streams on 127.0.0.1."""
    listener = await pywsk.trio.open_listener("127.0.0.1", 0, options=options)
    try:
        async with trio.open_nursery() as nursery:
            accepted: list[pywsk.trio.WskStream] = []

            async def take() -> None:
                accepted.append(await listener.accept())

            nursery.start_soon(take)
            client = await pywsk.trio.open_connection(
                "127.0.0.1", listener.local_address[1], options=options
            )
    finally:
        await listener.aclose()
    return client, accepted[0]


def clogged_now(stream: pywsk.trio.WskStream) -> bool:
    """True when the stream cannot send more until its peer reads: data of a ``send_all``
    is in flight (the kernel did not take all of it), the kernel's send buffer is not
    writable, and it holds bytes it could not send yet (the peer's window is closed)."""
    if stream._inflight is None:  # the adapter's remainder in flight (tests only)
        return False
    sock = kernel(stream)
    writable = select.select([], [sock], [], 0)[1]
    return not writable and tcp.siocoutqnsd(sock) > 0


async def clog(stream: pywsk.trio.WskStream) -> None:
    """Send until ``send_all`` blocks and :func:`clogged_now` holds twice, 50 ms apart."""
    for _ in range(10_000):
        with trio.move_on_after(0.05) as scope:
            await stream.send_all(b"x" * 10_000)
        if scope.cancelled_caught and clogged_now(stream):
            with trio.move_on_after(0.05):
                await stream.wait_send_all_might_not_block()
            if clogged_now(stream):
                return
    raise AssertionError("the stream never clogged")
