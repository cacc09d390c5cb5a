"""The Interlocked family (values, wrap-around, atomicity across threads), spin locks and
LIST_ENTRY lists (order, corruption checks, the ExInterlocked forms)."""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass, field

import pytest

from pywsk.nt import (
    CONTAINING_RECORD,
    KSPIN_LOCK,
    LIST_ENTRY,
    LONG,
    LONG64,
    ExInterlockedInsertHeadList,
    ExInterlockedInsertTailList,
    ExInterlockedRemoveHeadList,
    InitializeListHead,
    InsertHeadList,
    InsertTailList,
    InterlockedAdd,
    InterlockedAdd64,
    InterlockedAnd,
    InterlockedCompareExchange,
    InterlockedCompareExchange64,
    InterlockedCompareExchangePointer,
    InterlockedDecrement,
    InterlockedDecrement64,
    InterlockedExchange,
    InterlockedExchange64,
    InterlockedExchangeAdd,
    InterlockedExchangeAdd64,
    InterlockedExchangePointer,
    InterlockedIncrement,
    InterlockedIncrement64,
    InterlockedOr,
    InterlockedXor,
    IsListEmpty,
    KeAcquireSpinLock,
    KeGetCurrentIrql,
    KeInitializeSpinLock,
    KeReleaseSpinLock,
    RemoveEntryList,
    RemoveHeadList,
    RemoveTailList,
)
from pywsk.nt.bugcheck import BugCheck, BugCheckCode
from pywsk.nt.irql import DISPATCH_LEVEL, PASSIVE_LEVEL, running_at


def test_each_operation_returns_what_its_page_says() -> None:
    v = LONG(5)
    assert InterlockedIncrement(v) == 6
    assert InterlockedDecrement(v) == 5
    assert InterlockedExchange(v, 9) == 5
    assert v.value == 9
    assert InterlockedCompareExchange(v, 1, 8) == 9  # no match: unchanged
    assert v.value == 9
    assert InterlockedCompareExchange(v, 1, 9) == 9
    assert v.value == 1
    assert InterlockedExchangeAdd(v, 10) == 1
    assert InterlockedAdd(v, 10) == 21
    assert InterlockedOr(v, 0x100) == 21
    assert InterlockedAnd(v, 0x1F0) == 0x115
    assert InterlockedXor(v, 0xFF) == 0x110
    assert v.value == 0x1EF


def test_long_wraps_as_a_32_bit_signed_integer_and_long64_as_64() -> None:
    v = LONG(2**31 - 1)
    assert InterlockedIncrement(v) == -(2**31)
    assert InterlockedDecrement(v) == 2**31 - 1
    assert InterlockedCompareExchange(LONG(-1), 7, 0xFFFFFFFF) == -1, "Comperand as a LONG"
    w = LONG64(2**63 - 1)
    assert InterlockedIncrement64(w) == -(2**63)
    assert InterlockedDecrement64(w) == 2**63 - 1
    assert InterlockedExchange64(w, 2**40) == 2**63 - 1
    assert InterlockedCompareExchange64(w, 3, 2**40) == 2**40
    assert InterlockedExchangeAdd64(w, 2**40) == 3
    assert InterlockedAdd64(w, 1) == 2**40 + 4


@dataclass
class Slot:
    value: object = None


def test_ctypes_variables_and_pointer_exchanges() -> None:
    c = ctypes.c_int32(41)
    assert InterlockedIncrement(c) == 42
    assert c.value == 42
    slot = Slot()  # a PVOID variable
    first, second = object(), object()
    assert InterlockedCompareExchangePointer(slot, first, None) is None
    assert InterlockedCompareExchangePointer(slot, second, None) is first
    assert InterlockedExchangePointer(slot, second) is first
    assert slot.value is second


def test_a_box_without_an_int_value_is_refused() -> None:
    with pytest.raises(TypeError, match="InterlockedIncrement"):
        InterlockedIncrement(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        LONG(1.5)  # type: ignore[arg-type]


def test_increments_from_many_threads_are_atomic() -> None:
    counter = LONG()
    seen: list[list[int]] = [[] for _ in range(8)]
    start = threading.Barrier(8)

    def work(mine: list[int]) -> None:
        start.wait(10)
        mine.extend(InterlockedIncrement(counter) for _ in range(2000))

    threads = [threading.Thread(target=work, args=(s,)) for s in seen]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert counter.value == 16000
    # Every returned value is unique: no two increments saw the same old value.
    assert sorted(v for s in seen for v in s) == list(range(1, 16001))


def test_spin_lock_raises_to_dispatch_level_and_restores() -> None:
    lock = KSPIN_LOCK()
    KeInitializeSpinLock(lock)
    old = KeAcquireSpinLock(lock)
    assert (old, KeGetCurrentIrql()) == (PASSIVE_LEVEL, DISPATCH_LEVEL)
    with pytest.raises(BugCheck, match="already holds"):
        KeAcquireSpinLock(lock)
    KeReleaseSpinLock(lock, old)
    assert KeGetCurrentIrql() == PASSIVE_LEVEL
    with pytest.raises(BugCheck, match="does not hold"):
        KeReleaseSpinLock(lock, old)
    with pytest.raises(BugCheck, match="never initialised"):
        KeAcquireSpinLock(KSPIN_LOCK())


def test_spin_lock_excludes_other_threads() -> None:
    lock = KSPIN_LOCK()
    KeInitializeSpinLock(lock)
    total = [0]

    def work() -> None:
        for _ in range(500):
            old = KeAcquireSpinLock(lock)
            value = total[0]
            total[0] = value + 1
            KeReleaseSpinLock(lock, old)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert total[0] == 2000


@dataclass
class Context:
    Name: str
    Link: LIST_ENTRY = field(default_factory=LIST_ENTRY)


def names(head: LIST_ENTRY) -> list[str]:
    out = []
    entry = head.Flink
    while entry is not head:
        assert entry is not None
        out.append(CONTAINING_RECORD(entry, Context, "Link").Name)
        entry = entry.Flink
    return out


def test_list_order_and_removal() -> None:
    head = LIST_ENTRY()
    InitializeListHead(head)
    assert IsListEmpty(head)
    a, b, c = Context("a"), Context("b"), Context("c")
    InsertTailList(head, b.Link)
    InsertTailList(head, c.Link)
    InsertHeadList(head, a.Link)
    assert names(head) == ["a", "b", "c"]
    assert RemoveTailList(head) is c.Link
    assert RemoveEntryList(b.Link) is False
    assert RemoveHeadList(head) is a.Link
    assert IsListEmpty(head)
    assert RemoveHeadList(head) is head, "an empty list gives back its head"


def test_a_corrupt_or_uninitialised_list_is_a_security_check_failure() -> None:
    head = LIST_ENTRY()
    with pytest.raises(BugCheck) as caught:
        InsertTailList(head, LIST_ENTRY())
    assert caught.value.code is BugCheckCode.KERNEL_SECURITY_CHECK_FAILURE
    assert caught.value.parameters[0] == 3
    InitializeListHead(head)
    entry = LIST_ENTRY()
    InsertTailList(head, entry)
    entry.Blink = LIST_ENTRY()  # a stray write
    with pytest.raises(BugCheck, match="corrupt"):
        RemoveEntryList(entry)


def test_interlocked_list_forms_return_the_old_first_entry() -> None:
    head, lock = LIST_ENTRY(), KSPIN_LOCK()
    InitializeListHead(head)
    KeInitializeSpinLock(lock)
    a, b = Context("a"), Context("b")
    assert ExInterlockedInsertTailList(head, b.Link, lock) is None
    assert ExInterlockedInsertHeadList(head, a.Link, lock) is b.Link
    assert KeGetCurrentIrql() == PASSIVE_LEVEL
    assert ExInterlockedRemoveHeadList(head, lock) is a.Link
    assert ExInterlockedRemoveHeadList(head, lock) is b.Link
    assert ExInterlockedRemoveHeadList(head, lock) is None
    with running_at(DISPATCH_LEVEL):
        assert ExInterlockedInsertTailList(head, a.Link, lock) is None
        assert KeGetCurrentIrql() == DISPATCH_LEVEL


def test_interlocked_list_from_many_threads_loses_nothing() -> None:
    head, lock = LIST_ENTRY(), KSPIN_LOCK()
    InitializeListHead(head)
    KeInitializeSpinLock(lock)
    records = [[Context(f"{t}-{i}") for i in range(200)] for t in range(4)]

    def work(mine: list[Context]) -> None:
        for record in mine:
            ExInterlockedInsertTailList(head, record.Link, lock)

    threads = [threading.Thread(target=work, args=(r,)) for r in records]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    got = names(head)
    assert sorted(got) == sorted(r.Name for rs in records for r in rs)
    for rs in records:  # each thread's records keep their order
        mine = [n for n in got if n.startswith(rs[0].Name.split("-")[0] + "-")]
        assert mine == [r.Name for r in rs]


def test_a_flag_kept_in_a_long_takes_true_and_false() -> None:
    """libwsk's idiom: ``InterlockedCompareExchange(&_Initialized, true, true)``."""
    initialized = LONG(False)
    assert InterlockedCompareExchange(initialized, True, True) == 0
    assert InterlockedExchange(initialized, True) == 0
    assert InterlockedCompareExchange(initialized, True, True) == 1
