"""Helpers for the tests of pywsk.aio's Transports and Protocols: a protocol that records
every callback, a pair (transport, protocol, plain peer socket), and wire checks.

:class:`Recorder` keeps the callbacks in order (``events``), the data, and futures the tests
await with a bound; at ``disconnect_complete`` it notes the kernel's view of our socket
(TCP state, unacknowledged bytes) and the time, so that a test can prove the callback came
only after the peer acknowledged our FIN.
"""

from __future__ import annotations

import asyncio
import select
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from aio_helpers import SMALL_SNDBUF, WAIT

import pywsk.aio
from pywsk.aio import SocketOption, WskTransport
from pywsk.testing import tcp
from pywsk.testing.capture import Segment, WireCapture

#: ``wire(port)``: a capture of that port, or None where captures cannot run.
Wire = Callable[[int], WireCapture | None]

#: The loopback addresses the tests run on (IPv6 where this machine has it).
HOSTS = [
    "127.0.0.1",
    pytest.param(
        "::1", marks=pytest.mark.skipif(not tcp.has_ipv6_loopback(), reason="no IPv6 loopback")
    ),
]

needs_capture = pytest.mark.skipif(
    not WireCapture.available(), reason="packet capture needs root and tcpdump"
)


class Recorder(asyncio.Protocol):
    """Records every callback; ``keep_open`` is what ``eof_received`` returns."""

    def __init__(self, keep_open: bool | None = None) -> None:
        loop = asyncio.get_running_loop()
        self.keep_open = keep_open
        self.events: list[str] = []
        self.data = bytearray()
        self.transport: WskTransport | None = None
        self.eof: asyncio.Future[None] = loop.create_future()
        self.paused = asyncio.Event()
        self.resumed = asyncio.Event()
        #: disconnect_complete's and connection_lost's arguments (results, never exceptions).
        self.disconnected: asyncio.Future[BaseException | None] = loop.create_future()
        self.lost: asyncio.Future[BaseException | None] = loop.create_future()
        self.calls = {"disconnect_complete": 0, "connection_lost": 0}
        #: At disconnect_complete: time.time(), our TCP state and SIOCOUTQ (FIN counts 1).
        self.at_disconnect: dict[str, float] = {}
        #: At resume_writing: the transport's buffer size.
        self.buffered_at_resume = -1
        self._changed = asyncio.Event()

    def _event(self, name: str) -> None:
        if not (name == "data" and self.events[-1:] == ["data"]):
            self.events.append(name)
        self._changed.set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, WskTransport)
        self.transport = transport
        self._event("made")

    def data_received(self, data: bytes) -> None:
        self.data += data
        self._event("data")

    def eof_received(self) -> bool | None:
        self._event("eof")
        self.eof.set_result(None)
        return self.keep_open

    def pause_writing(self) -> None:
        self._event("pause")
        self.paused.set()

    def resume_writing(self) -> None:
        assert self.transport is not None
        self.buffered_at_resume = self.transport.get_write_buffer_size()
        self._event("resume")
        self.resumed.set()

    def disconnect_complete(self, exc: BaseException | None) -> None:
        self.at_disconnect["time"] = time.time()
        assert self.transport is not None
        sock = self.transport.get_extra_info("socket")
        if sock.fileno() >= 0:
            self.at_disconnect["state"] = tcp.tcp_state(sock)
            self.at_disconnect["outq"] = tcp.siocoutq(sock)
        self.calls["disconnect_complete"] += 1
        self._event("disconnect")
        if not self.disconnected.done():
            self.disconnected.set_result(exc)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.calls["connection_lost"] += 1
        self._event("lost")
        if not self.lost.done():
            self.lost.set_result(exc)

    async def until(self, predicate: Callable[[], bool], what: str) -> None:
        """Wait (bounded) until ``predicate()`` holds; it is checked at every callback."""
        try:
            async with asyncio.timeout(WAIT):
                while not predicate():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"no {what} in {WAIT} s: events {self.events}") from None

    async def received(self, size: int) -> bytes:
        """Wait (bounded) until ``size`` bytes came; all the data so far."""
        await self.until(lambda: len(self.data) >= size, f"{size} bytes")
        return bytes(self.data)


async def bounded(future: asyncio.Future[Any]) -> Any:
    """``await future`` within WAIT seconds (shielded: a timeout leaves the future alone)."""
    async with asyncio.timeout(WAIT):
        return await asyncio.shield(future)


class Plain:
    """The test's plain Linux sockets (listeners and accepted peers), closed after it."""

    def __init__(self) -> None:
        self.socks: list[socket.socket] = []

    def listener(self, host: str = "127.0.0.1", rcvbuf: int | None = None) -> socket.socket:
        """A listening socket on ``host`` (port 0); ``rcvbuf``: its peers' receive buffer."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = self.keep(socket.socket(family, socket.SOCK_STREAM))
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind((host, 0))
        sock.listen(8)
        sock.settimeout(WAIT)
        return sock

    def keep(self, sock: socket.socket) -> socket.socket:
        self.socks.append(sock)
        return sock

    def accept(self, lsock: socket.socket) -> socket.socket:
        peer = self.keep(lsock.accept()[0])
        peer.settimeout(WAIT)
        return peer


def plain_fixture() -> Any:
    """A test module declares ``plain = plain_fixture()`` to use the ``plain`` fixture."""
    return pytest.fixture(name="plain")(_plain)


def _plain() -> Iterator[Plain]:
    plain = Plain()
    yield plain
    for sock in plain.socks:
        sock.close()


async def pair(
    plain: Plain,
    factory: Callable[[], asyncio.BaseProtocol] = Recorder,
    *,
    lsock: socket.socket | None = None,
    host: str = "127.0.0.1",
    rcvbuf: int | None = None,
    options: Sequence[SocketOption] = (),
) -> tuple[WskTransport, Any, socket.socket]:
    """``create_connection`` to a plain peer: (transport, protocol, peer socket).  The
    listening socket is ``lsock`` or a fresh one on ``host``; with ``rcvbuf`` the peer's
    receive buffer is that small, and our send buffer too."""
    if lsock is None:
        lsock = plain.listener(host, rcvbuf)
    if rcvbuf is not None:
        options = (*options, *SMALL_SNDBUF)
    address = lsock.getsockname()
    transport, protocol = await pywsk.aio.create_connection(
        factory, address[0], address[1], options=options
    )
    return transport, protocol, plain.accept(lsock)


def kernel(transport: WskTransport) -> socket.socket:
    """The Linux socket behind a transport (for checks of kernel state)."""
    sock: socket.socket = transport.get_extra_info("socket")
    return sock


def local_port(transport: WskTransport) -> int:
    port: int = transport.get_extra_info("sockname")[1]
    return port


def wait_for_fin(sock: socket.socket) -> None:
    """Block (bounded) until the peer's FIN is in ``sock``'s kernel state (POLLRDHUP)."""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLRDHUP)
    assert poller.poll(WAIT * 1000), "the peer's FIN did not come"


def wait_for_data(sock: socket.socket) -> None:
    """Block (bounded) until ``sock`` has data to read."""
    assert select.select([sock], [], [], WAIT)[0], "no data came"


def wire_fixture() -> Any:
    """A test module declares ``wire = wire_fixture()``: ``wire(port)`` starts a capture of
    that port where captures can run (root and tcpdump), else gives None."""
    return pytest.fixture(name="wire")(_wire)


def _wire(capture_port: Callable[[int], WireCapture]) -> Wire:
    def start(port: int) -> WireCapture | None:
        return capture_port(port) if WireCapture.available() else None

    return start


def our_fin_and_its_ack(cap: WireCapture, ours: int, theirs: int) -> tuple[Segment, Segment]:
    """Our (only) FIN and the peer's first segment acknowledging it, both on the wire."""
    cap.sync()
    fins = cap.fins(from_port=ours)
    assert len(fins) == 1, cap.describe()
    fin = fins[0]
    fin_end = (fin.seq + fin.length + 1) & 0xFFFFFFFF
    acks = cap.matching(
        lambda s: s.ack_flag and ((s.ack - fin_end) & 0xFFFFFFFF) < 1 << 31, from_port=theirs
    )
    assert acks, f"no ACK of our FIN: {cap.describe()}"
    return fin, acks[0]


def no_rst(cap: WireCapture | None) -> None:
    """No RST on the wire (nothing to check without a capture)."""
    if cap is not None:
        cap.sync()
        assert cap.rsts() == [], cap.describe()
