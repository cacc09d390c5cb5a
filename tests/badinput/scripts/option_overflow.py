"""SO_RCVBUF 2**31 on one pywsk.sync connection: a clear exception, and seven other
connections keep working (run without pytest: Python's own unraisable hook)."""

from __future__ import annotations

import asyncio
import socket

import pywsk.aio
import pywsk.sync
from pywsk.errors import NtStatusError
from pywsk.wsk import SO_RCVBUF, SOL_SOCKET

WAIT = 10.0


def main() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(WAIT)
    port = server.getsockname()[1]
    try:
        pywsk.sync.connect("127.0.0.1", port, timeout=2, options=[(SOL_SOCKET, SO_RCVBUF, 2**31)])
    except NtStatusError as exc:
        print(f"connect with SO_RCVBUF 2**31: {type(exc).__name__}: {exc}")
    else:
        raise AssertionError("connect with SO_RCVBUF 2**31 succeeded")
    connections = []
    for _ in range(8):
        conn = pywsk.sync.connect("127.0.0.1", port, timeout=WAIT)
        peer, _ = server.accept()
        peer.settimeout(WAIT)
        connections.append((conn, peer))
    first = connections[0][0]
    for value in (2**31, 2**40):
        try:
            first.set_option(SOL_SOCKET, SO_RCVBUF, value)
        except NtStatusError as exc:
            print(f"set_option SO_RCVBUF {value}: {type(exc).__name__}: {exc}")
        else:
            raise AssertionError(f"set_option SO_RCVBUF {value} succeeded")
    working = 0
    for conn, peer in connections[1:]:
        payload = b"x" * 100_000
        assert conn.send(payload, timeout=WAIT) == len(payload)
        got = 0
        while got < len(payload):
            chunk = peer.recv(65536)
            assert chunk
            got += len(chunk)
        working += 1
    print(f"{working} of {len(connections) - 1} other connections carried data")
    for conn, peer in connections:
        conn.close()
        peer.close()
    server.close()


async def main_aio() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.setblocking(False)
    port = server.getsockname()[1]
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(
            pywsk.aio.connect("127.0.0.1", port, options=[(SOL_SOCKET, SO_RCVBUF, 2**31)]), WAIT
        )
    except NtStatusError as exc:
        print(f"aio connect with SO_RCVBUF 2**31: {type(exc).__name__}: {exc}")
    else:
        raise AssertionError("aio connect with SO_RCVBUF 2**31 succeeded")
    connections = []
    for _ in range(8):
        conn = await asyncio.wait_for(pywsk.aio.connect("127.0.0.1", port), WAIT)
        peer, _ = await asyncio.wait_for(loop.sock_accept(server), WAIT)
        connections.append((conn, peer))
    try:
        await asyncio.wait_for(connections[0][0].set_option(SOL_SOCKET, SO_RCVBUF, 2**31), WAIT)
    except NtStatusError as exc:
        print(f"aio set_option SO_RCVBUF 2**31: {type(exc).__name__}: {exc}")
    else:
        raise AssertionError("aio set_option SO_RCVBUF 2**31 succeeded")
    payload = b"y" * 100_000

    async def one(conn: pywsk.aio.Connection, peer: socket.socket) -> None:
        await conn.send_all(payload)
        got = 0
        while got < len(payload):
            chunk = await loop.sock_recv(peer, 65536)
            assert chunk
            got += len(chunk)

    await asyncio.wait_for(asyncio.gather(*(one(c, p) for c, p in connections[1:])), WAIT)
    print(f"aio: {len(connections) - 1} of {len(connections) - 1} other connections carried data")
    for conn, peer in connections:
        await conn.abort()
        peer.close()
    server.close()


if __name__ == "__main__":
    main()
    asyncio.run(main_aio())
