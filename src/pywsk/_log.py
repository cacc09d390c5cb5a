"""The shape of pywsk's DEBUG records about socket operations, in one place.

What it does: :func:`log_operation` writes one DEBUG record for the outcome of one WSK
operation on one socket, to the logger of the module that saw it
(``logging.getLogger(__name__)``: ``pywsk.aio._connection``, ``pywsk.trio``,
``pywsk.sync``, ``pywsk.verifier``, ...).  A record reads::

    WskDisconnect socket 0x7f3a5c1e2b40: STATUS_SUCCESS (0x00000000) - graceful: our FIN acknowledged

that is ``"%s socket %s: %s%s"`` with the operation (a WSK function name), the socket
(``0x`` and the id of its WSK_SOCKET, the same in every layer; ``-`` when there is none,
as after a failed connect), the NTSTATUS by name, and an optional detail after ``" - "``.
The same facts are attributes of the record, for filters and handlers:

* ``record.wsk_operation`` - ``"WskConnect"``, ``"WskDisconnect"``, ``"WskCloseSocket"``, ...
* ``record.wsk_socket`` - the socket's id string (``"0x7f3a5c1e2b40"``) or None;
* ``record.ntstatus`` - the NTSTATUS as an unsigned 32-bit int (None for a verifier report
  that has none).

:func:`log_settled` derives the detail of a front-end call (graceful or abortive, FIN
acknowledged, a close that resets) from the connection's state; :func:`logged_connect`
logs a connect sequence's outcome.  Every layer from :mod:`pywsk.nt` up may import this
module, the provider included, so that all records share one shape.

What it refuses: to cost anything when DEBUG is off - each function returns after one
``isEnabledFor`` check (a cached lookup), before formatting anything.  The status in a
record is the one an IRP's completion (or the call) returned; a detail that is not
observed says so by naming the rule (``WskCloseSocket aborts the connection``).

What always holds: the package logger ``pywsk`` has a NullHandler (``pywsk/__init__.py``),
so an application that configures no logging sees nothing.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Generator
from typing import Any, Protocol, TypeVar

from .nt.status import NT_SUCCESS, NTSTATUS, status_name

__all__ = [
    "log_connect",
    "log_operation",
    "log_settled",
    "logged_connect",
    "report_unraisable",
    "socket_id",
]


def socket_id(sock: object | None) -> str | None:
    """The id string of a WSK socket in log records (``"0x7f3a5c1e2b40"``), or None."""
    return None if sock is None else f"{id(sock):#x}"


def log_operation(
    logger: logging.Logger,
    operation: str,
    sock: object | None,
    status: int | None,
    detail: str = "",
) -> None:
    """One DEBUG record: ``operation`` on ``sock`` ended with ``status`` (see the module;
    None: the report has no status, as for most verifier reports)."""
    if not logger.isEnabledFor(logging.DEBUG):
        return
    value = None if status is None else status & 0xFFFFFFFF
    ident = socket_id(sock)
    logger.debug(
        "%s socket %s: %s%s",
        operation,
        ident or "-",
        "-" if value is None else status_name(value),
        f" - {detail}" if detail else "",
        extra={"wsk_operation": operation, "wsk_socket": ident, "ntstatus": value},
    )


def _endpoint(address: tuple[Any, ...]) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def log_connect(
    logger: logging.Logger,
    sock: object | None,
    status: int,
    remote: tuple[Any, ...],
    local: tuple[Any, ...] | None = None,
) -> None:
    """The record of a connect (``WskConnect``): ``local -> remote``, or the failure."""
    if not logger.isEnabledFor(logging.DEBUG):
        return
    where = _endpoint(remote) if local is None else f"{_endpoint(local)} -> {_endpoint(remote)}"
    log_operation(logger, "WskConnect", sock, status, where)


class _Connected(Protocol):
    socket: Any
    local: tuple[Any, ...]
    remote: tuple[Any, ...]


C = TypeVar("C")
K = TypeVar("K", bound=_Connected)


def logged_connect(
    logger: logging.Logger, host: str, port: int, steps: Generator[C, None, K]
) -> Generator[C, None, K]:
    """``steps`` (a connect sequence of the Pythonic layers), with its outcome logged: the
    connection, or the NTSTATUS of the failure (an exception with a ``status``)."""
    try:
        connection = yield from steps
    except OSError as exc:
        status = getattr(exc, "status", None)
        if isinstance(status, int):
            log_connect(logger, None, status, (host, port))
        raise
    log_connect(logger, connection.socket, 0, connection.remote, connection.local)
    return connection


class _Call(Protocol):
    name: str
    status: int


class _Connection(Protocol):
    socket: Any
    fin_acked: bool
    eof: bool
    aborted: bool


def log_settled(logger: logging.Logger, core: _Connection, call: _Call, what: str) -> None:
    """The record of a front-end call on a connection, once settled.

    ``what``: ``"disconnect"`` (graceful), ``"abort"``, ``"close"``, or ``"receive"`` /
    ``"send"`` (callers log these only when they failed or saw the peer's FIN: the hot path
    logs nothing).
    """
    if not logger.isEnabledFor(logging.DEBUG):
        return
    ok = NT_SUCCESS(call.status)
    if what == "disconnect":
        detail = "graceful: our FIN acknowledged" if ok else "graceful: failed"
    elif what == "abort":
        detail = "abortive (WSK_FLAG_ABORTIVE)"
    elif what == "close":
        if core.fin_acked and core.eof:
            detail = "both directions were disconnected"
        elif core.aborted:
            detail = "after an abortive disconnect"
        else:
            detail = "not disconnected in both directions: WskCloseSocket aborts the connection"
    elif call.status & 0xFFFFFFFF == NTSTATUS.STATUS_CONNECTION_RESET:
        detail = "the peer reset the connection"
    elif ok and what == "receive":
        detail = "0 bytes: the peer's FIN"
    else:
        detail = ""
    log_operation(logger, call.name, core.socket, call.status, detail)


def _unraisable_type() -> type:
    """The type ``sys.unraisablehook`` is documented to receive (not exported by ``sys``):
    taken from one unraisable exception raised and caught on purpose, once."""
    found: list[type] = []
    previous = sys.unraisablehook

    def catch(args: Any) -> None:
        found.append(type(args))

    class _Probe:
        def __del__(self) -> None:
            raise RuntimeError("pywsk: probing the unraisable-hook argument type")

    sys.unraisablehook = catch
    try:
        _Probe()
    finally:
        sys.unraisablehook = previous
    return found[0]


_UnraisableHookArgs = _unraisable_type()


def report_unraisable(exc: BaseException, message: str, obj: object) -> None:
    """Report an exception nobody can catch, without stopping the thread that saw it.

    Goes to ``sys.unraisablehook`` with a real ``UnraisableHookArgs`` (printed by default,
    a test failure under pytest).  A hook that itself fails is reported by Python's default
    hook, so nothing escapes.
    """
    hook_args = _UnraisableHookArgs((type(exc), exc, exc.__traceback__, message, obj))
    try:
        sys.unraisablehook(hook_args)
    except BaseException:
        sys.__unraisablehook__(hook_args)
