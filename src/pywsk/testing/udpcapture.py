"""A packet capture of UDP datagrams on loopback: the independent evidence for datagram tests
and for ``pywsk probe --udp`` / ``pywsk serve --udp``.

What it does: :class:`UdpCapture` runs ``tcpdump -i lo -w -`` for UDP to or from the given
ports (IPv4 and IPv6) and decodes every datagram (source, destination, payload) as it
arrives.  :meth:`UdpCapture.sync` closes a window: it sends a sentinel datagram to a socket
of its own and waits until tcpdump has delivered it, so every datagram sent before the call
is in :attr:`UdpCapture.datagrams`.

What it refuses: to start without root and tcpdump (:meth:`UdpCapture.available` says
whether it can); other interfaces than loopback.

What always holds: every wait is bounded (``timeout``); a capture that fell out of sync
raises ``TimeoutError`` rather than report a partial picture as whole.
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from .segments import _network_layer

__all__ = ["CapturedDatagram", "UdpCapture"]


@dataclass(frozen=True)
class CapturedDatagram:
    """One UDP datagram on the wire; ``at`` is tcpdump's timestamp (``time.time()``'s clock)."""

    src: tuple[str, int]
    dst: tuple[str, int]
    payload: bytes
    at: float = 0.0


class UdpCapture:
    """tcpdump on lo for UDP to or from ``ports``."""

    def __init__(self, ports: Iterable[int], *, timeout: float = 10.0, snaplen: int = 65535):
        self.ports = tuple(ports)
        self.timeout = timeout
        self.datagrams: list[CapturedDatagram] = []
        self._marks = 0
        self._cond = threading.Condition()
        self._sentinel = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sentinel.bind(("127.0.0.1", 0))
        watched = " or ".join(f"port {p}" for p in (*self.ports, self.sentinel_port))
        self._proc = subprocess.Popen(
            [
                "tcpdump",
                "-i",
                "lo",
                "-U",
                "-n",
                "-s",
                str(snaplen),
                "-w",
                "-",
                f"udp and ({watched})",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._reader = threading.Thread(target=self._read, name="udp-capture", daemon=True)
        self._reader.start()
        try:
            self._wait_listening()
        except BaseException:
            self.stop()
            raise

    @staticmethod
    def available() -> bool:
        """True when a capture can run here: root and ``tcpdump`` on ``PATH``."""
        return os.geteuid() == 0 and shutil.which("tcpdump") is not None

    @property
    def sentinel_port(self) -> int:
        port: int = self._sentinel.getsockname()[1]
        return port

    def _wait_listening(self) -> None:
        stderr = self._proc.stderr
        assert stderr is not None
        ready, _, _ = select.select([stderr], [], [], self.timeout)
        if not ready or b"listening on" not in stderr.readline():
            raise TimeoutError("tcpdump did not start listening")
        self.sync()

    def _read(self) -> None:
        stream = self._proc.stdout
        assert stream is not None
        header = stream.read(24)
        if len(header) < 24:
            return
        linktype = int.from_bytes(header[20:24], "little")
        while True:
            record = stream.read(16)
            if len(record) < 16:
                return
            frame = stream.read(int.from_bytes(record[8:12], "little"))
            at = int.from_bytes(record[0:4], "little") + int.from_bytes(record[4:8], "little") / 1e6
            got = _decode(linktype, frame, at)
            if got is None:
                continue
            with self._cond:
                if got.dst[1] == self.sentinel_port:
                    self._marks += 1
                else:
                    self.datagrams.append(got)
                self._cond.notify_all()

    def sync(self) -> None:
        """Wait until every datagram sent before this call is decoded."""
        with self._cond:
            target = self._marks + 1
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as marker:
            marker.sendto(b"mark", ("127.0.0.1", self.sentinel_port))
        with self._cond:
            if not self._cond.wait_for(lambda: self._marks >= target, self.timeout):
                raise TimeoutError("the capture fell out of sync")

    def between(self, a: tuple[str, int], b: tuple[str, int]) -> list[CapturedDatagram]:
        """The datagrams from ``a`` to ``b``, in capture order."""
        with self._cond:
            return [d for d in self.datagrams if d.src == a and d.dst == b]

    def stop(self) -> None:
        """Stop tcpdump (bounded) and close what the capture holds."""
        if self._proc.poll() is None:
            self._proc.terminate()
        try:
            self._proc.wait(self.timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(self.timeout)
        self._reader.join(self.timeout)
        for stream in (self._proc.stdout, self._proc.stderr):
            if stream is not None:
                stream.close()
        self._sentinel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _decode(linktype: int, frame: bytes, at: float) -> CapturedDatagram | None:
    ip = _network_layer(linktype, frame)
    if ip is None or ip >= len(frame):
        return None
    if frame[ip] >> 4 == 4:
        family, l4 = socket.AF_INET, ip + (frame[ip] & 0x0F) * 4
        proto, src, dst = frame[ip + 9], frame[ip + 12 : ip + 16], frame[ip + 16 : ip + 20]
    else:
        family, l4 = socket.AF_INET6, ip + 40
        proto, src, dst = frame[ip + 6], frame[ip + 8 : ip + 24], frame[ip + 24 : ip + 40]
    if proto != 17 or len(frame) < l4 + 8:
        return None
    return CapturedDatagram(
        (socket.inet_ntop(family, src), int.from_bytes(frame[l4 : l4 + 2], "big")),
        (socket.inet_ntop(family, dst), int.from_bytes(frame[l4 + 2 : l4 + 4], "big")),
        bytes(frame[l4 + 8 :]),
        at,
    )
