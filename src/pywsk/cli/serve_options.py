"""The options of ``pywsk serve``: what each connection does, when, and how it ends.

What it does: names the options of a server - four modes:

* ``echo`` - every byte received is sent back (one WskSend per WskReceive, in order);
* ``sink`` - everything received is counted and dropped;
* ``source`` - 64 KiB sends of a pattern, one after another;
* ``http-ok`` - read a request up to its blank line, answer ``200 OK``;

and five disconnects, performed once the :class:`Trigger` (``after``: bytes received - sent,
for ``source`` - or seconds since the accept; by default the client's FIN for echo and
sink, 64 KiB for source, the response for http-ok) fires:

* ``graceful`` - WskDisconnect(0): our FIN; then wait (``linger``) for the client's FIN;
* ``abortive`` - WskDisconnect(WSK_FLAG_ABORTIVE): RST at once; then close;
* ``half-open`` - our FIN, then keep receiving and logging whatever the client sends, until
  its FIN (or ``linger`` seconds of silence);
* ``stall`` - stop reading (the pending WskReceive is cancelled with IoCancelIrp) and
  never disconnect; close when the client's reset is reported, or after ``linger`` (pywsk
  reports a reset only once the data that came before it is read, so a stalled server
  usually closes at ``linger``);
* ``never`` - never disconnect first; answer the client's FIN with our own.

:class:`ServeOptions` gathers every setting of a server.
:mod:`pywsk.cli.serve_connection` serves one connection with them; :mod:`pywsk.cli.serve`
runs the listener.

What it refuses: nothing - checking what the user typed is :mod:`pywsk.cli.serve_command`'s
part; these are plain frozen values.

What always holds: the options are immutable; a trigger describes itself in the words the
reports use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .wire import WireMode

__all__ = [
    "CHUNK",
    "DISCONNECTS",
    "IDLE_TIMEOUT",
    "MAX_CONNECTIONS",
    "MODES",
    "Disconnect",
    "Mode",
    "ServeOptions",
    "Trigger",
]

Mode = Literal["echo", "sink", "source", "http-ok"]
Disconnect = Literal["graceful", "abortive", "half-open", "stall", "never"]
MODES: tuple[Mode, ...] = ("echo", "sink", "source", "http-ok")
DISCONNECTS: tuple[Disconnect, ...] = ("graceful", "abortive", "half-open", "stall", "never")

CHUNK = 65536
#: Defaults: a connection with no traffic for this long is closed; at most this many at once.
IDLE_TIMEOUT = 300.0
MAX_CONNECTIONS = 256


@dataclass(frozen=True)
class Trigger:
    """When the disconnect behaviour starts: after ``size`` bytes or ``seconds``, or (both
    None) at the mode's natural point."""

    size: int | None = None
    seconds: float | None = None

    def describe(self, mode: str) -> str:
        if self.size == 0:
            return "at once"
        if self.size is not None:
            what = "sent" if mode == "source" else "received"
            return f"after {self.size} B {what}"
        if self.seconds is not None:
            return f"after {self.seconds:g} s"
        return {
            "echo": "at the client's FIN",
            "sink": "at the client's FIN",
            "source": f"after {CHUNK} B sent",
            "http-ok": "after the response",
        }[mode]


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 0
    mode: Mode = "echo"
    disconnect: Disconnect = "graceful"
    after: Trigger = Trigger()
    accept: Literal["event", "irp"] = "event"
    connections: int | None = None
    duration: float | None = None
    linger: float = 10.0
    wire: WireMode = "auto"
    idle_timeout: float | None = IDLE_TIMEOUT
    max_connections: int = MAX_CONNECTIONS
    pcap: str | None = None
