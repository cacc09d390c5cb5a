"""What went on the wire: a packet capture when one can run, otherwise the TCP state.

What it does: :class:`CaptureWire` runs :class:`~pywsk.testing.capture.WireCapture`
(tcpdump, so root) on the server's port and turns the segments of one connection into
``segment`` events on the wire lane - FIN, RST, data and ACKs, with the kernel's capture
time.  :class:`StateWire` is the fallback: after every WSK event it reads the TCP state of
the client's own socket (``tcpi_state``) and records each change, with what it implies
("our FIN sent and acknowledged", "the peer's FIN received", "reset").  Each says which
it is in :attr:`source`, and each writes a one-line summary: who sent FIN and who sent RST.

What it refuses: :func:`open_wire` with ``mode="capture"`` where no capture can run raises
:class:`WireUnavailable`.

What always holds: nothing here sends or changes anything on a connection; a capture is
always stopped (:meth:`CaptureWire.stop`, idempotent).
"""

from __future__ import annotations

import ipaddress
import signal
import threading
import time
from typing import Any, Literal

from ..core.ending import Ending
from ..testing.capture import WireCapture
from ..testing.tcp import TcpState
from ..trace import Recorder, Tracer, record_capture
from .evidence import WireFacts
from .session import Call, Session
from .timeline import Report, Timeline

__all__ = ["CaptureWire", "StateWire", "Wire", "WireMode", "WireUnavailable", "open_wire"]

WireMode = Literal["auto", "capture", "state"]

#: Lines of plain segments kept in a report's wire list (FIN, RST and SYN are always kept).
WIRE_LINES = 200

STATE_SOURCE = "our socket's TCP state, not a packet capture: that needs root and tcpdump"


class WireUnavailable(RuntimeError):
    """``--wire capture`` asked for a capture that cannot run here."""


class CaptureWire:
    """tcpdump on the server's port; segments of one connection become wire events."""

    def __init__(self, port: int, host: str | None = None) -> None:
        interface = "lo"
        host_filter = None
        if host is not None:
            address = ipaddress.ip_address(host.split("%", 1)[0])
            if not address.is_loopback:
                interface = "any"
                host_filter = f"host {address}"
        self.port = port
        self.capture = WireCapture(ports=[port], host_filter=host_filter, interface=interface)
        self.source = f"tcpdump on {interface}"

    def start(self) -> CaptureWire:
        # tcpdump ignores the terminal's Ctrl-C (the disposition is inherited across exec):
        # it must outlive us long enough to see the RST our own shutdown sends.
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
        try:
            self.capture.start()
        finally:
            if main:
                signal.signal(signal.SIGINT, previous)
        return self

    def stop(self) -> None:
        self.capture.stop()

    def save(self, path: str) -> None:
        """The capture so far as a pcap file (for Wireshark)."""
        self.capture.save(path)

    def sync(self) -> str | None:
        """Wait until what went on the wire so far is decoded; the reason when it cannot
        (tcpdump has stopped: the capture is incomplete)."""
        try:
            self.capture.sync()
        except (TimeoutError, RuntimeError) as exc:
            return str(exc)
        return None

    # --- per connection --------------------------------------------------------------------------
    def seen(self, flag: str, from_port: int, timeout: float = 2.0) -> bool:
        """Wait (bounded) for a segment with ``flag`` (``"F"`` or ``"R"``) from ``from_port``."""
        try:
            self.capture.wait_for(lambda s: flag in s.flags and s.sport == from_port, timeout)
        except TimeoutError:
            return False
        return True

    def absent(self, flag: str, from_port: int) -> bool:
        """No segment with ``flag`` from ``from_port`` so far (after a sync)."""
        self.sync()
        return not self.capture.matching(lambda s: flag in s.flags, from_port=from_port)

    def finish(
        self,
        report: Report,
        ours: int,
        theirs: int,
        names: tuple[str, str] = ("client", "peer"),
    ) -> WireFacts | None:
        """Add this connection's segments to the report's timeline, lines and summary;
        return what they show, or None when the capture is incomplete (said in the report)."""
        broken = self.sync()
        report.wire_source = self.source
        report.wire = []
        lines = record_capture(Recorder(report.timeline), self.capture, ours, theirs, None, names)
        t0 = lines[0].at if lines else 0.0
        for fact in lines:
            if len(report.wire) < WIRE_LINES or not fact.plain:
                report.wire.append(f"+{(fact.at - t0) * 1e3:9.3f} ms {fact.text}")
        facts = WireFacts.of_flows(*self.capture.flows.between(ours, theirs))
        report.wire_summary = _summary(
            names,
            fin=(facts.fin[0] is not None, facts.fin[1] is not None),
            rst=(facts.rst[0] is not None, facts.rst[1] is not None),
        )
        first = facts.end(0), facts.end(1)
        if first[0] or first[1]:
            side = 0 if first[1] is None or (first[0] and first[0][1] <= first[1][1]) else 1
            end = first[side]
            assert end is not None
            report.wire_summary += f"; first to end: {names[side]} ({end[0].upper()})"
        if broken is not None:
            report.wire_summary = "INCOMPLETE (the capture stopped early); " + report.wire_summary
            report.notes.append(
                f"the packet capture stopped before the connection ended ({broken}): "
                "nothing was reconciled with the wire"
            )
            return None
        return facts


def _summary(names: tuple[str, str], fin: tuple[bool, bool], rst: tuple[bool, bool]) -> str:
    parts = []
    for i, name in enumerate(names):
        sent = [flag for flag, seen in (("FIN", fin[i]), ("RST", rst[i])) if seen]
        parts.append(f"{name} sent {' and '.join(sent) if sent else 'neither FIN nor RST'}")
    return "; ".join(parts)


_MEANING = {
    TcpState.ESTABLISHED: "connected",
    TcpState.SYN_SENT: "connecting",
    TcpState.FIN_WAIT1: "our FIN sent, not acknowledged yet",
    TcpState.FIN_WAIT2: "our FIN sent and acknowledged",
    TcpState.TIME_WAIT: "FINs exchanged both ways",
    TcpState.CLOSE_WAIT: "the peer's FIN received",
    TcpState.LAST_ACK: "the peer's FIN received, ours sent",
    TcpState.CLOSING: "FINs crossed",
}
_KNOWN = {int(s) for s in TcpState}
_OUR_FIN = {
    TcpState.FIN_WAIT1,
    TcpState.FIN_WAIT2,
    TcpState.TIME_WAIT,
    TcpState.CLOSING,
    TcpState.LAST_ACK,
}
_PEER_FIN = {TcpState.CLOSE_WAIT, TcpState.LAST_ACK, TcpState.TIME_WAIT, TcpState.CLOSING}
#: A close from these states resets the connection (not disconnected in both directions).
_CLOSE_RESETS = {
    TcpState.ESTABLISHED,
    TcpState.FIN_WAIT1,
    TcpState.FIN_WAIT2,
    TcpState.CLOSE_WAIT,
    TcpState.LAST_ACK,
    TcpState.CLOSING,
}


class StateWire(Tracer):
    """Without a capture: our socket's TCP state after every traced WSK event (it is one of
    the session's tracers), as wire events."""

    source = STATE_SOURCE

    def __init__(self, session: Session, timeline: Timeline) -> None:
        self.session = session
        self.out = Recorder(timeline)
        self._lock = threading.Lock()
        self._tracked: list[_Tracked] = []
        session.watch(self)

    # --- the tracer: sample after what the timeline shows ----------------------------------
    def returned(self, call: Call) -> None:
        if call.record:
            self.sample()

    def completed(self, call: Call) -> None:
        if call.record:
            self.sample()

    def callback(self, sock: Any, event: str, flags: int, text: str, at: float) -> None:
        self.sample()

    def track(self, sock: Any, name: str = "client") -> None:
        if self.session.tcp_state(sock) is None:
            return
        tracked = _Tracked(sock, name)
        with self._lock:
            self._tracked.append(tracked)
        self.sample()

    def sample(self) -> None:
        with self._lock:
            tracked = list(self._tracked)
        for t in tracked:
            self._sample_one(t)

    def _sample_one(self, t: _Tracked) -> None:
        state = self.session.tcp_state(t.sock)
        with self._lock:
            if state == t.last or t.gone:
                return
            previous, t.last = t.last, state
            if state is None:
                t.gone = True
            else:
                t.seen.append(state)
        at = time.time()
        if state is None:
            if previous in _CLOSE_RESETS:
                t.reset_by_us = True
                text = "socket closed while not disconnected both ways: its close sent an RST"
            else:
                text = "socket closed; nothing more sent"
            self.out.state(None, at, f"{t.name} {text}")
            return
        name = _state_name(state)
        if state == TcpState.CLOSE:
            ours = self.session.ends(t.sock).ours
            if ours is not None and ours.how.sent_rst:
                t.reset_by_us = True
                meaning = "our RST (abortive disconnect)"
            elif ours is Ending.OUR_FIN or previous in _OUR_FIN:
                meaning = (
                    "ended after our FIN was acknowledged (the peer's FIN or an RST: the "
                    "state alone cannot tell)"
                )
            else:
                t.reset_by_peer = True
                meaning = "reset by the peer (or the transport gave up)"
        else:
            meaning = _MEANING.get(TcpState(state), "") if state in _KNOWN else ""
        if previous is None:
            text = f"{t.name} TCP {name}"
        else:
            text = f"{t.name} TCP {_state_name(previous)} -> {name}"
        self.out.state(None, at, text + (f": {meaning}" if meaning else ""))

    def finish(self, report: Report, names: tuple[str, str] = ("client", "peer")) -> None:
        self.sample()
        report.wire_source = self.source
        with self._lock:
            tracked = list(self._tracked)
        report.wire = []
        fin = [False, False]
        rst = [False, False]
        for t in tracked:
            path = " -> ".join(_state_name(s) for s in t.seen) + (" -> closed" if t.gone else "")
            report.wire.append(f"{t.name} TCP states: {path}")
            ends = self.session.ends(t.sock)
            fin[0] |= any(s in _OUR_FIN for s in t.seen) or ends.fin_acked_at is not None
            rst[0] |= t.reset_by_us
            if ends.peer is not None:
                fin[1] |= ends.peer.how.sent_fin
                rst[1] |= ends.peer.how.sent_rst
            else:
                fin[1] |= any(s in _PEER_FIN for s in t.seen)
                rst[1] |= t.reset_by_peer
        report.wire_summary = _summary(names, (fin[0], fin[1]), (rst[0], rst[1]))

    def stop(self) -> None:
        self.session.unwatch(self)


class _Tracked:
    __slots__ = ("gone", "last", "name", "reset_by_peer", "reset_by_us", "seen", "sock")

    def __init__(self, sock: Any, name: str) -> None:
        self.sock = sock
        self.name = name
        self.last: int | None = None
        self.seen: list[int] = []
        self.gone = False
        self.reset_by_us = False
        self.reset_by_peer = False


def _state_name(state: int) -> str:
    try:
        return TcpState(state).name
    except ValueError:
        return str(state)


Wire = CaptureWire | StateWire


def capture_possible() -> bool:
    return WireCapture.available()


def open_wire(
    mode: WireMode, session: Session, timeline: Timeline, port: int, host: str | None = None
) -> Wire:
    """A started :class:`CaptureWire` (``auto`` when possible, ``capture``) or a
    :class:`StateWire` (``state``, or ``auto`` without root and tcpdump)."""
    if mode == "capture" and not capture_possible():
        raise WireUnavailable("--wire capture needs root and tcpdump")
    if mode != "state" and capture_possible():
        try:
            return CaptureWire(port, host).start()
        except (RuntimeError, OSError, TimeoutError) as exc:
            if mode == "capture":
                raise WireUnavailable(f"tcpdump did not start: {exc}") from exc
    return StateWire(session, timeline)
