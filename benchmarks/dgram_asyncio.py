"""The datagram workload on asyncio's DatagramProtocol (the default loop, or uvloop).

Server: ``create_datagram_endpoint`` with a protocol whose ``datagram_received`` sends the
datagram back with ``transport.sendto``.  Client: one endpoint; a batch leaves as BATCH
``sendto`` calls, and the next batch is sent from ``datagram_received`` when the last echo
of the current one arrived - no coroutine per datagram, the fastest asyncio shape.
See :mod:`benchmarks.common` for the command line.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .common import DGRAM_TIMEOUT, HOST, announce_port, dgram_payloads, emit, now, restart_cpu_clock


class Echo(asyncio.DatagramProtocol):
    """Echoes every datagram to its sender; done after ``n``."""

    def __init__(self, n: int, size: int, done: asyncio.Future[None]) -> None:
        self.n, self.size, self.done = n, size, done
        self.count = self.bytes = self.bad = 0
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self.count:
            restart_cpu_clock()
        self.count += 1
        self.bytes += len(data)
        self.bad += len(data) != self.size
        self.transport.sendto(data, addr)
        if self.count == self.n and not self.done.done():
            self.done.set_result(None)


class Batches(asyncio.DatagramProtocol):
    """Sends a batch, checks its echoes in order, sends the next; done after ``n``."""

    def __init__(self, n: int, payloads: list[bytes], done: asyncio.Future[None]) -> None:
        self.n, self.payloads, self.done = n, payloads, done
        self.count = self.bytes = self.bad = 0
        self.want = self.got = 0
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def send_batch(self) -> None:
        self.want = min(len(self.payloads), self.n - self.count)
        self.got = 0
        sendto = self.transport.sendto
        for payload in self.payloads[: self.want]:
            sendto(payload)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.bad += data != self.payloads[self.got]
        self.bytes += len(data)
        self.got += 1
        if self.got == self.want:
            self.count += self.want
            if self.count < self.n:
                self.send_batch()
            elif not self.done.done():
                self.done.set_result(None)

    def error_received(self, exc: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(exc)


async def server_main(impl: str, n: int, size: int, batch: int) -> int:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    transport, echo = await loop.create_datagram_endpoint(
        lambda: Echo(n, size, done), local_addr=(HOST, 0)
    )
    announce_port(transport.get_extra_info("sockname")[1])
    await _progress(done, echo, n)
    transport.close()
    emit("server", impl, datagrams=echo.count, bytes=echo.bytes, bad=echo.bad)
    return int(echo.bad != 0 or echo.count != n)


async def client_main(impl: str, port: int, n: int, size: int, batch: int) -> int:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    payloads = dgram_payloads(size, batch)
    transport, proto = await loop.create_datagram_endpoint(
        lambda: Batches(n, payloads, done), local_addr=(HOST, 0), remote_addr=(HOST, port)
    )
    restart_cpu_clock()
    t0 = now()
    proto.send_batch()
    await _progress(done, proto, n)
    seconds = now() - t0
    transport.close()
    emit(
        "client",
        impl,
        datagrams=proto.count,
        bytes=proto.bytes,
        bad=proto.bad,
        seconds=seconds,
        rate=proto.count / seconds,
    )
    return int(proto.bad != 0 or proto.count != n)


async def _progress(done: asyncio.Future[None], counter: Any, n: int) -> None:
    """Wait for ``done``; give up when ``counter.count`` has not moved for DGRAM_TIMEOUT."""
    last = -1
    while not done.done():
        if counter.count == last:
            raise TimeoutError(f"no datagram for {DGRAM_TIMEOUT} s ({counter.count} of {n})")
        last = counter.count
        await asyncio.wait([done], timeout=DGRAM_TIMEOUT)
    done.result()


def handlers(impl: str, run: Any) -> dict[str, Any]:
    """The datagram commands of :func:`benchmarks.common.dispatch`, run by ``run``."""
    return {
        "dgram-server": lambda n, size, batch: run(
            server_main(impl, int(n), int(size), int(batch))
        ),
        "dgram-client": lambda port, n, size, batch: run(
            client_main(impl, int(port), int(n), int(size), int(batch))
        ),
    }
