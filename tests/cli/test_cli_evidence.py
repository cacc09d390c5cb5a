"""Reconciling a report with the wire (pywsk.cli.evidence): each kind of contradiction is
caught, and what is not a contradiction stays a note."""

from __future__ import annotations

from pywsk.cli.evidence import Claims, WireFacts, reconcile
from pywsk.cli.timeline import Report, Timeline
from pywsk.core.ending import Ending
from pywsk.testing.capture import Segment

T0 = 1_000_000.0
US, THEM = 40000, 80
A = ("127.0.0.1", US)
B = ("127.0.0.1", THEM)


def seg(
    ms: float, src: tuple[str, int], flags: str, seq: int, ack: int = 0, length: int = 0
) -> Segment:
    dst = B if src == A else A
    return Segment(T0 + ms / 1e3, src, dst, flags, seq, ack, length)


def handshake() -> list[Segment]:
    return [seg(0, A, "S", 100), seg(0.1, B, "S.", 500, 101), seg(0.2, A, ".", 101, 501)]


def report() -> Report:
    return Report("probe", "t", "t", "t", Timeline(T0))


def graceful_wire(server_data: int = 10) -> list[Segment]:
    """We send 5 B, the server 10 B; our FIN at 5 ms, acknowledged; its FIN at 6 ms."""
    return [
        *handshake(),
        seg(1, A, "P.", 101, 501, 5),
        seg(2, B, "P.", 501, 106, server_data),
        seg(5, A, "F.", 106, 501 + server_data),
        seg(6, B, "F.", 501 + server_data, 107),
        seg(6.1, A, ".", 107, 502 + server_data),
    ]


def claims(**changes: object) -> Claims:
    base = Claims(
        "probe", "server", our_end=Ending.OUR_FIN, our_end_call="WskDisconnect(NULL, 0)",
        our_end_at=T0 + 0.004, fin_acked_at=T0 + 0.0065, peer_end=Ending.PEER_FIN,
        peer_end_at=T0 + 0.0063, closed_at=T0 + 0.007, received=10, read_to_end=True, sent=5,
    )  # fmt: skip
    for key, value in changes.items():
        setattr(base, key, value)
    return base


def run(wire: list[Segment], c: Claims) -> Report:
    r = report()
    reconcile(r, c, WireFacts.of(wire, US))
    return r


def test_an_agreeing_report_has_notes_only() -> None:
    r = run(graceful_wire(), claims())
    assert r.disagreements == []
    assert r.outcome == "ok"
    assert any(n.startswith("wire: our FIN left 1.000 ms after WskDisconnect") for n in r.notes)
    assert r.facts["wire"]["first_end"] == "probe (FIN)"
    assert (r.facts["wire"]["bytes_from_probe"], r.facts["wire"]["bytes_from_server"]) == (5, 10)


def test_fin_acknowledged_without_a_fin_on_the_wire() -> None:
    wire = [s for s in graceful_wire() if not (s.fin and s.sport == US)]
    r = run(wire, claims())
    assert r.outcome == "disagrees"
    assert "no FIN of ours is on the wire" in r.disagreements[0]


def test_a_peer_end_the_wire_does_not_show() -> None:
    wire = [s for s in graceful_wire() if not (s.fin and s.sport == THEM)]
    r = run(wire, claims())
    assert any("WSK reported server's FIN, but no FIN from server" in d for d in r.disagreements)


def test_bytes_that_never_were_on_the_wire() -> None:
    r = run(graceful_wire(server_data=7), claims())
    assert r.disagreements == ["we report 10 B received; server put 7 B on the wire"]
    r = run(graceful_wire(server_data=12), claims())
    assert r.disagreements == [
        "we read to server's FIN and report 10 B received; the wire carried 12 B from server"
    ]
    r = run(graceful_wire(), claims(sent=9))
    assert any("we report 9 B sent" in d for d in r.disagreements)


def test_a_peer_end_wsk_never_reported() -> None:
    # The server's RST at 2 ms; we closed at 900 ms, and WSK never told us.
    wire = [*handshake(), seg(2, B, "R.", 501, 101)]
    c = claims(our_end=Ending.OUR_RST, our_end_call="WskCloseSocket", our_end_at=T0 + 1.5,
               fin_acked_at=None, peer_end=None, peer_end_at=None, closed_at=T0 + 1.5,
               received=0, read_to_end=False, sent=0)  # fmt: skip
    r = run(wire, c)
    assert r.disagreements == [
        "server's RST reached the wire at 2.000 ms, 1498 ms before we ended the connection, "
        "and WSK never reported it"
    ]
    # Reported just before we acted: a note, not a contradiction.
    c.our_end_at = c.closed_at = T0 + 0.0021
    r = run(wire, c)
    assert r.disagreements == []
    assert any("WSK had not reported it yet" in n for n in r.notes)


def test_the_peer_answering_us_when_the_wire_says_it_ended_first() -> None:
    # The timeline reads half-open (WSK reported the server's FIN only after our FIN), but
    # the server's FIN was on the wire a second before our call.
    wire = [*handshake(), seg(3, B, "F.", 501, 101), seg(2004, A, "F.", 101, 502),
            seg(2004.1, B, ".", 502, 102)]  # fmt: skip
    c = claims(our_end_at=T0 + 2.0035, fin_acked_at=T0 + 2.005, peer_end_at=T0 + 2.006,
               received=0, sent=0)  # fmt: skip
    r = run(wire, c)
    assert any("the report has server answer our end" in d for d in r.disagreements), r.notes
    assert r.facts["wire"]["first_end"] == "server (FIN)"


def test_calls_and_wire_times_in_the_wrong_order() -> None:
    r = run(graceful_wire(), claims(our_end_at=T0 + 0.010))  # FIN on the wire at 5 ms
    assert any("before WskDisconnect(NULL, 0) was called" in d for d in r.disagreements)
    r = run(graceful_wire(), claims(fin_acked_at=T0 + 0.001))
    assert any("before our FIN reached the wire" in d for d in r.disagreements)
    late_ack = [*graceful_wire()[:-2], seg(20, B, "F.", 511, 107), seg(20.1, A, ".", 107, 512)]
    r = run(late_ack, claims(fin_acked_at=T0 + 0.006, peer_end_at=T0 + 0.021))
    assert any("before server acknowledged our FIN at 20.000 ms" in d for d in r.disagreements)
    r = run(graceful_wire(), claims(peer_end_at=T0 + 0.001))
    assert any("before it reached the wire" in d for d in r.disagreements)


def test_an_abort_without_an_rst() -> None:
    c = claims(our_end=Ending.OUR_RST, our_end_call="WskDisconnect(NULL, WSK_FLAG_ABORTIVE)",
               fin_acked_at=None, peer_end=None, peer_end_at=None, received=0,
               read_to_end=False, sent=0)  # fmt: skip
    r = run(handshake(), c)
    assert r.disagreements == [
        "WskDisconnect(NULL, WSK_FLAG_ABORTIVE) should have reset the connection: no RST of ours"
    ]


def test_unread_bytes_are_a_note() -> None:
    c = claims(received=4, read_to_end=False)
    r = run(graceful_wire(), c)
    assert r.disagreements == []
    assert "wire: server put 10 B on the wire; we received 4 B (the rest was never read)" in (
        r.notes
    )
