"""What every benchmark program shares: the workload constants, the command line, the result line.

Every implementation is one module run as its own process (``python -m benchmarks.impl_x``,
or the compiled C program) with the same command line::

    churn-server N [IDLE]              listen on 127.0.0.1:0, print "PORT p" (with IDLE > 0:
                                       "PORT p q", q a second listener for idle connections,
                                       which it accepts and holds), serve N echo connections
                                       on p, print a result
    churn-client PORT N CONC [IDLE IDLE_PORT]
                                       open IDLE idle connections to IDLE_PORT first, then
                                       run N connections to PORT, CONC in flight; print a
                                       result.  (Idle connections go to a port of their own:
                                       sharing the churn port would make the kernel's connect()
                                       search past their 4-tuples for every new connection.)
                                       With IDLE > 0 the server prints "IDLE-READY" once it
                                       has accepted them all, and the client waits for a line
                                       on stdin (the driver's "go") before the churn.
    bulk-recv                          listen, print "PORT p", receive one connection to EOF
    bulk-send PORT BYTES CC            send BYTES, disconnect gracefully, wait for EOF;
                                       CC is a congestion control name, or "default"
    dgram-server N SIZE BATCH          bind one UDP socket on 127.0.0.1:0, print "PORT p",
                                       echo N datagrams (each back to its sender), print a
                                       result
    dgram-client PORT N SIZE BATCH     one UDP socket: send BATCH datagrams of SIZE bytes,
                                       wait for their echoes, verify them, repeat until N
                                       were echoed; print a result (``rate``: datagrams
                                       echoed per second)

The churn connection, on the client: connect, send ``MSG`` bytes, graceful disconnect, read
the echo to EOF, verify it byte for byte, close.  On the server: accept, read to EOF, echo,
graceful disconnect, close.  Bulk: ``CHUNK``-sized writes and reads.

The datagram payloads are :func:`dgram_payloads`: the i-th datagram of a batch carries i
(4 bytes, little-endian) and then the churn pattern, so an echo lost, reordered or altered
within its batch is seen.  A batch is small enough (``BATCH`` x ``SIZE``) for loopback's
receive buffers, so nothing is dropped by design; a lost echo ends the run as invalid.

Every process prints exactly one JSON line last.  It carries its own counts (``conns``,
``bytes``, ``bad``) so the driver can verify every byte, and ``cpu``: the process CPU time
(all threads, user + system) of the measured work (:func:`restart_cpu_clock`): for churn
from the first connection (opening idle connections is not counted), for bulk from the
sender's connect and the receiver's accept - interpreter start-up, imports and set-up (a
WSK registration, the provider thread) excluded, as for the C program.
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
    "BATCH",
    "DGRAM_TIMEOUT",
    "aligned_buffer",
    "dgram_payloads",
    "announce_port",
    "dispatch",
    "emit",
    "now",
    "restart_cpu_clock",
    "idle_ready",
    "wait_for_go",
    "set_congestion",
    "split_evenly",
]

#: Bytes each churn connection sends (and gets back).
MSG: Final = 1024
#: Bulk write and read unit.
CHUNK: Final = 256 * 1024
#: Datagrams in flight per batch in the datagram workload.
BATCH: Final = 32
#: Seconds a datagram program waits for progress before it gives up (a lost echo).
DGRAM_TIMEOUT: Final = 30.0
#: Everything runs on loopback.
HOST: Final = "127.0.0.1"
#: The churn payload; the C program builds the same bytes (``(i * 7 + 3) & 0xFF``).
PAYLOAD: Final = bytes((i * 7 + 3) & 0xFF for i in range(MSG))

#: The wall clock every program times its runs with (CLOCK_MONOTONIC).
now: Final = time.perf_counter

_cpu0 = time.process_time()


def announce_port(port: int, idle_port: int | None = None) -> None:
    """Tell the driver where the server listens (the first line a server prints)."""
    print(f"PORT {port}" if idle_port is None else f"PORT {port} {idle_port}", flush=True)


def emit(side: str, impl: str, **fields: Any) -> None:
    """Print the process's result line, with its CPU seconds since :func:`dispatch`."""
    record = {"side": side, "impl": impl, **fields, "cpu": time.process_time() - _cpu0}
    print(json.dumps(record), flush=True)


def idle_ready() -> None:
    """Server: every idle connection is accepted (the driver then lets the client start)."""
    print("IDLE-READY", flush=True)


def wait_for_go() -> None:
    """Client: wait until the driver says the server has accepted every idle connection."""
    sys.stdin.readline()


def restart_cpu_clock(at: float | None = None) -> None:
    """Start the CPU count again: clients call it when the measured work starts (after the
    idle connections are open), servers at their first churn connection, so that ``cpu``
    covers the churn alone.  ``at``: the process CPU time (seconds) the count starts from,
    when it was read earlier (by C code)."""
    global _cpu0
    _cpu0 = time.process_time() if at is None else at


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


def dgram_payloads(size: int, batch: int) -> list[bytes]:
    """The ``batch`` datagrams of ``size`` bytes one batch sends (the C program builds the
    same bytes): position ``i`` little-endian in the first 4 bytes, then the pattern."""
    if not 4 <= size <= 65507 or not 1 <= batch <= 1024:
        raise SystemExit(f"size must be 4..65507 and batch 1..1024, not {size}, {batch}")
    pattern = bytes((k * 7 + 3) & 0xFF for k in range(size))
    return [i.to_bytes(4, "little") + pattern[4:] for i in range(batch)]


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
