"""What a probe's report claims of our end, for reconciling it with the wire: only a
disconnect that acted (succeeded, or is still pending) is an end of ours; a refused one did
nothing on the wire, and the claim falls back to the close."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pywsk.cli.probe_run import ProbeOptions, ProbeRun, new_report
from pywsk.client import Call
from pywsk.core.ending import Ending
from pywsk.nt.status import NTSTATUS


@pytest.fixture
def run() -> Iterator[ProbeRun]:
    report = new_report("probe", "graceful", "fin", "127.0.0.1:9")
    probe = ProbeRun(report, ProbeOptions("127.0.0.1", 9), ("127.0.0.1", 9))
    try:
        yield probe
    finally:
        assert probe.session.close() == []  # nothing left open


def _call(label: str, status: int | None) -> Call:
    call = Call("WskDisconnect", label=label)
    if status is not None:
        call.status = status
        call.completed_at = call.issued_at + 0.001
        call._done.set()  # as the completion routine does
    return call


@pytest.mark.parametrize(
    ("label", "ending"),
    [("WskDisconnect", Ending.OUR_FIN), ("WskDisconnect(WSK_FLAG_ABORTIVE)", Ending.OUR_RST)],
)
def test_a_disconnect_that_succeeded_is_our_end(run: ProbeRun, label: str, ending: Ending) -> None:
    run.disconnect = _call(label, NTSTATUS.STATUS_SUCCESS)
    claims = run.claims()
    assert claims.our_end is ending
    assert claims.our_end_at == run.disconnect.issued_at


def test_a_pending_disconnect_is_our_end(run: ProbeRun) -> None:
    run.disconnect = _call("WskDisconnect", None)
    assert run.claims().our_end is Ending.OUR_FIN


@pytest.mark.parametrize(
    "status", [NTSTATUS.STATUS_FILE_FORCED_CLOSED, NTSTATUS.STATUS_CONNECTION_RESET]
)
def test_a_refused_disconnect_claims_nothing(run: ProbeRun, status: int) -> None:
    run.disconnect = _call("WskDisconnect(WSK_FLAG_ABORTIVE)", status)
    claims = run.claims()
    assert claims.our_end is None
    assert claims.fin_acked_at is None


def test_a_refused_disconnect_then_a_close_claims_the_close(run: ProbeRun) -> None:
    run.disconnect = _call("WskDisconnect", NTSTATUS.STATUS_FILE_FORCED_CLOSED)
    run.close = _call("WskCloseSocket", NTSTATUS.STATUS_SUCCESS)
    claims = run.claims()
    assert claims.our_end is Ending.OUR_RST
    assert claims.our_end_call == "WskCloseSocket"


def test_a_graceful_disconnect_forced_by_an_abort_claims_the_abort(run: ProbeRun) -> None:
    """stall-then-abort: the stalled graceful disconnect completes CONNECTION_ABORTED (no FIN
    left); the abort that forced it is our end, an RST at its call."""
    abort = _call("WskDisconnect(WSK_FLAG_ABORTIVE)", NTSTATUS.STATUS_SUCCESS)
    graceful = _call("WskDisconnect", NTSTATUS.STATUS_CONNECTION_ABORTED)
    run.aborted = abort
    run.disconnect = graceful  # as the scenario sets it back, to check the forced completion
    claims = run.claims()
    assert claims.our_end is Ending.OUR_RST
    assert claims.our_end_at == abort.issued_at
    assert claims.fin_acked_at is None


def test_a_graceful_disconnect_then_an_abort_claims_the_fin(run: ProbeRun) -> None:
    graceful = _call("WskDisconnect", NTSTATUS.STATUS_SUCCESS)
    abort = _call("WskDisconnect(WSK_FLAG_ABORTIVE)", NTSTATUS.STATUS_SUCCESS)
    run.disconnect = run.aborted = abort
    run.disconnect = graceful
    claims = run.claims()
    assert claims.our_end is Ending.OUR_FIN
    assert claims.fin_acked_at == graceful.completed_at
