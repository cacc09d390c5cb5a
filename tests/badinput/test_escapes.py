"""Exceptions that used to escape, or to leave an IRP pending for ever.

* The provider raising after it took an IRP (a bug, or a bad argument no check caught):
  the IRP completes with STATUS_INVALID_PARAMETER and the exception is reported through
  ``sys.unraisablehook`` with a real ``UnraisableHookArgs``.
* In a plain Python process (no pytest hooks): SO_RCVBUF 2**31 / 2**40 through pywsk.sync
  gives a clear exception and seven other connections keep working; a completion routine
  that raises inside WskCloseSocket does not stop the close or WskDeregister; a DPC
  routine that raises does not strand the DPCs behind it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pywsk.nt import STATUS_INVALID_PARAMETER, STATUS_SUCCESS
from pywsk.provider.connection import ConnectionSocket
from pywsk.testing.driver import WskTestClient
from pywsk.wsk import WSK_BUF

SCRIPTS = Path(__file__).parent / "scripts"
WAIT = 10.0


def _run_script(name: str) -> str:
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / name)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": ""},
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # What was reported went through Python's own hook - never a TypeError about its type.
    assert "UnraisableHookArgs" not in result.stderr, result.stderr
    return result.stdout


def test_option_overflow_is_a_status_and_others_keep_working() -> None:
    out = _run_script("option_overflow.py")
    assert "connect with SO_RCVBUF 2**31: NtStatusError" in out
    assert out.count("STATUS_INVALID_PARAMETER") == 5
    assert "7 of 7 other connections carried data" in out
    assert "aio connect with SO_RCVBUF 2**31: NtStatusError" in out
    assert "aio set_option SO_RCVBUF 2**31: NtStatusError" in out
    assert "aio: 7 of 7 other connections carried data" in out


def test_raising_routines_do_not_stop_close_deregister_or_dpcs() -> None:
    out = _run_script("raising_routines.py")
    assert "completed STATUS_SUCCESS" in out  # the close IRP
    assert "WskDeregister returned" in out
    assert "DPCs after a raising one ran: [1, 2, 3, 4]" in out


def test_provider_exception_after_the_irp_was_taken_completes_it(
    wsk: WskTestClient,
    listener: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = listener()
    sock = wsk.connect(server.getsockname())
    peer, _ = server.accept()
    reported: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)

    def broken_send(self: ConnectionSocket, Buffer: WSK_BUF, Flags: int, Irp: Any) -> int:
        raise RuntimeError("a provider bug (on purpose)")

    monkeypatch.setattr(ConnectionSocket, "send", broken_send)
    request = wsk.send(sock, b"data")
    monkeypatch.undo()
    assert request.returned == STATUS_INVALID_PARAMETER
    request.wait(WAIT)
    assert request.status == STATUS_INVALID_PARAMETER
    assert len(reported) == 1
    assert type(reported[0]).__name__ == "UnraisableHookArgs"
    assert isinstance(reported[0].exc_value, RuntimeError)
    assert "WskSend" in reported[0].err_msg
    # The socket goes on working.
    after = wsk.send(sock, b"more")
    after.wait(WAIT)
    assert after.status == STATUS_SUCCESS
    assert peer.recv(16) == b"more"
    peer.close()
