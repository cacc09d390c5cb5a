"""pywsk.aio's WskTransport: flow control both ways, eof_received's answer, and misuse.

pause_writing / resume_writing at the write-buffer limits while a plain peer does not read
and then reads; pause_reading / resume_reading (nothing delivered while paused, the data
and a FIN that came meanwhile after); set_protocol from data_received (the rest of that
read goes to the new protocol); eof_received returning True (half-open: we still write) or
a false value (the transport closes itself, gracefully); bad input, and memoryviews of
items wider than a byte; a protocol callback that raises, from an edge or from write().
Each test runs on asyncio and on uvloop.
"""

from __future__ import annotations

import array
import asyncio
import logging
import socket
from typing import Any

import pytest
from aio_helpers import WAIT, Run, in_thread, loop_fixture
from transport_helpers import (
    Plain,
    Recorder,
    Wire,
    bounded,
    kernel,
    no_rst,
    pair,
    plain_fixture,
    wait_for_data,
    wait_for_fin,
    wire_fixture,
)

from pywsk import errors
from pywsk.core.ending import Ending
from pywsk.testing import tcp
from pywsk.testing.contract import peer_reads_to_end
from pywsk.wsk import SO_RCVBUF, SOL_SOCKET

run = loop_fixture()
wire = wire_fixture()
plain = plain_fixture()


def read_exactly(peer: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = peer.recv(min(size - len(data), 1 << 16))
        assert chunk, f"the stream ended after {len(data)} of {size} bytes"
        data += chunk
    return bytes(data)


def test_pause_and_resume_writing_at_the_limits(run: Run, plain: Plain) -> None:
    async def main() -> None:
        transport, proto, peer = await pair(plain, rcvbuf=4096)
        assert transport.get_write_buffer_limits() == (16 * 1024, 64 * 1024)  # asyncio's
        transport.set_write_buffer_limits(high=8192)
        assert transport.get_write_buffer_limits() == (2048, 8192)
        chunk = bytes(range(256)) * 16  # 4 KiB
        sent = bytearray()
        while not proto.paused.is_set():  # the peer does not read: the buffer grows
            assert len(sent) < 8 << 20, "no pause_writing"
            transport.write(chunk)
            sent += chunk
        assert transport.get_write_buffer_size() > 8192
        assert proto.events == ["made", "pause"]
        transport.write(chunk)  # writing on while paused is allowed (and buffered)
        sent += chunk
        reading = asyncio.ensure_future(in_thread(read_exactly, peer, len(sent)))
        async with asyncio.timeout(WAIT):
            await proto.resumed.wait()
        assert proto.buffered_at_resume <= 2048  # at the low-water mark
        assert await bounded(reading) == sent
        assert transport.get_write_buffer_size() == 0
        assert proto.events == ["made", "pause", "resume"]

        # Limits set below what is buffered pause at once.
        transport.set_write_buffer_limits(high=4 << 20)
        transport.write(bytes(1 << 20))
        assert 0 < transport.get_write_buffer_size() <= 4 << 20
        assert proto.events[-1] == "resume"
        transport.set_write_buffer_limits(high=0)
        assert transport.get_write_buffer_limits() == (0, 0)
        assert proto.events[-1] == "pause"
        transport.abort()
        assert await bounded(proto.lost) is None

    run(main())


def test_write_buffer_limits_are_checked(run: Run, plain: Plain) -> None:
    async def main() -> None:
        transport, proto, _peer = await pair(plain)
        transport.set_write_buffer_limits(low=100)
        assert transport.get_write_buffer_limits() == (100, 400)
        transport.set_write_buffer_limits(high=1000, low=1000)
        assert transport.get_write_buffer_limits() == (1000, 1000)
        for high, low in [(1, 2), (None, -1), (-1, None), (-4, -1)]:
            with pytest.raises(ValueError, match="must be"):
                transport.set_write_buffer_limits(high=high, low=low)
        assert transport.get_write_buffer_limits() == (1000, 1000)  # unchanged
        transport.set_write_buffer_limits()
        assert transport.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
        assert transport.get_write_buffer_size() == 0
        transport.abort()
        assert await bounded(proto.lost) is None

    run(main())


def test_pause_reading_holds_data_and_fin_until_resumed(run: Run, plain: Plain) -> None:
    async def main() -> None:
        transport, proto, peer = await pair(plain)
        assert transport.is_reading()
        peer.sendall(b"one")
        await proto.received(3)
        transport.pause_reading()
        transport.pause_reading()  # idempotent
        assert not transport.is_reading()
        peer.sendall(b"two")
        peer.shutdown(socket.SHUT_WR)
        await in_thread(wait_for_fin, kernel(transport))  # both are in our kernel now
        done, _ = await asyncio.wait({proto.eof}, timeout=0.3)  # a bounded check
        assert not done
        assert bytes(proto.data) == b"one"
        assert proto.events == ["made", "data"]
        transport.resume_reading()
        transport.resume_reading()  # idempotent
        assert transport.is_reading()
        await bounded(proto.eof)
        assert bytes(proto.data) == b"onetwo"
        # eof_received returned None: the transport closes itself, gracefully.
        assert await bounded(proto.lost) is None
        assert proto.events == ["made", "data", "eof", "disconnect", "lost"]
        assert proto.disconnected.result() is None
        assert transport.disconnected_by is Ending.PEER_FIN
        assert await in_thread(peer_reads_to_end, peer) == (b"", "fin")
        transport.resume_reading()  # after the end: nothing happens
        assert not transport.is_reading()

    run(main())


class Switching(Recorder):
    """At its first data_received, hands the transport to ``successor``."""

    def __init__(self, successor: Recorder) -> None:
        super().__init__()
        self.successor = successor

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        assert self.transport is not None
        if self.successor.transport is None:
            self.successor.transport = self.transport
            self.transport.set_protocol(self.successor)


def test_set_protocol_takes_effect_at_the_next_callback(run: Run, plain: Plain) -> None:
    async def main() -> None:
        successor = Recorder()
        big_window = ((SOL_SOCKET, SO_RCVBUF, 400_000),)
        transport, proto, peer = await pair(plain, lambda: Switching(successor), options=big_window)
        transport.pause_reading()
        payload = bytes(range(256)) * 400  # 102 400 bytes: more than one read's worth

        def send_all_then_fin() -> None:
            peer.sendall(payload)
            peer.shutdown(socket.SHUT_WR)

        await in_thread(send_all_then_fin)
        await in_thread(wait_for_fin, kernel(transport))  # all of it is in our kernel
        transport.resume_reading()
        assert await bounded(successor.lost) is None  # eof_received's None: closed
        assert transport.get_protocol() == successor
        assert len(proto.data) < len(payload)  # the first read's worth, then the switch
        assert bytes(proto.data + successor.data) == payload
        assert proto.events == ["made", "data"]
        assert successor.events == ["data", "eof", "disconnect", "lost"]

    run(main())


def test_eof_received_true_keeps_the_transport_open_for_writing(
    run: Run, plain: Plain, wire: Wire
) -> None:
    async def main() -> None:
        lsock = plain.listener()
        cap = wire(lsock.getsockname()[1])
        transport, proto, peer = await pair(plain, lambda: Recorder(keep_open=True), lsock=lsock)
        peer.sendall(b"question")
        peer.shutdown(socket.SHUT_WR)
        await bounded(proto.eof)
        assert bytes(proto.data) == b"question"
        assert not transport.is_closing()
        assert not transport.is_reading()
        assert transport.disconnected_by is Ending.PEER_FIN
        transport.pause_reading()
        transport.resume_reading()  # after the EOF: nothing more to read, no second EOF
        # Half-open: we still write, the peer still receives.
        transport.write(b"answer")
        transport.write_eof()
        assert await bounded(proto.disconnected) is None
        assert await in_thread(peer_reads_to_end, peer) == (b"answer", "fin")
        assert not proto.lost.done()  # both directions ended, but nobody closed it
        transport.close()
        assert await bounded(proto.lost) is None
        assert proto.events == ["made", "data", "eof", "disconnect", "lost"]
        assert transport.disconnected_by is Ending.PEER_FIN
        no_rst(cap)

    run(main())


@pytest.mark.parametrize("answer", [None, False])
def test_eof_received_false_closes_gracefully(
    run: Run, plain: Plain, wire: Wire, answer: bool | None
) -> None:
    async def main() -> None:
        lsock = plain.listener()
        cap = wire(lsock.getsockname()[1])
        transport, proto, peer = await pair(plain, lambda: Recorder(answer), lsock=lsock)
        transport.write(b"first")
        peer.sendall(b"bye")
        peer.shutdown(socket.SHUT_WR)
        assert await bounded(proto.lost) is None
        assert bytes(proto.data) == b"bye"
        assert proto.events == ["made", "data", "eof", "disconnect", "lost"]
        assert proto.disconnected.result() is None
        assert transport.disconnected_by is Ending.PEER_FIN
        assert await in_thread(peer_reads_to_end, peer) == (b"first", "fin")
        no_rst(cap)

    run(main())


def test_bad_writes_are_refused(run: Run, plain: Plain) -> None:
    async def main() -> None:
        transport, proto, peer = await pair(plain)
        bad: list[Any] = [123, "text", None, [1, 2]]
        for data in bad:
            with pytest.raises(TypeError, match="bytes-like"):
                transport.write(data)
        transport.write(b"")  # nothing to send: nothing happens
        transport.write(b"ok")
        transport.write_eof()
        with pytest.raises(RuntimeError, match="after write_eof"):
            transport.write(b"late")
        assert await bounded(proto.disconnected) is None
        assert await in_thread(peer_reads_to_end, peer) == (b"ok", "fin")
        transport.close()
        with pytest.raises(RuntimeError):
            transport.write(b"later")
        assert await bounded(proto.lost) is None

    run(main())


def test_a_view_of_wider_items_is_sent_whole(run: Run, plain: Plain) -> None:
    """A memoryview's len() counts items, not bytes: every byte still goes, in order."""

    async def main() -> None:
        transport, proto, peer = await pair(plain, rcvbuf=4096)
        items = array.array("i", range(200_000))
        transport.write(memoryview(items))  # the kernel takes a part; the rest is buffered
        assert 0 < transport.get_write_buffer_size() < items.itemsize * len(items)
        transport.write(memoryview(items)[:3])
        with pytest.raises(TypeError):
            transport.write(memoryview(items)[::2])  # not contiguous: no bytes-like view
        transport.write_eof()
        expected = items.tobytes() + items[:3].tobytes()
        data, end = await in_thread(peer_reads_to_end, peer)
        assert (len(data), end) == (len(expected), "fin")
        assert data == expected
        assert await bounded(proto.disconnected) is None
        transport.abort()

    run(main())


def test_write_after_the_loss_sends_nothing_and_warns_once(
    run: Run, plain: Plain, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        transport, proto, peer = await pair(plain)
        transport.abort()
        assert await bounded(proto.lost) is None
        with caplog.at_level(logging.WARNING, logger="pywsk.aio"):
            transport.write(b"lost 1")
            transport.write(b"lost 2")
        warnings = [r for r in caplog.records if "after the connection was lost" in r.message]
        assert len(warnings) == 1
        assert warnings[0].levelno == logging.WARNING
        assert await in_thread(peer_reads_to_end, peer) == (b"", "rst")  # nothing sent

    run(main())


class Failing(Recorder):
    """A protocol whose ``callback`` raises."""

    def __init__(self, callback: str) -> None:
        super().__init__()
        self.callback = callback

    def _fail(self, name: str) -> None:
        if name == self.callback:
            raise ValueError(f"{name} failed")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._fail("connection_made")

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._fail("data_received")
        self._fail("resumed data_received")

    def eof_received(self) -> bool | None:
        answer = super().eof_received()
        self._fail("eof_received")
        return answer

    def pause_writing(self) -> None:
        super().pause_writing()
        self._fail("pause_writing")

    def resume_writing(self) -> None:
        super().resume_writing()
        self._fail("resume_writing")


@pytest.mark.parametrize(
    "callback",
    [
        "connection_made",
        "data_received",
        "eof_received",
        "resumed data_received",
        "pause_writing",
        "resume_writing",
    ],
)
def test_a_failing_callback_goes_to_the_handler_and_resets(
    run: Run, plain: Plain, wire: Wire, callback: str
) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        contexts: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, context: contexts.append(context))
        writing = callback.endswith("_writing")
        lsock = plain.listener("127.0.0.1", 4096 if writing else None)
        cap = wire(lsock.getsockname()[1])
        transport, proto, peer = await pair(
            plain, lambda: Failing(callback), lsock=lsock, rcvbuf=4096 if writing else None
        )
        reading = None
        if writing:
            transport.write(bytes(1 << 20))  # from a task, not a callback: pause_writing
            if callback == "resume_writing":
                reading = asyncio.ensure_future(in_thread(peer_reads_to_end, peer))
        elif callback == "data_received":
            peer.sendall(b"trigger")
        elif callback == "eof_received":
            peer.shutdown(socket.SHUT_WR)
        elif callback == "resumed data_received":
            transport.pause_reading()
            peer.sendall(b"trigger")
            await in_thread(wait_for_data, kernel(transport))
            transport.resume_reading()
        lost = await bounded(proto.lost)
        assert isinstance(lost, ValueError)
        assert str(lost) == f"{callback} failed"
        assert [c["exception"] for c in contexts] == [lost]
        assert contexts[0]["transport"] is transport
        assert contexts[0]["protocol"] is proto
        assert proto.calls == {"disconnect_complete": 0, "connection_lost": 1}
        assert proto.events[-1] == "lost"
        # Our RST ends it, unless the peer's FIN came first (the first end stays).
        first = Ending.PEER_FIN if callback == "eof_received" else Ending.OUR_RST
        assert transport.disconnected_by is first
        data, end = await bounded(
            reading or asyncio.ensure_future(in_thread(peer_reads_to_end, peer))
        )
        assert end == "rst"
        assert data == (bytes(len(data)) if writing else b"")
        if cap is not None:
            await in_thread(cap.wait_rst, transport.get_extra_info("sockname")[1])

    run(main())


def test_calls_after_a_peer_reset_do_nothing(run: Run, plain: Plain) -> None:
    async def main() -> None:
        transport, proto, peer = await pair(plain)
        tcp.set_linger_abort(peer)
        peer.close()  # SO_LINGER {1, 0}: an RST
        lost = await bounded(proto.lost)
        assert isinstance(lost, errors.WskConnectionResetError)
        transport.write_eof()  # after the loss: nothing to do
        transport.close()
        transport.abort()
        assert proto.calls == {"disconnect_complete": 0, "connection_lost": 1}

    run(main())


class Buffered(asyncio.BufferedProtocol):
    """A BufferedProtocol with a small buffer of its own: what it was given, in order."""

    def __init__(self) -> None:
        self.buffer = bytearray(7)  # smaller than the data: several reads
        self.data = bytearray()
        self.sizes: list[int] = []
        self.eof = asyncio.get_running_loop().create_future()
        self.lost = asyncio.get_running_loop().create_future()

    def get_buffer(self, sizehint: int) -> bytearray:
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.sizes.append(nbytes)
        self.data += self.buffer[:nbytes]

    def eof_received(self) -> bool:
        self.eof.set_result(None)
        return False  # the transport closes itself: our FIN, its ACK, no RST

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set_result(exc)


def test_a_buffered_protocol_gets_the_bytes_in_its_own_buffer(
    run: Run, plain: Plain, wire: Wire
) -> None:
    async def main() -> None:
        lsock = plain.listener()
        cap = wire(lsock.getsockname()[1])
        transport, proto, peer = await pair(plain, Buffered, lsock=lsock)
        assert isinstance(proto, Buffered)
        message = b"buffered protocols read into their own buffer"
        peer.sendall(message)
        peer.shutdown(socket.SHUT_WR)
        await bounded(proto.eof)
        assert await bounded(proto.lost) is None
        assert bytes(proto.data) == message
        assert max(proto.sizes) <= len(proto.buffer)
        assert len(proto.sizes) >= len(message) // len(proto.buffer)
        assert transport.disconnected_by is Ending.PEER_FIN
        assert await in_thread(peer_reads_to_end, peer) == (b"", "fin")
        no_rst(cap)

    run(main())


class EmptyBuffer(Buffered):
    def get_buffer(self, sizehint: int) -> bytearray:
        return bytearray()


def test_an_empty_buffer_is_a_protocol_failure(run: Run, plain: Plain) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        failures: list[BaseException] = []
        loop.set_exception_handler(lambda _loop, context: failures.append(context["exception"]))
        transport, proto, peer = await pair(plain, EmptyBuffer)
        assert isinstance(proto, EmptyBuffer)
        peer.sendall(b"x")
        assert isinstance(await bounded(proto.lost), RuntimeError)
        assert [type(f) for f in failures] == [RuntimeError]
        assert transport.disconnected_by is Ending.OUR_RST
        with pytest.raises(ConnectionResetError):
            await in_thread(peer.recv, 10)

    run(main())
