"""WSK connection sockets for asyncio: :func:`connect` and :class:`Connection`.

What it does: each method is one WSK call on its own IRP through the provider's dispatch
table (``send_all`` = WskSend, ``receive_some`` = WskReceive, ``disconnect`` = graceful
WskDisconnect, ``abort`` = WskDisconnect with WSK_FLAG_ABORTIVE, ``aclose`` =
WskCloseSocket), awaited as trio awaits overlapped I/O (:mod:`pywsk.aio._waiting`).

What it refuses: use after ``aclose()`` (:class:`~pywsk.errors.SocketClosedError`), sending
after ``disconnect()`` (:class:`~pywsk.errors.WskBrokenPipeError`), two concurrent
``receive_some`` calls (:class:`~pywsk.errors.BusyError`: a cancelled receive keeps its data
for the next one, which only works one at a time), use from another event loop.

What always holds: no byte is lost or duplicated by a cancelled ``send_all`` or
``receive_some``: each is all-or-nothing (see their contracts); a completion is never
dropped; failures are :class:`~pywsk.errors.NtStatusError` subclasses of the built-in
``ConnectionResetError``, ``ConnectionAbortedError``, ... carrying the NTSTATUS.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import operator
import warnings
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from .._bridge import (
    DEFAULT_RECEIVE_SIZE,
    Call,
    ConnectionCore,
    DisconnectReason,
    SocketOption,
    connect_steps,
    start_control,
)
from .._log import log_settled, logged_connect
from ..errors import BusyError, NtStatusError, error_from_status
from ..nt.irp import IrpState
from ..nt.status import NTSTATUS
from ..wsk.structs import WSK_SOCKET, check_port
from ._receiving import Steps, drive_steps, exactly_steps, take, until_steps
from ._waiting import drive, mailbox, wait_call

__all__ = ["Connection", "connect"]

log = logging.getLogger(__name__)


async def connect(
    host: str,
    port: int,
    *,
    options: Sequence[SocketOption] = (),
    local: tuple[str, int] | None = None,
) -> Connection:
    """Open a TCP connection to ``host``:``port`` through WSK and return it.

    ``host`` is an IP literal or a name (resolved with WskGetAddressInfo; each address is
    tried in turn).  ``options`` are ``(level, option, value)`` triples with wsk.h
    constants (``(SOL_SOCKET, SO_RCVBUF, 65536)``), set with WskControlSocket before the
    socket binds; ``local`` is the address to bind (default: the wildcard, port 0).

    Raises the :mod:`pywsk.errors` exception of the failure (``ConnectionRefusedError``,
    ``TimeoutError``, ...).  Cancelling it cancels the pending WskConnect (IoCancelIrp),
    waits for its completion and closes the socket: nothing is left open.  A port outside
    0..65535 raises ``ValueError`` before any call.
    """
    check_port(port, local)
    steps = connect_steps(host, port, options, local)
    return Connection(await drive(logged_connect(log, host, port, steps)))


class Connection:
    """One TCP connection: a WSK connection socket.  Use ``async with`` (or ``aclose()``).

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

    def __init__(self, core: ConnectionCore) -> None:
        self._core = core
        self._loop = asyncio.get_running_loop()
        self._stash = bytearray()
        self._receiving = False
        self._disconnect_done: asyncio.Event | None = None

    def __repr__(self) -> str:
        return f"<pywsk.aio.Connection {self._core!r}>"

    def __del__(self) -> None:
        core = getattr(self, "_core", None)
        if core is not None and not core.closed:
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
        return self._core.local

    @property
    def remote_address(self) -> tuple[Any, ...]:
        """The peer's address, as a socket-module tuple."""
        return self._core.remote

    @property
    def disconnected_by(self) -> DisconnectReason | None:
        """How the connection ended: the peer's FIN, the peer's RST, our RST, a transport
        failure - or None while nothing of the kind was seen.  The first cause seen stays."""
        return self._core.reason

    @property
    def bytes_sent(self) -> int:
        """Bytes the provider reported sent (handed to the transport), final buffer included."""
        return self._core.bytes_sent

    @property
    def bytes_received(self) -> int:
        """Bytes received from the provider, including any kept from a cancelled receive."""
        return self._core.bytes_received

    @property
    def closed(self) -> bool:
        """True once :meth:`aclose` started."""
        return self._core.closed

    @property
    def socket(self) -> WSK_SOCKET:
        """The WSK socket underneath (for driver-style calls; do not close it yourself)."""
        return self._core.socket

    # --- checks -------------------------------------------------------------------------------
    def _check(self) -> ConnectionCore:
        if asyncio.get_running_loop() is not self._loop:
            raise RuntimeError("this Connection belongs to another event loop")
        core = self._core
        if core.closed:
            raise error_from_status(NTSTATUS.STATUS_INVALID_HANDLE, "the connection is closed")
        return core

    # --- sending ------------------------------------------------------------------------------
    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send all of ``data``: one WskSend, which completes when the transport has taken
        every byte (not when the peer has them; :meth:`disconnect` proves that).

        The buffer is used in place until the call returns: do not modify it meanwhile.
        Concurrent calls are allowed; their data goes out in the order they were called.

        Cancellation follows trio's rule for streams: IoCancelIrp, then the call waits for
        the WskSend's completion and raises ``CancelledError``.  A send not yet started is
        cancelled: nothing was sent and the connection goes on.  A send the transport has
        started taking can be neither recalled nor finished on time (a peer that never
        reads would hold it for ever): **the connection is broken and reset at once** (an
        RST, as :meth:`abort`), which ends the send; later sends fail and the close sends
        nothing more.  So one Ctrl-C (asyncio's runner cancels the main task) stops a
        program stuck in ``send_all``.  :attr:`bytes_sent` says what the transport took.

        Raises: the failure (``ConnectionResetError`` after the peer's RST, ...);
        :class:`~pywsk.errors.WskBrokenPipeError` after :meth:`disconnect`;
        :class:`~pywsk.errors.SocketClosedError` after :meth:`aclose`.
        """
        core = self._check()
        view = memoryview(data).cast("B")
        if core.disconnect_call is not None:
            raise error_from_status(
                NTSTATUS.STATUS_PIPE_DISCONNECTED, "send_all after disconnect()"
            )
        if not view.nbytes:
            return
        call = core.start_send(view)
        caught = await wait_call(call, functools.partial(self._cancel_send, call))
        try:
            core.settle_send(call, cancelled=caught is not None)
        except NtStatusError:
            log_settled(log, core, call, "send")
            if caught is None:
                raise
        if caught is not None:
            raise caught

    def _cancel_send(self, call: Call) -> None:
        """IoCancelIrp; if the cancel did not win at once (the provider runs it inline) and
        the transport holds the send, break the connection: an abortive WskDisconnect,
        which completes the send (and any other) with STATUS_CONNECTION_ABORTED."""
        call.cancel()
        core = self._core
        if call.done or call.irp.state is not IrpState.PENDING or core.aborted or core.closed:
            return
        log.debug("%r: a cancelled send was partly taken: the connection is reset", core)
        abort = core.start_abort()

        def settled() -> None:
            core.settle_abort(abort)
            log_settled(log, core, abort, "abort")

        if not abort.arm(mailbox(self._loop), settled):
            settled()

    # --- receiving ----------------------------------------------------------------------------
    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Receive at most ``max_bytes`` (default 65536): at least one byte, or ``b""``
        once the peer disconnected gracefully (and for ever after).

        One call at a time (:class:`~pywsk.errors.BusyError` otherwise).

        Cancellation: IoCancelIrp, then the call waits for the WskReceive's completion and
        raises ``CancelledError``.  A receive that already holds data completes with it:
        those bytes are kept and returned by the next ``receive_some``.  Nothing is lost.

        Raises: ``ConnectionResetError`` after the peer's RST (data that arrived before it
        is returned first), ``ConnectionAbortedError`` after :meth:`abort`,
        :class:`~pywsk.errors.SocketClosedError` after :meth:`aclose`.
        """
        size = _max_bytes(max_bytes)
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
        """One WskReceive of at most ``size`` bytes (the caller holds ``_receiving``); the
        data of a cancelled one goes to the leftover."""
        core = self._check()
        if core.eof:
            return b""
        call = core.start_receive(size)
        caught = await wait_call(call)
        try:
            data = core.settle_receive(call, cancelled=caught is not None)
        except NtStatusError:
            log_settled(log, core, call, "receive")
            if caught is None:
                raise
            data = None
        if caught is not None:
            if data:
                self._stash += data
            raise caught
        assert data is not None
        if not data:
            log_settled(log, core, call, "receive")
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
        IRP is not cancelled; it stays with the connection and a later ``disconnect()``
        (or ``aclose()``) sees its outcome.

        Raises: the failure (``ConnectionResetError`` if the peer reset before
        acknowledging, ``TimeoutError`` after TCP_MAXRT, ...).  If the peer never reads,
        the disconnect never completes: bound it with a timeout, then :meth:`abort`.
        """
        core = self._check()
        call = core.disconnect_call
        if call is None:
            data = bytes(final) if final is not None else b""
            call = core.start_disconnect(data or None)
            done = self._disconnect_done = asyncio.Event()

            def settled() -> None:
                core.settle_disconnect(call)
                log_settled(log, core, call, "disconnect")
                done.set()

            if not call.arm(mailbox(self._loop), settled):
                settled()
        elif final is not None and len(final):
            raise error_from_status(
                NTSTATUS.STATUS_PIPE_DISCONNECTED, "disconnect() was called already"
            )
        assert self._disconnect_done is not None
        await self._disconnect_done.wait()
        error = core.disconnect_error
        if error is not None:
            raise type(error)(error.status, error.message)

    async def abort(self) -> None:
        """Reset the connection now (WSK_FLAG_ABORTIVE: an RST); data not yet delivered is
        lost.  Pending sends end with ``ConnectionAbortedError``, and so do pending and later
        receives.  The socket stays open until :meth:`aclose`.  Does nothing after
        :meth:`aclose`, after an earlier ``abort()``, or once the connection is gone.
        """
        core = self._core
        if core.closed or core.aborted:
            return
        call = core.start_abort()
        caught = await wait_call(call)
        core.settle_abort(call)
        log_settled(log, core, call, "abort")
        if caught is not None:
            raise caught

    async def aclose(self) -> None:
        """Close the socket (WskCloseSocket); idempotent; pending calls end with
        ``SocketClosedError``.

        **If the connection is not disconnected in both directions - our** :meth:`disconnect`
        **completed and the peer's FIN received - this sends an RST** and data still in
        flight is lost, as WskCloseSocket does.  See the class docstring for the graceful
        path.  The close cannot be cancelled: a cancelled ``aclose()`` still closes, then
        raises ``CancelledError``.
        """
        core = self._core
        if core.closed:
            return
        call = core.start_close()
        caught = await wait_call(call)
        core.settle_close(call)
        log_settled(log, core, call, "close")
        if caught is not None:
            raise caught

    # --- options ------------------------------------------------------------------------------
    async def set_option(self, level: int, option: int, value: int) -> None:
        """WskControlSocket(WskSetOption): ``level`` / ``option`` are wsk.h constants
        (``IPPROTO_TCP, TCP_NODELAY``); raises the failure."""
        core = self._check()
        call = start_control(core.socket, level, option, value)
        caught = await wait_call(call)
        try:
            call.check()
        finally:
            call.release()
        if caught is not None:
            raise caught


def _max_bytes(max_bytes: int | None) -> int:
    if max_bytes is None:
        return DEFAULT_RECEIVE_SIZE
    size = operator.index(max_bytes)
    if size < 1:
        raise ValueError("max_bytes must be at least 1")
    return size
