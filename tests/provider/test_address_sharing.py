"""Address sharing on bind: SO_REUSEADDR and SO_EXCLUSIVEADDRUSE as Windows decides them.

The whole table of Microsoft's "Sharing transport addresses" page (spec section 9.2) is
driven with real binds of listening sockets on one free port per case (chosen below the
kernel's ephemeral range, see :func:`free_port`): 0.0.0.0 is the wildcard (W), 127.0.0.1
the specific address (S).  The table is written out again here, independently of the
provider's copy, in the page's orientation (rows: the second bind; columns: the first).
"""

from __future__ import annotations

import itertools
import random
import socket
import subprocess
import sys
from typing import Any

import pytest

from pywsk.nt import (
    STATUS_ACCESS_DENIED,
    STATUS_ADDRESS_ALREADY_ASSOCIATED,
    STATUS_INVALID_DEVICE_STATE,
    STATUS_INVALID_PARAMETER,
    STATUS_SUCCESS,
)
from pywsk.provider.listener import (
    ADDRESS_IN_USE_STATUS,
    SharingOptions,
    check_address_sharing,
)
from pywsk.testing import tcp
from pywsk.testing.driver import WskTestClient
from pywsk.wsk import (
    AF_INET,
    AF_INET6,
    IPPROTO_IPV6,
    IPV6_V6ONLY,
    PSIZE_T,
    SO_EXCLUSIVEADDRUSE,
    SO_REUSEADDR,
    SOL_SOCKET,
    WSK_FLAG_LISTEN_SOCKET,
    WSK_FLAG_STREAM_SOCKET,
    WSK_SOCKET,
    WskGetOption,
    WskSetOption,
    sockaddr_from_tuple,
)

WAIT = 10.0
OPTIONS = ["none", "reuse", "excl"]
KINDS = ["W", "S"]
ADDRESS = {"W": "0.0.0.0", "S": "127.0.0.1"}

#: The page's table: TABLE[second][first], columns in this order.
COLUMNS = ["none W", "none S", "reuse W", "reuse S", "excl W", "excl S"]
TABLE = {
    "none W": "INUSE   SUCCESS INUSE   SUCCESS INUSE   SUCCESS",
    "none S": "CHECK   INUSE   CHECK   DENIED  DENIED  INUSE",
    "reuse W": "DENIED  SUCCESS SUCCESS SUCCESS DENIED  SUCCESS",
    "reuse S": "CHECK   DENIED  SUCCESS SUCCESS DENIED  DENIED",
    "excl W": "INUSE   INUSE   INUSE   INUSE   INUSE   INUSE",
    "excl S": "CHECK   INUSE   CHECK   INUSE   DENIED  INUSE",
}
#: CHECK with the default security descriptor (pywsk has no other) is refused.
STATUS = {
    "SUCCESS": STATUS_SUCCESS,
    "INUSE": STATUS_ADDRESS_ALREADY_ASSOCIATED,
    "DENIED": STATUS_ACCESS_DENIED,
    "CHECK": STATUS_ACCESS_DENIED,
}


def expected(first: str, second: str) -> str:
    return TABLE[second].split()[COLUMNS.index(first)]


def free_port() -> int:
    """A port free on every local address, below the kernel's ephemeral range.

    Not ``bind(port 0)``: that hands out an ephemeral port, which any connection made
    meanwhile - by this process or another one on the machine - may take as its local port
    before the test binds it (seen under load).  Connections never pick ports below the
    range, so a port found free there stays free for the test."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as ports:
        low = int(ports.read().split()[0])
    for _ in range(200):
        port = random.randrange(max(1024, low - 8000), low)
        with socket.socket() as probe:
            try:
                probe.bind(("0.0.0.0", port))
            except OSError:
                continue  # in use (or lingering in TIME_WAIT): try another
            return port
    raise AssertionError("no free port found below the ephemeral range")


def set_option(wsk: WskTestClient, sock: WSK_SOCKET, level: int, option: int, value: int) -> int:
    request = wsk.call(
        "WskControlSocket",
        sock.Dispatch.WskControlSocket,
        sock,
        WskSetOption,
        option,
        level,
        4,
        value,
        0,
        None,
        None,
    )
    assert request.status is not None
    return request.status


def get_option(wsk: WskTestClient, sock: WSK_SOCKET, option: int) -> int:
    out = PSIZE_T()
    request = wsk.call(
        "WskControlSocket",
        sock.Dispatch.WskControlSocket,
        sock,
        WskGetOption,
        option,
        SOL_SOCKET,
        0,
        None,
        4,
        out,
        None,
    )
    assert request.status == STATUS_SUCCESS, request
    return out.value


def new_listener(
    wsk: WskTestClient, share: str, family: int = AF_INET, v6only: int | None = None
) -> WSK_SOCKET:
    made = wsk.socket(family, WSK_FLAG_LISTEN_SOCKET)
    assert made.status == STATUS_SUCCESS, made
    sock: WSK_SOCKET = made.information
    if share != "none":
        option = SO_REUSEADDR if share == "reuse" else SO_EXCLUSIVEADDRUSE
        assert set_option(wsk, sock, SOL_SOCKET, option, 1) == STATUS_SUCCESS
    if v6only is not None:
        assert set_option(wsk, sock, IPPROTO_IPV6, IPV6_V6ONLY, v6only) == STATUS_SUCCESS
    return sock


def bind(wsk: WskTestClient, sock: WSK_SOCKET, address: tuple[str, int]) -> int:
    request = wsk.call("WskBind", sock.Dispatch.WskBind, sock, sockaddr_from_tuple(address), 0)
    assert request.status is not None
    assert request.information == 0
    return request.status


def bound_port(wsk: WskTestClient, sock: WSK_SOCKET) -> int:
    request, address = wsk.local_address(sock)
    assert request.status == STATUS_SUCCESS, request
    return int(address.to_tuple()[1])


@pytest.mark.parametrize(
    ("first_share", "first_kind", "second_share", "second_kind"),
    list(itertools.product(OPTIONS, KINDS, OPTIONS, KINDS)),
)
def test_the_sharing_table(
    wsk: WskTestClient, first_share: str, first_kind: str, second_share: str, second_kind: str
) -> None:
    port = free_port()
    first = new_listener(wsk, first_share)
    assert bind(wsk, first, (ADDRESS[first_kind], port)) == STATUS_SUCCESS
    second = new_listener(wsk, second_share)
    outcome = expected(f"{first_share} {first_kind}", f"{second_share} {second_kind}")
    assert bind(wsk, second, (ADDRESS[second_kind], port)) == STATUS[outcome], outcome
    if outcome == "SUCCESS":
        # It really listens there: the Linux bind and listen went through as well.
        assert bound_port(wsk, second) == port
        with socket.create_connection((ADDRESS["S"], port), timeout=WAIT):
            pass
    else:
        request, _ = wsk.local_address(second)
        assert request.status == STATUS_INVALID_DEVICE_STATE  # still unbound
    wsk.close_socket(second)
    wsk.close_socket(first)


def test_in_use_status_is_the_observed_one() -> None:
    assert ADDRESS_IN_USE_STATUS == STATUS_ADDRESS_ALREADY_ASSOCIATED


def test_a_closed_socket_releases_its_address(wsk: WskTestClient) -> None:
    port = free_port()
    first = new_listener(wsk, "excl")
    assert bind(wsk, first, ("0.0.0.0", port)) == STATUS_SUCCESS
    refused = new_listener(wsk, "none")
    assert bind(wsk, refused, ("0.0.0.0", port)) == STATUS_ADDRESS_ALREADY_ASSOCIATED
    wsk.close_socket(first)
    again = new_listener(wsk, "none")
    assert bind(wsk, again, ("0.0.0.0", port)) == STATUS_SUCCESS


def test_different_specific_addresses_never_conflict(wsk: WskTestClient) -> None:
    port = free_port()
    one = new_listener(wsk, "excl")
    assert bind(wsk, one, ("127.0.0.1", port)) == STATUS_SUCCESS
    two = new_listener(wsk, "excl")
    assert bind(wsk, two, ("127.0.0.2", port)) == STATUS_SUCCESS


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_a_socket_pywsk_did_not_make_conflicts_as_linux_says(wsk: WskTestClient, host: str) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen(1)
        port = other.getsockname()[1]
        sock = new_listener(wsk, "reuse")
        assert bind(wsk, sock, (host, port)) == STATUS_ADDRESS_ALREADY_ASSOCIATED


def test_dual_stack_wildcard_covers_the_ipv4_wildcard(wsk: WskTestClient) -> None:
    if not tcp.has_ipv6_loopback():
        pytest.skip("no IPv6 here")
    port = free_port()
    v4 = new_listener(wsk, "none")
    assert bind(wsk, v4, ("0.0.0.0", port)) == STATUS_SUCCESS
    dual = new_listener(wsk, "none", AF_INET6, v6only=0)
    assert bind(wsk, dual, ("::", port)) == STATUS_ADDRESS_ALREADY_ASSOCIATED
    only6 = new_listener(wsk, "none", AF_INET6)  # IPv6-only by default, as on Windows
    assert bind(wsk, only6, ("::", port)) == STATUS_SUCCESS


def test_option_rules(wsk: WskTestClient) -> None:
    sock = new_listener(wsk, "reuse")
    assert get_option(wsk, sock, SO_REUSEADDR) == 1
    assert get_option(wsk, sock, SO_EXCLUSIVEADDRUSE) == 0
    # Never both at once.
    assert set_option(wsk, sock, SOL_SOCKET, SO_EXCLUSIVEADDRUSE, 1) == STATUS_INVALID_PARAMETER
    assert set_option(wsk, sock, SOL_SOCKET, SO_REUSEADDR, 0) == STATUS_SUCCESS
    assert set_option(wsk, sock, SOL_SOCKET, SO_EXCLUSIVEADDRUSE, 1) == STATUS_SUCCESS
    assert set_option(wsk, sock, SOL_SOCKET, SO_REUSEADDR, 1) == STATUS_INVALID_PARAMETER
    assert bind(wsk, sock, ("127.0.0.1", 0)) == STATUS_SUCCESS
    # Only before bind.
    assert set_option(wsk, sock, SOL_SOCKET, SO_EXCLUSIVEADDRUSE, 0) == STATUS_INVALID_DEVICE_STATE
    assert get_option(wsk, sock, SO_EXCLUSIVEADDRUSE) == 1
    # The Windows options are pywsk's, not Linux': an exclusive socket gets no SO_REUSEPORT
    # (nor does one without options), one that opted into sharing does.
    owner: Any = sock
    assert owner.sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 0
    sharing: Any = new_listener(wsk, "reuse")
    assert bind(wsk, sharing, ("127.0.0.1", 0)) == STATUS_SUCCESS
    assert sharing.sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1


def test_port_zero_never_conflicts() -> None:
    exclusive = SharingOptions(exclusive=True)
    assert check_address_sharing(AF_INET, ("0.0.0.0", 0), exclusive) == STATUS_SUCCESS


# ------------------------------------------------------------------------------------------
# Linux SO_REUSEPORT: only for sockets that opted into sharing, so another process (same
# user) cannot bind and listen on the address of one that did not, and take its connections.
# ------------------------------------------------------------------------------------------

#: Another process: a plain Python socket with the Linux options named on the command line,
#: bound to (host, port) and listening; prints LISTENING or the errno's name.
OTHER_PROCESS = """
import errno, socket, sys
host, port, options = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
family = socket.AF_INET6 if ":" in host else socket.AF_INET
with socket.socket(family, socket.SOCK_STREAM) as sock:
    for name in options:
        sock.setsockopt(socket.SOL_SOCKET, getattr(socket, name), 1)
    try:
        sock.bind((host, port))
        sock.listen(8)
    except OSError as exc:
        print(errno.errorcode[exc.errno])
    else:
        print("LISTENING")
"""
REUSEPORT_OPTIONS = [("SO_REUSEPORT",), ("SO_REUSEADDR", "SO_REUSEPORT")]


def in_another_process(host: str, port: int, options: tuple[str, ...]) -> str:
    """What another process gets when it binds ``(host, port)`` and listens."""
    done = subprocess.run(
        [sys.executable, "-c", OTHER_PROCESS, host, str(port), *options],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=True,
    )
    return done.stdout.strip()


def reuse_port(sock: WSK_SOCKET) -> int:
    """SO_REUSEPORT of the Linux socket behind a pywsk socket."""
    owner: Any = sock
    return int(owner.sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT))


def listening(sock: WSK_SOCKET) -> bool:
    owner: Any = sock
    return bool(owner.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))


def accepted_by(wsk: WskTestClient, sock: WSK_SOCKET, address: tuple[str, int]) -> None:
    """A connection to ``address`` is accepted by the pywsk listener ``sock``."""
    request = wsk.accept(sock)
    with socket.create_connection(address, timeout=WAIT):
        assert request.wait(WAIT).status == STATUS_SUCCESS, request


@pytest.mark.parametrize("options", REUSEPORT_OPTIONS, ids="+".join)
@pytest.mark.parametrize(
    ("ours", "theirs"),
    [("127.0.0.1", "127.0.0.1"), ("0.0.0.0", "0.0.0.0"), ("0.0.0.0", "127.0.0.1")],
)
@pytest.mark.parametrize("share", ["none", "excl"])
def test_a_listener_that_did_not_opt_in_refuses_another_process(
    wsk: WskTestClient, share: str, ours: str, theirs: str, options: tuple[str, ...]
) -> None:
    port = free_port()
    sock = new_listener(wsk, share)
    assert bind(wsk, sock, (ours, port)) == STATUS_SUCCESS
    assert reuse_port(sock) == 0
    assert in_another_process(theirs, port, options) == "EADDRINUSE"
    accepted_by(wsk, sock, ("127.0.0.1", port))  # its connections are still its own


def test_an_ipv6_listener_that_did_not_opt_in_refuses_another_process(wsk: WskTestClient) -> None:
    if not tcp.has_ipv6_loopback():
        pytest.skip("no IPv6 here")
    port = free_port()
    sock = new_listener(wsk, "none", AF_INET6)
    assert bind(wsk, sock, ("::1", port)) == STATUS_SUCCESS
    assert in_another_process("::1", port, ("SO_REUSEADDR", "SO_REUSEPORT")) == "EADDRINUSE"
    accepted_by(wsk, sock, ("::1", port))


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("0.0.0.0", "0.0.0.0"),
        ("0.0.0.0", "127.0.0.1"),
        ("127.0.0.1", "0.0.0.0"),
    ],
)
def test_a_listener_that_opted_in_shares_with_another_process(
    wsk: WskTestClient, ours: str, theirs: str
) -> None:
    """SO_REUSEADDR (Windows) on both: SUCCESS for every pair of W and S; a socket of another
    program opts in with Linux SO_REUSEPORT."""
    port = free_port()
    sock = new_listener(wsk, "reuse")
    assert bind(wsk, sock, (ours, port)) == STATUS_SUCCESS
    assert reuse_port(sock) == 1
    assert in_another_process(theirs, port, ("SO_REUSEADDR", "SO_REUSEPORT")) == "LISTENING"


@pytest.mark.parametrize(
    ("first_share", "second_share"),
    [("none", "none"), ("none", "reuse"), ("excl", "none"), ("excl", "reuse"), ("reuse", "none")],
)
def test_a_wildcard_shares_with_a_specific_listener_that_did_not_opt_in(
    wsk: WskTestClient, first_share: str, second_share: str
) -> None:
    """The table's SUCCESS of a wildcard bind after a specific one, where one of the two did
    not opt in: Linux allows two overlapping listeners only with SO_REUSEPORT on both, so
    pywsk lends it for the bind and the listen, then each socket has its own value again."""
    port = free_port()
    first = new_listener(wsk, first_share)
    assert bind(wsk, first, ("127.0.0.1", port)) == STATUS_SUCCESS
    second = new_listener(wsk, second_share)
    assert bind(wsk, second, ("0.0.0.0", port)) == STATUS_SUCCESS
    assert listening(first)
    assert listening(second)
    assert reuse_port(first) == int(first_share == "reuse")
    assert reuse_port(second) == int(second_share == "reuse")
    accepted_by(wsk, first, ("127.0.0.1", port))  # the specific address is the better match


def test_a_bound_connection_socket_shares_without_so_reuseport(wsk: WskTestClient) -> None:
    """A connection socket does not listen: a wildcard listener shares its specific address
    (table: SUCCESS) with Linux SO_REUSEADDR alone."""
    port = free_port()
    made = wsk.socket(AF_INET)
    assert made.status == STATUS_SUCCESS, made
    first: WSK_SOCKET = made.information
    assert bind(wsk, first, ("127.0.0.1", port)) == STATUS_SUCCESS
    second = new_listener(wsk, "none")
    assert bind(wsk, second, ("0.0.0.0", port)) == STATUS_SUCCESS
    assert (reuse_port(first), reuse_port(second)) == (0, 0)
    accepted_by(wsk, second, ("127.0.0.1", port))


@pytest.mark.parametrize("stream_first", [False, True], ids=["stream-wildcard", "stream-specific"])
def test_a_stream_socket_listens_where_the_table_let_it_bind(
    wsk: WskTestClient, stream_first: bool
) -> None:
    """A specific listener and a wildcard stream socket that did not opt in, in either
    order: the table gives SUCCESS, and so must the stream socket's WskListen."""
    port = free_port()
    made = wsk.socket(AF_INET, WSK_FLAG_STREAM_SOCKET)
    assert made.status == STATUS_SUCCESS, made
    stream: WSK_SOCKET = made.information
    listener = new_listener(wsk, "none")
    if stream_first:
        assert bind(wsk, stream, ("127.0.0.1", port)) == STATUS_SUCCESS
        assert bind(wsk, listener, ("0.0.0.0", port)) == STATUS_SUCCESS
    else:
        assert bind(wsk, listener, ("127.0.0.1", port)) == STATUS_SUCCESS
        assert bind(wsk, stream, ("0.0.0.0", port)) == STATUS_SUCCESS
    listen = wsk.call("WskListen", stream.Dispatch.WskListen, stream)
    assert listen.status == STATUS_SUCCESS, listen
