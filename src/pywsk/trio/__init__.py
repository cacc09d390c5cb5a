"""pywsk for trio (and anyio on its trio backend): TCP connections as trio streams,
natively on trio's loop.

What it does: :func:`open_connection` returns a :class:`WskStream`, a
``trio.abc.HalfCloseableStream`` over one connection; :func:`open_listener` returns a
:class:`WskListener`, a ``trio.abc.Listener`` for ``trio.serve_listeners``.  Each
operation is a non-blocking syscall on trio's thread through
:class:`pywsk._native.NativeConnection` - the state machine and verdicts of
:mod:`pywsk.core`, the kernel recipes of :mod:`pywsk.mechanics`, the same code the faithful
WSK provider runs; there is no provider thread and no IRP.  The sockets of a trio run are
registered once in one edge-triggered epoll (the acknowledgement of our FIN is only seen as
an edge), whose descriptor a system task watches with ``trio.lowlevel.wait_readable``
(:mod:`pywsk.trio._waiting`: how the native code waits on trio's loop; this module holds
the stream and listener contracts).

The stream follows trio's contracts (``trio.testing.check_half_closeable_stream`` passes
over real loopback TCP): ``BusyResourceError`` for overlapping calls on one direction,
``ClosedResourceError`` after a local close, ``BrokenResourceError`` (caused by the
:mod:`pywsk.errors` exception, which carries the NTSTATUS) when the connection failed,
``b""`` after the peer's FIN.  ``send_all`` returns when the kernel took every byte;
``send_eof`` disconnects gracefully and returns when our FIN is acknowledged.

What it refuses: nothing beyond trio's contracts.  ``aclose()`` is graceful (our FIN
acknowledged) and then closes, which **resets the connection (RST) if the peer has not
closed its direction yet** - every byte we sent was acknowledged before it, so none is
lost.  The graceful part waits for the peer to acknowledge, so it can wait for ever on a
peer that never reads: bound it with a cancel scope.  A cancelled ``aclose()``
(``trio.aclose_forcefully``) skips the graceful part: RST at once, and the socket is closed
all the same.  A ``send_all`` interrupted after the kernel took part of it (cancelled, or
Ctrl-C) breaks the stream, trio's rule for a cancelled ``send_all``: the next ``aclose()``
does not wait for the peer and resets at once.

What always holds: a receive takes bytes from the kernel only when it returns them, so a
cancelled ``receive_some`` loses nothing; a closed stream's socket has left the poller.
"""

from __future__ import annotations

import logging
import operator
import socket
from collections.abc import Sequence
from types import TracebackType
from typing import Any

try:
    import trio  # type: ignore[import-untyped, unused-ignore]
except ImportError as exc:  # pragma: no cover - tested from a wheel (tests/package)
    raise ImportError(
        "pywsk.trio needs trio, which is not installed: pip install 'pywsk[trio]'",
        name=exc.name,
        path=exc.path,
    ) from exc

from .._log import log_connect, log_operation
from .._native import (
    DEFAULT_RECEIVE_SIZE,
    NativeConnection,
    NativeListener,
    SocketOption,
    close_logged,
    connect_steps,
    deprecated_attribute,
    listen_steps,
    log_abort,
    log_disconnect,
    log_failure,
)
from .._receiving import Steps, exactly_steps, take, until_steps
from ..core.ending import Ending
from ..errors import Failed
from ..nt.status import NTSTATUS
from ..wsk.structs import check_port
from ._waiting import Waiter, drive, poller, wait_edge

__all__ = [
    "Ending",
    "WskListener",
    "WskStream",
    "open_connection",
    "open_listener",
]

log = logging.getLogger(__name__)


def __getattr__(name: str) -> Any:
    # DisconnectReason: deprecated for one release (disconnected_by reports an Ending).
    return deprecated_attribute(__name__, name)


# --------------------------------------------------------------------------------------------
# Streams (waiting on trio's loop is pywsk.trio._waiting's)
# --------------------------------------------------------------------------------------------


class _Conflict:
    """trio's conflict detector: one task at a time, else BusyResourceError."""

    __slots__ = ("_held", "_message")

    def __init__(self, message: str) -> None:
        self._message = message
        self._held = False

    def __enter__(self) -> None:
        if self._held:
            raise trio.BusyResourceError(self._message)
        self._held = True

    def __exit__(self, *exc: object) -> None:
        self._held = False


def _max_bytes(max_bytes: int | None) -> int:
    if max_bytes is None:
        return DEFAULT_RECEIVE_SIZE
    size = operator.index(max_bytes)
    if size < 1:
        raise ValueError("max_bytes must be >= 1")
    return size


# --------------------------------------------------------------------------------------------
# Connections
# --------------------------------------------------------------------------------------------


async def open_connection(
    host: str,
    port: int,
    *,
    options: Sequence[SocketOption] = (),
    local: tuple[str, int] | None = None,
) -> WskStream:
    """Connect to ``host``:``port`` (resolved with ``trio.socket.getaddrinfo``; each address
    in turn).

    ``options`` are ``(level, option, value)`` with wsk.h constants, set before binding;
    ``local`` is the address to bind.  Raises the :mod:`pywsk.errors` exception of the
    failure (an ``OSError``).  A cancel stops the handshake and closes the socket.  A port
    outside 0..65535 raises ``ValueError`` before any call.
    """
    check_port(port, local)
    try:
        native = await drive(connect_steps(poller(), host, port, options, local))
    except Failed as failed:
        log_connect(log, None, failed.status, (host, port))
        raise failed.error() from None
    if log.isEnabledFor(logging.DEBUG):
        log_connect(log, native.sock, 0, native.remote, native.local)
    return WskStream(native)


class WskStream(trio.abc.HalfCloseableStream):  # type: ignore[misc, unused-ignore]
    """A trio ``HalfCloseableStream`` over one TCP connection.

    ``send_all`` / ``wait_send_all_might_not_block`` / ``send_eof`` share one conflict
    detector, ``receive_some`` has its own.  Besides trio's interface: :meth:`abort` (an
    RST now), :attr:`disconnected_by`, the addresses.  Make it with
    :func:`open_connection` or :meth:`WskListener.accept`.
    """

    def __init__(self, conn: NativeConnection) -> None:
        self._conn = conn
        self._send_conflict = _Conflict("another task is using this stream for sending")
        self._receive_conflict = _Conflict("another task is receiving on this stream")
        self._closing = False
        self._eof_sent = False
        #: Bytes received and not yet returned (kept by receive_exactly / receive_until).
        self._leftover = bytearray()
        #: A send_all was interrupted after the kernel took part of it: aclose() resets.
        self._interrupted = False
        #: The ``async with`` block was left by a KeyboardInterrupt or a cancellation.
        self._abandoned = False
        #: What the kernel did not take of the last send_all, pushed at the write edges.
        self._inflight: _Pusher | None = None
        self._inflight_done: trio.Event | None = None
        #: How the data in flight failed (reported by the next send-side call).
        self._send_error: Failed | None = None

    def __repr__(self) -> str:
        return f"<pywsk.trio.WskStream {self._conn!r}>"

    @property
    def local_address(self) -> tuple[Any, ...]:
        return self._conn.local

    @property
    def remote_address(self) -> tuple[Any, ...]:
        return self._conn.remote

    @property
    def disconnected_by(self) -> Ending | None:
        """How the connection ended, as far as this side saw (an
        :class:`~pywsk.core.ending.Ending`), or None."""
        return self._conn.ending

    @property
    def socket(self) -> socket.socket:
        """The kernel socket underneath (for inspection; do not use or close it yourself)."""
        return self._conn.sock

    def _closed_error(self) -> trio.ClosedResourceError:
        return trio.ClosedResourceError("this stream was closed")

    def _failure(self, failed: Failed, operation: str) -> BaseException:
        """The stream's boundary: trio's exception for a failure of the connection
        underneath (logged), caused by the :mod:`pywsk.errors` exception of its status.
        Raise it without ``from``: its ``__cause__`` is set."""
        error = failed.error()
        if self._closing or failed.status == NTSTATUS.STATUS_INVALID_HANDLE:
            closed = self._closed_error()
            closed.__cause__ = error
            return closed
        log_failure(log, self._conn, operation, failed)
        broken = trio.BrokenResourceError(f"the connection failed: {error}")
        broken.__cause__ = error
        return broken

    # --- SendStream ---------------------------------------------------------------------------
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """``aclose()``; leaving the block by a ``KeyboardInterrupt`` or a cancellation (not an
        ``Exception``) skips the graceful part: the close resets at once instead of waiting
        for the peer (a Ctrl-C must not be followed by a wait on a peer that never reads -
        and trio may raise it anywhere, even between a send and its bookkeeping)."""
        if exc is not None and not isinstance(exc, Exception):
            self._abandoned = True
        await self.aclose()

    # --- the data in flight ----------------------------------------------------------------------
    def _check_send_error(self) -> None:
        failed = self._send_error
        if failed is not None:
            error = failed.error()
            raise trio.BrokenResourceError(f"the connection failed: {error}") from error

    async def _wait_inflight(self, check_closed: bool = True) -> bool:
        """Wait (cancellable) until no data is in flight; True if it slept.

        Interrupted (cancelled, or a KeyboardInterrupt) while data is still in flight, the
        stream is broken (trio's rule for a cancelled send): the next ``aclose()`` does not
        wait for that data - the peer may never read it - and resets at once.
        """
        slept = False
        while self._inflight is not None:
            done = self._inflight_done
            assert done is not None
            slept = True
            try:
                await done.wait()
            except BaseException:
                self._interrupted = True
                raise
            if check_closed and self._closing:
                raise self._closed_error()
        return slept

    def _sent(self, error: Failed | None) -> None:
        """The data in flight went to the kernel (or failed: ``error``)."""
        if error is not None and self._send_error is None:
            self._send_error = error
            if not self._closing:
                self._failure(error, "WskSend")  # (logged)
        self._inflight = None
        done, self._inflight_done = self._inflight_done, None
        if done is not None:
            done.set()

    # --- SendStream (continued) ---------------------------------------------------------------
    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Hand ``data`` to the kernel: what it does not take now is copied and sent as room
        comes (at most one such remainder per stream: a later send-side call waits for it),
        so a cancelled ``send_all`` has had no effect at all."""
        with self._send_conflict:
            if self._closing:
                raise self._closed_error()
            if self._eof_sent:
                raise trio.ClosedResourceError("send_eof() was called on this stream")
            view = memoryview(data).cast("B")
            await trio.lowlevel.checkpoint_if_cancelled()
            slept = await self._wait_inflight()
            self._check_send_error()
            if view.nbytes:
                conn = self._conn
                try:
                    sent = conn.send_some(view)
                except Failed as failed:
                    raise self._failure(failed, "WskSend")  # noqa: B904 (its cause is set)
                if sent < view.nbytes:
                    pusher = _Pusher(self, conn, bytes(view[sent:]))
                    self._inflight_done = trio.Event()
                    self._inflight = pusher
                    conn.writer = pusher
            if not slept:
                await trio.lowlevel.cancel_shielded_checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        with self._send_conflict:
            if self._closing:
                raise self._closed_error()
            await trio.lowlevel.checkpoint_if_cancelled()
            if not await self._wait_inflight():
                await trio.lowlevel.cancel_shielded_checkpoint()

    async def send_eof(self) -> None:
        with self._send_conflict:
            if self._closing:
                raise self._closed_error()
            if self._eof_sent and self._conn.disconnect_done:
                await trio.lowlevel.checkpoint()
                return
            # (A send_eof whose wait was cancelled: this one waits for the same FIN.)
            await trio.lowlevel.checkpoint_if_cancelled()
            await self._wait_inflight()
            self._check_send_error()
            self._eof_sent = True
            try:
                await self._disconnect()
            except Failed as failed:
                error = failed.error()
                raise trio.BrokenResourceError(f"the disconnect failed: {error}") from error

    async def _disconnect(self) -> None:
        """Our FIN; waits for its acknowledgement.  A cancel stops the wait only (a FIN
        cannot be recalled): the outcome stays with the connection."""
        conn = self._conn
        if not conn.disconnect_requested:
            try:
                conn.issue_fin()
            finally:
                if conn.disconnect_done:
                    log_disconnect(log, self._conn)
        slept = False
        while not conn.disconnect_done:
            slept = True
            waiter = Waiter()
            conn.fin_waiters.append(waiter)

            def forget(waiter: Waiter = waiter) -> None:
                if waiter in conn.fin_waiters:
                    conn.fin_waiters.remove(waiter)

            await waiter.wait(forget)
        if slept:
            log_disconnect(log, self._conn)
        else:
            await trio.lowlevel.cancel_shielded_checkpoint()
        outcome = conn.disconnect_error
        if outcome is not None:
            raise outcome

    # --- ReceiveStream ------------------------------------------------------------------------
    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        size = _max_bytes(max_bytes)
        with self._receive_conflict:
            if self._closing:
                raise self._closed_error()
            if self._leftover:
                await trio.lowlevel.checkpoint()
                return take(self._leftover, size)
            return await self._receive(size)

    async def receive_exactly(self, size: int) -> bytes:
        """Exactly ``size`` bytes, over as many receives as it takes.

        Raises ``asyncio.IncompleteReadError`` (an ``EOFError``; ``.partial``: the bytes
        there were) if the peer's FIN comes first, and what ``receive_some`` raises.
        Cancelled, it keeps the bytes received so far for the next receive.
        """
        with self._receive_conflict:
            return await self._receive_steps(exactly_steps(self._leftover, size))

    async def receive_until(self, separator: bytes, max_size: int) -> bytes:
        """The bytes before the next ``separator`` (consumed, not returned); bytes after it
        are kept for the next receive.  Raises ``asyncio.LimitOverrunError`` when more than
        ``max_size`` bytes come before it (they stay), ``asyncio.IncompleteReadError`` if
        the peer's FIN comes first, and what ``receive_some`` raises."""
        with self._receive_conflict:
            return await self._receive_steps(until_steps(self._leftover, separator, max_size))

    async def _receive_steps(self, steps: Steps) -> bytes:
        if self._closing:
            raise self._closed_error()
        await trio.lowlevel.checkpoint_if_cancelled()
        received = False
        try:
            want = next(steps)
            while True:
                chunk = await self._receive(want)
                received = True
                want = steps.send(chunk)
        except StopIteration as stop:
            data: bytes = stop.value
        if not received:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return data

    async def _receive(self, size: int) -> bytes:
        """One receive (a checkpoint); the caller holds the receive conflict."""
        conn = self._conn
        if self._closing:
            raise self._closed_error()
        await trio.lowlevel.checkpoint_if_cancelled()
        slept = False
        was_eof = conn.eof
        try:
            while not conn.eof:
                data = conn.receive_some(size)
                if data is not None:
                    break
                slept = True
                await wait_edge(conn, False)
                if self._closing:
                    raise self._closed_error()
            else:
                data = b""
        except Failed as failed:
            raise self._failure(failed, "WskReceive")  # noqa: B904 (its cause is set)
        if not was_eof and not data:
            log_operation(log, "WskReceive", conn.sock, 0, "0 bytes: the peer's FIN")
        if not slept:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return data

    # --- ending -------------------------------------------------------------------------------
    async def abort(self) -> None:
        """Reset the connection now (an RST).  Pending and later operations fail with
        ``BrokenResourceError``; close with ``aclose()``."""
        if self._closing:
            raise self._closed_error()
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._conn.abort():
            log_abort(log, self._conn)
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def aclose(self) -> None:
        """Close gracefully if possible, then close the socket (see the module docstring:
        an RST follows our acknowledged FIN if the peer has not closed its direction).
        Cancelled, or a failing graceful part, or after a ``send_all`` was interrupted
        (trio's rule: a cancelled send breaks the stream): the socket is closed at once
        (RST)."""
        conn = self._conn
        if self._closing:
            await trio.lowlevel.checkpoint()
            return
        self._closing = True
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            # Data in flight when a send-side call was interrupted broke the stream: no
            # graceful part, the close below resets at once.
            broken = self._abandoned or (self._interrupted and self._inflight is not None)
            if not broken:
                await self._wait_inflight(check_closed=False)
            graceful = not broken and (conn.ending is None or conn.ending.clean)
            if (
                graceful
                and self._send_error is None
                and (not self._eof_sent or conn.disconnect_requested)
            ):
                self._eof_sent = True
                await self._disconnect()
        except Failed:
            pass  # not graceful after all: the close below resets the connection
        finally:
            close_logged(log, conn)
        # A checkpoint even when nothing above had to wait (cancelled: the socket is closed).
        await trio.lowlevel.cancel_shielded_checkpoint()


class _Pusher:
    """The remainder of a ``send_all``, pushed to the kernel at the connection's write
    edges (it sits in the connection's writer slot, as a waiting task would)."""

    __slots__ = ("_conn", "_data", "_done", "_stream")

    def __init__(self, stream: WskStream, conn: NativeConnection, data: bytes) -> None:
        self._stream = stream
        self._conn = conn
        self._data = memoryview(data)
        self._done = False

    def done(self) -> bool:
        return self._done

    def set_result(self, _mask: int, /) -> None:
        conn = self._conn
        try:
            sent = conn.send_some(self._data)
        except Failed as failed:
            self._finish(failed)
            return
        self._data = self._data[sent:]
        if self._data.nbytes:
            conn.writer = self  # (the edge cleared the slot) the next edge goes on
        else:
            self._finish(None)

    def _finish(self, error: Failed | None) -> None:
        self._done = True
        self._stream._sent(error)


# --------------------------------------------------------------------------------------------
# Listeners
# --------------------------------------------------------------------------------------------


async def open_listener(
    host: str, port: int, *, options: Sequence[SocketOption] = ()
) -> WskListener:
    """A listening socket on ``host``:``port`` (0: any free port; see
    :attr:`WskListener.local_address`); ``options`` are set before the bind and inherited by
    accepted connections.  Serve it with ``trio.serve_listeners(handler, [listener])``.  A
    port outside 0..65535 raises ``ValueError`` before any call."""
    check_port(port)
    try:
        native = await drive(listen_steps(poller(), host, port, options))
    except Failed as failed:  # the boundary: the status becomes the exception
        raise failed.error() from None
    return WskListener(native)


class WskListener(trio.abc.Listener[WskStream]):  # type: ignore[misc, unused-ignore]
    """A trio ``Listener`` over one listening socket: ``accept()`` takes the next connection
    from the kernel's backlog."""

    def __init__(self, listener: NativeListener) -> None:
        self._listener = listener

    def __repr__(self) -> str:
        return f"<pywsk.trio.WskListener {self._listener!r}>"

    @property
    def local_address(self) -> tuple[Any, ...]:
        return self._listener.local

    async def accept(self) -> WskStream:
        """The next connection.  ``ClosedResourceError`` once the listener is closed; a
        cancel takes nothing from the backlog."""
        listener = self._listener
        if listener.closed:
            raise trio.ClosedResourceError("this listener was closed")
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            native = listener.ready.popleft() if listener.ready else None
            if native is None and not listener.waiters:
                native = listener.try_accept()
            if native is not None:
                await trio.lowlevel.cancel_shielded_checkpoint()
                return WskStream(native)
            waiter = Waiter()
            listener.waiters.append(waiter)

            def forget() -> None:
                if waiter in listener.waiters:
                    listener.waiters.remove(waiter)

            accepted: NativeConnection = await waiter.wait(forget)
        except Failed as failed:  # the boundary: the status becomes the exception
            error = failed.error()
            if failed.status == NTSTATUS.STATUS_INVALID_HANDLE:
                raise trio.ClosedResourceError("this listener was closed") from error
            raise error from None
        return WskStream(accepted)

    async def aclose(self) -> None:
        """Close the listening socket (idempotent); pending ``accept()`` calls raise
        ``ClosedResourceError``; connections not yet accepted are reset."""
        for native in self._listener.close():
            native.close()
        await trio.lowlevel.checkpoint()
