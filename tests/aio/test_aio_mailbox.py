"""The per-loop mailbox that hands completions to an event loop: every delivery once, in
order, from any thread; a burst costs one ``call_soon_threadsafe``; a closed loop refuses."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest
import uvloop
from aio_helpers import Run, loop_fixture

from pywsk.aio._waiting import mailbox

run = loop_fixture()


def test_deliveries_from_other_threads_arrive_once_in_order(run: Run) -> None:
    per_thread = 2000

    async def main() -> None:
        loop = asyncio.get_running_loop()
        post = mailbox(loop)
        assert mailbox(loop) == post  # one mailbox per loop
        seen: dict[int, list[int]] = {0: [], 1: []}
        everything = asyncio.Event()

        def deliver(thread: int, i: int) -> Callable[[], None]:
            def delivered() -> None:
                seen[thread].append(i)
                if sum(map(len, seen.values())) == 2 * per_thread:
                    everything.set()

            return delivered

        def producer(thread: int) -> None:
            for i in range(per_thread):
                post(deliver(thread, i))

        threads = [threading.Thread(target=producer, args=(t,)) for t in (0, 1)]
        for t in threads:
            t.start()
        await asyncio.wait_for(everything.wait(), 10.0)
        for t in threads:
            t.join(10.0)
        assert seen == {0: list(range(per_thread)), 1: list(range(per_thread))}

    run(main())


def test_a_burst_is_one_wake_up() -> None:
    loop = uvloop.new_event_loop()
    scheduled: list[Any] = []
    original = loop.call_soon_threadsafe

    def counting(callback: Any, *args: Any, **kwargs: Any) -> Any:
        scheduled.append(callback)
        return original(callback, *args, **kwargs)

    loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
    try:
        post = mailbox(loop)
        seen: list[int] = []
        for i in range(100):
            post(lambda i=i: seen.append(i))  # type: ignore[misc]
        assert len(scheduled) == 1
        loop.run_until_complete(asyncio.sleep(0))
        assert seen == list(range(100))
        post(lambda: seen.append(100))  # after the drain: a new wake-up
        assert len(scheduled) == 2
        loop.run_until_complete(asyncio.sleep(0))
        assert seen[-1] == 100
    finally:
        loop.close()


def test_a_closed_loop_refuses_every_post() -> None:
    loop = asyncio.new_event_loop()
    post = mailbox(loop)
    loop.close()
    for _ in range(2):  # and goes on refusing: nothing is left waiting for a drain
        with pytest.raises(RuntimeError):
            post(lambda: None)
