"""Waiting for IRPs from asyncio: trio's ``wait_overlapped`` pattern, for asyncio and uvloop.

What it does: :func:`wait_call` suspends the calling task until a :class:`~pywsk._bridge.Call`
completed.  The completion routine (provider thread, DISPATCH_LEVEL) only hands the
delivery to the task's loop (a mailbox per loop: one ``call_soon_threadsafe`` per burst).  :func:`drive` runs a
multi-step sequence of calls (connect, listen) written once in :mod:`pywsk._bridge`.
:func:`run` is ``asyncio.run`` on uvloop when it is installed.

What it refuses: to give up on an IRP.  Cancelling a task waiting in :func:`wait_call`
calls IoCancelIrp and then *still waits* for the completion: the IRP's status says
whether the cancel won (STATUS_CANCELLED: the request had no effect) or lost (the
request took effect, and its result is reported to the caller, who keeps it).

What always holds: a call's completion reaches its waiter exactly once; the
``CancelledError`` that interrupted a wait is returned to the caller, who re-raises it
after settling the call.
"""

from __future__ import annotations

import asyncio
import collections
import weakref
from collections.abc import Callable, Coroutine, Generator
from typing import Any, TypeVar

from .._bridge import Call

__all__ = ["drive", "mailbox", "run", "wait_call"]

T = TypeVar("T")


class _Mailbox:
    """Deliveries from completion routines to one event loop, many per wake-up.

    ``post`` (any thread) queues a delivery and schedules a drain with
    ``call_soon_threadsafe`` only when none is scheduled yet, so a burst of completions
    costs the provider thread one hand-off, not one each.  Raises RuntimeError, as
    ``call_soon_threadsafe`` does, once the loop is closed.
    """

    __slots__ = ("__weakref__", "_items", "_loop", "_scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._items: collections.deque[Callable[[], None]] = collections.deque()
        self._scheduled = False

    def post(self, deliver: Callable[[], None]) -> None:
        if self._loop.is_closed():
            raise RuntimeError("Event loop is closed")
        self._items.append(deliver)
        if not self._scheduled:
            self._scheduled = True
            try:
                self._loop.call_soon_threadsafe(self._drain)
            except RuntimeError:
                self._scheduled = False
                raise

    def _drain(self) -> None:
        # On the loop's thread.  Cleared first: a post racing this drain schedules another.
        self._scheduled = False
        items = self._items
        while items:
            items.popleft()()


_mailboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Mailbox] = (
    weakref.WeakKeyDictionary()
)


def mailbox(loop: asyncio.AbstractEventLoop) -> Callable[[Callable[[], None]], None]:
    """The ``post`` function that hands completions to ``loop`` (one mailbox per loop)."""
    box = _mailboxes.get(loop)
    if box is None:
        box = _mailboxes[loop] = _Mailbox(loop)
    return box.post


class _Waiter:
    """The task's side of one call: a flag and the future the task is parked on."""

    __slots__ = ("fired", "future")

    def __init__(self) -> None:
        self.fired = False
        self.future: asyncio.Future[None] | None = None

    def fire(self) -> None:
        # On the loop's thread (posted by the completion routine).
        self.fired = True
        future = self.future
        if future is not None and not future.done():
            future.set_result(None)


async def wait_call(
    call: Call, on_cancel: Callable[[], None] | None = None
) -> asyncio.CancelledError | None:
    """Wait until ``call`` completed; return the cancellation that arrived meanwhile, if any.

    A cancellation calls ``on_cancel`` (default: IoCancelIrp) once and goes on waiting: the
    IRP's completion is the truth.  Returns at once (without suspending) for a call that
    completed inline.
    """
    loop = asyncio.get_running_loop()
    waiter = _Waiter()
    if not call.arm(mailbox(loop), waiter.fire):
        return None
    caught: asyncio.CancelledError | None = None
    while not waiter.fired:
        waiter.future = loop.create_future()
        try:
            await waiter.future
        except asyncio.CancelledError as exc:
            if caught is None:
                caught = exc
                (on_cancel or call.cancel)()
    return caught


async def drive(steps: Generator[Call, None, T]) -> T:
    """Run a sequence of calls, waiting for each.

    A cancellation cancels the call under way (IoCancelIrp), waits for its completion and
    is then thrown into the sequence, which cleans up (its own later calls are waited for
    without further cancelling) and re-raises it.
    """
    caught: asyncio.CancelledError | None = None
    try:
        call = next(steps)
        while True:
            interrupted = await wait_call(call)
            if interrupted is not None and caught is None:
                caught = interrupted
                call = steps.throw(caught)
            else:
                call = steps.send(None)
    except StopIteration as stop:
        if caught is not None:
            raise caught from None
        result: T = stop.value
        return result


def run(main: Coroutine[Any, Any, T], *, debug: bool | None = None) -> T:
    """``asyncio.run(main)`` on a uvloop loop when uvloop is installed (plain asyncio else)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return asyncio.run(main, debug=debug)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop, debug=debug) as runner:
        return runner.run(main)
