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

This module is the peer's plumbing: the listening socket, the accept thread, one script
thread per connection, and the bounded waits for what the peer saw.  What the peer does on a
connection - :class:`PeerConnection`, :class:`PeerObservation` and the steps - lives in
:mod:`pywsk.testing.peer_connection`; every one of those names is importable from here.

What it refuses: ``connections`` below 1 (ValueError); starting twice or after close(), and
asking for the address before start() (RuntimeError).  A script that raised is reported as
:class:`PeerScriptError` by the waits that see it; a wait that runs out raises TimeoutError
with what the peer saw so far.

What always holds: every wait is bounded, nothing sleeps to synchronise, and
:meth:`LoopbackPeer.close` always stops the threads: all peer I/O waits on a wake-up socket
as well as on the connection.
"""

from __future__ import annotations

import contextlib
import functools
import select
import socket
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Self

from pywsk.testing.peer_connection import (
    Abort,
    AwaitRstAfterFin,
    Close,
    End,
    PeerConnection,
    PeerObservation,
    PeerScriptError,
    PeerStopped,
    QuickAck,
    Read,
    ReadToEnd,
    Script,
    Send,
    ShutdownWrite,
    Step,
    WaitFor,
    _Record,
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
