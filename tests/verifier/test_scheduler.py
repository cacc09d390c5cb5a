"""The fault scheduler's reordering and cancel races, on real loopback connections.

Calls are issued in one go from a DPC, on the provider thread (as a server driver issues
them from a DPC, an event callback or a completion routine), so that every completion the
scheduler holds is held at the same time and its decisions depend on the seed alone.  Then
the test thread waits, with a bound, for every completion, and checks:

* ``reorder``: across sockets the completion order differs from the issue order, and on
  each socket sends complete in issue order, and so do receives, each with its own data;
* ``cancel_race``: both outcomes happen, each IRP completes exactly once, and its status
  agrees with what IoCancelIrp returned - STATUS_CANCELLED only after a TRUE, and only for a
  result with no effect;
* the same seed gives the same decisions.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from pywsk import verifier
from pywsk.client import allocate_buffer
from pywsk.nt import (
    IRP,
    STATUS_CANCELLED,
    STATUS_CONNECTION_ABORTED,
    STATUS_MORE_PROCESSING_REQUIRED,
    STATUS_PENDING,
    STATUS_SUCCESS,
    ExFreePoolWithTag,
    IoAllocateIrp,
    IoCancelIrp,
    IoFreeIrp,
    IoFreeMdl,
    IoSetCompletionRoutine,
)
from pywsk.testing.driver import WskTestClient, run_in_dpc
from pywsk.wsk import WSK_FLAG_ABORTIVE, WSK_FLAG_WAITALL, WSK_SOCKET

Listener = Callable[..., socket.socket]
BOUND = 10.0
CHUNK = 6  # bytes per send and per receive: b"s0:07;"


def scheduled(
    faults: verifier.FaultScheduler,
) -> contextlib.AbstractContextManager[verifier.Verifier]:
    """The verifier in raise mode with ``faults`` for the block; the suite's comes back."""
    return verifier.enabled_for("raise", faults=faults)


def in_dpc(body: Callable[[], None]) -> None:
    run_in_dpc(body, BOUND)


@dataclass
class Call:
    """One WSK call on its own IRP, and what its completion routine saw."""

    sock: int
    kind: str
    n: int
    irp: IRP
    pool: Any
    mdl: Any
    returned: int | None = None
    cancelled: bool | None = None  # IoCancelIrp's return value, when it was called
    status: int | None = None
    information: Any = None
    completions: int = 0
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def data(self) -> bytes:
        return bytes(self.pool[: self.information or 0])


class Batch:
    """Calls issued together on the provider thread; completions recorded in the order run."""

    def __init__(self) -> None:
        self.issued: list[Call] = []
        self.completed: list[Call] = []

    def _routine(self, _device: Any, irp: IRP, call: Call) -> int:
        call.completions += 1
        call.status = irp.IoStatus.Status
        call.information = irp.IoStatus.Information
        self.completed.append(call)
        call.done.set()
        return STATUS_MORE_PROCESSING_REQUIRED

    def _start(
        self, sock: WSK_SOCKET, index: int, kind: str, data: bytes | int, flags: int
    ) -> Call:
        irp = IoAllocateIrp(1, False)
        assert irp is not None
        pool, buf, _free = allocate_buffer(data, b"wskt")  # freed by free(), below
        n = sum(1 for c in self.issued if (c.sock, c.kind) == (index, kind))
        call = Call(index, kind, n, irp, pool, buf.Mdl)
        IoSetCompletionRoutine(irp, self._routine, call, True, True, True)
        self.issued.append(call)
        dispatch = WskTestClient.dispatch(sock)
        function = dispatch.WskSend if kind == "send" else dispatch.WskReceive
        call.returned = function(sock, buf, flags, irp)
        return call

    def send(self, sock: WSK_SOCKET, index: int, data: bytes) -> Call:
        return self._start(sock, index, "send", data, 0)

    def receive(self, sock: WSK_SOCKET, index: int, size: int = CHUNK) -> Call:
        return self._start(sock, index, "receive", size, WSK_FLAG_WAITALL)

    def run(self, body: Callable[[], None]) -> None:
        """Run ``body`` (it issues calls) in a DPC, then wait for every completion."""
        in_dpc(body)
        for call in self.issued:
            assert call.done.wait(BOUND), f"{call.kind} {call.n} on socket {call.sock}"

    def free(self) -> None:
        for call in self.issued:
            IoFreeIrp(call.irp)
            IoFreeMdl(call.mdl)
            ExFreePoolWithTag(call.pool, b"wskt")


def connections(
    wsk: WskTestClient, listener: Listener, count: int
) -> list[tuple[WSK_SOCKET, socket.socket]]:
    out = []
    for _ in range(count):
        lsock = listener()
        sock = wsk.connect(lsock.getsockname()[:2])
        peer, _ = lsock.accept()
        peer.settimeout(BOUND)
        out.append((sock, peer))
    return out


def chunk(kind: str, sock: int, n: int) -> bytes:
    data = f"{kind[0]}{sock}:{n:02d};".encode()
    assert len(data) == CHUNK
    return data


def read_exactly(peer: socket.socket, size: int) -> bytes:
    got = b""
    while len(got) < size:
        more = peer.recv(size - len(got))  # bounded by the peer's timeout
        assert more, "the connection ended early"
        got += more
    return got


def inversions(batch: Batch) -> list[tuple[Call, Call]]:
    """Pairs of calls that completed in the opposite order to the one they were issued in."""
    position = {id(call): i for i, call in enumerate(batch.issued)}
    order = batch.completed
    return [
        (a, b)
        for i, a in enumerate(order)
        for b in order[i + 1 :]
        if position[id(a)] > position[id(b)]
    ]


def run_reorder_batch(
    wsk: WskTestClient, listener: Listener, seed: int, receives: bool
) -> tuple[Batch, verifier.FaultScheduler]:
    """Three connections; eight sends (and receives) on each, interleaved, all held."""
    pairs = connections(wsk, listener, 3)
    per_socket = 8
    if receives:
        for index, (_sock, peer) in enumerate(pairs):
            peer.sendall(b"".join(chunk("receive", index, n) for n in range(per_socket)))
    faults = verifier.FaultScheduler(seed=seed, pending=1.0, reorder=0.5)
    batch = Batch()

    def body() -> None:
        for n in range(per_socket):
            for index, (sock, _peer) in enumerate(pairs):
                batch.send(sock, index, chunk("send", index, n))
                if receives:
                    batch.receive(sock, index)

    with scheduled(faults) as running:
        batch.run(body)
        assert running.found == []
    for index, (_sock, peer) in enumerate(pairs):
        sent = read_exactly(peer, per_socket * CHUNK)
        assert sent == b"".join(chunk("send", index, n) for n in range(per_socket))
        peer.close()
    return batch, faults


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_reorder_crosses_sockets_never_a_sockets_sends_or_receives(
    wsk: WskTestClient, listener: Listener, seed: int
) -> None:
    batch, faults = run_reorder_batch(wsk, listener, seed, receives=True)
    try:
        assert all(call.completions == 1 for call in batch.issued)
        assert all(call.status == STATUS_SUCCESS for call in batch.issued), batch.issued
        assert {call.returned for call in batch.issued} == {STATUS_PENDING}
        # Reordering happened, across sockets ...
        crossed = inversions(batch)
        assert any(a.sock != b.sock for a, b in crossed)
        assert any(kind == "reorder" for kind, _ in faults.decisions)
        # ... and never inside one socket's sends, or one socket's receives.
        assert not [(a, b) for a, b in crossed if (a.sock, a.kind) == (b.sock, b.kind)]
        for call in batch.issued:
            if call.kind == "receive":
                assert call.data == chunk("receive", call.sock, call.n)
    finally:
        batch.free()


def test_reorder_off_keeps_the_issue_order(wsk: WskTestClient, listener: Listener) -> None:
    pairs = connections(wsk, listener, 2)
    batch = Batch()

    def body() -> None:
        for n in range(6):
            for index, (sock, _peer) in enumerate(pairs):
                batch.send(sock, index, chunk("send", index, n))

    with scheduled(verifier.FaultScheduler(seed=1, pending=1.0)):
        batch.run(body)
    try:
        assert batch.completed == batch.issued
    finally:
        batch.free()
        for _sock, peer in pairs:
            peer.close()


def test_the_same_seed_gives_the_same_decisions(wsk: WskTestClient, listener: Listener) -> None:
    first = run_reorder_batch(wsk, listener, 11, receives=False)
    second = run_reorder_batch(wsk, listener, 11, receives=False)
    other = run_reorder_batch(wsk, listener, 12, receives=False)
    try:
        assert first[1].decisions == second[1].decisions
        assert ("reorder", "WskSend") in first[1].decisions
        order = [(c.sock, c.n) for c in first[0].completed]
        assert order == [(c.sock, c.n) for c in second[0].completed]
        assert first[1].decisions != other[1].decisions
    finally:
        for batch, _faults in (first, second, other):
            batch.free()


# --- cancel races -------------------------------------------------------------------------------


def run_cancel_batch(
    wsk: WskTestClient, listener: Listener, seed: int, cancel_race: float
) -> tuple[Batch, verifier.FaultScheduler]:
    """On an aborted connection, receives fail at once (STATUS_CONNECTION_ABORTED): no effect,
    so a cancel may win over them.  On a live one, sends succeed: a cancel never wins over
    them.  Every call is forced pending (its completion held) and then cancelled."""
    (dead, dead_peer), (live, live_peer) = connections(wsk, listener, 2)
    assert wsk.disconnect(dead, flags=WSK_FLAG_ABORTIVE).wait(BOUND).status == STATUS_SUCCESS
    faults = verifier.FaultScheduler(seed=seed, pending=1.0, cancel_race=cancel_race)
    batch = Batch()

    def body() -> None:
        for n in range(4):
            for call in (batch.receive(dead, 0), batch.send(live, 1, chunk("send", 1, n))):
                assert call.returned == STATUS_PENDING
                call.cancelled = IoCancelIrp(call.irp)
        batch.receive(dead, 0)  # not cancelled: its real status

    with scheduled(faults) as running:
        batch.run(body)
        assert running.found == []
    assert read_exactly(live_peer, 4 * CHUNK) == b"".join(chunk("send", 1, n) for n in range(4))
    dead_peer.close()
    live_peer.close()
    return batch, faults


@pytest.mark.parametrize("seed", range(4))
def test_a_cancel_races_a_held_completion_both_ways(
    wsk: WskTestClient, listener: Listener, seed: int
) -> None:
    batch, faults = run_cancel_batch(wsk, listener, seed, cancel_race=0.5)
    try:
        assert all(call.completions == 1 for call in batch.issued)
        for call in batch.issued:
            if call.cancelled is None:
                assert call.status == STATUS_CONNECTION_ABORTED
            elif call.kind == "send":  # it moved data: the completion always wins
                assert call.cancelled is True
                assert (call.status, call.information) == (STATUS_SUCCESS, CHUNK)
            else:
                assert call.cancelled is True
                assert call.status in (STATUS_CANCELLED, STATUS_CONNECTION_ABORTED)
                assert call.information == 0
        outcomes = [kind for kind, function in faults.decisions if function == "WskReceive"]
        cancelled = [c for c in batch.issued if c.status == STATUS_CANCELLED]
        assert outcomes.count("cancel-wins") == len(cancelled)
        assert outcomes.count("cancel-wins") + outcomes.count("completion-wins") == 4
        assert ("cancel-wins", "WskSend") not in faults.decisions
    finally:
        batch.free()


def test_both_outcomes_of_the_cancel_race_happen(wsk: WskTestClient, listener: Listener) -> None:
    statuses = set()
    for seed in range(4):
        batch, _faults = run_cancel_batch(wsk, listener, seed, cancel_race=0.5)
        statuses |= {c.status for c in batch.issued if c.kind == "receive" and c.cancelled}
        batch.free()
    assert statuses == {STATUS_CANCELLED, STATUS_CONNECTION_ABORTED}


def test_without_cancel_race_iocancelirp_finds_no_routine(
    wsk: WskTestClient, listener: Listener
) -> None:
    """A held completion is not cancelable then: FALSE, and the real status."""
    batch, faults = run_cancel_batch(wsk, listener, 0, cancel_race=0.0)
    try:
        assert all(call.completions == 1 for call in batch.issued)
        assert {c.cancelled for c in batch.issued if c.cancelled is not None} == {False}
        assert STATUS_CANCELLED not in {c.status for c in batch.issued}
        assert not [d for d in faults.decisions if d[0].endswith("-wins")]
    finally:
        batch.free()


def test_a_cancel_always_wins_at_one(wsk: WskTestClient, listener: Listener) -> None:
    batch, _faults = run_cancel_batch(wsk, listener, 0, cancel_race=1.0)
    try:
        for call in batch.issued:
            if call.kind == "receive" and call.cancelled:
                assert call.status == STATUS_CANCELLED
    finally:
        batch.free()


def test_the_same_seed_races_the_same_way(wsk: WskTestClient, listener: Listener) -> None:
    first = run_cancel_batch(wsk, listener, 5, cancel_race=0.5)
    second = run_cancel_batch(wsk, listener, 5, cancel_race=0.5)
    try:
        assert first[1].decisions == second[1].decisions
        assert [c.status for c in first[0].issued] == [c.status for c in second[0].issued]
    finally:
        first[0].free()
        second[0].free()


@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_the_new_knobs_are_probabilities(value: float) -> None:
    with pytest.raises(ValueError, match="reorder"):
        verifier.FaultScheduler(reorder=value)
    with pytest.raises(ValueError, match="cancel_race"):
        verifier.FaultScheduler(cancel_race=value)
