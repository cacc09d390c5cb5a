"""The functions of the socket dispatch tables: one thin entry per WSK socket call.

What it does: every entry of WSK_PROVIDER_BASIC_DISPATCH, _CONNECTION_, _LISTEN_,
_STREAM_ and _DATAGRAM_DISPATCH (WskBind, WskConnect, WskSend, WskControlSocket,
WskCloseSocket, ...) is a function here that names its argument check
(:mod:`pywsk.provider.arguments`) and hands the call to :func:`~pywsk.provider.calls._socket_call`,
which runs the socket's method on the calling thread under its lock.  WskConnectEx with
data, and WskSocketConnect (in :mod:`pywsk.provider.client`), connect on an internal IRP
first (:func:`_connect_step`).

What it refuses: what each call's argument check refuses (the IRP completed with its
status); WskControlSocket without an IRP, or WskRelease, on a socket that is closed or not
ours (STATUS_INVALID_HANDLE, STATUS_INVALID_PARAMETER), and without an IRP a request whose
page requires one (STATUS_REQUEST_NOT_ACCEPTED); WskSendEx with control information
(STATUS_NOT_SUPPORTED through the socket's ``unsupported``).

What always holds: no entry does socket work itself - the socket's method does, under
its lock; a refused call changes nothing on the socket.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from ..nt import hooks
from ..nt.irp import begin_request
from ..nt.irql import DISPATCH_LEVEL, require_irql_at_most
from ..nt.status import NTSTATUS
from . import arguments as argcheck
from .base import ProviderSocket, needs_irp
from .calls import (
    ENGINE,
    _completed,
    _enter,
    _no_irp_call,
    _socket_call,
    _socket_is_live,
    _socket_precheck,
)
from .connection import ConnectionSocket
from .datagram import DatagramSocket
from .stream import StreamSocket

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..nt.irp import IRP
    from ..wsk.structs import PSIZE_T, SOCKADDR, WSK_BUF
    from .calls import Check


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
        "WskSend",
        Socket,
        Irp,
        "send",
        Buffer,
        Flags,
        Irp,
        check=_partial(_data_check, Buffer, Flags),
    )


def _WskReceive(Socket: Any, Buffer: WSK_BUF, Flags: int, Irp: IRP) -> int:
    return _socket_call(
        "WskReceive",
        Socket,
        Irp,
        "receive",
        Buffer,
        Flags,
        Irp,
        check=_partial(_data_check, Buffer, Flags),
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


# The data calls' argument check, bound with a partial where it is made (no Python frame
# of its own: these run on every WskSend and WskReceive).
_partial = functools.partial
_data_check = argcheck.buffer_flags_status


def _buffer_check(Buffer: Any, Flags: Any, required: bool = True) -> Check:
    return _partial(_data_check, Buffer, Flags, required)


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
        functools.partial(ENGINE.locked, Socket.lock, run),
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
        functools.partial(ENGINE.locked, Socket.lock, run),
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
    result: int = ENGINE.locked(
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
                ENGINE.locked(sock.lock, then)
            else:
                ENGINE.locked(sock.lock, fail, final)
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
