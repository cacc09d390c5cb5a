"""Each verifier check: a deliberately buggy client trips it, a correct one does not."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from verifier_helpers import WAIT, Listener, connected, ids

from pywsk import verifier
from pywsk.nt import (
    IRP,
    STATUS_INVALID_HANDLE,
    STATUS_INVALID_PARAMETER,
    STATUS_MORE_PROCESSING_REQUIRED,
    STATUS_SUCCESS,
    BugCheck,
    IoAllocateIrp,
    IoAllocateMdl,
    IoFreeIrp,
    IoFreeMdl,
    IoReadAccess,
    IoSetCompletionRoutine,
    KernelMode,
    MmProbeAndLockPages,
)
from pywsk.testing.driver import WskTestClient, make_buffer
from pywsk.wsk import WSK_BUF, WSK_FLAG_ABORTIVE


@pytest.fixture
def collecting() -> Iterator[verifier.Verifier]:
    """The verifier in collect mode for one test (the suite's own mode comes back after)."""
    with verifier.enabled_for("collect") as found:
        yield found


@pytest.fixture
def raising() -> Iterator[verifier.Verifier]:
    with verifier.enabled_for("raise") as found:
        yield found


def routine(result: int) -> Callable[[Any, IRP, Any], int]:
    def completion(_device: Any, _irp: IRP, _context: Any) -> int:
        return result

    return completion


def test_every_check_has_an_entry_in_the_docs() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "verifier.md").read_text()
    for check_id in verifier.CHECKS:
        assert f"### {check_id}" in text, check_id


def test_irp_002_submitted_while_pending(
    wsk: WskTestClient, listener: Listener, raising: verifier.Verifier
) -> None:
    sock, peer = connected(wsk, listener)
    request, _ = wsk.receive(sock, 10)
    _pool, buf = make_buffer(b"x")
    with pytest.raises(BugCheck, match=r"(?s)\[IRP-002\].*created at"):
        wsk.dispatch(sock).WskSend(sock, buf, 0, request.irp)
    peer.sendall(b"z")
    assert request.wait(WAIT).status == STATUS_SUCCESS
    peer.close()


def test_irp_003_freed_while_pending(
    wsk: WskTestClient, listener: Listener, raising: verifier.Verifier
) -> None:
    sock, peer = connected(wsk, listener)
    request, _ = wsk.receive(sock, 10)
    with pytest.raises(BugCheck, match=r"(?s)\[IRP-003\]"):
        IoFreeIrp(request.irp)
    peer.sendall(b"z")
    assert request.wait(WAIT).status == STATUS_SUCCESS
    peer.close()


def test_irp_004_routine_not_returning_more_processing_required(
    wsk: WskTestClient, listener: Listener, collecting: verifier.Verifier
) -> None:
    sock, peer = connected(wsk, listener)
    irp = IoAllocateIrp(1, False)
    assert irp is not None
    IoSetCompletionRoutine(irp, routine(STATUS_SUCCESS), None, True, True, True)
    _pool, buf = make_buffer(b"x")
    wsk.dispatch(sock).WskSend(sock, buf, 0, irp)
    assert ids(collecting) == ["IRP-004"]
    peer.close()


def test_irp_005_reused_without_ioreuseirp(
    wsk: WskTestClient, listener: Listener, raising: verifier.Verifier
) -> None:
    sock, peer = connected(wsk, listener)
    irp = IoAllocateIrp(1, False)
    assert irp is not None
    IoSetCompletionRoutine(irp, routine(STATUS_MORE_PROCESSING_REQUIRED), None, True, True, True)
    _pool, buf = make_buffer(b"x")
    assert wsk.dispatch(sock).WskSend(sock, buf, 0, irp) == STATUS_SUCCESS
    with pytest.raises(BugCheck, match=r"(?s)\[IRP-005\]"):
        wsk.dispatch(sock).WskSend(sock, buf, 0, irp)
    IoFreeIrp(irp)
    peer.close()


def test_irp_001_completed_twice_is_caught_by_the_nt_layer_and_the_verifier(
    raising: verifier.Verifier,
) -> None:
    from pywsk.nt import IoCompleteRequest, begin_request

    irp = IoAllocateIrp(1, False)
    assert irp is not None
    begin_request(irp, "test")
    IoCompleteRequest(irp)
    with pytest.raises(BugCheck, match=r"(?s)\[IRP-001\]"):
        IoCompleteRequest(irp)
    IoFreeIrp(irp)


def test_irp_006_and_mdl_leaks_are_reported(collecting: verifier.Verifier) -> None:
    irp = IoAllocateIrp(1, False)
    data = bytearray(16)
    mdl = IoAllocateMdl(data, 16, False, False, None)
    assert mdl is not None
    locked = IoAllocateMdl(b"locked", 6, False, False, None)
    assert locked is not None
    MmProbeAndLockPages(locked, KernelMode, IoReadAccess)
    found = {v.check.id for v in verifier.leak_report()}
    assert {"IRP-006", "MDL-001", "MDL-002"} <= found
    assert all("created at" in str(v) or v.created_at == "" for v in verifier.leak_report())
    assert irp is not None
    IoFreeIrp(irp)
    IoFreeMdl(mdl)
    from pywsk.nt import MmUnlockPages

    MmUnlockPages(locked)
    IoFreeMdl(locked)
    assert verifier.leak_report() == []


def test_wsk_001_call_on_a_closed_socket(
    wsk: WskTestClient, listener: Listener, raising: verifier.Verifier
) -> None:
    sock, peer = connected(wsk, listener)
    wsk.close_socket(sock)
    _pool, buf = make_buffer(b"x")
    irp = IoAllocateIrp(1, False)
    assert irp is not None
    with pytest.raises(BugCheck, match=r"(?s)\[WSK-001\]"):
        wsk.dispatch(sock).WskSend(sock, buf, 0, irp)
    IoFreeIrp(irp)
    peer.close()


def test_wsk_001_collect_mode_still_returns_the_status(
    wsk: WskTestClient, listener: Listener, collecting: verifier.Verifier
) -> None:
    sock, peer = connected(wsk, listener)
    wsk.close_socket(sock)
    request = wsk.send(sock, b"x")
    assert request.returned == STATUS_INVALID_HANDLE
    assert ids(collecting) == ["WSK-001"]
    # The report says where the socket was made and where it was closed: this test.
    (violation,) = collecting.found
    assert "test_checks.py" in violation.created_at
    assert "WskCloseSocket was called at" in violation.detail
    assert "test_wsk_001_collect_mode_still_returns_the_status" in violation.detail
    peer.close()


def test_wsk_002_close_while_a_call_is_inside(
    wsk: WskTestClient, listener: Listener, collecting: verifier.Verifier
) -> None:
    sock, peer = connected(wsk, listener)
    close_results: list[Any] = []

    def close_inside(_device: Any, irp: IRP, _context: Any) -> int:
        # Runs inline inside WskSend: the send call has not returned yet.
        close_results.append(wsk.start("WskCloseSocket", wsk.dispatch(sock).WskCloseSocket, sock))
        return STATUS_MORE_PROCESSING_REQUIRED

    irp = IoAllocateIrp(1, False)
    assert irp is not None
    IoSetCompletionRoutine(irp, close_inside, None, True, True, True)
    _pool, buf = make_buffer(b"x")
    wsk.dispatch(sock).WskSend(sock, buf, 0, irp)
    wsk.sockets.remove(sock)
    assert "WSK-002" in ids(collecting)
    assert close_results[0].status == STATUS_SUCCESS
    IoFreeIrp(irp)
    peer.close()


def test_wsk_003_buffer_with_abortive_is_soft(
    wsk: WskTestClient, listener: Listener, raising: verifier.Verifier
) -> None:
    sock, peer = connected(wsk, listener)
    request = wsk.disconnect(sock, final=b"x", flags=WSK_FLAG_ABORTIVE)
    assert request.returned == STATUS_INVALID_PARAMETER  # the status is still returned
    assert ids(raising) == ["WSK-003"]
    peer.close()


def test_wsk_004_buffer_beyond_its_chain_is_soft(
    wsk: WskTestClient, listener: Listener, raising: verifier.Verifier
) -> None:
    sock, peer = connected(wsk, listener)
    _pool, buf = make_buffer(b"0123456789")
    request = wsk.start("WskSend", wsk.dispatch(sock).WskSend, sock, WSK_BUF(buf.Mdl, 5, 10), 0)
    assert request.returned == STATUS_INVALID_PARAMETER
    assert ids(raising) == ["WSK-004"]
    peer.close()


def test_wsk_006_deregister_with_sockets_open_is_refused_and_leaves_all_intact(
    listener: Listener, raising: verifier.Verifier
) -> None:
    from pywsk.wsk import WskDeregister

    client = WskTestClient()
    sock, peer = connected(client, listener)
    from pywsk.wsk import WskReleaseProviderNPI

    WskReleaseProviderNPI(client.registration)
    with pytest.raises(BugCheck, match=r"(?s)\[WSK-006\]"):
        WskDeregister(client.registration)
    # Still registered and the socket still works.
    assert client.send(sock, b"ok").wait(WAIT).status == STATUS_SUCCESS
    client.close_socket(sock)
    WskDeregister(client.registration)
    peer.close()


def test_wsk_007_call_from_a_completion_routine_is_reported(
    wsk: WskTestClient, listener: Listener, collecting: verifier.Verifier
) -> None:
    sock, peer = connected(wsk, listener)
    started: list[Any] = []

    def send_again(_device: Any, irp: IRP, _context: Any) -> int:
        started.append(wsk.send(sock, b"second"))
        return STATUS_MORE_PROCESSING_REQUIRED

    irp = IoAllocateIrp(1, False)
    assert irp is not None
    IoSetCompletionRoutine(irp, send_again, None, True, True, True)
    _pool, buf = make_buffer(b"first")
    wsk.dispatch(sock).WskSend(sock, buf, 0, irp)
    assert ids(collecting) == ["WSK-007"]
    assert started[0].wait(WAIT).status == STATUS_SUCCESS
    IoFreeIrp(irp)
    peer.close()


def test_wsk_005_close_with_retained_indications(
    wsk: WskTestClient, listener: Listener, collecting: verifier.Verifier
) -> None:
    import threading

    from pywsk.nt import STATUS_PENDING
    from pywsk.wsk import WSK_CLIENT_CONNECTION_DISPATCH, WSK_EVENT_RECEIVE

    got = threading.Event()

    def keep(*_args: Any) -> int:
        got.set()
        return STATUS_PENDING

    lsock = listener()
    sock = wsk.connect(
        lsock.getsockname()[:2], context=None, dispatch=WSK_CLIENT_CONNECTION_DISPATCH(keep)
    )
    peer, _ = lsock.accept()
    assert wsk.set_events(sock, WSK_EVENT_RECEIVE) == STATUS_SUCCESS
    peer.sendall(b"kept")
    assert got.wait(WAIT)
    wsk.close_socket(sock)
    assert "WSK-005" in ids(collecting)
    peer.close()


def test_a_correct_client_trips_nothing(
    wsk: WskTestClient, listener: Listener, raising: verifier.Verifier
) -> None:
    sock, peer = connected(wsk, listener)
    assert wsk.send(sock, b"hello").wait(WAIT).status == STATUS_SUCCESS
    assert wsk.disconnect(sock).wait(WAIT).status == STATUS_SUCCESS
    assert peer.recv(10) == b"hello"
    peer.close()
    wsk.close_socket(sock)
    wsk.free_requests()
    assert raising.found == []
    assert [v for v in verifier.leak_report() if v.check.id in ("IRP-006", "WSK-008")] == []


def test_the_seed_example_trips_nothing(raising: verifier.Verifier) -> None:
    import runpy
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "examples" / "disconnect_socket.py"
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(example), run_name="__main__")
    assert exit_info.value.code == 0
    assert raising.found == []


def test_an_irp_collected_without_iofreeirp_raises_a_resource_warning() -> None:
    import gc

    previous = verifier.enabled()
    verifier.enable(mode="collect", resource_warnings=True)
    try:
        with pytest.warns(ResourceWarning, match="IRP collected without being freed"):
            IoAllocateIrp(1, False)  # the IRP is dropped at once, never freed
        gc.collect()
    finally:
        verifier.disable()
        if previous is not None:
            verifier.enable(mode=previous.mode, resource_warnings=previous.resource_warnings)


# --- WSK-010: a function of another category's table --------------------------------------------


def test_wsk_010_a_datagram_function_on_a_connection_socket(
    wsk: WskTestClient, listener: Listener, collecting: verifier.Verifier
) -> None:
    from pywsk.provider import subsystem

    sock, peer = connected(wsk, listener)
    _pool, buf = make_buffer(b"x")
    request = wsk.start(
        "WskSendTo", subsystem.datagram_dispatch.WskSendTo, sock, buf, 0, None, 0, None
    )
    assert request.returned != STATUS_SUCCESS  # the provider refuses it with a status
    assert ids(collecting) == ["WSK-010"]  # named for what it is, not a use after close
    (violation,) = collecting.found
    assert "WSK_PROVIDER_CONNECTION_DISPATCH" in violation.detail
    assert "nc-wsk-pfn_wsk_socket" in str(violation)
    assert wsk.send(sock, b"still works").wait(WAIT).status == STATUS_SUCCESS
    peer.close()


# --- DPC-001: too long at DISPATCH_LEVEL ----------------------------------------------------------


def _slow(seconds: float) -> None:
    """Work that takes ``seconds`` (the rule under test is about time spent, so it waits)."""
    threading.Event().wait(seconds)


def test_dpc_001_a_completion_routine_that_runs_too_long(
    wsk: WskTestClient, listener: Listener, collecting: verifier.Verifier
) -> None:
    collecting.dispatch_time_limit = 0.05
    sock, peer = connected(wsk, listener)
    _pool, buf = make_buffer(b"slow")
    irp = IoAllocateIrp(1, False)
    assert irp is not None
    done = threading.Event()

    def completion(_device: Any, _irp: IRP, _context: Any) -> int:
        _slow(0.2)
        done.set()
        return STATUS_MORE_PROCESSING_REQUIRED

    IoSetCompletionRoutine(irp, completion, None, True, True, True)
    wsk.dispatch(sock).WskSend(sock, buf, 0, irp)
    assert done.wait(WAIT)
    IoFreeIrp(irp)
    assert ids(collecting) == ["DPC-001"]
    (violation,) = collecting.found
    assert "completion routine" in violation.detail
    assert "kequerydpcwatchdoginformation" in str(violation)
    peer.close()


def test_dpc_001_an_event_callback_that_runs_too_long(
    wsk: WskTestClient, listener: Listener, collecting: verifier.Verifier
) -> None:
    from pywsk.wsk import WSK_CLIENT_CONNECTION_DISPATCH, WSK_EVENT_RECEIVE

    collecting.dispatch_time_limit = 0.05
    calls: list[int] = []
    second = threading.Event()

    def on_receive(*_args: Any) -> int:
        calls.append(1)
        if len(calls) == 1:
            _slow(0.2)  # the first indication takes too long
        else:
            second.set()  # (callbacks of a socket never overlap: the first has returned)
        return STATUS_SUCCESS

    lsock = listener()
    sock = wsk.connect(
        lsock.getsockname()[:2], dispatch=WSK_CLIENT_CONNECTION_DISPATCH(on_receive, None)
    )
    peer, _ = lsock.accept()
    assert wsk.set_events(sock, WSK_EVENT_RECEIVE) == STATUS_SUCCESS
    peer.sendall(b"first")
    while not second.is_set():  # bounded: each round is one indication
        assert len(calls) < 1000
        peer.sendall(b"more")
        second.wait(0.5)
    assert ids(collecting) == ["DPC-001"]
    assert "event callback" in collecting.found[0].detail
    peer.close()


def test_dpc_001_a_dpc_routine_that_runs_too_long(
    wsk: WskTestClient, collecting: verifier.Verifier
) -> None:
    from pywsk.nt.dpc import KDPC, KeInitializeDpc, KeInsertQueueDpc

    assert wsk is not None  # the provider (the processor that runs DPCs) is up
    collecting.dispatch_time_limit = 0.05
    done = threading.Event()

    def slow(_dpc: Any, _context: Any, _arg1: Any, _arg2: Any) -> None:
        _slow(0.2)

    def after(_dpc: Any, _context: Any, _arg1: Any, _arg2: Any) -> None:
        done.set()  # DPCs run in order: the slow one has returned and been timed

    first, second = KDPC(), KDPC()
    KeInitializeDpc(first, slow, None)
    KeInitializeDpc(second, after, None)
    assert KeInsertQueueDpc(first, None, None)
    assert KeInsertQueueDpc(second, None, None)
    assert done.wait(WAIT)
    assert ids(collecting) == ["DPC-001"]
    assert "DPC routine" in collecting.found[0].detail


def test_dpc_001_quick_routines_are_not_reported(
    wsk: WskTestClient, listener: Listener, collecting: verifier.Verifier
) -> None:
    sock, peer = connected(wsk, listener)
    for _ in range(20):
        assert wsk.send(sock, b"quick").wait(WAIT).status == STATUS_SUCCESS
    assert ids(collecting) == []
    peer.close()
