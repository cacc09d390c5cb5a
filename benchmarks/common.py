"""What every benchmark program shares: the workload constants, the command line, the result line.

Every implementation is one module run as its own process (``python -m benchmarks.impl_x``,
or the compiled C program) with the same command line::

    churn-server N [IDLE]              listen on 127.0.0.1:0, print "PORT p", serve N echo
                                       connections (and hold IDLE idle ones), print a result
    churn-client PORT N CONC [IDLE]    open IDLE idle connections first, then run N
                                       connections, CONC in flight; print a result
    bulk-recv                          listen, print "PORT p", receive one connection to EOF
    bulk-send PORT BYTES CC            send BYTES, disconnect gracefully, wait for EOF;
                                       CC is a congestion control name, or "default"

The churn connection, on the client: connect, send ``MSG`` bytes, graceful disconnect, read
the echo to EOF, verify it byte for byte, close.  On the server: accept, read to EOF, echo,
graceful disconnect, close.  Bulk: ``CHUNK``-sized writes and reads.

Every process prints exactly one JSON line last.  It carries its own counts (``conns``,
``bytes``, ``bad``) so the driver can verify every byte, and ``cpu``: the process CPU time
(all threads, user + system) from :func:`dispatch` to the result - interpreter start-up and
imports excluded, as for the C program, whose clock starts in ``main``.
"""

from __future__ import annotations

import json
import mmap
import socket
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, NoReturn

__all__ = [
    "CHUNK",
    "HOST",
    "MSG",
    "PAYLOAD",
    "aligned_buffer",
    "announce_port",
    "dispatch",
    "emit",
    "now",
    "set_congestion",
    "split_evenly",
]

#: Bytes each churn connection sends (and gets back).
MSG: Final = 1024
#: Bulk write and read unit.
CHUNK: Final = 256 * 1024
#: Everything runs on loopback.
HOST: Final = "127.0.0.1"
#: The churn payload; the C program builds the same bytes (``(i * 7 + 3) & 0xFF``).
PAYLOAD: Final = bytes((i * 7 + 3) & 0xFF for i in range(MSG))

#: The wall clock every program times its runs with (CLOCK_MONOTONIC).
now: Final = time.perf_counter

_cpu0 = time.process_time()


def announce_port(port: int) -> None:
    """Tell the driver where the server listens (the first line a server prints)."""
    print(f"PORT {port}", flush=True)


def emit(side: str, impl: str, **fields: Any) -> None:
    """Print the process's result line, with its CPU seconds since :func:`dispatch`."""
    record = {"side": side, "impl": impl, **fields, "cpu": time.process_time() - _cpu0}
    print(json.dumps(record), flush=True)


def set_congestion(sock: socket.socket, cc: str) -> None:
    """Set ``TCP_CONGESTION`` on the sender's socket ("default": leave the system's)."""
    if cc != "default":
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, cc.encode())


def aligned_buffer(size: int) -> memoryview:
    """A page-aligned receive buffer.

    ``bytearray(256 KiB)`` starts 16 bytes past a page boundary, and ``copy_to_user`` into
    such a destination ran at about half speed on the baseline machine (baselines.md,
    finding 3); every ``recv_into`` here uses page-aligned memory, as the C program does.
    """
    return memoryview(mmap.mmap(-1, size))


def split_evenly(total: int, parts: int) -> list[int]:
    """``total`` connections over ``parts`` workers, as evenly as possible."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def dispatch(handlers: Mapping[str, Callable[..., int]]) -> NoReturn:
    """Run the handler the command line names with its string arguments; exit with its code."""
    global _cpu0
    if len(sys.argv) < 2 or sys.argv[1] not in handlers:
        print(f"usage: {sys.argv[0]} {{{','.join(handlers)}}} ARGS...", file=sys.stderr)
        raise SystemExit(2)
    _cpu0 = time.process_time()
    raise SystemExit(handlers[sys.argv[1]](*sys.argv[2:]))
