"""A connection socket's ending: WskDisconnect, the peer's FIN or RST, broken connections.

What it does: :class:`DisconnectingSocket` is the part of a connection socket
(:class:`~pywsk.provider.connection.ConnectionSocket` builds on it) that ends connections,
as Microsoft's WskDisconnect page and "Disconnecting a socket from a destination" describe
it, reads the kernel's durable TCP state into the state machine (:meth:`refresh`), tells
the client of the peer's end (WskDisconnectEvent), and ends every pending request when the
connection is gone:

* Graceful (Flags = 0): waits for every outstanding send, transmits the optional final
  WSK_BUF, then ``shutdown(SHUT_WR)`` (FIN).  The IRP completes with STATUS_SUCCESS only when
  the transport has fully completed the disconnect - our FIN acknowledged by the peer
  (FIN_WAIT2, or CLOSE with nothing unacknowledged) - detected by the FIN-ACK watcher, never
  by polling.  If the data cannot be delivered it stays pending, indefinitely.  Receiving
  goes on until the peer's FIN (half-open), unless the transport is configured without
  half-open support.
* Abortive (WSK_FLAG_ABORTIVE): RST at once (``connect(AF_UNSPEC)``); pending sends are
  cancelled, pending receives and a stuck graceful disconnect complete with
  STATUS_CONNECTION_ABORTED; the socket object stays valid until WskCloseSocket.
* The peer's FIN completes every pending receive (with what it has, or 0 bytes); the
  peer's RST or a transport failure ends every pending request with the status of
  :data:`~pywsk.core.connection.PENDING_OUTCOME` - a send the peer acknowledged before the
  end succeeds, a receive that holds data delivers it.  WskDisconnectEvent reports the
  peer's FIN (0) or RST (WSK_FLAG_ABORTIVE) after the data that came before it.

What it refuses: WskDisconnect flags other than WSK_FLAG_ABORTIVE, a buffer together with
it, or a final WSK_BUF that does not fit its MDL chain (STATUS_INVALID_PARAMETER); a
disconnect the state does not allow (the status
:func:`~pywsk.core.connection.disconnect_verdict` gives).

What always holds: the FIN goes after every byte of every send issued before the
disconnect; the FIN's acknowledgement and the peer's end are read from the durable TCP
state at the socket's edges, never polled; the state machine moves before any request
ends, and each pending request ends exactly once.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import select
import socket
from typing import TYPE_CHECKING

from .._log import log_operation
from ..core.connection import (
    CLOSE,
    OPEN,
    PENDING_OUTCOME,
    Cause,
    ConnInput,
    ConnState,
    OpKind,
    disconnect_verdict,
)
from ..core.ending import Ending
from ..mechanics import linux
from ..mechanics.following import FollowsKernelState
from ..nt import hooks
from ..nt.status import NTSTATUS
from ..wsk.constants import (
    WSK_EVENT_DISCONNECT,
    WSK_EVENT_RECEIVE,
    WSK_FLAG_ABORTIVE,
    WSK_FLAG_AT_DISPATCH_LEVEL,
)
from ..wsk.structs import WSK_BUF
from .base import Op
from .sending import SendingSocket

if TYPE_CHECKING:
    from ..nt.irp import IRP

__all__ = ["END_EVENTS", "DisconnectingSocket"]

S = ConnState

#: The connection socket logs under one name (docs/api/logging.md).
log = logging.getLogger("pywsk.provider.connection")

# The edges that can mean the peer's FIN or RST.
END_EVENTS = select.EPOLLRDHUP | select.EPOLLERR | select.EPOLLHUP


class DisconnectingSocket(SendingSocket, FollowsKernelState):
    """WskDisconnect, WskDisconnectEvent and the ending of pending requests for a connection
    socket (its subclass provides the socket's registration)."""

    __slots__ = ("_disc", "_fin_issued", "_reset_read", "_reset_told", "_watching")

    # This part's state (set by the connection socket).
    #: The pending graceful disconnect.
    _disc: Op | None
    #: shutdown(SHUT_WR) done.
    _fin_issued: bool
    #: The peer's reset was read from SO_ERROR before the data that preceded it.
    _reset_read: bool
    #: WskDisconnectEvent told the client of a reset that is behind unread data.
    _reset_told: bool
    #: The TCP state matters: a FIN's ACK, or WskDisconnectEvent.
    _watching: bool

    def _register(self) -> None:
        raise NotImplementedError

    def _unregister_all(self) -> None:
        raise NotImplementedError

    def _process(self, event: ConnInput) -> bool:
        if not self.machine.can(event):
            return False
        self.machine.process(event)
        if event is ConnInput.RECV_FIN:
            log_operation(log, "connection", self.owner or self, None, "the peer's FIN")
            self._remote_disconnected(0)
        elif event is ConnInput.RECV_RST:
            self._remote_disconnected(WSK_FLAG_ABORTIVE)
        elif event is ConnInput.TRANSPORT_FAILED and self.events & WSK_EVENT_RECEIVE:
            self._post(self._indicate_broken)
        return True

    # --- reading the durable TCP state -----------------------------------------------------
    def refresh(self) -> None:
        """Bring the machine up to date with the kernel's TCP state (FIN vs RST is read from
        the durable state, not from the one-shot socket error)."""
        if self.machine.state not in OPEN:
            return
        self._apply(linux.durable_state(self.sock, self._fin_issued))

    # --- the peer's FIN or RST: WskDisconnectEvent -------------------------------------------
    def _remote_disconnected(self, flags: int) -> None:
        """The peer's FIN (flags 0) or RST (WSK_FLAG_ABORTIVE): tell the client, after the
        completions and data indications already under way (so data comes first)."""
        if self.events & WSK_EVENT_DISCONNECT:
            if flags and self._reset_told:
                return  # told when it arrived, behind unread data
            self._post(self._indicate_disconnect, flags)
        elif flags and self.events & WSK_EVENT_RECEIVE:
            self._post(self._indicate_broken)

    def _indicate_disconnect(self, flags: int) -> None:
        if self.events & WSK_EVENT_DISCONNECT:
            self.invoke(WSK_EVENT_DISCONNECT, self.context, flags | WSK_FLAG_AT_DISPATCH_LEVEL)

    def _update_watch(self) -> None:
        """Watch the TCP state while a FIN's acknowledgement, or the peer's end, is awaited."""
        self._watching = (
            not self.closed
            and not self.machine.broken
            and (self._disc is not None or bool(self.events & WSK_EVENT_DISCONNECT))
        )
        if self._watching:
            self._register()

    def _on_state_change(self, mask: int) -> None:
        """The kernel woke the socket: our FIN acknowledged, the peer's FIN or RST, ...

        The TCP state is read only where a decision needs it: after our FIN, and for
        WskDisconnectEvent when the edge can mean the peer's FIN (before it was seen) or RST.
        """
        if self.closed:
            return
        if self._disc is not None and self._fin_issued:
            self._check_fin_acked()
        if (
            self.events & WSK_EVENT_DISCONNECT
            and not self.closed
            and mask & END_EVENTS
            and (
                mask & (select.EPOLLERR | select.EPOLLHUP)
                or self.machine.state in (S.CONNECTED, S.LOCAL_CLOSING, S.LOCAL_CLOSED)
            )
        ):
            if self.recvq or self._indicating():
                self._on_readable()  # data first; the reader meets the FIN or RST in order
            elif linux.tcp_state(self.sock) != linux.CLOSE or linux.inq(self.sock) == 0:
                self.refresh()
            elif not self._reset_told and not self._reset_read:
                # CLOSE with unread data: both FINs done (the socket left for TIME_WAIT),
                # or a reset, which alone sets the socket's error.  A reset: the data stays
                # for WskReceive (a reset must not discard what was received; the receive
                # that reads it meets the RST in order, ``_reset_read``), but the client is
                # told of the reset now, when it happened.
                err = linux.so_error(self.sock)
                if err in (errno.ECONNRESET, errno.EPIPE):
                    self._reset_read = self._reset_told = True
                    self._post(self._indicate_disconnect, WSK_FLAG_ABORTIVE)
                elif err:
                    self._break_for_errno(err)  # the transport failed (its error read now)

    def _on_peer_fin(self) -> None:
        """recv() returned 0: the peer's FIN.  Every pending receive completes (with what it
        has, or 0 bytes); a reset that followed the FIN shows as SO_ERROR / state CLOSE."""
        if self._reset_read:
            self._break(Ending.PEER_RST)  # the end of the data was the reset's, not a FIN
            return
        self._eof_seen = True
        self._process(ConnInput.RECV_FIN)
        pending = list(self.recvq)
        self.recvq.clear()
        self._want_read(False)
        for op in pending:
            self._finish(op, NTSTATUS.STATUS_SUCCESS)
        if not self.closed and self.events & (WSK_EVENT_DISCONNECT | WSK_EVENT_RECEIVE):
            # An RST right behind the FIN is news only for an event callback; a later call
            # meets it itself (send: EPIPE, disconnect: shutdown() fails, close: the state).
            self.refresh()

    def _on_transport_error(self, exc: OSError) -> None:
        err = exc.errno
        if err in linux.RESET_ERRNOS:
            if self.machine.state is S.ABORTED:
                return
            self._break(Ending.PEER_RST)
        elif err == errno.ENOTCONN and self.machine.broken:
            return
        else:
            self._break(Ending.TRANSPORT_FAILURE, linux.status_from_errno(err))

    # --- ending pending requests -----------------------------------------------------------
    def _break(self, cause: Ending, failure: int | None = None) -> None:
        """The connection is gone (abort, reset, failure): end every pending request."""
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
        if cause is not Ending.OUR_RST:
            status = (
                NTSTATUS.STATUS_CONNECTION_RESET
                if cause is Ending.PEER_RST
                else self.machine.failure or NTSTATUS.STATUS_UNEXPECTED_NETWORK_ERROR
            )
            what = "reset by the peer" if cause is Ending.PEER_RST else "the transport failed"
            log_operation(log, "connection ended", self.owner or self, status, what)
        self._unregister_all()
        self._end_pending(cause)

    def _end_pending(self, cause: Cause) -> None:
        if cause is not CLOSE:
            self._on_acks()  # what the peer acknowledged before the end succeeded
        ops: list[Op] = [*self._unacked, *self.sendq, *self.recvq]
        if self._disc is not None and self._disc not in ops:
            ops.append(self._disc)
        self._unacked.clear()
        self.sendq.clear()
        self.recvq.clear()
        self._disc = None
        self._final_pending = False
        for op in ops:
            status: int | None = PENDING_OUTCOME[(cause, op.kind)]
            if status is None:
                status = self.machine.failure
            if op.kind is OpKind.RECEIVE and op.transferred and cause is not CLOSE:
                # Data already copied into the buffer is delivered, not lost.
                status = NTSTATUS.STATUS_SUCCESS
            succeeded = status == NTSTATUS.STATUS_SUCCESS and op.kind is not OpKind.DISCONNECT
            self._finish(op, status, op.transferred if succeeded else 0)

    # --- WskDisconnect ---------------------------------------------------------------------
    def disconnect(self, Buffer: WSK_BUF | None, Flags: int, Irp: IRP) -> int:
        abortive = bool(Flags & WSK_FLAG_ABORTIVE)
        if Flags & ~WSK_FLAG_ABORTIVE or (abortive and Buffer is not None):
            # "If WSK_FLAG_ABORTIVE is specified in Flags, Buffer must be NULL."
            if abortive and Buffer is not None and hooks.observer is not None:
                hooks.observer.event("abortive-with-buffer", self)
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
        views: list[memoryview] = []
        if Buffer is not None:
            checked = self._views(Buffer)
            if checked is None:
                return self._complete(Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
            views = checked
        fin_sent = False
        if (
            not abortive
            and not views
            and not self.sendq
            and self.machine.state in (S.CONNECTED, S.REMOTE_CLOSED)
        ):
            # The common case: the FIN goes now, and shutdown() itself tells whether the
            # connection is still there; only if it is not is the TCP state read.
            try:
                self.sock.shutdown(socket.SHUT_WR)
                fin_sent = True
            except OSError:
                self.refresh()
        else:
            self.refresh()
        verdict = disconnect_verdict(self.machine.state, abortive)
        if verdict is not None:
            return self._complete(Irp, verdict)
        if abortive:
            self.abort()
            return self._complete(Irp, NTSTATUS.STATUS_SUCCESS)
        # Graceful: queue behind every outstanding send; the final buffer goes last.
        self.machine.process(ConnInput.SEND_FIN)
        op = Op(self, OpKind.DISCONNECT, Irp, views)
        self._disc = op
        if not self.half_open:
            self._end_receives_without_half_open()
        if views:
            self._final_pending = True
            if not self.sendq and self._transmit(op) and op.transferred == op.want:
                self._final_pending = False
            elif self.machine.broken:
                return (
                    op.status if op.done else self._complete(Irp, NTSTATUS.STATUS_CONNECTION_RESET)
                )
            else:
                self.sendq.append(op)
                self._want_write(True)
        if not self.sendq:
            self._issue_fin(fin_sent)
            if op.done:
                return op.status
        return self._pend(op)

    def _end_receives_without_half_open(self) -> None:
        pending = list(self.recvq)
        self.recvq.clear()
        self._want_read(False)
        for op in pending:
            self._finish(op, NTSTATUS.STATUS_SUCCESS)

    def _issue_fin(self, sent: bool = False) -> None:
        """All sends are in the kernel: send our FIN (unless ``sent`` already) and watch for
        its acknowledgement.  The socket's registration reports the acknowledgement as an
        edge whenever it comes - even one that came before the watch began waits for this
        socket's lock - so the state is read then, not now."""
        self._fin_issued = True
        if not sent:
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError as exc:
                self._on_transport_error(exc)
                return
        if self._disc is not None:
            self._update_watch()

    def _check_fin_acked(self) -> None:
        """Called at each possible state change after our FIN (and once at once).

        Pending: FIN_WAIT1, LAST_ACK, CLOSING.  Done: FIN_WAIT2, TIME_WAIT, or CLOSE with
        nothing unacknowledged.  Failed: CLOSE with bytes (or the FIN) unacknowledged.
        """
        if self.closed or self.machine.broken:
            return
        self._apply(linux.fin_outcome(self.sock))

    def _on_fin_acked(self) -> None:
        if (
            self._disc is not None
            and hooks.faults is not None
            and hooks.faults.stall_graceful_disconnect()
        ):
            return  # fault injection: this graceful disconnect never completes on its own
        self._process(ConnInput.FIN_ACKED)
        # Our FIN acknowledged: every byte before it was acknowledged too.
        acknowledged, self._unacked = self._unacked, []
        for send in acknowledged:
            self._finish(send, NTSTATUS.STATUS_SUCCESS)
        op, self._disc = self._disc, None
        self._update_watch()
        if op is not None:
            log_operation(
                log,
                "WskDisconnect",
                self.owner or self,
                NTSTATUS.STATUS_SUCCESS,
                "graceful: our FIN acknowledged",
            )
            self._finish(op, NTSTATUS.STATUS_SUCCESS, op.transferred)

    def abort(self) -> None:
        """Abortive disconnect: RST now, end every pending request, keep the object."""
        self._on_acks()  # sends the peer acknowledged before the RST succeed
        with contextlib.suppress(OSError):
            linux.abort_keep_fd(self.sock)
        self._break(Ending.OUR_RST)
        log_operation(
            log, "WskDisconnect", self.owner or self, NTSTATUS.STATUS_SUCCESS, "abortive: RST sent"
        )
