"""DPCs: KeInitializeDpc / KeInsertQueueDpc / KeRemoveQueueDpc on pywsk's one processor at
DISPATCH_LEVEL, the provider thread."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from pywsk.nt import (
    DISPATCH_LEVEL,
    IO_NO_INCREMENT,
    KDPC,
    KEVENT,
    LARGE_INTEGER,
    STATUS_MORE_PROCESSING_REQUIRED,
    STATUS_PENDING,
    STATUS_SUCCESS,
    BugCheck,
    Executive,
    IoAllocateIrp,
    IoFreeIrp,
    IoSetCompletionRoutine,
    KeGetCurrentIrql,
    KeInitializeDpc,
    KeInitializeEvent,
    KeInsertQueueDpc,
    KeRemoveQueueDpc,
    KernelMode,
    KeSetEvent,
    KeWaitForSingleObject,
    NotificationEvent,
)
from pywsk.testing.driver import WskTestClient
from pywsk.wsk import SOCKADDR_STORAGE

TEN_SECONDS = LARGE_INTEGER(-10 * 10_000_000)


def _event() -> KEVENT:
    event = KEVENT()
    KeInitializeEvent(event, NotificationEvent, False)
    return event


def _wait(event: KEVENT) -> None:
    status = KeWaitForSingleObject(event, Executive, KernelMode, False, TEN_SECONDS)
    assert status == STATUS_SUCCESS, "the DPC did not run within 10 s"


def test_dpcs_run_in_order_on_the_provider_thread_at_dispatch_level(
    wsk: WskTestClient,
) -> None:
    seen: list[tuple[int, Any, Any, Any, str]] = []
    done = _event()

    def routine(dpc: KDPC, context: Any, arg1: Any, arg2: Any) -> None:
        seen.append((KeGetCurrentIrql(), context, arg1, arg2, threading.current_thread().name))
        if context == 9:
            KeSetEvent(done, IO_NO_INCREMENT, False)

    dpcs = [KDPC() for _ in range(10)]
    for i, dpc in enumerate(dpcs):
        KeInitializeDpc(dpc, routine, i)
    for i, dpc in enumerate(dpcs):
        assert KeInsertQueueDpc(dpc, f"a{i}", f"b{i}")
    _wait(done)
    assert [s[1] for s in seen] == list(range(10))
    assert all(s[0] == DISPATCH_LEVEL for s in seen)
    assert all(s[2:4] == (f"a{s[1]}", f"b{s[1]}") for s in seen)
    assert {s[4] for s in seen} == {"pywsk-provider"}


def test_a_queued_dpc_is_not_queued_twice_and_can_be_removed(wsk: WskTestClient) -> None:
    ran: list[str] = []
    done = _event()
    gate = threading.Event()

    def blocker(dpc: KDPC, context: Any, arg1: Any, arg2: Any) -> None:
        # Holds the processor, so that the DPCs behind it stay queued while the test looks.
        gate.wait(10.0)

    def routine(dpc: KDPC, context: Any, arg1: Any, arg2: Any) -> None:
        ran.append(context)
        KeSetEvent(done, IO_NO_INCREMENT, False)

    hold, first, removed = KDPC(), KDPC(), KDPC()
    KeInitializeDpc(hold, blocker, None)
    KeInitializeDpc(first, routine, "first")
    KeInitializeDpc(removed, routine, "removed")
    try:
        assert KeInsertQueueDpc(hold, None, None)
        assert KeInsertQueueDpc(first, 1, 2)
        assert not KeInsertQueueDpc(first, 3, 4)  # still queued: FALSE, nothing changes
        assert KeInsertQueueDpc(removed, None, None)
        assert KeRemoveQueueDpc(removed)  # taken out: its routine never runs
        assert not KeRemoveQueueDpc(removed)
    finally:
        gate.set()
    _wait(done)
    assert ran == ["first"]
    assert (first.SystemArgument1, first.SystemArgument2) == (1, 2)
    assert not KeRemoveQueueDpc(first)  # it ran: nothing to remove


def test_an_uninitialised_dpc_is_refused() -> None:
    with pytest.raises(BugCheck):
        KeInsertQueueDpc(KDPC(), None, None)


def test_a_routine_that_raises_is_reported_and_the_next_dpc_still_runs(
    wsk: WskTestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    reported: list[BaseException | None] = []
    monkeypatch.setattr("sys.unraisablehook", lambda args: reported.append(args.exc_value))
    done = _event()

    def bad(dpc: KDPC, context: Any, arg1: Any, arg2: Any) -> None:
        raise ValueError("a bug in a DPC routine")

    def good(dpc: KDPC, context: Any, arg1: Any, arg2: Any) -> None:
        KeSetEvent(done, IO_NO_INCREMENT, False)

    first, second = KDPC(), KDPC()
    KeInitializeDpc(first, bad, None)
    KeInitializeDpc(second, good, None)
    KeInsertQueueDpc(first, None, None)
    KeInsertQueueDpc(second, None, None)
    _wait(done)
    assert len(reported) == 1
    assert isinstance(reported[0], ValueError)


def test_a_wsk_call_made_in_a_dpc_acts_inline(wsk: WskTestClient) -> None:
    """On the provider thread the dispatch function acts at once: the IRP completes
    inside the call, and the call returns its status (not STATUS_PENDING)."""
    listener = __import__("socket").create_server(("127.0.0.1", 0))
    with listener:
        sock = wsk.connect(listener.getsockname())
        out = SOCKADDR_STORAGE()
        irp = IoAllocateIrp(1, False)
        assert irp is not None
        order: list[str] = []
        done = _event()

        def completed(_device: Any, _irp: Any, _context: Any) -> int:
            order.append("completion")
            return STATUS_MORE_PROCESSING_REQUIRED

        IoSetCompletionRoutine(irp, completed, None, True, True, True)
        returned: list[int] = []

        def routine(dpc: KDPC, context: Any, arg1: Any, arg2: Any) -> None:
            returned.append(wsk.dispatch(sock).WskGetLocalAddress(sock, out, irp))
            order.append("returned")
            KeSetEvent(done, IO_NO_INCREMENT, False)

        dpc = KDPC()
        KeInitializeDpc(dpc, routine, None)
        KeInsertQueueDpc(dpc, None, None)
        _wait(done)
        assert order == ["completion", "returned"]
        assert returned == [STATUS_SUCCESS]
        assert returned[0] != STATUS_PENDING
        assert out.to_tuple()[0] == "127.0.0.1"
        IoFreeIrp(irp)
        wsk.close_socket(sock)
