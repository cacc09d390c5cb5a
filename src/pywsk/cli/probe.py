"""``pywsk probe HOST:PORT``: disconnect from any TCP server the way a WSK client does, and
report what the server did.

What it does: for each chosen scenario, a fresh WSK client (:class:`~pywsk.cli.session.Session`)
creates a connection socket with WskSocket (its WSK_CLIENT_CONNECTION_DISPATCH carries a
WskDisconnectEvent), binds it, connects it with WskConnect (cancelled with IoCancelIrp if
the server does not answer in time), enables WSK_EVENT_DISCONNECT, and keeps a WskReceive
pending all along (:class:`Reader`).  Then it performs the scenario's disconnect - graceful,
with a final buffer, half-open, abortive, in the middle of a transfer, a close without a
disconnect, a graceful disconnect stalled then recovered, or none until the server ends the
connection - and waits, bounded, for the server's end.

The server's end is read the WSK way: WskDisconnectEvent (Flags 0 = its FIN,
WSK_FLAG_ABORTIVE = its RST) and the receive completions (STATUS_SUCCESS with 0 bytes = FIN,
STATUS_CONNECTION_RESET = RST).  The report says what the server sent back and when, how and
when it ended the connection, and whether our graceful disconnect completed - that is, the
server acknowledged our FIN.  The verdict checks pywsk's side against the documented
behaviour; ``expect`` adds a check on the server's end.

What it refuses: nothing once connected; an unreachable server raises
:class:`~pywsk.cli.session.SessionError` before anything is reported.

What always holds: every wait is bounded by the scenario's timeout; the socket is closed and
the client deregistered whatever happens.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ..nt import (
    STATUS_CANCELLED,
    STATUS_CONNECTION_ABORTED,
    STATUS_CONNECTION_RESET,
    STATUS_FILE_FORCED_CLOSED,
    STATUS_INVALID_DEVICE_STATE,
    STATUS_PENDING,
    STATUS_SUCCESS,
)
from ..wsk import WSK_EVENT_DISCONNECT, WSK_FLAG_ABORTIVE, WSK_SOCKET
from .session import Call, Connection, Session, SessionError, describe_address
from .timeline import Report, Timeline, short_status
from .wire import CaptureWire, StateWire, Wire, WireMode, open_wire

__all__ = [
    "PROBE_SCENARIOS",
    "ProbeOptions",
    "ProbeScenario",
    "Reader",
    "resolve",
    "run_probe",
]

Expect = Literal["any", "fin", "rst", "none"]


@dataclass(frozen=True)
class ProbeOptions:
    host: str
    port: int
    payload: bytes | None = None
    timeout: float = 5.0
    connect_timeout: float = 5.0
    stall: float = 1.0
    size: int = 8 * 1024 * 1024
    wire: WireMode = "auto"
    expect: Expect = "any"
    await_reply: bool = False


@dataclass(frozen=True)
class ProbeScenario:
    name: str
    title: str
    expected: str
    run: Callable[[ProbeRun], None]


# --- reading everything the server sends ---------------------------------------------------------


class Reader:
    """Keeps one WskReceive pending until the connection ends; records what arrived.

    The next receive is issued by whoever handles a completion: the issuing thread for an
    inline completion, the completion routine for a pended one (never recursively).  Calls
    act on the calling thread, so a routine may be issuing on another thread when the
    scenario closes the socket: :meth:`stop` (run by the session before WskCloseSocket)
    ends the pumping and waits for a receive being issued, as a driver's rundown would."""

    def __init__(self, session: Session, sock: WSK_SOCKET, chunk: int = 65536) -> None:
        self.session = session
        self.sock = sock
        self.chunk = chunk
        self.chunks: list[tuple[float, int]] = []
        self.data = bytearray()
        self.final: Call | None = None
        self.done = threading.Event()
        #: Set at the first data from the server, or at its end: a reply came.
        self.replied = threading.Event()
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
            with self._lock:
                self.data += call.data
                self.chunks.append((call.completed_at or time.time(), len(call.data)))
            self.replied.set()
            return True
        self.final = call
        self.done.set()
        self.replied.set()
        return False

    def received(self) -> bytes:
        with self._lock:
            return bytes(self.data)

    def bytes_after(self, at: float | None) -> int:
        if at is None:
            return 0
        with self._lock:
            return sum(n for t, n in self.chunks if t > at)


# --- one run -----------------------------------------------------------------------------------


class ProbeRun:
    """One scenario against the server: a client, a connection, a reader, a wire observer."""

    def __init__(self, report: Report, options: ProbeOptions, address: tuple[Any, ...]) -> None:
        self.report = report
        self.options = options
        self.address = address
        self.timeline = report.timeline
        self.session = Session(self.timeline)
        self.wire: Wire | None = None
        self.context = Connection("probe")
        self.sock: WSK_SOCKET | None = None
        self.reader: Reader | None = None
        self.local_port = 0
        self.disconnect: Call | None = None
        self.close: Call | None = None
        self.sent = 0

    # --- set-up ---------------------------------------------------------------------------------
    def open(self) -> WSK_SOCKET:
        options = self.options
        self.wire = open_wire(
            options.wire, self.session, self.timeline, self.address[1], str(self.address[0])
        )
        self.timeline.t0 = time.time()
        sock = self.session.connect(
            self.address,
            timeout=options.connect_timeout,
            context=self.context,
            events=WSK_EVENT_DISCONNECT,
        )
        self.sock = sock
        local = self.session.local_address(sock)
        self.local_port = int(local[1]) if local else 0
        if isinstance(self.wire, StateWire):
            self.wire.track(sock, "probe")
        self.reader = Reader(self.session, sock).start()
        return sock

    # --- actions ----------------------------------------------------------------------------------
    def send_payload(self, wait: bool = True) -> Call | None:
        if not self.options.payload or self.sock is None:
            return None
        call = self.session.send(self.sock, self.options.payload)
        self.sent += len(self.options.payload)
        if wait and not call.wait(self.options.timeout):
            self.timeline.note("the payload's WskSend is still pending: the server is not reading")
        if (
            self.options.await_reply
            and self.reader is not None
            and not self.reader.replied.wait(self.options.timeout)
        ):
            self.timeline.note("no reply from the server before the timeout")
        return call

    def graceful(self, final: bytes | None = None, wait: bool = True) -> Call:
        assert self.sock is not None
        call = self.session.disconnect(self.sock, final)
        if final:
            self.sent += len(final)
        self.disconnect = call
        if wait and not call.wait(self.options.timeout):
            self.timeline.note(
                f"the graceful disconnect has not completed after {self.options.timeout:g} s:"
                " the server has not acknowledged our FIN"
            )
        return call

    def abort(self) -> Call:
        assert self.sock is not None
        call = self.session.disconnect(self.sock, abortive=True)
        self.disconnect = call
        return call

    def wait_for_end(self) -> bool:
        """Wait (bounded) until the reader has seen the end of the server's data."""
        assert self.reader is not None
        return self.reader.done.wait(self.options.timeout)

    def close_socket(self) -> Call:
        assert self.sock is not None
        call = self.session.close_socket(self.sock)
        self.close = call
        return call

    def fill(self, limit: int) -> tuple[list[Call], bool]:
        """Send 1 MiB at a time until a send pends (the server stopped reading) or ``limit``
        bytes are out; returns the sends and whether one pends."""
        assert self.sock is not None
        chunk = 1 << 20
        calls: list[Call] = []
        started = time.time()
        while self.sent < limit:
            call = self.session.send(
                self.sock,
                bytes([97 + len(calls) % 26]) * chunk,
                label="WskSend(1 MiB)",
                record=False,
                group="send",
            )
            calls.append(call)
            self.sent += chunk
            if call.returned == STATUS_PENDING:
                call.show()
                break
        pending = bool(calls) and calls[-1].returned == STATUS_PENDING
        self.timeline.note(
            f"{len(calls)} WskSend calls of 1 MiB; "
            + (
                "the last one pends: the server does not keep up"
                if pending
                else "all completed inline: the server keeps up"
            ),
            at=started,
        )
        return calls, pending

    # --- the end ----------------------------------------------------------------------------------
    def finish(self) -> None:
        problems = self.session.close()
        self.report.notes.extend(problems)
        wire = self.wire
        if wire is not None:
            if isinstance(wire, CaptureWire):
                wire.finish(self.report, self.local_port, int(self.address[1]), ("probe", "server"))
            else:
                wire.finish(self.report, ("probe", "server"))
            wire.stop()
        self._describe()

    def abandon(self) -> None:
        for action in (self.session.close, self.wire.stop if self.wire else None):
            if action is None:
                continue
            try:
                action()
            except Exception as exc:  # already failing
                self.report.notes.append(f"cleanup: {exc!r}")

    def peer_end(self) -> tuple[str, float | None]:
        if self.sock is None:
            return "none", None
        told = self.session.peer_end(self.sock)
        if told is None:
            return "none", None
        return told

    def _describe(self) -> None:
        report, reader = self.report, self.reader
        data = reader.received() if reader else b""
        preview = data if len(data) <= 40 else data[:37] + b"..."
        end, end_at = self.peer_end()
        events = [f & WSK_FLAG_ABORTIVE for _, f in self.context.disconnect_events]
        seen_by = []
        if self.context.disconnect_events:
            seen_by.append(
                "WskDisconnectEvent(" + ("WSK_FLAG_ABORTIVE" if events[0] else "Flags 0") + ")"
            )
        final = reader.final if reader else None
        if final is not None and final.status == STATUS_SUCCESS:
            seen_by.append("WskReceive: 0 bytes")
        elif final is not None and final.status == STATUS_CONNECTION_RESET:
            seen_by.append("WskReceive: STATUS_CONNECTION_RESET")
        disconnect = self.disconnect
        if (
            end == "fin+rst"
            and disconnect is not None
            and disconnect.status == STATUS_FILE_FORCED_CLOSED
        ):
            seen_by.append("WskDisconnect: STATUS_FILE_FORCED_CLOSED")
        words = {
            "fin": "closed its side with FIN (graceful)",
            "rst": "reset the connection (RST)",
            "fin+rst": "closed with FIN, then reset (RST)",
            "none": "did not end the connection while we watched",
        }[end]
        if (
            end == "none"
            and final is not None
            and final.status
            in (
                STATUS_CONNECTION_ABORTED,
                STATUS_CANCELLED,
            )
        ):
            words = "had not ended the connection when we ended it"
        chunks = reader.chunks if reader else []
        timing = ""
        if chunks:
            timing = f" (first at {report.ms(chunks[0][0]):.3f} ms, last at {report.ms(chunks[-1][0]):.3f} ms)"
        when = f" at {report.ms(end_at):.3f} ms" if end_at is not None else ""
        how = f" - seen by {', '.join(seen_by)}" if seen_by else ""
        report.peer = f"sent back {len(data)} B {preview!r}{timing}; {words}{when}{how}"
        disc = self.disconnect
        ours: dict[str, Any] = {}
        if disc is not None:
            kind = "abortive" if disc.label.endswith("WSK_FLAG_ABORTIVE)") else "graceful"
            ours = {
                "kind": kind,
                "returned": short_status(disc.returned),
                "status": short_status(disc.status) if disc.done else None,
                "completed_ms": report.ms(disc.completed_at),
                "fin_acknowledged": kind == "graceful" and disc.status == STATUS_SUCCESS,
            }
            if kind == "graceful":
                if disc.status == STATUS_SUCCESS:
                    report.notes.append(
                        f"our graceful disconnect completed STATUS_SUCCESS at "
                        f"{report.ms(disc.completed_at):.3f} ms: the server acknowledged our FIN"
                    )
                elif _cancelled_by_our_close(self, disc):
                    report.notes.append(
                        "our graceful disconnect did not complete in time (the server never "
                        "acknowledged our FIN); our WskCloseSocket cancelled it"
                    )
                elif disc.done:
                    report.notes.append(
                        f"our graceful disconnect completed {short_status(disc.status)}: "
                        "our FIN was not acknowledged"
                    )
                else:
                    report.notes.append("our graceful disconnect never completed")
        after_fin = reader.bytes_after(disc.completed_at) if reader and disc else 0
        report.facts = {
            "target": describe_address(self.address),
            "local_port": self.local_port,
            "sent": self.sent,
            "received": {
                "bytes": len(data),
                "preview": repr(preview),
                "first_ms": report.ms(chunks[0][0]) if chunks else None,
                "last_ms": report.ms(chunks[-1][0]) if chunks else None,
                "after_our_disconnect": after_fin,
            },
            "peer_end": {"how": end, "ms": report.ms(end_at), "seen_by": seen_by},
            "our_disconnect": ours or None,
            "close": {
                "status": short_status(self.close.status) if self.close else None,
                "ms": report.ms(self.close.completed_at) if self.close else None,
            },
        }
        expect = self.options.expect
        if expect != "any":
            matches = end == expect or (end == "fin+rst" and expect in ("fin", "rst"))
            report.check(
                matches,
                f"expected the server to end with {expect.upper()}, it "
                + ("did not end it" if end == "none" else f"ended with {end.upper()}"),
            )


# --- scenario bodies -----------------------------------------------------------------------------


def _check_graceful(run: ProbeRun, disc: Call) -> None:
    """A graceful disconnect returns SUCCESS or PENDING and completes SUCCESS - unless the
    server reset the connection first, when the reset's statuses are the documented ones
    (STATUS_FILE_FORCED_CLOSED for a disconnect on a reset connection, Q15)."""
    report = run.report
    end, _ = run.peer_end()
    failures = {STATUS_CONNECTION_RESET, STATUS_CONNECTION_ABORTED, STATUS_FILE_FORCED_CLOSED}
    reset = end in ("rst", "fin+rst")
    report.check(
        disc.returned in {STATUS_SUCCESS, STATUS_PENDING} | (failures if reset else set()),
        f"WskDisconnect returned {short_status(disc.returned)}",
    )
    if disc.done:
        allowed = {STATUS_SUCCESS} | (failures if reset else set())
        if _cancelled_by_our_close(run, disc):
            allowed.add(STATUS_CANCELLED)  # Q4: a close cancels a pending disconnect
        report.check(
            disc.status in allowed,
            f"the graceful disconnect completed {short_status(disc.status)}",
        )
    if disc.status == STATUS_SUCCESS and isinstance(run.wire, CaptureWire):
        report.check(
            run.wire.seen("F", run.local_port), "it completed, but no FIN of ours is on the wire"
        )


def _cancelled_by_our_close(run: ProbeRun, call: Call) -> bool:
    close = run.close
    return (
        close is not None
        and call.completed_at is not None
        and call.completed_at >= close.issued_at
        and call.status == STATUS_CANCELLED
    )


def _check_clean_close(run: ProbeRun) -> None:
    if run.close is not None:
        run.report.check(run.close.status == STATUS_SUCCESS, "WskCloseSocket did not succeed")


def graceful(run: ProbeRun) -> None:
    run.open()
    run.send_payload()
    disc = run.graceful()
    run.wait_for_end()
    run.close_socket()
    _check_graceful(run, disc)
    _check_clean_close(run)


def graceful_with_data(run: ProbeRun) -> None:
    run.open()
    final = run.options.payload or b"pywsk probe: final data\n"
    disc = run.graceful(final)
    run.wait_for_end()
    run.close_socket()
    _check_graceful(run, disc)
    if disc.status == STATUS_SUCCESS:
        run.report.check(
            disc.information == len(final), "Information is not the final buffer's length (Q5)"
        )
    _check_clean_close(run)


def half_open(run: ProbeRun) -> None:
    run.open()
    run.send_payload()
    disc = run.graceful()
    assert run.sock is not None
    refused = run.session.send(run.sock, b"after our FIN", label="WskSend after our FIN")
    run.wait_for_end()
    run.close_socket()
    _check_graceful(run, disc)
    run.report.check(
        refused.returned
        in (
            STATUS_INVALID_DEVICE_STATE,
            STATUS_CONNECTION_RESET,
            STATUS_FILE_FORCED_CLOSED,
            STATUS_CONNECTION_ABORTED,
        ),
        f"a send after our graceful disconnect returned {short_status(refused.returned)} (Q1)",
    )
    if run.reader is not None and disc.completed_at is not None:
        run.report.notes.append(
            f"{run.reader.bytes_after(disc.completed_at)} B received after our FIN was "
            "acknowledged (the half-open direction)"
        )
    _check_clean_close(run)


def _check_abort(run: ProbeRun, abort: Call, sends: list[Call], fin_sent: bool = False) -> None:
    report = run.report
    end, _ = run.peer_end()
    # What the server did can reach the kernel before WSK reports it to us, so an end we
    # learn of after the abort may still have been there at the abort.
    allowed = {STATUS_SUCCESS}
    if end in ("rst", "fin+rst"):
        allowed.add(STATUS_FILE_FORCED_CLOSED)  # Q15: a disconnect on a reset connection
    if end in ("fin", "fin+rst") and fin_sent:
        allowed.add(STATUS_INVALID_DEVICE_STATE)  # Q13: both directions closed already
    report.check(
        abort.returned in allowed and abort.status == abort.returned,
        f"the abortive disconnect returned {short_status(abort.returned)}"
        + ("" if abort.returned == abort.status else f", completed {short_status(abort.status)}"),
    )
    reader = run.reader
    if reader is not None and reader.done.wait(5.0) and reader.final is not None:
        report.check(
            reader.final.status
            in (STATUS_CONNECTION_ABORTED, STATUS_SUCCESS, STATUS_CONNECTION_RESET),
            f"the pending receive ended {short_status(reader.final.status)} (Q3)",
        )
    sent_ok = {STATUS_SUCCESS, STATUS_CANCELLED}
    if end in ("rst", "fin+rst"):
        sent_ok.add(STATUS_CONNECTION_RESET)  # the server's reset may have ended it first
    for send in sends:
        send.wait(5.0)
        report.check(
            send.status in sent_ok,
            f"a send pending at the abort ended {short_status(send.status)} (Q2)",
        )
    if isinstance(run.wire, CaptureWire):
        end, _ = run.peer_end()
        if end == "none":
            report.check(run.wire.seen("R", run.local_port), "no RST of ours is on the wire")
        if not fin_sent:
            report.check(run.wire.absent("F", run.local_port), "a FIN of ours is on the wire")


def abortive(run: ProbeRun) -> None:
    run.open()
    run.send_payload()
    abort = run.abort()
    after = run.session.send(run.sock, b"x", label="WskSend after the abort") if run.sock else None
    run.close_socket()
    _check_abort(run, abort, [])
    if after is not None:
        run.report.check(after.returned != STATUS_SUCCESS, "a send succeeded after the abort")
    _check_clean_close(run)


def abortive_mid_transfer(run: ProbeRun) -> None:
    run.open()
    sends, pending = run.fill(run.options.size)
    if not pending:
        run.report.notes.append(
            f"every send completed at once ({run.sent} B): no transfer was in progress at the abort"
        )
    abort = run.abort()
    run.close_socket()
    _check_abort(run, abort, [s for s in sends if s.record])
    if pending:
        run.report.check(
            sends[-1].status == STATUS_CANCELLED, "the send in progress was not cancelled (Q2)"
        )
    _check_clean_close(run)


def close_without_disconnect(run: ProbeRun) -> None:
    run.open()
    run.send_payload()
    close = run.close_socket()
    run.report.check(close.status == STATUS_SUCCESS, "WskCloseSocket did not succeed")
    end, _ = run.peer_end()
    if isinstance(run.wire, CaptureWire) and end == "none":
        run.report.check(
            run.wire.seen("R", run.local_port),
            "no RST of ours is on the wire (a close without a full disconnect aborts)",
        )


def _stall(run: ProbeRun) -> tuple[list[Call], Call, bool]:
    run.open()
    sends, _pending = run.fill(run.options.size)
    disc = run.graceful(wait=False)
    stalled = not disc.wait(run.options.stall)
    if stalled:
        run.timeline.note(f"the graceful disconnect is still pending after {run.options.stall:g} s")
    elif disc.status == STATUS_SUCCESS:
        run.timeline.note("the graceful disconnect completed: the server read everything")
        run.report.notes.append(
            "the server read everything, so the graceful disconnect could not stall"
        )
    else:
        run.timeline.note(
            f"the graceful disconnect ended {short_status(disc.status)}: the server ended "
            "the connection first"
        )
        run.report.notes.append(
            "the server ended the connection before the graceful disconnect could stall"
        )
    return [s for s in sends if s.record], disc, stalled


def _check_forced(run: ProbeRun, disc: Call, recovery: Call, forced: int) -> None:
    """A stalled graceful disconnect ends with ``forced`` when the recovery ends it (Q4).

    The server may end the connection first (its RST, or its own close after a linger):
    then the disconnect completed before the recovery was issued, with the reset's status."""
    if disc.completed_at is not None and disc.completed_at < recovery.issued_at:
        end, _ = run.peer_end()
        allowed = {STATUS_SUCCESS}
        if end in ("rst", "fin+rst"):
            allowed |= {STATUS_CONNECTION_RESET, STATUS_CONNECTION_ABORTED}
        run.report.notes.append(
            f"the stalled disconnect ended {short_status(disc.status)} before the recovery: "
            "the server ended the connection first"
        )
        run.report.check(
            disc.status in allowed,
            f"the stalled disconnect ended {short_status(disc.status)} before the recovery",
        )
        return
    run.report.check(
        disc.status == forced,
        f"the stalled disconnect ended {short_status(disc.status)}, not "
        f"{short_status(forced)} (Q4)",
    )


def stall_then_abort(run: ProbeRun) -> None:
    sends, disc, stalled = _stall(run)
    abort = run.abort()
    run.disconnect = disc
    run.close_socket()
    if stalled:
        disc.wait(5.0)
        _check_forced(run, disc, abort, STATUS_CONNECTION_ABORTED)
    _check_abort(run, abort, sends, fin_sent=not stalled or disc.status == STATUS_SUCCESS)
    _check_clean_close(run)


def stall_then_close(run: ProbeRun) -> None:
    sends, disc, stalled = _stall(run)
    close = run.close_socket()
    run.report.check(close.status == STATUS_SUCCESS, "WskCloseSocket did not succeed")
    if stalled:
        disc.wait(5.0)
        _check_forced(run, disc, close, STATUS_CANCELLED)
        end, _ = run.peer_end()
        sent_ok = {STATUS_SUCCESS, STATUS_CANCELLED}
        if end in ("rst", "fin+rst"):
            sent_ok.add(STATUS_CONNECTION_RESET)
        for send in sends:
            send.wait(5.0)
            run.report.check(
                send.status in sent_ok,
                f"a send pending at the close ended {short_status(send.status)}",
            )
        if isinstance(run.wire, CaptureWire):
            run.report.check(run.wire.seen("R", run.local_port), "no RST of ours is on the wire")


def wait_for_peer(run: ProbeRun) -> None:
    run.open()
    run.send_payload()
    ended = run.wait_for_end()
    end, _ = run.peer_end()
    if not ended:
        run.timeline.note(f"the server did not end the connection within {run.options.timeout:g} s")
    if end in ("rst", "fin+rst"):
        run.close_socket()
    else:
        disc = run.graceful()
        run.close_socket()
        _check_graceful(run, disc)
    _check_clean_close(run)


PROBE_SCENARIOS: dict[str, ProbeScenario] = {
    s.name: s
    for s in (
        ProbeScenario(
            "graceful",
            "Graceful disconnect, then wait for the server's end",
            "WskDisconnect(0) completes STATUS_SUCCESS once the server acknowledges our FIN (it"
            " may stay pending while the server does not read); we keep receiving until its end",
            graceful,
        ),
        ProbeScenario(
            "graceful-with-data",
            "Graceful disconnect carrying the payload as its final buffer",
            "the final buffer goes out, then FIN; completes STATUS_SUCCESS with Information ="
            " the buffer's length",
            graceful_with_data,
        ),
        ProbeScenario(
            "half-open",
            "Graceful disconnect, then keep receiving (half-open)",
            "after our FIN a WskSend is refused (STATUS_INVALID_DEVICE_STATE) but whatever the"
            " server still sends is received, until its FIN",
            half_open,
        ),
        ProbeScenario(
            "abortive",
            "Abortive disconnect (WSK_FLAG_ABORTIVE)",
            "RST at once; returns STATUS_SUCCESS inline; the pending receive ends"
            " STATUS_CONNECTION_ABORTED; later sends fail",
            abortive,
        ),
        ProbeScenario(
            "abortive-mid-transfer",
            "Abortive disconnect while a large send is in progress",
            "RST at once; the send in progress completes STATUS_CANCELLED, the receive"
            " STATUS_CONNECTION_ABORTED",
            abortive_mid_transfer,
        ),
        ProbeScenario(
            "close-without-disconnect",
            "WskCloseSocket without a disconnect",
            "the close resets the connection (RST) and completes STATUS_SUCCESS",
            close_without_disconnect,
        ),
        ProbeScenario(
            "stall-then-abort",
            "Send more than the server reads, disconnect gracefully, then abort",
            "the graceful disconnect stays pending while the data cannot be delivered; the"
            " abort forces it complete (STATUS_CONNECTION_ABORTED) and cancels pending sends",
            stall_then_abort,
        ),
        ProbeScenario(
            "stall-then-close",
            "Send more than the server reads, disconnect gracefully, then close",
            "the graceful disconnect stays pending; WskCloseSocket completes it"
            " STATUS_CANCELLED, resets the connection, and completes last",
            stall_then_close,
        ),
        ProbeScenario(
            "wait-for-peer",
            "Send the payload, then let the server end the connection",
            "the server's FIN or RST arrives as WskDisconnectEvent and as a receive completion;"
            " after a FIN our graceful disconnect ends the connection without RST",
            wait_for_peer,
        ),
    )
}


# --- running -------------------------------------------------------------------------------------


def resolve(host: str, port: int, timeout: float) -> list[tuple[Any, ...]]:
    """WskGetAddressInfo through a short-lived client; raises SessionError."""
    session = Session(Timeline())
    try:
        found = session.resolve(host, port, timeout)
    finally:
        session.close()
    if not found:
        raise SessionError(f"{host!r} has no IPv4 or IPv6 address")
    return found


def run_probe(name: str, options: ProbeOptions, addresses: list[tuple[Any, ...]]) -> Report:
    """Run one scenario against the first address that accepts the connection.

    Raises :class:`SessionError` when no address accepts it; any other failure is reported
    as a deviation."""
    scenario = PROBE_SCENARIOS[name]
    failures: list[str] = []
    for address in addresses:
        target = describe_address(address)
        report = Report("probe", name, f"{scenario.title} - against {target}", scenario.expected)
        report.lanes["client"] = "pywsk probe"
        report.lanes["peer"] = f"server {target}"
        run = ProbeRun(report, options, address)
        try:
            scenario.run(run)
            run.finish()
        except SessionError as exc:
            run.abandon()
            if run.sock is None:  # not connected: try the next address
                failures.append(str(exc))
                continue
            report.problems.append(f"probe failed: {exc}")
        except Exception as exc:
            run.abandon()
            report.problems.append(f"probe failed: {exc!r}")
        return report
    raise SessionError("; ".join(failures) or "no address to connect to")
