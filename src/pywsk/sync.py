"""pywsk for scripts: blocking WSK connections with timeouts, in the style of KSOCKET.

What it does: :func:`connect` gives a :class:`Connection` with ``send``, ``recv``,
``disconnect``, ``abort`` and ``close``; :func:`listen` gives a :class:`Listener` with
``accept``.  Each operation is a WSK call on its own IRP, exactly as a KSOCKET-style
driver makes it: a completion routine that sets a KEVENT and returns
STATUS_MORE_PROCESSING_REQUIRED, and ``KeWaitForSingleObject`` on that event in the
calling thread (PASSIVE_LEVEL) - with the timeout you give.  The calls are those of the
driver-style client runtime (:mod:`pywsk.client`, one :class:`~pywsk.client.Client` per
process: :func:`client`), issued on the calling thread; its tracer sees them
(docs/tracing.md).

What it refuses: to report a timeout as success.  ``KeWaitForSingleObject`` answers
STATUS_TIMEOUT, which ``NT_SUCCESS`` counts as a *success* code - the trap of wrappers that
return it as if the request had completed.  Here a timeout cancels the IRP (IoCancelIrp),
waits for its completion, and then:

* the cancel won (STATUS_CANCELLED): the request had no effect, and
  :class:`~pywsk.errors.WskTimeoutError` (a ``TimeoutError``, ``.status`` STATUS_TIMEOUT) is
  raised;
* the request completed anyway: its real result is returned (data received, bytes sent)
  or its real failure raised.  Nothing is lost.

A WskSend completes only once the peer has acknowledged its data.  A send that times out
after the transport had started taking it cannot be recalled: its cancel aborts the
connection (an RST, as the provider documents for such a cancel), ``WskTimeoutError`` is
raised, and the connection is over (:attr:`Connection.disconnected_by` is ``OUR_RST``).  A graceful ``disconnect`` is not cancelled by its timeout (a FIN
cannot be recalled): ``WskTimeoutError`` is raised and calling ``disconnect()`` again waits
for the same disconnect.

What always holds: every IRP is complete, and freed, before the call that issued it
returns (except a timed-out disconnect, which the connection keeps); failures are
:mod:`pywsk.errors` exceptions.  ``close()`` is WskCloseSocket: **it resets (RST) a
connection that is not disconnected in both directions** - ``disconnect()``, ``recv()``
until ``b""``, then ``close()`` is the graceful path.  A Connection may be used by one
sending and one receiving thread at once; ``abort()`` and ``close()`` from any thread.
How a connection ended is said in :class:`~pywsk.core.ending.Ending`'s words
(:attr:`Connection.disconnected_by`).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import threading
from collections.abc import Generator, Iterator, Sequence
from types import SimpleNamespace, TracebackType
from typing import Any, Final, TypeVar

from ._log import log_connect, log_settled
from ._receiving import (
    DEFAULT_RECEIVE_SIZE,
    Steps,
    drive_steps_blocking,
    exactly_steps,
    take,
    until_steps,
)
from .client import Buffer, Call, Client, ClientError, allocate_buffer, steps
from .client.blocking import deadline as _deadline
from .client.blocking import drive, new_event, wait, wait_event
from .client.steps import SocketOption
from .core.ending import ENDING_OF_STATUS, Ending
from .errors import BusyError, NtStatusError, error_from_status
from .mechanics import linux
from .nt import IO_NO_INCREMENT, KEVENT, NT_SUCCESS, NTSTATUS, KeSetEvent
from .wsk import (
    SOCKADDR_STORAGE,
    WSK_SOCKET,
)
from .wsk.structs import check_port

__all__ = ["Connection", "DisconnectReason", "Listener", "client", "connect", "listen"]

T = TypeVar("T")
S = NTSTATUS


#: Largest receive buffer a connection keeps; a bigger ``max_bytes`` is capped to it.
MAX_RECEIVE_BUFFER: Final = 1 << 20

log = logging.getLogger(__name__)


class DisconnectReason:
    """The earlier names of the endings :attr:`Connection.disconnected_by` reports: each is
    the :class:`~pywsk.core.ending.Ending` itself (``DisconnectReason.PEER_GRACEFUL is
    Ending.PEER_FIN``)."""

    PEER_GRACEFUL: Final = Ending.PEER_FIN
    PEER_RESET: Final = Ending.PEER_RST
    LOCAL_ABORT: Final = Ending.OUR_RST
    TRANSPORT_FAILURE: Final = Ending.TRANSPORT_FAILURE


# --------------------------------------------------------------------------------------------
# The client of the process
# --------------------------------------------------------------------------------------------

_client: Client | None = None
_client_lock: Final = threading.Lock()


def client() -> Client:
    """The WSK client under pywsk.sync (registered on first use, as a driver does in
    DriverEntry); set its ``tracer`` to see every call (:mod:`pywsk.trace`).  At interpreter
    exit it releases the NPI and deregisters, if none of its sockets is left open."""
    global _client
    with _client_lock:
        if _client is None:
            try:
                _client = Client(show_data=False)
            except ClientError as exc:
                raise _error(exc) from None
            atexit.register(_release, _client)
        return _client


def _release(registered: Client) -> None:
    if not registered.sockets:  # else they are still the client's (the verifier says so)
        registered.close()


def _timed_out(what: str, timeout: float | None) -> Exception:
    return error_from_status(
        S.STATUS_TIMEOUT,
        f"{what}: no completion within {timeout} s; the IRP was cancelled and had no effect",
    )


def _failure(call: Call) -> NtStatusError:
    status = call.status if call.status is not None else S.STATUS_INTERNAL_ERROR
    return error_from_status(status, call.name)


def _error(exc: ClientError) -> NtStatusError:
    """The pywsk.errors exception of a runtime call that failed."""
    return error_from_status(exc.status or S.STATUS_UNSUCCESSFUL, str(exc))


def _drive(sequence: Generator[Call, None, T], timeout: float | None, what: str) -> T:
    """A sequence of the runtime (pywsk.client.steps) within ``timeout`` seconds in all."""
    try:
        return drive(sequence, _deadline(timeout), lambda: _timed_out(what, timeout))
    except ClientError as exc:
        raise _error(exc) from None


def connect_steps(
    host: str,
    port: int,
    options: Sequence[SocketOption] = (),
    local: tuple[str, int] | None = None,
) -> Generator[Call, None, Connection]:
    """The runtime's connect sequence (each address of ``host`` in turn), as a Connection."""
    c = client()
    sock, mine, remote = yield from steps.connect_steps(c, host, port, options, local)
    return Connection(c, sock, mine, remote)


def connect(
    host: str,
    port: int,
    *,
    timeout: float | None = None,
    options: Sequence[SocketOption] = (),
    local: tuple[str, int] | None = None,
) -> Connection:
    """Connect to ``host``:``port`` (WskSocket, WskBind, WskConnect), waiting at most
    ``timeout`` seconds in all (None: no limit).  On timeout the pending call is cancelled,
    the socket closed, and :class:`~pywsk.errors.WskTimeoutError` raised.  A port outside
    0..65535 raises ``ValueError`` before any call."""
    check_port(port, local)
    try:
        conn = _drive(connect_steps(host, port, options, local), timeout, "connect")
    except NtStatusError as exc:
        log_connect(log, None, exc.status, (host, port))
        raise
    log_connect(log, conn.socket, 0, conn.remote_address, conn.local_address)
    return conn


# --------------------------------------------------------------------------------------------
# Connections
# --------------------------------------------------------------------------------------------


class Connection:
    """A blocking WSK connection.  Use ``with`` (or ``close()``); see the module docstring."""

    def __init__(
        self, c: Client, sock: WSK_SOCKET, local: tuple[Any, ...], remote: tuple[Any, ...]
    ) -> None:
        self._client = c
        self._socket = sock
        self._local = local
        self._remote = remote
        self._ending: Ending | None = None
        # Our FIN acknowledged, the peer's FIN seen, abort() called.
        self._fin_acked = False
        self._eof = False
        self._aborted = False
        self._closed = False
        self._disconnect_call: Call | None = None
        self._disconnect_error: NtStatusError | None = None
        #: Set once the graceful disconnect is over (it may outlive the disconnect() call).
        self._disconnected: KEVENT | None = None
        self._settling = threading.Lock()
        self._disconnect_settled = False
        self._bytes_sent = 0
        self._bytes_received = 0
        self._sending = threading.Lock()
        self._receiving = threading.Lock()
        #: The receive buffer (non-paged pool), kept while a receive may write to it.
        self._buffer: Buffer | None = None
        self._buffer_lock = threading.Lock()
        self._receive_in_flight = False
        #: Bytes received and not yet returned (kept by receive_exactly / receive_until).
        self._leftover = bytearray()

    def __repr__(self) -> str:
        ending = self._ending.describe() if self._ending else "open"
        state = "closed" if self._closed else ending
        return f"<pywsk.sync.Connection {self._local} -> {self._remote} {state}>"

    def __enter__(self) -> Connection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def local_address(self) -> tuple[Any, ...]:
        return self._local

    @property
    def remote_address(self) -> tuple[Any, ...]:
        return self._remote

    @property
    def disconnected_by(self) -> Ending | None:
        """How the connection ended, as far as this side saw (the first end seen), or None:
        :attr:`Ending.PEER_FIN <pywsk.core.ending.Ending.PEER_FIN>` (a receive returned
        ``b""``), ``PEER_RST``, ``OUR_RST`` (our ``abort()``, or a close before our FIN was
        acknowledged), ``OUR_FIN_THEN_RST`` (a close after it, before the peer's FIN) or
        ``TRANSPORT_FAILURE``.  Our graceful disconnect is not an end here: the connection
        goes on receiving.  An abort the provider refused, or a close of a connection the
        kernel had ended already, sent nothing and is no end of ours."""
        return self._ending

    @property
    def bytes_sent(self) -> int:
        return self._bytes_sent

    @property
    def bytes_received(self) -> int:
        return self._bytes_received

    @property
    def socket(self) -> WSK_SOCKET:
        """The WSK socket underneath (do not close it yourself)."""
        return self._socket

    def _log(self, call: Call, what: str) -> None:
        if log.isEnabledFor(logging.DEBUG):
            state = SimpleNamespace(
                socket=self._socket, fin_acked=self._fin_acked, eof=self._eof, aborted=self._aborted
            )
            settled: Any = call  # completed: its status is set
            log_settled(log, state, settled, what)

    def _learn(self, ending: Ending | None) -> None:
        if ending is not None and self._ending is None:
            self._ending = ending

    def _check(self) -> None:
        if self._closed:
            raise error_from_status(S.STATUS_INVALID_HANDLE, "the connection is closed")

    def _failure(self, call: Call) -> NtStatusError:
        """A failed call's exception, in the light of what this side did meanwhile."""
        status = call.status if call.status is not None else S.STATUS_INTERNAL_ERROR
        self._learn(ENDING_OF_STATUS.get(status & 0xFFFFFFFF))
        if self._closed:
            return error_from_status(
                S.STATUS_INVALID_HANDLE, f"{call.name}: the connection was closed"
            )
        if status == S.STATUS_CANCELLED and self._ending is Ending.OUR_RST:
            return error_from_status(
                S.STATUS_CONNECTION_ABORTED, f"{call.name}: the connection was aborted"
            )
        return _failure(call)

    def send(self, data: bytes | bytearray | memoryview, timeout: float | None = None) -> int:
        """Send all of ``data`` (one WskSend); returns its length once the peer acknowledged it.

        Timeout: see the module docstring (the send is cancelled and ``WskTimeoutError``
        raised; if the transport had taken part of it, the cancel reset the connection).  Raises the failure
        (``ConnectionResetError``, ...), ``WskBrokenPipeError`` after ``disconnect()``.
        """
        self._check()
        view = memoryview(data).cast("B")
        if self._disconnect_call is not None:
            raise error_from_status(S.STATUS_PIPE_DISCONNECTED, "send after disconnect()")
        if not view.nbytes:
            return 0
        until = _deadline(timeout)
        if not self._sending.acquire(blocking=False):
            raise BusyError("another thread is sending on this connection")
        try:
            try:
                call = self._client.send(self._socket, view, locked=True)
            except ClientError as exc:
                raise _error(exc) from None
            timed_out = wait(call, until)
            sent = call.information if isinstance(call.information, int) else 0
            with self._settling:  # a disconnect's final bytes are counted under it too
                self._bytes_sent += sent
            if call.succeeded:
                return sent
            if timed_out and call.status == S.STATUS_CANCELLED:
                if sent:  # the provider aborted the connection: those bytes can't be recalled
                    self._learn(Ending.OUR_RST)
                raise _timed_out("send", timeout)
            self._log(call, "send")
            raise self._failure(call)
        finally:
            self._sending.release()

    def recv(self, max_bytes: int = DEFAULT_RECEIVE_SIZE, timeout: float | None = None) -> bytes:
        """Receive at most ``max_bytes``: at least one byte, or ``b""`` once the peer
        disconnected gracefully.  Timeout: the WskReceive is cancelled; if data had arrived
        it is returned, else ``WskTimeoutError`` is raised."""
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        self._check()
        until = _deadline(timeout)
        with self._receiver():
            if self._leftover:
                return take(self._leftover, max_bytes)
            return self._recv(max_bytes, until, timeout)

    def receive_exactly(self, size: int, timeout: float | None = None) -> bytes:
        """Exactly ``size`` bytes, over as many receives as it takes, within ``timeout``
        seconds in all.  Raises ``asyncio.IncompleteReadError`` (an ``EOFError``;
        ``.partial``: the bytes there were) if the peer's FIN comes first,
        ``WskTimeoutError`` on timeout (the bytes received so far are kept for the next
        receive), and what :meth:`recv` raises."""
        return self._receive_steps(exactly_steps(self._leftover, size), timeout)

    def receive_until(self, separator: bytes, max_size: int, timeout: float | None = None) -> bytes:
        """The bytes before the next ``separator`` (consumed, not returned); bytes after it
        are kept for the next receive.  Raises ``asyncio.LimitOverrunError`` when more
        than ``max_size`` bytes come before it (they stay), ``asyncio.IncompleteReadError``
        if the peer's FIN comes first, ``WskTimeoutError`` as :meth:`receive_exactly`."""
        return self._receive_steps(until_steps(self._leftover, separator, max_size), timeout)

    @contextlib.contextmanager
    def _receiver(self) -> Iterator[None]:
        if not self._receiving.acquire(blocking=False):
            raise BusyError("another thread is receiving on this connection")
        try:
            yield
        finally:
            self._receiving.release()

    def _receive_steps(self, steps: Steps, timeout: float | None) -> bytes:
        self._check()
        until = _deadline(timeout)
        with self._receiver():
            return drive_steps_blocking(steps, lambda size: self._recv(size, until, timeout))

    def _receive_buffer(self, size: int) -> Buffer:
        """The connection's receive buffer, of at least ``size`` bytes (under the lock)."""
        buffer = self._buffer
        if buffer is None or len(buffer[0]) < size:
            if buffer is not None:
                buffer[2]()
            self._buffer = None
            try:
                self._buffer = buffer = allocate_buffer(max(size, DEFAULT_RECEIVE_SIZE))
            except ClientError as exc:
                raise error_from_status(exc.status or S.STATUS_NO_MEMORY, str(exc)) from None
        return buffer

    def _free_buffer_if_done(self) -> None:
        # Under the lock: the buffer outlives every receive that may still write to it.
        if self._closed and not self._receive_in_flight and self._buffer is not None:
            self._buffer[2]()
            self._buffer = None

    def _recv(self, max_bytes: int, until: float | None, timeout: float | None) -> bytes:
        """One WskReceive; the caller holds ``_receiving``."""
        self._check()
        if self._eof:
            return b""
        size = min(max_bytes, MAX_RECEIVE_BUFFER)
        with self._buffer_lock:
            buffer = self._receive_buffer(size)
            self._receive_in_flight = True
        try:
            call = self._client.receive(self._socket, size, into=buffer)
            timed_out = wait(call, until)
        finally:
            with self._buffer_lock:
                self._receive_in_flight = False
                self._free_buffer_if_done()
        data = call.data
        self._bytes_received += len(data)
        if call.succeeded:
            if not data:
                self._eof = True
                self._learn(Ending.PEER_FIN)
                self._log(call, "receive")
            return data
        if timed_out and call.status == S.STATUS_CANCELLED:
            raise _timed_out("recv", timeout)
        self._log(call, "receive")
        raise self._failure(call)

    def disconnect(
        self, final: bytes | bytearray | memoryview | None = None, timeout: float | None = None
    ) -> None:
        """Graceful disconnect: ``final``, then our FIN after every pending send; returns when
        our FIN is acknowledged.  Receiving goes on afterwards (half-open).  On timeout the
        disconnect goes on (``WskTimeoutError``; call again to wait for it)."""
        self._check()
        until = _deadline(timeout)
        call = self._disconnect_call
        if call is None:
            data = bytes(final) if final is not None else b""
            call = self._client.disconnect(self._socket, data or None)
            self._disconnected = signalled = new_event()  # before the call is seen
            self._disconnect_call = call
            if not call.signal(signalled):  # over already
                KeSetEvent(signalled, IO_NO_INCREMENT, False)
        elif final is not None and len(final):
            raise error_from_status(S.STATUS_PIPE_DISCONNECTED, "disconnect() was called already")
        event = self._disconnected
        assert event is not None
        if not call.done and not wait_event(event, until):
            raise error_from_status(
                S.STATUS_TIMEOUT,
                f"disconnect: our FIN not acknowledged within {timeout} s; the disconnect goes on",
            )
        self._settle_disconnect()
        error = self._disconnect_error
        if error is not None:
            raise type(error)(error.status, error.message)

    def _settle_disconnect(self) -> None:
        """Settle the completed graceful disconnect, once (in a caller's thread)."""
        with self._settling:
            call = self._disconnect_call
            if call is None or self._disconnect_settled or not call.done:
                return
            self._disconnect_settled = True
            if isinstance(call.information, int):
                self._bytes_sent += call.information
            if call.succeeded:
                self._fin_acked = True
            else:
                self._disconnect_error = self._failure(call)
            self._log(call, "disconnect")

    def abort(self) -> None:
        """Reset the connection now (an RST); pending sends and receives end.  Does nothing
        after ``close()``, an earlier ``abort()``, or once the connection is gone."""
        if self._closed or self._aborted:
            return
        self._aborted = True
        first = self._ending is None
        self._learn(Ending.OUR_RST)  # first: the calls it ends are told so
        call = self._client.disconnect(self._socket, abortive=True)
        wait(call, None)
        if not call.succeeded and first:
            # Refused: the connection was over already and the abort sent nothing - it was
            # not ended by us.  Only what the refusal itself says of the end is kept.
            said = ENDING_OF_STATUS.get((call.status or 0) & 0xFFFFFFFF)
            self._ending = said if said is not None and not said.by_us else None
        self._log(call, "abort")

    def close(self) -> None:
        """WskCloseSocket (idempotent): **an RST unless disconnected in both directions**."""
        if self._closed:
            return
        self._closed = True
        # WskCloseSocket resets what is not disconnected in both directions; a connection
        # the kernel has ended already (CLOSE, TIME_WAIT) gets no RST from it.
        state = self._client.tcp_state(self._socket)
        if state is not None and state not in linux.ENDED_STATES:
            self._learn(Ending.OUR_FIN_THEN_RST if self._fin_acked else Ending.OUR_RST)
        call = self._client.close_socket_call(self._socket)
        wait(call, None)
        with self._buffer_lock:
            self._free_buffer_if_done()
        self._log(call, "close")
        # The close completed a pending disconnect before its own IRP: settle it too.
        self._settle_disconnect()

    def set_option(self, level: int, option: int, value: int) -> None:
        """WskControlSocket(WskSetOption) with wsk.h constants; raises the failure."""
        self._check()
        call = self._client.option_call(self._socket, level, option, value)
        wait(call, None)
        if not NT_SUCCESS(call.status or 0):
            raise _failure(call)


# --------------------------------------------------------------------------------------------
# Listeners
# --------------------------------------------------------------------------------------------


def listen_steps(
    host: str, port: int, options: Sequence[SocketOption] = ()
) -> Generator[Call, None, Listener]:
    """The runtime's listen sequence, as a Listener."""
    c = client()
    sock, mine = yield from steps.listen_steps(c, host, port, options)
    return Listener(c, sock, mine)


def listen(
    host: str, port: int, *, options: Sequence[SocketOption] = (), timeout: float | None = None
) -> Listener:
    """A WSK listening socket on ``host``:``port`` (0: any free port; outside 0..65535:
    ``ValueError`` before any call)."""
    check_port(port)
    return _drive(listen_steps(host, port, options), timeout, "listen")


class Listener:
    """A blocking WSK listening socket.  Use ``with`` (or ``close()``)."""

    def __init__(self, c: Client, sock: WSK_SOCKET, local: tuple[Any, ...]) -> None:
        self._client = c
        self._socket = sock
        self._local = local
        self._closed = False

    def __repr__(self) -> str:
        return f"<pywsk.sync.Listener {self._local}{' closed' if self._closed else ''}>"

    def __enter__(self) -> Listener:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def local_address(self) -> tuple[Any, ...]:
        return self._local

    def accept(self, timeout: float | None = None) -> Connection:
        """The next connection (one WskAccept).  On timeout the WskAccept is cancelled; a
        connection it delivered anyway is returned, else ``WskTimeoutError`` is raised."""
        if self._closed:
            raise error_from_status(S.STATUS_INVALID_HANDLE, "the listener is closed")
        until = _deadline(timeout)
        local, remote = SOCKADDR_STORAGE(), SOCKADDR_STORAGE()
        call = self._client.accept(self._socket, local=local, remote=remote)
        timed_out = wait(call, until)
        if call.succeeded:
            return Connection(self._client, call.information, local.to_tuple(), remote.to_tuple())
        if timed_out and call.status == S.STATUS_CANCELLED:
            raise _timed_out("accept", timeout)
        if self._closed:
            raise error_from_status(S.STATUS_INVALID_HANDLE, "WskAccept: the listener was closed")
        raise _failure(call)

    def close(self) -> None:
        """Close the listening socket (idempotent)."""
        if self._closed:
            return
        self._closed = True
        wait(self._client.close_socket_call(self._socket), None)
