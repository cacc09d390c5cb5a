"""The runtime's blocking side (pywsk.client.blocking, pywsk.client.steps): waiting on a KEVENT
with an NT timeout that cancels and waits, the caller's memory locked for a send, a receive
into the caller's buffer, and the connect / listen sequences."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest

from pywsk.client import Client, ClientError, allocate_buffer, lock_buffer
from pywsk.client.blocking import deadline, drive, nt_timeout, wait
from pywsk.client.steps import connect_steps, listen_steps
from pywsk.nt import (
    MDL_PAGES_LOCKED,
    NT_SUCCESS,
    STATUS_CANCELLED,
    STATUS_CONNECTION_REFUSED,
    STATUS_TIMEOUT,
)
from pywsk.wsk import WSK_SOCKET

WAIT = 10.0
Listener = Callable[..., socket.socket]


@pytest.fixture
def client() -> Iterator[Client]:
    with Client() as c:
        yield c


@pytest.fixture
def pair(client: Client, listener: Listener) -> Iterator[tuple[WSK_SOCKET, socket.socket]]:
    lsock = listener()
    sock = client.socket_connect(lsock.getsockname(), timeout=WAIT)
    peer, _ = lsock.accept()
    peer.settimeout(WAIT)
    with peer:
        yield sock, peer


def test_a_timeout_cancels_the_irp_and_waits_for_its_completion(
    client: Client, pair: tuple[WSK_SOCKET, socket.socket]
) -> None:
    sock, peer = pair
    assert NT_SUCCESS(STATUS_TIMEOUT)  # the trap the wait must not fall into
    call = client.receive(sock, 64)
    assert wait(call, deadline(0.05)) is True
    assert call.done
    assert call.status == STATUS_CANCELLED
    peer.sendall(b"after")
    later = client.receive(sock, 64)
    assert wait(later, deadline(WAIT)) is False
    assert later.data == b"after"  # the cancelled receive took nothing


def test_a_call_over_before_the_wait_is_not_waited_for(
    client: Client, pair: tuple[WSK_SOCKET, socket.socket]
) -> None:
    sock, _peer = pair
    call = client.send(sock, b"x")
    assert call.completed_within(WAIT)
    assert wait(call, deadline(0)) is False
    assert call.succeeded


def test_deadlines_and_nt_timeouts() -> None:
    assert deadline(None) is None
    assert nt_timeout(None) is None
    with pytest.raises(ValueError):
        deadline(-1)
    timeout = nt_timeout(deadline(1.0))
    assert timeout is not None
    assert -10_000_000 <= timeout.QuadPart < 0  # relative, in 100-ns units
    passed = nt_timeout(deadline(0))
    assert passed is not None
    assert passed.QuadPart == -1


def test_a_locked_send_sends_the_callers_memory(
    client: Client, pair: tuple[WSK_SOCKET, socket.socket]
) -> None:
    sock, peer = pair
    data = bytearray(b"from the caller's own buffer")
    call = client.send(sock, memoryview(data), locked=True)
    assert wait(call, deadline(WAIT)) is False
    assert call.succeeded
    assert call.information == len(data)
    assert peer.recv(len(data), socket.MSG_WAITALL) == bytes(data)


def test_lock_buffer_locks_and_unlocks() -> None:
    memory = bytearray(100)
    buf, free = lock_buffer(memoryview(memory), write=True)
    assert buf.Mdl is not None
    assert buf.Length == 100
    assert buf.Mdl.MdlFlags & MDL_PAGES_LOCKED
    free()
    assert not buf.Mdl.MdlFlags & MDL_PAGES_LOCKED
    free()  # once only


def test_a_receive_into_the_callers_buffer_leaves_it_to_the_caller(
    client: Client, pair: tuple[WSK_SOCKET, socket.socket]
) -> None:
    sock, peer = pair
    buffer = allocate_buffer(64)
    try:
        for word in (b"one", b"two"):
            peer.sendall(word)
            call = client.receive(sock, 64, into=buffer)
            assert wait(call, deadline(WAIT)) is False
            assert call.data == word
            assert bytes(buffer[0][: len(word)]) == word  # the pool is still the caller's
    finally:
        buffer[2]()


def test_connect_steps_refused_raise_the_status_and_close_the_socket(client: Client) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, not listening: refused
        with pytest.raises(ClientError) as caught:
            drive(connect_steps(client, "127.0.0.1", port), deadline(WAIT), TimeoutError)
    assert caught.value.status == STATUS_CONNECTION_REFUSED
    assert client.sockets == []


def test_listen_and_connect_steps_by_name(client: Client) -> None:
    sock, here = drive(listen_steps(client, "127.0.0.1", 0), deadline(WAIT), TimeoutError)
    assert here[0] == "127.0.0.1"
    assert here[1] > 0
    accept = client.accept(sock)
    conn, mine, remote = drive(
        connect_steps(client, "localhost", here[1]), deadline(WAIT), TimeoutError
    )
    assert remote == ("127.0.0.1", here[1])
    assert mine[0] == "127.0.0.1"
    assert wait(accept, deadline(WAIT)) is False
    assert accept.succeeded
    assert conn in client.sockets
    assert accept.information in client.sockets
    for each in (conn, accept.information, sock):
        assert wait(client.close_socket_call(each), deadline(WAIT)) is False
    assert client.sockets == []


def test_calls_defer_ctrl_c_only_while_it_is_deferred() -> None:
    from pywsk.client.interrupt import armed, interrupt_between_calls

    assert not armed()
    with interrupt_between_calls():
        assert armed()  # pytest runs tests on the main thread
    assert not armed()
