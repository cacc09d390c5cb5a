"""Loading a C driver, running its DriverEntry and DriverUnload, calling its functions.

What it does: :func:`load` imports a driver built by :func:`~pywsk.cdriver.build.build_driver`
and returns a :class:`Driver`.  :meth:`Driver.entry` calls ``DriverEntry`` with a
``DRIVER_OBJECT`` and a registry path; :meth:`Driver.call` calls any exported function
(integer or pointer arguments, at most eight; ``str``/``bytes`` arguments are passed as C
strings); :meth:`Driver.unload` calls the ``DriverUnload`` routine ``DriverEntry`` set,
waits (bounded) for the driver's system threads to end and for its completion routines
and callbacks still running elsewhere to return, and returns the leaks
(:class:`~pywsk.cdriver.runtime.Leak`).  Calls run on the calling thread at PASSIVE_LEVEL.

What it refuses: a function the driver does not export (``AttributeError``), a call after
the driver stopped (:class:`DriverStopped`), and unloading twice.

What always holds: once a call has stopped the driver, every later call raises
:class:`DriverStopped` with the same :class:`~pywsk.cdriver.runtime.Stop`.
"""

from __future__ import annotations

import ctypes
import importlib.machinery
import importlib.util
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Final, Literal

from ..nt.status import NTSTATUS
from .build import module_name
from .runtime import Leak, Stop
from .wsk import WskRuntime

__all__ = ["Driver", "DriverStopped", "load"]

Result = Literal["NTSTATUS", "int", "BOOLEAN", "pointer", "void"]
#: How long unload waits for the driver's system threads to end.
THREAD_WAIT: Final = 10.0


class DriverStopped(Exception):
    """The driver was stopped (a bug check, a verifier stop, an unhandled exception)."""

    def __init__(self, stop: Stop) -> None:
        super().__init__(str(stop))
        self.stop = stop


class Driver:
    """A loaded C driver.  Use :func:`load`."""

    def __init__(self, path: str | os.PathLike[str], name: str | None = None) -> None:
        self.path = Path(path).resolve()
        module_id = module_name(self.path)
        self.name = name or module_id
        # Each load is a fresh instance (its own statics): the dynamic loader maps a file
        # once, so load a private copy; the copy can go as soon as it is mapped.
        with tempfile.TemporaryDirectory(prefix="pywsk-driver-") as private:
            copy = Path(private) / self.path.name
            shutil.copyfile(self.path, copy)
            loader = importlib.machinery.ExtensionFileLoader(module_id, str(copy))
            spec = importlib.util.spec_from_file_location(module_id, str(copy), loader=loader)
            if spec is None:  # pragma: no cover - spec_from_file_location with a loader
                raise ImportError(f"cannot load {self.path}")
            module = importlib.util.module_from_spec(spec)
            loader.exec_module(module)
            self._symbols = ctypes.CDLL(str(copy))
        self.runtime = WskRuntime(module, self.name)
        self.runtime.symbolize_with(self.path)
        self.ffi: Any = module.ffi
        self._keep: list[Any] = []
        self.driver_object: Any = self.ffi.new("DRIVER_OBJECT *")
        self.driver_object.DriverName = self._unicode(f"\\Driver\\{self.name}")
        self.entered = False
        self.unloaded = False
        self._lock = threading.Lock()

    def _unicode(self, text: str) -> Any:
        data = text.encode("utf-16-le")
        buffer = self.ffi.new("uint16_t[]", len(data) // 2 + 1)
        self.ffi.memmove(buffer, data, len(data))
        self._keep.append(buffer)
        string = self.ffi.new("UNICODE_STRING *")
        string.Length, string.MaximumLength, string.Buffer = len(data), len(data) + 2, buffer
        self._keep.append(string)
        return string[0]

    @property
    def stop(self) -> Stop | None:
        """Why the driver stopped, or None."""
        return self.runtime.stop

    @property
    def debug_output(self) -> list[str]:
        """Every DbgPrint/KdPrint line so far."""
        return list(self.runtime.debug_output)

    def _check(self) -> None:
        stop = self.runtime.stop
        if stop is not None:
            raise DriverStopped(stop)

    def address_of(self, symbol: str) -> int:
        """The address of an exported function or variable (``AttributeError`` if none)."""
        return ctypes.cast(getattr(self._symbols, symbol), ctypes.c_void_p).value or 0

    def call(self, symbol: str, *args: Any, result: Result = "NTSTATUS") -> int:
        """Call the exported function ``symbol``; NTSTATUS results come back unsigned, as
        pywsk spells them (compare with ``NTSTATUS.STATUS_SUCCESS``)."""
        self._check()
        values: list[Any] = []
        for arg in args:
            if isinstance(arg, str | bytes):
                data = arg.encode() if isinstance(arg, str) else arg
                buffer = self.ffi.new("char[]", data)
                self._keep.append(buffer)
                values.append(buffer)
            elif isinstance(arg, int):
                values.append(arg & 0xFFFFFFFFFFFFFFFF)
            else:  # a cdata pointer
                values.append(arg)
        ran, value = self.runtime.invoke(self.ffi.cast("void *", self.address_of(symbol)), *values)
        if not ran:
            self._check()
            raise RuntimeError(f"driver {self.name} did not run {symbol}")  # pragma: no cover
        if result == "NTSTATUS":
            return NTSTATUS.of(value & 0xFFFFFFFF)
        if result == "BOOLEAN":
            return int(value & 0xFF != 0)
        if result == "int":
            value &= 0xFFFFFFFF
            return value - (1 << 32) if value & 0x80000000 else value
        return 0 if result == "void" else value

    def entry(self, registry_path: str | None = None) -> int:
        """Call ``DriverEntry(DriverObject, RegistryPath)``; its NTSTATUS (unsigned)."""
        path = registry_path or (
            f"\\Registry\\Machine\\System\\CurrentControlSet\\Services\\{self.name}"
        )
        string = self.ffi.new("UNICODE_STRING *", self._unicode(path))
        self._keep.append(string)
        self.entered = True
        return self.call("DriverEntry", self.driver_object, string)

    def unload(self) -> list[Leak]:
        """Call ``DriverUnload`` (if DriverEntry set one and the driver is not stopped),
        wait for its system threads, and return what it leaked."""
        with self._lock:
            if self.unloaded:
                raise RuntimeError(f"driver {self.name} was unloaded already")
            self.unloaded = True
        routine = self.driver_object.DriverUnload
        if routine != self.ffi.NULL and self.runtime.stop is None:
            self.runtime.invoke(routine, self.driver_object)
        # The driver's system threads end, and completion routines or callbacks still
        # running on other threads (one may be past the KeSetEvent its driver waited for,
        # before its IoFreeIrp) return, before the leak report.
        with self.runtime.threads_changed:
            self.runtime.threads_changed.wait_for(
                lambda: self.runtime.threads == 0 and self.runtime.active == 0, THREAD_WAIT
            )
        return self.runtime.leaks()

    def __enter__(self) -> Driver:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.unloaded:
            self.unload()


def load(path: str | os.PathLike[str], name: str | None = None) -> Driver:
    """Load the driver at ``path`` (built by ``pywsk driver build``)."""
    return Driver(path, name)
