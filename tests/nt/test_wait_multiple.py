"""KeWaitForMultipleObjects: WaitAny and WaitAll, STATUS_WAIT_0 + n, timeouts, IRQL and
count rules, and waits on several events racing KeSetEvent from other threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import partial

import pytest
from nt_helpers import until

from pywsk.nt import (
    KEVENT,
    KWAIT_BLOCK,
    LARGE_INTEGER,
    MAXIMUM_WAIT_OBJECTS,
    STATUS_SUCCESS,
    STATUS_TIMEOUT,
    STATUS_WAIT_0,
    STATUS_WAIT_1,
    STATUS_WAIT_63,
    THREAD_WAIT_OBJECTS,
    Executive,
    KeInitializeEvent,
    KeReadStateEvent,
    KernelMode,
    KeSetEvent,
    KeWaitForMultipleObjects,
    KeWaitForSingleObject,
    NotificationEvent,
    RtlConvertLongToLargeInteger,
    SynchronizationEvent,
    WaitAll,
    WaitAny,
)
from pywsk.nt.bugcheck import BugCheck, BugCheckCode
from pywsk.nt.irql import APC_LEVEL, DISPATCH_LEVEL, running_at

LONG_WAIT = -10 * 10_000_000  # 10 s relative: the bound on waits another thread ends
MS = 10_000


def events(*kinds: int, state: bool = False) -> list[KEVENT]:
    made = []
    for kind in kinds:
        event = KEVENT()
        KeInitializeEvent(event, kind, state)
        made.append(event)
    return made


def wait(
    objects: list[KEVENT],
    wait_type: int,
    timeout: LARGE_INTEGER | int | None = LONG_WAIT,
    blocks: list[KWAIT_BLOCK] | None = None,
) -> int:
    return KeWaitForMultipleObjects(
        len(objects), objects, wait_type, Executive, KernelMode, False, timeout, blocks
    )


def in_thread(target: Callable[[], int]) -> tuple[threading.Thread, list[int]]:
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(target()))
    thread.start()
    return thread, result


def test_wait_any_returns_status_wait_0_plus_the_lowest_signalled_index() -> None:
    a, b, c = events(NotificationEvent, NotificationEvent, NotificationEvent)
    KeSetEvent(c, 0, False)
    KeSetEvent(b, 0, False)
    assert wait([a, b, c], WaitAny, 0) == STATUS_WAIT_0 + 1 == STATUS_WAIT_1
    KeSetEvent(a, 0, False)
    assert wait([a, b, c], WaitAny, 0) == STATUS_WAIT_0


def test_wait_any_consumes_only_the_synchronization_event_that_satisfied_it() -> None:
    a, b = events(SynchronizationEvent, SynchronizationEvent, state=True)
    assert wait([a, b], WaitAny, 0) == STATUS_WAIT_0
    assert (KeReadStateEvent(a), KeReadStateEvent(b)) == (0, 1)


def test_wait_all_needs_every_object_and_then_resets_the_synchronization_ones() -> None:
    a, b = events(SynchronizationEvent, NotificationEvent)
    KeSetEvent(a, 0, False)
    assert wait([a, b], WaitAll, 0) == STATUS_TIMEOUT
    assert KeReadStateEvent(a) == 1, "an unsatisfied WaitAll consumes nothing"
    KeSetEvent(b, 0, False)
    assert wait([a, b], WaitAll, 0) == STATUS_SUCCESS
    assert (KeReadStateEvent(a), KeReadStateEvent(b)) == (0, 1)


def test_wait_any_is_released_by_a_set_on_another_thread() -> None:
    a, b, c = events(SynchronizationEvent, SynchronizationEvent, SynchronizationEvent)
    thread, result = in_thread(lambda: wait([a, b, c], WaitAny))
    until(lambda: len(c._waiters) == 1)
    KeSetEvent(c, 0, False)
    thread.join(10)
    assert result == [STATUS_WAIT_0 + 2]
    assert KeReadStateEvent(c) == 0, "the waiter consumed the SynchronizationEvent"
    assert not a._waiters, "a satisfied waiter leaves every wait list"
    assert not b._waiters


def test_wait_all_is_released_only_when_the_last_object_is_set() -> None:
    a, b, c = events(SynchronizationEvent, NotificationEvent, SynchronizationEvent)
    thread, result = in_thread(lambda: wait([a, b, c], WaitAll))
    until(lambda: len(a._waiters) == 1)
    KeSetEvent(a, 0, False)
    KeSetEvent(b, 0, False)
    assert thread.is_alive()
    assert KeReadStateEvent(a) == 1
    KeSetEvent(c, 0, False)
    thread.join(10)
    assert result == [STATUS_SUCCESS]
    assert (KeReadStateEvent(a), KeReadStateEvent(b), KeReadStateEvent(c)) == (0, 1, 0)


def test_a_synchronization_event_skips_a_wait_all_it_cannot_satisfy() -> None:
    shared, other = events(SynchronizationEvent, NotificationEvent)
    all_thread, all_result = in_thread(lambda: wait([shared, other], WaitAll))
    until(lambda: len(shared._waiters) == 1)
    any_thread, any_result = in_thread(
        lambda: KeWaitForSingleObject(shared, Executive, KernelMode, False, LONG_WAIT)
    )
    until(lambda: len(shared._waiters) == 2)
    KeSetEvent(shared, 0, False)  # the WaitAll waits longer but cannot be satisfied
    any_thread.join(10)
    assert any_result == [STATUS_SUCCESS]
    assert all_thread.is_alive()
    KeSetEvent(other, 0, False)
    KeSetEvent(shared, 0, False)
    all_thread.join(10)
    assert all_result == [STATUS_SUCCESS]


def test_one_synchronization_event_releases_one_of_many_multiple_waiters() -> None:
    (shared,) = events(SynchronizationEvent)
    private = events(*[NotificationEvent] * 4)
    threads = [in_thread(partial(wait, [p, shared], WaitAny)) for p in private]
    until(lambda: len(shared._waiters) == 4)
    KeSetEvent(shared, 0, False)
    until(lambda: sum(len(r) for _, r in threads) == 1)
    assert KeReadStateEvent(shared) == 0
    assert len(shared._waiters) == 3
    for event in private:
        KeSetEvent(event, 0, False)
    for thread, _ in threads:
        thread.join(10)
    assert sorted(r[0] for _, r in threads) == [0, 0, 0, 1]


def test_relative_timeout_in_100ns_units_and_a_large_integer_built_from_a_long() -> None:
    a, b = events(NotificationEvent, NotificationEvent)
    timeout = RtlConvertLongToLargeInteger(-20 * MS)
    assert timeout.QuadPart == -200_000
    start = time.monotonic()
    assert wait([a, b], WaitAny, timeout) == STATUS_TIMEOUT
    assert time.monotonic() - start >= 0.019
    assert not a._waiters
    assert not b._waiters


def test_zero_timeout_only_tests_the_state() -> None:
    a, b = events(NotificationEvent, NotificationEvent)
    assert wait([a, b], WaitAll, 0) == STATUS_TIMEOUT
    assert not a._waiters


def test_count_beyond_thread_wait_objects_needs_a_wait_block_array() -> None:
    four = events(*[NotificationEvent] * (THREAD_WAIT_OBJECTS + 1))
    with pytest.raises(BugCheck) as caught:
        wait(four, WaitAny, 0)
    assert caught.value.code is BugCheckCode.MAXIMUM_WAIT_OBJECTS_EXCEEDED
    blocks = [KWAIT_BLOCK() for _ in four]
    KeSetEvent(four[3], 0, False)
    assert wait(four, WaitAny, 0, blocks) == STATUS_WAIT_0 + 3


def test_the_64th_object_gives_status_wait_63_and_65_are_refused() -> None:
    many = events(*[NotificationEvent] * MAXIMUM_WAIT_OBJECTS)
    KeSetEvent(many[-1], 0, False)
    blocks = [KWAIT_BLOCK() for _ in range(MAXIMUM_WAIT_OBJECTS + 1)]
    assert wait(many, WaitAny, 0, blocks) == STATUS_WAIT_63
    with pytest.raises(BugCheck) as caught:
        wait([*many, many[0]], WaitAny, 0, blocks)
    assert caught.value.code is BugCheckCode.MAXIMUM_WAIT_OBJECTS_EXCEEDED


@pytest.mark.parametrize("irql", [APC_LEVEL, DISPATCH_LEVEL])
def test_irql_rules_are_those_of_kewaitforsingleobject(irql: int) -> None:
    a, b = events(NotificationEvent, NotificationEvent)
    with running_at(irql):
        assert wait([a, b], WaitAny, 0) == STATUS_TIMEOUT
        if irql == DISPATCH_LEVEL:
            with pytest.raises(BugCheck) as caught:
                wait([a, b], WaitAny, -MS)
            assert caught.value.code is BugCheckCode.IRQL_NOT_LESS_OR_EQUAL
            assert "KeWaitForMultipleObjects at DISPATCH_LEVEL" in str(caught.value)
        else:
            assert wait([a, b], WaitAny, -MS) == STATUS_TIMEOUT
    assert not a._waiters


def test_bad_arguments_are_refused_before_anything_changes() -> None:
    a, b = events(SynchronizationEvent, SynchronizationEvent, state=True)
    with pytest.raises(ValueError, match="WaitType"):
        wait([a, b], 7, 0)
    with pytest.raises(ValueError, match="Count"):
        KeWaitForMultipleObjects(3, [a, b], WaitAny, Executive, KernelMode, False, 0, None)
    with pytest.raises(ValueError, match="Count"):
        KeWaitForMultipleObjects(0, [a, b], WaitAny, Executive, KernelMode, False, 0, None)
    with pytest.raises(TypeError, match="Timeout"):
        wait([a, b], WaitAny, 1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="WaitBlockArray"):
        wait([a, b], WaitAny, 0, [KWAIT_BLOCK()])
    with pytest.raises(BugCheck):
        wait([a, KEVENT()], WaitAny, 0)  # never initialised
    assert (KeReadStateEvent(a), KeReadStateEvent(b)) == (1, 1)


def test_large_integer_conversion_refuses_values_outside_long() -> None:
    assert RtlConvertLongToLargeInteger(-(2**31)).QuadPart == -(2**31)
    with pytest.raises(ValueError):
        RtlConvertLongToLargeInteger(2**31)
    with pytest.raises(TypeError):
        RtlConvertLongToLargeInteger(1.0)  # type: ignore[arg-type]


def set_all(pair: list[KEVENT]) -> None:
    for event in pair:
        KeSetEvent(event, 0, False)


def test_many_threads_each_waiting_on_its_own_pair_all_finish() -> None:
    """A stress of the shared dispatcher: every waiter gets exactly the event set for it."""
    pairs = [events(SynchronizationEvent, SynchronizationEvent) for _ in range(16)]
    threads = [in_thread(partial(wait, p, WaitAll)) for p in pairs]
    setters = [threading.Thread(target=set_all, args=(p,)) for p in pairs]
    for setter in setters:
        setter.start()
    for setter in setters:
        setter.join(10)
    for thread, _ in threads:
        thread.join(10)
    assert [r for _, r in threads] == [[STATUS_SUCCESS]] * 16
    assert all(KeReadStateEvent(e) == 0 for p in pairs for e in p)
