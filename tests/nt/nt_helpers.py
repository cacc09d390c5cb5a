"""Helpers shared by the tests of pywsk.nt's waits."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


def until(predicate: Callable[[], bool], seconds: float = 10.0) -> None:
    """Observe a state another thread reaches (bounded; not a timing assumption)."""
    deadline = time.monotonic() + seconds
    pause = threading.Event()
    while not predicate():
        assert time.monotonic() < deadline, "state not reached"
        pause.wait(0.001)
