"""The one vocabulary for how a connection ended (pywsk.core.ending)."""

from __future__ import annotations

import pytest

from pywsk.core.ending import ENDING_OF_STATUS, Ending, How, Kind, Side
from pywsk.nt.status import NTSTATUS


def test_every_ending_has_who_how_and_twisted_kind() -> None:
    assert [(e.who, e.how, e.kind) for e in Ending] == [
        (Side.PEER, How.FIN, Kind.DONE),
        (Side.PEER, How.RST, Kind.LOST),
        (Side.PEER, How.FIN_THEN_RST, Kind.LOST),
        (Side.US, How.FIN, Kind.DONE),
        (Side.US, How.RST, Kind.ABORTED),
        (Side.US, How.FIN_THEN_RST, Kind.ABORTED),
        (Side.TRANSPORT, How.FAILURE, Kind.LOST),
    ]
    assert [e for e in Ending if e.clean] == [Ending.PEER_FIN, Ending.OUR_FIN]


def test_of_finds_the_member_and_refuses_what_is_not_an_ending() -> None:
    assert Ending.of("peer", "rst") is Ending.PEER_RST
    assert Ending.of(Side.US, How.FIN) is Ending.OUR_FIN
    with pytest.raises(ValueError, match="no ending is us failure"):
        Ending.of(Side.US, How.FAILURE)
    with pytest.raises(ValueError):
        Ending.of("someone", "fin")


def test_the_words_are_the_reports_words() -> None:
    assert str(How.FIN) == "fin"
    assert f"{How.FIN_THEN_RST}" == "fin+rst"
    assert How("rst") is How.RST
    assert How.FIN_THEN_RST.sent_fin
    assert How.FIN_THEN_RST.sent_rst
    assert not How.FIN.sent_rst
    assert not How.RST.sent_fin
    assert Ending.PEER_FIN_THEN_RST.describe() == "the peer's FIN, then RST"
    assert Ending.OUR_RST.describe() == "our RST"
    assert Ending.TRANSPORT_FAILURE.describe() == "a transport failure"


def test_first_end_wins_except_rst_after_fin() -> None:
    assert Ending.PEER_FIN.then(Ending.PEER_RST) is Ending.PEER_FIN_THEN_RST
    assert Ending.PEER_RST.then(Ending.PEER_FIN) is Ending.PEER_RST
    assert Ending.PEER_FIN.then(Ending.PEER_FIN) is Ending.PEER_FIN
    assert Ending.PEER_FIN_THEN_RST.then(Ending.PEER_RST) is Ending.PEER_FIN_THEN_RST
    assert Ending.OUR_FIN.then(Ending.OUR_RST) is Ending.OUR_FIN_THEN_RST
    assert Ending.OUR_FIN.then(Ending.PEER_RST) is Ending.OUR_FIN  # the other side's end


def test_statuses_of_a_broken_connection() -> None:
    assert ENDING_OF_STATUS[NTSTATUS.STATUS_CONNECTION_RESET] is Ending.PEER_RST
    assert ENDING_OF_STATUS[NTSTATUS.STATUS_CONNECTION_ABORTED] is Ending.OUR_RST
    assert ENDING_OF_STATUS[NTSTATUS.STATUS_IO_TIMEOUT] is Ending.TRANSPORT_FAILURE
    assert NTSTATUS.STATUS_SUCCESS not in ENDING_OF_STATUS
