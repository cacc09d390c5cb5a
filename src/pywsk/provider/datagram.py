"""Datagram WSK sockets over real Linux UDP, and basic sockets.

What it does: :class:`DatagramSocket` implements WSK_PROVIDER_DATAGRAM_DISPATCH for one
socket - WskBind, WskSendTo, WskReceiveFrom, WskRelease, WskGetLocalAddress,
WskSendMessages, WskControlSocket and WskCloseSocket - and WskReceiveFromEvent
indications (WSK_DATAGRAM_INDICATION chains; a list the client retains by returning
STATUS_PENDING stays its own until WskRelease).  It lives in the execution model of
``docs/design.md``: calls act on the caller's thread under the socket's lock, the socket
is registered once in the provider's edge-triggered epoll, and indications run on the
provider thread only.  :class:`BasicSocket` is WSK_FLAG_BASIC_SOCKET: WskControlSocket
and WskCloseSocket only.

Statuses (``docs/fidelity.md``, "Datagram sockets"): a datagram larger than the receive
buffer completes with STATUS_BUFFER_OVERFLOW, the bytes that fit and MSG_TRUNC; a send
larger than the largest UDP payload with STATUS_INVALID_BUFFER_SIZE; an ICMP port
unreachable is reported once, to the next WskReceiveFrom, as STATUS_PORT_UNREACHABLE; a
receive pending at WskCloseSocket completes with STATUS_CANCELLED before the close.

What it refuses: Flags other than 0, a NULL RemoteAddress with no fixed destination, an
address of another family, a bad WSK_BUF / WSK_BUF_LIST entry, bad control information
(STATUS_INVALID_PARAMETER, IRP completed); data calls before WskBind
(STATUS_INVALID_DEVICE_STATE).  No refusal touches another socket.

What always holds: every IRP taken completes exactly once; receives complete in the order
they were issued, with datagrams in the order the kernel queued them; sends leave in the
order they were issued.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import select
import socket
from typing import TYPE_CHECKING, Any, ClassVar, Final

from ..core.connection import OpKind
from ..mechanics import linux
from ..nt.mdl import (
    IoAllocateMdl,
    IoFreeMdl,
    MmBuildMdlForNonPagedPool,
)
from ..nt.status import NTSTATUS
from ..wsk.constants import (
    AF_INET6,
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
    SOCKADDR_IN,
    SOCKADDR_IN6,
    WSK_BUF,
    WSK_BUF_LIST,
    WSK_DATAGRAM_INDICATION,
)
from .base import Op, ProviderSocket, write_out
from .datagram_control import (
    LINUX_IP_RECVERR,
    LINUX_IPV6_RECVERR,
    LINUX_MSG_ERRQUEUE,
    ancillary_space,
    canonical,
    control_bytes,
    datagram_option,
    deliver_control,
    parse_send_control,
    receive_control,
    send_status,
)

if TYPE_CHECKING:
    from ..nt.irp import IRP
    from .client import WskClient
    from .datagram_control import Ancillary

__all__ = ["BasicSocket", "DatagramSocket"]

_WRITE_EVENTS: Final = select.EPOLLOUT | select.EPOLLERR
_READ_EVENTS: Final = select.EPOLLIN | select.EPOLLERR
#: Datagrams indicated in one WskReceiveFromEvent call at most.
INDICATION_BATCH: Final = 32
#: Datagrams kept for WskReceiveFrom after an indication was not accepted, at most.
HELD_LIMIT: Final = 256
_MAX_DATAGRAM: Final = 65536


class _Datagram:
    """One datagram read from the kernel: payload, Windows control info, sender, flags."""

    __slots__ = ("control", "data", "flags", "sender")

    def __init__(self, data: bytes, control: bytes, sender: tuple[Any, ...], flags: int) -> None:
        self.data = data
        self.control = control
        self.sender = sender
        self.flags = flags


class _Send(Op):
    """A WskSendTo (one datagram) or WskSendMessages (several) not yet all sent."""

    __slots__ = ("address", "ancillary", "datagrams", "index")

    def __init__(
        self,
        owner: ProviderSocket,
        irp: IRP,
        datagrams: list[list[memoryview]],
        address: tuple[Any, ...],
        ancillary: Ancillary,
    ) -> None:
        super().__init__(owner, OpKind.SEND, irp, [])
        self.datagrams = datagrams
        self.address = address
        self.ancillary = ancillary
        self.index = 0  # the next datagram to send


class _Receive(Op):
    """A pending WskReceiveFrom and its out-parameters."""

    __slots__ = ("control_flags", "control_info", "control_length", "remote")

    def __init__(
        self,
        owner: ProviderSocket,
        irp: IRP,
        views: list[memoryview],
        remote: SOCKADDR | None,
        control_length: Any,
        control_info: Any,
        control_flags: Any,
    ) -> None:
        super().__init__(owner, OpKind.RECEIVE, irp, views)
        self.remote = remote
        self.control_length = control_length
        self.control_info = control_info
        self.control_flags = control_flags


class DatagramSocket(ProviderSocket):
    """A WSK datagram socket: the WSK_SOCKET the client holds, and its state."""

    EVENTS: ClassVar[int] = WSK_EVENT_RECEIVE_FROM
    EVENT_CALLBACKS: ClassVar[dict[int, str]] = {WSK_EVENT_RECEIVE_FROM: "WskReceiveFromEvent"}

    __slots__ = (
        "_held",
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
        self.recvq: list[_Receive] = []
        self.sendq: list[_Send] = []
        #: Datagrams an indication left with us (STATUS_DATA_NOT_ACCEPTED), for WskReceiveFrom.
        self._held: list[_Datagram] = []
        #: Lists the client retained (STATUS_PENDING from WskReceiveFromEvent).
        self.retained: dict[int, WSK_DATAGRAM_INDICATION] = {}
        #: SIO_WSK_SET_SENDTO_ADDRESS: the destination of sends that name none.
        self.sendto_address: tuple[Any, ...] | None = None
        #: SIO_WSK_SET_REMOTE_ADDRESS: the fixed peer (destination, and the only source).
        self.fixed_remote: tuple[Any, ...] | None = None
        #: An ICMP error (port unreachable) not yet reported to a receive.
        self._unreachable = False
        self._registered = False
        # ICMP errors on an unconnected socket reach it only with IP_RECVERR (Windows reports
        # them on every datagram socket).
        if family == AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, LINUX_IPV6_RECVERR, 1)
        sock.setsockopt(socket.IPPROTO_IP, LINUX_IP_RECVERR, 1)

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
        op = _Send(self, Irp, datagrams, address, ancillary)
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

    def _transmit(self, op: _Send) -> int | None:
        """Send ``op``'s datagrams until done or the kernel says "later"; a failure status."""
        retried = False
        while op.index < len(op.datagrams):
            views = op.datagrams[op.index]
            try:
                sent = self.sock.sendmsg(views, op.ancillary, 0, op.address)
            except BlockingIOError:
                return None
            except OSError as exc:
                if exc.errno in _ICMP_ERRNOS and not retried:
                    # The send consumed an ICMP error of an earlier datagram (Linux reports
                    # it to the next call of any kind): keep it for a receive, send again.
                    self._note_unreachable()
                    retried = True
                    continue
                return send_status(exc.errno)
            retried = False
            op.transferred += sent
            op.index += 1
        return None

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
        if views is None:
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
        if ControlLength is not None:
            if not hasattr(ControlLength, "value"):
                return self._complete(Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
            if ControlInfo is not None and isinstance(
                control_bytes(ControlInfo, int(ControlLength.value)), int
            ):
                return self._complete(Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
        elif ControlInfo is not None:
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
        if RemoteAddress is not None and not isinstance(RemoteAddress, SOCKADDR):
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
        if not self.bound:
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_DEVICE_STATE)
        op = _Receive(self, Irp, views, RemoteAddress, ControlLength, ControlInfo, ControlFlags)
        self.recvq.append(op)
        if len(self.recvq) == 1:
            self._on_readable()
            if op.done:
                return op.status
        return self._pend(op)

    def _read_one(self) -> _Datagram | int | None:
        """One datagram from the kernel (from the fixed peer, if one is set); a status for
        an error; None if none is there."""
        while True:
            try:
                data, ancdata, flags, sender = self.sock.recvmsg(_MAX_DATAGRAM, ancillary_space())
            except BlockingIOError:
                return None
            except OSError as exc:
                if exc.errno in _ICMP_ERRNOS:
                    self._drain_errors()
                    return NTSTATUS.STATUS_PORT_UNREACHABLE
                return linux.status_from_errno(exc.errno)
            fixed = self.fixed_remote
            if fixed is None or tuple(sender[:2]) == tuple(fixed[:2]):
                return _Datagram(data, receive_control(ancdata), sender, flags)

    def _note_unreachable(self) -> None:
        self._drain_errors()
        self._unreachable = True

    def _drain_errors(self) -> None:
        """Empty the error queue IP_RECVERR fills (one report stands for them all)."""
        with contextlib.suppress(OSError):
            for _ in range(64):
                self.sock.recvmsg(1, 512, LINUX_MSG_ERRQUEUE)

    def _on_readable(self) -> None:
        while self.recvq and not self.closed:
            op = self.recvq[0]
            if self._unreachable:
                self._unreachable = False
                self.recvq.pop(0)
                self._finish(op, NTSTATUS.STATUS_PORT_UNREACHABLE, 0)
                continue
            got = self._held.pop(0) if self._held else self._read_one()
            if got is None:
                return
            self.recvq.pop(0)
            if isinstance(got, int):
                self._finish(op, got, 0)
                continue
            self._deliver(op, got)
        if self._indicating():
            if self.engine.on_loop():
                self._indicate()
            else:
                self._post(self._indicate)  # callbacks run on the provider thread only

    def _deliver(self, op: _Receive, datagram: _Datagram) -> None:
        data = memoryview(datagram.data)
        copied = 0
        for view in op.views:
            n = min(len(view), len(data) - copied)
            view[:n] = data[copied : copied + n]
            copied += n
            if copied == len(data):
                break
        flags = deliver_control(datagram.control, op.control_length, op.control_info)
        status: int = NTSTATUS.STATUS_SUCCESS
        if copied < len(data) or datagram.flags & socket.MSG_TRUNC:
            flags |= MSG_TRUNC
            status = NTSTATUS.STATUS_BUFFER_OVERFLOW
        if op.control_flags is not None and hasattr(op.control_flags, "value"):
            op.control_flags.value = flags
        if op.remote is not None:
            with contextlib.suppress(ValueError, AttributeError):
                linux.from_linux_address(op.remote, self.sock.family, datagram.sender)
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
            batch: list[_Datagram] = []
            while len(batch) < INDICATION_BATCH:
                got = self._read_one()
                if got == NTSTATUS.STATUS_PORT_UNREACHABLE:
                    continue  # an ICMP error has no place in an indication: dropped
                if got is None or isinstance(got, int):
                    break
                batch.append(got)
            if not batch:
                return
            self._offer(batch)

    def _offer(self, batch: list[_Datagram]) -> None:
        head: WSK_DATAGRAM_INDICATION | None = None
        elements: list[WSK_DATAGRAM_INDICATION] = []
        for datagram in reversed(batch):
            data = bytearray(datagram.data)  # the client's own until it returns or releases
            mdl = IoAllocateMdl(data, max(len(data), 1), False, False, None)
            if mdl is None:
                self._free(elements)
                self._hold(batch)
                return
            MmBuildMdlForNonPagedPool(mdl)
            sender = _sockaddr(self.family)
            with contextlib.suppress(ValueError, AttributeError):
                linux.from_linux_address(sender, self.sock.family, datagram.sender)
            control = datagram.control or None
            head = WSK_DATAGRAM_INDICATION(
                head, WSK_BUF(mdl, 0, len(data)), control, len(datagram.control), sender
            )
            elements.append(head)
        # Retained from the start: the client may hand an element to another thread inside
        # the callback, and that thread may WskRelease it before the callback returns.  Any
        # element, on its own or as a list, can be given back (as WireGuard's driver does
        # after unlinking them).
        for element in elements:
            self.retained[id(element)] = element
        status = self.invoke(WSK_EVENT_RECEIVE_FROM, self.context, WSK_FLAG_AT_DISPATCH_LEVEL, head)
        if status == NTSTATUS.STATUS_PENDING:
            return
        self._free([e for e in elements if self.retained.pop(id(e), None) is not None])
        if status not in (NTSTATUS.STATUS_SUCCESS, None):
            # STATUS_DATA_NOT_ACCEPTED: keep the datagrams for WskReceiveFrom; an event
            # enabled with SO_WSK_EVENT_CALLBACK is now disabled (a static one stays on).
            self._hold(batch)
            if not self.static_events & WSK_EVENT_RECEIVE_FROM:
                self.events &= ~WSK_EVENT_RECEIVE_FROM

    def _hold(self, batch: list[_Datagram]) -> None:
        room = HELD_LIMIT - len(self._held)
        self._held.extend(batch[: max(room, 0)])

    @staticmethod
    def _free(elements: list[WSK_DATAGRAM_INDICATION]) -> None:
        for element in elements:
            if element.Buffer.Mdl is not None:
                IoFreeMdl(element.Buffer.Mdl)

    def release(self, DataIndication: WSK_DATAGRAM_INDICATION | None) -> int:
        """WskRelease: give back retained datagrams - ``DataIndication`` and those its
        ``Next`` chain still links to (a client may have reused ``Next`` for its own)."""
        if DataIndication is None or id(DataIndication) not in self.retained:
            return NTSTATUS.STATUS_INVALID_PARAMETER
        element: Any = DataIndication
        while isinstance(element, WSK_DATAGRAM_INDICATION):
            if self.retained.pop(id(element), None) is None:
                break
            if element.Buffer.Mdl is not None:
                IoFreeMdl(element.Buffer.Mdl)
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
        if isinstance(op, _Receive) and op in self.recvq:
            self.recvq.remove(op)
            self._finish(op, NTSTATUS.STATUS_CANCELLED, 0)
        elif isinstance(op, _Send) and op in self.sendq and op.index == 0:
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
        address: tuple[Any, ...] | None = None
        if in_buf is not None and in_size != 0:
            try:
                address = linux.to_linux_address(in_buf, self.family)
            except (ValueError, AttributeError):
                return NTSTATUS.STATUS_INVALID_PARAMETER
        if code == SIO_WSK_SET_SENDTO_ADDRESS:
            self.sendto_address = address
        else:
            # Not connect(): disconnecting a UDP socket bound to port 0 gives its port back.
            self.fixed_remote = canonical(address) if address is not None else None
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


#: The errnos with which Linux reports an ICMP error for an earlier datagram.
_ICMP_ERRNOS: Final = frozenset({errno.ECONNREFUSED})


def _sockaddr(family: int) -> SOCKADDR:
    return SOCKADDR_IN6() if family == AF_INET6 else SOCKADDR_IN()
