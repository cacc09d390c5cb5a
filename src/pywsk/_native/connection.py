"""One TCP connection of the native front-ends, on the caller's event loop.

What it does: a :class:`NativeConnection` is one kernel TCP socket whose state moves only
through the sans-I/O core (:class:`~pywsk.core.connection.ConnectionMachine`, the verdicts,
``PENDING_OUTCOME``) and whose kernel facts come from :mod:`pywsk.mechanics` - the same two
homes the faithful WSK provider uses, so both front-ends say the same things: a graceful
disconnect is complete when our FIN is acknowledged (:func:`~pywsk.mechanics.linux.fin_outcome`
at the edges of the socket's one edge-triggered registration in an
:class:`~pywsk.mechanics.edges.EdgePoller`), an abort is a real RST that keeps the
descriptor, FIN and RST are told apart from the durable TCP state.  No provider thread, no
IRP, no hop: every operation is a non-blocking syscall made on the caller's thread; when
the kernel says EAGAIN the caller waits, in its own framework's way, for the socket's next
edge (a *waiter*: anything with ``done()`` and ``set_result(mask)``, an asyncio future
or pywsk.trio's).

What it refuses: data calls the state machine refuses, and use after
:meth:`NativeConnection.close` (STATUS_INVALID_HANDLE): it raises
:class:`~pywsk.errors.Failed`, the NTSTATUS and the operation, which the front-end turns
into the :mod:`pywsk.errors` exception at its public boundary.  It is not thread-safe: one event loop owns it.

What always holds: each state change goes through the machine; a waiter is woken at the
first edge after it was set, and every waiter is woken when the connection breaks or
closes (it then meets the new state); a socket leaves the poller before it is closed.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import logging
import socket
import warnings
from collections.abc import Callable
from typing import Any, Final, Protocol

from .._log import log_operation
from .._receiving import DEFAULT_RECEIVE_SIZE
from ..core.connection import (
    BROKEN,
    CLOSE,
    OPEN,
    PENDING_OUTCOME,
    TRANSITIONS,
    Cause,
    ConnectionMachine,
    ConnInput,
    ConnState,
    OpKind,
    ReceiveVerdict,
    disconnect_verdict,
    receive_verdict,
    send_verdict,
)
from ..core.ending import Ending
from ..errors import Failed
from ..mechanics import linux
from ..mechanics.edges import READ_EVENTS, WRITE_EVENTS, EdgePoller
from ..mechanics.following import FollowsKernelState
from ..nt.status import NTSTATUS

__all__ = [
    "DEFAULT_RECEIVE_SIZE",
    "DisconnectReason",
    "NativeConnection",
    "SocketOption",
    "Waiter",
    "deprecated_attribute",
    "open_sockets",
]

S = ConnState
ST = NTSTATUS

#: A socket option set before bind/connect: (level, option, value), with wsk.h constants,
#: e.g. ``(SOL_SOCKET, SO_RCVBUF, 65536)``.
SocketOption = tuple[int, int, int]

#: States in which a close has nothing unread to discard.
_NOTHING_TO_READ: Final = frozenset({S.CREATED, S.BOUND, S.CONNECTING, S.ABORTED})


class DisconnectReason(enum.Enum):
    """Deprecated: how a connection ended, in the words :mod:`pywsk.sync` still uses.

    The native front-ends report :class:`~pywsk.core.ending.Ending` instead
    (``PEER_GRACEFUL`` is ``Ending.PEER_FIN``, ``PEER_RESET`` ``PEER_RST`` or
    ``PEER_FIN_THEN_RST``, ``LOCAL_ABORT`` ``OUR_RST`` or ``OUR_FIN_THEN_RST``).
    """

    #: The peer disconnected gracefully: its FIN (a receive returned ``b""``).
    PEER_GRACEFUL = "peer-graceful"
    #: The peer reset the connection: its RST (STATUS_CONNECTION_RESET).
    PEER_RESET = "peer-reset"
    #: We reset it: ``abort()``, or a close before both directions were disconnected.
    LOCAL_ABORT = "local-abort"
    #: The transport gave up (for example STATUS_IO_TIMEOUT after TCP_MAXRT).
    TRANSPORT_FAILURE = "transport-failure"


def deprecated_attribute(module: str, name: str) -> Any:
    """A front-end module's ``__getattr__``: ``DisconnectReason``, with a DeprecationWarning
    (for one release); AttributeError for any other name."""
    if name == "DisconnectReason":
        warnings.warn(
            f"{module}.DisconnectReason is deprecated: disconnected_by reports a "
            "pywsk.core.ending.Ending (PEER_FIN, PEER_RST, OUR_RST, ...)",
            DeprecationWarning,
            stacklevel=3,
        )
        return DisconnectReason
    raise AttributeError(f"module {module!r} has no attribute {name!r}")


class Waiter(Protocol):
    """What waits for an edge: an asyncio future, or a front-end's equivalent."""

    def done(self) -> bool: ...

    def set_result(self, result: int, /) -> None: ...


_open = 0


def open_sockets() -> int:
    """How many sockets the native front-ends opened and have not closed."""
    return _open


def _opened() -> None:
    global _open
    _open += 1


def _closed() -> None:
    global _open
    _open -= 1


class NativeConnection(FollowsKernelState):
    """One TCP connection on the caller's event loop (see the module docstring)."""

    __slots__ = (
        "__weakref__",
        "_fin_issued",
        "_local",
        "_poller",
        "_reset_read",
        "bytes_received",
        "bytes_sent",
        "closed",
        "disconnect_done",
        "disconnect_error",
        "disconnect_requested",
        "ending",
        "eof",
        "fd",
        "fin_acked",
        "fin_waiters",
        "listener",
        "machine",
        "reader",
        "remote",
        "sock",
        "writer",
    )

    def __init__(
        self,
        sock: socket.socket,
        poller: EdgePoller,
        remote: tuple[Any, ...],
        state: ConnState = S.CONNECTED,
        local: tuple[Any, ...] | None = None,
    ) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self._poller = poller
        self.remote = remote
        self._local = local
        self.machine = ConnectionMachine(state)
        #: How the connection ended, as far as we saw (None: it goes on).
        self.ending: Ending | None = None
        self.eof = False
        self.closed = False
        self.bytes_sent = 0
        self.bytes_received = 0
        #: Our graceful disconnect: asked for (it may wait behind sends), its FIN issued,
        #: acknowledged, or its failure.
        self.disconnect_requested = False
        self._fin_issued = False
        self.fin_acked = False
        self.disconnect_error: Failed | None = None
        #: Our graceful disconnect completed (FIN acknowledged) or failed.
        self.disconnect_done = False
        self._reset_read = False
        self.reader: Waiter | None = None
        self.writer: Waiter | None = None
        self.fin_waiters: list[Waiter] = []
        #: A front-end that takes every edge itself (a transport's callback), instead of the
        #: waiter slots: called with the mask after the FIN check.
        self.listener: Callable[[int], object] | None = None
        poller.register(self.fd, self._on_edge)

    def __repr__(self) -> str:
        state = "closed" if self.closed else self.machine.state.value
        return f"<TCP connection fd={self.fd} -> {self.remote} {state}>"

    @property
    def local(self) -> tuple[Any, ...]:
        """Our address (asked of the kernel once, when first wanted)."""
        if self._local is None:
            self._local = self.sock.getsockname()
        return self._local

    # --- edges -----------------------------------------------------------------------------
    def _on_edge(self, mask: int) -> None:
        if self._fin_issued and not self.fin_acked:
            self._check_fin()
        listener = self.listener
        if listener is not None:
            listener(mask)
            return
        if mask & READ_EVENTS:
            waiter = self.reader
            if waiter is not None:
                self.reader = None
                if not waiter.done():
                    waiter.set_result(mask)
        if mask & WRITE_EVENTS:
            waiter = self.writer
            if waiter is not None:
                self.writer = None
                if not waiter.done():
                    waiter.set_result(mask)

    def _wake_all(self) -> None:
        reader, writer, fin_waiters = self.reader, self.writer, self.fin_waiters
        if reader is None and writer is None and not fin_waiters:
            return
        self.reader = self.writer = None
        self.fin_waiters = []
        for waiter in (reader, writer, *fin_waiters):
            if waiter is not None and not waiter.done():
                waiter.set_result(0)

    # --- the machine ---------------------------------------------------------------------------
    def _process(self, event: ConnInput) -> bool:
        """Apply ``event`` if the table allows it in the current state (else nothing)."""
        machine = self.machine
        new = TRANSITIONS[machine.state].get(event)
        if new is None:
            return False
        machine.state = new
        return True

    def _saw_peer_fin(self) -> None:
        """The peer's FIN, read from the kernel's state (perhaps behind unread data): it is
        how the connection ended as much as a receive of ``b""`` would say."""
        if self._process(ConnInput.RECV_FIN):
            self.note(Ending.PEER_FIN)

    def note(self, ending: Ending) -> None:
        """Learn ``ending``: the first end stays, but an RST after a FIN of the same side is
        that side's FIN-then-RST (:meth:`Ending.then`); our RST after our FIN was sent is
        ``OUR_FIN_THEN_RST``."""
        if ending is Ending.OUR_RST and self._fin_issued:
            ending = Ending.OUR_FIN_THEN_RST
        known = self.ending
        self.ending = ending if known is None else known.then(ending)

    def _break(self, cause: Ending, failure: int | None = None) -> None:
        """The connection is gone (our abort, the peer's RST, a transport failure): the
        machine says so, a pending graceful disconnect fails as ``PENDING_OUTCOME`` says,
        every waiter wakes to meet the new state."""
        if cause is Ending.PEER_RST:
            moved = self._process(ConnInput.RECV_RST)
        elif cause is Ending.TRANSPORT_FAILURE:
            if failure is not None:
                self.machine.failure = failure
            moved = self._process(ConnInput.TRANSPORT_FAILED)
        else:
            moved = self._process(ConnInput.SEND_RST)
        if not moved:
            return
        self.note(cause)
        self._end_disconnect(cause)
        self._wake_all()

    def _end_disconnect(self, cause: Cause) -> None:
        if self.disconnect_requested and not self.disconnect_done:
            outcome = PENDING_OUTCOME[(cause, OpKind.DISCONNECT)]
            status: int = self.machine.failure if outcome is None else outcome
            if cause is CLOSE:
                status = ST.STATUS_INVALID_HANDLE
            self.disconnect_error = Failed(status, "WskDisconnect")
            self.disconnect_done = True

    def _transport_error(self, exc: OSError) -> None:
        err = exc.errno
        if err in linux.RESET_ERRNOS:
            if self.machine.state is not S.ABORTED:
                self._break(Ending.PEER_RST)
        elif not (err == errno.ENOTCONN and self.machine.state in BROKEN):
            self._break(Ending.TRANSPORT_FAILURE, linux.status_from_errno(err or 0))

    def refresh(self) -> None:
        """Bring the machine up to date with the kernel's durable TCP state (FIN versus RST
        is read from it, not from the one-shot socket error)."""
        if self.machine.state not in OPEN or self.closed:
            return
        self._apply(linux.durable_state(self.sock, self._fin_issued))

    def error(self, what: str, status: int | None = None) -> Failed:
        """``what`` failing now: the connection is closed, or ``status`` (default: the one
        the state gives a send)."""
        if self.closed:
            return Failed(ST.STATUS_INVALID_HANDLE, f"{what}: the connection is closed")
        if status is None:
            machine = self.machine
            status = send_verdict(machine.state, machine.failure) or ST.STATUS_CONNECTION_RESET
        return Failed(status, what)

    # --- sending ---------------------------------------------------------------------------------
    def send_some(self, view: bytes | bytearray | memoryview) -> int:
        """Hand the kernel what it takes of ``view`` now (0: its buffer is full: wait for a
        write edge).  Raises the failure."""
        if self.closed:
            raise self.error("WskSend")
        machine = self.machine
        verdict = send_verdict(machine.state, machine.failure)
        if verdict is not None:
            raise self.error("WskSend", verdict)
        try:
            sent = self.sock.send(view)
        except BlockingIOError:
            return 0
        except OSError as exc:
            self._transport_error(exc)
            raise self.error("WskSend") from None
        self.bytes_sent += sent
        return sent

    # --- receiving -------------------------------------------------------------------------------
    def receive_some(self, size: int) -> bytes | None:
        """At most ``size`` bytes now; ``b""``: the peer's FIN; None: nothing yet (wait for a
        read edge).  Raises the failure - after the data that came before it."""
        if self.closed:
            raise self.error("WskReceive")
        machine = self.machine
        verdict = receive_verdict(machine.state, True, machine.failure)
        if verdict is not ReceiveVerdict.READ:
            assert isinstance(verdict, int)
            if machine.state in (S.RESET, S.FAILED):
                # Data that came before the reset is delivered first.
                try:
                    data = self.sock.recv(size)
                except OSError:
                    data = b""
                if data:
                    self.bytes_received += len(data)
                    return data
            raise Failed(verdict, "WskReceive")
        try:
            data = self.sock.recv(size)
        except BlockingIOError:
            return None
        except OSError as exc:
            self._transport_error(exc)
            raise self.error("WskReceive", self._receive_failure()) from None
        if data:
            self.bytes_received += len(data)
            return data
        if self._reset_read:
            # The end of the data was the reset's (its error was read at the connect).
            self._break(Ending.PEER_RST)
            raise self.error("WskReceive", self._receive_failure())
        self.eof = True
        self._process(ConnInput.RECV_FIN)
        self.note(Ending.PEER_FIN)
        return b""

    def _receive_failure(self) -> int:
        machine = self.machine
        verdict = receive_verdict(machine.state, True, machine.failure)
        return verdict if isinstance(verdict, int) else ST.STATUS_CONNECTION_RESET

    # --- ending ------------------------------------------------------------------------------------
    def check_disconnect(self) -> None:
        """Raise what a graceful disconnect fails with in the current state, if anything."""
        if self.closed:
            raise self.error("WskDisconnect")
        verdict = disconnect_verdict(self.machine.state, False)
        if verdict is not None:
            self.refresh()
            raise self.error("WskDisconnect", disconnect_verdict(self.machine.state, False))

    def issue_fin(self) -> None:
        """Every send is in the kernel: our FIN (``shutdown(SHUT_WR)``), then wait for its
        acknowledgement at the socket's edges.  Raises what the disconnect fails with
        (recorded in :attr:`disconnect_error` too)."""
        self.disconnect_requested = True
        if self.disconnect_done:
            return
        try:
            self.check_disconnect()
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                # The connection is not there any more: the durable state says how it ended.
                self.refresh()
                self.check_disconnect()
                raise self.error("WskDisconnect", ST.STATUS_INVALID_DEVICE_STATE) from None
        except Failed as failed:
            self.fail_disconnect(failed)
            raise
        self.machine.process(ConnInput.SEND_FIN)
        # The acknowledgement is seen at an edge: the socket is registered since its
        # creation, so even one that came during shutdown() is reported, after this.
        self._fin_issued = True

    def fail_disconnect(self, failed: Failed) -> None:
        """The graceful disconnect cannot go on (its sends failed): record it, wake."""
        self.disconnect_requested = True
        if not self.disconnect_done:
            self.disconnect_error = failed
            self.disconnect_done = True
            self._wake_fin_waiters()

    def _check_fin(self) -> None:
        if self.closed or self.machine.state in BROKEN or self.fin_acked:
            return
        self._apply(linux.fin_outcome(self.sock))

    def _on_fin_acked(self) -> None:
        self._process(ConnInput.FIN_ACKED)
        self.fin_acked = True
        self.disconnect_done = True
        self._wake_fin_waiters()

    def _wake_fin_waiters(self) -> None:
        waiters, self.fin_waiters = self.fin_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(0)

    def abort(self) -> bool:
        """An RST now (``connect(AF_UNSPEC)``: the descriptor stays); every waiter wakes to
        ``ConnectionAbortedError``.  False if the connection was closed or gone already."""
        if self.closed or self.machine.state not in OPEN:
            return False
        with contextlib.suppress(OSError):
            linux.abort_keep_fd(self.sock)
        self._break(Ending.OUR_RST)
        return True

    def close(self) -> bool:
        """Close the socket (idempotent); an RST first unless the connection was
        disconnected in both directions (WskCloseSocket's rule).  True if it sent the RST."""
        if self.closed:
            return False
        state = self.machine.state
        reset = False
        if linux.close_resets(self.sock, state):
            with contextlib.suppress(OSError):
                linux.abort_keep_fd(self.sock)
            reset = True
            self.note(Ending.OUR_RST)
        elif not self.eof and state not in _NOTHING_TO_READ:
            linux.discard_unread(self.sock)
        if self._local is None:
            with contextlib.suppress(OSError):
                self._local = self.sock.getsockname()  # still asked for after the close
        self.machine.process(ConnInput.CLOSE)
        self.closed = True
        self._end_disconnect(CLOSE)
        self._poller.forget(self.fd)
        self.sock.close()
        _closed()
        self._wake_all()
        return reset


# --------------------------------------------------------------------------------------------
# The records of the front-ends (pywsk._log's shape), written once
# --------------------------------------------------------------------------------------------


def log_failure(logger: logging.Logger, conn: NativeConnection, what: str, failed: Failed) -> None:
    """The record of a failed send or receive (``what``: the WSK name)."""
    if logger.isEnabledFor(logging.DEBUG):
        reset = failed.status == ST.STATUS_CONNECTION_RESET
        detail = "the peer reset the connection" if reset else ""
        log_operation(logger, what, conn.sock, failed.status, detail)


def log_disconnect(logger: logging.Logger, conn: NativeConnection) -> None:
    """The record of our graceful disconnect, once it completed or failed."""
    error = conn.disconnect_error
    log_operation(
        logger,
        "WskDisconnect",
        conn.sock,
        ST.STATUS_SUCCESS if error is None else error.status,
        "graceful: our FIN acknowledged" if error is None else "graceful: failed",
    )


def log_abort(logger: logging.Logger, conn: NativeConnection) -> None:
    """The record of our abort (an RST)."""
    log_operation(
        logger, "WskDisconnect", conn.sock, ST.STATUS_SUCCESS, "abortive (WSK_FLAG_ABORTIVE)"
    )


def close_logged(logger: logging.Logger, conn: NativeConnection) -> None:
    """:meth:`NativeConnection.close`, and its record: whether it had to reset."""
    both = conn.fin_acked and conn.eof
    aborted = conn.machine.state is S.ABORTED
    conn.close()
    if logger.isEnabledFor(logging.DEBUG):
        if both:
            detail = "both directions were disconnected"
        elif aborted:
            detail = "after an abortive disconnect"
        else:
            detail = "not disconnected in both directions: WskCloseSocket aborts the connection"
        log_operation(logger, "WskCloseSocket", conn.sock, ST.STATUS_SUCCESS, detail)
