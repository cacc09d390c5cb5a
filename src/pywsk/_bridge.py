"""The bridge from the faithful WSK layer to :mod:`pywsk.sync` (the blocking layer).

(:mod:`pywsk.aio` and :mod:`pywsk.trio` run natively on their event loops, over
:mod:`pywsk._native`: no provider, no IRP.)

What it does:

* :func:`session` - the one WSK client of the process for the blocking layer, registered
  lazily on first use (WskRegister + WskCaptureProviderNPI, as a driver does in
  DriverEntry); it releases the NPI and deregisters at interpreter exit, when none of its
  sockets is left open.
* :class:`Call` - one WSK call on its own IRP.  The call is issued from a DPC
  (``KeInsertQueueDpc``), so it runs inline on the provider thread and the owner's thread
  never blocks on it: many calls of many connections are issued on one wake-up of the
  provider thread.  The completion routine (provider thread,
  DISPATCH_LEVEL) records ``IoStatus``, hands the call to its owner with the owner's
  ``post`` function (KeSetEvent for the blocked thread) and returns
  STATUS_MORE_PROCESSING_REQUIRED.  Nothing else runs there.
* :class:`ConnectionCore` / :class:`ListenerCore` - the state of one connection or listening
  socket as the blocking layer sees it: start a call, then settle it (bookkeeping, the
  result or the exception, release of the IRP and MDLs) once it completed.
* Generators of calls (:func:`connect_steps`, :func:`listen_steps`) for multi-step
  sequences, driven by the layer's own way of waiting (a "sans-I/O" seam).

What it refuses: to touch a kernel socket - every action is a dispatch-table call with an
IRP, every result comes from an IRP's completion.  Buffers are described by MDLs (user
buffers locked with MmProbeAndLockPages, receive buffers in non-paged pool).

What always holds: each IRP allocated here is freed exactly once, after its completion
was seen by its owner; a Call's
owner learns of its completion exactly once; state changes of a core happen on its
owner's thread or under its lock.
"""

from __future__ import annotations

import atexit
import ipaddress
import threading
from collections.abc import Callable, Generator, Sequence
from typing import Any, Final

from ._log import report_unraisable as _report_unraisable
from ._native import DEFAULT_RECEIVE_SIZE, DisconnectReason, SocketOption
from .errors import NtStatusError, error_from_status
from .nt.dpc import KDPC, KeInitializeDpc, KeInsertQueueDpc
from .nt.irp import (
    IRP,
    IoAllocateIrp,
    IoCancelIrp,
    IoFreeIrp,
    IoSetCompletionRoutine,
    IrpState,
)
from .nt.mdl import (
    MDL,
    MDL_PAGES_LOCKED,
    ExAllocatePoolWithTag,
    ExFreePoolWithTag,
    IoAllocateMdl,
    IoFreeMdl,
    IoReadAccess,
    IoWriteAccess,
    KernelMode,
    MmBuildMdlForNonPagedPool,
    MmProbeAndLockPages,
    MmUnlockPages,
    NonPagedPoolNx,
)
from .nt.status import NT_SUCCESS, NTSTATUS
from .wsk.constants import (
    AF_INET,
    AF_INET6,
    AF_UNSPEC,
    IPPROTO_TCP,
    MAKE_WSK_VERSION,
    NS_ALL,
    SOCK_STREAM,
    WSK_FLAG_ABORTIVE,
    WSK_FLAG_CONNECTION_SOCKET,
    WSK_FLAG_LISTEN_SOCKET,
    WSK_INFINITE_WAIT,
    WskSetOption,
)
from .wsk.dispatch import WSK_CLIENT_DISPATCH, WSK_PROVIDER_DISPATCH
from .wsk.registration import (
    WSK_CLIENT_NPI,
    WSK_PROVIDER_NPI,
    WSK_REGISTRATION,
    WskCaptureProviderNPI,
    WskDeregister,
    WskRegister,
    WskReleaseProviderNPI,
)
from .wsk.structs import (
    ADDRINFOEXW,
    PPVOID,
    SOCKADDR,
    SOCKADDR_IN,
    SOCKADDR_IN6,
    SOCKADDR_STORAGE,
    UNICODE_STRING,
    WSK_BUF,
    WSK_SOCKET,
    sockaddr_from_tuple,
)

__all__ = [
    "Call",
    "ConnectionCore",
    "DEFAULT_RECEIVE_SIZE",
    "DisconnectReason",
    "ListenerCore",
    "Post",
    "Session",
    "SocketOption",
    "connect_steps",
    "listen_steps",
    "resolve_steps",
    "session",
    "start_control",
]

S = NTSTATUS

#: ``post(fn)``: run ``fn`` soon on the owner's thread (never inline in the routine).
Post = Callable[[Callable[[], None]], object]

#: Pool tag of the receive buffers ("pyws").
POOL_TAG: Final = b"pyws"
#: Largest receive buffer a connection keeps; a bigger ``max_bytes`` is capped to it.
MAX_RECEIVE_BUFFER: Final = 1 << 20
# One MDL describes at most this much; longer buffers become an MDL chain (IoAllocateMdl
# refuses more than 4 GiB - PAGE_SIZE per MDL).
_MDL_CHUNK: Final = 1 << 30


_REASON_OF_STATUS: Final[dict[int, DisconnectReason]] = {
    S.STATUS_CONNECTION_RESET: DisconnectReason.PEER_RESET,
    S.STATUS_REMOTE_DISCONNECT: DisconnectReason.PEER_RESET,
    S.STATUS_CONNECTION_ABORTED: DisconnectReason.LOCAL_ABORT,
    S.STATUS_LOCAL_DISCONNECT: DisconnectReason.LOCAL_ABORT,
    S.STATUS_IO_TIMEOUT: DisconnectReason.TRANSPORT_FAILURE,
    S.STATUS_NETWORK_UNREACHABLE: DisconnectReason.TRANSPORT_FAILURE,
    S.STATUS_HOST_UNREACHABLE: DisconnectReason.TRANSPORT_FAILURE,
    S.STATUS_UNEXPECTED_NETWORK_ERROR: DisconnectReason.TRANSPORT_FAILURE,
}


# --------------------------------------------------------------------------------------------
# The one client
# --------------------------------------------------------------------------------------------


class Session:
    """The registered WSK client of the Pythonic layers (one per process).

    It keeps the set of WSK sockets the layers opened and have not closed yet, so that at
    interpreter exit it can give the NPI back and deregister (WskReleaseProviderNPI,
    WskDeregister) - only when no socket is left open, since WskDeregister waits for every
    socket of the client to close.
    """

    def __init__(self, registration: WSK_REGISTRATION, npi: WSK_PROVIDER_NPI) -> None:
        self.registration = registration
        self.npi = npi
        self._open: set[int] = set()
        self._lock = threading.Lock()
        self.released = False

    @property
    def client(self) -> Any:
        """The PWSK_CLIENT handed out by WskCaptureProviderNPI."""
        return self.npi.Client

    @property
    def dispatch(self) -> WSK_PROVIDER_DISPATCH:
        """The provider's WSK_PROVIDER_DISPATCH."""
        assert self.npi.Dispatch is not None
        return self.npi.Dispatch

    @property
    def open_sockets(self) -> int:
        """How many sockets the Pythonic layers opened and have not closed."""
        with self._lock:
            return len(self._open)

    def opened(self, sock: WSK_SOCKET) -> None:
        with self._lock:
            self._open.add(id(sock))

    def closed(self, sock: WSK_SOCKET) -> None:
        with self._lock:
            self._open.discard(id(sock))

    def release_at_exit(self) -> None:
        """Give the NPI back and deregister, if every socket is closed (else leave both:
        the sockets are still the client's, and the verifier reports them)."""
        with _spare_lock:
            spares = list(_spare_buffers)
            _spare_buffers.clear()
        for buffer in spares:
            buffer.free()
        with self._lock:
            if self._open or self.released:
                return
            self.released = True
        WskReleaseProviderNPI(self.registration)
        WskDeregister(self.registration)


_session: Session | None = None
_session_lock: Final = threading.Lock()


def session() -> Session:
    """The process's WSK client for the Pythonic layers; registers it on first use.

    Raises :class:`~pywsk.errors.NtStatusError` if WskRegister or WskCaptureProviderNPI
    fails (then the next call tries again).
    """
    global _session
    with _session_lock:
        if _session is None:
            registration = WSK_REGISTRATION()
            npi = WSK_CLIENT_NPI(None, WSK_CLIENT_DISPATCH(MAKE_WSK_VERSION(1, 0), 0, None))
            status = WskRegister(npi, registration)
            if not NT_SUCCESS(status):
                raise error_from_status(status, "WskRegister")
            provider = WSK_PROVIDER_NPI()
            status = WskCaptureProviderNPI(registration, WSK_INFINITE_WAIT, provider)
            if not NT_SUCCESS(status):
                WskDeregister(registration)
                raise error_from_status(status, "WskCaptureProviderNPI")
            _session = Session(registration, provider)
            atexit.register(_session.release_at_exit)
        return _session


# --------------------------------------------------------------------------------------------
# One call on one IRP
# --------------------------------------------------------------------------------------------


def report_unraisable(exc: BaseException, message: str, obj: object) -> None:
    """Report an exception nobody can catch (printed; a test failure under pytest), with
    the same real ``UnraisableHookArgs`` as the provider (:mod:`pywsk._log`)."""
    _report_unraisable(exc, message, obj)


class Call:
    """One WSK call on its own IRP, from IoAllocateIrp to IoFreeIrp.

    Life: :meth:`queue` records the call; :meth:`arm` registers the owner's ``post`` and
    ``on_delivered`` and issues the call from a DPC on the provider thread; the completion
    routine hands the delivery to ``post``, and ``on_delivered`` runs on the owner's thread.
    (:meth:`start` instead issues a call at once from this thread, waiting for its
    NTSTATUS - for name resolution, which needs PASSIVE_LEVEL; :meth:`arm` then returns
    False if the IRP completed already.)  :meth:`cancel` is IoCancelIrp; it only asks.
    :meth:`release` frees the IRP and the MDLs, once.
    """

    __slots__ = (
        "_done",
        "_lock",
        "_mdls",
        "_on_delivered",
        "_post",
        "_released",
        "_request",
        "information",
        "irp",
        "name",
        "out",
        "returned",
        "status",
    )

    def __init__(self, name: str) -> None:
        irp = IoAllocateIrp(1, False)
        if irp is None:
            raise error_from_status(S.STATUS_INSUFFICIENT_RESOURCES, f"{name}: IoAllocateIrp")
        self.name = name
        self.irp: IRP = irp
        self.returned: int = S.STATUS_PENDING
        self.status: int = S.STATUS_PENDING
        self.information: Any = 0
        #: Out-parameters the call fills (addresses, result pointers), kept alive here.
        self.out: Any = None
        self._lock = threading.Lock()
        self._done = False
        self._post: Post | None = None
        self._on_delivered: Callable[[], None] | None = None
        self._mdls: list[MDL] = []
        self._released = False
        self._request: tuple[Callable[..., int], tuple[Any, ...]] | None = None
        IoSetCompletionRoutine(irp, self._routine, None, True, True, True)

    def __repr__(self) -> str:
        state = "done" if self._done else "pending"
        return f"<Call {self.name} {state} status=0x{self.status & 0xFFFFFFFF:08X}>"

    @property
    def done(self) -> bool:
        """True once the completion routine ran (``status``/``information`` are final)."""
        return self._done

    @property
    def succeeded(self) -> bool:
        return self._done and NT_SUCCESS(self.status)

    def start(self, function: Callable[..., int], *args: Any) -> Call:
        """Call ``function(*args, Irp)`` now, from this thread (the dispatch function hands
        the work to the provider thread and returns its NTSTATUS); the routine may have run
        when this returns.  For calls that need PASSIVE_LEVEL (name resolution); every
        other call is queued (:meth:`queue`)."""
        try:
            self.returned = function(*args, self.irp)
        except BaseException:
            if self.irp.state is not IrpState.PENDING:
                self.release()
            raise
        if not self._done and self.irp.state is IrpState.IDLE:
            # Refused without taking the IRP (nothing will complete it): that is the result.
            self.status = self.returned
            self._done = True
        return self

    def queue(self, function: Callable[..., int], *args: Any) -> Call:
        """Record the call ``function(*args, Irp)``; :meth:`arm` issues it.

        It is issued from a DPC (KeInsertQueueDpc), so it runs on the provider thread,
        inline, and the owner's thread does not wait for its NTSTATUS: the completion tells
        the result.  A call refused without taking the IRP is delivered like a completion
        with the status it returned.
        """
        self._request = (function, args)
        return self

    def _routine(self, _device: Any, irp: IRP, _context: Any) -> int:
        # Provider thread, DISPATCH_LEVEL: record the result and hand it over; nothing else.
        self.status = irp.IoStatus.Status
        self.information = irp.IoStatus.Information
        self._hand_over()
        return S.STATUS_MORE_PROCESSING_REQUIRED

    def _hand_over(self) -> None:
        with self._lock:
            self._done = True
            post = self._post
        if post is not None:
            post(self._deliver)

    def _issue(self, _dpc: KDPC, _context: Any, _arg1: Any, _arg2: Any) -> None:
        # The DPC routine: provider thread, DISPATCH_LEVEL; the dispatch function acts inline.
        request, self._request = self._request, None
        assert request is not None
        function, args = request
        try:
            self.returned = function(*args, self.irp)
        except BaseException as exc:
            # A broken rule (a verifier BugCheck) or a bug in this module: reported, and
            # the waiter is released with STATUS_INTERNAL_ERROR - never left waiting.
            report_unraisable(exc, f"pywsk: exception issuing {self.name}", self)
            if self.irp.state is IrpState.PENDING:
                return  # the IRP was taken: its completion will come
            self.status = S.STATUS_INTERNAL_ERROR
            self._hand_over()
            return
        if not self._done and self.irp.state is IrpState.IDLE:
            self.status = self.returned  # refused without taking the IRP
            self._hand_over()

    def arm(self, post: Post, on_delivered: Callable[[], None]) -> bool:
        """Ask to be told of the completion; False (and nothing registered) if it happened.

        A queued call is issued now (its DPC is queued); its delivery always
        comes through ``post``.
        """
        with self._lock:
            if self._done:
                return False
            self._post = post
            self._on_delivered = on_delivered
            queued = self._request is not None
        if queued:
            dpc = KDPC()
            KeInitializeDpc(dpc, self._issue, None)
            KeInsertQueueDpc(dpc, None, None)
        return True

    def _deliver(self) -> None:
        callback = self._on_delivered
        if callback is not None:
            callback()

    def cancel(self) -> None:
        """IoCancelIrp: ask the provider to end the request early (completion still says)."""
        if not self._done and not self._released:
            IoCancelIrp(self.irp)

    def describe(self, view: memoryview, write: bool) -> WSK_BUF:
        """A WSK_BUF over ``view``: MDLs locked with MmProbeAndLockPages (chained if long)."""
        length = view.nbytes
        first: MDL | None = None
        last: MDL | None = None
        try:
            for start in range(0, length, _MDL_CHUNK):
                size = min(_MDL_CHUNK, length - start)
                mdl = IoAllocateMdl(view[start : start + size], size, False, False, None)
                if mdl is None:
                    raise error_from_status(S.STATUS_INSUFFICIENT_RESOURCES, "IoAllocateMdl")
                self._mdls.append(mdl)
                MmProbeAndLockPages(mdl, KernelMode, IoWriteAccess if write else IoReadAccess)
                if last is None:
                    first = mdl
                else:
                    last.Next = mdl
                last = mdl
        except BaseException:
            self.release()  # the call never started: give everything back
            raise
        return WSK_BUF(first, 0, length)

    def release(self) -> None:
        """Free the MDLs this call locked and the IRP, once.  An IRP still pending (its
        owner gave up on it, e.g. a generator closed early) is left to the garbage collector:
        freeing it would break the rule that a pending IRP belongs to the provider."""
        if self._released or self.irp.state is IrpState.PENDING:
            return
        self._released = True
        for mdl in self._mdls:
            if mdl.MdlFlags & MDL_PAGES_LOCKED:
                MmUnlockPages(mdl)
            IoFreeMdl(mdl)
        self._mdls.clear()
        IoFreeIrp(self.irp)

    def check(self) -> None:
        """Raise the status as an exception unless the call succeeded."""
        if not NT_SUCCESS(self.status):
            raise error_from_status(self.status, self.name)


def start_control(sock: WSK_SOCKET, level: int, option: int, value: int) -> Call:
    call = Call("WskControlSocket")
    return call.queue(
        sock.Dispatch.WskControlSocket, sock, WskSetOption, option, level, 4, value, 0, None, None
    )


def _start_close(sock: WSK_SOCKET) -> Call:
    return Call("WskCloseSocket").queue(sock.Dispatch.WskCloseSocket, sock)


def _address(sock: WSK_SOCKET, which: str) -> Call:
    call = Call(which)
    call.out = SOCKADDR_STORAGE()
    return call.queue(getattr(sock.Dispatch, which), sock, call.out)


# --------------------------------------------------------------------------------------------
# The receive buffer: non-paged pool with one MDL, reused by every receive of a connection
# --------------------------------------------------------------------------------------------


class _ReceiveBuffer:
    __slots__ = ("mdl", "pool", "size")

    def __init__(self, size: int) -> None:
        pool = ExAllocatePoolWithTag(NonPagedPoolNx, size, POOL_TAG)
        if pool is None:
            raise error_from_status(S.STATUS_INSUFFICIENT_RESOURCES, "ExAllocatePoolWithTag")
        mdl = IoAllocateMdl(pool, size, False, False, None)
        if mdl is None:
            ExFreePoolWithTag(pool, POOL_TAG)
            raise error_from_status(S.STATUS_INSUFFICIENT_RESOURCES, "IoAllocateMdl")
        MmBuildMdlForNonPagedPool(mdl)
        self.pool = pool
        self.mdl = mdl
        self.size = size

    def free(self) -> None:
        IoFreeMdl(self.mdl)
        ExFreePoolWithTag(self.pool, POOL_TAG)

    @classmethod
    def take(cls, size: int) -> _ReceiveBuffer:
        """A buffer of at least ``size`` bytes: a spare one of the default size if any."""
        if size <= DEFAULT_RECEIVE_SIZE:
            with _spare_lock:
                if _spare_buffers:
                    return _spare_buffers.pop()
            return cls(DEFAULT_RECEIVE_SIZE)
        return cls(size)

    def give_back(self) -> None:
        """Done with it: kept for the next connection (up to a bound), else freed."""
        if self.size == DEFAULT_RECEIVE_SIZE:
            with _spare_lock:
                if len(_spare_buffers) < _SPARE_LIMIT:
                    _spare_buffers.append(self)
                    return
        self.free()


# Receive buffers of closed connections, for the next ones: a connection's buffer is pool
# memory (an mmap), and churn would map and unmap one per connection.  At most
# _SPARE_LIMIT are kept (64 KiB of address space each; pages never touched cost nothing).
_SPARE_LIMIT: Final = 256
_spare_buffers: list[_ReceiveBuffer] = []
_spare_lock: Final = threading.Lock()


# --------------------------------------------------------------------------------------------
# A connection, as the Pythonic layers see it
# --------------------------------------------------------------------------------------------


class ConnectionCore:
    """The state of one WSK connection socket, shared by every Pythonic layer.

    ``start_*`` issue a call; ``settle_*`` take a completed call (on the owner's thread),
    do the bookkeeping, release its IRP and MDLs, and return the result or raise the
    :class:`~pywsk.errors.NtStatusError`.  A ``settle_*`` given ``cancelled=True`` (the
    owner asked for the cancel) returns None when the cancel won (STATUS_CANCELLED).
    """

    def __init__(
        self,
        sock: WSK_SOCKET,
        family: int,
        local: tuple[Any, ...],
        remote: tuple[Any, ...],
    ) -> None:
        self.socket = sock
        self.family = family
        self.local = local
        self.remote = remote
        self.reason: DisconnectReason | None = None
        #: The peer's FIN was seen (a receive returned 0 bytes).
        self.eof = False
        #: Our graceful disconnect: the call (issued once), and its outcome.
        self.disconnect_call: Call | None = None
        self.fin_acked = False
        self.disconnect_error: NtStatusError | None = None
        self.aborted = False
        self.closed = False
        self.bytes_sent = 0
        self.bytes_received = 0
        self.sends_in_flight = 0
        self.receives_in_flight = 0
        self._buffer: _ReceiveBuffer | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        state = "closed" if self.closed else (self.reason.value if self.reason else "open")
        return f"<WSK connection {self.local} -> {self.remote} {state}>"

    # --- bookkeeping ---------------------------------------------------------------------
    def note_reason(self, reason: DisconnectReason) -> None:
        if self.reason is None:
            self.reason = reason

    def note_status(self, status: int) -> None:
        reason = _REASON_OF_STATUS.get(status & 0xFFFFFFFF)
        if reason is not None:
            self.note_reason(reason)

    def failure(self, call: Call) -> NtStatusError:
        """The exception for a failed call, in the light of what this side did meanwhile."""
        status = call.status & 0xFFFFFFFF
        if self.closed:
            return error_from_status(
                S.STATUS_INVALID_HANDLE, f"{call.name}: the connection was closed"
            )
        if status == S.STATUS_CANCELLED and self.reason is DisconnectReason.LOCAL_ABORT:
            return error_from_status(
                S.STATUS_CONNECTION_ABORTED, f"{call.name}: the connection was aborted"
            )
        return error_from_status(status, call.name)

    # --- send ------------------------------------------------------------------------------
    def start_send(self, view: memoryview) -> Call:
        call = Call("WskSend")
        buf = call.describe(view, write=False)
        with self._lock:
            self.sends_in_flight += 1
        return call.queue(self.socket.Dispatch.WskSend, self.socket, buf, 0)

    def settle_send(self, call: Call, cancelled: bool = False) -> int | None:
        """Bytes sent (all of them on success); None if the cancel we asked for won."""
        sent = call.information if isinstance(call.information, int) else 0
        with self._lock:
            self.sends_in_flight -= 1
            self.bytes_sent += sent
        call.release()
        if NT_SUCCESS(call.status):
            return sent
        if cancelled and call.status == S.STATUS_CANCELLED:
            return None
        self.note_status(call.status)
        raise self.failure(call)

    # --- receive -----------------------------------------------------------------------------
    def start_receive(self, max_bytes: int) -> Call:
        """WskReceive of at most ``max_bytes`` (capped at MAX_RECEIVE_BUFFER) into the
        connection's buffer; one receive at a time (the Pythonic layers enforce it)."""
        size = min(max_bytes, MAX_RECEIVE_BUFFER)
        call = Call("WskReceive")
        with self._lock:
            buffer = self._buffer
            if buffer is None or buffer.size < size:
                if buffer is not None:
                    buffer.give_back()
                try:
                    self._buffer = buffer = _ReceiveBuffer.take(size)
                except BaseException:
                    self._buffer = None
                    call.release()
                    raise
            self.receives_in_flight += 1
        return call.queue(
            self.socket.Dispatch.WskReceive, self.socket, WSK_BUF(buffer.mdl, 0, size), 0
        )

    def settle_receive(self, call: Call, cancelled: bool = False) -> bytes | None:
        """The bytes received (``b""``: the peer's FIN); None if the cancel we asked for won."""
        count = call.information if isinstance(call.information, int) else 0
        call.release()
        with self._lock:
            data = self._buffer.pool[:count] if count and self._buffer is not None else b""
            self.receives_in_flight -= 1
            self.bytes_received += len(data)
            self._free_buffer_if_done()
        if NT_SUCCESS(call.status):
            if not data:
                self.eof = True
                self.note_reason(DisconnectReason.PEER_GRACEFUL)
            return data
        if cancelled and call.status == S.STATUS_CANCELLED:
            return None
        self.note_status(call.status)
        raise self.failure(call)

    def _free_buffer_if_done(self) -> None:
        # Under the lock.  The buffer outlives every receive that may still write to it.
        if self.closed and self.receives_in_flight == 0 and self._buffer is not None:
            self._buffer.give_back()
            self._buffer = None

    # --- disconnect --------------------------------------------------------------------------
    def start_disconnect(self, final: bytes | None) -> Call:
        """The graceful WskDisconnect (once per connection), with an optional final buffer."""
        assert self.disconnect_call is None
        call = Call("WskDisconnect")
        buf = call.describe(memoryview(final), write=False) if final else None
        self.disconnect_call = call
        return call.queue(self.socket.Dispatch.WskDisconnect, self.socket, buf, 0)

    def settle_disconnect(self, call: Call) -> None:
        """Record the graceful disconnect's outcome (``fin_acked`` or ``disconnect_error``)."""
        with self._lock:
            if isinstance(call.information, int):
                self.bytes_sent += call.information
        call.release()
        if NT_SUCCESS(call.status):
            self.fin_acked = True
            return
        self.note_status(call.status)
        self.disconnect_error = self.failure(call)

    def start_abort(self) -> Call:
        """WskDisconnect with WSK_FLAG_ABORTIVE: an RST now."""
        self.aborted = True
        self.note_reason(DisconnectReason.LOCAL_ABORT)
        call = Call("WskDisconnect")
        return call.queue(self.socket.Dispatch.WskDisconnect, self.socket, None, WSK_FLAG_ABORTIVE)

    def settle_abort(self, call: Call) -> None:
        """An abort of a connection that is gone already is not an error."""
        call.release()

    # --- close -------------------------------------------------------------------------------
    def start_close(self) -> Call:
        """WskCloseSocket; it resets a connection not disconnected in both directions."""
        self.closed = True
        if not self.fin_acked:
            self.note_reason(DisconnectReason.LOCAL_ABORT)
        return _start_close(self.socket)

    def settle_close(self, call: Call) -> None:
        call.release()
        session().closed(self.socket)
        with self._lock:
            self._free_buffer_if_done()


# --------------------------------------------------------------------------------------------
# A listening socket
# --------------------------------------------------------------------------------------------


class ListenerCore:
    """The state of one WSK listening socket."""

    def __init__(self, sock: WSK_SOCKET, family: int, local: tuple[Any, ...]) -> None:
        self.socket = sock
        self.family = family
        self.local = local
        self.closed = False

    def __repr__(self) -> str:
        return f"<WSK listener {self.local}{' closed' if self.closed else ''}>"

    def start_accept(self) -> Call:
        call = Call("WskAccept")
        local = SOCKADDR_STORAGE()
        remote = SOCKADDR_STORAGE()
        call.out = (local, remote)
        return call.queue(self.socket.Dispatch.WskAccept, self.socket, 0, None, None, local, remote)

    def settle_accept(self, call: Call, cancelled: bool = False) -> ConnectionCore | None:
        """The accepted connection; None if the cancel we asked for won."""
        accepted = call.information
        local, remote = call.out
        call.release()
        if NT_SUCCESS(call.status):
            session().opened(accepted)
            return ConnectionCore(accepted, self.family, local.to_tuple(), remote.to_tuple())
        if cancelled and call.status == S.STATUS_CANCELLED:
            return None
        if self.closed:
            raise error_from_status(S.STATUS_INVALID_HANDLE, "WskAccept: the listener was closed")
        raise error_from_status(call.status, call.name)

    def start_close(self) -> Call:
        self.closed = True
        return _start_close(self.socket)

    def settle_close(self, call: Call) -> None:
        call.release()
        session().closed(self.socket)


# --------------------------------------------------------------------------------------------
# Multi-step sequences, written once: each yields the calls to wait for
# --------------------------------------------------------------------------------------------

Steps = Generator[Call, None, Any]


def _literal(host: str, port: int) -> SOCKADDR_IN | SOCKADDR_IN6 | None:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    return sockaddr_from_tuple((host, port))


def resolve_steps(host: str, port: int) -> Generator[Call, None, list[SOCKADDR]]:
    """Addresses for ``host``: an IP literal as it is, a name through WskGetAddressInfo."""
    literal = _literal(host, port)
    if literal is not None:
        return [literal]
    s = session()
    assert s.dispatch.WskGetAddressInfo is not None
    assert s.dispatch.WskFreeAddressInfo is not None
    result: PPVOID[ADDRINFOEXW] = PPVOID()
    hints = ADDRINFOEXW(ai_family=AF_UNSPEC, ai_socktype=SOCK_STREAM, ai_protocol=IPPROTO_TCP)
    call = Call("WskGetAddressInfo")
    call.out = (UNICODE_STRING(host), UNICODE_STRING(str(port)), hints, result)
    call.start(
        s.dispatch.WskGetAddressInfo,
        s.client,
        call.out[0],
        call.out[1],
        NS_ALL,
        None,
        hints,
        result,
        None,
        None,
    )
    try:
        yield call
        call.check()
    finally:
        call.release()
    head = result.value
    addresses: list[SOCKADDR] = []
    entry = head
    while entry is not None:
        if entry.ai_addr is not None and entry.ai_family in (AF_INET, AF_INET6):
            addresses.append(sockaddr_from_tuple(entry.ai_addr.to_tuple()))
        entry = entry.ai_next
    if head is not None:
        s.dispatch.WskFreeAddressInfo(s.client, head)
    if not addresses:
        raise error_from_status(S.STATUS_NOT_FOUND, f"no address for {host!r}")
    return addresses


def _new_socket(family: int, flags: int) -> Generator[Call, None, WSK_SOCKET]:
    s = session()
    call = Call("WskSocket").queue(
        s.dispatch.WskSocket,
        s.client,
        family,
        SOCK_STREAM,
        IPPROTO_TCP,
        flags,
        None,
        None,
        None,
        None,
        None,
    )
    try:
        yield call
        call.check()
        sock: WSK_SOCKET = call.information
    finally:
        call.release()
    s.opened(sock)
    return sock


def _checked(call: Call) -> Generator[Call, None, Any]:
    """Wait for ``call``, release it, raise its failure; the call's ``out`` / information."""
    try:
        yield call
        call.check()
        return call.out if call.out is not None else call.information
    finally:
        call.release()


def _close_quietly(sock: WSK_SOCKET) -> Generator[Call, None, None]:
    call = _start_close(sock)
    try:
        yield call
    finally:
        call.release()
        session().closed(sock)


def _wildcard(family: int) -> SOCKADDR_IN | SOCKADDR_IN6:
    return SOCKADDR_IN() if family == AF_INET else SOCKADDR_IN6()


def connect_steps(
    host: str,
    port: int,
    options: Sequence[SocketOption] = (),
    local: tuple[str, int] | None = None,
) -> Generator[Call, None, ConnectionCore]:
    """WskSocket, options, WskBind, WskConnect (cancellable), addresses: a connection.

    Each address of ``host`` is tried in turn; the last failure is raised.  A cancellation
    thrown in at any step closes the socket before it propagates.
    """
    addresses = yield from resolve_steps(host, port)
    last: NtStatusError | None = None
    for remote in addresses:
        try:
            return (yield from _connect_one(remote, options, local))
        except NtStatusError as exc:
            last = exc
    assert last is not None
    raise last


def _connect_one(
    remote: SOCKADDR, options: Sequence[SocketOption], local: tuple[str, int] | None
) -> Generator[Call, None, ConnectionCore]:
    family = remote.sa_family
    sock = yield from _new_socket(family, WSK_FLAG_CONNECTION_SOCKET)
    try:
        for level, option, value in options:
            yield from _checked(start_control(sock, level, option, value))
        here = sockaddr_from_tuple(local) if local is not None else _wildcard(family)
        yield from _checked(Call("WskBind").queue(sock.Dispatch.WskBind, sock, here, 0))
        yield from _checked(Call("WskConnect").queue(sock.Dispatch.WskConnect, sock, remote, 0))
        mine = yield from _checked(_address(sock, "WskGetLocalAddress"))
        # The remote address is the one connected to (WskGetRemoteAddress would say the
        # same; one call fewer per connection).
        theirs = remote
    except GeneratorExit:
        raise
    except BaseException:
        yield from _close_quietly(sock)
        raise
    return ConnectionCore(sock, family, mine.to_tuple(), theirs.to_tuple())


def listen_steps(
    host: str, port: int, options: Sequence[SocketOption] = ()
) -> Generator[Call, None, ListenerCore]:
    """WskSocket(WSK_FLAG_LISTEN_SOCKET), options, WskBind (binds and listens), address."""
    addresses = yield from resolve_steps(host, port)
    here = addresses[0]
    family = here.sa_family
    sock = yield from _new_socket(family, WSK_FLAG_LISTEN_SOCKET)
    try:
        for level, option, value in options:
            yield from _checked(start_control(sock, level, option, value))
        yield from _checked(Call("WskBind").queue(sock.Dispatch.WskBind, sock, here, 0))
        mine = yield from _checked(_address(sock, "WskGetLocalAddress"))
    except GeneratorExit:
        raise
    except BaseException:
        yield from _close_quietly(sock)
        raise
    return ListenerCore(sock, family, mine.to_tuple())
