"""One connection served by ``pywsk serve``: its I/O, its trigger, its disconnect, its report.

What it does: :class:`Served` serves one accepted socket in the chosen mode (``echo``: one
WskSend per WskReceive, up to :data:`ECHO_WINDOW` in flight; ``sink``: count and drop;
``source``: 64 KiB sends of a pattern, one after another; ``http-ok``: read a request up to its
blank line and answer ``200 OK``), watches its trigger (bytes, seconds, or the mode's natural
point), performs the chosen disconnect once (graceful, abortive, half-open, stall, never),
follows the client's FIN or RST, and when the connection ends writes its report (the same
timeline as ``demo`` and ``probe``; :mod:`pywsk.cli.serve_report` words it) and hands it to
the :class:`~pywsk.cli.serve.Server`.

What it refuses: to act before the sends in progress completed (the disconnect waits for
them), to act twice, and to read once stalled or closing.

What always holds: every method runs on the server's one thread - completions come back
through :meth:`~pywsk.cli.serve.Server.when_done`, so no lock is held across a WSK call; each
send is counted once, when its completion is handled; every wait it asks for is a deadline
(:meth:`Served.next_deadline`) the server's loop honours; :meth:`Served.close` closes the
socket and reports once.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..core.ending import Ending
from ..nt import (
    STATUS_CANCELLED,
    STATUS_CONNECTION_RESET,
    STATUS_SUCCESS,
)
from ..wsk import WSK_EVENT_DISCONNECT, WSK_FLAG_ABORTIVE, WSK_SOCKET
from .probe_run import pattern
from .serve_options import CHUNK, Trigger
from .session import Call, Connection, SessionError, describe_address
from .timeline import Report, Timeline, short_status
from .wire import StateWire

if TYPE_CHECKING:
    from .serve import Server

__all__ = ["ECHO_WINDOW", "EXPECTED", "HTTP_OK", "REQUEST_LIMIT", "Served"]

#: Echo sends in flight at most: a WskSend completes when the client acknowledged it, so one
#: at a time would wait a round trip (and a delayed ACK) per 64 KiB.  Memory stays bounded.
ECHO_WINDOW = 4
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
