"""A small WSK client for tests, examples and the demo: real IRPs, recorded completions.

What it does: :class:`WskTestClient` registers with WSK, captures the provider NPI, and
issues WSK calls the way a driver does - an IRP from IoAllocateIrp, a completion routine
set with IoSetCompletionRoutine(..., TRUE, TRUE, TRUE) that returns
STATUS_MORE_PROCESSING_REQUIRED - while recording, for each call, what the dispatch
function returned and when and how the IRP completed (:class:`Request`).  Tests then
assert on both, and wait for completions with a bound.

What it refuses: waits without a bound - every wait takes a timeout and raises
``TimeoutError`` when it expires.

What always holds: each IRP's completion routine ran at most once (the routine asserts
it), and :meth:`WskTestClient.close` deregisters only after every socket it opened is
closed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from ..nt import (
    IRP,
    STATUS_MORE_PROCESSING_REQUIRED,
    STATUS_PENDING,
    STATUS_SUCCESS,
    ExAllocatePoolWithTag,
    IoAllocateIrp,
    IoAllocateMdl,
    IoFreeIrp,
    IoSetCompletionRoutine,
    KeGetCurrentIrql,
    MmBuildMdlForNonPagedPool,
    NonPagedPoolNx,
    status_name,
)
from ..nt.dpc import KDPC, KeInitializeDpc, KeInsertQueueDpc
from ..wsk import (
    IPPROTO_TCP,
    MAKE_WSK_VERSION,
    NPI_WSK_INTERFACE_ID,
    SO_WSK_EVENT_CALLBACK,
    SOCK_STREAM,
    SOCKADDR_STORAGE,
    SOL_SOCKET,
    WSK_BUF,
    WSK_CLIENT_DISPATCH,
    WSK_CLIENT_NPI,
    WSK_EVENT_CALLBACK_CONTROL,
    WSK_FLAG_CONNECTION_SOCKET,
    WSK_INFINITE_WAIT,
    WSK_PROVIDER_CONNECTION_DISPATCH,
    WSK_PROVIDER_NPI,
    WSK_REGISTRATION,
    WSK_SOCKET,
    WskCaptureProviderNPI,
    WskDeregister,
    WskRegister,
    WskReleaseProviderNPI,
    WskSetOption,
    sockaddr_from_tuple,
)

__all__ = ["Request", "WskTestClient", "make_buffer", "run_in_dpc"]


def run_in_dpc(body: Callable[[], None], timeout: float = 10.0) -> None:
    """Run ``body`` in a DPC - on the provider thread, at DISPATCH_LEVEL, where WSK calls act
    inline - and wait for it (at most ``timeout`` seconds: then AssertionError).  An
    exception ``body`` raises is raised here."""
    ran = threading.Event()
    failed: list[BaseException] = []

    def routine(_dpc: KDPC, _context: Any, _one: Any, _two: Any) -> None:
        try:
            body()
        except BaseException as exc:  # raised again in the caller's thread
            failed.append(exc)
        finally:
            ran.set()

    dpc = KDPC()
    KeInitializeDpc(dpc, routine, None)
    assert KeInsertQueueDpc(dpc, None, None)
    assert ran.wait(timeout), "the DPC did not run"
    if failed:
        raise failed[0]


@dataclass
class Request:
    """One WSK call on one IRP: what the call returned, and the IRP's completion."""

    name: str
    irp: IRP
    returned: int | None = None
    status: int | None = None
    information: Any = None
    pending_returned: bool | None = None
    completed_at: float | None = None
    #: Wall-clock time of the completion (comparable with packet-capture timestamps).
    completed_wall: float | None = None
    started_at: float = field(default_factory=time.monotonic)
    completion_thread: int | None = None
    completion_irql: int | None = None
    completions: int = 0
    _event: threading.Event = field(default_factory=threading.Event)

    @property
    def done(self) -> bool:
        """True once the completion routine ran."""
        return self._event.is_set()

    def wait(self, timeout: float) -> Request:
        """Wait (at most ``timeout`` seconds) for the completion routine; TimeoutError if not."""
        if not self._event.wait(timeout):
            raise TimeoutError(f"{self.name}: IRP not completed within {timeout} s")
        return self

    def routine(self, _device: Any, irp: IRP, _context: Any) -> int:
        self.completions += 1
        assert self.completions == 1, f"{self.name}: completion routine ran twice"
        self.status = irp.IoStatus.Status
        self.information = irp.IoStatus.Information
        self.pending_returned = irp.PendingReturned
        self.completed_at = time.monotonic()
        self.completed_wall = time.time()
        self.completion_thread = threading.get_ident()
        self.completion_irql = KeGetCurrentIrql()
        self._event.set()
        return STATUS_MORE_PROCESSING_REQUIRED

    def __repr__(self) -> str:
        returned = status_name(self.returned) if self.returned is not None else "?"
        final = status_name(self.status) if self.status is not None else "pending"
        return f"<{self.name}: returned {returned}, completed {final} info={self.information!r}>"


def make_buffer(data: bytes | int) -> tuple[Any, WSK_BUF]:
    """Non-paged pool holding ``data`` (or ``n`` zero bytes) and a WSK_BUF over all of it."""
    size = data if isinstance(data, int) else len(data)
    pool = ExAllocatePoolWithTag(NonPagedPoolNx, max(size, 1), b"wskt")
    assert pool is not None
    if not isinstance(data, int):
        pool[:size] = data
    mdl = IoAllocateMdl(pool, max(size, 1), False, False, None)
    assert mdl is not None
    MmBuildMdlForNonPagedPool(mdl)
    return pool, WSK_BUF(mdl, 0, size)


class WskTestClient:
    """A registered WSK client with helpers that issue calls on fresh IRPs."""

    def __init__(self) -> None:
        self.registration = WSK_REGISTRATION()
        self.npi = WSK_CLIENT_NPI(None, WSK_CLIENT_DISPATCH(MAKE_WSK_VERSION(1, 0), 0, None))
        status = WskRegister(self.npi, self.registration)
        assert status == STATUS_SUCCESS, status_name(status)
        self.provider = WSK_PROVIDER_NPI()
        status = WskCaptureProviderNPI(self.registration, WSK_INFINITE_WAIT, self.provider)
        assert status == STATUS_SUCCESS, status_name(status)
        self.sockets: list[WSK_SOCKET] = []
        self.requests: list[Request] = []

    # --- issuing calls -----------------------------------------------------------------------
    def start(self, name: str, function: Any, *args: Any) -> Request:
        """Call ``function(*args, Irp)`` on a fresh IRP and record it (does not wait)."""
        irp = IoAllocateIrp(1, False)
        assert irp is not None
        request = Request(name, irp)
        IoSetCompletionRoutine(irp, request.routine, None, True, True, True)
        self.requests.append(request)
        request.returned = function(*args, irp)
        return request

    def call(self, name: str, function: Any, *args: Any, timeout: float = 10.0) -> Request:
        """Like :meth:`start`, then wait for the completion and free the IRP."""
        request = self.start(name, function, *args)
        if request.returned == STATUS_PENDING or not request.done:
            request.wait(timeout)
        IoFreeIrp(request.irp)
        return request

    @staticmethod
    def dispatch(sock: WSK_SOCKET) -> WSK_PROVIDER_CONNECTION_DISPATCH:
        return cast(WSK_PROVIDER_CONNECTION_DISPATCH, sock.Dispatch)

    # --- common sequences ----------------------------------------------------------------------
    def socket(
        self,
        family: int,
        flags: int = WSK_FLAG_CONNECTION_SOCKET,
        context: Any = None,
        dispatch: Any = None,
    ) -> Request:
        """WskSocket; a socket it makes is closed by :meth:`close`."""
        assert self.provider.Dispatch is not None
        request = self.call(
            "WskSocket",
            self.provider.Dispatch.WskSocket,
            self.provider.Client,
            family,
            SOCK_STREAM,
            IPPROTO_TCP,
            flags,
            context,
            dispatch,
            None,
            None,
            None,
        )
        if request.status == STATUS_SUCCESS:
            self.sockets.append(request.information)
        return request

    def connect(
        self,
        remote: tuple[Any, ...],
        local: tuple[Any, ...] | None = None,
        context: Any = None,
        dispatch: Any = None,
    ) -> WSK_SOCKET:
        """WskSocketConnect to ``remote`` (from ``local``, default the same host, port 0),
        with an optional socket context and WSK_CLIENT_CONNECTION_DISPATCH for events."""
        assert self.provider.Dispatch is not None
        local = local or ((remote[0], 0) if ":" not in remote[0] else ("::1", 0))
        request = self.call(
            "WskSocketConnect",
            self.provider.Dispatch.WskSocketConnect,
            self.provider.Client,
            SOCK_STREAM,
            IPPROTO_TCP,
            sockaddr_from_tuple(local),
            sockaddr_from_tuple(remote),
            0,
            context,
            dispatch,
            None,
            None,
            None,
        )
        assert request.status == STATUS_SUCCESS, request
        sock = request.information
        self.sockets.append(sock)
        return cast(WSK_SOCKET, sock)

    def send(self, sock: WSK_SOCKET, data: bytes, flags: int = 0) -> Request:
        _pool, buf = make_buffer(data)
        return self.start("WskSend", self.dispatch(sock).WskSend, sock, buf, flags)

    def receive(self, sock: WSK_SOCKET, size: int, flags: int = 0) -> tuple[Request, Any]:
        pool, buf = make_buffer(size)
        return self.start("WskReceive", self.dispatch(sock).WskReceive, sock, buf, flags), pool

    def receive_all(
        self, sock: WSK_SOCKET, timeout: float = 10.0, chunk: int = 65536
    ) -> tuple[bytes, Request]:
        """Receive until a 0-byte completion or a failure; returns the data and the last request."""
        data = b""
        deadline = time.monotonic() + timeout
        while True:
            request, pool = self.receive(sock, chunk)
            request.wait(max(0.0, deadline - time.monotonic()))
            if request.status != STATUS_SUCCESS or not request.information:
                return data, request
            data += bytes(pool[: request.information])

    def disconnect(self, sock: WSK_SOCKET, final: bytes | None = None, flags: int = 0) -> Request:
        buf = make_buffer(final)[1] if final is not None else None
        return self.start("WskDisconnect", self.dispatch(sock).WskDisconnect, sock, buf, flags)

    def close_socket(self, sock: WSK_SOCKET) -> Request:
        request = self.call("WskCloseSocket", self.dispatch(sock).WskCloseSocket, sock)
        if sock in self.sockets:
            self.sockets.remove(sock)
        return request

    def local_address(self, sock: WSK_SOCKET) -> tuple[Request, SOCKADDR_STORAGE]:
        out = SOCKADDR_STORAGE()
        return self.call(
            "WskGetLocalAddress", self.dispatch(sock).WskGetLocalAddress, sock, out
        ), out

    def remote_address(self, sock: WSK_SOCKET) -> tuple[Request, SOCKADDR_STORAGE]:
        out = SOCKADDR_STORAGE()
        return self.call(
            "WskGetRemoteAddress", self.dispatch(sock).WskGetRemoteAddress, sock, out
        ), out

    # --- teardown ------------------------------------------------------------------------------
    def free_requests(self) -> None:
        """Free the IRP of every completed request that is still allocated."""
        from ..nt import IrpState

        for request in self.requests:
            if request.done and request.irp.state is not IrpState.FREED:
                IoFreeIrp(request.irp)

    def close(self) -> None:
        """Close every socket still open, free completed requests' IRPs, deregister."""
        for sock in list(self.sockets):
            self.close_socket(sock)
        self.free_requests()
        WskReleaseProviderNPI(self.registration)
        WskDeregister(self.registration)

    def __enter__(self) -> WskTestClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def set_events(self, sock: WSK_SOCKET, mask: int, irp: bool = False) -> Request | int:
        """SO_WSK_EVENT_CALLBACK with ``mask``: the returned status (no IRP), or the request."""
        control = WSK_EVENT_CALLBACK_CONTROL(NPI_WSK_INTERFACE_ID, mask)
        dispatch = self.dispatch(sock)
        args = (sock, WskSetOption, SO_WSK_EVENT_CALLBACK, SOL_SOCKET, 0, control, 0, None, None)
        if irp:
            return self.start("WskControlSocket", dispatch.WskControlSocket, *args)
        status: int = dispatch.WskControlSocket(*args, None)
        return status

    # --- listening sockets -----------------------------------------------------------------------
    def listen(
        self,
        address: tuple[Any, ...] = ("127.0.0.1", 0),
        context: Any = None,
        dispatch: Any = None,
        options: tuple[tuple[int, int, int], ...] = (),
    ) -> WSK_SOCKET:
        """A listening socket on ``address``: WskSocket(WSK_FLAG_LISTEN_SOCKET), each
        ``(level, option, value)`` of ``options`` set with WskControlSocket, then WskBind,
        which makes it listen.  Closed by :meth:`close`."""
        from ..wsk import AF_INET, AF_INET6, WSK_FLAG_LISTEN_SOCKET

        family = AF_INET6 if ":" in str(address[0]) else AF_INET
        made = self.socket(family, WSK_FLAG_LISTEN_SOCKET, context, dispatch)
        assert made.status == STATUS_SUCCESS, made
        sock = cast(WSK_SOCKET, made.information)
        functions = sock.Dispatch
        for level, option, value in options:
            set_option = self.call(
                "WskControlSocket",
                functions.WskControlSocket,
                sock,
                WskSetOption,
                option,
                level,
                4,
                value,
                0,
                None,
                None,
            )
            assert set_option.status == STATUS_SUCCESS, set_option
        bound = self.call("WskBind", functions.WskBind, sock, sockaddr_from_tuple(address), 0)
        assert bound.status == STATUS_SUCCESS, bound
        return sock

    def accept(
        self,
        listener: WSK_SOCKET,
        context: Any = None,
        dispatch: Any = None,
        local: Any = None,
        remote: Any = None,
        flags: int = 0,
    ) -> Request:
        """WskAccept on ``listener`` (does not wait); ``local`` / ``remote`` are optional
        SOCKADDR out-parameters.  A socket it accepts is closed by :meth:`close`."""
        irp = IoAllocateIrp(1, False)
        assert irp is not None
        request = Request("WskAccept", irp)

        def routine(device: Any, done: IRP, context_: Any) -> int:
            if done.IoStatus.Status == STATUS_SUCCESS:
                self.sockets.append(done.IoStatus.Information)  # before the waiter wakes
            return request.routine(device, done, context_)

        IoSetCompletionRoutine(irp, routine, None, True, True, True)
        self.requests.append(request)
        request.returned = listener.Dispatch.WskAccept(
            listener, flags, context, dispatch, local, remote, irp
        )
        return request
