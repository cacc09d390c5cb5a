"""A WSK client that writes down everything it does: the ``pywsk`` commands' driver.

What it does: :class:`Session` registers with WSK, captures the provider NPI, and issues
WSK calls the way a kernel driver does - an IRP from IoAllocateIrp, a completion routine
(invoked on success, error and cancel) that returns STATUS_MORE_PROCESSING_REQUIRED,
buffers in non-paged pool described by MDLs - and records into a
:class:`~pywsk.cli.timeline.Timeline` what each call returned, when its IRP completed and
with what, and every event callback (WskDisconnectEvent, WskAcceptEvent) the provider made.

Each call is a :class:`Call`.  Its IRP, MDL and pool are freed exactly once, by whichever
comes last: the call returning to its issuer, or the completion routine.  So a routine never
frees an IRP the provider may still read, and a pump that issues the next call from a
completion routine (:meth:`Call.settle_later`) never recurses through inline completions.

What it refuses: waits without a bound - every wait takes a timeout.

What always holds: :meth:`Session.close` closes every socket still open (bounded), releases
the NPI and deregisters; a socket that could not be closed in time is reported, not waited
for forever.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..nt import (
    IRP,
    STATUS_CONNECTION_RESET,
    STATUS_FILE_FORCED_CLOSED,
    STATUS_MORE_PROCESSING_REQUIRED,
    STATUS_SUCCESS,
    ExAllocatePoolWithTag,
    ExFreePoolWithTag,
    IoAllocateIrp,
    IoAllocateMdl,
    IoCancelIrp,
    IoFreeIrp,
    IoFreeMdl,
    IoSetCompletionRoutine,
    MmBuildMdlForNonPagedPool,
    NonPagedPoolNx,
)
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
from .timeline import Timeline, short_status

__all__ = [
    "Call",
    "Connection",
    "Session",
    "SessionError",
    "describe_address",
    "flag_names",
    "interrupt_between_calls",
    "kernel_socket",
]

_TAG = b"pwsk"
#: A call that takes this long to return to its caller says so in the timeline.
SLOW_CALL_MS = 5.0


class SessionError(RuntimeError):
    """A WSK call the command depends on failed (connect refused, bind in use, ...)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


_HINTS = {
    "STATUS_CONNECTION_REFUSED": "nothing is listening there",
    "STATUS_HOST_UNREACHABLE": "no route to that host",
    "STATUS_NETWORK_UNREACHABLE": "no route to that network",
    "STATUS_IO_TIMEOUT": "the connection attempt timed out",
    "STATUS_NOT_FOUND": "the name does not resolve",
    "STATUS_ADDRESS_ALREADY_ASSOCIATED": "the address is already in use",
    "STATUS_INVALID_ADDRESS_COMPONENT": "that address is not available on this machine",
    "STATUS_ACCESS_DENIED": "permission denied",
}


def explain(status: int | None) -> str:
    """``STATUS_CONNECTION_REFUSED (nothing is listening there)``."""
    name = short_status(status)
    hint = _HINTS.get(name)
    return f"{name} ({hint})" if hint else name


def kernel_socket(sock: Any) -> socket.socket | None:
    """The Linux socket under a pywsk WSK socket, for observation only (TCP state)."""
    kernel = getattr(sock, "sock", None)
    return kernel if isinstance(kernel, socket.socket) else None


def describe_address(address: tuple[Any, ...]) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def _information(value: Any) -> str:
    if isinstance(value, WSK_SOCKET):
        return "<socket>"
    return str(value)


class Call:
    """One WSK call on one IRP: what the call returned, and how and when the IRP completed."""

    def __init__(
        self,
        session: Session,
        name: str,
        label: str,
        *,
        record: bool = True,
        receive_pool: Any = None,
        group: str | None = None,
        sock: WSK_SOCKET | None = None,
    ) -> None:
        self.session = session
        self.group = group
        self.sock = sock
        self.timeline = session.timeline_of(sock)
        self.name = name
        self.label = label
        self.record = record
        self.returned: int | None = None
        self.status: int | None = None
        self.information: Any = None
        self.pending_returned = False
        self.issued_at = time.time()
        self.returned_at: float | None = None
        self.completed_at: float | None = None
        self.data = b""
        #: Set by whoever counted this call's bytes once (a report counts each call once).
        self.counted = False
        self.irp: IRP | None = None
        self._receive_pool = receive_pool
        self._resources: list[Callable[[], None]] = []
        self._lock = threading.RLock()
        self._completed = False
        self._has_returned = False
        self._freed = False
        self._continuation: Callable[[Call], None] | None = None
        self._done = threading.Event()

    # --- state -------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        """True once the completion routine ran."""
        return self._done.is_set()

    @property
    def succeeded(self) -> bool:
        return self.status == STATUS_SUCCESS

    def wait(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for the completion; True if it came."""
        return self._done.wait(max(timeout, 0.0))

    def elapsed_ms(self) -> float | None:
        if self.completed_at is None:
            return None
        return (self.completed_at - self.issued_at) * 1e3

    def cancel(self) -> bool:
        """IoCancelIrp, if the IRP is still pending; returns what IoCancelIrp returned."""
        with self._lock:
            if self._completed or self._freed or self.irp is None:
                return False
            result = IoCancelIrp(self.irp)
        self.timeline.note(
            f"IoCancelIrp(IRP of {self.name}) returned {'TRUE' if result else 'FALSE'}"
        )
        return result

    def show(self) -> None:
        """Record, after the fact, a call issued with ``record=False`` (and its completion,
        when it comes): for the one call of a bulk run that matters, e.g. the send that pends."""
        if self.record or self.returned is None:
            return
        self.record = True
        self.timeline.record(
            "call",
            "client",
            f"{self.label} returned {short_status(self.returned)}",
            at=self.issued_at,
            src="client",
            dst="provider",
            status=self.returned,
        )

    def settle_later(self, continuation: Callable[[Call], None]) -> bool:
        """Run ``continuation(self)`` from the completion routine, if the IRP is still pending.

        Returns False (and keeps nothing) when the IRP has completed already: the caller
        handles the result itself.  Call only after the call returned.
        """
        with self._lock:
            if self._completed:
                return False
            self._continuation = continuation
            return True

    # --- the completion routine and the hand-off -----------------------------------------
    def routine(self, _device: Any, irp: IRP, _context: Any) -> int:
        self.status = irp.IoStatus.Status
        self.information = irp.IoStatus.Information
        self.pending_returned = bool(irp.PendingReturned)
        self.completed_at = time.time()
        pool = self._receive_pool
        if pool is not None and self.status == STATUS_SUCCESS and isinstance(self.information, int):
            self.data = bytes(pool[: self.information])
        if (
            self.name == "WskDisconnect"
            and self.sock is not None
            and self.status == STATUS_SUCCESS
            and id(self.sock) not in self.session.resets
        ):
            self.session.fins_acked.add(id(self.sock))
        if (
            self.name == "WskDisconnect"
            and self.sock is not None
            and self.status == STATUS_FILE_FORCED_CLOSED
            and id(self.sock) not in self.session.resets
            and (self.session.peer_end(self.sock) or ("none",))[0] == "fin"
        ):
            # Calls act at once on the caller's thread: a disconnect can meet the reset that
            # followed the server's FIN before WskDisconnectEvent reports it.  After the
            # peer's FIN, only an RST makes the connection unusable.
            self.session.learn_peer_end(self.sock, "rst", self.completed_at)
        if pool is not None and self.sock is not None:
            if self.status == STATUS_SUCCESS and self.information == 0 and not self.data:
                self.session.learn_peer_end(self.sock, "fin", self.completed_at)
            elif self.status == STATUS_CONNECTION_RESET:
                self.session.learn_peer_end(self.sock, "rst", self.completed_at)
        if self.record:
            how = "after STATUS_PENDING" if self.pending_returned else "inline"
            elapsed = self.elapsed_ms() or 0.0
            self.timeline.record(
                "complete",
                "provider",
                f"IRP of {self.name} completed {short_status(self.status)}, "
                f"Information={_information(self.information)} ({how}, +{elapsed:.3f} ms)",
                at=self.completed_at,
                src="provider",
                dst="client",
                status=self.status,
                length=self.information if isinstance(self.information, int) else None,
                group=self.group,
            )
            self.session.observe()
        with self._lock:
            self._completed = True
            last = self._has_returned
            continuation = self._continuation if last else None
            if last:
                self._release()
        self._done.set()
        if continuation is not None:
            continuation(self)
        return STATUS_MORE_PROCESSING_REQUIRED

    def _returned(self, status: int) -> None:
        self.returned = status
        self.returned_at = time.time()
        if self.record:
            took = (self.returned_at - self.issued_at) * 1e3
            # A call that blocked its caller says so: the line is stamped when it was issued.
            slow = f" after blocking {took:.3f} ms" if took >= SLOW_CALL_MS else ""
            self.timeline.record(
                "call",
                "client",
                f"{self.label} returned {short_status(status)}{slow}",
                at=self.issued_at,
                src="client",
                dst="provider",
                status=status,
                group=self.group,
            )
            self.session.observe()
        with self._lock:
            self._has_returned = True
            if self._completed:
                self._release()

    def _release(self) -> None:
        if self._freed:
            return
        self._freed = True
        if self.irp is not None:
            IoFreeIrp(self.irp)
        for free in self._resources:
            free()
        self._resources.clear()

    def __repr__(self) -> str:
        return (
            f"<{self.label}: returned {short_status(self.returned)}, "
            f"completed {short_status(self.status) if self.done else 'pending'}>"
        )


@dataclass(eq=False)
class Connection:
    """The socket context of one connection socket, and what its events said."""

    name: str
    on_disconnect: Callable[[Connection, int], None] | None = None
    socket: WSK_SOCKET | None = None
    disconnect_events: list[tuple[float, int]] = field(default_factory=list)
    timeline: Timeline | None = None
    """Where this connection's events go (default: the session's timeline)."""
    disconnect_seen: threading.Event = field(default_factory=threading.Event)
    """Set when a WskDisconnectEvent arrived."""


class Session:
    """A registered WSK client whose calls, completions and event callbacks are recorded."""

    def __init__(self, timeline: Timeline, *, show_data: bool = True) -> None:
        self.timeline = timeline
        #: Labels show short payloads (``WskSend(b'hi')``); otherwise only their length.
        self.show_data = show_data
        self.observers: list[Callable[[], None]] = []
        self.registration = WSK_REGISTRATION()
        self.npi = WSK_CLIENT_NPI(None, WSK_CLIENT_DISPATCH(MAKE_WSK_VERSION(1, 0), 0, None))
        status = WskRegister(self.npi, self.registration)
        if status != STATUS_SUCCESS:
            raise SessionError(f"WskRegister failed: {short_status(status)}", status)
        self.provider = WSK_PROVIDER_NPI()
        status = WskCaptureProviderNPI(self.registration, WSK_INFINITE_WAIT, self.provider)
        if status != STATUS_SUCCESS:
            WskDeregister(self.registration)
            raise SessionError(f"WskCaptureProviderNPI failed: {short_status(status)}", status)
        self.sockets: list[WSK_SOCKET] = []
        self._before_close: dict[WSK_SOCKET, list[Callable[[], None]]] = {}
        #: id() of a socket -> the timeline its calls are recorded in (default: :attr:`timeline`).
        self._timelines: dict[int, Timeline] = {}
        self.connection_dispatch = WSK_CLIENT_CONNECTION_DISPATCH(
            WskDisconnectEvent=self._disconnect_event
        )
        #: id() of sockets this client aborted (WSK_FLAG_ABORTIVE), for the TCP-state reading.
        self.resets: set[int] = set()
        #: id() of sockets on which this client issued a graceful WskDisconnect.
        self.fins: set[int] = set()
        #: ... and those whose graceful WskDisconnect completed STATUS_SUCCESS (FIN acknowledged).
        self.fins_acked: set[int] = set()
        #: id() of a socket -> how the peer ended it ("fin" / "rst") and when, as WSK told us:
        #: a 0-byte or STATUS_CONNECTION_RESET receive, or WskDisconnectEvent.
        self.peer_ends: dict[int, tuple[str, float]] = {}
        self._closed = False

    # --- observation -------------------------------------------------------------------------
    def attach(self, sock: WSK_SOCKET, timeline: Timeline) -> None:
        """Record the calls on ``sock`` in ``timeline`` (one timeline per served connection)."""
        self._timelines[id(sock)] = timeline

    def forget(self, sock: WSK_SOCKET) -> None:
        """Drop what the session remembers about a closed socket (a long-running server)."""
        key = id(sock)
        self._timelines.pop(key, None)
        self.peer_ends.pop(key, None)
        self.resets.discard(key)
        self.fins.discard(key)
        self.fins_acked.discard(key)

    def timeline_of(self, sock: WSK_SOCKET | None) -> Timeline:
        if sock is None:
            return self.timeline
        return self._timelines.get(id(sock), self.timeline)

    def learn_peer_end(self, sock: WSK_SOCKET, end: str, at: float | None) -> None:
        """Record the peer's FIN or RST as WSK reported it (the first report wins, except that
        an RST after a FIN is kept as "fin+rst")."""
        known = self.peer_ends.get(id(sock))
        when = at if at is not None else time.time()
        if known is None:
            self.peer_ends[id(sock)] = (end, when)
        elif known[0] == "fin" and end == "rst":
            self.peer_ends[id(sock)] = ("fin+rst", known[1])

    def peer_end(self, sock: WSK_SOCKET) -> tuple[str, float] | None:
        return self.peer_ends.get(id(sock))

    def observe(self) -> None:
        """Run the observers (e.g. the TCP-state sampler) after something happened."""
        for observer in self.observers:
            observer()

    # --- issuing calls -------------------------------------------------------------------------
    def issue(
        self,
        name: str,
        label: str,
        function: Callable[..., int],
        *args: Any,
        record: bool = True,
        receive_pool: Any = None,
        resources: tuple[Callable[[], None], ...] = (),
        group: str | None = None,
    ) -> Call:
        """``function(*args, Irp)`` on a fresh IRP; returns once the call returned."""
        sock = args[0] if args and isinstance(args[0], WSK_SOCKET) else None
        call = Call(
            self, name, label, record=record, receive_pool=receive_pool, group=group, sock=sock
        )
        call._resources.extend(resources)
        irp = IoAllocateIrp(1, False)
        if irp is None:
            raise SessionError(f"{name}: IoAllocateIrp failed")
        call.irp = irp
        IoSetCompletionRoutine(irp, call.routine, None, True, True, True)
        call.issued_at = time.time()
        with _uninterrupted():
            call._returned(function(*args, irp))
        return call

    @staticmethod
    def _buffer(data: bytes | int) -> tuple[Any, WSK_BUF, Callable[[], None]]:
        size = data if isinstance(data, int) else len(data)
        pool = ExAllocatePoolWithTag(NonPagedPoolNx, max(size, 1), _TAG)
        if pool is None:
            raise SessionError("ExAllocatePoolWithTag failed")
        if not isinstance(data, int):
            pool[:size] = data
        mdl = IoAllocateMdl(pool, max(size, 1), False, False, None)
        if mdl is None:
            ExFreePoolWithTag(pool, _TAG)
            raise SessionError("IoAllocateMdl failed")
        MmBuildMdlForNonPagedPool(mdl)

        def free() -> None:
            IoFreeMdl(mdl)
            ExFreePoolWithTag(pool, _TAG)

        return pool, WSK_BUF(mdl, 0, size), free

    # --- client-level calls -----------------------------------------------------------------
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
        if not call.wait(timeout):
            call.cancel()
            call.wait(1.0)
            raise SessionError(f"cannot resolve {host!r}: no answer within {timeout:g} s")
        if call.status != STATUS_SUCCESS:
            raise SessionError(f"cannot resolve {host!r}: {explain(call.status)}", call.status)
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
        provider = self.provider.Dispatch
        assert provider is not None
        call = self.issue(
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
        )
        call.wait(10.0)
        if call.status != STATUS_SUCCESS or not isinstance(call.information, WSK_SOCKET):
            raise SessionError(f"WskSocket failed: {short_status(call.status)}", call.status)
        self.sockets.append(call.information)
        return call.information

    def connect(
        self,
        remote: tuple[Any, ...],
        *,
        timeout: float,
        context: Connection | None = None,
        events: int = 0,
    ) -> WSK_SOCKET:
        """WskSocket, WskBind (the wildcard address, port 0), WskConnect (cancelled after
        ``timeout``), then SO_WSK_EVENT_CALLBACK with ``events``; raises SessionError."""
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
        bind.wait(timeout)
        if bind.status != STATUS_SUCCESS:
            self.close_socket(sock)
            raise SessionError(
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
        if not call.wait(timeout):
            call.cancel()
            call.wait(5.0)
            self.close_socket(sock)
            raise SessionError(
                f"cannot connect to {describe_address(remote)}: no answer within {timeout:g} s"
                f" (WskConnect cancelled: {short_status(call.status)})",
                call.status,
            )
        if call.status != STATUS_SUCCESS:
            self.close_socket(sock)
            raise SessionError(
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
        context: Connection | None = None,
        events: int = 0,
    ) -> WSK_SOCKET:
        """WskSocketConnect (create, bind, connect in one call), then the events; its IRP
        cannot be cancelled, so a connect that never answers is left to the kernel."""
        provider = self.provider.Dispatch
        assert provider is not None
        family = AF_INET6 if ":" in str(remote[0]) else AF_INET
        local = ("::", 0) if family == AF_INET6 else ("0.0.0.0", 0)
        call = self.issue(
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
            self.connection_dispatch,
            None,
            None,
            None,
        )
        if not call.wait(timeout):
            raise SessionError(
                f"cannot connect to {describe_address(remote)}: no answer within {timeout:g} s"
            )
        if call.status != STATUS_SUCCESS or not isinstance(call.information, WSK_SOCKET):
            raise SessionError(
                f"cannot connect to {describe_address(remote)}: {explain(call.status)}",
                call.status,
            )
        sock = call.information
        self.sockets.append(sock)
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
        SO_WSK_EVENT_CALLBACK with ``events``; raises SessionError."""
        from ..wsk import WSK_FLAG_LISTEN_SOCKET

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
        bind.wait(10.0)
        if bind.status != STATUS_SUCCESS:
            self.close_socket(sock)
            raise SessionError(
                f"cannot listen on {describe_address(address)}: {explain(bind.status)}",
                bind.status,
            )
        if events:
            try:
                self.set_events(sock, events)
            except SessionError:
                self.close_socket(sock)
                raise
        return sock

    def accept(
        self,
        listener: WSK_SOCKET,
        *,
        context: Any = None,
        dispatch: Any = None,
        remote: SOCKADDR_STORAGE | None = None,
    ) -> Call:
        """WskAccept (does not wait); a socket it returns joins :attr:`sockets` when the
        caller adopts it (:meth:`adopt`)."""
        return self.issue(
            "WskAccept",
            "WskAccept",
            listener.Dispatch.WskAccept,
            listener,
            0,
            context,
            dispatch,
            None,
            remote,
        )

    def adopt(self, sock: WSK_SOCKET) -> None:
        """A socket handed to us (WskAccept, WskAcceptEvent): closed by :meth:`close`."""
        if sock not in self.sockets:
            self.sockets.append(sock)

    def set_events(self, sock: WSK_SOCKET, mask: int) -> int:
        """SO_WSK_EVENT_CALLBACK (no IRP); returns the status (recorded)."""
        control = WSK_EVENT_CALLBACK_CONTROL(NPI_WSK_INTERFACE_ID, mask)
        at = time.time()
        status: int = sock.Dispatch.WskControlSocket(
            sock, WskSetOption, SO_WSK_EVENT_CALLBACK, SOL_SOCKET, 0, control, 0, None, None, None
        )
        self.timeline_of(sock).record(
            "call",
            "client",
            f"WskControlSocket(SO_WSK_EVENT_CALLBACK, {_event_names(mask)}) returned "
            f"{short_status(status)}",
            at=at,
            src="client",
            dst="provider",
            status=status,
        )
        if status != STATUS_SUCCESS:
            raise SessionError(
                f"enabling {_event_names(mask)} failed: {short_status(status)}", status
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
    ) -> Call:
        _pool, buf, free = self._buffer(data)
        return self.issue(
            "WskSend",
            label or f"WskSend({_preview(data, self.show_data)})",
            sock.Dispatch.WskSend,
            sock,
            buf,
            flags,
            record=record,
            resources=(free,),
            group=group,
        )

    def receive(
        self,
        sock: WSK_SOCKET,
        size: int,
        flags: int = 0,
        *,
        record: bool = True,
        group: str | None = None,
    ) -> Call:
        pool, buf, free = self._buffer(size)
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
        )

    def disconnect(
        self,
        sock: WSK_SOCKET,
        final: bytes | None = None,
        *,
        abortive: bool = False,
        label: str | None = None,
    ) -> Call:
        flags = WSK_FLAG_ABORTIVE if abortive else 0
        if abortive and final is None:
            self.resets.add(id(sock))
        elif not abortive:
            self.fins.add(id(sock))
        resources: tuple[Callable[[], None], ...] = ()
        buf: WSK_BUF | None = None
        if final is not None:
            _pool, buf, free = self._buffer(final)
            resources = (free,)
        text = "NULL" if final is None else f"Buffer={_preview(final, self.show_data)}"
        flag_text = "WSK_FLAG_ABORTIVE" if abortive else "0"
        return self.issue(
            "WskDisconnect",
            label or f"WskDisconnect({text}, {flag_text})",
            sock.Dispatch.WskDisconnect,
            sock,
            buf,
            flags,
            resources=resources,
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
        if call.wait(timeout) and sock in self.sockets:
            self.sockets.remove(sock)
        return call

    def before_close(self, sock: WSK_SOCKET, hook: Callable[[], None]) -> None:
        """Run ``hook()`` before this session closes ``sock`` (a rundown: stop issuing)."""
        self._before_close.setdefault(sock, []).append(hook)

    def remote_address(self, sock: WSK_SOCKET) -> tuple[Any, ...] | None:
        out = SOCKADDR_STORAGE()
        call = self.issue(
            "WskGetRemoteAddress",
            "WskGetRemoteAddress",
            sock.Dispatch.WskGetRemoteAddress,
            sock,
            out,
            record=False,
        )
        if not call.wait(5.0) or call.status != STATUS_SUCCESS:
            return None
        return _storage_tuple(out)

    def local_address(self, sock: WSK_SOCKET) -> tuple[Any, ...] | None:
        out = SOCKADDR_STORAGE()
        call = self.issue(
            "WskGetLocalAddress",
            "WskGetLocalAddress",
            sock.Dispatch.WskGetLocalAddress,
            sock,
            out,
            record=False,
        )
        if not call.wait(5.0) or call.status != STATUS_SUCCESS:
            return None
        return _storage_tuple(out)

    # --- event callbacks -------------------------------------------------------------------------
    def _disconnect_event(self, context: Any, flags: int) -> int:
        """WskDisconnectEvent: the peer's FIN (flags 0) or RST (WSK_FLAG_ABORTIVE)."""
        at = time.time()
        abortive = bool(flags & WSK_FLAG_ABORTIVE)
        (
            context.timeline
            if isinstance(context, Connection) and context.timeline
            else self.timeline
        ).record(
            "callback",
            "provider",
            f"WskDisconnectEvent(Flags={flag_names(flags)}): "
            + ("the peer reset the connection" if abortive else "the peer's FIN"),
            at=at,
            src="provider",
            dst="client",
        )
        if isinstance(context, Connection):
            context.disconnect_events.append((at, flags))
            context.disconnect_seen.set()
            if context.socket is not None:
                self.learn_peer_end(context.socket, "rst" if abortive else "fin", at)
        self.observe()
        if isinstance(context, Connection) and context.on_disconnect is not None:
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


# --- Ctrl-C between calls, never inside one ------------------------------------------------------

_calls_in_progress = 0
_interrupt_pending = False


@contextlib.contextmanager
def _uninterrupted() -> Iterator[None]:
    """A WSK call on the main thread runs to its end (it acts on the caller's thread, under
    the provider's locks); a Ctrl-C that came meanwhile is raised once it returned."""
    global _calls_in_progress, _interrupt_pending
    main = threading.current_thread() is threading.main_thread()
    if main:
        _calls_in_progress += 1
    try:
        yield
    finally:
        if main:
            _calls_in_progress -= 1
            if not _calls_in_progress and _interrupt_pending:
                _interrupt_pending = False
                raise KeyboardInterrupt


@contextlib.contextmanager
def interrupt_between_calls() -> Iterator[None]:
    """Within: Ctrl-C raises KeyboardInterrupt in the main thread only between WSK calls
    (a call in progress finishes first), so what follows can still close the sockets."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    global _interrupt_pending
    _interrupt_pending = False

    def handler(_signum: int, _frame: Any) -> None:
        global _interrupt_pending
        if _calls_in_progress:
            _interrupt_pending = True
        else:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _storage_tuple(out: SOCKADDR_STORAGE) -> tuple[Any, ...] | None:
    with contextlib.suppress(ValueError):
        return out.to_tuple()
    return None


def _event_names(mask: int) -> str:
    from ..wsk import (
        WSK_EVENT_ACCEPT,
        WSK_EVENT_DISABLE,
        WSK_EVENT_DISCONNECT,
        WSK_EVENT_RECEIVE,
        WSK_EVENT_SEND_BACKLOG,
    )

    names = [
        name
        for bit, name in (
            (WSK_EVENT_ACCEPT, "WSK_EVENT_ACCEPT"),
            (WSK_EVENT_DISCONNECT, "WSK_EVENT_DISCONNECT"),
            (WSK_EVENT_RECEIVE, "WSK_EVENT_RECEIVE"),
            (WSK_EVENT_SEND_BACKLOG, "WSK_EVENT_SEND_BACKLOG"),
            (WSK_EVENT_DISABLE, "WSK_EVENT_DISABLE"),
        )
        if mask & bit
    ]
    return "|".join(names) or "0"


def flag_names(flags: int) -> str:
    """``WSK_FLAG_ABORTIVE|WSK_FLAG_AT_DISPATCH_LEVEL`` for an event callback's Flags."""
    from ..wsk import WSK_FLAG_AT_DISPATCH_LEVEL

    names = [
        name
        for bit, name in (
            (WSK_FLAG_ABORTIVE, "WSK_FLAG_ABORTIVE"),
            (WSK_FLAG_AT_DISPATCH_LEVEL, "WSK_FLAG_AT_DISPATCH_LEVEL"),
        )
        if flags & bit
    ]
    return "|".join(names) or "0"


def _preview(data: bytes, show: bool, limit: int = 24) -> str:
    if show and len(data) <= limit:
        return repr(data)
    return f"{len(data)} B"
