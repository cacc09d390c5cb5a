"""The disconnect contract (:func:`pywsk.testing.contract.check_disconnect_contract`) for
every layer: driver-style IRPs, pywsk.aio on asyncio and on uvloop, pywsk.trio, pywsk.sync.

Each scenario is its own test, so a failure names the layer and the scenario.  With root
and tcpdump the wire is checked too (FIN, its ACK, RST), else what the peer's socket saw.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import pytest
import uvloop
from contract_adapters import (
    LoopThread,
    TrioThread,
    aio_pair,
    driver_pair,
    layer_fixture,
    sync_pair,
    trio_pair,
)

from pywsk.testing.capture import WireCapture
from pywsk.testing.contract import (
    SCENARIOS,
    ContractFailure,
    Factory,
    check_disconnect_contract,
)

factory = layer_fixture()


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_disconnect_contract(factory: Factory, scenario: str) -> None:
    check_disconnect_contract(factory, scenarios=[scenario])


def test_the_suite_catches_a_close_that_is_not_graceful() -> None:
    """Not vacuous: a layer whose graceful disconnect is really a close (an RST) fails."""

    @contextlib.contextmanager
    def rude(small: bool) -> Iterator[tuple[object, object]]:
        with sync_pair(small) as (subject, peer):
            subject.disconnect = subject.abort  # type: ignore[method-assign]
            yield subject, peer

    with pytest.raises(ContractFailure, match="graceful"):
        check_disconnect_contract(rude, scenarios=["graceful"])  # type: ignore[arg-type]


@pytest.mark.root
@pytest.mark.skipif(not WireCapture.available(), reason="needs root and tcpdump")
def test_the_wire_check_catches_a_disconnect_that_returns_before_the_ack() -> None:
    """The wire part is not vacuous: a disconnect that returns as soon as it is issued
    (before the peer's ACK of our FIN) is caught from the capture alone."""

    @contextlib.contextmanager
    def hasty(small: bool) -> Iterator[tuple[object, object]]:
        with driver_pair(small) as (subject, peer):

            def disconnect() -> None:
                subject._client.disconnect(subject._sock)  # type: ignore[attr-defined]

            subject.disconnect = disconnect  # type: ignore[method-assign]
            yield subject, peer

    def first_failure() -> ContractFailure | None:
        for _ in range(20):  # the ACK may beat a hasty return now and then: try a few times
            try:
                check_disconnect_contract(hasty, scenarios=["graceful"])  # type: ignore[arg-type]
            except ContractFailure as exc:
                return exc
        return None

    failure = first_failure()
    assert failure is not None
    assert "before the peer acknowledged" in str(failure) or "before the ACK" in str(failure)


@pytest.mark.root
@pytest.mark.skipif(not WireCapture.available(), reason="needs root and tcpdump")
@pytest.mark.parametrize("flavour", ["asyncio", "uvloop", "trio"])
def test_the_native_front_ends_on_the_wire(flavour: str) -> None:
    """pywsk.aio and pywsk.trio run natively on their loops (no provider, no IRP): the
    graceful disconnect returns only after the peer's ACK of our FIN is on the wire, the
    abort is an RST, the peer's RST is told from a FIN - each checked from a capture (this
    test needs one: it is not run without)."""
    scenarios = ["graceful", "abortive", "peer_rst", "stuck_then_close"]
    if flavour == "trio":
        trio_thread = TrioThread()
        try:
            check_disconnect_contract(
                lambda small: trio_pair(trio_thread, small), scenarios=scenarios, capture=True
            )
        finally:
            trio_thread.close()
        return
    loop = LoopThread(asyncio.new_event_loop if flavour == "asyncio" else uvloop.new_event_loop)
    try:
        check_disconnect_contract(
            lambda small: aio_pair(loop, small), scenarios=scenarios, capture=True
        )
    finally:
        loop.close()
