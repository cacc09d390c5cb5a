"""``receive_exactly`` and ``receive_until`` on every Pythonic layer (pywsk.aio on asyncio
and uvloop, pywsk.trio, pywsk.sync), against a plain peer that sends in awkward pieces."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from contract_adapters import layer_fixture

from pywsk.testing.contract import Factory

factory = layer_fixture()


@pytest.fixture
def pair(factory: Factory, request: pytest.FixtureRequest) -> Any:
    if "driver" in request.node.callspec.id:
        pytest.skip("the driver-style layer has no receive helpers")
    if "transport" in request.node.callspec.id:
        pytest.skip("asyncio Protocols have no receive helpers (data_received gets it all)")
    if "anyio" in request.node.callspec.id:
        pytest.skip("anyio has its own: anyio.streams.buffered.BufferedByteReceiveStream")
    with factory(False) as made:
        yield made


def test_helpers_split_and_join_pieces(pair: Any) -> None:
    subject, peer = pair
    peer.sendall(b"ab")
    peer.sendall(b"cdef\r")
    assert subject.receive_exactly(4) == b"abcd"
    peer.sendall(b"\nnext line\r\nrest")
    assert subject.receive_until(b"\r\n", 100) == b"ef"
    assert subject.receive_until(b"\r\n", 100) == b"next line"
    assert subject.receive_some(100) == b"rest"  # the leftover comes first


def test_the_end_of_the_stream_is_an_incomplete_read(pair: Any) -> None:
    subject, peer = pair
    peer.sendall(b"xy")
    peer.shutdown(socket.SHUT_WR)
    with pytest.raises(asyncio.IncompleteReadError) as caught:
        subject.receive_exactly(5)
    assert caught.value.partial == b"xy"
    assert subject.receive_some(10) == b""
    with pytest.raises(asyncio.IncompleteReadError):
        subject.receive_until(b"\n", 10)


def test_an_overrun_keeps_the_bytes(pair: Any) -> None:
    subject, peer = pair
    peer.sendall(b"a" * 20)
    with pytest.raises(asyncio.LimitOverrunError):
        subject.receive_until(b"\n", 10)
    assert subject.receive_exactly(20) == b"a" * 20
