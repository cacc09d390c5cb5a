"""``pywsk demo``'s datagram scenarios: WSK datagram semantics against an embedded UDP peer.

What it does: each scenario opens a WSK datagram socket
(:class:`~pywsk.cli.udp_socket.WskDatagramSocket`, its requests issued one by one here),
exchanges datagrams with a plain Linux UDP socket on 127.0.0.1 (:class:`UdpPeer`), and
fills a :class:`~pywsk.cli.timeline.Report`: every WSK call and the status its IRP
completed with, what the peer received, what the wire carried (a capture on lo when running
as root, reconciled with the report), and a verdict against the documented behaviour:

* ``udp-batch-echo``: a WskSendMessages batch leaves whole and in order; each WskReceiveFrom
  gets one echo, with the peer's address;
* ``udp-port-unreachable``: an ICMP port unreachable is reported once, to the next
  WskReceiveFrom, as STATUS_PORT_UNREACHABLE; the socket goes on working;
* ``udp-truncation``: a datagram longer than the receive's buffer completes it with
  STATUS_BUFFER_OVERFLOW, the bytes that fit, and MSG_TRUNC in ControlFlags.

What it refuses: to pass a scenario whose precondition did not happen (no ICMP error came
back - Linux rate-limits them - is inconclusive).

What always holds: every wait is bounded; the socket is closed and the peer stopped.
"""

from __future__ import annotations

import ctypes
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..nt import (
    STATUS_BUFFER_OVERFLOW,
    STATUS_PORT_UNREACHABLE,
    STATUS_SUCCESS,
    ExAllocatePoolWithTag,
    ExFreePoolWithTag,
    IoAllocateMdl,
    IoFreeMdl,
    MmBuildMdlForNonPagedPool,
    NonPagedPoolNx,
)
from ..testing.udpcapture import UdpCapture
from ..wsk import MSG_TRUNC, SOCKADDR_IN, WSK_BUF
from .timeline import Report, short_status
from .udp_socket import WskDatagramSocket
from .wire import WireMode

__all__ = ["UDP_SCENARIOS", "UdpScenario", "UdpPeer", "run_udp_scenario"]

WAIT = 5.0
_TAG = b"pwDm"


def _echo(data: bytes) -> list[bytes]:
    return [data]


def _silent(_data: bytes) -> list[bytes]:
    return []


class UdpPeer:
    """A plain UDP socket on a thread that records what it receives and sends back what
    ``answer(datagram)`` gives (default: the datagram itself)."""

    def __init__(
        self,
        answer: Callable[[bytes], list[bytes]] = _echo,
        log: Callable[[str], object] | None = None,
    ) -> None:
        self.log = log
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.address: tuple[str, int] = self.sock.getsockname()
        self.answer = answer
        self.received: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="udp-peer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, sender = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            self.received.append(data)
            if self.log is not None:
                self.log(f"recvfrom: {len(data)} B from {sender[0]}:{sender[1]}")
            for reply in self.answer(data):
                if self.log is not None:
                    self.log(f"sendto: {len(reply)} B back")
                self.sock.sendto(reply, sender)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(WAIT)
        self.sock.close()


@dataclass(frozen=True)
class UdpScenario:
    name: str
    title: str
    expected: str
    run: Callable[[Report, WskDatagramSocket, UdpPeer], None]
    echo: bool = True


class _Receive:
    """One WskReceiveFrom of ``size`` bytes, waited for (bounded)."""

    def __init__(self, report: Report, sock: WskDatagramSocket, size: int) -> None:
        pool = ExAllocatePoolWithTag(NonPagedPoolNx, size, _TAG)
        mdl = IoAllocateMdl(pool, size, False, False, None) if pool is not None else None
        if pool is None or mdl is None:
            raise MemoryError("no pool for a receive")
        try:
            MmBuildMdlForNonPagedPool(mdl)
            self.sender = SOCKADDR_IN()
            self.control_flags = ctypes.c_ulong(0)
            self.status, information = sock.try_call(
                sock.table.WskReceiveFrom, sock.sock, WSK_BUF(mdl, 0, size), 0, self.sender,
                None, None, self.control_flags, timeout=WAIT,
            )  # fmt: skip
            self.length = int(information or 0)
            returned, called, completed = sock.returned, sock.called_at, sock.completed_at
            self.data = bytes(pool[: self.length])
        finally:
            IoFreeMdl(mdl)
            ExFreePoolWithTag(pool, _TAG)
        flags = " MSG_TRUNC" if self.control_flags.value & MSG_TRUNC else ""
        report.timeline.record(
            "call",
            "client",
            f"WskReceiveFrom({size} B) -> {short_status(returned)}",
            status=returned,
            at=called,
        )
        report.timeline.record(
            "complete",
            "provider",
            f"WskReceiveFrom({size} B) -> {short_status(self.status)}"
            + (
                f", {self.length} B from {self.sender.to_tuple()[0]}:{self.sender.port}{flags}"
                if self.status in (STATUS_SUCCESS, STATUS_BUFFER_OVERFLOW)
                else ""
            ),
            status=self.status,
            length=self.length,
            at=completed,
        )


def _send(report: Report, sock: WskDatagramSocket, payloads: list[bytes], to: Any) -> int:
    status: int = STATUS_SUCCESS
    try:
        sock.send(payloads, to)
    except Exception as exc:  # a failed IRP: its status is the report's
        status = int(getattr(exc, "status", 0xC0000001))
    what = f"WskSendMessages({len(payloads)} datagram(s)) to {to[0]}:{to[1]}"
    report.timeline.record(
        "call", "client", f"{what} -> {short_status(sock.returned)}", status=sock.returned,
        at=sock.called_at,
    )  # fmt: skip
    report.timeline.record(
        "complete", "provider", f"{what}: IRP {short_status(status)}", status=status,
        at=sock.completed_at,
    )  # fmt: skip
    return status


def batch_echo(report: Report, sock: WskDatagramSocket, peer: UdpPeer) -> None:
    payloads = [b"datagram %02d of the batch" % n for n in range(8)]
    if _send(report, sock, payloads, peer.address) != STATUS_SUCCESS:
        report.problems.append("the WskSendMessages batch failed")
        return
    got = [_Receive(report, sock, 2048) for _ in payloads]
    if [r.data for r in got] != payloads:
        report.problems.append("the echoes are not the batch, whole and in order")
    if any(r.sender.to_tuple()[:2] != peer.address for r in got):
        report.problems.append("an echo's RemoteAddress is not the peer's")
    if peer.received != payloads:
        report.problems.append(f"the peer received {len(peer.received)} datagram(s), not the batch")
    report.facts.update(sent=len(payloads), received=sum(r.status == 0 for r in got))


def port_unreachable(report: Report, sock: WskDatagramSocket, peer: UdpPeer) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as closed:
        closed.bind(("127.0.0.1", 0))
        nowhere = closed.getsockname()
    if _send(report, sock, [b"to a closed port"], nowhere) != STATUS_SUCCESS:
        report.problems.append("WskSendTo failed")
        return
    first = _Receive(report, sock, 2048)
    if first.status != STATUS_PORT_UNREACHABLE:
        if first.status == 0xC0000120:  # STATUS_CANCELLED: nothing came within the wait
            report.inconclusive.append(
                "no ICMP error came back within the wait (Linux rate-limits them)"
            )
        else:
            report.problems.append(f"the receive completed {short_status(first.status)}")
        return
    _send(report, sock, [b"after the error"], peer.address)
    second = _Receive(report, sock, 2048)
    if second.status != STATUS_SUCCESS or second.data != b"after the error":
        report.problems.append("the error was reported more than once, or the socket stopped")
    report.facts.update(sent=2, received=int(second.status == STATUS_SUCCESS))


def truncation(report: Report, sock: WskDatagramSocket, peer: UdpPeer) -> None:
    payload = bytes(range(100))
    peer.sock.sendto(payload, sock.local[:2])
    report.timeline.peer(f"sendto: a {len(payload)}-byte datagram")
    got = _Receive(report, sock, 10)
    if got.status != STATUS_BUFFER_OVERFLOW:
        report.problems.append(f"completed {short_status(got.status)}, not BUFFER_OVERFLOW")
    if got.data != payload[:10]:
        report.problems.append("the bytes that fit are not the datagram's first ten")
    if not got.control_flags.value & MSG_TRUNC:
        report.problems.append("ControlFlags lacks MSG_TRUNC")
    report.facts.update(sent=0, received=1)


UDP_SCENARIOS: dict[str, UdpScenario] = {
    s.name: s
    for s in (
        UdpScenario(
            "udp-batch-echo",
            "A WskSendMessages batch and its echoes (datagram socket)",
            "the batch leaves whole and in order; each WskReceiveFrom completes STATUS_SUCCESS"
            " with one echo and the peer's address",
            batch_echo,
        ),
        UdpScenario(
            "udp-port-unreachable",
            "An ICMP port unreachable, reported to the next receive",
            "the next WskReceiveFrom completes STATUS_PORT_UNREACHABLE, once; the socket goes"
            " on working",
            port_unreachable,
        ),
        UdpScenario(
            "udp-truncation",
            "A datagram longer than the receive's buffer",
            "STATUS_BUFFER_OVERFLOW with the bytes that fit and MSG_TRUNC in ControlFlags; the"
            " rest of the datagram is gone",
            truncation,
            echo=False,
        ),
    )
}


def run_udp_scenario(name: str, wire: WireMode = "auto") -> Report:
    """Run one datagram scenario (never raises for a deviation)."""
    scenario = UDP_SCENARIOS[name]
    report = Report("demo", scenario.name, scenario.title, scenario.expected)
    peer = UdpPeer(_echo if scenario.echo else _silent, report.timeline.peer)
    capture = None
    sock = None
    try:
        if wire == "capture" or (wire == "auto" and UdpCapture.available()):
            capture = UdpCapture([peer.address[1]])
        report.timeline.t0 = time.time()  # the scenario starts now (the capture is up)
        sock = WskDatagramSocket("127.0.0.1", 0, receives=False)
        report.timeline.note(f"WSK datagram socket bound to 127.0.0.1:{sock.local[1]}")
        scenario.run(report, sock, peer)
    except Exception as exc:  # a scenario that breaks is a deviation, reported like one
        report.problems.append(f"scenario failed: {exc!r}")
    finally:
        if sock is not None:
            sock.close()
        peer.stop()
    report.peer = f"received {len(peer.received)} datagram(s)" + (
        ", echoed each" if scenario.echo else ""
    )
    if capture is not None:
        _reconcile(report, capture, sock, peer)
    else:
        report.wire_source = "none"
        report.wire_summary = "not observed: a capture needs root and tcpdump"
    return report


def _reconcile(
    report: Report, capture: UdpCapture, sock: WskDatagramSocket | None, peer: UdpPeer
) -> None:
    try:
        capture.sync()
        to_peer = [d for d in capture.datagrams if d.dst == peer.address]
        from_peer = [d for d in capture.datagrams if d.src == peer.address]
    finally:
        capture.stop()
    report.wire_source = "capture on lo"
    report.wire_summary = f"{len(to_peer)} datagram(s) to the peer, {len(from_peer)} from it"
    report.wire = [f"{d.src[0]}:{d.src[1]} > {d.dst[0]}:{d.dst[1]} {len(d.payload)} B" for d in (
        capture.datagrams)]  # fmt: skip
    if sock is not None and len(to_peer) != len(peer.received):
        report.disagreements.append(
            f"the peer received {len(peer.received)} datagram(s), the wire shows {len(to_peer)}"
        )
    sent = report.facts.get("sent")
    if report.name == "udp-batch-echo" and sent is not None and len(to_peer) != sent:
        report.disagreements.append(f"we report {sent} sent, the wire shows {len(to_peer)}")
