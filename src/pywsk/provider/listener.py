"""Listening WSK sockets over real Linux TCP, and address sharing on bind.

What it does: :class:`ListenSocket` implements WSK_PROVIDER_LISTEN_DISPATCH - WskBind,
WskAccept, WskInspectComplete, WskGetLocalAddress, WskControlSocket, WskCloseSocket - and
the listening socket's event callbacks WskAcceptEvent, WskInspectEvent and WskAbortEvent.

* WskBind binds *and* listens (``listen(LISTEN_BACKLOG)``): a listening socket has no
  separate listen call, and accept callbacks may start right after the bind completes.
  The backlog is ``socket.SOMAXCONN`` (the kernel caps it at ``net.core.somaxconn``).
* WskAccept completes inline (STATUS_SUCCESS, Information = the new connection socket)
  when a connection is waiting, and otherwise pends; several pending WskAccepts are served
  in the order they were issued.  The listening fd is a reader on the provider's loop only
  while something wants connections (a pending WskAccept, WskAcceptEvent enabled, or a
  conditional-accept listener), so without a taker connections wait in the kernel backlog.
* WskAcceptEvent: pending WskAccepts take precedence; each other connection is offered to
  the callback as a new connection socket that has the connection events enabled on the
  listener (inherited), and the context and dispatch table the callback stores through its
  two out-parameters (:class:`~pywsk.wsk.structs.PPVOID`; they write straight into the new
  socket, as WSK's pointers do, so the callback may enable events on it before returning).
  STATUS_REQUEST_NOT_ACCEPTED - or any other answer - makes the provider close the
  socket itself, with an RST.
* Conditional accept (SO_CONDITIONAL_ACCEPT before bind): every connection goes through
  WskInspectEvent with a fresh WSK_INSPECT_ID; Accept hands it on as above, Reject resets
  it, Pend holds it until WskInspectComplete.  WskAbortEvent reports a request the peer
  dropped after the client answered Pend or Accept and before the socket was delivered.
* Address sharing (spec section 9.2) is decided in-process before ``bind()``:
  :func:`bind_with_sharing` (and :func:`check_address_sharing`, :func:`register_binding`,
  :func:`release_binding`, :func:`sharing_option`) are what every pywsk socket category
  uses to bind.

Address sharing, the mapping onto Linux.  Windows decides a bind by the table of
"Sharing transport addresses" (both sockets' SO_REUSEADDR / SO_EXCLUSIVEADDRUSE, and
whether each address is the wildcard W or a specific address S); Linux' SO_REUSEADDR
means something else (TIME_WAIT reuse; no sharing with a listener).  So:

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
* An AF_INET6 socket is IPv6-only by default on Windows -> listening sockets are made with
  ``IPV6_V6ONLY`` = 1; clearing it before bind (as Microsoft's echo sample does) makes a
  dual-stack listener, whose wildcard binding then also covers the IPv4 wildcard in the
  registry -> Linux' default is dual-stack.
* Windows answers the handshake only after WskInspectEvent (or WskInspectComplete) said
  Accept, and Reject refuses the SYN -> the Linux kernel completes every handshake before
  user space sees the connection, so pywsk accept()s it, inspects it, and resets it on
  Reject or when it is dropped -> there is no earlier point to act on.  A peer therefore
  sees its connect succeed, then an RST on Reject (Windows: the connect fails), and may
  even send data while a request is held.  A held (inspected or pended) request whose peer
  sends a FIN or an RST counts as dropped (on Windows the only thing a peer can do with an
  unanswered SYN is give up); after Accept, only an RST (TCP state CLOSE) does, because
  an accepted connection may carry data and a FIN to its eventual owner, as any TCP
  connection in a backlog may.  Drops are read from the durable TCP state, woken by the
  provider's state watcher (never polled).  A dropped request is reset and forgotten; a
  WskInspectComplete for it still succeeds, with no effect.
* A WskInspectEvent that has no routine, raises, or returns anything but Accept or Pend
  rejects the request; a WskAcceptEvent answer other than STATUS_SUCCESS rejects the
  socket (the provider closes it with an RST).
* Connection events enabled on a listener cannot be disabled there ("once enabled ... they
  cannot be disabled") -> such a disable is refused with STATUS_INVALID_PARAMETER, like
  any other event that cannot be disabled (static ones).  WskAcceptEvent itself can be
  disabled and re-enabled; the inherited set stays.  Inherited events whose routine is
  missing from the new socket's dispatch table are left off.
* SO_REUSEADDR, SO_EXCLUSIVEADDRUSE and SO_CONDITIONAL_ACCEPT must be set before bind
  (their pages) -> after bind: STATUS_INVALID_DEVICE_STATE (WSK's wrong-state code).
  Setting one of the two sharing options while the other is on: STATUS_INVALID_PARAMETER
  (Winsock refuses that combination with WSAEINVAL).
* The listener no longer works (a NULL AcceptSocket for WskAcceptEvent, a NULL InspectID
  for WskInspectEvent, at most once each) -> when ``accept()`` on the listening fd fails
  with an error that is not about one connection or a passing shortage of resources
  (EINVAL after the fd stopped listening, EBADF, ...) -> nothing else makes a Linux
  listener fail.  Pending WskAccepts then complete, and later calls fail, with
  STATUS_FILE_FORCED_CLOSED.  A resource shortage (EMFILE, ENFILE, ENOBUFS, ENOMEM) keeps
  WskAccepts pending and the connection in the backlog, and retries after
  :data:`RESOURCE_RETRY_DELAY` seconds.
* SIO_WSK_QUERY_INSPECT_ID is an IOCTL of the *accepted* connection socket; this module
  records the WSK_INSPECT_ID of each socket it delivers from a conditional listener and
  answers the query in :func:`query_inspect_id`, for the connection socket to call.

What it refuses: Flags other than 0 for WskBind / WskAccept (STATUS_INVALID_PARAMETER), a
WskAccept or WskGetLocalAddress before bind, a second bind, WskInspectComplete on a
listener without conditional accept (STATUS_INVALID_DEVICE_STATE), an address or
out-address of another family, an unknown WSK_INSPECT_ID or an Action other than
Accept / Reject (STATUS_INVALID_PARAMETER), every request after the listener failed
(STATUS_FILE_FORCED_CLOSED).

What always holds: all of it runs on the provider thread; every IRP taken is completed
exactly once; WskCloseSocket completes the pending WskAccepts with STATUS_CANCELLED
(Information 0) before its own IRP, resets every connection still waiting (in the
kernel's backlog, or held for inspection), and no callback of the listener runs after
its close IRP completed; a socket a client was offered and declined is closed by the
provider, never left to the client.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import errno
import functools
import ipaddress
import itertools
import socket
import struct
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Final

from ..core.connection import OpKind
from ..mechanics import linux
from ..nt.irp import IRP
from ..nt.status import NTSTATUS
from ..wsk.constants import (
    AF_INET,
    AF_INET6,
    SO_CONDITIONAL_ACCEPT,
    SO_EXCLUSIVEADDRUSE,
    SO_REUSEADDR,
    SO_WSK_EVENT_CALLBACK,
    SOL_SOCKET,
    WSK_EVENT_ACCEPT,
    WSK_EVENT_DISABLE,
    WSK_EVENT_DISCONNECT,
    WSK_EVENT_RECEIVE,
    WSK_EVENT_SEND_BACKLOG,
    WSK_FLAG_AT_DISPATCH_LEVEL,
    WskGetOption,
    WskInspectAccept,
    WskInspectPend,
    WskInspectReject,
    WskSetOption,
)
from ..wsk.structs import (
    PPVOID,
    PSIZE_T,
    SOCKADDR,
    SOCKADDR_IN,
    SOCKADDR_IN6,
    SOCKADDR_STORAGE,
    WSK_EVENT_CALLBACK_CONTROL,
    WSK_INSPECT_ID,
)
from .base import Op, ProviderSocket, internal_irp, read_in, write_out
from .engine import TimerHandle

if TYPE_CHECKING:
    from .client import WskClient
    from .connection import ConnectionSocket

__all__ = [
    "ADDRESS_IN_USE_STATUS",
    "CONNECTION_EVENTS",
    "LISTEN_BACKLOG",
    "RESOURCE_RETRY_DELAY",
    "SHARING_TABLE",
    "ListenSocket",
    "Outcome",
    "Share",
    "SharingOptions",
    "bind_with_sharing",
    "check_address_sharing",
    "inspect_id_of",
    "listen_with_sharing",
    "query_inspect_id",
    "register_binding",
    "release_binding",
    "sharing_option",
]

#: The backlog given to ``listen()`` (the kernel caps it at ``net.core.somaxconn``).
LISTEN_BACKLOG: Final = socket.SOMAXCONN
#: What an INUSE bind conflict returns (spec Q16: observed on Windows; the sharing page
#: says STATUS_ADDRESS_ALREADY_EXISTS).  Linux' EADDRINUSE gives the same.
ADDRESS_IN_USE_STATUS: Final[int] = NTSTATUS.STATUS_ADDRESS_ALREADY_ASSOCIATED
#: Seconds before accepting again after the kernel ran short of descriptors or memory.
RESOURCE_RETRY_DELAY: Final = 0.1
#: Connection events that a listener passes on to sockets delivered by WskAcceptEvent.
CONNECTION_EVENTS: Final = WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT | WSK_EVENT_SEND_BACKLOG

# Keys for :meth:`ProviderSocket.invoke` of the two conditional-accept callbacks.  They are
# above the 32 bits of an event mask, so SO_WSK_EVENT_CALLBACK can never toggle them.
_INSPECT_EVENT: Final = 1 << 32
_ABORT_EVENT: Final = 1 << 33

# accept() errors about one connection only (accept(2): "treat them like EAGAIN").
_ACCEPT_AGAIN: Final = frozenset(
    {
        errno.ECONNABORTED,
        errno.EPROTO,
        errno.EPERM,
        errno.ENETDOWN,
        errno.ENOPROTOOPT,
        errno.EHOSTDOWN,
        errno.ENONET,
        errno.EHOSTUNREACH,
        errno.EOPNOTSUPP,
        errno.ENETUNREACH,
        errno.EINTR,
    }
)
# accept() errors that pass once descriptors or memory are available again.
_ACCEPT_SHORTAGE: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

#: sizeof(WSK_INSPECT_ID) on x64: ULONG_PTR Key, ULONG SerialNumber, 4 bytes of padding.
_INSPECT_ID_SIZE: Final = 16


# ==========================================================================================
# Address sharing (spec section 9.2)
# ==========================================================================================


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


# ==========================================================================================
# SIO_WSK_QUERY_INSPECT_ID
# ==========================================================================================

#: The WSK_INSPECT_ID of each socket delivered by a conditional-accept listener.
_inspect_ids: weakref.WeakKeyDictionary[object, WSK_INSPECT_ID] = weakref.WeakKeyDictionary()


def inspect_id_of(sock: object) -> WSK_INSPECT_ID | None:
    """A copy of the WSK_INSPECT_ID ``sock`` was inspected with, or None if it was not
    accepted from a listener with conditional accept."""
    found = _inspect_ids.get(sock)
    return None if found is None else WSK_INSPECT_ID(found.Key, found.SerialNumber)


def query_inspect_id(
    sock: object,
    OutputSize: int,
    OutputBuffer: Any,
    OutputSizeReturned: PSIZE_T | None,
    Irp: IRP | None,
) -> int:
    """SIO_WSK_QUERY_INSPECT_ID on ``sock``: the status, with ``OutputBuffer`` (a
    WSK_INSPECT_ID, or a buffer of at least 16 bytes) and ``OutputSizeReturned`` filled.

    The IRP must be NULL and OutputSizeReturned given (STATUS_INVALID_PARAMETER otherwise);
    a socket not accepted on a conditional listener: STATUS_INVALID_DEVICE_REQUEST.  This
    never completes ``Irp``: the caller completes a given IRP with the returned status."""
    if Irp is not None or OutputSizeReturned is None:
        return NTSTATUS.STATUS_INVALID_PARAMETER
    found = _inspect_ids.get(sock)
    if found is None:
        return NTSTATUS.STATUS_INVALID_DEVICE_REQUEST
    if isinstance(OutputBuffer, WSK_INSPECT_ID):
        OutputBuffer.Key = found.Key
        OutputBuffer.SerialNumber = found.SerialNumber
        OutputSizeReturned.value = _INSPECT_ID_SIZE
        return NTSTATUS.STATUS_SUCCESS
    try:
        view = memoryview(OutputBuffer).cast("B")
    except TypeError:
        return NTSTATUS.STATUS_INVALID_PARAMETER
    if view.readonly or OutputSize < _INSPECT_ID_SIZE or len(view) < _INSPECT_ID_SIZE:
        OutputSizeReturned.value = _INSPECT_ID_SIZE
        return NTSTATUS.STATUS_BUFFER_TOO_SMALL
    view[:_INSPECT_ID_SIZE] = struct.pack("<QI4x", found.Key, found.SerialNumber)
    OutputSizeReturned.value = _INSPECT_ID_SIZE
    return NTSTATUS.STATUS_SUCCESS


# ==========================================================================================
# The listening socket
# ==========================================================================================


def _connection_class() -> type[ConnectionSocket]:
    # Imported here, not at the top, so that connection.py may import this module.
    from .connection import ConnectionSocket

    return ConnectionSocket


def _sockaddr(family: int, address: tuple[Any, ...]) -> SOCKADDR_IN | SOCKADDR_IN6:
    value: SOCKADDR_IN | SOCKADDR_IN6 = SOCKADDR_IN() if family == AF_INET else SOCKADDR_IN6()
    value.set_from_tuple(family, address)
    return value


def _fits(out: Any, family: int) -> bool:
    """True if ``out`` may receive an address of ``family`` (None: not wanted)."""
    if out is None or isinstance(out, SOCKADDR_STORAGE):
        return True
    if isinstance(out, SOCKADDR_IN):
        return family == AF_INET
    if isinstance(out, SOCKADDR_IN6):
        return family == AF_INET6
    return False


def _reset(sock: socket.socket) -> None:
    """Reset a connection the client will never see, and free its descriptor."""
    with contextlib.suppress(OSError):
        linux.abort_keep_fd(sock)
    sock.close()


class _Into(PPVOID[Any]):
    """An out-parameter that writes straight into a field of the accepted socket, as the
    pointers WSK passes to WskAcceptEvent point into its own socket object."""

    __slots__ = ("_name", "_target")

    def __init__(self, target: ProviderSocket, name: str) -> None:
        self._target = target
        self._name = name

    @property
    def value(self) -> Any:
        return getattr(self._target, self._name)

    @value.setter
    def value(self, value: Any) -> None:
        setattr(self._target, self._name, value)

    def __repr__(self) -> str:
        return f"PPVOID(-> {self._name})"


class _AcceptOp(Op):
    """A pending WskAccept, with what the accepted socket and the out-addresses need."""

    __slots__ = ("accept_context", "accept_dispatch", "local_out", "remote_out")

    def __init__(
        self,
        owner: ListenSocket,
        irp: IRP,
        context: Any,
        dispatch: Any,
        local_out: SOCKADDR | None,
        remote_out: SOCKADDR | None,
    ) -> None:
        super().__init__(owner, OpKind.ACCEPT, irp, [])
        self.accept_context = context
        self.accept_dispatch = dispatch
        self.local_out = local_out
        self.remote_out = remote_out


class _Stage(enum.Enum):
    """Where a connection request of a conditional-accept listener is."""

    PENDED = "pended"  # WskInspectEvent said Pend; waiting for WskInspectComplete
    READY = "ready"  # accepted; waiting for a WskAccept or WskAcceptEvent


class _Request:
    """A connection request of a conditional-accept listener (already accepted from Linux)."""

    __slots__ = ("inspect_id", "local", "remote", "sock", "stage")

    def __init__(
        self,
        sock: socket.socket,
        local: tuple[Any, ...],
        remote: tuple[Any, ...],
        inspect_id: WSK_INSPECT_ID,
    ) -> None:
        self.sock = sock
        self.local = local
        self.remote = remote
        self.inspect_id = inspect_id
        self.stage = _Stage.PENDED

    @property
    def key(self) -> tuple[int, int]:
        return (self.inspect_id.Key, self.inspect_id.SerialNumber)


#: Serial numbers of WSK_INSPECT_IDs (ULONG), process-wide.
_serials = itertools.count(1)
#: How many aborted requests a listener remembers (WskInspectComplete on them succeeds).
_TOMBSTONES: Final = 1024


class ListenSocket(ProviderSocket):
    """A WSK listening socket: the WSK_SOCKET the client holds, and its state."""

    EVENTS: ClassVar[int] = WSK_EVENT_ACCEPT | CONNECTION_EVENTS
    EVENT_CALLBACKS: ClassVar[dict[int, str]] = {
        WSK_EVENT_ACCEPT: "WskAcceptEvent",
        _INSPECT_EVENT: "WskInspectEvent",
        _ABORT_EVENT: "WskAbortEvent",
    }

    __slots__ = (
        "_accepts",
        "_broken",
        "_held",
        "_reading",
        "_ready",
        "_registered",
        "_retry",
        "_tombstones",
        "bound",
        "conditional",
        "sharing",
    )

    def __init__(
        self,
        client: WskClient,
        family: int,
        sock: socket.socket,
        context: Any,
        dispatch_client: Any,
    ) -> None:
        super().__init__(
            client.subsystem.listen_dispatch, client, family, sock, context, dispatch_client
        )
        if family == AF_INET6:
            # Windows makes IPv6 sockets IPv6-only unless IPV6_V6ONLY is cleared.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        self.bound = False
        self.conditional = False
        self.sharing = SharingOptions()
        self._broken = False
        self._reading = False
        self._retry: TimerHandle | None = None
        self._registered = False
        self._accepts: collections.deque[_AcceptOp] = collections.deque()
        self._held: dict[tuple[int, int], _Request] = {}
        self._ready: collections.deque[_Request] = collections.deque()
        self._tombstones: dict[tuple[int, int], None] = {}

    def __repr__(self) -> str:
        state = "closed" if self.closed else "listening" if self.bound else "unbound"
        return f"<WSK listening socket {state} {self.local}>"

    # --- WskBind ---------------------------------------------------------------------------
    def bind(self, LocalAddress: SOCKADDR, Flags: int, Irp: IRP) -> int:
        """WskBind: bind, then listen; connections are accepted from now on."""
        if Flags != 0:
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
        if self._broken:
            return self._complete(Irp, NTSTATUS.STATUS_FILE_FORCED_CLOSED)
        if self.bound:
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_DEVICE_STATE)
        try:
            address = linux.to_linux_address(LocalAddress, self.family)
        except (ValueError, AttributeError):
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
        status = bind_with_sharing(self, self.sock, self.family, address, self.sharing)
        if status != NTSTATUS.STATUS_SUCCESS:
            return self._complete(Irp, status)
        try:
            listen_with_sharing(self, self.sock, LISTEN_BACKLOG)
        except OSError as exc:
            release_binding(self)
            return self._complete(Irp, linux.status_from_errno(exc.errno))
        self.local = self.sock.getsockname()
        self.bound = True
        self._update_reading()
        return self._complete(Irp, NTSTATUS.STATUS_SUCCESS)

    # --- WskAccept -------------------------------------------------------------------------
    def accept(
        self,
        Flags: int,
        AcceptSocketContext: Any,
        AcceptSocketDispatch: Any,
        LocalAddress: SOCKADDR | None,
        RemoteAddress: SOCKADDR | None,
        Irp: IRP,
    ) -> int:
        """WskAccept: a waiting connection now, or the next one to arrive (in FIFO order)."""
        if Flags != 0:
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
        if not (_fits(LocalAddress, self.family) and _fits(RemoteAddress, self.family)):
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
        if self._broken:
            return self._complete(Irp, NTSTATUS.STATUS_FILE_FORCED_CLOSED)
        if not self.bound:
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_DEVICE_STATE)
        op = _AcceptOp(
            self, Irp, AcceptSocketContext, AcceptSocketDispatch, LocalAddress, RemoteAddress
        )
        self._accepts.append(op)
        if len(self._accepts) == 1:
            # Nothing queued before it: take a waiting connection now, if there is one.
            if self.conditional:
                self._deliver_ready(inline=True)
            else:
                self._accept_from_kernel(inline=True)
            if op.done:
                return op.status  # completed inline
        self._update_reading()
        return self._pend(op)

    def _accept_from_kernel(self, inline: bool = False) -> None:
        """Hand connections from the kernel's backlog to whoever wants them (WskAccepts
        first, then WskAcceptEvent), or, with conditional accept, to WskInspectEvent.

        ``inline``: inside a WskAccept call - serve the pending WskAccepts only, so that no
        callback runs inside the client's call."""
        while not self.closed and not self._broken and self._retry is None:
            idle = not self.conditional and not self._accepts
            if idle and (inline or not self._accept_event_on()):
                break
            accepted = self._kernel_accept()
            if accepted is None:
                break
            sock, peer = accepted
            if self.conditional:
                self._inspect(sock)
            else:
                self._deliver(sock, None, peer)

    def _kernel_accept(self) -> tuple[socket.socket, tuple[Any, ...]] | None:
        while True:
            try:
                return linux.accept_nonblocking(self.sock)
            except BlockingIOError:
                return None
            except OSError as exc:
                if exc.errno in _ACCEPT_AGAIN:
                    continue
                if exc.errno in _ACCEPT_SHORTAGE:
                    self._pause_for_resources()
                else:
                    self._fail()
                return None

    def _on_acceptable(self) -> None:
        """The listening fd is readable: connections (or a failure) are waiting."""
        self._accept_from_kernel()
        self._update_reading()

    def _deliver(
        self, sock: socket.socket, request: _Request | None, peer: tuple[Any, ...] | None = None
    ) -> None:
        """Give one connection to the first pending WskAccept, else to WskAcceptEvent (the
        callers check that one of them wants it; if neither does, it is reset)."""
        while self._accepts:
            op = self._accepts[0]
            if op.done:  # pragma: no cover - done ops leave the queue when they complete
                self._accepts.popleft()
                continue
            new = self._adopt(sock, op.accept_context, op.accept_dispatch, request, peer)
            if new is None:
                return  # the connection had died already; the WskAccept waits on
            self._accepts.popleft()
            assert new.local is not None
            assert new.remote is not None
            if op.local_out is not None:
                op.local_out.set_from_tuple(self.family, new.local)
            if op.remote_out is not None:
                op.remote_out.set_from_tuple(self.family, new.remote)
            self._finish(op, NTSTATUS.STATUS_SUCCESS, new)
            return
        if self._accept_event_on():
            self._offer(sock, request, peer)
        else:
            _reset(sock)

    def _adopt(
        self,
        sock: socket.socket,
        context: Any,
        dispatch: Any,
        request: _Request | None,
        peer: tuple[Any, ...] | None = None,
    ) -> ConnectionSocket | None:
        """A new connection socket for ``sock``, opened for the client; None (and ``sock``
        reset and closed) if the connection died before it could be delivered.  ``peer``:
        the address accept4 gave; a listener bound to a specific address gives its own as
        the connection's local address (no syscall for either)."""
        local = self.local
        if local is not None and str(local[0]) in ("0.0.0.0", "::"):
            local = None
        try:
            new = _connection_class().accepted(
                self.client,
                self.family,
                sock,
                context,
                dispatch,
                self.client.subsystem.options.half_open,
                local,
                peer,
            )
        except OSError:
            _reset(sock)
            return None
        if request is not None:
            _inspect_ids[new] = WSK_INSPECT_ID(
                request.inspect_id.Key, request.inspect_id.SerialNumber
            )
        self.client.socket_opened(new)
        return new

    # --- WskAcceptEvent --------------------------------------------------------------------
    def _accept_event_on(self) -> bool:
        return (
            bool(self.events & WSK_EVENT_ACCEPT) and self.callback_for(WSK_EVENT_ACCEPT) is not None
        )

    def _offer(
        self, sock: socket.socket, request: _Request | None, peer: tuple[Any, ...] | None = None
    ) -> None:
        """WskAcceptEvent with a new socket: kept on STATUS_SUCCESS, else reset by us."""
        new = self._adopt(sock, None, None, request, peer)
        if new is None:
            return
        assert new.local is not None
        assert new.remote is not None
        status = self.invoke(
            WSK_EVENT_ACCEPT,
            self.context,
            WSK_FLAG_AT_DISPATCH_LEVEL,
            _sockaddr(self.family, new.local),
            _sockaddr(self.family, new.remote),
            new,
            _Into(new, "context"),
            _Into(new, "dispatch_client"),
        )
        # The callback may have handed the socket to another thread: go on under its lock
        # (lock order: the listener before a socket it accepted).
        self.engine.locked(new.lock, self._after_offer, new, status)

    def _after_offer(self, new: ConnectionSocket, status: int) -> None:
        if new.closed:
            return  # the client closed it from inside the callback
        if status != NTSTATUS.STATUS_SUCCESS:
            # STATUS_REQUEST_NOT_ACCEPTED: WSK closes the socket; the client never touches it.
            new.close(internal_irp())
            return
        inherited = 0
        for event in (WSK_EVENT_RECEIVE, WSK_EVENT_DISCONNECT, WSK_EVENT_SEND_BACKLOG):
            if (
                self.events & event
                and new.callback_for(event) is not None
                and not new.disabled_by_client & event  # disabled inside the callback: stays off
            ):
                inherited |= event
        if inherited & ~new.events:
            new.events |= inherited
            new.on_events_changed()

    def _indicate_broken(self) -> None:
        """The listener no longer works: a NULL AcceptSocket / NULL InspectID, once each."""
        if self.closed:
            return
        if self.events & WSK_EVENT_ACCEPT:
            self.invoke(
                WSK_EVENT_ACCEPT,
                self.context,
                WSK_FLAG_AT_DISPATCH_LEVEL,
                None,
                None,
                None,
                PPVOID(),
                PPVOID(),
            )
        if self.conditional and not self.closed:
            self.invoke(_INSPECT_EVENT, self.context, None, None, None)

    # --- conditional accept ----------------------------------------------------------------
    def _inspect(self, sock: socket.socket) -> None:
        """WskInspectEvent for a new connection request; act on the answer."""
        try:
            local, remote = sock.getsockname(), sock.getpeername()
        except OSError:
            _reset(sock)  # dropped before anyone saw it
            return
        inspect_id = WSK_INSPECT_ID(id(self), next(_serials) & 0xFFFFFFFF)
        request = _Request(sock, local, remote, inspect_id)
        action = self.invoke(
            _INSPECT_EVENT,
            self.context,
            _sockaddr(self.family, local),
            _sockaddr(self.family, remote),
            WSK_INSPECT_ID(inspect_id.Key, inspect_id.SerialNumber),
        )
        if self.closed or self._broken:
            _reset(sock)
            return
        if action == WskInspectAccept:
            self._ready_request(request)
        elif action == WskInspectPend:
            self._held[request.key] = request
            self._watch(request)
        else:
            _reset(sock)  # WskInspectReject (or no usable answer): dropped, no abort event

    def _ready_request(self, request: _Request) -> None:
        request.stage = _Stage.READY
        self._ready.append(request)
        self._watch(request)
        self._deliver_ready()

    def _deliver_ready(self, inline: bool = False) -> None:
        """Hand accepted requests on, while a WskAccept (or, unless ``inline``, WskAcceptEvent)
        takes them; a request found reset on the way is aborted instead."""
        while self._ready and not self.closed:
            if not self._accepts and (inline or not self._accept_event_on()):
                break
            request = self._ready.popleft()
            self.engine.forget(request.sock.fileno(), unregister=True)
            if linux.tcp_state(request.sock) == linux.CLOSE:
                self._abort_request(request)
                continue
            self._deliver(request.sock, request)

    def _watch(self, request: _Request) -> None:
        """Watch a held request's TCP state (the peer may drop it) in the provider's epoll."""
        engine = self.engine
        engine.register(
            request.sock.fileno(),
            lambda _mask: engine.locked(self.lock, self._check_request, request),
        )

    def _check_request(self, request: _Request) -> None:
        """The TCP state of a held request may have moved: did the peer drop it?"""
        if self.closed or request.sock.fileno() < 0:
            return
        try:
            state = linux.tcp_state(request.sock)
        except OSError:
            state = linux.CLOSE
        if request.stage is _Stage.PENDED:
            dropped = state in (linux.CLOSE_WAIT, linux.LAST_ACK, linux.CLOSING, linux.CLOSE)
            if dropped and self._held.get(request.key) is request:
                del self._held[request.key]
                self._abort_request(request)
        elif state == linux.CLOSE and request in self._ready:
            self._ready.remove(request)
            self._abort_request(request)

    def _abort_request(self, request: _Request) -> None:
        self.engine.forget(request.sock.fileno(), unregister=True)
        _reset(request.sock)
        self._tombstones[request.key] = None
        while len(self._tombstones) > _TOMBSTONES:
            del self._tombstones[next(iter(self._tombstones))]
        inspect_id = WSK_INSPECT_ID(request.inspect_id.Key, request.inspect_id.SerialNumber)
        if self.engine.on_loop():
            self.invoke(_ABORT_EVENT, self.context, inspect_id)
        else:
            # Found inside a client's call: callbacks run on the provider thread only.
            self._post(self.invoke, _ABORT_EVENT, self.context, inspect_id)

    def inspect_complete(self, InspectID: Any, Action: int, Irp: IRP) -> int:
        """WskInspectComplete: decide a request whose WskInspectEvent returned Pend."""
        if self._broken:
            return self._complete(Irp, NTSTATUS.STATUS_FILE_FORCED_CLOSED)
        if not self.bound or not self.conditional:
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_DEVICE_STATE)
        if not isinstance(InspectID, WSK_INSPECT_ID) or Action not in (
            WskInspectAccept,
            WskInspectReject,
        ):
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
        key = (InspectID.Key, InspectID.SerialNumber)
        request = self._held.pop(key, None)
        if request is None:
            if key in self._tombstones:
                # Aborted meanwhile: "the connection is never established even with Accept".
                return self._complete(Irp, NTSTATUS.STATUS_SUCCESS)
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
        if Action == WskInspectReject:
            self.engine.forget(request.sock.fileno(), unregister=True)
            _reset(request.sock)
            return self._complete(Irp, NTSTATUS.STATUS_SUCCESS)
        request.stage = _Stage.READY
        self._ready.append(request)
        status = self._complete(Irp, NTSTATUS.STATUS_SUCCESS)
        self._post(self._deliver_ready)
        return status

    # --- the listening fd on the loop -------------------------------------------------------
    def _wants_connections(self) -> bool:
        return (
            self.bound
            and not self.closed
            and not self._broken
            and self._retry is None
            and (self.conditional or bool(self._accepts) or self._accept_event_on())
        )

    def _update_reading(self, tried: bool = True) -> None:
        """Accept while something wants connections.  Edge-triggered: turning accepting on
        without having just tried an accept (``tried``) schedules one."""
        wanted = self._wants_connections()
        if wanted == self._reading:
            return
        self._reading = wanted
        if wanted:
            if not self._registered:
                # Added while connections wait, the epoll reports them once at once.
                self._registered = True
                engine = self.engine
                engine.register(
                    self.sock.fileno(), functools.partial(engine.locked, self.lock, self._on_ready)
                )
            elif not tried:
                self._post(self._on_acceptable)

    def _on_ready(self, _mask: int) -> None:
        if self._reading and not self.closed:
            self._on_acceptable()

    def _pause_for_resources(self) -> None:
        """The kernel is short of descriptors or memory: leave the backlog alone a while."""
        if self._retry is None:
            engine = self.engine
            self._retry = engine.call_later(
                RESOURCE_RETRY_DELAY, engine.locked, self.lock, self._resume
            )
            self._update_reading()

    def _resume(self) -> None:
        self._retry = None
        if not self.closed:
            self._update_reading()
            if self._reading:
                self._on_acceptable()

    def _fail(self) -> None:
        """The listening socket failed for good: pending and later requests fail with
        STATUS_FILE_FORCED_CLOSED; held requests are reset; the client is told once."""
        if self._broken:
            return
        self._broken = True
        self._update_reading()
        self._drop_requests()
        pending = list(self._accepts)
        self._accepts.clear()
        for op in pending:
            self._finish(op, NTSTATUS.STATUS_FILE_FORCED_CLOSED, 0)
        self._post(self._indicate_broken)

    def _drop_requests(self) -> None:
        requests = [*self._held.values(), *self._ready]
        self._held.clear()
        self._ready.clear()
        for request in requests:
            self.engine.forget(request.sock.fileno(), unregister=True)
            _reset(request.sock)

    # --- cancel, close ---------------------------------------------------------------------
    def cancel(self, op: Op) -> None:
        """IoCancelIrp on a pending WskAccept: STATUS_CANCELLED, unless it completed."""
        if op.done or not isinstance(op, _AcceptOp) or op not in self._accepts:
            return
        self._accepts.remove(op)
        self._finish(op, NTSTATUS.STATUS_CANCELLED, 0)
        self._update_reading()

    def close(self, Irp: IRP) -> int:
        """WskCloseSocket: cancel pending WskAccepts, reset every waiting connection, then
        complete (once running callbacks have returned)."""
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self.closed = True
        self._update_reading_closed()
        self._drop_requests()
        release_binding(self)
        # Closing the listening fd resets the connections still in the kernel's backlog.
        self.sock.close()
        pending = list(self._accepts)
        self._accepts.clear()
        for op in pending:
            self._finish(op, NTSTATUS.STATUS_CANCELLED, 0)
        return self.finish_close(Irp)

    def _update_reading_closed(self) -> None:
        self._reading = False
        if self._registered:
            self.engine.forget(self.sock.fileno())  # close() takes it out of the epoll

    # --- WskGetLocalAddress ----------------------------------------------------------------
    def get_local_address(self, LocalAddress: SOCKADDR, Irp: IRP) -> int:
        if not self.bound:
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_DEVICE_STATE)
        assert self.local is not None
        return self._fill(LocalAddress, self.local, Irp)

    # --- events and options ------------------------------------------------------------------
    def events_allowed_now(self) -> bool:
        return self.bound and not self.closed

    def on_events_changed(self) -> None:
        self._update_reading(tried=False)
        if self._ready and self._accept_event_on():
            self._post(self._deliver_ready)

    def control(
        self,
        RequestType: int,
        ControlCode: int,
        Level: int,
        InputSize: int,
        InputBuffer: Any,
        OutputSize: int,
        OutputBuffer: Any,
        OutputSizeReturned: PSIZE_T | None,
        Irp: IRP | None,
    ) -> int:
        if (
            (RequestType, Level, ControlCode) == (WskSetOption, SOL_SOCKET, SO_WSK_EVENT_CALLBACK)
            and isinstance(InputBuffer, WSK_EVENT_CALLBACK_CONTROL)
            and InputBuffer.EventMask & WSK_EVENT_DISABLE
            and InputBuffer.EventMask & CONNECTION_EVENTS
        ):
            # Connection events enabled on a listener (for inheritance) stay enabled there.
            return self._answer(Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
        return super().control(
            RequestType,
            ControlCode,
            Level,
            InputSize,
            InputBuffer,
            OutputSize,
            OutputBuffer,
            OutputSizeReturned,
            Irp,
        )

    def _control(
        self,
        kind: int,
        code: int,
        level: int,
        in_size: int,
        in_buf: Any,
        out_size: int,
        out_buf: Any,
    ) -> tuple[int, int]:
        if (level, code) == (SOL_SOCKET, SO_CONDITIONAL_ACCEPT):
            return self._conditional_option(kind, in_buf, in_size, out_buf, out_size)
        answer = sharing_option(
            self.sharing, self.bound, kind, code, level, in_buf, in_size, out_buf, out_size
        )
        if answer is not None:
            return answer
        return super()._control(kind, code, level, in_size, in_buf, out_size, out_buf)

    def _conditional_option(
        self, kind: int, in_buf: Any, in_size: int, out_buf: Any, out_size: int
    ) -> tuple[int, int]:
        if kind == WskGetOption:
            return write_out(out_buf, out_size, int(self.conditional), 4)
        if kind != WskSetOption:
            return NTSTATUS.STATUS_NOT_SUPPORTED, 0
        value = read_in(in_buf, in_size)
        if value is None:
            return NTSTATUS.STATUS_INVALID_PARAMETER, 0
        if self.bound:
            return NTSTATUS.STATUS_INVALID_DEVICE_STATE, 0  # "set before bind"
        self.conditional = bool(value)
        return NTSTATUS.STATUS_SUCCESS, 0


class DatagramListenSocket(ListenSocket):
    """A listening socket asked for with SOCK_DGRAM / IPPROTO_UDP.

    Windows creates it (WskSocket succeeds) and refuses only WskBind, with
    STATUS_NOT_IMPLEMENTED - Wine's driver test, validated on Windows.  So it is made over
    a real Linux UDP socket, never bound; WskBind completes with STATUS_NOT_IMPLEMENTED and
    changes nothing, so it can never listen or accept.  Everything else (options, close) is
    a listening socket's.
    """

    __slots__ = ()

    def bind(self, LocalAddress: SOCKADDR, Flags: int, Irp: IRP) -> int:
        return self._complete(Irp, NTSTATUS.STATUS_NOT_IMPLEMENTED)
