"""A UDP tunnel endpoint written the way a VPN driver uses WSK datagram sockets.

The shape follows the socket layer of a well-known WSK client (WireGuard's Windows
driver): one datagram socket per address family, bound to the wildcard address on the
same port, with IP_PKTINFO / IPV6_PKTINFO on; received datagrams arrive through
WskReceiveFromEvent, are *retained* (the callback returns STATUS_PENDING and unlinks each
WSK_DATAGRAM_INDICATION) and handed to a worker, which gives each one back with
WskRelease once it is done with it; replies leave in batches through WskSendMessages with
an IN_PKTINFO / IN6_PKTINFO naming the address the peer wrote to, so the answer comes
from the address that was asked.  (This is pywsk's own code; nothing is copied.)

``TunnelEndpoint`` is the reusable part; ``main`` runs it as an echo endpoint and talks to
it from a plain Python UDP socket over 127.0.0.1 and ::1.

Run it:  python examples/udp_tunnel.py
"""

from __future__ import annotations

import collections
import ctypes
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pywsk.nt import *
from pywsk.wsk import *

POOL_TAG = b"Tun "
WAIT_100NS = -10 * 1000 * 1000 * 10  # ten seconds, relative


@dataclass
class Endpoint:
    """Where a datagram came from and which local address it was sent to: replying to it
    means sending to ``Address`` with ``Control`` (PKTINFO with that local address)."""

    Family: int
    Address: SOCKADDR_IN | SOCKADDR_IN6
    Local: str
    Control: bytearray = field(default_factory=bytearray)


@dataclass
class Received:
    Socket: WSK_SOCKET
    Indication: WSK_DATAGRAM_INDICATION
    Endpoint: Endpoint
    Payload: bytes


Handler = Callable[["TunnelEndpoint", Endpoint, bytes], None]


def FindControl(Indication: WSK_DATAGRAM_INDICATION, Level: int, Type: int) -> memoryview | None:
    """The data of the first control object of ``Level``/``Type`` in an indication."""
    if Indication.ControlInfo is None:
        return None
    Message = WSAMSG(Control=WSABUF(Indication.ControlInfoLength, Indication.ControlInfo))
    Header = WSA_CMSG_FIRSTHDR(Message)
    while Header is not None:
        if (Header.cmsg_level, Header.cmsg_type) == (Level, Type):
            return WSA_CMSG_DATA(Header)
        Header = WSA_CMSG_NXTHDR(Message, Header)
    return None


def EndpointFor(Family: int, Remote: SOCKADDR, Local: bytes) -> Endpoint:
    """The reply endpoint: PKTINFO naming ``Local``, then an empty object (the pattern of
    the driver this follows; Windows accepts an object with no data)."""
    if Family == AF_INET:
        Info: Any = IN_PKTINFO
        Level, Type, Empty = IPPROTO_IP, IP_PKTINFO, IP_OPTIONS
    else:
        Info, Level, Type, Empty = IN6_PKTINFO, IPPROTO_IPV6, IPV6_PKTINFO, IPV6_RTHDR
    Size = ctypes.sizeof(Info)
    Control = bytearray(WSA_CMSG_SPACE(Size) + WSA_CMSG_SPACE(0))
    First = CMSGHDR(Control)
    First.cmsg_len, First.cmsg_level, First.cmsg_type = WSA_CMSG_LEN(Size), Level, Type
    Data = Info.from_buffer(WSA_CMSG_DATA(First))
    (Data.ipi_addr if Family == AF_INET else Data.ipi6_addr)[:] = Local
    Second = CMSGHDR(Control, WSA_CMSG_SPACE(Size))
    Second.cmsg_len, Second.cmsg_level, Second.cmsg_type = WSA_CMSG_LEN(0), Level, Empty
    Address = sockaddr_from_tuple(Remote.to_tuple())
    Text = socket.inet_ntop(socket.AF_INET if Family == AF_INET else socket.AF_INET6, Local)
    return Endpoint(Family, Address, Text, Control)


class TunnelEndpoint:
    """Two datagram sockets (IPv4, IPv6) on one port, receiving by event, sending batches."""

    def __init__(self, Handler: Handler) -> None:
        self.Handler = Handler
        self.Registration = WSK_REGISTRATION()
        self.Provider = WSK_PROVIDER_NPI()
        self.Sockets: dict[int, WSK_SOCKET] = {}
        self.Port = 0
        self.Inbox: collections.deque[Received] = collections.deque()
        self.InboxLock = threading.Lock()
        self.Work = KEVENT()
        KeInitializeEvent(self.Work, SynchronizationEvent, FALSE)
        self.Stopping = False
        self.Worker: threading.Thread | None = None
        self.SendsInFlight = 0
        self.SendsDone = KEVENT()
        KeInitializeEvent(self.SendsDone, NotificationEvent, TRUE)
        self.Lock = threading.Lock()
        self.Dispatch = WSK_CLIENT_DATAGRAM_DISPATCH(WskReceiveFromEvent=self.Receive)

    # --- synchronous helpers: an IRP, a KEVENT, a bounded wait ---------------------------
    @staticmethod
    def Wait(Function: Callable[..., int], *Arguments: Any) -> tuple[int, Any]:
        """Call ``Function(*Arguments, Irp)`` and wait (bounded) for its IRP."""
        Done = KEVENT()
        KeInitializeEvent(Done, SynchronizationEvent, FALSE)
        Irp = IoAllocateIrp(1, FALSE)
        if Irp is NULL:
            return STATUS_INSUFFICIENT_RESOURCES, None

        def Completed(_Device: Any, _Irp: PIRP, Event: PKEVENT) -> int:
            KeSetEvent(Event, IO_NO_INCREMENT, FALSE)
            return STATUS_MORE_PROCESSING_REQUIRED

        IoSetCompletionRoutine(Irp, Completed, Done, TRUE, TRUE, TRUE)
        Function(*Arguments, Irp)
        if KeWaitForSingleObject(Done, Executive, KernelMode, FALSE, WAIT_100NS) != 0:
            IoCancelIrp(Irp)
            KeWaitForSingleObject(Done, Executive, KernelMode, FALSE, NULL)
        Status, Information = Irp.IoStatus.Status, Irp.IoStatus.Information
        IoFreeIrp(Irp)
        return Status, Information

    # --- start and stop -------------------------------------------------------------------------
    def Start(self, Port: int = 0) -> int:
        Status = WskRegister(
            WSK_CLIENT_NPI(self, WSK_CLIENT_DISPATCH(MAKE_WSK_VERSION(1, 0))), self.Registration
        )
        if not NT_SUCCESS(Status):
            return Status
        Status = WskCaptureProviderNPI(self.Registration, WSK_INFINITE_WAIT, self.Provider)
        if not NT_SUCCESS(Status):
            WskDeregister(self.Registration)
            return Status
        self.Port = Port
        for Family in (AF_INET, AF_INET6):
            Status = self.OpenSocket(Family)
            if not NT_SUCCESS(Status):
                self.Stop()
                return Status
        self.Worker = threading.Thread(target=self.Process, name="tunnel-worker")
        self.Worker.start()
        return STATUS_SUCCESS

    def OpenSocket(self, Family: int) -> int:
        Dispatch = self.Provider.Dispatch
        assert Dispatch is not None
        Status, Sock = self.Wait(
            Dispatch.WskSocket, self.Provider.Client, Family, SOCK_DGRAM, IPPROTO_UDP,
            WSK_FLAG_DATAGRAM_SOCKET, Family, self.Dispatch, NULL, NULL, NULL,
        )  # fmt: skip
        if not NT_SUCCESS(Status):
            return Status
        Datagram: PWSK_PROVIDER_DATAGRAM_DISPATCH = Sock.Dispatch
        self.Sockets[Family] = Sock
        Options = [(IPPROTO_IP, IP_PKTINFO)]
        if Family == AF_INET6:
            Options = [(IPPROTO_IPV6, IPV6_V6ONLY), (IPPROTO_IPV6, IPV6_PKTINFO)]
        for Level, Option in Options:
            Status, _ = self.Wait(
                Datagram.WskControlSocket, Sock, WskSetOption, Option, Level, 4, TRUE, 0, NULL,
                NULL,
            )  # fmt: skip
            if not NT_SUCCESS(Status):
                return Status
        Local: SOCKADDR_IN | SOCKADDR_IN6
        if Family == AF_INET:
            Local = SOCKADDR_IN()
            IN4ADDR_SETANY(Local)
            Local.sin_port = RtlUshortByteSwap(self.Port)
        else:
            Local = SOCKADDR_IN6()
            IN6ADDR_SETANY(Local)
            Local.sin6_port = RtlUshortByteSwap(self.Port)
        Status, _ = self.Wait(Datagram.WskBind, Sock, Local, 0)
        if not NT_SUCCESS(Status):
            return Status
        Status, _ = self.Wait(Datagram.WskGetLocalAddress, Sock, Local)
        if not NT_SUCCESS(Status):
            return Status
        self.Port = Local.port  # the IPv6 socket takes the port the IPv4 one got
        Enable = WSK_EVENT_CALLBACK_CONTROL(NPI_WSK_INTERFACE_ID, WSK_EVENT_RECEIVE_FROM)
        Status, _ = self.Wait(
            Datagram.WskControlSocket, Sock, WskSetOption, SO_WSK_EVENT_CALLBACK, SOL_SOCKET, 0,
            Enable, 0, NULL, NULL,
        )  # fmt: skip
        return Status

    def Stop(self) -> None:
        Disable = WSK_EVENT_CALLBACK_CONTROL(
            NPI_WSK_INTERFACE_ID, WSK_EVENT_RECEIVE_FROM | WSK_EVENT_DISABLE
        )
        for Sock in self.Sockets.values():
            self.Wait(
                Sock.Dispatch.WskControlSocket, Sock, WskSetOption, SO_WSK_EVENT_CALLBACK,
                SOL_SOCKET, 0, Disable, 0, NULL, NULL,
            )  # fmt: skip
        self.Stopping = True
        KeSetEvent(self.Work, IO_NO_INCREMENT, FALSE)
        if self.Worker is not None:
            self.Worker.join(10)
        KeWaitForSingleObject(self.SendsDone, Executive, KernelMode, FALSE, WAIT_100NS)
        for Family, Sock in list(self.Sockets.items()):
            self.Wait(Sock.Dispatch.WskCloseSocket, Sock)
            del self.Sockets[Family]
        WskReleaseProviderNPI(self.Registration)
        WskDeregister(self.Registration)

    # --- receiving: retain in the callback, process and release in the worker --------------
    def Receive(
        self, SocketContext: Any, Flags: int, Indication: WSK_DATAGRAM_INDICATION | None
    ) -> int:
        Sock = self.Sockets.get(SocketContext)
        if Indication is None or Sock is None:
            return STATUS_SUCCESS
        while Indication is not None:
            Next, Indication.Next = Indication.Next, None  # each datagram released on its own
            Item = self.Parse(Sock, SocketContext, Indication)
            if Item is None:
                Sock.Dispatch.WskRelease(Sock, Indication)
            else:
                with self.InboxLock:
                    self.Inbox.append(Item)
            Indication = Next
        KeSetEvent(self.Work, IO_NO_INCREMENT, FALSE)
        return STATUS_PENDING

    @staticmethod
    def Parse(
        Sock: WSK_SOCKET, Family: int, Indication: WSK_DATAGRAM_INDICATION
    ) -> Received | None:
        Level, Type = (
            (IPPROTO_IP, IP_PKTINFO) if Family == AF_INET else (IPPROTO_IPV6, IPV6_PKTINFO)
        )
        Info = FindControl(Indication, Level, Type)
        if Info is None or Indication.RemoteAddress is None or Indication.Buffer.Mdl is None:
            return None
        Local = bytes(Info[:4]) if Family == AF_INET else bytes(Info[:16])
        View = MmGetSystemAddressForMdlSafe(Indication.Buffer.Mdl, NormalPagePriority)
        if View is None:
            return None
        Payload = bytes(
            View[Indication.Buffer.Offset : Indication.Buffer.Offset + Indication.Buffer.Length]
        )
        return Received(
            Sock, Indication, EndpointFor(Family, Indication.RemoteAddress, Local), Payload
        )

    def Process(self) -> None:
        while True:
            KeWaitForSingleObject(self.Work, Executive, KernelMode, FALSE, NULL)
            while True:
                with self.InboxLock:
                    Item = self.Inbox.popleft() if self.Inbox else None
                if Item is None:
                    break
                try:
                    self.Handler(self, Item.Endpoint, Item.Payload)
                finally:
                    Item.Socket.Dispatch.WskRelease(Item.Socket, Item.Indication)
            if self.Stopping:
                return

    # --- sending batches ------------------------------------------------------------------------
    def SendBatch(self, To: Endpoint, Payloads: list[bytes]) -> int:
        """Send ``Payloads`` to ``To`` in one WskSendMessages, from ``To.Local``; the IRP's
        completion routine frees the buffers."""
        Sock = self.Sockets.get(To.Family)
        if Sock is None or not Payloads:
            return STATUS_INVALID_PARAMETER
        Pieces: list[tuple[Any, PMDL]] = []
        Head: Any = None  # PWSK_BUF_LIST, built back to front
        for Payload in reversed(Payloads):
            Pool = ExAllocatePoolWithTag(NonPagedPoolNx, max(len(Payload), 1), POOL_TAG)
            Mdl = (
                IoAllocateMdl(Pool, max(len(Payload), 1), FALSE, FALSE, NULL)
                if Pool is not None
                else None
            )
            if Pool is None or Mdl is None:
                if Pool is not None:
                    ExFreePoolWithTag(Pool, POOL_TAG)
                self.FreePieces(Pieces)
                return STATUS_INSUFFICIENT_RESOURCES
            Pool[: len(Payload)] = Payload
            MmBuildMdlForNonPagedPool(Mdl)
            Pieces.append((Pool, Mdl))
            Head = WSK_BUF_LIST(Head, WSK_BUF(Mdl, 0, len(Payload)))
        Irp = IoAllocateIrp(1, FALSE)
        if Irp is NULL:
            self.FreePieces(Pieces)
            return STATUS_INSUFFICIENT_RESOURCES

        def Sent(_Device: Any, Done: PIRP, _Context: Any) -> int:
            self.FreePieces(Pieces)
            IoFreeIrp(Done)
            with self.Lock:
                self.SendsInFlight -= 1
                if not self.SendsInFlight:
                    KeSetEvent(self.SendsDone, IO_NO_INCREMENT, FALSE)
            return STATUS_MORE_PROCESSING_REQUIRED

        IoSetCompletionRoutine(Irp, Sent, NULL, TRUE, TRUE, TRUE)
        with self.Lock:
            self.SendsInFlight += 1
            KeResetEvent(self.SendsDone)
        Datagram: PWSK_PROVIDER_DATAGRAM_DISPATCH = Sock.Dispatch
        return Datagram.WskSendMessages(Sock, Head, 0, To.Address, len(To.Control), To.Control, Irp)

    @staticmethod
    def FreePieces(Pieces: list[tuple[Any, PMDL]]) -> None:
        for Pool, Mdl in Pieces:
            IoFreeMdl(Mdl)
            ExFreePoolWithTag(Pool, POOL_TAG)
        Pieces.clear()


def Echo(Tunnel: TunnelEndpoint, From: Endpoint, Payload: bytes) -> None:
    """Answer each datagram with itself, in a batch of one, from the address it was sent to."""
    Tunnel.SendBatch(From, [Payload])


def main() -> int:
    Tunnel = TunnelEndpoint(Echo)
    Status = Tunnel.Start()
    if not NT_SUCCESS(Status):
        print(f"udp_tunnel: start failed: {status_name(Status)}")
        return 1
    Failures = 0
    try:
        for Family, Host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            with socket.socket(Family, socket.SOCK_DGRAM) as Peer:
                Peer.settimeout(10)
                Peer.sendto(b"ping over " + Host.encode(), (Host, Tunnel.Port))
                Data, Source = Peer.recvfrom(2048)
                print(f"udp_tunnel: {Host} port {Tunnel.Port} echoed {Data!r} from {Source[0]}")
                Failures += Data != b"ping over " + Host.encode() or Source[0] != Host
    finally:
        Tunnel.Stop()
    return 1 if Failures else 0


if __name__ == "__main__":
    sys.exit(main())
