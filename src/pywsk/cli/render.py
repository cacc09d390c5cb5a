"""Reports as text for a terminal (rich), and as JSON.

What it does: :func:`print_report` prints one report - a heading, the documented behaviour,
the timeline (one line per event: when, what kind, what), where the wire information came
from and what it shows, what the peer did or saw, and the verdict - with colours on a
terminal and plain text otherwise.  Lines are never wrapped, so a log or a ``grep`` sees
each event whole.  :func:`print_summary` ends a run with a table and a count.

What it refuses: nothing.

What always holds: the text holds the same facts as the JSON (:meth:`Report.as_dict`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import IO, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .timeline import Event, Report, condensed, short_status, status_tone

__all__ = [
    "console",
    "counts_line",
    "err_console",
    "print_json",
    "print_report",
    "print_timeline",
    "print_summary",
    "tag_of",
]

_TONE = {"good": "green", "pending": "yellow", "bad": "bold red", "none": ""}
_OUTCOME_STYLE = {
    "ok": "bold green",
    "inconclusive": "bold yellow",
    "deviation": "bold red",
    "disagrees": "bold magenta",
}
_OUTCOME_WORD = {
    "ok": "OK",
    "inconclusive": "INCONCLUSIVE",
    "deviation": "DEVIATION",
    "disagrees": "DISAGREES WITH THE WIRE",
}

#: What each kind of event is called in the text, and its colour.
_TAGS = {
    "call": ("call", "cyan"),
    "complete": ("completion", "blue"),
    "callback": ("event", "magenta"),
    "state": ("wire", "bright_black"),
    "peer": ("peer", "green"),
    "note": ("client", "bright_black"),
}


def console(file: IO[str] | None = None) -> Console:
    """A console that never wraps lines (grep-able logs), colours only on a terminal."""
    return Console(file=file or sys.stdout, soft_wrap=True, highlight=False)


def err_console() -> Console:
    return Console(file=sys.stderr, soft_wrap=True, highlight=False)


def tag_of(event: Event) -> tuple[str, str]:
    if event.kind == "segment":
        flags = event.flags or ""
        style = "bold red" if "R" in flags else "bold blue" if "F" in flags else "bright_black"
        if event.src == "provider":
            return "wire >>", style
        if event.src == "peer":
            return "wire <<", style
        return "wire", style
    return _TAGS[event.kind]


def _status_style(event: Event) -> str:
    return _TONE[status_tone(event.status)]


def _line(report: Report, event: Event) -> Text:
    tag, style = tag_of(event)
    ms = (event.at - report.timeline.t0) * 1e3
    line = Text(f"  {ms:10.3f} ms  ")
    line.append(f"{tag:<10}", style=style)
    line.append("  ")
    text = event.text
    if event.status is not None and event.kind in ("call", "complete"):
        line.append(text, style="")
        line.highlight_words([short_status(event.status)], style=_status_style(event))
    elif event.kind == "segment":
        line.append(text, style=style if style != "bright_black" else "")
    else:
        line.append(text)
    return line


def print_timeline(report: Report, out: Console | None = None) -> None:
    """The heading and the timeline of ``report``, without a verdict (a trace)."""
    out = out or console()
    out.print()
    heading = Text(f"== {report.name}: ", style="bold")
    heading.append(report.title, style="bold")
    out.print(heading)
    if report.expected:
        out.print(Text(f"   documented: {report.expected}", style="italic"))
    for event in condensed(report.timeline.events()):
        out.print(_line(report, event))


def print_report(report: Report, out: Console | None = None) -> None:
    out = out or console()
    print_timeline(report, out)
    source = report.wire_source or "not observed"
    out.print(Text(f"   wire ({source}): {report.wire_summary or 'nothing seen'}"))
    out.print(Text(f"   peer: {report.peer or 'not observed'}"))
    for note in report.notes:
        out.print(Text(f"   note: {note}", style="bright_black"))
    style = _OUTCOME_STYLE[report.outcome]
    for line in report.verdicts():
        out.print(Text(f"   verdict: {line}", style=style))


def print_summary(
    reports: Sequence[Report], what: str = "scenarios", out: Console | None = None
) -> None:
    out = out or console()
    out.print()
    if out.is_terminal and len(reports) > 1:
        table = Table(title=None, show_lines=False, expand=False)
        table.add_column(what[:-1] if what.endswith("s") else what, style="bold")
        table.add_column("verdict")
        table.add_column("wire")
        for report in reports:
            outcome = report.outcome
            verdict = Text(_OUTCOME_WORD[outcome], style=_OUTCOME_STYLE[outcome])
            table.add_row(report.name, verdict, report.wire_summary)
        out.print(table)
    out.print(summary_line(reports, what))


def summary_line(reports: Sequence[Report], what: str) -> Text:
    """``3 of 4 probes behaved as documented; 1 inconclusive.`` (coloured by the worst)."""
    counts: dict[str, int] = {}
    for report in reports:
        counts[report.outcome] = counts.get(report.outcome, 0) + 1
    return counts_line(counts, what)


def counts_line(counts: dict[str, int], what: str) -> Text:
    """:func:`summary_line` from outcome counts."""
    total = sum(counts.values())
    extra = [
        f"{counts[o]} {word}"
        for o, word in (
            ("inconclusive", "inconclusive"),
            ("deviation", "deviated"),
            ("disagrees", "disagreed with the wire"),
        )
        if counts.get(o)
    ]
    worst = next((o for o in ("disagrees", "deviation", "inconclusive") if counts.get(o)), "ok")
    text = f"{counts.get('ok', 0)} of {total} {what} behaved as documented"
    return Text(
        text + ("; " + ", ".join(extra) if extra else "") + ".", style=_OUTCOME_STYLE[worst]
    )


def print_json(data: Any, stream: IO[str] | None = None) -> None:
    stream = stream or sys.stdout
    json.dump(data, stream, indent=2, default=str)
    stream.write("\n")
    stream.flush()


def reports_json(reports: Iterable[Report]) -> list[dict[str, Any]]:
    return [r.as_dict() for r in reports]
