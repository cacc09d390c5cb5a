"""Events, waits, time, IRQL, system threads, debug output and stops of a loaded C driver.

What it does: :class:`KernelRuntime` supplies the ``extern "Python"`` functions of the
runtime that are not about IRPs, MDLs or pool: KEVENTs (found by their C address, as
every object of :class:`~pywsk.cdriver.runtime.Runtime`), ``KeWaitForSingleObject`` /
``KeWaitForMultipleObjects`` on pywsk's events, the clocks, pywsk's per-thread IRQL, the
count of the driver's system threads (unload waits for it), ``DbgPrint`` to logging, and
the driver's own stops (``KeBugCheckEx``, a failed ``ASSERT``, an unhandled exception).

What it refuses: a wait or an event operation on memory ``KeInitializeEvent`` did not
initialise (a BugCheck, which stops the driver).

What always holds: a wait of a stopped driver returns at once (STATUS_UNSUCCESSFUL), so a
stop never leaves a driver thread blocked.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Final

import pywsk.nt as nt

from ..nt.status import NTSTATUS, status_name
from .runtime import KMODE_EXCEPTION_NOT_HANDLED, DriverBugCheck, Runtime, signed32

__all__ = ["KernelRuntime"]

_LEVELS: Final = {0: logging.ERROR, 1: logging.WARNING, 2: logging.DEBUG, 3: logging.INFO}
_STOP_KINDS: Final = {
    1: "unhandled exception",
    2: "breakpoint",
    3: "assertion failed",
    4: "bug check",
}


class KernelRuntime(Runtime):
    """A loaded driver's runtime: events, waits, IRQL, threads, debug output, stops."""

    # --- events and waits ------------------------------------------------------------------
    def pyb_KeInitializeEvent(self, cevent: Any, kind: int, state: int, *site: Any) -> None:
        event = nt.KEVENT()
        nt.KeInitializeEvent(event, nt.EVENT_TYPE(kind), bool(state))
        with self._lock:
            self._events[self.address(cevent)] = event

    def pyb_KeEventOp(self, op: int, cevent: Any, *site: Any) -> int:
        if op == 4:  # the runtime forgets an event it made (a delay, a thread's end)
            with self._lock:
                self._events.pop(self.address(cevent), None)
            return 0
        event = self._event(cevent)
        if op == 0:
            return nt.KeSetEvent(event, nt.IO_NO_INCREMENT, False)
        if op == 1:
            return nt.KeResetEvent(event)
        if op == 2:
            nt.KeClearEvent(event)
            return 0
        return nt.KeReadStateEvent(event)

    def pyb_KeWait(
        self,
        count: int,
        objects: Any,
        wait_type: int,
        reason: int,
        mode: int,
        alertable: int,
        has_timeout: int,
        timeout: int,
        has_blocks: int,
        *site: Any,
    ) -> int:
        if self.stopped():
            return signed32(NTSTATUS.STATUS_UNSUCCESSFUL)
        limit = nt.MAXIMUM_WAIT_OBJECTS if has_blocks else nt.THREAD_WAIT_OBJECTS
        events = [self._event(objects[i]) for i in range(min(count, limit + 1))]
        when = timeout if has_timeout else None
        status: int
        if wait_type == -1:
            status = nt.KeWaitForSingleObject(events[0], reason, mode, bool(alertable), when)
        else:
            blocks = [nt.KWAIT_BLOCK() for _ in range(count)] if has_blocks else None
            status = nt.KeWaitForMultipleObjects(
                count, events, nt.WAIT_TYPE(wait_type), reason, mode, bool(alertable), when, blocks
            )
        if self.stopped():
            return signed32(NTSTATUS.STATUS_UNSUCCESSFUL)
        return signed32(status)

    def pyb_Time(self, which: int) -> int:
        if which == 0:
            system = nt.LARGE_INTEGER()
            nt.KeQuerySystemTimePrecise(system)
            return system.QuadPart
        return time.monotonic_ns() // 100

    def pyb_Irql(self, op: int, irql: int) -> int:
        if op == 0:
            return nt.KeGetCurrentIrql()
        if op == 1:
            return nt.KeRaiseIrql(irql)
        nt.KeLowerIrql(irql)
        return 0

    def pyb_ThreadEvent(self, op: int, thread: Any) -> None:
        with self.threads_changed:
            self.threads += 1 if op == 0 else -1
            self.threads_changed.notify_all()

    # --- debug output and stops ------------------------------------------------------------------
    def pyb_DbgPrint(self, level: int, text: Any) -> None:
        line = self.ffi.string(text).decode(errors="replace")
        with self._lock:
            self.debug_output.append(line)
        self.debug_log.log(_LEVELS.get(level, logging.DEBUG), "%s", line.rstrip("\n"))

    def pyb_Stop(self, kind: int, code: int, text: Any, *site: Any) -> None:
        message = self.ffi.string(text).decode(errors="replace")
        if kind == 4:
            raise DriverBugCheck(code & 0xFFFFFFFF, message)
        if kind == 1:
            message += f" ({status_name(code & 0xFFFFFFFF)})"
        raise DriverBugCheck(KMODE_EXCEPTION_NOT_HANDLED, f"{_STOP_KINDS[kind]}: {message}")
