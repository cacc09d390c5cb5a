"""A connection socket's receive side: WskReceive, WskReceiveEvent indications, WskRelease.

What it does: :class:`IndicatingSocket` is the part of a connection socket
(:class:`~pywsk.provider.connection.ConnectionSocket` builds on it) that reads what the
peer sent: into the pending WskReceives, in the order issued (WSK_FLAG_WAITALL,
WSK_FLAG_DRAIN; a zero-length receive completes at once and resumes paused indications),
and, while none is pending, to the client's WskReceiveEvent - the four answers of its
page: all or part accepted (the rest is held for the next WskReceive, indications pause),
STATUS_DATA_NOT_ACCEPTED, STATUS_PENDING (the list is the client's until WskRelease) -
serves a WskReceive from the data an indication left behind, and takes lists back with
WskRelease, also from another thread before the callback that got the list returned.

What it refuses: receive flags other than WSK_FLAG_WAITALL or WSK_FLAG_DRAIN, or both
(STATUS_NOT_SUPPORTED); a WSK_FLAG_DRAIN receive with a buffer, or a WSK_BUF that does
not fit its MDL chain (STATUS_INVALID_PARAMETER); a receive the state does not allow (the
status :func:`~pywsk.core.connection.receive_verdict` gives); a WskRelease of a list not
retained (STATUS_INVALID_PARAMETER); more retained bytes than the receive buffer holds -
indications (and reads) pause until a release, so TCP holds the peer back
(docs/fidelity.md, "How much a WskReceiveEvent client may retain").

What always holds: the peer's FIN and a transport error met while reading are handed to
the disconnect side (:mod:`pywsk.provider.disconnecting`); one indication at a time per
socket, on the provider thread, at DISPATCH_LEVEL; a pending WskReceive takes new data before any indication; data held back
is delivered before anything read later.
"""

from __future__ import annotations

import mmap
import socket
from typing import TYPE_CHECKING

from ..core.connection import OpKind, ReceiveVerdict, receive_verdict
from ..nt.mdl import IoAllocateMdl, IoFreeMdl, MmBuildMdlForNonPagedPool
from ..nt.status import NTSTATUS
from ..wsk.constants import (
    WSK_EVENT_RECEIVE,
    WSK_FLAG_AT_DISPATCH_LEVEL,
    WSK_FLAG_DRAIN,
    WSK_FLAG_WAITALL,
)
from ..wsk.structs import PSIZE_T, WSK_BUF, WSK_DATA_INDICATION
from .base import Op, ProviderSocket

if TYPE_CHECKING:
    from ..core.connection import ConnectionMachine
    from ..nt.irp import IRP

__all__ = ["INDICATION_BUFFER_SIZE", "IndicatingSocket"]


class IndicatingSocket(ProviderSocket):
    """WskReceive, WskReceiveEvent and WskRelease for a connection socket (its subclasses
    provide the state machine, when the socket is read, and the ending of the socket)."""

    __slots__ = (
        "_eof_seen",
        "_held",
        "_in_callback",
        "_indication_buffer",
        "_released_early",
        "_retain_limit",
        "_retained_bytes",
        "_suspended",
        "recvq",
        "retained",
    )

    #: The pending WskReceives, oldest first (set by the connection socket).
    recvq: list[Op]

    # What the connection socket provides.
    machine: ConnectionMachine
    half_open: bool

    def _want_read(self, on: bool, tried: bool = True) -> None:
        raise NotImplementedError

    def _on_transport_error(self, exc: OSError) -> None:
        raise NotImplementedError

    def _on_peer_fin(self) -> None:
        raise NotImplementedError

    def _init_indications(self) -> None:
        """Set up the state of this side (called once by the connection socket)."""
        # WskReceiveEvent: data the client left with us, whether indications are paused,
        # the reusable indication buffer, and lists the client retained (STATUS_PENDING).
        self._held = bytearray()
        self._suspended = False
        self._eof_seen = False
        # Allocated on the first indication: most connections never enable WskReceiveEvent.
        self._indication_buffer: mmap.mmap | None = None
        self.retained: dict[int, WSK_DATA_INDICATION] = {}
        #: The list a WskReceiveEvent call is running with, and whether it was released
        #: (from another thread) before the call returned.
        self._in_callback: WSK_DATA_INDICATION | None = None
        #: Bytes of the lists the client retains, and how many it may retain before
        #: indications pause (the receive buffer's size, read at the first retention).
        self._retained_bytes = 0
        self._retain_limit = 1 << 62
        self._released_early = False

    def _take_held(self, op: Op) -> None:
        """Serve a receive from data an event callback left with the provider first."""
        if not self._held or op.flags & WSK_FLAG_DRAIN:
            return
        for view in op.remaining():
            n = min(len(view), len(self._held))
            view[:n] = self._held[:n]
            del self._held[:n]
            op.transferred += n
            if not self._held:
                break
        if op.transferred and not (op.flags & WSK_FLAG_WAITALL and op.transferred < op.want):
            self.recvq.remove(op)
            self._finish(op, NTSTATUS.STATUS_SUCCESS)
            self._resume_indications()

    # --- WskReceiveEvent ---------------------------------------------------------------------
    def _indicating(self) -> bool:
        """True when new data goes to WskReceiveEvent (enabled, not paused, nothing pending)."""
        return (
            bool(self.events & WSK_EVENT_RECEIVE)
            and not self._suspended
            and not self._eof_seen
            and not self.closed
            and not self.recvq
            and not self._running.get(WSK_EVENT_RECEIVE)  # one indication at a time
            and self._retained_bytes < self._retain_limit  # retained lists hold the window
            and receive_verdict(self.machine.state, self.half_open) is ReceiveVerdict.READ
        )

    def _update_reading(self, tried: bool = True) -> None:
        self._want_read(bool(self.recvq) or self._indicating(), tried)

    def _callback_returned(self, event: int) -> None:
        super()._callback_returned(event)
        if event == WSK_EVENT_RECEIVE and self._held and not self._suspended and not self.closed:
            # Data left while a callback ran (a resume from inside it): offer it now.
            self._post(self._deliver_held)

    def _deliver_held(self) -> None:
        if self._held and self._indicating():
            held, self._held = self._held, bytearray()
            self._indicate(memoryview(held), owned=True)
        self._update_reading(tried=False)

    def _resume_indications(self) -> None:
        """A WskReceive completed: indications paused by the client resume (buffered first)."""
        if not self._suspended:
            return
        self._suspended = False
        if not self.engine.on_loop():
            self._post(self._deliver_held)  # callbacks run on the provider thread
            return
        if self._held and self._indicating():
            held, self._held = self._held, bytearray()
            self._indicate(memoryview(held), owned=True)
        self._update_reading(tried=False)

    def _indicate_from_kernel(self) -> None:
        while self._indicating():
            buffer = self._indication_buffer
            if buffer is None:
                buffer = self._indication_buffer = _indication_buffer()
            try:
                n = self.sock.recv_into(buffer)
            except BlockingIOError:
                break
            except OSError as exc:
                self._on_transport_error(exc)
                return
            if n == 0:
                self._on_peer_fin()
                return
            self._indicate(memoryview(buffer)[:n], owned=False)
        self._update_reading()

    def _indicate(self, data: memoryview, owned: bool) -> None:
        """Offer ``data`` to WskReceiveEvent and act on the answer (the four cases of its page).

        ``owned``: ``data`` is a private copy the client may keep (else it is the provider's
        reusable buffer).
        """
        n = len(data)
        mdl = IoAllocateMdl(data, n, False, False, None)
        if mdl is None:  # exhaustion: keep the data for a WskReceive, pause
            self._held += data
            self._suspended = True
            return
        MmBuildMdlForNonPagedPool(mdl)
        indication = WSK_DATA_INDICATION(None, WSK_BUF(mdl, 0, n))
        accepted = PSIZE_T(n)
        # The client may hand the list to another thread inside the callback, which may
        # WskRelease it before the callback returns (release() knows it meanwhile).
        self._in_callback = indication
        try:
            status = self.invoke(
                WSK_EVENT_RECEIVE, self.context, WSK_FLAG_AT_DISPATCH_LEVEL, indication, n, accepted
            )
        finally:
            self._in_callback = None
        released = self._released_early
        self._released_early = False
        if status == NTSTATUS.STATUS_PENDING:
            # The client keeps the list until WskRelease; the buffer is now its own.
            if not released:
                self.retained[id(indication)] = indication
                if not self._retained_bytes:
                    # Retained bytes count against the receive buffer, as the transport's
                    # own buffers would: at SO_RCVBUF, indications (and reads) pause.
                    self._retain_limit = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
                self._retained_bytes += n
            if not owned:
                self._indication_buffer = None  # a fresh one for the next indication
            return
        if not released:
            IoFreeMdl(mdl)
        if status == NTSTATUS.STATUS_SUCCESS and 0 <= accepted.value < n:
            self._held += data[accepted.value :]  # partial: pause until a WskReceive
            self._suspended = True
        elif status != NTSTATUS.STATUS_SUCCESS:
            # STATUS_DATA_NOT_ACCEPTED (or a routine that failed): nothing was taken.
            self._held += data
            self._suspended = True

    def release(self, DataIndication: WSK_DATA_INDICATION | None) -> int:
        """WskRelease: give back a list retained by returning STATUS_PENDING."""
        if DataIndication is not None and DataIndication is self._in_callback:
            if self._released_early:
                return NTSTATUS.STATUS_INVALID_PARAMETER
            self._released_early = True  # before the callback returned (another thread)
        elif DataIndication is None or self.retained.pop(id(DataIndication), None) is None:
            return NTSTATUS.STATUS_INVALID_PARAMETER
        element: WSK_DATA_INDICATION | None = DataIndication
        held = self._retained_bytes >= self._retain_limit
        while element is not None:
            if element.Buffer.Mdl is not None:
                IoFreeMdl(element.Buffer.Mdl)
            if DataIndication is not self._in_callback:
                self._retained_bytes = max(0, self._retained_bytes - element.Buffer.Length)
            element = element.Next
        if held and self._retained_bytes < self._retain_limit and not self.closed:
            self._update_reading(tried=False)  # indications resume (they had paused)
        return NTSTATUS.STATUS_SUCCESS

    # --- WskReceive ------------------------------------------------------------------------
    def receive(self, Buffer: WSK_BUF, Flags: int, Irp: IRP) -> int:
        if Flags & ~(WSK_FLAG_WAITALL | WSK_FLAG_DRAIN) or (
            Flags & WSK_FLAG_WAITALL and Flags & WSK_FLAG_DRAIN
        ):
            return self._complete(Irp, NTSTATUS.STATUS_NOT_SUPPORTED)
        if Flags & WSK_FLAG_DRAIN and Buffer is not None and Buffer.Length != 0:
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
        views = self._views(Buffer, writable=True)
        if views is None:
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
        verdict = receive_verdict(self.machine.state, self.half_open, self.machine.failure)
        if verdict is ReceiveVerdict.END_OF_DATA:
            return self._complete(Irp, NTSTATUS.STATUS_SUCCESS, 0)
        if not isinstance(verdict, ReceiveVerdict):
            return self._complete(Irp, verdict)
        if not views and not Flags & WSK_FLAG_DRAIN:
            # A zero-length receive: nothing to copy; it completes at once, and resumes
            # receive-event indications a client paused (WSK_BUF page, WskReceiveEvent).
            status = self._complete(Irp, NTSTATUS.STATUS_SUCCESS, 0)
            self._resume_indications()
            return status
        op = Op(self, OpKind.RECEIVE, Irp, views, Flags)
        self.recvq.append(op)
        if len(self.recvq) == 1:
            self._take_held(op)
            if not op.done:
                self._on_readable()  # edge-triggered: try before waiting
            if op.done:
                return op.status  # completed inline
        self._update_reading()
        return self._pend(op)

    def _on_readable(self) -> None:
        while self.recvq:
            op = self.recvq[0]
            try:
                if op.flags & WSK_FLAG_DRAIN:
                    n = len(self.sock.recv(65536))
                    if n:
                        continue
                else:
                    n = self.sock.recvmsg_into(op.remaining())[0]
            except BlockingIOError:
                break
            except OSError as exc:
                self._on_transport_error(exc)
                return
            if n == 0:
                self._on_peer_fin()
                return
            op.transferred += n
            if op.flags & WSK_FLAG_WAITALL and op.transferred < op.want:
                continue
            self.recvq.pop(0)
            self._finish(op, NTSTATUS.STATUS_SUCCESS)
            self._resume_indications()
        if not self.recvq and self._indicating():
            if self.engine.on_loop():
                self._indicate_from_kernel()
                return
            # Event callbacks run on the provider thread only (one at a time per socket).
            self._post(self._indicate_from_kernel)
        self._update_reading()

    def _indicate_broken(self) -> None:
        """A NULL WskReceiveEvent indication: the socket no longer works; close it."""
        if self.events & WSK_EVENT_RECEIVE:
            self.invoke(
                WSK_EVENT_RECEIVE, self.context, WSK_FLAG_AT_DISPATCH_LEVEL, None, 0, PSIZE_T(0)
            )


#: Size of the provider's receive-indication buffer (page-aligned: receiving into
#: page-aligned memory is about twice as fast on the target machine).
INDICATION_BUFFER_SIZE = 65536


def _indication_buffer() -> mmap.mmap:
    return mmap.mmap(-1, INDICATION_BUFFER_SIZE)
