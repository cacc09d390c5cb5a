"""pywsk's asyncio layer, ``pywsk.aio``, as its documentation shows it (on uvloop).

Every operation is one WSK call on its own IRP through the faithful layer; the completion
routine runs on the provider thread and hands the result to this loop with
``call_soon_threadsafe``.  Churn client, per connection: ``connect``, ``send_all``,
``disconnect()`` (returns once our FIN is acknowledged), ``receive_some`` to ``b""``,
``aclose()`` (no RST: both directions are closed).  Server: ``serve`` with a handler that
reads to ``b""``, echoes, and disconnects; the server closes the connection when the handler
returns.  Bulk: ``send_all`` of CHUNK-sized blocks, one after another.

Congestion control: as in :mod:`benchmarks.impl_pywsk`, ``TCP_CONGESTION`` is set on the
provider's Linux socket (WSK has no option for it).  See :mod:`benchmarks.common` for the
command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

import pywsk.aio
import pywsk.provider  # imported now, not (lazily) inside the measurement

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
    provider_socket: Any = conn.socket
    set_congestion(provider_socket.sock, cc)  # see the module notes
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


if __name__ == "__main__":
    run = pywsk.aio.run
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
            **dgram_aio.handlers(run),
        }
    )
