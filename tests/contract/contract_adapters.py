"""Factories for the disconnect contract suite, one per layer.

Each makes a connected pair - our end through the layer, the peer a plain socket accepted
from :func:`pywsk.testing.contract.plain_listener` - and wraps our end as a blocking
:class:`~pywsk.testing.contract.Subject`.  The async layers run their event loop in a
thread of their own (:class:`LoopThread`, :class:`TrioThread`); each call is handed over
and its result (or exception) handed back.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar

import anyio
import anyio.abc
import pytest
import trio  # type: ignore[import-untyped, unused-ignore]
import uvloop

import pywsk.aio
import pywsk.aio.anyio
import pywsk.sync
import pywsk.trio
from pywsk.client import allocate_buffer
from pywsk.core.ending import ENDING_OF_STATUS, Ending
from pywsk.errors import error_from_status
from pywsk.nt.status import NT_SUCCESS, NTSTATUS
from pywsk.testing.contract import SMALL_BUFFER, Factory, Subject, plain_listener
from pywsk.testing.driver import Request, WskTestClient
from pywsk.wsk import (
    AF_INET,
    SO_SNDBUF,
    SOL_SOCKET,
    WSK_FLAG_ABORTIVE,
    WSK_SOCKET,
    WskSetOption,
    sockaddr_from_tuple,
)

T = TypeVar("T")
Pair = Iterator[tuple[Subject, socket.socket]]

#: Our end's small send buffer (set before connecting, so Linux does not autotune it).
SMALL_OPTIONS = ((SOL_SOCKET, SO_SNDBUF, SMALL_BUFFER),)
#: How long a driver-style call may wait for its IRP (the suite bounds every call itself).
IRP_WAIT = 60.0
#: The pool tag of :func:`pywsk.testing.driver.make_buffer`.
POOL_TAG = b"wskt"


def _options(small: bool) -> tuple[tuple[int, int, int], ...]:
    return SMALL_OPTIONS if small else ()


# --------------------------------------------------------------------------------------------
# asyncio and uvloop
# --------------------------------------------------------------------------------------------


class _Subject:
    """What every Pythonic subject reads from the connection object it wraps."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    @property
    def local_port(self) -> int:
        port: int = self.conn.local_address[1]
        return port

    @property
    def disconnected_by(self) -> Ending | None:
        ending = self.conn.disconnected_by
        assert ending is None or isinstance(ending, Ending), ending
        return ending


class LoopThread:
    """An asyncio (or uvloop) loop running in a thread; :meth:`run` hands it a coroutine."""

    def __init__(self, loop_factory: Callable[[], asyncio.AbstractEventLoop]) -> None:
        self.loop = loop_factory()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class AioSubject(_Subject):
    conn: pywsk.aio.Connection

    def __init__(self, loop: LoopThread, conn: pywsk.aio.Connection) -> None:
        super().__init__(conn)
        self._loop = loop

    def send_all(self, data: bytes) -> None:
        self._loop.run(self.conn.send_all(data))

    def receive_some(self, max_bytes: int) -> bytes:
        return self._loop.run(self.conn.receive_some(max_bytes))

    def receive_exactly(self, size: int) -> bytes:
        return self._loop.run(self.conn.receive_exactly(size))

    def receive_until(self, separator: bytes, max_size: int) -> bytes:
        return self._loop.run(self.conn.receive_until(separator, max_size))

    def disconnect(self) -> None:
        self._loop.run(self.conn.disconnect())

    def abort(self) -> None:
        self._loop.run(self.conn.abort())

    def close(self) -> None:
        self._loop.run(self.conn.aclose())


@contextlib.contextmanager
def aio_pair(loop: LoopThread, small: bool) -> Pair:
    with plain_listener(small) as listener:
        port = listener.getsockname()[1]
        conn = loop.run(pywsk.aio.connect("127.0.0.1", port, options=_options(small)))
        peer, _ = listener.accept()
    with peer:
        try:
            yield AioSubject(loop, conn), peer
        finally:
            loop.run(conn.aclose())


# --------------------------------------------------------------------------------------------
# trio
# --------------------------------------------------------------------------------------------


class TrioThread:
    """A trio run in a thread; :meth:`run` calls an async function in it."""

    def __init__(self) -> None:
        ready = threading.Event()
        self._token: Any = None
        self._stop: Any = None

        async def main() -> None:
            self._token = trio.lowlevel.current_trio_token()
            self._stop = trio.Event()
            ready.set()
            await self._stop.wait()

        self._thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the trio thread did not start")

    def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        result: T = trio.from_thread.run(fn, *args, trio_token=self._token)
        return result

    def close(self) -> None:
        trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join(10)


class TrioSubject(_Subject):
    """``disconnect`` is ``send_eof``; ``close`` is ``trio.aclose_forcefully`` (the close
    that does not wait for the peer); ``BrokenResourceError`` is unwrapped to its cause."""

    def __init__(self, trio_thread: TrioThread, stream: pywsk.trio.WskStream) -> None:
        super().__init__(stream)
        self._trio = trio_thread
        self.stream = stream

    def _run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        try:
            return self._trio.run(fn, *args)
        except trio.BrokenResourceError as exc:
            if isinstance(exc.__cause__, OSError):
                raise exc.__cause__ from exc
            raise

    def send_all(self, data: bytes) -> None:
        self._run(self.stream.send_all, data)

    def receive_some(self, max_bytes: int) -> bytes:
        return self._run(self.stream.receive_some, max_bytes)

    def receive_exactly(self, size: int) -> bytes:
        return self._run(self.stream.receive_exactly, size)

    def receive_until(self, separator: bytes, max_size: int) -> bytes:
        return self._run(self.stream.receive_until, separator, max_size)

    def disconnect(self) -> None:
        self._run(self.stream.send_eof)

    def abort(self) -> None:
        self._run(self.stream.abort)

    def close(self) -> None:
        self._run(trio.aclose_forcefully, self.stream)


@contextlib.contextmanager
def trio_pair(trio_thread: TrioThread, small: bool) -> Pair:
    with plain_listener(small) as listener:
        port = listener.getsockname()[1]
        connect = functools.partial(pywsk.trio.open_connection, options=_options(small))
        stream = trio_thread.run(connect, "127.0.0.1", port)
        peer, _ = listener.accept()
    with peer:
        try:
            yield TrioSubject(trio_thread, stream), peer
        finally:
            trio_thread.run(trio.aclose_forcefully, stream)


# --------------------------------------------------------------------------------------------
# pywsk.sync
# --------------------------------------------------------------------------------------------


class SyncSubject(_Subject):
    conn: pywsk.sync.Connection

    def __init__(self, conn: pywsk.sync.Connection) -> None:
        super().__init__(conn)

    def send_all(self, data: bytes) -> None:
        self.conn.send(data)

    def receive_some(self, max_bytes: int) -> bytes:
        return self.conn.recv(max_bytes)

    def receive_exactly(self, size: int) -> bytes:
        return self.conn.receive_exactly(size)

    def receive_until(self, separator: bytes, max_size: int) -> bytes:
        return self.conn.receive_until(separator, max_size)

    def disconnect(self) -> None:
        self.conn.disconnect()

    def abort(self) -> None:
        self.conn.abort()

    def close(self) -> None:
        self.conn.close()


@contextlib.contextmanager
def sync_pair(small: bool) -> Pair:
    with plain_listener(small) as listener:
        port = listener.getsockname()[1]
        conn = pywsk.sync.connect("127.0.0.1", port, timeout=10, options=_options(small))
        peer, _ = listener.accept()
    with peer, conn:
        yield SyncSubject(conn), peer


# --------------------------------------------------------------------------------------------
# The driver-style layer: WskTestClient's IRPs, statuses read as a driver reads them
# --------------------------------------------------------------------------------------------


class DriverSubject:
    """Each call is one IRP from :class:`WskTestClient`, waited for; a failed status
    becomes the :mod:`pywsk.errors` exception; the way the connection ended is what the
    statuses said (a 0-byte receive, STATUS_CONNECTION_RESET, our abort or early close)."""

    def __init__(self, client: WskTestClient, sock: WSK_SOCKET, port: int) -> None:
        self._client = client
        self._sock = sock
        self._port = port
        self._ending: Ending | None = None
        self._fin_acked = False
        self._eof = False

    @property
    def local_port(self) -> int:
        return self._port

    @property
    def disconnected_by(self) -> Ending | None:
        return self._ending

    def _note(self, ending: Ending | None) -> None:
        if ending is not None:
            known = self._ending
            self._ending = ending if known is None else known.then(ending)

    def _check(self, request: Request) -> Request:
        request.wait(IRP_WAIT)
        status = request.status
        assert status is not None
        if not NT_SUCCESS(status):
            self._note(ENDING_OF_STATUS.get(status))
            raise error_from_status(status, request.name)
        return request

    def _with_buffer(self, name: str, data: bytes | int) -> tuple[Request, bytes]:
        """``name`` (WskSend or WskReceive) over a non-paged pool buffer, freed after."""
        pool, buf, free = allocate_buffer(data, POOL_TAG)
        try:
            function = getattr(self._client.dispatch(self._sock), name)
            request = self._client.start(name, function, self._sock, buf, 0)
            request.wait(IRP_WAIT)
            count = request.information if isinstance(request.information, int) else 0
            return request, bytes(pool[:count])
        finally:
            free()

    def send_all(self, data: bytes) -> None:
        self._check(self._with_buffer("WskSend", data)[0])

    def receive_some(self, max_bytes: int) -> bytes:
        request, data = self._with_buffer("WskReceive", max_bytes)
        self._check(request)
        if not data:
            self._eof = True
            self._note(Ending.PEER_FIN)
        return data

    def disconnect(self) -> None:
        self._check(self._client.disconnect(self._sock))
        self._fin_acked = True

    def abort(self) -> None:
        self._note(Ending.OUR_FIN_THEN_RST if self._fin_acked else Ending.OUR_RST)
        self._client.disconnect(self._sock, None, WSK_FLAG_ABORTIVE).wait(IRP_WAIT)

    def close(self) -> None:
        if self._sock in self._client.sockets:
            if not (self._fin_acked and self._eof):
                self._note(Ending.OUR_FIN_THEN_RST if self._fin_acked else Ending.OUR_RST)
            self._client.close_socket(self._sock)


def _driver_connect(client: WskTestClient, port: int, small: bool) -> WSK_SOCKET:
    made = client.socket(AF_INET)
    assert made.status == NTSTATUS.STATUS_SUCCESS, made
    sock: WSK_SOCKET = made.information
    functions = client.dispatch(sock)
    for level, option, value in _options(small):
        args = (sock, WskSetOption, option, level, 4, value, 0, None, None)
        done = client.call("WskControlSocket", functions.WskControlSocket, *args)
        assert done.status == NTSTATUS.STATUS_SUCCESS, done
    here = sockaddr_from_tuple(("127.0.0.1", 0))
    bound = client.call("WskBind", functions.WskBind, sock, here, 0)
    assert bound.status == NTSTATUS.STATUS_SUCCESS, bound
    there = sockaddr_from_tuple(("127.0.0.1", port))
    connected = client.call("WskConnect", functions.WskConnect, sock, there, 0)
    assert connected.status == NTSTATUS.STATUS_SUCCESS, connected
    return sock


@contextlib.contextmanager
def driver_pair(small: bool) -> Pair:
    with WskTestClient() as client:
        with plain_listener(small) as listener:
            sock = _driver_connect(client, listener.getsockname()[1], small)
            peer, remote = listener.accept()
        with peer:
            yield DriverSubject(client, sock, remote[1]), peer


# --------------------------------------------------------------------------------------------
# anyio, on its asyncio backend (a LoopThread) and on its trio backend (a TrioThread)
# --------------------------------------------------------------------------------------------


def _os_error_behind(exc: BaseException) -> BaseException:
    """The first OSError in ``exc``'s chain of causes (anyio's, then trio's wrapper)."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, OSError):
        cause = cause.__cause__
    return cause if cause is not None else exc


class AnyioSubject(_Subject):
    """``receive`` at the end of the stream (``anyio.EndOfStream``) is ``b""``; ``close``
    is ``anyio.aclose_forcefully``; anyio's exceptions are unwrapped to their OSError."""

    def __init__(self, run: Callable[..., Any], stream: pywsk.aio.anyio.WskByteStream) -> None:
        super().__init__(stream.inner)
        self._run = run
        self.stream = stream

    def _call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        try:
            result: T = self._run(fn, *args)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            raise _os_error_behind(exc) from exc
        return result

    def send_all(self, data: bytes) -> None:
        self._call(self.stream.send, data)

    def receive_some(self, max_bytes: int) -> bytes:
        async def receive() -> bytes:
            try:
                return await self.stream.receive(max_bytes)
            except anyio.EndOfStream:
                return b""

        return self._call(receive)

    def disconnect(self) -> None:
        self._call(self.stream.send_eof)

    def abort(self) -> None:
        self._call(self.stream.abort)

    def close(self) -> None:
        self._call(anyio.aclose_forcefully, self.stream)


def anyio_runner(thread: LoopThread | TrioThread) -> Callable[..., Any]:
    """``run(afn, *args)`` in the thread's event loop."""
    if isinstance(thread, TrioThread):
        return thread.run

    def run(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        async def call() -> T:
            return await fn(*args)

        return thread.run(call())

    return run


@contextlib.contextmanager
def anyio_pair(thread: LoopThread | TrioThread, small: bool) -> Pair:
    run = anyio_runner(thread)
    with plain_listener(small) as listener:
        port = listener.getsockname()[1]
        connect = functools.partial(pywsk.aio.anyio.connect, options=_options(small))
        stream = run(connect, "127.0.0.1", port)
        peer, _ = listener.accept()
    with peer:
        try:
            yield AnyioSubject(run, stream), peer
        finally:
            run(anyio.aclose_forcefully, stream)


# --------------------------------------------------------------------------------------------
# The fixture: one factory per layer
# --------------------------------------------------------------------------------------------

LAYERS = [
    "driver",
    "asyncio",
    "uvloop",
    "transport-asyncio",
    "transport-uvloop",
    "trio",
    "sync",
    "anyio-asyncio",
    "anyio-trio",
]


def layer_fixture() -> Any:
    """The ``factory`` fixture, parametrized over :data:`LAYERS` (declare it in a test
    module as ``factory = layer_fixture()``)."""
    return pytest.fixture(name="factory", params=LAYERS)(_factory)


def _factory(request: pytest.FixtureRequest) -> Iterator[Factory]:
    """A pair maker for the layer ``request.param``."""
    layer = request.param
    if layer in ("asyncio", "uvloop"):
        loop = LoopThread(asyncio.new_event_loop if layer == "asyncio" else uvloop.new_event_loop)
        try:
            yield lambda small: aio_pair(loop, small)
        finally:
            loop.close()
    elif layer in ("transport-asyncio", "transport-uvloop"):
        from transport_adapter import transport_pair  # it imports this module

        flavour = asyncio.new_event_loop if layer.endswith("asyncio") else uvloop.new_event_loop
        loop = LoopThread(flavour)
        try:
            yield lambda small: transport_pair(loop, small)
        finally:
            loop.close()
    elif layer == "trio":
        trio_thread = TrioThread()
        try:
            yield lambda small: trio_pair(trio_thread, small)
        finally:
            trio_thread.close()
    elif layer == "anyio-asyncio":
        loop = LoopThread(asyncio.new_event_loop)
        try:
            yield lambda small: anyio_pair(loop, small)
        finally:
            loop.close()
    elif layer == "anyio-trio":
        trio_thread = TrioThread()
        try:
            yield lambda small: anyio_pair(trio_thread, small)
        finally:
            trio_thread.close()
    elif layer == "sync":
        yield sync_pair
    else:
        yield driver_pair
