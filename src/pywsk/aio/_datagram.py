"""UDP for asyncio: an awaitable datagram endpoint, native on the caller's loop.

What it does: :func:`open_datagram` binds one UDP socket and gives a
:class:`DatagramEndpoint`::

    async with await pywsk.aio.open_datagram(local=("127.0.0.1", 0)) as ep:
        await ep.send_to(b"ping", ("127.0.0.1", 9999))
        data, address = await ep.receive_from()
        await ep.send_many([b"a", b"b", b"c"], address)   # one sendmmsg
        batch = await ep.receive_many()                   # one recvmmsg: [(data, address)]

The endpoint lives on the loop that opened it: readiness through the loop's own
``add_reader`` / ``add_writer`` (registered only while a task waits), the calls made at
once when the kernel can take them - no provider thread, no IRP per datagram.  Batches are
``sendmmsg`` / ``recvmmsg`` (:mod:`pywsk.mechanics.datagram`, the recipes the faithful
provider uses too), so its semantics are the provider's:

* an ICMP port unreachable for an earlier datagram is reported once, to the next receive,
  as :class:`pywsk.errors.WskConnectionRefusedError` with ``status`` STATUS_PORT_UNREACHABLE
  (Linux reports it to whichever call comes next; a send that meets it keeps it for a
  receive and sends again);
* a datagram longer than ``receive_from(size)`` raises an :class:`pywsk.errors.NtStatusError`
  with STATUS_BUFFER_OVERFLOW whose ``partial`` and ``address`` hold what fitted and the
  sender (Windows completes such a receive with STATUS_BUFFER_OVERFLOW and MSG_TRUNC);
* a send larger than the largest UDP payload raises STATUS_INVALID_BUFFER_SIZE.

Why this shape and not ``create_datagram_endpoint``: see ``docs/layers.md`` ("Datagrams").

What it refuses: an address of the other family, a send without an address on an endpoint
without ``remote`` (STATUS_INVALID_PARAMETER, an ``OSError``); ``TypeError`` for data that
is not bytes-like; every call after :meth:`~DatagramEndpoint.aclose`
(:class:`pywsk.errors.SocketClosedError`).  Addresses are numeric: a host name would be
resolved by the socket module, blocking the loop, so resolve names first
(``loop.getaddrinfo``).

What always holds: every failure is a :mod:`pywsk.errors` exception with its NTSTATUS;
cancelling a wait has no effect on the socket (nothing is consumed or sent by a cancelled
call); datagrams are returned in the order the kernel queued them; a receive pending at
``aclose()`` raises :class:`pywsk.errors.RequestCancelledError` (STATUS_CANCELLED), as the
provider completes it.
"""

from __future__ import annotations

import asyncio
import collections
import socket
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Final

from ..errors import NtStatusError, error_from_status
from ..mechanics import datagram as udp
from ..nt.status import NTSTATUS

__all__ = ["DatagramEndpoint", "open_datagram"]

Address = tuple[Any, ...]

#: Datagrams read per recvmmsg at most.
BATCH: Final = 32
#: Senders whose address tuple is remembered (a raw sockaddr -> tuple cache).
_SENDERS: Final = 256


async def open_datagram(
    local: Address | None = None,
    remote: Address | None = None,
    *,
    family: int | None = None,
    broadcast: bool = False,
) -> DatagramEndpoint:
    """Bind a UDP socket to ``local`` (default: the wildcard address of ``family``, or of
    ``remote``'s family, port chosen by the system); with ``remote``, it is the endpoint's
    fixed peer: sends without an address go there and only its datagrams are received."""
    loop = asyncio.get_running_loop()
    if family is None:
        hint = local or remote
        family = _family_of(hint[0]) if hint is not None else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        if broadcast:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        udp.enable_error_queue(sock)
        _checked(family, local)
        sock.bind(local or (("::" if family == socket.AF_INET6 else "0.0.0.0"), 0))
        if remote is not None:
            _checked(family, remote)
            sock.connect(remote)  # the kernel filters other senders
    except OSError as exc:
        sock.close()
        if isinstance(exc, NtStatusError):
            raise
        raise error_from_status(udp.receive_status(exc.errno), str(exc)) from exc
    return DatagramEndpoint(loop, sock, remote)


def _family_of(host: Any) -> int:
    return socket.AF_INET6 if ":" in str(host) else socket.AF_INET


def _checked(family: int, address: Address | None) -> None:
    if address is not None and _family_of(address[0]) != family:
        raise error_from_status(
            NTSTATUS.STATUS_INVALID_PARAMETER, f"{address!r} is not of the socket's family"
        )


class DatagramEndpoint:
    """One bound UDP socket on one asyncio loop (see the module's documentation)."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, sock: socket.socket, remote: Address | None
    ) -> None:
        self._loop = loop
        self._sock = sock
        self._remote = sock.getpeername() if remote is not None else None
        self._reader = udp.BatchReader(BATCH)
        self._queue: collections.deque[tuple[bytes, bytes]] = collections.deque()
        self._senders: dict[bytes, Address] = {}
        self._unreachable = False
        self._closed = False
        self._readers: list[asyncio.Future[None]] = []
        self._writers: list[asyncio.Future[None]] = []

    # --- addresses ----------------------------------------------------------------------------
    @property
    def local_address(self) -> Address:
        """The bound address (host, port[, flowinfo, scope_id])."""
        self._check_open()
        address: Address = self._sock.getsockname()
        return address

    @property
    def remote_address(self) -> Address | None:
        """The fixed peer given to :func:`open_datagram`, or None."""
        return self._remote

    @property
    def closed(self) -> bool:
        return self._closed

    # --- sending ------------------------------------------------------------------------------
    async def send_to(self, data: Any, address: Address | None = None) -> None:
        """Send one datagram to ``address`` (or the fixed peer)."""
        await self.send_many([data], address)

    async def send_many(self, datagrams: Iterable[Any], address: Address | None = None) -> None:
        """Send datagrams to ``address`` (or the fixed peer), in order, in as few
        ``sendmmsg`` calls as the kernel's buffer allows; returns when all are sent."""
        self._check_open()
        pieces = [[_bytes(d)] for d in datagrams]
        if address is None:
            if self._remote is None:
                raise error_from_status(NTSTATUS.STATUS_INVALID_PARAMETER, "no address")
            target: Address = self._remote
        else:
            _checked(self._sock.family, address)
            target = address
        plan = udp.batch_plan(pieces, target, self._sock.family, [])
        index, retried = 0, False
        while index < len(pieces):
            index, _sent, err = udp.send_some(self._sock, pieces, index, target, [], plan)
            if index == len(pieces):
                return
            if not err:
                await self._wait(self._writers, self._loop.add_writer)
            elif err in udp.ICMP_ERRNOS and not retried:
                udp.drain_errors(self._sock)  # an earlier datagram's: for the next receive
                self._unreachable = retried = True
            else:
                raise error_from_status(udp.send_status(err), "send")

    # --- receiving ----------------------------------------------------------------------------
    async def receive_from(self, size: int = udp.MAX_DATAGRAM) -> tuple[bytes, Address]:
        """The next datagram and its sender.  One longer than ``size`` raises
        STATUS_BUFFER_OVERFLOW (``partial``: its first ``size`` bytes; ``address``)."""
        if size <= 0:
            raise ValueError("size must be positive")
        await self._fill()
        data, raw = self._queue.popleft()
        address = self._sender(raw)
        if len(data) > size:
            error = error_from_status(
                NTSTATUS.STATUS_BUFFER_OVERFLOW, f"a {len(data)}-byte datagram, {size} wanted"
            )
            error.partial = data[:size]  # type: ignore[attr-defined]
            error.address = address  # type: ignore[attr-defined]
            raise error
        return data, address

    async def receive_many(self, max_count: int = BATCH) -> list[tuple[bytes, Address]]:
        """The datagrams queued now, at least one (waiting for it), at most ``max_count``."""
        if max_count <= 0:
            raise ValueError("max_count must be positive")
        await self._fill()
        queue = self._queue
        out: list[tuple[bytes, Address]] = []
        while queue and len(out) < max_count:
            data, raw = queue.popleft()
            out.append((data, self._sender(raw)))
        return out

    async def _fill(self) -> None:
        """Until the queue holds a datagram: read a batch, or wait for readability."""
        self._check_open()
        while not self._queue:
            if self._unreachable:
                self._unreachable = False
                raise error_from_status(NTSTATUS.STATUS_PORT_UNREACHABLE, "receive")
            try:
                got = self._reader.read(self._sock)
            except OSError as exc:
                if exc.errno in udp.ICMP_ERRNOS:
                    udp.drain_errors(self._sock)
                raise error_from_status(udp.receive_status(exc.errno), "receive") from None
            if got:
                self._queue.extend((bytes(data), raw) for data, raw, _anc, _flags in got)
                return
            await self._wait(self._readers, self._loop.add_reader)

    def _sender(self, raw: bytes) -> Address:
        address = self._senders.get(raw)
        if address is None:
            if len(self._senders) >= _SENDERS:
                self._senders.clear()
            address = self._senders[raw] = udp.address_from_raw(raw)
        return address

    # --- waiting ------------------------------------------------------------------------------
    async def _wait(self, waiters: list[asyncio.Future[None]], add: Any) -> None:
        """Wait for readiness (the loop's reader or writer, registered while anyone waits)."""
        future: asyncio.Future[None] = self._loop.create_future()
        if not waiters:
            add(self._sock.fileno(), self._ready, waiters)
        waiters.append(future)
        try:
            await future
        finally:
            if future in waiters:
                waiters.remove(future)
                if not waiters and not self._closed:
                    self._stop_watching(waiters)
        self._check_open()

    def _ready(self, waiters: list[asyncio.Future[None]]) -> None:
        self._stop_watching(waiters)
        woken = list(waiters)
        waiters.clear()
        for future in woken:
            if not future.done():
                future.set_result(None)

    def _stop_watching(self, waiters: list[asyncio.Future[None]]) -> None:
        if waiters is self._readers:
            self._loop.remove_reader(self._sock.fileno())
        else:
            self._loop.remove_writer(self._sock.fileno())

    # --- closing ------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise error_from_status(NTSTATUS.STATUS_INVALID_HANDLE, "the endpoint is closed")

    async def aclose(self) -> None:
        """Close the socket; a receive or send waiting now raises STATUS_CANCELLED."""
        if self._closed:
            return
        fd = self._sock.fileno()
        self._loop.remove_reader(fd)
        self._loop.remove_writer(fd)
        self._closed = True
        for future in [*self._readers, *self._writers]:
            if not future.done():
                future.set_exception(
                    error_from_status(NTSTATUS.STATUS_CANCELLED, "the endpoint was closed")
                )
        self._readers.clear()
        self._writers.clear()
        self._queue.clear()
        self._sock.close()

    async def __aenter__(self) -> DatagramEndpoint:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        where = "closed" if self._closed else repr(self._sock.getsockname())
        return f"<pywsk.aio.DatagramEndpoint {where}>"


def _bytes(data: Any) -> Any:
    """A datagram as sendmmsg can carry it without a copy (bytes), else a view."""
    if type(data) is bytes:
        return data
    try:
        view = memoryview(data)
    except TypeError:
        raise TypeError(f"a datagram is bytes-like, not {type(data).__name__}") from None
    return view.cast("B") if view.ndim == 1 and view.c_contiguous else bytes(view)
