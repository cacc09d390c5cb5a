"""Helpers for the asyncio layer's tests: a runner per loop flavour, and peer helpers.

A test module declares ``run = loop_fixture()``; every test that takes ``run`` then runs
twice, on the asyncio loop and on uvloop, and ``run`` bounds the whole coroutine with a
timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import Any, TypeVar

import pytest
import uvloop

import pywsk.aio
import pywsk.aio._connection
import pywsk.aio._waiting
from pywsk.aio import SocketOption
from pywsk.wsk import SO_SNDBUF, SOL_SOCKET

T = TypeVar("T")
Run = Callable[..., Any]

WAIT = 10.0


def loop_fixture() -> Any:
    """The ``run`` fixture, parametrized over the two loop flavours."""
    return pytest.fixture(name="run", params=["asyncio", "uvloop"])(_runner)


def _runner(request: pytest.FixtureRequest) -> Iterator[Run]:
    """``run(coroutine, timeout=30)``: run it on a fresh loop of this flavour, bounded."""
    factory = asyncio.new_event_loop if request.param == "asyncio" else uvloop.new_event_loop

    def runner(main: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        async def bounded() -> T:
            async with asyncio.timeout(timeout):
                return await main

        with asyncio.Runner(loop_factory=factory) as loop_runner:
            return loop_runner.run(bounded())

    yield runner


def kernel(conn: pywsk.aio.Connection) -> socket.socket:
    """The Linux socket behind a connection (tests only: checks of kernel state)."""
    sock: socket.socket = conn.socket
    return sock


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking peer action in a worker thread (the loop keeps running)."""
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


#: A small send buffer for the client (set before connect, so Linux does not grow it).
SMALL_SNDBUF = ((SOL_SOCKET, SO_SNDBUF, 4096),)


async def connected(
    listener: Callable[..., socket.socket],
    host: str = "127.0.0.1",
    rcvbuf: int | None = None,
    options: Sequence[SocketOption] = (),
) -> tuple[pywsk.aio.Connection, socket.socket]:
    """A pywsk connection to a fresh plain peer: (connection, peer socket).  With
    ``rcvbuf`` the peer's receive buffer is that small (and the client's send buffer too)."""
    lsock = listener(host, rcvbuf)
    if rcvbuf is not None:
        options = (*options, *SMALL_SNDBUF)
    conn = await pywsk.aio.connect(host, lsock.getsockname()[1], options=options)
    peer, _ = lsock.accept()
    peer.settimeout(WAIT)
    return conn, peer


def count_cancelled_waits(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count the waits for a socket's edge that a cancellation interrupted (tests only: the
    racing tests check that their cancellations did meet pending operations)."""
    original = pywsk.aio._waiting.wait_edge
    counts = {"cancelled": 0}

    async def counting(conn: Any, write: bool, loop: asyncio.AbstractEventLoop) -> int:
        try:
            return await original(conn, write, loop)
        except asyncio.CancelledError:
            counts["cancelled"] += 1
            raise

    monkeypatch.setattr(pywsk.aio._connection, "wait_edge", counting)
    return counts


@contextlib.contextmanager
def unanswered() -> Iterator[int]:
    """The port of a listener whose accept queue is full: it drops further SYNs, so a
    connect to it stays pending (until its own bound)."""
    with socket.socket() as full:
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        fillers = [socket.socket() for _ in range(3)]
        try:
            for filler in fillers:
                filler.setblocking(False)
                filler.connect_ex(full.getsockname())
            yield full.getsockname()[1]
        finally:
            for filler in fillers:
                filler.close()
