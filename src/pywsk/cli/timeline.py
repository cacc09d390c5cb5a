"""The timeline every ``pywsk`` command records, prints, draws and writes as JSON.

What it does: a :class:`Timeline` collects :class:`Event` objects from any thread - the
driver thread that issues WSK calls, the provider thread that runs completion routines and
event callbacks, the packet-capture reader, the peer's threads - each stamped with the wall
clock (:func:`time.time`, the clock packet captures use), so calls, completions, segments
and what the peer did interleave in the order they happened.  A :class:`Report` is one
scenario, probe or served connection: its timeline, what went on the wire, what the peer
observed, and a verdict against the documented behaviour.

Every event belongs to one of four lanes, the columns of a sequence diagram:

* ``client`` - the WSK client (driver-style code: the scenario, ``probe`` or ``serve``);
* ``provider`` - pywsk's WSK subsystem (completion routines and event callbacks come from
  here);
* ``wire`` - TCP segments (from a packet capture) or the TCP state (without one);
* ``peer`` - the other end of the connection.

What it refuses: nothing; it only records.

What always holds: events are kept in time order when read (:meth:`Timeline.events`); a
report's verdict is "OK" exactly when no check failed, the scenario's precondition happened
(otherwise it is "INCONCLUSIVE", never OK) and, when a capture ran, the wire agreed with every
claim of the report (otherwise "DISAGREES WITH THE WIRE").  A timeline keeps at most
:data:`GROUP_LIMIT` events of each bulk group (a long transfer is counted, not stored), so a
report's size does not grow with the bytes it moved.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from ..nt import NT_SUCCESS, NTSTATUS, STATUS_PENDING

__all__ = [
    "GROUP_LIMIT",
    "LANES",
    "Event",
    "Kind",
    "Lane",
    "Outcome",
    "Report",
    "Timeline",
    "condensed",
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
Outcome = Literal["ok", "inconclusive", "deviation", "disagrees"]


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
    them are condensed for display (:func:`condensed`)."""

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


@dataclass
class Report:
    """One scenario (``demo``), one run against a server (``probe``) or one served connection."""

    command: str
    name: str
    title: str
    expected: str
    timeline: Timeline = field(default_factory=Timeline)
    wire_source: str = ""
    wire: list[str] = field(default_factory=list)
    """Readable lines of everything captured, or of the TCP states seen."""
    wire_summary: str = ""
    """One line: who sent FIN / RST, according to :attr:`wire_source`."""
    peer: str = ""
    """What the peer observed (demo) or did (probe, serve)."""
    problems: list[str] = field(default_factory=list)
    """Deviations: what was observed and is not the documented (or --expect'ed) behaviour."""
    inconclusive: list[str] = field(default_factory=list)
    """Why the scenario did not test what it meant to (its precondition did not happen)."""
    disagreements: list[str] = field(default_factory=list)
    """Claims of this report that the packet capture contradicts."""
    notes: list[str] = field(default_factory=list)
    """Remarks that are not deviations (e.g. a graceful disconnect that could not stall)."""
    facts: dict[str, Any] = field(default_factory=dict)
    """Command-specific results, for ``--json`` (probe: the peer's bytes, its end, ...)."""
    lanes: dict[str, str] = field(
        default_factory=lambda: {
            "client": "WSK client",
            "provider": "pywsk provider",
            "wire": "wire",
            "peer": "peer",
        }
    )

    @property
    def ok(self) -> bool:
        return not (self.problems or self.inconclusive or self.disagreements)

    @property
    def outcome(self) -> Outcome:
        """``disagrees`` (with the wire) before ``deviation`` before ``inconclusive``."""
        if self.disagreements:
            return "disagrees"
        if self.problems:
            return "deviation"
        if self.inconclusive:
            return "inconclusive"
        return "ok"

    def verdicts(self) -> list[str]:
        """One line per reason, worst first: ``OUTCOME - why``."""
        if self.ok:
            return ["OK - behaves as documented"]
        return (
            [f"DISAGREES WITH THE WIRE - {d}" for d in self.disagreements]
            + [f"DEVIATION - {p}" for p in self.problems]
            + [f"INCONCLUSIVE - {i}" for i in self.inconclusive]
        )

    @property
    def verdict(self) -> str:
        return "; ".join(self.verdicts())

    def check(self, condition: bool, problem: str) -> bool:
        """Record ``problem`` unless ``condition``; return ``condition``."""
        if not condition:
            self.problems.append(problem)
        return condition

    def ms(self, at: float | None) -> float | None:
        """``at`` in milliseconds since the start of this report."""
        return None if at is None else round((at - self.timeline.t0) * 1e3, 3)

    def as_dict(self) -> dict[str, Any]:
        t0 = self.timeline.t0
        return {
            "command": self.command,
            "name": self.name,
            "title": self.title,
            "expected": self.expected,
            "ok": self.ok,
            "outcome": self.outcome,
            "verdict": self.verdict,
            "problems": list(self.problems),
            "inconclusive": list(self.inconclusive),
            "disagreements": list(self.disagreements),
            "notes": list(self.notes),
            "started_at": t0,
            "timeline": [e.as_dict(t0) for e in self.timeline.events()],
            "wire_source": self.wire_source,
            "wire_summary": self.wire_summary,
            "wire": list(self.wire),
            "peer": self.peer,
            **({"facts": self.facts} if self.facts else {}),
        }


def condensed(events: list[Event], limit: int = 8) -> list[Event]:
    """``events`` for display: a run of more than ``limit`` grouped events in a row (a bulk
    transfer's segments, reads and receives, however they interleave) becomes one summary
    per group.  Events without a group are never merged and always break a run."""
    out: list[Event] = []
    run: list[Event] = []

    def flush() -> None:
        if len(run) <= limit:
            out.extend(run)
        else:
            groups: dict[str, list[Event]] = {}
            for event in run:
                assert event.group is not None
                groups.setdefault(event.group, []).append(event)
            for event in run:
                assert event.group is not None
                items = groups[event.group]
                if len(items) <= 2:
                    out.append(event)
                elif event is items[0]:
                    out.append(_summary(items))
        run.clear()

    for event in events:
        if event.group is None:
            flush()
            out.append(event)
        else:
            run.append(event)
    flush()
    return out


def _summary(items: list[Event]) -> Event:
    first, last = items[0], items[-1]
    span = (last.at - first.at) * 1e3
    if first.kind == "segment":
        out = [e for e in items if e.src == "provider"]
        back = [e for e in items if e.src == "peer"]
        text = (
            f"... {len(items)} segments in {span:.1f} ms: {len(out)} to the peer "
            f"({sum(e.length or 0 for e in out)} B), {len(back)} from the peer "
            f"({sum(e.length or 0 for e in back)} B)"
        )
        return Event(first.at, "segment", "wire", text, length=None, group=first.group)
    total = sum(e.length or 0 for e in items)
    if first.lane == "peer":
        return Event(
            first.at,
            "peer",
            "peer",
            f"... {len(items)} reads in {span:.1f} ms: received {total} B",
            length=total,
            group=first.group,
        )
    calls = sum(1 for e in items if e.kind == "call")
    return Event(
        first.at,
        "note",
        "client",
        f"... {calls} more {first.group} calls in {span:.1f} ms, {total} B moved",
        length=total,
        group=first.group,
    )
