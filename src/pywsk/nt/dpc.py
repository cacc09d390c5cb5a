"""Deferred procedure calls: ``KDPC``, ``KeInitializeDpc``, ``KeInsertQueueDpc``,
``KeRemoveQueueDpc`` (wdm.h).

What it does: a driver queues a DPC from any thread; its ``DeferredRoutine(Dpc,
DeferredContext, SystemArgument1, SystemArgument2)`` runs soon at DISPATCH_LEVEL on pywsk's
one processor at that level - the provider thread, where completion routines and event
callbacks run too.  So a WSK call made inside a DPC routine acts inline (no hand-off), and a
routine never runs alongside a completion routine: this is how code on another thread
starts WSK calls without waiting for them (the Pythonic layers do, see
``docs/design.md``).

What it refuses: a DPC that was never initialised (``BugCheck``); a second insert of a DPC
still in the queue returns FALSE and changes nothing, as on Windows.

What always holds: DPCs run in the order they were queued, each once per successful
insert; a routine's exception is reported (``sys.unraisablehook``), never raised into the
thread that queued it.  DPCs queued before the provider thread runs (before the first
``WskRegister``) wait for it.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from typing import Any

from . import hooks
from .bugcheck import BugCheck, BugCheckCode

__all__ = [
    "KDPC",
    "PKDEFERRED_ROUTINE",
    "KeInitializeDpc",
    "KeInsertQueueDpc",
    "KeRemoveQueueDpc",
]

#: ``VOID DeferredRoutine(PKDPC Dpc, PVOID DeferredContext, PVOID SystemArgument1,
#: PVOID SystemArgument2)``
PKDEFERRED_ROUTINE = Callable[["KDPC", Any, Any, Any], object]


class KDPC:
    """A DPC object.  Initialise it with :func:`KeInitializeDpc` before queueing it."""

    __slots__ = (
        "DeferredContext",
        "DeferredRoutine",
        "SystemArgument1",
        "SystemArgument2",
        "_queued",
    )

    def __init__(self) -> None:
        self.DeferredRoutine: PKDEFERRED_ROUTINE | None = None
        self.DeferredContext: Any = None
        self.SystemArgument1: Any = None
        self.SystemArgument2: Any = None
        self._queued = False

    def __repr__(self) -> str:
        return f"<KDPC {'queued' if self._queued else 'idle'} {self.DeferredRoutine!r}>"


def KeInitializeDpc(Dpc: KDPC, DeferredRoutine: PKDEFERRED_ROUTINE, DeferredContext: Any) -> None:
    """Set the routine and context of ``Dpc``."""
    Dpc.DeferredRoutine = DeferredRoutine
    Dpc.DeferredContext = DeferredContext
    Dpc._queued = False


# The queue of the one processor.  ``_wake`` is installed by the provider (set_processor): it
# is called, from the inserting thread, when the queue turns non-empty.
_lock = threading.Lock()
_queue: collections.deque[KDPC] = collections.deque()
_wake: Callable[[], object] | None = None


def KeInsertQueueDpc(Dpc: KDPC, SystemArgument1: Any, SystemArgument2: Any) -> bool:
    """Queue ``Dpc``; TRUE if it was queued, FALSE if it was in the queue already."""
    if Dpc.DeferredRoutine is None:
        raise BugCheck(
            BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION,
            "KeInsertQueueDpc: the DPC was not initialised with KeInitializeDpc",
            id(Dpc),
        )
    with _lock:
        if Dpc._queued:
            return False
        Dpc._queued = True
        Dpc.SystemArgument1 = SystemArgument1
        Dpc.SystemArgument2 = SystemArgument2
        was_empty = not _queue
        _queue.append(Dpc)
        wake = _wake
    if was_empty and wake is not None:
        wake()
    return True


def KeRemoveQueueDpc(Dpc: KDPC) -> bool:
    """Take ``Dpc`` out of the queue; TRUE if it was queued (its routine will not run)."""
    with _lock:
        if not Dpc._queued:
            return False
        Dpc._queued = False
        _queue.remove(Dpc)
        return True


def set_processor(wake: Callable[[], object] | None) -> None:
    """The provider thread becomes the processor that runs DPCs (None: no processor).

    ``wake()`` is called when the queue turns non-empty; it must arrange for
    :func:`run_queued` to run on the provider thread.  Called once the thread runs.
    """
    global _wake
    with _lock:
        _wake = wake
        pending = bool(_queue)
    if wake is not None and pending:
        wake()


def run_queued(report: Callable[[BaseException, KDPC], object]) -> None:
    """Run every queued DPC, in order (on the provider thread, at DISPATCH_LEVEL).

    DPCs queued while this runs are run too.  ``report`` gets a routine's exception.
    """
    while True:
        with _lock:
            if not _queue:
                return
            dpc = _queue.popleft()
            dpc._queued = False
            routine = dpc.DeferredRoutine
            a1, a2 = dpc.SystemArgument1, dpc.SystemArgument2
        assert routine is not None
        observer = hooks.observer
        began = time.monotonic() if observer is not None else 0.0
        try:
            routine(dpc, dpc.DeferredContext, a1, a2)
        except BaseException as exc:
            report(exc, dpc)
        if observer is not None:  # the verifier times DPC routines too (DPC-001)
            observer.event("dpc-returned", dpc, routine=routine, seconds=time.monotonic() - began)
