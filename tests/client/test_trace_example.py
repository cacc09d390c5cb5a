"""The tracer from a program of one's own (examples/trace_connection.py): the same timeline
and diagram the ``pywsk`` commands produce, for a connection to a real server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

from pywsk.testing import WireCapture

ROOT = Path(__file__).resolve().parents[2]
WAIT = 30.0


def _server(listener: socket.socket, got: list[bytes]) -> None:
    conn, _ = listener.accept()
    with conn:
        conn.settimeout(WAIT)
        data = b""
        while chunk := conn.recv(4096):
            data += chunk
        got.append(data)
        conn.sendall(data[::-1])
    # closed after the client's FIN: the server's FIN ends the connection


def test_a_program_draws_its_own_connection(tmp_path: Path) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    got: list[bytes] = []
    server = threading.Thread(target=_server, args=(listener, got), daemon=True)
    server.start()
    with listener:
        done = subprocess.run(
            [
                sys.executable,
                str(ROOT / "examples" / "trace_connection.py"),
                "127.0.0.1",
                str(port),
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            timeout=WAIT,
            env={**os.environ, "PYWSK_VERIFIER": "1"},
        )
        server.join(WAIT)
    assert done.returncode == 0, done.stderr
    assert got == [b"hello, server"]
    assert done.stdout.strip() == (
        "reply: 13 B; we ended it with our FIN; the server with the peer's FIN"
    )
    assert "leak" not in done.stderr
    text = (tmp_path / "timeline.txt").read_text()
    for line in (
        "WskSocketConnect(0.0.0.0:0 -> 127.0.0.1:",
        "WskSend(b'hello, server') returned",
        "IRP of WskDisconnect completed STATUS_SUCCESS",
        "IRP of WskCloseSocket completed STATUS_SUCCESS",
    ):
        assert line in text, text
    # The server's FIN is told either way: WskDisconnectEvent when no WskReceive was pending
    # as it came, or the pending receive completing with 0 bytes (it takes precedence).
    assert (
        "WskDisconnectEvent(Flags=" in text
        or "IRP of WskReceive completed STATUS_SUCCESS, Information=0" in text
    ), text
    assert (tmp_path / "timeline.svg").read_text().startswith("<svg")
    events = json.loads((tmp_path / "timeline.json").read_text())["timeline"]
    completions = [e for e in events if e["kind"] == "complete"]
    assert completions
    assert all(e["irql"] in ("PASSIVE_LEVEL", "DISPATCH_LEVEL") for e in completions)
    assert all(e["thread"] for e in completions)
    callbacks = [e for e in events if e["kind"] == "callback"]
    # Event callbacks run on the provider thread (the one callback here, if it came, is the
    # WskDisconnectEvent above).
    assert len(callbacks) == ("WskDisconnectEvent(Flags=" in text)
    assert all(e["thread"] == "pywsk-provider" for e in callbacks)
    if WireCapture.available():
        flags = [e["flags"] for e in events if e["kind"] == "segment"]
        assert flags[0] == "S"
        assert any("F" in f for f in flags)
        assert not any("R" in f for f in flags)
