"""Idiomatic trio: ``SocketStream`` from ``open_tcp_stream`` / ``serve_listeners``, and
``send_eof()`` for the graceful disconnect.  See :mod:`benchmarks.common` for the command line.
"""

from __future__ import annotations

from typing import Any, cast

import trio  # type: ignore[import-untyped, unused-ignore]  # typed from trio 0.23

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

IMPL = "trio"
TIMEOUT = 120.0


async def _read_to_eof(stream: trio.SocketStream) -> bytearray:
    data = bytearray()
    while chunk := await stream.receive_some(65536):
        data += chunk
    return data


async def churn_server_main(n: int, idle: int) -> int:
    counts = {"conns": 0, "bytes": 0, "bad": 0, "started": 0}
    listeners = await trio.open_tcp_listeners(0, host=HOST, backlog=4096)
    port = listeners[0].socket.getsockname()[1]
    idle_listeners = await trio.open_tcp_listeners(0, host=HOST, backlog=4096) if idle else []
    if idle_listeners:
        announce_port(port, idle_listeners[0].socket.getsockname()[1])
    else:
        announce_port(port)
    done = trio.Event()
    held = [0]

    async def hold(stream: trio.SocketStream) -> None:
        """An idle connection: wait for the client to close it."""
        held[0] += 1
        if held[0] == idle:
            idle_ready()
        await _read_to_eof(stream)
        await stream.aclose()

    async def handler(stream: trio.SocketStream) -> None:
        if not counts["started"]:
            restart_cpu_clock()
            counts["started"] = 1
        try:
            data = await _read_to_eof(stream)
            if data:
                await stream.send_all(data)  # echo
                await stream.send_eof()  # FIN after the echo
        except trio.BrokenResourceError:
            data = bytearray()
            counts["bad"] += 1
        await stream.aclose()
        if not data:  # an idle connection closed by the client
            return
        counts["conns"] += 1
        counts["bytes"] += len(data)
        counts["bad"] += data != PAYLOAD
        if counts["conns"] == n:
            done.set()

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, handler, listeners)
            if idle_listeners:
                nursery.start_soon(trio.serve_listeners, hold, idle_listeners)
            await done.wait()
            nursery.cancel_scope.cancel()
    del counts["started"]
    emit("server", IMPL, **counts)
    return int(counts["bad"] != 0)


async def churn_client_main(port: int, n: int, conc: int, idle: int, idle_port: int) -> int:
    counts = {"conns": 0, "bytes": 0, "bad": 0}
    idle_streams = [await trio.open_tcp_stream(HOST, idle_port) for _ in range(idle)]
    if idle:
        await trio.to_thread.run_sync(wait_for_go)

    async def worker(count: int) -> None:
        for _ in range(count):
            stream = await trio.open_tcp_stream(HOST, port)
            await stream.send_all(PAYLOAD)
            await stream.send_eof()  # graceful disconnect
            data = await _read_to_eof(stream)
            await stream.aclose()
            counts["conns"] += 1
            counts["bytes"] += len(data)
            counts["bad"] += data != PAYLOAD

    restart_cpu_clock()
    t0 = now()
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            for count in split_evenly(n, conc):
                nursery.start_soon(worker, count)
    seconds = now() - t0
    for stream in idle_streams:
        await stream.aclose()
    emit("client", IMPL, seconds=seconds, rate=counts["conns"] / seconds, idle=idle, **counts)
    return int(counts["bad"] != 0 or counts["conns"] != n)


async def bulk_recv_main() -> int:
    listeners = await trio.open_tcp_listeners(0, host=HOST)
    announce_port(listeners[0].socket.getsockname()[1])
    restart_cpu_clock()  # the transfer's CPU: from the accept on
    with trio.fail_after(TIMEOUT):
        stream = await listeners[0].accept()
        t0 = now()
        total = 0
        while chunk := await stream.receive_some(CHUNK):
            total += len(chunk)
        seconds = now() - t0
        await stream.send_eof()
        await stream.aclose()
    emit("receiver", IMPL, bytes=total, seconds=seconds)
    return 0


async def bulk_send_main(port: int, total: int, cc: str) -> int:
    chunk = b"b" * CHUNK
    restart_cpu_clock()  # the transfer's CPU: from the connect on
    t0 = now()
    with trio.fail_after(TIMEOUT):
        sock = trio.socket.socket()
        set_congestion(cast(Any, sock), cc)
        await sock.connect((HOST, port))
        stream = trio.SocketStream(sock)
        sent = 0
        while sent < total:
            size = min(CHUNK, total - sent)
            await stream.send_all(chunk if size == CHUNK else chunk[:size])
            sent += size
        await stream.send_eof()  # graceful disconnect after every byte
        if await stream.receive_some(64) != b"":
            return 1
        seconds = now() - t0
        await stream.aclose()
    emit("sender", IMPL, bytes=sent, seconds=seconds, MBps=sent / seconds / 1e6)
    return 0


if __name__ == "__main__":
    dispatch(
        {
            "churn-server": lambda n, idle="0": trio.run(churn_server_main, int(n), int(idle)),
            "churn-client": lambda port, n, conc, idle="0", idle_port="0": trio.run(
                churn_client_main, int(port), int(n), int(conc), int(idle), int(idle_port)
            ),
            "bulk-recv": lambda: trio.run(bulk_recv_main),
            "bulk-send": lambda port, total, cc="default": trio.run(
                bulk_send_main, int(port), int(total), cc
            ),
        }
    )
