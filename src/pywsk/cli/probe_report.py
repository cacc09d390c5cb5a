"""The words and facts of a ``pywsk probe`` report, each from an observation.

What it does: :func:`describe` turns a finished :class:`~pywsk.cli.probe_run.ProbeRun` into
the report's peer line, notes and JSON facts, and judges ``--expect``, ``--expect-bytes``
and ``--http``.  Every claim names the observation it rests on: a WSK completion or event
callback (``seen_by``), the packet capture, or our own call.  Who caused the server's end is
decided from the order of ends - on the wire when a capture ran, otherwise as WSK reported
them: *on its own* (before we ended our side), *in answer to the scenario's disconnect*, or
*in answer to our clean-up* (the FIN ``wait-for-peer`` sends after ``--timeout``, our close).

What it refuses: to count an end caused by our clean-up as the expected one; to print
payload bytes or header values unless ``--show-data``.

What always holds: "received" is what our WskReceive calls returned, "sent" what our
WskSend calls (and final buffers) completed with; neither is ever inferred.
"""

from __future__ import annotations

import http.client
import io
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from ..core.ending import Ending, How
from ..nt import (
    STATUS_CANCELLED,
    STATUS_CONNECTION_RESET,
    STATUS_FILE_FORCED_CLOSED,
    STATUS_SUCCESS,
)
from ..wsk import WSK_FLAG_ABORTIVE
from .evidence import reconcile
from .session import describe_address
from .timeline import short_status

if TYPE_CHECKING:
    from .probe_run import ProbeRun

__all__ = ["HttpReply", "describe", "parse_http"]

_SAFE_HEADERS = {"content-length", "transfer-encoding", "connection", "content-type", "server"}


def _preview(data: bytes, total: int) -> str:
    shown = data[:37] + b"..." if len(data) > 40 or total > len(data) else data
    return repr(shown)


def _cause(run: ProbeRun, at: float | None) -> str:
    """``own`` / ``answer`` (to the scenario's disconnect) / ``cleanup`` (to our clean-up)."""
    disc, close = run.disconnect, run.close
    ours = [c.issued_at for c in (disc, close) if c is not None]
    wire = run.wire_facts
    if wire is not None and wire.end(1) is not None:
        theirs_wire = wire.end(1)
        ours_wire = wire.end(0)
        assert theirs_wire is not None
        if ours_wire is None or theirs_wire[1] < ours_wire[1]:
            return "own"
        at = theirs_wire[1]
    elif not ours or at is None or at < min(ours):
        return "own"
    if run.cleanup_at is not None and at is not None and at >= run.cleanup_at:
        return "cleanup"
    return "answer"


def _our_end_words(run: ProbeRun) -> str:
    disc = run.disconnect
    if disc is None:
        return "our WskCloseSocket (RST)"
    if disc.label.endswith("WSK_FLAG_ABORTIVE)"):
        return "our abortive disconnect (RST)"
    return "our FIN"


def describe(run: ProbeRun) -> None:
    report, reader, options = run.report, run.reader, run.options
    total = reader.total if reader else 0
    head = reader.received() if reader else b""
    told, told_at = run.peer_end()
    wire = run.wire_facts
    wire_end = wire.end(1) if wire is not None else None
    how: How | None = told.how if told is not None else (wire_end[0] if wire_end else None)
    at = told_at if told is not None else (wire_end[1] if wire_end else None)
    seen_by: list[str] = []
    events = run.context.disconnect_events
    if events:
        abortive = events[0][1] & WSK_FLAG_ABORTIVE
        seen_by.append(
            "WskDisconnectEvent(" + ("WSK_FLAG_ABORTIVE" if abortive else "Flags 0") + ")"
        )
    final = reader.final if reader else None
    if final is not None and final.status == STATUS_SUCCESS:
        seen_by.append("WskReceive: 0 bytes")
    elif final is not None and final.status == STATUS_CONNECTION_RESET:
        seen_by.append("WskReceive: STATUS_CONNECTION_RESET")
    if (
        told is Ending.PEER_FIN_THEN_RST
        and run.disconnect is not None
        and run.disconnect.status == STATUS_FILE_FORCED_CLOSED
    ):
        seen_by.append("WskDisconnect: STATUS_FILE_FORCED_CLOSED")
    if wire_end is not None:
        seen_by.append(f"the capture ({wire_end[0].upper()} at {report.ms(wire_end[1]):.3f} ms)")
    cause = _cause(run, at) if how is not None else "none"
    when = f" at {report.ms(at):.3f} ms" if at is not None else ""
    if how is None:
        words = "did not end the connection while we watched (no FIN or RST reported by WSK"
        words += ", none on the wire)" if wire is not None else ")"
    elif cause == "own":
        words = f"ended the connection on its own with {how.words}{when}"
    elif cause == "answer":
        words = f"answered {_our_end_words(run)} with {how.words}{when}"
    else:
        words = (
            f"did not end the connection on its own; it answered {_our_end_words(run)}, sent to "
            f"finish the probe, with {how.words}{when}"
        )
    timing = ""
    if reader is not None and reader.first_at is not None:
        timing = (
            f" (first at {report.ms(reader.first_at):.3f} ms, "
            f"last at {report.ms(reader.last_at):.3f} ms)"
        )
    data = f" {_preview(head, total)}" if options.show_data and total else ""
    how_seen = f" - seen by {', '.join(seen_by)}" if seen_by else ""
    report.peer = (
        f"we received {total} B from the server{data}{timing}, and {run.sent()} B of ours were "
        f"sent; the server {words}{how_seen}"
    )
    ours = _our_disconnect(run)
    after_fin = reader.bytes_after(run.fin_mark) if reader else 0
    received: dict[str, Any] = {
        "bytes": total,
        "first_ms": report.ms(reader.first_at) if reader else None,
        "last_ms": report.ms(reader.last_at) if reader else None,
        "after_our_disconnect": after_fin,
    }
    if options.show_data:
        received["preview"] = _preview(head, total)
    report.facts = {
        "target": describe_address(run.address),
        "local_port": run.local_port,
        "sent": run.sent(),
        "handed_to_wsk": run.issued,
        "received": received,
        "peer_end": {
            "how": str(how) if how is not None else "none",
            "ms": report.ms(at),
            "cause": cause,
            "reported_by_wsk": str(told.how) if told is not None else "none",
            "seen_by": seen_by,
        },
        "our_disconnect": ours,
        "close": {
            "status": short_status(run.close.status) if run.close else None,
            "ms": report.ms(run.close.completed_at) if run.close else None,
        },
    }
    if run.started_at is not None and run.connected_at is not None:
        report.facts["connect_ms"] = round((run.connected_at - run.started_at) * 1e3, 3)
    if run.started_at is not None and run.finished_at is not None:
        report.facts["duration_ms"] = round((run.finished_at - run.started_at) * 1e3, 3)
    if run.interrupted:
        report.facts["interrupted"] = True
    if wire is not None:
        reconcile(report, run.claims(), wire)
    _judge_expect(run, how, cause)
    _judge_bytes(run, total, after_fin)
    if options.http:
        _judge_http(run, head, total, after_fin)


def _our_disconnect(run: ProbeRun) -> dict[str, Any] | None:
    disc, report = run.disconnect, run.report
    if disc is None:
        return None
    kind = "abortive" if disc.label.endswith("WSK_FLAG_ABORTIVE)") else "graceful"
    if kind == "graceful":
        if disc.status == STATUS_SUCCESS:
            report.notes.append(
                f"our graceful disconnect completed STATUS_SUCCESS at "
                f"{report.ms(disc.completed_at):.3f} ms: the server acknowledged our FIN"
            )
        elif (
            run.close is not None
            and disc.status == STATUS_CANCELLED
            and disc.completed_at is not None
            and disc.completed_at >= run.close.issued_at
        ):
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
    return {
        "kind": kind,
        "returned": short_status(disc.returned),
        "status": short_status(disc.status) if disc.done else None,
        "called_ms": report.ms(disc.issued_at),
        "completed_ms": report.ms(disc.completed_at),
        "fin_acknowledged": kind == "graceful" and disc.status == STATUS_SUCCESS,
    }


def _judge_expect(run: ProbeRun, how: How | None, cause: str) -> None:
    expect = run.options.expect
    if expect == "any":
        return
    report = run.report
    if expect == "none":
        if how is not None and cause != "cleanup":
            report.check(
                False,
                f"expected the server not to end the connection; it ended it with {how.words}"
                + (" on its own" if cause == "own" else f" in answer to {_our_end_words(run)}"),
            )
        return
    wanted = How(expect)
    matches = how is not None and (how is wanted or (how.sent_fin and how.sent_rst))
    if matches and cause != "cleanup":
        return
    if how is None:
        what = "it did not end the connection"
    elif cause == "cleanup":
        what = (
            f"it did not end the connection within {run.options.timeout:g} s; its {how.words} "
            f"came only in answer to {_our_end_words(run)}, sent to finish the probe"
        )
    else:
        what = f"it ended with {how.words}"
    report.check(False, f"expected the server to end with {expect.upper()}, {what}")


def _judge_bytes(run: ProbeRun, total: int, after_fin: int) -> None:
    want = run.options.expect_bytes
    if want is None:
        return
    where = f" ({total - after_fin} B received before we called WskDisconnect, {after_fin} B after)"
    if total < want:
        run.report.check(False, f"short reply: expected {want} B, received {total} B{where}")
    elif total > want:
        run.report.check(False, f"long reply: expected {want} B, received {total} B{where}")


@dataclass
class HttpReply:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    framing: str
    """``Content-Length N``, ``chunked``, ``until the connection closes`` or ``no body``."""
    body: int
    """Body bytes that arrived (decoded, for chunked)."""
    complete: bool
    missing: int | None
    """Bytes of the body that never came, when the framing says how many."""


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def makefile(self, *_args: Any, **_kwargs: Any) -> io.BufferedReader:
        return io.BufferedReader(io.BytesIO(self.data))


class _Response(http.client.HTTPResponse):
    """The standard library's parser over bytes already received."""

    def __init__(self, data: bytes, method: str) -> None:
        super().__init__(cast(socket.socket, _Bytes(data)), method=method)
        self.data = data
        self.method_name = method


def parse_http(data: bytes, method: str) -> HttpReply:
    """Parse an HTTP/1.x response with the standard library's client; raises ValueError."""
    response = _Response(data, method)
    try:
        response.begin()
    except (http.client.HTTPException, OSError) as exc:
        raise ValueError(f"not an HTTP response: {exc!r}") from exc
    headers = list(response.getheaders())
    length = response.getheader("content-length")
    if response.chunked:
        framing = "chunked"
    elif method.upper() == "HEAD" or response.status in (204, 304) or response.status < 200:
        framing = "no body"
    elif length is not None:
        framing = f"Content-Length {length}"
    else:
        framing = "until the connection closes"
    missing: int | None = None
    body, complete = _read_body(response)
    if not complete and not response.chunked and length is not None and length.isdigit():
        missing = int(length) - body
    return HttpReply(response.status, response.reason, headers, framing, body, complete, missing)


def _read_body(response: _Response, step: int = 65536) -> tuple[int, bool]:
    """Body bytes that arrived (decoded) and whether the framing was satisfied.  A chunked
    read cut short loses the piece it was reading, so that piece is counted again, byte by
    byte, on a fresh parse."""
    body = 0
    try:
        while piece := response.read(step):
            body += len(piece)
    except http.client.IncompleteRead as exc:
        if step == 1:
            return body + len(exc.partial), False
        return body + _tail(response, body), False
    except (http.client.HTTPException, OSError, ValueError):
        return body, False
    return body, not response.length  # Content-Length bytes still owed: cut short


def _tail(response: _Response, done: int) -> int:
    """Bytes of a cut-short body beyond ``done``, counted on a fresh parse of the reply."""
    fresh = _Response(response.data, response.method_name)
    fresh.begin()
    if done:
        fresh.read(done)
    return _read_body(fresh, 1)[0]


def _judge_http(run: ProbeRun, head: bytes, total: int, after_fin: int) -> None:
    report, options = run.report, run.options
    method = (options.http or "GET").split()[0]
    if total > len(head):
        report.notes.append(f"--http: only the first {len(head)} B of {total} B were parsed")
    try:
        reply = parse_http(head, method)
    except ValueError as exc:
        report.check(False, f"--http: {exc}")
        return
    shown = [
        (k, v if options.show_data or k.lower() in _SAFE_HEADERS else "...")
        for k, v in reply.headers
    ]
    report.facts["http"] = {
        "status": reply.status,
        "reason": reply.reason,
        "headers": shown,
        "framing": reply.framing,
        "body_bytes": reply.body,
        "complete": reply.complete,
    }
    report.notes.append(
        f"HTTP {reply.status} {reply.reason}; body {reply.framing}: {reply.body} B"
        + ("" if reply.complete else " (truncated)")
    )
    if not reply.complete and total == len(head):
        missing = f", {reply.missing} B missing" if reply.missing is not None else ""
        report.check(
            False,
            f"truncated HTTP body ({reply.framing}): {reply.body} B arrived{missing}; of the "
            f"reply, we had received {total - after_fin} B when we called WskDisconnect and "
            f"{after_fin} B after",
        )
