"""A scripted, plain-socket TCP peer on loopback, for testing a client against a real kernel.

:class:`LoopbackPeer` listens on an ephemeral port of ``127.0.0.1`` or ``::1``, accepts
one connection (or ``connections=N``) and runs a *script* against each in a background
thread, in the spirit of urllib3's ``SocketDummyServerTestCase``. A script is a sequence
of small steps (:class:`ReadToEnd`, :class:`Send`, :class:`ShutdownWrite`,
:class:`Abort`, :class:`WaitFor`, ...), or one callable that receives the
:class:`PeerConnection` and does what it likes.

What the peer saw is a :class:`PeerObservation`: the bytes received and sent, and how the
client's side ended - a :class:`pywsk.core.ending.How` (the one vocabulary of endings; its
values are the strings below, so ``end == "fin"`` holds for ``How.FIN``), or ``"open"`` -
classified the robust way (``TCP_INFO`` state, not just ``recv``):

* ``"fin"``: ``recv()`` returned ``b""`` and the state is not ``CLOSE`` (normally
  ``CLOSE_WAIT``), or it is ``CLOSE`` only because this peer had shut down first.
* ``"rst"``: ``recv()`` raised ``ECONNRESET`` (any data sent before the RST is
  received first).
* ``"fin+rst"``: ``recv()`` returned ``b""`` but the state is ``CLOSE`` (``SO_ERROR`` is
  ``EPIPE``): a FIN and then an RST arrived. :class:`AwaitRstAfterFin` upgrades a
  ``"fin"`` the same way when the RST arrives after the peer had already read the EOF.
* ``"open"``: the peer has not seen the client's end (yet).

Every wait is bounded, nothing sleeps to synchronise, and :meth:`LoopbackPeer.close`
always stops the threads: all peer I/O waits on a wake-up socket as well as on the
connection.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import select
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, Self

from pywsk.core.ending import How
from pywsk.testing.tcp import (
    CLOSE,
    abort_with_rst,
    set_linger_abort,
    set_quickack,
    so_error,
    tcp_state,
)

__all__ = [
    "End",
    "PeerObservation",
    "PeerConnection",
    "PeerScriptError",
    "PeerStopped",
    "LoopbackPeer",
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


# --- the peer ---------------------------------------------------------------------------------


class LoopbackPeer:
    """A scripted TCP peer on ``127.0.0.1`` or ``::1`` that runs in background threads.

    ``script`` runs once per accepted connection: a sequence of steps, or a single
    callable taking a :class:`PeerConnection`. The default (empty) script never reads.
    ``rcvbuf``/``sndbuf`` are set on the listening socket before ``listen()`` so that
    accepted connections inherit them (a small ``rcvbuf`` makes the client's window fill).
    After ``connections`` accepts, the listening socket is closed. Connections stay
    open after the script until :meth:`close`. Use as a context manager.
    """

    def __init__(
        self,
        script: Script = (),
        *,
        host: str = "127.0.0.1",
        connections: int = 1,
        rcvbuf: int | None = None,
        sndbuf: int | None = None,
        step_timeout: float = 10.0,
    ) -> None:
        if connections < 1:
            raise ValueError("connections must be at least 1")
        self.script = script
        self.host = host
        self.connections = connections
        self.rcvbuf = rcvbuf
        self.sndbuf = sndbuf
        self.step_timeout = step_timeout
        self.family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._cond = threading.Condition()
        self._records: list[_Record] = []
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._listener: socket.socket | None = None
        self._address: tuple[str, int] | None = None
        self._accept_error: BaseException | None = None
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind, listen and start accepting in a background thread."""
        if self._listener is not None or self._closed:
            raise RuntimeError("LoopbackPeer.start() called twice or after close()")
        listener = socket.socket(self.family, socket.SOCK_STREAM)
        try:
            if self.rcvbuf is not None:
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
            if self.sndbuf is not None:
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.sndbuf)
            listener.bind((self.host, 0))
            listener.listen(self.connections)
            listener.setblocking(False)
        except BaseException:
            listener.close()
            raise
        self._listener = listener
        host, port = listener.getsockname()[:2]
        self._address = (host, port)
        self._spawn(self._accept_loop, "LoopbackPeer-accept")
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Stop every thread (bounded) and close every socket. Idempotent."""
        if self._closed:
            return
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        deadline = time.monotonic() + timeout
        with self._cond:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(deadline - time.monotonic(), 0.0))
        with self._cond:
            # The accept thread may have spawned a handler before it saw the stop.
            threads = list(self._threads)
            sockets = list(self._sockets)
        for thread in threads:
            thread.join(max(deadline - time.monotonic(), 0.0))
        alive = [t.name for t in threads if t.is_alive()]
        for sock in sockets:
            sock.close()
        if self._listener is not None:
            self._listener.close()
        self._wake_r.close()
        self._wake_w.close()
        if alive:
            raise RuntimeError(f"LoopbackPeer threads did not stop: {alive}")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` to connect to."""
        if self._address is None:
            raise RuntimeError("LoopbackPeer is not started")
        return self._address

    @property
    def port(self) -> int:
        return self.address[1]

    # -- threads -----------------------------------------------------------------------------------

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        with self._cond:
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        poller = select.poll()
        poller.register(listener, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        try:
            for index in range(self.connections):
                while True:
                    ready = {fd for fd, _ in poller.poll()}
                    if self._wake_r.fileno() in ready:
                        return
                    try:
                        sock, client = listener.accept()
                    except BlockingIOError:
                        continue
                    break
                record = _Record(
                    index=index,
                    client=client[:2],
                    local=sock.getsockname()[:2],
                    accepted_at=time.time(),
                )
                with self._cond:
                    if self._stopping.is_set():
                        sock.close()
                        return
                    self._sockets.append(sock)
                    self._records.append(record)
                    record.log.append((record.accepted_at, f"accepted {client[:2]}"))
                    self._cond.notify_all()
                conn = PeerConnection(self, sock, record)
                self._spawn(functools.partial(self._run_script, conn), f"LoopbackPeer-{index}")
        except BaseException as e:
            with self._cond:
                self._accept_error = e
                self._cond.notify_all()
        finally:
            listener.close()

    def _run_script(self, conn: PeerConnection) -> None:
        record = conn._record
        error: BaseException | None = None
        stopped = False
        try:
            script = self.script
            if isinstance(script, Sequence):
                for step in script:
                    step(conn)
                    with self._cond:
                        record.steps_done += 1
            else:
                script(conn)
                with self._cond:
                    record.steps_done += 1
        except PeerStopped:
            stopped = True
        except BaseException as e:
            error = e
        with self._cond:
            record.done = True
            record.stopped = stopped
            record.error = error
            record.log.append((time.time(), f"script failed: {error!r}" if error else "done"))
            self._cond.notify_all()

    # -- results -----------------------------------------------------------------------------------

    def _wait(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        with self._cond:
            self._cond.wait_for(
                lambda: ready() or self._accept_error is not None or self._closed, timeout
            )
            if ready():
                return
            if self._accept_error is not None:
                raise PeerScriptError(f"peer accept failed while waiting for {what}") from (
                    self._accept_error
                )
            detail = self._describe_locked()
        state = "peer closed" if self._closed else f"timed out after {timeout} s"
        raise TimeoutError(f"{state} waiting for {what}\n{detail}")

    def _describe_locked(self) -> str:
        if not self._records:
            return "(no connection accepted)"
        return "\n".join(r.snapshot().describe() for r in self._records)

    def observation(self, index: int = 0) -> PeerObservation:
        """The current snapshot for connection ``index`` (no waiting)."""
        with self._cond:
            return self._records[index].snapshot()

    def observations(self) -> list[PeerObservation]:
        """Current snapshots of every accepted connection."""
        with self._cond:
            return [r.snapshot() for r in self._records]

    def wait_accepted(self, timeout: float = 5.0, count: int = 1) -> PeerObservation:
        """Block until ``count`` connections are accepted; return the last one's snapshot."""
        self._wait(lambda: len(self._records) >= count, timeout, f"{count} accepted connections")
        return self.observation(count - 1)

    def wait_end(self, timeout: float = 5.0, index: int = 0) -> PeerObservation:
        """Block until connection ``index`` has seen the client's end (FIN/RST).

        Raises :class:`PeerScriptError` if the script failed first, and
        :class:`TimeoutError` if it finished (or the timeout passed) without seeing it.
        """

        def ready() -> bool:
            if len(self._records) <= index:
                return False
            record = self._records[index]
            return record.end != "open" or record.done

        self._wait(ready, timeout, f"the client's end on connection {index}")
        observation = self.observation(index)
        if observation.ended:
            return observation
        if observation.error is not None:
            raise PeerScriptError(observation.describe()) from observation.error
        raise TimeoutError(
            "peer script finished without seeing the client's end\n" + observation.describe()
        )

    def wait_received(self, size: int, timeout: float = 5.0, index: int = 0) -> PeerObservation:
        """Block until connection ``index`` has received at least ``size`` bytes.

        Raises :class:`TimeoutError` if the timeout passes, or the client's end or the
        script's end comes first with fewer bytes.
        """

        def ready() -> bool:
            if len(self._records) <= index:
                return False
            record = self._records[index]
            return len(record.received) >= size or record.end != "open" or record.done

        self._wait(ready, timeout, f"{size} B received on connection {index}")
        observation = self.observation(index)
        if observation.received_total < size:
            raise TimeoutError(
                f"peer got only {observation.received_total}/{size} B\n" + observation.describe()
            )
        return observation

    def result(self, timeout: float = 5.0, index: int = 0) -> PeerObservation:
        """Block until the script on connection ``index`` is done; re-raise its failure."""
        self._wait(
            lambda: len(self._records) > index and self._records[index].done,
            timeout,
            f"the script on connection {index} to finish",
        )
        observation = self.observation(index)
        if observation.error is not None:
            raise PeerScriptError(observation.describe()) from observation.error
        return observation

    def results(self, timeout: float = 5.0) -> list[PeerObservation]:
        """:meth:`result` for all ``connections`` (one shared deadline)."""
        deadline = time.monotonic() + timeout
        return [
            self.result(max(deadline - time.monotonic(), 0.0), index)
            for index in range(self.connections)
        ]
