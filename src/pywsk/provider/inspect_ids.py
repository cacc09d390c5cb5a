"""WSK_INSPECT_IDs: the identifiers of conditional accept, and SIO_WSK_QUERY_INSPECT_ID.

What it does: :func:`new_inspect_id` issues the WSK_INSPECT_ID a conditional-accept
listener passes to WskInspectEvent for each connection request; :func:`record_inspect_id`
remembers the ID of each connection socket such a listener delivered, and
:func:`query_inspect_id` answers SIO_WSK_QUERY_INSPECT_ID - an IOCTL of the *accepted*
connection socket - from that record (:func:`inspect_id_of` reads it).

What it refuses: SIO_WSK_QUERY_INSPECT_ID with an IRP or without OutputSizeReturned
(STATUS_INVALID_PARAMETER), on a socket no conditional listener delivered
(STATUS_INVALID_DEVICE_REQUEST), into a read-only buffer or one under 16 bytes
(STATUS_BUFFER_TOO_SMALL, with the 16 bytes needed in OutputSizeReturned), into an
object that is neither a WSK_INSPECT_ID nor a buffer (STATUS_INVALID_PARAMETER).

What always holds: an ID is the issuing listener's ``id()`` (Key) and a process-wide
serial number (SerialNumber, a ULONG, so it wraps after 2**32 requests); every ID handed
out is a copy, so a client that writes into one changes no record; a record lives as long
as its socket object (weak keys) and never completes an IRP.
"""

from __future__ import annotations

import itertools
import struct
import weakref
from typing import TYPE_CHECKING, Any, Final

from ..nt.status import NTSTATUS
from ..wsk.structs import WSK_INSPECT_ID

if TYPE_CHECKING:
    from ..nt.irp import IRP
    from ..wsk.structs import PSIZE_T

__all__ = ["inspect_id_of", "new_inspect_id", "query_inspect_id", "record_inspect_id"]

#: sizeof(WSK_INSPECT_ID) on x64: ULONG_PTR Key, ULONG SerialNumber, 4 bytes of padding.
_INSPECT_ID_SIZE: Final = 16

#: Serial numbers of WSK_INSPECT_IDs (ULONG), process-wide.
_serials = itertools.count(1)

#: The WSK_INSPECT_ID of each socket delivered by a conditional-accept listener.
_inspect_ids: weakref.WeakKeyDictionary[object, WSK_INSPECT_ID] = weakref.WeakKeyDictionary()


def new_inspect_id(listener: object) -> WSK_INSPECT_ID:
    """A fresh WSK_INSPECT_ID for a connection request of ``listener``."""
    return WSK_INSPECT_ID(id(listener), next(_serials) & 0xFFFFFFFF)


def record_inspect_id(sock: object, inspect_id: WSK_INSPECT_ID) -> None:
    """Remember that ``sock`` was delivered for the request inspected as ``inspect_id``."""
    _inspect_ids[sock] = WSK_INSPECT_ID(inspect_id.Key, inspect_id.SerialNumber)


def inspect_id_of(sock: object) -> WSK_INSPECT_ID | None:
    """A copy of the WSK_INSPECT_ID ``sock`` was inspected with, or None if it was not
    accepted from a listener with conditional accept."""
    found = _inspect_ids.get(sock)
    return None if found is None else WSK_INSPECT_ID(found.Key, found.SerialNumber)


def query_inspect_id(
    sock: object,
    OutputSize: int,
    OutputBuffer: Any,
    OutputSizeReturned: PSIZE_T | None,
    Irp: IRP | None,
) -> int:
    """SIO_WSK_QUERY_INSPECT_ID on ``sock``: the status, with ``OutputBuffer`` (a
    WSK_INSPECT_ID, or a buffer of at least 16 bytes) and ``OutputSizeReturned`` filled.

    The IRP must be NULL and OutputSizeReturned given (STATUS_INVALID_PARAMETER otherwise);
    a socket not accepted on a conditional listener: STATUS_INVALID_DEVICE_REQUEST.  This
    never completes ``Irp``: the caller completes a given IRP with the returned status."""
    if Irp is not None or OutputSizeReturned is None:
        return NTSTATUS.STATUS_INVALID_PARAMETER
    found = _inspect_ids.get(sock)
    if found is None:
        return NTSTATUS.STATUS_INVALID_DEVICE_REQUEST
    if isinstance(OutputBuffer, WSK_INSPECT_ID):
        OutputBuffer.Key = found.Key
        OutputBuffer.SerialNumber = found.SerialNumber
        OutputSizeReturned.value = _INSPECT_ID_SIZE
        return NTSTATUS.STATUS_SUCCESS
    try:
        view = memoryview(OutputBuffer).cast("B")
    except TypeError:
        return NTSTATUS.STATUS_INVALID_PARAMETER
    if view.readonly or OutputSize < _INSPECT_ID_SIZE or len(view) < _INSPECT_ID_SIZE:
        OutputSizeReturned.value = _INSPECT_ID_SIZE
        return NTSTATUS.STATUS_BUFFER_TOO_SMALL
    view[:_INSPECT_ID_SIZE] = struct.pack("<QI4x", found.Key, found.SerialNumber)
    OutputSizeReturned.value = _INSPECT_ID_SIZE
    return NTSTATUS.STATUS_SUCCESS
