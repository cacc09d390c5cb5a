"""NTSTATUS codes as Python exceptions: the one translation table of the Pythonic layers.

What it does: the faithful layer returns NTSTATUS codes; :mod:`pywsk.aio`, :mod:`pywsk.trio`
and :mod:`pywsk.sync` raise exceptions.  Every status becomes an exception here, through one
table (:data:`STATUS_ERRORS`: status -> exception class and ``errno``), so that ordinary
Python handlers work::

    try:
        data = await conn.receive_some()
    except ConnectionResetError as exc:      # a WskConnectionResetError
        print(exc.status_name)               # 'STATUS_CONNECTION_RESET (0xC000020D)'

Every exception raised for a status is an :class:`NtStatusError` - an :class:`OSError`
with the NTSTATUS in ``.status`` - and, where Python has a matching built-in class, a
subclass of it too: :class:`WskConnectionResetError` is a ``ConnectionResetError``,
:class:`WskTimeoutError` a ``TimeoutError``, and so on.  Which class is *who ended the
connection*, as in Twisted's taxonomy: the peer (``ConnectionResetError``), we ourselves
(``ConnectionAbortedError``), nobody ever accepted it (``ConnectionRefusedError``), the
transport gave up (``TimeoutError``).

What it refuses: turning a success into an exception (:func:`error_from_status` raises
``ValueError`` for a success code other than STATUS_TIMEOUT) and treating STATUS_PENDING as
a final result.  STATUS_TIMEOUT is a *success* code (severity 0) in ``ntstatus.h`` - the
trap that makes a wrapper report a timed-out wait as success - so :func:`raise_for_status`
raises :class:`WskTimeoutError` for it.

What always holds: a status not in the table still becomes an exception, of class
:class:`UnknownStatusError` (an ``NtStatusError``) with ``errno`` EIO; the class of a status
depends on nothing but the table; exceptions pickle with their status.

One exception here carries no status: :class:`BusyError`, for two tasks using a
one-at-a-time operation at once.  One is not public: :class:`Failed`, what the code under
the Pythonic layers raises - the NTSTATUS the core decided and the operation, nothing more -
so that a status becomes an exception at one place, the boundary of each public API
(``raise failed.error() from None``, as httpcore's ``map_exceptions``).  This module imports
only :mod:`pywsk.nt`.
"""

from __future__ import annotations

import errno
import socket
from typing import Final

from .nt.status import NT_SUCCESS, NTSTATUS, status_name

__all__ = [
    "NtStatusError",
    "UnknownStatusError",
    "WskConnectionError",
    "WskConnectionResetError",
    "WskConnectionAbortedError",
    "WskConnectionRefusedError",
    "WskBrokenPipeError",
    "WskTimeoutError",
    "WskPermissionError",
    "WskNameResolutionError",
    "SocketClosedError",
    "RequestCancelledError",
    "BusyError",
    "STATUS_ERRORS",
    "error_from_status",
    "raise_for_status",
]


class NtStatusError(OSError):
    """A WSK call failed with an NTSTATUS.

    ``status`` is the code (an int; compare with :class:`pywsk.nt.NTSTATUS` members),
    ``errno`` the closest POSIX error (from the table), ``str()`` shows both and the
    message::

        [Errno 104] STATUS_CONNECTION_RESET (0xC000020D): WskReceive
    """

    def __init__(self, status: int, message: str | None = None) -> None:
        status &= 0xFFFFFFFF
        _cls, code = STATUS_ERRORS.get(status, (UnknownStatusError, errno.EIO))
        text = status_name(status) if not message else f"{status_name(status)}: {message}"
        super().__init__(code, text)
        self.status: int = status
        self.message: str | None = message

    @property
    def status_name(self) -> str:
        """``'STATUS_CONNECTION_RESET (0xC000020D)'``, or ``'0x........'`` for an unknown code."""
        return status_name(self.status)

    def __reduce__(self) -> tuple[type[NtStatusError], tuple[int, str | None]]:
        return (type(self), (self.status, self.message))


class UnknownStatusError(NtStatusError):
    """A status the table does not know (``errno`` EIO)."""


class WskConnectionError(NtStatusError, ConnectionError):
    """The connection no longer works and the status does not say who ended it
    (STATUS_FILE_FORCED_CLOSED: "close the socket")."""


class WskConnectionResetError(NtStatusError, ConnectionResetError):
    """The peer ended the connection abortively (its RST): STATUS_CONNECTION_RESET."""


class WskConnectionAbortedError(NtStatusError, ConnectionAbortedError):
    """We ended the connection abortively (our RST): STATUS_CONNECTION_ABORTED."""


class WskConnectionRefusedError(NtStatusError, ConnectionRefusedError):
    """Nobody accepted the connection: STATUS_CONNECTION_REFUSED."""


class WskBrokenPipeError(NtStatusError, BrokenPipeError):
    """Sending is over: our graceful disconnect was issued (STATUS_PIPE_DISCONNECTED), or the
    remote side disconnected."""


class WskTimeoutError(NtStatusError, TimeoutError):
    """Time ran out: the transport gave up (STATUS_IO_TIMEOUT), or a blocking wait of
    :mod:`pywsk.sync` expired (STATUS_TIMEOUT) and its request was cancelled."""


class WskPermissionError(NtStatusError, PermissionError):
    """Access refused (STATUS_ACCESS_DENIED: address sharing denied)."""


class WskNameResolutionError(NtStatusError, socket.gaierror):
    """A name did not resolve (STATUS_NOT_FOUND, STATUS_NO_MATCH)."""


class SocketClosedError(NtStatusError):
    """The socket object is closed (STATUS_INVALID_HANDLE): you closed it, or it was closed
    while the request was pending."""


class RequestCancelledError(NtStatusError):
    """The request was cancelled (STATUS_CANCELLED) and nobody asked for it: the Pythonic
    layers raise this only when no better cause is known."""


class Failed(Exception):
    """Internal: ``operation`` failed with ``status`` (the core's decision), not yet an
    exception of the public API.  The Pythonic layers never let it out: each public call
    turns it into :meth:`error` at its boundary."""

    __slots__ = ("operation", "status")

    def __init__(self, status: int, operation: str) -> None:
        super().__init__(status, operation)
        self.status = status & 0xFFFFFFFF
        self.operation = operation

    def __repr__(self) -> str:
        return f"Failed({status_name(self.status)}, {self.operation!r})"

    def error(self) -> NtStatusError:
        """The public exception: :func:`error_from_status` (the one table)."""
        return error_from_status(self.status, self.operation)


class BusyError(RuntimeError):
    """Two tasks used an operation that allows one caller at a time (for example two
    concurrent ``receive_some`` calls on one connection).  It carries no status."""


_ErrorClass = type[NtStatusError]

S = NTSTATUS

#: The one table: NTSTATUS -> (exception class, errno).  Grouped by who ended what.
STATUS_ERRORS: Final[dict[int, tuple[_ErrorClass, int]]] = {
    # The peer ended the connection.
    S.STATUS_CONNECTION_RESET: (WskConnectionResetError, errno.ECONNRESET),
    S.STATUS_REMOTE_DISCONNECT: (WskConnectionResetError, errno.ECONNRESET),
    S.STATUS_GRACEFUL_DISCONNECT: (WskBrokenPipeError, errno.EPIPE),
    S.STATUS_CONNECTION_DISCONNECTED: (WskBrokenPipeError, errno.EPIPE),
    S.STATUS_PIPE_DISCONNECTED: (WskBrokenPipeError, errno.EPIPE),
    # We ended it.
    S.STATUS_CONNECTION_ABORTED: (WskConnectionAbortedError, errno.ECONNABORTED),
    S.STATUS_LOCAL_DISCONNECT: (WskConnectionAbortedError, errno.ECONNABORTED),
    S.STATUS_REQUEST_ABORTED: (WskConnectionAbortedError, errno.ECONNABORTED),
    # Nobody took it.
    S.STATUS_CONNECTION_REFUSED: (WskConnectionRefusedError, errno.ECONNREFUSED),
    S.STATUS_REMOTE_NOT_LISTENING: (WskConnectionRefusedError, errno.ECONNREFUSED),
    S.STATUS_PORT_UNREACHABLE: (WskConnectionRefusedError, errno.ECONNREFUSED),
    # Time ran out.
    S.STATUS_IO_TIMEOUT: (WskTimeoutError, errno.ETIMEDOUT),
    S.STATUS_TIMEOUT: (WskTimeoutError, errno.ETIMEDOUT),
    # The socket no longer works, or is gone.
    S.STATUS_FILE_FORCED_CLOSED: (WskConnectionError, errno.ENOTCONN),
    S.STATUS_INVALID_HANDLE: (SocketClosedError, errno.EBADF),
    S.STATUS_FILE_CLOSED: (SocketClosedError, errno.EBADF),
    S.STATUS_CANCELLED: (RequestCancelledError, errno.ECANCELED),
    # Routes and addresses.
    S.STATUS_NETWORK_UNREACHABLE: (NtStatusError, errno.ENETUNREACH),
    S.STATUS_HOST_UNREACHABLE: (NtStatusError, errno.EHOSTUNREACH),
    S.STATUS_PROTOCOL_UNREACHABLE: (NtStatusError, errno.EPROTONOSUPPORT),
    S.STATUS_NETWORK_BUSY: (NtStatusError, errno.ENETDOWN),
    S.STATUS_ADDRESS_ALREADY_ASSOCIATED: (NtStatusError, errno.EADDRINUSE),
    S.STATUS_ADDRESS_ALREADY_EXISTS: (NtStatusError, errno.EADDRINUSE),
    S.STATUS_INVALID_ADDRESS_COMPONENT: (NtStatusError, errno.EADDRNOTAVAIL),
    S.STATUS_INVALID_ADDRESS: (NtStatusError, errno.EADDRNOTAVAIL),
    S.STATUS_ACCESS_DENIED: (WskPermissionError, errno.EACCES),
    S.STATUS_NOT_FOUND: (WskNameResolutionError, socket.EAI_NONAME),
    S.STATUS_NO_MATCH: (WskNameResolutionError, socket.EAI_NONAME),
    # Wrong state or arguments.
    S.STATUS_CONNECTION_ACTIVE: (NtStatusError, errno.EISCONN),
    S.STATUS_CONNECTION_INVALID: (NtStatusError, errno.ENOTCONN),
    S.STATUS_INVALID_CONNECTION: (NtStatusError, errno.ENOTCONN),
    S.STATUS_INVALID_DEVICE_STATE: (NtStatusError, errno.EINVAL),
    S.STATUS_INVALID_PARAMETER: (NtStatusError, errno.EINVAL),
    S.STATUS_INVALID_BUFFER_SIZE: (NtStatusError, errno.EINVAL),
    S.STATUS_BUFFER_TOO_SMALL: (NtStatusError, errno.EMSGSIZE),
    S.STATUS_BUFFER_OVERFLOW: (NtStatusError, errno.EMSGSIZE),
    S.STATUS_ACCESS_VIOLATION: (NtStatusError, errno.EFAULT),
    S.STATUS_NOT_SUPPORTED: (NtStatusError, errno.EOPNOTSUPP),
    S.STATUS_INVALID_DEVICE_REQUEST: (NtStatusError, errno.EOPNOTSUPP),
    S.STATUS_NOT_IMPLEMENTED: (NtStatusError, errno.ENOSYS),
    S.STATUS_NOINTERFACE: (NtStatusError, errno.EPROTONOSUPPORT),
    # Resources and the provider itself.
    S.STATUS_INSUFFICIENT_RESOURCES: (NtStatusError, errno.ENOBUFS),
    S.STATUS_NO_MEMORY: (NtStatusError, errno.ENOMEM),
    S.STATUS_TOO_MANY_OPENED_FILES: (NtStatusError, errno.EMFILE),
    S.STATUS_DEVICE_NOT_READY: (NtStatusError, errno.EAGAIN),
    S.STATUS_UNEXPECTED_NETWORK_ERROR: (NtStatusError, errno.EIO),
    S.STATUS_UNSUCCESSFUL: (NtStatusError, errno.EIO),
    S.STATUS_INTERNAL_ERROR: (NtStatusError, errno.EIO),
}


def error_from_status(status: int, message: str | None = None) -> NtStatusError:
    """The exception for ``status`` (not raised): its class comes from :data:`STATUS_ERRORS`.

    ``ValueError`` for a success code (other than STATUS_TIMEOUT) or STATUS_PENDING: they
    are not failures.
    """
    status &= 0xFFFFFFFF
    if status != NTSTATUS.STATUS_TIMEOUT and NT_SUCCESS(status):
        raise ValueError(f"{status_name(status)} is not a failure")
    cls, _errno = STATUS_ERRORS.get(status, (UnknownStatusError, errno.EIO))
    return cls(status, message)


def raise_for_status(status: int, message: str | None = None) -> None:
    """Raise the exception for ``status`` unless it reports success.

    STATUS_TIMEOUT raises :class:`WskTimeoutError` although ``NT_SUCCESS`` calls it a
    success; STATUS_PENDING raises ``ValueError`` (a request is not finished until its IRP
    completes).
    """
    status &= 0xFFFFFFFF
    if status == NTSTATUS.STATUS_PENDING:
        raise ValueError("STATUS_PENDING is not a final status: wait for the IRP's completion")
    if status == NTSTATUS.STATUS_TIMEOUT or not NT_SUCCESS(status):
        raise error_from_status(status, message)
