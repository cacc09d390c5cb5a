"""The KSOCKET port (examples/ksocket.py), run as a program with the verifier on: its client
part talks to a loopback peer, its server part answers a real client."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WAIT = 30.0


def test_ksocket_port_runs_both_parts_cleanly() -> None:
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "ksocket.py")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYWSK_VERIFIER": "1"},
    )
    assert process.stdout is not None
    lines: list[str] = []

    def read_until_port() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if "server listening" in line:
                return

    reader = threading.Thread(target=read_until_port)
    reader.start()
    reader.join(WAIT)
    match = re.search(r"listening on 127\.0\.0\.1:(\d+)", "".join(lines))
    assert match, (lines, process.poll())
    with socket.create_connection(("127.0.0.1", int(match.group(1))), timeout=WAIT) as sock:
        sock.sendall(b"HELLO FROM USERMODE!\n")
        sock.shutdown(socket.SHUT_WR)  # as `nc -q` does
        answer = bytearray()
        ended = "FIN"
        try:
            while chunk := sock.recv(100):
                answer += chunk
        except ConnectionResetError:
            # KSOCKET closes without WskDisconnect: WskCloseSocket aborts, as on Windows.
            ended = "RST"
    out, err = process.communicate(timeout=WAIT)
    out = "".join(lines) + out
    assert process.returncode == 0, (out, err)
    assert bytes(answer) == b"Hello from WSK!\0"
    assert ended == "RST"
    assert "TCP client:\nHTTP/1.1 200 OK" in out
    assert "TCP server:\nHELLO FROM USERMODE!" in out
    assert "client STATUS_SUCCESS" in out
    assert "server STATUS_SUCCESS" in out
    assert "pywsk verifier" not in err, err  # no violation, no leak at exit
