"""KEVENTs and waits: how a driver thread waits for a WSK completion.

What it does: models kernel events (:class:`KEVENT`, :func:`KeInitializeEvent`,
:func:`KeSetEvent`, :func:`KeClearEvent`, :func:`KeResetEvent`,
:func:`KeReadStateEvent`), :func:`KeWaitForSingleObject` with NT timeouts
(:class:`LARGE_INTEGER`, 100-ns units) and the system clock
(:func:`KeQuerySystemTime`, :func:`KeQuerySystemTimePrecise`).  The usual pattern works
across threads: a driver thread waits on an event that a completion routine, running on
the provider's event-loop thread at DISPATCH_LEVEL, sets.

The rules, from Microsoft's pages (KeInitializeEvent, KeSetEvent, KeResetEvent,
KeWaitForSingleObject, "Event Objects"):

1. A NotificationEvent stays signalled until it is cleared; setting it releases every
   thread waiting at that moment, even if it is cleared again before they run.
2. A SynchronizationEvent releases exactly one waiter (the longest waiting) and is reset
   by that release; set with no waiter, it stays signalled until one wait consumes it.
3. KeWaitForSingleObject returns STATUS_SUCCESS when the object satisfied the wait and
   STATUS_TIMEOUT when the timeout expired first.  ``Timeout`` is None (wait forever) or
   a count of 100-ns units: negative is relative to now, positive is an absolute system
   time (since 1601-01-01 UTC), zero only tests the state.
4. IRQL: waiting needs IRQL <= APC_LEVEL; at DISPATCH_LEVEL only a zero timeout is
   allowed; above DISPATCH_LEVEL no wait is.  KeSetEvent with ``Wait`` FALSE, KeClearEvent,
   KeResetEvent and KeReadStateEvent need IRQL <= DISPATCH_LEVEL; KeSetEvent with ``Wait``
   TRUE needs PASSIVE_LEVEL.

What it refuses: a wait that breaks rule 4 raises :class:`~pywsk.nt.bugcheck.BugCheck`
(IRQL_NOT_LESS_OR_EQUAL), and so does using an event that was never initialised, or
re-initialising one that threads are waiting on.  Only KEVENTs are dispatcher objects
here; another ``Object`` raises ``TypeError``.

Choices where the pages are silent (``docs/fidelity.md``):

* No APC or alert is ever delivered, so an ``Alertable`` wait ends only in STATUS_SUCCESS
  or STATUS_TIMEOUT.  ``WaitReason``, ``Increment`` (priority boost) and ``WaitMode`` are
  checked for range and otherwise ignored.
* An absolute timeout is converted once, at the start of the wait, to a deadline on the
  monotonic clock: changing the system time during the wait does not move it.
* KeQuerySystemTime returns the precise time too (Windows updates it once per clock tick).

What always holds: waiting never busy-waits (a ``threading.Condition`` per waiter), and
every state change happens under the event's lock, so setting from any thread is safe.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Final

from .bugcheck import BugCheck, BugCheckCode
from .irql import DISPATCH_LEVEL, PASSIVE_LEVEL, KeGetCurrentIrql, irql_name, require_irql_at_most
from .mdl import KPROCESSOR_MODE, KernelMode, UserMode
from .status import NTSTATUS

__all__ = [
    "EVENT_TYPE",
    "NotificationEvent",
    "SynchronizationEvent",
    "KWAIT_REASON",
    "Executive",
    "UserRequest",
    "KPRIORITY",
    "LARGE_INTEGER",
    "PLARGE_INTEGER",
    "KEVENT",
    "PKEVENT",
    "PRKEVENT",
    "KeInitializeEvent",
    "KeSetEvent",
    "KeClearEvent",
    "KeResetEvent",
    "KeReadStateEvent",
    "KeWaitForSingleObject",
    "KeQuerySystemTime",
    "KeQuerySystemTimePrecise",
]

EVENT_TYPE = int
NotificationEvent: Final = 0
SynchronizationEvent: Final = 1

KWAIT_REASON = int
Executive: Final = 0
UserRequest: Final = 6

KPRIORITY = int

# 100-ns intervals between 1601-01-01 and 1970-01-01 (both UTC).
_EPOCH_1601: Final = 116_444_736_000_000_000


class LARGE_INTEGER:
    """A signed 64-bit integer; ``QuadPart`` is the whole value."""

    __slots__ = ("QuadPart",)

    def __init__(self, QuadPart: int = 0) -> None:
        self.QuadPart = QuadPart

    @property
    def LowPart(self) -> int:
        """The low 32 bits, unsigned (ULONG)."""
        return self.QuadPart & 0xFFFFFFFF

    @property
    def HighPart(self) -> int:
        """The high 32 bits, signed (LONG)."""
        return self.QuadPart >> 32

    def __repr__(self) -> str:
        return f"LARGE_INTEGER({self.QuadPart})"


PLARGE_INTEGER = LARGE_INTEGER


class _Waiter:
    """One thread blocked in KeWaitForSingleObject on one event."""

    __slots__ = ("condition", "satisfied")

    def __init__(self, lock: threading.Lock) -> None:
        self.condition = threading.Condition(lock)
        self.satisfied = False


class KEVENT:
    """A kernel event.  Initialise it with :func:`KeInitializeEvent` before any other use."""

    __slots__ = ("Type", "_initialized", "_lock", "_signal_state", "_waiters")

    def __init__(self) -> None:
        #: NotificationEvent or SynchronizationEvent (Header.Type in C).
        self.Type: EVENT_TYPE = NotificationEvent
        self._lock = threading.Lock()
        self._signal_state = 0
        self._waiters: deque[_Waiter] = deque()
        self._initialized = False

    def __repr__(self) -> str:
        if not self._initialized:
            return f"<KEVENT uninitialised at 0x{id(self):x}>"
        kind = "Notification" if self.Type == NotificationEvent else "Synchronization"
        state = "signalled" if self._signal_state else "not signalled"
        return f"<KEVENT {kind} {state} at 0x{id(self):x}>"


PKEVENT = KEVENT
PRKEVENT = KEVENT


def _as_event(Event: object, function: str) -> KEVENT:
    """``Event`` itself, refused with ``TypeError`` unless it is a KEVENT."""
    if not isinstance(Event, KEVENT):
        raise TypeError(f"{function}: expected a KEVENT, not {type(Event).__name__}")
    return Event


def _check_initialized(Event: KEVENT, function: str) -> None:
    if not _as_event(Event, function)._initialized:
        raise BugCheck(
            BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION,
            f"{function} on a KEVENT that KeInitializeEvent never initialised",
            id(Event),
        )


def KeInitializeEvent(Event: KEVENT, Type: EVENT_TYPE, State: bool) -> None:
    """Initialise ``Event`` as a NotificationEvent or SynchronizationEvent, set if ``State``.

    KeInitializeEvent: re-initialising an event that threads are waiting on raises
    BugCheck (in Windows it corrupts the wait list).
    """
    _as_event(Event, "KeInitializeEvent")
    if Type not in (NotificationEvent, SynchronizationEvent):
        raise ValueError(f"KeInitializeEvent: Type {Type!r} is not an EVENT_TYPE")
    with Event._lock:
        if Event._waiters:
            raise BugCheck(
                BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION,
                "KeInitializeEvent on a KEVENT that threads are waiting on",
                id(Event),
                len(Event._waiters),
            )
        Event.Type = Type
        Event._signal_state = 1 if State else 0
        Event._initialized = True


def KeSetEvent(Event: KEVENT, Increment: KPRIORITY, Wait: bool) -> int:
    """Signal ``Event`` and return its previous state (0 or 1).

    KeSetEvent: a NotificationEvent releases every current waiter and stays signalled; a
    SynchronizationEvent releases the longest waiter and stays not signalled, or becomes
    signalled when nobody waits.  ``Wait`` TRUE (the caller waits next) needs
    PASSIVE_LEVEL; otherwise IRQL <= DISPATCH_LEVEL.
    """
    require_irql_at_most(PASSIVE_LEVEL if Wait else DISPATCH_LEVEL, "KeSetEvent")
    _check_initialized(Event, "KeSetEvent")
    with Event._lock:
        previous = Event._signal_state
        if Event.Type == NotificationEvent:
            Event._signal_state = 1
            while Event._waiters:
                waiter = Event._waiters.popleft()
                waiter.satisfied = True
                waiter.condition.notify()
        elif Event._waiters:
            waiter = Event._waiters.popleft()
            waiter.satisfied = True
            waiter.condition.notify()
        else:
            Event._signal_state = 1
    return previous


def KeClearEvent(Event: KEVENT) -> None:
    """Set ``Event`` to not signalled (KeClearEvent)."""
    require_irql_at_most(DISPATCH_LEVEL, "KeClearEvent")
    _check_initialized(Event, "KeClearEvent")
    with Event._lock:
        Event._signal_state = 0


def KeResetEvent(Event: KEVENT) -> int:
    """Set ``Event`` to not signalled and return its previous state (KeResetEvent)."""
    require_irql_at_most(DISPATCH_LEVEL, "KeResetEvent")
    _check_initialized(Event, "KeResetEvent")
    with Event._lock:
        previous = Event._signal_state
        Event._signal_state = 0
    return previous


def KeReadStateEvent(Event: KEVENT) -> int:
    """The current state of ``Event``: 1 signalled, 0 not (KeReadStateEvent)."""
    require_irql_at_most(DISPATCH_LEVEL, "KeReadStateEvent")
    _check_initialized(Event, "KeReadStateEvent")
    with Event._lock:
        return Event._signal_state


def _system_time() -> int:
    return time.time_ns() // 100 + _EPOCH_1601


def KeQuerySystemTime(CurrentTime: LARGE_INTEGER) -> None:
    """Store the system time (100-ns units since 1601-01-01 UTC) in ``CurrentTime``."""
    CurrentTime.QuadPart = _system_time()


def KeQuerySystemTimePrecise(CurrentTime: LARGE_INTEGER) -> None:
    """Store the precise system time (100-ns units since 1601-01-01 UTC) in ``CurrentTime``."""
    CurrentTime.QuadPart = _system_time()


def _timeout_value(Timeout: LARGE_INTEGER | int | None) -> int | None:
    if Timeout is None:
        return None
    value = Timeout.QuadPart if isinstance(Timeout, LARGE_INTEGER) else Timeout
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("KeWaitForSingleObject: Timeout must be None, an int or a LARGE_INTEGER")
    return value


def KeWaitForSingleObject(
    Object: KEVENT,
    WaitReason: KWAIT_REASON,
    WaitMode: KPROCESSOR_MODE,
    Alertable: bool,
    Timeout: LARGE_INTEGER | int | None,
) -> NTSTATUS:
    """Wait until ``Object`` is signalled or ``Timeout`` expires.

    Returns STATUS_SUCCESS when the event satisfied the wait (a SynchronizationEvent is
    reset by it) and STATUS_TIMEOUT otherwise.  ``Timeout``: None waits forever; an int or
    LARGE_INTEGER counts 100-ns units, negative relative, positive absolute system time,
    zero a test of the state.  KeWaitForSingleObject: at DISPATCH_LEVEL only a zero
    timeout is allowed, and above DISPATCH_LEVEL no wait; otherwise BugCheck
    IRQL_NOT_LESS_OR_EQUAL, before anything changes.
    """
    value = _timeout_value(Timeout)
    irql = KeGetCurrentIrql()
    if irql > DISPATCH_LEVEL or (irql == DISPATCH_LEVEL and value != 0):
        wanted = "an infinite" if value is None else "a non-zero"
        rule = (
            "no wait is allowed above DISPATCH_LEVEL"
            if irql > DISPATCH_LEVEL
            else f"{wanted} timeout needs IRQL <= APC_LEVEL; at DISPATCH_LEVEL only a zero "
            "timeout is allowed"
        )
        raise BugCheck(
            BugCheckCode.IRQL_NOT_LESS_OR_EQUAL,
            f"KeWaitForSingleObject at {irql_name(irql)}: {rule}",
            0,
            irql,
        )
    _check_initialized(Object, "KeWaitForSingleObject")
    if WaitMode not in (KernelMode, UserMode):
        raise ValueError(f"KeWaitForSingleObject: WaitMode {WaitMode!r} is not a KPROCESSOR_MODE")
    if WaitReason < 0:
        raise ValueError(f"KeWaitForSingleObject: WaitReason {WaitReason!r} is not a KWAIT_REASON")

    deadline: float | None = None
    if value is not None and value != 0:
        delay_100ns = -value if value < 0 else value - _system_time()
        deadline = time.monotonic() + max(delay_100ns, 0) / 10_000_000

    event = Object
    with event._lock:
        if event._signal_state:
            if event.Type == SynchronizationEvent:
                event._signal_state = 0
            return NTSTATUS.STATUS_SUCCESS
        if value == 0:
            return NTSTATUS.STATUS_TIMEOUT
        waiter = _Waiter(event._lock)
        event._waiters.append(waiter)
        try:
            while not waiter.satisfied:
                if deadline is None:
                    waiter.condition.wait()
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                waiter.condition.wait(min(remaining, threading.TIMEOUT_MAX))
        finally:
            if not waiter.satisfied:
                # Timed out (or interrupted): leave the wait list.
                event._waiters.remove(waiter)
    return NTSTATUS.STATUS_SUCCESS if waiter.satisfied else NTSTATUS.STATUS_TIMEOUT
