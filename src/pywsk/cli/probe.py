"""``pywsk probe HOST:PORT``: disconnect from any TCP server the way a WSK client does, and
report what the server did.

What it does: for each chosen scenario, a fresh WSK client (:class:`~pywsk.cli.session.Session`)
creates a connection socket with WskSocket (its WSK_CLIENT_CONNECTION_DISPATCH carries a
WskDisconnectEvent), binds it, connects it with WskConnect (cancelled with IoCancelIrp if
the server does not answer in time), enables WSK_EVENT_DISCONNECT, and keeps a WskReceive
pending all along (:class:`Reader`).  Then it performs the scenario's disconnect - graceful,
with a final buffer, half-open, abortive, in the middle of a transfer, a close without a
disconnect, a graceful disconnect stalled then recovered, or none until the server ends the
connection - and waits, bounded, for the server's end.

The server's end is read the WSK way: WskDisconnectEvent (Flags 0 = its FIN,
WSK_FLAG_ABORTIVE = its RST) and the receive completions (STATUS_SUCCESS with 0 bytes = FIN,
STATUS_CONNECTION_RESET = RST).  The report says what the server sent back and when, how and
when it ended the connection, and whether our graceful disconnect completed - that is, the
server acknowledged our FIN.  The verdict checks pywsk's side against the documented
behaviour; ``expect`` adds a check on the server's end.

A scenario whose precondition did not happen - no transfer in progress at the abort, a
graceful disconnect that could not stall, a server that had reset the connection before our
abort - is *inconclusive* (its own verdict and exit status), never OK.  The connection
itself is :class:`~pywsk.cli.probe_run.ProbeRun`; the report's words are
:mod:`pywsk.cli.probe_report`.

What it refuses: nothing once connected; an unreachable server raises
:class:`~pywsk.cli.session.SessionError` before anything is reported.

What always holds: every wait is bounded by the scenario's timeout; the socket is closed and
the client deregistered whatever happens.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..core.ending import Ending
from ..nt import (
    STATUS_CANCELLED,
    STATUS_CONNECTION_ABORTED,
    STATUS_CONNECTION_RESET,
    STATUS_FILE_FORCED_CLOSED,
    STATUS_INVALID_DEVICE_STATE,
    STATUS_PENDING,
    STATUS_SUCCESS,
)
from .probe_run import Payload, ProbeOptions, ProbeRun, new_report
from .session import Call, Session, SessionError, describe_address
from .timeline import Report, Timeline, short_status
from .wire import CaptureWire

__all__ = [
    "PROBE_SCENARIOS",
    "Payload",
    "ProbeOptions",
    "ProbeScenario",
    "resolve",
    "run_probe",
]


@dataclass(frozen=True)
class ProbeScenario:
    name: str
    title: str
    expected: str
    run: Callable[[ProbeRun], None]


# --- scenario bodies -----------------------------------------------------------------------------


def _reset(end: Ending | None) -> bool:
    """The server's end included its RST."""
    return end is not None and end.how.sent_rst


def _fin(end: Ending | None) -> bool:
    """The server's end included its FIN."""
    return end is not None and end.how.sent_fin


def _check_graceful(run: ProbeRun, disc: Call) -> None:
    """A graceful disconnect returns SUCCESS or PENDING and completes SUCCESS - unless the
    server reset the connection first, when the reset's statuses are the documented ones
    (STATUS_FILE_FORCED_CLOSED for a disconnect on a reset connection, Q15)."""
    report = run.report
    end, _ = run.peer_end()
    failures = {STATUS_CONNECTION_RESET, STATUS_CONNECTION_ABORTED, STATUS_FILE_FORCED_CLOSED}
    reset = _reset(end)
    report.check(
        disc.returned in {STATUS_SUCCESS, STATUS_PENDING} | (failures if reset else set()),
        f"WskDisconnect returned {short_status(disc.returned)}",
    )
    if disc.done:
        allowed = {STATUS_SUCCESS} | (failures if reset else set())
        if _cancelled_by_our_close(run, disc):
            allowed.add(STATUS_CANCELLED)  # Q4: a close cancels a pending disconnect
        report.check(
            disc.status in allowed,
            f"the graceful disconnect completed {short_status(disc.status)}",
        )
    if disc.status == STATUS_SUCCESS and isinstance(run.wire, CaptureWire):
        report.check(
            run.wire.seen("F", run.local_port), "it completed, but no FIN of ours is on the wire"
        )


def _cancelled_by_our_close(run: ProbeRun, call: Call) -> bool:
    close = run.close
    return (
        close is not None
        and call.completed_at is not None
        and call.completed_at >= close.issued_at
        and call.status == STATUS_CANCELLED
    )


def _check_clean_close(run: ProbeRun) -> None:
    if run.close is not None:
        run.report.check(run.close.status == STATUS_SUCCESS, "WskCloseSocket did not succeed")


def graceful(run: ProbeRun) -> None:
    run.open()
    run.send_payload()
    disc = run.graceful()
    run.wait_for_end()
    run.close_socket()
    _check_graceful(run, disc)
    _check_clean_close(run)


def graceful_with_data(run: ProbeRun) -> None:
    run.open()
    payload = run.options.payload
    final = (payload.whole() if payload is not None else None) or b"pywsk probe: final data\n"
    disc = run.graceful(final)
    run.wait_for_end()
    run.close_socket()
    _check_graceful(run, disc)
    if disc.status == STATUS_SUCCESS:
        run.report.check(
            disc.information == len(final), "Information is not the final buffer's length (Q5)"
        )
    _check_clean_close(run)


def half_open(run: ProbeRun) -> None:
    run.open()
    run.send_payload()
    disc = run.graceful()
    assert run.sock is not None
    refused = run.session.send(run.sock, b"after our FIN", label="WskSend after our FIN")
    run.wait_for_end()
    run.close_socket()
    _check_graceful(run, disc)
    run.report.check(
        refused.returned
        in (
            STATUS_INVALID_DEVICE_STATE,
            STATUS_CONNECTION_RESET,
            STATUS_FILE_FORCED_CLOSED,
            STATUS_CONNECTION_ABORTED,
        ),
        f"a send after our graceful disconnect returned {short_status(refused.returned)} (Q1)",
    )
    if run.reader is not None:
        run.report.notes.append(
            f"{run.reader.bytes_after(run.fin_mark)} B received after we called "
            "WskDisconnect (the half-open direction)"
        )
    _check_clean_close(run)


def _check_abort(run: ProbeRun, abort: Call, sends: list[Call], fin_sent: bool = False) -> None:
    report = run.report
    end, _ = run.peer_end()
    # What the server did can reach the kernel before WSK reports it to us, so an end we
    # learn of after the abort may still have been there at the abort.
    allowed = {STATUS_SUCCESS}
    if _reset(end):
        allowed.add(STATUS_FILE_FORCED_CLOSED)  # Q15: a disconnect on a reset connection
    if _fin(end) and fin_sent:
        allowed.add(STATUS_INVALID_DEVICE_STATE)  # Q13: both directions closed already
    report.check(
        abort.returned in allowed and abort.status == abort.returned,
        f"the abortive disconnect returned {short_status(abort.returned)}"
        + ("" if abort.returned == abort.status else f", completed {short_status(abort.status)}"),
    )
    reader = run.reader
    if reader is not None and reader.done.wait(5.0) and reader.final is not None:
        report.check(
            reader.final.status
            in (STATUS_CONNECTION_ABORTED, STATUS_SUCCESS, STATUS_CONNECTION_RESET),
            f"the pending receive ended {short_status(reader.final.status)} (Q3)",
        )
    sent_ok = {STATUS_SUCCESS, STATUS_CANCELLED}
    if _reset(end):
        sent_ok.add(STATUS_CONNECTION_RESET)  # the server's reset may have ended it first
    for send in sends:
        send.completed_within(5.0)
        report.check(
            send.status in sent_ok,
            f"a send pending at the abort ended {short_status(send.status)} (Q2)",
        )
    if isinstance(run.wire, CaptureWire):
        end, _ = run.peer_end()
        if end is None:
            report.check(run.wire.seen("R", run.local_port), "no RST of ours is on the wire")
        if not fin_sent:
            report.check(run.wire.absent("F", run.local_port), "a FIN of ours is on the wire")


def _not_reset_before(run: ProbeRun, action: str) -> None:
    """Inconclusive when WSK had reported the server's reset before ``action``: the action
    on an open connection was not tested."""
    end, at = run.peer_end()
    if _reset(end) and at is not None:
        run.report.inconclusive.append(
            f"the server reset the connection before our {action}: {action} on an open "
            "connection was not tested"
        )


def abortive(run: ProbeRun) -> None:
    run.open()
    run.send_payload()
    _not_reset_before(run, "abort")
    abort = run.abort()
    after = run.session.send(run.sock, b"x", label="WskSend after the abort") if run.sock else None
    run.close_socket()
    _check_abort(run, abort, [])
    if after is not None:
        run.report.check(after.returned != STATUS_SUCCESS, "a send succeeded after the abort")
    _check_clean_close(run)


def abortive_mid_transfer(run: ProbeRun) -> None:
    run.open()
    sends, pending = run.fill(run.options.size)
    if not pending:
        run.report.inconclusive.append(
            f"every send completed at once ({run.issued} B): no transfer was in progress at "
            "the abort (try a larger --size)"
        )
    abort = run.abort()
    run.close_socket()
    _check_abort(run, abort, [s for s in sends if s.record])
    if pending:
        run.report.check(
            sends[-1].status == STATUS_CANCELLED, "the send in progress was not cancelled (Q2)"
        )
    _check_clean_close(run)


def close_without_disconnect(run: ProbeRun) -> None:
    run.open()
    run.send_payload()
    _not_reset_before(run, "close")
    close = run.close_socket()
    run.report.check(close.status == STATUS_SUCCESS, "WskCloseSocket did not succeed")
    end, _ = run.peer_end()
    if isinstance(run.wire, CaptureWire) and end is None:
        run.report.check(
            run.wire.seen("R", run.local_port),
            "no RST of ours is on the wire (a close without a full disconnect aborts)",
        )


def _stall(run: ProbeRun) -> tuple[list[Call], Call, bool]:
    run.open()
    sends, _pending = run.fill(run.options.size)
    disc = run.graceful(wait=False)
    stalled = not disc.completed_within(run.options.stall)
    if stalled:
        run.timeline.note(f"the graceful disconnect is still pending after {run.options.stall:g} s")
    elif disc.status == STATUS_SUCCESS:
        run.timeline.note("the graceful disconnect completed: the server read everything")
        run.report.inconclusive.append(
            "the server read everything, so the graceful disconnect could not stall "
            "(try a larger --size)"
        )
    else:
        run.timeline.note(
            f"the graceful disconnect ended {short_status(disc.status)}: the server ended "
            "the connection first"
        )
        run.report.inconclusive.append(
            "the server ended the connection before the graceful disconnect could stall"
        )
    return [s for s in sends if s.record], disc, stalled


def _check_forced(run: ProbeRun, disc: Call, recovery: Call, forced: int) -> None:
    """A stalled graceful disconnect ends with ``forced`` when the recovery ends it (Q4).

    The server may end the connection first (its RST, or its own close after a linger):
    then the disconnect completed before the recovery was issued, with the reset's status."""
    if disc.completed_at is not None and disc.completed_at < recovery.issued_at:
        end, _ = run.peer_end()
        allowed = {STATUS_SUCCESS}
        if _reset(end):
            allowed |= {STATUS_CONNECTION_RESET, STATUS_CONNECTION_ABORTED}
        run.report.notes.append(
            f"the stalled disconnect ended {short_status(disc.status)} before the recovery: "
            "the server ended the connection first"
        )
        run.report.check(
            disc.status in allowed,
            f"the stalled disconnect ended {short_status(disc.status)} before the recovery",
        )
        return
    run.report.check(
        disc.status == forced,
        f"the stalled disconnect ended {short_status(disc.status)}, not "
        f"{short_status(forced)} (Q4)",
    )


def stall_then_abort(run: ProbeRun) -> None:
    sends, disc, stalled = _stall(run)
    abort = run.abort()
    run.disconnect = disc
    run.close_socket()
    if stalled:
        disc.completed_within(5.0)
        _check_forced(run, disc, abort, STATUS_CONNECTION_ABORTED)
    _check_abort(run, abort, sends, fin_sent=not stalled or disc.status == STATUS_SUCCESS)
    _check_clean_close(run)


def stall_then_close(run: ProbeRun) -> None:
    sends, disc, stalled = _stall(run)
    close = run.close_socket()
    run.report.check(close.status == STATUS_SUCCESS, "WskCloseSocket did not succeed")
    if stalled:
        disc.completed_within(5.0)
        _check_forced(run, disc, close, STATUS_CANCELLED)
        end, _ = run.peer_end()
        sent_ok = {STATUS_SUCCESS, STATUS_CANCELLED}
        if _reset(end):
            sent_ok.add(STATUS_CONNECTION_RESET)
        for send in sends:
            send.completed_within(5.0)
            run.report.check(
                send.status in sent_ok,
                f"a send pending at the close ended {short_status(send.status)}",
            )
        if isinstance(run.wire, CaptureWire):
            run.report.check(run.wire.seen("R", run.local_port), "no RST of ours is on the wire")


def wait_for_peer(run: ProbeRun) -> None:
    run.open()
    run.send_payload()
    ended = run.wait_for_end()
    end, _ = run.peer_end()
    if not ended:
        run.timeline.note(
            f"the server did not end the connection within {run.options.timeout:g} s: "
            "we end it (our FIN)"
        )
    if _reset(end):
        run.close_socket()
    else:
        # Whatever the server does from here answers us: clean-up, not its own end.
        run.cleanup_at = time.time()
        disc = run.graceful()
        if not ended:
            # The server's answer to our FIN, waited for (bounded) before the close: a close
            # acts at once, and one made before the answer came would reset the connection.
            run.wait_for_end()
        run.close_socket()
        _check_graceful(run, disc)
    _check_clean_close(run)


PROBE_SCENARIOS: dict[str, ProbeScenario] = {
    s.name: s
    for s in (
        ProbeScenario(
            "graceful",
            "Graceful disconnect, then wait for the server's end",
            "WskDisconnect(0) completes STATUS_SUCCESS once the server acknowledges our FIN (it"
            " may stay pending while the server does not read); we keep receiving until its end",
            graceful,
        ),
        ProbeScenario(
            "graceful-with-data",
            "Graceful disconnect carrying the payload as its final buffer",
            "the final buffer goes out, then FIN; completes STATUS_SUCCESS with Information ="
            " the buffer's length",
            graceful_with_data,
        ),
        ProbeScenario(
            "half-open",
            "Graceful disconnect, then keep receiving (half-open)",
            "after our FIN a WskSend is refused (STATUS_INVALID_DEVICE_STATE) but whatever the"
            " server still sends is received, until its FIN",
            half_open,
        ),
        ProbeScenario(
            "abortive",
            "Abortive disconnect (WSK_FLAG_ABORTIVE)",
            "RST at once; returns STATUS_SUCCESS inline; the pending receive ends"
            " STATUS_CONNECTION_ABORTED; later sends fail",
            abortive,
        ),
        ProbeScenario(
            "abortive-mid-transfer",
            "Abortive disconnect while a large send is in progress",
            "RST at once; the send in progress completes STATUS_CANCELLED, the receive"
            " STATUS_CONNECTION_ABORTED",
            abortive_mid_transfer,
        ),
        ProbeScenario(
            "close-without-disconnect",
            "WskCloseSocket without a disconnect",
            "the close resets the connection (RST) and completes STATUS_SUCCESS",
            close_without_disconnect,
        ),
        ProbeScenario(
            "stall-then-abort",
            "Send more than the server reads, disconnect gracefully, then abort",
            "the graceful disconnect stays pending while the data cannot be delivered; the"
            " abort forces it complete (STATUS_CONNECTION_ABORTED) and cancels pending sends",
            stall_then_abort,
        ),
        ProbeScenario(
            "stall-then-close",
            "Send more than the server reads, disconnect gracefully, then close",
            "the graceful disconnect stays pending; WskCloseSocket completes it"
            " STATUS_CANCELLED, resets the connection, and completes last",
            stall_then_close,
        ),
        ProbeScenario(
            "wait-for-peer",
            "Send the payload, then let the server end the connection",
            "the server's FIN or RST arrives as WskDisconnectEvent and as a receive completion;"
            " after a FIN our graceful disconnect ends the connection without RST",
            wait_for_peer,
        ),
    )
}


# --- running -------------------------------------------------------------------------------------


def resolve(host: str, port: int, timeout: float) -> list[tuple[Any, ...]]:
    """WskGetAddressInfo through a short-lived client; raises SessionError."""
    session = Session(Timeline())
    try:
        found = session.resolve(host, port, timeout)
    finally:
        session.close()
    if not found:
        raise SessionError(f"{host!r} has no IPv4 or IPv6 address")
    return found


def run_probe(name: str, options: ProbeOptions, addresses: list[tuple[Any, ...]]) -> Report:
    """Run one scenario against the first address that accepts the connection.

    Raises :class:`SessionError` when no address accepts it; any other failure is reported
    as a deviation.  Ctrl-C ends the scenario where it is: the socket is closed with
    WskCloseSocket and the report so far comes back, inconclusive, with
    ``facts["interrupted"]``."""
    scenario = PROBE_SCENARIOS[name]
    failures: list[str] = []
    for address in addresses:
        target = describe_address(address)
        report = new_report(name, scenario.title, scenario.expected, target)
        run = ProbeRun(report, options, address)
        try:
            try:
                scenario.run(run)
            except KeyboardInterrupt:
                run.interrupted = True
                report.inconclusive.append("interrupted (Ctrl-C) before the scenario finished")
                report.timeline.note("interrupted (Ctrl-C): closing the socket")
                if run.sock is not None and run.close is None:
                    run.close_socket()
            run.finish()
        except SessionError as exc:
            run.abandon()
            if run.sock is None and not run.interrupted:  # not connected: try the next address
                failures.append(str(exc))
                continue
            report.problems.append(f"probe failed: {exc}")
        except KeyboardInterrupt:
            run.interrupted = True
            run.abandon()
            report.facts["interrupted"] = True
        except Exception as exc:
            run.abandon()
            report.problems.append(f"probe failed: {exc!r}")
        return report
    raise SessionError("; ".join(failures) or "no address to connect to")
