"""examples/c/echosrv.c - static event callbacks, accept events, receive events with
retention and WskRelease, a worker system thread, graceful disconnect - served to Python
sockets (IPv4 and IPv6), nc and a pywsk client, under the verifier; the wire shows a FIN
each way and no RST; unload leaves nothing behind."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator

import pytest

from pywsk import verifier
from pywsk.cdriver import Driver
from pywsk.nt.status import NTSTATUS
from pywsk.testing.capture import WireCapture
from pywsk.testing.driver import WskTestClient
from pywsk.wsk import AF_INET, AF_INET6

WAIT = 10.0


@pytest.fixture(params=[AF_INET, AF_INET6], ids=["ipv4", "ipv6"])
def echosrv(
    request: pytest.FixtureRequest, driver: Callable[[str], Driver]
) -> Iterator[tuple[str, int]]:
    """The C echo server, listening on 127.0.0.1 or ::1: (host, port)."""
    server = driver("echosrv")
    assert server.entry() == NTSTATUS.STATUS_SUCCESS
    assert server.call("StartServer", 0, request.param) == NTSTATUS.STATUS_SUCCESS
    port = server.call("ServerPort", result="int") & 0xFFFF
    yield ("::1" if request.param == AF_INET6 else "127.0.0.1"), port
    assert server.stop is None
    assert server.unload() == []
    assert "echosrv: unloaded\n" in server.debug_output


def echo(host: str, port: int, payload: bytes) -> tuple[bytes, bytes]:
    """Send ``payload``, half-close, read to EOF: (the echo, what followed it)."""
    with socket.create_connection((host, port), timeout=WAIT) as sock:
        sock.sendall(payload)
        data = b""
        while len(data) < len(payload):
            chunk = sock.recv(65536)
            assert chunk, "the server closed before echoing everything"
            data += chunk
        sock.shutdown(socket.SHUT_WR)
        return data, sock.recv(65536)


def test_python_clients(echosrv: tuple[str, int]) -> None:
    host, port = echosrv
    assert echo(host, port, b"ping") == (b"ping", b"")
    big = bytes(range(256)) * 400
    assert echo(host, port, big) == (big, b"")


def test_wire_shows_fin_both_ways_and_no_rst(
    echosrv: tuple[str, int], capture_port: Callable[[int], WireCapture]
) -> None:
    host, port = echosrv
    wire = capture_port(port)
    assert echo(host, port, b"ping") == (b"ping", b"")
    wire.wait_fin(from_port=port)
    wire.sync()
    assert wire.rsts() == []
    assert len(wire.fins()) == 2


def test_a_pywsk_client(echosrv: tuple[str, int]) -> None:
    host, port = echosrv
    with verifier.enabled_for("raise") as running, WskTestClient() as wsk:
        sock = wsk.connect((host, port))
        assert wsk.send(sock, b"from pywsk").wait(WAIT).status == 0
        assert wsk.disconnect(sock).wait(WAIT).status == 0
        data, final = wsk.receive_all(sock, timeout=WAIT)
        assert (data, final.status, final.information) == (b"from pywsk", 0, 0)
    assert running.found == []


@pytest.mark.skipif(shutil.which("nc") is None, reason="nc is not installed")
def test_netcat(echosrv: tuple[str, int]) -> None:
    host, port = echosrv
    result = subprocess.run(
        ["nc", "-N", host, str(port)],
        input=b"via netcat\n",
        capture_output=True,
        timeout=WAIT,
        check=False,
    )
    assert result.stdout == b"via netcat\n"
