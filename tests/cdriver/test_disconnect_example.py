"""examples/c/disconnect_socket.c - Microsoft's sample compiled unchanged - end to end
against a real peer: the data, then our FIN on the wire, no RST, and the completion routine
at DISPATCH_LEVEL with the socket as its context."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pywsk.cdriver import Driver
from pywsk.nt import DISPATCH_LEVEL
from pywsk.nt.status import NTSTATUS
from pywsk.testing.capture import WireCapture


@pytest.mark.root
def test_sample_disconnects_gracefully_on_the_wire(
    driver: Callable[[str], Driver],
    reading_peer: Callable[..., Any],
    capture_port: Callable[[int], WireCapture],
) -> None:
    peer = reading_peer()
    wire = capture_port(peer.port)
    sample = driver("disconnect_socket")
    assert sample.entry() == NTSTATUS.STATUS_SUCCESS

    assert sample.call("RunDisconnect", peer.port) == NTSTATUS.STATUS_SUCCESS

    assert peer.done.wait(10)
    assert peer.received == [b"hello"]
    assert sample.call("LastDisconnectStatus") == NTSTATUS.STATUS_SUCCESS
    assert sample.call("LastDisconnectIrql", result="int") == DISPATCH_LEVEL
    assert sample.call("LastDisconnectContextWasSocket", result="BOOLEAN") == 1
    assert sample.unload() == []
    wire.sync()
    client_port = next(s.sport for s in wire.segments if s.syn and not s.ack_flag)
    fins = wire.fins(from_port=client_port)
    assert fins, "no FIN from the driver's socket"
    data = [s for s in wire.segments if s.sport == client_port and s.length > 0]
    assert data
    assert data[-1].seq < fins[0].seq
    assert wire.rsts() == []


def test_sample_runs_without_capture(
    driver: Callable[[str], Driver], reading_peer: Callable[..., Any]
) -> None:
    peer = reading_peer()
    sample = driver("disconnect_socket")
    assert sample.entry() == NTSTATUS.STATUS_SUCCESS
    assert sample.call("RunDisconnect", peer.port) == NTSTATUS.STATUS_SUCCESS
    assert any("at IRQL 2, context == Socket" in line for line in sample.debug_output)
    assert sample.unload() == []
