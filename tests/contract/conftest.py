"""The ``factory`` fixture: a pair maker for each layer under the contract suite."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import uvloop
from contract_adapters import (
    LoopThread,
    TrioThread,
    aio_pair,
    anyio_pair,
    driver_pair,
    sync_pair,
    trio_pair,
)

from pywsk.testing.contract import Factory

LAYERS = ["driver", "asyncio", "uvloop", "trio", "sync", "anyio-asyncio", "anyio-trio"]


@pytest.fixture(params=LAYERS)
def factory(request: pytest.FixtureRequest) -> Iterator[Factory]:
    layer = request.param
    if layer in ("asyncio", "uvloop"):
        loop = LoopThread(asyncio.new_event_loop if layer == "asyncio" else uvloop.new_event_loop)
        try:
            yield lambda small: aio_pair(loop, small)
        finally:
            loop.close()
    elif layer == "trio":
        trio_thread = TrioThread()
        try:
            yield lambda small: trio_pair(trio_thread, small)
        finally:
            trio_thread.close()
    elif layer == "anyio-asyncio":
        loop = LoopThread(asyncio.new_event_loop)
        try:
            yield lambda small: anyio_pair(loop, small)
        finally:
            loop.close()
    elif layer == "anyio-trio":
        trio_thread = TrioThread()
        try:
            yield lambda small: anyio_pair(trio_thread, small)
        finally:
            trio_thread.close()
    elif layer == "sync":
        yield sync_pair
    else:
        yield driver_pair
