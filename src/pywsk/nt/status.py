"""NTSTATUS: the result type of every NT and WSK call.

What it does: names the status codes that WSK and the I/O manager use, with their real
32-bit values from ``ntstatus.h``, and gives the four classification macros of ``ntdef.h``.

What it refuses: nothing.  A code that is not listed here still travels through pywsk
unchanged: :func:`NTSTATUS.of` returns the enum member when the value is known and the
plain ``int`` otherwise (the same pass-through h2 uses for HTTP/2 error codes).

What always holds: ``NTSTATUS`` members compare equal to their integer value, so
``Irp.IoStatus.Status == STATUS_SUCCESS`` reads exactly as in C, and the macros accept
either a member or an ``int`` (interpreted as an unsigned 32-bit value).
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = [
    "NTSTATUS",
    "NT_ERROR",
    "NT_INFORMATION",
    "NT_SUCCESS",
    "NT_WARNING",
    "status_name",
]


class NTSTATUS(enum.IntEnum):
    """Known NTSTATUS codes (values as in ``ntstatus.h``)."""

    #: The operation completed successfully.
    STATUS_SUCCESS = 0x00000000
    #: A wait was satisfied by the second object (STATUS_WAIT_0 + 1).
    STATUS_WAIT_1 = 0x00000001
    #: A wait was satisfied by the third object.
    STATUS_WAIT_2 = 0x00000002
    #: A wait was satisfied by the fourth object.
    STATUS_WAIT_3 = 0x00000003
    #: A wait was satisfied by the 64th object (the last STATUS_WAIT_n).
    STATUS_WAIT_63 = 0x0000003F
    #: A wait ended because its timeout expired.
    STATUS_TIMEOUT = 0x00000102
    #: The operation will complete later, through the IRP.
    STATUS_PENDING = 0x00000103
    #: (client libraries) a receive returned less than asked.
    STATUS_RECEIVE_PARTIAL = 0x4000000F
    #: Disabling an event callback that is still running, with no IRP given.
    STATUS_EVENT_PENDING = 0x40000013
    #: The output buffer was too small; the needed size was reported.
    STATUS_BUFFER_OVERFLOW = 0x80000005
    #: Only part of a copy was done.
    STATUS_PARTIAL_COPY = 0x8000000D
    #: Generic failure.
    STATUS_UNSUCCESSFUL = 0xC0000001
    #: The request is not implemented.
    STATUS_NOT_IMPLEMENTED = 0xC0000002
    #: Memory that may not be touched was touched.
    STATUS_ACCESS_VIOLATION = 0xC0000005
    #: The handle (client object) is not valid.
    STATUS_INVALID_HANDLE = 0xC0000008
    #: A parameter is not valid.
    STATUS_INVALID_PARAMETER = 0xC000000D
    #: The request does not apply to this object.
    STATUS_INVALID_DEVICE_REQUEST = 0xC0000010
    #: Returned by a completion routine to stop completion processing of an IRP.
    STATUS_MORE_PROCESSING_REQUIRED = 0xC0000016
    #: Not enough virtual memory.
    STATUS_NO_MEMORY = 0xC0000017
    #: Access refused (address sharing denied).
    STATUS_ACCESS_DENIED = 0xC0000022
    #: The buffer is too small for the data.
    STATUS_BUFFER_TOO_SMALL = 0xC0000023
    #: The object is not of the expected type.
    STATUS_OBJECT_TYPE_MISMATCH = 0xC0000024
    #: Not enough system resources.
    STATUS_INSUFFICIENT_RESOURCES = 0xC000009A
    #: The provider is not ready (capture before attach, or after deregistration).
    STATUS_DEVICE_NOT_READY = 0xC00000A3
    #: The pipe (connection) was shut down for sending.
    STATUS_PIPE_DISCONNECTED = 0xC00000B0
    #: The operation timed out in the transport.
    STATUS_IO_TIMEOUT = 0xC00000B5
    #: The socket no longer works; close it as soon as possible.
    STATUS_FILE_FORCED_CLOSED = 0xC00000B6
    #: The request (flag, family, type) is not supported.
    STATUS_NOT_SUPPORTED = 0xC00000BB
    #: The remote address is not listening.
    STATUS_REMOTE_NOT_LISTENING = 0xC00000BC
    #: The network is busy (down).
    STATUS_NETWORK_BUSY = 0xC00000BF
    #: An unexpected network error occurred.
    STATUS_UNEXPECTED_NETWORK_ERROR = 0xC00000C4
    #: The request was not accepted (rejected accept; inline completion impossible).
    STATUS_REQUEST_NOT_ACCEPTED = 0xC00000D0
    #: The operation would have to wait.
    STATUS_CANT_WAIT = 0xC00000D8
    #: An internal error occurred.
    STATUS_INTERNAL_ERROR = 0xC00000E5
    #: Too many files (sockets) are open.
    STATUS_TOO_MANY_OPENED_FILES = 0xC000011F
    #: The I/O request was cancelled.
    STATUS_CANCELLED = 0xC0000120
    #: The file (object) was closed.
    STATUS_FILE_CLOSED = 0xC0000128
    #: The connection was disconnected locally.
    STATUS_LOCAL_DISCONNECT = 0xC000013B
    #: The connection was disconnected by the remote side.
    STATUS_REMOTE_DISCONNECT = 0xC000013C
    #: The connection is not valid (not connected).
    STATUS_INVALID_CONNECTION = 0xC0000140
    #: The address is not valid.
    STATUS_INVALID_ADDRESS = 0xC0000141
    #: The object is in the wrong state for the request.
    STATUS_INVALID_DEVICE_STATE = 0xC0000184
    #: The buffer size is not valid for the request.
    STATUS_INVALID_BUFFER_SIZE = 0xC0000206
    #: An address component is not valid (address not available).
    STATUS_INVALID_ADDRESS_COMPONENT = 0xC0000207
    #: Too many addresses.
    STATUS_TOO_MANY_ADDRESSES = 0xC0000209
    #: The address already exists (bind conflict, per the docs).
    STATUS_ADDRESS_ALREADY_EXISTS = 0xC000020A
    #: The address was closed.
    STATUS_ADDRESS_CLOSED = 0xC000020B
    #: The connection was disconnected.
    STATUS_CONNECTION_DISCONNECTED = 0xC000020C
    #: The connection was reset by the remote side.
    STATUS_CONNECTION_RESET = 0xC000020D
    #: An event callback did not take the indicated data.
    STATUS_DATA_NOT_ACCEPTED = 0xC000021B
    #: The object was not found (name resolution).
    STATUS_NOT_FOUND = 0xC0000225
    #: The remote side refused the connection.
    STATUS_CONNECTION_REFUSED = 0xC0000236
    #: The remote side disconnected gracefully.
    STATUS_GRACEFUL_DISCONNECT = 0xC0000237
    #: The address is already associated (bind conflict, as observed on Windows).
    STATUS_ADDRESS_ALREADY_ASSOCIATED = 0xC0000238
    #: The address is not associated.
    STATUS_ADDRESS_NOT_ASSOCIATED = 0xC0000239
    #: The connection is not valid.
    STATUS_CONNECTION_INVALID = 0xC000023A
    #: The connection is already active (already connected).
    STATUS_CONNECTION_ACTIVE = 0xC000023B
    #: The network cannot be reached.
    STATUS_NETWORK_UNREACHABLE = 0xC000023C
    #: The host cannot be reached.
    STATUS_HOST_UNREACHABLE = 0xC000023D
    #: The protocol cannot be reached.
    STATUS_PROTOCOL_UNREACHABLE = 0xC000023E
    #: The port cannot be reached.
    STATUS_PORT_UNREACHABLE = 0xC000023F
    #: The request was aborted.
    STATUS_REQUEST_ABORTED = 0xC0000240
    #: The connection was aborted by the local side.
    STATUS_CONNECTION_ABORTED = 0xC0000241
    #: No match was found (name resolution).
    STATUS_NO_MATCH = 0xC0000272
    #: The requested interface (WSK version) is not supported.
    STATUS_NOINTERFACE = 0xC00002B9
    #: The object has already been registered.
    STATUS_ALREADY_REGISTERED = 0xC0000718

    @classmethod
    def of(cls, value: int) -> NTSTATUS | int:
        """The member for ``value``, or ``value`` as an unsigned 32-bit int if no member has it."""
        try:
            return cls(value & 0xFFFFFFFF)
        except ValueError:
            return value & 0xFFFFFFFF

    def __str__(self) -> str:
        return f"{self.name} (0x{self.value:08X})"


def status_name(value: int) -> str:
    """``'STATUS_CANCELLED (0xC0000120)'`` for a known code, ``'0x........'`` otherwise."""
    known = NTSTATUS.of(value)
    return str(known) if isinstance(known, NTSTATUS) else f"0x{known:08X}"


def _severity(value: int) -> int:
    return ((value & 0xFFFFFFFF) >> 30) & 0x3


def NT_SUCCESS(Status: int) -> bool:
    """True for success and informational codes (severity 0 or 1)."""
    return not Status & 0x80000000  # severity 0 or 1 (bit 31 clear; also for signed values)


def NT_INFORMATION(Status: int) -> bool:
    """True for informational codes (severity 1)."""
    return _severity(Status) == 1


def NT_WARNING(Status: int) -> bool:
    """True for warning codes (severity 2)."""
    return _severity(Status) == 2


def NT_ERROR(Status: int) -> bool:
    """True for error codes (severity 3)."""
    return _severity(Status) == 3


# Module-level names, as C code sees them after #include <ntstatus.h>.
STATUS_SUCCESS: Final = NTSTATUS.STATUS_SUCCESS
# STATUS_WAIT_0 is 0, STATUS_SUCCESS's value (ntstatus.h): the same member, not an alias.
STATUS_WAIT_0: Final = NTSTATUS.STATUS_SUCCESS
STATUS_WAIT_1: Final = NTSTATUS.STATUS_WAIT_1
STATUS_WAIT_2: Final = NTSTATUS.STATUS_WAIT_2
STATUS_WAIT_3: Final = NTSTATUS.STATUS_WAIT_3
STATUS_WAIT_63: Final = NTSTATUS.STATUS_WAIT_63
STATUS_TIMEOUT: Final = NTSTATUS.STATUS_TIMEOUT
STATUS_PENDING: Final = NTSTATUS.STATUS_PENDING
STATUS_RECEIVE_PARTIAL: Final = NTSTATUS.STATUS_RECEIVE_PARTIAL
STATUS_EVENT_PENDING: Final = NTSTATUS.STATUS_EVENT_PENDING
STATUS_BUFFER_OVERFLOW: Final = NTSTATUS.STATUS_BUFFER_OVERFLOW
STATUS_PARTIAL_COPY: Final = NTSTATUS.STATUS_PARTIAL_COPY
STATUS_UNSUCCESSFUL: Final = NTSTATUS.STATUS_UNSUCCESSFUL
STATUS_NOT_IMPLEMENTED: Final = NTSTATUS.STATUS_NOT_IMPLEMENTED
STATUS_ACCESS_VIOLATION: Final = NTSTATUS.STATUS_ACCESS_VIOLATION
STATUS_INVALID_HANDLE: Final = NTSTATUS.STATUS_INVALID_HANDLE
STATUS_INVALID_PARAMETER: Final = NTSTATUS.STATUS_INVALID_PARAMETER
STATUS_INVALID_DEVICE_REQUEST: Final = NTSTATUS.STATUS_INVALID_DEVICE_REQUEST
STATUS_MORE_PROCESSING_REQUIRED: Final = NTSTATUS.STATUS_MORE_PROCESSING_REQUIRED
STATUS_NO_MEMORY: Final = NTSTATUS.STATUS_NO_MEMORY
STATUS_ACCESS_DENIED: Final = NTSTATUS.STATUS_ACCESS_DENIED
STATUS_BUFFER_TOO_SMALL: Final = NTSTATUS.STATUS_BUFFER_TOO_SMALL
STATUS_OBJECT_TYPE_MISMATCH: Final = NTSTATUS.STATUS_OBJECT_TYPE_MISMATCH
STATUS_INSUFFICIENT_RESOURCES: Final = NTSTATUS.STATUS_INSUFFICIENT_RESOURCES
STATUS_DEVICE_NOT_READY: Final = NTSTATUS.STATUS_DEVICE_NOT_READY
STATUS_PIPE_DISCONNECTED: Final = NTSTATUS.STATUS_PIPE_DISCONNECTED
STATUS_IO_TIMEOUT: Final = NTSTATUS.STATUS_IO_TIMEOUT
STATUS_FILE_FORCED_CLOSED: Final = NTSTATUS.STATUS_FILE_FORCED_CLOSED
STATUS_NOT_SUPPORTED: Final = NTSTATUS.STATUS_NOT_SUPPORTED
STATUS_REMOTE_NOT_LISTENING: Final = NTSTATUS.STATUS_REMOTE_NOT_LISTENING
STATUS_NETWORK_BUSY: Final = NTSTATUS.STATUS_NETWORK_BUSY
STATUS_UNEXPECTED_NETWORK_ERROR: Final = NTSTATUS.STATUS_UNEXPECTED_NETWORK_ERROR
STATUS_REQUEST_NOT_ACCEPTED: Final = NTSTATUS.STATUS_REQUEST_NOT_ACCEPTED
STATUS_CANT_WAIT: Final = NTSTATUS.STATUS_CANT_WAIT
STATUS_INTERNAL_ERROR: Final = NTSTATUS.STATUS_INTERNAL_ERROR
STATUS_TOO_MANY_OPENED_FILES: Final = NTSTATUS.STATUS_TOO_MANY_OPENED_FILES
STATUS_CANCELLED: Final = NTSTATUS.STATUS_CANCELLED
STATUS_FILE_CLOSED: Final = NTSTATUS.STATUS_FILE_CLOSED
STATUS_LOCAL_DISCONNECT: Final = NTSTATUS.STATUS_LOCAL_DISCONNECT
STATUS_REMOTE_DISCONNECT: Final = NTSTATUS.STATUS_REMOTE_DISCONNECT
STATUS_INVALID_CONNECTION: Final = NTSTATUS.STATUS_INVALID_CONNECTION
STATUS_INVALID_ADDRESS: Final = NTSTATUS.STATUS_INVALID_ADDRESS
STATUS_INVALID_DEVICE_STATE: Final = NTSTATUS.STATUS_INVALID_DEVICE_STATE
STATUS_INVALID_BUFFER_SIZE: Final = NTSTATUS.STATUS_INVALID_BUFFER_SIZE
STATUS_INVALID_ADDRESS_COMPONENT: Final = NTSTATUS.STATUS_INVALID_ADDRESS_COMPONENT
STATUS_TOO_MANY_ADDRESSES: Final = NTSTATUS.STATUS_TOO_MANY_ADDRESSES
STATUS_ADDRESS_ALREADY_EXISTS: Final = NTSTATUS.STATUS_ADDRESS_ALREADY_EXISTS
STATUS_ADDRESS_CLOSED: Final = NTSTATUS.STATUS_ADDRESS_CLOSED
STATUS_CONNECTION_DISCONNECTED: Final = NTSTATUS.STATUS_CONNECTION_DISCONNECTED
STATUS_CONNECTION_RESET: Final = NTSTATUS.STATUS_CONNECTION_RESET
STATUS_DATA_NOT_ACCEPTED: Final = NTSTATUS.STATUS_DATA_NOT_ACCEPTED
STATUS_NOT_FOUND: Final = NTSTATUS.STATUS_NOT_FOUND
STATUS_CONNECTION_REFUSED: Final = NTSTATUS.STATUS_CONNECTION_REFUSED
STATUS_GRACEFUL_DISCONNECT: Final = NTSTATUS.STATUS_GRACEFUL_DISCONNECT
STATUS_ADDRESS_ALREADY_ASSOCIATED: Final = NTSTATUS.STATUS_ADDRESS_ALREADY_ASSOCIATED
STATUS_ADDRESS_NOT_ASSOCIATED: Final = NTSTATUS.STATUS_ADDRESS_NOT_ASSOCIATED
STATUS_CONNECTION_INVALID: Final = NTSTATUS.STATUS_CONNECTION_INVALID
STATUS_CONNECTION_ACTIVE: Final = NTSTATUS.STATUS_CONNECTION_ACTIVE
STATUS_NETWORK_UNREACHABLE: Final = NTSTATUS.STATUS_NETWORK_UNREACHABLE
STATUS_HOST_UNREACHABLE: Final = NTSTATUS.STATUS_HOST_UNREACHABLE
STATUS_PROTOCOL_UNREACHABLE: Final = NTSTATUS.STATUS_PROTOCOL_UNREACHABLE
STATUS_PORT_UNREACHABLE: Final = NTSTATUS.STATUS_PORT_UNREACHABLE
STATUS_REQUEST_ABORTED: Final = NTSTATUS.STATUS_REQUEST_ABORTED
STATUS_CONNECTION_ABORTED: Final = NTSTATUS.STATUS_CONNECTION_ABORTED
STATUS_NO_MATCH: Final = NTSTATUS.STATUS_NO_MATCH
STATUS_NOINTERFACE: Final = NTSTATUS.STATUS_NOINTERFACE
STATUS_ALREADY_REGISTERED: Final = NTSTATUS.STATUS_ALREADY_REGISTERED

__all__ += [
    "STATUS_SUCCESS",
    "STATUS_WAIT_0",
    "STATUS_WAIT_1",
    "STATUS_WAIT_2",
    "STATUS_WAIT_3",
    "STATUS_WAIT_63",
    "STATUS_TIMEOUT",
    "STATUS_PENDING",
    "STATUS_RECEIVE_PARTIAL",
    "STATUS_EVENT_PENDING",
    "STATUS_BUFFER_OVERFLOW",
    "STATUS_PARTIAL_COPY",
    "STATUS_UNSUCCESSFUL",
    "STATUS_NOT_IMPLEMENTED",
    "STATUS_ACCESS_VIOLATION",
    "STATUS_INVALID_HANDLE",
    "STATUS_INVALID_PARAMETER",
    "STATUS_INVALID_DEVICE_REQUEST",
    "STATUS_MORE_PROCESSING_REQUIRED",
    "STATUS_NO_MEMORY",
    "STATUS_ACCESS_DENIED",
    "STATUS_BUFFER_TOO_SMALL",
    "STATUS_OBJECT_TYPE_MISMATCH",
    "STATUS_INSUFFICIENT_RESOURCES",
    "STATUS_DEVICE_NOT_READY",
    "STATUS_PIPE_DISCONNECTED",
    "STATUS_IO_TIMEOUT",
    "STATUS_FILE_FORCED_CLOSED",
    "STATUS_NOT_SUPPORTED",
    "STATUS_REMOTE_NOT_LISTENING",
    "STATUS_NETWORK_BUSY",
    "STATUS_UNEXPECTED_NETWORK_ERROR",
    "STATUS_REQUEST_NOT_ACCEPTED",
    "STATUS_CANT_WAIT",
    "STATUS_INTERNAL_ERROR",
    "STATUS_TOO_MANY_OPENED_FILES",
    "STATUS_CANCELLED",
    "STATUS_FILE_CLOSED",
    "STATUS_LOCAL_DISCONNECT",
    "STATUS_REMOTE_DISCONNECT",
    "STATUS_INVALID_CONNECTION",
    "STATUS_INVALID_ADDRESS",
    "STATUS_INVALID_DEVICE_STATE",
    "STATUS_INVALID_BUFFER_SIZE",
    "STATUS_INVALID_ADDRESS_COMPONENT",
    "STATUS_TOO_MANY_ADDRESSES",
    "STATUS_ADDRESS_ALREADY_EXISTS",
    "STATUS_ADDRESS_CLOSED",
    "STATUS_CONNECTION_DISCONNECTED",
    "STATUS_CONNECTION_RESET",
    "STATUS_DATA_NOT_ACCEPTED",
    "STATUS_NOT_FOUND",
    "STATUS_CONNECTION_REFUSED",
    "STATUS_GRACEFUL_DISCONNECT",
    "STATUS_ADDRESS_ALREADY_ASSOCIATED",
    "STATUS_ADDRESS_NOT_ASSOCIATED",
    "STATUS_CONNECTION_INVALID",
    "STATUS_CONNECTION_ACTIVE",
    "STATUS_NETWORK_UNREACHABLE",
    "STATUS_HOST_UNREACHABLE",
    "STATUS_PROTOCOL_UNREACHABLE",
    "STATUS_PORT_UNREACHABLE",
    "STATUS_REQUEST_ABORTED",
    "STATUS_CONNECTION_ABORTED",
    "STATUS_NO_MATCH",
    "STATUS_NOINTERFACE",
    "STATUS_ALREADY_REGISTERED",
]
