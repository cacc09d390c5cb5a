"""Fixtures of the C driver tests: the drivers, built once per session with ``pywsk driver
build`` (so the command is under test too), and a peer that reads until EOF."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pywsk.cdriver import Driver, load

ROOT = Path(__file__).resolve().parents[2]
SOURCES = {
    "disconnect_socket": ROOT / "examples" / "c" / "disconnect_socket.c",
    "sync_client": ROOT / "examples" / "c" / "sync_client.c",
    "echosrv": ROOT / "examples" / "c" / "echosrv.c",
    "udpecho": ROOT / "examples" / "c" / "udpecho.c",
    "misuse": Path(__file__).resolve().parent / "misuse.c",
    "lifecycle": Path(__file__).resolve().parent / "lifecycle.c",
    "features": Path(__file__).resolve().parent / "features.c",
}

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="building C drivers needs gcc")


def line_of(source: Path, marker: str) -> int:
    """The line of ``source`` that carries ``marker`` (1-based)."""
    for number, text in enumerate(source.read_text().splitlines(), 1):
        if marker in text:
            return number
    raise AssertionError(f"{marker!r} is not in {source}")


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``built(name)``: the path of the driver ``name``, built on first use."""
    if shutil.which("gcc") is None:
        pytest.skip("building C drivers needs gcc")
    directory = tmp_path_factory.mktemp("drivers")
    done: dict[str, Path] = {}

    def build(name: str) -> Path:
        if name not in done:
            output = directory / f"{name}.so"
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pywsk",
                    "driver",
                    "build",
                    str(SOURCES[name]),
                    "-o",
                    str(output),
                ],
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert result.returncode == 0, result.stdout + result.stderr
            done[name] = output
        return done[name]

    return build


@pytest.fixture
def driver(built: Callable[[str], Path]) -> Iterator[Callable[[str], Driver]]:
    """``driver(name)``: the built driver, loaded; unloaded afterwards if still loaded."""
    loaded: list[Driver] = []

    def make(name: str) -> Driver:
        instance = load(built(name))
        loaded.append(instance)
        return instance

    yield make
    for instance in loaded:
        if not instance.unloaded and instance.stop is None:
            instance.unload()


#: How long a peer waits for its connection, and then for each read.  The accept wait
#: starts before the test builds its driver, which on a loaded host took more than 10 s
#: (the peer had given up, and the test then saw no echo or no EOF).
PEER_ACCEPT_WAIT = 120.0
PEER_READ_WAIT = 30.0


class ReadingPeer:
    """A plain Python TCP server on 127.0.0.1 for one connection: it sends ``reply``, reads
    until EOF (echoing what it reads if ``echo``), then closes.  ``received`` holds what it
    read; ``outcome`` is "eof" or "reset", as it saw the client go."""

    def __init__(self, reply: bytes = b"", echo: bool = False) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(PEER_ACCEPT_WAIT)
        self.port: int = self.server.getsockname()[1]
        self.reply = reply
        self.echo = echo
        self.received: list[bytes] = []
        self.outcome = ""
        self.done = threading.Event()
        self.conn: socket.socket | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.server.accept()
        except OSError:
            return
        self.conn = conn
        with conn:
            conn.settimeout(PEER_READ_WAIT)
            data = b""
            try:
                if self.reply:
                    conn.sendall(self.reply)
                while chunk := conn.recv(65536):
                    data += chunk
                    if self.echo:
                        conn.sendall(chunk)
                self.outcome = "eof"
            except ConnectionResetError:
                self.outcome = "reset"
            except OSError:  # closed by close(): a stopped driver never disconnects
                return
            self.received.append(data)
        self.done.set()

    def close(self) -> None:
        if self.conn is None and self.thread.is_alive():
            # Still in accept() (closing the socket would not wake it): a connection does.
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 5),
            ):
                pass
        self.server.close()
        if self.conn is not None:
            with contextlib.suppress(OSError):
                self.conn.shutdown(socket.SHUT_RDWR)
        self.thread.join(timeout=10)


@pytest.fixture
def reading_peer() -> Iterator[Callable[..., ReadingPeer]]:
    peers: list[ReadingPeer] = []

    def make(reply: bytes = b"", echo: bool = False) -> ReadingPeer:
        peer = ReadingPeer(reply, echo)
        peers.append(peer)
        return peer

    yield make
    for peer in peers:
        peer.close()
