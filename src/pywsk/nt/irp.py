"""IRPs: the request packets every asynchronous WSK call completes through.

What it does: models the parts of an I/O request packet that a WSK client and a WSK
provider touch - allocation (:func:`IoAllocateIrp`), the completion routine
(:func:`IoSetCompletionRoutine`), status and information (``Irp.IoStatus``),
``PendingReturned``, cancellation (:func:`IoCancelIrp`, :func:`IoSetCancelRoutine`),
completion (:func:`IoCompleteRequest`), reuse (:func:`IoReuseIrp`) and release
(:func:`IoFreeIrp`); and IRPs in the driver's own memory (:func:`IoSizeOfIrp`,
:func:`IoInitializeIrp`).

The rules, from Microsoft's pages ("Using IRPs with Winsock Kernel Functions",
IoSetCompletionRoutine, IoCompleteRequest, IoCancelIrp, IoReuseIrp, IoFreeIrp):

1. For each submission the completion routine runs exactly once, when the flags given to
   IoSetCompletionRoutine allow it: ``InvokeOnSuccess`` when ``NT_SUCCESS(Status)``,
   ``InvokeOnError`` otherwise, ``InvokeOnCancel`` when ``Irp.Cancel`` is set.  A WSK client
   passes TRUE for all three, so its routine always runs.
2. It may run before the dispatch function returns.  ``PendingReturned`` is TRUE exactly
   when the provider marked the IRP pending (returned STATUS_PENDING).
3. A routine for an IRP the client allocated must return STATUS_MORE_PROCESSING_REQUIRED:
   that ends completion processing and gives the IRP back to the client, which frees it
   (IoFreeIrp) or keeps it for reuse (IoReuseIrp).
4. IoCancelIrp only *asks*: it sets ``Irp.Cancel`` and calls the cancel routine the owner
   installed, if any.  The owner still completes the IRP, with STATUS_CANCELLED or with the
   real result if the operation finished first.  Completion is the truth.

What it refuses (with :class:`~pywsk.nt.bugcheck.BugCheck`, before changing anything):
completing an IRP that is not in a driver's hands, completing it twice, submitting an IRP
that is still pending elsewhere, freeing or reusing a pending IRP, and any use of a freed
IRP.

Choices where the pages are silent or Windows would crash (``docs/fidelity.md``):

* A completion routine of a client-allocated IRP that returns anything other than
  STATUS_MORE_PROCESSING_REQUIRED hands the IRP to the "I/O manager", which has no
  originating thread to deliver it to: pywsk then releases it, exactly as if IoFreeIrp had
  been called.  Windows would go on to touch an IRP it does not own (a bug check or
  memory corruption).  Any later use of that IRP (IoFreeIrp, IoReuseIrp, a WSK call)
  raises BugCheck, so the bug shows where it is made.  An IRP whose completion routine does
  not run (none set, or its flags exclude the outcome) stays COMPLETED with its owner: the
  provider's own internal IRPs rely on that, and a client may still free or reuse it.
* A cancel routine is called without the cancel spin lock held, so it does not call
  IoReleaseCancelSpinLock.  IoCancelIrp may be called from any thread.
* :func:`IoInitializeIrp` returns the IRP it initialised in the caller's memory (C keeps
  using the same pointer; Python cannot retype an object).  Freeing that memory (a pool
  block) frees the IRP; :func:`IoFreeIrp` on it raises BugCheck, as the memory is not
  the I/O manager's.  :func:`IoSizeOfIrp` gives the x64 sizes.
* Only the stack location WSK uses is modelled: IoSetCompletionRoutine sets the routine
  the provider's completion calls; ``StackSize`` must be at least 1 for a WSK call.
"""

from __future__ import annotations

import enum
import threading
import weakref
from collections.abc import Callable
from typing import Any, Final

from . import hooks
from .bugcheck import BugCheck, BugCheckCode
from .status import NT_SUCCESS, NTSTATUS

__all__ = [
    "CCHAR",
    "DEVICE_OBJECT",
    "PDEVICE_OBJECT",
    "IO_NO_INCREMENT",
    "IO_NETWORK_INCREMENT",
    "IO_STATUS_BLOCK",
    "IRP",
    "PIRP",
    "PIO_COMPLETION_ROUTINE",
    "PDRIVER_CANCEL",
    "IoAllocateIrp",
    "IoSizeOfIrp",
    "IoInitializeIrp",
    "IoSetCompletionRoutine",
    "IoSetCancelRoutine",
    "IoCancelIrp",
    "IoMarkIrpPending",
    "IoCompleteRequest",
    "IoReuseIrp",
    "IoFreeIrp",
    "IrpState",
    "begin_request",
]

CCHAR = int
IO_NO_INCREMENT: Final = 0
IO_NETWORK_INCREMENT: Final = 2


class DEVICE_OBJECT:
    """Stand-in for a device object; WSK clients receive ``None`` in completion routines."""


PDEVICE_OBJECT = DEVICE_OBJECT | None


class IO_STATUS_BLOCK:
    """``Status`` is the final NTSTATUS; ``Information`` is a count or a pointer (ULONG_PTR)."""

    __slots__ = ("Information", "Status")

    def __init__(self) -> None:
        self.Status: int = NTSTATUS.STATUS_SUCCESS
        # ULONG_PTR: a byte count, or an object such as the new PWSK_SOCKET.
        self.Information: Any = 0

    def __repr__(self) -> str:
        return f"IO_STATUS_BLOCK(Status=0x{self.Status & 0xFFFFFFFF:08X}, Information={self.Information!r})"


PIO_COMPLETION_ROUTINE = Callable[["DEVICE_OBJECT | None", "IRP", Any], int]
PDRIVER_CANCEL = Callable[["DEVICE_OBJECT | None", "IRP"], None]


class IrpState(enum.Enum):
    """Where an IRP is in its life (pywsk bookkeeping, not a wdm.h field)."""

    # Members are singletons: hash by identity (C) instead of Enum's hash of the name
    # (Python), which the provider pays on every state lookup.
    __hash__ = object.__hash__

    #: Owned by the client; may be passed to a WSK call.
    IDLE = "idle"
    #: Passed to a driver that has not completed it yet.
    PENDING = "pending"
    #: Completed; back with the client (reuse it with IoReuseIrp or free it).
    COMPLETED = "completed"
    #: Released by IoFreeIrp (or by the I/O manager, see the module notes).
    FREED = "freed"


# The cancel spin lock: guards Irp.Cancel and Irp.CancelRoutine against IoCancelIrp
# running on another thread.
_cancel_lock: Final = threading.Lock()


class IRP:
    """An I/O request packet.  Allocate with :func:`IoAllocateIrp`; never construct directly."""

    __slots__ = (
        "Cancel",
        "CancelRoutine",
        "ChargeQuota",
        "IoStatus",
        "MdlAddress",
        "PendingReturned",
        "StackSize",
        "Tag",
        "__weakref__",
        "_context",
        "_invoke",
        "_marked_pending",
        "_memory",
        "_routine",
        "_state",
        "created_at",
    )

    def __init__(self, StackSize: int, ChargeQuota: bool) -> None:
        self.StackSize = StackSize
        self.ChargeQuota = ChargeQuota
        self.IoStatus = IO_STATUS_BLOCK()
        self.PendingReturned = False
        self.Cancel = False
        self.CancelRoutine: PDRIVER_CANCEL | None = None
        self.MdlAddress: Any = None
        #: Free for the owner's use (as Tail.Overlay.DriverContext is in C).
        self.Tag: Any = None
        self._routine: PIO_COMPLETION_ROUTINE | None = None
        self._context: Any = None
        self._invoke = (False, False, False)
        self._marked_pending = False
        self._state = IrpState.IDLE
        #: The caller's memory an IRP made by IoInitializeIrp lives in (None: IoAllocateIrp).
        self._memory: Any = None
        #: Where the IRP was allocated (filled by the verifier when it is on).
        self.created_at: Any = None

    @property
    def state(self) -> IrpState:
        """Where the IRP is in its life (see :class:`IrpState`)."""
        return self._state

    def __repr__(self) -> str:
        return f"<IRP {self._state.value} {self.IoStatus!r} at 0x{id(self):x}>"


PIRP = IRP


def IoAllocateIrp(StackSize: CCHAR, ChargeQuota: bool) -> IRP | None:
    """Allocate an IRP with ``StackSize`` stack locations.  Returns None on exhaustion."""
    if _allocation_hook is not None and not _allocation_hook("IoAllocateIrp"):
        return None
    irp = IRP(StackSize, ChargeQuota)
    if hooks.observer is not None:
        hooks.observer.event("irp-allocated", irp)
    return irp


# Set by the verifier's fault scheduler to simulate exhaustion; None = never fail.
_allocation_hook: Callable[[str], bool] | None = None


# x64 sizes (dt nt!_IRP, nt!_IO_STACK_LOCATION): what IoSizeOfIrp reports.
_SIZEOF_IRP: Final = 0xD0
_SIZEOF_IO_STACK_LOCATION: Final = 0x48
# IRPs made by IoInitializeIrp, by id of the memory they live in (the IRP keeps the memory
# alive, so the id stays its own while the IRP lives).
_initialized: weakref.WeakValueDictionary[int, IRP] = weakref.WeakValueDictionary()
_initialized_lock: Final = threading.Lock()


def IoSizeOfIrp(StackSize: CCHAR) -> int:
    """The bytes an IRP with ``StackSize`` stack locations needs (x64 layout), for memory
    a driver allocates itself and hands to :func:`IoInitializeIrp`."""
    if isinstance(StackSize, bool) or not isinstance(StackSize, int):
        raise TypeError(f"IoSizeOfIrp: StackSize must be an int, not {type(StackSize).__name__}")
    if not 1 <= StackSize <= 127:
        raise ValueError(f"IoSizeOfIrp: StackSize must be a CCHAR from 1 to 127, not {StackSize}")
    return _SIZEOF_IRP + StackSize * _SIZEOF_IO_STACK_LOCATION


def IoInitializeIrp(Irp: Any, PacketSize: int, StackSize: CCHAR) -> IRP:
    """Initialise an IRP in memory the caller allocated, and return it.

    C passes the memory as ``PIRP`` and goes on using the same pointer; Python cannot
    retype an object, so the initialised :class:`IRP` is returned:
    ``Irp = IoInitializeIrp(Memory, IoSizeOfIrp(2), 2)``.  ``Irp`` is that memory (a pool
    block from ExAllocatePoolWithTag, or any writable buffer of at least ``PacketSize``
    bytes), an IRP an earlier IoInitializeIrp returned (it is reinitialised), or an IRP
    from IoAllocateIrp with ChargeQuota FALSE ("Reusing IRPs" allows that one).  The same
    memory always gives the same IRP.  Freeing the pool block (ExFreePoolWithTag on the
    block or on the IRP) frees the IRP; IoFreeIrp does not (it raises BugCheck).

    Refuses (BugCheck) a ``PacketSize`` below IoSizeOfIrp(StackSize), an IRP still
    pending, one allocated with ChargeQuota TRUE, and a freed one.
    """
    size = IoSizeOfIrp(StackSize)
    if isinstance(PacketSize, bool) or not isinstance(PacketSize, int):
        raise TypeError("IoInitializeIrp: PacketSize must be an int")
    if PacketSize < size:
        raise BugCheck(
            BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION,
            f"IoInitializeIrp: PacketSize {PacketSize} is less than IoSizeOfIrp({StackSize}) "
            f"= {size}",
            PacketSize,
            size,
        )
    if isinstance(Irp, IRP):
        irp = Irp
        _check_usable(irp, "IoInitializeIrp")
        if irp._memory is None and irp.ChargeQuota:
            raise BugCheck(
                BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION,
                "IoInitializeIrp on an IRP that IoAllocateIrp allocated with ChargeQuota TRUE "
                "(use IoReuseIrp)",
                id(irp),
            )
    else:
        with memoryview(Irp) as view:
            if view.readonly or view.nbytes < PacketSize:
                raise ValueError(
                    "IoInitializeIrp: the memory must be a writable buffer of at least "
                    f"PacketSize ({PacketSize}) bytes"
                )
        with _initialized_lock:
            found = _initialized.get(id(Irp))
            irp = found if found is not None and found._memory is Irp else IRP(StackSize, False)
            irp._memory = Irp
            _initialized[id(Irp)] = irp
        _check_usable(irp, "IoInitializeIrp")
    _refuse_pending(irp, "IoInitializeIrp on")
    IoReuseIrp(irp, NTSTATUS.STATUS_SUCCESS)
    irp.StackSize = StackSize
    irp.MdlAddress = None
    return irp


def release_initialized_irp(memory: Any, function: str) -> None:
    """The pool block ``memory`` is being freed: so is the IRP IoInitializeIrp made in it.

    Refuses (BugCheck) freeing the memory of an IRP still pending.
    """
    with _initialized_lock:
        irp = _initialized.get(id(memory))
    if irp is None or irp._memory is not memory:
        return
    _refuse_pending(irp, f"{function} on the memory of")
    irp._state = IrpState.FREED


def _check_usable(Irp: IRP, function: str) -> None:
    if Irp._state is IrpState.FREED:
        raise BugCheck(
            BugCheckCode.DRIVER_CAUGHT_MODIFYING_FREED_POOL,
            f"{function} on an IRP that was already freed",
            id(Irp),
        )


def _refuse_pending(Irp: IRP, what: str) -> None:
    """BugCheck when ``Irp`` is still pending in a driver: ``what`` may not touch it."""
    if Irp._state is IrpState.PENDING:
        raise BugCheck(
            BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION,
            f"{what} an IRP that is still pending in a driver",
            id(Irp),
        )


def IoSetCompletionRoutine(
    Irp: IRP,
    CompletionRoutine: PIO_COMPLETION_ROUTINE | None,
    Context: Any,
    InvokeOnSuccess: bool,
    InvokeOnError: bool,
    InvokeOnCancel: bool,
) -> None:
    """Set the routine to run when the next lower driver (the WSK provider) completes ``Irp``."""
    state = Irp._state
    if state is IrpState.FREED or state is IrpState.PENDING:  # the checks, without a call
        _check_usable(Irp, "IoSetCompletionRoutine")
        _refuse_pending(Irp, "IoSetCompletionRoutine on")
    Irp._routine = CompletionRoutine
    Irp._context = Context
    Irp._invoke = (bool(InvokeOnSuccess), bool(InvokeOnError), bool(InvokeOnCancel))


def IoSetCancelRoutine(Irp: IRP, CancelRoutine: PDRIVER_CANCEL | None) -> PDRIVER_CANCEL | None:
    """Atomically set the cancel routine and return the previous one.

    A driver that finds ``None`` returned when it clears the routine knows that IoCancelIrp
    has taken the routine (and calls or called it).
    """
    if Irp._state is IrpState.FREED:  # the check, without a call in the common case
        _check_usable(Irp, "IoSetCancelRoutine")
    with _cancel_lock:
        previous = Irp.CancelRoutine
        Irp.CancelRoutine = CancelRoutine
    return previous


def IoCancelIrp(Irp: IRP) -> bool:
    """Ask for ``Irp`` to be cancelled.

    Sets ``Irp.Cancel``.  If the owner installed a cancel routine, takes it, calls it and
    returns TRUE; otherwise returns FALSE.  Either way the owner still completes the IRP:
    wait for the completion routine, whose status says whether the cancel won.
    """
    _check_usable(Irp, "IoCancelIrp")
    with _cancel_lock:
        Irp.Cancel = True
        routine = Irp.CancelRoutine
        Irp.CancelRoutine = None
    if routine is None:
        return False
    routine(None, Irp)
    return True


def IoMarkIrpPending(Irp: IRP) -> None:
    """Note that the driver will return STATUS_PENDING for ``Irp``.

    ``Irp.PendingReturned`` is TRUE in the completion routine exactly when this was called.
    """
    if Irp._state is IrpState.FREED:  # the check, without a call in the common case
        _check_usable(Irp, "IoMarkIrpPending")
    Irp._marked_pending = True


def begin_request(Irp: IRP, function: str) -> None:
    """Take ``Irp`` into a driver for one request (the provider calls this first).

    Refuses an IRP that is freed, still pending in another request, or has no stack
    location left.  On success the IRP is PENDING until :func:`IoCompleteRequest`.
    """
    if hooks.observer is not None:
        hooks.observer.event("irp-submitted", Irp, function=function, state=Irp._state)
    if Irp._state is IrpState.FREED:
        _check_usable(Irp, function)
    if Irp._state is IrpState.PENDING:
        raise BugCheck(
            BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION,
            f"{function}: the IRP is still pending in another request",
            id(Irp),
        )
    if Irp.StackSize < 1:
        raise BugCheck(
            BugCheckCode.NO_MORE_IRP_STACK_LOCATIONS,
            f"{function}: the IRP has no stack location for the WSK subsystem",
            id(Irp),
        )
    Irp._state = IrpState.PENDING
    Irp._marked_pending = False
    Irp.PendingReturned = False


def IoCompleteRequest(Irp: IRP, PriorityBoost: CCHAR = IO_NO_INCREMENT) -> None:
    """Complete ``Irp``: the driver is done with it.

    The caller has set ``Irp.IoStatus``.  Runs the completion routine if its flags allow,
    in the calling thread and at the caller's IRQL.
    """
    if hooks.observer is not None:
        hooks.observer.event("irp-completing", Irp, state=Irp._state)
    if Irp._state is not IrpState.PENDING:
        raise BugCheck(
            BugCheckCode.MULTIPLE_IRP_COMPLETE_REQUESTS,
            f"IoCompleteRequest on an IRP that is {Irp._state.value}, not pending in a driver",
            id(Irp),
        )
    with _cancel_lock:
        Irp.CancelRoutine = None
    Irp._state = IrpState.COMPLETED
    Irp.PendingReturned = Irp._marked_pending
    routine = Irp._routine
    if routine is None:
        return
    on_success, on_error, on_cancel = Irp._invoke
    status = Irp.IoStatus.Status
    if not (
        (on_success and NT_SUCCESS(status))
        or (on_error and not NT_SUCCESS(status))
        or (on_cancel and Irp.Cancel)
    ):
        return
    result = routine(None, Irp, Irp._context)
    if hooks.observer is not None:
        hooks.observer.event("irp-routine-returned", Irp, result=result, routine=routine)
    if result != NTSTATUS.STATUS_MORE_PROCESSING_REQUIRED and Irp._state is not IrpState.FREED:
        # Completion continues to the I/O manager, which owns nothing here: it releases the
        # IRP (see the module notes).
        Irp._state = IrpState.FREED


def IoReuseIrp(Irp: IRP, Iostatus: int) -> None:
    """Reinitialise a completed (or never used) IRP for another request."""
    _check_usable(Irp, "IoReuseIrp")
    _refuse_pending(Irp, "IoReuseIrp on")
    Irp.IoStatus.Status = Iostatus
    Irp.IoStatus.Information = 0
    Irp.PendingReturned = False
    Irp.Cancel = False
    Irp.CancelRoutine = None
    Irp._routine = None
    Irp._context = None
    Irp._invoke = (False, False, False)
    Irp._marked_pending = False
    Irp._state = IrpState.IDLE


def IoFreeIrp(Irp: IRP) -> None:
    """Release an IRP the caller allocated.  MDLs attached to it are not freed."""
    if hooks.observer is not None:
        hooks.observer.event("irp-freeing", Irp, state=Irp._state)
    _check_usable(Irp, "IoFreeIrp")
    if Irp._memory is not None:
        raise BugCheck(
            BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION,
            "IoFreeIrp on an IRP that IoInitializeIrp made in the caller's memory: free that "
            "memory instead (ExFreePoolWithTag)",
            id(Irp),
        )
    _refuse_pending(Irp, "IoFreeIrp on")
    Irp._state = IrpState.FREED
    if hooks.observer is not None:
        hooks.observer.event("irp-freed", Irp)
