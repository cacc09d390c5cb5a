"""TCP connections for asyncio, natively on the caller's loop: :func:`connect` and
:class:`Connection`.

What it does: each method is a non-blocking syscall on the caller's thread, through
:class:`pywsk._native.NativeConnection` (the state machine and verdicts of
:mod:`pywsk.core`, the kernel recipes of :mod:`pywsk.mechanics`); when the kernel says
"not yet", the task waits for the socket's next edge (:mod:`pywsk.aio._waiting`).  The
semantics are WSK's: ``send_all`` as WskSend, ``receive_some`` as WskReceive,
``disconnect`` as the graceful WskDisconnect (complete when our FIN is acknowledged),
``abort`` as WSK_FLAG_ABORTIVE (a real RST), ``aclose`` as WskCloseSocket (an RST unless
both directions were disconnected); failures carry the NTSTATUS the core decided.

What it refuses: use after ``aclose()`` (:class:`~pywsk.errors.SocketClosedError`), sending
after ``disconnect()`` (:class:`~pywsk.errors.WskBrokenPipeError`), two concurrent
``receive_some`` calls (:class:`~pywsk.errors.BusyError`), use from another event loop.

What always holds: no byte is lost or duplicated by a cancelled ``send_all`` or
``receive_some`` (a receive takes bytes from the kernel only when it returns them; a send
either had no effect or breaks the connection, see its contract); failures are
:class:`~pywsk.errors.NtStatusError` subclasses of the built-in ``ConnectionResetError``,
``ConnectionAbortedError``, ... carrying the NTSTATUS, made at the public call from the
status the native code carried up (:class:`~pywsk.errors.Failed`).
"""

from __future__ import annotations

import asyncio
import logging
import operator
import threading
import warnings
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from .._log import log_connect, log_operation
from .._native import (
    DEFAULT_RECEIVE_SIZE,
    NativeConnection,
    SocketOption,
    close_logged,
    connect_steps,
    log_abort,
    log_disconnect,
    log_failure,
)
from .._receiving import Steps, drive_steps, exactly_steps, take, until_steps
from ..core.ending import Ending
from ..errors import BusyError, Failed, error_from_status
from ..mechanics import linux
from ..nt.status import NTSTATUS
from ..wsk.structs import check_port
from ._waiting import drive, poller, wait_edge

__all__ = ["Connection", "connect", "open_native"]

log = logging.getLogger(__name__)

#: Disconnects finishing in a task of their own (kept here: the loop keeps tasks weakly).
_background: set[asyncio.Task[None]] = set()


async def connect(
    host: str,
    port: int,
    *,
    options: Sequence[SocketOption] = (),
    local: tuple[str, int] | None = None,
) -> Connection:
    """Open a TCP connection to ``host``:``port`` and return it.

    ``host`` is an IP literal or a name (resolved with ``loop.getaddrinfo``; each address is
    tried in turn).  ``options`` are ``(level, option, value)`` triples with wsk.h
    constants (``(SOL_SOCKET, SO_RCVBUF, 65536)``), set before the socket binds; ``local``
    is the address to bind (default: the kernel's choice).

    Raises the :mod:`pywsk.errors` exception of the failure (``ConnectionRefusedError``,
    ``TimeoutError``, ...).  Cancelling it stops the handshake and closes the socket:
    nothing is left open.  A port outside 0..65535 raises ``ValueError`` before any call.
    """
    loop = asyncio.get_running_loop()
    return Connection(await open_native(host, port, options, local, loop), loop)


async def open_native(
    host: str,
    port: int,
    options: Sequence[SocketOption],
    local: tuple[str, int] | None,
    loop: asyncio.AbstractEventLoop,
) -> NativeConnection:
    """The connect of :func:`connect` and of the Transports' ``create_connection``: the
    port checked, the sequence driven on ``loop``, the record written, the failure turned
    into its exception."""
    check_port(port, local)
    try:
        native: NativeConnection = await drive(
            connect_steps(poller(loop), host, port, options, local), loop
        )
    except Failed as failed:
        log_connect(log, None, failed.status, (host, port))
        raise failed.error() from None
    if log.isEnabledFor(logging.DEBUG):
        log_connect(log, native.sock, 0, native.remote, native.local)
    return native


class Connection:
    """One TCP connection.  Use ``async with`` (or ``aclose()``).

    Sending: :meth:`send_all`.  Receiving: :meth:`receive_some`, ``b""`` once the peer
    disconnected gracefully.  Ending: :meth:`disconnect` (graceful: our FIN, acknowledged
    when it returns; receiving goes on), :meth:`abort` (an RST now), :meth:`aclose`
    (releases the socket - **and resets the connection (RST) unless it was disconnected
    in both directions**, exactly as WskCloseSocket does).

    The graceful path, with no RST anywhere::

        await conn.disconnect()                   # our FIN, acknowledged
        while await conn.receive_some():          # until the peer's FIN
            ...
        await conn.aclose()                       # both directions closed: no RST

    :attr:`disconnected_by` says how the connection ended (peer FIN, peer RST, our RST,
    transport failure), as far as this side saw.  Several ``send_all`` calls may be
    outstanding at once (they go out in the order they were issued); ``receive_some`` is
    one at a time.  Not thread-safe: use it from the event loop that made it.
    """

    __slots__ = ("__weakref__", "_conn", "_loop", "_receiving", "_senders", "_stash", "_thread")

    def __init__(self, conn: NativeConnection, loop: asyncio.AbstractEventLoop) -> None:
        self._conn = conn
        self._loop = loop
        self._thread = threading.get_ident()
        self._stash = bytearray()
        self._receiving = False
        #: send_all calls (and a disconnect) waiting for their turn, first the one sending.
        self._senders: list[asyncio.Future[None]] = []

    def __repr__(self) -> str:
        return f"<pywsk.aio.Connection {self._conn!r}>"

    def __del__(self) -> None:
        conn = getattr(self, "_conn", None)
        if conn is not None and not conn.closed:
            warnings.warn(
                f"unclosed {self!r}: close it with aclose() or 'async with'",
                ResourceWarning,
                stacklevel=1,
                source=self,
            )

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # --- what it is ---------------------------------------------------------------------------
    @property
    def local_address(self) -> tuple[Any, ...]:
        """Our address, as a socket-module tuple."""
        return self._conn.local

    @property
    def remote_address(self) -> tuple[Any, ...]:
        """The peer's address, as a socket-module tuple."""
        return self._conn.remote

    @property
    def disconnected_by(self) -> Ending | None:
        """How the connection ended (:class:`~pywsk.core.ending.Ending`): ``PEER_FIN``,
        ``PEER_RST``, ``PEER_FIN_THEN_RST``, ``OUR_RST``, ``OUR_FIN_THEN_RST``,
        ``TRANSPORT_FAILURE`` - or None while nothing of the kind was seen.  The first end
        seen stays (an RST after a FIN of the same side makes it FIN-then-RST)."""
        return self._conn.ending

    @property
    def bytes_sent(self) -> int:
        """Bytes handed to the transport, final buffer included."""
        return self._conn.bytes_sent

    @property
    def bytes_received(self) -> int:
        """Bytes received, including any kept from a cancelled receive."""
        return self._conn.bytes_received

    @property
    def closed(self) -> bool:
        """True once :meth:`aclose` started."""
        return self._conn.closed

    @property
    def socket(self) -> Any:
        """The kernel socket underneath (a ``socket.socket``; for inspection - do not read,
        write or close it yourself)."""
        return self._conn.sock

    # --- checks -------------------------------------------------------------------------------
    def _check(self) -> NativeConnection:
        # (The thread, not asyncio.get_running_loop(): on Python 3.11 that costs a getpid()
        # syscall.  A wait from another loop is refused by the loop's future.)
        if threading.get_ident() != self._thread:
            raise RuntimeError("this Connection belongs to another event loop")
        conn = self._conn
        if conn.closed:
            raise error_from_status(NTSTATUS.STATUS_INVALID_HANDLE, "the connection is closed")
        return conn

    # --- sending ------------------------------------------------------------------------------
    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send all of ``data``; returns when the transport has taken every byte (not when
        the peer has them; :meth:`disconnect` proves that).

        The buffer is used in place until the call returns: do not modify it meanwhile.
        Concurrent calls are allowed; their data goes out in the order they were called.

        Cancellation follows trio's rule for streams.  A send not yet started (waiting for
        its turn, or for room in the kernel's buffer before any of its bytes went) is
        cancelled: nothing was sent and the connection goes on.  A send the transport has
        started taking can be neither recalled nor finished on time (a peer that never
        reads would hold it for ever): **the connection is broken and reset at once** (an
        RST, as :meth:`abort`); later sends fail and the close sends nothing more.  So one
        Ctrl-C (asyncio's runner cancels the main task) stops a program stuck in
        ``send_all``.  :attr:`bytes_sent` says what the transport took.

        Raises: the failure (``ConnectionResetError`` after the peer's RST, ...);
        :class:`~pywsk.errors.WskBrokenPipeError` after :meth:`disconnect`;
        :class:`~pywsk.errors.SocketClosedError` after :meth:`aclose`.
        """
        conn = self._check()
        view = memoryview(data).cast("B")
        if conn.disconnect_requested:
            raise error_from_status(
                NTSTATUS.STATUS_PIPE_DISCONNECTED, "send_all after disconnect()"
            )
        if not view.nbytes:
            return
        try:
            sent = 0
            if not self._senders:
                sent = conn.send_some(view)
                if sent == view.nbytes:
                    return
            await self._send_rest(conn, view, sent)
        except Failed as failed:  # the boundary: the status becomes the exception
            log_failure(log, conn, "WskSend", failed)
            raise failed.error() from None

    async def _take_turn(self) -> asyncio.Future[None]:
        """Wait until every earlier send (or disconnect) is done; the ticket to give back
        with :meth:`_give_turn`."""
        ticket: asyncio.Future[None] = self._loop.create_future()
        senders = self._senders
        senders.append(ticket)
        if senders[0] is not ticket:
            try:
                await ticket
            except BaseException:
                self._give_turn(ticket)
                raise
        return ticket

    def _give_turn(self, ticket: asyncio.Future[None]) -> None:
        """Leave the queue; the first, it hands the turn to the next (a next one that was
        cancelled meanwhile passes it on itself when it leaves)."""
        senders = self._senders
        first = senders[0] is ticket
        senders.remove(ticket)
        if first and senders and not senders[0].done():
            senders[0].set_result(None)

    async def _send_rest(self, conn: NativeConnection, view: memoryview, sent: int) -> None:
        """The slow path of :meth:`send_all`: its turn after earlier sends, then the rest of
        ``view`` as room comes (``sent``: what a first try, if any, handed over)."""
        tried = not self._senders  # send_all tried once already (edge-triggered: wait now)
        ticket = await self._take_turn()
        started = sent > 0
        try:
            while True:
                if sent:
                    view = view[sent:]
                    if not view.nbytes:
                        return
                if tried:
                    try:
                        await wait_edge(conn, True, self._loop)
                    except asyncio.CancelledError:
                        if started:
                            self._break_cancelled_send(conn)
                        raise
                tried = True
                sent = conn.send_some(view)
                started = started or sent > 0
        finally:
            self._give_turn(ticket)

    def _break_cancelled_send(self, conn: NativeConnection) -> None:
        """A cancelled send the transport had started taking: reset the connection."""
        if conn.abort():
            log.debug("%r: a cancelled send was partly taken: the connection is reset", conn)
            log_operation(
                log,
                "WskDisconnect",
                conn.sock,
                NTSTATUS.STATUS_SUCCESS,
                "abortive (a cancelled send)",
            )

    # --- receiving ----------------------------------------------------------------------------
    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Receive at most ``max_bytes`` (default 65536): at least one byte, or ``b""``
        once the peer disconnected gracefully (and for ever after).

        One call at a time (:class:`~pywsk.errors.BusyError` otherwise).

        Cancellation: bytes are taken from the kernel only when they are returned, so a
        cancelled receive loses nothing (bytes a helper such as :meth:`receive_exactly`
        had gathered are kept for the next receive).

        Raises: ``ConnectionResetError`` after the peer's RST (data that arrived before it
        is returned first), ``ConnectionAbortedError`` after :meth:`abort`,
        :class:`~pywsk.errors.SocketClosedError` after :meth:`aclose`.
        """
        size = DEFAULT_RECEIVE_SIZE if max_bytes is None else _max_bytes(max_bytes)
        if self._receiving:
            raise BusyError("another task is already in receive_some() on this connection")
        self._check()
        if self._stash:
            return take(self._stash, size)
        self._receiving = True
        try:
            return await self._receive(size)
        finally:
            self._receiving = False

    async def receive_exactly(self, size: int) -> bytes:
        """Exactly ``size`` bytes, over as many receives as it takes.

        Raises ``asyncio.IncompleteReadError`` (``.partial``: the bytes there were) if the
        peer's FIN comes first, and what :meth:`receive_some` raises.  Cancelled, it keeps
        the bytes received so far for the next receive.  One receive at a time
        (:class:`~pywsk.errors.BusyError`), as :meth:`receive_some`.
        """
        return await self._receive_steps(exactly_steps(self._stash, size))

    async def receive_until(self, separator: bytes, max_size: int) -> bytes:
        """The bytes before the next ``separator`` (consumed, not returned).

        Raises ``asyncio.LimitOverrunError`` when more than ``max_size`` bytes come before
        it (they stay for the next receive), ``asyncio.IncompleteReadError`` if the peer's
        FIN comes first, and what :meth:`receive_some` raises.  Bytes after the separator
        are kept for the next receive.  Cancellation keeps every byte, as above.
        """
        return await self._receive_steps(until_steps(self._stash, separator, max_size))

    async def _receive_steps(self, steps: Steps) -> bytes:
        if self._receiving:
            raise BusyError("another task is already receiving on this connection")
        self._check()
        self._receiving = True
        try:
            return await drive_steps(steps, self._receive)
        finally:
            self._receiving = False

    async def _receive(self, size: int) -> bytes:
        """One receive of at most ``size`` bytes (the caller holds ``_receiving`` and made
        the checks): the boundary of every receive, where a status becomes the exception."""
        conn = self._conn
        if conn.eof:
            return b""
        try:
            while True:
                data = conn.receive_some(size)
                if data is not None:
                    break
                await wait_edge(conn, False, self._loop)
        except Failed as failed:
            log_failure(log, conn, "WskReceive", failed)
            raise failed.error() from None
        if not data:
            log_operation(
                log, "WskReceive", conn.sock, NTSTATUS.STATUS_SUCCESS, "0 bytes: the peer's FIN"
            )
        return data

    # --- ending -------------------------------------------------------------------------------
    async def disconnect(self, final: bytes | bytearray | memoryview | None = None) -> None:
        """Disconnect gracefully: the optional ``final`` data, then our FIN, after every
        pending ``send_all``.  Returns when the transport has completed the disconnect -
        **our FIN acknowledged by the peer**, so every byte before it arrived.

        Afterwards ``send_all`` is refused and ``receive_some`` goes on until the peer's
        FIN (half-open).  Calling it again waits for the same disconnect (a ``final``
        then raises ``WskBrokenPipeError``).

        Cancellation stops the wait, not the disconnect: a FIN cannot be recalled, so the
        disconnect goes on with the connection and a later ``disconnect()`` (or
        ``aclose()``) sees its outcome.

        Raises: the failure (``ConnectionResetError`` if the peer reset before
        acknowledging, ``TimeoutError`` after TCP_MAXRT, ...).  If the peer never reads,
        the disconnect never completes: bound it with a timeout, then :meth:`abort`.
        """
        conn = self._check()
        if not conn.disconnect_requested:
            data = memoryview(final).cast("B") if final is not None else memoryview(b"")
            try:
                conn.check_disconnect()
                sent = 0
                if not self._senders and data.nbytes:
                    sent = conn.send_some(data)
            except Failed as failed:  # the boundary, as in send_all
                raise failed.error() from None
            if self._senders or sent < data.nbytes:
                conn.disconnect_requested = True
                task = self._loop.create_task(self._disconnect_after_sends(conn, data[sent:]))
                _background.add(task)
                task.add_done_callback(_background.discard)
            else:
                self._issue_fin(conn)
        elif final is not None and len(final):
            raise error_from_status(
                NTSTATUS.STATUS_PIPE_DISCONNECTED, "disconnect() was called already"
            )
        while not conn.disconnect_done:
            waiter: asyncio.Future[int] = self._loop.create_future()
            conn.fin_waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in conn.fin_waiters:
                    conn.fin_waiters.remove(waiter)
        outcome = conn.disconnect_error
        if outcome is not None:
            raise outcome.error()  # a new exception for each caller

    def _issue_fin(self, conn: NativeConnection) -> None:
        try:
            conn.issue_fin()
        except Failed:
            log_disconnect(log, conn)
            return
        if conn.disconnect_done:
            log_disconnect(log, conn)
        elif log.isEnabledFor(logging.DEBUG):
            conn.fin_waiters.append(_Logged(conn))

    async def _disconnect_after_sends(self, conn: NativeConnection, data: memoryview) -> None:
        """The disconnect's part that waits for earlier sends (or room for ``data``): in a
        task of its own, so that a cancelled ``disconnect()`` does not stop it."""
        try:
            ticket = await self._take_turn()
        except asyncio.CancelledError:
            conn.fail_disconnect(Failed(NTSTATUS.STATUS_CANCELLED, "WskDisconnect"))
            return
        if conn.disconnect_error is not None:  # the connection broke or closed meanwhile
            self._give_turn(ticket)
            log_disconnect(log, conn)
            return
        try:
            sent = conn.send_some(data) if data.nbytes else 0
            while sent < data.nbytes:
                data = data[sent:]
                await wait_edge(conn, True, self._loop)
                if conn.disconnect_done:
                    return
                sent = conn.send_some(data)
            self._issue_fin(conn)
        except Failed as failed:
            conn.fail_disconnect(failed)
            log_disconnect(log, conn)
        finally:
            self._give_turn(ticket)

    async def abort(self) -> None:
        """Reset the connection now (an RST); data not yet delivered is lost.  Pending sends
        end with ``ConnectionAbortedError``, and so do pending and later receives.  The
        socket stays open until :meth:`aclose`.  Does nothing after :meth:`aclose`, after an
        earlier ``abort()``, or once the connection is gone.
        """
        conn = self._conn
        if conn.abort():
            log_abort(log, conn)

    async def aclose(self) -> None:
        """Close the socket; idempotent; pending calls end with ``SocketClosedError``.

        **If the connection is not disconnected in both directions - our** :meth:`disconnect`
        **completed and the peer's FIN received - this sends an RST** and data still in
        flight is lost, as WskCloseSocket does.  See the class docstring for the graceful
        path.  The close takes effect at once and cannot be cancelled.
        """
        conn = self._conn
        if conn.closed:
            return
        close_logged(log, conn)

    # --- options ------------------------------------------------------------------------------
    async def set_option(self, level: int, option: int, value: int) -> None:
        """Set a socket option: ``level`` / ``option`` are wsk.h constants
        (``IPPROTO_TCP, TCP_NODELAY``); raises the failure."""
        conn = self._check()
        status = linux.set_wsk_option(conn.sock, level, option, operator.index(value))
        if status != NTSTATUS.STATUS_SUCCESS:
            raise error_from_status(status, "WskControlSocket")


class _Logged:
    """A fin waiter that logs the disconnect's outcome when it is known."""

    __slots__ = ("_conn",)

    def __init__(self, conn: NativeConnection) -> None:
        self._conn = conn

    def done(self) -> bool:
        return False

    def set_result(self, _mask: int) -> None:
        log_disconnect(log, self._conn)


def _max_bytes(max_bytes: int) -> int:
    size = operator.index(max_bytes)
    if size < 1:
        raise ValueError("max_bytes must be at least 1")
    return size
