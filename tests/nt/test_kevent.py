"""KEVENTs and KeWaitForSingleObject: semantics, timeouts, threads and IRQL rules."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from nt_helpers import until

from pywsk.nt.bugcheck import BugCheck, BugCheckCode
from pywsk.nt.event import (
    KEVENT,
    LARGE_INTEGER,
    Executive,
    KeClearEvent,
    KeInitializeEvent,
    KeQuerySystemTime,
    KeQuerySystemTimePrecise,
    KeReadStateEvent,
    KeResetEvent,
    KeSetEvent,
    KeWaitForSingleObject,
    NotificationEvent,
    SynchronizationEvent,
    UserRequest,
)
from pywsk.nt.irp import IO_NO_INCREMENT
from pywsk.nt.irql import APC_LEVEL, DISPATCH_LEVEL, HIGH_LEVEL, running_at
from pywsk.nt.mdl import KernelMode, UserMode
from pywsk.nt.status import NTSTATUS, STATUS_SUCCESS, STATUS_TIMEOUT

#: Bound on every wait that should end because of another thread (100-ns units, relative).
LONG: int = -10 * 10_000_000
MS: int = 10_000  # one millisecond in 100-ns units


def make_event(kind: int, state: bool = False) -> KEVENT:
    event = KEVENT()
    KeInitializeEvent(event, kind, state)
    return event


def wait(event: KEVENT, timeout: LARGE_INTEGER | int | None) -> NTSTATUS:
    return KeWaitForSingleObject(event, Executive, KernelMode, False, timeout)


def queued(event: KEVENT, count: int) -> Callable[[], bool]:
    return lambda: len(event._waiters) == count


def succeeded(results: list[NTSTATUS | None], count: int) -> Callable[[], bool]:
    return lambda: results.count(STATUS_SUCCESS) == count


@contextmanager
def waiters(event: KEVENT, count: int) -> Iterator[list[NTSTATUS | None]]:
    """Start ``count`` threads blocked in a bounded wait on ``event``; join them at exit."""
    results: list[NTSTATUS | None] = [None] * count

    def run(index: int) -> None:
        results[index] = wait(event, LONG)

    threads = []
    for index in range(count):
        thread = threading.Thread(target=run, args=(index,), daemon=True)
        thread.start()
        threads.append(thread)
        # Queue them one at a time, so that the wait-list order is the index order.
        until(queued(event, index + 1))
    try:
        yield results
    finally:
        for thread in threads:
            thread.join(timeout=15)
            assert not thread.is_alive()


# --- Initialisation and state ---------------------------------------------------------


def test_uninitialised_event_is_a_bug() -> None:
    event = KEVENT()
    for use in (
        lambda: KeSetEvent(event, IO_NO_INCREMENT, False),
        lambda: KeClearEvent(event),
        lambda: KeResetEvent(event),
        lambda: KeReadStateEvent(event),
        lambda: wait(event, 0),
    ):
        with pytest.raises(BugCheck, match="never initialised"):
            use()


def test_initialise_and_state() -> None:
    for kind in (NotificationEvent, SynchronizationEvent):
        event = make_event(kind, True)
        assert event.Type == kind
        assert KeReadStateEvent(event) == 1
        assert KeResetEvent(event) == 1
        assert KeReadStateEvent(event) == 0
        assert KeResetEvent(event) == 0
        assert KeSetEvent(event, IO_NO_INCREMENT, False) == 0
        assert KeSetEvent(event, IO_NO_INCREMENT, False) == 1
        KeClearEvent(event)
        assert KeReadStateEvent(event) == 0
        KeInitializeEvent(event, kind, True)  # re-initialising an idle event is fine
        assert KeReadStateEvent(event) == 1


def test_initialise_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="EVENT_TYPE"):
        KeInitializeEvent(KEVENT(), 2, False)
    with pytest.raises(TypeError):
        KeInitializeEvent(object(), NotificationEvent, False)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        wait(object(), 0)  # type: ignore[arg-type]


def test_reinitialising_an_event_with_waiters_is_a_bug() -> None:
    event = make_event(SynchronizationEvent)
    with waiters(event, 1) as results:
        with pytest.raises(BugCheck, match="waiting"):
            KeInitializeEvent(event, NotificationEvent, False)
        assert event.Type == SynchronizationEvent
        KeSetEvent(event, IO_NO_INCREMENT, False)
    assert results == [STATUS_SUCCESS]


# --- Wait semantics ----------------------------------------------------------------------


def test_notification_event_stays_signalled() -> None:
    event = make_event(NotificationEvent, True)
    for _ in range(3):
        assert wait(event, None) == STATUS_SUCCESS
        assert wait(event, 0) == STATUS_SUCCESS
    assert KeReadStateEvent(event) == 1


def test_synchronization_event_resets_when_it_satisfies_a_wait() -> None:
    event = make_event(SynchronizationEvent, True)
    assert wait(event, LARGE_INTEGER(0)) == STATUS_SUCCESS
    assert KeReadStateEvent(event) == 0
    assert wait(event, 0) == STATUS_TIMEOUT
    KeSetEvent(event, IO_NO_INCREMENT, False)
    assert wait(event, -MS) == STATUS_SUCCESS
    assert KeReadStateEvent(event) == 0


def test_poll_returns_timeout_without_waiting() -> None:
    event = make_event(NotificationEvent)
    assert wait(event, 0) == STATUS_TIMEOUT
    assert wait(event, LARGE_INTEGER()) == STATUS_TIMEOUT
    assert not event._waiters


@pytest.mark.parametrize("relative_ms", [1, 20])
def test_relative_timeout_expires(relative_ms: int) -> None:
    event = make_event(SynchronizationEvent)
    start = time.monotonic()
    assert wait(event, LARGE_INTEGER(-relative_ms * MS)) == STATUS_TIMEOUT
    assert time.monotonic() - start >= relative_ms / 1000 * 0.9
    assert not event._waiters
    # The timed-out waiter left the list: a later set is not given to a ghost.
    KeSetEvent(event, IO_NO_INCREMENT, False)
    assert KeReadStateEvent(event) == 1


def test_absolute_timeout() -> None:
    event = make_event(NotificationEvent)
    now = LARGE_INTEGER()
    KeQuerySystemTime(now)
    assert wait(event, now.QuadPart - 10 * MS) == STATUS_TIMEOUT  # in the past
    start = time.monotonic()
    KeQuerySystemTime(now)
    assert wait(event, LARGE_INTEGER(now.QuadPart + 20 * MS)) == STATUS_TIMEOUT
    assert time.monotonic() - start >= 0.015
    KeSetEvent(event, IO_NO_INCREMENT, False)
    KeQuerySystemTime(now)
    assert wait(event, now.QuadPart + 20 * MS) == STATUS_SUCCESS


def test_wait_refuses_bad_arguments() -> None:
    event = make_event(NotificationEvent, True)
    with pytest.raises(TypeError):
        wait(event, 1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="WaitMode"):
        KeWaitForSingleObject(event, Executive, 5, False, 0)
    with pytest.raises(ValueError, match="WaitReason"):
        KeWaitForSingleObject(event, -1, KernelMode, False, 0)
    assert KeWaitForSingleObject(event, UserRequest, UserMode, True, 0) == STATUS_SUCCESS


# --- Across threads ----------------------------------------------------------------------


def test_set_from_another_thread_releases_a_blocked_wait() -> None:
    event = make_event(SynchronizationEvent)
    with waiters(event, 1) as results:
        setter_done = threading.Event()

        def completion_routine() -> None:
            with running_at(DISPATCH_LEVEL):  # as the provider's event loop runs it
                KeSetEvent(event, IO_NO_INCREMENT, False)
            setter_done.set()

        threading.Thread(target=completion_routine, daemon=True).start()
        assert setter_done.wait(10)
    assert results == [STATUS_SUCCESS]
    assert KeReadStateEvent(event) == 0  # handed to the waiter, not left signalled


def test_set_before_the_wait_is_not_lost() -> None:
    event = make_event(SynchronizationEvent)
    setter = threading.Thread(target=KeSetEvent, args=(event, IO_NO_INCREMENT, False))
    setter.start()
    setter.join(timeout=10)
    assert wait(event, LONG) == STATUS_SUCCESS


def test_infinite_wait_ends_when_set() -> None:
    event = make_event(NotificationEvent)
    result: list[NTSTATUS] = []
    thread = threading.Thread(target=lambda: result.append(wait(event, None)), daemon=True)
    thread.start()
    until(queued(event, 1))
    KeSetEvent(event, IO_NO_INCREMENT, False)
    thread.join(timeout=10)
    assert result == [STATUS_SUCCESS]


def test_notification_event_releases_every_waiter() -> None:
    event = make_event(NotificationEvent)
    with waiters(event, 4) as results:
        assert KeSetEvent(event, IO_NO_INCREMENT, False) == 0
    assert results == [STATUS_SUCCESS] * 4
    assert KeReadStateEvent(event) == 1


def test_notification_set_then_clear_still_releases_the_waiters() -> None:
    event = make_event(NotificationEvent)
    with waiters(event, 3) as results:
        KeSetEvent(event, IO_NO_INCREMENT, False)
        KeClearEvent(event)
    assert results == [STATUS_SUCCESS] * 3
    assert KeReadStateEvent(event) == 0


def test_synchronization_event_releases_one_waiter_per_set() -> None:
    event = make_event(SynchronizationEvent)
    with waiters(event, 3) as results:
        for released in (1, 2, 3):
            assert KeSetEvent(event, IO_NO_INCREMENT, False) == 0
            until(succeeded(results, released))
            assert len(event._waiters) == 3 - released
            assert KeReadStateEvent(event) == 0
    assert results == [STATUS_SUCCESS] * 3
    KeSetEvent(event, IO_NO_INCREMENT, False)
    assert KeReadStateEvent(event) == 1  # nobody waits: it stays signalled


def test_synchronization_event_releases_the_longest_waiter_first() -> None:
    event = make_event(SynchronizationEvent)
    first: list[NTSTATUS] = []
    second: list[NTSTATUS] = []
    one = threading.Thread(target=lambda: first.append(wait(event, LONG)), daemon=True)
    one.start()
    until(queued(event, 1))
    two = threading.Thread(target=lambda: second.append(wait(event, LONG)), daemon=True)
    two.start()
    until(queued(event, 2))
    KeSetEvent(event, IO_NO_INCREMENT, False)
    one.join(timeout=10)
    assert first == [STATUS_SUCCESS]
    assert second == []
    KeSetEvent(event, IO_NO_INCREMENT, False)
    two.join(timeout=10)
    assert second == [STATUS_SUCCESS]


# --- IRQL ----------------------------------------------------------------------------------


@pytest.mark.parametrize("timeout", [None, -1, -MS, 1, LARGE_INTEGER(-1)])
def test_blocking_wait_at_dispatch_level_is_a_bug(timeout: LARGE_INTEGER | int | None) -> None:
    event = make_event(SynchronizationEvent, True)
    with running_at(DISPATCH_LEVEL), pytest.raises(BugCheck) as caught:
        wait(event, timeout)
    assert caught.value.code == BugCheckCode.IRQL_NOT_LESS_OR_EQUAL
    assert "DISPATCH_LEVEL" in str(caught.value)
    assert "zero timeout" in str(caught.value)
    assert KeReadStateEvent(event) == 1  # refused before anything changed


def test_zero_timeout_is_allowed_at_dispatch_level() -> None:
    event = make_event(SynchronizationEvent, True)
    with running_at(DISPATCH_LEVEL):
        assert wait(event, 0) == STATUS_SUCCESS
        assert wait(event, LARGE_INTEGER(0)) == STATUS_TIMEOUT
    with running_at(APC_LEVEL):
        assert wait(event, -MS) == STATUS_TIMEOUT


@pytest.mark.parametrize("timeout", [None, 0, -MS])
def test_any_wait_above_dispatch_level_is_a_bug(timeout: int | None) -> None:
    event = make_event(NotificationEvent, True)
    with running_at(HIGH_LEVEL), pytest.raises(BugCheck) as caught:
        wait(event, timeout)
    assert caught.value.code == BugCheckCode.IRQL_NOT_LESS_OR_EQUAL
    assert "above DISPATCH_LEVEL" in str(caught.value)


def test_set_event_irql() -> None:
    event = make_event(NotificationEvent)
    with running_at(DISPATCH_LEVEL):
        assert KeSetEvent(event, IO_NO_INCREMENT, False) == 0
        KeClearEvent(event)
        assert KeResetEvent(event) == 0
        assert KeReadStateEvent(event) == 0
        with pytest.raises(BugCheck) as caught:
            KeSetEvent(event, IO_NO_INCREMENT, True)
        assert caught.value.code == BugCheckCode.DRIVER_IRQL_NOT_LESS_OR_EQUAL
    assert KeReadStateEvent(event) == 0
    assert KeSetEvent(event, IO_NO_INCREMENT, True) == 0
    with running_at(HIGH_LEVEL), pytest.raises(BugCheck):
        KeSetEvent(event, IO_NO_INCREMENT, False)


# --- Time ------------------------------------------------------------------------------------


def test_large_integer_parts() -> None:
    value = LARGE_INTEGER(-2)
    assert value.LowPart == 0xFFFFFFFE
    assert value.HighPart == -1
    assert LARGE_INTEGER((5 << 32) | 7).HighPart == 5
    assert LARGE_INTEGER().QuadPart == 0
    assert repr(value) == "LARGE_INTEGER(-2)"


def test_system_time_counts_100ns_since_1601() -> None:
    now = LARGE_INTEGER()
    precise = LARGE_INTEGER()
    before = time.time()
    KeQuerySystemTime(now)
    KeQuerySystemTimePrecise(precise)
    after = time.time()
    seconds = now.QuadPart / 10_000_000 - 11_644_473_600
    assert before - 0.001 <= seconds <= after + 0.001
    assert precise.QuadPart >= now.QuadPart
