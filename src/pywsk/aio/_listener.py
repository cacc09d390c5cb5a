"""Listening sockets for asyncio, natively on the caller's loop: :func:`listen` /
:class:`Listener`, :func:`serve` / :class:`Server`.

What it does: a :class:`Listener` is a listening socket in the loop's edge poller
(:class:`pywsk._native.NativeListener`); :meth:`Listener.accept` takes the next connection
from the kernel's backlog (``accept4``, non-blocking from the start), waiting for the
socket's next edge when there is none.  Waiting accepts are served in the order they came.
A :class:`Server` runs an accept loop and one task per connection.

What it refuses: use after ``aclose()`` (:class:`~pywsk.errors.SocketClosedError`).

What always holds: a connection accepted for an ``accept()`` whose wait was cancelled is
not lost: it is kept and returned by the next ``accept()`` (or closed with the listener).
A :class:`Server` that meets a shortage of descriptors or memory reports it and accepts
again after :data:`ACCEPT_RETRY_DELAY` seconds, as asyncio's servers do.
"""

from __future__ import annotations

import asyncio
import ssl as _ssl
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, overload

from .._native import NativeConnection, NativeListener, SocketOption, listen_steps
from ..errors import Failed, NtStatusError, error_from_status
from ..nt.status import NTSTATUS
from ..wsk.structs import check_port
from ._connection import Connection
from ._tls import TlsConnection, start_tls
from ._waiting import drive, poller

__all__ = [
    "ACCEPT_RETRY_DELAY",
    "SHORTAGES",
    "Handler",
    "Listener",
    "Server",
    "TlsHandler",
    "listen",
    "open_listener",
    "serve",
]

#: Seconds a :class:`Server` waits before accepting again after a shortage of resources.
ACCEPT_RETRY_DELAY = 1.0
SHORTAGES = frozenset(
    {NTSTATUS.STATUS_TOO_MANY_OPENED_FILES, NTSTATUS.STATUS_INSUFFICIENT_RESOURCES}
)

#: A connection handler for :func:`serve`.
Handler = Callable[[Connection], Awaitable[None]]
#: A connection handler for :func:`serve` with ``ssl``.
TlsHandler = Callable[[TlsConnection], Awaitable[None]]


async def listen(host: str, port: int, *, options: Sequence[SocketOption] = ()) -> Listener:
    """A listening socket on ``host``:``port`` (port 0: any free port; see
    :attr:`Listener.local_address`).  ``options`` are set before WskBind, for example
    ``(SOL_SOCKET, SO_RCVBUF, 65536)``, which the accepted connections inherit.  A port
    outside 0..65535 raises ``ValueError`` before any call."""
    loop = asyncio.get_running_loop()
    return Listener(await open_listener(host, port, options, loop), loop)


async def open_listener(
    host: str, port: int, options: Sequence[SocketOption], loop: asyncio.AbstractEventLoop
) -> NativeListener:
    """The listen of :func:`listen` and of the Transports' ``create_server``: the port
    checked, the sequence driven on ``loop``, the failure turned into its exception."""
    check_port(port)
    try:
        return await drive(listen_steps(poller(loop), host, port, options), loop)
    except Failed as failed:  # the boundary: the status becomes the exception
        raise failed.error() from None


class Listener:
    """A listening socket.  Use ``async with`` (or ``aclose()``).

    :meth:`accept` returns the next connection; several tasks may wait in it at once (they
    are served in the order they called).  Closing the listener resets the connections
    accepted and not yet handed out (the kernel resets those still in its backlog).
    """

    __slots__ = ("_listener", "_loop")

    def __init__(self, listener: NativeListener, loop: asyncio.AbstractEventLoop) -> None:
        self._listener = listener
        self._loop = loop

    def __repr__(self) -> str:
        return f"<pywsk.aio.Listener {self._listener!r}>"

    async def __aenter__(self) -> Listener:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def local_address(self) -> tuple[Any, ...]:
        """The address it listens on (with the real port when 0 was asked)."""
        return self._listener.local

    @property
    def closed(self) -> bool:
        return self._listener.closed

    async def accept(self) -> Connection:
        """The next connection.

        Cancellation: a connection accepted for this call as it was cancelled is kept for
        the next ``accept()``, and ``CancelledError`` is raised.  Raises
        :class:`~pywsk.errors.SocketClosedError` once the listener is closed.
        """
        listener = self._listener
        if listener.ready:
            return Connection(listener.ready.popleft(), self._loop)
        if listener.closed:
            raise error_from_status(NTSTATUS.STATUS_INVALID_HANDLE, "the listener is closed")
        try:
            if not listener.waiters:
                native = listener.try_accept()
                if native is not None:
                    return Connection(native, self._loop)
            waiter: asyncio.Future[NativeConnection] = self._loop.create_future()
            listener.waiters.append(waiter)
            try:
                native = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                    listener.ready.append(waiter.result())
                elif waiter in listener.waiters:
                    listener.waiters.remove(waiter)
                raise
        except Failed as failed:  # the boundary: the status becomes the exception
            raise failed.error() from None
        return Connection(native, self._loop)

    async def aclose(self) -> None:
        """Close the listening socket (idempotent).  Pending ``accept()`` calls raise
        :class:`~pywsk.errors.SocketClosedError`; kept connections are closed (RST)."""
        for native in self._listener.close():
            await Connection(native, self._loop).aclose()


@overload
async def serve(
    handler: Handler,
    host: str,
    port: int,
    *,
    options: Sequence[SocketOption] = (),
    ssl: None = None,
    ssl_handshake_timeout: float | None = 60.0,
) -> Server: ...


@overload
async def serve(
    handler: TlsHandler,
    host: str,
    port: int,
    *,
    options: Sequence[SocketOption] = (),
    ssl: _ssl.SSLContext,
    ssl_handshake_timeout: float | None = 60.0,
) -> Server: ...


async def serve(
    handler: Callable[[Any], Awaitable[None]],
    host: str,
    port: int,
    *,
    options: Sequence[SocketOption] = (),
    ssl: _ssl.SSLContext | None = None,
    ssl_handshake_timeout: float | None = 60.0,
) -> Server:
    """Listen on ``host``:``port`` and run ``handler(connection)`` in a task per connection.

    With ``ssl`` (a server-side ``ssl.SSLContext``) each connection first runs the TLS
    handshake (bounded by ``ssl_handshake_timeout`` seconds; a failure closes the
    connection and goes to the loop's exception handler) and the handler gets a
    :class:`~pywsk.aio.TlsConnection`.

    The server closes each connection when its handler returns (``aclose()``: an RST unless
    the handler disconnected both directions - call ``await conn.disconnect()`` and read to
    ``b""`` for a graceful end).  An exception from a handler goes to the loop's exception
    handler.  Use ``async with await serve(...) as server`` or ``server.aclose()``.
    """
    listener = await listen(host, port, options=options)
    return Server(listener, handler, ssl=ssl, ssl_handshake_timeout=ssl_handshake_timeout)


class Server:
    """An accept loop on a :class:`Listener` with one task per connection."""

    def __init__(
        self,
        listener: Listener,
        handler: Callable[[Any], Awaitable[None]],
        *,
        ssl: _ssl.SSLContext | None = None,
        ssl_handshake_timeout: float | None = 60.0,
    ) -> None:
        self.listener = listener
        self._handler = handler
        self._ssl = ssl
        self._handshake_timeout = ssl_handshake_timeout
        self._loop = asyncio.get_running_loop()
        self._handlers: dict[asyncio.Task[None], Connection] = {}
        self._accepting = self._loop.create_task(self._accept_loop())
        self._closed = asyncio.Event()

    def __repr__(self) -> str:
        return f"<pywsk.aio.Server {self.listener.local_address} {len(self._handlers)} conn>"

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def local_address(self) -> tuple[Any, ...]:
        return self.listener.local_address

    async def _accept_loop(self) -> None:
        while True:
            try:
                conn = await self.listener.accept()
            except NtStatusError as exc:
                if self.listener.closed:
                    return
                self._loop.call_exception_handler(
                    {"message": "pywsk.aio.Server: accept failed", "exception": exc}
                )
                if exc.status not in SHORTAGES:
                    return  # the listener no longer works: stop accepting
                # A shortage (descriptors, memory) may pass: the backlog waits meanwhile.
                await asyncio.sleep(ACCEPT_RETRY_DELAY)
                continue
            task = self._loop.create_task(self._run(conn))
            self._handlers[task] = conn
            task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._handlers.pop(task, None)

    async def _run(self, conn: Connection) -> None:
        try:
            async with conn:
                if self._ssl is None:
                    await self._handler(conn)
                else:
                    tls = await start_tls(
                        conn,
                        self._ssl,
                        server_side=True,
                        handshake_timeout=self._handshake_timeout,
                    )
                    await self._handler(tls)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._loop.call_exception_handler(
                {"message": "pywsk.aio.Server: handler failed", "exception": exc}
            )

    async def serve_forever(self) -> None:
        """Wait until the server is closed."""
        await self._closed.wait()

    async def aclose(self) -> None:
        """Stop accepting, close the listener, cancel the handlers and wait for them (their
        connections are closed as their tasks end).  Idempotent."""
        if self._closed.is_set():
            return
        self._accepting.cancel()
        handlers = dict(self._handlers)
        for task in handlers:
            task.cancel()
        await asyncio.gather(self._accepting, *handlers, return_exceptions=True)
        for conn in handlers.values():
            await conn.aclose()  # a handler cancelled before it started never closed its own
        await self.listener.aclose()
        self._closed.set()
