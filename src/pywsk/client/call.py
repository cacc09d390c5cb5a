"""One WSK call on one IRP, the way a kernel driver issues it.

What it does: a :class:`Call` is what the client runtime (:class:`pywsk.client.Client`)
returns for each WSK function it calls on a fresh IRP (a test may also make one for an IRP
of its own, ``Call(name, irp)``, and set :meth:`Call.routine` as its completion routine): what the function returned, and -
set by the completion routine, which is invoked on success, error and cancel and returns
STATUS_MORE_PROCESSING_REQUIRED - the IRP's final status and Information, whether it
completed after STATUS_PENDING, when (wall clock and monotonic), on which thread and at
which IRQL.  A receive keeps the bytes it read (:attr:`Call.data`).  The client's tracer is
told when the call returned and when it completed.

Ownership: the IRP and the buffers (pool and MDL) of a call are freed exactly once, by
whichever comes last - the call returning to its issuer, or the completion routine - so a
routine never frees an IRP the provider may still read, and a pump that issues the next call
from a completion routine (:meth:`Call.settle_later`) never recurses through inline
completions.  A call made with ``keep=True`` keeps its IRP and buffers until
:meth:`Call.release` (tests that inspect or cancel the IRP afterwards).

A thread that blocks as a driver thread does hands the call a KEVENT
(:meth:`Call.signal`): it is set once the call is over - the completion routine ran and the
IRP and buffers were freed - and :func:`pywsk.client.blocking.wait` waits on it with
KeWaitForSingleObject.

What it refuses: waits without a bound - :meth:`Call.wait` raises ``TimeoutError`` when
its timeout expires; :meth:`Call.completed_within` says whether the completion came.

What always holds: the completion routine runs at most once per call (a second run raises
AssertionError in the thread that completed the IRP).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..core.ending import Ending
from ..nt import (
    IO_NO_INCREMENT,
    IRP,
    KEVENT,
    STATUS_MORE_PROCESSING_REQUIRED,
    STATUS_SUCCESS,
    IoCancelIrp,
    IoFreeIrp,
    KeGetCurrentIrql,
    KeSetEvent,
    status_name,
)

if TYPE_CHECKING:
    from .base import ClientBase

__all__ = ["Call"]


class Call:
    """One WSK call on one IRP: what it returned, and how and when the IRP completed."""

    def __init__(
        self,
        name: str,
        irp: IRP | None = None,
        *,
        client: ClientBase | None = None,
        label: str | None = None,
        socket: Any = None,
        record: bool = True,
        group: str | None = None,
        receive_pool: Any = None,
        keep: bool = False,
    ) -> None:
        self.client = client
        self.name = name
        #: How the tracer shows the call (``WskSend(b'hi')``); defaults to the name.
        self.label = label or name
        #: The WSK_SOCKET the call is about (None for client-level calls).
        self.socket = socket
        #: Whether the tracer records it (a bulk transfer records a few; :meth:`show`).
        self.record = record
        self.group = group
        self.returned: int | None = None
        self.status: int | None = None
        self.information: Any = None
        self.pending_returned: bool | None = None
        #: Wall-clock times (:func:`time.time`, comparable with packet captures).
        self.issued_at = time.time()
        self.returned_at: float | None = None
        self.completed_at: float | None = None
        #: Monotonic times (:func:`time.monotonic`), for durations.
        self.started_at = time.monotonic()
        self.completed_mono: float | None = None
        self.completion_thread: int | None = None
        self.completion_thread_name: str | None = None
        self.completion_irql: int | None = None
        self.completions = 0
        #: What a receive read (empty for other calls, or when it failed).
        self.data = b""
        #: Set by whoever counted this call's bytes once (a report counts each call once).
        self.counted = False
        #: Out-parameters the call fills (an address, a result pointer), kept alive with it.
        self.out: Any = None
        #: The end of ours the call makes if it succeeds (a WskDisconnect: our FIN or RST).
        self.ending: Ending | None = None
        self._irp: IRP | None = irp
        self.keep = keep
        self._receive_pool = receive_pool
        self._resources: list[Callable[[], None]] = []
        self._lock = threading.RLock()
        self._completed = False
        self._has_returned = False
        self._freed = False
        self._continuation: Callable[[Call], None] | None = None
        self._on_complete: list[Callable[[Call], None]] = []
        self._done = threading.Event()
        self._event: KEVENT | None = None

    # --- state ---------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        """True once the completion routine ran."""
        return self._done.is_set()

    @property
    def irp(self) -> IRP:
        """The call's IRP (freed once the call is over, unless made with ``keep=True``)."""
        if self._irp is None:
            raise AttributeError(f"{self.name} was made without an IRP")
        return self._irp

    @irp.setter
    def irp(self, irp: IRP) -> None:
        self._irp = irp

    @property
    def succeeded(self) -> bool:
        return self.status == STATUS_SUCCESS

    @property
    def receive_pool(self) -> Any:
        """The pool a receive reads into (None for other calls); valid until the call's
        buffers are freed."""
        return self._receive_pool

    @property
    def completed_wall(self) -> float | None:
        """The wall-clock time of the completion (the same as :attr:`completed_at`)."""
        return self.completed_at

    def wait(self, timeout: float) -> Call:
        """Wait at most ``timeout`` seconds for the completion; TimeoutError if it did not come."""
        if not self._done.wait(max(timeout, 0.0)):
            raise TimeoutError(f"{self.name}: IRP not completed within {timeout} s")
        return self

    def completed_within(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for the completion; True if it came."""
        return self._done.wait(max(timeout, 0.0))

    def elapsed_ms(self) -> float | None:
        if self.completed_at is None:
            return None
        return (self.completed_at - self.issued_at) * 1e3

    def cancel(self) -> bool:
        """IoCancelIrp, if the IRP is still pending; returns what IoCancelIrp returned."""
        with self._lock:
            if self._completed or self._freed or self._irp is None:
                return False
            result = IoCancelIrp(self._irp)
        if self.client is not None:
            self.client.tracer.note(
                self.socket,
                f"IoCancelIrp(IRP of {self.name}) returned {'TRUE' if result else 'FALSE'}",
                time.time(),
            )
        return result

    def show(self) -> None:
        """Trace, after the fact, a call issued with ``record=False`` (and its completion,
        when it comes): for the one call of a bulk run that matters, e.g. the send that pends."""
        if self.record or self.returned is None or self.client is None:
            return
        self.record = True
        group, self.group = self.group, None
        self.client.tracer.returned(self)
        self.group = group

    def settle_later(self, continuation: Callable[[Call], None]) -> bool:
        """Run ``continuation(self)`` from the completion routine, if the IRP is still pending.

        Returns False (and keeps nothing) when the IRP has completed already: the caller
        handles the result itself.  Call only after the call returned.
        """
        with self._lock:
            if self._completed:
                return False
            self._continuation = continuation
            return True

    def signal(self, event: KEVENT) -> bool:
        """KeSetEvent(``event``) once the call is over (completed, its IRP and buffers freed
        unless ``keep=True``); False, and nothing kept, if it is over already.  Call only
        after the call returned."""
        with self._lock:
            if self._completed:
                return False
            self._event = event
            return True

    def on_complete(self, hook: Callable[[Call], None]) -> None:
        """Run ``hook(self)`` in the completion routine, before any waiter wakes (set it
        before the call is issued)."""
        self._on_complete.append(hook)

    def add_resource(self, free: Callable[[], None]) -> None:
        """Free something (a buffer) together with the IRP."""
        self._resources.append(free)

    # --- the completion routine and the hand-off -------------------------------------------
    def routine(self, _device: Any, irp: IRP, _context: Any) -> int:
        with self._lock:
            self.completions += 1
            assert self.completions == 1, f"{self.name}: completion routine ran twice"
        self.status = irp.IoStatus.Status
        self.information = irp.IoStatus.Information
        self.pending_returned = bool(irp.PendingReturned)
        self.completed_at = time.time()
        self.completed_mono = time.monotonic()
        thread = threading.current_thread()
        self.completion_thread = thread.ident
        self.completion_thread_name = thread.name
        self.completion_irql = KeGetCurrentIrql()
        pool = self._receive_pool
        if pool is not None and self.status == STATUS_SUCCESS and isinstance(self.information, int):
            self.data = bytes(pool[: self.information])
        if self.client is not None:
            self.client._completed(self)
        for hook in self._on_complete:
            hook(self)
        with self._lock:
            self._completed = True
            last = self._has_returned
            continuation = self._continuation if last else None
            if last and not self.keep:
                self._release()
            event = self._event
        self._done.set()
        if event is not None:
            KeSetEvent(event, IO_NO_INCREMENT, False)
        if continuation is not None:
            continuation(self)
        return STATUS_MORE_PROCESSING_REQUIRED

    def _returned(self, status: int) -> None:
        self.returned = status
        self.returned_at = time.time()
        if self.client is not None:
            self.client.tracer.returned(self)
        with self._lock:
            self._has_returned = True
            if self._completed and not self.keep:
                self._release()

    def release(self) -> None:
        """Free the IRP and buffers of a completed ``keep=True`` call (idempotent)."""
        with self._lock:
            if self._completed or not self._has_returned:
                self._release()

    def _release(self) -> None:
        if self._freed:
            return
        self._freed = True
        if self._irp is not None:
            IoFreeIrp(self._irp)
        for free in self._resources:
            free()
        self._resources.clear()

    def __repr__(self) -> str:
        returned = status_name(self.returned) if self.returned is not None else "?"
        final = status_name(self.status) if self.status is not None else "pending"
        return f"<{self.label}: returned {returned}, completed {final} info={self.information!r}>"
