"""The WSK subsystem: client objects, the provider-level functions, the dispatch tables.

What it does: :class:`WskSubsystem` is what ``pywsk.wsk.registration`` attaches to.  It owns
the engine (the provider thread), the FIN-ACK watcher and the dispatch tables, and creates
a :class:`WskClient` (the PWSK_CLIENT) per registration.  Its WSK_PROVIDER_DISPATCH offers
WskSocket, WskSocketConnect and WskControlClient.  Every dispatch-table entry here is a
thin function that checks the IRQL rule, hands the call to the provider thread, takes the
IRP (refusing a freed or still-pending one) and calls the socket's method.

What it refuses: a NULL IRP where one is required (STATUS_INVALID_PARAMETER, nothing to
complete), a client object that is not one of ours (STATUS_INVALID_HANDLE), a socket
object that is closed or not ours (STATUS_INVALID_HANDLE, IRP completed), categories,
families and protocols it does not implement (STATUS_NOT_SUPPORTED).

What always holds: WskDeregister returns only once every socket of the client is closed;
a bad call on one socket never touches another.
"""

from __future__ import annotations

import functools
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from ..mechanics import linux
from ..nt import hooks
from ..nt.bugcheck import BugCheck
from ..nt.irp import IRP, IrpState, begin_request
from ..nt.irql import DISPATCH_LEVEL, require_irql_at_most
from ..nt.irql import _state as _irql
from ..nt.status import NTSTATUS
from ..wsk.constants import (
    AF_INET,
    AF_INET6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    MAKE_WSK_VERSION,
    NPI_WSK_INTERFACE_ID,
    SOCK_DGRAM,
    SOCK_STREAM,
    WSK_EVENT_DISABLE,
    WSK_FLAG_BASIC_SOCKET,
    WSK_FLAG_CONNECTION_SOCKET,
    WSK_FLAG_DATAGRAM_SOCKET,
    WSK_FLAG_LISTEN_SOCKET,
    WSK_FLAG_STREAM_SOCKET,
    WSK_SET_STATIC_EVENT_CALLBACKS,
    WSK_TRANSPORT_LIST_QUERY,
)
from ..wsk.dispatch import (
    WSK_PROVIDER_BASIC_DISPATCH,
    WSK_PROVIDER_CONNECTION_DISPATCH,
    WSK_PROVIDER_DATAGRAM_DISPATCH,
    WSK_PROVIDER_DISPATCH,
    WSK_PROVIDER_LISTEN_DISPATCH,
    WSK_PROVIDER_STREAM_DISPATCH,
)
from ..wsk.registration import WSK_CLIENT_NPI
from ..wsk.structs import (
    PSIZE_T,
    SOCKADDR,
    WSK_BUF,
    WSK_EVENT_CALLBACK_CONTROL,
    WSK_PROVIDER_CHARACTERISTICS,
    WSK_TRANSPORT,
)
from . import arguments as argcheck
from . import names
from .base import ProviderSocket, internal_irp, needs_irp
from .connection import ConnectionSocket
from .datagram import BasicSocket, DatagramSocket
from .engine import MAX_INLINE_DEPTH, TURN_BUDGET, Engine, report_exception
from .listener import DatagramListenSocket, ListenSocket
from .stream import StreamSocket

__all__ = ["WskClient", "WskSubsystem", "TransportOptions", "subsystem"]

WSK_VERSION_1_0: Final = MAKE_WSK_VERSION(1, 0)


@dataclass
class TransportOptions:
    """How the modelled transport behaves; sockets take a snapshot when they are created.

    ``half_open``: TCP supports half-open connections (receive after our graceful
    disconnect).  False models a transport that does not ("not all transports support
    half-open connections" - WskDisconnect): after a graceful disconnect, receives complete
    with 0 bytes and nothing more is received.
    """

    half_open: bool = True


class WskClient:
    """The client object (PWSK_CLIENT) of one registration."""

    def __init__(self, subsystem: WskSubsystem, npi: WSK_CLIENT_NPI) -> None:
        self.subsystem = subsystem
        self.npi = npi
        self.sockets: set[ProviderSocket] = set()
        self._idle = threading.Condition()
        self.detached = False
        #: Events enabled with WSK_SET_STATIC_EVENT_CALLBACKS (before any socket was made).
        self.static_events = 0
        self.sockets_made = 0
        #: ADDRINFOEXW chains handed out by WskGetAddressInfo and not yet freed.
        self.address_infos: set[int] = set()

    def socket_opened(self, sock: ProviderSocket) -> None:
        with self._idle:
            self.sockets.add(sock)
            self.sockets_made += 1
        if hooks.observer is not None:
            hooks.observer.event("socket-opened", sock, client=self)

    def socket_closed(self, sock: ProviderSocket) -> None:
        with self._idle:
            self.sockets.discard(sock)
            self._idle.notify_all()
        if hooks.observer is not None:
            hooks.observer.event("socket-closed", sock, client=self)

    def wait_idle(self) -> None:
        """Block until every socket of this client is closed."""
        with self._idle:
            self._idle.wait_for(lambda: not self.sockets)

    def __repr__(self) -> str:
        return f"<WSK client with {len(self.sockets)} socket(s)>"


class WskSubsystem:
    """The WSK provider: what registration attaches to."""

    def __init__(self) -> None:
        self.engine = Engine()
        self.characteristics = WSK_PROVIDER_CHARACTERISTICS(
            HighestVersion=WSK_VERSION_1_0, LowestVersion=WSK_VERSION_1_0
        )
        self.options = TransportOptions()
        basic = WSK_PROVIDER_BASIC_DISPATCH(
            WskControlSocket=_WskControlSocket, WskCloseSocket=_WskCloseSocket
        )
        self.connection_dispatch = WSK_PROVIDER_CONNECTION_DISPATCH(
            Basic=basic,
            WskBind=_WskBind,
            WskConnect=_WskConnect,
            WskGetLocalAddress=_WskGetLocalAddress,
            WskGetRemoteAddress=_WskGetRemoteAddress,
            WskSend=_WskSend,
            WskReceive=_WskReceive,
            WskDisconnect=_WskDisconnect,
            WskRelease=_WskRelease,
            WskConnectEx=_WskConnectEx,
            WskSendEx=_WskSendEx,
            WskReceiveEx=_WskReceiveEx,
        )
        self.stream_dispatch = WSK_PROVIDER_STREAM_DISPATCH(
            Basic=basic,
            WskBind=_WskBind,
            WskAccept=_WskAccept,
            WskConnect=_WskConnect,
            WskListen=_WskListen,
            WskSend=_WskSend,
            WskReceive=_WskReceive,
            WskDisconnect=_WskDisconnect,
            WskRelease=_WskRelease,
            WskGetLocalAddress=_WskGetLocalAddress,
            WskGetRemoteAddress=_WskGetRemoteAddress,
            WskConnectEx=_WskConnectEx,
            WskSendEx=_WskSendEx,
            WskReceiveEx=_WskReceiveEx,
        )
        self.basic_dispatch = basic
        self.datagram_dispatch = WSK_PROVIDER_DATAGRAM_DISPATCH(
            Basic=basic,
            WskBind=_WskBind,
            WskSendTo=_WskSendTo,
            WskReceiveFrom=_WskReceiveFrom,
            WskRelease=_WskRelease,
            WskGetLocalAddress=_WskGetLocalAddress,
            WskSendMessages=_WskSendMessages,
        )
        self.listen_dispatch = WSK_PROVIDER_LISTEN_DISPATCH(
            Basic=basic,
            WskBind=_WskBind,
            WskAccept=_WskAccept,
            WskInspectComplete=_WskInspectComplete,
            WskGetLocalAddress=_WskGetLocalAddress,
        )
        self.provider_dispatch = WSK_PROVIDER_DISPATCH(
            Version=WSK_VERSION_1_0,
            Reserved=0,
            WskSocket=_WskSocket,
            WskSocketConnect=_WskSocketConnect,
            WskControlClient=_WskControlClient,
            WskGetAddressInfo=_WskGetAddressInfo,
            WskFreeAddressInfo=_WskFreeAddressInfo,
            WskGetNameInfo=_WskGetNameInfo,
        )

    # --- ProviderAttachment ----------------------------------------------------------------
    def start(self, timeout: float | None) -> bool:
        return self.engine.start(timeout)

    def attach_client(self, npi: WSK_CLIENT_NPI) -> WskClient:
        return WskClient(self, npi)

    def dispatch_for(self, client: Any) -> WSK_PROVIDER_DISPATCH:
        return self.provider_dispatch

    def detach_client(self, client: Any) -> None:
        assert isinstance(client, WskClient)
        client.wait_idle()
        client.detached = True
        if hooks.observer is not None:
            hooks.observer.event("client-detached", client)


# --------------------------------------------------------------------------------------------
# Entry points.  Each checks the IRQL rule, then runs on the calling thread: a socket's
# method under the socket's lock, its completion routines after the lock is released.
# --------------------------------------------------------------------------------------------


def _enter(
    name: str,
    Irp: IRP | None,
    fn: Callable[..., int],
    *args: Any,
    precheck: Callable[[], None] | None = None,
    check: Check | None = None,
) -> int:
    """Check the IRQL rule, then run ``fn(*args)`` on this thread with ``Irp`` taken.

    ``precheck`` runs first, before the IRP is taken: a verifier that refuses the call
    (raises) leaves everything as it was.  ``check`` (arguments.py) then looks at the
    arguments: a refusal completes the IRP with its status and nothing else happens.
    """
    require_irql_at_most(DISPATCH_LEVEL, name)
    if not isinstance(Irp, IRP):
        # Nothing to complete: the call is refused outright (observed on Windows for NULL).
        if hooks.observer is not None:
            hooks.observer.event("null-irp", None, function=name)
        return NTSTATUS.STATUS_INVALID_PARAMETER
    return _take(name, Irp, fn, args, precheck, check)


#: An argument check: None (go on) or the status that refuses the call.
Check = Callable[[], "int | None"]


def _completed(Irp: IRP, status: int) -> int:
    """Complete ``Irp`` with ``status`` now and return that status (a call that ends at once)."""
    subsystem.engine.complete(Irp, status)
    return status


def _take(
    name: str,
    Irp: IRP,
    fn: Callable[..., int],
    args: tuple[Any, ...],
    precheck: Callable[[], None] | None = None,
    check: Check | None = None,
) -> int:
    observer = hooks.observer
    if observer is not None:
        if precheck is not None:
            precheck()
        if subsystem.engine.in_completion:
            observer.event("wsk-call-in-completion-routine", Irp, function=name)
    # Before the IRP is taken: a BugCheck raised here (a freed MDL) leaves it the caller's.
    refusal = check() if check is not None else None
    begin_request(Irp, name)
    if refusal is not None:
        return subsystem.engine.take(name, Irp, _completed, (Irp, refusal))
    try:
        return subsystem.engine.take(name, Irp, fn, args)
    except Exception as exc:
        return _failed_inside(name, Irp, exc)


def _failed_inside(name: str, Irp: IRP, exc: Exception) -> int:
    """The provider raised after it took ``Irp`` (a check missed a bad argument, or a bug):
    the IRP still completes - STATUS_INVALID_PARAMETER if nothing completed or queued it -
    and the exception is reported, never left with the IRP pending for ever.  A BugCheck
    is raised on after that (the rule it names was broken)."""
    if Irp.state is IrpState.PENDING and not Irp._marked_pending:
        status: int = NTSTATUS.STATUS_INVALID_PARAMETER
        subsystem.engine.complete(Irp, status)
    else:
        status = NTSTATUS.STATUS_PENDING if Irp._marked_pending else Irp.IoStatus.Status
    if isinstance(exc, BugCheck):
        raise exc
    report_exception(exc, f"in {name} (its IRP completed with status 0x{status:08X})", Irp)
    return status


def _socket_call(
    name: str, Socket: Any, Irp: IRP | None, method: str, *args: Any, check: Check | None = None
) -> int:
    """Run ``Socket.<method>(*args)`` under the socket's lock, if the socket is live and has it.

    The common case - no verifier, no fault scheduler, a live socket, a call not deep in a
    chain - takes a short path with the same steps inlined: the IRQL rule, the argument
    check, the IRP taken, the method under the lock, the completion routines after it.
    """
    engine = subsystem.engine
    tls = engine._tls
    if (
        type(Irp) is IRP
        and hooks.observer is None
        and hooks.faults is None
        and _irql.level <= DISPATCH_LEVEL
        and tls.batch is None
        and tls.depth < MAX_INLINE_DEPTH
        and tls.turn < TURN_BUDGET
        and isinstance(Socket, ProviderSocket)
    ):
        bound = getattr(Socket, method, None)
        if bound is not None:
            # Before the IRP is taken: a BugCheck raised here leaves it the caller's.
            refusal = check() if check is not None else None
            begin_request(Irp, name)
            if refusal is not None:
                return _completed(Irp, refusal)
            batch: list[Any] = []
            tls.batch = batch
            lock = Socket.lock
            lock.acquire()
            try:
                if Socket.closed:  # a use after close (or closed by another thread meanwhile)
                    result: int = _completed(Irp, NTSTATUS.STATUS_INVALID_HANDLE)
                else:
                    result = bound(*args)
            except Exception as exc:
                failure: Exception | None = exc
            else:
                failure = None
            finally:
                lock.release()
                tls.batch = None
                if batch:
                    engine._run_batch(batch)
            if failure is not None:
                return _failed_inside(name, Irp, failure)
            return result
    precheck = None
    if hooks.observer is not None:
        precheck = functools.partial(_socket_precheck, name, Socket, Irp, method)
    return _enter(
        name, Irp, _run_socket_method, Socket, Irp, method, args, precheck=precheck, check=check
    )


def _socket_is_live(Socket: Any, method: str) -> bool:
    return isinstance(Socket, ProviderSocket) and not Socket.closed and hasattr(Socket, method)


def _socket_precheck(name: str, Socket: Any, Irp: IRP | None, method: str) -> None:
    """The verifier's look at a socket call, before the IRP is taken."""
    observer = hooks.observer
    if observer is None:
        return
    observer.event("socket-call", Socket, function=name, irp=Irp)
    if not _socket_is_live(Socket, method):
        observer.event("wsk-call-on-closed-socket", Socket, function=name)
    elif method == "close":
        if Socket.calls_inside:
            observer.event("close-while-call-inside", Socket, calls=Socket.calls_inside)
        retained = getattr(getattr(Socket, "role", Socket), "retained", None)
        if retained:
            observer.event("close-with-retained-indications", Socket, count=len(retained))


def _run_socket_method(Socket: Any, Irp: IRP, method: str, args: tuple[Any, ...]) -> int:
    if not _socket_is_live(Socket, method):
        return _completed(Irp, NTSTATUS.STATUS_INVALID_HANDLE)
    engine = subsystem.engine
    if hooks.observer is None:
        result: int = engine.locked(Socket.lock, _inside, Socket, Irp, method, args)
        return result
    # The verifier counts calls inside the provider (WSK-002) from entry to return, the
    # completion routines of an inline completion included.
    with Socket.lock:
        Socket.calls_inside += 1
    try:
        result = engine.locked(Socket.lock, _inside, Socket, Irp, method, args)
    finally:
        with Socket.lock:
            Socket.calls_inside -= 1
    return result


def _inside(Socket: Any, Irp: IRP, method: str, args: tuple[Any, ...]) -> int:
    """The socket's method, under its lock (closed meanwhile by another thread: refused)."""
    if Socket.closed:
        return _completed(Irp, NTSTATUS.STATUS_INVALID_HANDLE)
    result: int = getattr(Socket, method)(*args)
    return result


def _no_irp_call(name: str, fn: Callable[[], int], failure: int) -> int:
    """A call without an IRP (WskControlSocket with Irp NULL, WskRelease): an exception the
    provider raises becomes ``failure``, reported; a BugCheck is raised on."""
    try:
        return fn()
    except BugCheck:
        raise
    except Exception as exc:
        report_exception(exc, f"in {name} (it returned status 0x{failure:08X})", None)
        return failure


def _WskBind(Socket: Any, LocalAddress: SOCKADDR, Flags: int, Irp: IRP) -> int:
    return _address_call("WskBind", Socket, "bind", LocalAddress, Flags, Irp)


def _WskConnect(Socket: Any, RemoteAddress: SOCKADDR, Flags: int, Irp: IRP) -> int:
    return _address_call("WskConnect", Socket, "connect", RemoteAddress, Flags, Irp)


def _address_call(name: str, Socket: Any, method: str, Address: Any, Flags: Any, Irp: Any) -> int:
    """WskBind / WskConnect: an input address and a ULONG of flags, checked first."""

    def check() -> int | None:
        return argcheck.first_refusal(
            argcheck.address_status(Address), argcheck.ulong_status(Flags)
        )

    return _socket_call(name, Socket, Irp, method, Address, Flags, Irp, check=check)


def _WskListen(Socket: Any, Irp: IRP) -> int:
    return _socket_call("WskListen", Socket, Irp, "listen", Irp)


def _WskAccept(
    ListenSocket: Any,
    Flags: int,
    AcceptSocketContext: Any,
    AcceptSocketDispatch: Any,
    LocalAddress: SOCKADDR | None,
    RemoteAddress: SOCKADDR | None,
    Irp: IRP,
) -> int:
    return _socket_call(
        "WskAccept",
        ListenSocket,
        Irp,
        "accept",
        Flags,
        AcceptSocketContext,
        AcceptSocketDispatch,
        LocalAddress,
        RemoteAddress,
        Irp,
        check=lambda: argcheck.first_refusal(
            argcheck.ulong_status(Flags),
            argcheck.out_address_status(LocalAddress, optional=True),
            argcheck.out_address_status(RemoteAddress, optional=True),
        ),
    )


def _WskInspectComplete(ListenSocket: Any, InspectID: Any, Action: int, Irp: IRP) -> int:
    return _socket_call(
        "WskInspectComplete",
        ListenSocket,
        Irp,
        "inspect_complete",
        InspectID,
        Action,
        Irp,
        check=lambda: argcheck.ulong_status(Action),
    )


def _WskSend(Socket: Any, Buffer: WSK_BUF, Flags: int, Irp: IRP) -> int:
    return _socket_call(
        "WskSend", Socket, Irp, "send", Buffer, Flags, Irp, check=_buffer_check(Buffer, Flags)
    )


def _WskReceive(Socket: Any, Buffer: WSK_BUF, Flags: int, Irp: IRP) -> int:
    return _socket_call(
        "WskReceive", Socket, Irp, "receive", Buffer, Flags, Irp, check=_buffer_check(Buffer, Flags)
    )


def _WskDisconnect(Socket: Any, Buffer: WSK_BUF | None, Flags: int, Irp: IRP) -> int:
    return _socket_call(
        "WskDisconnect",
        Socket,
        Irp,
        "disconnect",
        Buffer,
        Flags,
        Irp,
        check=_buffer_check(Buffer, Flags, required=False),
    )


def _buffer_check(Buffer: Any, Flags: Any, required: bool = True) -> Check:
    return lambda: argcheck.first_refusal(
        argcheck.buffer_status(Buffer, required), argcheck.ulong_status(Flags)
    )


def _WskCloseSocket(Socket: Any, Irp: IRP) -> int:
    return _socket_call("WskCloseSocket", Socket, Irp, "close", Irp)


def _WskGetLocalAddress(Socket: Any, LocalAddress: SOCKADDR, Irp: IRP) -> int:
    return _socket_call(
        "WskGetLocalAddress",
        Socket,
        Irp,
        "get_local_address",
        LocalAddress,
        Irp,
        check=lambda: argcheck.out_address_status(LocalAddress),
    )


def _WskGetRemoteAddress(Socket: Any, RemoteAddress: SOCKADDR, Irp: IRP) -> int:
    return _socket_call(
        "WskGetRemoteAddress",
        Socket,
        Irp,
        "get_remote_address",
        RemoteAddress,
        Irp,
        check=lambda: argcheck.out_address_status(RemoteAddress),
    )


def _WskControlSocket(
    Socket: Any,
    RequestType: int,
    ControlCode: int,
    Level: int,
    InputSize: int,
    InputBuffer: Any,
    OutputSize: int,
    OutputBuffer: Any,
    OutputSizeReturned: PSIZE_T | None,
    Irp: IRP | None,
) -> int:
    call = (
        RequestType,
        ControlCode,
        Level,
        InputSize,
        InputBuffer,
        OutputSize,
        OutputBuffer,
        OutputSizeReturned,
        Irp,
    )

    def check() -> int | None:
        return argcheck.first_refusal(
            argcheck.ulong_status(RequestType, ControlCode, Level, InputSize, OutputSize),
            argcheck.size_box_status(OutputSizeReturned),
        )

    if Irp is not None:
        return _socket_call("WskControlSocket", Socket, Irp, "control", *call, check=check)
    require_irql_at_most(DISPATCH_LEVEL, "WskControlSocket")

    if not isinstance(Socket, ProviderSocket) or Socket.closed:
        if hooks.observer is not None:
            hooks.observer.event("wsk-call-on-closed-socket", Socket, function="WskControlSocket")
        return NTSTATUS.STATUS_INVALID_HANDLE

    def run() -> int:
        if Socket.closed:
            return NTSTATUS.STATUS_INVALID_HANDLE
        refusal = check()
        if refusal is not None:
            return refusal
        if needs_irp(RequestType, ControlCode, Level):
            # The page requires an IRP: "inline completion is not possible" (wsk.h's
            # STATUS_REQUEST_NOT_ACCEPTED); nothing is set or read.
            return NTSTATUS.STATUS_REQUEST_NOT_ACCEPTED
        result: int = Socket.control(*call)
        return result

    return _no_irp_call(
        "WskControlSocket",
        functools.partial(subsystem.engine.locked, Socket.lock, run),
        NTSTATUS.STATUS_INVALID_PARAMETER,
    )


def _WskRelease(Socket: Any, DataIndication: Any) -> int:
    """WskRelease: no IRP; returns STATUS_SUCCESS or STATUS_INVALID_PARAMETER at once."""
    require_irql_at_most(DISPATCH_LEVEL, "WskRelease")

    if not isinstance(Socket, ConnectionSocket | StreamSocket | DatagramSocket) or Socket.closed:
        if hooks.observer is not None and isinstance(Socket, ProviderSocket):
            hooks.observer.event("wsk-call-on-closed-socket", Socket, function="WskRelease")
        return NTSTATUS.STATUS_INVALID_PARAMETER

    def run() -> int:
        if Socket.closed:
            return NTSTATUS.STATUS_INVALID_PARAMETER
        return Socket.release(DataIndication)

    return _no_irp_call(
        "WskRelease",
        functools.partial(subsystem.engine.locked, Socket.lock, run),
        NTSTATUS.STATUS_INVALID_PARAMETER,
    )


def _WskConnectEx(
    Socket: Any, RemoteAddress: SOCKADDR, Buffer: WSK_BUF | None, Flags: int, Irp: IRP
) -> int:
    """WskConnect, then (if ``Buffer``) a send of it; the IRP completes with the send."""
    if Buffer is None:
        return _socket_call("WskConnectEx", Socket, Irp, "connect", RemoteAddress, Flags, Irp)
    precheck = None
    if hooks.observer is not None:
        precheck = functools.partial(_socket_precheck, "WskConnectEx", Socket, Irp, "connect")
    return _enter(
        "WskConnectEx", Irp, _connect_ex, Socket, RemoteAddress, Buffer, Flags, Irp,
        precheck=precheck,
    )  # fmt: skip


def _connect_ex(Socket: Any, RemoteAddress: SOCKADDR, Buffer: WSK_BUF, Flags: int, Irp: IRP) -> int:
    if not _socket_is_live(Socket, "send"):
        return _completed(Irp, NTSTATUS.STATUS_INVALID_HANDLE)
    result: int = subsystem.engine.locked(
        Socket.lock, _connect_then_send, Socket, RemoteAddress, Buffer, Flags, Irp
    )
    return result


def _connect_then_send(
    Socket: Any, RemoteAddress: SOCKADDR, Buffer: WSK_BUF, Flags: int, Irp: IRP
) -> int:
    """WskConnectEx with data, under the socket's lock: connect on an internal IRP, then
    send ``Buffer`` on the client's IRP once connected (inline or from the completion)."""
    if Socket.closed:
        return _completed(Irp, NTSTATUS.STATUS_INVALID_HANDLE)

    def send() -> int:
        result: int = Socket.send(Buffer, 0, Irp)
        return result

    return _connect_step(
        "WskConnectEx", Socket, RemoteAddress, Flags, Irp, send, functools.partial(_completed, Irp)
    )


def _connect_step(
    name: str,
    sock: Any,
    remote: SOCKADDR,
    flags: int,
    Irp: IRP,
    then: Callable[[], int],
    fail: Callable[[int], int],
) -> int:
    """Connect ``sock`` (whose lock the caller holds) on an internal IRP, for a client's
    request on ``Irp``: ``then()`` once connected, ``fail(status)`` if not - at once, or
    under the socket's lock from the connect's completion.  Returns what the client's call
    returns (STATUS_PENDING when the connect pends; ``Irp`` is marked pending then)."""
    from ..nt.irp import IoAllocateIrp, IoFreeIrp, IoMarkIrpPending, IoSetCompletionRoutine

    connect_irp = IoAllocateIrp(1, False)
    if connect_irp is None:
        return fail(NTSTATUS.STATUS_INSUFFICIENT_RESOURCES)
    pending = [False]

    def connected(_device: Any, irp: IRP, _context: Any) -> int:
        final = irp.IoStatus.Status
        IoFreeIrp(irp)
        if pending[0]:
            if final == NTSTATUS.STATUS_SUCCESS:
                subsystem.engine.locked(sock.lock, then)
            else:
                subsystem.engine.locked(sock.lock, fail, final)
        return NTSTATUS.STATUS_MORE_PROCESSING_REQUIRED

    IoSetCompletionRoutine(connect_irp, connected, None, True, True, True)
    begin_request(connect_irp, name)
    status = sock.connect(remote, flags, connect_irp)
    if status == NTSTATUS.STATUS_PENDING:
        pending[0] = True
        IoMarkIrpPending(Irp)
        return NTSTATUS.STATUS_PENDING
    if status != NTSTATUS.STATUS_SUCCESS:
        return fail(status)
    return then()


def _WskSendEx(
    Socket: Any, Buffer: Any, Flags: int, ControlInfoLength: int, ControlInfo: Any, Irp: IRP
) -> int:
    """WskSend with control information: none is supported on a stream (TCP) socket."""

    def check() -> int | None:
        return argcheck.first_refusal(
            argcheck.buffer_status(Buffer),
            argcheck.ulong_status(Flags, ControlInfoLength),
        )

    if (
        isinstance(ControlInfoLength, int)
        and not isinstance(ControlInfoLength, bool)
        and (ControlInfoLength)
    ):
        return _socket_call("WskSendEx", Socket, Irp, "unsupported", Irp, check=check)
    return _socket_call("WskSendEx", Socket, Irp, "send", Buffer, Flags, Irp, check=check)


def _WskReceiveEx(
    Socket: Any,
    Buffer: Any,
    Flags: int,
    ControlInfoLength: Any,
    ControlInfo: Any,
    ControlFlags: Any,
    Irp: IRP,
) -> int:
    """WskReceive with control information: TCP data carries none (length and flags 0)."""
    for box in (ControlInfoLength, ControlFlags):
        if box is not None and hasattr(box, "value"):
            box.value = 0
    return _socket_call(
        "WskReceiveEx",
        Socket,
        Irp,
        "receive",
        Buffer,
        Flags,
        Irp,
        check=_buffer_check(Buffer, Flags),
    )


# --- datagram sockets ----------------------------------------------------------------------------


def _WskSendTo(
    Socket: Any,
    Buffer: WSK_BUF,
    Flags: int,
    RemoteAddress: SOCKADDR | None,
    ControlInfoLength: int,
    ControlInfo: Any,
    Irp: IRP,
) -> int:
    return _socket_call(
        "WskSendTo",
        Socket,
        Irp,
        "send_to",
        Buffer,
        Flags,
        RemoteAddress,
        ControlInfoLength,
        ControlInfo,
        Irp,
    )


def _WskReceiveFrom(
    Socket: Any,
    Buffer: WSK_BUF,
    Flags: int,
    RemoteAddress: SOCKADDR | None,
    ControlLength: Any,
    ControlInfo: Any,
    ControlFlags: Any,
    Irp: IRP,
) -> int:
    return _socket_call(
        "WskReceiveFrom",
        Socket,
        Irp,
        "receive_from",
        Buffer,
        Flags,
        RemoteAddress,
        ControlLength,
        ControlInfo,
        ControlFlags,
        Irp,
    )


def _WskSendMessages(
    Socket: Any,
    BufferList: Any,
    Flags: int,
    RemoteAddress: SOCKADDR | None,
    ControlInfoLength: int,
    ControlInfo: Any,
    Irp: IRP,
) -> int:
    return _socket_call(
        "WskSendMessages",
        Socket,
        Irp,
        "send_messages",
        BufferList,
        Flags,
        RemoteAddress,
        ControlInfoLength,
        ControlInfo,
        Irp,
    )


# --- client-level functions ---------------------------------------------------------------------


#: How each category's socket is made from a fresh non-blocking Linux socket:
#: ``factory(client, family, sock, context, dispatch) -> ProviderSocket``.
SocketFactory = Callable[[WskClient, int, socket.socket, Any, Any], ProviderSocket]


def _connection_socket(
    client: WskClient, family: int, sock: socket.socket, context: Any, dispatch: Any
) -> ProviderSocket:
    return ConnectionSocket(client, family, sock, context, dispatch, subsystem.options.half_open)


def _stream_socket(
    client: WskClient, family: int, sock: socket.socket, context: Any, dispatch: Any
) -> ProviderSocket:
    return StreamSocket(client, family, sock, context, dispatch, subsystem.options.half_open)


SOCKET_FACTORIES: dict[int, SocketFactory] = {
    WSK_FLAG_CONNECTION_SOCKET: _connection_socket,
    WSK_FLAG_LISTEN_SOCKET: ListenSocket,
    WSK_FLAG_STREAM_SOCKET: _stream_socket,
    WSK_FLAG_DATAGRAM_SOCKET: DatagramSocket,
    WSK_FLAG_BASIC_SOCKET: BasicSocket,
}
#: The transports (type, protocol) each category can be made on.
_CATEGORY_TRANSPORTS: Final = {
    WSK_FLAG_DATAGRAM_SOCKET: ((SOCK_DGRAM, IPPROTO_UDP),),
    WSK_FLAG_BASIC_SOCKET: ((SOCK_STREAM, IPPROTO_TCP), (SOCK_DGRAM, IPPROTO_UDP)),
}
_KNOWN_CATEGORIES: Final = frozenset(
    {
        WSK_FLAG_BASIC_SOCKET,
        WSK_FLAG_LISTEN_SOCKET,
        WSK_FLAG_CONNECTION_SOCKET,
        WSK_FLAG_DATAGRAM_SOCKET,
        WSK_FLAG_STREAM_SOCKET,
    }
)


def _create_socket(
    client: Any,
    family: int,
    socket_type: int,
    protocol: int,
    flags: int,
    context: Any,
    dispatch: Any,
) -> ProviderSocket | int:
    """A new socket of the category ``flags`` names, or the status that refuses it."""
    if not isinstance(client, WskClient) or client.detached:
        return NTSTATUS.STATUS_INVALID_HANDLE
    if flags not in _KNOWN_CATEGORIES:
        return NTSTATUS.STATUS_INVALID_PARAMETER
    factory = SOCKET_FACTORIES.get(flags)
    if factory is None:
        return NTSTATUS.STATUS_NOT_SUPPORTED  # a category pywsk does not implement (yet)
    if family not in (AF_INET, AF_INET6):
        return NTSTATUS.STATUS_NOT_SUPPORTED
    if (flags, socket_type, protocol) == (WSK_FLAG_LISTEN_SOCKET, SOCK_DGRAM, IPPROTO_UDP):
        # Windows creates it; only WskBind fails (STATUS_NOT_IMPLEMENTED).
        factory = DatagramListenSocket
    elif (socket_type, protocol) not in _CATEGORY_TRANSPORTS.get(
        flags, ((SOCK_STREAM, IPPROTO_TCP),)
    ):
        return NTSTATUS.STATUS_NOT_SUPPORTED
    udp = socket_type == SOCK_DGRAM
    try:
        # Non-blocking from the start (SOCK_NONBLOCK: no ioctl afterwards).
        sock = socket.socket(
            linux.linux_family(family),
            (socket.SOCK_DGRAM if udp else socket.SOCK_STREAM) | socket.SOCK_NONBLOCK,
            socket.IPPROTO_UDP if udp else socket.IPPROTO_TCP,
        )
    except OSError as exc:
        return linux.status_from_errno(exc.errno)
    if family == AF_INET6:
        # Windows makes IPv6 sockets IPv6-only unless IPV6_V6ONLY is cleared before bind.
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    new = factory(client, family, sock, context, dispatch)
    client.socket_opened(new)
    return new


def _WskSocket(
    Client: Any,
    AddressFamily: int,
    SocketType: int,
    Protocol: int,
    Flags: int,
    SocketContext: Any,
    Dispatch: Any,
    OwningProcess: Any,
    OwningThread: Any,
    SecurityDescriptor: Any,
    Irp: IRP,
) -> int:
    def run() -> int:
        created = _create_socket(
            Client, AddressFamily, SocketType, Protocol, Flags, SocketContext, Dispatch
        )
        if isinstance(created, int):
            return _completed(Irp, created)
        subsystem.engine.complete(Irp, NTSTATUS.STATUS_SUCCESS, created)
        return NTSTATUS.STATUS_SUCCESS

    return _enter(
        "WskSocket",
        Irp,
        run,
        check=lambda: argcheck.ulong_status(AddressFamily, SocketType, Protocol, Flags),
    )


def _WskSocketConnect(
    Client: Any,
    SocketType: int,
    Protocol: int,
    LocalAddress: SOCKADDR,
    RemoteAddress: SOCKADDR,
    Flags: int,
    SocketContext: Any,
    Dispatch: Any,
    OwningProcess: Any,
    OwningThread: Any,
    SecurityDescriptor: Any,
    Irp: IRP,
) -> int:
    def run() -> int:
        if Flags != 0 or LocalAddress is None or RemoteAddress is None:
            return _completed(Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
        created = _create_socket(
            Client,
            LocalAddress.sa_family,
            SocketType,
            Protocol,
            WSK_FLAG_CONNECTION_SOCKET,
            SocketContext,
            Dispatch,
        )
        if isinstance(created, int):
            return _completed(Irp, created)
        assert isinstance(created, ConnectionSocket)
        status: int = subsystem.engine.locked(
            created.lock, _bind_then_connect, created, LocalAddress, RemoteAddress, Irp
        )
        return status

    return _enter(
        "WskSocketConnect",
        Irp,
        run,
        check=lambda: argcheck.first_refusal(
            argcheck.ulong_status(SocketType, Protocol, Flags),
            argcheck.address_status(LocalAddress),
            argcheck.address_status(RemoteAddress),
        ),
    )


def _bind_then_connect(sock: ConnectionSocket, local: SOCKADDR, remote: SOCKADDR, Irp: IRP) -> int:
    """WskSocketConnect's two steps, on internal IRPs, under the socket's lock;
    Information = the socket on success (on failure the socket is closed)."""

    def fail(status: int) -> int:
        sock.close(internal_irp())
        return _completed(Irp, status)

    def succeed() -> int:
        subsystem.engine.complete(Irp, NTSTATUS.STATUS_SUCCESS, sock)
        return NTSTATUS.STATUS_SUCCESS

    status = sock.bind(local, 0, internal_irp())
    if status != NTSTATUS.STATUS_SUCCESS:
        return fail(status)
    return _connect_step("WskSocketConnect", sock, remote, 0, Irp, succeed, fail)


def _WskControlClient(
    Client: Any,
    ControlCode: int,
    InputSize: int,
    InputBuffer: Any,
    OutputSize: int,
    OutputBuffer: Any,
    OutputSizeReturned: PSIZE_T | None,
    Irp: IRP | None,
) -> int:
    """WskControlClient.  With an IRP, every outcome - refusals too - completes it."""
    require_irql_at_most(DISPATCH_LEVEL, "WskControlClient")
    status = argcheck.first_refusal(
        argcheck.ulong_status(ControlCode, InputSize, OutputSize),
        argcheck.size_box_status(OutputSizeReturned),
    ) or _no_irp_call(
        "WskControlClient",
        functools.partial(
            _control_client,
            Client,
            ControlCode,
            InputBuffer,
            OutputSize,
            OutputBuffer,
            OutputSizeReturned,
            Irp,
        ),
        NTSTATUS.STATUS_INVALID_PARAMETER,
    )
    if isinstance(Irp, IRP):
        return _take("WskControlClient", Irp, _completed, (Irp, status))
    return status


def _control_client(
    Client: Any,
    ControlCode: int,
    InputBuffer: Any,
    OutputSize: int,
    OutputBuffer: Any,
    OutputSizeReturned: PSIZE_T | None,
    Irp: IRP | None,
) -> int:
    if not isinstance(Client, WskClient):
        return NTSTATUS.STATUS_INVALID_HANDLE
    if ControlCode == WSK_TRANSPORT_LIST_QUERY:
        # IRP must be NULL; OutputSizeReturned must be given (wsk.h).
        if Irp is not None or OutputSizeReturned is None:
            return NTSTATUS.STATUS_INVALID_PARAMETER
        transports = [
            WSK_TRANSPORT(
                Version=0, SocketType=SOCK_STREAM, Protocol=IPPROTO_TCP, AddressFamily=AF_INET
            ),
            WSK_TRANSPORT(
                Version=0, SocketType=SOCK_STREAM, Protocol=IPPROTO_TCP, AddressFamily=AF_INET6
            ),
            WSK_TRANSPORT(
                Version=0, SocketType=SOCK_DGRAM, Protocol=IPPROTO_UDP, AddressFamily=AF_INET
            ),
            WSK_TRANSPORT(
                Version=0, SocketType=SOCK_DGRAM, Protocol=IPPROTO_UDP, AddressFamily=AF_INET6
            ),
        ]
        OutputSizeReturned.value = len(transports)
        if not isinstance(OutputBuffer, list) or OutputSize < len(transports):
            return NTSTATUS.STATUS_BUFFER_OVERFLOW
        OutputBuffer[: len(transports)] = transports
        return NTSTATUS.STATUS_SUCCESS
    if ControlCode == WSK_SET_STATIC_EVENT_CALLBACKS:
        return _set_static_event_callbacks(Client, InputBuffer, Irp)
    return NTSTATUS.STATUS_NOT_SUPPORTED


def _set_static_event_callbacks(client: WskClient, control: Any, Irp: IRP | None) -> int:
    """WSK_SET_STATIC_EVENT_CALLBACKS: before any socket exists, IRP NULL ("WSK_SET_STATIC_
    EVENT_CALLBACKS"); every later socket gets the events of its category, for good."""
    if Irp is not None or not isinstance(control, WSK_EVENT_CALLBACK_CONTROL):
        return NTSTATUS.STATUS_INVALID_PARAMETER
    if control.NpiId != NPI_WSK_INTERFACE_ID or control.EventMask & WSK_EVENT_DISABLE:
        return NTSTATUS.STATUS_INVALID_PARAMETER
    if client.sockets_made:
        return NTSTATUS.STATUS_INVALID_DEVICE_STATE
    client.static_events |= control.EventMask
    return NTSTATUS.STATUS_SUCCESS


# --- name resolution ---------------------------------------------------------------------------


def _WskGetAddressInfo(
    Client: Any,
    NodeName: Any,
    ServiceName: Any,
    NameSpace: int,
    Provider: Any,
    Hints: Any,
    Result: Any,
    OwningProcess: Any,
    OwningThread: Any,
    Irp: IRP,
) -> int:
    names.check_passive("WskGetAddressInfo")

    def run() -> int:
        if not isinstance(Client, WskClient):
            return _completed(Irp, NTSTATUS.STATUS_INVALID_HANDLE)
        return names.get_address_info(
            subsystem, Client, NodeName, ServiceName, NameSpace, Provider, Hints, Result, Irp
        )

    return _enter(
        "WskGetAddressInfo",
        Irp,
        run,
        check=lambda: argcheck.first_refusal(
            argcheck.name_status(NodeName),
            argcheck.name_status(ServiceName),
            argcheck.ulong_status(NameSpace),
            argcheck.hints_status(Hints),
        ),
    )


def _WskFreeAddressInfo(Client: Any, AddrInfo: Any) -> None:
    names.check_passive("WskFreeAddressInfo")
    if isinstance(Client, WskClient):
        names.free_address_info(Client, AddrInfo)


def _WskGetNameInfo(
    Client: Any,
    SockAddr: Any,
    SockAddrLength: int,
    NodeName: Any,
    ServiceName: Any,
    Flags: int,
    OwningProcess: Any,
    OwningThread: Any,
    Irp: IRP,
) -> int:
    names.check_passive("WskGetNameInfo")

    def run() -> int:
        if not isinstance(Client, WskClient):
            return _completed(Irp, NTSTATUS.STATUS_INVALID_HANDLE)
        return names.get_name_info(subsystem, SockAddr, NodeName, ServiceName, Flags, Irp)

    return _enter(
        "WskGetNameInfo",
        Irp,
        run,
        check=lambda: argcheck.first_refusal(
            argcheck.address_status(SockAddr),
            argcheck.ulong_status(SockAddrLength, Flags),
            argcheck.name_status(NodeName),
            argcheck.name_status(ServiceName),
        ),
    )


#: The one WSK subsystem of this process (made last: its tables name the functions above).
subsystem: Final = WskSubsystem()
