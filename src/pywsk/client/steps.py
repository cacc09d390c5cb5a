"""Multi-call sequences of the client runtime, written once: generators of calls.

What it does: :func:`connect_steps` (WskGetAddressInfo unless ``host`` is an IP literal,
then for each address in turn WskSocket, the socket options, WskBind, WskConnect,
WskGetLocalAddress, until one connects) and :func:`listen_steps` (the same with
WskSocket(WSK_FLAG_LISTEN_SOCKET) and a WskBind that listens) issue each call on the
caller's thread through a :class:`~pywsk.client.Client` and *yield* it when it has not
completed yet; whoever drives the generator waits its own way
(:func:`pywsk.client.blocking.drive` waits on a KEVENT with a deadline) and may throw an
exception in (a timeout), which closes the socket in hand before it propagates.

What it refuses: to guess - a failed call raises :class:`~pywsk.client.ClientError` with
its status; a name with no TCP address raises it with STATUS_NOT_FOUND.  Only a
ClientError moves on to the next address; anything thrown in ends the sequence.

What always holds: a socket the sequence opened is adopted by the client at once and
closed (WskCloseSocket, yielded) if the sequence does not return it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Generator, Sequence
from typing import Any

from ..nt import STATUS_NOT_FOUND
from ..wsk import (
    AF_INET,
    AF_INET6,
    SOCKADDR_STORAGE,
    WSK_FLAG_CONNECTION_SOCKET,
    WSK_FLAG_LISTEN_SOCKET,
    WSK_SOCKET,
    sockaddr_from_tuple,
)
from .base import ClientError
from .call import Call
from .runtime import Client

__all__ = ["SocketOption", "Steps", "checked", "connect_steps", "listen_steps", "resolve_steps"]

#: A socket option set before bind/connect: (level, option, value), with wsk.h constants.
SocketOption = tuple[int, int, int]
#: A sequence of calls: yields each call not completed yet; returns what it made.
Steps = Generator[Call, None, Any]


def checked(call: Call) -> Generator[Call, None, Call]:
    """Wait for ``call`` (yield it unless over); raise ClientError (the status in
    ``.status``) unless it succeeded."""
    if not call.done:
        yield call
    if not call.succeeded:
        raise ClientError(f"{call.name} failed", call.status)
    return call


def resolve_steps(c: Client, host: str, port: int) -> Generator[Call, None, list[tuple[Any, ...]]]:
    """An IP literal as it is; a name through WskGetAddressInfo (every TCP address)."""
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    else:
        return [sockaddr_from_tuple((host, port)).to_tuple()]
    call = yield from checked(c.resolve_call(host, port))
    addresses = c.addresses(call)
    if not addresses:
        raise ClientError(f"no address for {host!r}", STATUS_NOT_FOUND)
    return addresses


def _new_socket(
    c: Client, address: tuple[Any, ...], flags: int
) -> Generator[Call, None, WSK_SOCKET]:
    """WskSocket of ``address``'s family, adopted by the client."""
    family = AF_INET6 if ":" in str(address[0]) else AF_INET
    call = yield from checked(c.socket_call(family, flags))
    sock: WSK_SOCKET = call.information
    c.adopt(sock)
    return sock


def _open(
    c: Client,
    address: tuple[Any, ...],
    flags: int,
    options: Sequence[SocketOption],
    here: tuple[Any, ...],
    remote: tuple[Any, ...] | None,
) -> Generator[Call, None, tuple[WSK_SOCKET, tuple[Any, ...]]]:
    """WskSocket, options, WskBind, WskConnect (to ``remote``, if given),
    WskGetLocalAddress; the socket is closed if any fails or something is thrown in."""
    sock = yield from _new_socket(c, address, flags)
    try:
        for level, option, value in options:
            yield from checked(c.option_call(sock, level, option, value))
        yield from checked(c.bind_call(sock, here))
        if remote is not None:
            yield from checked(c.connect_call(sock, remote))
        call = yield from checked(c.address_call(sock, "WskGetLocalAddress"))
    except GeneratorExit:
        raise
    except BaseException:
        close = c.close_socket_call(sock)
        if not close.done:
            yield close
        raise
    out: SOCKADDR_STORAGE = call.out
    return sock, out.to_tuple()


def connect_steps(
    c: Client,
    host: str,
    port: int,
    options: Sequence[SocketOption] = (),
    local: tuple[Any, ...] | None = None,
) -> Generator[Call, None, tuple[WSK_SOCKET, tuple[Any, ...], tuple[Any, ...]]]:
    """A connected socket to ``host``:``port``, with its local and remote addresses: each
    address of ``host`` in turn until one connects (else the last ClientError)."""
    remotes = yield from resolve_steps(c, host, port)
    last: ClientError | None = None
    for remote in remotes:
        wildcard = ("::", 0) if ":" in str(remote[0]) else ("0.0.0.0", 0)
        try:
            sock, mine = yield from _open(
                c, remote, WSK_FLAG_CONNECTION_SOCKET, options, local or wildcard, remote
            )
        except ClientError as exc:
            last = exc
            continue
        return sock, mine, remote
    assert last is not None
    raise last


def listen_steps(
    c: Client, host: str, port: int, options: Sequence[SocketOption] = ()
) -> Generator[Call, None, tuple[WSK_SOCKET, tuple[Any, ...]]]:
    """A listening socket on the first address of ``host``:``port``, and its address."""
    addresses = yield from resolve_steps(c, host, port)
    here = addresses[0]
    return (yield from _open(c, here, WSK_FLAG_LISTEN_SOCKET, options, here, None))
