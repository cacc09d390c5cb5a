"""The connection-socket state machine: every (state, input) pair, reachability, and the verdict
functions against expectation tables written from the module's rules and spec section 8.5."""

from __future__ import annotations

import itertools
from collections import deque

import pytest

from pywsk.core.connection import (
    CAUSES,
    CLOSE,
    PENDING_OUTCOME,
    TRANSITIONS,
    Cause,
    ConnectionMachine,
    ConnInput,
    ConnState,
    IllegalTransition,
    OpKind,
    ReceiveVerdict,
    close_needs_reset,
    disconnect_verdict,
    receive_verdict,
    send_verdict,
)
from pywsk.core.ending import Ending
from pywsk.nt.status import NT_ERROR, NTSTATUS

S, E = ConnState, ConnInput
ABORTED = NTSTATUS.STATUS_CONNECTION_ABORTED
RESET = NTSTATUS.STATUS_CONNECTION_RESET
CANCELLED = NTSTATUS.STATUS_CANCELLED
WRONG_STATE = NTSTATUS.STATUS_INVALID_DEVICE_STATE
FORCED_CLOSED = NTSTATUS.STATUS_FILE_FORCED_CLOSED
#: Stand-in for "the transport's own failure status" (what machine.failure holds once FAILED).
TRANSPORT = object()

NEVER_CONNECTED = [S.CREATED, S.BOUND, S.CONNECTING]
BROKEN = [S.ABORTED, S.RESET, S.FAILED]

# --- the transition table, written out from the rules --------------------------------------------

_ABORTS = {E.SEND_RST: S.ABORTED, E.RECV_RST: S.RESET, E.TRANSPORT_FAILED: S.FAILED}

EXPECTED_TRANSITIONS: dict[ConnState, dict[ConnInput, ConnState]] = {
    S.CREATED: {E.BIND: S.BOUND, E.CLOSE: S.CLOSED},
    S.BOUND: {E.CONNECT: S.CONNECTING, E.CLOSE: S.CLOSED},
    S.CONNECTING: {E.CONNECT_SUCCEEDED: S.CONNECTED, E.CONNECT_FAILED: S.BOUND, E.CLOSE: S.CLOSED},
    # Two directions that close independently (rule 2) ...
    S.CONNECTED: {E.SEND_FIN: S.LOCAL_CLOSING, E.RECV_FIN: S.REMOTE_CLOSED, **_ABORTS},
    S.LOCAL_CLOSING: {E.FIN_ACKED: S.LOCAL_CLOSED, E.RECV_FIN: S.BOTH_CLOSING, **_ABORTS},
    S.LOCAL_CLOSED: {E.RECV_FIN: S.DISCONNECTED, **_ABORTS},
    S.REMOTE_CLOSED: {E.SEND_FIN: S.BOTH_CLOSING, **_ABORTS},
    S.BOTH_CLOSING: {E.FIN_ACKED: S.DISCONNECTED, **_ABORTS},
    # ... and ends, where only WskCloseSocket is left (rule 3).
    S.DISCONNECTED: {},
    S.ABORTED: {},
    S.RESET: {},
    S.FAILED: {},
    S.CLOSED: {},
}
for _state in ConnState:
    if _state is not S.CLOSED:
        EXPECTED_TRANSITIONS[_state][E.CLOSE] = S.CLOSED

PAIRS = list(itertools.product(ConnState, ConnInput))


def test_the_table_has_every_state() -> None:
    assert set(TRANSITIONS) == set(ConnState)


def test_the_table_matches_the_rules() -> None:
    assert TRANSITIONS == EXPECTED_TRANSITIONS


@pytest.mark.parametrize(("state", "event"), PAIRS, ids=[f"{s.name}-{e.name}" for s, e in PAIRS])
def test_every_pair(state: ConnState, event: ConnInput) -> None:
    machine = ConnectionMachine(state)
    legal = event in TRANSITIONS[state]
    assert machine.can(event) is legal
    assert legal is (event in EXPECTED_TRANSITIONS[state])
    if legal:
        assert machine.process(event) is TRANSITIONS[state][event]
        assert machine.state is TRANSITIONS[state][event]
    else:
        with pytest.raises(IllegalTransition) as excinfo:
            machine.process(event)
        assert machine.state is state
        assert excinfo.value.state is state
        assert excinfo.value.event is event
        assert event.name in str(excinfo.value)
        assert state.name in str(excinfo.value)


def test_closed_has_no_exits() -> None:
    assert TRANSITIONS[S.CLOSED] == {}
    machine = ConnectionMachine(S.CLOSED)
    for event in ConnInput:
        assert not machine.can(event)
        with pytest.raises(IllegalTransition):
            machine.process(event)
        assert machine.state is S.CLOSED


@pytest.mark.parametrize("state", [s for s in ConnState if s is not S.CLOSED], ids=lambda s: s.name)
def test_every_open_state_accepts_close(state: ConnState) -> None:
    assert TRANSITIONS[state][E.CLOSE] is S.CLOSED
    machine = ConnectionMachine(state)
    assert machine.process(E.CLOSE) is S.CLOSED


@pytest.mark.parametrize("state", [*BROKEN, S.DISCONNECTED], ids=lambda s: s.name)
def test_ends_accept_only_close(state: ConnState) -> None:
    assert set(TRANSITIONS[state]) == {E.CLOSE}


def reachable_from(start: ConnState) -> dict[ConnState, list[ConnInput]]:
    """Every state reachable from ``start``, with a shortest input sequence that reaches it."""
    paths: dict[ConnState, list[ConnInput]] = {start: []}
    queue = deque([start])
    while queue:
        state = queue.popleft()
        for event, new in TRANSITIONS[state].items():
            if new not in paths:
                paths[new] = [*paths[state], event]
                queue.append(new)
    return paths


def test_every_state_is_reachable_from_created() -> None:
    paths = reachable_from(S.CREATED)
    assert set(paths) == set(ConnState)
    for state, path in paths.items():
        machine = ConnectionMachine()
        for event in path:
            machine.process(event)
        assert machine.state is state


def test_every_state_can_reach_closed() -> None:
    for state in ConnState:
        assert S.CLOSED in reachable_from(state)


CONNECT = [E.BIND, E.CONNECT, E.CONNECT_SUCCEEDED]


@pytest.mark.parametrize(
    "path",
    [
        [E.SEND_FIN, E.FIN_ACKED, E.RECV_FIN],  # we finish first
        [E.RECV_FIN, E.SEND_FIN, E.FIN_ACKED],  # the peer finishes first
        [E.SEND_FIN, E.RECV_FIN, E.FIN_ACKED],  # the peer's FIN while ours completes
    ],
    ids=["local-first", "remote-first", "crossing"],
)
def test_graceful_paths_end_disconnected(path: list[ConnInput]) -> None:
    machine = ConnectionMachine()
    for event in [*CONNECT, *path]:
        machine.process(event)
    assert machine.state is S.DISCONNECTED
    assert not close_needs_reset(machine.state)


def test_a_failed_connect_may_be_retried() -> None:
    machine = ConnectionMachine()
    for event in [E.BIND, E.CONNECT, E.CONNECT_FAILED, E.CONNECT, E.CONNECT_SUCCEEDED]:
        machine.process(event)
    assert machine.state is S.CONNECTED


def test_machine_defaults() -> None:
    machine = ConnectionMachine()
    assert machine.state is S.CREATED
    assert machine.failure == NTSTATUS.STATUS_IO_TIMEOUT


@pytest.mark.parametrize("state", list(ConnState), ids=lambda s: s.name)
def test_broken_property(state: ConnState) -> None:
    assert ConnectionMachine(state).broken is (state in BROKEN)


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (S.CREATED, False),
        (S.BOUND, False),
        (S.CONNECTING, False),
        (S.CONNECTED, False),
        (S.REMOTE_CLOSED, False),
        (S.LOCAL_CLOSING, True),
        (S.LOCAL_CLOSED, True),
        (S.BOTH_CLOSING, True),
        (S.DISCONNECTED, True),
    ],
    ids=lambda v: v.name if isinstance(v, ConnState) else str(v),
)
def test_local_fin_sent_property(state: ConnState, expected: bool) -> None:
    assert ConnectionMachine(state).local_fin_sent is expected


# --- verdicts --------------------------------------------------------------------------------------

#: WskSend: spec 8.5 row "WskSend", the module's Q1 choice, and rule 3's "fail with the cause".
SEND: dict[ConnState, object] = {
    S.CREATED: WRONG_STATE,
    S.BOUND: WRONG_STATE,
    S.CONNECTING: WRONG_STATE,
    S.CONNECTED: None,
    S.REMOTE_CLOSED: None,  # sending is allowed until we disconnect
    S.LOCAL_CLOSING: WRONG_STATE,  # Q1
    S.LOCAL_CLOSED: WRONG_STATE,  # Q1
    S.BOTH_CLOSING: WRONG_STATE,  # Q1
    S.DISCONNECTED: WRONG_STATE,  # Q1
    S.ABORTED: ABORTED,
    S.RESET: RESET,
    S.FAILED: TRANSPORT,
    S.CLOSED: WRONG_STATE,
}

R, END = ReceiveVerdict.READ, ReceiveVerdict.END_OF_DATA

#: WskReceive with a half-open transport (TCP) and without one.
RECEIVE: dict[ConnState, tuple[object, object]] = {
    S.CREATED: (WRONG_STATE, WRONG_STATE),
    S.BOUND: (WRONG_STATE, WRONG_STATE),
    S.CONNECTING: (WRONG_STATE, WRONG_STATE),
    S.CONNECTED: (R, R),
    S.REMOTE_CLOSED: (R, R),  # buffered data, then 0 bytes
    S.LOCAL_CLOSING: (R, END),  # "ok (until peer FIN)" only if half-open
    S.LOCAL_CLOSED: (R, END),
    S.BOTH_CLOSING: (R, END),
    S.DISCONNECTED: (R, END),
    S.ABORTED: (ABORTED, ABORTED),
    S.RESET: (RESET, RESET),
    S.FAILED: (TRANSPORT, TRANSPORT),
    S.CLOSED: (WRONG_STATE, WRONG_STATE),
}

#: WskDisconnect: (graceful, abortive).  Q13 -> INVALID_DEVICE_STATE; a socket that no longer
#: works -> FILE_FORCED_CLOSED.
DISCONNECT: dict[ConnState, tuple[object, object]] = {
    S.CREATED: (WRONG_STATE, WRONG_STATE),
    S.BOUND: (WRONG_STATE, WRONG_STATE),
    S.CONNECTING: (WRONG_STATE, WRONG_STATE),
    S.CONNECTED: (None, None),
    S.REMOTE_CLOSED: (None, None),
    S.LOCAL_CLOSING: (WRONG_STATE, None),  # abortive forces the pending graceful IRP
    S.LOCAL_CLOSED: (WRONG_STATE, None),
    S.BOTH_CLOSING: (WRONG_STATE, None),  # our FIN still completing
    S.DISCONNECTED: (WRONG_STATE, WRONG_STATE),
    S.ABORTED: (FORCED_CLOSED, FORCED_CLOSED),
    S.RESET: (FORCED_CLOSED, FORCED_CLOSED),
    S.FAILED: (FORCED_CLOSED, FORCED_CLOSED),
    S.CLOSED: (WRONG_STATE, WRONG_STATE),
}

#: WskCloseSocket aborts a connection not yet disconnected in both directions (spec 7.4).
CLOSE_RESETS: dict[ConnState, bool] = {
    S.CREATED: False,
    S.BOUND: False,
    S.CONNECTING: False,
    S.CONNECTED: True,
    S.LOCAL_CLOSING: True,
    S.LOCAL_CLOSED: True,
    S.REMOTE_CLOSED: True,
    S.BOTH_CLOSING: True,
    S.DISCONNECTED: False,  # FIN-clean close
    S.ABORTED: False,
    S.RESET: False,
    S.FAILED: False,
    S.CLOSED: False,
}

FAILURES = [NTSTATUS.STATUS_IO_TIMEOUT, NTSTATUS.STATUS_HOST_UNREACHABLE]


def expect(value: object, failure: int) -> object:
    return failure if value is TRANSPORT else value


def test_expectation_tables_cover_every_state() -> None:
    for table in (SEND, RECEIVE, DISCONNECT, CLOSE_RESETS):
        assert set(table) == set(ConnState)


@pytest.mark.parametrize("state", list(ConnState), ids=lambda s: s.name)
def test_send_verdict(state: ConnState) -> None:
    assert send_verdict(state) == expect(SEND[state], NTSTATUS.STATUS_IO_TIMEOUT)
    for failure in FAILURES:
        assert send_verdict(state, failure) == expect(SEND[state], failure)


@pytest.mark.parametrize("half_open", [True, False])
@pytest.mark.parametrize("state", list(ConnState), ids=lambda s: s.name)
def test_receive_verdict(state: ConnState, half_open: bool) -> None:
    expected = RECEIVE[state][0 if half_open else 1]
    for failure in FAILURES:
        assert receive_verdict(state, half_open, failure) == expect(expected, failure)
    if half_open:
        assert receive_verdict(state) == expect(expected, NTSTATUS.STATUS_IO_TIMEOUT)


@pytest.mark.parametrize("abortive", [False, True])
@pytest.mark.parametrize("state", list(ConnState), ids=lambda s: s.name)
def test_disconnect_verdict(state: ConnState, abortive: bool) -> None:
    assert disconnect_verdict(state, abortive) == DISCONNECT[state][1 if abortive else 0]


@pytest.mark.parametrize("state", list(ConnState), ids=lambda s: s.name)
def test_close_needs_reset(state: ConnState) -> None:
    assert close_needs_reset(state) is CLOSE_RESETS[state]


@pytest.mark.parametrize("state", list(ConnState), ids=lambda s: s.name)
def test_verdicts_agree_with_the_transition_table(state: ConnState) -> None:
    """A disconnect the verdict lets through must be a legal input of the machine."""
    if disconnect_verdict(state, abortive=False) is None:
        assert E.SEND_FIN in TRANSITIONS[state]
    if disconnect_verdict(state, abortive=True) is None:
        assert E.SEND_RST in TRANSITIONS[state]
    if close_needs_reset(state):
        assert E.SEND_RST in TRANSITIONS[state]


@pytest.mark.parametrize("state", list(ConnState), ids=lambda s: s.name)
def test_failing_verdicts_are_errors(state: ConnState) -> None:
    results: list[object] = [
        send_verdict(state),
        receive_verdict(state, True),
        receive_verdict(state, False),
        disconnect_verdict(state, False),
        disconnect_verdict(state, True),
    ]
    for result in results:
        if isinstance(result, int):
            assert NT_ERROR(result)


# --- pending requests when the socket ends ---------------------------------------------------------

PENDING_EXPECTED: dict[tuple[Cause, OpKind], NTSTATUS | None] = {
    # Abortive disconnect "cancels all in-progress and pending transmit operations" (Q2);
    # receives, a stuck graceful disconnect and a connect learn of a local abort (Q3, Q4).
    (Ending.OUR_RST, OpKind.SEND): CANCELLED,
    (Ending.OUR_RST, OpKind.RECEIVE): ABORTED,
    (Ending.OUR_RST, OpKind.DISCONNECT): ABORTED,
    (Ending.OUR_RST, OpKind.CONNECT): ABORTED,
    (Ending.OUR_RST, OpKind.ACCEPT): ABORTED,
    # The peer's RST (Q3).
    (Ending.PEER_RST, OpKind.SEND): RESET,
    (Ending.PEER_RST, OpKind.RECEIVE): RESET,
    (Ending.PEER_RST, OpKind.DISCONNECT): RESET,
    (Ending.PEER_RST, OpKind.CONNECT): RESET,
    (Ending.PEER_RST, OpKind.ACCEPT): RESET,
    # The transport's own status.
    (Ending.TRANSPORT_FAILURE, OpKind.SEND): None,
    (Ending.TRANSPORT_FAILURE, OpKind.RECEIVE): None,
    (Ending.TRANSPORT_FAILURE, OpKind.DISCONNECT): None,
    (Ending.TRANSPORT_FAILURE, OpKind.CONNECT): None,
    (Ending.TRANSPORT_FAILURE, OpKind.ACCEPT): None,
    # WskCloseSocket cancels and completes every pending IRP (spec 7.2; observed for WskAccept).
    (CLOSE, OpKind.SEND): CANCELLED,
    (CLOSE, OpKind.RECEIVE): CANCELLED,
    (CLOSE, OpKind.DISCONNECT): CANCELLED,
    (CLOSE, OpKind.CONNECT): CANCELLED,
    (CLOSE, OpKind.ACCEPT): CANCELLED,
}


def test_pending_outcome_covers_every_pair() -> None:
    assert set(PENDING_OUTCOME) == set(itertools.product(CAUSES, OpKind))


@pytest.mark.parametrize(
    "pair",
    list(itertools.product(CAUSES, OpKind)),
    ids=[f"{c.name}-{k.name}" for c, k in itertools.product(CAUSES, OpKind)],
)
def test_pending_outcome(pair: tuple[Cause, OpKind]) -> None:
    outcome = PENDING_OUTCOME[pair]
    assert outcome == PENDING_EXPECTED[pair]
    if outcome is not None:
        assert NT_ERROR(outcome)
