"""pywsk's asyncio layer, ``pywsk.aio``, as its documentation shows it (on uvloop).

Natively on the loop: every operation is a non-blocking syscall on the loop's thread, the
sockets' edges come from one edge-triggered epoll that the loop watches (no provider thread,
no IRP).  Churn client, per connection: ``connect``, ``send_all``,
``disconnect()`` (returns once our FIN is acknowledged), ``receive_some`` to ``b""``,
``aclose()`` (no RST: both directions are closed).  Server: ``serve`` with a handler that
reads to ``b""``, echoes, and disconnects; the server closes the connection when the handler
returns.  Bulk: ``send_all`` of CHUNK-sized blocks, one after another.

Congestion control: as in :mod:`benchmarks.impl_pywsk`, ``TCP_CONGESTION`` is set on the
Linux socket underneath (WSK has no option for it).  See :mod:`benchmarks.common` for the
command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tracemalloc
from typing import Any

import pywsk.aio

from . import dgram_aio
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

IMPL = "pywsk.aio"
TIMEOUT = 120.0


async def _read_to_eof(conn: pywsk.aio.Connection, size: int = 65536) -> bytearray:
    data = bytearray()
    while chunk := await conn.receive_some(size):
        data += chunk
    return data


async def churn_server_main(n: int, idle: int) -> int:
    counts = {"conns": 0, "bytes": 0, "bad": 0, "started": 0}
    done = asyncio.Event()

    async def handler(conn: pywsk.aio.Connection) -> None:
        if not counts["started"]:
            restart_cpu_clock()
            counts["started"] = 1
        data = await _read_to_eof(conn)
        if not data:  # an idle connection the client closed
            return
        await conn.send_all(data)  # echo
        await conn.disconnect()  # FIN after the echo, acknowledged
        counts["conns"] += 1
        counts["bytes"] += len(data)
        counts["bad"] += data != PAYLOAD
        if counts["conns"] == n:
            done.set()

    held = [0]

    async def hold(conn: pywsk.aio.Connection) -> None:
        """An idle connection: wait for the client to close it (a receive stays pending)."""
        held[0] += 1
        if held[0] == idle:
            idle_ready()
        with contextlib.suppress(ConnectionError):
            await _read_to_eof(conn)

    server = await pywsk.aio.serve(handler, HOST, 0)
    if idle:
        idle_server = await pywsk.aio.serve(hold, HOST, 0)
        announce_port(server.local_address[1], idle_server.local_address[1])
    else:
        announce_port(server.local_address[1])
    await asyncio.wait_for(done.wait(), TIMEOUT)
    del counts["started"]
    emit("server", IMPL, **counts)
    if idle:  # the idle connections stay open; do not wait for 10,000 cancellations
        os._exit(int(counts["bad"] != 0))
    await server.aclose()
    return int(counts["bad"] != 0)


async def churn_client_main(port: int, n: int, conc: int, idle: int, idle_port: int) -> int:
    counts = {"conns": 0, "bytes": 0, "bad": 0}
    idle_conns = [await pywsk.aio.connect(HOST, idle_port) for _ in range(idle)]
    if idle:
        await asyncio.get_running_loop().run_in_executor(None, wait_for_go)

    async def worker(count: int) -> None:
        for _ in range(count):
            async with await pywsk.aio.connect(HOST, port) as conn:
                await conn.send_all(PAYLOAD)
                await conn.disconnect()  # graceful: returns once our FIN is acknowledged
                data = await _read_to_eof(conn)
            counts["conns"] += 1
            counts["bytes"] += len(data)
            counts["bad"] += data != PAYLOAD

    restart_cpu_clock()
    t0 = now()
    await asyncio.wait_for(asyncio.gather(*(worker(c) for c in split_evenly(n, conc))), TIMEOUT)
    seconds = now() - t0
    for conn in idle_conns:
        await conn.aclose()
    emit("client", IMPL, seconds=seconds, rate=counts["conns"] / seconds, idle=idle, **counts)
    return int(counts["bad"] != 0 or counts["conns"] != n)


async def bulk_recv_main() -> int:
    async with await pywsk.aio.listen(HOST, 0) as listener:
        announce_port(listener.local_address[1])
        restart_cpu_clock()  # the transfer's CPU: from the accept on
        conn = await asyncio.wait_for(listener.accept(), TIMEOUT)
        t0 = now()
        total = 0
        while chunk := await conn.receive_some(CHUNK):
            total += len(chunk)
        seconds = now() - t0
        await conn.disconnect()
        await conn.aclose()
    emit("receiver", IMPL, bytes=total, seconds=seconds)
    return 0


async def bulk_send_main(port: int, total: int, cc: str) -> int:
    chunk = b"b" * CHUNK
    restart_cpu_clock()  # the transfer's CPU: from the connect on
    t0 = now()
    conn = await pywsk.aio.connect(HOST, port)
    set_congestion(conn.socket, cc)  # see the module notes
    sent = 0
    while sent < total:
        size = min(CHUNK, total - sent)
        await conn.send_all(chunk if size == CHUNK else chunk[:size])
        sent += size
    await conn.disconnect()  # every byte and our FIN acknowledged
    if await conn.receive_some(64) != b"":
        return 1
    seconds = now() - t0
    await conn.aclose()
    emit("sender", IMPL, bytes=sent, seconds=seconds, MBps=sent / seconds / 1e6)
    return 0


async def heap_main(count: int) -> int:
    """Python heap per idle pywsk.aio client connection (tracemalloc, as
    :func:`benchmarks.scaling.heap` measures the faithful layer and uvloop): connected, then
    with a ``receive_some`` pending on each (a task parked on the socket's edge)."""
    from .scaling import _peer, _rss, _top, _traced

    peer, line = _peer("hold-accept")
    port = int(line.split()[1])
    for conn in [await pywsk.aio.connect(HOST, port) for _ in range(20)]:
        await conn.aclose()  # warm every cache and free list before measuring
    tracemalloc.start(1)
    rss0, m0 = _rss(), _traced()
    base = tracemalloc.take_snapshot()
    conns = [await pywsk.aio.connect(HOST, port) for _ in range(count)]
    rss1, m1 = _rss(), _traced()
    snap1 = tracemalloc.take_snapshot()
    receiving = [asyncio.create_task(conn.receive_some()) for conn in conns]
    await asyncio.sleep(0)  # each task tries its receive and parks
    m2 = _traced()
    snap2 = tracemalloc.take_snapshot()
    tracemalloc.stop()
    for task in receiving:
        task.cancel()
    await asyncio.gather(*receiving, return_exceptions=True)
    for conn in conns:
        await conn.aclose()
    assert peer.stdin is not None
    peer.stdin.close()
    peer.wait()
    result = {
        "side": "pywsk.aio client",
        "conns": count,
        "heap_bytes_per_conn": (m1 - m0) / count,
        "heap_bytes_per_conn_with_receive": (m2 - m0) / count,
        "rss_bytes_per_conn": (rss1 - rss0) / count,
        "top_connected": _top(snap1, base, count),
        "top_with_receive": _top(snap2, base, count),
    }
    print(json.dumps(result))
    return 0


def pycalls_main(conns: int) -> int:
    """Python calls per churn connection, client and server together in one loop (a
    ``sys.setprofile`` counter of "call" events - coroutine resumptions included - and of
    calls of built-in functions), printed as one JSON line."""
    counts = {"call": 0, "c_call": 0}

    def profile(_frame: Any, event: str, _arg: Any) -> None:
        if event in counts:
            counts[event] += 1

    async def main() -> None:
        finished = asyncio.Event()
        served = [0]

        async def handler(conn: pywsk.aio.Connection) -> None:
            data = await _read_to_eof(conn)
            await conn.send_all(data)
            await conn.disconnect()
            served[0] += 1
            if served[0] == conns:
                finished.set()

        server = await pywsk.aio.serve(handler, HOST, 0)
        port = server.local_address[1]

        async def one() -> None:
            async with await pywsk.aio.connect(HOST, port) as conn:
                await conn.send_all(PAYLOAD)
                await conn.disconnect()
                await _read_to_eof(conn)

        await one()  # warm
        served[0] = 0
        sys.setprofile(profile)
        await asyncio.gather(*(one() for _ in range(conns)))
        await finished.wait()
        sys.setprofile(None)
        await server.aclose()

    run(main())
    print(json.dumps({"conns": conns, **{k: v / conns for k, v in counts.items()}}))
    return 0


run = pywsk.aio.run

if __name__ == "__main__":
    dispatch(
        {
            "churn-server": lambda n, idle="0": run(churn_server_main(int(n), int(idle))),
            "churn-client": lambda port, n, conc, idle="0", idle_port="0": run(
                churn_client_main(int(port), int(n), int(conc), int(idle), int(idle_port))
            ),
            "bulk-recv": lambda: run(bulk_recv_main()),
            "bulk-send": lambda port, total, cc="default": run(
                bulk_send_main(int(port), int(total), cc)
            ),
            "heap": lambda count="2000": run(heap_main(int(count))),
            "pycalls": lambda conns="500": pycalls_main(int(conns)),
            **dgram_aio.handlers(run),
        }
    )
