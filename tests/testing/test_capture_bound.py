"""WireCapture's memory is bounded: a long transfer keeps a ring of segments, every SYN /
FIN / RST, and per-direction facts (pywsk.testing.flows) - the pcap goes to disk."""

from __future__ import annotations

import socket
import struct
import threading
from pathlib import Path

import pytest

from pywsk.testing import WireCapture, abort_with_rst
from pywsk.testing.flows import Flows
from pywsk.testing.segments import Segment

WAIT = 10.0
TOTAL = 48 * 1024 * 1024
RING = 64
NOTABLE = 16


def _sink(server: socket.socket, received: list[int], done: threading.Event) -> None:
    conn, _ = server.accept()
    with conn:
        conn.settimeout(WAIT)
        count = 0
        while chunk := conn.recv(1 << 16):
            count += len(chunk)
        received.append(count)
        done.set()
        # the client's FIN was read: answer with an RST (no FIN of ours)
        abort_with_rst(conn)


def _pcap_records(path: Path) -> int:
    data = path.read_bytes()
    offset, records = 24, 0
    while offset + 16 <= len(data):
        caplen = struct.unpack_from("<I", data, offset + 8)[0]
        offset += 16 + caplen
        records += 1
    return records


@pytest.mark.root
@pytest.mark.skipif(not WireCapture.available(), reason="needs root and tcpdump")
def test_a_long_transfer_keeps_a_bounded_capture(tmp_path: Path) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    received: list[int] = []
    done = threading.Event()
    sink = threading.Thread(target=_sink, args=(server, received, done), daemon=True)
    with server, WireCapture(ports=[port], ring=RING, notable=NOTABLE) as cap:
        sink.start()
        client = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        with client:
            ours = client.getsockname()[1]
            block = b"x" * (1 << 16)
            for _ in range(TOTAL // len(block)):
                client.sendall(block)
            client.shutdown(socket.SHUT_WR)
            assert done.wait(WAIT)
            cap.wait_rst(from_port=port, timeout=WAIT)
            cap.sync()
        sink.join(WAIT)
        kept = cap.segments
        total = cap.total
        mine, theirs = cap.flows.between(ours, port)
        pcap = tmp_path / "long.pcap"
        cap.save(pcap)
    assert received == [TOTAL]
    # far more went by than is kept; what is kept is the ring plus the SYN/FIN/RST
    assert total > 4 * (RING + NOTABLE)
    assert len(kept) <= RING + NOTABLE
    assert [s.flags for s in kept if s.syn] == ["S", "S."]
    assert any(s.fin and s.sport == ours for s in kept)
    assert any(s.rst and s.sport == port for s in kept)
    # the facts reports need survive: counts, bytes by sequence number, FIN / RST times
    assert mine is not None
    assert theirs is not None
    assert mine.segments + theirs.segments == total
    assert mine.data == TOTAL
    assert mine.payload >= TOTAL
    assert theirs.data == 0
    assert mine.fin_at is not None
    assert mine.fin_acked_at is not None
    assert mine.fin_acked_at >= mine.fin_at
    assert mine.rst_at is None
    assert theirs.rst_at is not None
    assert theirs.fin_at is None
    # the pcap on disk has every frame (plus the capture's own sentinel datagrams)
    assert _pcap_records(pcap) >= total


def _segment(at: float, src: int, dst: int, flags: str, seq: int, length: int = 0) -> Segment:
    return Segment(at, ("127.0.0.1", src), ("127.0.0.1", dst), flags, seq, 0, length)


def test_flows_keep_at_most_their_limit() -> None:
    flows = Flows(limit=2)
    for port in (1001, 1002, 1003):
        flows.add(_segment(1.0, port, 80, "S", 100))
    assert len(flows) == 2
    assert flows.dropped == 1
    assert flows.between(1001, 80) == (None, None)
    mine, theirs = flows.between(1003, 80)
    assert mine is not None
    assert theirs is None


def test_a_flow_counts_bytes_by_sequence_number() -> None:
    flows = Flows()
    flows.add(_segment(1.0, 5000, 80, "S", 999))
    flows.add(_segment(1.1, 5000, 80, "P.", 1000, 100))
    flows.add(_segment(1.2, 5000, 80, "P.", 1000, 100))  # a retransmission
    flows.add(_segment(1.3, 5000, 80, "FP.", 1100, 50))
    flow, _ = flows.between(5000, 80)
    assert flow is not None
    assert (flow.data, flow.payload, flow.segments) == (150, 250, 4)
    assert flow.fin_at == 1.3
    assert flow.fin_acked_at is None
    ack = Segment(1.4, ("127.0.0.1", 80), ("127.0.0.1", 5000), ".", 1, 1151, 0)
    flows.add(ack)
    assert flow.fin_acked_at == 1.4
