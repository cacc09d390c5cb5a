"""The receive helpers' sans-I/O steps (pywsk._receiving), driven by scripted chunks."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import pytest

from pywsk._receiving import Steps, exactly_steps, until_steps


def drive(steps: Steps, chunks: Iterable[bytes]) -> tuple[bytes, list[int]]:
    """Answer each request with the next chunk (b"" when they run out): (result, requests)."""
    feed = iter(chunks)
    asked: list[int] = []
    try:
        want = next(steps)
        while True:
            asked.append(want)
            want = steps.send(next(feed, b""))
    except StopIteration as stop:
        return stop.value, asked


def test_exactly_asks_for_what_is_missing_and_keeps_the_rest() -> None:
    leftover = bytearray(b"ab")
    data, asked = drive(exactly_steps(leftover, 6), [b"cd", b"efgh"])
    assert (data, asked, leftover) == (b"abcdef", [4, 2], bytearray(b"gh"))


def test_exactly_from_the_leftover_alone_reads_nothing() -> None:
    leftover = bytearray(b"abcdef")
    assert drive(exactly_steps(leftover, 0), []) == (b"", [])
    assert drive(exactly_steps(leftover, 4), []) == (b"abcd", [])
    assert leftover == b"ef"


def test_exactly_raises_incomplete_read_at_the_end_and_consumes_the_partial() -> None:
    leftover = bytearray()
    with pytest.raises(asyncio.IncompleteReadError) as caught:
        drive(exactly_steps(leftover, 5), [b"xy"])
    assert (caught.value.partial, caught.value.expected, leftover) == (b"xy", 5, bytearray())


def test_until_finds_a_separator_split_across_chunks() -> None:
    leftover = bytearray()
    data, _ = drive(until_steps(leftover, b"\r\n", 100), [b"line one\r", b"\nline two"])
    assert (data, leftover) == (b"line one", bytearray(b"line two"))


def test_until_allows_exactly_max_size_before_the_separator() -> None:
    leftover = bytearray(b"0123456789\nmore")
    assert drive(until_steps(leftover, b"\n", 10), []) == (b"0123456789", [])
    assert leftover == b"more"


def test_until_overrun_keeps_every_byte() -> None:
    leftover = bytearray()
    with pytest.raises(asyncio.LimitOverrunError):
        drive(until_steps(leftover, b"\n", 10), [b"0123456", b"789ab"])
    assert leftover == b"0123456789ab"


def test_until_incomplete_at_the_end() -> None:
    leftover = bytearray()
    with pytest.raises(asyncio.IncompleteReadError) as caught:
        drive(until_steps(leftover, b"\n", 10), [b"abc"])
    assert caught.value.partial == b"abc"


@pytest.mark.parametrize(
    ("separator", "max_size"), [(b"", 10), (b"\n", -1)], ids=["empty", "negative"]
)
def test_until_refuses_bad_arguments(separator: bytes, max_size: int) -> None:
    with pytest.raises(ValueError):
        drive(until_steps(bytearray(), separator, max_size), [])


def test_exactly_refuses_a_negative_size() -> None:
    with pytest.raises(ValueError):
        drive(exactly_steps(bytearray(), -1), [])
