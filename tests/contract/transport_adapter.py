"""The disconnect contract's subject for pywsk.aio's Protocols and Transports.

:class:`TransportSubject` drives a :class:`pywsk.aio.WskTransport` the way an asyncio
program does, through a protocol that records what it is told: ``send_all`` is ``write``
then a wait for the buffer to drain (``resume_writing`` with both water marks at 0),
``receive_some`` takes what ``data_received`` gave, ``disconnect`` is ``write_eof`` then a
wait for ``disconnect_complete``, ``abort`` is ``abort()``, and the contract's ``close`` -
the close that does not wait for the peer - is ``abort()`` too: asyncio's ``close()``
flushes first (it may wait for ever behind a peer that never reads; its own tests say so),
and ``abort()`` is WskCloseSocket (an RST unless both directions were disconnected).

A failure the transport reports only through ``connection_lost`` (after our own abort it
passes None, asyncio's rule) is raised as the exception of the state the transport
reports: ``ConnectionAbortedError`` after our RST.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import pywsk.aio
from pywsk.core.ending import Ending
from pywsk.errors import error_from_status
from pywsk.nt.status import NTSTATUS
from pywsk.testing.contract import Subject, plain_listener

from contract_adapters import LoopThread, _options  # isort: skip

Pair = Iterator[tuple[Subject, socket.socket]]


class Recorder(asyncio.Protocol):
    """What the transport told the protocol, and futures to wait for it."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.data = bytearray()
        self.eof = False
        self.lost: asyncio.Future[BaseException | None] = self.loop.create_future()
        self.disconnected: asyncio.Future[BaseException | None] = self.loop.create_future()
        self.drained: asyncio.Future[None] | None = None
        self.changed: asyncio.Future[None] | None = None

    def _wake(self) -> None:
        if self.changed is not None and not self.changed.done():
            self.changed.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.data += data
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return True  # half-open: we may still send

    def pause_writing(self) -> None:
        self.drained = self.loop.create_future()

    def resume_writing(self) -> None:
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)
        self.drained = None

    def disconnect_complete(self, exc: Exception | None) -> None:
        self.disconnected.set_result(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set_result(exc)
        self._wake()


class TransportSubject:
    """Our end through a WskTransport, driven from the test's thread."""

    def __init__(self, loop: LoopThread, transport: pywsk.aio.WskTransport, rec: Recorder):
        self._loop = loop
        self.transport = transport
        self.rec = rec

    @property
    def local_port(self) -> int:
        port: int = self.transport.get_extra_info("sockname")[1]
        return port

    @property
    def disconnected_by(self) -> Ending | None:
        return self.transport.disconnected_by

    def _lost_error(self) -> BaseException:
        exc = self.rec.lost.result()
        if exc is not None:
            return exc
        if self.transport.disconnected_by in (Ending.OUR_RST, Ending.OUR_FIN_THEN_RST):
            return error_from_status(NTSTATUS.STATUS_CONNECTION_ABORTED, "aborted")
        return error_from_status(NTSTATUS.STATUS_INVALID_HANDLE, "closed")

    async def _send_all(self, data: bytes) -> None:
        rec = self.rec
        if rec.lost.done():
            raise self._lost_error()
        self.transport.write(data)
        while self.transport.get_write_buffer_size():
            drained = rec.drained
            assert drained is not None  # high water 0: paused while anything is buffered
            waits: list[asyncio.Future[Any]] = [drained, rec.lost]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if rec.lost.done():
                raise self._lost_error()

    def send_all(self, data: bytes) -> None:
        self._loop.run(self._send_all(data))

    async def _receive_some(self, max_bytes: int) -> bytes:
        rec = self.rec
        while not rec.data and not rec.eof:
            if rec.lost.done():
                raise self._lost_error()
            rec.changed = rec.loop.create_future()
            await rec.changed
        data = bytes(rec.data[:max_bytes])
        del rec.data[:max_bytes]
        return data

    def receive_some(self, max_bytes: int) -> bytes:
        return self._loop.run(self._receive_some(max_bytes))

    async def _disconnect(self) -> None:
        self.transport.write_eof()
        exc = await self.rec.disconnected
        if exc is not None:
            raise exc

    def disconnect(self) -> None:
        self._loop.run(self._disconnect())

    async def _abort(self) -> None:
        self.transport.abort()
        await self.rec.lost

    def abort(self) -> None:
        self._loop.run(self._abort())

    def close(self) -> None:
        self._loop.run(self._abort())


@contextlib.contextmanager
def transport_pair(loop: LoopThread, small: bool) -> Pair:
    async def connect(port: int) -> TransportSubject:
        transport, rec = await pywsk.aio.create_connection(
            Recorder, "127.0.0.1", port, options=_options(small)
        )
        assert isinstance(rec, Recorder)
        transport.set_write_buffer_limits(0, 0)  # resume_writing says: drained
        return TransportSubject(loop, transport, rec)

    with plain_listener(small) as listener:
        subject = loop.run(connect(listener.getsockname()[1]))
        peer, _ = listener.accept()
    with peer:
        try:
            yield subject, peer
        finally:
            subject.close()
