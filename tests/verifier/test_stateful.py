"""Random sequences of WSK calls, cancels and disconnects on real sockets, with seeded faults.

Whatever the order, and whichever calls the fault scheduler pends, fails or delays:
every IRP completes exactly once, nothing hangs past a bound, the provider raises nothing
outside the documented paths, and no socket, descriptor or object is left behind.
"""

from __future__ import annotations

import contextlib
import os
import socket
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from pywsk import verifier
from pywsk.nt import IoCancelIrp, IrpState
from pywsk.testing.driver import Request, WskTestClient
from pywsk.testing.tcp import abort_with_rst
from pywsk.wsk import WSK_FLAG_ABORTIVE, WSK_FLAG_WAITALL, WSK_SOCKET

BOUND = 10.0


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class WskCalls(RuleBasedStateMachine):
    """One connection, a plain peer, and whatever calls hypothesis picks."""

    def __init__(self) -> None:
        super().__init__()
        self.wsk: WskTestClient | None = None
        self.sock: WSK_SOCKET | None = None
        self.peer: socket.socket | None = None
        self.closed = False
        self.fds_before = open_fds()

    @initialize(seed=st.integers(0, 2**16))
    def connect(self, seed: int) -> None:
        self.previous = verifier.enabled()
        self.wsk = WskTestClient()
        listener = socket.create_server(("127.0.0.1", 0))
        with listener:
            self.sock = self.wsk.connect(listener.getsockname())
            self.peer, _ = listener.accept()
        self.peer.setblocking(False)
        # Faults from here on (the connection itself is not what is under test).
        self.faults = verifier.FaultScheduler(seed=seed, pending=0.5, delay=0.3, call_failure=0.05)
        self.checker = verifier.enable(mode="raise", faults=self.faults, resource_warnings=False)

    @property
    def client(self) -> WskTestClient:
        assert self.wsk is not None
        return self.wsk

    def requests(self) -> list[Request]:
        return self.client.requests

    @precondition(lambda self: not self.closed)
    @rule(data=st.binary(min_size=1, max_size=4096))
    def send(self, data: bytes) -> None:
        assert self.sock is not None
        self.client.send(self.sock, data)

    @precondition(lambda self: not self.closed)
    @rule(size=st.integers(1, 4096), waitall=st.booleans())
    def receive(self, size: int, waitall: bool) -> None:
        assert self.sock is not None
        self.client.receive(self.sock, size, WSK_FLAG_WAITALL if waitall else 0)

    @precondition(lambda self: not self.closed)
    @rule(final=st.none() | st.binary(min_size=1, max_size=512))
    def graceful_disconnect(self, final: bytes | None) -> None:
        assert self.sock is not None
        self.client.disconnect(self.sock, final=final)

    @precondition(lambda self: not self.closed)
    @rule()
    def abortive_disconnect(self) -> None:
        assert self.sock is not None
        self.client.disconnect(self.sock, flags=WSK_FLAG_ABORTIVE)

    @rule(index=st.integers(0, 50))
    def cancel(self, index: int) -> None:
        pending = [r for r in self.requests() if not r.done and r.irp.state is IrpState.PENDING]
        if pending:
            IoCancelIrp(pending[index % len(pending)].irp)

    @rule(data=st.binary(min_size=1, max_size=4096))
    def peer_sends(self, data: bytes) -> None:
        assert self.peer is not None
        with contextlib.suppress(OSError):  # the connection may be gone: part of the sequence
            self.peer.send(data)

    @rule()
    def peer_reads(self) -> None:
        assert self.peer is not None
        with contextlib.suppress(OSError):
            self.peer.recv(1 << 20)

    @rule()
    def peer_finishes(self) -> None:
        assert self.peer is not None
        with contextlib.suppress(OSError):
            self.peer.shutdown(socket.SHUT_WR)

    @rule()
    def peer_resets(self) -> None:
        assert self.peer is not None
        with contextlib.suppress(OSError):
            abort_with_rst(self.peer)

    @precondition(lambda self: not self.closed)
    @rule()
    def close(self) -> None:
        assert self.sock is not None
        self.client.close_socket(self.sock)
        self.closed = True

    @invariant()
    def every_irp_completed_at_most_once(self) -> None:
        if self.wsk is not None:
            assert all(r.completions <= 1 for r in self.requests())

    def teardown(self) -> None:
        try:
            if self.wsk is not None:
                if not self.closed and self.sock is not None:
                    self.client.close_socket(self.sock)
                # After the close, every request has completed - exactly once.
                for request in self.requests():
                    request.wait(BOUND)
                    assert request.completions == 1, request
                self.client.close()
                assert self.checker.found == []
                assert [v for v in self.checker.leaks() if v.check.id == "WSK-008"] == []
        finally:
            if self.peer is not None:
                self.peer.close()
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
