"""What ``pywsk probe --udp`` and ``pywsk serve --udp`` report, and the evidence behind it.

What it does: the sequence header pywsk's datagrams carry (:func:`sequenced`,
:func:`sequence_of`: ``PWSK``, the datagram's number and the stream's total, big-endian),
the count of a stream's datagrams received, lost, duplicated and reordered
(:func:`analyse`), the reconciliation of our counts with a packet capture
(:func:`reconcile`), and :class:`UdpReport` - one verdict with the claims it rests on,
each with the observation it comes from - printed by :func:`print_udp_report` or as JSON.

What it refuses: to count loss or reordering of datagrams without a sequence header (they
are "not judged", never zero); to call a report OK when the capture disagrees with it.

What always holds: an outcome is one of ``ok``, ``deviation``, ``inconclusive``,
``unreachable``, ``disagrees``, and each comes with the evidence that decided it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Final

from rich.console import Console

from ..testing.udpcapture import UdpCapture

__all__ = [
    "MAGIC",
    "SequenceStats",
    "UdpReport",
    "analyse",
    "print_udp_report",
    "reconcile",
    "sequence_of",
    "sequenced",
]

MAGIC: Final = b"PWSK"
_HEADER: Final = struct.Struct(">4sII")
#: The smallest datagram that carries the header.
HEADER_SIZE: Final = _HEADER.size


def sequenced(number: int, total: int, size: int) -> bytes:
    """Datagram ``number`` of ``total``: the header, then a pattern up to ``size`` bytes."""
    head = _HEADER.pack(MAGIC, number, total)
    fill = bytes((number + k) & 0xFF for k in range(max(0, size - len(head))))
    return head + fill


def sequence_of(payload: bytes) -> tuple[int, int] | None:
    """(number, total) of a datagram with pywsk's header, else None."""
    if len(payload) < _HEADER.size or payload[:4] != MAGIC:
        return None
    _magic, number, total = _HEADER.unpack_from(payload)
    return number, total


@dataclass
class SequenceStats:
    """A stream's datagrams as numbered by their headers, counted as they arrive (the
    numbers seen are kept, not the datagrams)."""

    received: int = 0
    received_bytes: int = 0
    unsequenced: int = 0
    total: int | None = None
    duplicates: int = 0
    reordered: int = 0
    seen: set[int] = field(default_factory=set)
    highest: int = -1

    @property
    def distinct(self) -> int:
        return len(self.seen)

    @property
    def lost(self) -> int | None:
        """Datagrams of the stream never received (None when the total is unknown)."""
        return None if self.total is None else max(0, self.total - self.distinct)

    def add(self, payload: bytes) -> None:
        """Count one datagram: one whose number is below one seen before is reordered; a
        number seen before is a duplicate; the total comes from the headers themselves."""
        self.received += 1
        self.received_bytes += len(payload)
        numbered = sequence_of(payload)
        if numbered is None:
            self.unsequenced += 1
            return
        number, total = numbered
        self.total = total if self.total is None else max(self.total, total)
        if number in self.seen:
            self.duplicates += 1
            return
        self.seen.add(number)
        if number < self.highest:
            self.reordered += 1
        self.highest = max(self.highest, number)

    def as_dict(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "unsequenced": self.unsequenced,
            "total": self.total,
            "lost": self.lost,
            "duplicates": self.duplicates,
            "reordered": self.reordered,
        }


def analyse(payloads: list[bytes]) -> SequenceStats:
    """:class:`SequenceStats` of ``payloads``, in order."""
    stats = SequenceStats()
    for payload in payloads:
        stats.add(payload)
    return stats


@dataclass
class UdpReport:
    """One verdict: ``claims`` are (what, the observation it comes from)."""

    title: str
    outcome: str
    verdict: str
    claims: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def claim(self, what: str, evidence: str) -> None:
        self.claims.append((what, evidence))

    def disagree(self, problem: str) -> None:
        """A disagreement with the wire: a reported problem, and the outcome says so."""
        self.problems.append(problem)
        self.outcome = "disagrees"

    def as_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "outcome": self.outcome,
            "verdict": self.verdict,
            "claims": [{"claim": c, "evidence": e} for c, e in self.claims],
            "problems": self.problems,
            **self.facts,
        }


_STYLE: Final = {
    "ok": "green",
    "deviation": "red",
    "inconclusive": "yellow",
    "unreachable": "red",
    "disagrees": "magenta",
}


def print_udp_report(report: UdpReport, out: Console) -> None:
    style = _STYLE.get(report.outcome, "white")
    out.print(f"[bold]{report.title}[/bold]")
    for what, evidence in report.claims:
        out.print(f"  {what}  [dim]({evidence})[/dim]")
    for problem in report.problems:
        out.print(f"  [magenta]problem:[/magenta] {problem}")
    out.print(f"  [{style}]{report.outcome.upper()}[/{style}]: {report.verdict}")
    out.print()


def reconcile(
    report: UdpReport,
    wire: UdpCapture,
    ours: tuple[Any, ...],
    theirs: tuple[Any, ...],
    sent: int,
    received: int,
    until: float | None = None,
) -> None:
    """Check our counts against the capture: datagrams from ``ours`` to ``theirs`` on the
    wire against ``sent``, and back against ``received``.  A difference is a problem.
    ``until`` (``time.time()``): when our socket stopped receiving - datagrams that reached
    it later are named, not counted."""
    wire.sync()
    port, peer = int(ours[1]), _host_port(theirs)  # our port: we may be bound to a wildcard
    out = [d for d in wire.datagrams if d.src[1] == port and d.dst == peer]
    back = [d for d in wire.datagrams if d.src == peer and d.dst[1] == port]
    late = [d for d in back if until is not None and d.at > until]
    if late:
        back = [d for d in back if d not in late]
        report.claim(
            f"{len(late)} more reached our address after the socket stopped receiving",
            "tcpdump's timestamps",
        )
    report.facts["wire"] = {"sent": len(out), "received": len(back)}
    report.claim(
        f"on the wire: {len(out)} datagram(s) to the peer, {len(back)} back",
        "tcpdump on lo",
    )
    if len(out) != sent:
        report.disagree(f"we report {sent} datagram(s) sent, the capture shows {len(out)}")
    if len(back) != received:
        report.disagree(
            f"we report {received} datagram(s) received, the capture shows {len(back)} "
            "reaching our address"
        )


def _host_port(address: tuple[Any, ...]) -> tuple[str, int]:
    return (str(address[0]), int(address[1]))
