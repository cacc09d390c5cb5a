"""TLS for pywsk.aio: ``connect(..., ssl=)`` and ``serve(..., ssl=)``, against the standard
library's TLS on a plain socket (the peer) and against each other, on asyncio and uvloop.

The certificate is made by the ``openssl`` command for ``localhost`` / ``127.0.0.1``.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from aio_helpers import WAIT, Run, in_thread, loop_fixture

import pywsk.aio
from pywsk._native import open_sockets
from pywsk.testing.capture import WireCapture

run = loop_fixture()

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(cert.pem, key.pem): self-signed, for localhost and 127.0.0.1, valid one day."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec"),
            *("-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"),
            *("-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
        timeout=WAIT,
    )
    return cert, key


@pytest.fixture
def server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    return context


@pytest.fixture
def client_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate[0]))


def tls_peer(
    server_context: ssl.SSLContext, script: Callable[[ssl.SSLSocket], object]
) -> tuple[int, threading.Thread, list[object]]:
    """A plain-socket TLS server for one connection running ``script``; (port, thread,
    [what the script returned, or the exception it raised])."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(WAIT)
    outcome: list[object] = []

    def serve() -> None:
        with listener:
            raw, _ = listener.accept()
        raw.settimeout(WAIT)
        # suppress_ragged_eofs=False: a FIN without close_notify raises, never reads as b"".
        with context_wrap(server_context, raw) as tls:
            try:
                outcome.append(script(tls))
            except Exception as exc:
                outcome.append(exc)

    thread = threading.Thread(target=serve)
    thread.start()
    return listener.getsockname()[1], thread, outcome


def context_wrap(context: ssl.SSLContext, raw: socket.socket) -> ssl.SSLSocket:
    return context.wrap_socket(raw, server_side=True, suppress_ragged_eofs=False)


def test_close_notify_then_fin_then_no_rst(
    run: Run, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    def peer(tls: ssl.SSLSocket) -> object:
        assert tls.recv(100) == b"hello"
        tls.sendall(b"world")
        assert tls.recv(100) == b""  # our close_notify (a ragged EOF would raise)
        raw = tls.unwrap()  # the peer's close_notify
        assert raw.recv(100) == b""  # then our FIN
        raw.close()  # the peer's FIN
        return "clean"

    async def main() -> None:
        port, thread, outcome = tls_peer(server_context, peer)
        capture = WireCapture(port).start() if WireCapture.available() else None
        try:
            conn = await pywsk.aio.connect(
                "127.0.0.1", port, ssl=client_context, server_hostname="localhost"
            )
            async with conn:
                assert conn.ssl_object.version() in ("TLSv1.2", "TLSv1.3")
                await conn.send_all(b"hello")
                assert await conn.receive_exactly(5) == b"world"
                await conn.disconnect()  # close_notify, then our FIN, acknowledged
                with pytest.raises(BrokenPipeError):
                    await conn.send_all(b"late")
                assert await conn.receive_some() == b""  # the peer's close_notify and FIN
                assert conn.disconnected_by is pywsk.aio.DisconnectReason.PEER_GRACEFUL
            await in_thread(thread.join, WAIT)
            assert outcome == ["clean"]
            if capture is not None:
                capture.sync()
                assert not capture.rsts(), capture.describe()
                ours = conn.local_address[1]
                sent = capture.matching(from_port=ours)
                fin = next(i for i, s in enumerate(sent) if s.fin)
                assert not [s for s in sent[fin + 1 :] if s.length], "data after our FIN"
        finally:
            if capture is not None:
                capture.stop()

    run(main())


def test_serve_with_ssl_and_connect_with_ssl(
    run: Run, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    async def echo_lines(conn: pywsk.aio.TlsConnection) -> None:
        line = await conn.receive_until(b"\n", 1000)
        await conn.send_all(line.upper() + b"\n")
        await conn.disconnect()
        assert await conn.receive_some() == b""

    async def main() -> None:
        async with await pywsk.aio.serve(echo_lines, "127.0.0.1", 0, ssl=server_context) as server:
            port = server.local_address[1]
            async with await pywsk.aio.connect("localhost", port, ssl=client_context) as conn:
                await conn.send_all(b"over tls\n")
                assert await conn.receive_until(b"\n", 1000) == b"OVER TLS"
                assert await conn.receive_some() == b""  # the server's close_notify
                await conn.disconnect()

    run(main())


def test_an_untrusted_certificate_fails_and_leaves_nothing_open(
    run: Run, server_context: ssl.SSLContext
) -> None:
    async def main() -> None:
        before = open_sockets()
        with socket.create_server(("127.0.0.1", 0)) as listener:
            listener.settimeout(WAIT)

            def accept_and_wrap() -> None:
                raw, _ = listener.accept()
                with raw, contextlib.suppress(ssl.SSLError, OSError):
                    server_context.wrap_socket(raw, server_side=True)

            accepting = threading.Thread(target=accept_and_wrap)
            accepting.start()
            try:
                with pytest.raises(ssl.SSLCertVerificationError):
                    # ssl=True: the system's CAs, which do not know this certificate.
                    await pywsk.aio.connect("127.0.0.1", listener.getsockname()[1], ssl=True)
            finally:
                await in_thread(accepting.join, WAIT)
        assert open_sockets() == before

    run(main())


def test_a_fin_without_close_notify_is_not_an_end_of_stream(
    run: Run, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    def peer(tls: ssl.SSLSocket) -> object:
        tls.sendall(b"partial")
        tls.shutdown(socket.SHUT_WR)  # drops the TLS session: a FIN, no close_notify
        return "truncated"

    async def main() -> None:
        port, thread, outcome = tls_peer(server_context, peer)
        conn = await pywsk.aio.connect(
            "127.0.0.1", port, ssl=client_context, server_hostname="localhost"
        )
        async with conn:
            assert await conn.receive_exactly(7) == b"partial"
            with pytest.raises(ssl.SSLEOFError):
                await conn.receive_some()
        await in_thread(thread.join, WAIT)
        assert outcome == ["truncated"]

    run(main())


def test_server_hostname_needs_ssl(run: Run) -> None:
    async def main() -> None:
        with pytest.raises(ValueError, match="server_hostname"):
            await pywsk.aio.connect(  # type: ignore[call-overload]
                "127.0.0.1", 9, server_hostname="localhost"
            )

    run(main())
