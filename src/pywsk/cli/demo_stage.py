"""The stage a ``pywsk demo`` scenario runs on: a WSK client, an embedded peer, a wire observer.

What it does: :class:`Stage` starts a :class:`~pywsk.testing.peer.LoopbackPeer` on 127.0.0.1
with the scenario's script, registers a WSK client (:class:`~pywsk.cli.session.Session`),
opens the wire observer (a tcpdump capture on ``lo`` when running as root, otherwise the
client's TCP state), connects, and offers the checks the scenarios share (a FIN or RST on the
wire, filling the send window).  At the end it writes into the report what went on the wire
and what the peer did and observed, in the timeline's words.  The peer's script steps the
scenarios use (:func:`read_to_end`, :func:`peer_send`, :func:`peer_shutdown`,
:func:`peer_abort`, :func:`peer_wait`) are here too.  The scenarios themselves, and running
them by name, are in :mod:`pywsk.cli.demo`.

What it refuses: a scenario whose peer accepted no connection (:meth:`Stage.finish` raises
RuntimeError, which the runner reports as a deviation).

What always holds: every wait is bounded (:data:`WAIT`); :meth:`Stage.finish` and
:meth:`Stage.abandon` close every socket, deregister the client, stop the wire observer and
the peer; the report says which wire evidence it holds.
"""

from __future__ import annotations

import threading
import time

from ..nt import STATUS_PENDING
from ..testing.peer import LoopbackPeer, PeerConnection, PeerObservation, Step, WaitFor
from ..wsk import WSK_SOCKET
from .session import Call, Connection, Session
from .timeline import Report
from .wire import CaptureWire, StateWire, WireMode, open_wire

__all__ = [
    "CHUNK",
    "WAIT",
    "Stage",
    "describe_peer",
    "peer_abort",
    "peer_send",
    "peer_shutdown",
    "peer_wait",
    "read_to_end",
]

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
