"""pywsk.aio.anyio: the same anyio code over WSK on anyio's asyncio backend (plain asyncio
and uvloop) and on its trio backend."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from pywsk.core.ending import Ending
from pywsk.testing.tcp import set_linger_abort

anyio = pytest.importorskip("anyio")
from anyio.abc import SocketAttribute  # noqa: E402
from anyio.streams.buffered import BufferedByteReceiveStream  # noqa: E402

from pywsk.aio import anyio as wsk  # noqa: E402

BACKENDS = {
    "asyncio": ("asyncio", {}),
    "uvloop": ("asyncio", {"use_uvloop": True}),
    "trio": ("trio", {}),
}


@pytest.fixture(params=list(BACKENDS))
def run(request: pytest.FixtureRequest) -> Callable[[Callable[[], Awaitable[Any]]], Any]:
    backend, options = BACKENDS[request.param]

    def runner(main: Callable[[], Awaitable[Any]]) -> Any:
        async def bounded() -> Any:
            with anyio.fail_after(30):
                return await main()

        return anyio.run(bounded, backend=backend, backend_options=options)

    return runner


def test_echo_through_serve_then_a_graceful_end(run: Any) -> None:
    async def main() -> None:
        ended: list[Ending | None] = []

        async def echo(stream: wsk.WskByteStream) -> None:
            async with stream:
                try:
                    while True:
                        await stream.send(await stream.receive())
                except anyio.EndOfStream:
                    ended.append(stream.disconnected_by)
                await stream.send_eof()

        listener = await wsk.listen("127.0.0.1", 0)
        port = listener.extra(SocketAttribute.local_port)
        async with anyio.create_task_group() as group:
            group.start_soon(listener.serve, echo)
            async with await wsk.connect("127.0.0.1", port) as client:
                assert client.extra(SocketAttribute.remote_port) == port
                await client.send(b"hello, ")
                await client.send(b"world\n")
                await client.send_eof()  # our FIN, acknowledged
                buffered = BufferedByteReceiveStream(client)
                assert await buffered.receive_until(b"\n", 100) == b"hello, world"
                with pytest.raises(anyio.EndOfStream):
                    await client.receive()
                assert client.disconnected_by is Ending.PEER_FIN
            group.cancel_scope.cancel()
        await listener.aclose()
        assert ended == [Ending.PEER_FIN]

    run(main)


def test_failures_in_anyio_vocabulary(run: Any) -> None:
    async def main() -> None:
        with socket.socket() as server:
            server.bind(("127.0.0.1", 0))
            server.listen()
            stream = await wsk.connect("127.0.0.1", server.getsockname()[1])
            peer, _ = server.accept()
            set_linger_abort(peer)
            peer.close()  # an RST
            with pytest.raises(anyio.BrokenResourceError) as caught:
                await stream.receive()
            cause: BaseException | None = caught.value
            while cause is not None and not isinstance(cause, OSError):
                cause = cause.__cause__
            assert isinstance(cause, ConnectionResetError)
            assert stream.disconnected_by is Ending.PEER_RST
            await stream.aclose()
            with pytest.raises(anyio.ClosedResourceError):
                await stream.receive()
            with pytest.raises(anyio.ClosedResourceError):
                await stream.send(b"x")

    run(main)


def test_no_send_after_send_eof(run: Any) -> None:
    async def main() -> None:
        with socket.socket() as server:
            server.bind(("127.0.0.1", 0))
            server.listen()
            async with await wsk.connect("127.0.0.1", server.getsockname()[1]) as stream:
                peer, _ = server.accept()
                with peer:
                    await stream.send_eof()
                    assert peer.recv(10) == b""  # our FIN
                    with pytest.raises(anyio.ClosedResourceError):
                        await stream.send(b"late")

    run(main)
