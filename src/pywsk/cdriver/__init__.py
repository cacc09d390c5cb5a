"""Run WSK client drivers written in C, unmodified, against pywsk.

``pywsk driver build SRC.c... -o DRIVER.so`` compiles a driver with the shipped headers
(``wdm.h``, ``ntddk.h``, ``wsk.h``: the WDK's names, source-compatible) and pywsk's C
runtime; ``pywsk driver run DRIVER.so`` runs it; :func:`load` does the same from Python::

    with pywsk.cdriver.load("echo.so") as driver:
        assert driver.entry() == NTSTATUS.STATUS_SUCCESS
        driver.call("RunClient", port)
    # leaving the block calls DriverUnload

Every C call goes to pywsk's real function on the matching IRP, MDL, KEVENT or socket,
with pywsk's verifier and fault scheduler; reports name the C file and line.
docs/c-drivers.md has the details and every difference from the WDK.
"""

from .build import BuildError, build_driver, cflags, include_dir
from .driver import Driver, DriverStopped, load
from .runtime import DriverBugCheck, Leak, Stop

__all__ = [
    "BuildError",
    "Driver",
    "DriverBugCheck",
    "DriverStopped",
    "Leak",
    "Stop",
    "build_driver",
    "cflags",
    "include_dir",
    "load",
]
