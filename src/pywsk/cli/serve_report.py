"""The report of one connection ``pywsk serve`` served: what each side did, from evidence.

What it does: :func:`describe` checks our disconnect against the documented statuses, adds
the wire (a capture's segments, reconciled with every claim, or our socket's TCP state),
and writes the words and facts: bytes *we received from* the client and bytes *of ours sent
to* it (WskSend completions), how and when the client ended the connection as WSK reported
it, and how *we* ended it - our FIN (WskDisconnect), our RST (WSK_FLAG_ABORTIVE), or the RST
of a WskCloseSocket on a connection that was not disconnected both ways, at shutdown too.  A
connection whose behaviour never ran (the client ended it before the trigger, the server
shut down, the idle timeout) is *inconclusive*, never OK.

What it refuses: to claim what no observation shows (an end WSK did not report is "not
reported", not "did not happen").

What always holds: the facts hold no payload bytes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.ending import Ending
from ..nt import (
    STATUS_CANCELLED,
    STATUS_CONNECTION_ABORTED,
    STATUS_CONNECTION_RESET,
    STATUS_FILE_FORCED_CLOSED,
    STATUS_PENDING,
    STATUS_SUCCESS,
)
from .evidence import Claims, reconcile
from .session import describe_address
from .timeline import short_status
from .wire import CaptureWire

if TYPE_CHECKING:
    from .serve import Served

__all__ = ["describe"]


def _abortive(served: Served) -> bool:
    call = served.disconnect_call
    return call is not None and call.label.endswith("WSK_FLAG_ABORTIVE)")


def check_disconnect(served: Served) -> None:
    """Our disconnect against the documented statuses, knowing now how the client ended:
    graceful - returned SUCCESS/PENDING, completed SUCCESS; abortive - SUCCESS inline.
    A client that reset the connection first makes the reset's statuses the right ones
    (STATUS_FILE_FORCED_CLOSED, Q15), and our own close cancels a pending one (Q4)."""
    call = served.disconnect_call
    if call is None:
        return
    failures = {STATUS_CONNECTION_RESET, STATUS_CONNECTION_ABORTED, STATUS_FILE_FORCED_CLOSED}
    abortive = _abortive(served)
    allowed_return = {STATUS_SUCCESS} if abortive else {STATUS_SUCCESS, STATUS_PENDING}
    allowed_status = {STATUS_SUCCESS}
    if served.reset_seen:
        allowed_return |= failures
        allowed_status |= failures
    close = served.close_call
    if close is not None and call.completed_at is not None and call.completed_at >= close.issued_at:
        allowed_status.add(STATUS_CANCELLED)
    kind = "abortive" if abortive else "graceful"
    served.report.check(
        call.returned in allowed_return,
        f"the {kind} disconnect returned {short_status(call.returned)}",
    )
    if call.done:
        served.report.check(
            call.status in allowed_status,
            f"the {kind} disconnect completed {short_status(call.status)}",
        )


def claims(served: Served) -> Claims:
    """What the report says of this connection, for reconciling it with the wire."""
    out = Claims("server", "client")
    disc, close = served.disconnect_call, served.close_call
    if disc is not None:
        out.our_end = Ending.OUR_RST if _abortive(served) else Ending.OUR_FIN
        out.our_end_call = disc.label
        out.our_end_at = disc.issued_at
        if out.our_end is Ending.OUR_FIN and disc.status == STATUS_SUCCESS:
            out.fin_acked_at = disc.completed_at
    elif close is not None:
        out.our_end, out.our_end_call = Ending.OUR_RST, "WskCloseSocket"
        out.our_end_at = close.issued_at
    out.closed_at = close.issued_at if close is not None else None
    end = served.peer_end
    out.peer_end = end if end is not None and end.by_peer else None
    out.peer_end_at = served.peer_end_at
    out.received = served.received
    out.read_to_end = served.read_to_end
    out.sent = served.sent
    out.sends_settled = served.pending_sends == 0
    return out


def our_end(served: Served) -> tuple[Ending | None, str]:
    """How we ended the connection (None: we did not) and the words for it, from our own
    calls."""
    disc, close, report = served.disconnect_call, served.close_call, served.report
    peer = served.peer_end
    if _abortive(served) and disc is not None:
        return (
            Ending.OUR_RST,
            f"we reset it: WskDisconnect(WSK_FLAG_ABORTIVE) at {report.ms(disc.issued_at):.3f} ms",
        )
    both_ways = (
        disc is not None and disc.status == STATUS_SUCCESS and peer is not None and peer.by_peer
    )
    words = ""
    if disc is not None:
        acked = (
            f"acknowledged at {report.ms(disc.completed_at):.3f} ms"
            if disc.status == STATUS_SUCCESS
            else "never acknowledged"
        )
        words = f"we sent our FIN: WskDisconnect(0) at {report.ms(disc.issued_at):.3f} ms, {acked}"
        if both_ways or peer is Ending.PEER_RST:
            return Ending.OUR_FIN, words
    if close is None:
        return (Ending.OUR_FIN, words) if words else (None, "we did not end it")
    why = f" ({served.interrupted})" if served.interrupted else ""
    reset = (
        f"we closed it with WskCloseSocket at {report.ms(close.issued_at):.3f} ms{why} before "
        "it was disconnected both ways, which resets a connection still open (RST)"
    )
    if peer is Ending.PEER_RST:
        return (Ending.OUR_FIN, words) if words else (None, "we closed it after the client's reset")
    return (Ending.OUR_FIN_THEN_RST, f"{words}; then {reset}") if words else (Ending.OUR_RST, reset)


def describe(served: Served) -> None:
    check_disconnect(served)
    report = served.report
    if served.interrupted is not None and not served.done_behaviour():
        report.inconclusive.append(
            f"the connection was closed before its behaviour ran: {served.interrupted}"
        )
    wire = served.server.wire
    facts = None
    if isinstance(wire, CaptureWire) and served.remote is not None:
        facts = wire.finish(report, served.server.port, int(served.remote[1]), ("server", "client"))
    elif served.wire is not None:
        served.wire.finish(report, ("server", "client"))
        served.wire.stop()
    served.timeline.rebase()
    end = served.peer_end
    at = f" at {report.ms(served.peer_end_at):.3f} ms" if served.peer_end_at else ""
    if end is Ending.PEER_FIN:
        client = f"it closed its side with FIN{at}"
    elif end is Ending.PEER_RST:
        client = f"it reset the connection (RST){at}"
    elif end is None:
        client = "WSK reported no FIN or RST from it before we closed"
    else:
        client = f"it ended the connection ({short_status(served.peer_failure)}){at}"
    how, ours = our_end(served)
    report.peer = (
        f"we received {served.received} B from the client and sent it {served.sent} B; "
        f"{client}; {ours}"
    )
    if served.disconnect_call is not None and not _abortive(served):
        report.notes.append(f"{served.after_fin} B received after our FIN")
    disc = served.disconnect_call
    report.facts = {
        "remote": describe_address(served.remote) if served.remote else None,
        "mode": served.options.mode,
        "disconnect": served.options.disconnect,
        "received": served.received,
        "sent": served.sent,
        "received_after_our_fin": served.after_fin,
        "client_end": _client_end(served),
        "client_end_ms": report.ms(served.peer_end_at),
        "our_end": str(how.how) if how is not None else "none",
        "our_disconnect": (
            {
                "returned": short_status(disc.returned),
                "status": short_status(disc.status) if disc.done else None,
                "called_ms": report.ms(disc.issued_at),
            }
            if disc
            else None
        ),
        "closed_ms": report.ms(served.close_call.issued_at) if served.close_call else None,
    }
    if served.interrupted:
        report.facts["interrupted"] = served.interrupted
    if facts is not None:
        reconcile(report, claims(served), facts)


def _client_end(served: Served) -> str:
    """``fin`` / ``rst`` / ``none``, or the failure status of the receive."""
    end = served.peer_end
    if end is None:
        return "none"
    return str(end.how) if end.by_peer else short_status(served.peer_failure)
