"""``pywsk serve --udp``: a WSK datagram socket that echoes, sinks or sources, and reports per peer.

What it does: :class:`UdpServer` binds a WSK datagram socket
(:class:`~pywsk.cli.udp_socket.WskDatagramSocket`) and serves every peer in one mode:

* ``echo``: each datagram goes back to its sender (WskSendMessages, from a worker thread -
  a completion routine runs at DISPATCH_LEVEL and must not wait);
* ``sink``: datagrams are counted and dropped;
* ``source``: a peer's first datagram is its request; ``count`` datagrams of ``size`` bytes
  carrying pywsk's sequence header go back to it.

It runs until ``datagrams`` have been received, ``duration`` has passed, or :meth:`stop`
(Ctrl-C, SIGTERM); then each peer gets a :class:`~pywsk.cli.udp_report.UdpReport`: what it
sent us (received, lost, duplicated, reordered, from pywsk's sequence headers when they are
there) and what we sent it, reconciled with a capture when one runs.

What it refuses: to count loss without sequence headers ("not judged"); to call a stream
whole that had not ended when we stopped (inconclusive).

What always holds: every wait is bounded; the socket is closed through WskCloseSocket, also
after Ctrl-C.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from ..testing.udpcapture import UdpCapture
from .udp_report import HEADER_SIZE, SequenceStats, UdpReport, reconcile, sequenced
from .udp_socket import Arrival, WskDatagramError, WskDatagramSocket

__all__ = ["UdpServeOptions", "UdpServer"]

Mode = Literal["echo", "sink", "source"]
#: After the stop: datagrams are still read until none came for this long (at most 2 s).
QUIET = 0.2
#: Datagrams waiting for the worker at most: a flood costs bounded memory.
QUEUE_LIMIT = 10_000


@dataclass(frozen=True)
class UdpServeOptions:
    host: str = "127.0.0.1"
    port: int = 0
    mode: Mode = "echo"
    count: int = 10
    size: int = 64
    datagrams: int | None = None
    duration: float | None = None
    wire: Literal["auto", "capture", "state"] = "auto"


@dataclass
class _Peer:
    """What one peer sent us and what we sent it."""

    address: tuple[Any, ...]
    stats: SequenceStats = field(default_factory=SequenceStats)
    sent: int = 0
    sent_bytes: int = 0
    unanswered: int = 0
    failures: list[str] = field(default_factory=list)


class UdpServer:
    """See the module's documentation."""

    def __init__(self, options: UdpServeOptions, on_arrival: Callable[[Arrival], None]) -> None:
        self.options = options
        self.on_arrival = on_arrival
        self.peers: dict[tuple[Any, ...], _Peer] = {}
        self.received = 0
        self.ended_by = ""
        self._stop = threading.Event()
        self._work = threading.Condition()
        self._queue: list[Arrival] = []
        #: Datagrams received but dropped because the worker's queue was full, per sender.
        self.overflow: dict[tuple[Any, ...], int] = {}
        self.capture: UdpCapture | None = None
        self.sock: WskDatagramSocket | None = None
        self.stopped_at: float | None = None

    def open(self) -> tuple[Any, ...]:
        """Bind (and start the capture when asked or possible); the bound address."""
        self.sock = WskDatagramSocket(self.options.host, self.options.port, self._arrived)
        wire = self.options.wire
        if wire == "capture" or (wire == "auto" and UdpCapture.available()):
            self.capture = UdpCapture([int(self.sock.local[1])])
        return self.sock.local

    def _arrived(self, arrival: Arrival) -> None:
        """A completion routine's datagram (DISPATCH_LEVEL): queue it for the worker - at
        most QUEUE_LIMIT; past that it is counted as received and dropped, and said so."""
        with self._work:
            if len(self._queue) >= QUEUE_LIMIT:
                self.overflow[arrival.sender] = self.overflow.get(arrival.sender, 0) + 1
                return
            self._queue.append(arrival)
            self._work.notify_all()

    def stop(self, why: str = "stopped (Ctrl-C or SIGTERM)") -> None:
        if not self.ended_by:
            self.ended_by = why
        self._stop.set()
        with self._work:
            self._work.notify_all()

    def run(self) -> None:
        """Serve until a limit or :meth:`stop`."""
        options = self.options
        deadline = None if options.duration is None else time.monotonic() + options.duration
        while not self._stop.is_set():
            with self._work:
                self._work.wait_for(lambda: bool(self._queue) or self._stop.is_set(), 0.2)
                batch, self._queue = self._queue, []
            for arrival in batch:
                self._serve(arrival)
            if options.datagrams is not None and self.received >= options.datagrams:
                self.stop(f"{self.received} datagram(s) received (--datagrams)")
            elif deadline is not None and time.monotonic() >= deadline:
                self.stop(f"--duration {options.duration:g} s passed")
        # Read what is still arriving (until quiet), then stop receiving (WskCloseSocket
        # completes the pending receive); what came in meanwhile is counted, not answered.
        sock = self.sock
        assert sock is not None
        sock.wait_quiet(QUIET, 2.0)
        sock.close()
        self.stopped_at = time.time()
        with self._work:
            rest, self._queue = self._queue, []
        for arrival in rest:
            self._serve(arrival, answer=False)

    def _serve(self, arrival: Arrival, answer: bool = True) -> None:
        assert self.sock is not None
        self.received += 1
        peer = self.peers.get(arrival.sender)
        first = peer is None
        if peer is None:
            peer = self.peers[arrival.sender] = _Peer(arrival.sender)
        peer.stats.add(arrival.payload)
        self.on_arrival(arrival)
        replies: list[bytes] = []
        if not answer:
            peer.unanswered += 1
        elif self.options.mode == "echo":
            replies = [arrival.payload]
        elif self.options.mode == "source" and first:
            size, count = max(self.options.size, HEADER_SIZE), self.options.count
            replies = [sequenced(n, count, size) for n in range(count)]
        if replies:
            try:
                sent, sent_bytes = self.sock.send(replies, arrival.sender)
            except WskDatagramError as exc:
                peer.failures.append(str(exc))
                return
            peer.sent += sent
            peer.sent_bytes += sent_bytes

    def reports(self) -> list[UdpReport]:
        """One report per peer (call after :meth:`run`)."""
        for sender in self.overflow:  # a peer all of whose datagrams were dropped
            self.peers.setdefault(sender, _Peer(sender))
        return [self._report(peer) for peer in self.peers.values()]

    def _report(self, peer: _Peer) -> UdpReport:
        assert self.sock is not None
        where = f"{peer.address[0]}:{peer.address[1]}"
        report = UdpReport(f"serve --udp ({self.options.mode}): peer {where}", "ok", "")
        stats = peer.stats
        size = stats.received_bytes
        report.facts.update(
            peer=list(peer.address),
            received=stats.received,
            received_bytes=size,
            sent=peer.sent,
            sent_bytes=peer.sent_bytes,
            sequence=stats.as_dict(),
        )
        report.claim(
            f"received {stats.received} datagram(s), {size} B", "WskReceiveFrom completions"
        )
        report.claim(
            f"sent {peer.sent} datagram(s), {peer.sent_bytes} B",
            "WskSendMessages IRPs completed with STATUS_SUCCESS",
        )
        if peer.unanswered and self.options.mode != "sink":
            report.claim(
                f"{peer.unanswered} not answered: received as we stopped",
                "WskReceiveFrom completions after the stop",
            )
        for failure in peer.failures:
            report.claim(f"a send failed: {failure}", "its IRP's status")
            report.outcome = "deviation"
        if stats.total is None:
            report.claim(
                "loss and order not judged", "the datagrams carry no pywsk sequence header"
            )
            report.verdict = f"served in {self.options.mode} mode; ended: {self.ended_by}"
        else:
            report.claim(
                f"of the peer's {stats.total}: lost {stats.lost}, reordered {stats.reordered}, "
                f"duplicated {stats.duplicates}",
                "the sequence headers",
            )
            if stats.reordered or stats.duplicates:
                report.outcome = "deviation"
                report.verdict = "the peer's datagrams arrived out of order or twice"
            elif stats.lost:
                report.outcome = "inconclusive"
                report.verdict = (
                    f"{stats.lost} of the peer's datagrams had not arrived when we stopped "
                    f"({self.ended_by}): lost, or still to come"
                )
            else:
                report.verdict = f"the peer's {stats.total} datagram(s) arrived whole, in order"
        if report.outcome == "ok" and peer.failures:
            report.outcome = "deviation"
        dropped = self.overflow.get(peer.address, 0)
        if dropped:
            report.claim(
                f"{dropped} more received and dropped unread: serve's queue was full "
                f"({QUEUE_LIMIT} datagrams)",
                "WskReceiveFrom completions",
            )
            if report.outcome != "deviation":
                report.outcome = "inconclusive"
                report.verdict = "serve itself dropped datagrams: their loss and order not judged"
        if self.capture is not None:
            reconcile(
                report,
                self.capture,
                self.sock.local,
                peer.address,
                peer.sent,
                stats.received + dropped,
                self.stopped_at,
            )
        return report

    def close(self) -> None:
        if self.capture is not None:
            self.capture.stop()
            self.capture = None
        if self.sock is not None:
            self.sock.close()
