"""Opening pywsk.aio's Transports: :func:`create_connection`, :func:`create_server` and
:class:`WskServer` (the transports themselves: :mod:`pywsk.aio._transport`).

What it does: ``create_connection`` runs the connect sequence of :mod:`pywsk._native` on
the caller's loop and gives the connection a protocol and a
:class:`~pywsk.aio._transport.WskTransport`, as ``loop.create_connection`` does;
``create_server`` listens and does the same for every connection the listening socket's
edges hand over (no accept loop, no task per connection).

What it refuses: a port outside 0..65535 (``ValueError``, before any call); what the kernel
refuses (the :mod:`pywsk.errors` exception with its NTSTATUS).

What always holds: a connection whose protocol factory raised is closed (an RST) before the
exception goes on (``create_connection``) or to the loop's exception handler (a server); a
server that meets a shortage of descriptors or memory accepts again after
:data:`~pywsk.aio._listener.ACCEPT_RETRY_DELAY` seconds, as :class:`pywsk.aio.Server` does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from .._native import NativeConnection, NativeListener, SocketOption
from ..errors import Failed
from ._connection import open_native
from ._listener import ACCEPT_RETRY_DELAY, SHORTAGES, open_listener
from ._transport import ProtocolFactory, WskTransport

__all__ = ["WskServer", "create_connection", "create_server"]


async def create_connection(
    protocol_factory: ProtocolFactory,
    host: str,
    port: int,
    *,
    options: Sequence[SocketOption] = (),
    local: tuple[str, int] | None = None,
) -> tuple[WskTransport, asyncio.BaseProtocol]:
    """Connect to ``host``:``port`` and return ``(transport, protocol)``, as
    ``loop.create_connection`` does: ``protocol_factory()`` makes the protocol, whose
    ``connection_made(transport)`` has been called when this returns.

    ``options`` and ``local`` are :func:`pywsk.aio.connect`'s.  Raises the
    :mod:`pywsk.errors` exception of the failure; cancelled, it closes the socket."""
    loop = asyncio.get_running_loop()
    conn = await open_native(host, port, options, local, loop)
    return _made(conn, protocol_factory, loop, None)


def _made(
    conn: NativeConnection,
    protocol_factory: ProtocolFactory,
    loop: asyncio.AbstractEventLoop,
    server: WskServer | None,
) -> tuple[WskTransport, asyncio.BaseProtocol]:
    try:
        protocol = protocol_factory()
    except BaseException:
        conn.close()
        raise
    transport = WskTransport(conn, protocol, loop, server)
    try:
        protocol.connection_made(transport)
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        transport._protocol_failed(exc)
    return transport, protocol


async def create_server(
    protocol_factory: ProtocolFactory,
    host: str,
    port: int,
    *,
    options: Sequence[SocketOption] = (),
) -> WskServer:
    """Listen on ``host``:``port``; each connection gets ``protocol_factory()`` and a
    :class:`WskTransport`, as ``loop.create_server`` does (serving starts at once)."""
    loop = asyncio.get_running_loop()
    listener = await open_listener(host, port, options, loop)
    return WskServer(listener, protocol_factory, loop)


class WskServer:
    """A listening socket whose connections each get a protocol and a
    :class:`WskTransport` (``asyncio.Server``'s shape: ``close``, ``wait_closed``,
    ``serve_forever``, ``async with``)."""

    def __init__(
        self,
        listener: NativeListener,
        protocol_factory: ProtocolFactory,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._listener = listener
        self._factory = protocol_factory
        self._loop = loop
        self._transports: set[WskTransport] = set()
        self._closed = loop.create_future()
        self._idle: asyncio.Future[None] | None = None
        self._retry: asyncio.TimerHandle | None = None
        listener.on_connection = self._accepted
        listener.on_error = self._accept_failed

    def __repr__(self) -> str:
        return f"<pywsk.aio.WskServer {self.local_address} {len(self._transports)} conn>"

    async def __aenter__(self) -> WskServer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        await self.wait_closed()

    @property
    def local_address(self) -> tuple[Any, ...]:
        return self._listener.local

    @property
    def sockets(self) -> tuple[Any, ...]:
        """The listening socket (for inspection), as ``asyncio.Server.sockets``."""
        return () if self._listener.closed else (self._listener.sock,)

    def is_serving(self) -> bool:
        return not self._listener.closed

    def _accepted(self, conn: NativeConnection) -> None:
        try:
            _made(conn, self._factory, self._loop, self)
        except Exception as exc:  # the factory failed: the connection is closed already
            self._loop.call_exception_handler(
                {"message": "pywsk.aio.WskServer: protocol factory failed", "exception": exc}
            )

    def _accept_failed(self, failed: Failed) -> None:
        """Reported to the loop's exception handler; after a shortage (descriptors,
        memory), which may pass, accept again in ACCEPT_RETRY_DELAY seconds (the backlog
        waits meanwhile), as :class:`pywsk.aio.Server` does; else stop accepting."""
        listener = self._listener
        if listener.closed:
            return
        exc = failed.error()
        self._loop.call_exception_handler(
            {"message": "pywsk.aio.WskServer: accept failed", "exception": exc}
        )
        if exc.status in SHORTAGES:
            self._retry = self._loop.call_later(ACCEPT_RETRY_DELAY, listener.accept_backlog)
        else:
            self._stop_accepting()

    def _stop_accepting(self) -> None:
        listener = self._listener
        listener.on_connection = None
        listener.on_error = None
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None

    def _attach(self, transport: WskTransport) -> None:
        self._transports.add(transport)

    def _detach(self, transport: WskTransport) -> None:
        self._transports.discard(transport)
        idle = self._idle
        if idle is not None and not self._transports and not idle.done():
            idle.set_result(None)

    def close(self) -> None:
        """Stop listening (idempotent); connections already made go on (asyncio's rule)."""
        self._stop_accepting()
        for conn in self._listener.close():
            conn.close()
        if not self._closed.done():
            self._closed.set_result(None)

    async def wait_closed(self) -> None:
        """Wait until the server is closed and every connection it made is lost."""
        await asyncio.shield(self._closed)
        if self._transports:
            if self._idle is None or self._idle.done():
                self._idle = self._loop.create_future()
            await asyncio.shield(self._idle)

    async def serve_forever(self) -> None:
        """Wait until the server is closed (it serves from its creation)."""
        await asyncio.shield(self._closed)
