"""Microsoft's echo server sample (examples/echosrv.py), driven by real clients."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pywsk.testing.capture import WireCapture
from pywsk.testing.driver import WskTestClient
from pywsk.testing.tcp import abort_with_rst

ROOT = Path(__file__).resolve().parents[1]
WAIT = 10.0


@pytest.fixture
def echosrv() -> Iterator[int]:
    """The example running in its own process; yields its port; stops it with SIGINT."""
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "echosrv.py"), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(process.stdout.readline()))  # type: ignore[union-attr]
    reader.start()
    reader.join(WAIT)
    match = re.search(r"listening on \[::\]:(\d+)", line[0] if line else "")
    assert match, (line, process.poll())
    try:
        yield int(match.group(1))
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=WAIT)
        assert process.returncode == 0, err
        assert "echosrv: stopped" in out
        assert "pywsk verifier" not in err, err  # no violation, no leak at exit


def echo(host: str, port: int, payload: bytes) -> tuple[bytes, str]:
    """Send ``payload``, FIN, read to the end; returns what came back and how it ended."""
    with socket.create_connection((host, port), timeout=WAIT) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        data = bytearray()
        try:
            while chunk := sock.recv(1 << 16):
                data += chunk
        except ConnectionResetError:
            return bytes(data), "rst"
        return bytes(data), "fin"


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_echoes_then_disconnects_gracefully(echosrv: int, host: str) -> None:
    payload = bytes(range(256)) * 400
    assert echo(host, echosrv, payload) == (payload, "fin")


def test_many_clients_at_once(echosrv: int) -> None:
    results: list[tuple[bytes, str]] = []
    payloads = [b"client %d " % i * 500 for i in range(16)]
    threads = [
        threading.Thread(target=lambda p=p: results.append(echo("127.0.0.1", echosrv, p)))
        for p in payloads
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
        assert not t.is_alive()
    assert sorted(results) == sorted((p, "fin") for p in payloads)


def test_the_wire_shows_fin_both_ways_and_no_rst(echosrv: int) -> None:
    if not WireCapture.available():
        pytest.skip("packet capture needs root and tcpdump")
    with WireCapture(ports=[echosrv]) as cap:
        assert echo("127.0.0.1", echosrv, b"ping") == (b"ping", "fin")
        cap.wait_fin(from_port=echosrv)
        cap.sync()
        assert cap.rsts() == []
        assert len(cap.fins()) == 2


def test_a_client_reset_does_not_disturb_the_server(echosrv: int) -> None:
    sock = socket.create_connection(("127.0.0.1", echosrv), timeout=WAIT)
    sock.sendall(b"x")
    assert sock.recv(1) == b"x"
    abort_with_rst(sock)
    sock.close()
    assert echo("127.0.0.1", echosrv, b"still here") == (b"still here", "fin")


def test_a_pywsk_client(echosrv: int) -> None:
    with WskTestClient() as wsk:
        sock = wsk.connect(("::1", echosrv))
        assert wsk.send(sock, b"from pywsk").wait(WAIT).status == 0
        assert wsk.disconnect(sock).wait(WAIT).status == 0
        data, final = wsk.receive_all(sock, timeout=WAIT)
        assert (data, final.status, final.information) == (b"from pywsk", 0, 0)


@pytest.mark.skipif(shutil.which("nc") is None, reason="nc is not installed")
def test_netcat(echosrv: int) -> None:
    result = subprocess.run(
        ["nc", "-N", "127.0.0.1", str(echosrv)],
        input=b"via netcat\n",
        capture_output=True,
        timeout=WAIT,
        check=False,
    )
    assert result.stdout == b"via netcat\n"
