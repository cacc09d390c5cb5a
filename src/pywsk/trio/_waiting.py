"""How :mod:`pywsk.trio` waits on trio's loop for :mod:`pywsk._native`.

What it does: one edge poller per trio run (:func:`poller`: made on first use, its epoll
descriptor watched by a system task with ``trio.lowlevel.wait_readable``); :class:`Waiter`,
trio's counterpart of the asyncio future that :mod:`pywsk._native` wakes at an edge or hands
an accepted connection; :func:`wait_edge`, one wait for a connection's next read or write
edge; :func:`drive`, which runs a multi-step sequence of :mod:`pywsk._native` (connect,
listen) on trio - the counterpart of :mod:`pywsk.aio._waiting`.

What it refuses: nothing; it knows no stream contract (that is :mod:`pywsk.trio`'s).

What always holds: a cancelled (or interrupted) wait forgets its waiter before the
cancellation goes on, and a cancellation thrown into a sequence is re-raised after the
sequence cleaned up (its socket closed); the poller is closed when its run ends.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, TypeVar

import trio  # type: ignore[import-untyped, unused-ignore]

from .._native import NativeConnection, Resolve
from ..mechanics.edges import EdgePoller

__all__ = ["Waiter", "drive", "poller", "wait_edge"]

T = TypeVar("T")


_POLLER: trio.lowlevel.RunVar[EdgePoller] = trio.lowlevel.RunVar("pywsk_poller")


def poller() -> EdgePoller:
    """The edge poller of this trio run (made, and watched by a system task, on first use)."""
    try:
        return _POLLER.get()
    except LookupError:
        poller = EdgePoller()
        _POLLER.set(poller)
        trio.lowlevel.spawn_system_task(_watch, poller, name="pywsk edge poller")
        return poller


async def _watch(poller: EdgePoller) -> None:
    try:
        while True:
            await trio.lowlevel.wait_readable(poller.fileno())
            poller.dispatch()
    finally:
        poller.close()


class Waiter:
    """A task parked until an edge (``set_result``) or an accepted connection; trio's
    counterpart of an asyncio future for :mod:`pywsk._native`."""

    __slots__ = ("_done", "error", "result", "task")

    def __init__(self) -> None:
        self.task = trio.lowlevel.current_task()
        self._done = False
        self.result: Any = 0
        self.error: BaseException | None = None

    def done(self) -> bool:
        return self._done

    def set_result(self, result: Any, /) -> None:
        self._done = True
        self.result = result
        trio.lowlevel.reschedule(self.task)

    def set_exception(self, error: BaseException, /) -> None:
        self._done = True
        self.error = error
        trio.lowlevel.reschedule(self.task)

    async def wait(self, forget: Callable[[], None]) -> Any:
        """Sleep until resolved; a cancel (or Ctrl-C) calls ``forget`` and raises."""

        def abort(_raise_cancel: Any) -> trio.lowlevel.Abort:
            self._done = True
            forget()
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)
        if self.error is not None:
            raise self.error
        return self.result


async def wait_edge(conn: NativeConnection, write: bool) -> int:
    """Wait for the next read (or write) edge of ``conn``; its mask (0: broke or closed)."""
    waiter = Waiter()
    if write:
        conn.writer = waiter

        def forget() -> None:
            if conn.writer is waiter:
                conn.writer = None

    else:
        conn.reader = waiter

        def forget() -> None:
            if conn.reader is waiter:
                conn.reader = None

    mask: int = await waiter.wait(forget)
    return mask


async def drive(steps: Generator[Any, Any, T]) -> T:
    """Run a sequence of :mod:`pywsk._native` (a checkpoint): answer each Resolve with
    ``trio.socket.getaddrinfo`` and each connection with its next write edge; a cancel is
    thrown into the sequence, which closes its socket and re-raises."""
    await trio.lowlevel.checkpoint_if_cancelled()
    answer: Any = None
    failure: BaseException | None = None
    slept = False
    while True:
        try:
            request = steps.send(answer) if failure is None else steps.throw(failure)
        except StopIteration as stop:
            if not slept:
                await trio.lowlevel.cancel_shielded_checkpoint()
            result: T = stop.value
            return result
        answer = failure = None
        slept = True
        try:
            if isinstance(request, Resolve):
                answer = await trio.socket.getaddrinfo(request.host, request.port, **request.hints)
            else:
                answer = await wait_edge(request, True)
        except BaseException as exc:  # thrown into the sequence, which re-raises it
            failure = exc
