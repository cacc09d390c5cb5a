"""One WSK datagram socket for ``pywsk probe --udp`` and ``pywsk serve --udp``.

What it does: :class:`WskDatagramSocket` is a WSK client of its own (WskRegister,
WskCaptureProviderNPI), with one datagram socket (WskSocket with WSK_FLAG_DATAGRAM_SOCKET,
WskBind) that keeps a WskReceiveFrom pending, re-issued from its completion routine: a datagram goes to the ``on_arrival`` callback, or without one to
:attr:`~WskDatagramSocket.inbox` (sender, payload, arrival time), a failed receive's status to :attr:`~WskDatagramSocket.errors` - so an ICMP
port unreachable, which Windows reports to a receive as STATUS_PORT_UNREACHABLE and
WskReceiveFromEvent cannot carry, is seen.  :meth:`~WskDatagramSocket.send` sends a batch
to one destination with WskSendMessages and waits (bounded) for its IRP.

What it refuses: waits without a bound; sending before it is bound.

What always holds: every IRP it issues is waited for (or cancelled and then waited for) and
freed; :meth:`~WskDatagramSocket.close` disables the event, closes the socket and
deregisters, also after a failure.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

from ..nt import (
    IRP,
    KEVENT,
    STATUS_MORE_PROCESSING_REQUIRED,
    STATUS_SUCCESS,
    ExAllocatePoolWithTag,
    Executive,
    ExFreePoolWithTag,
    IoAllocateIrp,
    IoAllocateMdl,
    IoCancelIrp,
    IoFreeIrp,
    IoFreeMdl,
    IoReuseIrp,
    IoSetCompletionRoutine,
    KeInitializeEvent,
    KernelMode,
    KeSetEvent,
    KeWaitForSingleObject,
    MmBuildMdlForNonPagedPool,
    NonPagedPoolNx,
    SynchronizationEvent,
    status_name,
)
from ..wsk import (
    AF_INET,
    AF_INET6,
    IPPROTO_UDP,
    MAKE_WSK_VERSION,
    SOCK_DGRAM,
    SOCKADDR_IN,
    SOCKADDR_IN6,
    WSK_BUF,
    WSK_BUF_LIST,
    WSK_CLIENT_DISPATCH,
    WSK_CLIENT_NPI,
    WSK_FLAG_DATAGRAM_SOCKET,
    WSK_INFINITE_WAIT,
    WSK_PROVIDER_DATAGRAM_DISPATCH,
    WSK_PROVIDER_NPI,
    WSK_REGISTRATION,
    WSK_SOCKET,
    WskCaptureProviderNPI,
    WskDeregister,
    WskReleaseProviderNPI,
    sockaddr_from_tuple,
)

__all__ = ["Arrival", "WskDatagramSocket", "WskDatagramError"]

_TAG: Final = b"pwUd"
#: WskReceiveFrom requests kept pending: one, re-issued from its completion routine.  With
#: several, a routine that re-issues and completes inline runs before the routines of the
#: receives already completed behind it, and the datagrams would be counted out of order.
RECEIVES: Final = 1
MAX_DATAGRAM: Final = 65536
STATUS_CANCELLED: Final = 0xC0000120
#: Datagrams per WskSendMessages at most.
SEND_BATCH: Final = 64


class WskDatagramError(RuntimeError):
    """A WSK call of the datagram socket failed; ``status`` is its NTSTATUS."""

    def __init__(self, what: str, status: int) -> None:
        super().__init__(f"{what}: {status_name(status)}")
        self.status = status


@dataclass(frozen=True)
class Arrival:
    """One datagram WskReceiveFromEvent indicated: who sent it, what, when (monotonic)."""

    sender: tuple[Any, ...]
    payload: bytes
    at: float


@dataclass
class _Slot:
    """One pending WskReceiveFrom: its IRP, buffer, MDL and sender out-parameter."""

    irp: IRP
    pool: Any
    mdl: Any
    remote: SOCKADDR_IN | SOCKADDR_IN6


class WskDatagramSocket:
    """A bound WSK datagram socket receiving by event (see the module's documentation)."""

    def __init__(
        self,
        host: str,
        port: int,
        on_arrival: Callable[[Arrival], None] | None = None,
        *,
        receives: bool = True,
    ):
        self.family = AF_INET6 if ":" in host else AF_INET
        self.on_arrival = on_arrival
        self.inbox: list[Arrival] = []
        self.arrivals = 0
        self.last_arrival = 0.0
        #: The status the last dispatch function :meth:`try_call` made returned, when it was
        #: called and when its IRP was seen complete (``time.time()``).
        self.returned = 0
        self.called_at = self.completed_at = 0.0
        #: Failed receives: (NTSTATUS, monotonic time), e.g. STATUS_PORT_UNREACHABLE.
        self.errors: list[tuple[int, float]] = []
        self.cond = threading.Condition()
        self._slots: list[_Slot] = []
        self._pending = 0
        #: WskReceiveFrom calls being made right now (by completion routines re-issuing).
        self._issuing = 0
        self._closing = False
        self.registration = WSK_REGISTRATION()
        self.provider = WSK_PROVIDER_NPI()
        self.sock: WSK_SOCKET | None = None
        self._registered = self._captured = False
        status = WskRegisterClient(self.registration)
        if status != STATUS_SUCCESS:
            raise WskDatagramError("WskRegister", status)
        self._registered = True
        try:
            status = WskCaptureProviderNPI(self.registration, WSK_INFINITE_WAIT, self.provider)
            if status != STATUS_SUCCESS:
                raise WskDatagramError("WskCaptureProviderNPI", status)
            self._captured = True
            dispatch = self.provider.Dispatch
            assert dispatch is not None
            status, sock = self.call(
                "WskSocket", dispatch.WskSocket, self.provider.Client, self.family,
                SOCK_DGRAM, IPPROTO_UDP, WSK_FLAG_DATAGRAM_SOCKET, None, None, None, None,
                None,
            )  # fmt: skip
            self.sock = cast(WSK_SOCKET, sock)
            self.call(
                "WskBind", self.table.WskBind, self.sock, sockaddr_from_tuple((host, port)), 0
            )
            local = SOCKADDR_IN6() if self.family == AF_INET6 else SOCKADDR_IN()
            self.call("WskGetLocalAddress", self.table.WskGetLocalAddress, self.sock, local)
            self.local: tuple[Any, ...] = local.to_tuple()
            if receives:  # else the caller issues its own WskReceiveFrom requests
                self._start_receives()
        except BaseException:
            self.close()
            raise

    @property
    def table(self) -> WSK_PROVIDER_DATAGRAM_DISPATCH:
        assert self.sock is not None
        return cast(WSK_PROVIDER_DATAGRAM_DISPATCH, self.sock.Dispatch)

    # --- one IRP, waited for ----------------------------------------------------------------------
    def call(
        self, what: str, function: Callable[..., int], *args: Any, timeout: float = 10.0
    ) -> tuple[int, Any]:
        """``function(*args, Irp)``; wait (at most ``timeout``, then cancel and wait) for the
        IRP; raise :class:`WskDatagramError` unless it succeeded."""
        status, information = self.try_call(function, *args, timeout=timeout)
        if status != STATUS_SUCCESS:
            raise WskDatagramError(what, status)
        return status, information

    def try_call(
        self, function: Callable[..., int], *args: Any, timeout: float = 10.0
    ) -> tuple[int, Any]:
        """As :meth:`call`, returning the final status instead of raising;
        :attr:`returned` keeps what the dispatch function itself returned."""
        done = KEVENT()
        KeInitializeEvent(done, SynchronizationEvent, False)
        irp = IoAllocateIrp(1, False)
        if irp is None:
            raise WskDatagramError("IoAllocateIrp", 0xC000009A)

        def completed(_device: Any, _irp: IRP, event: KEVENT) -> int:
            KeSetEvent(event, 0, False)
            return STATUS_MORE_PROCESSING_REQUIRED

        IoSetCompletionRoutine(irp, completed, done, True, True, True)
        self.called_at = time.time()
        self.returned = function(*args, irp)
        if KeWaitForSingleObject(done, Executive, KernelMode, False, -int(timeout * 1e7)) != 0:
            IoCancelIrp(irp)
            KeWaitForSingleObject(done, Executive, KernelMode, False, None)
        self.completed_at = time.time()
        result = irp.IoStatus.Status, irp.IoStatus.Information
        IoFreeIrp(irp)
        return result

    # --- receiving --------------------------------------------------------------------------------
    def _start_receives(self) -> None:
        for _ in range(RECEIVES):
            pool = ExAllocatePoolWithTag(NonPagedPoolNx, MAX_DATAGRAM, _TAG)
            mdl = IoAllocateMdl(pool, MAX_DATAGRAM, False, False, None) if pool else None
            irp = IoAllocateIrp(1, False)
            if pool is None or mdl is None or irp is None:
                raise WskDatagramError("allocating a receive", 0xC000009A)
            MmBuildMdlForNonPagedPool(mdl)
            slot = _Slot(
                irp, pool, mdl, SOCKADDR_IN6() if self.family == AF_INET6 else SOCKADDR_IN()
            )
            self._slots.append(slot)
            self._issue(slot)

    def _issue(self, slot: _Slot) -> None:
        with self.cond:
            sock = self.sock
            if self._closing or sock is None:
                return
            self._pending += 1
            self._issuing += 1  # close waits for it: no WskCloseSocket while a call is inside
        try:
            IoReuseIrp(slot.irp, 0xC0000001)
            IoSetCompletionRoutine(slot.irp, self._received, slot, True, True, True)
            self.table.WskReceiveFrom(
                sock, WSK_BUF(slot.mdl, 0, MAX_DATAGRAM), 0, slot.remote, None, None, None,
                slot.irp,
            )  # fmt: skip
        finally:
            with self.cond:
                self._issuing -= 1
                self.cond.notify_all()

    def _received(self, _device: Any, irp: IRP, slot: _Slot) -> int:
        status, information = irp.IoStatus.Status, int(irp.IoStatus.Information)
        now = time.monotonic()
        arrival = None
        with self.cond:
            self._pending -= 1
            if status == STATUS_SUCCESS:
                arrival = Arrival(slot.remote.to_tuple(), bytes(slot.pool[:information]), now)
                self.arrivals += 1
                self.last_arrival = now
                if self.on_arrival is None:  # else the callback takes it: nothing kept here
                    self.inbox.append(arrival)
            elif status != STATUS_CANCELLED:
                self.errors.append((status, now))
            self.cond.notify_all()
        if arrival is not None and self.on_arrival is not None:
            self.on_arrival(arrival)
        if status != STATUS_CANCELLED:
            self._issue(slot)
        return STATUS_MORE_PROCESSING_REQUIRED

    def wait_quiet(self, quiet: float, limit: float) -> None:
        """Wait until no datagram arrived for ``quiet`` seconds (at most ``limit``)."""
        end = time.monotonic() + limit
        with self.cond:
            while time.monotonic() < end:
                count = self.arrivals
                self.cond.wait(min(quiet, max(0.0, end - time.monotonic())))
                if self.arrivals == count and time.monotonic() - self.last_arrival >= quiet:
                    return

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait (at most ``timeout``) until ``predicate()`` holds, under the inbox's lock."""
        with self.cond:
            return self.cond.wait_for(predicate, max(0.0, timeout))

    # --- sending ----------------------------------------------------------------------------------
    def send(self, payloads: Sequence[bytes], to: tuple[Any, ...]) -> tuple[int, int]:
        """Send ``payloads`` to ``to`` with WskSendMessages (SEND_BATCH a call); returns
        (datagrams sent, bytes sent); raises :class:`WskDatagramError` on a failed IRP."""
        sent = total = 0
        remote = sockaddr_from_tuple(to)
        for start in range(0, len(payloads), SEND_BATCH):
            batch = payloads[start : start + SEND_BATCH]
            size = max(1, sum(len(p) for p in batch))
            pool = ExAllocatePoolWithTag(NonPagedPoolNx, size, _TAG)
            mdl = IoAllocateMdl(pool, size, False, False, None) if pool is not None else None
            if pool is None or mdl is None:
                if pool is not None:
                    ExFreePoolWithTag(pool, _TAG)
                raise WskDatagramError("ExAllocatePoolWithTag", 0xC000009A)
            try:
                MmBuildMdlForNonPagedPool(mdl)
                offset, head = size, None
                pool[: sum(len(p) for p in batch)] = b"".join(batch)
                for payload in reversed(batch):
                    offset -= len(payload)
                    head = WSK_BUF_LIST(head, WSK_BUF(mdl, offset, len(payload)))
                _, information = self.call(
                    "WskSendMessages", self.table.WskSendMessages, self.sock, head, 0, remote,
                    0, None,
                )  # fmt: skip
                sent += len(batch)
                total += int(information)
            finally:
                IoFreeMdl(mdl)
                ExFreePoolWithTag(pool, _TAG)
        return sent, total

    # --- closing ----------------------------------------------------------------------------------
    def close(self) -> None:
        """WskCloseSocket (pending receives complete with STATUS_CANCELLED first), then free
        the receives' buffers and deregister."""
        with self.cond:
            self._closing = True
            # A completion routine may be re-issuing its receive right now (it checked
            # _closing just before): WskCloseSocket waits until that call has returned.
            self.cond.wait_for(lambda: self._issuing == 0, 10.0)
        if self.sock is not None:
            self.try_call(self.table.WskCloseSocket, self.sock)
            self.sock = None
        self.wait_for(lambda: self._pending == 0, 10.0)
        for slot in self._slots:
            IoFreeMdl(slot.mdl)
            ExFreePoolWithTag(slot.pool, _TAG)
            IoFreeIrp(slot.irp)
        self._slots.clear()
        if self._captured:
            self._captured = False
            WskReleaseProviderNPI(self.registration)
        if self._registered:
            self._registered = False
            WskDeregister(self.registration)


def WskRegisterClient(registration: WSK_REGISTRATION) -> int:
    """WskRegister with a WSK 1.0 client NPI."""
    from ..wsk import WskRegister

    npi = WSK_CLIENT_NPI(None, WSK_CLIENT_DISPATCH(MAKE_WSK_VERSION(1, 0), 0, None))
    status: int = WskRegister(npi, registration)
    return status
