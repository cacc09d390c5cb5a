"""Random sequences of WSK calls, cancels and disconnects on real sockets, with seeded faults.

Whatever the order, and whichever calls the fault scheduler pends, fails, delays, reorders
or races against IoCancelIrp: every IRP completes exactly once, on each socket successful
sends complete in the order they were made and so do successful receives, nothing hangs
past a bound, the provider raises nothing outside the documented paths, and no socket,
descriptor or object is left behind.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from pywsk import verifier
from pywsk.nt import (
    STATUS_SUCCESS,
    IoCancelIrp,
    IrpState,
)
from pywsk.provider import subsystem
from pywsk.testing.driver import Request, WskTestClient, run_in_dpc
from pywsk.testing.tcp import abort_with_rst
from pywsk.wsk import WSK_FLAG_ABORTIVE, WSK_FLAG_WAITALL, WSK_SOCKET

BOUND = 10.0
CONNECTIONS = 2
which = st.integers(0, CONNECTIONS - 1)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def in_dpc(body: Callable[[], None]) -> None:
    run_in_dpc(body, BOUND)


class WskCalls(RuleBasedStateMachine):
    """Two connections, a plain peer for each, and whatever calls hypothesis picks."""

    def __init__(self) -> None:
        super().__init__()
        self.wsk: WskTestClient | None = None
        self.socks: list[WSK_SOCKET] = []
        self.peers: list[socket.socket] = []
        self.closed = [False] * CONNECTIONS
        #: (connection, kind, request) in the order the calls were made.
        self.issued: list[tuple[int, str, Request]] = []
        # The provider's own descriptors (its epoll, its wake-up eventfd) live as long as
        # the process: make them first, so that a first example run alone does not count them.
        subsystem.start(BOUND)
        self.fds_before = open_fds()

    @initialize(seed=st.integers(0, 2**16))
    def connect(self, seed: int) -> None:
        self.previous = verifier.enabled()
        self.wsk = WskTestClient()
        for _ in range(CONNECTIONS):
            listener = socket.create_server(("127.0.0.1", 0))
            with listener:
                self.socks.append(self.wsk.connect(listener.getsockname()))
                peer, _ = listener.accept()
            peer.setblocking(False)
            self.peers.append(peer)
        # Faults from here on (the connections themselves are not what is under test).
        self.faults = verifier.FaultScheduler(
            seed=seed,
            pending=0.5,
            delay=0.3,
            call_failure=0.05,
            reorder=0.5,
            cancel_race=0.5,
        )
        self.checker = verifier.enable(mode="raise", faults=self.faults, resource_warnings=False)

    @property
    def client(self) -> WskTestClient:
        assert self.wsk is not None
        return self.wsk

    def requests(self) -> list[Request]:
        return self.client.requests

    @rule(i=which, data=st.binary(min_size=1, max_size=4096))
    def send(self, i: int, data: bytes) -> None:
        if not self.closed[i]:
            self.issued.append((i, "send", self.client.send(self.socks[i], data)))

    @rule(i=which, size=st.integers(1, 4096), waitall=st.booleans())
    def receive(self, i: int, size: int, waitall: bool) -> None:
        if not self.closed[i]:
            flags = WSK_FLAG_WAITALL if waitall else 0
            request, _pool = self.client.receive(self.socks[i], size, flags)
            self.issued.append((i, "receive", request))

    @rule(i=which, final=st.none() | st.binary(min_size=1, max_size=512))
    def graceful_disconnect(self, i: int, final: bytes | None) -> None:
        if not self.closed[i]:
            self.client.disconnect(self.socks[i], final=final)

    @rule(i=which)
    def abortive_disconnect(self, i: int) -> None:
        if not self.closed[i]:
            self.client.disconnect(self.socks[i], flags=WSK_FLAG_ABORTIVE)

    @rule(
        calls=st.lists(
            st.tuples(which, st.sampled_from(["send", "receive", "cancel"]), st.integers(1, 512)),
            min_size=2,
            max_size=8,
        )
    )
    def burst(self, calls: list[tuple[int, str, int]]) -> None:
        """Calls made together in a DPC (on the provider thread): their held completions are
        there to reorder, and a cancel right after a call races its held completion."""
        made: list[Request] = []

        def body() -> None:
            for i, kind, size in calls:
                if kind == "cancel":
                    if made and made[-1].irp.state is IrpState.PENDING:
                        IoCancelIrp(made[-1].irp)
                elif not self.closed[i] and kind == "send":
                    made.append(self.client.send(self.socks[i], bytes(size)))
                    self.issued.append((i, kind, made[-1]))
                elif not self.closed[i]:
                    made.append(self.client.receive(self.socks[i], size)[0])
                    self.issued.append((i, kind, made[-1]))

        in_dpc(body)

    @rule(index=st.integers(0, 50))
    def cancel(self, index: int) -> None:
        pending = [r for r in self.requests() if not r.done and r.irp.state is IrpState.PENDING]
        if pending:
            IoCancelIrp(pending[index % len(pending)].irp)

    @rule(i=which, data=st.binary(min_size=1, max_size=4096))
    def peer_sends(self, i: int, data: bytes) -> None:
        with contextlib.suppress(OSError):  # the connection may be gone: part of the sequence
            self.peers[i].send(data)

    @rule(i=which)
    def peer_reads(self, i: int) -> None:
        with contextlib.suppress(OSError):
            self.peers[i].recv(1 << 20)

    @rule(i=which)
    def peer_finishes(self, i: int) -> None:
        with contextlib.suppress(OSError):
            self.peers[i].shutdown(socket.SHUT_WR)

    @rule(i=which)
    def peer_resets(self, i: int) -> None:
        with contextlib.suppress(OSError):
            abort_with_rst(self.peers[i])

    @rule(i=which)
    def close(self, i: int) -> None:
        if not self.closed[i]:
            self.client.close_socket(self.socks[i])
            self.closed[i] = True

    @invariant()
    def every_irp_completed_at_most_once(self) -> None:
        if self.wsk is not None:
            assert all(r.completions <= 1 for r in self.requests())

    @invariant()
    def sends_and_receives_keep_their_order_on_each_socket(self) -> None:
        for i in range(CONNECTIONS):
            for kind in ("send", "receive"):
                times = [
                    r.completed_at
                    for c, k, r in self.issued
                    if (c, k) == (i, kind)
                    and r.completed_at is not None
                    and r.status == STATUS_SUCCESS
                ]
                assert times == sorted(times), (i, kind)

    def teardown(self) -> None:
        try:
            if self.wsk is not None:
                for i, sock in enumerate(self.socks):
                    if not self.closed[i]:
                        self.client.close_socket(sock)
                # After the close, every request has completed - exactly once.
                for request in self.requests():
                    request.wait(BOUND)
                    assert request.completions == 1, request
                self.sends_and_receives_keep_their_order_on_each_socket()
                self.client.close()
                assert self.checker.found == []
                assert [v for v in self.checker.leaks() if v.check.id == "WSK-008"] == []
        finally:
            for peer in self.peers:
                peer.close()
            verifier.disable()
            if self.previous is not None:
                verifier.enable(
                    mode=self.previous.mode, resource_warnings=self.previous.resource_warnings
                )
        assert open_fds() <= self.fds_before


TestWskCalls = WskCalls.TestCase
TestWskCalls.settings = settings(
    max_examples=25,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_forced_pending_and_inline_paths_both_complete(seed: int, listener: Any) -> None:
    """The same client code sees inline completion and STATUS_PENDING, and works on both."""
    faults = verifier.FaultScheduler(seed=seed, pending=0.5)
    previous = verifier.enabled()
    verifier.enable(mode="raise", faults=faults, resource_warnings=False)
    try:
        with WskTestClient() as wsk:
            lsock = listener()
            sock = wsk.connect(lsock.getsockname()[:2])
            peer, _ = lsock.accept()
            sends = [wsk.send(sock, b"%03d" % i) for i in range(30)]
            for request in sends:
                request.wait(BOUND)
                assert request.status == 0
            assert {r.returned for r in sends} == {0, 0x103}  # both paths were taken
            got = b""
            while len(got) < 90:
                got += peer.recv(100)
            assert got == b"".join(b"%03d" % i for i in range(30))
            peer.close()
    finally:
        verifier.disable()
        if previous is not None:
            verifier.enable(mode=previous.mode, resource_warnings=previous.resource_warnings)


def test_a_stalled_graceful_disconnect_is_recovered_by_abort(listener: Any) -> None:
    previous = verifier.enabled()
    verifier.enable(
        mode="raise",
        faults=verifier.FaultScheduler(seed=0, pending=0.0, stall_graceful=True),
        resource_warnings=False,
    )
    try:
        with WskTestClient() as wsk:
            lsock = listener()
            sock = wsk.connect(lsock.getsockname()[:2])
            peer, _ = lsock.accept()
            disc = wsk.disconnect(sock)
            with pytest.raises(TimeoutError):
                disc.wait(0.3)
            assert wsk.disconnect(sock, flags=WSK_FLAG_ABORTIVE).returned == 0
            disc.wait(BOUND)
            assert disc.status == 0xC0000241  # STATUS_CONNECTION_ABORTED
            peer.close()
    finally:
        verifier.disable()
        if previous is not None:
            verifier.enable(mode=previous.mode, resource_warnings=previous.resource_warnings)


def test_allocation_failures_return_null(listener: Any) -> None:
    from pywsk.nt import IoAllocateIrp, IoAllocateMdl

    previous = verifier.enabled()
    verifier.enable(
        mode="collect",
        faults=verifier.FaultScheduler(seed=5, allocation_failure=1.0),
        resource_warnings=False,
    )
    try:
        assert IoAllocateIrp(1, False) is None
        assert IoAllocateMdl(bytearray(8), 8, False, False, None) is None
    finally:
        verifier.disable()
        if previous is not None:
            verifier.enable(mode=previous.mode, resource_warnings=previous.resource_warnings)
