"""What a capture keeps of every connection, in constant memory: one :class:`Flow` per
direction.

What it does: :class:`Flows` is told each captured segment (:meth:`Flows.add`) and keeps,
per direction of each connection (``src -> dst``), what the reports need however long the
connection ran: how many segments and payload bytes went that way, the bytes by sequence
number (a retransmission is not counted twice), the first and last FIN and RST and when,
and when the other side acknowledged the first FIN.  The segments themselves are not kept
here (the capture keeps a bounded ring of them for timelines).

What it refuses: nothing; a segment it cannot place (no SYN seen) is counted from its own
sequence number.

What always holds: at most ``limit`` flows are kept; beyond that the flow not updated for
the longest time is dropped (a long-running capture of many short connections stays
bounded), and :attr:`Flows.dropped` counts them.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .segments import Segment

__all__ = ["Flow", "Flows"]

Address = tuple[str, int]


@dataclass
class Flow:
    """One direction of one connection, summarised as its segments arrived."""

    src: Address
    dst: Address
    segments: int = 0
    payload: int = 0
    """Payload bytes of every segment (a retransmission counts again)."""
    data: int = 0
    """Payload bytes by sequence number: the highest byte sent, relative to the first."""
    first_at: float | None = None
    last_at: float | None = None
    fin_at: float | None = None
    """The first FIN."""
    last_fin_at: float | None = None
    rst_at: float | None = None
    """The first RST."""
    last_rst_at: float | None = None
    fin_acked_at: float | None = None
    """When the other side first acknowledged this direction's first FIN."""
    _base: int | None = None
    _fin_want: int | None = None

    def _add(self, s: Segment) -> None:
        self.segments += 1
        self.payload += s.length
        if self.first_at is None:
            self.first_at = s.time
        self.last_at = s.time
        if self._base is None or s.syn:
            self._base = (s.seq + 1) % 2**32 if s.syn else s.seq
        if s.length:
            self.data = max(self.data, (s.seq - self._base) % 2**32 + s.length)
        if s.fin:
            if self.fin_at is None:
                self.fin_at = s.time
                self._fin_want = (s.seq + s.length + 1) % 2**32
            self.last_fin_at = s.time
        if s.rst:
            if self.rst_at is None:
                self.rst_at = s.time
            self.last_rst_at = s.time

    def _acknowledged_by(self, s: Segment) -> None:
        """``s`` went the other way: does it acknowledge our first FIN?"""
        want = self._fin_want
        if (
            want is not None
            and self.fin_acked_at is None
            and s.ack_flag
            and self.fin_at is not None
            and s.time >= self.fin_at
            and (s.ack - want) % 2**32 < 2**31
        ):
            self.fin_acked_at = s.time


class Flows:
    """Every flow of a capture (bounded by ``limit``), updated segment by segment."""

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self.dropped = 0
        self._flows: OrderedDict[tuple[Address, Address], Flow] = OrderedDict()

    def add(self, s: Segment) -> None:
        key = (s.src, s.dst)
        flow = self._flows.get(key)
        if flow is None:
            flow = self._flows[key] = Flow(s.src, s.dst)
            if len(self._flows) > self.limit:
                self._flows.popitem(last=False)
                self.dropped += 1
        else:
            self._flows.move_to_end(key)
        flow._add(s)
        reverse = self._flows.get((s.dst, s.src))
        if reverse is not None:
            reverse._acknowledged_by(s)

    def between(self, ours: int, theirs: int) -> tuple[Flow | None, Flow | None]:
        """The flows from port ``ours`` to port ``theirs`` and back (the most recent, if
        the ports were reused)."""
        mine = theirs_flow = None
        for (src, dst), flow in self._flows.items():
            if (src[1], dst[1]) == (ours, theirs):
                mine = flow
            elif (src[1], dst[1]) == (theirs, ours):
                theirs_flow = flow
        return mine, theirs_flow

    def __len__(self) -> int:
        return len(self._flows)
