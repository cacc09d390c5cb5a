"""Running the real ``pywsk`` commands: subprocesses, ``pywsk serve``, socat, and their fixtures.

Every subprocess runs with the verifier on (``PYWSK_VERIFIER=1``): a WSK or IRP rule the
commands break is a ``BugCheck`` in their output, which the tests reject.  Every wait is
bounded; every process a test starts is stopped at the end of the test.
"""

from __future__ import annotations

import json
import os
import queue
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
WAIT = 60.0


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYWSK_VERIFIER"] = "1"
    env["COLUMNS"] = "200"
    env.pop("FORCE_COLOR", None)
    return env


def pywsk(*args: str, timeout: float = WAIT) -> subprocess.CompletedProcess[str]:
    """``python -m pywsk.cli ARGS`` to completion (bounded)."""
    return subprocess.run(
        [sys.executable, "-m", "pywsk.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=environment(),
        check=False,
    )


def clean(result: subprocess.CompletedProcess[str]) -> None:
    """No traceback and no verifier report in a command's output."""
    for stream in (result.stdout, result.stderr):
        assert "Traceback" not in stream, stream
        assert "BugCheck" not in stream, stream
        assert "DRIVER_VERIFIER" not in stream, stream


def probe_json(*args: str, timeout: float = WAIT) -> tuple[int, list[dict[str, Any]]]:
    """``pywsk probe ARGS --json``: the exit status and the reports."""
    return probe_result(pywsk("probe", *args, "--json", timeout=timeout))


def probe_result(result: subprocess.CompletedProcess[str]) -> tuple[int, list[dict[str, Any]]]:
    """The exit status and the reports of a finished ``pywsk probe --json``."""
    clean(result)
    assert result.returncode in (0, 1, 4, 5), result.stdout + result.stderr
    reports: list[dict[str, Any]] = json.loads(result.stdout)
    return result.returncode, reports


def readline(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise TimeoutError("no line from the process in time")
    return proc.stdout.readline()


class Server:
    """A running ``pywsk serve --json`` (its first line told the port)."""

    def __init__(self, args: tuple[str, ...], new_session: bool = False) -> None:
        self.args = args
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pywsk.cli", "serve", "--json", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=environment(),
            start_new_session=new_session,  # its own process group, for a Ctrl-C to it all
        )
        line = readline(self.proc, WAIT)
        if not line:
            _out, err = self.proc.communicate(timeout=WAIT)
            raise RuntimeError(f"pywsk serve did not start: {err}")
        self.listening: dict[str, Any] = json.loads(line)
        assert self.listening["event"] == "listening", line
        self.port = int(self.listening["port"])
        self.address = f"127.0.0.1:{self.port}"
        self.lines: list[dict[str, Any]] = []
        self.stderr = ""
        self.returncode: int | None = None

    def finish(self, timeout: float = WAIT, stop: bool = False) -> list[dict[str, Any]]:
        """Wait for the server to exit (``stop``: ask it first, with SIGTERM); return the
        connection reports it logged."""
        if stop and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGTERM)
            out, err = self.proc.communicate(timeout=timeout)
        self.stderr = err
        self.returncode = self.proc.returncode
        assert "Traceback" not in err, err
        assert "BugCheck" not in err, err
        self.lines = [json.loads(line) for line in out.splitlines() if line.strip()]
        return [line for line in self.lines if line.get("event") == "connection"]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=WAIT)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


class Daemon:
    """A program whose log lines (stdout and stderr) are read as they come."""

    def __init__(self, argv: list[str], ready: str, cwd: Path | None = None) -> None:
        self.argv = argv
        self.port = 0
        """The port it listens on (set by whoever started it)."""
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=cwd,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        self.match = self.wait_for(ready)

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put("")

    def wait_for(self, pattern: str, timeout: float = WAIT) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.001))
            except queue.Empty:
                raise TimeoutError(f"{self.argv[0]}: no {pattern!r} in {self.log}") from None
            if not line:
                raise RuntimeError(f"{self.argv[0]} exited: {''.join(self.log)}")
            self.log.append(line)
            found = re.search(pattern, line)
            if found:
                return found

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=WAIT)
        self._reader.join(WAIT)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class Socat(Daemon):
    """``socat -d -d TCP-LISTEN:0,... RIGHT``: a TCP server nobody here wrote."""

    def __init__(self, listen_options: str, right: str) -> None:
        super().__init__(
            [
                "socat",
                "-d",
                "-d",
                f"TCP-LISTEN:0,bind=127.0.0.1,reuseaddr,fork{listen_options}",
                right,
            ],
            r"listening on .*:(\d+)\s*$",
        )
        self.port = int(self.match.group(1))
        self.address = f"127.0.0.1:{self.port}"


def _serve() -> Iterator[Any]:
    """``serve(*args)`` starts ``pywsk serve --json ARGS``; every server is stopped after."""
    started: list[Server] = []

    def start(*args: str) -> Server:
        server = Server(args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()


def _socat() -> Iterator[Any]:
    """``socat(listen_options, right)`` starts a socat server on 127.0.0.1 (skips without
    socat: add it with ``apt-get install socat``; scripts/run does)."""
    if shutil.which("socat") is None:
        pytest.skip("socat is not installed (apt-get install socat)")
    started: list[Socat] = []

    def start(right: str, listen_options: str = "") -> Socat:
        server = Socat(listen_options, right)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def serve_fixture() -> Any:
    """A test module declares ``serve = serve_fixture()`` to use the ``serve`` fixture."""
    return pytest.fixture(name="serve")(_serve)


def socat_fixture() -> Any:
    """A test module declares ``socat = socat_fixture()`` to use the ``socat`` fixture."""
    return pytest.fixture(name="socat")(_socat)
