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
    # The Windows options are pywsk's, not Linux': the kernel socket shares at the Linux level.
    owner: Any = sock
    assert owner.sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1


def test_port_zero_never_conflicts() -> None:
    exclusive = SharingOptions(exclusive=True)
    assert check_address_sharing(AF_INET, ("0.0.0.0", 0), exclusive) == STATUS_SUCCESS
