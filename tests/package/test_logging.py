"""pywsk's logging: a NullHandler on the package, a logger per module, and DEBUG records that
carry the socket, the operation and the NTSTATUS (pywsk._log) from each Pythonic layer and
the verifier; ``pywsk -v`` turns them on.

Every connection here is real loopback TCP against a plain-socket peer; each record is
checked against what the peer and the connection saw.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import sys
import threading
from collections.abc import Iterator

import pytest
import trio

import pywsk.aio
import pywsk.sync
import pywsk.trio
from pywsk import verifier
from pywsk._log import log_operation, socket_id
from pywsk.cli.app import main
from pywsk.nt import NTSTATUS

WAIT = 10.0


@pytest.fixture
def debug(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """pywsk's DEBUG records are captured during the test (``debug.records``): the layers'
    (the provider's own records, which the same calls make underneath, are tested in
    tests/provider/test_provider_logging.py)."""
    provider = logging.getLogger("pywsk.provider")
    level = provider.level
    provider.setLevel(logging.INFO)
    try:
        with caplog.at_level(logging.DEBUG, logger="pywsk"):
            yield caplog
    finally:
        provider.setLevel(level)


def operations(debug: pytest.LogCaptureFixture) -> list[tuple[str, str | None, int | None]]:
    """(operation, socket, NTSTATUS) of each DEBUG record of a socket operation."""
    return [
        (r.__dict__["wsk_operation"], r.__dict__["wsk_socket"], r.__dict__["ntstatus"])
        for r in debug.records
        if "wsk_operation" in r.__dict__ and r.levelno == logging.DEBUG
    ]


class Peer:
    """A loopback peer that reads until our FIN and answers it with its own, or resets."""

    def __init__(self, reset: bool = False) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(WAIT)
        self.port: int = self.server.getsockname()[1]
        self.received = bytearray()
        self.reset = reset
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        conn.settimeout(WAIT)
        with conn:
            if self.reset:
                self.received += conn.recv(1)  # the client is connected and sent a byte
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return  # close with linger 0: an RST
            try:
                while chunk := conn.recv(4096):
                    self.received += chunk
            except ConnectionResetError:
                self.received += b"<RST>"

    def close(self) -> None:
        self.thread.join(WAIT)
        assert not self.thread.is_alive()
        self.server.close()


def assert_graceful(
    debug: pytest.LogCaptureFixture, ident: str | None, port: int, logger: str
) -> None:
    """The records of connect, graceful disconnect, the peer's FIN and a clean close."""
    assert ident is not None
    assert operations(debug) == [
        ("WskConnect", ident, 0),
        ("WskDisconnect", ident, 0),
        ("WskReceive", ident, 0),
        ("WskCloseSocket", ident, 0),
    ]
    messages = [r.getMessage() for r in debug.records]
    assert messages[0].startswith(f"WskConnect socket {ident}: STATUS_SUCCESS (0x00000000) - ")
    assert messages[0].endswith(f"-> 127.0.0.1:{port}")
    assert messages[1].endswith("graceful: our FIN acknowledged")
    assert messages[2].endswith("0 bytes: the peer's FIN")
    assert messages[3].endswith("both directions were disconnected")
    assert all(r.name == logger for r in debug.records)


def test_the_package_logger_has_a_null_handler() -> None:
    handlers = logging.getLogger("pywsk").handlers
    assert any(isinstance(h, logging.NullHandler) for h in handlers)


@pytest.mark.parametrize(
    "module", ["pywsk.aio._connection", "pywsk.trio", "pywsk.sync", "pywsk.verifier"]
)
def test_each_module_logs_to_its_own_logger(module: str) -> None:
    assert sys.modules[module].log.name == module


def test_no_record_is_made_when_debug_is_off(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="pywsk"):
        log_operation(logging.getLogger("pywsk.aio._connection"), "WskConnect", None, 0)
    assert not caplog.records


def test_aio_connect_disconnect_close(debug: pytest.LogCaptureFixture) -> None:
    peer = Peer()

    async def main() -> str | None:
        async with await pywsk.aio.connect("127.0.0.1", peer.port) as conn:
            await conn.send_all(b"hello")
            await conn.disconnect()
            assert await conn.receive_some() == b""
            return socket_id(conn.socket)

    ident = asyncio.run(asyncio.wait_for(main(), WAIT))
    peer.close()
    assert peer.received == b"hello"
    assert_graceful(debug, ident, peer.port, "pywsk.aio._connection")


def test_aio_abort_and_a_refused_connect(debug: pytest.LogCaptureFixture) -> None:
    peer = Peer()
    closed = socket.socket()  # bound, not listening: a connect to it is refused
    closed.bind(("127.0.0.1", 0))

    async def main() -> str | None:
        with pytest.raises(ConnectionRefusedError):
            await pywsk.aio.connect("127.0.0.1", closed.getsockname()[1])
        conn = await pywsk.aio.connect("127.0.0.1", peer.port)
        await conn.abort()
        await conn.aclose()
        return socket_id(conn.socket)

    ident = asyncio.run(asyncio.wait_for(main(), WAIT))
    closed.close()
    peer.close()
    assert peer.received == b"<RST>"
    assert operations(debug) == [
        ("WskConnect", None, NTSTATUS.STATUS_CONNECTION_REFUSED),
        ("WskConnect", ident, 0),
        ("WskDisconnect", ident, 0),
        ("WskCloseSocket", ident, 0),
    ]
    assert "socket -: STATUS_CONNECTION_REFUSED" in debug.records[0].getMessage()
    assert debug.records[2].getMessage().endswith("abortive (WSK_FLAG_ABORTIVE)")
    assert debug.records[3].getMessage().endswith("after an abortive disconnect")


async def read_to_end(conn: pywsk.aio.Connection) -> None:
    while await conn.receive_some():
        pass


def test_aio_peer_reset(debug: pytest.LogCaptureFixture) -> None:
    peer = Peer(reset=True)

    async def main() -> str | None:
        async with await pywsk.aio.connect("127.0.0.1", peer.port) as conn:
            await conn.send_all(b"!")
            with pytest.raises(ConnectionResetError):
                await read_to_end(conn)
            return socket_id(conn.socket)

    ident = asyncio.run(asyncio.wait_for(main(), WAIT))
    peer.close()
    assert peer.received == b"!"
    got = operations(debug)
    assert ("WskReceive", ident, NTSTATUS.STATUS_CONNECTION_RESET) in got
    reset = next(r for r in debug.records if getattr(r, "wsk_operation", "") == "WskReceive")
    assert reset.getMessage().endswith("the peer reset the connection")
    assert got[-1][:2] == ("WskCloseSocket", ident)


def test_sync_connect_disconnect_close(debug: pytest.LogCaptureFixture) -> None:
    peer = Peer()
    with pywsk.sync.connect("127.0.0.1", peer.port, timeout=WAIT) as conn:
        conn.send(b"hi", timeout=WAIT)
        conn.disconnect(timeout=WAIT)
        assert conn.recv(timeout=WAIT) == b""
        ident = socket_id(conn.socket)
    peer.close()
    assert_graceful(debug, ident, peer.port, "pywsk.sync")


def test_trio_connect_send_eof_close(debug: pytest.LogCaptureFixture) -> None:
    peer = Peer()

    async def main() -> str | None:
        with trio.fail_after(WAIT):
            stream = await pywsk.trio.open_connection("127.0.0.1", peer.port)
            await stream.send_all(b"hey")
            await stream.send_eof()
            assert await stream.receive_some() == b""
            await stream.aclose()
            return socket_id(stream.socket)

    ident = trio.run(main)
    peer.close()
    assert_graceful(debug, ident, peer.port, "pywsk.trio")


def test_a_verifier_report(debug: pytest.LogCaptureFixture) -> None:
    """WSK-003 (a buffer with WSK_FLAG_ABORTIVE): the socket and the status it got."""
    sock = object()
    checker = verifier.Verifier(mode="collect")
    checker.event("abortive-with-buffer", sock)
    assert [v.check.id for v in checker.found] == ["WSK-003"]
    report = next(r for r in debug.records if r.levelno == logging.DEBUG)
    assert report.name == "pywsk.verifier"
    assert report.wsk_operation == "verifier WSK-003"  # type: ignore[attr-defined]
    assert report.wsk_socket == socket_id(sock)  # type: ignore[attr-defined]
    assert report.ntstatus == NTSTATUS.STATUS_INVALID_PARAMETER  # type: ignore[attr-defined]


def test_pywsk_verbose_turns_the_records_on(capsys: pytest.CaptureFixture[str]) -> None:
    package = logging.getLogger("pywsk")
    before = list(package.handlers)
    level = package.level
    try:
        assert main(["-v", "demo", "--list"]) == 0
        added = [h for h in package.handlers if h not in before]
        assert len(added) == 1
        assert package.getEffectiveLevel() == logging.DEBUG
        log_operation(logging.getLogger("pywsk.sync"), "WskCloseSocket", None, 0, "checked")
        assert (
            "pywsk.sync DEBUG: WskCloseSocket socket -: STATUS_SUCCESS" in capsys.readouterr().err
        )
    finally:
        for handler in package.handlers:
            if handler not in before:
                package.removeHandler(handler)
        package.setLevel(level)
