"""A small WSK client for tests, examples and the demo: the client runtime, assert-style.

What it does: :class:`WskTestClient` is :class:`pywsk.client.Client` - registration, the
provider NPI, WSK calls on fresh IRPs with a completion routine set with
IoSetCompletionRoutine(..., TRUE, TRUE, TRUE) that returns STATUS_MORE_PROCESSING_REQUIRED,
buffers in non-paged pool - with the helpers tests want: each call is a :class:`Request`
(the runtime's :class:`~pywsk.client.Call`: what the dispatch function returned, and when,
on which thread and at which IRQL the IRP completed), kept in :attr:`WskTestClient.requests`
with its IRP until the client closes, so a test can still inspect or cancel it.  A tracer
(:mod:`pywsk.trace`) given to the client sees every call.

What it refuses: waits without a bound - every wait takes a timeout and raises
``TimeoutError`` when it expires; a helper whose call fails raises AssertionError.

What always holds: each IRP's completion routine ran at most once (the routine asserts
it); :meth:`WskTestClient.close` closes every socket the client opened, frees every IRP,
MDL and pool block its calls used - and those :func:`make_buffer` handed out, once no test
client is open any more - then deregisters.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, cast

from ..client import Call, Client, allocate_buffer
from ..nt import STATUS_SUCCESS
from ..nt.dpc import KDPC, KeInitializeDpc, KeInsertQueueDpc
from ..trace import Tracer
from ..wsk import (
    NPI_WSK_INTERFACE_ID,
    SO_WSK_EVENT_CALLBACK,
    SOCKADDR_STORAGE,
    SOL_SOCKET,
    WSK_BUF,
    WSK_EVENT_CALLBACK_CONTROL,
    WSK_FLAG_CONNECTION_SOCKET,
    WSK_PROVIDER_CONNECTION_DISPATCH,
    WSK_SOCKET,
    WskSetOption,
)

__all__ = ["Request", "WskTestClient", "make_buffer", "run_in_dpc"]

#: One WSK call on one IRP (the runtime's :class:`~pywsk.client.Call`).
Request = Call


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


_loose_lock = threading.Lock()
_loose: list[Callable[[], None]] = []
_open_clients = 0


def make_buffer(data: bytes | int) -> tuple[Any, WSK_BUF]:
    """Non-paged pool holding ``data`` (or ``n`` zero bytes) and a WSK_BUF over all of it.

    The pool and its MDL are freed when the last open :class:`WskTestClient` closes (a
    buffer may be in use by any call until then)."""
    pool, buf, free = allocate_buffer(data, b"wskt")
    with _loose_lock:
        _loose.append(free)
    return pool, buf


def _free_loose_buffers() -> None:
    with _loose_lock:
        frees = list(_loose)
        _loose.clear()
    for free in frees:
        free()


class WskTestClient:
    """A registered WSK client (the runtime's :class:`~pywsk.client.Client`) with helpers
    that issue calls on fresh IRPs and assert that the set-up calls succeeded."""

    def __init__(self, tracer: Tracer | None = None) -> None:
        global _open_clients
        self.client = Client(tracer)
        self.registration = self.client.registration
        self.npi = self.client.npi
        self.provider = self.client.provider
        #: Sockets still open (the runtime's list: closed by :meth:`close`).
        self.sockets: list[WSK_SOCKET] = self.client.sockets
        self.requests: list[Request] = []
        self._closed = False
        with _loose_lock:
            _open_clients += 1

    # --- issuing calls -----------------------------------------------------------------------
    def start(self, name: str, function: Any, *args: Any, **options: Any) -> Request:
        """Call ``function(*args, Irp)`` on a fresh IRP and record it (does not wait).  The
        IRP (and the call's buffers) stay allocated until :meth:`close`."""
        request = self.client.issue(name, None, function, *args, keep=True, **options)
        self.requests.append(request)
        return request

    def call(self, name: str, function: Any, *args: Any, timeout: float = 10.0) -> Request:
        """Like :meth:`start`, then wait for the completion and free the IRP."""
        return self._settled(self.client.issue(name, None, function, *args, keep=True), timeout)

    @staticmethod
    def dispatch(sock: WSK_SOCKET) -> WSK_PROVIDER_CONNECTION_DISPATCH:
        return cast(WSK_PROVIDER_CONNECTION_DISPATCH, sock.Dispatch)

    # --- common sequences ----------------------------------------------------------------------
    def _kept(self, request: Request) -> Request:
        self.requests.append(request)
        return request

    def _settled(self, request: Request, timeout: float = 10.0) -> Request:
        """Wait for a set-up call, free its IRP, keep it in :attr:`requests`."""
        self._kept(request).wait(timeout)
        request.release()
        return request

    def socket(
        self,
        family: int,
        flags: int = WSK_FLAG_CONNECTION_SOCKET,
        context: Any = None,
        dispatch: Any = None,
    ) -> Request:
        """WskSocket; a socket it makes is closed by :meth:`close`."""
        request = self._settled(
            self.client.socket_call(family, flags, context, dispatch, keep=True)
        )
        if request.status == STATUS_SUCCESS:
            self.client.adopt(request.information)
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
        local = local or ((remote[0], 0) if ":" not in remote[0] else ("::1", 0))
        request = self._settled(
            self.client.socket_connect_call(remote, local, context, dispatch, keep=True)
        )
        assert request.status == STATUS_SUCCESS, request
        sock = cast(WSK_SOCKET, request.information)
        self.client.adopt(sock)
        return sock

    def send(self, sock: WSK_SOCKET, data: bytes, flags: int = 0) -> Request:
        return self._kept(self.client.send(sock, data, flags, keep=True))

    def receive(self, sock: WSK_SOCKET, size: int, flags: int = 0) -> tuple[Request, Any]:
        """WskReceive; returns the request and the pool it fills (valid until :meth:`close`;
        what arrived is also :attr:`Request.data`)."""
        request = self._kept(self.client.receive(sock, size, flags, keep=True))
        return request, request.receive_pool

    def receive_all(
        self, sock: WSK_SOCKET, timeout: float = 10.0, chunk: int = 65536
    ) -> tuple[bytes, Request]:
        """Receive until a 0-byte completion or a failure; returns the data and the last request."""
        parts: list[bytes] = []
        deadline = time.monotonic() + timeout
        while True:
            request, _pool = self.receive(sock, chunk)
            request.wait(max(0.0, deadline - time.monotonic()))
            if request.status != STATUS_SUCCESS or not request.information:
                return b"".join(parts), request
            parts.append(request.data)
            request.release()  # read: its pool is not needed any more

    def disconnect(self, sock: WSK_SOCKET, final: bytes | None = None, flags: int = 0) -> Request:
        """WskDisconnect with any ``flags`` (a test may pass ones WSK refuses)."""
        resources: tuple[Callable[[], None], ...] = ()
        buf = None
        if final is not None:
            _pool, buf, free = allocate_buffer(final, b"wskt")
            resources = (free,)
        return self.start(
            "WskDisconnect",
            self.dispatch(sock).WskDisconnect,
            sock,
            buf,
            flags,
            resources=resources,
        )

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
        """Free the IRP and buffers of every completed request that still has them."""
        for request in self.requests:
            if request.done:
                request.release()

    def close(self) -> None:
        """Close every socket still open, free completed requests' IRPs and buffers,
        deregister (and free :func:`make_buffer` buffers if no test client is left open)."""
        global _open_clients
        if self._closed:
            return
        self._closed = True
        for sock in list(self.sockets):
            self.close_socket(sock)
        self.free_requests()
        problems = self.client.close()
        with _loose_lock:
            _open_clients -= 1
            last = _open_clients == 0
        if last:
            _free_loose_buffers()
        assert not problems, problems

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
        for level, option, value in options:
            set_option = self.client.option_call(sock, level, option, value).wait(10.0)
            assert set_option.status == STATUS_SUCCESS, set_option
        bound = self.client.bind_call(sock, address).wait(10.0)
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
        SOCKADDR out-parameters.  A socket it accepts is closed by :meth:`close` (it is
        adopted before anyone waiting for the request wakes)."""
        accept = self.client.accept(
            listener,
            context=context,
            dispatch=dispatch,
            local=local,
            remote=remote,
            flags=flags,
            keep=True,
        )
        return self._kept(accept)
