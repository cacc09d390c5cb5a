"""The engine: the one place that decides where provider work and completions run.

What it does: runs the WSK subsystem on one event loop (uvloop when installed, asyncio
otherwise) in a daemon thread, "the provider thread".  That thread runs at DISPATCH_LEVEL
for its whole life, so every completion routine and event callback runs there at
DISPATCH_LEVEL, as on Windows.

* A dispatch function called *on* the provider thread (from a completion routine or a
  callback) acts inline: it may complete the IRP before it returns.
* A dispatch function called from any other thread is handed to the loop and the caller
  waits for the loop to run it, then gets its NTSTATUS.  The IRP may be completed (on the
  provider thread) before the caller's call returns - legal, and common on Windows.
* Blocking waits (KeWaitForSingleObject with a timeout) belong to other threads: the
  provider thread is at DISPATCH_LEVEL, where the IRQL rule refuses them.

What it refuses: nothing of its own; it never lets an exception raised by client code (a
completion routine, a callback) escape into the loop: such an exception is reported through
``sys.unraisablehook`` - printed, and turned into a test failure by pytest - and the
provider carries on.

What always holds: all provider state is touched only on the provider thread, so it
needs no locks; the one shared object is the IRP, whose cancel fields are guarded by the
cancel lock in :mod:`pywsk.nt.irp`.
"""

from __future__ import annotations

import asyncio
import collections
import sys
import threading
import types
from collections.abc import Callable
from typing import Any, TypeVar

from ..nt import dpc, hooks
from ..nt.irp import IO_NETWORK_INCREMENT, IRP, IoCompleteRequest, IoMarkIrpPending
from ..nt.irql import DISPATCH_LEVEL, KeRaiseIrql
from ..nt.status import NTSTATUS

__all__ = ["Engine", "loop_flavour"]

T = TypeVar("T")


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; asyncio is the fallback
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def loop_flavour() -> str:
    """``"uvloop"`` or ``"asyncio"``: which loop the provider runs on."""
    try:
        import uvloop  # noqa: F401
    except ImportError:  # pragma: no cover
        return "asyncio"
    return "uvloop"


class _Waiter:
    """A cross-thread call: the caller blocks on a lock the provider thread releases."""

    __slots__ = ("_exc", "_lock", "_result")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self._result: Any = None
        self._exc: BaseException | None = None

    def run(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            self._result = fn(*args)
        except BaseException as exc:  # handed back to the calling thread
            self._exc = exc
        finally:
            self._lock.release()

    def wait(self) -> Any:
        self._lock.acquire()
        if self._exc is not None:
            exc, self._exc = self._exc, None
            raise exc
        return self._result


class Engine:
    """The provider thread and its loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread_id: int | None = None
        #: How deep we are inside completion routines (the verifier reads it).
        self.in_completion = 0
        # Fault scheduler state: the IRP whose completion is being deferred, and the
        # completions waiting for a later loop turn (in order).
        self.deferring: IRP | None = None
        self.deferred = False
        self._later: collections.deque[IRP] = collections.deque()

    # --- life ---------------------------------------------------------------------
    def start(self, timeout: float | None) -> bool:
        """Start the provider thread once; True when its loop is running."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._main, name="pywsk-provider", daemon=True
                )
                self._thread.start()
        return self._ready.wait(timeout)

    def _main(self) -> None:
        KeRaiseIrql(DISPATCH_LEVEL)
        loop = _new_loop()
        asyncio.set_event_loop(loop)
        self.loop = loop
        self.thread_id = threading.get_ident()
        loop.call_soon(self._ready.set)
        # This thread is the processor that runs DPCs (KeInsertQueueDpc from any thread).
        dpc.set_processor(self._wake_for_dpcs)
        loop.run_forever()

    def _wake_for_dpcs(self) -> None:
        assert self.loop is not None
        self.loop.call_soon_threadsafe(dpc.run_queued, self._report_dpc)

    @staticmethod
    def _report_dpc(exc: BaseException, which: dpc.KDPC) -> None:
        report_exception(exc, "in a DPC routine", which)

    # --- where work runs ----------------------------------------------------------------
    def on_loop(self) -> bool:
        """True when the caller is the provider thread."""
        return threading.get_ident() == self.thread_id

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the provider thread and return its result.

        Inline when called on the provider thread; otherwise handed to the loop while the
        caller waits.  An exception raised by ``fn`` is raised in the caller.
        """
        if threading.get_ident() == self.thread_id:
            return fn(*args)
        if not self._ready.is_set():
            self.start(None)
        assert self.loop is not None
        waiter = _Waiter()
        self.loop.call_soon_threadsafe(waiter.run, fn, args)
        result: T = waiter.wait()
        return result

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the provider thread soon (never inline)."""
        assert self.loop is not None
        if threading.get_ident() == self.thread_id:
            self.loop.call_soon(self._guarded, fn, args)
        else:
            self.loop.call_soon_threadsafe(self._guarded, fn, args)

    def _guarded(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            fn(*args)
        except BaseException as exc:  # never let client code or a bug stop the loop
            report_exception(exc, "in provider work", fn)

    def run_guarded(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` now, reporting (not raising) any exception."""
        self._guarded(fn, args)

    # --- completion ---------------------------------------------------------------------
    def complete(self, irp: IRP, status: int, information: Any = 0) -> None:
        """Complete ``irp`` with ``status`` / ``information`` on the provider thread.

        The completion routine runs now, inside this call, at DISPATCH_LEVEL - unless the
        fault scheduler (verifier) asks for it to run on a later loop turn: for the IRP of
        the call being taken (the call then returns STATUS_PENDING), or to widen
        cancel-versus-completion windows.  Later completions keep their order, except where
        the scheduler's ``reorder`` lets one pass another (never against a WSK rule).  An
        exception the routine raises is reported, never propagated.
        """
        irp.IoStatus.Status = status
        irp.IoStatus.Information = information
        plan = hooks.faults
        if plan is not None and self.loop is not None:
            if irp is self.deferring:
                self.deferred = True
                IoMarkIrpPending(irp)
                self._later.append(irp)
                plan.hold_completion(irp)
                self.loop.call_soon(self._complete_later)
                return
            if irp._marked_pending and (self._later or plan.delay_completion()):
                self._later.append(irp)
                plan.hold_completion(irp)
                self.loop.call_soon(self._complete_later)
                return
            # An inline completion (the call will not return STATUS_PENDING) runs now; the
            # delayed ones before it first, so that the order is kept.
            while self._later:
                self._complete_now(plan.next_completion(self._later))
        self._complete_now(irp)

    def _complete_now(self, irp: IRP) -> None:
        self.in_completion += 1
        try:
            IoCompleteRequest(irp, IO_NETWORK_INCREMENT)
        except BaseException as exc:
            report_exception(exc, "in a completion routine", irp)
        finally:
            self.in_completion -= 1

    def _complete_later(self) -> None:
        if self._later:
            plan = hooks.faults
            irp = self._later.popleft() if plan is None else plan.next_completion(self._later)
            self._complete_now(irp)

    def take(self, function: str, irp: IRP, fn: Callable[..., int], args: tuple[Any, ...]) -> int:
        """Run a dispatch function that took ``irp``; the fault scheduler may force PENDING."""
        plan = hooks.faults
        if plan is None:
            return fn(*args)
        failure = plan.fail_call(function)
        if failure is not None:
            self.complete(irp, failure)
            return failure
        if not plan.force_pending(function):
            return fn(*args)
        outer = (self.deferring, self.deferred)
        self.deferring, self.deferred = irp, False
        try:
            status = fn(*args)
            return NTSTATUS.STATUS_PENDING if self.deferred else status
        finally:
            self.deferring, self.deferred = outer


def report_exception(exc: BaseException, where: str, obj: object) -> None:
    """Report an exception from client code without stopping the provider."""
    hook_args = types.SimpleNamespace(
        exc_type=type(exc),
        exc_value=exc,
        exc_traceback=exc.__traceback__,
        err_msg=f"pywsk: exception {where}",
        object=obj,
    )
    sys.unraisablehook(hook_args)  # type: ignore[arg-type, unused-ignore]
