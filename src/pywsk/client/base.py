"""The machinery of the driver-style client runtime: registration, IRPs, buffers, a tracer.

What it does: :class:`ClientBase` registers with WSK and captures the provider NPI, issues
any WSK function on a fresh IRP with a completion routine (:meth:`ClientBase.issue`, one
:class:`~pywsk.client.call.Call` each), allocates buffers in non-paged pool described by
MDLs (:func:`allocate_buffer`) or describes the caller's own memory with MDLs locked by
MmProbeAndLockPages (:func:`lock_buffer`), learns from completions and from its WskDisconnectEvent how
each connection ended (:meth:`ClientBase.ends`), tells its :class:`~pywsk.trace.Tracer`
every call, completion and event callback, and closes what it opened.  The helpers for the
WSK functions are :class:`pywsk.client.Client`'s.

What it refuses: waits without a bound.

What always holds: a socket the client was handed is in :attr:`ClientBase.sockets` until
its WskCloseSocket completed; :meth:`ClientBase.close` closes every socket still open
(bounded), releases the NPI and deregisters - and does not deregister, but reports it, when
a socket could not be closed in time (WskDeregister would wait for it forever).
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, Self

from ..core.ending import Ending
from ..nt import (
    MDL_PAGES_LOCKED,
    STATUS_CONNECTION_RESET,
    STATUS_FILE_FORCED_CLOSED,
    STATUS_INSUFFICIENT_RESOURCES,
    STATUS_SUCCESS,
    ExAllocatePoolWithTag,
    ExFreePoolWithTag,
    IoAllocateIrp,
    IoAllocateMdl,
    IoFreeMdl,
    IoReadAccess,
    IoSetCompletionRoutine,
    IoWriteAccess,
    KernelMode,
    MmBuildMdlForNonPagedPool,
    MmProbeAndLockPages,
    MmUnlockPages,
    NonPagedPoolNx,
)
from ..provider.base import ProviderSocket
from ..trace import Tracer, short_status
from ..wsk import (
    MAKE_WSK_VERSION,
    WSK_BUF,
    WSK_CLIENT_CONNECTION_DISPATCH,
    WSK_CLIENT_DISPATCH,
    WSK_CLIENT_NPI,
    WSK_FLAG_ABORTIVE,
    WSK_INFINITE_WAIT,
    WSK_PROVIDER_NPI,
    WSK_REGISTRATION,
    WSK_SOCKET,
    WskCaptureProviderNPI,
    WskDeregister,
    WskRegister,
    WskReleaseProviderNPI,
)
from .call import Call
from .ends import Context, Ends
from .interrupt import armed, uninterrupted
from .words import flag_names

__all__ = ["Buffer", "ClientBase", "ClientError", "allocate_buffer", "lock_buffer"]

_TAG = b"pwsk"
# One MDL describes at most this much; longer buffers become an MDL chain (IoAllocateMdl
# refuses more than 4 GiB - PAGE_SIZE per MDL).
_MDL_CHUNK = 1 << 30

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


def lock_buffer(view: memoryview, write: bool) -> tuple[WSK_BUF, Callable[[], None]]:
    """A WSK_BUF over the caller's memory ``view`` (no copy): MDLs locked with
    MmProbeAndLockPages for reading (a send) or writing (``write``: a receive), chained when
    longer than one MDL may describe; the second item unlocks and frees them (once).
    Raises ClientError (STATUS_INSUFFICIENT_RESOURCES) if an MDL cannot be allocated, and
    what MmProbeAndLockPages raises; nothing stays locked then."""
    mdls: list[Any] = []
    freed = False

    def free() -> None:
        nonlocal freed
        if not freed:
            freed = True
            for mdl in mdls:
                if mdl.MdlFlags & MDL_PAGES_LOCKED:
                    MmUnlockPages(mdl)
                IoFreeMdl(mdl)

    length = view.nbytes
    try:
        for start in range(0, length, _MDL_CHUNK):
            size = min(_MDL_CHUNK, length - start)
            mdl = IoAllocateMdl(view[start : start + size], size, False, False, None)
            if mdl is None:
                raise ClientError("IoAllocateMdl failed", STATUS_INSUFFICIENT_RESOURCES)
            MmProbeAndLockPages(mdl, KernelMode, IoWriteAccess if write else IoReadAccess)
            if mdls:
                mdls[-1].Next = mdl
            mdls.append(mdl)
    except BaseException:
        free()
        raise
    return WSK_BUF(mdls[0] if mdls else None, 0, length), free


class ClientBase:
    """A registered WSK client: calls on IRPs, what they taught it, and its tracer."""

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

    def __enter__(self) -> Self:
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

        WSK has no call for it (Windows offers SIO_TCP_INFO to user mode only): the
        provider's read-only :meth:`~pywsk.provider.base.ProviderSocket.tcp_state` answers."""
        return sock.tcp_state() if isinstance(sock, ProviderSocket) else None

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
        ending: Ending | None = None,
    ) -> Call:
        """``function(*args, Irp)`` on a fresh IRP; returns once the call returned.
        ``ending`` is the end of ours the call makes (:attr:`Call.ending`): learned, as
        issued now, only if the call succeeds."""
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
        call.ending = ending
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
        if armed():
            with uninterrupted():
                call._returned(function(*args, irp))
        else:
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
                # Only now is it an end of ours: a disconnect the provider refused (the
                # connection reset already, the socket closing) sent nothing, and one that
                # pended and then failed cannot tell whether its FIN left (it may wait
                # behind unsent data).  Learned before the tracer hears of the completion.
                if call.ending is not None:
                    ends.learn_ours(call.ending, call.issued_at)
                if call.ending is Ending.OUR_FIN:
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

    def close_socket(
        self, sock: WSK_SOCKET, timeout: float = 10.0, label: str | None = None
    ) -> Call:
        """WskCloseSocket, waited for at most ``timeout`` seconds (:meth:`close_socket_call`)."""
        call = self.close_socket_call(sock, label)
        call.completed_within(timeout)
        return call

    def close_socket_call(self, sock: WSK_SOCKET, label: str | None = None) -> Call:
        """WskCloseSocket (does not wait); the socket leaves :attr:`sockets` when its close
        completes.  What was registered with :meth:`before_close` for the socket runs first."""
        for hook in self._before_close.pop(sock, ()):
            hook()
        return self.issue(
            "WskCloseSocket",
            label or "WskCloseSocket",
            sock.Dispatch.WskCloseSocket,
            sock,
            on_complete=lambda _call: self._disown(sock),
        )

    def _disown(self, sock: WSK_SOCKET) -> None:
        """``sock`` is no longer this client's to close (its WskCloseSocket completed)."""
        with self._lock:
            if sock in self.sockets:
                self.sockets.remove(sock)

    def before_close(self, sock: WSK_SOCKET, hook: Callable[[], None]) -> None:
        """Run ``hook()`` before this client closes ``sock`` (a rundown: stop issuing)."""
        self._before_close.setdefault(sock, []).append(hook)

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
