"""Ctrl-C between WSK calls, never inside one.

What it does: within :func:`interrupt_between_calls`, SIGINT raises KeyboardInterrupt in the
main thread only between WSK calls: a call the runtime is issuing (:func:`uninterrupted`)
runs to its end first - it acts on the caller's thread, under the provider's locks - and the
interrupt is raised once it returned, so what follows can still close the sockets.

What it refuses: nothing; outside the main thread both are no-ops.

What always holds: the previous SIGINT handler is restored on exit.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["armed", "interrupt_between_calls", "uninterrupted"]

_calls_in_progress = 0
_interrupt_pending = False
_armed = False


def armed() -> bool:
    """Whether :func:`interrupt_between_calls` is in effect (on the main thread): only then
    does a call need :func:`uninterrupted`."""
    return _armed


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """A WSK call on the main thread runs to its end; a Ctrl-C that came meanwhile is raised
    once it returned."""
    global _calls_in_progress, _interrupt_pending
    main = threading.current_thread() is threading.main_thread()
    if main:
        _calls_in_progress += 1
    try:
        yield
    finally:
        if main:
            _calls_in_progress -= 1
            if not _calls_in_progress and _interrupt_pending:
                _interrupt_pending = False
                raise KeyboardInterrupt


@contextlib.contextmanager
def interrupt_between_calls() -> Iterator[None]:
    """Within: Ctrl-C raises KeyboardInterrupt in the main thread only between WSK calls."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    global _interrupt_pending, _armed
    _interrupt_pending = False

    def handler(_signum: int, _frame: Any) -> None:
        global _interrupt_pending
        if _calls_in_progress:
            _interrupt_pending = True
        else:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    was_armed, _armed = _armed, True
    try:
        yield
    finally:
        _armed = was_armed
        signal.signal(signal.SIGINT, previous)
