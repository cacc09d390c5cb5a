"""``pywsk demo``: every disconnect behaviour of the seed pages, against an embedded peer.

What it does: defines the scenarios and runs them by name.  Each scenario is a script for the
embedded peer (a plain Linux socket on 127.0.0.1, :class:`~pywsk.testing.peer.LoopbackPeer`)
and a client part that performs one of the disconnects that "WskDisconnect",
"WskCloseSocket", "WskDisconnectEvent" and "Disconnecting a socket from a destination"
describe, then checks what happened against the documented behaviour.
:func:`run_scenario` sets up the :class:`~pywsk.cli.demo_stage.Stage` (the WSK client, the
peer and the wire observer, which record every WSK call and the status it returned, every
IRP completion with its status and time, every event callback, what went on the wire and
what the peer did and observed) and returns the :class:`~pywsk.cli.timeline.Report`; the
datagram scenarios come from :mod:`pywsk.cli.demo_udp`.

What it refuses: nothing; a scenario that deviates (or breaks) is reported, and the
command's exit code says so.

What always holds: every wait is bounded; every socket is closed, the client deregistered
and the peer stopped at the end of each scenario, whatever happened.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..core.ending import Ending
from ..nt import (
    STATUS_CANCELLED,
    STATUS_CONNECTION_ABORTED,
    STATUS_CONNECTION_RESET,
    STATUS_FILE_FORCED_CLOSED,
    STATUS_INVALID_DEVICE_STATE,
    STATUS_INVALID_PARAMETER,
    STATUS_PENDING,
    STATUS_SUCCESS,
    Executive,
    KeInitializeEvent,
    KernelMode,
    KeWaitForSingleObject,
    NotificationEvent,
)
from ..samples import disconnect_socket as seed
from ..testing.peer import Step
from ..wsk import WSK_EVENT_DISCONNECT, WSK_FLAG_ABORTIVE, WSK_SOCKET
from .demo_stage import (
    WAIT,
    Stage,
    peer_abort,
    peer_send,
    peer_shutdown,
    peer_wait,
    read_to_end,
)
from .demo_udp import UDP_SCENARIOS, UdpScenario, run_udp_scenario
from .session import Call
from .timeline import Report, short_status
from .wire import WireMode

__all__ = ["ALL_SCENARIOS", "SCENARIOS", "Scenario", "Stage", "run_scenario"]


# --- the scenarios ---------------------------------------------------------------------------


def seed_sample(stage: Stage) -> None:
    report, tl, session = stage.report, stage.timeline, stage.session
    sock = stage.connect()
    session.send(sock, b"hello, peer!").completed_within(WAIT)
    KeInitializeEvent(seed.DisconnectDone, NotificationEvent, False)
    seed.DisconnectStatus.clear()
    issued = time.time()
    status = seed.DisconnectSocket(sock)
    tl.record(
        "call",
        "client",
        f"DisconnectSocket -> WskDisconnect(Socket, NULL, 0, Irp) returned {short_status(status)}",
        at=issued,
        src="client",
        dst="provider",
        status=status,
    )
    KeWaitForSingleObject(seed.DisconnectDone, Executive, KernelMode, False, -int(WAIT * 1e7))
    done = seed.DisconnectStatus[0] if seed.DisconnectStatus else None
    tl.record(
        "complete",
        "provider",
        f"DisconnectComplete ran: IoStatus.Status = {short_status(done)}"
        if done is not None
        else "DisconnectComplete did not run",
        src="provider",
        dst="client",
        status=done,
    )
    obs = stage.peer.wait_end(WAIT)
    report.check(status in (STATUS_PENDING, STATUS_SUCCESS), "WskDisconnect returned a failure")
    report.check(done == STATUS_SUCCESS, "the disconnect IRP did not complete with STATUS_SUCCESS")
    if done == STATUS_SUCCESS:  # only a disconnect that succeeded is an end of ours
        session.ends(sock).learn_ours(Ending.OUR_FIN, issued)
        session.ends(sock).fin_acknowledged(time.time())
    report.check(
        obs.received == b"hello, peer!" and obs.end == "fin",
        "the peer did not get the data then a FIN",
    )
    report.check(
        stage.on_wire("F") and stage.not_on_wire("R"), "the wire did not show a FIN without RST"
    )
    _close_cleanly(stage, sock)


def _close_cleanly(stage: Stage, sock: WSK_SOCKET) -> None:
    """Receive until the peer's FIN (the peer closes after ours), then close: no RST."""
    received = _receive_to_end(stage, sock)
    stage.session.close_socket(sock)
    stage.report.check(received.status == STATUS_SUCCESS, "the final receive did not succeed")


def _receive_to_end(stage: Stage, sock: WSK_SOCKET, timeout: float = WAIT) -> Call:
    """WskReceive until one completes with 0 bytes or fails (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        call = stage.session.receive(sock, 1024)
        if not call.completed_within(deadline - time.monotonic()):
            raise TimeoutError("WskReceive did not complete")
        if call.status != STATUS_SUCCESS or not call.information:
            return call


def graceful_with_final_data(stage: Stage) -> None:
    report, session = stage.report, stage.session
    sock = stage.connect()
    session.send(sock, b"request;").completed_within(WAIT)
    disc = session.disconnect(sock, b"final data")
    disc.completed_within(WAIT)
    obs = stage.peer.wait_end(WAIT)
    report.check(
        disc.status == STATUS_SUCCESS, "the disconnect did not complete with STATUS_SUCCESS"
    )
    report.check(disc.information == 10, "Information is not the final buffer's length (Q5)")
    report.check(
        obs.received == b"request;final data" and obs.end == "fin",
        "the peer did not get the sends, the final buffer, then a FIN",
    )
    report.check(
        stage.on_wire("F") and stage.not_on_wire("R"), "the wire did not show a FIN without RST"
    )
    _close_cleanly(stage, sock)


def half_open(stage: Stage) -> None:
    report, session = stage.report, stage.session
    sock = stage.connect()
    session.send(sock, b"request").completed_within(WAIT)
    disc = session.disconnect(sock)
    disc.completed_within(WAIT)
    refused = session.send(sock, b"too late")
    stage.peer.wait_end(WAIT)
    data = b""
    deadline = time.monotonic() + WAIT
    while True:
        call = session.receive(sock, 1024)
        if not call.completed_within(deadline - time.monotonic()):
            raise TimeoutError("WskReceive did not complete")
        if call.status != STATUS_SUCCESS or not call.information:
            break
        data += call.data
    close = session.close_socket(sock)
    obs = stage.peer.result(WAIT)
    report.check(disc.status == STATUS_SUCCESS, "the graceful disconnect did not complete")
    report.check(
        refused.returned == STATUS_INVALID_DEVICE_STATE,
        "a send after our graceful disconnect was not refused (Q1)",
    )
    report.check(data == b"reply after your FIN", "the data sent after our FIN was not received")
    report.check(
        (call.status, call.information) == (STATUS_SUCCESS, 0),
        "the receive after the peer's FIN did not complete with 0 bytes",
    )
    report.check(close.status == STATUS_SUCCESS, "the close did not succeed")
    report.check(obs.end == "fin", "the peer did not see our FIN")
    report.check(
        stage.on_wire("F") and stage.on_wire("F", from_client=False) and stage.not_on_wire("R"),
        "the wire did not show both FINs and no RST",
    )


def _stuck(stage: Stage) -> tuple[WSK_SOCKET, Call, Call, bool]:
    sock = stage.connect()
    send = stage.fill_window(sock)
    disc = stage.session.disconnect(sock)
    stuck = not disc.completed_within(0.3)
    stage.timeline.note(
        "the graceful disconnect is still pending 300 ms later"
        if stuck
        else "the graceful disconnect completed"
    )
    return sock, send, disc, stuck


def stuck_graceful_then_abortive(stage: Stage) -> None:
    report, session = stage.report, stage.session
    go = stage.go
    sock, send, disc, stuck = _stuck(stage)
    abort = session.disconnect(sock, abortive=True)
    disc.completed_within(WAIT)
    send.completed_within(WAIT)
    go.set()
    obs = stage.peer.wait_end(WAIT)
    report.check(
        disc.returned == STATUS_PENDING and stuck, "the graceful disconnect did not stay pending"
    )
    report.check(abort.returned == STATUS_SUCCESS, "the abortive disconnect did not succeed")
    report.check(
        disc.status == STATUS_CONNECTION_ABORTED,
        "the stuck disconnect was not forced complete with STATUS_CONNECTION_ABORTED (Q4)",
    )
    report.check(send.status == STATUS_CANCELLED, "the pending send was not cancelled (Q2)")
    report.check(obs.end == "rst", "the peer did not see an RST")
    report.check(
        stage.on_wire("R") and stage.not_on_wire("F"), "the wire did not show an RST (without FIN)"
    )


def stuck_graceful_then_close(stage: Stage) -> None:
    report, session = stage.report, stage.session
    go = stage.go
    sock, send, disc, stuck = _stuck(stage)
    close = session.close_socket(sock)
    disc.completed_within(WAIT)
    send.completed_within(WAIT)
    go.set()
    obs = stage.peer.wait_end(WAIT)
    report.check(
        disc.returned == STATUS_PENDING and stuck, "the graceful disconnect did not stay pending"
    )
    report.check(close.status == STATUS_SUCCESS, "the close did not succeed")
    report.check(
        disc.status == STATUS_CANCELLED,
        "the stuck disconnect was not completed with STATUS_CANCELLED by the close (Q4)",
    )
    report.check(send.status == STATUS_CANCELLED, "the pending send was not cancelled")
    report.check(
        bool(disc.completed_at and close.completed_at and disc.completed_at <= close.completed_at),
        "the close IRP did not complete last (Q8)",
    )
    report.check(obs.end == "rst", "the peer did not see an RST")
    report.check(
        stage.on_wire("R") and stage.not_on_wire("F"), "the wire did not show an RST (without FIN)"
    )


def abortive_with_pending_requests(stage: Stage) -> None:
    report, session = stage.report, stage.session
    go = stage.go
    sock = stage.connect()
    receive = session.receive(sock, 1024)
    send = stage.fill_window(sock)
    abort = session.disconnect(sock, abortive=True)
    receive.completed_within(WAIT)
    send.completed_within(WAIT)
    after = session.send(sock, b"x", label="WskSend after the abort")
    go.set()
    obs = stage.peer.wait_end(WAIT)
    report.check(
        abort.returned == STATUS_SUCCESS == abort.status,
        "the abortive disconnect did not succeed at once",
    )
    report.check(
        receive.status == STATUS_CONNECTION_ABORTED,
        "the pending receive did not end with STATUS_CONNECTION_ABORTED (Q3)",
    )
    report.check(send.status == STATUS_CANCELLED, "the pending send was not cancelled (Q2)")
    report.check(after.returned != STATUS_SUCCESS, "a send succeeded after the abort")
    report.check(obs.end == "rst", "the peer did not see an RST")
    report.check(
        stage.on_wire("R") and stage.not_on_wire("F"), "the wire did not show an RST (without FIN)"
    )


def close_without_disconnect(stage: Stage) -> None:
    report, session = stage.report, stage.session
    sock = stage.connect()
    session.send(sock, b"ping").completed_within(WAIT)
    stage.peer.wait_received(4, WAIT)
    close = session.close_socket(sock, label="WskCloseSocket (no WskDisconnect before it)")
    obs = stage.peer.wait_end(WAIT)
    report.check(close.status == STATUS_SUCCESS, "the close did not succeed")
    report.check(obs.end == "rst", "the peer did not see an RST")
    report.check(
        stage.on_wire("R") and stage.not_on_wire("F"), "the wire did not show an RST (without FIN)"
    )


def buffer_with_abortive(stage: Stage) -> None:
    report, session = stage.report, stage.session
    sock = stage.connect()
    bad = session.disconnect(sock, b"data", abortive=True)
    untouched = stage.not_on_wire("F") and stage.not_on_wire("R")
    session.send(sock, b"still fine").completed_within(WAIT)
    session.disconnect(sock).completed_within(WAIT)
    obs = stage.peer.wait_end(WAIT)
    report.check(
        bad.returned == STATUS_INVALID_PARAMETER == bad.status,
        "the call was not refused with STATUS_INVALID_PARAMETER",
    )
    report.check(untouched, "the refused call put something on the wire")
    report.check(obs.received == b"still fine" and obs.end == "fin", "the connection was disturbed")
    _close_cleanly(stage, sock)


def peer_graceful_event(stage: Stage) -> None:
    report, session = stage.report, stage.session
    sock = stage.connect(events=WSK_EVENT_DISCONNECT)
    stage.go.set()
    event = stage.events_seen.wait(WAIT)
    data = b""
    deadline = time.monotonic() + WAIT
    while True:
        call = session.receive(sock, 1024)
        if not call.completed_within(deadline - time.monotonic()):
            raise TimeoutError("WskReceive did not complete")
        if call.status != STATUS_SUCCESS or not call.information:
            break
        data += call.data
    reply = session.send(sock, b"reply")
    reply.completed_within(WAIT)
    disc = session.disconnect(sock)
    disc.completed_within(WAIT)
    close = session.close_socket(sock)
    obs = stage.peer.wait_end(WAIT)
    flags = [f & WSK_FLAG_ABORTIVE for _, f in stage.context.disconnect_events]
    report.check(
        event and flags == [0], "WskDisconnectEvent did not come once, without WSK_FLAG_ABORTIVE"
    )
    report.check(data == b"last words", "the data sent before the peer's FIN was not received")
    report.check(
        (call.status, call.information) == (STATUS_SUCCESS, 0),
        "after the data, a receive did not complete with 0 bytes",
    )
    report.check(reply.status == STATUS_SUCCESS, "sending after the peer's FIN failed")
    report.check(disc.status == STATUS_SUCCESS, "our graceful disconnect did not complete")
    report.check(close.status == STATUS_SUCCESS, "the close did not succeed")
    report.check(
        obs.received == b"reply" and obs.end == "fin", "the peer did not get the reply then a FIN"
    )
    report.check(
        stage.on_wire("F") and stage.not_on_wire("R"), "the wire did not show our FIN without RST"
    )


def peer_abortive_event(stage: Stage) -> None:
    report, session = stage.report, stage.session
    sock = stage.connect(events=WSK_EVENT_DISCONNECT)
    receive = session.receive(sock, 1024)
    stage.go.set()
    event = stage.events_seen.wait(WAIT)
    receive.completed_within(WAIT)
    disc = session.disconnect(sock)
    disc.completed_within(WAIT)
    close = session.close_socket(sock)
    flags = [f & WSK_FLAG_ABORTIVE for _, f in stage.context.disconnect_events]
    report.check(
        event and flags == [WSK_FLAG_ABORTIVE],
        "WskDisconnectEvent did not come once with WSK_FLAG_ABORTIVE",
    )
    report.check(
        receive.status == STATUS_CONNECTION_RESET,
        "the pending receive did not fail with STATUS_CONNECTION_RESET (Q3)",
    )
    report.check(
        disc.status == STATUS_FILE_FORCED_CLOSED,
        "WskDisconnect after the reset did not fail with STATUS_FILE_FORCED_CLOSED (Q15)",
    )
    report.check(close.status == STATUS_SUCCESS, "the close did not succeed")
    report.check(stage.on_wire("R", from_client=False), "the wire did not show the peer's RST")
    report.check(
        stage.not_on_wire("F") and stage.not_on_wire("R"),
        "the client put a FIN or RST on the wire after the reset",
    )


# --- the table -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    expected: str
    run: Callable[[Stage], None]
    script: Callable[[threading.Event], list[Step]]
    rcvbuf: int | None = None


def _reads(_go: threading.Event) -> list[Step]:
    return [read_to_end]


def _reads_then_fin(_go: threading.Event) -> list[Step]:
    return [read_to_end, peer_shutdown]


def _stalled(go: threading.Event) -> list[Step]:
    return [peer_wait(go), read_to_end]


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "seed-sample",
            "The guide's DisconnectSocket / DisconnectComplete, line for line",
            "graceful: FIN after the data; the IRP completes STATUS_SUCCESS once the transport"
            " finished (our FIN acknowledged)",
            seed_sample,
            _reads_then_fin,
        ),
        Scenario(
            "graceful-final-data",
            "Graceful disconnect with a final buffer",
            "the final buffer is sent after earlier sends, then FIN; completes STATUS_SUCCESS"
            " with Information = the final buffer's length",
            graceful_with_final_data,
            _reads_then_fin,
        ),
        Scenario(
            "half-open",
            "Receiving after our graceful disconnect (half-open connection)",
            "after our FIN sends are refused, but receiving goes on until the peer's FIN"
            " (0 bytes); closing then sends nothing",
            half_open,
            lambda go: [read_to_end, peer_send(b"reply after your FIN"), peer_shutdown],
        ),
        Scenario(
            "stuck-graceful",
            "A graceful disconnect that cannot finish, recovered by an abortive one",
            "stays pending while the data cannot be delivered; WSK_FLAG_ABORTIVE forces its"
            " completion (RST; pending requests end)",
            stuck_graceful_then_abortive,
            _stalled,
            rcvbuf=4096,
        ),
        Scenario(
            "stuck-graceful-close",
            "A graceful disconnect that cannot finish, recovered by WskCloseSocket",
            "stays pending; WskCloseSocket cancels every pending IRP (STATUS_CANCELLED),"
            " resets the connection and completes last",
            stuck_graceful_then_close,
            _stalled,
            rcvbuf=4096,
        ),
        Scenario(
            "abortive",
            "Abortive disconnect with a send and a receive pending",
            "RST at once; the pending send is cancelled, the pending receive aborted; nothing"
            " is sent or received afterwards",
            abortive_with_pending_requests,
            _stalled,
            rcvbuf=4096,
        ),
        Scenario(
            "close-without-disconnect",
            "WskCloseSocket on a connection that was not disconnected",
            "the WSK subsystem performs an abortive disconnect (RST) before closing",
            close_without_disconnect,
            _reads,
        ),
        Scenario(
            "buffer-with-abortive",
            "A buffer together with WSK_FLAG_ABORTIVE",
            "refused (Buffer must be NULL): STATUS_INVALID_PARAMETER, connection untouched",
            buffer_with_abortive,
            _reads_then_fin,
        ),
        Scenario(
            "peer-graceful-event",
            "The peer's graceful disconnect, seen through WskDisconnectEvent",
            "WskDisconnectEvent with Flags 0; the data before the peer's FIN is still received,"
            " then 0 bytes; sending still works; our FIN then ends the connection without RST",
            peer_graceful_event,
            lambda go: [peer_wait(go), peer_send(b"last words"), peer_shutdown, read_to_end],
        ),
        Scenario(
            "peer-abortive-event",
            "The peer's abortive disconnect, seen through WskDisconnectEvent",
            "WskDisconnectEvent with WSK_FLAG_ABORTIVE; the pending receive fails with"
            " STATUS_CONNECTION_RESET; WskDisconnect gets STATUS_FILE_FORCED_CLOSED; close it",
            peer_abortive_event,
            lambda go: [peer_wait(go), peer_abort],
        ),
    )
}
#: Every scenario's name and title, the datagram ones (demo_udp.py) last.
ALL_SCENARIOS: dict[str, Scenario | UdpScenario] = {**SCENARIOS, **UDP_SCENARIOS}


def run_scenario(name: str, wire: WireMode = "auto") -> Report:
    """Run one scenario by name and return its report (never raises for a deviation)."""
    if name in UDP_SCENARIOS:
        return run_udp_scenario(name, wire)
    scenario = SCENARIOS[name]
    report = Report("demo", scenario.name, scenario.title, scenario.expected)
    go = threading.Event()
    stage: Stage | None = None
    try:
        stage = Stage(report, scenario.script(go), wire=wire, go=go, rcvbuf=scenario.rcvbuf)
        scenario.run(stage)
        stage.finish()
    except Exception as exc:  # a scenario that breaks is a deviation, reported like one
        report.problems.append(f"scenario failed: {exc!r}")
        if stage is not None:
            stage.abandon()
    finally:
        go.set()
    return report
