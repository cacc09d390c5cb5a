"""``pywsk demo``: the seed pages' disconnect behaviours, run against an embedded loopback peer.

What it does: each scenario registers a WSK client, connects a real socket to a plain Linux
socket peer on 127.0.0.1 (:class:`~pywsk.testing.peer.LoopbackPeer`), performs one of the
disconnects the two seed pages describe, and reports a timeline: every WSK call with the
status it returned, every IRP completion with its status and time, what went on the wire
(a tcpdump capture on ``lo`` when running as root, otherwise the kernel's TCP state - and it
says which), what the peer observed, and a one-line verdict against the documented
behaviour.

What it refuses: nothing; a scenario that deviates is reported, and the command's exit code
says so.

What always holds: every wait is bounded; every socket is closed and the client
deregistered at the end of each scenario, whatever happened.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..nt import (
    STATUS_CANCELLED,
    STATUS_CONNECTION_ABORTED,
    STATUS_INVALID_PARAMETER,
    STATUS_PENDING,
    STATUS_SUCCESS,
    Executive,
    KeInitializeEvent,
    KernelMode,
    KeWaitForSingleObject,
    NotificationEvent,
    status_name,
)
from ..samples import disconnect_socket as seed
from ..testing import tcp
from ..testing.capture import WireCapture
from ..testing.driver import Request, WskTestClient
from ..testing.peer import LoopbackPeer, PeerObservation, ReadToEnd, WaitFor
from ..wsk import WSK_FLAG_ABORTIVE, WSK_SOCKET

__all__ = ["SCENARIOS", "Report", "run_scenario"]

WAIT = 10.0


@dataclass
class Report:
    """What one scenario did and saw."""

    name: str
    title: str
    expected: str
    timeline: list[tuple[float, str]] = field(default_factory=list)
    wire: list[str] = field(default_factory=list)
    wire_source: str = ""
    peer: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def check(self, condition: bool, problem: str) -> None:
        if not condition:
            self.problems.append(problem)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "expected": self.expected,
            "ok": self.ok,
            "problems": self.problems,
            "timeline": [{"ms": round(t * 1e3, 3), "event": text} for t, text in self.timeline],
            "wire_source": self.wire_source,
            "wire": self.wire,
            "peer": self.peer,
        }


class _Run:
    """A scenario's WSK client, peer and capture, with a timeline of calls and completions."""

    def __init__(self, report: Report, peer: LoopbackPeer) -> None:
        self.report = report
        self.peer = peer
        self.wsk = WskTestClient()
        self.t0 = time.monotonic()
        self.capture: WireCapture | None = None
        self.sock: WSK_SOCKET | None = None
        self.client_port = 0
        self.requests: list[Request] = []

    def note(self, text: str, at: float | None = None) -> None:
        self.report.timeline.append(((at if at is not None else time.monotonic()) - self.t0, text))

    def issue(self, label: str, request: Request) -> Request:
        assert request.returned is not None
        self.note(f"{label} returned {status_name(request.returned)}", request.started_at)
        self.requests.append(request)
        return request

    def connect(self) -> WSK_SOCKET:
        if WireCapture.available():
            self.capture = WireCapture(ports=[self.peer.port]).start()
        sock = self.wsk.connect(self.peer.address)
        self.note("WskSocketConnect -> STATUS_SUCCESS (connected to the peer)")
        self.peer.wait_accepted(WAIT)
        self.client_port = self.peer.observation().client[1]
        self.sock = sock
        return sock

    def finish(self) -> PeerObservation:
        """Record completions, the wire and the peer; close what is still open."""
        for request in self.requests:
            if request.done and request.completed_at is not None:
                assert request.status is not None
                how = "after STATUS_PENDING" if request.pending_returned else "inline"
                self.note(
                    f"  IRP of {request.name} completed {status_name(request.status)}, "
                    f"Information={_info(request.information)} ({how})",
                    request.completed_at,
                )
        observation = self.peer.observation()
        self.report.peer = _describe_peer(observation)
        if self.capture is not None:
            self.capture.sync()
            self.report.wire_source = "tcpdump on lo"
            names = {self.client_port: "client", self.peer.port: "peer"}
            self.report.wire = self.capture.describe(names)
        elif self.sock is not None and self.sock in self.wsk.sockets:
            self.report.wire_source = "TCP state (packet capture needs root and tcpdump)"
            kernel = getattr(self.sock, "sock", None)
            if kernel is not None and kernel.fileno() >= 0:
                self.report.wire = [
                    f"client TCP state: {tcp.tcp_state_name(tcp.tcp_state(kernel))}"
                ]
        self.report.timeline.sort(key=lambda item: item[0])
        return observation

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.wsk.close()
        if self.capture is not None:
            self.capture.stop()
        self.peer.close()

    # --- checks against the wire -------------------------------------------------------------
    def wire_has(self, flag: str, from_client: bool = True, timeout: float = 2.0) -> bool:
        if self.capture is None:
            return True  # nothing to check it against; the peer's observation still is
        port = self.client_port if from_client else self.peer.port
        try:
            if flag == "F":
                self.capture.wait_fin(from_port=port, timeout=timeout)
            else:
                self.capture.wait_rst(from_port=port, timeout=timeout)
        except TimeoutError:
            return False
        return True

    def wire_lacks(self, flag: str) -> bool:
        if self.capture is None:
            return True
        self.capture.sync()
        found = (
            self.capture.fins(self.client_port)
            if flag == "F"
            else self.capture.rsts(self.client_port)
        )
        return not found


def _info(value: Any) -> str:
    return "<socket>" if isinstance(value, WSK_SOCKET) else str(value)


def _describe_peer(obs: PeerObservation) -> str:
    ends = {
        "fin": "FIN (graceful)",
        "rst": "RST (abortive)",
        "fin+rst": "FIN, then RST",
        "open": "nothing yet (connection still open)",
    }
    data = obs.received if len(obs.received) <= 40 else obs.received[:37] + b"..."
    return f"received {len(obs.received)} B {data!r}, then saw {ends[obs.end]}"


@contextlib.contextmanager
def _scenario(report: Report, peer: LoopbackPeer) -> Iterator[_Run]:
    run = _Run(report, peer.start())
    try:
        yield run
        run.finish()
    except Exception as exc:  # a scenario that breaks is a deviation, reported like one
        report.problems.append(f"scenario failed: {exc!r}")
    finally:
        run.close()


# --- the scenarios ----------------------------------------------------------------------------


def seed_sample(report: Report) -> None:
    with _scenario(report, LoopbackPeer([ReadToEnd()])) as run:
        sock = run.connect()
        run.issue("WskSend(b'hello, peer!')", run.wsk.send(sock, b"hello, peer!")).wait(WAIT)
        KeInitializeEvent(seed.DisconnectDone, NotificationEvent, False)
        seed.DisconnectStatus.clear()
        status = seed.DisconnectSocket(sock)
        run.note(
            f"DisconnectSocket -> WskDisconnect(Socket, NULL, 0, Irp) returned {status_name(status)}"
        )
        KeWaitForSingleObject(seed.DisconnectDone, Executive, KernelMode, False, -int(WAIT * 1e7))
        run.note(
            f"  DisconnectComplete ran: IoStatus.Status = {status_name(seed.DisconnectStatus[0])}"
            if seed.DisconnectStatus
            else "  DisconnectComplete did not run"
        )
        obs = run.peer.wait_end(WAIT)
        report.check(status in (STATUS_PENDING, STATUS_SUCCESS), "WskDisconnect returned a failure")
        report.check(
            seed.DisconnectStatus == [STATUS_SUCCESS],
            "the disconnect IRP did not complete with STATUS_SUCCESS",
        )
        report.check(
            obs.received == b"hello, peer!" and obs.end == "fin",
            "the peer did not get the data then a FIN",
        )
        report.check(
            run.wire_has("F") and run.wire_lacks("R"), "the wire did not show a FIN without RST"
        )


def graceful_with_final_data(report: Report) -> None:
    with _scenario(report, LoopbackPeer([ReadToEnd()])) as run:
        sock = run.connect()
        run.issue("WskSend(b'request;')", run.wsk.send(sock, b"request;")).wait(WAIT)
        disc = run.issue(
            "WskDisconnect(Buffer=b'final data', Flags=0)",
            run.wsk.disconnect(sock, final=b"final data"),
        )
        disc.wait(WAIT)
        obs = run.peer.wait_end(WAIT)
        report.check(
            disc.status == STATUS_SUCCESS, "the disconnect did not complete with STATUS_SUCCESS"
        )
        report.check(
            obs.received == b"request;final data" and obs.end == "fin",
            "the peer did not get the sends, the final buffer, then a FIN",
        )
        report.check(
            run.wire_has("F") and run.wire_lacks("R"), "the wire did not show a FIN without RST"
        )


def abortive_with_pending_receive(report: Report) -> None:
    with _scenario(report, LoopbackPeer([ReadToEnd()])) as run:
        sock = run.connect()
        receive, _ = run.wsk.receive(sock, 1024)
        run.issue("WskReceive(1024 bytes)", receive)
        abort = run.issue(
            "WskDisconnect(NULL, WSK_FLAG_ABORTIVE)",
            run.wsk.disconnect(sock, flags=WSK_FLAG_ABORTIVE),
        )
        receive.wait(WAIT)
        obs = run.peer.wait_end(WAIT)
        after = run.issue("WskSend after the abort", run.wsk.send(sock, b"x"))
        report.check(
            abort.returned == STATUS_SUCCESS, "the abortive disconnect did not succeed at once"
        )
        report.check(receive.status == STATUS_CONNECTION_ABORTED, "the pending receive did not end")
        report.check(after.returned != STATUS_SUCCESS, "a send succeeded after the abort")
        report.check(obs.end == "rst", "the peer did not see an RST")
        report.check(
            run.wire_has("R") and run.wire_lacks("F"), "the wire did not show an RST (without FIN)"
        )


def close_without_disconnect(report: Report) -> None:
    with _scenario(report, LoopbackPeer([ReadToEnd()])) as run:
        sock = run.connect()
        run.issue("WskSend(b'ping')", run.wsk.send(sock, b"ping")).wait(WAIT)
        run.peer.wait_received(4, WAIT)
        close = run.wsk.start("WskCloseSocket", run.wsk.dispatch(sock).WskCloseSocket, sock)
        run.issue("WskCloseSocket (no WskDisconnect before it)", close).wait(WAIT)
        run.wsk.sockets.remove(sock)
        obs = run.peer.wait_end(WAIT)
        report.check(close.status == STATUS_SUCCESS, "the close did not succeed")
        report.check(obs.end == "rst", "the peer did not see an RST")
        report.check(
            run.wire_has("R") and run.wire_lacks("F"), "the wire did not show an RST (without FIN)"
        )


def buffer_with_abortive(report: Report) -> None:
    with _scenario(report, LoopbackPeer([ReadToEnd()])) as run:
        sock = run.connect()
        bad = run.issue(
            "WskDisconnect(Buffer=b'data', WSK_FLAG_ABORTIVE)",
            run.wsk.disconnect(sock, final=b"data", flags=WSK_FLAG_ABORTIVE),
        )
        untouched = run.wire_lacks("F") and run.wire_lacks("R")
        run.issue("WskSend(b'still fine')", run.wsk.send(sock, b"still fine")).wait(WAIT)
        run.issue("WskDisconnect(NULL, 0)", run.wsk.disconnect(sock)).wait(WAIT)
        obs = run.peer.wait_end(WAIT)
        report.check(
            bad.returned == STATUS_INVALID_PARAMETER == bad.status,
            "the call was not refused with STATUS_INVALID_PARAMETER",
        )
        report.check(untouched, "the refused call put something on the wire")
        report.check(
            obs.received == b"still fine" and obs.end == "fin", "the connection was disturbed"
        )


def stuck_graceful_then_abortive(report: Report) -> None:
    go = threading.Event()
    with _scenario(report, LoopbackPeer([WaitFor(go, WAIT), ReadToEnd()], rcvbuf=4096)) as run:
        sock = run.connect()
        sends: list[Request] = []
        for i in range(64):
            request = run.wsk.send(sock, bytes([65 + i % 26]) * 65536)
            sends.append(request)
            if request.returned == STATUS_PENDING:
                break
        run.note(
            f"{len(sends)} WskSend calls of 64 KiB; the last is pending (the peer does not read)"
        )
        disc = run.issue("WskDisconnect(NULL, 0)", run.wsk.disconnect(sock))
        stuck = not disc._event.wait(0.3)
        run.note(
            "  ... the graceful disconnect is still pending 300 ms later"
            if stuck
            else "  ... the graceful disconnect completed"
        )
        abort = run.issue(
            "WskDisconnect(NULL, WSK_FLAG_ABORTIVE)",
            run.wsk.disconnect(sock, flags=WSK_FLAG_ABORTIVE),
        )
        disc.wait(WAIT)
        go.set()
        obs = run.peer.wait_end(WAIT)
        report.check(
            disc.returned == STATUS_PENDING and stuck,
            "the graceful disconnect did not stay pending",
        )
        report.check(abort.returned == STATUS_SUCCESS, "the abortive disconnect did not succeed")
        report.check(
            disc.status == STATUS_CONNECTION_ABORTED, "the stuck disconnect was not forced complete"
        )
        report.check(sends[-1].status == STATUS_CANCELLED, "the pending send was not cancelled")
        report.check(obs.end == "rst", "the peer did not see an RST")
        report.check(
            run.wire_has("R") and run.wire_lacks("F"), "the wire did not show an RST (without FIN)"
        )


Scenario = Callable[[Report], None]

#: name -> (title, documented behaviour, function)
SCENARIOS: dict[str, tuple[str, str, Scenario]] = {
    "seed-sample": (
        "The guide's DisconnectSocket / DisconnectComplete, line for line",
        "graceful: FIN after the data; the IRP completes STATUS_SUCCESS once the transport finished",
        seed_sample,
    ),
    "graceful-final-data": (
        "Graceful disconnect with a final buffer",
        "the final buffer is sent after earlier sends, then FIN; completes STATUS_SUCCESS",
        graceful_with_final_data,
    ),
    "abortive": (
        "Abortive disconnect with a receive pending",
        "RST at once; pending requests complete; nothing is sent or received afterwards",
        abortive_with_pending_receive,
    ),
    "close-without-disconnect": (
        "WskCloseSocket on a connection that was not disconnected",
        "the WSK subsystem performs an abortive disconnect (RST) before closing",
        close_without_disconnect,
    ),
    "buffer-with-abortive": (
        "A buffer together with WSK_FLAG_ABORTIVE",
        "refused (Buffer must be NULL): STATUS_INVALID_PARAMETER, connection untouched",
        buffer_with_abortive,
    ),
    "stuck-graceful": (
        "A graceful disconnect that cannot finish, recovered by an abortive one",
        "stays pending while data cannot be delivered; WSK_FLAG_ABORTIVE forces its completion",
        stuck_graceful_then_abortive,
    ),
}


def run_scenario(name: str) -> Report:
    """Run one scenario by name and return its report."""
    title, expected, function = SCENARIOS[name]
    report = Report(name, title, expected)
    function(report)
    return report
