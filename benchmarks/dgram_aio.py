"""The datagram workload on ``pywsk.aio``'s datagram endpoint, as its documentation shows it.

Server: ``receive_many`` (one recvmmsg), then ``send_many`` back to each sender (one
sendmmsg per run of one sender's datagrams).  Client: ``send_many`` of a batch, then
``receive_many`` until all its echoes are in, checked in order.  The endpoint is native on
the loop (uvloop when installed, as ``pywsk.aio.run`` chooses).
See :mod:`benchmarks.common` for the command line.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pywsk.aio

from .common import DGRAM_TIMEOUT, HOST, announce_port, dgram_payloads, emit, now, restart_cpu_clock

IMPL = "pywsk.aio"


async def server_main(n: int, size: int, batch: int) -> int:
    count = total = bad = 0
    async with await pywsk.aio.open_datagram(local=(HOST, 0)) as ep:
        announce_port(ep.local_address[1])
        while count < n:
            got = await asyncio.wait_for(ep.receive_many(batch), DGRAM_TIMEOUT)
            if not count:
                restart_cpu_clock()
            start = 0
            while start < len(got):  # a run of one sender's datagrams: one send_many
                sender = got[start][1]
                end = start
                while end < len(got) and got[end][1] == sender:
                    data = got[end][0]
                    bad += len(data) != size
                    total += len(data)
                    end += 1
                await ep.send_many([d for d, _ in got[start:end]], sender)
                start = end
            count += len(got)
    emit("server", IMPL, datagrams=count, bytes=total, bad=bad)
    return int(bad != 0 or count != n)


async def client_main(port: int, n: int, size: int, batch: int) -> int:
    payloads = dgram_payloads(size, batch)
    count = total = bad = 0
    async with await pywsk.aio.open_datagram(local=(HOST, 0), remote=(HOST, port)) as ep:
        restart_cpu_clock()
        t0 = now()
        while count < n:
            want = min(batch, n - count)
            await ep.send_many(payloads[:want])
            got = 0
            while got < want:
                for data, _sender in await asyncio.wait_for(
                    ep.receive_many(want - got), DGRAM_TIMEOUT
                ):
                    bad += data != payloads[got]
                    total += len(data)
                    got += 1
            count += want
        seconds = now() - t0
    emit(
        "client",
        IMPL,
        datagrams=count,
        bytes=total,
        bad=bad,
        seconds=seconds,
        rate=count / seconds,
    )
    return int(bad != 0 or count != n)


def handlers(run: Any) -> dict[str, Any]:
    """The datagram commands of :func:`benchmarks.common.dispatch`, run by ``run``."""
    return {
        "dgram-server": lambda n, size, batch: run(server_main(int(n), int(size), int(batch))),
        "dgram-client": lambda port, n, size, batch: run(
            client_main(int(port), int(n), int(size), int(batch))
        ),
    }
