"""Edge-triggered readiness for event loops that are level-triggered: one epoll per loop.

What it does: an :class:`EdgePoller` is one ``epoll`` in which each socket is registered
once, for its whole life, with ``EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET``
(:data:`SOCKET_EVENTS`).  Edge-triggered is what the honest disconnect needs: the moment our
FIN is acknowledged has no poll bit of its own, but the kernel's wake-up of the socket at
that transition makes an edge-triggered registration report EPOLLOUT again (see
:mod:`pywsk.mechanics.linux`); a level-triggered one (asyncio's selectors, uvloop, trio)
cannot tell that wake-up from the EPOLLOUT that is always there after ``shutdown``.

The poller's own descriptor (:meth:`EdgePoller.fileno`) is readable while any registered
socket has an edge to report, so the event loop watches that one descriptor
(``loop.add_reader(poller.fileno(), poller.dispatch)``, or
``trio.lowlevel.wait_readable``), and :meth:`EdgePoller.dispatch` takes the edges with
``epoll.poll(0)`` and calls each socket's handler with its mask.  No ``epoll_ctl`` per
operation: turning interest on and off is the handler's business (a waiter slot), not the
kernel's.

What it refuses: to block (``poll(0)`` only), to keep anything about a socket but its
handler, to let one handler's exception lose the other sockets' edges (it is reported as
unraisable and the dispatch goes on; KeyboardInterrupt and SystemExit go through).

What always holds, and what a user of it must do: an edge is reported once.  So every
operation tries its syscall first and waits only after EAGAIN (an edge that came before the
try is then either consumed by the try or still queued); a handler called with no one
waiting loses nothing that a later try would not see.  :meth:`forget` a socket before closing
it (closing removes it from the epoll; the handler must go too).
"""

from __future__ import annotations

import select
from collections.abc import Callable
from typing import Final

from .._log import report_unraisable

__all__ = ["LISTEN_EVENTS", "READ_EVENTS", "SOCKET_EVENTS", "WRITE_EVENTS", "EdgePoller"]

#: A connection socket's one registration: data, space, the peer's FIN, state changes.
SOCKET_EVENTS: Final = select.EPOLLIN | select.EPOLLOUT | select.EPOLLRDHUP | select.EPOLLET
#: The edges of a connection socket that concern a reader (data, the peer's FIN, an error),
#: and those that concern a writer (room, an error).
READ_EVENTS: Final = select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLERR | select.EPOLLHUP
WRITE_EVENTS: Final = select.EPOLLOUT | select.EPOLLERR | select.EPOLLHUP
#: A listening socket's: a connection to accept.
LISTEN_EVENTS: Final = select.EPOLLIN | select.EPOLLET

Handler = Callable[[int], object]


class EdgePoller:
    """One edge-triggered epoll and the handler of each socket in it."""

    __slots__ = ("_epoll", "_handlers", "_poll")

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._poll = self._epoll.poll
        self._handlers: dict[int, Handler] = {}

    def __repr__(self) -> str:
        return f"<EdgePoller fd={self._epoll.fileno()} sockets={len(self._handlers)}>"

    def fileno(self) -> int:
        """The epoll's descriptor: readable while an edge waits to be dispatched."""
        return self._epoll.fileno()

    @property
    def closed(self) -> bool:
        return self._epoll.closed

    def register(self, fd: int, handler: Handler, events: int = SOCKET_EVENTS) -> None:
        """Watch ``fd`` for its whole life; ``handler(mask)`` at each of its edges.  The
        registration reports the socket's current readiness once (an edge-triggered
        registration does), so a connect that completed before it is not missed."""
        self._handlers[fd] = handler
        try:
            self._epoll.register(fd, events)
        except BaseException:
            del self._handlers[fd]
            raise

    def forget(self, fd: int) -> None:
        """Stop dispatching to ``fd``'s handler; call before closing the socket (the close
        takes it out of the epoll)."""
        self._handlers.pop(fd, None)

    def dispatch(self) -> None:
        """Take every pending edge and call its socket's handler (never blocks)."""
        handlers = self._handlers
        for fd, mask in self._poll(0):
            handler = handlers.get(fd)
            if handler is None:
                continue
            try:
                handler(mask)
            except Exception as exc:  # a handler's bug must not lose the other edges
                report_unraisable(exc, "pywsk: exception in an edge handler", handler)

    def close(self) -> None:
        self._handlers.clear()
        self._epoll.close()
