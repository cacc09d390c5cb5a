"""Address sharing on bind: Windows' "Sharing transport addresses" table over Linux.

What it does: every pywsk socket category binds through :func:`bind_with_sharing` (and
:func:`listen_with_sharing` for a listener's ``listen()``); :func:`register_binding`,
:func:`register_binding_later` and :func:`release_binding` keep the process-wide registry
of the addresses pywsk sockets hold; :func:`check_address_sharing` is the table's verdict;
:func:`sharing_option` answers SO_REUSEADDR / SO_EXCLUSIVEADDRUSE through
WskControlSocket.  Spec section 9.2.

The mapping onto Linux.  Windows decides a bind by the table of "Sharing transport
addresses" (both sockets' SO_REUSEADDR / SO_EXCLUSIVEADDRUSE, and whether each address is
the wildcard W or a specific address S); Linux' SO_REUSEADDR means something else
(TIME_WAIT reuse; no sharing with a listener).  So:

* the Windows options are kept on the pywsk socket (:class:`SharingOptions`), never
  passed to Linux;
* a process-wide registry holds every binding a pywsk socket made (family, addresses,
  port, options, IPV6_V6ONLY); a bind with an explicit port is checked against it with
  :data:`SHARING_TABLE` first: INUSE gives :data:`ADDRESS_IN_USE_STATUS`, DENIED gives
  STATUS_ACCESS_DENIED, CHECK is treated as DENIED (see below);
* every pywsk Linux socket gets ``SO_REUSEADDR`` before ``bind()``: Linux then lets two
  sockets on overlapping addresses coexist while the one already there does not listen
  (and reuses TIME_WAIT leftovers), never two listeners;
* ``SO_REUSEPORT`` - with which any socket of the same user, in any process, may bind and
  listen on the address as well and take a share of its connections - is set only on a
  socket that opted into sharing (Windows SO_REUSEADDR).  Two listeners on overlapping
  addresses both need it.  The table gives SUCCESS with one side that did not opt in only
  to a wildcard bind after a specific one; when the specific one already listens, pywsk sets
  ``SO_REUSEPORT`` on both for that ``bind()`` and ``listen()`` (:func:`listen_with_sharing`)
  and then gives each its own value back.  So each SUCCESS of the table really succeeds,
  the registry alone decides among pywsk sockets, and another program cannot listen on
  the address of a socket that did not opt in.  Two pywsk listeners on the same address
  and port (both opted in) form a Linux reuseport group, which splits incoming
  connections between them - as Windows leaves it undetermined which of two sharing
  listeners gets a connection;
* a conflict with a socket pywsk did not make is whatever Linux says: EADDRINUSE gives
  :data:`ADDRESS_IN_USE_STATUS` as well.

Fidelity choices (what Windows does -> our choice -> why):

* A bind conflict is STATUS_ADDRESS_ALREADY_EXISTS in the sharing table's page, but
  Windows was observed returning STATUS_ADDRESS_ALREADY_ASSOCIATED (spec Q16) -> INUSE is
  :data:`ADDRESS_IN_USE_STATUS` = STATUS_ADDRESS_ALREADY_ASSOCIATED -> observed behaviour
  wins over the table's wording; change the constant to follow the page.
* Windows applies the table to the sockets of every process -> another program's socket
  is judged by Linux: it cannot bind on an address overlapping a pywsk listener that did
  not opt in (not even the wildcard after a specific address, which Windows allows), and
  shares with one that did if it sets SO_REUSEPORT; next to a bound pywsk connection
  socket, which does not listen, a socket with Linux SO_REUSEADDR may bind and listen
  (it takes no connection from pywsk) -> Linux has no flag for "the wildcard may join,
  the same address may not".  After a lent ``SO_REUSEPORT`` (see above), Linux's
  per-port cache lets any SO_REUSEPORT socket of the same user bind that port until a
  socket without it binds there or the port's sockets are closed (docs/fidelity.md,
  "How the sharing table maps onto Linux").
* CHECK compares the second socket's security context with the first socket's security
  descriptor -> always DENIED -> pywsk has no SO_WSK_SECURITY, so every socket has the
  default descriptor, which refuses sharing.
* A dual-stack IPv6 wildcard binding also holds the IPv4 wildcard in the registry; a
  v4-mapped IPv6 address is its IPv4 address.

What it refuses: a bind the table does not allow (:data:`ADDRESS_IN_USE_STATUS` or
STATUS_ACCESS_DENIED, and Linux is never asked); SO_REUSEADDR or SO_EXCLUSIVEADDRUSE set
after bind (STATUS_INVALID_DEVICE_STATE, WSK's wrong-state code), or one set while the
other is on (STATUS_INVALID_PARAMETER; Winsock refuses that combination with WSAEINVAL),
or an unreadable input buffer (STATUS_INVALID_PARAMETER).

What always holds: the check, the ``bind()`` and the record of a bind are one step under
``_registry_lock`` (binds happen on the callers' threads), so two binds never both pass
the table against each other; an address is held from its bind until
:func:`release_binding` (the socket's close); a ``SO_REUSEPORT`` lent for a ``bind()`` or
``listen()`` is given back when that call returns; this module never calls client code.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import functools
import ipaddress
import itertools
import socket
import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from ..mechanics import linux
from ..nt.status import NTSTATUS
from ..wsk.constants import (
    AF_INET,
    AF_INET6,
    SO_EXCLUSIVEADDRUSE,
    SO_REUSEADDR,
    SOL_SOCKET,
    WskGetOption,
    WskSetOption,
)
from .base import read_in, write_out

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = [
    "ADDRESS_IN_USE_STATUS",
    "SHARING_TABLE",
    "Outcome",
    "Share",
    "SharingOptions",
    "bind_with_sharing",
    "check_address_sharing",
    "listen_with_sharing",
    "register_binding",
    "register_binding_later",
    "release_binding",
    "sharing_option",
]

#: What an INUSE bind conflict returns (spec Q16: observed on Windows; the sharing page
#: says STATUS_ADDRESS_ALREADY_EXISTS).  Linux' EADDRINUSE gives the same.
ADDRESS_IN_USE_STATUS: Final[int] = NTSTATUS.STATUS_ADDRESS_ALREADY_ASSOCIATED


class Share(enum.Enum):
    """The sharing option a socket had when it bound."""

    NONE = "none"
    REUSE = "SO_REUSEADDR"
    EXCLUSIVE = "SO_EXCLUSIVEADDRUSE"


class Outcome(enum.Enum):
    """A cell of the sharing table."""

    SUCCESS = "SUCCESS"
    INUSE = "INUSE"
    DENIED = "DENIED"
    CHECK = "CHECK"


def _table() -> dict[tuple[Share, bool], dict[tuple[Share, bool], Outcome]]:
    S, I, D, C = Outcome.SUCCESS, Outcome.INUSE, Outcome.DENIED, Outcome.CHECK  # noqa: E741
    N, R, X = Share.NONE, Share.REUSE, Share.EXCLUSIVE
    # Columns: the first bind, as (option, wildcard?).  Rows: the second bind.
    columns = [(N, True), (N, False), (R, True), (R, False), (X, True), (X, False)]
    rows = {
        (N, True): [I, S, I, S, I, S],
        (N, False): [C, I, C, D, D, I],
        (R, True): [D, S, S, S, D, S],
        (R, False): [C, D, S, S, D, D],
        (X, True): [I, I, I, I, I, I],
        (X, False): [C, I, C, I, D, I],
    }
    return {row: dict(zip(columns, cells, strict=True)) for row, cells in rows.items()}


#: ``SHARING_TABLE[(second option, second is wildcard)][(first option, first is wildcard)]``,
#: the table of Microsoft's "Sharing transport addresses" as the spec (section 9.2) gives it.
SHARING_TABLE: Final = _table()

_OUTCOME_STATUS: Final[dict[Outcome, int]] = {
    Outcome.SUCCESS: NTSTATUS.STATUS_SUCCESS,
    Outcome.INUSE: ADDRESS_IN_USE_STATUS,
    Outcome.DENIED: NTSTATUS.STATUS_ACCESS_DENIED,
    # Default security descriptors forbid sharing: CHECK is refused.
    Outcome.CHECK: NTSTATUS.STATUS_ACCESS_DENIED,
}


@dataclass
class SharingOptions:
    """The Windows sharing options of one socket (kept by pywsk, not given to Linux)."""

    reuse_address: bool = False  # SO_REUSEADDR
    exclusive: bool = False  # SO_EXCLUSIVEADDRUSE

    @property
    def share(self) -> Share:
        if self.exclusive:
            return Share.EXCLUSIVE
        return Share.REUSE if self.reuse_address else Share.NONE


@dataclass(frozen=True)
class _Binding:
    """One address a pywsk socket holds: (IP version, host) entries on one port."""

    entries: frozenset[tuple[int, str]]
    port: int
    share: Share


#: Every binding a pywsk socket holds, by socket.  Binds happen on the callers' threads:
#: the check, the ``bind()`` and the record are one step under ``_registry_lock``.
_bindings: weakref.WeakKeyDictionary[object, _Binding] = weakref.WeakKeyDictionary()
#: Bindings whose address connect() picked and nobody has asked for yet: (family, v6only,
#: share, how to read the address).  Read (one getsockname) only when another bind needs it.
_unresolved: weakref.WeakKeyDictionary[
    object, tuple[int, bool, Share, Callable[[], tuple[Any, ...]]]
] = weakref.WeakKeyDictionary()
_registry_lock = threading.RLock()
#: Owners of those bindings: their Linux sockets get SO_REUSEADDR only when another bind on
#: their port needs it (Linux wants it on both sockets).
_reuse_on_demand: weakref.WeakSet[object] = weakref.WeakSet()


def _resolve_ports() -> None:
    """Learn the ports connect() picked, for the bindings registered without one."""
    for owner, (family, v6only, share, address_of) in list(_unresolved.items()):
        del _unresolved[owner]
        try:
            bound = address_of()
        except OSError:  # closed meanwhile
            continue
        _bindings[owner] = _Binding(_entries(family, str(bound[0]), v6only), int(bound[1]), share)


@functools.lru_cache(maxsize=1024)
def _entries(family: int, host: str, v6only: bool) -> frozenset[tuple[int, str]]:
    """The (IP version, host) pairs an address occupies: a dual-stack IPv6 wildcard also
    holds the IPv4 wildcard, a v4-mapped IPv6 address is that IPv4 address."""
    host = host.split("%", 1)[0]
    if family == AF_INET:
        return frozenset({(4, str(ipaddress.IPv4Address(host)))})
    address = ipaddress.IPv6Address(host)
    if address.ipv4_mapped is not None:
        return frozenset({(4, str(address.ipv4_mapped))})
    entries = {(6, str(address))}
    if address.is_unspecified and not v6only:
        entries.add((4, "0.0.0.0"))
    return frozenset(entries)


def _is_wildcard(entry: tuple[int, str]) -> bool:
    return entry[1] in ("0.0.0.0", "::")


def _v6only(sock: socket.socket, family: int) -> bool:
    if family != AF_INET6:
        return False
    return bool(sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY))


def check_address_sharing(
    family: int, address: tuple[Any, ...], options: SharingOptions, v6only: bool = True
) -> int:
    """The status the sharing table gives a bind of ``address`` (a Python socket tuple;
    ``family`` in Windows numbering) against every binding pywsk sockets hold: STATUS_SUCCESS,
    :data:`ADDRESS_IN_USE_STATUS` or STATUS_ACCESS_DENIED.  Port 0 never conflicts (the
    kernel picks a free port).  The first conflicting binding, in bind order, decides."""
    port = int(address[1])
    if port == 0:
        return NTSTATUS.STATUS_SUCCESS
    new = _entries(family, str(address[0]), v6only)
    second = options.share
    with _registry_lock:
        _resolve_ports()
        held_now = list(_bindings.values())
    for held in held_now:
        if held.port != port:
            continue
        for mine_w, theirs_w in _overlaps(new, held.entries):
            outcome = SHARING_TABLE[(second, mine_w)][(held.share, theirs_w)]
            if outcome is not Outcome.SUCCESS:
                return _OUTCOME_STATUS[outcome]
    return NTSTATUS.STATUS_SUCCESS


def _overlaps(
    mine: frozenset[tuple[int, str]], theirs: frozenset[tuple[int, str]]
) -> Iterator[tuple[bool, bool]]:
    """(mine is wildcard, theirs is wildcard) for each pair of entries that overlap: the
    same IP version, and the same address or a wildcard on either side (two different
    specific addresses never conflict)."""
    for one, other in itertools.product(mine, theirs):
        if one[0] != other[0]:
            continue
        one_w, other_w = _is_wildcard(one), _is_wildcard(other)
        if one_w or other_w or one[1] == other[1]:
            yield one_w, other_w


def register_binding(
    owner: object, family: int, bound: tuple[Any, ...], options: SharingOptions, v6only: bool
) -> None:
    """Record that ``owner`` (a pywsk socket) now holds ``bound`` (its getsockname())."""
    binding = _Binding(_entries(family, str(bound[0]), v6only), int(bound[1]), options.share)
    with _registry_lock:
        _bindings[owner] = binding


def register_binding_later(
    owner: object,
    family: int,
    options: SharingOptions,
    v6only: bool,
    address_of: Callable[[], tuple[Any, ...]],
) -> None:
    """Record that ``owner`` holds the address connect() picked, which ``address_of()``
    (its getsockname()) reads - only when another bind needs it, not once per connection."""
    with _registry_lock:
        _unresolved[owner] = (family, v6only, options.share, address_of)
        _reuse_on_demand.add(owner)


def release_binding(owner: object) -> None:
    """``owner`` no longer holds its address (call when the socket is closed)."""
    with _registry_lock:
        _bindings.pop(owner, None)
        _unresolved.pop(owner, None)
        _reuse_on_demand.discard(owner)


def bind_with_sharing(
    owner: object,
    sock: socket.socket,
    family: int,
    address: tuple[Any, ...],
    options: SharingOptions,
) -> int:
    """Bind ``sock`` to ``address`` as Windows would: the sharing table first, then Linux
    ``bind()``, then record the binding.  Returns the NTSTATUS of the bind.

    Linux options: ``SO_REUSEADDR`` always; ``SO_REUSEPORT`` only on a socket that opted
    into sharing (Windows SO_REUSEADDR), so that no other process can bind and listen on
    the address of one that did not.  A share the table allows with a pywsk *listener*
    that lacks ``SO_REUSEPORT`` gets it on both sockets for this ``bind()`` only
    (:func:`_lent_reuse_port`); :func:`listen_with_sharing` does the same for ``listen()``."""
    with _registry_lock:
        return _bind_with_sharing(owner, sock, family, address, options)


def _bind_with_sharing(
    owner: object,
    sock: socket.socket,
    family: int,
    address: tuple[Any, ...],
    options: SharingOptions,
) -> int:
    v6only = _v6only(sock, family)
    status = check_address_sharing(family, address, options, v6only)
    if status != NTSTATUS.STATUS_SUCCESS:
        return status
    port = int(address[1])
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if options.share is Share.REUSE:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        entries = _entries(family, str(address[0]), v6only)
        _lend_reuse_addr(owner, entries, port)
        peers = _listening_peers(owner, entries, port)
        with _lent_reuse_port(sock, peers):
            sock.bind(address)
        bound = sock.getsockname()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return ADDRESS_IN_USE_STATUS
        return linux.status_from_errno(exc.errno)
    register_binding(owner, family, bound, options, v6only)
    return NTSTATUS.STATUS_SUCCESS


def _lend_reuse_addr(owner: object, entries: frozenset[tuple[int, str]], port: int) -> None:
    """Set SO_REUSEADDR on the connect-bound sockets that hold ``port`` on an overlapping
    address (see :func:`register_binding_later`), so that a bind the table allows succeeds."""
    for other, peer in _overlapping(owner, entries, port):
        if other in _reuse_on_demand:
            with contextlib.suppress(OSError):
                peer.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            _reuse_on_demand.discard(other)


def _overlapping(
    owner: object, entries: frozenset[tuple[int, str]], port: int
) -> list[tuple[object, socket.socket]]:
    """The other pywsk bindings on ``port`` that overlap ``entries``, with their open Linux
    sockets (ports connect() picked are read first)."""
    with _registry_lock:
        _resolve_ports()
        held_now = list(_bindings.items())
    found = []
    for other, held in held_now:
        if other is owner or held.port != port or not any(_overlaps(entries, held.entries)):
            continue
        peer = getattr(other, "sock", None)
        if isinstance(peer, socket.socket) and peer.fileno() >= 0:
            found.append((other, peer))
    return found


def listen_with_sharing(owner: object, sock: socket.socket, backlog: int) -> None:
    """``sock.listen(backlog)`` for ``owner``, whose binding the table allowed: a pywsk
    listener on an overlapping address that lacks ``SO_REUSEPORT`` gets it, with ``sock``,
    for this ``listen()`` only (Linux checks the address again when a socket starts
    listening).  Raises OSError as ``listen()`` does."""
    with _registry_lock:
        held = _bindings.get(owner)
        peers = [] if held is None else _listening_peers(owner, held.entries, held.port)
        with _lent_reuse_port(sock, peers):
            sock.listen(backlog)


def _listening_peers(
    owner: object, entries: frozenset[tuple[int, str]], port: int
) -> list[socket.socket]:
    """The Linux sockets of the other pywsk bindings on ``port`` that overlap ``entries``
    and listen.  Linux lets two overlapping sockets that both have ``SO_REUSEADDR`` coexist
    only while the one already there does not listen; with a listener, both need
    ``SO_REUSEPORT``."""
    if port == 0:
        return []
    found = []
    for _other, peer in _overlapping(owner, entries, port):
        with contextlib.suppress(OSError):
            if peer.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                found.append(peer)
    return found


@contextlib.contextmanager
def _lent_reuse_port(sock: socket.socket, peers: list[socket.socket]) -> Iterator[None]:
    """``SO_REUSEPORT`` on ``sock`` and ``peers`` for the ``bind()`` or ``listen()`` in the
    block (nothing changes when ``peers`` is empty), then each socket's own value again.

    Linux reads the flag of every socket on the port when it checks a bind or a listen,
    so lending it for the call is enough for the call; afterwards a socket that did not
    opt in refuses a newcomer again - except that Linux caches per port that a
    ``SO_REUSEPORT`` socket bound there without conflict, and then lets any
    ``SO_REUSEPORT`` socket of the same user skip the check on that port (see
    docs/fidelity.md, "How the sharing table maps onto Linux")."""
    if not peers:
        yield
        return
    lent: list[socket.socket] = []
    try:
        for one in (sock, *peers):
            if not one.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT):
                one.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                lent.append(one)
        yield
    finally:
        for one in lent:
            with contextlib.suppress(OSError):
                one.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 0)


def sharing_option(
    options: SharingOptions,
    bound: bool,
    kind: int,
    code: int,
    level: int,
    in_buf: Any,
    in_size: int,
    out_buf: Any,
    out_size: int,
) -> tuple[int, int] | None:
    """SO_REUSEADDR / SO_EXCLUSIVEADDRUSE through WskControlSocket: (status, output bytes),
    or None if the request is not about one of them.  Set only before bind; never both."""
    if level != SOL_SOCKET or code not in (SO_REUSEADDR, SO_EXCLUSIVEADDRUSE):
        return None
    reuse = code == SO_REUSEADDR
    if kind == WskGetOption:
        value = options.reuse_address if reuse else options.exclusive
        return write_out(out_buf, out_size, int(value), 4)
    if kind != WskSetOption:
        return None
    value_in = read_in(in_buf, in_size)
    if value_in is None:
        return NTSTATUS.STATUS_INVALID_PARAMETER, 0
    if bound:
        return NTSTATUS.STATUS_INVALID_DEVICE_STATE, 0
    on = bool(value_in)
    if on and (options.exclusive if reuse else options.reuse_address):
        return NTSTATUS.STATUS_INVALID_PARAMETER, 0
    if reuse:
        options.reuse_address = on
    else:
        options.exclusive = on
    return NTSTATUS.STATUS_SUCCESS, 0
