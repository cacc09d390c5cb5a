"""asyncio Protocols and Transports, on the default loop (``impl_uvloop`` runs the same code
on uvloop).  See :mod:`benchmarks.common` for the command line.

Server: ``create_server`` with an echo Protocol that writes the echo, ``write_eof()`` and
closes at EOF.  Client: CONC coroutines, each running ``create_connection`` in turn and
waiting for ``connection_lost``.  Bulk sender: ``pause_writing`` / ``resume_writing`` flow
control; bulk receiver: ``data_received`` (a fresh ``bytes`` per read, as asyncio gives it).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any, cast

from . import dgram_asyncio
from .common import (
    CHUNK,
    HOST,
    PAYLOAD,
    announce_port,
    dispatch,
    emit,
    idle_ready,
    now,
    restart_cpu_clock,
    set_congestion,
    split_evenly,
    wait_for_go,
)

TIMEOUT = 120.0


class _Stats:
    __slots__ = ("bad", "bytes", "conns", "done", "n", "started")

    def __init__(self, n: int, done: asyncio.Future[None]) -> None:
        self.n = n
        self.started = False
        self.conns = 0
        self.bytes = 0
        self.bad = 0
        self.done = done


class EchoServer(asyncio.Protocol):
    """Reads to EOF, echoes, FIN after the echo, closes."""

    def __init__(self, stats: _Stats) -> None:
        self.stats = stats
        self.data = bytearray()
        self.transport: asyncio.Transport | None = None
        if not stats.started:
            restart_cpu_clock()
            stats.started = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self.data += data

    def eof_received(self) -> bool:
        assert self.transport is not None
        st = self.stats
        if not self.data:  # an idle connection closed by the client
            self.transport.close()
            return True
        st.bad += self.data != PAYLOAD
        st.bytes += len(self.data)
        self.transport.write(bytes(self.data))
        self.transport.write_eof()
        self.transport.close()
        st.conns += 1
        if st.conns == st.n and not st.done.done():
            st.done.set_result(None)
        return True


class ChurnClient(asyncio.Protocol):
    """Sends the payload and its FIN at once, collects the echo, closes at EOF."""

    def __init__(self, finished: asyncio.Future[bytes]) -> None:
        self.finished = finished
        self.data = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self.transport.write(PAYLOAD)
        self.transport.write_eof()  # graceful disconnect of our direction

    def data_received(self, data: bytes) -> None:
        self.data += data

    def eof_received(self) -> bool:
        assert self.transport is not None
        self.transport.close()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.finished.done():
            if exc is not None:
                self.finished.set_exception(exc)
            else:
                self.finished.set_result(bytes(self.data))


class Idle(asyncio.Protocol):
    """An idle connection: holds its transport, does nothing."""


async def churn_server_main(impl: str, n: int, idle: int) -> int:
    loop = asyncio.get_running_loop()
    stats = _Stats(n, loop.create_future())
    server = await loop.create_server(lambda: EchoServer(stats), HOST, 0, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    if idle:
        accepted = [0]

        def idle_protocol() -> Idle:
            accepted[0] += 1
            if accepted[0] == idle:
                idle_ready()
            return Idle()

        idle_server = await loop.create_server(idle_protocol, HOST, 0, backlog=4096)
        announce_port(port, idle_server.sockets[0].getsockname()[1])
    else:
        announce_port(port)
    await asyncio.wait_for(stats.done, TIMEOUT)
    server.close()
    emit("server", impl, conns=stats.conns, bytes=stats.bytes, bad=stats.bad)
    return int(stats.bad != 0)


async def churn_client_main(
    impl: str, port: int, n: int, conc: int, idle: int, idle_port: int
) -> int:
    loop = asyncio.get_running_loop()
    idle_transports = [
        (await loop.create_connection(Idle, HOST, idle_port))[0] for _ in range(idle)
    ]
    if idle:
        await loop.run_in_executor(None, wait_for_go)
    stats = _Stats(n, loop.create_future())

    async def worker(count: int) -> None:
        for _ in range(count):
            finished: asyncio.Future[bytes] = loop.create_future()
            await loop.create_connection(partial(ChurnClient, finished), HOST, port)
            data = await finished
            stats.bad += data != PAYLOAD
            stats.bytes += len(data)
            stats.conns += 1

    restart_cpu_clock()
    t0 = now()
    await asyncio.wait_for(asyncio.gather(*(worker(c) for c in split_evenly(n, conc))), TIMEOUT)
    seconds = now() - t0
    for transport in idle_transports:
        transport.close()
    emit(
        "client",
        impl,
        conns=stats.conns,
        bytes=stats.bytes,
        bad=stats.bad,
        seconds=seconds,
        rate=stats.conns / seconds,
        idle=idle,
    )
    return int(stats.bad != 0 or stats.conns != n)


class Counter(asyncio.Protocol):
    """Bulk receiver: counts to EOF, then FIN and close."""

    def __init__(self, done: asyncio.Future[tuple[int, float]]) -> None:
        self.done = done
        self.total = 0
        self.t0 = 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self.t0 = now()

    def data_received(self, data: bytes) -> None:
        self.total += len(data)

    def eof_received(self) -> bool:
        assert self.transport is not None
        self.done.set_result((self.total, now() - self.t0))
        self.transport.write_eof()
        self.transport.close()
        return True


class Sender(asyncio.Protocol):
    """Bulk sender: flow control, and the receiver's EOF."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.resume: asyncio.Future[None] | None = None
        self.eof: asyncio.Future[None] = loop.create_future()

    def pause_writing(self) -> None:
        self.resume = self.loop.create_future()

    def resume_writing(self) -> None:
        if self.resume is not None:
            self.resume.set_result(None)
            self.resume = None

    def eof_received(self) -> bool:
        self.eof.set_result(None)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        lost = exc or ConnectionError("connection lost")
        if self.resume is not None and not self.resume.done():
            self.resume.set_exception(lost)
        if not self.eof.done():
            self.eof.set_exception(lost)


async def bulk_recv_main(impl: str) -> int:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[tuple[int, float]] = loop.create_future()
    server = await loop.create_server(lambda: Counter(done), HOST, 0)
    announce_port(server.sockets[0].getsockname()[1])
    restart_cpu_clock()  # the transfer's CPU: from the accept on
    total, seconds = await asyncio.wait_for(done, TIMEOUT)
    server.close()
    emit("receiver", impl, bytes=total, seconds=seconds)
    return 0


async def send_bulk(transport: asyncio.WriteTransport, sender: Sender, total: int) -> int:
    """``total`` bytes in CHUNK-sized writes, paused while the protocol says so, then
    ``write_eof()`` and the receiver's EOF; the bytes sent."""
    chunk = b"b" * CHUNK
    sent = 0
    while sent < total:
        size = min(CHUNK, total - sent)
        transport.write(chunk if size == CHUNK else chunk[:size])
        sent += size
        if sender.resume is not None:
            await sender.resume
    transport.write_eof()  # graceful disconnect after every queued byte
    await asyncio.wait_for(sender.eof, TIMEOUT)
    return sent


async def bulk_send_main(impl: str, port: int, total: int, cc: str) -> int:
    loop = asyncio.get_running_loop()
    restart_cpu_clock()  # the transfer's CPU: from the connect on
    t0 = now()
    sock = socket.socket()
    set_congestion(sock, cc)
    sock.setblocking(False)
    await loop.sock_connect(sock, (HOST, port))
    transport, sender = await loop.create_connection(lambda: Sender(loop), sock=sock)
    sent = await send_bulk(transport, sender, total)
    seconds = now() - t0
    transport.close()
    emit("sender", impl, bytes=sent, seconds=seconds, MBps=sent / seconds / 1e6)
    return 0


def main(impl: str, run: Callable[[Coroutine[Any, Any, int]], int]) -> None:
    """Dispatch the command line to the coroutines above, run by ``run``."""
    dispatch(
        {
            "churn-server": lambda n, idle="0": run(churn_server_main(impl, int(n), int(idle))),
            "churn-client": lambda port, n, conc, idle="0", idle_port="0": run(
                churn_client_main(impl, int(port), int(n), int(conc), int(idle), int(idle_port))
            ),
            "bulk-recv": lambda: run(bulk_recv_main(impl)),
            "bulk-send": lambda port, total, cc="default": run(
                bulk_send_main(impl, int(port), int(total), cc)
            ),
            **dgram_asyncio.handlers(impl, run),
        }
    )


if __name__ == "__main__":
    main("asyncio", asyncio.run)
