"""What a client knows of how each of its connections ended, and its socket contexts.

What it does: :class:`Ends` holds, for one WSK socket, how *we* ended it (our FIN or our RST,
from a WskDisconnect of ours that succeeded) and when our graceful disconnect completed (our
FIN acknowledged), and how the *peer* ended it as WSK told us (a 0-byte receive or
WskDisconnectEvent: its FIN; STATUS_CONNECTION_RESET or WskDisconnectEvent with
WSK_FLAG_ABORTIVE: its RST), in the one vocabulary of :class:`pywsk.core.ending.Ending`.
:class:`Context` is the socket context the runtime registers with its
WSK_CLIENT_CONNECTION_DISPATCH: what WskDisconnectEvent said, and a hook.

What it refuses: an ending of the wrong side (``learn_ours(Ending.PEER_FIN)`` raises
ValueError).

What always holds: the first end on each side wins, except an RST after a FIN, kept as that
side's ``*_FIN_THEN_RST`` (:meth:`Ending.then`); "first" is by when the calls were issued,
so a completion that comes after a later call's does not reorder our ends.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..core.ending import Ending

__all__ = ["Context", "Ends"]


@dataclass
class Ends:
    """How one connection ended, as this client observed it."""

    ours: Ending | None = None
    """:attr:`Ending.OUR_FIN` (a graceful WskDisconnect that succeeded: our FIN acknowledged),
    :attr:`Ending.OUR_RST` (an abortive one that succeeded: our RST sent), or
    :attr:`Ending.OUR_FIN_THEN_RST` (an abort after the graceful disconnect).  A disconnect
    the provider refused or that failed is not one: it may not have acted on the wire."""
    ours_at: float | None = None
    """When the call that ended our side was issued."""
    fin_acked_at: float | None = None
    """When our graceful WskDisconnect completed STATUS_SUCCESS (our FIN acknowledged)."""
    peer: Ending | None = None
    """The peer's FIN, RST, or FIN then RST, as WSK reported it."""
    peer_at: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def learn_ours(self, ending: Ending, at: float) -> None:
        """An end of ours that acted on the wire, by a call issued at ``at``."""
        if not ending.by_us:
            raise ValueError(f"{ending} is not an end of ours")
        with self._lock:
            if self.ours is None:
                self.ours, self.ours_at = ending, at
            elif self.ours_at is not None and at < self.ours_at:
                self.ours, self.ours_at = ending.then(self.ours), at
            else:
                self.ours = self.ours.then(ending)

    def learn_peer(self, ending: Ending, at: float) -> None:
        if not ending.by_peer:
            raise ValueError(f"{ending} is not an end of the peer's")
        with self._lock:
            if self.peer is None:
                self.peer, self.peer_at = ending, at
            else:
                self.peer = self.peer.then(ending)

    def fin_acknowledged(self, at: float) -> None:
        """Our graceful disconnect completed STATUS_SUCCESS at ``at`` (learn its
        :attr:`Ending.OUR_FIN` with :meth:`learn_ours`)."""
        with self._lock:
            if self.fin_acked_at is None:
                self.fin_acked_at = at


@dataclass(eq=False)
class Context:
    """The socket context of one connection socket, and what its events said."""

    name: str
    on_disconnect: Callable[[Any, int], None] | None = None
    """Called (on the provider thread) with the context and the flags of WskDisconnectEvent."""
    socket: Any = None
    disconnect_events: list[tuple[float, int]] = field(default_factory=list)
    disconnect_seen: threading.Event = field(default_factory=threading.Event)
    """Set when a WskDisconnectEvent arrived."""
