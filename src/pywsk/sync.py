"""pywsk for scripts: blocking WSK connections with timeouts, in the style of KSOCKET.

What it does: :func:`connect` gives a :class:`Connection` with ``send``, ``recv``,
``disconnect``, ``abort`` and ``close``; :func:`listen` gives a :class:`Listener` with
``accept``.  Each operation is a WSK call on its own IRP, exactly as a KSOCKET-style
driver makes it: a completion routine that sets a KEVENT and returns
STATUS_MORE_PROCESSING_REQUIRED, and ``KeWaitForSingleObject`` on that event in the
calling thread (PASSIVE_LEVEL) - with the timeout you give.

What it refuses: to report a timeout as success.  ``KeWaitForSingleObject`` answers
STATUS_TIMEOUT, which ``NT_SUCCESS`` counts as a *success* code - the trap of wrappers that
return it as if the request had completed.  Here a timeout cancels the IRP (IoCancelIrp),
waits for its completion, and then:

* the cancel won (STATUS_CANCELLED): the request had no effect, and
  :class:`~pywsk.errors.WskTimeoutError` (a ``TimeoutError``, ``.status`` STATUS_TIMEOUT) is
  raised;
* the request completed anyway: its real result is returned (data received, bytes sent)
  or its real failure raised.  Nothing is lost.

A send the transport has started taking cannot be cancelled, so after a timeout it waits
until all of it is taken (or the connection ends: :meth:`Connection.abort` from another
thread ends it at once).  A graceful ``disconnect`` is not cancelled by its timeout (a FIN
cannot be recalled): ``WskTimeoutError`` is raised and calling ``disconnect()`` again waits
for the same disconnect.

What always holds: every IRP is complete, and freed, before the call that issued it
returns (except a timed-out disconnect, which the connection keeps); failures are
:mod:`pywsk.errors` exceptions.  ``close()`` is WskCloseSocket: **it resets (RST) a
connection that is not disconnected in both directions** - ``disconnect()``, ``recv()``
until ``b""``, then ``close()`` is the graceful path.  A Connection may be used by one
sending and one receiving thread at once; ``abort()`` and ``close()`` from any thread.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Generator, Iterator, Sequence
from types import TracebackType
from typing import Any, TypeVar

from ._bridge import (
    DEFAULT_RECEIVE_SIZE,
    Call,
    ConnectionCore,
    DisconnectReason,
    ListenerCore,
    SocketOption,
    connect_steps,
    listen_steps,
    start_control,
)
from ._log import log_settled, logged_connect
from .aio._receiving import Steps, drive_steps_blocking, exactly_steps, take, until_steps
from .errors import BusyError, NtStatusError, error_from_status
from .nt.event import (
    KEVENT,
    LARGE_INTEGER,
    Executive,
    KeInitializeEvent,
    KeSetEvent,
    KeWaitForSingleObject,
    NotificationEvent,
)
from .nt.irp import IO_NO_INCREMENT
from .nt.mdl import KernelMode
from .nt.status import NTSTATUS
from .wsk.structs import WSK_SOCKET, check_port

__all__ = ["Connection", "DisconnectReason", "Listener", "connect", "listen"]

T = TypeVar("T")

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Waiting: KEVENT + KeWaitForSingleObject, as a driver thread does
# --------------------------------------------------------------------------------------------


def _event() -> KEVENT:
    event = KEVENT()
    KeInitializeEvent(event, NotificationEvent, False)
    return event


def _nt_timeout(deadline: float | None) -> LARGE_INTEGER | None:
    """A relative NT timeout (negative, 100-ns units) for the time left until ``deadline``."""
    if deadline is None:
        return None
    left = max(deadline - time.monotonic(), 0.0)
    return LARGE_INTEGER(-max(int(left * 10_000_000), 1))


def _wait(call: Call, deadline: float | None) -> bool:
    """Wait for ``call``; True if the deadline passed first (the IRP was then cancelled and
    its completion awaited: ``call.status`` says whether the cancel won)."""
    event = _event()
    if not call.arm(lambda _deliver: _signal(event), _nothing):
        return False
    status = KeWaitForSingleObject(event, Executive, KernelMode, False, _nt_timeout(deadline))
    if status == NTSTATUS.STATUS_SUCCESS:
        return False
    # STATUS_TIMEOUT is a success code: never let it pass for the request's result.
    call.cancel()
    KeWaitForSingleObject(event, Executive, KernelMode, False, None)
    return True


def _signal(event: KEVENT) -> None:
    KeSetEvent(event, IO_NO_INCREMENT, False)


def _nothing() -> None:
    pass


def _deadline(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if timeout < 0:
        raise ValueError("timeout must be >= 0 or None")
    return time.monotonic() + timeout


def _timed_out(what: str, timeout: float | None) -> Exception:
    return error_from_status(
        NTSTATUS.STATUS_TIMEOUT,
        f"{what}: no completion within {timeout} s; the IRP was cancelled and had no effect",
    )


def _drive(steps: Generator[Call, None, T], timeout: float | None, what: str) -> T:
    deadline = _deadline(timeout)
    thrown = False
    try:
        call = next(steps)
        while True:
            timed_out = _wait(call, None if thrown else deadline)
            if timed_out and not thrown and not call.succeeded:
                thrown = True
                call = steps.throw(_timed_out(what, timeout))
            else:
                call = steps.send(None)
    except StopIteration as stop:
        result: T = stop.value
        return result


def _view(data: bytes | bytearray | memoryview) -> memoryview:
    return memoryview(data).cast("B")


# --------------------------------------------------------------------------------------------
# Connections
# --------------------------------------------------------------------------------------------


def connect(
    host: str,
    port: int,
    *,
    timeout: float | None = None,
    options: Sequence[SocketOption] = (),
    local: tuple[str, int] | None = None,
) -> Connection:
    """Connect to ``host``:``port`` (WskSocket, WskBind, WskConnect), waiting at most
    ``timeout`` seconds in all (None: no limit).  On timeout the pending call is cancelled,
    the socket closed, and :class:`~pywsk.errors.WskTimeoutError` raised.  A port outside
    0..65535 raises ``ValueError`` before any call."""
    check_port(port, local)
    steps = logged_connect(log, host, port, connect_steps(host, port, options, local))
    return Connection(_drive(steps, timeout, "connect"))


class Connection:
    """A blocking WSK connection.  Use ``with`` (or ``close()``); see the module docstring."""

    def __init__(self, core: ConnectionCore) -> None:
        self._core = core
        self._sending = threading.Lock()
        self._receiving = threading.Lock()
        self._disconnected = _event()
        self._settling = threading.Lock()
        self._disconnect_settled = False
        #: Bytes received and not yet returned (kept by receive_exactly / receive_until).
        self._leftover = bytearray()

    def __repr__(self) -> str:
        return f"<pywsk.sync.Connection {self._core!r}>"

    def __enter__(self) -> Connection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def local_address(self) -> tuple[Any, ...]:
        return self._core.local

    @property
    def remote_address(self) -> tuple[Any, ...]:
        return self._core.remote

    @property
    def disconnected_by(self) -> DisconnectReason | None:
        """How the connection ended, as far as this side saw (first cause), or None."""
        return self._core.reason

    @property
    def bytes_sent(self) -> int:
        return self._core.bytes_sent

    @property
    def bytes_received(self) -> int:
        return self._core.bytes_received

    @property
    def socket(self) -> WSK_SOCKET:
        """The WSK socket underneath (do not close it yourself)."""
        return self._core.socket

    def _check(self) -> ConnectionCore:
        core = self._core
        if core.closed:
            raise error_from_status(NTSTATUS.STATUS_INVALID_HANDLE, "the connection is closed")
        return core

    def send(self, data: bytes | bytearray | memoryview, timeout: float | None = None) -> int:
        """Send all of ``data`` (one WskSend); returns its length once the transport took it.

        Timeout: see the module docstring (a send not started is cancelled and
        ``WskTimeoutError`` raised; one partly taken completes).  Raises the failure
        (``ConnectionResetError``, ...), ``WskBrokenPipeError`` after ``disconnect()``.
        """
        core = self._check()
        view = _view(data)
        if core.disconnect_call is not None:
            raise error_from_status(NTSTATUS.STATUS_PIPE_DISCONNECTED, "send after disconnect()")
        if not view.nbytes:
            return 0
        deadline = _deadline(timeout)
        if not self._sending.acquire(blocking=False):
            raise BusyError("another thread is sending on this connection")
        try:
            call = core.start_send(view)
            timed_out = _wait(call, deadline)
            try:
                sent = core.settle_send(call, cancelled=timed_out)
            except NtStatusError:
                log_settled(log, core, call, "send")
                raise
        finally:
            self._sending.release()
        if sent is None:
            raise _timed_out("send", timeout)
        return sent

    def recv(self, max_bytes: int = DEFAULT_RECEIVE_SIZE, timeout: float | None = None) -> bytes:
        """Receive at most ``max_bytes``: at least one byte, or ``b""`` once the peer
        disconnected gracefully.  Timeout: the WskReceive is cancelled; if data had arrived
        it is returned, else ``WskTimeoutError`` is raised."""
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        self._check()
        deadline = _deadline(timeout)
        with self._receiver():
            if self._leftover:
                return take(self._leftover, max_bytes)
            return self._recv(max_bytes, deadline, timeout)

    def receive_exactly(self, size: int, timeout: float | None = None) -> bytes:
        """Exactly ``size`` bytes, over as many receives as it takes, within ``timeout``
        seconds in all.  Raises ``asyncio.IncompleteReadError`` (an ``EOFError``;
        ``.partial``: the bytes there were) if the peer's FIN comes first,
        ``WskTimeoutError`` on timeout (the bytes received so far are kept for the next
        receive), and what :meth:`recv` raises."""
        return self._receive_steps(exactly_steps(self._leftover, size), timeout)

    def receive_until(self, separator: bytes, max_size: int, timeout: float | None = None) -> bytes:
        """The bytes before the next ``separator`` (consumed, not returned); bytes after it
        are kept for the next receive.  Raises ``asyncio.LimitOverrunError`` when more
        than ``max_size`` bytes come before it (they stay), ``asyncio.IncompleteReadError``
        if the peer's FIN comes first, ``WskTimeoutError`` as :meth:`receive_exactly`."""
        return self._receive_steps(until_steps(self._leftover, separator, max_size), timeout)

    @contextlib.contextmanager
    def _receiver(self) -> Iterator[None]:
        if not self._receiving.acquire(blocking=False):
            raise BusyError("another thread is receiving on this connection")
        try:
            yield
        finally:
            self._receiving.release()

    def _receive_steps(self, steps: Steps, timeout: float | None) -> bytes:
        self._check()
        deadline = _deadline(timeout)
        with self._receiver():
            return drive_steps_blocking(steps, lambda size: self._recv(size, deadline, timeout))

    def _recv(self, max_bytes: int, deadline: float | None, timeout: float | None) -> bytes:
        """One WskReceive; the caller holds ``_receiving``."""
        core = self._check()
        if core.eof:
            return b""
        call = core.start_receive(max_bytes)
        timed_out = _wait(call, deadline)
        try:
            data = core.settle_receive(call, cancelled=timed_out)
        except NtStatusError:
            log_settled(log, core, call, "receive")
            raise
        if data is None:
            raise _timed_out("recv", timeout)
        if not data:
            log_settled(log, core, call, "receive")
        return data

    def disconnect(
        self, final: bytes | bytearray | memoryview | None = None, timeout: float | None = None
    ) -> None:
        """Graceful disconnect: ``final``, then our FIN after every pending send; returns when
        our FIN is acknowledged.  Receiving goes on afterwards (half-open).  On timeout the
        disconnect goes on (``WskTimeoutError``; call again to wait for it)."""
        core = self._check()
        deadline = _deadline(timeout)
        call = core.disconnect_call
        if call is None:
            data = bytes(final) if final is not None else b""
            call = core.start_disconnect(data or None)
            event = self._disconnected
            if not call.arm(lambda _deliver: _signal(event), _nothing):
                _signal(event)
        elif final is not None and len(final):
            raise error_from_status(
                NTSTATUS.STATUS_PIPE_DISCONNECTED, "disconnect() was called already"
            )
        status = KeWaitForSingleObject(
            self._disconnected, Executive, KernelMode, False, _nt_timeout(deadline)
        )
        if status != NTSTATUS.STATUS_SUCCESS:
            raise error_from_status(
                NTSTATUS.STATUS_TIMEOUT,
                f"disconnect: our FIN not acknowledged within {timeout} s; the disconnect goes on",
            )
        self._settle_disconnect()
        error = core.disconnect_error
        if error is not None:
            raise type(error)(error.status, error.message)

    def _settle_disconnect(self) -> None:
        """Settle the completed graceful disconnect, once (in a caller's thread)."""
        with self._settling:
            call = self._core.disconnect_call
            if call is not None and not self._disconnect_settled:
                self._disconnect_settled = True
                self._core.settle_disconnect(call)
                log_settled(log, self._core, call, "disconnect")

    def abort(self) -> None:
        """Reset the connection now (an RST); pending sends and receives end.  Does nothing
        after ``close()``, an earlier ``abort()``, or once the connection is gone."""
        core = self._core
        if core.closed or core.aborted:
            return
        call = core.start_abort()
        _wait(call, None)
        core.settle_abort(call)
        log_settled(log, core, call, "abort")

    def close(self) -> None:
        """WskCloseSocket (idempotent): **an RST unless disconnected in both directions**."""
        core = self._core
        if core.closed:
            return
        call = core.start_close()
        _wait(call, None)
        core.settle_close(call)
        log_settled(log, core, call, "close")
        if core.disconnect_call is not None:
            # The close completed a pending disconnect before its own IRP: settle it too.
            self._settle_disconnect()

    def set_option(self, level: int, option: int, value: int) -> None:
        """WskControlSocket(WskSetOption) with wsk.h constants; raises the failure."""
        call = start_control(self._check().socket, level, option, value)
        _wait(call, None)
        try:
            call.check()
        finally:
            call.release()


# --------------------------------------------------------------------------------------------
# Listeners
# --------------------------------------------------------------------------------------------


def listen(
    host: str, port: int, *, options: Sequence[SocketOption] = (), timeout: float | None = None
) -> Listener:
    """A WSK listening socket on ``host``:``port`` (0: any free port; outside 0..65535:
    ``ValueError`` before any call)."""
    check_port(port)
    return Listener(_drive(listen_steps(host, port, options), timeout, "listen"))


class Listener:
    """A blocking WSK listening socket.  Use ``with`` (or ``close()``)."""

    def __init__(self, core: ListenerCore) -> None:
        self._core = core

    def __repr__(self) -> str:
        return f"<pywsk.sync.Listener {self._core!r}>"

    def __enter__(self) -> Listener:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def local_address(self) -> tuple[Any, ...]:
        return self._core.local

    def accept(self, timeout: float | None = None) -> Connection:
        """The next connection (one WskAccept).  On timeout the WskAccept is cancelled; a
        connection it delivered anyway is returned, else ``WskTimeoutError`` is raised."""
        core = self._core
        if core.closed:
            raise error_from_status(NTSTATUS.STATUS_INVALID_HANDLE, "the listener is closed")
        deadline = _deadline(timeout)
        call = core.start_accept()
        timed_out = _wait(call, deadline)
        accepted = core.settle_accept(call, cancelled=timed_out)
        if accepted is None:
            raise _timed_out("accept", timeout)
        return Connection(accepted)

    def close(self) -> None:
        """Close the listening socket (idempotent)."""
        core = self._core
        if core.closed:
            return
        call = core.start_close()
        _wait(call, None)
        core.settle_close(call)
