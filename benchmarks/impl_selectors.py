"""A hand-written non-blocking loop on ``selectors.DefaultSelector`` (epoll): no framework.

The closest Python gets to the C program: the same structure, one ``select`` per batch of
events, level-triggered.  See :mod:`benchmarks.common` for the command line.
"""

from __future__ import annotations

import contextlib
import errno
import selectors
import socket
from typing import cast

from .common import (
    CHUNK,
    HOST,
    MSG,
    PAYLOAD,
    aligned_buffer,
    announce_port,
    dispatch,
    emit,
    idle_ready,
    now,
    restart_cpu_clock,
    set_congestion,
    wait_for_go,
)

IMPL = "selectors"
READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
TIMEOUT = 30.0


class _Served:
    """A server-side connection: what it received so far."""

    __slots__ = ("data",)

    def __init__(self) -> None:
        self.data = bytearray()


class _Client:
    """A client-side connection: connected yet, and the echo so far."""

    __slots__ = ("connected", "data")

    def __init__(self) -> None:
        self.connected = False
        self.data = bytearray()


def _listen(backlog: int, announce: bool = True) -> socket.socket:
    listener = socket.socket()
    listener.bind((HOST, 0))
    listener.listen(backlog)
    listener.setblocking(False)
    if announce:
        announce_port(listener.getsockname()[1])
    return listener


def churn_server(n_arg: str, idle_arg: str = "0") -> int:
    n = int(n_arg)
    sel = selectors.DefaultSelector()
    listener = _listen(4096, announce=False)
    idle: list[socket.socket] = []
    if int(idle_arg):
        idle_listener = _listen(4096, announce=False)
        sel.register(idle_listener, READ, idle)
        announce_port(listener.getsockname()[1], idle_listener.getsockname()[1])
    else:
        announce_port(listener.getsockname()[1])
    sel.register(listener, READ, None)
    conns = nbytes = bad = 0
    started = False
    while conns < n:
        events = sel.select(TIMEOUT)
        if not events:
            raise TimeoutError("churn-server: no progress")
        for key, _mask in events:
            served = key.data
            if served is idle:  # hold idle connections, never read them
                with contextlib.suppress(BlockingIOError):
                    while True:
                        idle.append(cast(socket.socket, key.fileobj).accept()[0])
                        if len(idle) == int(idle_arg):
                            idle_ready()
                continue
            if served is None:
                if not started:
                    restart_cpu_clock()
                    started = True
                while True:
                    try:
                        conn, _ = listener.accept()
                    except BlockingIOError:
                        break
                    conn.setblocking(False)
                    sel.register(conn, READ, _Served())
                continue
            conn = cast(socket.socket, key.fileobj)
            assert isinstance(served, _Served)
            while True:
                try:
                    chunk = conn.recv(65536)
                except BlockingIOError:
                    break
                if chunk:
                    served.data += chunk
                    continue
                sel.unregister(conn)
                if served.data:  # EOF after the message: echo, FIN, close
                    if conn.send(served.data) != len(served.data) or served.data != PAYLOAD:
                        bad += 1
                    conn.shutdown(socket.SHUT_WR)
                    conns += 1
                    nbytes += len(served.data)
                conn.close()  # (an idle connection closed by the client has no data)
                break
    emit("server", IMPL, conns=conns, bytes=nbytes, bad=bad)
    return int(bad != 0 or conns != n)


def churn_client(
    port_arg: str, n_arg: str, conc_arg: str, idle_arg: str = "0", idle_port: str = "0"
) -> int:
    port, n, conc = int(port_arg), int(n_arg), int(conc_arg)
    idle = [socket.create_connection((HOST, int(idle_port))) for _ in range(int(idle_arg))]
    if idle:
        wait_for_go()
    address = (HOST, port)
    sel = selectors.DefaultSelector()
    conns = nbytes = bad = started = 0

    def start() -> None:
        conn = socket.socket()
        conn.setblocking(False)
        err = conn.connect_ex(address)
        if err not in (0, errno.EINPROGRESS):
            raise OSError(err, "connect")
        sel.register(conn, WRITE, _Client())

    restart_cpu_clock()
    t0 = now()
    while started < min(conc, n):
        start()
        started += 1
    while conns < n:
        events = sel.select(TIMEOUT)
        if not events:
            raise TimeoutError("churn-client: no progress")
        for key, _mask in events:
            conn, state = key.fileobj, key.data
            assert isinstance(conn, socket.socket)
            assert isinstance(state, _Client)
            if not state.connected:
                err = conn.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise OSError(err, "connect")
                if conn.send(PAYLOAD) != MSG:
                    bad += 1
                conn.shutdown(socket.SHUT_WR)  # graceful disconnect
                state.connected = True
                sel.modify(conn, READ, state)
                continue
            while True:
                try:
                    chunk = conn.recv(65536)
                except BlockingIOError:
                    break
                if chunk:
                    state.data += chunk
                    continue
                sel.unregister(conn)
                conn.close()
                conns += 1
                nbytes += len(state.data)
                bad += state.data != PAYLOAD
                if started < n:
                    start()
                    started += 1
                break
    seconds = now() - t0
    for conn in idle:
        conn.close()
    emit(
        "client",
        IMPL,
        conns=conns,
        bytes=nbytes,
        bad=bad,
        seconds=seconds,
        rate=conns / seconds,
        idle=len(idle),
    )
    return int(bad != 0 or conns != n)


def bulk_recv() -> int:
    listener = _listen(16)
    restart_cpu_clock()  # the transfer's CPU: from the accept on
    listener.setblocking(True)
    listener.settimeout(TIMEOUT)
    conn, _ = listener.accept()
    conn.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(conn, READ)
    t0 = now()
    buf = aligned_buffer(CHUNK)
    total = 0
    eof = False
    while not eof:
        if not sel.select(TIMEOUT):
            raise TimeoutError("bulk-recv: no progress")
        while True:
            try:
                got = conn.recv_into(buf)
            except BlockingIOError:
                break
            if got == 0:
                eof = True
                break
            total += got
    seconds = now() - t0
    conn.shutdown(socket.SHUT_WR)
    conn.close()
    emit("receiver", IMPL, bytes=total, seconds=seconds)
    return 0


def bulk_send(port_arg: str, total_arg: str, cc: str = "default") -> int:
    port, total = int(port_arg), int(total_arg)
    chunk = memoryview(b"b" * CHUNK)
    sel = selectors.DefaultSelector()
    restart_cpu_clock()  # the transfer's CPU: from the connect on
    t0 = now()
    conn = socket.socket()
    set_congestion(conn, cc)
    conn.setblocking(False)
    conn.connect_ex((HOST, port))
    sel.register(conn, WRITE)
    sent = 0
    while sent < total:
        if not sel.select(TIMEOUT):
            raise TimeoutError("bulk-send: no progress")
        while sent < total:
            try:
                sent += conn.send(chunk[: min(CHUNK, total - sent)])
            except BlockingIOError:
                break
    conn.shutdown(socket.SHUT_WR)  # graceful disconnect after every byte
    sel.modify(conn, READ)
    while True:
        if not sel.select(TIMEOUT):
            raise TimeoutError("bulk-send: no EOF")
        try:
            if conn.recv(64) == b"":
                break
        except BlockingIOError:
            continue
    seconds = now() - t0
    conn.close()
    emit("sender", IMPL, bytes=sent, seconds=seconds, MBps=sent / seconds / 1e6)
    return 0


if __name__ == "__main__":
    dispatch(
        {
            "churn-server": churn_server,
            "churn-client": churn_client,
            "bulk-recv": bulk_recv,
            "bulk-send": bulk_send,
        }
    )
