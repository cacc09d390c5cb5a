"""KEVENTs and waits: how a driver thread waits for a WSK completion.

What it does: models kernel events (:class:`KEVENT`, :func:`KeInitializeEvent`,
:func:`KeSetEvent`, :func:`KeClearEvent`, :func:`KeResetEvent`,
:func:`KeReadStateEvent`), :func:`KeWaitForSingleObject` and
:func:`KeWaitForMultipleObjects` (WaitAny / WaitAll) with NT timeouts
(:class:`LARGE_INTEGER`, 100-ns units, :func:`RtlConvertLongToLargeInteger`) and the
system clock
(:func:`KeQuerySystemTime`, :func:`KeQuerySystemTimePrecise`).  The usual pattern works
across threads: a driver thread waits on an event that a completion routine, running on
the provider's event-loop thread at DISPATCH_LEVEL, sets.

The rules, from Microsoft's pages (KeInitializeEvent, KeSetEvent, KeResetEvent,
KeWaitForSingleObject, KeWaitForMultipleObjects, "Event Objects"):

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
5. KeWaitForMultipleObjects: WaitAny returns ``STATUS_WAIT_0 + n`` for the lowest index
   signalled; WaitAll returns STATUS_SUCCESS once all are signalled at one instant (each
   SynchronizationEvent among them is then reset, none before); timeouts and IRQL as in
   3 and 4; more than THREAD_WAIT_OBJECTS objects need a WaitBlockArray and more than
   MAXIMUM_WAIT_OBJECTS are never allowed (bug check 0xC MAXIMUM_WAIT_OBJECTS_EXCEEDED).

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
every state change happens under one dispatcher lock shared by all events, so setting
from any thread is safe and a WaitAll sees all its events at one instant.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Final

from .bugcheck import BugCheck, BugCheckCode
from .irql import DISPATCH_LEVEL, PASSIVE_LEVEL, KeGetCurrentIrql, irql_name, require_irql_at_most
from .mdl import KernelMode, UserMode
from .status import NTSTATUS, STATUS_WAIT_0

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .mdl import KPROCESSOR_MODE

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
    "KeWaitForMultipleObjects",
    "WAIT_TYPE",
    "WaitAll",
    "WaitAny",
    "THREAD_WAIT_OBJECTS",
    "MAXIMUM_WAIT_OBJECTS",
    "KWAIT_BLOCK",
    "PKWAIT_BLOCK",
    "RtlConvertLongToLargeInteger",
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

WAIT_TYPE = int
WaitAll: Final = 0
WaitAny: Final = 1
#: Objects a wait may name without a WaitBlockArray (wdm.h).
THREAD_WAIT_OBJECTS: Final = 3
#: Objects a wait may name at most (wdm.h).
MAXIMUM_WAIT_OBJECTS: Final = 64

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


def RtlConvertLongToLargeInteger(SignedInteger: int) -> LARGE_INTEGER:
    """A LARGE_INTEGER holding the sign-extended LONG ``SignedInteger``.

    The C idiom ``Timeout = RtlConvertLongToLargeInteger(-10 * 1000 * 1000)`` (one second,
    relative) reads the same.  A value outside the LONG range raises ``ValueError`` (C
    would truncate it silently).
    """
    if isinstance(SignedInteger, bool) or not isinstance(SignedInteger, int):
        raise TypeError("RtlConvertLongToLargeInteger: SignedInteger must be an int")
    if not -(2**31) <= SignedInteger < 2**31:
        raise ValueError(f"RtlConvertLongToLargeInteger: {SignedInteger} is not a LONG")
    return LARGE_INTEGER(SignedInteger)


class KWAIT_BLOCK:
    """Storage a wait on more than THREAD_WAIT_OBJECTS objects supplies (opaque)."""

    __slots__ = ()


PKWAIT_BLOCK = KWAIT_BLOCK


# The dispatcher lock: every event's state and wait list, and every waiter, change under
# it (Windows has one too), so a wait on several events tests them all at one instant.
_dispatcher_lock: Final = threading.Lock()


class _Waiter:
    """One thread blocked in a wait on one or several events."""

    __slots__ = ("condition", "index", "objects", "wait_all")

    def __init__(self, objects: tuple[KEVENT, ...], wait_all: bool) -> None:
        self.condition = threading.Condition(_dispatcher_lock)
        self.objects = objects
        self.wait_all = wait_all
        #: None while waiting; then the index of the object that satisfied a WaitAny
        #: (0 for WaitAll).
        self.index: int | None = None

    def try_satisfy(self) -> bool:
        """Under the dispatcher lock: satisfy the wait now if the objects allow it,
        consuming each SynchronizationEvent that satisfies it."""
        objects = self.objects
        if self.wait_all:
            if not all(event._signal_state for event in objects):
                return False
            for event in objects:
                if event.Type == SynchronizationEvent:
                    event._signal_state = 0
            self.index = 0
            return True
        for index, event in enumerate(objects):
            if event._signal_state:
                if event.Type == SynchronizationEvent:
                    event._signal_state = 0
                self.index = index
                return True
        return False

    def leave(self) -> None:
        """Under the dispatcher lock: leave the wait list of every object."""
        for event in dict.fromkeys(self.objects):
            event._waiters = deque(w for w in event._waiters if w is not self)


class KEVENT:
    """A kernel event.  Initialise it with :func:`KeInitializeEvent` before any other use."""

    __slots__ = ("Type", "_initialized", "_signal_state", "_waiters")

    def __init__(self) -> None:
        #: NotificationEvent or SynchronizationEvent (Header.Type in C).
        self.Type: EVENT_TYPE = NotificationEvent
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
    with _dispatcher_lock:
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
    with _dispatcher_lock:
        previous = Event._signal_state
        Event._signal_state = 1
        _satisfy_waiters(Event)
    return previous


def _satisfy_waiters(Event: KEVENT) -> None:
    """Under the dispatcher lock: release, longest waiting first, each waiter of the newly
    signalled ``Event`` whose wait is now satisfied, while ``Event`` stays signalled (a
    SynchronizationEvent is consumed by the first; a NotificationEvent by none)."""
    for waiter in list(Event._waiters):
        if not Event._signal_state:
            return
        if waiter.try_satisfy():
            waiter.leave()
            waiter.condition.notify()


def KeClearEvent(Event: KEVENT) -> None:
    """Set ``Event`` to not signalled (KeClearEvent)."""
    require_irql_at_most(DISPATCH_LEVEL, "KeClearEvent")
    _check_initialized(Event, "KeClearEvent")
    with _dispatcher_lock:
        Event._signal_state = 0


def KeResetEvent(Event: KEVENT) -> int:
    """Set ``Event`` to not signalled and return its previous state (KeResetEvent)."""
    require_irql_at_most(DISPATCH_LEVEL, "KeResetEvent")
    _check_initialized(Event, "KeResetEvent")
    with _dispatcher_lock:
        previous = Event._signal_state
        Event._signal_state = 0
    return previous


def KeReadStateEvent(Event: KEVENT) -> int:
    """The current state of ``Event``: 1 signalled, 0 not (KeReadStateEvent)."""
    require_irql_at_most(DISPATCH_LEVEL, "KeReadStateEvent")
    _check_initialized(Event, "KeReadStateEvent")
    with _dispatcher_lock:
        return Event._signal_state


def _system_time() -> int:
    return time.time_ns() // 100 + _EPOCH_1601


def KeQuerySystemTime(CurrentTime: LARGE_INTEGER) -> None:
    """Store the system time (100-ns units since 1601-01-01 UTC) in ``CurrentTime``."""
    CurrentTime.QuadPart = _system_time()


def KeQuerySystemTimePrecise(CurrentTime: LARGE_INTEGER) -> None:
    """Store the precise system time (100-ns units since 1601-01-01 UTC) in ``CurrentTime``."""
    CurrentTime.QuadPart = _system_time()


def _timeout_value(Timeout: LARGE_INTEGER | int | None, function: str) -> int | None:
    if Timeout is None:
        return None
    value = Timeout.QuadPart if isinstance(Timeout, LARGE_INTEGER) else Timeout
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{function}: Timeout must be None, an int or a LARGE_INTEGER")
    return value


def _check_wait_irql(value: int | None, function: str) -> None:
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
            f"{function} at {irql_name(irql)}: {rule}",
            0,
            irql,
        )


def _check_wait_arguments(WaitReason: object, WaitMode: object, function: str) -> None:
    if WaitMode not in (KernelMode, UserMode):
        raise ValueError(f"{function}: WaitMode {WaitMode!r} is not a KPROCESSOR_MODE")
    if isinstance(WaitReason, bool) or not isinstance(WaitReason, int) or WaitReason < 0:
        raise ValueError(f"{function}: WaitReason {WaitReason!r} is not a KWAIT_REASON")


def _wait(objects: tuple[KEVENT, ...], wait_all: bool, value: int | None) -> int | None:
    """Block until the objects satisfy the wait (the satisfying index) or the timeout
    (``value``, 100-ns units as in KeWaitForSingleObject) expires (None)."""
    deadline: float | None = None
    if value is not None and value != 0:
        delay_100ns = -value if value < 0 else value - _system_time()
        deadline = time.monotonic() + max(delay_100ns, 0) / 10_000_000
    with _dispatcher_lock:
        waiter = _Waiter(objects, wait_all)
        if waiter.try_satisfy() or value == 0:
            return waiter.index
        for event in dict.fromkeys(objects):
            event._waiters.append(waiter)
        try:
            while waiter.index is None:
                if deadline is None:
                    waiter.condition.wait()
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                waiter.condition.wait(min(remaining, threading.TIMEOUT_MAX))
        finally:
            if waiter.index is None:
                # Timed out (or interrupted): leave the wait lists.
                waiter.leave()
    return waiter.index


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
    value = _timeout_value(Timeout, "KeWaitForSingleObject")
    _check_wait_irql(value, "KeWaitForSingleObject")
    _check_initialized(Object, "KeWaitForSingleObject")
    _check_wait_arguments(WaitReason, WaitMode, "KeWaitForSingleObject")
    index = _wait((Object,), False, value)
    return NTSTATUS.STATUS_TIMEOUT if index is None else NTSTATUS.STATUS_SUCCESS


def KeWaitForMultipleObjects(
    Count: int,
    Object: Sequence[KEVENT],
    WaitType: WAIT_TYPE,
    WaitReason: KWAIT_REASON,
    WaitMode: KPROCESSOR_MODE,
    Alertable: bool,
    Timeout: LARGE_INTEGER | int | None,
    WaitBlockArray: Sequence[KWAIT_BLOCK] | None,
) -> NTSTATUS | int:
    """Wait until any (``WaitAny``) or all (``WaitAll``) of the first ``Count`` events in
    ``Object`` are signalled, or ``Timeout`` expires.

    Returns ``STATUS_WAIT_0 + n`` when the ``n``-th object satisfied a WaitAny wait (the
    lowest index among those signalled), STATUS_SUCCESS when all objects were signalled at
    the same instant for a WaitAll wait (every SynchronizationEvent among them is then
    reset, and none is before), and STATUS_TIMEOUT otherwise.  ``Timeout`` and the IRQL
    rules are those of :func:`KeWaitForSingleObject`.  ``WaitBlockArray`` may be None
    for ``Count`` <= THREAD_WAIT_OBJECTS; otherwise it holds at least ``Count``
    :class:`KWAIT_BLOCK`.  Bug Check 0xC (MAXIMUM_WAIT_OBJECTS_EXCEEDED) when ``Count``
    exceeds MAXIMUM_WAIT_OBJECTS, or THREAD_WAIT_OBJECTS without a WaitBlockArray.
    """
    function = "KeWaitForMultipleObjects"
    value = _timeout_value(Timeout, function)
    _check_wait_irql(value, function)
    if isinstance(Count, bool) or not isinstance(Count, int):
        raise TypeError(f"{function}: Count must be an int, not {type(Count).__name__}")
    limit = THREAD_WAIT_OBJECTS if WaitBlockArray is None else MAXIMUM_WAIT_OBJECTS
    if Count > limit:
        raise BugCheck(
            BugCheckCode.MAXIMUM_WAIT_OBJECTS_EXCEEDED,
            f"{function} with Count {Count}: at most {limit} objects "
            + (
                "without a WaitBlockArray (THREAD_WAIT_OBJECTS)"
                if WaitBlockArray is None
                else "(MAXIMUM_WAIT_OBJECTS)"
            ),
        )
    if Count < 1 or Count > len(Object):
        raise ValueError(
            f"{function}: Count must be between 1 and the {len(Object)} objects given, not {Count}"
        )
    if WaitBlockArray is not None and (
        len(WaitBlockArray) < Count or not all(isinstance(b, KWAIT_BLOCK) for b in WaitBlockArray)
    ):
        raise ValueError(f"{function}: WaitBlockArray must hold at least {Count} KWAIT_BLOCKs")
    if WaitType not in (WaitAll, WaitAny):
        raise ValueError(f"{function}: WaitType {WaitType!r} is not WaitAll or WaitAny")
    objects = tuple(Object[:Count])
    for event in objects:
        _check_initialized(event, function)
    _check_wait_arguments(WaitReason, WaitMode, function)
    index = _wait(objects, WaitType == WaitAll, value)
    if index is None:
        return NTSTATUS.STATUS_TIMEOUT
    return NTSTATUS.of(STATUS_WAIT_0 + index)
