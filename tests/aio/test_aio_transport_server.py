"""pywsk.aio's create_server and create_connection: serving plain clients, closing the
server, a failing protocol factory (at accept and at connect), bad ports and busy ones,
connect failures and cancellation, and socat (a peer nobody here wrote) as an echo
server.  Each test runs on asyncio and on uvloop.
"""

from __future__ import annotations

import asyncio
import errno
import queue
import re
import select
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aio_helpers import WAIT, Run, in_thread, loop_fixture, unanswered
from transport_helpers import HOSTS, Recorder, Wire, bounded, local_port, no_rst, wire_fixture

import pywsk.aio
from pywsk import errors
from pywsk._native import open_sockets
from pywsk.core.ending import Ending
from pywsk.nt import STATUS_ADDRESS_ALREADY_ASSOCIATED, STATUS_CONNECTION_REFUSED
from pywsk.testing.contract import peer_reads_to_end
from pywsk.wsk import SO_SNDBUF, SOL_SOCKET

run = loop_fixture()
wire = wire_fixture()


class Echo(Recorder):
    """Echoes what it receives; at the peer's FIN, eof_received's None closes it."""

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        assert self.transport is not None
        self.transport.write(data)


def client(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    return sock


def exchange(sock: socket.socket, message: bytes) -> tuple[bytes, str]:
    """Send ``message`` and our FIN; read the echo to the server's end."""
    sock.sendall(message)
    sock.shutdown(socket.SHUT_WR)
    return peer_reads_to_end(sock)


def echo_through(port: int, payload: bytes) -> tuple[bytes, str]:
    """A client with a small receive buffer that sends ``payload`` and its FIN while it
    reads the echo (one thread, select, bounded): what came back, and how it ended."""
    deadline = time.monotonic() + WAIT
    received = bytearray()
    view = memoryview(payload)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a slow reader
        sock.settimeout(WAIT)
        sock.connect(("127.0.0.1", port))
        sock.setblocking(False)
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"echo incomplete: sent {len(payload) - len(view)}"
            writers = [sock] if view else []
            readable, writable, _ = select.select([sock], writers, [], remaining)
            if writable:
                view = view[sock.send(view[: 1 << 16]) :]
                if not view:
                    sock.shutdown(socket.SHUT_WR)
            if readable:
                try:
                    chunk = sock.recv(1 << 16)
                except ConnectionResetError:
                    return bytes(received), "rst"
                if not chunk:
                    return bytes(received), "fin"
                received += chunk


class FlowEcho(Echo):
    """An echo that respects flow control: it stops reading while its writes are paused."""

    def pause_writing(self) -> None:
        super().pause_writing()
        assert self.transport is not None
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        super().resume_writing()
        assert self.transport is not None
        self.transport.resume_reading()


class Made:
    """A protocol factory that keeps what it made (``kind()`` each time)."""

    def __init__(self, kind: type[Recorder] = Echo) -> None:
        self.kind = kind
        self.protocols: list[Recorder] = []
        self.changed = asyncio.Event()

    def __call__(self) -> Recorder:
        self.protocols.append(self.kind())
        self.changed.set()
        return self.protocols[-1]

    async def wait(self, count: int) -> None:
        """Wait (bounded) until ``count`` protocols were made."""
        async with asyncio.timeout(WAIT):
            while len(self.protocols) < count:
                self.changed.clear()
                await self.changed.wait()


def test_each_client_gets_its_own_protocol(run: Run, wire: Wire) -> None:
    async def main() -> None:
        made = Made()
        server = await pywsk.aio.create_server(made, "127.0.0.1", 0)
        port = server.local_address[1]
        cap = wire(port)
        assert server.is_serving()
        assert [s.getsockname()[1] for s in server.sockets] == [port]
        clients = [client(port) for _ in range(3)]
        try:
            echoes = await asyncio.gather(
                *(in_thread(exchange, c, f"client {i}".encode()) for i, c in enumerate(clients))
            )
            assert echoes == [(f"client {i}".encode(), "fin") for i in range(3)]
            for proto in made.protocols:
                await bounded(proto.lost)
            protocols = made.protocols
            assert len({id(p) for p in protocols}) == len({id(p.transport) for p in protocols}) == 3
            by_port = {
                p.transport.get_extra_info("peername")[1]: p for p in protocols if p.transport
            }
            for i, c in enumerate(clients):
                proto = by_port[c.getsockname()[1]]
                assert bytes(proto.data) == f"client {i}".encode()
                assert proto.events == ["made", "data", "eof", "disconnect", "lost"]
                assert proto.lost.result() is None
                assert proto.transport is not None
                assert proto.transport.disconnected_by is Ending.PEER_FIN
        finally:
            for c in clients:
                c.close()
        server.close()
        await bounded(asyncio.ensure_future(server.wait_closed()))
        no_rst(cap)

    run(main())


def test_many_clients_at_once_through_flow_control(run: Run, wire: Wire) -> None:
    """Twelve clients send 256 KiB each while they read the echo, slowly: the server's
    transports (small send buffers) pause reading while their writes are paused; every byte
    comes back, in order, then the FIN; no RST."""

    async def main() -> None:
        made = Made(FlowEcho)
        small = ((SOL_SOCKET, SO_SNDBUF, 4096),)  # inherited by the accepted sockets
        async with await pywsk.aio.create_server(made, "127.0.0.1", 0, options=small) as server:
            port = server.local_address[1]
            cap = wire(port)
            payloads = [bytes([i]) * 1000 + bytes(range(256)) * 1024 for i in range(12)]
            results = await asyncio.gather(*(in_thread(echo_through, port, p) for p in payloads))
            assert [(len(data), end) for data, end in results] == [
                (len(p), "fin") for p in payloads
            ]
            assert [data for data, _ in results] == payloads
            for protocol in made.protocols:
                assert await bounded(protocol.lost) is None
        assert len(made.protocols) == 12
        pauses = [protocol.events.count("pause") for protocol in made.protocols]
        assert sum(pauses) > 0  # flow control did act
        assert pauses == [protocol.events.count("resume") for protocol in made.protocols]
        no_rst(cap)

    run(main())


def test_closing_the_server_stops_accepting_and_spares_connections(run: Run) -> None:
    async def main() -> None:
        made = Made()
        server = await pywsk.aio.create_server(made, "127.0.0.1", 0)
        port = server.local_address[1]
        serving = asyncio.ensure_future(server.serve_forever())
        with client(port) as sock:
            await made.wait(1)
            server.close()
            server.close()  # idempotent
            assert not server.is_serving()
            assert server.sockets == ()
            await bounded(serving)  # serve_forever returns once closed
            with pytest.raises(ConnectionRefusedError):
                client(port)
            # The connection made before goes on.
            sock.sendall(b"still there")
            assert await in_thread(sock.recv, 100) == b"still there"
            closed = asyncio.ensure_future(server.wait_closed())
            done, _ = await asyncio.wait({closed}, timeout=0.3)  # a bounded check
            assert not done  # the connection is not lost yet
            sock.shutdown(socket.SHUT_WR)
            await bounded(closed)  # returns once it is lost
            assert made.protocols[0].lost.result() is None
            assert await in_thread(peer_reads_to_end, sock) == (b"", "fin")
        assert len(made.protocols) == 1

    run(main())


@pytest.mark.parametrize("host", HOSTS)
def test_server_as_context_manager(run: Run, host: str) -> None:
    async def main() -> None:
        made = Made()
        async with await pywsk.aio.create_server(made, host, 0) as server:
            port = server.local_address[1]
            with socket.create_connection((host, port), timeout=WAIT) as sock:
                assert await in_thread(exchange, sock, b"ping") == (b"ping", "fin")
                transport = made.protocols[0].transport
                assert transport is not None
                assert transport.get_extra_info("peername")[:2] == sock.getsockname()[:2]
                assert transport.get_extra_info("sockname")[:2] == (host, port)
        assert not server.is_serving()
        assert made.protocols[0].lost.done()  # __aexit__ waited for it

    run(main())


def test_create_connection_from_a_local_address(run: Run) -> None:
    async def main() -> None:
        with socket.socket() as lsock:
            lsock.bind(("127.0.0.1", 0))
            lsock.listen()
            lsock.settimeout(WAIT)
            transport, proto = await pywsk.aio.create_connection(
                Recorder, "127.0.0.1", lsock.getsockname()[1], local=("127.0.0.2", 0)
            )
            peer, remote = lsock.accept()
            with peer:
                assert remote[0] == "127.0.0.2"
                assert transport.get_extra_info("sockname") == remote
                transport.abort()
                assert isinstance(proto, Recorder)
                assert await bounded(proto.lost) is None

    run(main())


def test_a_failing_factory_closes_that_connection_and_serving_goes_on(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        contexts: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, context: contexts.append(context))
        calls = [0]

        def factory() -> Echo:
            calls[0] += 1
            if calls[0] == 1:
                raise ValueError("no protocol for you")
            return Echo()

        async with await pywsk.aio.create_server(factory, "127.0.0.1", 0) as server:
            port = server.local_address[1]
            with client(port) as refused:
                # Accepted, then closed by WskCloseSocket's rule: an RST.
                assert await in_thread(peer_reads_to_end, refused) == (b"", "rst")
            assert len(contexts) == 1
            assert isinstance(contexts[0]["exception"], ValueError)
            assert "factory" in contexts[0]["message"]
            assert server.is_serving()
            with client(port) as served:
                assert await in_thread(exchange, served, b"next") == (b"next", "fin")
        assert calls[0] == 2

    run(main())


def test_create_connection_refused(run: Run) -> None:
    async def main() -> None:
        made = Made(Recorder)
        with socket.socket() as unused:
            unused.bind(("127.0.0.1", 0))  # bound, not listening: refused
            port = unused.getsockname()[1]
            before = open_sockets()
            with pytest.raises(ConnectionRefusedError) as caught:
                await pywsk.aio.create_connection(made, "127.0.0.1", port)
        assert isinstance(caught.value, errors.NtStatusError)
        assert caught.value.status == STATUS_CONNECTION_REFUSED
        assert made.protocols == []  # no protocol for a connection that never was
        assert open_sockets() == before

    run(main())


def test_cancelled_create_connection_leaves_nothing_open(run: Run) -> None:
    async def main() -> None:
        made = Made(Recorder)
        with unanswered() as port:
            before = open_sockets()
            connecting = asyncio.ensure_future(pywsk.aio.create_connection(made, "127.0.0.1", port))
            done, _ = await asyncio.wait({connecting}, timeout=0.3)  # a bounded check
            assert not done
            assert open_sockets() == before + 1  # the pending connect's socket
            connecting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await connecting
            assert open_sockets() == before
            assert made.protocols == []

    run(main())


def test_bad_arguments_and_busy_ports_are_refused(run: Run) -> None:
    async def main() -> None:
        before = open_sockets()
        for port, error in [(70000, ValueError), (-1, ValueError), ("80", TypeError)]:
            with pytest.raises(error):
                await pywsk.aio.create_connection(Recorder, "127.0.0.1", port)  # type: ignore[arg-type]
            with pytest.raises(error):
                await pywsk.aio.create_server(Recorder, "127.0.0.1", port)  # type: ignore[arg-type]
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            with pytest.raises(OSError) as caught:
                await pywsk.aio.create_server(Recorder, "127.0.0.1", busy.getsockname()[1])
        assert isinstance(caught.value, errors.NtStatusError)
        assert caught.value.errno == errno.EADDRINUSE
        assert caught.value.status == STATUS_ADDRESS_ALREADY_ASSOCIATED
        assert open_sockets() == before

    run(main())


def test_a_failing_factory_at_connect_raises_and_closes(run: Run) -> None:
    def factory() -> Recorder:
        raise ValueError("no protocol for you")

    async def main() -> None:
        with socket.socket() as lsock:
            lsock.bind(("127.0.0.1", 0))
            lsock.listen()
            lsock.settimeout(WAIT)
            before = open_sockets()
            with pytest.raises(ValueError, match="no protocol"):
                await pywsk.aio.create_connection(factory, "127.0.0.1", lsock.getsockname()[1])
            assert open_sockets() == before
            with lsock.accept()[0] as peer:
                peer.settimeout(WAIT)
                # The connection was made, then closed by WskCloseSocket's rule: an RST.
                assert await in_thread(peer_reads_to_end, peer) == (b"", "rst")

    run(main())


# --- socat as an echo server --------------------------------------------------------------


@pytest.fixture
def socat_echo() -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """``socat TCP-LISTEN:0 PIPE`` on 127.0.0.1, one connection: (its port, the process)."""
    if shutil.which("socat") is None:
        pytest.skip("socat is not installed (apt-get install socat; scripts/run does)")
    proc = subprocess.Popen(
        # -t: the half-close may take longer than socat's default 0.5 s on a loaded machine.
        ["socat", "-d", "-d", "-t", str(WAIT), "TCP-LISTEN:0,bind=127.0.0.1,reuseaddr", "PIPE"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def drain() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.put(line)
        lines.put("")

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        while True:
            line = lines.get(timeout=WAIT)
            assert line, "socat exited before listening"
            found = re.search(r"listening on .*:(\d+)\s*$", line)
            if found:
                break
        yield int(found.group(1)), proc
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(timeout=WAIT)
        reader.join(WAIT)
        assert proc.stderr is not None
        proc.stderr.close()


def test_socat_echo_interop(
    run: Run, wire: Wire, socat_echo: tuple[int, subprocess.Popen[str]]
) -> None:
    port, proc = socat_echo
    payload = b"".join(b"line %d\n" % i for i in range(5000))

    async def main() -> None:
        cap = wire(port)
        transport, proto = await pywsk.aio.create_connection(Recorder, "127.0.0.1", port)
        assert isinstance(proto, Recorder)
        transport.write(payload)
        transport.write_eof()
        assert await bounded(proto.disconnected) is None  # socat's kernel has it all
        await bounded(proto.eof)  # socat echoed everything, then sent its FIN
        assert await bounded(proto.lost) is None  # eof_received's None: closed
        assert bytes(proto.data) == payload
        # Our FIN's acknowledgement may come before, between or after parts of the echo.
        events = proto.events
        assert (events[0], events[-2:]) == ("made", ["eof", "lost"])
        assert set(events[1:-2]) == {"data", "disconnect"}
        assert proto.calls == {"disconnect_complete": 1, "connection_lost": 1}
        assert transport.disconnected_by is Ending.PEER_FIN
        if cap is not None:
            await in_thread(cap.wait_fin, port)
            await in_thread(cap.wait_fin, local_port(transport))
        no_rst(cap)

    run(main())
    assert proc.wait(timeout=WAIT) == 0  # socat saw a clean end of both directions
