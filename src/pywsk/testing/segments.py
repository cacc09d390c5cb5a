"""TCP segments as a packet capture sees them, decoded from pcap frames.

What it does: :class:`Segment` is one captured TCP segment (flags in tcpdump's letters,
absolute sequence numbers, the kernel's capture time); :func:`decode` turns one pcap frame
(Ethernet, Linux cooked v1/v2, raw IP; IPv4 and IPv6) into a segment, or recognises the
capture's own sentinel datagram.  Nothing here depends on tcpdump's text output.

What it refuses: frames it cannot decode raise ``ValueError`` / ``struct.error`` (the
capture reports them as problems); non-TCP frames decode to None.

What always holds: pure functions and frozen values; no I/O but :func:`read_exact`.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from dataclasses import dataclass
from typing import IO

__all__ = [
    "PCAP_MAGIC_NS",
    "PCAP_MAGIC_US",
    "SENTINEL_MAGIC",
    "Segment",
    "Sentinel",
    "decode",
    "hostport",
    "read_exact",
]

_TH_FIN, _TH_SYN, _TH_RST, _TH_PSH = 0x01, 0x02, 0x04, 0x08
_TH_ACK, _TH_URG, _TH_ECE, _TH_CWR = 0x10, 0x20, 0x40, 0x80
_TH_AE = 0x100
# tcpdump's letters, in tcpdump's order (print-tcp.c, tcp_flag_values).
_FLAG_LETTERS = (
    (_TH_FIN, "F"),
    (_TH_SYN, "S"),
    (_TH_RST, "R"),
    (_TH_PSH, "P"),
    (_TH_ACK, "."),
    (_TH_URG, "U"),
    (_TH_ECE, "E"),
    (_TH_CWR, "W"),
    (_TH_AE, "e"),
)


def _flag_string(bits: int) -> str:
    return "".join(letter for bit, letter in _FLAG_LETTERS if bits & bit) or "none"


@dataclass(frozen=True, slots=True)
class Segment:
    """One captured TCP segment; ``flags`` uses tcpdump's letters (``"FP."``, ``"R."``).

    ``time`` is the kernel's capture timestamp (seconds since the epoch, the clock of
    :func:`time.time`). ``seq`` and ``ack`` are absolute (as ``tcpdump -S``); ``ack`` is the
    raw header field, meaningful only when :attr:`ack_flag` is set. ``length`` is the TCP
    payload length.
    """

    time: float
    src: tuple[str, int]
    dst: tuple[str, int]
    flags: str
    seq: int
    ack: int
    length: int
    window: int = 0

    @property
    def fin(self) -> bool:
        return "F" in self.flags

    @property
    def syn(self) -> bool:
        return "S" in self.flags

    @property
    def rst(self) -> bool:
        return "R" in self.flags

    @property
    def psh(self) -> bool:
        return "P" in self.flags

    @property
    def ack_flag(self) -> bool:
        return "." in self.flags

    @property
    def sport(self) -> int:
        return self.src[1]

    @property
    def dport(self) -> int:
        return self.dst[1]

    def is_from(self, port: int) -> bool:
        return self.src[1] == port

    def is_to(self, port: int) -> bool:
        return self.dst[1] == port

    def __str__(self) -> str:
        text = f"{hostport(self.src)} > {hostport(self.dst)} [{self.flags}] seq={self.seq}"
        if self.ack_flag:
            text += f" ack={self.ack}"
        return text + f" win={self.window} len={self.length}"


def hostport(addr: tuple[str, int]) -> str:
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --- pcap decoding ---------------------------------------------------------------------

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
_LINKTYPE_NULL, _LINKTYPE_ETHERNET, _LINKTYPE_LOOP = 0, 1, 108
_LINKTYPE_RAW = (12, 14, 101)
_LINKTYPE_LINUX_SLL, _LINKTYPE_LINUX_SLL2 = 113, 276
_ETH_IPV4, _ETH_IPV6, _ETH_VLAN = 0x0800, 0x86DD, (0x8100, 0x88A8)
_IPPROTO_TCP, _IPPROTO_UDP = 6, 17
_IPV6_SKIPPABLE = (0, 43, 60)  # hop-by-hop, routing, destination options
_IPV6_FRAGMENT = 44

SENTINEL_MAGIC = b"pywsk-wirecapture-sentinel:"


@dataclass(frozen=True, slots=True)
class Sentinel:
    number: int


def _network_layer(linktype: int, frame: bytes) -> int | None:
    """Offset of the IP header in a captured frame, or None if it is not IP."""
    if linktype == _LINKTYPE_ETHERNET:
        offset, ethertype = 14, int.from_bytes(frame[12:14], "big")
        while ethertype in _ETH_VLAN and len(frame) >= offset + 4:
            ethertype = int.from_bytes(frame[offset + 2 : offset + 4], "big")
            offset += 4
        return offset if ethertype in (_ETH_IPV4, _ETH_IPV6) else None
    if linktype == _LINKTYPE_LINUX_SLL:
        ethertype = int.from_bytes(frame[14:16], "big")
        return 16 if ethertype in (_ETH_IPV4, _ETH_IPV6) else None
    if linktype == _LINKTYPE_LINUX_SLL2:
        ethertype = int.from_bytes(frame[0:2], "big")
        return 20 if ethertype in (_ETH_IPV4, _ETH_IPV6) else None
    if linktype in _LINKTYPE_RAW:
        return 0
    if linktype in (_LINKTYPE_NULL, _LINKTYPE_LOOP):
        return 4
    return None


def decode(
    linktype: int, frame: bytes, wire_len: int, when: float, sentinel_port: int
) -> Segment | Sentinel | None:
    """Decode one frame; None for anything that is neither TCP nor our sentinel."""
    ip = _network_layer(linktype, frame)
    if ip is None or len(frame) < ip + 1:
        return None
    version = frame[ip] >> 4
    if version == 4:
        if len(frame) < ip + 20:
            return None
        ihl = (frame[ip] & 0x0F) * 4
        total = int.from_bytes(frame[ip + 2 : ip + 4], "big") or (wire_len - ip)
        if int.from_bytes(frame[ip + 6 : ip + 8], "big") & 0x1FFF:
            return None  # not the first fragment
        proto = frame[ip + 9]
        family = socket.AF_INET
        src_raw, dst_raw = frame[ip + 12 : ip + 16], frame[ip + 16 : ip + 20]
        l4, l4_len = ip + ihl, total - ihl
    elif version == 6:
        if len(frame) < ip + 40:
            return None
        payload = int.from_bytes(frame[ip + 4 : ip + 6], "big") or (wire_len - ip - 40)
        proto = frame[ip + 6]
        family = socket.AF_INET6
        src_raw, dst_raw = frame[ip + 8 : ip + 24], frame[ip + 24 : ip + 40]
        l4, l4_len = ip + 40, payload
        while proto in (*_IPV6_SKIPPABLE, _IPV6_FRAGMENT) and len(frame) >= l4 + 8:
            if proto == _IPV6_FRAGMENT:
                if int.from_bytes(frame[l4 + 2 : l4 + 4], "big") & 0xFFF8:
                    return None  # not the first fragment
                ext = 8
            else:
                ext = (frame[l4 + 1] + 1) * 8
            proto = frame[l4]
            l4, l4_len = l4 + ext, l4_len - ext
    else:
        return None
    src, dst = socket.inet_ntop(family, src_raw), socket.inet_ntop(family, dst_raw)
    if proto == _IPPROTO_TCP and len(frame) >= l4 + 20:
        sport, dport, seq, ack, off_flags, window = struct.unpack_from("!HHIIHH", frame, l4)
        header = (off_flags >> 12) * 4
        return Segment(
            time=when,
            src=(src, sport),
            dst=(dst, dport),
            flags=_flag_string(off_flags & 0x1FF),
            seq=seq,
            ack=ack,
            length=max(l4_len - header, 0),
            window=window,
        )
    if proto == _IPPROTO_UDP and len(frame) >= l4 + 8:
        dport = int.from_bytes(frame[l4 + 2 : l4 + 4], "big")
        body = frame[l4 + 8 :]
        if dport == sentinel_port and body.startswith(SENTINEL_MAGIC):
            with contextlib.suppress(ValueError):
                return Sentinel(int(body[len(SENTINEL_MAGIC) :].decode("ascii")))
    return None


def read_exact(stream: IO[bytes], size: int) -> bytes | None:
    data = stream.read(size)
    return data if data is not None and len(data) == size else None


# --- the capture -----------------------------------------------------------------------
