"""WireCapture: FIN versus RST on the wire, checked against the peer and against tcpdump."""

from __future__ import annotations

import errno
import re
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

from pywsk.testing import (
    LoopbackPeer,
    ReadToEnd,
    Segment,
    WaitFor,
    WireCapture,
    abort_with_rst,
    has_ipv6_loopback,
)
from pywsk.testing.segments import _flag_string
from pywsk.testing.segments import decode as _decode

WAIT = 5.0

F = TypeVar("F", bound=Callable[..., None])


def wire(test: F) -> F:
    """Mark a test that captures packets: ``root``, skipped without root or tcpdump."""
    skip = pytest.mark.skipif(not WireCapture.available(), reason="needs root and tcpdump")
    marked: F = pytest.mark.root(skip(test))
    return marked


HOSTS = [
    "127.0.0.1",
    pytest.param(
        "::1", marks=pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")
    ),
]


def connect(peer: LoopbackPeer) -> socket.socket:
    return socket.create_connection(peer.address, timeout=WAIT)


# --- on the wire and at the peer ----------------------------------------------------------


@wire
@pytest.mark.parametrize("host", HOSTS)
def test_shutdown_write_puts_a_fin_on_the_wire(host: str) -> None:
    with (
        LoopbackPeer([ReadToEnd()], host=host) as peer,
        WireCapture(peer.port) as cap,
        connect(peer) as client,
    ):
        port = client.getsockname()[1]
        client.sendall(b"request")
        client.shutdown(socket.SHUT_WR)
        fin = cap.wait_fin(from_port=port, timeout=WAIT)
        assert fin.src == (host, port)
        assert fin.dst == (host, peer.port)
        assert fin.flags in ("F.", "FP.")
        # The FIN comes after the data: its sequence number is ISN + 1 + len(data).
        syn = cap.syns(from_port=port)[0]
        assert (fin.seq - syn.seq) % 2**32 == 1 + len(b"request") - fin.length
        seen = peer.wait_end(WAIT)
        assert seen.end == "fin"
        assert seen.received == b"request"
        cap.sync()
        assert cap.rsts(from_port=port) == []


@wire
@pytest.mark.parametrize("host", HOSTS)
def test_connect_unspec_puts_an_rst_on_the_wire(host: str) -> None:
    with (
        LoopbackPeer([ReadToEnd()], host=host) as peer,
        WireCapture(peer.port) as cap,
        connect(peer) as client,
    ):
        port = client.getsockname()[1]
        client.sendall(b"partial")
        peer.wait_received(7, WAIT)
        abort_with_rst(client)
        rst = cap.wait_rst(from_port=port, timeout=WAIT)
        assert rst.flags == "R."
        assert rst.src == (host, port)
        seen = peer.wait_end(WAIT)
        assert seen.end == "rst"
        assert seen.received == b"partial"
        cap.sync()
        assert cap.fins(from_port=port) == []


@wire
def test_fin_then_rst_is_seen_in_order_on_the_wire_and_at_the_peer() -> None:
    go = threading.Event()
    with (
        LoopbackPeer([WaitFor(go), ReadToEnd()]) as peer,
        WireCapture(peer.port) as cap,
        connect(peer) as client,
    ):
        port = client.getsockname()[1]
        client.shutdown(socket.SHUT_WR)
        fin = cap.wait_fin(from_port=port, timeout=WAIT)
        abort_with_rst(client)
        rst = cap.wait_rst(from_port=port, timeout=WAIT)
        go.set()
        seen = peer.wait_end(WAIT)
        assert seen.end == "fin+rst"
        assert seen.end_errno == errno.EPIPE
        assert fin.time <= rst.time
        assert cap.segments.index(fin) < cap.segments.index(rst)
        # The RST carries the sequence number after the FIN.
        assert rst.seq == (fin.seq + 1) % 2**32


@wire
def test_start_is_race_free_the_first_syn_is_captured() -> None:
    with LoopbackPeer([], connections=3) as peer:
        for _ in range(3):
            _connect_right_after_start(peer)


def _connect_right_after_start(peer: LoopbackPeer) -> None:
    with WireCapture(peer.port) as cap, socket.socket() as client:
        # No wait of any kind between start() and the SYN.
        client.settimeout(WAIT)
        client.connect(peer.address)
        port = client.getsockname()[1]
        cap.sync()  # the SYN left inside connect(), so it is in by now
        assert [s.flags for s in cap.syns(from_port=port)] == ["S"]
        cap.wait_for(lambda s: s.sport == port and s.flags == ".", WAIT)
        assert cap.flags(from_port=port) == ["S", "."]
        assert cap.flags(to_port=port) == ["S."]


@wire
def test_sentinel_is_captured_but_never_recorded() -> None:
    with LoopbackPeer([]) as peer, WireCapture(peer.port) as cap:
        cap.sync()
        cap.sync()
    assert cap.segments == []
    # The raw stream holds the sentinels (start + 2 syncs + stop): UDP, never a Segment.
    assert cap.pcap_bytes().count(b"pywsk-wirecapture-sentinel:") >= 3


@wire
def test_wait_for_is_bounded_and_explains_itself() -> None:
    with LoopbackPeer([]) as peer, WireCapture(peer.port) as cap, connect(peer):
        cap.sync()
        started = time.monotonic()
        with pytest.raises(TimeoutError, match=r"0/1 matching segments") as info:
            cap.wait_for(lambda s: s.rst, timeout=0.2)
        assert time.monotonic() - started < 2.0
        assert "[S]" in str(info.value)


@wire
def test_wait_for_count_and_after_stop() -> None:
    with LoopbackPeer([]) as peer:
        with WireCapture(peer.port) as cap, connect(peer) as client:
            port = client.getsockname()[1]
            # The handshake: SYN and ACK from the client.
            second = cap.wait_for(lambda s: s.sport == port, timeout=WAIT, count=2)
            assert second.flags == "."
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="capture stopped"):
            cap.wait_for(lambda s: s.rst, timeout=WAIT)
        assert time.monotonic() - started < 1.0
        cap.stop()  # idempotent


@wire
def test_describe_names_the_two_ends() -> None:
    with (
        LoopbackPeer([ReadToEnd()]) as peer,
        WireCapture(peer.port) as cap,
        connect(peer) as client,
    ):
        port = client.getsockname()[1]
        client.shutdown(socket.SHUT_WR)
        peer.wait_end(WAIT)
        cap.wait_fin(from_port=port, timeout=WAIT)
    lines = cap.describe()
    fin_line = next(line for line in lines if "[F.]" in line)
    assert re.fullmatch(
        rf"\+ *[0-9.]+ ms client:{port} -> peer:{peer.port} \[F\.\] seq=1 ack=1 len=0",
        fin_line,
    )
    assert lines[0].endswith(f"client:{port} -> peer:{peer.port} [S] seq=0 len=0")
    named = cap.describe({port: "wsk", peer.port: "srv"})
    assert f"wsk:{port} -> srv:{peer.port}" in named[0]


@wire
def test_decoder_agrees_with_tcpdump_itself() -> None:
    """Re-read our pcap with ``tcpdump -r``: same flags, seq, ack, length, ports."""
    hosts = ["127.0.0.1", "::1"] if has_ipv6_loopback() else ["127.0.0.1"]
    peers = [LoopbackPeer([ReadToEnd()], host=h).start() for h in hosts]
    try:
        with WireCapture([p.port for p in peers]) as cap:
            for peer in peers:
                with connect(peer) as client:
                    client.sendall(b"a" * 3000)
                    client.shutdown(socket.SHUT_WR)
                    peer.wait_end(WAIT)
                    abort_with_rst(client)
                    cap.wait_rst(from_port=client.getsockname()[1], timeout=WAIT)
    finally:
        for peer in peers:
            peer.close()
    text = subprocess.run(
        ["tcpdump", "-r", "-", "-nn", "-S", "-tt", "tcp"],
        input=cap.pcap_bytes(),
        capture_output=True,
        timeout=WAIT,
        check=True,
    ).stdout.decode()
    theirs = [_parse_tcpdump_line(line) for line in text.splitlines()]
    assert len(theirs) == len(cap.segments) >= 10
    for s, (sport, dport, flags, seq, ack, length) in zip(cap.segments, theirs, strict=True):
        assert (s.sport, s.dport, s.flags, s.length) == (sport, dport, flags, length)
        assert s.seq == seq or (seq is None and s.length == 0 and s.flags == ".")
        assert (s.ack if s.ack_flag else None) == ack


_LINE = re.compile(
    r"^\d+\.\d+ IP6? \S+\.(\d+) > \S+\.(\d+): Flags \[([^\]]+)\], "
    r"(?:seq (\d+)(?::\d+)?, )?(?:ack (\d+), )?win \d+, (?:options \[[^\]]*\], )?length (\d+)"
)


def _parse_tcpdump_line(line: str) -> tuple[int, int, str, int | None, int | None, int]:
    match = _LINE.match(line)
    assert match, line
    sport, dport, flags, seq, ack, length = match.groups()
    return (
        int(sport),
        int(dport),
        flags,
        int(seq) if seq is not None else None,
        int(ack) if ack is not None else None,
        int(length),
    )


# --- pure decoding (no capture needed) -----------------------------------------------------


@pytest.mark.parametrize(
    ("bits", "letters"),
    [
        (0x02, "S"),
        (0x12, "S."),
        (0x10, "."),
        (0x18, "P."),
        (0x11, "F."),
        (0x19, "FP."),
        (0x04, "R"),
        (0x14, "R."),
        (0xC2, "SEW"),
        (0x00, "none"),
    ],
)
def test_flag_letters_follow_tcpdump(bits: int, letters: str) -> None:
    assert _flag_string(bits) == letters


def _tcp(sport: int, dport: int, seq: int, ack: int, flags: int, payload: bytes) -> bytes:
    return struct.pack("!HHIIHHHH", sport, dport, seq, ack, (5 << 12) | flags, 512, 0, 0) + payload


def test_decode_ethernet_ipv4() -> None:
    tcp = _tcp(40012, 5000, 100, 200, 0x19, b"xyz")
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0, 64, 6, 0,
                     socket.inet_aton("127.0.0.1"), socket.inet_aton("127.0.0.2"))  # fmt: skip
    frame = b"\0" * 12 + b"\x08\x00" + ip + tcp
    segment = _decode(1, frame, len(frame), 1.5, sentinel_port=-1)
    assert segment == Segment(
        1.5, ("127.0.0.1", 40012), ("127.0.0.2", 5000), "FP.", 100, 200, 3, 512
    )
    assert isinstance(segment, Segment)
    assert (segment.fin, segment.psh, segment.ack_flag, segment.rst) == (True, True, True, False)


def test_decode_linux_sll2_ipv6_truncated_capture() -> None:
    tcp = _tcp(443, 50000, 7, 0, 0x04, b"")
    ip = struct.pack("!IHBB16s16s", 6 << 28, len(tcp) + 1000, 6, 64,
                     socket.inet_pton(socket.AF_INET6, "::1"),
                     socket.inet_pton(socket.AF_INET6, "::1"))  # fmt: skip
    frame = b"\x86\xdd" + b"\0" * 18 + ip + tcp  # 1000 payload bytes not captured
    segment = _decode(276, frame, len(frame) + 1000, 0.0, sentinel_port=-1)
    assert isinstance(segment, Segment)
    assert (segment.src, segment.flags, segment.length) == (("::1", 443), "R", 1000)


def test_decode_ignores_what_is_not_tcp() -> None:
    assert _decode(1, b"\0" * 12 + b"\x08\x06" + b"\0" * 28, 42, 0.0, sentinel_port=-1) is None
    assert _decode(999, b"\0" * 60, 60, 0.0, sentinel_port=-1) is None
