"""pywsk.aio's asyncio Protocols and Transports (``pywsk.aio.create_connection`` /
``create_server``), on uvloop: the same Protocol classes as :mod:`benchmarks.impl_asyncio`
runs on asyncio's and uvloop's own transports, so the comparison is like for like.

What differs is what the transport does with them, and it is pywsk's honest disconnect:
``write_eof()`` is the graceful disconnect, and ``close()`` sends what is buffered, then
waits until the peer has **acknowledged our FIN** before it closes the socket (an RST if
the peer had not disconnected too - these protocols close at EOF, so none is sent).
asyncio's and uvloop's transports close at once.  Each side also checks the transport's
own account: a graceful disconnect that did not complete, or an ending other than a
graceful one, counts as a bad connection.  See :mod:`benchmarks.common` for the command line.
"""

from __future__ import annotations

import asyncio
import json
import tracemalloc
from functools import partial

import pywsk.aio

from .common import (
    HOST,
    PAYLOAD,
    announce_port,
    dispatch,
    emit,
    now,
    restart_cpu_clock,
    set_congestion,
    split_evenly,
)
from .impl_asyncio import TIMEOUT, ChurnClient, Counter, EchoServer, Sender, _Stats, send_bulk

IMPL = "pywsk.aio-proto"


class HonestEcho(EchoServer):
    """The echo server; a disconnect that failed is a bad connection."""

    def disconnect_complete(self, exc: Exception | None) -> None:
        self.stats.bad += exc is not None


class HonestClient(ChurnClient):
    """The churn client; a disconnect that failed (or never completed) is an error."""

    def disconnect_complete(self, exc: Exception | None) -> None:
        if exc is not None and not self.finished.done():
            self.finished.set_exception(exc)


def _no_idle(idle: int) -> None:
    if idle:
        raise SystemExit(f"{IMPL}: churn beside idle connections is not implemented")


async def churn_server_main(n: int, idle: int) -> int:
    _no_idle(idle)
    loop = asyncio.get_running_loop()
    stats = _Stats(n, loop.create_future())
    server = await pywsk.aio.create_server(lambda: HonestEcho(stats), HOST, 0)
    announce_port(server.local_address[1])
    await asyncio.wait_for(stats.done, TIMEOUT)
    server.close()
    emit("server", IMPL, conns=stats.conns, bytes=stats.bytes, bad=stats.bad)
    return int(stats.bad != 0)


async def churn_client_main(port: int, n: int, conc: int, idle: int) -> int:
    _no_idle(idle)
    loop = asyncio.get_running_loop()
    counts = {"conns": 0, "bytes": 0, "bad": 0}

    async def worker(count: int) -> None:
        for _ in range(count):
            finished: asyncio.Future[bytes] = loop.create_future()
            await pywsk.aio.create_connection(partial(HonestClient, finished), HOST, port)
            data = await finished
            counts["bad"] += data != PAYLOAD
            counts["bytes"] += len(data)
            counts["conns"] += 1

    restart_cpu_clock()
    t0 = now()
    await asyncio.wait_for(asyncio.gather(*(worker(c) for c in split_evenly(n, conc))), TIMEOUT)
    seconds = now() - t0
    emit("client", IMPL, seconds=seconds, rate=counts["conns"] / seconds, idle=0, **counts)
    return int(counts["bad"] != 0 or counts["conns"] != n)


async def bulk_recv_main() -> int:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[tuple[int, float]] = loop.create_future()
    server = await pywsk.aio.create_server(lambda: Counter(done), HOST, 0)
    announce_port(server.local_address[1])
    restart_cpu_clock()  # the transfer's CPU: from the accept on
    total, seconds = await asyncio.wait_for(done, TIMEOUT)
    server.close()
    await asyncio.wait_for(server.wait_closed(), TIMEOUT)  # our FIN acknowledged, closed
    emit("receiver", IMPL, bytes=total, seconds=seconds)
    return 0


async def bulk_send_main(port: int, total: int, cc: str) -> int:
    loop = asyncio.get_running_loop()
    restart_cpu_clock()  # the transfer's CPU: from the connect on
    t0 = now()
    transport, sender = await pywsk.aio.create_connection(lambda: Sender(loop), HOST, port)
    assert isinstance(sender, Sender)
    set_congestion(transport.get_extra_info("socket"), cc)
    sent = await send_bulk(transport, sender, total)
    seconds = now() - t0
    transport.close()
    emit("sender", IMPL, bytes=sent, seconds=seconds, MBps=sent / seconds / 1e6)
    return 0


async def heap_main(count: int) -> int:
    """Python heap per idle client connection (tracemalloc, as
    :func:`benchmarks.impl_aio.heap_main`): the transport, its connection, an empty
    protocol; reading is always on, so nothing more is needed to wait for data."""
    from .scaling import _peer, _rss, _top, _traced

    peer, line = _peer("hold-accept")
    port = int(line.split()[1])

    async def open_one() -> pywsk.aio.WskTransport:
        transport, _ = await pywsk.aio.create_connection(asyncio.Protocol, HOST, port)
        return transport

    for transport in [await open_one() for _ in range(20)]:
        transport.abort()  # warm every cache and free list before measuring
    tracemalloc.start(1)
    rss0, m0 = _rss(), _traced()
    base = tracemalloc.take_snapshot()
    transports = [await open_one() for _ in range(count)]
    rss1, m1 = _rss(), _traced()
    snap1 = tracemalloc.take_snapshot()
    tracemalloc.stop()
    for transport in transports:
        transport.abort()
    assert peer.stdin is not None
    peer.stdin.close()
    peer.wait()
    result = {
        "side": f"{IMPL} client",
        "conns": count,
        "heap_bytes_per_conn": (m1 - m0) / count,
        "rss_bytes_per_conn": (rss1 - rss0) / count,
        "top_connected": _top(snap1, base, count),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    run = pywsk.aio.run
    dispatch(
        {
            "churn-server": lambda n, idle="0": run(churn_server_main(int(n), int(idle))),
            "churn-client": lambda port, n, conc, idle="0", idle_port="0": run(
                churn_client_main(int(port), int(n), int(conc), int(idle))
            ),
            "bulk-recv": lambda: run(bulk_recv_main()),
            "bulk-send": lambda port, total, cc="default": run(
                bulk_send_main(int(port), int(total), cc)
            ),
            "heap": lambda count="2000": run(heap_main(int(count))),
        }
    )
