"""Many threads, one registration: every IRP completes exactly once, every peer sees the truth.

Eight threads each drive their own connections, all at once, through one registered client:
connect, sends (two queued back to back, or two from two threads at once), receives,
graceful and abortive disconnects, close with a receive pending.  A ninth thread cancels pending receives (``IoCancelIrp``)
handed to it by the others, some while the peer's data is arriving (the cancel races the
completion).  Afterwards:

* every IRP's completion routine ran exactly once (the count is kept per IRP), with a
  status the call allows;
* each peer saw exactly the bytes sent (two concurrent sends whole, one after the other),
  then a FIN (graceful) or an RST (abortive, close without a disconnect), and the client
  got exactly the peer's bytes back;
* WskDeregister returns.

Connections are told apart at the peer by a 5-byte header (kind, connection number).
"""

from __future__ import annotations

import hashlib
import queue
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from pywsk.nt import (
    STATUS_CANCELLED,
    STATUS_CONNECTION_ABORTED,
    STATUS_PENDING,
    STATUS_SUCCESS,
    IoCancelIrp,
    IrpState,
)
from pywsk.testing.driver import Request, WskTestClient
from pywsk.wsk import WSK_FLAG_ABORTIVE, WSK_SOCKET

pytestmark = pytest.mark.timeout(40)

WORKERS = 8
PER_WORKER = 18
#: graceful, abortive, cancel, cancel racing data, close with a receive pending, and two
#: threads sending on one socket at once
KINDS = (b"G", b"A", b"C", b"R", b"X", b"S")
PUSH = bytes(range(256)) * 64  # what the peer sends at once on a "race" connection
WAIT = 15.0


def payload(number: int) -> bytes:
    """A connection's own bytes (8 to 104 KiB, different per connection)."""
    size = 8192 + (number * 7919) % (96 * 1024)
    return hashlib.shake_128(struct.pack("!I", number)).digest(size)


def reply(data: bytes) -> bytes:
    """What the peer answers after the client's FIN: a digest of what it read after the header."""
    return b"ok:" + hashlib.sha256(data).digest()


@dataclass
class Seen:
    kind: bytes
    data: bytes
    end: str


class Peer:
    """A plain listener; a thread per connection reads the header, acts, reads to the end,
    records what it saw, and answers a FIN with :func:`reply`."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.listener.settimeout(0.5)
        self.address = self.listener.getsockname()[:2]
        self.seen: dict[int, Seen] = {}
        self.errors: list[str] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(WAIT)
        with conn:
            try:
                header = b""
                while len(header) < 5:
                    chunk = conn.recv(5 - len(header))
                    if not chunk:
                        raise ConnectionError(f"EOF inside the header {header!r}")
                    header += chunk
                kind, number = header[:1], struct.unpack("!I", header[1:])[0]
                if kind == b"R":
                    conn.sendall(PUSH)
                data, end = bytearray(), "fin"
                try:
                    while chunk := conn.recv(1 << 16):
                        data += chunk
                except ConnectionResetError:
                    end = "rst"
                if end == "fin":
                    conn.sendall(reply(bytes(data)))
                    conn.shutdown(socket.SHUT_WR)
            except OSError as exc:
                with self._cond:
                    self.errors.append(repr(exc))
                    self._cond.notify_all()
                return
            with self._cond:
                self.seen[number] = Seen(kind, bytes(data), end)
                self._cond.notify_all()

    def wait(self, number: int) -> Seen:
        with self._cond:
            if not self._cond.wait_for(lambda: number in self.seen or self.errors, WAIT):
                raise TimeoutError(f"the peer never finished connection {number}")
            assert not self.errors, self.errors
            return self.seen[number]

    def close(self) -> None:
        self._stop.set()
        self.listener.close()
        self._acceptor.join(WAIT)
        for thread in self._threads:
            thread.join(WAIT)


class Canceller:
    """A thread that calls IoCancelIrp on the requests handed to it."""

    def __init__(self) -> None:
        self.jobs: queue.Queue[tuple[Request, threading.Event] | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (job := self.jobs.get()) is not None:
            request, done = job
            IoCancelIrp(request.irp)
            done.set()

    def cancel(self, request: Request) -> threading.Event:
        done = threading.Event()
        self.jobs.put((request, done))
        return done

    def close(self) -> None:
        self.jobs.put(None)
        self.thread.join(WAIT)


@pytest.fixture
def peer() -> Iterator[Peer]:
    server = Peer()
    yield server
    server.close()


def receive_to_end(wsk: WskTestClient, sock: WSK_SOCKET) -> bytes:
    data, last = wsk.receive_all(sock, timeout=WAIT)
    assert (last.status, last.information) == (STATUS_SUCCESS, 0), last
    return data


def received(request: Request, pool: object) -> bytes:
    assert request.status == STATUS_SUCCESS, request
    return bytes(memoryview(pool)[: request.information])  # type: ignore[arg-type]


def graceful(wsk: WskTestClient, sock: WSK_SOCKET, header: bytes, body: bytes) -> bytes:
    """Two sends queued back to back, a receive waiting for the reply, a graceful
    disconnect; returns what came back (to EOF)."""
    first, second = wsk.send(sock, header + body[:4096]), wsk.send(sock, body[4096:])
    answer, pool = wsk.receive(sock, 1 << 16)
    disc = wsk.disconnect(sock)
    for request in (first, second, disc):
        request.wait(WAIT)
    assert (first.status, first.information) == (STATUS_SUCCESS, len(header) + len(body[:4096]))
    assert (second.status, second.information) == (STATUS_SUCCESS, len(body[4096:]))
    assert disc.status == STATUS_SUCCESS, disc
    answer.wait(WAIT)
    got = received(answer, pool)
    return got + (receive_to_end(wsk, sock) if got else b"")


def pending_receive(wsk: WskTestClient, sock: WSK_SOCKET) -> Request:
    request, _pool = wsk.receive(sock, 1 << 16)
    assert request.returned == STATUS_PENDING, request
    return request


def send_from_thread(
    wsk: WskTestClient, sock: WSK_SOCKET, data: bytes, into: list[Request]
) -> None:
    into.append(wsk.send(sock, data))


def drive(wsk: WskTestClient, peer: Peer, canceller: Canceller, worker: int) -> None:
    """One thread's connections, one kind after another."""
    for index in range(PER_WORKER):
        number = worker * 1000 + index
        kind = KINDS[(worker + index) % len(KINDS)]
        header = kind + struct.pack("!I", number)
        body = payload(number)
        sock = wsk.connect(peer.address)
        back = b""
        if kind == b"G":
            back = graceful(wsk, sock, header, body)
            assert back == reply(body)
            sent, end = [body], "fin"
        elif kind == b"A":
            assert wsk.send(sock, header + body).wait(WAIT).status == STATUS_SUCCESS
            waiting = pending_receive(wsk, sock)
            abort = wsk.disconnect(sock, flags=WSK_FLAG_ABORTIVE).wait(WAIT)
            assert (abort.returned, abort.status) == (STATUS_SUCCESS, STATUS_SUCCESS), abort
            assert waiting.wait(WAIT).status == STATUS_CONNECTION_ABORTED, waiting
            sent, end = [body], "rst"
        elif kind == b"C":
            assert wsk.send(sock, header).wait(WAIT).status == STATUS_SUCCESS
            waiting = pending_receive(wsk, sock)
            assert canceller.cancel(waiting).wait(WAIT)
            waiting.wait(WAIT)
            assert (waiting.status, waiting.information) == (STATUS_CANCELLED, 0), waiting
            back = graceful(wsk, sock, b"", body)
            assert back == reply(body)
            sent, end = [body], "fin"
        elif kind == b"R":
            assert wsk.send(sock, header).wait(WAIT).status == STATUS_SUCCESS
            racing, pool = wsk.receive(sock, 1 << 16)  # the peer's PUSH is on its way
            assert canceller.cancel(racing).wait(WAIT)
            racing.wait(WAIT)
            if racing.status == STATUS_CANCELLED:
                first = b""
                assert racing.information == 0
            else:
                first = received(racing, pool)
            back = graceful(wsk, sock, b"", body)
            assert first + back == PUSH + reply(body)
            back = (first + back)[len(PUSH) :]
            sent, end = [body], "fin"
        elif kind == b"S":
            one, two = body + b"1" * (1 << 17), body[::-1] + b"2" * (1 << 17)
            assert wsk.send(sock, header).wait(WAIT).status == STATUS_SUCCESS
            theirs: list[Request] = []
            helper = threading.Thread(target=send_from_thread, args=(wsk, sock, two, theirs))
            helper.start()
            mine = wsk.send(sock, one)
            helper.join(WAIT)
            assert len(theirs) == 1, "the second sender did not return"
            for request, data in ((mine, one), (theirs[0], two)):
                request.wait(WAIT)
                assert (request.status, request.information) == (STATUS_SUCCESS, len(data))
            assert wsk.disconnect(sock).wait(WAIT).status == STATUS_SUCCESS
            back = receive_to_end(wsk, sock)
            sent, end = [one + two, two + one], "fin"
        else:  # b"X": close with a receive pending, no disconnect
            assert wsk.send(sock, header + body).wait(WAIT).status == STATUS_SUCCESS
            waiting = pending_receive(wsk, sock)
            assert wsk.close_socket(sock).status == STATUS_SUCCESS
            assert waiting.wait(WAIT).status == STATUS_CANCELLED, waiting
            sent, end = [body], "rst"
        if kind != b"X":
            assert wsk.close_socket(sock).status == STATUS_SUCCESS
        seen = peer.wait(number)
        assert (seen.kind, seen.end) == (kind, end), (number, seen.kind, seen.end)
        if end == "fin":
            assert seen.data in sent, number  # each send whole, never interleaved
            assert back == reply(seen.data), number
        else:  # an RST may discard bytes the peer had not read yet: a prefix arrived
            assert sent[0].startswith(seen.data), number


@pytest.fixture
def wsk() -> Iterator[WskTestClient]:
    """A registered client that the test itself deregisters (bounded); closed here only if
    the test failed before."""
    client = WskTestClient()
    yield client
    if client not in DEREGISTERED:
        deregister(client)


DEREGISTERED: list[WskTestClient] = []


def deregister(client: WskTestClient) -> None:
    """Close every socket left, release the NPI and WskDeregister: bounded."""
    DEREGISTERED.append(client)
    closing = threading.Thread(target=client.close, daemon=True)
    closing.start()
    closing.join(WAIT)
    assert not closing.is_alive(), "WskDeregister did not return"


def test_threads_drive_connections_concurrently_and_every_irp_completes_once(
    wsk: WskTestClient, peer: Peer
) -> None:
    canceller = Canceller()
    failures: list[BaseException] = []

    def worker(number: int) -> None:
        try:
            drive(wsk, peer, canceller, number)
        except BaseException as exc:  # reported by the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    canceller.close()
    assert not any(thread.is_alive() for thread in threads), "a worker did not finish in 30 s"
    if failures:
        raise failures[0]
    assert len(peer.seen) == WORKERS * PER_WORKER

    # Every IRP's completion routine ran exactly once.
    assert wsk.requests
    for request in wsk.requests:
        assert request.completions == 1, request
        assert request.done, request
    assert all(r.irp.state is not IrpState.PENDING for r in wsk.requests)
    kinds = {r.name for r in wsk.requests}
    assert {"WskSocketConnect", "WskSend", "WskReceive", "WskDisconnect", "WskCloseSocket"} <= (
        kinds
    )

    # WskDeregister returns (every socket is closed), bounded.
    assert wsk.sockets == []
    deregister(wsk)
