"""``pywsk serve``: a WSK server with a chosen behaviour, logging every connection's end.

What it does: :class:`Server` makes a listening socket (WskSocket with
WSK_FLAG_LISTEN_SOCKET, then WskBind, which binds and listens) and takes connections either
through WskAcceptEvent (``accept="event"``; the accepted sockets inherit
WSK_EVENT_DISCONNECT from the listener) or through a WskAccept kept pending
(``accept="irp"``; WSK_EVENT_DISCONNECT is then enabled on each accepted socket).  Each
connection is a :class:`~pywsk.cli.serve_connection.Served`, which serves it in one of four
modes (``echo``, ``sink``, ``source``, ``http-ok``) and disconnects in one of five ways
(``graceful``, ``abortive``, ``half-open``, ``stall``, ``never``) once its *trigger* fires -
the options are in :mod:`pywsk.cli.serve_options`.  When a connection ends, its report - the
same timeline as ``demo`` and ``probe``, with the client as the peer - goes to
``on_report``.  The names of those two modules are importable from here too.

Everything the server decides runs in one thread (:meth:`Server.run`): completion routines
and event callbacks only put what happened on a queue.  So no lock is ever held across a WSK
call, and nothing recurses through inline completions.

What it refuses: an address it cannot bind (:class:`~pywsk.cli.session.SessionError`);
connections beyond ``max_connections`` (WskAcceptEvent returns
STATUS_REQUEST_NOT_ACCEPTED; with WskAccept, the next one waits).

What always holds: every wait is bounded - the queue is read with a timeout that is the
nearest deadline (a trigger, a linger, an idle timeout, the end of ``duration``); at exit
every socket is closed and the client deregistered.
"""

from __future__ import annotations

import ipaddress
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from ..nt import STATUS_REQUEST_NOT_ACCEPTED, STATUS_SUCCESS
from ..wsk import (
    PPVOID,
    SOCKADDR,
    SOCKADDR_STORAGE,
    WSK_CLIENT_LISTEN_DISPATCH,
    WSK_EVENT_ACCEPT,
    WSK_EVENT_DISCONNECT,
    WSK_SOCKET,
)
from .serve_connection import ECHO_WINDOW, EXPECTED, HTTP_OK, REQUEST_LIMIT, Served
from .serve_options import (
    CHUNK,
    DISCONNECTS,
    IDLE_TIMEOUT,
    MAX_CONNECTIONS,
    MODES,
    Disconnect,
    Mode,
    ServeOptions,
    Trigger,
)
from .session import Call, Connection, Session, SessionError, describe_address, flag_names
from .timeline import Report, Timeline, short_status
from .wire import CaptureWire, StateWire, open_wire

__all__ = [
    "CHUNK",
    "DISCONNECTS",
    "ECHO_WINDOW",
    "EXPECTED",
    "HTTP_OK",
    "IDLE_TIMEOUT",
    "MAX_CONNECTIONS",
    "MODES",
    "REQUEST_LIMIT",
    "Disconnect",
    "Mode",
    "ServeOptions",
    "Served",
    "Server",
    "Trigger",
]

Job = tuple[Callable[[Any], None], Any]


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
