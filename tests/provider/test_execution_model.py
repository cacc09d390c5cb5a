"""The execution model (docs/design.md section 2): calls act on the caller's thread.

* An inline completion runs on the calling thread, at DISPATCH_LEVEL, before the call
  returns; a completion after STATUS_PENDING runs on the provider thread.
* A call never needs the provider thread: with the provider thread held up on purpose,
  another thread's WskSend and graceful WskDisconnect still put the data and the FIN on
  the wire before they return.
* A chain of inline completions is bounded: past MAX_INLINE_DEPTH nested routines on one
  thread, a request pends and its completion comes from the provider thread.
* Two threads on one socket, and many threads on many sockets, never lose or double a
  completion.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

import pytest
from test_requests import Listener, connected, recv_exactly

from pywsk.nt import (
    DISPATCH_LEVEL,
    IRP,
    KDPC,
    PASSIVE_LEVEL,
    STATUS_MORE_PROCESSING_REQUIRED,
    STATUS_PENDING,
    STATUS_SUCCESS,
    IoAllocateIrp,
    IoFreeIrp,
    IoReuseIrp,
    IoSetCompletionRoutine,
    KeGetCurrentIrql,
    KeInitializeDpc,
    KeInsertQueueDpc,
)
from pywsk.provider import subsystem
from pywsk.provider.engine import MAX_INLINE_DEPTH
from pywsk.testing.driver import WskTestClient, make_buffer

WAIT = 10.0


def test_an_inline_completion_runs_on_the_calling_thread_before_the_call_returns(
    wsk: WskTestClient, listener: Listener
) -> None:
    sock, peer = connected(wsk, listener)
    returned = threading.Event()
    seen: list[tuple[int, int, bool]] = []

    def routine(_device: Any, irp: IRP, _context: Any) -> int:
        seen.append((threading.get_ident(), KeGetCurrentIrql(), returned.is_set()))
        return STATUS_MORE_PROCESSING_REQUIRED

    irp = IoAllocateIrp(1, False)
    assert irp is not None
    IoSetCompletionRoutine(irp, routine, None, True, True, True)
    _pool, buf = make_buffer(b"inline")
    assert KeGetCurrentIrql() == PASSIVE_LEVEL
    assert wsk.dispatch(sock).WskSend(sock, buf, 0, irp) == STATUS_SUCCESS
    returned.set()
    assert seen == [(threading.get_ident(), DISPATCH_LEVEL, False)]
    assert KeGetCurrentIrql() == PASSIVE_LEVEL  # lowered again after the routine
    assert recv_exactly(peer, 6) == b"inline"
    IoFreeIrp(irp)
    peer.close()


def test_a_completion_after_pending_runs_on_the_provider_thread(
    wsk: WskTestClient, listener: Listener
) -> None:
    sock, peer = connected(wsk, listener)
    request, _pool = wsk.receive(sock, 16)
    assert request.returned == STATUS_PENDING
    peer.sendall(b"later")
    request.wait(WAIT)
    assert request.completion_thread == subsystem.engine.thread_id
    assert request.completion_irql == DISPATCH_LEVEL
    assert request.pending_returned
    peer.close()


class ProviderHeld:
    """Holds the provider thread inside a DPC until released (bounded)."""

    def __init__(self) -> None:
        self.inside = threading.Event()
        self.release = threading.Event()
        self.dpc = KDPC()
        KeInitializeDpc(self.dpc, self._routine, None)

    def _routine(self, _dpc: KDPC, _context: Any, _one: Any, _two: Any) -> None:
        self.inside.set()
        self.release.wait(WAIT)  # a test's stand-in for a provider thread that is busy

    def __enter__(self) -> ProviderHeld:
        assert KeInsertQueueDpc(self.dpc, None, None)
        assert self.inside.wait(WAIT)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release.set()


def test_calls_act_on_the_wire_while_the_provider_thread_is_busy(
    wsk: WskTestClient, listener: Listener
) -> None:
    sock, peer = connected(wsk, listener)
    with ProviderHeld():
        send = wsk.send(sock, b"data before FIN")
        assert send.returned == STATUS_SUCCESS
        assert send.done
        disconnect = wsk.start("WskDisconnect", wsk.dispatch(sock).WskDisconnect, sock, None, 0)
        assert disconnect.returned in (STATUS_SUCCESS, STATUS_PENDING)
        # Before the provider thread runs again, the peer has the data and our FIN.
        assert recv_exactly(peer, 15) == b"data before FIN"
        assert peer.recv(1) == b""
    disconnect.wait(WAIT)
    assert disconnect.status == STATUS_SUCCESS
    peer.close()


def test_an_abort_acts_at_once_while_the_provider_thread_is_busy(
    wsk: WskTestClient, listener: Listener
) -> None:
    sock, peer = connected(wsk, listener)
    with ProviderHeld():
        abort = wsk.start("WskDisconnect", wsk.dispatch(sock).WskDisconnect, sock, None, 1)
        assert abort.returned == STATUS_SUCCESS
        assert abort.done
        try:
            data = peer.recv(1)
        except ConnectionResetError:
            data = None
        assert data is None, "the peer saw no RST"
    peer.close()


@pytest.mark.no_verifier  # WSK-007 flags a call from a completion routine: the mistake tested
def test_a_chain_of_inline_completions_is_bounded(wsk: WskTestClient, listener: Listener) -> None:
    """A routine that re-issues its receive from inside itself, while data keeps completing
    receives inline: past MAX_INLINE_DEPTH levels the call pends instead of recursing."""
    sock, peer = connected(wsk, listener)
    total = 400
    peer.sendall(bytes(range(256)) + bytes(total - 256))
    pool, buf = make_buffer(1)
    irp = IoAllocateIrp(1, False)
    assert irp is not None
    got = bytearray()
    returned: list[int] = []
    depths: list[int] = []
    done = threading.Event()
    depth = [0]

    def issue() -> None:
        IoReuseIrp(irp, 0)
        IoSetCompletionRoutine(irp, routine, None, True, True, True)
        returned.append(wsk.dispatch(sock).WskReceive(sock, buf, 0, irp))

    def routine(_device: Any, done_irp: IRP, _context: Any) -> int:
        depth[0] += 1
        depths.append(depth[0])
        try:
            assert done_irp.IoStatus.Status == STATUS_SUCCESS
            got.extend(pool[: done_irp.IoStatus.Information])
            if len(got) < total:
                issue()  # recursion: the usual mistake a bound must survive
            else:
                done.set()
        finally:
            depth[0] -= 1
        return STATUS_MORE_PROCESSING_REQUIRED

    issue()
    assert done.wait(WAIT)
    assert len(got) == total
    assert bytes(got[:256]) == bytes(range(256))
    assert max(depths) <= MAX_INLINE_DEPTH + 1
    assert STATUS_PENDING in returned  # the bound turned some inline completions into pending
    IoFreeIrp(irp)
    peer.close()


def test_two_threads_on_one_socket_and_a_cancel_race(
    wsk: WskTestClient, listener: Listener
) -> None:
    """Sends from two threads while a third receives and the peer echoes: every IRP completes
    exactly once (Request.routine asserts it) and every byte arrives once."""
    sock, peer = connected(wsk, listener)
    chunks = 200
    echoed = bytearray()

    def echo() -> None:
        while data := peer.recv(65536):
            echoed.extend(data)
            peer.sendall(data)

    echoer = threading.Thread(target=echo, daemon=True)
    echoer.start()

    def sender(tag: bytes) -> None:
        for _ in range(chunks):
            wsk.send(sock, tag * 16).wait(WAIT)

    threads = [threading.Thread(target=sender, args=(t,)) for t in (b"a", b"b")]
    for thread in threads:
        thread.start()
    received = bytearray()
    while len(received) < 2 * chunks * 16:
        request, pool = wsk.receive(sock, 4096)
        request.wait(WAIT)
        assert request.status == STATUS_SUCCESS
        assert request.information
        received.extend(pool[: request.information])
    for thread in threads:
        thread.join(WAIT)
    assert sorted(received) == sorted(b"a" * chunks * 16 + b"b" * chunks * 16)
    # Each 16-byte send is whole on the wire: never interleaved with the other thread's.
    assert all(len(set(echoed[i : i + 16])) == 1 for i in range(0, len(echoed), 16))
    wsk.call("WskDisconnect", wsk.dispatch(sock).WskDisconnect, sock, None, 0)
    peer.shutdown(socket.SHUT_WR)
    echoer.join(WAIT)
    peer.close()


def test_a_connect_whose_peer_resets_at_once_succeeds_then_reports_the_reset(
    wsk: WskTestClient,
) -> None:
    """The handshake completes in the kernel; the peer sends and resets before the provider
    thread sees the connect's edge (held up on purpose): the connect succeeded - a refused
    SYN would be ECONNREFUSED - the data comes first, then the reset."""
    from pywsk.nt import STATUS_CONNECTION_RESET
    from pywsk.wsk import AF_INET, sockaddr_from_tuple

    server = socket.create_server(("127.0.0.1", 0))
    with server:
        sock = wsk.socket(AF_INET).information
        d = wsk.dispatch(sock)
        bind = wsk.call("WskBind", d.WskBind, sock, sockaddr_from_tuple(("127.0.0.1", 0)), 0)
        assert bind.status == STATUS_SUCCESS
        with ProviderHeld():
            connect = wsk.start(
                "WskConnect", d.WskConnect, sock, sockaddr_from_tuple(server.getsockname()), 0
            )
            if connect.returned == STATUS_PENDING:
                peer, _ = server.accept()
                peer.sendall(b"early")
                peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
                peer.close()  # RST
            else:  # pragma: no cover - loopback answered within connect() itself
                server.accept()[0].close()
        connect.wait(WAIT)
        assert connect.status == STATUS_SUCCESS
        if connect.returned == STATUS_PENDING:
            first, pool = wsk.receive(sock, 16)
            first.wait(WAIT)
            assert first.status == STATUS_SUCCESS
            assert bytes(pool[: first.information]) == b"early"
            second, _pool = wsk.receive(sock, 16)
            second.wait(WAIT)
            assert second.status == STATUS_CONNECTION_RESET
