"""Fairness scenarios: a full-speed download on socket A, and a graceful WskDisconnect that
must not wait for it - on another socket B, or on A itself.

What it does:

* :class:`StreamPeer` - the far end of a connection in a plain-Python process of its own
  (``python -m pywsk.testing.fairness FD TOTAL SHUTDOWN``), so that it shares no
  interpreter lock with the driver under test.  On :meth:`StreamPeer.go` it sends ``TOTAL``
  bytes with ``sendall`` at full speed, then (if asked) shuts its write side (its FIN follows
  the last byte); a reader thread meanwhile reads to the end and notes, on
  ``CLOCK_MONOTONIC``, when the driver's FIN (or RST) arrived.
* :class:`ReceiveChain` - the usual driver receive loop on one WSK connection socket: one
  IRP and one 64 KiB buffer, re-issued by the completion routine when the previous receive
  pended, and by the issuing loop while receives complete inside the call (no recursion).
  It checks what it receives as a driver that inspects its data would (a BLAKE2b digest of
  the stream, about 1 GB/s, compared with :func:`stream_digest`): that makes it slower than
  the sender, so its receives keep completing inside the call and the chain never runs
  dry - the worst case for a provider that runs every call on one thread.
* :func:`disconnect_other` and :func:`disconnect_same` - one try of each scenario of the
  fairness goal, returning a :class:`FairnessTry` with every timestamp: the call's start and
  return, the FINs on the wire (from a :class:`~pywsk.testing.capture.WireCapture` that sees
  only SYN/FIN/RST segments, when root), and what the peers saw.

What it refuses: waits without a bound - every wait has a timeout and raises
``TimeoutError`` (a child that does not finish in time is killed).

What always holds: it observes and records, and judges nothing; tests assert on the
record, benchmarks aggregate it.  Times named ``*_wall`` are ``time.time()`` (the clock of
capture timestamps), ``*_mono`` are ``time.monotonic()`` (``CLOCK_MONOTONIC``, also the
clock of the peer process).
"""

from __future__ import annotations

import functools
import hashlib
import json
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Self, cast

from ..core.ending import How
from ..nt import (
    IRP,
    STATUS_MORE_PROCESSING_REQUIRED,
    STATUS_PENDING,
    STATUS_SUCCESS,
    STATUS_UNSUCCESSFUL,
    IoAllocateIrp,
    IoFreeIrp,
    IoReuseIrp,
    IoSetCompletionRoutine,
)
from ..wsk import WSK_PROVIDER_CONNECTION_DISPATCH, WSK_SOCKET
from .capture import Segment, WireCapture
from .driver import Request, WskTestClient, make_buffer

__all__ = [
    "CHAIN_RECEIVE",
    "FairnessTry",
    "ReceiveChain",
    "StreamPeer",
    "disconnect_other",
    "disconnect_same",
    "stream_digest",
]

#: The receive size of the chain.
CHAIN_RECEIVE = 64 * 1024
#: The download: large enough that at full loopback speed it outlasts any fair call.
DOWNLOAD = 128 * 1024 * 1024
#: The chain must have received this much before the call is made (it is running).
STARTED = 8 * 1024 * 1024
#: Only the segments that matter, so that decoding the capture costs the test nothing.
CONTROL_SEGMENTS = "tcp[tcpflags] & (tcp-syn|tcp-fin|tcp-rst) != 0"
WAIT = 15.0


# --- the peer process ------------------------------------------------------------------------

#: What the peer sends, again and again (the last piece cut short).
_BLOCK = bytes(range(256)) * 4096  # 1 MiB


@functools.cache
def stream_digest(total: int) -> str:
    """The BLAKE2b digest (hex) of the first ``total`` bytes a :class:`StreamPeer` sends."""
    digest = hashlib.blake2b()
    whole, rest = divmod(total, len(_BLOCK))
    for _ in range(whole):
        digest.update(_BLOCK)
    digest.update(_BLOCK[:rest])
    return digest.hexdigest()


class StreamPeer:
    """A plain TCP peer in its own process, given an accepted socket (the parent's copy
    is closed).  See the module notes; :meth:`result` is its report."""

    def __init__(self, conn: socket.socket, total: int, *, shutdown: bool = True) -> None:
        self.total = total
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pywsk.testing.fairness",
                str(conn.fileno()),
                str(total),
                str(int(shutdown)),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            pass_fds=(conn.fileno(),),
        )
        conn.close()
        self._result: dict[str, Any] | None = None

    def go(self) -> None:
        """Start sending (the reader runs from the start)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def result(self, timeout: float = WAIT) -> dict[str, Any]:
        """The peer's report once it finished: ``sent``, ``received``, ``end`` (a
        :class:`~pywsk.core.ending.How` word: "fin", "rst"; or "timeout"), ``end_mono`` (when the end arrived), ``shutdown_mono`` (when it shut its
        write side, or None).  Raises TimeoutError (and kills it) after ``timeout``."""
        if self._result is None:
            try:
                out, err = self.proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise TimeoutError(f"stream peer did not finish within {timeout} s") from None
            lines = [line for line in out.splitlines() if line.startswith("{")]
            if self.proc.returncode != 0 or not lines:
                raise RuntimeError(f"stream peer failed ({self.proc.returncode}): {err[-2000:]}")
            self._result = cast(dict[str, Any], json.loads(lines[-1]))
        return self._result

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def _peer_main(fd_arg: str, total_arg: str, shutdown_arg: str) -> int:
    """The peer process (see :class:`StreamPeer`)."""
    sock = socket.socket(fileno=int(fd_arg))
    sock.settimeout(WAIT * 2)
    total = int(total_arg)
    report: dict[str, Any] = {"sent": 0, "received": 0, "end": None, "shutdown_mono": None}

    def read_to_end() -> None:
        try:
            while chunk := sock.recv(1 << 16):
                report["received"] += len(chunk)
            report["end"] = str(How.FIN)
        except ConnectionResetError:
            report["end"] = str(How.RST)
        except TimeoutError:
            report["end"] = "timeout"
        report["end_mono"] = time.monotonic()

    reader = threading.Thread(target=read_to_end, daemon=True)
    reader.start()
    if sys.stdin.readline().strip() != "go":
        return 2
    block = memoryview(_BLOCK)
    try:
        while report["sent"] < total:
            piece = block[: min(len(block), total - report["sent"])]
            sock.sendall(piece)
            report["sent"] += len(piece)
        if shutdown_arg == "1":
            sock.shutdown(socket.SHUT_WR)
            report["shutdown_mono"] = time.monotonic()
    except OSError as exc:
        report["send_error"] = repr(exc)
    reader.join(WAIT * 2)
    print(json.dumps(report), flush=True)
    sock.close()
    return 0


# --- the driver side --------------------------------------------------------------------------


class ReceiveChain:
    """A driver's receive loop on ``sock``: one IRP, one ``size``-byte buffer.

    :meth:`start` issues the first receive from the calling thread and returns what that
    call returned.  The completion routine re-issues when its receive had pended
    (``PendingReturned``); the issuing loop goes on while receives complete inside the call.
    The chain ends at the first 0-byte or failed completion (``status``).  ``reached`` is
    set once ``milestone`` bytes arrived, ``ended`` at the end.
    """

    def __init__(self, sock: WSK_SOCKET, milestone: int = 0, size: int = CHAIN_RECEIVE) -> None:
        self.sock = sock
        self.table = cast(WSK_PROVIDER_CONNECTION_DISPATCH, sock.Dispatch)
        irp = IoAllocateIrp(1, False)
        assert irp is not None
        self.irp: IRP = irp
        self._pool, self.buf = make_buffer(size)
        self.milestone = milestone
        self.received = 0
        self.completions = 0
        self.inline = 0  # completions inside the call that issued them
        self.status: int | None = None
        self.ended_wall: float | None = None
        self.digest = hashlib.blake2b()
        self.reached = threading.Event()
        self.ended = threading.Event()

    def start(self) -> int:
        return self._issue()

    def _issue(self) -> int:
        while True:
            IoReuseIrp(self.irp, STATUS_UNSUCCESSFUL)
            IoSetCompletionRoutine(self.irp, self._routine, None, True, True, True)
            status: int = self.table.WskReceive(self.sock, self.buf, 0, self.irp)
            if status == STATUS_PENDING or self.ended.is_set():
                return status

    def _routine(self, _device: Any, irp: IRP, _context: Any) -> int:
        self.completions += 1
        status, got = irp.IoStatus.Status, irp.IoStatus.Information
        if status != STATUS_SUCCESS or not got:
            self.status = status
            self.ended_wall = time.time()
            self.ended.set()
            return STATUS_MORE_PROCESSING_REQUIRED
        self.received += got
        with memoryview(self._pool) as view:
            self.digest.update(view[:got])  # without the interpreter lock
        if self.received >= self.milestone:
            self.reached.set()
        if irp.PendingReturned:
            self._issue()
        else:
            self.inline += 1
        return STATUS_MORE_PROCESSING_REQUIRED

    def wait(self, timeout: float = WAIT) -> None:
        if not self.ended.wait(timeout):
            raise TimeoutError(f"the receive chain did not end within {timeout} s ({self})")

    def free(self) -> None:
        """Free the IRP (only once the chain has ended)."""
        if self.ended.is_set():
            IoFreeIrp(self.irp)

    def __repr__(self) -> str:
        return (
            f"<ReceiveChain received={self.received} completions={self.completions} "
            f"inline={self.inline} status={self.status}>"
        )


# --- the scenarios ------------------------------------------------------------------------------


@dataclass
class FairnessTry:
    """The timeline of one try.  ``fin_*`` are capture segments (None without a capture)."""

    scenario: str
    call_start_wall: float = 0.0
    call_return_wall: float = 0.0
    call_start_mono: float = 0.0
    call_return_mono: float = 0.0
    disconnect: Request | None = None
    #: Our FIN (on the disconnected socket) and the download's end: the FIN of A's peer.
    our_fin: Segment | None = None
    download_end: Segment | None = None
    #: Our FIN comes before the peer's FIN in capture order.
    our_fin_first: bool | None = None
    #: What the disconnected socket's peer saw, and when (``CLOCK_MONOTONIC``).
    peer_end: str | None = None
    peer_end_mono: float | None = None
    #: The download peer's report, and the chain's.
    download: dict[str, Any] = field(default_factory=dict)
    chain_status: int | None = None
    #: The chain received exactly what the peer sent (length and digest).
    chain_intact: bool = False
    chain_received: int = 0
    chain_completions: int = 0
    chain_inline: int = 0

    @property
    def returned_after(self) -> float:
        """Seconds the call took to return."""
        return self.call_return_mono - self.call_start_mono

    @property
    def fin_after_return(self) -> float | None:
        """Seconds from the return to our FIN on the wire (negative: before the return);
        None without a capture."""
        if self.our_fin is None:
            return None
        return self.our_fin.time - self.call_return_wall

    @property
    def completed_after_return(self) -> float | None:
        """Seconds from the return to the disconnect's completion routine (our FIN
        acknowledged, then noticed), or None if it has not completed."""
        if self.disconnect is None or self.disconnect.completed_at is None:
            return None
        return self.disconnect.completed_at - self.call_return_mono

    @property
    def peer_saw_fin_after_return(self) -> float | None:
        """Seconds from the return until the peer process read our FIN (an upper bound of
        the wire time, for runs without a capture)."""
        if self.peer_end_mono is None:
            return None
        return self.peer_end_mono - self.call_return_mono

    def describe(self) -> str:
        def at(t: float | None) -> str:
            return "-" if t is None else f"{(t - self.call_start_wall) * 1e3:+.3f} ms"

        return (
            f"{self.scenario}: returned after {self.returned_after * 1e3:.3f} ms; "
            f"our FIN {at(self.our_fin.time if self.our_fin else None)}, "
            f"download end (peer FIN) "
            f"{at(self.download_end.time if self.download_end else None)}, "
            f"chain received {self.chain_received} in {self.chain_completions} completions "
            f"({self.chain_inline} inline), status {self.chain_status}; peer {self.peer_end}"
        )


def _listener() -> socket.socket:
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)
    lsock.settimeout(WAIT)
    return lsock


def _connect(client: WskTestClient, lsock: socket.socket) -> tuple[WSK_SOCKET, socket.socket]:
    sock = client.connect(lsock.getsockname()[:2])
    peer, _ = lsock.accept()
    return sock, peer


def _start_capture(ports: list[int], capture: bool) -> WireCapture | None:
    if not capture or not WireCapture.available():
        return None
    return WireCapture(ports=ports, host_filter=CONTROL_SEGMENTS).start()


def _download(
    client: WskTestClient, lsock: socket.socket, total: int
) -> tuple[WSK_SOCKET, int, StreamPeer, ReceiveChain]:
    """Socket A, its download peer and its chain, with the chain's first receive pending
    (so that the chain runs in completion routines) and the download under way."""
    sock, conn = _connect(client, lsock)
    port = conn.getpeername()[1]
    peer = StreamPeer(conn, total)
    chain = ReceiveChain(sock, milestone=min(STARTED, total // 4))
    first = chain.start()
    if first != STATUS_PENDING:
        peer.kill()
        raise RuntimeError(f"the first receive did not pend: {first:#x}")
    peer.go()
    if not chain.reached.wait(WAIT):
        peer.kill()
        raise TimeoutError(f"the download did not start: {chain}")
    return sock, port, peer, chain


def _disconnect(client: WskTestClient, sock: WSK_SOCKET, record: FairnessTry) -> None:
    record.call_start_wall = time.time()
    record.call_start_mono = time.monotonic()
    record.disconnect = client.disconnect(sock)
    record.call_return_mono = time.monotonic()
    record.call_return_wall = time.time()


def _finish(
    client: WskTestClient,
    record: FairnessTry,
    cap: WireCapture | None,
    chain: ReceiveChain,
    download: StreamPeer,
    our_port: int,
    download_port: int,
    close: list[WSK_SOCKET],
) -> None:
    """Wait (bounded) for the disconnect and the chain, close the sockets, wait for the
    download peer, and fill in the record."""
    assert record.disconnect is not None
    record.disconnect.wait(WAIT)
    chain.wait(WAIT)
    for sock in close:
        client.close_socket(sock)
    record.download = download.result(WAIT)
    record.chain_status = chain.status
    record.chain_received = chain.received
    record.chain_intact = chain.received == record.download.get(
        "sent"
    ) and chain.digest.hexdigest() == stream_digest(chain.received)
    record.chain_completions = chain.completions
    record.chain_inline = chain.inline
    if cap is not None:
        record.our_fin = cap.wait_fin(from_port=our_port, timeout=WAIT)
        record.download_end = cap.wait_fin(from_port=download_port, timeout=WAIT)
        order = [s for s in cap.segments if s.fin and s.sport in (our_port, download_port)]
        record.our_fin_first = order[0].sport == our_port
    chain.free()


def disconnect_other(
    client: WskTestClient, *, total: int = DOWNLOAD, capture: bool = True
) -> FairnessTry:
    """Scenario (a): A downloads ``total`` bytes through a :class:`ReceiveChain`; this
    thread makes a graceful WskDisconnect on B (connected to an idle peer) while it runs."""
    record = FairnessTry("other socket")
    with _listener() as lsock_a, _listener() as lsock_b:
        port_a, port_b = lsock_a.getsockname()[1], lsock_b.getsockname()[1]
        cap = _start_capture([port_a, port_b], capture)
        try:
            sock_b, conn_b = _connect(client, lsock_b)
            b_port = conn_b.getpeername()[1]
            with StreamPeer(conn_b, 0, shutdown=False) as idle:
                idle.go()
                sock_a, _a_port, download, chain = _download(client, lsock_a, total)
                with download:
                    _disconnect(client, sock_b, record)
                    _finish(client, record, cap, chain, download, b_port, port_a, [sock_b, sock_a])
                    seen = idle.result(WAIT)
            record.peer_end, record.peer_end_mono = seen["end"], seen["end_mono"]
        finally:
            if cap is not None:
                cap.stop()
    return record


def disconnect_same(
    client: WskTestClient, *, total: int = DOWNLOAD, capture: bool = True
) -> FairnessTry:
    """Scenario (b): A downloads ``total`` bytes through a :class:`ReceiveChain`; this
    thread makes a graceful WskDisconnect on A itself while the peer keeps sending."""
    record = FairnessTry("same socket")
    with _listener() as lsock:
        port = lsock.getsockname()[1]
        cap = _start_capture([port], capture)
        try:
            sock, a_port, download, chain = _download(client, lsock, total)
            with download:
                _disconnect(client, sock, record)
                _finish(client, record, cap, chain, download, a_port, port, [sock])
            record.peer_end = record.download.get("end")
            record.peer_end_mono = record.download.get("end_mono")
        finally:
            if cap is not None:
                cap.stop()
    return record


if __name__ == "__main__":
    sys.exit(_peer_main(*sys.argv[1:4]))
