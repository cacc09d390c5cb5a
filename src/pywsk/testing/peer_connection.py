"""What the loopback test peer does on one connection: its I/O, its view of the end, its steps.

What it does: :class:`PeerConnection` is one accepted connection as a script sees it -
bounded reads and sends, ``shutdown(SHUT_WR)``, an abortive close, ``TCP_QUICKACK`` - and
records what happened (bytes, times, a log) into a :class:`PeerObservation`.  It classifies
how the client's side ended the robust way (``TCP_INFO`` state and ``SO_ERROR``, not just
``recv``): ``"fin"``, ``"rst"``, ``"fin+rst"`` or ``"open"`` (see :mod:`pywsk.testing.peer`).
The script steps (:class:`ReadToEnd`, :class:`Send`, :class:`ShutdownWrite`, :class:`Abort`,
:class:`WaitFor`, ...) are small callables over a :class:`PeerConnection`.  Starting the peer,
its threads and waiting for what it saw are :class:`~pywsk.testing.peer.LoopbackPeer`'s part,
in :mod:`pywsk.testing.peer`, from where every name here is importable too.

What it refuses: to wait without a bound (every method takes a timeout, by default the
peer's ``step_timeout``, and raises TimeoutError when it passes); to go on once the peer is
closed (:class:`PeerStopped` is raised inside the script).

What always holds: every change to the record happens under the peer's condition and wakes
its waiters; every wait also watches the peer's wake-up socket, so
:meth:`~pywsk.testing.peer.LoopbackPeer.close` always ends a script promptly; an end once
seen is only ever upgraded (``"fin"`` to ``"fin+rst"``), never lost.
"""

from __future__ import annotations

import errno
import select
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from pywsk.core.ending import How
from pywsk.testing.tcp import (
    CLOSE,
    abort_with_rst,
    set_linger_abort,
    set_quickack,
    so_error,
    tcp_state,
)

if TYPE_CHECKING:
    from pywsk.testing.peer import LoopbackPeer

__all__ = [
    "End",
    "PeerObservation",
    "PeerConnection",
    "PeerScriptError",
    "PeerStopped",
    "Step",
    "Script",
    "ReadToEnd",
    "Read",
    "Send",
    "ShutdownWrite",
    "Abort",
    "Close",
    "WaitFor",
    "AwaitRstAfterFin",
    "QuickAck",
]

#: How the client ended its side as this peer saw it, or ``"open"`` while it has not.
End = How | Literal["open"]

_EVENT_SLICE = 0.05  # how often WaitFor looks at the stop flag while waiting on an Event


class PeerStopped(Exception):
    """Raised inside a script when :meth:`LoopbackPeer.close` interrupts it."""


class PeerScriptError(RuntimeError):
    """A peer script raised; the original exception is ``__cause__``."""


@dataclass(frozen=True)
class PeerObservation:
    """What the peer saw on one connection (a snapshot; times are :func:`time.time`)."""

    index: int
    """0 for the first accepted connection, 1 for the next, ..."""
    client: tuple[str, int]
    """The client's address as the peer saw it (its port is the client's local port)."""
    local: tuple[str, int]
    accepted_at: float
    received: bytes
    sent: bytes
    end: End
    eof_at: float | None
    """When ``recv()`` returned ``b""`` (a FIN, possibly followed by an RST)."""
    rst_at: float | None
    """When the RST was seen (``ECONNRESET``, or ``CLOSE``/``EPIPE`` after a FIN)."""
    end_state: int | None
    """``tcpi_state`` when the end was seen (``CLOSE_WAIT`` for a FIN, ``CLOSE`` for RST)."""
    end_errno: int | None
    """``SO_ERROR`` read when ``recv()`` returned ``b""`` with state ``CLOSE``."""
    steps_done: int
    done: bool
    """The script has finished (normally, with an error, or stopped by close())."""
    stopped: bool
    """close() interrupted the script."""
    error: BaseException | None
    log: tuple[tuple[float, str], ...]
    """What the peer did and saw, in order: ``(time, "shutdown(SHUT_WR)")``, ..."""

    @property
    def received_total(self) -> int:
        return len(self.received)

    @property
    def sent_total(self) -> int:
        return len(self.sent)

    @property
    def ended(self) -> bool:
        return self.end != "open"

    def describe(self) -> str:
        lines = [
            f"connection {self.index} from {self.client}: end={self.end}, "
            f"received {self.received_total} B, sent {self.sent_total} B, "
            f"steps done {self.steps_done}, done={self.done}, error={self.error!r}"
        ]
        lines += [f"  {(t - self.accepted_at) * 1e3:9.3f} ms {text}" for t, text in self.log]
        return "\n".join(lines)


@dataclass
class _Record:
    index: int
    client: tuple[str, int]
    local: tuple[str, int]
    accepted_at: float
    received: bytearray = field(default_factory=bytearray)
    sent: bytearray = field(default_factory=bytearray)
    end: End = "open"
    eof_at: float | None = None
    rst_at: float | None = None
    end_state: int | None = None
    end_errno: int | None = None
    steps_done: int = 0
    done: bool = False
    stopped: bool = False
    error: BaseException | None = None
    log: list[tuple[float, str]] = field(default_factory=list)
    shut_wr: bool = False

    def snapshot(self) -> PeerObservation:
        return PeerObservation(
            index=self.index,
            client=self.client,
            local=self.local,
            accepted_at=self.accepted_at,
            received=bytes(self.received),
            sent=bytes(self.sent),
            end=self.end,
            eof_at=self.eof_at,
            rst_at=self.rst_at,
            end_state=self.end_state,
            end_errno=self.end_errno,
            steps_done=self.steps_done,
            done=self.done,
            stopped=self.stopped,
            error=self.error,
            log=tuple(self.log),
        )


class PeerConnection:
    """One accepted connection, as handed to script steps. All I/O is bounded.

    ``timeout=None`` in a method means the peer's ``step_timeout``. :attr:`sock` is
    non-blocking; use the methods (they wait with a bound and wake on close()), or wait
    on it yourself with a bound.
    """

    def __init__(self, peer: LoopbackPeer, sock: socket.socket, record: _Record) -> None:
        self.peer = peer
        self.sock = sock
        self._record = record
        sock.setblocking(False)

    @property
    def index(self) -> int:
        return self._record.index

    @property
    def end(self) -> End:
        with self.peer._cond:
            return self._record.end

    def observation(self) -> PeerObservation:
        with self.peer._cond:
            return self._record.snapshot()

    def log(self, text: str) -> None:
        with self.peer._cond:
            self._record.log.append((time.time(), text))
            self.peer._cond.notify_all()

    # -- waiting -------------------------------------------------------------------------------

    def _deadline(self, timeout: float | None) -> float:
        return time.monotonic() + (self.peer.step_timeout if timeout is None else timeout)

    def _poll(self, events: int, deadline: float, what: str) -> int:
        """Wait for ``events`` on the socket (or ERR/HUP); raise on stop or timeout."""
        poller = select.poll()
        poller.register(self.sock, events)
        poller.register(self.peer._wake_r, select.POLLIN)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"peer: timed out waiting to {what}")
            for fd, revents in poller.poll(remaining * 1000):
                if fd == self.peer._wake_r.fileno():
                    raise PeerStopped(f"peer closed while waiting to {what}")
                return revents

    def wait(self, event: threading.Event, timeout: float | None = None) -> None:
        """Block until the test sets ``event`` (bounded; interrupted by close())."""
        deadline = self._deadline(timeout)
        self.log("waiting for go-ahead")
        while not event.wait(min(max(deadline - time.monotonic(), 0.0), _EVENT_SLICE)):
            if self.peer._stopping.is_set():
                raise PeerStopped("peer closed while waiting for go-ahead")
            if time.monotonic() >= deadline:
                raise TimeoutError("peer: go-ahead event was never set")
        self.log("go-ahead")

    # -- receiving -----------------------------------------------------------------------------

    def recv_some(self, max_bytes: int = 65536, timeout: float | None = None) -> bytes:
        """Receive what is there (waiting for something); ``b""`` once the end is seen.

        A FIN or an RST is classified and recorded (see the module docstring); read
        :attr:`end` to tell them apart.
        """
        if self.end != "open":
            return b""
        deadline = self._deadline(timeout)
        while True:
            self._poll(select.POLLIN, deadline, "receive")
            try:
                data = self.sock.recv(max_bytes)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                self._set_end(How.RST, time.time(), state=tcp_state(self.sock))
                return b""
            if data:
                with self.peer._cond:
                    self._record.received += data
                    self.peer._cond.notify_all()
                return data
            self._classify_eof()
            return b""

    def _classify_eof(self) -> None:
        now = time.time()
        state = tcp_state(self.sock)
        if state != CLOSE:
            self._set_end(How.FIN, now, state=state)
            return
        err = so_error(self.sock)
        with self.peer._cond:
            shut_wr = self._record.shut_wr
        # CLOSE after our own FIN was ACKed is an ordinary close; EPIPE is a later RST.
        if err in (errno.EPIPE, errno.ECONNRESET) or not shut_wr:
            self._set_end(How.FIN_THEN_RST, now, state=state, err=err)
        else:
            self._set_end(How.FIN, now, state=state, err=err)

    def _set_end(self, end: End, when: float, *, state: int, err: int | None = None) -> None:
        with self.peer._cond:
            record = self._record
            record.end = end
            record.end_state = state
            record.end_errno = err
            if end != "open" and end.sent_fin and record.eof_at is None:
                record.eof_at = when
            if end != "open" and end.sent_rst:
                record.rst_at = when
            record.log.append((when, f"end: {end}"))
            self.peer._cond.notify_all()

    def read(self, size: int, timeout: float | None = None) -> bytes:
        """Receive exactly ``size`` bytes; :class:`EOFError` if the client ends first."""
        deadline = self._deadline(timeout)
        chunks = bytearray()
        while len(chunks) < size:
            data = self.recv_some(size - len(chunks), max(deadline - time.monotonic(), 0.0))
            if not data:
                raise EOFError(f"peer: client ended ({self.end}) after {len(chunks)}/{size} B")
            chunks += data
        return bytes(chunks)

    def read_to_end(self, timeout: float | None = None, *, quickack: bool = True) -> End:
        """Receive everything until the client's FIN or RST; return how it ended.

        With ``quickack`` the peer sets ``TCP_QUICKACK`` on EOF, so the client's FIN is
        ACKed now instead of after the delayed-ACK timer (up to 40 ms).
        """
        deadline = self._deadline(timeout)
        while self.recv_some(timeout=max(deadline - time.monotonic(), 0.0)):
            pass
        end = self.end
        if quickack and end is How.FIN:
            self.quickack()
        return end

    def await_rst_after_fin(self, timeout: float | None = None) -> bool:
        """After a ``"fin"``, wait (bounded) for an RST; upgrade to ``"fin+rst"`` if seen.

        Returns whether the RST came. Not usable after this peer shut down its own side
        (then ``HUP`` is always set and a later RST may never reach this socket).
        """
        if self.end is not How.FIN:
            return self.end is How.FIN_THEN_RST
        with self.peer._cond:
            if self._record.shut_wr:
                raise RuntimeError("await_rst_after_fin() after this peer's own shutdown")
        deadline = self._deadline(timeout)
        try:
            self._poll(0, deadline, "see an RST after the FIN")  # 0: only ERR/HUP report
        except TimeoutError:
            return False
        self._set_end(
            How.FIN_THEN_RST, time.time(), state=tcp_state(self.sock), err=so_error(self.sock)
        )
        return True

    # -- acting --------------------------------------------------------------------------------

    def send(self, data: bytes, timeout: float | None = None) -> None:
        """Send all of ``data`` (bounded: :class:`TimeoutError` if the client never reads)."""
        deadline = self._deadline(timeout)
        view = memoryview(data)
        while view:
            self._poll(select.POLLOUT, deadline, f"send {len(view)} more bytes")
            try:
                n = self.sock.send(view)
            except BlockingIOError:
                continue
            with self.peer._cond:
                self._record.sent += view[:n]
                self.peer._cond.notify_all()
            view = view[n:]
        self.log(f"sent {len(data)} B")

    def shutdown_write(self) -> None:
        """``shutdown(SHUT_WR)``: a graceful FIN after whatever was sent."""
        self.sock.shutdown(socket.SHUT_WR)
        with self.peer._cond:
            self._record.shut_wr = True
        self.log("shutdown(SHUT_WR)")

    def abort(self, *, linger: bool = False) -> None:
        """Send an RST now: ``connect(AF_UNSPEC)`` (fd kept), or ``SO_LINGER{1,0}`` + close."""
        if linger:
            set_linger_abort(self.sock)
            self.sock.close()
            self.log("abort: SO_LINGER{1,0} + close()")
        else:
            abort_with_rst(self.sock)
            self.log("abort: connect(AF_UNSPEC)")

    def close(self) -> None:
        """Plain ``close()``: a FIN, or an RST if unread data is queued (Linux)."""
        self.sock.close()
        self.log("close()")

    def quickack(self) -> None:
        """``TCP_QUICKACK``: ACK what has been received now."""
        set_quickack(self.sock)


# --- script steps ---------------------------------------------------------------------------

Step = Callable[[PeerConnection], object]
Script = Sequence[Step] | Step


@dataclass(frozen=True)
class ReadToEnd:
    """Read and record everything until the client's FIN or RST."""

    timeout: float | None = None
    quickack: bool = True

    def __call__(self, conn: PeerConnection) -> End:
        return conn.read_to_end(self.timeout, quickack=self.quickack)


@dataclass(frozen=True)
class Read:
    """Read exactly ``size`` bytes (:class:`EOFError` if the client ends first)."""

    size: int
    timeout: float | None = None

    def __call__(self, conn: PeerConnection) -> bytes:
        return conn.read(self.size, self.timeout)


@dataclass(frozen=True)
class Send:
    """Send ``data`` completely (bounded)."""

    data: bytes
    timeout: float | None = None

    def __call__(self, conn: PeerConnection) -> None:
        conn.send(self.data, self.timeout)


@dataclass(frozen=True)
class ShutdownWrite:
    """``shutdown(SHUT_WR)``: a graceful FIN."""

    def __call__(self, conn: PeerConnection) -> None:
        conn.shutdown_write()


@dataclass(frozen=True)
class Abort:
    """RST: ``connect(AF_UNSPEC)``, or with ``linger=True`` ``SO_LINGER{1,0}`` + close."""

    linger: bool = False

    def __call__(self, conn: PeerConnection) -> None:
        conn.abort(linger=self.linger)


@dataclass(frozen=True)
class Close:
    """Plain ``close()`` (FIN; RST if unread data is queued)."""

    def __call__(self, conn: PeerConnection) -> None:
        conn.close()


@dataclass(frozen=True)
class WaitFor:
    """Pause until the test sets ``event`` (bounded; the peer reads nothing meanwhile)."""

    event: threading.Event
    timeout: float | None = None

    def __call__(self, conn: PeerConnection) -> None:
        conn.wait(self.event, self.timeout)


@dataclass(frozen=True)
class AwaitRstAfterFin:
    """After a FIN was read, wait up to ``timeout`` for an RST (``"fin"`` → ``"fin+rst"``)."""

    timeout: float | None = None

    def __call__(self, conn: PeerConnection) -> bool:
        return conn.await_rst_after_fin(self.timeout)


@dataclass(frozen=True)
class QuickAck:
    """``TCP_QUICKACK``: ACK what has been received now."""

    def __call__(self, conn: PeerConnection) -> None:
        conn.quickack()
