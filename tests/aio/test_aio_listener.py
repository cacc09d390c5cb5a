"""pywsk.aio listeners and servers: WSK listening sockets (WskBind = bind + listen, WskAccept)
with pywsk connections on both ends, and cancelled accepts that lose no connection."""

from __future__ import annotations

import asyncio
import random
import socket
import subprocess
import sys
import threading

import pytest
from aio_helpers import WAIT, Run, loop_fixture

import pywsk.aio
from pywsk import errors
from pywsk._native import open_sockets
from pywsk.core.ending import Ending

run = loop_fixture()


def test_accept_connects_two_pywsk_ends(run: Run) -> None:
    async def main() -> None:
        async with await pywsk.aio.listen("127.0.0.1", 0) as listener:
            port = listener.local_address[1]
            assert port != 0
            accepting = asyncio.create_task(listener.accept())
            client = await pywsk.aio.connect("127.0.0.1", port)
            server = await accepting
            async with client, server:
                assert server.remote_address == client.local_address
                assert server.local_address == client.remote_address
                await client.send_all(b"ping")
                assert await server.receive_some() == b"ping"
                # The graceful path, both sides pywsk: FIN each way, no RST.
                await client.disconnect()
                assert await server.receive_some() == b""
                await server.send_all(b"pong")
                await server.disconnect()
                assert await client.receive_some() == b"pong"
                assert await client.receive_some() == b""
            assert client.disconnected_by is Ending.PEER_FIN
            assert server.disconnected_by is Ending.PEER_FIN

    run(main())


def test_serve_runs_a_handler_per_connection(run: Run) -> None:
    async def echo(conn: pywsk.aio.Connection) -> None:
        data = b""
        while chunk := await conn.receive_some():
            data += chunk
        await conn.disconnect(b"echo:" + data)

    async def client(port: int, text: bytes) -> bytes:
        async with await pywsk.aio.connect("127.0.0.1", port) as conn:
            await conn.send_all(text)
            await conn.disconnect()
            reply = b""
            while chunk := await conn.receive_some():
                reply += chunk
            return reply

    async def main() -> None:
        async with await pywsk.aio.serve(echo, "127.0.0.1", 0) as server:
            port = server.local_address[1]
            replies = await asyncio.gather(*(client(port, b"n%d" % i) for i in range(5)))
            assert replies == [b"echo:n%d" % i for i in range(5)]
        assert server.listener.closed

    run(main())


def test_closing_the_listener_ends_pending_accepts(run: Run) -> None:
    async def main() -> None:
        listener = await pywsk.aio.listen("127.0.0.1", 0)
        accepting = asyncio.create_task(listener.accept())
        await asyncio.sleep(0)  # the WskAccept is pending
        await listener.aclose()
        with pytest.raises(errors.SocketClosedError):
            await accepting
        with pytest.raises(errors.SocketClosedError):
            await listener.accept()
        await listener.aclose()  # idempotent

    run(main())


def test_cancelled_accept_has_no_effect(run: Run) -> None:
    async def main() -> None:
        async with await pywsk.aio.listen("127.0.0.1", 0) as listener:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.05):
                    await listener.accept()  # nobody connects: the cancel wins
            with socket.create_connection(listener.local_address[:2], timeout=WAIT) as plain:
                async with await listener.accept() as conn:
                    assert conn.remote_address == plain.getsockname()
                    await conn.abort()

    run(main())


def test_accept_timeouts_racing_connections_lose_none(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = 150

    def dial(port: int, out: list[socket.socket]) -> None:
        pace = random.Random(7)
        for _ in range(count):
            out.append(socket.create_connection(("127.0.0.1", port), timeout=WAIT))
            threading.Event().wait(pace.random() / 250)  # pacing, not synchronisation

    async def main() -> dict[str, int]:
        dialled: list[socket.socket] = []
        accepted: list[pywsk.aio.Connection] = []
        chooser = random.Random(8)
        async with await pywsk.aio.listen("127.0.0.1", 0) as listener:
            outcomes = {"cancelled": 0}
            dialler = threading.Thread(target=dial, args=(listener.local_address[1], dialled))
            dialler.start()
            try:
                while len(accepted) < count:
                    try:
                        accepted.append(
                            await asyncio.wait_for(
                                listener.accept(), chooser.choice([0, 0.0005, 0.001, 0.002, 0.004])
                            )
                        )
                    except TimeoutError:
                        outcomes["cancelled"] += 1
            finally:
                dialler.join(WAIT)
            ports = sorted(conn.remote_address[1] for conn in accepted)
            assert ports == sorted(sock.getsockname()[1] for sock in dialled)
            for conn in accepted:
                await conn.aclose()
        for sock in dialled:
            sock.close()
        return outcomes

    outcomes = run(main(), timeout=55)
    assert outcomes["cancelled"] > 0  # cancels did meet pending accepts


def test_every_socket_is_counted_until_closed(run: Run) -> None:
    async def main() -> None:
        before = open_sockets()
        async with await pywsk.aio.listen("127.0.0.1", 0) as listener:
            accepting = asyncio.create_task(listener.accept())
            async with await pywsk.aio.connect("127.0.0.1", listener.local_address[1]) as conn:
                server = await accepting
                assert open_sockets() == before + 3
                await server.aclose()
                await conn.abort()
        assert open_sockets() == before

    run(main())


def test_closing_a_server_resets_and_closes_every_connection(run: Run) -> None:
    async def main() -> None:
        before = open_sockets()
        started = asyncio.Event()

        async def stall(conn: pywsk.aio.Connection) -> None:
            started.set()
            await asyncio.Event().wait()  # until the server cancels it

        server = await pywsk.aio.serve(stall, "127.0.0.1", 0)
        port = server.local_address[1]
        clients = [await pywsk.aio.connect("127.0.0.1", port) for _ in range(3)]
        await started.wait()
        await server.aclose()
        for client in clients:
            async with client:
                # Accepted or still in the backlog, each connection was reset.
                with pytest.raises(ConnectionResetError):
                    await client.receive_some()
        assert open_sockets() == before

    run(main())


SHORTAGE_PROGRAM = """
import asyncio, json, resource, socket
import pywsk.aio
from pywsk.nt.status import NTSTATUS

async def main():
    loop = asyncio.get_running_loop()
    reported, served = asyncio.Event(), asyncio.Event()
    statuses = []

    def on_error(_loop, context):
        statuses.append(getattr(context.get("exception"), "status", None))
        reported.set()

    loop.set_exception_handler(on_error)

    async def handler(conn):
        served.set()
        await conn.abort()

    class Served(asyncio.Protocol):
        def connection_made(self, transport):
            served.set()
            transport.abort()

    SERVER
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    fillers = []
    try:
        while True:
            fillers.append(socket.socket())
    except OSError:
        pass
    fillers.pop().close()  # one descriptor for the client; none for the server's accept
    client = socket.socket()
    client.setblocking(False)
    client.connect_ex(("127.0.0.1", server.local_address[1]))
    await asyncio.wait_for(reported.wait(), 10)  # accept4: EMFILE, reported
    for filler in fillers:
        filler.close()
    await asyncio.wait_for(served.wait(), 10)  # accepted after the shortage passed
    client.close()
    CLOSE
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return statuses[0] == NTSTATUS.STATUS_TOO_MANY_OPENED_FILES

print(json.dumps(asyncio.run(main())))
"""


SERVERS = {
    "serve": (
        'server = await pywsk.aio.serve(handler, "127.0.0.1", 0)',
        "await server.aclose()",
    ),
    "create_server": (
        'server = await pywsk.aio.create_server(Served, "127.0.0.1", 0)',
        "server.close(); await server.wait_closed()",
    ),
}


@pytest.mark.parametrize("kind", list(SERVERS))
def test_a_server_accepts_again_after_a_shortage_of_descriptors(kind: str) -> None:
    """EMFILE is reported to the loop's exception handler (STATUS_TOO_MANY_OPENED_FILES) and
    the server accepts again once descriptors are free (in a fresh interpreter: the test
    lowers its descriptor limit) - ``serve`` and the Protocols' ``create_server`` alike."""
    start, close = SERVERS[kind]
    program = SHORTAGE_PROGRAM.replace("SERVER", start).replace("CLOSE", close)
    done = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "true"
