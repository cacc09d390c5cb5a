"""pywsk for trio (and anyio on its trio backend): WSK connections as trio streams.

What it does: :func:`open_connection` returns a :class:`WskStream`, a
``trio.abc.HalfCloseableStream`` over one WSK connection socket; :func:`open_listener`
returns a :class:`WskListener`, a ``trio.abc.Listener`` for ``trio.serve_listeners``.
Every operation is a WSK call on its own IRP through the provider's dispatch tables.  The
completion routine hands the result to trio with ``TrioToken.run_sync_soon``; waits use
``wait_task_rescheduled`` whose abort function calls IoCancelIrp and answers
``Abort.FAILED`` - trio's ``wait_overlapped`` pattern: the task sleeps on until the IRP
completes, and the completion says whether the cancel won.

The stream follows trio's contracts (``trio.testing.check_half_closeable_stream`` passes
over real loopback TCP): ``BusyResourceError`` for overlapping calls on one direction,
``ClosedResourceError`` after a local close, ``BrokenResourceError`` (caused by the
:mod:`pywsk.errors` exception) when the connection failed, ``b""`` after the peer's FIN.

How sending maps onto WSK: at most one WskSend is in flight per stream.  ``send_all``
waits for the previous one to complete, then issues its own (with a copy of the data) and
returns - so ``wait_send_all_might_not_block`` can wait for something real (the in-flight
WskSend), a send's failure is reported by the next send-side call, and a cancelled
``send_all`` has had no effect at all.  ``send_eof`` waits for the in-flight send, then
disconnects gracefully (WskDisconnect) and returns when our FIN is acknowledged.

What it refuses: nothing beyond trio's contracts.  ``aclose()`` is graceful (the in-flight
send, our FIN acknowledged) and then WskCloseSocket, which **resets the connection (RST)
if the peer has not closed its direction yet** - every byte we sent was acknowledged
before it, so none is lost.  The graceful part waits for the peer to acknowledge, so it can
wait for ever on a peer that never reads: bound it with a cancel scope.  A cancelled
``aclose()`` (``trio.aclose_forcefully``) skips the graceful part: RST at once, and the
socket is closed all the same.  A send-side call interrupted while a WskSend is in flight
(cancelled, or Ctrl-C) breaks the stream, trio's rule for a cancelled ``send_all``: the
next ``aclose()`` does not wait for that send and resets at once.

What always holds: every IRP a stream issued has completed, and its completion was
delivered, before ``aclose()`` returns; a cancelled ``receive_some`` either had no effect
or returns the data its WskReceive got (trio then raises ``Cancelled`` at the next
checkpoint).
"""

from __future__ import annotations

import functools
import logging
import operator
from collections.abc import Callable, Generator, Sequence
from types import TracebackType
from typing import Any, NoReturn, TypeVar

try:
    import trio  # type: ignore[import-untyped, unused-ignore]
except ImportError as exc:  # pragma: no cover - tested from a wheel (tests/package)
    raise ImportError(
        "pywsk.trio needs trio, which is not installed: pip install 'pywsk[trio]'",
        name=exc.name,
        path=exc.path,
    ) from exc

from ._bridge import (
    DEFAULT_RECEIVE_SIZE,
    Call,
    ConnectionCore,
    DisconnectReason,
    ListenerCore,
    SocketOption,
    connect_steps,
    listen_steps,
)
from ._log import log_settled, logged_connect
from .aio._receiving import Steps, exactly_steps, take, until_steps
from .errors import NtStatusError, SocketClosedError
from .wsk.structs import WSK_SOCKET, check_port

__all__ = [
    "DisconnectReason",
    "WskListener",
    "WskStream",
    "open_connection",
    "open_listener",
]

T = TypeVar("T")

log = logging.getLogger(__name__)

#: ``raise_cancel`` as trio hands it to an abort function.
RaiseCancel = Callable[[], NoReturn]

_BROKEN_REASONS = (
    DisconnectReason.PEER_RESET,
    DisconnectReason.LOCAL_ABORT,
    DisconnectReason.TRANSPORT_FAILURE,
)


# --------------------------------------------------------------------------------------------
# Waiting for IRPs
# --------------------------------------------------------------------------------------------


async def _wait_call(call: Call) -> tuple[RaiseCancel | None, bool]:
    """Wait until ``call`` completed: (the ``raise_cancel`` of a cancel that arrived, whether
    the task slept).  A cancel calls IoCancelIrp and the task sleeps on (Abort.FAILED)."""
    task = trio.lowlevel.current_task()
    token = trio.lowlevel.current_trio_token()
    if not call.arm(token.run_sync_soon, functools.partial(trio.lowlevel.reschedule, task)):
        return None, False
    requested: list[RaiseCancel] = []

    def abort(raise_cancel: RaiseCancel) -> Any:
        requested.append(raise_cancel)
        call.cancel()
        return trio.lowlevel.Abort.FAILED

    await trio.lowlevel.wait_task_rescheduled(abort)
    return (requested[0] if requested else None), True


async def _drive(steps: Generator[Call, None, T]) -> T:
    """Run a sequence of calls (a checkpoint).  A cancel cancels the call under way, waits
    for its completion and is thrown into the sequence, which cleans up and re-raises."""
    await trio.lowlevel.checkpoint_if_cancelled()
    slept = False
    thrown = False
    try:
        call = next(steps)
        while True:
            raise_cancel, waited = await _wait_call(call)
            slept = slept or waited
            if raise_cancel is not None and not thrown:
                thrown = True
                try:
                    raise_cancel()
                except BaseException as cancelled:
                    call = steps.throw(cancelled)
            else:
                call = steps.send(None)
    except StopIteration as stop:
        if not slept:
            await trio.lowlevel.cancel_shielded_checkpoint()
        result: T = stop.value
        return result


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
    """Connect to ``host``:``port`` through WSK (WskSocket, WskBind, WskConnect).

    ``options`` are ``(level, option, value)`` with wsk.h constants, set before binding;
    ``local`` is the address to bind.  Raises the :mod:`pywsk.errors` exception of the
    failure (an ``OSError``).  A cancel cancels the WskConnect and closes the socket.  A port
    outside 0..65535 raises ``ValueError`` before any call.
    """
    check_port(port, local)
    steps = connect_steps(host, port, options, local)
    return WskStream(await _drive(logged_connect(log, host, port, steps)))


class WskStream(trio.abc.HalfCloseableStream):  # type: ignore[misc, unused-ignore]
    """A trio ``HalfCloseableStream`` over one WSK connection socket.

    ``send_all`` / ``wait_send_all_might_not_block`` / ``send_eof`` share one conflict
    detector, ``receive_some`` has its own.  Besides trio's interface: :meth:`abort` (an
    RST now), :attr:`disconnected_by`, the addresses.  Make it with
    :func:`open_connection` or :meth:`WskListener.accept`.
    """

    def __init__(self, core: ConnectionCore) -> None:
        self._core = core
        self._send_conflict = _Conflict("another task is using this stream for sending")
        self._receive_conflict = _Conflict("another task is receiving on this stream")
        self._closing = False
        self._eof_sent = False
        self._inflight: Call | None = None
        self._inflight_done: trio.Event | None = None
        self._send_error: NtStatusError | None = None
        self._disconnect_done: trio.Event | None = None
        #: Bytes received and not yet returned (kept by receive_exactly / receive_until).
        self._leftover = bytearray()
        #: A wait for the in-flight send was interrupted: aclose() resets at once.
        self._interrupted = False

    def __repr__(self) -> str:
        return f"<pywsk.trio.WskStream {self._core!r}>"

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
    def socket(self) -> WSK_SOCKET:
        """The WSK socket underneath (do not close it yourself)."""
        return self._core.socket

    # --- the in-flight WskSend -----------------------------------------------------------------
    def _closed_error(self) -> trio.ClosedResourceError:
        return trio.ClosedResourceError("this stream was closed")

    def _check_send_error(self) -> None:
        error = self._send_error
        if error is not None:
            raise trio.BrokenResourceError(f"the connection failed: {error}") from error

    async def _wait_inflight(self, check_closed: bool = True) -> bool:
        """Wait (cancellable, no effect on the IRP) until no WskSend is in flight.

        Interrupted (cancelled, or a KeyboardInterrupt) while a send is still in flight,
        the stream is broken (trio's rule for a cancelled send): the next ``aclose()`` does
        not wait for that send - the peer may never read it - and resets at once.
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

    def _send_settled(self, call: Call) -> None:
        try:
            self._core.settle_send(call)
        except NtStatusError as exc:
            log_settled(log, self._core, call, "send")
            if self._send_error is None:
                self._send_error = exc
        if self._inflight is call:
            self._inflight = None
            done, self._inflight_done = self._inflight_done, None
            if done is not None:
                done.set()

    # --- SendStream ---------------------------------------------------------------------------
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """``aclose()``; leaving the block by a ``KeyboardInterrupt`` or a cancellation (not an
        ``Exception``) while a send is in flight breaks the stream first: the close resets
        at once instead of waiting for that send (a Ctrl-C that trio raised anywhere in the
        block must not be followed by a wait on a peer that never reads)."""
        if exc is not None and not isinstance(exc, Exception):
            self._interrupted = True
        await self.aclose()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
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
                call = self._core.start_send(memoryview(bytes(view)))
                self._inflight = call
                self._inflight_done = trio.Event()
                token = trio.lowlevel.current_trio_token()
                if not call.arm(token.run_sync_soon, functools.partial(self._send_settled, call)):
                    self._send_settled(call)
                    self._check_send_error()
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
            if self._eof_sent:
                await trio.lowlevel.checkpoint()
                return
            await trio.lowlevel.checkpoint_if_cancelled()
            await self._wait_inflight()
            self._check_send_error()
            self._eof_sent = True
            try:
                await self._disconnect()
            except NtStatusError as exc:
                raise trio.BrokenResourceError(f"the disconnect failed: {exc}") from exc

    async def _disconnect(self) -> None:
        """Graceful WskDisconnect; waits for our FIN's acknowledgement.  A cancel stops the
        wait only: the IRP is not cancelled (a FIN cannot be recalled), its completion is
        recorded when it comes."""
        core = self._core
        call = core.disconnect_call
        if call is None:
            call = core.start_disconnect(None)
            done = trio.Event()
            token = trio.lowlevel.current_trio_token()

            def settled() -> None:
                core.settle_disconnect(call)
                log_settled(log, core, call, "disconnect")
                done.set()

            self._disconnect_done = done
            if not call.arm(token.run_sync_soon, settled):
                settled()
        assert self._disconnect_done is not None
        await self._disconnect_done.wait()
        if core.disconnect_error is not None:
            error = core.disconnect_error
            raise type(error)(error.status, error.message)

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
        """One WskReceive (a checkpoint); the caller holds the receive conflict."""
        core = self._core
        if self._closing:
            raise self._closed_error()
        await trio.lowlevel.checkpoint_if_cancelled()
        if core.eof:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return b""
        call = core.start_receive(size)
        raise_cancel, slept = await _wait_call(call)
        try:
            data = core.settle_receive(call, cancelled=raise_cancel is not None)
        except NtStatusError as exc:
            log_settled(log, core, call, "receive")
            if self._closing or isinstance(exc, SocketClosedError):
                raise self._closed_error() from exc
            raise trio.BrokenResourceError(f"the connection failed: {exc}") from exc
        if data is None:
            assert raise_cancel is not None
            raise_cancel()
        if not data:
            log_settled(log, core, call, "receive")
        if not slept:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return data

    # --- ending -------------------------------------------------------------------------------
    async def abort(self) -> None:
        """Reset the connection now (WskDisconnect with WSK_FLAG_ABORTIVE: an RST).  Pending
        and later operations fail with ``BrokenResourceError``; close with ``aclose()``."""
        core = self._core
        if self._closing:
            raise self._closed_error()
        await trio.lowlevel.checkpoint_if_cancelled()
        if core.aborted:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        call = core.start_abort()
        with trio.CancelScope(shield=True):
            _raise_cancel, slept = await _wait_call(call)
        core.settle_abort(call)
        log_settled(log, core, call, "abort")
        if not slept:
            await trio.lowlevel.cancel_shielded_checkpoint()

    async def aclose(self) -> None:
        """Close gracefully if possible, then WskCloseSocket (see the module docstring:
        an RST follows our acknowledged FIN if the peer has not closed its direction).
        Cancelled, or a failing graceful part, or after a send-side call was interrupted
        while a send was in flight (trio's rule: a cancelled send breaks the stream): the
        socket is closed at once (RST)."""
        core = self._core
        if self._closing:
            await trio.lowlevel.checkpoint()
            return
        self._closing = True
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            # A send interrupted in flight broke the stream: no graceful part, the close
            # below resets at once.
            broken = self._interrupted and self._inflight is not None
            if not broken:
                await self._wait_inflight(check_closed=False)
            if not broken and not self._eof_sent and core.reason not in _BROKEN_REASONS:
                self._eof_sent = True
                await self._disconnect()
        except NtStatusError:
            pass  # not graceful after all: the close below resets the connection
        finally:
            with trio.CancelScope(shield=True):
                call = core.start_close()
                await _wait_call(call)
                core.settle_close(call)
                log_settled(log, core, call, "close")
        # A checkpoint even when nothing above had to wait (cancelled: the socket is closed).
        await trio.lowlevel.cancel_shielded_checkpoint()


# --------------------------------------------------------------------------------------------
# Listeners
# --------------------------------------------------------------------------------------------


async def open_listener(
    host: str, port: int, *, options: Sequence[SocketOption] = ()
) -> WskListener:
    """A WSK listening socket on ``host``:``port`` (0: any free port; see
    :attr:`WskListener.local_address`); ``options`` are set before WskBind and inherited by
    accepted connections.  Serve it with ``trio.serve_listeners(handler, [listener])``.  A
    port outside 0..65535 raises ``ValueError`` before any call."""
    check_port(port)
    return WskListener(await _drive(listen_steps(host, port, options)))


class WskListener(trio.abc.Listener[WskStream]):  # type: ignore[misc, unused-ignore]
    """A trio ``Listener`` over one WSK listening socket: ``accept()`` is one WskAccept."""

    def __init__(self, core: ListenerCore) -> None:
        self._core = core

    def __repr__(self) -> str:
        return f"<pywsk.trio.WskListener {self._core!r}>"

    @property
    def local_address(self) -> tuple[Any, ...]:
        return self._core.local

    async def accept(self) -> WskStream:
        """The next connection.  A cancel cancels the WskAccept and waits for its completion;
        a connection it delivered anyway is returned (trio raises ``Cancelled`` at the next
        checkpoint).  ``ClosedResourceError`` once the listener is closed."""
        core = self._core
        if core.closed:
            raise trio.ClosedResourceError("this listener was closed")
        await trio.lowlevel.checkpoint_if_cancelled()
        call = core.start_accept()
        raise_cancel, slept = await _wait_call(call)
        try:
            accepted = core.settle_accept(call, cancelled=raise_cancel is not None)
        except SocketClosedError as exc:
            raise trio.ClosedResourceError("this listener was closed") from exc
        if accepted is None:
            assert raise_cancel is not None
            raise_cancel()
        if not slept:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return WskStream(accepted)

    async def aclose(self) -> None:
        """Close the listening socket (idempotent); pending ``accept()`` calls raise
        ``ClosedResourceError``; connections not yet accepted are reset."""
        core = self._core
        if not core.closed:
            call = core.start_close()
            with trio.CancelScope(shield=True):
                await _wait_call(call)
            core.settle_close(call)
        await trio.lowlevel.checkpoint()
