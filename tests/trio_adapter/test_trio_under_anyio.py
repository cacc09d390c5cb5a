"""pywsk.trio streams from anyio code on anyio's trio backend (skipped without anyio)."""

from __future__ import annotations

import pytest
from trio_helpers import stream_pair

from pywsk.core.ending import Ending

anyio = pytest.importorskip("anyio")


def test_streams_work_under_anyio_on_the_trio_backend() -> None:
    async def main() -> None:
        with anyio.fail_after(30):
            client, server = await stream_pair()
            async with client, server:
                async with anyio.create_task_group() as group:
                    group.start_soon(client.send_all, b"over anyio")
                    assert await server.receive_some() == b"over anyio"
                await client.send_eof()
                assert await server.receive_some() == b""
                assert server.disconnected_by is Ending.PEER_FIN

    anyio.run(main, backend="trio")
