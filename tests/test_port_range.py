"""Ports outside 0..65535 are refused, never wrapped: in the sockaddr structures and at
every entry point of the Pythonic layers, before any WSK call is made."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import trio

import pywsk.aio
import pywsk.aio._connection
import pywsk.aio._listener
import pywsk.sync
import pywsk.trio
from pywsk.wsk import SOCKADDR_IN, SOCKADDR_IN6, sockaddr_from_tuple
from pywsk.wsk.structs import check_port

BAD_PORTS: list[Any] = [-1, 65536, 65536 + 80, 70000, 2**40]
WRONG_TYPES: list[Any] = ["80", 80.0, None, True]


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
@pytest.mark.parametrize("port", BAD_PORTS)
def test_sockaddr_from_tuple_refuses_a_port_out_of_range(host: str, port: int) -> None:
    with pytest.raises(ValueError, match="between 0 and 65535"):
        sockaddr_from_tuple((host, port))


@pytest.mark.parametrize("port", WRONG_TYPES)
def test_sockaddr_from_tuple_refuses_a_port_that_is_not_an_int(port: Any) -> None:
    with pytest.raises(TypeError, match="int"):
        sockaddr_from_tuple(("127.0.0.1", port))


@pytest.mark.parametrize("port", [0, 1, 4464, 65535])
def test_ports_in_range_round_trip(port: int) -> None:
    assert sockaddr_from_tuple(("127.0.0.1", port)).port == port
    assert sockaddr_from_tuple(("::1", port)).port == port


@pytest.mark.parametrize("make", [SOCKADDR_IN, SOCKADDR_IN6])
def test_the_network_order_field_is_a_ushort(make: Callable[[], Any]) -> None:
    address = make()
    field = "sin_port" if isinstance(address, SOCKADDR_IN) else "sin6_port"
    setattr(address, field, 0xFFFF)
    assert getattr(address, field) == 0xFFFF
    for value in (0x10000, -1):
        with pytest.raises(ValueError, match="USHORT"):
            setattr(address, field, value)
    with pytest.raises(TypeError):
        setattr(address, field, "80")
    assert getattr(address, field) == 0xFFFF, "a refused value changes nothing"
    with pytest.raises(ValueError):
        SOCKADDR_IN(sin_port=70000)


def test_check_port_checks_the_local_address_too() -> None:
    assert check_port(80, ("127.0.0.1", 0)) == 80
    with pytest.raises(ValueError):
        check_port(80, ("127.0.0.1", 65536))
    with pytest.raises(TypeError):
        check_port(80, ("127.0.0.1",))


@pytest.fixture
def no_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any WSK step of a layer fails the test: the refusal must come before."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a WSK call was started")

    for module in (pywsk.sync, pywsk.aio._connection, pywsk.trio):
        monkeypatch.setattr(module, "connect_steps", refuse)
    for module in (pywsk.sync, pywsk.aio._listener, pywsk.trio):
        monkeypatch.setattr(module, "listen_steps", refuse)


@pytest.mark.usefixtures("no_calls")
@pytest.mark.parametrize("port", BAD_PORTS)
def test_sync_refuses_before_any_call(port: int) -> None:
    with pytest.raises(ValueError):
        pywsk.sync.connect("127.0.0.1", port, timeout=5)
    with pytest.raises(ValueError):
        pywsk.sync.connect("127.0.0.1", 80, timeout=5, local=("127.0.0.1", port))
    with pytest.raises(ValueError):
        pywsk.sync.listen("127.0.0.1", port)


@pytest.mark.usefixtures("no_calls")
@pytest.mark.parametrize("port", BAD_PORTS)
def test_aio_refuses_before_any_call(port: int) -> None:
    async def main() -> None:
        with pytest.raises(ValueError):
            await pywsk.aio.connect("127.0.0.1", port)
        with pytest.raises(ValueError):
            await pywsk.aio.connect("127.0.0.1", 80, local=("127.0.0.1", port))
        with pytest.raises(ValueError):
            await pywsk.aio.listen("127.0.0.1", port)

        async def handler(conn: pywsk.aio.Connection) -> None:
            raise AssertionError("never called")

        with pytest.raises(ValueError):
            await pywsk.aio.serve(handler, "127.0.0.1", port)

    asyncio.run(asyncio.wait_for(main(), 30))


@pytest.mark.usefixtures("no_calls")
@pytest.mark.parametrize("port", BAD_PORTS)
def test_trio_refuses_before_any_call(port: int) -> None:
    async def main() -> None:
        with trio.fail_after(30):
            with pytest.raises(ValueError):
                await pywsk.trio.open_connection("127.0.0.1", port)
            with pytest.raises(ValueError):
                await pywsk.trio.open_connection("127.0.0.1", 80, local=("127.0.0.1", port))
            with pytest.raises(ValueError):
                await pywsk.trio.open_listener("127.0.0.1", port)

    trio.run(main)


@pytest.mark.usefixtures("no_calls")
@pytest.mark.parametrize("port", ["80", 80.0, None])
def test_a_port_of_the_wrong_type_is_a_type_error(port: Any) -> None:
    with pytest.raises(TypeError):
        pywsk.sync.connect("127.0.0.1", port, timeout=5)
    with pytest.raises(TypeError):
        pywsk.sync.listen("127.0.0.1", port)
