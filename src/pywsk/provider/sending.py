"""A connection socket's send side: WskSend, its acknowledgement tracking, WskSendBacklogEvent.

What it does: :class:`SendingSocket` is the part of a connection socket
(:class:`~pywsk.provider.connection.ConnectionSocket` builds on it) that hands WskSend's
bytes to the kernel and completes each send when the peer has acknowledged its last byte
(the WskSend page: no buffering, "until all of the data has actually been sent"), in the
order issued; the acknowledgement is seen through a zerocopy completion on the error queue
and ``tcpi_bytes_acked`` (:mod:`pywsk.provider.acks`).  It also drains the socket's send
queue at each writable edge - the queue holds a pending WskConnect (finished by
:mod:`pywsk.provider.connecting`) and a graceful disconnect's final buffer (after which the
FIN goes: :mod:`pywsk.provider.disconnecting`) - pushes WSK_FLAG_NODELAY data out, and
reports the ideal send backlog (SIO_WSK_QUERY_IDEAL_SEND_BACKLOG, WskSendBacklogEvent).

What it refuses: send flags other than WSK_FLAG_NODELAY (STATUS_NOT_SUPPORTED), a WSK_BUF
that does not fit its MDL chain (STATUS_INVALID_PARAMETER), a send the state does not allow
(the status :func:`~pywsk.core.connection.send_verdict` gives).

What always holds: sends complete in the order issued, each exactly once, never before the
kernel took all of it; a WskSend call completes inline no send but its own - earlier sends
complete at their edge on the provider thread (or when the connection ends); on a kernel
without zerocopy completions a send completes when the kernel took it.  An abort, a reset or a transport
failure fails every send not acknowledged (:mod:`pywsk.provider.disconnecting`).
"""

from __future__ import annotations

import errno
import socket
from typing import TYPE_CHECKING

from ..core.connection import OpKind, send_verdict
from ..nt.status import NTSTATUS
from ..wsk.constants import WSK_EVENT_SEND_BACKLOG, WSK_FLAG_NODELAY
from ..wsk.structs import WSK_BUF
from . import acks
from .base import Op
from .indications import IndicatingSocket

if TYPE_CHECKING:
    from ..nt.irp import IRP

__all__ = ["SendingSocket"]


class SendingSocket(IndicatingSocket):
    """WskSend and WskSendBacklogEvent for a connection socket (its subclasses provide the
    socket's registration, the connect and the disconnect)."""

    __slots__ = ("_acked_base", "_final_pending", "_handed", "_unacked", "sendq")

    # This part's state (set by the connection socket).
    #: What waits for the kernel's send buffer, in order: sends, a pending connect, a
    #: graceful disconnect's final buffer.
    sendq: list[Op]
    #: Sends wholly handed to the kernel, waiting for the peer's acknowledgement of their
    #: last byte (WskSend completes only then, in order).
    _unacked: list[Op]
    #: The bytes handed to the kernel so far.
    _handed: int
    #: ``tcpi_bytes_acked`` before the first byte (None: acknowledgements cannot be
    #: watched, and a send completes when the kernel took it).
    _acked_base: int | None
    #: A graceful disconnect's final buffer is still in ``sendq``.
    _final_pending: bool

    # What the disconnect side provides (provider/disconnecting.py).
    _disc: Op | None
    _fin_issued: bool

    def _want_write(self, on: bool) -> None:
        raise NotImplementedError

    def _finish_connect(self, op: Op, mask: int) -> bool:
        raise NotImplementedError

    def _issue_fin(self, sent: bool = False) -> None:
        raise NotImplementedError

    def _watch_acks(self) -> None:
        """Sends complete at the peer's acknowledgement from now on (before any data)."""
        if acks.watch(self.sock):
            base = acks.bytes_acked(self.sock)
            self._acked_base = base if base >= 0 else None

    # --- WskSend ---------------------------------------------------------------------------
    def send(self, Buffer: WSK_BUF, Flags: int, Irp: IRP) -> int:
        if Flags & ~WSK_FLAG_NODELAY:
            return self._complete(Irp, NTSTATUS.STATUS_NOT_SUPPORTED)
        views = self._views(Buffer)
        if views is None:
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
        verdict = send_verdict(self.machine.state, self.machine.failure)
        if verdict is not None:
            return self._complete(Irp, verdict)
        op = Op(self, OpKind.SEND, Irp, views, Flags)
        if not self.sendq:
            if not self._transmit(op):
                return self._complete_broken_inline(op)
            if op.transferred == op.want:
                self._handed_whole(op)
                if op.done:
                    return op.status
                return self._pend(op)
        self.sendq.append(op)
        self._want_write(True)
        return self._pend(op)

    def _handed_whole(self, op: Op) -> None:
        """Every byte of send ``op`` is in the kernel: it completes once the peer has
        acknowledged its last byte (WskSend: "until all of the data has actually been
        sent"), after the sends before it; at once if acknowledgements cannot be watched."""
        if self._acked_base is None or not (op.want or self._unacked):
            self._finish(op, NTSTATUS.STATUS_SUCCESS)
            return
        op.end = self._handed
        self._unacked.append(op)
        if len(self._unacked) == 1:
            # The acknowledgement may be in already (on loopback it often is).  Only this
            # call's own send completes inline: earlier ones complete at their edge on the
            # provider thread, never inside a later call (whose caller would then run
            # their completion routines in the middle of its own issuing).
            self._on_acks()

    def _on_acks(self) -> None:
        """Complete, in order, every send whose last byte the peer has acknowledged."""
        if self._acked_base is None or not self._unacked:
            return
        acked = acks.bytes_acked(self.sock) - self._acked_base
        done = 0
        for op in self._unacked:
            if op.end > acked:
                break
            done += 1
        if done:
            finished, self._unacked = self._unacked[:done], self._unacked[done:]
            for op in finished:
                self._finish(op, NTSTATUS.STATUS_SUCCESS)

    def _complete_broken_inline(self, op: Op) -> int:
        status = (
            send_verdict(self.machine.state, self.machine.failure)
            or NTSTATUS.STATUS_CONNECTION_RESET
        )
        self._finish(op, status, 0)
        return status

    def _transmit(self, op: Op) -> bool:
        """Hand as much of ``op`` to the kernel as it takes.  False if the connection broke."""
        try:
            watched = self._acked_base is not None and op.kind is OpKind.SEND
            while op.transferred < op.want:
                sent = self._send_watched(op) if watched else self.sock.sendmsg(op.remaining())
                if sent == 0:
                    break
                op.transferred += sent
                self._handed += sent
            if op.flags & WSK_FLAG_NODELAY and op.transferred == op.want:
                self._push()

        except BlockingIOError:
            return True
        except OSError as exc:
            if exc.errno == errno.ENOBUFS and self._acked_base is not None:
                # The socket's budget for zerocopy completions is used up: the next
                # completion (an EPOLLERR edge) frees some, and the send goes on then.
                return True
            self._on_transport_error(exc)
            return False
        return True

    def _send_watched(self, op: Op) -> int:
        """One ``sendmsg`` of send ``op``: every byte but the last, then the last byte alone
        with MSG_ZEROCOPY, whose completion (when TCP frees it: acknowledged) is the wake-up
        (provider/acks.py).  The rest is copied, as Linux's send buffer - and so its flow
        control - expects; MSG_MORE keeps the two parts in one segment."""
        views = op.remaining()
        if op.want - op.transferred == 1:
            return self.sock.sendmsg(views, (), acks.MSG_ZEROCOPY)
        last = views[-1]
        views = [*views[:-1], last[:-1]] if len(last) > 1 else views[:-1]
        return self.sock.sendmsg(views, (), socket.MSG_MORE)

    def _push(self) -> None:
        """WSK_FLAG_NODELAY: send this and earlier queued data now (a TCP_NODELAY pulse), and
        leave the socket's own TCP_NODELAY setting as the client made it."""
        tcp = socket.IPPROTO_TCP
        if not self.sock.getsockopt(tcp, socket.TCP_NODELAY):
            self.sock.setsockopt(tcp, socket.TCP_NODELAY, 1)
            self.sock.setsockopt(tcp, socket.TCP_NODELAY, 0)

    def _on_writable(self, mask: int = 0) -> None:
        while self.sendq:
            op = self.sendq[0]
            if op.kind is OpKind.CONNECT:
                self._finish_connect(op, mask)
                break  # (still connecting: the next edge tells)
            if not self._transmit(op):
                return
            if op.transferred < op.want:
                return  # the kernel's buffer is full: wait for the next writable event
            self.sendq.pop(0)
            if op.kind is OpKind.DISCONNECT:
                self._final_pending = False
            else:
                self._handed_whole(op)
        if not self.sendq:
            self._want_write(False)
            if self._disc is not None and not self._fin_issued and not self.closed:
                self._issue_fin()

    # --- WskSendBacklogEvent ---------------------------------------------------------------
    def ideal_send_backlog(self) -> int:
        """Bytes of sends to keep outstanding to keep the pipe full: the kernel's send buffer."""
        return int(self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF))

    def _indicate_send_backlog(self) -> None:
        if self.events & WSK_EVENT_SEND_BACKLOG and not self.closed:
            self.invoke(WSK_EVENT_SEND_BACKLOG, self.context, self.ideal_send_backlog())
