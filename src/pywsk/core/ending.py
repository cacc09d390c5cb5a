"""How a connection ended: one vocabulary for every layer, report and test.

What it does: :class:`Ending` names each way a TCP connection can end, with *who* ended it
(:class:`Side`: us, the peer, or the transport) and *how* (:class:`How`: a FIN, an RST, a
FIN and then an RST, or a transport failure).  Each ending also has a :class:`Kind` in
Twisted's shape (``error.ConnectionDone`` / ``ConnectionLost`` / ``ConnectionAborted``):

* ``DONE`` - a graceful end, a FIN: no byte was lost (ours acknowledged, or the peer's read);
* ``LOST`` - the connection broke under us: the peer's RST, or the transport gave up;
* ``ABORTED`` - we broke it on purpose: our RST (WSK_FLAG_ABORTIVE, or a close before both
  directions were disconnected).

:meth:`Ending.then` combines what is learned over time (the first end wins, except that the
peer's RST after its FIN is kept as :attr:`Ending.PEER_FIN_THEN_RST`), and
:data:`ENDING_OF_STATUS` says which ending a failure status of a data call reports.

:class:`How` is a string enum whose values are the words reports print and JSON carries
(``"fin"``, ``"rst"``, ``"fin+rst"``), so ``How.FIN == "fin"``.

What it refuses: combinations that are not endings (``Ending.of(Side.US, How.FAILURE)``
raises ``ValueError``).

What always holds: sans-I/O - no sockets, threads, clocks or IRPs; the values never change
meaning (they are part of the reports' JSON).
"""

from __future__ import annotations

import enum
from typing import Final

from ..nt.status import NTSTATUS

__all__ = ["ENDING_OF_STATUS", "Ending", "How", "Kind", "Side"]


class Side(enum.StrEnum):
    """Who ended the connection."""

    US = "us"
    PEER = "peer"
    #: Neither end on purpose: the transport gave up (retransmission timeout, unreachable).
    TRANSPORT = "transport"


class How(enum.StrEnum):
    """What ended it, in the words reports print (``How.FIN == "fin"``)."""

    FIN = "fin"
    RST = "rst"
    #: A FIN, then an RST (the peer closed, then reset what it still received).
    FIN_THEN_RST = "fin+rst"
    FAILURE = "failure"

    @property
    def sent_fin(self) -> bool:
        return self in (How.FIN, How.FIN_THEN_RST)

    @property
    def sent_rst(self) -> bool:
        return self in (How.RST, How.FIN_THEN_RST)

    @property
    def words(self) -> str:
        """``FIN``, ``RST``, ``FIN, then RST``, ``transport failure``."""
        return _WORDS[self]


_WORDS: Final = {
    How.FIN: "FIN",
    How.RST: "RST",
    How.FIN_THEN_RST: "FIN, then RST",
    How.FAILURE: "transport failure",
}


class Kind(enum.Enum):
    """Twisted's three: a clean end, a lost connection, or one we aborted."""

    DONE = "done"
    LOST = "lost"
    ABORTED = "aborted"


class Ending(enum.Enum):
    """One way a connection ended: who, how, and whether it was clean."""

    _value_: tuple[Side, How, Kind]

    #: The peer's FIN (a 0-byte receive, WskDisconnectEvent without WSK_FLAG_ABORTIVE).
    PEER_FIN = (Side.PEER, How.FIN, Kind.DONE)
    #: The peer's RST (STATUS_CONNECTION_RESET, WskDisconnectEvent(WSK_FLAG_ABORTIVE)).
    PEER_RST = (Side.PEER, How.RST, Kind.LOST)
    #: The peer's FIN, then its RST (it closed, then reset what it still received).
    PEER_FIN_THEN_RST = (Side.PEER, How.FIN_THEN_RST, Kind.LOST)
    #: Our graceful disconnect: our FIN (acknowledged when the WskDisconnect completed).
    OUR_FIN = (Side.US, How.FIN, Kind.DONE)
    #: Our RST: WSK_FLAG_ABORTIVE, or WskCloseSocket before both directions disconnected.
    OUR_RST = (Side.US, How.RST, Kind.ABORTED)
    #: Our FIN, then our RST (a close after our graceful disconnect, before the peer's end).
    OUR_FIN_THEN_RST = (Side.US, How.FIN_THEN_RST, Kind.ABORTED)
    #: The transport gave up (e.g. STATUS_IO_TIMEOUT after TCP_MAXRT): nobody sent an end.
    TRANSPORT_FAILURE = (Side.TRANSPORT, How.FAILURE, Kind.LOST)

    @property
    def who(self) -> Side:
        return self.value[0]

    @property
    def how(self) -> How:
        return self.value[1]

    @property
    def kind(self) -> Kind:
        return self.value[2]

    @property
    def clean(self) -> bool:
        """A graceful end (Twisted's ConnectionDone): nothing was lost."""
        return self.kind is Kind.DONE

    @property
    def by_peer(self) -> bool:
        return self.who is Side.PEER

    @property
    def by_us(self) -> bool:
        return self.who is Side.US

    @classmethod
    def of(cls, who: Side | str, how: How | str) -> Ending:
        """The ending of ``who`` and ``how`` (``Ending.of("peer", "rst")``); ValueError if
        that is not one."""
        key = (Side(who), How(how))
        for member in cls:
            if member.value[:2] == key:
                return member
        raise ValueError(f"no ending is {key[0].value} {key[1].value}")

    def then(self, later: Ending) -> Ending:
        """What is known after ``later`` was learned about the same side: the first end wins,
        except an RST after a FIN, which is that side's ``*_FIN_THEN_RST``."""
        if later is self:  # learned again (a hot path: no property of the members)
            return self
        if self.how is How.FIN and later.who is self.who and later.how.sent_rst:
            return Ending.of(self.who, How.FIN_THEN_RST)
        return self

    def describe(self) -> str:
        """``the peer's FIN``, ``our RST``, ``a transport failure``..."""
        if self.who is Side.TRANSPORT:
            return "a transport failure"
        whose = "the peer's" if self.who is Side.PEER else "our"
        return f"{whose} {self.how.words}"


#: The ending a failed data call reports (what pywsk's Pythonic layers call the
#: ``disconnected_by`` of an exception).  Statuses not listed say nothing about the end.
ENDING_OF_STATUS: Final[dict[int, Ending]] = {
    NTSTATUS.STATUS_CONNECTION_RESET: Ending.PEER_RST,
    NTSTATUS.STATUS_REMOTE_DISCONNECT: Ending.PEER_RST,
    NTSTATUS.STATUS_CONNECTION_ABORTED: Ending.OUR_RST,
    NTSTATUS.STATUS_LOCAL_DISCONNECT: Ending.OUR_RST,
    NTSTATUS.STATUS_IO_TIMEOUT: Ending.TRANSPORT_FAILURE,
    NTSTATUS.STATUS_NETWORK_UNREACHABLE: Ending.TRANSPORT_FAILURE,
    NTSTATUS.STATUS_HOST_UNREACHABLE: Ending.TRANSPORT_FAILURE,
    NTSTATUS.STATUS_UNEXPECTED_NETWORK_ERROR: Ending.TRANSPORT_FAILURE,
}
