"""Servers and clients nobody here wrote, started by the tests: redis-server, nginx,
``openssl s_server``, ``python -m http.server``; and an independent packet capture.

Each server listens on 127.0.0.1, on a port it chose or a free one, with its files in the
test's temporary directory, and is stopped at the end of the test.  A server is ready when
its own log says so (never after a sleep); every wait is bounded.  A test that needs a
program that is not installed is skipped (``scripts/run`` installs them all).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import WAIT, Daemon

from pywsk.testing.capture import Segment, WireCapture


def need(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        pytest.skip(f"{program} is not installed (scripts/run installs it)")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _started(make: Any) -> Daemon:
    """``make(port)`` with a free port; again (at most 3 times) if another process took it."""
    for attempt in range(3):
        try:
            return make(free_port())  # type: ignore[no-any-return]
        except RuntimeError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def redis(tmp: Path) -> Daemon:
    program = need("redis-server")

    def make(port: int) -> Daemon:
        daemon = Daemon(
            [program, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(tmp)],
            r"Ready to accept connections",
        )  # fmt: skip
        daemon.port = port
        return daemon

    return _started(make)


NGINX_CONF = """
{user}
daemon off;
worker_processes 1;
error_log stderr notice;
pid {tmp}/nginx.pid;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  server {{ listen 127.0.0.1:{port}; root {tmp}/www; }}
}}
"""


def nginx(tmp: Path, files: dict[str, bytes]) -> Daemon:
    program = need("nginx")
    www = tmp / "www"
    www.mkdir(exist_ok=True)
    for name, data in files.items():
        (www / name).write_bytes(data)

    def make(port: int) -> Daemon:
        conf = tmp / "nginx.conf"
        # As root, nginx's workers would run as "nobody", who cannot read the test's files.
        user = "user root;" if os.geteuid() == 0 else ""
        conf.write_text(NGINX_CONF.format(tmp=tmp, port=port, user=user))
        # The master logs "start worker process N" after it bound the listening socket.
        daemon = Daemon(
            [program, "-c", str(conf), "-p", str(tmp), "-e", "stderr"],
            r"start worker process \d+",
        )
        daemon.port = port
        return daemon

    return _started(make)


def http_server(tmp: Path, files: dict[str, bytes]) -> Daemon:
    for name, data in files.items():
        (tmp / name).write_bytes(data)
    daemon = Daemon(
        [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1",
         "--directory", str(tmp)],
        r"Serving HTTP on 127\.0\.0\.1 port (\d+)",
    )  # fmt: skip
    daemon.port = int(daemon.match.group(1))
    return daemon


def openssl_server(tmp: Path) -> Daemon:
    program = need("openssl")
    key, cert = tmp / "key.pem", tmp / "cert.pem"
    subprocess.run(
        [program, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert),
         "-days", "1"],
        check=True, capture_output=True, timeout=WAIT,
    )  # fmt: skip
    daemon = Daemon(
        [program, "s_server", "-accept", "127.0.0.1:0", "-cert", str(cert), "-key", str(key),
         "-naccept", "1"],
        r"ACCEPT 127\.0\.0\.1:(\d+)",
    )  # fmt: skip
    daemon.port = int(daemon.match.group(1))
    return daemon


def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.stop()


# --- an independent capture ---------------------------------------------------------------------


class Witness:
    """tcpdump on the server's port, started by the test (not by pywsk): the evidence the
    reports are checked against."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.capture = WireCapture(ports=[port]).start()

    def connection(self, client_port: int) -> list[Segment]:
        self.capture.sync()
        return [s for s in self.capture.segments if {s.sport, s.dport} == {client_port, self.port}]

    def stop(self) -> None:
        self.capture.stop()


def witness_available() -> bool:
    return WireCapture.available()


def ends(segments: list[Segment], port: int) -> tuple[str | None, float | None]:
    """How ``port`` first ended the connection on the wire (fin / rst) and when."""
    for s in segments:
        if s.sport == port and (s.fin or s.rst):
            return ("fin" if s.fin else "rst"), s.time
    return None, None


def payload_bytes(segments: list[Segment], port: int) -> int:
    """Payload bytes ``port`` put on the wire, by sequence number (retransmissions once)."""
    mine = [s for s in segments if s.sport == port]
    syn = next((s for s in mine if s.syn), None)
    if syn is None:
        return 0
    return max(((s.seq - syn.seq - 1) % 2**32 + s.length for s in mine if s.length), default=0)
