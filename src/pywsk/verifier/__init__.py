"""The verifier: Driver-Verifier-style checks of WSK client code, leak reports, faults.

What it does: when enabled (``pywsk.verifier.enable()``, or ``PYWSK_VERIFIER=1`` in the
environment before the provider loads), it observes every IRP, MDL, socket and captured
NPI through :mod:`pywsk.nt.hooks`, remembers where each was created (a short traceback),
and checks the rules in :mod:`pywsk.verifier.checks`.  A violation surfaces as

* ``mode="raise"`` (the default): a :class:`~pywsk.nt.bugcheck.BugCheck` with the check ID
  and the object's creation traceback, raised in the thread that broke the rule, before
  anything changes - except for *soft* checks (a documented NTSTATUS already answers the
  call: the call still gets it), which are recorded and logged;
* ``mode="collect"``: a :class:`Violation` appended to :func:`violations`, nothing raised.

It also reports leaks - IRPs, MDLs (and MDLs left locked), pool blocks, sockets, captured
NPIs - when a client deregisters and at interpreter exit, including IRPs, MDLs and pool
blocks that were garbage-collected without being freed (each of those also emits a
``ResourceWarning`` at collection).  "Created at" is the client's own code: frames of
pywsk and of the standard library are left out, and a socket the provider thread made is
dated from the client's call that asked for it.  Every message names the Microsoft rule
it enforces and the page that states it.  :class:`~pywsk.verifier.faults.FaultScheduler`
(``enable(faults=...)``) injects seeded faults; the verifier tells it each IRP's socket and
function (the ``socket-call`` and ``irp-submitted`` events), which its ``reorder`` and
``cancel_race`` decisions need.

What it refuses: nothing; it never changes what a correct client sees.

What always holds: off by default and near-free when off (one attribute test per event);
the provider and every other socket stay intact after a violation; events may arrive on
any thread, and the verifier's records change only under its lock.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import logging
import os
import sys
import sysconfig
import threading
import time
import traceback
import warnings
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

from .._log import log_operation
from ..nt import hooks
from ..nt import irp as _irp
from ..nt.bugcheck import BugCheck, BugCheckCode
from ..nt.irp import IrpState
from ..nt.irql import DISPATCH_LEVEL, KeGetCurrentIrql
from ..nt.mdl import MDL_PAGES_LOCKED
from ..nt.status import NTSTATUS, status_name
from .checks import CHECKS, Check
from .faults import FaultScheduler

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ..nt.irp import IRP
    from ..nt.mdl import MDL

__all__ = [
    "CHECKS",
    "Check",
    "FaultScheduler",
    "Verifier",
    "Violation",
    "disable",
    "enable",
    "enabled_for",
    "enabled",
    "leak_report",
    "violations",
]

log = logging.getLogger(__name__)
Mode = Literal["raise", "collect"]

#: The default for :attr:`Verifier.dispatch_time_limit` (DPC-001), in seconds.
DISPATCH_TIME_LIMIT: Final = 0.5


@dataclass(frozen=True)
class Violation:
    """One broken rule: the check, a detail line, and where the object involved was made."""

    check: Check
    detail: str
    created_at: str = ""
    parameters: tuple[int, ...] = ()

    def __str__(self) -> str:
        text = f"[{self.check.id}] {self.check.message}"
        if self.detail:
            text += f": {self.detail}"
        text += f"\n  Microsoft: {self.check.rule} ({self.check.page})"
        if self.created_at:
            text += f"\n  created at:\n{self.created_at}"
        return text


# Frames that are not the client's: pywsk's own and the standard library's (a thread's
# start-up, for instance).
_NOT_CLIENT: Final = tuple(
    {
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep,
        sysconfig.get_paths()["stdlib"] + os.sep,
        sysconfig.get_paths()["platstdlib"] + os.sep,
    }
)


def _where(skip: int = 3) -> tuple[str, bool]:
    """The innermost client frames of the current stack, and whether there were any (a
    call made on the provider thread has none: then the stack's own last frames)."""
    frames = traceback.extract_stack()[:-skip]
    mine = [
        f
        for f in frames
        if not f.filename.startswith("<frozen ")
        and not os.path.abspath(f.filename).startswith(_NOT_CLIENT)
    ]
    return "".join(traceback.format_list((mine or frames)[-4:])).rstrip(), bool(mine)


@dataclass
class _Life:
    kind: str
    created_at: str
    from_client: bool = True
    detail: str = ""
    closed_at: str = ""


# Creation sites worth remembering per IRP: the calls that make a socket.
_MAKES_SOCKET: Final = frozenset({"WskSocket", "WskSocketConnect", "WskAccept"})
# Leak entries kept for objects collected unfreed (more are counted, not kept).
_COLLECTED_KEPT: Final = 1000
_LEAK_CHECKS: Final = {"IRP": "IRP-006", "MDL": "MDL-001", "pool block": "POOL-001"}


@dataclass
class Verifier:
    """The observer installed in :mod:`pywsk.nt.hooks` while the verifier is on.

    Events arrive on any thread (calls act on their callers' threads); every shared
    record is read and written under one lock.  Garbage-collection callbacks take no lock:
    they queue what they saw, and the next locked operation records it.
    """

    mode: Mode = "raise"
    resource_warnings: bool = True
    #: Seconds a completion routine or event callback may run at DISPATCH_LEVEL before
    #: DPC-001 reports it (a stall detector: Python code runs 100 to 1000 times slower than
    #: the 100 microseconds Microsoft's guideline gives C, and a loaded machine adds
    #: scheduling delays).
    dispatch_time_limit: float = DISPATCH_TIME_LIMIT
    found: list[Violation] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._live: dict[int, tuple[weakref.ref[Any], _Life]] = {}
        # Sockets after WskCloseSocket, so a use after close can say where it was made.
        self._ended: dict[int, tuple[weakref.ref[Any], _Life]] = {}
        self._captures: dict[int, list[str]] = {}
        # id(IRP) -> where a socket-making call was started with it (the client's frame).
        self._submitted: dict[int, tuple[weakref.ref[Any], str]] = {}
        self._collected: list[Violation] = []
        # id(IRP) -> when its completion began (for DPC-001).
        self._completing: dict[int, float] = {}
        self._collected_more = 0
        # (key, ref, life) of objects collected without being freed; drained under the lock.
        self._dropped: collections.deque[tuple[int, weakref.ref[Any], _Life]] = collections.deque()

    # --- reporting ---------------------------------------------------------------------
    def violate(
        self,
        check_id: str,
        detail: str = "",
        obj: object = None,
        *,
        sock: object = None,
        status: int | None = None,
    ) -> None:
        """Record a broken rule; ``sock`` and ``status`` (the socket involved, the NTSTATUS
        the call got) go into the DEBUG record of the report."""
        check = CHECKS[check_id]
        life = self._life(obj, ended=True)
        violation = Violation(check, detail, life.created_at if life else "", (id(obj),))
        with self._lock:
            self.found.append(violation)
        message = f"{check.message}: {detail}" if detail else check.message
        log_operation(log, f"verifier {check.id}", sock, status, message)
        if self.mode == "raise" and check.fatal:
            raise BugCheck(BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION, str(violation), id(obj))
        log.warning("%s", violation)

    def _life(self, obj: object, ended: bool = False) -> _Life | None:
        if obj is None:
            return None
        with self._lock:
            entry = self._live.get(id(obj))
            if (entry is None or entry[0]() is not obj) and ended:
                entry = self._ended.get(id(obj))
        return entry[1] if entry is not None and entry[0]() is obj else None

    # --- lifetimes -------------------------------------------------------------------------
    def _born(self, obj: Any, kind: str, detail: str = "") -> None:
        where, from_client = _where()
        life = _Life(kind, where, from_client, detail)
        key = id(obj)
        dropped = self._dropped

        def collected(ref: weakref.ref[Any]) -> None:
            # Runs inside the garbage collector, on any thread, perhaps while this thread
            # holds the lock: queue only (deque.append is atomic).
            dropped.append((key, ref, life))
            if self.resource_warnings:
                warnings.warn(
                    f"pywsk verifier: {kind} collected without being freed; created at:\n"
                    f"{life.created_at}",
                    ResourceWarning,
                    stacklevel=1,
                )

        with self._lock:
            self._drain()
            self._live[key] = (weakref.ref(obj, collected), life)

    def _drain(self) -> None:
        """Under the lock: record the objects collected without being freed."""
        while self._dropped:
            key, ref, life = self._dropped.popleft()
            entry = self._live.get(key)
            if entry is None or entry[0] is not ref:
                continue  # freed (or replaced) before it was collected
            del self._live[key]
            check = _LEAK_CHECKS.get(life.kind)
            if check is None:
                continue
            if len(self._collected) < _COLLECTED_KEPT:
                detail = f"{life.detail + '; ' if life.detail else ''}collected without being freed"
                self._collected.append(Violation(CHECKS[check], detail, life.created_at))
            else:
                self._collected_more += 1

    def _died(self, obj: Any) -> None:
        with self._lock:
            self._drain()
            entry = self._live.pop(id(obj), None)
            if entry is not None and entry[1].kind == "socket":
                self._ended[id(obj)] = entry

    # --- pywsk.nt.hooks.Observer -----------------------------------------------------------
    def event(self, name: str, obj: object, /, **details: Any) -> None:
        handler = getattr(self, "_on_" + name.replace("-", "_"), None)
        if handler is not None:
            handler(obj, **details)

    def _on_irp_allocated(self, irp: IRP) -> None:
        self._born(irp, "IRP")

    def _on_irp_submitted(self, irp: IRP, function: str, state: IrpState) -> None:
        if state is IrpState.PENDING:
            self.violate("IRP-002", f"{function} got an IRP still pending", irp)
        elif state is IrpState.COMPLETED and self._life(irp) is not None:
            self.violate("IRP-005", f"{function} got an IRP completed earlier", irp)
        if function in _MAKES_SOCKET:
            where = self._client_site(irp)
            if where:
                with self._lock:
                    self._submitted[id(irp)] = (weakref.ref(irp), where)
        plan = hooks.faults
        if isinstance(plan, FaultScheduler):
            plan.note_submitted(irp, function)

    def _on_null_irp(self, _obj: object, function: str) -> None:
        self.violate("IRP-007", f"{function} was called with Irp NULL")

    def _client_site(self, irp: object) -> str:
        """Where the client made the call that uses ``irp``: this stack's client frames,
        or (for a call run on the provider thread) where the client allocated the IRP."""
        where, from_client = _where(4)
        if from_client:
            return where
        life = self._life(irp)
        return life.created_at if life is not None and life.from_client else ""

    def _on_socket_call(self, sock: object, function: str, irp: IRP) -> None:
        if function == "WskCloseSocket":
            life = self._life(sock)
            if life is not None:
                life.closed_at = self._client_site(irp)
        plan = hooks.faults
        if isinstance(plan, FaultScheduler):
            plan.note_socket_call(sock, function, irp)

    def _on_irp_completing(self, irp: IRP, state: IrpState) -> None:
        if state is not IrpState.PENDING:
            self.violate("IRP-001", f"the IRP is {state.value}", irp)
        self._completing[id(irp)] = time.monotonic()
        with self._lock:
            submitted = self._submitted.pop(id(irp), None)
        if submitted is None or submitted[0]() is not irp:
            return
        # A socket made on the provider thread: it was made where the client asked for it.
        life = self._life(irp.IoStatus.Information)
        if life is not None and life.kind == "socket" and not life.from_client:
            life.created_at, life.from_client = submitted[1], True

    def _on_irp_routine_returned(self, irp: IRP, result: object, routine: Any) -> None:
        began = self._completing.pop(id(irp), None)
        if began is not None:
            self._check_dispatch_time(time.monotonic() - began, "completion routine", routine, irp)
        if result != NTSTATUS.STATUS_MORE_PROCESSING_REQUIRED and self._life(irp) is not None:
            self._died(irp)  # the I/O manager released it
            name = getattr(routine, "__qualname__", repr(routine))
            if isinstance(result, int) and not isinstance(result, bool):
                detail = f"{name} returned {status_name(result)}"
            else:
                detail = (
                    f"{name} returned {result!r}, not an NTSTATUS (a missing return statement?)"
                )
            self.violate("IRP-004", detail, irp)

    def _on_irp_freeing(self, irp: IRP, state: IrpState) -> None:
        if state is IrpState.PENDING:
            self.violate("IRP-003", "IoFreeIrp while the provider still holds it", irp)

    def _on_irp_freed(self, irp: IRP) -> None:
        self._completing.pop(id(irp), None)
        self._died(irp)

    def _on_callback_returned(self, sock: object, routine: Any, seconds: float) -> None:
        self._check_dispatch_time(seconds, "event callback", routine, sock, sock=sock)

    def _on_dpc_returned(self, dpc: object, routine: Any, seconds: float) -> None:
        self._check_dispatch_time(seconds, "DPC routine", routine, dpc)

    def _check_dispatch_time(
        self, seconds: float, what: str, routine: Any, obj: object, sock: object = None
    ) -> None:
        """DPC-001: ``routine`` ran ``seconds`` (it ran at DISPATCH_LEVEL if it runs now)."""
        if seconds <= self.dispatch_time_limit or KeGetCurrentIrql() < DISPATCH_LEVEL:
            return
        name = getattr(routine, "__qualname__", repr(routine))
        self.violate(
            "DPC-001",
            f"{what} {name} ran {seconds * 1000:.0f} ms at DISPATCH_LEVEL (limit "
            f"{self.dispatch_time_limit * 1000:.0f} ms): every other socket waited",
            obj,
            sock=sock,
        )

    def _on_mdl_allocated(self, mdl: MDL) -> None:
        self._born(mdl, "MDL", f"{mdl.ByteCount} bytes")

    def _on_mdl_freed(self, mdl: MDL) -> None:
        self._died(mdl)

    def _on_mdl_not_locked(self, mdl: MDL) -> None:
        self.violate("MDL-003", repr(mdl), mdl)

    def _on_pool_allocated(self, block: object, tag: int, size: int) -> None:
        self._born(block, "pool block", f"{size} bytes, tag {tag.to_bytes(4, 'little')!r}")

    def _on_pool_freed(self, block: object) -> None:
        self._died(block)

    def _on_socket_opened(self, sock: object, client: object) -> None:
        self._born(sock, "socket")

    def _on_socket_closed(self, sock: object, client: object) -> None:
        self._died(sock)

    def _on_npi_captured(self, registration: object) -> None:
        where = _where()[0]
        with self._lock:
            self._captures.setdefault(id(registration), []).append(where)

    def _on_npi_released(self, registration: object) -> None:
        with self._lock:
            stack = self._captures.get(id(registration))
            if stack:
                stack.pop()

    def _on_deregistering(self, registration: object, client: Any, captures: int) -> None:
        sockets = len(getattr(client, "sockets", ())) if client is not None else 0
        if captures or sockets:
            self.violate(
                "WSK-006",
                f"{captures} capture(s) not released, {sockets} socket(s) open",
                registration,
            )

    def _on_client_detached(self, client: object) -> None:
        for violation in self.leaks(include_sockets=False):
            log.warning("%s", violation)

    def _on_wsk_call_on_closed_socket(self, sock: object, function: str) -> None:
        if getattr(sock, "closed", True) is False:
            # Open, but without that function: a function of another category's table.
            table = type(getattr(sock, "Dispatch", None)).__name__
            self.violate(
                "WSK-010", f"{function} on {sock!r}, whose table is {table}", sock, sock=sock
            )
            return
        life = self._life(sock, ended=True)
        closed = (
            f"; WskCloseSocket was called at:\n{life.closed_at}" if life and life.closed_at else ""
        )
        self.violate("WSK-001", f"{function} on {sock!r}{closed}", sock, sock=sock)

    def _on_close_while_call_inside(self, sock: object, calls: int) -> None:
        self.violate("WSK-002", f"{calls} call(s) on it still inside the provider", sock, sock=sock)

    def _on_abortive_with_buffer(self, sock: object) -> None:
        self.violate(
            "WSK-003",
            "STATUS_INVALID_PARAMETER was returned",
            sock,
            sock=sock,
            status=NTSTATUS.STATUS_INVALID_PARAMETER,
        )

    def _on_wsk_buf_out_of_range(self, sock: object, buffer: Any) -> None:
        self.violate(
            "WSK-004", f"Offset={buffer.Offset} Length={buffer.Length}", buffer.Mdl, sock=sock
        )

    def _on_close_with_retained_indications(self, sock: object, count: int) -> None:
        self.violate("WSK-005", f"{count} list(s) retained", sock, sock=sock)

    def _on_wsk_call_in_completion_routine(self, irp: IRP, function: str) -> None:
        self.violate("WSK-007", function, irp)

    # --- leaks ------------------------------------------------------------------------------
    def leaks(self, include_sockets: bool = True) -> list[Violation]:
        """Every leak: IRPs, MDLs and pool blocks not freed (live, or collected without
        being freed), MDLs left locked, sockets open, captures not released."""
        out: list[Violation] = []
        with self._lock:
            self._drain()
            entries = [(ref(), life) for ref, life in self._live.values()]
            captures = [stack for stacks in self._captures.values() for stack in stacks]
            collected = list(self._collected)
            more = self._collected_more
        for obj, life in entries:
            if obj is None:
                continue
            if life.kind == "IRP" and obj.state is not IrpState.FREED:
                out.append(Violation(CHECKS["IRP-006"], repr(obj), life.created_at))
            elif life.kind == "MDL":
                check = "MDL-002" if obj.MdlFlags & MDL_PAGES_LOCKED else "MDL-001"
                out.append(Violation(CHECKS[check], f"{obj.ByteCount} bytes", life.created_at))
            elif life.kind == "pool block":
                out.append(Violation(CHECKS["POOL-001"], life.detail, life.created_at))
            elif life.kind == "socket" and include_sockets:
                out.append(Violation(CHECKS["WSK-008"], repr(obj), life.created_at))
        out.extend(Violation(CHECKS["WSK-009"], "", where) for where in captures)
        out.extend(collected)
        if more:
            out.append(Violation(CHECKS["IRP-006"], f"and {more} more object(s) collected unfreed"))
        return out


_verifier: Verifier | None = None
_previous_allocation_hook: Any = None


def enable(
    mode: Mode = "raise",
    *,
    faults: FaultScheduler | None = None,
    resource_warnings: bool = True,
    dispatch_time_limit: float | None = None,
) -> Verifier:
    """Turn the verifier on (again): checks, leak tracking, and optional seeded faults.
    ``dispatch_time_limit``: seconds for DPC-001 (default :data:`DISPATCH_TIME_LIMIT`)."""
    global _verifier, _previous_allocation_hook
    disable()
    _verifier = Verifier(mode=mode, resource_warnings=resource_warnings)
    if dispatch_time_limit is not None:
        _verifier.dispatch_time_limit = dispatch_time_limit
    hooks.set_observer(_verifier)
    hooks.set_faults(faults)
    _previous_allocation_hook = _irp._allocation_hook
    if faults is not None:
        _irp._allocation_hook = faults.allow_allocation
    return _verifier


def disable() -> None:
    """Turn the verifier off; what it found stays readable through the returned object."""
    global _verifier
    if _verifier is None:
        return
    hooks.set_observer(None)
    hooks.set_faults(None)
    _irp._allocation_hook = _previous_allocation_hook
    _verifier = None


@contextlib.contextmanager
def enabled_for(
    mode: Mode = "raise",
    *,
    faults: FaultScheduler | None = None,
    resource_warnings: bool = False,
) -> Iterator[Verifier]:
    """A fresh verifier for the ``with`` block (``enable``); afterwards the one that ran
    before comes back in its mode (without its faults), or the verifier is off."""
    previous = enabled()
    running = enable(mode, faults=faults, resource_warnings=resource_warnings)
    try:
        yield running
    finally:
        disable()
        if previous is not None:
            enable(previous.mode, resource_warnings=previous.resource_warnings)


def enabled() -> Verifier | None:
    """The running verifier, or None."""
    return _verifier


def violations() -> list[Violation]:
    """What the running verifier found so far (empty when off)."""
    if _verifier is None:
        return []
    with _verifier._lock:
        return list(_verifier.found)


def leak_report() -> list[Violation]:
    """Leaks now: objects still live, and objects collected without being freed (empty
    when off)."""
    return _verifier.leaks() if _verifier is not None else []


def _report_at_exit() -> None:
    if _verifier is None:
        return
    leaks = _verifier.leaks()
    if leaks:
        print(f"pywsk verifier: {len(leaks)} leak(s) at exit:", file=sys.stderr)
        for violation in leaks:
            print(f"  {violation}", file=sys.stderr)


atexit.register(_report_at_exit)

if os.environ.get("PYWSK_VERIFIER", "") not in ("", "0"):
    enable(mode="collect" if os.environ["PYWSK_VERIFIER"] == "collect" else "raise")
