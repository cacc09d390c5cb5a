"""Waiting on asyncio (and uvloop) for the native front-end: one edge poller per loop.

What it does: :func:`poller` gives the running loop's
:class:`~pywsk.mechanics.edges.EdgePoller` - one edge-triggered epoll in which every
pywsk.aio socket of the loop is registered once - and watches its descriptor with
``loop.add_reader(poller.fileno(), poller.dispatch)``: the loop's own (level-triggered)
selector wakes when any of those sockets has an edge, and ``dispatch`` hands each edge to
its socket.  :func:`wait_edge` parks the calling task on a future that the socket's next
edge resolves (a waiter slot of :class:`~pywsk._native.NativeConnection`).  :func:`drive`
runs a multi-step sequence written once in :mod:`pywsk._native` (resolving with
``loop.getaddrinfo``).  :func:`run` is ``asyncio.run`` on uvloop when it is installed.

What it refuses: to poll or to use a thread - there is no provider thread and no IRP; a
wait is one future.

What always holds: a cancelled wait leaves its slot empty (the next edge finds nobody and
is lost harmlessly: every operation tries its syscall before it waits again); a sequence
interrupted by a cancellation cleans up (closes its socket) before the cancellation goes on.
"""

from __future__ import annotations

import asyncio
import socket
import weakref
from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

from .._native import NativeConnection, Resolve
from ..mechanics.edges import EdgePoller

__all__ = ["drive", "poller", "run", "wait_edge"]

T = TypeVar("T")

_pollers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, EdgePoller] = (
    weakref.WeakKeyDictionary()
)


def poller(loop: asyncio.AbstractEventLoop) -> EdgePoller:
    """The edge poller of ``loop`` (made, and watched by the loop, on first use)."""
    found = _pollers.get(loop)
    if found is None:
        found = _pollers[loop] = EdgePoller()
        loop.add_reader(found.fileno(), found.dispatch)
    return found


async def wait_edge(conn: NativeConnection, write: bool, loop: asyncio.AbstractEventLoop) -> int:
    """Wait for the next read (or write) edge of ``conn`` (whose poller is ``loop``'s); its
    mask (0: the connection broke or closed meanwhile).  Awaited from a task of another loop,
    the future refuses (RuntimeError)."""
    future: asyncio.Future[int] = loop.create_future()
    if write:
        conn.writer = future
    else:
        conn.reader = future
    try:
        return await future
    finally:
        if write:
            if conn.writer is future:
                conn.writer = None
        elif conn.reader is future:
            conn.reader = None


async def drive(steps: Generator[Any, Any, T], loop: asyncio.AbstractEventLoop) -> T:
    """Run a sequence of :mod:`pywsk._native`: answer each :class:`~pywsk._native.Resolve`
    with ``loop.getaddrinfo`` and each connection with its next write edge; throw any
    exception (a cancellation included) into the sequence, which cleans up and re-raises."""
    answer: Any = None
    failure: BaseException | None = None
    while True:
        try:
            request = steps.send(answer) if failure is None else steps.throw(failure)
        except StopIteration as stop:
            result: T = stop.value
            return result
        answer = failure = None
        try:
            if isinstance(request, Resolve):
                answer = await loop.getaddrinfo(
                    request.host,
                    request.port,
                    type=socket.SOCK_STREAM,
                    proto=socket.IPPROTO_TCP,
                    flags=socket.AI_PASSIVE if request.passive else 0,
                )
            else:
                answer = await wait_edge(request, True, loop)
        except BaseException as exc:  # thrown into the sequence, which re-raises it
            failure = exc


def run(main: Coroutine[Any, Any, T], *, debug: bool | None = None) -> T:
    """``asyncio.run(main)`` on a uvloop loop when uvloop is installed (plain asyncio else)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return asyncio.run(main, debug=debug)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop, debug=debug) as runner:
        return runner.run(main)
