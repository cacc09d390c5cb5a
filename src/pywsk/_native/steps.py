"""Listening sockets and the multi-step sequences of the native front-ends.

What it does: a :class:`NativeListener` is a listening socket in an event loop's edge
poller; accepted connections go to the waiting accepts in the order they came.
:func:`connect_steps` and :func:`listen_steps` (resolve, socket, options, bind, connect or
listen) are written once as generators that yield what they wait for - a :class:`Resolve`
(answered with getaddrinfo's list) or a connection (answered with its next write edge) -
so that each front-end drives them with its own way of waiting.

What it refuses: accepts on a closed listener (STATUS_INVALID_HANDLE); an option, address
or port the kernel refuses (the NTSTATUS :mod:`pywsk.mechanics` maps).  Failures are
:class:`~pywsk.errors.Failed` (status and operation), for the front-end's boundary to turn
into its exception.

What always holds: a sequence that fails or is interrupted (any exception thrown in at a
wait) closes the socket it made before the exception goes on; a connection accepted for a
waiter that was cancelled meanwhile is kept (:attr:`NativeListener.ready`), never lost.
"""

from __future__ import annotations

import errno
import socket
from collections import deque
from collections.abc import Callable, Generator, Sequence
from typing import Any, Final, NamedTuple

from ..core.connection import ConnInput, ConnState
from ..errors import Failed
from ..mechanics import linux
from ..mechanics.edges import LISTEN_EVENTS, EdgePoller
from ..nt.status import NTSTATUS
from .connection import NativeConnection, SocketOption, _closed, _opened

__all__ = ["NativeListener", "Resolve", "connect_steps", "listen_steps", "resolve_steps"]

S = ConnState
ST = NTSTATUS
_FLAGS: Final = socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC

# --------------------------------------------------------------------------------------------
# Listening
# --------------------------------------------------------------------------------------------

#: Accept errors that concern one connection in the backlog only: take the next one.
_ACCEPT_AGAIN: Final = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EINTR})


class NativeListener:
    """A listening socket on the caller's event loop; accepted connections are handed to
    the waiters in the order they came (:attr:`waiters`), or kept (:attr:`ready`)."""

    __slots__ = (
        "__weakref__",
        "_accepted_at",
        "_poller",
        "closed",
        "fd",
        "local",
        "on_connection",
        "on_error",
        "ready",
        "sock",
        "waiters",
    )

    def __init__(self, sock: socket.socket, poller: EdgePoller) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self._poller = poller
        self.local: tuple[Any, ...] = sock.getsockname()
        # A listener on one address accepts there: its connections' local address, known
        # without asking (on a wildcard, each connection is asked when it is wanted).
        wildcard = self.local[0] in ("0.0.0.0", "::")
        self._accepted_at = None if wildcard else self.local
        self.closed = False
        #: Accepts waiting for a connection, first come first served.
        self.waiters: deque[Any] = deque()
        #: Connections accepted for waiters that were cancelled meanwhile.
        self.ready: deque[NativeConnection] = deque()
        #: A front-end that takes every accepted connection itself (a transport server):
        #: called with each, instead of the waiters; ``on_error`` gets an accept's failure.
        self.on_connection: Callable[[NativeConnection], object] | None = None
        self.on_error: Callable[[Failed], object] | None = None
        poller.register(self.fd, self._on_edge, LISTEN_EVENTS)

    def __repr__(self) -> str:
        return f"<TCP listener {self.local}{' closed' if self.closed else ''}>"

    def try_accept(self) -> NativeConnection | None:
        """The next connection in the kernel's backlog, or None."""
        if self.closed:
            raise Failed(ST.STATUS_INVALID_HANDLE, "WskAccept: the listener is closed")
        while True:
            try:
                sock, remote = linux.accept_nonblocking(self.sock)
            except BlockingIOError:
                return None
            except OSError as exc:
                if exc.errno in _ACCEPT_AGAIN:
                    continue
                raise Failed(linux.status_from_errno(exc.errno), "WskAccept") from None
            _opened()
            return NativeConnection(sock, self._poller, remote, S.CONNECTED, self._accepted_at)

    def _on_edge(self, _mask: int) -> None:
        """Hand connections to waiters while both are there (an edge is reported once), or
        every connection in the backlog to :attr:`on_connection`."""
        take = self.on_connection
        if take is not None:
            while not self.closed:
                try:
                    conn = self.try_accept()
                except Failed as failed:
                    if self.on_error is not None:
                        self.on_error(failed)
                    return
                if conn is None:
                    return
                take(conn)
            return
        waiters = self.waiters
        while waiters:
            if waiters[0].done():  # cancelled
                waiters.popleft()
                continue
            try:
                conn = self.try_accept()
            except Failed as failed:
                waiters.popleft().set_exception(failed)
                continue
            if conn is None:
                return
            waiters.popleft().set_result(conn)

    def accept_backlog(self) -> None:
        """Take what the kernel's backlog holds now, as at an edge: for a front-end that
        set :attr:`on_connection` after the edge came, or retries after a shortage."""
        self._on_edge(0)

    def close(self) -> list[NativeConnection]:
        """Close the listening socket; waiters get STATUS_INVALID_HANDLE.  The kept connections
        are returned for the caller to close."""
        if self.closed:
            return []
        self.closed = True
        self._poller.forget(self.fd)
        self.sock.close()
        _closed()
        waiters, self.waiters = self.waiters, deque()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(
                    Failed(ST.STATUS_INVALID_HANDLE, "WskAccept: the listener was closed")
                )
        kept = list(self.ready)
        self.ready.clear()
        return kept


# --------------------------------------------------------------------------------------------
# Multi-step sequences, written once: each yields what it waits for
# --------------------------------------------------------------------------------------------


class Resolve(NamedTuple):
    """A request to the front-end: ``getaddrinfo(host, port, ...)`` on its own terms
    (asyncio: ``loop.getaddrinfo``; trio: ``trio.socket.getaddrinfo``); the answer sent
    back is getaddrinfo's list (or its exception thrown in)."""

    host: str
    port: int
    passive: bool

    @property
    def hints(self) -> dict[str, int]:
        """getaddrinfo's keyword arguments: TCP streams (passive: for a listener)."""
        return {
            "type": socket.SOCK_STREAM,
            "proto": socket.IPPROTO_TCP,
            "flags": socket.AI_PASSIVE if self.passive else 0,
        }


#: A sequence yields a Resolve (answered with getaddrinfo's list) or a connection (answered
#: with the mask of its next write edge).
Steps = Generator["Resolve | NativeConnection", Any, Any]


def _literal(host: str, port: int) -> list[tuple[int, tuple[Any, ...]]] | None:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except (OSError, ValueError):
            continue
        return [(family, (host, port) if family == socket.AF_INET else (host, port, 0, 0))]
    return None


def resolve_steps(
    host: str, port: int, passive: bool = False
) -> Generator[Resolve, Any, list[tuple[int, tuple[Any, ...]]]]:
    """Addresses for ``host``: an IP literal as it is, a name through the front-end's
    resolver (STATUS_NOT_FOUND when it does not resolve, as WskGetAddressInfo)."""
    literal = _literal(host, port)
    if literal is not None:
        return literal
    try:
        infos = yield Resolve(host, port, passive)
    except OSError as exc:
        raise Failed(linux.status_from_resolver(exc), f"resolving {host!r}") from None
    addresses = [
        (family, address)
        for family, _type, _proto, _name, address in infos
        if family in (socket.AF_INET, socket.AF_INET6)
    ]
    if not addresses:
        raise Failed(ST.STATUS_NOT_FOUND, f"no address for {host!r}")
    return addresses


def _new_socket(family: int, options: Sequence[SocketOption]) -> socket.socket:
    try:
        sock = socket.socket(family, _FLAGS)
    except OSError as exc:
        raise Failed(linux.status_from_errno(exc.errno), "WskSocket") from None
    _opened()
    try:
        if family == socket.AF_INET6:
            # Windows makes IPv6 sockets IPv6-only unless IPV6_V6ONLY is cleared.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        for level, option, value in options:
            status = linux.set_wsk_option(sock, level, option, value)
            if status != ST.STATUS_SUCCESS:
                raise Failed(status, "WskControlSocket")
    except BaseException:
        _close(sock)
        raise
    return sock


def _close(sock: socket.socket) -> None:
    sock.close()
    _closed()


def _bind(sock: socket.socket, address: tuple[Any, ...], what: str) -> None:
    try:
        sock.bind(address)
    except OSError as exc:
        raise Failed(linux.status_from_errno(exc.errno), what) from None


def connect_steps(
    poller: EdgePoller,
    host: str,
    port: int,
    options: Sequence[SocketOption] = (),
    local: tuple[str, int] | None = None,
) -> Steps:
    """Resolve, then socket, options, bind (with ``local``), connect - each address in turn;
    the connection, or the last failure.  A cancellation (any exception) thrown in at a wait
    closes the socket before it propagates."""
    addresses = yield from resolve_steps(host, port)
    last: Failed | None = None
    for family, remote in addresses:
        try:
            return (yield from _connect_one(poller, family, remote, options, local))
        except Failed as failed:
            last = failed
    assert last is not None
    raise last


def _connect_one(
    poller: EdgePoller,
    family: int,
    remote: tuple[Any, ...],
    options: Sequence[SocketOption],
    local: tuple[str, int] | None,
) -> Steps:
    sock = _new_socket(family, options)
    conn: NativeConnection | None = None
    try:
        if local is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if not local[1]:
                sock.setsockopt(socket.IPPROTO_IP, linux.IP_BIND_ADDRESS_NO_PORT, 1)
            _bind(sock, local, "WskBind")
        err = sock.connect_ex(remote)
        conn = NativeConnection(sock, poller, remote, S.CONNECTING)
        if err == errno.EINPROGRESS:
            outcome = None
            while outcome is None:
                mask = yield conn
                outcome = linux.connect_outcome(sock, mask)
            err = outcome
        if err in linux.RESET_ERRNOS:
            # The handshake succeeded; the peer reset the connection before its edge was
            # seen.  The data that came first is delivered, then the reset.
            conn._reset_read = True
        elif err:
            raise Failed(linux.status_from_errno(err), "WskConnect")
        conn.machine.process(ConnInput.CONNECT_SUCCEEDED)
        return conn
    except BaseException:
        if conn is not None:
            conn.machine.process(ConnInput.CONNECT_FAILED)
            conn.close()
        else:
            _close(sock)
        raise


def listen_steps(
    poller: EdgePoller, host: str, port: int, options: Sequence[SocketOption] = ()
) -> Generator[Resolve, Any, NativeListener]:
    """Resolve ``host`` (its first address), socket, SO_REUSEADDR, options, bind, listen."""
    addresses = yield from resolve_steps(host, port, passive=True)
    family, here = addresses[0]
    sock = _new_socket(family, options)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        _bind(sock, here, "WskBind")
        try:
            sock.listen(socket.SOMAXCONN)
        except OSError as exc:
            raise Failed(linux.status_from_errno(exc.errno), "WskBind") from None
        return NativeListener(sock, poller)
    except BaseException:
        _close(sock)
        raise
