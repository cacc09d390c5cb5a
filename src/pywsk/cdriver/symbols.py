"""Return addresses in a loaded driver, as C file, line and function.

What it does: :class:`Symbolizer` turns an address in the driver's code (a dispatch-table
member's return address: the instruction after the driver's ``Dispatch->WskSend(...)``)
into ``(file, line, function)``.  ``dladdr`` says which loaded object holds the address and
where it is mapped; ``addr2line`` (binutils, there wherever gcc is) reads the object's
debug information for the call instruction.  Each address is resolved once and cached.

What it refuses: an address outside the driver's own module (None), and an object built
without debug information (``pywsk driver build --release``): then the site is the module,
offset and nearest exported symbol, with no line (``line`` 0).

What always holds: nothing is resolved until someone asks (the verifier's frames or a
stop's report); without ``addr2line`` the answer is the offset form, never a guess.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Final, NamedTuple

__all__ = ["Site", "Symbolizer"]

#: How long one addr2line run may take.
ADDR2LINE_TIMEOUT: Final = 10.0


class Site(NamedTuple):
    """A C call site; ``line`` 0 when only the module and offset are known."""

    file: str
    line: int
    function: str

    def __str__(self) -> str:
        if not self.line:
            return f"{self.file} in {self.function}"
        return f"{self.file}:{self.line} in {self.function}"


class _DlInfo(ctypes.Structure):
    _fields_ = [
        ("dli_fname", ctypes.c_char_p),
        ("dli_fbase", ctypes.c_void_p),
        ("dli_sname", ctypes.c_char_p),
        ("dli_saddr", ctypes.c_void_p),
    ]


# The process's own symbols: dladdr is glibc's (no library search at import).
_dladdr = ctypes.CDLL(None).dladdr
_dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
_dladdr.restype = ctypes.c_int


def _where(address: int) -> _DlInfo | None:
    info = _DlInfo()
    return info if _dladdr(ctypes.c_void_p(address), ctypes.byref(info)) else None


class Symbolizer:
    """Sites of return addresses in one loaded module.

    ``image`` is the driver file on disk (the loaded copy may be gone); ``anchor`` any
    address inside the loaded module (to know its base)."""

    def __init__(self, image: Path, anchor: int) -> None:
        self.image = image
        info = _where(anchor)
        self.base = int(info.dli_fbase or 0) if info is not None else 0
        self._cache: dict[int, Site | None] = {}
        self._lock = threading.Lock()

    def site(self, address: int) -> Site | None:
        """The C site of the call that returns to ``address``, or None if not the driver's."""
        try:
            return self._cache[address]
        except KeyError:
            pass
        found = self._resolve(address)
        with self._lock:
            self._cache[address] = found
        return found

    def _resolve(self, address: int) -> Site | None:
        info = _where(address) if address else None
        if info is None or not self.base or int(info.dli_fbase or 0) != self.base:
            return None
        offset = address - self.base - 1  # inside the call instruction, not after it
        symbol = info.dli_sname.decode(errors="replace") if info.dli_sname else "?"
        fallback = Site(f"{self.image.name}+0x{offset:x}", 0, symbol)
        tool = shutil.which("addr2line")
        if tool is None:
            return fallback
        try:
            done = subprocess.run(
                [tool, "-e", str(self.image), "-f", "-i", f"0x{offset:x}"],
                capture_output=True,
                text=True,
                timeout=ADDR2LINE_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return fallback
        lines = done.stdout.splitlines()
        if done.returncode != 0 or len(lines) < 2:
            return fallback
        # -i: the innermost inlined frame first - the line that holds the call.
        function, location = lines[0].strip(), lines[1].split(" (discriminator")[0].strip()
        path, _, number = location.rpartition(":")
        if not path or path.startswith("??") or not number.isdigit() or number == "0":
            return fallback
        return Site(path, int(number), function if function != "??" else symbol)
