"""pywsk.sync: blocking WSK connections with KSOCKET-style timeouts.  A timeout cancels the IRP
and waits for its completion; it is never reported as success."""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import pywsk.sync
from pywsk import errors
from pywsk.core.ending import Ending
from pywsk.nt import NT_SUCCESS, STATUS_CANCELLED, STATUS_CONNECTION_ABORTED, STATUS_TIMEOUT
from pywsk.sync import DisconnectReason, client
from pywsk.testing import tcp
from pywsk.testing.contract import peer_reads_to_end
from pywsk.wsk import SO_SNDBUF, SOL_SOCKET

Listener = Callable[..., socket.socket]
WAIT = 10.0


def kernel(conn: pywsk.sync.Connection) -> socket.socket:
    """The Linux socket behind a connection (tests only)."""
    provider_socket: Any = conn.socket
    sock: socket.socket = provider_socket.sock
    return sock


@pytest.fixture
def pair(listener: Listener) -> Iterator[tuple[pywsk.sync.Connection, socket.socket]]:
    """A pywsk.sync connection to a plain peer with small buffers; both closed afterwards."""
    lsock = listener("127.0.0.1", 4096)
    conn = pywsk.sync.connect(
        "127.0.0.1", lsock.getsockname()[1], timeout=WAIT, options=[(SOL_SOCKET, SO_SNDBUF, 4096)]
    )
    peer, _ = lsock.accept()
    peer.settimeout(WAIT)
    try:
        yield conn, peer
    finally:
        conn.close()
        peer.close()


def fill_kernel(conn: pywsk.sync.Connection) -> int:
    """Fill the connection's kernel buffers directly (test filler; the peer does not read)."""
    sock = kernel(conn)
    filled = 0
    try:
        while True:
            filled += sock.send(b"f" * 65536)
    except BlockingIOError:
        return filled


def test_graceful_path(pair: tuple[pywsk.sync.Connection, socket.socket]) -> None:
    conn, peer = pair
    with conn:
        assert conn.send(b"hello ", timeout=WAIT) == 6
        conn.disconnect(b"world", timeout=WAIT)
        assert tcp.tcp_state(kernel(conn)) == tcp.FIN_WAIT2  # acknowledged at return
        assert peer_reads_to_end(peer) == (b"hello world", "fin")
        peer.sendall(b"reply")
        peer.shutdown(socket.SHUT_WR)
        assert conn.recv(timeout=WAIT) == b"reply"
        assert conn.recv(timeout=WAIT) == b""
        assert conn.disconnected_by is Ending.PEER_FIN
        with pytest.raises(errors.WskBrokenPipeError):
            conn.send(b"late")
    assert conn.disconnected_by is Ending.PEER_FIN
    with pytest.raises(errors.SocketClosedError):
        conn.recv()


def test_receive_timeout_is_an_exception_never_success(
    pair: tuple[pywsk.sync.Connection, socket.socket],
) -> None:
    conn, peer = pair
    # The trap: STATUS_TIMEOUT is a success code to NT_SUCCESS.
    assert NT_SUCCESS(STATUS_TIMEOUT)
    started = time.monotonic()
    with pytest.raises(TimeoutError) as caught:
        conn.recv(timeout=0.1)
    assert time.monotonic() - started >= 0.1
    assert isinstance(caught.value, errors.WskTimeoutError)
    assert caught.value.status == STATUS_TIMEOUT
    assert conn.bytes_received == 0
    peer.sendall(b"after")
    assert conn.recv(timeout=WAIT) == b"after"  # the cancelled receive took nothing


def test_send_timeout_before_the_send_started_has_no_effect(
    pair: tuple[pywsk.sync.Connection, socket.socket],
) -> None:
    conn, peer = pair
    filled = fill_kernel(conn)
    with pytest.raises(errors.WskTimeoutError):
        conn.send(b"never", timeout=0.1)
    assert conn.bytes_sent == 0
    reader = threading.Thread(target=lambda: result.append(peer_reads_to_end(peer)))
    result: list[tuple[bytes, str]] = []
    reader.start()
    assert conn.send(b"sent", timeout=WAIT) == 4
    conn.disconnect(timeout=WAIT)
    reader.join(WAIT)
    assert result == [(b"f" * filled + b"sent", "fin")]


def test_send_timeout_after_the_send_started_resets_the_connection(
    pair: tuple[pywsk.sync.Connection, socket.socket],
) -> None:
    # The peer never reads: the WskSend is partly taken and can neither finish nor be
    # recalled.  Its cancel aborts the connection (the provider's rule); the peer sees an RST.
    conn, peer = pair
    with pytest.raises(errors.WskTimeoutError):
        conn.send(b"x" * (4 << 20), timeout=0.3)
    assert 0 < conn.bytes_sent < 4 << 20
    assert conn.disconnected_by is Ending.OUR_RST
    data, end = peer_reads_to_end(peer)
    assert end == "rst"
    assert len(data) <= conn.bytes_sent
    with pytest.raises(errors.NtStatusError):
        conn.send(b"after", timeout=WAIT)


def test_disconnect_timeout_leaves_the_disconnect_going(
    pair: tuple[pywsk.sync.Connection, socket.socket],
) -> None:
    conn, peer = pair
    conn.send(b"data", timeout=WAIT)
    filled = fill_kernel(conn)
    with pytest.raises(errors.WskTimeoutError):
        conn.disconnect(timeout=0.1)  # the FIN waits behind data the peer does not read
    assert tcp.tcp_state(kernel(conn)) == tcp.FIN_WAIT1  # queued, not acknowledged
    result: list[tuple[bytes, str]] = []
    reader = threading.Thread(target=lambda: result.append(peer_reads_to_end(peer)))
    reader.start()
    conn.disconnect(timeout=WAIT)  # waits for the same disconnect
    reader.join(WAIT)
    assert result == [(b"data" + b"f" * filled, "fin")]
    assert tcp.tcp_state(kernel(conn)) == tcp.FIN_WAIT2


def test_receive_timeouts_racing_data_lose_and_duplicate_nothing(
    pair: tuple[pywsk.sync.Connection, socket.socket],
) -> None:
    conn, peer = pair
    pace = random.Random(21)
    pieces = [bytes(pace.getrandbits(8) for _ in range(pace.randint(1, 100))) for _ in range(600)]

    def feed() -> None:
        for piece in pieces:
            peer.sendall(piece)
            time.sleep(pace.random() / 500)  # pacing, so that data arrives mid-receive
        peer.shutdown(socket.SHUT_WR)

    feeder = threading.Thread(target=feed)
    feeder.start()
    received = bytearray()
    timeouts = 0
    chooser = random.Random(22)
    try:
        while True:
            try:
                chunk = conn.recv(
                    chooser.randint(1, 4096), timeout=chooser.choice([0, 0.0002, 0.001])
                )
            except errors.WskTimeoutError:
                timeouts += 1
                continue
            if not chunk:
                break
            received += chunk
    finally:
        feeder.join(WAIT)
    assert bytes(received) == b"".join(pieces)
    assert timeouts > 0


def test_abort_from_another_thread_ends_a_blocked_receive(
    pair: tuple[pywsk.sync.Connection, socket.socket],
) -> None:
    conn, peer = pair
    failure: list[BaseException] = []

    def receive() -> None:
        try:
            conn.recv()
        except OSError as exc:
            failure.append(exc)

    receiver = threading.Thread(target=receive)
    receiver.start()
    conn.abort()
    receiver.join(WAIT)
    assert not receiver.is_alive()
    assert isinstance(failure[0], ConnectionAbortedError)
    assert isinstance(failure[0], errors.NtStatusError)
    assert failure[0].status == STATUS_CONNECTION_ABORTED
    assert conn.disconnected_by is Ending.OUR_RST
    assert peer_reads_to_end(peer) == (b"", "rst")


def test_connect_timeout_cancels_and_closes() -> None:
    with socket.socket() as full:
        full.bind(("127.0.0.1", 0))
        full.listen(0)  # a full accept queue drops further SYNs
        fillers = [socket.socket() for _ in range(3)]
        for filler in fillers:
            filler.setblocking(False)
            filler.connect_ex(full.getsockname())
        try:
            before = len(client().sockets)
            with pytest.raises(errors.WskTimeoutError):
                pywsk.sync.connect("127.0.0.1", full.getsockname()[1], timeout=0.3)
            assert len(client().sockets) == before
        finally:
            for filler in fillers:
                filler.close()


def test_listener_accept_with_timeout() -> None:
    with pywsk.sync.listen("127.0.0.1", 0) as listener:
        with pytest.raises(errors.WskTimeoutError):
            listener.accept(timeout=0.05)
        port = listener.local_address[1]
        with pywsk.sync.connect("127.0.0.1", port, timeout=WAIT) as client:
            with listener.accept(timeout=WAIT) as server:
                client.send(b"ping", timeout=WAIT)
                assert server.recv(timeout=WAIT) == b"ping"
                client.disconnect(timeout=WAIT)
                assert server.recv(timeout=WAIT) == b""
                server.disconnect(timeout=WAIT)
                assert client.recv(timeout=WAIT) == b""
            assert server.disconnected_by is Ending.PEER_FIN


def test_the_earlier_names_of_the_endings_are_the_endings() -> None:
    assert DisconnectReason.PEER_GRACEFUL is Ending.PEER_FIN
    assert DisconnectReason.PEER_RESET is Ending.PEER_RST
    assert DisconnectReason.LOCAL_ABORT is Ending.OUR_RST
    assert DisconnectReason.TRANSPORT_FAILURE is Ending.TRANSPORT_FAILURE


def test_every_call_is_the_client_runtimes_and_its_tracer_sees_it(listener: Listener) -> None:
    """pywsk.sync issues its calls through pywsk.client: a tracer set on its client sees
    each one return and complete, and every IRP is over when the operation returns."""
    from pywsk.client import Call as RuntimeCall
    from pywsk.trace import Tracer

    seen: list[tuple[str, str]] = []

    class Seen(Tracer):
        def returned(self, call: RuntimeCall) -> None:
            seen.append(("returned", call.name))

        def completed(self, call: RuntimeCall) -> None:
            seen.append(("completed", call.name))

    lsock = listener("127.0.0.1", 4096)
    runtime = client()
    previous, runtime.tracer = runtime.tracer, Seen()
    try:
        with pywsk.sync.connect("127.0.0.1", lsock.getsockname()[1], timeout=WAIT) as conn:
            peer, _ = lsock.accept()
            with peer:
                conn.send(b"ping", timeout=WAIT)
                assert peer.recv(4, socket.MSG_WAITALL) == b"ping"
                peer.shutdown(socket.SHUT_WR)
                assert conn.recv(timeout=WAIT) == b""
                conn.disconnect(timeout=WAIT)
    finally:
        runtime.tracer = previous
    names = [name for event, name in seen if event == "returned"]
    assert names == [
        "WskSocket",
        "WskBind",
        "WskConnect",
        "WskGetLocalAddress",
        "WskSend",
        "WskReceive",
        "WskDisconnect",
        "WskCloseSocket",
    ]
    assert sorted(n for e, n in seen if e == "completed") == sorted(names)
    assert conn.disconnected_by is Ending.PEER_FIN
    assert conn.socket not in runtime.sockets


def test_sync_and_its_runtime_do_not_import_the_bridge() -> None:
    """pywsk.sync is built on pywsk.client alone (the bridge is the async layers' past)."""
    import ast
    from pathlib import Path

    import pywsk.client

    paths = [Path(pywsk.sync.__file__), *Path(pywsk.client.__file__).parent.glob("*.py")]
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                assert "_bridge" not in (node.module or ""), path
                assert "_bridge" not in [alias.name for alias in node.names], path
            elif isinstance(node, ast.Import):
                assert not any("_bridge" in alias.name for alias in node.names), path


def test_every_irp_is_freed_before_the_operation_returns(
    pair: tuple[pywsk.sync.Connection, socket.socket],
) -> None:
    """The module's promise, checked on the IRPs themselves: after each operation - a send,
    a receive that timed out (its IRP cancelled), a receive, a disconnect, a close - every
    IRP it issued is complete and freed."""
    from pywsk.client import Call as RuntimeCall
    from pywsk.nt import IrpState
    from pywsk.trace import Tracer

    conn, peer = pair
    issued: list[RuntimeCall] = []

    class Issued(Tracer):
        def returned(self, call: RuntimeCall) -> None:
            issued.append(call)

    def all_freed() -> list[str]:
        left = [call.name for call in issued if call.irp.state is not IrpState.FREED]
        issued.clear()
        return left

    runtime = client()
    previous, runtime.tracer = runtime.tracer, Issued()
    try:
        conn.send(b"data", timeout=WAIT)
        assert all_freed() == []
        with pytest.raises(errors.WskTimeoutError):
            conn.recv(timeout=0.05)
        assert [call.status for call in issued] == [STATUS_CANCELLED]
        assert all_freed() == []
        peer.sendall(b"reply")
        peer.shutdown(socket.SHUT_WR)
        assert conn.recv(timeout=WAIT) == b"reply"
        assert all_freed() == []
        conn.disconnect(timeout=WAIT)
        assert all_freed() == []
        assert conn.recv(timeout=WAIT) == b""
        conn.close()
        assert all_freed() == []
    finally:
        runtime.tracer = previous
    assert peer_reads_to_end(peer) == (b"data", "fin")


def test_a_sync_program_never_loads_the_bridge() -> None:
    """In a program of its own: a pywsk.sync connection, its graceful end, and no
    pywsk._bridge in sys.modules - the calls are the client runtime's - nor pywsk.aio or
    pywsk._native."""
    program = """
import json, socket, sys
import pywsk.sync
with socket.create_server(("127.0.0.1", 0)) as server:
    with pywsk.sync.connect("127.0.0.1", server.getsockname()[1], timeout=10) as conn:
        peer, _ = server.accept()
        with peer:
            conn.send(b"hi", timeout=10)
            conn.disconnect(timeout=10)
            assert peer.recv(2, socket.MSG_WAITALL) == b"hi"
            peer.shutdown(socket.SHUT_WR)
            assert conn.recv(timeout=10) == b""
native = sorted(m for m in sys.modules if m.startswith(("pywsk.aio", "pywsk._native")))
print(json.dumps({"ending": conn.disconnected_by.name, "bridge": "pywsk._bridge" in sys.modules,
                  "native": native}))
"""
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    # Nor the native front-ends: the receive helpers it shares with them load neither.
    assert report == {"ending": "PEER_FIN", "bridge": False, "native": []}
