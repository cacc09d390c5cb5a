"""``pywsk demo``: every disconnect behaviour of the seed pages, against an embedded peer.

What it does: each scenario registers a WSK client (:class:`~pywsk.cli.session.Session`),
connects a real socket to a plain Linux socket peer on 127.0.0.1
(:class:`~pywsk.testing.peer.LoopbackPeer`), performs one of the disconnects that
"WskDisconnect", "WskCloseSocket", "WskDisconnectEvent" and "Disconnecting a socket from a
destination" describe (and, from :mod:`pywsk.cli.demo_udp`, the datagram scenarios), and fills a :class:`~pywsk.cli.timeline.Report`: every WSK call and
the status it returned, every IRP completion with its status and time, every event
callback, what went on the wire (a tcpdump capture on ``lo`` when running as root,
otherwise the client's TCP state - and it says which), what the peer did and observed, and
a verdict against the documented behaviour.

What it refuses: nothing; a scenario that deviates is reported, and the command's exit code
says so.

What always holds: every wait is bounded; every socket is closed, the client deregistered
and the peer stopped at the end of each scenario, whatever happened.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..core.ending import Ending
from ..nt import (
    STATUS_CANCELLED,
    STATUS_CONNECTION_ABORTED,
    STATUS_CONNECTION_RESET,
    STATUS_FILE_FORCED_CLOSED,
    STATUS_INVALID_DEVICE_STATE,
    STATUS_INVALID_PARAMETER,
    STATUS_PENDING,
    STATUS_SUCCESS,
    Executive,
    KeInitializeEvent,
    KernelMode,
    KeWaitForSingleObject,
    NotificationEvent,
)
from ..samples import disconnect_socket as seed
from ..testing.peer import LoopbackPeer, PeerConnection, PeerObservation, Step, WaitFor
from ..wsk import WSK_EVENT_DISCONNECT, WSK_FLAG_ABORTIVE, WSK_SOCKET
from .demo_udp import UDP_SCENARIOS, UdpScenario, run_udp_scenario
from .session import Call, Connection, Session
from .timeline import Report, short_status
from .wire import CaptureWire, StateWire, WireMode, open_wire

__all__ = ["ALL_SCENARIOS", "SCENARIOS", "Scenario", "run_scenario"]

WAIT = 10.0
CHUNK = 65536


# --- the embedded peer -------------------------------------------------------------------------


def read_to_end(conn: PeerConnection) -> None:
    """Read (logging every read) until the client's FIN or RST; ACK a FIN at once."""
    while True:
        data = conn.recv_some()
        if not data:
            break
        conn.log(f"received {len(data)} B")
    if conn.end == "fin":
        conn.quickack()


def peer_send(data: bytes) -> Step:
    def step(conn: PeerConnection) -> None:
        conn.log(f"@send({len(data)} B)")
        conn.send(data)

    return step


def peer_shutdown(conn: PeerConnection) -> None:
    conn.log("@shutdown(SHUT_WR): sends its FIN")
    conn.shutdown_write()


def peer_abort(conn: PeerConnection) -> None:
    conn.log("@connect(AF_UNSPEC): resets the connection (RST)")
    conn.abort()


def peer_wait(go: threading.Event) -> Step:
    return WaitFor(go, WAIT)


_PEER_WORDS = (
    ("end: fin+rst", "recv() returned 0 and the state is CLOSE: the client's FIN, then an RST"),
    ("end: fin", "recv() returned 0: the client's FIN"),
    ("end: rst", "recv() failed with ECONNRESET: the client's RST"),
    ("waiting for go-ahead", "waits for its cue (reads nothing meanwhile)"),
    ("go-ahead", "goes on"),
)


def _peer_text(text: str) -> str | None:
    """The peer's log in the timeline's words; None for bookkeeping lines."""
    if text.startswith("@"):
        return text[1:]
    if text.startswith("received "):
        return text
    if text.startswith("accepted "):
        host, port = text[len("accepted ") :].strip("()").replace("'", "").split(", ")
        return f"accept(): a connection from {host}:{port}"
    for prefix, words in _PEER_WORDS:
        if text.startswith(prefix):
            return words
    return None


def describe_peer(obs: PeerObservation) -> str:
    ends = {
        "fin": "FIN (graceful)",
        "rst": "RST (abortive)",
        "fin+rst": "FIN, then RST",
        "open": "nothing (the connection was still open for it)",
    }
    data = obs.received if len(obs.received) <= 40 else obs.received[:37] + b"..."
    aborted = any(t.startswith("@connect(AF_UNSPEC)") for _, t in obs.log)
    text = f"received {len(obs.received)} B {data!r}"
    if obs.end != "open" or not aborted:
        text += f", then saw {ends[obs.end]}"
    did = []
    if obs.sent:
        did.append(f"sent {len(obs.sent)} B")
    if any(t.startswith("@shutdown") for _, t in obs.log):
        did.append("sent its FIN")
    if aborted:
        did.append("reset the connection")
    return (", ".join(did) + "; " if did else "") + text


# --- one scenario's stage ----------------------------------------------------------------------


class Stage:
    """A scenario's WSK client, peer and wire observer; everything is recorded in the report."""

    def __init__(
        self,
        report: Report,
        script: list[Step],
        *,
        wire: WireMode,
        go: threading.Event,
        rcvbuf: int | None = None,
    ) -> None:
        self.report = report
        self.go = go
        """Set to let a waiting peer script go on (it stops reading until then)."""
        self.timeline = report.timeline
        self.peer = LoopbackPeer(script, rcvbuf=rcvbuf, step_timeout=WAIT).start()
        self.session = Session(self.timeline)
        self.wire = open_wire(wire, self.session, self.timeline, self.peer.port, "127.0.0.1")
        self.context = Connection("client")
        self.events_seen = threading.Event()
        self.context.on_disconnect = lambda _conn, _flags: self.events_seen.set()
        self.sock: WSK_SOCKET | None = None
        self.client_port = 0

    def connect(self, events: int = 0) -> WSK_SOCKET:
        self.timeline.t0 = time.time()
        sock = self.session.socket_connect(
            self.peer.address, timeout=WAIT, context=self.context, events=events
        )
        self.sock = sock
        self.client_port = self.peer.wait_accepted(WAIT).client[1]
        if isinstance(self.wire, StateWire):
            self.wire.track(sock)
        return sock

    # --- wire checks -------------------------------------------------------------------------
    def on_wire(self, flag: str, from_client: bool = True) -> bool:
        """A FIN (``"F"``) or RST (``"R"``) from the client (or the peer) is on the wire.

        Without a capture nothing can be checked here: True (the peer's own observation is
        checked separately)."""
        if not isinstance(self.wire, CaptureWire):
            return True
        return self.wire.seen(flag, self.client_port if from_client else self.peer.port)

    def not_on_wire(self, flag: str, from_client: bool = True) -> bool:
        if not isinstance(self.wire, CaptureWire):
            return True
        return self.wire.absent(flag, self.client_port if from_client else self.peer.port)

    # --- bulk sends --------------------------------------------------------------------------
    def fill_window(self, sock: WSK_SOCKET, limit: int = 128) -> Call:
        """WskSend 64 KiB at a time until one pends (the peer does not read); that one is
        shown in the timeline, the others summed up in a note."""
        started = time.time()
        count = 0
        call: Call | None = None
        for i in range(limit):
            call = self.session.send(
                sock, bytes([65 + i % 26]) * CHUNK, label="WskSend(64 KiB)", record=False
            )
            count += 1
            if call.returned == STATUS_PENDING:
                break
        assert call is not None
        self.timeline.note(
            f"{count - 1} WskSend calls of 64 KiB completed inline; the peer does not read",
            at=started,
        )
        call.show()
        return call

    # --- the end -----------------------------------------------------------------------------
    def finish(self) -> PeerObservation:
        """Close what is still open, stop the peer, and write the wire and the peer."""
        problems = self.session.close()
        self.report.problems.extend(problems)
        obs = self.peer.observation() if self.peer.observations() else None
        if isinstance(self.wire, CaptureWire):
            self.wire.finish(self.report, self.client_port, self.peer.port)
        else:
            self.wire.finish(self.report)
        self.wire.stop()
        self.peer.close()
        if obs is None:
            self.report.peer = "no connection accepted"
            raise RuntimeError("the peer accepted no connection")
        for at, text in obs.log:
            words = _peer_text(text)
            if words is None:
                continue
            reading = text.startswith("received ")
            self.timeline.record(
                "peer",
                "peer",
                words,
                at=at,
                length=int(text.split()[1]) if reading else None,
                group="reads" if reading else None,
            )
        self.report.peer = describe_peer(obs)
        return obs

    def abandon(self) -> None:
        """After a failure: release everything, bounded, ignoring further errors."""
        for action in (self.session.close, self.wire.stop, self.peer.close):
            try:
                action()
            except Exception as exc:  # already failing; keep the first problem
                self.report.notes.append(f"cleanup: {exc!r}")


# --- the scenarios ---------------------------------------------------------------------------


def seed_sample(stage: Stage) -> None:
    report, tl, session = stage.report, stage.timeline, stage.session
    sock = stage.connect()
    session.send(sock, b"hello, peer!").completed_within(WAIT)
    KeInitializeEvent(seed.DisconnectDone, NotificationEvent, False)
    seed.DisconnectStatus.clear()
    issued = time.time()
    session.ends(sock).learn_ours(Ending.OUR_FIN, issued)
    status = seed.DisconnectSocket(sock)
    tl.record(
        "call",
        "client",
        f"DisconnectSocket -> WskDisconnect(Socket, NULL, 0, Irp) returned {short_status(status)}",
        at=issued,
        src="client",
        dst="provider",
        status=status,
    )
    KeWaitForSingleObject(seed.DisconnectDone, Executive, KernelMode, False, -int(WAIT * 1e7))
    done = seed.DisconnectStatus[0] if seed.DisconnectStatus else None
    tl.record(
        "complete",
        "provider",
        f"DisconnectComplete ran: IoStatus.Status = {short_status(done)}"
        if done is not None
        else "DisconnectComplete did not run",
        src="provider",
        dst="client",
        status=done,
    )
    obs = stage.peer.wait_end(WAIT)
    report.check(status in (STATUS_PENDING, STATUS_SUCCESS), "WskDisconnect returned a failure")
    report.check(done == STATUS_SUCCESS, "the disconnect IRP did not complete with STATUS_SUCCESS")
    if done == STATUS_SUCCESS:
        session.ends(sock).fin_acknowledged(time.time())
    report.check(
        obs.received == b"hello, peer!" and obs.end == "fin",
        "the peer did not get the data then a FIN",
    )
    report.check(
        stage.on_wire("F") and stage.not_on_wire("R"), "the wire did not show a FIN without RST"
    )
    _close_cleanly(stage, sock)


def _close_cleanly(stage: Stage, sock: WSK_SOCKET) -> None:
    """Receive until the peer's FIN (the peer closes after ours), then close: no RST."""
    received = _receive_to_end(stage, sock)
    stage.session.close_socket(sock)
    stage.report.check(received.status == STATUS_SUCCESS, "the final receive did not succeed")


def _receive_to_end(stage: Stage, sock: WSK_SOCKET, timeout: float = WAIT) -> Call:
    """WskReceive until one completes with 0 bytes or fails (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        call = stage.session.receive(sock, 1024)
        if not call.completed_within(deadline - time.monotonic()):
            raise TimeoutError("WskReceive did not complete")
        if call.status != STATUS_SUCCESS or not call.information:
            return call


def graceful_with_final_data(stage: Stage) -> None:
    report, session = stage.report, stage.session
    sock = stage.connect()
    session.send(sock, b"request;").completed_within(WAIT)
    disc = session.disconnect(sock, b"final data")
    disc.completed_within(WAIT)
    obs = stage.peer.wait_end(WAIT)
    report.check(
        disc.status == STATUS_SUCCESS, "the disconnect did not complete with STATUS_SUCCESS"
    )
    report.check(disc.information == 10, "Information is not the final buffer's length (Q5)")
    report.check(
        obs.received == b"request;final data" and obs.end == "fin",
        "the peer did not get the sends, the final buffer, then a FIN",
    )
    report.check(
        stage.on_wire("F") and stage.not_on_wire("R"), "the wire did not show a FIN without RST"
    )
    _close_cleanly(stage, sock)


def half_open(stage: Stage) -> None:
    report, session = stage.report, stage.session
    sock = stage.connect()
    session.send(sock, b"request").completed_within(WAIT)
    disc = session.disconnect(sock)
    disc.completed_within(WAIT)
    refused = session.send(sock, b"too late")
    stage.peer.wait_end(WAIT)
    data = b""
    deadline = time.monotonic() + WAIT
    while True:
        call = session.receive(sock, 1024)
        if not call.completed_within(deadline - time.monotonic()):
            raise TimeoutError("WskReceive did not complete")
        if call.status != STATUS_SUCCESS or not call.information:
            break
        data += call.data
    close = session.close_socket(sock)
    obs = stage.peer.result(WAIT)
    report.check(disc.status == STATUS_SUCCESS, "the graceful disconnect did not complete")
    report.check(
        refused.returned == STATUS_INVALID_DEVICE_STATE,
        "a send after our graceful disconnect was not refused (Q1)",
    )
    report.check(data == b"reply after your FIN", "the data sent after our FIN was not received")
    report.check(
        (call.status, call.information) == (STATUS_SUCCESS, 0),
        "the receive after the peer's FIN did not complete with 0 bytes",
    )
    report.check(close.status == STATUS_SUCCESS, "the close did not succeed")
    report.check(obs.end == "fin", "the peer did not see our FIN")
    report.check(
        stage.on_wire("F") and stage.on_wire("F", from_client=False) and stage.not_on_wire("R"),
        "the wire did not show both FINs and no RST",
    )


def _stuck(stage: Stage) -> tuple[WSK_SOCKET, Call, Call, bool]:
    sock = stage.connect()
    send = stage.fill_window(sock)
    disc = stage.session.disconnect(sock)
    stuck = not disc.completed_within(0.3)
    stage.timeline.note(
        "the graceful disconnect is still pending 300 ms later"
        if stuck
        else "the graceful disconnect completed"
    )
    return sock, send, disc, stuck


def stuck_graceful_then_abortive(stage: Stage) -> None:
    report, session = stage.report, stage.session
    go = stage.go
    sock, send, disc, stuck = _stuck(stage)
    abort = session.disconnect(sock, abortive=True)
    disc.completed_within(WAIT)
    send.completed_within(WAIT)
    go.set()
    obs = stage.peer.wait_end(WAIT)
    report.check(
        disc.returned == STATUS_PENDING and stuck, "the graceful disconnect did not stay pending"
    )
    report.check(abort.returned == STATUS_SUCCESS, "the abortive disconnect did not succeed")
    report.check(
        disc.status == STATUS_CONNECTION_ABORTED,
        "the stuck disconnect was not forced complete with STATUS_CONNECTION_ABORTED (Q4)",
    )
    report.check(send.status == STATUS_CANCELLED, "the pending send was not cancelled (Q2)")
    report.check(obs.end == "rst", "the peer did not see an RST")
    report.check(
        stage.on_wire("R") and stage.not_on_wire("F"), "the wire did not show an RST (without FIN)"
    )


def stuck_graceful_then_close(stage: Stage) -> None:
    report, session = stage.report, stage.session
    go = stage.go
    sock, send, disc, stuck = _stuck(stage)
    close = session.close_socket(sock)
    disc.completed_within(WAIT)
    send.completed_within(WAIT)
    go.set()
    obs = stage.peer.wait_end(WAIT)
    report.check(
        disc.returned == STATUS_PENDING and stuck, "the graceful disconnect did not stay pending"
    )
    report.check(close.status == STATUS_SUCCESS, "the close did not succeed")
    report.check(
        disc.status == STATUS_CANCELLED,
        "the stuck disconnect was not completed with STATUS_CANCELLED by the close (Q4)",
    )
    report.check(send.status == STATUS_CANCELLED, "the pending send was not cancelled")
    report.check(
        bool(disc.completed_at and close.completed_at and disc.completed_at <= close.completed_at),
        "the close IRP did not complete last (Q8)",
    )
    report.check(obs.end == "rst", "the peer did not see an RST")
    report.check(
        stage.on_wire("R") and stage.not_on_wire("F"), "the wire did not show an RST (without FIN)"
    )


def abortive_with_pending_requests(stage: Stage) -> None:
    report, session = stage.report, stage.session
    go = stage.go
    sock = stage.connect()
    receive = session.receive(sock, 1024)
    send = stage.fill_window(sock)
    abort = session.disconnect(sock, abortive=True)
    receive.completed_within(WAIT)
    send.completed_within(WAIT)
    after = session.send(sock, b"x", label="WskSend after the abort")
    go.set()
    obs = stage.peer.wait_end(WAIT)
    report.check(
        abort.returned == STATUS_SUCCESS == abort.status,
        "the abortive disconnect did not succeed at once",
    )
    report.check(
        receive.status == STATUS_CONNECTION_ABORTED,
        "the pending receive did not end with STATUS_CONNECTION_ABORTED (Q3)",
    )
    report.check(send.status == STATUS_CANCELLED, "the pending send was not cancelled (Q2)")
    report.check(after.returned != STATUS_SUCCESS, "a send succeeded after the abort")
    report.check(obs.end == "rst", "the peer did not see an RST")
    report.check(
        stage.on_wire("R") and stage.not_on_wire("F"), "the wire did not show an RST (without FIN)"
    )


def close_without_disconnect(stage: Stage) -> None:
    report, session = stage.report, stage.session
    sock = stage.connect()
    session.send(sock, b"ping").completed_within(WAIT)
    stage.peer.wait_received(4, WAIT)
    close = session.close_socket(sock, label="WskCloseSocket (no WskDisconnect before it)")
    obs = stage.peer.wait_end(WAIT)
    report.check(close.status == STATUS_SUCCESS, "the close did not succeed")
    report.check(obs.end == "rst", "the peer did not see an RST")
    report.check(
        stage.on_wire("R") and stage.not_on_wire("F"), "the wire did not show an RST (without FIN)"
    )


def buffer_with_abortive(stage: Stage) -> None:
    report, session = stage.report, stage.session
    sock = stage.connect()
    bad = session.disconnect(sock, b"data", abortive=True)
    untouched = stage.not_on_wire("F") and stage.not_on_wire("R")
    session.send(sock, b"still fine").completed_within(WAIT)
    session.disconnect(sock).completed_within(WAIT)
    obs = stage.peer.wait_end(WAIT)
    report.check(
        bad.returned == STATUS_INVALID_PARAMETER == bad.status,
        "the call was not refused with STATUS_INVALID_PARAMETER",
    )
    report.check(untouched, "the refused call put something on the wire")
    report.check(obs.received == b"still fine" and obs.end == "fin", "the connection was disturbed")
    _close_cleanly(stage, sock)


def peer_graceful_event(stage: Stage) -> None:
    report, session = stage.report, stage.session
    sock = stage.connect(events=WSK_EVENT_DISCONNECT)
    stage.go.set()
    event = stage.events_seen.wait(WAIT)
    data = b""
    deadline = time.monotonic() + WAIT
    while True:
        call = session.receive(sock, 1024)
        if not call.completed_within(deadline - time.monotonic()):
            raise TimeoutError("WskReceive did not complete")
        if call.status != STATUS_SUCCESS or not call.information:
            break
        data += call.data
    reply = session.send(sock, b"reply")
    reply.completed_within(WAIT)
    disc = session.disconnect(sock)
    disc.completed_within(WAIT)
    close = session.close_socket(sock)
    obs = stage.peer.wait_end(WAIT)
    flags = [f & WSK_FLAG_ABORTIVE for _, f in stage.context.disconnect_events]
    report.check(
        event and flags == [0], "WskDisconnectEvent did not come once, without WSK_FLAG_ABORTIVE"
    )
    report.check(data == b"last words", "the data sent before the peer's FIN was not received")
    report.check(
        (call.status, call.information) == (STATUS_SUCCESS, 0),
        "after the data, a receive did not complete with 0 bytes",
    )
    report.check(reply.status == STATUS_SUCCESS, "sending after the peer's FIN failed")
    report.check(disc.status == STATUS_SUCCESS, "our graceful disconnect did not complete")
    report.check(close.status == STATUS_SUCCESS, "the close did not succeed")
    report.check(
        obs.received == b"reply" and obs.end == "fin", "the peer did not get the reply then a FIN"
    )
    report.check(
        stage.on_wire("F") and stage.not_on_wire("R"), "the wire did not show our FIN without RST"
    )


def peer_abortive_event(stage: Stage) -> None:
    report, session = stage.report, stage.session
    sock = stage.connect(events=WSK_EVENT_DISCONNECT)
    receive = session.receive(sock, 1024)
    stage.go.set()
    event = stage.events_seen.wait(WAIT)
    receive.completed_within(WAIT)
    disc = session.disconnect(sock)
    disc.completed_within(WAIT)
    close = session.close_socket(sock)
    flags = [f & WSK_FLAG_ABORTIVE for _, f in stage.context.disconnect_events]
    report.check(
        event and flags == [WSK_FLAG_ABORTIVE],
        "WskDisconnectEvent did not come once with WSK_FLAG_ABORTIVE",
    )
    report.check(
        receive.status == STATUS_CONNECTION_RESET,
        "the pending receive did not fail with STATUS_CONNECTION_RESET (Q3)",
    )
    report.check(
        disc.status == STATUS_FILE_FORCED_CLOSED,
        "WskDisconnect after the reset did not fail with STATUS_FILE_FORCED_CLOSED (Q15)",
    )
    report.check(close.status == STATUS_SUCCESS, "the close did not succeed")
    report.check(stage.on_wire("R", from_client=False), "the wire did not show the peer's RST")
    report.check(
        stage.not_on_wire("F") and stage.not_on_wire("R"),
        "the client put a FIN or RST on the wire after the reset",
    )


# --- the table -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    expected: str
    run: Callable[[Stage], None]
    script: Callable[[threading.Event], list[Step]]
    rcvbuf: int | None = None


def _reads(_go: threading.Event) -> list[Step]:
    return [read_to_end]


def _reads_then_fin(_go: threading.Event) -> list[Step]:
    return [read_to_end, peer_shutdown]


def _stalled(go: threading.Event) -> list[Step]:
    return [peer_wait(go), read_to_end]


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "seed-sample",
            "The guide's DisconnectSocket / DisconnectComplete, line for line",
            "graceful: FIN after the data; the IRP completes STATUS_SUCCESS once the transport"
            " finished (our FIN acknowledged)",
            seed_sample,
            _reads_then_fin,
        ),
        Scenario(
            "graceful-final-data",
            "Graceful disconnect with a final buffer",
            "the final buffer is sent after earlier sends, then FIN; completes STATUS_SUCCESS"
            " with Information = the final buffer's length",
            graceful_with_final_data,
            _reads_then_fin,
        ),
        Scenario(
            "half-open",
            "Receiving after our graceful disconnect (half-open connection)",
            "after our FIN sends are refused, but receiving goes on until the peer's FIN"
            " (0 bytes); closing then sends nothing",
            half_open,
            lambda go: [read_to_end, peer_send(b"reply after your FIN"), peer_shutdown],
        ),
        Scenario(
            "stuck-graceful",
            "A graceful disconnect that cannot finish, recovered by an abortive one",
            "stays pending while the data cannot be delivered; WSK_FLAG_ABORTIVE forces its"
            " completion (RST; pending requests end)",
            stuck_graceful_then_abortive,
            _stalled,
            rcvbuf=4096,
        ),
        Scenario(
            "stuck-graceful-close",
            "A graceful disconnect that cannot finish, recovered by WskCloseSocket",
            "stays pending; WskCloseSocket cancels every pending IRP (STATUS_CANCELLED),"
            " resets the connection and completes last",
            stuck_graceful_then_close,
            _stalled,
            rcvbuf=4096,
        ),
        Scenario(
            "abortive",
            "Abortive disconnect with a send and a receive pending",
            "RST at once; the pending send is cancelled, the pending receive aborted; nothing"
            " is sent or received afterwards",
            abortive_with_pending_requests,
            _stalled,
            rcvbuf=4096,
        ),
        Scenario(
            "close-without-disconnect",
            "WskCloseSocket on a connection that was not disconnected",
            "the WSK subsystem performs an abortive disconnect (RST) before closing",
            close_without_disconnect,
            _reads,
        ),
        Scenario(
            "buffer-with-abortive",
            "A buffer together with WSK_FLAG_ABORTIVE",
            "refused (Buffer must be NULL): STATUS_INVALID_PARAMETER, connection untouched",
            buffer_with_abortive,
            _reads_then_fin,
        ),
        Scenario(
            "peer-graceful-event",
            "The peer's graceful disconnect, seen through WskDisconnectEvent",
            "WskDisconnectEvent with Flags 0; the data before the peer's FIN is still received,"
            " then 0 bytes; sending still works; our FIN then ends the connection without RST",
            peer_graceful_event,
            lambda go: [peer_wait(go), peer_send(b"last words"), peer_shutdown, read_to_end],
        ),
        Scenario(
            "peer-abortive-event",
            "The peer's abortive disconnect, seen through WskDisconnectEvent",
            "WskDisconnectEvent with WSK_FLAG_ABORTIVE; the pending receive fails with"
            " STATUS_CONNECTION_RESET; WskDisconnect gets STATUS_FILE_FORCED_CLOSED; close it",
            peer_abortive_event,
            lambda go: [peer_wait(go), peer_abort],
        ),
    )
}
#: Every scenario's name and title, the datagram ones (demo_udp.py) last.
ALL_SCENARIOS: dict[str, Scenario | UdpScenario] = {**SCENARIOS, **UDP_SCENARIOS}


def run_scenario(name: str, wire: WireMode = "auto") -> Report:
    """Run one scenario by name and return its report (never raises for a deviation)."""
    if name in UDP_SCENARIOS:
        return run_udp_scenario(name, wire)
    scenario = SCENARIOS[name]
    report = Report("demo", scenario.name, scenario.title, scenario.expected)
    go = threading.Event()
    stage: Stage | None = None
    try:
        stage = Stage(report, scenario.script(go), wire=wire, go=go, rcvbuf=scenario.rcvbuf)
        scenario.run(stage)
        stage.finish()
    except Exception as exc:  # a scenario that breaks is a deviation, reported like one
        report.problems.append(f"scenario failed: {exc!r}")
        if stage is not None:
            stage.abandon()
    finally:
        go.set()
    return report
