"""Packet capture on loopback, for proving FIN versus RST on the wire.

:class:`WireCapture` runs ``tcpdump`` writing pcap to a pipe and decodes the stream itself
(Ethernet, Linux cooked v1/v2, raw IP; IPv4 and IPv6), so nothing depends on tcpdump's
text format. A reader thread appends every TCP packet as a :class:`Segment` and wakes
waiters, so a test can block until "the RST from port 40012 is on the wire" without sleeping.

``start()`` is race-free. It waits for tcpdump's "listening on" line and then for a
*sentinel*: a UDP datagram that the capture sends to a socket of its own on 127.0.0.1.
The filter admits exactly that datagram besides the TCP traffic asked for, and the
reader recognises it and never records it as a segment. Once the sentinel is seen, every
later packet on ``lo`` is captured. :meth:`WireCapture.sync` uses the same trick: after
it returns, every packet that went out on ``lo`` before the call is in :attr:`segments`.

Memory stays constant however long the capture runs: every SYN, FIN and RST is kept (up
to ``notable`` of them), other segments in a ring of the last ``ring``; :attr:`WireCapture.flows`
keeps, per direction of each connection, the counts, byte totals and first / last FIN and
RST times reports need (:mod:`pywsk.testing.flows`); the pcap stream is spooled to a
temporary file, not kept in memory.  :meth:`WireCapture.wait_for` sees every segment that
arrives while it waits, evicted or not.

Needs root and ``tcpdump``; check :meth:`WireCapture.available` and skip otherwise.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from .flows import Flows
from .segments import (
    PCAP_MAGIC_NS,
    PCAP_MAGIC_US,
    SENTINEL_MAGIC,
    Segment,
    Sentinel,
    decode,
    hostport,
    read_exact,
)

__all__ = ["Segment", "WireCapture"]

Predicate = Callable[[Segment], bool]


@dataclass(eq=False)
class _Watch:
    """A :meth:`WireCapture.wait_for` in progress: the reader counts its matches."""

    predicate: Predicate
    count: int
    seen: int = 0
    result: Segment | None = field(default=None)


class WireCapture:
    """Capture TCP segments on loopback with ``tcpdump``, for the given ports.

    ``ports`` are matched as ``tcp port P`` (either direction, IPv4 and IPv6); ``None``
    captures all TCP. ``host_filter`` is an extra BPF expression ANDed with the TCP part,
    for example ``"host ::1"``. Use as a context manager, or call :meth:`start` and
    :meth:`stop`. All waits are bounded.
    """

    def __init__(
        self,
        ports: Iterable[int] | int | None = None,
        host_filter: str | None = None,
        *,
        interface: str = "lo",
        snaplen: int = 256,
        ring: int = 4096,
        notable: int = 4096,
        flows: int = 4096,
    ) -> None:
        if isinstance(ports, int):
            ports = (ports,)
        self.ports: tuple[int, ...] = tuple(ports) if ports is not None else ()
        for port in self.ports:
            if not 0 < port < 65536:
                raise ValueError(f"not a TCP port: {port!r}")
        self.host_filter = host_filter
        self.interface = interface
        self.snaplen = snaplen
        self._cond = threading.Condition()
        #: (capture index, segment): plain segments in a ring, SYN/FIN/RST kept apart.
        self._plain: deque[tuple[int, Segment]] = deque(maxlen=ring)
        self._notable: deque[tuple[int, Segment]] = deque(maxlen=notable)
        self._total = 0
        self._watches: list[_Watch] = []
        #: Per direction of each connection: counts, bytes, first / last FIN and RST.
        self.flows = Flows(flows)
        self._sentinels_seen = 0  # highest sentinel number decoded so far
        self._sentinel_numbers = itertools.count(1)
        self._eof = False
        self._started = False
        self._stopped = False
        self._listening = threading.Event()  # set on "listening on", or when tcpdump exits
        self._listening_seen = False
        self._stderr_lines: list[str] = []
        self._problems: list[str] = []
        self._pcap = tempfile.TemporaryFile()  # noqa: SIM115 - closed by the finalizer
        self._close_pcap = weakref.finalize(self, self._pcap.close)
        self._proc: subprocess.Popen[bytes] | None = None
        self._threads: list[threading.Thread] = []
        self._udp: socket.socket | None = None
        self.kernel_drops: int | None = None  # "N packets dropped by kernel", after stop()

    # -- availability ---------------------------------------------------------------------

    @staticmethod
    def available() -> bool:
        """True when a capture can run here: root and ``tcpdump`` on ``PATH``."""
        return os.geteuid() == 0 and shutil.which("tcpdump") is not None

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def filter_expression(self) -> str:
        """The BPF filter handed to tcpdump (including the sentinel clause once started)."""
        tcp = "tcp"
        if self.ports:
            tcp += " and (" + " or ".join(f"port {p}" for p in self.ports) + ")"
        if self.host_filter:
            tcp += f" and ({self.host_filter})"
        if self._udp is None:
            return tcp
        sentinel_port = self._udp.getsockname()[1]
        return f"({tcp}) or (udp and dst host 127.0.0.1 and dst port {sentinel_port})"

    @property
    def _uses_sentinel(self) -> bool:
        return self.interface in ("lo", "any")

    def start(self, timeout: float = 5.0) -> Self:
        """Start tcpdump; return only once packets on ``lo`` are really being captured."""
        if self._started:
            raise RuntimeError("WireCapture.start() called twice")
        self._started = True
        deadline = time.monotonic() + timeout
        try:
            if self._uses_sentinel:
                self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                self._udp.bind(("127.0.0.1", 0))
            self._proc = subprocess.Popen(
                [
                    "tcpdump",
                    *("-i", self.interface),
                    "-n",
                    "-U",
                    "--immediate-mode",
                    *("-s", str(self.snaplen)),
                    *("-w", "-"),
                    self.filter_expression,
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for target, name in ((self._read_pcap, "pcap"), (self._read_stderr, "stderr")):
                thread = threading.Thread(target=target, name=f"WireCapture-{name}", daemon=True)
                thread.start()
                self._threads.append(thread)
            self._listening.wait(max(deadline - time.monotonic(), 0.0))
            if not self._listening_seen or self._proc.poll() is not None:
                raise RuntimeError(f"tcpdump did not start listening: {self._diagnostics()}")
            if self._uses_sentinel:
                self.sync(timeout=max(deadline - time.monotonic(), 0.0))
        except BaseException:
            self.stop()
            raise
        return self

    def sync(self, timeout: float = 2.0) -> None:
        """Wait until every packet sent on ``lo`` before this call has been decoded.

        Sends a sentinel datagram (re-sent every 100 ms, in case one is lost) and waits
        until the reader has seen it. Raises :class:`TimeoutError` when that takes longer
        than ``timeout`` and :class:`RuntimeError` when tcpdump has gone away.
        """
        udp = self._udp
        if udp is None:
            raise RuntimeError("sync() needs a running capture on lo or any")
        number = next(self._sentinel_numbers)
        deadline = time.monotonic() + timeout
        payload = SENTINEL_MAGIC + str(number).encode("ascii")
        with self._cond:
            while self._sentinels_seen < number:
                if self._eof:
                    raise RuntimeError(f"tcpdump has stopped: {self._diagnostics()}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"capture sentinel {number} not seen in {timeout} s")
                udp.sendto(payload, udp.getsockname())
                self._cond.wait(min(remaining, 0.1))

    def stop(self, timeout: float = 5.0) -> None:
        """Stop tcpdump (bounded) and the reader threads. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        proc = self._proc
        if proc is not None:
            if proc.poll() is None and self._udp is not None and self._listening_seen:
                # Flush: whatever was sent before stop() lands in segments.
                with contextlib.suppress(TimeoutError, RuntimeError, OSError):
                    self.sync(timeout=min(timeout / 2, 1.0))
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
        for thread in self._threads:
            thread.join(timeout)
        if proc is not None:
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
        if self._udp is not None:
            self._udp.close()
        with self._cond:
            self._eof = True
            self._cond.notify_all()
        for line in self._stderr_lines:
            if line.endswith("packets dropped by kernel"):
                with contextlib.suppress(ValueError):
                    self.kernel_drops = int(line.split()[0])

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- reader threads ------------------------------------------------------------------------

    def _read_pcap(self) -> None:
        proc = self._proc
        assert proc is not None
        assert proc.stdout is not None
        stream = proc.stdout
        sentinel_port = self._udp.getsockname()[1] if self._udp is not None else -1
        try:
            header = read_exact(stream, 24)
            if header is None:
                return
            with self._cond:
                self._pcap.write(header)
            magic_le = int.from_bytes(header[:4], "little")
            order = "<" if magic_le in (PCAP_MAGIC_US, PCAP_MAGIC_NS) else ">"
            magic, linktype = struct.unpack_from(order + "I16xI", header)
            if magic not in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
                self._problem(f"not a pcap stream (magic {header[:4].hex()})")
                return
            scale = 1e-9 if magic == PCAP_MAGIC_NS else 1e-6
            linktype &= 0xFFFF
            record_format = order + "IIII"
            while True:
                record = read_exact(stream, 16)
                if record is None:
                    return
                seconds, fraction, caplen, wire_len = struct.unpack(record_format, record)
                frame = read_exact(stream, caplen)
                if frame is None:
                    return
                with self._cond:
                    self._pcap.write(record + frame)
                try:
                    item = decode(
                        linktype, frame, wire_len, seconds + fraction * scale, sentinel_port
                    )
                except (ValueError, IndexError, struct.error, OSError) as e:
                    self._problem(f"undecodable frame ({e!r}): {frame[:64].hex()}")
                    continue
                if item is None:
                    continue
                with self._cond:
                    if isinstance(item, Sentinel):
                        self._sentinels_seen = max(self._sentinels_seen, item.number)
                    else:
                        self._keep(item)
                    self._cond.notify_all()
        except (OSError, ValueError) as e:  # pipe closed under us during stop()
            if not self._stopped:
                self._problem(f"pcap reader failed: {e!r}")
        finally:
            with self._cond:
                self._eof = True
                self._cond.notify_all()

    def _keep(self, segment: Segment) -> None:
        """Under the condition: retain ``segment`` (bounded), summarise it, show it to the
        waiters."""
        index = self._total
        self._total += 1
        notable = segment.syn or segment.fin or segment.rst
        (self._notable if notable else self._plain).append((index, segment))
        self.flows.add(segment)
        for watch in self._watches:
            if watch.result is None:
                try:
                    matched = watch.predicate(segment)
                except Exception as exc:  # a waiter's predicate: report, never kill the reader
                    self._problems.append(f"wait_for predicate raised {exc!r}")
                    matched = False
                if matched:
                    watch.seen += 1
                    if watch.seen >= watch.count:
                        watch.result = segment

    def _read_stderr(self) -> None:
        proc = self._proc
        assert proc is not None
        assert proc.stderr is not None
        with contextlib.suppress(OSError, ValueError):
            for raw in proc.stderr:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                self._stderr_lines.append(line)
                if "listening on" in line:
                    self._listening_seen = True
                    self._listening.set()
        # tcpdump is gone: unblock a start() that waits for "listening on".
        self._listening.set()

    def _problem(self, text: str) -> None:
        with self._cond:
            self._problems.append(text)

    def _diagnostics(self) -> str:
        code = self._proc.poll() if self._proc is not None else None
        text = " | ".join(self._stderr_lines[-5:]) or "no output"
        return f"exit status {code}, stderr: {text}"

    # -- results ------------------------------------------------------------------------------

    @property
    def segments(self) -> list[Segment]:
        """A snapshot of the segments kept so far, in capture order: every SYN, FIN and RST
        (up to ``notable``) and the last ``ring`` others."""
        with self._cond:
            merged = heapq.merge(list(self._notable), list(self._plain), key=lambda i: i[0])
            return [segment for _, segment in merged]

    @property
    def total(self) -> int:
        """How many segments were captured (kept or not)."""
        with self._cond:
            return self._total

    @property
    def problems(self) -> list[str]:
        """Frames that could not be decoded, reader failures (normally empty)."""
        with self._cond:
            return list(self._problems)

    @property
    def stderr(self) -> list[str]:
        """tcpdump's stderr lines so far."""
        return list(self._stderr_lines)

    def pcap_bytes(self) -> bytes:
        """The raw pcap stream so far (including sentinel datagrams), e.g. for Wireshark."""
        with self._cond:
            self._pcap.flush()
            self._pcap.seek(0)
            data = self._pcap.read()
            self._pcap.seek(0, os.SEEK_END)
            return data

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the whole pcap stream so far to ``path`` (copied from the spool file)."""
        with self._cond, open(path, "wb") as f:
            self._pcap.flush()
            self._pcap.seek(0)
            shutil.copyfileobj(self._pcap, f)
            self._pcap.seek(0, os.SEEK_END)

    def matching(
        self,
        predicate: Predicate | None = None,
        *,
        from_port: int | None = None,
        to_port: int | None = None,
    ) -> list[Segment]:
        """Captured segments that pass every given filter."""
        return [
            s
            for s in self.segments
            if (from_port is None or s.sport == from_port)
            and (to_port is None or s.dport == to_port)
            and (predicate is None or predicate(s))
        ]

    def fins(self, from_port: int | None = None) -> list[Segment]:
        """Segments with FIN set, optionally only those sent from ``from_port``."""
        return self.matching(lambda s: s.fin, from_port=from_port)

    def rsts(self, from_port: int | None = None) -> list[Segment]:
        """Segments with RST set, optionally only those sent from ``from_port``."""
        return self.matching(lambda s: s.rst, from_port=from_port)

    def syns(self, from_port: int | None = None) -> list[Segment]:
        """Segments with SYN set, optionally only those sent from ``from_port``."""
        return self.matching(lambda s: s.syn, from_port=from_port)

    def flags(self, from_port: int | None = None, to_port: int | None = None) -> list[str]:
        """The flag strings in capture order, e.g. ``["S", "S.", ".", "F.", "."]``."""
        return [s.flags for s in self.matching(from_port=from_port, to_port=to_port)]

    def first(self, predicate: Predicate) -> Segment | None:
        """The first kept segment matching ``predicate``, or None."""
        return next((s for s in self.segments if predicate(s)), None)

    def wait_for(self, predicate: Predicate, timeout: float = 5.0, *, count: int = 1) -> Segment:
        """Block until ``count`` segments match ``predicate``; return the ``count``-th.

        Counts the segments kept when it is called and every segment that arrives while it
        waits.  Raises :class:`TimeoutError` (with the capture so far in the message) after
        ``timeout`` seconds, or at once when the capture has stopped without a match.
        """
        deadline = time.monotonic() + timeout
        watch = _Watch(predicate, count)
        with self._cond:
            merged = heapq.merge(list(self._notable), list(self._plain), key=lambda i: i[0])
            for _, segment in merged:
                if predicate(segment):
                    watch.seen += 1
                    if watch.seen >= count:
                        return segment
            self._watches.append(watch)
            try:
                while watch.result is None:
                    remaining = deadline - time.monotonic()
                    if self._eof or remaining <= 0:
                        break
                    self._cond.wait(remaining)
            finally:
                self._watches.remove(watch)
            if watch.result is not None:
                return watch.result
        seen = watch.seen
        why = "capture stopped" if self._eof else f"timed out after {timeout} s"
        lines = "\n  ".join(self.describe()) or "(nothing captured)"
        raise TimeoutError(f"{why}: {seen}/{count} matching segments; captured:\n  {lines}")

    def wait_fin(self, from_port: int | None = None, timeout: float = 5.0) -> Segment:
        """Block until a FIN (from ``from_port``, if given) is on the wire."""
        return self.wait_for(
            lambda s: s.fin and (from_port is None or s.sport == from_port), timeout
        )

    def wait_rst(self, from_port: int | None = None, timeout: float = 5.0) -> Segment:
        """Block until an RST (from ``from_port``, if given) is on the wire."""
        return self.wait_for(
            lambda s: s.rst and (from_port is None or s.sport == from_port), timeout
        )

    def describe(
        self, names: Mapping[int, str] | None = None, *, absolute: bool = False
    ) -> list[str]:
        """Readable lines, one per segment, for demo output and failure messages.

        ``+   1.234 ms client:40012 -> peer:5000 [F.] seq=1 ack=1 len=0``

        Ports in ``names`` get that label; otherwise the capture's own ports are
        ``peer`` and every other port ``client`` (with no ports given, the address).
        Sequence numbers are relative to the first one seen in each direction, as in
        tcpdump's default output, unless ``absolute``.
        """
        names = dict(names or {})

        def label(addr: tuple[str, int]) -> str:
            port = addr[1]
            if port in names:
                return f"{names[port]}:{port}"
            if self.ports:
                return f"{'peer' if port in self.ports else 'client'}:{port}"
            return hostport(addr)

        segments = self.segments
        if not segments:
            return []
        t0 = segments[0].time
        base: dict[tuple[tuple[str, int], tuple[str, int]], int] = {}
        lines = []
        for s in segments:
            flow = (s.src, s.dst)
            base.setdefault(flow, s.seq)
            seq, ack = s.seq, s.ack
            if not absolute:
                seq = (seq - base[flow]) % 2**32
                reverse = base.get((s.dst, s.src))
                ack = ack if reverse is None else (ack - reverse) % 2**32
            ack_text = f" ack={ack}" if s.ack_flag else ""
            lines.append(
                f"+{(s.time - t0) * 1e3:9.3f} ms {label(s.src)} -> {label(s.dst)} "
                f"[{s.flags}] seq={seq}{ack_text} len={s.length}"
            )
        return lines
