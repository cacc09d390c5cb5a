"""The Python side of a loaded C driver: pywsk's IRPs, MDLs, pool and events behind C's.

What it does: :class:`Runtime` supplies the ``extern "Python"`` functions of one loaded
driver module (``pyb_*``, declared in ``bridge.h``).  The driver's C structures stay the
driver's; each one's address names the pywsk object that does the work - ``IoFreeIrp`` on a
C ``IRP`` is :func:`pywsk.nt.IoFreeIrp` on the pywsk IRP behind it, with pywsk's checks,
its verifier and its fault scheduler.  When the verifier is on, each call runs inside a
Python frame that carries the C call site (file, line, function), so the verifier's
"created at" and its reports name the driver's source line.  A pywsk completion copies
Status, Information, PendingReturned and Cancel into the C IRP, then calls the C routine
from the IRP's next stack location.

Stops: an exception in a call (a BugCheck, or pywsk refusing an argument) stops the
driver: the runtime records a :class:`Stop` (the exception and the C call site), marks the
C side stopped (it unwinds to where Python entered the driver), and wakes every wait of
the driver.  No driver code runs after that; entries report the stop.  Calls through the
provider's dispatch tables carry no ``__FILE__``: their return address is symbolized
instead (:mod:`pywsk.cdriver.symbols`), when the verifier is on or the call stopped the
driver.

What always holds: freed IRPs, MDLs and sockets are quarantined (their C memory is reused
only after ``QUARANTINE`` later frees), so a use after free reaches the freed pywsk object
and its bug check; freed pool blocks keep their pages with no access (the last
``POOL_QUARANTINE``), so a C touch faults with a report of where the block was allocated
and freed, and a second free or an MDL over it is a bug check; Python objects are found
by the C address, never by a pointer stored in driver-visible memory.
"""

from __future__ import annotations

import bisect
import collections
import logging
import threading
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pywsk.nt as nt

from ..nt import hooks
from ..nt.mdl import StatusException
from ..nt.status import NTSTATUS
from .symbols import Site, Symbolizer

__all__ = ["QUARANTINE", "DriverBugCheck", "Leak", "Runtime", "Stop", "signed32"]

log = logging.getLogger("pywsk.cdriver")

#: Freed C objects kept before their memory goes back to malloc.
QUARANTINE: Final = 4096
#: Freed pool blocks whose pages stay reserved with no access (at most 1024: the C table).
POOL_QUARANTINE: Final = 1000


def signed32(value: int) -> int:
    """An NTSTATUS (pywsk's unsigned spelling) as C's signed 32-bit value."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


#: The bug check of an exception, breakpoint or assertion no handler took.
KMODE_EXCEPTION_NOT_HANDLED: Final = 0x1E


class DriverBugCheck(RuntimeError):
    """The driver stopped itself: KeBugCheckEx, a failed ASSERT, an unhandled exception."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"bug check 0x{code:X}: {message}")
        self.code = code


@dataclass
class Stop:
    """Why the driver stopped: the exception and the C call site it came from."""

    exception: BaseException
    site: str = ""

    def __str__(self) -> str:
        where = f"\n  at {self.site}" if self.site else ""
        return f"{type(self.exception).__name__}: {self.exception}{where}"


def _site_template(fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:  # pragma: no cover
    return fn(*args)


# One line, so that after co_firstlineno is replaced, the call is on the C line.
_TEMPLATE_CODE: Final = compile("def site(fn, args): return fn(*args)", "<site>", "exec").co_consts[
    0
]


class Runtime:
    """The Python side of one loaded driver module (its ``ffi`` and ``lib``)."""

    def __init__(self, module: Any, name: str) -> None:
        self.ffi: Any = module.ffi
        self.lib: Any = module.lib
        self._uintptr = self.ffi.typeof("uintptr_t")
        self.name = name
        self.stop: Stop | None = None
        self.debug_output: list[str] = []
        self.debug_log = logging.getLogger(f"pywsk.driver.{name}")
        self._lock = threading.RLock()
        self._irps: dict[int, nt.IRP] = {}
        self._irp_memory: dict[int, bytearray] = {}  # IoInitializeIrp: stand-in memory
        self._mdls: dict[int, nt.MDL] = {}
        self._events: dict[int, nt.KEVENT] = {}
        self._pool_starts: list[int] = []
        self._pool: dict[int, Any] = {}
        #: Freed pool blocks whose pages are kept with no access: address -> (size, report).
        self._freed_pool: dict[int, tuple[int, str]] = {}
        self._quarantine: collections.deque[tuple[dict[int, Any], int]] = collections.deque()
        self._sites: dict[tuple[int, int, int], Callable[..., Any]] = {}
        self._frames: dict[tuple[str, int, str], Callable[..., Any]] = {}
        self._fixups: dict[int, list[Callable[[], None]]] = {}
        #: (kind, C address) -> the C call site that made the object (for leak reports).
        self.created: dict[tuple[str, int], tuple[Any, ...]] = {}
        self.threads = 0
        #: Calls into the driver running now (entries, completion routines, callbacks).
        self.active = 0
        self.threads_changed = threading.Condition(self._lock)
        #: Return addresses -> C sites (dispatch-table calls); see :meth:`symbolize_with`.
        self.symbols: Symbolizer | None = None
        self._install()

    def symbolize_with(self, image: Path) -> None:
        """Name the sites of dispatch-table calls from ``image``, the driver file on disk."""
        anchor = self.address(self.ffi.addressof(self.lib, "PywskRtInvoke"))
        self.symbols = Symbolizer(image, anchor)

    # --- plumbing ----------------------------------------------------------------------------
    def _install(self) -> None:
        pointer_results = {"pyb_ExAllocatePool"}
        for attribute in dir(self):
            if not attribute.startswith("pyb_"):
                continue
            method = getattr(self, attribute)
            default = self.ffi.NULL if attribute in pointer_results else 0
            sited = attribute not in {
                "pyb_Time",
                "pyb_Irql",
                "pyb_ThreadEvent",
                "pyb_DbgPrint",
                "pyb_WskCall",
            }
            guard = (
                self._guard_by_caller(method)
                if attribute == "pyb_WskCall"
                else self._guard(method, default, sited)
            )
            self.ffi.def_extern(name=attribute, onerror=self._on_error)(guard)

    def _guard(self, method: Callable[..., Any], default: Any, sited: bool) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            try:
                if sited and hooks.observer is not None and args[-3]:
                    return self._at(args[-3], args[-2], args[-1])(method, args)
                return method(*args)
            except BaseException as exc:  # every exception stops the driver (never unwinds C)
                self.halt(exc, self.site_text(*args[-3:]) if sited else "")
                return default

        return call

    def _guard_by_caller(self, method: Callable[..., Any]) -> Callable[..., Any]:
        """The guard of a call whose last argument is its return address into the driver."""

        def call(*args: Any) -> Any:
            try:
                if hooks.observer is not None:
                    site = self.caller_site(args[-1])
                    if site is not None and site.line:
                        return self._frame(site.file, site.line, site.function)(method, args)
                return method(*args)
            except BaseException as exc:  # every exception stops the driver (never unwinds C)
                self.halt(exc, str(self.caller_site(args[-1]) or ""))
                return 0

        return call

    def caller_site(self, address: int) -> Site | None:
        """The C site of a call returning to ``address`` (None when unknown)."""
        return self.symbols.site(address) if self.symbols is not None else None

    def _on_error(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        # Only a value cffi could not convert gets here (_guard catches the rest).
        self.halt(exc if exc is not None else RuntimeError(str(exc_type)), "")

    def _text(self, address: int) -> str:
        text: bytes = self.ffi.string(self.ffi.cast("char *", address))
        return text.decode(errors="replace")

    def _at(self, file: int, line: int, func: int) -> Callable[..., Any]:
        """A function that calls ``fn(*args)`` in a frame at the C call site."""
        key = (file, line, func)
        site = self._sites.get(key)
        if site is None:
            name = self._text(func) if func else "?"
            site = self._sites[key] = self._frame(self._text(file), line, name)
        return site

    def _frame(self, file: str, line: int, name: str) -> Callable[..., Any]:
        """A function that calls ``fn(*args)`` in a frame at ``file``:``line`` in ``name``."""
        key = (file, line, name)
        frame = self._frames.get(key)
        if frame is None:
            code = _TEMPLATE_CODE.replace(
                co_filename=file, co_firstlineno=line, co_name=name, co_qualname=name
            )
            frame = self._frames[key] = types.FunctionType(code, {})
        return frame

    def site_text(self, file: int, line: int, func: int) -> str:
        """``file:line in func`` for a C call site (empty without one)."""
        if not file:
            return ""
        return f"{self._text(file)}:{line} in {self._text(func) if func else '?'}"

    def address(self, pointer: Any) -> int:
        """The address a C pointer holds (an address passed as an integer is itself)."""
        if pointer.__class__ is int:
            return int(pointer)
        return int(self.ffi.cast(self._uintptr, pointer))

    def stopped(self) -> bool:
        """True once the driver was stopped."""
        return self.stop is not None

    def halt(self, exc: BaseException, site: str) -> None:
        """Stop the driver (the first stop wins) and wake every wait it may be in."""
        with self._lock:
            if self.stop is not None:
                return
            self.stop = Stop(exc, site)
            self.lib.PywskRtStopped = 1
            events = list(self._events.values())
        log.error("driver %s stopped: %s", self.name, self.stop)
        for event in events:
            try:
                with nt.running_at(nt.PASSIVE_LEVEL):
                    nt.KeSetEvent(event, nt.IO_NO_INCREMENT, False)
            except Exception:  # an event freed or never initialised: nobody waits on it
                continue

    def invoke(self, function: Any, *args: Any) -> tuple[bool, int]:
        """Call the driver's ``function`` (integer or pointer arguments, at most eight):
        ``(True, result)``, or ``(False, 0)`` when the driver is (or became) stopped."""
        array = self.ffi.new("uintptr_t[8]", [self.address(a) for a in args])
        result = self.ffi.new("intptr_t *")
        entered = nt.KeGetCurrentIrql()
        with self.threads_changed:
            self.active += 1
        try:
            ran = not self.lib.PywskRtInvoke(self.ffi.cast("void *", function), array, result)
        finally:
            with self.threads_changed:
                self.active -= 1
                self.threads_changed.notify_all()
        left = nt.KeGetCurrentIrql()
        if left != entered:
            # An unwind skipped the driver's KeLowerIrql, or the driver returned at another
            # IRQL (a bug of its own): the caller gets its IRQL back either way.
            if left > entered:
                nt.KeLowerIrql(entered)
            else:
                nt.KeRaiseIrql(entered)
            if ran:
                self.halt(
                    nt.BugCheck(
                        nt.BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION,
                        f"the driver returned at {nt.irql_name(left)}; it was called at "
                        f"{nt.irql_name(entered)}",
                    ),
                    "",
                )
                return False, 0
        return (True, int(result[0])) if ran else (False, 0)

    def _quarantine_freed(self, table: dict[int, Any], address: int) -> None:
        with self._lock:
            self._quarantine.append((table, address))
            if len(self._quarantine) <= QUARANTINE:
                return
            old_table, old = self._quarantine.popleft()
            self._released(old_table, old, old_table.pop(old, None))
        self.lib.PywskRtRelease(self.ffi.cast("void *", old))

    def _released(self, table: dict[int, Any], address: int, obj: Any) -> None:
        """A quarantined object's C memory goes back to malloc now (called with the lock
        held): forget whatever else maps to it."""

    def _irp(self, pointer: Any) -> nt.IRP:
        irp = self._irps.get(self.address(pointer))
        if irp is None:
            raise nt.BugCheck(
                nt.BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION,
                f"0x{self.address(pointer):x} is not an IRP from IoAllocateIrp or IoInitializeIrp",
            )
        return irp

    def _mdl(self, pointer: Any) -> nt.MDL:
        mdl = self._mdls.get(self.address(pointer))
        if mdl is None:
            raise nt.BugCheck(
                nt.BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION,
                f"0x{self.address(pointer):x} is not an MDL from IoAllocateMdl",
            )
        return mdl

    def _event(self, pointer: Any) -> nt.KEVENT:
        event = self._events.get(self.address(pointer))
        if event is None:
            raise nt.BugCheck(
                nt.BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION,
                f"0x{self.address(pointer):x} is not a dispatcher object KeInitializeEvent "
                "initialised (or a thread object)",
            )
        return event

    # --- IRPs --------------------------------------------------------------------------------
    def pyb_IoAllocateIrp(self, cirp: Any, stack: int, quota: int, *site: Any) -> int:
        irp = nt.IoAllocateIrp(stack, bool(quota))
        if irp is None:
            return 0
        self._irps[self.address(cirp)] = irp
        self.created["IRP", self.address(cirp)] = site
        return 1

    def pyb_IoInitializeIrp(self, cirp: Any, size: int, stack: int, needed: int, *site: Any) -> int:
        if size < needed:
            raise nt.BugCheck(
                nt.BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION,
                f"IoInitializeIrp: PacketSize {size} is less than IoSizeOfIrp({stack}) = {needed}",
            )
        address = self.address(cirp)
        memory = self._irp_memory.get(address)
        if memory is None:
            memory = self._irp_memory[address] = bytearray(nt.IoSizeOfIrp(stack))
        self._irps[address] = nt.IoInitializeIrp(memory, len(memory), stack)
        self.created["IRP", address] = site
        return 1

    def pyb_IoFreeIrp(self, cirp: Any, *site: Any) -> None:
        nt.IoFreeIrp(self._irp(cirp))
        self._quarantine_freed(self._irps, self.address(cirp))

    def pyb_IoReuseIrp(self, cirp: Any, status: int, *site: Any) -> int:
        nt.IoReuseIrp(self._irp(cirp), status & 0xFFFFFFFF)
        self._fixups.pop(self.address(cirp), None)
        return 1

    def pyb_IoSetCompletionRoutine(
        self, cirp: Any, has_routine: int, success: int, error: int, cancel: int, *site: Any
    ) -> int:
        routine = self._complete if has_routine else None
        nt.IoSetCompletionRoutine(
            self._irp(cirp), routine, self.address(cirp), bool(success), bool(error), bool(cancel)
        )
        return 1

    def pyb_IoCancelIrp(self, cirp: Any, *site: Any) -> int:
        return int(nt.IoCancelIrp(self._irp(cirp)))

    def on_completion(self, cirp: Any, fixup: Callable[[], None]) -> None:
        """Run ``fixup`` (copy a result into C memory) before the C routine of ``cirp``."""
        self._fixups.setdefault(self.address(cirp), []).append(fixup)

    def _complete(self, DeviceObject: Any, Irp: nt.IRP, Context: int) -> int:
        """pywsk's completion routine of every C IRP: mirror the result, run the C routine."""
        try:
            cirp = self.ffi.cast("IRP *", Context)
            for fixup in self._fixups.pop(Context, ()):
                fixup()
            cirp.IoStatus.Status = signed32(Irp.IoStatus.Status)
            cirp.IoStatus.Information = self.information(Irp.IoStatus.Information)
            cirp.PendingReturned = int(Irp.PendingReturned)
            cirp.Cancel = int(Irp.Cancel)
            location = self.lib.PywskRtNextLocation(cirp)
            ran, result = self.invoke(location.CompletionRoutine, 0, cirp, location.Context)
        except Exception as exc:  # a bug of the bridge: stop the driver, never the provider
            self.halt(exc, "")
            ran = False
        if not ran:
            return NTSTATUS.STATUS_MORE_PROCESSING_REQUIRED
        return result & 0xFFFFFFFF

    def information(self, value: Any) -> int:
        """``IoStatus.Information`` for C: a count, or the C object a pywsk object maps to."""
        return value if isinstance(value, int) else 0

    # --- MDLs and pool -------------------------------------------------------------------------
    def buffer_at(self, address: int, length: int) -> Any:
        """The pool block holding ``address`` (so pywsk tracks it), else the raw C memory."""
        with self._lock:
            i = bisect.bisect_right(self._pool_starts, address) - 1
            block = self._pool[self._pool_starts[i]] if i >= 0 else None
            start = self._pool_starts[i] if i >= 0 else 0
        if block is not None and not block.closed and address + length <= start + len(block):
            return memoryview(block)[address - start :]
        self._refuse_freed(address, length)
        return self.ffi.buffer(self.ffi.cast("char *", address), length)

    def _refuse_freed(self, address: int, length: int) -> None:
        """BugCheck when [address, address + length) touches a quarantined freed block."""
        with self._lock:
            freed = [
                report
                for start, (size, report) in self._freed_pool.items()
                if start < address + max(length, 1) and address < start + size
            ]
        if freed:
            raise nt.BugCheck(
                nt.BugCheckCode.DRIVER_CAUGHT_MODIFYING_FREED_POOL,
                f"memory of a freed pool block: {freed[0]}",
            )

    def pyb_IoAllocateMdl(
        self, cmdl: Any, va: Any, length: int, secondary: int, quota: int, cirp: Any, *site: Any
    ) -> int:
        buffer = self.buffer_at(self.address(va), length)
        irp = self._irp(cirp) if cirp != self.ffi.NULL else None
        try:
            mdl = nt.IoAllocateMdl(buffer, length, bool(secondary), bool(quota), irp)
        finally:
            if isinstance(buffer, memoryview):
                buffer.release()
        if mdl is None:
            return 0
        self._mdls[self.address(cmdl)] = mdl
        self.created["MDL", self.address(cmdl)] = site
        return 1

    def pyb_IoFreeMdl(self, cmdl: Any, *site: Any) -> None:
        nt.IoFreeMdl(self._mdl(cmdl))
        self._quarantine_freed(self._mdls, self.address(cmdl))

    def pyb_MdlOp(self, op: int, cmdl: Any, arg: int, *site: Any) -> int:
        mdl = self._mdl(cmdl)
        if op == 0:
            nt.MmBuildMdlForNonPagedPool(mdl)
        elif op == 1:
            try:
                nt.MmProbeAndLockPages(mdl, nt.KernelMode, arg)
            except StatusException as exc:
                return signed32(exc.status)
        elif op == 2:
            nt.MmUnlockPages(mdl)
        elif nt.MmGetSystemAddressForMdlSafe(mdl, arg & 0xFFFF) is None:
            return signed32(NTSTATUS.STATUS_INSUFFICIENT_RESOURCES)
        return 0

    def mdl_chain(self, cmdl: Any) -> nt.MDL | None:
        """The pywsk MDL chain for a C chain (C's ``Next`` links are mirrored into it)."""
        if cmdl == self.ffi.NULL:
            return None
        first = self._mdl(cmdl)
        mdl, c = first, cmdl
        while c.Next != self.ffi.NULL:
            following = self._mdl(c.Next)
            mdl.Next = following
            mdl, c = following, c.Next
        mdl.Next = None
        return first

    def pyb_ExAllocatePool(self, function: int, kind: int, size: int, tag: int, *site: Any) -> Any:
        if function == 2:
            block = nt.ExAllocatePool2(kind, size, tag)
        else:
            block = nt.ExAllocatePoolWithTag(nt.POOL_TYPE(kind), size, tag)
        if block is None:
            return self.ffi.NULL
        pointer = self.ffi.from_buffer(block)
        address = self.address(pointer)
        self.ffi.release(pointer)
        with self._lock:
            bisect.insort(self._pool_starts, address)
            self._pool[address] = block
            self.created["pool block", address] = site
        return self.ffi.cast("void *", address)

    def pyb_ExFreePool(self, pointer: Any, tag: int, has_tag: int, *site: Any) -> None:
        address = self.address(pointer)
        # Out of the table before the memory goes: once it is unmapped, another thread's
        # allocation may get the same address (and its entry must not be the one removed).
        with self._lock:
            block = self._pool.pop(address, None)
            if block is not None:
                self._pool_starts.remove(address)
            freed = self._freed_pool.get(address)
        if block is None:
            if freed is not None:
                raise nt.BugCheck(
                    nt.BugCheckCode.DRIVER_CAUGHT_MODIFYING_FREED_POOL,
                    f"ExFreePool on a pool block that was freed already: {freed[1]}",
                )
            raise nt.BugCheck(
                nt.BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION,
                f"ExFreePool on 0x{address:x}, which is not the start of a pool block",
            )
        size = len(block)
        try:
            if has_tag:
                nt.ExFreePoolWithTag(block, tag)
            else:
                nt.ExFreePool(block)
        except BaseException:  # refused (a wrong tag, an MDL still on it): still allocated
            with self._lock:
                self._pool[address] = block
                bisect.insort(self._pool_starts, address)
            raise
        self._quarantine_pool(address, size, self.site_text(*site) if len(site) == 3 else "")

    def _quarantine_pool(self, address: int, size: int, freed_at: str) -> None:
        """Keep a freed block's pages reserved with no access (C: PywskRtQuarantine), so a
        touch faults with a report and a second free is known; the oldest leaves after
        ``POOL_QUARANTINE`` blocks."""
        made = self.created.pop(("pool block", address), ())
        allocated_at = self.site_text(*made) if len(made) == 3 else ""
        report = f"{size} bytes at 0x{address:x}" + "".join(
            f", {what} at {where}"
            for what, where in (("allocated", allocated_at), ("freed", freed_at))
            if where
        )
        pages = -(-size // nt.PAGE_SIZE) * nt.PAGE_SIZE
        start = self.ffi.cast("void *", address)
        if not self.lib.PywskRtQuarantine(start, pages, report.encode(errors="replace")):
            return  # the range was mapped again at once: nothing to keep
        with self._lock:
            self._freed_pool[address] = (pages, report)
            if len(self._freed_pool) <= POOL_QUARANTINE:
                return
            oldest = next(iter(self._freed_pool))
            del self._freed_pool[oldest]
        self.lib.PywskRtUnquarantine(self.ffi.cast("void *", oldest))

    # --- leaks ---------------------------------------------------------------------------------
    def leaks(self) -> list[Leak]:
        """The driver's objects still alive: IRPs not freed, MDLs not freed (or still
        locked), pool blocks not freed; each with the C call site that made it."""
        found: list[Leak] = []
        with self._lock:
            irps = list(self._irps.items())
            mdls = list(self._mdls.items())
            pool = list(self._pool.items())
        for address, irp in irps:
            if irp.state is not nt.IrpState.FREED and irp._memory is None:
                found.append(self._leak("IRP", address, repr(irp)))
        for address, mdl in mdls:
            if not mdl._freed and ("MDL", address) in self.created:
                found.append(self._leak("MDL", address, repr(mdl)))
        for address, block in pool:
            found.append(self._leak("pool block", address, f"{len(block)} bytes at 0x{address:x}"))
        return found

    def _leak(self, kind: str, address: int, detail: str) -> Leak:
        site = self.created.get((kind, address), ())
        return Leak(kind, detail, self.site_text(*site) if len(site) == 3 else "")


@dataclass(frozen=True)
class Leak:
    """An object the driver did not release: what, and where the driver made it."""

    kind: str
    detail: str
    site: str = ""

    def __str__(self) -> str:
        where = f", allocated at {self.site}" if self.site else ""
        return f"{self.kind} not freed: {self.detail}{where}"
