"""One ``pywsk probe`` run: a WSK client connection to a server, and the report of what the
server did, built only from what was observed.

What it does: :class:`ProbeRun` opens a connection socket (WskSocket, WskBind, WskConnect,
WSK_EVENT_DISCONNECT), keeps a WskReceive pending all along (:class:`Reader`), streams the
payload (:class:`Payload`: text, a file, or N bytes of a pattern, sent 1 MiB at a time from
the first millisecond), performs the scenario's actions, and at the end writes the report:
how many bytes went each way (bytes *we received*, bytes of ours whose WskSend completed),
how and when the server ended the connection and which WSK observation says so, whether it
did so on its own, in answer to the scenario's disconnect, or only in answer to our
clean-up, and whether our FIN was acknowledged.  When a capture ran, every claim is
reconciled with it (:mod:`pywsk.cli.evidence`).

What it refuses: to print payload bytes unless asked (``show_data``); to count an end that
our clean-up caused as the server's own (``--expect``).

What always holds: memory per run is bounded - at most :data:`KEEP` bytes of the reply are
kept (more are counted), the payload is never built whole - and every wait is bounded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..core.ending import Ending
from ..nt import STATUS_CONNECTION_RESET, STATUS_PENDING, STATUS_SUCCESS
from ..wsk import WSK_EVENT_DISCONNECT, WSK_SOCKET
from .evidence import Claims, WireFacts
from .session import Call, Connection, Session
from .timeline import Report, Timeline
from .wire import CaptureWire, StateWire, Wire, WireMode, open_wire

__all__ = ["CHUNK", "KEEP", "Payload", "ProbeOptions", "ProbeRun", "Reader", "pattern"]

Expect = Literal["any", "fin", "rst", "none"]

CHUNK = 1 << 20
#: Reply bytes kept for the report (and --http); more are counted, not kept.
KEEP = 1 << 20
_PATTERN = bytes(i % 251 for i in range(CHUNK + 251))


def pattern(offset: int, size: int) -> bytes:
    """``size`` bytes of the probe's pattern (byte ``i`` of the stream is ``i % 251``)."""
    out = bytearray()
    while size > 0:
        start = offset % 251
        piece = min(size, CHUNK)
        out += _PATTERN[start : start + piece]
        offset += piece
        size -= piece
    return bytes(out)


@dataclass(frozen=True)
class Payload:
    """What to send: literal bytes, a file, or ``size`` bytes of a pattern (streamed)."""

    data: bytes | None = None
    path: str | None = None
    size: int | None = None

    def total(self) -> int:
        if self.data is not None:
            return len(self.data)
        if self.path is not None:
            return Path(self.path).stat().st_size
        return self.size or 0

    def chunks(self) -> Iterator[bytes]:
        if self.data is not None:
            if self.data:
                yield self.data
        elif self.path is not None:
            with open(self.path, "rb") as f:
                while piece := f.read(CHUNK):
                    yield piece
        else:
            offset, size = 0, self.size or 0
            while offset < size:
                step = min(CHUNK, size - offset)
                yield pattern(offset, step)
                offset += step

    def whole(self, limit: int = 64 * CHUNK) -> bytes | None:
        """The payload in one piece (a final buffer), if it is at most ``limit`` bytes."""
        if self.total() > limit:
            return None
        return b"".join(self.chunks())


@dataclass(frozen=True)
class ProbeOptions:
    host: str
    port: int
    payload: Payload | None = None
    timeout: float = 5.0
    connect_timeout: float = 5.0
    stall: float = 1.0
    size: int = 8 * 1024 * 1024
    wire: WireMode = "auto"
    expect: Expect = "any"
    await_reply: bool = False
    expect_bytes: int | None = None
    http: str | None = None
    """``METHOD /path``: the payload is that request; the reply is parsed as HTTP."""
    show_data: bool = False
    pcap: str | None = None
    progress: Callable[[str, int, int | None], None] | None = None
    """``progress(what, done, total)`` during long transfers (sent and received bytes)."""
    shared_wire: CaptureWire | None = None
    """One capture for many runs (``--repeat``): started and stopped by the caller."""


# --- reading everything the server sends ---------------------------------------------------------


class Reader:
    """Keeps one WskReceive pending until the connection ends; records what arrived.

    The next receive is issued by whoever handles a completion: the issuing thread for an
    inline completion, the completion routine for a pended one (never recursively).  Calls
    act on the calling thread, so a routine may be issuing on another thread when the
    scenario closes the socket: :meth:`stop` (run by the session before WskCloseSocket)
    ends the pumping and waits for a receive being issued, as a driver's rundown would."""

    def __init__(
        self,
        session: Session,
        sock: WSK_SOCKET,
        chunk: int = 65536,
        keep: int = KEEP,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self.session = session
        self.sock = sock
        self.chunk = chunk
        self.keep = keep
        self.progress = progress
        self.total = 0
        self.first_at: float | None = None
        self.last_at: float | None = None
        self.head = bytearray()
        self.final: Call | None = None
        self.done = threading.Event()
        #: Set at the first data from the server, or at its end: a reply came.
        self.replied = threading.Event()
        self._marks: list[tuple[float, int]] = []
        self._lock = threading.Condition()
        self._stopped = False
        self._issuing = 0

    def start(self) -> Reader:
        self.session.before_close(self.sock, self.stop)
        self._pump()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Issue no more receives; wait (bounded) for one being issued to return."""
        with self._lock:
            self._stopped = True
            self._lock.wait_for(lambda: not self._issuing, timeout)

    def _pump(self) -> None:
        while True:
            with self._lock:
                if self._stopped:
                    return
                self._issuing += 1
            try:
                call = self.session.receive(self.sock, self.chunk, group="receive")
            finally:
                with self._lock:
                    self._issuing -= 1
                    self._lock.notify_all()
            if call.settle_later(self._settled):
                return
            if not self._take(call):
                return

    def _settled(self, call: Call) -> None:
        if self._take(call):
            self._pump()

    def _take(self, call: Call) -> bool:
        if call.status == STATUS_SUCCESS and call.information:
            at = call.completed_at or time.time()
            with self._lock:
                self.total += len(call.data)
                if len(self.head) < self.keep:
                    self.head += call.data[: self.keep - len(self.head)]
                self.first_at = self.first_at or at
                self.last_at = at
            if self.progress is not None:
                self.progress(self.total)
            self.replied.set()
            return True
        self.final = call
        self.done.set()
        self.replied.set()
        return False

    def mark(self, at: float) -> None:
        """Remember how much had arrived at ``at`` (e.g. our FIN), for :meth:`bytes_after`."""
        with self._lock:
            self._marks.append((at, self.total))

    def received(self) -> bytes:
        """The first :attr:`keep` bytes received."""
        with self._lock:
            return bytes(self.head)

    def bytes_after(self, at: float | None) -> int:
        """Bytes received after the mark taken at ``at``."""
        if at is None:
            return 0
        with self._lock:
            before = next((n for t, n in self._marks if t == at), None)
            return self.total - before if before is not None else 0

    @property
    def read_to_end(self) -> bool:
        """We read until the server's FIN (a 0-byte receive completion)."""
        final = self.final
        return final is not None and final.status == STATUS_SUCCESS


# --- one run -----------------------------------------------------------------------------------


class ProbeRun:
    """One scenario against the server: a client, a connection, a reader, a wire observer."""

    def __init__(self, report: Report, options: ProbeOptions, address: tuple[Any, ...]) -> None:
        self.report = report
        self.options = options
        self.address = address
        self.timeline = report.timeline
        self.session = Session(self.timeline, show_data=options.show_data)
        self.wire: Wire | None = None
        self.context = Connection("probe")
        self.sock: WSK_SOCKET | None = None
        self.reader: Reader | None = None
        self.local_port = 0
        self.disconnect: Call | None = None
        #: The abortive disconnect, if the scenario made one (``disconnect`` may be set back
        #: to the graceful one it recovered).
        self.aborted: Call | None = None
        self.close: Call | None = None
        self.sends: list[Call] = []
        self.issued = 0
        """Bytes handed to WskSend (and final buffers) so far."""
        self.cleanup_at: float | None = None
        """When we began ending the connection only to finish the probe (not the scenario's
        own action): an end of the server's after this was caused by us."""
        self.interrupted = False
        self.fin_mark: float | None = None
        """When our graceful disconnect was asked for (received bytes are counted from it)."""
        self.wire_facts: WireFacts | None = None
        #: time.monotonic() at the start, once connected, at the end (for --repeat).
        self.started_at: float | None = None
        self.connected_at: float | None = None
        self.finished_at: float | None = None

    # --- set-up ---------------------------------------------------------------------------------
    def open(self) -> WSK_SOCKET:
        options = self.options
        if options.shared_wire is not None:
            self.wire = options.shared_wire
        else:
            self.wire = open_wire(
                options.wire, self.session, self.timeline, self.address[1], str(self.address[0])
            )
        self.timeline.t0 = time.time()
        self.started_at = time.monotonic()  # (after the wire: a capture takes time to start)
        sock = self.session.connect(
            self.address,
            timeout=options.connect_timeout,
            context=self.context,
            events=WSK_EVENT_DISCONNECT,
        )
        self.sock = sock
        self.connected_at = time.monotonic()
        local = self.session.local_address(sock)
        self.local_port = int(local[1]) if local else 0
        if isinstance(self.wire, StateWire):
            self.wire.track(sock, "probe")
        progress = self.options.progress
        self.reader = Reader(
            self.session,
            sock,
            keep=64 * KEEP if options.http else KEEP,
            progress=(lambda n: progress("received", n, options.expect_bytes))
            if progress
            else None,
        ).start()
        return sock

    # --- actions ----------------------------------------------------------------------------------
    def send(self, data: bytes, label: str | None = None, record: bool = True) -> Call:
        assert self.sock is not None
        call = self.session.send(self.sock, data, label=label, record=record, group="send")
        self.sends.append(call)
        self.issued += len(data)
        return call

    def sent(self) -> int:
        """Bytes of ours whose WskSend (or final buffer) completed STATUS_SUCCESS."""
        calls = [*self.sends, *([self.disconnect] if self.disconnect else [])]
        return sum(
            c.information
            for c in calls
            if c.done and c.status == STATUS_SUCCESS and isinstance(c.information, int)
        )

    def send_payload(self) -> None:
        """Stream the payload: the next WskSend once the previous one completed; stop (with a
        note) when one stays pending for the whole timeout - the server is not reading."""
        payload = self.options.payload
        if payload is None or self.sock is None:
            return
        total = payload.total()
        big = total > CHUNK
        progress = self.options.progress
        for n, piece in enumerate(payload.chunks()):
            label = f"WskSend({len(piece)} B)" if big else None
            call = self.send(piece, label=label, record=not big or n < 2)
            if call.returned == STATUS_PENDING and not call.completed_within(self.options.timeout):
                call.show()
                self.timeline.note(
                    f"a WskSend of the payload is still pending after {self.options.timeout:g} s:"
                    f" the server is not reading ({self.issued} of {total} B handed to WSK)"
                )
                break
            if progress is not None and big:
                progress("sent", self.sent(), total)
        if (
            self.options.await_reply
            and self.reader is not None
            and not self.reader.replied.wait(self.options.timeout)
        ):
            self.timeline.note("no reply from the server before the timeout")

    def graceful(self, final: bytes | None = None, wait: bool = True) -> Call:
        assert self.sock is not None
        # What arrives from here on arrived after our FIN was asked for (the call itself may
        # block its caller for a while).
        self.fin_mark = time.time()
        if self.reader is not None:
            self.reader.mark(self.fin_mark)
        call = self.session.disconnect(self.sock, final)
        if final:
            self.issued += len(final)
        self.disconnect = call
        if wait and not call.completed_within(self.options.timeout):
            self.timeline.note(
                f"the graceful disconnect has not completed after {self.options.timeout:g} s:"
                " the server has not acknowledged our FIN"
            )
        return call

    def abort(self) -> Call:
        assert self.sock is not None
        call = self.session.disconnect(self.sock, abortive=True)
        self.disconnect = self.aborted = call
        return call

    def wait_for_end(self) -> bool:
        """Wait (bounded) until the reader has seen the end of the server's data - and, when
        that end was the server's FIN or RST, for its WskDisconnectEvent too (a call acts at
        once on this thread: a close made as soon as the receive saw the end would come
        before the event, which then is never delivered).  An event that does not come
        within the bound is simply not in the report."""
        assert self.reader is not None
        ended = self.reader.done.wait(self.options.timeout)
        final = self.reader.final
        if (
            ended
            and final is not None
            and final.status in (STATUS_SUCCESS, STATUS_CONNECTION_RESET)
        ):
            self.context.disconnect_seen.wait(min(2.0, self.options.timeout))
        return ended

    def close_socket(self) -> Call:
        assert self.sock is not None
        if self.cleanup_at is None:
            self.cleanup_at = time.time()
        call = self.session.close_socket(self.sock)
        self.close = call
        return call

    def fill(self, limit: int) -> tuple[list[Call], bool]:
        """Send 1 MiB at a time until a send pends (the server stopped reading) or ``limit``
        bytes are out; returns the sends and whether one pends."""
        calls: list[Call] = []
        started = time.time()
        while self.issued < limit:
            call = self.send(
                bytes([97 + len(calls) % 26]) * CHUNK, label="WskSend(1 MiB)", record=False
            )
            calls.append(call)
            # A send completes at the server's acknowledgement of its last byte (within a
            # round trip while the server reads, even on a loaded machine): one still
            # pending after half a second means the server stopped taking data.
            if call.returned == STATUS_PENDING and not call.completed_within(0.5):
                call.show()
                break
        pending = bool(calls) and not calls[-1].done
        self.timeline.note(
            f"{len(calls)} WskSend calls of 1 MiB; "
            + (
                "the last one pends: the server does not keep up"
                if pending
                else "all completed: the server keeps up"
            ),
            at=started,
        )
        return calls, pending

    # --- the end ----------------------------------------------------------------------------------
    def finish(self) -> None:
        self.finished_at = time.monotonic()
        problems = self.session.close()
        self.report.notes.extend(problems)
        wire = self.wire
        if wire is not None:
            if isinstance(wire, CaptureWire):
                self.wire_facts = wire.finish(
                    self.report, self.local_port, int(self.address[1]), ("probe", "server")
                )
                if self.options.pcap:
                    wire.save(self.options.pcap)
            else:
                wire.finish(self.report, ("probe", "server"))
            if wire is not self.options.shared_wire:
                wire.stop()
        from .probe_report import describe

        describe(self)

    def abandon(self) -> None:
        shared = self.wire is self.options.shared_wire
        for action in (self.session.close, self.wire.stop if self.wire and not shared else None):
            if action is None:
                continue
            try:
                action()
            except Exception as exc:  # already failing
                self.report.notes.append(f"cleanup: {exc!r}")

    def peer_end(self) -> tuple[Ending | None, float | None]:
        """How WSK told us the server ended the connection, and when (None if it did not)."""
        if self.sock is None:
            return None, None
        ends = self.session.ends(self.sock)
        return ends.peer, ends.peer_at

    def claims(self) -> Claims:
        """What this run's report says, for reconciling it with the wire."""
        disc, close = self.disconnect, self.close
        claims = Claims("probe", "server")
        # Our end is the first disconnect that acted: one that was refused (or failed, as a
        # stalled graceful one that an abort forced) did nothing on the wire.
        acted = [
            call
            for call in dict.fromkeys((disc, self.aborted))
            if call is not None and not (call.done and call.status != STATUS_SUCCESS)
        ]
        disc = min(acted, key=lambda call: call.issued_at) if acted else None
        if disc is not None:
            abortive = disc.label.endswith("WSK_FLAG_ABORTIVE)")
            claims.our_end = Ending.OUR_RST if abortive else Ending.OUR_FIN
            claims.our_end_call = disc.label
            claims.our_end_at = disc.issued_at
            if not abortive and disc.status == STATUS_SUCCESS:
                claims.fin_acked_at = disc.completed_at
        elif close is not None:
            claims.our_end, claims.our_end_call = Ending.OUR_RST, "WskCloseSocket"
            claims.our_end_at = close.issued_at
        claims.closed_at = close.issued_at if close is not None else None
        claims.peer_end, claims.peer_end_at = self.peer_end()
        reader = self.reader
        if reader is not None:
            claims.received = reader.total
            claims.read_to_end = reader.read_to_end
        claims.sent = self.sent()
        claims.sends_settled = all(c.done and c.status == STATUS_SUCCESS for c in self.sends)
        return claims


def new_report(name: str, title: str, expected: str, target: str) -> Report:
    report = Report("probe", name, f"{title} - against {target}", expected, Timeline())
    report.lanes["client"] = "pywsk probe"
    report.lanes["peer"] = f"server {target}"
    return report
