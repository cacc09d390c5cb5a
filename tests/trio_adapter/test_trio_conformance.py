"""``trio.testing.check_half_closeable_stream`` against :class:`pywsk.trio.WskStream`, over
real loopback TCP, with both the stream maker and the clogged-stream maker."""

from __future__ import annotations

import trio.testing  # type: ignore[import-untyped, unused-ignore]
from trio_helpers import SMALL_BUFFERS, clog, stream_pair

import pywsk.trio


async def make() -> tuple[pywsk.trio.WskStream, pywsk.trio.WskStream]:
    return await stream_pair()


async def make_clogged() -> tuple[pywsk.trio.WskStream, pywsk.trio.WskStream]:
    client, server = await stream_pair(SMALL_BUFFERS)
    await clog(client)
    await clog(server)
    return client, server


def test_check_half_closeable_stream_without_clogged_maker() -> None:
    async def main() -> None:
        with trio.fail_after(50):
            await trio.testing.check_half_closeable_stream(make, None)

    trio.run(main)


def test_check_half_closeable_stream_with_clogged_maker() -> None:
    async def main() -> None:
        with trio.fail_after(50):
            await trio.testing.check_half_closeable_stream(make, make_clogged)

    trio.run(main)
