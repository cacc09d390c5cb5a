"""The native front-ends' framework-neutral part: TCP on the caller's event loop.

:mod:`pywsk.aio` (and :mod:`pywsk.trio`) run over this package instead of the WSK provider:
no provider thread, no IRP per operation.  The semantics are not written again here: the
state machine, verdicts and statuses are :mod:`pywsk.core`'s, the kernel recipes
:mod:`pywsk.mechanics`' - the faithful provider uses the same two.
:mod:`~pywsk._native.connection` is one connection, :mod:`~pywsk._native.steps` the
listening socket and the connect and listen sequences.
"""

from .connection import (
    DEFAULT_RECEIVE_SIZE,
    DisconnectReason,
    NativeConnection,
    SocketOption,
    Waiter,
    close_logged,
    log_abort,
    log_disconnect,
    log_failure,
    open_sockets,
)
from .steps import NativeListener, Resolve, connect_steps, listen_steps, resolve_steps

__all__ = [
    "DEFAULT_RECEIVE_SIZE",
    "DisconnectReason",
    "NativeConnection",
    "NativeListener",
    "Resolve",
    "SocketOption",
    "Waiter",
    "close_logged",
    "connect_steps",
    "listen_steps",
    "log_abort",
    "log_disconnect",
    "log_failure",
    "open_sockets",
    "resolve_steps",
]
