"""pywsk for anyio: WSK connections as ``anyio.abc.ByteStream`` on both anyio backends.

What it does: :func:`connect` returns a :class:`WskByteStream` and :func:`listen` a
:class:`WskByteListener` (an ``anyio.abc.Listener``, with ``serve``).  Under anyio's
asyncio backend (asyncio or uvloop) they run over :mod:`pywsk.aio`; under its trio
backend over :mod:`pywsk.trio` - the backend is found when the call is made, so the same
code runs on both::

    import anyio
    from pywsk.aio import anyio as wsk

    async def main():
        async with await wsk.connect("127.0.0.1", 8080) as stream:
            await stream.send(b"hello")
            await stream.send_eof()               # our FIN, acknowledged
            print(await stream.receive())         # anyio.EndOfStream after the peer's FIN

    anyio.run(main)                               # or anyio.run(main, backend="trio")

The stream follows anyio's contract: ``receive`` raises ``anyio.EndOfStream`` after the
peer's FIN, ``anyio.BrokenResourceError`` (caused by the :mod:`pywsk.errors` exception)
when the connection failed, ``anyio.ClosedResourceError`` after a local close (or a send
after ``send_eof``), ``anyio.BusyResourceError`` for two concurrent receives.  The
``SocketAttribute`` local and remote addresses are its typed attributes.

What it refuses: a close that hides a reset.  ``aclose()`` is graceful first - the sends,
then our FIN, acknowledged - and then WskCloseSocket, which resets (RST) a connection the
peer has not closed its direction of, as :mod:`pywsk.trio` does; cancelled
(``anyio.aclose_forcefully``), or after a failure, it resets at once.  :meth:`abort`
resets now.

What always holds: the disconnect semantics are the underlying layer's (FIN acknowledged,
a real RST, FIN and RST reported apart: :attr:`WskByteStream.disconnected_by`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel

from .._native import DEFAULT_RECEIVE_SIZE, DisconnectReason, SocketOption
from ..errors import BusyError, NtStatusError, SocketClosedError
from ._connection import Connection
from ._connection import connect as aio_connect
from ._listener import Listener
from ._listener import listen as aio_listen

__all__ = ["WskByteListener", "WskByteStream", "connect", "listen"]


def _backend() -> str:
    try:
        import sniffio
    except ImportError:  # pragma: no cover - trio (the only other backend) needs sniffio
        return "asyncio"
    return sniffio.current_async_library()


def _translate(exc: BaseException) -> BaseException:
    """The anyio exception for a failure of the layer underneath (else ``exc`` itself)."""
    if isinstance(exc, SocketClosedError):
        return anyio.ClosedResourceError()
    if isinstance(exc, BusyError):
        return anyio.BusyResourceError("receiving")
    if isinstance(exc, NtStatusError):
        return anyio.BrokenResourceError(str(exc))
    name = type(exc).__name__
    if type(exc).__module__.startswith("trio") and name in _TRIO_ERRORS:
        return _TRIO_ERRORS[name](*exc.args)
    return exc


_TRIO_ERRORS: Mapping[str, Callable[..., BaseException]] = {
    "BrokenResourceError": anyio.BrokenResourceError,
    "ClosedResourceError": anyio.ClosedResourceError,
    "BusyResourceError": anyio.BusyResourceError,
}


async def connect(
    host: str,
    port: int,
    *,
    options: Sequence[SocketOption] = (),
    local: tuple[str, int] | None = None,
) -> WskByteStream:
    """Connect to ``host``:``port`` through WSK on the running anyio backend; raises the
    :mod:`pywsk.errors` exception of the failure (an ``OSError``), as the layer does."""
    if _backend() == "trio":
        import pywsk.trio

        stream = await pywsk.trio.open_connection(host, port, options=options, local=local)
        return WskByteStream(stream)
    return WskByteStream(await aio_connect(host, port, options=options, local=local))


async def listen(host: str, port: int, *, options: Sequence[SocketOption] = ()) -> WskByteListener:
    """A WSK listening socket on ``host``:``port`` (0: any free port) on the running anyio
    backend; serve it with :meth:`WskByteListener.serve`."""
    if _backend() == "trio":
        import pywsk.trio

        return WskByteListener(await pywsk.trio.open_listener(host, port, options=options))
    return WskByteListener(await aio_listen(host, port, options=options))


class WskByteStream(anyio.abc.ByteStream):
    """An anyio ``ByteStream`` over a :class:`pywsk.aio.Connection` (asyncio backend) or a
    :class:`pywsk.trio.WskStream` (trio backend)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._aio = isinstance(inner, Connection)
        self._eof_sent = False
        self._closing = False

    def __repr__(self) -> str:
        return f"<pywsk.aio.anyio.WskByteStream {self._inner!r}>"

    @property
    def inner(self) -> Any:
        """The pywsk connection underneath (a ``pywsk.aio.Connection`` or a
        ``pywsk.trio.WskStream``)."""
        return self._inner

    @property
    def disconnected_by(self) -> DisconnectReason | None:
        """How the connection ended, as far as this side saw (first cause), or None."""
        reason: DisconnectReason | None = self._inner.disconnected_by
        return reason

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        inner = self._inner
        return {
            anyio.abc.SocketAttribute.local_address: lambda: inner.local_address,
            anyio.abc.SocketAttribute.remote_address: lambda: inner.remote_address,
            anyio.abc.SocketAttribute.local_port: lambda: inner.local_address[1],
            anyio.abc.SocketAttribute.remote_port: lambda: inner.remote_address[1],
        }

    async def receive(self, max_bytes: int = DEFAULT_RECEIVE_SIZE) -> bytes:
        if self._closing:
            raise anyio.ClosedResourceError
        try:
            data: bytes = await self._inner.receive_some(max_bytes)
        except Exception as exc:
            raise _translate(exc) from exc
        if not data:
            raise anyio.EndOfStream
        return data

    async def send(self, item: bytes) -> None:
        if self._closing or self._eof_sent:
            raise anyio.ClosedResourceError
        try:
            await self._inner.send_all(item)
        except Exception as exc:
            raise _translate(exc) from exc

    async def send_eof(self) -> None:
        """Our FIN, after every send; returns when the peer acknowledged it."""
        if self._closing:
            raise anyio.ClosedResourceError
        self._eof_sent = True
        try:
            await (self._inner.disconnect() if self._aio else self._inner.send_eof())
        except Exception as exc:
            raise _translate(exc) from exc

    async def abort(self) -> None:
        """Reset the connection now (an RST); close it with :meth:`aclose`."""
        try:
            await self._inner.abort()
        except Exception as exc:
            raise _translate(exc) from exc

    async def aclose(self) -> None:
        """Graceful (our FIN, acknowledged), then closed; an RST if the peer has not closed
        its direction, or at once when cancelled or after a failure."""
        if self._closing:
            return
        self._closing = True
        if not self._aio:
            await self._inner.aclose()  # pywsk.trio's aclose is this contract already
            return
        conn: Connection = self._inner
        try:
            # Cancelled already (anyio.aclose_forcefully): no FIN, the close resets now.
            await anyio.lowlevel.checkpoint_if_cancelled()
            if conn.disconnected_by is None:
                await conn.disconnect()
        except NtStatusError:
            pass  # not graceful after all: the close below resets the connection
        finally:
            await conn.aclose()  # cancelled: closes (RST), then the cancel goes on


class WskByteListener(anyio.abc.Listener[WskByteStream]):
    """An anyio ``Listener`` over a WSK listening socket."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._aio = isinstance(inner, Listener)

    def __repr__(self) -> str:
        return f"<pywsk.aio.anyio.WskByteListener {self._inner!r}>"

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        inner = self._inner
        return {
            anyio.abc.SocketAttribute.local_address: lambda: inner.local_address,
            anyio.abc.SocketAttribute.local_port: lambda: inner.local_address[1],
        }

    async def accept(self) -> WskByteStream:
        """The next connection; ``anyio.ClosedResourceError`` once the listener is closed."""
        try:
            return WskByteStream(await self._inner.accept())
        except Exception as exc:
            raise _translate(exc) from exc

    async def serve(
        self,
        handler: Callable[[WskByteStream], Any],
        task_group: anyio.abc.TaskGroup | None = None,
    ) -> None:
        """Accept for ever, each connection to ``handler`` in a task of ``task_group`` (a
        new one by default); the handler owns the stream (close it, ``async with``)."""
        async with AsyncExitStack() as stack:
            if task_group is None:
                task_group = await stack.enter_async_context(anyio.create_task_group())
            while True:
                stream = await self.accept()
                task_group.start_soon(handler, stream)

    async def aclose(self) -> None:
        await self._inner.aclose()
