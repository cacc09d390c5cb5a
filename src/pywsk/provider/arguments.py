"""Argument checks that run before a WSK dispatch function takes its IRP.

What it does: each check looks at one argument of a dispatch call the way the C types
would constrain it - a ULONG is an int in 0..0xFFFFFFFF, a PWSK_BUF points at a WSK_BUF
whose ``Mdl`` is an MDL (or NULL for zero bytes) and whose ``Offset`` and ``Length`` are
non-negative integers, a PSOCKADDR is a socket-address structure whose fields hold a
family, an address and a port - and answers ``None`` (fine) or the status that refuses
the call (STATUS_INVALID_PARAMETER).  ``client.py`` runs them before ``begin_request``:
a refused call still completes its IRP with that status, but nothing else happens.

What it refuses: nothing by itself; it raises only :class:`~pywsk.nt.bugcheck.BugCheck`,
for an MDL chain that touches freed memory or loops through ``Next`` - memory corruption
that stops a Windows machine - and it does so *before* the IRP is taken, so the caller's
IRP stays its own (it may free it) and no socket changed.

What always holds: a check never changes anything (it reads only), and everything it
accepts can be used by the socket methods without a TypeError: wrong Python types become
a status here rather than an exception deep inside.
"""

from __future__ import annotations

import socket
from typing import Any, Final

from ..nt.mdl import MDL, mdl_chain_writable
from ..nt.status import NTSTATUS
from ..wsk.structs import ADDRINFOEXW, PSIZE_T, SOCKADDR, UNICODE_STRING, WSK_BUF

__all__ = [
    "INT_MAX",
    "ULONG_MAX",
    "address_status",
    "buffer_flags_status",
    "buffer_status",
    "first_refusal",
    "hints_status",
    "name_status",
    "out_address_status",
    "size_box_status",
    "ulong_status",
]

#: The largest ULONG.
ULONG_MAX: Final = 0xFFFFFFFF
#: The largest value of a C ``int`` (an option value passed to the transport).
INT_MAX: Final = 0x7FFFFFFF

_INVALID: Final = NTSTATUS.STATUS_INVALID_PARAMETER


def _is_int(value: Any) -> bool:
    return isinstance(value, int)


def ulong_status(*values: Any) -> int | None:
    """Every value a ULONG (an int in 0..0xFFFFFFFF; bool counts as 0 / 1)."""
    for value in values:
        if not _is_int(value) or not 0 <= value <= ULONG_MAX:
            return _INVALID
    return None


def buffer_status(buffer: Any, required: bool = True) -> int | None:
    """A PWSK_BUF: a WSK_BUF (None only where the function allows NULL) with an MDL or None,
    and integer ``Offset`` / ``Length`` >= 0.  Walks the MDL chain, so a freed MDL or a
    loop raises BugCheck here, before the IRP is taken."""
    if buffer is None:
        return _INVALID if required else None
    if not isinstance(buffer, WSK_BUF):
        return _INVALID
    mdl: Any = buffer.Mdl
    offset: Any = buffer.Offset
    length: Any = buffer.Length
    if not isinstance(offset, int) or not isinstance(length, int) or offset < 0 or length < 0:
        return _INVALID
    if mdl is None:
        return _INVALID if length else None
    if not isinstance(mdl, MDL):
        return _INVALID
    mdl_chain_writable(mdl)  # the walk: BugCheck for a freed MDL or a loop
    return None


def buffer_flags_status(buffer: Any, flags: Any, required: bool = True) -> int | None:
    """:func:`buffer_status` of ``buffer``, then ``flags`` a ULONG: the check of WskSend,
    WskReceive and WskDisconnect, in one call (it runs on every data call)."""
    refusal = buffer_status(buffer, required)
    if refusal is None and (not isinstance(flags, int) or not 0 <= flags <= ULONG_MAX):
        return _INVALID
    return refusal


def address_status(address: Any, optional: bool = False) -> int | None:
    """An input PSOCKADDR: a socket-address structure whose fields make an address."""
    if address is None:
        return None if optional else _INVALID
    if not isinstance(address, SOCKADDR):
        return _INVALID
    try:
        family = address.sa_family
        host, port, *rest = address.to_tuple()
        # The address field must hold an address (a str field is not an IN_ADDR).
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except Exception:
        return _INVALID  # a field of the wrong type or value
    if not all(_is_int(value) for value in (family, port, *rest)):
        return _INVALID
    return None


def name_status(name: Any) -> int | None:
    """An optional PUNICODE_STRING."""
    if name is None:
        return None
    if not isinstance(name, UNICODE_STRING):
        return _INVALID
    try:
        str(name)
    except Exception:
        return _INVALID
    return None


def hints_status(hints: Any) -> int | None:
    """An optional PADDRINFOEXW of hints: its numeric fields are integers."""
    if hints is None:
        return None
    if not isinstance(hints, ADDRINFOEXW):
        return _INVALID
    fields = (hints.ai_flags, hints.ai_family, hints.ai_socktype, hints.ai_protocol)
    return ulong_status(*fields)


def out_address_status(address: Any, optional: bool = False) -> int | None:
    """An output PSOCKADDR: a socket-address structure the provider can fill."""
    if address is None:
        return None if optional else _INVALID
    return None if isinstance(address, SOCKADDR) else _INVALID


def size_box_status(box: Any) -> int | None:
    """An optional PSIZE_T / PULONG out-parameter."""
    return None if box is None or isinstance(box, PSIZE_T) else _INVALID


def first_refusal(*statuses: int | None) -> int | None:
    """The first refusal among ``statuses`` (None when every check passed)."""
    for status in statuses:
        if status is not None:
            return status
    return None
