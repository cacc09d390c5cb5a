"""PacketDropper: real kernel packet loss on loopback, and healing it."""

from __future__ import annotations

import errno
import socket
import subprocess
import threading
import time

import pytest

from pywsk.testing import (
    CLOSE,
    LoopbackPeer,
    PacketDropper,
    Read,
    ReadToEnd,
    Segment,
    Send,
    WaitFor,
    WireCapture,
    set_user_timeout,
    tcp_state,
)

WAIT = 5.0

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(
        not (PacketDropper.available() and WireCapture.available()),
        reason="needs root, nft and tcpdump",
    ),
]


def _tables() -> str:
    return subprocess.run(
        ["nft", "list", "tables"], capture_output=True, text=True, timeout=WAIT, check=True
    ).stdout


@pytest.mark.parametrize("hook", ["input", "output"])
def test_dropped_syn_makes_connect_time_out_and_heal_restores_it(hook: str) -> None:
    with (
        LoopbackPeer([ReadToEnd()]) as peer,
        WireCapture(peer.port) as cap,
        PacketDropper(hook="input" if hook == "input" else "output") as dropper,
    ):
        dropper.drop(peer.port, "to")
        assert dropper.dropping == [peer.port]
        with socket.socket() as client:
            client.settimeout(0.5)
            with pytest.raises(TimeoutError):
                client.connect(peer.address)
            port = client.getsockname()[1]
        assert dropper.dropped_packets() >= 1
        cap.sync()
        # On the input hook the SYN was on the wire and lost; on output it never left.
        syns = cap.syns(from_port=port)
        assert len(syns) >= 1 if hook == "input" else syns == []

        dropper.heal()
        assert dropper.dropping == []
        with socket.create_connection(peer.address, timeout=WAIT) as client:
            client.sendall(b"after heal")
            client.shutdown(socket.SHUT_WR)
            seen = peer.wait_end(WAIT)
        assert (seen.end, seen.received) == ("fin", b"after heal")


def test_dropped_data_is_retransmitted_and_arrives_after_heal() -> None:
    with (
        LoopbackPeer([ReadToEnd()]) as peer,
        WireCapture(peer.port) as cap,
        PacketDropper() as dropper,
        socket.create_connection(peer.address, timeout=WAIT) as client,
    ):
        port = client.getsockname()[1]
        peer.wait_accepted(WAIT)
        dropper.drop(peer.port)

        client.sendall(b"lost at first")

        def data_from_client(s: Segment) -> bool:
            return s.sport == port and s.length > 0

        # The original and one retransmission (after the ~200 ms RTO), both dropped.
        first = cap.wait_for(data_from_client, WAIT)
        again = cap.wait_for(data_from_client, WAIT, count=2)
        assert again.seq == first.seq
        assert peer.observation().received == b""

        dropper.heal(peer.port)
        seen = peer.wait_received(len(b"lost at first"), WAIT)
        assert seen.received == b"lost at first"
        client.shutdown(socket.SHUT_WR)
        assert peer.wait_end(WAIT).end == "fin"


def test_drop_from_port_only_blocks_that_direction() -> None:
    go = threading.Event()
    with (
        LoopbackPeer([Read(4), WaitFor(go), Send(b"pong"), ReadToEnd()]) as peer,
        WireCapture(peer.port) as cap,
        PacketDropper() as dropper,
        socket.create_connection(peer.address, timeout=WAIT) as client,
    ):
        port = client.getsockname()[1]
        peer.wait_accepted(WAIT)
        dropper.drop(peer.port, "from")

        client.sendall(b"ping")  # client -> peer still flows
        peer.wait_received(4, WAIT)

        go.set()  # peer -> client is lost: "pong" goes out twice and never arrives
        cap.wait_for(lambda s: s.sport == peer.port and s.length == 4, WAIT, count=2)

        dropper.heal()
        assert client.recv(4) == b"pong"
        assert cap.fins(from_port=port) == []


def test_user_timeout_gives_etimedout_while_dropping() -> None:
    with (
        LoopbackPeer([ReadToEnd()]) as peer,
        WireCapture(peer.port) as cap,
        PacketDropper() as dropper,
        socket.create_connection(peer.address, timeout=WAIT) as client,
    ):
        port = client.getsockname()[1]
        peer.wait_accepted(WAIT)
        set_user_timeout(client, 1000)
        dropper.drop(peer.port)
        started = time.monotonic()
        client.sendall(b"never acknowledged")
        with pytest.raises(TimeoutError) as info:
            client.recv(1)  # wakes with the connection's error, before WAIT
        elapsed = time.monotonic() - started
        assert info.value.errno == errno.ETIMEDOUT
        assert 0.5 < elapsed < 4.0
        assert tcp_state(client) == CLOSE

        # No RST is sent when the user timeout expires: the peer still sees nothing.
        cap.sync()
        assert cap.rsts(from_port=port) == []
        assert peer.observation().end == "open"
        assert peer.observation().received == b""


def test_table_is_deleted_on_exit_even_on_error() -> None:
    dropper = PacketDropper()

    def fail_while_dropping() -> None:
        with dropper:
            dropper.drop(9)
            assert dropper.table in _tables()
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail_while_dropping()
    assert dropper.table not in _tables()
    dropper.close()  # idempotent


def test_stale_tables_of_dead_processes_are_removed() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait(timeout=WAIT)
    stale = f"pywsk_test_{dead.pid}_1"
    subprocess.run(["nft", "add", "table", "inet", stale], timeout=WAIT, check=True)
    try:
        assert stale in PacketDropper.remove_stale_tables()
    finally:
        subprocess.run(["nft", "delete", "table", "inet", stale], timeout=WAIT, check=False)
    assert stale not in _tables()


def test_argument_checks() -> None:
    with pytest.raises(ValueError, match="hook"):
        PacketDropper(hook="forward")  # type: ignore[arg-type]
    with PacketDropper() as dropper:
        with pytest.raises(ValueError, match="port"):
            dropper.drop(0)
        with pytest.raises(ValueError, match="direction"):
            dropper.drop(80, "sideways")  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="not started"):
        dropper.drop(80)
