"""pywsk.aio's datagram endpoint, on asyncio and on uvloop, against real UDP peers (a plain
Python socket and socat) and a packet capture on lo: payloads, addresses and order, the
provider's datagram statuses as exceptions, cancellation and close, bad input."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from collections.abc import Iterator

import pytest
from aio_helpers import Run, in_thread, loop_fixture

import pywsk.aio
from pywsk.errors import (
    NtStatusError,
    RequestCancelledError,
    SocketClosedError,
    WskConnectionRefusedError,
)
from pywsk.nt import NTSTATUS
from pywsk.testing.udpcapture import UdpCapture

run = loop_fixture()
WAIT = 10.0
HOSTS: dict[int, str] = {socket.AF_INET: "127.0.0.1", socket.AF_INET6: "::1"}


@pytest.fixture(params=[socket.AF_INET, socket.AF_INET6], ids=["ipv4", "ipv6"])
def peer(request: pytest.FixtureRequest) -> Iterator[socket.socket]:
    sock = socket.socket(request.param, socket.SOCK_DGRAM)
    sock.bind((HOSTS[request.param], 0))
    sock.settimeout(WAIT)
    yield sock
    sock.close()


def dead_port(family: int) -> tuple[str, int]:
    """An address where nothing listens (bound, then closed: the kernel answers ICMP)."""
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind((HOSTS[family], 0))
        address: tuple[str, int] = s.getsockname()[:2]
    return address


def test_batches_both_ways_with_a_plain_peer(run: Run, peer: socket.socket) -> None:
    payloads = [b"datagram %02d" % n for n in range(20)]

    async def main() -> None:
        host = HOSTS[peer.family]
        async with await pywsk.aio.open_datagram(local=(host, 0)) as ep:
            await ep.send_many(payloads, peer.getsockname())
            got = [await in_thread(peer.recvfrom, 100) for _ in payloads]
            assert [d for d, _ in got] == payloads
            assert {a[:2] for _, a in got} == {ep.local_address[:2]}
            for payload in payloads:
                peer.sendto(payload, ep.local_address[:2])
            received: list[tuple[bytes, tuple[object, ...]]] = []
            while len(received) < len(payloads):
                received += await ep.receive_many()
            assert [d for d, _ in received] == payloads
            assert {a[:2] for _, a in received} == {peer.getsockname()[:2]}
            peer.sendto(b"one", ep.local_address[:2])
            data, address = await ep.receive_from()
            assert (data, address[:2]) == (b"one", peer.getsockname()[:2])

    run(main())


def test_a_fixed_peer_is_the_default_destination_and_the_only_source(
    run: Run, peer: socket.socket
) -> None:
    async def main() -> None:
        host = HOSTS[peer.family]
        remote = peer.getsockname()[:2]
        async with await pywsk.aio.open_datagram(local=(host, 0), remote=remote) as ep:
            assert ep.remote_address is not None
            assert ep.remote_address[:2] == remote
            await ep.send_to(b"to the fixed peer")
            assert (await in_thread(peer.recvfrom, 100))[0] == b"to the fixed peer"
            with socket.socket(peer.family, socket.SOCK_DGRAM) as stranger:
                stranger.sendto(b"not from the peer", ep.local_address[:2])
                peer.sendto(b"from the peer", ep.local_address[:2])
                data, address = await ep.receive_from()
            assert (data, address[:2]) == (b"from the peer", remote)

    run(main())


def test_port_unreachable_is_reported_once_to_the_next_receive(run: Run) -> None:
    async def main() -> None:
        async with await pywsk.aio.open_datagram(local=("127.0.0.1", 0)) as ep:
            await ep.send_to(b"to nobody", dead_port(socket.AF_INET))
            with pytest.raises(WskConnectionRefusedError) as caught:
                await asyncio.wait_for(ep.receive_from(), WAIT)
            assert caught.value.status == NTSTATUS.STATUS_PORT_UNREACHABLE
            # Reported once: the socket goes on working.
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
                other.sendto(b"after", ep.local_address)
                data, _ = await asyncio.wait_for(ep.receive_from(), WAIT)
            assert data == b"after"

    run(main())


def test_a_send_that_meets_an_icmp_error_keeps_it_for_the_receive(run: Run) -> None:
    async def main() -> None:
        async with await pywsk.aio.open_datagram(local=("127.0.0.1", 0)) as ep:
            await ep.send_to(b"first", dead_port(socket.AF_INET))
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
                peer.bind(("127.0.0.1", 0))
                peer.settimeout(WAIT)
                # Give the ICMP error time to be queued: wait for a datagram sent after it.
                await ep.send_to(b"second", peer.getsockname())  # sent despite the error
                assert (await in_thread(peer.recvfrom, 100))[0] == b"second"
            with pytest.raises(WskConnectionRefusedError):
                await asyncio.wait_for(ep.receive_from(), WAIT)

    run(main())


def test_truncation_and_oversize(run: Run, peer: socket.socket) -> None:
    async def main() -> None:
        async with await pywsk.aio.open_datagram(local=(HOSTS[peer.family], 0)) as ep:
            peer.sendto(b"x" * 100, ep.local_address[:2])
            with pytest.raises(NtStatusError) as caught:
                await ep.receive_from(10)
            assert caught.value.status == NTSTATUS.STATUS_BUFFER_OVERFLOW
            assert caught.value.partial == b"x" * 10  # type: ignore[attr-defined]
            assert caught.value.address[:2] == peer.getsockname()[:2]  # type: ignore[attr-defined]
            with pytest.raises(NtStatusError) as oversize:
                await ep.send_to(b"y" * 70_000, peer.getsockname())
            assert oversize.value.status == NTSTATUS.STATUS_INVALID_BUFFER_SIZE

    run(main())


def test_cancelled_receive_loses_nothing_and_close_cancels_a_waiting_one(run: Run) -> None:
    async def main() -> None:
        ep = await pywsk.aio.open_datagram(local=("127.0.0.1", 0))
        waiting = asyncio.ensure_future(ep.receive_from())
        await asyncio.sleep(0)  # let it start waiting
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.sendto(b"kept", ep.local_address)
            assert (await asyncio.wait_for(ep.receive_from(), WAIT))[0] == b"kept"
        pending = asyncio.ensure_future(ep.receive_from())
        await asyncio.sleep(0)
        await ep.aclose()
        with pytest.raises(RequestCancelledError) as cancelled:
            await pending
        assert cancelled.value.status == NTSTATUS.STATUS_CANCELLED
        with pytest.raises(SocketClosedError):
            await ep.receive_from()
        with pytest.raises(SocketClosedError):
            await ep.send_to(b"late", ("127.0.0.1", 9))
        await ep.aclose()  # a second close does nothing

    run(main())


def test_bad_input_raises_clear_errors(run: Run) -> None:
    async def main() -> None:
        async with await pywsk.aio.open_datagram(local=("127.0.0.1", 0)) as ep:
            with pytest.raises(NtStatusError) as family:
                await ep.send_to(b"x", ("::1", 9))
            assert family.value.status == NTSTATUS.STATUS_INVALID_PARAMETER
            with pytest.raises(NtStatusError) as nowhere:
                await ep.send_to(b"x")
            assert nowhere.value.status == NTSTATUS.STATUS_INVALID_PARAMETER
            with pytest.raises(TypeError):
                await ep.send_to("text", ("127.0.0.1", 9))
            with pytest.raises(ValueError):
                await ep.receive_from(0)
        with pytest.raises(NtStatusError) as mixed:
            await pywsk.aio.open_datagram(local=("127.0.0.1", 0), remote=("::1", 9))
        assert mixed.value.status == NTSTATUS.STATUS_INVALID_PARAMETER

    run(main())


@pytest.mark.skipif(shutil.which("socat") is None, reason="needs socat")
@pytest.mark.skipif(not UdpCapture.available(), reason="needs root and tcpdump")
def test_socat_echo_matches_the_capture(run: Run) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    echo = subprocess.Popen(
        ["socat", "-T", "10", f"UDP4-RECVFROM:{port},bind=127.0.0.1,fork", "PIPE"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    payloads = [b"to socat %d" % n for n in range(5)]
    try:
        with UdpCapture([port]) as wire:

            async def main() -> tuple[str, int]:
                async with await pywsk.aio.open_datagram(local=("127.0.0.1", 0)) as ep:
                    local: tuple[str, int] = ep.local_address
                    for payload in payloads:  # one at a time: socat forks per datagram
                        for _attempt in range(50):  # until socat is bound (bounded)
                            await ep.send_to(payload, ("127.0.0.1", port))
                            try:
                                data, source = await asyncio.wait_for(ep.receive_from(), 0.2)
                                break
                            except (TimeoutError, WskConnectionRefusedError):
                                continue
                        assert (data, source[1]) == (payload, port)
                    return local

            local = run(main())
            wire.sync()
            sent = wire.between(local, ("127.0.0.1", port))
            echoed = wire.between(("127.0.0.1", port), local)
    finally:
        echo.kill()
        echo.wait(WAIT)
        assert echo.stderr is not None
        echo.stderr.close()
    assert [d.payload for d in echoed] == payloads
    assert set(payloads) <= {d.payload for d in sent}  # plus retries before socat was bound
