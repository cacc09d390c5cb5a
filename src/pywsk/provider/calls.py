"""The way every WSK call enters the provider: the IRQL rule, the IRP taken, the lock.

What it does: :func:`_enter` checks the IRQL rule and a NULL IRP, then :func:`_take` runs
the verifier's look (when it is on), the argument check, ``begin_request`` and the call
itself through :meth:`Engine.take <pywsk.provider.engine.Engine.take>`.
:func:`_socket_call` is the entry of every socket-level call: ``Socket.<method>(*args)``
on the calling thread under the socket's lock (``Engine.locked``), its completion
routines run after the lock is released.  :func:`_no_irp_call` wraps the calls without
an IRP (WskControlSocket with a NULL IRP, WskRelease, WskControlClient).  :data:`ENGINE`
is the process's one engine, the subsystem's (:class:`~pywsk.provider.client.WskSubsystem`).

What it refuses: a NULL IRP where one is required (STATUS_INVALID_PARAMETER, nothing to
complete); a socket object that is closed, not ours, or without the method asked for
(STATUS_INVALID_HANDLE, IRP completed); an argument its check refuses (the IRP completed
with the check's status, the method never called).  A freed IRP, or one still pending in
another request, is a BugCheck (``begin_request``).

What always holds: a call acts on the calling thread, never handed to another one; an
IRP this module took is completed - by the method, or with STATUS_INVALID_PARAMETER if
the provider raised before anything completed or queued it (the exception reported);
a BugCheck is raised on, never swallowed; client code never runs with a socket's lock
held (completion routines run after it is released).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Final

from ..nt import hooks
from ..nt.bugcheck import BugCheck
from ..nt.irp import IRP, IrpState, begin_request
from ..nt.irql import DISPATCH_LEVEL, require_irql_at_most
from ..nt.irql import _state as _irql
from ..nt.status import NTSTATUS
from .base import ProviderSocket
from .engine import MAX_INLINE_DEPTH, TURN_BUDGET, Engine, report_exception

__all__ = ["ENGINE", "Check"]

#: The process's one engine (the provider thread, locked sections): the WSK subsystem's.
ENGINE: Final = Engine()


def _enter(
    name: str,
    Irp: IRP | None,
    fn: Callable[..., int],
    *args: Any,
    precheck: Callable[[], None] | None = None,
    check: Check | None = None,
) -> int:
    """Check the IRQL rule, then run ``fn(*args)`` on this thread with ``Irp`` taken.

    ``precheck`` runs first, before the IRP is taken: a verifier that refuses the call
    (raises) leaves everything as it was.  ``check`` (arguments.py) then looks at the
    arguments: a refusal completes the IRP with its status and nothing else happens.
    """
    require_irql_at_most(DISPATCH_LEVEL, name)
    if not isinstance(Irp, IRP):
        # Nothing to complete: the call is refused outright (observed on Windows for NULL).
        if hooks.observer is not None:
            hooks.observer.event("null-irp", None, function=name)
        return NTSTATUS.STATUS_INVALID_PARAMETER
    return _take(name, Irp, fn, args, precheck, check)


#: An argument check: None (go on) or the status that refuses the call.
Check = Callable[[], "int | None"]


def _completed(Irp: IRP, status: int) -> int:
    """Complete ``Irp`` with ``status`` now and return that status (a call that ends at once)."""
    ENGINE.complete(Irp, status)
    return status


def _take(
    name: str,
    Irp: IRP,
    fn: Callable[..., int],
    args: tuple[Any, ...],
    precheck: Callable[[], None] | None = None,
    check: Check | None = None,
) -> int:
    observer = hooks.observer
    if observer is not None:
        if precheck is not None:
            precheck()
        if ENGINE.in_completion:
            observer.event("wsk-call-in-completion-routine", Irp, function=name)
    # Before the IRP is taken: a BugCheck raised here (a freed MDL) leaves it the caller's.
    refusal = check() if check is not None else None
    begin_request(Irp, name)
    if refusal is not None:
        return ENGINE.take(name, Irp, _completed, (Irp, refusal))
    try:
        return ENGINE.take(name, Irp, fn, args)
    except Exception as exc:
        return _failed_inside(name, Irp, exc)


def _failed_inside(name: str, Irp: IRP, exc: Exception) -> int:
    """The provider raised after it took ``Irp`` (a check missed a bad argument, or a bug):
    the IRP still completes - STATUS_INVALID_PARAMETER if nothing completed or queued it -
    and the exception is reported, never left with the IRP pending for ever.  A BugCheck
    is raised on after that (the rule it names was broken)."""
    if Irp.state is IrpState.PENDING and not Irp._marked_pending:
        status: int = NTSTATUS.STATUS_INVALID_PARAMETER
        ENGINE.complete(Irp, status)
    else:
        status = NTSTATUS.STATUS_PENDING if Irp._marked_pending else Irp.IoStatus.Status
    if isinstance(exc, BugCheck):
        raise exc
    report_exception(exc, f"in {name} (its IRP completed with status 0x{status:08X})", Irp)
    return status


def _socket_call(
    name: str, Socket: Any, Irp: IRP | None, method: str, *args: Any, check: Check | None = None
) -> int:
    """Run ``Socket.<method>(*args)`` under the socket's lock, if the socket is live and has it.

    The common case - no verifier, no fault scheduler, a live socket, a call not deep in a
    chain - takes a short path with the same steps inlined: the IRQL rule, the argument
    check, the IRP taken, the method under the lock, the completion routines after it.

    That short path repeats ``Engine.locked`` and the guard of :func:`_take` on purpose:
    it is the measured hot path (``benchmarks/pycalls.py``: Python calls per WskSend), so
    it adds no Python call of its own.  Change it together with them, or not at all.
    """
    engine = ENGINE
    tls = engine._tls
    if (
        type(Irp) is IRP
        and hooks.observer is None
        and hooks.faults is None
        and _irql.level <= DISPATCH_LEVEL
        and tls.batch is None
        and tls.depth < MAX_INLINE_DEPTH
        and tls.turn < TURN_BUDGET
        and isinstance(Socket, ProviderSocket)
    ):
        bound = getattr(Socket, method, None)
        if bound is not None:
            # Before the IRP is taken: a BugCheck raised here leaves it the caller's.
            refusal = check() if check is not None else None
            begin_request(Irp, name)
            if refusal is not None:
                return _completed(Irp, refusal)
            batch: list[Any] = []
            tls.batch = batch
            lock = Socket.lock
            lock.acquire()
            try:
                if Socket.closed:  # a use after close (or closed by another thread meanwhile)
                    result: int = _completed(Irp, NTSTATUS.STATUS_INVALID_HANDLE)
                else:
                    result = bound(*args)
            except Exception as exc:
                failure: Exception | None = exc
            else:
                failure = None
            finally:
                lock.release()
                tls.batch = None
                if batch:
                    engine._run_batch(batch)
            if failure is not None:
                return _failed_inside(name, Irp, failure)
            return result
    precheck = None
    if hooks.observer is not None:
        precheck = functools.partial(_socket_precheck, name, Socket, Irp, method)
    return _enter(
        name, Irp, _run_socket_method, Socket, Irp, method, args, precheck=precheck, check=check
    )


def _socket_is_live(Socket: Any, method: str) -> bool:
    return isinstance(Socket, ProviderSocket) and not Socket.closed and hasattr(Socket, method)


def _socket_precheck(name: str, Socket: Any, Irp: IRP | None, method: str) -> None:
    """The verifier's look at a socket call, before the IRP is taken."""
    observer = hooks.observer
    if observer is None:
        return
    observer.event("socket-call", Socket, function=name, irp=Irp)
    if not _socket_is_live(Socket, method):
        observer.event("wsk-call-on-closed-socket", Socket, function=name)
    elif method == "close":
        if Socket.calls_inside:
            observer.event("close-while-call-inside", Socket, calls=Socket.calls_inside)
        retained = getattr(getattr(Socket, "role", Socket), "retained", None)
        if retained:
            observer.event("close-with-retained-indications", Socket, count=len(retained))


def _run_socket_method(Socket: Any, Irp: IRP, method: str, args: tuple[Any, ...]) -> int:
    if not _socket_is_live(Socket, method):
        return _completed(Irp, NTSTATUS.STATUS_INVALID_HANDLE)
    engine = ENGINE
    if hooks.observer is None:
        result: int = engine.locked(Socket.lock, _inside, Socket, Irp, method, args)
        return result
    # The verifier counts calls inside the provider (WSK-002) from entry to return, the
    # completion routines of an inline completion included.
    with Socket.lock:
        Socket.calls_inside += 1
    try:
        result = engine.locked(Socket.lock, _inside, Socket, Irp, method, args)
    finally:
        with Socket.lock:
            Socket.calls_inside -= 1
    return result


def _inside(Socket: Any, Irp: IRP, method: str, args: tuple[Any, ...]) -> int:
    """The socket's method, under its lock (closed meanwhile by another thread: refused)."""
    if Socket.closed:
        return _completed(Irp, NTSTATUS.STATUS_INVALID_HANDLE)
    result: int = getattr(Socket, method)(*args)
    return result


def _no_irp_call(name: str, fn: Callable[[], int], failure: int) -> int:
    """A call without an IRP (WskControlSocket with Irp NULL, WskRelease): an exception the
    provider raises becomes ``failure``, reported; a BugCheck is raised on."""
    try:
        return fn()
    except BugCheck:
        raise
    except Exception as exc:
        report_exception(exc, f"in {name} (it returned status 0x{failure:08X})", None)
        return failure
