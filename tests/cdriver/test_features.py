"""The runtime's less common parts, used from C (tests/cdriver/features.c): Interlocked,
lists, SLists, spin locks and IRQL, KeWaitForMultipleObjects, strings; an IRP made by
IoInitializeIrp in pool memory; an MDL chain linked through Next in one WskSend;
WskGetNameInfo into the caller's UNICODE_STRINGs; WskConnectEx, WskSendEx and WskReceiveEx;
conditional accept (WskInspectEvent into C, WskInspectComplete from C); datagram control
information (IP_PKTINFO) through WskReceiveFrom and WskReceiveFromEvent."""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from typing import Any

import pytest

from pywsk.cdriver import Driver
from pywsk.nt.status import NTSTATUS
from pywsk.wsk import WskInspectAccept, WskInspectReject


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


def test_inspect_complete_on_a_plain_listener(driver: Callable[[str], Driver]) -> None:
    """Without SO_CONDITIONAL_ACCEPT there is nothing to decide: pywsk's status, through
    the completion routine as for any IRP."""
    features = driver("features")
    status = features.call("InspectComplete")
    assert status == NTSTATUS.STATUS_INVALID_DEVICE_STATE, features.debug_output
    assert features.unload() == []


def _conditional(features: Driver) -> int:
    port = features.ffi.new("uint16_t *")
    assert features.call("ConditionalListen", port) == NTSTATUS.STATUS_SUCCESS, (
        features.debug_output
    )
    return int(port[0])


def test_conditional_accept_from_c(driver: Callable[[str], Driver]) -> None:
    """WskInspectEvent (into C) pends the request; WskInspectComplete (from C) accepts it;
    WskAcceptEvent (into C) gets the socket; the Linux client's data then flows."""
    features = driver("features")
    port = _conditional(features)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        peer = features.ffi.new("uint16_t *")
        status = features.call("ConditionalDecide", WskInspectAccept, peer)
        assert status == NTSTATUS.STATUS_SUCCESS, features.debug_output
        assert peer[0] == client.getsockname()[1]
        client.sendall(b"accepted")
    assert features.call("ConditionalClose") == NTSTATUS.STATUS_SUCCESS
    assert features.unload() == []


def test_conditional_reject_from_c(driver: Callable[[str], Driver]) -> None:
    """A request rejected with WskInspectComplete is reset: the Linux client sees it."""
    features = driver("features")
    port = _conditional(features)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        peer = features.ffi.new("uint16_t *")
        status = features.call("ConditionalDecide", WskInspectReject, peer)
        assert status == NTSTATUS.STATUS_SUCCESS, features.debug_output
        with pytest.raises(ConnectionResetError):
            client.recv(16)
    assert features.call("ConditionalClose") == NTSTATUS.STATUS_SUCCESS
    assert features.unload() == []


def test_abort_of_a_pended_request_reaches_c(driver: Callable[[str], Driver]) -> None:
    """The Linux client resets a request WskInspectEvent pended: WskAbortEvent (into C)
    names the same WSK_INSPECT_ID."""
    features = driver("features")
    port = _conditional(features)
    client = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        assert features.call("ConditionalWait", 0) == NTSTATUS.STATUS_SUCCESS, features.debug_output
    finally:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()  # an RST
    assert features.call("ConditionalWait", 1) == NTSTATUS.STATUS_SUCCESS, features.debug_output
    assert features.call("ConditionalClose") == NTSTATUS.STATUS_SUCCESS
    assert features.unload() == []


def test_datagram_control_information(driver: Callable[[str], Driver]) -> None:
    """IP_PKTINFO set from C: WskReceiveFrom fills ControlLength, ControlInfo (a CMSGHDR
    with IN_PKTINFO: the destination 127.0.0.1) and ControlFlags; WskReceiveFromEvent's
    element carries the same control information and the sender's address."""
    features = driver("features")
    ports = features.ffi.new("uint16_t[2]")
    assert features.call("DatagramOpen", ports) == NTSTATUS.STATUS_SUCCESS, features.debug_output
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.bind(("127.0.0.1", 0))
        sender.sendto(b"poll", ("127.0.0.1", ports[0]))
        sender.sendto(b"event", ("127.0.0.1", ports[1]))
        status = features.call("DatagramCheck", sender.getsockname()[1])
    assert status == NTSTATUS.STATUS_SUCCESS, features.debug_output
    assert features.call("DatagramClose") == NTSTATUS.STATUS_SUCCESS
    assert features.unload() == []
