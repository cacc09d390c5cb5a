"""TLS for pywsk.aio: :class:`TlsConnection`, a :class:`~pywsk.aio.Connection` with TLS.

What it does: the TLS state machine is the standard library's (``ssl.SSLObject`` over two
``ssl.MemoryBIO``), as asyncio's own ``loop.start_tls`` drives it; the records travel on a
WSK connection (``send_all`` / ``receive_some``).  :func:`start_tls` runs the handshake
(client or server side) and returns the :class:`TlsConnection`; ``pywsk.aio.connect(...,
ssl=...)`` and ``pywsk.aio.serve(..., ssl=...)`` call it.

How a TLS connection ends: :meth:`TlsConnection.disconnect` sends our ``close_notify``
and then our FIN, and returns when the FIN is acknowledged (so the peer has every record,
``close_notify`` included).  ``receive_some`` returns ``b""`` after the peer's
``close_notify``; a FIN without one (a truncation attack, or a careless peer) raises
``ssl.SSLEOFError``.  ``abort`` and ``aclose`` are the connection's: an RST, or a close
that resets unless both directions were disconnected.

What it refuses: a TLS stream in an unknown state.  A cancelled ``send_all`` may have
encrypted records that never went out, so it resets the connection (an RST), as trio's
``SSLStream`` leaves a stream broken after a cancelled send.  One ``receive_some`` at a
time (:class:`~pywsk.errors.BusyError`).

What always holds: every byte the handshake or a write produced is sent in order; the
disconnect semantics (FIN acknowledged, a real RST, FIN and RST told apart) are the
connection's underneath.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl as ssl_module
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Literal, overload

from .._native import DEFAULT_RECEIVE_SIZE, SocketOption
from .._receiving import Steps, drive_steps, exactly_steps, take, until_steps
from ..core.ending import Ending
from ..errors import BusyError, error_from_status
from ..nt.status import NTSTATUS
from ._connection import Connection
from ._connection import connect as plain_connect

__all__ = ["TlsConnection", "connect", "start_tls"]


@overload
async def connect(
    host: str,
    port: int,
    *,
    ssl: Literal[False] | None = None,
    server_hostname: None = None,
    ssl_handshake_timeout: float | None = 60.0,
    options: Sequence[SocketOption] = (),
    local: tuple[str, int] | None = None,
) -> Connection: ...


@overload
async def connect(
    host: str,
    port: int,
    *,
    ssl: ssl_module.SSLContext | Literal[True],
    server_hostname: str | None = None,
    ssl_handshake_timeout: float | None = 60.0,
    options: Sequence[SocketOption] = (),
    local: tuple[str, int] | None = None,
) -> TlsConnection: ...


async def connect(
    host: str,
    port: int,
    *,
    ssl: ssl_module.SSLContext | bool | None = None,
    server_hostname: str | None = None,
    ssl_handshake_timeout: float | None = 60.0,
    options: Sequence[SocketOption] = (),
    local: tuple[str, int] | None = None,
) -> Connection | TlsConnection:
    """Open a TCP connection to ``host``:``port`` through WSK (see
    :func:`pywsk.aio._connection.connect`) and, with ``ssl``, run TLS over it.

    As ``asyncio.open_connection``: ``ssl=True`` uses ``ssl.create_default_context()``, an
    ``ssl.SSLContext`` is used as it is; ``server_hostname`` (for SNI and the certificate
    check) defaults to ``host``, and is refused without ``ssl``.  The TLS handshake is
    bounded by ``ssl_handshake_timeout`` seconds; a failed handshake closes the connection.
    """
    if not ssl:
        if server_hostname is not None:
            raise ValueError("server_hostname is only meaningful with ssl")
        return await plain_connect(host, port, options=options, local=local)
    context = ssl_module.create_default_context() if ssl is True else ssl
    if not isinstance(context, ssl_module.SSLContext):
        raise TypeError(f"ssl must be an ssl.SSLContext, True or None, not {ssl!r}")
    conn = await plain_connect(host, port, options=options, local=local)
    return await start_tls(
        conn,
        context,
        server_hostname=host if server_hostname is None else server_hostname,
        handshake_timeout=ssl_handshake_timeout,
    )


async def start_tls(
    conn: Connection,
    context: ssl_module.SSLContext,
    *,
    server_side: bool = False,
    server_hostname: str | None = None,
    handshake_timeout: float | None = 60.0,
) -> TlsConnection:
    """Run the TLS handshake over ``conn``; the :class:`TlsConnection` that results.

    On failure (``ssl.SSLError``, ``TimeoutError`` after ``handshake_timeout`` seconds, a
    cancellation, the connection's own failure) the connection is closed - an RST - and
    the exception raised.
    """
    tls = TlsConnection(conn, context, server_side=server_side, server_hostname=server_hostname)
    try:
        async with asyncio.timeout(handshake_timeout):
            await tls._handshake()
    except BaseException:
        await conn.aclose()
        raise
    return tls


class TlsConnection:
    """A TLS session over one WSK connection; the :class:`~pywsk.aio.Connection` interface.

    ``send_all``, ``receive_some``, ``receive_exactly``, ``receive_until`` carry plaintext;
    ``disconnect`` is ``close_notify`` then our FIN (acknowledged); ``abort`` and
    ``aclose`` are the connection's.  :attr:`connection` is the connection underneath,
    :attr:`ssl_object` the ``ssl.SSLObject`` (certificate, cipher, ALPN).
    """

    def __init__(
        self,
        conn: Connection,
        context: ssl_module.SSLContext,
        *,
        server_side: bool,
        server_hostname: str | None,
    ) -> None:
        self._conn = conn
        self._incoming = ssl_module.MemoryBIO()
        self._outgoing = ssl_module.MemoryBIO()
        self._ssl = context.wrap_bio(
            self._incoming, self._outgoing, server_side=server_side, server_hostname=server_hostname
        )
        self._leftover = bytearray()
        self._receiving = False
        self._notified = False

    def __repr__(self) -> str:
        return f"<pywsk.aio.TlsConnection {self._ssl.version()} {self._conn!r}>"

    async def __aenter__(self) -> TlsConnection:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # --- what it is ---------------------------------------------------------------------------
    @property
    def connection(self) -> Connection:
        """The WSK connection the records travel on."""
        return self._conn

    @property
    def ssl_object(self) -> ssl_module.SSLObject:
        return self._ssl

    @property
    def local_address(self) -> tuple[Any, ...]:
        return self._conn.local_address

    @property
    def remote_address(self) -> tuple[Any, ...]:
        return self._conn.remote_address

    @property
    def disconnected_by(self) -> Ending | None:
        """How the connection underneath ended (see :class:`~pywsk.aio.Connection`)."""
        return self._conn.disconnected_by

    @property
    def closed(self) -> bool:
        return self._conn.closed

    # --- moving records -----------------------------------------------------------------------
    async def _flush(self) -> None:
        """Send the records the TLS object produced; a cancel resets the connection (records
        may be lost, so the session cannot go on)."""
        data = self._outgoing.read()
        if not data:
            return
        try:
            await self._conn.send_all(data)
        except asyncio.CancelledError:
            await self._conn.abort()
            raise

    async def _fill(self) -> None:
        """One receive of records into the TLS object (the FIN: end of its input)."""
        data = await self._conn.receive_some(DEFAULT_RECEIVE_SIZE)
        if data:
            self._incoming.write(data)
        else:
            self._incoming.write_eof()

    async def _handshake(self) -> None:
        while True:
            try:
                self._ssl.do_handshake()
            except ssl_module.SSLWantReadError:
                await self._flush()
                await self._fill()
            else:
                await self._flush()
                return

    # --- the Connection interface -------------------------------------------------------------
    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt and send all of ``data`` (returns when the transport took the records).
        Cancelled while records were going out: the connection is reset.  After
        :meth:`disconnect`: :class:`~pywsk.errors.WskBrokenPipeError`."""
        if self._notified:
            raise error_from_status(
                NTSTATUS.STATUS_PIPE_DISCONNECTED, "send_all after disconnect()"
            )
        self._ssl.write(data)
        await self._flush()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """At most ``max_bytes`` of plaintext; ``b""`` after the peer's ``close_notify``.
        Raises ``ssl.SSLEOFError`` on a FIN without ``close_notify``."""
        size = DEFAULT_RECEIVE_SIZE if max_bytes is None else max_bytes
        if size < 1:
            raise ValueError("max_bytes must be at least 1")
        if self._receiving:
            raise BusyError("another task is already receiving on this connection")
        if self._leftover:
            return take(self._leftover, size)
        self._receiving = True
        try:
            return await self._receive(size)
        finally:
            self._receiving = False

    async def _receive(self, size: int) -> bytes:
        while True:
            try:
                return self._ssl.read(size)
            except ssl_module.SSLZeroReturnError:
                # The peer's close_notify.  After ours (disconnect()), the peer has our FIN
                # too: read on to its FIN, so that aclose() finds both directions closed.
                if self._notified:
                    while await self._conn.receive_some(DEFAULT_RECEIVE_SIZE):
                        pass  # nothing may follow a close_notify; TCP bytes are dropped
                return b""
            except ssl_module.SSLWantReadError:
                await self._flush()  # e.g. a key update to answer
                await self._fill()

    async def receive_exactly(self, size: int) -> bytes:
        """Exactly ``size`` bytes of plaintext (see :meth:`Connection.receive_exactly`)."""
        return await self._receive_steps(exactly_steps(self._leftover, size))

    async def receive_until(self, separator: bytes, max_size: int) -> bytes:
        """The plaintext before ``separator`` (see :meth:`Connection.receive_until`)."""
        return await self._receive_steps(until_steps(self._leftover, separator, max_size))

    async def _receive_steps(self, steps: Steps) -> bytes:
        if self._receiving:
            raise BusyError("another task is already receiving on this connection")
        self._receiving = True
        try:
            return await drive_steps(steps, self._receive)
        finally:
            self._receiving = False

    async def disconnect(self) -> None:
        """Our ``close_notify``, then our FIN; returns when the FIN is acknowledged (every
        record arrived).  Receiving goes on until the peer's ``close_notify`` (``b""``)."""
        if not self._notified:
            self._notified = True
            # Our close_notify is written; the peer's comes through receive_some.
            with contextlib.suppress(ssl_module.SSLWantReadError):
                self._ssl.unwrap()
            await self._flush()
        await self._conn.disconnect()

    async def abort(self) -> None:
        """Reset the connection now (an RST), as :meth:`Connection.abort`."""
        await self._conn.abort()

    async def aclose(self) -> None:
        """Close the connection (:meth:`Connection.aclose`: an RST unless both directions
        were disconnected - ``disconnect()`` and the peer's ``close_notify`` and FIN)."""
        await self._conn.aclose()
