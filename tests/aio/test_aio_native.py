"""pywsk.aio is a native front-end: it runs on the caller's loop, with no provider thread.

Each check runs in a fresh interpreter (this test process may have started the provider for
other tests): a program that uses pywsk.aio - listen, serve, connect, send, the graceful
disconnect, an abort - on asyncio and on uvloop, then reports which threads exist and
whether the WSK provider was ever loaded.  And the edge poller underneath: one epoll per
loop, watched by the loop, each socket registered once.
"""

from __future__ import annotations

import asyncio
import json
import select
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable

import pytest
from aio_helpers import Run, connected, kernel, loop_fixture

from pywsk.aio._waiting import poller

run = loop_fixture()
Listener = Callable[..., socket.socket]

PROGRAM = textwrap.dedent(
    """
    import asyncio, json, socket, sys, threading
    import uvloop
    import pywsk.aio

    async def main():
        async def echo(conn):
            data = bytearray()
            while chunk := await conn.receive_some():
                data += chunk
            await conn.send_all(bytes(data))
            await conn.disconnect()

        async with await pywsk.aio.serve(echo, "127.0.0.1", 0) as server:
            port = server.local_address[1]
            for _ in range(20):
                async with await pywsk.aio.connect("127.0.0.1", port) as conn:
                    await conn.send_all(b"hello")
                    await conn.disconnect()  # our FIN, acknowledged
                    got = b""
                    while chunk := await conn.receive_some():
                        got += chunk
                    assert got == b"hello", got
                    assert conn.disconnected_by is pywsk.aio.DisconnectReason.PEER_GRACEFUL
            conn = await pywsk.aio.connect("127.0.0.1", port)
            await conn.abort()
            await conn.aclose()
        return [t.name for t in threading.enumerate()]

    flavour = sys.argv[1]
    if flavour == "uvloop":
        threads = uvloop.run(asyncio.wait_for(main(), 30))
    else:
        threads = asyncio.run(asyncio.wait_for(main(), 30))
    print(json.dumps({
        "threads": threads,
        "provider_loaded": "pywsk.provider" in sys.modules,
        "bridge_loaded": "pywsk._bridge" in sys.modules,
    }))
    """
)


@pytest.mark.parametrize("flavour", ["asyncio", "uvloop"])
def test_no_provider_thread_and_no_provider(flavour: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, flavour],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["threads"] == ["MainThread"], report
    assert report["provider_loaded"] is False
    assert report["bridge_loaded"] is False


def test_one_edge_poller_per_loop_watched_by_the_loop(run: Run, listener: Listener) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        edges = poller(loop)
        assert poller(loop) is edges  # one per loop
        conn, peer = await connected(listener)
        fd = kernel(conn).fileno()
        async with conn:
            # The socket is in the poller's epoll, edge-triggered, for its whole life: the
            # poller's own descriptor turns readable when the peer sends.
            assert fd in edges._handlers
            peer.sendall(b"x")
            readable, _, _ = select.select([edges.fileno()], [], [], 10)
            assert readable
            assert await conn.receive_some() == b"x"
            await conn.abort()
        assert fd not in edges._handlers  # forgotten before the close
        peer.close()

    run(main())
