"""pywsk.trio beyond trio's generic checks: FIN versus RST, send_eof completing only once our
FIN is acknowledged, what aclose puts on the wire, cancel-versus-completion races, and
trio.serve_listeners over a WSK listener."""

from __future__ import annotations

import errno
import json
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio.testing  # type: ignore[import-untyped, unused-ignore]
from trio_helpers import SMALL_BUFFERS, clog, kernel, stream_pair

import pywsk.trio
from pywsk import errors
from pywsk.testing import tcp
from pywsk.trio import DisconnectReason

Listener = Callable[..., socket.socket]
WAIT = 10.0


def run(main: Callable[[], Awaitable[Any]], timeout: float = 30.0) -> Any:
    async def bounded() -> Any:
        with trio.fail_after(timeout):
            return await main()

    return trio.run(bounded)


async def send_until_broken(stream: pywsk.trio.WskStream) -> None:
    for _ in range(100):
        await stream.send_all(b"x" * 1000)


def test_fin_is_end_of_stream_and_half_close_goes_on() -> None:
    async def main() -> None:
        client, server = await stream_pair()
        async with client, server:
            await client.send_all(b"request")
            await client.send_eof()
            assert tcp.tcp_state(kernel(client)) == tcp.FIN_WAIT2  # our FIN acknowledged
            assert await server.receive_some() == b"request"
            assert await server.receive_some() == b""
            assert server.disconnected_by is DisconnectReason.PEER_GRACEFUL
            await server.send_all(b"response")
            await server.send_eof()
            assert await client.receive_some() == b"response"
            assert await client.receive_some() == b""
        # Both directions were closed: neither close reset anything.
        assert client.disconnected_by is DisconnectReason.PEER_GRACEFUL
        assert server.disconnected_by is DisconnectReason.PEER_GRACEFUL

    run(main)


def test_rst_is_broken_resource_caused_by_connection_reset() -> None:
    async def main() -> None:
        client, server = await stream_pair()
        async with client, server:
            await client.send_all(b"partial")
            assert await server.receive_some() == b"partial"
            await client.abort()
            with pytest.raises(trio.BrokenResourceError) as caught:
                await server.receive_some()
            cause = caught.value.__cause__
            assert isinstance(cause, errors.WskConnectionResetError)
            assert isinstance(cause, ConnectionResetError)
            assert server.disconnected_by is DisconnectReason.PEER_RESET
            assert client.disconnected_by is DisconnectReason.LOCAL_ABORT
            # A send on the reset stream reports it too, now or at the next send-side call.
            with pytest.raises(trio.BrokenResourceError):
                await send_until_broken(server)
            with pytest.raises(trio.BrokenResourceError):
                await server.send_all(b"again")  # it stays broken

    run(main)


def test_local_abort_ends_a_pending_receive() -> None:
    async def main() -> None:
        client, server = await stream_pair()
        async with client, server:
            failure: list[BaseException] = []

            async def receive() -> None:
                try:
                    await client.receive_some()
                except trio.BrokenResourceError as exc:
                    failure.append(exc)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(receive)
                await trio.testing.wait_all_tasks_blocked()
                await client.abort()
            assert isinstance(failure[0].__cause__, errors.WskConnectionAbortedError)
            assert client.disconnected_by is DisconnectReason.LOCAL_ABORT
            with pytest.raises(trio.BrokenResourceError):
                await server.receive_some()

    run(main)


def test_send_eof_waits_for_the_acknowledgement() -> None:
    async def main() -> None:
        client, server = await stream_pair(SMALL_BUFFERS)
        async with client, server:
            await clog(client)
            with trio.move_on_after(0.3) as scope:
                await client.send_eof()  # behind data the peer does not read
            assert scope.cancelled_caught
            assert tcp.tcp_state(kernel(client)) == tcp.ESTABLISHED  # no FIN yet
            received = []

            async def read_to_end() -> None:
                while chunk := await server.receive_some():
                    received.append(len(chunk))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_to_end)
                await client.send_eof()  # returns once the FIN after the data is acknowledged
                assert tcp.tcp_state(kernel(client)) == tcp.FIN_WAIT2
            assert sum(received) > 0
            with pytest.raises(trio.ClosedResourceError):
                await client.send_all(b"x")

    run(main)


def test_graceful_aclose_fins_then_resets_if_the_peer_is_still_open(
    listener: Listener,
) -> None:
    async def main() -> None:
        lsock = listener()
        stream = await pywsk.trio.open_connection("127.0.0.1", lsock.getsockname()[1])
        peer, _ = lsock.accept()
        try:
            peer.settimeout(WAIT)
            await stream.send_all(b"all of it")
            await stream.aclose()
            # Every byte and our FIN were acknowledged before the close's RST: nothing is lost.
            assert peer.recv(100) == b"all of it"
            assert peer.recv(100) == b""
            assert tcp.tcp_state(peer) == tcp.CLOSE  # the RST came after the FIN
            assert tcp.so_error(peer) == errno.EPIPE
        finally:
            peer.close()

    run(main)


def test_receive_cancels_racing_data_lose_and_duplicate_nothing(listener: Listener) -> None:
    pace = random.Random(12)
    pieces = [bytes(pace.getrandbits(8) for _ in range(pace.randint(1, 100))) for _ in range(800)]
    expected = b"".join(pieces)

    def feed(peer: socket.socket) -> None:
        for piece in pieces:
            peer.sendall(piece)
            time.sleep(pace.random() / 500)  # pacing, so that data arrives mid-receive
        peer.shutdown(socket.SHUT_WR)

    async def main() -> int:
        lsock = listener()
        stream = await pywsk.trio.open_connection("127.0.0.1", lsock.getsockname()[1])
        peer, _ = lsock.accept()
        chooser = random.Random(13)
        received = bytearray()
        cancels = 0
        feeder = threading.Thread(target=feed, args=(peer,))
        feeder.start()
        try:
            async with stream:
                while True:
                    got: list[bytes] = []
                    with trio.move_on_after(chooser.choice([0, 0.0002, 0.0005, 0.002])) as scope:
                        got.append(await stream.receive_some(chooser.randint(1, 4096)))
                    if scope.cancelled_caught:
                        cancels += 1
                    if not got:
                        continue
                    if not got[0]:
                        break
                    received += got[0]
        finally:
            await trio.to_thread.run_sync(feeder.join, WAIT)
            peer.close()
        assert bytes(received) == expected
        return cancels

    assert run(main, timeout=55) > 0


def test_serve_listeners_over_a_wsk_listener() -> None:
    async def echo(stream: pywsk.trio.WskStream) -> None:
        async with stream:
            data = b""
            while chunk := await stream.receive_some():
                data += chunk
            await stream.send_all(b"echo:" + data)
            await stream.send_eof()

    async def main() -> None:
        listener = await pywsk.trio.open_listener("127.0.0.1", 0)
        port = listener.local_address[1]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, echo, [listener])
            replies = []
            for i in range(3):
                async with await pywsk.trio.open_connection("127.0.0.1", port) as stream:
                    await stream.send_all(b"n%d" % i)
                    await stream.send_eof()
                    reply = b""
                    while chunk := await stream.receive_some():
                        reply += chunk
                    replies.append(reply)
            assert replies == [b"echo:n%d" % i for i in range(3)]
            nursery.cancel_scope.cancel()
        with pytest.raises(trio.ClosedResourceError):
            await listener.accept()

    run(main)


def test_cancelled_connect_closes_its_socket() -> None:
    async def main() -> None:
        from pywsk._native import open_sockets

        with socket.socket() as full:
            full.bind(("127.0.0.1", 0))
            full.listen(0)
            fillers = [socket.socket() for _ in range(3)]
            for filler in fillers:
                filler.setblocking(False)
                filler.connect_ex(full.getsockname())
            try:
                before = open_sockets()
                with trio.move_on_after(0.5) as scope:
                    await pywsk.trio.open_connection("127.0.0.1", full.getsockname()[1])
                assert scope.cancelled_caught
                assert open_sockets() == before
            finally:
                for filler in fillers:
                    filler.close()

    run(main)


TRIO_PROGRAM = """
import json, sys, threading
import trio
import pywsk.trio

async def echo(stream):
    async with stream:
        data = b""
        while chunk := await stream.receive_some():
            data += chunk
        await stream.send_all(data)
        await stream.send_eof()

async def clients(port):
    for _ in range(20):
        async with await pywsk.trio.open_connection("127.0.0.1", port) as stream:
            await stream.send_all(b"hello")
            await stream.send_eof()  # our FIN, acknowledged
            got = b""
            while chunk := await stream.receive_some():
                got += chunk
            assert got == b"hello", got

async def main():
    listener = await pywsk.trio.open_listener("127.0.0.1", 0)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, echo, [listener])
            await clients(listener.local_address[1])
            nursery.cancel_scope.cancel()
    return [t.name for t in threading.enumerate()]

threads = trio.run(main)
print(json.dumps({"threads": threads, "provider_loaded": "pywsk.provider" in sys.modules,
                  "bridge_loaded": "pywsk._bridge" in sys.modules}))
"""


def test_no_provider_thread_and_no_provider() -> None:
    """pywsk.trio runs natively on trio's loop: in a fresh interpreter, a program that
    listens, serves, connects and disconnects starts no thread and loads no provider."""
    done = subprocess.run(
        [sys.executable, "-c", TRIO_PROGRAM],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"threads": ["MainThread"], "provider_loaded": False, "bridge_loaded": False}
