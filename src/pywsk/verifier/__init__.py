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

It also reports leaks - IRPs, MDLs (and MDLs left locked), sockets, captured NPIs - when
a client deregisters and at interpreter exit, and emits a ``ResourceWarning`` when an IRP
or MDL is garbage-collected without being freed.  :class:`~pywsk.verifier.faults.FaultScheduler`
(``enable(faults=...)``) injects seeded faults; the verifier tells it each IRP's socket and
function (the ``socket-call`` and ``irp-submitted`` events), which its ``reorder`` and
``cancel_race`` decisions need.

What it refuses: nothing; it never changes what a correct client sees.

What always holds: off by default and near-free when off (one attribute test per event);
the provider and every other socket stay intact after a violation.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
import threading
import traceback
import warnings
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from .._log import log_operation
from ..nt import hooks
from ..nt import irp as _irp
from ..nt.bugcheck import BugCheck, BugCheckCode
from ..nt.irp import IRP, IrpState
from ..nt.mdl import MDL, MDL_PAGES_LOCKED
from ..nt.status import NTSTATUS
from .checks import CHECKS, Check
from .faults import FaultScheduler

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
        if self.created_at:
            text += f"\n  created at:\n{self.created_at}"
        return text


def _where(skip: int = 3) -> str:
    frames = traceback.extract_stack()[:-skip]
    # Keep the client's frames: drop pywsk's own.
    mine = os.path.dirname(os.path.dirname(__file__))
    frames = [f for f in frames if not f.filename.startswith(mine)] or frames
    return "".join(traceback.format_list(frames[-4:])).rstrip()


@dataclass
class _Life:
    kind: str
    created_at: str
    detail: str = ""


@dataclass
class Verifier:
    """The observer installed in :mod:`pywsk.nt.hooks` while the verifier is on."""

    mode: Mode = "raise"
    resource_warnings: bool = True
    found: list[Violation] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._live: dict[int, tuple[weakref.ref[Any], _Life]] = {}
        self._captures: dict[int, list[str]] = {}

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
        life = self._life(obj)
        violation = Violation(check, detail, life.created_at if life else "", (id(obj),))
        with self._lock:
            self.found.append(violation)
        message = f"{check.message}: {detail}" if detail else check.message
        log_operation(log, f"verifier {check.id}", sock, status, message)
        if self.mode == "raise" and check.fatal:
            raise BugCheck(BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION, str(violation), id(obj))
        log.warning("%s", violation)

    def _life(self, obj: object) -> _Life | None:
        entry = self._live.get(id(obj)) if obj is not None else None
        return entry[1] if entry is not None and entry[0]() is obj else None

    # --- lifetimes -------------------------------------------------------------------------
    def _born(self, obj: Any, kind: str) -> None:
        life = _Life(kind, _where())
        key = id(obj)

        def collected(_ref: weakref.ref[Any]) -> None:
            with self._lock:
                entry = self._live.get(key)
                if entry is None or entry[0] is not _ref:
                    return
                del self._live[key]
            if self.resource_warnings:
                warnings.warn(
                    f"pywsk verifier: {kind} collected without being freed; created at:\n"
                    f"{life.created_at}",
                    ResourceWarning,
                    stacklevel=1,
                )

        with self._lock:
            self._live[key] = (weakref.ref(obj, collected), life)

    def _died(self, obj: Any) -> None:
        with self._lock:
            self._live.pop(id(obj), None)

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
        plan = hooks.faults
        if isinstance(plan, FaultScheduler):
            plan.note_submitted(irp, function)

    def _on_socket_call(self, sock: object, function: str, irp: IRP) -> None:
        plan = hooks.faults
        if isinstance(plan, FaultScheduler):
            plan.note_socket_call(sock, function, irp)

    def _on_irp_completing(self, irp: IRP, state: IrpState) -> None:
        if state is not IrpState.PENDING:
            self.violate("IRP-001", f"the IRP is {state.value}", irp)

    def _on_irp_routine_returned(self, irp: IRP, result: int, routine: Any) -> None:
        if result != NTSTATUS.STATUS_MORE_PROCESSING_REQUIRED and self._life(irp) is not None:
            self._died(irp)  # the I/O manager released it
            name = getattr(routine, "__qualname__", repr(routine))
            self.violate("IRP-004", f"{name} returned 0x{result & 0xFFFFFFFF:08X}", irp)

    def _on_irp_freeing(self, irp: IRP, state: IrpState) -> None:
        if state is IrpState.PENDING:
            self.violate("IRP-003", "IoFreeIrp while the provider still holds it", irp)

    def _on_irp_freed(self, irp: IRP) -> None:
        self._died(irp)

    def _on_mdl_allocated(self, mdl: MDL) -> None:
        self._born(mdl, "MDL")

    def _on_mdl_freed(self, mdl: MDL) -> None:
        self._died(mdl)

    def _on_socket_opened(self, sock: object, client: object) -> None:
        self._born(sock, "socket")

    def _on_socket_closed(self, sock: object, client: object) -> None:
        self._died(sock)

    def _on_npi_captured(self, registration: object) -> None:
        with self._lock:
            self._captures.setdefault(id(registration), []).append(_where())

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
        self.violate("WSK-001", f"{function} on {sock!r}", sock, sock=sock)

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
        """Every object still live: IRPs and MDLs not freed, MDLs left locked, sockets open."""
        out: list[Violation] = []
        with self._lock:
            entries = [(ref(), life) for ref, life in self._live.values()]
            captures = [stack for stacks in self._captures.values() for stack in stacks]
        for obj, life in entries:
            if obj is None:
                continue
            if life.kind == "IRP" and obj.state is not IrpState.FREED:
                out.append(Violation(CHECKS["IRP-006"], repr(obj), life.created_at))
            elif life.kind == "MDL":
                check = "MDL-002" if obj.MdlFlags & MDL_PAGES_LOCKED else "MDL-001"
                out.append(Violation(CHECKS[check], f"{obj.ByteCount} bytes", life.created_at))
            elif life.kind == "socket" and include_sockets:
                out.append(Violation(CHECKS["WSK-008"], repr(obj), life.created_at))
        out.extend(Violation(CHECKS["WSK-009"], "", where) for where in captures)
        return out


_verifier: Verifier | None = None
_previous_allocation_hook: Any = None


def enable(
    mode: Mode = "raise",
    *,
    faults: FaultScheduler | None = None,
    resource_warnings: bool = True,
) -> Verifier:
    """Turn the verifier on (again): checks, leak tracking, and optional seeded faults."""
    global _verifier, _previous_allocation_hook
    disable()
    _verifier = Verifier(mode=mode, resource_warnings=resource_warnings)
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
    return list(_verifier.found) if _verifier is not None else []


def leak_report() -> list[Violation]:
    """Objects still live now (empty when off)."""
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
