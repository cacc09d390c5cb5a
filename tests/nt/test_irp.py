"""The IRP contract: completion-routine flags, PendingReturned, exactly-once completion,
reuse and release, cancellation (also racing completion on another thread)."""

from __future__ import annotations

import itertools
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pytest

from pywsk.nt import irp as irp_module
from pywsk.nt.bugcheck import BugCheck, BugCheckCode
from pywsk.nt.irp import (
    IRP,
    IoAllocateIrp,
    IoCancelIrp,
    IoCompleteRequest,
    IoFreeIrp,
    IoMarkIrpPending,
    IoReuseIrp,
    IoSetCancelRoutine,
    IoSetCompletionRoutine,
    IrpState,
    begin_request,
)
from pywsk.nt.irql import DISPATCH_LEVEL, PASSIVE_LEVEL, KeGetCurrentIrql, running_at
from pywsk.nt.status import (
    STATUS_BUFFER_OVERFLOW,
    STATUS_CANCELLED,
    STATUS_CONNECTION_RESET,
    STATUS_MORE_PROCESSING_REQUIRED,
    STATUS_PENDING,
    STATUS_RECEIVE_PARTIAL,
    STATUS_SUCCESS,
    STATUS_UNSUCCESSFUL,
)

#: Every test here breaks an IRP rule on purpose, to check what pywsk.nt itself does.
pytestmark = pytest.mark.no_verifier

#: Bound, in seconds, on every wait for another thread.
TIMEOUT = 10.0


@dataclass
class Seen:
    """What a completion routine saw when it ran."""

    device: object
    irp: IRP
    context: object
    status: int
    information: Any
    pending_returned: bool
    cancel: bool
    state: IrpState
    irql: int


@dataclass
class Routine:
    """A completion routine that records each call and returns ``result``."""

    result: int = STATUS_MORE_PROCESSING_REQUIRED
    then: Callable[[IRP], None] | None = None
    calls: list[Seen] = field(default_factory=list)

    def __call__(self, device: object, irp: IRP, context: object) -> int:
        self.calls.append(
            Seen(
                device,
                irp,
                context,
                irp.IoStatus.Status,
                irp.IoStatus.Information,
                irp.PendingReturned,
                irp.Cancel,
                irp.state,
                KeGetCurrentIrql(),
            )
        )
        if self.then is not None:
            self.then(irp)
        return self.result


@dataclass
class CancelRoutine:
    """A cancel routine that records each call (and may act)."""

    then: Callable[[IRP], None] | None = None
    calls: list[tuple[object, IRP, object, bool]] = field(default_factory=list)

    def __call__(self, device: object, irp: IRP) -> None:
        self.calls.append((device, irp, irp.CancelRoutine, irp.Cancel))
        if self.then is not None:
            self.then(irp)


def new_irp(stack_size: int = 1) -> IRP:
    irp = IoAllocateIrp(stack_size, False)
    assert irp is not None
    return irp


def submitted(routine: Routine | None = None, context: object = None) -> IRP:
    """An IRP with ``routine`` set for success, error and cancel, taken into a driver."""
    irp = new_irp()
    if routine is not None:
        IoSetCompletionRoutine(irp, routine, context, True, True, True)
    begin_request(irp, "test")
    return irp


def complete(irp: IRP, status: int, information: Any = 0) -> None:
    irp.IoStatus.Status = status
    irp.IoStatus.Information = information
    IoCompleteRequest(irp)


def state(irp: IRP) -> IrpState:
    """``irp.state``, read through a call so that mypy does not narrow it between steps."""
    return irp.state


def pending_returned(irp: IRP) -> bool:
    return irp.PendingReturned


def cancel_bit(irp: IRP) -> bool:
    return irp.Cancel


def cancel_routine_of(irp: IRP) -> object:
    return irp.CancelRoutine


def bugcheck_code(excinfo: pytest.ExceptionInfo[BugCheck]) -> BugCheckCode:
    return excinfo.value.code


# --- allocation ------------------------------------------------------------------------------


def test_allocated_irp_is_fresh() -> None:
    irp = new_irp(3)
    assert state(irp) is IrpState.IDLE
    assert irp.StackSize == 3
    assert irp.ChargeQuota is False
    assert irp.IoStatus.Status == STATUS_SUCCESS
    assert irp.IoStatus.Information == 0
    assert pending_returned(irp) is False
    assert cancel_bit(irp) is False
    assert cancel_routine_of(irp) is None
    assert irp.MdlAddress is None


def test_allocation_failure_returns_none(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    def refuse(function: str) -> bool:
        asked.append(function)
        return False

    monkeypatch.setattr(irp_module, "_allocation_hook", refuse)
    assert IoAllocateIrp(1, False) is None
    assert asked == ["IoAllocateIrp"]


# --- rule 1: when the completion routine runs --------------------------------------------------

#: One status of each kind; "succeeded" is NT_SUCCESS, decided here by hand.
STATUS_KINDS: dict[str, tuple[int, bool]] = {
    "success": (STATUS_SUCCESS, True),
    "information": (STATUS_RECEIVE_PARTIAL, True),
    "pending-as-final": (STATUS_PENDING, True),
    "warning": (STATUS_BUFFER_OVERFLOW, False),
    "error": (STATUS_CONNECTION_RESET, False),
    "cancelled": (STATUS_CANCELLED, False),
}

FLAG_CASES = list(
    itertools.product([False, True], [False, True], [False, True], STATUS_KINDS, [False, True])
)


@pytest.mark.parametrize(
    ("on_success", "on_error", "on_cancel", "kind", "cancel"),
    FLAG_CASES,
    ids=[
        f"S{int(s)}E{int(e)}C{int(c)}-{k}-{'cancel' if x else 'nocancel'}"
        for s, e, c, k, x in FLAG_CASES
    ],
)
def test_completion_routine_invocation_flags(
    on_success: bool, on_error: bool, on_cancel: bool, kind: str, cancel: bool
) -> None:
    status, succeeded = STATUS_KINDS[kind]
    expected = (on_success and succeeded) or (on_error and not succeeded) or (on_cancel and cancel)
    routine = Routine()
    context = object()
    irp = new_irp()
    IoSetCompletionRoutine(irp, routine, context, on_success, on_error, on_cancel)
    begin_request(irp, "test")
    if cancel:
        assert IoCancelIrp(irp) is False  # no cancel routine installed: only the bit
    complete(irp, status, 7)

    assert len(routine.calls) == (1 if expected else 0)
    assert cancel_bit(irp) is cancel
    assert irp.IoStatus.Status == status
    assert state(irp) is not IrpState.PENDING
    if expected:
        seen = routine.calls[0]
        assert seen.device is None
        assert seen.irp is irp
        assert seen.context is context
        assert seen.status == status
        assert seen.information == 7
        assert seen.cancel is cancel
        assert seen.state is IrpState.COMPLETED
        assert state(irp) is IrpState.COMPLETED  # the routine returned MORE_PROCESSING_REQUIRED


def test_no_completion_routine() -> None:
    irp = submitted()
    complete(irp, STATUS_SUCCESS)
    assert state(irp) is not IrpState.PENDING


def test_routine_runs_in_the_completing_thread_at_its_irql() -> None:
    routine = Routine()
    irp = submitted(routine)
    with running_at(DISPATCH_LEVEL):
        complete(irp, STATUS_SUCCESS)
    assert routine.calls[0].irql == DISPATCH_LEVEL
    assert KeGetCurrentIrql() == PASSIVE_LEVEL


def test_routine_set_again_replaces_the_previous_one() -> None:
    first, second = Routine(), Routine()
    irp = new_irp()
    IoSetCompletionRoutine(irp, first, "a", True, True, True)
    IoSetCompletionRoutine(irp, second, "b", True, True, True)
    begin_request(irp, "test")
    complete(irp, STATUS_SUCCESS)
    assert first.calls == []
    assert [seen.context for seen in second.calls] == ["b"]


# --- rule 2: PendingReturned -------------------------------------------------------------------


@pytest.mark.parametrize("marked", [False, True])
def test_pending_returned_iff_marked(marked: bool) -> None:
    routine = Routine()
    irp = submitted(routine)
    if marked:
        IoMarkIrpPending(irp)
    assert pending_returned(irp) is False  # set by completion, not by the mark
    complete(irp, STATUS_SUCCESS)
    assert routine.calls[0].pending_returned is marked
    assert pending_returned(irp) is marked


@pytest.mark.parametrize("reuse", [False, True])
def test_pending_mark_does_not_carry_to_the_next_request(reuse: bool) -> None:
    routine = Routine()
    irp = submitted(routine)
    IoMarkIrpPending(irp)
    complete(irp, STATUS_SUCCESS)
    assert pending_returned(irp) is True
    if reuse:
        IoReuseIrp(irp, STATUS_SUCCESS)
        IoSetCompletionRoutine(irp, routine, None, True, True, True)
    begin_request(irp, "second")
    assert pending_returned(irp) is False
    complete(irp, STATUS_SUCCESS)
    assert [seen.pending_returned for seen in routine.calls] == [True, False]


def test_mark_before_begin_request_is_forgotten() -> None:
    routine = Routine()
    irp = new_irp()
    IoSetCompletionRoutine(irp, routine, None, True, True, True)
    IoMarkIrpPending(irp)
    begin_request(irp, "test")
    complete(irp, STATUS_SUCCESS)
    assert routine.calls[0].pending_returned is False


# --- exactly-once completion -------------------------------------------------------------------


def test_second_completion_bugchecks_and_changes_nothing() -> None:
    routine = Routine()
    irp = submitted(routine)
    complete(irp, STATUS_SUCCESS, 5)
    cancel_routine = CancelRoutine()
    IoSetCancelRoutine(irp, cancel_routine)
    IoMarkIrpPending(irp)  # would show in PendingReturned if the completion went ahead
    before = (irp.state, irp.PendingReturned, irp.Cancel, irp.IoStatus.Status)

    with pytest.raises(BugCheck) as excinfo:
        IoCompleteRequest(irp)

    assert bugcheck_code(excinfo) is BugCheckCode.MULTIPLE_IRP_COMPLETE_REQUESTS
    assert excinfo.value.parameters[0] == id(irp)
    assert (irp.state, irp.PendingReturned, irp.Cancel, irp.IoStatus.Status) == before
    assert irp.IoStatus.Information == 5
    assert cancel_routine_of(irp) is cancel_routine
    assert len(routine.calls) == 1
    assert cancel_routine.calls == []


def test_completing_an_irp_never_submitted_bugchecks() -> None:
    routine = Routine()
    irp = new_irp()
    IoSetCompletionRoutine(irp, routine, None, True, True, True)
    with pytest.raises(BugCheck) as excinfo:
        IoCompleteRequest(irp)
    assert bugcheck_code(excinfo) is BugCheckCode.MULTIPLE_IRP_COMPLETE_REQUESTS
    assert state(irp) is IrpState.IDLE
    assert routine.calls == []


def test_completing_a_freed_irp_bugchecks() -> None:
    irp = new_irp()
    IoFreeIrp(irp)
    with pytest.raises(BugCheck):
        IoCompleteRequest(irp)
    assert state(irp) is IrpState.FREED


# --- begin_request -----------------------------------------------------------------------------


def test_begin_request_takes_an_idle_or_completed_irp() -> None:
    irp = new_irp()
    begin_request(irp, "first")
    assert state(irp) is IrpState.PENDING
    complete(irp, STATUS_SUCCESS)
    assert state(irp) is IrpState.COMPLETED
    begin_request(irp, "second")
    assert state(irp) is IrpState.PENDING


def test_begin_request_refuses_a_pending_irp() -> None:
    routine = Routine()
    irp = submitted(routine)
    with pytest.raises(BugCheck) as excinfo:
        begin_request(irp, "WskSend")
    assert bugcheck_code(excinfo) is BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION
    assert "WskSend" in str(excinfo.value)
    assert state(irp) is IrpState.PENDING
    complete(irp, STATUS_SUCCESS)  # the first request still completes, once
    assert len(routine.calls) == 1


def test_begin_request_refuses_a_freed_irp() -> None:
    irp = new_irp()
    IoFreeIrp(irp)
    with pytest.raises(BugCheck) as excinfo:
        begin_request(irp, "WskReceive")
    assert bugcheck_code(excinfo) is BugCheckCode.DRIVER_CAUGHT_MODIFYING_FREED_POOL
    assert "WskReceive" in str(excinfo.value)
    assert state(irp) is IrpState.FREED


def test_begin_request_refuses_stack_size_zero() -> None:
    irp = new_irp(0)
    with pytest.raises(BugCheck) as excinfo:
        begin_request(irp, "WskConnect")
    assert bugcheck_code(excinfo) is BugCheckCode.NO_MORE_IRP_STACK_LOCATIONS
    assert "WskConnect" in str(excinfo.value)
    assert state(irp) is IrpState.IDLE


# --- free and reuse ------------------------------------------------------------------------------


def test_free_while_pending_bugchecks() -> None:
    routine = Routine()
    irp = submitted(routine)
    with pytest.raises(BugCheck) as excinfo:
        IoFreeIrp(irp)
    assert bugcheck_code(excinfo) is BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION
    assert state(irp) is IrpState.PENDING
    complete(irp, STATUS_SUCCESS)
    assert len(routine.calls) == 1


def test_reuse_while_pending_bugchecks_and_changes_nothing() -> None:
    routine = Routine()
    irp = submitted(routine)
    IoMarkIrpPending(irp)
    irp.IoStatus.Information = 9
    with pytest.raises(BugCheck) as excinfo:
        IoReuseIrp(irp, STATUS_UNSUCCESSFUL)
    assert bugcheck_code(excinfo) is BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION
    assert state(irp) is IrpState.PENDING
    assert irp.IoStatus.Information == 9
    irp.IoStatus.Status = STATUS_SUCCESS
    IoCompleteRequest(irp)
    # The routine and the pending mark survived the refused reuse.
    assert len(routine.calls) == 1
    assert routine.calls[0].pending_returned is True
    assert routine.calls[0].information == 9


def test_set_completion_routine_while_pending_bugchecks() -> None:
    original, other = Routine(), Routine()
    irp = submitted(original)
    with pytest.raises(BugCheck) as excinfo:
        IoSetCompletionRoutine(irp, other, None, True, True, True)
    assert bugcheck_code(excinfo) is BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION
    complete(irp, STATUS_SUCCESS)
    assert len(original.calls) == 1
    assert other.calls == []


USES_AFTER_FREE: dict[str, Callable[[IRP], object]] = {
    "IoFreeIrp": IoFreeIrp,
    "IoReuseIrp": lambda irp: IoReuseIrp(irp, STATUS_SUCCESS),
    "IoSetCompletionRoutine": lambda irp: IoSetCompletionRoutine(
        irp, Routine(), None, True, True, True
    ),
    "IoCancelIrp": IoCancelIrp,
    "begin_request": lambda irp: begin_request(irp, "WskSend"),
}


@pytest.mark.parametrize("use", sorted(USES_AFTER_FREE))
def test_use_after_free_bugchecks(use: str) -> None:
    irp = new_irp()
    IoFreeIrp(irp)
    with pytest.raises(BugCheck) as excinfo:
        USES_AFTER_FREE[use](irp)
    assert bugcheck_code(excinfo) is BugCheckCode.DRIVER_CAUGHT_MODIFYING_FREED_POOL
    assert excinfo.value.parameters[0] == id(irp)
    assert state(irp) is IrpState.FREED
    assert cancel_bit(irp) is False


@pytest.mark.parametrize(
    "use",
    [
        pytest.param(lambda irp: IoSetCancelRoutine(irp, CancelRoutine()), id="IoSetCancelRoutine"),
        pytest.param(IoMarkIrpPending, id="IoMarkIrpPending"),
    ],
)
def test_use_after_free_bugchecks_for_driver_side_calls(use: Callable[[IRP], object]) -> None:
    irp = new_irp()
    IoFreeIrp(irp)
    with pytest.raises(BugCheck):
        use(irp)


def test_reuse_resets_the_request_fields() -> None:
    old_routine = Routine()
    irp = new_irp(2)
    IoSetCompletionRoutine(irp, old_routine, "old", True, True, True)
    begin_request(irp, "test")
    IoMarkIrpPending(irp)
    IoSetCancelRoutine(irp, CancelRoutine())
    assert IoCancelIrp(irp) is True
    IoSetCancelRoutine(irp, CancelRoutine())  # the owner re-arms it: reuse must clear it
    complete(irp, STATUS_CANCELLED, 42)
    IoSetCancelRoutine(irp, CancelRoutine())
    assert pending_returned(irp) is True
    assert cancel_bit(irp) is True

    IoReuseIrp(irp, STATUS_UNSUCCESSFUL)

    assert state(irp) is IrpState.IDLE
    assert irp.IoStatus.Status == STATUS_UNSUCCESSFUL
    assert irp.IoStatus.Information == 0
    assert pending_returned(irp) is False
    assert cancel_bit(irp) is False
    assert cancel_routine_of(irp) is None
    assert irp.StackSize == 2
    # The completion routine is gone too: it must be set again after reuse.
    begin_request(irp, "again")
    complete(irp, STATUS_SUCCESS)
    assert len(old_routine.calls) == 1
    assert pending_returned(irp) is False


def test_reuse_of_a_never_used_irp() -> None:
    irp = new_irp()
    IoReuseIrp(irp, STATUS_PENDING)
    assert state(irp) is IrpState.IDLE
    assert irp.IoStatus.Status == STATUS_PENDING


def test_one_irp_drives_many_requests_in_sequence() -> None:
    routine = Routine()
    irp = new_irp()
    for index in range(5):
        IoReuseIrp(irp, STATUS_SUCCESS)
        IoSetCompletionRoutine(irp, routine, index, True, True, True)
        begin_request(irp, "loop")
        complete(irp, STATUS_SUCCESS, index)
    assert [(seen.context, seen.information) for seen in routine.calls] == [
        (i, i) for i in range(5)
    ]
    IoFreeIrp(irp)
    assert state(irp) is IrpState.FREED


# --- rule 3: what the routine returns ----------------------------------------------------------


@pytest.mark.parametrize("result", [STATUS_SUCCESS, STATUS_CANCELLED, STATUS_PENDING, 0x1234])
def test_routine_not_returning_more_processing_releases_the_irp(result: int) -> None:
    routine = Routine(result=result)
    irp = submitted(routine)
    complete(irp, STATUS_SUCCESS)
    assert len(routine.calls) == 1
    assert state(irp) is IrpState.FREED
    with pytest.raises(BugCheck) as excinfo:
        IoFreeIrp(irp)
    assert bugcheck_code(excinfo) is BugCheckCode.DRIVER_CAUGHT_MODIFYING_FREED_POOL
    with pytest.raises(BugCheck):
        IoReuseIrp(irp, STATUS_SUCCESS)
    with pytest.raises(BugCheck):
        begin_request(irp, "WskSend")


def test_routine_returning_more_processing_keeps_the_irp() -> None:
    routine = Routine()
    irp = submitted(routine)
    complete(irp, STATUS_SUCCESS)
    assert state(irp) is IrpState.COMPLETED
    IoFreeIrp(irp)
    assert state(irp) is IrpState.FREED


@pytest.mark.parametrize("result", [STATUS_MORE_PROCESSING_REQUIRED, STATUS_SUCCESS])
def test_routine_may_free_the_irp_itself(result: int) -> None:
    routine = Routine(result=result, then=IoFreeIrp)
    irp = submitted(routine)
    complete(irp, STATUS_SUCCESS)  # no double release, whatever the routine returns
    assert state(irp) is IrpState.FREED
    with pytest.raises(BugCheck):
        IoFreeIrp(irp)


def test_routine_may_reuse_the_irp_itself() -> None:
    routine = Routine(then=lambda irp: IoReuseIrp(irp, STATUS_SUCCESS))
    irp = submitted(routine)
    complete(irp, STATUS_CONNECTION_RESET)
    assert routine.calls[0].state is IrpState.COMPLETED
    assert state(irp) is IrpState.IDLE
    assert irp.IoStatus.Status == STATUS_SUCCESS


# --- rule 4: cancellation ------------------------------------------------------------------------


def test_cancel_without_a_cancel_routine() -> None:
    routine = Routine()
    irp = submitted(routine)
    assert IoCancelIrp(irp) is False
    assert cancel_bit(irp) is True
    assert state(irp) is IrpState.PENDING  # cancelling only asks
    complete(irp, STATUS_CANCELLED)
    assert routine.calls[0].cancel is True
    assert routine.calls[0].status == STATUS_CANCELLED


def test_cancel_with_a_cancel_routine_calls_it_once() -> None:
    routine = Routine()
    irp = submitted(routine)
    cancel_routine = CancelRoutine()
    assert IoSetCancelRoutine(irp, cancel_routine) is None

    assert IoCancelIrp(irp) is True

    assert len(cancel_routine.calls) == 1
    device, seen_irp, routine_during_call, cancel_during_call = cancel_routine.calls[0]
    assert device is None
    assert seen_irp is irp
    assert routine_during_call is None  # IoCancelIrp took it before calling it
    assert cancel_during_call is True
    assert cancel_routine_of(irp) is None
    # A second request to cancel finds no routine: the bit only.
    assert IoCancelIrp(irp) is False
    assert len(cancel_routine.calls) == 1
    # The owner learns that the routine was taken.
    assert IoSetCancelRoutine(irp, None) is None
    assert state(irp) is IrpState.PENDING
    complete(irp, STATUS_CANCELLED)
    assert len(routine.calls) == 1


def test_cancel_routine_that_completes_the_irp() -> None:
    routine = Routine()
    irp = submitted(routine)
    IoSetCancelRoutine(irp, CancelRoutine(then=lambda i: complete(i, STATUS_CANCELLED)))
    assert IoCancelIrp(irp) is True
    assert len(routine.calls) == 1
    assert routine.calls[0].status == STATUS_CANCELLED
    assert routine.calls[0].cancel is True
    assert state(irp) is IrpState.COMPLETED


def test_set_cancel_routine_is_an_exchange() -> None:
    irp = submitted(Routine())
    first, second = CancelRoutine(), CancelRoutine()
    assert IoSetCancelRoutine(irp, first) is None
    assert IoSetCancelRoutine(irp, second) is first
    assert IoSetCancelRoutine(irp, None) is second
    assert IoSetCancelRoutine(irp, None) is None
    assert IoCancelIrp(irp) is False
    assert first.calls == []
    assert second.calls == []
    complete(irp, STATUS_CANCELLED)


def test_completion_clears_the_cancel_routine() -> None:
    irp = submitted(Routine())
    cancel_routine = CancelRoutine()
    IoSetCancelRoutine(irp, cancel_routine)
    complete(irp, STATUS_SUCCESS)
    assert cancel_routine_of(irp) is None
    assert IoCancelIrp(irp) is False  # too late: sets the bit, calls nothing
    assert cancel_bit(irp) is True
    assert cancel_routine.calls == []


# --- cancellation racing completion on two threads ----------------------------------------------

ROUNDS = 2000


class Racer:
    """Two worker threads that run one pair of actions per round, released together."""

    def __init__(self) -> None:
        self._start = threading.Barrier(3)
        self._end = threading.Barrier(3)
        self._actions: list[Callable[[], object]] = []
        self._stopping = False
        self.errors: list[BaseException] = []
        self._threads = [
            threading.Thread(target=self._work, args=(index,), daemon=True) for index in range(2)
        ]
        for thread in self._threads:
            thread.start()

    def _work(self, index: int) -> None:
        while True:
            try:
                self._start.wait(TIMEOUT)
            except threading.BrokenBarrierError:
                return
            if self._stopping:
                return
            try:
                self._actions[index]()
            except BaseException as exc:  # reported by the test, not by the thread hook
                self.errors.append(exc)
            try:
                self._end.wait(TIMEOUT)
            except threading.BrokenBarrierError:
                return

    def round(self, first: Callable[[], object], second: Callable[[], object]) -> None:
        self._actions = [first, second]
        self._start.wait(TIMEOUT)
        self._end.wait(TIMEOUT)

    def close(self) -> None:
        self._stopping = True
        self._start.abort()
        self._end.abort()
        for thread in self._threads:
            thread.join(TIMEOUT)
            assert not thread.is_alive()


@pytest.fixture
def racer() -> Iterator[Racer]:
    # Switch threads as often as possible, so that the two actions interleave.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    racer = Racer()
    try:
        yield racer
    finally:
        sys.setswitchinterval(interval)
        racer.close()


def cancel_into(irp: IRP, returned: list[bool]) -> None:
    returned.append(IoCancelIrp(irp))


def finish_unless_cancelled(irp: IRP) -> None:
    """The owner's side of the protocol: complete only if the cancel routine was still set."""
    if IoSetCancelRoutine(irp, None) is not None:
        complete(irp, STATUS_SUCCESS, 100)


def test_cancel_racing_complete(racer: Racer) -> None:
    """The owner completes without looking; IoCancelIrp runs at the same time."""
    outcomes: set[bool] = set()
    for _ in range(ROUNDS):
        routine = Routine()
        cancel_routine = CancelRoutine()
        irp = submitted(routine)
        IoSetCancelRoutine(irp, cancel_routine)
        irp.IoStatus.Status = STATUS_SUCCESS
        returned: list[bool] = []
        racer.round(partial(IoCompleteRequest, irp), partial(cancel_into, irp, returned))
        assert racer.errors == []
        assert len(routine.calls) == 1
        assert len(cancel_routine.calls) <= 1
        assert returned == [len(cancel_routine.calls) == 1]
        assert cancel_bit(irp) is True
        assert cancel_routine_of(irp) is None
        assert state(irp) is IrpState.COMPLETED
        outcomes.add(returned[0])
        IoFreeIrp(irp)
    assert outcomes  # (which interleavings happened depends on the scheduler)


def test_cancel_racing_complete_with_the_owner_protocol(racer: Racer) -> None:
    """The documented protocol: whoever clears the cancel routine first completes the IRP."""
    for _ in range(ROUNDS):
        routine = Routine()
        irp = submitted(routine)
        cancel_routine = CancelRoutine(then=lambda i: complete(i, STATUS_CANCELLED))
        IoSetCancelRoutine(irp, cancel_routine)
        racer.round(partial(finish_unless_cancelled, irp), partial(IoCancelIrp, irp))
        assert racer.errors == []
        assert len(routine.calls) == 1
        assert len(cancel_routine.calls) <= 1
        cancelled = len(cancel_routine.calls) == 1
        assert routine.calls[0].status == (STATUS_CANCELLED if cancelled else STATUS_SUCCESS)
        if cancelled:
            assert routine.calls[0].cancel is True
        assert state(irp) is IrpState.COMPLETED
        IoFreeIrp(irp)
