"""The engine's wake-ups: work posted from many threads at once always runs.

The provider thread sleeps in its epoll and is woken through an eventfd only when the
wake-up flag says nobody has written yet.  A flag left set with no count behind it would
swallow every later wake-up (every DPC, every posted callback) - a hang, not an error.
"""

from __future__ import annotations

import threading
from typing import Any

from pywsk.nt import KDPC, KeInitializeDpc, KeInsertQueueDpc
from pywsk.provider import subsystem

WAIT = 10.0
THREADS = 6
ROUNDS = 1500


def test_posts_and_dpcs_from_many_threads_all_run() -> None:
    assert subsystem.engine.start(WAIT)
    failures: list[str] = []

    def poster(index: int) -> None:
        ran = threading.Event()

        def routine(_dpc: KDPC, _context: Any, _one: Any, _two: Any) -> None:
            ran.set()

        dpc = KDPC()
        KeInitializeDpc(dpc, routine, None)
        posted = threading.Event()
        for round_ in range(ROUNDS):
            ran.clear()
            posted.clear()
            # Alternate the two ways work reaches the provider thread.
            if round_ % 2:
                assert KeInsertQueueDpc(dpc, None, None)
                done = ran
            else:
                subsystem.engine.post(posted.set)
                done = posted
            if not done.wait(WAIT):
                failures.append(f"thread {index}: round {round_} never ran")
                return

    threads = [threading.Thread(target=poster, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 3)
    assert not any(thread.is_alive() for thread in threads)
    assert failures == []
