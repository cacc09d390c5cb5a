"""The reports every ``pywsk`` command prints, draws and writes as JSON.

What it does: a :class:`~pywsk.trace.Timeline` (defined in :mod:`pywsk.trace`, re-exported
here) collects :class:`~pywsk.trace.Event` objects from any thread - the driver thread that
issues WSK calls, the provider thread that runs completion routines and event callbacks, the
packet-capture reader, the peer's threads - each stamped with the wall clock, so calls,
completions, segments and what the peer did interleave in the order they happened; the
client runtime's tracer (:class:`~pywsk.trace.Recorder`) fills it.  A :class:`Report` is one
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

from dataclasses import dataclass, field
from typing import Any, Literal

from ..trace import GROUP_LIMIT, LANES, Event, Kind, Lane, Timeline, short_status, status_tone

Outcome = Literal["ok", "inconclusive", "deviation", "disagrees"]

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
