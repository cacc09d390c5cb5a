"""asyncio Transports and Protocols over pywsk connections: :class:`WskTransport` (opened by
:func:`~pywsk.aio.create_connection` and :func:`~pywsk.aio.create_server`, in
:mod:`pywsk.aio._transport_server`).

What it does: the callback style of asyncio (``loop.create_connection`` /
``loop.create_server``) for code that wants it - or wants its speed: no task, future or
coroutine per operation.  A :class:`WskTransport` is an ``asyncio.Transport`` over one
:class:`~pywsk._native.NativeConnection`; the socket's edges (one edge-triggered
registration, :mod:`pywsk.mechanics.edges`) call the transport, which calls the protocol:
``connection_made``, ``data_received``, ``eof_received``, ``connection_lost``,
``pause_writing`` / ``resume_writing`` (an ``asyncio.BufferedProtocol`` gets
``get_buffer`` / ``buffer_updated`` instead of ``data_received``: the bytes are copied into
its buffer once), and - pywsk's one addition, optional -
``disconnect_complete(exc)``.  The semantics are the same code as every front-end's
(:mod:`pywsk.core`, :mod:`pywsk.mechanics`):

* ``write_eof()`` is the graceful disconnect (WskDisconnect): our FIN after the buffered
  data.  The protocol's ``disconnect_complete(None)`` is called when the peer has
  **acknowledged our FIN** - every byte before it arrived - or ``disconnect_complete(exc)``
  when it failed (the peer's RST first, the transport gave up, an abort).
* ``abort()`` is an RST now (WSK_FLAG_ABORTIVE), with the descriptor kept until the close.
* ``close()`` is asyncio's close made honest: the buffered data is sent, then our FIN, and
  once the FIN is acknowledged the socket is closed as WskCloseSocket does - **with an RST
  if the peer has not disconnected its direction** (its FIN not received).  A close without
  any RST is the graceful path: close in ``eof_received`` (or let it return a false value:
  the transport then closes itself, as asyncio's do).
* ``get_extra_info("disconnected_by")`` (and :attr:`WskTransport.disconnected_by`) says how
  the connection ended, from the durable TCP state: an :class:`~pywsk.core.ending.Ending`.

What it refuses: ``write()`` of anything but a bytes-like object (``TypeError``), and
``write()`` after ``write_eof()`` or ``close()`` (``RuntimeError``: a FIN cannot be taken
back).  A write after the connection was lost sends nothing and says so in a warning, as
asyncio's transports do.

Not thread-safe: use a transport from the event loop that made it.

What always holds: ``connection_lost`` is called exactly once, from the loop (never from
inside a call of the protocol's own), after ``connection_made``; its argument is None when
this side closed or aborted (asyncio's rule) or the connection ended gracefully, else the
:mod:`pywsk.errors` exception of the failure (``ConnectionResetError`` for the peer's RST,
with ``.status``).  ``disconnect_complete`` is called at most once, and only after
``write_eof()`` or ``close()``.  An exception from a protocol callback goes to the loop's
exception handler and aborts the connection (an RST), as asyncio's transports close theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._native import NativeConnection, close_logged, log_abort, log_disconnect
from .._receiving import DEFAULT_RECEIVE_SIZE
from ..core.connection import BROKEN
from ..core.ending import Ending
from ..errors import Failed
from ..mechanics.edges import READ_EVENTS, WRITE_EVENTS

if TYPE_CHECKING:
    from ._transport_server import WskServer

__all__ = ["ProtocolFactory", "WskTransport"]

log = logging.getLogger(__name__)

#: asyncio's default write-buffer limits: pause_writing above HIGH, resume at LOW.
HIGH_WATER = 64 * 1024
LOW_WATER = 16 * 1024

ProtocolFactory = Callable[[], asyncio.BaseProtocol]


_BYTES_LIKE = (bytes, bytearray, memoryview)
#: The edges that say the stream's end (the peer's FIN) or an error is queued.
_END_EVENTS = select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR


class WskTransport(asyncio.Transport):
    """An ``asyncio.Transport`` over one pywsk connection (see the module docstring)."""

    __slots__ = (
        "__weakref__",
        "_buffer",
        "_closing",
        "_conn",
        "_eof",
        "_fin_watch",
        "_high",
        "_loop",
        "_lost",
        "_lost_writes",
        "_low",
        "_paused",
        "_protocol",
        "_reading",
        "_reported",
        "_server",
    )

    def __init__(
        self,
        conn: NativeConnection,
        protocol: asyncio.BaseProtocol,
        loop: asyncio.AbstractEventLoop,
        server: WskServer | None = None,
    ) -> None:
        # (No BaseTransport.__init__: its dict of extras is unused, get_extra_info is ours.)
        self._conn = conn
        self._protocol: Any = protocol
        self._loop = loop
        self._server = server
        self._buffer = bytearray()
        self._high = HIGH_WATER
        self._low = LOW_WATER
        self._paused = False  # pause_writing() called, resume_writing() not yet
        self._reading = True  # not paused, not closing: data is delivered
        self._eof = False  # write_eof() (or close()) asked for our FIN
        self._fin_watch = False  # our FIN issued, its outcome not yet seen
        self._reported = False  # disconnect_complete called (or scheduled)
        self._closing = False  # close() or abort() called (so also once lost)
        self._lost = False  # connection_lost scheduled
        self._lost_writes = 0
        conn.listener = self._on_edge
        if server is not None:
            server._attach(self)

    def __repr__(self) -> str:
        return f"<pywsk.aio.WskTransport {self._conn!r}>"

    # --- asyncio.BaseTransport ------------------------------------------------------------
    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``"socket"``, ``"sockname"``, ``"peername"`` (as asyncio's), and
        ``"disconnected_by"``: how the connection ended (an Ending, or None)."""
        conn = self._conn
        if name == "socket":
            return conn.sock
        if name == "sockname":
            return conn.local
        if name == "peername":
            return conn.remote
        if name == "disconnected_by":
            return conn.ending
        return default

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Send what is buffered, then our FIN; once it is acknowledged close the socket -
        with an RST if the peer's FIN has not come (WskCloseSocket's rule).  Then
        ``connection_lost(None)``.  No more data is received after this call."""
        if self._closing:
            return
        self._closing = True
        self._reading = False
        conn = self._conn
        if conn.machine.state in BROKEN or conn.disconnect_done:
            self._finish()
        elif not self._eof:
            self.write_eof()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        protocol: asyncio.BaseProtocol = self._protocol
        return protocol

    # --- asyncio.ReadTransport ------------------------------------------------------------
    def is_reading(self) -> bool:
        return self._reading

    def pause_reading(self) -> None:
        self._reading = False

    def resume_reading(self) -> None:
        if self._reading or self._closing or self._conn.eof:
            return  # (after the peer's FIN there is nothing more to read: one EOF)
        self._reading = True
        # Edges that came while paused were taken: look once (the next edges do the rest).
        self._loop.call_soon(self._on_edge, READ_EVENTS)

    # --- asyncio.WriteTransport -----------------------------------------------------------
    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = HIGH_WATER if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high, self._low = high, low
        self._check_pause()

    def get_write_buffer_size(self) -> int:
        return len(self._buffer)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._low, self._high

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data``: what the kernel does not take now is buffered and sent as room
        comes (``pause_writing`` above the high-water mark).  Completion is not reported per
        write; ``write_eof()`` and ``disconnect_complete`` prove delivery of everything."""
        if not isinstance(data, _BYTES_LIKE):
            raise TypeError(f"data must be a bytes-like object, not {type(data).__name__}")
        if self._eof:
            raise RuntimeError("write() after write_eof() or close(): our FIN is sent")
        if self._lost or self._conn.machine.state in BROKEN:
            self._lost_writes += 1
            if self._lost_writes == 1:
                log.warning("%r: write() after the connection was lost: nothing sent", self)
            return
        if isinstance(data, memoryview):
            data = data.cast("B")  # its len() counts items: a partial send is cut in bytes
        if not data:
            return
        buffer = self._buffer
        if not buffer:
            try:
                sent = self._conn.send_some(data)
            except Failed as failed:
                self._break(failed)
                return
            if sent == len(data):
                return
            data = memoryview(data)[sent:]
        buffer += data
        self._check_pause()

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        """The graceful disconnect: our FIN once the buffered data is sent; the protocol's
        ``disconnect_complete`` says when the peer acknowledged it (or why it failed).
        Receiving goes on until the peer's FIN.  Idempotent."""
        if self._eof or self._lost:
            return
        self._eof = True
        if not self._buffer:
            self._issue_fin()

    def abort(self) -> None:
        """Reset the connection now (an RST); buffered data is dropped.  Then
        ``connection_lost(None)``."""
        if self._lost:
            return
        self._closing = True
        self._buffer.clear()
        conn = self._conn
        if conn.abort():
            log_abort(log, conn)
        self._finish()

    # --- pywsk's own ----------------------------------------------------------------------
    @property
    def disconnected_by(self) -> Ending | None:
        """How the connection ended (:class:`~pywsk.core.ending.Ending`), or None."""
        return self._conn.ending

    # --- edges ----------------------------------------------------------------------------
    def _on_edge(self, mask: int) -> None:
        conn = self._conn
        try:
            if self._fin_watch and conn.disconnect_done:
                self._fin_outcome()
            if self._lost:
                return
            if conn.machine.state in BROKEN:
                self._break()
                return
            if mask & WRITE_EVENTS and self._buffer:
                self._flush()
            if mask & READ_EVENTS and self._reading:
                self._read(mask)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:  # a protocol callback failed
            self._protocol_failed(exc)

    def _read(self, mask: int = READ_EVENTS) -> None:
        """Deliver what the kernel has.  A short read means its queue was empty, unless the
        edge said the peer's FIN (or an error) is there too: then read on to it.  (One that
        comes later brings an edge of its own.)"""
        conn = self._conn
        while self._reading:
            protocol = self._protocol  # (set_protocol may have changed it)
            buffer = None
            size = DEFAULT_RECEIVE_SIZE
            if isinstance(protocol, asyncio.BufferedProtocol):
                buffer = memoryview(protocol.get_buffer(-1)).cast("B")
                size = buffer.nbytes
                if not size:
                    raise RuntimeError("get_buffer() returned an empty buffer")
            try:
                data = conn.receive_some(size)
            except Failed as failed:
                self._break(failed)
                return
            if data is None:
                return
            if not data:
                self._eof_received()
                return
            if buffer is None:
                protocol.data_received(data)
            else:
                buffer[: len(data)] = data
                protocol.buffer_updated(len(data))
            if len(data) < size and not mask & _END_EVENTS:
                return  # the kernel's queue is empty: new data brings a new edge

    def _eof_received(self) -> None:
        self._reading = False
        keep_open = self._protocol.eof_received()
        if not keep_open:
            self.close()

    def _flush(self) -> None:
        buffer = self._buffer
        try:
            sent = self._conn.send_some(buffer)
        except Failed as failed:
            self._break(failed)
            return
        if sent:
            del buffer[:sent]
            self._check_resume()
        if not buffer and self._eof and not self._fin_watch and not self._conn.disconnect_done:
            self._issue_fin()

    def _check_pause(self) -> None:
        if not self._paused and len(self._buffer) > self._high:
            self._paused = True
            try:  # (called from write(): not from an edge, whose handler guards the rest)
                self._protocol.pause_writing()
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._protocol_failed(exc)

    def _check_resume(self) -> None:
        if self._paused and len(self._buffer) <= self._low:
            self._paused = False
            self._protocol.resume_writing()

    # --- ending ---------------------------------------------------------------------------
    def _issue_fin(self) -> None:
        conn = self._conn
        self._fin_watch = True
        with contextlib.suppress(Failed):  # recorded in conn.disconnect_error
            conn.issue_fin()
        if conn.disconnect_done:
            self._fin_outcome(soon=True)  # inside the caller's write_eof() or close()

    def _fin_outcome(self, soon: bool = False) -> None:
        """Our graceful disconnect completed (FIN acknowledged) or failed: tell the
        protocol, then finish a close that waited for it."""
        self._fin_watch = False
        conn = self._conn
        if log.isEnabledFor(logging.DEBUG):
            log_disconnect(log, conn)
        failed = conn.disconnect_error
        self._report(failed, soon)
        if self._closing:
            # A close that waited for the disconnect: lost with its failure, if any (the
            # buffered data was then not all delivered).
            self._finish(None if failed is None else failed.error())
        elif conn.machine.state in BROKEN:
            self._break()

    def _report(self, failed: Failed | None, soon: bool) -> None:
        """``disconnect_complete``, once: now (from an edge), or from the loop (``soon``:
        inside a call of the protocol's own, which it must not re-enter)."""
        if self._reported:
            return
        self._reported = True
        report = getattr(self._protocol, "disconnect_complete", None)
        if report is None:
            return
        exc = None if failed is None else failed.error()
        if soon:
            self._loop.call_soon(report, exc)
        else:
            report(exc)

    def _break(self, failed: Failed | None = None) -> None:
        """The connection broke (the peer's RST, a failure): report a pending disconnect,
        close, ``connection_lost(exc)``."""
        if self._lost:
            return
        conn = self._conn
        if self._fin_watch and conn.disconnect_done:
            self._fin_outcome()  # reports the disconnect's failure, then comes back here
            return
        if failed is None:
            failed = conn.error("WskReceive")
        self._finish(failed.error())

    def _protocol_failed(self, exc: BaseException) -> None:
        self._loop.call_exception_handler(
            {
                "message": "pywsk.aio: a protocol callback failed; the connection is reset",
                "exception": exc,
                "transport": self,
                "protocol": self._protocol,
            }
        )
        self._conn.abort()
        self._finish(exc if isinstance(exc, Exception) else None)

    def _finish(self, exc: BaseException | None = None) -> None:
        """Close the socket (WskCloseSocket's rule: an RST unless both directions were
        disconnected) and schedule ``connection_lost``, once."""
        if self._lost:
            return
        self._lost = True
        self._closing = True
        self._reading = False
        conn = self._conn
        if self._eof and not self._reported:
            # write_eof() whose FIN never left (the buffer never drained): it failed.
            self._report(conn.disconnect_error or conn.error("WskDisconnect"), soon=True)
        conn.listener = None
        conn.refresh()  # the peer's FIN may be in the kernel's state only
        close_logged(log, conn)
        self._loop.call_soon(self._connection_lost, exc)

    def _connection_lost(self, exc: BaseException | None) -> None:
        try:
            self._protocol.connection_lost(exc)
        finally:
            if self._server is not None:
                self._server._detach(self)
                self._server = None
