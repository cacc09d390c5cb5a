"""pywsk for asyncio (and uvloop): TCP connections through WSK, with async/await.

What it does: :func:`connect` gives a :class:`Connection` (``send_all``, ``receive_some``,
``receive_exactly``, ``receive_until``, ``disconnect``, ``abort``, ``aclose``), or with
``ssl=`` a :class:`TlsConnection` with the same interface; :func:`listen` gives a
:class:`Listener` (``accept``); :func:`serve` runs a handler per connection (``ssl=``: after
the TLS handshake).  :mod:`pywsk.aio.anyio` offers the same over anyio, on both backends.  Every operation is a WSK call
on its own IRP, through the provider's dispatch tables - the faithful layer underneath,
not a second implementation.  Works on any asyncio loop; :func:`run` uses uvloop when it
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

What always holds: cancellation follows trio's ``wait_overlapped``: cancelling an await
calls IoCancelIrp and then still waits for the IRP's completion, so an operation either had
no effect or took effect and its result is kept (a cancelled receive's data is returned by
the next ``receive_some``).  Failures are :mod:`pywsk.errors` exceptions, subclasses of the
built-in ``ConnectionResetError``, ``ConnectionAbortedError``, ``TimeoutError``, ... with
the NTSTATUS in ``.status``.  See ``docs/layers.md``.
"""

from __future__ import annotations

from .._bridge import DisconnectReason, SocketOption
from ._connection import Connection
from ._datagram import DatagramEndpoint, open_datagram
from ._listener import Handler, Listener, Server, TlsHandler, listen, serve
from ._tls import TlsConnection, connect, start_tls
from ._waiting import run

__all__ = [
    "Connection",
    "DatagramEndpoint",
    "DisconnectReason",
    "Handler",
    "Listener",
    "Server",
    "SocketOption",
    "TlsConnection",
    "TlsHandler",
    "connect",
    "listen",
    "open_datagram",
    "run",
    "serve",
    "start_tls",
]
