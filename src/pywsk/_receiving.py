"""Receive helpers written once for every Pythonic layer (pywsk.aio, pywsk.trio, pywsk.sync): ``receive_exactly`` and
``receive_until`` as sans-I/O generators over a connection's leftover buffer.

What it does: :func:`exactly_steps` and :func:`until_steps` work on the connection's
*leftover* (a ``bytearray`` of bytes received but not yet returned).  Each yields how many
bytes it would like next; the layer answers with the result of one receive of its own
(asyncio, trio or blocking) and the generator appends it to the leftover.  What a helper
returns is cut from the leftover; the rest stays there for the next ``receive_some``.

What it refuses: to lose or invent bytes.  The stream ending first raises
``asyncio.IncompleteReadError`` (an ``EOFError``; ``.partial`` holds, and consumes, what
was there); no separator within ``max_size`` bytes raises ``asyncio.LimitOverrunError``
and leaves every byte in the leftover.  (These are asyncio's classes, the ones
``StreamReader.readexactly`` / ``readuntil`` raise; every layer raises the same ones.)

What always holds: the leftover is the only buffer - a receive interrupted by a
cancellation or a timeout leaves its bytes there, so no helper loses data by being
interrupted.
"""

from __future__ import annotations

import asyncio
import operator
from collections.abc import Awaitable, Callable, Generator
from typing import Final

__all__ = [
    "DEFAULT_RECEIVE_SIZE",
    "Steps",
    "drive_steps",
    "drive_steps_blocking",
    "exactly_steps",
    "take",
    "until_steps",
]

#: Default ``max_bytes`` of a receive, in every Pythonic layer.
DEFAULT_RECEIVE_SIZE: Final = 65536

#: Yields the number of bytes wanted next; is sent the bytes one receive returned.
Steps = Generator[int, bytes, bytes]


def take(leftover: bytearray, size: int) -> bytes:
    """Cut at most ``size`` bytes from the front of ``leftover``."""
    chunk = bytes(leftover[:size])
    del leftover[:size]
    return chunk


def _incomplete(leftover: bytearray, expected: int | None) -> asyncio.IncompleteReadError:
    partial = bytes(leftover)
    leftover.clear()
    return asyncio.IncompleteReadError(partial, expected)


def exactly_steps(leftover: bytearray, size: int) -> Steps:
    """Exactly ``size`` bytes (``size`` >= 0)."""
    size = operator.index(size)
    if size < 0:
        raise ValueError("size must be >= 0")
    while len(leftover) < size:
        chunk = yield min(size - len(leftover), DEFAULT_RECEIVE_SIZE)
        if not chunk:
            raise _incomplete(leftover, size)
        leftover += chunk
    return take(leftover, size)


def until_steps(leftover: bytearray, separator: bytes, max_size: int) -> Steps:
    """The bytes before the next ``separator`` (which is consumed, not returned); at most
    ``max_size`` bytes may come before it."""
    separator = bytes(separator)
    max_size = operator.index(max_size)
    if not separator:
        raise ValueError("separator must not be empty")
    if max_size < 0:
        raise ValueError("max_size must be >= 0")
    searched = 0
    while True:
        found = leftover.find(separator, searched)
        if 0 <= found <= max_size:
            data = take(leftover, found)
            del leftover[: len(separator)]
            return data
        if found > max_size or len(leftover) - len(separator) + 1 > max_size:
            raise asyncio.LimitOverrunError(
                f"no separator within {max_size} bytes", min(len(leftover), max_size)
            )
        searched = max(0, len(leftover) - len(separator) + 1)
        chunk = yield DEFAULT_RECEIVE_SIZE
        if not chunk:
            raise _incomplete(leftover, None)
        leftover += chunk


async def drive_steps(steps: Steps, receive: Callable[[int], Awaitable[bytes]]) -> bytes:
    """Run ``steps``, answering each request with ``await receive(size)``."""
    try:
        want = next(steps)
        while True:
            want = steps.send(await receive(want))
    except StopIteration as stop:
        data: bytes = stop.value
        return data


def drive_steps_blocking(steps: Steps, receive: Callable[[int], bytes]) -> bytes:
    """Run ``steps``, answering each request with ``receive(size)``."""
    try:
        want = next(steps)
        while True:
            want = steps.send(receive(want))
    except StopIteration as stop:
        data: bytes = stop.value
        return data
