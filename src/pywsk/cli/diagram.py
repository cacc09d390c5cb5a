"""Sequence diagrams of reports, as standalone SVG or as an HTML page (no dependencies).

What it does: :func:`svg` draws each report as a sequence diagram with four lifelines -
the WSK client, the pywsk provider, the wire and the peer - and one row per event, in time
order, with the time in a gutter on the left:

* a WSK call is a solid arrow client -> provider, labelled with the call, and the status it
  returned under the arrow;
* an IRP completion is a dashed arrow provider -> client, with its status and Information;
* an event callback (WskDisconnectEvent, WskAcceptEvent) is a dotted arrow provider ->
  client;
* a TCP segment is an arrow between the provider and the peer, labelled on the wire
  lifeline with its flags (FIN blue, RST red);
* the TCP state (without a capture), what the peer did, and the client's remarks are notes
  on their lifelines; a bulk transfer is one grey band.

Below each diagram: what the wire shows, what the peer saw, and the verdict.  :func:`html`
puts the same diagrams in one page.  :func:`write` picks the format from the file name.

What it refuses: nothing; text too long for its place is cut with an ellipsis and kept
whole in a tooltip (``<title>``).

What always holds: the output is well-formed XML (every text escaped), and depends on no
font beyond a generic monospace one.
"""

from __future__ import annotations

import html as html_escape
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from ..core.ending import How
from .timeline import LANES, Event, Report, condensed, status_tone

__all__ = ["html", "svg", "write"]

# --- geometry and colours ---------------------------------------------------------------------

WIDTH = 1200
GUTTER = 96
X = {"client": 180, "provider": 600, "wire": 835, "peer": 1065}
CHAR = 6.3  # width of one character of the 10.5 px monospace font
MONO = "DejaVu Sans Mono, Menlo, Consolas, Liberation Mono, monospace"
SANS = "DejaVu Sans, Helvetica, Arial, sans-serif"

INK = "#24292f"
MUTED = "#57606a"
FAINT = "#d0d7de"
COLOURS = {
    "call": "#0550ae",
    "complete": "#57606a",
    "callback": "#8250df",
    How.FIN: "#0969da",
    How.RST: "#cf222e",
    "syn": "#8c959f",
    "data": "#6e7781",
}
TONES = {"good": "#1a7f37", "pending": "#9a6700", "bad": "#cf222e", "none": MUTED}
NOTE_FILL = {"note": "#f6f8fa", "peer": "#dafbe1", "state": "#fff8c5", "segment": "#eaeef2"}
NOTE_STROKE = {"note": "#d0d7de", "peer": "#4ac26b", "state": "#d4a72c", "segment": "#afb8c1"}


def _fit(text: str, width: float) -> str:
    limit = max(int(width / CHAR), 4)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _text(
    x: float,
    y: float,
    text: str,
    *,
    size: float = 10.5,
    fill: str = INK,
    anchor: str = "middle",
    weight: str = "normal",
    family: str = MONO,
    width: float | None = None,
    italic: bool = False,
) -> str:
    shown = _fit(text, width) if width is not None else text
    title = f"<title>{escape(text)}</title>" if shown != text else ""
    style = ' font-style="italic"' if italic else ""
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-family={quoteattr(family)} font-size="{size}" '
        f'fill="{fill}" text-anchor="{anchor}" font-weight="{weight}"{style}>'
        f"{title}{escape(shown)}</text>"
    )


def _defs() -> str:
    markers = []
    for name, colour in COLOURS.items():
        markers.append(
            f'<marker id="arrow-{name}" viewBox="0 0 10 10" refX="9" refY="5" '
            f'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
            f'<path d="M0,0 L10,5 L0,10 z" fill="{colour}"/></marker>'
        )
    return "<defs>" + "".join(markers) + "</defs>"


# --- one report --------------------------------------------------------------------------------


@dataclass
class _Block:
    height: float
    body: list[str]


def _split(event: Event) -> tuple[str, str]:
    """An arrow's label: the call or routine above the line, the outcome below it."""
    text = event.text
    for word in (" returned ", " completed "):
        if word in text:
            head, tail = text.split(word, 1)
            return (head, ("=> " if word == " returned " else "") + tail)
    if ": " in text:
        head, tail = text.split(": ", 1)
        return head, tail
    return text, ""


def _segment_style(flags: str) -> str:
    """The colour (and arrow marker) of a segment: an end (:class:`How`) stands out."""
    if "R" in flags:
        return How.RST
    if "F" in flags:
        return How.FIN
    if "S" in flags:
        return "syn"
    return "data"


def _wrap(text: str, width: float, lines: int = 3) -> list[str]:
    chars = max(int(width / CHAR), 8)
    wrapped = textwrap.wrap(text, chars) or [""]
    if len(wrapped) > lines:
        wrapped = [*wrapped[: lines - 1], _fit(" ".join(wrapped[lines - 1 :]), width)]
    return wrapped


def _note(
    x: float, y: float, text: str, kind: str, width: float, *, left: bool = False
) -> tuple[float, list[str]]:
    """A note box centred on ``x`` (or starting just left of it, ``left``)."""
    lines = _wrap(text, width - 14)
    height = 8 + 13 * len(lines)
    box_w = min(width, max(len(line) for line in lines) * CHAR + 14)
    box_x = x - 12 if left else x - box_w / 2
    out = [
        f'<rect x="{box_x:.1f}" y="{y:.1f}" width="{box_w:.1f}" height="{height}" '
        f'rx="4" fill="{NOTE_FILL[kind]}" stroke="{NOTE_STROKE[kind]}"><title>'
        f"{escape(text)}</title></rect>"
    ]
    for i, line in enumerate(lines):
        if left:
            out.append(_text(box_x + 7, y + 15 + 13 * i, line, fill=INK, anchor="start"))
        else:
            out.append(_text(x, y + 15 + 13 * i, line, fill=INK))
    return height, out


def _arrow(x1: float, x2: float, y: float, colour: str, marker: str, dash: str = "") -> str:
    dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
    return (
        f'<line x1="{x1:.1f}" y1="{y:.1f}" x2="{x2:.1f}" y2="{y:.1f}" stroke="{colour}" '
        f'stroke-width="1.4"{dash_attr} marker-end="url(#arrow-{marker})"/>'
    )


def _row(report: Report, event: Event, y: float) -> _Block:
    """Draw one event at ``y``; return how tall it was."""
    body: list[str] = []
    ms = (event.at - report.timeline.t0) * 1e3
    if event.kind in ("call", "complete", "callback") and event.arrow:
        assert event.src is not None
        assert event.dst is not None
        x1, x2 = X[event.src], X[event.dst]
        top, bottom = _split(event)
        mid = (x1 + x2) / 2
        span = abs(x2 - x1) - 16
        line_y = y + 18
        marker = event.kind
        colour = COLOURS[marker]
        dash = {"call": "", "complete": "6 4", "callback": "2 3"}[event.kind]
        body.append(_text(mid, line_y - 5, top, fill=colour, width=span))
        body.append(_arrow(x1, x2 - (6 if x2 > x1 else -6), line_y, colour, marker, dash))
        bottom = bottom.replace("(after STATUS_PENDING, ", "(pended, ").replace(
            "Information=", "Info="
        )
        if bottom:
            tone = TONES[status_tone(event.status)] if event.status is not None else MUTED
            body.append(_text(mid, line_y + 13, bottom, fill=tone, width=span, size=10))
        height = 38.0
        time_y = line_y + 4
    elif event.kind == "segment" and event.arrow:
        assert event.src is not None
        assert event.dst is not None
        x1, x2 = X[event.src], X[event.dst]
        style = _segment_style(event.flags or "")
        colour = COLOURS[style]
        line_y = y + 16
        body.append(_arrow(x1, x2 - (6 if x2 > x1 else -6), line_y, colour, style))
        label = event.text.split("] ", 1)
        flags = f"[{event.flags}]" if event.flags else ""
        detail = label[1] if len(label) == 2 else ""
        tag = flags + (" " + detail if detail else "")
        w = len(tag) * CHAR + 10
        weight = "bold" if style in (How.FIN, How.RST) else "normal"
        body.append(
            f'<rect x="{X["wire"] - w / 2:.1f}" y="{line_y - 9:.1f}" width="{w:.1f}" '
            f'height="15" rx="3" fill="#ffffff" stroke="{colour}" stroke-width="0.8">'
            f"<title>{escape(event.text)}</title></rect>"
        )
        body.append(_text(X["wire"], line_y + 2.5, tag, fill=colour, weight=weight))
        height = 26.0
        time_y = line_y + 4
    elif event.kind == "segment":  # a condensed bulk transfer: a band across the wire
        left, right = X["provider"], X["peer"]
        lines = _wrap(event.text, right - left - 20, 2)
        band_h = 8 + 13 * len(lines)
        body.append(
            f'<rect x="{left:.1f}" y="{y + 4:.1f}" width="{right - left:.1f}" height="{band_h}" '
            f'rx="4" fill="{NOTE_FILL["segment"]}" stroke="{NOTE_STROKE["segment"]}"/>'
        )
        for i, line in enumerate(lines):
            body.append(_text(X["wire"], y + 19 + 13 * i, line, fill=MUTED))
        height = band_h + 10.0
        time_y = y + 19
    else:
        lane = event.lane
        kind = event.kind if event.kind in NOTE_FILL else "note"
        width = {"client": 440.0, "provider": 300.0, "wire": 400.0, "peer": 250.0}[lane]
        note_h, drawn = _note(X[lane], y + 4, event.text, kind, width, left=lane == "client")
        body.extend(drawn)
        height = note_h + 10.0
        time_y = y + 18
    body.insert(0, _text(GUTTER - 10, time_y, f"{ms:.3f} ms", anchor="end", fill=MUTED, size=9.5))
    return _Block(height, body)


def _section(report: Report, top: float) -> _Block:
    """One report's diagram, starting at ``top``."""
    body: list[str] = []
    y = top + 8
    verdict_colour = TONES["good"] if report.ok else TONES["bad"]
    body.append(
        f'<rect x="8" y="{y:.1f}" width="{WIDTH - 16}" height="6" rx="3" fill="{verdict_colour}"/>'
    )
    y += 28
    body.append(_text(16, y, f"{report.name}", size=15, weight="bold", anchor="start", family=SANS))
    body.append(
        _text(
            16 + (len(report.name) + 2) * 9.2,
            y,
            report.title,
            size=13,
            anchor="start",
            family=SANS,
            fill=MUTED,
            width=WIDTH - 40 - (len(report.name) + 2) * 9.2,
        )
    )
    for line in _wrap("documented: " + report.expected, WIDTH - 40, 3):
        y += 17
        body.append(
            _text(16, y, line, size=11, anchor="start", family=SANS, italic=True, fill=MUTED)
        )
    y += 16
    header_y = y
    for lane in LANES:
        label = report.lanes.get(lane, lane)
        w = max(len(label) * 7.2 + 24, 110)
        body.append(
            f'<rect x="{X[lane] - w / 2:.1f}" y="{y:.1f}" width="{w:.1f}" height="26" rx="5" '
            f'fill="#ffffff" stroke="{INK}" stroke-width="1.2"/>'
        )
        body.append(_text(X[lane], y + 17, label, size=12, weight="bold", family=SANS))
    y += 34
    rows: list[str] = []
    for event in condensed(report.timeline.events()):
        block = _row(report, event, y)
        rows.extend(block.body)
        y += block.height
    y += 6
    body.extend(
        f'<line x1="{X[lane]}" y1="{header_y + 26:.1f}" x2="{X[lane]}" y2="{y:.1f}" '
        f'stroke="{FAINT}" stroke-width="1.2" stroke-dasharray="4 4"/>'
        for lane in LANES
    )
    body.append(
        f'<line x1="{GUTTER}" y1="{header_y + 30:.1f}" x2="{GUTTER}" y2="{y:.1f}" '
        f'stroke="{FAINT}" stroke-width="1"/>'
    )
    body.extend(rows)
    y += 8
    facts = [
        f"wire ({report.wire_source or 'not observed'}): {report.wire_summary or 'nothing seen'}",
        f"peer: {report.peer or 'not observed'}",
        *(f"note: {n}" for n in report.notes),
    ]
    for fact in facts:
        for line in _wrap(fact, WIDTH - 40, 3):
            y += 15
            body.append(_text(16, y, line, size=10.5, anchor="start", family=SANS, fill=INK))
    y += 10
    verdict = "; ".join(report.verdicts()).replace(" - ", " \u2014 ", 1)
    lines = _wrap(("\u2713 " if report.ok else "\u2717 ") + verdict, WIDTH - 60, 4)
    box_h = 12 + 16 * len(lines)
    fill = "#dafbe1" if report.ok else "#ffebe9"
    body.append(
        f'<rect x="12" y="{y:.1f}" width="{WIDTH - 24}" height="{box_h}" rx="6" fill="{fill}" '
        f'stroke="{verdict_colour}"/>'
    )
    for i, line in enumerate(lines):
        body.append(
            _text(
                26,
                y + 20 + 16 * i,
                line,
                size=12.5,
                anchor="start",
                family=SANS,
                weight="bold",
                fill=verdict_colour,
            )
        )
    y += box_h + 18
    return _Block(y - top, body)


# --- documents ---------------------------------------------------------------------------------


def _svg_document(reports: Sequence[Report], title: str | None) -> str:
    body: list[str] = []
    y = 0.0
    if title:
        body.append(_text(16, 30, title, size=20, weight="bold", anchor="start", family=SANS))
        good = sum(r.ok for r in reports)
        body.append(
            _text(
                16,
                50,
                f"{good} of {len(reports)} behaved as documented",
                size=12,
                anchor="start",
                family=SANS,
                fill=TONES["good"] if good == len(reports) else TONES["bad"],
            )
        )
        y = 60.0
    for report in reports:
        block = _section(report, y)
        body.extend(block.body)
        y += block.height
    height = y + 8
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0f}" '
        f'viewBox="0 0 {WIDTH} {height:.0f}">'
        f"<title>{escape(title or 'pywsk')}</title>{_defs()}"
        f'<rect width="100%" height="100%" fill="#ffffff"/>' + "".join(body) + "</svg>\n"
    )


def svg(reports: Sequence[Report], title: str | None = None) -> str:
    """One SVG document with every report's diagram, one under the other."""
    return _svg_document(reports, title)


def html(reports: Sequence[Report], title: str = "pywsk") -> str:
    """An HTML page: a table of contents, then each report's diagram (inline SVG)."""
    good = sum(r.ok for r in reports)
    items = "".join(
        f'<li><a href="#{html_escape.escape(r.name)}">{html_escape.escape(r.name)}</a> '
        f'<span class="{"ok" if r.ok else "bad"}">{r.outcome.upper()}</span> '
        f"{html_escape.escape(r.title)}</li>"
        for r in reports
    )
    sections = "".join(
        f'<section id="{html_escape.escape(r.name)}">{_svg_document([r], None)}</section>'
        for r in reports
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html_escape.escape(title)}</title><style>"
        "body{font-family:system-ui,sans-serif;margin:24px;color:#24292f;background:#f6f8fa}"
        "section{background:#fff;border:1px solid #d0d7de;border-radius:8px;margin:18px 0;"
        "overflow-x:auto}svg{display:block}.ok{color:#1a7f37;font-weight:bold}"
        ".bad{color:#cf222e;font-weight:bold}li{margin:3px 0}"
        "</style></head><body>"
        f"<h1>{html_escape.escape(title)}</h1>"
        f"<p>{good} of {len(reports)} behaved as documented.</p><ul>{items}</ul>"
        f"{sections}</body></html>\n"
    )


def write(path: Path, reports: Sequence[Report], title: str) -> None:
    """Write ``reports`` to ``path``: HTML for ``.html``/``.htm``, SVG otherwise."""
    if path.suffix.lower() in (".html", ".htm"):
        path.write_text(html(reports, title), encoding="utf-8")
    else:
        path.write_text(svg(reports, title), encoding="utf-8")
