"""The driver-style WSK client runtime: calls on IRPs, buffers in pool, a tracer.

What it does: :class:`Client` registers with WSK, captures the provider NPI, and issues
WSK calls the way a kernel driver does - an IRP from IoAllocateIrp, a completion routine
(invoked on success, error and cancel) that returns STATUS_MORE_PROCESSING_REQUIRED,
buffers in non-paged pool described by MDLs, freed with the IRP - each call a
:class:`~pywsk.client.call.Call`.  It registers a WSK_CLIENT_CONNECTION_DISPATCH whose
WskDisconnectEvent fills the socket's :class:`~pywsk.client.ends.Context`, keeps what it
learned about how each connection ended (:meth:`Client.ends`, in the vocabulary of
:mod:`pywsk.core.ending`), and tells its :class:`~pywsk.trace.Tracer` every call,
completion and event callback.  The ``pywsk`` commands and :mod:`pywsk.testing.driver` are
both built on it.

What it refuses: waits without a bound - every wait takes a timeout.  The connection helpers
(:meth:`Client.connect`, :meth:`Client.listen`, ...) raise :class:`ClientError`, with the
status, when a call they depend on fails.

What always holds: a socket the client was handed (WskSocket, WskSocketConnect, WskAccept,
:meth:`Client.adopt`) is in :attr:`Client.sockets` until its WskCloseSocket completed;
:meth:`Client.close` closes every socket still open (bounded), releases the NPI and
deregisters - and does not deregister, but reports it, when a socket could not be closed in
time (WskDeregister would wait for it forever).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from ..core.ending import Ending
from ..nt import (
    STATUS_CONNECTION_RESET,
    STATUS_FILE_FORCED_CLOSED,
    STATUS_SUCCESS,
    ExAllocatePoolWithTag,
    ExFreePoolWithTag,
    IoAllocateIrp,
    IoAllocateMdl,
    IoFreeMdl,
    IoSetCompletionRoutine,
    MmBuildMdlForNonPagedPool,
    NonPagedPoolNx,
)
from ..trace import Tracer, short_status
from ..wsk import (
    ADDRINFOEXW,
    AF_INET,
    AF_INET6,
    IPPROTO_TCP,
    MAKE_WSK_VERSION,
    NPI_WSK_INTERFACE_ID,
    NS_ALL,
    PPVOID,
    SO_WSK_EVENT_CALLBACK,
    SOCK_STREAM,
    SOCKADDR_STORAGE,
    SOL_SOCKET,
    UNICODE_STRING,
    WSK_BUF,
    WSK_CLIENT_CONNECTION_DISPATCH,
    WSK_CLIENT_DISPATCH,
    WSK_CLIENT_NPI,
    WSK_EVENT_CALLBACK_CONTROL,
    WSK_FLAG_ABORTIVE,
    WSK_FLAG_CONNECTION_SOCKET,
    WSK_FLAG_LISTEN_SOCKET,
    WSK_INFINITE_WAIT,
    WSK_PROVIDER_NPI,
    WSK_REGISTRATION,
    WSK_SOCKET,
    RtlInitUnicodeString,
    WskCaptureProviderNPI,
    WskDeregister,
    WskRegister,
    WskReleaseProviderNPI,
    WskSetOption,
    sockaddr_from_tuple,
)
from .call import Call
from .ends import Context, Ends
from .interrupt import uninterrupted
from .words import describe_address, event_names, explain, flag_names, preview

__all__ = ["Buffer", "Client", "ClientError", "allocate_buffer"]

_TAG = b"pwsk"

#: Pool, WSK_BUF over all of it, and the function that frees the pool and its MDL.
Buffer = tuple[Any, WSK_BUF, Callable[[], None]]


class ClientError(RuntimeError):
    """A WSK call the client depends on failed (connect refused, bind in use, ...)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def allocate_buffer(data: bytes | int, tag: bytes = _TAG) -> Buffer:
    """Non-paged pool holding ``data`` (or ``n`` zero bytes), an MDL built for it, and a
    WSK_BUF over all of it; the third item frees the MDL and the pool (once)."""
    size = data if isinstance(data, int) else len(data)
    pool = ExAllocatePoolWithTag(NonPagedPoolNx, max(size, 1), tag)
    if pool is None:
        raise ClientError("ExAllocatePoolWithTag failed")
    if not isinstance(data, int):
        pool[:size] = data
    mdl = IoAllocateMdl(pool, max(size, 1), False, False, None)
    if mdl is None:
        ExFreePoolWithTag(pool, tag)
        raise ClientError("IoAllocateMdl failed")
    MmBuildMdlForNonPagedPool(mdl)
    freed = False

    def free() -> None:
        nonlocal freed
        if not freed:
            freed = True
            IoFreeMdl(mdl)
            ExFreePoolWithTag(pool, tag)

    return pool, WSK_BUF(mdl, 0, size), free


class Client:
    """A registered WSK client whose calls, completions and event callbacks are traced."""

    def __init__(self, tracer: Tracer | None = None, *, show_data: bool = True) -> None:
        self.tracer = tracer if tracer is not None else Tracer()
        #: Labels show short payloads (``WskSend(b'hi')``); otherwise only their length.
        self.show_data = show_data
        self.registration = WSK_REGISTRATION()
        self.npi = WSK_CLIENT_NPI(None, WSK_CLIENT_DISPATCH(MAKE_WSK_VERSION(1, 0), 0, None))
        status = WskRegister(self.npi, self.registration)
        if status != STATUS_SUCCESS:
            raise ClientError(f"WskRegister failed: {short_status(status)}", status)
        self.provider = WSK_PROVIDER_NPI()
        status = WskCaptureProviderNPI(self.registration, WSK_INFINITE_WAIT, self.provider)
        if status != STATUS_SUCCESS:
            WskDeregister(self.registration)
            raise ClientError(f"WskCaptureProviderNPI failed: {short_status(status)}", status)
        self.sockets: list[WSK_SOCKET] = []
        self._lock = threading.Lock()
        self._before_close: dict[WSK_SOCKET, list[Callable[[], None]]] = {}
        self._ends: weakref.WeakKeyDictionary[WSK_SOCKET, Ends] = weakref.WeakKeyDictionary()
        #: The WSK_CLIENT_CONNECTION_DISPATCH for connection sockets with a :class:`Context`.
        self.connection_dispatch = WSK_CLIENT_CONNECTION_DISPATCH(
            WskDisconnectEvent=self._disconnect_event
        )
        self._closed = False

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- what the client learned ------------------------------------------------------------
    def ends(self, sock: WSK_SOCKET) -> Ends:
        """How ``sock``'s connection ended, as far as this client saw (kept while the socket
        object lives)."""
        with self._lock:
            ends = self._ends.get(sock)
            if ends is None:
                ends = self._ends[sock] = Ends()
            return ends

    def adopt(self, sock: WSK_SOCKET) -> None:
        """A socket handed to us (WskAccept, WskAcceptEvent): closed by :meth:`close`."""
        with self._lock:
            if sock not in self.sockets:
                self.sockets.append(sock)

    @staticmethod
    def tcp_state(sock: WSK_SOCKET) -> int | None:
        """The Linux TCP state (``tcpi_state``) under ``sock``, for observation only; None
        when there is none to read (closed, or not a pywsk socket).

        WSK has no call for it (Windows offers SIO_TCP_INFO to user mode only), so this is
        the one place outside the provider that looks under a WSK socket; it never changes
        anything."""
        kernel = getattr(sock, "sock", None)
        if not isinstance(kernel, socket.socket):
            return None
        try:
            if kernel.fileno() < 0:
                return None
            info = kernel.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)
        except OSError:
            return None
        return info[0] if info else None

    def note(self, sock: WSK_SOCKET | None, text: str) -> None:
        """Tell the tracer a remark of the client's own."""
        self.tracer.note(sock, text, time.time())

    # --- issuing calls -------------------------------------------------------------------------
    def issue(
        self,
        name: str,
        label: str | None,
        function: Callable[..., int],
        *args: Any,
        record: bool = True,
        receive_pool: Any = None,
        resources: tuple[Callable[[], None], ...] = (),
        group: str | None = None,
        keep: bool = False,
        on_complete: Callable[[Call], None] | None = None,
    ) -> Call:
        """``function(*args, Irp)`` on a fresh IRP; returns once the call returned."""
        sock = args[0] if args and isinstance(args[0], WSK_SOCKET) else None
        call = Call(
            name,
            client=self,
            label=label,
            socket=sock,
            record=record,
            group=group,
            receive_pool=receive_pool,
            keep=keep,
        )
        for free in resources:
            call.add_resource(free)
        if on_complete is not None:
            call.on_complete(on_complete)
        irp = IoAllocateIrp(1, False)
        if irp is None:
            for free in resources:
                free()
            raise ClientError(f"{name}: IoAllocateIrp failed")
        call.irp = irp
        IoSetCompletionRoutine(irp, call.routine, None, True, True, True)
        call.issued_at = time.time()
        call.started_at = time.monotonic()
        with uninterrupted():
            call._returned(function(*args, irp))
        return call

    def buffer(self, data: bytes | int) -> Buffer:
        """A buffer in non-paged pool (:func:`allocate_buffer`)."""
        return allocate_buffer(data)

    def _completed(self, call: Call) -> None:
        """From the completion routine: what the completion says about the connection."""
        sock, status, at = call.socket, call.status, call.completed_at or time.time()
        info = call.information
        if sock is not None and call.name == "WskDisconnect":
            ends = self.ends(sock)
            if status == STATUS_SUCCESS:
                ends.fin_acknowledged(at)
            elif (
                status == STATUS_FILE_FORCED_CLOSED
                and not (ends.ours is not None and ends.ours.how.sent_rst)
                and ends.peer is Ending.PEER_FIN
            ):
                # Calls act at once on the caller's thread: a disconnect can meet the reset
                # that followed the peer's FIN before WskDisconnectEvent reports it.  After
                # the peer's FIN, only an RST makes the connection unusable.
                ends.learn_peer(Ending.PEER_RST, at)
        elif sock is not None and call.name == "WskReceive":
            if status == STATUS_SUCCESS and info == 0:
                self.ends(sock).learn_peer(Ending.PEER_FIN, at)
            elif status == STATUS_CONNECTION_RESET:
                self.ends(sock).learn_peer(Ending.PEER_RST, at)
        self.tracer.completed(call)

    # --- client-level calls -------------------------------------------------------------------
    def resolve(self, host: str, port: int, timeout: float) -> list[tuple[Any, ...]]:
        """WskGetAddressInfo for ``host``: the TCP addresses, IPv4 first; [] if none."""
        dispatch = self.provider.Dispatch
        assert dispatch is not None
        assert dispatch.WskGetAddressInfo is not None
        node, service = UNICODE_STRING(), UNICODE_STRING()
        RtlInitUnicodeString(node, host)
        RtlInitUnicodeString(service, str(port))
        hints = ADDRINFOEXW(ai_socktype=SOCK_STREAM, ai_protocol=IPPROTO_TCP)
        result: PPVOID[ADDRINFOEXW] = PPVOID()
        call = self.issue(
            "WskGetAddressInfo",
            f"WskGetAddressInfo({host!r}, {str(port)!r})",
            dispatch.WskGetAddressInfo,
            self.provider.Client,
            node,
            service,
            NS_ALL,
            None,
            hints,
            result,
            None,
            None,
        )
        if not call.completed_within(timeout):
            call.cancel()
            call.completed_within(1.0)
            raise ClientError(f"cannot resolve {host!r}: no answer within {timeout:g} s")
        if call.status != STATUS_SUCCESS:
            raise ClientError(f"cannot resolve {host!r}: {explain(call.status)}", call.status)
        found: list[tuple[Any, ...]] = []
        element = result.value
        while element is not None:
            if element.ai_addr is not None and element.ai_family in (AF_INET, AF_INET6):
                address = element.ai_addr.to_tuple()
                if address not in found:
                    found.append(address)
            element = element.ai_next
        if result.value is not None and dispatch.WskFreeAddressInfo is not None:
            dispatch.WskFreeAddressInfo(self.provider.Client, result.value)
        found.sort(key=lambda a: ":" in str(a[0]))
        return found

    def socket(
        self,
        family: int,
        flags: int = WSK_FLAG_CONNECTION_SOCKET,
        context: Any = None,
        dispatch: Any = None,
        label: str | None = None,
    ) -> WSK_SOCKET:
        """WskSocket (completes inline in pywsk; waited for with a bound anyway)."""
        call = self.socket_call(family, flags, context, dispatch, label=label)
        call.completed_within(10.0)
        if call.status != STATUS_SUCCESS or not isinstance(call.information, WSK_SOCKET):
            raise ClientError(f"WskSocket failed: {short_status(call.status)}", call.status)
        self.adopt(call.information)
        return call.information

    def socket_call(
        self,
        family: int,
        flags: int = WSK_FLAG_CONNECTION_SOCKET,
        context: Any = None,
        dispatch: Any = None,
        *,
        label: str | None = None,
        keep: bool = False,
    ) -> Call:
        """WskSocket of a TCP socket (does not wait; the caller adopts the socket)."""
        provider = self.provider.Dispatch
        assert provider is not None
        return self.issue(
            "WskSocket",
            label or "WskSocket",
            provider.WskSocket,
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
            keep=keep,
        )

    def socket_connect_call(
        self,
        remote: tuple[Any, ...],
        local: tuple[Any, ...],
        context: Any = None,
        dispatch: Any = None,
        *,
        keep: bool = False,
    ) -> Call:
        """WskSocketConnect from ``local`` to ``remote`` (does not wait; the caller adopts
        the socket)."""
        provider = self.provider.Dispatch
        assert provider is not None
        return self.issue(
            "WskSocketConnect",
            f"WskSocketConnect({describe_address(local)} -> {describe_address(remote)})",
            provider.WskSocketConnect,
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
            keep=keep,
        )

    def connect(
        self,
        remote: tuple[Any, ...],
        *,
        timeout: float,
        context: Context | None = None,
        events: int = 0,
    ) -> WSK_SOCKET:
        """WskSocket, WskBind (the wildcard address, port 0), WskConnect (cancelled after
        ``timeout``), then SO_WSK_EVENT_CALLBACK with ``events``; raises ClientError."""
        family = AF_INET6 if ":" in str(remote[0]) else AF_INET
        sock = self.socket(
            family,
            WSK_FLAG_CONNECTION_SOCKET,
            context,
            self.connection_dispatch,
            label="WskSocket(WSK_FLAG_CONNECTION_SOCKET)",
        )
        if context is not None:
            context.socket = sock
        dispatch = sock.Dispatch
        local = ("::", 0) if family == AF_INET6 else ("0.0.0.0", 0)
        bind = self.issue(
            "WskBind",
            f"WskBind({describe_address(local)})",
            dispatch.WskBind,
            sock,
            sockaddr_from_tuple(local),
            0,
        )
        bind.completed_within(timeout)
        if bind.status != STATUS_SUCCESS:
            self.close_socket(sock)
            raise ClientError(
                f"WskBind({describe_address(local)}) failed: {explain(bind.status)}", bind.status
            )
        call = self.issue(
            "WskConnect",
            f"WskConnect({describe_address(remote)})",
            dispatch.WskConnect,
            sock,
            sockaddr_from_tuple(remote),
            0,
        )
        if not call.completed_within(timeout):
            call.cancel()
            call.completed_within(5.0)
            self.close_socket(sock)
            raise ClientError(
                f"cannot connect to {describe_address(remote)}: no answer within {timeout:g} s"
                f" (WskConnect cancelled: {short_status(call.status)})",
                call.status,
            )
        if call.status != STATUS_SUCCESS:
            self.close_socket(sock)
            raise ClientError(
                f"cannot connect to {describe_address(remote)}: {explain(call.status)}",
                call.status,
            )
        if events:
            self.set_events(sock, events)
        return sock

    def socket_connect(
        self,
        remote: tuple[Any, ...],
        *,
        timeout: float,
        context: Context | None = None,
        events: int = 0,
        local: tuple[Any, ...] | None = None,
    ) -> WSK_SOCKET:
        """WskSocketConnect (create, bind, connect in one call), then the events; its IRP
        cannot be cancelled, so a connect that never answers is left to the kernel."""
        family = AF_INET6 if ":" in str(remote[0]) else AF_INET
        if local is None:
            local = ("::", 0) if family == AF_INET6 else ("0.0.0.0", 0)
        call = self.socket_connect_call(remote, local, context, self.connection_dispatch)
        if not call.completed_within(timeout):
            raise ClientError(
                f"cannot connect to {describe_address(remote)}: no answer within {timeout:g} s"
            )
        if call.status != STATUS_SUCCESS or not isinstance(call.information, WSK_SOCKET):
            raise ClientError(
                f"cannot connect to {describe_address(remote)}: {explain(call.status)}",
                call.status,
            )
        sock = call.information
        self.adopt(sock)
        if context is not None:
            context.socket = sock
        if events:
            self.set_events(sock, events)
        return sock

    def listen(
        self,
        address: tuple[Any, ...],
        *,
        context: Any = None,
        dispatch: Any = None,
        events: int = 0,
    ) -> WSK_SOCKET:
        """WskSocket(WSK_FLAG_LISTEN_SOCKET), WskBind (which binds *and* listens), then
        SO_WSK_EVENT_CALLBACK with ``events``; raises ClientError."""
        family = AF_INET6 if ":" in str(address[0]) else AF_INET
        sock = self.socket(
            family,
            WSK_FLAG_LISTEN_SOCKET,
            context,
            dispatch,
            label="WskSocket(WSK_FLAG_LISTEN_SOCKET)",
        )
        bind = self.issue(
            "WskBind",
            f"WskBind({describe_address(address)})",
            sock.Dispatch.WskBind,
            sock,
            sockaddr_from_tuple(address),
            0,
        )
        bind.completed_within(10.0)
        if bind.status != STATUS_SUCCESS:
            self.close_socket(sock)
            raise ClientError(
                f"cannot listen on {describe_address(address)}: {explain(bind.status)}",
                bind.status,
            )
        if events:
            try:
                self.set_events(sock, events)
            except ClientError:
                self.close_socket(sock)
                raise
        return sock

    def accept(
        self,
        listener: WSK_SOCKET,
        *,
        context: Any = None,
        dispatch: Any = None,
        local: Any = None,
        remote: Any = None,
        flags: int = 0,
        keep: bool = False,
    ) -> Call:
        """WskAccept (does not wait); ``local`` / ``remote`` are optional SOCKADDR
        out-parameters.  The socket it brings joins :attr:`sockets` before anyone waiting for
        the call wakes."""
        return self.issue(
            "WskAccept",
            "WskAccept",
            listener.Dispatch.WskAccept,
            listener,
            flags,
            context,
            dispatch,
            local,
            remote,
            on_complete=self.adopt_accepted,
            keep=keep,
        )

    def adopt_accepted(self, call: Call) -> None:
        """Completion hook of a WskAccept: adopt the socket it brought."""
        if call.status == STATUS_SUCCESS and isinstance(call.information, WSK_SOCKET):
            self.adopt(call.information)

    def set_events(self, sock: WSK_SOCKET, mask: int) -> int:
        """SO_WSK_EVENT_CALLBACK (no IRP); returns the status (traced); ClientError if it
        failed."""
        control = WSK_EVENT_CALLBACK_CONTROL(NPI_WSK_INTERFACE_ID, mask)
        call = Call("WskControlSocket", client=self, socket=sock)
        call.label = f"WskControlSocket(SO_WSK_EVENT_CALLBACK, {event_names(mask)})"
        status: int = sock.Dispatch.WskControlSocket(
            sock, WskSetOption, SO_WSK_EVENT_CALLBACK, SOL_SOCKET, 0, control, 0, None, None, None
        )
        call.returned = status
        call.returned_at = call.issued_at  # no IRP: the status is the whole answer
        self.tracer.returned(call)
        if status != STATUS_SUCCESS:
            raise ClientError(
                f"enabling {event_names(mask)} failed: {short_status(status)}", status
            )
        return status

    # --- connection calls ----------------------------------------------------------------------
    def send(
        self,
        sock: WSK_SOCKET,
        data: bytes,
        flags: int = 0,
        *,
        label: str | None = None,
        record: bool = True,
        group: str | None = None,
        keep: bool = False,
    ) -> Call:
        """WskSend of ``data`` (copied into pool, freed with the IRP)."""
        _pool, buf, free = self.buffer(data)
        return self.issue(
            "WskSend",
            label or f"WskSend({preview(data, self.show_data)})",
            sock.Dispatch.WskSend,
            sock,
            buf,
            flags,
            record=record,
            resources=(free,),
            group=group,
            keep=keep,
        )

    def receive(
        self,
        sock: WSK_SOCKET,
        size: int,
        flags: int = 0,
        *,
        record: bool = True,
        group: str | None = None,
        keep: bool = False,
    ) -> Call:
        """WskReceive of at most ``size`` bytes; what arrived is :attr:`Call.data`."""
        pool, buf, free = self.buffer(size)
        return self.issue(
            "WskReceive",
            f"WskReceive({size} B)",
            sock.Dispatch.WskReceive,
            sock,
            buf,
            flags,
            record=record,
            receive_pool=pool,
            resources=(free,),
            group=group,
            keep=keep,
        )

    def disconnect(
        self,
        sock: WSK_SOCKET,
        final: bytes | None = None,
        *,
        abortive: bool = False,
        label: str | None = None,
        keep: bool = False,
    ) -> Call:
        """WskDisconnect: graceful (our FIN, after ``final``) or abortive (our RST)."""
        at = time.time()
        if abortive and final is None:
            self.ends(sock).learn_ours(Ending.OUR_RST, at)
        elif not abortive:
            self.ends(sock).learn_ours(Ending.OUR_FIN, at)
        resources: tuple[Callable[[], None], ...] = ()
        buf: WSK_BUF | None = None
        if final is not None:
            _pool, buf, free = self.buffer(final)
            resources = (free,)
        text = "NULL" if final is None else f"Buffer={preview(final, self.show_data)}"
        flag_text = "WSK_FLAG_ABORTIVE" if abortive else "0"
        return self.issue(
            "WskDisconnect",
            label or f"WskDisconnect({text}, {flag_text})",
            sock.Dispatch.WskDisconnect,
            sock,
            buf,
            WSK_FLAG_ABORTIVE if abortive else 0,
            resources=resources,
            keep=keep,
        )

    def close_socket(
        self, sock: WSK_SOCKET, timeout: float = 10.0, label: str | None = None
    ) -> Call:
        """WskCloseSocket; the socket leaves :attr:`sockets` once its close completed.

        What was registered with :meth:`before_close` for the socket runs first."""
        for hook in self._before_close.pop(sock, ()):
            hook()
        call = self.issue(
            "WskCloseSocket", label or "WskCloseSocket", sock.Dispatch.WskCloseSocket, sock
        )
        if call.completed_within(timeout):
            with self._lock:
                if sock in self.sockets:
                    self.sockets.remove(sock)
        return call

    def before_close(self, sock: WSK_SOCKET, hook: Callable[[], None]) -> None:
        """Run ``hook()`` before this client closes ``sock`` (a rundown: stop issuing)."""
        self._before_close.setdefault(sock, []).append(hook)

    def _address(self, sock: WSK_SOCKET, name: str) -> tuple[Any, ...] | None:
        out = SOCKADDR_STORAGE()
        call = self.issue(name, name, getattr(sock.Dispatch, name), sock, out, record=False)
        if not call.completed_within(5.0) or call.status != STATUS_SUCCESS:
            return None
        with contextlib.suppress(ValueError):
            return out.to_tuple()
        return None

    def remote_address(self, sock: WSK_SOCKET) -> tuple[Any, ...] | None:
        """WskGetRemoteAddress (not traced); None if it failed."""
        return self._address(sock, "WskGetRemoteAddress")

    def local_address(self, sock: WSK_SOCKET) -> tuple[Any, ...] | None:
        """WskGetLocalAddress (not traced); None if it failed."""
        return self._address(sock, "WskGetLocalAddress")

    # --- event callbacks -------------------------------------------------------------------------
    def _disconnect_event(self, context: Any, flags: int) -> int:
        """WskDisconnectEvent: the peer's FIN (flags 0) or RST (WSK_FLAG_ABORTIVE)."""
        at = time.time()
        abortive = bool(flags & WSK_FLAG_ABORTIVE)
        sock = context.socket if isinstance(context, Context) else None
        self.tracer.callback(
            sock,
            "WskDisconnectEvent",
            flags,
            f"WskDisconnectEvent(Flags={flag_names(flags)}): "
            + ("the peer reset the connection" if abortive else "the peer's FIN"),
            at,
        )
        if isinstance(context, Context):
            context.disconnect_events.append((at, flags))
            context.disconnect_seen.set()
            if sock is not None:
                self.ends(sock).learn_peer(Ending.PEER_RST if abortive else Ending.PEER_FIN, at)
            if context.on_disconnect is not None:
                context.on_disconnect(context, flags)
        return STATUS_SUCCESS

    # --- teardown ----------------------------------------------------------------------------------
    def close(self, timeout: float = 10.0) -> list[str]:
        """Close every socket still open, release the NPI, deregister; returns problems."""
        if self._closed:
            return []
        self._closed = True
        problems: list[str] = []
        for sock in list(self.sockets):
            call = self.close_socket(sock, timeout)
            if not call.done:
                problems.append("a WskCloseSocket did not complete in time")
        WskReleaseProviderNPI(self.registration)
        if self.sockets:
            # WskDeregister would wait for them forever; leave the registration to process exit.
            problems.append(f"{len(self.sockets)} socket(s) still open; not deregistered")
            return problems
        WskDeregister(self.registration)
        return problems
