"""Sends, receives, options, addresses, cancellation and bad input on connection sockets."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any, cast

import pytest

from pywsk.nt import (
    DISPATCH_LEVEL,
    HIGH_LEVEL,
    IRP,
    STATUS_CANCELLED,
    STATUS_INVALID_HANDLE,
    STATUS_INVALID_PARAMETER,
    STATUS_MORE_PROCESSING_REQUIRED,
    STATUS_NOT_SUPPORTED,
    STATUS_PENDING,
    STATUS_REQUEST_NOT_ACCEPTED,
    STATUS_SUCCESS,
    BugCheck,
    IoAllocateIrp,
    IoAllocateMdl,
    IoCancelIrp,
    IoFreeIrp,
    IoReadAccess,
    IoReuseIrp,
    IoSetCompletionRoutine,
    KernelMode,
    MmBuildMdlForNonPagedPool,
    MmProbeAndLockPages,
    running_at,
)
from pywsk.provider import subsystem
from pywsk.testing.driver import WskTestClient, make_buffer
from pywsk.wsk import (
    AF_INET,
    AF_INET6,
    IPPROTO_TCP,
    PSIZE_T,
    PULONG,
    SIO_WSK_QUERY_IDEAL_SEND_BACKLOG,
    SIO_WSK_QUERY_RECEIVE_BACKLOG,
    SIO_WSK_SET_TCP_SILENT_MODE,
    SO_CONDITIONAL_ACCEPT,
    SO_EXCLUSIVEADDRUSE,
    SO_KEEPALIVE,
    SO_RCVBUF,
    SO_REUSEADDR,
    SOCK_DGRAM,
    SOL_SOCKET,
    TCP_NODELAY,
    WSK_BUF,
    WSK_FLAG_DATAGRAM_SOCKET,
    WSK_FLAG_DRAIN,
    WSK_FLAG_NODELAY,
    WSK_FLAG_WAITALL,
    WSK_SOCKET,
    WskGetOption,
    WskIoctl,
    WskSetOption,
)

Listener = Callable[..., socket.socket]
WAIT = 10.0


def connected(
    wsk: WskTestClient, listener: Listener, host: str = "127.0.0.1"
) -> tuple[WSK_SOCKET, socket.socket]:
    lsock = listener(host)
    sock = wsk.connect(lsock.getsockname()[:2])
    peer, _ = lsock.accept()
    peer.settimeout(WAIT)
    return sock, peer


def recv_exactly(peer: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = peer.recv(size - len(data))
        assert chunk, "the connection ended early"
        data += chunk
    return bytes(data)


# --- data in order -------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_many_outstanding_sends_and_receives_complete_in_order(
    wsk: WskTestClient, listener: Listener, host: str
) -> None:
    sock, peer = connected(wsk, listener, host)
    receives = [wsk.receive(sock, 5, WSK_FLAG_WAITALL) for _ in range(4)]
    assert all(r.returned == STATUS_PENDING for r, _ in receives)
    peer.sendall(b"aaaaabbbbbcccccddddd")
    for (request, pool), expected in zip(
        receives, [b"aaaaa", b"bbbbb", b"ccccc", b"ddddd"], strict=True
    ):
        request.wait(WAIT)
        assert request.status == STATUS_SUCCESS
        assert bytes(pool[: request.information]) == expected
    completed = [r.completed_at for r, _ in receives]
    assert completed == sorted(completed)  # type: ignore[type-var]

    sends = [wsk.send(sock, bytes([65 + i]) * 100_000, WSK_FLAG_NODELAY) for i in range(8)]
    data = recv_exactly(peer, 800_000)
    assert data == b"".join(bytes([65 + i]) * 100_000 for i in range(8))
    for request in sends:
        request.wait(WAIT)
        assert (request.status, request.information) == (STATUS_SUCCESS, 100_000)
    peer.close()


def test_waitall_completes_early_with_what_it_has_at_peer_fin(
    wsk: WskTestClient, listener: Listener
) -> None:
    sock, peer = connected(wsk, listener)
    request, pool = wsk.receive(sock, 100, WSK_FLAG_WAITALL)
    peer.sendall(b"only this")
    peer.shutdown(socket.SHUT_WR)
    request.wait(WAIT)
    assert request.status == STATUS_SUCCESS
    assert bytes(pool[: request.information]) == b"only this"
    peer.close()


def test_drain_discards_until_the_peer_fin(wsk: WskTestClient, listener: Listener) -> None:
    sock, peer = connected(wsk, listener)
    request = wsk.start(
        "WskReceive", wsk.dispatch(sock).WskReceive, sock, WSK_BUF(None, 0, 0), WSK_FLAG_DRAIN
    )
    assert request.returned == STATUS_PENDING
    peer.sendall(b"x" * 100_000)
    peer.shutdown(socket.SHUT_WR)
    request.wait(WAIT)
    assert (request.status, request.information) == (STATUS_SUCCESS, 0)
    peer.close()


def test_zero_length_receive_completes_at_once(wsk: WskTestClient, listener: Listener) -> None:
    sock, peer = connected(wsk, listener)
    request = wsk.start("WskReceive", wsk.dispatch(sock).WskReceive, sock, WSK_BUF(None, 0, 0), 0)
    assert request.returned == STATUS_SUCCESS
    assert request.information == 0
    peer.close()


# --- where calls run ---------------------------------------------------------------------------


@pytest.mark.no_verifier
def test_a_completion_routine_may_issue_the_next_call_inline(
    wsk: WskTestClient, listener: Listener
) -> None:
    """The echo pattern: each receive's routine issues the next receive, on the provider thread."""
    sock, peer = connected(wsk, listener)
    dispatch = wsk.dispatch(sock)
    received = bytearray()
    done = threading.Event()
    pool, buf = make_buffer(16)
    levels: list[int] = []

    def routine(_device: Any, irp: IRP, _context: Any) -> int:
        from pywsk.nt import KeGetCurrentIrql

        levels.append(KeGetCurrentIrql())
        if irp.IoStatus.Status != STATUS_SUCCESS or irp.IoStatus.Information == 0:
            IoFreeIrp(irp)
            done.set()
            return STATUS_MORE_PROCESSING_REQUIRED
        received.extend(pool[: irp.IoStatus.Information])
        IoReuseIrp(irp, STATUS_SUCCESS)
        IoSetCompletionRoutine(irp, routine, None, True, True, True)
        dispatch.WskReceive(sock, buf, 0, irp)
        return STATUS_MORE_PROCESSING_REQUIRED

    irp = IoAllocateIrp(1, False)
    assert irp is not None
    IoSetCompletionRoutine(irp, routine, None, True, True, True)
    dispatch.WskReceive(sock, buf, 0, irp)
    for i in range(20):
        peer.sendall(b"chunk %02d;" % i)
    peer.shutdown(socket.SHUT_WR)
    assert done.wait(WAIT)
    assert bytes(received) == b"".join(b"chunk %02d;" % i for i in range(20))
    assert set(levels) == {DISPATCH_LEVEL}
    peer.close()


def test_calls_from_many_threads_are_serialised_per_socket(
    wsk: WskTestClient, listener: Listener
) -> None:
    sock, peer = connected(wsk, listener)
    results: list[Any] = []

    def worker(n: int) -> None:
        results.append(wsk.send(sock, bytes([48 + n]) * 1000).wait(WAIT))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    data = recv_exactly(peer, 8000)
    for t in threads:
        t.join(WAIT)
        assert not t.is_alive()
    assert all(r.status == STATUS_SUCCESS for r in results)
    # Each send's bytes arrive contiguously (sends are not interleaved).
    chunks = {data[i : i + 1000] for i in range(0, 8000, 1000)}
    assert chunks == {bytes([48 + n]) * 1000 for n in range(8)}
    peer.close()


# --- cancellation ----------------------------------------------------------------------------------


def test_cancel_a_pending_receive(wsk: WskTestClient, listener: Listener) -> None:
    sock, peer = connected(wsk, listener)
    request, _ = wsk.receive(sock, 100)
    assert request.returned == STATUS_PENDING
    assert IoCancelIrp(request.irp) is True
    request.wait(WAIT)
    assert (request.status, request.information) == (STATUS_CANCELLED, 0)
    # Nothing was lost: a later receive gets the data.
    peer.sendall(b"after cancel")
    data, _ = wsk.receive(sock, 100)
    data.wait(WAIT)
    assert data.information == len(b"after cancel")
    peer.close()


def test_cancel_races_with_data_and_loses_no_byte(wsk: WskTestClient, listener: Listener) -> None:
    sock, peer = connected(wsk, listener)
    got = bytearray()
    for i in range(200):
        request, pool = wsk.receive(sock, 64)
        peer.sendall(b"%04d" % i)
        IoCancelIrp(request.irp)
        request.wait(WAIT)
        if request.status == STATUS_SUCCESS:
            got += pool[: request.information]
        else:
            assert request.status == STATUS_CANCELLED
            assert request.information == 0
    peer.shutdown(socket.SHUT_WR)
    rest, final = wsk.receive_all(sock, timeout=WAIT)
    assert final.status == STATUS_SUCCESS
    assert bytes(got) + rest == b"".join(b"%04d" % i for i in range(200))
    peer.close()


def test_cancel_a_queued_send_that_has_not_started(wsk: WskTestClient, listener: Listener) -> None:
    lsock = listener(rcvbuf=4096)
    sock = wsk.connect(lsock.getsockname()[:2])
    peer, _ = lsock.accept()
    peer.settimeout(WAIT)
    # More than the kernel's largest send buffer (tcp_wmem's maximum, 4 MiB by default),
    # so the last of these is partly taken at most and the next one cannot have started
    # (every send pends: each completes at the acknowledgement of its last byte).
    sends = [wsk.send(sock, b"s" * 262144) for _ in range(20)]
    assert all(s.returned == STATUS_PENDING for s in sends)
    queued = wsk.send(sock, b"q" * 1000)
    assert queued.returned == STATUS_PENDING
    assert IoCancelIrp(queued.irp) is True
    queued.wait(WAIT)
    assert (queued.status, queued.information) == (STATUS_CANCELLED, 0)
    total = sum(len(b"s" * 262144) for _ in sends)
    assert recv_exactly(peer, total) == b"s" * total
    for s in sends:
        assert s.wait(WAIT).status == STATUS_SUCCESS
    peer.setblocking(False)
    with pytest.raises(BlockingIOError):
        peer.recv(10)  # the cancelled send put nothing on the wire
    peer.close()


# --- options and addresses ---------------------------------------------------------------------------


def test_control_socket_options_and_receive_backlog(wsk: WskTestClient, listener: Listener) -> None:
    sock, peer = connected(wsk, listener)
    control = wsk.dispatch(sock).WskControlSocket
    set_keepalive = wsk.call(
        "WskControlSocket",
        control,
        sock,
        WskSetOption,
        SO_KEEPALIVE,
        SOL_SOCKET,
        4,
        (1).to_bytes(4, "little"),
        0,
        None,
        None,
    )
    assert set_keepalive.status == STATUS_SUCCESS
    value = PULONG()
    got = wsk.call(
        "WskControlSocket",
        control,
        sock,
        WskGetOption,
        SO_KEEPALIVE,
        SOL_SOCKET,
        0,
        None,
        4,
        value,
        None,
    )
    assert got.status == STATUS_SUCCESS
    assert value.value == 1
    out = bytearray(4)
    assert (
        wsk.call(
            "WskControlSocket",
            control,
            sock,
            WskGetOption,
            TCP_NODELAY,
            IPPROTO_TCP,
            0,
            None,
            4,
            out,
            None,
        ).status
        == STATUS_SUCCESS
    )
    assert int.from_bytes(out, "little") == 0  # Nagle stays on unless asked

    peer.sendall(b"12345")
    backlog = PSIZE_T()
    for _ in range(1000):  # bounded: the 5 bytes are in flight on loopback
        query = (sock, WskIoctl, SIO_WSK_QUERY_RECEIVE_BACKLOG, 0, 0, None, 8, backlog, None)
        assert wsk.call("WskControlSocket", control, *query).status == STATUS_SUCCESS
        if backlog.value == 5:
            break
    assert backlog.value == 5
    unknown = wsk.call(
        "WskControlSocket", control, sock, WskSetOption, 0x7777, SOL_SOCKET, 4, 1, 0, None, None
    )
    assert unknown.status == STATUS_NOT_SUPPORTED
    peer.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_local_and_remote_addresses(wsk: WskTestClient, listener: Listener, host: str) -> None:
    lsock = listener(host)
    sock = wsk.connect(lsock.getsockname()[:2])
    peer, peer_sees = lsock.accept()
    local_request, local = wsk.local_address(sock)
    remote_request, remote = wsk.remote_address(sock)
    assert local_request.status == remote_request.status == STATUS_SUCCESS
    assert local.sa_family == remote.sa_family == (AF_INET6 if ":" in host else AF_INET)
    assert local.to_tuple()[:2] == peer_sees[:2]
    assert remote.to_tuple()[:2] == lsock.getsockname()[:2]
    peer.close()


# --- bad input ---------------------------------------------------------------------------------------


@pytest.mark.no_verifier
def test_bad_buffers_are_refused_and_the_connection_is_untouched(
    wsk: WskTestClient, listener: Listener
) -> None:
    sock, peer = connected(wsk, listener)
    dispatch = wsk.dispatch(sock)
    pool, buf = make_buffer(b"0123456789")
    beyond = WSK_BUF(buf.Mdl, 4, 7)  # Offset + Length past the MDL
    unlocked = IoAllocateMdl(bytearray(10), 10, False, False, None)
    assert unlocked is not None
    readonly = IoAllocateMdl(b"read only!", 10, False, False, None)
    assert readonly is not None
    MmProbeAndLockPages(readonly, KernelMode, IoReadAccess)
    cases = [
        ("WskSend", dispatch.WskSend, (sock, beyond, 0)),
        ("WskSend", dispatch.WskSend, (sock, WSK_BUF(None, 0, 5), 0)),
        ("WskSend", dispatch.WskSend, (sock, WSK_BUF(unlocked, 0, 10), 0)),
        ("WskReceive", dispatch.WskReceive, (sock, beyond, 0)),
        ("WskReceive", dispatch.WskReceive, (sock, WSK_BUF(readonly, 0, 10), 0)),
        ("WskDisconnect", dispatch.WskDisconnect, (sock, beyond, 0)),
    ]
    for name, fn, args in cases:
        request = wsk.start(name, fn, *args)
        assert request.returned == STATUS_INVALID_PARAMETER, name
        assert request.done
        assert request.status == STATUS_INVALID_PARAMETER
    bad_flag = wsk.start("WskSend", dispatch.WskSend, sock, buf, 0x100)
    assert bad_flag.returned == STATUS_NOT_SUPPORTED
    # Bytes were not read or written outside the buffers, and the connection works.
    assert bytes(pool[:10]) == b"0123456789"
    assert wsk.send(sock, b"ok").wait(WAIT).status == STATUS_SUCCESS
    assert peer.recv(10) == b"ok"
    peer.close()


@pytest.mark.no_verifier  # the verifier reports it (IRP-007, tests/verifier/test_reports.py)
def test_null_irp_is_refused_without_completion(wsk: WskTestClient, listener: Listener) -> None:
    sock, peer = connected(wsk, listener)
    _pool, buf = make_buffer(b"x")
    assert wsk.dispatch(sock).WskSend(sock, buf, 0, None) == STATUS_INVALID_PARAMETER  # type: ignore[arg-type]
    assert wsk.send(sock, b"y").wait(WAIT).status == STATUS_SUCCESS
    peer.close()


@pytest.mark.no_verifier
def test_irp_still_pending_cannot_be_submitted_again(
    wsk: WskTestClient, listener: Listener
) -> None:
    sock, peer = connected(wsk, listener)
    request, _ = wsk.receive(sock, 10)
    _pool, buf = make_buffer(b"x")
    with pytest.raises(BugCheck):
        wsk.dispatch(sock).WskSend(sock, buf, 0, request.irp)
    # Neither the pending receive nor the socket was disturbed.
    peer.sendall(b"z")
    request.wait(WAIT)
    assert (request.status, request.information) == (STATUS_SUCCESS, 1)
    peer.close()


def test_wsk_call_above_dispatch_level_is_refused(wsk: WskTestClient, listener: Listener) -> None:
    sock, peer = connected(wsk, listener)
    _pool, buf = make_buffer(b"x")
    irp = IoAllocateIrp(1, False)
    assert irp is not None
    with running_at(HIGH_LEVEL), pytest.raises(BugCheck, match="DISPATCH_LEVEL"):
        wsk.dispatch(sock).WskSend(sock, buf, 0, irp)
    IoFreeIrp(irp)
    peer.close()


def test_unsupported_categories_and_types(wsk: WskTestClient) -> None:
    # A datagram socket over TCP is not a transport WSK offers (basic sockets: see
    # tests/provider/test_datagram.py).
    assert wsk.socket(AF_INET, WSK_FLAG_DATAGRAM_SOCKET).status == STATUS_NOT_SUPPORTED
    assert wsk.socket(AF_INET, 0x40).status == STATUS_INVALID_PARAMETER
    assert wsk.provider.Dispatch is not None
    dgram = wsk.call(
        "WskSocket",
        wsk.provider.Dispatch.WskSocket,
        wsk.provider.Client,
        AF_INET,
        SOCK_DGRAM,
        17,
        2,  # a connection socket over UDP
        None,
        None,
        None,
        None,
        None,
    )
    assert dgram.status == STATUS_NOT_SUPPORTED
    bad_client = wsk.call(
        "WskSocket",
        wsk.provider.Dispatch.WskSocket,
        object(),
        AF_INET,
        1,
        IPPROTO_TCP,
        2,
        None,
        None,
        None,
        None,
        None,
    )
    assert bad_client.status == STATUS_INVALID_HANDLE


def test_an_exception_in_a_completion_routine_does_not_stop_the_provider(
    wsk: WskTestClient, listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, peer = connected(wsk, listener)
    reported: list[BaseException] = []
    monkeypatch.setattr("sys.unraisablehook", lambda args: reported.append(args.exc_value))

    def broken(_device: Any, _irp: IRP, _context: Any) -> int:
        raise RuntimeError("client bug")

    irp = IoAllocateIrp(1, False)
    assert irp is not None
    IoSetCompletionRoutine(irp, broken, None, True, True, True)
    _pool, buf = make_buffer(b"boom")
    assert wsk.dispatch(sock).WskSend(sock, buf, 0, irp) == STATUS_SUCCESS
    assert [str(e) for e in reported] == ["client bug"]
    assert wsk.send(sock, b"alive").wait(WAIT).status == STATUS_SUCCESS
    assert recv_exactly(peer, 9) == b"boomalive"
    assert subsystem.engine.start(WAIT)  # the provider thread is still running
    peer.close()


def test_mdl_built_for_nonpaged_pool_and_chains(wsk: WskTestClient, listener: Listener) -> None:
    sock, peer = connected(wsk, listener)
    first = bytearray(b"....head")
    second = bytearray(b"tail....")
    mdl = IoAllocateMdl(first, len(first), False, False, None)
    assert mdl is not None
    mdl.Next = IoAllocateMdl(second, len(second), False, False, None)
    assert mdl.Next is not None
    MmBuildMdlForNonPagedPool(mdl)
    MmBuildMdlForNonPagedPool(mdl.Next)
    request = wsk.start("WskSend", wsk.dispatch(sock).WskSend, sock, WSK_BUF(mdl, 4, 8), 0)
    request.wait(WAIT)
    assert (request.status, request.information) == (STATUS_SUCCESS, 8)
    assert recv_exactly(peer, 8) == b"headtail"
    peer.close()


# --- regressions ----------------------------------------------------------------------------------


def _stalled(
    wsk: WskTestClient, listener: Listener
) -> tuple[WSK_SOCKET, socket.socket, list[Any], int]:
    """A connection whose peer does not read yet, with sends pending."""
    lsock = listener(rcvbuf=4096)
    sock = wsk.connect(lsock.getsockname()[:2])
    peer, _ = lsock.accept()
    peer.settimeout(WAIT)
    sends: list[Any] = []
    for _ in range(64):
        sends.append(wsk.send(sock, b"s" * 262144))
        if sends[-1].returned == STATUS_PENDING:
            break
    return sock, peer, sends, 262144 * len(sends)


def read_to_end(peer: socket.socket) -> bytes:
    data = bytearray()
    while chunk := peer.recv(1 << 16):
        data += chunk
    return bytes(data)


def test_cancelled_graceful_disconnect_behind_sends_still_sends_everything_and_fin(
    wsk: WskTestClient, listener: Listener
) -> None:
    sock, peer, _sends, total = _stalled(wsk, listener)
    disc = wsk.disconnect(sock, final=b"FINAL")
    assert disc.returned == STATUS_PENDING
    IoCancelIrp(disc.irp)
    disc.wait(WAIT)
    assert (disc.status, disc.information) == (STATUS_CANCELLED, 0)
    data = read_to_end(peer)  # ends: the FIN still went out
    assert data == b"s" * total + b"FINAL"
    peer.close()


def test_cancelled_graceful_disconnect_with_a_partly_sent_final_buffer_completes_at_once(
    wsk: WskTestClient, listener: Listener
) -> None:
    sock, peer, _sends, total = _stalled(wsk, listener)
    big_final = b"f" * 4 * 1024 * 1024
    disc = wsk.disconnect(sock, final=big_final)
    got = bytearray()
    while len(got) < total + 1:
        got += peer.recv(1 << 16)
    # The final buffer is partly on the wire, and the peer reads nothing more until the
    # cancel has completed: the cancel does not wait for the peer.
    IoCancelIrp(disc.irp)
    disc.wait(WAIT)
    assert (disc.status, disc.information) == (STATUS_CANCELLED, 0)
    # The disconnect goes on in the transport: every byte, then the FIN.
    data = bytes(got) + read_to_end(peer)
    assert data == b"s" * total + big_final
    assert wsk.socket(AF_INET).status == STATUS_SUCCESS
    peer.close()


def test_nodelay_flag_leaves_the_clients_tcp_nodelay_setting(
    wsk: WskTestClient, listener: Listener
) -> None:
    sock, peer = connected(wsk, listener)
    control = wsk.dispatch(sock).WskControlSocket
    assert (
        control(sock, WskSetOption, TCP_NODELAY, IPPROTO_TCP, 4, 1, 0, None, None, None)
        == STATUS_SUCCESS
    )
    assert wsk.send(sock, b"x", WSK_FLAG_NODELAY).wait(WAIT).status == STATUS_SUCCESS
    value = PULONG()
    assert (
        control(sock, WskGetOption, TCP_NODELAY, IPPROTO_TCP, 0, None, 4, value, None, None)
        == STATUS_SUCCESS
    )
    assert value.value == 1
    peer.close()


@pytest.mark.no_verifier
def test_returned_status_is_not_what_a_routine_wrote_into_the_irp(
    wsk: WskTestClient, listener: Listener
) -> None:
    from pywsk.nt import STATUS_UNSUCCESSFUL

    sock, peer = connected(wsk, listener)
    peer.sendall(b"ready")
    _pool, buf = make_buffer(16)

    def reuse_at_once(_device: Any, irp: IRP, _context: Any) -> int:
        IoReuseIrp(irp, STATUS_UNSUCCESSFUL)
        return STATUS_MORE_PROCESSING_REQUIRED

    from pywsk.testing.tcp import siocinq

    kernel: socket.socket = cast(Any, sock).sock
    for _ in range(1000):  # bounded: the 5 bytes are in flight on loopback
        if siocinq(kernel) == 5:
            break
    irp = IoAllocateIrp(1, False)
    assert irp is not None
    IoSetCompletionRoutine(irp, reuse_at_once, None, True, True, True)
    assert wsk.dispatch(sock).WskReceive(sock, buf, 0, irp) == STATUS_SUCCESS
    IoFreeIrp(irp)
    peer.close()


def test_control_client_completes_the_irp_of_a_refused_request(wsk: WskTestClient) -> None:
    from pywsk.wsk import WSK_TRANSPORT_LIST_QUERY

    assert wsk.provider.Dispatch is not None
    control = wsk.provider.Dispatch.WskControlClient
    for client, code in [
        (object(), 99),
        (wsk.provider.Client, WSK_TRANSPORT_LIST_QUERY),
        (wsk.provider.Client, 99),
    ]:
        request = wsk.call("WskControlClient", control, client, code, 0, None, 0, None, PSIZE_T())
        assert request.done
        assert request.status == request.returned
        assert request.status != STATUS_SUCCESS


def test_requests_ended_by_an_abort_report_no_bytes(wsk: WskTestClient, listener: Listener) -> None:
    from pywsk.wsk import WSK_FLAG_ABORTIVE

    sock, peer, sends, _ = _stalled(wsk, listener)
    assert wsk.disconnect(sock, flags=WSK_FLAG_ABORTIVE).returned == STATUS_SUCCESS
    for request in sends:
        request.wait(WAIT)
        if request.status != STATUS_SUCCESS:
            assert request.information == 0
    peer.close()


@pytest.mark.parametrize(
    ("kind", "code", "level"),
    [
        (WskSetOption, SO_KEEPALIVE, SOL_SOCKET),
        (WskGetOption, SO_KEEPALIVE, SOL_SOCKET),
        (WskSetOption, SO_RCVBUF, SOL_SOCKET),
        (WskSetOption, SO_REUSEADDR, SOL_SOCKET),
        (WskSetOption, SO_EXCLUSIVEADDRUSE, SOL_SOCKET),
        (WskSetOption, SO_CONDITIONAL_ACCEPT, SOL_SOCKET),
        (WskIoctl, SIO_WSK_QUERY_IDEAL_SEND_BACKLOG, 0),
        (WskIoctl, SIO_WSK_QUERY_RECEIVE_BACKLOG, 0),
        (WskIoctl, SIO_WSK_SET_TCP_SILENT_MODE, 0),
    ],
)
def test_options_whose_page_requires_an_irp_refuse_irp_null(
    wsk: WskTestClient, listener: Listener, kind: int, code: int, level: int
) -> None:
    """ "The WSK application must specify a pointer to an IRP": with Irp NULL, the request
    is not accepted (wsk.h: STATUS_REQUEST_NOT_ACCEPTED, inline completion is not
    possible) and nothing changes."""
    sock, peer = connected(wsk, listener)
    control = wsk.dispatch(sock).WskControlSocket
    value = PULONG(1) if kind == WskSetOption else PSIZE_T()
    in_buf, out_buf = (value, None) if kind == WskSetOption else (None, value)
    status = control(sock, kind, code, level, 4, in_buf, 8, out_buf, None, None)
    assert status == STATUS_REQUEST_NOT_ACCEPTED
    if (kind, code) == (WskSetOption, SO_KEEPALIVE):
        got = PULONG()
        query = (sock, WskGetOption, SO_KEEPALIVE, SOL_SOCKET, 0, None, 4, got, None)
        assert wsk.call("WskControlSocket", control, *query).status == STATUS_SUCCESS
        assert got.value == 0  # not set
    peer.close()
