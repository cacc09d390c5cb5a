"""pywsk, faithfully: a WSK client driver written as a Windows kernel driver would write it.

Everything goes through the WSK dispatch tables with IRPs and completion routines.  The
program's main thread registers, captures the provider NPI, starts the first requests (each a
cross-thread hand-off to the provider thread) and waits on a KEVENT; from then on every
request is issued from a completion routine, on the provider thread at DISPATCH_LEVEL, and
runs inline there.  A graceful WskDisconnect completes only when our FIN is acknowledged.

Each connection slot owns its IRPs and buffers and reuses them (IoReuseIrp), as a driver
with a fixed number of connections in flight would; the payload is one non-paged pool block
with one MDL, shared read-only by every send.

Churn client, per connection:  WskSocketConnect -> (WskReceive | WskSend | WskDisconnect)
issued together; receives re-issued until one completes with 0 bytes; when the disconnect
has completed (FIN acknowledged) and EOF has been seen -> WskCloseSocket -> next connection.
Churn server: a listening socket (WskSocket with WSK_FLAG_LISTEN_SOCKET; WskBind binds and
listens) with ``ACCEPTS`` WskAccepts outstanding; per connection: WskReceive to EOF, then
WskSend (the echo) and WskDisconnect; when both completed -> WskCloseSocket.
Bulk: the sender keeps ``SENDS`` WskSends of CHUNK bytes outstanding, then WskDisconnect,
then waits for the receiver's EOF; the receiver keeps ``RECEIVES`` WskReceives outstanding
(never fewer than two, so a receive re-issued in a completion routine queues instead of
completing inline - a driver's defence against unbounded recursion).

Congestion control: WSK has no socket option for it, so for the cubic runs the harness sets
``TCP_CONGESTION`` on the provider's Linux socket (``Socket.sock``) right after the connect
and before any data - the one place the benchmark reaches below the WSK surface.

See :mod:`benchmarks.common` for the command line.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Final, cast

from pywsk.nt import (
    IRP,
    KEVENT,
    MDL,
    STATUS_MORE_PROCESSING_REQUIRED,
    STATUS_PENDING,
    STATUS_SUCCESS,
    STATUS_UNSUCCESSFUL,
    ExAllocatePoolWithTag,
    Executive,
    IoAllocateIrp,
    IoAllocateMdl,
    IoFreeIrp,
    IoReuseIrp,
    IoSetCompletionRoutine,
    KeInitializeEvent,
    KernelMode,
    KeSetEvent,
    KeWaitForSingleObject,
    MmBuildMdlForNonPagedPool,
    NonPagedPoolNx,
    NotificationEvent,
    SynchronizationEvent,
    status_name,
)
from pywsk.wsk import (
    AF_INET,
    IPPROTO_TCP,
    MAKE_WSK_VERSION,
    PSIZE_T,
    SIO_WSK_QUERY_IDEAL_SEND_BACKLOG,
    SIO_WSK_QUERY_RECEIVE_BACKLOG,
    SOCK_STREAM,
    SOCKADDR_IN,
    WSK_BUF,
    WSK_CLIENT_DISPATCH,
    WSK_CLIENT_NPI,
    WSK_FLAG_LISTEN_SOCKET,
    WSK_INFINITE_WAIT,
    WSK_PROVIDER_CONNECTION_DISPATCH,
    WSK_PROVIDER_DISPATCH,
    WSK_PROVIDER_LISTEN_DISPATCH,
    WSK_PROVIDER_NPI,
    WSK_REGISTRATION,
    WSK_SOCKET,
    WskCaptureProviderNPI,
    WskDeregister,
    WskIoctl,
    WskRegister,
    WskReleaseProviderNPI,
    sockaddr_from_tuple,
)

from . import dgram_pywsk
from .common import (
    CHUNK,
    HOST,
    MSG,
    PAYLOAD,
    announce_port,
    dispatch,
    emit,
    idle_ready,
    now,
    restart_cpu_clock,
    set_congestion,
    wait_for_go,
)

#: The name results carry (a variant module changes it before dispatching).
IMPL = "pywsk"
#: WskAccepts the churn server keeps outstanding.
ACCEPTS: Final = 16
#: WskSends the bulk sender keeps outstanding.
SENDS: Final = 4
#: WskReceives the bulk receiver keeps outstanding.
RECEIVES: Final = 2
#: Seconds the main thread waits for the work to finish.
TIMEOUT_S: Final = 120
_TIMEOUT: Final = -TIMEOUT_S * 10_000_000  # relative, in 100-ns units
_TAG: Final = b"wskb"

Routine = Callable[[Any, IRP, Any], int]


def _pool_buffer(size: int, data: bytes | None = None) -> tuple[Any, MDL]:
    """Non-paged pool of ``size`` bytes (page-aligned), optionally filled, and its MDL."""
    pool = ExAllocatePoolWithTag(NonPagedPoolNx, size, _TAG)
    assert pool is not None
    if data is not None:
        pool[: len(data)] = data
    mdl = IoAllocateMdl(pool, size, False, False, None)
    assert mdl is not None
    MmBuildMdlForNonPagedPool(mdl)
    return pool, mdl


def _irp() -> IRP:
    irp = IoAllocateIrp(1, False)
    assert irp is not None
    return irp


def _arm(irp: IRP, routine: Routine, context: Any) -> IRP:
    """Make a completed (or new) IRP ready for its next request."""
    IoReuseIrp(irp, STATUS_UNSUCCESSFUL)
    IoSetCompletionRoutine(irp, routine, context, True, True, True)
    return irp


def _sync_done(_device: Any, _irp: IRP, event: KEVENT) -> int:
    KeSetEvent(event, 0, False)
    return STATUS_MORE_PROCESSING_REQUIRED


class Driver:
    """One WSK client registration, and the synchronous calls a driver makes at PASSIVE_LEVEL."""

    def __init__(self) -> None:
        self.registration = WSK_REGISTRATION()
        npi = WSK_CLIENT_NPI(None, WSK_CLIENT_DISPATCH(MAKE_WSK_VERSION(1, 0), 0, None))
        status = WskRegister(npi, self.registration)
        assert status == STATUS_SUCCESS, status_name(status)
        self.provider = WSK_PROVIDER_NPI()
        status = WskCaptureProviderNPI(self.registration, WSK_INFINITE_WAIT, self.provider)
        assert status == STATUS_SUCCESS, status_name(status)
        assert self.provider.Dispatch is not None
        self.dispatch: WSK_PROVIDER_DISPATCH = self.provider.Dispatch
        self.client = self.provider.Client

    def call(self, function: Callable[..., int], *args: Any) -> tuple[int, Any]:
        """Issue one request on a fresh IRP and wait for its completion (sync over async)."""
        event = KEVENT()
        KeInitializeEvent(event, SynchronizationEvent, False)
        irp = _irp()
        IoSetCompletionRoutine(irp, _sync_done, event, True, True, True)
        function(*args, irp)  # STATUS_PENDING or not, the routine sets the event
        _wait(event, "request")
        result = irp.IoStatus.Status, irp.IoStatus.Information
        IoFreeIrp(irp)
        return result

    def connect(self, port: int) -> WSK_SOCKET:
        """WskSocketConnect to 127.0.0.1:``port``, synchronously."""
        status, sock = self.call(
            self.dispatch.WskSocketConnect,
            self.client,
            SOCK_STREAM,
            IPPROTO_TCP,
            sockaddr_from_tuple((HOST, 0)),
            sockaddr_from_tuple((HOST, port)),
            0,
            None,
            None,
            None,
            None,
            None,
        )
        assert status == STATUS_SUCCESS, status_name(status)
        return cast(WSK_SOCKET, sock)

    def listen(self) -> tuple[WSK_SOCKET, int]:
        """A listening socket bound (and listening) on 127.0.0.1, port chosen by the system."""
        status, sock = self.call(
            self.dispatch.WskSocket,
            self.client,
            AF_INET,
            SOCK_STREAM,
            IPPROTO_TCP,
            WSK_FLAG_LISTEN_SOCKET,
            None,
            None,
            None,
            None,
            None,
        )
        assert status == STATUS_SUCCESS, status_name(status)
        listen = cast(WSK_SOCKET, sock)
        table = listen_dispatch(listen)
        status, _ = self.call(table.WskBind, listen, sockaddr_from_tuple((HOST, 0)), 0)
        assert status == STATUS_SUCCESS, status_name(status)
        local = SOCKADDR_IN()
        status, _ = self.call(table.WskGetLocalAddress, listen, local)
        assert status == STATUS_SUCCESS, status_name(status)
        return listen, local.port

    def close(self) -> None:
        WskReleaseProviderNPI(self.registration)
        WskDeregister(self.registration)


def conn_dispatch(sock: WSK_SOCKET) -> WSK_PROVIDER_CONNECTION_DISPATCH:
    return cast(WSK_PROVIDER_CONNECTION_DISPATCH, sock.Dispatch)


def listen_dispatch(sock: WSK_SOCKET) -> WSK_PROVIDER_LISTEN_DISPATCH:
    return cast(WSK_PROVIDER_LISTEN_DISPATCH, sock.Dispatch)


def _notification() -> KEVENT:
    event = KEVENT()
    KeInitializeEvent(event, NotificationEvent, False)
    return event


def _wait(event: KEVENT, what: str) -> None:
    status = KeWaitForSingleObject(event, Executive, KernelMode, False, _TIMEOUT)
    if status != STATUS_SUCCESS:
        raise TimeoutError(f"{what}: not finished within {TIMEOUT_S} s")


# ------------------------------------------------------------------------------- churn ---


class _Idle:
    """An idle connection with a WskReceive pending, as a driver waiting for data has."""

    __slots__ = ("buf", "irp", "sock")

    def __init__(self, sock: WSK_SOCKET) -> None:
        self.sock = sock
        self.irp = _irp()
        self.buf = _pool_buffer(4096)


def _idle_done(_device: Any, _irp: IRP, _context: Any) -> int:
    return STATUS_MORE_PROCESSING_REQUIRED


def hold_idle(driver: Driver, port: int, count: int) -> list[_Idle]:
    """Open ``count`` connections, each with a WskReceive pending (run from the main thread)."""
    idle = []
    for _ in range(count):
        conn = _Idle(driver.connect(port))
        _arm(conn.irp, _idle_done, None)
        conn_dispatch(conn.sock).WskReceive(conn.sock, WSK_BUF(conn.buf[1], 0, 4096), 0, conn.irp)
        idle.append(conn)
    return idle


def release_idle(driver: Driver, idle: list[_Idle]) -> None:
    """Close the idle connections (their pending receives complete with STATUS_CANCELLED)."""
    for conn in idle:
        driver.call(conn_dispatch(conn.sock).WskCloseSocket, conn.sock)


class _ClientSlot:
    """One connection in flight on the client, with its own IRPs and receive buffer."""

    __slots__ = ("buf", "connect", "disc", "done", "got", "mdl", "recv", "send", "sock", "table")

    def __init__(self) -> None:
        self.connect, self.send, self.disc, self.recv = _irp(), _irp(), _irp(), _irp()
        self.buf, self.mdl = _pool_buffer(2 * MSG)
        self.sock: WSK_SOCKET | None = None
        self.table: WSK_PROVIDER_CONNECTION_DISPATCH | None = None
        self.got = 0
        self.done = 0  # bit 1: disconnect completed, bit 2: EOF, bit 4: send completed


class ChurnClient:
    """N connections, CONC in flight, entirely in completion routines."""

    def __init__(self, driver: Driver, port: int, n: int, conc: int) -> None:
        self.driver = driver
        self.n = n
        self.conc = conc
        self.local = sockaddr_from_tuple((HOST, 0))
        self.remote = sockaddr_from_tuple((HOST, port))
        self.payload = WSK_BUF(_pool_buffer(MSG, PAYLOAD)[1], 0, MSG)
        self.started = self.conns = self.bytes = self.bad = 0
        self.slots = 0
        self.ramping = False
        self.finished = _notification()
        self.t_end = 0.0
        self.error: str | None = None

    def run(self) -> float:
        """Start the first connection from this thread and wait for all N; returns the
        seconds.  Its completion routine opens the other CONC - 1 slots: from then on all
        state is touched on the provider thread only, as a driver without locks must."""
        restart_cpu_clock()
        t0 = now()
        self.slots = 1
        self.start(_ClientSlot())
        _wait(self.finished, "churn-client")
        if self.error is not None:
            raise RuntimeError(self.error)
        return self.t_end - t0

    def fail(self, what: str, status: int) -> None:
        self.error = f"{what}: {status_name(status)}"
        KeSetEvent(self.finished, 0, False)

    def start(self, slot: _ClientSlot) -> None:
        self.started += 1
        slot.got = 0
        slot.done = 0
        self.driver.dispatch.WskSocketConnect(
            self.driver.client,
            SOCK_STREAM,
            IPPROTO_TCP,
            self.local,
            self.remote,
            0,
            None,
            None,
            None,
            None,
            None,
            _arm(slot.connect, self.on_connected, slot),
        )

    def on_connected(self, _device: Any, irp: IRP, slot: _ClientSlot) -> int:
        if irp.IoStatus.Status != STATUS_SUCCESS:
            self.fail("WskSocketConnect", irp.IoStatus.Status)
            return STATUS_MORE_PROCESSING_REQUIRED
        sock = slot.sock = irp.IoStatus.Information
        table = slot.table = conn_dispatch(sock)
        if not self.ramping:  # (not again inside a routine the ramp itself ran inline)
            self.ramping = True
            while self.slots < min(self.conc, self.n):
                self.slots += 1
                self.start(_ClientSlot())
            self.ramping = False
        table.WskReceive(
            sock, WSK_BUF(slot.mdl, 0, 2 * MSG), 0, _arm(slot.recv, self.on_received, slot)
        )
        table.WskSend(sock, self.payload, 0, _arm(slot.send, self.on_sent, slot))
        table.WskDisconnect(sock, None, 0, _arm(slot.disc, self.on_disconnected, slot))
        return STATUS_MORE_PROCESSING_REQUIRED

    def on_sent(self, _device: Any, irp: IRP, slot: _ClientSlot) -> int:
        if irp.IoStatus.Status != STATUS_SUCCESS or irp.IoStatus.Information != MSG:
            self.bad += 1
        self.progress(slot, 4)
        return STATUS_MORE_PROCESSING_REQUIRED

    def on_disconnected(self, _device: Any, irp: IRP, slot: _ClientSlot) -> int:
        if irp.IoStatus.Status != STATUS_SUCCESS:
            self.bad += 1
        self.progress(slot, 1)
        return STATUS_MORE_PROCESSING_REQUIRED

    def on_received(self, _device: Any, irp: IRP, slot: _ClientSlot) -> int:
        got = irp.IoStatus.Information
        if irp.IoStatus.Status != STATUS_SUCCESS:
            self.bad += 1
            got = 0
        if got == 0:
            self.progress(slot, 2)
            return STATUS_MORE_PROCESSING_REQUIRED
        slot.got += got
        assert slot.sock is not None
        assert slot.table is not None
        room = 2 * MSG - slot.got
        if room == 0:  # more than the echo: a failed run, not a hang
            self.bad += 1
            self.progress(slot, 2)
            return STATUS_MORE_PROCESSING_REQUIRED
        slot.table.WskReceive(
            slot.sock,
            WSK_BUF(slot.mdl, slot.got, room),
            0,
            _arm(slot.recv, self.on_received, slot),
        )
        return STATUS_MORE_PROCESSING_REQUIRED

    def progress(self, slot: _ClientSlot, bit: int) -> None:
        slot.done |= bit
        if slot.done == 7:  # sent, disconnected (FIN acknowledged) and EOF: close
            assert slot.sock is not None
            assert slot.table is not None
            slot.table.WskCloseSocket(slot.sock, _arm(slot.connect, self.on_closed, slot))

    def on_closed(self, _device: Any, irp: IRP, slot: _ClientSlot) -> int:
        if irp.IoStatus.Status != STATUS_SUCCESS:
            self.bad += 1
        self.conns += 1
        self.bytes += slot.got
        if slot.got != MSG or slot.buf[:MSG] != PAYLOAD:
            self.bad += 1
        slot.sock = slot.table = None
        if self.started < self.n:
            self.start(slot)
        elif self.conns == self.n:
            self.t_end = now()
            KeSetEvent(self.finished, 0, False)
        return STATUS_MORE_PROCESSING_REQUIRED


class _ServerSlot:
    """One accepted connection on the server."""

    __slots__ = ("buf", "disc", "done", "echo", "got", "mdl", "recv", "send", "sock", "table")

    def __init__(self) -> None:
        self.recv, self.send, self.disc = _irp(), _irp(), _irp()
        self.buf, self.mdl = _pool_buffer(4 * MSG)
        self.sock: WSK_SOCKET | None = None
        self.table: WSK_PROVIDER_CONNECTION_DISPATCH | None = None
        self.got = 0
        self.done = 0  # bit 1: echo sent, bit 2: disconnect completed


class ChurnServer:
    """Accepts, echoes and disconnects N connections.  With ``idle``, a second listening
    socket accepts the idle connections, each of which then has a WskReceive pending until
    the client closes it (they are not counted)."""

    def __init__(self, driver: Driver, n: int, idle: int) -> None:
        self.driver = driver
        self.n = n
        self.listen, self.port = driver.listen()
        self.idle_listen: WSK_SOCKET | None = None
        self.idle_port: int | None = None
        if idle:
            self.idle_listen, self.idle_port = driver.listen()
        self.free: list[_ServerSlot] = []
        self.started = False
        self.idle_expected = idle
        self.idle_accepted = 0
        self.conns = self.bytes = self.bad = 0
        self.finished = _notification()
        self.error: str | None = None

    def run(self) -> None:
        for listen in (self.listen, self.idle_listen):
            if listen is not None:
                for _ in range(ACCEPTS):
                    self.accept(_irp(), listen)
        _wait(self.finished, "churn-server")
        if self.error is not None:
            raise RuntimeError(self.error)

    def accept(self, irp: IRP, listen: WSK_SOCKET) -> None:
        """Issue WskAccepts on ``irp`` until one pends.  A connection waiting in the backlog
        completes the accept inside the call; the loop takes the next one, so a long
        backlog cannot recurse (the routine re-issues only after a pended accept)."""
        table = listen_dispatch(listen)
        while self.error is None:
            status = table.WskAccept(
                listen, 0, None, None, None, None, _arm(irp, self.on_accepted, listen)
            )
            if status == STATUS_PENDING:
                return

    def on_accepted(self, _device: Any, irp: IRP, listen: WSK_SOCKET) -> int:
        if irp.IoStatus.Status != STATUS_SUCCESS:
            self.error = f"WskAccept: {status_name(irp.IoStatus.Status)}"
            KeSetEvent(self.finished, 0, False)
            return STATUS_MORE_PROCESSING_REQUIRED
        if listen is self.idle_listen:
            self.idle_accepted += 1
            if self.idle_accepted == self.idle_expected:
                idle_ready()
        elif not self.started:
            restart_cpu_clock()  # the churn starts (idle connections came before)
            self.started = True
        slot = self.free.pop() if self.free else _ServerSlot()
        slot.sock = irp.IoStatus.Information
        slot.table = conn_dispatch(slot.sock)
        slot.got = 0
        slot.done = 0
        self.receive(slot)
        if irp.PendingReturned:
            self.accept(irp, listen)  # the next connection
        return STATUS_MORE_PROCESSING_REQUIRED

    def receive(self, slot: _ServerSlot) -> None:
        assert slot.sock is not None
        assert slot.table is not None
        slot.table.WskReceive(
            slot.sock,
            WSK_BUF(slot.mdl, slot.got, 4 * MSG - slot.got),
            0,
            _arm(slot.recv, self.on_received, slot),
        )

    def on_received(self, _device: Any, irp: IRP, slot: _ServerSlot) -> int:
        assert slot.sock is not None
        assert slot.table is not None
        status, got = irp.IoStatus.Status, irp.IoStatus.Information
        if status == STATUS_SUCCESS and got and slot.got + got < 4 * MSG:
            slot.got += got
            self.receive(slot)
            return STATUS_MORE_PROCESSING_REQUIRED
        if status != STATUS_SUCCESS or got or slot.got == 0:
            # An idle connection the client closed (or reset), or a broken one: close it.
            if slot.got:
                self.bad += 1
            slot.table.WskCloseSocket(slot.sock, _arm(slot.recv, self.on_closed, slot))
            return STATUS_MORE_PROCESSING_REQUIRED
        # EOF after the message: echo it, then the graceful disconnect (queued behind it).
        slot.table.WskSend(
            slot.sock, WSK_BUF(slot.mdl, 0, slot.got), 0, _arm(slot.send, self.on_sent, slot)
        )
        slot.table.WskDisconnect(slot.sock, None, 0, _arm(slot.disc, self.on_disconnected, slot))
        return STATUS_MORE_PROCESSING_REQUIRED

    def on_sent(self, _device: Any, irp: IRP, slot: _ServerSlot) -> int:
        if irp.IoStatus.Status != STATUS_SUCCESS or irp.IoStatus.Information != slot.got:
            self.bad += 1
        self.progress(slot, 1)
        return STATUS_MORE_PROCESSING_REQUIRED

    def on_disconnected(self, _device: Any, irp: IRP, slot: _ServerSlot) -> int:
        if irp.IoStatus.Status != STATUS_SUCCESS:
            self.bad += 1
        self.progress(slot, 2)
        return STATUS_MORE_PROCESSING_REQUIRED

    def progress(self, slot: _ServerSlot, bit: int) -> None:
        slot.done |= bit
        if slot.done == 3:
            assert slot.sock is not None
            assert slot.table is not None
            if slot.got != MSG or slot.buf[:MSG] != PAYLOAD:
                self.bad += 1
            self.conns += 1
            self.bytes += slot.got
            slot.table.WskCloseSocket(slot.sock, _arm(slot.recv, self.on_closed, slot))

    def on_closed(self, _device: Any, irp: IRP, slot: _ServerSlot) -> int:
        if irp.IoStatus.Status != STATUS_SUCCESS:
            self.bad += 1
        slot.sock = slot.table = None
        self.free.append(slot)
        if self.conns == self.n:
            KeSetEvent(self.finished, 0, False)
        return STATUS_MORE_PROCESSING_REQUIRED


def churn_server(n_arg: str, idle_arg: str = "0") -> int:
    driver = Driver()
    server = ChurnServer(driver, int(n_arg), int(idle_arg))
    announce_port(server.port, server.idle_port)
    server.run()
    emit("server", IMPL, conns=server.conns, bytes=server.bytes, bad=server.bad)
    os._exit(int(server.bad != 0 or server.conns != server.n))  # idle connections stay open


def churn_client(
    port_arg: str, n_arg: str, conc_arg: str, idle_arg: str = "0", idle_port: str = "0"
) -> int:
    port, n, conc = int(port_arg), int(n_arg), int(conc_arg)
    driver = Driver()
    idle = hold_idle(driver, int(idle_port), int(idle_arg))
    if idle:
        wait_for_go()
    client = ChurnClient(driver, port, n, conc)
    seconds = client.run()
    emit(
        "client",
        IMPL,
        conns=client.conns,
        bytes=client.bytes,
        bad=client.bad,
        seconds=seconds,
        rate=client.conns / seconds,
        idle=len(idle),
    )
    release_idle(driver, idle)
    driver.close()
    return int(client.bad != 0 or client.conns != n)


# -------------------------------------------------------------------------------- bulk ---


class BulkSender:
    """SENDS WskSends outstanding until ``total`` bytes, WskDisconnect, then the peer's EOF.

    The main thread issues two requests: the receive that waits for the peer's EOF, and
    SIO_WSK_QUERY_IDEAL_SEND_BACKLOG, whose completion routine (on the provider thread)
    starts the sends - so every later request and all state belong to the provider thread.
    A send that completes inside the call that issued it is followed by the issuing loop,
    not by its completion routine (which re-issues only when ``PendingReturned``): inline
    completions cannot recurse without bound.
    """

    def __init__(self, driver: Driver, sock: WSK_SOCKET, total: int) -> None:
        self.sock = sock
        self.table = conn_dispatch(sock)
        self.total = total
        self.issued = self.sent = 0
        self.chunk = _pool_buffer(CHUNK, b"b" * CHUNK)[1]
        self.eof_buf = _pool_buffer(4096)[1]
        self.backlog = PSIZE_T(0)
        self.finished = _notification()
        self.error: str | None = None

    def run(self) -> None:
        self.table.WskReceive(
            self.sock, WSK_BUF(self.eof_buf, 0, 4096), 0, _arm(_irp(), self.on_eof, None)
        )
        self.table.WskControlSocket(
            self.sock,
            WskIoctl,
            SIO_WSK_QUERY_IDEAL_SEND_BACKLOG,
            0,
            0,
            None,
            8,
            self.backlog,
            None,
            _arm(_irp(), self.on_backlog, None),
        )
        _wait(self.finished, "bulk-send")
        if self.error is not None:
            raise RuntimeError(self.error)

    def on_backlog(self, _device: Any, irp: IRP, _context: Any) -> int:
        for _ in range(SENDS):
            self.send(_irp())
        return STATUS_MORE_PROCESSING_REQUIRED

    def send(self, irp: IRP) -> None:
        """Issue sends on ``irp`` until one pends (or all are issued)."""
        while self.error is None:
            size = min(CHUNK, self.total - self.issued)
            if size <= 0:
                return
            self.issued += size
            last = self.issued == self.total
            status = self.table.WskSend(
                self.sock, WSK_BUF(self.chunk, 0, size), 0, _arm(irp, self.on_sent, None)
            )
            if last:
                # The graceful disconnect queues behind every send still pending.
                self.table.WskDisconnect(
                    self.sock, None, 0, _arm(_irp(), self.on_disconnected, None)
                )
            if status == STATUS_PENDING:
                return
            irp = _irp() if last else irp

    def on_sent(self, _device: Any, irp: IRP, _context: Any) -> int:
        if irp.IoStatus.Status != STATUS_SUCCESS:
            self.error = f"WskSend: {status_name(irp.IoStatus.Status)}"
            KeSetEvent(self.finished, 0, False)
            return STATUS_MORE_PROCESSING_REQUIRED
        self.sent += irp.IoStatus.Information
        if irp.PendingReturned:
            self.send(irp)
        return STATUS_MORE_PROCESSING_REQUIRED

    def on_disconnected(self, _device: Any, irp: IRP, _context: Any) -> int:
        if irp.IoStatus.Status != STATUS_SUCCESS:
            self.error = f"WskDisconnect: {status_name(irp.IoStatus.Status)}"
            KeSetEvent(self.finished, 0, False)
        return STATUS_MORE_PROCESSING_REQUIRED

    def on_eof(self, _device: Any, irp: IRP, _context: Any) -> int:
        if irp.IoStatus.Status != STATUS_SUCCESS or irp.IoStatus.Information != 0:
            status, info = status_name(irp.IoStatus.Status), irp.IoStatus.Information
            self.error = f"EOF expected: {status} {info}"
        KeSetEvent(self.finished, 0, False)
        return STATUS_MORE_PROCESSING_REQUIRED


class BulkReceiver:
    """RECEIVES WskReceives outstanding to EOF, then WskDisconnect.  Started, like the
    sender, from the completion routine of an IOCTL (SIO_WSK_QUERY_RECEIVE_BACKLOG), and
    re-issued by the issuing loop or, after a pended receive, by its completion routine."""

    def __init__(self, sock: WSK_SOCKET) -> None:
        self.sock = sock
        self.table = conn_dispatch(sock)
        self.total = 0
        self.eof = False
        self.finished = _notification()
        self.error: str | None = None
        self.backlog = PSIZE_T(0)
        self.t0 = now()
        self.seconds = 0.0

    def run(self) -> None:
        self.table.WskControlSocket(
            self.sock,
            WskIoctl,
            SIO_WSK_QUERY_RECEIVE_BACKLOG,
            0,
            0,
            None,
            8,
            self.backlog,
            None,
            _arm(_irp(), self.on_backlog, None),
        )
        _wait(self.finished, "bulk-recv")
        if self.error is not None:
            raise RuntimeError(self.error)

    def on_backlog(self, _device: Any, irp: IRP, _context: Any) -> int:
        for _ in range(RECEIVES):
            self.receive(_irp(), _pool_buffer(CHUNK)[1])
        return STATUS_MORE_PROCESSING_REQUIRED

    def receive(self, irp: IRP, mdl: MDL) -> None:
        """Issue receives on ``irp`` until one pends, EOF, or a failure."""
        while not self.eof and self.error is None:
            status = self.table.WskReceive(
                self.sock, WSK_BUF(mdl, 0, CHUNK), 0, _arm(irp, self.on_received, mdl)
            )
            if status == STATUS_PENDING:
                return

    def on_received(self, _device: Any, irp: IRP, mdl: MDL) -> int:
        got = irp.IoStatus.Information
        if irp.IoStatus.Status != STATUS_SUCCESS:
            self.error = f"WskReceive: {status_name(irp.IoStatus.Status)}"
            KeSetEvent(self.finished, 0, False)
        elif got:
            self.total += got
            if irp.PendingReturned:
                self.receive(irp, mdl)
        elif not self.eof:
            self.eof = True
            self.seconds = now() - self.t0
            self.table.WskDisconnect(self.sock, None, 0, _arm(_irp(), self.on_disconnected, None))
        return STATUS_MORE_PROCESSING_REQUIRED

    def on_disconnected(self, _device: Any, irp: IRP, _context: Any) -> int:
        if irp.IoStatus.Status != STATUS_SUCCESS:
            self.error = f"WskDisconnect: {status_name(irp.IoStatus.Status)}"
        KeSetEvent(self.finished, 0, False)
        return STATUS_MORE_PROCESSING_REQUIRED


def bulk_recv() -> int:
    driver = Driver()
    listen, port = driver.listen()
    announce_port(port)
    restart_cpu_clock()  # the transfer's CPU: from the accept on
    status, sock = driver.call(listen_dispatch(listen).WskAccept, listen, 0, None, None, None, None)
    assert status == STATUS_SUCCESS, status_name(status)
    receiver = BulkReceiver(sock)
    receiver.run()
    driver.call(conn_dispatch(sock).WskCloseSocket, sock)
    driver.call(listen_dispatch(listen).WskCloseSocket, listen)
    emit("receiver", IMPL, bytes=receiver.total, seconds=receiver.seconds)
    driver.close()
    return 0


def bulk_send(port_arg: str, total_arg: str, cc: str = "default") -> int:
    port, total = int(port_arg), int(total_arg)
    driver = Driver()
    restart_cpu_clock()  # the transfer's CPU: from the connect on
    t0 = now()
    sock = driver.connect(port)
    set_congestion(sock.sock, cc)  # type: ignore[attr-defined]  # see the module notes
    sender = BulkSender(driver, sock, total)
    sender.run()
    seconds = now() - t0
    driver.call(conn_dispatch(sock).WskCloseSocket, sock)
    emit("sender", IMPL, bytes=sender.sent, seconds=seconds, MBps=sender.sent / seconds / 1e6)
    driver.close()
    return int(sender.sent != total)


def main(impl: str = "pywsk") -> None:
    """Run the command line as implementation ``impl``."""
    global IMPL
    IMPL = impl
    dispatch(
        {
            "churn-server": churn_server,
            "churn-client": churn_client,
            "bulk-recv": bulk_recv,
            "bulk-send": bulk_send,
            **dgram_pywsk.handlers(dgram_pywsk.Kit(lambda: IMPL, Driver, _wait, _pool_buffer)),
        }
    )


if __name__ == "__main__":
    main()
