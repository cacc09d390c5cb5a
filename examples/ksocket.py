"""KSOCKET's ``ksocket.c`` (github.com/wbenny/KSOCKET, MIT licence, (c) 2019 Petr Benes),
ported to pywsk function by function; ``docs/porting.md`` walks through the port.

KSOCKET wraps WSK in blocking calls: each socket owns one IRP and one KEVENT (its "async
context"); every call reuses the IRP (``IoReuseIrp``), starts the WSK function and, if it
returned STATUS_PENDING, waits on the event that the completion routine sets.

What is ported: every TCP function of ``ksocket.c`` (the datagram ones are left out: pywsk
implements stream sockets only), with their names, parameters and order of statements.
What differs, each for a reason given in ``docs/porting.md``: out-parameters are boxes
(``PPVOID``, ``PULONG``); the ``KSOCKET`` structure is a dataclass, not pool memory; the
union of dispatch pointers is four properties; ``__try``/``__except`` is
``try``/``except StatusException``.  One function is added, ``KsGetLocalAddress``, so the
demo below can listen on a port the system picks.

``main`` replaces KSOCKET's ``DriverEntry`` demo (an HTTP request to httpbin.org and a
server on port 9095) with the same two parts on loopback only: a client that sends a
request to a local peer and prints the answer, and a server that waits for one message
and answers "Hello from WSK!".

Run it:  python examples/ksocket.py
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, cast

from pywsk.nt import *
from pywsk.wsk import *

MEMORY_TAG = b"Ks  "  # C: '  sK', a multi-character constant stored little-endian


@dataclass
class KSOCKET_ASYNC_CONTEXT:
    CompletionEvent: KEVENT = field(default_factory=KEVENT)
    Irp: Any = NULL  # PIRP; NULL until KspAsyncContextAllocate


PKSOCKET_ASYNC_CONTEXT = KSOCKET_ASYNC_CONTEXT


@dataclass
class KSOCKET:
    WskSocket: Any = NULL  # PWSK_SOCKET; NULL until the socket is created
    # C: a union of four dispatch pointers; one field and a typed view per union member.
    WskDispatch: Any = None
    AsyncContext: KSOCKET_ASYNC_CONTEXT = field(default_factory=KSOCKET_ASYNC_CONTEXT)

    @property
    def WskConnectionDispatch(self) -> PWSK_PROVIDER_CONNECTION_DISPATCH:
        return cast(PWSK_PROVIDER_CONNECTION_DISPATCH, self.WskDispatch)

    @property
    def WskListenDispatch(self) -> PWSK_PROVIDER_LISTEN_DISPATCH:
        return cast(PWSK_PROVIDER_LISTEN_DISPATCH, self.WskDispatch)


PKSOCKET = KSOCKET

WskRegistration = WSK_REGISTRATION()
WskProvider = WSK_PROVIDER_NPI()
WskDispatch = WSK_CLIENT_DISPATCH(MAKE_WSK_VERSION(1, 0), 0, NULL)


# --- Private functions -------------------------------------------------------------------------


def KspAsyncContextAllocate(AsyncContext: PKSOCKET_ASYNC_CONTEXT) -> int:
    KeInitializeEvent(AsyncContext.CompletionEvent, SynchronizationEvent, FALSE)
    AsyncContext.Irp = IoAllocateIrp(1, FALSE)
    if AsyncContext.Irp is NULL:
        return STATUS_INSUFFICIENT_RESOURCES
    IoSetCompletionRoutine(
        AsyncContext.Irp,
        KspAsyncContextCompletionRoutine,
        AsyncContext.CompletionEvent,
        TRUE,
        TRUE,
        TRUE,
    )
    return STATUS_SUCCESS


def KspAsyncContextFree(AsyncContext: PKSOCKET_ASYNC_CONTEXT) -> None:
    IoFreeIrp(AsyncContext.Irp)


def KspAsyncContextReset(AsyncContext: PKSOCKET_ASYNC_CONTEXT) -> None:
    # An IRP the client allocated gets a completion routine before each WSK call, with
    # TRUE for all three Invoke flags ("Using IRPs with Winsock Kernel Functions").
    KeResetEvent(AsyncContext.CompletionEvent)
    IoReuseIrp(AsyncContext.Irp, STATUS_UNSUCCESSFUL)
    IoSetCompletionRoutine(
        AsyncContext.Irp,
        KspAsyncContextCompletionRoutine,
        AsyncContext.CompletionEvent,
        TRUE,
        TRUE,
        TRUE,
    )


def KspAsyncContextCompletionRoutine(
    DeviceObject: PDEVICE_OBJECT, Irp: PIRP, CompletionEvent: PKEVENT
) -> int:
    UNREFERENCED_PARAMETER(DeviceObject)
    UNREFERENCED_PARAMETER(Irp)
    KeSetEvent(CompletionEvent, IO_NO_INCREMENT, FALSE)
    return STATUS_MORE_PROCESSING_REQUIRED


def KspAsyncContextWaitForCompletion(AsyncContext: PKSOCKET_ASYNC_CONTEXT, Status: int) -> int:
    # C: _Inout_ PNTSTATUS Status, updated and returned; Python returns the new value.
    if Status == STATUS_PENDING:
        KeWaitForSingleObject(AsyncContext.CompletionEvent, Executive, KernelMode, FALSE, NULL)
        Status = AsyncContext.Irp.IoStatus.Status
    return Status


# --- Public functions --------------------------------------------------------------------------


def KsInitialize() -> int:
    WskClient = WSK_CLIENT_NPI(NULL, WskDispatch)
    Status = WskRegister(WskClient, WskRegistration)
    if not NT_SUCCESS(Status):
        return Status
    return WskCaptureProviderNPI(WskRegistration, WSK_INFINITE_WAIT, WskProvider)


def KsDestroy() -> None:
    WskReleaseProviderNPI(WskRegistration)
    WskDeregister(WskRegistration)


def KsGetAddrInfo(
    NodeName: UNICODE_STRING,
    ServiceName: UNICODE_STRING,
    Hints: PADDRINFOEXW,
    Result: PPVOID[PADDRINFOEXW],
) -> int:
    AsyncContext = KSOCKET_ASYNC_CONTEXT()
    Status = KspAsyncContextAllocate(AsyncContext)
    if not NT_SUCCESS(Status):
        return Status
    assert WskProvider.Dispatch is not None
    assert WskProvider.Dispatch.WskGetAddressInfo is not None
    Status = WskProvider.Dispatch.WskGetAddressInfo(
        WskProvider.Client,  # Client
        NodeName,  # NodeName
        ServiceName,  # ServiceName
        0,  # NameSpace
        NULL,  # Provider
        Hints,  # Hints
        Result,  # Result
        NULL,  # OwningProcess
        NULL,  # OwningThread
        AsyncContext.Irp,  # Irp
    )
    Status = KspAsyncContextWaitForCompletion(AsyncContext, Status)
    KspAsyncContextFree(AsyncContext)
    return Status


def KsFreeAddrInfo(AddrInfo: PADDRINFOEXW) -> None:
    assert WskProvider.Dispatch is not None
    assert WskProvider.Dispatch.WskFreeAddressInfo is not None
    WskProvider.Dispatch.WskFreeAddressInfo(WskProvider.Client, AddrInfo)


def KsCreateSocket(
    Socket: PPVOID[PKSOCKET], AddressFamily: int, SocketType: int, Protocol: int, Flags: int
) -> int:
    NewSocket = KSOCKET()  # C: ExAllocatePoolWithTag(PagedPool, sizeof(KSOCKET), MEMORY_TAG)
    Status = KspAsyncContextAllocate(NewSocket.AsyncContext)
    if not NT_SUCCESS(Status):
        return Status
    assert WskProvider.Dispatch is not None
    Status = WskProvider.Dispatch.WskSocket(
        WskProvider.Client,  # Client
        AddressFamily,  # AddressFamily
        SocketType,  # SocketType
        Protocol,  # Protocol
        Flags,  # Flags
        NULL,  # SocketContext
        NULL,  # Dispatch
        NULL,  # OwningProcess
        NULL,  # OwningThread
        NULL,  # SecurityDescriptor
        NewSocket.AsyncContext.Irp,  # Irp
    )
    Status = KspAsyncContextWaitForCompletion(NewSocket.AsyncContext, Status)
    if NT_SUCCESS(Status):
        NewSocket.WskSocket = cast(PWSK_SOCKET, NewSocket.AsyncContext.Irp.IoStatus.Information)
        NewSocket.WskDispatch = NewSocket.WskSocket.Dispatch
        Socket.value = NewSocket
    return Status


def KsCreateConnectionSocket(
    Socket: PPVOID[PKSOCKET], AddressFamily: int, SocketType: int, Protocol: int
) -> int:
    return KsCreateSocket(Socket, AddressFamily, SocketType, Protocol, WSK_FLAG_CONNECTION_SOCKET)


def KsCreateListenSocket(
    Socket: PPVOID[PKSOCKET], AddressFamily: int, SocketType: int, Protocol: int
) -> int:
    return KsCreateSocket(Socket, AddressFamily, SocketType, Protocol, WSK_FLAG_LISTEN_SOCKET)


def KsCloseSocket(Socket: PKSOCKET) -> int:
    KspAsyncContextReset(Socket.AsyncContext)
    Status = Socket.WskConnectionDispatch.WskCloseSocket(Socket.WskSocket, Socket.AsyncContext.Irp)
    Status = KspAsyncContextWaitForCompletion(Socket.AsyncContext, Status)
    KspAsyncContextFree(Socket.AsyncContext)
    # C: ExFreePoolWithTag(Socket, MEMORY_TAG); the Python object is simply dropped.
    return Status


def KsBind(Socket: PKSOCKET, LocalAddress: PSOCKADDR) -> int:
    KspAsyncContextReset(Socket.AsyncContext)
    Status = Socket.WskListenDispatch.WskBind(
        Socket.WskSocket,  # Socket
        LocalAddress,  # LocalAddress
        0,  # Flags (reserved)
        Socket.AsyncContext.Irp,  # Irp
    )
    return KspAsyncContextWaitForCompletion(Socket.AsyncContext, Status)


def KsGetLocalAddress(Socket: PKSOCKET, LocalAddress: PSOCKADDR) -> int:
    """Not in KSOCKET: the address a socket is bound to (so the demo may bind port 0)."""
    KspAsyncContextReset(Socket.AsyncContext)
    Status = Socket.WskListenDispatch.WskGetLocalAddress(
        Socket.WskSocket, LocalAddress, Socket.AsyncContext.Irp
    )
    return KspAsyncContextWaitForCompletion(Socket.AsyncContext, Status)


def KsAccept(
    Socket: PKSOCKET,
    NewSocket: PPVOID[PKSOCKET],
    LocalAddress: PSOCKADDR | None,
    RemoteAddress: PSOCKADDR | None,
) -> int:
    KspAsyncContextReset(Socket.AsyncContext)
    Status = Socket.WskListenDispatch.WskAccept(
        Socket.WskSocket,  # ListenSocket
        0,  # Flags
        NULL,  # AcceptSocketContext
        NULL,  # AcceptSocketDispatch
        LocalAddress,  # LocalAddress
        RemoteAddress,  # RemoteAddress
        Socket.AsyncContext.Irp,  # Irp
    )
    Status = KspAsyncContextWaitForCompletion(Socket.AsyncContext, Status)
    if NT_SUCCESS(Status):
        KNewSocket = KSOCKET()
        KNewSocket.WskSocket = cast(PWSK_SOCKET, Socket.AsyncContext.Irp.IoStatus.Information)
        KNewSocket.WskDispatch = KNewSocket.WskSocket.Dispatch
        KspAsyncContextAllocate(KNewSocket.AsyncContext)
        NewSocket.value = KNewSocket
    return Status


def KsConnect(Socket: PKSOCKET, RemoteAddress: PSOCKADDR) -> int:
    KspAsyncContextReset(Socket.AsyncContext)
    # KSOCKET binds to INADDR_ANY; on loopback the same call binds to INADDR_LOOPBACK.
    LocalAddress = SOCKADDR_IN()
    LocalAddress.sin_family = AF_INET
    LocalAddress.sin_addr.s_addr = RtlUlongByteSwap(INADDR_LOOPBACK)
    LocalAddress.sin_port = 0
    Status = Socket.WskConnectionDispatch.WskBind(
        Socket.WskSocket,  # Socket
        LocalAddress,  # LocalAddress  (C: (PSOCKADDR)&LocalAddress)
        0,  # Flags (reserved)
        Socket.AsyncContext.Irp,  # Irp
    )
    Status = KspAsyncContextWaitForCompletion(Socket.AsyncContext, Status)
    if not NT_SUCCESS(Status):
        return Status
    KspAsyncContextReset(Socket.AsyncContext)
    Status = Socket.WskConnectionDispatch.WskConnect(
        Socket.WskSocket,  # Socket
        RemoteAddress,  # RemoteAddress
        0,  # Flags (reserved)
        Socket.AsyncContext.Irp,  # Irp
    )
    return KspAsyncContextWaitForCompletion(Socket.AsyncContext, Status)


def KsSendRecv(Socket: PKSOCKET, Buffer: Any, Length: PULONG, Flags: int, Send: bool) -> int:
    WskBuffer = WSK_BUF()
    WskBuffer.Offset = 0
    WskBuffer.Length = Length.value
    WskBuffer.Mdl = IoAllocateMdl(Buffer, WskBuffer.Length, FALSE, FALSE, NULL)
    assert WskBuffer.Mdl is not None
    try:  # C: __try
        MmProbeAndLockPages(WskBuffer.Mdl, KernelMode, IoWriteAccess)
    except StatusException:  # C: __except (EXCEPTION_EXECUTE_HANDLER)
        IoFreeMdl(WskBuffer.Mdl)  # C: goto Error
        return STATUS_ACCESS_VIOLATION
    KspAsyncContextReset(Socket.AsyncContext)
    if Send:
        Status = Socket.WskConnectionDispatch.WskSend(
            Socket.WskSocket,  # Socket
            WskBuffer,  # Buffer  (C: &WskBuffer)
            Flags,  # Flags
            Socket.AsyncContext.Irp,  # Irp
        )
    else:
        Status = Socket.WskConnectionDispatch.WskReceive(
            Socket.WskSocket,  # Socket
            WskBuffer,  # Buffer
            Flags,  # Flags
            Socket.AsyncContext.Irp,  # Irp
        )
    Status = KspAsyncContextWaitForCompletion(Socket.AsyncContext, Status)
    if NT_SUCCESS(Status):
        Length.value = Socket.AsyncContext.Irp.IoStatus.Information
    MmUnlockPages(WskBuffer.Mdl)
    IoFreeMdl(WskBuffer.Mdl)
    return Status


def KsSend(Socket: PKSOCKET, Buffer: Any, Length: PULONG, Flags: int) -> int:
    return KsSendRecv(Socket, Buffer, Length, Flags, TRUE)


def KsRecv(Socket: PKSOCKET, Buffer: Any, Length: PULONG, Flags: int) -> int:
    return KsSendRecv(Socket, Buffer, Length, Flags, FALSE)


# --- main: KSOCKET's DriverEntry demo, on loopback ----------------------------------------------


def DebuggerPrint(Format: str, *Args: Any) -> None:
    DbgPrintEx(DPFLTR_IHVDRIVER_ID, DPFLTR_ERROR_LEVEL, Format, *Args)


def Client(PeerPort: int) -> int:
    """KSOCKET's client part: resolve, connect, send a request, print the answer."""
    SendBuffer = bytearray(b"GET /uuid HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    RecvBuffer = bytearray(1024)
    Hints = ADDRINFOEXW(ai_family=AF_INET, ai_socktype=SOCK_STREAM)
    Result: PPVOID[PADDRINFOEXW] = PPVOID()
    Status = KsGetAddrInfo(
        UNICODE_STRING("127.0.0.1"), UNICODE_STRING(str(PeerPort)), Hints, Result
    )
    if not NT_SUCCESS(Status) or Result.value is None:
        return Status
    Socket: PPVOID[PKSOCKET] = PPVOID()
    Status = KsCreateConnectionSocket(Socket, AF_INET, SOCK_STREAM, IPPROTO_TCP)
    if NT_SUCCESS(Status) and Socket.value is not None:
        assert Result.value.ai_addr is not None
        Status = KsConnect(Socket.value, Result.value.ai_addr)
        if NT_SUCCESS(Status):
            Status = KsSend(Socket.value, SendBuffer, PULONG(len(SendBuffer)), 0)
        Length = PULONG(len(RecvBuffer) - 1)
        if NT_SUCCESS(Status):
            Status = KsRecv(Socket.value, RecvBuffer, Length, 0)
        if NT_SUCCESS(Status):
            DebuggerPrint("TCP client:\n%s\n", bytes(RecvBuffer[: Length.value]))
        KsCloseSocket(Socket.value)
    KsFreeAddrInfo(Result.value)
    return Status


def Server(Ready: threading.Event, Port: list[int]) -> int:
    """KSOCKET's server part: wait for one message, answer, close."""
    SendBuffer = bytearray(b"Hello from WSK!\0")
    RecvBuffer = bytearray(1024)
    ServerSocket: PPVOID[PKSOCKET] = PPVOID()
    # KSOCKET's demo passes Protocol 0; pywsk's WskSocket wants IPPROTO_TCP (docs/porting.md).
    Status = KsCreateListenSocket(ServerSocket, AF_INET, SOCK_STREAM, IPPROTO_TCP)
    if not NT_SUCCESS(Status) or ServerSocket.value is None:
        Ready.set()
        return Status
    Address = SOCKADDR_IN()
    IN4ADDR_SETLOOPBACK(Address)
    Address.sin_port = RtlUshortByteSwap(0)  # C: htons(9095); here the system picks a port
    Status = KsBind(ServerSocket.value, Address)
    if NT_SUCCESS(Status):
        Status = KsGetLocalAddress(ServerSocket.value, Address)
    Port.append(Address.port if NT_SUCCESS(Status) else 0)
    Ready.set()
    ClientSocket: PPVOID[PKSOCKET] = PPVOID()
    if NT_SUCCESS(Status):
        Status = KsAccept(ServerSocket.value, ClientSocket, NULL, Address)
    if NT_SUCCESS(Status) and ClientSocket.value is not None:
        Length = PULONG(len(RecvBuffer) - 1)
        Status = KsRecv(ClientSocket.value, RecvBuffer, Length, 0)
        if NT_SUCCESS(Status):
            DebuggerPrint("TCP server:\n%s\n", bytes(RecvBuffer[: Length.value]))
            Status = KsSend(ClientSocket.value, SendBuffer, PULONG(len(SendBuffer)), 0)
        KsCloseSocket(ClientSocket.value)
    KsCloseSocket(ServerSocket.value)
    return Status


def HttpPeer(Listener: socket.socket) -> None:
    """The peer of the client part (httpbin.org in KSOCKET's demo): one canned answer."""
    Connection, _ = Listener.accept()
    with Connection:
        Connection.settimeout(10)
        Connection.recv(1024)
        Connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


def main() -> int:
    logging.basicConfig(stream=sys.stdout, format="%(message)s")
    Status = KsInitialize()
    if not NT_SUCCESS(Status):
        return 1
    try:
        Listener = socket.create_server(("127.0.0.1", 0))
        Listener.settimeout(10)
        Peer = threading.Thread(target=HttpPeer, args=(Listener,))
        Peer.start()
        ClientStatus = Client(Listener.getsockname()[1])
        Peer.join(10)
        Listener.close()

        Ready, Port = threading.Event(), list[int]()
        Result: list[int] = []
        Thread = threading.Thread(target=lambda: Result.append(Server(Ready, Port)))
        Thread.start()
        Ready.wait(10)
        print(f"ksocket: server listening on 127.0.0.1:{Port[0] if Port else 0}", flush=True)
        Thread.join()
    finally:
        KsDestroy()
    print(f"ksocket: client {status_name(ClientStatus)}, server {status_name(Result[0])}")
    return 0 if NT_SUCCESS(ClientStatus) and NT_SUCCESS(Result[0]) else 1


if __name__ == "__main__":
    sys.exit(main())
