"""The datagram workload on pywsk's faithful layer, written as a UDP driver writes it.

One WSK datagram socket per side (WSK_FLAG_DATAGRAM_SOCKET, bound to 127.0.0.1), receiving
through WskReceiveFromEvent and sending batches with WskSendMessages.

Server: the callback *retains* the indicated datagrams (returns STATUS_PENDING) and sends
them back as they are - a WSK_BUF_LIST over the indications' own MDLs, to the sender each
indication names (consecutive datagrams of one sender go in one WskSendMessages); the send's
completion routine gives them back with WskRelease.  No copy, as a tunnel driver echoes.
Client: one non-paged pool block holds the BATCH payloads (one MDL, a WSK_BUF per datagram
at its offset); a batch is one WskSendMessages; the callback checks each echo against its
payload and, at the last echo of a batch, sends the next batch from the callback (provider
thread, DISPATCH_LEVEL).  The main thread only starts the first batch and waits on a KEVENT.

See :mod:`benchmarks.common` for the command line.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, cast

from pywsk.nt import (
    IRP,
    KEVENT,
    STATUS_MORE_PROCESSING_REQUIRED,
    STATUS_PENDING,
    STATUS_SUCCESS,
    IoAllocateIrp,
    IoReuseIrp,
    IoSetCompletionRoutine,
    KeInitializeEvent,
    KeSetEvent,
    MmGetSystemAddressForMdlSafe,
    NormalPagePriority,
    NotificationEvent,
    status_name,
)
from pywsk.wsk import (
    AF_INET,
    IPPROTO_UDP,
    NPI_WSK_INTERFACE_ID,
    SO_WSK_EVENT_CALLBACK,
    SOCK_DGRAM,
    SOCKADDR_IN,
    SOL_SOCKET,
    WSK_BUF,
    WSK_BUF_LIST,
    WSK_CLIENT_DATAGRAM_DISPATCH,
    WSK_DATAGRAM_INDICATION,
    WSK_EVENT_CALLBACK_CONTROL,
    WSK_EVENT_RECEIVE_FROM,
    WSK_FLAG_DATAGRAM_SOCKET,
    WSK_PROVIDER_DATAGRAM_DISPATCH,
    WSK_SOCKET,
    WskSetOption,
    sockaddr_from_tuple,
)

from .common import HOST, announce_port, dgram_payloads, emit, now, restart_cpu_clock

_UNSUCCESSFUL: Final = 0xC0000001


def _dgram(sock: WSK_SOCKET) -> WSK_PROVIDER_DATAGRAM_DISPATCH:
    return cast(WSK_PROVIDER_DATAGRAM_DISPATCH, sock.Dispatch)


class _Irps:
    """A free list of IRPs: a send takes one, its completion routine puts it back."""

    def __init__(self) -> None:
        self.free: list[IRP] = []

    def take(self, routine: Any, context: Any) -> IRP:
        irp = self.free.pop() if self.free else IoAllocateIrp(1, False)
        assert irp is not None
        IoReuseIrp(irp, _UNSUCCESSFUL)
        IoSetCompletionRoutine(irp, routine, context, True, True, True)
        return irp


class DatagramEnd:
    """A bound datagram socket whose WskReceiveFromEvent is ``on_receive``."""

    def __init__(self, driver: Any, on_receive: Any) -> None:
        self.driver = driver
        self.irps = _Irps()
        self.done = KEVENT()
        KeInitializeEvent(self.done, NotificationEvent, False)
        self.error: str | None = None
        events = WSK_CLIENT_DATAGRAM_DISPATCH(WskReceiveFromEvent=on_receive)
        status, sock = driver.call(
            driver.dispatch.WskSocket,
            driver.client,
            AF_INET,
            SOCK_DGRAM,
            IPPROTO_UDP,
            WSK_FLAG_DATAGRAM_SOCKET,
            None,
            events,
            None,
            None,
            None,
        )
        assert status == STATUS_SUCCESS, status_name(status)
        self.sock = cast(WSK_SOCKET, sock)
        self.table = _dgram(self.sock)
        status, _ = driver.call(self.table.WskBind, self.sock, sockaddr_from_tuple((HOST, 0)), 0)
        assert status == STATUS_SUCCESS, status_name(status)
        local = SOCKADDR_IN()
        status, _ = driver.call(self.table.WskGetLocalAddress, self.sock, local)
        assert status == STATUS_SUCCESS, status_name(status)
        self.port = local.port

    def enable_events(self) -> None:
        control = WSK_EVENT_CALLBACK_CONTROL(NPI_WSK_INTERFACE_ID, WSK_EVENT_RECEIVE_FROM)
        status, _ = self.driver.call(
            self.table.WskControlSocket,
            self.sock,
            WskSetOption,
            SO_WSK_EVENT_CALLBACK,
            SOL_SOCKET,
            0,
            control,
            0,
            None,
            None,
        )
        assert status == STATUS_SUCCESS, status_name(status)

    def fail(self, what: str, status: int) -> None:
        self.error = f"{what}: {status_name(status)}"
        KeSetEvent(self.done, 0, False)

    def close(self) -> None:
        self.driver.call(self.table.WskCloseSocket, self.sock)


class EchoServer(DatagramEnd):
    """Retains each indication list and sends it back; counts echoes at their completion."""

    def __init__(self, driver: Any, n: int, size: int) -> None:
        super().__init__(driver, self.on_receive)
        self.n, self.size = n, size
        self.count = self.bytes = self.bad = 0
        self.started = False

    def on_receive(
        self, _context: Any, _flags: int, indication: WSK_DATAGRAM_INDICATION | None
    ) -> int:
        if indication is None:
            return STATUS_SUCCESS
        if not self.started:
            self.started = True
            restart_cpu_clock()
        while indication is not None:
            # A run of datagrams from one sender: one WskSendMessages back to it.
            head, sender, count = indication, indication.RemoteAddress, 0
            buffers: list[WSK_BUF] = []
            last = indication
            while indication is not None and indication.RemoteAddress == sender:
                buffers.append(indication.Buffer)
                self.bad += indication.Buffer.Length != self.size
                count += 1
                last, indication = indication, indication.Next
            last.Next = None  # the run is released on its own
            chain = WSK_BUF_LIST(None, buffers[-1])
            for buffer in reversed(buffers[:-1]):
                chain = WSK_BUF_LIST(chain, buffer)
            irp = self.irps.take(self.echoed, (head, count))
            self.table.WskSendMessages(self.sock, chain, 0, sender, 0, None, irp)
        return STATUS_PENDING

    def echoed(self, _device: Any, irp: IRP, context: tuple[WSK_DATAGRAM_INDICATION, int]) -> int:
        head, count = context
        status = irp.IoStatus.Status
        self.bytes += irp.IoStatus.Information
        self.table.WskRelease(self.sock, head)
        self.irps.free.append(irp)
        if status != STATUS_SUCCESS:
            self.fail("WskSendMessages (echo)", status)
            return STATUS_MORE_PROCESSING_REQUIRED
        self.count += count
        if self.count >= self.n:
            KeSetEvent(self.done, 0, False)
        return STATUS_MORE_PROCESSING_REQUIRED


class BatchClient(DatagramEnd):
    """Sends a batch with WskSendMessages, checks the echoes, sends the next from the callback."""

    def __init__(self, kit: Kit, port: int, n: int, size: int, batch: int) -> None:
        driver = kit.driver()
        super().__init__(driver, self.on_receive)
        self.n = n
        self.payloads = dgram_payloads(size, batch)
        pool, mdl = kit.pool_buffer(size * batch, b"".join(self.payloads))
        self.pool = pool
        self.buffers = [WSK_BUF(mdl, i * size, size) for i in range(batch)]
        self.full = self.chain(batch)
        self.remote = sockaddr_from_tuple((HOST, port))
        self.count = self.bytes = self.bad = 0
        self.want = self.got = 0
        self.t_end = 0.0

    def chain(self, count: int) -> WSK_BUF_LIST:
        head = WSK_BUF_LIST(None, self.buffers[count - 1])
        for buffer in reversed(self.buffers[: count - 1]):
            head = WSK_BUF_LIST(head, buffer)
        return head

    def send_batch(self) -> None:
        self.want = min(len(self.buffers), self.n - self.count)
        self.got = 0
        chain = self.full if self.want == len(self.buffers) else self.chain(self.want)
        irp = self.irps.take(self.sent, None)
        self.table.WskSendMessages(self.sock, chain, 0, self.remote, 0, None, irp)

    def sent(self, _device: Any, irp: IRP, _context: Any) -> int:
        self.irps.free.append(irp)
        if irp.IoStatus.Status != STATUS_SUCCESS:
            self.fail("WskSendMessages", irp.IoStatus.Status)
        return STATUS_MORE_PROCESSING_REQUIRED

    def on_receive(
        self, _context: Any, _flags: int, indication: WSK_DATAGRAM_INDICATION | None
    ) -> int:
        payloads = self.payloads
        while indication is not None:
            buffer = indication.Buffer
            assert buffer.Mdl is not None
            view = MmGetSystemAddressForMdlSafe(buffer.Mdl, NormalPagePriority)
            assert view is not None
            data = view[buffer.Offset : buffer.Offset + buffer.Length]
            self.bad += self.got >= self.want or data != payloads[self.got]
            self.bytes += buffer.Length
            self.got += 1
            if self.got == self.want:
                self.count += self.want
                if self.count < self.n:
                    self.send_batch()
                else:
                    self.t_end = now()
                    KeSetEvent(self.done, 0, False)
            indication = indication.Next
        return STATUS_SUCCESS


@dataclass(frozen=True)
class Kit:
    """What the faithful benchmark program lends this workload (:mod:`benchmarks.impl_pywsk`):
    its name, its driver registration, its bounded KEVENT wait and its pool buffers."""

    impl: Callable[[], str]
    driver: Callable[[], Any]
    wait: Callable[[KEVENT, str], None]
    pool_buffer: Callable[[int, bytes], tuple[Any, Any]]


def server(kit: Kit, n_arg: str, size_arg: str, batch_arg: str) -> int:
    n, size = int(n_arg), int(size_arg)
    dgram_payloads(size, int(batch_arg))  # the same argument checks as every program
    echo = EchoServer(kit.driver(), n, size)
    echo.enable_events()
    announce_port(echo.port)
    kit.wait(echo.done, "dgram-server")
    echo.close()
    if echo.error is not None:
        raise RuntimeError(echo.error)
    emit("server", kit.impl(), datagrams=echo.count, bytes=echo.bytes, bad=echo.bad)
    echo.driver.close()
    return int(echo.bad != 0 or echo.count != n)


def client(kit: Kit, port_arg: str, n_arg: str, size_arg: str, batch_arg: str) -> int:
    n = int(n_arg)
    end = BatchClient(kit, int(port_arg), n, int(size_arg), int(batch_arg))
    end.enable_events()
    restart_cpu_clock()
    t0 = now()
    end.send_batch()
    kit.wait(end.done, "dgram-client")
    end.close()
    if end.error is not None:
        raise RuntimeError(end.error)
    seconds = end.t_end - t0
    emit(
        "client",
        kit.impl(),
        datagrams=end.count,
        bytes=end.bytes,
        bad=end.bad,
        seconds=seconds,
        rate=end.count / seconds,
    )
    end.driver.close()
    return int(end.bad != 0 or end.count != n)


def handlers(kit: Kit) -> dict[str, Callable[..., int]]:
    """The datagram commands of :func:`benchmarks.common.dispatch`."""
    return {
        "dgram-server": functools.partial(server, kit),
        "dgram-client": functools.partial(client, kit),
    }
