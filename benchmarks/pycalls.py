"""Python function calls per WskSend and per churn connection, and CPU per WskSend.

``python -m benchmarks.pycalls SENDS CONNS`` prints one JSON line.  A ``sys.setprofile``
counter runs on the calling thread and, installed from a DPC, on the provider thread, so
every call is counted wherever the provider runs it; each thread counts into its own table.
Calls are split by where the called code lives: ``pywsk`` (the package: nt, wsk, provider)
or ``driver`` (the benchmark's driver code: its completion routines).  ``c_calls`` are calls
of built-in functions (``sendmsg``, ``getsockopt``, ``dict.get``...), attributed to the
calling code's side.

* **WskSend**: ``SENDS`` WskSends of 64 bytes on one connection to a plain-socket reader,
  each on its own IRP with a completion routine: issued from the main thread, and issued
  inside one DPC (on the provider thread, where today's provider acts inline).  Also the CPU
  per WskSend of the same loops without the profiler (process CPU, every thread), and of a
  bare ``sendmsg`` of the same 64 bytes on a plain socket.
* **churn**: the faithful churn client of ``benchmarks.impl_pywsk`` for ``CONNS``
  connections against the ``selectors`` server (another process), then its churn server
  against the ``selectors`` client: calls per connection on each side.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import pywsk

from .common import HOST

ROOT = Path(__file__).resolve().parent.parent
PYWSK_DIR = str(Path(pywsk.__file__).resolve().parent)
MESSAGE = bytes(64)


class Counter:
    """Profile events per thread: ``(event, side) -> count``."""

    def __init__(self) -> None:
        self.tables: dict[int, dict[tuple[str, str], int]] = {}

    def hook(self) -> Callable[[FrameType, str, Any], None]:
        table: dict[tuple[str, str], int] = {}
        self.tables[threading.get_ident()] = table

        def profile(frame: FrameType, event: str, _arg: Any) -> None:
            if event == "call" or event == "c_call":
                side = "pywsk" if frame.f_code.co_filename.startswith(PYWSK_DIR) else "driver"
                key = (event, side)
                table[key] = table.get(key, 0) + 1

        return profile

    def totals(self, per: int) -> dict[str, float]:
        out: dict[str, float] = {}
        for table in self.tables.values():
            for (event, side), count in table.items():
                name = f"{'calls' if event == 'call' else 'c_calls'}_{side}"
                out[name] = out.get(name, 0.0) + count / per
        out["calls"] = out.get("calls_pywsk", 0.0) + out.get("calls_driver", 0.0)
        out["c_calls"] = out.get("c_calls_pywsk", 0.0) + out.get("c_calls_driver", 0.0)
        return {k: round(v, 2) for k, v in sorted(out.items())}


@contextmanager
def profiled(counter: Counter) -> Iterator[None]:
    """Count on this thread and on the provider thread (the hook is set from a DPC)."""
    from pywsk.testing.driver import run_in_dpc

    run_in_dpc(lambda: sys.setprofile(counter.hook()))
    sys.setprofile(counter.hook())
    try:
        yield
    finally:
        sys.setprofile(None)
        run_in_dpc(lambda: sys.setprofile(None))


def _reader() -> tuple[socket.socket, threading.Thread]:
    """A plain listener whose one connection is read to EOF by a thread (not profiled)."""
    listener = socket.create_server((HOST, 0))

    def drain() -> None:
        conn, _ = listener.accept()
        with conn, contextlib.suppress(ConnectionResetError):  # a close without disconnect
            while conn.recv(1 << 16):
                pass

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    return listener, thread


def sends(count: int) -> dict[str, Any]:
    from pywsk.nt import (
        STATUS_MORE_PROCESSING_REQUIRED,
        IoFreeIrp,
        IoSetCompletionRoutine,
        KeSetEvent,
    )
    from pywsk.testing.driver import run_in_dpc
    from pywsk.wsk import WSK_BUF

    from .impl_pywsk import Driver, _irp, _notification, _pool_buffer, _wait, conn_dispatch

    driver = Driver()
    listener, drainer = _reader()
    sock = driver.connect(listener.getsockname()[1])
    table = conn_dispatch(sock)
    buf = WSK_BUF(_pool_buffer(len(MESSAGE), MESSAGE)[1], 0, len(MESSAGE))
    out: dict[str, Any] = {"sends": count}

    class Batch:
        """``count`` WskSends, each on its own IRP (allocated beforehand)."""

        def __init__(self) -> None:
            self.irps = [_irp() for _ in range(count)]
            self.finished = _notification()
            self.done = 0

        def routine(self, _device: Any, _irp_: Any, _context: Any) -> int:
            self.done += 1
            if self.done == count:
                KeSetEvent(self.finished, 0, False)
            return STATUS_MORE_PROCESSING_REQUIRED

        def __call__(self) -> None:
            for irp in self.irps:
                IoSetCompletionRoutine(irp, self.routine, None, True, True, True)
                table.WskSend(sock, buf, 0, irp)

    def measure(name: str, issue: Callable[[Batch], None]) -> None:
        for profile in (False, True):
            loop = Batch()
            counter = Counter()
            cpu0 = time.process_time()
            if profile:
                with profiled(counter):
                    issue(loop)
                    _wait(loop.finished, name)
            else:
                issue(loop)
                _wait(loop.finished, name)
            cpu = time.process_time() - cpu0
            for irp in loop.irps:
                IoFreeIrp(irp)
            if profile:
                out[name] = counter.totals(count)
            else:
                out[f"{name}_cpu_us"] = round(cpu / count * 1e6, 2)

    measure("thread", lambda loop: loop())
    measure("dpc", lambda loop: run_in_dpc(loop, timeout=60.0))
    driver.call(table.WskCloseSocket, sock)
    drainer.join(10)
    listener.close()
    driver.close()

    plain_listener, plain_drainer = _reader()
    plain = socket.create_connection(plain_listener.getsockname()[:2])
    cpu0 = time.process_time()
    for _ in range(count):
        plain.sendmsg([MESSAGE])
    out["bare_sendmsg_cpu_us"] = round((time.process_time() - cpu0) / count * 1e6, 2)
    plain.close()
    plain_drainer.join(10)
    plain_listener.close()
    return out


def _peer(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.impl_selectors", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


def churn(conns: int) -> dict[str, Any]:
    from .impl_pywsk import ChurnClient, ChurnServer, Driver, listen_dispatch

    conc = 16
    out: dict[str, Any] = {"conns": conns}
    driver = Driver()
    server = _peer("churn-server", str(conns))
    assert server.stdout is not None
    port = int(server.stdout.readline().split()[1])
    counter = Counter()
    with profiled(counter):
        client = ChurnClient(driver, port, conns, conc)
        client.run()
    server.wait(60)
    out["client"] = {**counter.totals(conns), "ok": client.conns == conns and client.bad == 0}

    churn_server = ChurnServer(driver, conns, 0)
    peer = _peer("churn-client", str(churn_server.port), str(conns), str(conc))
    counter = Counter()
    with profiled(counter):
        churn_server.run()
    peer.wait(60)
    ok = churn_server.conns == conns and churn_server.bad == 0
    out["server"] = {**counter.totals(conns), "ok": ok}
    driver.call(listen_dispatch(churn_server.listen).WskCloseSocket, churn_server.listen)
    driver.close()
    return out


def run(send_count: int, conns: int) -> dict[str, Any]:
    result = {"send": sends(send_count), "churn": churn(conns)}
    result["ok"] = result["churn"]["client"]["ok"] and result["churn"]["server"]["ok"]
    return result


def markdown_lines(result: dict[str, Any]) -> list[str]:
    """The table of docs/performance.md for a pycalls result."""
    if not result.get("send"):
        return []
    send, churn_ = result["send"], result["churn"]
    lines = [
        "",
        "**Python calls per operation** (`sys.setprofile` on the calling and the provider "
        "thread; pywsk = the package, driver = the benchmark's routines; C = built-ins)",
        "",
        "| operation | Python calls (pywsk + driver) | C calls | CPU µs (no profiler) |",
        "|---|---|---|---|",
    ]
    for label, row, cpu in (
        ("WskSend 64 B + completion, from a thread", send["thread"], send["thread_cpu_us"]),
        ("WskSend 64 B + completion, in a DPC", send["dpc"], send["dpc_cpu_us"]),
        ("churn connection, client", churn_["client"], None),
        ("churn connection, server", churn_["server"], None),
    ):
        lines.append(
            f"| {label} | {row['calls']:.1f} ({row.get('calls_pywsk', 0):.1f} + "
            f"{row.get('calls_driver', 0):.1f}) | {row['c_calls']:.1f} | "
            f"{'' if cpu is None else f'{cpu:.2f}'} |"
        )
    lines.append(
        f"| bare `sendmsg` of 64 B (plain socket) | | | {send['bare_sendmsg_cpu_us']:.2f} |"
    )
    return lines


def main(argv: list[str]) -> int:
    send_count = int(argv[0]) if argv else 5000
    conns = int(argv[1]) if len(argv) > 1 else 1000
    print(json.dumps(run(send_count, conns)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
