"""pywsk for asyncio (and uvloop): TCP connections through WSK, with async/await.

What it does: :func:`connect` gives a :class:`Connection` (``send_all``, ``receive_some``,
``receive_exactly``, ``receive_until``, ``disconnect``, ``abort``, ``aclose``), or with
``ssl=`` a :class:`TlsConnection` with the same interface; :func:`listen` gives a
:class:`Listener` (``accept``); :func:`serve` runs a handler per connection (``ssl=``: after
the TLS handshake).  asyncio's callback style is there too: :func:`create_connection` and
:func:`create_server` give each connection an ``asyncio.Protocol`` and a
:class:`WskTransport` (``write_eof()`` is the graceful disconnect, reported to the
protocol's ``disconnect_complete`` when our FIN is acknowledged).  :mod:`pywsk.aio.anyio` offers the same over anyio, on both backends.

It runs natively on the caller's loop: each operation is a non-blocking syscall on the
loop's thread, and the sockets' edges come from one edge-triggered epoll per loop that the
loop itself watches - no provider thread, no IRP per operation, no thread hop.  The
semantics are not a second implementation: the state machine, verdicts and NTSTATUS codes
are :mod:`pywsk.core`'s and the kernel recipes :mod:`pywsk.mechanics`', the same two the
faithful WSK provider runs on.  Works on any asyncio loop; :func:`run` uses uvloop when it
is installed::

    import pywsk.aio

    async def main():
        async with await pywsk.aio.connect("127.0.0.1", 8080) as conn:
            await conn.send_all(b"GET / HTTP/1.0\\r\\n\\r\\n")
            await conn.disconnect()                  # FIN; returns once acknowledged
            while data := await conn.receive_some():  # until the peer's FIN
                print(data)
        # both directions closed: aclose() sent no RST

    pywsk.aio.run(main())

What it refuses: a graceful close that is not one.  ``aclose()`` is WskCloseSocket: it
resets (RST) a connection not disconnected in both directions; the graceful path is
``disconnect()``, read to ``b""``, then ``aclose()``.

What always holds: cancellation follows trio's rules for streams: a cancelled receive loses
nothing (bytes leave the kernel only when a receive returns them); a cancelled send had no
effect, or - if the transport had started taking it - breaks the connection (an RST), so
that nothing half-sent is left behind.  Failures are :mod:`pywsk.errors` exceptions, subclasses of the
built-in ``ConnectionResetError``, ``ConnectionAbortedError``, ``TimeoutError``, ... with
the NTSTATUS in ``.status``.  See ``docs/layers.md``.
"""

from __future__ import annotations

from typing import Any

from .._native import SocketOption, deprecated_attribute
from ..core.ending import Ending
from ._connection import Connection
from ._datagram import DatagramEndpoint, open_datagram
from ._listener import Handler, Listener, Server, TlsHandler, listen, serve
from ._tls import TlsConnection, connect, start_tls
from ._transport import WskTransport
from ._transport_server import WskServer, create_connection, create_server
from ._waiting import run

__all__ = [
    "Connection",
    "DatagramEndpoint",
    "Ending",
    "Handler",
    "Listener",
    "Server",
    "SocketOption",
    "TlsConnection",
    "TlsHandler",
    "WskServer",
    "WskTransport",
    "connect",
    "create_connection",
    "create_server",
    "listen",
    "open_datagram",
    "run",
    "serve",
    "start_tls",
]


def __getattr__(name: str) -> Any:
    # DisconnectReason: deprecated for one release (disconnected_by reports an Ending).
    return deprecated_attribute(__name__, name)
