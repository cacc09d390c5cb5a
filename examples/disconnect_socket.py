"""Microsoft's "Disconnecting a socket from a destination" sample, line for line, run for real.

``DisconnectSocket`` and ``DisconnectComplete`` are the guide's two C functions translated
one statement at a time; they live in :mod:`pywsk.samples.disconnect_socket` (so that
``pywsk demo`` runs the very same code).  ``main`` below is the driver around them: it registers with
WSK, connects a socket to a loopback peer (a plain Linux socket), sends a greeting, runs the
guide's graceful disconnect, waits for its completion routine, and shows what the peer saw.

Run it:  python examples/disconnect_socket.py
"""

from __future__ import annotations

import socket
import threading
from typing import Any, cast

from pywsk.nt import *
from pywsk.samples.disconnect_socket import (  # the guide's two functions, line for line
    DisconnectDone,
    DisconnectSocket,
    DisconnectStatus,
)
from pywsk.wsk import *

# --- the driver around the sample -------------------------------------------------------------


def _sync_complete(DeviceObject: PDEVICE_OBJECT, Irp: PIRP, Context: Any) -> int:
    KeSetEvent(Context, IO_NO_INCREMENT, False)
    return STATUS_MORE_PROCESSING_REQUIRED


def call_and_wait(start: Any, *args: Any) -> tuple[int, Any]:
    """Issue one WSK call on a fresh IRP and wait for its completion (sync-over-async)."""
    Event = KEVENT()
    KeInitializeEvent(Event, SynchronizationEvent, False)
    Irp = IoAllocateIrp(1, False)
    assert Irp is not None
    IoSetCompletionRoutine(Irp, _sync_complete, Event, True, True, True)
    Status = start(*args, Irp)
    if Status == STATUS_PENDING:
        KeWaitForSingleObject(Event, Executive, KernelMode, False, None)
    Status, Information = Irp.IoStatus.Status, Irp.IoStatus.Information
    IoFreeIrp(Irp)
    return Status, Information


def main() -> int:
    # The peer: a plain Linux listening socket that reads until our FIN.
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    seen: dict[str, Any] = {}

    def peer() -> None:
        conn, _ = listener.accept()
        with conn:
            data = b""
            while chunk := conn.recv(4096):
                data += chunk
            seen["data"], seen["end"] = data, "FIN (recv returned 0 bytes)"

    peer_thread = threading.Thread(target=peer, daemon=True)
    peer_thread.start()

    Registration = WSK_REGISTRATION()
    ClientNpi = WSK_CLIENT_NPI(None, WSK_CLIENT_DISPATCH(MAKE_WSK_VERSION(1, 0), 0, None))
    assert WskRegister(ClientNpi, Registration) == STATUS_SUCCESS
    ProviderNpi = WSK_PROVIDER_NPI()
    assert WskCaptureProviderNPI(Registration, WSK_INFINITE_WAIT, ProviderNpi) == STATUS_SUCCESS
    assert ProviderNpi.Dispatch is not None

    Local, Remote = SOCKADDR_IN(), SOCKADDR_IN()
    IN4ADDR_SETLOOPBACK(Local)
    IN4ADDR_SETLOOPBACK(Remote)
    Remote.sin_port = RtlUshortByteSwap(port)
    Status, Socket = call_and_wait(
        ProviderNpi.Dispatch.WskSocketConnect,
        ProviderNpi.Client,
        SOCK_STREAM,
        IPPROTO_TCP,
        Local,
        Remote,
        0,
        None,
        None,
        None,
        None,
        None,
    )
    print(f"WskSocketConnect -> {status_name(Status)}")
    Dispatch = cast(PWSK_PROVIDER_CONNECTION_DISPATCH, Socket.Dispatch)

    Greeting = ExAllocatePoolWithTag(NonPagedPoolNx, 4096, b"wskx")
    assert Greeting is not None
    Greeting[:13] = b"hello, peer!\n"
    Mdl = IoAllocateMdl(Greeting, 13, False, False, None)
    assert Mdl is not None
    MmBuildMdlForNonPagedPool(Mdl)
    Status, Sent = call_and_wait(Dispatch.WskSend, Socket, WSK_BUF(Mdl, 0, 13), 0)
    print(f"WskSend -> {status_name(Status)}, {Sent} bytes")

    KeInitializeEvent(DisconnectDone, NotificationEvent, False)
    Status = DisconnectSocket(Socket)
    print(f"DisconnectSocket (WskDisconnect, graceful) returned {status_name(Status)}")
    KeWaitForSingleObject(DisconnectDone, Executive, KernelMode, False, None)
    print(f"DisconnectComplete ran with IoStatus.Status = {status_name(DisconnectStatus[0])}")

    peer_thread.join(10)
    print(f"peer received {seen.get('data')!r}, then saw {seen.get('end')}")

    Status, _ = call_and_wait(Dispatch.WskCloseSocket, Socket)
    print(f"WskCloseSocket -> {status_name(Status)}")
    IoFreeMdl(Mdl)
    ExFreePoolWithTag(Greeting, b"wskx")
    WskReleaseProviderNPI(Registration)
    WskDeregister(Registration)
    listener.close()
    ok = DisconnectStatus == [STATUS_SUCCESS] and seen.get("data") == b"hello, peer!\n"
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
