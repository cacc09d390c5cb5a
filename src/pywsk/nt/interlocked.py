"""Interlocked operations, spin locks and doubly linked lists (wdm.h spellings).

What it does: the ``Interlocked*`` family - :func:`InterlockedIncrement`,
:func:`InterlockedDecrement`, :func:`InterlockedExchange`,
:func:`InterlockedCompareExchange`, :func:`InterlockedExchangeAdd`,
:func:`InterlockedAdd`, :func:`InterlockedOr`, :func:`InterlockedAnd`,
:func:`InterlockedXor`, their ``64`` twins and the pointer exchanges - on a variable boxed
as :class:`LONG` / :class:`LONG64` (C passes ``&Context->RefCount``; Python passes the box
``Context.RefCount``; any object with an int ``.value``, such as ``ctypes.c_int32``, works
too).  :class:`KSPIN_LOCK` with :func:`KeInitializeSpinLock`, :func:`KeAcquireSpinLock`
and :func:`KeReleaseSpinLock`.  :class:`LIST_ENTRY` with :func:`InitializeListHead`,
:func:`IsListEmpty`, :func:`InsertHeadList`, :func:`InsertTailList`,
:func:`RemoveHeadList`, :func:`RemoveTailList`, :func:`RemoveEntryList`, and the
spin-lock-protected :func:`ExInterlockedInsertHeadList`,
:func:`ExInterlockedInsertTailList` and :func:`ExInterlockedRemoveHeadList`.
:func:`~pywsk.nt.ntdef.CONTAINING_RECORD` leads from an entry back to its record.

The rules, from Microsoft's pages (InterlockedIncrement ..., KeAcquireSpinLock,
KeReleaseSpinLock, InsertTailList, "Singly and Doubly Linked Lists"):

1. Each interlocked operation is atomic against every other interlocked operation, on
   any thread, and returns what its page says: the new value (Increment, Decrement, Add)
   or the old one (Exchange, CompareExchange, ExchangeAdd, Or, And, Xor).  Values wrap as
   a 32-bit (``64``: 64-bit) signed integer does.
2. KeAcquireSpinLock raises the IRQL to DISPATCH_LEVEL and returns the old IRQL, which
   KeReleaseSpinLock restores; it needs IRQL <= DISPATCH_LEVEL.
3. Since Windows 8, the list routines check the links they touch and stop the machine
   (KERNEL_SECURITY_CHECK_FAILURE, 0x139, type 3) when a list is corrupt.

What it refuses: a spin lock acquired again by the thread that holds it (on Windows the
thread would spin for ever) or released by another, an uninitialised or corrupt list, all
with :class:`~pywsk.nt.bugcheck.BugCheck`; a box without an int ``.value`` with
``TypeError``.

What always holds: the interlocked operations share one lock, held only for the
read-modify-write, so they never block for long; a spin lock is a real
``threading.Lock``.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any, Final, Protocol

from .bugcheck import BugCheck, BugCheckCode
from .irql import DISPATCH_LEVEL, KeLowerIrql, KeRaiseIrql, require_irql_at_most

if TYPE_CHECKING:
    from .irql import KIRQL

__all__ = [
    "LONG",
    "LONG64",
    "PLONG",
    "PLONG64",
    "InterlockedIncrement",
    "InterlockedDecrement",
    "InterlockedExchange",
    "InterlockedCompareExchange",
    "InterlockedExchangeAdd",
    "InterlockedAdd",
    "InterlockedOr",
    "InterlockedAnd",
    "InterlockedXor",
    "InterlockedIncrement64",
    "InterlockedDecrement64",
    "InterlockedExchange64",
    "InterlockedCompareExchange64",
    "InterlockedExchangeAdd64",
    "InterlockedAdd64",
    "InterlockedExchangePointer",
    "InterlockedCompareExchangePointer",
    "KSPIN_LOCK",
    "PKSPIN_LOCK",
    "KeInitializeSpinLock",
    "KeAcquireSpinLock",
    "KeReleaseSpinLock",
    "LIST_ENTRY",
    "PLIST_ENTRY",
    "InitializeListHead",
    "IsListEmpty",
    "InsertHeadList",
    "InsertTailList",
    "RemoveHeadList",
    "RemoveTailList",
    "RemoveEntryList",
    "ExInterlockedInsertHeadList",
    "ExInterlockedInsertTailList",
    "ExInterlockedRemoveHeadList",
]


class _Box(Protocol):
    value: Any


class LONG:
    """A 32-bit signed variable the Interlocked functions can update (``LONG`` in C)."""

    __slots__ = ("value",)

    def __init__(self, value: int = 0) -> None:
        self.value = _wrap(value, 32)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.value})"


class LONG64(LONG):
    """A 64-bit signed variable (``LONG64`` / ``LONGLONG`` in C)."""

    __slots__ = ()

    def __init__(self, value: int = 0) -> None:
        self.value = _wrap(value, 64)


PLONG = LONG
PLONG64 = LONG64

_interlocked_lock: Final = threading.Lock()


def _wrap(value: int, bits: int) -> int:
    # TRUE and FALSE are ints here as in C (libwsk keeps a flag in a volatile long).
    if not isinstance(value, int):
        raise TypeError(f"an interlocked value must be an int, not {type(value).__name__}")
    value = int(value) & ((1 << bits) - 1)
    return value - (1 << bits) if value >> (bits - 1) else value


def _current(box: _Box, function: str) -> int:
    value = getattr(box, "value", None)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{function}: expected a LONG (an object with an int .value)")
    return value


def _update(box: _Box, function: str, bits: int, new: Any, returns_new: bool) -> int:
    """Atomically replace ``box.value`` by ``new(old)`` (wrapped); return the new or old."""
    with _interlocked_lock:
        old = _current(box, function)
        value = _wrap(new(old), bits)
        box.value = value
    return value if returns_new else old


def InterlockedIncrement(Addend: _Box) -> int:
    """Add 1 to ``Addend`` atomically; return the new value."""
    return _update(Addend, "InterlockedIncrement", 32, lambda v: v + 1, True)


def InterlockedDecrement(Addend: _Box) -> int:
    """Subtract 1 from ``Addend`` atomically; return the new value."""
    return _update(Addend, "InterlockedDecrement", 32, lambda v: v - 1, True)


def InterlockedExchange(Target: _Box, Value: int) -> int:
    """Set ``Target`` to ``Value`` atomically; return the old value."""
    return _update(Target, "InterlockedExchange", 32, lambda v: Value, False)


def InterlockedCompareExchange(Destination: _Box, ExChange: int, Comperand: int) -> int:
    """Set ``Destination`` to ``ExChange`` if it equals ``Comperand``; return the old value."""
    return _update(
        Destination,
        "InterlockedCompareExchange",
        32,
        lambda v: ExChange if v == _wrap(Comperand, 32) else v,
        False,
    )


def InterlockedExchangeAdd(Addend: _Box, Value: int) -> int:
    """Add ``Value`` to ``Addend`` atomically; return the old value."""
    return _update(Addend, "InterlockedExchangeAdd", 32, lambda v: v + Value, False)


def InterlockedAdd(Addend: _Box, Value: int) -> int:
    """Add ``Value`` to ``Addend`` atomically; return the new value."""
    return _update(Addend, "InterlockedAdd", 32, lambda v: v + Value, True)


def InterlockedOr(Destination: _Box, Value: int) -> int:
    """OR ``Value`` into ``Destination`` atomically; return the old value."""
    return _update(Destination, "InterlockedOr", 32, lambda v: v | Value, False)


def InterlockedAnd(Destination: _Box, Value: int) -> int:
    """AND ``Value`` into ``Destination`` atomically; return the old value."""
    return _update(Destination, "InterlockedAnd", 32, lambda v: v & Value, False)


def InterlockedXor(Destination: _Box, Value: int) -> int:
    """XOR ``Value`` into ``Destination`` atomically; return the old value."""
    return _update(Destination, "InterlockedXor", 32, lambda v: v ^ Value, False)


def InterlockedIncrement64(Addend: _Box) -> int:
    """InterlockedIncrement on a 64-bit variable."""
    return _update(Addend, "InterlockedIncrement64", 64, lambda v: v + 1, True)


def InterlockedDecrement64(Addend: _Box) -> int:
    """InterlockedDecrement on a 64-bit variable."""
    return _update(Addend, "InterlockedDecrement64", 64, lambda v: v - 1, True)


def InterlockedExchange64(Target: _Box, Value: int) -> int:
    """InterlockedExchange on a 64-bit variable."""
    return _update(Target, "InterlockedExchange64", 64, lambda v: Value, False)


def InterlockedCompareExchange64(Destination: _Box, ExChange: int, Comperand: int) -> int:
    """InterlockedCompareExchange on a 64-bit variable."""
    return _update(
        Destination,
        "InterlockedCompareExchange64",
        64,
        lambda v: ExChange if v == _wrap(Comperand, 64) else v,
        False,
    )


def InterlockedExchangeAdd64(Addend: _Box, Value: int) -> int:
    """InterlockedExchangeAdd on a 64-bit variable."""
    return _update(Addend, "InterlockedExchangeAdd64", 64, lambda v: v + Value, False)


def InterlockedAdd64(Addend: _Box, Value: int) -> int:
    """InterlockedAdd on a 64-bit variable."""
    return _update(Addend, "InterlockedAdd64", 64, lambda v: v + Value, True)


def InterlockedExchangePointer(Target: _Box, Value: Any) -> Any:
    """Store ``Value`` (any object, or None) in ``Target.value``; return the old one."""
    with _interlocked_lock:
        old = Target.value
        Target.value = Value
    return old


def InterlockedCompareExchangePointer(Destination: _Box, Exchange: Any, Comperand: Any) -> Any:
    """Store ``Exchange`` if ``Destination.value is Comperand`` (the same object, as pointers
    compare); return the old one."""
    with _interlocked_lock:
        old = Destination.value
        if old is Comperand:
            Destination.value = Exchange
    return old


# --- Spin locks -----------------------------------------------------------------------


class KSPIN_LOCK:
    """A spin lock.  Initialise it with :func:`KeInitializeSpinLock`."""

    __slots__ = ("_lock", "_owner")

    def __init__(self) -> None:
        self._lock: threading.Lock | None = None
        self._owner: int | None = None

    def __repr__(self) -> str:
        state = "uninitialised" if self._lock is None else ("held" if self._owner else "free")
        return f"<KSPIN_LOCK {state} at 0x{id(self):x}>"


PKSPIN_LOCK = KSPIN_LOCK


def KeInitializeSpinLock(SpinLock: KSPIN_LOCK) -> None:
    """Initialise ``SpinLock`` (free)."""
    SpinLock._lock = threading.Lock()
    SpinLock._owner = None


def _lock_of(SpinLock: KSPIN_LOCK, function: str) -> threading.Lock:
    if not isinstance(SpinLock, KSPIN_LOCK):
        raise TypeError(f"{function}: expected a KSPIN_LOCK, not {type(SpinLock).__name__}")
    if SpinLock._lock is None:
        raise BugCheck(
            BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION,
            f"{function} on a KSPIN_LOCK that KeInitializeSpinLock never initialised",
            id(SpinLock),
        )
    return SpinLock._lock


def KeAcquireSpinLock(SpinLock: KSPIN_LOCK) -> KIRQL:
    """Acquire ``SpinLock`` at DISPATCH_LEVEL and return the old IRQL.

    C: ``KeAcquireSpinLock(&Lock, &OldIrql)``; Python: ``OldIrql = KeAcquireSpinLock(Lock)``.
    """
    require_irql_at_most(DISPATCH_LEVEL, "KeAcquireSpinLock")
    lock = _lock_of(SpinLock, "KeAcquireSpinLock")
    if SpinLock._owner == threading.get_ident():
        raise BugCheck(
            BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION,
            "KeAcquireSpinLock on a spin lock this thread already holds (it would spin for ever)",
            id(SpinLock),
        )
    old = KeRaiseIrql(DISPATCH_LEVEL)
    lock.acquire()
    SpinLock._owner = threading.get_ident()
    return old


def KeReleaseSpinLock(SpinLock: KSPIN_LOCK, NewIrql: KIRQL) -> None:
    """Release ``SpinLock`` and lower the IRQL back to ``NewIrql``."""
    lock = _lock_of(SpinLock, "KeReleaseSpinLock")
    if SpinLock._owner != threading.get_ident():
        raise BugCheck(
            BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION,
            "KeReleaseSpinLock on a spin lock this thread does not hold",
            id(SpinLock),
        )
    SpinLock._owner = None
    lock.release()
    KeLowerIrql(NewIrql)


# --- Doubly linked lists ----------------------------------------------------------------


class LIST_ENTRY:
    """A list head, or an entry embedded in a record (``LIST_ENTRY Link;`` in a C struct).

    ``Flink`` / ``Blink`` point forward and back; a head links to itself when the list is
    empty.  An entry may be told its record (``LIST_ENTRY(self)``) so that
    :func:`~pywsk.nt.ntdef.CONTAINING_RECORD` finds it at once; otherwise that function
    searches for it once and remembers it.
    """

    __slots__ = ("Blink", "Flink", "__weakref__", "_record")

    def __init__(self, Record: object = None) -> None:
        self.Flink: LIST_ENTRY | None = None
        self.Blink: LIST_ENTRY | None = None
        self._record: Any = None
        if Record is not None:
            self._record = weakref.ref(Record)

    def __repr__(self) -> str:
        return f"<LIST_ENTRY at 0x{id(self):x}>"


PLIST_ENTRY = LIST_ENTRY


def _corrupt(entry: object, function: str) -> BugCheck:
    return BugCheck(
        BugCheckCode.KERNEL_SECURITY_CHECK_FAILURE,
        f"{function}: a LIST_ENTRY's links are corrupt (or the head was never initialised "
        "with InitializeListHead)",
        3,
        id(entry),
    )


def _links(entry: LIST_ENTRY, function: str) -> tuple[LIST_ENTRY, LIST_ENTRY]:
    """``entry``'s Flink and Blink, checked as Windows 8 checks them (3 above)."""
    flink, blink = entry.Flink, entry.Blink
    if flink is None or blink is None or flink.Blink is not entry or blink.Flink is not entry:
        raise _corrupt(entry, function)
    return flink, blink


def InitializeListHead(ListHead: LIST_ENTRY) -> None:
    """Make ``ListHead`` an empty list."""
    ListHead.Flink = ListHead.Blink = ListHead


def IsListEmpty(ListHead: LIST_ENTRY) -> bool:
    """TRUE when the list has no entries."""
    if ListHead.Flink is None:
        raise _corrupt(ListHead, "IsListEmpty")
    return ListHead.Flink is ListHead


def InsertHeadList(ListHead: LIST_ENTRY, Entry: LIST_ENTRY) -> None:
    """Insert ``Entry`` at the head of the list."""
    flink, _ = _links(ListHead, "InsertHeadList")
    Entry.Flink, Entry.Blink = flink, ListHead
    flink.Blink = ListHead.Flink = Entry


def InsertTailList(ListHead: LIST_ENTRY, Entry: LIST_ENTRY) -> None:
    """Insert ``Entry`` at the tail of the list."""
    _, blink = _links(ListHead, "InsertTailList")
    Entry.Flink, Entry.Blink = ListHead, blink
    blink.Flink = ListHead.Blink = Entry


def RemoveEntryList(Entry: LIST_ENTRY) -> bool:
    """Unlink ``Entry``; return TRUE when the list is empty afterwards."""
    flink, blink = _links(Entry, "RemoveEntryList")
    blink.Flink, flink.Blink = flink, blink
    return flink is blink


def RemoveHeadList(ListHead: LIST_ENTRY) -> LIST_ENTRY:
    """Unlink and return the first entry (the head itself when the list is empty)."""
    entry, _ = _links(ListHead, "RemoveHeadList")
    if entry is not ListHead:
        RemoveEntryList(entry)
    return entry


def RemoveTailList(ListHead: LIST_ENTRY) -> LIST_ENTRY:
    """Unlink and return the last entry (the head itself when the list is empty)."""
    _, entry = _links(ListHead, "RemoveTailList")
    if entry is not ListHead:
        RemoveEntryList(entry)
    return entry


def _interlocked(Lock: KSPIN_LOCK, function: str) -> tuple[threading.Lock, KIRQL]:
    require_irql_at_most(DISPATCH_LEVEL, function)
    lock = _lock_of(Lock, function)
    if Lock._owner == threading.get_ident():
        raise BugCheck(
            BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION,
            f"{function} with a spin lock this thread already holds (it would spin for ever)",
            id(Lock),
        )
    return lock, KeRaiseIrql(DISPATCH_LEVEL)


def ExInterlockedInsertHeadList(
    ListHead: LIST_ENTRY, ListEntry: LIST_ENTRY, Lock: KSPIN_LOCK
) -> LIST_ENTRY | None:
    """InsertHeadList under ``Lock``; return the old first entry, or NULL if it was empty."""
    lock, old = _interlocked(Lock, "ExInterlockedInsertHeadList")
    try:
        with lock:
            first = None if IsListEmpty(ListHead) else ListHead.Flink
            InsertHeadList(ListHead, ListEntry)
    finally:
        KeLowerIrql(old)
    return first


def ExInterlockedInsertTailList(
    ListHead: LIST_ENTRY, ListEntry: LIST_ENTRY, Lock: KSPIN_LOCK
) -> LIST_ENTRY | None:
    """InsertTailList under ``Lock``; return the old first entry, or NULL if it was empty."""
    lock, old = _interlocked(Lock, "ExInterlockedInsertTailList")
    try:
        with lock:
            first = None if IsListEmpty(ListHead) else ListHead.Flink
            InsertTailList(ListHead, ListEntry)
    finally:
        KeLowerIrql(old)
    return first


def ExInterlockedRemoveHeadList(ListHead: LIST_ENTRY, Lock: KSPIN_LOCK) -> LIST_ENTRY | None:
    """RemoveHeadList under ``Lock``; return the entry, or NULL if the list was empty."""
    lock, old = _interlocked(Lock, "ExInterlockedRemoveHeadList")
    try:
        with lock:
            entry = None if IsListEmpty(ListHead) else RemoveHeadList(ListHead)
    finally:
        KeLowerIrql(old)
    return entry
