"""Datagram WSK sockets over real Linux UDP, and basic sockets.

What it does: :class:`DatagramSocket` implements WSK_PROVIDER_DATAGRAM_DISPATCH (WskBind,
WskSendTo, WskReceiveFrom, WskRelease, WskGetLocalAddress, WskSendMessages,
WskControlSocket, WskCloseSocket) and WskReceiveFromEvent indications (a list retained
with STATUS_PENDING stays the client's until WskRelease), in the execution model of
``docs/design.md``: calls act on the caller's thread under the socket's lock, one
edge-triggered epoll registration, indications on the provider thread only.  Reads are
``recvmmsg`` batches, WskSendMessages leaves in ``sendmmsg`` batches; the Linux recipes -
ICMP errors, statuses, truncation, MSG_BCAST / MSG_MCAST - are :mod:`pywsk.mechanics.datagram`'s
(``docs/fidelity.md``, "Datagram sockets").  :class:`BasicSocket` is WSK_FLAG_BASIC_SOCKET.

What it refuses: Flags other than 0, a NULL RemoteAddress with no fixed destination, an
address of another family, a bad WSK_BUF / WSK_BUF_LIST entry, bad control information
(STATUS_INVALID_PARAMETER, IRP completed); data calls before WskBind
(STATUS_INVALID_DEVICE_STATE).  No refusal touches another socket.

What always holds: every IRP taken completes exactly once; receives complete in the order
they were issued, with datagrams in the order the kernel queued them; sends leave in the
order they were issued; a receive pending at WskCloseSocket completes STATUS_CANCELLED first.
"""

from __future__ import annotations

import contextlib
import functools
import select
import socket
from typing import TYPE_CHECKING, Any, ClassVar, Final

from ..mechanics import datagram as udp
from ..mechanics import linux
from ..nt.mdl import (
    IoAllocateMdl,
    IoFreeMdl,
    MmBuildMdlForNonPagedPool,
)
from ..nt.status import NTSTATUS
from ..wsk.constants import (
    MSG_TRUNC,
    SIO_WSK_SET_REMOTE_ADDRESS,
    SIO_WSK_SET_SENDTO_ADDRESS,
    WSK_EVENT_RECEIVE_FROM,
    WSK_FLAG_AT_DISPATCH_LEVEL,
    WskGetOption,
    WskIoctl,
)
from ..wsk.structs import (
    SOCKADDR,
    WSK_BUF,
    WSK_BUF_LIST,
    WSK_DATAGRAM_INDICATION,
)
from .base import Op, ProviderSocket, write_out
from .datagram_control import (
    Datagram,
    ReceiveOp,
    SendOp,
    datagram_option,
    deliver_control,
    destination,
    parse_send_control,
    pktinfo_option,
    receive_arguments_ok,
    receive_control,
)

if TYPE_CHECKING:
    from ..nt.irp import IRP
    from .client import WskClient

__all__ = ["BasicSocket", "DatagramSocket"]

_WRITE_EVENTS: Final = select.EPOLLOUT | select.EPOLLERR
_READ_EVENTS: Final = select.EPOLLIN | select.EPOLLERR
#: Datagrams indicated in one WskReceiveFromEvent call at most.
INDICATION_BATCH: Final = 32
#: Datagrams kept for WskReceiveFrom after an indication was not accepted, at most.
HELD_LIMIT: Final = 256


class DatagramSocket(ProviderSocket):
    """A WSK datagram socket: the WSK_SOCKET the client holds, and its state."""

    EVENTS: ClassVar[int] = WSK_EVENT_RECEIVE_FROM
    EVENT_CALLBACKS: ClassVar[dict[int, str]] = {WSK_EVENT_RECEIVE_FROM: "WskReceiveFromEvent"}

    __slots__ = (
        "_blocks",
        "_destinations",
        "_held",
        "_pktinfo",
        "_reader",
        "_registered",
        "_unreachable",
        "bound",
        "fixed_remote",
        "recvq",
        "retained",
        "sendq",
        "sendto_address",
    )

    def __init__(
        self, client: WskClient, family: int, sock: socket.socket, context: Any, dispatch: Any
    ) -> None:
        super().__init__(
            client.subsystem.datagram_dispatch, client, family, sock, context, dispatch
        )
        self.bound = False
        self.recvq: list[ReceiveOp] = []
        self.sendq: list[SendOp] = []
        #: Datagrams an indication left with us (STATUS_DATA_NOT_ACCEPTED), for WskReceiveFrom.
        self._held: list[Datagram] = []
        #: Lists the client retained (STATUS_PENDING from WskReceiveFromEvent).
        self.retained: dict[int, WSK_DATAGRAM_INDICATION] = {}
        #: SIO_WSK_SET_SENDTO_ADDRESS: the destination of sends that name none.
        self.sendto_address: tuple[Any, ...] | None = None
        #: SIO_WSK_SET_REMOTE_ADDRESS: the fixed peer (destination, and the only source).
        self.fixed_remote: tuple[Any, ...] | None = None
        #: An ICMP error (port unreachable) not yet reported to a receive.
        self._unreachable = False
        self._registered = False
        #: recvmmsg's buffers (made at the first receive).
        self._reader: udp.BatchReader | None = None
        #: The MDL of each indicated batch -> its elements not yet given back.
        self._blocks: dict[int, list[Any]] = {}
        udp.enable_error_queue(sock)
        #: IP_PKTINFO / IPV6_PKTINFO: the client is given the destination.
        self._pktinfo = False
        #: Linux reports each datagram's destination (for MSG_BCAST / MSG_MCAST): from the
        #: first WskReceiveFrom or IP_PKTINFO on; indications need neither.
        self._destinations = False

    def __repr__(self) -> str:
        return f"<WSK datagram socket {self.local}>"

    # --- readiness ---------------------------------------------------------------------------
    def _register(self) -> None:
        if not self._registered and not self.closed:
            self._registered = True
            engine = self.engine
            engine.register(
                self.sock.fileno(), functools.partial(engine.locked, self.lock, self._on_ready)
            )

    def _on_ready(self, mask: int) -> None:
        """An edge (provider thread, under the lock): drain sends, serve receives, indicate."""
        if self.closed:
            return
        if self.sendq and mask & _WRITE_EVENTS:
            self._push_sends()
        if mask & _READ_EVENTS:
            self._on_readable()

    # --- WskBind ---------------------------------------------------------------------------
    def bind(self, LocalAddress: SOCKADDR, Flags: int, Irp: IRP) -> int:
        if Flags != 0:
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
        if self.bound:
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_DEVICE_STATE)
        try:
            address = linux.to_linux_address(LocalAddress, self.family)
            self.sock.bind(address)
        except ValueError:
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
        except OSError as exc:
            return self._complete(Irp, linux.status_from_errno(exc.errno))
        self.bound = True
        self.local = self.sock.getsockname()
        self._register()
        if self.events:
            self.on_events_changed()  # static event callbacks start once bound
        return self._complete(Irp, NTSTATUS.STATUS_SUCCESS)

    def get_local_address(self, LocalAddress: SOCKADDR, Irp: IRP) -> int:
        if not self.bound or self.local is None:
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_DEVICE_STATE)
        return self._fill(LocalAddress, self.sock.getsockname(), Irp)

    # --- sending -----------------------------------------------------------------------------
    def _destination(self, RemoteAddress: SOCKADDR | None) -> tuple[Any, ...] | int:
        if RemoteAddress is None:
            if self.sendto_address is not None:
                return self.sendto_address
            if self.fixed_remote is not None:
                return self.fixed_remote
            return NTSTATUS.STATUS_INVALID_PARAMETER
        try:
            return linux.to_linux_address(RemoteAddress, self.family)
        except (ValueError, AttributeError):
            return NTSTATUS.STATUS_INVALID_PARAMETER

    def send_to(
        self,
        Buffer: WSK_BUF,
        Flags: int,
        RemoteAddress: SOCKADDR | None,
        ControlInfoLength: int,
        ControlInfo: Any,
        Irp: IRP,
    ) -> int:
        views = self._views(Buffer)
        if views is None:
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
        return self._start_send([views], Flags, RemoteAddress, ControlInfoLength, ControlInfo, Irp)

    def send_messages(
        self,
        BufferList: WSK_BUF_LIST | None,
        Flags: int,
        RemoteAddress: SOCKADDR | None,
        ControlInfoLength: int,
        ControlInfo: Any,
        Irp: IRP,
    ) -> int:
        datagrams: list[list[memoryview]] = []
        element = BufferList
        while element is not None:
            if not isinstance(element, WSK_BUF_LIST) or len(datagrams) > 1024:
                return self._complete(Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
            views = self._views(element.Buffer)
            if views is None:
                return self._complete(Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
            datagrams.append(views)
            element = element.Next
        if not datagrams:
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
        return self._start_send(
            datagrams, Flags, RemoteAddress, ControlInfoLength, ControlInfo, Irp
        )

    def _start_send(
        self,
        datagrams: list[list[memoryview]],
        Flags: int,
        RemoteAddress: SOCKADDR | None,
        ControlInfoLength: int,
        ControlInfo: Any,
        Irp: IRP,
    ) -> int:
        if Flags != 0:
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
        if not self.bound:
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_DEVICE_STATE)
        address = self._destination(RemoteAddress)
        if isinstance(address, int):
            return self._complete(Irp, address)
        ancillary = parse_send_control(self.family, ControlInfoLength, ControlInfo)
        if isinstance(ancillary, int):
            return self._complete(Irp, ancillary)
        op = SendOp(self, Irp, datagrams, address, ancillary)
        if not self.sendq:
            failure = self._transmit(op)
            if failure is not None:
                self._finish(op, failure, op.transferred)
                return failure
            if op.index == len(op.datagrams):
                self._finish(op, NTSTATUS.STATUS_SUCCESS)
                return NTSTATUS.STATUS_SUCCESS
        self.sendq.append(op)  # the kernel's send buffer is full: wait for EPOLLOUT
        return self._pend(op)

    def _transmit(self, op: SendOp) -> int | None:
        """Send ``op``'s datagrams until done or the kernel says "later"; a failure status."""
        retried = False
        while True:
            op.index, sent, err = udp.send_some(
                self.sock, op.datagrams, op.index, op.address, op.ancillary, op.plan
            )
            op.transferred += sent
            if not err:
                return None  # all sent, or the send buffer is full
            if err in udp.ICMP_ERRNOS and not retried:
                # The send consumed an ICMP error of an earlier datagram (Linux reports it
                # to the next call of any kind): keep it for a receive, send again.
                self._note_unreachable()
                retried = True
                continue
            return udp.send_status(err)

    def _push_sends(self) -> None:
        while self.sendq:
            op = self.sendq[0]
            failure = self._transmit(op)
            if failure is None and op.index < len(op.datagrams):
                return  # still full
            self.sendq.pop(0)
            self._finish(op, failure if failure is not None else NTSTATUS.STATUS_SUCCESS)

    # --- receiving ---------------------------------------------------------------------------
    def receive_from(
        self,
        Buffer: WSK_BUF,
        Flags: int,
        RemoteAddress: Any,
        ControlLength: Any,
        ControlInfo: Any,
        ControlFlags: Any,
        Irp: IRP,
    ) -> int:
        if Flags != 0:
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
        views = self._views(Buffer, writable=True)
        if views is None or not receive_arguments_ok(RemoteAddress, ControlLength, ControlInfo):
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
        if not self.bound:
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_DEVICE_STATE)
        self._report_destinations()
        op = ReceiveOp(self, Irp, views, RemoteAddress, ControlLength, ControlInfo, ControlFlags)
        self.recvq.append(op)
        if len(self.recvq) == 1:
            self._on_readable()
            if op.done:
                return op.status
        return self._pend(op)

    def _read(self, limit: int, copy: bool = True) -> list[Datagram] | int:
        """Up to ``limit`` datagrams from the kernel in one recvmmsg (those of the fixed
        peer, if one is set), each copied out of the reader's buffer (``copy=False``: views
        of it, valid until the next read); a status for an error; [] if none is there."""
        reader = self._reader
        if reader is None:
            reader = self._reader = udp.BatchReader(INDICATION_BATCH)
        while True:
            try:
                got = reader.read(self.sock, limit)
            except OSError as exc:
                if exc.errno in udp.ICMP_ERRNOS:
                    udp.drain_errors(self.sock)
                return udp.receive_status(exc.errno)
            fixed = self.fixed_remote
            out = [
                Datagram(
                    bytes(data) if copy else data,
                    receive_control(anc, self._pktinfo) if anc else b"",
                    sender,
                    flags,
                    udp.destination_flags(anc),
                )
                for data, sender, anc, flags in got
                if fixed is None or udp.address_from_raw(sender)[:2] == tuple(fixed[:2])
            ]
            if out or not got:
                return out

    def _report_destinations(self) -> None:
        if not self._destinations:
            self._destinations = udp.enable_destination(self.sock)

    def _note_unreachable(self) -> None:
        udp.drain_errors(self.sock)
        self._unreachable = True

    def _on_readable(self) -> None:
        while self.recvq and not self.closed:
            op = self.recvq[0]
            if self._unreachable:
                self._unreachable = False
                self.recvq.pop(0)
                self._finish(op, NTSTATUS.STATUS_PORT_UNREACHABLE, 0)
                continue
            if not self._held:
                got = self._read(len(self.recvq))
                if isinstance(got, int):
                    self.recvq.pop(0)
                    self._finish(op, got, 0)
                    continue
                if not got:
                    return
                self._held.extend(got)
            self.recvq.pop(0)
            self._deliver(op, self._held.pop(0))
        if self._indicating():
            if self.engine.on_loop():
                self._indicate()
            else:
                self._post(self._indicate)  # callbacks run on the provider thread only

    def _deliver(self, op: ReceiveOp, datagram: Datagram) -> None:
        data = datagram.data
        copied = udp.scatter(data, op.views)
        flags = deliver_control(datagram.control, op.control_length, op.control_info)
        flags |= datagram.destination
        status = udp.truncation_status(copied, len(data), datagram.flags)
        if status != NTSTATUS.STATUS_SUCCESS:
            flags |= MSG_TRUNC
        if op.control_flags is not None and hasattr(op.control_flags, "value"):
            op.control_flags.value = flags
        if op.remote is not None:
            with contextlib.suppress(ValueError, AttributeError):
                sender = udp.address_from_raw(datagram.sender)
                linux.from_linux_address(op.remote, self.sock.family, sender)
        op.transferred = copied
        self._finish(op, status, copied)

    # --- WskReceiveFromEvent -------------------------------------------------------------------
    def _indicating(self) -> bool:
        return (
            bool(self.events & WSK_EVENT_RECEIVE_FROM)
            and self.bound
            and not self.closed
            and not self.recvq
            and not self._running.get(WSK_EVENT_RECEIVE_FROM)
        )

    def _indicate(self) -> None:
        """Read what the kernel holds and offer it, a batch per call (provider thread)."""
        # Datagrams an indication refused (``_held``) wait for WskReceiveFrom: offering them
        # again could loop for ever with a static event the client keeps refusing.
        while self._indicating():
            batch = self._read(INDICATION_BATCH, copy=False)
            if isinstance(batch, int):
                continue  # an ICMP error has no place in an indication: dropped
            if not batch:
                return
            self._offer(batch)

    def _offer(self, batch: list[Datagram]) -> None:
        """One WskReceiveFromEvent with the batch: one buffer and one MDL hold every
        datagram (each element's WSK_BUF at its offset); the MDL is freed when the last
        element is given back."""
        block = bytearray(b"".join(datagram.data for datagram in batch))
        whole = memoryview(block)
        offset = 0
        for datagram in batch:  # ours now, out of the reader's buffer (read again below)
            end = offset + len(datagram.data)
            datagram.data = whole[offset:end]
            offset = end
        mdl = IoAllocateMdl(block, max(len(block), 1), False, False, None)
        if mdl is None:
            self._hold(batch)
            return
        MmBuildMdlForNonPagedPool(mdl)
        head: WSK_DATAGRAM_INDICATION | None = None
        elements: list[WSK_DATAGRAM_INDICATION] = []
        for datagram in reversed(batch):
            offset -= len(datagram.data)
            head = WSK_DATAGRAM_INDICATION(
                head,
                WSK_BUF(mdl, offset, len(datagram.data)),
                datagram.control or None,
                len(datagram.control),
                udp.sockaddr_from_raw(datagram.sender),
            )
            elements.append(head)
        # Retained from the start: the client may hand an element to another thread inside
        # the callback, and that thread may WskRelease it before the callback returns.  Any
        # element, on its own or as a list, can be given back (as WireGuard's driver does
        # after unlinking them).
        retained = self.retained
        for element in elements:
            retained[id(element)] = element
        self._blocks[id(mdl)] = [mdl, len(elements)]
        status = self.invoke(WSK_EVENT_RECEIVE_FROM, self.context, WSK_FLAG_AT_DISPATCH_LEVEL, head)
        if status == NTSTATUS.STATUS_PENDING:
            return
        for element in elements:
            if retained.pop(id(element), None) is not None:
                self._give_back(element)
        if status not in (NTSTATUS.STATUS_SUCCESS, None):
            # STATUS_DATA_NOT_ACCEPTED: keep the datagrams for WskReceiveFrom; an event
            # enabled with SO_WSK_EVENT_CALLBACK is now disabled (a static one stays on).
            self._hold(batch)
            if not self.static_events & WSK_EVENT_RECEIVE_FROM:
                self.events &= ~WSK_EVENT_RECEIVE_FROM

    def _give_back(self, element: WSK_DATAGRAM_INDICATION) -> None:
        """One element is the provider's again: free its batch's MDL after the last."""
        mdl = element.Buffer.Mdl
        entry = self._blocks.get(id(mdl))
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            del self._blocks[id(mdl)]
            IoFreeMdl(entry[0])

    def _hold(self, batch: list[Datagram]) -> None:
        room = HELD_LIMIT - len(self._held)
        self._held.extend(batch[: max(room, 0)])

    def release(self, DataIndication: WSK_DATAGRAM_INDICATION | None) -> int:
        """WskRelease: give back retained datagrams - ``DataIndication`` and those its
        ``Next`` chain still links to (a client may have reused ``Next`` for its own)."""
        if DataIndication is None or id(DataIndication) not in self.retained:
            return NTSTATUS.STATUS_INVALID_PARAMETER
        element: Any = DataIndication
        while isinstance(element, WSK_DATAGRAM_INDICATION):
            if self.retained.pop(id(element), None) is None:
                break
            self._give_back(element)
            element = element.Next
        return NTSTATUS.STATUS_SUCCESS

    def events_allowed_now(self) -> bool:
        return self.bound and not self.closed

    def on_events_changed(self) -> None:
        if self.events & WSK_EVENT_RECEIVE_FROM and self.bound:
            # Edge-triggered: datagrams already queued raised their edge before we cared.
            self._post(self._on_ready, select.EPOLLIN)

    def _callback_returned(self, event: int) -> None:
        super()._callback_returned(event)
        if event == WSK_EVENT_RECEIVE_FROM and not self.closed and self.events & event:
            self._post(self._on_ready, select.EPOLLIN)  # what arrived while it ran

    # --- cancel and close --------------------------------------------------------------------
    def cancel(self, op: Op) -> None:
        if op.done:
            return
        if isinstance(op, ReceiveOp) and op in self.recvq:
            self.recvq.remove(op)
            self._finish(op, NTSTATUS.STATUS_CANCELLED, 0)
        elif isinstance(op, SendOp) and op in self.sendq and op.index == 0:
            self.sendq.remove(op)
            self._finish(op, NTSTATUS.STATUS_CANCELLED, 0)

    def close(self, Irp: IRP) -> int:
        self.closed = True
        if self._registered:
            self.engine.forget(self.sock.fileno())
        self.sock.close()
        pending: list[Op] = [*self.recvq, *self.sendq]
        self.recvq.clear()
        self.sendq.clear()
        self._held.clear()
        for op in pending:
            self._finish(op, NTSTATUS.STATUS_CANCELLED, 0)
        return self.finish_close(Irp)

    # --- WskControlSocket -----------------------------------------------------------------------
    def _control(
        self,
        kind: int,
        code: int,
        level: int,
        in_size: int,
        in_buf: Any,
        out_size: int,
        out_buf: Any,
    ) -> tuple[int, int]:
        if kind == WskIoctl and code in (SIO_WSK_SET_REMOTE_ADDRESS, SIO_WSK_SET_SENDTO_ADDRESS):
            return self._set_destination(code, in_size, in_buf), 0
        pktinfo = pktinfo_option(self.family, kind, code, level, in_size, in_buf, self._pktinfo)
        if pktinfo is not None:
            status, self._pktinfo = pktinfo
            if self._pktinfo:
                self._report_destinations()
            if kind == WskGetOption and status == NTSTATUS.STATUS_SUCCESS:
                return write_out(out_buf, out_size, int(self._pktinfo), 4)
            return status, 0
        answer = datagram_option(self.sock, self.family, kind, code, level, in_size, in_buf)
        if answer is None:
            return super()._control(kind, code, level, in_size, in_buf, out_size, out_buf)
        if kind == WskGetOption and answer[0] == NTSTATUS.STATUS_SUCCESS:
            return write_out(out_buf, out_size, answer[1], 4)
        return answer[0], 0

    def _set_destination(self, code: int, in_size: int, in_buf: Any) -> int:
        """SIO_WSK_SET_REMOTE_ADDRESS (a fixed peer: the destination of sends that name
        none and the only source received from) or SIO_WSK_SET_SENDTO_ADDRESS (the
        destination only); no input clears it."""
        if not self.bound:
            return NTSTATUS.STATUS_INVALID_DEVICE_STATE
        address = destination(in_size, in_buf, self.family)
        if isinstance(address, int):
            return address
        if code == SIO_WSK_SET_SENDTO_ADDRESS:
            self.sendto_address = address
        else:
            # Not connect(): disconnecting a UDP socket bound to port 0 gives its port back.
            self.fixed_remote = udp.canonical(address) if address is not None else None
        return NTSTATUS.STATUS_SUCCESS


class BasicSocket(ProviderSocket):
    """WSK_FLAG_BASIC_SOCKET: WskControlSocket and WskCloseSocket only."""

    __slots__ = ()

    def __init__(
        self, client: WskClient, family: int, sock: socket.socket, context: Any, dispatch: Any
    ) -> None:
        super().__init__(client.subsystem.basic_dispatch, client, family, sock, context, dispatch)

    def __repr__(self) -> str:
        return "<WSK basic socket>"

    def cancel(self, op: Op) -> None:
        """A basic socket has no pending requests."""

    def close(self, Irp: IRP) -> int:
        self.closed = True
        self.sock.close()
        return self.finish_close(Irp)
