"""``pywsk serve``: a WSK server with a chosen behaviour, logging every connection's end.

What it does: :class:`Server` makes a listening socket (WskSocket with
WSK_FLAG_LISTEN_SOCKET, then WskBind, which binds and listens) and takes connections either
through WskAcceptEvent (``accept="event"``; the accepted sockets inherit
WSK_EVENT_DISCONNECT from the listener) or through a WskAccept kept pending
(``accept="irp"``; WSK_EVENT_DISCONNECT is then enabled on each accepted socket).  Each
connection (:class:`Served`) is served in one of four modes:

* ``echo`` - every byte received is sent back (one WskSend per WskReceive, in order);
* ``sink`` - everything received is counted and dropped;
* ``source`` - 64 KiB sends of a pattern, one after another;
* ``http-ok`` - read a request up to its blank line, answer ``200 OK``;

and disconnects in one of five ways once the *trigger* (``after``: bytes received - sent,
for ``source`` - or seconds since the accept; by default the client's FIN for echo and
sink, 64 KiB for source, the response for http-ok) fires:

* ``graceful`` - WskDisconnect(0): our FIN; then wait (``linger``) for the client's FIN;
* ``abortive`` - WskDisconnect(WSK_FLAG_ABORTIVE): RST at once; then close;
* ``half-open`` - our FIN, then keep receiving and logging whatever the client sends, until
  its FIN (or ``linger`` seconds of silence);
* ``stall`` - stop reading (the pending WskReceive is cancelled with IoCancelIrp) and
  never disconnect; close when the client's reset is reported, or after ``linger`` (pywsk
  reports a reset only once the data that came before it is read, so a stalled server
  usually closes at ``linger``);
* ``never`` - never disconnect first; answer the client's FIN with our own.

When a connection ends, its report - the same timeline as ``demo`` and ``probe``, with the
client as the peer - goes to ``on_report``.

Everything the server decides runs in one thread (:meth:`Server.run`): completion routines
and event callbacks only put what happened on a queue.  So no lock is ever held across a WSK
call, and nothing recurses through inline completions.

What it refuses: an address it cannot bind (:class:`~pywsk.cli.session.SessionError`).

What always holds: every wait is bounded - the queue is read with a timeout that is the
nearest deadline (a trigger, a linger, the end of ``duration``); at exit every socket is
closed and the client deregistered.
"""

from __future__ import annotations

import ipaddress
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ..core.ending import Ending
from ..nt import (
    STATUS_CANCELLED,
    STATUS_CONNECTION_RESET,
    STATUS_REQUEST_NOT_ACCEPTED,
    STATUS_SUCCESS,
)
from ..wsk import (
    PPVOID,
    SOCKADDR,
    SOCKADDR_STORAGE,
    WSK_CLIENT_LISTEN_DISPATCH,
    WSK_EVENT_ACCEPT,
    WSK_EVENT_DISCONNECT,
    WSK_FLAG_ABORTIVE,
    WSK_SOCKET,
)
from .probe_run import pattern
from .session import Call, Connection, Session, SessionError, describe_address, flag_names
from .timeline import Report, Timeline, short_status
from .wire import CaptureWire, StateWire, WireMode, open_wire

__all__ = ["DISCONNECTS", "MODES", "ServeOptions", "Served", "Server", "Trigger"]

Mode = Literal["echo", "sink", "source", "http-ok"]
Disconnect = Literal["graceful", "abortive", "half-open", "stall", "never"]
MODES: tuple[Mode, ...] = ("echo", "sink", "source", "http-ok")
DISCONNECTS: tuple[Disconnect, ...] = ("graceful", "abortive", "half-open", "stall", "never")

CHUNK = 65536
#: Echo sends in flight at most: a WskSend completes when the client acknowledged it, so one
#: at a time would wait a round trip (and a delayed ACK) per 64 KiB.  Memory stays bounded.
ECHO_WINDOW = 4
#: Defaults: a connection with no traffic for this long is closed; at most this many at once.
IDLE_TIMEOUT = 300.0
MAX_CONNECTIONS = 256
#: The most of an HTTP request (http-ok) kept while looking for its blank line.
REQUEST_LIMIT = 65536
HTTP_OK = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
    b"Connection: close\r\n\r\nok\n"
)

EXPECTED: dict[str, str] = {
    "graceful": "after the trigger WskDisconnect(0) sends our FIN and completes STATUS_SUCCESS"
    " once the client acknowledges it; the connection closes without RST after the client's FIN",
    "abortive": "after the trigger WskDisconnect(WSK_FLAG_ABORTIVE) resets the connection at"
    " once (RST) and completes STATUS_SUCCESS inline; pending requests end",
    "half-open": "after the trigger our FIN (STATUS_SUCCESS once acknowledged); receiving goes on"
    " until the client's FIN",
    "stall": "after the trigger the server stops reading (its pending WskReceive is cancelled)"
    " and never disconnects; the client's data backs up until it gives up (pywsk reports a"
    " reset only after the unread data before it, so the server may close at --linger)",
    "never": "the server never disconnects first; the client's FIN arrives as"
    " WskDisconnectEvent and a 0-byte receive, and is answered with our graceful disconnect",
}


@dataclass(frozen=True)
class Trigger:
    """When the disconnect behaviour starts: after ``size`` bytes or ``seconds``, or (both
    None) at the mode's natural point."""

    size: int | None = None
    seconds: float | None = None

    def describe(self, mode: str) -> str:
        if self.size == 0:
            return "at once"
        if self.size is not None:
            what = "sent" if mode == "source" else "received"
            return f"after {self.size} B {what}"
        if self.seconds is not None:
            return f"after {self.seconds:g} s"
        return {
            "echo": "at the client's FIN",
            "sink": "at the client's FIN",
            "source": f"after {CHUNK} B sent",
            "http-ok": "after the response",
        }[mode]


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 0
    mode: Mode = "echo"
    disconnect: Disconnect = "graceful"
    after: Trigger = Trigger()
    accept: Literal["event", "irp"] = "event"
    connections: int | None = None
    duration: float | None = None
    linger: float = 10.0
    wire: WireMode = "auto"
    idle_timeout: float | None = IDLE_TIMEOUT
    max_connections: int = MAX_CONNECTIONS
    pcap: str | None = None


Job = tuple[Callable[[Any], None], Any]


class Served:
    """One accepted connection: its report, its I/O, its disconnect."""

    def __init__(self, server: Server, sock: WSK_SOCKET, context: Connection, index: int) -> None:
        self.server = server
        self.session = server.session
        self.options = server.options
        self.sock = sock
        self.context = context
        self.index = index
        self.timeline = context.timeline or Timeline()
        self.remote: tuple[Any, ...] | None = None
        self.report = Report("serve", f"#{index}", "", EXPECTED[self.options.disconnect])
        self.report.timeline = self.timeline
        self.report.lanes["client"] = "pywsk serve"
        self.received = 0
        self.sent = 0
        self.after_fin = 0
        self.request = bytearray()
        self.receive: Call | None = None
        #: Sends issued and not yet counted: one at a time, except in echo mode (up to
        #: ECHO_WINDOW, so that a send completing at the client's ACK does not hold reading).
        self.in_flight: list[Call] = []
        self.disconnect_call: Call | None = None
        self.close_call: Call | None = None
        self.triggered = False
        self.reading = True
        self.stalled = False
        self.peer_end: Ending | None = None
        """The client's FIN or RST; or TRANSPORT_FAILURE, with the receive's status in
        :attr:`peer_failure` (any failure but STATUS_CONNECTION_RESET)."""
        self.peer_failure: int | None = None
        self.deadline: float | None = None
        self.linger_deadline: float | None = None
        self.closing = False
        self.done = False
        self.wire: StateWire | None = None
        self.pending_sends = 0
        """Sends issued whose completion has not been handled yet."""
        self.peer_end_at: float | None = None
        self.read_to_end = False
        """A 0-byte receive completion: we read every byte the client sent before its FIN."""
        self.interrupted: str | None = None
        """Why the connection was closed before its behaviour ran (shutdown, idle)."""
        self.last_activity = time.monotonic()
        self.reset_seen = False
        """The client reset the connection (possibly after its FIN)."""

    # --- start -------------------------------------------------------------------------------------
    def start(self, via_irp: bool) -> None:
        if self.remote is None:
            self.remote = self.session.remote_address(self.sock)
        target = describe_address(self.remote) if self.remote else "?"
        self.report.name = f"#{self.index} {target}"
        self.report.title = (
            f"{self.options.mode}, disconnect {self.options.disconnect} "
            f"{self.options.after.describe(self.options.mode)}"
        )
        self.report.lanes["peer"] = f"client {target}"
        if isinstance(self.server.wire, StateWire) or self.server.wire is None:
            self.wire = StateWire(self.session, self.timeline)
            self.wire.track(self.sock, "server")
        if via_irp:
            try:
                self.session.set_events(self.sock, WSK_EVENT_DISCONNECT)
            except SessionError as exc:
                self.report.problems.append(str(exc))
        if self.options.after.seconds is not None:
            self.deadline = time.monotonic() + self.options.after.seconds
        if self.options.after.size == 0:
            self.trigger("at once (--after 0)")
        if self.options.mode == "source":
            self._send_next()
        self._read()

    # --- reading -------------------------------------------------------------------------------------
    def _read(self) -> None:
        if not self.reading or self.closing or self.stalled or self.receive is not None:
            return
        call = self.session.receive(self.sock, CHUNK, group="receive")
        self.receive = call
        self.server.when_done(call, self._received)

    def _received(self, call: Call) -> None:
        self.receive = None
        if self.closing:
            return
        self.last_activity = time.monotonic()
        if call.status == STATUS_SUCCESS and call.information:
            data = call.data
            self.received += len(data)
            if self.disconnect_call is not None:
                self.after_fin += len(data)
            if self.options.disconnect == "half-open" and self.triggered:
                self.linger_deadline = time.monotonic() + self.options.linger
            if self.options.mode == "echo" and not self.triggered:
                self._echo(data)
                if len(self.in_flight) < ECHO_WINDOW:
                    self._read()
                return  # else reading resumes when an echo completes
            if self.options.mode == "http-ok" and not self.in_flight and not self.triggered:
                self.request += data[: REQUEST_LIMIT - len(self.request)]
                if b"\r\n\r\n" in self.request:
                    self._respond()
                elif len(self.request) >= REQUEST_LIMIT:
                    self.timeline.note(f"no end of the request headers in {REQUEST_LIMIT} B")
                    self._respond()
            self._check_size()
            self._read()
        elif call.status == STATUS_SUCCESS:
            self.read_to_end = True
            self._peer_ended(Ending.PEER_FIN)
        elif call.status == STATUS_CANCELLED and self.stalled:
            if call.data:
                self.received += len(call.data)
        else:
            if call.status != STATUS_CONNECTION_RESET:
                self.peer_failure = call.status
            self._peer_ended(
                Ending.PEER_RST
                if call.status == STATUS_CONNECTION_RESET
                else Ending.TRANSPORT_FAILURE
            )

    def _echo(self, data: bytes) -> None:
        call = self.session.send(
            self.sock, data, label=f"WskSend({len(data)} B echo)", group="send"
        )
        self._issued(call)
        self.server.when_done(call, self._echoed)

    def _echoed(self, call: Call) -> None:
        self._count_sent(call)
        if self.closing:
            return
        self._check_size()
        if self.triggered and not self.in_flight:
            self._act()
        self._read()

    def _respond(self) -> None:
        call = self.session.send(self.sock, HTTP_OK, label="WskSend(HTTP/1.1 200 OK ...)")
        self._issued(call)
        self.server.when_done(call, self._responded)

    def _responded(self, call: Call) -> None:
        self._count_sent(call)
        if self.options.after.size is None and self.options.after.seconds is None:
            self.trigger("the response is out")

    # --- source ---------------------------------------------------------------------------------------
    def _send_next(self) -> None:
        if self.closing or self.triggered or self.in_flight:
            return
        limit = self.options.after.size
        if limit is None and self.options.after.seconds is None:
            limit = CHUNK
        size = CHUNK if limit is None else min(CHUNK, limit - self.sent)
        if size <= 0:
            self.trigger(f"{self.sent} B sent")
            return
        data = pattern(self.sent, size)
        call = self.session.send(self.sock, data, label=f"WskSend({size} B)", group="send")
        self._issued(call)
        self.server.when_done(call, self._source_sent)

    def _source_sent(self, call: Call) -> None:
        self._count_sent(call)
        if call.status != STATUS_SUCCESS:
            return
        if self.triggered:
            self._act()
        else:
            self._send_next()

    def _issued(self, call: Call) -> None:
        self.in_flight.append(call)
        self.pending_sends += 1

    def _count_sent(self, call: Call) -> None:
        """Bytes the client was sent: each send counted once, when its completion is handled
        (constant time and memory per send, however long the connection lives)."""
        if call in self.in_flight:
            self.in_flight.remove(call)
        if call.counted:
            return
        call.counted = True
        self.pending_sends -= 1
        self.last_activity = time.monotonic()
        if call.status == STATUS_SUCCESS and isinstance(call.information, int):
            self.sent += call.information

    # --- triggers -------------------------------------------------------------------------------------
    def _check_size(self) -> None:
        size = self.options.after.size
        if size is None or self.triggered:
            return
        done = self.sent if self.options.mode == "source" else self.received
        if done >= size:
            self.trigger(f"{done} B {'sent' if self.options.mode == 'source' else 'received'}")

    def on_timer(self, now: float) -> None:
        if self.deadline is not None and now >= self.deadline and not self.triggered:
            self.deadline = None
            self.trigger(f"{self.options.after.seconds:g} s passed")
        if self.linger_deadline is not None and now >= self.linger_deadline and not self.closing:
            self.linger_deadline = None
            linger = self.options.linger
            if self.stalled:
                text = f"stalled for {linger:g} s (--linger): closing"
            elif self.options.disconnect == "half-open":
                text = f"nothing more from the client for {linger:g} s (--linger): closing"
            else:
                text = f"no FIN from the client {linger:g} s after ours (--linger): closing"
            self.timeline.note(text)
            self.close()
        idle = self.options.idle_timeout
        if idle is not None and not self.closing and now - self.last_activity >= idle:
            self.interrupted = f"idle for {idle:g} s (--idle-timeout)"
            self.timeline.note(f"nothing received or sent for {idle:g} s (--idle-timeout): closing")
            self.close()

    def next_deadline(self) -> float | None:
        idle = self.options.idle_timeout
        times = [t for t in (self.deadline, self.linger_deadline) if t is not None]
        if idle is not None:
            times.append(self.last_activity + idle)
        return min(times) if times else None

    def trigger(self, why: str) -> None:
        if self.triggered or self.closing:
            return
        self.triggered = True
        self.timeline.note(f"trigger: {why} -> {self.options.disconnect}")
        if not self.in_flight:
            self._act()
        # otherwise _act runs when the sends in progress completed

    def _act(self) -> None:
        """Perform the chosen disconnect behaviour (once)."""
        if self.closing or self.disconnect_call is not None or self.stalled:
            return
        how = self.options.disconnect
        if how in ("graceful", "half-open"):
            self._graceful()
        elif how == "abortive":
            call = self.session.disconnect(self.sock, abortive=True)
            self.disconnect_call = call
            self.close()
        elif how == "stall":
            self.stalled = True
            self.linger_deadline = time.monotonic() + self.options.linger
            self.timeline.note("the server stops reading")
            if self.receive is not None:
                self.receive.cancel()
        # never: nothing

    def _graceful(self) -> None:
        call = self.session.disconnect(self.sock)
        self.disconnect_call = call
        self.linger_deadline = time.monotonic() + self.options.linger
        self.server.when_done(call, self._disconnected)

    def _disconnected(self, call: Call) -> None:
        if self.peer_end is not None and not self.closing:
            self.close()

    # --- the client's end --------------------------------------------------------------------------
    def on_disconnect_event(self, flags: int) -> None:
        if flags & WSK_FLAG_ABORTIVE:
            self.reset_seen = True
            self._peer_ended(Ending.PEER_RST)
        elif self.stalled:
            self.peer_end = self.peer_end or Ending.PEER_FIN
        # a FIN is acted on when the receive reaches it (after the data)

    def _peer_ended(self, how: Ending) -> None:
        if how is Ending.PEER_RST:
            self.reset_seen = True
        if self.peer_end is None:
            self.peer_end = how
            self.peer_end_at = self.session.ends(self.sock).peer_at or time.time()
            if not self.triggered and self.options.after != Trigger():
                word = how.how.words if how.by_peer else short_status(self.peer_failure)
                self.report.inconclusive.append(
                    f"the client ended the connection ({word}) before the trigger "
                    f"({self.options.after.describe(self.options.mode)}): the {self.options.disconnect}"
                    " disconnect did not run as asked"
                )
        if self.closing:
            return
        if how is not Ending.PEER_FIN:
            self.close()
            return
        if self.stalled:
            return
        if not self.triggered:
            self.triggered = True
            self.timeline.note(f"trigger: the client's FIN -> {self.options.disconnect}")
        if self.options.disconnect == "never" and self.disconnect_call is None:
            self.timeline.note("answering the client's FIN with our own")
            self._graceful()
            return
        if self.disconnect_call is None:
            if not self.in_flight:
                self._act()
            return
        if self.disconnect_call.done:
            self.close()
        # else: closed when our disconnect completes

    # --- the end -------------------------------------------------------------------------------------
    def done_behaviour(self) -> bool:
        """The chosen disconnect behaviour ran (a disconnect was issued, or reading stopped)."""
        return self.disconnect_call is not None or self.stalled

    def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        call = self.session.close_socket(self.sock, timeout=10.0)
        self.close_call = call
        self.report.check(call.status == STATUS_SUCCESS, "WskCloseSocket did not succeed")
        self.finish()

    def finish(self) -> None:
        if self.done:
            return
        self.done = True
        for sending in [call for call in self.in_flight if call.done]:
            # Completed, but its completion is still on its way to this thread.
            self._count_sent(sending)
        from .serve_report import describe

        describe(self)
        self.session.forget(self.sock)
        self.server.finished(self)


class Server:
    """The listening socket, the connections, and the one thread that runs them."""

    def __init__(
        self,
        options: ServeOptions,
        on_report: Callable[[Report], None],
        on_accept: Callable[[Served], None] | None = None,
        keep_reports: bool = True,
    ) -> None:
        self.options = options
        self.on_report = on_report
        self.on_accept = on_accept
        self.keep_reports = keep_reports
        #: Outcome -> connections (every connection, even when reports are not kept).
        self.outcomes: dict[str, int] = {}
        self.refused = 0
        self.timeline = Timeline()
        self.session = Session(self.timeline, show_data=False)
        self.jobs: queue.Queue[Job | None] = queue.Queue()
        self.listener: WSK_SOCKET | None = None
        self.port = 0
        self.address: tuple[Any, ...] = (options.host, options.port)
        self.active: dict[WSK_SOCKET, Served] = {}
        self.count = 0
        self.reports: list[Report] = []
        self.accept_call: Call | None = None
        self.wire: CaptureWire | StateWire | None = None
        self._stop = threading.Event()
        #: Connections taken through WskAcceptEvent and not yet ended (counted as they come,
        #: on the provider's thread, so the cap holds before the server thread sees them).
        self._open = 0
        self._count_lock = threading.Lock()

    # --- plumbing --------------------------------------------------------------------------------
    def when_done(self, call: Call, handler: Callable[[Call], None]) -> None:
        """Run ``handler(call)`` on the server thread once ``call`` completed."""
        if not call.settle_later(lambda done: self.jobs.put((handler, done))):
            self.jobs.put((handler, call))

    def stop(self) -> None:
        """Ask :meth:`run` to end (from any thread)."""
        self._stop.set()
        self.jobs.put(None)

    def stop_from_signal(self) -> None:
        """Ask :meth:`run` to end from a signal handler: only an Event is set (the queue's
        lock may be held by the interrupted code); the loop sees it within a second."""
        self._stop.set()

    # --- the listening socket -----------------------------------------------------------------------
    def open(self) -> tuple[Any, ...]:
        options = self.options
        via_event = options.accept == "event"
        dispatch = (
            WSK_CLIENT_LISTEN_DISPATCH(WskAcceptEvent=self._accept_event) if via_event else None
        )
        events = (WSK_EVENT_ACCEPT | WSK_EVENT_DISCONNECT) if via_event else 0
        host = self._address_of(options.host)
        self.listener = self.session.listen(
            (host, options.port), context=self, dispatch=dispatch, events=events
        )
        local = self.session.local_address(self.listener)
        self.address = local if local else (host, options.port)
        self.port = int(self.address[1])
        if options.wire != "state":
            wire = open_wire(options.wire, self.session, self.timeline, self.port, host)
            if isinstance(wire, CaptureWire):
                self.wire = wire
            else:
                wire.stop()  # without a capture: one TCP-state reader per connection
        if not via_event:
            self._accept_next()
        return self.address

    def _address_of(self, host: str) -> str:
        """An address literal as it is; a name through WskGetAddressInfo (its first address,
        IPv4 first); raises SessionError."""
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            found = self.session.resolve(host, self.options.port, 10.0)
            if not found:
                raise SessionError(f"{host!r} has no IPv4 or IPv6 address") from None
            return str(found[0][0])
        return host

    def _accept_event(
        self,
        context: Any,
        flags: int,
        local: SOCKADDR | None,
        remote: SOCKADDR | None,
        sock: WSK_SOCKET | None,
        context_out: PPVOID[Any],
        dispatch_out: PPVOID[Any],
    ) -> int:
        """WskAcceptEvent, on the provider thread: take the socket, hand it to the server."""
        if sock is None:  # the listening socket stopped working
            self.jobs.put((self._listener_failed, None))
            return STATUS_REQUEST_NOT_ACCEPTED
        with self._count_lock:
            if self._open >= self.options.max_connections:
                # At the cap (--max-connections): refused, as WSK lets an application refuse.
                self.refused += 1
                return STATUS_REQUEST_NOT_ACCEPTED
            self._open += 1
        timeline = Timeline()
        conn = Connection("served", timeline=timeline)
        conn.socket = sock
        context_out.value = conn
        dispatch_out.value = self.session.connection_dispatch
        self.session.attach(sock, timeline)
        self.session.adopt(sock)
        self.session.tracer.callback(
            sock,
            "WskAcceptEvent",
            flags,
            f"WskAcceptEvent(Flags={flag_names(flags)}, remote "
            f"{describe_address(remote.to_tuple()) if remote is not None else '?'}) "
            "returned STATUS_SUCCESS: the socket is ours",
            time.time(),
        )
        self.jobs.put((self._adopt, (sock, conn, False)))
        return STATUS_SUCCESS

    def _accept_next(self) -> None:
        """Keep one WskAccept pending.  Its IRP is recorded in the timeline of the connection
        it will bring (only one is pending at a time), with that connection's context and our
        WSK_CLIENT_CONNECTION_DISPATCH as its AcceptSocketContext / AcceptSocketDispatch."""
        if self.listener is None or self._stop.is_set():
            return
        if len(self.active) >= self.options.max_connections:
            return  # at the cap: the next WskAccept waits until a connection ends
        conn = Connection("served", timeline=Timeline())
        assert conn.timeline is not None
        self.session.attach(self.listener, conn.timeline)
        call = self.session.accept(
            self.listener,
            context=conn,
            dispatch=self.session.connection_dispatch,
            remote=SOCKADDR_STORAGE(),
        )
        self.accept_call = call
        self.when_done(call, lambda done: self._accepted(done, conn))

    def _accepted(self, call: Call, conn: Connection) -> None:
        self.accept_call = None
        if call.status == STATUS_SUCCESS and isinstance(call.information, WSK_SOCKET):
            sock = call.information
            assert conn.timeline is not None
            conn.timeline.t0 = call.completed_at or time.time()
            conn.socket = sock
            self.session.adopt(sock)
            self.session.attach(sock, conn.timeline)
            self._adopt((sock, conn, True))
            self._accept_next()
        elif not self._stop.is_set():
            self._listener_failed(call.status)

    def _listener_failed(self, status: Any) -> None:
        self.timeline.note(f"the listening socket failed ({short_status(status)})")
        self.stop()

    def _adopt(self, item: tuple[WSK_SOCKET, Connection, bool]) -> None:
        sock, conn, via_irp = item
        self.count += 1
        served = Served(self, sock, conn, self.count)
        conn.on_disconnect = lambda _c, flags: self.jobs.put((served.on_disconnect_event, flags))
        self.active[sock] = served
        if self.on_accept is not None:
            served.remote = self.session.remote_address(sock)
            self.on_accept(served)
        if self._stop.is_set():
            served.interrupted = "the server shut down"
            served.close()
            return
        served.start(via_irp)

    def finished(self, served: Served) -> None:
        self.active.pop(served.sock, None)
        if self.options.accept == "event":
            with self._count_lock:
                self._open -= 1
        report = served.report
        self.outcomes[report.outcome] = self.outcomes.get(report.outcome, 0) + 1
        if self.keep_reports:
            self.reports.append(report)
        self.on_report(report)
        if self.options.accept == "irp" and self.accept_call is None:
            self._accept_next()  # below the cap again
        limit = self.options.connections
        if limit is not None and self.ended >= limit:
            self.stop()

    @property
    def ended(self) -> int:
        return sum(self.outcomes.values())

    # --- the loop ------------------------------------------------------------------------------------
    def run(self) -> list[Report]:
        """Serve until ``connections`` ended, ``duration`` passed, or :meth:`stop`."""
        end = (
            time.monotonic() + self.options.duration if self.options.duration is not None else None
        )
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if end is not None and now >= end:
                    break
                deadlines = [
                    d for s in self.active.values() if (d := s.next_deadline()) is not None
                ]
                if end is not None:
                    deadlines.append(end)
                timeout = min(deadlines) - now if deadlines else 1.0
                try:
                    job = self.jobs.get(timeout=max(min(timeout, 1.0), 0.0))
                except queue.Empty:
                    job = None
                if job is not None:
                    handler, arg = job
                    handler(arg)
                now = time.monotonic()
                for served in list(self.active.values()):
                    served.on_timer(now)
        finally:
            self.shutdown()
        return self.reports

    def shutdown(self) -> None:
        """Close the listener and every connection still open (their reports are written)."""
        self._stop.set()
        if self.listener is not None:
            listener, self.listener = self.listener, None
            self.session.close_socket(listener)
        for served in list(self.active.values()):
            served.timeline.note("the server is shutting down")
            served.interrupted = served.interrupted or "the server shut down"
            served.close()
        # Connections accepted but not yet taken up are reported too (closed at once, with
        # our RST); other jobs (completions on their way) have nothing left to do.
        while True:
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None and job[0] == self._adopt:
                job[0](job[1])
        if self.wire is not None:
            if self.options.pcap and isinstance(self.wire, CaptureWire):
                self.wire.sync()
                self.wire.save(self.options.pcap)
            self.wire.stop()
        self.session.close()
