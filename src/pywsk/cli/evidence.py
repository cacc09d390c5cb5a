"""Reconciling a report with the packet capture: every claim checked against the wire.

What it does: a report's claims about one connection - how we ended it and when we asked
(:class:`Claims`), whether our graceful disconnect completed (our FIN acknowledged), how the
peer ended it as WSK told us and when, how many bytes each way - are set against what the
capture saw (:class:`WireFacts`: the first FIN and RST each side sent, the payload bytes
each side put on the wire, judged by sequence numbers so that a retransmission is not
counted twice).  :func:`reconcile` writes the wire's facts into the report, adds a note for
each difference that is not a contradiction (WSK reports an end a little after it reached
the wire, for instance), and a *disagreement* - a reported problem that makes the command
exit non-zero - for each claim the wire contradicts.

What it refuses: judging without a capture (nothing is checked, nothing is claimed).

What always holds: a disagreement names the claim, the wire's fact and both times, so the
reader can check it in the capture (``--pcap``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..core.ending import Ending, How
from ..testing.capture import Segment
from ..testing.flows import Flow, Flows
from .timeline import Report

__all__ = ["LAG", "TOLERANCE", "Claims", "WireFacts", "reconcile"]

#: Clock slack between the kernel's capture timestamps and ``time.time()`` readings taken
#: by the client around a call (both are the realtime clock).
TOLERANCE = 0.002
#: How long WSK may take to report what reached the wire before the report is contradicted
#: (an end seen on the wire this long before we acted, yet never reported by WSK).  Generous
#: on purpose: a loaded machine delays the client's own reaction, and a contradiction must
#: be one.
LAG = 1.0


@dataclass
class Claims:
    """What a report says about one connection, each from a WSK observation."""

    us: str
    """Our name in the report (``probe``, ``server``)."""
    them: str
    our_end: Ending | None = None
    """:attr:`Ending.OUR_FIN` (graceful WskDisconnect) or :attr:`Ending.OUR_RST` (abortive
    WskDisconnect, or a WskCloseSocket without a full disconnect) - if we ended our side."""
    our_end_call: str = ""
    our_end_at: float | None = None
    """When the call that ends our side was issued."""
    fin_acked_at: float | None = None
    """When our graceful WskDisconnect completed STATUS_SUCCESS (the FIN acknowledged)."""
    peer_end: Ending | None = None
    """How WSK told us the peer ended it (its FIN, RST, or FIN then RST), or None."""
    peer_end_at: float | None = None
    closed_at: float | None = None
    """When we issued WskCloseSocket (after it WSK reports nothing more)."""
    received: int = 0
    """Bytes our WskReceive calls returned."""
    read_to_end: bool = False
    """We read until the peer's FIN (a 0-byte receive): every byte it sent is counted."""
    sent: int = 0
    """Bytes of our WskSend calls (and final buffers) that completed STATUS_SUCCESS."""
    sends_settled: bool = True
    """Every send completed (none was pending or cancelled when the connection ended)."""


@dataclass
class WireFacts:
    """One connection as the capture saw it (``ours`` is our port, ``theirs`` the peer's)."""

    fin: tuple[float | None, float | None]
    """The first FIN each side sent (ours, theirs): its capture time."""
    rst: tuple[float | None, float | None]
    data: tuple[int, int]
    """Payload bytes each side put on the wire (by sequence number)."""
    fin_acked: float | None
    """When the peer acknowledged our FIN."""
    segments: int

    @classmethod
    def of(cls, segments: Sequence[Segment], ours: int) -> WireFacts:
        """The facts of one connection's segments (``ours`` is our port)."""
        flows = Flows()
        for s in segments:
            flows.add(s)
        theirs = next((s.dport if s.sport == ours else s.sport for s in segments), 0)
        return cls.of_flows(*flows.between(ours, theirs))

    @classmethod
    def of_flows(cls, mine: Flow | None, theirs: Flow | None) -> WireFacts:
        """The facts a capture kept of one connection's two directions (however long it
        ran: :class:`~pywsk.testing.flows.Flow` is constant in size)."""
        return cls(
            fin=(mine.fin_at if mine else None, theirs.fin_at if theirs else None),
            rst=(mine.rst_at if mine else None, theirs.rst_at if theirs else None),
            data=(mine.data if mine else 0, theirs.data if theirs else 0),
            fin_acked=mine.fin_acked_at if mine else None,
            segments=(mine.segments if mine else 0) + (theirs.segments if theirs else 0),
        )

    def end(self, side: int) -> tuple[How, float] | None:
        """How ``side`` (0 ours, 1 theirs) ended the connection first: FIN or RST, and when."""
        fin, rst = self.fin[side], self.rst[side]
        if fin is None and rst is None:
            return None
        if rst is None or (fin is not None and fin <= rst):
            assert fin is not None
            return How.FIN if rst is None else How.FIN_THEN_RST, fin
        return How.RST, rst


def _ms(report: Report, at: float | None) -> str:
    value = report.ms(at)
    return "-" if value is None else f"{value:.3f} ms"


def reconcile(report: Report, claims: Claims, wire: WireFacts) -> None:
    """Check ``claims`` against ``wire``: facts, notes and disagreements into ``report``."""
    us, them = claims.us, claims.them
    bad = report.disagreements
    ours_end, theirs_end = wire.end(0), wire.end(1)
    report.facts["wire"] = {
        "segments": wire.segments,
        f"{us}_fin_ms": report.ms(wire.fin[0]),
        f"{us}_rst_ms": report.ms(wire.rst[0]),
        f"{them}_fin_ms": report.ms(wire.fin[1]),
        f"{them}_rst_ms": report.ms(wire.rst[1]),
        f"bytes_from_{us}": wire.data[0],
        f"bytes_from_{them}": wire.data[1],
        "first_end": _first(ours_end, theirs_end, us, them),
    }
    if wire.segments == 0:
        bad.append("the capture saw no segment of this connection")
        return
    # --- our end ----------------------------------------------------------------------------
    if claims.our_end is Ending.OUR_FIN and claims.fin_acked_at is not None:
        if wire.fin[0] is None:
            bad.append(
                f"our graceful disconnect completed at {_ms(report, claims.fin_acked_at)} "
                "(FIN acknowledged), but no FIN of ours is on the wire"
            )
        elif claims.fin_acked_at + TOLERANCE < wire.fin[0]:
            bad.append(
                f"our graceful disconnect completed at {_ms(report, claims.fin_acked_at)}, "
                f"before our FIN reached the wire at {_ms(report, wire.fin[0])}"
            )
        elif wire.fin_acked is not None and claims.fin_acked_at + TOLERANCE < wire.fin_acked:
            bad.append(
                f"our graceful disconnect completed at {_ms(report, claims.fin_acked_at)}, "
                f"before {them} acknowledged our FIN at {_ms(report, wire.fin_acked)}"
            )
    if claims.our_end is not None and claims.our_end_at is not None:
        seen = (wire.rst if claims.our_end is Ending.OUR_RST else wire.fin)[0]
        word = claims.our_end.how.words
        if seen is not None:
            if seen + TOLERANCE < claims.our_end_at:
                bad.append(
                    f"our {word} is on the wire at {_ms(report, seen)}, before "
                    f"{claims.our_end_call} was called at {_ms(report, claims.our_end_at)}"
                )
            else:
                report.notes.append(
                    f"wire: our {word} left {(seen - claims.our_end_at) * 1e3:.3f} ms after "
                    f"{claims.our_end_call} was called"
                )
        elif claims.our_end is Ending.OUR_RST and theirs_end is None:
            bad.append(f"{claims.our_end_call} should have reset the connection: no RST of ours")
    # --- the peer's end -----------------------------------------------------------------------
    told = claims.peer_end
    if told is not None and told.how.sent_fin and wire.fin[1] is None:
        bad.append(f"WSK reported {them}'s FIN, but no FIN from {them} is on the wire")
    if told is not None and told.how.sent_rst and wire.rst[1] is None:
        bad.append(f"WSK reported {them}'s reset, but no RST from {them} is on the wire")
    if told is not None and theirs_end is not None and claims.peer_end_at is not None:
        lag = claims.peer_end_at - theirs_end[1]
        if lag + TOLERANCE < 0:
            bad.append(
                f"WSK reported {them}'s end at {_ms(report, claims.peer_end_at)}, before it "
                f"reached the wire at {_ms(report, theirs_end[1])}"
            )
        else:
            report.notes.append(
                f"wire: {them}'s {theirs_end[0].upper()} reached us at "
                f"{_ms(report, theirs_end[1])}; WSK reported it {lag * 1e3:.3f} ms later"
            )
    acted = min((t for t in (claims.our_end_at, claims.closed_at) if t is not None), default=None)
    if told is None and theirs_end is not None and acted is not None:
        early = acted - theirs_end[1]
        if early > LAG:
            bad.append(
                f"{them}'s {theirs_end[0].upper()} reached the wire at "
                f"{_ms(report, theirs_end[1])}, {early * 1e3:.0f} ms before we ended the "
                "connection, and WSK never reported it"
            )
        elif early > 0:
            report.notes.append(
                f"wire: {them}'s {theirs_end[0].upper()} reached us at "
                f"{_ms(report, theirs_end[1])}, {early * 1e3:.3f} ms before we ended the "
                "connection; WSK had not reported it yet"
            )
    # Who ended first: the report says the peer answered our end when WSK told us of its end
    # after our call; the wire must not show the peer's end long before that call.
    if (
        told is not None
        and theirs_end is not None
        and claims.our_end_at is not None
        and claims.peer_end_at is not None
        and claims.peer_end_at > claims.our_end_at
        and claims.our_end_at - theirs_end[1] > LAG
    ):
        bad.append(
            f"the report has {them} answer our end ({claims.our_end_call} at "
            f"{_ms(report, claims.our_end_at)}), but its {theirs_end[0].upper()} reached the "
            f"wire first, at {_ms(report, theirs_end[1])}"
        )
    # --- bytes ------------------------------------------------------------------------------------
    on_wire_in, on_wire_out = wire.data[1], wire.data[0]
    if claims.received < on_wire_in and not claims.read_to_end:
        report.notes.append(
            f"wire: {them} put {on_wire_in} B on the wire; we received {claims.received} B "
            "(the rest was never read)"
        )
    if claims.received > on_wire_in:
        bad.append(f"we report {claims.received} B received; {them} put {on_wire_in} B on the wire")
    elif claims.read_to_end and claims.received != on_wire_in:
        bad.append(
            f"we read to {them}'s FIN and report {claims.received} B received; the wire "
            f"carried {on_wire_in} B from {them}"
        )
    if claims.sent > on_wire_out and wire.fin_acked is not None:
        bad.append(f"we report {claims.sent} B sent; only {on_wire_out} B of ours are on the wire")
    elif (
        claims.sends_settled
        and claims.fin_acked_at is not None
        and wire.fin_acked is not None
        and claims.sent != on_wire_out
    ):
        bad.append(
            f"we report {claims.sent} B sent (every send completed, our FIN acknowledged); "
            f"the wire carried {on_wire_out} B of ours"
        )


def _first(
    ours: tuple[How, float] | None, theirs: tuple[How, float] | None, us: str, them: str
) -> str | None:
    if ours is None and theirs is None:
        return None
    if theirs is None or (ours is not None and ours[1] <= theirs[1]):
        assert ours is not None
        return f"{us} ({ours[0].upper()})"
    return f"{them} ({theirs[0].upper()})"
