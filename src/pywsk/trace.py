"""The tracer: a documented recording hook on a WSK client, and the timeline it fills.

What it does: a :class:`Tracer` is told, by the driver-style client runtime
(:class:`pywsk.client.Client`), everything that client sees of its own connections - every
WSK call and what it returned (:meth:`Tracer.returned`), every completion of the IRPs it
issued with its status, Information, IRQL and thread (:meth:`Tracer.completed`), every event
callback it registered and the provider made (:meth:`Tracer.callback`) - and, when a packet
capture runs (:class:`pywsk.testing.capture.WireCapture`), what went on the wire
(:meth:`Tracer.segment`, fed by :func:`record_capture`).  Subclass it to do anything with
those facts; :class:`Recorder` is the tracer the ``pywsk`` commands use: it writes them as
:class:`Event` objects into a :class:`Timeline` (one per connection if asked:
:meth:`Recorder.attach`), which :meth:`Recorder.text`, :meth:`Recorder.svg` and
:meth:`Recorder.html` print and draw exactly as ``pywsk demo`` / ``probe`` / ``serve`` do.
:class:`Tracers` sends the same facts to several tracers.

Usage (docs/tracing.md)::

    from pywsk.client import Client
    from pywsk.trace import Recorder

    recorder = Recorder()
    with Client(tracer=recorder) as client:
        sock = client.socket_connect(("127.0.0.1", port), timeout=5.0)
        client.send(sock, b"hello").completed_within(5.0)
        client.disconnect(sock).completed_within(5.0)
    print(recorder.text())
    Path("connection.svg").write_text(recorder.svg())

What it refuses: nothing; a tracer only listens.  A tracer is called on whichever thread
the fact happened - the caller's for a call, the provider thread (at DISPATCH_LEVEL) for
most completions and every event callback - so it must not block, wait or issue WSK calls.

What always holds: the tracer sees only what the client itself observed (its calls, the
completion routines it set, the callbacks it registered, the capture it ran); nothing here
reaches into the provider.  Events are stamped with the wall clock (:func:`time.time`, the
clock packet captures use) and read back in time order; a bulk group keeps at most
:data:`GROUP_LIMIT` events (the rest are counted), so a timeline does not grow with the
bytes a connection moved.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .nt import NT_SUCCESS, NTSTATUS, STATUS_PENDING

if TYPE_CHECKING:
    from .cli.timeline import Report
    from .client import Call
    from .testing.capture import Segment, WireCapture

__all__ = [
    "GROUP_LIMIT",
    "LANES",
    "Event",
    "Kind",
    "Lane",
    "Recorder",
    "SegmentFact",
    "Timeline",
    "Tracer",
    "Tracers",
    "record_capture",
    "record_segments",
    "short_status",
    "status_tone",
]

Lane = Literal["client", "provider", "wire", "peer"]
LANES: tuple[Lane, ...] = ("client", "provider", "wire", "peer")

#: call: client -> provider (a WSK function and what it returned);
#: complete: provider -> client (an IRP's completion routine ran);
#: callback: provider -> client (an event callback such as WskDisconnectEvent);
#: segment: a TCP segment, provider side <-> peer (``src``/``dst`` say which way);
#: state: the TCP state changed (wire lane, when there is no capture);
#: peer: something the peer did or saw; note: a remark on the client's lane.
Kind = Literal["call", "complete", "callback", "segment", "state", "peer", "note"]


def short_status(value: int | None) -> str:
    """``STATUS_SUCCESS`` for a known NTSTATUS, ``0x........`` for another, ``-`` for None."""
    if value is None:
        return "-"
    try:
        return NTSTATUS(value).name
    except ValueError:
        return f"0x{value & 0xFFFFFFFF:08X}"


def status_tone(value: int | None) -> str:
    """``good`` / ``pending`` / ``bad`` / ``none``: how a status should be coloured."""
    if value is None:
        return "none"
    if value == STATUS_PENDING:
        return "pending"
    return "good" if NT_SUCCESS(value) else "bad"


@dataclass(frozen=True)
class Event:
    """One thing that happened, on one lane (or an arrow between two lanes)."""

    at: float
    """Wall-clock time (:func:`time.time`)."""
    kind: Kind
    lane: Lane
    text: str
    src: Lane | None = None
    dst: Lane | None = None
    status: int | None = None
    """The NTSTATUS a call returned or an IRP completed with."""
    flags: str | None = None
    """TCP flags of a segment, in tcpdump's letters (``"F."``, ``"R."``, ``"P."``)."""
    length: int | None = None
    """Payload bytes of a segment, or bytes moved by a call."""
    group: str | None = None
    """Events of a bulk transfer (plain segments, repeated reads) share a group; long runs of
    them are condensed for display (``pywsk.cli.timeline.condensed``)."""
    irql: str | None = None
    """The IRQL a completion routine or event callback ran at (``DISPATCH_LEVEL``)."""
    thread: str | None = None
    """The thread it ran on (``provider`` for pywsk's provider thread, else the caller's)."""

    @property
    def arrow(self) -> bool:
        return self.src is not None and self.dst is not None

    def as_dict(self, t0: float) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ms": round((self.at - t0) * 1e3, 3),
            "kind": self.kind,
            "lane": self.lane,
            "event": self.text,
        }
        if self.arrow:
            out["from"], out["to"] = self.src, self.dst
        if self.status is not None:
            out["status"] = short_status(self.status)
        if self.flags is not None:
            out["flags"] = self.flags
        if self.length is not None:
            out["bytes"] = self.length
        if self.irql is not None:
            out["irql"] = self.irql
        if self.thread is not None:
            out["thread"] = self.thread
        return out


#: Events of one bulk group kept in full; later ones are counted (:attr:`Timeline.dropped`).
GROUP_LIMIT = 64


class Timeline:
    """A thread-safe, time-ordered list of events; bulk groups are bounded."""

    def __init__(self, t0: float | None = None) -> None:
        self.t0 = time.time() if t0 is None else t0
        self._lock = threading.Lock()
        self._events: list[Event] = []
        self._group_counts: dict[str, int] = {}
        #: group -> [events left out, bytes they moved, first and last time]
        self.dropped: dict[str, list[float]] = {}

    def add(self, event: Event) -> Event:
        with self._lock:
            group = event.group
            if group is not None:
                count = self._group_counts.get(group, 0) + 1
                self._group_counts[group] = count
                if count > GROUP_LIMIT:
                    left = self.dropped.setdefault(group, [0, 0, event.at, event.at])
                    left[0] += 1
                    left[1] += event.length or 0
                    left[2] = min(left[2], event.at)
                    left[3] = max(left[3], event.at)
                    return event
            self._events.append(event)
        return event

    def record(
        self,
        kind: Kind,
        lane: Lane,
        text: str,
        *,
        at: float | None = None,
        src: Lane | None = None,
        dst: Lane | None = None,
        status: int | None = None,
        flags: str | None = None,
        length: int | None = None,
        group: str | None = None,
        irql: str | None = None,
        thread: str | None = None,
    ) -> Event:
        return self.add(
            Event(
                time.time() if at is None else at,
                kind,
                lane,
                text,
                src,
                dst,
                status,
                flags,
                length,
                group,
                irql,
                thread,
            )
        )

    def note(self, text: str, at: float | None = None) -> Event:
        return self.record("note", "client", text, at=at)

    def peer(self, text: str, at: float | None = None, *, group: str | None = None) -> Event:
        return self.record("peer", "peer", text, at=at, group=group)

    def extend(self, events: Iterable[Event]) -> None:
        with self._lock:
            self._events.extend(events)

    def rebase(self) -> None:
        """Start the clock at the earliest event, if one came before :attr:`t0` (a served
        connection's handshake is on the wire before its accept)."""
        with self._lock:
            if self._events:
                self.t0 = min(self.t0, min(e.at for e in self._events))

    def events(self) -> list[Event]:
        """Every event kept so far, in time order (ties keep the order they were recorded),
        with one summary event per bulk group that went over :data:`GROUP_LIMIT`."""
        with self._lock:
            events = list(self._events)
            for group, (count, moved, first, last) in self.dropped.items():
                events.append(
                    Event(
                        first,
                        "note",
                        "client",
                        f"... {int(count)} more {group} events in {(last - first) * 1e3:.1f} ms"
                        f" not kept ({int(moved)} B)",
                        length=int(moved),  # no group: its own line, never merged
                    )
                )
        return sorted(events, key=lambda e: e.at)


# --- the hook ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SegmentFact:
    """A TCP segment as the tracer is told it (:meth:`Tracer.segment`)."""

    at: float
    """The kernel's capture time (the wall clock)."""
    text: str
    """``client:40012 -> peer:80 [F.] seq=14 ack=1 len=0`` (sequence numbers relative)."""
    outgoing: bool
    """Ours (from our port), or the peer's."""
    flags: str
    """tcpdump's letters."""
    length: int
    plain: bool
    """Neither SYN, FIN nor RST (a bulk transfer's segments are condensed for display)."""


#: A call that takes this long to return to its caller says so in the timeline.
SLOW_CALL_MS = 5.0


class Tracer:
    """The recording hook of :class:`pywsk.client.Client`: every method does nothing here.

    Override what you need.  ``sock`` is the WSK_SOCKET the fact is about (None for calls on
    the client, such as WskSocket or WskGetAddressInfo, before a socket exists).
    """

    def returned(self, call: Call) -> None:
        """A WSK call returned to its issuer: ``call.returned`` (often STATUS_PENDING),
        ``call.issued_at`` / ``call.returned_at``, ``call.label``, ``call.socket``."""

    def completed(self, call: Call) -> None:
        """The completion routine of the call's IRP ran: ``call.status``,
        ``call.information``, ``call.pending_returned``, ``call.completed_at``,
        ``call.completion_irql`` and ``call.completion_thread``."""

    def callback(self, sock: Any, event: str, flags: int, text: str, at: float) -> None:
        """An event callback the client registered was called (``event`` is its name, such
        as ``WskDisconnectEvent``; ``text`` says what it reported)."""

    def note(self, sock: Any, text: str, at: float) -> None:
        """A remark of the client's own (a cancel, a decision)."""

    def segment(self, sock: Any, fact: SegmentFact) -> None:
        """A TCP segment of the connection, as a packet capture saw it."""

    def state(self, sock: Any, at: float, text: str) -> None:
        """The TCP state of the connection changed (when no capture runs)."""


class Tracers(Tracer):
    """Several tracers, each told every fact in turn."""

    def __init__(self, *tracers: Tracer) -> None:
        self.tracers = list(tracers)

    def returned(self, call: Call) -> None:
        for tracer in self.tracers:
            tracer.returned(call)

    def completed(self, call: Call) -> None:
        for tracer in self.tracers:
            tracer.completed(call)

    def callback(self, sock: Any, event: str, flags: int, text: str, at: float) -> None:
        for tracer in self.tracers:
            tracer.callback(sock, event, flags, text, at)

    def note(self, sock: Any, text: str, at: float) -> None:
        for tracer in self.tracers:
            tracer.note(sock, text, at)

    def segment(self, sock: Any, fact: SegmentFact) -> None:
        for tracer in self.tracers:
            tracer.segment(sock, fact)

    def state(self, sock: Any, at: float, text: str) -> None:
        for tracer in self.tracers:
            tracer.state(sock, at, text)


def _information(value: Any) -> str:
    from .wsk import WSK_SOCKET

    if isinstance(value, WSK_SOCKET):
        return "<socket>"
    return str(value)


class Recorder(Tracer):
    """The tracer of the ``pywsk`` commands: every fact becomes an :class:`Event` of a
    :class:`Timeline` - the timeline of its socket (:meth:`attach`), or :attr:`timeline`."""

    def __init__(self, timeline: Timeline | None = None) -> None:
        self.timeline = timeline if timeline is not None else Timeline()
        self._lock = threading.Lock()
        self._timelines: dict[Any, Timeline] = {}

    # --- where a socket's facts go ---------------------------------------------------------
    def attach(self, sock: Any, timeline: Timeline) -> None:
        """Record what happens on ``sock`` in ``timeline`` (e.g. one per served connection)."""
        with self._lock:
            self._timelines[sock] = timeline

    def forget(self, sock: Any) -> None:
        """Stop routing ``sock`` (a long-running server drops closed connections)."""
        with self._lock:
            self._timelines.pop(sock, None)

    def timeline_of(self, sock: Any) -> Timeline:
        if sock is None:
            return self.timeline
        with self._lock:
            return self._timelines.get(sock, self.timeline)

    # --- the facts ---------------------------------------------------------------------------
    def returned(self, call: Call) -> None:
        if not call.record or call.returned is None:
            return
        took = ((call.returned_at or call.issued_at) - call.issued_at) * 1e3
        # A call that blocked its caller says so: the line is stamped when it was issued.
        slow = f" after blocking {took:.3f} ms" if took >= SLOW_CALL_MS else ""
        self.timeline_of(call.socket).record(
            "call",
            "client",
            f"{call.label} returned {short_status(call.returned)}{slow}",
            at=call.issued_at,
            src="client",
            dst="provider",
            status=call.returned,
            group=call.group,
        )

    def completed(self, call: Call) -> None:
        if not call.record:
            return
        how = "after STATUS_PENDING" if call.pending_returned else "inline"
        elapsed = call.elapsed_ms() or 0.0
        info = call.information
        self.timeline_of(call.socket).record(
            "complete",
            "provider",
            f"IRP of {call.name} completed {short_status(call.status)}, "
            f"Information={_information(info)} ({how}, +{elapsed:.3f} ms)",
            at=call.completed_at,
            src="provider",
            dst="client",
            status=call.status,
            length=info if isinstance(info, int) else None,
            group=call.group,
            irql=_irql(call.completion_irql),
            thread=call.completion_thread_name,
        )

    def callback(self, sock: Any, event: str, flags: int, text: str, at: float) -> None:
        from .nt import KeGetCurrentIrql

        self.timeline_of(sock).record(
            "callback",
            "provider",
            text,
            at=at,
            src="provider",
            dst="client",
            irql=_irql(KeGetCurrentIrql()),
            thread=threading.current_thread().name,
        )

    def note(self, sock: Any, text: str, at: float) -> None:
        self.timeline_of(sock).note(text, at=at)

    def segment(self, sock: Any, fact: SegmentFact) -> None:
        ours = fact.outgoing
        lanes: tuple[Lane, Lane] = ("provider", "peer") if ours else ("peer", "provider")
        self.timeline_of(sock).record(
            "segment",
            "wire",
            fact.text,
            at=fact.at,
            src=lanes[0],
            dst=lanes[1],
            flags=fact.flags,
            length=fact.length,
            group="segments" if fact.plain else None,
        )

    def state(self, sock: Any, at: float, text: str) -> None:
        self.timeline_of(sock).record("state", "wire", text, at=at)

    # --- the CLI's views ---------------------------------------------------------------------
    def report(self, title: str = "connection", sock: Any = None) -> Report:
        """The timeline of ``sock`` (default: :attr:`timeline`) as a ``pywsk`` report (a
        trace checks nothing: it has no problems, and its JSON says so in ``expected``)."""
        from .cli.timeline import Report

        report = Report("trace", "trace", title, "", timeline=self.timeline_of(sock))
        report.expected = "nothing checked: a trace of what the client saw"
        return report

    def text(self, title: str = "connection", sock: Any = None) -> str:
        """The timeline as ``pywsk probe`` prints it (plain text, no colours, no verdict)."""
        import io

        from .cli.render import console, print_timeline

        out = io.StringIO()
        report = self.report(title, sock)
        report.expected = ""
        print_timeline(report, console(out))
        return out.getvalue()

    def svg(self, title: str = "connection", sock: Any = None) -> str:
        """The timeline as the sequence diagram of ``pywsk ... --diagram FILE.svg``."""
        from .cli.diagram import svg

        return svg([self.report(title, sock)], title)

    def html(self, title: str = "connection", sock: Any = None) -> str:
        """The same diagram in an HTML page."""
        from .cli.diagram import html

        return html([self.report(title, sock)], title)


def _irql(level: int | None) -> str | None:
    if level is None:
        return None
    from .nt.irql import irql_name

    return irql_name(level)


def record_segments(
    tracer: Tracer,
    sock: Any,
    segments: Sequence[Segment],
    ours: int,
    names: tuple[str, str] = ("client", "peer"),
) -> list[SegmentFact]:
    """Tell ``tracer`` about each segment of one connection (``ours`` is our port): its
    flags and sequence numbers relative to each side's first.  Returns what it told."""
    base: dict[int, int] = {}
    for s in segments:
        base.setdefault(s.sport, s.seq)
    facts: list[SegmentFact] = []
    for s in segments:
        outgoing = s.sport == ours
        src, dst = (names[0], names[1]) if outgoing else (names[1], names[0])
        seq = (s.seq - base[s.sport]) % 2**32
        ack = ""
        if s.ack_flag and s.dport in base:
            ack = f" ack={(s.ack - base[s.dport]) % 2**32}"
        text = f"{src}:{s.sport} -> {dst}:{s.dport} [{s.flags}] seq={seq}{ack} len={s.length}"
        plain = not (s.syn or s.fin or s.rst)
        fact = SegmentFact(s.time, text, outgoing, s.flags, s.length, plain)
        tracer.segment(sock, fact)
        facts.append(fact)
    return facts


def record_capture(
    tracer: Tracer,
    capture: WireCapture,
    ours: int,
    theirs: int,
    sock: Any = None,
    names: tuple[str, str] = ("client", "peer"),
) -> list[SegmentFact]:
    """Tell ``tracer`` what ``capture`` kept of the connection between our port ``ours`` and
    the peer's port ``theirs`` (call :meth:`WireCapture.sync` first to have all of it)."""
    segments = [
        s for s in capture.segments if (s.sport, s.dport) in ((ours, theirs), (theirs, ours))
    ]
    return record_segments(tracer, sock, segments, ours, names)
