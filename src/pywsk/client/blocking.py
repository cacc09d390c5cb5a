"""Waiting for a call as a driver thread does: a KEVENT, KeWaitForSingleObject, a timeout.

What it does: :func:`wait` blocks the calling thread (PASSIVE_LEVEL) until a
:class:`~pywsk.client.call.Call` is over - its completion routine ran and its IRP and
buffers were freed (:meth:`Call.signal <pywsk.client.call.Call.signal>` sets the KEVENT) -
or until a deadline (:func:`deadline`, from a timeout in seconds) passes, waiting with
``KeWaitForSingleObject`` and a relative NT timeout (:func:`nt_timeout`: negative, in
100-ns units).  This is how a KSOCKET-style driver waits for each WSK call.
:func:`drive` runs a sequence of calls (:mod:`pywsk.client.steps`) that way, within one
deadline.

What it refuses: to let a timeout pass for a result.  KeWaitForSingleObject answers
STATUS_TIMEOUT, which ``NT_SUCCESS`` counts as a success code; here a wait that timed out
cancels the IRP (IoCancelIrp) and then waits for its completion, so the call's status says
what really happened (STATUS_CANCELLED: the cancel won).  Negative timeouts raise
``ValueError``.

What always holds: when :func:`wait` returns, the call is over; a deadline of None waits
for the completion however long it takes (KeWaitForSingleObject with a NULL Timeout), as
the caller asked - the runtime's own helpers always pass a bound.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from typing import TypeVar

from ..nt import (
    KEVENT,
    LARGE_INTEGER,
    STATUS_SUCCESS,
    Executive,
    KeInitializeEvent,
    KernelMode,
    KeWaitForSingleObject,
    NotificationEvent,
)
from .call import Call

__all__ = ["deadline", "drive", "new_event", "nt_timeout", "wait", "wait_event"]

T = TypeVar("T")


def new_event() -> KEVENT:
    """A notification KEVENT, not signalled (KeInitializeEvent)."""
    event = KEVENT()
    KeInitializeEvent(event, NotificationEvent, False)
    return event


def deadline(timeout: float | None) -> float | None:
    """The monotonic time ``timeout`` seconds from now (None: no deadline)."""
    if timeout is None:
        return None
    if timeout < 0:
        raise ValueError("timeout must be >= 0 or None")
    return time.monotonic() + timeout


def nt_timeout(until: float | None) -> LARGE_INTEGER | None:
    """A relative NT timeout (negative, 100-ns units) for the time left until ``until``."""
    if until is None:
        return None
    left = max(until - time.monotonic(), 0.0)
    return LARGE_INTEGER(-max(int(left * 10_000_000), 1))


def wait_event(event: KEVENT, until: float | None) -> bool:
    """KeWaitForSingleObject on ``event`` until ``until``; True if it was signalled."""
    status = KeWaitForSingleObject(event, Executive, KernelMode, False, nt_timeout(until))
    return bool(status == STATUS_SUCCESS)


def wait(call: Call, until: float | None) -> bool:
    """Wait until ``call`` is over; True if ``until`` passed first - the IRP was then
    cancelled and its completion awaited (``call.status`` says whether the cancel won)."""
    if call.done:  # over already: completed after it returned, IRP and buffers freed
        return False
    event = new_event()
    if not call.signal(event):
        return False
    if wait_event(event, until):
        return False
    # STATUS_TIMEOUT is a success code: never let it pass for the request's result.
    call.cancel()
    wait_event(event, None)
    return True


def drive(
    steps: Generator[Call, None, T], until: float | None, timed_out: Callable[[], BaseException]
) -> T:
    """Run a sequence of calls (:mod:`pywsk.client.steps`), waiting for each until
    ``until``.  When it passes and the call did not succeed anyway, ``timed_out()`` is
    thrown into the sequence, which closes what it opened; what it yields then is waited
    for to the end, and the exception propagates."""
    thrown = False
    try:
        call = next(steps)
        while True:
            late = wait(call, None if thrown else until)
            if late and not thrown and not call.succeeded:
                thrown = True
                call = steps.throw(timed_out())
            else:
                call = steps.send(None)
    except StopIteration as stop:
        result: T = stop.value
        return result
