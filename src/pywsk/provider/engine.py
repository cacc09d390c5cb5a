"""The engine: where provider work runs, where completions run, and the provider thread.

What it does: implements the execution model of ``docs/design.md`` section 2.

* **Calls act on the caller's thread**, as on Windows.  A dispatch function runs in the
  context of the thread that calls it and makes its syscall before it returns.  Each
  socket's state is guarded by the socket's own lock; :meth:`Engine.locked` runs provider
  code under it.  A request that finishes at once is completed in the caller's context:
  :meth:`Engine.complete` only *records* the IRP while the lock is held, and the
  completion routines run, at DISPATCH_LEVEL, right after the lock is released and before
  the dispatch function returns - as ``IoCompleteRequest`` does on Windows.  No client
  code ever runs with a provider lock held.
* **The provider thread only waits.**  It owns one edge-triggered ``epoll`` in which every
  socket is registered once, for its whole life (:meth:`Engine.register`), and it runs what
  readiness makes possible - the completions of requests that returned STATUS_PENDING and
  the event callbacks - plus posted work (:meth:`Engine.post`), timers
  (:meth:`Engine.call_later`) and DPCs.  It runs at DISPATCH_LEVEL for its whole life.
* **Chains are bounded.**  A completion routine that re-issues a request which completes
  inline nests one level deeper on the same thread.  From :data:`MAX_INLINE_DEPTH` levels
  on, a request's inline completion is handed to the provider thread instead and the call
  returns STATUS_PENDING - legal for every WSK call - so a chain can neither exhaust the
  stack nor hold the provider thread against other sockets.

What it refuses: nothing of its own.  It never lets an exception raised by client code (a
completion routine, a callback, a DPC) escape into the provider: it is reported through
``sys.unraisablehook`` with a real ``UnraisableHookArgs``, and the provider carries on.

What always holds: every IRP given to :meth:`Engine.complete` completes exactly once;
routines run outside every provider lock; the lock order is a listening (or stream) socket
before a connection socket it accepted, and every provider lock before the IRP cancel lock
and the engine's own queue locks.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import heapq
import itertools
import os
import select
import threading
import time
from typing import TYPE_CHECKING, Any, Final, TypeVar

from .._log import report_unraisable
from ..nt import dpc, hooks
from ..nt.irp import IO_NETWORK_INCREMENT, IRP, IoCompleteRequest, IoMarkIrpPending
from ..nt.irql import DISPATCH_LEVEL, KeRaiseIrql
from ..nt.irql import _state as _irql
from ..nt.status import NTSTATUS

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["MAX_INLINE_DEPTH", "TURN_BUDGET", "Engine", "loop_flavour", "report_exception"]

T = TypeVar("T")

#: How deeply inline completions may nest on one thread before a request's completion is
#: handed to the provider thread (the call then returns STATUS_PENDING).
MAX_INLINE_DEPTH: Final = 8

#: One registration per socket: readiness both ways and every TCP state change (our FIN's
#: acknowledgement wakes the socket and re-reports EPOLLOUT; the peer's FIN EPOLLRDHUP; an
#: RST EPOLLERR | EPOLLHUP), edge-triggered so that no event repeats by itself.
SOCKET_EVENTS: Final = select.EPOLLIN | select.EPOLLOUT | select.EPOLLRDHUP | select.EPOLLET

#: How many inline completions the provider thread runs in one turn (between two looks at
#: readiness) before further requests made there pend: a driver that re-issues from its
#: completion routine in a loop, while data keeps completing its requests inline, then
#: goes on from the queue instead of holding every other socket's completions back.
TURN_BUDGET: Final = 64

#: How many posted items the provider thread runs before it looks at readiness again.
_POSTED_PER_TURN: Final = 64


def loop_flavour() -> str:
    """What the provider thread waits with (always ``"epoll"``: one edge-triggered epoll)."""
    return "epoll"


class _PerThread(threading.local):
    #: Completions (and work after them) recorded inside the current locked section
    #: (None: not in one).
    batch: list[IRP | Callable[[], None]] | None = None
    #: How deep this thread is inside completion routines.
    depth = 0
    #: Inline completions in the provider thread's current turn (other threads: always 0).
    turn = 0
    #: True on the provider thread.
    provider = False
    #: The IRP whose inline completion goes to the provider thread instead, and whether it did.
    deferring: IRP | None = None
    deferred = False


class TimerHandle:
    """A :meth:`Engine.call_later` entry; :meth:`cancel` stops it from running."""

    __slots__ = ("args", "cancelled", "fn", "when")

    def __init__(self, when: float, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.when = when
        self.fn = fn
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Engine:
    """The execution model: locked sections on callers' threads, and the provider thread."""

    def __init__(self) -> None:
        self._start_lock = threading.Lock()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self.thread_id: int | None = None
        self._tls = _PerThread()
        self._epoll = select.epoll()
        self._handlers: dict[int, Callable[[int], None]] = {}
        # Posted work: appended from any thread; the eventfd wakes the provider thread.
        self._posted: collections.deque[tuple[Callable[..., Any], tuple[Any, ...]]] = (
            collections.deque()
        )
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._wake_armed = False
        self._epoll.register(self._wake_fd, select.EPOLLIN)
        self._timers: list[tuple[float, int, TimerHandle]] = []
        self._timer_seq = itertools.count()
        self._timer_lock = threading.Lock()
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        # Completions handed to the provider thread (deep chains, the fault scheduler), in
        # order; the scheduler may pick another one first where WSK allows.
        self._later: collections.deque[IRP] = collections.deque()
        self._later_lock = threading.Lock()
        #: Serialises the fault scheduler, which callers consult from many threads.
        self.plan_lock = threading.Lock()

    # --- life ---------------------------------------------------------------------
    def start(self, timeout: float | None) -> bool:
        """Start the provider thread once; True when it runs."""
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._main, name="pywsk-provider", daemon=True
                )
                self._thread.start()
        return self._ready.wait(timeout)

    def _main(self) -> None:
        KeRaiseIrql(DISPATCH_LEVEL)
        self.thread_id = threading.get_ident()
        # This thread is the processor that runs DPCs (KeInsertQueueDpc from any thread).
        dpc.set_processor(self._wake_for_dpcs)
        self._ready.set()
        poll = self._epoll.poll
        handlers = self._handlers
        posted = self._posted
        wake_fd = self._wake_fd
        tls = self._tls
        tls.provider = True
        while True:
            tls.turn = 0
            if posted:
                timeout = 0.0
            elif self._timers:
                timeout = max(0.0, self._timers[0][0] - time.monotonic())
            else:
                timeout = -1.0
            try:
                events = poll(timeout)
            except InterruptedError:  # pragma: no cover - PEP 475 retries; belt and braces
                continue
            for fd, mask in events:
                if fd == wake_fd:
                    # Read first, then disarm: a post that saw the flag still set before
                    # this read is run below; one that comes after the disarm writes again.
                    # (Disarming first could swallow a second writer's count with the
                    # flag left set: every later post would then skip its wake-up.)
                    with contextlib.suppress(BlockingIOError):
                        os.eventfd_read(wake_fd)
                    self._wake_armed = False
                    continue
                handler = handlers.get(fd)
                if handler is not None:
                    try:
                        handler(mask)
                    except BaseException as exc:
                        report_exception(exc, "in provider work", handler)
            if posted:
                self._run_posted()
            if self._timers:
                self._run_timers()

    def _run_posted(self) -> None:
        posted = self._posted
        for _ in range(min(len(posted), _POSTED_PER_TURN)):
            fn, args = posted.popleft()
            try:
                fn(*args)
            except BaseException as exc:  # never let client code or a bug stop the thread
                report_exception(exc, "in provider work", fn)

    def _run_timers(self) -> None:
        now = time.monotonic()
        due: list[TimerHandle] = []
        with self._timer_lock:
            while self._timers and self._timers[0][0] <= now:
                due.append(heapq.heappop(self._timers)[2])
        for handle in due:
            if not handle.cancelled:
                try:
                    handle.fn(*handle.args)
                except BaseException as exc:
                    report_exception(exc, "in provider work", handle.fn)

    def _wake_for_dpcs(self) -> None:
        self.post(dpc.run_queued, self._report_dpc)

    @staticmethod
    def _report_dpc(exc: BaseException, which: dpc.KDPC) -> None:
        report_exception(exc, "in a DPC routine", which)

    # --- readiness ----------------------------------------------------------------------
    def register(self, fd: int, handler: Callable[[int], None]) -> None:
        """Watch ``fd`` for good (until :meth:`forget`): ``handler(events)`` runs on the
        provider thread at each edge.  One ``epoll_ctl`` for the socket's whole life."""
        self._handlers[fd] = handler
        try:
            self._epoll.register(fd, SOCKET_EVENTS)
        except FileExistsError:
            self._epoll.modify(fd, SOCKET_EVENTS)

    def forget(self, fd: int, unregister: bool = False) -> None:
        """Stop calling ``fd``'s handler.  Closing the fd removes it from the epoll by
        itself; ``unregister`` removes it now (an fd that stays open)."""
        if self._handlers.pop(fd, None) is not None and unregister:
            with contextlib.suppress(OSError):  # already gone
                self._epoll.unregister(fd)

    # --- where work runs ----------------------------------------------------------------
    def on_loop(self) -> bool:
        """True when the caller is the provider thread."""
        return threading.get_ident() == self.thread_id

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the provider thread soon (never inline), in FIFO order."""
        self._posted.append((fn, args))
        if threading.get_ident() != self.thread_id and not self._wake_armed:
            self._wake_armed = True
            os.eventfd_write(self._wake_fd, 1)

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> TimerHandle:
        """Run ``fn(*args)`` on the provider thread after ``delay`` seconds."""
        handle = TimerHandle(time.monotonic() + delay, fn, args)
        with self._timer_lock:
            heapq.heappush(self._timers, (handle.when, next(self._timer_seq), handle))
        self.post(_nothing)  # the provider thread recomputes its timeout
        return handle

    def run_in_executor(
        self, work: Callable[[], Any], done: Callable[[concurrent.futures.Future[Any]], None]
    ) -> None:
        """Run blocking ``work`` in a worker thread; ``done(future)`` then runs on the
        provider thread."""
        if self._executor is None:
            with self._start_lock:
                if self._executor is None:
                    self._executor = concurrent.futures.ThreadPoolExecutor(
                        thread_name_prefix="pywsk-resolver"
                    )
        future = self._executor.submit(work)
        future.add_done_callback(lambda f: self.post(done, f))

    # --- locked sections ------------------------------------------------------------------
    def locked(self, lock: threading.Lock, fn: Callable[..., T], *args: Any) -> T:
        """Run provider code ``fn(*args)`` under a socket's ``lock``; then, outside it, the
        completion routines of the IRPs it completed (in order, at DISPATCH_LEVEL).

        Nested in another section of this thread (provider code reaching a second socket,
        in lock order), the completions join the outer section's and run when it ends.
        """
        tls = self._tls
        outer = tls.batch
        if outer is not None:
            with lock:
                return fn(*args)
        batch: list[IRP | Callable[[], None]] = []
        tls.batch = batch
        lock.acquire()
        try:
            result = fn(*args)
        finally:
            lock.release()
            tls.batch = None
            if batch:
                self._run_batch(batch)
        return result

    def leave(self, lock: threading.Lock) -> list[IRP | Callable[[], None]] | None:
        """Inside a section, before client code runs (an event callback): release ``lock``,
        run the completions recorded so far, and leave the section.  Give the result to
        :meth:`reenter` afterwards."""
        tls = self._tls
        batch = tls.batch
        tls.batch = None
        lock.release()
        if batch:
            pending = list(batch)
            batch.clear()
            self._run_batch(pending)
        return batch

    def reenter(self, lock: threading.Lock, batch: list[IRP | Callable[[], None]] | None) -> None:
        """Undo :meth:`leave`: take ``lock`` again and go on recording into ``batch``."""
        lock.acquire()
        self._tls.batch = batch

    def _run_batch(self, batch: list[IRP | Callable[[], None]]) -> None:
        """Run recorded completions (and work after them) in order, at DISPATCH_LEVEL."""
        tls = self._tls
        old = _irql.level
        if old < DISPATCH_LEVEL:
            _irql.level = DISPATCH_LEVEL
        try:
            for item in batch:
                if not isinstance(item, IRP):
                    item()
                    continue
                tls.depth += 1
                if tls.provider:
                    tls.turn += 1
                try:
                    IoCompleteRequest(item, IO_NETWORK_INCREMENT)
                except BaseException as exc:
                    report_exception(exc, "in a completion routine", item)
                finally:
                    tls.depth -= 1
        finally:
            _irql.level = old

    def after_completions(self, fn: Callable[[], None]) -> None:
        """Run ``fn()`` after the completion routines recorded so far in this section
        (now, outside a section): e.g. a socket leaves its client only after its close
        IRP's routine ran."""
        batch = self._tls.batch
        if batch is not None:
            batch.append(fn)
        else:
            fn()

    # --- completion ---------------------------------------------------------------------
    def complete(self, irp: IRP, status: int, information: Any = 0) -> None:
        """Complete ``irp`` with ``status`` / ``information``.

        In a locked section the completion routine runs when the section ends, on this
        thread; elsewhere it runs now.  It runs on the provider thread instead for the IRP
        of a call made too deep in a chain (the call returns STATUS_PENDING), and where
        the fault scheduler (verifier) holds it.  An exception the routine raises is
        reported, never propagated.
        """
        irp.IoStatus.Status = status
        irp.IoStatus.Information = information
        tls = self._tls
        if irp is tls.deferring:
            tls.deferred = True
            IoMarkIrpPending(irp)
            self._hold(irp)
            return
        if hooks.faults is not None and self._fault_holds(irp):
            return
        batch = tls.batch
        if batch is not None:
            batch.append(irp)
        else:
            self._complete_now(irp)

    def _fault_holds(self, irp: IRP) -> bool:
        """The fault scheduler's say: hold ``irp``'s completion (True), or let it complete
        now - after every held one, which then complete first, to keep the order."""
        plan = hooks.faults
        assert plan is not None
        with self._later_lock:
            held = bool(self._later)
        if irp._marked_pending:
            with self.plan_lock:
                delay = held or plan.delay_completion()
            if delay:
                self._hold(irp)
                return True
        if held:
            earlier: list[IRP | Callable[[], None]] = []
            with self._later_lock, self.plan_lock:
                while self._later:
                    earlier.append(plan.next_completion(self._later))
            batch = self._tls.batch
            if batch is not None:
                batch.extend(earlier)
            else:
                self._run_batch(earlier)
        return False

    def _hold(self, irp: IRP) -> None:
        plan = hooks.faults
        with self._later_lock:
            self._later.append(irp)
        if plan is not None:
            with self.plan_lock:
                plan.hold_completion(irp)
        self.post(self._complete_later)

    def _complete_later(self) -> None:
        plan = hooks.faults
        with self._later_lock:
            if not self._later:
                return
            if plan is None:
                irp = self._later.popleft()
            else:
                with self.plan_lock:
                    irp = plan.next_completion(self._later)
        self._complete_now(irp)

    def _complete_now(self, irp: IRP) -> None:
        self._run_batch([irp])

    @property
    def in_completion(self) -> int:
        """How deep the calling thread is inside completion routines (the verifier reads it)."""
        return self._tls.depth

    def take(self, function: str, irp: IRP, fn: Callable[..., int], args: tuple[Any, ...]) -> int:
        """Run a dispatch function that took ``irp``.  Deep in a chain, or when the fault
        scheduler says so, its inline completion goes to the provider thread and the call
        returns STATUS_PENDING."""
        tls = self._tls
        force = tls.depth >= MAX_INLINE_DEPTH or tls.turn >= TURN_BUDGET
        plan = hooks.faults
        if plan is not None:
            with self.plan_lock:
                failure = plan.fail_call(function)
                if failure is None:
                    force = plan.force_pending(function) or force
            if failure is not None:
                self.complete(irp, failure)
                return failure
        if not force:
            return fn(*args)
        outer = (tls.deferring, tls.deferred)
        tls.deferring, tls.deferred = irp, False
        try:
            status = fn(*args)
            return NTSTATUS.STATUS_PENDING if tls.deferred else status
        finally:
            tls.deferring, tls.deferred = outer


def _nothing() -> None:
    """Posted to wake the provider thread (a new timer)."""


def report_exception(exc: BaseException, where: str, obj: object) -> None:
    """Report an exception from client code without stopping the provider
    (:func:`pywsk._log.report_unraisable`: a real ``UnraisableHookArgs``)."""
    report_unraisable(exc, f"pywsk: exception {where}", obj)
