"""The disconnect contract, checked for any layer: :func:`check_disconnect_contract`.

What it does: in the shape of trio's ``testing/_check_streams.py``, the suite takes a
*factory* that makes a connected pair - our end through the layer under test (a
:class:`Subject`), the peer a plain Linux socket - and checks, scenario by scenario, what
the layer reports, what the peer sees, and, when a capture can run (root and
``tcpdump``), what the wire carries (:class:`~pywsk.testing.capture.WireCapture` on
``lo``):

* ``graceful``: our disconnect returns only after the peer acknowledged our FIN (the ACK
  is on the wire before the call returned); the peer reads our data and then the end of
  the stream; no RST anywhere, and the close after both FINs sends none.
* ``abortive``: our abort is an RST on the wire, with no FIN; the peer's ``recv`` raises
  ``ConnectionResetError``; we report our own abort.
* ``half_open``: after our graceful disconnect we still receive the peer's data, then its
  FIN.
* ``stuck_then_abort`` / ``stuck_then_close``: a graceful disconnect behind data the peer
  never reads (small buffers) does not complete; an abort, or a close, ends it at once:
  the disconnect raises, the send ends (a layer that only queues it, as pywsk.trio does,
  may have returned already), the peer sees an RST and our FIN never left.
* ``peer_fin``: the peer's FIN is reported as a FIN (``b""``, for ever after; the ending
  ``Ending.PEER_FIN``) and we can still send.
* ``peer_rst``: the peer's RST is reported as an RST (``ConnectionResetError``; the ending
  ``Ending.PEER_RST``).
* ``close_without_disconnect`` / ``close_after_our_fin_only``: a close that is not preceded
  by both FINs resets: RST on the wire, the peer sees it.

A :class:`Subject` is blocking: an adapter for an async layer runs its event loop in a
thread of its own and hands each call over.  The suite runs every call in a worker
thread and bounds it, so a layer that hangs fails the check instead of hanging it.

What it refuses: to infer what it can observe - FIN and RST are taken from the peer's
socket and from the capture, not from the layer's own account.  It never sleeps to
synchronise; the only fixed waits are in the stuck scenarios (give the send a moment to
return, then check that the disconnect is still pending), and neither can invent a failure.

What always holds: each scenario closes its pair (the factory's context manager), and
uses only loopback sockets.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import select
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Protocol, TypeVar

from pywsk.core.ending import Ending, How
from pywsk.testing.capture import Segment, WireCapture
from pywsk.testing.tcp import set_linger_abort

__all__ = [
    "SCENARIOS",
    "SMALL_BUFFER",
    "ContractFailure",
    "Factory",
    "Subject",
    "check_disconnect_contract",
    "peer_reads_to_end",
    "plain_listener",
]

T = TypeVar("T")

#: The socket buffer size a factory asked for ``small_buffers`` sets on our end (SO_SNDBUF,
#: before connecting) and :func:`plain_listener` on the peer (SO_RCVBUF, before listening).
SMALL_BUFFER = 4096
#: Bytes queued behind a stuck disconnect: far more than both small buffers hold.
_STUCK_DATA = 1 << 20
#: How long a stuck disconnect must stay pending before it is recovered.
_STUCK_FOR = 0.5


class Subject(Protocol):
    """Our end of a connection through the layer under test, driven by blocking calls.

    Failures are raised as the built-in ``OSError`` subclasses the layer stands for (an
    adapter over trio raises the ``__cause__`` of ``BrokenResourceError``).
    """

    @property
    def local_port(self) -> int:
        """Our TCP port (to tell our segments from the peer's on the wire)."""
        ...

    @property
    def disconnected_by(self) -> Ending | None:
        """How the layer says the connection ended (an :class:`~pywsk.core.ending.Ending`),
        or None while it saw no end."""
        ...

    def send_all(self, data: bytes) -> None:
        """Send all of ``data`` (as the layer's send returns: handed to the transport)."""

    def receive_some(self, max_bytes: int) -> bytes:
        """At least one byte, or ``b""`` after the peer's FIN; raises the failure."""
        ...

    def disconnect(self) -> None:
        """The layer's graceful disconnect (our FIN); returns when the layer says done."""

    def abort(self) -> None:
        """The layer's abortive disconnect (an RST now)."""

    def close(self) -> None:
        """The layer's close that does not wait for the peer (idempotent)."""


#: ``factory(small_buffers)``: a context manager giving a connected (subject, peer socket);
#: with ``small_buffers`` our SO_SNDBUF and the peer's SO_RCVBUF are :data:`SMALL_BUFFER`.
Factory = Callable[[bool], AbstractContextManager[tuple[Subject, socket.socket]]]


class ContractFailure(AssertionError):
    """A layer broke the disconnect contract (the message says which part, and the wire)."""


@contextlib.contextmanager
def plain_listener(small_buffers: bool, host: str = "127.0.0.1") -> Iterator[socket.socket]:
    """A plain listening socket on ``host`` (port 0) for a factory to connect to; with
    ``small_buffers`` its SO_RCVBUF (inherited by the accepted peer) is small."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        if small_buffers:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
        sock.bind((host, 0))
        sock.listen(8)
        sock.settimeout(10.0)
        yield sock


def peer_reads_to_end(peer: socket.socket) -> tuple[bytes, How]:
    """Read until our end's FIN or RST; returns (the data, ``How.FIN`` or ``How.RST``:
    string enums, equal to ``"fin"`` and ``"rst"``)."""
    data = bytearray()
    while True:
        try:
            chunk = peer.recv(1 << 16)
        except ConnectionResetError:
            return bytes(data), How.RST
        if not chunk:
            return bytes(data), How.FIN
        data += chunk


class _Run:
    """One scenario: the pair, a worker pool for bounded calls, and the capture (or None)."""

    def __init__(
        self,
        subject: Subject,
        peer: socket.socket,
        capture: WireCapture | None,
        pool: concurrent.futures.ThreadPoolExecutor,
        bound: float,
    ) -> None:
        self.subject = subject
        self.peer = peer
        self.capture = capture
        self.pool = pool
        self.bound = bound
        self.ours = subject.local_port
        self.theirs = peer.getsockname()[1]
        peer.settimeout(bound)

    def call(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` in a worker thread, bounded."""
        return self.start(fn, *args).result(self.bound)

    def start(self, fn: Callable[..., T], *args: object) -> concurrent.futures.Future[T]:
        return self.pool.submit(fn, *args)

    def fail(self, message: str) -> ContractFailure:
        if self.capture is not None:
            self.capture.sync()
            wire = "\n  ".join(self.capture.describe({self.ours: "us", self.theirs: "peer"}))
            message += f"\nwire:\n  {wire or '(nothing)'}"
        return ContractFailure(message)

    def expect(self, condition: bool, message: str) -> None:
        if not condition:
            raise self.fail(message)

    def receive_exactly(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.call(self.subject.receive_some, size - len(data))
            self.expect(bool(chunk), f"the stream ended after {data!r}, {size} bytes expected")
            data += chunk
        return data

    def wire(self) -> list[Segment] | None:
        """Every segment of the pair so far (None without a capture)."""
        if self.capture is None:
            return None
        self.capture.sync()
        return self.capture.segments

    def no_rst(self, when: str) -> None:
        segments = self.wire()
        if segments is not None:
            self.expect(not [s for s in segments if s.rst], f"an RST on the wire {when}")

    def rst_from(self, port: int, when: str) -> None:
        if self.capture is not None:
            try:
                self.capture.wait_rst(from_port=port, timeout=self.bound)
            except TimeoutError:
                raise self.fail(f"no RST from port {port} on the wire {when}") from None

    def no_fin_from(self, port: int, when: str) -> None:
        segments = self.wire()
        if segments is not None:
            fins = [s for s in segments if s.fin and s.sport == port]
            self.expect(not fins, f"a FIN from port {port} on the wire {when}")

    def ends(self, future: concurrent.futures.Future[None], what: str) -> BaseException | None:
        """Wait (bounded) until a call pending at the recovery ended; its exception, if any."""
        try:
            future.result(self.bound)
        except concurrent.futures.TimeoutError:
            raise self.fail(f"{what} still pending {self.bound} s after the recovery") from None
        except Exception as exc:
            return exc
        return None

    def raises(self, future: concurrent.futures.Future[None], what: str) -> BaseException:
        exc = self.ends(future, what)
        if exc is None:
            raise self.fail(f"{what} succeeded, though the connection was reset")
        return exc

    def reason(self, expected: Ending, when: str) -> None:
        said = self.subject.disconnected_by
        self.expect(said == expected, f"{when}: the layer says {said!r}, not {expected!r}")


# --------------------------------------------------------------------------------------------
# The scenarios
# --------------------------------------------------------------------------------------------


def _fin_acked_before(run: _Run, returned_at: float) -> None:
    """Our FIN and the peer's ACK of it are on the wire, the ACK before ``returned_at``."""
    segments = run.wire()
    if segments is None:
        return
    fin = next((s for s in segments if s.fin and s.sport == run.ours), None)
    if fin is None:
        raise run.fail("the graceful disconnect returned, but no FIN of ours is on the wire")
    fin_end = (fin.seq + fin.length + 1) & 0xFFFFFFFF
    ack = next(
        (
            s
            for s in segments
            if s.sport == run.theirs and s.ack_flag and ((s.ack - fin_end) & 0xFFFFFFFF) < 1 << 31
        ),
        None,
    )
    if ack is None:
        raise run.fail("the graceful disconnect returned before the peer acknowledged our FIN")
    run.expect(
        ack.time <= returned_at,
        f"the graceful disconnect returned {ack.time - returned_at:.6f} s before the ACK",
    )


def _reset_seen(run: _Run, when: str) -> None:
    """Our RST is on the wire, and the peer's socket reads to it."""
    run.rst_from(run.ours, when)
    _data, end = peer_reads_to_end(run.peer)
    run.expect(end is How.RST, f"{when} the peer saw a {end}, not an RST")


def graceful(run: _Run) -> None:
    """Our FIN, acknowledged before disconnect returns; no RST, even at the close."""
    run.call(run.subject.send_all, b"graceful")
    run.call(run.subject.disconnect)
    returned_at = time.time()
    _fin_acked_before(run, returned_at)
    data, end = peer_reads_to_end(run.peer)
    run.expect((data, end) == (b"graceful", How.FIN), f"the peer saw {data!r} then {end}")
    run.peer.shutdown(socket.SHUT_WR)
    run.expect(run.call(run.subject.receive_some, 100) == b"", "the peer's FIN was not b''")
    run.call(run.subject.close)
    run.no_rst("after a graceful disconnect in both directions and a close")


def abortive(run: _Run) -> None:
    """Our abort: an RST (and no FIN) on the wire; the peer's recv raises."""
    run.call(run.subject.send_all, b"before the abort")
    run.call(run.subject.abort)
    _reset_seen(run, "after abort()")
    run.no_fin_from(run.ours, "after abort()")
    run.reason(Ending.OUR_RST, "after abort()")
    try:
        got = run.call(run.subject.receive_some, 100)
    except OSError:
        pass
    else:
        raise run.fail(f"receive_some after abort() returned {got!r} instead of raising")
    run.call(run.subject.close)


def half_open(run: _Run) -> None:
    """After our graceful disconnect we still receive, to the peer's FIN; then no RST."""
    run.call(run.subject.disconnect)
    data, end = peer_reads_to_end(run.peer)
    run.expect((data, end) == (b"", How.FIN), f"the peer saw {data!r} then {end}")
    run.peer.sendall(b"after your FIN")
    run.expect(run.receive_exactly(14) == b"after your FIN", "half-open data lost")
    run.peer.shutdown(socket.SHUT_WR)
    run.expect(run.call(run.subject.receive_some, 100) == b"", "the peer's FIN was not b''")
    run.reason(Ending.PEER_FIN, "after the peer's FIN")
    run.call(run.subject.close)
    run.no_rst("after a half-open exchange and a close")


def _stuck(run: _Run) -> tuple[concurrent.futures.Future[None], concurrent.futures.Future[None]]:
    """Data the peer never reads, then a graceful disconnect: both pending."""
    sending = run.start(run.subject.send_all, b"x" * _STUCK_DATA)
    # The disconnect goes after the send: once data reached the peer, and the send either
    # returned (a layer that queues it) or is still taking it.
    readable, _, _ = select.select([run.peer], [], [], run.bound)
    run.expect(bool(readable), "no data reached the peer")
    with contextlib.suppress(concurrent.futures.TimeoutError):
        sending.result(_STUCK_FOR)
    disconnecting = run.start(run.subject.disconnect)
    with contextlib.suppress(concurrent.futures.TimeoutError):
        disconnecting.result(_STUCK_FOR)
        raise run.fail("the graceful disconnect completed though the peer never read")
    run.no_fin_from(run.ours, "while the peer's window is closed")
    return sending, disconnecting


def _stuck_recovered(run: _Run, recovery: str) -> None:
    """A stuck graceful disconnect, recovered by ``abort`` or ``close``: the stuck calls
    end, the peer sees an RST, and our FIN never left."""
    sending, disconnecting = _stuck(run)
    run.call(getattr(run.subject, recovery))
    run.raises(disconnecting, "the stuck disconnect")
    run.ends(sending, "the stuck send")
    when = f"after {recovery}() of a stuck disconnect"
    _reset_seen(run, when)
    run.no_fin_from(run.ours, when)
    if recovery == "abort":
        run.reason(Ending.OUR_RST, when)
        run.call(run.subject.close)


def stuck_then_abort(run: _Run) -> None:
    """A stuck graceful disconnect, recovered by abort()."""
    _stuck_recovered(run, "abort")


def stuck_then_close(run: _Run) -> None:
    """A stuck graceful disconnect, recovered by close()."""
    _stuck_recovered(run, "close")


def peer_fin(run: _Run) -> None:
    """The peer's FIN is reported as a FIN, for ever after; we can still send."""
    run.peer.sendall(b"bye")
    run.peer.shutdown(socket.SHUT_WR)
    run.expect(run.receive_exactly(3) == b"bye", "data before the peer's FIN lost")
    for _ in range(2):
        got = run.call(run.subject.receive_some, 100)
        run.expect(got == b"", f"after the peer's FIN receive_some returned {got!r}")
    run.reason(Ending.PEER_FIN, "after the peer's FIN")
    run.call(run.subject.send_all, b"still open")
    run.call(run.subject.disconnect)
    data, end = peer_reads_to_end(run.peer)
    run.expect((data, end) == (b"still open", How.FIN), f"the peer saw {data!r} then {end}")
    run.call(run.subject.close)
    run.no_rst("after the peer's FIN, ours, and a close")


def peer_rst(run: _Run) -> None:
    """The peer's RST is reported as an RST: ConnectionResetError, ``Ending.PEER_RST``."""
    set_linger_abort(run.peer)
    run.peer.close()
    run.rst_from(run.theirs, "after the peer's abortive close")
    try:
        got = run.call(run.subject.receive_some, 100)
    except ConnectionResetError:
        pass
    except OSError as exc:
        raise run.fail(f"the peer's RST was reported as {exc!r}") from exc
    else:
        raise run.fail(f"after the peer's RST receive_some returned {got!r}")
    run.reason(Ending.PEER_RST, "after the peer's RST")
    run.call(run.subject.close)


def close_without_disconnect(run: _Run) -> None:
    """A close with neither FIN: an RST."""
    run.call(run.subject.send_all, b"unfinished")
    run.call(run.subject.close)
    _reset_seen(run, "after a close without disconnect")


def close_after_our_fin_only(run: _Run) -> None:
    """Our FIN acknowledged, the peer's not received: the close still resets."""
    run.call(run.subject.disconnect)
    data, end = peer_reads_to_end(run.peer)
    run.expect((data, end) == (b"", How.FIN), f"the peer saw {data!r} then {end}")
    run.call(run.subject.close)
    run.rst_from(run.ours, "after a close with the peer's direction open")
    try:
        run.peer.sendall(b"into a closed socket")
        run.peer.recv(1)
    except (ConnectionResetError, BrokenPipeError):
        return
    raise run.fail("the peer's socket did not see the RST")


#: Every scenario, by name: ``(needs small buffers, check)``.
SCENARIOS: dict[str, tuple[bool, Callable[[_Run], None]]] = {
    "graceful": (False, graceful),
    "abortive": (False, abortive),
    "half_open": (False, half_open),
    "stuck_then_abort": (True, stuck_then_abort),
    "stuck_then_close": (True, stuck_then_close),
    "peer_fin": (False, peer_fin),
    "peer_rst": (False, peer_rst),
    "close_without_disconnect": (False, close_without_disconnect),
    "close_after_our_fin_only": (False, close_after_our_fin_only),
}


def check_disconnect_contract(
    factory: Factory,
    *,
    scenarios: list[str] | None = None,
    capture: bool | None = None,
    bound: float = 10.0,
) -> None:
    """Check the disconnect contract on pairs from ``factory``; raises :class:`ContractFailure`.

    ``scenarios`` limits the run to those names of :data:`SCENARIOS` (default: all).
    ``capture``: check the wire too (default: when :meth:`WireCapture.available`; True
    when it is not raises RuntimeError).  ``bound``: the limit, in seconds, of every call
    and wait.
    """
    if capture is None:
        capture = WireCapture.available()
    elif capture and not WireCapture.available():
        raise RuntimeError("a wire capture needs root and tcpdump")
    names = list(SCENARIOS) if scenarios is None else scenarios
    unknown = set(names) - set(SCENARIOS)
    if unknown:
        raise ValueError(f"unknown scenarios: {sorted(unknown)}")
    pool = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="contract")
    try:
        for name in names:
            small, check = SCENARIOS[name]
            with factory(small) as (subject, peer), contextlib.ExitStack() as stack:
                wire = None
                if capture:
                    wire = stack.enter_context(WireCapture(peer.getsockname()[1]))
                try:
                    check(_Run(subject, peer, wire, pool, bound))
                except ContractFailure as exc:
                    raise ContractFailure(f"{name}: {exc}") from None
    finally:
        # Not waiting: a call a broken layer left hanging must not hang the check too.
        pool.shutdown(wait=False, cancel_futures=True)
