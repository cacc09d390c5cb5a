"""Cancellation in pywsk.aio follows trio's rules for streams: a cancelled receive loses
nothing (bytes leave the kernel only when a receive returns them), a cancelled send either
had no effect or breaks the connection.  Deterministic cases, then loops where timeouts
race the data: no byte may be lost or duplicated."""

from __future__ import annotations

import asyncio
import contextlib
import random
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from aio_helpers import (
    WAIT,
    Run,
    connected,
    count_cancelled_waits,
    in_thread,
    kernel,
    loop_fixture,
    unanswered,
)

import pywsk.aio
from pywsk._native import open_sockets
from pywsk.core.ending import Ending
from pywsk.testing import tcp
from pywsk.testing.contract import peer_reads_to_end

Listener = Callable[..., socket.socket]

run = loop_fixture()


def parked(conn: pywsk.aio.Connection) -> bool:
    """True while a receive of ``conn`` waits for its socket's next edge (tests only)."""
    native: Any = conn._conn
    return native.reader is not None


def wait_until(condition: Callable[[], bool], timeout: float = WAIT) -> None:
    """Block this thread until ``condition()`` (checked every millisecond), at most ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.001)


def test_cancelled_receive_after_data_came_loses_nothing(run: Run, listener: Listener) -> None:
    async def main() -> None:
        conn, peer = await connected(listener)
        async with conn:
            receiving = asyncio.create_task(conn.receive_some())
            await asyncio.sleep(0)  # the task tries, finds nothing, and parks
            assert parked(conn)
            peer.sendall(b"abc")
            # Hold the loop until the data is in our kernel socket, then cancel: the edge
            # is there, the receive has not run.
            wait_until(lambda: bool(select.select([kernel(conn)], [], [], 0)[0]))
            receiving.cancel()
            with pytest.raises(asyncio.CancelledError):
                await receiving
            assert not parked(conn)
            assert conn.bytes_received == 0  # nothing left the kernel
            assert await conn.receive_some(2) == b"ab"  # returned in order
            assert await conn.receive_some() == b"c"
            peer.sendall(b"d")
            assert await conn.receive_some() == b"d"
            await conn.abort()
        peer.close()

    run(main())


def test_cancelled_receive_without_data_has_no_effect(run: Run, listener: Listener) -> None:
    async def main() -> None:
        conn, peer = await connected(listener)
        async with conn:
            receiving = asyncio.create_task(conn.receive_some())
            await asyncio.sleep(0)
            assert parked(conn)
            receiving.cancel()
            with pytest.raises(asyncio.CancelledError):
                await receiving
            assert conn.bytes_received == 0
            peer.sendall(b"later")
            assert await conn.receive_some() == b"later"
            await conn.abort()
        peer.close()

    run(main())


def test_cancelled_send_partly_taken_breaks_the_connection(run: Run, listener: Listener) -> None:
    """trio's rule: a send the transport started taking cannot be recalled, and a peer that
    never reads would hold it for ever, so its cancel resets the connection at once."""

    async def main() -> None:
        conn, peer = await connected(listener, rcvbuf=4096)
        async with conn:
            payload = bytes(range(256)) * 4096
            sending = asyncio.create_task(conn.send_all(payload))
            readable, _, _ = await in_thread(select.select, [peer], [], [], WAIT)
            assert readable  # the transport took part of it: the peer has data
            sending.cancel()
            with pytest.raises(asyncio.CancelledError):
                await sending  # at once, though the peer reads nothing
            assert conn.disconnected_by is Ending.OUR_RST
            data, end = await in_thread(peer_reads_to_end, peer)
            assert end == "rst"
            assert data == payload[: len(data)]  # a prefix, nothing duplicated
            with pytest.raises(ConnectionAbortedError):
                await conn.send_all(b"more")
        peer.close()

    run(main())


def test_cancelled_send_not_started_has_no_effect(run: Run, listener: Listener) -> None:
    async def main() -> None:
        conn, peer = await connected(listener, rcvbuf=4096)
        async with conn:
            first = b"1" * 1_000_000
            second = b"2" * 1000
            third = b"3" * 1000
            sending_first = asyncio.create_task(conn.send_all(first))
            sending_second = asyncio.create_task(conn.send_all(second))
            await asyncio.sleep(0)  # both issued; the second waits behind the first
            sending_second.cancel()
            with pytest.raises(asyncio.CancelledError):
                await sending_second  # the cancel won: nothing of it was sent
            assert conn.bytes_sent < len(first)
            sending_third = asyncio.create_task(conn.send_all(third))
            disconnecting = asyncio.create_task(conn.disconnect())
            data, end = await in_thread(peer_reads_to_end, peer)
            await asyncio.gather(sending_first, sending_third, disconnecting)
            assert (data, end) == (first + third, "fin")
            assert conn.bytes_sent == len(first) + len(third)
            peer.shutdown(socket.SHUT_WR)
            assert await conn.receive_some() == b""
        peer.close()

    run(main())


def test_cancelled_disconnect_goes_on(run: Run, listener: Listener) -> None:
    async def main() -> None:
        conn, peer = await connected(listener, rcvbuf=4096)
        async with conn:
            payload = b"p" * 1_000_000
            sending = asyncio.create_task(conn.send_all(payload))
            await asyncio.sleep(0)  # the send is issued first
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await conn.disconnect()  # stuck behind the send: the wait is cancelled
            reading = asyncio.ensure_future(in_thread(peer_reads_to_end, peer))
            await sending
            await conn.disconnect()  # the same disconnect, now acknowledged
            assert await reading == (payload, "fin")
            assert tcp.tcp_state(kernel(conn)) == tcp.FIN_WAIT2
            peer.shutdown(socket.SHUT_WR)
            assert await conn.receive_some() == b""
        peer.close()

    run(main())


def test_cancelled_connect_leaves_nothing_open(run: Run) -> None:
    async def main() -> None:
        with unanswered() as port:
            before = open_sockets()
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.5):
                    await pywsk.aio.connect("127.0.0.1", port)
            assert open_sockets() == before

    run(main())


# --- timeouts racing completions ------------------------------------------------------------

TIMEOUTS = [0, 0.0002, 0.0005, 0.001, 0.002]


def test_receive_timeouts_racing_data_lose_and_duplicate_nothing(
    run: Run, listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    pace = random.Random(2)
    pieces = [bytes(pace.getrandbits(8) for _ in range(pace.randint(1, 100))) for _ in range(1000)]
    expected = b"".join(pieces)

    def feed(peer: socket.socket) -> None:
        for piece in pieces:
            peer.sendall(piece)
            time.sleep(pace.random() / 500)  # pacing, so that data arrives mid-receive
        peer.shutdown(socket.SHUT_WR)

    async def main() -> dict[str, int]:
        conn, peer = await connected(listener)
        received = bytearray()
        chooser = random.Random(3)
        async with conn:
            outcomes = count_cancelled_waits(monkeypatch)
            feeder = threading.Thread(target=feed, args=(peer,))
            feeder.start()
            try:
                while True:
                    try:
                        chunk = await asyncio.wait_for(
                            conn.receive_some(chooser.randint(1, 4096)),
                            timeout=chooser.choice(TIMEOUTS),
                        )
                    except TimeoutError:
                        continue
                    if not chunk:
                        break
                    received += chunk
            finally:
                feeder.join(WAIT)
            assert bytes(received) == expected
            assert conn.bytes_received == len(expected)
        peer.close()
        return outcomes

    outcomes = run(main(), timeout=55)
    assert outcomes["cancelled"] > 0  # cancels did meet pending receives


def test_send_timeouts_racing_completion_lose_and_duplicate_nothing(
    run: Run, listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    chunks = [i.to_bytes(4, "big") * 2000 for i in range(300)]  # 8000 bytes each, distinct

    def drain(peer: socket.socket, out: bytearray) -> None:
        pace = random.Random(5)
        with contextlib.suppress(ConnectionResetError):  # a send cancelled partly taken
            while data := peer.recv(pace.randint(100, 4000)):
                out += data
                time.sleep(pace.random() / 2000)  # a slow reader: sends stay pending

    async def main() -> dict[str, int]:
        conn, peer = await connected(listener, rcvbuf=4096)
        received = bytearray()
        chooser = random.Random(4)
        async with conn:
            outcomes = count_cancelled_waits(monkeypatch)
            reader = threading.Thread(target=drain, args=(peer, received))
            reader.start()
            sent = bytearray()
            broken = False
            try:
                for chunk in chunks:
                    while not broken:
                        before = conn.bytes_sent
                        try:
                            await asyncio.wait_for(
                                conn.send_all(chunk), timeout=chooser.choice(TIMEOUTS)
                            )
                            sent += chunk
                            break
                        except TimeoutError:
                            if conn.disconnected_by is not None:
                                # Not won at once (partly taken, or being completed): the
                                # connection was reset (trio's rule).
                                broken = True
                                sent += chunk
                            elif conn.bytes_sent == before + len(chunk):
                                sent += chunk
                                break  # it went out after all: do not send it again
                            else:
                                assert conn.bytes_sent == before  # the cancel won: nothing
                    if broken:
                        break
                else:
                    await conn.disconnect()
            finally:
                reader.join(WAIT)
            if broken:
                assert bytes(received) == sent[: len(received)]  # a prefix, no duplicate
            else:
                assert bytes(received) == b"".join(chunks)
                peer.shutdown(socket.SHUT_WR)
                assert await conn.receive_some() == b""
        peer.close()
        return outcomes

    outcomes = run(main(), timeout=55)
    assert outcomes["cancelled"] > 0  # cancels did meet pending sends


def test_cancelled_receive_exactly_keeps_what_it_had(run: Run, listener: Listener) -> None:
    async def main() -> None:
        conn, peer = await connected(listener)
        async with conn:
            peer.sendall(b"abcd")
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await conn.receive_exactly(10)  # 4 of 10 bytes: it waits, cancelled
            peer.sendall(b"efghij")
            assert await conn.receive_exactly(10) == b"abcdefghij"  # nothing lost
        peer.close()

    run(main())
