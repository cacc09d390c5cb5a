"""``pywsk probe --udp``: send numbered datagrams to a UDP peer and report what came back.

What it does: :func:`run_udp_probe` opens a WSK datagram socket
(:class:`~pywsk.cli.udp_socket.WskDatagramSocket`), sends ``count`` datagrams carrying
pywsk's sequence header in WskSendMessages batches, and collects what the peer sends back
for at most ``timeout`` seconds.  The verdict depends on what the peer is expected to be:

* ``echo``: every datagram comes back unchanged - lost, altered, duplicated and reordered
  echoes are counted from the headers;
* ``sink``: nothing comes back and no ICMP error arrives;
* ``source``: our datagrams are a request; the peer's stream comes back, and its loss and
  reordering are counted when it carries pywsk's header (``pywsk serve --udp --mode
  source`` does), "not judged" otherwise.

An ICMP port unreachable (STATUS_PORT_UNREACHABLE from a WskReceiveFrom) makes the outcome
``unreachable``.  With a capture (root and tcpdump) the datagrams sent and received are
reconciled with the wire; a difference makes the outcome ``disagrees``.

What it refuses: to call a peer that sent nothing an echo (deviation) or a sink that was
never reached OK - a sink's OK needs our datagrams to have left (a failed send makes the
run inconclusive).

What always holds: every wait is bounded; the socket is closed through WskCloseSocket.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Any, Literal

from ..nt import status_name
from ..testing.udpcapture import UdpCapture
from .udp_report import HEADER_SIZE, UdpReport, analyse, reconcile, sequence_of, sequenced
from .udp_socket import WskDatagramError, WskDatagramSocket

__all__ = ["UdpProbeOptions", "run_udp_probe"]

PeerKind = Literal["echo", "sink", "source"]
#: A source's stream is over when nothing more arrived for this long (within --timeout).
QUIET = 0.5


@dataclass(frozen=True)
class UdpProbeOptions:
    host: str
    port: int
    count: int = 10
    size: int = 64
    peer: PeerKind = "echo"
    timeout: float = 5.0
    wire: Literal["auto", "capture", "state"] = "auto"


def run_udp_probe(options: UdpProbeOptions) -> UdpReport:
    """One probe run (see the module's documentation)."""
    target = _resolve(options.host, options.port)
    title = f"probe --udp {target[0]}:{target[1]} ({options.peer})"
    capture = None
    if options.wire == "capture" or (options.wire == "auto" and UdpCapture.available()):
        capture = UdpCapture([target[1]])
    try:
        wildcard = "::" if ":" in target[0] else "0.0.0.0"
        sock = WskDatagramSocket(wildcard, 0)
        try:
            report = _exchange(sock, target, options, title)
        finally:
            sock.close()  # stops receiving: later datagrams are not ours to count
        stopped_at = time.time()
        if capture is not None:
            reconcile(report, capture, sock.local, target, report.facts["sent"],
                      report.facts["received"], stopped_at)  # fmt: skip
        else:
            report.claim("no capture ran", "needs root and tcpdump; counts are ours only")
        return report
    finally:
        if capture is not None:
            capture.stop()


def _resolve(host: str, port: int) -> tuple[str, int]:
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise WskDatagramError(f"resolving {host}", 0xC0000225) from exc  # STATUS_NOT_FOUND
    address = info[0][4]
    return (str(address[0]), int(address[1]))


def _exchange(
    sock: WskDatagramSocket, target: tuple[str, int], options: UdpProbeOptions, title: str
) -> UdpReport:
    size = max(options.size, HEADER_SIZE)
    payloads = [sequenced(n, options.count, size) for n in range(options.count)]
    facts: dict[str, Any] = {"target": list(target), "peer": options.peer, "size": size}
    started = time.monotonic()
    try:
        sent, sent_bytes = sock.send(payloads, target)
    except WskDatagramError as exc:
        report = UdpReport(title, "inconclusive", f"our datagrams did not leave: {exc}")
        report.facts.update(facts, sent=0, received=0)
        report.claim(f"WskSendMessages failed: {status_name(exc.status)}", "its IRP's status")
        return report
    sent_at = time.monotonic()

    def from_target() -> list[Any]:
        return [a for a in sock.inbox if a.sender[:2] == target]

    def done() -> bool:
        if sock.errors:
            return True
        if options.peer == "echo":
            return len(from_target()) >= options.count
        if options.peer == "source":
            arrived = from_target()
            return bool(arrived) and time.monotonic() - arrived[-1].at >= QUIET
        return False

    deadline = sent_at + options.timeout
    while not done() and time.monotonic() < deadline:
        sock.wait_for(done, min(QUIET / 2, deadline - time.monotonic()))
    with sock.cond:
        arrivals = from_target()
        elsewhere = len(sock.inbox) - len(arrivals)
        errors = list(sock.errors)
    received = [a.payload for a in arrivals]
    facts.update(sent=sent, sent_bytes=sent_bytes, received=len(received))
    facts["received_bytes"] = sum(len(p) for p in received)
    report = UdpReport(title, "ok", "")
    report.facts.update(facts)
    report.claim(
        f"sent {sent} datagram(s) of {size} B ({sent_bytes} B)",
        "WskSendMessages IRPs completed with STATUS_SUCCESS",
    )
    waited = time.monotonic() - started
    report.claim(
        f"received {len(received)} datagram(s) from the peer in {waited:.2f} s"
        + (f", {elsewhere} from other addresses (not counted)" if elsewhere else ""),
        "WskReceiveFrom completions",
    )
    unreachable = [s for s, _ in errors if s == 0xC000023F]
    if unreachable:
        report.outcome = "unreachable"
        report.verdict = "the peer's port is unreachable (ICMP): nothing listens there"
        report.claim("STATUS_PORT_UNREACHABLE", "a WskReceiveFrom completed with it")
        return report
    if errors:
        names = ", ".join(sorted({status_name(s) for s, _ in errors}))
        report.claim(f"receive errors: {names}", "WskReceiveFrom completions")
    _judge(report, options, payloads, received)
    return report


def _judge(
    report: UdpReport, options: UdpProbeOptions, payloads: list[bytes], received: list[bytes]
) -> None:
    stats = analyse(received)
    report.facts["sequence"] = stats.as_dict()
    if options.peer == "sink":
        if received:
            report.outcome = "deviation"
            report.verdict = f"a sink answered: {len(received)} datagram(s) came back"
        else:
            report.verdict = (
                f"nothing came back and no ICMP error within {options.timeout:g} s, as from a sink"
            )
        return
    if options.peer == "echo":
        altered = sum(
            1 for p in received if (n := sequence_of(p)) is not None and p != payloads[n[0]]
        ) + sum(1 for p in received if sequence_of(p) is None)
        lost = options.count - stats.distinct
        report.facts["sequence"]["lost"] = lost
        report.facts["altered"] = altered
        report.claim(
            f"lost {lost}, reordered {stats.reordered}, duplicated {stats.duplicates}, "
            f"altered {altered}",
            "the sequence headers of the echoes",
        )
        if not received:
            report.outcome = "deviation"
            report.verdict = f"no echo within {options.timeout:g} s (the peer may not echo)"
        elif lost or altered or stats.reordered or stats.duplicates:
            report.outcome = "deviation"
            report.verdict = "the echoes are not our datagrams, each once and in order"
        else:
            report.verdict = f"all {options.count} datagram(s) echoed unchanged, in order"
        return
    # source
    if not received:
        report.outcome = "deviation"
        report.verdict = f"no datagram from the source within {options.timeout:g} s"
        return
    if stats.total is None:
        report.claim("loss and order not judged", "the datagrams carry no pywsk sequence header")
        report.verdict = f"the source sent {len(received)} datagram(s)"
        return
    report.claim(
        f"of the source's {stats.total}: lost {stats.lost}, reordered {stats.reordered}, "
        f"duplicated {stats.duplicates}",
        "the sequence headers",
    )
    if stats.lost or stats.reordered or stats.duplicates:
        report.outcome = "deviation"
        report.verdict = "the source's stream did not arrive whole and in order"
    else:
        report.verdict = f"the source's {stats.total} datagram(s) arrived whole and in order"
