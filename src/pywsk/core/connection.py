"""The connection-socket state machine: what each WSK call may do in each state.

Rules (read these first; everything below follows from them):

1. Every state change of a connection socket happens here, through one pure table,
   :data:`TRANSITIONS`: ``(state, input) -> new state``.  An input the table does not list
   for a state is illegal there: :meth:`ConnectionMachine.process` raises
   :class:`IllegalTransition` and leaves the state unchanged.
2. The two directions close independently, as TCP's do (wsproto's LOCAL_CLOSING /
   REMOTE_CLOSING vocabulary): our graceful disconnect closes the sending half
   (``LOCAL_CLOSING`` until the transport has completed it, then ``LOCAL_CLOSED``); the
   peer's FIN closes the receiving half (``REMOTE_CLOSED``).  Both together are
   ``DISCONNECTED``, the only state a close leaves without a reset.
3. An abort ends both halves at once and records who did it: ``ABORTED`` (we did:
   WSK_FLAG_ABORTIVE), ``RESET`` (the peer sent RST), ``FAILED`` (the transport gave up, e.g.
   a retransmission timeout).  After any of them the socket "no longer works": the only
   useful call is WskCloseSocket.
4. The verdict functions say, for a call in a state, whether it may proceed or which
   NTSTATUS it fails with.  They are pure: the provider supplies the state, they never look
   at sockets, clocks, threads or IRPs.

Statuses chosen where Microsoft's pages are silent (``docs/fidelity.md`` gives the
reasons): a send after our graceful disconnect fails with STATUS_INVALID_DEVICE_STATE
(spec Q1); a second graceful disconnect, or any disconnect of a socket that never connected,
fails with STATUS_INVALID_DEVICE_STATE (Q13); any disconnect of a socket that no longer
works fails with STATUS_FILE_FORCED_CLOSED; data calls on such a socket fail with the
cause - STATUS_CONNECTION_ABORTED, STATUS_CONNECTION_RESET or the transport's status.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from ..nt.status import NTSTATUS
from .ending import Ending

__all__ = [
    "ConnState",
    "ConnInput",
    "TRANSITIONS",
    "BROKEN",
    "OPEN",
    "IllegalTransition",
    "ConnectionMachine",
    "CAUSES",
    "CLOSE",
    "Cause",
    "Closing",
    "OpKind",
    "PENDING_OUTCOME",
    "send_verdict",
    "receive_verdict",
    "disconnect_verdict",
    "close_needs_reset",
    "ReceiveVerdict",
]


class ConnState(enum.Enum):
    """States of a connection-oriented WSK socket."""

    # Members are singletons: hash by identity (C) instead of Enum's hash of the name
    # (Python), which the provider pays on every state lookup.
    __hash__ = object.__hash__

    #: Created by WskSocket, not bound.
    CREATED = "created"
    #: Bound to a local address (WskBind); may connect.
    BOUND = "bound"
    #: WskConnect in progress.
    CONNECTING = "connecting"
    #: Connected; both directions open.
    CONNECTED = "connected"
    #: Our graceful disconnect was issued; the transport has not completed it.
    LOCAL_CLOSING = "local-closing"
    #: Our graceful disconnect completed (FIN acknowledged); the peer may still send.
    LOCAL_CLOSED = "local-closed"
    #: The peer disconnected gracefully (FIN); we may still send.
    REMOTE_CLOSED = "remote-closed"
    #: The peer's FIN arrived and our graceful disconnect is still completing.
    BOTH_CLOSING = "both-closing"
    #: Disconnected gracefully in both directions.
    DISCONNECTED = "disconnected"
    #: We aborted the connection (RST sent).
    ABORTED = "aborted"
    #: The peer aborted the connection (RST received).
    RESET = "reset"
    #: The transport gave up on the connection (e.g. retransmission timeout).
    FAILED = "failed"
    #: WskCloseSocket was called: the socket object is gone.
    CLOSED = "closed"


class ConnInput(enum.Enum):
    """What can happen to a connection socket.  SEND_* / RECV_* say which side did it."""

    # Members are singletons: hash by identity (C) instead of Enum's hash of the name
    # (Python), which the provider pays on every state lookup.
    __hash__ = object.__hash__

    BIND = "bind"
    CONNECT = "connect"
    CONNECT_SUCCEEDED = "connect-succeeded"
    CONNECT_FAILED = "connect-failed"
    #: We issued a graceful disconnect (our FIN is queued behind any pending sends).
    SEND_FIN = "send-fin"
    #: The transport completed our graceful disconnect (our FIN was acknowledged).
    FIN_ACKED = "fin-acked"
    #: The peer's FIN arrived.
    RECV_FIN = "recv-fin"
    #: We aborted (WSK_FLAG_ABORTIVE, or a close of a connection not fully disconnected).
    SEND_RST = "send-rst"
    #: The peer's RST arrived.
    RECV_RST = "recv-rst"
    #: The transport failed the connection.
    TRANSPORT_FAILED = "transport-failed"
    #: WskCloseSocket.
    CLOSE = "close"


S, E = ConnState, ConnInput

_ABORTS: Final = {E.SEND_RST: S.ABORTED, E.RECV_RST: S.RESET, E.TRANSPORT_FAILED: S.FAILED}

#: The whole machine: ``TRANSITIONS[state][input] -> new state``.
TRANSITIONS: Final[dict[ConnState, dict[ConnInput, ConnState]]] = {
    S.CREATED: {E.BIND: S.BOUND, E.CLOSE: S.CLOSED},
    S.BOUND: {E.CONNECT: S.CONNECTING, E.CLOSE: S.CLOSED},
    S.CONNECTING: {
        E.CONNECT_SUCCEEDED: S.CONNECTED,
        E.CONNECT_FAILED: S.BOUND,
        E.CLOSE: S.CLOSED,
    },
    # Both directions open.
    S.CONNECTED: {
        E.SEND_FIN: S.LOCAL_CLOSING,
        E.RECV_FIN: S.REMOTE_CLOSED,
        **_ABORTS,
        E.CLOSE: S.CLOSED,
    },
    # Our half closing or closed.
    S.LOCAL_CLOSING: {
        E.FIN_ACKED: S.LOCAL_CLOSED,
        E.RECV_FIN: S.BOTH_CLOSING,
        **_ABORTS,
        E.CLOSE: S.CLOSED,
    },
    S.LOCAL_CLOSED: {E.RECV_FIN: S.DISCONNECTED, **_ABORTS, E.CLOSE: S.CLOSED},
    # The peer's half closed.
    S.REMOTE_CLOSED: {E.SEND_FIN: S.BOTH_CLOSING, **_ABORTS, E.CLOSE: S.CLOSED},
    S.BOTH_CLOSING: {E.FIN_ACKED: S.DISCONNECTED, **_ABORTS, E.CLOSE: S.CLOSED},
    # Ends.
    S.DISCONNECTED: {E.CLOSE: S.CLOSED},
    S.ABORTED: {E.CLOSE: S.CLOSED},
    S.RESET: {E.CLOSE: S.CLOSED},
    S.FAILED: {E.CLOSE: S.CLOSED},
    S.CLOSED: {},
}

_NOT_CONNECTED: Final = frozenset({S.CREATED, S.BOUND, S.CONNECTING})
#: The states in which a socket no longer works (``ConnectionMachine.broken``; a hot path
#: tests ``machine.state in BROKEN`` without a call).
BROKEN: Final = frozenset({S.ABORTED, S.RESET, S.FAILED})
#: May send: connected, or only the peer's direction closed.
_MAY_SEND: Final = frozenset({S.CONNECTED, S.REMOTE_CLOSED})
#: A live connection not disconnected in both directions: a close must reset it, and the
#: kernel's TCP state may still have news of it.
OPEN: Final = frozenset(
    {S.CONNECTED, S.LOCAL_CLOSING, S.LOCAL_CLOSED, S.REMOTE_CLOSED, S.BOTH_CLOSING}
)
_WE_SENT_FIN: Final = frozenset({S.LOCAL_CLOSING, S.LOCAL_CLOSED, S.BOTH_CLOSING, S.DISCONNECTED})


class IllegalTransition(Exception):
    """An input that the table does not allow in the current state."""

    def __init__(self, state: ConnState, event: ConnInput) -> None:
        self.state = state
        self.event = event
        super().__init__(f"{event.name} is not allowed in state {state.name}")


class Closing(enum.Enum):
    """WskCloseSocket: the one reason to end pending requests that is not an ending."""

    CLOSE = "close"


#: WskCloseSocket ends the requests still pending (not an :class:`Ending`: the socket object
#: goes, whatever state the connection was in).
CLOSE: Final = Closing.CLOSE

#: Why pending requests are being ended early: how the connection broke - an
#: :class:`~pywsk.core.ending.Ending` (``OUR_RST``, ``PEER_RST``, ``TRANSPORT_FAILURE``), the
#: one vocabulary of endings - or :data:`CLOSE`.
Cause = Ending | Closing
#: Every cause, in the order of :data:`PENDING_OUTCOME`.
CAUSES: Final[tuple[Cause, ...]] = (
    Ending.OUR_RST,
    Ending.PEER_RST,
    Ending.TRANSPORT_FAILURE,
    CLOSE,
)


class OpKind(enum.Enum):
    """Kinds of pending request on a connection socket."""

    # Members are singletons: hash by identity (C) instead of Enum's hash of the name
    # (Python), which the provider pays on every state lookup.
    __hash__ = object.__hash__

    SEND = "send"
    RECEIVE = "receive"
    DISCONNECT = "disconnect"
    CONNECT = "connect"
    #: A WskAccept pending on a listening socket.
    ACCEPT = "accept"


#: Status given to a request still pending when its socket is aborted, reset, failed or
#: closed.  ``None`` means "the transport's own failure status" (``machine.failure``).
PENDING_OUTCOME: Final[dict[tuple[Cause, OpKind], NTSTATUS | None]] = {
    # WskDisconnect(WSK_FLAG_ABORTIVE): "cancels all in-progress and pending transmit
    # operations" -> the sends are cancelled; receives and a stuck graceful disconnect
    # learn that the connection was aborted locally.
    (Ending.OUR_RST, OpKind.SEND): NTSTATUS.STATUS_CANCELLED,
    (Ending.OUR_RST, OpKind.RECEIVE): NTSTATUS.STATUS_CONNECTION_ABORTED,
    (Ending.OUR_RST, OpKind.DISCONNECT): NTSTATUS.STATUS_CONNECTION_ABORTED,
    (Ending.OUR_RST, OpKind.CONNECT): NTSTATUS.STATUS_CONNECTION_ABORTED,
    (Ending.OUR_RST, OpKind.ACCEPT): NTSTATUS.STATUS_CONNECTION_ABORTED,
    (Ending.PEER_RST, OpKind.SEND): NTSTATUS.STATUS_CONNECTION_RESET,
    (Ending.PEER_RST, OpKind.RECEIVE): NTSTATUS.STATUS_CONNECTION_RESET,
    (Ending.PEER_RST, OpKind.DISCONNECT): NTSTATUS.STATUS_CONNECTION_RESET,
    (Ending.PEER_RST, OpKind.CONNECT): NTSTATUS.STATUS_CONNECTION_RESET,
    (Ending.PEER_RST, OpKind.ACCEPT): NTSTATUS.STATUS_CONNECTION_RESET,
    (Ending.TRANSPORT_FAILURE, OpKind.SEND): None,
    (Ending.TRANSPORT_FAILURE, OpKind.RECEIVE): None,
    (Ending.TRANSPORT_FAILURE, OpKind.DISCONNECT): None,
    (Ending.TRANSPORT_FAILURE, OpKind.CONNECT): None,
    (Ending.TRANSPORT_FAILURE, OpKind.ACCEPT): None,
    # WskCloseSocket "cancels and completes" every pending IRP.
    (CLOSE, OpKind.SEND): NTSTATUS.STATUS_CANCELLED,
    (CLOSE, OpKind.RECEIVE): NTSTATUS.STATUS_CANCELLED,
    (CLOSE, OpKind.DISCONNECT): NTSTATUS.STATUS_CANCELLED,
    (CLOSE, OpKind.CONNECT): NTSTATUS.STATUS_CANCELLED,
    (CLOSE, OpKind.ACCEPT): NTSTATUS.STATUS_CANCELLED,
}


def _broken_status(state: ConnState, failure: int) -> int:
    if state is S.ABORTED:
        return NTSTATUS.STATUS_CONNECTION_ABORTED
    if state is S.RESET:
        return NTSTATUS.STATUS_CONNECTION_RESET
    return failure


def send_verdict(state: ConnState, failure: int = NTSTATUS.STATUS_IO_TIMEOUT) -> int | None:
    """None if WskSend may proceed; otherwise the status it fails with."""
    if state in _MAY_SEND:
        return None
    if state in BROKEN:
        return _broken_status(state, failure)
    # Never connected, after our graceful disconnect (Q1), or closed.
    return NTSTATUS.STATUS_INVALID_DEVICE_STATE


class ReceiveVerdict(enum.Enum):
    """What a WskReceive does in a state (besides failing)."""

    #: Read from the transport: data, or 0 bytes once the peer's FIN is reached.
    READ = "read"
    #: Complete at once with 0 bytes: the receiving half is closed for us.
    END_OF_DATA = "end-of-data"


def receive_verdict(
    state: ConnState,
    half_open: bool = True,
    failure: int = NTSTATUS.STATUS_IO_TIMEOUT,
) -> ReceiveVerdict | int:
    """What WskReceive does: a :class:`ReceiveVerdict`, or the status it fails with.

    ``half_open=False`` models a transport without half-open connections: after our
    graceful disconnect nothing more is received.
    """
    if state in _NOT_CONNECTED or state is S.CLOSED:
        return NTSTATUS.STATUS_INVALID_DEVICE_STATE
    if state in BROKEN:
        return _broken_status(state, failure)
    if not half_open and state in _WE_SENT_FIN:
        return ReceiveVerdict.END_OF_DATA
    return ReceiveVerdict.READ


def disconnect_verdict(state: ConnState, abortive: bool) -> int | None:
    """None if WskDisconnect may proceed; otherwise the status it fails with."""
    if state in BROKEN:
        return NTSTATUS.STATUS_FILE_FORCED_CLOSED
    ok = state in (OPEN if abortive else _MAY_SEND)
    return None if ok else NTSTATUS.STATUS_INVALID_DEVICE_STATE


def close_needs_reset(state: ConnState) -> bool:
    """True when WskCloseSocket must abort: a connection not disconnected in both directions."""
    return state in OPEN


@dataclass(slots=True)
class ConnectionMachine:
    """One socket's state, moved only through :data:`TRANSITIONS`."""

    state: ConnState = ConnState.CREATED
    #: The transport's failure status once the state is FAILED.
    failure: int = NTSTATUS.STATUS_IO_TIMEOUT

    def can(self, event: ConnInput) -> bool:
        """True if ``event`` is legal in the current state."""
        return event in TRANSITIONS[self.state]

    def process(self, event: ConnInput) -> ConnState:
        """Apply ``event``; raise :class:`IllegalTransition` (state unchanged) if not legal."""
        try:
            new = TRANSITIONS[self.state][event]
        except KeyError:
            raise IllegalTransition(self.state, event) from None
        self.state = new
        return new

    @property
    def broken(self) -> bool:
        """True once the socket no longer works (aborted, reset or failed)."""
        return self.state in BROKEN

    @property
    def local_fin_sent(self) -> bool:
        """True once our graceful disconnect was issued."""
        return self.state in _WE_SENT_FIN
