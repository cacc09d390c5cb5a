"""A bind to port 0 lets connect() pick the port, so churn cannot exhaust the ephemeral range.

Linux ``bind()`` to port 0 must find a port that no socket holds, TIME_WAIT sockets
included; ``connect()`` may reuse a port whose other connections lead elsewhere.  pywsk
binds connection sockets with ``IP_BIND_ADDRESS_NO_PORT`` (docs/fidelity.md, WskBind), and
records the port connect() chose for the address-sharing table.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import uuid

import pytest

from pywsk.nt import STATUS_ADDRESS_ALREADY_ASSOCIATED, STATUS_SUCCESS
from pywsk.testing.driver import WskTestClient
from pywsk.wsk import AF_INET, AF_INET6, sockaddr_from_tuple


@pytest.mark.parametrize(("family", "host"), [(AF_INET, "127.0.0.1"), (AF_INET6, "::1")])
def test_the_port_is_chosen_at_connect_and_then_held(
    wsk: WskTestClient, family: int, host: str
) -> None:
    server = socket.create_server(
        (host, 0), family=socket.AF_INET if family == AF_INET else socket.AF_INET6
    )
    with server:
        sock = wsk.socket(family).information
        d = wsk.dispatch(sock)
        wildcard = ("0.0.0.0", 0) if family == AF_INET else ("::", 0)
        assert wsk.call("WskBind", d.WskBind, sock, sockaddr_from_tuple(wildcard), 0).status == (
            STATUS_SUCCESS
        )
        remote = sockaddr_from_tuple(server.getsockname())
        assert wsk.call("WskConnect", d.WskConnect, sock, remote, 0).status == STATUS_SUCCESS
        _request, local = wsk.local_address(sock)
        port = local.to_tuple()[1]
        assert port != 0
        accepted, peer = server.accept()
        with accepted:
            assert peer[1] == port
        # The port connect() chose is in the sharing table: a bind to it conflicts.
        other = wsk.socket(family).information
        clash = wsk.call(
            "WskBind",
            wsk.dispatch(other).WskBind,
            other,
            sockaddr_from_tuple((host, port)),
            0,
        )
        assert clash.status == STATUS_ADDRESS_ALREADY_ASSOCIATED
        wsk.close_socket(other)
        wsk.close_socket(sock)


# In a network namespace of its own with an ephemeral range of RANGE ports: connections to
# one listener fill the range with TIME_WAIT (the client closes first), then a plain
# bind(port 0) fails - and pywsk's WskSocketConnect to other listeners still succeeds.
_CHURN = textwrap.dedent(
    """
    import errno, socket, sys
    from pywsk.testing.driver import WskTestClient

    RANGE = int(sys.argv[1])
    # Fixed ports, outside the namespace's ephemeral range (nothing else lives there).
    listeners = [socket.create_server(("127.0.0.1", 5001 + i)) for i in range(3)]

    def one(wsk, listener):
        sock = wsk.connect(listener.getsockname())
        conn, _ = listener.accept()
        assert wsk.disconnect(sock).wait(10).status == 0    # our FIN, acknowledged
        conn.close()                                         # the peer's FIN
        request, _ = wsk.receive(sock, 16)
        assert request.wait(10).status == 0 and request.information == 0
        wsk.close_socket(sock)                               # both closed: TIME_WAIT here

    with WskTestClient() as wsk:
        for _ in range(RANGE):
            one(wsk, listeners[0])
        probe = socket.socket()
        try:
            probe.bind(("127.0.0.1", 0))
            print("control: bind(0) still found a port")
            sys.exit(3)
        except OSError as exc:
            assert exc.errno == errno.EADDRINUSE, exc
        finally:
            probe.close()
        for listener in listeners[1:]:
            for _ in range(RANGE):
                one(wsk, listener)
        wsk.free_requests()
    print("ok", 3 * RANGE)
    """
)


def _netns_available() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


@pytest.mark.skipif(not _netns_available(), reason="needs root and ip (iproute2)")
def test_churn_past_the_ephemeral_range_in_a_namespace() -> None:
    name = f"pywsk-ports-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    try:
        run = ["ip", "netns", "exec", name]
        subprocess.run([*run, "ip", "link", "set", "lo", "up"], check=True, timeout=10)
        subprocess.run(
            [*run, "sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=40000 40007"],
            check=True,
            timeout=10,
        )
        done = subprocess.run(
            [*run, sys.executable, "-c", _CHURN, "8"],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYWSK_VERIFIER": "1"},
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.split()[-2:] == ["ok", "24"]
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False, timeout=10)


def test_a_connect_that_failed_releases_the_port_and_a_retry_reports_its_own(
    wsk: WskTestClient,
) -> None:
    """Linux gives back the port a failed connect() chose: the retry's port is the one
    WskGetLocalAddress reports and the sharing table holds."""
    with socket.socket() as held:  # bound, not listening: a connect to it is refused
        held.bind(("127.0.0.1", 0))
        server = socket.create_server(("127.0.0.1", 0))
        with server:
            sock = wsk.socket(AF_INET).information
            d = wsk.dispatch(sock)
            wildcard = sockaddr_from_tuple(("0.0.0.0", 0))
            assert wsk.call("WskBind", d.WskBind, sock, wildcard, 0).status == STATUS_SUCCESS
            refused = wsk.call(
                "WskConnect", d.WskConnect, sock, sockaddr_from_tuple(held.getsockname()), 0
            )
            assert refused.status != STATUS_SUCCESS
            remote = sockaddr_from_tuple(server.getsockname())
            assert wsk.call("WskConnect", d.WskConnect, sock, remote, 0).status == STATUS_SUCCESS
            accepted, peer = server.accept()
            with accepted:
                _request, local = wsk.local_address(sock)
                assert local.to_tuple()[:2] == peer[:2]
                other = wsk.socket(AF_INET).information
                clash = wsk.call(
                    "WskBind",
                    wsk.dispatch(other).WskBind,
                    other,
                    sockaddr_from_tuple(("127.0.0.1", peer[1])),
                    0,
                )
                assert clash.status == STATUS_ADDRESS_ALREADY_ASSOCIATED
                wsk.close_socket(other)
            wsk.close_socket(sock)
