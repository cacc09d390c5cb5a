"""The runtime's less common parts, used from C (tests/cdriver/features.c): Interlocked,
lists, SLists, spin locks and IRQL, KeWaitForMultipleObjects, strings; an IRP made by
IoInitializeIrp in pool memory; an MDL chain linked through Next in one WskSend;
WskGetNameInfo into the caller's UNICODE_STRINGs; WskConnectEx, WskSendEx and WskReceiveEx;
a call not implemented for C completing its IRP with STATUS_NOT_IMPLEMENTED."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pywsk.cdriver import Driver
from pywsk.nt.status import NTSTATUS


def test_primitives(driver: Callable[[str], Driver]) -> None:
    features = driver("features")
    assert features.call("Primitives") == NTSTATUS.STATUS_SUCCESS, features.debug_output
    assert features.unload() == []


def test_initialized_irp_and_mdl_chain(
    driver: Callable[[str], Driver], reading_peer: Callable[..., Any]
) -> None:
    peer = reading_peer()
    features = driver("features")
    assert features.call("ChainSend", peer.port) == NTSTATUS.STATUS_SUCCESS, features.debug_output
    assert peer.done.wait(10)
    assert peer.received == [b"hello world"]
    assert features.unload() == []


def test_name_info(driver: Callable[[str], Driver]) -> None:
    features = driver("features")
    assert features.call("NameInfo") == NTSTATUS.STATUS_SUCCESS, features.debug_output
    assert features.unload() == []


def test_extended_calls(driver: Callable[[str], Driver], reading_peer: Callable[..., Any]) -> None:
    """WskConnectEx with data, WskSendEx and WskReceiveEx from C, against a Python peer
    that echoes; the wire order is the peer's: "hello" with the connect, then " ex"."""
    peer = reading_peer(echo=True)
    features = driver("features")
    assert features.call("ExCalls", peer.port) == NTSTATUS.STATUS_SUCCESS, features.debug_output
    assert peer.done.wait(10)
    assert peer.received == [b"hello ex"]
    assert features.unload() == []


def test_not_implemented_completes_the_irp(driver: Callable[[str], Driver]) -> None:
    features = driver("features")
    status = features.call("InspectComplete")
    assert status == NTSTATUS.STATUS_NOT_IMPLEMENTED, features.debug_output
    assert features.unload() == []
