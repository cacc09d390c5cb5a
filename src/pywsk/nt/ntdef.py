"""The small names every C driver uses: TRUE, FALSE, NULL, ASSERT, UNREFERENCED_PARAMETER,
PAGED_CODE, DbgPrint, KdPrint and CONTAINING_RECORD (ntdef.h, wdm.h).

What it does: lets a port from C keep these lines as they are.

* ``TRUE`` / ``FALSE`` are Python's ``True`` / ``False`` (C's BOOLEAN 1 and 0 compare
  equal to them); ``NULL`` is ``None``.
* :func:`ASSERT` / :func:`NT_ASSERT` check an expression in a debug run: like a checked
  build, they are active unless Python runs with ``-O`` (``__debug__`` false, the free
  build), and a failure raises ``AssertionError`` naming the caller's source line.
* :func:`UNREFERENCED_PARAMETER` does nothing.
* :func:`PAGED_CODE` checks, in a debug run, that the caller runs at IRQL <= APC_LEVEL, as
  checked builds do; code that may be paged out must not run at DISPATCH_LEVEL.
* :func:`DbgPrint` / :func:`DbgPrintEx` format a C printf format with its arguments and
  log the line through :mod:`logging` (logger ``pywsk.nt.debug``); :func:`KdPrint` /
  :func:`KdPrintEx` take the C macros' double-parenthesised argument tuple and print only in
  a debug run.  Since Windows Vista, DbgPrint output is filtered out unless the debugger's
  component mask asks for it; here DbgPrint logs at INFO, below logging's default WARNING
  threshold, so it too is shown only when asked for
  (``logging.getLogger("pywsk.nt.debug").setLevel(logging.INFO)``).  DbgPrintEx levels map
  DPFLTR_ERROR_LEVEL to ERROR, DPFLTR_WARNING_LEVEL to WARNING, DPFLTR_TRACE_LEVEL to DEBUG
  and DPFLTR_INFO_LEVEL to INFO.
* :func:`CONTAINING_RECORD` returns the record whose field ``Field`` is ``Address``:
  Python has no pointer arithmetic, so the record is the object that holds ``Address`` in
  that attribute.

What it refuses: a DbgPrint format its arguments do not fit is logged as the format and
the arguments, with a note, never raised (in C it prints garbage or crashes);
CONTAINING_RECORD raises ``ValueError`` when no such record exists.

What always holds: nothing here changes driver state; DbgPrint returns STATUS_SUCCESS.
"""

from __future__ import annotations

import gc
import linecache
import logging
import re
import sys
import weakref
from typing import Any, Final, TypeVar

from .interlocked import LIST_ENTRY
from .irql import APC_LEVEL, require_irql_at_most
from .status import NTSTATUS

__all__ = [
    "TRUE",
    "FALSE",
    "NULL",
    "ASSERT",
    "NT_ASSERT",
    "UNREFERENCED_PARAMETER",
    "PAGED_CODE",
    "DPFLTR_ERROR_LEVEL",
    "DPFLTR_WARNING_LEVEL",
    "DPFLTR_TRACE_LEVEL",
    "DPFLTR_INFO_LEVEL",
    "DPFLTR_IHVDRIVER_ID",
    "DPFLTR_DEFAULT_ID",
    "DbgPrint",
    "DbgPrintEx",
    "KdPrint",
    "KdPrintEx",
    "CONTAINING_RECORD",
]

TRUE: Final = True
FALSE: Final = False
NULL: Final = None

DPFLTR_ERROR_LEVEL: Final = 0
DPFLTR_WARNING_LEVEL: Final = 1
DPFLTR_TRACE_LEVEL: Final = 2
DPFLTR_INFO_LEVEL: Final = 3
DPFLTR_DEFAULT_ID: Final = 101
DPFLTR_IHVDRIVER_ID: Final = 77

debug_log: Final = logging.getLogger("pywsk.nt.debug")

_LEVELS: Final = {
    DPFLTR_ERROR_LEVEL: logging.ERROR,
    DPFLTR_WARNING_LEVEL: logging.WARNING,
    DPFLTR_TRACE_LEVEL: logging.DEBUG,
    DPFLTR_INFO_LEVEL: logging.INFO,
}

T = TypeVar("T")


def _caller_line(depth: int) -> str:
    frame = sys._getframe(depth + 1)
    line = linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()
    return f"{line or '<source unavailable>'} ({frame.f_code.co_filename}:{frame.f_lineno})"


def ASSERT(Expression: object) -> None:
    """In a debug run, raise ``AssertionError`` when ``Expression`` is false."""
    if __debug__ and not Expression:
        raise AssertionError(f"Assertion failed: {_caller_line(1)}")


def NT_ASSERT(Expression: object) -> None:
    """Same as :func:`ASSERT`."""
    if __debug__ and not Expression:
        raise AssertionError(f"Assertion failed: {_caller_line(1)}")


def UNREFERENCED_PARAMETER(*Parameters: object) -> None:
    """Nothing: C uses it to silence the unused-parameter warning."""


def PAGED_CODE() -> None:
    """In a debug run, refuse (BugCheck) a caller above APC_LEVEL."""
    if __debug__:
        require_irql_at_most(APC_LEVEL, "PAGED_CODE (pageable code)")


# %[flags][width][.precision][length]conversion, as the kernel's printf reads it.
_SPEC: Final = re.compile(
    r"%(?P<flags>[-+ #0]*)(?P<width>\*|\d+)?(?:\.(?P<precision>\*|\d+))?"
    r"(?P<length>hh|h|ll|l|I64|I32|I|w|z|j|t|L)?(?P<conversion>[diouxXcsSZpeEfgGaA%])"
)


def _as_text(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).split(b"\0", 1)[0].decode("latin-1")
    buffer = getattr(value, "Buffer", None)  # UNICODE_STRING / ANSI_STRING for %wZ / %Z
    if buffer is not None and not isinstance(value, str):
        return _as_text(buffer)
    return "(null)" if value is None else str(value)


def _printf(Format: str, args: tuple[Any, ...]) -> str:
    """``Format % args`` with C printf conversions translated to Python's."""
    pieces: list[str] = []
    values: list[Any] = []
    rest = list(args)
    position = 0
    for match in _SPEC.finditer(Format):
        pieces.append(Format[position : match.start()].replace("%", "%%"))
        position = match.end()
        conversion = match["conversion"]
        if conversion == "%":
            pieces.append("%%")
            continue
        width, precision = match["width"] or "", match["precision"]
        values.extend(rest.pop(0) for star in (width, precision) if star == "*")
        value = rest.pop(0)
        spec = "%" + match["flags"] + width + ("" if precision is None else "." + precision)
        bits = 64 if match["length"] in ("ll", "I64", "z", "j", "t") else 32
        if conversion in "uoxX" and isinstance(value, int) and value < 0:
            value &= (1 << bits) - 1
        if conversion == "u":
            conversion = "d"
        elif conversion in "sSZ":
            conversion, value = "s", _as_text(value)
        elif conversion == "p":
            spec, conversion = "%016", "X"
            value = value if isinstance(value, int) else id(value)
        pieces.append(spec + conversion)
        values.append(value)
    pieces.append(Format[position:].replace("%", "%%"))
    if rest:
        raise TypeError(f"{len(rest)} argument(s) left over")
    return "".join(pieces) % tuple(values)


def _log(level: int, Format: str, args: tuple[Any, ...]) -> NTSTATUS:
    if not debug_log.isEnabledFor(level):
        return NTSTATUS.STATUS_SUCCESS
    try:
        text = _printf(Format, args)
    except (TypeError, ValueError, IndexError, OverflowError) as error:
        text = f"{Format!r} with arguments {args!r} (the format does not fit them: {error})"
    debug_log.log(level, "%s", text.rstrip("\r\n"))
    return NTSTATUS.STATUS_SUCCESS


def DbgPrint(Format: str, *args: Any) -> NTSTATUS:
    """Log ``Format`` (C printf syntax) with ``args`` at INFO on ``pywsk.nt.debug``."""
    return _log(logging.INFO, Format, args)


def DbgPrintEx(ComponentId: int, Level: int, Format: str, *args: Any) -> NTSTATUS:
    """Log like :func:`DbgPrint`, at the logging level ``Level`` maps to."""
    return _log(_LEVELS.get(Level, logging.DEBUG), Format, args)


def KdPrint(Arguments: tuple[Any, ...]) -> None:
    """``KdPrint(("format %d\\n", value))``: DbgPrint in a debug run, nothing under -O."""
    if __debug__:
        DbgPrint(*Arguments)


def KdPrintEx(Arguments: tuple[Any, ...]) -> None:
    """``KdPrintEx((ComponentId, Level, "format", ...))``: DbgPrintEx in a debug run."""
    if __debug__:
        DbgPrintEx(*Arguments)


def _holds(record: object, Type: type[Any], Field: str, Address: object) -> bool:
    return isinstance(record, Type) and getattr(record, Field, None) is Address


def CONTAINING_RECORD(Address: object, Type: type[T], Field: str) -> T:
    """The ``Type`` object whose attribute ``Field`` is ``Address``.

    C: ``CONTAINING_RECORD(Entry, WSK_CONTEXT, Link)``; Python:
    ``CONTAINING_RECORD(Entry, WSK_CONTEXT, "Link")``.  A :class:`LIST_ENTRY` made with its
    record (``LIST_ENTRY(self)``) answers at once; otherwise the record is found among the
    objects that refer to ``Address`` (a search over live objects) and remembered in the
    entry for the next call.  Raises ``ValueError`` when no such record exists.
    """
    if not isinstance(Field, str):
        raise TypeError("CONTAINING_RECORD: Field must be the field's name, a str")
    known = Address._record if isinstance(Address, LIST_ENTRY) else None
    record = known() if known is not None else None
    if _holds(record, Type, Field, Address):
        return record  # type: ignore[return-value]
    for referrer in gc.get_referrers(Address):
        if _holds(referrer, Type, Field, Address):
            record = referrer
            break
        if isinstance(referrer, dict) and referrer.get(Field) is Address:
            # The record's __dict__: one step further to the record itself.
            owners = [o for o in gc.get_referrers(referrer) if _holds(o, Type, Field, Address)]
            if owners:
                record = owners[0]
                break
    else:
        raise ValueError(
            f"CONTAINING_RECORD: no {Type.__name__} holds this object in its field {Field!r}"
        )
    if isinstance(Address, LIST_ENTRY):
        Address._record = weakref.ref(record)
    return record  # type: ignore[no-any-return]
