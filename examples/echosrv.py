"""Microsoft's WSK echo server sample (``echosrv``), its sequence ported to pywsk.

The shape of Microsoft's ``wsksmple.c``, step by step:

1. Register, capture the provider NPI, and enable ``WSK_EVENT_ACCEPT`` for every listening
   socket with ``WSK_SET_STATIC_EVENT_CALLBACKS`` (so accept events start right after bind).
2. Create one IPv6 listening socket, clear ``IPV6_V6ONLY`` (dual stack: IPv4 clients too),
   and bind it: from then on ``WskAcceptEvent`` runs for each connection.
3. For each accepted socket: receive; echo what arrived (send), then receive again; a
   receive that completes with 0 bytes means the peer disconnected gracefully, so
   disconnect gracefully too (``WskDisconnect(NULL, 0)``); when that completes, whatever
   its status, close the socket; free the socket's context only when the close completed.
4. Completion routines and the accept callback do no WSK calls themselves: they queue the
   next operation to a worker thread, as the sample does with its work queue.

Run it:  python examples/echosrv.py --port 40007    (Ctrl-C stops it; it closes cleanly)
Talk to it:  nc 127.0.0.1 40007   or   nc ::1 40007
"""

from __future__ import annotations

import argparse
import queue
import signal
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, cast

from pywsk.nt import *
from pywsk.wsk import *

BUFFER_SIZE = 4096


@dataclass
class SocketContext:
    """The sample's per-socket context (WSKSAMPLE_SOCKET_CONTEXT): its socket and buffer."""

    Socket: PWSK_SOCKET
    Buffer: Any = None
    Mdl: Any = None
    Irp: PIRP | None = None
    Closing: bool = False
    Sent: int = 0
    Received: int = 0


@dataclass
class Server:
    Registration: WSK_REGISTRATION = field(default_factory=WSK_REGISTRATION)
    ProviderNpi: WSK_PROVIDER_NPI = field(default_factory=WSK_PROVIDER_NPI)
    ListeningSocket: PWSK_SOCKET | None = None
    Work: queue.Queue[Any] = field(default_factory=queue.Queue)
    Contexts: set[int] = field(default_factory=set)
    AllClosed: threading.Condition = field(default_factory=threading.Condition)
    Stopping: bool = False
    Port: int = 0


SERVER = Server()


# --- completion routines: note the result, queue the next step ------------------------------


def OperationComplete(DeviceObject: PDEVICE_OBJECT, Irp: PIRP, Context: Any) -> int:
    operation, SocketCtx = Context
    SERVER.Work.put((operation, SocketCtx, Irp.IoStatus.Status, Irp.IoStatus.Information))
    return STATUS_MORE_PROCESSING_REQUIRED


def Start(operation: str, SocketCtx: SocketContext) -> PIRP:
    """Reuse the context's IRP for the next operation (IoReuseIrp + a new routine)."""
    assert SocketCtx.Irp is not None
    IoReuseIrp(SocketCtx.Irp, STATUS_UNSUCCESSFUL)
    IoSetCompletionRoutine(
        SocketCtx.Irp, OperationComplete, (operation, SocketCtx), True, True, True
    )
    return SocketCtx.Irp


def Dispatch(SocketCtx: SocketContext) -> PWSK_PROVIDER_CONNECTION_DISPATCH:
    assert SocketCtx.Socket is not None
    return cast(PWSK_PROVIDER_CONNECTION_DISPATCH, SocketCtx.Socket.Dispatch)


def Receive(SocketCtx: SocketContext) -> None:
    Buf = WSK_BUF(SocketCtx.Mdl, 0, BUFFER_SIZE)
    Dispatch(SocketCtx).WskReceive(SocketCtx.Socket, Buf, 0, Start("receive", SocketCtx))


def Send(SocketCtx: SocketContext, Length: int) -> None:
    Buf = WSK_BUF(SocketCtx.Mdl, 0, Length)
    Dispatch(SocketCtx).WskSend(SocketCtx.Socket, Buf, 0, Start("send", SocketCtx))


def Disconnect(SocketCtx: SocketContext) -> None:
    Dispatch(SocketCtx).WskDisconnect(SocketCtx.Socket, None, 0, Start("disconnect", SocketCtx))


def Close(SocketCtx: SocketContext) -> None:
    SocketCtx.Closing = True
    Dispatch(SocketCtx).WskCloseSocket(SocketCtx.Socket, Start("close", SocketCtx))


def FreeContext(SocketCtx: SocketContext) -> None:
    """Only after the close completed: no request and no callback can still refer to it."""
    assert SocketCtx.Irp is not None
    IoFreeIrp(SocketCtx.Irp)
    IoFreeMdl(SocketCtx.Mdl)
    ExFreePoolWithTag(SocketCtx.Buffer, b"echo")
    with SERVER.AllClosed:
        SERVER.Contexts.discard(id(SocketCtx))
        SERVER.AllClosed.notify_all()


def Worker() -> None:
    """The sample's worker thread: runs the next operation of each socket."""
    while True:
        item = SERVER.Work.get()
        if item is None:
            return
        operation, SocketCtx, Status, Information = item
        if operation == "receive":
            if Status == STATUS_SUCCESS and Information > 0 and not SERVER.Stopping:
                SocketCtx.Received += Information
                Send(SocketCtx, Information)  # echo what arrived
            elif Status == STATUS_SUCCESS and Information == 0:
                Disconnect(SocketCtx)  # the peer disconnected gracefully: so do we
            else:
                Close(SocketCtx)  # an error (or shutting down): close, which resets
        elif operation == "send":
            if Status == STATUS_SUCCESS and not SERVER.Stopping:
                SocketCtx.Sent += Information
                Receive(SocketCtx)
            else:
                Close(SocketCtx)
        elif operation == "disconnect":
            Close(SocketCtx)  # whatever the disconnect's status, as the sample does
        elif operation == "close":
            FreeContext(SocketCtx)
        elif operation == "accepted":
            Receive(SocketCtx)


# --- the accept event --------------------------------------------------------------------------


def WskAcceptEvent(
    SocketContext_: Any,
    Flags: int,
    LocalAddress: PSOCKADDR,
    RemoteAddress: PSOCKADDR,
    AcceptSocket: PWSK_SOCKET | None,
    AcceptSocketContext: PPVOID[Any],
    AcceptSocketDispatch: PPVOID[Any],
) -> int:
    if AcceptSocket is None:
        # The listening socket no longer works (at most once): let main() close it.
        SERVER.Work.put(None)
        return STATUS_REQUEST_NOT_ACCEPTED
    if SERVER.Stopping:
        return STATUS_REQUEST_NOT_ACCEPTED
    Buffer = ExAllocatePoolWithTag(NonPagedPoolNx, BUFFER_SIZE, b"echo")
    Irp = IoAllocateIrp(1, False)
    Mdl = IoAllocateMdl(Buffer, BUFFER_SIZE, False, False, None) if Buffer is not None else None
    if Buffer is None or Irp is None or Mdl is None:
        return STATUS_REQUEST_NOT_ACCEPTED  # the provider closes the socket
    MmBuildMdlForNonPagedPool(Mdl)
    SocketCtx = SocketContext(AcceptSocket, Buffer, Mdl, Irp)
    with SERVER.AllClosed:
        SERVER.Contexts.add(id(SocketCtx))
    AcceptSocketContext.value = SocketCtx
    AcceptSocketDispatch.value = None  # no event callbacks on accepted sockets
    SERVER.Work.put(("accepted", SocketCtx, STATUS_SUCCESS, 0))
    return STATUS_SUCCESS


ListenDispatch = WSK_CLIENT_LISTEN_DISPATCH(WskAcceptEvent, None, None)


def SyncCall(start: Any, *args: Any) -> tuple[int, Any]:
    """One WSK call on its own IRP, waited for (the sample does this at start-up only)."""
    Event = KEVENT()
    KeInitializeEvent(Event, SynchronizationEvent, False)

    def Done(DeviceObject: PDEVICE_OBJECT, Irp: PIRP, Context: Any) -> int:
        KeSetEvent(Context, IO_NO_INCREMENT, False)
        return STATUS_MORE_PROCESSING_REQUIRED

    Irp = IoAllocateIrp(1, False)
    assert Irp is not None
    IoSetCompletionRoutine(Irp, Done, Event, True, True, True)
    if start(*args, Irp) == STATUS_PENDING:
        KeWaitForSingleObject(Event, Executive, KernelMode, False, None)
    Result = (Irp.IoStatus.Status, Irp.IoStatus.Information)
    IoFreeIrp(Irp)
    return Result


def StartServer(host: str, port: int) -> int:
    ClientDispatch = WSK_CLIENT_DISPATCH(MAKE_WSK_VERSION(1, 0), 0, None)
    Status = WskRegister(WSK_CLIENT_NPI(None, ClientDispatch), SERVER.Registration)
    if not NT_SUCCESS(Status):
        return Status
    Status = WskCaptureProviderNPI(SERVER.Registration, WSK_INFINITE_WAIT, SERVER.ProviderNpi)
    if not NT_SUCCESS(Status):
        WskDeregister(SERVER.Registration)
        return Status
    Provider = SERVER.ProviderNpi.Dispatch
    assert Provider is not None
    Control = WSK_EVENT_CALLBACK_CONTROL(NPI_WSK_INTERFACE_ID, WSK_EVENT_ACCEPT)
    Status = Provider.WskControlClient(
        SERVER.ProviderNpi.Client, WSK_SET_STATIC_EVENT_CALLBACKS, 0, Control, 0, None, None, None
    )
    if not NT_SUCCESS(Status):
        return Status
    Local = sockaddr_from_tuple((host, port))
    Family = Local.sa_family
    Status, Socket = SyncCall(
        Provider.WskSocket,
        SERVER.ProviderNpi.Client,
        Family,
        SOCK_STREAM,
        IPPROTO_TCP,
        WSK_FLAG_LISTEN_SOCKET,
        None,
        ListenDispatch,
        None,
        None,
        None,
    )
    if not NT_SUCCESS(Status):
        return Status
    SERVER.ListeningSocket = Socket
    Listen = cast(PWSK_PROVIDER_LISTEN_DISPATCH, Socket.Dispatch)
    if Family == AF_INET6:
        # Dual stack, as the sample does: clear IPV6_V6ONLY before bind.
        Status, _ = SyncCall(
            Listen.WskControlSocket,
            Socket,
            WskSetOption,
            IPV6_V6ONLY,
            IPPROTO_IPV6,
            4,
            0,
            0,
            None,
            None,
        )
        if not NT_SUCCESS(Status):
            return Status
    Status, _ = SyncCall(Listen.WskBind, Socket, Local, 0)
    if NT_SUCCESS(Status):
        Bound = SOCKADDR_STORAGE()
        Status, _ = SyncCall(Listen.WskGetLocalAddress, Socket, Bound)
        SERVER.Port = Bound.to_tuple()[1]
    return Status


def StopServer() -> None:
    """Close the listener, let every connection finish its close, then deregister."""
    SERVER.Stopping = True
    if SERVER.ListeningSocket is not None:
        Listen = cast(PWSK_PROVIDER_LISTEN_DISPATCH, SERVER.ListeningSocket.Dispatch)
        SyncCall(Listen.WskCloseSocket, SERVER.ListeningSocket)
    with SERVER.AllClosed:
        SERVER.AllClosed.wait_for(lambda: not SERVER.Contexts, timeout=10)
    WskReleaseProviderNPI(SERVER.Registration)
    WskDeregister(SERVER.Registration)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Microsoft's WSK echo server sample, on pywsk.")
    parser.add_argument(
        "--host", default="::", help="address to listen on (default: :: dual stack)"
    )
    parser.add_argument("--port", type=int, default=40007, help="port (default 40007; 0: any)")
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    worker = threading.Thread(target=Worker, name="echosrv-worker", daemon=True)
    worker.start()
    Status = StartServer(args.host, args.port)
    if not NT_SUCCESS(Status):
        print(f"echosrv: could not start: {status_name(Status)}", file=sys.stderr)
        return 1
    print(f"echosrv: listening on [{args.host}]:{SERVER.Port}", flush=True)
    stop.wait()
    StopServer()
    SERVER.Work.put(None)
    worker.join(10)
    print("echosrv: stopped", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
